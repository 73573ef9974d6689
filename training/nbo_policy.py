"""Serve a learned next-best-offer policy only when it beats the best single arm on held-out data.

Pure functions on arrays. Policy values are inverse-propensity (IPW) estimates on held-out rows of
a randomized experiment; the learned policy (argmax of predicted uplift, control when no offer's
uplift is positive) is compared with the best single-arm policy by a paired bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.uplift import best_offer
from training.uplift_metrics import (
    bootstrap_mean_ci,
    doubly_robust_policy_terms,
    incremental_policy_terms,
    ipw_terms,
)


@dataclass(frozen=True)
class PolicyDecision:
    """What to serve and why. ``served`` is ``"learned"`` or the label of the single arm."""

    served: str
    learned_value: float
    best_single_arm: str
    best_single_value: float
    difference_ci: tuple[float, float, float]  # (learned - best single, low, high)
    reason: str
    learned_ci: tuple[float, float] = (float("nan"), float("nan"))
    best_single_ci: tuple[float, float] = (float("nan"), float("nan"))
    single_arm_values: dict[str, float] = field(default_factory=dict)
    learned_arm_share: dict[str, float] = field(default_factory=dict)

    @property
    def served_value(self) -> float:
        return self.learned_value if self.served == "learned" else self.best_single_value


def learned_arms(uplift: np.ndarray, arms: Sequence[Any], control: Any = "control") -> np.ndarray:
    """Per row, the offer with the highest predicted uplift, or ``control`` if none is positive."""
    uplift = np.asarray(uplift, dtype=float)
    if uplift.ndim != 2 or uplift.shape[1] != len(arms):
        raise ValueError(
            f"uplift must have shape (n, {len(arms)}) matching arms {list(arms)}, "
            f"got {uplift.shape}"
        )
    index = best_offer(uplift, np.ones(len(arms)), np.zeros(len(arms)))
    labels = np.asarray([*arms, control], dtype=object)  # index -1 -> control
    return labels[index]


@dataclass(frozen=True)
class PolicyComparison:
    """A learned policy against its alternatives on the same held-out rows (IPW values)."""

    served: str  # "learned" or the name of the best alternative
    reason: str
    values: dict[str, tuple[float, float, float]]  # policy -> (value, low, high)
    best_alternative: str
    difference: tuple[float, float, float]  # learned - best alternative, (value, low, high)

    @property
    def served_value(self) -> float:
        return self.values[self.served][0]


def compare_policies(
    learned: np.ndarray,
    alternatives: dict[str, np.ndarray],
    y: np.ndarray,
    received_arm: np.ndarray,
    propensity: np.ndarray,
    value: dict[Any, float] | None = None,
    cost: dict[Any, float] | None = None,
    control: Any = "control",
    n_boot: int = 1000,
    alpha: float = 0.05,
    random_state: Any = None,
    outcome: np.ndarray | None = None,
    arms: Sequence[Any] | None = None,
) -> PolicyComparison:
    """Serve ``learned`` (the arm it picks per row) only when the paired (1 - alpha) bootstrap
    interval of its value minus the best alternative's lies above zero; else the best
    alternative, with the reason. Alternatives are named policies, e.g.
    ``{"control": ..., "case_study": ...}`` (arrays of arms).

    Without ``value`` a policy's value is the IPW mean outcome (``y`` as it is). With ``value``
    and ``cost`` (per offer) it is the net value over sending nothing
    (:func:`incremental_policy_terms`): what ranking offers by uplift x value - cost maximizes.
    With ``outcome`` (P(y=1) per arm, columns ``arms``, from a model fitted on other rows) the
    net value is estimated doubly robustly (:func:`doubly_robust_policy_terms`): unbiased all
    the same with known propensities, and with far narrower intervals.
    """
    if not alternatives:
        raise ValueError("compare_policies needs at least one alternative policy")
    y = np.asarray(y, dtype=float)
    received = np.asarray(received_arm).astype(object)

    def terms(chosen: np.ndarray, name: str) -> np.ndarray:
        chosen = np.asarray(chosen).astype(object)
        if len(chosen) != len(y):
            raise ValueError(f"policy {name!r} has {len(chosen)} rows but y has {len(y)}")
        if value is None:
            return ipw_terms(y, chosen, received, propensity, cost)
        if outcome is not None:
            return doubly_robust_policy_terms(
                y, chosen, received, propensity, outcome, arms, value, cost or {}, control
            )
        return incremental_policy_terms(y, chosen, received, propensity, value, cost or {}, control)

    per_unit = {"learned": terms(learned, "learned")}
    per_unit.update({name: terms(chosen, name) for name, chosen in alternatives.items()})
    boot = {"n_boot": n_boot, "alpha": alpha, "random_state": random_state}
    values = {name: bootstrap_mean_ci(t, **boot) for name, t in per_unit.items()}
    best = max(alternatives, key=lambda name: values[name][0])
    diff = bootstrap_mean_ci(per_unit["learned"] - per_unit[best], **boot)
    diff = (float(diff[0]), float(diff[1]), float(diff[2]))
    level = f"{100 * (1 - alpha):g}%"
    gap = f"learned - {best} = {diff[0]:+.4f}, {level} interval [{diff[1]:+.4f}, {diff[2]:+.4f}]"
    if diff[1] > 0:
        served, reason = "learned", f"learned policy beats the best alternative: {gap}"
    else:
        verdict = "loses to" if diff[2] < 0 else "does not beat"
        served = best
        reason = f"learned policy {verdict} the best alternative ({gap}); falling back to {best}"
    return PolicyComparison(
        served=served,
        reason=reason,
        values={k: (float(v[0]), float(v[1]), float(v[2])) for k, v in values.items()},
        best_alternative=best,
        difference=diff,
    )


def choose_policy(
    uplift_by_arm_on_holdout: np.ndarray,
    y: np.ndarray,
    received_arm: np.ndarray,
    propensity: np.ndarray,
    arms: Sequence[Any],
    n_boot: int = 1000,
    random_state: Any = None,
    control: Any = "control",
    alpha: float = 0.05,
) -> PolicyDecision:
    """Decide between the learned policy and the best single-arm policy on held-out rows.

    ``uplift_by_arm_on_holdout`` is (n, n_offers), columns in the order of ``arms`` (the offer
    labels, control excluded, e.g. a learner's ``offers_``). ``propensity[i]`` is the probability
    of ``received_arm[i]`` under the logging policy. The single-arm policies are "always
    control" and "always <offer>" for each offer. The learned policy is served only if the
    lower end of the paired (1 - alpha) bootstrap interval of (learned - best single) is above 0.
    """
    arms = list(arms)
    if control in arms:
        raise ValueError(f"arms must list the offers only; got the control {control!r} among them")
    y = np.asarray(y, dtype=float)
    chosen = learned_arms(uplift_by_arm_on_holdout, arms, control)
    if len(chosen) != len(y):
        raise ValueError(f"uplift has {len(chosen)} rows but y has {len(y)}")
    singles = {str(arm): np.full(len(y), arm, dtype=object) for arm in [control, *arms]}
    result = compare_policies(
        chosen, singles, y, received_arm, propensity, n_boot=n_boot, alpha=alpha,
        random_state=random_state,
    )  # fmt: skip
    best = result.best_alternative
    reason = (
        result.reason.replace(f"- {best} =", f"- always {best} =")
        .replace(f"falling back to {best}", f"falling back to always {best}")
        .replace("the best alternative", "the best single arm")
    )
    share = {str(a): float(np.mean(chosen == a)) for a in [control, *arms]}
    learned_value, learned_low, learned_high = result.values["learned"]
    best_value, best_low, best_high = result.values[best]
    return PolicyDecision(
        served="learned" if result.served == "learned" else best,
        learned_value=learned_value,
        best_single_arm=best,
        best_single_value=best_value,
        difference_ci=result.difference,
        reason=reason,
        learned_ci=(learned_low, learned_high),
        best_single_ci=(best_low, best_high),
        single_arm_values={a: v[0] for a, v in result.values.items() if a != "learned"},
        learned_arm_share=share,
    )


@dataclass(frozen=True)
class RankedOffer:
    offer_id: str
    uplift: float
    value: float
    cost: float

    @property
    def expected_net_value(self) -> float:
        return self.uplift * self.value - self.cost


def rank_offers(
    uplift: Sequence[float],
    offer_ids: Sequence[str],
    values: Sequence[float],
    costs: Sequence[float],
    eligible: Sequence[bool],
) -> list[RankedOffer]:
    """One unit's eligible offers, best expected net value (uplift x value - cost) first."""
    if not len(uplift) == len(offer_ids) == len(values) == len(costs) == len(eligible):
        raise ValueError(
            "uplift, offer_ids, values, costs and eligible must have one entry per offer"
        )
    ranked = [
        RankedOffer(str(o), float(u), float(v), float(c))
        for o, u, v, c, ok in zip(offer_ids, uplift, values, costs, eligible, strict=True)
        if ok
    ]
    return sorted(ranked, key=lambda r: r.expected_net_value, reverse=True)


@dataclass(frozen=True)
class OfferChoice:
    chosen: str  # an offer id or the control label
    greedy: str  # what the policy picks without exploration
    explored: bool
    propensity: float  # probability of ``chosen`` under this epsilon-greedy policy


def greedy_arm(ranked: Sequence[RankedOffer], served_policy: str, control: str = "control") -> str:
    """The served policy's pick: the best offer worth its cost (``learned``), the fallback
    single offer where the unit may get it, or control."""
    if served_policy == "learned":
        return ranked[0].offer_id if ranked and ranked[0].expected_net_value > 0 else control
    if any(r.offer_id == served_policy for r in ranked):
        return served_policy
    return control


def choose_offer(
    ranked: Sequence[RankedOffer],
    served_policy: str,
    epsilon: float,
    draws: tuple[float, float],
    control: str = "control",
) -> OfferChoice:
    """Epsilon-greedy over the unit's eligible arms (control included).

    ``draws`` are two uniforms in [0, 1): the first decides whether to explore, the second which
    arm; passing them in keeps this pure (serving derives them from a hash, tests fix them).
    The logged propensity is what the next uplift model needs to learn from the outcome.
    """
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    arms = [control, *(r.offer_id for r in ranked)]
    greedy = greedy_arm(ranked, served_policy, control)
    explore, pick = draws
    explored = explore < epsilon
    chosen = arms[min(int(pick * len(arms)), len(arms) - 1)] if explored else greedy
    propensity = (1 - epsilon) * (chosen == greedy) + epsilon / len(arms)
    return OfferChoice(chosen=chosen, greedy=greedy, explored=explored, propensity=propensity)

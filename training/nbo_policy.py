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
from training.uplift_metrics import paired_policy_difference_ci, policy_value_ipw_ci


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
    received = np.asarray(received_arm).astype(object)
    chosen = learned_arms(uplift_by_arm_on_holdout, arms, control)
    if len(chosen) != len(y):
        raise ValueError(f"uplift has {len(chosen)} rows but y has {len(y)}")

    learned_value, learned_low, learned_high = policy_value_ipw_ci(
        y, chosen, received, propensity, n_boot=n_boot, alpha=alpha, random_state=random_state
    )
    single_values = {}
    for arm in [control, *arms]:
        always = np.full(len(y), arm, dtype=object)
        single_values[str(arm)] = (
            always,
            policy_value_ipw_ci(
                y, always, received, propensity, n_boot=n_boot, alpha=alpha,
                random_state=random_state,
            ),
        )  # fmt: skip
    best_arm = max(single_values, key=lambda a: single_values[a][1][0])
    best_policy, (best_value, best_low, best_high) = single_values[best_arm]
    diff = paired_policy_difference_ci(
        y, chosen, best_policy, received, propensity,
        n_boot=n_boot, alpha=alpha, random_state=random_state,
    )  # fmt: skip
    diff = (float(diff[0]), float(diff[1]), float(diff[2]))
    level = f"{100 * (1 - alpha):g}%"
    gap = f"learned - always {best_arm} = {diff[0]:+.4f}, {level} interval [{diff[1]:+.4f}, {diff[2]:+.4f}]"
    if diff[1] > 0:
        served = "learned"
        reason = f"learned policy beats the best single arm: {gap}"
    else:
        served = best_arm
        verdict = "loses to" if diff[2] < 0 else "does not beat"
        reason = (
            f"learned policy {verdict} the best single arm ({gap}); "
            f"falling back to always {best_arm}"
        )
    share = {str(a): float(np.mean(chosen == a)) for a in [control, *arms]}
    return PolicyDecision(
        served=served,
        learned_value=float(learned_value),
        best_single_arm=best_arm,
        best_single_value=float(best_value),
        difference_ci=diff,
        reason=reason,
        learned_ci=(float(learned_low), float(learned_high)),
        best_single_ci=(float(best_low), float(best_high)),
        single_arm_values={a: float(v[1][0]) for a, v in single_values.items()},
        learned_arm_share=share,
    )

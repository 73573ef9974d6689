"""Uplift and off-policy metrics as pure functions on arrays.

Curves follow scikit-uplift's conventions: units are ranked by predicted uplift, descending;
tied scores form one group and the curve is evaluated only at the end of each group (so the
order of tied units never matters), and every curve starts at (0, 0). Areas use the trapezoid
rule and are measured above the random line from (0, 0) to (n, curve(n)).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import numpy as np

STRATEGIES = ("overall", "by_group")
# Bootstrap resamples are drawn in chunks of at most this many indices, to bound memory.
_BOOT_CHUNK = 5_000_000


def _check_uplift_inputs(
    y_true, uplift, treatment, probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three arrays as floats, checked; with ``probabilities`` the outcomes may be any
    probability in [0, 1] (expected outcomes), else only 0 and 1."""
    y_true, uplift, treatment = (np.asarray(a) for a in (y_true, uplift, treatment))
    if not (y_true.ndim == uplift.ndim == treatment.ndim == 1):
        raise ValueError("y_true, uplift and treatment must be 1-D arrays")
    if not len(y_true) == len(uplift) == len(treatment):
        raise ValueError(
            "y_true, uplift and treatment must have the same length, got "
            f"{len(y_true)}, {len(uplift)} and {len(treatment)}"
        )
    if probabilities:
        y_true = y_true.astype(float)
        if not (np.isfinite(y_true).all() and (y_true >= 0).all() and (y_true <= 1).all()):
            raise ValueError("the outcome probabilities must lie in [0, 1]")
    elif not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isin(treatment, (0, 1)).all():
        raise ValueError("treatment must hold only 0 (control) and 1 (treated)")
    if not (np.any(treatment == 1) and np.any(treatment == 0)):
        raise ValueError("treatment must contain both 0 (control) and 1 (treated) units")
    uplift = uplift.astype(float)
    if not np.isfinite(uplift).all():
        raise ValueError("uplift must hold only finite numbers")
    return y_true.astype(float), uplift, treatment.astype(float)


def _cumulative_counts(y_true, uplift, treatment):
    """Units targeted, treated/control counts and responders at the end of each tie group."""
    order = np.argsort(-uplift, kind="stable")
    y, u, t = y_true[order], uplift[order], treatment[order]
    ends = np.r_[np.flatnonzero(np.diff(u)), len(u) - 1]
    n_all = ends + 1.0
    n_t = np.cumsum(t)[ends]
    y_t = np.cumsum(y * t)[ends]
    y_c = np.cumsum(y * (1 - t))[ends]
    return n_all, n_t, n_all - n_t, y_t, y_c


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _qini(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    n_all, n_t, n_c, y_t, y_c = _cumulative_counts(y_true, uplift, treatment)
    values = y_t - y_c * _safe_div(n_t, n_c)
    return np.r_[0.0, n_all], np.r_[0.0, values]


def _uplift(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    n_all, n_t, n_c, y_t, y_c = _cumulative_counts(y_true, uplift, treatment)
    values = (_safe_div(y_t, n_t) - _safe_div(y_c, n_c)) * n_all
    return np.r_[0.0, n_all], np.r_[0.0, values]


def _area_above_random(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.trapezoid(y, x) - x[-1] * y[-1] / 2)


def _normalized(actual: float, perfect: float, name: str) -> float:
    if perfect == 0:
        raise ValueError(
            f"{name} cannot be normalized: the perfect curve has no area above random "
            "(e.g. no responders); use normalize=False"
        )
    return actual / perfect


def qini_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: ``x`` units targeted, ``y`` = Y_t(k) - Y_c(k) * N_t(k) / N_c(k).

    The control term is 0 while no control unit is in the top k.
    """
    return _qini(*_check_uplift_inputs(y_true, uplift, treatment))


def perfect_qini_curve(y_true, treatment) -> tuple[np.ndarray, np.ndarray]:
    """Oracle Qini curve, as scikit-uplift's ``perfect_qini_curve(negative_effect=True)``.

    The oracle ranks treated responders first, control responders last and everyone else
    (non-responders, one tie group) in between: score ``y * t - y * (1 - t)``.
    """
    y, _, t = _check_uplift_inputs(y_true, np.zeros(np.shape(y_true)), treatment)
    return _qini(y, y * t - y * (1 - t), t)


def qini_coefficient(y_true, uplift, treatment, normalize: bool = True) -> float:
    """Area between the Qini curve and the random line; divided by the oracle's if normalize.

    1.0 for an oracle ranking, about 0 for a random one, negative for a reversed one.
    """
    y, u, t = _check_uplift_inputs(y_true, uplift, treatment)
    actual = _area_above_random(*_qini(y, u, t))
    if not normalize:
        return actual
    perfect = _area_above_random(*_qini(y, y * t - y * (1 - t), t))
    return _normalized(actual, perfect, "qini_coefficient")


def expected_qini_area(p_outcome, uplift, treatment) -> float:
    """The Qini area above random of a ranking with the outcome draws integrated out.

    ``p_outcome`` is each unit's probability of the outcome under the arm it got, which only a
    simulator knows. For a fixed ranking and assignment the Qini curve is linear in the
    outcomes, so its area with every outcome replaced by its probability is exactly the mean
    area over all draws of the outcomes. Two rankings compared this way on the same units
    differ by how they rank, not by the luck of one draw.
    """
    return _area_above_random(*_qini(*_check_uplift_inputs(p_outcome, uplift, treatment, True)))


def uplift_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: ``x`` units targeted, ``y`` = (treated rate - control rate in top k) * k.

    A group's rate counts as 0 while it has no unit in the top k.
    """
    return _uplift(*_check_uplift_inputs(y_true, uplift, treatment))


def _perfect_uplift_score(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    # scikit-uplift's perfect_uplift_curve: persuadables (y == t) first, then whichever of
    # treated non-responders / control responders is rarer is put in the middle.
    control_responders = np.sum((y == 1) & (t == 0))
    treated_nonresponders = np.sum((y == 0) & (t == 1))
    summand = y if control_responders > treated_nonresponders else t
    return 2 * (y == t) + summand


def perfect_uplift_curve(y_true, treatment) -> tuple[np.ndarray, np.ndarray]:
    """Oracle uplift curve, as scikit-uplift's ``perfect_uplift_curve``.

    Score ``2 * (y == t) + s`` where ``s`` is ``y`` if control responders outnumber treated
    non-responders, else ``t``.
    """
    y, _, t = _check_uplift_inputs(y_true, np.zeros(np.shape(y_true)), treatment)
    return _uplift(y, _perfect_uplift_score(y, t), t)


def auuc(y_true, uplift, treatment, normalize: bool = True) -> float:
    """Area between the uplift curve and the random line; divided by the oracle's if normalize.

    Normalized, this is scikit-uplift's ``uplift_auc_score``.
    """
    y, u, t = _check_uplift_inputs(y_true, uplift, treatment)
    actual = _area_above_random(*_uplift(y, u, t))
    if not normalize:
        return actual
    perfect = _area_above_random(*_uplift(y, _perfect_uplift_score(y, t), t))
    return _normalized(actual, perfect, "auuc")


def _top_count(k: float, n: int, what: str) -> int:
    """Units in the top ``k``: an int counts units, a float is a fraction (floored)."""
    kind = np.asarray(k).dtype.kind  # as scikit-uplift: the dtype decides count vs fraction
    if np.ndim(k) != 0 or kind not in "iuf":
        raise ValueError(f"k must be an int (units) or a float fraction in (0, 1], got {k!r}")
    if kind in "iu":
        if not 1 <= k <= n:
            raise ValueError(f"k as a count of units must be in [1, {n}] for {what}, got {k}")
        return int(k)
    if not 0 < k <= 1:
        raise ValueError(f"k as a fraction must be in (0, 1], got {k}")
    size = int(n * k)
    if size == 0:
        raise ValueError(f"k={k} selects no unit among {n} {what}; increase k")
    return size


def uplift_at_k(y_true, uplift, treatment, k: float = 0.3, strategy: str = "overall") -> float:
    """Treated response rate minus control response rate among the top ``k`` by uplift.

    ``strategy="overall"`` takes the top k of all units; ``"by_group"`` the top k within the
    treated and within the control group separately. A float ``k`` is a fraction in (0, 1]
    (``int(n * k)`` units, as scikit-uplift), an int a number of units.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    y, u, t = _check_uplift_inputs(y_true, uplift, treatment)
    order = np.argsort(-u, kind="stable")
    y, t = y[order], t[order]
    if strategy == "overall":
        size = _top_count(k, len(y), "units")
        y_top, t_top = y[:size], t[:size]
        for label, group in (("treated", 1), ("control", 0)):
            if not np.any(t_top == group):
                raise ValueError(f"the top {size} units hold no {label} unit; increase k")
        return float(y_top[t_top == 1].mean() - y_top[t_top == 0].mean())
    y_t, y_c = y[t == 1], y[t == 0]
    top_t = y_t[: _top_count(k, len(y_t), "treated units")]
    top_c = y_c[: _top_count(k, len(y_c), "control units")]
    return float(top_t.mean() - top_c.mean())


def ipw_terms(y_true, chosen_arm, received_arm, propensity, cost) -> np.ndarray:
    """Per-unit IPW terms 1[chosen == received] * (y - cost of received) / propensity."""
    y = np.asarray(y_true, dtype=float)
    chosen, received = np.asarray(chosen_arm), np.asarray(received_arm)
    p = np.asarray(propensity, dtype=float)
    if not (y.ndim == chosen.ndim == received.ndim == p.ndim == 1):
        raise ValueError("y_true, chosen_arm, received_arm and propensity must be 1-D arrays")
    if not len(y) == len(chosen) == len(received) == len(p):
        raise ValueError(
            "y_true, chosen_arm, received_arm and propensity must have the same length, got "
            f"{len(y)}, {len(chosen)}, {len(received)} and {len(p)}"
        )
    if len(y) == 0:
        raise ValueError("y_true must hold at least one unit")
    if not np.isfinite(y).all():
        raise ValueError("y_true must hold only finite numbers")
    if not (np.isfinite(p).all() and np.all(p > 0) and np.all(p <= 1)):
        raise ValueError("propensity must be in (0, 1] for every unit")
    if cost is None:
        c = np.zeros_like(y)
    elif isinstance(cost, Mapping):
        missing = [a.item() for a in np.unique(received) if a.item() not in cost]
        if missing:
            raise ValueError(f"cost has no entry for received arm(s) {missing}")
        c = np.array([cost[a] for a in received.tolist()], dtype=float)
    else:
        c = np.asarray(cost, dtype=float)
        if c.shape != y.shape:
            raise ValueError(
                "cost must be None, a mapping arm -> cost, or one cost per unit "
                f"(length {len(y)}), got shape {c.shape}"
            )
    return np.where(chosen == received, (y - c) / p, 0.0)


def _bootstrap_ci(
    terms: np.ndarray, n_boot: int, alpha: float, random_state
) -> tuple[float, float, float]:
    """Point mean and percentile interval of the mean over units resampled with replacement."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(random_state)
    n = len(terms)
    rows = max(1, _BOOT_CHUNK // n)
    means = np.concatenate(
        [
            terms[rng.integers(0, n, size=(min(rows, n_boot - start), n))].mean(axis=1)
            for start in range(0, n_boot, rows)
        ]
    )
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(terms.mean()), float(low), float(high)


def policy_value_ipw(y_true, chosen_arm, received_arm, propensity, cost=None) -> float:
    """Inverse-propensity estimate of the mean net outcome if every unit got ``chosen_arm``.

    ``propensity[i]`` is the logging policy's probability of ``received_arm[i]``, in (0, 1].
    ``cost`` is None (no cost), a mapping arm -> cost, or the cost of each unit's received arm.
    """
    return float(ipw_terms(y_true, chosen_arm, received_arm, propensity, cost).mean())


def policy_value_ipw_ci(
    y_true,
    chosen_arm,
    received_arm,
    propensity,
    cost=None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    random_state=None,
) -> tuple[float, float, float]:
    """``(value, low, high)``: the IPW value and its (1 - alpha) percentile bootstrap interval."""
    terms = ipw_terms(y_true, chosen_arm, received_arm, propensity, cost)
    return _bootstrap_ci(terms, n_boot, alpha, random_state)


def paired_policy_difference_ci(
    y_true,
    arm_a,
    arm_b,
    received_arm,
    propensity,
    n_boot: int = 1000,
    alpha: float = 0.05,
    random_state=None,
    cost=None,
) -> tuple[float, float, float]:
    """IPW value of policy a minus policy b, with a paired bootstrap interval.

    Both policies are scored on the same resampled units, so the noise they share cancels.
    """
    terms_a = ipw_terms(y_true, arm_a, received_arm, propensity, cost)
    terms_b = ipw_terms(y_true, arm_b, received_arm, propensity, cost)
    return _bootstrap_ci(terms_a - terms_b, n_boot, alpha, random_state)


def incremental_policy_terms(
    y_true, chosen_arm, received_arm, propensity, value: Mapping, cost: Mapping, control="control"
) -> np.ndarray:
    """Per-unit IPW terms of a policy's net value over sending nothing.

    For unit i with the policy's arm a = chosen_arm[i] (value V_a, cost c_a; control has 0 and
    0), the term is ``1[received == a] (y V_a - c_a) / p - 1[received == control] y V_a / p``.
    Its mean estimates E[(Y(a) - Y(control)) V_a - c_a], the quantity the next-best-offer ranks
    by (uplift x value - cost), so "always control" is worth exactly 0.
    """
    y = np.asarray(y_true, dtype=float)
    chosen = np.asarray(chosen_arm).astype(object)
    received = np.asarray(received_arm).astype(object)
    missing = sorted({str(a) for a in np.unique(chosen) if a != control and a not in value})
    if missing:
        raise ValueError(f"value has no entry for chosen arm(s) {missing}")
    missing = sorted({str(a) for a in np.unique(chosen) if a != control and a not in cost})
    if missing:
        raise ValueError(f"cost has no entry for chosen arm(s) {missing}")
    v = np.array([0.0 if a == control else float(value[a]) for a in chosen.tolist()])
    c = np.array([0.0 if a == control else float(cost[a]) for a in chosen.tolist()])
    # validates lengths, finiteness and propensities
    treated = ipw_terms(y * v, chosen, received, propensity, c)
    baseline = ipw_terms(y * v, np.full(len(y), control, dtype=object), received, propensity, None)
    return treated - baseline


def incremental_policy_value_ipw(
    y_true, chosen_arm, received_arm, propensity, value: Mapping, cost: Mapping, control="control"
) -> float:
    """Mean of :func:`incremental_policy_terms`: net value per unit over sending nothing."""
    return float(
        incremental_policy_terms(
            y_true, chosen_arm, received_arm, propensity, value, cost, control
        ).mean()
    )


def bootstrap_mean_ci(
    terms, n_boot: int = 1000, alpha: float = 0.05, random_state=None
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of per-unit terms, with a percentile bootstrap interval."""
    terms = np.asarray(terms, dtype=float)
    if terms.ndim != 1 or len(terms) == 0:
        raise ValueError("terms must be a non-empty 1-D array")
    return _bootstrap_ci(terms, n_boot, alpha, random_state)


def doubly_robust_policy_terms(
    y_true,
    chosen_arm,
    received_arm,
    propensity,
    outcome,
    arms,
    value: Mapping,
    cost: Mapping,
    control="control",
) -> np.ndarray:
    """Per-unit doubly robust (AIPW) terms of a policy's net value over sending nothing.

    ``outcome`` is (n, n_arms): a model's P(y = 1) under each arm, columns in the order of
    ``arms`` (control among them), fitted on other rows. For the policy's arm a (value V_a,
    cost c_a) the term is ``(m_a - m_0) V_a - c_a + 1[received == a] (y - m_a) V_a / p
    - 1[received == control] (y - m_0) V_a / p``; control's term is 0. With known propensities it
    is unbiased whatever the outcome model, and the better the model the smaller its variance.
    """
    y = np.asarray(y_true, dtype=float)
    chosen = np.asarray(chosen_arm).astype(object)
    received = np.asarray(received_arm).astype(object)
    p = np.asarray(propensity, dtype=float)
    m = np.asarray(outcome, dtype=float)
    arms = list(arms)
    if m.shape != (len(y), len(arms)):
        raise ValueError(f"outcome must have shape ({len(y)}, {len(arms)}), got {m.shape}")
    if control not in arms:
        raise ValueError(f"arms must include the control {control!r}")
    # validates lengths and propensities (the IPW part of the estimator)
    ipw_terms(y, chosen, received, p, None)
    column = {a: j for j, a in enumerate(arms)}
    unknown = sorted({str(a) for a in np.unique(chosen) if a not in column})
    if unknown:
        raise ValueError(f"chosen arm(s) {unknown} have no outcome column")
    rows = np.arange(len(y))
    a = np.array([column[x] for x in chosen.tolist()])
    v = np.array([0.0 if x == control else float(value[x]) for x in chosen.tolist()])
    c = np.array([0.0 if x == control else float(cost[x]) for x in chosen.tolist()])
    m_a, m_0 = m[rows, a], m[:, column[control]]
    treated = np.where(received == chosen, (y - m_a) / p, 0.0)
    baseline = np.where(received == control, (y - m_0) / p, 0.0)
    return np.where(chosen == control, 0.0, (m_a - m_0) * v - c + (treated - baseline) * v)

"""The statistics of an experiment readout: pure functions on arrays, no I/O.

- ``difference_in_means``: treatment minus control with Welch's t interval and p-value, for
  binary (rates), count and revenue outcomes alike, optionally CUPED-adjusted by a pre-period
  covariate; and the relative lift (treatment / control - 1) with a delta-method interval.
- ``srm_test``: the sample-ratio-mismatch check, a chi-square test of the arms' counts against
  the shares the design expects.
- ``power`` and ``minimum_detectable_effect`` at the current standard error.
- ``sequential_interval``: an always-valid interval and p-value (the normal-mixture confidence
  sequence of Howard et al. 2021 in its asymptotic form, Waudby-Smith et al. 2023; the same
  boundary as the mSPRT of Johari et al.), so a readout may be looked at every day and stopped
  whenever it excludes zero without raising the false-positive rate above ``alpha``.

Every interval is two-sided at level ``1 - alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

MetricType = Literal["binary", "count", "revenue"]
SRM_ALERT_P = 0.001  # a sample ratio this unlikely means the assignment or the logging is broken
SEQUENTIAL_DESIGN_N = 10_000  # the total sample at which the sequential interval is tightest


@dataclass(frozen=True)
class Lift:
    """Treatment vs control on one outcome. ``diff`` = mean_treatment - mean_control; ``rel`` =
    mean_treatment / mean_control - 1 (NaN when the control mean is not positive). Means are the
    CUPED-adjusted ones when a covariate was given (``theta`` != 0)."""

    n_treatment: int
    n_control: int
    mean_treatment: float
    mean_control: float
    diff: float
    diff_low: float
    diff_high: float
    se: float
    df: float
    p_value: float
    rel: float
    rel_low: float
    rel_high: float
    rel_se: float  # the relative lift's delta-method standard error
    theta: float = 0.0  # the CUPED coefficient
    variance_reduction: float = 0.0  # share of the outcome's variance the covariate removed


def metric_type(values: np.ndarray) -> MetricType:
    """``binary`` for 0/1 values, ``count`` for non-negative integers, else ``revenue``."""
    y = np.asarray(values, dtype=float)
    if np.isin(y, (0.0, 1.0)).all():
        return "binary"
    if (y >= 0).all() and (y == np.round(y)).all():
        return "count"
    return "revenue"


def _as_outcome(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(values, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {y.shape}")
    if len(y) < 2:
        raise ValueError(f"{name} needs at least 2 values, got {len(y)}")
    if not np.isfinite(y).all():
        raise ValueError(f"{name} holds missing or infinite values")
    return y


def cuped_theta(y: np.ndarray, x: np.ndarray) -> float:
    """The CUPED coefficient cov(y, x) / var(x) (0 when x does not vary)."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    var_x = x.var()
    return 0.0 if var_x <= 0 else float(((x - x.mean()) * (y - y.mean())).mean() / var_x)


def cuped_adjust(
    y_treatment: np.ndarray, y_control: np.ndarray, x_treatment: np.ndarray, x_control: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Both arms' outcomes minus theta x (covariate - its pooled mean), theta from the pooled
    data (Deng et al. 2013). The covariate must be measured before the assignment, so the
    adjustment removes noise and no effect; the adjusted means differ by the same expected
    amount."""
    y = np.concatenate([y_treatment, y_control])
    x = np.concatenate([x_treatment, x_control])
    theta = cuped_theta(y, x)
    centre = x.mean()
    return (
        y_treatment - theta * (x_treatment - centre),
        y_control - theta * (x_control - centre),
        theta,
    )


def difference_in_means(
    y_treatment: Sequence[float] | np.ndarray,
    y_control: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    *,
    x_treatment: Sequence[float] | np.ndarray | None = None,
    x_control: Sequence[float] | np.ndarray | None = None,
) -> Lift:
    """Welch's two-sample comparison of means (unequal variances, Welch-Satterthwaite degrees
    of freedom), with CUPED when the pre-period covariates ``x_*`` are given.

    The relative lift's interval is the delta method's: Var(m_t / m_c) ~ v_t / m_c^2 +
    m_t^2 v_c / m_c^4 with v the squared standard errors of the means.
    """
    _check_alpha(alpha)
    yt, yc = _as_outcome(y_treatment, "y_treatment"), _as_outcome(y_control, "y_control")
    theta, reduction = 0.0, 0.0
    if (x_treatment is None) != (x_control is None):
        raise ValueError("give the covariate for both arms (x_treatment and x_control) or neither")
    if x_treatment is not None and x_control is not None:
        xt, xc = _as_outcome(x_treatment, "x_treatment"), _as_outcome(x_control, "x_control")
        if len(xt) != len(yt) or len(xc) != len(yc):
            raise ValueError("each covariate needs one value per outcome of its arm")
        before = np.concatenate([yt, yc]).var()
        yt, yc, theta = cuped_adjust(yt, yc, xt, xc)
        after = np.concatenate([yt, yc]).var()
        reduction = float(1 - after / before) if before > 0 else 0.0
    nt, nc = len(yt), len(yc)
    mt, mc = float(yt.mean()), float(yc.mean())
    vt, vc = yt.var(ddof=1) / nt, yc.var(ddof=1) / nc  # squared standard errors of the means
    diff = mt - mc
    se = float(np.sqrt(vt + vc))
    if se > 0:
        df = float(se**4 / (vt**2 / (nt - 1) + vc**2 / (nc - 1)))
        quantile = float(stats.t.ppf(1 - alpha / 2, df))
        p_value = float(2 * stats.t.sf(abs(diff) / se, df))
    else:  # no variance in either arm: the difference is what it is
        df, quantile, p_value = float(nt + nc - 2), 0.0, 1.0 if diff == 0 else 0.0
    rel, rel_se = relative_lift(mt, mc, vt, vc)
    return Lift(
        n_treatment=nt,
        n_control=nc,
        mean_treatment=mt,
        mean_control=mc,
        diff=diff,
        diff_low=diff - quantile * se,
        diff_high=diff + quantile * se,
        se=se,
        df=df,
        p_value=p_value,
        rel=rel,
        rel_low=rel - quantile * rel_se,
        rel_high=rel + quantile * rel_se,
        rel_se=rel_se,
        theta=theta,
        variance_reduction=reduction,
    )


def relative_lift(
    mean_treatment: float, mean_control: float, var_treatment: float, var_control: float
) -> tuple[float, float]:
    """``mean_treatment / mean_control - 1`` and its delta-method standard error, from the
    means and their squared standard errors; NaN when the control mean is not positive."""
    if not mean_control > 0:
        return float("nan"), float("nan")
    rel = mean_treatment / mean_control - 1
    var = var_treatment / mean_control**2 + mean_treatment**2 * var_control / mean_control**4
    return float(rel), float(np.sqrt(var))


# -------------------------------------------------------------------------- sample ratio check
@dataclass(frozen=True)
class SrmResult:
    counts: tuple[int, ...]
    expected_shares: tuple[float, ...]
    chi2: float
    p_value: float
    alert: bool  # p_value < SRM_ALERT_P


def srm_test(
    counts: Sequence[int], expected_shares: Sequence[float], alert_p: float = SRM_ALERT_P
) -> SrmResult:
    """Chi-square goodness of fit of the arms' ``counts`` to the design's ``expected_shares``
    (normalized to sum to 1). ``alert`` when p < ``alert_p`` (0.001: at that level a healthy
    experiment read every day for years still almost never trips it)."""
    observed = np.asarray(counts, dtype=float)
    shares = np.asarray(expected_shares, dtype=float)
    if observed.shape != shares.shape or len(observed) < 2:
        raise ValueError("srm_test needs one count and one expected share per arm, 2 arms or more")
    if (observed < 0).any() or (shares <= 0).any():
        raise ValueError("counts must be >= 0 and expected shares > 0")
    total = observed.sum()
    if total == 0:
        return SrmResult(
            tuple(int(c) for c in observed), tuple(shares / shares.sum()), 0.0, 1.0, False
        )
    shares = shares / shares.sum()
    chi2, p_value = stats.chisquare(observed, f_exp=total * shares)
    return SrmResult(
        counts=tuple(int(c) for c in observed),
        expected_shares=tuple(float(s) for s in shares),
        chi2=float(chi2),
        p_value=float(p_value),
        alert=bool(p_value < alert_p),
    )


# ----------------------------------------------------------------------------- power and MDE
def power(effect: float, se: float, alpha: float = 0.05) -> float:
    """Chance that a two-sided test at ``alpha`` finds a true difference ``effect`` when the
    estimate's standard error is ``se`` (normal approximation)."""
    _check_alpha(alpha)
    if not se > 0:
        return float("nan")
    z = stats.norm.ppf(1 - alpha / 2)
    shift = abs(effect) / se
    return float(stats.norm.cdf(shift - z) + stats.norm.cdf(-shift - z))


def minimum_detectable_effect(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference found with probability ``power`` by a two-sided test at
    ``alpha``, at standard error ``se``: (z_{1-alpha/2} + z_power) x se."""
    _check_alpha(alpha)
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


# ----------------------------------------------------------------------------- always valid
def mixture_scale(design_n: float, alpha: float = 0.05) -> float:
    """rho^2 of the normal mixture that makes the confidence sequence tightest at a total
    sample of ``design_n`` (Howard et al. 2021, section 3.5):
    (2 log(1/alpha) + log(1 + 2 log(1/alpha))) / design_n."""
    _check_alpha(alpha)
    if not design_n > 0:
        raise ValueError(f"design_n must be > 0, got {design_n}")
    two_log = 2 * np.log(1 / alpha)
    return float((two_log + np.log1p(two_log)) / design_n)


def sequential_interval(
    diff: float | np.ndarray,
    se: float | np.ndarray,
    n: float | np.ndarray,
    alpha: float = 0.05,
    design_n: float = SEQUENTIAL_DESIGN_N,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Always-valid ``(low, high, p_value)`` for an estimate ``diff`` with standard error ``se``
    after ``n`` units in total (arrays broadcast: one value per look, or per experiment).

    With m = n rho^2 (``mixture_scale``), the half-width is
    se x sqrt(2 (m + 1) / m x log(sqrt(m + 1) / alpha)) and the p-value
    min(1, sqrt(m + 1) exp(-z^2 m / (2 (m + 1)))), z = diff / se: the interval excludes 0
    exactly when p < alpha. Over every look at once, the chance that any interval misses the
    truth is at most ``alpha`` (asymptotically, as the normal approximation of the means holds).
    ``design_n`` must be fixed before the data are seen; it only moves where the interval is
    tightest, never its validity.
    """
    rho2 = mixture_scale(design_n, alpha)
    diff, se, n = (np.asarray(v, dtype=float) for v in (diff, se, n))
    m = np.maximum(n, 1.0) * rho2
    half = se * np.sqrt(2 * (m + 1) / m * np.log(np.sqrt(m + 1) / alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = np.where(se > 0, (diff / se) ** 2, np.where(diff == 0, 0.0, np.inf))
    p_value = np.minimum(1.0, np.sqrt(m + 1) * np.exp(-z2 * m / (2 * (m + 1))))
    return diff - half, diff + half, p_value


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

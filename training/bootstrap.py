"""Comparing two models on the same held-out rows: paired-bootstrap intervals of each metric's
difference, the check that a model is better than chance, and the rule that crowns a challenger
champion. Pure: arrays in, numbers out (``training.compare`` does the registry side)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

import numpy as np

from core.config import CompareMetric
from core.errors import FunnelError
from training.metrics import lift_at

if TYPE_CHECKING:
    from core.config import PromotionRuleConfig

METRICS: tuple[str, ...] = get_args(CompareMetric)
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "brier": False, "log_loss": False}
LOG_LOSS_EPS = 1e-7  # the clipping classification_report uses, so values match the run's
CHUNK = 64  # resamples per vectorized block (memory: CHUNK x rows floats)


class CompareError(FunnelError, ValueError):
    """A comparison or registry move cannot run; the message names what is wrong."""


Interval = tuple[float, float]
CHANCE_AUC = 0.5  # the ROC AUC of a random order


def side_of(interval: Interval, bound: float) -> int:
    """+1 when the interval lies above ``bound``, -1 when it lies below, 0 when it holds it
    (or is undefined)."""
    low, high = interval
    if low > bound:
        return 1
    if high < bound:
        return -1
    return 0


def interval_text(value: float, interval: Interval, signed: bool = False) -> str:
    """``value [95% CI low, high]`` with four decimals (and a sign, for differences)."""
    f = "+.4f" if signed else ".4f"
    return f"{value:{f}} [95% CI {interval[0]:{f}}, {interval[1]:{f}}]"


@dataclass(frozen=True)
class MetricComparison:
    """One metric of models a and b on the same rows, each with its 95% bootstrap interval.

    ``difference`` is oriented so that positive means b is better: b - a for ROC AUC and PR AUC,
    a - b for Brier and log loss (lower is better there)."""

    metric: str
    a: float
    a_ci: Interval
    b: float
    b_ci: Interval
    difference: float
    difference_ci: Interval
    higher_is_better: bool

    @property
    def verdict(self) -> str:
        """Where the difference's interval lies: above 0, below 0, or around it."""
        return {1: "b better", -1: "a better", 0: "no clear difference"}[
            side_of(self.difference_ci, 0.0)
        ]


@dataclass(frozen=True)
class PredictiveCheck:
    """Whether a model ranks better than chance on held-out rows: its ROC AUC interval lies
    above 0.5 and its top 10% holds more positives than average (lift > 1)."""

    predictive: bool
    roc_auc: float
    roc_auc_ci: Interval
    lift_at_10pct: float

    @classmethod
    def of(
        cls, y: np.ndarray, prob: np.ndarray, roc_auc: float, roc_auc_ci: Interval
    ) -> PredictiveCheck:
        """The check of probabilities ``prob`` of labels ``y``, whose ROC AUC and interval
        are known."""
        lift = lift_at(y, prob, 0.1)
        return cls(is_predictive(roc_auc_ci, lift), roc_auc, roc_auc_ci, lift)

    @property
    def reason(self) -> str:
        auc = interval_text(self.roc_auc, self.roc_auc_ci)
        text = f"ROC AUC {auc}, lift@10% {self.lift_at_10pct:.2f}"
        if self.predictive:
            return text
        why = []
        if side_of(self.roc_auc_ci, CHANCE_AUC) != 1:
            why.append(f"the AUC interval does not lie above {CHANCE_AUC}")
        if not self.lift_at_10pct > 1:
            why.append("lift@10% is not above 1")
        return f"{text}: {' and '.join(why)}"


@dataclass(frozen=True)
class Verdict:
    wins: bool
    reason: str


def _check_inputs(
    y: np.ndarray, probs: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError("y must be a non-empty 1-D array")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must hold only 0 and 1")
    if y.min() == y.max():
        raise ValueError("y must hold both classes (ROC AUC is undefined otherwise)")
    out = []
    for p in probs:
        p = np.asarray(p, dtype=float)
        if p.shape != y.shape:
            raise ValueError(f"probabilities of shape {p.shape} do not match y's {y.shape}")
        if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
            raise ValueError("probabilities must be finite and within [0, 1]")
        out.append(p)
    return y, out


def _resample_indices(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The rows drawn by each resample, in blocks of (resamples, rows). Models scored on the
    same blocks form a paired bootstrap."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, CHUNK):
        yield rng.integers(0, n, size=(min(CHUNK, n_boot - start), n))


class _Scored:
    """One model's scores, grouped once by distinct value in descending order, so each
    resample's ranking metrics are counts per group (tied scores form one group, as in
    sklearn)."""

    def __init__(self, y: np.ndarray, prob: np.ndarray) -> None:
        order = np.argsort(-prob, kind="stable")
        ranked = prob[order]
        new_group = np.r_[True, ranked[1:] != ranked[:-1]]
        self.gid = np.empty(len(prob), dtype=np.int64)
        self.gid[order] = np.cumsum(new_group) - 1
        self.groups = int(new_group.sum())
        self.y = y
        clipped = np.clip(prob, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        self.sq_err = (prob - y) ** 2
        self.nll = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))

    def metrics(self, idx: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Each metric per resample (a row of ``idx``: the rows drawn); NaN where undefined."""
        out: dict[str, np.ndarray] = {}
        if "brier" in names:
            out["brier"] = self.sq_err[idx].mean(axis=1)
        if "log_loss" in names:
            out["log_loss"] = self.nll[idx].mean(axis=1)
        if "roc_auc" in names or "pr_auc" in names:
            size, k = len(idx), self.groups
            cells = (self.gid[idx] + (np.arange(size) * k)[:, None]).ravel()
            drawn = np.bincount(cells, minlength=size * k).reshape(size, k)
            pos = np.bincount(cells, weights=self.y[idx].ravel(), minlength=size * k)
            pos = pos.reshape(size, k)
            neg = drawn - pos
            n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                if "roc_auc" in names:
                    # descending scores: a positive beats the negatives of later groups, ties 1/2
                    below = n_neg[:, None] - np.cumsum(neg, axis=1)
                    out["roc_auc"] = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
                if "pr_auc" in names:  # average precision: recall steps x precision
                    precision = np.cumsum(pos, axis=1) / np.cumsum(drawn, axis=1)
                    out["pr_auc"] = np.nansum(pos * precision, axis=1) / n_pos
            undefined = (n_pos == 0) | (n_neg == 0)
            for name in ("roc_auc", "pr_auc"):
                if name in out:
                    out[name][undefined] = np.nan
        return out


def _interval(values: np.ndarray) -> Interval:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    low, high = np.percentile(values, [2.5, 97.5])
    return (float(low), float(high))


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    names = list(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    return names


def bootstrap_compare(
    y: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    metrics: Sequence[str] = METRICS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, MetricComparison]:
    """Models a and b scored on the same rows: per metric, each value and their difference
    (positive = b better) with 95% percentile intervals from one paired bootstrap over rows
    (both models see the same resampled rows, so the shared row noise cancels out)."""
    names = _check_metrics(metrics)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    y, (prob_a, prob_b) = _check_inputs(y, [prob_a, prob_b])
    a, b = _Scored(y, prob_a), _Scored(y, prob_b)
    every = np.arange(len(y))[None, :]
    point_a, point_b = a.metrics(every, names), b.metrics(every, names)
    boot_a: dict[str, list[np.ndarray]] = {m: [] for m in names}
    boot_b: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for idx in _resample_indices(len(y), n_boot, seed):
        for store, scored in ((boot_a, a), (boot_b, b)):
            for m, values in scored.metrics(idx, names).items():
                store[m].append(values)
    out = {}
    for m in names:
        sign = 1.0 if HIGHER_IS_BETTER[m] else -1.0
        va, vb = np.concatenate(boot_a[m]), np.concatenate(boot_b[m])
        out[m] = MetricComparison(
            metric=m,
            a=float(point_a[m][0]),
            a_ci=_interval(va),
            b=float(point_b[m][0]),
            b_ci=_interval(vb),
            difference=float(sign * (point_b[m][0] - point_a[m][0])),
            difference_ci=_interval(sign * (vb - va)),
            higher_is_better=HIGHER_IS_BETTER[m],
        )
    return out


def roc_auc_interval(
    y: np.ndarray, prob: np.ndarray, n_boot: int = 500, seed: int = 0
) -> tuple[float, Interval]:
    """ROC AUC and its 95% bootstrap interval over rows."""
    y, (prob,) = _check_inputs(y, [prob])
    scored = _Scored(y, prob)
    point = float(scored.metrics(np.arange(len(y))[None, :], ["roc_auc"])["roc_auc"][0])
    blocks = _resample_indices(len(y), n_boot, seed)
    boot = [scored.metrics(idx, ["roc_auc"])["roc_auc"] for idx in blocks]
    return point, _interval(np.concatenate(boot))


def is_predictive(roc_auc_ci: Interval, lift: float) -> bool:
    """The rule: the AUC interval lies above 0.5 (so it excludes chance) and lift@10% > 1."""
    return bool(side_of(roc_auc_ci, CHANCE_AUC) == 1 and lift > 1)


def predictive_check(
    y: np.ndarray, prob: np.ndarray, n_boot: int = 500, seed: int = 0
) -> PredictiveCheck:
    """Is a model better than chance on these held-out rows (see ``is_predictive``)?"""
    auc, ci = roc_auc_interval(y, prob, n_boot, seed)
    return PredictiveCheck.of(y, prob, auc, ci)


def champion_verdict(
    comparison: Mapping[str, MetricComparison],
    rule: PromotionRuleConfig,
    challenger: PredictiveCheck,
) -> Verdict:
    """Whether the challenger (b) wins the champion's place: it is predictive, its improvement
    on ``rule.metric`` exceeds ``rule.min_improvement`` and, with
    ``rule.require_interval_above``, the lower end of the improvement's interval is above 0."""
    if not challenger.predictive:
        return Verdict(False, f"challenger is not predictive ({challenger.reason})")
    if rule.metric not in comparison:
        raise ValueError(f"the comparison has no {rule.metric!r}; it holds {sorted(comparison)}")
    c = comparison[rule.metric]
    better = "higher" if c.higher_is_better else "lower"
    improvement = interval_text(c.difference, c.difference_ci, signed=True)
    text = f"{rule.metric} improvement {improvement} ({better} is better)"
    if not c.difference > rule.min_improvement:
        return Verdict(False, f"{text} does not exceed min_improvement {rule.min_improvement:g}")
    if rule.require_interval_above and side_of(c.difference_ci, 0.0) != 1:
        return Verdict(False, f"{text}: the interval does not lie above 0")
    return Verdict(True, f"{text} exceeds min_improvement {rule.min_improvement:g}")

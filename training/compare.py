"""Champion vs challenger: paired-bootstrap comparison on the same held-out rows, the promotion
rule, and the registry moves (promote, roll back) with their history.

The core is pure (arrays in, numbers out): ``bootstrap_compare``, ``predictive_check`` and
``promotion_verdict``. ``compare_models`` and ``rollback`` are the jobs: they read the registry,
rebuild the test rows training evaluated on, and move aliases.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from core.config import CompareMetric
from training.metrics import lift_at

if TYPE_CHECKING:
    from core.config import Config, PromotionRuleConfig

METRICS: tuple[str, ...] = get_args(CompareMetric)
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "brier": False, "log_loss": False}
LOG_LOSS_EPS = 1e-7  # the clipping classification_report uses, so values match the run's
CHUNK = 64  # resamples per vectorized block (memory: CHUNK x rows floats)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"
HISTORY_TAG = "champion_history"
HISTORY_MAX_CHARS = 5000  # a registered-model tag value holds 5000 characters on SQL stores


class CompareError(ValueError):
    """A comparison or registry move cannot run; the message names what is wrong."""


# -- pure core ------------------------------------------------------------------------------------
Interval = tuple[float, float]


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
        low, high = self.difference_ci
        if low > 0:
            return "b better"
        if high < 0:
            return "a better"
        return "no clear difference"


@dataclass(frozen=True)
class PredictiveCheck:
    """Whether a model ranks better than chance on held-out rows: its ROC AUC interval lies
    above 0.5 and its top 10% holds more positives than average (lift > 1)."""

    predictive: bool
    roc_auc: float
    roc_auc_ci: Interval
    lift_at_10pct: float

    @property
    def reason(self) -> str:
        low, high = self.roc_auc_ci
        text = f"ROC AUC {self.roc_auc:.4f} [95% CI {low:.4f}, {high:.4f}], lift@10% {self.lift_at_10pct:.2f}"
        if self.predictive:
            return text
        why = []
        if not low > 0.5:
            why.append("the AUC interval does not lie above 0.5")
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
    return bool(roc_auc_ci[0] > 0.5 and lift > 1)


def predictive_check(
    y: np.ndarray, prob: np.ndarray, n_boot: int = 500, seed: int = 0
) -> PredictiveCheck:
    """Is a model better than chance on these held-out rows (see ``is_predictive``)?"""
    auc, ci = roc_auc_interval(y, prob, n_boot, seed)
    lift = lift_at(y, prob, 0.1)
    return PredictiveCheck(is_predictive(ci, lift), auc, ci, lift)


def promotion_verdict(
    comparison: Mapping[str, MetricComparison],
    rule: PromotionRuleConfig,
    challenger: PredictiveCheck,
) -> Verdict:
    """The promotion rule: the challenger (b) is predictive, its improvement on ``rule.metric``
    exceeds ``rule.min_improvement`` and, with ``rule.require_interval_above``, the lower end
    of the improvement's interval is above 0."""
    if not challenger.predictive:
        return Verdict(False, f"challenger is not predictive ({challenger.reason})")
    if rule.metric not in comparison:
        raise ValueError(f"the comparison has no {rule.metric!r}; it holds {sorted(comparison)}")
    c = comparison[rule.metric]
    low, high = c.difference_ci
    better = "higher" if c.higher_is_better else "lower"
    text = f"{rule.metric} improvement {c.difference:+.4f} [95% CI {low:+.4f}, {high:+.4f}] ({better} is better)"
    if not c.difference > rule.min_improvement:
        return Verdict(False, f"{text} does not exceed min_improvement {rule.min_improvement:g}")
    if rule.require_interval_above and not low > 0:
        return Verdict(False, f"{text}: the interval does not lie above 0")
    return Verdict(True, f"{text} exceeds min_improvement {rule.min_improvement:g}")


# -- registry (I/O) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    ref: str  # what was asked for: an alias or a version number
    version: str
    aliases: tuple[str, ...]  # the version's aliases before any move

    @property
    def label(self) -> str:
        return (
            f"{self.ref} (version {self.version})"
            if self.ref != self.version
            else f"version {self.version}"
        )


@dataclass
class CompareResult:
    kind: str
    model_name: str
    a: ModelRef
    b: ModelRef
    rows: int
    comparison: dict[str, MetricComparison]
    rule: PromotionRuleConfig
    predictive: dict[str, PredictiveCheck]  # "a" and "b" on the same rows
    verdict: Verdict
    promote: bool  # asked to promote
    promoted: bool
    champion: str | None  # the champion's version after the call
    previous_champion: str | None = None  # the replaced champion, when promoted


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _client(cfg: Config) -> Any:
    from mlflow import MlflowClient

    from training.registry import configure_tracking

    configure_tracking(cfg)
    return MlflowClient()


def _registered(client: Any, cfg: Config, name: str, kind: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        raise CompareError(
            f"no registered model '{name}' in {cfg.tracking_uri}; train one with `funnel train {kind}`"
        ) from exc


def _aliases_text(model: Any) -> str:
    aliases = getattr(model, "aliases", {}) or {}
    return ", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items())) or "none"


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def resolve(client: Any, cfg: Config, kind: str, ref: str) -> ModelRef:
    """An alias (``champion``, ``challenger``, ...) or a version number of the kind's model."""
    from mlflow.exceptions import MlflowException

    name = _kind_conf(cfg, kind).registered_model
    model = _registered(client, cfg, name, kind)
    ref = str(ref).strip()
    if ref.isdigit():
        try:
            mv = client.get_model_version(name, ref)
        except MlflowException as exc:
            versions = sorted(
                int(v.version) for v in client.search_model_versions(f"name = '{name}'")
            )
            raise CompareError(
                f"model '{name}' has no version {ref} (versions: {', '.join(map(str, versions)) or 'none'})"
            ) from exc
    else:
        try:
            mv = client.get_model_version_by_alias(name, ref)
        except MlflowException as exc:
            hint = ""
            if ref == CHALLENGER:
                hint = (
                    f"; no challenger: a retrain that does not become champion gets it "
                    f"(`funnel train {kind}`), or pass a version number"
                )
            raise CompareError(
                f"model '{name}' has no alias '{ref}' (aliases: {_aliases_text(model)}){hint}"
            ) from exc
    tagged = (mv.tags or {}).get("model_kind")
    if tagged is not None and tagged != kind:
        raise CompareError(
            f"version {mv.version} of '{name}' is a '{tagged}' model, not '{kind}'; "
            f"check training.{kind}.registered_model"
        )
    return ModelRef(ref, str(mv.version), tuple(sorted(mv.aliases or ())))


def _kind_conf(cfg: Config, kind: str) -> Any:
    from training.train import kind_config

    return kind_config(cfg, kind)


def read_history(client: Any, name: str) -> list[dict[str, str]]:
    """The registered model's ``champion_history``: one entry per replaced champion."""
    raw = (client.get_registered_model(name).tags or {}).get(HISTORY_TAG)
    if not raw:
        return []
    try:
        history = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CompareError(f"the '{HISTORY_TAG}' tag of '{name}' is not JSON: {exc}") from exc
    return history if isinstance(history, list) else []


def _write_history(client: Any, name: str, history: list[dict[str, str]]) -> None:
    # Oldest entries go first when the tag would outgrow what the store holds.
    while len(history) > 1 and len(json.dumps(history)) > HISTORY_MAX_CHARS:
        history = history[1:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def _champion_since(client: Any, name: str, version: str, history: list[dict[str, str]]) -> str:
    """When the current champion took over: the end of the last tenure, else its registration
    (the first champion is crowned when it is registered)."""
    if history:
        return history[-1]["until"]
    created = client.get_model_version(name, version).creation_timestamp
    return datetime.fromtimestamp(created / 1000, UTC).isoformat(timespec="seconds")


def move_champion(client: Any, name: str, version: str, reason: str) -> str | None:
    """Make ``version`` the champion: the replaced one is appended to ``champion_history``
    and gets the ``previous_champion`` alias; a ``challenger`` alias on ``version`` is removed.
    Returns the replaced version (None when there was no champion)."""
    old = _alias_version(client, name, CHAMPION)
    if old == version:
        raise CompareError(f"version {version} of '{name}' is already the champion")
    if old is not None:
        history = read_history(client, name)
        since = _champion_since(client, name, old, history)
        # the record comes first: a failure after it leaves a claimed move, never a silent one
        history.append({"version": old, "from": since, "until": _now(), "reason": reason})
        _write_history(client, name, history)
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    if _alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return old


def compare_models(
    cfg: Config,
    kind: str,
    a: str = CHAMPION,
    b: str = CHALLENGER,
    promote: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> CompareResult:
    """Score models a and b (aliases or versions of the kind's registered model) on the test
    rows training evaluated on, compare them with a paired bootstrap, apply
    ``training.<kind>.promotion_rule``; with ``promote``, a winning b becomes champion."""
    from training.registry import load_model_version
    from training.train import training_split

    conf = _kind_conf(cfg, kind)
    name = conf.registered_model
    client = _client(cfg)
    ref_a, ref_b = resolve(client, cfg, kind, a), resolve(client, cfg, kind, b)
    if ref_a.version == ref_b.version:
        raise CompareError(f"a ({ref_a.label}) and b ({ref_b.label}) are the same model version")
    champion = _alias_version(client, name, CHAMPION)
    if promote and ref_a.version != champion:
        raise CompareError(
            f"--promote needs a to be the champion (version {champion}); a is {ref_a.label}"
        )
    models = {
        side: load_model_version(cfg, name, ref.version, kind)
        for side, ref in (("a", ref_a), ("b", ref_b))
    }
    for side, model in models.items():
        if model.feature_service != conf.feature_service:
            raise CompareError(
                f"{side} (version {model.version}) was trained on feature service "
                f"'{model.feature_service}', the config names '{conf.feature_service}'; "
                "both must score the same rows and features"
            )
    test = training_split(cfg, kind).parts["test"]
    y = test["label"].to_numpy()
    prob_a, prob_b = models["a"].predict_proba(test), models["b"].predict_proba(test)
    comparison = bootstrap_compare(y, prob_a, prob_b, n_boot=n_boot, seed=seed)
    auc = comparison["roc_auc"]  # the guard reuses the comparison's AUC intervals
    checks = {}
    for side, value, ci, prob in (("a", auc.a, auc.a_ci, prob_a), ("b", auc.b, auc.b_ci, prob_b)):
        lift = lift_at(y, prob, 0.1)
        checks[side] = PredictiveCheck(is_predictive(ci, lift), value, ci, lift)
    verdict = promotion_verdict(comparison, conf.promotion_rule, checks["b"])
    promoted, previous = False, None
    if promote and verdict.wins:
        previous = move_champion(
            client, name, ref_b.version, f"replaced by version {ref_b.version}: {verdict.reason}"
        )
        promoted, champion = True, ref_b.version
    return CompareResult(
        kind=kind, model_name=name, a=ref_a, b=ref_b, rows=len(test), comparison=comparison,
        rule=conf.promotion_rule, predictive=checks, verdict=verdict, promote=promote,
        promoted=promoted, champion=champion, previous_champion=previous,
    )  # fmt: skip


def rollback(cfg: Config, kind: str) -> tuple[str, str]:
    """Give ``champion`` back to the previous champion (its ``previous_champion`` alias, else the
    last entry of ``champion_history``); the move is recorded too. Returns (old, new) versions.
    Rolling back twice undoes the first rollback."""
    from mlflow.exceptions import MlflowException

    name = _kind_conf(cfg, kind).registered_model
    client = _client(cfg)
    _registered(client, cfg, name, kind)
    current = _alias_version(client, name, CHAMPION)
    if current is None:
        raise CompareError(f"model '{name}' has no champion to roll back from")
    previous = _alias_version(client, name, PREVIOUS)
    if previous is None:
        history = read_history(client, name)
        previous = history[-1]["version"] if history else None
    if previous is None:
        raise CompareError(
            f"model '{name}' has no previous champion to roll back to (no '{PREVIOUS}' alias, "
            f"no '{HISTORY_TAG}' tag); the champion is version {current}"
        )
    try:
        client.get_model_version(name, previous)
    except MlflowException as exc:
        raise CompareError(
            f"the previous champion, version {previous} of '{name}', no longer exists"
        ) from exc
    move_champion(client, name, previous, f"rolled back to version {previous}")
    return current, previous

"""Model cards: one self-contained HTML page per registered model, for the people who decide
whether to trust it.

For a classifier (mql, churn) the card rebuilds the model's own train / validation / test rows
(``training_split``) and shows: what was trained on which weeks, test metrics with bootstrap
intervals, what the threshold or the risk tiers mean on the test rows, calibration, cumulative
gains, feature importance, example reasons, and drift between the training rows and the latest
scoring window. For the next-best-offer model, and for the uplift model of an imported table
(its bundle is a next-best-offer one), it shows the held-out Qini curves of its training run and
the policy values and decision stored in its bundle.

The latest scoring window is the population the model would score today: the entities of the
training population (leads not converted yet; customer accounts) at the newest snapshot of the
offline feature tables, with their features from Feast at that snapshot. It is newer than the
test rows, whose labels need a full label window after them.

The statistics (PSI, bootstrap intervals, gains, decision summaries) are pure functions on
arrays; ``write_model_card`` does the I/O.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import InputError, MissingInputError
from core.flat import load_dataset
from core.tables import read_tables
from core.timegrid import to_utc
from features.store import feature_store, historical_features
from reports.html import (
    day,
    fmt,
    generated_at,
    html_figure,
    html_page,
    html_png,
    html_section,
    html_table,
    new_figure,
    write_atomic,
)
from training import plots
from training.compare import is_uplift_table, with_model_features
from training.labels import churn_labels, mql_labels
from training.metrics import lift_at, lift_curve
from training.nbo import LEARNER_NAMES
from training.registry import load_model, load_model_version, load_nbo_model, load_nbo_model_version
from training.train import (
    PREDICTIVE_BOOT,
    PREDICTIVE_SEED,
    TrainingSplit,
    dataset_timestamp,
    is_dataset,
    kind_config,
    kind_spec,
    training_split,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow.entities.model_registry import ModelVersion

    from training.nbo_model import NboModel
    from training.scoring import ScoringModel

CARD_KINDS: tuple[str, ...] = ("mql", "churn", "nbo")
# A bucket that is empty on one side would make PSI infinite: its share counts as this instead.
PSI_EPSILON = 1e-4
# The usual reading of PSI: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 large.
PSI_STABLE, PSI_MODERATE = 0.1, 0.25
# training's resamples and seed of the test ROC AUC interval: the card shows the interval the
# training run logged (and the non-predictive guard judged), not a second one
BOOTSTRAP_ROUNDS, BOOTSTRAP_SEED = PREDICTIVE_BOOT, PREDICTIVE_SEED
_MISSING, _UNSEEN = "\x00missing", "\x00unseen"
_READING_COLORS = {"stable": "#41ab5d", "moderate": "#fd8d3c", "large": "#d7301f", "n/a": "#999"}


# ------------------------------------------------------------------------------ pure functions
def population_stability_index(
    expected: Sequence[Any] | np.ndarray | pd.Series,
    actual: Sequence[Any] | np.ndarray | pd.Series,
    bins: int = 10,
    categorical: bool | None = None,
) -> float:
    """PSI = sum over buckets of (actual share - expected share) * ln(actual / expected).

    Numeric values fall in ``bins`` quantile bins of ``expected`` (right-closed, repeated edges
    merged, so a feature that is mostly 0 gets a bucket of its own for 0; values outside the
    expected range go to the outer bins). Categorical values are bucketed by category; categories
    ``expected`` never had share one "unseen" bucket. Missing values (None, NaN) are a bucket
    of their own either way. An empty bucket counts as share ``PSI_EPSILON``.

    ``categorical=None`` decides from ``expected``: numeric (not bool) dtypes are numeric, and
    then non-numeric text in ``actual`` counts as missing.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer of at least 2, got {bins!r}")
    e, a = pd.Series(expected).reset_index(drop=True), pd.Series(actual).reset_index(drop=True)
    if e.empty or a.empty:
        raise ValueError("expected and actual must each hold at least one value")
    if categorical is None:
        categorical = not (pd.api.types.is_numeric_dtype(e) and not pd.api.types.is_bool_dtype(e))
    if categorical:
        e_share, a_share = _category_shares(e, a)
    else:
        e_share, a_share = _quantile_shares(e, a, bins)
    e_share, a_share = np.maximum(e_share, PSI_EPSILON), np.maximum(a_share, PSI_EPSILON)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def _quantile_shares(e: pd.Series, a: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray]:
    ev = pd.to_numeric(e, errors="coerce").to_numpy(dtype=np.float64)
    av = pd.to_numeric(a, errors="coerce").to_numpy(dtype=np.float64)
    known = ev[~np.isnan(ev)]
    inner = (
        np.unique(np.quantile(known, np.linspace(0.0, 1.0, bins + 1))[1:-1])
        if known.size
        else np.empty(0)
    )

    def shares(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        index = np.searchsorted(inner, values[~missing], side="left")
        counts = np.bincount(index, minlength=len(inner) + 1).astype(np.float64)
        return np.append(counts, missing.sum()) / len(values)

    return shares(ev), shares(av)


def _category_shares(e: pd.Series, a: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    def keys(values: pd.Series) -> pd.Series:
        return values.astype(str).where(values.notna(), _MISSING)

    e_keys, a_keys = keys(e), keys(a)
    seen = set(e_keys)
    a_keys = a_keys.where(a_keys.isin(seen) | (a_keys == _MISSING), _UNSEEN)
    buckets = sorted(seen | {_MISSING, _UNSEEN})
    e_share = e_keys.value_counts(normalize=True).reindex(buckets, fill_value=0.0)
    a_share = a_keys.value_counts(normalize=True).reindex(buckets, fill_value=0.0)
    return e_share.to_numpy(dtype=np.float64), a_share.to_numpy(dtype=np.float64)


def psi_reading(value: float) -> str:
    """'stable' below 0.1, 'moderate' up to 0.25, 'large' above; 'n/a' for NaN."""
    if not np.isfinite(value):
        return "n/a"
    if value < PSI_STABLE:
        return "stable"
    return "moderate" if value <= PSI_MODERATE else "large"


def psi_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    bins: int = 10,
) -> pd.DataFrame:
    """PSI of each feature from ``reference`` to ``current``, largest first.

    Columns: feature, psi, reading, missing share (reference), missing share (current).
    ``categorical`` names the features bucketed by category (the others by their dtype).
    """
    absent = [f for f in features if f not in reference or f not in current]
    if absent:
        raise KeyError(f"feature(s) {absent} missing from the rows to compare")
    if reference.empty or current.empty:
        raise ValueError("PSI needs rows on both sides (reference and current)")
    rows = []
    for name in features:
        value = population_stability_index(
            reference[name], current[name], bins, categorical=True if name in categorical else None
        )
        rows.append(
            {
                "feature": name,
                "psi": value,
                "reading": psi_reading(value),
                "missing share (reference)": float(reference[name].isna().mean()),
                "missing share (current)": float(current[name].isna().mean()),
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    # Mann-Whitney with average ranks for ties: equal to sklearn's roc_auc_score, and cheap
    # enough to run a few hundred times
    from scipy.stats import rankdata

    positives = y == 1
    n1 = positives.sum()
    n0 = len(y) - n1
    return float((rankdata(p)[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)  # as classification_report clips
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _lift_10(y: np.ndarray, p: np.ndarray) -> float:
    return lift_at(y, p, 0.1)


# name -> (label, function, what it says)
CARD_METRICS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float], str]] = {
    "roc_auc": (
        "ROC AUC",
        _roc_auc,
        "chance a random positive row scores above a random negative (0.5 = random order)",
    ),
    "pr_auc": (
        "PR AUC",
        _pr_auc,
        "average precision over the ranking; a random order scores the positive rate",
    ),
    "brier": ("Brier", _brier, "mean squared error of the probability (lower is better)"),
    "log_loss": ("log loss", _log_loss, "cross-entropy of the probability (lower is better)"),
    "lift_at_10pct": (
        "lift@10%",
        _lift_10,
        "positive rate in the top 10% by score over the overall positive rate",
    ),
}


def bootstrap_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    n_boot: int = BOOTSTRAP_ROUNDS,
    level: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """The card's test metrics with percentile bootstrap intervals (rows resampled with
    replacement; resamples with a single class are skipped).

    Columns: metric, label, value, low, high, meaning; one row per ``CARD_METRICS`` entry.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}")
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_prob, dtype=np.float64)
    if y.ndim != 1 or y.shape != p.shape:
        raise ValueError("y_true and y_prob must be 1-D arrays of the same length")
    if not np.isin(y, (0.0, 1.0)).all() or len(np.unique(y)) < 2:
        raise ValueError("y_true must hold 0 and 1, both present")
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in CARD_METRICS}
    for _ in range(n_boot):
        index = rng.integers(0, len(y), len(y))
        yb, pb = y[index], p[index]
        if yb.min() == yb.max():
            continue
        for name, (_, fn, _) in CARD_METRICS.items():
            draws[name].append(fn(yb, pb))
    tail = 100 * (1 - level) / 2
    rows = []
    for name, (label, fn, meaning) in CARD_METRICS.items():
        low, high = np.nanpercentile(draws[name], [tail, 100 - tail])
        rows.append(
            {"metric": name, "label": label, "value": fn(y, p), "low": float(low),
             "high": float(high), "meaning": meaning}
        )  # fmt: skip
    return pd.DataFrame(rows)


def gains_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gains: share of rows contacted (best scores first) and the share of all
    positives they hold, both from 0 to 1."""
    y = np.asarray(y_true, dtype=np.float64)
    order = np.argsort(-np.asarray(y_score, dtype=np.float64), kind="stable")
    total = y.sum()
    if total == 0:
        raise ValueError("gains need at least one positive row")
    captured = np.concatenate([[0.0], np.cumsum(y[order]) / total])
    contacted = np.arange(len(y) + 1) / len(y)
    return contacted, captured


def threshold_summary(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float, snapshot: np.ndarray
) -> dict[str, float]:
    """What flagging every row at or above ``threshold`` does: rows flagged (share, per
    snapshot), their positive rate (precision), the share of positives caught (recall)."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_prob, dtype=np.float64)
    flagged = p >= threshold
    weeks = max(len(np.unique(np.asarray(snapshot))), 1)
    return {
        "threshold": float(threshold),
        "flagged": float(flagged.sum()),
        "flagged_share": float(flagged.mean()),
        "flagged_per_week": float(flagged.sum() / weeks),
        "precision": float(y[flagged].mean()) if flagged.any() else float("nan"),
        "recall": float(y[flagged].sum() / y.sum()) if y.sum() else float("nan"),
        "base_rate": float(y.mean()),
    }


def tier_summary(
    y_true: np.ndarray, y_prob: np.ndarray, tiers: Sequence[dict[str, Any]]
) -> pd.DataFrame:
    """Per risk tier (ascending ``min_probability``): its probability range, rows, share of
    rows, observed positive rate, mean predicted probability and share of all positives."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_prob, dtype=np.float64)
    bounds = [float(t["min_probability"]) for t in tiers]
    if bounds != sorted(bounds):
        raise ValueError(f"tiers must be in ascending min_probability, got {bounds}")
    index = np.searchsorted(bounds, p, side="right") - 1
    rows = []
    for i, tier in enumerate(tiers):
        inside = index == i
        upper = bounds[i + 1] if i + 1 < len(bounds) else 1.0
        rows.append(
            {
                "tier": tier["name"],
                "probability": f"{bounds[i]:.2f} – {upper:.2f}",
                "rows": int(inside.sum()),
                "share of rows": float(inside.mean()),
                "observed rate": float(y[inside].mean()) if inside.any() else float("nan"),
                "mean predicted rate": float(p[inside].mean()) if inside.any() else float("nan"),
                "share of positives": float(y[inside].sum() / y.sum()) if y.sum() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- I/O
def write_model_card(
    cfg: Config, kind: str, alias_or_version: str = "champion", out_path: Path | None = None
) -> Path:
    """Write the model card of ``models:/<registered model of kind>@alias`` (or a version
    number) as one self-contained HTML file and return its path.

    Default path: ``<data_dir>/reports/model-<kind>.html``. No model under the alias raises
    ``BundleError``; an unknown kind, or a model whose feature service or features the current
    config and data no longer provide, raises ``ValueError``.
    """
    if kind not in CARD_KINDS and not is_dataset(cfg, kind):
        raise InputError(
            f"unknown model kind {kind!r}; choose one of {list(CARD_KINDS)} or an imported "
            "table's name"
        )
    ref = str(alias_or_version)
    model, mv = _load(cfg, kind, ref)
    if kind == "nbo":
        text = _render_nbo_card(model, mv, ref, _nbo_terms(model))  # type: ignore[arg-type]
    elif is_uplift_table(cfg, kind):
        terms = _table_terms(kind, load_dataset(cfg, kind), model)  # type: ignore[arg-type]
        text = _render_nbo_card(model, mv, ref, terms)  # type: ignore[arg-type]
    else:
        text = _render_classifier_card(cfg, kind, model, mv, ref)  # type: ignore[arg-type]
    path = (
        Path(out_path) if out_path is not None else cfg.data_dir / "reports" / f"model-{kind}.html"
    )
    write_atomic(path, text)
    return path


def latest_scoring_rows(
    cfg: Config, kind: str, feature_service: str, store: Any = None
) -> pd.DataFrame:
    """The rows the model would score at the newest snapshot of the offline feature tables:
    the training population there (mql: leads that exist and have not converted; churn:
    customer accounts) with their point-in-time features."""
    table = "lead_behavior" if kind == "mql" else "account_usage"
    path = cfg.features_dir / f"{table}.parquet"
    if not path.is_file():
        raise MissingInputError(
            f"feature table {path} not found; run `funnel features apply` first"
        )
    stamps = pd.read_parquet(path, columns=["event_timestamp"])["event_timestamp"]
    if stamps.empty:
        raise InputError(f"feature table {path} has no rows")
    newest = to_utc(stamps.max())
    ticks = pd.DatetimeIndex([newest])
    window = kind_config(cfg, kind).label_window_days
    # the label functions hold the population rule; their labels are not known yet (the data
    # end passed makes the window fit) and are dropped
    data_end = newest + pd.Timedelta(days=window)
    if kind == "mql":
        raw = read_tables(cfg.raw_dir, ["leads", "opportunities"])
        entity = mql_labels(raw["leads"], raw["opportunities"], ticks, window, data_end)
        entity["request_job_title"] = ""  # the stored title, as in training
    else:
        raw = read_tables(cfg.raw_dir, ["accounts", "subscriptions"])
        entity = churn_labels(raw["subscriptions"], ticks, window, data_end)
    entity = entity.drop(columns="label")
    return historical_features(store or feature_store(cfg), entity, feature_service)


def _registered_name(cfg: Config, kind: str) -> str:
    if kind == "nbo":
        return cfg.training.nbo.registered_model
    return kind_config(cfg, kind).registered_model


def _nbo_config(cfg: Config, name: str) -> Config:
    """``cfg`` with ``training.nbo.registered_model`` set to ``name``: the registry loads the
    next-best-offer bundle of an imported uplift table through it."""
    nbo = cfg.training.nbo.model_copy(update={"registered_model": name})
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"nbo": nbo})})


def _load(cfg: Config, kind: str, ref: str) -> tuple[ScoringModel | NboModel, ModelVersion]:
    """The model under an alias (or a version number) and its registry entry: a
    next-best-offer bundle for nbo and for an imported uplift table, else a classifier's."""
    from mlflow import MlflowClient

    name = _registered_name(cfg, kind)
    model: ScoringModel | NboModel
    if kind == "nbo" or is_uplift_table(cfg, kind):
        nbo_cfg = _nbo_config(cfg, name)
        model = (
            load_nbo_model_version(nbo_cfg, ref) if ref.isdigit() else load_nbo_model(nbo_cfg, ref)
        )
    elif ref.isdigit():
        model = load_model_version(cfg, name, ref, kind)
    else:
        model = load_model(cfg, name, ref, kind)
    return model, MlflowClient().get_model_version(name, model.version.rsplit("/", 1)[1])


# ------------------------------------------------------------------------- classifier card
def _model_split(
    cfg: Config, kind: str, model: ScoringModel, split: TrainingSplit
) -> TrainingSplit:
    """The rebuilt split with every feature ``model`` needs: the configured feature service
    must be the model's, and features it no longer serves (columns an imported table left out
    since the model was trained) come from the import's other columns, else fail naming them
    (``training.compare.with_model_features``)."""
    configured = kind_config(cfg, kind).feature_service
    if model.feature_service != configured:
        raise InputError(
            f"model {model.version} was trained on feature service '{model.feature_service}' "
            f"but training.{kind}.feature_service is '{configured}'; the card rebuilds the "
            "model's rows through the configured service"
        )
    frame = with_model_features(cfg, kind, model, split.frame)
    if frame is split.frame:
        return split
    parts = {part: frame[frame["split"] == part] for part in split.parts}
    return TrainingSplit(frame, parts, split.names, split.categorical)


def _render_classifier_card(
    cfg: Config, kind: str, model: ScoringModel, mv: ModelVersion, ref: str
) -> str:
    spec = kind_spec(cfg, kind)
    store = feature_store(cfg)
    split = _model_split(cfg, kind, model, training_split(cfg, kind, store))
    dataset = is_dataset(cfg, kind)
    test = split.parts["test"]
    y = test["label"].to_numpy()
    prob = model.predict_proba(test)
    # an imported table has no scoring window of its own: its test rows stand for it
    latest = test if dataset else latest_scoring_rows(cfg, kind, model.feature_service, store)
    latest_at = day(latest["event_timestamp"].max())
    what = "churn" if model.meta.tiers else "conversion"
    unit, article = ("account", "an") if kind == "churn" else ("lead", "a")
    time = _time_of(cfg, kind)
    if dataset:
        what, unit, article = "the label", "row", "a"
        label = f"a row's label is 1 when {_label_rule(load_dataset(cfg, kind)['spec']['label'])}"
    else:
        label = (
            f"{article} {unit}'s label is 1 when the {what} happens within "
            f"{_window_days(cfg, kind)} days of the snapshot"
        )
    sections = [
        _model_section(model, mv, ref, split, latest_at, label, time),
        _metrics_section(test, y, prob, time),
        _decision_section(kind, model, test, y, prob, time),
        *_ranking_sections(model, y, prob, what, unit),
        html_section(
            "reasons",
            "Example reasons",
            "Three test rows (the highest, the median and the lowest score) with the features "
            "that moved their score most, as the API explains them.",
            _examples(model, test, prob, spec.entity_key, "flagged" if dataset else "MQL"),
        ),
        _drift_section(model, split.parts["train"], latest, latest_at, unit),
    ]
    title = f"Model card: {spec.title} ({model.version})"
    return html_page(title, _subtitle(model.version, ref), sections)


# How a model's rows relate to time, for the card's wording: weekly snapshots (the built-in
# models), rows with their own time (an imported table with a timestamp), or no time at all.
Time = Literal["weeks", "rows", "none"]
SPLIT_WORDS: dict[str, str] = {
    "weeks": "by week (train on the oldest weeks, test on the newest)",
    "rows": "by time (train on the oldest rows, test on the newest fifth)",
    "none": "at random, stratified by label and fixed by each row's id (the rows have no time)",
}


def _time_of(cfg: Config, kind: str) -> Time:
    if not is_dataset(cfg, kind):
        return "weeks"
    return "rows" if dataset_timestamp(cfg, kind) else "none"


def _label_rule(label: dict[str, Any]) -> str:
    """``{column: Converted, rule: "> 0"}`` -> "'Converted' > 0"."""
    column = f"'{label['column']}'"
    if label.get("rule"):
        return f"{column} {label['rule'].strip()}"
    if label.get("positive") is not None:
        return f"{column} is '{label['positive']}'"
    return f"{column} is yes, true or 1"


def _model_section(
    model: ScoringModel,
    mv: ModelVersion,
    ref: str,
    split: TrainingSplit,
    latest_at: str,
    label: str,
    time: Time,
) -> str:
    return html_section(
        "model",
        "Model",
        f"The registered model, the feature service it was trained on and serves with, "
        f"and the rows it learned from. The rows below are rebuilt from the current data "
        f"exactly as training split them, {SPLIT_WORDS[time]}; {label}.",
        html_table(_model_facts(model, mv, ref, split, latest_at)),
        html_table(_split_table(split, time), caption="Rows per split"),
    )


def _metrics_section(test: pd.DataFrame, y: np.ndarray, prob: np.ndarray, time: Time) -> str:
    metrics = bootstrap_metrics(y, prob)
    which = {
        "weeks": f"the newest {test['event_timestamp'].nunique()} weeks with known labels",
        "rows": "the newest rows",
        "none": "a fifth of the rows, held out",
    }[time]
    return html_section(
        "metrics",
        "Test metrics",
        f"On the {len(test):,} test rows ({which}), with 95% bootstrap intervals (rows "
        f"resampled with replacement, {BOOTSTRAP_ROUNDS} times).",
        html_table(_metrics_view(metrics)),
    )


def _ranking_sections(
    model: ScoringModel, y: np.ndarray, prob: np.ndarray, what: str, unit: str
) -> list[str]:
    """Calibration, cumulative gains and lift, feature importance."""
    gains = model.booster.feature_importance(importance_type="gain")
    return [
        html_section(
            "calibration",
            "Calibration",
            f"Predicted probability against the observed {what} rate in quantile bins of the "
            "test rows: on the diagonal, a probability of 20% means 20 in 100.",
            html_figure(plots.calibration_plot(y, prob)),
        ),
        html_section(
            "gains",
            "Cumulative gains and lift",
            f"Contacting the {unit}s with the best scores first: the share of all test-row "
            f"positives caught against the share of rows contacted, and the lift per decile.",
            html_figure(_gains_plot(y, prob)),
            html_table(_lift_view(y, prob), caption="Lift by score decile (1 = best scores)"),
        ),
        html_section(
            "importance",
            "Feature importance",
            "Each feature's share of the total split gain of the booster's trees (top 20).",
            html_figure(plots.importance_plot(model.feature_names, gains)),
        ),
    ]


def _drift_section(
    model: ScoringModel, train: pd.DataFrame, latest: pd.DataFrame, latest_at: str, unit: str
) -> str:
    categorical = sorted(model.meta.categories)
    drift = psi_table(train, latest, model.feature_names, categorical)
    return html_section(
        "drift",
        "Drift: training rows vs the latest scoring window",
        "Population stability index (PSI) of each feature between the training rows and "
        f"the rows the model would score at the newest feature snapshot ({latest_at}, "
        f"{len(latest):,} {unit}s: the training population there, features from Feast). "
        "Numeric features use ten quantile bins of the training rows, categorical ones "
        "their categories (unseen ones together), missing values a bucket of their own. "
        f"Reading: below {PSI_STABLE} stable, {PSI_STABLE} to {PSI_MODERATE} moderate, "
        f"above {PSI_MODERATE} a large shift. Some drift is expected from the calendar: "
        "counts and ages grow as the funnel runs.",
        html_figure(_psi_plot(drift)),
        html_table(_drift_view(drift)),
    )


def _window_days(cfg: Config, kind: str) -> int:
    return kind_config(cfg, kind).label_window_days


def _registry_facts(mv: ModelVersion, ref: str) -> list[tuple[str, str]]:
    """What the registry says of the version the card is about."""
    return [
        ("registered model", mv.name),
        ("version", str(mv.version)),
        ("asked for", ref),
        ("aliases", ", ".join(sorted(mv.aliases)) or "–"),
        ("registered at", _millis(mv.creation_timestamp)),
        ("MLflow run", mv.run_id or "–"),
    ]


def _model_facts(
    model: ScoringModel, mv: ModelVersion, ref: str, split: TrainingSplit, latest_at: str
) -> pd.DataFrame:
    extra = model.meta.extra
    trained = extra.get("data_window") or ["?", "?"]
    frame = split.frame["event_timestamp"]
    rebuilt = [day(frame.min()), day(frame.max())]
    facts = [
        *_registry_facts(mv, ref),
        ("feature service", model.feature_service),
        ("features", f"{len(model.feature_names)} ({len(model.meta.categories)} categorical)"),
        ("data window at training", f"{day(trained[0])} to {day(trained[1])}"),
        ("data window rebuilt now", f"{rebuilt[0]} to {rebuilt[1]}"),
        ("latest scoring window", latest_at),
        ("trees", str(extra.get("num_trees", model.booster.num_trees()))),
        ("refit on validation", str(extra.get("refit_on_validation", "–"))),
    ]
    if [day(trained[0]), day(trained[1])] != rebuilt and "?" not in trained:
        facts.append(("note", "the data changed since training: the rows below are today's"))
    return pd.DataFrame(facts, columns=["", "value"])


def _millis(value: Any) -> str:
    if not value:
        return "–"
    return datetime.fromtimestamp(int(value) / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _split_table(split: TrainingSplit, time: Time) -> pd.DataFrame:
    rows = []
    for part, frame in split.parts.items():
        stamps = frame["event_timestamp"]
        when = {"from": day(stamps.min()), "to": day(stamps.max())} if time != "none" else {}
        weeks = {"weeks": int(stamps.nunique())} if time == "weeks" else {}
        rows.append(
            {
                "split": part,
                **when,
                **weeks,
                "rows": len(frame),
                "positives": int(frame["label"].sum()),
                "positive rate": float(frame["label"].mean()),
            }
        )
    return pd.DataFrame(rows)


def _metrics_view(metrics: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "metric": metrics["label"],
            "value": [f"{v:.4f}" for v in metrics["value"]],
            "95% interval": [
                f"{lo:.4f} – {hi:.4f}"
                for lo, hi in zip(metrics["low"], metrics["high"], strict=True)
            ],
            "what it says": metrics["meaning"],
        }
    )


def _decision_section(
    kind: str,
    model: ScoringModel,
    test: pd.DataFrame,
    y: np.ndarray,
    prob: np.ndarray,
    time: Time = "weeks",
) -> str:
    if model.meta.tiers:
        table = tier_summary(y, prob, model.meta.tiers)
        top = table.iloc[-1]
        return html_section(
            "decision",
            "Risk tiers",
            "A customer's tier is the last one whose lower bound its churn probability reaches. "
            f"On the test rows, the '{html.escape(str(top['tier']))}' tier holds "
            f"{top['share of rows']:.1%} of the accounts and {top['share of positives']:.1%} "
            f"of those that churned, at an observed churn rate of {top['observed rate']:.1%} "
            f"(mean predicted: {top['mean predicted rate']:.1%}).",
            html_table(table),
        )
    s = threshold_summary(y, prob, model.threshold, test["event_timestamp"].to_numpy())
    rule = model.meta.extra.get("threshold_rule", {})
    how = ", ".join(f"{k}={v}" for k, v in rule.items()) or "–"
    if time != "weeks":
        return html_section(
            "decision",
            "Decision threshold",
            "A row at or above the threshold is flagged. On the test rows that is "
            f"{s['flagged_share']:.1%} of them, of which {s['precision']:.1%} were positive "
            f"(against {s['base_rate']:.1%} of all rows), catching {s['recall']:.1%} of the "
            "positives." + _note(model.meta.extra.get("decision_note")),
            html_table(_threshold_view(s, how, weekly=False)),
        )
    return html_section(
        "decision",
        "MQL threshold",
        "A lead at or above the threshold is a marketing-qualified lead and goes to sales. "
        f"On the test weeks that is about {s['flagged_per_week']:,.0f} leads a week, of whom "
        f"{s['precision']:.1%} converted (against {s['base_rate']:.1%} of all leads), catching "
        f"{s['recall']:.1%} of all conversions.",
        html_table(_threshold_view(s, how, weekly=True)),
    )


def _note(note: str | None) -> str:
    return f" Note: {html.escape(note)}." if note else ""


def _threshold_view(s: dict[str, float], how: str, weekly: bool) -> pd.DataFrame:
    """The decision threshold's facts; per week only when the test rows are weeks."""
    positives = "conversions" if weekly else "positives"
    rows = [
        ("threshold (calibrated probability)", f"{s['threshold']:.4f}"),
        ("rule it came from", how),
        ("test rows at or above it", f"{s['flagged']:,.0f}"),
        ("share of test rows flagged", f"{s['flagged_share']:.1%}"),
        *([("flagged per test week", f"{s['flagged_per_week']:,.1f}")] if weekly else []),
        (f"precision ({positives} among flagged)", f"{s['precision']:.1%}"),
        (f"recall (share of {positives} flagged)", f"{s['recall']:.1%}"),
        ("base conversion rate" if weekly else "base rate", f"{s['base_rate']:.1%}"),
    ]
    return pd.DataFrame(rows, columns=["", "value"])


def _lift_view(y: np.ndarray, prob: np.ndarray) -> pd.DataFrame:
    table = lift_curve(y, prob)
    return pd.DataFrame(
        {
            "decile": table["bin"].astype(np.int64),
            "rows": table["rows"].astype(np.int64),
            "positive rate": table["positive_rate"],
            "lift": [f"{v:.2f}" for v in table["lift"]],
        }
    )


def _examples(
    model: ScoringModel, test: pd.DataFrame, prob: np.ndarray, key: str, flag: str = "MQL"
) -> str:
    """Three test rows with their reasons; ``flag`` names a row at or above the threshold (an
    MQL for the built-in model, "flagged" for an imported table)."""
    order = np.argsort(-prob, kind="stable")
    picks = [("highest score", order[0]), ("median score", order[len(order) // 2]),
             ("lowest score", order[-1])]  # fmt: skip
    rows = test.iloc[[i for _, i in picks]]
    example_prob, reasons = model.predict_explain(rows, top_k=3, num_threads=1)
    parts = []
    for (what, _), (_, row), p, rs in zip(
        picks, rows.iterrows(), example_prob, reasons, strict=True
    ):
        tier = model.tier(float(p))
        flagged = flag if p >= model.threshold else f"not {'an MQL' if flag == 'MQL' else flag}"
        decision = f"tier {tier}" if tier else flagged
        items = (
            "".join(
                f"<li>{'↑' if r.contribution >= 0 else '↓'} {html.escape(r.text)} "
                f"<small>({r.direction} the score by {abs(r.contribution):.2f} log-odds)</small></li>"
                for r in rs
            )
            or "<li>no feature moved the score</li>"
        )
        parts.append(
            f"<h3>{html.escape(what)}: {html.escape(key)} {html.escape(str(row[key]))} at "
            f"{day(row['event_timestamp'])}</h3>\n<p>probability {p:.1%} "
            f"(score {model.score(float(p))}), {html.escape(decision)}; label {int(row['label'])}"
            f"</p>\n<ul>{items}</ul>"
        )
    return "\n".join(parts)


def _drift_view(drift: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": drift["feature"],
            "PSI": [f"{v:.4f}" for v in drift["psi"]],
            "reading": drift["reading"],
            "missing share (training)": drift["missing share (reference)"],
            "missing share (latest)": drift["missing share (current)"],
        }
    )


# ---------------------------------------------------------------------------------- nbo card
@dataclass(frozen=True)
class UpliftTerms:
    """What an uplift model's card calls things: the built-in next-best-offer model speaks of
    offers to leads, an imported uplift table of the arms of its treatment column."""

    title: str  # of the page: "next best offer", "'mail' uplift"
    arm: str  # what the learner ranks: "offer", "arm"
    control: str  # the arm it is weighed against: "no offer", "control"
    model: str  # the model section's explanation
    facts: list[tuple[str, str]]  # what the model learned from
    qini: str  # the Qini section's explanation
    value: str  # what a policy value counts


def _nbo_terms(model: NboModel) -> UpliftTerms:
    window = model.meta.extra.get("data_window") or ["?", "?"]
    return UpliftTerms(
        title="next best offer",
        arm="offer",
        control="no offer",
        model="The registered next-best-offer model: an uplift learner that predicts, per offer, "
        "how much more likely a lead converts with the offer than without, and the policy "
        "training decided to serve.",
        facts=[
            ("no-offer arm", model.meta.control),
            ("exposures from", f"{day(window[0])} to {day(window[1])}"),
        ],
        qini="Out-of-fold uplift of the kept learner on the exposures, per offer against the "
        "no-offer arm (from the model's training run): above the dotted random line, the "
        "model finds who the offer moves.",
        value="Net value per unit over sending nothing",
    )


def _table_terms(name: str, dataset: dict[str, Any], model: NboModel) -> UpliftTerms:
    spec = dataset["spec"]
    column, control = spec["treatment"]["column"], spec["treatment"]["control"]
    label = html.escape(spec["label"]["column"])
    return UpliftTerms(
        title=f"'{name}' uplift",
        arm="arm",
        control="control",
        model=f"The registered uplift model of the imported table '{html.escape(name)}': a "
        f"learner that predicts, per arm of the treatment column "
        f"<code>{html.escape(column)}</code>, how much more likely a row's label "
        f"(<code>{label}</code>) is 1 with the arm than with the control value "
        f"<code>{html.escape(control)}</code>, and the policy training decided to serve. The "
        "table is taken as a randomized experiment (each arm's propensity is its share of the "
        "rows).",
        facts=[
            ("imported table", str(spec["file"])),
            ("rows", f"{dataset['report']['rows']:,}"),
            ("label", spec["label"]["column"]),
            ("treatment column", column),
            ("control arm", f"{model.meta.control} ({column} = {control})"),
        ],
        qini="Out-of-fold uplift of the kept learner on the table's rows, per arm against the "
        "control arm (from the model's training run): above the dotted random line, the model "
        "finds whom the arm moves.",
        value="Extra positive labels per unit over the control arm (each positive counts 1, "
        "each arm is free)",
    )


def _render_nbo_card(model: NboModel, mv: ModelVersion, ref: str, terms: UpliftTerms) -> str:
    from mlflow import MlflowClient

    run_metrics = MlflowClient().get_run(mv.run_id).data.metrics if mv.run_id else {}
    qini_png = _run_artifact(mv.run_id, "plots/qini.png")
    sections = [
        _nbo_model_section(model, mv, ref, terms),
        html_section(
            "qini",
            f"Qini curves per {terms.arm}",
            terms.qini,
            html_png(qini_png)
            if qini_png
            else "<p>The training run holds no Qini plot (plots/qini.png).</p>",
            html_table(
                _qini_view(model.offers, run_metrics, terms),
                caption=f"Held-out uplift metrics per {terms.arm}",
            ),
        ),
        _policy_section(model, terms),
    ]
    return html_page(
        f"Model card: {terms.title} ({model.version})", _subtitle(model.version, ref), sections
    )


def _nbo_model_section(model: NboModel, mv: ModelVersion, ref: str, terms: UpliftTerms) -> str:
    meta = model.meta
    facts = pd.DataFrame(
        [
            *_registry_facts(mv, ref),
            ("feature service", meta.feature_service),
            ("features", f"{len(meta.features)} ({len(meta.categories)} categorical)"),
            ("learner", LEARNER_NAMES.get(meta.learner, meta.learner)),
            (f"{terms.arm}s", ", ".join(meta.offers)),
            *terms.facts,
            ("served policy", model.served_policy),
        ],
        columns=["", "value"],
    )
    learners = meta.extra.get("validation_mean_qini", {})
    candidates = pd.DataFrame(
        {
            "learner": [LEARNER_NAMES.get(n, n) for n in learners],
            "validation mean Qini": [fmt(v) for v in learners.values()],
            "kept": ["yes" if n == meta.learner else "" for n in learners],
        }
    )
    return html_section(
        "model",
        "Model",
        terms.model,
        html_table(facts),
        html_table(candidates, caption="Candidate learners (mean over the cross-fitting folds)"),
    )


def _policy_section(model: NboModel, terms: UpliftTerms) -> str:
    policy, served = model.meta.policy, model.served_policy
    values = {
        k: (float(v[0]), float(v[1]), float(v[2])) for k, v in policy.get("values", {}).items()
    }
    shares = policy.get("learned_share", {})
    return html_section(
        "policy",
        "Policy values and the served policy",
        f"{terms.value}, with 95% intervals, of the learned policy and the alternatives on "
        f"held-out rows. Served: <b>{html.escape(served)}</b>. "
        f"{html.escape(str(policy.get('reason', '')))}",
        html_figure(plots.policy_plot(values, served)) if values else "",
        html_table(_policy_view(values, served)),
        html_table(
            pd.DataFrame({"arm": list(shares), "share of units": list(shares.values())}),
            caption="Where the learned policy sends units",
        ),
    )


def _run_artifact(run_id: str | None, artifact: str) -> bytes | None:
    """A PNG artifact of an MLflow run, or None when it is not there."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp)
        except (MlflowException, OSError):
            return None
        return Path(local).read_bytes()


def _qini_view(offers: list[str], metrics: dict[str, float], terms: UpliftTerms) -> pd.DataFrame:
    rows = []
    for offer in offers:
        rows.append(
            {
                terms.arm: offer,
                f"rows ({terms.arm} or {terms.control})": fmt(
                    metrics.get(f"test_{offer}_rows"), "{:,.0f}"
                ),
                "Qini (normalized)": fmt(metrics.get(f"test_{offer}_qini")),
                "AUUC": fmt(metrics.get(f"test_{offer}_auuc")),
                "uplift in top 30%": fmt(metrics.get(f"test_{offer}_uplift_at_30")),
            }
        )
    return pd.DataFrame(rows)


def _policy_view(values: dict[str, tuple[float, float, float]], served: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "policy": list(values),
            "value per unit": [fmt(v[0]) for v in values.values()],
            "95% interval": [f"{fmt(v[1])} – {fmt(v[2])}" for v in values.values()],
            "served": ["yes" if n == served else "" for n in values],
        }
    )


# --------------------------------------------------------------------------------------- plots
def _gains_plot(y: np.ndarray, prob: np.ndarray) -> Figure:
    contacted, captured = gains_curve(y, prob)
    base = float(np.mean(y))
    fig, ax = new_figure(6.0, 4.5)
    ax.plot(contacted, captured, label="model (test rows)")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random order")
    ax.plot([0, base, 1], [0, 1, 1], ":", color="black", label="perfect order")
    at10 = captured[round(0.1 * (len(contacted) - 1))]
    ax.annotate(f"top 10%: {at10:.0%} of positives", (0.1, at10), (0.3, at10 - 0.15),
                arrowprops={"arrowstyle": "->"})  # fmt: skip
    ax.set_xlabel("share of rows contacted (best scores first)")
    ax.set_ylabel("share of positives captured")
    ax.set_title("Cumulative gains (test rows)")
    ax.legend(loc="lower right")
    return fig


def _psi_plot(drift: pd.DataFrame) -> Figure:
    shown = drift.iloc[::-1]  # largest at the top
    fig, ax = new_figure(7.0, 0.22 * len(shown) + 1.5)
    ax.barh(shown["feature"], shown["psi"], color=[_READING_COLORS[r] for r in shown["reading"]])
    ax.axvline(PSI_STABLE, color="grey", linestyle="--", linewidth=0.8)
    ax.axvline(PSI_MODERATE, color="grey", linestyle=":", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(f"PSI (dashed: {PSI_STABLE}, dotted: {PSI_MODERATE})")
    ax.set_title("Drift per feature: training rows vs latest scoring window")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- HTML page


def _subtitle(version: str, ref: str) -> str:
    return f"models:/{version} (asked for '{ref}'). Generated {generated_at()}."

"""The training job of the classifiers (MQL and churn): Feast historical features ->
Optuna-tuned LightGBM -> calibrated model with its decision rule (an MQL threshold or churn risk
tiers) in MLflow, registered and given the ``champion`` alias when none exists.

One path for both: what differs by model kind (the entity, the labels, the decision rule, the
oracle file) is a ``ModelKind``; everything else is shared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import (
    CapacityThreshold,
    ChurnConfig,
    ClassifierConfig,
    Config,
    MqlConfig,
    PrecisionThreshold,
    PromotionRuleConfig,
    RiskTier,
    TopFractionThreshold,
)
from core.errors import InputError
from core.flat import load_dataset
from core.leakage import too_good_to_be_true
from core.tables import read_manifest, read_tables
from core.timegrid import snapshot_grid
from features.store import feature_store, historical_features
from training import plots
from training.bootstrap import PredictiveCheck, bootstrap_compare, predictive_check
from training.labels import (
    TrainingDataError,
    churn_labels,
    mql_labels,
    require_two_classes,
    time_split,
)
from training.metrics import (
    best_precision,
    capacity_threshold,
    classification_report,
    fit_platt,
    precision_threshold,
    top_fraction_threshold,
)
from training.pyfunc import ScoringPyfunc
from training.registry import (
    BUNDLE_ARTIFACT,
    configure_tracking,
    ensure_experiment,
    log_bundle,
    tag_and_crown,
)
from training.scoring import BundleMeta, FeatureMatrix, ScoringModel
from training.tuning import TrainData, fit_booster, monotone_constraints, refit_booster
from training.workers import (
    TuningJob,
    check_shared_stores,
    is_shared,
    logged_trial,  # noqa: F401 - benchmarks/perf.py imports it from here
    open_study,
    tune_study,
)

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger("funnel.training")

# Columns of the training frame that are keys, labels or raw inputs, never model features.
NON_FEATURES = {
    "lead_id",
    "account_id",
    "lead_account_id",
    "event_timestamp",
    "label",
    "split",
    "request_job_title",
    "job_title",
    "created_at",
}
PIP_REQUIREMENTS = ["lightgbm==4.7.*", "pandas<3", "numpy", "scikit-learn==1.9.*"]


@dataclass(frozen=True)
class ModelKind:
    """What one classifier kind trains on and how it decides."""

    name: str  # "mql" | "churn"
    entity_key: str  # the unit: lead_id or account_id
    oracle_file: str  # in <data_dir>/oracle/, for evaluation only
    title: str  # for progress lines


KINDS: dict[str, ModelKind] = {
    "mql": ModelKind("mql", "lead_id", "mql_oracle.parquet", "MQL"),
    "churn": ModelKind("churn", "account_id", "churn_oracle.parquet", "churn"),
}


FLAT_TIERS = [  # risk tiers of a churn-like imported table (no generator to calibrate them on)
    {"name": "low", "min_probability": 0.0},
    {"name": "medium", "min_probability": 0.3},
    {"name": "high", "min_probability": 0.6},
]
# an imported table's decision rule unless its spec or `imports.<name>.decision` says otherwise:
# flag as many rows as there are positives (precision = recall), sensible at any base rate
FLAT_DECISION = TopFractionThreshold(mode="top_fraction")

# What makes a label positive, and where to look when none is (or every one is).
LABEL_MEANING = {
    "mql": (
        "a lead is positive when its first opportunity is created within {window} days of a "
        "snapshot: check that the opportunities table holds this period's opportunities"
    ),
    "churn": (
        "a customer account is positive when its subscriptions end (no new one within a day) "
        "within {window} days of a snapshot: check that subscriptions.ended_at is set for the "
        "accounts that left"
    ),
}


def is_dataset(cfg: Config, kind: str) -> bool:
    """True for an imported flat table (``funnel import``), not a built-in model kind."""
    return kind not in KINDS and (cfg.data_dir / "imports" / kind / "dataset.json").is_file()


def kind_spec(cfg: Config, kind: str) -> ModelKind:
    if kind in KINDS:
        return KINDS[kind]
    if is_dataset(cfg, kind):
        return ModelKind(kind, f"{kind}_id", "", f"'{kind}'")
    raise InputError(
        f"unknown model kind {kind!r}: neither one of {sorted(KINDS)} nor a table imported "
        f"under {cfg.data_dir / 'imports'} (`funnel import`)"
    )


def kind_config(cfg: Config, kind: str) -> ClassifierConfig:
    """The training section of a model kind (of an imported table: built from its import,
    ``imports.<name>`` in the config winning over the dataset spec)."""
    if kind in KINDS:
        return getattr(cfg.training, kind)
    spec = kind_spec(cfg, kind)  # raises for an unknown kind
    meta = load_dataset(cfg, spec.name)
    given = meta["spec"]
    override = cfg.imports.get(kind)
    rule_tree = (override and override.promotion_rule) or given.get("promotion_rule")
    names = {"feature_service": meta["feature_service"], "registered_model": f"funnel-{kind}",
             "experiment": f"funnel-{kind}", "label_window_days": 1,
             "num_threads": cfg.training.mql.num_threads,
             "promotion_rule": PromotionRuleConfig.model_validate(rule_tree or {})}  # fmt: skip
    if meta["report"]["task"] == "churn":
        return ChurnConfig(**names, tiers=[RiskTier(**t) for t in FLAT_TIERS])
    decision = (override and override.decision) or given.get("decision") or FLAT_DECISION
    return MqlConfig(**names, threshold=decision)


def decision_setting(cfg: Config, kind: str) -> str:
    """The key that sets a model kind's decision rule, for messages."""
    return f"training.{kind}.threshold" if kind in KINDS else f"imports.{kind}.decision"


def dataset_timestamp(cfg: Config, kind: str) -> str | None:
    """The timestamp column of an imported table (None: its rows have no time)."""
    return load_dataset(cfg, kind)["spec"].get("timestamp") if is_dataset(cfg, kind) else None


@dataclass
class TrainResult:
    model_name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    threshold: float
    became_champion: bool
    timings: dict[str, float] = field(default_factory=dict)
    kind: str = "mql"
    tiers: list[dict[str, Any]] | None = None
    # better than chance on the test rows (see training.bootstrap.is_predictive); a model that
    # is not is never made champion
    predictive: bool = True
    roc_auc_ci: tuple[float, float] = (float("nan"), float("nan"))  # test ROC AUC, 95% bootstrap
    # why the model was not crowned although predictive (a test AUC too good to be true)
    withheld: str | None = None
    decision_note: str | None = None  # the decision rule could not be met as asked


PREDICTIVE_BOOT, PREDICTIVE_SEED = 500, 0  # the test ROC AUC interval of the non-predictive guard
ORACLE_BOOT = 500  # resamples of the paired model-vs-oracle AUC gap
MIN_FLAGGED = 10  # a precision target counts only on thresholds that flag at least this many


class Steps:
    """Prints each step with its duration, so a long run shows where it is."""

    def __init__(self, total: int, echo: bool = True) -> None:
        self.total, self.done, self.echo, self.timings = total, 0, echo, {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.done += 1
        if self.echo:
            print(f"[{self.done}/{self.total}] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        if self.echo:
            print(f"      {name}: {self.timings[name]:.1f}s", flush=True)


# -- the training rows ---------------------------------------------------------------------------
def feature_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Model features in a stable order, and which of them are categorical (text)."""
    names = [c for c in frame.columns if c not in NON_FEATURES]
    categorical = [
        c for c in names if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    return names, categorical


def category_levels(frame: pd.DataFrame, categorical: list[str]) -> dict[str, list[str]]:
    """The levels of each categorical column seen in ``frame``, sorted (the bundle's codes)."""
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}


def input_example(
    frame: pd.DataFrame, names: list[str], categorical: list[str], rows: int = 5
) -> pd.DataFrame:
    """The first rows of the model's features, numeric ones as float64: the input example
    (and signature) MLflow stores with a registered model."""
    example = frame[names].head(rows).copy()
    for column in names:
        if column not in categorical:
            example[column] = example[column].astype("float64")
    return example


def label_entities(cfg: Config, kind: str = "mql") -> pd.DataFrame:
    """The labelled entity rows of a model kind at the weekly snapshots (of an imported table:
    its rows)."""
    if is_dataset(cfg, kind):
        labels = pd.read_parquet(cfg.data_dir / "imports" / kind / "labels.parquet")
        return labels.drop(columns=[c for c in ("treatment",) if c in labels])

    manifest = read_manifest(cfg.raw_dir)
    ticks = snapshot_grid(manifest["start"], manifest["end"], cfg.feature_store.snapshot_every_days)
    window = kind_config(cfg, kind).label_window_days
    if kind == "churn":
        tables = read_tables(cfg.raw_dir, ["accounts", "subscriptions"])
        return churn_labels(tables["subscriptions"], ticks, window, manifest["end"])
    tables = read_tables(cfg.raw_dir, ["leads", "opportunities"])
    entity = mql_labels(tables["leads"], tables["opportunities"], ticks, window, manifest["end"])
    entity["request_job_title"] = ""  # the stored title
    return entity


def build_training_frame(
    cfg: Config, store: Any, service: str, kind: str = "mql", entity: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Labels at weekly snapshots (``entity``, by default ``label_entities``) joined
    point-in-time to the feature service's features."""
    if entity is None:
        entity = label_entities(cfg, kind)
    frame = historical_features(store, entity.drop(columns="label"), service)
    if len(frame) != len(entity):
        raise RuntimeError(f"historical retrieval returned {len(frame)} rows for {len(entity)}")
    frame["label"] = entity["label"].to_numpy()
    return frame


def stratified_split(
    ids: pd.Series, label: pd.Series, validation: float = 0.2, test: float = 0.2
) -> np.ndarray:
    """'train' / 'validation' / 'test' per row, stratified by label and fixed by the ids (a
    row keeps its part when rows are added or reordered): within each class, rows ordered by a
    hash of their id take the first ``test`` share as test, the next ``validation`` share as
    validation."""
    order_key = pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()
    out = np.full(len(ids), "train", dtype=object)
    y = label.to_numpy()
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        ranked = rows[np.argsort(order_key[rows], kind="stable")]
        n_test, n_val = round(test * len(rows)), round(validation * len(rows))
        out[ranked[:n_test]] = "test"
        out[ranked[n_test : n_test + n_val]] = "validation"
    return out


def time_ordered_split(
    stamps: pd.Series, ids: pd.Series, validation: float = 0.2, test: float = 0.2
) -> np.ndarray:
    """'train' / 'validation' / 'test' per row of a table whose rows have a time: the newest
    ``test`` share is test, the ``validation`` share before it validation, the rest train (ties
    in time ordered by a hash of the id, so the parts do not depend on the file's order)."""
    order_key = pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()
    order = np.lexsort((order_key, pd.to_datetime(stamps, utc=True).to_numpy()))
    n = len(order)
    n_test, n_val = round(test * n), round(validation * n)
    out = np.full(n, "train", dtype=object)
    out[order[n - n_test :]] = "test"
    out[order[n - n_test - n_val : n - n_test]] = "validation"
    return out


@dataclass
class TrainingSplit:
    """A model kind's labelled rows with their features, split by time, as training sees them."""

    frame: pd.DataFrame
    parts: dict[str, pd.DataFrame]  # train, validation, test
    names: list[str]  # feature columns
    categorical: list[str]


def training_split(cfg: Config, kind: str, store: Any = None) -> TrainingSplit:
    """Labels + Feast historical features, split into train / validation / test weeks: the rows
    ``train_classifier`` fits and evaluates on (and that comparisons and model cards rebuild).

    The labels are checked before any feature is read: no labelled snapshot, too few weeks for
    the split, or one class only (in all rows or in one part) raise ``TrainingDataError``."""
    conf = kind_config(cfg, kind)
    spec = kind_spec(cfg, kind)
    dataset = is_dataset(cfg, kind)
    try:
        entity = label_entities(cfg, kind)
        if dataset and dataset_timestamp(cfg, kind):  # train on the past, test on the newest
            split = time_ordered_split(entity["event_timestamp"], entity[spec.entity_key])
        elif dataset:  # one row per unit: a stratified split, fixed by the ids
            split = stratified_split(entity[spec.entity_key], entity["label"])
        else:
            split = time_split(
                entity["event_timestamp"],
                conf.split.validation_weeks,
                conf.split.test_weeks,
                conf.split.warmup_weeks,
                setting=f"training.{kind}.split",
            ).to_numpy()
    except TrainingDataError as exc:
        raise TrainingDataError(f"training {kind}: {exc}") from None
    longer = "or generate or import a longer period"
    if dataset:
        fix = "check the label column of the imported table"
    else:
        fix = f"{LABEL_MEANING[kind].format(window=conf.label_window_days)}, {longer}"
    require_two_classes(entity, f"training {kind}: the label has", fix, dated=not dataset)
    for part in ("train", "validation", "test"):
        if dataset:
            fix = "the imported table has too few rows of one class to split"
        elif part == "train":
            fix = f"give training more weeks: shorten training.{kind}.split, {longer}"
        else:
            fix = f"widen training.{kind}.split.{part}_weeks, {longer}"
        rows = entity[split == part]
        require_two_classes(rows, f"training {kind}: the {part} rows have", fix, dated=not dataset)

    frame = build_training_frame(
        cfg, store or feature_store(cfg), conf.feature_service, kind, entity=entity
    )
    frame["split"] = split
    names, categorical = feature_columns(frame.drop(columns=[spec.entity_key]))
    parts = {p: frame[frame["split"] == p] for p in ("train", "validation", "test")}
    return TrainingSplit(frame, parts, names, categorical)


# -- pure steps: the decision rule, the metrics, the bundle's contents ---------------------------
ThresholdRule = CapacityThreshold | PrecisionThreshold | TopFractionThreshold


def decision_rule(
    conf: ClassifierConfig,
) -> tuple[ThresholdRule | None, list[dict[str, Any]] | None]:
    """A classifier's decision rule: the MQL threshold rule, or the churn risk tiers."""
    if isinstance(conf, ChurnConfig):
        return None, [t.model_dump() for t in conf.tiers]
    assert isinstance(conf, MqlConfig)
    return conf.threshold, None


def rule_mode(rule: ThresholdRule | None) -> str:
    """How the decision threshold is chosen: capacity, precision or risk_tiers."""
    return rule.mode if rule is not None else "risk_tiers"


def choose_threshold(
    rule: ThresholdRule | None,
    tiers: list[dict[str, Any]] | None,
    prob: np.ndarray,
    y: np.ndarray,
    snapshot: np.ndarray,
) -> tuple[float, str | None]:
    """The decision threshold (sales capacity, a precision target or a top fraction); with
    risk tiers, the top tier's lower bound (a customer at or above it is flagged at risk). With
    it, a note when the rule cannot be met as asked: a precision target that no threshold
    reaches falls back to the top fraction at the positive rate (training never fails here)."""
    if tiers:
        return tiers[-1]["min_probability"], None
    if isinstance(rule, CapacityThreshold):
        return capacity_threshold(prob, snapshot, rule.weekly_capacity), None
    rate = float(np.mean(y))
    if isinstance(rule, PrecisionThreshold):
        threshold = precision_threshold(y, prob, rule.target, min_flagged=MIN_FLAGGED)
        if threshold is not None:
            return threshold, None
        return top_fraction_threshold(prob, rate), (
            f"no threshold reaches precision {rule.target:.2f} on the validation rows (best "
            f"{best_precision(y, prob, MIN_FLAGGED):.2f} flagging {MIN_FLAGGED} or more); "
            f"flagging the top {rate:.1%} (the positive rate) instead"
        )
    if isinstance(rule, TopFractionThreshold):
        return top_fraction_threshold(prob, rule.fraction or rate), None
    raise ValueError("a classifier needs a threshold rule or risk tiers")


def check_decision_rule(rule: ThresholdRule | None, dated: bool, setting: str) -> None:
    """Before any tuning: a rule that cannot work on these rows is refused, naming the key."""
    if isinstance(rule, CapacityThreshold) and not dated:
        raise InputError(
            f"{setting}: a weekly capacity needs rows with a time (import the table with "
            "--timestamp); use mode: top_fraction or mode: precision"
        )


def quick_precision_check(rule: ThresholdRule | None, data: TrainData, setting: str) -> str | None:
    """Before tuning: a warning when a precision target is out of reach of a quick model (a
    tuned model rarely gains more than a few points on it)."""
    if not isinstance(rule, PrecisionThreshold):
        return None
    import lightgbm as lgb  # deferred: the CLI imports this module before the data checks

    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 0}
    quick = lgb.train(params, data.datasets()[0], num_boost_round=60)
    best = best_precision(data.y_valid, quick.predict(data.x_valid), MIN_FLAGGED)
    if best >= rule.target:
        return None
    return (
        f"a quick model reaches precision {best:.2f} at best on the validation rows, below the "
        f"target {rule.target:.2f} ({setting}): unless tuning gains that much, the rule falls "
        "back to flagging the top rows at the positive rate"
    )


def tier_report(y: np.ndarray, prob: np.ndarray, tiers: list[dict[str, Any]]) -> dict[str, float]:
    """Share of rows and observed positive rate per risk tier (a tier holds the probabilities
    from its min_probability up to the next tier's)."""
    bounds = [t["min_probability"] for t in tiers]
    index = np.searchsorted(bounds, prob, side="right") - 1
    out: dict[str, float] = {}
    for i, tier in enumerate(tiers):
        rows = index == i
        out[f"tier_{tier['name']}_share"] = float(rows.mean())
        out[f"tier_{tier['name']}_rate"] = float(y[rows].mean()) if rows.any() else float("nan")
    return out


def decision_metrics(
    y: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    weeks: int | None,
    tiers: list[dict[str, Any]] | None,
) -> dict[str, float]:
    """What the decision rule does on the test rows: rows flagged per week over ``weeks`` test
    weeks (MQLs, or customers at risk), or the share flagged when the rows have no weeks
    (``weeks`` None: an imported table); with risk tiers, each tier's share and observed rate."""
    flagged = prob >= threshold
    tiered = tier_report(y, prob, tiers) if tiers is not None else {}
    if weeks is None:
        return {"flagged_share": float(flagged.mean()), **tiered}
    per_week = float(flagged.sum() / max(weeks, 1))
    if tiers is None:
        return {"mql_per_week": per_week}
    return {"at_risk_per_week": per_week, **tiered}


def evaluation_metrics(
    y: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    weeks: int | None,
    tiers: list[dict[str, Any]] | None,
    oracle: dict[str, float],
    roc_auc_ci: tuple[float, float],
) -> dict[str, float]:
    """The test metrics of a classifier: ranking and calibration at ``threshold``, the
    oracle's (when known), the decision rule's, and the ROC AUC interval of the
    non-predictive guard."""
    metrics = classification_report(y, prob, threshold)
    metrics.update(oracle)
    metrics.update(decision_metrics(y, prob, threshold, weeks, tiers))
    metrics["roc_auc_ci_low"], metrics["roc_auc_ci_high"] = roc_auc_ci
    return metrics


def not_predictive_warning(title: str, check: PredictiveCheck) -> str:
    """What training says, loudly, of a model no better than chance."""
    return (
        f"NOT PREDICTIVE: the {title} model is no better than chance on the test rows "
        f"({check.reason}); it will not be made champion"
    )


def bundle_meta(
    kind: str, feature_service: str, split: TrainingSplit, tiers: list[dict[str, Any]] | None
) -> BundleMeta:
    """The bundle's contract before fitting: features and the training rows' categorical
    levels; the calibration and the threshold are placeholders until the final fit."""
    return BundleMeta(
        model_kind=kind,
        feature_service=feature_service,
        features=split.names,
        categories=category_levels(split.parts["train"], split.categorical),
        calibration={"a": 1.0, "b": 0.0},
        threshold=0.5,
        tiers=tiers,
    )


def bundle_extra(
    holdout: lgb.Booster,
    booster: lgb.Booster,
    refit_on_validation: bool,
    stamps: pd.Series,
    rule: ThresholdRule | None,
) -> dict[str, Any]:
    """What the bundle records of its training: rounds, trees, refit, data window, rule."""
    return {
        "best_iteration": int(holdout.best_iteration),
        "num_trees": int(booster.num_trees()),
        "refit_on_validation": refit_on_validation,
        "data_window": [str(stamps.min()), str(stamps.max())],
        "threshold_rule": rule.model_dump() if rule is not None else {"mode": rule_mode(rule)},
    }


def reason_examples(model: ScoringModel, rows: pd.DataFrame, key: str) -> dict[str, Any]:
    """The probability and reason texts of a few rows, as the training run logs them."""
    prob, reasons = model.predict_explain(rows)
    return {
        "examples": [
            {key: uid, "probability": float(p), "reasons": [r.text for r in rs]}
            for uid, p, rs in zip(rows[key], prob, reasons, strict=True)
        ]
    }


@dataclass(frozen=True)
class Boosting:
    """What every LightGBM fit of one training run shares."""

    num_boost_round: int
    early_stopping_rounds: int
    refit_on_validation: bool
    fixed: dict[str, Any]  # parameters never tuned: threads, monotone constraints

    @classmethod
    def of(cls, conf: ClassifierConfig, names: list[str]) -> Boosting:
        """A classifier's boosting settings, with the monotone constraints of ``names``."""
        fixed = {
            "num_threads": conf.num_threads,
            "monotone_constraints": monotone_constraints(names),
        }
        return cls(
            conf.num_boost_round, conf.early_stopping_rounds, conf.refit_on_validation, fixed
        )


def train_data(split: TrainingSplit, matrix: FeatureMatrix) -> TrainData:
    """The train and validation matrices of a split, built once for every trial."""
    train, valid = split.parts["train"], split.parts["validation"]
    return TrainData(
        matrix(train), train["label"].to_numpy(), matrix(valid), valid["label"].to_numpy(),
        split.names, split.categorical,
    )  # fmt: skip


# -- fitting and I/O: the oracle, the study, the final fit, MLflow -----------------------------
def oracle_report(
    path: Path | None, key: str, test: pd.DataFrame, prob: np.ndarray
) -> tuple[dict[str, float], np.ndarray | None]:
    """Evaluation only: the generator's true probabilities (the oracle file at ``path``, rows
    keyed by ``key`` and snapshot) on the same test rows, if present.

    Nothing in training reads the oracle; it is joined here after the model is fixed. Returns
    the metrics and the oracle's probability per test row (None unless every row has one).
    """

    if path is None or not path.is_file():
        return {}, None
    oracle = pd.read_parquet(path).rename(columns={"snapshot_ts": "event_timestamp"})
    rows = test[[key, "event_timestamp", "label"]].assign(model=prob)
    merged = rows.merge(oracle, on=[key, "event_timestamp"], how="left")
    matched = merged[merged["p_true"].notna()]
    if matched.empty or matched["label"].nunique() < 2:
        return {}, None
    # the gap as a paired difference on the same rows, with its 95% bootstrap interval
    gap = bootstrap_compare(
        matched["label"].to_numpy(), matched["model"].to_numpy(), matched["p_true"].to_numpy(),
        metrics=["roc_auc"], n_boot=ORACLE_BOOT, seed=0,
    )["roc_auc"]  # fmt: skip
    metrics = {
        "oracle_roc_auc": gap.b,
        "oracle_matched_rows": float(len(matched)),
        "roc_auc_gap_to_oracle": gap.difference,
        "roc_auc_gap_to_oracle_ci_low": gap.difference_ci[0],
        "roc_auc_gap_to_oracle_ci_high": gap.difference_ci[1],
    }
    aligned = merged["p_true"].to_numpy() if len(matched) == len(merged) else None
    return metrics, aligned


def fit_final(
    params: dict[str, Any],
    datasets: tuple[lgb.Dataset, lgb.Dataset],
    data: TrainData,
    boosting: Boosting,
    meta: BundleMeta,
    rule: ThresholdRule | None,
    valid_snapshot: np.ndarray,
) -> tuple[ScoringModel, lgb.Booster, str | None]:
    """The served model and the train-only booster it was calibrated on.

    Early stopping on the validation weeks fixes the number of rounds; the model's validation
    scores (out of sample) fit the calibration and the threshold, set on ``meta``. With
    ``refit_on_validation`` the served booster is refit on train + validation. Also returns
    the decision rule's note (see ``choose_threshold``)."""
    holdout = fit_booster(
        params, *datasets, boosting.num_boost_round, boosting.early_stopping_rounds,
        fixed=boosting.fixed,
    )  # fmt: skip
    val_raw = holdout.predict(data.x_valid, raw_score=True)
    meta.calibration = fit_platt(val_raw, data.y_valid)
    val_prob = ScoringModel(holdout, meta).calibrate(val_raw)
    meta.threshold, note = choose_threshold(
        rule, meta.tiers, val_prob, data.y_valid, valid_snapshot
    )
    booster = (
        refit_booster(params, data, holdout.best_iteration, boosting.fixed)
        if boosting.refit_on_validation
        else holdout
    )
    return ScoringModel(booster, meta), holdout, note


def evaluate(
    model: ScoringModel, test: pd.DataFrame, oracle_path: Path | None, key: str, weekly: bool
) -> tuple[dict[str, float], PredictiveCheck, np.ndarray, np.ndarray | None]:
    """The model on the test rows: its metrics, the non-predictive guard's check, its
    probabilities and the oracle's (when every row has one). ``weekly``: the rows are weekly
    snapshots (decisions per week), else rows of an imported table (the share flagged)."""
    prob = model.predict_proba(test)
    y = test["label"].to_numpy()
    oracle, oracle_prob = oracle_report(oracle_path, key, test, prob)
    # the non-predictive guard: a model no better than chance never becomes champion
    check = predictive_check(y, prob, PREDICTIVE_BOOT, PREDICTIVE_SEED)
    weeks = test["event_timestamp"].nunique() if weekly else None
    metrics = evaluation_metrics(
        y, prob, model.threshold, weeks, model.meta.tiers, oracle, check.roc_auc_ci
    )
    return metrics, check, prob, oracle_prob


def log_evaluation(
    model: ScoringModel,
    test: pd.DataFrame,
    prob: np.ndarray,
    oracle_prob: np.ndarray | None,
    metrics: dict[str, float],
    predictive: bool,
    key: str,
) -> None:
    """The test metrics, plots and example reasons, in the active MLflow run."""
    import mlflow

    y = test["label"].to_numpy()
    mlflow.set_tag("predictive", str(predictive).lower())
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    mlflow.log_metric("threshold", model.threshold)
    mlflow.log_figure(plots.calibration_plot(y, prob), "plots/calibration.png")
    mlflow.log_figure(plots.lift_plot(y, prob, oracle_prob), "plots/lift.png")
    gains = model.booster.feature_importance(importance_type="gain")
    mlflow.log_figure(plots.importance_plot(model.feature_names, gains), "plots/importance.png")
    mlflow.log_dict(reason_examples(model, test.head(3), key), "reasons_examples.json")


def gain_shares(model: ScoringModel) -> dict[str, float]:
    """Each feature's share of the booster's total split gain."""
    gains = model.booster.feature_importance(importance_type="gain")
    total = float(gains.sum()) or 1.0
    return {name: float(g) / total for name, g in zip(model.feature_names, gains, strict=True)}


def register_classifier(
    model: ScoringModel,
    test: pd.DataFrame,
    categorical: list[str],
    registered_model: str,
    tags: dict[str, str],
    crownable: bool,
) -> tuple[str, bool]:
    """Log and register the model from the active run; crown it champion when the model has
    none (and it is crownable: predictive, not too good to be true), else make it the
    challenger. The version and whether it became champion."""
    from mlflow.models import infer_signature

    example = input_example(test, model.feature_names, categorical)
    signature = infer_signature(example, model.predict_proba(example))
    version = log_bundle(
        model, BUNDLE_ARTIFACT, ScoringPyfunc(), registered_model, example, PIP_REQUIREMENTS,
        signature,
    )  # fmt: skip
    crowned = tag_and_crown(registered_model, version, tags, predictive=crownable, challenger=True)
    return version, crowned


# -- the jobs ------------------------------------------------------------------------------------
def train_mql(
    cfg: Config, progress: bool = True, n_trials: int | None = None, workers: int | None = None
) -> TrainResult:
    """Tune, train, calibrate, evaluate, log and register the MQL model."""
    return train_classifier(cfg, "mql", progress=progress, n_trials=n_trials, workers=workers)


def train_churn(
    cfg: Config, progress: bool = True, n_trials: int | None = None, workers: int | None = None
) -> TrainResult:
    """Tune, train, calibrate, evaluate, log and register the churn-risk model."""
    return train_classifier(cfg, "churn", progress=progress, n_trials=n_trials, workers=workers)


def train_classifier(
    cfg: Config,
    kind: str,
    progress: bool = True,
    n_trials: int | None = None,
    workers: int | None = None,
) -> TrainResult:
    """The one training path of the classifiers, for model kind ``kind`` (mql or churn).
    ``workers`` (default ``optuna.workers``) processes run the Optuna trials; more than one
    needs the study and the runs on shared stores (see ``training.workers``)."""
    conf, spec = kind_config(cfg, kind), kind_spec(cfg, kind)
    workers = workers or cfg.optuna.workers
    check_shared_stores(workers, cfg.optuna_storage, cfg.tracking_uri)
    rule, tiers = decision_rule(conf)
    dataset, setting = is_dataset(cfg, kind), decision_setting(cfg, kind)
    check_decision_rule(rule, not dataset or bool(dataset_timestamp(cfg, kind)), setting)
    steps = Steps(total=5, echo=progress)
    with steps.step("build training set (labels + Feast historical features)"):
        split = training_split(cfg, kind)
        meta = bundle_meta(kind, conf.feature_service, split, tiers)
        data = train_data(split, FeatureMatrix(meta.features, meta.categories))
        datasets = data.datasets()
        boosting = Boosting.of(conf, split.names)
        _say(quick_precision_check(rule, data, setting), progress)

    # after the data checks: bad data fails in a second, before these slow imports, and
    # leaves no tracking store behind
    import mlflow

    configure_tracking(cfg)
    ensure_experiment(cfg, conf.experiment)
    trials = n_trials or cfg.optuna.n_trials
    with mlflow.start_run(run_name=f"{kind}-train") as parent:
        mlflow.set_tags({"model_kind": kind, "feature_service": conf.feature_service})
        mlflow.log_params({
            "feature_service": conf.feature_service, "n_trials": trials, "tuning_workers": workers,
            "label_window_days": conf.label_window_days, "threshold_rule": rule_mode(rule),
            **{f"rows_{p}": len(r) for p, r in split.parts.items()},
        })  # fmt: skip
        in_workers = f" in {workers} worker processes" if workers > 1 else ""
        with steps.step(
            f"tune LightGBM with Optuna ({trials} trials{in_workers}, each an MLflow child run)"
        ):
            settings, storage = cfg.optuna, cfg.optuna_storage
            study = open_study(
                f"{kind}-{parent.info.run_id}", storage, settings.seed, settings.n_startup_trials
            )
            if progress and is_shared(storage):
                _say(f"study {study.study_name}: other machines join it with "
                     f"`funnel train worker {study.study_name}`", progress)  # fmt: skip
            job = TuningJob(
                parent.info.run_id, parent.info.experiment_id, trials, settings.seed,
                settings.n_startup_trials, boosting.num_boost_round,
                boosting.early_stopping_rounds, boosting.fixed, settings.timeout_s,
            )  # fmt: skip
            best = tune_study(study, storage, data, datasets, job, workers, progress)
            mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
            mlflow.log_metric("best_val_roc_auc", best.value)

        with steps.step("fit final model, calibrate, set the decision rule"):
            snapshot = split.parts["validation"]["event_timestamp"].to_numpy()
            model, holdout, note = fit_final(
                best.params, datasets, data, boosting, meta, rule, snapshot
            )
            mlflow.log_metric("val_roc_auc_holdout_model", holdout.best_score["valid"]["auc"])
            meta.extra = bundle_extra(
                holdout, model.booster, boosting.refit_on_validation,
                split.frame["event_timestamp"], rule,
            )  # fmt: skip
            if note:
                meta.extra["decision_note"] = note
                _say(f"{note} (set {setting} to choose)", progress)

        with steps.step("evaluate on the test rows"):
            test, key = split.parts["test"], spec.entity_key
            oracle_path = cfg.oracle_dir / spec.oracle_file if spec.oracle_file else None
            metrics, check, prob, oracle_prob = evaluate(model, test, oracle_path, key, not dataset)
            if not check.predictive:
                _say(not_predictive_warning(spec.title, check), progress, loud=True)
            withheld = withheld_reason(cfg, kind, metrics["roc_auc"], model) if dataset else None
            _say(withheld and f"NOT CROWNED: {withheld}", progress, loud=True)
            log_evaluation(model, test, prob, oracle_prob, metrics, check.predictive, key)

        with steps.step("log and register the model in MLflow"):
            tags = {"feature_service": conf.feature_service, "model_kind": kind,
                    "predictive": str(check.predictive).lower(),
                    **({"withheld": withheld} if withheld else {})}  # fmt: skip
            version, became_champion = register_classifier(
                model, test, split.categorical, conf.registered_model, tags,
                crownable=check.predictive and withheld is None,
            )  # fmt: skip
    return TrainResult(
        model_name=conf.registered_model, version=version, run_id=parent.info.run_id,
        metrics=metrics, threshold=meta.threshold, became_champion=became_champion,
        timings=steps.timings, kind=kind, tiers=tiers, predictive=check.predictive,
        roc_auc_ci=check.roc_auc_ci, withheld=withheld, decision_note=note,
    )  # fmt: skip


def withheld_reason(cfg: Config, kind: str, test_auc: float, model: ScoringModel) -> str | None:
    """Why an imported table's model must not be crowned without the user's say: a test AUC
    too good to be true for such a task, naming the features that carry it and what to do."""
    meta = load_dataset(cfg, kind)
    limit = meta["spec"].get("leakage", {}).get("max_test_auc", 0.95)
    reason = too_good_to_be_true(test_auc, limit, gain_shares(model))
    if reason is None:
        return None
    return (
        f"{reason}. If those columns are known only after the outcome, import again with "
        "--post-outcome COLUMN; if they are known before it, crown this version yourself "
        f"(`funnel promote {kind} VERSION`)"
    )


def _say(message: str | None, progress: bool, loud: bool = False) -> None:
    """A warning of the training run: printed when the run shows its progress, else logged
    (the result repeats the loud ones, so they are said once)."""
    if not message:
        return
    if progress:
        print(f"\n!!! {message} !!!\n" if loud else f"  note: {message}", flush=True)
    else:
        log.warning(message)

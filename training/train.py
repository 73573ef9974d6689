"""The training job of the classifiers (MQL and churn): Feast historical features ->
Optuna-tuned LightGBM -> calibrated model with its decision rule (an MQL threshold or churn risk
tiers) in MLflow, registered and given the ``champion`` alias when none exists.

One path for both: what differs by model kind (the entity, the labels, the decision rule, the
oracle file) is a ``ModelKind``; everything else is shared.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import ChurnConfig, ClassifierConfig, Config, MqlConfig
from training.compare import predictive_check
from training.labels import (
    TrainingDataError,
    churn_labels,
    mql_labels,
    require_two_classes,
    time_split,
)
from training.metrics import (
    capacity_threshold,
    classification_report,
    fit_platt,
    precision_threshold,
)
from training.scoring import BundleMeta, ScoringModel

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
FLAT_PRECISION = 0.5  # the decision threshold of a propensity model on an imported table

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
    raise ValueError(
        f"unknown model kind {kind!r}: neither one of {sorted(KINDS)} nor a table imported "
        f"under {cfg.data_dir / 'imports'} (`funnel import`)"
    )


def kind_config(cfg: Config, kind: str) -> ClassifierConfig:
    if kind in KINDS:
        return getattr(cfg.training, kind)
    spec = kind_spec(cfg, kind)  # raises for an unknown kind
    from core.config import PrecisionThreshold, RiskTier
    from core.flat import load_dataset

    meta = load_dataset(cfg, spec.name)
    names = {"feature_service": meta["feature_service"], "registered_model": f"funnel-{kind}",
             "experiment": f"funnel-{kind}", "label_window_days": 1,
             "num_threads": cfg.training.mql.num_threads}  # fmt: skip
    if meta["report"]["task"] == "churn":
        return ChurnConfig(**names, tiers=[RiskTier(**t) for t in FLAT_TIERS])
    return MqlConfig(**names, threshold=PrecisionThreshold(mode="precision", target=FLAT_PRECISION))


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
    # better than chance on the test rows (see training.compare.is_predictive); a model that
    # is not is never made champion
    predictive: bool = True
    roc_auc_ci: tuple[float, float] = (float("nan"), float("nan"))  # test ROC AUC, 95% bootstrap


PREDICTIVE_BOOT, PREDICTIVE_SEED = 500, 0  # the test ROC AUC interval of the non-predictive guard


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


def read_manifest(raw_dir: Path) -> dict[str, Any]:
    path = raw_dir / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `funnel data generate` first")
    return json.loads(path.read_text())


def feature_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Model features in a stable order, and which of them are categorical (text)."""
    names = [c for c in frame.columns if c not in NON_FEATURES]
    categorical = [
        c for c in names if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    return names, categorical


def label_entities(cfg: Config, kind: str = "mql") -> pd.DataFrame:
    """The labelled entity rows of a model kind at the weekly snapshots (of an imported table:
    its rows)."""
    from core.tables import read_tables
    from core.timegrid import snapshot_grid

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
    from features.store import historical_features

    if entity is None:
        entity = label_entities(cfg, kind)
    frame = historical_features(store, entity.drop(columns="label"), service)
    if len(frame) != len(entity):
        raise RuntimeError(f"historical retrieval returned {len(frame)} rows for {len(entity)}")
    frame["label"] = entity["label"].to_numpy()
    return frame


def _categories(frame: pd.DataFrame, categorical: list[str]) -> dict[str, list[str]]:
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}


def choose_threshold(
    cfg: Config, prob: np.ndarray, y: np.ndarray, snapshot: np.ndarray, kind: str = "mql"
) -> float:
    """The MQL threshold (sales capacity or a precision target); for churn, the top tier's
    lower bound (a customer at or above it is flagged at risk)."""
    conf = kind_config(cfg, kind)
    if isinstance(conf, ChurnConfig):
        return conf.tiers[-1].min_probability
    assert isinstance(conf, MqlConfig)
    rule = conf.threshold
    if rule.mode == "capacity":
        return capacity_threshold(prob, snapshot, rule.weekly_capacity)
    return precision_threshold(y, prob, rule.target)


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


def oracle_report(
    cfg: Config, test: pd.DataFrame, prob: np.ndarray, kind: str = "mql"
) -> tuple[dict[str, float], np.ndarray | None]:
    """Evaluation only: the generator's true probabilities on the same test rows, if present.

    Nothing in training reads the oracle; it is joined here after the model is fixed. Returns
    the metrics and the oracle's probability per test row (None unless every row has one).
    """
    from sklearn.metrics import roc_auc_score

    spec = kind_spec(cfg, kind)
    key = spec.entity_key
    path = cfg.oracle_dir / spec.oracle_file
    if not spec.oracle_file or not path.is_file():
        return {}, None
    oracle = pd.read_parquet(path).rename(columns={"snapshot_ts": "event_timestamp"})
    rows = test[[key, "event_timestamp", "label"]].assign(model=prob)
    merged = rows.merge(oracle, on=[key, "event_timestamp"], how="left")
    matched = merged[merged["p_true"].notna()]
    if matched.empty or matched["label"].nunique() < 2:
        return {}, None
    oracle_auc = float(roc_auc_score(matched["label"], matched["p_true"]))
    model_auc = float(roc_auc_score(matched["label"], matched["model"]))
    metrics = {
        "oracle_roc_auc": oracle_auc,
        "oracle_matched_rows": float(len(matched)),
        "roc_auc_gap_to_oracle": oracle_auc - model_auc,
    }
    aligned = merged["p_true"].to_numpy() if len(matched) == len(merged) else None
    return metrics, aligned


def logged_trial(trial: Any, run: Any) -> float:
    """Run one Optuna trial inside its own MLflow child run of the active parent run."""
    import mlflow
    import optuna

    with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
        mlflow.set_tag("optuna_trial", trial.number)
        try:
            value = run()
        except optuna.TrialPruned:
            mlflow.log_params(trial.params)
            mlflow.set_tag("state", "PRUNED")
            raise
        mlflow.log_params(trial.params)
        mlflow.log_metrics(
            {
                "val_roc_auc": value,
                **{k: float(v) for k, v in trial.user_attrs.items() if isinstance(v, (int, float))},
            }
        )
        mlflow.set_tag("state", "COMPLETE")
        return value


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
    from app.pipeline import feature_store

    conf = kind_config(cfg, kind)
    spec = kind_spec(cfg, kind)
    dataset = is_dataset(cfg, kind)
    try:
        entity = label_entities(cfg, kind)
        if dataset:  # one row per unit: a stratified split, fixed by the ids
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


def train_mql(cfg: Config, progress: bool = True, n_trials: int | None = None) -> TrainResult:
    """Tune, train, calibrate, evaluate, log and register the MQL model."""
    return train_classifier(cfg, "mql", progress=progress, n_trials=n_trials)


def train_churn(cfg: Config, progress: bool = True, n_trials: int | None = None) -> TrainResult:
    """Tune, train, calibrate, evaluate, log and register the churn-risk model."""
    return train_classifier(cfg, "churn", progress=progress, n_trials=n_trials)


def train_classifier(
    cfg: Config, kind: str, progress: bool = True, n_trials: int | None = None
) -> TrainResult:
    """The one training path of the classifiers, for model kind ``kind`` (mql or churn)."""
    from core.pg import ensure_schema
    from training import plots
    from training.registry import (
        BUNDLE_ARTIFACT,
        configure_tracking,
        ensure_experiment,
        tag_and_crown,
    )
    from training.tuning import (
        TrainData,
        fit_booster,
        monotone_constraints,
        objective,
        refit_booster,
    )

    conf = kind_config(cfg, kind)
    spec = kind_spec(cfg, kind)
    key = spec.entity_key
    steps = Steps(total=5, echo=progress)

    with steps.step("build training set (labels + Feast historical features)"):
        split = training_split(cfg, kind)
        frame, parts, names, categorical = split.frame, split.parts, split.names, split.categorical
        tiers = [t.model_dump() for t in conf.tiers] if isinstance(conf, ChurnConfig) else None
        meta = BundleMeta(
            model_kind=kind,
            feature_service=conf.feature_service,
            features=names,
            categories=_categories(parts["train"], categorical),
            calibration={"a": 1.0, "b": 0.0},
            threshold=0.5,
            tiers=tiers,
        )
        shell = ScoringModel(booster=None, meta=meta)  # type: ignore[arg-type]
        data = TrainData(
            shell.matrix(parts["train"]),
            parts["train"]["label"].to_numpy(),
            shell.matrix(parts["validation"]),
            parts["validation"]["label"].to_numpy(),
            names,
            categorical,
        )
        datasets = data.datasets()
        fixed = {
            "num_threads": conf.num_threads,
            "monotone_constraints": monotone_constraints(names),
        }

    # after the data checks: bad data fails in a second, before these slow imports, and
    # leaves no tracking store behind
    import mlflow
    import optuna
    from mlflow.models import infer_signature

    configure_tracking(cfg)
    ensure_experiment(cfg, conf.experiment)
    trials = n_trials or cfg.optuna.n_trials
    rule = conf.threshold.mode if isinstance(conf, MqlConfig) else "risk_tiers"
    with mlflow.start_run(run_name=f"{kind}-train") as parent:
        mlflow.set_tags({"model_kind": kind, "feature_service": conf.feature_service})
        mlflow.log_params(
            {
                "feature_service": conf.feature_service,
                "n_trials": trials,
                "label_window_days": conf.label_window_days,
                "threshold_rule": rule,
                **{f"rows_{p}": len(r) for p, r in parts.items()},
            }
        )
        with steps.step(f"tune LightGBM with Optuna ({trials} trials, each an MLflow child run)"):
            if cfg.optuna_storage.startswith("sqlite:///"):
                Path(cfg.optuna_storage.removeprefix("sqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
            ensure_schema(cfg.optuna_storage)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(
                study_name=f"{kind}-{parent.info.run_id}",
                storage=cfg.optuna_storage,
                direction="maximize",
                sampler=optuna.samplers.TPESampler(
                    seed=cfg.optuna.seed, n_startup_trials=cfg.optuna.n_startup_trials
                ),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=30),
            )
            study.optimize(
                lambda t: logged_trial(
                    t,
                    lambda: objective(
                        t, datasets, conf.num_boost_round, conf.early_stopping_rounds, fixed
                    ),
                ),
                n_trials=trials,
                timeout=cfg.optuna.timeout_s,
                show_progress_bar=progress,
            )
            best = study.best_trial
            mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
            mlflow.log_metric("best_val_roc_auc", best.value)

        with steps.step("fit final model, calibrate, set the decision rule"):
            # Early stopping on the validation weeks fixes the number of rounds; the model's
            # validation scores (out of sample) fit the calibration and the threshold.
            holdout = fit_booster(
                best.params,
                *datasets,
                conf.num_boost_round,
                conf.early_stopping_rounds,
                fixed=fixed,
            )
            val = parts["validation"]
            val_raw = holdout.predict(data.x_valid, raw_score=True)
            meta.calibration = fit_platt(val_raw, data.y_valid)
            val_prob = ScoringModel(holdout, meta).calibrate(val_raw)
            meta.threshold = choose_threshold(
                cfg, val_prob, data.y_valid, val["event_timestamp"].to_numpy(), kind
            )
            booster = (
                refit_booster(best.params, data, holdout.best_iteration, fixed)
                if conf.refit_on_validation
                else holdout
            )
            model = ScoringModel(booster, meta)
            mlflow.log_metric("val_roc_auc_holdout_model", holdout.best_score["valid"]["auc"])
            meta.extra = {
                "best_iteration": int(holdout.best_iteration),
                "num_trees": int(booster.num_trees()),
                "refit_on_validation": conf.refit_on_validation,
                "data_window": [
                    str(frame["event_timestamp"].min()),
                    str(frame["event_timestamp"].max()),
                ],
                "threshold_rule": (
                    conf.threshold.model_dump() if isinstance(conf, MqlConfig) else {"mode": rule}
                ),
            }

        with steps.step("evaluate on the test weeks"):
            test = parts["test"]
            prob = model.predict_proba(test)
            y_test = test["label"].to_numpy()
            metrics = classification_report(y_test, prob, meta.threshold)
            oracle_metrics, oracle_prob = oracle_report(cfg, test, prob, kind)
            metrics.update(oracle_metrics)
            weeks = test["event_timestamp"].nunique()
            flagged = float((prob >= meta.threshold).sum() / max(weeks, 1))
            if tiers is None:
                metrics["mql_per_week"] = flagged
            else:
                metrics["at_risk_per_week"] = flagged
                metrics.update(tier_report(y_test, prob, tiers))
            # The non-predictive guard: a model no better than chance never becomes champion.
            check = predictive_check(y_test, prob, PREDICTIVE_BOOT, PREDICTIVE_SEED)
            metrics["roc_auc_ci_low"], metrics["roc_auc_ci_high"] = check.roc_auc_ci
            mlflow.set_tag("predictive", str(check.predictive).lower())
            if not check.predictive:
                warning = (
                    f"NOT PREDICTIVE: the {spec.title} model is no better than chance on the "
                    f"test rows ({check.reason}); it will not be made champion"
                )
                log.warning(warning)
                if progress:
                    print(f"\n!!! {warning} !!!\n", flush=True)
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            mlflow.log_metric("threshold", meta.threshold)
            mlflow.log_figure(plots.calibration_plot(y_test, prob), "plots/calibration.png")
            mlflow.log_figure(plots.lift_plot(y_test, prob, oracle_prob), "plots/lift.png")
            gains = booster.feature_importance(importance_type="gain")
            mlflow.log_figure(plots.importance_plot(names, gains), "plots/importance.png")
            example = test.head(3)
            example_prob, example_reasons = model.predict_explain(example)
            mlflow.log_dict(
                {
                    "examples": [
                        {key: uid, "probability": float(p), "reasons": [r.text for r in rs]}
                        for uid, p, rs in zip(
                            example[key], example_prob, example_reasons, strict=True
                        )
                    ]
                },
                "reasons_examples.json",
            )

        with steps.step("log and register the model in MLflow"):
            from training.pyfunc import ScoringPyfunc  # defining it makes MLflow check hints

            with tempfile.TemporaryDirectory() as tmp:
                bundle = model.save(Path(tmp) / BUNDLE_ARTIFACT)
                x_example = test[names].head(5).copy()
                for c in names:
                    if c not in categorical:
                        x_example[c] = x_example[c].astype("float64")
                signature = infer_signature(x_example, model.predict_proba(x_example))
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=ScoringPyfunc(),
                    artifacts={BUNDLE_ARTIFACT: str(bundle)},
                    signature=signature,
                    input_example=x_example,
                    pip_requirements=PIP_REQUIREMENTS,
                    registered_model_name=conf.registered_model,
                )
            version = str(info.registered_model_version)
            became_champion = tag_and_crown(
                conf.registered_model,
                version,
                {
                    "feature_service": conf.feature_service,
                    "model_kind": kind,
                    "predictive": str(check.predictive).lower(),
                },
                predictive=check.predictive,
                challenger=True,
            )
            mlflow.set_tag("registered_version", version)
    return TrainResult(
        model_name=conf.registered_model,
        version=version,
        run_id=parent.info.run_id,
        metrics=metrics,
        threshold=meta.threshold,
        became_champion=became_champion,
        timings=steps.timings,
        kind=kind,
        tiers=tiers,
        predictive=check.predictive,
        roc_auc_ci=check.roc_auc_ci,
    )

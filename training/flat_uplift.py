"""Training an imported flat table (``funnel train <name>``): the classifier path for a
propensity or churn-like task, the next-best-offer path for an uplift task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.flat import FALSE_STRINGS, TRUE_STRINGS, load_dataset
from features.store import feature_store, historical_features
from training.hillstrom import arm_propensity
from training.nbo import fit_and_register, subject_folds
from training.registry import configure_tracking, ensure_experiment
from training.train import Steps, train_classifier

if TYPE_CHECKING:
    from core.config import Config
    from training.nbo import NboResult
    from training.train import TrainResult


def train_dataset(
    cfg: Config, name: str, *, progress: bool = True, n_trials: int | None = None
) -> TrainResult | NboResult:
    meta = load_dataset(cfg, name)
    if meta["report"]["task"] == "uplift":
        return train_uplift(cfg, name, progress=progress)
    return train_classifier(cfg, name, progress=progress, n_trials=n_trials)


def arm_names(treatment: pd.Series, column: str, control: str) -> np.ndarray:
    """Each row's arm: ``"control"`` for the control value; a value that does not name itself
    (a number or a flag, such as ``1`` or ``yes``) as ``<column>:<value>``, so an arm reads
    ``discount:1`` rather than ``1``; a name as it is. (Not ``=``: arm names become MLflow
    metric names, which allow letters, digits and ``_ - . / :`` and spaces only.)"""
    text = treatment.astype(str)
    flag = text.str.strip().str.lower().isin(TRUE_STRINGS | FALSE_STRINGS)
    bare = pd.to_numeric(text, errors="coerce").notna() | flag
    named = np.where(bare, f"{column}:" + text, text)
    return np.where(text == control, "control", named).astype(str)


def train_uplift(cfg: Config, name: str, *, progress: bool = True) -> NboResult:
    """The next-best-offer path on an imported experiment: arms from the treatment column (the
    control value is the no-offer arm), propensities from the arms' shares (the table is taken
    as a randomized experiment), each conversion worth 1 and each arm free, so policy values
    are conversions per unit. Arms are named by ``arm_names``."""
    meta = load_dataset(cfg, name)
    key, treatment = meta["entity_key"], meta["spec"]["treatment"]
    conf = cfg.training.nbo.model_copy(
        update={
            "feature_service": meta["feature_service"],
            "registered_model": f"funnel-{name}",
            "experiment": f"funnel-{name}",
        }
    )
    steps = Steps(total=4, echo=progress)
    configure_tracking(cfg)
    ensure_experiment(cfg, conf.experiment)
    with steps.step("build training set (the imported rows + Feast historical features)"):
        labels = pd.read_parquet(cfg.data_dir / "imports" / name / "labels.parquet")
        frame = historical_features(
            feature_store(cfg), labels[[key, "event_timestamp"]], conf.feature_service
        )
        frame = frame.merge(labels[[key, "label", "treatment"]], on=key, how="left")
        arm = arm_names(frame["treatment"], treatment["column"], treatment["control"])
        frame = frame.drop(columns=["treatment"]).assign(arm=arm, propensity=arm_propensity(arm))
        modelled = sorted(set(arm) - {"control"})
        fold = subject_folds(frame[key].to_numpy(), conf.folds, conf.seed)
        ones = np.ones(len(modelled))
        eligible = np.ones((len(frame), len(modelled)), dtype=bool)
    return fit_and_register(
        conf, frame, fold, modelled, ones, np.zeros(len(modelled)), eligible, steps, kind=name
    )

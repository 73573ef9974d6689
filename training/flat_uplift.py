"""Training an imported flat table (``funnel train <name>``): the classifier path for a
propensity or churn-like task, the next-best-offer path for an uplift task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from core.config import Config
    from training.nbo import NboResult
    from training.train import TrainResult
from core.flat import load_dataset
from features.store import feature_store, historical_features
from training.hillstrom import arm_propensity
from training.nbo import fit_and_register, subject_folds
from training.registry import configure_tracking, ensure_experiment
from training.train import Steps, train_classifier


def train_dataset(
    cfg: Config, name: str, *, progress: bool = True, n_trials: int | None = None
) -> TrainResult | NboResult:
    meta = load_dataset(cfg, name)
    if meta["report"]["task"] == "uplift":
        return train_uplift(cfg, name, progress=progress)
    return train_classifier(cfg, name, progress=progress, n_trials=n_trials)


def train_uplift(cfg: Config, name: str, *, progress: bool = True) -> NboResult:
    """The next-best-offer path on an imported experiment: arms from the treatment column (the
    control value is the no-offer arm), propensities from the arms' shares (the table is taken
    as a randomized experiment), each conversion worth 1 and each arm free, so policy values
    are conversions per unit."""
    meta = load_dataset(cfg, name)
    key, control = meta["entity_key"], meta["spec"]["treatment"]["control"]
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
        arm = np.where(frame["treatment"] == control, "control", frame["treatment"]).astype(str)
        frame = frame.drop(columns=["treatment"]).assign(arm=arm, propensity=arm_propensity(arm))
        modelled = sorted(set(arm) - {"control"})
        fold = subject_folds(frame[key].to_numpy(), conf.folds, conf.seed)
        ones = np.ones(len(modelled))
        eligible = np.ones((len(frame), len(modelled)), dtype=bool)
    return fit_and_register(
        conf, frame, fold, modelled, ones, np.zeros(len(modelled)), eligible, steps, kind=name
    )

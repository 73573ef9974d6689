"""Batch scoring: every lead's champion MQL score as of one moment, from the offline store.

One point-in-time join (Feast, DuckDB offline store) for all leads, one matrix, one predict:
what a nightly job or ``funnel jobs promote-leads --scores`` wants for a million leads, where the
online path (two online reads per batch of ``jobs.promotion.batch_size``) is built for
freshness, not volume. The rows are the same the online store would serve after
``funnel features materialize`` at that moment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.errors import InputError, MissingInputError
from core.tables import data_window
from features.sources import feature_table_path
from features.store import feature_store, historical_features
from training.registry import load_model
from training.scoring import mql_threshold

if TYPE_CHECKING:
    from core.config import Config
    from training.scoring import ScoringModel

SCORE_FILE_COLUMNS = [
    "lead_id",
    "account_id",
    "probability",
    "score",
    "is_mql",
    "model_version",
    "feature_service",
    "as_of",
]


@dataclass
class BatchResult:
    scores: pd.DataFrame
    threshold: float  # the MQL threshold in force: is_mql is probability >= threshold
    seconds: dict[str, float] = field(default_factory=dict)  # per step: join, predict, write


def lead_entities(data_dir: Path, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every lead with its account (from the lead profile feature table) at ``as_of``."""
    path = Path(feature_table_path(data_dir, "lead_profile"))
    if not path.is_file():
        raise MissingInputError(f"{path} not found: run 'funnel features apply' first")
    profile = pd.read_parquet(path, columns=["lead_id", "lead_account_id"])
    return pd.DataFrame(
        {
            "lead_id": profile["lead_id"].astype(str).to_numpy(),
            "account_id": profile["lead_account_id"].astype(str).to_numpy(),
            "event_timestamp": as_of,
        }
    )


def score_frame(
    model: ScoringModel,
    frame: pd.DataFrame,
    as_of: pd.Timestamp,
    threshold: float,
    num_threads: int = 0,
) -> pd.DataFrame:
    """The score file's columns for a frame of features (one row per lead); ``threshold`` is
    the MQL threshold in force (``training.scoring.mql_threshold``); ``num_threads`` is
    LightGBM's (0: its default)."""
    prob = model.predict_proba(frame, num_threads=num_threads)
    return pd.DataFrame(
        {
            "lead_id": frame["lead_id"].to_numpy(),
            "account_id": frame["account_id"].to_numpy(),
            "probability": prob,
            "score": np.rint(100.0 * np.clip(prob, 0.0, 1.0)).astype(np.int16),
            "is_mql": prob >= threshold,
            "model_version": model.version,
            "feature_service": model.feature_service,
            "as_of": as_of,
        }
    )


# (model, feature rows, as_of, threshold) -> the score file's columns
Scorer = Callable[["ScoringModel", pd.DataFrame, pd.Timestamp, float], pd.DataFrame]


def check_scores_path(out: Path) -> None:
    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"scores file {out}: use a .parquet or a .csv name")


def write_scores(scores: pd.DataFrame, out: Path) -> Path:
    """Parquet or CSV by suffix, written whole or not at all (temporary file, then rename)."""
    check_scores_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if out.suffix == ".parquet":
            scores.to_parquet(tmp, index=False)
        else:
            scores.to_csv(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def score_leads(
    cfg: Config,
    *,
    as_of: pd.Timestamp | str | None = None,
    out: Path | None = None,
    model: ScoringModel | None = None,
    store: Any = None,
    progress: bool = True,
    scorer: Scorer = score_frame,
) -> BatchResult:
    """Every lead's score as of ``as_of`` (default: the end of the data) with the champion
    (``serving.model_alias``) MQL model, an MQL at the threshold in force (``mql_threshold`` of
    the model's and ``jobs.promotion.threshold``); written to ``out`` when given. ``scorer``
    turns the joined rows into the score file's columns (``score_frame`` here, or
    ``serving.spark_batch.spark_scorer`` on Spark)."""
    if out is not None:
        check_scores_path(out)  # before the work, not after it
    timestamp = pd.Timestamp(as_of if as_of is not None else data_window(cfg.raw_dir)[1])
    timestamp = timestamp.tz_localize("UTC") if timestamp.tzinfo is None else timestamp
    entities = lead_entities(cfg.data_dir, timestamp)
    if model is None:
        model = load_model(cfg, cfg.training.mql.registered_model, cfg.serving.model_alias, "mql")
    store = store if store is not None else feature_store(cfg)
    seconds: dict[str, float] = {}

    def step(name: str, what: str, started: float) -> None:
        seconds[name] = time.perf_counter() - started
        if progress:
            print(f"  {what}: {seconds[name]:.1f}s", flush=True)

    t = time.perf_counter()
    frame = historical_features(store, entities, model.feature_service)
    step("join", f"point-in-time features of {len(entities):,} leads at {timestamp}", t)
    t = time.perf_counter()
    threshold = mql_threshold(model.threshold, cfg.jobs.promotion.threshold)
    scores = scorer(model, frame, timestamp, threshold)
    step("predict", "predict", t)
    if out is not None:
        t = time.perf_counter()
        write_scores(scores, out)
        step("write", f"write {out}", t)
    return BatchResult(scores, threshold, seconds)

"""Batch scoring on Spark: the rows of ``funnel score``, scored by the executors.

The rows are the local path's (``serving.batch``: one point-in-time join of every lead at one
moment); they become a Spark DataFrame of the model's input columns, and ``mapInPandas`` scores
each partition with the same model bundle and the same ``score_frame`` as the local path, so
both write the same columns and the same probabilities. The bundle travels as a directory
(``SparkContext.addFile``), and each executor's Python worker loads it once, on its first
partition. A cluster runs it with ``--spark-master spark://host:7077`` (or ``yarn``,
``k8s://...``) when its executors have this package and its dependencies installed.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from serving.batch import score_frame
from training.scoring import ScoringModel

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# The score file's columns (serving.batch.SCORE_FILE_COLUMNS) as a Spark schema.
SCORE_SCHEMA = (
    "lead_id string, account_id string, probability double, score short, is_mql boolean, "
    "model_version string, feature_service string, as_of timestamp"
)
BUNDLE_NAME = "funnel-score-bundle"  # the shipped directory's name on the executors (+ a suffix)

# Per Python worker process: bundles loaded so far, by (shipped name, version). Spark reuses
# its Python workers (spark.python.worker.reuse), so a bundle is read once per worker.
_LOADED: dict[tuple[str, str], ScoringModel] = {}


def _bundle(name: str, version: str) -> ScoringModel:
    """The shipped bundle, loaded on this worker's first partition and kept."""
    key = (name, version)
    if key not in _LOADED:
        from pyspark import SparkFiles

        _LOADED[key] = ScoringModel.load(SparkFiles.get(name), version=version)
    return _LOADED[key]


def partition_scorer(
    name: str, version: str, as_of: pd.Timestamp, threshold: float, num_threads: int = 1
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function: each batch of feature rows -> the score file's columns.
    ``num_threads`` is LightGBM's per task (one task per core already runs on each core)."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _bundle(name, version)
        for frame in batches:
            yield score_frame(model, frame, as_of, threshold, num_threads=num_threads)

    return score


def ship_bundle(spark: SparkSession, model: ScoringModel, directory: Path) -> str:
    """Save the bundle to ``directory`` and add it to the job's files (every executor gets a
    copy, found with ``SparkFiles.get(name)``); returns the name it goes by."""
    model.save(directory)
    spark.sparkContext.addFile(str(directory), recursive=True)
    return directory.name


def score_frame_spark(
    spark: SparkSession,
    model: ScoringModel,
    frame: pd.DataFrame,
    as_of: pd.Timestamp,
    threshold: float,
    partitions: int | None = None,
) -> pd.DataFrame:
    """``serving.batch.score_frame`` on Spark: the frame's key and feature columns are
    distributed (``partitions`` of them; default Spark's parallelism), scored per partition,
    and collected as the score file's columns with the local path's dtypes."""
    columns = list(dict.fromkeys(["lead_id", "account_id", *model.feature_names]))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"features missing from input: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="funnel-bundle-") as tmp:
        # a new name per job: Spark refuses a name added before from another path
        name = ship_bundle(spark, model, Path(tmp) / f"{BUNDLE_NAME}-{uuid.uuid4().hex}")
        rows = spark.createDataFrame(frame[columns].reset_index(drop=True))
        if partitions is not None:
            rows = rows.repartition(partitions)
        scorer = partition_scorer(name, model.version, as_of, threshold)
        scores = rows.mapInPandas(scorer, schema=SCORE_SCHEMA).toPandas()
    return _local_dtypes(scores, as_of)


def _local_dtypes(scores: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Spark hands timestamps back naive (in the session's UTC) and in its own unit; restore
    the local path's dtypes."""
    unit = pd.DatetimeTZDtype(unit=as_of.unit, tz="UTC")
    return scores.assign(
        score=scores["score"].astype("int16"),
        is_mql=scores["is_mql"].astype(bool),
        as_of=pd.to_datetime(scores["as_of"]).dt.tz_localize("UTC").astype(unit),
    )


def spark_scorer(
    spark: SparkSession, partitions: int | None = None
) -> Callable[[ScoringModel, pd.DataFrame, pd.Timestamp, float], pd.DataFrame]:
    """A drop-in for ``score_frame`` in ``serving.batch.score_leads`` that scores on Spark."""

    def score(
        model: ScoringModel, frame: pd.DataFrame, as_of: pd.Timestamp, threshold: float
    ) -> pd.DataFrame:
        return score_frame_spark(spark, model, frame, as_of, threshold, partitions)

    return score

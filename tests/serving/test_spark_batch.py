"""Batch scoring on Spark (`funnel score --engine spark`): the same rows, the same bundle, the
same score file as the local path, scored by mapInPandas on a local[2] session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.batch import SCORE_FILE_COLUMNS, score_leads
from serving.spark_batch import spark_scorer


@pytest.fixture(scope="module")
def both(tiny, spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("spark-batch")
    common = {"as_of": tiny.latest, "model": tiny.model, "store": tiny.store, "progress": False}
    local = score_leads(tiny.cfg, out=out / "local.parquet", **common)
    on_spark = score_leads(
        tiny.cfg, out=out / "spark.parquet", scorer=spark_scorer(spark, partitions=3), **common
    )
    return local, on_spark, out


def by_id(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.sort_values("lead_id", kind="stable").reset_index(drop=True)


def test_spark_scores_equal_the_local_path(both):
    local, on_spark, _ = both
    a, b = by_id(local.scores), by_id(on_spark.scores)
    assert len(a) > 100 and b["lead_id"].is_unique
    assert b["lead_id"].tolist() == a["lead_id"].tolist()
    np.testing.assert_allclose(b["probability"], a["probability"], rtol=0, atol=1e-12)
    assert a["probability"].nunique() > 10  # a model that separates leads, not a constant
    for column in ("account_id", "score", "is_mql", "model_version", "feature_service", "as_of"):
        assert b[column].tolist() == a[column].tolist(), column
    assert on_spark.threshold == local.threshold


def test_spark_writes_the_local_score_file(both):
    local, on_spark, out = both
    written = pd.read_parquet(out / "spark.parquet")
    reference = pd.read_parquet(out / "local.parquet")
    assert list(written.columns) == SCORE_FILE_COLUMNS == list(reference.columns)
    assert written.dtypes.to_dict() == reference.dtypes.to_dict()
    assert len(written) == len(on_spark.scores) == len(local.scores)


def test_a_missing_feature_is_named(tiny, spark):
    from serving.spark_batch import score_frame_spark

    frame = pd.DataFrame({"lead_id": ["a"], "account_id": ["b"]})
    with pytest.raises(KeyError, match=tiny.model.feature_names[0]):
        score_frame_spark(spark, tiny.model, frame, tiny.latest, 0.5)

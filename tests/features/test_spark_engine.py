"""The Spark feature engine against DuckDB: the same tables, value for value, and the same
training set through each engine's Feast offline store, row for row.

One Spark session for the module (the `spark` fixture of tests/conftest.py). Without Java or
pyspark the module is skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from features.build import ACCOUNT_TABLES, TABLES, build_feature_tables, check_engine

START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-02-26 05:00", tz="UTC")  # the last tick is off the weekly grid
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory, make_synthetic_raw):
    """The same small synthetic funnel built by both engines into two data directories."""
    raw = make_synthetic_raw(60, 12, days=56, seed=5, leads_per_account=4)
    dirs = {}
    counts = {}
    for engine in ("duckdb", "spark"):
        data_dir = tmp_path_factory.mktemp(f"funnel-{engine}")
        counts[engine] = build_feature_tables(raw, data_dir / "features", START, END, engine=engine)
        dirs[engine] = data_dir
    return SimpleNamespace(raw=raw, dirs=dirs, counts=counts)


def _read(data_dir: Path, table: str) -> pd.DataFrame:
    key = "account_id" if table in ACCOUNT_TABLES else "lead_id"
    frame = pd.read_parquet(data_dir / "features" / f"{table}.parquet")
    return frame.sort_values([key, "event_timestamp"]).reset_index(drop=True)


def assert_same_values(left: pd.DataFrame, right: pd.DataFrame, what: str) -> None:
    """Same columns, rows and values: NaN equals NaN, floats within TOLERANCE."""
    assert list(left.columns) == list(right.columns), what
    assert len(left) == len(right), what
    for column in left.columns:
        a, b = left[column], right[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            a64, b64 = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
            assert np.array_equal(np.isnan(a64), np.isnan(b64)), f"{what}.{column}: nulls differ"
            both = ~np.isnan(a64)
            assert np.allclose(a64[both], b64[both], rtol=0, atol=TOLERANCE), (
                f"{what}.{column}: values differ"
            )
        elif pd.api.types.is_datetime64_any_dtype(a):
            assert (pd.to_datetime(a, utc=True) == pd.to_datetime(b, utc=True)).all(), (
                f"{what}.{column}: timestamps differ"
            )
        else:
            assert a.isna().equals(b.isna()), f"{what}.{column}: nulls differ"
            assert (a[a.notna()].astype(str) == b[b.notna()].astype(str)).all(), (
                f"{what}.{column}: values differ"
            )


def test_every_feature_table_is_equal_across_engines(built):
    assert built.counts["spark"] == built.counts["duckdb"]
    for table in TABLES:
        duck = _read(built.dirs["duckdb"], table)
        spark = _read(built.dirs["spark"], table)
        assert len(duck) > 0, table
        assert duck.dtypes.to_dict() == spark.dtypes.to_dict(), table
        assert_same_values(duck, spark, table)


def test_the_comparison_sees_a_changed_value(built):
    """The equality check above can fail: one feature moved by 1e-6 is reported."""
    duck = _read(built.dirs["duckdb"], "lead_behavior")
    changed = duck.copy()
    changed.loc[len(changed) // 2, "lead_age_days"] += 1e-6
    with pytest.raises(AssertionError, match="lead_age_days"):
        assert_same_values(duck, changed, "lead_behavior")


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="duckdb, spark"):
        check_engine("polars")


def _entity_rows(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every lead at three times, one before it existed, plus a lead the tables do not know."""
    leads = raw["leads"][["lead_id", "account_id"]]
    times = [START - pd.Timedelta(days=400), START + pd.Timedelta(days=20, hours=3), END]
    rows = pd.concat([leads.assign(event_timestamp=t) for t in times], ignore_index=True)
    unknown = pd.DataFrame(
        {"lead_id": ["L_UNKNOWN"], "account_id": ["A_UNKNOWN"], "event_timestamp": [END]}
    )
    return pd.concat([rows, unknown], ignore_index=True)


def test_training_set_is_equal_through_each_offline_store(built, tmp_path):
    from features import store as fs

    entities = _entity_rows(built.raw)
    frames = {}
    for engine in ("duckdb", "spark"):
        data_dir = tmp_path / engine
        shutil.copytree(built.dirs[engine] / "features", data_dir / "features")
        store = fs.get_store(data_dir, offline=fs.offline_store(engine))
        fs.apply(store, data_dir)
        with fs.quiet_feast():
            source = store.get_data_source("lead_behavior_source")
        assert type(source).__name__ == ("SparkSource" if engine == "spark" else "FileSource")
        frames[engine] = {
            service: fs.historical_features(store, entities, service)
            for service in ("mql_v1", "nbo_v1")
        }
    for service, duck in frames["duckdb"].items():
        spark = frames["spark"][service]
        assert len(duck) == len(entities), service
        assert sorted(duck.columns) == sorted(spark.columns), service
        spark = spark[duck.columns]
        assert (duck["lead_id"] == entities["lead_id"]).all()
        assert (spark["lead_id"] == entities["lead_id"]).all()
        # some rows found features, some (before the lead existed, unknown lead) found none
        assert duck["events_30d"].notna().any() and duck["events_30d"].isna().any()
        assert_same_values(duck, spark, service)

"""Batch sources (the parquet tables `features/build.py` writes) and the request source.

With the Spark engine (`feature_store.engine: spark`) the same tables are `SparkSource`s read
by Feast's Spark offline store. Paths are absolute: the DuckDB offline store resolves a
relative FileSource path against the process's working directory, not the repository. `make_*` builds a source for any data dir
(`features/repo.py` uses them); the module-level objects point at <repo root>/data for the
`feast` CLI.
"""

from __future__ import annotations

from pathlib import Path

from feast import Field, FileSource, RequestSource
from feast.data_source import DataSource
from feast.types import String

from features.entities import OWNER

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / "data"
_TAGS = {"team": "data-science", "built_by": "features/build.py"}


def feature_table_path(data_dir: Path, table: str) -> str:
    """Absolute path of `<data_dir>/features/<table>.parquet`."""
    return str((Path(data_dir) / "features" / f"{table}.parquet").resolve())


def _table_source(data_dir: Path, table: str, description: str, engine: str) -> DataSource:
    common = {
        "name": f"{table}_source",
        "path": feature_table_path(data_dir, table),
        "timestamp_field": "event_timestamp",
        "description": description,
        "owner": OWNER,
        "tags": _TAGS,
    }
    if engine == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(file_format="parquet", **common)
    if engine != "duckdb":
        raise ValueError(f"unknown feature engine {engine!r}: use one of duckdb, spark")
    return FileSource(**common)


def make_lead_behavior_source(
    data_dir: Path = DEFAULT_DATA_DIR, engine: str = "duckdb"
) -> DataSource:
    return _table_source(
        data_dir,
        "lead_behavior",
        "Per lead and weekly snapshot: event counts over 7/30/90 days, recency, trend.",
        engine,
    )


def make_lead_profile_source(
    data_dir: Path = DEFAULT_DATA_DIR, engine: str = "duckdb"
) -> DataSource:
    return _table_source(
        data_dir,
        "lead_profile",
        "Per lead, as of its creation: account, raw job title, source.",
        engine,
    )


def make_account_firmographic_source(
    data_dir: Path = DEFAULT_DATA_DIR, engine: str = "duckdb"
) -> DataSource:
    return _table_source(
        data_dir,
        "account_firmographic",
        "Per account, as of its creation: industry, size, revenue, country.",
        engine,
    )


def make_colleague_interest_source(
    data_dir: Path = DEFAULT_DATA_DIR, engine: str = "duckdb"
) -> DataSource:
    return _table_source(
        data_dir,
        "colleague_interest",
        "Per lead and weekly snapshot: activity of the other leads of the same account.",
        engine,
    )


def make_account_usage_source(
    data_dir: Path = DEFAULT_DATA_DIR, engine: str = "duckdb"
) -> DataSource:
    return _table_source(
        data_dir,
        "account_usage",
        "Per account and weekly snapshot: subscription in force, product usage, engagement.",
        engine,
    )


def make_title_request_source() -> RequestSource:
    return RequestSource(
        name="title_request",
        schema=[Field(name="request_job_title", dtype=String)],
        description="Job title sent with a scoring request; '' means use the stored title.",
        owner=OWNER,
        tags={"team": "data-science"},
    )


lead_behavior_source = make_lead_behavior_source()
lead_profile_source = make_lead_profile_source()
account_firmographic_source = make_account_firmographic_source()
colleague_interest_source = make_colleague_interest_source()
account_usage_source = make_account_usage_source()
title_request_source = make_title_request_source()

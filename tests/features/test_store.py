"""The Feast repository through the real SDK: apply, historical retrieval, materialize, online."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from features.build import (
    COLLEAGUE_INTEREST_FEATURES,
    LEAD_BEHAVIOR_FEATURES,
    TABLES,
    build_feature_tables,
)
from features.titles import normalize_title

START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-03-04 05:00", tz="UTC")  # the last tick is off the weekly grid
FEATURES_DIR = Path(__file__).resolve().parents[2] / "features"
FEATURE_VIEWS = {
    "lead_behavior_fv",
    "lead_profile_fv",
    "account_firmographic_fv",
    "colleague_interest_fv",
    "account_usage_fv",
}
FEATURE_SERVICES = ["churn_v1", "mql_v1", "nbo_v1"]
# the registry URL of the shipped production profile (its own schema in database `test`)
POSTGRES_URL = os.environ.get(
    "FUNNEL_TEST_POSTGRES_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dfunnel_feast",
)


@pytest.fixture(scope="session")
def feast_env(tmp_path_factory, make_synthetic_raw):
    """Feature tables built from a small synthetic funnel, applied to a fresh local store.

    Session-scoped: `import feast` alone takes ~6 s.
    """
    from features import store as fs

    data_dir = tmp_path_factory.mktemp("funnel-data")
    raw = make_synthetic_raw(80, 15, days=70, seed=11, leads_per_account=4)
    build_feature_tables(raw, data_dir / "features", START, END)
    tables = {t: pd.read_parquet(data_dir / "features" / f"{t}.parquet") for t in TABLES}
    store = fs.get_store(data_dir)
    applied = fs.apply(store, data_dir)
    return SimpleNamespace(
        fs=fs, data_dir=data_dir, raw=raw, tables=tables, store=store, applied=applied
    )


@pytest.fixture(scope="session")
def materialized(feast_env):
    feast_env.fs.materialize(feast_env.store, END)
    return feast_env


def entity_rows_for(env, frame: pd.DataFrame) -> pd.DataFrame:
    accounts = env.raw["leads"].set_index("lead_id")["account_id"]
    out = frame[["lead_id", "event_timestamp"]].copy()
    out["account_id"] = out["lead_id"].map(accounts).fillna("A_UNKNOWN")
    return out


def test_apply_registers_the_repository(feast_env):
    store = feast_env.store
    assert set(feast_env.applied) >= FEATURE_VIEWS | {"lead", "account", "job_title_odfv"} | set(
        FEATURE_SERVICES
    )
    assert {fv.name for fv in store.list_feature_views()} == FEATURE_VIEWS
    assert [odfv.name for odfv in store.list_on_demand_feature_views()] == ["job_title_odfv"]
    service = store.get_feature_service("mql_v1")
    assert {p.name for p in service.feature_view_projections} == (
        FEATURE_VIEWS - {"account_usage_fv"}
    ) | {"job_title_odfv"}
    nbo = store.get_feature_service("nbo_v1")
    assert {p.name for p in nbo.feature_view_projections} == FEATURE_VIEWS | {"job_title_odfv"}
    churn = store.get_feature_service("churn_v1")
    assert {p.name for p in churn.feature_view_projections} == {
        "account_usage_fv",
        "account_firmographic_fv",
    }
    for fv in store.list_feature_views():
        path = Path(fv.batch_source.path)
        assert path.is_absolute() and path.parent == (feast_env.data_dir / "features").resolve()
        assert fv.description and fv.owner and fv.tags
    assert {e.name: e.join_key for e in store.list_entities()} == {
        "lead": "lead_id",
        "account": "account_id",
    }
    behavior = store.get_feature_view("lead_behavior_fv")
    assert [f.name for f in behavior.features] == list(LEAD_BEHAVIOR_FEATURES)
    assert behavior.ttl == pd.Timedelta(days=14)
    # Applying again is a no-op, not an error.
    feast_env.fs.apply(store, feast_env.data_dir)


def test_historical_features_keep_every_row_in_order_and_match_the_tables(feast_env):
    behavior = feast_env.tables["lead_behavior"]
    sample = behavior.sample(120, random_state=0)
    entity_df = entity_rows_for(feast_env, sample)
    last = behavior["event_timestamp"].max()
    extra = pd.DataFrame(
        {
            "lead_id": ["L_UNKNOWN", sample["lead_id"].iloc[0], sample["lead_id"].iloc[1]],
            "event_timestamp": [last, last + pd.Timedelta(days=30), last],
            "account_id": ["A_UNKNOWN", sample["lead_id"].iloc[0], "A_UNKNOWN"],
        }
    )
    extra["account_id"] = entity_rows_for(feast_env, extra)["account_id"]
    duplicate = entity_df.iloc[[5]]
    entity_df = pd.concat([entity_df, extra, duplicate], ignore_index=True)
    entity_df.index = np.arange(len(entity_df))[::-1]  # a non-default index survives too

    out = feast_env.fs.historical_features(feast_env.store, entity_df)

    assert len(out) == len(entity_df)
    assert list(out.index) == list(entity_df.index)
    assert out["lead_id"].tolist() == entity_df["lead_id"].tolist()
    assert (out["event_timestamp"].to_numpy() == entity_df["event_timestamp"].to_numpy()).all()

    exact = out.iloc[: len(sample)]
    expected = sample[list(LEAD_BEHAVIOR_FEATURES)].reset_index(drop=True)
    np.testing.assert_allclose(
        exact[list(LEAD_BEHAVIOR_FEATURES)].to_numpy(float),
        expected.to_numpy(float),
        equal_nan=True,
    )
    colleagues = feast_env.tables["colleague_interest"].set_index(["lead_id", "event_timestamp"])
    expected_colleagues = colleagues.loc[
        list(zip(sample["lead_id"], sample["event_timestamp"])), list(COLLEAGUE_INTEREST_FEATURES)
    ]
    np.testing.assert_allclose(
        exact[list(COLLEAGUE_INTEREST_FEATURES)].to_numpy(float),
        expected_colleagues.to_numpy(float),
    )
    profile = feast_env.tables["lead_profile"].set_index("lead_id")
    assert exact["job_title"].tolist() == profile.loc[sample["lead_id"], "job_title"].tolist()
    accounts = feast_env.raw["accounts"].set_index("account_id")
    np.testing.assert_allclose(
        exact["annual_revenue"].to_numpy(float),
        accounts.loc[exact["account_id"], "annual_revenue"].to_numpy(float),
    )
    expected_titles = [normalize_title(t or None) for t in exact["job_title"]]
    assert exact["title_seniority"].tolist() == [t.seniority for t in expected_titles]
    assert exact["title_department"].tolist() == [t.department for t in expected_titles]
    assert exact["is_decision_maker"].tolist() == [
        int(t.is_decision_maker) for t in expected_titles
    ]

    unknown, stale, _ = (out.iloc[len(sample) + i] for i in range(3))
    assert np.isnan(unknown["events_30d"]) and unknown["title_seniority"] == "unknown"
    # 30 days after the last tick is beyond the 14-day TTL: no behavior, but the profile stays.
    assert np.isnan(stale["events_30d"]) and np.isnan(stale["n_colleagues"])
    assert stale["job_title"] == profile.loc[stale["lead_id"], "job_title"]
    pd.testing.assert_series_equal(
        out.iloc[-1].drop("lead_id"), out.iloc[5].drop("lead_id"), check_names=False
    )


def test_historical_is_as_of_the_latest_tick_before_the_row(feast_env):
    behavior = feast_env.tables["lead_behavior"]
    tick = pd.Timestamp("2024-02-05", tz="UTC")
    at_tick = behavior[behavior["event_timestamp"] == tick].head(10)
    entity_df = entity_rows_for(feast_env, at_tick)
    entity_df["event_timestamp"] = tick + pd.Timedelta(days=3, hours=2)
    out = feast_env.fs.historical_features(feast_env.store, entity_df)
    np.testing.assert_allclose(
        out[list(LEAD_BEHAVIOR_FEATURES)].to_numpy(float),
        at_tick[list(LEAD_BEHAVIOR_FEATURES)].to_numpy(float),
        equal_nan=True,
    )


def test_request_title_overrides_the_stored_one(feast_env):
    behavior = feast_env.tables["lead_behavior"]
    rows = entity_rows_for(feast_env, behavior.head(4))
    rows["request_job_title"] = ["Chief Revenue Officer", "", None, "marketing intern"]
    out = feast_env.fs.historical_features(feast_env.store, rows)
    stored = [normalize_title(t or None) for t in out["job_title"]]
    assert out["title_seniority"].tolist() == [
        "c_level",
        stored[1].seniority,
        stored[2].seniority,
        "intern",
    ]
    assert out.loc[out.index[0], "title_department"] == "sales"
    assert out["is_decision_maker"].tolist()[0] == 1


def test_online_features_after_materialize_serve_the_latest_tick(materialized):
    env = materialized
    latest = env.tables["lead_behavior"]
    latest = latest[latest["event_timestamp"] == END].sample(6, random_state=1)
    accounts = env.raw["leads"].set_index("lead_id")["account_id"]
    rows = [{"lead_id": lead, "account_id": accounts[lead]} for lead in latest["lead_id"]]
    rows.append({"lead_id": "L_NEW", "account_id": "A_NEW", "request_job_title": "VP Eng"})

    out = env.fs.online_features(env.store, rows, "mql_v1")

    assert out["lead_id"].tolist() == [r["lead_id"] for r in rows]
    known = out.iloc[:-1]
    np.testing.assert_allclose(
        known[list(LEAD_BEHAVIOR_FEATURES)].to_numpy(float),
        latest[list(LEAD_BEHAVIOR_FEATURES)].to_numpy(float),
        equal_nan=True,
    )
    colleagues = env.tables["colleague_interest"].set_index(["lead_id", "event_timestamp"])
    np.testing.assert_allclose(
        known[list(COLLEAGUE_INTEREST_FEATURES)].to_numpy(float),
        colleagues.loc[[(lead, END) for lead in latest["lead_id"]]].to_numpy(float),
    )
    for view in ("lead_behavior_fv", "colleague_interest_fv"):
        assert (known[f"{view}__event_timestamp"] == END).all()
    assert known["lead_profile_fv__event_timestamp"].notna().all()
    new = out.iloc[-1]
    assert pd.isna(new["lead_behavior_fv__event_timestamp"]) and np.isnan(new["events_30d"])
    assert (new["title_seniority"], new["title_department"], new["is_decision_maker"]) == (
        "vp",
        "engineering",
        1,
    )
    stored = [normalize_title(t or None).seniority for t in known["job_title"]]
    assert known["title_seniority"].tolist() == stored


def test_cli_reads_each_object_once_from_definitions(monkeypatch):
    """`feast apply` imports every non-ignored file as a top-level module; the defaults must
    come out exactly once each and point at <repo root>/data/features."""
    from feast.repo_operations import get_repo_files, parse_repo

    assert [p.name for p in get_repo_files(FEATURES_DIR)] == ["definitions.py"]
    monkeypatch.chdir(FEATURES_DIR)
    monkeypatch.syspath_prepend(str(FEATURES_DIR))
    try:
        repo = parse_repo(FEATURES_DIR)
    finally:
        sys.modules.pop("definitions", None)
    assert sorted(fv.name for fv in repo.feature_views) == sorted(FEATURE_VIEWS)
    assert [odfv.name for odfv in repo.on_demand_feature_views] == ["job_title_odfv"]
    assert sorted(fs.name for fs in repo.feature_services) == FEATURE_SERVICES
    assert sorted(e.name for e in repo.entities if e.name != "__dummy") == ["account", "lead"]
    names = [ds.name for ds in repo.data_sources]
    assert len(names) == len(set(names)) == 6
    data_features = FEATURES_DIR.parent / "data" / "features"
    for fv in repo.feature_views:
        assert Path(fv.batch_source.path).parent == data_features


def test_repo_config_for_the_production_profile(tmp_path):
    from features.store import repo_config

    config = repo_config(
        tmp_path,
        online={"type": "redis", "connection_string": "127.0.0.1:6379"},
        registry={"type": "sql", "path": POSTGRES_URL},
    )
    assert config.online_store.type == "redis"
    assert config.registry.registry_type == "sql"
    assert config.offline_store.type == "duckdb"
    assert config.entity_key_serialization_version == 3
    local = repo_config(tmp_path, online={"type": "sqlite", "path": None}, registry=None)
    assert local.online_store.path == str((tmp_path / "online_store.db").resolve())
    assert local.registry.path == str((tmp_path / "registry.db").resolve())


@pytest.mark.production
def test_redis_online_store_and_sql_registry(feast_env, production_services):
    """Production profile against the real local servers: same online values as SQLite."""
    from core.pg import ensure_schema

    fs = feast_env.fs
    ensure_schema(POSTGRES_URL)
    project = f"funnel_test_{uuid.uuid4().hex[:8]}"
    store = fs.get_store(
        feast_env.data_dir,
        online={"type": "redis", "connection_string": "127.0.0.1:6379"},
        registry={"type": "sql", "path": POSTGRES_URL, "cache_ttl_seconds": 60},
        project=project,
    )
    try:
        fs.apply(store, feast_env.data_dir)
        fs.materialize(store, END)
        latest = feast_env.tables["lead_behavior"]
        latest = latest[latest["event_timestamp"] == END].head(5)
        accounts = feast_env.raw["leads"].set_index("lead_id")["account_id"]
        rows = [{"lead_id": lead, "account_id": accounts[lead]} for lead in latest["lead_id"]]
        out = fs.online_features(store, rows)
        np.testing.assert_allclose(
            out[list(LEAD_BEHAVIOR_FEATURES)].to_numpy(float),
            latest[list(LEAD_BEHAVIOR_FEATURES)].to_numpy(float),
            equal_nan=True,
        )
        assert (out["lead_behavior_fv__event_timestamp"] == END).all()
    finally:
        # Not store.teardown(): in Feast 0.67 it deletes EVERY project of a shared registry.
        store._get_provider().teardown_infra(
            project, store.list_feature_views(), store.list_entities()
        )
        store.registry.delete_project(project, commit=True)
        for engine in {store.registry.write_engine, store.registry.read_engine}:
            engine.dispose()

"""Direct online reads (serving.online.ServiceReader) give exactly what Feast's
get_online_features gives, for every feature service, unknown keys and request titles."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from serving.online import ServiceReader


def same(a: object, b: object) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return a == b or both_nan


@pytest.mark.parametrize("service", ["mql_v1", "nbo_v1"])
def test_lead_services_match_feast(tiny, service):
    leads = pd.read_parquet(tiny.cfg.features_dir / "lead_profile.parquet")["lead_id"].tolist()
    ids = [*leads[:40], "L-nobody"]
    titles = ["" for _ in leads[:39]] + ["Chief Technology Officer", ""]
    fs = tiny.store.get_feature_service(service)
    direct = ServiceReader(tiny.store, fs).read(lead_ids=ids, request={"request_job_title": titles})
    known = direct["account_id"][:-1]
    feast = tiny.store.get_online_features(
        fs,
        entity_rows={"lead_id": ids[:-1], "account_id": known, "request_job_title": titles[:-1]},
    ).to_dict()
    for name, values in feast.items():
        assert all(same(a, b) for a, b in zip(values, direct[name][:-1], strict=True)), name
    assert direct["account_id"][-1] is None  # no profile row: not found
    assert direct["title_seniority"][39] == "c_level"  # the request's title wins


def test_account_service_matches_feast(tiny):
    usage = pd.read_parquet(tiny.cfg.features_dir / "account_usage.parquet")
    ids = [*usage["account_id"].unique()[:30].tolist(), "A-nobody"]
    fs = tiny.store.get_feature_service("churn_v1")
    direct = ServiceReader(tiny.store, fs).read(account_ids=ids)
    feast = tiny.store.get_online_features(fs, entity_rows={"account_id": ids}).to_dict()
    for name, values in feast.items():
        assert all(same(a, b) for a, b in zip(values, direct[name], strict=True)), name
    assert direct["is_customer"][-1] is None
    assert direct["account_usage_fv__ts"][-1] == 0 < direct["account_usage_fv__ts"][0]


def test_a_sqlite_store_is_put_in_wal_mode_and_read_on_the_event_loop(tiny):
    """In WAL mode a reader never waits for a writer: the reads may run on the event loop."""
    from serving.online import sqlite_wal
    from serving.scorer import reads_on_loop

    reader = ServiceReader(tiny.store, tiny.store.get_feature_service("mql_v1"))
    assert not reader.redis
    assert sqlite_wal(reader)
    conn = reader.online._get_conn(reader.config)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert reads_on_loop(reader)
    assert not reads_on_loop(None)  # reads="feast": its calls block, a worker thread reads

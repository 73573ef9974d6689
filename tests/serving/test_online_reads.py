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


def test_values_decode_as_feast_decodes_them():
    """The plain kinds are read directly, every other kind through Feast's own decoder."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    from serving.online import _python

    values = [
        Value(),
        Value(int32_val=-3),
        Value(int64_val=2**40),
        Value(double_val=float("nan")),
        Value(double_val=0.25),
        Value(float_val=1.5),
        Value(string_val="c_level"),
        Value(string_val=""),
        Value(bool_val=True),
        Value(bytes_val=b"\x00\x01"),
        Value(unix_timestamp_val=1_767_290_938),
        Value(json_val='{"a": [1, 2]}'),
    ]
    listed = Value()
    listed.int64_list_val.val.extend([4, 5])
    for value in [*values, listed]:
        assert same(_python(value), feast_value_type_to_python_type(value)), value


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/New_York"])
def test_sqlite_event_times_match_feast_in_any_time_zone(tiny, zone, monkeypatch):
    """Feast stores a row's time as ``int(naive_utc.timestamp())``, which depends on the local
    zone; the direct read turns it back exactly as Feast's ``online_read`` does."""
    import time

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        leads = pd.read_parquet(tiny.cfg.features_dir / "lead_profile.parquet")["lead_id"]
        ids = leads.tolist()[:20]
        fs = tiny.store.get_feature_service("nbo_v1")
        direct = ServiceReader(tiny.store, fs).read(lead_ids=ids)
        for view in {p.name for p in fs.feature_view_projections} - {"job_title_odfv"}:
            fv = tiny.store.get_feature_view(view)
            key = fv.entity_columns[0].name
            feast = tiny.store.get_online_features(
                [f"{view}:{fv.features[0].name}"], entity_rows={key: direct[key]}
            ).to_dict(include_event_timestamps=True)
            stamps = [
                t if isinstance(t, int) else int(t.timestamp())
                for t in feast[f"{fv.features[0].name}__ts"]
            ]
            assert stamps == direct[f"{view}__ts"], view
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()

"""The online store goes away mid-load: a private redis-server under the tiny pipeline's Feast
repository is killed, frozen and brought back while the service's ASGI app keeps running.

Scoring routes must answer 503 with a clear message and Retry-After within the Redis timeouts,
/readyz must say not ready, and the same service must score again once Redis is back. The
elapsed-time bounds are timeouts (a hanging request fails them), not performance targets.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app import process

SCORE = "/v1/leads/score"
BATCH = "/v1/leads/score_batch"
CHURN = "/v1/accounts/churn_risk"
NBO = "/v1/next_best_offer"
TIMEOUT_BOUND_S = 3.0  # socket_connect_timeout 0.5 s + socket_timeout 1.0 s, with room
RECOVERY_BOUND_S = 10.0  # the fail-fast window is 2 s; Redis reloads its dump in milliseconds
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


class PrivateRedis:
    """A redis-server of this test's own on a free port, keeping its data in ``directory``
    only when asked (``save``), so a restart brings back what was saved."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = process.free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0)

    def start(self) -> None:
        import redis

        cmd = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--dbfilename", "online.rdb",
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.RedisError:  # not listening yet, or still loading
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def crash(self) -> None:
        """Save the data, then SIGKILL: the server goes away without a goodbye."""
        self.client().save()
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # works on a stopped (SIGSTOP) process too
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not Path(REDIS_SERVER).is_file():
        message = f"no redis-server binary (looked for {REDIS_SERVER})"
        if _in_ci():
            pytest.fail(f"{message}: the store-outage tests need it in CI")
        pytest.skip(message)
    server = PrivateRedis(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_store(tiny, private_redis: PrivateRedis, tmp_path: Path) -> Any:
    """The tiny pipeline's feature views, materialized into the private Redis (a copy of the
    registry, so the shared pipeline's stays as it was)."""
    from features.store import get_store, materialize

    registry = tmp_path / "registry.db"
    shutil.copy(tiny.cfg.registry["path"], registry)
    store = get_store(
        tmp_path / "data",
        {"type": "redis", "connection_string": private_redis.connection_string},
        {"path": str(registry)},
        project=tiny.cfg.feature_store.project,
    )
    materialize(store, tiny.latest.to_pydatetime())
    return store


@pytest.fixture
def outage_client(tiny, redis_store, make_client, api_key, monkeypatch) -> Iterator[Any]:
    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    cfg = tiny.cfg.model_copy(
        update={"serving": tiny.cfg.serving.model_copy(update={"api_key": api_key})}
    )
    with make_client(cfg, redis_store, tiny.models) as client:
        client.headers["X-API-Key"] = api_key
        yield client


@pytest.fixture
def requests_(tiny, latest_leads) -> list[tuple[str, dict[str, Any]]]:
    """One valid request per scoring route."""
    usage = pd.read_parquet(tiny.cfg.features_dir / "account_usage.parquet")
    now = usage[usage["event_timestamp"] == tiny.latest]
    account = now.loc[now["is_customer"] == 1, "account_id"].iloc[0]
    lead = latest_leads[0]
    return [
        (SCORE, {"lead_id": lead}),
        (BATCH, {"leads": [{"lead_id": i} for i in latest_leads[:5]]}),
        (CHURN, {"account_id": account}),
        (NBO, {"lead_id": lead}),
    ]


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def _assert_unavailable(response: Any, reason: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": f"online feature store unavailable: {reason}; retry later"}
    assert response.headers["Retry-After"] == "2"


def _wait_until_scoring(client: Any, requests: list[tuple[str, dict]]) -> float:
    """Seconds until every route answers 200 again (polling as a retrying client would)."""
    start = time.perf_counter()
    while time.perf_counter() - start < RECOVERY_BOUND_S:
        codes = [client.post(path, json=body).status_code for path, body in requests]
        if codes == [200] * len(requests):
            return time.perf_counter() - start
        assert set(codes) <= {200, 503}, codes
        time.sleep(0.1)
    pytest.fail(f"the service did not score again within {RECOVERY_BOUND_S:.0f} s of Redis")


def test_redis_going_away_is_a_503_and_the_service_recovers_by_itself(
    outage_client, private_redis, requests_
):
    client = outage_client
    for path, body in requests_:
        assert client.post(path, json=body).status_code == 200, path
    assert client.get("/readyz").status_code == 200

    private_redis.crash()
    first, first_s = _timed(lambda: client.post(SCORE, json=requests_[0][1]))
    _assert_unavailable(first, "cannot connect")
    assert first_s < TIMEOUT_BOUND_S
    for path, body in requests_:
        response, elapsed = _timed(lambda path=path, body=body: client.post(path, json=body))
        _assert_unavailable(response, "cannot connect")
        assert elapsed < TIMEOUT_BOUND_S, path
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200  # the process is alive, just not ready

    private_redis.start()  # same port, same dump: the data comes back
    _wait_until_scoring(client, requests_)
    assert client.get("/readyz").status_code == 200

    spec = client.get("/docs.json").json()
    for path, _ in requests_:
        documented = spec["paths"][path]["post"]["responses"]["503"]
        assert "Retry-After" in documented["headers"], path


def test_a_frozen_redis_times_out_into_a_503_and_later_requests_fail_fast(
    outage_client, private_redis, requests_
):
    """SIGSTOP: the port still accepts connections but nothing answers (as a blackholed host
    or a hung server). The first read waits for the socket timeout; reads in the next two
    seconds fail at once instead of queueing behind it."""
    client = outage_client
    for path, body in requests_:
        assert client.post(path, json=body).status_code == 200, path

    private_redis.signal(signal.SIGSTOP)
    first, first_s = _timed(lambda: client.post(SCORE, json=requests_[0][1]))
    _assert_unavailable(first, "timed out")
    assert 0.5 <= first_s < TIMEOUT_BOUND_S  # it did wait for the read timeout, and no longer
    for path, body in requests_:
        response, elapsed = _timed(lambda path=path, body=body: client.post(path, json=body))
        _assert_unavailable(response, "timed out")
        assert elapsed < 0.5, path
    assert client.get("/readyz").status_code == 503

    private_redis.signal(signal.SIGCONT)
    _wait_until_scoring(client, requests_)
    assert client.get("/readyz").status_code == 200


def test_a_frozen_redis_holds_only_the_requests_that_wait_for_it(
    outage_client, private_redis, requests_
):
    """The reads await redis-py's asyncio client on the event loop: while one request waits
    for a Redis that does not answer, the loop goes on answering health checks."""
    import threading

    client = outage_client
    assert client.post(SCORE, json=requests_[0][1]).status_code == 200
    private_redis.signal(signal.SIGSTOP)
    waiting: list[Any] = []
    request = threading.Thread(
        target=lambda: waiting.append(client.post(SCORE, json=requests_[0][1]))
    )
    request.start()
    try:
        time.sleep(0.2)  # the scoring request is now waiting for Redis
        assert request.is_alive()
        health, elapsed = _timed(lambda: client.get("/healthz"))
        assert health.status_code == 200
        assert elapsed < 0.5
    finally:
        request.join(timeout=10)
        private_redis.signal(signal.SIGCONT)
    _assert_unavailable(waiting[0], "timed out")
    _wait_until_scoring(client, requests_)


@pytest.mark.parametrize("service", ["mql_v1", "nbo_v1", "churn_v1"])
def test_direct_redis_reads_equal_feast_s(redis_store, tiny, service):
    """One pipeline per step (blocking and asyncio) reads what get_online_features reads."""
    import asyncio
    import math

    from serving.online import ServiceReader

    fs = redis_store.get_feature_service(service)
    reader = ServiceReader(redis_store, fs)
    assert reader.redis
    if service == "churn_v1":
        usage = pd.read_parquet(tiny.cfg.features_dir / "account_usage.parquet")
        ids = [*usage["account_id"].unique()[:20].tolist(), "A-nobody"]
        rows: dict[str, list] = {"account_id": ids}
        blocking = reader.read(account_ids=ids)
        awaited = asyncio.run(reader.read_async(account_ids=ids))
    else:
        profile = pd.read_parquet(tiny.cfg.features_dir / "lead_profile.parquet")
        ids = [*profile["lead_id"].unique()[:20].tolist(), "L-nobody"]
        titles = {"request_job_title": ["" for _ in ids]}
        blocking = reader.read(lead_ids=ids, request=titles)
        awaited = asyncio.run(reader.read_async(lead_ids=ids, request=titles))
        rows = {"lead_id": ids[:-1], "account_id": blocking["account_id"][:-1],
                "request_job_title": titles["request_job_title"][:-1]}  # fmt: skip
        assert blocking["account_id"][-1] is None  # no profile row: not found
    feast = redis_store.get_online_features(fs, entity_rows=rows).to_dict(
        include_event_timestamps=True
    )

    def same(a: object, b: object) -> bool:
        nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return a == b or nan

    checked = 0
    for name, values in feast.items():
        if name.endswith("__ts") and name not in blocking:  # per feature in Feast, per view here
            continue
        assert all(same(a, b) for a, b in zip(values, blocking[name], strict=False)), name
        checked += 1
    assert checked > 5
    assert awaited == blocking or all(
        all(same(a, b) for a, b in zip(awaited[k], blocking[k], strict=True)) for k in blocking
    )


def test_leads_read_before_take_one_round_trip_and_a_moved_lead_gets_its_new_account(
    redis_store, tiny, monkeypatch
):
    """The account step is read ahead in the lead step's pipeline for leads read before: the
    same columns in one round trip; a lead whose profile now names another account gets that
    account's rows (read again), not those of the account it had."""
    import asyncio

    from serving.online import ServiceReader

    fs = redis_store.get_feature_service("nbo_v1")
    reader = ServiceReader(redis_store, fs)
    assert reader.read_ahead
    round_trips = []
    original = reader.online._read_hash_fields
    monkeypatch.setattr(
        reader.online, "_read_hash_fields",
        lambda *a, **k: round_trips.append(1) or original(*a, **k),
    )  # fmt: skip
    profile = pd.read_parquet(tiny.cfg.features_dir / "lead_profile.parquet")
    latest = profile.sort_values("event_timestamp").groupby("lead_id").tail(1)
    ids = latest["lead_id"].iloc[:5].tolist()
    first = reader.read(lead_ids=ids)
    assert (len(round_trips), reader.ahead_used) == (2, 0)
    again = reader.read(lead_ids=ids)
    assert (len(round_trips), reader.ahead_used) == (3, 1)  # one round trip
    assert again == first
    loop = asyncio.new_event_loop()  # Feast keeps its asyncio client on the loop it met first
    assert loop.run_until_complete(reader.read_async(lead_ids=ids)) == first
    assert reader.ahead_used == 2

    # the first lead moves to the account of the last one
    moved = latest[latest["lead_id"] == ids[0]].copy()
    moved["lead_account_id"] = moved["account_id"] = first["account_id"][-1]
    moved["event_timestamp"] = moved["event_timestamp"] + pd.Timedelta(days=1)
    redis_store.write_to_online_store("lead_profile_fv", moved)
    try:
        for now in (
            reader.read(lead_ids=ids),
            loop.run_until_complete(reader.read_async(lead_ids=ids)),
        ):
            assert now["account_id"][0] == first["account_id"][-1] != first["account_id"][0]
            for name in ("employee_count", "industry", "account_firmographic_fv__ts"):
                assert now[name][0] == first[name][-1], name
    finally:
        loop.close()
    assert reader.ahead_used == 3  # the blocking read went twice, then learnt the new account


# -- what counts as "unavailable" -------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (
            sqlite3.OperationalError("database is locked"),
            503,
            "online feature store unavailable: database is locked; retry later",
        ),
        (
            sqlite3.OperationalError("unable to open database file"),
            503,
            "online feature store unavailable: cannot open the database file; retry later",
        ),
        # a setup or code error is not an outage: it stays a 500 and gets a traceback
        (
            sqlite3.OperationalError("no such table: funnel_lead_profile_fv"),
            500,
            "internal error while scoring; see the server log",
        ),
        (KeyError("lead_account_id"), 500, "internal error while scoring; see the server log"),
    ],
)
def test_only_store_outages_are_503(
    tiny, make_client, api_key, latest_leads, monkeypatch, error, status, detail
):
    from features.store import feature_store

    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    store = feature_store(tiny.cfg)  # its own store object, so its own fail-fast window
    cfg = tiny.cfg.model_copy(
        update={"serving": tiny.cfg.serving.model_copy(update={"api_key": api_key})}
    )
    with make_client(cfg, store, tiny.model) as client:
        client.headers["X-API-Key"] = api_key
        assert client.post(SCORE, json={"lead_id": latest_leads[0]}).status_code == 200

        def broken(*_: Any, **__: Any) -> None:
            raise error

        from serving.online import ServiceReader

        monkeypatch.setattr(ServiceReader, "_fetch", broken)  # every online read
        response = client.post(SCORE, json={"lead_id": latest_leads[0]})
        assert (response.status_code, response.json()) == (status, {"detail": detail})
        assert ("Retry-After" in response.headers) == (status == 503)


def test_unavailable_reason_names_redis_errors_and_ignores_bugs():
    import redis.exceptions as redis_errors

    from serving.scorer import unavailable_reason

    assert unavailable_reason(redis_errors.ConnectionError("Error 111 connecting")) == (
        "cannot connect"
    )
    assert unavailable_reason(redis_errors.TimeoutError("Timeout reading")) == "timed out"
    assert unavailable_reason(redis_errors.BusyLoadingError("loading")) == (
        "still loading its data"
    )
    assert unavailable_reason(redis_errors.ResponseError("WRONGTYPE")) is None
    assert unavailable_reason(ConnectionError("not redis's")) is None
    assert unavailable_reason(ValueError("bug")) is None


def test_redis_connection_strings_get_timeouts_unless_they_set_them():
    from features.store import redis_connection_string, repo_config

    assert redis_connection_string("127.0.0.1:6379") == (
        "127.0.0.1:6379,socket_connect_timeout=0.5,socket_timeout=1.0,retry=null"
    )
    assert redis_connection_string("redis:6379,db=1,socket_timeout=3") == (
        "redis:6379,db=1,socket_timeout=3,socket_connect_timeout=0.5,retry=null"
    )
    config = repo_config(Path("."), {"type": "redis", "connection_string": "h:1,retry=null"})
    assert config.online_store.connection_string == (
        "h:1,retry=null,socket_connect_timeout=0.5,socket_timeout=1.0"
    )

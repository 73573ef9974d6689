"""The PostgreSQL state store restarted during ``funnel jobs promote-leads`` (a child process, on a
private server of this module's own): the run finishes or fails with one clear line, the rerun
takes the lease at once, and every decided promotion reaches the receiver exactly once. And the
line itself: which errors are "unavailable", and that it hides the password."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from jobhelpers import jobs_tree, write_config, write_scores
from pgserver import PrivateServer
from receiver import Receiver
from test_lead_promotion_crash import expected_keys, promote, run_to_completion

from activation.state import (
    StateStoreError,
    dead_letters,
    job_runs,
    open_engine,
    outbox,
    promotions,
    rows_of,
    state_store_errors,
)

UNAVAILABLE = re.compile(
    r"^Error: state store unavailable \(postgresql\+psycopg://postgres@127\.0\.0\.1:\d+/postgres"
    r"\?options=[^)]*\): .+; rerun the job, nothing was lost$",
    re.MULTILINE,
)


def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the run never reached the moment to restart at"
        time.sleep(0.01)


def blocked_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        waiting = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return conn.execute(waiting).scalar_one() > 0


def interrupted_run(
    cfg_path: Path, scores: Path, server: PrivateServer, when: Callable[[], bool], how: str
) -> tuple[int, str]:
    """Start the job, and once ``when()`` holds restart the server (``restart``: ``pg_ctl
    restart -m fast``, a quarter second down) or stop it for a second (``outage``); the run's
    exit code and output (stdout and stderr)."""
    proc = promote(cfg_path, scores)
    wait_for(lambda: when() or proc.poll() is not None)
    assert proc.poll() is None, "the run finished before the restart: " + proc.communicate()[0]
    if how == "restart":
        server.restart()
    else:
        server.stop()
        time.sleep(1.0)
        server.start()
    out, _ = proc.communicate(timeout=120)
    assert "Traceback" not in out and "holds the lease" not in out, out
    assert proc.returncode in (0, 1), out
    if proc.returncode == 1:
        assert UNAVAILABLE.search(out), out
    return proc.returncode, out


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_state_store_restarted_mid_run_fails_cleanly_and_reruns_deliver_each_once(
    tmp_path, private_pg: PrivateServer
) -> None:
    """Three runs interrupted in a row, each rerun taking the dead run's lease at once: in the
    decision transaction, then twice while sending; then a rerun to the end."""
    url = private_pg.url(f"restart_{uuid.uuid4().hex[:8]}")
    engine = open_engine(url)  # creates the tables, so the test can lock one
    receiver = Receiver(delay_s=0.01).up()
    cfg_path = write_config(tmp_path, jobs_tree(tmp_path, webhook=receiver.url, state_store=url))
    scores = tmp_path / "scores.parquet"
    expected = expected_keys(write_scores(scores, 200, seed=21, above=0.7))

    # held inside its decision transaction (the test locks the promotions table) when the
    # server restarts: the run fails, and the transaction is rolled back whole
    locker = engine.connect()
    locker.begin()
    locker.execute(sa.text("LOCK TABLE promotions IN ACCESS EXCLUSIVE MODE"))
    code, out = interrupted_run(
        cfg_path, scores, private_pg, lambda: blocked_on_a_lock(engine), "restart"
    )
    locker.invalidate()  # its connection died with the server
    assert code == 1, out
    assert rows_of(engine, promotions) == [] and rows_of(engine, outbox) == []
    assert not receiver.deliveries

    # the server down for a second after 20 messages were sent: the run stops at the next one
    code, out = interrupted_run(
        cfg_path, scores, private_pg, lambda: len(receiver.deliveries) >= 20, "outage"
    )
    assert code == 1, out
    assert {r["idempotency_key"] for r in rows_of(engine, promotions)} == expected

    # a quick restart while sending the rest: the run reconnects (pre-ping) or stops cleanly
    interrupted_run(cfg_path, scores, private_pg, lambda: len(receiver.deliveries) >= 40, "restart")

    run_to_completion(cfg_path, scores)
    assert set(receiver.held) == expected  # every promotion at the receiver, each once
    assert receiver.duplicates() <= 2  # at most the message in flight at each interruption
    assert {r["status"] for r in rows_of(engine, outbox)} == {"sent"}
    assert not rows_of(engine, dead_letters)
    runs = sorted(rows_of(engine, job_runs), key=lambda r: r["id"])
    assert len(runs) >= 4 and runs[-1]["status"] == "ok"
    assert "running" not in {r["status"] for r in runs}  # no interrupted run is left open
    engine.dispose()
    receiver.down()


def test_a_store_that_cannot_be_reached_is_unavailable_and_its_password_hidden() -> None:
    engine = sa.create_engine("postgresql+psycopg://u:pw@127.0.0.1:9/test")  # nothing listens
    with pytest.raises(StateStoreError) as caught, state_store_errors(engine):
        engine.connect()
    message = str(caught.value)
    assert message.startswith("state store unavailable (postgresql+psycopg://u:***@127.0.0.1:9/")
    assert "password hidden" in message and "refused" in message and "pw" not in message


def test_a_sql_error_is_not_called_unavailable(tmp_path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    with (
        pytest.raises(sa.exc.OperationalError, match="no such table"),
        state_store_errors(engine),
        engine.connect() as conn,
    ):
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    engine.dispose()

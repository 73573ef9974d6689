"""The outbox: messages are committed to the state store first, then sent.

``enqueue`` runs inside the transaction that records the decision, so a decision and its message
exist together or not at all. ``deliver`` sends what is pending, oldest first, and marks each
message sent in its own transaction as soon as the destination acknowledged it. A crash leaves
at most the message in flight unmarked; the next run sends it again with the same idempotency
key, which the destination recognises.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from activation.destinations import Destination, PermanentError, TransientError
from activation.state import dead_letters, insert_ignore, outbox

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, Row

    from activation.state import Lease
    from core.config import RetryConfig


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))], so retrying senders
    spread out instead of hitting a recovering receiver together."""
    return rng.uniform(0.0, min(max_s, base_s * 2 ** max(attempt - 1, 0)))


def enqueue(
    conn: Connection, destination: str, messages: Sequence[Mapping[str, Any]], now: float
) -> int:
    """Add messages (each with an ``idempotency_key``) to the outbox; a key already there for
    this destination is not added twice. Returns how many were added."""
    rows = [
        {
            "destination": destination,
            "idempotency_key": m["idempotency_key"],
            "payload": json.dumps(m, sort_keys=True),
            "status": "pending",
            "attempts": 0,
            "created_at": now,
        }
        for m in messages
    ]
    return insert_ignore(conn, outbox, rows)


@dataclass
class DeliveryReport:
    sent: int = 0
    dead: int = 0
    pending: int = 0  # still in the outbox after this run
    failures: int = 0  # failed tries (each retried or dead-lettered)
    stopped_early: str | None = None  # why the run stopped sending

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pending_count(engine: Engine, destination: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(outbox)
            .where(outbox.c.destination == destination, outbox.c.status == "pending")
        ).scalar_one()


def send_with_retry(
    send: Callable[[], None],
    retry: RetryConfig,
    *,
    rng: random.Random,
    sleep: Callable[[float], None] = time.sleep,
    tries: int | None = None,
    on_failure: Callable[[int, str], None] | None = None,
) -> None:
    """Call ``send`` until it succeeds, up to ``tries`` times (default ``attempts_per_run``),
    sleeping with backoff between tries; re-raises the last ``TransientError`` and any
    ``PermanentError`` at once."""
    tries = tries or retry.attempts_per_run
    for attempt in range(1, tries + 1):
        try:
            send()
            return
        except TransientError as exc:
            if on_failure:
                on_failure(attempt, str(exc))
            if attempt == tries:
                raise
            sleep(backoff_delay(attempt, retry.base_delay_s, retry.max_delay_s, rng))


def tries_this_run(attempts: int, attempts_per_run: int, max_attempts: int) -> int:
    """How many tries a message that failed ``attempts`` times gets in this run:
    ``attempts_per_run``, fewer when that would pass ``max_attempts``; 0 when it has none left."""
    return max(min(attempts_per_run, max_attempts - attempts), 0)


@dataclass(frozen=True)
class _Outcome:
    """What one message came to in this run."""

    status: Literal["sent", "dead", "waiting"]  # waiting: failed every try, has attempts left
    failures: int = 0  # failed tries in this run
    error: str = ""  # the last failure's


def deliver(
    engine: Engine,
    destination: Destination,
    retry: RetryConfig,
    *,
    lease: Lease | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    progress: bool = False,
) -> DeliveryReport:
    """Send the destination's pending messages, oldest first.

    A message that fails ``attempts_per_run`` times in a row stops this run's sending (the
    destination is down; the rest wait for the next run). One that reaches ``max_attempts``
    over all runs, or that the destination refuses (4xx), goes to ``dead_letters``.
    """
    rng = rng or random.Random()
    report = DeliveryReport()
    rows = _pending_rows(engine, destination.name)
    with _progress_bar(len(rows), f"sending to {destination.name}", progress) as bar:
        for i, row in enumerate(rows):
            if lease is not None:
                lease.renew()  # raises LeaseLostError: another process may be sending now
            tries = tries_this_run(row.attempts, retry.attempts_per_run, retry.max_attempts)
            outcome = _send_one(
                engine, destination, row, tries, retry, clock=clock, sleep=sleep, rng=rng
            )
            report.failures += outcome.failures
            if outcome.status == "waiting":
                report.stopped_early = (
                    f"{destination.name} failed {tries} tries in a row ({outcome.error}); "
                    f"{len(rows) - i} message(s) wait for the next run"
                )
                break
            if outcome.status == "sent":
                report.sent += 1
            else:
                report.dead += 1
            bar.update(1)
    report.pending = pending_count(engine, destination.name)
    return report


def _send_one(
    engine: Engine,
    destination: Destination,
    row: Row[int, str, str, int],  # id, idempotency_key, payload, attempts
    tries: int,
    retry: RetryConfig,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    rng: random.Random,
) -> _Outcome:
    """Send one outbox row with up to ``tries`` tries, storing each failed try's count and
    error; then mark it sent, dead-letter it, or leave it waiting for the next run."""
    message = json.loads(row.payload)
    if tries <= 0:  # ran out of attempts in a run that died before dead-lettering it
        _dead_letter(engine, row.id, row.attempts, "out of attempts", clock())
        return _Outcome("dead")
    attempts, last_error = row.attempts, ""

    def failed(_try: int, error: str) -> None:
        nonlocal attempts, last_error
        attempts, last_error = attempts + 1, error
        _record_failure(engine, row.id, attempts, error)

    try:
        send_with_retry(
            lambda: destination.send(message),
            retry,
            rng=rng,
            sleep=sleep,
            tries=tries,
            on_failure=failed,
        )
    except PermanentError as exc:
        _dead_letter(engine, row.id, attempts + 1, str(exc), clock())
        return _Outcome("dead", attempts - row.attempts + 1)
    except TransientError:
        if attempts >= retry.max_attempts:
            _dead_letter(engine, row.id, attempts, last_error, clock())
            return _Outcome("dead", attempts - row.attempts)
        return _Outcome("waiting", attempts - row.attempts, last_error)
    _mark_sent(engine, row.id, attempts + 1, clock())
    return _Outcome("sent", attempts - row.attempts)


def _progress_bar(total: int, desc: str, show: bool) -> Any:
    """A tqdm bar when ``show`` and the send is long (over 200 messages), else a silent one."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="msg", disable=None if show and total > 200 else True)


def _pending_rows(engine: Engine, destination: str) -> Sequence[Row[int, str, str, int]]:
    c = outbox.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(c.id, c.idempotency_key, c.payload, c.attempts)
            .where(c.destination == destination, c.status == "pending")
            .order_by(c.id)
        ).all()


def _record_failure(engine: Engine, row_id: int, attempts: int, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == row_id)
            .values(attempts=attempts, last_error=error[:2000])
        )


def _mark_sent(engine: Engine, row_id: int, attempts: int, now: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == row_id)
            .values(status="sent", sent_at=now, attempts=attempts)
        )


def _dead_letter(engine: Engine, row_id: int, attempts: int, error: str, now: float) -> None:
    """Move one outbox row to ``dead_letters`` (one transaction: it is in exactly one)."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(outbox).where(outbox.c.id == row_id)).mappings().one()
        conn.execute(
            sa.insert(dead_letters).values(
                outbox_id=row["id"],
                destination=row["destination"],
                idempotency_key=row["idempotency_key"],
                payload=row["payload"],
                attempts=attempts,
                last_error=error[:2000],
                failed_at=now,
            )
        )
        conn.execute(sa.delete(outbox).where(outbox.c.id == row_id))


def requeue_dead_letters(engine: Engine, destination: str | None = None) -> int:
    """Put dead-lettered messages back in the outbox with fresh attempts (after the operator
    fixed the destination); the number requeued."""
    with engine.begin() as conn:
        where = [] if destination is None else [dead_letters.c.destination == destination]
        rows = conn.execute(sa.select(dead_letters).where(*where)).mappings().all()
        for row in rows:
            conn.execute(
                sa.insert(outbox).values(
                    destination=row["destination"],
                    idempotency_key=row["idempotency_key"],
                    payload=row["payload"],
                    status="pending",
                    attempts=0,
                    created_at=row["failed_at"],
                )
            )
        conn.execute(sa.delete(dead_letters).where(*where))
    return len(rows)


def requeue_dead_letter(engine: Engine, dead_letter_id: int) -> bool:
    """Put one dead-lettered message (its ``dead_letters.id``) back in the outbox with fresh
    attempts; False when there is no such dead letter (already requeued, or never was)."""
    with engine.begin() as conn:
        row = (
            conn.execute(sa.select(dead_letters).where(dead_letters.c.id == dead_letter_id))
            .mappings()
            .first()
        )
        if row is None:
            return False
        insert_ignore(
            conn,
            outbox,
            [
                {
                    "destination": row["destination"],
                    "idempotency_key": row["idempotency_key"],
                    "payload": row["payload"],
                    "status": "pending",
                    "attempts": 0,
                    "created_at": row["failed_at"],
                }
            ],
        )
        conn.execute(sa.delete(dead_letters).where(dead_letters.c.id == dead_letter_id))
    return True

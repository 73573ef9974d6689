"""The MQL queue and the audiences, read from the jobs' state store.

Queue: the leads promoted on a day (``promotions``), those waiting over the daily cap (armed in
``lead_state`` with a probability at or over the threshold in force at the last promotion
run), those held out (``promotions`` under the holdout key) and the dead letters. Audiences:
each audience's last successful sync (``audience_syncs``), its members and the adds and removes
of the last run (``job_runs``). Every list is one page: ``LIMIT``/``OFFSET`` in SQL, and a count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from activation.destinations import redact_emails
from activation.lead_promotion import HOLDOUT_PREFIX
from activation.lead_promotion import JOB as PROMOTE_JOB
from activation.state import (
    audience_members,
    audience_syncs,
    dead_letters,
    job_runs,
    lead_state,
    outbox,
    promotions,
)

AUDIENCE_JOB = "sync-audiences"
TABS = ("promoted", "waiting", "held_out", "dead_letters")


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max((self.total + self.size - 1) // self.size, 1)

    @property
    def first(self) -> int:
        return (self.page - 1) * self.size + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.page * self.size, self.total)


# The waiting list reads armed leads from the probability down; with a million scored leads a
# scan of lead_state takes about a second, this index a few milliseconds. The console creates
# it on the jobs' store (once; a no-op after), as it adds its own audit table there.
WAITING_INDEX = sa.Index(
    "ix_console_lead_state_waiting", lead_state.c.armed, lead_state.c.probability
)


def create_read_indexes(engine: Engine) -> None:
    WAITING_INDEX.create(engine, checkfirst=True)


def clamp_page(page: int) -> int:
    return max(int(page), 1)


def _page(conn: Any, select: sa.Select, count: sa.Select, page: int, size: int) -> Page:
    total = int(conn.execute(count).scalar_one())
    rows = conn.execute(select.limit(size).offset((page - 1) * size)).mappings()
    return Page([dict(r) for r in rows], total, page, size)


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def when(ts: float | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM UTC``."""
    if ts is None:
        return "–"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


def last_run_summary(engine: Engine, job: str) -> dict[str, Any] | None:
    """The newest finished-ok run of ``job``: its times and summary (None if none)."""
    c = job_runs.c
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(c.started_at, c.finished_at, c.summary)
                .where(c.job == job, c.status == "ok")
                .order_by(c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    summary = json.loads(row["summary"]) if row["summary"] else {}
    return {"started_at": row["started_at"], "finished_at": row["finished_at"], **summary}


def promotion_threshold(engine: Engine) -> float | None:
    """The MQL threshold the last promotion run decided with."""
    run = last_run_summary(engine, PROMOTE_JOB)
    value = None if run is None else run.get("threshold")
    return None if value is None else float(value)


def promotion_days(engine: Engine, limit: int = 7) -> list[dict[str, Any]]:
    """The latest days with promotions (holdouts left out), newest first, with their counts."""
    p = promotions.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(p.day, sa.func.count().label("n"))
            .where(~p.idempotency_key.startswith(HOLDOUT_PREFIX))
            .group_by(p.day)
            .order_by(p.day.desc())
            .limit(limit)
        ).mappings()
        return [dict(r) for r in rows]


def _decisions(day: str, held_out: bool) -> tuple[sa.Select, sa.Select]:
    p, s = promotions.c, lead_state.c
    held = p.idempotency_key.startswith(HOLDOUT_PREFIX)
    where = [p.day == day, held if held_out else ~held]
    select = (
        sa.select(
            p.lead_id,
            p.number,
            p.probability,
            p.model_version,
            p.decided_at,
            s.score.label("score_now"),
        )
        .select_from(promotions.outerjoin(lead_state, s.lead_id == p.lead_id))
        .where(*where)
        .order_by(p.probability.desc(), p.lead_id)
    )
    count = sa.select(sa.func.count()).select_from(promotions).where(*where)
    return select, count


def promoted_page(engine: Engine, day: str, page: int, size: int) -> Page:
    select, count = _decisions(day, held_out=False)
    with engine.connect() as conn:
        return _page(conn, select, count, page, size)


def held_out_page(engine: Engine, day: str, page: int, size: int) -> Page:
    select, count = _decisions(day, held_out=True)
    with engine.connect() as conn:
        return _page(conn, select, count, page, size)


def waiting_page(engine: Engine, threshold: float | None, page: int, size: int) -> Page:
    """Armed leads at or over the threshold: promoted as soon as the daily cap allows."""
    if threshold is None:
        return Page([], 0, page, size)
    s = lead_state.c
    where = [s.armed.is_(True), s.probability >= threshold]
    select = (
        sa.select(s.lead_id, s.probability, s.score, s.model_version, s.updated_at)
        .where(*where)
        .order_by(s.probability.desc(), s.lead_id)
    )
    count = sa.select(sa.func.count()).select_from(lead_state).where(*where)
    with engine.connect() as conn:
        return _page(conn, select, count, page, size)


def dead_letter_page(engine: Engine, page: int, size: int) -> Page:
    d = dead_letters.c
    select = sa.select(
        d.id, d.destination, d.idempotency_key, d.payload, d.attempts, d.last_error, d.failed_at
    ).order_by(d.id.desc())
    count = sa.select(sa.func.count()).select_from(dead_letters)
    with engine.connect() as conn:
        found = _page(conn, select, count, page, size)
    rows = []
    for r in found.rows:
        try:
            lead_id = json.loads(r["payload"]).get("lead_id")
        except (ValueError, AttributeError):
            lead_id = None
        rows.append(
            {
                "id": r["id"],
                "destination": r["destination"],
                "idempotency_key": r["idempotency_key"],
                "lead_id": lead_id,
                "attempts": r["attempts"],
                "last_error": redact_emails(r["last_error"] or ""),
                "failed_at": r["failed_at"],
            }
        )
    return Page(rows, found.total, found.page, found.size)


def queue_counts(engine: Engine, day: str, threshold: float | None) -> dict[str, int]:
    """The size of every tab, and the outbox's pending messages."""
    p, s = promotions.c, lead_state.c
    held = p.idempotency_key.startswith(HOLDOUT_PREFIX)
    with engine.connect() as conn:

        def count(table: sa.Table, *where: Any) -> int:
            q = sa.select(sa.func.count()).select_from(table).where(*where)
            return int(conn.execute(q).scalar_one())

        return {
            "promoted": count(promotions, p.day == day, ~held),
            "held_out": count(promotions, p.day == day, held),
            "waiting": 0
            if threshold is None
            else count(lead_state, s.armed.is_(True), s.probability >= threshold),
            "dead_letters": count(dead_letters),
            "pending": count(outbox, outbox.c.status == "pending"),
        }


def lead_decisions(engine: Engine, lead_id: str) -> dict[str, Any]:
    """The lead's row of ``lead_state`` (None if never scored by the job) and its decisions."""
    s, p = lead_state.c, promotions.c
    with engine.connect() as conn:
        state = conn.execute(sa.select(lead_state).where(s.lead_id == lead_id)).mappings().first()
        decided = conn.execute(
            sa.select(p.idempotency_key, p.number, p.probability, p.decided_at, p.day)
            .where(p.lead_id == lead_id)
            .order_by(p.decided_at.desc())
        ).mappings()
        rows = [
            {**dict(r), "held_out": r["idempotency_key"].startswith(HOLDOUT_PREFIX)}
            for r in decided
        ]
    out = dict(state) if state is not None else None
    if out is not None:
        out["reasons"] = json.loads(out["reasons"] or "[]")
    return {"state": out, "decisions": rows}


# -- audiences -----------------------------------------------------------------------------------
def audience_overview(engine: Engine) -> list[dict[str, Any]]:
    """Each synced audience and destination: members, syncs so far, last sync, and the adds
    and removes of the last sync run that reached it."""
    with engine.connect() as conn:
        syncs = [
            dict(r)
            for r in conn.execute(
                sa.select(audience_syncs).order_by(
                    audience_syncs.c.audience, audience_syncs.c.destination
                )
            ).mappings()
        ]
    run = last_run_summary(engine, AUDIENCE_JOB) or {}
    last = {(a["audience"], a["destination"]): a for a in run.get("audiences", [])}
    for row in syncs:
        seen = last.get((row["audience"], row["destination"]), {})
        row["adds"] = seen.get("adds")
        row["removes"] = seen.get("removes")
        row["error"] = seen.get("error")
    return syncs


def audience_members_page(
    engine: Engine, audience: str, destination: str | None, page: int, size: int
) -> Page:
    m = audience_members.c
    where = [m.audience == audience]
    if destination:
        where.append(m.destination == destination)
    select = (
        sa.select(m.member_id, m.destination, m.synced_at)
        .where(*where)
        .order_by(m.destination, m.member_id)
    )
    count = sa.select(sa.func.count()).select_from(audience_members).where(*where)
    with engine.connect() as conn:
        return _page(conn, select, count, page, size)


TAB_TITLES = {
    "promoted": "Promoted",
    "waiting": "Waiting over the cap",
    "held_out": "Held out",
    "dead_letters": "Dead letters",
}

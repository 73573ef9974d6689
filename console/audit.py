"""The console's audit trail: every sign-in and every action, in the jobs' state store (table
``console_actions``, created on first use) and in the log.

Nothing recorded holds an email address or a password: the name typed at a failed sign-in is
kept with any email-like text redacted, and targets are ids (a dead letter's number).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from activation.destinations import redact_emails

log = logging.getLogger("funnel.console")
metadata = sa.MetaData()

console_actions = sa.Table(
    "console_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # ok | refused | failed | not_found
    sa.Column("detail", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)


def create_audit_table(engine: Engine) -> None:
    metadata.create_all(engine)


def record(
    engine: Engine,
    *,
    actor: str,
    role: str,
    action: str,
    target: str = "",
    outcome: str = "ok",
    detail: str = "",
    clock: Any = time.time,
) -> None:
    """Store one action and log it (emails redacted from every field)."""
    row = {
        "at": clock(),
        "actor": redact_emails(actor)[:128],
        "role": role,
        "action": action,
        "target": redact_emails(target)[:200],
        "outcome": outcome,
        "detail": redact_emails(detail)[:2000],
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(console_actions).values(**row))
    log.info(
        "action %s by %s (%s) on %s: %s%s",
        row["action"],
        row["actor"],
        row["role"],
        row["target"] or "-",
        row["outcome"],
        f" ({row['detail']})" if row["detail"] else "",
    )


def recent(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The latest actions, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(console_actions).order_by(console_actions.c.id.desc()).limit(limit)
        ).mappings()
        return [dict(r) for r in rows]

"""The jobs' state store: SQLite locally, PostgreSQL in production, through SQLAlchemy Core.

Tables:
- ``lead_state``: per lead, the latest MQL score and its feature fingerprint, and whether the lead
  is armed (may be promoted) or promoted and waiting to fall below the re-arm threshold.
- ``promotions``: every promotion decided, with its idempotency key (the decision log).
- ``outbox``: messages decided but not yet acknowledged by their destination.
- ``dead_letters``: messages a destination refused for good, or that ran out of attempts.
- ``audience_members``: each audience's membership as of its last successful sync, and
  ``audience_syncs`` its version (successful syncs so far).
- ``campaign_assignments``: every offer assignment of a campaign wave, with its propensity.
- ``leases``: one row per job name; the holder may run it until ``expires_at``.
- ``job_runs``: one row per run, for the operator.

Timestamps are epoch seconds (float), the same on both engines.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.errors import FunnelError
from core.pg import schema_of

metadata = sa.MetaData()


def _key(name: str, length: int = 64) -> sa.Column:
    """A string column of the table's primary key (ids and names are at most 64 characters)."""
    return sa.Column(name, sa.String(length), primary_key=True)


lead_state = sa.Table(
    "lead_state",
    metadata,
    _key("lead_id"),
    sa.Column("probability", sa.Double, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list of reason texts
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("features_as_of", sa.Double),
    sa.Column("armed", sa.Boolean, nullable=False),
    sa.Column("promotions", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

promotions = sa.Table(
    "promotions",
    metadata,
    _key("idempotency_key", 200),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("probability", sa.Double, nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("decided_at", sa.Double, nullable=False),
    sa.Column("day", sa.String(10), nullable=False, index=True),  # UTC date, for the daily cap
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("sent_at", sa.Double),
    sa.UniqueConstraint("destination", "idempotency_key", name="uq_outbox_key"),
    sa.Index("ix_outbox_pending", "destination", "status", "id"),
    sqlite_autoincrement=True,  # ids are never reused: they order the sending
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("outbox_id", sa.Integer, nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("failed_at", sa.Double, nullable=False),
)

audience_members = sa.Table(
    "audience_members",
    metadata,
    _key("audience"),
    _key("destination"),
    _key("member_id"),
    sa.Column("synced_at", sa.Double, nullable=False),
)

audience_syncs = sa.Table(
    "audience_syncs",
    metadata,
    _key("audience"),
    _key("destination"),
    sa.Column("version", sa.Integer, nullable=False),  # successful syncs so far
    sa.Column("members", sa.Integer, nullable=False),
    sa.Column("synced_at", sa.Double, nullable=False),
)

campaign_assignments = sa.Table(
    "campaign_assignments",
    metadata,
    _key("campaign"),
    _key("wave", 32),
    _key("subject_id"),
    sa.Column("offer_id", sa.String(64), nullable=False),
    sa.Column("propensity", sa.Double, nullable=False),
    sa.Column("holdout", sa.Boolean, nullable=False),
    sa.Column("assigned_at", sa.Double, nullable=False),  # = the exposure time
    sa.Column("exported", sa.Boolean, nullable=False),  # written to offer_exposures
)

leases = sa.Table(
    "leases",
    metadata,
    _key("name"),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(64), nullable=False),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double),
    sa.Column("status", sa.String(16), nullable=False),  # running | ok | failed
    sa.Column("summary", sa.Text),
)


class StateStoreError(FunnelError, RuntimeError):
    """The state store cannot be opened (unreachable server, bad URL, unwritable file)."""


class LeaseHeldError(FunnelError, RuntimeError):
    """Another process holds the job's lease."""


class LeaseLostError(FunnelError, RuntimeError):
    """The lease expired and another process took it: stop before sending anything more."""


def open_engine(url: str) -> Engine:
    """An engine for the state store; creates the PostgreSQL schema and the tables if needed.
    ``StateStoreError`` names the store (without its password) when it cannot be opened."""
    try:
        return _open_engine(url)
    except (sa.exc.OperationalError, sa.exc.ArgumentError, OSError) as exc:
        shown = (
            sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
        )
        raise StateStoreError(
            f"cannot open the jobs' state store {shown} (jobs.state_store): {_reason(exc)}"
        ) from exc


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


@contextmanager
def state_store_errors(engine: Engine) -> Iterator[None]:
    """Around a job: the state store lost mid-run (server restarted, connection cut, cannot
    reconnect) becomes a ``StateStoreError`` naming the store. The job does not retry: a
    transaction cut off is rolled back whole, a message sent but not yet marked is resent with
    its idempotency key, so the rerun is safe. SQL errors that are bugs still raise as they are."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        lost = exc.connection_invalidated  # SQLAlchemy's dialect-aware disconnect test
        refused = exc.statement is None and isinstance(exc, sa.exc.OperationalError)
        if not (lost or refused):
            raise
        url = engine.url
        hidden = ", password hidden" if url.password else ""
        raise StateStoreError(
            f"state store unavailable ({url.render_as_string(hide_password=True)}{hidden}): "
            f"{_reason(exc)}; rerun the job, nothing was lost"
        ) from exc


def _open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # a long busy timeout: two job processes queue on SQLite's write lock instead of failing
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cur.execute("PRAGMA synchronous=FULL")  # a committed decision survives power loss
            cur.close()

        _create_tables(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
        with engine.begin() as conn:
            # job processes started together must not race to create the schema and tables
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK})
            schema = schema_of(url)
            if schema is not None:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            metadata.create_all(conn)
    return engine


_DDL_LOCK = 7_041_113  # the advisory lock id guarding the state store's DDL


def _create_tables(engine: Engine) -> None:
    """``create_all`` that tolerates another process creating the same tables meanwhile."""
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            return
        except sa.exc.OperationalError as exc:
            if "already exists" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def upsert(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows``, replacing rows with the same primary key (SQLite and PostgreSQL)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    values = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=values), list(rows))


def insert_ignore(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` skipping those whose keys exist; the number inserted."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    result = conn.execute(insert(table).on_conflict_do_nothing(), list(rows))
    return max(result.rowcount, 0)


def holder_id() -> str:
    """``host:pid:random``: unique per process, and says where the holder runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_local_holder(holder: str) -> bool:
    """True when ``holder`` is a process on this host that no longer exists (killed holders
    need not wait for their lease to expire)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


class Lease:
    """A named lease in the state store: at most one live holder runs the job.

    Taken with one conditional UPDATE (atomic on SQLite and PostgreSQL); renewed while the job
    works; a holder on this host whose process is gone is taken over at once.
    """

    def __init__(self, engine: Engine, name: str, ttl_s: float, clock: Any = time.time) -> None:
        self.engine, self.name, self.ttl_s, self.clock = engine, name, ttl_s, clock
        self.holder = holder_id()
        self._expires_at = 0.0

    def _take(self, conn: Connection, now: float, condition: Any) -> bool:
        result = conn.execute(
            sa.update(leases)
            .where(leases.c.name == self.name, condition)
            .values(holder=self.holder, expires_at=now + self.ttl_s)
        )
        return result.rowcount == 1

    def acquire(self) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            insert_ignore(conn, leases, [{"name": self.name, "holder": "", "expires_at": 0.0}])
        with self.engine.begin() as conn:
            c = leases.c
            if self._take(conn, now, sa.or_(c.holder == self.holder, c.expires_at < now)):
                self._expires_at = now + self.ttl_s
                return
            row = conn.execute(sa.select(c.holder, c.expires_at).where(c.name == self.name)).one()
            if _dead_local_holder(row.holder) and self._take(conn, now, c.holder == row.holder):
                self._expires_at = now + self.ttl_s
                return
        raise LeaseHeldError(
            f"another '{self.name}' run holds the lease ({row.holder}) for "
            f"{max(row.expires_at - now, 0):.0f} s more; nothing was done"
        )

    def renew(self, force: bool = False) -> None:
        """Extend the lease when half of it is used; ``LeaseLostError`` if it was taken."""
        now = self.clock()
        if not force and self._expires_at - now > self.ttl_s / 2:
            return
        with self.engine.begin() as conn:
            if not self._take(conn, now, leases.c.holder == self.holder):
                raise LeaseLostError(f"the '{self.name}' lease was taken by another process")
        self._expires_at = now + self.ttl_s

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(expires_at=0.0)
            )

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self.release()
        except sa.exc.SQLAlchemyError:
            if exc_type is None:
                raise
            # the store failed with the job: keep the job's own error; the lease is taken
            # over once this process is gone (or expires, seen from another host)


class JobRun:
    """A ``job_runs`` row: started when entered, ok or failed (with the error) when left. Entered
    under the job's lease, it also closes as failed an earlier run's row left "running"."""

    def __init__(self, engine: Engine, job: str, holder: str, clock: Any = time.time) -> None:
        self.engine, self.job, self.holder, self.clock = engine, job, holder, clock
        self.summary: dict[str, Any] = {}
        self.id: int | None = None

    def __enter__(self) -> Self:
        now = self.clock()
        with self.engine.begin() as conn:
            # we hold the lease: a run still "running" stopped without recording its end
            # (killed, or the state store went away under it)
            c = job_runs.c
            conn.execute(
                sa.update(job_runs)
                .where(c.job == self.job, c.status == "running", c.holder != self.holder)
                .values(
                    finished_at=now,
                    status="failed",
                    summary=json.dumps({"error": "stopped without recording its end"}),
                )
            )
            result = conn.execute(
                sa.insert(job_runs).values(
                    job=self.job, holder=self.holder, started_at=now, status="running"
                )
            )
            self.id = int(result.inserted_primary_key[0])
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        status = "ok" if exc_type is None else "failed"
        summary = dict(self.summary)
        if exc is not None:
            summary["error"] = f"{exc_type.__name__}: {exc}"
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(job_runs)
                    .where(job_runs.c.id == self.id)
                    .values(finished_at=self.clock(), status=status, summary=json.dumps(summary))
                )
        except sa.exc.SQLAlchemyError:
            if exc is None:
                raise
            # the store failed with the job: keep the job's own error; the next run closes
            # this row


@dataclass(frozen=True)
class LeasedRun:
    """What a job works with inside :func:`leased_run`."""

    engine: Engine
    lease: Lease
    run: JobRun


@contextmanager
def leased_run(
    url: str, job: str, lease_seconds: float, *, clock: Callable[[], float] = time.time
) -> Iterator[LeasedRun]:
    """A job's frame: open the state store at ``url``, take the ``job`` lease and record the
    run in ``job_runs``. The store lost mid-run becomes one ``StateStoreError`` (rerun the job);
    the lease is released and the engine disposed of however the job ends."""
    engine = open_engine(url)
    try:
        lease = Lease(engine, job, lease_seconds, clock=clock)
        with (
            state_store_errors(engine),  # the store lost mid-run: one clear error, rerun
            lease,
            JobRun(engine, job, lease.holder, clock=clock) as run,
        ):
            yield LeasedRun(engine, lease, run)
    finally:
        engine.dispose()


def last_runs(engine: Engine, job: str, n: int = 5) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(job_runs).where(job_runs.c.job == job).order_by(job_runs.c.id.desc()).limit(n)
        ).mappings()
        return [dict(r) for r in rows]


def rows_of(engine: Engine, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(*where)).mappings()]


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

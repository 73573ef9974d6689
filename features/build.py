"""Point-in-time feature tables, computed with DuckDB SQL.

At every snapshot tick T of `core.timegrid.snapshot_grid(start, end, every_days)` and for every
lead created before T, a row describes the lead using only events and opportunities with a
timestamp strictly before T. Windows are half-open: "30d" at T means [T - 30 days, T).

How the windows stay cheap at 200k leads x 40 ticks (8M rows): every window edge (T, T-7d,
T-30d, T-90d of every tick) is a boundary; the boundaries cut time into at most 4 x n_ticks
intervals ("buckets"), so each window is exactly a run of whole buckets. Events are counted once
per (lead, bucket), turned into running totals per lead, and a window count is the running total
at edge T minus the one at edge T-N, each looked up with one ASOF join per edge. Exact for any
tick times (off-midnight, uneven), no per-row loops. Measured on 2 cores: 10k leads x 40 ticks
~1.5 s; 200k leads x 41 ticks (8.2M rows, 6M events) ~40 s at ~6 GB peak.

Engines: the statements are DuckDB SQL, written once. `engine="spark"` runs them on Apache Spark
(`features/spark.py` transpiles each with sqlglot and rewrites the ASOF and POSITIONAL joins
Spark lacks); the pandas steps between statements are shared. DuckDB keeps its fast path.

No feast import here: this module runs in the data pipeline and in tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pandas as pd

from core.contract import EVENT_TYPES, empty_table
from core.timegrid import snapshot_grid
from features.spark import DEFAULT_MASTER, SparkSql, spark_session

# every contract event type but product usage, which belongs to customers, not leads
ENGAGEMENT_TYPES: tuple[str, ...] = tuple(t for t in EVENT_TYPES if t != "product_active")
SHORT_WINDOW_TYPES: tuple[str, ...] = ("pricing_view", "demo_request", "trial_signup")
WINDOWS: tuple[int, ...] = (7, 30, 90)

# Exact output columns (after the key and event_timestamp). All numeric features are float64,
# so the training frame, the online response and a model signature never disagree on int vs
# float when a value is missing.
WINDOW_COUNT_FEATURES: tuple[str, ...] = (
    "events_7d",
    "events_30d",
    "events_90d",
    *(f"{t}_7d" for t in SHORT_WINDOW_TYPES),
    *(f"{t}_{w}d" for w in (30, 90) for t in ENGAGEMENT_TYPES),
)
LEAD_BEHAVIOR_FEATURES: tuple[str, ...] = (
    *WINDOW_COUNT_FEATURES,
    "days_since_last_event",
    "days_since_last_pricing_view",
    "trend_7d_vs_30d",
    "email_click_rate_90d",
    "active_days_30d",
    "lead_age_days",
)
COLLEAGUE_INTEREST_FEATURES: tuple[str, ...] = (
    "n_colleagues",
    "engaged_colleagues_30d",
    "colleague_pricing_views_30d",
    "colleague_demo_requests_90d",
    "colleague_open_opportunities",
)
LEAD_PROFILE_COLUMNS: tuple[str, ...] = ("account_id", "lead_account_id", "job_title", "source")
ACCOUNT_FIRMOGRAPHIC_FEATURES: tuple[str, ...] = (
    "industry",
    "employee_count",
    "annual_revenue",
    "country",
)
# Per account and snapshot: the subscription in force, product usage, and the engagement of the
# account's leads (every account that exists, customer or not; non-customers have no plan, seats,
# MRR or tenure).
ACCOUNT_USAGE_FEATURES: tuple[str, ...] = (
    "is_customer",
    "plan",
    "seats",
    "mrr",
    "mrr_change_90d",
    "tenure_days",
    "usage_events_7d",
    "usage_events_30d",
    "usage_events_prev_30d",
    "usage_trend_30d",
    "active_users_30d",
    "seat_utilization_30d",
    "lead_engagement_30d",
    "engaged_leads_30d",
    "known_leads",
    "opportunities_90d",
)
TABLES: tuple[str, ...] = (
    "lead_behavior",
    "colleague_interest",
    "lead_profile",
    "account_firmographic",
    "account_usage",
)
# keyed by account; the others by lead
ACCOUNT_TABLES: tuple[str, ...] = ("account_firmographic", "account_usage")

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": (
        "account_id",
        "industry",
        "employee_count",
        "annual_revenue",
        "country",
        "created_at",
    ),
    "leads": ("lead_id", "account_id", "job_title", "source", "created_at"),
    "events": ("lead_id", "event_type", "timestamp"),
    "opportunities": ("lead_id", "account_id", "created_at"),
    "subscriptions": ("account_id", "started_at", "ended_at", "mrr", "seats", "plan"),
}
# A funnel without customers yet may leave these out; they are read as empty.
OPTIONAL_TABLES: frozenset[str] = frozenset({"subscriptions"})

_DAY_US = 86_400 * 1_000_000
# "Days since" for a lead that never did the thing: far beyond any window, so "never" sorts as
# the coldest value. A missing value would let the model place "never" anywhere, which breaks
# the guarantee that a new pricing view or demo request never lowers a score.
NEVER_DAYS = 999.0
_OLDEST_US = -(2**62)  # lower edge of bucket -1 ("older than every window")

RawInput = Mapping[str, pd.DataFrame] | str | os.PathLike
ENGINES: tuple[str, ...] = ("duckdb", "spark")


def build_feature_tables(
    raw: RawInput,
    out_dir: Path,
    start: object,
    end: object,
    every_days: int = 7,
    *,
    memory_limit: str | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
) -> dict[str, int]:
    """Compute the five feature tables and write `<out_dir>/<table>.parquet`; returns row counts.

    `raw` is a dict of DataFrames (accounts, leads, events, opportunities) or the raw directory
    holding `<table>.parquet`. All files are written to temporary names first and renamed only
    when every table succeeded, so readers never see a half-written set. `memory_limit` (DuckDB
    syntax, e.g. "8GB") caps DuckDB's memory; beyond it, it spills under out_dir.

    `engine` "spark" runs the same statements on Apache Spark (`features/spark.py`; the
    process's session, started on `spark_master`, default "local[*]", if none is running).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ticks = snapshot_grid(start, end, every_days)
    work_dir = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    written: dict[str, Path] = {}
    try:
        with _open_engine(engine, work_dir, memory_limit, spark_master) as db:
            _load_raw(db, raw)
            _prepare(db, ticks)
            counts: dict[str, int] = {}
            for table in TABLES:
                tmp = work_dir / f"{table}.parquet"
                counts[table] = db.write_parquet(f"{table}_out", tmp)
                written[table] = tmp
        for table, tmp in written.items():
            os.replace(tmp, out_dir / f"{table}.parquet")
        return counts
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def compute_feature_tables(
    raw: RawInput,
    ticks: pd.DatetimeIndex | None = None,
    *,
    engine: str = "duckdb",
    spark_master: str | None = None,
    **grid: object,
) -> dict[str, pd.DataFrame]:
    """The same tables as in-memory DataFrames (for tests and notebooks; small data only).

    Pass `ticks` directly or `start=`, `end=`, `every_days=` for `snapshot_grid`. Rows are
    sorted by key then event_timestamp.
    """
    if ticks is None:
        ticks = snapshot_grid(grid["start"], grid["end"], int(grid.get("every_days", 7)))
    with _open_engine(engine, None, None, spark_master) as db:
        _load_raw(db, raw)
        _prepare(db, pd.DatetimeIndex(ticks))
        frames = {}
        for table in TABLES:
            key = "account_id" if table in ACCOUNT_TABLES else "lead_id"
            frames[table] = db.frame(f"SELECT * FROM {table}_out ORDER BY {key}, event_timestamp")
        return frames


def check_engine(engine: str) -> str:
    """`engine` if it is one of ENGINES, else a ValueError naming the allowed values."""
    if engine not in ENGINES:
        raise ValueError(f"unknown feature engine {engine!r}: use one of {', '.join(ENGINES)}")
    return engine


class _Sql(Protocol):
    """What the build needs of an engine. Statements are DuckDB SQL; other engines translate."""

    def register(self, name: str, frame: pd.DataFrame) -> None: ...
    def read_parquet(self, name: str, path: Path) -> None: ...
    def table(self, name: str, query: str) -> None: ...
    def view(self, name: str, query: str) -> None: ...
    def drop(self, *names: str) -> None: ...
    def rows(self, query: str) -> list[tuple]: ...
    def columns(self, name: str) -> list[str]: ...
    def frame(self, query: str) -> pd.DataFrame: ...
    def write_parquet(self, name: str, path: Path) -> int: ...
    def ordered(self) -> AbstractContextManager[None]: ...


# The row id of the lead x tick grid: the edge tables line up with the grid on it (DuckDB by
# row position, Spark by joining on it).
_ROW_KEY = "rid"


@contextmanager
def _open_engine(
    engine: str, work_dir: Path | None, memory_limit: str | None, spark_master: str | None
) -> Iterator[_Sql]:
    if check_engine(engine) == "spark":
        db = SparkSql(spark_session(spark_master or DEFAULT_MASTER), positional_key=_ROW_KEY)
        try:
            yield db
        finally:
            db.close()
        return
    con = _connect(work_dir, memory_limit)
    try:
        yield _DuckSql(con)
    finally:
        con.close()


def _connect(work_dir: Path | None, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Output order is irrelevant (Feast joins on keys); dropping it lets DuckDB stream and spill.
    con.execute("SET preserve_insertion_order = false")
    if work_dir is not None:
        con.execute(f"SET temp_directory = '{_sql_path(work_dir / 'spill')}'")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


class _DuckSql:
    """The build's statements on a DuckDB connection, as written."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def register(self, name: str, frame: pd.DataFrame) -> None:
        # a view over the frame, not a copy
        self.con.register(f"{name}_df", frame)
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_df")

    def read_parquet(self, name: str, path: Path) -> None:
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet('{_sql_path(path)}')"
        )

    def table(self, name: str, query: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")

    def view(self, name: str, query: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {query}")

    def drop(self, *names: str) -> None:
        for name in names:
            self.con.execute(f"DROP TABLE {name}")

    def rows(self, query: str) -> list[tuple]:
        return self.con.execute(query).fetchall()

    def columns(self, name: str) -> list[str]:
        return [row[0] for row in self.con.execute(f"DESCRIBE {name}").fetchall()]

    def frame(self, query: str) -> pd.DataFrame:
        return self.con.sql(query).df()

    def write_parquet(self, name: str, path: Path) -> int:
        copied = self.con.execute(
            f"COPY (SELECT * FROM {name}) TO '{_sql_path(path)}' (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()
        return int(copied[0])  # COPY reports the rows it wrote

    @contextmanager
    def ordered(self) -> Iterator[None]:
        """Keep insertion order (for POSITIONAL JOINs) inside the block."""
        self.con.execute("SET preserve_insertion_order = true")
        try:
            yield
        finally:
            self.con.execute("SET preserve_insertion_order = false")


def _load_raw(db: _Sql, raw: RawInput) -> None:
    """Expose the raw tables as raw_<table>, checking the columns this build reads."""
    for table, required in REQUIRED_COLUMNS.items():
        if isinstance(raw, Mapping):
            if table not in raw and table in OPTIONAL_TABLES:
                db.register(f"raw_{table}", empty_table(table))
                continue
            if table not in raw:
                raise ValueError(f"raw table '{table}' is missing")
            frame = raw[table]
            missing = [c for c in required if c not in frame.columns]
            if not missing:
                # only the columns read: less to copy, and no all-null columns of unknown type
                db.register(f"raw_{table}", frame[list(required)])
        else:
            path = Path(raw) / f"{table}.parquet"
            if not path.exists() and table in OPTIONAL_TABLES:
                db.register(f"raw_{table}", empty_table(table))
                continue
            if not path.exists():
                raise ValueError(f"raw table '{table}' is missing: {path} does not exist")
            db.read_parquet(f"raw_{table}", path)
            columns = set(db.columns(f"raw_{table}"))
            missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"raw table '{table}' lacks column(s) {missing}")
    for table, key in (("leads", "lead_id"), ("accounts", "account_id")):
        duplicated = db.rows(
            f"SELECT {key} FROM raw_{table} GROUP BY {key} HAVING count(*) > 1 LIMIT 5"
        )
        if duplicated:
            raise ValueError(
                f"raw table '{table}' has duplicate {key} values, e.g. {[d[0] for d in duplicated]}"
            )


def _window_tables(ticks: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ticks, bucket bounds, bucket->tick 30-day membership) as small frames.

    Bucket k covers [b_us[k], b_us[k+1]); bucket -1 holds everything older than every window.
    """
    ticks = ticks.tz_localize("UTC") if ticks.tz is None else ticks.tz_convert("UTC")
    t_us = ticks.as_unit("us").asi8.astype(np.int64)
    tick_frame = pd.DataFrame(
        {"tick_i": np.arange(len(t_us), dtype=np.int32), "tick_ts": ticks, "t_us": t_us}
    )
    edges = np.unique(np.concatenate([t_us - w * _DAY_US for w in (0, *WINDOWS)]))
    lo, hi = edges[:-1], edges[1:]
    bounds = pd.DataFrame(
        {
            "k": np.arange(-1, len(lo), dtype=np.int32),
            "b_us": np.concatenate([[_OLDEST_US], lo]).astype(np.int64),
        }
    )
    ks, ticks_i = [], []
    for i, t in enumerate(t_us):
        inside = np.flatnonzero((lo >= t - 30 * _DAY_US) & (hi <= t))
        ks.extend(inside)
        ticks_i.extend([i] * len(inside))
    membership30 = pd.DataFrame(
        {"k": np.asarray(ks, dtype=np.int32), "tick_i": np.asarray(ticks_i, dtype=np.int32)}
    )
    return tick_frame, bounds, membership30


# What is counted per (lead, bucket), and which running totals each window edge needs: one ASOF
# lookup per edge (T, T-7d, T-30d, T-90d), each carrying only its own totals.
_COUNTED: tuple[str, ...] = ("events", *ENGAGEMENT_TYPES)
_EDGE_TOTALS: dict[int, tuple[str, ...]] = {
    0: (*_COUNTED, "days"),
    7: ("events", *SHORT_WINDOW_TYPES),
    30: (*_COUNTED, "days"),
    90: _COUNTED,
}


def _prepare(db: _Sql, ticks: pd.DatetimeIndex) -> None:
    """Create the views <table>_out for the five feature tables.

    Internally leads and accounts are integers (lid, aid): every big join and GROUP BY runs on
    integer keys; the string ids come back only in the final SELECTs. Intermediate tables go as
    soon as they are used: the 8M-row build peaks far lower.
    """
    tick_frame, bounds, membership30 = _window_tables(ticks)
    max_t = _register_time_grid(db, tick_frame, bounds, membership30)
    _number_leads(db)
    _bucket_engagement_events(db, max_t)
    _lead_running_totals(db)
    _lead_tick_grid(db, len(tick_frame))
    # The edge tables line up with the grid row by row (POSITIONAL JOIN): keep insertion order.
    with db.ordered():
        _window_edges(db)
        _behavior_from_edges(db)
    db.drop(*(f"edge_{days}" for days in _EDGE_TOTALS), "lead_cum", "grid")
    _correct_active_days(db)
    db.drop("behavior_raw", "ev")
    _lead_behavior_view(db)
    _colleague_interest_view(db)
    _account_usage(db, max_t)
    _lead_profile_view(db)
    _account_firmographic_view(db)


def _register_time_grid(
    db: _Sql,
    tick_frame: pd.DataFrame,
    bounds: pd.DataFrame,
    membership30: pd.DataFrame,
) -> int:
    """Tables ticks, bounds (sorted by b_us, for the ASOF joins) and membership30; returns the
    last tick in epoch microseconds (nothing at or after it is ever read)."""
    db.register("ticks", tick_frame)
    db.register("bounds_src", bounds)
    db.table("bounds", "SELECT * FROM bounds_src ORDER BY b_us")
    db.register("membership30", membership30)
    return int(tick_frame["t_us"].max())


def _number_leads(db: _Sql) -> None:
    """Table leads_t: each lead's integer lid, its account's integer aid and its creation time."""
    db.table(
        "leads_t",
        """
        SELECT (row_number() OVER (ORDER BY lead_id))::INTEGER AS lid,
               dense_rank() OVER (ORDER BY account_id)::INTEGER AS aid,
               lead_id::VARCHAR AS lead_id, account_id::VARCHAR AS account_id,
               epoch_us(created_at::TIMESTAMPTZ) AS created_us
        FROM raw_leads
        """,
    )


def _bucket_engagement_events(db: _Sql, max_t: int) -> None:
    """Table ev: engagement events of known leads strictly before the last tick, with their
    type as a code (1-based position in ENGAGEMENT_TYPES) and their bucket k."""
    type_list = ", ".join(f"'{t}'" for t in ENGAGEMENT_TYPES)
    db.table(
        "ev",
        f"""
        WITH e AS (
            SELECT l.lid,
                   list_position([{type_list}], e.event_type)::TINYINT AS type_code,
                   epoch_us(e.timestamp::TIMESTAMPTZ) AS ts_us
            FROM raw_events e JOIN leads_t l ON e.lead_id = l.lead_id
            WHERE e.event_type IN ({type_list})
              AND epoch_us(e.timestamp::TIMESTAMPTZ) < {max_t}
        )
        SELECT e.lid, e.type_code, e.ts_us, b.k
        FROM e ASOF JOIN bounds b ON e.ts_us >= b.b_us
        """,
    )


def _bucket_count_columns() -> str:
    """SELECT list of the per-(lead, bucket) counts: c_<kind> for every counted kind, c_days
    (distinct UTC dates), and the last event and last pricing view (mx_any, mx_pricing)."""
    code = {t: i + 1 for i, t in enumerate(ENGAGEMENT_TYPES)}
    return ",\n".join(
        ["count(*)::INTEGER AS c_events"]
        + [
            f"count(*) FILTER (WHERE type_code = {code[t]})::INTEGER AS c_{t}"
            for t in ENGAGEMENT_TYPES
        ]
        + [
            f"count(DISTINCT ts_us // {_DAY_US})::INTEGER AS c_days",
            "max(ts_us) AS mx_any",
            f"max(ts_us) FILTER (WHERE type_code = {code['pricing_view']}) AS mx_pricing",
        ]
    )


def _running_total_columns() -> str:
    """SELECT list of the running totals over a lead's buckets (window w): cum_<kind>,
    cum_days, and the latest event and pricing view so far (last_any, last_pricing)."""
    return ",\n".join(
        [f"sum(c_{c}) OVER w::INTEGER AS cum_{c}" for c in (*_COUNTED, "days")]
        + ["max(mx_any) OVER w AS last_any", "max(mx_pricing) OVER w AS last_pricing"]
    )


def _lead_running_totals(db: _Sql) -> None:
    """Table lead_cum: per lead and bucket it has events in, the running totals up to that
    bucket, keyed by the bucket's lower edge lo_us.

    "Everything strictly before edge X" is the running total of the lead's last bucket starting
    before X (X is always a bucket edge).
    """
    db.table(
        "lead_bucket",
        f"""
        SELECT lid, k, {_bucket_count_columns()} FROM ev GROUP BY lid, k
        """,
    )
    db.table(
        "lead_cum",
        f"""
        SELECT lb.lid, b.b_us AS lo_us, {_running_total_columns()}
        FROM lead_bucket lb JOIN bounds b USING (k)
        WINDOW w AS (PARTITION BY lb.lid ORDER BY lb.k ROWS UNBOUNDED PRECEDING)
        """,
    )
    db.drop("lead_bucket")


def _lead_tick_grid(db: _Sql, n_ticks: int) -> None:
    """Table grid: one row per lead and tick after the lead's creation, ordered by its row id
    (rid = lid * n_ticks + tick_i: unique, and the same whichever engine numbers the rows)."""
    db.table(
        "grid",
        f"""
        SELECT l.lid::BIGINT * {n_ticks} + t.tick_i AS {_ROW_KEY},
               l.lid, l.aid, l.created_us, t.tick_i, t.t_us
        FROM leads_t l JOIN ticks t ON l.created_us < t.t_us
        ORDER BY {_ROW_KEY}
        """,
    )


def _window_edges(db: _Sql) -> None:
    """Tables edge_<days>: per grid row (in rid order), the lead's running totals strictly
    before T - days; edge_0 also carries the last event and pricing view.

    One ASOF lookup per edge: a chained multi-ASOF join measured 2-3x slower than separate ones.
    """
    for days, needed in _EDGE_TOTALS.items():
        cum_cols = ", ".join(f"cum_{c}" for c in needed)
        extra = ", last_any, last_pricing" if days == 0 else ""
        db.table(
            f"edge_{days}",
            f"""
            SELECT g.rid, {", ".join(f"c.cum_{c}" for c in needed)}{extra}
            FROM grid g
            ASOF LEFT JOIN (SELECT lid, lo_us, {cum_cols}{extra} FROM lead_cum) c
              ON g.lid = c.lid AND g.t_us - {days * _DAY_US} > c.lo_us
            ORDER BY g.rid
            """,
        )


def _window_count(kind: str, days: int) -> str:
    """SQL for the count of `kind` in [T - days, T): the total at edge T minus the one at
    edge T - days."""
    return f"(coalesce(e0.cum_{kind}, 0) - coalesce(e{days}.cum_{kind}, 0))::DOUBLE"


def _window_count_columns() -> list[str]:
    """The SELECT expressions of WINDOW_COUNT_FEATURES, in that order."""
    columns = [f"{_window_count('events', w)} AS events_{w}d" for w in WINDOWS]
    columns += [f"{_window_count(t, 7)} AS {t}_7d" for t in SHORT_WINDOW_TYPES]
    columns += [f"{_window_count(t, w)} AS {t}_{w}d" for w in (30, 90) for t in ENGAGEMENT_TYPES]
    return columns


def _behavior_from_edges(db: _Sql) -> None:
    """Table behavior_raw: per lead and tick, the window counts, recency, lead age and the
    active days before their correction (see _correct_active_days)."""
    db.table(
        "behavior_raw",
        f"""
        SELECT g.lid, g.aid, g.tick_i, {", ".join(_window_count_columns())},
               coalesce((g.t_us - e0.last_any) / {_DAY_US}::DOUBLE, {NEVER_DAYS})
                   AS days_since_last_event,
               coalesce((g.t_us - e0.last_pricing) / {_DAY_US}::DOUBLE, {NEVER_DAYS})
                   AS days_since_last_pricing_view,
               {_window_count("days", 30)} AS active_days_30d_raw,
               (g.t_us - g.created_us) / {_DAY_US}::DOUBLE AS lead_age_days
        FROM grid g
        POSITIONAL JOIN edge_0 e0
        POSITIONAL JOIN edge_7 e7
        POSITIONAL JOIN edge_30 e30
        POSITIONAL JOIN edge_90 e90
        WHERE CASE WHEN g.rid = e0.rid AND g.rid = e7.rid AND g.rid = e30.rid AND g.rid = e90.rid
                   THEN true ELSE error('edge tables out of order') END
        """,
    )


# behavior_raw's columns but the uncorrected active days
_BEHAVIOR_KEPT: tuple[str, ...] = (
    "lid",
    "aid",
    "tick_i",
    *WINDOW_COUNT_FEATURES,
    "days_since_last_event",
    "days_since_last_pricing_view",
    "lead_age_days",
)


def _correct_active_days(db: _Sql) -> None:
    """Table behavior: behavior_raw with active_days_30d.

    Summing per-bucket distinct dates counts a UTC date twice when it straddles a bucket edge
    inside the 30-day window (only possible when ticks are not at midnight): subtract those.
    """
    db.table(
        "active_days_fix",
        f"""
        WITH lead_day AS (
            SELECT DISTINCT lid, k, ts_us // {_DAY_US} AS day FROM ev WHERE k >= 0
        ), split_days AS (
            SELECT lid, day FROM lead_day GROUP BY lid, day HAVING count(*) > 1
        )
        SELECT d.lid, m.tick_i, (count(*) - count(DISTINCT d.day))::DOUBLE AS overcount
        FROM lead_day d
        SEMI JOIN split_days s ON d.lid = s.lid AND d.day = s.day
        JOIN membership30 m ON m.k = d.k
        GROUP BY d.lid, m.tick_i
        """,
    )
    db.table(
        "behavior",
        f"""
        SELECT {", ".join(f"b.{c}" for c in _BEHAVIOR_KEPT)},
               b.active_days_30d_raw - coalesce(f.overcount, 0) AS active_days_30d
        FROM behavior_raw b LEFT JOIN active_days_fix f USING (lid, tick_i)
        """,
    )


def _lead_behavior_columns() -> list[str]:
    """The SELECT expressions of LEAD_BEHAVIOR_FEATURES over the table behavior (alias b)."""
    columns = []
    for c in LEAD_BEHAVIOR_FEATURES:
        if c == "trend_7d_vs_30d":
            # Smoothed ratio of the last week's rate to the month's weekly rate: 1 = steady,
            # > 1 accelerating; defined (= 1) for leads with no recent events.
            columns.append(f"(b.events_7d + 1) / (b.events_30d * 7.0 / 30.0 + 1) AS {c}")
        elif c == "email_click_rate_90d":
            columns.append(f"b.email_click_90d / nullif(b.email_open_90d, 0) AS {c}")
        else:
            columns.append(f"b.{c}")
    return columns


def _lead_behavior_view(db: _Sql) -> None:
    """The view lead_behavior_out: behavior with the lead's id and the tick's timestamp."""
    db.view(
        "lead_behavior_out",
        f"""
        SELECT l.lead_id, t.tick_ts AS event_timestamp, {", ".join(_lead_behavior_columns())}
        FROM behavior b
        JOIN leads_t l USING (lid)
        JOIN ticks t USING (tick_i)
        """,
    )


def _colleague_interest_view(db: _Sql) -> None:
    """The view colleague_interest_out (and the table opp_t it reads).

    Colleagues = the other leads of the account that exist at T: account totals minus the
    lead's own contribution, so a lead's own activity never counts as colleague interest.
    Opportunities count from creation (their stage history is not in the data, and today's
    stage would leak the future).
    """
    db.table(
        "opp_t",
        """
        SELECT l.lid, a.aid, epoch_us(o.created_at::TIMESTAMPTZ) AS created_us
        FROM raw_opportunities o
        JOIN (SELECT DISTINCT aid, account_id FROM leads_t) a ON a.account_id = o.account_id
        LEFT JOIN leads_t l ON l.lead_id = o.lead_id AND l.aid = a.aid
        """,
    )
    db.view(
        "colleague_interest_out",
        """
        WITH account_tick AS (
            SELECT aid, tick_i,
                   count(*) AS n_leads,
                   count(*) FILTER (WHERE events_30d > 0) AS engaged_30d,
                   sum(pricing_view_30d) AS pricing_30d,
                   sum(demo_request_90d) AS demo_90d
            FROM behavior GROUP BY aid, tick_i
        ), opp_tick AS (
            SELECT o.lid, o.aid, t.tick_i FROM opp_t o JOIN ticks t ON o.created_us < t.t_us
        ), account_opps AS (
            SELECT aid, tick_i, count(*) AS n FROM opp_tick GROUP BY aid, tick_i
        ), own_opps AS (
            SELECT lid, tick_i, count(*) AS n FROM opp_tick WHERE lid IS NOT NULL
            GROUP BY lid, tick_i
        )
        SELECT l.lead_id, t.tick_ts AS event_timestamp,
               (a.n_leads - 1)::DOUBLE AS n_colleagues,
               (a.engaged_30d - (b.events_30d > 0)::INTEGER)::DOUBLE AS engaged_colleagues_30d,
               (a.pricing_30d - b.pricing_view_30d)::DOUBLE AS colleague_pricing_views_30d,
               (a.demo_90d - b.demo_request_90d)::DOUBLE AS colleague_demo_requests_90d,
               (coalesce(ao.n, 0) - coalesce(oo.n, 0))::DOUBLE AS colleague_open_opportunities
        FROM behavior b
        JOIN leads_t l USING (lid)
        JOIN ticks t USING (tick_i)
        JOIN account_tick a ON a.aid = b.aid AND a.tick_i = b.tick_i
        LEFT JOIN account_opps ao ON ao.aid = b.aid AND ao.tick_i = b.tick_i
        LEFT JOIN own_opps oo ON oo.lid = b.lid AND oo.tick_i = b.tick_i
        """,
    )


def _lead_profile_view(db: _Sql) -> None:
    """The view lead_profile_out: one row per lead, as of its creation."""
    db.view(
        "lead_profile_out",
        """
        SELECT lead_id::VARCHAR AS lead_id, created_at::TIMESTAMPTZ AS event_timestamp,
               account_id::VARCHAR AS account_id, account_id::VARCHAR AS lead_account_id,
               coalesce(job_title, '')::VARCHAR AS job_title,
               source::VARCHAR AS source
        FROM raw_leads
        """,
    )


def _account_firmographic_view(db: _Sql) -> None:
    """The view account_firmographic_out: one row per account, as of its creation."""
    db.view(
        "account_firmographic_out",
        """
        SELECT account_id::VARCHAR AS account_id, created_at::TIMESTAMPTZ AS event_timestamp,
               industry::VARCHAR AS industry, employee_count::DOUBLE AS employee_count,
               annual_revenue::DOUBLE AS annual_revenue, country::VARCHAR AS country
        FROM raw_accounts
        """,
    )


def _account_usage(db: _Sql, max_t: int) -> None:
    """The view account_usage_out: per account existing at a tick, the subscription in force,
    product usage of the account's leads and their engagement, all strictly before the tick.

    A subscription row is in force at T when it started before T and has not ended before T
    (a row ending exactly at T was not known to end yet). "MRR 90 days ago" is the row in force
    then, or the earliest row when the account was not yet a customer; tenure counts from the
    account's first subscription. `behavior` (per lead and tick) must exist.
    """
    _usage_per_lead_tick(db, max_t)
    _subscriptions_table(db)
    db.view(
        "account_usage_out",
        f"""
        {_account_usage_inputs()}
        SELECT g.account_id, g.tick_ts AS event_timestamp, {_account_usage_columns()}
        FROM grid g
        LEFT JOIN aids a ON a.account_id = g.account_id
        LEFT JOIN usage u ON u.aid = a.aid AND u.tick_i = g.tick_i
        LEFT JOIN people p ON p.aid = a.aid AND p.tick_i = g.tick_i
        LEFT JOIN sub s ON s.account_id = g.account_id AND s.tick_i = g.tick_i
        LEFT JOIN opps o ON o.account_id = g.account_id AND o.tick_i = g.tick_i
        """,
    )


def _usage_per_lead_tick(db: _Sql, max_t: int) -> None:
    """Table usage_lead_tick: per tick and lead, product usage events in the last 7 days (n7),
    the last 30 (n30) and the 30 before those (nprev)."""
    day = _DAY_US
    db.table(
        "usage_lead_tick",
        f"""
        WITH u AS (
            SELECT l.lid, l.aid, epoch_us(e.timestamp::TIMESTAMPTZ) AS ts_us
            FROM raw_events e JOIN leads_t l ON e.lead_id = l.lead_id
            WHERE e.event_type = 'product_active'
              AND epoch_us(e.timestamp::TIMESTAMPTZ) < {max_t}
        )
        SELECT t.tick_i, u.aid, u.lid,
               count(*) FILTER (WHERE u.ts_us >= t.t_us - {7 * day}) AS n7,
               count(*) FILTER (WHERE u.ts_us >= t.t_us - {30 * day}) AS n30,
               count(*) FILTER (WHERE u.ts_us < t.t_us - {30 * day}) AS nprev
        FROM u JOIN ticks t ON u.ts_us >= t.t_us - {60 * day} AND u.ts_us < t.t_us
        GROUP BY t.tick_i, u.aid, u.lid
        """,
    )


def _subscriptions_table(db: _Sql) -> None:
    """Table subs_t: subscription rows with their start and end in epoch microseconds."""
    db.table(
        "subs_t",
        """
        SELECT account_id::VARCHAR AS account_id,
               epoch_us(started_at::TIMESTAMPTZ) AS start_us,
               epoch_us(ended_at::TIMESTAMPTZ) AS end_us,
               mrr::DOUBLE AS mrr, seats::DOUBLE AS seats, plan::VARCHAR AS plan
        FROM raw_subscriptions
        """,
    )


def _account_usage_inputs() -> str:
    """The WITH clause of account_usage_out: grid (account x tick after its creation), aids,
    and per account and tick its usage, its people, the subscription (sub) and opportunities."""
    day = _DAY_US
    return f"""
        WITH grid AS (
            SELECT a.account_id::VARCHAR AS account_id, t.tick_i, t.t_us, t.tick_ts
            FROM raw_accounts a JOIN ticks t ON epoch_us(a.created_at::TIMESTAMPTZ) < t.t_us
        ), aids AS (
            SELECT DISTINCT aid, account_id FROM leads_t
        ), usage AS (
            SELECT aid, tick_i, sum(n7) AS u7, sum(n30) AS u30, sum(nprev) AS uprev,
                   count(*) FILTER (WHERE n30 > 0) AS active_users
            FROM usage_lead_tick GROUP BY aid, tick_i
        ), people AS (
            SELECT aid, tick_i, count(*) AS known_leads, sum(events_30d) AS engagement,
                   count(*) FILTER (WHERE events_30d > 0) AS engaged
            FROM behavior GROUP BY aid, tick_i
        ), sub AS (
            SELECT g.account_id, g.tick_i,
                   arg_max(s.mrr, s.start_us) FILTER (
                       WHERE s.end_us IS NULL OR s.end_us >= g.t_us) AS mrr_now,
                   arg_max(s.seats, s.start_us) FILTER (
                       WHERE s.end_us IS NULL OR s.end_us >= g.t_us) AS seats_now,
                   arg_max(s.plan, s.start_us) FILTER (
                       WHERE s.end_us IS NULL OR s.end_us >= g.t_us) AS plan_now,
                   arg_max(s.mrr, s.start_us) FILTER (
                       WHERE s.start_us < g.t_us - {90 * day}) AS mrr_then,
                   arg_min(s.mrr, s.start_us) AS mrr_first,
                   min(s.start_us) AS first_start
            FROM grid g JOIN subs_t s ON s.account_id = g.account_id AND s.start_us < g.t_us
            GROUP BY g.account_id, g.tick_i
        ), opps AS (
            SELECT g.account_id, g.tick_i, count(*) AS n
            FROM grid g JOIN raw_opportunities o ON o.account_id::VARCHAR = g.account_id
            WHERE epoch_us(o.created_at::TIMESTAMPTZ) < g.t_us
              AND epoch_us(o.created_at::TIMESTAMPTZ) >= g.t_us - {90 * day}
            GROUP BY g.account_id, g.tick_i
        )"""


def _account_usage_columns() -> str:
    """The SELECT list of ACCOUNT_USAGE_FEATURES over _account_usage_inputs' aliases; the
    subscription's values are null for an account that is not a customer at the tick."""
    return f"""
               (s.mrr_now IS NOT NULL)::DOUBLE AS is_customer,
               CASE WHEN s.mrr_now IS NOT NULL THEN s.plan_now END AS plan,
               CASE WHEN s.mrr_now IS NOT NULL THEN s.seats_now END AS seats,
               CASE WHEN s.mrr_now IS NOT NULL THEN s.mrr_now END AS mrr,
               CASE WHEN s.mrr_now IS NOT NULL
                    THEN s.mrr_now / nullif(coalesce(s.mrr_then, s.mrr_first), 0) - 1 END
                   AS mrr_change_90d,
               CASE WHEN s.mrr_now IS NOT NULL
                    THEN (g.t_us - s.first_start) / {_DAY_US}::DOUBLE END AS tenure_days,
               coalesce(u.u7, 0)::DOUBLE AS usage_events_7d,
               coalesce(u.u30, 0)::DOUBLE AS usage_events_30d,
               coalesce(u.uprev, 0)::DOUBLE AS usage_events_prev_30d,
               ln((coalesce(u.u30, 0) + 1) / (coalesce(u.uprev, 0) + 1)) AS usage_trend_30d,
               coalesce(u.active_users, 0)::DOUBLE AS active_users_30d,
               CASE WHEN s.mrr_now IS NOT NULL
                    THEN coalesce(u.active_users, 0) / greatest(s.seats_now, 1) END
                   AS seat_utilization_30d,
               coalesce(p.engagement, 0)::DOUBLE AS lead_engagement_30d,
               coalesce(p.engaged, 0)::DOUBLE AS engaged_leads_30d,
               coalesce(p.known_leads, 0)::DOUBLE AS known_leads,
               coalesce(o.n, 0)::DOUBLE AS opportunities_90d"""

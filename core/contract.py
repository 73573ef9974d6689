"""The data contract for the six raw tables: declarative schemas plus validation.

``validate(table, df)`` returns the table with canonical dtypes (sharing memory with ``df`` where
no conversion was needed: millions of strings are not copied) and raises ``ContractError`` (a
``ValueError``) naming the table, the column and up to five offending rows for every problem it
finds: missing columns, values of the wrong type, nulls where none are allowed, duplicate keys,
events repeated under new ids, timestamps in the future, values outside an enumeration or a
range. ``validate_all`` does that for several tables and then checks the references between them.

Canonical dtypes: ``str`` columns are ``object`` holding Python ``str`` (``None`` for nulls; an
empty string counts as null unless the column is nullable), ``int`` columns ``int64``, ``float``
columns ``float64``, ``ts`` columns ``datetime64[ns, UTC]``. Timestamps may arrive as tz-aware or
naive datetimes (naive means UTC) or as ISO 8601 text; epoch numbers are refused as ambiguous.

Extra columns are kept, unchanged and unchecked, after the contract's columns: users bring wider
tables, and only the contract's columns are read downstream. The row index is kept as given, so the row
labels in an error are the caller's (for a file read by ``core.tables``: 0-based data rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import FunnelError

Kind = Literal["str", "int", "float", "ts"]

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "pricing_view",
    "docs_view",
    "email_open",
    "email_click",
    "webinar_attended",
    "content_download",
    "demo_request",
    "trial_signup",
    "product_active",
)
LEAD_SOURCES: tuple[str, ...] = (
    "organic",
    "paid_search",
    "paid_social",
    "referral",
    "webinar",
    "outbound",
    "partner",
    "event",
)
MAX_SHOWN = 5  # offending rows quoted per problem
# Share of a table's rows that may repeat an earlier row's record (see TableSchema.record) before
# the table is refused: at one-second resolution two real events can coincide (the generator's
# 330k events hold one such pair), a file or a retrying pipeline that loaded the events twice
# repeats a large share.
MAX_REPEATED_SHARE = 0.01


@dataclass(frozen=True)
class Column:
    """One column of a table: its kind, whether nulls are allowed, optional allowed values/range."""

    name: str
    kind: Kind
    nullable: bool = False
    allowed: frozenset[str] | None = None
    min_value: float | None = None
    max_value: float | None = None
    min_inclusive: bool = True


@dataclass(frozen=True)
class TableSchema:
    """A table: its columns, its unique key (if any), pairs of timestamps that must be ordered
    and the columns that describe one record apart from its key (``record``): rows equal in all
    of them are the same record loaded twice under two keys."""

    name: str
    columns: tuple[Column, ...]
    key: str | None = None
    ordered: tuple[tuple[str, str], ...] = ()  # (earlier, later): later >= earlier when both set
    record: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class Reference:
    """``table.column`` values must exist in ``target.target_column``."""

    table: str
    column: str
    target: str
    target_column: str


def _table(
    name: str, *columns: Column, key: str | None = None, ordered=(), record=()
) -> TableSchema:
    return TableSchema(
        name=name, columns=columns, key=key, ordered=tuple(ordered), record=tuple(record)
    )


TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        _table(
            "accounts",
            Column("account_id", "str"),
            Column("domain", "str"),
            Column("industry", "str"),
            Column("employee_count", "int", min_value=0),
            Column("annual_revenue", "float", min_value=0),
            Column("country", "str"),
            Column("created_at", "ts"),
            key="account_id",
        ),
        _table(
            "leads",
            Column("lead_id", "str"),
            Column("account_id", "str"),
            Column("email", "str"),
            Column("job_title", "str", nullable=True),
            Column("source", "str", allowed=frozenset(LEAD_SOURCES)),
            Column("created_at", "ts"),
            key="lead_id",
        ),
        _table(
            "events",
            Column("event_id", "str"),
            Column("lead_id", "str"),
            Column("account_id", "str"),
            Column("event_type", "str", allowed=frozenset(EVENT_TYPES)),
            Column("timestamp", "ts"),
            Column("properties", "str", nullable=True),
            key="event_id",
            record=("lead_id", "event_type", "timestamp", "properties"),
        ),
        _table(
            "opportunities",
            Column("opportunity_id", "str"),
            Column("lead_id", "str"),
            Column("account_id", "str"),
            Column("created_at", "ts"),
            Column("amount", "float", min_value=0),
            Column("stage", "str"),
            key="opportunity_id",
        ),
        _table(
            "subscriptions",
            Column("account_id", "str"),
            Column("started_at", "ts"),
            Column("ended_at", "ts", nullable=True),
            Column("mrr", "float", min_value=0),
            Column("seats", "int", min_value=0),
            Column("plan", "str"),
            ordered=[("started_at", "ended_at")],
        ),
        _table(
            "offer_exposures",
            Column("subject_id", "str"),
            Column("offer_id", "str"),
            Column("exposed_at", "ts"),
            Column("propensity", "float", min_value=0, max_value=1, min_inclusive=False),
            Column("converted_at", "ts", nullable=True),
            ordered=[("exposed_at", "converted_at")],
        ),
    )
}
TABLE_NAMES: tuple[str, ...] = tuple(TABLES)

REFERENCES: tuple[Reference, ...] = (
    Reference("leads", "account_id", "accounts", "account_id"),
    Reference("events", "lead_id", "leads", "lead_id"),
    Reference("events", "account_id", "accounts", "account_id"),
    Reference("opportunities", "lead_id", "leads", "lead_id"),
    Reference("opportunities", "account_id", "accounts", "account_id"),
    Reference("subscriptions", "account_id", "accounts", "account_id"),
)
# Rows of these tables carry both lead_id and account_id: the account must be the lead's own,
# or colleague features would count a lead's events under the wrong account.
LEAD_ACCOUNT_CONSISTENT: tuple[str, ...] = ("events", "opportunities")


@dataclass(frozen=True)
class Problem:
    """One violation: where it is and which rows show it (row labels and their values)."""

    table: str
    column: str | None
    message: str
    rows: tuple = ()
    values: tuple = ()
    n_rows: int = 0

    def __str__(self) -> str:
        where = f"table '{self.table}'" + (f", column '{self.column}'" if self.column else "")
        text = f"{where}: {self.message}"
        if self.n_rows:
            shown = ", ".join(f"row {r}: {v!r}" for r, v in zip(self.rows, self.values))
            more = f" (first {len(self.rows)} shown)" if self.n_rows > len(self.rows) else ""
            text += f" - {self.n_rows} row(s){more}: {shown}"
        return text


class ContractError(FunnelError, ValueError):
    """Raw data that breaks the contract. ``table``/``column``/``rows`` describe the first problem;
    ``problems`` holds all of them."""

    def __init__(self, problems: list[Problem]):
        if not problems:
            raise ValueError("ContractError needs at least one problem")
        self.problems = problems
        self.table = problems[0].table
        self.column = problems[0].column
        self.rows = list(problems[0].rows)
        lines = [str(p) for p in problems]
        super().__init__(
            lines[0] if len(lines) == 1 else "\n  ".join(["contract violated:", *lines])
        )

    def __reduce__(self):  # picklable across processes despite the custom __init__
        return (type(self), (self.problems,))


def _problem(
    table: str,
    column: str | None,
    message: str,
    series: pd.Series | None = None,
    mask: np.ndarray | pd.Series | None = None,
) -> Problem:
    """A problem quoting up to ``MAX_SHOWN`` rows of ``series`` where ``mask`` is true."""
    if series is None or mask is None:
        return Problem(table, column, message)
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    head = positions[:MAX_SHOWN]
    rows = tuple(_plain(v) for v in series.index[head])
    values = tuple(_plain(v) for v in series.iloc[head])
    return Problem(table, column, message, rows, values, len(positions))


def _plain(value: object) -> object:
    """numpy scalars print as ``np.int64(3)`` in a repr; show plain Python values instead."""
    return value.item() if isinstance(value, np.generic) else value


def _is_null(series: pd.Series) -> np.ndarray:
    return series.isna().to_numpy()


# --- coercion per kind: each returns (coerced series, problems, null mask or None if ill-typed) --


def _coerce_str(
    table: str, col: Column, s: pd.Series
) -> tuple[pd.Series, list[Problem], np.ndarray | None]:
    problems: list[Problem] = []
    null = _is_null(s)
    if isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype):
        # object, StringDtype or categorical: every non-null value must be a Python str
        out = s.astype(object, copy=False)
        if not (isinstance(s.dtype, pd.StringDtype) or _all_str(out)):
            bad = ~null & ~out.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
            problems.append(_problem(table, col.name, "expected text", s, bad))
    elif null.all():  # e.g. an all-null column that pandas typed as float64
        out = s.astype(object)
    else:
        problems.append(_problem(table, col.name, f"expected text, got dtype {s.dtype}", s, ~null))
        out = s.astype(object)
    if null.any():
        out = out.where(~null, None)
    return out, problems, null


def _all_str(s: pd.Series) -> bool:
    return pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")


def _coerce_int(
    table: str, col: Column, s: pd.Series
) -> tuple[pd.Series, list[Problem], np.ndarray | None]:
    problems: list[Problem] = []
    if pd.api.types.is_bool_dtype(s.dtype):
        problems.append(
            _problem(table, col.name, "expected integer, got booleans", s, ~_is_null(s))
        )
        return s, problems, None
    num, bad = _to_number(s)
    fractional = ~bad & num.notna().to_numpy() & (num.fillna(0) % 1 != 0).to_numpy()
    if bad.any():
        problems.append(_problem(table, col.name, "expected integer", s, bad))
    if fractional.any():
        problems.append(
            _problem(table, col.name, "expected integer, got fractional values", s, fractional)
        )
    if problems:
        return s, problems, None
    null = _is_null(num)
    if null.any():
        return (
            num.astype("Int64"),
            problems,
            null,
        )  # nulls are reported by the caller if not allowed
    return num.astype("int64"), problems, null


def _coerce_float(
    table: str, col: Column, s: pd.Series
) -> tuple[pd.Series, list[Problem], np.ndarray | None]:
    problems: list[Problem] = []
    if pd.api.types.is_bool_dtype(s.dtype):
        problems.append(_problem(table, col.name, "expected number, got booleans", s, ~_is_null(s)))
        return s, problems, None
    num, bad = _to_number(s)
    num = num.astype("float64")
    infinite = np.isinf(num.to_numpy())
    if bad.any():
        problems.append(_problem(table, col.name, "expected number", s, bad))
    if infinite.any():
        problems.append(_problem(table, col.name, "expected a finite number", s, infinite))
    return num, problems, _is_null(num)


def _to_number(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Numbers from a numeric or text series, and the mask of non-null values that are not numbers."""
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s, np.zeros(len(s), dtype=bool)
    raw = s.astype(object)
    is_bool = np.zeros(len(s), dtype=bool)
    kind = pd.api.types.infer_dtype(raw, skipna=True)
    if kind == "boolean" or kind.startswith("mixed"):
        # bools would silently become 0/1; treat them as not numbers
        is_bool = raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        raw = raw.where(~is_bool, "not a number")
    num = pd.to_numeric(raw, errors="coerce")
    bad = ~_is_null(s) & _is_null(num)
    return num, bad


def _coerce_ts(
    table: str, col: Column, s: pd.Series
) -> tuple[pd.Series, list[Problem], np.ndarray | None]:
    problems: list[Problem] = []
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(dtype):
        out = s.dt.tz_localize("UTC")  # naive timestamps are taken as UTC, like core.timegrid
    elif pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        null = _is_null(s)
        if null.all():
            out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
        else:
            problems.append(
                _problem(
                    table,
                    col.name,
                    f"expected timestamp, got dtype {dtype} (epoch numbers are ambiguous; "
                    "convert with pd.to_datetime(..., unit=...))",
                    s,
                    ~null,
                )
            )
            return s, problems, None
    else:
        raw = s.astype(object)
        kind = pd.api.types.infer_dtype(raw, skipna=True)
        if kind not in ("string", "empty", "datetime", "datetime64", "date"):
            # numbers mixed into text would parse as epoch offsets; refuse them
            is_num = raw.map(lambda v: isinstance(v, (int, float, np.number))).to_numpy(dtype=bool)
            raw = raw.where(~is_num, "not a timestamp")
        try:
            out = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
        except (TypeError, ValueError):  # mixed objects the fast path refuses: go value by value
            out = raw.map(_one_ts).astype("datetime64[ns, UTC]")
        bad = ~_is_null(s) & _is_null(out)
        if bad.any():
            problems.append(_problem(table, col.name, "expected ISO 8601 timestamp", s, bad))
    out = out.dt.as_unit("ns")
    return out, problems, _is_null(out)


def _one_ts(value: object) -> pd.Timestamp:
    if value is None or isinstance(value, (int, float, np.number)):
        return pd.NaT
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return pd.NaT
    if ts is pd.NaT:
        return ts
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


_COERCE = {"str": _coerce_str, "int": _coerce_int, "float": _coerce_float, "ts": _coerce_ts}


def _now(now: object) -> pd.Timestamp:
    if now is None:
        return pd.Timestamp.now(tz="UTC")
    ts = pd.Timestamp(now)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def validate(table_name: str, df: pd.DataFrame, now: object = None) -> pd.DataFrame:
    """Check ``df`` against the contract of ``table_name`` and return it with canonical dtypes.

    ``now`` bounds every timestamp (default: the real current time). Raises ``ContractError``
    listing every problem found; extra columns are kept after the contract's columns.
    """
    schema = _checked_shape(table_name, df)
    now_ts = _now(now)
    problems: list[Problem] = []
    out: dict[str, pd.Series] = {}
    for col in schema.columns:
        out[col.name], col_problems = _checked_column(table_name, col, df[col.name], now_ts)
        problems += col_problems
    problems += _table_problems(schema, out, problems)
    if problems:
        raise ContractError(problems)
    return _with_extras(out, df)


def _checked_shape(table_name: str, df: pd.DataFrame) -> TableSchema:
    """The table's schema, once ``df`` is a DataFrame with unique column names holding every
    contract column; otherwise ``ContractError`` at once (nothing else can be checked)."""
    if table_name not in TABLES:
        raise ContractError(
            [
                Problem(
                    str(table_name),
                    None,
                    f"unknown table; the contract has {', '.join(TABLE_NAMES)}",
                )
            ]
        )
    schema = TABLES[table_name]
    if not isinstance(df, pd.DataFrame):
        raise ContractError(
            [Problem(table_name, None, f"expected a DataFrame, got {type(df).__name__}")]
        )
    dup_cols = df.columns[df.columns.duplicated()].unique().tolist()
    if dup_cols:
        raise ContractError(
            [Problem(table_name, ", ".join(map(str, dup_cols)), "duplicate column names")]
        )
    missing = [c for c in schema.column_names if c not in df.columns]
    if missing:
        raise ContractError(
            [
                Problem(
                    table_name,
                    ", ".join(missing),
                    f"missing column(s); expected {', '.join(schema.column_names)}",
                )
            ]
        )
    return schema


def _checked_column(
    table: str, col: Column, s: pd.Series, now_ts: pd.Timestamp
) -> tuple[pd.Series, list[Problem]]:
    """One column coerced to its kind's canonical dtype, with its problems: ill-typed values,
    timestamps after ``now_ts``, then (for well-typed values only) nulls, values outside the
    allowed set and out of range."""
    coerced, problems, null = _COERCE[col.kind](table, col, s)
    typed = not problems and null is not None  # the value checks need well-typed values
    if col.kind == "ts" and isinstance(coerced.dtype, pd.DatetimeTZDtype):
        problems += _future_problems(table, col, s, coerced, now_ts)
    if typed:
        problems += _value_problems(table, col, s, coerced, null)
    return coerced, problems


def _future_problems(
    table: str, col: Column, s: pd.Series, coerced: pd.Series, now_ts: pd.Timestamp
) -> list[Problem]:
    """Timestamps after ``now_ts``, quoted as given in ``s``."""
    future = (coerced > now_ts).fillna(False).to_numpy(dtype=bool)
    if not future.any():
        return []
    return [
        _problem(
            table,
            col.name,
            f"timestamps in the future (after {now_ts.isoformat()}): the source's "
            "clock or time zone is off; correct them at the source or convert them "
            "to UTC (timestamps without an offset are read as UTC)",
            s,
            future,
        )
    ]


def _value_problems(
    table: str, col: Column, s: pd.Series, coerced: pd.Series, null: np.ndarray
) -> list[Problem]:
    """Nulls (an empty id or name counts as one) where none are allowed, values outside
    ``col.allowed`` and numbers out of range, in a well-typed column."""
    problems = []
    if col.kind == "str" and not col.nullable:
        null = null | (coerced.to_numpy() == "")  # an empty id or name is a missing one
    if not col.nullable and null.any():
        problems.append(_problem(table, col.name, "null or empty values are not allowed", s, null))
    if col.allowed is not None:
        unknown = ~null & ~coerced.isin(col.allowed).to_numpy()
        if unknown.any():
            allowed = ", ".join(sorted(col.allowed))
            problems.append(
                _problem(table, col.name, f"unknown values (allowed: {allowed})", s, unknown)
            )
    if col.kind in ("int", "float"):
        problems += _range_problems(table, col, coerced)
    return problems


def _table_problems(
    schema: TableSchema, out: dict[str, pd.Series], column_problems: list[Problem]
) -> list[Problem]:
    """Problems across columns: duplicate keys, records repeated under new keys, timestamps out
    of order. Each check is skipped when a column it reads already has a problem (those found
    in the columns, then those found here)."""
    problems: list[Problem] = []

    def flagged(*columns: str | None) -> bool:
        return any(p.column in columns for p in (*column_problems, *problems))

    if schema.key is not None and not flagged(schema.key) and not _is_unique(out[schema.key]):
        problems.append(_duplicate_keys(schema.name, schema, out))
    # a repeated key is reported above; the records are compared when the keys are sound
    if schema.record and not flagged(*schema.record, schema.key):
        problems += _repeated_records(schema.name, schema, out)
    for earlier, later in schema.ordered:
        if flagged(earlier, later):
            continue
        wrong = (out[later] < out[earlier]).fillna(False).to_numpy(dtype=bool)
        if wrong.any():
            problems.append(_problem(schema.name, later, f"before {earlier}", out[later], wrong))
    return problems


def _with_extras(out: dict[str, pd.Series], df: pd.DataFrame) -> pd.DataFrame:
    """The contract's columns, then ``df``'s other columns unchanged, on ``df``'s index."""
    extras = [c for c in df.columns if c not in out]
    result = pd.DataFrame(out, index=df.index, copy=False)  # no copy of millions of strings
    for c in extras:
        result[c] = df[c]
    return result


def _duplicate_keys(table: str, schema: TableSchema, out: dict[str, pd.Series]) -> Problem:
    """Rows whose key an earlier row has, saying whether they are whole copies of it."""
    key = out[schema.key]
    dup = key.duplicated(keep="first").to_numpy()
    same = pd.DataFrame(out, copy=False)[key.duplicated(keep=False).to_numpy()]
    copies = int(same.duplicated(keep="first").sum())
    fix = f"keep one row per {schema.key}"
    if copies == dup.sum():
        message = (
            f"duplicate key values, each row a copy of an earlier one (rows loaded twice?); {fix}"
        )
    elif copies:
        message = f"duplicate key values ({copies:,} rows are copies of an earlier one); {fix}"
    else:
        message = f"duplicate key values; {fix}, or give each record its own {schema.key}"
    return _problem(table, schema.key, message, key, dup)


def _repeated_records(table: str, schema: TableSchema, out: dict[str, pd.Series]) -> list[Problem]:
    """More than ``MAX_REPEATED_SHARE`` of the rows repeat an earlier row's record under another
    key. Timestamps that are all at midnight are dates: repeats are then expected."""
    for c in schema.record:
        stamps = out[c].dropna()
        if isinstance(stamps.dtype, pd.DatetimeTZDtype) and (stamps.dt.normalize() == stamps).all():
            return []
    columns = pd.DataFrame({c: out[c] for c in schema.record}, copy=False)
    repeated = columns.duplicated(keep="first").to_numpy()
    n = int(repeated.sum())
    if n <= MAX_REPEATED_SHARE * len(columns):
        return []
    names = ", ".join(schema.record)
    head = np.flatnonzero(repeated)[:MAX_SHOWN]
    shown = columns.iloc[head]
    values = tuple(" ".join(str(_plain(v)) for v in row) for row in shown.itertuples(index=False))
    message = (
        f"{n / len(columns):.1%} of the rows repeat an earlier row's {names} under another "
        f"{schema.key} (the same records exported or loaded twice?); keep one row per {names} "
        f"(up to {MAX_REPEATED_SHARE:.0%} of the rows are taken as coincidences)"
    )
    rows = tuple(_plain(r) for r in columns.index[head])
    return [Problem(table, names, message, rows, values, n)]


def _arrow(s: pd.Series) -> pa.Array:
    return pa.array(s.to_numpy(), type=pa.string(), from_pandas=True)


def _is_unique(s: pd.Series) -> bool:
    """Arrow hashes millions of ids several times faster than pandas' object hashtable."""
    return len(pc.unique(_arrow(s))) == len(s)


def _range_problems(table: str, col: Column, s: pd.Series) -> list[Problem]:
    problems = []
    values = s.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        if col.min_value is not None:
            low = values <= col.min_value if not col.min_inclusive else values < col.min_value
            if low.any():
                op = ">=" if col.min_inclusive else ">"
                problems.append(
                    _problem(table, col.name, f"values must be {op} {col.min_value}", s, low)
                )
        if col.max_value is not None:
            high = values > col.max_value
            if high.any():
                problems.append(
                    _problem(table, col.name, f"values must be <= {col.max_value}", s, high)
                )
    return problems


def check_references(tables: Mapping[str, pd.DataFrame]) -> None:
    """Cross-table checks on already validated tables; only pairs present in ``tables`` are checked.

    Leads, events and opportunities must point at known leads/accounts; an event's or an
    opportunity's account must be its lead's account; offer subjects must be known leads or
    accounts.
    """
    problems: list[Problem] = []
    cache: dict[tuple[str, str], pa.Array] = {}

    def arrow(table: str, column: str) -> pa.Array:
        if (table, column) not in cache:
            cache[table, column] = _arrow(tables[table][column])
        return cache[table, column]

    def position(table: str, column: str, target: str, target_column: str) -> np.ndarray:
        """Row of each value in the target column, -1 where it is missing."""
        idx = pc.index_in(arrow(table, column), value_set=arrow(target, target_column))
        return idx.fill_null(-1).to_numpy(zero_copy_only=False)

    positions: dict[tuple[str, str], np.ndarray] = {}
    for ref in REFERENCES:
        if ref.table not in tables or ref.target not in tables:
            continue
        pos = position(ref.table, ref.column, ref.target, ref.target_column)
        positions[ref.table, ref.column] = pos
        if (pos < 0).any():
            problems.append(
                _problem(
                    ref.table,
                    ref.column,
                    f"values not found in {ref.target}.{ref.target_column}",
                    tables[ref.table][ref.column],
                    pos < 0,
                )
            )
    if "leads" in tables:
        for name in LEAD_ACCOUNT_CONSISTENT:
            pos = positions.get((name, "lead_id"))
            if pos is None or (pos < 0).any():
                continue
            expected = arrow("leads", "account_id").take(pa.array(pos))
            wrong = ~pc.equal(arrow(name, "account_id"), expected).to_numpy(zero_copy_only=False)
            if wrong.any():
                problems.append(
                    _problem(
                        name,
                        "account_id",
                        "differs from the lead's account_id in leads",
                        tables[name]["account_id"],
                        wrong,
                    )
                )
    if "offer_exposures" in tables and "leads" in tables and "accounts" in tables:
        s = arrow("offer_exposures", "subject_id")
        known = pc.or_(
            pc.is_in(s, value_set=arrow("leads", "lead_id")),
            pc.is_in(s, value_set=arrow("accounts", "account_id")),
        )
        unknown = ~known.to_numpy(zero_copy_only=False)
        if unknown.any():
            problems.append(
                _problem(
                    "offer_exposures",
                    "subject_id",
                    "values are neither a lead_id nor an account_id",
                    tables["offer_exposures"]["subject_id"],
                    unknown,
                )
            )
    if problems:
        raise ContractError(problems)


def validate_all(tables: Mapping[str, pd.DataFrame], now: object = None) -> dict[str, pd.DataFrame]:
    """Validate every table in ``tables`` (by contract name), then the references between them.

    Problems of all tables are reported together; the cross-table checks run only when each
    table is valid on its own.
    """
    problems: list[Problem] = []
    out: dict[str, pd.DataFrame] = {}
    for name, df in tables.items():
        try:
            out[name] = validate(name, df, now=now)
        except ContractError as exc:
            problems += exc.problems
    if problems:
        raise ContractError(problems)
    check_references(out)
    return out


def empty_table(table_name: str) -> pd.DataFrame:
    """A zero-row frame of ``table_name`` with the contract's columns and canonical dtypes."""
    dtypes = {"str": object, "int": "int64", "float": "float64", "ts": "datetime64[ns, UTC]"}
    schema = TABLES[table_name]
    return pd.DataFrame({c.name: pd.Series([], dtype=dtypes[c.kind]) for c in schema.columns})

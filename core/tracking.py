"""The tracking plan: the event vocabulary every event load is checked against, the check, the
quarantine of the rows it keeps out, and their replay.

The plan (``configs/tracking_plan.yaml``, a strict ``TrackingPlan``) names each event the data
contract knows, its aliases (old or foreign names, renamed on ingest) and its properties (type,
required, allowed values), and says per source what a violation does: ``block`` (quarantined,
not loaded), ``flag`` (loaded, counted, an example kept) or ``allow`` (loaded, counted).

``check_events(events, plan, source)`` runs before the contract's own check, on the delivered
rows, in three steps:

1. aliases are renamed to their event's name (the row is admitted under it and counted as
   ``renamed``);
2. duplicate deliveries are removed: the same message id (``plan.message_id``, the contract's
   ``event_id``), or the same lead, event and timestamp within the source's
   ``duplicate_window_seconds`` under another id. Of each set the first by (timestamp, message
   id) is kept, the others are quarantined with status ``duplicate``;
3. every other row is checked against its event's properties: ``unplanned_event``,
   ``missing_property``, ``wrong_type``, ``invalid_value`` (a well-typed value outside
   ``allowed``), ``unexpected_property``.

Nothing is dropped silently: ``received = admitted + blocked + duplicate``, and every row not
admitted is in the result's quarantine frame with its reason and the original row verbatim
(JSON text). ``write_quarantine`` stores that frame as ``<quarantine_dir>/<source>.parquet``
(a load of a source replaces its file, as it replaces the raw events) and the counts in
``summary.json``; ``replay_quarantine`` checks the quarantined rows again (after a plan or data
fix) and appends those that pass to the raw events, exactly once: a row is marked ``replayed``
and its message id is then in the raw events, so a second replay finds it there.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from core.config import (
    PROJECT_ROOT,
    ConfigError,
    Strict,
    format_validation_error,
    read_yaml_mapping,
)
from core.contract import EVENT_TYPES, check_references, validate
from core.errors import InputError, MissingInputError
from core.tables import read_table, table_path, write_tables

Action = Literal["allow", "flag", "block"]
PropertyType = Literal["string", "integer", "number", "boolean"]
SourceName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
Seconds = Annotated[int, Field(ge=0)]

# violation types a plan's policy decides, in the order that picks a row's deciding one
VIOLATIONS: tuple[str, ...] = (
    "unplanned_event",
    "missing_property",
    "wrong_type",
    "invalid_value",
    "unexpected_property",
)
DUPLICATE = "duplicate"
# every count of a load; received = admitted + blocked + duplicate
COUNT_KEYS: tuple[str, ...] = (
    "received",
    "admitted",
    "blocked",
    "duplicate",
    "flagged",
    "renamed",
    *VIOLATIONS,
)
# a quarantined row's status: kept out and replayable, admitted with a flag (an example),
# a removed duplicate, or admitted by a replay
STATUSES: tuple[str, ...] = ("quarantined", "flagged", "duplicate", "replayed")
QUARANTINE_COLUMNS: tuple[str, ...] = (
    "source",
    "position",  # the row's position in its load
    "status",
    "violation",
    "reason",
    "message_id",
    "event_type",  # as delivered
    "lead_id",
    "row",  # the delivered row, verbatim, as a JSON object
    "ingested_at",
    "replayed_at",
)
SUMMARY_FILE = "summary.json"
DEFAULT_PLAN = PROJECT_ROOT / "configs" / "tracking_plan.yaml"
COLUMNS_CHECKED = ("lead_id", "event_type", "timestamp")


# -- the plan ---------------------------------------------------------------------------------
class PropertySpec(Strict):
    """One property of an event: its JSON type, whether it must be there, its allowed values."""

    type: PropertyType
    required: bool = False
    allowed: Annotated[list[bool | int | float | str], Field(min_length=1)] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _allowed_of_type(self) -> PropertySpec:
        wrong = [v for v in self.allowed or () if not _of_type(v, self.type)]
        if wrong:
            raise ValueError(f"allowed values {wrong} are not of type {self.type}")
        return self


class EventSpec(Strict):
    """One planned event: its old or foreign names and its properties (others are unexpected)."""

    description: str = ""
    aliases: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    properties: dict[str, PropertySpec] = Field(default_factory=dict)


UNPLANNED_BLOCKS = (
    "only 'block' is possible: the data contract admits only its event types, and every "
    "planned event is one of them"
)


class Policy(Strict):
    """What each violation does: block (quarantined), flag (loaded, counted, an example kept) or
    allow (loaded, counted)."""

    unplanned_event: Action = "block"
    missing_property: Action = "block"
    wrong_type: Action = "block"
    invalid_value: Action = "block"
    unexpected_property: Action = "flag"

    @field_validator("unplanned_event")
    @classmethod
    def _unplanned_blocks(cls, value: str) -> str:
        if value != "block":
            raise ValueError(UNPLANNED_BLOCKS)
        return value


class PolicyOverride(Strict):
    """A source's own actions; a key left out keeps the plan's ``policy``."""

    unplanned_event: Action | None = None
    missing_property: Action | None = None
    wrong_type: Action | None = None
    invalid_value: Action | None = None
    unexpected_property: Action | None = None

    @field_validator("unplanned_event")
    @classmethod
    def _unplanned_blocks(cls, value: str | None) -> str | None:
        if value not in (None, "block"):
            raise ValueError(UNPLANNED_BLOCKS)
        return value


class SourceSpec(Strict):
    """A source of event loads (``synthetic``, ``import``, ...): its policy and duplicate window
    where they differ from the plan's."""

    policy: PolicyOverride = PolicyOverride()
    # set (a number or null: message ids only) to override the plan's window
    duplicate_window_seconds: Seconds | None = None


class TrackingPlan(Strict):
    """The event vocabulary and what each source does with a violation."""

    version: Literal[1] = 1
    message_id: str = "event_id"  # the column that makes a delivery unique
    events: Annotated[dict[str, EventSpec], Field(min_length=1)]
    policy: Policy = Policy()
    duplicate_window_seconds: Seconds | None = 0
    sources: dict[SourceName, SourceSpec] = Field(default_factory=dict)
    source_file: str = ""  # the file it came from, for messages (set by load_plan)

    @field_validator("events")
    @classmethod
    def _contract_names_and_unique_aliases(
        cls, events: dict[str, EventSpec]
    ) -> dict[str, EventSpec]:
        unknown = [name for name in events if name not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"{unknown} not event types of the data contract (they are: "
                f"{', '.join(EVENT_TYPES)})"
            )
        seen: dict[str, str] = {}
        for name, spec in events.items():
            for alias in spec.aliases:
                if alias in events:
                    raise ValueError(f"{name}.aliases: '{alias}' is the name of a planned event")
                if alias in seen:
                    raise ValueError(
                        f"{name}.aliases: '{alias}' is already an alias of {seen[alias]}"
                    )
                seen[alias] = name
        return events

    @property
    def aliases(self) -> dict[str, str]:
        """Alias -> the planned event's name."""
        return {a: name for name, spec in self.events.items() for a in spec.aliases}

    def policy_for(self, source: str) -> dict[str, Action]:
        """Each violation's action for ``source`` (a source the plan does not name gets the
        plan's ``policy``)."""
        actions = self.policy.model_dump()
        spec = self.sources.get(source)
        if spec is not None:
            actions.update({k: v for k, v in spec.policy.model_dump().items() if v is not None})
        return actions

    def window_for(self, source: str) -> int | None:
        """The source's duplicate window in seconds; None: message ids only."""
        spec = self.sources.get(source)
        if spec is not None and "duplicate_window_seconds" in spec.model_fields_set:
            return spec.duplicate_window_seconds
        return self.duplicate_window_seconds


def load_plan(path: Path | str) -> TrackingPlan:
    """Read and validate a tracking plan; a bad key or value raises ``ConfigError`` naming it."""
    path = Path(path)
    tree = read_yaml_mapping(path, "tracking plan", "data.tracking_plan")
    tree.setdefault("source_file", str(path))
    try:
        return TrackingPlan.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"tracking plan {path}")) from None


# -- the check --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackingResult:
    """One load checked against the plan. ``admitted``: the rows to load (aliases renamed, a
    fresh index), taken from the input rows at ``admitted_positions``; ``quarantine``: a frame
    of ``QUARANTINE_COLUMNS`` holding every blocked, flagged and duplicate row."""

    source: str
    admitted: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int]
    admitted_positions: np.ndarray = field(repr=False)
    checked_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))


def check_events(
    events: pd.DataFrame,
    plan: TrackingPlan,
    source: str,
    *,
    known_ids: Collection[str] = (),
    now: object = None,
) -> TrackingResult:
    """Check delivered event rows against ``plan`` under ``source``'s policy (see the module
    docstring). ``known_ids``: message ids already loaded (a row carrying one is a duplicate).
    ``events`` may be raw text (an import) or typed (the generator); the contract's own checks
    come after, on the admitted rows."""
    _check_columns(events, plan)
    checked_at = _now(now)
    n = len(events)
    raw_type = events["event_type"].to_numpy(dtype=object)
    canonical, renamed = _canonical_names(raw_type, plan.aliases)
    ids = events[plan.message_id].to_numpy(dtype=object)
    stamps = _utc_nanos(events["timestamp"])
    dup_reason = _duplicates(
        ids,
        events["lead_id"].to_numpy(dtype=object),
        canonical,
        stamps,
        plan.window_for(source),
        set(known_ids),
    )
    is_dup = pd.notna(dup_reason)
    props = (
        events["properties"].to_numpy(dtype=object)
        if "properties" in events.columns
        else np.full(n, None, dtype=object)
    )
    found = _plan_violations(canonical, raw_type, props, ~is_dup, plan)
    actions = plan.policy_for(source)
    blocked, flagged, deciding, reasons = _decisions(found, actions, n)
    blocked &= ~is_dup
    flagged &= ~is_dup
    admitted_positions = np.flatnonzero(~is_dup & ~blocked)

    admitted = events.iloc[admitted_positions]
    if renamed[admitted_positions].any():
        admitted = admitted.assign(event_type=canonical[admitted_positions])
    admitted = admitted.reset_index(drop=True)

    status = np.full(n, None, dtype=object)
    status[is_dup] = "duplicate"
    status[blocked] = "quarantined"
    status[flagged] = "flagged"
    deciding[is_dup] = DUPLICATE
    reasons[is_dup] = dup_reason[is_dup]
    quarantine = _quarantine_frame(
        events, plan.message_id, source, status, deciding, reasons, checked_at
    )
    counts = {
        "received": n,
        "admitted": len(admitted_positions),
        "blocked": int(blocked.sum()),
        "duplicate": int(is_dup.sum()),
        "flagged": int(flagged.sum()),
        "renamed": int((renamed & ~is_dup).sum()),
        **{v: int(found[v].sum()) for v in VIOLATIONS},
    }
    return TrackingResult(source, admitted, quarantine, counts, admitted_positions, checked_at)


def _check_columns(events: pd.DataFrame, plan: TrackingPlan) -> None:
    if not isinstance(events, pd.DataFrame):
        raise InputError(f"events: expected a DataFrame, got {type(events).__name__}")
    needed = [plan.message_id, *COLUMNS_CHECKED]
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise InputError(
            f"events: missing column(s) {missing} that the tracking plan check reads "
            f"(message_id: {plan.message_id!r} in {plan.source_file or 'the plan'}); "
            f"the events have {list(events.columns)}"
        )


def _now(now: object) -> pd.Timestamp:
    ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _canonical_names(
    raw_type: np.ndarray, aliases: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's planned name (the alias renamed; other names as given) and whether it was an
    alias; computed once per distinct name."""
    codes, uniques = pd.factorize(raw_type)
    names = np.array([aliases.get(u, u) for u in uniques] + [None], dtype=object)
    was_alias = np.array([u in aliases for u in uniques] + [False], dtype=bool)
    return names[codes], was_alias[codes]  # code -1 (a missing name) takes the last entry


def _utc_nanos(stamps: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (int64), the largest value where a time is missing or not
    readable (the contract reports those after the check)."""
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        parsed = stamps.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(stamps.dtype):
        parsed = stamps.dt.tz_localize("UTC")
    else:
        text = stamps.astype(object)
        try:
            parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        except (TypeError, ValueError):  # mixed objects: value by value
            parsed = text.map(_one_time).astype("datetime64[ns, UTC]")
    nanos = parsed.dt.tz_localize(None).dt.as_unit("ns").to_numpy(dtype="datetime64[ns]")
    out = nanos.view("int64").copy()
    out[pd.isna(nanos)] = np.iinfo(np.int64).max
    return out


def _one_time(value: object) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return pd.NaT
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _duplicates(
    ids: np.ndarray,
    leads: np.ndarray,
    names: np.ndarray,
    stamps: np.ndarray,
    window_s: int | None,
    known: set[str],
) -> np.ndarray:
    """Per row: None, or why it is a duplicate delivery. Of each set of deliveries the first by
    (timestamp, message id, position) is kept."""
    n = len(ids)
    reason = np.full(n, None, dtype=object)
    pos = np.arange(n)
    if known:
        seen = np.fromiter((i in known for i in ids), dtype=bool, count=n)
        for p in np.flatnonzero(seen):
            reason[p] = f"message id {ids[p]} is already in the raw events"
    has_id = pd.notna(ids) & pd.isna(reason)
    repeated = has_id & pd.Series(ids).duplicated(keep=False).to_numpy()
    if repeated.any():
        rows = pd.DataFrame({"id": ids[repeated], "t": stamps[repeated], "p": pos[repeated]})
        rows = rows.sort_values(["id", "t", "p"], kind="stable")
        later = rows["id"].duplicated(keep="first").to_numpy()
        for message_id, p in zip(rows["id"].to_numpy()[later], rows["p"].to_numpy()[later]):
            reason[p] = f"message id {message_id} delivered again (the first delivery is kept)"
    if window_s is None:
        return reason
    live = pd.isna(reason) & pd.notna(leads) & pd.notna(names)
    live &= stamps != np.iinfo(np.int64).max
    rows = pd.DataFrame(  # codes in place of the names: the same groups, sorted faster
        {
            "lead": pd.factorize(leads[live])[0],
            "name": pd.factorize(names[live])[0],
            "t": stamps[live],
            "id": ids[live],
            "p": pos[live],
        }
    )
    if window_s == 0:  # only equal timestamps: look at the rows that share one
        rows = rows[rows.duplicated(["lead", "name", "t"], keep=False).to_numpy()]
    rows = rows.sort_values(["lead", "name", "t", "id", "p"], kind="stable")
    lead, name, t = (rows[c].to_numpy() for c in ("lead", "name", "t"))
    row_id, p = rows["id"].to_numpy(), rows["p"].to_numpy()
    same = np.zeros(len(rows), dtype=bool)
    same[1:] = (lead[1:] == lead[:-1]) & (name[1:] == name[:-1])
    near = np.zeros(len(rows), dtype=bool)
    near[1:] = same[1:] & (t[1:] - t[:-1] <= window_s * 1_000_000_000)
    within = f" within {window_s}s" if window_s else ""
    window_ns = window_s * 1_000_000_000
    kept = -1  # the group's row last kept: a row within the window of it is its duplicate
    for i in np.flatnonzero(near):  # a row not near its predecessor is kept
        if not near[i - 1]:
            kept = i - 1
        if t[i] - t[kept] > window_ns:
            kept = i
            continue
        reason[p[i]] = (
            f"same lead, event and timestamp{within} as message {row_id[kept]} "
            "(the first delivery is kept)"
        )
    return reason


def _plan_violations(
    names: np.ndarray, raw_type: np.ndarray, props: np.ndarray, live: np.ndarray, plan: TrackingPlan
) -> dict[str, Any]:
    """Per violation type a row mask, and ``"reasons"``: each row's list of (type, reason).
    Computed once per distinct (event, properties) pair of the ``live`` rows."""
    n = len(names)
    found: dict[str, Any] = {v: np.zeros(n, dtype=bool) for v in VIOLATIONS}
    found["reasons"] = np.empty(n, dtype=object)
    rows = np.flatnonzero(live)
    if not len(rows):
        return found
    name_codes, _ = pd.factorize(names[rows])
    raw_codes, _ = pd.factorize(raw_type[rows])
    prop_codes, _ = pd.factorize(props[rows])
    pair = pd.DataFrame({"n": name_codes, "r": raw_codes, "p": prop_codes})
    group = pair.groupby(["n", "r", "p"], sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(rows))).groupby(group).first().to_numpy()
    outcomes = [
        _row_violations(names[rows[i]], raw_type[rows[i]], props[rows[i]], plan) for i in first
    ]
    per_row = np.empty(len(outcomes), dtype=object)
    per_row[:] = outcomes
    found["reasons"][rows] = per_row[group]
    for v in VIOLATIONS:
        has = np.array([any(kind == v for kind, _ in o) for o in outcomes], dtype=bool)
        found[v][rows] = has[group]
    return found


def _row_violations(
    name: object, raw_name: object, text: object, plan: TrackingPlan
) -> list[tuple[str, str]]:
    """(violation type, reason) for one event name and its properties text."""
    if not isinstance(name, str) or not name:
        return [("unplanned_event", "event_type is empty")]
    spec = plan.events.get(name)
    if spec is None:
        return [("unplanned_event", f"event '{raw_name}' is not in the tracking plan")]
    if text is None or (isinstance(text, float) and math.isnan(text)):
        values: dict[str, Any] = {}
    elif isinstance(text, dict):
        values = text
    else:
        try:
            values = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            values = None
        if not isinstance(values, dict):
            return [("wrong_type", f"{name}: properties is not a JSON object: {str(text)[:60]!r}")]
    out: list[tuple[str, str]] = []
    for key, prop in spec.properties.items():
        value = values.get(key)
        if value is None:
            if prop.required:
                out.append(("missing_property", f"{name}: required property '{key}' is missing"))
        elif not _of_type(value, prop.type):
            got = f"{_json_type(value)} {json.dumps(value)[:40]}"
            out.append(("wrong_type", f"{name}.{key}: expected {prop.type}, got {got}"))
        elif prop.allowed is not None and value not in prop.allowed:
            out.append(("invalid_value", f"{name}.{key}: {value!r} is not one of {prop.allowed}"))
    for key in values:
        if key not in spec.properties:
            out.append(("unexpected_property", f"{name}: unexpected property '{key}'"))
    return out


def _of_type(value: object, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)  # number


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _decisions(
    found: dict[str, Any], actions: Mapping[str, str], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: blocked, flagged (admitted), the deciding violation and the reason text."""
    blocked = np.zeros(n, dtype=bool)
    for v in VIOLATIONS:
        if actions[v] == "block":
            blocked |= found[v]
    flagged = np.zeros(n, dtype=bool)
    for v in VIOLATIONS:
        if actions[v] == "flag":
            flagged |= found[v]
    flagged &= ~blocked
    deciding = np.full(n, None, dtype=object)
    reasons = np.full(n, None, dtype=object)
    order = {v: i for i, v in enumerate(VIOLATIONS)}
    for p in np.flatnonzero(blocked | flagged):
        wanted = "block" if blocked[p] else "flag"
        listed = sorted(found["reasons"][p], key=lambda kv: order[kv[0]])
        deciding[p] = next(kind for kind, _ in listed if actions[kind] == wanted)
        reasons[p] = "; ".join(text for _, text in listed)
    return blocked, flagged, deciding, reasons


def _quarantine_frame(
    events: pd.DataFrame,
    message_id: str,
    source: str,
    status: np.ndarray,
    violation: np.ndarray,
    reason: np.ndarray,
    checked_at: pd.Timestamp,
) -> pd.DataFrame:
    rows = np.flatnonzero(pd.notna(status))
    kept = events.iloc[rows]
    frame = pd.DataFrame(
        {
            "source": pd.Series([source] * len(rows), dtype=object),
            "position": rows.astype("int64"),
            "status": status[rows],
            "violation": violation[rows],
            "reason": reason[rows],
            "message_id": [_text(v) for v in kept[message_id]],
            "event_type": [_text(v) for v in kept["event_type"]],
            "lead_id": [_text(v) for v in kept["lead_id"]],
            "row": [_row_json(r) for r in kept.to_dict("records")],
            "ingested_at": pd.Series([checked_at] * len(rows), dtype="datetime64[ns, UTC]"),
            "replayed_at": pd.Series([pd.NaT] * len(rows), dtype="datetime64[ns, UTC]"),
        }
    )
    return frame[list(QUARANTINE_COLUMNS)]


def empty_quarantine() -> pd.DataFrame:
    """A quarantine frame with no rows."""
    return pd.DataFrame(
        {
            c: pd.Series(
                [],
                dtype="int64"
                if c == "position"
                else "datetime64[ns, UTC]"
                if c in ("ingested_at", "replayed_at")
                else object,
            )
            for c in QUARANTINE_COLUMNS
        }
    )


def _text(value: object) -> str | None:
    plain = _plain(value)
    return None if plain is None else str(plain)


def _plain(value: object) -> Any:
    """A cell as a JSON value: times as ISO 8601 text, missing values as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    return value


def _row_json(row: Mapping[str, Any]) -> str:
    return json.dumps({str(k): _plain(v) for k, v in row.items()}, ensure_ascii=False, default=str)


# -- the quarantine store ---------------------------------------------------------------------
def quarantine_path(directory: Path | str, source: str) -> Path:
    return Path(directory) / f"{source}.parquet"


def write_quarantine(result: TrackingResult, directory: Path | str, *, plan_file: str = "") -> Path:
    """Store a load's quarantine as ``<directory>/<source>.parquet`` (replacing the source's
    earlier one, as the load replaced the raw events) and its counts in ``summary.json``."""
    path = quarantine_path(directory, result.source)
    _write_parquet(result.quarantine, path)
    summary = read_tracking_summary(directory)
    summary.setdefault("sources", {})[result.source] = {
        "counts": dict(result.counts),
        "ingested_at": result.checked_at.isoformat(),
        "plan": plan_file,
        "replays": [],
    }
    _write_summary(directory, summary)
    return path


def read_quarantine(directory: Path | str, source: str | None = None) -> pd.DataFrame:
    """The quarantined rows of one source, or of every source (empty when none were stored)."""
    folder = Path(directory)
    paths = (
        [quarantine_path(folder, source)]
        if source is not None
        else sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    )
    frames = [pd.read_parquet(p) for p in paths if p.is_file()]
    if not frames:
        return empty_quarantine()
    return pd.concat(frames, ignore_index=True)[list(QUARANTINE_COLUMNS)]


def read_tracking_summary(directory: Path | str) -> dict[str, Any]:
    """``summary.json``: per source, the last load's counts, time and plan, and its replays."""
    path = Path(directory) / SUMMARY_FILE
    if not path.is_file():
        return {"sources": {}}
    return json.loads(path.read_text())


def tracking_report(directory: Path | str, examples: int = 3) -> dict[str, Any]:
    """What ``funnel data check`` shows, as plain data: per source the load's counts, the
    quarantine's rows by status, and up to ``examples`` rows (reason and the row) per violation
    type. Empty ``sources`` when no load was recorded."""
    summary = read_tracking_summary(directory)
    quarantine = read_quarantine(directory)
    sources: dict[str, Any] = {}
    for source, entry in sorted(summary.get("sources", {}).items()):
        rows = quarantine[quarantine["source"] == source]
        by_status = rows["status"].value_counts()
        shown: dict[str, list[dict[str, Any]]] = {}
        for violation in (*VIOLATIONS, DUPLICATE):
            picked = rows[rows["violation"] == violation].sort_values("position").head(examples)
            if len(picked):
                shown[violation] = [
                    {
                        "status": r.status,
                        "reason": r.reason,
                        "row": json.loads(r.row),
                    }
                    for r in picked.itertuples(index=False)
                ]
        sources[source] = {
            **entry,
            "quarantine": {s: int(by_status.get(s, 0)) for s in STATUSES},
            "examples": shown,
        }
    return {"directory": str(directory), "sources": sources}


def format_tracking_report(report: Mapping[str, Any], examples: bool = True) -> str:
    """The report as the lines ``funnel data check`` prints."""
    if not report["sources"]:
        return (
            f"no event load recorded in {report['directory']}; run `funnel data generate` or "
            "`funnel data import` first"
        )
    lines = []
    for source, entry in report["sources"].items():
        c = entry["counts"]
        lines.append(
            f"{source}: {c['received']:,} received, {c['admitted']:,} admitted, "
            f"{c['blocked']:,} blocked, {c['duplicate']:,} duplicates removed, "
            f"{c['flagged']:,} flagged, {c['renamed']:,} renamed (loaded {entry['ingested_at']})"
        )
        found = ", ".join(f"{v} {c[v]:,}" for v in VIOLATIONS if c.get(v))
        lines.append(f"  violations: {found or 'none'}")
        q = entry["quarantine"]
        lines.append(
            f"  quarantine: {q['quarantined']:,} waiting, {q['replayed']:,} replayed, "
            f"{q['duplicate']:,} duplicates, {q['flagged']:,} flagged examples"
        )
        if entry.get("replays"):
            last = entry["replays"][-1]
            lines.append(
                f"  replays: {len(entry['replays'])}, the last at {last['at']}: "
                f"{last['replayed']:,} loaded, {last['still_quarantined']:,} still quarantined"
            )
        if examples:
            for violation, rows in entry["examples"].items():
                for r in rows:
                    lines.append(f"    {violation:<20} {r['reason']}")
                    lines.append(f"      {json.dumps(r['row'], ensure_ascii=False)[:240]}")
    return "\n".join(lines)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".parquet.tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_summary(directory: Path | str, summary: dict[str, Any]) -> None:
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".summary.", suffix=".json.tmp", dir=folder)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, folder / SUMMARY_FILE)


# -- replay -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayResult:
    """A replay: per source, how many waiting rows were checked again, how many were admitted
    (appended to the raw events), already there, or still violating the plan."""

    by_source: dict[str, dict[str, int]]
    events_path: Path | None  # the rewritten raw events, None when nothing was admitted

    @property
    def counts(self) -> dict[str, int]:
        keys = ("checked", "replayed", "already_loaded", "still_quarantined")
        return {k: sum(s[k] for s in self.by_source.values()) for k in keys}


def replay_quarantine(
    plan: TrackingPlan,
    raw_dir: Path | str,
    directory: Path | str,
    *,
    source: str | None = None,
    now: object = None,
) -> ReplayResult:
    """Check the waiting (``quarantined``) rows again against ``plan`` and append those that
    pass to the raw events, exactly once. A row whose message id is in the raw events already
    is marked ``duplicate``; a row still violating stays ``quarantined`` with its new reason.
    The events are validated (with their leads and accounts) before anything is written."""
    checked_at = _now(now)
    raw = Path(raw_dir)
    if table_path(raw, "events") is None:
        raise MissingInputError(
            f"no raw events in {raw}; run `funnel data generate` or `funnel data import` first"
        )
    events = read_table(raw, "events")
    known = set(events[plan.message_id]) if plan.message_id in events.columns else set()
    summary = read_tracking_summary(directory)
    sources = sorted(summary.get("sources", {})) if source is None else [source]
    if source is not None and source not in summary.get("sources", {}):
        raise InputError(
            f"no load of source '{source}' in {directory}; sources: "
            f"{sorted(summary.get('sources', {})) or 'none'}"
        )
    by_source: dict[str, dict[str, int]] = {}
    updated: dict[str, pd.DataFrame] = {}
    parts: list[pd.DataFrame] = []
    for name in sources:
        quarantine = read_quarantine(directory, name)
        waiting = np.flatnonzero((quarantine["status"] == "quarantined").to_numpy())
        rows = _rows_from_json(quarantine["row"].to_numpy()[waiting])
        counts = {
            "checked": len(waiting),
            "replayed": 0,
            "already_loaded": 0,
            "still_quarantined": 0,
        }
        if len(waiting):
            result = check_events(rows, plan, name, known_ids=known, now=checked_at)
            quarantine = _after_replay(quarantine, waiting, result, checked_at)
            counts["replayed"] = len(result.admitted_positions)
            counts["already_loaded"] = result.counts["duplicate"]
            counts["still_quarantined"] = result.counts["blocked"]
            if len(result.admitted):
                parts.append(result.admitted)
                known |= set(result.admitted[plan.message_id])
            updated[name] = quarantine
        by_source[name] = counts
    events_path = None
    if parts:
        events_path = _append_events(raw, events, parts)
    for name, quarantine in updated.items():
        _write_parquet(quarantine, quarantine_path(directory, name))
        entry = summary["sources"][name]
        entry.setdefault("replays", []).append({"at": checked_at.isoformat(), **by_source[name]})
    _write_summary(directory, summary)
    return ReplayResult(by_source, events_path)


def _rows_from_json(texts: np.ndarray) -> pd.DataFrame:
    records = [json.loads(t) for t in texts]
    columns: dict[str, None] = {}
    for r in records:
        columns.update(dict.fromkeys(r))
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    return frame.astype(object).where(frame.notna(), None)


def _after_replay(
    quarantine: pd.DataFrame, waiting: np.ndarray, result: TrackingResult, at: pd.Timestamp
) -> pd.DataFrame:
    """The source's quarantine with the waiting rows' new status, violation and reason."""
    out = quarantine.copy()
    admitted = waiting[result.admitted_positions]
    out.loc[admitted, "status"] = "replayed"
    out.loc[admitted, "replayed_at"] = at
    again = result.quarantine
    rows = waiting[again["position"].to_numpy()]
    status = again["status"].to_numpy()
    still = status == "quarantined"
    out.loc[rows[still], "violation"] = again["violation"].to_numpy()[still]
    out.loc[rows[still], "reason"] = again["reason"].to_numpy()[still]
    dup = status == "duplicate"
    out.loc[rows[dup], "status"] = "duplicate"
    out.loc[rows[dup], "violation"] = DUPLICATE
    out.loc[rows[dup], "reason"] = again["reason"].to_numpy()[dup]
    flagged = status == "flagged"  # admitted with a flag: replayed, the flag in its reason
    out.loc[rows[flagged], "reason"] = again["reason"].to_numpy()[flagged]
    return out


def _append_events(raw: Path, events: pd.DataFrame, parts: list[pd.DataFrame]) -> Path:
    """The raw events with the replayed rows appended, checked against the contract and the
    leads and accounts, written atomically."""
    added = validate("events", pd.concat(parts, ignore_index=True))
    combined = pd.concat([events, added], ignore_index=True)
    others = {
        name: read_table(raw, name)
        for name in ("leads", "accounts")
        if table_path(raw, name) is not None
    }
    check_references({"events": combined, **others})  # both parts are validated already
    return write_tables({"events": combined}, raw)["events"]

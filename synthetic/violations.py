"""The event stream as a tracking pipeline delivers it: the generator's clean events plus the
violations real pipelines show, at configured rates, with the exact count of each.

``deliver(events, plan, rates, rng)`` is a pure function of its inputs. Each clean event is,
independently:

* ``renamed``: delivered under one of its event's aliases (an old client still sends the old
  name); the ingest check renames it back;
* ``redelivered``: delivered a second time, unchanged, with the same message id (at-least-once
  delivery); the check removes the copy;
* the model of a ``missing_property`` or ``wrong_type`` copy: a broken tracker fires a second,
  faulty event for it (a new message id, a few minutes earlier) that lacks a required property
  or sends one with the wrong JSON type; the check blocks it;
* the anchor of an ``unplanned_event``: a debugging or experiment event the plan does not know
  (a new message id, a few minutes earlier); the check blocks it.

Every extra row follows the clean row it was made from, so the rows the check admits are the
clean events, in their order, when the plan blocks these violations (the shipped plan does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import ViolationRates
from core.tracking import TrackingPlan

UNPLANNED_NAMES: tuple[str, ...] = (
    "Button Clicked",
    "test_event",
    "page_view_debug",
    "Experiment Viewed",
)
NEW_ID_PREFIX = "M"  # message ids of the extra rows (the clean ones are E000000001, ...)
MAX_SHIFT_S = 600  # an extra row is up to ten minutes before the row it was made from


@dataclass(frozen=True)
class Delivery:
    """The delivered rows and what they hold: ``expected`` has the counts the ingest check
    must find (received, duplicate, renamed, missing_property, wrong_type, unplanned_event)."""

    events: pd.DataFrame
    expected: dict[str, int]


def deliver(
    events: pd.DataFrame, plan: TrackingPlan, rates: ViolationRates, rng: np.random.Generator
) -> Delivery:
    """The clean ``events`` (contract columns, the plan's names) as delivered, with the
    violations of ``rates`` (see the module docstring); deterministic for an ``rng`` state."""
    n = len(events)
    names = events["event_type"].to_numpy(dtype=object)
    props = events["properties"].to_numpy(dtype=object)
    codes, table = _parsed(props)
    # every draw is made for every row, so one rate does not move the others' rows
    u_renamed, u_alias, u_redelivered, u_missing, u_wrong, u_unplanned = rng.random((6, n))
    shifts = rng.integers(1, MAX_SHIFT_S + 1, size=(3, n))
    wrong_values = rng.integers(1, 1000, size=n)
    unplanned_pick = rng.integers(0, len(UNPLANNED_NAMES), size=n)

    delivered = events.copy()
    renamed = _rename(delivered, names, plan, u_renamed < rates.renamed, u_alias)
    redelivered = u_redelivered < rates.redelivered
    required = {
        e: [k for k, p in s.properties.items() if p.required] for e, s in plan.events.items()
    }
    declared = {e: list(s.properties) for e, s in plan.events.items()}
    drop_key = _first_key(names, codes, table, required)
    missing = (u_missing < rates.missing_property) & pd.notna(drop_key)
    retype_key = _first_key(names, codes, table, declared)
    wrong = (u_wrong < rates.wrong_type) & pd.notna(retype_key)
    unplanned = u_unplanned < rates.unplanned_event

    extras = [
        (np.flatnonzero(redelivered), delivered.iloc[redelivered]),
        (
            np.flatnonzero(missing),
            _broken(events, missing, shifts[0], lambda i: _without(table[codes[i]], drop_key[i])),
        ),
        (
            np.flatnonzero(wrong),
            _broken(
                events,
                wrong,
                shifts[1],
                lambda i: _retyped(table[codes[i]], retype_key[i], int(wrong_values[i])),
            ),
        ),
        (np.flatnonzero(unplanned), _unplanned(events, unplanned, shifts[2], unplanned_pick)),
    ]
    stream = _interleave(delivered, extras, _message_column(plan, events))
    expected = {
        "received": len(stream),
        "duplicate": int(redelivered.sum()),
        "renamed": int(renamed.sum()),
        "missing_property": int(missing.sum()),
        "wrong_type": int(wrong.sum()),
        "unplanned_event": int(unplanned.sum()),
    }
    return Delivery(stream, expected)


def _parsed(props: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's code into a table of distinct properties, parsed (a dict, empty when null)."""
    codes, uniques = pd.factorize(props)
    table = np.empty(len(uniques) + 1, dtype=object)
    table[:] = [json.loads(u) for u in uniques] + [{}]
    return codes, table  # code -1 (null) takes the last entry


def _rename(
    delivered: pd.DataFrame,
    names: np.ndarray,
    plan: TrackingPlan,
    chosen: np.ndarray,
    u_alias: np.ndarray,
) -> np.ndarray:
    """Give the chosen rows of events that have aliases one of them; the rows renamed."""
    renamed = np.zeros(len(names), dtype=bool)
    out = names.copy()
    for name, spec in plan.events.items():
        if not spec.aliases:
            continue
        rows = np.flatnonzero(chosen & (names == name))
        pick = (u_alias[rows] * len(spec.aliases)).astype(np.int64)
        out[rows] = np.array(spec.aliases, dtype=object)[np.minimum(pick, len(spec.aliases) - 1)]
        renamed[rows] = True
    if renamed.any():
        delivered["event_type"] = out
    return renamed


def _first_key(
    names: np.ndarray, codes: np.ndarray, table: np.ndarray, keys: Mapping[str, list[str]]
) -> np.ndarray:
    """Per row the first of its event's ``keys`` that its properties hold a value for, or None;
    found once per distinct (event, properties) pair."""
    name_codes, _ = pd.factorize(names)
    pairs = pd.DataFrame({"name": name_codes, "props": codes})
    group = pairs.groupby(["name", "props"], sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(names))).groupby(group).first().to_numpy()
    found = np.full(len(first), None, dtype=object)
    for g, i in enumerate(first):
        values = table[codes[i]]
        found[g] = next((k for k in keys.get(names[i], ()) if values.get(k) is not None), None)
    return found[group]


def _without(values: dict, key: str) -> str:
    return json.dumps({k: v for k, v in values.items() if k != key})


def _retyped(values: dict, key: str, number: int) -> str:
    return json.dumps({**values, key: number})  # a number where the plan wants text


def _broken(
    events: pd.DataFrame, chosen: np.ndarray, shifts: np.ndarray, properties
) -> pd.DataFrame:
    """Faulty copies of the chosen rows, a few minutes earlier, with new properties."""
    rows = np.flatnonzero(chosen)
    out = events.iloc[rows].copy()
    out["timestamp"] = out["timestamp"] - pd.to_timedelta(shifts[rows], unit="s")
    out["properties"] = np.array([properties(i) for i in rows], dtype=object)
    return out


def _unplanned(
    events: pd.DataFrame, chosen: np.ndarray, shifts: np.ndarray, pick: np.ndarray
) -> pd.DataFrame:
    """Events of names the plan does not know, by the chosen rows' leads, a little earlier."""
    rows = np.flatnonzero(chosen)
    out = events.iloc[rows].copy()
    out["event_type"] = np.array(UNPLANNED_NAMES, dtype=object)[pick[rows]]
    out["timestamp"] = out["timestamp"] - pd.to_timedelta(shifts[rows], unit="s")
    out["properties"] = np.full(len(rows), None, dtype=object)
    return out


def _message_column(plan: TrackingPlan, events: pd.DataFrame) -> str:
    if plan.message_id not in events.columns:
        raise ValueError(
            f"events have no column '{plan.message_id}' (the plan's message_id); "
            f"they have {list(events.columns)}"
        )
    return plan.message_id


def _interleave(
    clean: pd.DataFrame, extras: list[tuple[np.ndarray, pd.DataFrame]], message_id: str
) -> pd.DataFrame:
    """The clean rows with each extra row right after the row it was made from; the broken
    and unplanned rows (all extras but the first, the redeliveries) get new message ids."""
    new = sum(len(frame) for _, frame in extras[1:])
    ids = np.array([f"{NEW_ID_PREFIX}{k:09d}" for k in range(1, new + 1)], dtype=object)
    clash = pd.Index(ids).intersection(pd.Index(clean[message_id]))
    if len(clash):
        raise ValueError(f"new message ids clash with the events' own: {list(clash[:5])}")
    parts, anchors, order = [clean], [np.arange(len(clean))], [np.zeros(len(clean), dtype=int)]
    used = 0
    for k, (rows, frame) in enumerate(extras, start=1):
        if k > 1:
            frame = frame.assign(**{message_id: ids[used : used + len(frame)]})
            used += len(frame)
        parts.append(frame)
        anchors.append(rows)
        order.append(np.full(len(rows), k))
    stream = pd.concat(parts, ignore_index=True)
    position = np.lexsort((np.concatenate(order), np.concatenate(anchors)))
    return stream.iloc[position].reset_index(drop=True)

"""Weekly snapshot ticks shared by the generator, the feature build and the label builder."""

from __future__ import annotations

import pandas as pd


def to_utc(value: object) -> pd.Timestamp:
    """A timestamp in UTC; naive values are taken as UTC already."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def floor_week(value: object) -> pd.Timestamp:
    """Monday 00:00 UTC of the week holding ``value``."""
    ts = to_utc(value).normalize()
    return ts - pd.Timedelta(days=ts.dayofweek)


def snapshot_grid(start: object, end: object, every_days: int = 7) -> pd.DatetimeIndex:
    """Ticks every ``every_days`` from ``start`` (inclusive) strictly before ``end``, then ``end``.

    The final tick is the data's end, so the newest feature rows describe "now" for serving.
    """
    if every_days <= 0:
        raise ValueError(f"every_days must be positive, got {every_days}")
    start_ts, end_ts = to_utc(start), to_utc(end)
    if end_ts <= start_ts:
        raise ValueError(f"end {end_ts} must be after start {start_ts}")
    ticks = pd.date_range(start_ts, end_ts, freq=f"{every_days}D", inclusive="left")
    if len(ticks) == 0 or ticks[-1] != end_ts:
        ticks = ticks.append(pd.DatetimeIndex([end_ts]))
    return ticks

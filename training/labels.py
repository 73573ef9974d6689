"""Labels: which (lead, weekly snapshot) rows convert within the label window."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import FunnelError
from core.timegrid import to_utc


class TrainingDataError(FunnelError, ValueError):
    """The labelled rows cannot train a model (no window, one class); the message says what to
    change."""


def usable_ticks(
    ticks: pd.DatetimeIndex, window_days: int, data_end: object, what: str
) -> list[pd.Timestamp]:
    """The snapshots whose whole label window lies inside the data (their label is known)."""
    if window_days <= 0:
        raise ValueError(f"window_days must be positive, got {window_days}")
    window = pd.Timedelta(days=window_days)
    end = to_utc(data_end)
    usable = [t for t in ticks if t + window <= end]
    if not usable:
        raise TrainingDataError(
            f"no snapshot has a complete {window_days}-day {what} window before the data ends "
            f"(snapshots from {ticks[0].date()}, data end {end.date()}); generate or import a "
            "longer period, or shorten the label window"
        )
    return usable


def mql_labels(
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    ticks: pd.DatetimeIndex,
    window_days: int,
    data_end: object,
) -> pd.DataFrame:
    """One row per lead per snapshot at which the lead exists and has not converted yet.

    ``label`` is 1 when the lead's first opportunity is created in ``[tick, tick + window)``.
    Snapshots whose window reaches past ``data_end`` are dropped: their label is not known yet.
    Returns the Feast entity frame: lead_id, account_id, event_timestamp, label.
    """
    usable = usable_ticks(ticks, window_days, data_end, "label")
    first_opp = opportunities.groupby("lead_id")["created_at"].min()
    opp_at = leads["lead_id"].map(first_opp)
    # naive UTC datetime64 for fast comparisons; NaT where the lead never converts
    created = leads["created_at"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    converted = pd.to_datetime(opp_at, utc=True).dt.tz_localize(None).to_numpy()
    frames = []
    for tick in usable:
        t = np.datetime64(tick.tz_convert(None).to_datetime64(), "ns")
        alive = (created < t) & ~(converted < t)
        label = (converted >= t) & (converted < t + np.timedelta64(window_days, "D"))
        frames.append(
            pd.DataFrame(
                {
                    "lead_id": leads["lead_id"].to_numpy()[alive],
                    "account_id": leads["account_id"].to_numpy()[alive],
                    "event_timestamp": tick,
                    "label": label[alive].astype(np.int8),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    if out.empty:
        raise TrainingDataError(
            f"no lead exists at any snapshot from {usable[0].date()} to {usable[-1].date()}: "
            "the leads table is empty or its leads are created after these snapshots"
        )
    return out


def require_two_classes(rows: pd.DataFrame, subject: str, fix: str, dated: bool = True) -> None:
    """Raise ``TrainingDataError`` when the ``label`` of ``rows`` holds one class only, naming
    the rows, their snapshot dates (when ``dated``) and what to change (``fix``)."""
    positives, n = int(rows["label"].sum()), len(rows)
    if 0 < positives < n:
        return
    stamps = rows["event_timestamp"]
    when = f" (snapshots {stamps.min().date()} to {stamps.max().date()})" if dated and n else ""
    raise TrainingDataError(
        f"{subject} one class only: {positives:,} positives in {n:,} rows{when}; {fix}"
    )


def time_split(
    snapshots: pd.Series,
    validation_weeks: int,
    test_weeks: int,
    warmup_weeks: int = 0,
    *,
    setting: str = "training.mql.split",
) -> pd.Series:
    """'train' / 'validation' / 'test' by snapshot date: the newest weeks are the test set,
    the weeks before them validation, and the first ``warmup_weeks`` (whose 90-day windows are
    still filling) are left out as 'warmup'. ``setting`` names the split's config key in the
    error."""
    distinct = np.sort(snapshots.unique())
    need = validation_weeks + test_weeks + warmup_weeks + 1
    if len(distinct) < need:
        known = (
            f" ({pd.Timestamp(distinct[0]).date()} to {pd.Timestamp(distinct[-1]).date()})"
            if len(distinct)
            else ""
        )
        raise TrainingDataError(
            f"{len(distinct)} snapshot weeks{known} is too few for {warmup_weeks} warm-up + at "
            f"least 1 train + {validation_weeks} validation + {test_weeks} test weeks; shorten "
            f"the split in {setting} or generate or import a longer period"
        )
    test_from = distinct[-test_weeks]
    val_from = distinct[-(test_weeks + validation_weeks)]
    train_from = distinct[warmup_weeks]
    part = np.where(
        snapshots >= test_from, "test", np.where(snapshots >= val_from, "validation", "train")
    )
    part = np.where(snapshots < train_from, "warmup", part)
    return pd.Series(part, index=snapshots.index, name="split")


_OPEN = np.iinfo(np.int64).max  # a subscription that has not ended


def coverage_end(subscriptions: pd.DataFrame, gap_days: float = 1.0) -> pd.Series:
    """Per subscription row, when the account's continuous coverage that holds it ends.

    Rows of one account that start within ``gap_days`` of the previous rows' end (a plan or seat
    change, a renewal) are one coverage; its end is the churn. ``NaT`` means still a customer.
    Returned in the input's index.
    """
    s = subscriptions[["account_id", "started_at", "ended_at"]].copy()
    s["start"] = s["started_at"].astype("int64")
    s["end"] = np.where(s["ended_at"].isna(), _OPEN, s["ended_at"].astype("int64"))
    s = s.sort_values(["account_id", "start"], kind="stable")
    # the furthest end among the account's earlier rows: a start beyond it (plus the gap)
    # opens a new coverage
    reach = s.groupby("account_id")["end"].cummax().groupby(s["account_id"]).shift(1)
    gap = int(gap_days * 86_400 * 1e9)
    fresh = reach.isna() | (s["start"] > reach.fillna(0).astype("int64") + gap)
    coverage = fresh.cumsum()
    ends = s.groupby(coverage)["end"].transform("max")
    out = pd.to_datetime(ends.where(ends != _OPEN), utc=True)
    return out.reindex(subscriptions.index)


def churn_labels(
    subscriptions: pd.DataFrame,
    ticks: pd.DatetimeIndex,
    window_days: int,
    data_end: object,
) -> pd.DataFrame:
    """One row per customer account per snapshot: a subscription row is in force at the tick
    (started before it, not ended before it), as the ``is_customer`` feature reads it.

    ``label`` is 1 when the account's coverage ends within ``[tick, tick + window)``. Snapshots
    whose window reaches past ``data_end`` are dropped. Returns the Feast entity frame:
    account_id, event_timestamp, label.
    """
    usable = usable_ticks(ticks, window_days, data_end, "churn")
    if subscriptions.empty:
        raise TrainingDataError(
            "the subscriptions table is empty: the churn model needs customers "
            "(subscriptions with account_id, started_at, ended_at)"
        )
    account = subscriptions["account_id"].to_numpy()
    start = subscriptions["started_at"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    ended = subscriptions["ended_at"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    churn = coverage_end(subscriptions).dt.tz_localize(None).to_numpy()
    frames = []
    for tick in usable:
        t = np.datetime64(tick.tz_convert(None).to_datetime64(), "ns")
        active = (start < t) & (np.isnat(ended) | (ended >= t))
        label = ~np.isnat(churn) & (churn >= t) & (churn < t + np.timedelta64(window_days, "D"))
        rows = pd.DataFrame(
            {"account_id": account[active], "event_timestamp": tick, "label": label[active]}
        )
        # overlapping rows of one account: churned if its coverage ends in the window
        frames.append(
            rows.groupby("account_id", sort=True, as_index=False).agg(
                event_timestamp=("event_timestamp", "first"), label=("label", "max")
            )
        )
    out = pd.concat(frames, ignore_index=True)
    if out.empty:
        raise TrainingDataError(
            f"no account is a customer at any snapshot from {usable[0].date()} to "
            f"{usable[-1].date()}: no subscription is in force then"
        )
    out["label"] = out["label"].astype(np.int8)
    return out

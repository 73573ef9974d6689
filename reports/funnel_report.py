"""The funnel analytics report: where leads are in the funnel, how they move on, how long it takes.

``stage_history`` reads the point-in-time feature tables (written by ``funnel features apply``)
and the raw leads, and gives every lead's stage at every weekly snapshot. The functions after it
are pure (a history frame in, a frame out). ``write_funnel_report`` puts it all in one
self-contained HTML file, with the fix priorities (``reports.fixes``), the touchpoints and the
drop-off points (``reports.touchpoints``), and writes the same numbers as JSON beside it.

Counting convention: stages are ordered awareness < consideration < decision < retention, and a
lead that reaches a stage is counted as having passed every earlier one (a lead seen in awareness
and then in decision reached consideration too). Stages come from 30- and 90-day windows, so a
lead can fall back to an earlier stage; "reached" always means "ever reached".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from core.config import Config
from core.contract import empty_table
from core.errors import InputError, MissingInputError, UnknownNameError
from core.stages import STAGES, assign_stages, features_needed
from core.tables import read_tables, table_path
from reports.fixes import (
    PointValues,
    RankBy,
    account_values,
    fixes_sections,
    lead_outcomes,
    point_values,
    rank_fixes,
    read_fixes,
    read_measured_lifts,
)
from reports.html import (
    day,
    generated_at,
    html_figure,
    html_page,
    html_section,
    html_table,
    new_figure,
    write_atomic,
)
from reports.touchpoints import (
    causal_readouts,
    channel_exposures,
    event_exposures,
    lead_segments,
    lead_stalls,
    offer_exposures_in_window,
    stage_defining_events,
    stall_summary,
    stalled_segments,
    step_units,
    touchpoint_odds,
    touchpoint_sections,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GroupBy = Literal["cohort", "source"]
HISTORY_COLUMNS: tuple[str, ...] = (
    "lead_id",
    "account_id",
    "source",
    "cohort",
    "snapshot",
    "stage",
)
# consecutive stages: (from, to)
TRANSITIONS: tuple[tuple[str, str], ...] = tuple(pairwise(STAGES))

# The feature tables of features/build.py and their keys. Snapshot tables hold one row per key
# and weekly snapshot; the static ones one row per key (their event_timestamp is the creation).
SNAPSHOT_TABLES: dict[str, str] = {
    "lead_behavior": "lead_id",
    "colleague_interest": "lead_id",
    "account_usage": "account_id",
}
STATIC_TABLES: dict[str, str] = {"lead_profile": "lead_id", "account_firmographic": "account_id"}
_COLORS = {
    "awareness": "#9ecae1",
    "consideration": "#4292c6",
    "decision": "#fd8d3c",
    "retention": "#41ab5d",
}


# ------------------------------------------------------------------------------------- history
def stage_history(cfg: Config) -> pd.DataFrame:
    """Every lead's stage at every weekly snapshot at which it exists (snapshot >= created_at).

    Columns: lead_id, account_id, source (the channel), cohort (month created, "YYYY-MM"),
    snapshot (UTC timestamp), stage. The stage is ``assign_stages(cfg.stages, features)``, with
    lead features joined by (lead_id, snapshot) and account features (e.g. is_customer,
    opportunities_90d) by (account_id, snapshot). A lead created exactly at a snapshot has no
    feature row there (features count events strictly before it): its features are missing,
    which never satisfies a rule, so it starts in the default stage.
    """
    located = _locate_features(cfg)
    leads = read_tables(cfg.raw_dir, ["leads"])["leads"]
    if leads.empty:
        raise InputError(f"no leads in {cfg.raw_dir}: the funnel report needs at least one lead")
    behavior = pd.read_parquet(
        cfg.features_dir / "lead_behavior.parquet", columns=["event_timestamp"]
    )
    ticks = pd.DatetimeIndex(behavior["event_timestamp"].unique()).sort_values()
    if ticks.empty:
        raise InputError(f"no lead has a feature row in {cfg.features_dir}; nothing to report")

    created = pd.DatetimeIndex(pd.to_datetime(leads["created_at"], utc=True))
    # each lead exists from the first snapshot at or after its creation to the last one
    first = ticks.searchsorted(created.as_unit(ticks.unit), side="left")
    n = len(ticks) - first
    lead_i = np.repeat(np.arange(len(leads)), n)
    offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    if len(lead_i) == 0:
        raise InputError(f"every lead in {cfg.raw_dir} was created after the last snapshot")

    history = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy()[lead_i],
            "account_id": leads["account_id"].to_numpy()[lead_i],
            "source": leads["source"].to_numpy()[lead_i],
            "cohort": created.strftime("%Y-%m").to_numpy()[lead_i],
            "snapshot": ticks[np.repeat(first, n) + offset],
        }
    )
    features = history[["lead_id", "account_id", "snapshot"]]
    for table, columns in located.items():
        key = SNAPSHOT_TABLES.get(table) or STATIC_TABLES[table]
        path = cfg.features_dir / f"{table}.parquet"
        if table in SNAPSHOT_TABLES:
            part = pd.read_parquet(path, columns=[key, "event_timestamp", *columns])
            part = part.rename(columns={"event_timestamp": "snapshot"})
            part["snapshot"] = part["snapshot"].astype(ticks.dtype)
            features = features.merge(part, on=[key, "snapshot"], how="left", validate="m:1")
        else:
            part = pd.read_parquet(path, columns=[key, *columns]).drop_duplicates(key)
            features = features.merge(part, on=key, how="left", validate="m:1")
    # merges keep the left order, so the features line up with the history rows
    history["stage"] = assign_stages(cfg.stages, features.reset_index(drop=True))
    return history


def _locate_features(cfg: Config) -> dict[str, list[str]]:
    """{feature table: the stage-rule features it holds}; missing tables raise FileNotFoundError."""
    import pyarrow.parquet as pq

    folder = cfg.features_dir
    hint = "run `funnel features apply` first (after `funnel data generate`)"
    if not folder.is_dir():
        raise MissingInputError(f"feature tables folder {folder} not found; {hint}")
    tables = [*SNAPSHOT_TABLES, *STATIC_TABLES]
    missing = [f"{t}.parquet" for t in tables if not (folder / f"{t}.parquet").is_file()]
    if missing:
        raise MissingInputError(
            f"feature table(s) {', '.join(missing)} not found in {folder}; {hint}"
        )
    located: dict[str, list[str]] = {}
    unplaced = features_needed(cfg.stages)
    for table in tables:  # snapshot tables first: a feature there wins over a static copy
        names = set(pq.read_schema(folder / f"{table}.parquet").names)
        here = [f for f in unplaced if f in names]
        if here:
            located[table] = here
            unplaced = [f for f in unplaced if f not in names]
    if unplaced:
        raise UnknownNameError(
            f"stage rules need feature(s) {unplaced}, which no table in {folder} holds"
        )
    return located


# ------------------------------------------------------------------------------ pure functions
def _require(history: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in history.columns]
    if missing:
        raise KeyError(f"stage history lacks column(s) {missing}")


def _ranks(history: pd.DataFrame) -> np.ndarray:
    """Stage position per row (awareness 0 ... retention 3); an unknown stage raises."""
    codes = pd.Categorical(history["stage"], categories=STAGES).codes.astype(np.int64)
    if (codes < 0).any():
        bad = sorted({str(s) for s in history["stage"][codes < 0]})
        raise ValueError(f"unknown stage(s) {bad}; stages are {list(STAGES)}")
    return codes


def _frame(history: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The given columns plus ``rank``, on a fresh 0..n-1 index (timestamps keep their dtype)."""
    frame = history[columns].reset_index(drop=True)
    frame["rank"] = _ranks(history)
    return frame


def stage_counts(history: pd.DataFrame) -> pd.DataFrame:
    """Leads per stage at each snapshot: index snapshot, one integer column per stage."""
    _require(history, ["lead_id", "snapshot", "stage"])
    frame = _frame(history, ["snapshot", "lead_id"])
    counts = frame.groupby(["snapshot", "rank"])["lead_id"].nunique().unstack(fill_value=0)
    counts = counts.reindex(columns=range(len(STAGES)), fill_value=0).astype(np.int64)
    counts.columns = list(STAGES)
    counts.index.name = "snapshot"
    return counts


def conversion_table(history: pd.DataFrame, by: GroupBy | None = None) -> pd.DataFrame:
    """Conversion between consecutive stages, overall or per cohort / source.

    Per transition (from_stage -> to_stage): ``reached`` = leads that ever reached from_stage,
    ``converted`` = those of them that reached to_stage or any later stage, ``conversion_rate``
    = converted / reached (NaN when none reached), ``drop_off`` = reached - converted (reached
    from_stage but never went further) and ``drop_off_rate``. A lead that skips a stage counts
    as having passed it. ``by`` values are per lead (the first one seen is used).
    """
    if by not in (None, "cohort", "source"):
        raise ValueError(f"by must be None, 'cohort' or 'source', got {by!r}")
    _require(history, ["lead_id", "stage", *([by] if by else [])])
    frame = _frame(history, ["lead_id", *([by] if by else [])])
    agg: dict[str, tuple[str, str]] = {"rank": ("rank", "max")}
    if by:
        agg[by] = (by, "first")
    best = frame.groupby("lead_id", sort=False).agg(**agg)
    groups = [(None, best)] if by is None else list(best.groupby(by, sort=True))
    rows = []
    for value, group in groups:
        rank = group["rank"].to_numpy()
        for i, (a, b) in enumerate(TRANSITIONS):
            reached, converted = int((rank >= i).sum()), int((rank > i).sum())
            row = {} if by is None else {by: value}
            row |= {
                "from_stage": a,
                "to_stage": b,
                "reached": reached,
                "converted": converted,
                "conversion_rate": converted / reached if reached else np.nan,
                "drop_off": reached - converted,
                "drop_off_rate": (reached - converted) / reached if reached else np.nan,
            }
            rows.append(row)
    columns = [
        *([by] if by else []),
        "from_stage",
        "to_stage",
        "reached",
        "converted",
        "conversion_rate",
        "drop_off",
        "drop_off_rate",
    ]
    return pd.DataFrame(rows, columns=columns)


def lead_stage_durations(history: pd.DataFrame) -> pd.DataFrame:
    """Per lead and stage: days from first entering the stage to first entering a later one.

    Columns: lead_id, stage, entered, left, days. Only leads actually seen in the stage count
    (a skipped stage took no measurable time), and only those seen in a later stage after it
    (leads still there or fallen back are left out). Snapshots are weekly, so days are multiples
    of the snapshot spacing, and leads present at the first snapshot entered no later than it.
    """
    _require(history, ["lead_id", "snapshot", "stage"])
    frame = _frame(history, ["lead_id", "snapshot"])
    parts = []
    for i, stage in enumerate(STAGES[:-1]):
        entered = frame.loc[frame["rank"] == i].groupby("lead_id")["snapshot"].min()
        later = frame.loc[frame["rank"] > i]
        later = later.loc[later["snapshot"] > later["lead_id"].map(entered)]
        left = later.groupby("lead_id")["snapshot"].min()
        start = entered.loc[left.index]
        parts.append(
            pd.DataFrame(
                {
                    "lead_id": left.index,
                    "stage": stage,
                    "entered": start.to_numpy(),
                    "left": left.to_numpy(),
                    "days": (left - start).dt.total_seconds().to_numpy() / 86_400,
                }
            )
        )
    # empty parts would blur the dtypes of the others (and pandas warns about it)
    kept = [part for part in parts if len(part)] or parts[:1]
    return pd.concat(kept, ignore_index=True)


def stage_durations(history: pd.DataFrame) -> pd.DataFrame:
    """Days spent in each stage before moving on (see ``lead_stage_durations``), summarized.

    One row per stage that has a later one: stage, count (leads that moved on), median, p25,
    p75, mean (days; NaN when count is 0).
    """
    per_lead = lead_stage_durations(history)
    rows = []
    for stage in STAGES[:-1]:
        days = per_lead.loc[per_lead["stage"] == stage, "days"].to_numpy(dtype=float)
        empty = len(days) == 0
        rows.append(
            {
                "stage": stage,
                "count": len(days),
                "median": np.nan if empty else float(np.median(days)),
                "p25": np.nan if empty else float(np.percentile(days, 25)),
                "p75": np.nan if empty else float(np.percentile(days, 75)),
                "mean": np.nan if empty else float(days.mean()),
            }
        )
    return pd.DataFrame(rows, columns=["stage", "count", "median", "p25", "p75", "mean"])


def account_stages(history: pd.DataFrame) -> pd.DataFrame:
    """Each account's stage at its latest snapshot: the most advanced stage among its leads.

    Columns: account_id, snapshot, stage, leads (the account's leads at that snapshot);
    sorted by account_id.
    """
    _require(history, ["lead_id", "account_id", "snapshot", "stage"])
    frame = _frame(history, ["account_id", "lead_id", "snapshot"])
    latest = frame.groupby("account_id")["snapshot"].transform("max")
    now = frame.loc[frame["snapshot"] == latest]
    out = now.groupby("account_id", sort=True).agg(
        snapshot=("snapshot", "first"), rank=("rank", "max"), leads=("lead_id", "nunique")
    )
    out["stage"] = np.asarray(STAGES, dtype=object)[out["rank"].to_numpy()]
    return out.reset_index()[["account_id", "snapshot", "stage", "leads"]]


# -------------------------------------------------------------------------------------- report
def write_funnel_report(
    cfg: Config, out_path: Path | None = None, readouts_path: Path | None = None
) -> Path:
    """Write the funnel report (one self-contained HTML file) and return its path; the same
    numbers go to a JSON file beside it (``funnel_json_path``).

    Default path: ``<data_dir>/reports/funnel.html``. Measured lifts come from the experiment
    readouts at ``readouts_path`` (default ``<data_dir>/reports/experiments.json``; none when
    the file is missing). Missing feature tables raise ``FileNotFoundError`` (run ``funnel
    features apply``); no leads raise ``ValueError``.
    """
    history = stage_history(cfg)
    analytics = funnel_analytics(cfg, history, readouts_path=readouts_path)
    path = Path(out_path) if out_path is not None else cfg.data_dir / "reports" / "funnel.html"
    text = render_funnel_report(history, extra_sections=analytics_sections(analytics))
    document = funnel_document(history, analytics)
    write_atomic(funnel_json_path(path), json.dumps(document, indent=2, allow_nan=False))
    write_atomic(path, text)
    return path


def funnel_json_path(html_path: Path) -> Path:
    """Where the report's JSON goes: beside the HTML, ``funnel.html`` -> ``funnel.json``."""
    return Path(html_path).with_suffix(".json")


def render_funnel_report(
    history: pd.DataFrame, title: str = "Funnel report", extra_sections: Sequence[str] = ()
) -> str:
    """The report's HTML for a stage history (plots inlined as base64 PNG), with
    ``extra_sections`` (``html_section`` pieces) after the account stages."""
    if history.empty:
        raise ValueError("the stage history is empty: no leads to report on")
    _require(history, HISTORY_COLUMNS)
    counts = stage_counts(history)
    overall = conversion_table(history)
    sections = [
        _stages_section(counts),
        html_section(
            "funnel",
            "Funnel: conversion and drop-off",
            "Leads that ever reached each stage, with the share that went on to the next stage "
            "(or a later one) and the number that never went further. A lead that skips a "
            "stage counts as having passed it.",
            html_figure(_funnel_plot(overall)),
            html_table(_pretty_conversion(overall)),
        ),
        *(_conversion_by_section(conversion_table(history, by=by), by) for by in CONVERSION_BY),
        _durations_section(stage_durations(history)),
        html_section(
            "accounts",
            "Account stages",
            "Each account's stage at the latest snapshot is the most advanced stage among its "
            "leads (an account with one lead in decision is in decision).",
            html_table(_account_summary(account_stages(history))),
        ),
        *extra_sections,
    ]
    return html_page(title, _data_window(history, counts.index), sections)


# ---------------------------------------------------- fix priorities, touchpoints, stalls
READOUTS_FILE = Path("reports") / "experiments.json"  # under the data folder
HORIZON_DAYS = 56.0  # a unit of the touchpoint tables moved on within this many days
RAW_FOR_ANALYTICS = ("leads", "accounts", "events", "opportunities", "subscriptions",
                     "offer_exposures")  # fmt: skip


@dataclass(frozen=True)
class FunnelAnalytics:
    """The fix priorities, touchpoints and drop-off points of one stage history."""

    values: PointValues  # the value of a point per step
    ranked: pd.DataFrame  # the fixes, ranked (reports.fixes.RANKED_COLUMNS)
    currency: str
    odds: pd.DataFrame  # touchpoint odds ratios (reports.touchpoints.ODDS_COLUMNS)
    readouts: pd.DataFrame  # the randomized readouts, causal
    stalls: pd.DataFrame  # stall_summary
    segments: pd.DataFrame  # stalled_segments
    horizon_days: float
    fixes_file: str
    readouts_file: str


def funnel_analytics(
    cfg: Config,
    history: pd.DataFrame,
    *,
    readouts_path: Path | None = None,
    rank_by: RankBy = "per_cost",
    n_boot: int = 1000,
    seed: int = 0,
) -> FunnelAnalytics:
    """Fix priorities, touchpoints and drop-off points for ``history`` from the raw tables (a
    table that is missing counts as empty), the fixes file (``reports.fixes_file``) and the
    experiment readouts (default ``<data_dir>/reports/experiments.json``)."""
    raw = {
        name: read_tables(cfg.raw_dir, [name])[name]
        if table_path(cfg.raw_dir, name) is not None
        else empty_table(name)
        for name in RAW_FOR_ANALYTICS
    }
    fixes = read_fixes(cfg.reports.fixes_file)
    readouts = Path(readouts_path) if readouts_path else cfg.data_dir / READOUTS_FILE
    measured = read_measured_lifts(readouts)
    worth = account_values(
        raw["subscriptions"],
        raw["opportunities"],
        basis=fixes.value.basis,
        months=fixes.value.months,
    )
    ticks = pd.DatetimeIndex(history["snapshot"].unique())
    years = max((ticks.max() - ticks.min()).days, 7) / 365.25
    values = point_values(lead_outcomes(history, worth), years=years, n_boot=n_boot, seed=seed)
    units = step_units(history, horizon_days=HORIZON_DAYS)
    exposures = pd.concat(
        [
            event_exposures(units, raw["events"]),
            channel_exposures(units, raw["leads"]),
            offer_exposures_in_window(units, raw["offer_exposures"], raw["leads"]),
        ],
        ignore_index=True,
    )
    stalls = lead_stalls(history)
    return FunnelAnalytics(
        values=values,
        ranked=rank_fixes(values, fixes, measured, rank_by=rank_by, seed=seed),
        currency=fixes.currency,
        odds=touchpoint_odds(
            units, exposures, defining=stage_defining_events(cfg.stages), min_exposed=10
        ),
        readouts=causal_readouts(measured),
        stalls=stall_summary(stalls),
        segments=stalled_segments(stalls, lead_segments(raw["leads"], raw["accounts"])),
        horizon_days=HORIZON_DAYS,
        fixes_file=str(cfg.reports.fixes_file),
        readouts_file=str(readouts) if readouts.is_file() else "",
    )


def analytics_sections(analytics: FunnelAnalytics) -> list[str]:
    """The report sections of the fix priorities, touchpoints and drop-off points."""
    return [
        *fixes_sections(analytics.values, analytics.ranked, analytics.currency),
        *touchpoint_sections(
            analytics.odds,
            analytics.readouts,
            analytics.stalls,
            analytics.segments,
            horizon_days=analytics.horizon_days,
        ),
    ]


def funnel_document(history: pd.DataFrame, analytics: FunnelAnalytics) -> dict:
    """The report's numbers as a JSON-ready dict (NaN as null, timestamps as ISO 8601)."""
    ticks = pd.DatetimeIndex(history["snapshot"].unique()).sort_values()
    return {
        "generated_at": generated_at(),
        "data_window": {
            "first_snapshot": ticks.min().isoformat(),
            "last_snapshot": ticks.max().isoformat(),
            "snapshots": len(ticks),
            "years": analytics.values.years,
            "leads": int(history["lead_id"].nunique()),
        },
        "conversion": _records(conversion_table(history)),
        "durations": _records(stage_durations(history)),
        "value_of_a_point": {
            "currency": analytics.currency,
            "level": analytics.values.level,
            "steps": _records(analytics.values.table),
        },
        "fixes": {
            "file": analytics.fixes_file,
            "readouts_file": analytics.readouts_file or None,
            "ranked": _records(analytics.ranked),
        },
        "touchpoints": {
            "horizon_days": analytics.horizon_days,
            "odds_ratios": _records(analytics.odds),
            "readouts": _records(analytics.readouts),
        },
        "drop_off": {
            "stalls": _records(analytics.stalls),
            "segments": _records(analytics.segments),
        },
    }


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts: NumPy scalars as Python ones, NaN as None, times as ISO 8601."""

    def plain(value: object) -> object:
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            return None
        return value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


# The conversion sections per group: the anchor, the heading and what the section shows.
CONVERSION_BY: dict[GroupBy, tuple[str, str, str]] = {
    "cohort": (
        "by-cohort",
        "Conversion by cohort (month the lead was created)",
        (
            'The same conversion rates per monthly cohort ("stayed in": leads that reached '
            "the stage and never went further). Recent cohorts have had less time to move "
            "on, so their rates are lower by construction; leads created before the first "
            "snapshot were already in the funnel when the data starts, so their early steps "
            "are not observed."
        ),
    ),
    "source": (
        "by-channel",
        "Conversion by channel (lead source)",
        "The same conversion rates per lead source.",
    ),
}


def _conversion_by_section(conversion: pd.DataFrame, by: GroupBy) -> str:
    anchor, heading, explanation = CONVERSION_BY[by]
    return html_section(
        anchor,
        heading,
        explanation,
        html_figure(_conversion_by_plot(conversion, by)),
        html_table(_pretty_conversion(conversion, by)),
    )


def _stages_section(counts: pd.DataFrame) -> str:
    latest = counts.iloc[-1]
    return html_section(
        "stages-over-time",
        "Leads per stage over time",
        "How many leads sit in each stage at every weekly snapshot. Stages follow the rules "
        "in the config (<code>stages</code>) applied to each lead's features at that "
        "snapshot; they come from 30- and 90-day activity windows, so a lead can fall back "
        "to an earlier stage after a quiet month.",
        html_figure(_stage_area_plot(counts)),
        html_table(
            latest.rename("leads")
            .rename_axis("stage")
            .reset_index()
            .assign(share=lambda d: d["leads"] / max(d["leads"].sum(), 1)),
            caption=f"At the latest snapshot ({day(counts.index.max())})",
        ),
    )


def _durations_section(durations: pd.DataFrame) -> str:
    return html_section(
        "durations",
        "Time each stage takes",
        "Days from a lead's first snapshot in a stage to its first snapshot in a later "
        "stage, for leads that moved on (bars: median; whiskers: 25th to 75th percentile). "
        "Snapshots are weekly, so times are measured in whole weeks; leads present at the "
        "first snapshot may have entered their stage earlier.",
        html_figure(_durations_plot(durations)),
        html_table(
            durations.rename(
                columns={
                    "count": "leads moved on",
                    "median": "median days",
                    "p25": "p25 days",
                    "p75": "p75 days",
                    "mean": "mean days",
                }
            )
        ),
    )


def _data_window(history: pd.DataFrame, snapshots: pd.Index) -> str:
    """The page's subtitle: the snapshots, leads, accounts and cohorts the report covers."""
    n_leads, n_accounts = history["lead_id"].nunique(), history["account_id"].nunique()
    cohorts = sorted(history["cohort"].unique())
    return (
        f"Data window: {len(snapshots)} weekly snapshots from {day(snapshots.min())} to "
        f"{day(snapshots.max())}; {n_leads:,} leads in {n_accounts:,} accounts, created in "
        f"cohorts {cohorts[0]} to {cohorts[-1]}. Generated {generated_at()}."
    )


def _account_summary(accounts: pd.DataFrame) -> pd.DataFrame:
    grouped = accounts.groupby("stage").agg(accounts=("account_id", "size"), leads=("leads", "sum"))
    grouped = grouped.reindex(list(STAGES), fill_value=0)
    grouped["share of accounts"] = grouped["accounts"] / max(int(grouped["accounts"].sum()), 1)
    return grouped.rename_axis("stage").reset_index()[
        ["stage", "accounts", "share of accounts", "leads"]
    ]


def _pretty_conversion(table: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Overall: one row per step. Grouped: one row per group, a rate and a drop-off per step."""
    steps = table["from_stage"] + " → " + table["to_stage"]
    if by is None:
        out = table.drop(columns=["from_stage", "to_stage"]).assign(step=steps)
        out = out.rename(
            columns={
                "conversion_rate": "conversion rate",
                "drop_off": "drop-off",
                "drop_off_rate": "drop-off rate",
            }
        )
        return out[["step", "reached", "converted", "conversion rate", "drop-off", "drop-off rate"]]
    wide = table.assign(step=steps).pivot(index=by, columns="step")
    order = [f"{a} → {b}" for a, b in TRANSITIONS]
    out = pd.DataFrame({"leads": wide["reached"][order[0]]})
    for step in order:
        out[f"{step} rate"] = wide["conversion_rate"][step]
    for (a, _), step in zip(TRANSITIONS, order, strict=True):
        out[f"stayed in {a}"] = wide["drop_off"][step].astype(np.int64)
    return out.rename_axis(by).reset_index()


# --------------------------------------------------------------------------------------- plots
def _naive_utc(index: pd.Index) -> pd.DatetimeIndex:
    times = pd.DatetimeIndex(index)
    return times.tz_convert("UTC").tz_localize(None) if times.tz is not None else times


def _stage_area_plot(counts: pd.DataFrame) -> Figure:
    fig, ax = new_figure(8.0, 4.5)
    x = _naive_utc(counts.index).to_pydatetime()
    ax.stackplot(
        x,
        *[counts[s].to_numpy() for s in STAGES],
        labels=list(STAGES),
        colors=[_COLORS[s] for s in STAGES],
        alpha=0.9,
    )
    ax.set_xlabel("snapshot")
    ax.set_ylabel("leads")
    ax.set_title("Leads per stage at each weekly snapshot")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left")  # top band first
    fig.autofmt_xdate()
    return fig


def _funnel_plot(overall: pd.DataFrame) -> Figure:
    """Centered horizontal bars of leads that reached each stage, steps annotated between."""
    reached = [*overall["reached"].tolist(), int(overall["converted"].iloc[-1])]
    fig, ax = new_figure(8.0, 4.5)
    y = np.arange(len(STAGES))[::-1]
    widths = np.asarray(reached, dtype=float)
    ax.barh(y, widths, left=-widths / 2, color=[_COLORS[s] for s in STAGES], height=0.6)
    top = max(widths.max(), 1.0)
    for yi, stage, n in zip(y, STAGES, reached, strict=True):
        ax.text(0, yi, f"{stage}\n{n:,}", ha="center", va="center", fontsize=9)
    for yi, row in zip(y[:-1], overall.itertuples(), strict=True):
        rate = "–" if pd.isna(row.conversion_rate) else f"{row.conversion_rate:.1%}"
        ax.text(
            top / 2 + top * 0.03,
            yi - 0.5,
            f"↓ {rate} convert, {row.drop_off:,} drop off",
            va="center",
            fontsize=9,
            color="#333",
        )
    ax.set_xlim(-top / 2 * 1.05, top / 2 + top * 0.75)
    ax.set_yticks([])
    ax.set_xticks([])
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title("Funnel: leads that ever reached each stage")
    return fig


def _conversion_by_plot(table: pd.DataFrame, by: str) -> Figure:
    groups = sorted(table[by].unique()) if len(table) else []
    fig, ax = new_figure(max(8.0, 0.6 * len(groups) + 3), 4.5)
    x = np.arange(len(groups))
    width = 0.8 / len(TRANSITIONS)
    for j, (a, b) in enumerate(TRANSITIONS):
        part = table.loc[table["from_stage"] == a].set_index(by)["conversion_rate"]
        values = part.reindex(groups).to_numpy(dtype=float)
        ax.bar(
            x + (j - (len(TRANSITIONS) - 1) / 2) * width,
            values,
            width,
            label=f"{a} → {b}",
            color=_COLORS[b],
        )
    from matplotlib.ticker import PercentFormatter

    ax.set_xticks(
        x,
        groups,
        rotation=30 if len(groups) > 6 else 0,
        ha="right" if len(groups) > 6 else "center",
    )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("conversion rate")
    ax.set_ylim(0, 1.18)  # headroom for the legend above 100% bars
    ax.set_xlabel(
        {"cohort": "cohort (month created)", "source": "channel (lead source)"}.get(by, by)
    )
    ax.set_title(f"Conversion between stages by {'cohort' if by == 'cohort' else 'channel'}")
    ax.legend(loc="upper center", ncol=len(TRANSITIONS), fontsize=9)
    return fig


def _durations_plot(durations: pd.DataFrame) -> Figure:
    fig, ax = new_figure(7.0, 4.0)
    x = np.arange(len(durations))
    median = durations["median"].to_numpy(dtype=float)
    low = np.nan_to_num(median - durations["p25"].to_numpy(dtype=float))
    high = np.nan_to_num(durations["p75"].to_numpy(dtype=float) - median)
    ax.bar(
        x,
        np.nan_to_num(median),
        yerr=[low, high],
        capsize=4,
        color=[_COLORS[s] for s in durations["stage"]],
    )
    for xi, n in zip(x, durations["count"], strict=True):
        ax.text(xi, 0, f"n={n:,}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{s} →" for s in durations["stage"]])
    ax.set_ylabel("days until a later stage")
    ax.set_title("Time in each stage (median, 25th-75th percentile)")
    return fig

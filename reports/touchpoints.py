"""Touchpoints and drop-off points: what goes with leads moving on, and where they stall.

**Touchpoints.** For each step ``a -> b`` a lead is a unit from the snapshot at which it first
stands at ``a`` or beyond (its *entry*) when the data shows it arrive there: it was created
during the window or stood at ``a`` or below at the first snapshot. It *moved on* when it stands
beyond ``a`` within ``horizon_days`` of its entry; units whose horizon runs past the data are
left out, so every unit had the same time to move. Its *exposures* are the touchpoints in the
same fixed window around its entry for every unit: the snapshot spacing before it (the week that
brought the lead to the step) and the one after. A window that ran until the lead moved on would
be shorter for the leads that moved on, and every common touchpoint would look like a brake.
Touchpoints are event types, the lead's channel (source; each channel against all others) and
offers or campaigns shown to it (``offer_exposures``, any arm but control). Each gives a 2x2
table of exposed / not exposed by moved on / not, summarized by its odds ratio with a Woolf (log
odds ratio) interval, with 0.5 added to every cell of a table with an empty cell (Haldane). These
are **correlations**: leads who do more are more likely to move on whatever they do, and an event
the stage rules read (a demo request *defines* decision) is flagged. Randomized experiment
readouts, where there are some, are the causal evidence and are shown beside them.

**Drop-off points.** A lead that has not reached the last stage *stalls* at the furthest stage it
reached when it has been there longer than ``quantile`` (90%) of the leads who moved on from that
stage took. The stall table gives, per stage, how many stall and for how long; the segment table
the largest stalled groups by channel, industry, seniority, company size and country.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.config import StagesConfig
from core.contract import EVENT_TYPES
from core.stages import STAGES, parse_condition
from features.titles import normalize_titles
from reports.fixes import STEPS, Measured, stage_ranks
from reports.html import fmt, html_figure, html_section, html_table, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONTROL = "control"  # the no-offer arm of offer_exposures: not a touchpoint
KINDS: tuple[str, ...] = ("event", "channel", "offer")
SEGMENTS: tuple[str, ...] = ("source", "industry", "seniority", "company_size", "country")
# company size bands by employee count: (upper bound exclusive, label)
SIZE_BANDS: tuple[tuple[float, str], ...] = (
    (50, "1-49"),
    (250, "50-249"),
    (1000, "250-999"),
    (np.inf, "1000+"),
)
ODDS_COLUMNS: tuple[str, ...] = (
    "step", "kind", "touchpoint", "exposed", "exposed_moved", "unexposed", "unexposed_moved",
    "rate_exposed", "rate_unexposed", "odds_ratio", "low", "high", "defines_stage", "evidence",
)  # fmt: skip


# --------------------------------------------------------------------------- the 2x2 table
def odds_ratio(
    a: np.ndarray | float,
    b: np.ndarray | float,
    c: np.ndarray | float,
    d: np.ndarray | float,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Odds ratio of a 2x2 table and its Woolf interval: ``a`` exposed and moved on, ``b``
    exposed and not, ``c`` not exposed and moved on, ``d`` neither.

    OR = ad / bc; log OR +- z * sqrt(1/a + 1/b + 1/c + 1/d). A table with an empty cell gets
    0.5 added to each of its cells (Haldane), so the estimate and interval stay finite.
    Arrays compute many tables at once; negative counts raise ``ValueError``."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    cells = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (a, b, c, d)))
    table = np.stack(cells)
    if (table < 0).any() or np.isnan(table).any():
        raise ValueError("the cells of a 2x2 table must be counts (non-negative numbers)")
    table = table + 0.5 * (table == 0).any(axis=0)
    a_, b_, c_, d_ = table
    log_or = np.log(a_) + np.log(d_) - np.log(b_) - np.log(c_)
    se = np.sqrt(1 / a_ + 1 / b_ + 1 / c_ + 1 / d_)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return np.exp(log_or), np.exp(log_or - z * se), np.exp(log_or + z * se)


# ---------------------------------------------------------------------------- the units
def step_units(history: pd.DataFrame, *, horizon_days: float = 56.0) -> pd.DataFrame:
    """Per step, the leads whose passage is observed, each with its exposure window.

    Columns: lead_id, step, entered (the first snapshot at the step's stage or beyond),
    window_start and window_end (one snapshot spacing before and after entry: where its
    touchpoints are counted), moved (0/1: beyond the step's stage within the horizon). Units
    whose horizon ends after the last snapshot are left out."""
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    missing = [c for c in ("lead_id", "snapshot", "stage") if c not in history]
    if missing:
        raise KeyError(f"stage history lacks column(s) {missing}")
    frame = history[["lead_id", "snapshot"]].reset_index(drop=True)
    frame["rank"] = stage_ranks(history["stage"])
    ticks = pd.DatetimeIndex(np.sort(frame["snapshot"].unique()))
    spacing = (
        pd.Timedelta(ticks.to_series().diff().median()) if len(ticks) > 1 else pd.Timedelta(days=7)
    )
    end = ticks.max()
    horizon = pd.Timedelta(days=horizon_days)
    first = (
        frame.sort_values("snapshot")
        .groupby("lead_id")
        .agg(first_snapshot=("snapshot", "first"), first_rank=("rank", "first"))
    )
    entry_rank = pd.Series(
        np.where(first["first_snapshot"] > ticks.min(), 0, first["first_rank"]), first.index
    )
    parts = []
    for i, step in enumerate(STEPS):
        entered = frame.loc[frame["rank"] >= i].groupby("lead_id")["snapshot"].min()
        entered = entered.loc[entry_rank.reindex(entered.index) <= i]
        left = frame.loc[frame["rank"] > i].groupby("lead_id")["snapshot"].min()
        left = left.reindex(entered.index)
        moved = left.notna() & (left <= entered + horizon)
        keep = entered + horizon <= end
        units = pd.DataFrame(
            {
                "lead_id": entered.index,
                "step": step,
                "entered": entered.to_numpy(),
                "window_start": (entered - spacing).to_numpy(),
                "window_end": (entered + spacing).to_numpy(),
                "moved": moved.astype(np.int64).to_numpy(),
            }
        )
        parts.append(units.loc[keep.to_numpy()])
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------- the exposures
def event_exposures(units: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """(lead_id, step, kind "event", touchpoint = event type) for events in a unit's window
    (window_start <= timestamp < window_end), one row per unit and type."""
    ev = events[["lead_id", "event_type", "timestamp"]]
    joined = units[["lead_id", "step", "window_start", "window_end"]].merge(ev, on="lead_id")
    inside = (joined["timestamp"] >= joined["window_start"]) & (
        joined["timestamp"] < joined["window_end"]
    )
    hit = joined.loc[inside, ["lead_id", "step", "event_type"]].drop_duplicates()
    return hit.rename(columns={"event_type": "touchpoint"}).assign(kind="event")[
        ["lead_id", "step", "kind", "touchpoint"]
    ]


def channel_exposures(units: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
    """(lead_id, step, kind "channel", touchpoint = the lead's source) per unit."""
    source = leads.set_index("lead_id")["source"]
    out = units[["lead_id", "step"]].assign(kind="channel")
    out["touchpoint"] = out["lead_id"].map(source)
    return out.dropna(subset=["touchpoint"])


def offer_exposures_in_window(
    units: pd.DataFrame, exposures: pd.DataFrame, leads: pd.DataFrame
) -> pd.DataFrame:
    """(lead_id, step, kind "offer", touchpoint = offer id) for offers (not control) shown in
    a unit's window, to the lead itself or to its account (a subject id may be either)."""
    shown = exposures.loc[
        exposures["offer_id"] != CONTROL, ["subject_id", "offer_id", "exposed_at"]
    ]
    by_lead = units[["lead_id", "step", "window_start", "window_end"]]
    direct = by_lead.merge(shown, left_on="lead_id", right_on="subject_id")
    account_of = leads[["lead_id", "account_id"]]
    via_account = by_lead.merge(account_of, on="lead_id").merge(
        shown, left_on="account_id", right_on="subject_id"
    )
    joined = pd.concat([direct, via_account.drop(columns="account_id")], ignore_index=True)
    inside = (joined["exposed_at"] >= joined["window_start"]) & (
        joined["exposed_at"] < joined["window_end"]
    )
    hit = joined.loc[inside, ["lead_id", "step", "offer_id"]].drop_duplicates()
    return hit.rename(columns={"offer_id": "touchpoint"}).assign(kind="offer")[
        ["lead_id", "step", "kind", "touchpoint"]
    ]


def stage_defining_events(rules: StagesConfig) -> dict[str, set[str]]:
    """{stage: the event types its rules read} (``demo_request_30d >= 1`` reads demo_request):
    moving on to that stage *is* doing one of them."""
    out: dict[str, set[str]] = {}
    for rule in rules.rules:
        for condition in rule.when:
            feature = parse_condition(condition)[0]
            for event in EVENT_TYPES:
                if feature.startswith(f"{event}_"):
                    out.setdefault(rule.stage, set()).add(event)
    return out


# ------------------------------------------------------------------------- the odds ratios
def touchpoint_odds(
    units: pd.DataFrame,
    exposures: pd.DataFrame,
    *,
    defining: Mapping[str, Collection[str]] | None = None,
    min_exposed: int = 1,
    level: float = 0.95,
) -> pd.DataFrame:
    """An odds ratio of moving on per step and touchpoint (exposed against not exposed).

    ``units``: lead_id, step, moved (0/1), one row per unit; ``exposures``: lead_id, step,
    kind, touchpoint (a unit's touchpoints; repeats count once). ``defining``: {stage: event
    types its rules read}, flagged ``defines_stage``. Touchpoints with fewer than
    ``min_exposed`` exposed units are left out. Columns ``ODDS_COLUMNS``, sorted by step then
    odds ratio (largest first); ``evidence`` is "correlation"."""
    missing = [c for c in ("lead_id", "step", "moved") if c not in units]
    missing += [f"exposures.{c}" for c in ("lead_id", "step", "kind", "touchpoint")
                if c not in exposures]  # fmt: skip
    if missing:
        raise KeyError(f"missing column(s) {missing}")
    if units.duplicated(["lead_id", "step"]).any():
        raise ValueError("units must hold one row per (lead_id, step)")
    totals = units.groupby("step")["moved"].agg(["size", "sum"])
    exp = exposures[["lead_id", "step", "kind", "touchpoint"]].drop_duplicates()
    exp = exp.merge(units[["lead_id", "step", "moved"]], on=["lead_id", "step"])
    counts = exp.groupby(["step", "kind", "touchpoint"])["moved"].agg(["size", "sum"])
    counts = counts.reset_index().rename(columns={"size": "exposed", "sum": "exposed_moved"})
    counts = counts.loc[counts["exposed"] >= min_exposed]
    n = counts["step"].map(totals["size"]).to_numpy(dtype=float)
    moved = counts["step"].map(totals["sum"]).to_numpy(dtype=float)
    a = counts["exposed_moved"].to_numpy(dtype=float)
    b = counts["exposed"].to_numpy(dtype=float) - a
    c = moved - a
    d = n - moved - b
    ratio, low, high = odds_ratio(a, b, c, d, level) if len(counts) else ([], [], [])
    defining = defining or {}
    to_stage = counts["step"].str.split(" -> ").str[1]
    out = counts.assign(
        unexposed=(c + d).astype(np.int64),
        unexposed_moved=c.astype(np.int64),
        rate_exposed=np.divide(a, a + b, out=np.full(len(a), np.nan), where=(a + b) > 0),
        rate_unexposed=np.divide(c, c + d, out=np.full(len(c), np.nan), where=(c + d) > 0),
        odds_ratio=ratio,
        low=low,
        high=high,
        defines_stage=[
            kind == "event" and tp in defining.get(stage, ())
            for kind, tp, stage in zip(counts["kind"], counts["touchpoint"], to_stage, strict=True)
        ],
        evidence="correlation",
    )
    order = {s: i for i, s in enumerate(STEPS)}
    out = out.sort_values(
        ["step", "odds_ratio"], key=lambda s: s.map(order) if s.name == "step" else -s
    )
    return out.reset_index(drop=True)[list(ODDS_COLUMNS)]


def causal_readouts(measured: Mapping[str, Measured]) -> pd.DataFrame:
    """The randomized readouts as rows beside the odds ratios: comparison, metric, lift_rel,
    low, high, source, evidence "causal (randomized)". A comparison listed under several keys
    appears once."""
    rows = [
        {"comparison": m.name or key, "metric": m.metric, "lift_rel": m.lift_rel, "low": m.low,
         "high": m.high, "source": m.source, "evidence": "causal (randomized)"}
        for m, key in _first_keys(measured).items()
    ]  # fmt: skip
    columns = ["comparison", "metric", "lift_rel", "low", "high", "source", "evidence"]
    return pd.DataFrame(rows, columns=columns)


def _first_keys(measured: Mapping[str, Measured]) -> dict[Measured, str]:
    """Each distinct measurement once, with the first key it is listed under."""
    first: dict[Measured, str] = {}
    for key, m in measured.items():
        first.setdefault(m, key)
    return first


# ------------------------------------------------------------------------------- stalls
def lead_stalls(
    history: pd.DataFrame, *, quantile: float = 0.9, default_days: float = 56.0
) -> pd.DataFrame:
    """Every lead short of the last stage, how long it has been at its furthest stage, and
    whether that is a stall.

    Columns: lead_id, account_id, stage (the furthest reached), since (the first snapshot at
    that stage or beyond), days (from then to the last snapshot), threshold_days (the
    ``quantile`` of the days the leads that moved on from the stage took, at least one snapshot
    spacing; ``default_days`` when none moved on), stalled (bool), censored (the lead was
    already there at the first snapshot: its days are a lower bound)."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
    missing = [c for c in ("lead_id", "account_id", "snapshot", "stage") if c not in history]
    if missing:
        raise KeyError(f"stage history lacks column(s) {missing}")
    frame = history[["lead_id", "account_id", "snapshot"]].reset_index(drop=True)
    frame["rank"] = stage_ranks(history["stage"])
    ticks = np.sort(frame["snapshot"].unique())
    start, end = pd.Timestamp(ticks[0]), pd.Timestamp(ticks[-1])
    spacing_days = (
        float(pd.Series(ticks).diff().median().total_seconds()) / 86_400 if len(ticks) > 1 else 7.0
    )
    last = len(STAGES) - 1
    top = frame.groupby("lead_id").agg(account_id=("account_id", "first"), rank=("rank", "max"))
    thresholds = {}
    for i, stage in enumerate(STAGES[:-1]):
        entered = frame.loc[frame["rank"] >= i].groupby("lead_id")["snapshot"].min()
        left = frame.loc[frame["rank"] > i].groupby("lead_id")["snapshot"].min()
        took = (left - entered.reindex(left.index)).dt.total_seconds() / 86_400
        took = took.dropna()
        # movers seen from their entry (not already there at the first snapshot) set the pace
        took = took.loc[entered.reindex(took.index) > start] if (entered > start).any() else took
        thresholds[stage] = (
            max(float(np.quantile(took, quantile)), spacing_days) if len(took) else default_days
        )
    open_leads = top.loc[top["rank"] < last]
    reached = frame.merge(open_leads["rank"].rename("top"), left_on="lead_id", right_index=True)
    since = reached.loc[reached["rank"] >= reached["top"]].groupby("lead_id")["snapshot"].min()
    since = since.reindex(open_leads.index)
    stage = np.asarray(STAGES, dtype=object)[open_leads["rank"].to_numpy()]
    days = (end - since).dt.total_seconds().to_numpy() / 86_400
    threshold = np.array([thresholds[s] for s in stage], dtype=float)
    return pd.DataFrame(
        {
            "lead_id": open_leads.index.to_numpy(),
            "account_id": open_leads["account_id"].to_numpy(),
            "stage": stage,
            "since": since.to_numpy(),
            "days": days,
            "threshold_days": threshold,
            "stalled": days >= threshold,
            "censored": (since == start).to_numpy(),
        }
    )


def stall_summary(stalls: pd.DataFrame) -> pd.DataFrame:
    """Per stage short of the last: open leads (furthest stage), stalled, stalled_share,
    threshold_days, median_days and p75_days stalled (NaN when none), censored (stalled leads
    already there at the first snapshot)."""
    rows = []
    for stage in STAGES[:-1]:
        at = stalls.loc[stalls["stage"] == stage]
        stuck = at.loc[at["stalled"]]
        days = stuck["days"].to_numpy(dtype=float)
        rows.append(
            {
                "stage": stage,
                "open": len(at),
                "stalled": len(stuck),
                "stalled_share": len(stuck) / len(at) if len(at) else np.nan,
                "threshold_days": float(at["threshold_days"].iloc[0]) if len(at) else np.nan,
                "median_days": float(np.median(days)) if len(days) else np.nan,
                "p75_days": float(np.percentile(days, 75)) if len(days) else np.nan,
                "censored": int(stuck["censored"].sum()),
            }
        )
    return pd.DataFrame(rows)


def lead_segments(leads: pd.DataFrame, accounts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per lead, the segments stalls are broken down by: source, seniority (from the job
    title), and with ``accounts`` industry, company_size (employee bands) and country."""
    out = pd.DataFrame({"lead_id": leads["lead_id"].to_numpy(), "source": leads["source"]})
    title = leads["job_title"] if "job_title" in leads else pd.Series(None, index=leads.index)
    out["seniority"] = normalize_titles(title)["title_seniority"].to_numpy()
    if accounts is not None:
        firm = leads[["account_id"]].merge(
            accounts[["account_id", "industry", "employee_count", "country"]],
            on="account_id",
            how="left",
        )
        out["industry"] = firm["industry"].to_numpy()
        bounds = [b for b, _ in SIZE_BANDS]
        band = np.searchsorted(bounds, firm["employee_count"].to_numpy(dtype=float), side="right")
        labels = np.asarray([label for _, label in SIZE_BANDS] + ["unknown"], dtype=object)
        band = np.where(firm["employee_count"].isna(), len(SIZE_BANDS), band)
        out["company_size"] = labels[band]
        out["country"] = firm["country"].to_numpy()
    return out.reset_index(drop=True)


def stalled_segments(
    stalls: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    dimensions: Sequence[str] = SEGMENTS,
    top: int = 5,
    min_open: int = 20,
) -> pd.DataFrame:
    """The largest stalled segments: per stage, dimension and value, the open leads, the
    stalled ones, their share and how it compares with the stage as a whole (``vs_stage``:
    the segment's stalled share over the stage's), ``excess`` (stalled leads beyond what the
    stage's share predicts for a segment of its size) and the median days stalled. Segments
    with fewer than ``min_open`` open leads are left out; per stage, the ``top`` with the
    largest excess (a big segment that merely stalls as often as the rest is not a finding),
    stages in funnel order."""
    columns = ["stage", "dimension", "segment", "open", "stalled", "stalled_share", "vs_stage",
               "excess", "median_days"]  # fmt: skip
    dims = [d for d in dimensions if d in segments.columns]
    joined = stalls.merge(segments[["lead_id", *dims]], on="lead_id", how="left")
    stage_share = joined.groupby("stage")["stalled"].mean()
    parts = []
    for dim in dims:
        grouped = joined.groupby(["stage", joined[dim].fillna("unknown")], sort=False)
        agg = grouped.agg(
            open=("stalled", "size"),
            stalled=("stalled", "sum"),
        ).reset_index()
        days = joined.loc[joined["stalled"]].groupby(["stage", joined[dim].fillna("unknown")])
        median = days["days"].median().rename("median_days").reset_index()
        agg = agg.merge(median, on=["stage", dim], how="left")
        parts.append(agg.rename(columns={dim: "segment"}).assign(dimension=dim))
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out = out.loc[out["open"] >= min_open].copy()
    out["stalled"] = out["stalled"].astype(np.int64)
    out["stalled_share"] = out["stalled"] / out["open"]
    expected = out["stage"].map(stage_share).to_numpy(dtype=float)
    out["vs_stage"] = out["stalled_share"] / np.where(expected > 0, expected, np.nan)
    out["excess"] = out["stalled"] - out["open"] * expected
    out = out.sort_values(["excess", "stalled"], ascending=False, kind="stable")
    out = out.groupby("stage", sort=False).head(top)
    order = out["stage"].map({s: i for i, s in enumerate(STAGES)})
    out = out.iloc[np.argsort(order.to_numpy(), kind="stable")]
    return out.reset_index(drop=True)[columns]


# --------------------------------------------------------------------------- the report
def touchpoint_sections(
    odds: pd.DataFrame,
    readouts: pd.DataFrame,
    summary: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    horizon_days: float,
    per_step: int = 8,
) -> list[str]:
    """The report's sections: touchpoints per step (a forest plot and a table), drop-off
    points (stalls per stage and the largest stalled segments)."""
    shown = odds.groupby("step", sort=False).head(per_step)
    table = pd.DataFrame(
        {
            "step": shown["step"].str.replace(" -> ", " → "),
            "kind": shown["kind"],
            "touchpoint": shown["touchpoint"] + np.where(shown["defines_stage"], " *", ""),
            "exposed": shown["exposed"],
            "moved on rate (exposed)": shown["rate_exposed"],
            "moved on rate (not exposed)": shown["rate_unexposed"],
            "odds ratio": shown["odds_ratio"],
            "95% interval": [
                f"{fmt(lo, '{:.2f}')} – {fmt(hi, '{:.2f}')}"
                for lo, hi in zip(shown["low"], shown["high"], strict=True)
            ],
            "evidence": shown["evidence"],
        }
    )
    parts = [html_figure(_forest_plot(shown))] if len(shown) else []
    parts.append(html_table(table) if len(table) else "<p>No touchpoints to compare.</p>")
    if len(readouts):
        parts.append(
            html_table(
                pd.DataFrame(
                    {
                        "comparison": readouts["comparison"],
                        "metric": readouts["metric"],
                        "relative lift": [fmt(v, "{:+.1%}") for v in readouts["lift_rel"]],
                        "95% interval": [
                            f"{fmt(lo, '{:+.1%}')} – {fmt(hi, '{:+.1%}')}"
                            for lo, hi in zip(readouts["low"], readouts["high"], strict=True)
                        ],
                        "source": readouts["source"],
                        "evidence": readouts["evidence"],
                    }
                ),
                caption="Randomized experiment readouts (causal)",
            )
        )
    touch = html_section(
        "touchpoints",
        "Touchpoints associated with moving on",
        f"Per step, the leads who moved on within {horizon_days:.0f} days of reaching it, "
        "against those who did not, by what happened in the week before and the week after "
        "it got there (the same window for every lead): events, the lead's channel (against "
        "all other channels) and offers or campaigns shown (odds ratios with 95% "
        "Woolf intervals, largest first; at most "
        f"{per_step} per step). <b>These are correlations, not effects</b>: engaged leads do "
        "more of everything and move on more. A touchpoint marked * is read by the stage "
        "rules: moving on is doing it. Causal evidence comes only from the randomized "
        "readouts, listed after the table when there are some.",
        *parts,
    )
    seg = pd.DataFrame(
        {
            "stage": segments["stage"],
            "segment": segments["dimension"] + " = " + segments["segment"].astype(str),
            "open leads": segments["open"],
            "stalled": segments["stalled"],
            "stalled share": segments["stalled_share"],
            "× the stage's": [fmt(v, "{:.2f}") for v in segments["vs_stage"]],
            "excess stalled": segments["excess"],
            "median days stalled": segments["median_days"],
        }
    )
    stalls = html_section(
        "drop-off-points",
        "Drop-off points: where leads stall",
        "Leads short of the last stage, at the furthest stage they reached: a lead stalls "
        "there once it has waited longer than 90% of the leads who moved on from that stage "
        "took (the threshold). Days are counted to the last snapshot; for leads already "
        "there at the first snapshot they are a lower bound (censored). The segment table "
        "lists, per stage, the groups (by channel, industry, seniority, company size, "
        "country) with the most stalled leads beyond what the stage's share predicts for "
        "their size.",
        html_figure(_stall_plot(summary)),
        html_table(
            summary.rename(
                columns={
                    "open": "open leads",
                    "stalled_share": "stalled share",
                    "threshold_days": "threshold days",
                    "median_days": "median days stalled",
                    "p75_days": "p75 days stalled",
                    "censored": "stalled since the first snapshot",
                }
            )
        ),
        html_table(seg, caption="Largest stalled segments")
        if len(seg)
        else "<p>No segment is large enough to show.</p>",
    )
    return [touch, stalls]


_KIND_COLORS = {"event": "#4292c6", "channel": "#fd8d3c", "offer": "#41ab5d"}


def _forest_plot(shown: pd.DataFrame) -> Figure:
    rows = shown.iloc[::-1].reset_index(drop=True)
    fig, ax = new_figure(8.0, max(3.0, 0.28 * len(rows) + 1.2))
    y = np.arange(len(rows))
    for kind, color in _KIND_COLORS.items():
        mask = (rows["kind"] == kind).to_numpy()
        if not mask.any():
            continue
        ratio = rows["odds_ratio"].to_numpy(dtype=float)[mask]
        err = [
            ratio - rows["low"].to_numpy(float)[mask],
            rows["high"].to_numpy(float)[mask] - ratio,
        ]
        ax.errorbar(ratio, y[mask], xerr=err, fmt="o", color=color, label=kind, capsize=2,
                    ms=4)  # fmt: skip
    ax.axvline(1.0, color="#888", lw=1, ls="--")
    ax.set_xscale("log")
    labels = [
        f"{s.replace(' -> ', ' → ')}:  {t}{' *' if d else ''}"
        for s, t, d in zip(rows["step"], rows["touchpoint"], rows["defines_stage"], strict=True)
    ]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("odds ratio of moving on (log scale; 95% interval) — correlation")
    ax.set_title("Touchpoints and moving on, per step")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _stall_plot(summary: pd.DataFrame) -> Figure:
    fig, ax = new_figure(7.0, 3.5)
    x = np.arange(len(summary))
    ax.bar(x, summary["open"], color="#c6dbef", label="open leads")
    ax.bar(x, summary["stalled"], color="#fd8d3c", label="stalled")
    for xi, row in zip(x, summary.itertuples(), strict=True):
        ax.text(xi, row.stalled, f"median {fmt(row.median_days, '{:.0f}')} d",
                ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set_xticks(x, list(summary["stage"]))
    ax.set_ylabel("leads at their furthest stage")
    ax.set_title("Where leads stall")
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------ as text
def format_touchpoints(odds: pd.DataFrame, *, per_step: int = 3, defining: bool = False) -> str:
    """The strongest touchpoints per step as lines of text: odds ratio [95% interval], those
    the stage rules read left out unless ``defining``."""
    lines = [
        (
            "touchpoints (correlation, not effect): odds ratio of moving on [95% interval], "
            "surest first (by the interval's low end); * every exposed lead moved on"
        )
    ]
    shown = odds if defining else odds.loc[~odds["defines_stage"].astype(bool)]
    for step in STEPS:
        part = shown.loc[shown["step"] == step].sort_values("low", ascending=False)
        items = "; ".join(
            f"{r.touchpoint} ({r.kind}) {r.odds_ratio:.2f} [{r.low:.2f}, {r.high:.2f}]"
            + ("*" if r.exposed_moved == r.exposed else "")
            for r in part.head(per_step).itertuples(index=False)
        )
        lines.append(f"  {step:<28} {items or 'none'}")
    return "\n".join(lines)


def format_stalls(summary: pd.DataFrame, segments: pd.DataFrame | None = None) -> str:
    """Stalls per stage (and the largest stalled segment of each) as lines of text."""
    lines = ["drop-off points (leads stalled at their furthest stage):"]
    for row in summary.itertuples(index=False):
        line = (
            f"  {row.stage:<14} {row.stalled:,} of {row.open:,} open leads stalled "
            f"({fmt(row.stalled_share, '{:.0%}')}), median {fmt(row.median_days, '{:.0f}')} "
            f"days (threshold {fmt(row.threshold_days, '{:.0f}')})"
        )
        if segments is not None and len(segments):
            top = segments.loc[segments["stage"] == row.stage].head(1)
            for seg in top.itertuples(index=False):
                line += (
                    f"; most over-stalled: {seg.dimension}={seg.segment} {seg.stalled:,} "
                    f"of {seg.open:,} ({fmt(seg.stalled_share, '{:.0%}')})"
                )
        lines.append(line)
    return "\n".join(lines)

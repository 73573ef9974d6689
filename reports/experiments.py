"""The experiment readouts (``funnel report experiments``): every randomized comparison the
system runs, read out the same way, in HTML, JSON and a few lines for the terminal.

Three kinds of experiment come from the stores, and a fourth from any flat A/B table:

- ``offer``: each offer arm of ``offer_exposures`` against the ``control`` arm, on conversion
  within the outcome window (``training.nbo.outcome_window_days``). An offer goes only to units
  eligible for it (their stage at the exposure), while control goes to anyone, so the control
  arm is cut to the units eligible for the offer, by their stage at the latest weekly snapshot
  before the exposure (``stage_history``; a customer's stage is retention, as the default stage
  rules say). Within those units the design gives the offer and control the same chance, so
  the sample ratio check expects half and half. Without feature tables the cut cannot be made
  and the comparison says so.
- ``campaign``: each campaign wave (``campaign_assignments`` in the jobs' state store, given by
  the caller) as run against its random holdout, on the conversions recorded in
  ``offer_exposures``; the holdout share the design expects is the campaign's ``holdout``.
- ``promotion``: leads promoted to sales against those held out (``jobs.promotion.holdout``),
  on an opportunity created within the MQL label window after the decision, and on the pipeline
  amount of those opportunities.
- ``table``: a flat table with an arm column and outcome columns (``table_comparisons``).

Outcomes whose window has not ended by the data's end (the manifest's, else now) are not read:
a comparison with none yet says "outcomes pending until <date>" instead of printing a zero lift.
The pre-period covariate of CUPED is the lead's event count over the 30 days before the
exposure (``events_30d`` of the lead_behavior feature table at the latest snapshot before it).

Each comparison is a flat dict (the JSON layout, see ``compare``); the statistics are in
``reports.experiment_stats``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.audiences import read_audiences
from core.config import Config
from core.errors import InputError, MissingInputError
from core.offers import CONTROL, Offers, load_offers
from core.tables import read_manifest, read_table, table_path
from reports.experiment_stats import (
    SEQUENTIAL_DESIGN_N,
    SRM_ALERT_P,
    difference_in_means,
    metric_type,
    minimum_detectable_effect,
    power,
    sequential_interval,
    srm_test,
)
from reports.funnel_report import stage_history
from reports.html import (
    generated_at,
    html_figure,
    html_page,
    html_section,
    html_table,
    new_figure,
    write_atomic,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ALPHA = 0.05
MIN_LIFT_REL = 0.10  # the relative lift whose power each readout reports
COVARIATE = "events_30d"
DAY_S = 86_400.0
PROMOTED, HELD_OUT = "promoted", "held_out"
PROMOTION_STEP = "decision"  # an MQL's opportunity is the decision stage


@dataclass
class ExperimentsReport:
    html: Path
    json: Path
    comparisons: list[dict[str, Any]]


# ------------------------------------------------------------------------- one comparison
def compare(
    y_treatment: np.ndarray,
    y_control: np.ndarray,
    *,
    experiment: str,
    kind: str,
    metric: str,
    treatment: str,
    control: str,
    step: str | None = None,
    x_treatment: np.ndarray | None = None,
    x_control: np.ndarray | None = None,
    covariate: str | None = None,
    expected_share: float | None = None,
    repeat_share: float | None = None,
    note: str = "",
    alpha: float = ALPHA,
    design_n: float = SEQUENTIAL_DESIGN_N,
    min_lift_rel: float = MIN_LIFT_REL,
) -> dict[str, Any]:
    """One treatment-vs-control readout as a flat dict (the JSON layout):

    name, experiment, kind, step (funnel stage or None), metric, metric_type (binary, count,
    revenue), treatment, control, status ("ok"), note, n_treatment, n_control, mean_treatment,
    mean_control (as observed), lift_abs (CUPED-adjusted when cuped is not None), lift_abs_low,
    lift_abs_high, lift_rel, lift_rel_low, lift_rel_high, p_value, significant;
    srm {expected_share, observed_share, p_value, alert} or None when the design's share is
    unknown; repeat_share (units exposed more than once); power (to find a ``min_lift_rel``
    relative lift), power_for_lift_rel, mde_abs, mde_rel (at 80% power); sequential {lift_abs_low,
    lift_abs_high, lift_rel_low, lift_rel_high, p_value, design_n}; cuped {covariate, theta,
    variance_reduction} or None.
    """
    yt, yc = np.asarray(y_treatment, dtype=float), np.asarray(y_control, dtype=float)
    out = _header(experiment, kind, metric, treatment, control, step, len(yt), len(yc))
    out["metric_type"] = metric_type(np.concatenate([yt, yc]))
    out["note"] = note
    if len(yt) < 2 or len(yc) < 2:
        return {
            **out,
            "status": "too_small",
            "note": _join(note, "fewer than 2 units in an arm: nothing to read yet"),
        }
    use_x = x_treatment is not None and x_control is not None
    lift = difference_in_means(
        yt,
        yc,
        alpha,
        x_treatment=x_treatment if use_x else None,
        x_control=x_control if use_x else None,
    )
    srm = None
    if expected_share is not None and 0 < expected_share < 1:
        check = srm_test([len(yt), len(yc)], [expected_share, 1 - expected_share])
        srm = {
            "expected_share": expected_share,
            "observed_share": len(yt) / (len(yt) + len(yc)),
            "p_value": check.p_value,
            "alert": check.alert,
        }
    n = len(yt) + len(yc)
    seq_low, seq_high, seq_p = sequential_interval(lift.diff, lift.se, n, alpha, design_n)
    widen = (lift.diff - float(seq_low)) / lift.se if lift.se > 0 else 0.0
    mde = minimum_detectable_effect(lift.se, alpha)
    base = lift.mean_control
    out.update(
        status="ok",
        mean_treatment=float(yt.mean()),
        mean_control=float(yc.mean()),
        lift_abs=lift.diff,
        lift_abs_low=lift.diff_low,
        lift_abs_high=lift.diff_high,
        lift_rel=_num(lift.rel),
        lift_rel_low=_num(lift.rel_low),
        lift_rel_high=_num(lift.rel_high),
        p_value=lift.p_value,
        significant=bool(lift.p_value < alpha),
        srm=srm,
        repeat_share=repeat_share,
        power=power(min_lift_rel * base, lift.se, alpha) if base > 0 else None,
        power_for_lift_rel=min_lift_rel,
        mde_abs=mde,
        mde_rel=mde / base if base > 0 else None,
        sequential={
            "lift_abs_low": float(seq_low),
            "lift_abs_high": float(seq_high),
            "lift_rel_low": _num(lift.rel - widen * lift.rel_se),
            "lift_rel_high": _num(lift.rel + widen * lift.rel_se),
            "p_value": float(seq_p),
            "design_n": design_n,
        },
        cuped=None
        if not use_x
        else {
            "covariate": covariate,
            "theta": lift.theta,
            "variance_reduction": lift.variance_reduction,
        },
    )
    if srm is not None and srm["alert"]:
        out["note"] = _join(out["note"], "sample ratio mismatch: do not trust this readout")
    return out


def pending(
    *,
    experiment: str,
    kind: str,
    metric: str,
    treatment: str,
    control: str,
    step: str | None,
    n_treatment: int,
    n_control: int,
    until: pd.Timestamp | None,
    status: str = "pending",
    note: str = "",
) -> dict[str, Any]:
    """A comparison with no outcome to read yet (``status`` pending or no_holdout)."""
    out = _header(experiment, kind, metric, treatment, control, step, n_treatment, n_control)
    out["status"] = status
    out["pending_until"] = None if until is None else until.isoformat()
    out["note"] = note or (f"outcomes pending until {until:%Y-%m-%d}" if until is not None else "")
    return out


def _header(
    experiment: str,
    kind: str,
    metric: str,
    treatment: str,
    control: str,
    step: str | None,
    n_t: int,
    n_c: int,
) -> dict[str, Any]:
    fields = (
        "mean_treatment",
        "mean_control",
        "lift_abs",
        "lift_abs_low",
        "lift_abs_high",
        "lift_rel",
        "lift_rel_low",
        "lift_rel_high",
        "p_value",
        "significant",
        "srm",
        "repeat_share",
        "power",
        "power_for_lift_rel",
        "mde_abs",
        "mde_rel",
        "sequential",
        "cuped",
        "pending_until",
    )
    return {
        "name": f"{experiment}: {treatment} vs {control}",
        "experiment": experiment,
        "kind": kind,
        "step": step,
        "metric": metric,
        "metric_type": None,
        "treatment": treatment,
        "control": control,
        "status": "",
        "note": "",
        "n_treatment": int(n_t),
        "n_control": int(n_c),
        **dict.fromkeys(fields),
    }


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def repeat_share(subjects: Sequence[str] | np.ndarray) -> float | None:
    """Share of the distinct subjects that appear more than once (exposed more than once)."""
    counts = pd.Series(np.asarray(subjects, dtype=object)).value_counts()
    return float((counts > 1).mean()) if len(counts) else None


# --------------------------------------------------------------------------- the inputs
def _seconds(values: Any) -> np.ndarray:
    """Timestamps (any unit, naive = UTC) as epoch seconds; NaT as NaN."""
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=float)


def _stamp(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def _asof(table: pd.DataFrame, column: str, ids: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """``table[column]`` (table: lead_id, t in epoch seconds) at the latest t <= each time, per
    lead; NaN/None where the lead has no row before it."""
    left = pd.DataFrame(
        {"lead_id": np.asarray(ids, dtype=str), "t": seconds, "row": np.arange(len(ids))}
    ).sort_values("t")
    right = table[["lead_id", "t", column]].sort_values("t")
    merged = pd.merge_asof(left, right, on="t", by="lead_id", direction="backward")
    return merged.sort_values("row")[column].to_numpy()


def data_horizon(cfg: Config, now: float) -> float:
    """Until when the raw tables know outcomes (epoch seconds): the manifest's end, else now;
    never later than now."""
    try:
        end = _seconds([read_manifest(cfg.raw_dir)["end"]])[0]
    except (MissingInputError, KeyError):
        return now
    return float(min(end, now))


def covariate_table(cfg: Config) -> pd.DataFrame | None:
    """lead_id, t (the snapshot, epoch seconds), events_30d from the lead_behavior feature
    table; None when it is not there (no CUPED then)."""
    path = cfg.features_dir / "lead_behavior.parquet"
    if not path.is_file():
        return None
    if COVARIATE not in pq.read_schema(path).names:
        return None
    frame = pd.read_parquet(path, columns=["lead_id", "event_timestamp", COVARIATE])
    return pd.DataFrame(
        {
            "lead_id": frame["lead_id"].astype(str),
            "t": _seconds(frame["event_timestamp"]),
            COVARIATE: frame[COVARIATE].to_numpy(dtype=float),
        }
    )


def stage_table(cfg: Config) -> pd.DataFrame | None:
    """lead_id, t (epoch seconds), stage at every weekly snapshot; None without feature
    tables."""
    try:
        history = stage_history(cfg)
    except (MissingInputError, InputError):
        return None
    return pd.DataFrame(
        {
            "lead_id": history["lead_id"].astype(str),
            "t": _seconds(history["snapshot"]),
            "stage": history["stage"],
        }
    )


def _covariate(
    table: pd.DataFrame | None, ids: np.ndarray, seconds: np.ndarray
) -> np.ndarray | None:
    if table is None or not len(ids):
        return None
    values = _asof(table, COVARIATE, ids, seconds).astype(float)
    return np.nan_to_num(values, nan=0.0)  # a lead with no snapshot yet had no events


# ----------------------------------------------------------------------------- the offers
def offer_comparisons(
    exposures: pd.DataFrame,
    offers: Offers,
    *,
    window_days: int,
    as_of: float,
    stages: np.ndarray | None = None,
    covariate: np.ndarray | None = None,
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """Each offer arm of ``offer_exposures`` against control, on conversion within
    ``window_days``. ``stages``: each exposure's stage (for the control arm's eligibility
    cut), ``covariate``: each exposure's pre-period covariate (CUPED); both row-aligned."""
    if exposures.empty:
        return []
    start = _seconds(exposures["exposed_at"])
    converted = _seconds(exposures["converted_at"])
    window = window_days * DAY_S
    y = ((converted > start) & (converted - start <= window)).astype(float)
    complete = start + window <= as_of
    arm = exposures["offer_id"].astype(str).to_numpy()
    subject = exposures["subject_id"].astype(str).to_numpy()
    metric = f"converted_{window_days}d"
    out = []
    for offer in sorted(set(arm) - {CONTROL}):
        declared = offer in offers.ids
        control = arm == CONTROL
        note = ""
        if stages is not None and declared:
            rule = offers.get(offer).eligible
            ok = np.isin(stages, rule.stages)
            if rule.customers is not None:
                ok &= (stages == "retention") == rule.customers
            control &= ok
        else:
            note = "control not cut to the units eligible for the offer (no stages known)"
        step = None
        if declared and len(offers.get(offer).eligible.stages) == 1:
            step = offers.get(offer).eligible.stages[0]
        treated = arm == offer
        t_rows, c_rows = treated & complete, control & complete
        if not t_rows.any() or not c_rows.any():
            last = start[treated | control].max()
            out.append(
                pending(
                    experiment="offers",
                    kind="offer",
                    metric=metric,
                    treatment=offer,
                    control=CONTROL,
                    step=step,
                    n_treatment=int(treated.sum()),
                    n_control=int(control.sum()),
                    until=_stamp(last + window),
                )
            )
            continue
        late = int((treated | control).sum() - (t_rows | c_rows).sum())
        if late:
            note = _join(note, f"{late} exposures still in their outcome window left out")
        x = covariate
        out.append(
            compare(
                y[t_rows],
                y[c_rows],
                experiment="offers",
                kind="offer",
                metric=metric,
                treatment=offer,
                control=CONTROL,
                step=step,
                x_treatment=None if x is None else x[t_rows],
                x_control=None if x is None else x[c_rows],
                covariate=COVARIATE,
                expected_share=0.5 if stages is not None and declared else None,
                repeat_share=repeat_share(subject[t_rows | c_rows]),
                note=note,
                alpha=alpha,
            )
        )
    return out


# -------------------------------------------------------------------------- the campaigns
def campaign_comparisons(
    assignments: pd.DataFrame,
    exposures: pd.DataFrame,
    *,
    window_days: int,
    as_of: float,
    holdouts: Mapping[str, float],
    steps: Mapping[str, str | None] | None = None,
    covariates: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """Each campaign wave as run (every member not held out, whatever arm the policy gave)
    against its holdout, on conversion within ``window_days`` as recorded in ``exposures``.
    ``assignments``: campaign, wave, subject_id, offer_id, holdout, assigned_at (epoch s);
    ``holdouts``: each campaign's design holdout share (for the sample ratio check)."""
    if assignments.empty:
        return []
    steps = steps or {}
    window = window_days * DAY_S
    key = ["subject_id", "offer_id", "t"]
    outcome = pd.DataFrame(
        {
            "subject_id": exposures["subject_id"].astype(str),
            "offer_id": exposures["offer_id"].astype(str),
            "t": np.round(_seconds(exposures["exposed_at"]), 3),
            "converted": _seconds(exposures["converted_at"]),
        }
    ).drop_duplicates(key)
    frame = assignments.assign(
        subject_id=assignments["subject_id"].astype(str),
        offer_id=assignments["offer_id"].astype(str),
        t=np.round(assignments["assigned_at"].astype(float), 3),
    ).merge(outcome, on=key, how="left")
    frame["y"] = (frame["converted"] > frame["t"]) & (frame["converted"] - frame["t"] <= window)
    out = []
    for (campaign, wave), rows in frame.groupby(["campaign", "wave"], sort=True):
        experiment = f"campaign {campaign} wave {wave}"
        held = rows["holdout"].to_numpy(dtype=bool)
        args = {
            "experiment": experiment,
            "kind": "campaign",
            "metric": f"converted_{window_days}d",
            "treatment": "campaign",
            "control": "holdout",
            "step": steps.get(campaign),
        }
        if not held.any():
            out.append(
                pending(
                    **args,
                    n_treatment=len(rows),
                    n_control=0,
                    until=None,
                    status="no_holdout",
                    note="no member was held out",
                )
            )
            continue
        t0 = float(rows["t"].max())
        if t0 + window > as_of:
            out.append(
                pending(
                    **args,
                    n_treatment=int((~held).sum()),
                    n_control=int(held.sum()),
                    until=_stamp(t0 + window),
                )
            )
            continue
        y = rows["y"].to_numpy(dtype=float)
        x = _covariate(covariates, rows["subject_id"].to_numpy(), rows["t"].to_numpy())
        note = "" if y.any() else "no conversion recorded yet (campaigns.record_conversions)"
        share = holdouts.get(str(campaign))
        out.append(
            compare(
                y[~held],
                y[held],
                **args,
                x_treatment=None if x is None else x[~held],
                x_control=None if x is None else x[held],
                covariate=COVARIATE,
                expected_share=None if share is None else 1 - share,
                repeat_share=repeat_share(rows["subject_id"]),
                note=note,
                alpha=alpha,
            )
        )
    return out


# -------------------------------------------------------------------------- the promotion
def promotion_comparisons(
    decisions: pd.DataFrame,
    opportunities: pd.DataFrame,
    *,
    window_days: int,
    as_of: float,
    holdout: float,
    covariates: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """Leads promoted to sales against leads held out, each at its first decision
    (``decisions``: lead_id, number, decided_at in epoch seconds, held_out), on an opportunity
    created within ``window_days`` after it, and on those opportunities' amount. ``holdout`` is
    the design's share (``jobs.promotion.holdout``)."""
    if decisions.empty:
        return []
    first = decisions.sort_values("number").drop_duplicates("lead_id").reset_index(drop=True)
    held = first["held_out"].to_numpy(dtype=bool)
    window = window_days * DAY_S
    metrics = (f"opportunity_{window_days}d", f"pipeline_amount_{window_days}d")
    base = {
        "experiment": "mql promotion",
        "kind": "promotion",
        "treatment": PROMOTED,
        "control": HELD_OUT,
        "step": PROMOTION_STEP,
    }
    if not held.any():
        note = (
            "no lead held out: set jobs.promotion.holdout (e.g. 0.1) to measure the pipeline "
            "promotion adds"
            if holdout == 0
            else "no lead held out yet"
        )
        return [
            pending(
                **base,
                metric=metrics[0],
                n_treatment=len(first),
                n_control=0,
                until=None,
                status="no_holdout",
                note=note,
            )
        ]
    decided = first["decided_at"].to_numpy(dtype=float)
    complete = decided + window <= as_of
    if not complete.any():
        until = _stamp(float(decided.min()) + window)
        return [
            pending(
                **base,
                metric=m,
                n_treatment=int((~held).sum()),
                n_control=int(held.sum()),
                until=until,
            )
            for m in metrics
        ]
    opp = pd.DataFrame(
        {
            "lead_id": opportunities["lead_id"].astype(str),
            "created": _seconds(opportunities["created_at"]),
            "amount": pd.to_numeric(opportunities["amount"], errors="coerce")
            .fillna(0.0)
            .to_numpy(),
        }
    )
    pairs = (
        first[["lead_id"]]
        .assign(row=np.arange(len(first)), decided=decided)
        .merge(opp, on="lead_id", how="inner")
    )
    inside = pairs[
        (pairs["created"] > pairs["decided"]) & (pairs["created"] <= pairs["decided"] + window)
    ]
    won = np.zeros(len(first))
    won[inside["row"].unique()] = 1.0
    amount = inside.groupby("row")["amount"].sum().reindex(range(len(first)), fill_value=0.0)
    x = _covariate(covariates, first["lead_id"].to_numpy(), decided)
    t_rows, c_rows = ~held & complete, held & complete
    late = int((~complete).sum())
    note = f"{late} decisions still in their outcome window left out" if late else ""
    out = []
    for metric, y in zip(metrics, (won, amount.to_numpy(dtype=float)), strict=True):
        out.append(
            compare(
                y[t_rows],
                y[c_rows],
                **base,
                metric=metric,
                x_treatment=None if x is None else x[t_rows],
                x_control=None if x is None else x[c_rows],
                covariate=COVARIATE,
                expected_share=1 - holdout if 0 < holdout < 1 else None,
                repeat_share=0.0,
                note=note,
                alpha=alpha,
            )
        )
    return out


# ---------------------------------------------------------------------- a flat A/B table
def read_flat_table(path: Path) -> pd.DataFrame:
    """A CSV or parquet file as a frame; a clear error when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"experiment table not found: {path}")
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"experiment table {path} cannot be read: {exc}") from exc


def table_comparisons(
    frame: pd.DataFrame,
    arm: str,
    control: str,
    outcomes: Sequence[str],
    *,
    covariate: str | None = None,
    shares: Mapping[str, float] | None = None,
    name: str = "table",
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """Every arm of column ``arm`` against the ``control`` arm, on each outcome column.
    ``shares``: the design's share per arm (default: equal), for the sample ratio check;
    ``covariate``: a pre-period column for CUPED."""
    if not outcomes:
        raise InputError(f"{name}: name at least one outcome column (--outcome)")
    wanted = [arm, *outcomes, *([covariate] if covariate else [])]
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        raise InputError(f"{name}: no column(s) {missing}; the table has {list(frame.columns)}")
    arms = frame[arm].astype(str)
    if arms.isna().any() or frame[arm].isna().any():
        raise InputError(f"{name}: column '{arm}' has missing arm values")
    present = sorted(arms.unique())
    if control not in present:
        raise InputError(f"{name}: control arm '{control}' not in column '{arm}' (arms: {present})")
    if len(present) < 2:
        raise InputError(f"{name}: column '{arm}' has only the control arm '{control}'")
    values = {
        c: _numeric(frame[c], c, name)
        for c in dict.fromkeys([*outcomes, *([covariate] if covariate else [])])
    }
    shares = dict(shares) if shares else dict.fromkeys(present, 1.0)
    unknown = sorted(set(shares) - set(present))
    if unknown:
        raise InputError(f"{name}: shares name arm(s) {unknown} not in column '{arm}'")
    arm_values = arms.to_numpy()
    c_rows = arm_values == control
    out = []
    for treatment in [a for a in present if a != control]:
        t_rows = arm_values == treatment
        share = None
        if treatment in shares and control in shares:
            share = shares[treatment] / (shares[treatment] + shares[control])
        for outcome in outcomes:
            y = values[outcome]
            x = values[covariate] if covariate else None
            out.append(
                compare(
                    y[t_rows],
                    y[c_rows],
                    experiment=name,
                    kind="table",
                    metric=outcome,
                    treatment=treatment,
                    control=control,
                    x_treatment=None if x is None else x[t_rows],
                    x_control=None if x is None else x[c_rows],
                    covariate=covariate,
                    expected_share=share,
                    alpha=alpha,
                )
            )
    return out


def _numeric(column: pd.Series, name: str, table: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        column = column.astype(float)
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        examples = column[bad].astype(str).unique()[:3].tolist()
        raise InputError(f"{table}: column '{name}' must be numeric; it holds {examples}")
    if values.isna().any():
        rows = values.index[values.isna()][:5].tolist()
        raise InputError(f"{table}: column '{name}' has missing values (rows {rows})")
    return values.to_numpy(dtype=float)


# ---------------------------------------------------------------------- from the stores
def experiments_readout(
    cfg: Config,
    *,
    campaigns: pd.DataFrame | None = None,
    promotions: pd.DataFrame | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Every comparison the stores hold: offers (``offer_exposures``), campaign waves
    (``campaigns``: the state store's campaign_assignments rows) and the promotion holdout
    (``promotions``: ``activation.lead_promotion.promotion_decisions``)."""
    now = pd.Timestamp.now(tz="UTC").timestamp() if now is None else now
    as_of = data_horizon(cfg, now)
    has_exposures = table_path(cfg.raw_dir, "offer_exposures") is not None
    campaigns = campaigns if campaigns is not None else pd.DataFrame()
    promotions = promotions if promotions is not None else pd.DataFrame()
    if not has_exposures and campaigns.empty and promotions.empty:
        raise MissingInputError(
            f"no experiment to read in {cfg.raw_dir} (no offer_exposures table, no campaign "
            "wave, no promotion); run `funnel data generate`, or read a flat table with --table"
        )
    covariates = covariate_table(cfg)
    exposures = read_table(cfg.raw_dir, "offer_exposures") if has_exposures else None
    out: list[dict[str, Any]] = []
    window = cfg.training.nbo.outcome_window_days
    if exposures is not None and len(exposures):
        offers = load_offers(cfg)
        stages = stage_table(cfg)
        ids = exposures["subject_id"].astype(str).to_numpy()
        seconds = _seconds(exposures["exposed_at"])
        at = None
        if stages is not None:
            at = _asof(stages, "stage", ids, seconds)
            at = np.where(pd.isna(at), cfg.stages.default, at).astype(object)
        out += offer_comparisons(
            exposures,
            offers,
            window_days=window,
            as_of=as_of,
            stages=at,
            covariate=_covariate(covariates, ids, seconds),
        )
    if not campaigns.empty:
        spec = read_audiences(cfg, load_offers(cfg))
        holdouts = {n: c.holdout for n, c in spec.campaigns.items()}
        steps = {}
        for n, c in spec.campaigns.items():
            where = spec.audiences[c.audience].where.stages
            steps[n] = where[0] if where and len(where) == 1 else None
        empty = pd.DataFrame(columns=["subject_id", "offer_id", "exposed_at", "converted_at"])
        out += campaign_comparisons(
            campaigns,
            exposures if exposures is not None else empty,
            window_days=window,
            as_of=as_of,
            holdouts=holdouts,
            steps=steps,
            covariates=covariates,
        )
    if not promotions.empty:
        opportunities = read_table(cfg.raw_dir, "opportunities")
        out += promotion_comparisons(
            promotions,
            opportunities,
            window_days=cfg.training.mql.label_window_days,
            as_of=as_of,
            holdout=cfg.jobs.promotion.holdout,
            covariates=covariates,
        )
    return out


def write_experiments_report(
    cfg: Config,
    *,
    campaigns: pd.DataFrame | None = None,
    promotions: pd.DataFrame | None = None,
    out_path: Path | None = None,
    now: float | None = None,
) -> ExperimentsReport:
    """Read out every experiment of the stores (``experiments_readout``) and write the HTML
    (default ``<data_dir>/reports/experiments.html``) and the JSON beside it."""
    comparisons = experiments_readout(cfg, campaigns=campaigns, promotions=promotions, now=now)
    path = Path(out_path) if out_path else cfg.data_dir / "reports" / "experiments.html"
    return _write(path, comparisons, "Experiments", f"Data in {cfg.data_dir}")


def write_table_report(
    cfg: Config,
    table: Path,
    arm: str,
    control: str,
    outcomes: Sequence[str],
    *,
    covariate: str | None = None,
    shares: Mapping[str, float] | None = None,
    out_path: Path | None = None,
) -> ExperimentsReport:
    """Read out a flat A/B table (``table_comparisons``) and write the HTML (default
    ``<data_dir>/reports/experiments-<table name>.html``) and the JSON beside it."""
    table = Path(table)
    frame = read_flat_table(table)
    comparisons = table_comparisons(
        frame, arm, control, outcomes, covariate=covariate, shares=shares, name=table.stem
    )
    path = (
        Path(out_path) if out_path else cfg.data_dir / "reports" / f"experiments-{table.stem}.html"
    )
    return _write(path, comparisons, f"Experiment: {table.name}", f"Arms in column '{arm}'")


def readout_json(comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document: the settings every comparison was read with, and the comparisons."""
    return {
        "generated_at": generated_at(),
        "alpha": ALPHA,
        "srm_alert_p": SRM_ALERT_P,
        "sequential_design_n": SEQUENTIAL_DESIGN_N,
        "min_lift_rel": MIN_LIFT_REL,
        "comparisons": comparisons,
    }


def _write(
    path: Path, comparisons: list[dict[str, Any]], title: str, subtitle: str
) -> ExperimentsReport:
    json_path = path.with_suffix(".json")
    write_atomic(json_path, json.dumps(readout_json(comparisons), indent=2, allow_nan=False) + "\n")
    write_atomic(path, render_experiments(comparisons, title, subtitle))
    return ExperimentsReport(path, json_path, comparisons)


# -------------------------------------------------------------------------------- output
def _pct(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _mean(c: dict[str, Any], key: str) -> str:
    value = c.get(key)
    if value is None:
        return "–"
    return f"{value:.2%}" if c["metric_type"] == "binary" else f"{value:,.3f}"


def _interval(low: float | None, high: float | None) -> str:
    return "–" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


def format_readout(comparisons: list[dict[str, Any]]) -> str:
    """A few lines for the terminal: one per comparison."""
    if not comparisons:
        return "  no experiment to read out"
    lines = []
    for c in comparisons:
        head = f"  {c['name']} [{c['metric']}]"
        if c["status"] != "ok":
            lines.append(f"{head}: {c['note'] or c['status']}")
            continue
        srm = c["srm"]
        srm_text = "" if srm is None else (" SRM ALERT" if srm["alert"] else " srm ok")
        lines.append(
            f"{head}: n {c['n_treatment']:,}/{c['n_control']:,}, "
            f"{_mean(c, 'mean_treatment')} vs {_mean(c, 'mean_control')}, "
            f"lift {_pct(c['lift_rel'])} {_interval(c['lift_rel_low'], c['lift_rel_high'])}, "
            f"p={c['p_value']:.3g}{srm_text}"
        )
    return "\n".join(lines)


def render_experiments(comparisons: list[dict[str, Any]], title: str, subtitle: str) -> str:
    """The report's HTML page."""
    read = [c for c in comparisons if c["status"] == "ok"]
    waiting = [c for c in comparisons if c["status"] != "ok"]
    sections = [
        html_section(
            "readout",
            "Readout",
            "Treatment against control on each outcome. Lift is the difference of the means "
            "(absolute) and treatment / control - 1 (relative), with 95% intervals (Welch; the "
            "relative one by the delta method); means are CUPED-adjusted where a pre-period "
            "covariate exists. A p-value below 0.05 is called significant for a single look.",
            html_table(_readout_view(read)) if read else "<p>No comparison has outcomes yet.</p>",
            html_figure(_forest_plot(read)) if read else "",
        )
    ]
    if read:
        sections.append(
            html_section(
                "checks",
                "Sample ratio and exposure",
                f"The sample ratio mismatch (SRM) check compares the arms' sizes with the shares the "
                f"design expects (chi-square); an alert (p &lt; {SRM_ALERT_P}) means the assignment or "
                "the logging is broken and the readout cannot be trusted. Repeat share: units exposed "
                "more than once, which the intervals treat as independent.",
                html_table(_checks_view(read)),
            )
        )
        sections.append(
            html_section(
                "sequential",
                "Read every day",
                "Always-valid 95% intervals and p-values (a normal-mixture confidence sequence, "
                f"tightest at {SEQUENTIAL_DESIGN_N:,} units): they may be read every day and a "
                "decision taken on the first day the interval excludes zero, with at most a 5% "
                "chance of a false positive over all the looks. Power is the chance to find a "
                f"{MIN_LIFT_REL:.0%} relative lift at the current sample; the minimum detectable "
                "effect is found 80% of the time.",
                html_table(_sequential_view(read)),
            )
        )
    if waiting:
        sections.append(
            html_section(
                "pending",
                "Waiting for outcomes",
                "Comparisons that cannot be read yet, and why.",
                html_table(
                    pd.DataFrame(
                        {
                            "comparison": [c["name"] for c in waiting],
                            "metric": [c["metric"] for c in waiting],
                            "treatment units": [c["n_treatment"] for c in waiting],
                            "control units": [c["n_control"] for c in waiting],
                            "why": [c["note"] or c["status"] for c in waiting],
                        }
                    )
                ),
            )
        )
    return html_page(title, f"{subtitle}. Generated {generated_at()}", sections)


def _readout_view(read: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "comparison": [c["name"] for c in read],
            "metric": [c["metric"] for c in read],
            "n treatment": [c["n_treatment"] for c in read],
            "n control": [c["n_control"] for c in read],
            "treatment": [_mean(c, "mean_treatment") for c in read],
            "control": [_mean(c, "mean_control") for c in read],
            "lift (abs)": [
                f"{c['lift_abs']:+.4g} [{c['lift_abs_low']:+.4g}, {c['lift_abs_high']:+.4g}]"
                for c in read
            ],
            "lift (rel)": [
                f"{_pct(c['lift_rel'])} {_interval(c['lift_rel_low'], c['lift_rel_high'])}"
                for c in read
            ],
            "p-value": [f"{c['p_value']:.3g}" for c in read],
            "note": [c["note"] for c in read],
        }
    )


def _checks_view(read: list[dict[str, Any]]) -> pd.DataFrame:
    """The sample ratio and exposure table (columns named "share" print as percentages)."""

    def srm(c: dict[str, Any], key: str) -> Any:
        s = c["srm"]
        if key == "alert":
            return "unknown design" if s is None else ("ALERT" if s["alert"] else "ok")
        if key == "p_value":
            return "–" if s is None else f"{s[key]:.3g}"
        return None if s is None else s[key]

    return pd.DataFrame(
        {
            "comparison": [c["name"] for c in read],
            "metric": [c["metric"] for c in read],
            "expected treatment share": [srm(c, "expected_share") for c in read],
            "observed treatment share": [srm(c, "observed_share") for c in read],
            "SRM p-value": [srm(c, "p_value") for c in read],
            "SRM": [srm(c, "alert") for c in read],
            "repeat share": [c["repeat_share"] for c in read],
            "CUPED variance share removed": [
                c["cuped"]["variance_reduction"] if c["cuped"] else None for c in read
            ],
        }
    )


def _sequential_view(read: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "comparison": [c["name"] for c in read],
            "metric": [c["metric"] for c in read],
            "always-valid lift (rel)": [
                _interval(c["sequential"]["lift_rel_low"], c["sequential"]["lift_rel_high"])
                for c in read
            ],
            "always-valid p": [f"{c['sequential']['p_value']:.3g}" for c in read],
            "power": [_pct(c["power"], signed=False) for c in read],
            "MDE (rel)": [_pct(c["mde_rel"], signed=False) for c in read],
        }
    )


def _forest_plot(read: list[dict[str, Any]]) -> Figure:
    shown = [c for c in read if c["lift_rel"] is not None]
    fig, ax = new_figure(8, 0.45 * len(shown) + 1.2)
    for i, c in enumerate(reversed(shown)):
        color = "#d62728" if c["srm"] and c["srm"]["alert"] else "#1f77b4"
        ax.plot([c["lift_rel_low"], c["lift_rel_high"]], [i, i], color=color, lw=2)
        ax.plot([c["lift_rel"]], [i], "o", color=color)
    ax.axvline(0, color="#888", lw=1)
    ax.set_yticks(range(len(shown)), [f"{c['name']} [{c['metric']}]" for c in reversed(shown)])
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:+.0%}")
    ax.set_xlabel("relative lift with its 95% interval")
    return fig

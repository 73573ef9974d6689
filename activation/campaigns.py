"""``funnel jobs sync-campaigns``: give each eligible audience member an offer from the
next-best-offer policy, with a randomized holdout, log every assignment with its propensity to
``offer_exposures``, and send the offers to the campaign destination.

A wave (default: the UTC date) is assigned once: the draws are fixed by campaign, wave and lead,
assignments are stored with ``INSERT ... ON CONFLICT DO NOTHING``, and each offer's message
goes through the outbox in the same transaction. Rerunning a wave sends only what was not yet
acknowledged and assigns only members that were not there before.

The exposures close the loop: once their outcomes are known (``record_conversions``), the next
``funnel train nbo`` learns from them, weighting each by its logged propensity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa

from activation.audience_sync import AudienceInputs, audience_inputs, member_identity
from activation.destinations import open_destination
from activation.outbox import DeliveryReport, deliver, enqueue
from activation.state import campaign_assignments, insert_ignore, leased_run
from core.audiences import (
    AudiencesFile,
    assign_offers,
    audience_mask,
    best_offers,
    chosen_names,
    inputs_needed,
    read_audiences,
    uniforms,
)
from core.errors import InputError
from core.offers import CONTROL, load_offers
from core.stages import parse_condition
from core.tables import read_table, table_path, write_tables

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from core.config import Config
    from core.offers import Offers

JOB = "sync-campaigns"


@dataclass
class CampaignReport:
    campaign: str
    wave: str
    members: int = 0  # in the audience
    eligible: int = 0  # with at least one offer they may get
    assigned: int = 0  # new assignments this run
    holdout: int = 0
    by_arm: dict[str, int] = field(default_factory=dict)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)


@dataclass
class CampaignsReport:
    campaigns: list[CampaignReport] = field(default_factory=list)
    exposures_written: int = 0


def default_wave(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def assign_campaign(
    engine: Engine, cfg: Config, spec: AudiencesFile, offers: Offers, name: str,
    inputs: AudienceInputs, *, wave: str, now: float,
) -> CampaignReport:  # fmt: skip
    """Assign one campaign's wave and enqueue its offers (one transaction)."""
    camp = spec.campaigns[name]
    frame, nbo, uplift = inputs.frame, inputs.nbo, inputs.uplift
    if nbo is None or uplift is None:
        raise ValueError("campaign assignment needs the next-best-offer model's uplift")
    report = CampaignReport(name, wave)
    in_audience = audience_mask(spec.audiences[camp.audience].where, frame)
    report.members = int(in_audience.sum())
    wanted = camp.offers or offers.ids
    served = [o for o in nbo.offers if o in wanted and o in offers.ids]
    if not served:
        raise InputError(
            f"campaign '{name}': none of its offers {wanted} is one the next-best-offer model "
            f"{nbo.version} was trained on ({nbo.offers})"
        )
    eligible = offers.eligible(frame["stage"], frame["is_customer"])
    mask = eligible[:, [offers.ids.index(o) for o in served]]
    rows = np.flatnonzero(in_audience & mask.any(axis=1))
    report.eligible = len(rows)
    if not len(rows):
        return report
    cols = [nbo.offers.index(o) for o in served]
    values = np.array([offers.get(o).value for o in served])
    costs = np.array([offers.get(o).cost for o in served])
    greedy = best_offers(uplift[rows][:, cols], served, values, costs, mask[rows],
                         nbo.served_policy, nbo.meta.control)  # fmt: skip
    members = frame.iloc[rows]
    ids = members["lead_id"].astype(str).tolist()
    assignment = assign_offers(greedy, mask[rows], served, camp.holdout,
                               cfg.serving.exploration_epsilon, uniforms(name, wave, ids))  # fmt: skip
    dest_cfg = cfg.jobs.destinations[camp.destination]
    identity = member_identity(members, dest_cfg.hash_emails).to_dict("records")
    records = [
        {"campaign": name, "wave": wave, "subject_id": i, "offer_id": str(arm),
         "propensity": float(p), "holdout": bool(h), "assigned_at": now, "exported": False}
        for i, arm, p, h in zip(ids, assignment.arm, assignment.propensity, assignment.holdout,
                                strict=True)
    ]  # fmt: skip
    with engine.begin() as conn:
        c = campaign_assignments.c
        known = set(conn.execute(
            sa.select(c.subject_id).where(c.campaign == name, c.wave == wave)
        ).scalars())  # fmt: skip
        new = [k for k, r in enumerate(records) if r["subject_id"] not in known]
        insert_ignore(conn, campaign_assignments, [records[k] for k in new])
        messages = [
            {**identity[k], "idempotency_key": f"campaign:{name}:{wave}:{records[k]['subject_id']}",
             "event": "campaign_offer", "campaign": name, "wave": wave,
             "offer_id": records[k]["offer_id"], "propensity": records[k]["propensity"],
             "model_version": nbo.version}
            for k in new if records[k]["offer_id"] != CONTROL
        ]  # fmt: skip
        enqueue(conn, camp.destination, messages, now)
    report.assigned = len(new)
    report.holdout = int(sum(records[k]["holdout"] for k in new))
    arms = pd.Series([records[k]["offer_id"] for k in new], dtype=object)
    report.by_arm = {str(k): int(v) for k, v in arms.value_counts().sort_index().items()}
    return report


def export_exposures(cfg: Config, engine: Engine) -> int:
    """Append the assignments not yet in ``offer_exposures`` to it (an atomic rewrite), then
    mark them exported. A crash between the two is harmless: rows already in the file (same
    subject, offer and time) are not added again."""
    c = campaign_assignments.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.campaign, c.wave, c.subject_id, c.offer_id, c.propensity, c.assigned_at)
            .where(c.exported.is_(False))
        ).mappings().all()  # fmt: skip
    if not rows:
        return 0
    new = pd.DataFrame({
        "subject_id": [r["subject_id"] for r in rows],
        "offer_id": [r["offer_id"] for r in rows],
        "exposed_at": pd.to_datetime([r["assigned_at"] for r in rows], unit="s", utc=True),
        "propensity": [r["propensity"] for r in rows],
        "converted_at": pd.Series(pd.NaT, index=range(len(rows)), dtype="datetime64[ns, UTC]"),
    })  # fmt: skip
    path = table_path(cfg.raw_dir, "offer_exposures")
    old = read_table(cfg.raw_dir, "offer_exposures") if path is not None else new.iloc[:0]
    new["exposed_at"] = new["exposed_at"].astype(old["exposed_at"].dtype)
    new["converted_at"] = new["converted_at"].astype(old["converted_at"].dtype)
    key = ["subject_id", "offer_id", "exposed_at"]
    seen = old[key].merge(new[key], on=key, how="inner")
    fresh = new.merge(seen.assign(_seen=True), on=key, how="left")
    fresh = fresh[fresh["_seen"].isna()].drop(columns="_seen")
    fmt = "csv" if path is not None and path.suffix == ".csv" else "parquet"
    if len(fresh):
        write_tables({"offer_exposures": pd.concat([old, fresh], ignore_index=True)},
                     cfg.raw_dir, fmt=fmt)  # fmt: skip
    with engine.begin() as conn:
        for r in rows:
            conn.execute(
                sa.update(campaign_assignments)
                .where(c.campaign == r["campaign"], c.wave == r["wave"],
                       c.subject_id == r["subject_id"])
                .values(exported=True)
            )  # fmt: skip
    return len(fresh)


def record_conversions(
    cfg: Config, conversions: pd.DataFrame, window_days: int | None = None
) -> int:
    """Fill ``converted_at`` of exposures from a conversions feed (subject_id, converted_at):
    each conversion goes to the subject's latest exposure before it whose outcome window
    (``training.nbo.outcome_window_days``) it falls in and that has none yet. Returns how many
    exposures got an outcome."""
    missing = [c for c in ("subject_id", "converted_at") if c not in conversions.columns]
    if missing:
        raise ValueError(f"conversions: missing column(s) {missing}")
    window = pd.Timedelta(days=window_days or cfg.training.nbo.outcome_window_days)
    ex = read_table(cfg.raw_dir, "offer_exposures")
    conv = conversions.assign(
        converted_at=pd.to_datetime(conversions["converted_at"], utc=True).astype(
            ex["exposed_at"].dtype
        )
    ).sort_values("converted_at")
    open_ = ex[ex["converted_at"].isna()].reset_index().sort_values("exposed_at")
    match = pd.merge_asof(
        conv, open_[["index", "subject_id", "exposed_at"]], left_on="converted_at",
        right_on="exposed_at", by="subject_id", direction="backward", allow_exact_matches=False,
    )  # fmt: skip
    match = match[match["index"].notna() & (match["converted_at"] - match["exposed_at"] <= window)]
    match = match.drop_duplicates("index")  # one outcome per exposure: the first conversion
    ex.loc[match["index"].astype(int).to_numpy(), "converted_at"] = match["converted_at"].to_numpy()
    path = table_path(cfg.raw_dir, "offer_exposures")
    write_tables({"offer_exposures": ex}, cfg.raw_dir,
                 fmt="csv" if path is not None and path.suffix == ".csv" else "parquet")  # fmt: skip
    return len(match)


def sync_campaigns(
    cfg: Config, names: Sequence[str] = (), *, wave: str | None = None, progress: bool = True,
    clock: Callable[[], float] = time.time, send: bool = True,
) -> CampaignsReport:  # fmt: skip
    """The ``funnel jobs sync-campaigns`` job: every campaign (or those named)."""
    offers = load_offers(cfg)
    spec = read_audiences(cfg, offers)
    chosen = chosen_names(names, spec.campaigns, "campaign", spec.source)
    wheres = [spec.audiences[spec.campaigns[n].audience].where for n in chosen]
    needed = {"best_offer", "stage"}.union(*(inputs_needed(w) for w in wheres))
    features = [parse_condition(e)[0] for w in wheres for e in w.events]
    report = CampaignsReport()
    with leased_run(cfg.state_store_url, JOB, cfg.jobs.lease_seconds, clock=clock) as job:
        now = clock()
        wave = wave or default_wave(now)
        inputs = audience_inputs(cfg, needed, features, progress=progress)
        for name in chosen:
            report.campaigns.append(
                assign_campaign(job.engine, cfg, spec, offers, name, inputs, wave=wave, now=now)
            )
        report.exposures_written = export_exposures(cfg, job.engine)
        if send:
            for dest_name in dict.fromkeys(spec.campaigns[n].destination for n in chosen):
                with closing(open_destination(cfg, dest_name)) as destination:
                    delivery = deliver(job.engine, destination, cfg.jobs.retry, lease=job.lease,
                                       clock=clock, progress=progress)  # fmt: skip
                for camp in report.campaigns:
                    if spec.campaigns[camp.campaign].destination == dest_name:
                        camp.delivery = delivery
        job.run.summary = {"campaigns": [c.campaign for c in report.campaigns], "wave": wave,
                           "exposures_written": report.exposures_written}  # fmt: skip
    return report

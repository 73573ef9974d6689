"""``funnel jobs sync-audiences``: compute each audience from the newest online features and the
champion models, and send each destination only what changed since its last successful sync.

Per audience: the adds and removes against the membership stored at the last successful sync
are sent in chunks (each with an idempotency key made of the audience, the sync version and the
chunk's content); only when every chunk was acknowledged is the new membership committed. A
failed send leaves the stored membership as it was, so the next run sends the same diff again
(with the same keys, which the destination recognises).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa

from activation.destinations import (
    PermanentError,
    TransientError,
    hash_email,
    open_destination,
)
from activation.outbox import send_with_retry
from activation.state import audience_members, audience_syncs, leased_run, upsert
from core.audiences import (
    Audience,
    audience_mask,
    best_offers,
    chosen_names,
    diff_members,
    inputs_needed,
    read_audiences,
)
from core.offers import load_offers
from core.stages import assign_stages, features_needed, parse_condition
from core.tables import read_table
from features.store import feature_store
from serving.schemas import LeadScoreRequest
from serving.scorer import LeadFeatureReader, newest_timestamps
from training.registry import load_model, load_nbo_model

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from core.config import Config
    from core.offers import Offers
    from training.nbo_model import NboModel

JOB = "sync-audiences"
CHUNK = 1000


# -- the inputs: one row per lead ----------------------------------------------------------------
@dataclass
class AudienceInputs:
    """Per lead: id, email, account, every feature of the next-best-offer service, and the
    derived columns stage, mql_score, churn_tier, best_offer (those asked for)."""

    frame: pd.DataFrame
    nbo: NboModel | None = None
    uplift: np.ndarray | None = None  # (n, len(nbo.offers)) when the NBO model was used
    as_of: float = 0.0  # newest feature event time (epoch s)


def _online_frame(cfg: Config, needed: Sequence[str], progress: bool) -> tuple[pd.DataFrame, float]:
    from tqdm import tqdm

    store = feature_store(cfg)
    service = cfg.training.nbo.feature_service
    reader = LeadFeatureReader(store, service, needed, f"the audience rules ({service})")
    leads = read_table(cfg.raw_dir, "leads")
    email = dict(zip(leads["lead_id"].astype(str), leads["email"].astype(str), strict=True))
    ids = list(email)
    parts, newest = [], 0.0
    size = cfg.jobs.promotion.batch_size
    for start in tqdm(range(0, len(ids), size), desc="reading features", unit="batch",
                      disable=None if progress else True):  # fmt: skip
        requests = [LeadScoreRequest(lead_id=i) for i in ids[start : start + size]]
        data, _ = reader.features(requests)
        if not data:
            continue
        if stamps := newest_timestamps(data):
            newest = max(newest, float(max(stamps)))
        parts.append(pd.DataFrame({k: v for k, v in data.items() if not k.endswith("__ts")}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"lead_id": []})
    frame["email"] = frame["lead_id"].map(email)
    return frame, newest


def audience_inputs(
    cfg: Config, needed: set[str], features: Sequence[str] = (), *, offers: Offers | None = None,
    progress: bool = True,
) -> AudienceInputs:  # fmt: skip
    """Read every lead's features once (the NBO service serves all of them) and derive the
    columns ``needed`` from the champions: the MQL score, the account's churn tier, the
    policy's best offer."""
    alias = cfg.serving.model_alias
    nbo = load_nbo_model(cfg, alias) if "best_offer" in needed else None
    mql = churn = None
    if "mql_score" in needed:
        mql = load_model(cfg, cfg.training.mql.registered_model, alias, "mql")
    if "churn_tier" in needed:
        churn = load_model(cfg, cfg.training.churn.registered_model, alias, "churn")
    wanted = [*features_needed(cfg.stages), "is_customer", *features]
    for model in (nbo, mql, churn):
        if model is not None:
            wanted += model.feature_names
    frame, as_of = _online_frame(cfg, list(dict.fromkeys(wanted)), progress)
    out = AudienceInputs(frame, nbo=nbo, as_of=as_of)
    frame["stage"] = assign_stages(cfg.stages, frame) if len(frame) else []
    if mql is not None:
        frame["mql_score"] = np.rint(100 * mql.predict_proba(frame)) if len(frame) else []
    if churn is not None:
        customer = frame["is_customer"].to_numpy(dtype=float) >= 1
        tier = np.full(len(frame), None, dtype=object)
        if customer.any():
            p = churn.predict_proba(frame[customer])
            tier[customer] = [churn.tier(float(x)) for x in p]
        frame["churn_tier"] = tier
    if nbo is not None:
        offers = offers or load_offers(cfg)
        out.uplift = nbo.uplift(frame) if len(frame) else np.zeros((0, len(nbo.offers)))
        served = [o for o in nbo.offers if o in offers.ids]
        cols = [nbo.offers.index(o) for o in served]
        eligible = offers.eligible(frame["stage"], frame["is_customer"])
        mask = eligible[:, [offers.ids.index(o) for o in served]]
        values = np.array([offers.get(o).value for o in served])
        costs = np.array([offers.get(o).cost for o in served])
        frame["best_offer"] = best_offers(
            out.uplift[:, cols], served, values, costs, mask, nbo.served_policy, nbo.meta.control
        )
    return out


def member_identity(frame: pd.DataFrame, hashed: bool) -> pd.DataFrame:
    """What a destination gets per member: the lead id, and the email or its SHA-256."""
    out = pd.DataFrame({"lead_id": frame["lead_id"].astype(str).astype(object)})
    if hashed:
        out["email_sha256"] = [
            hash_email(e) if isinstance(e, str) else None for e in frame["email"]
        ]
    else:
        out["email"] = frame["email"]
    return out


# -- the sync ------------------------------------------------------------------------------------
@dataclass
class AudienceReport:
    audience: str
    destination: str
    members: int = 0
    adds: int = 0
    removes: int = 0
    version: int = 0
    error: str | None = None


@dataclass
class SyncReport:
    audiences: list[AudienceReport] = field(default_factory=list)

    @property
    def failed(self) -> list[AudienceReport]:
        return [a for a in self.audiences if a.error]


def _stored(engine: Engine, audience: str, destination: str) -> tuple[set[str], int]:
    m, s = audience_members.c, audience_syncs.c
    with engine.connect() as conn:
        members = conn.execute(
            sa.select(m.member_id).where(m.audience == audience, m.destination == destination)
        ).scalars()
        version = conn.execute(
            sa.select(s.version).where(s.audience == audience, s.destination == destination)
        ).scalar()
        return set(members), int(version or 0)


def chunk_key(audience: str, version: int, op: str, ids: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return f"audience:{audience}:v{version}:{op}:{digest}"


def sync_one(
    engine: Engine, cfg: Config, name: str, spec: Audience, members: pd.DataFrame, *,
    everyone: pd.DataFrame | None = None, clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> AudienceReport:  # fmt: skip
    """Send one audience's adds and removes; commit the new membership only if all were taken.
    ``everyone`` (lead_id, email of every known lead) identifies the removed members too, so an
    ad platform can match a removal by its hashed email."""
    report = AudienceReport(name, spec.destination, members=len(members))
    previous, version = _stored(engine, name, spec.destination)
    ids = members["lead_id"].astype(str)
    adds, removes = diff_members(previous, ids)
    report.adds, report.removes, report.version = len(adds), len(removes), version
    if not adds and not removes:
        return report
    dest_cfg = cfg.jobs.destinations[spec.destination]
    identity = member_identity(members, dest_cfg.hash_emails).set_index("lead_id", drop=False)
    # a removed member is identified like an added one when it is still a known lead, else by
    # its id alone
    known = everyone if everyone is not None else members
    gone = pd.DataFrame({"lead_id": pd.Series(removes, dtype=object)}).merge(
        member_identity(known[known["lead_id"].astype(str).isin(removes)], dest_cfg.hash_emails),
        on="lead_id", how="left",
    )  # fmt: skip
    rng = rng or random.Random()
    destination = open_destination(cfg, spec.destination)
    try:
        for op, rows in (("add", identity.loc[adds]), ("remove", gone)):
            for start in range(0, len(rows), CHUNK):
                part = rows.iloc[start : start + CHUNK]
                records = part.astype(object).where(part.notna(), None).to_dict("records")
                message = {
                    "idempotency_key": chunk_key(name, version + 1, op, part["lead_id"].tolist()),
                    "event": "audience_update", "audience": name, "op": op,
                    "members": records,
                }  # fmt: skip
                send_with_retry(lambda m=message: destination.send(m), cfg.jobs.retry, rng=rng)
    except (TransientError, PermanentError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        return report  # nothing committed: the stored membership is as before
    finally:
        destination.close()
    now = clock()
    m = audience_members.c
    with engine.begin() as conn:
        for start in range(0, len(removes), CHUNK):
            conn.execute(sa.delete(audience_members).where(
                m.audience == name, m.destination == spec.destination,
                m.member_id.in_(removes[start : start + CHUNK]),
            ))  # fmt: skip
        if adds:
            conn.execute(sa.insert(audience_members), [
                {"audience": name, "destination": spec.destination, "member_id": i,
                 "synced_at": now} for i in adds
            ])  # fmt: skip
        upsert(conn, audience_syncs, [{
            "audience": name, "destination": spec.destination, "version": version + 1,
            "members": len(ids), "synced_at": now,
        }])  # fmt: skip
    report.version = version + 1
    return report


def sync_audiences(
    cfg: Config, names: Sequence[str] = (), *, progress: bool = True,
    clock: Callable[[], float] = time.time,
) -> SyncReport:  # fmt: skip
    """The ``funnel jobs sync-audiences`` job: every audience (or those named)."""
    spec = read_audiences(cfg, load_offers(cfg))
    chosen = chosen_names(names, spec.audiences, "audience", spec.source)
    needed = set().union(*(inputs_needed(spec.audiences[n].where) for n in chosen))
    features = [parse_condition(e)[0] for n in chosen for e in spec.audiences[n].where.events]
    report = SyncReport()
    with leased_run(cfg.state_store_url, JOB, cfg.jobs.lease_seconds, clock=clock) as job:
        inputs = audience_inputs(cfg, needed, features, progress=progress)
        for name in chosen:
            job.lease.renew()
            members = inputs.frame[audience_mask(spec.audiences[name].where, inputs.frame)]
            report.audiences.append(
                sync_one(
                    job.engine,
                    cfg,
                    name,
                    spec.audiences[name],
                    members,
                    everyone=inputs.frame,
                    clock=clock,
                )
            )
        job.run.summary = {"audiences": [a.__dict__ for a in report.audiences]}
    return report

"""MQL auto-promotion: score the leads, promote each one that crosses the threshold to sales,
exactly once, within the daily capacity.

The decision is a pure function (``decide``); ``run_promotion`` wires it to the feature store,
the champion model, the state store and the destination:

1. take the ``promote`` lease (a second process started at the same time stops here);
2. score the leads whose features changed since the last run (all with ``all_leads``);
3. in ONE transaction: store the new scores, decide, log each promotion and put its message in
   the outbox;
4. send the outbox (this run's promotions and whatever an earlier run left unsent).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from activation.destinations import hash_email, open_destination
from activation.outbox import DeliveryReport, deliver, enqueue
from activation.state import (
    JobRun,
    Lease,
    lead_state,
    open_engine,
    promotions,
    state_store_errors,
    upsert,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from core.config import Config, PromotionConfig

JOB = "promote"
REARM_RATIO = 0.75
SCORE_COLUMNS = ("lead_id", "probability")


@dataclass(frozen=True)
class Thresholds:
    promote: float
    rearm: float


def resolve_thresholds(cfg: PromotionConfig, model_threshold: float | None) -> Thresholds:
    """The config's thresholds, else the model's own threshold and 0.75 of it."""
    promote = cfg.threshold if cfg.threshold is not None else model_threshold
    if promote is None:
        raise ValueError(
            "jobs.promotion.threshold is not set and the scores carry no model threshold; "
            "set it (a probability, e.g. --set jobs.promotion.threshold=0.3)"
        )
    rearm = cfg.rearm_threshold if cfg.rearm_threshold is not None else REARM_RATIO * promote
    if rearm >= promote:
        raise ValueError(
            f"jobs.promotion.rearm_threshold ({rearm}) must be below the promotion threshold "
            f"({promote})"
        )
    return Thresholds(float(promote), float(rearm))


def decide(state: pd.DataFrame, thresholds: Thresholds, capacity: int) -> pd.DataFrame:
    """Who is promoted now. ``state`` has lead_id, probability, armed, promotions.

    A promoted lead is disarmed; it re-arms once its probability falls below ``rearm``
    (hysteresis: a score hovering at the threshold promotes once). Armed leads at or above
    ``promote`` are candidates; the ``capacity`` best (highest probability, then lead id) are
    promoted, the others wait. Returns the state with ``armed`` and ``promotions`` updated and
    the booleans ``promote`` and ``waiting``.
    """
    out = state.copy()
    p = out["probability"].to_numpy(dtype=float)
    armed = out["armed"].to_numpy(dtype=bool) | (p < thresholds.rearm)
    candidate = armed & (p >= thresholds.promote)
    order = np.lexsort((out["lead_id"].to_numpy(dtype=str), -p))  # last key sorts first
    ranked = order[candidate[order]]
    promote = np.zeros(len(out), dtype=bool)
    promote[ranked[: max(capacity, 0)]] = True
    out["armed"] = armed & ~promote
    out["promotions"] = out["promotions"].to_numpy(dtype=int) + promote
    out["promote"] = promote
    out["waiting"] = candidate & ~promote
    return out


def idempotency_key(lead_id: str, number: int) -> str:
    """The same lead's n-th promotion has the same key in every run and on every retry."""
    return f"mql-promotion:{lead_id}:{number}"


@dataclass
class PromotionReport:
    scored: int = 0
    changed: int = 0
    promoted: int = 0
    waiting: int = 0
    cap_left: int = 0
    thresholds: Thresholds | None = None
    model_version: str = ""
    delivery: DeliveryReport = field(default_factory=DeliveryReport)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("delivery", "thresholds")}
        if self.thresholds:
            d["threshold"], d["rearm_threshold"] = self.thresholds.promote, self.thresholds.rearm
        d["delivery"] = self.delivery.as_dict()
        return d


# -- scores --------------------------------------------------------------------------------------
def fingerprint(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 16-hex-digit hash of each row's values in ``columns`` (what "changed" compares)."""
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return np.char.mod("%016x", hashed.astype(np.uint64))


Explain = Callable[[list[str]], dict[str, list[str]]]


def score_online(cfg: Config, *, progress: bool = True) -> tuple[pd.DataFrame, float, Explain]:
    """Every lead's champion MQL probability from the Feast online store (lead_id, account_id,
    probability, fingerprint of the features, features_as_of, model_version), the model's
    threshold, and ``explain(lead_ids)`` giving their reason texts (computed for the few leads
    promoted, not for all)."""
    from tqdm import tqdm

    from app.pipeline import feature_store
    from core.tables import read_table
    from serving.schemas import LeadScoreRequest
    from serving.scorer import LeadScorer, _newest_timestamps, online_reads
    from training.registry import load_model

    model = load_model(cfg, cfg.training.mql.registered_model, cfg.serving.model_alias, "mql")
    scorer = LeadScorer(feature_store(cfg), model, reads=online_reads(cfg))
    ids = read_table(cfg.raw_dir, "leads")["lead_id"].astype(str).tolist()
    size = cfg.jobs.promotion.batch_size
    parts, features = [], []
    batches = range(0, len(ids), size)
    for start in tqdm(batches, desc="scoring leads", unit="batch", disable=not progress):
        requests = [LeadScoreRequest(lead_id=i) for i in ids[start : start + size]]
        data, _ = scorer.features(requests)
        if not data:
            continue
        frame = pd.DataFrame({n: data[n] for n in model.feature_names}, index=data["lead_id"])
        features.append(frame)
        parts.append(
            pd.DataFrame(
                {
                    "lead_id": data["lead_id"],
                    "account_id": data["account_id"],
                    "probability": model.predict_proba(frame),
                    "reasons": None,
                    "fingerprint": fingerprint(frame, model.feature_names),
                    "features_as_of": np.asarray(_newest_timestamps(data), dtype=float),
                }
            )
        )
    scores = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCORE_COLUMNS)
    scores["model_version"] = model.version
    scores["feature_service"] = model.feature_service
    table = pd.concat(features) if features else pd.DataFrame(columns=model.feature_names)

    def explain(lead_ids: list[str]) -> dict[str, list[str]]:
        if not lead_ids:
            return {}
        _, reasons = model.predict_explain(table.loc[lead_ids], top_k=3)
        return {i: [r.text for r in rs] for i, rs in zip(lead_ids, reasons, strict=True)}

    return scores, float(model.threshold), explain


def read_scores(path: Path) -> pd.DataFrame:
    """Scores computed elsewhere (a batch-scoring job): a parquet or CSV file with lead_id and
    probability, optionally account_id, reasons, model_version. Rejects what it cannot use."""
    if not path.is_file():
        raise FileNotFoundError(f"scores file not found: {path}")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"scores file {path}: missing column(s) {missing}")
    prob = pd.to_numeric(frame["probability"], errors="coerce")
    bad = frame.index[prob.isna() | (prob < 0) | (prob > 1)]
    if len(bad):
        raise ValueError(
            f"scores file {path}: probability must be a number in [0, 1]; "
            f"bad rows {list(bad[:5])}{' ...' if len(bad) > 5 else ''}"
        )
    dup = frame["lead_id"].duplicated()
    if dup.any():
        raise ValueError(
            f"scores file {path}: lead_id repeats: {frame.loc[dup, 'lead_id'][:5].tolist()}"
        )
    out = frame.assign(lead_id=frame["lead_id"].astype(str), probability=prob.astype(float))
    if "reasons" not in out:
        out["reasons"] = [[] for _ in range(len(out))]
    else:
        out["reasons"] = [
            list(r) if isinstance(r, list | np.ndarray) else ([] if pd.isna(r) else json.loads(r))
            for r in out["reasons"]
        ]
    out["model_version"] = out.get("model_version", pd.Series("external", index=out.index))
    out["model_version"] = out["model_version"].astype(str)
    out["feature_service"] = "external"
    out["features_as_of"] = np.nan
    out["fingerprint"] = fingerprint(out, ["probability", "model_version"])
    return out


# -- the job -------------------------------------------------------------------------------------
def _load_state(conn: Connection) -> pd.DataFrame:
    rows = conn.execute(sa.select(lead_state)).mappings().all()
    columns = [c.name for c in lead_state.columns]
    return pd.DataFrame([dict(r) for r in rows], columns=columns)


def _lead_directory(cfg: Config) -> pd.DataFrame:
    """Email and job title by lead id (for the sales message); empty when no leads table."""
    from core.tables import table_path

    path = table_path(cfg.raw_dir, "leads")
    if path is None:
        return pd.DataFrame(columns=["email", "job_title", "account_id"])
    from core.tables import read_table

    leads = read_table(cfg.raw_dir, "leads")
    return leads.set_index(leads["lead_id"].astype(str))[["email", "job_title", "account_id"]]


def _iso(ts: float | None) -> str | None:
    if ts is None or not np.isfinite(ts) or ts <= 0:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _message(
    row: Any,
    number: int,
    reasons: list[str],
    directory: pd.DataFrame,
    thresholds: Thresholds,
    now: float,
    hashed: bool,
) -> dict[str, Any]:
    lead = directory.loc[row.lead_id] if row.lead_id in directory.index else None
    email = None if lead is None else str(lead["email"])
    message = {
        "idempotency_key": idempotency_key(row.lead_id, number),
        "event": "mql_promotion",
        "lead_id": row.lead_id,
        "account_id": None if lead is None else str(lead["account_id"]),
        "job_title": None if lead is None else str(lead["job_title"]),
        "score": round(100 * float(row.probability)),
        "probability": round(float(row.probability), 6),
        "threshold": thresholds.promote,
        "reasons": reasons,
        "model_version": row.model_version,
        "features_as_of": _iso(row.features_as_of),
        "promotion_number": number,
        "promoted_at": _iso(now),
    }
    if hashed:
        message["email_sha256"] = hash_email(email) if email else None
    else:
        message["email"] = email
    return message


def commit_decisions(
    engine: sa.Engine,
    scores: pd.DataFrame,
    thresholds: Thresholds,
    cfg: Config,
    *,
    all_leads: bool,
    now: float,
    report: PromotionReport,
    explain: Explain | None = None,
) -> None:
    """Store the changed scores, decide, log promotions and enqueue their messages: one
    transaction, so a crash leaves either the old state or all of the new."""
    dest_cfg = cfg.jobs.destinations[cfg.jobs.promotion.destination]
    day = datetime.fromtimestamp(now, UTC).date().isoformat()
    directory = _lead_directory(cfg)
    with engine.begin() as conn:
        state = _load_state(conn).set_index("lead_id", drop=False)
        known = scores["lead_id"].isin(state.index)
        old_print = state["fingerprint"].reindex(scores["lead_id"]).to_numpy()
        changed = scores[~known.to_numpy() | (old_print != scores["fingerprint"].to_numpy())]
        if all_leads:
            changed = scores
        report.changed = len(changed)
        fresh = pd.DataFrame(
            {
                "lead_id": changed["lead_id"].to_numpy(),
                "probability": changed["probability"].to_numpy(dtype=float),
                "score": np.rint(100 * changed["probability"].to_numpy(dtype=float)).astype(int),
                "fingerprint": changed["fingerprint"].to_numpy(),
                "reasons": [
                    json.dumps(list(r)) if isinstance(r, list) else "[]" for r in changed["reasons"]
                ],
                "model_version": changed["model_version"].to_numpy(),
                "features_as_of": changed["features_as_of"].to_numpy(dtype=float),
            }
        )
        armed = dict(zip(state["lead_id"], state["armed"], strict=True))
        count = dict(zip(state["lead_id"], state["promotions"], strict=True))
        fresh["armed"] = [bool(armed.get(i, True)) for i in fresh["lead_id"]]
        fresh["promotions"] = [int(count.get(i, 0)) for i in fresh["lead_id"]]
        kept = state[~state.index.isin(fresh["lead_id"])].reset_index(drop=True)
        merged = pd.concat([kept, fresh], ignore_index=True) if len(kept) else fresh
        done_today = conn.execute(
            sa.select(sa.func.count()).select_from(promotions).where(promotions.c.day == day)
        ).scalar_one()
        report.cap_left = max(cfg.jobs.promotion.daily_cap - done_today, 0)
        decided = decide(merged, thresholds, report.cap_left)
        touched = decided["lead_id"].isin(fresh["lead_id"]) | (
            decided["armed"].to_numpy(bool) != merged["armed"].to_numpy(bool)
        )
        columns = [c.name for c in lead_state.columns if c.name != "updated_at"]
        rows = decided.loc[touched, columns].copy()
        rows["features_as_of"] = (
            rows["features_as_of"].astype(float).where(rows["features_as_of"].notna(), None)
        )
        rows["armed"] = rows["armed"].astype(bool)
        rows["updated_at"] = now
        upsert(conn, lead_state, rows.astype(object).where(rows.notna(), None).to_dict("records"))
        promoted = decided[decided["promote"]].sort_values("probability", ascending=False)
        fresh_reasons = explain(promoted["lead_id"].tolist()) if explain else {}
        messages = [
            _message(
                r,
                int(r.promotions),
                fresh_reasons.get(r.lead_id) or json.loads(r.reasons),
                directory,
                thresholds,
                now,
                dest_cfg.hash_emails,
            )
            for r in promoted.itertuples()
        ]
        log = [
            {
                "idempotency_key": m["idempotency_key"],
                "lead_id": m["lead_id"],
                "number": m["promotion_number"],
                "probability": m["probability"],
                "model_version": m["model_version"],
                "decided_at": now,
                "day": day,
            }
            for m in messages
        ]
        if log:
            conn.execute(sa.insert(promotions), log)
        enqueue(conn, cfg.jobs.promotion.destination, messages, now)
        report.promoted = len(messages)
        report.waiting = int(decided["waiting"].sum())
        report.cap_left -= len(messages)


def run_promotion(
    cfg: Config,
    *,
    all_leads: bool = False,
    scores_file: Path | None = None,
    progress: bool = True,
    clock: Callable[[], float] = time.time,
    send: bool = True,
) -> PromotionReport:
    """The ``funnel jobs promote`` job (see the module docstring)."""
    # a bad scores file is rejected before anything is locked or written
    scores = read_scores(scores_file) if scores_file is not None else None
    engine = open_engine(cfg.state_store_url)
    report = PromotionReport()
    try:
        lease = Lease(engine, JOB, cfg.jobs.lease_seconds, clock=clock)
        with (
            state_store_errors(engine),  # the store lost mid-run: one clear error, rerun
            lease,
            JobRun(engine, JOB, lease.holder, clock=clock) as run,
        ):
            explain = model_threshold = None
            if scores is None:
                scores, model_threshold, explain = score_online(cfg, progress=progress)
            report.scored = len(scores)
            report.model_version = str(scores["model_version"].iloc[0]) if len(scores) else ""
            report.thresholds = resolve_thresholds(cfg.jobs.promotion, model_threshold)
            lease.renew(force=True)  # scoring may have taken a while
            commit_decisions(
                engine,
                scores,
                report.thresholds,
                cfg,
                all_leads=all_leads,
                now=clock(),
                report=report,
                explain=explain,
            )
            if send:
                destination = open_destination(cfg, cfg.jobs.promotion.destination)
                try:
                    report.delivery = deliver(
                        engine,
                        destination,
                        cfg.jobs.retry,
                        lease=lease,
                        clock=clock,
                        progress=progress,
                    )
                finally:
                    destination.close()
            run.summary = report.as_dict()
    finally:
        engine.dispose()
    return report

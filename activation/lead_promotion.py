"""MQL auto-promotion: score the leads, promote each one that crosses the threshold to sales,
exactly once, within the daily capacity.

The decision is a pure function (``decide``); ``run_promotion`` wires it to the feature store,
the champion model, the state store and the destination:

1. take the ``promote`` lease (a second process started at the same time stops here);
2. score the leads whose features changed since the last run (all with ``all_leads``);
3. in ONE transaction: store the new scores, decide, log each promotion and put its message in
   the outbox;
4. send the outbox (this run's promotions and whatever an earlier run left unsent).

The holdout (``jobs.promotion.holdout``): a lead whose hash (``holdout_draw``) falls below the
share is held back from sales whenever it would be promoted. It is logged in ``promotions``
like a promotion, under a ``mql-holdout:`` key, and never sent; it takes none of the day's
capacity. The same lead is held out in every run, so reruns and retries agree, and
``funnel report experiments`` compares the opportunities of promoted and held-out leads.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from activation.destinations import hash_email, open_destination
from activation.outbox import DeliveryReport, deliver, enqueue
from activation.state import lead_state, leased_run, promotions, upsert
from core.errors import InputError, MissingInputError
from core.tables import read_table, table_path
from features.store import feature_store
from serving.schemas import LeadScoreRequest
from serving.scorer import LeadScorer, newest_timestamps, online_reads
from training.registry import load_model
from training.scoring import mql_threshold

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from core.config import Config, PromotionConfig

JOB = "promote"
REARM_RATIO = 0.75
HOLDOUT_SALT = "mql-promotion-holdout"
HOLDOUT_PREFIX = "mql-holdout:"
SCORE_COLUMNS = ("lead_id", "probability")


@dataclass(frozen=True)
class Thresholds:
    promote: float
    rearm: float


def resolve_thresholds(cfg: PromotionConfig, model_threshold: float | None) -> Thresholds:
    """The MQL threshold in force (``mql_threshold``: the config's, else the model's own) and
    the config's re-arm threshold, else 0.75 of it."""
    promote = mql_threshold(model_threshold, cfg.threshold)
    rearm = cfg.rearm_threshold if cfg.rearm_threshold is not None else REARM_RATIO * promote
    if rearm >= promote:
        raise InputError(
            f"jobs.promotion.rearm_threshold ({rearm}) must be below the promotion threshold "
            f"({promote})"
        )
    return Thresholds(float(promote), float(rearm))


def decide(
    state: pd.DataFrame, thresholds: Thresholds, capacity: int, holdout: np.ndarray | None = None
) -> pd.DataFrame:
    """Who is promoted now. ``state`` has lead_id, probability, armed, promotions.

    A promoted lead is disarmed; it re-arms once its probability falls below ``rearm``
    (hysteresis: a score hovering at the threshold promotes once). Armed leads at or above
    ``promote`` are candidates; a candidate marked in ``holdout`` (one boolean per row) is held
    out: decided like a promotion but not sent, and taking no capacity. Of the other candidates
    the ``capacity`` best (highest probability, then lead id) are promoted, the others wait.
    Returns the state with ``armed`` and ``promotions`` updated and the booleans ``promote``,
    ``held_out`` and ``waiting``.
    """
    out = state.copy()
    p = out["probability"].to_numpy(dtype=float)
    armed = out["armed"].to_numpy(dtype=bool) | (p < thresholds.rearm)
    candidate = armed & (p >= thresholds.promote)
    held = candidate & (np.zeros(len(out), bool) if holdout is None else np.asarray(holdout, bool))
    order = np.lexsort((out["lead_id"].to_numpy(dtype=str), -p))  # last key sorts first
    ranked = order[(candidate & ~held)[order]]
    promote = np.zeros(len(out), dtype=bool)
    promote[ranked[: max(capacity, 0)]] = True
    out["armed"] = armed & ~promote & ~held
    out["promotions"] = out["promotions"].to_numpy(dtype=int) + (promote | held)
    out["promote"] = promote
    out["held_out"] = held
    out["waiting"] = candidate & ~promote & ~held
    return out


def holdout_draw(lead_ids: pd.Series | list[str], salt: str = HOLDOUT_SALT) -> np.ndarray:
    """A uniform draw in [0, 1) per lead, fixed by the lead id and ``salt`` (SHA-256): the lead
    is held out when its draw is below ``jobs.promotion.holdout``, in every run alike."""
    return np.array(
        [
            int(hashlib.sha256(f"{salt}:{lead}".encode()).hexdigest()[:15], 16) / 16**15
            for lead in lead_ids
        ],
        dtype=float,
    )


def idempotency_key(lead_id: str, number: int) -> str:
    """The same lead's n-th promotion has the same key in every run and on every retry."""
    return f"mql-promotion:{lead_id}:{number}"


def holdout_key(lead_id: str, number: int) -> str:
    """The decision-log key of a lead's n-th decision when it was held out (never sent)."""
    return f"{HOLDOUT_PREFIX}{lead_id}:{number}"


@dataclass
class PromotionReport:
    scored: int = 0
    changed: int = 0
    promoted: int = 0
    held_out: int = 0  # decided but held back from sales (the holdout)
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

    model = load_model(cfg, cfg.training.mql.registered_model, cfg.serving.model_alias, "mql")
    scorer = LeadScorer(feature_store(cfg), model, reads=online_reads(cfg))
    ids = read_table(cfg.raw_dir, "leads")["lead_id"].astype(str).tolist()
    size = cfg.jobs.promotion.batch_size
    parts, features = [], []
    batches = range(0, len(ids), size)
    for start in tqdm(
        batches, desc="scoring leads", unit="batch", disable=None if progress else True
    ):
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
                    "features_as_of": np.asarray(newest_timestamps(data), dtype=float),
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
        raise MissingInputError(f"scores file not found: {path}")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:  # pyarrow's and pandas' parse errors are ValueErrors
        raise InputError(f"scores file {path} cannot be read: {exc}") from exc
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"scores file {path}: missing column(s) {missing}")
    prob = pd.to_numeric(frame["probability"], errors="coerce")
    bad = frame.index[prob.isna() | (prob < 0) | (prob > 1)]
    if len(bad):
        raise InputError(
            f"scores file {path}: probability must be a number in [0, 1]; "
            f"bad rows {list(bad[:5])}{' ...' if len(bad) > 5 else ''}"
        )
    dup = frame["lead_id"].duplicated()
    if dup.any():
        raise InputError(
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


def _lead_directory(raw_dir: Path) -> pd.DataFrame:
    """Email and job title by lead id (for the sales message); empty when no leads table."""
    path = table_path(raw_dir, "leads")
    if path is None:
        return pd.DataFrame(columns=["email", "job_title", "account_id"])
    leads = read_table(raw_dir, "leads")
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


def changed_scores(scores: pd.DataFrame, state: pd.DataFrame, *, all_leads: bool) -> pd.DataFrame:
    """The scores of leads that are new or whose fingerprint differs from the stored one (all of
    them with ``all_leads``). ``state`` is the stored ``lead_state``, indexed by lead id."""
    if all_leads:
        return scores
    known = scores["lead_id"].isin(state.index)
    old_print = state["fingerprint"].reindex(scores["lead_id"]).to_numpy()
    return scores[~known.to_numpy() | (old_print != scores["fingerprint"].to_numpy())]


def merge_scores(state: pd.DataFrame, changed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored ``state`` with the ``changed`` scores in place of the leads' old rows, and
    those new rows. A lead keeps its armed flag and promotion count; a new lead is armed and
    has none."""
    probability = changed["probability"].to_numpy(dtype=float)
    fresh = pd.DataFrame(
        {
            "lead_id": changed["lead_id"].to_numpy(),
            "probability": probability,
            "score": np.rint(100 * probability).astype(int),
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
    return merged, fresh


def state_rows(
    decided: pd.DataFrame, merged: pd.DataFrame, fresh_ids: pd.Series, now: float
) -> list[dict[str, Any]]:
    """The ``lead_state`` rows to write after ``decide``: the leads scored afresh and every lead
    whose armed flag changed (``merged`` is the state ``decide`` was given)."""
    touched = decided["lead_id"].isin(fresh_ids) | (
        decided["armed"].to_numpy(bool) != merged["armed"].to_numpy(bool)
    )
    columns = [c.name for c in lead_state.columns if c.name != "updated_at"]
    rows = decided.loc[touched, columns].copy()
    rows["features_as_of"] = (
        rows["features_as_of"].astype(float).where(rows["features_as_of"].notna(), None)
    )
    rows["armed"] = rows["armed"].astype(bool)
    rows["updated_at"] = now
    return rows.astype(object).where(rows.notna(), None).to_dict("records")


def holdout_log(held: pd.DataFrame, now: float, day: str) -> list[dict[str, Any]]:
    """The ``promotions`` rows of the leads held out now (``decide``'s ``held_out`` rows)."""
    return [
        {
            "idempotency_key": holdout_key(r.lead_id, int(r.promotions)),
            "lead_id": r.lead_id,
            "number": int(r.promotions),
            "probability": round(float(r.probability), 6),
            "model_version": r.model_version,
            "decided_at": now,
            "day": day,
        }
        for r in held.itertuples()
    ]


def promotion_decisions(engine: sa.Engine) -> pd.DataFrame:
    """The decision log as the experiment readout needs it: lead_id, number (the lead's n-th
    decision), decided_at (epoch seconds), probability and held_out (held back from sales)."""
    c = promotions.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.idempotency_key, c.lead_id, c.number, c.decided_at, c.probability)
        ).all()
    frame = pd.DataFrame(
        rows, columns=["idempotency_key", "lead_id", "number", "decided_at", "probability"]
    )
    frame["held_out"] = frame["idempotency_key"].str.startswith(HOLDOUT_PREFIX).astype(bool)
    return frame.drop(columns="idempotency_key")


def promotion_log(messages: list[dict[str, Any]], now: float, day: str) -> list[dict[str, Any]]:
    """The ``promotions`` rows (the decision log) of the promotion ``messages``."""
    return [
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


def commit_decisions(
    engine: sa.Engine,
    scores: pd.DataFrame,
    thresholds: Thresholds,
    *,
    destination: str,
    daily_cap: int,
    hash_emails: bool,
    directory: pd.DataFrame,
    all_leads: bool,
    now: float,
    report: PromotionReport,
    explain: Explain | None = None,
    holdout: float = 0.0,
) -> None:
    """Store the changed scores, decide, log promotions and enqueue their messages for
    ``destination``: one transaction, so a crash leaves either the old state or all of the new.
    ``directory`` has the leads' email, job title and account (``_lead_directory``). Leads whose
    ``holdout_draw`` is below ``holdout`` are logged as held out and not sent."""
    day = datetime.fromtimestamp(now, UTC).date().isoformat()  # the daily cap's day
    with engine.begin() as conn:
        state = _load_state(conn).set_index("lead_id", drop=False)
        changed = changed_scores(scores, state, all_leads=all_leads)
        merged, fresh = merge_scores(state, changed)
        done_today = conn.execute(
            sa.select(sa.func.count())
            .select_from(promotions)
            .where(
                promotions.c.day == day, ~promotions.c.idempotency_key.startswith(HOLDOUT_PREFIX)
            )
        ).scalar_one()
        cap_left = max(daily_cap - done_today, 0)
        held = holdout_draw(merged["lead_id"]) < holdout if holdout > 0 else None
        decided = decide(merged, thresholds, cap_left, held)
        upsert(conn, lead_state, state_rows(decided, merged, fresh["lead_id"], now))
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
                hash_emails,
            )
            for r in promoted.itertuples()
        ]
        held_rows = holdout_log(decided[decided["held_out"]], now, day)
        if messages or held_rows:
            conn.execute(sa.insert(promotions), promotion_log(messages, now, day) + held_rows)
        enqueue(conn, destination, messages, now)
    report.changed = len(changed)
    report.promoted = len(messages)
    report.held_out = len(held_rows)
    report.waiting = int(decided["waiting"].sum())
    report.cap_left = cap_left - len(messages)


def run_promotion(
    cfg: Config,
    *,
    all_leads: bool = False,
    scores_file: Path | None = None,
    progress: bool = True,
    clock: Callable[[], float] = time.time,
    send: bool = True,
) -> PromotionReport:
    """The ``funnel jobs promote-leads`` job (see the module docstring)."""
    # a bad scores file is rejected before anything is locked or written
    scores = read_scores(scores_file) if scores_file is not None else None
    promotion = cfg.jobs.promotion
    report = PromotionReport()
    with leased_run(cfg.state_store_url, JOB, cfg.jobs.lease_seconds, clock=clock) as job:
        explain = model_threshold = None
        if scores is None:
            scores, model_threshold, explain = score_online(cfg, progress=progress)
        report.scored = len(scores)
        report.model_version = str(scores["model_version"].iloc[0]) if len(scores) else ""
        report.thresholds = resolve_thresholds(cfg.jobs.promotion, model_threshold)
        job.lease.renew(force=True)  # scoring may have taken a while
        commit_decisions(
            job.engine,
            scores,
            report.thresholds,
            destination=promotion.destination,
            daily_cap=promotion.daily_cap,
            hash_emails=cfg.jobs.destinations[promotion.destination].hash_emails,
            directory=_lead_directory(cfg.raw_dir),
            all_leads=all_leads,
            now=clock(),
            report=report,
            explain=explain,
            holdout=promotion.holdout,
        )
        if send:
            with closing(open_destination(cfg, promotion.destination)) as destination:
                report.delivery = deliver(
                    job.engine,
                    destination,
                    cfg.jobs.retry,
                    lease=job.lease,
                    clock=clock,
                    progress=progress,
                )
        job.run.summary = report.as_dict()
    return report

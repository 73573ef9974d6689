"""The console's server time per page at size: a million leads.

    .venv/bin/python -m benchmarks.console [--leads 1000000] [--requests 40]

Writes raw leads and accounts directly (NumPy, not the generator: the generator's events and
features would take far longer and the console does not read them for these pages), a jobs'
state store with a million scored leads, a promotion history, dead letters and audiences of a
hundred thousand members, and the report JSON files; then asks every page ``--requests`` times
through the ASGI app in-process and reports the p50 and p99 of the server time each answer
carries (``Server-Timing``), against the 300 ms target.

What is not measured here: the lead's live score, reasons and next best offer (the serving
layer's scorer, benchmarked in ``benchmarks/perf.py``), its score over past snapshots (a Feast
point-in-time retrieval, loaded after the page) and the stage counts over time (computed once
per feature build, in the background); the MLflow registry is stubbed (the console re-reads it
at most every 30 s).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from activation.destinations import hash_email
from activation.state import (
    audience_members,
    audience_syncs,
    dead_letters,
    job_runs,
    lead_state,
    open_engine,
    promotions,
)
from console.app import create_app
from console.models import Champion
from console.sources import Sources, Unavailable
from core.config import load_config
from core.contract import LEAD_SOURCES
from core.tables import write_tables

TARGET_MS = 300.0
ENV = {"FUNNEL_UI_VIEWERS": "bench:bench-pass", "FUNNEL_UI_SECRET": "bench"}
INDUSTRIES = np.array(["software", "finance", "retail", "health", "media", "manufacturing"])


def raw_tables(n_leads: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    n_accounts = max(n_leads // 10, 1)
    account_ids = np.char.add("A", np.char.zfill(np.arange(n_accounts).astype(str), 7))
    created = pd.Timestamp("2025-01-06", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 270 * 86_400, n_leads), unit="s"
    )
    accounts = pd.DataFrame({
        "account_id": account_ids,
        "domain": np.char.add(np.char.add("company", np.arange(n_accounts).astype(str)), ".com"),
        "industry": INDUSTRIES[rng.integers(0, len(INDUSTRIES), n_accounts)],
        "employee_count": rng.integers(1, 5000, n_accounts),
        "annual_revenue": rng.uniform(1e5, 1e9, n_accounts),
        "country": "US",
        "created_at": pd.Timestamp("2024-01-01", tz="UTC"),
    })  # fmt: skip
    lead_ids = np.char.add("L", np.char.zfill(np.arange(n_leads).astype(str), 7))
    leads = pd.DataFrame({
        "lead_id": lead_ids,
        "account_id": account_ids[rng.integers(0, n_accounts, n_leads)],
        "email": np.char.add(np.char.add("person", np.arange(n_leads).astype(str)), "@example.com"),
        "job_title": np.array(["VP Marketing", "Engineer", "CFO", "Analyst"])[
            rng.integers(0, 4, n_leads)
        ],
        "source": np.array(sorted(LEAD_SOURCES))[rng.integers(0, len(LEAD_SOURCES), n_leads)],
        "created_at": created,
    })  # fmt: skip
    return {"accounts": accounts, "leads": leads}


def fill_state(url: str, lead_ids: np.ndarray, rng: np.random.Generator) -> str:
    """A million scored leads, 200 days of promotions (30 a day and their holdouts), 5,000 dead
    letters, three audiences of 100,000 members; returns today's UTC day."""
    engine = open_engine(url)
    now = time.time()
    today = pd.Timestamp(now, unit="s", tz="UTC").date()
    prob = rng.beta(1.2, 8.0, len(lead_ids))
    with engine.begin() as conn:
        for start in range(0, len(lead_ids), 100_000):
            part = slice(start, start + 100_000)
            conn.execute(sa.insert(lead_state), [
                {"lead_id": i, "probability": float(p), "score": round(100 * float(p)),
                 "fingerprint": "0" * 16, "reasons": "[]", "model_version": "funnel-mql/7",
                 "features_as_of": now, "armed": bool(a), "promotions": 0, "updated_at": now}
                for i, p, a in zip(lead_ids[part], prob[part], rng.random(len(prob[part])) < 0.9,
                                   strict=True)
            ])  # fmt: skip
        rows = []
        picked = rng.choice(len(lead_ids), 200 * 33, replace=False)
        for d in range(200):
            day = (today - pd.Timedelta(days=d)).isoformat()
            for k in range(33):
                lead = lead_ids[picked[d * 33 + k]]
                prefix = "mql-holdout" if k >= 30 else "mql-promotion"
                rows.append({"idempotency_key": f"{prefix}:{lead}:1", "lead_id": lead,
                             "number": 1, "probability": float(rng.uniform(0.4, 0.99)),
                             "model_version": "funnel-mql/7", "decided_at": now - d * 86_400,
                             "day": day})  # fmt: skip
        conn.execute(sa.insert(promotions), rows)
        conn.execute(sa.insert(dead_letters), [
            {"outbox_id": i, "destination": "sales", "idempotency_key": f"mql-promotion:{lead}:1",
             "payload": json.dumps({"lead_id": str(lead)}), "attempts": 8,
             "last_error": "HTTP 400: rejected", "failed_at": now - i}
            for i, lead in enumerate(lead_ids[rng.choice(len(lead_ids), 5000, replace=False)])
        ])  # fmt: skip
        summary = {"audiences": []}
        for name in ("hot_leads", "decision_stage", "churn_risk_high"):
            members = lead_ids[
                rng.choice(len(lead_ids), min(100_000, len(lead_ids) // 2), replace=False)
            ]
            conn.execute(sa.insert(audience_members), [
                {"audience": name, "destination": "ads", "member_id": str(m), "synced_at": now}
                for m in members
            ])  # fmt: skip
            conn.execute(sa.insert(audience_syncs).values(
                audience=name, destination="ads", version=12, members=len(members), synced_at=now
            ))  # fmt: skip
            summary["audiences"].append({"audience": name, "destination": "ads",
                                         "members": len(members), "adds": 1200, "removes": 900,
                                         "version": 12, "error": None})  # fmt: skip
        for job, body in (("promote", {"threshold": 0.42}), ("sync-audiences", summary)):
            conn.execute(sa.insert(job_runs).values(
                job=job, holder="bench", started_at=now, finished_at=now, status="ok",
                summary=json.dumps(body),
            ))  # fmt: skip
    engine.dispose()
    return today.isoformat()


def report_files(reports: Path, rng: np.random.Generator) -> None:
    """Report JSON of the shape ``funnel report funnel`` and ``funnel report experiments``
    write (their size does not grow with the leads)."""
    reports.mkdir(parents=True, exist_ok=True)
    steps = [("awareness", "consideration"), ("consideration", "decision"),
             ("decision", "retention")]  # fmt: skip
    conversion = []
    reached = 1_000_000
    for a, b in steps:
        went = int(reached * rng.uniform(0.2, 0.5))
        conversion.append({"from_stage": a, "to_stage": b, "reached": reached, "converted": went,
                           "conversion_rate": went / reached, "drop_off": reached - went,
                           "drop_off_rate": 1 - went / reached})  # fmt: skip
        reached = went
    fixes = [{"rank": i + 1, "name": f"fix_{i}", "step": "consideration -> decision",
              "lift_source": "guess", "lift": 0.05, "experiment": None, "revenue": 1e5 / (i + 1),
              "revenue_low": 5e4 / (i + 1), "revenue_high": 2e5 / (i + 1), "cost": 1e4,
              "weeks": 3, "description": "a fix"} for i in range(12)]  # fmt: skip
    (reports / "funnel.json").write_text(json.dumps({
        "generated_at": "2026-10-05T00:00:00+00:00",
        "data_window": {"first_snapshot": "2025-01-06T00:00:00+00:00",
                        "last_snapshot": "2025-10-06T00:00:00+00:00", "leads": 1_000_000},
        "conversion": conversion, "fixes": {"ranked": fixes, "readouts_file": None},
        "value_of_a_point": {"currency": "USD"},
    }))  # fmt: skip
    comparisons = [{"name": f"offer_{i}: offer vs control", "metric": "converted", "status": "ok",
                    "metric_type": "binary", "n_treatment": 20_000, "n_control": 20_000,
                    "mean_treatment": 0.05, "mean_control": 0.045, "lift_rel": 0.11,
                    "lift_rel_low": 0.02, "lift_rel_high": 0.2, "p_value": 0.01,
                    "significant": True, "srm": {"alert": i == 3}, "note": "",
                    "sequential": {"lift_rel_low": -0.01, "lift_rel_high": 0.23}}
                   for i in range(8)]  # fmt: skip
    (reports / "experiments.json").write_text(json.dumps({
        "generated_at": "2026-10-05T00:00:00+00:00", "alpha": 0.05, "srm_alert_p": 0.001,
        "comparisons": comparisons,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    from starlette.testclient import TestClient

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        base = Path(tmp)
        cfg = load_config(None, [f"paths.data_dir={base / 'data'}",
                                 f"paths.mlruns_dir={base / 'mlruns'}"])  # fmt: skip
        started = time.perf_counter()
        tables = raw_tables(args.leads, rng)
        write_tables(tables, cfg.raw_dir)
        today = fill_state(cfg.state_store_url, tables["leads"]["lead_id"].to_numpy(), rng)
        report_files(cfg.data_dir / "reports", rng)
        print(f"wrote {args.leads:,} leads and the stores in {time.perf_counter() - started:.0f} s")

        champion = Champion("mql", "funnel-mql", version="7", metrics=[("test_roc_auc", 0.8)])
        sources = Sources(cfg, models={}, registry=lambda: [champion])
        app = create_app(cfg, sources=sources, environ=ENV, warm_up=False)
        with TestClient(app) as client:
            page = client.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            client.post("/login", data={"username": "bench", "password": "bench-pass",
                                        "csrf_token": token})  # fmt: skip
            started = time.perf_counter()
            sources.directory()
            print(f"lead directory built in {time.perf_counter() - started:.1f} s (once per "
                  "version of the raw tables, at start-up)")  # fmt: skip
            try:  # Feast and the champion load at start-up (absent here: no feature store)
                sources.scoring.get()
            except Unavailable:
                pass
            lead = tables["leads"]["lead_id"].iat[args.leads // 2]
            email = tables["leads"]["email"].iat[args.leads // 3]
            pages = {
                "funnel": "/funnel",
                "leads: search by id": f"/leads?q={lead}",
                "leads: search by hashed email": f"/leads?q={hash_email(email)}",
                "leads: search by company, page 3": "/leads?q=company12&page=3",
                "lead page": f"/leads/{lead}",
                "queue: promoted today": f"/queue?tab=promoted&day={today}",
                "queue: waiting over the cap, page 200": "/queue?tab=waiting&page=200",
                "queue: held out": f"/queue?tab=held_out&day={today}",
                "queue: dead letters, page 50": "/queue?tab=dead_letters&page=50",
                "audiences": "/audiences",
                "audience members, page 400": "/audiences/hot_leads?page=400",
                "experiments": "/experiments",
                "models": "/models",
            }
            print(f"\nserver time per page, {args.requests} requests each "
                  f"(target: under {TARGET_MS:.0f} ms)")  # fmt: skip
            print(f"{'page':42s} {'p50 ms':>8s} {'p99 ms':>8s}  status")
            for name, path in pages.items():
                times = []
                for _ in range(args.requests):
                    r = client.get(path)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                    times.append(float(r.headers["Server-Timing"].split("dur=")[1]))
                p50, p99 = np.percentile(times, [50, 99])
                verdict = "ok" if p99 < TARGET_MS else "OVER"
                print(f"{name:42s} {p50:8.1f} {p99:8.1f}  {verdict}")


if __name__ == "__main__":
    main()

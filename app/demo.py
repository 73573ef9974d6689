"""`funnel demo`: the whole path on the embedded default, end to end, with timings: MQL scores,
churn risk and next best offers over HTTP."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pandas as pd

from app import process
from core.config import API_KEY_ENV, Config


def sample_leads(cfg: Config, n: int = 300) -> list[str]:
    """Leads that exist at the newest snapshot, a random sample (fixed seed)."""
    profile = pd.read_parquet(cfg.features_dir / "lead_profile.parquet", columns=["lead_id"])
    return profile["lead_id"].sample(min(n, len(profile)), random_state=0).tolist()


def sample_customers(cfg: Config, n: int = 60) -> list[str]:
    """Accounts that are customers at the newest snapshot, a random sample (fixed seed)."""
    usage = pd.read_parquet(
        cfg.features_dir / "account_usage.parquet",
        columns=["account_id", "event_timestamp", "is_customer"],
    )
    now = usage[usage["event_timestamp"] == usage["event_timestamp"].max()]
    customers = now.loc[now["is_customer"] == 1, "account_id"]
    return customers.sample(min(n, len(customers)), random_state=0).tolist()


def print_churn(results: list[dict]) -> None:
    for r in results:
        print(f"  {r['account_id']}  p(churn in 60 days)={r['probability']:.3f}  {r['risk_tier']}")
        for reason in r["reasons"]:
            sign = "+" if reason["direction"] == "raises" else "-"
            print(f"      {sign} {reason['text']}")


def print_offers(results: list[dict]) -> None:
    for r in results:
        how = "explored" if r["explored"] else f"policy: {r['policy']}"
        print(
            f"  {r['lead_id']}  {r['stage']:<13} -> {r['chosen_offer']:<14} "
            f"(propensity {r['propensity']:.2f}, {how})"
        )
        for o in r["offers"]:
            print(
                f"      {o['offer_id']:<14} uplift {o['uplift']:+.3f}  "
                f"net value {o['expected_net_value']:+8.2f}"
            )


def print_scores(results: list[dict]) -> None:
    for r in sorted(results, key=lambda r: -r["probability"]):
        flag = "MQL" if r["is_mql"] else "   "
        print(f"  {r['lead_id']}  score {r['score']:3d}  p={r['probability']:.3f}  {flag}")
        for reason in r["reasons"]:
            sign = "+" if reason["direction"] == "raises" else "-"
            print(f"      {sign} {reason['text']}")


def run_jobs(cfg: Config, timed) -> None:
    """The activation jobs on the demo data: promotion to sales, audiences, a campaign wave and
    the funnel report (destinations are files under <data_dir>/outbox)."""
    from activation.audience_sync import sync_audiences
    from activation.campaigns import sync_campaigns
    from activation.lead_promotion import run_promotion
    from app.cli import format_audiences, format_campaigns, format_promotion
    from reports.funnel_report import write_funnel_report

    if cfg.jobs.state_store is None:  # the demo's own state: it describes the data just replaced
        for path in (*cfg.data_dir.glob("jobs.db*"), *(cfg.data_dir / "outbox").glob("*.jsonl")):
            path.unlink()
    promo = timed(
        "jobs promote (MQL promotions to sales, through the outbox)",
        run_promotion,
        cfg,
        progress=False,
    )
    print(format_promotion(promo, cfg.jobs.promotion.destination))
    again = run_promotion(cfg, progress=False)
    print(
        f"  run again at once: {again.changed} leads changed, {again.promoted} promoted, "
        f"{again.delivery.sent} sent; {again.waiting} wait for tomorrow's capacity"
    )
    audiences = timed("jobs sync-audiences", sync_audiences, cfg, progress=False)
    print(format_audiences(audiences))
    campaigns = timed("jobs sync-campaigns", sync_campaigns, cfg, progress=False)
    print(format_campaigns(campaigns))
    report = timed("report funnel", write_funnel_report, cfg)
    print(f"  funnel report: {report}")
    for name, dest in cfg.jobs.destinations.items():
        where = cfg.destination_path(dest.path) if dest.type == "file" else dest.url
        print(f"  destination {name}: {where}")


def run_demo(
    cfg: Config,
    config_path: Path | None,
    overrides: tuple[str, ...],
    leads: int | None = None,
    trials: int | None = None,
    port: int | None = None,
) -> dict[str, float]:
    from app.cli import format_nbo_result, format_train_result
    from app.pipeline import apply_features, materialize_features, serve_command
    from synthetic.generate import generate
    from training.nbo import train_nbo
    from training.train import train_churn, train_mql

    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - start
        print(f"== {name}: {timings[name]:.1f}s", flush=True)
        return out

    summary = timed(
        "generate synthetic funnel",
        generate,
        n_leads=leads or cfg.data.leads,
        seed=cfg.data.seed,
        start=cfg.data.start,
        weeks=cfg.data.weeks,
        out_dir=cfg.data_dir,
    )
    print("  " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    counts = timed("build features and apply Feast definitions", apply_features, cfg)
    print("  " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    result = timed("train MQL model (Optuna + MLflow)", train_mql, cfg, n_trials=trials)
    print(format_train_result(result))
    churn = timed("train churn model (Optuna + MLflow)", train_churn, cfg, n_trials=trials)
    print(format_train_result(churn))
    nbo = timed("train next-best-offer model (uplift learners + MLflow)", train_nbo, cfg)
    print(format_nbo_result(nbo))
    timed("materialize online store", materialize_features, cfg)

    port = port or process.free_port(cfg.serving.host)
    key = cfg.api_key() or secrets.token_urlsafe(16)
    cmd, env = serve_command(cfg, config_path, overrides, port)
    env[API_KEY_ENV] = key
    base = f"http://{cfg.serving.host}:{port}"
    print(f"\n== start BentoML service at {base}", flush=True)
    start = time.perf_counter()
    log_path = cfg.data_dir / "demo-server.log"
    proc = process.start(cmd, env, log_path)
    try:
        process.wait_ready(base, proc, log_path)
        timings["start service"] = time.perf_counter() - start
        print(f"== start service: {timings['start service']:.1f}s")
        ids = sample_leads(cfg)
        start = time.perf_counter()
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30.0) as client:
            batch = client.post(
                "/v1/leads/score_batch", json={"leads": [{"lead_id": i} for i in ids]}
            )
            batch.raise_for_status()
            results = sorted(batch.json()["results"], key=lambda r: -r["probability"])
            # one lead again, with a job title that arrived with the request
            retitled = client.post(
                "/v1/leads/score",
                json={"lead_id": results[-1]["lead_id"], "job_title": "VP of Marketing"},
            )
            retitled.raise_for_status()
            risks = []
            for account in sample_customers(cfg):
                answer = client.post("/v1/accounts/churn_risk", json={"account_id": account})
                answer.raise_for_status()
                risks.append(answer.json())
            offers = []
            for lead_id in ids[:40]:
                answer = client.post("/v1/next_best_offer", json={"lead_id": lead_id})
                answer.raise_for_status()
                offers.append(answer.json())
        timings["score leads over HTTP"] = time.perf_counter() - start
        mqls = sum(r["is_mql"] for r in results)
        print(
            f"\n== scored {len(results)} random leads over HTTP in one batch: {mqls} are MQLs "
            f"(model {results[0]['model_version']}, threshold {results[0]['threshold']:.3f}, "
            f"features as of {results[0]['features_as_of']})"
        )
        print("  the three highest scores:")
        print_scores(results[:3])
        print("  three from the middle and the bottom:")
        print_scores([results[len(results) // 2], results[-2], results[-1]])
        print("  the last lead again, with job title 'VP of Marketing' sent in the request:")
        print_scores([retitled.json()])
        risks.sort(key=lambda r: -r["probability"])
        tiers = pd.Series([r["risk_tier"] for r in risks]).value_counts().to_dict()
        print(f"\n== churn risk of {len(risks)} random customers over HTTP: {tiers}")
        print("  the three most at risk:")
        print_churn(risks[:3])
        print("  and the safest:")
        print_churn(risks[-1:])
        chosen = pd.Series([r["chosen_offer"] for r in offers]).value_counts().to_dict()
        print(f"\n== next best offer for {len(offers)} leads over HTTP: {chosen}")
        one_per_stage = {r["stage"]: r for r in offers}
        print_offers(list(one_per_stage.values()))
    finally:
        process.stop(proc)
        print("\n== service stopped")
    run_jobs(cfg, timed)
    print("\n== timings")
    for name, seconds in timings.items():
        print(f"  {name:<45} {seconds:7.1f}s")
    return timings

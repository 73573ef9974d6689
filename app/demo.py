"""`funnel demo`: the whole path on the embedded default, end to end, with timings: MQL scores,
churn risk and next best offers over HTTP."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd

from activation.audience_sync import sync_audiences
from activation.campaigns import sync_campaigns
from activation.lead_promotion import promotion_decisions, run_promotion
from activation.state import campaign_assignments, open_engine, rows_of
from app import process
from app.formatting import (
    format_audiences,
    format_campaigns,
    format_nbo_result,
    format_promotion,
    format_train_result,
)
from app.pipeline import apply_features, materialize_features, serve_command
from core.config import API_KEY_ENV, Config
from core.tracking import VIOLATIONS, load_plan
from reports.experiments import format_readout, write_experiments_report
from reports.fixes import format_fixes
from reports.funnel_report import funnel_json_path, write_funnel_report
from reports.touchpoints import format_stalls, format_touchpoints
from synthetic.generate import generate
from training.nbo import train_nbo
from training.train import train_churn, train_mql

T = TypeVar("T")


class Timer:
    """Runs the demo's steps by name, printing each one's heading and wall time; ``seconds``
    keeps every step's time in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        print(f"== {name}: {self.record(name, start):.1f}s", flush=True)
        return out

    def record(self, name: str, started: float) -> float:
        """Keep the time since ``started`` (a ``time.perf_counter()`` reading) as ``name``'s."""
        self.seconds[name] = time.perf_counter() - started
        return self.seconds[name]


@dataclass
class Answers:
    """What the service answered over HTTP."""

    scores: list[dict]  # a batch of random leads, highest probability first
    retitled: dict  # the lowest-scored lead again, with a job title sent in the request
    risks: list[dict]  # churn risk of random customers, highest first
    offers: list[dict]  # next best offers of some of the same leads


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


# -- the steps ------------------------------------------------------------------------------------
def build_and_train(cfg: Config, timed: Timer, leads: int | None, trials: int | None) -> None:
    """Generate the synthetic funnel, build and apply its features, train the three models and
    fill the online store."""
    summary = timed(
        "generate synthetic funnel",
        generate,
        n_leads=leads or cfg.data.leads,
        seed=cfg.data.seed,
        start=cfg.data.start,
        weeks=cfg.data.weeks,
        out_dir=cfg.data_dir,
        plan=load_plan(cfg.data.tracking_plan),
        violations=cfg.data.violations,
    )
    tracking = summary.pop("tracking")
    print("  " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    found = ", ".join(f"{k} {tracking[k]:,}" for k in VIOLATIONS if tracking[k]) or "none"
    print(
        f"  tracking plan: {tracking['received']:,} events delivered, {tracking['admitted']:,} "
        f"admitted ({tracking['renamed']:,} renamed from old names), {tracking['duplicate']:,} "
        f"redeliveries removed, {tracking['blocked']:,} quarantined, {tracking['flagged']:,} "
        f"flagged; violations: {found}\n  (`funnel data check`, {cfg.quarantine_dir})"
    )
    counts = timed("build features and apply Feast definitions", apply_features, cfg)
    print("  " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    result = timed("train MQL model (Optuna + MLflow)", train_mql, cfg, n_trials=trials)
    print(format_train_result(result))
    churn = timed("train churn model (Optuna + MLflow)", train_churn, cfg, n_trials=trials)
    print(format_train_result(churn))
    nbo = timed("train next-best-offer model (uplift learners + MLflow)", train_nbo, cfg)
    print(format_nbo_result(nbo))
    timed("materialize online store", materialize_features, cfg)


def query_service(cfg: Config, client: httpx.Client) -> Answers:
    """MQL scores of random leads in one batch (and the lowest again with a job title sent in
    the request), churn risk of random customers, next best offers of 40 of the leads."""
    ids = sample_leads(cfg)
    batch = client.post("/v1/leads/score_batch", json={"leads": [{"lead_id": i} for i in ids]})
    batch.raise_for_status()
    scores = sorted(batch.json()["results"], key=lambda r: -r["probability"])
    retitled = client.post(
        "/v1/leads/score",
        json={"lead_id": scores[-1]["lead_id"], "job_title": "VP of Marketing"},
    )
    retitled.raise_for_status()
    risks = []
    for account in sample_customers(cfg):
        answer = client.post("/v1/accounts/churn_risk", json={"account_id": account})
        answer.raise_for_status()
        risks.append(answer.json())
    risks.sort(key=lambda r: -r["probability"])
    offers = []
    for lead_id in ids[:40]:
        answer = client.post("/v1/next_best_offer", json={"lead_id": lead_id})
        answer.raise_for_status()
        offers.append(answer.json())
    return Answers(scores, retitled.json(), risks, offers)


def print_answers(answers: Answers) -> None:
    results = answers.scores
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
    print_scores([answers.retitled])
    risks = answers.risks
    tiers = pd.Series([r["risk_tier"] for r in risks]).value_counts().to_dict()
    print(f"\n== churn risk of {len(risks)} random customers over HTTP: {tiers}")
    print("  the three most at risk:")
    print_churn(risks[:3])
    print("  and the safest:")
    print_churn(risks[-1:])
    offers = answers.offers
    chosen = pd.Series([r["chosen_offer"] for r in offers]).value_counts().to_dict()
    print(f"\n== next best offer for {len(offers)} leads over HTTP: {chosen}")
    one_per_stage = {r["stage"]: r for r in offers}
    print_offers(list(one_per_stage.values()))


def score_over_http(
    cfg: Config,
    config_path: Path | None,
    overrides: tuple[str, ...],
    timed: Timer,
    port: int | None = None,
) -> None:
    """Start the BentoML service on the champions just trained, query it, print what it
    answered, stop it."""
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
        print(f"== start service: {timed.record('start service', start):.1f}s")
        start = time.perf_counter()
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30.0) as client:
            answers = query_service(cfg, client)
        timed.record("score leads over HTTP", start)
        print_answers(answers)
    finally:
        process.stop(proc)
        print("\n== service stopped")


def run_jobs(cfg: Config, timed: Timer) -> None:
    """The activation jobs on the demo data: promotion to sales, audiences, a campaign wave and
    the experiments and funnel reports (destinations are files under <data_dir>/outbox)."""
    if cfg.jobs.state_store is None:  # the demo's own state: it describes the data just replaced
        for path in (*cfg.data_dir.glob("jobs.db*"), *(cfg.data_dir / "outbox").glob("*.jsonl")):
            path.unlink()
    promo = timed(
        "jobs promote-leads (MQL promotions to sales, through the outbox)",
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
    engine = open_engine(cfg.state_store_url)
    experiments = timed(
        "report experiments (offer arms, campaign wave and promotion holdouts)",
        write_experiments_report,
        cfg,
        campaigns=pd.DataFrame(rows_of(engine, campaign_assignments)),
        promotions=promotion_decisions(engine),
    )
    print(format_readout(experiments.comparisons))
    print(f"  experiments report: {experiments.html}")
    report = timed("report funnel", write_funnel_report, cfg)
    print(f"  funnel report: {report}")
    print_funnel_findings(funnel_json_path(report))
    for name, dest in cfg.jobs.destinations.items():
        where = cfg.destination_path(dest.path) if dest.type == "file" else dest.url
        print(f"  destination {name}: {where}")


def print_funnel_findings(json_path: Path) -> None:
    """The funnel report's top five fixes, strongest touchpoints and stalls, from its JSON."""
    found = json.loads(json_path.read_text())
    currency = found["value_of_a_point"]["currency"]
    print("  top fixes by revenue per unit of cost (all in the report):")
    print(format_fixes(pd.DataFrame(found["fixes"]["ranked"]), currency, top=5))
    odds = pd.DataFrame(found["touchpoints"]["odds_ratios"])
    if len(odds):
        print(format_touchpoints(odds, per_step=3))
    stalls = found["drop_off"]
    print(format_stalls(pd.DataFrame(stalls["stalls"]), pd.DataFrame(stalls["segments"])))


def print_timings(seconds: dict[str, float]) -> None:
    print("\n== timings")
    for name, took in seconds.items():
        print(f"  {name:<45} {took:7.1f}s")


def run_demo(
    cfg: Config,
    config_path: Path | None,
    overrides: tuple[str, ...],
    leads: int | None = None,
    trials: int | None = None,
    port: int | None = None,
) -> dict[str, float]:
    """Every step in turn: build and train, score over HTTP, run the jobs; returns each step's
    seconds."""
    timed = Timer()
    build_and_train(cfg, timed, leads, trials)
    score_over_http(cfg, config_path, overrides, timed, port)
    run_jobs(cfg, timed)
    print_timings(timed.seconds)
    print(
        f"\nconsole: `funnel ui` serves http://{cfg.ui.host}:{cfg.ui.port}/ "
        "(set FUNNEL_UI_ADMIN=user:password first; docs/guides/console.md)"
    )
    return timed.seconds

"""`funnel demo`: the whole MQL path on the embedded default, end to end, with timings."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pandas as pd

from funnel import process
from funnel.config import API_KEY_ENV, Config


def sample_leads(cfg: Config, n: int = 300) -> list[str]:
    """Leads that exist at the newest snapshot, a random sample (fixed seed)."""
    profile = pd.read_parquet(cfg.features_dir / "lead_profile.parquet", columns=["lead_id"])
    return profile["lead_id"].sample(min(n, len(profile)), random_state=0).tolist()


def print_scores(results: list[dict]) -> None:
    for r in sorted(results, key=lambda r: -r["probability"]):
        flag = "MQL" if r["is_mql"] else "   "
        print(f"  {r['lead_id']}  score {r['score']:3d}  p={r['probability']:.3f}  {flag}")
        for reason in r["reasons"]:
            sign = "+" if reason["direction"] == "raises" else "-"
            print(f"      {sign} {reason['text']}")


def run_demo(
    cfg: Config,
    config_path: Path | None,
    overrides: tuple[str, ...],
    leads: int | None = None,
    trials: int | None = None,
    port: int | None = None,
) -> dict[str, float]:
    from funnel.cli import format_train_result
    from funnel.data.generate import generate
    from funnel.jobs import apply_features, materialize_features, serve_command
    from training.train import train_mql

    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - start
        print(f"== {name}: {timings[name]:.1f}s", flush=True)
        return out

    summary = timed(
        "generate synthetic funnel", generate, n_leads=leads or cfg.data.leads,
        seed=cfg.data.seed, start=cfg.data.start, weeks=cfg.data.weeks, out_dir=cfg.data_dir,
    )
    print("  " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    counts = timed("build features and apply Feast definitions", apply_features, cfg)
    print("  " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    result = timed("train MQL model (Optuna + MLflow)", train_mql, cfg, n_trials=trials)
    print(format_train_result(result))
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
        timings["score leads over HTTP"] = time.perf_counter() - start
        mqls = sum(r["is_mql"] for r in results)
        print(f"\n== scored {len(results)} random leads over HTTP in one batch: {mqls} are MQLs "
              f"(model {results[0]['model_version']}, threshold {results[0]['threshold']:.3f}, "
              f"features as of {results[0]['features_as_of']})")
        print("  the three highest scores:")
        print_scores(results[:3])
        print("  three from the middle and the bottom:")
        print_scores([results[len(results) // 2], results[-2], results[-1]])
        print("  the last lead again, with job title 'VP of Marketing' sent in the request:")
        print_scores([retitled.json()])
    finally:
        process.stop(proc)
        print("\n== service stopped")
    print("\n== timings")
    for name, seconds in timings.items():
        print(f"  {name:<45} {seconds:7.1f}s")
    return timings

"""`funnel demo`: the whole MQL path on the embedded default, end to end, with timings."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd

from funnel.config import API_KEY_ENV, Config


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll /readyz until the service answers 200; fail with the server's output if it dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"the service exited with code {proc.returncode}:\n{out[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the service at {base_url} was not ready after {timeout_s:.0f}s")


def stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pick_leads(cfg: Config, n: int = 8) -> list[str]:
    """The most engaged leads at the newest snapshot and a few at random, for contrast."""
    behavior = pd.read_parquet(cfg.features_dir / "lead_behavior.parquet")
    latest = behavior[behavior["event_timestamp"] == behavior["event_timestamp"].max()]
    activity = latest.select_dtypes("number").sum(axis=1)
    engaged = latest.loc[activity.nlargest(n // 2).index, "lead_id"].tolist()
    rest = latest[~latest["lead_id"].isin(engaged)].sample(n - len(engaged), random_state=0)
    return engaged + rest["lead_id"].tolist()


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

    port = port or free_port(cfg.serving.host)
    key = cfg.api_key() or secrets.token_urlsafe(16)
    cmd, env = serve_command(cfg, config_path, overrides, port)
    env[API_KEY_ENV] = key
    base = f"http://{cfg.serving.host}:{port}"
    print(f"\n== start BentoML service at {base}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_ready(base, proc)
        timings["start service"] = time.perf_counter() - start
        print(f"== start service: {timings['start service']:.1f}s")
        ids = pick_leads(cfg)
        start = time.perf_counter()
        results = []
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10.0) as client:
            for lead_id in ids:
                response = client.post("/v1/leads/score", json={"lead_id": lead_id})
                response.raise_for_status()
                results.append(response.json())
        timings["score leads over HTTP"] = time.perf_counter() - start
        print(f"\n== scored {len(results)} leads over HTTP "
              f"(model {results[0]['model_version']}, features as of {results[0]['features_as_of']})")
        print_scores(results)
    finally:
        stop(proc)
        print("\n== service stopped")
    print("\n== timings")
    for name, seconds in timings.items():
        print(f"  {name:<45} {seconds:7.1f}s")
    return timings

"""Helpers for the job tests: a config whose state store, destinations and retries point at
tmp paths and a loopback receiver, and score files to promote from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]  # the repository
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def jobs_tree(
    base: Path,
    *,
    webhook: str | None = None,
    state_store: str | None = None,
    threshold: float = 0.5,
    cap: int = 10_000,
    **retry: float,
) -> dict:
    """A config mapping (written to YAML for subprocesses) for promotion tests."""
    sales = (
        {"type": "webhook", "url": webhook, "secret_env": "FUNNEL_TEST_SECRET", "timeout_s": 0.3}
        if webhook
        else {"type": "file", "path": str(base / "sales.jsonl")}
    )
    return {
        "paths": {"data_dir": str(base / "data"), "mlruns_dir": str(base / "mlruns")},
        "jobs": {
            "state_store": state_store,
            "lease_seconds": 30,
            "retry": {
                "max_attempts": 50,
                "attempts_per_run": 3,
                "base_delay_s": 0.01,
                "max_delay_s": 0.05,
                **retry,
            },
            "destinations": {"sales": sales},
            "promotion": {"threshold": threshold, "daily_cap": cap},
        },
    }


def write_config(base: Path, tree: dict) -> Path:
    path = base / "configs" / "jobs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree))
    return path


def config_of(base: Path, tree: dict) -> Config:
    return load_config(write_config(base, tree))


def write_scores(path: Path, n: int, seed: int = 0, above: float = 0.5) -> pd.DataFrame:
    """``n`` leads, about ``above`` of them scoring at or over 0.5."""
    rng = np.random.default_rng(seed)
    hot = rng.random(n) < above
    prob = np.where(hot, rng.uniform(0.5, 0.99, n), rng.uniform(0.01, 0.3, n))
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i:05d}" for i in range(n)],
            "probability": prob,
            "reasons": [["Viewed pricing 3 times in the last 7 days"]] * n,
            "model_version": "funnel-mql/1",
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return frame

"""Optuna tuning with one and with two worker processes: trials per minute on one study.

    uv run python benchmarks/tuning.py                  # 16 trials per run, 20,000 rows
    uv run python benchmarks/tuning.py --trials 24 --rows 50000 --reps 2

The same path `funnel train mql --workers N` takes (``training.workers.tune_study``): the study
on PostgreSQL (127.0.0.1:5432, database test), each trial an MLflow child run of one parent run
on PostgreSQL, LightGBM with one thread per trial (``num_threads: 1``), on a generated
classification problem (numpy: 30 features, a label that leans on a few of them with
interactions). Each study gets fresh schemas, dropped afterwards. Runs are interleaved (1, 2,
1, 2, ...) so that drift in the machine's load hits both.

Reported per worker count: the wall time of the whole tuning (worker start-up included: each
worker is a new interpreter importing LightGBM, MLflow and Optuna), trials per minute over that
wall time, and trials per minute while trials ran (first trial's start to last trial's end).
Writes benchmarks/results/tuning.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.pg import ensure_schema
from core.quiet import quiet_libraries
from training.tuning import TrainData
from training.workers import TuningJob, open_study, tune_study

RESULTS = ROOT / "benchmarks" / "results"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def generated(rows: int, seed: int = 0) -> TrainData:
    """30 features; the label's log-odds lean on six of them, with two interactions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 30))
    logit = (
        1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.6 * x[:, 2] * x[:, 3] + 0.5 * np.abs(x[:, 4])
        - 0.7 * (x[:, 5] > 1) - 1.0
    )  # fmt: skip
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    cut = rows * 4 // 5
    names = [f"x{i}" for i in range(30)]
    return TrainData(x[:cut], y[:cut], x[cut:], y[cut:], names, [])


def drop(schemas: list[str]) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(PG)
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def one_run(data: TrainData, workers: int, trials: int, rounds: int) -> dict[str, Any]:
    """Tune one fresh study with ``workers`` processes; its timings."""
    import mlflow

    run = uuid.uuid4().hex[:8]
    schemas = [f"funnel_bench_optuna_{run}", f"funnel_bench_mlflow_{run}"]
    storage, tracking = (f"{PG}?options=-csearch_path%3D{s}" for s in schemas)
    try:
        ensure_schema(tracking)
        mlflow.set_tracking_uri(tracking)
        with tempfile.TemporaryDirectory() as tmp:
            experiment = mlflow.create_experiment("bench", artifact_location=Path(tmp).as_uri())
            parent = mlflow.MlflowClient().create_run(experiment).info.run_id
            study = open_study(f"bench-{run}", storage, 42, 5)
            job = TuningJob(parent, experiment, trials, 42, 5, rounds, 30, {"num_threads": 1})
            started = time.perf_counter()
            best = tune_study(study, storage, data, data.datasets(), job, workers=workers)
            wall = time.perf_counter() - started
            mlflow.MlflowClient().set_terminated(parent)
        done = study.get_trials()
        first = min(t.datetime_start for t in done)
        last = max(t.datetime_complete for t in done)
        running = (last - first).total_seconds()
        return {
            "workers": workers,
            "trials": len(done),
            "processes": len({t.user_attrs["worker"] for t in done}),
            "pruned": sum(t.state.name == "PRUNED" for t in done),
            "wall_s": round(wall, 2),
            "trials_per_min": round(60 * len(done) / wall, 2),
            "trials_running_s": round(running, 2),
            "trials_per_min_running": round(60 * len(done) / running, 2),
            "best_val_roc_auc": round(best.value, 4),
        }
    finally:
        drop(schemas)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def render(out: dict[str, Any]) -> str:
    lines = [
        "# Tuning with one and two worker processes",
        "",
        (
            f"One Optuna study on PostgreSQL, {out['trials']} trials per run, each an MLflow child "
            f"run (PostgreSQL); LightGBM {out['versions']['lightgbm']} with one thread per trial, "
            f"up to {out['rounds']} rounds (early stopping 30), on {out['rows']:,} generated rows "
            f"x 30 features. {out['cpus']} CPUs; load average before / after: "
            f"{out['load_before']} / {out['load_after']}. Medians over {out['reps']} runs each."
        ),
        "",
        "| workers | wall s | trials/min (wall) | trials/min (while trials ran) | best val AUC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, s in out["summary"].items():
        lines.append(
            f"| {n} | {s['wall_s']:.1f} | {s['trials_per_min']:.1f} | "
            f"{s['trials_per_min_running']:.1f} | {s['best_val_roc_auc']:.4f} |"
        )
    lines += [
        "",
        (
            f"Speed-up of 2 workers over 1: {out['speedup_wall']:.2f}x over the wall time, "
            f"{out['speedup_running']:.2f}x while trials ran. The wall time includes each worker's "
            "start-up (a new interpreter importing LightGBM, MLflow and Optuna); one worker runs "
            "in the training process and starts nothing. The two runs do not draw the same "
            "trials (one sampler, or two seeded apart), so their trials' lengths and pruning "
            "differ a little; on a machine that other work shares, the load average above says "
            "how much of the two cores the workers had."
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    quiet_libraries()
    data = generated(args.rows)
    load_before = load_average()
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for rep in range(args.reps):
        for workers in (1, 2):
            result = one_run(data, workers, args.trials, args.rounds)
            runs[workers].append(result)
            print(f"rep {rep} workers {workers}: {json.dumps(result)}", flush=True)
    keys = ("wall_s", "trials_per_min", "trials_per_min_running", "best_val_roc_auc")
    summary = {n: {k: median(r, k) for k in keys} for n, r in runs.items()}
    out = {
        "trials": args.trials, "rows": args.rows, "rounds": args.rounds, "reps": args.reps,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "versions": {p: version(p) for p in ("optuna", "mlflow", "lightgbm")},
        "load_before": load_before, "load_after": load_average(),
        "runs": runs, "summary": summary,
        "speedup_wall": summary[2]["trials_per_min"] / summary[1]["trials_per_min"],
        "speedup_running": (
            summary[2]["trials_per_min_running"] / summary[1]["trials_per_min_running"]
        ),
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tuning.json").write_text(json.dumps(out, indent=2) + "\n")
    markdown = render(out)
    (RESULTS / "tuning.md").write_text(markdown)
    print(markdown)
    return out


if __name__ == "__main__":
    main()

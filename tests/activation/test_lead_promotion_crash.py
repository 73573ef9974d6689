"""Crash safety and concurrency of ``funnel jobs promote-leads``, through the real CLI in child
processes: killed with SIGKILL at random points then rerun, and two started at once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from jobhelpers import jobs_tree, write_config, write_scores
from receiver import Receiver

from activation.state import dead_letters, open_engine, outbox, promotions, rows_of

pytestmark = pytest.mark.e2e
FUNNEL = [sys.executable, "-m", "app.cli"]
KILL_RUNS = int(os.environ.get("FUNNEL_TEST_KILL_RUNS", "15"))


def promote(cfg_path: Path, scores: Path) -> subprocess.Popen:
    env = {**os.environ, "FUNNEL_TEST_SECRET": "s3cret"}
    return subprocess.Popen(
        [*FUNNEL, "--config", str(cfg_path), "jobs", "promote-leads", "--scores", str(scores)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )


def run_to_completion(cfg_path: Path, scores: Path, tries: int = 20) -> list[str]:
    outputs = []
    for _ in range(tries):
        proc = promote(cfg_path, scores)
        out, _ = proc.communicate(timeout=120)
        outputs.append(out)
        if proc.returncode == 0:
            return outputs
        assert proc.returncode == 4, out  # 4: some messages wait for the next run
    raise AssertionError(f"no clean run in {tries}: {outputs[-1]}")


def expected_keys(frame) -> set[str]:
    return {f"mql-promotion:{i}:1" for i in frame.loc[frame["probability"] >= 0.5, "lead_id"]}


def kill_at_random(
    cfg_path: Path, scores: Path | list[Path], runs: int, window_s: float, seed: int
) -> int:
    """Start the job ``runs`` times (run k on ``scores[k]`` when a list), each killed with
    SIGKILL after a random delay; returns how many of them died before finishing."""
    rng = random.Random(seed)
    killed = 0
    for k in range(runs):
        proc = promote(cfg_path, scores[k] if isinstance(scores, list) else scores)
        time.sleep(rng.uniform(0.2, window_s))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
    return killed


def drifting_scores(base: Path, n: int, runs: int, seed: int) -> list[Path]:
    """One scores file per run; each lead's probability swings around the threshold (0.5) and
    below the re-arm threshold (0.375), so runs keep deciding new promotions and re-promotions."""
    rng = np.random.default_rng(seed)
    level, phase = rng.uniform(0.3, 0.6, n), rng.uniform(0, 2 * np.pi, n)
    paths = []
    for k in range(runs):
        p = np.clip(level + 0.25 * np.sin(phase + 0.9 * k), 0.01, 0.99)
        path = base / f"scores-{k:02d}.parquet"
        pd.DataFrame(
            {
                "lead_id": [f"L{i:05d}" for i in range(n)],
                "probability": p,
                "model_version": "funnel-mql/1",
            }
        ).to_parquet(path)
        paths.append(path)
    return paths


@pytest.mark.timeout(600)
def test_sigkill_at_random_points_loses_and_duplicates_nothing_at_a_webhook(tmp_path) -> None:
    """Every run decides new promotions (the scores drift), and most runs are killed: while
    scoring, deciding or sending. Whatever was decided reaches the receiver exactly once."""
    receiver = Receiver(weights={"ok": 0.8, "500": 0.1, "slow": 0.1}, delay_s=0.02, seed=7)
    receiver.slow_s = 0.4
    receiver.up()
    cfg_path = write_config(tmp_path, jobs_tree(tmp_path, webhook=receiver.url))
    paths = drifting_scores(tmp_path, 200, KILL_RUNS + 1, seed=8)
    # Every third score file is also run to the end: on a slow machine a killed run may die
    # before it decides anything, and re-promotions need decisions at several drift phases.
    killed = 0
    for k in range(KILL_RUNS):
        killed += kill_at_random(cfg_path, paths[k], 1, window_s=2.5, seed=9 + k)
        if k % 3 == 2:
            run_to_completion(cfg_path, paths[k])
    assert killed >= KILL_RUNS // 2  # most runs really died mid-way
    run_to_completion(cfg_path, paths[-1])
    engine = open_engine(f"sqlite:///{tmp_path / 'data' / 'jobs.db'}")
    decided = rows_of(engine, promotions)
    assert set(receiver.held) == {r["idempotency_key"] for r in decided}  # zero lost, no extra
    by_lead: dict[str, list[int]] = {}
    for r in decided:
        by_lead.setdefault(r["lead_id"], []).append(r["number"])
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in by_lead.values())
    assert len(decided) > 100 and max(map(len, by_lead.values())) >= 2  # re-promotions happened
    assert {r["status"] for r in rows_of(engine, outbox)} == {"sent"}
    assert not rows_of(engine, dead_letters)
    receiver.down()


@pytest.mark.timeout(600)
def test_sigkill_at_random_points_loses_and_duplicates_nothing_in_a_file(tmp_path) -> None:
    cfg_path = write_config(tmp_path, jobs_tree(tmp_path))
    scores_path = tmp_path / "scores.parquet"
    frame = write_scores(scores_path, 3000, seed=10)
    expected = expected_keys(frame)
    kill_at_random(cfg_path, scores_path, KILL_RUNS, window_s=2.5, seed=11)
    run_to_completion(cfg_path, scores_path)
    keys = [json.loads(line)["idempotency_key"] for line in (tmp_path / "sales.jsonl").open()]
    assert len(keys) == len(set(keys))  # no line twice, even after torn writes
    assert set(keys) == expected


@pytest.mark.timeout(300)
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_two_processes_started_at_once_do_not_both_send(tmp_path, store, request) -> None:
    state_store = None
    if store == "postgresql":
        state_store = request.getfixturevalue("pg_state_store")
    receiver = Receiver(delay_s=0.01).up()
    tree = jobs_tree(tmp_path, webhook=receiver.url, state_store=state_store)
    cfg_path = write_config(tmp_path, tree)
    scores_path = tmp_path / "scores.parquet"
    expected = expected_keys(write_scores(scores_path, 300, seed=12))
    rounds = []
    for _ in range(3):  # three rounds of two racing processes
        procs = [promote(cfg_path, scores_path) for _ in range(2)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        rounds.append(sorted(p.returncode for p in procs))
        assert rounds[-1] in ([0, 0], [0, 3]), outs
    assert rounds[0] == [0, 3]  # the first round's 1.5 s of sending overlaps the other start
    assert set(receiver.held) == expected
    assert len(receiver.deliveries) == len(expected)  # not one message sent twice
    receiver.down()

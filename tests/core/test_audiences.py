"""Audiences and campaigns config, membership, the diff, and the randomized assignment: pure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.audiences import (
    Where,
    assign_offers,
    audience_mask,
    best_offers,
    diff_members,
    read_audiences,
    uniforms,
)
from core.config import ConfigError, load_config
from core.offers import load_offers
from training.nbo_policy import greedy_arm, rank_offers

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "audiences.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def read(tmp_path: Path, tree: dict):
    cfg = load_config()
    return read_audiences(cfg, load_offers(cfg), write(tmp_path, tree))


def test_the_shipped_audiences_file_is_valid() -> None:
    cfg = load_config()
    spec = read_audiences(cfg, load_offers(cfg))
    assert "pricing_no_opportunity" in spec.audiences and "nurture" in spec.campaigns


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (
            {"audiences": {"a": {"destination": "ads", "where": {"stagez": ["decision"]}}}},
            r"audiences\.a\.where\.stagez: unknown key",
        ),
        (
            {"audiences": {"a": {"destination": "ads", "where": {"best_offers": ["free_lunch"]}}}},
            r"audiences\.a\.where\.best_offers: unknown offer 'free_lunch'",
        ),
        (
            {
                "audiences": {"a": {"destination": "ads"}},
                "campaigns": {"c": {"audience": "a", "destination": "campaigns", "holdout": -0.1}},
            },
            r"campaigns\.c\.holdout: Input should be greater than or equal to 0",
        ),
        (
            {
                "audiences": {"a": {"destination": "ads"}},
                "campaigns": {
                    "c": {"audience": "a", "destination": "campaigns", "offers": ["nope"]}
                },
            },
            r"campaigns\.c\.offers: unknown offer 'nope'",
        ),
        (
            {
                "audiences": {"a": {"destination": "ads"}},
                "campaigns": {"c": {"audience": "b", "destination": "campaigns"}},
            },
            r"campaigns\.c\.audience: unknown audience 'b'",
        ),
        ({"audiences": {"a": {"destination": "crm"}}}, r"unknown destination 'crm'"),
        (
            {"audiences": {"a": {"destination": "ads", "where": {"churn_tiers": ["extreme"]}}}},
            r"unknown tier 'extreme'",
        ),
        (
            {
                "audiences": {
                    "a": {"destination": "ads", "where": {"events": ["pricing_view_7d ~ 1"]}}
                }
            },
            r"audiences\.a\.where\.events\.0",
        ),
        (
            {
                "audiences": {
                    "a": {"destination": "ads", "where": {"mql_score": {"min": 80, "max": 20}}}
                }
            },
            r"min \(80\.0\) must not exceed max",
        ),
    ],
)
def test_bad_audiences_files_fail_naming_the_key(tmp_path, tree: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read(tmp_path, tree)


def test_a_missing_audiences_file_names_the_config_key(tmp_path) -> None:
    cfg = load_config(overrides=[f"jobs.audiences_file={tmp_path / 'none.yaml'}"])
    with pytest.raises(ConfigError, match=r"audiences file not found: .*\(jobs.audiences_file\)"):
        read_audiences(cfg, load_offers(cfg))


FRAME = pd.DataFrame(
    {
        "lead_id": ["a", "b", "c", "d"],
        "stage": ["awareness", "consideration", "decision", "retention"],
        "mql_score": [10.0, 55.0, 80.0, np.nan],
        "churn_tier": [None, None, None, "high"],
        "best_offer": ["case_study", "control", "discount_15", "seat_upsell"],
        "pricing_view_7d": [0.0, 2.0, 1.0, np.nan],
        "opportunities_90d": [0.0, 0.0, 1.0, 0.0],
    }
)


@pytest.mark.parametrize(
    ("where", "members"),
    [
        (Where(), ["a", "b", "c", "d"]),
        (Where(stages=["consideration", "decision"]), ["b", "c"]),
        (Where(mql_score={"min": 50}), ["b", "c"]),  # a missing score is never in range
        (Where(mql_score={"min": 50, "max": 60}), ["b"]),
        (Where(churn_tiers=["high"]), ["d"]),
        (Where(best_offers=["case_study", "control"]), ["a", "b"]),
        (Where(events=["pricing_view_7d >= 1", "opportunities_90d == 0"]), ["b"]),
        (Where(stages=["decision"], events=["pricing_view_7d >= 1"]), ["c"]),
    ],
)
def test_audience_mask(where: Where, members: list[str]) -> None:
    assert FRAME.loc[audience_mask(where, FRAME), "lead_id"].tolist() == members


def test_audience_mask_names_a_feature_the_frame_lacks() -> None:
    with pytest.raises(KeyError, match="demo_request_7d"):
        audience_mask(Where(events=["demo_request_7d >= 1"]), FRAME)


def test_diff_members_gives_adds_and_removes_only() -> None:
    assert diff_members(["a", "b", "c"], ["b", "c", "d", "e"]) == (["d", "e"], ["a"])
    assert diff_members(["a"], ["a"]) == ([], [])
    assert diff_members([], ["b", "a"]) == (["a", "b"], [])


@pytest.mark.parametrize("policy", ["learned", "o1", "o2"])
def test_best_offers_agrees_with_greedy_arm_row_by_row(policy: str) -> None:
    rng = np.random.default_rng(0)
    ids = ["o0", "o1", "o2"]
    uplift = rng.normal(0, 0.05, (300, 3))
    values, costs = np.array([1000.0, 500.0, 2000.0]), np.array([10.0, 5.0, 60.0])
    eligible = rng.random((300, 3)) < 0.6
    fast = best_offers(uplift, ids, values, costs, eligible, policy)
    for i in range(300):
        ranked = rank_offers(uplift[i], ids, values, costs, eligible[i])
        assert fast[i] == greedy_arm(ranked, policy)


def test_uniforms_are_fixed_by_campaign_wave_and_subject() -> None:
    a = uniforms("c", "2026-10-01", ["x", "y"])
    assert np.array_equal(a, uniforms("c", "2026-10-01", ["x", "y"]))
    assert not np.array_equal(a, uniforms("c", "2026-10-02", ["x", "y"]))
    assert ((a >= 0) & (a < 1)).all() and a.shape == (2, 3)


def test_assignment_frequencies_match_the_logged_propensities() -> None:
    n, holdout, eps = 60_000, 0.2, 0.3
    ids = ["o0", "o1"]
    eligible = np.tile([True, False], (n, 1))
    eligible[n // 2 :] = [True, True]
    greedy = np.where(np.arange(n) < n // 2, "o0", "o1").astype(object)
    draws = np.random.default_rng(1).random((n, 3))
    out = assign_offers(greedy, eligible, ids, holdout, eps, draws)
    assert abs(out.holdout.mean() - holdout) < 0.01
    assert set(out.arm[out.holdout]) == {"control"}
    for half in (slice(0, n // 2), slice(n // 2, n)):
        arms, props = out.arm[half], out.propensity[half]
        for arm in set(arms):
            share = float(np.mean(arms == arm))
            logged = float(props[arms == arm][0])
            assert np.allclose(props[arms == arm], logged)  # one propensity per (row kind, arm)
            assert abs(share - logged) < 0.01, (arm, share, logged)
    # rows where o1 is ineligible never get it
    assert "o1" not in set(out.arm[: n // 2])


def test_the_sync_commands_refuse_a_bad_audiences_file_before_touching_anything(tmp_path) -> None:
    from click.testing import CliRunner

    from app.cli import main

    bad = write(tmp_path, {"audiences": {"a": {"destination": "ads", "wher": {}}}})
    base = ["--set", f"paths.data_dir={tmp_path / 'data'}", "--set", f"jobs.audiences_file={bad}"]
    for command in ("sync-audiences", "sync-campaigns"):
        result = CliRunner().invoke(main, [*base, "jobs", command])
        assert result.exit_code == 1 and "audiences.a.wher: unknown key" in result.output
    good = write(tmp_path, {"audiences": {"a": {"destination": "ads"}}})
    base[-1] = f"jobs.audiences_file={good}"
    result = CliRunner().invoke(main, [*base, "jobs", "sync-audiences", "nope"])
    assert result.exit_code == 1 and "unknown audience(s) ['nope']" in result.output
    result = CliRunner().invoke(main, [*base, "jobs", "sync-campaigns"])
    assert result.exit_code == 1 and "declares no campaigns" in result.output
    assert not (tmp_path / "data" / "jobs.db").exists()  # refused before the state store opened

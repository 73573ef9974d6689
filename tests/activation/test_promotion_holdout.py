"""The promotion holdout: a fixed share of MQLs, chosen by a hash of the lead id, is logged as
held out and never sent; reruns hold out the same leads and send nothing twice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from jobhelpers import config_of, jobs_tree, write_scores

from activation.lead_promotion import (
    Thresholds,
    decide,
    holdout_draw,
    promotion_decisions,
    run_promotion,
)
from activation.state import open_engine
from core.config import ConfigError

T = Thresholds(promote=0.5, rearm=0.3)


def test_holdout_draw_is_uniform_and_fixed_by_the_lead_id() -> None:
    ids = [f"L{i:05d}" for i in range(20_000)]
    draw = holdout_draw(ids)
    assert np.array_equal(draw, holdout_draw(list(reversed(ids)))[::-1])  # order-free
    assert 0.09 < (draw < 0.1).mean() < 0.11
    assert not np.array_equal(draw, holdout_draw(ids, salt="another"))


def test_decide_holds_out_candidates_without_using_capacity() -> None:
    state = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c", "d"],
            "probability": [0.9, 0.8, 0.7, 0.2],
            "armed": True,
            "promotions": 0,
        }
    )
    out = decide(state, T, capacity=1, holdout=np.array([True, False, False, True]))
    assert out.loc[out["held_out"], "lead_id"].tolist() == ["a"]  # d is no candidate
    assert out.loc[out["promote"], "lead_id"].tolist() == ["b"]  # a took no capacity
    assert out.loc[out["waiting"], "lead_id"].tolist() == ["c"]
    assert out.set_index("lead_id")["armed"].to_dict() == {
        "a": False,
        "b": False,
        "c": True,
        "d": True,
    }
    assert out["promotions"].tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.production)]
)
def test_held_out_leads_are_logged_never_sent_and_reruns_agree(tmp_path, request, store) -> None:
    """On the embedded state store and on PostgreSQL (the production profile's)."""
    url = request.getfixturevalue("pg_state_store") if store == "postgresql" else None
    tree = jobs_tree(tmp_path, state_store=url)
    tree["jobs"]["promotion"]["holdout"] = 0.3
    cfg = config_of(tmp_path, tree)
    scores = write_scores(tmp_path / "scores.parquet", 300, seed=2)
    hot = set(scores.loc[scores["probability"] >= 0.5, "lead_id"])
    held = {i for i in hot if holdout_draw([i])[0] < 0.3}
    assert 20 < len(held) < len(hot) - 20

    first = run_promotion(cfg, scores_file=tmp_path / "scores.parquet", progress=False)
    again = run_promotion(
        cfg, scores_file=tmp_path / "scores.parquet", progress=False, all_leads=True
    )
    assert (first.held_out, first.promoted) == (len(held), len(hot) - len(held))
    assert (again.held_out, again.promoted) == (0, 0)  # decided once, in the first run

    sent = [json.loads(line) for line in (tmp_path / "sales.jsonl").read_text().splitlines()]
    assert {m["lead_id"] for m in sent} == hot - held  # held-out leads never reach sales
    assert len(sent) == len(hot - held)

    engine = open_engine(cfg.state_store_url)
    assert engine.dialect.name == store
    log = promotion_decisions(engine)
    assert set(log.loc[log["held_out"], "lead_id"]) == held
    assert set(log.loc[~log["held_out"], "lead_id"]) == hot - held
    assert (log["number"] == 1).all() and log["decided_at"].notna().all()


def test_the_holdout_share_is_checked_by_the_config(tmp_path) -> None:
    tree = jobs_tree(tmp_path)
    tree["jobs"]["promotion"]["holdout"] = 0.7
    with pytest.raises(ConfigError, match="holdout"):
        config_of(tmp_path, tree)

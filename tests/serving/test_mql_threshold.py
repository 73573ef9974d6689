"""One MQL threshold: the API's is_mql, `funnel score` and `funnel jobs promote-leads` agree lead for
lead, with and without `jobs.promotion.threshold`, and each reports the threshold in force."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import features.store
import training.registry
from activation import lead_promotion
from activation.lead_promotion import run_promotion
from activation.state import open_engine, promotions, rows_of
from core.config import Config
from serving.batch import score_leads
from training.scoring import mql_threshold

BATCH = "/v1/leads/score_batch"
API_KEY = "threshold-test-key"


def test_the_configured_threshold_wins_over_the_models() -> None:
    assert mql_threshold(0.4, None) == 0.4
    assert mql_threshold(0.4, 0.6) == 0.6
    assert mql_threshold(None, 0.3) == 0.3  # a scores file carries no model threshold
    with pytest.raises(ValueError, match="jobs.promotion.threshold is not set"):
        mql_threshold(None, None)


def with_threshold(cfg: Config, threshold: float | None, state_store: str) -> Config:
    """``cfg`` with ``jobs.promotion.threshold``, its own state store, no daily cap to speak of
    (every MQL is promoted at once) and an API key."""
    promotion = cfg.jobs.promotion.model_copy(update={"threshold": threshold, "daily_cap": 10**6})
    jobs = cfg.jobs.model_copy(update={"promotion": promotion, "state_store": state_store})
    serving = cfg.serving.model_copy(update={"api_key": API_KEY})
    return cfg.model_copy(update={"jobs": jobs, "serving": serving})


def api_scores(make_client: Any, tiny: Any, cfg: Config, lead_ids: list[str]) -> list[dict]:
    results = []
    with make_client(cfg, tiny.store, tiny.model) as client:
        client.headers["X-API-Key"] = API_KEY
        for start in range(0, len(lead_ids), cfg.serving.max_batch):
            chunk = lead_ids[start : start + cfg.serving.max_batch]
            response = client.post(BATCH, json={"leads": [{"lead_id": i} for i in chunk]})
            assert response.status_code == 200, response.text
            assert not response.json()["not_found"]
            results += response.json()["results"]
    return results


def promoted_leads(cfg: Config, tiny: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[set, float]:
    """`funnel jobs promote-leads --all` with the tiny model as the champion: the leads it decided
    are MQLs (promoted, or held back from sales by the holdout) and the threshold it reports."""
    monkeypatch.setattr(training.registry, "load_model", lambda *_a, **_k: tiny.model)
    monkeypatch.setattr(features.store, "feature_store", lambda _cfg: tiny.store)
    for name, value in (("load_model", tiny.model), ("feature_store", tiny.store)):
        if hasattr(lead_promotion, name):  # imported at module top
            monkeypatch.setattr(lead_promotion, name, lambda *_a, _v=value, **_k: _v)
    report = run_promotion(cfg, all_leads=True, send=False, progress=False)
    assert report.thresholds is not None
    engine = open_engine(cfg.state_store_url)
    try:
        promoted = {row["lead_id"] for row in rows_of(engine, promotions)}
    finally:
        engine.dispose()
    assert report.promoted + report.held_out == len(promoted)
    return promoted, report.thresholds.promote


def a_threshold_that_moves_the_line(probabilities: np.ndarray, model_threshold: float) -> float:
    """A threshold halfway between two of the leads' probabilities that flags two more (or two
    fewer) of them than the model's own threshold does."""
    p = np.sort(probabilities)[::-1]
    flagged = int((p >= model_threshold).sum())
    k = flagged + 2 if flagged + 2 < len(p) else flagged - 2
    assert 0 < k < len(p), "the test leads are too few to move the line"
    return float((p[k - 1] + p[k]) / 2)


@pytest.mark.parametrize("configured", [False, True], ids=["model-threshold", "configured"])
def test_api_batch_scoring_and_promotion_agree_on_who_is_an_mql(
    configured, tiny, latest_leads, make_client, monkeypatch, tmp_path
):
    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    threshold = None
    if configured:
        offline = score_leads(
            tiny.cfg, as_of=tiny.latest, model=tiny.model, store=tiny.store, progress=False
        ).scores.set_index("lead_id")
        threshold = a_threshold_that_moves_the_line(
            offline.loc[latest_leads, "probability"].to_numpy(), tiny.model.threshold
        )
    cfg = with_threshold(tiny.cfg, threshold, f"sqlite:///{tmp_path / 'jobs.db'}")
    in_force = threshold if configured else tiny.model.threshold

    api = {r["lead_id"]: r for r in api_scores(make_client, tiny, cfg, latest_leads)}
    batch = score_leads(cfg, as_of=tiny.latest, model=tiny.model, store=tiny.store, progress=False)
    by_id = batch.scores.set_index("lead_id")
    promoted, promote_threshold = promoted_leads(cfg, tiny, monkeypatch)

    assert [r["threshold"] for r in api.values()] == pytest.approx([in_force] * len(api))
    assert batch.threshold == pytest.approx(in_force)
    assert promote_threshold == pytest.approx(in_force)
    api_mql = {i for i in latest_leads if api[i]["is_mql"]}
    assert api_mql == {i for i in latest_leads if by_id.loc[i, "is_mql"]}
    assert api_mql == promoted & set(latest_leads)
    assert api_mql == {i for i in latest_leads if api[i]["probability"] >= in_force}
    if configured:  # the configured threshold did move the line on these leads
        model_mql = {i for i in latest_leads if api[i]["probability"] >= tiny.model.threshold}
        assert api_mql != model_mql

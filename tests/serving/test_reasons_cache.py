"""Reasons served from the reasons cache are TreeSHAP's, on the features being served: the same
top three features, signs and order as ``booster.predict(pred_contrib=True)`` computed here
on the row read from the online store; fresh after a re-materialization (even one that keeps
the rows' timestamps) and under a new model; the cache stays within its size; a request-time
title is explained on the request's own features; and a slow online read holds only its own
request, never the event loop. The next-best-offer's uplift cache: the model's own uplift on
the features being served, precomputed by the service, fresh after a re-materialization and
under a new model."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from tiny_pipeline import tiny_config

from app.pipeline import materialize_features
from core.offers import load_offers
from features.store import apply, feature_store
from serving.online import materialization_stamp
from serving.reason_cache import BackgroundPrecompute, CachedExplainer, ReasonCache
from serving.schemas import LeadScoreRequest, NextBestOfferRequest
from serving.scorer import AccountScorer, LeadScorer, OfferRanker
from training.nbo_model import NboModel
from training.scoring import ScoringModel

SCORE = "/v1/leads/score"


def treeshap_top3(model: ScoringModel, data: dict[str, list]) -> tuple[float, list[tuple]]:
    """Reference for one row: the calibrated probability and the top three (feature, sign,
    contribution) of LightGBM's own pred_contrib, ordered by size (ties in feature order)."""
    x = model.matrix(data)
    contrib = model.booster.predict(x, pred_contrib=True, num_threads=1)[0, :-1]
    raw = model.booster.predict(x, raw_score=True, num_threads=1)[0]
    order = [int(i) for i in np.argsort(-np.abs(contrib), kind="stable")[:3] if contrib[i] != 0]
    top = [
        (model.feature_names[i], "raises" if contrib[i] >= 0 else "lowers", float(contrib[i]))
        for i in order
    ]
    return float(model.calibrate(np.asarray([raw]))[0]), top


def served_top3(body: dict[str, Any]) -> list[tuple]:
    return [(r["feature"], r["direction"], r["contribution"]) for r in body["reasons"]]


def assert_equal_reasons(served: list[tuple], reference: list[tuple]) -> None:
    assert [(f, d) for f, d, _ in served] == [(f, d) for f, d, _ in reference]
    assert [c for *_, c in served] == pytest.approx([c for *_, c in reference], rel=1e-9)


def served_features(store: Any, model: ScoringModel, lead_id: str, title: str | None = None):
    reader = LeadScorer(store, model, cache_rows=0)
    data, not_found = reader.features([LeadScoreRequest(lead_id=lead_id, job_title=title)])
    assert not not_found
    return data


@pytest.fixture
def keyed(make_client: Callable[..., Any], api_key: str, monkeypatch: pytest.MonkeyPatch):
    """A client factory for (cfg, store, models) with the API key set."""
    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)

    def factory(cfg: Any, store: Any, models: Any):
        serving = cfg.serving.model_copy(update={"api_key": api_key})
        client = make_client(cfg.model_copy(update={"serving": serving}), store, models)
        client.headers["X-API-Key"] = api_key
        return client

    return factory


def test_served_reasons_are_treeshaps_top_three_on_the_served_features(
    tiny: Any, keyed: Callable[..., Any], latest_leads: list[str]
) -> None:
    with keyed(tiny.cfg, tiny.store, tiny.model) as client:
        for lead_id in latest_leads[:12]:
            first = client.post(SCORE, json={"lead_id": lead_id})
            again = client.post(SCORE, json={"lead_id": lead_id})  # from the cache
            assert first.status_code == again.status_code == 200
            prob, reference = treeshap_top3(
                tiny.model, served_features(tiny.store, tiny.model, lead_id)
            )
            for body in (first.json(), again.json()):
                assert len(body["reasons"]) == 3
                assert_equal_reasons(served_top3(body), reference)
                assert body["probability"] == pytest.approx(prob, rel=1e-12)
            assert first.json()["reasons"] == again.json()["reasons"]


def test_precomputed_rows_are_served_without_computing_treeshap_again(
    tiny: Any, latest_leads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = LeadScorer(tiny.store, tiny.model)
    computed = scorer.precompute(latest_leads, num_threads=1, chunk=7)
    assert computed == len(latest_leads) == len(scorer.explainer.cache)

    def no_treeshap(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("TreeSHAP ran for a precomputed row")

    monkeypatch.setattr(tiny.model, "contributions", no_treeshap)
    for lead_id in latest_leads:
        [result], _ = scorer.score([LeadScoreRequest(lead_id=lead_id)])
        monkeypatch.undo()
        prob, reference = treeshap_top3(
            tiny.model, served_features(tiny.store, tiny.model, lead_id)
        )
        monkeypatch.setattr(tiny.model, "contributions", no_treeshap)
        served = [(r.feature, r.direction, r.contribution) for r in result.reasons]
        assert_equal_reasons(served, reference)
        assert result.probability == pytest.approx(prob, rel=1e-12)
    assert scorer.explainer.cache.hits == len(latest_leads)
    assert scorer.explainer.cache.misses == 0


def test_cached_answers_equal_predict_explain_exactly(tiny: Any, latest_leads: list[str]) -> None:
    scorer = LeadScorer(tiny.store, tiny.model)
    data, _ = scorer.features([LeadScoreRequest(lead_id=i) for i in latest_leads])
    expected = tiny.model.predict_explain(data, 3, num_threads=1)
    for _ in range(2):  # computed, then from the cache
        probs, reasons = scorer.explainer.predict_explain(data, num_threads=1)
        assert probs.tolist() == expected[0].tolist()
        assert reasons == expected[1]


def _private_store(tiny: Any, base: Any) -> tuple[Any, Any]:
    """A copy of the tiny pipeline's data with its own registry and online store."""
    cfg = tiny_config(base)
    shutil.copytree(tiny.cfg.data_dir, cfg.data_dir)
    store = feature_store(cfg)
    apply(store, cfg.data_dir)  # the sources now point at the copy's tables
    return cfg, feature_store(cfg)


def test_after_rematerialization_the_served_reasons_are_those_of_the_new_features(
    tiny: Any, keyed: Callable[..., Any], latest_leads: list[str], tmp_path: Any
) -> None:
    """New values under the same event timestamps: a cache keyed by timestamps would serve the
    old reasons; the served ones must be TreeSHAP's on the values now in the store."""
    cfg, store = _private_store(tiny, tmp_path)
    leads = latest_leads[:6]
    with keyed(cfg, store, tiny.model) as client:
        before = {i: client.post(SCORE, json={"lead_id": i}).json() for i in leads}
        old = {i: served_features(store, tiny.model, i) for i in leads}

        path = cfg.features_dir / "lead_behavior.parquet"
        behavior = pd.read_parquet(path)
        rows = behavior["lead_id"].isin(leads) & (behavior["event_timestamp"] == tiny.latest)
        counts = [c for c in behavior.columns if c.endswith(("_7d", "_30d", "_90d"))]
        behavior.loc[rows, counts] = behavior.loc[rows, counts].fillna(0) * 7 + 40
        behavior.to_parquet(path, index=False)
        materialize_features(cfg)

        changed = 0
        for lead_id in leads:
            new = served_features(store, tiny.model, lead_id)
            assert new["events_30d"] != old[lead_id]["events_30d"]
            assert new["lead_behavior_fv__ts"] == old[lead_id]["lead_behavior_fv__ts"]
            body = client.post(SCORE, json={"lead_id": lead_id}).json()
            prob, reference = treeshap_top3(tiny.model, new)
            assert_equal_reasons(served_top3(body), reference)
            assert body["probability"] == pytest.approx(prob, rel=1e-12)
            changed += body["probability"] != before[lead_id]["probability"]
        assert changed >= len(leads) // 2  # the edit moved the scores: the check has teeth


def test_a_new_model_serves_its_own_scores_and_reasons(
    tiny: Any, keyed: Callable[..., Any], latest_leads: list[str]
) -> None:
    short = lgb.Booster(model_str=tiny.model.booster.model_to_string(num_iteration=8))
    newer = ScoringModel(short, tiny.model.meta, version="funnel-mql/tiny-next")
    leads = latest_leads[:8]
    with keyed(tiny.cfg, tiny.store, tiny.model) as client:
        old = {i: client.post(SCORE, json={"lead_id": i}).json() for i in leads}
    with keyed(tiny.cfg, tiny.store, newer) as client:
        new = {i: client.post(SCORE, json={"lead_id": i}).json() for i in leads}
    differ = 0
    for lead_id in leads:
        assert new[lead_id]["model_version"] == "funnel-mql/tiny-next"
        prob, reference = treeshap_top3(newer, served_features(tiny.store, newer, lead_id))
        assert_equal_reasons(served_top3(new[lead_id]), reference)
        assert new[lead_id]["probability"] == pytest.approx(prob, rel=1e-12)
        differ += new[lead_id]["probability"] != old[lead_id]["probability"]
    assert differ == len(leads)
    # one row, two models: two keys
    x = tiny.model.matrix(served_features(tiny.store, tiny.model, leads[0]))
    assert CachedExplainer(tiny.model, 3, 10).keys(x) != CachedExplainer(newer, 3, 10).keys(x)


def test_the_cache_holds_at_most_its_size_and_evicts_the_least_recently_used() -> None:
    cache = ReasonCache(max_rows=3)
    entry = (0.5, (1,), (0.1,))
    cache.put_many([(b"a", entry), (b"b", entry), (b"c", entry)])
    assert cache.get_many([b"a"]) == [entry]  # a is now the most recent
    cache.put_many([(b"d", entry), (b"e", entry)])
    assert len(cache) == 3
    assert cache.get_many([b"a", b"b", b"c", b"d", b"e"]) == [entry, None, None, entry, entry]
    with pytest.raises(ValueError, match="max_rows"):
        ReasonCache(-1)


def test_a_small_cache_stays_small_and_still_answers_exactly(
    tiny: Any, latest_leads: list[str]
) -> None:
    scorer = LeadScorer(tiny.store, tiny.model, cache_rows=5)
    for lead_id in latest_leads:
        [result], _ = scorer.score([LeadScoreRequest(lead_id=lead_id)])
        assert len(scorer.explainer.cache) <= 5
        _, reference = treeshap_top3(tiny.model, served_features(tiny.store, tiny.model, lead_id))
        assert_equal_reasons([(r.feature, r.direction, r.contribution) for r in result.reasons],
                             reference)  # fmt: skip
    assert len(scorer.explainer.cache) == 5
    off = LeadScorer(tiny.store, tiny.model, cache_rows=0)
    off.score([LeadScoreRequest(lead_id=latest_leads[0])])
    assert len(off.explainer.cache) == 0


def test_a_request_time_title_is_explained_on_the_requests_own_features(
    tiny: Any, keyed: Callable[..., Any], latest_leads: list[str]
) -> None:
    title = "Chief Executive Officer"
    stored = [
        i for i in latest_leads
        if not served_features(tiny.store, tiny.model, i)["is_decision_maker"][0]
    ]  # fmt: skip
    assert stored, "no lead without a decision-making title among the latest leads"
    lead_id = stored[0]
    with keyed(tiny.cfg, tiny.store, tiny.model) as client:
        plain = client.post(SCORE, json={"lead_id": lead_id}).json()
        titled = client.post(SCORE, json={"lead_id": lead_id, "job_title": title}).json()
    features = served_features(tiny.store, tiny.model, lead_id, title)
    assert features["is_decision_maker"][0]
    prob, reference = treeshap_top3(tiny.model, features)
    assert_equal_reasons(served_top3(titled), reference)
    assert titled["probability"] == pytest.approx(prob, rel=1e-12)
    assert titled["probability"] != plain["probability"]


def test_churn_reasons_are_treeshaps_top_three(tiny: Any, keyed: Callable[..., Any]) -> None:
    usage = pd.read_parquet(tiny.cfg.features_dir / "account_usage.parquet")
    newest = usage[(usage["event_timestamp"] == tiny.latest) & (usage["is_customer"] >= 1)]
    accounts = sorted(newest["account_id"].astype(str))[:6]
    assert accounts
    reader = AccountScorer(tiny.store, tiny.churn, cache_rows=0)
    with keyed(tiny.cfg, tiny.store, tiny.models) as client:
        for account_id in accounts:
            for _ in range(2):  # computed, then cached
                response = client.post("/v1/accounts/churn_risk", json={"account_id": account_id})
                assert response.status_code == 200, response.text
                prob, reference = treeshap_top3(tiny.churn, reader._read([account_id]))
                assert_equal_reasons(served_top3(response.json()), reference)
                assert response.json()["probability"] == pytest.approx(prob, rel=1e-12)


def test_background_precompute_runs_at_start_and_after_each_materialization() -> None:
    stamp = {"value": 1}
    fills: list[int] = []
    done = threading.Event()

    def fill() -> int:
        fills.append(stamp["value"])
        return 10

    runner = BackgroundPrecompute(fill, lambda: stamp["value"], poll_s=0.02, after_fill=done.set)
    runner.start()
    try:
        assert runner.done.wait(5)
        time.sleep(0.1)
        assert fills == [1]  # nothing new materialized: no second fill
        stamp["value"] = 2
        deadline = time.monotonic() + 5
        while len(fills) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fills == [1, 2]
    finally:
        runner.stop()


def test_the_materialization_stamp_changes_with_each_materialization(
    tiny: Any, tmp_path: Any
) -> None:
    cfg, store = _private_store(tiny, tmp_path)
    materialize_features(cfg)
    before = materialization_stamp(store)
    assert before == materialization_stamp(store)
    materialize_features(cfg)
    assert materialization_stamp(store) != before


def test_a_slow_online_read_holds_its_own_request_not_the_event_loop(
    tiny: Any, keyed: Callable[..., Any], latest_leads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A read that takes 1.5 s (a Redis about to time out): /livez answers meanwhile."""
    original = LeadScorer.features

    def slow(self: LeadScorer, requests: Any) -> Any:
        time.sleep(1.5)
        return original(self, requests)

    monkeypatch.setattr(LeadScorer, "features", slow)
    with keyed(tiny.cfg, tiny.store, tiny.model) as client:
        answer: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: answer.update(r=client.post(SCORE, json={"lead_id": latest_leads[0]}))
        )
        worker.start()
        time.sleep(0.2)  # the score request is now inside its read
        started = time.perf_counter()
        live = client.get("/livez")
        waited = time.perf_counter() - started
        worker.join(10)
    assert live.status_code == 200
    assert waited < 0.8, f"/livez waited {waited:.2f} s behind a slow read"
    assert answer["r"].status_code == 200


# -- next best offer ----------------------------------------------------------------------------
def ranker(tiny: Any, store: Any, model: NboModel, cache_rows: int = 1000) -> OfferRanker:
    return OfferRanker(
        store, model, load_offers(tiny.cfg), tiny.cfg.stages, 0.0, cache_rows=cache_rows
    )


def served_uplift(r: OfferRanker, lead_id: str) -> dict[str, float]:
    answer = r.recommend(NextBestOfferRequest(lead_id=lead_id))
    assert answer is not None
    return {o.offer_id: o.uplift for o in answer.offers}


def model_uplift(r: OfferRanker, lead_id: str) -> dict[str, float]:
    """The reference: the model's uplift on the features read now, no cache."""
    data, _ = r.reader.features([NextBestOfferRequest(lead_id=lead_id)])
    row = r.model.uplift(data)[0]
    ranked = served_uplift(r, lead_id)
    return {o: float(row[r.model.offers.index(o)]) for o in ranked}


def test_precomputed_uplift_is_the_models_and_served_without_the_boosters(
    tiny: Any, latest_leads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = ranker(tiny, tiny.store, tiny.nbo)
    assert r.precompute(latest_leads, chunk=7) == len(latest_leads) == len(r.uplift.cache)
    reference = {i: model_uplift(r, i) for i in latest_leads}
    assert any(reference.values())  # leads with eligible offers: the check has teeth

    def no_boosters(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the boosters ran for a precomputed row")

    monkeypatch.setattr(tiny.nbo, "uplift_of", no_boosters)
    for lead_id in latest_leads:
        assert served_uplift(r, lead_id) == reference[lead_id]  # exactly
    assert r.uplift.cache.misses == 0


def test_a_small_uplift_cache_stays_small_and_answers_as_no_cache(
    tiny: Any, latest_leads: list[str]
) -> None:
    small, none = ranker(tiny, tiny.store, tiny.nbo, 3), ranker(tiny, tiny.store, tiny.nbo, 0)
    for lead_id in latest_leads * 2:
        assert served_uplift(small, lead_id) == served_uplift(none, lead_id)
        assert len(small.uplift.cache) <= 3
    assert len(none.uplift.cache) == 0


def test_after_rematerialization_the_served_uplift_is_that_of_the_new_features(
    tiny: Any, latest_leads: list[str], tmp_path: Any
) -> None:
    """New values under the same event timestamps, as for the reasons."""
    cfg, store = _private_store(tiny, tmp_path)
    leads = latest_leads[:8]
    r = ranker(tiny, store, tiny.nbo)
    r.precompute(leads)
    before = {i: served_uplift(r, i) for i in leads}

    path = cfg.features_dir / "lead_behavior.parquet"
    behavior = pd.read_parquet(path)
    rows = behavior["lead_id"].isin(leads) & (behavior["event_timestamp"] == tiny.latest)
    counts = [c for c in behavior.columns if c.endswith(("_7d", "_30d", "_90d"))]
    behavior.loc[rows, counts] = behavior.loc[rows, counts].fillna(0) * 7 + 40
    behavior.to_parquet(path, index=False)
    materialize_features(cfg)

    changed = 0
    for lead_id in leads:
        served = served_uplift(r, lead_id)
        assert served == model_uplift(ranker(tiny, store, tiny.nbo, 0), lead_id)
        changed += served != before[lead_id]
    assert changed >= len(leads) // 2  # the edit moved the uplift: the check has teeth


def test_a_new_nbo_model_serves_its_own_uplift(tiny: Any, latest_leads: list[str]) -> None:
    learner = tiny.nbo.learner
    shifted = NboModel(learner, tiny.nbo.meta, version="funnel-nbo/tiny-next")
    shifted.uplift_of = lambda x: learner.predict(x) + 0.5  # type: ignore[method-assign]
    old = ranker(tiny, tiny.store, tiny.nbo)
    new = ranker(tiny, tiny.store, shifted)
    old.precompute(latest_leads)
    for lead_id in latest_leads[:5]:
        before, after = served_uplift(old, lead_id), served_uplift(new, lead_id)
        assert after == pytest.approx({o: u + 0.5 for o, u in before.items()}, abs=1e-12)


def test_the_service_precomputes_every_leads_uplift(tiny: Any) -> None:
    from serving.service import FunnelService

    service = FunnelService.inner.__new__(FunnelService.inner)
    service.attach(tiny.cfg, tiny.store, tiny.models)
    try:
        assert service.precompute is not None and service.precompute.done.wait(120)
        r = service.ranker
        assert r is not None and len(r.uplift.cache) > 0
        leads = pd.read_parquet(tiny.cfg.features_dir / "lead_profile.parquet")["lead_id"]
        for lead_id in leads.drop_duplicates().sample(30, random_state=0):
            r.recommend(NextBestOfferRequest(lead_id=lead_id))
        assert (r.uplift.cache.hits, r.uplift.cache.misses) == (30, 0)
    finally:
        service.precompute.stop()

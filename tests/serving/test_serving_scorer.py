"""LeadScorer and the request schemas on tiny hand-made inputs (no Feast, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from serving.schemas import BatchRequest, LeadScoreRequest
from serving.scorer import FeatureContractError, LeadScorer, newest_timestamps
from training.scoring import BundleMeta, ScoringModel

FEATURES = ["events_30d", "industry", "is_decision_maker", "title_seniority", "annual_revenue"]
CATEGORIES = {"industry": ["finance", "software"], "title_seniority": ["c_level", "unknown", "vp"]}
TICK = 1_767_571_200  # 2026-01-05 00:00 UTC


class FakeStore:
    """Serves a fixed online response; records the entity rows it was asked for."""

    def __init__(self, profiles: dict[str, str], features: dict[str, dict], served=FEATURES):
        self.profiles, self.rows, self.calls = profiles, features, []
        self.profile_fields = ["lead_account_id", "job_title", "source"]
        self.service = SimpleNamespace(
            feature_view_projections=[
                SimpleNamespace(features=[SimpleNamespace(name=n) for n in served])
            ]
        )

    def get_feature_service(self, name: str):
        return self.service

    def get_feature_view(self, name: str):
        assert name == "lead_profile_fv"
        return SimpleNamespace(features=[SimpleNamespace(name=n) for n in self.profile_fields])

    def get_online_features(self, features, entity_rows):
        self.calls.append((features, entity_rows))
        ids = list(entity_rows["lead_id"])
        if features == ["lead_profile_fv:lead_account_id"]:
            data = {"lead_id": ids, "lead_account_id": [self.profiles.get(i) for i in ids]}
        else:
            data = {
                "lead_id": ids,
                "lead_id__ts": [0] * len(ids),
                "account_id": list(entity_rows["account_id"]),
                "account_id__ts": [0] * len(ids),
            }
            for name in FEATURES:
                data[name] = [self.rows[i][name] for i in ids]
                data[f"{name}__ts"] = [self.rows[i].get("_ts", TICK) for i in ids]
            data["title_seniority__ts"] = [0] * len(ids)  # on-demand: no event time
        return SimpleNamespace(to_dict=lambda include_event_timestamps=False: data)


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "events_30d": rng.poisson(3, n).astype(float),
            "industry": rng.choice(["finance", "software"], n),
            "is_decision_maker": rng.integers(0, 2, n).astype(bool),
            "title_seniority": rng.choice(["c_level", "unknown", "vp"], n),
            "annual_revenue": rng.uniform(1e5, 1e7, n),
        }
    )
    y = rng.uniform(size=n) < 0.2 + 0.05 * frame["events_30d"] + 0.2 * frame["is_decision_maker"]
    meta = BundleMeta("mql", "mql_v1", FEATURES, CATEGORIES, {"a": 0.8, "b": -0.2}, 0.45)
    x = ScoringModel(None, meta).matrix(frame)  # type: ignore[arg-type]
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 10, "verbose": -1},
        lgb.Dataset(
            x,
            y.astype(int),
            feature_name=FEATURES,
            categorical_feature=["industry", "title_seniority"],
        ),
        num_boost_round=25,
    )
    return ScoringModel(booster, meta, version="m/1")


ROWS = {
    "L1": {
        "events_30d": 4.0,
        "industry": "software",
        "is_decision_maker": True,
        "title_seniority": "vp",
        "annual_revenue": 2e6,
    },
    # missing values, an unseen category, a stray string in a numeric column
    "L2": {
        "events_30d": None,
        "industry": "mining",
        "is_decision_maker": False,
        "title_seniority": None,
        "annual_revenue": "n/a",
        "_ts": TICK - 86_400,
    },
    "L3": {
        "events_30d": 0.0,
        "industry": "finance",
        "is_decision_maker": False,
        "title_seniority": "unknown",
        "annual_revenue": float("nan"),
    },
}
PROFILES = {"L1": "A1", "L2": "A2", "L3": "A1"}


def test_matrix_and_predictions_match_the_model_on_a_dataframe(model):
    scorer = LeadScorer(FakeStore(PROFILES, ROWS), model, reads="feast")
    data = {name: [ROWS[i][name] for i in ROWS] for name in FEATURES}
    frame = pd.DataFrame(data)
    data["lead_id"] = list(ROWS)
    np.testing.assert_array_equal(model.matrix(data), model.matrix(frame))
    probs, reasons = scorer.predict(data)
    np.testing.assert_array_equal(probs, model.predict_proba(frame))
    expected = model.explain(frame, top_k=3)
    # same reasons; a missing value is None here and NaN in a DataFrame
    assert [[(r.feature, r.contribution, r.text) for r in row] for row in reasons] == [
        [(r.feature, r.contribution, r.text) for r in row] for row in expected
    ]


def test_large_batches_give_the_same_predictions(model):
    # above SINGLE_THREAD_ROWS LightGBM runs multi-threaded; the numbers must not change
    scorer = LeadScorer(FakeStore(PROFILES, ROWS), model, reads="feast")
    data = {name: [ROWS[i][name] for i in ROWS] * 20 for name in FEATURES}
    probs, reasons = scorer.predict(data)
    assert len(probs) == 60
    np.testing.assert_array_equal(probs, model.predict_proba(pd.DataFrame(data)))
    assert [r.contribution for r in reasons[59]] == [r.contribution for r in reasons[2]]


def test_score_assembles_results_in_request_order_with_freshness(model):
    store = FakeStore(PROFILES, ROWS)
    scorer = LeadScorer(store, model, clock=lambda: TICK + 3600.0, reads="feast")
    requests = [LeadScoreRequest(lead_id=i) for i in ("L3", "nobody", "L2", "L1")]
    results, not_found = scorer.score(requests)
    assert not_found == ["nobody"]
    assert [r.lead_id for r in results] == ["L3", "L2", "L1"]
    assert len(store.calls) == 2, "one profile read and one feature-service read per batch"
    entity_rows = store.calls[1][1]
    assert entity_rows == {
        "lead_id": ["L3", "L2", "L1"],
        "account_id": ["A1", "A2", "A1"],
        "request_job_title": ["", "", ""],
    }
    frame = pd.DataFrame({n: [ROWS[r.lead_id][n] for r in results] for n in FEATURES})
    np.testing.assert_array_equal([r.probability for r in results], model.predict_proba(frame))
    for r in results:
        assert r.score == model.score(r.probability)
        assert r.is_mql == (r.probability >= 0.45)
        assert (r.model_version, r.feature_service, r.threshold) == ("m/1", "mql_v1", 0.45)
        assert len(r.reasons) <= 3
    # L2's features are all a day older: its newest feature row is the day before the tick
    assert results[0].features_as_of == datetime.fromtimestamp(TICK, UTC)
    assert results[1].features_as_of == datetime.fromtimestamp(TICK - 86_400, UTC)
    assert results[0].feature_age_seconds == 3600.0
    assert results[1].feature_age_seconds == 86_400 + 3600.0


def test_reason_values_are_json_safe(model):
    scorer = LeadScorer(FakeStore(PROFILES, ROWS), model, reads="feast")
    results, _ = scorer.score([LeadScoreRequest(lead_id="L3"), LeadScoreRequest(lead_id="L2")])
    for result in results:
        for reason in result.reasons:
            assert reason.value is None or isinstance(reason.value, (bool, int, float, str))
            assert not (isinstance(reason.value, float) and np.isnan(reason.value))
    assert results[0].model_dump_json()


def test_request_title_is_passed_to_the_feature_service(model):
    store = FakeStore(PROFILES, ROWS)
    LeadScorer(store, model, reads="feast").score(
        [LeadScoreRequest(lead_id="L1", job_title=" CTO ")]
    )
    assert store.calls[1][1]["request_job_title"] == ["CTO"]


def test_all_unknown_makes_a_single_read(model):
    store = FakeStore(PROFILES, ROWS)
    assert LeadScorer(store, model, reads="feast").score([LeadScoreRequest(lead_id="x")]) == (
        [],
        ["x"],
    )
    assert len(store.calls) == 1


def test_a_feature_the_service_does_not_serve_is_refused_at_construction(model):
    store = FakeStore(PROFILES, ROWS, served=FEATURES[:-1])
    with pytest.raises(FeatureContractError, match="annual_revenue"):
        LeadScorer(store, model, reads="feast")


def test_a_profile_view_without_account_id_is_refused_at_construction(model):
    store = FakeStore(PROFILES, ROWS)
    store.profile_fields = ["job_title", "source"]
    with pytest.raises(FeatureContractError, match="does not serve 'lead_account_id'"):
        LeadScorer(store, model, reads="feast")


def test_newest_timestamps_ignore_keys_and_on_demand_features():
    data = {
        "lead_id": ["a", "b"],
        "lead_id__ts": [9e9, 9e9],
        "x": [1, 2],
        "x__ts": [5, 0],
        "y": [1, 2],
        "y__ts": [7, 0],
        "request_job_title__ts": [9e9, 9e9],
    }
    assert newest_timestamps(data) == [7, 0]


# -- schemas -----------------------------------------------------------------------------------
def test_lead_id_is_stripped_and_bounded():
    assert LeadScoreRequest(lead_id="  L1 ").lead_id == "L1"
    for bad in ("", "   ", "L" * 65):
        with pytest.raises(ValidationError, match="lead_id"):
            LeadScoreRequest(lead_id=bad)


def test_batch_size_check_names_the_field():
    batch = BatchRequest(leads=[{"lead_id": "a"}, {"lead_id": "b"}])
    batch.check_size(2)
    with pytest.raises(ValidationError) as err:
        batch.check_size(1)
    assert err.value.errors()[0]["loc"] == ("leads",)
    assert err.value.errors()[0]["type"] == "too_long"

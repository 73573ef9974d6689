"""The scoring API through FunnelService's real BentoML ASGI app, in process, on a tiny pipeline."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

SCORE = "/v1/leads/score"
BATCH = "/v1/leads/score_batch"
LEAD_SCORE_FIELDS = {
    "lead_id",
    "probability",
    "score",
    "is_mql",
    "threshold",
    "reasons",
    "model_version",
    "feature_service",
    "features_as_of",
    "feature_age_seconds",
}


def fields(response) -> set[str]:
    """The field paths a 422 body names."""
    return {item["field"] for item in response.json()["detail"]}


# -- success ----------------------------------------------------------------------------------
def test_score_returns_every_field_and_three_reasons(client, tiny, latest_leads):
    lead_id = latest_leads[0]
    response = client.post(SCORE, json={"lead_id": lead_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == LEAD_SCORE_FIELDS
    assert body["lead_id"] == lead_id
    assert 0.0 <= body["probability"] <= 1.0
    assert body["score"] == round(100 * body["probability"])
    assert body["is_mql"] == (body["probability"] >= body["threshold"])
    assert body["threshold"] == pytest.approx(tiny.model.threshold)
    assert body["model_version"] == "funnel-mql/tiny"
    assert body["feature_service"] == "mql_v1"
    assert pd.Timestamp(body["features_as_of"]) == tiny.latest
    assert body["feature_age_seconds"] > 0
    assert len(body["reasons"]) == 3
    for reason in body["reasons"]:
        assert set(reason) == {"text", "feature", "value", "direction", "contribution"}
        assert reason["feature"] in tiny.model.feature_names
        assert reason["direction"] == ("raises" if reason["contribution"] >= 0 else "lowers")
        assert reason["text"]
    strengths = [abs(r["contribution"]) for r in body["reasons"]]
    assert strengths == sorted(strengths, reverse=True)


def test_lead_id_is_stripped(client, latest_leads):
    response = client.post(SCORE, json={"lead_id": f"  {latest_leads[0]} "})
    assert response.status_code == 200
    assert response.json()["lead_id"] == latest_leads[0]


def test_bearer_token_is_accepted(client, api_key, latest_leads):
    del client.headers["X-API-Key"]
    response = client.post(
        SCORE, json={"lead_id": latest_leads[0]}, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200


# -- errors ------------------------------------------------------------------------------------
def test_unknown_lead_is_404_naming_it(client):
    response = client.post(SCORE, json={"lead_id": "L123"})
    assert response.status_code == 404
    assert response.json() == {"detail": "lead 'L123' not found"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (SCORE, {}, "lead_id"),
        (SCORE, {"job_title": "CEO"}, "lead_id"),
        (SCORE, {"lead_id": 42}, "lead_id"),
        (SCORE, {"lead_id": ["L1"]}, "lead_id"),
        (SCORE, {"lead_id": "   "}, "lead_id"),
        (SCORE, {"lead_id": "L" * 65}, "lead_id"),
        (SCORE, {"lead_id": "L1", "jobtitle": "CEO"}, "jobtitle"),
        (SCORE, {"lead_id": "L1", "job_title": "x" * 201}, "job_title"),
        (SCORE, {"lead_id": "L1", "job_title": 7}, "job_title"),
        (BATCH, {"leads": []}, "leads"),
        (BATCH, {}, "leads"),
        (BATCH, {"leads": [{"lead_id": f"L{i}"} for i in range(21)]}, "leads"),
        (BATCH, {"leads": [{"lead_id": "L1"}, {"id": "L2"}]}, "leads.1.id"),
        (BATCH, {"leads": [{"lead_id": "L1"}], "extra": 1}, "extra"),
    ],
    ids=[
        "missing-id",
        "only-title",
        "id-int",
        "id-list",
        "id-blank",
        "id-too-long",
        "typo-field",
        "title-too-long",
        "title-int",
        "empty-batch",
        "no-leads",
        "batch-over-max",
        "typo-in-batch-item",
        "batch-extra-field",
    ],
)
def test_malformed_body_is_422_naming_the_field(client, path, body, field):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert field in fields(response), response.json()


def test_body_that_is_not_json_is_422(client):
    response = client.post(
        SCORE, content=b"{lead_id:", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "KEY"},
        {"X-API-Key": ""},
    ],
    ids=["missing", "wrong-header", "wrong-bearer", "not-bearer-scheme", "empty"],
)
@pytest.mark.parametrize("path", [SCORE, BATCH])
def test_missing_or_wrong_key_is_401(client, api_key, latest_leads, headers, path):
    del client.headers["X-API-Key"]
    headers = {k: v.replace("KEY", api_key) for k, v in headers.items()}
    body = {"lead_id": latest_leads[0]} if path == SCORE else {"leads": [{"lead_id": "L1"}]}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]
    assert api_key not in response.text


def test_key_is_checked_before_the_body(client):
    # an unauthenticated caller learns nothing about the request schema
    del client.headers["X-API-Key"]
    assert client.post(SCORE, json={"nonsense": 1}).status_code == 401


def test_without_a_configured_key_scoring_is_open_and_a_warning_logged(
    tiny, make_client, latest_leads, monkeypatch, caplog
):
    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    assert tiny.cfg.api_key() is None
    with (
        caplog.at_level(logging.WARNING, logger="funnel.serving"),
        make_client(tiny.cfg, tiny.store, tiny.model) as open_client,
    ):
        response = open_client.post(SCORE, json={"lead_id": latest_leads[0]})
    assert response.status_code == 200
    assert any("no API key configured" in r.getMessage() for r in caplog.records)


def test_environment_key_wins_and_is_never_logged(
    tiny, make_client, latest_leads, monkeypatch, caplog, capfd
):
    monkeypatch.setenv("FUNNEL_API_KEY", "from-env-123")
    cfg = tiny.cfg.model_copy(  # the file's key is overridden by the environment's
        update={"serving": tiny.cfg.serving.model_copy(update={"api_key": "from-file-456"})}
    )
    for name in (None, "bentoml", "funnel", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    # start-up, a 200, 401s for a guessed key, the file's key, a guessed bearer token, and a
    # 422: none of the keys reaches a log record or the process's stdout/stderr
    with make_client(cfg, tiny.store, tiny.model) as env_client:
        body = {"lead_id": latest_leads[0]}
        answers = [
            env_client.post(SCORE, json=body, headers={"X-API-Key": "from-env-123"}),
            env_client.post(SCORE, json=body),
            env_client.post(SCORE, json=body, headers={"X-API-Key": "guess-789"}),
            env_client.post(SCORE, json=body, headers={"X-API-Key": "from-file-456"}),
            env_client.post(SCORE, json=body, headers={"Authorization": "Bearer guess-789"}),
            env_client.post(SCORE, json={"x": 1}, headers={"X-API-Key": "from-env-123"}),
        ]
    assert [r.status_code for r in answers] == [200, 401, 401, 401, 401, 422]
    captured = capfd.readouterr()
    out = f"{caplog.text}\n{captured.out}\n{captured.err}"
    assert "serving mql model" in out  # start-up was captured
    for secret in ("from-env-123", "from-file-456", "guess-789"):
        assert secret not in out
        assert not any(secret in r.text for r in answers)


# -- behavior ----------------------------------------------------------------------------------
def test_request_job_title_overrides_the_stored_title(client, tiny):
    from serving.schemas import LeadScoreRequest
    from serving.scorer import LeadScorer

    profile = pd.read_parquet(tiny.cfg.features_dir / "lead_profile.parquet")
    lead_id = profile.loc[profile["job_title"] == "", "lead_id"].iloc[0]
    scorer = LeadScorer(tiny.store, tiny.model)
    stored, _ = scorer.features([LeadScoreRequest(lead_id=lead_id)])
    override, _ = scorer.features(
        [LeadScoreRequest(lead_id=lead_id, job_title="Chief Executive Officer")]
    )
    assert stored["title_seniority"] == ["unknown"]
    assert bool(stored["is_decision_maker"][0]) is False
    assert override["title_seniority"] == ["c_level"]
    assert bool(override["is_decision_maker"][0]) is True
    # and the served score follows the title
    plain = client.post(SCORE, json={"lead_id": lead_id}).json()
    ceo = client.post(SCORE, json={"lead_id": lead_id, "job_title": "Chief Executive Officer"})
    assert ceo.status_code == 200
    assert ceo.json()["probability"] != plain["probability"]


def test_blank_request_title_keeps_the_stored_title(client, latest_leads):
    plain = client.post(SCORE, json={"lead_id": latest_leads[1]}).json()
    blank = client.post(SCORE, json={"lead_id": latest_leads[1], "job_title": "   "}).json()
    assert blank["probability"] == plain["probability"]


def test_batch_mixes_found_and_not_found_in_request_order(client, latest_leads):
    a, b = latest_leads[2], latest_leads[3]
    body = {
        "leads": [
            {"lead_id": b},
            {"lead_id": "L-nope"},
            {"lead_id": a},
            {"lead_id": b, "job_title": "VP Marketing"},
            {"lead_id": "X9"},
        ]
    }
    response = client.post(BATCH, json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert [r["lead_id"] for r in out["results"]] == [b, a, b]
    assert out["not_found"] == ["L-nope", "X9"]
    single = client.post(SCORE, json={"lead_id": a}).json()
    assert out["results"][1]["probability"] == single["probability"]


def test_batch_of_only_unknown_leads_is_200_with_all_not_found(client):
    response = client.post(BATCH, json={"leads": [{"lead_id": "nope-1"}, {"lead_id": "nope-2"}]})
    assert response.status_code == 200
    assert response.json() == {"results": [], "not_found": ["nope-1", "nope-2"]}


def test_served_probability_equals_offline_prediction(client, tiny, latest_leads):
    """Training/serving skew: the online path (Feast online store, on-demand title view, the
    service's matrix) gives the offline path's probability on the same rows."""
    response = client.post(BATCH, json={"leads": [{"lead_id": i} for i in latest_leads[:20]]})
    assert response.status_code == 200
    served = response.json()["results"]
    offline = tiny.offline_rows([r["lead_id"] for r in served])
    expected = tiny.model.predict_proba(offline)
    np.testing.assert_allclose([r["probability"] for r in served], expected, rtol=0, atol=1e-9)
    reasons = tiny.model.explain(offline, top_k=3)
    for result, expected_reasons in zip(served, reasons, strict=True):
        assert [r["feature"] for r in result["reasons"]] == [r.feature for r in expected_reasons]
        np.testing.assert_allclose(
            [r["contribution"] for r in result["reasons"]],
            [r.contribution for r in expected_reasons],
            atol=1e-9,
        )


# -- infrastructure routes ----------------------------------------------------------------------
def test_health_and_readiness(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_readiness_fails_when_the_online_store_does_not_answer(client, monkeypatch):
    from serving.online import ServiceReader

    def broken(*_: object) -> None:
        raise ConnectionError("online store down")

    monkeypatch.setattr(ServiceReader, "_fetch", broken)  # every online read
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_openapi_lists_the_versioned_routes_and_the_auth_schemes(client):
    spec = client.get("/docs.json").json()
    assert {SCORE, BATCH, "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert {"ApiKey", "Bearer"} <= set(spec["components"]["securitySchemes"])
    assert "LeadScore" in spec["components"]["schemas"]


def test_service_refuses_a_model_trained_on_another_feature_service(tiny):
    from serving.service import FunnelService

    cfg = tiny.cfg.model_copy(
        update={
            "training": tiny.cfg.training.model_copy(
                update={
                    "mql": tiny.cfg.training.mql.model_copy(update={"feature_service": "mql_v2"})
                }
            ),
            "serving": tiny.cfg.serving.model_copy(update={"models": ["mql"]}),
        }
    )
    service = FunnelService.inner.__new__(FunnelService.inner)
    with pytest.raises(RuntimeError, match="trained on feature service 'mql_v1'.*'mql_v2'"):
        service.attach(cfg, tiny.store, {"mql": tiny.model})

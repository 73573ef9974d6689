"""Hostile input to the scoring API, through the real BentoML ASGI app on the tiny pipeline:
property-based fuzzing of the served OpenAPI document (schemathesis), explicit oversized,
mistyped and unusual requests, and the API key (constant-time comparison, never logged)."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.service import MAX_BODY_BYTES, FunnelService

SCORE = "/v1/leads/score"
BATCH = "/v1/leads/score_batch"
CHURN = "/v1/accounts/churn_risk"
NBO = "/v1/next_best_offer"
FUZZ_KEY = "fuzz-key-0123456789"
JSON = {"Content-Type": "application/json"}


def fields(response) -> set[str]:
    """The field paths a 422 body names."""
    return {item["field"] for item in response.json()["detail"]}


def _with_key(cfg: Any, key: str) -> Any:
    return cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"api_key": key})})


# -- property-based fuzzing of the OpenAPI document ---------------------------------------------
class _LateApp:
    """The ASGI app schemathesis sends to. The schema is loaded when the tests are collected
    (``schemathesis.pytest.from_fixture``, the lazy loader, fails on pytest 9.2: it sets
    ``Node._nodeid``) and binds its operations to its app then; the service app is a session
    fixture (one per process, for BentoML's metrics), so this forwards to the fixture's app."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


LATE_APP = _LateApp()
# The document BentoML serves at /docs.json (test_the_fuzzed_document_is_the_served_one).
# Only the /v1 routes are fuzzed: /healthz, /livez, /readyz and /metrics are BentoML's own,
# take no input, and are documented by BentoML (whose /readyz rightly answers an undocumented
# 503 while the online store is down).
SCHEMA = schemathesis.openapi.from_dict(
    FunnelService.openapi_spec.asdict(),
    config=schemathesis.Config.from_dict(
        {"seed": 7, "auth": {"openapi": {"ApiKey": {"api_key": FUZZ_KEY}}}}
    ),
).include(path_regex=r"^/v1/")
SCHEMA.app = LATE_APP
# Every check that judges a single response against the document, plus ignored_auth, which
# resends each successful request without the key and with a wrong one (expecting 401).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@pytest.fixture
def fuzzed_service(tiny, asgi_app, monkeypatch) -> Iterator[None]:
    """The service with every model and FUZZ_KEY, started by schemathesis on the first request
    (its lifespan) and stopped afterwards."""
    import serving.service as service_module

    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    cfg = _with_key(tiny.cfg, FUZZ_KEY)
    monkeypatch.setattr(service_module, "load_parts", lambda: (cfg, tiny.store, tiny.models))
    LATE_APP.app = asgi_app
    yield
    shutdown_lifespans()
    LATE_APP.app = None


@pytest.fixture
def statuses(fuzzed_service) -> Iterator[set[int]]:
    """The status codes the fuzzer saw: they must show it got past the key and the schema to
    the models, or the run proved little."""
    seen: set[int] = set()
    yield seen
    assert {401, 422} <= seen and seen & {200, 404}, sorted(seen)


@SCHEMA.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_fuzzed_requests_get_no_5xx_and_documented_answers(case, statuses) -> None:
    statuses.add(case.call_and_validate(checks=CHECKS).status_code)


def test_the_fuzzed_document_is_the_served_one(client) -> None:
    assert client.get("/docs.json").json() == FunnelService.openapi_spec.asdict()


def test_a_real_customer_and_prospect_get_documented_churn_answers(fuzzed_service, tiny) -> None:
    """The fuzzer's ids do not name customers, so check one real 200 against the document."""
    import pandas as pd

    usage = pd.read_parquet(tiny.cfg.features_dir / "account_usage.parquet")
    now = usage[usage["event_timestamp"] == tiny.latest]
    operation = SCHEMA[CHURN]["POST"]
    for is_customer, status in ((1, 200), (0, 404)):
        account = now.loc[now["is_customer"] == is_customer, "account_id"].iloc[0]
        case = operation.Case(body={"account_id": account}, headers={"X-API-Key": FUZZ_KEY})
        assert case.call_and_validate(checks=CHECKS).status_code == status


# -- explicit hostile requests -------------------------------------------------------------------
@pytest.fixture
def full_client(tiny, make_client, api_key, monkeypatch) -> Iterator[Any]:
    """Every route served (MQL, churn, next best offer), with the key sent."""
    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    with make_client(_with_key(tiny.cfg, api_key), tiny.store, tiny.models) as client:
        client.headers["X-API-Key"] = api_key
        yield client


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HUGE = "L" * 1_000_000  # 1 MB of id


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (SCORE, {"lead_id": HUGE}, "lead_id"),
        (SCORE, {"lead_id": "L1", "job_title": "x" * 1_000_000}, "job_title"),
        (SCORE, {"lead_id": None}, "lead_id"),
        (SCORE, {"lead_id": 4.2}, "lead_id"),
        (SCORE, {"lead_id": True}, "lead_id"),
        (SCORE, {"lead_id": {"$ne": ""}}, "lead_id"),
        (SCORE, {"lead_id": "\ud800"}, "lead_id"),  # a lone surrogate is not text
        (SCORE, {"lead_id": "L1", "job_title": {"title": "CEO"}}, "job_title"),
        (SCORE, {"lead_id": "L1", "job_title": ["CEO"]}, "job_title"),
        (SCORE, {"lead_id": "L1", "job_title": "CEO\udfff"}, "job_title"),
        (SCORE, [{"lead_id": "L1"}], "body"),
        (SCORE, "L1", "body"),
        (SCORE, None, "body"),
        (BATCH, {"leads": {"lead_id": "L1"}}, "leads"),
        (BATCH, {"leads": "L1"}, "leads"),
        (BATCH, {"leads": ["L1"]}, "leads.0"),
        (BATCH, {"leads": [{"lead_id": None}]}, "leads.0.lead_id"),
        (BATCH, {"leads": [{"lead_id": "L1"}] * 21}, "leads"),  # serving.max_batch is 20
        (CHURN, {"account_id": HUGE}, "account_id"),
        (CHURN, {"account_id": None}, "account_id"),
        (NBO, {"lead_id": "L1", "job_title": 7}, "job_title"),
    ],
    ids=[
        "id-1MB", "title-1MB", "id-null", "id-float", "id-bool", "id-object", "id-surrogate",
        "title-object", "title-list", "title-surrogate", "body-list", "body-string", "body-null",
        "leads-object", "leads-string", "leads-of-strings", "batch-id-null", "batch-over-max",
        "account-1MB", "account-null", "nbo-title-int",
    ],
)  # fmt: skip
def test_hostile_body_is_422_naming_the_field(full_client, path, body, field) -> None:
    response = full_client.post(path, content=json.dumps(body), headers=JSON)
    assert response.status_code == 422, response.text
    assert field in fields(response), response.json()
    assert len(response.content) < 2_000  # the input is never echoed back


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"", 422, "body"),
        (b"{lead_id:", 422, "invalid JSON at character 1"),
        (b'{"lead_id": "L1"', 422, "invalid JSON"),
        (b'{"lead_id": "L1"} trailing', 422, "invalid JSON"),
        (b'{"lead_id": "\xc3\x28"}', 400, "not UTF-8"),
        (b'{"lead_id": ' + _nested(100_000).encode() + b"}", 400, "nested too deeply"),
        (b'{"lead_id": ' + _nested(500).encode() + b"}", 422, "lead_id"),
        (b'{"lead_id": "L1", "x": ' + _nested(500).encode() + b"}", 422, "x"),
        (b'{"lead_id": 1' + b"0" * 5000 + b"}", 400, "not valid JSON"),
        (b'{"lead_id": NaN}', 422, "lead_id"),
    ],
    ids=[
        "empty", "not-json", "truncated", "trailing-garbage", "not-utf8", "nested-100k",
        "nested-500-in-id", "nested-500-extra", "5000-digit-int", "nan",
    ],
)  # fmt: skip
def test_unreadable_body_is_4xx_saying_why(client, content, status, words) -> None:
    response = client.post(SCORE, content=content, headers=JSON)
    assert response.status_code == status, response.text
    assert words in json.dumps(response.json()["detail"]), response.json()


def test_many_bad_fields_get_a_short_answer(client) -> None:
    body = {"lead_id": "L1", **{f"field_{i}": i for i in range(50_000)}}
    response = client.post(SCORE, json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 21 and detail[-1]["msg"] == "and 49980 more errors"
    assert detail[0]["field"] == "field_0"


def test_a_huge_batch_is_refused_before_any_lead_is_read(client, monkeypatch) -> None:
    import bentoml

    def never(*_: Any) -> None:
        raise AssertionError("a refused batch must not reach the scorer")

    monkeypatch.setattr(bentoml.get_current_service().scorer, "score", never)
    for n in (21, 10_001, 100_000):
        body = {"leads": [{"lead_id": f"L{i:07d}"} for i in range(n)]}
        started = time.perf_counter()
        response = client.post(BATCH, json=body)
        elapsed = time.perf_counter() - started
        assert response.status_code == 422, response.text
        assert fields(response) == {"leads"} and len(response.json()["detail"]) == 1
        assert elapsed < 2.0, f"{n} leads took {elapsed:.2f}s to refuse"


def test_a_body_over_the_limit_is_413_before_it_is_read(client) -> None:
    big = b'{"lead_id": "' + b"L" * (50 * 1024 * 1024) + b'"}'  # 50 MB, with Content-Length
    response = client.post(SCORE, content=big, headers=JSON)
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"request body over {MAX_BODY_BYTES} bytes: send fewer leads per batch"
    }

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"lead_id": "'
        for _ in range(5):
            yield b"L" * (1024 * 1024)
        yield b'"}'

    assert client.post(SCORE, content=chunks(), headers=JSON).status_code == 413
    just_under = json.dumps({"lead_id": "L" * (MAX_BODY_BYTES - 100)})
    assert client.post(SCORE, content=just_under, headers=JSON).status_code == 422


TITLES = {
    "emoji": "🚀 Head of Growth 🚀",
    "rtl": "مدير التسويق",
    "rtl-override": "\u202eOEC",
    "combining": "Dire\u0301ctor of Sa\u0308les",
    "only-combining": "\u0301\u0308",
    "nul": "VP\u0000Sales",
    "zero-width": "C\u200bE\u200dO",
    "bom": "\ufeffCTO",
    "fullwidth": "ＣＥＯ",
    "astral": "𝐂𝐡𝐢𝐞𝐟 𝐄𝐱𝐞𝐜𝐮𝐭𝐢𝐯𝐞",
    "controls": "Head\tof\nSales\r\x07",
    "200-emoji": "🚀" * 200,
    "cjk": "首席执行官",
    "sql": "'; DROP TABLE leads; --",
    "html": "<script>alert(1)</script>",
}


@pytest.mark.parametrize("title", list(TITLES.values()), ids=list(TITLES))
def test_unusual_but_valid_titles_score(full_client, latest_leads, title) -> None:
    for path in (SCORE, NBO):
        response = full_client.post(path, json={"lead_id": latest_leads[0], "job_title": title})
        assert response.status_code == 200, response.text
    batch = {"leads": [{"lead_id": latest_leads[0], "job_title": title}]}
    assert full_client.post(BATCH, json=batch).status_code == 200


def test_unusual_ids_are_404_not_5xx(full_client) -> None:
    for lead_id in ["L\u0000", "🚀", "مدير", "'; DROP TABLE leads; --", "../../etc/passwd", "%00"]:
        for path in (SCORE, NBO):
            response = full_client.post(path, json={"lead_id": lead_id})
            assert response.status_code == 404, (lead_id, response.text)
        response = full_client.post(CHURN, json={"account_id": lead_id})
        assert response.status_code == 404, (lead_id, response.text)


# -- the API key --------------------------------------------------------------------------------
def test_every_versioned_route_checks_the_key() -> None:
    """The security requirement comes from _authorize's dependencies; ignored_auth in the
    fuzzing checks that it is enforced."""
    paths = FunnelService.openapi_spec.asdict()["paths"]
    versioned = {p: ops for p, ops in paths.items() if p.startswith("/v1/")}
    assert set(versioned) == {SCORE, BATCH, CHURN, NBO}
    for path, operations in versioned.items():
        assert set(operations) == {"post"}, path
        assert operations["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}], path
        assert "401" in operations["post"]["responses"], path


def test_the_key_is_compared_in_constant_time_whatever_its_length(
    client, api_key, latest_leads, monkeypatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    del client.headers["X-API-Key"]
    body = {"lead_id": latest_leads[0]}
    expected = api_key.encode()
    attempts = [
        ({"X-API-Key": "x"}, 401, [b"x"]),  # much shorter: still compared, no early length exit
        ({"X-API-Key": "k" * 4096}, 401, [b"k" * 4096]),
        ({"X-API-Key": api_key[:-1] + "?"}, 401, [(api_key[:-1] + "?").encode()]),
        ({"Authorization": "Bearer x"}, 401, [b"x"]),
        ({"X-API-Key": "wrong", "Authorization": f"Bearer {api_key}"}, 200, [b"wrong", expected]),
        ({"X-API-Key": api_key}, 200, [expected]),
    ]
    for headers, status, candidates in attempts:
        compared.clear()
        assert client.post(SCORE, json=body, headers=headers).status_code == status, headers
        assert compared == [(c, expected) for c in candidates], headers
    compared.clear()  # a header that is not ASCII is compared too, as UTF-8 bytes
    assert client.post(SCORE, json=body, headers={"X-API-Key": b"caf\xe9"}).status_code == 401
    assert len(compared) == 1 and compared[0][1] == expected


def _all_output(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return f"{caplog.text}\n{captured.out}\n{captured.err}"


def test_scoring_never_logs_an_email_even_when_sent_one(
    tiny, make_client, latest_leads, monkeypatch, caplog, capfd
) -> None:
    """Emails are not features, but a client may send one as a title or an id, and the error
    paths log: nothing a request carries reaches the log."""
    import bentoml

    from core.tables import read_table

    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    leads = read_table(tiny.cfg.raw_dir, "leads").set_index("lead_id")
    emails = [str(leads.loc[i, "email"]) for i in latest_leads]
    for name in ("", "bentoml", "funnel", "feast", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    with make_client(_with_key(tiny.cfg, FUZZ_KEY), tiny.store, tiny.models) as client:
        client.headers["X-API-Key"] = FUZZ_KEY
        for lead_id, email in zip(latest_leads[:5], emails, strict=False):
            assert client.post(SCORE, json={"lead_id": lead_id, "job_title": email}).is_success
            assert client.post(NBO, json={"lead_id": lead_id, "job_title": email}).is_success
        batch = [{"lead_id": i, "job_title": e} for i, e in zip(latest_leads, emails, strict=True)]
        assert client.post(BATCH, json={"leads": batch[:20]}).status_code == 200
        assert client.post(SCORE, json={"lead_id": emails[0]}).status_code == 404
        typo = {"lead_id": emails[0], "email": emails[1]}
        assert client.post(SCORE, json=typo).status_code == 422

        def broken(*_: Any) -> None:
            raise RuntimeError("model exploded")

        monkeypatch.setattr(bentoml.get_current_service().scorer, "predict", broken)
        failing = {"lead_id": latest_leads[0], "job_title": emails[2]}
        assert client.post(SCORE, json=failing).status_code == 500
    out = _all_output(caplog, capfd)
    assert "model exploded" in out  # the failure was logged, with its traceback ...
    assert not [e for e in emails if e in out]  # ... and without the request's content

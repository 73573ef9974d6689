"""The funnel scoring service: one BentoML service, started with

    bentoml serve serving.service:FunnelService

The versioned HTTP routes are a FastAPI app mounted into the BentoML service at ``/v1``, which
gives exact control over 401/404/422 bodies; BentoML itself serves ``/healthz``, ``/livez``,
``/readyz`` (``__is_ready__`` below), ``/metrics`` (Prometheus) and ``/docs.json`` (OpenAPI,
including the mounted routes).

Configuration: ``FUNNEL_CONFIG`` (path to a funnel YAML config, default ``configs/local.yaml``)
and optional ``FUNNEL_OVERRIDES`` (``key=value`` lines, as ``funnel serve`` passes them).
API key: ``FUNNEL_API_KEY`` or ``serving.api_key``; clients send it as ``X-API-Key: <key>`` or
``Authorization: Bearer <key>``. When no key is configured the scoring routes are OPEN and a
warning is logged at start-up: convenient on a laptop, never what you want in production.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
import bentoml
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from serving.schemas import BatchRequest, BatchResponse, ErrorResponse, LeadScore, LeadScoreRequest

if TYPE_CHECKING:
    from feast import FeatureStore

    from funnel.config import Config
    from serving.scorer import LeadScorer
    from training.scoring import ScoringModel

log = logging.getLogger("funnel.serving")
CONFIG_ENV = "FUNNEL_CONFIG"
OVERRIDES_ENV = "FUNNEL_OVERRIDES"  # newline-separated key=value overrides (set by `funnel serve`)

api = FastAPI(
    title="funnel scoring API",
    version="v1",
    # BentoML publishes one OpenAPI document (/docs.json) that includes these routes.
    openapi_url=None,
    docs_url=None,
    redoc_url=None,
)
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"},
    422: {"model": ErrorResponse, "description": "Malformed request; `detail` names the fields"},
}


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "leads", 0, "lead_id")`` -> ``"leads.0.lead_id"``."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(str(p) for p in parts) or "body"


def _validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # No "input" echo: a request body may be large and is the client's own data anyway.
    return [
        {"field": _field(tuple(e.get("loc", ()))), "msg": e.get("msg", ""), "type": e.get("type")}
        for e in errors
    ]


@api.exception_handler(RequestValidationError)
async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _validation_detail(list(exc.errors()))}, status_code=422)


async def _authorize(
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the configured key (constant-time comparison). Async so
    FastAPI does not hop to a worker thread for a few microseconds of work."""
    expected: bytes | None = bentoml.get_current_service()._api_key
    if expected is None:
        return
    for candidate in (api_key, bearer.credentials if bearer else None):
        if candidate is not None and hmac.compare_digest(candidate.encode(), expected):
            return
    raise HTTPException(
        status_code=401,
        detail="missing or invalid API key (send X-API-Key or Authorization: Bearer)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def load_parts() -> tuple[Config, FeatureStore, ScoringModel]:
    """Config from ``FUNNEL_CONFIG`` (+ ``FUNNEL_OVERRIDES``), the Feast store and the champion
    model; slow imports live here, not at module import. Tests replace this function."""
    from funnel.config import DEFAULT_CONFIG, load_config
    from funnel.jobs import feature_store
    from training.registry import load_model

    overrides = [line for line in os.environ.get(OVERRIDES_ENV, "").splitlines() if line.strip()]
    cfg = load_config(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG, overrides)
    store = feature_store(cfg)
    model = load_model(cfg, cfg.training.mql.registered_model, cfg.serving.model_alias)
    return cfg, store, model


@bentoml.service(name="funnel", traffic={"timeout": 30})
@bentoml.asgi_app(api, path="/v1")
class FunnelService:
    """Lead scoring (MQL): Feast online features + the champion model, loaded once per worker."""

    def __init__(self) -> None:
        self.attach(*load_parts())

    def attach(self, cfg: Config, store: FeatureStore, model: ScoringModel) -> None:
        """Wire config, store and model; refuse to start on a feature-service mismatch."""
        from serving.scorer import LeadScorer

        wanted = cfg.training.mql.feature_service
        if model.feature_service != wanted:
            raise RuntimeError(
                f"refusing to start: model {model.version} was trained on feature service "
                f"'{model.feature_service}' but this service requests '{wanted}' "
                "(training.mql.feature_service); retrain or point the alias at a matching model"
            )
        self.cfg = cfg
        self.model = model
        self.max_batch = cfg.serving.max_batch
        self.scorer: LeadScorer = LeadScorer(store, model)
        key = cfg.api_key()
        self._api_key: bytes | None = key.encode() if key else None
        if self._api_key is None:
            log.warning(
                "no API key configured (FUNNEL_API_KEY or serving.api_key): "
                "the scoring routes are open to anyone who can reach this port"
            )
        log.info(
            "serving model %s (feature service %s, threshold %.4f)",
            model.version,
            model.feature_service,
            model.threshold,
        )

    async def __is_ready__(self) -> bool:
        try:
            self.scorer.ping()
        except Exception:
            log.exception("readiness: the online store did not answer")
            return False
        return True

    def _score(self, requests: list[LeadScoreRequest]) -> tuple[list[LeadScore], list[str]]:
        try:
            return self.scorer.score(requests)
        except Exception as exc:
            log.exception("scoring failed")
            raise HTTPException(500, "internal error while scoring; see the server log") from exc

    # One lead is scored inline on the event loop: a few milliseconds of CPU, and a hop to a
    # worker thread would add latency. A batch (up to max_batch leads, each with TreeSHAP
    # reasons) runs in a worker thread so health checks and single scores are not stalled.
    # Responses are written with pydantic's own JSON encoder (response_model is for the docs).
    @api.post(
        "/leads/score",
        response_model=LeadScore,
        dependencies=[Depends(_authorize)],
        responses={**_ERRORS, 404: {"model": ErrorResponse, "description": "Unknown lead id"}},
        summary="Score one lead",
    )
    async def score_lead(self, request: LeadScoreRequest) -> Response:
        results, not_found = self._score([request])
        if not_found:
            raise HTTPException(404, f"lead '{request.lead_id}' not found")
        return Response(results[0].model_dump_json(), media_type="application/json")

    @api.post(
        "/leads/score_batch",
        response_model=BatchResponse,
        dependencies=[Depends(_authorize)],
        responses=_ERRORS,
        summary="Score up to serving.max_batch leads with one feature read",
    )
    async def score_batch(self, request: BatchRequest) -> Response:
        try:
            request.check_size(self.max_batch)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            ) from None
        results, not_found = await anyio.to_thread.run_sync(self._score, request.leads)
        body = BatchResponse(results=results, not_found=not_found)
        return Response(body.model_dump_json(), media_type="application/json")

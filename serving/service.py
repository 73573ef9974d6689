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

from serving.schemas import (
    BatchRequest,
    BatchResponse,
    ChurnRisk,
    ChurnRiskRequest,
    ErrorResponse,
    LeadScore,
    LeadScoreRequest,
    NextBestOffer,
    NextBestOfferRequest,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from funnel.config import Config
    from serving.scorer import AccountScorer, LeadScorer, OfferRanker

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


def load_parts() -> tuple[Config, FeatureStore, dict[str, Any]]:
    """Config from ``FUNNEL_CONFIG`` (+ ``FUNNEL_OVERRIDES``), the Feast store and the champion
    of every model kind in ``serving.models``; slow imports live here, not at module import.
    Tests replace this function."""
    from funnel.config import DEFAULT_CONFIG, load_config
    from funnel.jobs import feature_store
    from training.registry import load_model, load_nbo_model

    overrides = [line for line in os.environ.get(OVERRIDES_ENV, "").splitlines() if line.strip()]
    cfg = load_config(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG, overrides)
    store = feature_store(cfg)
    alias = cfg.serving.model_alias
    models: dict[str, Any] = {}
    for kind in cfg.serving.models:
        if kind == "nbo":
            models[kind] = load_nbo_model(cfg, alias)
        else:
            name = getattr(cfg.training, kind).registered_model
            models[kind] = load_model(cfg, name, alias, kind=kind)
    return cfg, store, models


def _not_served(kind: str) -> HTTPException:
    return HTTPException(
        503, f"the {kind} model is not served here: add '{kind}' to serving.models and restart"
    )


@bentoml.service(name="funnel", traffic={"timeout": 30})
@bentoml.asgi_app(api, path="/v1")
class FunnelService:
    """MQL scores, churn risk and next best offers: Feast online features + the champion
    models, loaded once per worker."""

    def __init__(self) -> None:
        self.attach(*load_parts())

    def attach(self, cfg: Config, store: FeatureStore, models: dict[str, Any]) -> None:
        """Wire config, store and models; refuse to start when a configured model is missing
        or was trained on another feature service than the config names."""
        from funnel.offers import load_offers
        from serving.scorer import AccountScorer, LeadScorer, OfferRanker

        missing = [k for k in cfg.serving.models if k not in models]
        if missing:
            raise RuntimeError(f"refusing to start: no model loaded for {missing} (serving.models)")
        for kind, model in models.items():
            wanted = getattr(cfg.training, kind).feature_service
            if model.feature_service != wanted:
                raise RuntimeError(
                    f"refusing to start: model {model.version} was trained on feature service "
                    f"'{model.feature_service}' but this service requests '{wanted}' "
                    f"(training.{kind}.feature_service); retrain or point the alias at a "
                    "matching model"
                )
        self.cfg = cfg
        self.max_batch = cfg.serving.max_batch
        self.scorer: LeadScorer | None = LeadScorer(store, models["mql"]) if "mql" in models else None
        self.churn: AccountScorer | None = (
            AccountScorer(store, models["churn"]) if "churn" in models else None
        )
        self.ranker: OfferRanker | None = None
        if "nbo" in models:
            self.ranker = OfferRanker(
                store, models["nbo"], load_offers(cfg), cfg.stages, cfg.serving.exploration_epsilon
            )
        self._store = store
        key = cfg.api_key()
        self._api_key: bytes | None = key.encode() if key else None
        if self._api_key is None:
            log.warning(
                "no API key configured (FUNNEL_API_KEY or serving.api_key): "
                "the scoring routes are open to anyone who can reach this port"
            )
        for kind, model in models.items():
            log.info("serving %s model %s (feature service %s)", kind, model.version,
                     model.feature_service)  # fmt: skip

    def _ping(self) -> None:
        if self.scorer is not None:
            self.scorer.ping()
        elif self.ranker is not None:
            self.ranker.reader.ping()
        else:
            self._store.get_online_features(
                ["account_firmographic_fv:industry"], entity_rows={"account_id": ["__readyz__"]}
            )

    async def __is_ready__(self) -> bool:
        try:
            self._ping()
        except Exception:
            log.exception("readiness: the online store did not answer")
            return False
        return True

    def _score(self, requests: list[LeadScoreRequest]) -> tuple[list[LeadScore], list[str]]:
        if self.scorer is None:
            raise _not_served("mql")
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

    @api.post(
        "/accounts/churn_risk",
        response_model=ChurnRisk,
        dependencies=[Depends(_authorize)],
        responses={
            **_ERRORS,
            404: {"model": ErrorResponse, "description": "Unknown account, or not a customer"},
            503: {"model": ErrorResponse, "description": "The churn model is not served"},
        },
        summary="Churn risk of one customer account",
    )
    async def churn_risk(self, request: ChurnRiskRequest) -> Response:
        from serving.scorer import NotACustomerError

        if self.churn is None:
            raise _not_served("churn")
        try:
            result = self.churn.score(request)
        except NotACustomerError as exc:
            raise HTTPException(404, str(exc)) from None
        except Exception as exc:
            log.exception("churn scoring failed")
            raise HTTPException(500, "internal error while scoring; see the server log") from exc
        if result is None:
            raise HTTPException(404, f"account '{request.account_id}' not found")
        return Response(result.model_dump_json(), media_type="application/json")

    @api.post(
        "/next_best_offer",
        response_model=NextBestOffer,
        dependencies=[Depends(_authorize)],
        responses={
            **_ERRORS,
            404: {"model": ErrorResponse, "description": "Unknown lead id"},
            503: {"model": ErrorResponse, "description": "The next-best-offer model is not served"},
        },
        summary="The lead's eligible offers ranked by expected net value, and the one to give",
    )
    async def next_best_offer(self, request: NextBestOfferRequest) -> Response:
        if self.ranker is None:
            raise _not_served("nbo")
        try:
            result = self.ranker.recommend(request)
        except Exception as exc:
            log.exception("next-best-offer failed")
            raise HTTPException(500, "internal error while ranking; see the server log") from exc
        if result is None:
            raise HTTPException(404, f"lead '{request.lead_id}' not found")
        return Response(result.model_dump_json(), media_type="application/json")

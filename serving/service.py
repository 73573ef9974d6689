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

import gc
import hmac
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio.to_thread
import bentoml
import bentoml._internal.server.http.traffic as bentoml_traffic
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from core.config import DEFAULT_CONFIG, load_config
from core.offers import load_offers
from features.sources import feature_table_path
from features.store import feature_store
from serving.limits import MAX_BODY_BYTES, BodySizeLimit, RequestTimeout
from serving.loading import load_models
from serving.online import materialization_stamp
from serving.reason_cache import BackgroundPrecompute
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
from serving.scorer import (
    OUTAGE_RETRY_S,
    AccountScorer,
    LeadScorer,
    NotACustomerError,
    OfferRanker,
    StoreUnavailableError,
    online_reads,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from core.config import Config

log = logging.getLogger("funnel.serving")
T = TypeVar("T")
CONFIG_ENV = "FUNNEL_CONFIG"
OVERRIDES_ENV = "FUNNEL_OVERRIDES"  # newline-separated key=value overrides (set by `funnel serve`)
MAX_ERRORS = 20  # validation errors listed in a 422
MATERIALIZATION_POLL_S = 30.0  # how often the precompute thread looks for a new materialization
SLOW_GC_MS = 50.0  # a garbage collection pausing the worker longer than this is logged

api = FastAPI(
    title="funnel scoring API",
    version="v1",
    # BentoML publishes one OpenAPI document (/docs.json) that includes these routes.
    openapi_url=None,
    docs_url=None,
    redoc_url=None,
)
api.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
# BentoML builds each worker's middleware stack from this name when the app starts; the
# replacement answers as BentoML's does but does not keep every request alive for the whole
# traffic timeout (see RequestTimeout)
bentoml_traffic.TimeoutMiddleware = RequestTimeout
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body not readable (not UTF-8, nested too deep)"},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"},
    413: {"model": ErrorResponse, "description": f"Request body over {MAX_BODY_BYTES} bytes"},
    422: {"model": ErrorResponse, "description": "Malformed request; `detail` names the fields"},
}


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "leads", 0, "lead_id")`` -> ``"leads.0.lead_id"``."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(str(p) for p in parts) or "body"


def _error(e: dict[str, Any]) -> dict[str, Any]:
    if e.get("type") == "json_invalid":  # loc is ("body", <character offset>)
        msg = f"invalid JSON at character {e['loc'][-1]}: {e.get('ctx', {}).get('error', '')}"
        return {"field": "body", "msg": msg, "type": "json_invalid"}
    field = _field(tuple(e.get("loc", ())))
    return {"field": field, "msg": e.get("msg", ""), "type": e.get("type")}


def _validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # No "input" echo: a request body may be large and is the client's own data anyway. At most
    # MAX_ERRORS entries: a body of 100k bad fields must not come back as a 20 MB answer.
    detail = [_error(e) for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        more = f"and {len(errors) - MAX_ERRORS} more errors"
        detail.append({"field": "body", "msg": more, "type": "too_many_errors"})
    return detail


@api.exception_handler(RequestValidationError)
async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _validation_detail(list(exc.errors()))}, status_code=422)


@api.exception_handler(400)
async def _on_unreadable_body(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI's bare "error parsing the body", for bodies json.loads raises other than a
    # JSONDecodeError on: not UTF-8, nested too deeply, an integer of over 4300 digits.
    reason = {UnicodeDecodeError: "it is not UTF-8", RecursionError: "it is nested too deeply"}
    why = reason.get(type(exc.__cause__), "it is not valid JSON")  # type: ignore[arg-type]
    return JSONResponse({"detail": f"the request body cannot be read: {why}"}, status_code=400)


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
    overrides = [line for line in os.environ.get(OVERRIDES_ENV, "").splitlines() if line.strip()]
    cfg = load_config(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG, overrides)
    store = feature_store(cfg)
    # ModelLoadError names the model, the alias, what is wrong and what to do
    return cfg, store, load_models(cfg)


def _precompute_ids(data_dir: Path) -> tuple[list[str], list[str]]:
    """The leads (``lead_profile``) and customer accounts (``account_usage``) of the feature
    tables, the ids whose reasons are precomputed; none for a table that is not there."""
    leads: list[str] = []
    accounts: list[str] = []
    profile = Path(feature_table_path(data_dir, "lead_profile"))
    if profile.is_file():
        leads = pd.read_parquet(profile, columns=["lead_id"])["lead_id"].astype(str).unique()
        leads = leads.tolist()
    usage = Path(feature_table_path(data_dir, "account_usage"))
    if usage.is_file():
        frame = pd.read_parquet(usage, columns=["account_id", "is_customer"])
        accounts = frame.loc[frame["is_customer"] >= 1, "account_id"].astype(str).unique().tolist()
    return leads, accounts


_gc_started: list[float] = []


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
    elif _gc_started:
        ms = 1000.0 * (time.perf_counter() - _gc_started[0])
        if ms > SLOW_GC_MS:
            log.warning("garbage collection of generation %d paused the worker %.0f ms",
                        info.get("generation", -1), ms)  # fmt: skip


def _watch_gc() -> None:
    """Log each garbage collection that pauses the worker longer than ``SLOW_GC_MS``."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def _not_served(kind: str) -> HTTPException:
    return HTTPException(
        503, f"the {kind} model is not served here: add '{kind}' to serving.models and restart"
    )


# Any scoring route may answer this; the client should retry after Retry-After seconds.
_UNAVAILABLE: dict[str, Any] = {
    "model": ErrorResponse,
    "description": "The online feature store is unavailable; retry after `Retry-After` seconds",
    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}


def _store_unavailable(exc: Exception) -> HTTPException:
    """503 for a StoreUnavailableError: not a bug in the request nor in the service. Logged
    without a traceback: in an outage every request fails the same way."""
    log.warning("online feature store unavailable: %s (cause: %r)", exc, exc.__cause__)
    return HTTPException(
        503,
        f"online feature store unavailable: {exc}; retry later",
        headers={"Retry-After": str(math.ceil(OUTAGE_RETRY_S))},
    )


async def _on_loop_or_thread(
    on_loop: bool, on_the_loop: Callable[..., Awaitable[T]], blocking: Callable[..., T], *args: Any
) -> T:
    """``on_the_loop(*args)`` awaited when the reads it makes never block the event loop, else
    ``blocking(*args)`` in a worker thread."""
    if on_loop:
        return await on_the_loop(*args)
    return await anyio.to_thread.run_sync(blocking, *args)


def _json(body: BaseModel) -> Response:
    """``body`` written by pydantic's own JSON encoder (``response_model`` is for the docs)."""
    return Response(body.model_dump_json(), media_type="application/json")


@contextmanager
def _answering(
    failed: str, doing: str, not_found: type[Exception] | tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """Around a scorer call, the HTTP answer to what it raises: ``not_found`` (a request for
    something that cannot be scored) is a 404 with its message, a store outage a 503, anything
    else a 500 that says where to look while the traceback goes to the log under ``failed``."""
    try:
        yield
    except not_found as exc:
        raise HTTPException(404, str(exc)) from None
    except StoreUnavailableError as exc:
        raise _store_unavailable(exc) from None
    except Exception as exc:
        log.exception(failed)
        raise HTTPException(500, f"internal error while {doing}; see the server log") from exc


def _responses(not_found: str | None = None, not_served: str | None = None) -> dict[int | str, Any]:
    """A scoring route's documented errors: ``not_found`` describes its 404; ``not_served`` names
    the model whose absence is a 503 too."""
    responses: dict[int | str, Any] = dict(_ERRORS)
    if not_found is not None:
        responses[404] = {"model": ErrorResponse, "description": not_found}
    responses[503] = _UNAVAILABLE
    if not_served is not None:  # the same 503, for one more reason
        responses[503] = {
            **_UNAVAILABLE,
            "description": "The online feature store is unavailable (retry after "
            f"`Retry-After` seconds), or the {not_served} model is not served",
        }
    return responses


@bentoml.service(name="funnel", traffic={"timeout": 30})
@bentoml.asgi_app(api, path="/v1")
class FunnelService:
    """MQL scores, churn risk and next best offers: Feast online features + the champion
    models, loaded once per worker."""

    def __init__(self) -> None:
        # BentoML's root handler shows WARNING and up; the service's start-up and precompute
        # reports are INFO (unless logging was configured otherwise)
        funnel_log = logging.getLogger("funnel")
        if funnel_log.level == logging.NOTSET:
            funnel_log.setLevel(logging.INFO)
        self.attach(*load_parts())

    def attach(self, cfg: Config, store: FeatureStore, models: dict[str, Any]) -> None:
        """Wire config, store and models; refuse to start when a configured model is missing
        or was trained on another feature service than the config names."""
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
        reads, reasons = online_reads(cfg), cfg.serving.reasons
        rows = cfg.serving.reasons_cache_rows
        self.scorer: LeadScorer | None = (
            LeadScorer(
                store,
                models["mql"],
                reads=reads,
                reasons=reasons,
                configured_threshold=cfg.jobs.promotion.threshold,
                cache_rows=rows,
            )
            if "mql" in models
            else None
        )
        self.churn: AccountScorer | None = (
            AccountScorer(store, models["churn"], reads=reads, reasons=reasons, cache_rows=rows)
            if "churn" in models
            else None
        )
        self.ranker: OfferRanker | None = None
        if "nbo" in models:
            self.ranker = OfferRanker(
                store, models["nbo"], load_offers(cfg), cfg.stages,
                cfg.serving.exploration_epsilon, reads=reads, cache_rows=rows,
            )  # fmt: skip
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
        on_loop = all(p.on_loop for p in (self.scorer, self.churn, self.ranker) if p is not None)
        log.info("online reads: %s", "on the event loop" if on_loop else "in worker threads")
        self.precompute: BackgroundPrecompute | None = None
        if (
            cfg.serving.reasons_precompute
            and rows > 0
            and (self.scorer or self.churn or self.ranker)
        ):
            self.precompute = BackgroundPrecompute(
                lambda: self._precompute(cfg.data_dir, rows),
                lambda: materialization_stamp(store),
                MATERIALIZATION_POLL_S,
                after_fill=gc.freeze,  # the cache's entries live as long as the worker
            )
            self.precompute.start()
        _watch_gc()
        # Everything loaded so far lives as long as the worker: out of the collector's sight,
        # a full collection scans only what requests allocate (milliseconds, not the ~0.3 s
        # of a heap holding Feast, MLflow and BentoML).
        gc.freeze()

    def _precompute(self, data_dir: Path, rows: int) -> int:
        """Reasons of every lead's and customer account's current online features, and every
        lead's uplift per offer, up to ``rows`` of each (the caches' size)."""
        leads, accounts = _precompute_ids(data_dir)
        done = 0
        if self.scorer is not None:
            done += self.scorer.precompute(leads[:rows])
        if self.churn is not None:
            done += self.churn.precompute(accounts[:rows])
        if self.ranker is not None:
            done += self.ranker.precompute(leads[:rows])
        return done

    @bentoml.on_shutdown
    def _stop_precompute(self) -> None:
        precompute = getattr(self, "precompute", None)  # None when start-up failed
        if precompute is not None:
            precompute.stop()

    async def _ping(self) -> None:
        """One tiny read through the first model's reader (they share the store)."""
        readers = (self.scorer, self.ranker.reader if self.ranker else None, self.churn)
        reader = next((r for r in readers if r is not None), None)
        if reader is not None:
            await _on_loop_or_thread(reader.on_loop, reader.ping_async, reader.ping)

    async def __is_ready__(self) -> bool:
        """Not ready while the online store does not answer; ready again, with no restart,
        once it does (redis-py reconnects by itself)."""
        try:
            await self._ping()
        except StoreUnavailableError as exc:
            log.warning("readiness: online feature store unavailable: %s", exc)
            return False
        except Exception:
            log.exception("readiness: the online store did not answer")
            return False
        return True

    def _score(self, requests: list[LeadScoreRequest]) -> tuple[list[LeadScore], list[str]]:
        if self.scorer is None:
            raise _not_served("mql")
        with _answering("scoring failed", "scoring"):
            results, not_found = self.scorer.score(requests)
        return results, not_found

    # No online read blocks the event loop. On Redis a request awaits the asyncio client; on
    # SQLite in WAL mode (set at start-up) it reads the local file on the loop, since a reader
    # then never waits for a writer; the scoring itself is a fraction of a millisecond for one
    # lead. Either way a Redis that does not answer holds only the requests waiting for it,
    # while health checks, other requests and the store-outage 503s go on. Other stores, the
    # "feast" reads, and batches (many leads' scoring) run in a worker thread instead: under 16
    # concurrent requests that hop cost about a third of one worker's throughput (496 against
    # 693 leads/s). Responses are written with pydantic's own JSON encoder (response_model is
    # for the docs).
    @api.post(
        "/leads/score",
        response_model=LeadScore,
        dependencies=[Depends(_authorize)],
        responses=_responses(not_found="Unknown lead id"),
        summary="Score one lead",
    )
    async def score_lead(self, request: LeadScoreRequest) -> Response:
        if self.scorer is None:
            raise _not_served("mql")
        scorer = self.scorer
        with _answering("scoring failed", "scoring"):
            results, not_found = await _on_loop_or_thread(
                scorer.on_loop, scorer.score_async, scorer.score, [request]
            )
        if not_found:
            raise HTTPException(404, f"lead '{request.lead_id}' not found")
        return _json(results[0])

    @api.post(
        "/leads/score_batch",
        response_model=BatchResponse,
        dependencies=[Depends(_authorize)],
        responses=_responses(),
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
        return _json(BatchResponse(results=results, not_found=not_found))

    @api.post(
        "/accounts/churn_risk",
        response_model=ChurnRisk,
        dependencies=[Depends(_authorize)],
        responses=_responses(not_found="Unknown account, or not a customer", not_served="churn"),
        summary="Churn risk of one customer account",
    )
    async def churn_risk(self, request: ChurnRiskRequest) -> Response:
        if self.churn is None:
            raise _not_served("churn")
        churn = self.churn
        with _answering("churn scoring failed", "scoring", not_found=NotACustomerError):
            result = await _on_loop_or_thread(
                churn.on_loop, churn.score_async, churn.score, request
            )
        if result is None:
            raise HTTPException(404, f"account '{request.account_id}' not found")
        return _json(result)

    @api.post(
        "/next_best_offer",
        response_model=NextBestOffer,
        dependencies=[Depends(_authorize)],
        responses=_responses(not_found="Unknown lead id", not_served="next-best-offer"),
        summary="The lead's eligible offers ranked by expected net value, and the one to give",
    )
    async def next_best_offer(self, request: NextBestOfferRequest) -> Response:
        if self.ranker is None:
            raise _not_served("nbo")
        ranker = self.ranker
        with _answering("next-best-offer failed", "ranking"):
            result = await _on_loop_or_thread(
                ranker.on_loop, ranker.recommend_async, ranker.recommend, request
            )
        if result is None:
            raise HTTPException(404, f"lead '{request.lead_id}' not found")
        return _json(result)

"""Score from the Feast online store with the champion models (no BentoML, no HTTP): leads'
MQL scores, accounts' churn risk and leads' next best offer.

For lead requests there are exactly two online reads per batch, whatever its size: the leads'
account id from ``lead_profile_fv`` (the account features are keyed by account, so the entity
rows need it), then the feature service itself. A lead without a profile row is "not found".
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from core.errors import FunnelError
from core.stages import StageRules, features_needed
from serving.online import ACCOUNT_FIELD, PROFILE_VIEW, TS_SUFFIX, ServiceReader, sqlite_wal
from serving.reason_cache import CachedExplainer, CachedUplift
from serving.schemas import (
    ChurnRisk,
    ChurnRiskRequest,
    LeadScore,
    LeadScoreRequest,
    NextBestOffer,
    NextBestOfferRequest,
    OfferValue,
    Reason,
)
from training.nbo_policy import choose_offer, rank_offers
from training.reasons import Reason as ModelReason
from training.scoring import mql_threshold

if TYPE_CHECKING:
    from feast import FeatureStore

    from core.config import Config, StagesConfig
    from core.offers import Offers
    from training.nbo_model import NboModel
    from training.scoring import ScoringModel

ACCOUNT_REF = f"{PROFILE_VIEW}:{ACCOUNT_FIELD}"
# Join keys and request fields come back in the online response too; they are not features.
KEY_COLUMNS = ("lead_id", "account_id", ACCOUNT_FIELD, "request_job_title")
SINGLE_THREAD_ROWS = 32
DEFAULT_CACHE_ROWS = 200_000  # serving.reasons_cache_rows
# Precomputing: rows per online read (short, so the store's lock is not held long while the
# service answers requests) and LightGBM threads (every core but one, left to the requests).
PRECOMPUTE_ROWS = 100
PRECOMPUTE_THREADS = max(1, (os.cpu_count() or 2) - 1)


# After a read finds the online store unavailable, reads fail at once for this long instead of
# each waiting for the store's timeout; the first read after it tries the store again.
OUTAGE_RETRY_S = 2.0
# SQLite errors that mean "the store cannot be read now", not "the store is set up wrong"
# ("no such table" is a setup error and stays a 500).
_SQLITE_UNAVAILABLE = {
    "database is locked": "database is locked",
    "unable to open database file": "cannot open the database file",
    "disk i/o error": "disk I/O error",
}
T = TypeVar("T")


class FeatureContractError(FunnelError, RuntimeError):
    """The model and the feature store disagree (feature service or feature names)."""


class StoreUnavailableError(FunnelError, RuntimeError):
    """The online feature store did not answer (down, refusing connections, timed out,
    locked); the message is a short reason, safe to show a client."""


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the online store is unavailable, when ``exc`` says it is: Redis connection and
    timeout errors (redis-py's, raised through Feast) and SQLite's locked or unopenable
    database. None for any other error, which is a bug and stays one."""
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return next((why for text, why in _SQLITE_UNAVAILABLE.items() if text in message), None)
    try:
        import redis.exceptions as redis_errors
    except ImportError:  # a SQLite-only install need not have redis-py
        return None
    if isinstance(exc, redis_errors.TimeoutError):
        return "timed out"
    if isinstance(exc, redis_errors.BusyLoadingError):  # just restarted, reading its dump
        return "still loading its data"
    if isinstance(exc, redis_errors.ConnectionError):
        return "cannot connect"
    return None


class _OnlineGate:
    """Every online read of one feature store goes through here.

    One lock: the SQLite online store shares one connection between the service's threads,
    whichever model reads through it. And a short fail-fast window: once a read finds the store
    unavailable, reads fail at once for ``OUTAGE_RETRY_S`` instead of each waiting for the
    store's timeout (the lock serializes reads, so a store that does not answer would otherwise
    hold every request queued behind it for its timeout in turn). The first
    read after the window tries the store again; one success closes the window.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._retry_at = 0.0
        self._reason = ""

    def read(self, fetch: Callable[[], T]) -> T:
        self._fail_fast()
        with self.lock:
            self._fail_fast()  # another thread may have found the store down while we waited
            with self._outages():
                return fetch()

    async def read_async(self, fetch: Callable[[], Awaitable[T]]) -> T:
        """``read`` for an asyncio read (Redis): the same fail-fast window and errors, no
        lock (the asyncio client has its own connections and never shares one)."""
        self._fail_fast()
        with self._outages():
            return await fetch()

    @contextmanager
    def _outages(self) -> Iterator[None]:
        """Around a read: an outage opens the fail-fast window and becomes a
        StoreUnavailableError; a read that succeeds closes the window; other errors pass."""
        try:
            yield
        except Exception as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            self._reason, self._retry_at = reason, time.monotonic() + OUTAGE_RETRY_S
            raise StoreUnavailableError(reason) from exc
        self._retry_at = 0.0

    def _fail_fast(self) -> None:
        if time.monotonic() < self._retry_at:
            raise StoreUnavailableError(self._reason)


_STORE_GATES: weakref.WeakKeyDictionary[Any, _OnlineGate] = weakref.WeakKeyDictionary()


def _store_gate(store: Any) -> _OnlineGate:
    """One gate per feature store, shared by every model that reads through it."""
    return _STORE_GATES.setdefault(store, _OnlineGate())


def _resolve_service(store: Any, name: str, needed: Sequence[str], version: str) -> Any:
    """The feature service object (resolved once: by name, Feast looks it up per call), after
    checking it serves every feature the model needs."""
    try:
        service = store.get_feature_service(name)
    except Exception as exc:  # Feast raises its own *NotFoundException types
        raise FeatureContractError(
            f"feature service '{name}' (needed by model {version}) is not in the Feast "
            f"registry: {exc}; apply the feature definitions first"
        ) from exc
    served = {f.name for proj in service.feature_view_projections for f in proj.features}
    missing = [n for n in needed if n not in served]
    if missing:
        raise FeatureContractError(
            f"model {version} needs features that feature service '{name}' does not serve: "
            f"{', '.join(missing)}"
        )
    return service


ONLINE_READS = ("direct", "feast")


def online_reads(cfg: Config) -> str:
    """``serving.online_reads`` resolved: "auto" is direct (on Redis too: a request's views
    are read in one pipeline per entity key, as ``get_online_features`` does, without its
    overhead)."""
    reads = cfg.serving.online_reads
    return "direct" if reads == "auto" else reads


def _direct_reader(store: Any, service: Any, reads: str) -> ServiceReader | None:
    """The per-view reader for ``reads="direct"``, None for ``reads="feast"``."""
    if reads not in ONLINE_READS:
        raise ValueError(f"online reads must be one of {ONLINE_READS}, got {reads!r}")
    return ServiceReader(store, service) if reads == "direct" else None


def reads_on_loop(direct: ServiceReader | None) -> bool:
    """Whether a request's reads may run on the service's event loop rather than in a worker
    thread: Redis through its asyncio client, and SQLite in WAL mode (a local read that never
    waits for a writer). Not for ``reads="feast"``, whose calls block."""
    return direct is not None and (direct.redis or sqlite_wal(direct))


def _split_found(ids: list[str], data: dict[str, list]) -> tuple[dict[str, list], list[str]]:
    """The columns of the leads that have a profile row (an account), and the ids without."""
    found = [i for i, acc in enumerate(data["account_id"]) if acc is not None]
    not_found = [ids[i] for i, acc in enumerate(data["account_id"]) if acc is None]
    if not found:
        return {}, not_found
    if not_found:
        data = {name: [values[i] for i in found] for name, values in data.items()}
    return data, not_found


class LeadFeatureReader:
    """Online features of a lead-keyed feature service for scoring requests.

    ``reads="direct"`` (the default): one ``online_read`` per feature view through
    ``serving.online.ServiceReader``, the profile first (it holds the account id the account
    views need). ``reads="feast"``: two ``FeatureStore.get_online_features`` calls per batch,
    the leads' account ids from ``lead_profile_fv``, then the service itself; the same values,
    several times the overhead for one lead.
    """

    def __init__(
        self, store: Any, service_name: str, needed: Sequence[str], version: str,
        reads: str = "direct",
    ) -> None:  # fmt: skip
        self.store = store
        self._gate = _store_gate(store)
        self.feature_service = _resolve_service(store, service_name, needed, version)
        _check_account_lookup(store)
        self._direct = _direct_reader(store, self.feature_service, reads)
        self.on_loop = reads_on_loop(self._direct)

    def _accounts(self, lead_ids: list[str]) -> list[str | None]:
        resp = self._gate.read(
            lambda: self.store.get_online_features([ACCOUNT_REF], entity_rows={"lead_id": lead_ids})
        )
        data = resp.to_dict()
        _check_order(data["lead_id"], lead_ids)
        return data[ACCOUNT_FIELD]

    def ping(self) -> None:
        """One tiny online read; raises StoreUnavailableError if the online store does not
        answer."""
        if self._direct is not None:
            direct = self._direct
            self._gate.read(lambda: direct.ping())
        else:
            self._accounts(["__readyz__"])

    async def ping_async(self) -> None:
        """``ping`` for the event loop (``on_loop`` readers only)."""
        direct = self._on_loop()
        if direct.redis:
            await self._gate.read_async(direct.ping_async)
        else:
            self._gate.read(direct.ping)

    def _on_loop(self) -> ServiceReader:
        if not self.on_loop or self._direct is None:
            raise RuntimeError("this reader's reads block: call them from a worker thread")
        return self._direct

    def features(self, requests: Sequence[Any]) -> tuple[dict[str, list], list[str]]:
        """Online feature columns (with ``<name>__ts`` event times, epoch seconds) for the
        requests whose lead exists, in request order, and the ids that do not exist. Requests
        have ``lead_id`` and an optional ``job_title``."""
        ids = [r.lead_id for r in requests]
        if self._direct is not None:
            direct = self._direct
            titles = _titles(requests)
            data = self._gate.read(lambda: direct.read(lead_ids=ids, request=titles))
            return _split_found(ids, data)
        accounts = self._accounts(ids)
        found = [i for i, acc in enumerate(accounts) if acc is not None]
        not_found = [ids[i] for i, acc in enumerate(accounts) if acc is None]
        if not found:
            return {}, not_found
        rows = {
            "lead_id": [ids[i] for i in found],
            "account_id": [accounts[i] for i in found],
            # "" tells job_title_odfv to use the stored title
            "request_job_title": [requests[i].job_title or "" for i in found],
        }
        resp = self._gate.read(
            lambda: self.store.get_online_features(self.feature_service, entity_rows=rows)
        )
        data = resp.to_dict(include_event_timestamps=True)
        _check_order(data["lead_id"], rows["lead_id"])
        return data, not_found

    async def features_async(self, requests: Sequence[Any]) -> tuple[dict[str, list], list[str]]:
        """``features`` for the event loop (``on_loop`` readers only): Redis through its
        asyncio client, SQLite (WAL) with the same local reads."""
        direct = self._on_loop()
        ids, titles = [r.lead_id for r in requests], _titles(requests)
        if direct.redis:
            data = await self._gate.read_async(
                lambda: direct.read_async(lead_ids=ids, request=titles)
            )
        else:
            data = self._gate.read(lambda: direct.read(lead_ids=ids, request=titles))
        return _split_found(ids, data)


def _titles(requests: Sequence[Any]) -> dict[str, list[str]]:
    # "" tells job_title_odfv to use the stored title
    return {"request_job_title": [r.job_title or "" for r in requests]}


class LeadScorer:
    """Feast online features -> calibrated probability, score, MQL flag and top reasons.

    ``store`` is a ``feast.FeatureStore``; ``model`` a ``training.scoring.ScoringModel``;
    ``configured_threshold`` is ``jobs.promotion.threshold`` (None: the model's own), and a lead
    is an MQL at p >= ``self.threshold``, the one ``mql_threshold`` puts in force.
    Safe to share between threads: online reads take a lock (the SQLite store shares one
    connection), LightGBM predictions run concurrently.
    """

    def __init__(
        self,
        store: FeatureStore,
        model: ScoringModel,
        *,
        top_k: int = 3,
        clock: Callable[[], float] = time.time,
        reads: str = "direct",
        reasons: str = "treeshap",
        configured_threshold: float | None = None,
        cache_rows: int = DEFAULT_CACHE_ROWS,
    ) -> None:
        self.store = store
        self.model = model
        self.threshold = mql_threshold(model.threshold, configured_threshold)
        self.top_k = top_k
        self.clock = clock
        self.reasons = reasons  # training.scoring.REASON_METHODS
        model.prepare(reasons)
        self.explainer = CachedExplainer(model, top_k, cache_rows, reasons)
        self.reader = LeadFeatureReader(
            store, model.feature_service, model.feature_names, model.version, reads
        )
        self.feature_service = self.reader.feature_service

    def ping(self) -> None:
        self.reader.ping()

    @property
    def on_loop(self) -> bool:
        """Whether ``score_async`` and ``ping_async`` may be awaited on the event loop."""
        return self.reader.on_loop

    async def ping_async(self) -> None:
        await self.reader.ping_async()

    def features(self, requests: Sequence[LeadScoreRequest]) -> tuple[dict[str, list], list[str]]:
        return self.reader.features(requests)

    # -- scoring ------------------------------------------------------------------------------
    def predict(self, data: dict[str, list]) -> tuple[np.ndarray, list[list[ModelReason]]]:
        """Calibrated probabilities and top reasons, exactly as the offline model computes them
        (``predict_explain``): from the reasons cache for rows already seen, computed for the
        others (LightGBM single-threaded for small batches)."""
        rows = len(data[self.model.feature_names[0]])
        threads = 1 if rows <= SINGLE_THREAD_ROWS else 0
        return self.explainer.predict_explain(data, num_threads=threads)

    def precompute(
        self, lead_ids: Sequence[str], num_threads: int = PRECOMPUTE_THREADS,
        chunk: int = PRECOMPUTE_ROWS,
    ) -> int:  # fmt: skip
        """Fill the reasons cache for these leads' current online features (their stored
        titles), ``chunk`` leads per read and per LightGBM call; returns the rows computed.
        Unknown ids are skipped."""
        computed = 0
        for start in range(0, len(lead_ids), chunk):
            requests = [_LeadKey(i) for i in lead_ids[start : start + chunk]]
            data, _ = self.features(requests)
            if data:
                computed += self.explainer.precompute(data, num_threads)
        return computed

    def score(self, requests: Sequence[LeadScoreRequest]) -> tuple[list[LeadScore], list[str]]:
        """Scores for the leads that exist, in request order, and the ids that do not."""
        return self._scores(*self.features(requests))

    async def score_async(
        self, requests: Sequence[LeadScoreRequest]
    ) -> tuple[list[LeadScore], list[str]]:
        """``score`` on the event loop (when ``on_loop``): the reads do not block it."""
        return self._scores(*await self.reader.features_async(requests))

    def _scores(
        self, data: dict[str, list], not_found: list[str]
    ) -> tuple[list[LeadScore], list[str]]:
        if not data:
            return [], not_found
        model = self.model
        probs, reasons = self.predict(data)
        as_of = newest_timestamps(data)
        now = self.clock()
        threshold = self.threshold
        results = [
            LeadScore(
                lead_id=lead_id,
                probability=float(p),
                score=model.score(p),
                is_mql=bool(p >= threshold),
                threshold=threshold,
                reasons=[_reason(r) for r in rs],
                model_version=model.version,
                feature_service=model.feature_service,
                features_as_of=datetime.fromtimestamp(ts, UTC) if ts else None,
                feature_age_seconds=float(now - ts) if ts else None,
            )
            for lead_id, p, rs, ts in zip(data["lead_id"], probs, reasons, as_of, strict=True)
        ]
        return results, not_found


@dataclass(frozen=True)
class _LeadKey:
    """A lead to read features for, with its stored title (what ``features`` needs)."""

    lead_id: str
    job_title: str | None = None


class NotACustomerError(LookupError):
    """The account exists but has no subscription in force."""


class AccountScorer:
    """Churn risk of a customer account: Feast online features of the churn feature service
    (keyed by account) -> calibrated probability, risk tier and top reasons."""

    def __init__(
        self, store: Any, model: ScoringModel, *, top_k: int = 3,
        clock: Callable[[], float] = time.time, reads: str = "direct",
        reasons: str = "treeshap", cache_rows: int = DEFAULT_CACHE_ROWS,
    ) -> None:  # fmt: skip
        if not model.meta.tiers:
            raise FeatureContractError(
                f"model {model.version} has no risk tiers: not a churn model"
            )
        self.store, self.model, self.top_k, self.clock = store, model, top_k, clock
        self.reasons = reasons
        model.prepare(reasons)
        self.explainer = CachedExplainer(model, top_k, cache_rows, reasons)
        self._gate = _store_gate(store)
        needed = [*model.feature_names, "is_customer"]
        self.feature_service = _resolve_service(store, model.feature_service, needed, model.version)
        self._direct = _direct_reader(store, self.feature_service, reads)
        self.on_loop = reads_on_loop(self._direct)

    def ping(self) -> None:
        """One tiny online read; raises StoreUnavailableError if the online store does not
        answer."""
        self._read(["__readyz__"])

    async def ping_async(self) -> None:
        """``ping`` on the event loop (when ``on_loop``)."""
        await self._read_async(["__readyz__"])

    async def _read_async(self, account_ids: list[str]) -> dict[str, list]:
        direct = self._direct
        if not self.on_loop or direct is None:
            raise RuntimeError("this scorer's reads block: call them from a worker thread")
        if direct.redis:
            return await self._gate.read_async(lambda: direct.read_async(account_ids=account_ids))
        return self._gate.read(lambda: direct.read(account_ids=account_ids))

    def _read(self, account_ids: list[str]) -> dict[str, list]:
        if self._direct is not None:
            direct = self._direct
            return self._gate.read(lambda: direct.read(account_ids=account_ids))
        resp = self._gate.read(
            lambda: self.store.get_online_features(
                self.feature_service, entity_rows={"account_id": account_ids}
            )
        )
        return resp.to_dict(include_event_timestamps=True)

    def precompute(
        self, account_ids: Sequence[str], num_threads: int = PRECOMPUTE_THREADS,
        chunk: int = PRECOMPUTE_ROWS,
    ) -> int:  # fmt: skip
        """Fill the reasons cache for these accounts' current online features (customers
        only: the others are not scored); returns the rows computed."""
        computed = 0
        for start in range(0, len(account_ids), chunk):
            data = self._read(list(account_ids[start : start + chunk]))
            keep = [
                i for i, c in enumerate(data.get("is_customer", []))
                if c is not None and not (isinstance(c, float) and math.isnan(c)) and c >= 1
            ]  # fmt: skip
            if keep:
                rows = {name: [values[i] for i in keep] for name, values in data.items()}
                computed += self.explainer.precompute(rows, num_threads)
        return computed

    def score(self, request: ChurnRiskRequest) -> ChurnRisk | None:
        """The account's churn risk; None when the account is unknown; NotACustomerError when
        it is not a customer now."""
        return self._risk(request, self._read([request.account_id]))

    async def score_async(self, request: ChurnRiskRequest) -> ChurnRisk | None:
        """``score`` on the event loop (when ``on_loop``): the read does not block it."""
        return self._risk(request, await self._read_async([request.account_id]))

    def _risk(self, request: ChurnRiskRequest, data: dict[str, list]) -> ChurnRisk | None:
        customer = data.get("is_customer", [None])[0]
        if customer is None or (isinstance(customer, float) and math.isnan(customer)):
            return None
        if customer < 1:
            raise NotACustomerError(
                f"account '{request.account_id}' has no subscription in force: churn risk is "
                "scored for customers"
            )
        probs, reasons = self.explainer.predict_explain(data, num_threads=1)
        p = float(probs[0])
        ts = newest_timestamps(data, key="account_id")[0]
        tiers = self.model.meta.tiers or []
        return ChurnRisk(
            account_id=request.account_id,
            probability=p,
            risk_tier=self.model.tier(p) or "",
            tier_thresholds={t["name"]: float(t["min_probability"]) for t in tiers},
            reasons=[_reason(r) for r in reasons[0]],
            model_version=self.model.version,
            feature_service=self.model.feature_service,
            features_as_of=datetime.fromtimestamp(ts, UTC) if ts else None,
            feature_age_seconds=float(self.clock() - ts) if ts else None,
        )


class OfferRanker:
    """Next best offer for a lead: online features -> uplift per offer -> the lead's eligible
    offers ranked by expected net value -> the served policy's choice, with epsilon-greedy
    exploration and the propensity of the answer.

    Offers' values, costs and eligibility come from the current offers file, so a business
    change needs no retraining; offers the model was not trained on cannot be ranked and are
    left out (as are model offers the file no longer declares).
    """

    def __init__(
        self, store: Any, model: NboModel, offers: Offers, stages: StagesConfig,
        epsilon: float, *, clock: Callable[[], float] = time.time, reads: str = "direct",
        cache_rows: int = DEFAULT_CACHE_ROWS,
    ) -> None:  # fmt: skip
        self.model, self.offers, self.stages, self.epsilon, self.clock = (
            model,
            offers,
            stages,
            epsilon,
            clock,
        )
        needed = [*model.feature_names, *features_needed(stages), "is_customer"]
        self.reader = LeadFeatureReader(store, model.feature_service, needed, model.version, reads)
        self._stage = StageRules(stages)
        self.served = [o for o in model.offers if o in offers.ids]
        self._columns = [model.offers.index(o) for o in self.served]
        self._values = [offers.get(o).value for o in self.served]
        self._costs = [offers.get(o).cost for o in self.served]
        self.uplift = CachedUplift(model, cache_rows)
        self._masks: dict[tuple[str, bool], list[bool]] = {}

    def _eligible(self, stage: str, is_customer: Any) -> list[bool]:
        """Which served offers a lead in ``stage`` may get (a missing status is 'not a
        customer'); one mask per stage and status, built on first use."""
        customer = is_customer is not None and not math.isnan(is_customer) and is_customer >= 1
        mask = self._masks.get((stage, customer))
        if mask is None:
            eligible = self.offers.eligible([stage], [float(customer)])[0]
            mask = [bool(eligible[self.offers.ids.index(o)]) for o in self.served]
            self._masks[(stage, customer)] = mask
        return mask

    def precompute(self, lead_ids: Sequence[str], chunk: int = PRECOMPUTE_ROWS) -> int:
        """Fill the uplift cache for these leads' current online features (their stored
        titles), ``chunk`` leads per read; returns the rows computed. Unknown ids are
        skipped."""
        computed = 0
        for start in range(0, len(lead_ids), chunk):
            requests = [_LeadKey(i) for i in lead_ids[start : start + chunk]]
            data, _ = self.reader.features(requests)
            if data:
                computed += self.uplift.precompute(data)
        return computed

    def _draws(self, lead_id: str) -> tuple[float, float]:
        """Two uniforms fixed per lead, model version and UTC day: asking twice the same day
        gives the same answer (and the logged propensity stays true)."""
        day = datetime.fromtimestamp(self.clock(), UTC).date().isoformat()
        digest = hashlib.sha256(f"{lead_id}|{self.model.version}|{day}".encode()).digest()
        return (
            int.from_bytes(digest[:8], "big") / 2**64,
            int.from_bytes(digest[8:16], "big") / 2**64,
        )

    @property
    def on_loop(self) -> bool:
        """Whether ``recommend_async`` may be awaited on the event loop."""
        return self.reader.on_loop

    def recommend(self, request: NextBestOfferRequest) -> NextBestOffer | None:
        return self._offer(request, *self.reader.features([request]))

    async def recommend_async(self, request: NextBestOfferRequest) -> NextBestOffer | None:
        """``recommend`` on the event loop (when ``on_loop``): the reads do not block it."""
        return self._offer(request, *await self.reader.features_async([request]))

    def _offer(
        self, request: NextBestOfferRequest, data: dict[str, list], not_found: list[str]
    ) -> NextBestOffer | None:
        if not_found:
            return None
        stage = self._stage.first(data)
        is_customer = data["is_customer"][0]
        mask = self._eligible(stage, is_customer)
        uplift = self.uplift.uplift(data)[0, self._columns]
        ranked = rank_offers(uplift, self.served, self._values, self._costs, mask)
        choice = choose_offer(
            ranked, self.model.served_policy, self.epsilon, self._draws(request.lead_id),
            control=self.model.meta.control,
        )  # fmt: skip
        ts = newest_timestamps(data)[0]
        return NextBestOffer(
            lead_id=request.lead_id,
            stage=stage,  # type: ignore[arg-type]
            is_customer=bool(is_customer is not None and is_customer >= 1),
            offers=[
                OfferValue(
                    offer_id=r.offer_id,
                    uplift=r.uplift,
                    value=r.value,
                    cost=r.cost,
                    expected_net_value=r.expected_net_value,
                )
                for r in ranked
            ],
            chosen_offer=choice.chosen,
            policy=self.model.served_policy,
            policy_choice=choice.greedy,
            explored=choice.explored,
            propensity=choice.propensity,
            model_version=self.model.version,
            feature_service=self.model.feature_service,
            features_as_of=datetime.fromtimestamp(ts, UTC) if ts else None,
        )


def _check_account_lookup(store: FeatureStore) -> None:
    """Fail at start-up, not on every request, when the online store cannot map a lead to its
    account (the account features need the account id as an entity key)."""
    try:
        view = store.get_feature_view(PROFILE_VIEW)
    except Exception as exc:
        raise FeatureContractError(
            f"feature view '{PROFILE_VIEW}' is not in the Feast registry: {exc}"
        ) from exc
    if ACCOUNT_FIELD not in {f.name for f in view.features}:
        raise FeatureContractError(
            f"feature view '{PROFILE_VIEW}' does not serve '{ACCOUNT_FIELD}': serving reads "
            f"'{ACCOUNT_REF}' online to find each lead's account"
        )


def _check_order(returned: list[Any], requested: list[str]) -> None:
    # Feast 0.67 returns rows in entity-row order; if a store ever stops doing so we must fail
    # loudly rather than attach one lead's features to another.
    if list(returned) != list(requested):
        raise RuntimeError("online store returned rows out of request order")


def newest_timestamps(data: dict[str, list], key: str = "lead_id") -> list[int]:
    """Per row, the newest event time (epoch s) over the feature views' features. Join keys and
    on-demand features carry 0, and so does a feature with no row."""
    columns = [
        values
        for name, values in data.items()
        if name.endswith(TS_SUFFIX) and name.removesuffix(TS_SUFFIX) not in KEY_COLUMNS
    ]
    if not columns:
        return [0] * len(data[key])
    return np.max(np.asarray(columns, dtype=np.int64), axis=0).tolist()


def _plain(value: object) -> float | int | bool | str | None:
    """JSON-safe scalar: numpy scalars unwrapped, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _reason(reason: ModelReason) -> Reason:
    return Reason(
        text=reason.text,
        feature=reason.feature,
        value=_plain(reason.value),
        direction=reason.direction,
        contribution=float(reason.contribution),
    )

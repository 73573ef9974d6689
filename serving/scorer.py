"""Score leads from the Feast online store with the champion model (no BentoML, no HTTP).

Per batch there are exactly two online reads, whatever the batch size: the leads' account id
from ``lead_profile_fv`` (the account features are keyed by account, so the entity rows need it),
then the feature service itself. A lead without a profile row is "not found".
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.schemas import LeadScore, LeadScoreRequest, Reason
from training.reasons import Reason as ModelReason

if TYPE_CHECKING:
    from feast import FeatureStore

    from training.scoring import ScoringModel

PROFILE_VIEW = "lead_profile_fv"
ACCOUNT_FIELD = "lead_account_id"
ACCOUNT_REF = f"{PROFILE_VIEW}:{ACCOUNT_FIELD}"
TS_SUFFIX = "__ts"  # feast.online_response.TIMESTAMP_POSTFIX
# Join keys and request fields come back in the online response too; they are not features.
KEY_COLUMNS = ("lead_id", "account_id", ACCOUNT_FIELD, "request_job_title")
SINGLE_THREAD_ROWS = 32


class FeatureContractError(RuntimeError):
    """The model and the feature store disagree (feature service or feature names)."""


class LeadScorer:
    """Feast online features -> calibrated probability, score, MQL flag and top reasons.

    ``store`` is a ``feast.FeatureStore``; ``model`` a ``training.scoring.ScoringModel``.
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
    ) -> None:
        self.store = store
        self.model = model
        self.top_k = top_k
        self.clock = clock
        self._read_lock = threading.Lock()
        # Resolve the service once: by name, Feast would look it up in the registry per call.
        try:
            self.feature_service = store.get_feature_service(model.feature_service)
        except Exception as exc:  # Feast raises its own *NotFoundException types
            raise FeatureContractError(
                f"feature service '{model.feature_service}' (needed by model {model.version}) is "
                f"not in the Feast registry: {exc}; apply the feature definitions first"
            ) from exc
        served = {
            f.name for proj in self.feature_service.feature_view_projections for f in proj.features
        }
        missing = [name for name in model.feature_names if name not in served]
        if missing:
            raise FeatureContractError(
                f"model {model.version} needs features that feature service "
                f"'{model.feature_service}' does not serve: {', '.join(missing)}"
            )
        _check_account_lookup(store)

    # -- reads --------------------------------------------------------------------------------
    def _accounts(self, lead_ids: list[str]) -> list[str | None]:
        with self._read_lock:
            resp = self.store.get_online_features([ACCOUNT_REF], entity_rows={"lead_id": lead_ids})
        data = resp.to_dict()
        _check_order(data["lead_id"], lead_ids)
        return data[ACCOUNT_FIELD]

    def ping(self) -> None:
        """One tiny online read; raises if the online store does not answer."""
        self._accounts(["__readyz__"])

    def features(self, requests: Sequence[LeadScoreRequest]) -> tuple[dict[str, list], list[str]]:
        """Online feature columns (with ``<name>__ts`` event times, epoch seconds) for the
        requests whose lead exists, in request order, and the ids that do not exist."""
        ids = [r.lead_id for r in requests]
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
        with self._read_lock:
            resp = self.store.get_online_features(self.feature_service, entity_rows=rows)
        data = resp.to_dict(include_event_timestamps=True)
        _check_order(data["lead_id"], rows["lead_id"])
        return data, not_found

    # -- scoring ------------------------------------------------------------------------------
    def predict(self, data: dict[str, list]) -> tuple[np.ndarray, list[list[ModelReason]]]:
        """Calibrated probabilities and top reasons, exactly as the offline model computes them
        (LightGBM single-threaded for small batches)."""
        rows = len(data[self.model.feature_names[0]])
        threads = 1 if rows <= SINGLE_THREAD_ROWS else 0
        return self.model.predict_explain(data, self.top_k, num_threads=threads)

    def score(self, requests: Sequence[LeadScoreRequest]) -> tuple[list[LeadScore], list[str]]:
        """Scores for the leads that exist, in request order, and the ids that do not."""
        data, not_found = self.features(requests)
        if not data:
            return [], not_found
        model = self.model
        probs, reasons = self.predict(data)
        as_of = _newest_timestamps(data)
        now = self.clock()
        threshold = float(model.threshold)
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


def _newest_timestamps(data: dict[str, list]) -> list[int]:
    """Per row, the newest event time (epoch s) over the feature views' features. Join keys and
    on-demand features carry 0, and so does a feature with no row."""
    columns = [
        values
        for name, values in data.items()
        if name.endswith(TS_SUFFIX) and name.removesuffix(TS_SUFFIX) not in KEY_COLUMNS
    ]
    if not columns:
        return [0] * len(data["lead_id"])
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

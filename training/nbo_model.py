"""The next-best-offer model shared by training and serving: a fitted uplift learner, the feature
contract, the offers it knows and the policy training chose, saved as a directory.

A bundle holds ``learner.joblib`` (the scikit-learn-style learner with its LightGBM models) and
``nbo.json`` (features, categorical levels, offers, control label, policy). Loading a bundle
unpickles the learner: only load bundles from a registry you trust, as with any pickled model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.scoring import BundleError, FeatureMatrix, read_bundle
from training.uplift import predict_uplift_fast

NBO_FILE = "nbo.json"
LEARNER_FILE = "learner.joblib"


@dataclass
class NboMeta:
    feature_service: str
    features: list[str]
    categories: dict[str, list[str]]
    offers: list[str]  # the learner's offer columns, in order
    control: str
    learner: str  # "s" | "t" | "x"
    # what training decided to serve: {"served": "learned"} or {"served": "<offer id>"} or
    # {"served": "control"}, with the reason and the held-out policy values
    policy: dict[str, Any]
    model_kind: str = "nbo"
    extra: dict[str, Any] = field(default_factory=dict)


class NboModel:
    """Uplift per offer for feature rows, through the same encoding as the classifiers."""

    def __init__(self, learner: Any, meta: NboMeta, version: str = "local") -> None:
        self.learner = learner
        self.meta = meta
        self.version = version
        self._matrix = FeatureMatrix(meta.features, meta.categories)

    @property
    def feature_service(self) -> str:
        return self.meta.feature_service

    @property
    def feature_names(self) -> list[str]:
        return self.meta.features

    @property
    def offers(self) -> list[str]:
        return self.meta.offers

    @property
    def served_policy(self) -> str:
        return str(self.meta.policy.get("served", "learned"))

    def matrix(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return self._matrix(columns)

    def uplift(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """(n, n_offers) predicted uplift of each offer over control, columns ``offers``."""
        return predict_uplift_fast(self.learner, self.matrix(columns))

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.learner, directory / LEARNER_FILE)
        (directory / NBO_FILE).write_text(json.dumps(asdict(self.meta), indent=2, default=_json))
        return directory

    @classmethod
    def load(cls, directory: Path | str, version: str = "local") -> NboModel:
        import joblib

        directory = Path(directory)
        meta, learner = read_bundle(
            directory, "next-best-offer", (NBO_FILE, NboMeta), (LEARNER_FILE, joblib.load)
        )
        fitted = [str(o) for o in getattr(learner, "offers_", [])]
        if fitted != meta.offers:
            raise BundleError(
                f"next-best-offer bundle at {directory}: learner offers {fitted} differ from "
                f"{NBO_FILE}'s {meta.offers}"
            )
        if getattr(learner, "n_features_in_", None) != len(meta.features):
            raise BundleError(
                f"next-best-offer bundle at {directory}: learner expects "
                f"{getattr(learner, 'n_features_in_', None)} features, {NBO_FILE} lists "
                f"{len(meta.features)}"
            )
        return cls(learner, meta, version)


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")

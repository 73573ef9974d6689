"""The next-best-offer model shared by training and serving: a fitted uplift learner, the feature
contract, the offers it knows and the policy training chose, saved as a directory.

A bundle holds ``learner.joblib`` (the scikit-learn-style learner with its LightGBM models) and
``nbo.json`` (features, categorical levels, offers, control label, policy, and the stage rules
when the learner reads the funnel stage). Loading a bundle unpickles the learner: only load
bundles from a registry you trust, as with any pickled model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from core.config import StagesConfig
from core.stages import STAGES, StageRules, features_needed
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
    # the stage rules (``StagesConfig`` fields) the learner's last input, the funnel stage, is
    # derived with from the features; None when the learner reads the features only
    stages: dict[str, Any] | None = None


class NboInputs:
    """Feature columns -> the learner's matrix: the features as :class:`FeatureMatrix` encodes
    them, then, with ``stages``, one more column: the funnel stage by those rules (its index in
    ``core.stages.STAGES``). Training and serving build the matrix through the same object.

    The offers are targeted by stage, and a stage is an OR of thresholds on several features
    that boosted trees hardly rebuild from the few rows one offer gets; given as one column,
    each learner splits on it at once.
    """

    def __init__(
        self,
        features: list[str],
        categories: Mapping[str, list[str]],
        stages: StagesConfig | None = None,
    ) -> None:
        missing = [f for f in features_needed(stages) if f not in features] if stages else []
        if missing:
            raise ValueError(f"the stage rules read {missing}, which are not among the features")
        self.features = features
        self.categories = dict(categories)
        self.stages = stages
        self._rules = None if stages is None else StageRules(stages)
        self._matrix = FeatureMatrix(features, categories)

    @property
    def n_columns(self) -> int:
        return len(self.features) + (self.stages is not None)

    def __call__(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        X = self._matrix(columns)
        if self._rules is None:
            return X
        if len(X) == 1:  # one online request: the rules in plain Python
            return np.column_stack([X, [STAGE_CODE[self._rules.first(columns)]]])
        return np.column_stack([X, stage_codes(self._rules, columns)])


STAGE_CODE = {name: float(i) for i, name in enumerate(STAGES)}


def stage_codes(
    stages: StagesConfig | StageRules, columns: Mapping[str, Sequence[Any]]
) -> np.ndarray:
    """The funnel stage per row by ``stages``, as its index in ``core.stages.STAGES``."""
    rules = stages if isinstance(stages, StageRules) else StageRules(stages)
    return np.array([STAGE_CODE[s] for s in rules(columns)], dtype=np.float64)


class NboModel:
    """Uplift per offer for feature rows, through the same encoding as the classifiers."""

    def __init__(self, learner: Any, meta: NboMeta, version: str = "local") -> None:
        self.learner = learner
        self.meta = meta
        self.version = version
        stages = None if meta.stages is None else StagesConfig.model_validate(meta.stages)
        self._inputs = NboInputs(meta.features, meta.categories, stages)

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
        """The learner's input matrix: the features, then the stage when the bundle has rules."""
        return self._inputs(columns)

    def uplift(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """(n, n_offers) predicted uplift of each offer over control, columns ``offers``."""
        return self.uplift_of(self.matrix(columns))

    def uplift_of(self, X: np.ndarray) -> np.ndarray:
        """``uplift`` of a matrix ``matrix`` built."""
        return predict_uplift_fast(self.learner, X)

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
        try:
            model = cls(learner, meta, version)
        except (ValidationError, ValueError) as exc:  # stage rules that do not parse or fit
            raise BundleError(
                f"next-best-offer bundle at {directory}: bad stage rules in {NBO_FILE}: {exc}"
            ) from exc
        expected = model._inputs.n_columns
        if getattr(learner, "n_features_in_", None) != expected:
            raise BundleError(
                f"next-best-offer bundle at {directory}: learner expects "
                f"{getattr(learner, 'n_features_in_', None)} inputs, {NBO_FILE} gives {expected} "
                f"({len(meta.features)} features{' and the stage' if meta.stages else ''})"
            )
        return model


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")

"""The model bundle shared by training and serving, so both compute a score the same way.

A bundle is a directory with ``booster.txt`` (LightGBM) and ``bundle.json`` (feature order,
categorical levels, Platt calibration, threshold, feature service). Serving loads it with the
native Booster (no pyfunc wrapper on the hot path); training writes it and logs it to MLflow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from core.errors import FunnelError, InputError
from training.reasons import Reason, top_reasons

if TYPE_CHECKING:
    import lightgbm as lgb

BUNDLE_FILE = "bundle.json"
BOOSTER_FILE = "booster.txt"


class BundleError(FunnelError, RuntimeError):
    """A model bundle is missing or unreadable; the message names the path."""


Meta = TypeVar("Meta")
Fitted = TypeVar("Fitted")


def read_bundle(
    directory: Path,
    what: str,
    meta_file: tuple[str, Callable[..., Meta]],
    model_file: tuple[str, Callable[[Path], Fitted]],
) -> tuple[Meta, Fitted]:
    """The metadata and the fitted model of a bundle directory: ``meta_file`` is a JSON file
    and the type its keys build, ``model_file`` a file and how to load it. A missing file, or
    one that does not load, raises ``BundleError`` naming ``what`` bundle and the path."""
    (meta_name, meta_type), (model_name, load) = meta_file, model_file
    meta_path, model_path = directory / meta_name, directory / model_name
    for path in (meta_path, model_path):
        if not path.is_file():
            raise BundleError(f"{what} bundle incomplete: {path} is missing")
    try:
        return meta_type(**json.loads(meta_path.read_text())), load(model_path)
    except Exception as exc:  # corrupt JSON, wrong keys or an unreadable model file
        raise BundleError(f"{what} bundle at {directory} is corrupt: {exc}") from exc


def mql_threshold(model_threshold: float | None, configured: float | None) -> float:
    """The MQL threshold in force: ``configured`` (``jobs.promotion.threshold``) when set, else
    the model's own (chosen at training, stored in its bundle). The API's ``is_mql``,
    ``funnel score`` and ``funnel jobs promote-leads`` all flag a lead at p >= this value.
    ``model_threshold`` is None for scores computed elsewhere (a scores file)."""
    threshold = configured if configured is not None else model_threshold
    if threshold is None:
        raise InputError(
            "jobs.promotion.threshold is not set and the scores carry no model threshold; "
            "set it (a probability, e.g. --set jobs.promotion.threshold=0.3)"
        )
    return float(threshold)


@dataclass
class BundleMeta:
    model_kind: str
    feature_service: str
    features: list[str]
    categories: dict[str, list[str]]
    calibration: dict[str, float]  # Platt: p = sigmoid(a * raw + b)
    threshold: float
    extra: dict[str, Any] = field(default_factory=dict)
    # churn: [{"name": "low", "min_probability": 0.0}, ...] in ascending order; None for mql
    tiers: list[dict[str, Any]] | None = None


class FeatureMatrix:
    """Feature columns -> the float64 matrix a model was trained on: features in training
    order, categorical levels as their codes. Shared by every model bundle."""

    def __init__(self, features: list[str], categories: Mapping[str, list[str]]) -> None:
        self.features = features
        self._codes = {
            name: {level: i for i, level in enumerate(levels)}
            for name, levels in categories.items()
        }

    def __call__(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """From a DataFrame or a dict of column lists (serving skips building a one-row
        DataFrame, which costs more than the model).

        Categorical levels become their codes and an unseen level becomes missing (LightGBM
        sends it down the default branch); None, NaN and non-numeric text become missing.
        """
        missing = [name for name in self.features if name not in columns]
        if missing:
            raise KeyError(f"features missing from input: {', '.join(missing)}")
        if self.features and isinstance(columns, dict) and len(columns[self.features[0]]) == 1:
            return np.array([[self._one(name, columns[name][0]) for name in self.features]])
        out = []
        for name in self.features:
            values = columns[name]
            codes = self._codes.get(name)
            if codes is not None:
                values = [
                    codes.get(v, math.nan) if isinstance(v, str) else math.nan for v in values
                ]
            try:
                out.append(np.asarray(values, dtype=np.float64))
            except (TypeError, ValueError):  # a stray string in a numeric column -> missing
                out.append(pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64))
        return np.column_stack(out) if out else np.empty((len(columns[next(iter(columns))]), 0))

    def _one(self, name: str, value: Any) -> float:
        """One cell as ``__call__`` encodes a column (one online request: plain Python, no
        array per feature)."""
        codes = self._codes.get(name)
        if codes is not None:
            return float(codes.get(value, math.nan)) if isinstance(value, str) else math.nan
        if value is None:
            return math.nan
        try:
            return float(value)
        except (TypeError, ValueError):  # a stray string in a numeric column -> missing
            return math.nan


REASON_METHODS = ("treeshap", "path")


class PathContributions:
    """Per-row feature contributions along each tree's decision path (Saabas), from a table
    built once: for every leaf, the change in the node value at each split on the way down,
    credited to the split's feature. Exactly additive (bias + contributions = raw score, like
    TreeSHAP) and a table lookup per tree, so one row takes a fraction of a millisecond where
    TreeSHAP takes several; but it credits splits near the root more than TreeSHAP does, and
    the two disagree on the top feature about half the time on the MQL model."""

    def __init__(self, booster: lgb.Booster) -> None:
        n_features = booster.num_feature()
        tables, offsets, bias, offset = [], [], 0.0, 0
        for tree in booster.dump_model()["tree_info"]:
            table = np.zeros((tree["num_leaves"], n_features))
            root = tree["tree_structure"]
            bias += root["leaf_value"] if "leaf_index" in root else root["internal_value"]
            stack = [(root, np.zeros(n_features))]
            while stack:
                node, acc = stack.pop()
                if "leaf_index" in node:
                    table[node["leaf_index"]] = acc
                    continue
                for side in ("left_child", "right_child"):
                    child = node[side]
                    value = (
                        child["leaf_value"] if "leaf_index" in child else child["internal_value"]
                    )
                    step = acc.copy()
                    step[node["split_feature"]] += value - node["internal_value"]
                    stack.append((child, step))
            tables.append(table)
            offsets.append(offset)
            offset += tree["num_leaves"]
        self.booster = booster
        self.table = np.vstack(tables)
        self.offsets = np.asarray(offsets, dtype=np.intp)
        self.bias = bias

    def __call__(self, x: np.ndarray, num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(raw scores, contributions of shape rows x features) for a feature matrix."""
        leaves = self.booster.predict(x, pred_leaf=True, num_threads=num_threads)
        rows = leaves.astype(np.intp) + self.offsets
        if len(rows) == 1:
            contrib = self.table[rows[0]].sum(axis=0, keepdims=True)
        else:
            contrib = np.zeros((len(rows), self.table.shape[1]))
            for t in range(rows.shape[1]):
                contrib += self.table[rows[:, t]]
        return contrib.sum(axis=1) + self.bias, contrib


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class ScoringModel:
    """A calibrated LightGBM classifier with its feature contract and reason texts."""

    def __init__(self, booster: lgb.Booster, meta: BundleMeta, version: str = "local") -> None:
        self.booster = booster
        self.meta = meta
        self.version = version
        self._matrix = FeatureMatrix(meta.features, meta.categories)
        self._paths: PathContributions | None = None

    # -- contract -----------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return self.meta.features

    @property
    def feature_service(self) -> str:
        return self.meta.feature_service

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / BOOSTER_FILE))
        (directory / BUNDLE_FILE).write_text(json.dumps(asdict(self.meta), indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path | str, version: str = "local") -> ScoringModel:
        import lightgbm as lgb

        directory = Path(directory)
        meta, booster = read_bundle(
            directory,
            "model",
            (BUNDLE_FILE, BundleMeta),
            (BOOSTER_FILE, lambda path: lgb.Booster(model_file=str(path))),
        )
        if booster.num_feature() != len(meta.features):
            raise BundleError(
                f"model bundle at {directory}: booster has {booster.num_feature()} features, "
                f"bundle.json lists {len(meta.features)}"
            )
        return cls(booster, meta, version)

    # -- scoring ------------------------------------------------------------------------------
    def matrix(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Features in training order as float64 (see ``FeatureMatrix``)."""
        return self._matrix(columns)

    def raw_score(self, x: np.ndarray, num_threads: int = 0) -> np.ndarray:
        return self.booster.predict(x, raw_score=True, num_threads=num_threads)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        cal = self.meta.calibration
        return _sigmoid(cal["a"] * raw + cal["b"])

    def predict_proba(
        self, columns: Mapping[str, Sequence[Any]], num_threads: int = 0
    ) -> np.ndarray:
        return self.calibrate(self.raw_score(self.matrix(columns), num_threads))

    def tier(self, probability: float) -> str | None:
        """The risk tier a probability falls in (the last whose lower bound it reaches)."""
        if not self.meta.tiers:
            return None
        name = self.meta.tiers[0]["name"]
        for tier in self.meta.tiers:
            if probability >= tier["min_probability"]:
                name = tier["name"]
        return name

    @staticmethod
    def score(probability: float) -> int:
        """The 0-100 Signal Threshold Score: the calibrated probability in percent."""
        return round(100.0 * min(max(float(probability), 0.0), 1.0))

    def prepare(self, method: str) -> None:
        """Build what ``method`` needs now (the path table takes about a second for a
        400-tree model), so the first request does not wait for it."""
        if method == "path" and self._paths is None:
            self._paths = PathContributions(self.booster)

    def contributions(
        self, x: np.ndarray, num_threads: int = 0, method: str = "treeshap"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw scores, per-feature log-odds contributions) of a matrix: TreeSHAP (LightGBM's
        ``pred_contrib``) or the decision-path attribution (``PathContributions``)."""
        if method == "path":
            self.prepare(method)
            assert self._paths is not None
            return self._paths(x, num_threads)
        if method != "treeshap":
            raise ValueError(f"reason method must be one of {REASON_METHODS}, got {method!r}")
        contrib = self.booster.predict(x, pred_contrib=True, num_threads=num_threads)
        return self.raw_score(x, num_threads), contrib[:, :-1]

    def predict_explain(
        self,
        columns: Mapping[str, Sequence[Any]],
        top_k: int = 3,
        num_threads: int = 0,
        method: str = "treeshap",
    ) -> tuple[np.ndarray, list[list[Reason]]]:
        """Calibrated probabilities and each row's top reasons from one feature matrix, the
        contributions by ``method`` (see ``contributions``); the probability is the same
        either way (both attributions add up to the raw score).

        ``num_threads=1`` suits a few rows: OpenMP start-up (and its spin-waits on a busy
        machine) costs far more than a one-row predict.
        """
        x = self.matrix(columns)
        raw, contrib = self.contributions(x, num_threads, method)
        prob = self.calibrate(raw)
        names = self.feature_names
        values = [list(columns[n]) for n in names]
        reasons = [
            top_reasons(names, [col[i] for col in values], list(row), top_k)
            for i, row in enumerate(contrib)
        ]
        return prob, reasons

    def explain(self, columns: Mapping[str, Sequence[Any]], top_k: int = 3) -> list[list[Reason]]:
        return self.predict_explain(columns, top_k)[1]

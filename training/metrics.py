"""Classification metrics and threshold rules as pure functions on arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _check_binary(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_score = np.asarray(y_true, dtype=float), np.asarray(y_score, dtype=float)
    if y_true.shape != y_score.shape or y_true.ndim != 1:
        raise ValueError("y_true and y_score must be 1-D arrays of the same length")
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0 and 1")
    return y_true, y_score


def lift_at(y_true: np.ndarray, y_score: np.ndarray, fraction: float = 0.1) -> float:
    """Positive rate in the top ``fraction`` by score divided by the overall positive rate."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y_true, y_score = _check_binary(y_true, y_score)
    base = y_true.mean()
    if base == 0:
        return float("nan")
    k = max(1, round(fraction * len(y_true)))
    top = np.argsort(-y_score, kind="stable")[:k]
    return float(y_true[top].mean() / base)


def lift_curve(y_true: np.ndarray, y_score: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Decile table: share of rows, positive rate and lift per score bin, best bin first."""
    y_true, y_score = _check_binary(y_true, y_score)
    order = np.argsort(-y_score, kind="stable")
    chunks = np.array_split(order, bins)
    base = y_true.mean() or float("nan")
    rows = [
        {
            "bin": i + 1,
            "rows": len(c),
            "positive_rate": y_true[c].mean(),
            "lift": y_true[c].mean() / base,
        }
        for i, c in enumerate(chunks)
    ]
    return pd.DataFrame(rows)


def capacity_threshold(y_score: np.ndarray, snapshot: np.ndarray, weekly_capacity: int) -> float:
    """The score above which, in a typical week, about ``weekly_capacity`` leads fall.

    Per snapshot, the capacity-th highest score; the median over snapshots is robust to one
    unusually busy week.
    """
    if weekly_capacity <= 0:
        raise ValueError(f"weekly_capacity must be positive, got {weekly_capacity}")
    frame = pd.DataFrame({"s": np.asarray(y_score, dtype=float), "t": np.asarray(snapshot)})
    kth = frame.groupby("t")["s"].apply(
        lambda s: np.sort(s.to_numpy())[::-1][min(weekly_capacity, len(s)) - 1]
    )
    return float(np.median(kth.to_numpy()))


def best_precision(y_true: np.ndarray, y_score: np.ndarray, min_flagged: int = 1) -> float:
    """The highest precision any threshold reaches while flagging at least ``min_flagged``
    rows."""
    y_true, y_score = _check_binary(y_true, y_score)
    order = np.argsort(-y_score, kind="stable")
    precision = np.cumsum(y_true[order]) / np.arange(1, len(order) + 1)
    return float(precision[min(max(min_flagged, 1), len(order)) - 1 :].max())


def precision_threshold(
    y_true: np.ndarray, y_score: np.ndarray, target: float, min_flagged: int = 1
) -> float | None:
    """The lowest score whose rows at or above it reach ``target`` precision, flagging at least
    ``min_flagged`` rows; None when no threshold does (``best_precision`` says how far it is)."""
    if not 0 < target < 1:
        raise ValueError(f"target precision must be in (0, 1), got {target}")
    y_true, y_score = _check_binary(y_true, y_score)
    order = np.argsort(-y_score, kind="stable")
    hits = np.cumsum(y_true[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= target)
    ok = ok[ok >= min(max(min_flagged, 1), len(order)) - 1]
    if len(ok) == 0:
        return None
    return float(y_score[order][ok[-1]])


def top_fraction_threshold(y_score: np.ndarray, fraction: float) -> float:
    """The score at or above which the top ``fraction`` of rows fall."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    scores = np.sort(np.asarray(y_score, dtype=float))[::-1]
    return float(scores[max(int(np.ceil(fraction * len(scores))), 1) - 1])


def precision_recall_at(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float
) -> tuple[float, float]:
    y_true, y_score = _check_binary(y_true, y_score)
    chosen = y_score >= threshold
    precision = float(y_true[chosen].mean()) if chosen.any() else float("nan")
    recall = float(y_true[chosen].sum() / y_true.sum()) if y_true.sum() else float("nan")
    return precision, recall


def classification_report(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float
) -> dict[str, float]:
    """The metrics every classifier logs: ranking, calibration and at-threshold quality."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y_true, y_prob = _check_binary(y_true, y_prob)
    precision, recall = precision_recall_at(y_true, y_prob, threshold)
    return {
        "roc_auc": float(roc_auc_score(y_true, y_prob)),
        "pr_auc": float(average_precision_score(y_true, y_prob)),
        "brier": float(brier_score_loss(y_true, y_prob)),
        "log_loss": float(log_loss(y_true, np.clip(y_prob, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "lift_at_10pct": lift_at(y_true, y_prob, 0.1),
        "precision_at_threshold": precision,
        "recall_at_threshold": recall,
        "positive_rate": float(y_true.mean()),
        "rows": float(len(y_true)),
    }


def fit_platt(raw: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Platt scaling on raw margins: p = sigmoid(a * raw + b), fitted by logistic regression."""
    from sklearn.linear_model import LogisticRegression

    raw = np.asarray(raw, dtype=float).reshape(-1, 1)
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        raise ValueError("calibration needs both classes in the validation rows")
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw, y_true)
    return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}

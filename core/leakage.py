"""The leakage guard: find the columns of a flat table that are known only after the outcome,
without being told which. Pure functions of the columns and the label.

A CRM export mixes what was known about a unit when it was scored with what sales wrote down
later (a status or tag, the call's length, a closing date). Such a column predicts the label
because the label caused it, and a model that uses it is useless on new rows. Each rule below
gives a signal:

- ``strong``: the column alone orders the label with an AUC at or above ``block_auc``;
- ``suspect``: alone it reaches ``suspect_auc``, well below the block tier;
- ``standout``: it is the strongest column and far above the next one (``standout_gap``);
- ``missingness``: it is filled mostly for one class (a field sales fill in when a deal closes);
- ``name``: its name hints at an outcome (status, stage, tag, result, duration, won, ...);
- ``after``: on a timestamped table, its dates fall after the row's time.

A column is a leak (dropped before training) on ``strong``, ``standout`` or ``after`` alone, or
when ``suspect`` meets an independent signal (``name`` or ``missingness``). A column with one
weaker signal is a suspect: kept, named in the report, and checked again after training
(``too_good_to_be_true``). The user has the last word: a dataset spec's ``leakage.keep`` lists
columns known before the outcome, and ``post_outcome`` the ones known after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

Verdict = Literal["leak", "suspect"]

# Words that name an outcome, or what sales record about one. Matched as whole words of the
# column name (split at non-letters and at camelCase humps).
OUTCOME_WORDS = frozenset(
    {
        "status", "stage", "tag", "tags", "quality", "score", "scored", "result", "results",
        "outcome", "duration", "closed", "close", "closing", "won", "win", "lost", "loss",
        "reason", "converted", "conversion", "churn", "churned", "cancel", "cancelled",
        "canceled", "disposition", "qualified", "rating", "grade", "revert", "notable",
    }
)  # fmt: skip


@dataclass(frozen=True)
class LeakagePolicy:
    """The guard's thresholds (``leakage`` in a dataset spec)."""

    block_auc: float = 0.90
    suspect_auc: float = 0.75
    standout_gap: float = 0.10
    missing_ratio: float = 3.0  # filled this many times as often in one class as in the other
    missing_auc: float = 0.70  # and the filled/empty flag alone orders the label this well


@dataclass
class ColumnFinding:
    column: str
    auc: float
    signals: list[str] = field(default_factory=list)  # the rules that fired, with their numbers
    verdict: Verdict | None = None

    def text(self) -> str:
        """One line for the import report: what the guard saw."""
        return "; ".join(self.signals)


def name_words(name: str) -> list[str]:
    """``"Lead Quality"`` -> ``["lead", "quality"]``; ``"callDurationSec"`` ->
    ``["call", "duration", "sec"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z]+", spaced.lower()) if w]


def outcome_words(name: str) -> list[str]:
    return [w for w in name_words(name) if w in OUTCOME_WORDS]


def single_column_auc(x: pd.Series, y: np.ndarray) -> float:
    """How well one column alone orders the label: ROC AUC of its values (categories by their
    label rate), folded so that 0.3 counts as 0.7. Missing values form their own group."""
    if len(np.unique(y)) < 2:
        return 0.5
    if x.dtype == object or pd.api.types.is_datetime64_any_dtype(x):
        # each half scored by the label rates of the other: a many-valued column cannot look
        # predictive by remembering its own rows
        keys = x.astype(str).where(x.notna(), "__missing__").to_numpy()
        half = np.random.default_rng(0).random(len(keys)) < 0.5
        score = np.empty(len(keys))
        for fit, apply in ((half, ~half), (~half, half)):
            rates = pd.Series(y[fit]).groupby(keys[fit]).mean()
            score[apply] = pd.Series(keys[apply]).map(rates).fillna(y[fit].mean()).to_numpy()
    else:
        v = x.to_numpy(dtype=float)
        score = np.where(np.isnan(v), np.nanmin(v) - 1 if np.isfinite(v).any() else 0, v)
    auc = float(roc_auc_score(y, score))
    return max(auc, 1 - auc)


def missingness_signal(x: pd.Series, y: np.ndarray, policy: LeakagePolicy) -> str | None:
    """A column filled mostly for one class: the share filled among positives and negatives
    differ by ``missing_ratio`` times and the filled flag alone reaches ``missing_auc``."""
    filled = x.notna().to_numpy()
    if filled.all() or not filled.any() or len(np.unique(y)) < 2:
        return None
    pos, neg = filled[y == 1].mean(), filled[y == 0].mean()
    auc = float(roc_auc_score(y, filled.astype(float)))
    auc = max(auc, 1 - auc)
    high, low = max(pos, neg), min(pos, neg)
    if auc >= policy.missing_auc and high >= policy.missing_ratio * max(low, 1e-9):
        return (
            f"filled in {pos:.0%} of positive rows and {neg:.0%} of the others "
            f"(the filled flag alone: AUC {auc:.2f})"
        )
    return None


def find_leaks(
    features: Mapping[str, pd.Series],
    y: np.ndarray,
    policy: LeakagePolicy = LeakagePolicy(),
    dated_after: Mapping[str, int] | None = None,
) -> dict[str, ColumnFinding]:
    """Every column's single AUC and the signals it raised, with a verdict where one applies.

    ``features`` are typed columns (numeric as float with NaN, categories as text with None);
    ``dated_after`` counts, per date column of a timestamped table, the rows whose date falls
    after the row's time.
    """
    y = np.asarray(y)
    findings = {c: ColumnFinding(c, round(single_column_auc(v, y), 4)) for c, v in features.items()}
    ranked = sorted(findings.values(), key=lambda f: f.auc, reverse=True)
    for f in findings.values():
        strength = None
        if f.auc >= policy.block_auc:
            f.signals.append(
                f"alone predicts the label with AUC {f.auc:.3f} (>= {policy.block_auc})"
            )
            f.verdict = "leak"
        elif f.auc >= policy.suspect_auc:
            strength = f"alone predicts the label with AUC {f.auc:.3f} (>= {policy.suspect_auc})"
        if (
            f.verdict is None
            and len(ranked) > 1
            and f is ranked[0]
            and f.auc >= policy.suspect_auc
            and f.auc - ranked[1].auc >= policy.standout_gap
        ):
            f.signals.append(
                f"alone predicts the label with AUC {f.auc:.3f}, far above the next column "
                f"('{ranked[1].column}', {ranked[1].auc:.3f})"
            )
            f.verdict = "leak"
            strength = None
        independent = []
        words = outcome_words(f.column)
        if words:
            independent.append(f"its name speaks of an outcome ({', '.join(words)})")
        missing = missingness_signal(features[f.column], y, policy)
        if missing:
            independent.append(missing)
        after = (dated_after or {}).get(f.column, 0)
        if after:
            f.signals.append(
                f"dated after the row's timestamp in {after} rows: known only after the outcome"
            )
            f.verdict = "leak"
        f.signals += [s for s in (strength, *independent) if s]
        if f.verdict is None and strength and independent:
            f.verdict = "leak"
        elif f.verdict is None and f.signals:
            f.verdict = "suspect"
    return findings


def too_good_to_be_true(
    test_auc: float, max_test_auc: float, contributions: Mapping[str, float], top: int = 3
) -> str | None:
    """Why a trained model should not be crowned without the user's say, or None.

    A test AUC far above what such tasks reach (``max_test_auc``) usually means a column known
    only after the outcome got through; the message names the largest contributors (feature ->
    share of the model's gain) so the user can remove them or confirm them.
    """
    if test_auc < max_test_auc:
        return None
    names = sorted(contributions, key=lambda c: contributions[c], reverse=True)[:top]
    listed = ", ".join(f"'{c}' ({contributions[c]:.0%} of the gain)" for c in names)
    return (
        f"test ROC AUC {test_auc:.3f} is at or above {max_test_auc}: too good to be true for "
        f"this kind of task; the largest contributors are {listed}"
    )

"""Funnel stages from features, by the ordered rules in config (``stages``): pure functions.

A lead's stage at a snapshot is the first rule any of whose conditions holds, else the default.
A condition reads one feature: ``"pricing_view_30d >= 1"``. A missing value (NaN) never
satisfies a condition.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.config import CONDITION_PATTERN, StagesConfig
from core.errors import UnknownNameError

STAGES: tuple[str, ...] = ("awareness", "consideration", "decision", "retention")
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
        ">": operator.gt, "<": operator.lt}  # fmt: skip
_CONDITION = re.compile(CONDITION_PATTERN)


def parse_condition(text: str) -> tuple[str, str, float]:
    """``"pricing_view_30d >= 1"`` -> ``("pricing_view_30d", ">=", 1.0)``."""
    match = _CONDITION.match(text)
    if match is None:
        raise ValueError(f"stage condition {text!r} must look like 'feature >= 1'")
    return match[1], match[2], float(match[3])


def features_needed(rules: StagesConfig) -> list[str]:
    """Every feature the rules read, in first-use order."""
    seen: dict[str, None] = {}
    for rule in rules.rules:
        for condition in rule.when:
            seen.setdefault(parse_condition(condition)[0], None)
    return list(seen)


def assign_stages(rules: StagesConfig, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
    """Stage name per row of ``columns`` (a DataFrame or a dict of equal-length columns)."""
    return StageRules(rules)(columns)


class StageRules:
    """The stage rules parsed once. ``rules(columns)`` is ``assign_stages``; ``rules.first(
    columns)`` is the stage of the first row alone, in plain Python: an online request reads one
    lead, and numpy's per-call cost there is twenty times the comparisons themselves."""

    def __init__(self, rules: StagesConfig) -> None:
        self.default = rules.default
        self.rules = [
            (rule.stage, [(name, OPS[op], value) for name, op, value in map(parse_condition, rule.when)])
            for rule in rules.rules
        ]  # fmt: skip
        self.needed = features_needed(rules)

    def _check(self, columns: Mapping[str, Sequence[Any]]) -> None:
        missing = [f for f in self.needed if f not in columns]
        if missing:
            raise UnknownNameError(f"stage rules need feature(s) {missing}, which the input lacks")

    def __call__(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        self._check(columns)
        n = len(next(iter(columns.values()))) if isinstance(columns, dict) else len(columns)
        out = np.full(n, self.default, dtype=object)
        decided = np.zeros(n, dtype=bool)
        for stage, conditions in self.rules:
            hit = np.zeros(n, dtype=bool)
            for name, op, value in conditions:
                x = np.asarray(columns[name], dtype=float)
                with np.errstate(invalid="ignore"):
                    hit |= op(x, value) & ~np.isnan(x)
            out[hit & ~decided] = stage
            decided |= hit
        return out

    def first(self, columns: Mapping[str, Sequence[Any]]) -> str:
        """The stage of the first row of ``columns``; a missing value (None, NaN) satisfies no
        condition, as in ``__call__``."""
        self._check(columns)
        for stage, conditions in self.rules:
            for name, op, value in conditions:
                column = columns[name]
                x = column.iloc[0] if hasattr(column, "iloc") else column[0]
                if x is None:
                    continue
                x = float(x)
                if not math.isnan(x) and op(x, value):
                    return stage
        return self.default

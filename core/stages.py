"""Funnel stages from features, by the ordered rules in config (``stages``): pure functions.

A lead's stage at a snapshot is the first rule any of whose conditions holds, else the default.
A condition reads one feature: ``"pricing_view_30d >= 1"``. A missing value (NaN) never
satisfies a condition.
"""

from __future__ import annotations

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
    missing = [f for f in features_needed(rules) if f not in columns]
    if missing:
        raise UnknownNameError(f"stage rules need feature(s) {missing}, which the input lacks")
    n = len(next(iter(columns.values()))) if isinstance(columns, dict) else len(columns)
    out = np.full(n, rules.default, dtype=object)
    decided = np.zeros(n, dtype=bool)
    for rule in rules.rules:
        hit = np.zeros(n, dtype=bool)
        for condition in rule.when:
            name, op, value = parse_condition(condition)
            x = np.asarray(columns[name], dtype=float)
            with np.errstate(invalid="ignore"):
                hit |= OPS[op](x, value) & ~np.isnan(x)
        out[hit & ~decided] = rule.stage
        decided |= hit
    return out

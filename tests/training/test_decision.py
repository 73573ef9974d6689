"""Decision rules that never crash after tuning, splits that respect time, and the check that
withholds a model too good to be true: pure steps on tiny arrays, then one imported table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import CapacityThreshold, PrecisionThreshold, TopFractionThreshold
from core.errors import InputError
from training.train import (
    check_decision_rule,
    choose_threshold,
    decision_metrics,
    time_ordered_split,
)

Y = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
WEEKS = np.zeros(10)


def test_top_fraction_defaults_to_the_positive_rate():
    threshold, note = choose_threshold(TopFractionThreshold(mode="top_fraction"), None, P, Y, WEEKS)
    assert threshold == 0.8 and note is None  # 2 positives of 10: the top 2 rows
    given = TopFractionThreshold(mode="top_fraction", fraction=0.3)
    assert choose_threshold(given, None, P, Y, WEEKS) == (0.7, None)


def test_an_unreachable_precision_target_falls_back_and_says_so():
    threshold, note = choose_threshold(
        PrecisionThreshold(mode="precision", target=0.9), None, P, Y, WEEKS
    )
    assert threshold == 0.8  # the top fraction at the positive rate
    assert "no threshold reaches precision 0.90" in note and "top 20.0%" in note
    reachable = PrecisionThreshold(mode="precision", target=0.2)
    assert choose_threshold(reachable, None, P, Y, WEEKS) == (0.05, None)  # 10 rows at least
    assert "best 0.20 flagging 10 or more" in note  # a lone top row does not count


def test_a_weekly_capacity_needs_time_and_says_which_key():
    check_decision_rule(CapacityThreshold(), dated=True, setting="training.mql.threshold")
    with pytest.raises(InputError, match=r"imports.leads.decision: a weekly capacity needs"):
        check_decision_rule(CapacityThreshold(), dated=False, setting="imports.leads.decision")


def test_decisions_per_week_only_when_the_rows_have_weeks():
    assert decision_metrics(Y, P, 0.65, 2, None) == {"mql_per_week": 1.5}
    assert decision_metrics(Y, P, 0.65, None, None) == {"flagged_share": 0.3}


def test_the_time_ordered_split_tests_on_the_newest_rows():
    stamps = pd.Series(pd.date_range("2026-01-01", periods=10, freq="D", tz="UTC"))
    ids = pd.Series([f"u{i}" for i in range(10)])
    shuffled = np.random.default_rng(0).permutation(10)
    split = time_ordered_split(stamps[shuffled].reset_index(drop=True), ids[shuffled])
    by_day = dict(zip(stamps[shuffled].dt.day, split, strict=True))
    assert [by_day[d] for d in range(1, 11)] == ["train"] * 6 + ["validation"] * 2 + ["test"] * 2

import numpy as np
import pytest

from training.metrics import (
    best_precision,
    capacity_threshold,
    classification_report,
    fit_platt,
    lift_at,
    precision_recall_at,
    precision_threshold,
    top_fraction_threshold,
)


def test_lift_at_by_hand():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    # top 20% = first two rows: one positive of two = 0.5; base rate 0.2 -> lift 2.5
    assert lift_at(y, s, 0.2) == pytest.approx(2.5)
    assert lift_at(y, s, 1.0) == pytest.approx(1.0)


def test_lift_rejects_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        lift_at(np.array([0, 1]), np.array([0.1, 0.2]), 0)
    with pytest.raises(ValueError, match="only 0 and 1"):
        lift_at(np.array([0, 2]), np.array([0.1, 0.2]), 0.5)
    with pytest.raises(ValueError, match="same length"):
        lift_at(np.array([0, 1]), np.array([0.1]), 0.5)


def test_capacity_threshold_is_median_of_weekly_kth_score():
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.6, 0.5, 0.3, 0.2, 0.1])
    weeks = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3])
    # 2nd highest per week: 0.8, 0.6, 0.2 -> median 0.6
    assert capacity_threshold(scores, weeks, 2) == pytest.approx(0.6)
    # capacity above a week's size takes that week's lowest score
    assert capacity_threshold(scores, weeks, 10) == pytest.approx(0.1)


def test_precision_threshold_by_hand():
    y = np.array([1, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    # precision at k: 1, 1, .67, .75, .6, .5 -> lowest score with >= 0.75 is 0.6
    assert precision_threshold(y, s, 0.75) == pytest.approx(0.6)
    assert precision_threshold(np.array([0, 0, 1]), np.array([0.9, 0.8, 0.1]), 0.9) is None
    assert best_precision(np.array([0, 0, 1]), np.array([0.9, 0.8, 0.1])) == pytest.approx(1 / 3)
    assert best_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == 1.0
    assert best_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]), 2) == 2 / 3


def test_top_fraction_threshold_by_hand():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    assert top_fraction_threshold(scores, 0.4) == 0.7  # the top 2 of 5
    assert top_fraction_threshold(scores, 0.01) == 0.9  # at least one row
    with pytest.raises(ValueError, match="fraction"):
        top_fraction_threshold(scores, 1.0)


def test_precision_recall_at():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.3, 0.1])
    assert precision_recall_at(y, s, 0.5) == (0.5, 0.5)


def test_classification_report_fields():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    report = classification_report(y, p, 0.5)
    assert report["roc_auc"] > 0.6
    assert {"pr_auc", "brier", "log_loss", "lift_at_10pct", "precision_at_threshold"} <= set(report)


def test_platt_recovers_a_known_calibration():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(2.0 * raw - 1.0)))).astype(int)
    cal = fit_platt(raw, y)
    assert cal["a"] == pytest.approx(2.0, abs=0.1)
    assert cal["b"] == pytest.approx(-1.0, abs=0.1)
    with pytest.raises(ValueError, match="both classes"):
        fit_platt(raw[:5], np.zeros(5))

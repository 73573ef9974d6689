"""Choosing the next-best-offer learner: by the mean Qini over every cross-fitting fold, not by
one fold, and the kept learner's held-out predictions are its cross-fitted ones."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import NboConfig
from training.nbo import best_by_folds, fit_and_choose, subject_folds


def test_the_best_mean_over_folds_wins_not_the_best_single_fold():
    # "s" wins fold 0 by far, "b" wins the other four: one-fold selection would keep "s"
    scores = {"s": [0.30, 0.10, 0.11, 0.09, 0.10], "b": [0.15, 0.14, 0.15, 0.16, 0.14]}
    assert best_by_folds(scores) == "b"
    assert best_by_folds({"s": [0.30, 0.20], "b": [0.15, 0.14]}) == "s"


def test_an_undefined_fold_counts_as_the_learners_worst_and_ties_go_to_the_first():
    # t's mean over its defined folds (0.15) would win; with the NaN fold counted as its worst
    # (0.1) its mean is 0.1333, below x's 0.14
    assert best_by_folds({"t": [0.2, float("nan"), 0.1], "x": [0.14, 0.14, 0.14]}) == "x"
    assert best_by_folds({"x": [float("nan")], "b": [0.01]}) == "b"
    assert best_by_folds({"s": [0.1, 0.2], "b": [0.2, 0.1]}) == "s"
    with pytest.raises(ValueError, match="no candidate"):
        best_by_folds({})


def test_fit_and_choose_scores_every_learner_on_every_fold():
    """Offer "a" helps where x1 > 0 and hurts elsewhere; every candidate is cross-fitted, the
    kept one has the best fold mean, and its held-out uplift ranks rows like the truth."""
    rng = np.random.default_rng(3)
    n = 4000
    X = rng.normal(size=(n, 2))
    arm = rng.choice(np.array(["control", "a"]), size=n)
    logit = -1.0 + 0.8 * X[:, 0] + np.where(arm == "a", np.where(X[:, 1] > 0, 1.2, -0.8), 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    fold = subject_folds(np.arange(n).astype(str), 3)
    conf = NboConfig(learners=["t", "b"], folds=3, n_estimators=40, num_leaves=7, n_boot=100)
    seen = []
    fit = fit_and_choose(
        X, y, arm, np.full(n, 0.5), fold, ["a"], np.array([100.0]), np.array([1.0]),
        np.ones((n, 1), dtype=bool), conf, on_candidate=lambda name, m: seen.append(name),
    )  # fmt: skip
    assert seen == ["t", "b"]
    assert set(fit.fold_qini) == {"t", "b"} and all(len(q) == 3 for q in fit.fold_qini.values())
    means = {name: np.mean(q) for name, q in fit.fold_qini.items()}
    assert fit.learner_name == max(means, key=means.get)
    assert fit.heldout_uplift.shape == (n, 1)
    assert np.corrcoef(fit.heldout_uplift[:, 0], X[:, 1] > 0)[0, 1] > 0.5
    assert fit.heldout_metrics["a"]["qini"] == pytest.approx(
        fit.validation[fit.learner_name]["a"]["qini"]
    )

"""The decision-path attribution (the fast reason method): exact additivity, batch = one row,
and it agrees with a hand-built tree."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from training.scoring import BundleMeta, PathContributions, ScoringModel


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 5))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (x[:, 0] + 0.5 * np.nan_to_num(x[:, 1]) * x[:, 2] + rng.normal(size=2000) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "verbosity": -1, "seed": 0}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=60)


def test_bias_plus_contributions_is_the_raw_score(booster):
    x = np.random.default_rng(4).normal(size=(300, 5))
    raw, contrib = PathContributions(booster)(x)
    np.testing.assert_allclose(raw, booster.predict(x, raw_score=True), atol=1e-9)
    assert contrib.shape == (300, 5)


def test_one_row_equals_its_row_in_a_batch(booster):
    paths = PathContributions(booster)
    x = np.random.default_rng(5).normal(size=(20, 5))
    _, batch = paths(x)
    for i in (0, 7, 19):
        _, one = paths(x[i : i + 1])
        np.testing.assert_allclose(one[0], batch[i], atol=1e-12)


def test_a_one_split_tree_credits_its_feature_with_the_step():
    x = np.r_[np.zeros(50), np.ones(50)][:, None] * np.ones((1, 2))
    x[:, 1] = 0.0
    y = np.r_[np.zeros(45), np.ones(5), np.ones(45), np.zeros(5)]
    params = {
        "objective": "binary",
        "num_leaves": 2,
        "min_data_in_leaf": 1,
        "verbosity": -1,
        "learning_rate": 1.0,
        "boost_from_average": False,
    }
    tree = lgb.train(params, lgb.Dataset(x, y), num_boost_round=1)
    paths = PathContributions(tree)
    _, contrib = paths(np.array([[0.0, 0.0], [1.0, 0.0]]))
    leaf = tree.predict(np.array([[0.0, 0.0], [1.0, 0.0]]), raw_score=True)
    assert contrib[:, 1].tolist() == [0.0, 0.0]  # never split on
    np.testing.assert_allclose(contrib[:, 0], leaf - paths.bias, atol=1e-12)
    assert contrib[0, 0] < 0 < contrib[1, 0]


def test_both_methods_give_the_same_probability_and_reasons_add_up(booster):
    meta = BundleMeta(
        model_kind="mql",
        feature_service="s",
        features=[f"f{i}" for i in range(5)],
        categories={},
        calibration={"a": 1.0, "b": 0.0},
        threshold=0.5,
    )
    model = ScoringModel(booster, meta)
    rows = {f"f{i}": list(np.random.default_rng(6).normal(size=10)) for i in range(5)}
    p_shap, _ = model.predict_explain(rows, method="treeshap")
    p_path, reasons = model.predict_explain(rows, method="path")
    np.testing.assert_allclose(p_shap, p_path, atol=1e-9)
    assert all(len(r) == 3 for r in reasons)
    with pytest.raises(ValueError, match="reason method"):
        model.predict_explain(rows, method="lime")

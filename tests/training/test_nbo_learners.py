"""The shared-base uplift learner: it recovers a known per-offer log-odds effect, keeps the
learners' conventions, goes through the job's paths (``make_learner``, the bundle, the fast
uplift), and the per-offer metrics count only the rows eligible for the offer."""

from __future__ import annotations

import numpy as np
import pytest
from lightgbm import LGBMClassifier

from core.config import NboConfig
from training.nbo import make_learner, per_offer_uplift_metrics
from training.nbo_learners import SharedBaseLearner
from training.uplift import predict_uplift_fast

SMALL = {"verbose": -1, "n_jobs": 1, "random_state": 0}


def experiment(n: int = 6000, seed: int = 0):
    """Two features; a baseline that depends on x0; offer 'a' helps where x1 > 0 and hurts
    elsewhere, offer 'b' does nothing. Arms drawn uniformly."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    arm = rng.choice(np.array(["control", "a", "b"]), size=n)
    base = -1.5 + 0.8 * X[:, 0]
    effect_a = np.where(X[:, 1] > 0, 1.2, -0.8)
    logit = base + np.where(arm == "a", effect_a, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    true_a = 1 / (1 + np.exp(-(base + effect_a))) - 1 / (1 + np.exp(-base))
    return X, y, arm, true_a


def small_learner(**kw) -> SharedBaseLearner:
    return SharedBaseLearner(
        LGBMClassifier(n_estimators=60, learning_rate=0.1, num_leaves=7, **SMALL),
        LGBMClassifier(n_estimators=80, learning_rate=0.05, num_leaves=4, min_child_samples=100,
                       **SMALL),
        **kw,
    )  # fmt: skip


def test_recovers_the_sign_and_size_of_a_known_effect():
    X, y, arm, _ = experiment()
    learner = small_learner().fit(X, y, arm)
    assert [str(o) for o in learner.offers_] == ["a", "b"]
    assert [str(a) for a in learner.arms_] == ["control", "a", "b"]
    Xt, _, _, truth = experiment(2000, seed=1)
    uplift = learner.predict(Xt)
    assert uplift.shape == (2000, 2)
    # offer a: right sign on most rows and ranked like the truth
    assert np.mean(np.sign(uplift[:, 0]) == np.sign(truth)) > 0.85
    assert np.corrcoef(uplift[:, 0], truth)[0, 1] > 0.7
    # offer b has no effect: its estimate stays much closer to zero than a's
    assert np.mean(np.abs(uplift[:, 1])) < 0.5 * np.mean(np.abs(uplift[:, 0]))


def test_outcome_columns_follow_arms_and_uplift_is_their_difference():
    X, y, arm, _ = experiment(3000)
    learner = small_learner(rounds=1).fit(X, y, arm)
    p = learner.predict_outcome(X[:50])
    assert p.shape == (50, 3) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(learner.predict(X[:50]), p[:, 1:] - p[:, [0]])
    # the effect in log-odds is what separates offer a's outcome from control's
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(learner.effect_logits(X[:50])[:, 0], logit[:, 1] - logit[:, 0])


def test_a_second_round_refits_the_baseline_on_every_row():
    """Round 1's baseline learns from the control rows only; from round 2 on, offer rows
    inform it too: changing their outcomes moves the baseline only then."""
    X, y, arm, _ = experiment(3000)
    flipped = np.where(arm == "a", 1 - y, y)
    base = {}
    for rounds in (1, 2):
        fits = [small_learner(rounds=rounds).fit(X, yy, arm) for yy in (y, flipped)]
        base[rounds] = [f.predict_outcome(X[:200])[:, 0] for f in fits]
    np.testing.assert_allclose(base[1][0], base[1][1])
    assert np.max(np.abs(base[2][0] - base[2][1])) > 1e-3


def test_make_learner_builds_it_and_the_fast_path_agrees():
    X, y, arm, _ = experiment(3000)
    conf = NboConfig(n_estimators=30, min_child_samples=50)
    learner = make_learner("b", conf)
    assert isinstance(learner, SharedBaseLearner)
    learner.fit(X, y, arm)
    np.testing.assert_allclose(predict_uplift_fast(learner, X[:20]), learner.predict(X[:20]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arm": "no-control"}, "control arm 'control' not found"),
        ({"y": "three"}, "y must be binary"),
        ({"rounds": 0}, "rounds must be an integer >= 1"),
        ({"base": "not lightgbm"}, "needs LightGBM classifiers"),
    ],
)
def test_bad_input_is_refused_with_what_is_wrong(change, message):
    X, y, arm, _ = experiment(600)
    if change.get("arm"):
        arm = np.where(arm == "control", "a", arm)
    if change.get("y"):
        y = y.copy()
        y[0] = 3
    learner = small_learner(rounds=change.get("rounds", 2))
    if change.get("base"):
        from sklearn.linear_model import LogisticRegression

        learner = SharedBaseLearner(LogisticRegression())
    with pytest.raises((ValueError, TypeError), match=message):
        learner.fit(X, y, arm)


def test_predict_refuses_the_wrong_width():
    X, y, arm, _ = experiment(1500)
    learner = small_learner(rounds=1).fit(X, y, arm)
    with pytest.raises(ValueError, match="X has 3 features"):
        learner.predict(np.zeros((2, 3)))


def test_metrics_count_only_rows_eligible_for_the_offer():
    """A control row that could not have got the offer is left out of that offer's metrics."""
    rng = np.random.default_rng(3)
    n = 400
    arm = rng.choice(np.array(["control", "a"]), size=n)
    eligible = (np.arange(n) % 2 == 0)[:, None]
    arm[~eligible[:, 0]] = "control"  # ineligible rows only ever get control
    y = rng.integers(0, 2, size=n)
    uplift = rng.normal(size=(n, 1))
    every = per_offer_uplift_metrics(y, uplift, arm, ["a"])
    only = per_offer_uplift_metrics(y, uplift, arm, ["a"], eligible=eligible)
    assert every["a"]["rows"] == n
    assert only["a"]["rows"] == eligible.sum() == n // 2
    # the same numbers as computing on the eligible rows alone
    rows = eligible[:, 0]
    alone = per_offer_uplift_metrics(y[rows], uplift[rows], arm[rows], ["a"])
    assert only["a"] == alone["a"]
    assert only["a"]["qini"] != every["a"]["qini"]

"""Uplift meta-learners: recovery of a known effect, the scikit-learn contract, and best_offer.

Of scikit-learn's estimator checks, the ones that never call ``fit`` run as they are
(``check_get_params_invariance``, ``check_set_params``, ``check_no_attributes_set_in_init``).
``check_dont_overwrite_parameters`` and the rest of ``check_estimator`` call ``fit(X, y)`` on
generated data with no treatment argument (and a non-binary y), so they cannot apply;
``test_fit_does_not_overwrite_parameters`` asserts the same property with a real treatment.
"""

from __future__ import annotations

import numpy as np
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_set_params,
)

from training.uplift import SLearner, TLearner, XLearner, best_offer


def _small_classifier() -> LGBMClassifier:
    return LGBMClassifier(
        n_estimators=40, learning_rate=0.1, num_leaves=7, verbose=-1, n_jobs=1, random_state=0
    )


def _small_regressor() -> LGBMRegressor:
    return LGBMRegressor(
        n_estimators=40, learning_rate=0.1, num_leaves=7, verbose=-1, n_jobs=1, random_state=0
    )


LEARNERS = {
    "S": lambda: SLearner(base_estimator=_small_classifier()),
    "T": lambda: TLearner(base_estimator=_small_classifier()),
    "X": lambda: XLearner(base_estimator=_small_classifier(), effect_estimator=_small_regressor()),
}


def make_data(n: int = 3000, seed: int = 0):
    """Offer 1 adds 25 points in segment A (x0 > 0) and removes 20 in B; offer 2 does nothing."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    segment_a = X[:, 0] > 0
    treatment = rng.choice([0, 1, 2], size=n)
    p = 0.35 + 0.05 * np.tanh(X[:, 1])
    p = p + np.where(treatment == 1, np.where(segment_a, 0.25, -0.2), 0.0)
    y = (rng.uniform(size=n) < p).astype(int)
    return X, y, treatment, segment_a


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.mark.parametrize("kind", LEARNERS)
def test_learner_recovers_segment_effects(kind, data):
    X, y, treatment, segment_a = data
    learner = LEARNERS[kind]().fit(X, y, treatment)
    uplift = learner.predict(X)

    assert learner.control_ == 0
    assert learner.offers_.tolist() == [1, 2]
    assert uplift.shape == (len(X), 2)
    assert uplift[segment_a, 0].mean() > 0.1
    assert uplift[~segment_a, 0].mean() < -0.08
    assert abs(uplift[:, 1].mean()) < 0.05
    # Offer 1's uplift ranks A above B.
    assert uplift[segment_a, 0].mean() - uplift[~segment_a, 0].mean() > 0.25


@pytest.mark.parametrize("kind", ["S", "T"])
def test_predict_outcome_is_per_arm_and_consistent_with_uplift(kind, data):
    X, y, treatment, _ = data
    learner = LEARNERS[kind]().fit(X, y, treatment)
    outcome = learner.predict_outcome(X[:50])
    assert outcome.shape == (50, 3)
    assert ((outcome >= 0) & (outcome <= 1)).all()
    np.testing.assert_allclose(learner.predict(X[:50]), outcome[:, 1:] - outcome[:, [0]])


def test_string_labels_and_control_default():
    X, y, treatment, _ = make_data(n=1500, seed=1)
    names = np.array(["control", "email", "webinar"])[treatment]
    learner = TLearner(base_estimator=_small_classifier()).fit(X, y, names)
    assert learner.control_ == "control"
    assert learner.offers_.tolist() == ["email", "webinar"]
    explicit = TLearner(base_estimator=_small_classifier(), control="webinar").fit(X, y, names)
    assert explicit.offers_.tolist() == ["control", "email"]


def test_xlearner_propensity_weights(data):
    X, y, treatment, _ = data
    learner = LEARNERS["X"]().fit(X, y, treatment)
    share = [(treatment == k).sum() / ((treatment == k) | (treatment == 0)).sum() for k in (1, 2)]
    np.testing.assert_allclose(learner.propensity_, share)

    given = np.full((len(X), 2), 0.5)
    assert LEARNERS["X"]().fit(X, y, treatment, propensity=given).propensity_.tolist() == [
        0.5,
        0.5,
    ]
    with pytest.raises(ValueError, match="propensity must have shape"):
        LEARNERS["X"]().fit(X, y, treatment, propensity=np.full(len(X), 0.5))


@pytest.mark.parametrize("kind", LEARNERS)
def test_fit_validates_inputs(kind, data):
    X, y, treatment, _ = data
    learner = LEARNERS[kind]()
    with pytest.raises(ValueError, match="same length"):
        learner.fit(X[:-1], y, treatment)
    with pytest.raises(ValueError, match="only 0 and 1"):
        learner.fit(X, y * 2, treatment)
    with pytest.raises(ValueError, match="control arm 0 not found"):
        learner.fit(X, y, treatment + 1)
    # Nobody converts under offer 2: the error names the arm.
    y_bad = np.where(treatment == 2, 0, y)
    with pytest.raises(ValueError, match="arm 2 has only one outcome class"):
        learner.fit(X, y_bad, treatment)


@pytest.mark.parametrize("kind", LEARNERS)
def test_predict_before_fit_raises(kind, data):
    with pytest.raises(NotFittedError):
        LEARNERS[kind]().predict(data[0][:5])


@pytest.mark.parametrize("kind", LEARNERS)
def test_fit_returns_self_and_leaves_base_estimator_untouched(kind, data):
    X, y, treatment, _ = data
    learner = LEARNERS[kind]()
    base = learner.base_estimator
    assert learner.fit(X[:1500], y[:1500], treatment[:1500]) is learner
    assert learner.base_estimator is base
    assert not hasattr(base, "booster_")  # the parameter was cloned, never fitted


@pytest.mark.parametrize("kind", LEARNERS)
def test_fit_does_not_overwrite_parameters(kind, data):
    """The property of check_dont_overwrite_parameters, with a treatment it cannot pass."""
    X, y, treatment, _ = data
    learner = LEARNERS[kind]()
    before = dict(learner.__dict__)
    learner.fit(X[:1500], y[:1500], treatment[:1500])
    added = {k for k in learner.__dict__ if k not in before}
    assert all(k.endswith("_") for k in added), added
    assert all(learner.__dict__[k] is v for k, v in before.items())


@pytest.mark.parametrize("kind", LEARNERS)
def test_clone_and_params_round_trip(kind):
    learner = LEARNERS[kind]()
    learner.set_params(control="none")
    copy = clone(learner)
    assert copy is not learner
    assert copy.get_params().keys() == learner.get_params().keys()
    assert copy.control == "none"
    assert copy.base_estimator.get_params() == learner.base_estimator.get_params()
    params = learner.get_params()
    assert type(learner)(**learner.get_params(deep=False)).get_params() == params
    learner.set_params(base_estimator__n_estimators=7)
    assert learner.get_params()["base_estimator__n_estimators"] == 7


@pytest.mark.parametrize("kind", LEARNERS)
def test_sklearn_estimator_checks_that_do_not_fit(kind):
    learner = LEARNERS[kind]()
    name = type(learner).__name__
    check_get_params_invariance(name, learner)
    check_set_params(name, learner)
    check_no_attributes_set_in_init(name, learner)
    default = type(learner)()
    check_get_params_invariance(name, default)
    check_set_params(name, default)
    check_no_attributes_set_in_init(name, default)


def test_best_offer_by_hand():
    uplift = np.array(
        [
            [0.10, 0.02, 0.30],  # offer 2 is worth most but ineligible -> offer 0
            [0.01, 0.00, 0.00],  # nothing pays for its cost -> control
            [0.05, 0.20, 0.00],  # offer 1
            [-0.10, -0.20, 0.50],  # only offer 2 pays, and it is ineligible -> control
        ]
    )
    values = np.array([100.0, 100.0, 1000.0])
    costs = np.array([2.0, 5.0, 10.0])
    eligible = np.array(
        [
            [True, True, False],
            [True, True, True],
            [True, True, True],
            [True, True, False],
        ]
    )
    # net values: row 0 = [8, -3, (290)], row 1 = [-1, -5, -10], row 2 = [3, 15, -10]
    assert best_offer(uplift, values, costs, eligible).tolist() == [0, -1, 1, -1]
    assert best_offer(uplift, values, costs).tolist() == [2, -1, 1, 2]


def test_best_offer_zero_net_value_is_not_worth_it():
    assert best_offer(np.array([[0.1]]), np.array([10.0]), np.array([1.0])).tolist() == [-1]


def test_best_offer_rejects_bad_shapes():
    uplift = np.zeros((2, 3))
    with pytest.raises(ValueError, match="broadcast"):
        best_offer(uplift, np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="boolean mask"):
        best_offer(uplift, np.ones(3), np.ones(3), eligible=np.ones((2, 3)))

"""Multi-treatment uplift meta-learners (S, T, X) and the offer-choice rule.

Treatment is an array of arm labels: one label is the control, the others are offers. Every
learner predicts, per row, the uplift of each offer over the control, with columns in the order of
``offers_`` (the sorted labels without the control). Outcomes are binary (converted or not).

The learners follow the scikit-learn estimator contract: ``__init__`` only stores parameters,
``fit(X, y, treatment)`` sets the learned attributes (ending in ``_``) and returns ``self``. The
extra ``treatment`` argument is why ``check_estimator`` as a whole does not apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_array, check_is_fitted

from training.nbo_learners import SharedBaseLearner


def _default_classifier() -> LGBMClassifier:
    return LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, verbose=-1, n_jobs=1)


def _default_regressor() -> LGBMRegressor:
    return LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15, verbose=-1, n_jobs=1)


class _BaseUpliftLearner(BaseEstimator):
    """Shared input validation and arm bookkeeping; not for use on its own."""

    def _base(self) -> BaseEstimator:
        # A fresh, unfitted copy: the parameter object itself is never fitted or mutated.
        est = self.base_estimator
        return _default_classifier() if est is None else clone(est)

    def _validate_fit(
        self, X: Any, y: Any, treatment: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = check_array(X, ensure_all_finite="allow-nan")
        y = np.asarray(y).ravel()
        treatment = np.asarray(treatment).ravel()
        if not len(X) == len(y) == len(treatment):
            raise ValueError(
                f"X, y and treatment must have the same length, got "
                f"{len(X)}, {len(y)} and {len(treatment)}"
            )
        if not np.isin(y, (0, 1)).all():
            raise ValueError("y must be binary: only 0 and 1 are allowed")
        y = y.astype(int)

        labels = np.unique(treatment)
        control = self.control
        if control is None:
            # The documented defaults: a label named "control", else 0.
            control = "control" if np.any(labels.astype(object) == "control") else 0
        is_control = labels.astype(object) == control
        if not is_control.any():
            raise ValueError(
                f"control arm {control!r} not found in treatment; arms present: {labels.tolist()}"
            )
        offers = labels[~is_control]
        if len(offers) == 0:
            raise ValueError("treatment holds only the control arm; at least one offer is needed")

        self.control_ = labels[is_control].tolist()[0]
        self.offers_ = offers
        self.arms_ = np.concatenate([[self.control_], offers]).astype(labels.dtype)
        self.n_features_in_ = X.shape[1]
        for arm in self.arms_.tolist():
            if len(np.unique(y[treatment == arm])) < 2:
                raise ValueError(
                    f"arm {arm!r} has only one outcome class; every arm needs both 0 and 1"
                )
        return X, y, treatment

    def _validate_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = check_array(X, ensure_all_finite="allow-nan")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_}"
            )
        return X


class SLearner(_BaseUpliftLearner):
    """One outcome model on ``[X, one-hot(arm)]``; uplift of arm a is p(x, a) - p(x, control).

    Parameters
    ----------
    base_estimator : classifier with ``predict_proba``, default None
        None means ``LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15)``.
    control : label, default None
        The control arm's label; None means ``"control"`` if present, else ``0``.
    """

    def __init__(self, base_estimator: BaseEstimator | None = None, control: Any = None):
        self.base_estimator = base_estimator
        self.control = control

    def _design(self, X: np.ndarray, arm_index: np.ndarray | int) -> np.ndarray:
        onehot = np.zeros((len(X), len(self.arms_)))
        onehot[np.arange(len(X)), arm_index] = 1.0
        return np.hstack([X, onehot])

    def fit(self, X: Any, y: Any, treatment: Any, propensity: Any = None) -> SLearner:
        """Fit the single model; ``propensity`` is accepted for a common API and ignored."""
        X, y, treatment = self._validate_fit(X, y, treatment)
        column = {arm: i for i, arm in enumerate(self.arms_.tolist())}
        arm_index = np.array([column[arm] for arm in treatment.tolist()])
        self.model_ = self._base().fit(self._design(X, arm_index), y)
        return self

    def predict_outcome(self, X: Any) -> np.ndarray:
        """P(y=1) under each arm, shape (n, n_arms), columns in the order of ``arms_``."""
        X = self._validate_predict(X)
        return np.column_stack(
            [self.model_.predict_proba(self._design(X, i))[:, 1] for i in range(len(self.arms_))]
        )

    def predict(self, X: Any) -> np.ndarray:
        """Uplift of each offer over control, shape (n, n_offers), order of ``offers_``."""
        p = self.predict_outcome(X)
        return p[:, 1:] - p[:, [0]]


class TLearner(_BaseUpliftLearner):
    """One outcome model per arm; uplift of arm a is p_a(x) - p_control(x).

    Parameters as for :class:`SLearner`.
    """

    def __init__(self, base_estimator: BaseEstimator | None = None, control: Any = None):
        self.base_estimator = base_estimator
        self.control = control

    def fit(self, X: Any, y: Any, treatment: Any, propensity: Any = None) -> TLearner:
        """Fit one model per arm; ``propensity`` is accepted for a common API and ignored."""
        X, y, treatment = self._validate_fit(X, y, treatment)
        self.models_ = [
            self._base().fit(X[treatment == arm], y[treatment == arm]) for arm in self.arms_
        ]
        return self

    def predict_outcome(self, X: Any) -> np.ndarray:
        """P(y=1) under each arm, shape (n, n_arms), columns in the order of ``arms_``."""
        X = self._validate_predict(X)
        return np.column_stack([m.predict_proba(X)[:, 1] for m in self.models_])

    def predict(self, X: Any) -> np.ndarray:
        """Uplift of each offer over control, shape (n, n_offers), order of ``offers_``."""
        p = self.predict_outcome(X)
        return p[:, 1:] - p[:, [0]]


class XLearner(_BaseUpliftLearner):
    """The X-learner (Kunzel et al., 2019), run once per offer against the control.

    Stage 1: outcome models mu_0 (control) and mu_a (offer a). Stage 2: imputed effects
    ``D1 = y - mu_0(x)`` on offer units and ``D0 = mu_a(x) - y`` on control units, each fitted by a
    regressor (tau_1, tau_0). Uplift is ``g * tau_0(x) + (1 - g) * tau_1(x)`` with g the offer's
    propensity among offer + control units.

    Parameters
    ----------
    base_estimator : classifier, default None
        Stage-1 outcome model; None means the default LightGBM classifier.
    effect_estimator : regressor, default None
        Stage-2 effect model; None means
        ``LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15)``.
    control : label, default None
        As for :class:`SLearner`.
    """

    def __init__(
        self,
        base_estimator: BaseEstimator | None = None,
        effect_estimator: BaseEstimator | None = None,
        control: Any = None,
    ):
        self.base_estimator = base_estimator
        self.effect_estimator = effect_estimator
        self.control = control

    def _effect(self) -> BaseEstimator:
        est = self.effect_estimator
        return _default_regressor() if est is None else clone(est)

    def fit(self, X: Any, y: Any, treatment: Any, propensity: Any = None) -> XLearner:
        """Fit both stages per offer.

        ``propensity``, if given, is P(offer | x) per row: shape (n,) with one offer, or
        (n, n_offers) with columns in the order of ``offers_``. It is averaged over the offer's
        and the control's rows into one weight per offer, because ``predict`` has no propensities
        for new rows. Without it the weight is the offer's share of offer + control rows.
        """
        X, y, treatment = self._validate_fit(X, y, treatment)
        n_offers = len(self.offers_)
        if propensity is not None:
            propensity = np.asarray(propensity, dtype=float)
            if propensity.ndim == 1:
                propensity = propensity[:, None]
            if propensity.shape != (len(X), n_offers):
                raise ValueError(
                    f"propensity must have shape ({len(X)},) or ({len(X)}, {n_offers}), "
                    f"got {propensity.shape}"
                )
            if not ((propensity > 0) & (propensity < 1)).all():
                raise ValueError("propensity must lie strictly between 0 and 1")

        in_control = treatment == self.control_
        mu_0 = self._base().fit(X[in_control], y[in_control])
        outcome_models, effect_models, weights = [mu_0], [], []
        for j, offer in enumerate(self.offers_):
            in_offer = treatment == offer
            mu_a = self._base().fit(X[in_offer], y[in_offer])
            d1 = y[in_offer] - mu_0.predict_proba(X[in_offer])[:, 1]
            d0 = mu_a.predict_proba(X[in_control])[:, 1] - y[in_control]
            tau_0 = self._effect().fit(X[in_control], d0)
            tau_1 = self._effect().fit(X[in_offer], d1)
            if propensity is None:
                g = in_offer.sum() / (in_offer.sum() + in_control.sum())
            else:
                g = propensity[in_offer | in_control, j].mean()
            outcome_models.append(mu_a)
            effect_models.append((tau_0, tau_1))
            weights.append(g)
        self.outcome_models_ = outcome_models
        self.effect_models_ = effect_models
        self.propensity_ = np.asarray(weights)
        return self

    def predict_outcome(self, X: Any) -> np.ndarray:
        """P(y=1) under each arm from the stage-1 models, shape (n, n_arms), order of
        ``arms_``."""
        X = self._validate_predict(X)
        return np.column_stack([m.predict_proba(X)[:, 1] for m in self.outcome_models_])

    def predict(self, X: Any) -> np.ndarray:
        """Uplift of each offer over control, shape (n, n_offers), order of ``offers_``."""
        X = self._validate_predict(X)
        return np.column_stack(
            [
                g * tau_0.predict(X) + (1 - g) * tau_1.predict(X)
                for (tau_0, tau_1), g in zip(self.effect_models_, self.propensity_, strict=True)
            ]
        )


def best_offer(
    uplift: np.ndarray,
    offer_values: np.ndarray,
    offer_costs: np.ndarray,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Index of the offer with the highest expected net value per row, or -1 for control.

    Net value is ``uplift * value - cost``; values and costs are per offer (n_offers,) or per row
    and offer (n, n_offers). Ineligible offers (``eligible`` False) are never chosen, and a row
    gets -1 when no eligible offer has a positive net value.
    """
    uplift = np.asarray(uplift, dtype=float)
    if uplift.ndim != 2:
        raise ValueError(f"uplift must be 2-D (n, n_offers), got shape {uplift.shape}")
    try:
        net = uplift * np.asarray(offer_values, dtype=float) - np.asarray(offer_costs, dtype=float)
    except ValueError as err:
        raise ValueError(
            f"offer_values and offer_costs must broadcast to uplift's shape {uplift.shape}"
        ) from err
    if net.shape != uplift.shape:
        raise ValueError(
            f"offer_values and offer_costs must broadcast to uplift's shape {uplift.shape}"
        )
    if eligible is not None:
        eligible = np.asarray(eligible)
        if eligible.shape != uplift.shape or eligible.dtype != bool:
            raise ValueError(f"eligible must be a boolean mask of shape {uplift.shape}")
        net = np.where(eligible, net, -np.inf)
    if net.shape[1] == 0:
        return np.full(len(net), -1)
    best = np.argmax(net, axis=1)
    return np.where(net[np.arange(len(net)), best] > 0, best, -1)


def _booster_predict(estimator: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """``predict_proba[:, 1]`` (classifiers) or ``predict`` (regressors) of a fitted LightGBM
    estimator through its native booster, one thread, no input checks."""
    return estimator.booster_.predict(X, num_threads=1)


def _is_lightgbm(estimator: BaseEstimator) -> bool:
    return isinstance(estimator, LGBMClassifier | LGBMRegressor)


def predict_uplift_fast(learner: _BaseUpliftLearner, X: np.ndarray) -> np.ndarray:
    """``learner.predict(X)`` for a float64 matrix, through the LightGBM boosters directly.

    scikit-learn's input validation and the wrappers cost about 0.2 ms per model call; serving
    one row through a T-learner with four offers would pay that five times. Learners on other
    base models fall back to ``predict``.
    """
    check_is_fitted(learner)
    X = np.asarray(X, dtype=np.float64)
    if isinstance(learner, SLearner) and _is_lightgbm(learner.model_):
        p = np.column_stack(
            [
                _booster_predict(learner.model_, learner._design(X, i))
                for i in range(len(learner.arms_))
            ]
        )
        return p[:, 1:] - p[:, [0]]
    if isinstance(learner, TLearner) and all(_is_lightgbm(m) for m in learner.models_):
        p = np.column_stack([_booster_predict(m, X) for m in learner.models_])
        return p[:, 1:] - p[:, [0]]
    if isinstance(learner, XLearner) and all(
        _is_lightgbm(m) for pair in learner.effect_models_ for m in pair
    ):
        return np.column_stack(
            [
                g * _booster_predict(tau_0, X) + (1 - g) * _booster_predict(tau_1, X)
                for (tau_0, tau_1), g in zip(
                    learner.effect_models_, learner.propensity_, strict=True
                )
            ]
        )
    if isinstance(learner, SharedBaseLearner):
        p = learner.outcome_unchecked(X)
        return p[:, 1:] - p[:, [0]]
    return learner.predict(X)

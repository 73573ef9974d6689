"""The generator's shared numeric helpers, on tiny arrays computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic.stats import auc, sigmoid


def test_auc_matches_hand_computation():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # a tie counts half
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))  # one class only


def test_sigmoid():
    np.testing.assert_allclose(sigmoid(np.array([0.0, np.log(3.0)])), [0.5, 0.75])

"""choose_policy on hand-made held-out data with known arm values (randomized, 1/3 each)."""

from __future__ import annotations

import numpy as np
import pytest

from training.nbo_policy import choose_policy, learned_arms

ARMS = ["mens", "womens"]  # offers, columns of the uplift matrix


def _experiment(n: int, rates: dict[str, np.ndarray], seed: int = 0):
    """Randomized arms; ``rates[arm]`` is each row's visit probability under that arm."""
    rng = np.random.default_rng(seed)
    received = rng.choice(["control", *ARMS], size=n)
    p = np.array([rates[a][i] for i, a in enumerate(received)])
    y = (rng.random(n) < p).astype(int)
    return y, received, np.full(n, 1 / 3)


def test_learned_arms_argmax_and_control_when_none_positive():
    uplift = np.array([[0.1, 0.2], [0.3, -0.1], [-0.1, -0.2], [0.0, 0.0]])
    assert learned_arms(uplift, ARMS).tolist() == ["womens", "mens", "control", "control"]


def test_serves_learned_when_clearly_better():
    # Half the rows respond only to mens, half only to womens: no single arm gets more than
    # half the responders, the oracle policy gets all of them.
    n = 6000
    half = np.arange(n) < n // 2
    rates = {
        "control": np.full(n, 0.05),
        "mens": np.where(half, 0.6, 0.05),
        "womens": np.where(half, 0.05, 0.6),
    }
    y, received, p = _experiment(n, rates)
    uplift = np.column_stack([rates["mens"] - 0.05, rates["womens"] - 0.05])
    d = choose_policy(uplift, y, received, p, ARMS, n_boot=300, random_state=0)
    assert d.served == "learned"
    assert d.difference_ci[1] > 0
    assert d.learned_value > d.best_single_value + 0.2
    assert d.served_value == d.learned_value
    assert "beats" in d.reason


def test_falls_back_when_learned_is_worse():
    # mens is best for everyone; the model's uplift is reversed, so it picks womens/control.
    n = 6000
    rates = {"control": np.full(n, 0.1), "mens": np.full(n, 0.3), "womens": np.full(n, 0.15)}
    y, received, p = _experiment(n, rates, seed=1)
    rng = np.random.default_rng(2)
    uplift = np.column_stack([np.full(n, -0.1), rng.normal(0.05, 0.01, n)])
    d = choose_policy(uplift, y, received, p, ARMS, n_boot=300, random_state=0)
    assert d.served == "mens"
    assert d.best_single_arm == "mens"
    assert d.difference_ci[2] < 0
    assert d.served_value == d.best_single_value
    assert "falling back to always mens" in d.reason and "loses to" in d.reason
    assert set(d.single_arm_values) == {"control", "mens", "womens"}


def test_falls_back_when_tied():
    # The learned policy is always-mens itself: difference exactly 0, not a win.
    n = 3000
    rates = {"control": np.full(n, 0.1), "mens": np.full(n, 0.2), "womens": np.full(n, 0.15)}
    y, received, p = _experiment(n, rates, seed=3)
    uplift = np.column_stack([np.full(n, 0.1), np.full(n, 0.05)])
    d = choose_policy(uplift, y, received, p, ARMS, n_boot=200, random_state=0)
    assert d.served == "mens"
    assert d.difference_ci == (0.0, 0.0, 0.0)
    assert d.learned_value == pytest.approx(d.best_single_value)
    assert "does not beat" in d.reason


def test_falls_back_to_control_when_offers_hurt():
    n = 3000
    rates = {"control": np.full(n, 0.3), "mens": np.full(n, 0.1), "womens": np.full(n, 0.1)}
    y, received, p = _experiment(n, rates, seed=4)
    uplift = np.column_stack([np.full(n, 0.2), np.full(n, 0.1)])  # wrongly says mens helps
    d = choose_policy(uplift, y, received, p, ARMS, n_boot=200, random_state=0)
    assert d.served == "control"
    assert d.best_single_arm == "control"


def test_rejects_bad_inputs():
    y, received, p = np.zeros(4), np.array(["control"] * 4), np.full(4, 1 / 3)
    with pytest.raises(ValueError, match="shape"):
        choose_policy(np.zeros((4, 3)), y, received, p, ARMS, n_boot=10)
    with pytest.raises(ValueError, match="offers only"):
        choose_policy(np.zeros((4, 2)), y, received, p, ["control", "mens"], n_boot=10)

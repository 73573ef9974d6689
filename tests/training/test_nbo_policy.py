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


def test_rank_offers_by_net_value_and_only_eligible():
    from training.nbo_policy import rank_offers

    ranked = rank_offers(
        [0.02, 0.10, 0.05], ["cheap", "dear", "blocked"], [1000, 1000, 1000], [1, 90, 0],
        [True, True, False],
    )  # fmt: skip
    # cheap: 0.02*1000 - 1 = 19; dear: 0.10*1000 - 90 = 10; blocked is not eligible
    assert [(r.offer_id, r.expected_net_value) for r in ranked] == [("cheap", 19.0), ("dear", 10.0)]
    with pytest.raises(ValueError, match="one entry per offer"):
        rank_offers([0.1], ["a", "b"], [1, 1], [0, 0], [True, True])


def test_choose_offer_greedy_fallback_and_exploration():
    from training.nbo_policy import RankedOffer, choose_offer

    good = [RankedOffer("a", 0.1, 100, 1), RankedOffer("b", 0.05, 100, 1)]
    worthless = [RankedOffer("a", 0.001, 100, 1)]
    # no exploration: the best offer worth its cost, else control
    pick = choose_offer(good, "learned", 0.0, (0.5, 0.5))
    assert (pick.chosen, pick.explored, pick.propensity) == ("a", False, 1.0)
    assert choose_offer(worthless, "learned", 0.0, (0.5, 0.5)).chosen == "control"
    # a fallback single offer where eligible, control elsewhere
    assert choose_offer(good, "b", 0.0, (0.5, 0.5)).chosen == "b"
    assert choose_offer(worthless, "b", 0.0, (0.5, 0.5)).chosen == "control"
    # epsilon 0.3, three arms (control, a, b): explore when the first draw is below 0.3
    explored = choose_offer(good, "learned", 0.3, (0.1, 0.99))
    assert (explored.chosen, explored.explored) == ("b", True)
    assert explored.propensity == pytest.approx(0.3 / 3)
    greedy = choose_offer(good, "learned", 0.3, (0.9, 0.0))
    assert greedy.propensity == pytest.approx(0.7 + 0.1)
    # exploring onto the greedy arm has the same propensity as not exploring
    assert choose_offer(good, "learned", 0.3, (0.1, 0.5)).propensity == pytest.approx(0.8)
    with pytest.raises(ValueError, match="epsilon"):
        choose_offer(good, "learned", 1.0, (0.1, 0.1))

import numpy as np
import pytest

from training.uplift_metrics import (
    auuc,
    expected_qini_area,
    paired_policy_difference_ci,
    perfect_qini_curve,
    perfect_uplift_curve,
    policy_value_ipw,
    policy_value_ipw_ci,
    qini_coefficient,
    qini_curve,
    uplift_at_k,
    uplift_curve,
)

# Six units, already in descending order of predicted uplift.
Y = np.array([1, 0, 1, 1, 0, 0])
T = np.array([1, 0, 1, 0, 1, 0])
U = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
# Oracle score of scikit-uplift's perfect uplift curve (see test_perfect_uplift_curve).
ORACLE = np.array([3, 2, 3, 0, 1, 2])


def test_qini_curve_by_hand():
    # k  Nt Yt Nc Yc  Qini = Yt - Yc * Nt / Nc
    # 1  1  1  0  0   1 - 0             = 1   (no control yet -> control term 0)
    # 2  1  1  1  0   1 - 0 * 1/1       = 1
    # 3  2  2  1  0   2 - 0 * 2/1       = 2
    # 4  2  2  2  1   2 - 1 * 2/2       = 1
    # 5  3  2  2  1   2 - 1 * 3/2       = 0.5
    # 6  3  2  3  1   2 - 1 * 3/3       = 1
    x, y = qini_curve(Y, U, T)
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(y, [0, 1, 1, 2, 1, 0.5, 1])


def test_qini_curve_groups_ties():
    # Units 1, 2, 3 tie at 0.5: one point at k = 4, whatever their order.
    # k=1: Nt1 Yt1 Nc0         -> 1
    # k=4: Nt2 Yt1 Nc2 Yc1     -> 1 - 1 * 2/2 = 0
    # k=5: Nt3 Yt2 Nc2 Yc1     -> 2 - 1 * 3/2 = 0.5
    y_true = np.array([1, 0, 1, 0, 1])
    treatment = np.array([1, 1, 0, 0, 1])
    uplift = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    x, y = qini_curve(y_true, uplift, treatment)
    np.testing.assert_array_equal(x, [0, 1, 4, 5])
    np.testing.assert_allclose(y, [0, 1, 0, 0.5])
    swap = [0, 3, 2, 1, 4]  # reorder the tied units
    x2, y2 = qini_curve(y_true[swap], uplift[swap], treatment[swap])
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_allclose(y2, y)


def test_perfect_qini_curve_by_hand():
    # Oracle score y*t - y*(1-t) = [1, 0, 1, -1, 0, 0]: groups {0,2}, {1,4,5}, {3}
    # k=2: Nt2 Yt2 Nc0          -> 2
    # k=5: Nt3 Yt2 Nc2 Yc0      -> 2 - 0 = 2
    # k=6: Nt3 Yt2 Nc3 Yc1      -> 2 - 1 * 3/3 = 1
    x, y = perfect_qini_curve(Y, T)
    np.testing.assert_array_equal(x, [0, 2, 5, 6])
    np.testing.assert_allclose(y, [0, 2, 2, 1])


def test_qini_coefficient_by_hand():
    # Model curve [0,1,1,2,1,0.5,1], trapezoids of width 1:
    # 0.5 + 1 + 1.5 + 1.5 + 0.75 + 0.75 = 6; random line to (6, 1): 6 * 1 / 2 = 3 -> 3 above.
    assert qini_coefficient(Y, U, T, normalize=False) == pytest.approx(3.0)
    # Perfect (0,0),(2,2),(5,2),(6,1): 2*2/2 + 3*(2+2)/2 + 1*(2+1)/2 = 2 + 6 + 1.5 = 9.5
    # minus the same random area 3 -> 6.5; normalized 3 / 6.5 = 6/13.
    assert qini_coefficient(Y, U, T) == pytest.approx(6 / 13)


def test_qini_coefficient_perfect_and_reversed():
    assert qini_coefficient(Y, Y * (2 * T - 1), T) == pytest.approx(1.0)
    assert qini_coefficient(Y, ORACLE, T) == pytest.approx(1.0)
    # Reversed oracle: (0,0),(1,0),(2,-1)... ends below the random line.
    assert qini_coefficient(Y, -ORACLE, T) < qini_coefficient(Y, U, T) < 1.0
    assert qini_coefficient(Y, -ORACLE, T) < 0


def test_uplift_curve_by_hand():
    # k  treated rate  control rate  (diff) * k
    # 1  1/1           none -> 0     1 * 1        = 1
    # 2  1/1           0/1           1 * 2        = 2
    # 3  2/2           0/1           1 * 3        = 3
    # 4  2/2           1/2           1/2 * 4      = 2
    # 5  2/3           1/2           1/6 * 5      = 5/6
    # 6  2/3           1/3           1/3 * 6      = 2
    x, y = uplift_curve(Y, U, T)
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(y, [0, 1, 2, 3, 2, 5 / 6, 2])


def test_perfect_uplift_curve_by_hand():
    # control responders (unit 3) = 1, treated non-responders (unit 4) = 1; 1 > 1 is false,
    # so the summand is t: score 2*(y==t) + t = [3, 2, 3, 0, 1, 2].
    # k=2 {0,2}:   treated 2/2, no control  -> 1 * 2       = 2
    # k=4 +{1,5}:  treated 2/2, control 0/2 -> 1 * 4       = 4
    # k=5 +{4}:    treated 2/3, control 0/2 -> 2/3 * 5     = 10/3
    # k=6 +{3}:    treated 2/3, control 1/3 -> 1/3 * 6     = 2
    x, y = perfect_uplift_curve(Y, T)
    np.testing.assert_array_equal(x, [0, 2, 4, 5, 6])
    np.testing.assert_allclose(y, [0, 2, 4, 10 / 3, 2])


def test_auuc_by_hand():
    # Model: 0.5 + 1.5 + 2.5 + 2.5 + (2 + 5/6)/2 + (5/6 + 2)/2 = 7 + 17/6 = 59/6
    # random line to (6, 2): 6 * 2 / 2 = 6 -> 59/6 - 6 = 23/6 above random.
    assert auuc(Y, U, T, normalize=False) == pytest.approx(23 / 6)
    # Perfect: 2*2/2 + 2*(2+4)/2 + (4+10/3)/2 + (10/3+2)/2 = 2 + 6 + 11/3 + 8/3 = 43/3
    # minus 6 -> 25/3; normalized (23/6) / (25/3) = 23/50.
    assert auuc(Y, U, T) == pytest.approx(23 / 50)


def test_auuc_perfect_and_reversed():
    assert auuc(Y, ORACLE, T) == pytest.approx(1.0)
    assert auuc(Y, -ORACLE, T) < auuc(Y, U, T) < 1.0


def test_uplift_at_k_overall_by_hand():
    # k=0.5 -> int(6 * 0.5) = 3 units {0,1,2}: treated {0,2} rate 2/2, control {1} rate 0 -> 1
    assert uplift_at_k(Y, U, T, k=0.5) == pytest.approx(1.0)
    # k=4 units {0..3}: treated {0,2} rate 1, control {1,3} rate 1/2 -> 0.5
    assert uplift_at_k(Y, U, T, k=4) == pytest.approx(0.5)
    # k=1.0 is everyone: treated 2/3 - control 1/3 = 1/3
    assert uplift_at_k(Y, U, T, k=1.0) == pytest.approx(1 / 3)


def test_uplift_at_k_by_group_by_hand():
    # Treated in uplift order: units 0, 2, 4 (y 1, 1, 0); control: 1, 3, 5 (y 0, 1, 0).
    # k=0.5 -> int(3 * 0.5) = 1 per group: treated y=1, control y=0 -> 1
    assert uplift_at_k(Y, U, T, k=0.5, strategy="by_group") == pytest.approx(1.0)
    # k=2 per group: treated (1 + 1)/2 = 1, control (0 + 1)/2 = 0.5 -> 0.5
    assert uplift_at_k(Y, U, T, k=2, strategy="by_group") == pytest.approx(0.5)
    # k=0.9 -> int(2.7) = 2 per group, same as above
    assert uplift_at_k(Y, U, T, k=0.9, strategy="by_group") == pytest.approx(0.5)


def test_uplift_at_k_rejects_bad_input():
    with pytest.raises(ValueError, match="strategy must be one of"):
        uplift_at_k(Y, U, T, strategy="per_group")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        uplift_at_k(Y, U, T, k=1.5)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        uplift_at_k(Y, U, T, k=0.0)
    with pytest.raises(ValueError, match=r"must be in \[1, 6\]"):
        uplift_at_k(Y, U, T, k=7)
    with pytest.raises(ValueError, match=r"must be in \[1, 3\]"):
        uplift_at_k(Y, U, T, k=4, strategy="by_group")
    with pytest.raises(ValueError, match="selects no unit"):
        uplift_at_k(Y, U, T, k=0.1)
    with pytest.raises(ValueError, match="no control unit"):
        uplift_at_k(Y, U, T, k=1)
    with pytest.raises(ValueError, match="k must be an int"):
        uplift_at_k(Y, U, T, k=True)


@pytest.mark.parametrize("func", [qini_curve, qini_coefficient, uplift_curve, auuc, uplift_at_k])
def test_uplift_metrics_reject_bad_input(func):
    with pytest.raises(ValueError, match="same length"):
        func(Y, U[:5], T)
    with pytest.raises(ValueError, match=r"only 0 \(control\) and 1 \(treated\)"):
        func(Y, U, np.array([1, 0, 2, 0, 1, 0]))
    with pytest.raises(ValueError, match="both 0 .* and 1"):
        func(Y, U, np.ones(6))
    with pytest.raises(ValueError, match="y_true must hold only 0 and 1"):
        func(np.array([1, 0, 3, 1, 0, 0]), U, T)


def test_expected_qini_area_is_the_mean_over_every_draw_of_the_outcomes():
    """Every one of the 2**8 outcome vectors, weighted by its probability: the exact mean of
    the realized Qini area equals the area on the probabilities, ties and all."""
    import itertools

    p = np.array([0.9, 0.1, 0.6, 0.3, 0.5, 0.05, 0.7, 0.2])
    t = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    u = np.array([0.4, 0.4, 0.3, 0.9, -0.1, 0.3, 0.0, 0.2])  # two tie groups
    mean = 0.0
    for outcome in itertools.product((0, 1), repeat=len(p)):
        y = np.array(outcome)
        weight = np.prod(np.where(y == 1, p, 1 - p))
        mean += weight * qini_coefficient(y, u, t, normalize=False)
    assert expected_qini_area(p, u, t) == pytest.approx(mean, abs=1e-12)
    # binary probabilities are outcomes: the same area as the realized curve's
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    assert expected_qini_area(y.astype(float), u, t) == qini_coefficient(y, u, t, normalize=False)


def test_expected_qini_area_ranks_the_true_uplift_first():
    """On a simulated experiment, ranking by the true uplift has the largest expected area, a
    noisy ranking less, a reversed one a negative area."""
    rng = np.random.default_rng(3)
    n = 4000
    base, effect = rng.uniform(0.02, 0.3, n), rng.uniform(-0.1, 0.2, n)
    t = (rng.random(n) < 0.5).astype(int)
    p = np.clip(base + t * effect, 0, 1)
    best = expected_qini_area(p, effect, t)
    noisy = expected_qini_area(p, effect + rng.normal(0, 0.1, n), t)
    assert best > noisy > 0 > expected_qini_area(p, -effect, t)


def test_expected_qini_area_rejects_what_is_not_a_probability():
    t = np.array([1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        expected_qini_area(np.array([0.2, 1.2, 0.1, 0.0]), np.arange(4.0), t)
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        expected_qini_area(np.array([0.2, np.nan, 0.1, 0.0]), np.arange(4.0), t)
    with pytest.raises(ValueError, match="same length"):
        expected_qini_area(np.array([0.2, 0.1, 0.0]), np.arange(4.0), t)


def test_normalization_fails_without_responders():
    with pytest.raises(ValueError, match="normalize=False"):
        qini_coefficient(np.zeros(6), U, T)
    assert qini_coefficient(np.zeros(6), U, T, normalize=False) == 0.0


# Logged data for three arms: received arm, its logging probability and the outcome.
RECEIVED = np.array(["a", "b", "a", "c", "b", "a"])
PROPENSITY = np.array([0.5, 0.25, 0.5, 0.25, 0.25, 0.5])
OUTCOME = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
POLICY_A = np.array(["a", "a", "a", "c", "b", "b"])


def test_policy_value_ipw_by_hand():
    # chosen == received for units 0, 2, 3, 4:
    # 1/0.5 + 0/0.5 + 1/0.25 + 1/0.25 = 2 + 0 + 4 + 4 = 10, over 6 units -> 5/3
    assert policy_value_ipw(OUTCOME, POLICY_A, RECEIVED, PROPENSITY) == pytest.approx(5 / 3)
    # With costs a=0.2, b=0.1, c=0.5:
    # (1-0.2)/0.5 + (0-0.2)/0.5 + (1-0.5)/0.25 + (1-0.1)/0.25 = 1.6 - 0.4 + 2 + 3.6 = 6.8
    # 6.8 / 6 = 17/15
    cost = {"a": 0.2, "b": 0.1, "c": 0.5}
    value = policy_value_ipw(OUTCOME, POLICY_A, RECEIVED, PROPENSITY, cost=cost)
    assert value == pytest.approx(17 / 15)
    per_unit = np.array([0.2, 0.1, 0.2, 0.5, 0.1, 0.2])
    value = policy_value_ipw(OUTCOME, POLICY_A, RECEIVED, PROPENSITY, cost=per_unit)
    assert value == pytest.approx(17 / 15)


def test_policy_value_ipw_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        policy_value_ipw(OUTCOME[:5], POLICY_A, RECEIVED, PROPENSITY)
    for bad in (0.0, 1.5, -0.1):
        p = PROPENSITY.copy()
        p[2] = bad
        with pytest.raises(ValueError, match=r"propensity must be in \(0, 1\]"):
            policy_value_ipw(OUTCOME, POLICY_A, RECEIVED, p)
    with pytest.raises(ValueError, match=r"no entry for received arm\(s\) \['c'\]"):
        policy_value_ipw(OUTCOME, POLICY_A, RECEIVED, PROPENSITY, cost={"a": 0, "b": 0})
    with pytest.raises(ValueError, match="one cost per unit"):
        policy_value_ipw(OUTCOME, POLICY_A, RECEIVED, PROPENSITY, cost=[0.1, 0.2])


def test_policy_value_ipw_ci():
    value, low, high = policy_value_ipw_ci(
        OUTCOME, POLICY_A, RECEIVED, PROPENSITY, n_boot=2000, random_state=0
    )
    assert value == pytest.approx(5 / 3)
    # Terms are [2, 0, 0, 4, 4, 0]: a resampled mean lies in [0, 4] and the interval is wide.
    assert 0 <= low < value < high <= 4
    again = policy_value_ipw_ci(
        OUTCOME, POLICY_A, RECEIVED, PROPENSITY, n_boot=2000, random_state=0
    )
    assert again == (value, low, high)
    # Every unit followed and y/p = 2 for all: every resample has mean 2, so the CI is a point.
    flat = policy_value_ipw_ci(np.ones(5), np.zeros(5), np.zeros(5), np.full(5, 0.5))
    assert flat == pytest.approx((2.0, 2.0, 2.0))
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        policy_value_ipw_ci(OUTCOME, POLICY_A, RECEIVED, PROPENSITY, alpha=1.0)
    with pytest.raises(ValueError, match="n_boot must be a positive int"):
        policy_value_ipw_ci(OUTCOME, POLICY_A, RECEIVED, PROPENSITY, n_boot=0)


def test_paired_policy_difference_ci_by_hand():
    # Policy b gives everyone "b": followed for units 1, 4 -> (0/0.25 + 1/0.25) / 6 = 2/3
    # a - b = 5/3 - 2/3 = 1 (per-unit differences [2, 0, 0, 4, 0, 0]).
    policy_b = np.full(6, "b")
    diff, low, high = paired_policy_difference_ci(
        OUTCOME,
        POLICY_A,
        policy_b,
        RECEIVED,
        PROPENSITY,
        n_boot=2000,
        alpha=0.1,
        random_state=1,
    )
    assert diff == pytest.approx(1.0)
    assert 0 <= low < diff < high <= 4
    # Pairing: a policy against itself differs by exactly 0 on every resample.
    same = paired_policy_difference_ci(
        OUTCOME,
        POLICY_A,
        POLICY_A,
        RECEIVED,
        PROPENSITY,
        n_boot=200,
        alpha=0.05,
        random_state=1,
    )
    assert same == (0.0, 0.0, 0.0)


# --- net value over sending nothing (incremental IPW and doubly robust) -------------------------
def test_incremental_policy_terms_by_hand():
    from training.uplift_metrics import incremental_policy_terms, incremental_policy_value_ipw

    # four units; arms received at random with the propensities shown
    y = np.array([1, 0, 1, 1])
    received = np.array(["a", "control", "control", "a"], dtype=object)
    p = np.array([0.5, 0.5, 0.25, 0.5])
    chosen = np.array(["a", "a", "a", "control"], dtype=object)
    value, cost = {"a": 10.0}, {"a": 2.0}
    # unit 0: got a as chosen: (1*10 - 2)/0.5 = 16; not control: - 0      -> 16
    # unit 1: chosen a, got control: 0 - 0*10/0.5                          -> 0
    # unit 2: chosen a, got control: 0 - 1*10/0.25                         -> -40
    # unit 3: chosen control: 0
    terms = incremental_policy_terms(y, chosen, received, p, value, cost)
    np.testing.assert_allclose(terms, [16.0, 0.0, -40.0, 0.0])
    assert incremental_policy_value_ipw(y, chosen, received, p, value, cost) == pytest.approx(-6.0)
    always_control = np.full(4, "control", dtype=object)
    assert incremental_policy_value_ipw(y, always_control, received, p, value, cost) == 0.0
    with pytest.raises(ValueError, match="value has no entry"):
        incremental_policy_terms(y, np.full(4, "b", dtype=object), received, p, value, cost)


def test_doubly_robust_terms_by_hand():
    from training.uplift_metrics import doubly_robust_policy_terms

    y = np.array([1, 0, 1])
    received = np.array(["a", "control", "a"], dtype=object)
    p = np.array([0.5, 0.5, 0.5])
    chosen = np.array(["a", "a", "control"], dtype=object)
    outcome = np.array([[0.2, 0.6], [0.1, 0.3], [0.5, 0.5]])  # columns: control, a
    # unit 0: (0.6-0.2)*10 - 2 + (1-0.6)*10/0.5 - 0        = 2 + 8 = 10
    # unit 1: (0.3-0.1)*10 - 2 + 0 - (0-0.1)*10/0.5        = 0 + 2 = 2
    # unit 2: chosen control                               = 0
    terms = doubly_robust_policy_terms(
        y, chosen, received, p, outcome, ["control", "a"], {"a": 10.0}, {"a": 2.0}
    )
    np.testing.assert_allclose(terms, [10.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="outcome must have shape"):
        doubly_robust_policy_terms(
            y, chosen, received, p, outcome[:, :1], ["control", "a"], {"a": 1}, {"a": 0}
        )
    with pytest.raises(ValueError, match="include the control"):
        doubly_robust_policy_terms(y, chosen, received, p, outcome, ["x", "a"], {"a": 1}, {"a": 0})


def test_doubly_robust_and_ipw_agree_on_a_large_randomized_sample():
    from training.uplift_metrics import doubly_robust_policy_terms, incremental_policy_terms

    rng = np.random.default_rng(0)
    n = 200_000
    received = rng.choice(np.array(["control", "a"], dtype=object), n)
    x = rng.random(n)
    true = np.column_stack([0.1 + 0.1 * x, 0.1 + 0.3 * x])  # a helps high x
    y = (rng.random(n) < np.where(received == "a", true[:, 1], true[:, 0])).astype(int)
    chosen = np.where(x > 0.5, "a", "control").astype(object)
    p = np.full(n, 0.5)
    biased = np.clip(true + 0.1, 0, 1)  # a wrong outcome model
    dr = doubly_robust_policy_terms(
        y, chosen, received, p, biased, ["control", "a"], {"a": 1.0}, {"a": 0.0}
    )
    ipw = incremental_policy_terms(y, chosen, received, p, {"a": 1.0}, {"a": 0.0})
    truth = np.mean(np.where(chosen == "a", true[:, 1] - true[:, 0], 0.0))
    assert dr.mean() == pytest.approx(truth, abs=0.003)
    assert ipw.mean() == pytest.approx(truth, abs=0.006)

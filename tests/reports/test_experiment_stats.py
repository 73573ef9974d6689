"""The readout statistics against scipy and closed forms, and the short versions of the
benchmark's simulations (coverage on the generator, A/A peeking, a broken assignment)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmarks.experiments import aa_peeking, coverage, srm_trips
from reports.experiment_stats import (
    cuped_theta,
    difference_in_means,
    metric_type,
    minimum_detectable_effect,
    mixture_scale,
    power,
    relative_lift,
    sequential_interval,
    srm_test,
)


def test_welch_matches_scipy_ttest_and_its_interval() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(1.0, 1.0, 300), rng.lognormal(0.8, 1.5, 500)
    lift = difference_in_means(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert lift.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert lift.df == pytest.approx(ref.df, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (lift.diff_low, lift.diff_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert lift.diff == pytest.approx(a.mean() - b.mean())


def test_a_rate_difference_worked_by_hand() -> None:
    # 30/100 against 20/100: diff 0.1, se sqrt(.3*.7/99 + .2*.8/99) (ddof=1 variances)
    yt = np.r_[np.ones(30), np.zeros(70)]
    yc = np.r_[np.ones(20), np.zeros(80)]
    lift = difference_in_means(yt, yc)
    vt, vc = 0.3 * 0.7 / 99, 0.2 * 0.8 / 99  # squared standard errors of the means
    assert lift.diff == pytest.approx(0.1) and lift.se == pytest.approx(np.sqrt(vt + vc))
    assert lift.rel == pytest.approx(0.5)
    assert lift.rel_se == pytest.approx(np.sqrt(vt / 0.2**2 + 0.3**2 * vc / 0.2**4))


def test_relative_lift_delta_method_and_a_control_of_zero() -> None:
    rel, se = relative_lift(0.12, 0.10, 0.0001, 0.0001)
    assert rel == pytest.approx(0.2)
    assert se == pytest.approx(np.sqrt(0.0001 / 0.01 + 0.0144 * 0.0001 / 0.0001))
    assert np.isnan(relative_lift(0.1, 0.0, 0.01, 0.01)[0])


def test_cuped_removes_the_covariates_share_of_variance_and_keeps_the_effect() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    x = rng.normal(10, 3, 2 * n)
    treated = np.arange(2 * n) < n
    y = 2.0 * x + rng.normal(0, 1, 2 * n) + 0.5 * treated
    plain = difference_in_means(y[treated], y[~treated])
    adjusted = difference_in_means(
        y[treated], y[~treated], x_treatment=x[treated], x_control=x[~treated]
    )
    assert cuped_theta(y, x) == pytest.approx(2.0, abs=0.05)
    assert adjusted.theta == pytest.approx(2.0, abs=0.05)
    assert adjusted.variance_reduction > 0.95  # corr^2 = 36 / 37
    assert adjusted.se < 0.25 * plain.se
    assert adjusted.diff_low < 0.5 < adjusted.diff_high


def test_difference_in_means_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        difference_in_means([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="missing or infinite"):
        difference_in_means([1.0, np.nan], [0.0, 1.0])
    with pytest.raises(ValueError, match="both arms"):
        difference_in_means([1.0, 0.0], [0.0, 1.0], x_treatment=[1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        difference_in_means([1.0, 0.0], [0.0, 1.0], alpha=1.5)


def test_metric_types() -> None:
    assert metric_type(np.array([0, 1, 1])) == "binary"
    assert metric_type(np.array([0, 3, 1])) == "count"
    assert metric_type(np.array([0, 3.5, 1])) == "revenue"


def test_srm_trips_on_a_52_48_split_at_large_n_and_not_on_a_fair_one() -> None:
    skewed = srm_test([10_400, 9_600], [0.5, 0.5])
    assert skewed.alert and skewed.p_value == pytest.approx(stats.chisquare([10_400, 9_600]).pvalue)
    assert not srm_test([10_040, 9_960], [0.5, 0.5]).alert
    assert not srm_test([9_000, 1_000], [0.9, 0.1]).alert  # a 10% holdout, as designed
    assert srm_test([9_000, 1_000], [0.5, 0.5]).alert
    with pytest.raises(ValueError, match="one count and one expected share"):
        srm_test([10], [1.0])


def test_power_and_mde_are_inverse_and_match_the_closed_form() -> None:
    se = 0.01
    mde = minimum_detectable_effect(se)
    assert mde == pytest.approx((1.959964 + 0.841621) * se, rel=1e-5)
    assert power(mde, se) == pytest.approx(0.8, abs=1e-3)
    assert power(0.0, se) == pytest.approx(0.05)  # no effect: the false-positive rate


def test_sequential_interval_is_wider_than_fixed_and_its_p_value_agrees() -> None:
    diff, se, n = 0.02, 0.008, 5_000
    low, high, p = sequential_interval(diff, se, n)
    assert high - low > 2 * 1.96 * se
    assert (low > 0) == (p < 0.05)
    # at the boundary the p-value is alpha: solve for the diff that puts low at 0
    boundary = diff - float(low)
    _, _, p_edge = sequential_interval(boundary, se, n)
    assert float(p_edge) == pytest.approx(0.05, rel=1e-6)
    # m = n rho^2; closed form of the half-width
    m = n * mixture_scale(10_000)
    half = se * np.sqrt(2 * (m + 1) / m * np.log(np.sqrt(m + 1) / 0.05))
    assert high - diff == pytest.approx(half)


# ----------------------------------------------------------- short versions of the benchmark
def test_intervals_cover_the_generators_true_offer_effects() -> None:
    rates = coverage(experiments=60, n=3000, seed=11)
    overall = rates["all"]
    assert overall.runs >= 200
    assert 0.90 <= overall.share <= 0.99, overall


def test_daily_peeking_keeps_the_always_valid_false_positive_rate_at_5_percent() -> None:
    rates = aa_peeking(runs=400, per_day=100, seed=3)
    # the naive test read daily inflates far past 5%: the simulation can tell
    assert rates["fixed_horizon_peeking"].share > 0.12
    assert rates["sequential"].share <= 0.05 + 0.02  # 400 runs: binomial sd about 0.011


def test_a_broken_assignment_trips_the_srm_alert() -> None:
    rates = srm_trips(experiments=6, n=8000, seed=5, lost=0.3)
    assert rates["broken"].share >= 0.75
    assert rates["intact"].hits == 0

"""The leakage guard on synthetic tables built to reproduce what real CRM exports do: a status
column sales fill in after the call, the call's length, a field filled only when a deal closes,
beside honest columns of every strength. No column is declared: the guard finds them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.leakage import (
    LeakagePolicy,
    find_leaks,
    missingness_signal,
    name_words,
    outcome_words,
    single_column_auc,
    too_good_to_be_true,
)

N = 6_000


def crm_export(seed: int = 0) -> tuple[dict[str, pd.Series], np.ndarray]:
    """Leads with a latent intent; honest columns reveal it partly, post-outcome ones follow the
    label itself."""
    rng = np.random.default_rng(seed)
    intent = rng.normal(size=N)
    y = (rng.random(N) < 1 / (1 + np.exp(-(intent * 1.6 - 2.2)))).astype(np.int8)
    status = np.where(
        y == 1,
        rng.choice(["Will revert", "Closed by sales", "Ringing"], N, p=[0.6, 0.3, 0.1]),
        rng.choice(["Ringing", "Not interested", "Will revert", "Switched off"], N,
                   p=[0.45, 0.35, 0.05, 0.15]),
    )  # fmt: skip
    filled = rng.random(N) < np.where(y == 1, 0.7, 0.04)
    segment = np.where(filled, rng.choice(["retail", "health", "b2b"], N), None)
    columns = {
        # honest: what was known when the lead was scored
        "pages_viewed": pd.Series(np.round(np.exp(intent * 0.9 + rng.normal(0, 0.6, N)) * 3)),
        "email_opens": pd.Series(rng.poisson(np.exp(intent * 0.5 + 0.5)).astype(float)),
        "company_size": pd.Series(rng.lognormal(4, 1, N)),
        "country": pd.Series(rng.choice(["de", "fr", "it", "es"], N)),
        # post-outcome: written after the call or the deal
        "Lead Status": pd.Series(status, dtype=object),
        "call_duration_s": pd.Series(rng.lognormal(5 + 1.3 * y, 0.9)),
        "segment": pd.Series(segment, dtype=object),
    }
    return columns, y


def test_name_words_split_spaces_punctuation_and_camel_case():
    assert name_words("Lead Quality") == ["lead", "quality"]
    assert name_words("callDurationSec") == ["call", "duration", "sec"]
    assert name_words("Last_Notable-Activity2") == ["last", "notable", "activity"]
    assert outcome_words("deal_stage") == ["stage"]
    assert outcome_words("pages_viewed") == []
    assert outcome_words("Stagecoach") == []  # whole words only


def test_single_column_auc_by_hand():
    y = np.array([0, 0, 1, 1])
    assert single_column_auc(pd.Series([1.0, 2.0, 3.0, 4.0]), y) == 1.0
    assert single_column_auc(pd.Series([4.0, 3.0, 2.0, 1.0]), y) == 1.0  # folded
    assert single_column_auc(pd.Series([1.0, 1.0, 1.0, 1.0]), y) == 0.5
    assert single_column_auc(pd.Series([1.0, 2.0]), np.array([1, 1])) == 0.5  # one class


def test_missingness_signal_needs_both_the_ratio_and_the_auc():
    y = np.array([1] * 10 + [0] * 10)
    mostly_positive = pd.Series([1.0] * 8 + [None] * 2 + [1.0] + [None] * 9)
    assert "80% of positive rows" in missingness_signal(mostly_positive, y, LeakagePolicy())
    evenly = pd.Series([1.0, None] * 10)
    assert missingness_signal(evenly, y, LeakagePolicy()) is None
    assert missingness_signal(pd.Series([1.0] * 20), y, LeakagePolicy()) is None


def test_the_guard_finds_each_post_outcome_column_of_a_crm_export():
    columns, y = crm_export()
    found = find_leaks(columns, y)
    # a status sales enter after the call: strong alone
    assert found["Lead Status"].verdict == "leak"
    assert found["Lead Status"].auc >= 0.9
    # the call's length: well below the block tier, but its name speaks of an outcome
    assert 0.75 <= found["call_duration_s"].auc < 0.9
    assert found["call_duration_s"].verdict == "leak"
    assert "duration" in found["call_duration_s"].text()
    # a field filled mostly when the lead converted
    assert found["segment"].verdict == "leak"
    assert "filled in" in found["segment"].text()
    # the honest columns are never dropped, the strongest at most named as suspect
    for honest in ("pages_viewed", "email_opens", "company_size", "country"):
        assert found[honest].verdict != "leak", found[honest]
    assert found["company_size"].verdict is None and found["country"].verdict is None


def test_a_plainly_named_column_far_above_the_rest_is_a_leak_and_near_them_a_suspect():
    columns, y = crm_export(seed=1)
    talk = columns.pop("call_duration_s")
    for name in ("Lead Status", "segment", "pages_viewed"):  # the rest are weak
        columns.pop(name)
    honest_best = max(single_column_auc(v, y) for v in columns.values())
    found = find_leaks({**columns, "talk_time": talk}, y)
    assert found["talk_time"].auc - honest_best >= 0.10
    assert found["talk_time"].verdict == "leak"
    assert "far above the next column" in found["talk_time"].text()
    # an honest column as strong as the talk time, without a hint: a suspect, not dropped
    rng = np.random.default_rng(2)
    as_strong = pd.Series(talk.to_numpy() * rng.lognormal(0, 0.05, N))
    found = find_leaks({**columns, "talk_time": talk, "visits": as_strong}, y)
    assert found["visits"].verdict == "suspect"
    assert found["talk_time"].verdict == "suspect"


def test_dates_after_the_rows_time_are_leaks_whatever_their_strength():
    columns, y = crm_export()
    found = find_leaks(
        {"company_size": columns["company_size"]}, y, dated_after={"company_size": 12}
    )
    assert found["company_size"].verdict == "leak"
    assert "12 rows" in found["company_size"].text()


def test_thresholds_come_from_the_policy():
    columns, y = crm_export()
    lenient = LeakagePolicy(block_auc=0.99, suspect_auc=0.98, missing_auc=0.99)
    found = find_leaks({"Lead Status": columns["Lead Status"]}, y, lenient)
    assert found["Lead Status"].verdict == "suspect"  # only its name speaks now


@pytest.mark.parametrize(
    ("auc", "expected"),
    [(0.96, "'tags' (70% of the gain), 'visits' (20% of the gain)"), (0.90, None)],
)
def test_too_good_to_be_true_names_the_largest_contributors(auc, expected):
    message = too_good_to_be_true(auc, 0.95, {"visits": 0.2, "tags": 0.7, "country": 0.1}, top=2)
    if expected is None:
        assert message is None
    else:
        assert expected in message and "too good to be true" in message

import math

import pytest

from training.reasons import describe, top_reasons


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("pricing_view_7d", 4, "Viewed the pricing page 4 times in the last 7 days"),
        ("demo_request_30d", 1, "Requested a demo once in the last 30 days"),
        ("email_open_90d", 0, "Has not opened emails in the last 90 days"),
        ("days_since_last_pricing_view", math.nan, "Has never looked at pricing"),
        ("days_since_last_pricing_view", 999.0, "Has never looked at pricing"),
        ("days_since_last_pricing_view", 0.4, "Looked at pricing in the last 24 hours"),
        ("days_since_last_event", 12.6, "Last activity was 13 days ago"),
        ("is_decision_maker", 1, "Holds a decision-making role"),
        ("colleague_pricing_views_30d", 3, "Colleagues viewed pricing 3 times in the last 30 days"),
        ("email_click_rate_90d", 0.25, "Clicked 0.25 times per email opened in the last 90 days"),
        ("events_30d", 12, "Was active on the site or in email 12 times in the last 30 days"),
        ("events_7d", 0, "Has not been active on the site or in email in the last 7 days"),
        ("title_seniority", "vp", "Seniority: vp"),
        ("colleague_pricing_views_30d", 0, "No colleague viewed pricing in the last 30 days"),
    ],
)
def test_describe_reads_like_a_sentence(feature, value, text):
    assert describe(feature, value) == text


def test_top_reasons_picks_strongest_with_direction():
    reasons = top_reasons(
        ["pricing_view_7d", "lead_age_days", "n_colleagues", "industry"],
        [3, 200, 0, "retail"],
        [0.8, -1.2, 0.0, 0.1],
        k=3,
    )
    assert [r.feature for r in reasons] == ["lead_age_days", "pricing_view_7d", "industry"]
    assert reasons[0].direction == "lowers" and reasons[1].direction == "raises"
    with pytest.raises(ValueError, match="same length"):
        top_reasons(["a"], [1, 2], [0.1])


def test_never_sentinel_matches_the_feature_build():
    from features.build import NEVER_DAYS
    from training import reasons

    assert reasons.NEVER_DAYS == NEVER_DAYS

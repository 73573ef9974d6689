"""Point-in-time feature tables: hand-checked windows, colleague exclusion, a brute-force
reference, and the point-in-time property (future data never changes a row)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import (
    ACCOUNT_FIRMOGRAPHIC_FEATURES,
    COLLEAGUE_INTEREST_FEATURES,
    ENGAGEMENT_TYPES,
    LEAD_BEHAVIOR_FEATURES,
    LEAD_PROFILE_COLUMNS,
    NEVER_DAYS,
    SHORT_WINDOW_TYPES,
    TABLES,
    build_feature_tables,
    compute_feature_tables,
)

T = pd.Timestamp("2024-04-01", tz="UTC")  # a Monday; the tick under test
DAY = pd.Timedelta(days=1)
TIME_GRID = {"start": "2024-03-04", "end": "2024-04-08"}  # ticks Mar 4, 11, 18, 25, Apr 1, 8


def row_at(frame: pd.DataFrame, lead_id: str, when: pd.Timestamp = T) -> pd.Series:
    hit = frame[(frame["lead_id"] == lead_id) & (frame["event_timestamp"] == when)]
    assert len(hit) == 1, f"expected one row for {lead_id} at {when}, got {len(hit)}"
    return hit.iloc[0]


def test_windows_on_a_hand_made_lead(make_raw):
    events = [
        ("L1", "pricing_view", T - 7 * DAY),  # on the 7d edge: inside [T-7d, T)
        ("L1", "pricing_view", T - pd.Timedelta(seconds=1)),
        ("L1", "pricing_view", T),  # at T: not yet observable
        ("L1", "pricing_view", T + DAY),  # future
        ("L1", "page_view", T - 8 * DAY),
        ("L1", "email_open", T - 10 * DAY),
        ("L1", "email_open", T - 10 * DAY + pd.Timedelta(hours=3)),  # same day
        ("L1", "email_click", T - 29 * DAY),
        ("L1", "demo_request", T - 30 * DAY),  # on the 30d edge: inside
        ("L1", "demo_request", T - 30 * DAY - pd.Timedelta(seconds=1)),  # just outside 30d
        ("L1", "trial_signup", T - 90 * DAY),  # on the 90d edge: inside 90d
        ("L1", "webinar_attended", T - 91 * DAY),  # older than every window
        ("L1", "product_active", T - 2 * DAY),  # not an engagement event
    ]
    raw = make_raw(leads=[("L1", "A1", "VP Eng", T - 120 * DAY)], events=events)
    tables = compute_feature_tables(raw, **TIME_GRID)
    row = row_at(tables["lead_behavior"], "L1")

    assert row["pricing_view_7d"] == 2
    assert row["events_7d"] == 2
    assert row["pricing_view_30d"] == 2 and row["pricing_view_90d"] == 2
    assert row["page_view_30d"] == 1
    assert row["email_open_30d"] == 2
    assert row["email_click_30d"] == 1
    assert row["demo_request_30d"] == 1 and row["demo_request_90d"] == 2
    assert row["demo_request_7d"] == 0
    assert row["trial_signup_90d"] == 1 and row["trial_signup_30d"] == 0
    assert row["webinar_attended_90d"] == 0
    assert row["events_30d"] == 7
    assert row["events_90d"] == 9
    assert row["days_since_last_event"] == pytest.approx(1 / 86400)
    assert row["days_since_last_pricing_view"] == pytest.approx(1 / 86400)
    # distinct UTC dates in [T-30d, T): T-1s, T-7, T-8, T-10 (twice), T-29, T-30 -> 6
    assert row["active_days_30d"] == 6
    assert row["email_click_rate_90d"] == pytest.approx(1 / 2)
    assert row["trend_7d_vs_30d"] == pytest.approx((2 + 1) / (7 * 7 / 30 + 1))
    assert row["lead_age_days"] == 120


def test_recency_reaches_past_the_longest_window(make_raw):
    raw = make_raw(
        leads=[("L1", "A1", None, T - 400 * DAY), ("L2", "A1", None, T - 400 * DAY)],
        events=[("L1", "pricing_view", T - 200 * DAY), ("L2", "page_view", T - 3 * DAY)],
    )
    behavior = compute_feature_tables(raw, **TIME_GRID)["lead_behavior"]
    old, never = row_at(behavior, "L1"), row_at(behavior, "L2")
    assert old["events_90d"] == 0
    assert old["days_since_last_event"] == 200
    assert old["days_since_last_pricing_view"] == 200
    assert never["days_since_last_pricing_view"] == NEVER_DAYS  # never: the coldest value
    assert np.isnan(never["email_click_rate_90d"])  # no opens: rate undefined
    assert never["trend_7d_vs_30d"] == pytest.approx((1 + 1) / (7 / 30 + 1))


def test_rows_only_for_leads_existing_at_the_tick(make_raw):
    raw = make_raw(
        leads=[
            ("L1", "A1", None, "2024-03-04"),  # created exactly on the first tick
            ("L2", "A1", None, "2024-03-20"),
        ]
    )
    behavior = compute_feature_tables(raw, **TIME_GRID)["lead_behavior"]
    ticks_l1 = behavior.loc[behavior["lead_id"] == "L1", "event_timestamp"]
    ticks_l2 = behavior.loc[behavior["lead_id"] == "L2", "event_timestamp"]
    assert ticks_l1.min() == pd.Timestamp("2024-03-11", tz="UTC")  # created_at < T, strictly
    assert ticks_l2.min() == pd.Timestamp("2024-03-25", tz="UTC")
    assert len(ticks_l1) == 5 and len(ticks_l2) == 3


def test_colleague_interest_excludes_the_leads_own_activity(make_raw):
    leads = [
        ("L1", "A1", "CTO", T - 60 * DAY),
        ("L2", "A1", "analyst", T - 60 * DAY),
        ("L3", "A1", "intern", T - 60 * DAY),
        ("L4", "A1", None, T + DAY),  # joins the account after T: no colleague at T
        ("L5", "A2", None, T - 60 * DAY),  # another account
    ]
    events = [
        ("L1", "pricing_view", T - 2 * DAY),
        ("L1", "pricing_view", T - 3 * DAY),
        ("L1", "demo_request", T - 40 * DAY),
        ("L2", "pricing_view", T - 5 * DAY),
        ("L2", "demo_request", T - 80 * DAY),
        ("L4", "pricing_view", T - DAY),  # L4 does not exist yet at T
        ("L5", "pricing_view", T - DAY),
        ("L5", "demo_request", T - DAY),
        ("L3", "pricing_view", T + DAY),  # future
    ]
    opportunities = [("L1", T - 10 * DAY), ("L2", T + DAY), ("L5", T - DAY)]
    raw = make_raw(leads=leads, events=events, opportunities=opportunities)
    colleagues = compute_feature_tables(raw, **TIME_GRID)["colleague_interest"]

    l1, l2, l3 = (row_at(colleagues, lead) for lead in ("L1", "L2", "L3"))
    assert (l1["n_colleagues"], l2["n_colleagues"], l3["n_colleagues"]) == (2, 2, 2)
    # L1's own two pricing views and its demo never count for L1.
    assert l1["colleague_pricing_views_30d"] == 1
    assert l1["colleague_demo_requests_90d"] == 1
    assert l1["engaged_colleagues_30d"] == 1  # L2 (L3 only acts in the future)
    assert l1["colleague_open_opportunities"] == 0  # its own opportunity is not a colleague's
    assert l2["colleague_pricing_views_30d"] == 2
    assert l2["colleague_demo_requests_90d"] == 1
    assert l2["colleague_open_opportunities"] == 1  # L1's; L2's own is in the future anyway
    assert l3["colleague_pricing_views_30d"] == 3
    assert l3["colleague_demo_requests_90d"] == 2
    assert l3["engaged_colleagues_30d"] == 2
    assert l3["colleague_open_opportunities"] == 1
    lonely = row_at(colleagues, "L5")
    assert lonely[list(COLLEAGUE_INTEREST_FEATURES)].tolist() == [0, 0, 0, 0, 0]


def test_profile_and_firmographic_tables(make_raw):
    raw = make_raw(
        leads=[("L1", "A1", "VP Eng", "2024-03-01"), ("L2", "A2", None, "2024-03-02 10:30")]
    )
    tables = compute_feature_tables(raw, **TIME_GRID)
    profile = tables["lead_profile"]
    assert list(profile.columns) == ["lead_id", "event_timestamp", *LEAD_PROFILE_COLUMNS]
    assert profile["job_title"].tolist() == ["VP Eng", ""]  # missing title -> ""
    assert profile["event_timestamp"].tolist() == [
        pd.Timestamp("2024-03-01", tz="UTC"),
        pd.Timestamp("2024-03-02 10:30", tz="UTC"),
    ]
    firmographic = tables["account_firmographic"]
    assert list(firmographic.columns) == [
        "account_id",
        "event_timestamp",
        *ACCOUNT_FIRMOGRAPHIC_FEATURES,
    ]
    assert firmographic["employee_count"].dtype == "float64"


# --- brute-force reference ------------------------------------------------------------------


def reference_tables(
    raw: dict[str, pd.DataFrame], ticks: pd.DatetimeIndex
) -> dict[str, pd.DataFrame]:
    """The definitions, one (lead, tick) at a time, by brute force."""
    leads, opps = raw["leads"], raw["opportunities"]
    events = raw["events"][raw["events"]["event_type"].isin(ENGAGEMENT_TYPES)]
    by_lead = {
        lead_id: (group["timestamp"].dt.tz_convert(None).to_numpy(), group["event_type"].to_numpy())
        for lead_id, group in events.groupby("lead_id")
    }
    empty = (np.array([], dtype="datetime64[ns]"), np.array([], dtype=object))
    behavior_rows, colleague_rows = [], []
    for tick in ticks:
        now = tick.tz_convert(None).to_datetime64()
        alive = leads[leads["created_at"] < tick]

        def seen(
            lead_id: str, days: float = 1e5, event_type: str | None = None, now=now
        ) -> np.ndarray:
            """Timestamps of the lead's events in [tick - days, tick)."""
            ts, kinds = by_lead.get(lead_id, empty)
            keep = (ts < now) & (ts >= now - np.timedelta64(int(days * 86400), "s"))
            if event_type is not None:
                keep &= kinds == event_type
            return ts[keep]

        for lead in alive.itertuples():
            row = {"lead_id": lead.lead_id, "event_timestamp": tick}
            for w in (7, 30, 90):
                row[f"events_{w}d"] = len(seen(lead.lead_id, w))
            for t in SHORT_WINDOW_TYPES:
                row[f"{t}_7d"] = len(seen(lead.lead_id, 7, t))
            for w in (30, 90):
                for t in ENGAGEMENT_TYPES:
                    row[f"{t}_{w}d"] = len(seen(lead.lead_id, w, t))
            every, pricing = seen(lead.lead_id), seen(lead.lead_id, event_type="pricing_view")
            day = np.timedelta64(86400, "s")
            row["days_since_last_event"] = (now - every.max()) / day if len(every) else NEVER_DAYS
            row["days_since_last_pricing_view"] = (
                (now - pricing.max()) / day if len(pricing) else NEVER_DAYS
            )
            row["trend_7d_vs_30d"] = (row["events_7d"] + 1) / (row["events_30d"] * 7 / 30 + 1)
            opens = row["email_open_90d"]
            row["email_click_rate_90d"] = row["email_click_90d"] / opens if opens else np.nan
            row["active_days_30d"] = len(np.unique(seen(lead.lead_id, 30).astype("datetime64[D]")))
            row["lead_age_days"] = (tick - lead.created_at) / DAY
            behavior_rows.append(row)

            others = alive[
                (alive["account_id"] == lead.account_id) & (alive["lead_id"] != lead.lead_id)
            ]
            their_opps = opps[
                (opps["account_id"] == lead.account_id)
                & (opps["lead_id"] != lead.lead_id)
                & (opps["created_at"] < tick)
            ]
            colleague_rows.append(
                {
                    "lead_id": lead.lead_id,
                    "event_timestamp": tick,
                    "n_colleagues": len(others),
                    "engaged_colleagues_30d": sum(len(seen(o, 30)) > 0 for o in others["lead_id"]),
                    "colleague_pricing_views_30d": sum(
                        len(seen(o, 30, "pricing_view")) for o in others["lead_id"]
                    ),
                    "colleague_demo_requests_90d": sum(
                        len(seen(o, 90, "demo_request")) for o in others["lead_id"]
                    ),
                    "colleague_open_opportunities": len(their_opps),
                }
            )
    return {
        "lead_behavior": pd.DataFrame(
            behavior_rows, columns=["lead_id", "event_timestamp", *LEAD_BEHAVIOR_FEATURES]
        ),
        "colleague_interest": pd.DataFrame(
            colleague_rows, columns=["lead_id", "event_timestamp", *COLLEAGUE_INTEREST_FEATURES]
        ),
    }


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    keys = ["lead_id", "event_timestamp"]
    actual = actual.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    assert actual["lead_id"].tolist() == expected["lead_id"].tolist()
    assert (actual["event_timestamp"].to_numpy() == expected["event_timestamp"].to_numpy()).all()
    for column in expected.columns.drop(keys):
        np.testing.assert_allclose(
            actual[column].to_numpy(dtype=float),
            expected[column].to_numpy(dtype=float),
            rtol=1e-9,
            atol=1e-9,
            err_msg=column,
        )


@pytest.mark.parametrize(
    "ticks",
    [
        pd.date_range("2024-02-05", periods=8, freq="7D", tz="UTC").append(
            pd.DatetimeIndex([pd.Timestamp("2024-03-30 15:20", tz="UTC")])
        ),
        # Ticks off midnight, unevenly spaced: UTC dates straddle the window edges.
        pd.DatetimeIndex(
            ["2024-01-20 07:00", "2024-02-11 13:30", "2024-02-14 02:00", "2024-03-09 18:45"],
            tz="UTC",
        ),
    ],
    ids=["weekly", "irregular"],
)
def test_matches_brute_force_reference(make_synthetic_raw, ticks):
    raw = make_synthetic_raw(40, 25, days=70, seed=3, leads_per_account=4)
    tables = compute_feature_tables(raw, ticks=ticks)
    expected = reference_tables(raw, ticks)
    assert len(tables["lead_behavior"]) > 100
    assert_same_rows(tables["lead_behavior"], expected["lead_behavior"])
    assert_same_rows(tables["colleague_interest"], expected["colleague_interest"])


# --- the point-in-time property -------------------------------------------------------------

START = pd.Timestamp("2024-01-01", tz="UTC")


@st.composite
def small_funnels(draw):
    n_leads = draw(st.integers(1, 5))
    leads = [
        (
            f"L{i}",
            f"A{draw(st.integers(0, 1))}",
            None,
            START + timedelta(hours=draw(st.integers(-30 * 24, 60 * 24))),
        )
        for i in range(n_leads)
    ]
    # Whole hours: events land exactly on ticks and window edges often.
    events = draw(
        st.lists(
            st.tuples(
                st.integers(0, n_leads - 1),
                st.sampled_from((*ENGAGEMENT_TYPES, "product_active")),
                st.integers(-120 * 24, 100 * 24),
            ),
            max_size=40,
        )
    )
    # An opportunity comes after its lead was created (its account is the lead's).
    opportunities = draw(
        st.lists(st.tuples(st.integers(0, n_leads - 1), st.integers(1, 100 * 24)), max_size=4)
    )
    end = START + timedelta(days=draw(st.integers(8, 100)), hours=draw(st.sampled_from([0, 0, 7])))
    return (
        leads,
        [(f"L{i}", kind, START + timedelta(hours=h)) for i, kind, h in events],
        [(f"L{i}", leads[i][3] + timedelta(hours=h)) for i, h in opportunities],
        end,
        draw(st.integers(0, 20)),
    )


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(funnel=small_funnels())
def test_future_data_never_changes_a_row(make_raw, funnel):
    leads, events, opportunities, end, tick_pick = funnel
    full = compute_feature_tables(
        make_raw(leads, events, opportunities, accounts=["A0", "A1"]), start=START, end=end
    )
    ticks = full["lead_behavior"]["event_timestamp"].drop_duplicates().sort_values()
    if ticks.empty:
        return
    tick = ticks.iloc[tick_pick % len(ticks)]
    # Everything at or after the tick removed: leads not yet created, events, opportunities.
    past = make_raw(
        [lead for lead in leads if lead[3] < tick],
        [e for e in events if e[2] < tick],
        [o for o in opportunities if o[1] < tick],
        accounts=["A0", "A1"],
    )
    truncated = compute_feature_tables(past, start=START, end=end)
    for table in ("lead_behavior", "colleague_interest"):
        now = full[table][full[table]["event_timestamp"] == tick]
        then = truncated[table][truncated[table]["event_timestamp"] == tick]
        assert len(now) > 0
        assert_same_rows(now, then)


# --- writing --------------------------------------------------------------------------------


def test_build_writes_parquet_atomically_from_frames_or_a_directory(make_synthetic_raw, tmp_path):
    raw = make_synthetic_raw(30, 10, days=60, seed=1)
    out = tmp_path / "features"
    counts = build_feature_tables(raw, out, "2024-01-01", "2024-02-20 06:00", every_days=7)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)
    frames = {t: pd.read_parquet(out / f"{t}.parquet") for t in TABLES}
    assert counts == {t: len(frames[t]) for t in TABLES}
    behavior = frames["lead_behavior"]
    assert list(behavior.columns) == ["lead_id", "event_timestamp", *LEAD_BEHAVIOR_FEATURES]
    assert all(behavior[c].dtype == "float64" for c in LEAD_BEHAVIOR_FEATURES)
    assert all(
        frames["colleague_interest"][c].dtype == "float64" for c in COLLEAGUE_INTEREST_FEATURES
    )
    assert str(behavior["event_timestamp"].dt.tz) == "UTC"
    assert behavior["event_timestamp"].max() == pd.Timestamp("2024-02-20 06:00", tz="UTC")

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for name, frame in raw.items():
        frame.to_parquet(raw_dir / f"{name}.parquet")
    again = build_feature_tables(raw_dir, out, "2024-01-01", "2024-02-20 06:00", every_days=7)
    assert again == counts
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "lead_behavior.parquet")
        .sort_values(["lead_id", "event_timestamp"])
        .reset_index(drop=True),
        behavior.sort_values(["lead_id", "event_timestamp"]).reset_index(drop=True),
    )


def test_a_failed_build_leaves_the_previous_tables(make_synthetic_raw, tmp_path):
    raw = make_synthetic_raw(10, 5, days=30)
    out = tmp_path / "features"
    build_feature_tables(raw, out, "2024-01-01", "2024-01-29")
    before = (out / "lead_behavior.parquet").read_bytes()
    broken = dict(raw, opportunities=raw["opportunities"].drop(columns=["created_at"]))
    with pytest.raises(ValueError, match="opportunities.*created_at"):
        build_feature_tables(broken, out, "2024-01-01", "2024-01-29")
    assert (out / "lead_behavior.parquet").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)


def test_missing_table_is_named(tmp_path):
    with pytest.raises(ValueError, match="'accounts' is missing"):
        build_feature_tables(tmp_path, tmp_path / "out", "2024-01-01", "2024-02-01")


def test_duplicate_keys_are_rejected(make_raw):
    raw = make_raw(leads=[("L1", "A1", None, "2024-03-01"), ("L1", "A1", None, "2024-03-02")])
    with pytest.raises(ValueError, match="'leads' has duplicate lead_id.*L1"):
        compute_feature_tables(raw, **TIME_GRID)

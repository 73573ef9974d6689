"""The account_usage table: hand-made values, point-in-time correctness, and the generator's churn
and offer oracles recomputed from the feature tables alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.config import StagesConfig
from core.contract import validate
from core.stages import assign_stages
from features.build import compute_feature_tables
from synthetic import customers as cust
from synthetic import exposures as expo
from synthetic import generate as gen

START = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday
T = pd.Timestamp("2024-03-04", tz="UTC")  # the tick under test (a Monday)


def subscriptions(rows: list[tuple[str, str, str | None, float, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["account_id", "started_at", "ended_at", "mrr", "seats", "plan"]
    )
    return validate("subscriptions", frame)


def at_tick(table: pd.DataFrame, account: str, tick: pd.Timestamp = T) -> pd.Series:
    row = table[(table["account_id"] == account) & (table["event_timestamp"] == tick)]
    assert len(row) == 1, row
    return row.iloc[0]


@pytest.fixture
def hand_made(make_raw):
    raw = make_raw(
        leads=[
            ("L0", "A0", "CTO", "2023-12-01"),
            ("L1", "A0", "Engineer", "2023-12-01"),
            ("L2", "A1", "", "2023-12-01"),
            ("L3", "A2", "", "2023-12-01"),
        ],
        events=[
            ("L0", "product_active", "2024-01-20"),  # the 30 days before the last 30
            ("L0", "product_active", "2024-02-20"),
            ("L1", "product_active", "2024-02-25"),
            ("L0", "product_active", "2024-03-04"),  # at the tick: not seen yet
            ("L0", "page_view", "2024-02-26"),
            ("L1", "email_open", "2024-01-10"),  # older than 30 days
        ],
        opportunities=[("L0", "2024-02-01")],
    )
    raw["subscriptions"] = subscriptions(
        [
            # A0: 2 seats, then 4 from 10 Feb; A1 churned in February; A2 ends exactly at T
            ("A0", "2024-01-03", "2024-02-10", 100.0, 2, "team"),
            ("A0", "2024-02-10", None, 200.0, 4, "team"),
            ("A1", "2024-01-08", "2024-02-14", 50.0, 1, "business"),
            ("A2", "2023-06-01", "2024-03-04", 80.0, 2, "enterprise"),
        ]
    )
    return compute_feature_tables(raw, start=START, end=T + pd.Timedelta(days=7))


def test_values_on_a_hand_made_customer(hand_made):
    row = at_tick(hand_made["account_usage"], "A0")
    assert row["is_customer"] == 1.0
    assert (row["plan"], row["seats"], row["mrr"]) == ("team", 4.0, 200.0)
    # nothing was in force 90 days earlier (5 Dec): the change counts from the first row
    assert row["mrr_change_90d"] == pytest.approx(200.0 / 100.0 - 1)
    assert row["tenure_days"] == pytest.approx((T - pd.Timestamp("2024-01-03", tz="UTC")).days)
    # usage: 20 Feb and 25 Feb in [3 Feb, 4 Mar); 20 Jan in the 30 days before; none in 7 days
    assert (row["usage_events_30d"], row["usage_events_prev_30d"], row["usage_events_7d"]) == (
        2,
        1,
        0,
    )
    assert row["usage_trend_30d"] == pytest.approx(math.log(3 / 2))
    assert row["active_users_30d"] == 2.0
    assert row["seat_utilization_30d"] == pytest.approx(2 / 4)
    # engagement: the page view of 26 Feb; the e-mail open of 10 Jan is older than 30 days
    assert (row["lead_engagement_30d"], row["engaged_leads_30d"], row["known_leads"]) == (1, 1, 2)
    assert row["opportunities_90d"] == 1.0


def test_churned_and_ending_accounts(hand_made):
    usage = hand_made["account_usage"]
    churned = at_tick(usage, "A1")
    assert churned["is_customer"] == 0.0
    assert pd.isna(churned["plan"]) and np.isnan(churned["seats"]) and np.isnan(churned["mrr"])
    assert np.isnan(churned["seat_utilization_30d"]) and np.isnan(churned["tenure_days"])
    # a subscription ending exactly at the tick was not known to end yet
    assert at_tick(usage, "A2")["is_customer"] == 1.0
    assert at_tick(usage, "A2", T + pd.Timedelta(days=7))["is_customer"] == 0.0
    # before A0's first subscription it was no customer
    assert at_tick(usage, "A0", START)["is_customer"] == 0.0


def test_future_data_never_changes_an_account_row(make_synthetic_raw):
    raw = make_synthetic_raw(60, 20, days=120, seed=4)
    rng = np.random.default_rng(2)
    accounts = raw["accounts"]["account_id"].to_numpy()
    leads = raw["leads"]
    users = leads.sample(40, random_state=1)
    product = pd.DataFrame(
        {
            "event_id": [f"P{i:06d}" for i in range(400)],
            "lead_id": np.repeat(users["lead_id"].to_numpy(), 10),
            "account_id": np.repeat(users["account_id"].to_numpy(), 10),
            "event_type": "product_active",
            "timestamp": pd.DatetimeIndex(np.repeat(users["created_at"].to_numpy(), 10))
            + pd.to_timedelta(rng.uniform(0, 90, 400), unit="D"),
            "properties": None,
        }
    )
    raw["events"] = pd.concat([raw["events"], product], ignore_index=True)
    starts = START + pd.to_timedelta(rng.uniform(-60, 60, len(accounts)), unit="D")
    change = starts + pd.to_timedelta(rng.uniform(5, 60, len(accounts)), unit="D")
    ends = change + pd.to_timedelta(rng.uniform(5, 60, len(accounts)), unit="D")
    raw["subscriptions"] = validate(
        "subscriptions",
        pd.DataFrame(
            {
                "account_id": np.concatenate([accounts, accounts]),
                "started_at": np.concatenate([starts, change]),
                "ended_at": np.concatenate([change, ends]),
                "mrr": np.concatenate(
                    [np.full(len(accounts), 100.0), np.full(len(accounts), 60.0)]
                ),
                "seats": np.concatenate([np.full(len(accounts), 3), np.full(len(accounts), 2)]),
                "plan": "team",
            }
        ),
    )
    end = START + pd.Timedelta(days=119)
    full = compute_feature_tables(raw, start=START, end=end)["account_usage"]
    for tick in sorted(full["event_timestamp"].unique())[2:12:3]:  # while there are customers
        past = {name: frame for name, frame in raw.items()}
        past["leads"] = leads[leads["created_at"] < tick]
        past["events"] = raw["events"][raw["events"]["timestamp"] < tick]
        past["opportunities"] = raw["opportunities"][raw["opportunities"]["created_at"] < tick]
        subs = raw["subscriptions"][raw["subscriptions"]["started_at"] < tick].copy()
        subs.loc[subs["ended_at"] >= tick, "ended_at"] = pd.NaT  # an end not yet known
        past["subscriptions"] = subs
        then = compute_feature_tables(past, start=START, end=end)["account_usage"]
        now = full[full["event_timestamp"] == tick].reset_index(drop=True)
        was = then[then["event_timestamp"] == tick].reset_index(drop=True)
        assert (now["is_customer"] == 1).any()
        pd.testing.assert_frame_equal(now, was)


# --- the generator's oracles are functions of the features -----------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from core.tables import read_tables

    out = tmp_path_factory.mktemp("generated")
    summary = gen.generate(1500, 11, out_dir=out, progress=False)
    tables = read_tables(out / "raw")
    features = compute_feature_tables(tables, start=summary["start"], end=summary["end"])
    return out, summary, tables, features


def test_churn_hazard_is_a_function_of_account_usage(generated):
    out, _, tables, features = generated
    oracle = pd.read_parquet(out / "oracle" / "churn_oracle.parquet")
    rows = oracle.rename(columns={"snapshot_ts": "event_timestamp"}).merge(
        features["account_usage"], on=["account_id", "event_timestamp"], how="left"
    )
    rows = rows.merge(tables["accounts"][["account_id", "employee_count"]], on="account_id")
    assert len(rows) == len(oracle) and (rows["is_customer"] == 1).all()
    customers = features["account_usage"]["is_customer"] == 1
    assert customers.sum() == len(oracle)  # oracle rows are exactly the customer snapshots
    z = cust.churn_logit(
        rows["usage_events_30d"].to_numpy(),
        rows["usage_events_prev_30d"].to_numpy(),
        rows["active_users_30d"].to_numpy(),
        rows["seats"].to_numpy(),
        rows["mrr_change_90d"].to_numpy(),
        rows["tenure_days"].to_numpy(),
        rows["lead_engagement_30d"].to_numpy(),
        rows["employee_count"].to_numpy(),
        rows["plan"].map(cust.PLANS.index).to_numpy(),
    )
    hazard = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(rows["hazard_7d"].to_numpy(), hazard, rtol=1e-9, atol=1e-12)
    # churning within 60 days is at least as likely as churning in the first week
    assert (rows["p_true"] >= rows["hazard_7d"] - 1e-12).all()


def test_offer_oracle_is_a_function_of_the_features(generated):
    out, summary, tables, features = generated
    exposures = tables["offer_exposures"]
    oracle = pd.read_parquet(out / "oracle" / "nbo_oracle.parquet")
    start = pd.Timestamp(summary["start"])
    week = pd.Timedelta(days=7)
    rows = exposures.assign(
        event_timestamp=start + ((exposures["exposed_at"] - start) // week) * week
    ).merge(tables["leads"][["lead_id", "account_id"]], left_on="subject_id", right_on="lead_id")
    rows = rows.merge(features["lead_behavior"], on=["lead_id", "event_timestamp"], how="left")
    rows = rows.merge(features["account_usage"], on=["account_id", "event_timestamp"], how="left")
    rows = rows.merge(
        tables["accounts"][["account_id", "employee_count", "industry"]], on="account_id"
    )
    titles = pd.read_parquet(out / "oracle" / "titles.parquet").set_index("lead_id")
    truth = titles.loc[rows["lead_id"]]
    has_title = (truth["job_title"].notna() & (truth["job_title"] != "")).to_numpy()
    seniority = np.where(has_title, truth["seniority"], "unknown")
    state = expo.LeadState(
        pricing_30d=rows["pricing_view_30d"].to_numpy(),
        demo_30d=rows["demo_request_30d"].to_numpy(),
        trial_30d=rows["trial_signup_30d"].to_numpy(),
        webinar_30d=rows["webinar_attended_30d"].to_numpy(),
        content_30d=rows["content_download_30d"].to_numpy(),
        decision_maker=np.isin(seniority, list(gen.DECISION_MAKERS)),
        low_seniority=np.isin(seniority, expo.LOW_SENIORITY),
        employees=rows["employee_count"].to_numpy(),
        industry_fit=rows["industry"].isin(gen.TARGET_INDUSTRIES).to_numpy(dtype=float),
        is_customer=rows["is_customer"].to_numpy() == 1,
        utilization=rows["seat_utilization_30d"].to_numpy(),
        account_opportunities_90d=rows["opportunities_90d"].to_numpy(),
    )
    stage = expo.lead_stage(state)
    expected = expo.true_probabilities(state, stage)
    truth = oracle.set_index(["subject_id", "exposed_at"]).loc[
        list(zip(rows["subject_id"], rows["exposed_at"], strict=True))
    ]
    np.testing.assert_allclose(
        truth[[f"p_{arm}" for arm in expo.ARMS]].to_numpy(), expected, rtol=1e-9, atol=1e-12
    )
    assert (truth["stage"].to_numpy() == np.asarray(expo.STAGES)[stage]).all()
    # the default stage rules in config say the same as the generator's
    assert (assign_stages(StagesConfig(), rows) == np.asarray(expo.STAGES)[stage]).all()
    # every arm received was one the lead was eligible for, with propensity 1 / (arms allowed)
    allowed = np.hstack([np.ones((len(rows), 1), bool), expo.eligibility(stage, state.is_customer)])
    received = rows["offer_id"].map(expo.ARMS.index).to_numpy()
    assert allowed[np.arange(len(rows)), received].all()
    np.testing.assert_allclose(rows["propensity"].to_numpy(), 1 / allowed.sum(axis=1))

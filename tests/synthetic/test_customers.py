"""The generator's customers (subscriptions, usage, churn) and its randomized offer experiment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.tables import read_tables
from synthetic import customers as cust
from synthetic import exposures as expo
from synthetic import generate as gen

N_LEADS = 3000


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("customers")
    summary = gen.generate(N_LEADS, 5, out_dir=out, progress=False)
    return out, summary, read_tables(out / "raw")  # validated against the contract


def test_subscriptions_are_contiguous_rows_per_account(generated):
    _, summary, tables = generated
    subs = tables["subscriptions"].sort_values(["account_id", "started_at"])
    assert set(subs["plan"]) <= set(cust.PLANS) and (subs["seats"] >= 1).all()
    assert (subs["mrr"] > 0).all()
    for _, rows in subs.groupby("account_id"):
        # a plan change closes one row and opens the next at the same instant; only the last
        # row may be open, and a churned account's last row is closed
        assert rows["ended_at"].iloc[:-1].notna().all()
        assert (
            rows["started_at"].iloc[1:].to_numpy() == rows["ended_at"].iloc[:-1].to_numpy()
        ).all()
    start = pd.Timestamp(summary["start"])
    first = subs.groupby("account_id")["started_at"].min()
    assert (first < start).mean() > 0.2  # an installed base
    assert summary["customers"] == subs["account_id"].nunique() > 100
    assert 0.05 < summary["churn_label_rate"] < 0.2
    assert 0.7 < summary["churn_oracle_auc"] < 0.95  # informative, not trivial


def test_churn_oracle_is_calibrated(generated):
    """p_true is P(churn within 60 days | the generator's state): on the snapshots whose window
    is observed, the churn rate in each probability band matches the band's mean p_true."""
    from core.timegrid import snapshot_grid
    from training.labels import churn_labels

    out, summary, tables = generated
    oracle = pd.read_parquet(out / "oracle" / "churn_oracle.parquet")
    ticks = snapshot_grid(summary["start"], summary["end"])
    labels = churn_labels(tables["subscriptions"], ticks, cust.CHURN_LABEL_DAYS, summary["end"])
    rows = labels.merge(
        oracle.rename(columns={"snapshot_ts": "event_timestamp"}),
        on=["account_id", "event_timestamp"],
    )
    assert len(rows) == len(labels)
    assert summary["churn_label_rate"] == pytest.approx(rows["label"].mean())
    band = pd.qcut(rows["p_true"], 5, labels=False)
    by_band = rows.groupby(band).agg(
        p=("p_true", "mean"), rate=("label", "mean"), n=("label", "size")
    )
    # snapshots of one account are correlated: allow three binomial errors of a fifth as many
    err = 3 * np.sqrt(by_band["p"] * (1 - by_band["p"]) / (by_band["n"] / 5)) + 0.01
    assert ((by_band["rate"] - by_band["p"]).abs() <= err).all(), by_band


def test_won_opportunities_start_subscriptions(generated):
    tables = generated[2]
    opps, subs = tables["opportunities"], tables["subscriptions"]
    won = opps[opps["stage"] == "closed_won"]
    assert len(won) > 20 and won["account_id"].is_unique
    first = subs.groupby("account_id")["started_at"].min().loc[won["account_id"]]
    lag = (first.to_numpy() - won["created_at"].to_numpy()) / pd.Timedelta(days=1)
    assert ((lag >= 7) & (lag <= 28)).all()


def test_customers_use_the_product(generated):
    _, _, tables = generated
    subs, events = tables["subscriptions"], tables["events"]
    usage = events[events["event_type"] == "product_active"]
    # most product events come from customer accounts (the rest are prospects' trials)
    assert usage["account_id"].isin(subs["account_id"]).mean() > 0.7
    churned = subs.groupby("account_id")["ended_at"].agg(lambda s: s.notna().all())
    assert 10 < churned.sum() < len(churned)


def test_offers_match_the_shipped_config():
    from core.config import load_config
    from core.offers import load_offers

    offers = load_offers(load_config())
    assert tuple(o.id for o in offers.offers) == expo.OFFER_IDS
    for offer in offers.offers:
        rule = expo.OFFERS[offer.id]
        assert offer.eligible.customers == rule["customers"], offer.id
        assert tuple(offer.eligible.stages) == rule["stages"], offer.id


def test_each_offer_helps_one_segment_and_hurts_another(generated):
    oracle = pd.read_parquet(generated[0] / "oracle" / "nbo_oracle.parquet")
    for offer in expo.OFFER_IDS:
        uplift = oracle[f"p_{offer}"] - oracle["p_control"]
        assert (uplift > 0.01).mean() > 0.02 and (uplift < -0.01).mean() > 0.02, offer


def test_realized_outcomes_follow_the_true_effects(tmp_path):
    """With a strong effect the randomized outcomes show it: in the segment an offer helps,
    its conversion rate beats control's; where it hurts, control's beats it."""
    sim = gen.simulate(4000, 3, offer_effect_scale=2.0)
    ex = sim.tables["offer_exposures"].reset_index(drop=True)
    truth = sim.nbo_oracle.reset_index(drop=True)
    converted = ex["converted_at"].notna()
    checked = 0
    for offer in expo.OFFER_IDS:
        uplift = truth[f"p_{offer}"] - truth["p_control"]
        for segment, sign in ((uplift > 0.05, 1), (uplift < -0.02, -1)):
            got, control = (
                segment & (ex["offer_id"] == offer),
                segment & (ex["offer_id"] == "control"),
            )
            if got.sum() < 150 or control.sum() < 150:
                continue
            diff = converted[got].mean() - converted[control].mean()
            assert sign * diff > 0, (offer, sign, diff, got.sum(), control.sum())
            checked += 1
    assert checked >= 5

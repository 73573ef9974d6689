import pandas as pd
import pytest

from core.timegrid import snapshot_grid
from training.labels import mql_labels, time_split

UTC = "UTC"


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=UTC)


def test_labels_window_existence_and_conversion():
    leads = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c"],
            "account_id": ["x", "x", "y"],
            "created_at": [ts("2026-01-01"), ts("2026-01-10"), ts("2026-01-01")],
        }
    )
    opps = pd.DataFrame({"lead_id": ["a"], "created_at": [ts("2026-01-20")]})
    ticks = snapshot_grid("2026-01-05", "2026-03-01")
    out = mql_labels(leads, opps, ticks, window_days=30, data_end="2026-03-01")
    got = {(r.lead_id, r.event_timestamp.strftime("%m-%d")): r.label for r in out.itertuples()}
    # a converts on 01-20: positive at 01-05 and 01-12 and 01-19, gone after conversion
    assert got[("a", "01-05")] == 1 and got[("a", "01-19")] == 1
    assert ("a", "01-26") not in got
    # b does not exist yet on 01-05
    assert ("b", "01-05") not in got and got[("b", "01-12")] == 0
    # snapshots whose 30-day window passes the data end are dropped
    assert out["event_timestamp"].max() + pd.Timedelta(days=30) <= ts("2026-03-01")
    assert list(out.columns) == ["lead_id", "account_id", "event_timestamp", "label"]


def test_labels_reject_too_short_data():
    leads = pd.DataFrame({"lead_id": ["a"], "account_id": ["x"], "created_at": [ts("2026-01-01")]})
    opps = pd.DataFrame(
        {
            "lead_id": pd.Series([], dtype=str),
            "created_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        }
    )
    with pytest.raises(ValueError, match="complete 30-day label window"):
        mql_labels(leads, opps, snapshot_grid("2026-01-05", "2026-01-20"), 30, "2026-01-20")


def test_time_split_orders_by_date():
    snaps = pd.Series(pd.date_range("2026-01-05", periods=10, freq="7D", tz=UTC).repeat(2))
    split = time_split(snaps, validation_weeks=2, test_weeks=3, warmup_weeks=1)
    by_week = split.groupby(snaps).first().tolist()
    assert by_week == ["warmup"] + ["train"] * 4 + ["validation"] * 2 + ["test"] * 3
    with pytest.raises(ValueError, match="too few"):
        time_split(snaps, validation_weeks=5, test_weeks=5, warmup_weeks=1)


def _subs(rows):
    from core.contract import validate

    return validate(
        "subscriptions",
        pd.DataFrame(
            rows, columns=["account_id", "started_at", "ended_at", "mrr", "seats", "plan"]
        ),
    )


def test_coverage_joins_plan_changes_and_splits_real_gaps():
    from training.labels import coverage_end

    subs = _subs([
        ("A", "2026-01-01", "2026-02-01", 10.0, 1, "team"),  # a seat change on 1 Feb
        ("A", "2026-02-01", "2026-03-15", 20.0, 2, "team"),
        ("B", "2026-01-01", "2026-01-20", 10.0, 1, "team"),  # churned, back a month later
        ("B", "2026-02-20", None, 10.0, 1, "team"),
    ])  # fmt: skip
    end = coverage_end(subs)
    assert end.iloc[0] == end.iloc[1] == pd.Timestamp("2026-03-15", tz="UTC")
    assert end.iloc[2] == pd.Timestamp("2026-01-20", tz="UTC")
    assert pd.isna(end.iloc[3])


def test_churn_labels_by_hand():
    from training.labels import churn_labels

    subs = _subs([
        ("A", "2026-01-01", "2026-02-01", 10.0, 1, "team"),
        ("A", "2026-02-01", "2026-03-15", 20.0, 2, "team"),  # churns 15 Mar
        ("B", "2026-01-20", None, 10.0, 1, "team"),  # stays
    ])  # fmt: skip
    ticks = pd.date_range("2026-01-05", periods=8, freq="7D", tz="UTC")
    out = churn_labels(subs, ticks, window_days=60, data_end="2026-04-30")
    got = {(r.account_id, r.event_timestamp.date().isoformat()): r.label for r in out.itertuples()}
    # A churns on 15 Mar: outside 60 days of 5 Jan (which end on 6 Mar), inside those of 19 Jan
    assert got[("A", "2026-01-05")] == 0 and got[("A", "2026-01-19")] == 1
    assert got[("A", "2026-02-23")] == 1  # 23 Feb: the plan change does not count as churn
    # B starts 20 Jan: not a customer at 19 Jan, never churns
    assert ("B", "2026-01-19") not in got and got[("B", "2026-01-26")] == 0
    # windows past 30 Apr are dropped: 5 Jan + 7 weeks = 23 Feb is the last with 60 days left
    assert max(out["event_timestamp"]) == pd.Timestamp("2026-02-23", tz="UTC")
    with pytest.raises(ValueError, match="60-day churn window"):
        churn_labels(subs, ticks, window_days=60, data_end="2026-02-01")
    with pytest.raises(ValueError, match="subscriptions table is empty"):
        churn_labels(subs.iloc[:0], ticks, window_days=60, data_end="2026-04-30")

import pandas as pd
import pytest

from funnel.timegrid import snapshot_grid
from training.labels import mql_labels, time_split

UTC = "UTC"


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=UTC)


def test_labels_window_existence_and_conversion():
    leads = pd.DataFrame({
        "lead_id": ["a", "b", "c"],
        "account_id": ["x", "x", "y"],
        "created_at": [ts("2026-01-01"), ts("2026-01-10"), ts("2026-01-01")],
    })
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
    opps = pd.DataFrame({"lead_id": pd.Series([], dtype=str), "created_at": pd.Series([], dtype="datetime64[ns, UTC]")})
    with pytest.raises(ValueError, match="complete 30-day label window"):
        mql_labels(leads, opps, snapshot_grid("2026-01-05", "2026-01-20"), 30, "2026-01-20")


def test_time_split_orders_by_date():
    snaps = pd.Series(pd.date_range("2026-01-05", periods=10, freq="7D", tz=UTC).repeat(2))
    split = time_split(snaps, validation_weeks=2, test_weeks=3, warmup_weeks=1)
    by_week = split.groupby(snaps).first().tolist()
    assert by_week == ["warmup"] + ["train"] * 4 + ["validation"] * 2 + ["test"] * 3
    with pytest.raises(ValueError, match="too few"):
        time_split(snaps, validation_weeks=5, test_weeks=5, warmup_weeks=1)

import pandas as pd
import pytest

from core.timegrid import floor_week, snapshot_grid


def test_grid_ends_with_the_data_end():
    grid = snapshot_grid("2026-01-05", "2026-01-20 12:00")
    assert list(grid.strftime("%Y-%m-%d %H:%M")) == [
        "2026-01-05 00:00",
        "2026-01-12 00:00",
        "2026-01-19 00:00",
        "2026-01-20 12:00",
    ]
    assert str(grid.tz) == "UTC"


def test_grid_does_not_repeat_an_end_on_a_tick():
    assert len(snapshot_grid("2026-01-05", "2026-01-19")) == 3


def test_grid_rejects_bad_ranges():
    with pytest.raises(ValueError, match="after start"):
        snapshot_grid("2026-01-05", "2026-01-01")
    with pytest.raises(ValueError, match="every_days"):
        snapshot_grid("2026-01-05", "2026-02-01", every_days=0)


def test_floor_week_is_monday_utc():
    assert floor_week(pd.Timestamp("2026-01-08 15:00", tz="UTC")) == pd.Timestamp(
        "2026-01-05", tz="UTC"
    )

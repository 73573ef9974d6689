"""Training on bad data fails early, naming what to fix: events loaded twice, clock-skewed
timestamps (contract checks, on import and on every load), a label with one class only and a
window without enough labelled weeks (training checks, before any feature is read)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from core.config import Config
from core.contract import ContractError, validate
from core.tables import read_tables, write_tables
from training.labels import TrainingDataError
from training.train import training_split

NOW = pd.Timestamp("2026-12-01", tz="UTC")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """One small generated funnel (20 weeks, long enough for the MQL split): its data dir and
    tables."""
    from synthetic.generate import generate

    data = tmp_path_factory.mktemp("bad_data") / "data"
    generate(n_leads=400, seed=7, start="2026-01-05", weeks=20, out_dir=data, progress=False)
    return data, read_tables(data / "raw")


def with_tables(config_at, base: Path, generated, *overrides: str, **changed) -> Config:
    """A config under ``base`` whose raw dir holds the generated tables with ``changed`` ones."""
    data, tables = generated
    cfg = config_at(base, *overrides)
    write_tables({**tables, **changed}, cfg.raw_dir)
    shutil.copy(data / "raw" / "manifest.json", cfg.raw_dir / "manifest.json")
    return cfg


# -- duplicated events ---------------------------------------------------------------------------


def test_events_loaded_twice_name_the_key_and_the_fix(generated):
    events = generated[1]["events"]
    twice = pd.concat([events, events], ignore_index=True)
    with pytest.raises(ContractError) as exc:
        validate("events", twice, now=NOW)
    message = str(exc.value)
    assert message.startswith("table 'events', column 'event_id': duplicate key values")
    assert "each row a copy of an earlier one" in message and "keep one row per event_id" in message
    assert f"{len(events)} row(s)" in message and len(exc.value.problems) == 1


def test_events_repeated_under_new_ids_are_refused(generated):
    events = generated[1]["events"]
    again = events.assign(event_id="X" + events["event_id"])
    with pytest.raises(ContractError) as exc:
        validate("events", pd.concat([events, again], ignore_index=True), now=NOW)
    message = str(exc.value)
    columns = "lead_id, event_type, timestamp, properties"
    assert message.startswith(f"table 'events', column '{columns}': 50.0% of the rows repeat")
    assert f"keep one row per {columns}" in message and f"{len(events)} row(s)" in message
    first = events.iloc[0]
    assert f"row {len(events)}: '{first['lead_id']} {first['event_type']}" in message


def test_coincident_events_and_dates_are_not_duplicates(generated):
    events = generated[1]["events"]
    # two real events can share their second: a few such rows pass
    few = events.iloc[:3].assign(event_id=["X1", "X2", "X3"])
    validate("events", pd.concat([events, few], ignore_index=True), now=NOW)
    # day-resolution timestamps: a lead's two page views of one day are two events
    daily = events.assign(timestamp=events["timestamp"].dt.normalize())
    assert daily.duplicated(["lead_id", "event_type", "timestamp", "properties"]).mean() > 0.01
    validate("events", daily, now=NOW)


# -- clock-skewed timestamps ---------------------------------------------------------------------


def test_timestamps_after_now_say_to_fix_the_clock_or_time_zone(generated):
    events = generated[1]["events"].copy()
    events.loc[:9, "timestamp"] = NOW + pd.Timedelta(hours=5)
    with pytest.raises(ContractError) as exc:
        validate("events", events, now=NOW)
    message = str(exc.value)
    assert message.startswith("table 'events', column 'timestamp': timestamps in the future")
    assert "clock or time zone" in message and "convert them to UTC" in message
    assert "10 row(s)" in message


# -- a label with one class only -----------------------------------------------------------------


def test_no_conversion_at_all_is_one_class(generated, config_at, tmp_path):
    opportunities = generated[1]["opportunities"].iloc[:0]
    cfg = with_tables(config_at, tmp_path, generated, opportunities=opportunities)
    with pytest.raises(TrainingDataError) as exc:
        training_split(cfg, "mql")
    message = str(exc.value)
    assert re.match(
        r"training mql: the label has one class only: 0 positives in [\d,]+ rows "
        r"\(snapshots 2026-01-05 to 2026-04-20\)",
        message,
    ), message
    assert "first opportunity is created within 30 days" in message
    assert "check that the opportunities table" in message


def test_no_churn_at_all_is_one_class(generated, config_at, tmp_path):
    subscriptions = generated[1]["subscriptions"].assign(ended_at=pd.NaT)
    split = ("training.churn.split.validation_weeks=2", "training.churn.split.test_weeks=2")
    cfg = with_tables(config_at, tmp_path, generated, *split, subscriptions=subscriptions)
    with pytest.raises(TrainingDataError) as exc:
        training_split(cfg, "churn")
    message = str(exc.value)
    assert message.startswith("training churn: the label has one class only: 0 positives in")
    assert "subscriptions.ended_at is set for the accounts that left" in message


def test_no_conversion_in_the_test_weeks_names_the_split(generated, config_at, tmp_path):
    opportunities = generated[1]["opportunities"]
    early = opportunities[opportunities["created_at"] < pd.Timestamp("2026-03-23", tz="UTC")]
    cfg = with_tables(config_at, tmp_path, generated, opportunities=early)
    with pytest.raises(TrainingDataError) as exc:
        training_split(cfg, "mql")
    message = str(exc.value)
    assert message.startswith("training mql: the test rows have one class only: 0 positives")
    assert "(snapshots 2026-03-23 to 2026-04-20)" in message
    assert "widen training.mql.split.test_weeks" in message


# -- an empty window -----------------------------------------------------------------------------


def test_a_label_window_longer_than_the_data(generated, config_at, tmp_path):
    cfg = with_tables(config_at, tmp_path, generated, "training.mql.label_window_days=200")
    with pytest.raises(TrainingDataError) as exc:
        training_split(cfg, "mql")
    assert str(exc.value).startswith(
        "training mql: no snapshot has a complete 200-day label window before the data ends "
        "(snapshots from 2026-01-05, data end 2026-05-25)"
    )
    assert "generate or import a longer period, or shorten the label window" in str(exc.value)


def test_too_few_labelled_weeks_name_the_kinds_split(generated, config_at, tmp_path):
    cfg = with_tables(config_at, tmp_path, generated)
    with pytest.raises(TrainingDataError) as exc:
        training_split(cfg, "churn")  # 60-day windows leave 12 labelled weeks of 20; 15 needed
    assert str(exc.value).startswith(
        "training churn: 12 snapshot weeks (2026-01-05 to 2026-03-23) is too few for 0 warm-up"
    )
    assert "shorten the split in training.churn.split" in str(exc.value)


# -- through the command line --------------------------------------------------------------------


def test_the_cli_prints_one_line_and_exits_1(tmp_path):
    paths = [f"paths.data_dir={tmp_path / 'data'}", f"paths.mlruns_dir={tmp_path / 'mlruns'}"]

    def funnel(*args: str):
        return CliRunner().invoke(main, [*(f"--set={p}" for p in paths), *args])

    assert funnel("data", "generate", "--leads", "400", "--weeks", "10").exit_code == 0
    result = funnel("train", "mql", "--trials", "1")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    assert "Error: training mql: 6 snapshot weeks (2026-01-05 to 2026-02-09) is too few" in (
        result.output
    )
    assert not (tmp_path / "mlruns").exists()  # failed before any tracking store was made

    # a file loaded twice that bypassed the import is caught on load
    raw = tmp_path / "data" / "raw" / "events.parquet"
    events = pd.read_parquet(raw)
    pd.concat([events, events], ignore_index=True).to_parquet(raw, index=False)
    result = funnel("features", "apply")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Error: table 'events', column 'event_id': duplicate key values" in result.output

"""The experiment readouts: the Hillstrom experiment against its published rates, the flat
table's errors through the CLI, the promotion holdout on hand-built decisions (pending, then
read), campaign waves against their holdout, and the files written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from core.errors import InputError
from reports.experiments import (
    campaign_comparisons,
    promotion_comparisons,
    read_flat_table,
    table_comparisons,
)

ROOT = Path(__file__).resolve().parents[2]
HILLSTROM = ROOT.parent / "shared" / "datasets" / "hillstrom" / "hillstrom.csv"
DAY = 86_400.0
REQUIRED = ("name", "step", "metric", "lift_rel", "lift_rel_low", "lift_rel_high")


@pytest.fixture(scope="module")
def hillstrom() -> pd.DataFrame:
    if not HILLSTROM.is_file():
        pytest.skip(f"{HILLSTROM} not here")
    return read_flat_table(HILLSTROM)


def test_hillstrom_reads_out_visit_rates_and_lifts_against_no_email(hillstrom) -> None:
    out = table_comparisons(hillstrom, "segment", "No E-Mail", ["visit", "conversion", "spend"])
    by = {(c["treatment"], c["metric"]): c for c in out}
    assert len(out) == 6 and all(c["status"] == "ok" for c in out)
    assert round(100 * by["Mens E-Mail", "visit"]["mean_control"], 2) == 10.62
    assert round(100 * by["Mens E-Mail", "visit"]["mean_treatment"], 2) == 18.28
    assert round(100 * by["Womens E-Mail", "visit"]["mean_treatment"], 2) == 15.14
    mens = by["Mens E-Mail", "visit"]
    assert mens["lift_abs"] == pytest.approx(0.1828 - 0.1062, abs=2e-4)
    assert mens["lift_rel_low"] < mens["lift_rel"] < mens["lift_rel_high"]
    assert mens["lift_rel_low"] > 0.5 and mens["p_value"] < 1e-50
    assert by["Mens E-Mail", "spend"]["metric_type"] == "revenue"
    assert not any(c["srm"]["alert"] for c in out)  # a fair three-way split
    assert all(set(REQUIRED) <= set(c) for c in out)


def test_cuped_on_hillstrom_history_keeps_the_lift(hillstrom) -> None:
    plain, adjusted = (
        table_comparisons(hillstrom, "segment", "No E-Mail", ["spend"], covariate=cov)[0]
        for cov in (None, "history")
    )
    assert adjusted["cuped"]["covariate"] == "history" and plain["cuped"] is None
    assert adjusted["cuped"]["variance_reduction"] >= 0
    assert adjusted["lift_abs"] == pytest.approx(plain["lift_abs"], rel=0.1)


def test_table_errors_name_what_is_wrong() -> None:
    frame = pd.DataFrame({"arm": ["a", "b", "a", "b"], "y": ["1", "0", "x", "1"], "z": 1.0})
    with pytest.raises(InputError, match=r"no column\(s\) \['visit'\]"):
        table_comparisons(frame, "arm", "a", ["visit"])
    with pytest.raises(InputError, match="control arm 'ctl' not in column 'arm'"):
        table_comparisons(frame, "arm", "ctl", ["z"])
    with pytest.raises(InputError, match="'y' must be numeric; it holds \\['x'\\]"):
        table_comparisons(frame, "arm", "a", ["y"])
    with pytest.raises(InputError, match="shares name arm"):
        table_comparisons(frame, "arm", "a", ["z"], shares={"c": 1.0})


def cli(tmp_path: Path, *args: str):
    return CliRunner().invoke(
        main,
        ["--set", f"paths.data_dir={tmp_path / 'data'}", "report", "experiments", *args],
    )


def test_cli_reads_a_table_and_reports_bad_input(tmp_path) -> None:
    table = tmp_path / "ab.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "group": np.repeat(["ctl", "new"], 200),
            "clicked": rng.random(400) < np.repeat([0.1, 0.2], 200),
            "note": "x",
        }
    ).to_csv(table, index=False)
    ok = cli(
        tmp_path,
        "--table",
        str(table),
        "--arm",
        "group",
        "--control",
        "ctl",
        "--outcome",
        "clicked",
    )
    assert ok.exit_code == 0, ok.output
    assert "new vs ctl [clicked]" in ok.output
    written = json.loads((tmp_path / "data" / "reports" / "experiments-ab.json").read_text())
    assert written["comparisons"][0]["treatment"] == "new"
    assert (tmp_path / "data" / "reports" / "experiments-ab.html").is_file()

    bad = cli(
        tmp_path,
        "--table",
        str(table),
        "--arm",
        "group",
        "--control",
        "old",
        "--outcome",
        "clicked",
    )
    assert bad.exit_code == 1 and "control arm 'old' not in column 'group'" in bad.output
    bad = cli(
        tmp_path, "--table", str(table), "--arm", "grp", "--control", "ctl", "--outcome", "clicked"
    )
    assert bad.exit_code == 1 and "no column(s) ['grp']" in bad.output
    bad = cli(
        tmp_path, "--table", str(table), "--arm", "group", "--control", "ctl", "--outcome", "note"
    )
    assert bad.exit_code == 1 and "'note' must be numeric" in bad.output
    bad = cli(tmp_path, "--table", str(table), "--arm", "group")
    assert bad.exit_code == 2 and "--control" in bad.output and "--outcome" in bad.output
    bad = cli(tmp_path, "--arm", "group")
    assert bad.exit_code == 2 and "need --table" in bad.output
    missing = cli(
        tmp_path,
        "--table",
        str(tmp_path / "nope.csv"),
        "--arm",
        "g",
        "--control",
        "c",
        "--outcome",
        "y",
    )
    assert missing.exit_code == 1 and "experiment table not found" in missing.output


# ------------------------------------------------------------------------------ promotion
def decisions(n: int, held_share: float, at: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "number": 1,
            "decided_at": at,
            "probability": 0.7,
            "held_out": rng.random(n) < held_share,
        }
    )


def test_promotion_outcomes_pending_until_the_window_ends_then_read() -> None:
    at = pd.Timestamp("2026-03-02", tz="UTC").timestamp()
    log = decisions(2000, 0.5, at)
    rng = np.random.default_rng(1)
    won = rng.random(len(log)) < np.where(log["held_out"], 0.10, 0.20)
    opportunities = pd.DataFrame(
        {
            "lead_id": log.loc[won, "lead_id"],
            "account_id": "A",
            "created_at": pd.to_datetime(at + 5 * DAY, unit="s", utc=True),
            "amount": 1000.0,
            "stage": "open",
        }
    )
    early = promotion_comparisons(
        log, opportunities, window_days=30, as_of=at + 10 * DAY, holdout=0.5
    )
    assert {c["status"] for c in early} == {"pending"}
    assert early[0]["note"] == "outcomes pending until 2026-04-01"
    assert early[0]["lift_rel"] is None  # never a zero lift

    read = promotion_comparisons(
        log, opportunities, window_days=30, as_of=at + 31 * DAY, holdout=0.5
    )
    rate, amount = read
    assert rate["metric"] == "opportunity_30d" and amount["metric"] == "pipeline_amount_30d"
    assert rate["step"] == "decision" and rate["status"] == "ok"
    assert rate["mean_treatment"] == pytest.approx(won[~log["held_out"]].mean())
    assert rate["lift_rel_low"] < 1.0 < rate["lift_rel_high"]  # truth: 0.20 / 0.10 - 1
    assert amount["mean_control"] == pytest.approx(1000 * won[log["held_out"]].mean())
    assert not rate["srm"]["alert"]
    assert promotion_comparisons(
        log, opportunities, window_days=30, as_of=at + 31 * DAY, holdout=0.1
    )[0]["srm"]["alert"]


def test_promotion_without_holdout_says_how_to_measure_it() -> None:
    log = decisions(50, 0.0, 0.0)
    (only,) = promotion_comparisons(log, pd.DataFrame(), window_days=30, as_of=1e12, holdout=0.0)
    assert only["status"] == "no_holdout" and "jobs.promotion.holdout" in only["note"]


# ------------------------------------------------------------------------------ campaigns
def test_a_campaign_wave_against_its_holdout() -> None:
    rng = np.random.default_rng(2)
    n, at = 4000, 1_000_000.0
    held = rng.random(n) < 0.2
    arms = np.where(held, "control", "case_study")
    assignments = pd.DataFrame(
        {
            "campaign": "c1",
            "wave": "w1",
            "subject_id": [f"L{i}" for i in range(n)],
            "offer_id": arms,
            "propensity": 0.5,
            "holdout": held,
            "assigned_at": at,
        }
    )
    converted = rng.random(n) < np.where(held, 0.05, 0.08)
    exposures = pd.DataFrame(
        {
            "subject_id": assignments["subject_id"],
            "offer_id": arms,
            "exposed_at": pd.to_datetime(at, unit="s", utc=True),
            "propensity": 0.5,
            "converted_at": pd.to_datetime(
                np.where(converted, at + DAY, np.nan), unit="s", utc=True
            ),
        }
    )
    pending = campaign_comparisons(
        assignments, exposures, window_days=14, as_of=at + DAY, holdouts={"c1": 0.2}
    )
    assert pending[0]["status"] == "pending"
    (read,) = campaign_comparisons(
        assignments,
        exposures,
        window_days=14,
        as_of=at + 15 * DAY,
        holdouts={"c1": 0.2},
        steps={"c1": "consideration"},
    )
    assert read["name"] == "campaign c1 wave w1: campaign vs holdout"
    assert read["step"] == "consideration" and read["status"] == "ok"
    assert read["mean_control"] == pytest.approx(converted[held].mean())
    assert read["srm"]["expected_share"] == pytest.approx(0.8) and not read["srm"]["alert"]

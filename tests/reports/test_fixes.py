"""Fix priorities: the value of a point per step on funnels worked out by hand, the ranking,
measured lifts replacing guesses, the fixes file's errors, and the report around them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.config import ConfigError
from core.errors import InputError
from reports.fixes import (
    RANKED_COLUMNS,
    STEPS,
    Fix,
    LiftRange,
    Measured,
    account_values,
    lead_outcomes,
    measured_lifts,
    point_values,
    rank_fixes,
    read_fixes,
    read_measured_lifts,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = pd.Timestamp("2025-03-03", tz="UTC")
WEEK = pd.Timedelta(days=7)
CODES = {"A": "awareness", "C": "consideration", "D": "decision", "R": "retention"}


def history_of(leads: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """{lead: (account, stage per weekly snapshot, "-" = not created yet)} -> stage history."""
    rows = [
        {"lead_id": lead, "account_id": account, "source": "organic", "cohort": "2025-03",
         "snapshot": T0 + week * WEEK, "stage": CODES[code]}
        for lead, (account, stages) in leads.items()
        for week, code in enumerate(stages.split())
        if code != "-"
    ]  # fmt: skip
    return pd.DataFrame(rows)


# Ten leads created after the first snapshot (their whole path is seen) and one customer's lead
# there from the start (the installed base: no step of it is observed).
# awareness: 10 at risk, 6 move on; consideration: 6, 3 move on; decision: 3, 2 retained.
FUNNEL = {
    "OLD": ("old", "R R R R"),
    **{f"A{i}": (f"a{i}", "- A A A") for i in range(4)},  # stay aware
    **{f"C{i}": (f"c{i}", "- A C C") for i in range(3)},  # stop at consideration
    "D0": ("d0", "- C D D"),  # stops at decision
    "R1": ("r1", "- A D R"),  # skips consideration (it counts as passed)
    "R2": ("r2", "- C D R"),
}
VALUES = {"r1": 1200.0, "r2": 600.0, "old": 99_999.0}


def test_value_of_a_point_on_a_funnel_worked_out_by_hand() -> None:
    outcomes = lead_outcomes(history_of(FUNNEL), VALUES).set_index("lead_id")
    assert outcomes.loc["OLD", "entry_rank"] == 3  # already a customer: no step observed
    assert outcomes.loc["R1", "entry_rank"] == 0 and outcomes.loc["R1", "max_rank"] == 3
    assert outcomes["value"].to_dict() == {**dict.fromkeys(outcomes.index, 0.0),
                                           "R1": 1200.0, "R2": 600.0}  # fmt: skip

    table = point_values(outcomes.reset_index(), years=1.0, n_boot=200).table.set_index("step")
    assert table.index.tolist() == list(STEPS)
    assert table["leads"].tolist() == [10, 6, 3]
    assert table["passed"].tolist() == [6, 3, 2]
    assert table["retained"].tolist() == [2, 2, 2]
    np.testing.assert_allclose(table["conversion_rate"], [0.6, 0.5, 2 / 3])
    np.testing.assert_allclose(table["downstream_rate"], [2 / 6, 2 / 3, 1.0])
    np.testing.assert_allclose(table["value_per_customer"], 900.0)
    np.testing.assert_allclose(table["revenue_per_year"], 1800.0)
    # one more point at awareness: 10 leads x 0.01 x 1/3 reach retention x 900 = 30
    np.testing.assert_allclose(table["value_of_point"], [30.0, 36.0, 27.0])
    # two years of data: half as much per year
    twice = point_values(outcomes.reset_index(), years=2.0, n_boot=50).table
    np.testing.assert_allclose(twice["value_of_point"], [15.0, 18.0, 13.5])
    # every interval holds its estimate
    for name in ("conversion_rate", "revenue_per_year", "value_of_point"):
        assert (table[f"{name}_low"] <= table[name]).all()
        assert (table[name] <= table[f"{name}_high"]).all()


def test_an_accounts_value_is_split_over_its_leads_that_got_there() -> None:
    history = history_of({"X": ("first", "A A A"), "P": ("acct", "- A R"),
                          "Q": ("acct", "- C R"), "S": ("solo", "- A R")})  # fmt: skip
    outcomes = lead_outcomes(history, {"acct": 1000.0}).set_index("lead_id")
    assert outcomes.loc[["P", "Q"], "value"].tolist() == [500.0, 500.0]
    # an account without a known value gets the median of those known
    assert outcomes.loc["S", "value"] == 1000.0
    assert outcomes.loc["X", "value"] == 0.0


def test_the_interval_widens_with_fewer_leads() -> None:
    def outcomes(n: int) -> pd.DataFrame:
        # a funnel with the same rates at any size: of every 10 leads 6, 3 and 2 get on
        top = np.tile([0, 0, 0, 0, 1, 1, 1, 2, 3, 3], n // 10)
        return pd.DataFrame({"lead_id": np.arange(len(top)), "account_id": np.arange(len(top)),
                             "entry_rank": 0, "max_rank": top,
                             "value": np.where(top == 3, 900.0, 0.0)})  # fmt: skip

    small = point_values(outcomes(200), years=1.0, n_boot=400).table
    large = point_values(outcomes(5000), years=1.0, n_boot=400).table
    # the same estimates per lead, the large funnel's per-year numbers 25x
    np.testing.assert_allclose(small["conversion_rate"], large["conversion_rate"])
    np.testing.assert_allclose(small["value_of_point"] * 25, large["value_of_point"])

    def relative_width(t: pd.DataFrame, name: str) -> np.ndarray:
        return ((t[f"{name}_high"] - t[f"{name}_low"]) / t[name]).to_numpy()

    for name in ("conversion_rate", "revenue_per_year", "value_of_point"):
        assert (relative_width(small, name) > 3 * relative_width(large, name)).all(), name


def test_the_bootstrap_resamples_accounts_not_leads() -> None:
    # 40 accounts of 5 leads that move together: as uncertain as 40 leads, not 200
    top = np.repeat(np.tile([0, 1, 2, 3], 10), 5)
    frame = pd.DataFrame({"lead_id": np.arange(200), "account_id": np.repeat(np.arange(40), 5),
                          "entry_rank": 0, "max_rank": top,
                          "value": np.where(top == 3, 100.0, 0.0)})  # fmt: skip
    by_account = point_values(frame, years=1.0, n_boot=400).table
    by_lead = point_values(frame, years=1.0, n_boot=400, cluster="lead_id").table
    width = by_account["conversion_rate_high"] - by_account["conversion_rate_low"]
    assert (width > 1.5 * (by_lead["conversion_rate_high"] - by_lead["conversion_rate_low"])).all()


def fix(name: str, step: str, low: float, high: float, cost: float, weeks: float, **kw) -> Fix:
    return Fix(name=name, step=step, lift=LiftRange(low=low, high=high), cost=cost, weeks=weeks,
               **kw)  # fmt: skip


def test_fixes_rank_by_revenue_per_cost_and_per_week() -> None:
    values = point_values(lead_outcomes(history_of(FUNNEL), VALUES), years=1.0, n_boot=300)
    fixes = [
        # revenue 1800 a year flows through every step: revenue = 1800 x lift
        fix("cheap_small", STEPS[0], 0.04, 0.06, cost=30, weeks=6),  # 90/yr, 3.0 per cost
        fix("big_costly", STEPS[1], 0.18, 0.22, cost=360, weeks=1),  # 360/yr, 1.0 per cost
        fix("middling", STEPS[2], 0.09, 0.11, cost=90, weeks=3),  # 180/yr, 2.0 per cost
    ]
    ranked = rank_fixes(values, fixes)
    assert list(ranked.columns) == list(RANKED_COLUMNS)
    assert ranked["name"].tolist() == ["cheap_small", "middling", "big_costly"]
    assert ranked["rank"].tolist() == [1, 2, 3]
    got = ranked.set_index("name")
    np.testing.assert_allclose(got.loc[["cheap_small", "middling", "big_costly"], "revenue"],
                               [90.0, 180.0, 360.0])  # fmt: skip
    np.testing.assert_allclose(got["per_cost"], got["revenue"] / got["cost"])
    assert (got["lift_source"] == "guess").all()
    assert (got["revenue_low"] < got["revenue"]).all() and (
        got["revenue"] < got["revenue_high"]
    ).all()
    per_week = rank_fixes(values, fixes, rank_by="per_week")
    assert per_week["name"].tolist() == ["big_costly", "middling", "cheap_small"]  # 360, 60, 15
    with pytest.raises(ValueError, match="rank_by must be"):
        rank_fixes(values, fixes, rank_by="per_lead")  # type: ignore[arg-type]


def test_a_measured_lift_replaces_the_guess() -> None:
    values = point_values(lead_outcomes(history_of(FUNNEL), VALUES), years=1.0, n_boot=300)
    fixes = [
        fix("hoped", STEPS[0], 0.10, 0.30, cost=100, weeks=2, experiment="offers: a vs control"),
        fix("steady", STEPS[0], 0.05, 0.05, cost=100, weeks=2, experiment="not read yet"),
    ]
    guessed = rank_fixes(values, fixes)
    assert guessed["name"].tolist() == ["hoped", "steady"]  # 0.20 x 1800 against 0.05 x 1800
    measured = {"offers: a vs control": Measured(0.01, -0.03, 0.05, "experiments.json: a")}
    ranked = rank_fixes(values, fixes, measured).set_index("name")
    assert ranked.index.tolist() == ["steady", "hoped"]  # the measurement was disappointing
    hoped = ranked.loc["hoped"]
    assert hoped["lift_source"] == "measured" and hoped["measured_by"] == "experiments.json: a"
    assert (hoped["lift"], hoped["lift_low"], hoped["lift_high"]) == (0.01, -0.03, 0.05)
    np.testing.assert_allclose(hoped["revenue"], 18.0)
    assert hoped["revenue_low"] < 0 < hoped["revenue_high"]  # the interval spans no effect
    assert ranked.loc["steady", "lift_source"] == "guess"
    assert ranked.loc["steady", "experiment"] == "not read yet"


def test_a_lift_is_capped_where_the_rate_would_pass_one() -> None:
    values = point_values(lead_outcomes(history_of(FUNNEL), VALUES), years=1.0, n_boot=100)
    # decision converts 2 of 3: at most +50% before every lead moves on
    ranked = rank_fixes(values, [fix("too_good", STEPS[2], 0.8, 1.0, cost=1, weeks=1)])
    np.testing.assert_allclose(ranked["revenue"], 1800.0 * 0.5)


# ----------------------------------------------------------------------- measured lifts
def test_measured_lifts_from_a_readouts_document(tmp_path: Path) -> None:
    document = {
        "generated_at": "2026-01-01",
        "comparisons": [
            {"name": "offers: a vs control", "metric": "converted", "lift_rel": 0.2,
             "lift_rel_low": 0.1, "lift_rel_high": 0.3,
             "sequential": {"lift_rel_low": 0.0, "lift_rel_high": 0.5}},
            {"name": "offers: a vs control", "metric": "revenue", "lift_rel": 0.4,
             "lift_rel_low": -0.1, "lift_rel_high": 0.9},
            {"name": "offers: b vs control", "metric": "converted", "lift_rel": None,
             "lift_rel_low": None, "lift_rel_high": None},  # still pending
        ],
    }  # fmt: skip
    found = measured_lifts(document, "experiments.json")
    assert set(found) == {"offers: a vs control", "offers: a vs control:converted",
                          "offers: a vs control:revenue"}  # fmt: skip
    first = found["offers: a vs control"]  # a bare name is its first metric
    assert (first.lift_rel, first.low, first.high) == (0.2, 0.1, 0.3)
    assert found["offers: a vs control:revenue"].lift_rel == 0.4
    assert "experiments.json" in first.source and "converted" in first.source

    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(document))
    assert read_measured_lifts(path) == found
    assert read_measured_lifts(tmp_path / "missing.json") == {}
    assert read_measured_lifts(None) == {}
    path.write_text("{not json")
    with pytest.raises(InputError, match="experiments.json"):
        read_measured_lifts(path)


# ------------------------------------------------------------------------- the fixes file
GOOD = {
    "currency": "EUR",
    "value": {"basis": "mrr", "months": 24},
    "fixes": [
        {"name": "calculator", "step": "awareness -> consideration",
         "lift": {"low": 0.02, "high": 0.05}, "cost": 5000, "weeks": 2},
        {"name": "trial", "step": "consideration→decision", "lift": {"low": 0.1, "high": 0.2},
         "cost": 50000, "weeks": 10, "experiment": "offers: trial vs control"},
    ],
}  # fmt: skip


def write_fixes(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "fixes.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    return path


def test_the_fixes_file_loads(tmp_path: Path) -> None:
    fixes = read_fixes(write_fixes(tmp_path, GOOD))
    assert fixes.currency == "EUR" and fixes.value.months == 24
    assert [f.step for f in fixes.fixes] == [STEPS[0], STEPS[1]]  # the arrow is normalized
    assert fixes.fixes[1].experiment == "offers: trial vs control"


def test_the_shipped_fixes_file_is_valid_and_covers_every_step(config_at, tmp_path) -> None:
    cfg = config_at(tmp_path)
    assert cfg.reports.fixes_file == ROOT / "configs" / "fixes.yaml"
    fixes = read_fixes(cfg.reports.fixes_file)
    assert {f.step for f in fixes.fixes} == set(STEPS)
    assert all(f.description for f in fixes.fixes)


def bad(tmp_path: Path, change) -> str:
    tree = json.loads(json.dumps(GOOD))
    change(tree)
    with pytest.raises(ConfigError) as err:
        read_fixes(write_fixes(tmp_path, tree))
    message = str(err.value)
    assert str(tmp_path / "fixes.yaml") in message
    return message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t["fixes"][1].update(cots=3), r"fixes\.trial\.cots: unknown key"),
        (lambda t: t["fixes"][1].pop("cost"), r"fixes\.trial\.cost: Field required"),
        (lambda t: t["fixes"][0].update(step="awareness -> decision"),
         r"fixes\.calculator\.step: .*unknown step 'awareness -> decision'.*consideration"),
        (lambda t: t["fixes"][0]["lift"].update(low=0.3),
         r"fixes\.calculator\.lift: .*low \(0\.3\) must not be above high \(0\.05\)"),
        (lambda t: t["fixes"][1].update(weeks=0), r"fixes\.trial\.weeks: .*greater than 0"),
        (lambda t: t["fixes"][0]["lift"].update(high="a lot"), r"fixes\.calculator\.lift\.high"),
        (lambda t: t["fixes"][1].update(name="Trial Run"), r"fixes\.Trial Run\.name"),
        (lambda t: t["fixes"][1].pop("name"), r"fixes\.\[1\] \(no name\)\.name: Field required"),
        (lambda t: t["fixes"].append(dict(t["fixes"][0])), r"repeated: \['calculator'\]"),
        (lambda t: t["value"].update(basis="arr"), r"value\.basis"),
        (lambda t: t.update(fixes=[]), r"fixes: List should have at least 1 item"),
    ],
)  # fmt: skip
def test_a_bad_fixes_file_names_the_fix_and_key(tmp_path: Path, change, expected) -> None:
    assert re.search(expected, bad(tmp_path, change)), bad(tmp_path, change)


def test_a_missing_or_shapeless_fixes_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fixes file not found: .*reports\.fixes_file"):
        read_fixes(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="with a 'fixes' list"):
        read_fixes(tmp_path / "list.yaml")


# --------------------------------------------------------------------- value of a customer
def test_account_values_from_mrr_or_opportunities() -> None:
    subs = pd.DataFrame({
        "account_id": ["a", "a", "b"],
        "started_at": pd.to_datetime(["2025-02-01", "2025-01-01", "2025-03-01"], utc=True),
        "mrr": [300.0, 100.0, 50.0],
    })  # fmt: skip
    opps = pd.DataFrame({"account_id": ["a", "a", "b", "c"],
                         "amount": [1000.0, 3000.0, 500.0, 800.0],
                         "stage": ["closed_won", "qualified", "created", "closed_won"]})  # fmt: skip
    by_mrr = account_values(subs, opps, basis="mrr", months=12)
    assert by_mrr.to_dict() == {"a": 1200.0, "b": 600.0}  # the first subscription's MRR
    by_amount = account_values(subs, opps, basis="opportunity_amount")
    assert by_amount.to_dict() == {"a": 1000.0, "b": 500.0, "c": 800.0}  # won ones first
    with pytest.raises(ValueError, match="basis must be"):
        account_values(subs, opps, basis="arr")  # type: ignore[arg-type]

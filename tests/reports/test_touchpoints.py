"""Touchpoints and drop-off points: the odds ratio against hand-computed 2x2 tables, the units
and their windows on a hand-built history, a planted driver found, a planted stalled segment
found, and the funnel report's sections and JSON on a small generated funnel."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from core.config import StagesConfig
from core.tables import data_window, read_tables
from features.build import build_feature_tables
from reports.fixes import STEPS, measured_lifts
from reports.funnel_report import funnel_json_path, write_funnel_report
from reports.touchpoints import (
    ODDS_COLUMNS,
    causal_readouts,
    event_exposures,
    lead_segments,
    lead_stalls,
    odds_ratio,
    offer_exposures_in_window,
    stage_defining_events,
    stall_summary,
    stalled_segments,
    step_units,
    touchpoint_odds,
)
from synthetic.generate import generate

T0 = pd.Timestamp("2025-03-03", tz="UTC")
WEEK = pd.Timedelta(days=7)
DAY = pd.Timedelta(days=1)
CODES = {"A": "awareness", "C": "consideration", "D": "decision", "R": "retention"}
Z95 = 1.959963984540054


def history_of(leads: dict[str, str], account: str = "acct") -> pd.DataFrame:
    """{lead: stage per weekly snapshot, "-" = not created yet} -> stage history."""
    rows = [
        {"lead_id": lead, "account_id": f"{account}-{lead}", "source": "organic",
         "cohort": "2025-03", "snapshot": T0 + week * WEEK, "stage": CODES[code]}
        for lead, stages in leads.items()
        for week, code in enumerate(stages.split())
        if code != "-"
    ]  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- the 2x2 table
def test_odds_ratio_and_woolf_interval_by_hand() -> None:
    # exposed: 20 moved on, 10 did not; not exposed: 15 moved on, 30 did not
    ratio, low, high = odds_ratio(20, 10, 15, 30)
    assert ratio == pytest.approx((20 * 30) / (10 * 15)) == pytest.approx(4.0)
    se = math.sqrt(1 / 20 + 1 / 10 + 1 / 15 + 1 / 30)  # = 0.5
    assert low == pytest.approx(math.exp(math.log(4) - Z95 * se))
    assert high == pytest.approx(math.exp(math.log(4) + Z95 * se))
    narrower = odds_ratio(20, 10, 15, 30, level=0.9)
    assert low < narrower[1] < 4 < narrower[2] < high


def test_an_empty_cell_gets_haldanes_half() -> None:
    ratio, low, high = odds_ratio(0, 10, 15, 30)
    a, b, c, d = 0.5, 10.5, 15.5, 30.5
    assert ratio == pytest.approx(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert low == pytest.approx(math.exp(math.log(a * d / (b * c)) - Z95 * se))
    assert np.isfinite([ratio, low, high]).all()
    # arrays: each table corrected on its own
    ratios, _, _ = odds_ratio([20, 0], [10, 10], [15, 15], [30, 30])
    assert ratios == pytest.approx([4.0, a * d / (b * c)])
    with pytest.raises(ValueError, match="non-negative"):
        odds_ratio(-1, 10, 15, 30)
    with pytest.raises(ValueError, match="level"):
        odds_ratio(1, 1, 1, 1, level=1.5)


# ---------------------------------------------------------------------------- the units
UNITS_FUNNEL = {
    "OLD": "A C C C C C",  # there at the first snapshot in awareness, moves on in a week
    "N": "- A A A C C",  # created later: moves on after 3 weeks, beyond a 2-week horizon
    "S": "- - D D D D",  # created later and first seen in decision: skipped two steps
    "MID": "C C D D D D",  # already considering at the first snapshot: no awareness step
    "CUST": "R R R R R R",  # a customer from the start: no step observed
    "LATE": "- - - - A A",  # entered too late for its horizon to end inside the data
}


def test_step_units_and_their_windows() -> None:
    units = step_units(history_of(UNITS_FUNNEL), horizon_days=14)
    got = {(r.lead_id, r.step): (r.entered, r.moved) for r in units.itertuples(index=False)}
    aware, consider, decide = STEPS
    assert got == {
        ("OLD", aware): (T0, 1),
        ("N", aware): (T0 + WEEK, 0),  # moved on after 21 days: not within 14
        ("S", aware): (T0 + 2 * WEEK, 1),  # passed at its first snapshot
        ("S", consider): (T0 + 2 * WEEK, 1),
        ("S", decide): (T0 + 2 * WEEK, 0),
        ("OLD", consider): (T0 + WEEK, 0),
        ("MID", consider): (T0, 1),
        ("MID", decide): (T0 + 2 * WEEK, 0),
    }
    # the exposure window: one week either side of entry, for every unit alike
    assert (units["window_start"] == units["entered"] - WEEK).all()
    assert (units["window_end"] == units["entered"] + WEEK).all()


def test_events_and_offers_count_inside_the_window_only() -> None:
    units = step_units(history_of(UNITS_FUNNEL), horizon_days=14)
    events = pd.DataFrame(
        {
            "lead_id": ["N", "N", "N", "OLD", "OLD"],
            "event_type": ["docs_view", "pricing_view", "docs_view", "webinar_attended",
                           "email_open"],
            "timestamp": [T0 + 3 * DAY, T0 + WEEK + 6 * DAY, T0 + 2 * WEEK + DAY,
                          T0 - 8 * DAY, T0 - 6 * DAY],
        }
    )  # fmt: skip
    got = event_exposures(units, events)
    assert sorted(map(tuple, got[["lead_id", "step", "touchpoint"]].to_numpy())) == [
        ("N", STEPS[0], "docs_view"),  # the second docs view comes after the window
        ("N", STEPS[0], "pricing_view"),
        ("OLD", STEPS[0], "email_open"),  # 6 days before entry: inside; 8 days: outside
    ]
    exposures = pd.DataFrame(
        {
            "subject_id": ["N", "acct-S", "MID", "N"],
            "offer_id": ["case_study", "discount_15", "discount_15", "control"],
            "exposed_at": [T0 + 2 * DAY, T0 + 2 * WEEK, T0 - 2 * WEEK, T0 + 3 * DAY],
        }
    )
    leads = pd.DataFrame({"lead_id": list(UNITS_FUNNEL),
                          "account_id": [f"acct-{k}" for k in UNITS_FUNNEL]})  # fmt: skip
    offers = offer_exposures_in_window(units, exposures, leads)
    assert sorted(map(tuple, offers[["lead_id", "step", "touchpoint"]].to_numpy())) == [
        ("N", STEPS[0], "case_study"),  # control is no touchpoint
        ("S", STEPS[0], "discount_15"),  # shown to its account
        ("S", STEPS[1], "discount_15"),
        ("S", STEPS[2], "discount_15"),
    ]


# ------------------------------------------------------------------------- the odds ratios
def planted_units(seed: int = 3, n: int = 4000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One step's units: exposure to "driver" triples the chance of moving on (20% -> 60%);
    "noise_a", "noise_b" and the channel "paid" are shown at random."""
    rng = np.random.default_rng(seed)
    shown = {name: rng.random(n) < p for name, p in
             (("driver", 0.3), ("noise_a", 0.3), ("noise_b", 0.6), ("paid", 0.4))}  # fmt: skip
    moved = rng.random(n) < np.where(shown["driver"], 0.6, 0.2)
    units = pd.DataFrame({"lead_id": np.arange(n), "step": STEPS[1], "moved": moved.astype(int)})
    exposures = pd.concat(
        [
            pd.DataFrame({"lead_id": np.flatnonzero(hit), "step": STEPS[1],
                          "kind": "channel" if name == "paid" else "event", "touchpoint": name})
            for name, hit in shown.items()
        ],
        ignore_index=True,
    )  # fmt: skip
    return units, exposures


def test_the_touchpoint_that_drives_progress_has_the_largest_odds_ratio() -> None:
    units, exposures = planted_units()
    odds = touchpoint_odds(units, exposures, defining={"decision": {"noise_b"}})
    assert list(odds.columns) == list(ODDS_COLUMNS)
    assert odds["touchpoint"].iloc[0] == "driver"  # sorted, largest first
    by = odds.set_index("touchpoint")
    # the truth: odds 0.6/0.4 against 0.2/0.8, an odds ratio of 6
    assert by.loc["driver", "low"] < 6 < by.loc["driver", "high"]
    assert by.loc["driver", "low"] > by.drop(index="driver")["high"].max()
    for name in ("noise_a", "noise_b", "paid"):
        assert by.loc[name, "low"] < 1 < by.loc[name, "high"], name
    assert (odds["evidence"] == "correlation").all()
    assert by["defines_stage"].to_dict() == {"driver": False, "noise_a": False,
                                             "noise_b": True, "paid": False}  # fmt: skip
    assert by.loc["paid", "kind"] == "channel"
    # each row's cells are the crosstab of exposure by outcome
    exposed = units["lead_id"].isin(exposures.loc[exposures["touchpoint"] == "driver", "lead_id"])
    table = pd.crosstab(exposed, units["moved"])
    row = by.loc["driver"]
    assert (row["exposed_moved"], row["exposed"] - row["exposed_moved"]) == (
        table.loc[True, 1],
        table.loc[True, 0],
    )
    assert (row["unexposed_moved"], row["unexposed"] - row["unexposed_moved"]) == (
        table.loc[False, 1], table.loc[False, 0])  # fmt: skip
    expected = odds_ratio(table.loc[True, 1], table.loc[True, 0], table.loc[False, 1],
                          table.loc[False, 0])  # fmt: skip
    assert (row["odds_ratio"], row["low"], row["high"]) == pytest.approx(expected)


def test_rare_touchpoints_are_left_out_and_repeats_count_once() -> None:
    units, exposures = planted_units(n=400)
    doubled = pd.concat([exposures, exposures], ignore_index=True)
    once = touchpoint_odds(units, exposures)
    assert touchpoint_odds(units, doubled).equals(once)
    few = pd.DataFrame({"lead_id": [0, 1], "step": STEPS[1], "kind": "offer", "touchpoint": "x"})
    odds = touchpoint_odds(units, pd.concat([exposures, few]), min_exposed=3)
    assert "x" not in set(odds["touchpoint"])
    with pytest.raises(ValueError, match="one row per"):
        touchpoint_odds(pd.concat([units, units]), exposures)
    with pytest.raises(KeyError, match="moved"):
        touchpoint_odds(units.drop(columns="moved"), exposures)


def test_the_events_a_stage_rule_reads() -> None:
    assert stage_defining_events(StagesConfig()) == {
        "decision": {"demo_request", "trial_signup"},
        "consideration": {"pricing_view", "webinar_attended", "content_download"},
    }


def test_causal_readouts_list_each_comparison_once() -> None:
    measured = measured_lifts({"comparisons": [
        {"name": "offers: a vs control", "metric": "converted", "lift_rel": 0.1,
         "lift_rel_low": 0.0, "lift_rel_high": 0.2},
        {"name": "offers: a vs control", "metric": "revenue", "lift_rel": 0.3,
         "lift_rel_low": 0.1, "lift_rel_high": 0.5}]})  # fmt: skip
    assert len(measured) == 3  # the bare name, and each name:metric
    readouts = causal_readouts(measured)
    assert readouts[["comparison", "metric"]].to_numpy().tolist() == [
        ["offers: a vs control", "converted"], ["offers: a vs control", "revenue"]]  # fmt: skip
    assert readouts["lift_rel"].tolist() == [0.1, 0.3]
    assert readouts["evidence"].tolist() == ["causal (randomized)"] * 2
    assert causal_readouts({}).empty


# ------------------------------------------------------------------------------- stalls
def test_stalls_by_hand() -> None:
    history = history_of({
        "M1": "- A C R R R R",  # left awareness after 7 days, consideration after 7
        "M2": "- A A A C R R",  # left awareness after 21 days
        "S": "- A A A A A A",  # aware for 35 days
        "F": "- - - - - A A",  # aware for 7 days
        "B": "- C C A A A A",  # fell back: its furthest stage is consideration, since week 1
        "Z": "A A A A A A A",  # there from the first snapshot: 42 days at least
        "CUST": "R R R R R R R",
    })  # fmt: skip
    stalls = lead_stalls(history).set_index("lead_id")
    assert sorted(stalls.index) == ["B", "F", "S", "Z"]  # the others reached the last stage
    assert stalls.loc[["S", "F", "B", "Z"], "days"].tolist() == [35.0, 7.0, 35.0, 42.0]
    assert stalls.loc["B", "stage"] == "consideration"
    # awareness: 90% of the movers' [0 (B was considering when first seen), 7, 21] days
    # = 7 + 0.8 x 14; consideration: M1 and M2 both took 7 (B fell back: it never moved on)
    assert stalls.loc["S", "threshold_days"] == pytest.approx(18.2)
    assert stalls.loc["B", "threshold_days"] == pytest.approx(7.0)
    assert stalls["stalled"].to_dict() == {"S": True, "F": False, "B": True, "Z": True}
    assert stalls["censored"].to_dict() == {"S": False, "F": False, "B": False, "Z": True}
    summary = stall_summary(lead_stalls(history)).set_index("stage")
    assert summary.loc["awareness", ["open", "stalled", "censored"]].tolist() == [3, 2, 1]
    assert summary.loc["awareness", "median_days"] == pytest.approx(38.5)
    assert summary.loc["decision", "open"] == 0 and np.isnan(summary.loc["decision", "median_days"])


def test_stall_detection_finds_a_planted_stalled_segment() -> None:
    rng = np.random.default_rng(5)
    weeks = 21
    leads, source, industry = {}, {}, {}
    for i in range(240):
        lead = f"L{i:03d}"
        partner = i < 40
        source[lead] = "partner" if partner else rng.choice(["organic", "paid_search"])
        industry[lead] = rng.choice(["retail", "software", "media"])
        kind = "stuck" if partner else rng.choice(["fast", "recent", "stuck"], p=[0.5, 0.25, 0.25])
        if kind == "fast":  # considers, then decides and buys within three weeks
            born = int(rng.integers(1, 12))
            k = int(rng.integers(1, 3))
            path = ["-"] * born + ["C"] * k + ["D"] + ["R"] * (weeks - born - k - 1)
        elif kind == "recent":  # considering for a week or two at the end
            born = int(rng.integers(weeks - 2, weeks))
            path = ["-"] * born + ["C"] * (weeks - born)
        else:  # considering since early on
            born = int(rng.integers(1, 4))
            path = ["-"] * born + ["C"] * (weeks - born)
        leads[lead] = " ".join(path)
    leads["FIRST"] = " ".join(["A"] * weeks)  # sets the first snapshot
    history = history_of(leads)
    segments = pd.DataFrame({"lead_id": list(source), "source": list(source.values()),
                             "industry": list(industry.values())})  # fmt: skip
    stalls = lead_stalls(history)
    top = stalled_segments(stalls, segments, dimensions=["source", "industry"], min_open=10)
    consideration = top.loc[top["stage"] == "consideration"]
    first = consideration.iloc[0]
    assert (first["dimension"], first["segment"]) == ("source", "partner")
    assert first["stalled"] == first["open"] == 40 and first["stalled_share"] == 1.0
    assert first["vs_stage"] > 1.2 and first["excess"] > 5
    # no industry stalls much more than the stage as a whole
    assert (consideration.loc[consideration["dimension"] == "industry", "vs_stage"] < 1.2).all()


def test_lead_segments() -> None:
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"], "account_id": ["x", "y", "zz"],
                          "source": ["organic", "partner", "event"],
                          "job_title": ["VP of Marketing", "Software Engineer", None]})  # fmt: skip
    accounts = pd.DataFrame({"account_id": ["x", "y"], "industry": ["retail", "media"],
                             "employee_count": [49, 1000], "country": ["DE", "US"]})  # fmt: skip
    got = lead_segments(leads, accounts).set_index("lead_id")
    assert got["seniority"].tolist() == ["vp", "individual_contributor", "unknown"]
    assert got["company_size"].tolist() == ["1-49", "1000+", "unknown"]
    assert got.loc["b", "industry"] == "media" and pd.isna(got.loc["c", "industry"])


# ------------------------------------------------------------------ the report, end to end
@pytest.fixture(scope="module")
def small_funnel(tmp_path_factory: pytest.TempPathFactory, config_at):
    """400 generated leads over 20 weeks, their feature tables, and experiment readouts."""
    cfg = config_at(tmp_path_factory.mktemp("small_funnel"))
    generate(n_leads=400, seed=5, start=cfg.data.start, weeks=20, out_dir=cfg.data_dir,
             progress=False)  # fmt: skip
    start, end = data_window(cfg.raw_dir)
    names = ["accounts", "leads", "events", "opportunities", "subscriptions"]
    build_feature_tables(read_tables(cfg.raw_dir, names), cfg.features_dir, start, end, 7)
    readouts = cfg.data_dir / "reports" / "experiments.json"
    readouts.parent.mkdir(parents=True)
    readouts.write_text(json.dumps({"comparisons": [
        {"name": "offers: discount_15 vs control", "metric": "converted", "lift_rel": 0.3,
         "lift_rel_low": 0.1, "lift_rel_high": 0.5}]}))  # fmt: skip
    return cfg


def test_the_funnel_report_shows_and_writes_it_all(small_funnel) -> None:
    cfg = small_funnel
    path = write_funnel_report(cfg)
    text = path.read_text()
    for section in ("value-of-a-point", "fixes", "touchpoints", "drop-off-points"):
        assert f'<section id="{section}">' in text
    assert "correlation" in text and "measured" in text
    document = json.loads(funnel_json_path(path).read_text())
    assert set(document) >= {"value_of_a_point", "fixes", "touchpoints", "drop_off"}
    steps = document["value_of_a_point"]["steps"]
    assert [s["step"] for s in steps] == list(STEPS)
    for s in steps:
        assert s["value_of_point_low"] <= s["value_of_point"] <= s["value_of_point_high"]
    ranked = {f["name"]: f for f in document["fixes"]["ranked"]}
    shipped = re.findall(r"^  - name: (\w+)$", cfg.reports.fixes_file.read_text(), re.MULTILINE)
    assert set(ranked) == set(shipped)
    assert [f["rank"] for f in document["fixes"]["ranked"]] == list(range(1, len(ranked) + 1))
    discount = ranked["first_year_discount"]  # its experiment is in the readouts
    assert discount["lift_source"] == "measured" and discount["lift"] == 0.3
    assert {f["lift_source"] for n, f in ranked.items() if n != "first_year_discount"} == {"guess"}
    odds = document["touchpoints"]["odds_ratios"]
    assert odds and {o["kind"] for o in odds} >= {"event", "channel"}
    assert all(o["low"] <= o["odds_ratio"] <= o["high"] for o in odds)
    assert document["touchpoints"]["readouts"][0]["evidence"] == "causal (randomized)"
    stalls = document["drop_off"]["stalls"]
    assert [s["stage"] for s in stalls] == ["awareness", "consideration", "decision"]
    assert all(0 <= s["stalled"] <= s["open"] for s in stalls)

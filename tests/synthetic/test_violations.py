"""The delivered event stream: violations at their rates, counted exactly, and the ingest check
giving back the clean events (so the features built from the raw events are the clean ones')."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import ViolationRates
from core.tables import read_table
from core.tracking import DEFAULT_PLAN, check_events, load_plan, read_quarantine
from features.build import compute_feature_tables
from synthetic import generate as gen
from synthetic.violations import NEW_ID_PREFIX, UNPLANNED_NAMES, deliver

CHECKED = ("received", "duplicate", "renamed", "missing_property", "wrong_type", "unplanned_event")


@pytest.fixture(scope="module")
def plan():
    return load_plan(DEFAULT_PLAN)


@pytest.fixture(scope="module")
def sim():
    return gen.simulate(300, 5, weeks=10)


@pytest.fixture(scope="module")
def clean(sim) -> pd.DataFrame:
    return sim.tables["events"]


def test_the_clean_events_hold_the_plan(clean, plan) -> None:
    result = check_events(clean, plan, "synthetic")
    assert result.quarantine.empty and result.counts["admitted"] == len(clean)
    assert sum(v for k, v in result.counts.items() if k not in ("received", "admitted")) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_the_check_finds_exactly_what_was_delivered(clean, plan, seed) -> None:
    rates = ViolationRates(
        renamed=0.1, redelivered=0.05, missing_property=0.03, wrong_type=0.02, unplanned_event=0.02
    )
    delivery = deliver(clean, plan, rates, np.random.default_rng(seed))
    assert len(delivery.events) == delivery.expected["received"] > len(clean)
    result = check_events(delivery.events, plan, "synthetic")
    assert {k: result.counts[k] for k in CHECKED} == delivery.expected
    e = delivery.expected
    assert (
        result.counts["blocked"] == e["missing_property"] + e["wrong_type"] + e["unplanned_event"]
    )
    assert result.counts["admitted"] == len(clean)
    assert result.counts["flagged"] == result.counts["invalid_value"] == 0
    pd.testing.assert_frame_equal(result.admitted, clean)
    # blocked rows are the extra ones, under new message ids; duplicates are clean ids again
    q = result.quarantine
    blocked = q[q["status"] == "quarantined"]
    assert blocked["message_id"].str.startswith(NEW_ID_PREFIX).all()
    assert set(q.loc[q["status"] == "duplicate", "message_id"]) <= set(clean["event_id"])
    assert set(blocked.loc[blocked["violation"] == "unplanned_event", "event_type"]) <= set(
        UNPLANNED_NAMES
    )


def test_rates_are_met_and_draws_are_deterministic(clean, plan) -> None:
    rates = ViolationRates(
        renamed=0.2, redelivered=0.1, missing_property=0.05, wrong_type=0.05, unplanned_event=0.05
    )
    a = deliver(clean, plan, rates, np.random.default_rng(7))
    b = deliver(clean, plan, rates, np.random.default_rng(7))
    c = deliver(clean, plan, rates, np.random.default_rng(8))
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.expected == b.expected and not a.events.equals(c.events)
    n = len(clean)
    has_props = clean["properties"].notna().to_numpy()  # renamed: every event has aliases
    for key, rate, eligible in (
        ("renamed", rates.renamed, n),
        ("duplicate", rates.redelivered, n),
        ("unplanned_event", rates.unplanned_event, n),
        ("wrong_type", rates.wrong_type, has_props.sum()),
    ):
        sd = np.sqrt(eligible * rate * (1 - rate))
        assert abs(a.expected[key] - eligible * rate) < 5 * sd, key


def test_no_violations_deliver_the_clean_events(clean, plan) -> None:
    zero = ViolationRates(
        renamed=0, redelivered=0, missing_property=0, wrong_type=0, unplanned_event=0
    )
    delivery = deliver(clean, plan, zero, np.random.default_rng(0))
    pd.testing.assert_frame_equal(delivery.events, clean)
    assert delivery.expected == dict.fromkeys(CHECKED, 0) | {"received": len(clean)}


def test_broken_copies_break_only_what_they_claim(clean, plan) -> None:
    rates = ViolationRates(renamed=0, redelivered=0, missing_property=0.1, wrong_type=0.1)
    delivery = deliver(clean, plan, rates, np.random.default_rng(3))
    extra = delivery.events[delivery.events["event_id"].str.startswith(NEW_ID_PREFIX)]
    for row in extra.itertuples(index=False):
        props = json.loads(row.properties) if row.properties else {}
        spec = plan.events.get(row.event_type)
        if spec is None:
            continue  # an unplanned event
        required = [k for k, p in spec.properties.items() if p.required]
        numbers = [k for k, v in props.items() if isinstance(v, int)]
        assert set(props) <= set(spec.properties)  # never an unexpected property
        assert (len(numbers) == 1) != any(k not in props for k in required), row


def test_generate_loads_the_clean_events_and_keeps_the_rest(sim, tmp_path, plan) -> None:
    summary = gen.generate(300, 5, weeks=10, out_dir=tmp_path, progress=False)
    raw = read_table(tmp_path / "raw", "events")
    clean = sim.tables["events"]
    pd.testing.assert_frame_equal(raw, clean)
    counts = summary["tracking"]
    rng = np.random.default_rng(np.random.SeedSequence(5).spawn(10)[9])
    delivered = deliver(clean, plan, ViolationRates(), rng)
    assert {k: counts[k] for k in CHECKED} == delivered.expected
    assert counts["admitted"] == summary["events"] == len(clean)
    quarantine = read_quarantine(tmp_path / "quarantine")
    assert len(quarantine) == counts["blocked"] + counts["duplicate"] > 0
    assert counts["received"] == counts["admitted"] + len(quarantine)
    # the behavioral features of the loaded events are those of the clean ones
    tables = {name: sim.tables[name] for name in ("accounts", "leads", "opportunities")}
    grid = {"start": summary["start"], "end": summary["end"]}
    built = compute_feature_tables({**tables, "events": raw}, **grid)["lead_behavior"]
    reference = compute_feature_tables({**tables, "events": clean}, **grid)["lead_behavior"]
    pd.testing.assert_frame_equal(built, reference)
    assert built.filter(like="_30d").to_numpy().sum() > 0
    # unchecked, the delivered stream would count redeliveries and lose renamed events
    naive = compute_feature_tables({**tables, "events": delivered.events}, **grid)
    assert not naive["lead_behavior"].equals(reference)

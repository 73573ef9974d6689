"""The tracking plan: each violation typed and counted per source, nothing lost, duplicates
removed deterministically, quarantined rows replayed exactly once, a bad plan named by key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from core.config import ConfigError
from core.contract import EVENT_TYPES
from core.tables import read_table, read_tables
from core.tracking import (
    COUNT_KEYS,
    DEFAULT_PLAN,
    TrackingPlan,
    check_events,
    format_tracking_report,
    load_plan,
    read_quarantine,
    replay_quarantine,
    tracking_report,
    write_quarantine,
)

T0 = pd.Timestamp("2026-02-02 10:00:00", tz="UTC")
PLAN = {
    "events": {
        "page_view": {
            "aliases": ["Page Viewed"],
            "properties": {"path": {"type": "string", "required": True}},
        },
        "demo_request": {
            "properties": {
                "form": {"type": "string", "required": True, "allowed": ["book_demo"]},
                "seats": {"type": "integer"},
            }
        },
        "trial_signup": {},
    },
    "sources": {
        "lenient": {"policy": {"missing_property": "flag", "unexpected_property": "allow"}},
        "exact": {"duplicate_window_seconds": None},
        "windowed": {"duplicate_window_seconds": 30},
    },
}


@pytest.fixture
def plan() -> TrackingPlan:
    return TrackingPlan.model_validate(PLAN)


def event(mid: str, name: str, props: dict | None, lead: str = "L1", seconds: int = 0) -> dict:
    return {
        "event_id": mid,
        "lead_id": lead,
        "account_id": "A1",
        "event_type": name,
        "timestamp": T0 + pd.Timedelta(seconds=seconds),
        "properties": None if props is None else json.dumps(props),
    }


# one row per case: (message id, row, the violation or outcome it stands for)
CASES = [
    event("E1", "page_view", {"path": "/"}),
    event("E2", "Page Viewed", {"path": "/pricing"}, seconds=5),  # renamed
    event("E3", "button_clicked", None, seconds=6),  # unplanned
    event("E4", "page_view", {}, seconds=7),  # missing path
    event("E5", "page_view", {"path": 404}, seconds=8),  # wrong type
    event("E6", "demo_request", {"form": "call_me"}, seconds=9),  # invalid value
    event("E7", "page_view", {"path": "/", "utm": "x"}, seconds=10),  # unexpected (flag)
    event("E8", "trial_signup", None, seconds=11),
    event("E1", "page_view", {"path": "/"}),  # redelivery of E1
    event("E9", "trial_signup", None, seconds=11),  # same lead, event, second as E8
    {**event("E10", "demo_request", None, seconds=12), "properties": "not json"},
    event("E11", "demo_request", {"form": "book_demo", "seats": True}, seconds=13),
]


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def outcome(result, mid: str) -> str:
    """How the row with message id ``mid`` came out: admitted or its quarantine status."""
    q = result.quarantine
    statuses = q.loc[q["message_id"] == mid, "status"].tolist()
    admitted = mid in set(result.admitted["event_id"])
    return "+".join((["admitted"] if admitted else []) + statuses)


def test_each_violation_is_typed_counted_and_kept(plan) -> None:
    events = frame(CASES)
    result = check_events(events, plan, "import")
    assert result.counts == {
        "received": 12,
        "admitted": 4,  # E1, E2 (renamed), E7 (flagged), E8
        "blocked": 6,  # E3, E4, E5, E6, E10, E11
        "duplicate": 2,  # the second E1, E9
        "flagged": 1,
        "renamed": 1,
        "unplanned_event": 1,
        "missing_property": 1,  # E4
        "wrong_type": 3,  # E5, E10 (its properties are not JSON: nothing else is read), E11
        "invalid_value": 1,
        "unexpected_property": 1,
    }
    c = result.counts
    assert c["received"] == c["admitted"] + c["blocked"] + c["duplicate"]
    assert list(result.counts) == list(COUNT_KEYS)
    expected = {
        "E1": "admitted+duplicate",
        "E2": "admitted",
        "E3": "quarantined",
        "E4": "quarantined",
        "E5": "quarantined",
        "E6": "quarantined",
        "E7": "admitted+flagged",
        "E8": "admitted",
        "E9": "duplicate",
        "E10": "quarantined",
        "E11": "quarantined",
    }
    assert {mid: outcome(result, mid) for mid in expected} == expected
    q = result.quarantine.set_index("message_id")
    violation = q.loc[q["status"] != "duplicate", "violation"].to_dict()
    assert violation == {
        "E3": "unplanned_event",
        "E4": "missing_property",
        "E5": "wrong_type",
        "E6": "invalid_value",
        "E7": "unexpected_property",
        "E10": "wrong_type",
        "E11": "wrong_type",
    }
    assert "'button_clicked' is not in the tracking plan" in q.loc["E3", "reason"]
    assert "required property 'path' is missing" in q.loc["E4", "reason"]
    assert "page_view.path: expected string, got integer 404" in q.loc["E5", "reason"]
    assert "'call_me' is not one of ['book_demo']" in q.loc["E6", "reason"]
    assert "unexpected property 'utm'" in q.loc["E7", "reason"]
    assert "properties is not a JSON object" in q.loc["E10", "reason"]
    assert "demo_request.seats: expected integer, got boolean" in q.loc["E11", "reason"]
    assert "as message E8" in q.loc["E9", "reason"]
    # the row is kept verbatim, the delivered name included
    original = json.loads(result.quarantine.query("message_id == 'E3'")["row"].iloc[0])
    assert original == {**CASES[2], "timestamp": CASES[2]["timestamp"].isoformat()}
    # blocked rows never reach the admitted events; the renamed one arrives under its name
    admitted = result.admitted.set_index("event_id")
    assert list(admitted.index) == ["E1", "E2", "E7", "E8"]
    assert admitted.loc["E2", "event_type"] == "page_view"
    assert result.admitted.index.equals(pd.RangeIndex(4))


def test_a_source_policy_flags_allows_or_blocks(plan) -> None:
    events = frame([CASES[0], CASES[3], CASES[6]])  # good, missing path, unexpected property
    default = check_events(events, plan, "import")
    lenient = check_events(events, plan, "lenient")
    assert outcome(default, "E4") == "quarantined" and outcome(lenient, "E4") == "admitted+flagged"
    # allow: loaded and counted, no record
    assert outcome(default, "E7") == "admitted+flagged" and outcome(lenient, "E7") == "admitted"
    assert lenient.counts["unexpected_property"] == 1 and lenient.counts["flagged"] == 1
    assert lenient.counts["admitted"] == 3 and lenient.counts["blocked"] == 0
    # a source the plan does not name gets the plan's policy
    assert check_events(events, plan, "partner_feed").counts == default.counts


def test_clean_events_pass_unchanged(plan) -> None:
    events = frame([CASES[0], CASES[7], event("E20", "demo_request", {"form": "book_demo"})])
    result = check_events(events, plan, "import")
    pd.testing.assert_frame_equal(result.admitted, events)
    assert result.quarantine.empty
    assert result.counts["admitted"] == 3 and sum(result.counts.values()) == 6


def test_duplicates_keep_the_first_by_timestamp_then_message_id(plan) -> None:
    rows = [
        event("B", "page_view", {"path": "/"}, seconds=20),
        event("A", "page_view", {"path": "/"}, seconds=20),  # same second, smaller id: kept
        event("C", "page_view", {"path": "/"}, seconds=45),  # 25 s after A: within 30 s
        event("D", "page_view", {"path": "/"}, seconds=55),  # 35 s after A: kept
        event("E", "page_view", {"path": "/"}, seconds=70),  # 15 s after D
        event("F", "page_view", {"path": "/"}, lead="L2", seconds=20),  # another lead
        event("G", "trial_signup", None, seconds=20),  # another event
        event("X", "page_view", {"path": "/"}, seconds=99),
        event("X", "page_view", {"path": "/"}, seconds=98),  # the same id, earlier: kept
    ]
    expected = {
        "import": {"A", "C", "D", "E", "F", "G", "X"},  # the default window: the same second
        "exact": {"A", "B", "C", "D", "E", "F", "G", "X"},  # message ids only
        "windowed": {"A", "D", "F", "G", "X"},
    }
    for source, kept in expected.items():
        for order in (rows, rows[::-1], rows[3:] + rows[:3]):
            result = check_events(frame(order), plan, source)
            assert set(result.admitted["event_id"]) == kept, (source, order)
            assert len(result.admitted) == len(kept)
            assert result.counts["duplicate"] == len(order) - len(kept)
            x = result.admitted.loc[result.admitted["event_id"] == "X", "timestamp"]
            assert x.tolist() == [T0 + pd.Timedelta(seconds=98)]


def test_known_message_ids_are_duplicates(plan) -> None:
    result = check_events(frame(CASES[:2]), plan, "import", known_ids={"E1"})
    assert list(result.admitted["event_id"]) == ["E2"]
    assert result.quarantine.set_index("message_id").loc["E1", "status"] == "duplicate"


def test_text_rows_as_an_import_reads_them(plan) -> None:
    """An import arrives as text: the timestamps are parsed for the duplicate window."""
    rows = frame(CASES[:2] + [CASES[8]]).astype(str)
    rows["timestamp"] = [
        T0.isoformat(),
        (T0 + pd.Timedelta(seconds=5)).isoformat(),
        "2026-02-02T10:00:00Z",
    ]
    result = check_events(rows, plan, "import")
    assert result.counts["duplicate"] == 1 and result.counts["renamed"] == 1


def test_a_missing_column_is_named(plan) -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['event_id'\]"):
        check_events(frame(CASES).drop(columns="event_id"), plan, "import")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"events": {"page_view": {"propertes": {}}}},
            r"events\.page_view\.propertes: unknown key",
        ),
        (
            {"events": {"page_view": {"properties": {"path": {"type": "text"}}}}},
            r"events\.page_view\.properties\.path\.type: Input should be 'string'",
        ),
        ({"events": {"page_viewed": {}}}, r"events: .*\['page_viewed'\] not event types"),
        (
            {"events": {"page_view": {"aliases": ["docs_view"]}, "docs_view": {}}},
            r"'docs_view' is the name of a planned event",
        ),
        (
            {"events": {"page_view": {"aliases": ["pv"]}, "docs_view": {"aliases": ["pv"]}}},
            r"events: .*\.aliases: 'pv' is already an alias of ",
        ),
        (
            {"events": {"page_view": {}}, "policy": {"unplanned_event": "flag"}},
            r"policy\.unplanned_event: .*only 'block'",
        ),
        (
            {
                "events": {"page_view": {}},
                "sources": {"import": {"policy": {"wrong_type": "drop"}}},
            },
            r"sources\.import\.policy\.wrong_type: Input should be 'allow', 'flag' or 'block'",
        ),
        (
            {"events": {"page_view": {"properties": {"n": {"type": "integer", "allowed": ["1"]}}}}},
            r"events\.page_view\.properties\.n: .*allowed values \['1'\] are not of type integer",
        ),
        ({"events": {}}, r"events: .*at least 1 item"),
        (
            {"events": {"page_view": {}}, "duplicate_window_seconds": -1},
            r"duplicate_window_seconds: ",
        ),
    ],
)
def test_a_malformed_plan_names_the_key(tmp_path, change, message) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(change))
    with pytest.raises(ConfigError, match=message) as err:
        load_plan(path)
    assert str(path) in str(err.value)


def test_a_missing_plan_file_says_which_key_points_at_it(tmp_path) -> None:
    with pytest.raises(
        ConfigError, match=r"tracking plan not found: .*nope\.yaml \(data\.tracking_plan\)"
    ):
        load_plan(tmp_path / "nope.yaml")


def test_the_shipped_plan_covers_the_contract() -> None:
    plan = load_plan(DEFAULT_PLAN)
    assert set(plan.events) == set(EVENT_TYPES)
    assert plan.message_id == "event_id"
    assert plan.window_for("synthetic") is None and plan.window_for("import") == 0
    assert all(spec.aliases for spec in plan.events.values())


def test_the_store_keeps_rows_verbatim_and_reports_them(plan, tmp_path) -> None:
    result = check_events(frame(CASES), plan, "import", now="2026-03-01T00:00:00Z")
    folder = tmp_path / "quarantine"
    path = write_quarantine(result, folder, plan_file="plan.yaml")
    assert path == folder / "import.parquet"
    stored = read_quarantine(folder)
    pd.testing.assert_frame_equal(stored, result.quarantine)
    assert (stored["ingested_at"] == pd.Timestamp("2026-03-01", tz="UTC")).all()
    report = tracking_report(folder, examples=1)
    entry = report["sources"]["import"]
    assert entry["counts"] == result.counts and entry["plan"] == "plan.yaml"
    assert entry["quarantine"] == {"quarantined": 6, "flagged": 1, "duplicate": 2, "replayed": 0}
    assert [len(v) for v in entry["examples"].values()] == [1] * 6
    assert entry["examples"]["invalid_value"][0]["row"]["event_id"] == "E6"
    text = format_tracking_report(report)
    assert "import: 12 received, 4 admitted, 6 blocked, 2 duplicates removed" in text
    assert "invalid_value 1" in text and '"event_id": "E6"' in text
    json.dumps(report)  # plain data, for the web console


# -- replay and the load paths, on a small generated funnel --------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    from synthetic.generate import generate

    data = tmp_path_factory.mktemp("tracking") / "data"
    generate(300, 4, weeks=8, out_dir=data, progress=False)
    return data


def run_cli(data: Path, *args: str, plan: Path | None = None):
    options = ["--set", f"paths.data_dir={data}", "--set", f"paths.mlruns_dir={data.parent / 'm'}"]
    if plan is not None:
        options += ["--set", f"data.tracking_plan={plan}"]
    return CliRunner().invoke(main, [*options, *args], catch_exceptions=False)


def fixed_plan(tmp_path: Path) -> Path:
    """The shipped plan after a fix: email campaigns may be missing; wrong types still block."""
    tree = yaml.safe_load(DEFAULT_PLAN.read_text())
    tree["policy"]["missing_property"] = "flag"
    path = tmp_path / "fixed_plan.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_replay_loads_fixed_rows_exactly_once(generated, tmp_path) -> None:
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    raw, folder = data / "raw", data / "quarantine"
    before = read_table(raw, "events")
    waiting = read_quarantine(folder).query("status == 'quarantined'")
    missing = waiting[waiting["violation"] == "missing_property"]
    assert len(missing) > 0 and len(waiting) > len(missing)
    plan = load_plan(fixed_plan(tmp_path))

    first = replay_quarantine(plan, raw, folder, now="2026-12-01T00:00:00Z")
    assert first.counts == {
        "checked": len(waiting),
        "replayed": len(missing),
        "already_loaded": 0,
        "still_quarantined": len(waiting) - len(missing),
    }
    after = read_table(raw, "events")
    assert len(after) == len(before) + len(missing)
    assert set(after["event_id"]) - set(before["event_id"]) == set(missing["message_id"])
    stored = read_quarantine(folder).set_index("position")
    assert (stored.loc[missing["position"], "status"] == "replayed").all()
    assert stored.loc[missing["position"], "replayed_at"].notna().all()
    assert (stored["status"] == "quarantined").sum() == len(waiting) - len(missing)

    second = replay_quarantine(plan, raw, folder)
    assert second.counts["replayed"] == 0 and second.events_path is None
    assert len(read_table(raw, "events")) == len(after)

    # a replay that wrote the events but not its quarantine (a crash between): the rows are
    # found in the events and not loaded again
    lost = read_quarantine(folder, "synthetic")
    lost.loc[lost["status"] == "replayed", "status"] = "quarantined"
    lost.to_parquet(folder / "synthetic.parquet", index=False)
    third = replay_quarantine(plan, raw, folder)
    assert third.counts["already_loaded"] == len(missing) and third.counts["replayed"] == 0
    assert len(read_table(raw, "events")) == len(after)
    read_tables(raw)  # the events still hold the contract and the references


def test_cli_check_and_replay(generated, tmp_path) -> None:
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    result = run_cli(data, "data", "check")
    assert result.exit_code == 0, result.output
    counts = json.loads((data / "quarantine" / "summary.json").read_text())["sources"]
    c = counts["synthetic"]["counts"]
    assert f"synthetic: {c['received']:,} received, {c['admitted']:,} admitted" in result.output
    assert "missing_property" in result.output and "duplicate" in result.output
    as_json = json.loads(run_cli(data, "data", "check", "--json").output)
    assert as_json["sources"]["synthetic"]["counts"] == c
    replayed = run_cli(data, "data", "replay", plan=fixed_plan(tmp_path))
    assert replayed.exit_code == 0, replayed.output
    n = c["missing_property"]
    assert f"synthetic: {c['blocked']:,} checked, {n:,} loaded, 0 already loaded" in replayed.output
    assert "funnel features apply" in replayed.output
    again = run_cli(data, "data", "replay", plan=fixed_plan(tmp_path))
    assert f"synthetic: {c['blocked'] - n:,} checked, 0 loaded" in again.output
    missing = run_cli(tmp_path / "empty", "data", "check")
    assert "no event load recorded" in missing.output
    bad = run_cli(data, "data", "replay", "--source", "crm")
    assert bad.exit_code == 1 and "no load of source 'crm'" in bad.output


def test_data_import_checks_the_events(generated, tmp_path) -> None:
    original = read_tables(generated / "raw", ["accounts", "leads", "events", "opportunities"])
    export = tmp_path / "export"
    export.mkdir()
    for name in ("accounts", "leads", "opportunities"):
        original[name].to_parquet(export / f"{name}.parquet")
    events = original["events"]
    extra = pd.concat(
        [
            events.head(3),  # delivered again
            events.iloc[[5]].assign(event_id="N1", event_type="Signup Button"),  # unplanned
        ]
    )
    renamed = events.copy()
    page_views = renamed.index[renamed["event_type"] == "page_view"][:4]
    renamed.loc[page_views, "event_type"] = "Page Viewed"
    pd.concat([renamed, extra]).to_csv(export / "events.csv", index=False)
    mapping = tmp_path / "mapping.yaml"
    tables = {n: {"file": f"export/{n}.parquet"} for n in ("accounts", "leads", "opportunities")}
    mapping.write_text(
        yaml.safe_dump({"tables": {**tables, "events": {"file": "export/events.csv"}}})
    )
    data = tmp_path / "own"
    result = run_cli(data, "data", "import", str(mapping))
    assert result.exit_code == 0, result.output
    got = read_table(data / "raw", "events")
    assert len(got) == len(events)
    assert sorted(got["event_id"]) == sorted(events["event_id"])
    report = tracking_report(data / "quarantine")["sources"]["import"]
    assert {k: report["counts"][k] for k in ("duplicate", "unplanned_event", "renamed")} == {
        "duplicate": 3,
        "unplanned_event": 1,
        "renamed": 4,
    }

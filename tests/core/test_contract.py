"""The data contract: every failure names table, column and rows; io writes all or nothing."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from core.contract import (
    TABLE_NAMES,
    ContractError,
    empty_table,
    validate,
    validate_all,
)
from core.tables import read_table, read_tables, write_tables

NOW = pd.Timestamp("2026-06-01", tz="UTC")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    accounts = pd.DataFrame(
        {
            "account_id": ["A000001", "A000002"],
            "domain": ["acme.com", "nova.io"],
            "industry": ["software", "retail"],
            "employee_count": [120, 4000],
            "annual_revenue": [1.2e7, 5.0e8],
            "country": ["US", "DE"],
            "created_at": [ts("2025-01-01"), ts("2025-06-01")],
        }
    )
    leads = pd.DataFrame(
        {
            "lead_id": ["L0000001", "L0000002", "L0000003"],
            "account_id": ["A000001", "A000001", "A000002"],
            "email": ["ana.silva@acme.com", "tom.lee@acme.com", "li.wang@nova.io"],
            "job_title": ["VP Eng", None, ""],
            "source": ["organic", "webinar", "referral"],
            "created_at": [ts("2026-01-05"), ts("2026-01-06"), ts("2026-02-01")],
        }
    )
    events = pd.DataFrame(
        {
            "event_id": ["E01", "E02", "E03", "E04", "E05"],
            "lead_id": ["L0000001", "L0000001", "L0000002", "L0000003", "L0000003"],
            "account_id": ["A000001", "A000001", "A000001", "A000002", "A000002"],
            "event_type": [
                "page_view",
                "pricing_view",
                "webinar_attended",
                "email_open",
                "demo_request",
            ],
            "timestamp": [
                ts("2026-01-05 10:00"),
                ts("2026-01-07"),
                ts("2026-01-08"),
                ts("2026-02-02"),
                ts("2026-02-03"),
            ],
            "properties": ['{"path": "/"}', None, None, '{"campaign": "n1"}', None],
        }
    )
    opportunities = pd.DataFrame(
        {
            "opportunity_id": ["O0000001"],
            "lead_id": ["L0000001"],
            "account_id": ["A000001"],
            "created_at": [ts("2026-01-20")],
            "amount": [25_000.0],
            "stage": ["qualified"],
        }
    )
    return {
        "accounts": accounts,
        "leads": leads,
        "events": events,
        "opportunities": opportunities,
        "subscriptions": empty_table("subscriptions"),
        "offer_exposures": empty_table("offer_exposures"),
    }


def raises(table: str, column: str, *fragments: str) -> pytest.RaisesContext:
    return pytest.raises(
        ContractError,
        match=re.escape(f"table '{table}', column '{column}'")
        + ".*"
        + ".*".join(re.escape(f) for f in fragments),
    )


# --- validate ------------------------------------------------------------------------------------


def test_valid_tables_pass_with_canonical_dtypes(tables):
    out = validate_all(tables, now=NOW)
    assert set(out) == set(TABLE_NAMES)
    assert str(out["events"]["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["accounts"]["employee_count"].dtype == np.int64
    assert out["accounts"]["annual_revenue"].dtype == np.float64
    assert out["leads"]["job_title"].tolist() == ["VP Eng", None, ""]  # None and "" both allowed
    assert len(out["subscriptions"]) == 0 and len(out["offer_exposures"]) == 0


def test_coerces_text_numbers_and_timestamps(tables):
    acc = tables["accounts"].astype({"employee_count": str, "annual_revenue": str})
    acc["created_at"] = ["2025-01-01T00:00:00", "2025-06-01T02:00:00+02:00"]  # naive means UTC
    out = validate("accounts", acc, now=NOW)
    assert out["employee_count"].tolist() == [120, 4000]
    assert out["created_at"].tolist() == [ts("2025-01-01"), ts("2025-06-01")]


def test_extra_columns_are_kept_after_the_contract(tables):
    leads = tables["leads"].assign(utm_campaign=["a", "b", "c"])
    out = validate("leads", leads, now=NOW)
    assert out.columns[-1] == "utm_campaign"
    assert out["utm_campaign"].tolist() == ["a", "b", "c"]


def test_missing_column_is_named(tables):
    with pytest.raises(ContractError, match=r"table 'events', column 'event_type': missing") as exc:
        validate("events", tables["events"].drop(columns="event_type"), now=NOW)
    assert exc.value.table == "events" and exc.value.column == "event_type"


def test_wrong_type_names_rows_and_values(tables):
    acc = tables["accounts"].astype({"employee_count": object})
    acc.loc[1, "employee_count"] = "lots"
    with raises("accounts", "employee_count", "expected integer", "row 1: 'lots'") as exc:
        validate("accounts", acc, now=NOW)
    assert exc.value.rows == [1]


def test_text_column_holding_numbers_is_rejected(tables):
    leads = tables["leads"].copy()
    leads["email"] = [1, 2, 3]
    with raises("leads", "email", "expected text", "row 0: 1"):
        validate("leads", leads, now=NOW)


def test_epoch_numbers_are_not_timestamps(tables):
    events = tables["events"].copy()
    events["timestamp"] = np.arange(5) + 1_767_000_000
    with raises("events", "timestamp", "expected timestamp", "epoch"):
        validate("events", events, now=NOW)


def test_unparseable_timestamp(tables):
    events = tables["events"].astype({"timestamp": object})
    events.loc[3, "timestamp"] = "last tuesday"
    with raises("events", "timestamp", "ISO 8601", "row 3: 'last tuesday'"):
        validate("events", events, now=NOW)


def test_nulls_and_empty_ids_are_rejected(tables):
    leads = tables["leads"].copy()
    leads.loc[0, "account_id"] = None
    leads.loc[2, "account_id"] = ""
    with raises("leads", "account_id", "null", "row 0: None", "row 2: ''") as exc:
        validate("leads", leads, now=NOW)
    assert exc.value.rows == [0, 2]


def test_duplicate_keys(tables):
    events = tables["events"].copy()
    events.loc[4, "event_id"] = "E02"
    with raises("events", "event_id", "duplicate", "row 4: 'E02'"):
        validate("events", events, now=NOW)
    accounts = pd.concat([tables["accounts"], tables["accounts"].iloc[[0]]], ignore_index=True)
    with raises("accounts", "account_id", "duplicate", "row 2: 'A000001'"):
        validate("accounts", accounts, now=NOW)


def test_future_timestamps(tables):
    events = tables["events"].copy()
    events.loc[2, "timestamp"] = ts("2026-07-01")
    with raises("events", "timestamp", "future", "row 2"):
        validate("events", events, now=NOW)
    validate("events", events, now=ts("2026-08-01"))  # fine once "now" is later


def test_future_is_checked_against_the_real_clock_by_default(tables):
    events = tables["events"].copy()
    events.loc[0, "timestamp"] = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    with raises("events", "timestamp", "future", "row 0"):
        validate("events", events)


def test_unknown_event_type_and_source(tables):
    events = tables["events"].copy()
    events.loc[1, "event_type"] = "pageview"
    with raises("events", "event_type", "unknown values", "page_view", "row 1: 'pageview'"):
        validate("events", events, now=NOW)
    leads = tables["leads"].copy()
    leads.loc[0, "source"] = "tiktok"
    with raises("leads", "source", "unknown values", "row 0: 'tiktok'"):
        validate("leads", leads, now=NOW)


def test_at_most_five_rows_are_quoted_but_all_are_counted(tables):
    events = pd.concat([tables["events"]] * 3, ignore_index=True)
    events["event_id"] = [f"E{i:02d}" for i in range(len(events))]
    events["event_type"] = "click"
    with pytest.raises(ContractError) as exc:
        validate("events", events, now=NOW)
    message = str(exc.value)
    assert "15 row(s) (first 5 shown)" in message
    assert message.count("row ") == 5  # five quoted rows
    assert exc.value.rows == [0, 1, 2, 3, 4]


def test_all_problems_are_reported_together(tables):
    events = tables["events"].copy()
    events.loc[0, "event_type"] = "nope"
    events.loc[1, "event_id"] = "E01"
    with pytest.raises(ContractError) as exc:
        validate("events", events, now=NOW)
    assert {(p.column, p.rows) for p in exc.value.problems} == {
        ("event_type", (0,)),
        ("event_id", (1,)),
    }


def test_ranges_and_ordering():
    subs = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "started_at": [ts("2026-01-01"), ts("2026-02-01")],
            "ended_at": [None, ts("2026-01-15")],
            "mrr": [100.0, -5.0],
            "seats": [3, 4],
            "plan": ["team"] * 2,
        }
    )
    with pytest.raises(ContractError) as exc:
        validate("subscriptions", subs, now=NOW)
    assert {(p.column, p.rows) for p in exc.value.problems} == {("mrr", (1,)), ("ended_at", (1,))}
    offers = pd.DataFrame(
        {
            "subject_id": ["L1"],
            "offer_id": ["o"],
            "exposed_at": [ts("2026-01-01")],
            "propensity": [0.0],
            "converted_at": [None],
        }
    )
    with raises("offer_exposures", "propensity", "> 0"):
        validate("offer_exposures", offers, now=NOW)


def test_unknown_table_is_refused(tables):
    with pytest.raises(ContractError, match="unknown table"):
        validate("contacts", tables["leads"])


# --- cross-table --------------------------------------------------------------------------------


def test_leads_must_point_at_known_accounts(tables):
    tables["leads"].loc[2, "account_id"] = "A999999"
    with raises("leads", "account_id", "not found in accounts.account_id", "row 2: 'A999999'"):
        validate_all(tables, now=NOW)


def test_events_and_opportunities_must_point_at_known_leads(tables):
    tables["events"].loc[3, "lead_id"] = "L0000404"
    tables["opportunities"].loc[0, "lead_id"] = "L0000405"
    with pytest.raises(ContractError) as exc:
        validate_all(tables, now=NOW)
    found = {(p.table, p.column, p.rows, p.values) for p in exc.value.problems}
    assert ("events", "lead_id", (3,), ("L0000404",)) in found
    assert ("opportunities", "lead_id", (0,), ("L0000405",)) in found


def test_event_account_must_be_the_leads_account(tables):
    tables["events"].loc[1, "account_id"] = "A000002"
    with raises("events", "account_id", "lead's account_id", "row 1: 'A000002'"):
        validate_all(tables, now=NOW)


# --- io -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_round_trip(tables, tmp_path, fmt):
    paths = write_tables(tables, tmp_path, fmt=fmt, now=NOW)
    assert sorted(p.name for p in paths.values()) == sorted(f"{n}.{fmt}" for n in TABLE_NAMES)
    back = read_tables(tmp_path, now=NOW)
    for name, df in validate_all(tables, now=NOW).items():
        expected = df
        if fmt == "csv":  # CSV cannot tell an empty title from a missing one
            expected = df.replace({"": None}) if name == "leads" else df
        pd.testing.assert_frame_equal(back[name], expected, check_dtype=True)


def test_write_is_all_or_nothing(tables, tmp_path):
    tables["events"].loc[0, "event_type"] = "bogus"
    with raises("events", "event_type", "bogus"):
        write_tables(tables, tmp_path / "raw", now=NOW)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_write_replaces_a_stale_file_of_the_other_format(tables, tmp_path):
    write_tables(tables, tmp_path, fmt="csv", now=NOW)
    write_tables(tables, tmp_path, fmt="parquet", now=NOW)
    assert not list(tmp_path.glob("*.csv"))
    assert not list(tmp_path.glob(".*tmp"))


def test_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"table 'events' not found at .*funnel data generate"
    ):
        read_table(tmp_path, "events")


def test_corrupt_file_names_the_table(tables, tmp_path):
    write_tables(tables, tmp_path, now=NOW)
    (tmp_path / "events.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ContractError, match=r"table 'events': cannot read .*events.parquet"):
        read_table(tmp_path, "events", now=NOW)


def test_bad_file_content_names_column_and_rows(tables, tmp_path):
    write_tables(tables, tmp_path, fmt="csv", now=NOW)
    path = tmp_path / "events.csv"
    path.write_text(path.read_text().replace("email_open", "email_opened"))
    with raises("events", "event_type", "row 3: 'email_opened'"):
        read_table(tmp_path, "events", now=NOW)


def test_read_checks_references_across_files(tables, tmp_path):
    write_tables(tables, tmp_path, now=NOW)
    leads = tables["leads"].iloc[:2]
    leads.to_parquet(tmp_path / "leads.parquet", index=False)  # bypasses write_tables on purpose
    with raises("events", "lead_id", "not found in leads.lead_id", "'L0000003'"):
        read_tables(tmp_path, now=NOW)


def test_failed_write_keeps_the_previous_files(tables, tmp_path):
    write_tables(tables, tmp_path, now=NOW)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    tables["accounts"].loc[0, "domain"] = "changed.com"  # valid change ...
    tables["events"].loc[0, "timestamp"] = ts("2027-01-01")  # ... next to an invalid one
    with raises("events", "timestamp", "future"):
        write_tables(tables, tmp_path, now=NOW)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_crash_while_writing_leaves_no_partial_files(tables, tmp_path, monkeypatch):
    from core import tables as io

    real = io._write_one

    def flaky(df, path, fmt):
        if ".events." in path.name:
            raise OSError("disk full")
        real(df, path, fmt)

    monkeypatch.setattr(io, "_write_one", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_tables(tables, tmp_path, now=NOW)
    assert list(tmp_path.iterdir()) == []

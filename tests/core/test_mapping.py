"""Bring your own event-contract tables through a YAML column mapping."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from core.tables import read_tables

RENAMES = {
    "accounts": {
        "account_id": "Id",
        "domain": "Website",
        "industry": "Industry",
        "employee_count": "Employees",
        "annual_revenue": "Revenue",
        "country": "Country",
        "created_at": "CreatedDate",
    },
    "leads": {
        "lead_id": "Id",
        "account_id": "CompanyId",
        "email": "Email",
        "job_title": "Title",
        "source": "LeadSource",
        "created_at": "CreatedDate",
    },
    "opportunities": {
        "opportunity_id": "Id",
        "lead_id": "ContactId",
        "account_id": "CompanyId",
        "created_at": "CreatedDate",
        "amount": "Amount",
        "stage": "StageName",
    },
}


@pytest.fixture(scope="module")
def crm_export(tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """A small synthetic funnel, written the way a CRM export looks: other column names, CSV
    with ';' for events, parquet for the rest."""
    from synthetic.generate import generate

    base = tmp_path_factory.mktemp("crm")
    generate(
        n_leads=300, seed=3, start="2026-01-05", weeks=10, out_dir=base / "gen", progress=False
    )
    original = read_tables(base / "gen" / "raw", ["accounts", "leads", "events", "opportunities"])
    export = base / "export"
    export.mkdir()
    for name, columns in RENAMES.items():
        original[name].rename(columns=columns).to_parquet(export / f"{name}.parquet")
    events = original["events"].rename(columns={"lead_id": "UserId", "timestamp": "ts"})
    events.to_csv(export / "track.csv", sep=";", index=False)
    return base, original


def mapping(base: Path, **changes) -> Path:
    tables = {
        name: {"file": f"export/{name}.parquet", "columns": cols} for name, cols in RENAMES.items()
    }
    tables["events"] = {
        "file": "export/track.csv",
        "columns": {"lead_id": "UserId", "timestamp": "ts"},
    }
    tree = {"tables": tables}
    for key, value in changes.items():
        tree[key] = value
    path = base / "mapping.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def run(base: Path, target: Path, *args: str):
    return CliRunner().invoke(main, ["--set", f"paths.data_dir={target}", "data", *args])


def test_mapped_tables_arrive_as_the_contract_and_features_build(crm_export, tmp_path) -> None:
    base, original = crm_export
    result = run(base, tmp_path / "own", "import", str(mapping(base)))
    assert result.exit_code == 0, result.output
    assert f"leads: {len(original['leads']):,} rows" in result.output
    got = read_tables(tmp_path / "own" / "raw", ["accounts", "leads", "events", "opportunities"])
    for name in ("accounts", "leads", "opportunities"):
        pd.testing.assert_frame_equal(
            got[name].reset_index(drop=True),
            original[name].reset_index(drop=True),
            check_dtype=False,
        )
    assert len(got["events"]) == len(original["events"])
    assert set(got["events"]["event_type"]) == set(original["events"]["event_type"])
    manifest = pd.read_json(tmp_path / "own" / "raw" / "manifest.json", typ="series")
    assert pd.Timestamp(manifest["start"]).weekday() == 0  # snapshots start on a Monday
    applied = CliRunner().invoke(
        main, ["--set", f"paths.data_dir={tmp_path / 'own'}", "features", "apply"]
    )
    assert applied.exit_code == 0, applied.output
    assert "lead_behavior:" in applied.output


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tables": {"leedz": {"file": "x.csv"}}}, r"tables\.leedz: not a contract table"),
        (
            {"tables": {**{n: {"file": "x"} for n in ("accounts", "leads", "events")}}},
            r"missing \['opportunities'\]",
        ),
        (
            {"tables": {"accounts": {"file": "x", "columns": {"acct": "Id"}}}},
            r"tables\.accounts\.columns\.acct: not a column of accounts",
        ),
        ({"start": 5, "tables": {}}, r"start: Input should be a valid string"),
    ],
)
def test_bad_mappings_fail_naming_the_key(crm_export, tmp_path, changes, message) -> None:
    base, _ = crm_export
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(changes))
    result = run(base, tmp_path / "own", "import", str(path))
    assert result.exit_code == 1 and re.search(message, result.output), result.output


def test_a_missing_column_or_a_contract_break_writes_nothing(crm_export, tmp_path) -> None:
    base, original = crm_export
    bad = mapping(base)
    tree = yaml.safe_load(bad.read_text())
    tree["tables"]["leads"]["columns"]["email"] = "EMail"
    bad.write_text(yaml.safe_dump(tree))
    result = run(base, tmp_path / "own", "import", str(bad))
    assert result.exit_code == 1 and "has no column(s) ['EMail']" in result.output
    dup = original["leads"].rename(columns=RENAMES["leads"])
    dup = pd.concat([dup, dup.head(2)])
    dup.to_parquet(base / "export" / "leads_dup.parquet")
    tree["tables"]["leads"] = {"file": "export/leads_dup.parquet", "columns": RENAMES["leads"]}
    bad.write_text(yaml.safe_dump(tree))
    result = run(base, tmp_path / "own", "import", str(bad))
    assert result.exit_code == 1 and "leads" in result.output and "lead_id" in result.output
    assert not (tmp_path / "own" / "raw").exists() or not any((tmp_path / "own" / "raw").iterdir())

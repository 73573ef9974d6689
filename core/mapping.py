"""Bring your own event-contract tables: a YAML mapping from a user's files and column names
onto the data contract (core/contract.py), so that everything downstream (features,
training, serving, jobs) runs unchanged.

```yaml
start: 2026-01-05          # optional: first snapshot (default: the Monday on or before the
end: 2026-10-05            # first lead); end default: the Monday after the newest event
tables:
  accounts:
    file: exports/companies.csv
    columns: {account_id: Id, domain: Website, industry: Industry, employee_count: Employees,
              annual_revenue: Revenue, country: Country, created_at: CreatedDate}
  leads:
    file: exports/contacts.parquet
    columns: {lead_id: Id, account_id: CompanyId, email: Email, job_title: Title,
              source: LeadSource, created_at: CreatedDate}
  events: {file: exports/track.csv, columns: {...}, separator: ";"}
```

Columns not named keep their name when they are contract columns; others are left out. With a
tracking plan the events are checked against it first (source ``import``): aliases renamed,
duplicate deliveries removed, rows that break the plan quarantined (core/tracking.py). The
tables are checked against the contract together (names, types, keys, references, order of
timestamps) and written only if all pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import Field, ValidationError

from core.config import ConfigError, Strict, format_validation_error, read_yaml_mapping
from core.contract import TABLES
from core.flat import read_flat
from core.tables import read_tables, write_tables
from core.tracking import TrackingPlan, check_events, write_quarantine


class TableMapping(Strict):
    file: Path
    columns: dict[str, str] = Field(default_factory=dict)  # contract column -> your column
    separator: Annotated[str, Field(min_length=1, max_length=1)] | None = None


class Mapping(Strict):
    start: str | None = None
    end: str | None = None
    tables: dict[str, TableMapping]


REQUIRED = ("accounts", "leads", "events", "opportunities")
SOURCE = "import"  # the tracking plan's source of these event loads


def read_mapping(path: Path) -> Mapping:
    tree = read_yaml_mapping(path, "table mapping")
    try:
        mapping = Mapping.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    problems = []
    for name, table in mapping.tables.items():
        if name not in TABLES:
            problems.append(f"  tables.{name}: not a contract table (tables: {sorted(TABLES)})")
            continue
        known = set(TABLES[name].column_names)
        for column in table.columns:
            if column not in known:
                problems.append(
                    f"  tables.{name}.columns.{column}: not a column of {name} ({sorted(known)})"
                )
    missing = [t for t in REQUIRED if t not in mapping.tables]
    if missing:
        problems.append(f"  tables: missing {missing} (required: {list(REQUIRED)})")
    if problems:
        raise ConfigError(f"invalid table mapping {path}:\n" + "\n".join(problems))
    return mapping


def mapped_tables(mapping: Mapping, base: Path) -> dict[str, pd.DataFrame]:
    """Each mapped file renamed onto its contract table's columns (not yet validated)."""
    out = {}
    for name, table in mapping.tables.items():
        path = table.file if table.file.is_absolute() else base / table.file
        raw = read_flat(path, table.separator, empty_is_missing=True)
        absent = [theirs for theirs in table.columns.values() if theirs not in raw.columns]
        if absent:
            raise ConfigError(
                f"tables.{name}: {path} has no column(s) {absent}; it has {list(raw.columns)}"
            )
        renamed = raw.rename(columns={theirs: ours for ours, theirs in table.columns.items()})
        keep = [c for c in TABLES[name].column_names if c in renamed.columns]
        out[name] = renamed[keep]
    return out


def _monday(ts: pd.Timestamp) -> pd.Timestamp:
    day = ts.tz_convert("UTC").normalize() if ts.tzinfo else ts.normalize().tz_localize("UTC")
    return day - pd.Timedelta(days=day.weekday())


def import_tables(
    mapping_path: Path,
    raw_dir: Path,
    *,
    plan: TrackingPlan | None = None,
    quarantine: Path | None = None,
) -> dict[str, int]:
    """Read, rename, validate and write the mapped tables and their manifest; rows per table.
    With a ``plan`` the events are checked against it first and the rows it keeps out are
    stored in ``quarantine`` (a folder) once the tables are written."""

    mapping = read_mapping(mapping_path)
    tables = mapped_tables(mapping, mapping_path.parent)
    checked = None
    if plan is not None:
        if quarantine is None:
            raise ValueError("a tracking plan needs a quarantine folder")
        checked = check_events(tables["events"], plan, SOURCE)
        tables["events"] = checked.admitted
    written = write_tables(tables, raw_dir)  # validates all together first; nothing half-written
    if checked is not None:
        write_quarantine(checked, quarantine, plan_file=plan.source_file)

    valid = read_tables(raw_dir, list(written))
    start = pd.Timestamp(mapping.start) if mapping.start else valid["leads"]["created_at"].min()
    newest = max(valid["events"]["timestamp"].max(), valid["leads"]["created_at"].max())
    end = pd.Timestamp(mapping.end) if mapping.end else _monday(newest) + pd.Timedelta(days=7)
    manifest = {
        "source": str(mapping_path),
        "start": _monday(start).isoformat(),
        "end": (end if end.tzinfo else end.tz_localize("UTC")).isoformat(),
        "imported_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    (Path(raw_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {name: len(frame) for name, frame in valid.items()}

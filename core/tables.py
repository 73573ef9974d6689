"""Reading and writing the raw tables, validated against the contract on every write and load.

Files live at ``<raw_dir>/<table>.parquet`` (or ``.csv``; when both exist the parquet file wins).
Writes are all-or-nothing: every table is validated first, written to a temporary file in the
same directory and only then moved into place with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from core.contract import (
    TABLE_NAMES,
    TABLES,
    ContractError,
    Problem,
    check_references,
    validate,
    validate_all,
)
from core.errors import MissingInputError

Format = Literal["parquet", "csv"]
SUFFIXES: tuple[str, ...] = (".parquet", ".csv")


def table_path(raw_dir: str | Path, name: str) -> Path | None:
    """The file holding table ``name`` in ``raw_dir`` (parquet first), or None."""
    for suffix in SUFFIXES:
        path = Path(raw_dir) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def write_tables(
    tables: Mapping[str, pd.DataFrame],
    raw_dir: str | Path,
    *,
    fmt: Format = "parquet",
    now: object = None,
) -> dict[str, Path]:
    """Validate all ``tables`` (each and across), then write them atomically; returns the paths.

    If any table breaks the contract a ``ContractError`` is raised and nothing is written.
    A file of the same table in the other format is removed so a later read cannot pick it up.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    valid = validate_all(tables, now=now)
    raw = Path(raw_dir)
    raw.mkdir(parents=True, exist_ok=True)
    temps: dict[str, Path] = {}
    try:
        for name, df in valid.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".{fmt}.tmp", dir=raw)
            os.close(fd)
            temps[name] = Path(tmp)
            _write_one(df, temps[name], fmt)
    except BaseException:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise
    written: dict[str, Path] = {}
    for name, tmp in temps.items():
        final = raw / f"{name}.{fmt}"
        os.replace(tmp, final)
        written[name] = final
        for suffix in SUFFIXES:
            other = raw / f"{name}{suffix}"
            if other != final:
                other.unlink(missing_ok=True)
    return written


def _write_one(df: pd.DataFrame, path: Path, fmt: Format) -> None:
    if fmt == "parquet":
        df.to_parquet(path, index=False, engine="pyarrow")
    else:
        df.to_csv(path, index=False)


def read_table(raw_dir: str | Path, name: str, *, now: object = None) -> pd.DataFrame:
    """Load table ``name`` from ``raw_dir`` and validate it (``ContractError`` names the rows)."""
    if name not in TABLES:
        raise ContractError(
            [Problem(name, None, f"unknown table; the contract has {', '.join(TABLE_NAMES)}")]
        )
    path = table_path(raw_dir, name)
    if path is None:
        raise MissingInputError(
            f"table '{name}' not found at {Path(raw_dir) / name}.parquet (or .csv); "
            "run `funnel data generate` first"
        )
    try:
        if path.suffix == ".parquet":
            df = _read_parquet(path, TABLES[name].key)
        else:
            # read contract columns as text so validation sees what the file holds (ids like
            # "00123" keep their zeros); only empty fields are null
            text_cols = {c: str for c in TABLES[name].column_names}
            df = pd.read_csv(path, dtype=text_cols, keep_default_na=False, na_values=[""])
    except Exception as exc:  # a corrupt or unreadable file: say which table and file
        raise ContractError(
            [Problem(name, None, f"cannot read {path}: {type(exc).__name__}: {exc}")]
        ) from exc
    return validate(name, df, now=now)


def _read_parquet(path: Path, key: str | None) -> pd.DataFrame:
    """Column by column: repeated strings (ids, types) share one Python object each, while the
    unique key skips that deduplication, which costs seconds and saves nothing on unique ids."""
    table = pq.read_table(path)
    columns = {
        c: table.column(c).to_pandas(deduplicate_objects=(c != key))
        for c in table.column_names
        if not c.startswith("__index_level_")  # a pandas index saved by accident
    }
    return pd.DataFrame(columns, copy=False)


def read_tables(
    raw_dir: str | Path, names: Iterable[str] | None = None, *, now: object = None
) -> dict[str, pd.DataFrame]:
    """Load and validate several tables (default: all six), then check references between them."""
    wanted = list(TABLE_NAMES if names is None else names)
    tables = {name: read_table(raw_dir, name, now=now) for name in wanted}
    check_references(tables)
    return tables


def read_manifest(raw_dir: str | Path) -> dict[str, Any]:
    """The raw tables' manifest (``manifest.json``): the data's start and end, and its counts."""
    path = Path(raw_dir) / "manifest.json"
    if not path.is_file():
        raise MissingInputError(f"{path} not found; run `funnel data generate` first")
    return json.loads(path.read_text())


def data_window(raw_dir: str | Path) -> tuple[str, str]:
    """The first and last instant of the raw data, as the manifest records them."""
    manifest = read_manifest(raw_dir)
    return manifest["start"], manifest["end"]

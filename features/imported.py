"""Feast objects of an imported flat table (``funnel import``): an entity keyed by
``<name>_id``, a file source over ``<data_dir>/imports/<name>/features.parquet``, a feature view
with the inferred schema, and the feature service ``<name>_v1``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from features.entities import OWNER

# imported rows stay valid: a flat table's row is what is known about the unit
IMPORT_TTL = timedelta(days=36_500)


def imported_objects(data_dir: Path, name: str) -> list[Any]:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    folder = Path(data_dir) / "imports" / name
    meta = json.loads((folder / "dataset.json").read_text())
    report, key = meta["report"], meta["entity_key"]
    tags = {"team": "data-science", "family": "imported", "dataset": name}
    entity = Entity(
        name=name,
        join_keys=[key],
        value_type=ValueType.STRING,
        owner=OWNER,
        tags=tags,
        description=f"A unit of the imported table '{name}', keyed by {key}.",
    )
    source = FileSource(
        name=f"{name}_source",
        path=str((folder / "features.parquet").resolve()),
        timestamp_field="event_timestamp",
        owner=OWNER,
        tags=tags,
        description=f"The imported table '{name}' ({meta['spec']['file']}).",
    )
    schema = [Field(name=key, dtype=String)] + [
        Field(name=c, dtype=String if report["types"][c] == "categorical" else Float64)
        for c in report["features"]
    ]
    view = FeatureView(
        name=f"{name}_fv",
        entities=[entity],
        ttl=IMPORT_TTL,
        schema=schema,
        source=source,
        online=True,
        owner=OWNER,
        tags=tags,
        description=f"Every feature column of the imported table '{name}', with inferred types.",
    )
    service = FeatureService(
        name=meta["feature_service"],
        features=[view],
        owner=OWNER,
        tags={**tags, "version": "1", "task": report["task"]},
        description=f"The '{report['task']}' model of the imported table '{name}', v1.",
    )
    return [entity, source, view, service]


def all_imported_objects(data_dir: Path) -> list[Any]:
    """The objects of every imported table under ``<data_dir>/imports``."""
    root = Path(data_dir) / "imports"
    names = sorted(p.parent.name for p in root.glob("*/dataset.json")) if root.is_dir() else []
    return [obj for name in names for obj in imported_objects(data_dir, name)]

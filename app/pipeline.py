"""The wiring of configuration to the feature store and the service: the steps the CLI, the
demo and the notebooks share."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from core.config import Config
from core.flat import ImportReport, ImportSpec, write_import
from core.tables import data_window, read_tables, table_path
from features.build import build_feature_tables
from features.imported import imported_objects
from features.store import apply, feature_store, materialize, quiet_feast


def apply_features(cfg: Config) -> dict[str, int]:
    """Build the point-in-time feature tables from the raw tables, then apply definitions."""
    start, end = data_window(cfg.raw_dir)
    # The contract is checked on every load: a bad table stops here, before anything is written.
    names = ["accounts", "leads", "events", "opportunities"]
    if table_path(cfg.raw_dir, "subscriptions") is not None:  # a funnel with no customers yet
        names.append("subscriptions")
    tables = read_tables(cfg.raw_dir, names)
    counts = build_feature_tables(
        tables,
        cfg.features_dir,
        start,
        end,
        cfg.feature_store.snapshot_every_days,
        engine=cfg.feature_store.engine,
        spark_master=cfg.feature_store.spark_master,
    )
    apply(feature_store(cfg), cfg.data_dir)
    return counts


def materialize_features(cfg: Config) -> str:
    """Load every feature row up to the data's end into the online store."""
    _, end = data_window(cfg.raw_dir)
    materialize(feature_store(cfg), end)
    return end


def import_flat(cfg: Config, spec: ImportSpec) -> ImportReport:
    """Read, type, check and guard the file, write the dataset, register it in Feast."""
    report = write_import(cfg, spec)
    with quiet_feast():
        feature_store(cfg).apply(imported_objects(cfg.data_dir, spec.name))
    return report


# the name serving.service gives its @bentoml.service: BentoML's settings of the service are
# keyed by it (services.<name>.workers)
SERVICE_NAME = "funnel"


def serve_command(
    cfg: Config, config_path: Path | None, overrides: tuple[str, ...], port: int | None
) -> tuple[list[str], dict[str, str]]:
    """The `bentoml serve` command line and environment for this config: ``serving.workers``
    worker processes and ``serving.access_log``, through BentoML's ``BENTOML_CONFIG_OPTIONS``."""
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    env = dict(os.environ)
    env["FUNNEL_CONFIG"] = str(config_path or "")
    env["FUNNEL_OVERRIDES"] = "\n".join(overrides)
    options = [f"services.{SERVICE_NAME}.workers={cfg.serving.workers}"]
    if not cfg.serving.access_log:
        options.append(f"services.{SERVICE_NAME}.logging.access.enabled=false")
    given = env.get("BENTOML_CONFIG_OPTIONS", "")
    env["BENTOML_CONFIG_OPTIONS"] = " ".join([given, *options]).strip()
    cmd = [
        bentoml,
        "serve",
        "serving.service:FunnelService",
        "--host",
        cfg.serving.host,
        "--port",
        str(port or cfg.serving.port),
        "--working-dir",
        str(cfg.root),
    ]
    return cmd, env

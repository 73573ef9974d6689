"""Thin jobs that wire configuration to the feature store and the service."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from core.config import Config


def feature_store(cfg: Config) -> Any:
    from core.pg import ensure_schema
    from features.store import get_store

    ensure_schema(str(cfg.registry["path"]))
    return get_store(
        cfg.data_dir, cfg.online_store, cfg.registry, project=cfg.feature_store.project
    )


def data_window(cfg: Config) -> tuple[str, str]:
    from training.train import read_manifest

    manifest = read_manifest(cfg.raw_dir)
    return manifest["start"], manifest["end"]


def apply_features(cfg: Config) -> dict[str, int]:
    """Build the point-in-time feature tables from the raw tables, then apply definitions."""
    from core.tables import read_tables, table_path
    from features.build import build_feature_tables
    from features.store import apply

    start, end = data_window(cfg)
    # The contract is checked on every load: a bad table stops here, before anything is written.
    names = ["accounts", "leads", "events", "opportunities"]
    if table_path(cfg.raw_dir, "subscriptions") is not None:  # a funnel with no customers yet
        names.append("subscriptions")
    tables = read_tables(cfg.raw_dir, names)
    counts = build_feature_tables(
        tables, cfg.features_dir, start, end, cfg.feature_store.snapshot_every_days
    )
    apply(feature_store(cfg), cfg.data_dir)
    return counts


def materialize_features(cfg: Config) -> str:
    """Load every feature row up to the data's end into the online store."""
    from features.store import materialize

    _, end = data_window(cfg)
    materialize(feature_store(cfg), end)
    return end


def serve_command(
    cfg: Config, config_path: Path | None, overrides: tuple[str, ...], port: int | None
) -> tuple[list[str], dict[str, str]]:
    """The `bentoml serve` command line and environment for this config."""
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    env = dict(os.environ)
    env["FUNNEL_CONFIG"] = str(config_path or "")
    env["FUNNEL_OVERRIDES"] = "\n".join(overrides)
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

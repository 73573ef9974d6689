"""The Feast feature store, configured from funnel settings instead of feature_store.yaml.

Feast is imported inside the functions: `import feast` takes ~6 s, and CLI commands that never
touch the store should not pay it.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import Config
from core.pg import ensure_schema
from features.spark_settings import DEFAULT_SHUFFLE_PARTITIONS, SESSION_CONF

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, RepoConfig

PROJECT = "funnel"
FEATURES_DIR = Path(__file__).resolve().parent
ENTITY_TIMESTAMP = "event_timestamp"
_ROW_ID = "__funnel_row__"


@contextmanager
def quiet_feast() -> Iterator[None]:
    """Silence known, harmless warnings that break `pytest -W error`: Feast's "on demand
    feature view is experimental" on apply, ibis's fetch_arrow_table deprecation (duckdb 2),
    and Feast's "experimental" notes on its Spark offline store and source."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="On demand feature view is an experimental", category=RuntimeWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message="The spark offline store is an experimental", category=RuntimeWarning
        )
        warnings.filterwarnings(
            "ignore",
            message="The spark data source API is an experimental",
            category=RuntimeWarning,
        )
        yield


def repo_config(
    data_dir: Path,
    online: dict[str, Any] | None = None,
    registry: dict[str, Any] | None = None,
    *,
    project: str = PROJECT,
    offline: dict[str, Any] | None = None,
) -> RepoConfig:
    """A Feast RepoConfig: DuckDB offline store, the given online store and registry.

    online: {"type": "sqlite", "path": ...} (default <data_dir>/online_store.db) or
    {"type": "redis", "connection_string": "127.0.0.1:6379"} (given ``REDIS_DEFAULTS`` for the
    timeouts it does not set). registry: {"path": file}
    (default <data_dir>/registry.db) or {"registry_type": "sql", "path": "postgresql+psycopg://..."}.
    A registry "type" key is read as "registry_type"; a None path means the default. Relative
    file paths are taken from the current directory and made absolute here, because Feast
    would otherwise resolve them against the features/ folder. `project` separates several
    deployments sharing one SQL registry or Redis. `offline` replaces the DuckDB offline store
    (``offline_store("spark")`` for Spark; the benchmarks compare DuckDB with Feast's default,
    ``{"type": "file"}``).
    """
    from feast import RepoConfig

    data_dir = Path(data_dir)
    online = {k: v for k, v in (online or {}).items() if v is not None}
    online.setdefault("type", "sqlite")
    if online["type"] == "sqlite":
        online["path"] = str(Path(online.get("path") or data_dir / "online_store.db").resolve())
    elif online["type"] == "redis" and "connection_string" in online:
        online["connection_string"] = redis_connection_string(online["connection_string"])
    registry = {k: v for k, v in (registry or {}).items() if v is not None}
    if "type" in registry:
        registry["registry_type"] = registry.pop("type")
    registry.setdefault("registry_type", "file")
    if registry["registry_type"] == "file":
        registry["path"] = str(Path(registry.get("path") or data_dir / "registry.db").resolve())
    else:
        registry["path"] = str(registry["path"])
    return RepoConfig(
        project=project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store=offline or {"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=FEATURES_DIR,
    )


# Bounds on every Redis call. Without them redis-py waits forever on a host that does not
# answer, and its default retry policy (3 retries, exponential backoff up to 10 s) turns even
# a refused connection into seconds of waiting. Serving answers 503 instead and the client
# retries. A key the connection string sets itself wins (values are JSON, as Feast parses them).
REDIS_DEFAULTS = {"socket_connect_timeout": "0.5", "socket_timeout": "1.0", "retry": "null"}


def redis_connection_string(connection_string: str) -> str:
    """``host:port[,key=value...]`` with ``REDIS_DEFAULTS`` added for the keys it does not set:
    ``"127.0.0.1:6379,socket_timeout=3"`` keeps its read timeout and gets the rest."""
    given = {part.split("=", 1)[0].strip() for part in connection_string.split(",") if "=" in part}
    extra = [f"{key}={value}" for key, value in REDIS_DEFAULTS.items() if key not in given]
    return ",".join([connection_string, *extra])


def offline_store(engine: str = "duckdb", spark_master: str = "local[*]") -> dict[str, Any]:
    """The offline store of a feature engine: DuckDB, or Feast's Spark offline store (which
    reuses the process's Spark session, or starts one with these settings)."""
    if engine == "duckdb":
        return {"type": "duckdb"}
    if engine == "spark":
        conf = {"spark.master": spark_master, **SESSION_CONF}
        conf["spark.sql.shuffle.partitions"] = str(DEFAULT_SHUFFLE_PARTITIONS)
        return {"type": "spark", "spark_conf": conf}
    raise ValueError(f"unknown feature engine {engine!r}: use one of duckdb, spark")


def feature_store(cfg: Config) -> FeatureStore:
    """The feature store of a funnel config (its registry's PostgreSQL schema created if
    needed), with the offline store of its feature engine."""
    ensure_schema(str(cfg.registry["path"]))
    fs = cfg.feature_store
    return get_store(
        cfg.data_dir,
        cfg.online_store,
        cfg.registry,
        project=fs.project,
        offline=offline_store(fs.engine, fs.spark_master),
    )


def get_store(
    data_dir: Path,
    online: dict[str, Any] | None = None,
    registry: dict[str, Any] | None = None,
    *,
    project: str = PROJECT,
    offline: dict[str, Any] | None = None,
) -> FeatureStore:
    """A FeatureStore over `repo_config(...)`; nothing is created until `apply`."""
    from feast import FeatureStore

    config = repo_config(data_dir, online, registry, project=project, offline=offline)
    return FeatureStore(repo_path=str(FEATURES_DIR), config=config)


def apply(store: FeatureStore, data_dir: Path) -> list[str]:
    """Register the repository's objects (reading `<data_dir>/features`) in-process, with the
    source type the store's offline store reads (SparkSource for Spark, else FileSource).

    Objects are applied, not diffed: one renamed in code stays in the registry until deleted.
    Returns the names applied.
    """
    from features.repo import feature_objects  # the definitions import Feast (about 6 s)

    engine = "spark" if store.config.offline_store.type == "spark" else "duckdb"
    with quiet_feast():
        objects = feature_objects(Path(data_dir), engine)
        store.apply(objects)
    _SERVICE_CACHE.pop(store, None)
    return [obj.name for obj in objects]


def materialize(store: FeatureStore, end: datetime, start: datetime | None = None) -> None:
    """Load the newest row per key into the online store, view by view.

    Online reads do not enforce TTLs, so each view is materialized over [end - its ttl, end]
    (or [start, end]): a key whose newest row is older than the TTL is left out rather than
    served stale. Both bounds are inclusive: the row stamped exactly `end` (the last tick) is
    loaded.
    """
    end_ts = _utc(end)
    for view in store.list_feature_views():
        view_start = _utc(start) if start is not None else end_ts - (view.ttl or timedelta(0))
        if view_start >= end_ts:  # ttl 0 means "no limit" in Feast
            view_start = end_ts - timedelta(days=3650)
        with quiet_feast():
            store.materialize(
                start_date=view_start.to_pydatetime(),
                end_date=end_ts.to_pydatetime(),
                feature_views=[view.name],
            )


def _utc(value: object) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class _ServiceInfo:
    service: FeatureService
    features: list[str]  # in the service's order
    request_fields: list[str]  # request-time inputs of its on-demand views
    timestamp_refs: dict[str, str]  # stored view name -> one of its features (for __ts)


# Registry lookups cost ~1-3 ms each; the online path must not pay them per request.
_SERVICE_CACHE: weakref.WeakKeyDictionary[Any, dict[str, _ServiceInfo]] = (
    weakref.WeakKeyDictionary()
)


def _service_info(store: FeatureStore, service_name: str) -> _ServiceInfo:
    per_store = _SERVICE_CACHE.setdefault(store, {})
    if service_name not in per_store:
        service = store.get_feature_service(service_name)
        odfvs = {odfv.name: odfv for odfv in store.list_on_demand_feature_views()}
        request_fields: list[str] = []
        timestamp_refs: dict[str, str] = {}
        for projection in service.feature_view_projections:
            if projection.name in odfvs:
                for source in odfvs[projection.name].source_request_sources.values():
                    request_fields.extend(f.name for f in source.schema)
            elif projection.features:
                timestamp_refs[projection.name] = projection.features[0].name
        per_store[service_name] = _ServiceInfo(
            service=service,
            features=[f.name for p in service.feature_view_projections for f in p.features],
            request_fields=request_fields,
            timestamp_refs=timestamp_refs,
        )
    return per_store[service_name]


def historical_features(
    store: FeatureStore, entity_df: pd.DataFrame, service_name: str = "mql_v1"
) -> pd.DataFrame:
    """Point-in-time features for every entity row, in the input's row order.

    entity_df needs lead_id, account_id and event_timestamp (tz-aware or naive UTC); a missing
    `request_job_title` means "use the stored title". Raises if Feast drops or adds a row.
    """
    with quiet_feast():  # reading a SparkSource from the registry warns
        info = _service_info(store, service_name)
    entities = entity_df.copy()
    entities[ENTITY_TIMESTAMP] = pd.to_datetime(entities[ENTITY_TIMESTAMP], utc=True)
    for name in info.request_fields:
        if name not in entities.columns:
            entities[name] = ""
        entities[name] = entities[name].fillna("").astype(str)
    if _ROW_ID in entities.columns:
        raise ValueError(f"entity_df must not have a column named {_ROW_ID}")
    # Feast's stores do not keep row order: tag each row and restore the order afterwards.
    entities[_ROW_ID] = range(len(entities))
    with quiet_feast():
        out = store.get_historical_features(entity_df=entities, features=info.service).to_df()
    if len(out) != len(entities) or not out[_ROW_ID].is_unique:
        raise RuntimeError(
            f"historical retrieval returned {len(out)} rows for {len(entities)} entity rows"
        )
    out = out.sort_values(_ROW_ID, kind="stable").drop(columns=_ROW_ID).reset_index(drop=True)
    out.index = entity_df.index
    return out


def online_features(
    store: FeatureStore,
    rows: Sequence[dict[str, Any]],
    service_name: str = "mql_v1",
) -> pd.DataFrame:
    """Online features for entity rows (lead_id, account_id, optional request_job_title).

    One output row per input row, in order: the entity columns, the service's features in its
    order and, per (stored) feature view, `<view>__event_timestamp` (UTC; NaT when the key was
    not found) so callers can judge freshness.
    """
    info = _service_info(store, service_name)
    entity_rows = []
    for row in rows:
        row = dict(row)
        for name in info.request_fields:
            if not isinstance(row.get(name), str):
                row[name] = ""
        entity_rows.append(row)
    response = store.get_online_features(features=info.service, entity_rows=entity_rows)
    data = response.to_dict(include_event_timestamps=True)
    # Feast returns features in no particular order: entity keys first, then the service's order.
    wanted = set(info.features)
    columns = {k: v for k, v in data.items() if not k.endswith("__ts") and k not in wanted}
    columns.update((name, data[name]) for name in info.features if name in data)
    for view, feature in info.timestamp_refs.items():
        seconds = np.asarray(data.get(f"{feature}__ts", []), dtype="int64")
        # Feast reports 0 (the epoch) for keys it did not find.
        stamps = pd.to_datetime(seconds, unit="s", utc=True)
        columns[f"{view}__event_timestamp"] = stamps.where(seconds > 0)
    return pd.DataFrame(columns)

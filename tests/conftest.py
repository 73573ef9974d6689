"""Shared fixtures: configs pointed at tmp paths, and one small end-to-end pipeline per session
(generate -> features -> train -> materialize) that the slower tests share."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.config import Config, load_config

if TYPE_CHECKING:
    from training.nbo import NboResult
    from training.train import TrainResult

ROOT = Path(__file__).resolve().parents[1]
# the tiny pipeline and HTTP client fixtures of the serving and activation tests
pytest_plugins = ["tiny_pipeline"]
# Small enough for 2 cores, big enough that test-week AUCs are not noise.
PIPELINE_LEADS = int(os.environ.get("FUNNEL_TEST_LEADS", "5000"))
PIPELINE_TRIALS = int(os.environ.get("FUNNEL_TEST_TRIALS", "6"))


def make_config(base: Path, *overrides: str, profile: str = "local.yaml") -> Config:
    """The shipped config with every path moved under ``base``."""
    return load_config(
        ROOT / "configs" / profile,
        [f"paths.data_dir={base / 'data'}", f"paths.mlruns_dir={base / 'mlruns'}", *overrides],
    )


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def production_services() -> None:
    """PostgreSQL and Redis on 127.0.0.1. In CI their absence is a failure, elsewhere a skip."""
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
        if not reachable("127.0.0.1", port)
    ]
    if missing:
        message = f"{' and '.join(missing)} not reachable on 127.0.0.1"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}: the production-profile tests need them in CI")
        pytest.skip(message)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local[2] Spark session per module that asks for it (one shuffle partition: the
    tests' tables are small). Without pyspark or Java a skip, in CI a failure."""
    from features.spark import SparkUnavailableError, check_spark_available, spark_session

    try:
        check_spark_available()
    except SparkUnavailableError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{exc}: the Spark tests need it in CI")
        pytest.skip(str(exc))
    session = spark_session("local[2]", shuffle_partitions=1)
    yield session
    session.stop()


@dataclass(frozen=True)
class PipelineRun:
    cfg: Config
    result: TrainResult
    churn: TrainResult
    nbo: NboResult


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """Trained MQL, churn and next-best-offer champions, features applied and materialized,
    on the embedded default. The offers' true effects are doubled (a strong known effect for
    the uplift quality test)."""
    from app.pipeline import apply_features, materialize_features
    from synthetic.generate import generate
    from training.nbo import train_nbo
    from training.train import train_churn, train_mql

    base = tmp_path_factory.mktemp("pipeline")
    cfg = make_config(base, "serving.api_key=test-key")
    generate(
        n_leads=PIPELINE_LEADS,
        seed=11,
        start=cfg.data.start,
        weeks=cfg.data.weeks,
        out_dir=cfg.data_dir,
        progress=False,
        offer_effect_scale=2.0,
    )
    apply_features(cfg)
    result = train_mql(cfg, progress=False, n_trials=PIPELINE_TRIALS)
    churn = train_churn(cfg, progress=False, n_trials=PIPELINE_TRIALS)
    nbo = train_nbo(cfg, progress=False)
    materialize_features(cfg)
    return PipelineRun(cfg, result, churn, nbo)


@pytest.fixture(scope="session")
def config_at():
    """``config_at(base, *overrides)``: the shipped local config with its paths under ``base``."""
    return make_config

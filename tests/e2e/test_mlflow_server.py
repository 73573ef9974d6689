"""The production profile through an MLflow tracking server: `mlflow server` on PostgreSQL with
the artifacts it serves (`--serve-artifacts`), so that trainers, services and jobs on machines
without a shared disk share the models. Training tunes in two worker processes, every trial a
child run of the one training run; the model is served from the server and promoted through it.

Needs PostgreSQL and Redis on 127.0.0.1 (the shared fixture checks both): skipped elsewhere when
they are down, failed in CI. The server's tables live in a fresh schema, dropped at the end.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from app.process import free_port, start, stop

pytestmark = [pytest.mark.e2e, pytest.mark.production]

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MLFLOW = Path(sys.executable).parent / "mlflow"
N_TRIALS = 4


def schema_url(schema: str) -> str:
    return f"{PG}?options=-csearch_path%3D{schema}"


def drop_schemas(*schemas: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(PG)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("SET lock_timeout = '5s'"))
        for schema in schemas:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def wait_healthy(url: str, proc, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server not healthy after {timeout_s:.0f}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def tracking_server(production_services, tmp_path_factory):
    """`mlflow server` on a free port: runs and registry in a fresh PostgreSQL schema,
    artifacts under its own folder. (url, artifacts folder)."""
    from core.pg import ensure_schema

    base = tmp_path_factory.mktemp("mlflow-server")
    schema = f"funnel_test_server_{uuid.uuid4().hex[:8]}"
    ensure_schema(schema_url(schema))
    artifacts, log, port = base / "served-artifacts", base / "server.log", free_port()
    cmd = [
        str(MLFLOW), "server", "--backend-store-uri", schema_url(schema), "--serve-artifacts",
        "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    proc = start(cmd, env={"PATH": str(MLFLOW.parent), "HOME": str(base)}, log_path=log, cwd=base)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        yield url, artifacts
    finally:
        stop(proc)
        drop_schemas(schema)


@pytest.fixture(scope="module")
def trained(tracking_server, config_at, tmp_path_factory):
    """generate -> features (local feature store: this test is about the tracking server) ->
    train MQL with two tuning workers, the study on PostgreSQL and the runs on the server."""
    import mlflow

    from app.pipeline import apply_features, materialize_features
    from synthetic.generate import generate
    from training.train import train_mql

    url, _ = tracking_server
    run = uuid.uuid4().hex[:8]
    base = tmp_path_factory.mktemp("through-server")
    optuna_schema = f"funnel_test_optuna_{run}"
    overrides = [
        f"tracking.uri={url}", f"optuna.storage={schema_url(optuna_schema)}",
        "feature_store.online_store={type: sqlite}", "feature_store.registry={type: file}",
        f"training.mql.registered_model=funnel-mql-server-{run}",
        f"training.mql.experiment=funnel-mql-server-{run}",
        "training.mql.split.validation_weeks=3", "training.mql.split.test_weeks=3",
        "training.mql.split.warmup_weeks=1", "training.mql.num_threads=1",
        "training.mql.num_boost_round=200", "training.mql.early_stopping_rounds=20",
    ]  # fmt: skip
    cfg = config_at(base, *overrides, profile="production.yaml")
    generate(n_leads=800, seed=5, start=cfg.data.start, weeks=16, out_dir=cfg.data_dir,
             progress=False)  # fmt: skip
    apply_features(cfg)
    materialize_features(cfg)
    previous = mlflow.get_tracking_uri()
    try:
        yield cfg, overrides, train_mql(cfg, progress=False, n_trials=N_TRIALS, workers=2)
    finally:
        mlflow.set_tracking_uri(previous)
        drop_schemas(optuna_schema)


def test_two_workers_tune_one_study_under_one_run(trained):
    import mlflow
    import optuna

    cfg, _, result = trained
    study = optuna.load_study(study_name=f"mql-{result.run_id}", storage=cfg.optuna_storage)
    assert [t.number for t in study.trials] == list(range(N_TRIALS))
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    children = mlflow.search_runs(
        experiment_names=[cfg.training.mql.experiment],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
    )
    assert sorted(children["tags.optuna_trial"].astype(int)) == list(range(N_TRIALS))


def test_artifacts_go_to_the_server_not_a_local_path(trained, tracking_server):
    from mlflow import MlflowClient

    cfg, _, result = trained
    _, served = tracking_server
    run = MlflowClient().get_run(result.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert list(served.rglob("MLmodel")), "the model's files are not in the server's store"
    assert list(served.rglob("tuning-data.npz")), "the tuning matrices are not on the server"
    local = cfg.paths.mlruns_dir
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))


def test_serve_and_promote_through_the_server(trained):
    """A second version registered from the same run, crowned with `funnel promote`; the
    champion loads from the server and scores leads from the online store."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from app.cli import main
    from features.store import feature_store
    from serving.schemas import LeadScoreRequest
    from serving.scorer import LeadScorer
    from training.registry import load_model

    cfg, overrides, result = trained
    assert result.became_champion
    name = cfg.training.mql.registered_model
    client = MlflowClient()
    first = client.get_model_version(name, result.version)
    second = mlflow.register_model(first.source, name).version  # the same model, again
    args = ["--config", str(cfg.root / "configs" / "production.yaml")]
    for item in (f"paths.data_dir={cfg.data_dir}", f"paths.mlruns_dir={cfg.paths.mlruns_dir}",
                 *overrides):  # fmt: skip
        args += ["--set", item]
    promoted = CliRunner().invoke(main, [*args, "promote", "mql", str(second), "--reason", "e2e"])
    assert promoted.exit_code == 0, promoted.output
    assert f"version {second} of {name} crowned champion" in promoted.output
    assert client.get_model_version_by_alias(name, "champion").version == str(second)
    assert client.get_model_version_by_alias(name, "previous_champion").version == result.version

    model = load_model(cfg, name)
    assert model.version == f"{name}/{second}"
    leads = pd.read_parquet(cfg.raw_dir / "leads.parquet")["lead_id"].head(10)
    scores, not_found = LeadScorer(feature_store(cfg), model).score(
        [LeadScoreRequest(lead_id=i) for i in leads]
    )
    assert not_found == []
    assert all(0 < s.probability < 1 and s.model_version == model.version for s in scores)

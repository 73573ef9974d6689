"""The whole pipeline on the production profile (configs/production.yaml): Redis online store,
Feast registry, MLflow and Optuna on PostgreSQL. Only the config differs from the local run.

Needs PostgreSQL and Redis on 127.0.0.1: skipped elsewhere when they are down, failed in CI.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.production]


@pytest.fixture(scope="module")
def production(production_services, config_at, tmp_path_factory):
    """generate -> features (SQL registry, Redis) -> train (MLflow + Optuna on PostgreSQL) ->
    materialize. Names carry a run id, so runs never collide in the shared database."""
    from app.pipeline import apply_features, materialize_features
    from synthetic.generate import generate
    from training.train import train_mql

    run = uuid.uuid4().hex[:8]
    base = tmp_path_factory.mktemp("production")
    cfg = config_at(
        base,
        f"feature_store.project=funnel_e2e_{run}",
        f"training.mql.registered_model=funnel-mql-e2e-{run}",
        f"training.mql.experiment=funnel-mql-e2e-{run}",
        profile="production.yaml",
    )
    generate(
        n_leads=1500,
        seed=5,
        start=cfg.data.start,
        weeks=cfg.data.weeks,
        out_dir=cfg.data_dir,
        progress=False,
    )
    apply_features(cfg)
    result = train_mql(cfg, progress=False, n_trials=3)
    materialize_features(cfg)
    yield cfg, result
    _cleanup_feast_project(cfg)


def _cleanup_feast_project(cfg) -> None:
    """Remove this run's Feast project from the shared registry and Redis (never teardown():
    it would drop every project in the registry)."""
    import redis

    from features.store import feature_store

    store = feature_store(cfg)
    client = redis.Redis.from_url(f"redis://{cfg.online_store['connection_string']}")
    project = cfg.feature_store.project.encode()
    for key in client.scan_iter(count=1000):
        if project in key:
            client.delete(key)
    store.registry.delete_project(cfg.feature_store.project, commit=True)


def test_stores_are_the_production_ones(production):
    cfg, _ = production
    assert cfg.online_store["type"] == "redis"
    assert cfg.registry["path"].startswith("postgresql+psycopg://")
    assert cfg.tracking_uri.startswith("postgresql+psycopg://")
    assert cfg.optuna_storage.startswith("postgresql+psycopg://")


def test_mlflow_and_optuna_live_in_postgres(production):
    import mlflow
    import optuna
    from mlflow import MlflowClient

    from training.registry import configure_tracking

    cfg, result = production
    configure_tracking(cfg)
    champion = MlflowClient().get_model_version_by_alias(
        cfg.training.mql.registered_model, "champion"
    )
    assert str(champion.version) == result.version
    children = mlflow.search_runs(
        experiment_names=[cfg.training.mql.experiment],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
    )
    assert len(children) == 3
    study = optuna.load_study(study_name=f"mql-{result.run_id}", storage=cfg.optuna_storage)
    assert len(study.trials) == 3


def test_redis_serves_what_training_saw(production):
    """Training/serving skew on the production stores: the scorer, reading Redis, returns the
    same probability as the offline model on the newest offline feature rows."""
    from core.tables import read_manifest
    from features.store import feature_store, historical_features
    from serving.schemas import LeadScoreRequest
    from serving.scorer import LeadScorer
    from training.registry import load_model

    cfg, _ = production
    store = feature_store(cfg)
    model = load_model(cfg, cfg.training.mql.registered_model)
    leads = pd.read_parquet(cfg.raw_dir / "leads.parquet").sample(25, random_state=1)
    served, not_found = LeadScorer(store, model).score(
        [LeadScoreRequest(lead_id=i) for i in leads["lead_id"]]
    )
    assert not_found == []
    end = pd.Timestamp(read_manifest(cfg.raw_dir)["end"])
    offline = historical_features(
        store,
        pd.DataFrame(
            {"lead_id": leads["lead_id"], "account_id": leads["account_id"], "event_timestamp": end}
        ),
        cfg.training.mql.feature_service,
    )
    np.testing.assert_allclose(
        [r.probability for r in served], model.predict_proba(offline), rtol=0, atol=1e-9
    )
    assert all(len(r.reasons) == 3 for r in served)

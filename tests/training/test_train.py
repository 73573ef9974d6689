"""The trained MQL model: quality against the oracle, what MLflow holds, and behavior."""

from __future__ import annotations

import numpy as np


def test_test_auc_within_003_of_the_oracle(pipeline):
    m = pipeline.result.metrics
    assert m["oracle_matched_rows"] == m["rows"], "every test row must have an oracle value"
    assert m["roc_auc"] >= m["oracle_roc_auc"] - 0.03, m
    assert m["lift_at_10pct"] > 2.0


def test_mlflow_holds_trials_metrics_plots_and_champion(pipeline):
    import mlflow
    from mlflow import MlflowClient

    from training.registry import configure_tracking

    cfg, result = pipeline.cfg, pipeline.result
    configure_tracking(cfg)
    client = MlflowClient()
    parent = client.get_run(result.run_id)
    for key in (
        "test_roc_auc",
        "test_pr_auc",
        "test_brier",
        "test_log_loss",
        "test_lift_at_10pct",
        "test_precision_at_threshold",
        "test_oracle_roc_auc",
    ):
        assert key in parent.data.metrics, key
    assert parent.data.tags["feature_service"] == "mql_v1"
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
    )
    assert len(children) == int(parent.data.params["n_trials"])
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {"plots/calibration.png", "plots/lift.png", "plots/importance.png"}
    champion = client.get_model_version_by_alias(cfg.training.mql.registered_model, "champion")
    assert str(champion.version) == result.version
    assert champion.tags["feature_service"] == "mql_v1"


def test_registered_model_loads_and_matches_pyfunc(pipeline):
    import mlflow

    from features.store import feature_store
    from training.registry import load_model
    from training.train import build_training_frame

    cfg = pipeline.cfg
    model = load_model(cfg, cfg.training.mql.registered_model)
    assert model.feature_service == "mql_v1"
    assert 0 < model.threshold < 1
    rows = build_training_frame(cfg, feature_store(cfg), "mql_v1").tail(50)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{cfg.training.mql.registered_model}@champion")
    served = np.asarray(pyfunc.predict(rows[model.feature_names]))
    np.testing.assert_allclose(served, model.predict_proba(rows), rtol=0, atol=1e-12)
    assert ((served > 0) & (served < 1)).all()  # probabilities, not classes


def test_retraining_keeps_the_existing_champion(pipeline):
    from training.train import train_mql

    again = train_mql(pipeline.cfg, progress=False, n_trials=1)
    assert not again.became_champion
    assert int(again.version) == int(pipeline.result.version) + 1

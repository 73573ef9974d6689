"""The trained churn and next-best-offer models: quality against the oracle, what MLflow holds,
and that the registered bundles load and predict what training measured."""

from __future__ import annotations

import numpy as np


def test_churn_auc_within_003_of_the_oracle(pipeline):
    m = pipeline.churn.metrics
    assert m["oracle_matched_rows"] == m["rows"], "every test row must have an oracle value"
    assert m["roc_auc"] >= m["oracle_roc_auc"] - 0.03, m
    # the tiers sort risk: each tier's observed churn rate is above the one below it
    rates = [m[f"tier_{t['name']}_rate"] for t in pipeline.churn.tiers]
    assert rates == sorted(rates), rates


def test_churn_model_is_registered_with_its_tiers(pipeline):
    import mlflow
    from mlflow import MlflowClient

    from training.registry import configure_tracking, load_model

    cfg = pipeline.cfg
    configure_tracking(cfg)
    client = MlflowClient()
    champion = client.get_model_version_by_alias("funnel-churn", "champion")
    assert champion.tags == {
        "feature_service": "churn_v1",
        "model_kind": "churn",
        "predictive": "true",
    }
    model = load_model(cfg, "funnel-churn", kind="churn")
    assert [t["name"] for t in model.meta.tiers] == ["low", "medium", "high"]
    assert model.tier(0.05) == "low" and model.tier(0.3) == "high"
    parent = client.get_run(pipeline.churn.run_id)
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pipeline.churn.run_id}'",
    )
    assert len(children) == int(parent.data.params["n_trials"])
    assert "test_tier_high_rate" in parent.data.metrics


def test_loading_a_churn_model_as_mql_is_refused(pipeline):
    import pytest

    from training.registry import load_model
    from training.scoring import BundleError

    with pytest.raises(BundleError, match="'churn' model, not 'mql'"):
        load_model(pipeline.cfg, "funnel-churn", kind="mql")


def test_uplift_qini_is_at_least_80pct_of_the_oracle(pipeline):
    """On data with a strong known effect, out-of-fold uplift ranks units nearly as well as the
    true uplift does on the same rows."""
    m = pipeline.nbo.metrics
    assert m["mean_qini_vs_oracle"] >= 0.8, m
    # with the outcome draws integrated out the oracle is a ceiling, per offer
    expected = [v for k, v in m.items() if k.endswith("_expected_qini_vs_oracle")]
    assert len(expected) >= 2 and all(0.8 <= v <= 1.0 for v in expected), m
    # and the policy it serves is worth at least the best single offer, in truth
    assert m["true_value_learned"] >= m["true_value_best_single"], m


def test_nbo_run_holds_each_candidate_and_the_decision(pipeline):
    import mlflow
    from mlflow import MlflowClient

    from training.registry import configure_tracking

    configure_tracking(pipeline.cfg)
    client = MlflowClient()
    parent = client.get_run(pipeline.nbo.run_id)
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pipeline.nbo.run_id}'",
    )
    assert sorted(children["params.learner"]) == sorted(pipeline.cfg.training.nbo.learners)
    assert parent.data.tags["served_policy"] == pipeline.nbo.served
    assert parent.data.tags["learner"] == pipeline.nbo.learner
    artifacts = {a.path for a in client.list_artifacts(pipeline.nbo.run_id, "plots")}
    assert artifacts == {"plots/qini.png", "plots/policy_values.png"}
    assert "learned" in pipeline.nbo.policy_values and "control" in pipeline.nbo.policy_values
    assert pipeline.nbo.policy_values["control"][0] == 0.0


def test_registered_nbo_bundle_and_pyfunc_agree(pipeline):
    import mlflow
    import pandas as pd

    from core.offers import load_offers
    from features.store import feature_store, historical_features
    from training.nbo import exposure_entities
    from training.registry import load_nbo_model

    cfg = pipeline.cfg
    model = load_nbo_model(cfg)
    assert model.served_policy == pipeline.nbo.served
    # the learner reads the features, then the funnel stage by the rules it was trained with
    assert model.meta.stages == cfg.stages.model_dump()
    assert model.learner.n_features_in_ == len(model.feature_names) + 1
    entity = exposure_entities(cfg, load_offers(cfg)).head(40)
    rows = historical_features(
        feature_store(cfg), entity[["lead_id", "account_id", "event_timestamp"]], "nbo_v1"
    )
    fast = model.uplift(rows)
    slow = model.learner.predict(model.matrix(rows))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    pyfunc = mlflow.pyfunc.load_model("models:/funnel-nbo@champion")
    out = pyfunc.predict(rows[model.feature_names])
    assert isinstance(out, pd.DataFrame) and list(out.columns) == [
        f"uplift_{o}" for o in model.offers
    ]
    np.testing.assert_allclose(out.to_numpy(), fast, rtol=0, atol=1e-12)

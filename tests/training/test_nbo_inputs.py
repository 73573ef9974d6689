"""The next-best-offer learner's inputs: the features, then the funnel stage by the bundle's own
stage rules; the same matrix in training and serving, and bundles that say what they read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from core.config import StageRule, StagesConfig
from core.stages import STAGES, assign_stages
from training.nbo_model import NBO_FILE, NboInputs, NboMeta, NboModel, stage_codes
from training.scoring import BundleError, FeatureMatrix
from training.uplift import SLearner

RULES = StagesConfig(
    rules=[
        StageRule(stage="retention", when=["is_customer >= 1"]),
        StageRule(stage="consideration", when=["pricing_view_30d >= 1"]),
    ]
)


def frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "pricing_view_30d": rng.integers(0, 3, n).astype(float),
            "is_customer": rng.integers(0, 2, n).astype(float),
            "plan": rng.choice(["team", "business"], n),
        }
    )


def test_without_rules_the_matrix_is_the_features():
    rows = frame(20)
    inputs = NboInputs(list(rows.columns), {"plan": ["business", "team"]})
    expected = FeatureMatrix(list(rows.columns), {"plan": ["business", "team"]})(rows)
    np.testing.assert_array_equal(inputs(rows), expected)
    assert inputs.n_columns == 3


def test_with_rules_the_last_column_is_the_stage_by_those_rules():
    rows = frame(50)
    inputs = NboInputs(list(rows.columns), {"plan": ["business", "team"]}, RULES)
    X = inputs(rows)
    assert X.shape == (50, 4) and inputs.n_columns == 4
    by_hand = [STAGES.index(s) for s in assign_stages(RULES, rows)]
    np.testing.assert_array_equal(X[:, -1], by_hand)
    # one row, as serving passes it: a dict of one-element lists
    one = {k: [v] for k, v in rows.iloc[7].items()}
    np.testing.assert_array_equal(inputs(one)[0], X[7])


def test_stage_codes_by_hand():
    columns = {"pricing_view_30d": [0, 2, 1, np.nan], "is_customer": [0, 0, 1, 0]}
    # awareness (default), consideration, retention (first rule wins), awareness (NaN)
    assert stage_codes(RULES, columns).tolist() == [0.0, 1.0, 3.0, 0.0]


def test_rules_that_read_a_feature_the_model_lacks_are_refused():
    with pytest.raises(ValueError, match=r"\['is_customer'\]"):
        NboInputs(["pricing_view_30d"], {}, RULES)


def fitted_model(stages: StagesConfig | None) -> tuple[NboModel, pd.DataFrame]:
    rows = frame()
    names, categories = list(rows.columns), {"plan": ["business", "team"]}
    inputs = NboInputs(names, categories, stages)
    rng = np.random.default_rng(1)
    arm = rng.choice(["control", "case_study"], len(rows))
    y = (rng.uniform(size=len(rows)) < 0.3 + 0.3 * (arm == "case_study")).astype(int)
    base = LGBMClassifier(n_estimators=5, num_leaves=4, min_child_samples=5, verbose=-1)
    learner = SLearner(base, control="control").fit(inputs(rows), y, arm)
    meta = NboMeta(
        feature_service="nbo_v1", features=names, categories=categories, offers=["case_study"],
        control="control", learner="s", policy={"served": "learned"},
        stages=None if stages is None else stages.model_dump(),
    )  # fmt: skip
    return NboModel(learner, meta), rows


@pytest.mark.parametrize("stages", [None, RULES], ids=["features", "features+stage"])
def test_bundle_round_trip_keeps_the_inputs(tmp_path, stages):
    model, rows = fitted_model(stages)
    loaded = NboModel.load(model.save(tmp_path / "nbo"))
    assert loaded.meta.stages == model.meta.stages
    np.testing.assert_allclose(loaded.uplift(rows), model.uplift(rows), rtol=0, atol=1e-12)
    assert loaded.learner.n_features_in_ == 3 + (stages is not None)


def test_a_bundle_whose_learner_and_inputs_disagree_is_refused(tmp_path):
    model, _ = fitted_model(RULES)
    directory = model.save(tmp_path / "nbo")
    meta = json.loads((directory / NBO_FILE).read_text())
    (directory / NBO_FILE).write_text(json.dumps({**meta, "stages": None}))
    with pytest.raises(BundleError, match="learner expects 4 inputs"):
        NboModel.load(directory)
    (directory / NBO_FILE).write_text(json.dumps({**meta, "stages": {"rules": "nonsense"}}))
    with pytest.raises(BundleError, match="bad stage rules"):
        NboModel.load(directory)


def test_training_drops_the_stage_when_the_features_lack_what_the_rules_read(caplog):
    from training.nbo import nbo_inputs

    rows = frame(30).assign(lead_id="l", arm="control", propensity=0.5, label=0)
    inputs, categorical = nbo_inputs(rows, RULES)
    assert inputs.stages == RULES and categorical == ["plan"]
    inputs, _ = nbo_inputs(rows.drop(columns=["is_customer"]), RULES)
    assert inputs.stages is None and "no stage input" in caplog.text

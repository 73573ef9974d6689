"""Batch scoring (`funnel score`): every lead from the offline store in one join, the same
probabilities as the online path, a file `funnel jobs promote-leads --scores` takes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activation.lead_promotion import read_scores
from serving.batch import score_leads, write_scores
from serving.schemas import LeadScoreRequest
from serving.scorer import LeadScorer


@pytest.fixture(scope="module")
def batch(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "scores.parquet"
    return score_leads(
        tiny.cfg, as_of=tiny.latest, out=out, model=tiny.model, store=tiny.store, progress=False
    ), out


def test_every_lead_is_scored_once_with_the_online_probability(batch, tiny, latest_leads):
    result, _ = batch
    scores = result.scores
    profile = pd.read_parquet(tiny.cfg.features_dir / "lead_profile.parquet")
    assert sorted(scores["lead_id"]) == sorted(profile["lead_id"])
    online, not_found = LeadScorer(tiny.store, tiny.model).score(
        [LeadScoreRequest(lead_id=i) for i in latest_leads]
    )
    assert not not_found
    by_id = scores.set_index("lead_id")
    np.testing.assert_allclose(
        by_id.loc[latest_leads, "probability"], [r.probability for r in online], atol=1e-9
    )
    assert by_id.loc[latest_leads, "score"].tolist() == [r.score for r in online]
    assert by_id.loc[latest_leads, "is_mql"].tolist() == [r.is_mql for r in online]


def test_the_file_is_what_promotion_reads(batch):
    result, out = batch
    again = read_scores(out)
    assert len(again) == len(result.scores)
    assert (again["model_version"] == result.scores["model_version"].iat[0]).all()


def test_a_scores_file_needs_a_known_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.parquet or a \.csv"):
        write_scores(pd.DataFrame({"lead_id": ["a"]}), tmp_path / "scores.json")
    assert not list(tmp_path.iterdir())  # nothing half-written

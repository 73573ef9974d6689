"""The matrix every model bundle is given: one online row (plain Python) encoded exactly as
the column path encodes a batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.scoring import FeatureMatrix

NUMERIC = [None, np.nan, 0, -1.5, 3, True, np.float32(2.5), np.int64(7), "4.25", "n/a", ""]
PLAN = [None, np.nan, "team", "business", "enterprise", 1]


def test_one_row_encodes_as_the_column_path():
    """Random rows of numbers, numeric text, junk text, None, NaN and known, unseen and
    non-text categorical levels: the one-row result equals that row of a batch's (where a
    stray string turns its column through pandas) and that of the row alone as a DataFrame."""
    matrix = FeatureMatrix(["visits", "plan", "score"], {"plan": ["business", "team"]})
    rng = np.random.default_rng(0)
    rows = [
        {
            "visits": [NUMERIC[rng.integers(len(NUMERIC))]],
            "plan": [PLAN[rng.integers(len(PLAN))]],
            "score": [NUMERIC[rng.integers(len(NUMERIC))]],
        }
        for _ in range(300)
    ]
    batch = matrix({k: [r[k][0] for r in rows] for k in ("visits", "plan", "score")})
    for i, row in enumerate(rows):
        one = matrix(row)
        assert one.shape == (1, 3) and one.dtype == np.float64
        np.testing.assert_array_equal(one[0], batch[i], err_msg=str(row))
        np.testing.assert_array_equal(one, matrix(pd.DataFrame(row)), err_msg=str(row))


def test_a_missing_feature_is_named():
    with pytest.raises(KeyError, match="score"):
        FeatureMatrix(["visits", "score"], {})({"visits": [1]})

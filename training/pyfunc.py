"""MLflow pyfunc flavour of the scoring bundle, so `mlflow models serve` and any MLflow client
can load the model and get calibrated probabilities (not classes)."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from training.nbo_model import NboModel
from training.registry import BUNDLE_ARTIFACT, NBO_ARTIFACT
from training.scoring import ScoringModel

# ``predict`` takes a DataFrame: a type hint MLflow accepts without inferring a schema from it
# (the logged signature states the columns), and without warning that hints are missing.


class ScoringPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.model = ScoringModel.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.model.predict_proba(model_input)


class NboPyfunc(mlflow.pyfunc.PythonModel):
    """The next-best-offer bundle: predicts each offer's uplift over control, one column per
    offer (``uplift_<offer>``)."""

    def load_context(self, context) -> None:
        self.model = NboModel.load(context.artifacts[NBO_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        uplift = self.model.uplift(model_input)
        return pd.DataFrame(uplift, columns=[f"uplift_{o}" for o in self.model.offers])

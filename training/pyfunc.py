"""MLflow pyfunc flavour of the scoring bundle, so `mlflow models serve` and any MLflow client
can load the model and get calibrated probabilities (not classes)."""

from __future__ import annotations

import mlflow.pyfunc


class ScoringPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from training.registry import BUNDLE_ARTIFACT
        from training.scoring import ScoringModel

        self.model = ScoringModel.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context, model_input, params=None):
        return self.model.predict_proba(model_input)

"""The floor of this stack: a minimal BentoML service around the MQL booster, with the
features in the payload (no feature store, no calibration, no reason texts).

    FLOOR_BOOSTER=booster.txt bentoml serve benchmarks/floor_service.py:Floor --port 3100

Routes (each ``{"features": [x1, ..., xn]}``: the booster's input row, categorical levels as
their codes, null for missing):

- ``POST /predict``: the booster's probability, a native ``@bentoml.api`` (async: a one-row
  predict is tens of microseconds, less than a hop to a worker thread);
- ``POST /predict_contrib``: the probability and TreeSHAP's top three features
  (``pred_contrib``), also native;
- ``POST /fastapi/predict``: the same as ``/predict`` through a FastAPI app mounted into the
  service, which is how the funnel service serves its routes: the two compared measure what
  the mount costs.

LightGBM runs on one thread (``num_threads=1``; set ``OMP_NUM_THREADS=1`` too), as a one-row
service on a small machine should. ``FLOOR_WORKERS`` sets the worker processes (1 by default).
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
from fastapi import FastAPI

fastapi_app = FastAPI()


def _row(features: list[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in features], dtype=np.float64)[None, :]


@bentoml.service(name="floor", workers=int(os.environ.get("FLOOR_WORKERS", "1")))
@bentoml.asgi_app(fastapi_app, path="/fastapi")
class Floor:
    def __init__(self) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_file=os.environ["FLOOR_BOOSTER"])
        self.names = self.booster.feature_name()

    @bentoml.api
    async def predict(self, features: list[float | None]) -> dict:
        p = self.booster.predict(_row(features), num_threads=1)
        return {"probability": float(p[0])}

    @bentoml.api
    async def predict_contrib(self, features: list[float | None]) -> dict:
        x = _row(features)
        p = self.booster.predict(x, num_threads=1)
        contrib = self.booster.predict(x, pred_contrib=True, num_threads=1)[0, :-1]
        top = np.argsort(-np.abs(contrib), kind="stable")[:3]
        return {
            "probability": float(p[0]),
            "reasons": [{"feature": self.names[i], "contribution": float(contrib[i])} for i in top],
        }

    @fastapi_app.post("/predict")
    async def fastapi_predict(self, body: dict) -> dict:
        p = self.booster.predict(_row(body["features"]), num_threads=1)
        return {"probability": float(p[0])}

"""A tiny real pipeline for the service and activation tests (a plugin of tests/conftest.py):
generated raw tables -> point-in-time feature tables -> Feast apply + materialize (SQLite online
store) -> a small LightGBM booster trained directly on Feast historical features, wrapped in
ScoringModel. No MLflow: the model is injected into the service, which in production loads the
champion from the registry instead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "serving-test-key"
TINY_LEADS = 400
TINY_WEEKS = 10


def tiny_config(base: Path, *overrides: str) -> Config:
    return load_config(
        ROOT / "configs" / "local.yaml",
        [
            f"paths.data_dir={base / 'data'}",
            f"paths.mlruns_dir={base / 'mlruns'}",
            f"data.leads={TINY_LEADS}",
            f"data.weeks={TINY_WEEKS}",
            "serving.max_batch=20",
            *overrides,
        ],
    )


@dataclass(frozen=True)
class TinyPipeline:
    cfg: Config
    store: Any  # feast.FeatureStore
    model: Any  # training.scoring.ScoringModel
    latest: pd.Timestamp  # the newest snapshot tick (= the data's end)
    churn: Any = None  # training.scoring.ScoringModel with risk tiers
    nbo: Any = None  # training.nbo_model.NboModel

    @property
    def models(self) -> dict[str, Any]:
        return {"mql": self.model, "churn": self.churn, "nbo": self.nbo}

    def offline_rows(self, lead_ids: list[str]) -> pd.DataFrame:
        """The leads' model inputs at the latest tick, built from the offline parquet tables
        (the training side of the skew check), one row per id in the given order."""
        from features.titles import normalize_titles

        fdir = self.cfg.features_dir
        behavior = pd.read_parquet(fdir / "lead_behavior.parquet")
        colleagues = pd.read_parquet(fdir / "colleague_interest.parquet")
        profile = pd.read_parquet(fdir / "lead_profile.parquet")
        firmo = pd.read_parquet(fdir / "account_firmographic.parquet")

        def at(df: pd.DataFrame) -> pd.DataFrame:
            return df[df["event_timestamp"] == self.latest].drop(columns="event_timestamp")

        profile = profile.drop(columns="event_timestamp")  # one row per lead
        frame = (
            pd.DataFrame({"lead_id": lead_ids})
            .merge(at(behavior), on="lead_id", how="left")
            .merge(at(colleagues), on="lead_id", how="left")
            .merge(profile, on="lead_id", how="left")
            .merge(firmo.drop(columns="event_timestamp"), on="account_id", how="left")
        )
        titles = normalize_titles(frame["job_title"])
        return pd.concat([frame, titles], axis=1)


def _train_tiny_model(cfg: Config, store: Any) -> Any:
    """A small booster on the real training frame (labels + Feast historical features)."""
    import lightgbm as lgb

    from training.scoring import BundleMeta, ScoringModel
    from training.train import build_training_frame, feature_columns

    service = cfg.training.mql.feature_service
    frame = build_training_frame(cfg, store, service)
    names, categorical = feature_columns(frame)
    # The generator's labels are sparse at this size; lean on title and engagement so every
    # feature family matters to the tiny model (the request-time title test needs it).
    rng = np.random.default_rng(3)
    signal = (
        1.5 * frame["is_decision_maker"].astype(float)
        + 0.4 * np.log1p(frame["events_30d"].fillna(0))
        - 2.0
    )
    label = (rng.uniform(size=len(frame)) < 1 / (1 + np.exp(-signal))) | (frame["label"] == 1)
    categories = {c: sorted(frame[c].dropna().astype(str).unique()) for c in categorical}
    meta = BundleMeta(
        model_kind="mql",
        feature_service=service,
        features=names,
        categories=categories,
        calibration={"a": 0.9, "b": -0.1},
        threshold=0.4,
    )
    x = ScoringModel(None, meta).matrix(frame)  # type: ignore[arg-type]
    data = lgb.Dataset(
        x,
        label.astype(int).to_numpy(),
        feature_name=names,
        categorical_feature=categorical,
        params={"verbose": -1},
    )
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "min_data_in_leaf": 10,
        "verbose": -1,
        "seed": 1,
        "num_threads": 1,
    }
    booster = lgb.train(params, data, num_boost_round=40)
    return ScoringModel(booster, meta, version="funnel-mql/tiny")


def _train_tiny_churn(cfg: Config, store: Any) -> Any:
    """A small booster on the customers' real churn_v1 features, with labels leaning on idle
    seats (ten weeks hold too few observed churns to learn from)."""
    import lightgbm as lgb

    from features.store import historical_features
    from training.scoring import BundleMeta, ScoringModel
    from training.train import feature_columns

    usage = pd.read_parquet(cfg.features_dir / "account_usage.parquet")
    entity = usage.loc[usage["is_customer"] == 1, ["account_id", "event_timestamp"]]
    frame = historical_features(store, entity.reset_index(drop=True), "churn_v1")
    names, categorical = feature_columns(frame)
    rng = np.random.default_rng(4)
    signal = 2.0 * (0.6 - frame["seat_utilization_30d"].fillna(0).clip(0, 1)) - 1.5
    label = rng.uniform(size=len(frame)) < 1 / (1 + np.exp(-signal))
    categories = {c: sorted(frame[c].dropna().astype(str).unique()) for c in categorical}
    tiers = [
        {"name": "low", "min_probability": 0.0},
        {"name": "medium", "min_probability": 0.2},
        {"name": "high", "min_probability": 0.4},
    ]
    meta = BundleMeta(
        "churn", "churn_v1", names, categories, {"a": 1.0, "b": 0.0}, 0.4, tiers=tiers
    )
    x = ScoringModel(None, meta).matrix(frame)  # type: ignore[arg-type]
    data = lgb.Dataset(x, label.astype(int), feature_name=names, categorical_feature=categorical,
                       params={"verbose": -1})  # fmt: skip
    params = {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1,
              "seed": 1, "num_threads": 1}  # fmt: skip
    return ScoringModel(
        lgb.train(params, data, num_boost_round=30), meta, version="funnel-churn/tiny"
    )


def _train_tiny_nbo(cfg: Config, store: Any, served: str = "learned") -> Any:
    """A small T-learner on the real exposures and nbo_v1 features, with outcomes in which each
    offer helps some leads (the real ten weeks hold too few conversions per arm)."""
    from core.config import NboConfig
    from core.tables import read_table
    from features.store import historical_features
    from training.nbo import make_learner
    from training.nbo_model import NboMeta, NboModel
    from training.scoring import FeatureMatrix
    from training.train import feature_columns

    ex = read_table(cfg.raw_dir, "offer_exposures")
    leads = read_table(cfg.raw_dir, "leads").set_index("lead_id")["account_id"]
    entity = pd.DataFrame({
        "lead_id": ex["subject_id"], "account_id": leads.loc[ex["subject_id"]].to_numpy(),
        "event_timestamp": ex["exposed_at"],
    }).reset_index(drop=True)  # fmt: skip
    frame = historical_features(store, entity, "nbo_v1")
    names, categorical = feature_columns(frame)
    categories = {c: sorted(frame[c].dropna().astype(str).unique()) for c in categorical}
    x = FeatureMatrix(names, categories)(frame)
    arm = ex["offer_id"].to_numpy().astype(str)
    rng = np.random.default_rng(5)
    lift = np.where(arm == "control", 0.0, 0.25 * (frame["events_30d"].fillna(0) > 3) - 0.05)
    y = (rng.uniform(size=len(arm)) < 0.3 + lift).astype(int)
    conf = NboConfig(n_estimators=20, num_leaves=4, min_child_samples=5)
    learner = make_learner("t", conf).fit(x, y, arm)
    meta = NboMeta(
        feature_service="nbo_v1", features=names, categories=categories,
        offers=[str(o) for o in learner.offers_], control="control", learner="t",
        policy={"served": served, "reason": "tiny test model"},
    )  # fmt: skip
    return NboModel(learner, meta, version="funnel-nbo/tiny")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyPipeline:
    from app.pipeline import apply_features, materialize_features
    from core.tables import data_window
    from features.store import feature_store
    from synthetic.generate import generate

    base = tmp_path_factory.mktemp("serving")
    cfg = tiny_config(base)
    generate(
        n_leads=cfg.data.leads,
        seed=5,
        start=cfg.data.start,
        weeks=cfg.data.weeks,
        out_dir=cfg.data_dir,
        progress=False,
    )
    apply_features(cfg)
    materialize_features(cfg)
    store = feature_store(cfg)
    model = _train_tiny_model(cfg, store)
    churn = _train_tiny_churn(cfg, store)
    nbo = _train_tiny_nbo(cfg, store)
    _, end = data_window(cfg.raw_dir)
    return TinyPipeline(cfg, store, model, pd.Timestamp(end), churn, nbo)


@pytest.fixture(scope="session")
def asgi_app() -> Any:
    """FunnelService's real BentoML ASGI app (system routes + the mounted /v1 routes), built once:
    BentoML registers its Prometheus metrics per app, and a second app in one process collides."""
    from serving.service import FunnelService

    return FunnelService.to_asgi()


@pytest.fixture
def make_client(asgi_app: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """A factory for TestClients on the service app whose start-up (``FunnelService.__init__``)
    gets the injected pipeline instead of the registry's champion: ``load_parts`` is replaced.
    Use the client as a context manager, which runs start-up and shut-down."""
    from starlette.testclient import TestClient

    import serving.service as service_module

    def factory(cfg: Config, store: Any, models: Any) -> TestClient:
        """``models``: {kind: model}, or one MQL model (then only the MQL routes are served)."""
        if not isinstance(models, dict):
            models = {"mql": models}
            cfg = cfg.model_copy(
                update={"serving": cfg.serving.model_copy(update={"models": ["mql"]})}
            )
        monkeypatch.setattr(service_module, "load_parts", lambda: (cfg, store, models))
        return TestClient(asgi_app)

    return factory


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def client(
    tiny: TinyPipeline, make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.delenv("FUNNEL_API_KEY", raising=False)
    cfg = tiny.cfg.model_copy(
        update={"serving": tiny.cfg.serving.model_copy(update={"api_key": API_KEY})}
    )
    with make_client(cfg, tiny.store, tiny.model) as test_client:
        test_client.headers["X-API-Key"] = API_KEY
        yield test_client


@pytest.fixture
def latest_leads(tiny: TinyPipeline) -> list[str]:
    """Leads with a behavior row at the latest tick (so every feature family is populated)."""
    behavior = pd.read_parquet(tiny.cfg.features_dir / "lead_behavior.parquet")
    ids = behavior.loc[behavior["event_timestamp"] == tiny.latest, "lead_id"]
    return sorted(ids)[:25]

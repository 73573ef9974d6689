"""Start-up with a missing or broken model fails at once, naming the model, the alias, what is
wrong and what to do. In process, against a temporary MLflow registry whose versions point at
hand-made bundles (a tiny booster on random rows; no training run, no log_model)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
Breakage = Callable[[Path], None]


@dataclass(frozen=True)
class Registry:
    base: Path
    sources: Path

    def config(self, *overrides: str) -> Config:
        return load_config(ROOT / "configs" / "local.yaml", [*self.overrides(), *overrides])

    def overrides(self) -> list[str]:
        return [
            f"paths.data_dir={self.base / 'data'}",
            f"paths.mlruns_dir={self.base / 'mlruns'}",
        ]

    def register(
        self, name: str, kind: str = "mql", breakage: Breakage | None = None,
        alias: str | None = "champion",
    ) -> str:  # fmt: skip
        """A new version of ``name`` holding a good bundle of ``kind`` (then ``breakage``
        applied to its folder), given ``alias``; returns the version."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        try:
            client.create_registered_model(name)
        except MlflowException:  # already there: add a version
            pass
        source = self.sources / f"{name}-{len(list(self.sources.glob(f'{name}-*')))}"
        folder = _write_bundle(source / "artifacts", kind)
        if breakage is not None:
            breakage(folder)
        version = client.create_model_version(name, str(source)).version
        if alias is not None:
            client.set_registered_model_alias(name, alias, version)
        return str(version)


def _write_bundle(artifacts: Path, kind: str) -> Path:
    """A loadable bundle folder of ``kind`` (mql/churn: booster + bundle.json; nbo: learner +
    nbo.json) under ``artifacts``, as training lays it out."""
    import lightgbm as lgb

    from training.registry import BUNDLE_ARTIFACT
    from training.scoring import BundleMeta, ScoringModel

    if kind == "nbo":
        folder = artifacts / "nbo"
        folder.mkdir(parents=True)
        (folder / "nbo.json").write_text("{}")
        (folder / "learner.joblib").write_bytes(b"not a pickle")
        return folder
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=3)
    meta = BundleMeta(kind, f"{kind}_v1", ["a", "b", "c"], {}, {"a": 1.0, "b": 0.0}, 0.5)
    return ScoringModel(booster, meta).save(artifacts / BUNDLE_ARTIFACT)


def _garbage_booster(folder: Path) -> None:
    (folder / "booster.txt").write_text("this is not a LightGBM model\n")


def _truncated_booster(folder: Path) -> None:
    booster = folder / "booster.txt"
    booster.write_bytes(booster.read_bytes()[:200])


def _no_booster(folder: Path) -> None:
    (folder / "booster.txt").unlink()


def _no_artifacts(folder: Path) -> None:
    shutil.rmtree(folder.parents[1])  # the version's whole source folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    from training.registry import configure_tracking

    base = tmp_path_factory.mktemp("model-loading")
    reg = Registry(base, base / "sources")
    configure_tracking(reg.config())
    reg.register("funnel-mql")  # the good champion
    reg.register("no-champion", alias="challenger")
    reg.register("no-champion", alias=None)
    reg.register("garbage", breakage=_garbage_booster)
    reg.register("truncated", breakage=_truncated_booster)
    reg.register("no-booster", breakage=_no_booster)
    reg.register("no-artifacts", breakage=_no_artifacts)
    reg.register("funnel-churn", kind="mql")  # an MQL bundle registered as the churn model
    reg.register("funnel-nbo", kind="nbo")  # its nbo.json and learner file are garbage
    return reg


def _start_up_error(registry: Registry, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> str:
    """The message ``load_parts`` (the service's start-up, before BentoML) fails with."""
    from serving.loading import ModelLoadError
    from serving.service import load_parts

    monkeypatch.setenv("FUNNEL_CONFIG", str(ROOT / "configs" / "local.yaml"))
    monkeypatch.setenv("FUNNEL_OVERRIDES", "\n".join([*registry.overrides(), *overrides]))
    with pytest.raises(ModelLoadError) as raised:
        load_parts()
    return str(raised.value)


def test_the_good_champion_loads(registry, monkeypatch):
    from serving.service import load_parts

    monkeypatch.setenv("FUNNEL_CONFIG", str(ROOT / "configs" / "local.yaml"))
    monkeypatch.setenv(
        "FUNNEL_OVERRIDES", "\n".join([*registry.overrides(), "serving.models=[mql]"])
    )
    _, _, models = load_parts()
    assert models["mql"].version == "funnel-mql/1"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            ["training.mql.registered_model=nope"],
            [
                "refusing to start: no model 'nope' with alias 'champion' in sqlite:///",
                "no registered model is named 'nope' (training.mql.registered_model)",
                "train it with `funnel train mql`",
            ],
            id="no-such-model",
        ),
        pytest.param(
            ["training.mql.registered_model=no-champion"],
            [
                "no model 'no-champion' with alias 'champion'",
                "'no-champion' has versions 1, 2, none aliased 'champion'",
                "(serving.model_alias; its aliases: challenger -> 1)",
                "point 'champion' at a good version, or train one with `funnel train mql`",
            ],
            id="no-such-alias",
        ),
        pytest.param(
            ["serving.model_alias=staging"],
            ["no model 'funnel-mql' with alias 'staging'", "its aliases: champion -> 1"],
            id="another-alias",
        ),
        pytest.param(
            ["training.mql.registered_model=garbage"],
            [
                "model 'garbage' alias 'champion' (version 1) cannot be loaded: model bundle at",
                "is corrupt: Unknown model format",
                "point 'champion' at a good version (`funnel rollback mql` gives it back",
                "or retrain with `funnel train mql`",
            ],
            id="garbage-booster",
        ),
        pytest.param(
            ["training.mql.registered_model=truncated"],
            ["model 'truncated' alias 'champion' (version 1) cannot be loaded", "is corrupt"],
            id="truncated-booster",
        ),
        pytest.param(
            ["training.mql.registered_model=no-booster"],
            [
                "model 'no-booster' alias 'champion' (version 1) cannot be loaded:",
                "model bundle incomplete:",
                "booster.txt is missing",
            ],
            id="missing-booster-file",
        ),
        pytest.param(
            ["training.mql.registered_model=no-artifacts"],
            [
                "model 'no-artifacts' alias 'champion' (version 1) cannot be loaded:",
                "its artifacts cannot be read (MlflowException:",
            ],
            id="missing-artifacts",
        ),
        pytest.param(
            ["serving.models=[mql,churn]"],
            [
                "model 'funnel-churn' alias 'champion' (version 1) cannot be loaded:",
                "is a 'mql' model, not 'churn'; check training.churn.registered_model",
                "`funnel rollback churn`",
            ],
            id="wrong-kind",
        ),
        pytest.param(
            ["serving.models=[mql,nbo]"],
            [
                "model 'funnel-nbo' alias 'champion' (version 1) cannot be loaded:",
                "next-best-offer bundle at",
                "is corrupt",
                "point 'champion' at a good version, or retrain with `funnel train nbo`",
            ],
            id="corrupt-nbo-learner",
        ),
    ],
)
def test_start_up_fails_naming_the_model_the_alias_and_the_fix(
    registry, monkeypatch, overrides, expected
):
    message = _start_up_error(registry, monkeypatch, "serving.models=[mql]", *overrides)
    for text in expected:
        assert text in message, message


def test_the_registry_password_is_not_in_the_message():
    from serving.loading import _without_password

    url = "postgresql+psycopg://funnel:s3cret@db:5432/test?options=-csearch_path%3Dx"
    assert (
        _without_password(url)
        == "postgresql+psycopg://funnel:***@db:5432/test?options=-csearch_path%3Dx"
    )
    assert _without_password("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"

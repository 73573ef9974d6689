"""Log, register, crown, find and load models in the MLflow registry (by alias or version)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Config
from core.pg import ensure_schema
from core.quiet import quiet_libraries
from training.nbo_model import NboModel
from training.scoring import BundleError, ScoringModel

if TYPE_CHECKING:
    import pandas as pd

BUNDLE_ARTIFACT = "bundle"  # the classifier bundle's artifact name in a registered model
NBO_ARTIFACT = "nbo"  # the next-best-offer bundle's


def configure_tracking(cfg: Config) -> None:
    """Point MLflow at the configured store; called when a job starts, never at import."""
    import mlflow

    quiet_libraries()
    ensure_schema(cfg.tracking_uri)
    if cfg.tracking_uri.startswith("sqlite:///"):
        Path(cfg.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)


def ensure_experiment(cfg: Config, name: str) -> str:
    """Create the experiment with its artifacts under the configured location (not the working
    directory, MLflow's default), make it active, and return its id."""
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is None and cfg.artifact_location is None:  # a tracking server's own store
        experiment_id = mlflow.create_experiment(name)
    elif existing is None:
        location = Path(cfg.artifact_location)
        uri = (
            location.resolve().as_uri()
            if "://" not in cfg.artifact_location
            else cfg.artifact_location
        )
        experiment_id = mlflow.create_experiment(name, artifact_location=f"{uri}/{name}")
    else:
        experiment_id = existing.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def tag_and_crown(
    name: str,
    version: str,
    tags: dict[str, str],
    predictive: bool = True,
    challenger: bool = False,
) -> bool:
    """Tag a new model version; make it ``champion`` only when the model has none yet (a
    retrain never silently replaces the serving model). Returns whether it became champion.

    A model that is not ``predictive`` (no better than chance on its test rows) is never made
    champion, nor challenger. With ``challenger``, a new version that did not become champion
    gets the ``challenger`` alias (``funnel compare`` weighs it against the champion)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    for tag, value in tags.items():
        client.set_model_version_tag(name, version, tag, value)
    if not predictive:
        return False
    try:
        client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        client.set_registered_model_alias(name, "champion", version)
        return True
    if challenger:
        client.set_registered_model_alias(name, "challenger", version)
    return False


def log_bundle(
    model: Any,
    artifact: str,
    python_model: Any,
    registered_model: str,
    input_example: pd.DataFrame,
    pip_requirements: list[str],
    signature: Any = None,
) -> str:
    """Log ``model``'s bundle (saved under the name ``artifact``) as a pyfunc model of the
    active MLflow run, register it as ``registered_model`` and tag the run with the new
    version, which is returned."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        bundle = model.save(Path(tmp) / artifact)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts={artifact: str(bundle)},
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            registered_model_name=registered_model,
        )
    version = str(info.registered_model_version)
    mlflow.set_tag("registered_version", version)
    return version


def _download(
    cfg: Config, name: str, kind: str, alias: str = "champion", version: str | None = None
) -> tuple[Path, str]:
    """The local artifacts folder of ``models:/name@alias`` (or, given a ``version``, of
    ``models:/name/version``) and its version ("name/3")."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    configure_tracking(cfg)
    client = MlflowClient()
    try:
        if version is None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(name, version)
    except MlflowException as exc:
        missing = (
            f"no model '{name}' with alias '{alias}'"
            if version is None
            else f"no version {version} of model '{name}'"
        )
        raise BundleError(
            f"{missing} in {cfg.tracking_uri}; train one first with `funnel train {kind}`"
        ) from exc
    local = Path(download_artifacts(artifact_uri=f"models:/{name}/{mv.version}"))
    return local / "artifacts", f"{name}/{mv.version}"


def _classifier(artifacts: Path, version: str, kind: str, asked: str) -> ScoringModel:
    """The classifier bundle of a downloaded version, checked to be a ``kind`` model."""
    model = ScoringModel.load(artifacts / BUNDLE_ARTIFACT, version=version)
    if model.meta.model_kind != kind:
        raise BundleError(
            f"model {version}{asked} is a '{model.meta.model_kind}' model, "
            f"not '{kind}'; check training.{kind}.registered_model"
        )
    return model


def load_model(cfg: Config, name: str, alias: str = "champion", kind: str = "mql") -> ScoringModel:
    """Download ``models:/name@alias`` and load its bundle; fail fast naming what is missing."""
    artifacts, version = _download(cfg, name, kind, alias=alias)
    return _classifier(artifacts, version, kind, f" ({alias})")


def load_model_version(cfg: Config, name: str, version: str, kind: str = "mql") -> ScoringModel:
    """Download ``models:/name/version`` and load its bundle, checked to be a ``kind`` model."""
    artifacts, label = _download(cfg, name, kind, version=version)
    return _classifier(artifacts, label, kind, "")


def load_nbo_model(cfg: Config, alias: str = "champion") -> NboModel:
    """The next-best-offer bundle of ``models:/<training.nbo.registered_model>@alias``."""
    artifacts, version = _download(cfg, cfg.training.nbo.registered_model, "nbo", alias=alias)
    return NboModel.load(artifacts / NBO_ARTIFACT, version=version)


def load_nbo_model_version(cfg: Config, version: str) -> NboModel:
    """The next-best-offer bundle of ``models:/<training.nbo.registered_model>/version``."""
    name = cfg.training.nbo.registered_model
    artifacts, label = _download(cfg, name, "nbo", version=version)
    return NboModel.load(artifacts / NBO_ARTIFACT, version=label)

"""Find and load registered models by alias from the MLflow registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Config
from training.scoring import BundleError, ScoringModel

if TYPE_CHECKING:
    from training.nbo_model import NboModel

BUNDLE_ARTIFACT = "bundle"


def configure_tracking(cfg: Config) -> None:
    """Point MLflow at the configured store; called when a job starts, never at import."""
    import mlflow

    from core.pg import ensure_schema
    from core.quiet import quiet_libraries

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
    if existing is None:
        location = Path(cfg.artifact_location)
        uri = location.resolve().as_uri() if "://" not in cfg.artifact_location else cfg.artifact_location
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


def _download(cfg: Config, name: str, alias: str, kind: str) -> tuple[Path, str]:
    """The local artifacts folder of ``models:/name@alias`` and its version ("name/3")."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    configure_tracking(cfg)
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise BundleError(
            f"no model '{name}' with alias '{alias}' in {cfg.tracking_uri}; "
            f"train one first with `funnel train {kind}`"
        ) from exc
    local = Path(download_artifacts(artifact_uri=f"models:/{name}/{mv.version}"))
    return local / "artifacts", f"{name}/{mv.version}"


def load_model(
    cfg: Config, name: str, alias: str = "champion", kind: str = "mql"
) -> ScoringModel:
    """Download ``models:/name@alias`` and load its bundle; fail fast naming what is missing."""
    artifacts, version = _download(cfg, name, alias, kind)
    model = ScoringModel.load(artifacts / BUNDLE_ARTIFACT, version=version)
    if model.meta.model_kind != kind:
        raise BundleError(
            f"model {version} ({alias}) is a '{model.meta.model_kind}' model, "
            f"not '{kind}'; check training.{kind}.registered_model"
        )
    return model


def load_model_version(cfg: Config, name: str, version: str, kind: str = "mql") -> ScoringModel:
    """Download ``models:/name/version`` and load its bundle, checked to be a ``kind`` model."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    configure_tracking(cfg)
    try:
        local = Path(download_artifacts(artifact_uri=f"models:/{name}/{version}"))
    except MlflowException as exc:
        raise BundleError(f"no version {version} of model '{name}' in {cfg.tracking_uri}") from exc
    model = ScoringModel.load(local / "artifacts" / BUNDLE_ARTIFACT, version=f"{name}/{version}")
    if model.meta.model_kind != kind:
        raise BundleError(
            f"model {name}/{version} is a '{model.meta.model_kind}' model, not '{kind}'; "
            f"check training.{kind}.registered_model"
        )
    return model


def load_nbo_model(cfg: Config, alias: str = "champion") -> NboModel:
    """The next-best-offer bundle of ``models:/<training.nbo.registered_model>@alias``."""
    from training.nbo_model import NboModel

    artifacts, version = _download(cfg, cfg.training.nbo.registered_model, alias, "nbo")
    return NboModel.load(artifacts / "nbo", version=version)

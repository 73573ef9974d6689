"""The models the service loads at start-up: the ``serving.model_alias`` version of every kind
in ``serving.models``, from the MLflow registry.

A model that cannot be loaded stops the start-up with one message naming the model, the alias,
what is wrong and what to do: a registry without that model, a model without that alias, or a
version whose artifacts are missing or corrupt.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from core.errors import FunnelError
from training.registry import load_model, load_nbo_model
from training.scoring import BundleError

if TYPE_CHECKING:
    from core.config import Config, ModelKind


class ModelLoadError(FunnelError, RuntimeError):
    """A configured model cannot be served; the message names it and what to do."""


def load_models(cfg: Config) -> dict[str, Any]:
    """{kind: model} for every kind in ``serving.models``; ModelLoadError on the first that
    cannot be loaded."""
    alias = cfg.serving.model_alias
    return {kind: load_champion(cfg, kind, alias) for kind in cfg.serving.models}


def load_champion(cfg: Config, kind: ModelKind, alias: str) -> Any:
    """``models:/<training.<kind>.registered_model>@alias`` as a ScoringModel (mql, churn) or
    an NboModel (nbo)."""

    name = getattr(cfg.training, kind).registered_model
    try:
        if kind == "nbo":
            return load_nbo_model(cfg, alias)
        return load_model(cfg, name, alias, kind=kind)
    except Exception as exc:  # whatever it is, the service must not start without the model
        raise ModelLoadError(
            f"refusing to start: {_diagnose(cfg, kind, name, alias, exc)}"
        ) from exc


def _diagnose(cfg: Config, kind: str, name: str, alias: str, exc: Exception) -> str:
    """What is wrong with ``name@alias`` and what to do, asking the registry which of the
    three it is (no such model, no such alias, an unloadable version)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    where = _without_password(cfg.tracking_uri)
    train = f"`funnel train {kind}`"
    client = MlflowClient()
    try:
        model = client.get_registered_model(name)
    except MlflowException as lookup:
        if lookup.error_code != "RESOURCE_DOES_NOT_EXIST":  # the registry does not answer
            return f"cannot load model '{name}' alias '{alias}' from {where}: {exc}"
        return (
            f"no model '{name}' with alias '{alias}' in {where}: no registered model is named "
            f"'{name}' (training.{kind}.registered_model); train it with {train}"
        )
    if alias not in model.aliases:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        have = (
            f"has versions {', '.join(map(str, versions))}, none aliased '{alias}'"
            if versions
            else "has no versions"
        )
        aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(model.aliases.items())) or "none"
        return (
            f"no model '{name}' with alias '{alias}' in {where}: '{name}' {have} "
            f"(serving.model_alias; its aliases: {aliases}); point '{alias}' at a good version, "
            f"or train one with {train}"
        )
    version = model.aliases[alias]
    problem = (
        str(exc)
        if isinstance(exc, BundleError)
        else f"its artifacts cannot be read ({type(exc).__name__}: {exc})"
    )
    fix = f"point '{alias}' at a good version"
    if alias == "champion" and kind != "nbo":
        fix += f" (`funnel rollback {kind}` gives it back to the previous champion)"
    return (
        f"model '{name}' alias '{alias}' (version {version}) cannot be loaded: {problem}; "
        f"{fix}, or retrain with {train}"
    )


def _without_password(uri: str) -> str:
    """``postgresql+psycopg://user:secret@host/db`` -> ``postgresql+psycopg://user:***@host/db``:
    start-up errors end up in logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)

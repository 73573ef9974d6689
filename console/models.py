"""The models page: the champion of each kind in the MLflow registry, its test metrics, and
links to its model card and to MLflow's own UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from training.registry import configure_tracking

if TYPE_CHECKING:
    from core.config import Config

KINDS = ("mql", "churn", "nbo")
TRAIN_HINT = {"mql": "funnel train mql", "churn": "funnel train churn", "nbo": "funnel train nbo"}
# the metrics a card shows first (the rest follow in name order)
FIRST = ("test_roc_auc", "test_pr_auc", "test_brier", "test_log_loss", "test_lift_10", "threshold")


@dataclass
class Champion:
    kind: str
    registered_model: str
    version: str | None = None
    run_id: str | None = None
    created: str | None = None
    aliases: list[str] = field(default_factory=list)
    metrics: list[tuple[str, float]] = field(default_factory=list)
    problem: str | None = None  # why there is no champion to show
    mlflow_url: str | None = None
    card_path: Path | None = None

    @property
    def card_exists(self) -> bool:
        return self.card_path is not None and self.card_path.is_file()


def card_path(data_dir: Path, kind: str) -> Path:
    """Where ``funnel report model <kind>`` writes the card by default."""
    return data_dir / "reports" / f"model-{kind}.html"


def ordered_metrics(metrics: dict[str, float]) -> list[tuple[str, float]]:
    first = [(k, metrics[k]) for k in FIRST if k in metrics]
    rest = sorted((k, v) for k, v in metrics.items() if k not in FIRST and k.startswith("test_"))
    return first + rest


def mlflow_link(base: str | None, name: str, version: str | None) -> str | None:
    if not base:
        return None
    root = base.rstrip("/")
    if version is None:
        return f"{root}/#/models/{quote(name)}"
    return f"{root}/#/models/{quote(name)}/versions/{quote(version)}"


def champions(cfg: Config, alias: str = "champion") -> list[Champion]:
    """The ``alias`` version of every kind's registered model, with its run's metrics; a kind
    without one says why (and what to run)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_tracking(cfg)
    client = MlflowClient()
    out = []
    for kind in KINDS:
        name = getattr(cfg.training, kind).registered_model
        found = Champion(kind, name, card_path=card_path(cfg.data_dir, kind))
        found.mlflow_url = mlflow_link(cfg.ui.mlflow_ui_url, name, None)
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            found.problem = f"no '{alias}' version of {name} yet: run `{TRAIN_HINT[kind]}`"
            out.append(found)
            continue
        found.version, found.run_id = str(mv.version), mv.run_id
        found.aliases = sorted(getattr(mv, "aliases", []) or [])
        found.created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime(
            "%Y-%m-%d %H:%M UTC"
        )
        found.mlflow_url = mlflow_link(cfg.ui.mlflow_ui_url, name, found.version)
        if mv.run_id:
            try:
                found.metrics = ordered_metrics(dict(client.get_run(mv.run_id).data.metrics))
            except MlflowException as exc:
                found.problem = f"its run {mv.run_id} cannot be read: {exc}"
        out.append(found)
    return out


def metric_label(name: str) -> str:
    return name.removeprefix("test_").replace("_", " ")


def metric_value(value: Any) -> str:
    return f"{float(value):.4f}"

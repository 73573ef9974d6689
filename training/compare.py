"""Champion vs challenger in the registry: ``compare_models`` rebuilds the test rows training
evaluated on, scores both versions (each on its own features) and applies the champion rule
(``training.bootstrap``); ``crown_version`` crowns a version by hand; ``rollback`` gives the alias
back; every move is kept in the model's alias history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.flat import COLUMNS_FILE, import_dir, load_dataset
from training.bootstrap import (
    CompareError,
    MetricComparison,
    PredictiveCheck,
    Verdict,
    bootstrap_compare,
    champion_verdict,
)
from training.registry import configure_tracking, load_model_version
from training.train import KINDS, is_dataset, kind_config, kind_spec, training_split

if TYPE_CHECKING:
    from core.config import Config, PromotionRuleConfig
    from training.scoring import ScoringModel

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"
HISTORY_TAG = "champion_history"
HISTORY_MAX_CHARS = 5000  # a registered-model tag value holds 5000 characters on SQL stores
CROWN_REASON = "crowned by hand"  # the history's reason of `funnel promote` without --reason


# -- registry (I/O) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    ref: str  # what was asked for: an alias or a version number
    version: str
    aliases: tuple[str, ...]  # the version's aliases before any move

    @property
    def label(self) -> str:
        return (
            f"{self.ref} (version {self.version})"
            if self.ref != self.version
            else f"version {self.version}"
        )


@dataclass
class CompareResult:
    kind: str
    model_name: str
    a: ModelRef
    b: ModelRef
    rows: int
    comparison: dict[str, MetricComparison]
    rule: PromotionRuleConfig
    predictive: dict[str, PredictiveCheck]  # "a" and "b" on the same rows
    verdict: Verdict
    crown: bool  # asked to crown b champion if it wins (`funnel compare --promote`)
    crowned: bool  # b was crowned champion
    champion: str | None  # the champion's version after the call
    previous_champion: str | None = None  # the replaced champion, when b was crowned


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _client(cfg: Config) -> Any:
    from mlflow import MlflowClient

    configure_tracking(cfg)
    return MlflowClient()


def _registered(client: Any, cfg: Config, name: str, kind: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        raise CompareError(
            f"no registered model '{name}' in {cfg.tracking_uri}; train one with `funnel train {kind}`"
        ) from exc


def _aliases_text(model: Any) -> str:
    aliases = getattr(model, "aliases", {}) or {}
    return ", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items())) or "none"


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def resolve(client: Any, cfg: Config, kind: str, ref: str) -> ModelRef:
    """An alias (``champion``, ``challenger``, ...) or a version number of the kind's model."""
    from mlflow.exceptions import MlflowException

    name = registered_name(cfg, kind)
    model = _registered(client, cfg, name, kind)
    ref = str(ref).strip()
    if ref.isdigit():
        try:
            mv = client.get_model_version(name, ref)
        except MlflowException as exc:
            versions = sorted(
                int(v.version) for v in client.search_model_versions(f"name = '{name}'")
            )
            raise CompareError(
                f"model '{name}' has no version {ref} (versions: {', '.join(map(str, versions)) or 'none'})"
            ) from exc
    else:
        try:
            mv = client.get_model_version_by_alias(name, ref)
        except MlflowException as exc:
            hint = ""
            if ref == CHALLENGER:
                hint = (
                    f"; no challenger: a retrain that does not become champion gets it "
                    f"(`funnel train {kind}`), or pass a version number"
                )
            raise CompareError(
                f"model '{name}' has no alias '{ref}' (aliases: {_aliases_text(model)}){hint}"
            ) from exc
    tagged = (mv.tags or {}).get("model_kind")
    if tagged is not None and tagged != kind:
        raise CompareError(
            f"version {mv.version} of '{name}' is a '{tagged}' model, not '{kind}'; "
            f"check training.{kind}.registered_model"
        )
    return ModelRef(ref, str(mv.version), tuple(sorted(mv.aliases or ())))


def _kind_conf(cfg: Config, kind: str) -> Any:
    return kind_config(cfg, kind)


def is_uplift_table(cfg: Config, kind: str) -> bool:
    """True for an imported table with an uplift task: its model is a next-best-offer one."""
    return is_dataset(cfg, kind) and load_dataset(cfg, kind)["report"]["task"] == "uplift"


def registered_name(cfg: Config, kind: str) -> str:
    """The registered model of a model kind: mql, churn, nbo or an imported table's name."""
    if kind == "nbo":
        return cfg.training.nbo.registered_model
    if kind not in KINDS and not is_dataset(cfg, kind):
        raise CompareError(
            f"unknown model {kind!r}: choose mql, churn, nbo or an imported table's name "
            f"(`funnel import` makes one under {cfg.data_dir / 'imports'})"
        )
    return kind_config(cfg, kind).registered_model


def with_model_features(
    cfg: Config, kind: str, model: ScoringModel, rows: pd.DataFrame
) -> pd.DataFrame:
    """``rows`` (built through the current feature service) with every feature ``model``
    needs. A version trained before a column left an imported table's feature set (a leak
    removed on re-import) gets that column from the import's ``columns.parquet``, joined on the
    rows' keys; a feature found in neither fails naming it and the version."""
    missing = [f for f in model.feature_names if f not in rows.columns]
    if not missing:
        return rows
    path = import_dir(cfg, kind) / COLUMNS_FILE
    stored = pd.read_parquet(path) if is_dataset(cfg, kind) and path.is_file() else None
    absent = [f for f in missing if stored is None or f not in stored.columns]
    if absent:
        where = f" nor {path}" if is_dataset(cfg, kind) else ""
        raise CompareError(
            f"version {model.version} needs feature(s) {', '.join(absent)} that neither the "
            f"feature service '{model.feature_service}'{where} holds; import the table again "
            "from a file with those columns, or compare versions trained on today's features"
        )
    key = kind_spec(cfg, kind).entity_key
    joined = rows.merge(stored[[key, *missing]], on=key, how="left", validate="many_to_one")
    joined.index = rows.index
    return joined


def read_history(client: Any, name: str) -> list[dict[str, str]]:
    """The registered model's ``champion_history``: one entry per replaced champion."""
    raw = (client.get_registered_model(name).tags or {}).get(HISTORY_TAG)
    if not raw:
        return []
    try:
        history = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CompareError(f"the '{HISTORY_TAG}' tag of '{name}' is not JSON: {exc}") from exc
    return history if isinstance(history, list) else []


def _write_history(client: Any, name: str, history: list[dict[str, str]]) -> None:
    # Oldest entries go first when the tag would outgrow what the store holds.
    while len(history) > 1 and len(json.dumps(history)) > HISTORY_MAX_CHARS:
        history = history[1:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def _champion_since(client: Any, name: str, version: str, history: list[dict[str, str]]) -> str:
    """When the current champion took over: the end of the last tenure, else its registration
    (the first champion is crowned when it is registered)."""
    if history:
        return history[-1]["until"]
    created = client.get_model_version(name, version).creation_timestamp
    return datetime.fromtimestamp(created / 1000, UTC).isoformat(timespec="seconds")


def move_champion(client: Any, name: str, version: str, reason: str) -> str | None:
    """Make ``version`` the champion: the replaced one is appended to ``champion_history``
    and gets the ``previous_champion`` alias; a ``challenger`` alias on ``version`` is removed.
    Returns the replaced version (None when there was no champion)."""
    old = _alias_version(client, name, CHAMPION)
    if old == version:
        raise CompareError(f"version {version} of '{name}' is already the champion")
    if old is not None:
        history = read_history(client, name)
        since = _champion_since(client, name, old, history)
        # the record comes first: a failure after it leaves a claimed move, never a silent one
        history.append({"version": old, "from": since, "until": _now(), "reason": reason})
        _write_history(client, name, history)
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    if _alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return old


def compare_models(
    cfg: Config,
    kind: str,
    a: str = CHAMPION,
    b: str = CHALLENGER,
    crown: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> CompareResult:
    """Score models a and b (aliases or versions of the kind's registered model) on the test
    rows training evaluated on, each on its own features (``with_model_features``), compare
    them with a paired bootstrap and judge b by the champion rule
    (``training.<kind>.promotion_rule``, for an imported table ``imports.<name>.promotion_rule``
    or its spec's); with ``crown`` (``funnel compare --promote``), a
    winning b is crowned champion."""
    conf = _kind_conf(cfg, kind)
    if is_uplift_table(cfg, kind):
        raise CompareError(
            f"'{kind}' is an uplift table: its model is a next-best-offer one, which `funnel "
            f"compare` does not weigh; crown a version by hand with `funnel promote {kind} "
            "VERSION`"
        )
    name = conf.registered_model
    client = _client(cfg)
    ref_a, ref_b = resolve(client, cfg, kind, a), resolve(client, cfg, kind, b)
    if ref_a.version == ref_b.version:
        raise CompareError(f"a ({ref_a.label}) and b ({ref_b.label}) are the same model version")
    champion = _alias_version(client, name, CHAMPION)
    if crown and ref_a.version != champion:
        raise CompareError(
            f"crowning b champion (--promote) needs a to be the champion (version {champion}); "
            f"a is {ref_a.label}"
        )
    models = {
        side: load_model_version(cfg, name, ref.version, kind)
        for side, ref in (("a", ref_a), ("b", ref_b))
    }
    for side, model in models.items():
        if model.feature_service != conf.feature_service:
            raise CompareError(
                f"{side} (version {model.version}) was trained on feature service "
                f"'{model.feature_service}', the config names '{conf.feature_service}'; "
                "both must score the same rows and features"
            )
    test = training_split(cfg, kind).parts["test"]
    y = test["label"].to_numpy()
    prob_a, prob_b = (
        models[side].predict_proba(with_model_features(cfg, kind, models[side], test))
        for side in ("a", "b")
    )
    comparison = bootstrap_compare(y, prob_a, prob_b, n_boot=n_boot, seed=seed)
    auc = comparison["roc_auc"]  # the guard reuses the comparison's AUC intervals
    checks = {
        "a": PredictiveCheck.of(y, prob_a, auc.a, auc.a_ci),
        "b": PredictiveCheck.of(y, prob_b, auc.b, auc.b_ci),
    }
    verdict = champion_verdict(comparison, conf.promotion_rule, checks["b"])
    crowned, previous = False, None
    if crown and verdict.wins:
        previous = move_champion(
            client, name, ref_b.version, f"replaced by version {ref_b.version}: {verdict.reason}"
        )
        crowned, champion = True, ref_b.version
    return CompareResult(
        kind=kind, model_name=name, a=ref_a, b=ref_b, rows=len(test), comparison=comparison,
        rule=conf.promotion_rule, predictive=checks, verdict=verdict, crown=crown,
        crowned=crowned, champion=champion, previous_champion=previous,
    )  # fmt: skip


def rollback(cfg: Config, kind: str) -> tuple[str, str]:
    """Give ``champion`` back to the previous champion (its ``previous_champion`` alias, else the
    last entry of ``champion_history``); the move is recorded too. Returns (old, new) versions.
    Rolling back twice undoes the first rollback."""
    from mlflow.exceptions import MlflowException

    name = registered_name(cfg, kind)
    client = _client(cfg)
    _registered(client, cfg, name, kind)
    current = _alias_version(client, name, CHAMPION)
    if current is None:
        raise CompareError(f"model '{name}' has no champion to roll back from")
    previous = _alias_version(client, name, PREVIOUS)
    if previous is None:
        history = read_history(client, name)
        previous = history[-1]["version"] if history else None
    if previous is None:
        raise CompareError(
            f"model '{name}' has no previous champion to roll back to (no '{PREVIOUS}' alias, "
            f"no '{HISTORY_TAG}' tag); the champion is version {current}"
        )
    try:
        client.get_model_version(name, previous)
    except MlflowException as exc:
        raise CompareError(
            f"the previous champion, version {previous} of '{name}', no longer exists"
        ) from exc
    move_champion(client, name, previous, f"rolled back to version {previous}")
    return current, previous


@dataclass(frozen=True)
class Crowning:
    """A version crowned by hand (``funnel promote``)."""

    kind: str
    model_name: str
    version: str
    previous_champion: str | None  # the replaced champion (None when there was none)
    reason: str


def crown_version(cfg: Config, kind: str, version: str, reason: str = CROWN_REASON) -> Crowning:
    """Crown a version (a number, or an alias such as ``challenger``) of the kind's model
    champion on purpose: the way to confirm a model training withheld from ``champion`` (not
    predictive, or too good to be true). The move is recorded as ``compare --promote`` records
    it (``move_champion``), with ``reason``."""
    name = registered_name(cfg, kind)
    client = _client(cfg)
    ref = resolve(client, cfg, kind, version)
    reason = reason.strip() or CROWN_REASON
    previous = move_champion(
        client, name, ref.version, f"replaced by version {ref.version}: {reason}"
    )
    return Crowning(kind, name, ref.version, previous, reason)

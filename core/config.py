"""Typed, strictly validated configuration loaded from YAML in ``configs/``.

Every model forbids unknown keys, so a misspelled key fails with its name instead of being ignored.
Overrides are ``dotted.key=value`` strings (values parsed as YAML), applied before validation.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import FunnelError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "local.yaml"
API_KEY_ENV = "FUNNEL_API_KEY"


class ConfigError(FunnelError, ValueError):
    """A configuration file or override is malformed; the message names the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(Strict):
    data_dir: Path = Path("data")
    mlruns_dir: Path = Path("mlruns")


Rate = Annotated[float, Field(ge=0, le=0.5)]


class ViolationRates(Strict):
    """Tracking-plan violations the generator puts into the event stream it delivers, each a
    share of the clean events, drawn event by event (the generator reports the exact counts).
    The ingest check renames, deduplicates or quarantines them, so the raw events equal the
    clean ones. All 0: a clean delivery."""

    renamed: Rate = 0.02  # delivered under an old alias of its name (renamed back on ingest)
    redelivered: Rate = 0.01  # delivered twice with the same message id (at-least-once)
    missing_property: Rate = 0.002  # plus a broken copy (new id) lacking a required property
    wrong_type: Rate = 0.001  # plus a broken copy (new id) with a property of the wrong type
    unplanned_event: Rate = 0.001  # plus an event whose name the tracking plan does not know


class DataConfig(Strict):
    leads: Annotated[int, Field(gt=0)] = 10_000
    seed: int = 7
    start: date = date(2026, 1, 5)
    weeks: Annotated[int, Field(ge=8, le=260)] = 39
    # the event vocabulary and what each source's violations do (docs/guides/tracking-plan.md)
    tracking_plan: Path = Path("configs/tracking_plan.yaml")
    violations: ViolationRates = Field(default_factory=ViolationRates)


class SqliteOnline(Strict):
    type: Literal["sqlite"] = "sqlite"
    path: Path | None = None  # default: <data_dir>/online_store.db


class RedisOnline(Strict):
    type: Literal["redis"]
    connection_string: str = "127.0.0.1:6379"


class FileRegistry(Strict):
    type: Literal["file"] = "file"
    path: Path | None = None  # default: <data_dir>/registry.db


class SqlRegistry(Strict):
    type: Literal["sql"]
    path: str  # a SQLAlchemy URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test


class FeatureStoreConfig(Strict):
    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = "funnel"
    online_store: Annotated[SqliteOnline | RedisOnline, Field(discriminator="type")] = (
        SqliteOnline()
    )
    registry: Annotated[FileRegistry | SqlRegistry, Field(discriminator="type")] = FileRegistry()
    snapshot_every_days: Annotated[int, Field(gt=0)] = 7
    # what computes the feature tables and serves training-set retrieval: DuckDB in-process, or
    # Apache Spark (the `spark` dependency group and Java 17+; docs/guides/spark.md)
    engine: Literal["duckdb", "spark"] = "duckdb"
    # the Spark master when engine is spark: local[*] (every core of this machine) or a cluster
    spark_master: Annotated[str, Field(min_length=1)] = "local[*]"


class TrackingConfig(Strict):
    # default: sqlite:///<mlruns_dir>/mlflow.db; a database URL, or an MLflow tracking server
    # (http://host:5000) that machines without a shared disk all use
    uri: str | None = None
    # default: <mlruns_dir>/artifacts; with a tracking server, the server's artifact store
    artifact_location: str | None = None


class OptunaConfig(Strict):
    storage: str | None = None  # default: sqlite:///<mlruns_dir>/optuna.db
    n_trials: Annotated[int, Field(gt=0)] = 20
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    seed: int = 42
    n_startup_trials: Annotated[int, Field(ge=0)] = 5
    # processes `funnel train` runs the trials in (`--workers` wins); more than one needs the
    # storage and tracking.uri on PostgreSQL or a tracking server (SQLite is refused)
    workers: Annotated[int, Field(ge=1, le=64)] = 1


class CapacityThreshold(Strict):
    mode: Literal["capacity"] = "capacity"
    weekly_capacity: Annotated[int, Field(gt=0)] = 150


class PrecisionThreshold(Strict):
    mode: Literal["precision"]
    target: Annotated[float, Field(gt=0, lt=1)] = 0.3


class TopFractionThreshold(Strict):
    """Flag the highest-scored share of rows. ``fraction: null`` is the positive rate of the
    validation rows: as many flagged as there are positives, where precision equals recall, a
    rule that makes sense at any base rate."""

    mode: Literal["top_fraction"]
    fraction: Annotated[float, Field(gt=0, lt=1)] | None = None


# How a classifier turns probabilities into yes/no: a weekly capacity (rows with time only), a
# precision target, or a top fraction.
DecisionRule = Annotated[
    CapacityThreshold | PrecisionThreshold | TopFractionThreshold, Field(discriminator="mode")
]


class SplitConfig(Strict):
    validation_weeks: Annotated[int, Field(gt=0)] = 5
    test_weeks: Annotated[int, Field(gt=0)] = 5
    warmup_weeks: Annotated[int, Field(ge=0)] = 2


CompareMetric = Literal["roc_auc", "pr_auc", "brier", "log_loss"]


class PromotionRuleConfig(Strict):
    """When ``funnel compare --promote`` makes the challenger champion: its improvement on
    ``metric`` (oriented so positive is better; Brier and log loss improve downward) exceeds
    ``min_improvement`` and, with ``require_interval_above``, the lower end of the
    improvement's 95% paired-bootstrap interval is above 0. It must be predictive too."""

    metric: CompareMetric = "roc_auc"
    min_improvement: float = 0.0
    require_interval_above: bool = True


class ClassifierConfig(Strict):
    """What the MQL and churn models share: one training path, parameterized by model kind."""

    feature_service: str
    registered_model: str
    experiment: str
    label_window_days: Annotated[int, Field(gt=0)]
    split: SplitConfig = Field(default_factory=SplitConfig)
    num_boost_round: Annotated[int, Field(gt=0)] = 600
    num_threads: Annotated[int, Field(ge=1)] = 2  # LightGBM threads; 1 is faster on a busy machine
    early_stopping_rounds: Annotated[int, Field(gt=0)] = 50
    # after tuning, refit on train + validation weeks (calibration and threshold still come
    # from the held-out validation scores of the train-only model)
    refit_on_validation: bool = True
    promotion_rule: PromotionRuleConfig = Field(default_factory=PromotionRuleConfig)


class MqlConfig(ClassifierConfig):
    feature_service: str = "mql_v1"
    registered_model: str = "funnel-mql"
    experiment: str = "funnel-mql"
    label_window_days: Annotated[int, Field(gt=0)] = 30
    threshold: DecisionRule = CapacityThreshold()


class RiskTier(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    min_probability: Annotated[float, Field(ge=0, lt=1)]


class ChurnConfig(ClassifierConfig):
    feature_service: str = "churn_v1"
    registered_model: str = "funnel-churn"
    experiment: str = "funnel-churn"
    label_window_days: Annotated[int, Field(gt=0)] = 60
    # no warm-up: usage windows are full from the first week (installed-base usage predates it)
    split: SplitConfig = SplitConfig(validation_weeks=6, test_weeks=8, warmup_weeks=0)
    # a customer's tier is the last one whose min_probability its churn probability reaches
    tiers: list[RiskTier] = [
        RiskTier(name="low", min_probability=0.0),
        RiskTier(name="medium", min_probability=0.1),
        RiskTier(name="high", min_probability=0.25),
    ]

    @field_validator("tiers")
    @classmethod
    def _tiers_ascend(cls, tiers: list[RiskTier]) -> list[RiskTier]:
        if not tiers or tiers[0].min_probability != 0:
            raise ValueError("the first tier must start at min_probability 0")
        bounds = [t.min_probability for t in tiers]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(f"tier min_probability values must rise strictly, got {bounds}")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        return tiers


Learner = Literal["s", "t", "x", "b"]  # S-, T-, X-learner, shared-base learner


class NboConfig(Strict):
    feature_service: str = "nbo_v1"
    registered_model: str = "funnel-nbo"
    experiment: str = "funnel-nbo"
    offers_file: Path = Path("configs/offers.yaml")
    outcome_window_days: Annotated[int, Field(gt=0)] = 14
    # candidate learners; the one with the best mean Qini over the folds is kept
    learners: Annotated[list[Learner], Field(min_length=1)] = ["s", "t", "x", "b"]
    # exposures are split into folds by lead: every learner is cross-fitted over all folds, the
    # best mean Qini over the folds picks one, its held-out predictions decide the policy
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    # give the learners each lead's funnel stage (by the `stages` rules, kept in the model) as
    # one more input: the offers are targeted by stage
    stage_feature: bool = True
    # base LightGBM of every learner
    n_estimators: Annotated[int, Field(gt=0)] = 150
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    num_leaves: Annotated[int, Field(ge=2)] = 15
    min_child_samples: Annotated[int, Field(ge=1)] = 50
    n_boot: Annotated[int, Field(ge=100)] = 500  # bootstrap resamples for policy intervals
    seed: int = 0

    @field_validator("learners")
    @classmethod
    def _unique_learners(cls, learners: list[str]) -> list[str]:
        if len(set(learners)) != len(learners):
            raise ValueError(f"learners must not repeat, got {learners}")
        return learners


class TrainingConfig(Strict):
    mql: MqlConfig = Field(default_factory=MqlConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    nbo: NboConfig = Field(default_factory=NboConfig)


StageName = Literal["awareness", "consideration", "decision", "retention"]
# A condition on one feature, e.g. "pricing_view_30d >= 1": (feature, operator, number).
CONDITION_PATTERN = r"^\s*([a-z][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$"


class StageRule(Strict):
    """A lead is in ``stage`` when any condition holds (``feature op number``)."""

    stage: StageName
    when: Annotated[list[Annotated[str, Field(pattern=CONDITION_PATTERN)]], Field(min_length=1)]


class StagesConfig(Strict):
    """Funnel stage of a lead at a snapshot: the first rule that matches, else ``default``.

    Conditions read the lead's features (nbo_v1 serves all of them)."""

    rules: list[StageRule] = [
        StageRule(stage="retention", when=["is_customer >= 1"]),
        StageRule(
            stage="decision",
            when=["demo_request_30d >= 1", "trial_signup_30d >= 1", "opportunities_90d >= 1"],
        ),
        StageRule(
            stage="consideration",
            when=[
                "pricing_view_30d >= 1",
                "webinar_attended_30d >= 1",
                "content_download_30d >= 1",
            ],
        ),
    ]
    default: StageName = "awareness"


ModelKind = Literal["mql", "churn", "nbo"]
ClassifierKind = Literal["mql", "churn"]  # the kinds of training.train.KINDS (compare, rollback)


# The most leads one batch request may ever hold (the API's schema says so, whatever max_batch).
MAX_BATCH_LIMIT = 10_000


class ServingConfig(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 3000
    api_key: str | None = None  # FUNNEL_API_KEY in the environment wins
    max_batch: Annotated[int, Field(gt=0, le=MAX_BATCH_LIMIT)] = 500
    model_alias: str = "champion"
    # the models the service loads at start; each must exist under the alias
    models: Annotated[list[ModelKind], Field(min_length=1)] = ["mql", "churn", "nbo"]
    # next-best-offer: share of answers that pick a random eligible arm, so that later
    # training sees every arm (0 = always the policy's choice)
    exploration_epsilon: Annotated[float, Field(ge=0, lt=1)] = 0.1
    # reasons: "treeshap" (LightGBM pred_contrib, several ms per lead on a 400-tree model) or
    # "path" (decision-path attribution from a table built at start-up, a fraction of a ms)
    reasons: Literal["treeshap", "path"] = "treeshap"
    # online reads: "direct" (the store's own reads: one online_read per view on SQLite, one
    # Redis pipeline per entity key; on the event loop, never blocking it), "feast"
    # (FeatureStore.get_online_features in a worker thread: the same values, more overhead)
    # or "auto" (direct)
    online_reads: Literal["auto", "direct", "feast"] = "auto"
    # reasons cache: per worker, the score and reasons of up to this many feature rows (keyed
    # by model version and the row itself, so never stale), and as many rows of next-best-offer
    # uplift; 0 computes them on every request
    reasons_cache_rows: Annotated[int, Field(ge=0)] = 200_000
    # fill the caches in batches at start-up and after each materialization (in the background,
    # on all cores but one), rather than one request at a time
    reasons_precompute: bool = True
    # service worker processes (each loads the models and keeps its own reasons cache)
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # BentoML's access log: one line per request (client, path, status, latency); off saves
    # its formatting and write on the event loop, for those who log at a proxy instead
    access_log: bool = True


class FileDestinationConfig(Strict):
    type: Literal["file"]
    path: Path  # relative to the data folder
    format: Literal["jsonl", "csv"] = "jsonl"
    hash_emails: bool = False  # SHA-256 of the normalized email instead of the email


class WebhookDestinationConfig(Strict):
    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret_env: str | None = None  # environment variable holding the HMAC secret (never the file)
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    hash_emails: bool = False


DestinationConfig = Annotated[
    FileDestinationConfig | WebhookDestinationConfig, Field(discriminator="type")
]
_NAME = r"^[a-z][a-z0-9_]*$"


class RetryConfig(Strict):
    """Sending: exponential backoff with full jitter between tries; after ``max_attempts`` tries
    over all runs a message goes to the dead-letter table."""

    max_attempts: Annotated[int, Field(ge=1)] = 8
    attempts_per_run: Annotated[int, Field(ge=1)] = 3
    base_delay_s: Annotated[float, Field(ge=0)] = 0.5
    max_delay_s: Annotated[float, Field(ge=0)] = 30.0


class PromotionConfig(Strict):
    destination: str = "sales"
    threshold: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        default=None,
        description=(
            "The MQL threshold in force everywhere: a lead at probability >= threshold is an MQL "
            "for the API's is_mql, `funnel score` and `funnel jobs promote-leads` alike. null: the "
            "champion's own threshold, chosen at training and stored in its bundle."
        ),
    )
    # a promoted lead may be promoted again only after its probability fell below
    # rearm_threshold (null: 0.75 x threshold)
    rearm_threshold: Annotated[float, Field(ge=0, lt=1)] | None = None
    daily_cap: Annotated[int, Field(gt=0)] = 30  # sales capacity: promotions per UTC day
    batch_size: Annotated[int, Field(gt=0, le=5000)] = 1000
    holdout: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.0,
        description=(
            "Share of newly eligible MQLs held back from sales at random (by a hash of the lead "
            "id, so reruns agree) and logged, so `funnel report experiments` measures the "
            "pipeline promotion adds. 0 (off) by default: holding hot leads back from sales is "
            "the business's call; 0.1 is a common choice."
        ),
    )

    @model_validator(mode="after")
    def _rearm_below(self) -> PromotionConfig:
        if None not in (self.threshold, self.rearm_threshold) and (
            self.rearm_threshold >= self.threshold  # type: ignore[operator]
        ):
            raise ValueError(
                f"rearm_threshold ({self.rearm_threshold}) must be below threshold "
                f"({self.threshold})"
            )
        return self


class JobsConfig(Strict):
    state_store: str | None = None  # SQLAlchemy URL; default sqlite:///<data_dir>/jobs.db
    lease_seconds: Annotated[float, Field(gt=0)] = 300.0
    retry: RetryConfig = Field(default_factory=RetryConfig)
    destinations: dict[Annotated[str, Field(pattern=_NAME)], DestinationConfig] = {
        "sales": FileDestinationConfig(type="file", path=Path("outbox/sales.jsonl")),
        "ads": FileDestinationConfig(type="file", path=Path("outbox/ads.jsonl"), hash_emails=True),
        "campaigns": FileDestinationConfig(type="file", path=Path("outbox/campaigns.jsonl")),
    }
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    audiences_file: Path = Path("configs/audiences.yaml")

    @model_validator(mode="after")
    def _known_destination(self) -> JobsConfig:
        if self.promotion.destination not in self.destinations:
            raise ValueError(
                f"promotion.destination '{self.promotion.destination}' is not one of the "
                f"destinations: {sorted(self.destinations)}"
            )
        return self


class ReportsConfig(Strict):
    """The funnel report's inputs beyond the data: ``fixes_file`` lists the candidate fixes
    ranked by the value of the conversion they would add."""

    fixes_file: Path = Path("configs/fixes.yaml")


class GradeBounds(Strict):
    """The lowest 0-100 score of each grade the console shows (A best); below ``d`` is E."""

    a: Annotated[int, Field(ge=0, le=100)] = 80
    b: Annotated[int, Field(ge=0, le=100)] = 60
    c: Annotated[int, Field(ge=0, le=100)] = 40
    d: Annotated[int, Field(ge=0, le=100)] = 20

    @model_validator(mode="after")
    def _descending(self) -> GradeBounds:
        if not self.a > self.b > self.c > self.d:
            raise ValueError(
                f"grade bounds must fall from a to d (a > b > c > d), got a={self.a} b={self.b} "
                f"c={self.c} d={self.d}"
            )
        return self


class UiConfig(Strict):
    """``funnel ui``: the web console for marketing and sales (users come from the
    environment: FUNNEL_UI_ADMIN, FUNNEL_UI_VIEWERS)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 8080
    page_size: Annotated[int, Field(gt=0, le=500)] = 50  # rows per page of every table
    grades: GradeBounds = Field(default_factory=GradeBounds)
    # where `mlflow ui` answers, for the links of the models page; None hides them
    mlflow_ui_url: Annotated[str, Field(pattern=r"^https?://")] | None = "http://127.0.0.1:5000"


class ImportedModelConfig(Strict):
    """``imports.<name>``: how the model of an imported table decides and is crowned. Each key
    set here wins over the dataset spec's (``decision``, ``promotion_rule``), e.g.
    ``--set imports.leads.decision.mode=precision --set imports.leads.decision.target=0.4``."""

    decision: DecisionRule | None = None
    promotion_rule: PromotionRuleConfig | None = None


class Config(Strict):
    profile: Literal["local", "production"] = "local"
    paths: PathsConfig = Field(default_factory=PathsConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    feature_store: FeatureStoreConfig = Field(default_factory=FeatureStoreConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    optuna: OptunaConfig = Field(default_factory=OptunaConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    imports: dict[str, ImportedModelConfig] = Field(default_factory=dict)
    # where this config was loaded from; relative paths resolve against its project root
    root: Path = PROJECT_ROOT

    # Sections are built per config (default_factory), never shared between configs: the
    # validator below resolves their relative paths in place.
    @model_validator(mode="after")
    def _absolute_paths(self) -> Config:
        for key in ("data_dir", "mlruns_dir"):
            value = getattr(self.paths, key)
            if not value.is_absolute():
                object.__setattr__(self.paths, key, (self.root / value).resolve())
        offers = self.training.nbo.offers_file
        if not offers.is_absolute():
            object.__setattr__(self.training.nbo, "offers_file", (self.root / offers).resolve())
        audiences = self.jobs.audiences_file
        if not audiences.is_absolute():
            object.__setattr__(self.jobs, "audiences_file", (self.root / audiences).resolve())
        plan = self.data.tracking_plan
        if not plan.is_absolute():
            object.__setattr__(self.data, "tracking_plan", (self.root / plan).resolve())
        fixes = self.reports.fixes_file
        if not fixes.is_absolute():
            object.__setattr__(self.reports, "fixes_file", (self.root / fixes).resolve())
        return self

    # Resolved locations: defaults follow the paths so tests can point everything at tmp_path.
    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def oracle_dir(self) -> Path:
        return self.data_dir / "oracle"

    @property
    def quarantine_dir(self) -> Path:
        """Event rows the tracking plan kept out or flagged, per source (core/tracking.py)."""
        return self.data_dir / "quarantine"

    @property
    def tracking_uri(self) -> str:
        return self.tracking.uri or f"sqlite:///{self.paths.mlruns_dir / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Where new experiments keep their artifacts; None with a tracking server (http or
        https ``tracking.uri``): the server's own store (``mlflow server --serve-artifacts``)."""
        if self.tracking.artifact_location or not self.tracking_uri.startswith("http"):
            return self.tracking.artifact_location or str(self.paths.mlruns_dir / "artifacts")
        return None

    @property
    def state_store_url(self) -> str:
        return self.jobs.state_store or f"sqlite:///{self.data_dir / 'jobs.db'}"

    def destination_path(self, path: Path) -> Path:
        return path if path.is_absolute() else self.data_dir / path

    @property
    def optuna_storage(self) -> str:
        return self.optuna.storage or f"sqlite:///{self.paths.mlruns_dir / 'optuna.db'}"

    @property
    def online_store(self) -> dict[str, Any]:
        store = self.feature_store.online_store
        if isinstance(store, RedisOnline):
            return {"type": "redis", "connection_string": store.connection_string}
        return {"type": "sqlite", "path": str(store.path or self.data_dir / "online_store.db")}

    @property
    def registry(self) -> dict[str, Any]:
        reg = self.feature_store.registry
        if isinstance(reg, SqlRegistry):
            return {"registry_type": "sql", "path": reg.path}
        return {"path": str(reg.path or self.data_dir / "registry.db")}

    def api_key(self) -> str | None:
        """The key guarding scoring routes: the environment wins over the file."""
        return os.environ.get(API_KEY_ENV) or self.serving.api_key


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """``["optuna.n_trials=5"]`` -> ``[("optuna.n_trials", 5)]``; values are YAML scalars."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value")
        parsed.append((key.strip(), yaml.safe_load(raw) if raw else None))
    return parsed


def format_validation_error(err: ValidationError, source: str) -> str:
    """A pydantic error as one line per problem, each naming the dotted key (``optuna.n_trials``)
    under a heading that names ``source`` (a file, or the options it came from); pydantic's
    internal validator names are left out of the keys."""
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        where = ".".join(
            str(p) for p in e["loc"] if not str(p).startswith(("function-", "tagged-"))
        )
        msg = "unknown key (not allowed here)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def read_yaml_mapping(
    path: Path, what: str = "config file", found_by: str = "", shape: str = "at the top level"
) -> dict[str, Any]:
    """A YAML file holding a mapping; a missing file, bad YAML or another shape raises
    ``ConfigError`` naming the file (and ``found_by``, the key that points at it)."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}{f' ({found_by})' if found_by else ''}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{what} {path} must hold a mapping {shape}")
    return tree


def load_config(
    path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Load and validate a YAML config; a bad key or value raises ``ConfigError`` naming it."""
    cfg_path = Path(path) if path else DEFAULT_CONFIG
    tree = read_yaml_mapping(cfg_path)
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    tree.setdefault("root", str(_project_root_for(cfg_path)))
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(cfg_path))) from None


def _project_root_for(cfg_path: Path) -> Path:
    """The project root that relative paths in a config resolve against: ``<root>`` for a
    config in ``<root>/configs/``, else the folder ``funnel`` runs in (never the config's own
    folder: a config kept elsewhere still writes its data under the project)."""
    parent = cfg_path.resolve().parent
    return parent.parent if parent.name == "configs" else Path.cwd().resolve()

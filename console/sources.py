"""Where the console reads, opened once per process and shared by every request.

- the jobs' state store (queue, dead letters, audiences, the audit trail);
- the raw leads and accounts (``LeadDirectory``, rebuilt when the tables change);
- the champions and the Feast stores, through serving's scorers: the online store for a
  lead's score, reasons, stage and next best offer, the offline store for its score at past
  snapshots;
- the MLflow registry (the models page, re-read at most every ``REGISTRY_TTL_S``);
- the report JSON files, and the stage counts over time (computed in the background from the
  feature tables, once per version of them).

The slow parts (Feast, MLflow, the directory of a million leads) load in a background thread at
start-up (``warm_up``); a page that needs one before it is ready waits for it. A part that
cannot load says why on the page that needs it, with the command that fixes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.engine import Engine

from activation.state import open_engine
from console.audit import create_audit_table
from console.leads import LeadDirectory
from console.models import Champion, champions
from console.queue import create_read_indexes
from console.readouts import JsonFiles
from core.errors import FunnelError
from core.offers import load_offers
from core.tables import table_path
from features.store import feature_store, historical_features
from reports.funnel_report import stage_counts, stage_history
from serving.loading import load_champion
from serving.scorer import LeadScorer, OfferRanker, online_reads

log = logging.getLogger("funnel.console")
T = TypeVar("T")
REGISTRY_TTL_S = 30.0


class Unavailable(Exception):
    """A source the console cannot use now; the message says why and what to run."""


class Loaded(Generic[T]):
    """A value loaded once (by the first caller, or the warm-up thread), or the reason it
    could not be; ``reset`` forgets it so the next caller loads it again."""

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: T | None = None
        self._error: str | None = None
        self._done = False

    def get(self) -> T:
        with self._lock:
            if not self._done:
                try:
                    self._value = self._load()
                except (FunnelError, OSError, ValueError, KeyError, RuntimeError) as exc:
                    self._error = str(exc).strip().splitlines()[0] if str(exc) else repr(exc)
                    log.warning("console source unavailable: %s", self._error)
                self._done = True
            if self._error is not None:
                raise Unavailable(self._error)
            return self._value  # type: ignore[return-value]

    @property
    def ready(self) -> bool:
        return self._done

    def reset(self) -> None:
        with self._lock:
            self._value, self._error, self._done = None, None, False


@dataclass
class Scoring:
    """The live scoring parts: the online store, the MQL champion and its scorer, and the
    next-best-offer ranker (None without an NBO champion)."""

    store: Any
    model: Any  # training.scoring.ScoringModel
    scorer: LeadScorer
    ranker: OfferRanker | None
    nbo_problem: str | None = None


def _version(*paths: Path | None) -> tuple:
    out = []
    for p in paths:
        if p is None or not p.exists():
            out.append(None)
        else:
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


class Sources:
    """Every store the console reads. ``store`` and ``models`` ({kind: model}) replace the
    Feast store and the registry's champions (tests inject a small pipeline this way)."""

    def __init__(
        self, cfg: Any, *, store: Any = None, models: dict[str, Any] | None = None,
        registry: Callable[[], list[Champion]] | None = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self._store = store
        self._models = models
        self._registry_reader = registry or (lambda: champions(cfg, cfg.serving.model_alias))
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self.json = JsonFiles()
        self.scoring = Loaded(self._load_scoring)
        self._directory: tuple[tuple, LeadDirectory] | None = None
        self._directory_lock = threading.Lock()
        self._registry: tuple[float, list[Champion]] | None = None
        self._registry_lock = threading.Lock()
        self._ticks: tuple[tuple, pd.DatetimeIndex] | None = None
        self._stages: dict[tuple, pd.DataFrame | str] = {}
        self._stages_lock = threading.Lock()

    # -- state store ----------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                engine = open_engine(self.cfg.state_store_url)
                create_audit_table(engine)
                create_read_indexes(engine)
                self._engine = engine
            return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    # -- leads ----------------------------------------------------------------------------
    def directory(self) -> LeadDirectory:
        raw = self.cfg.raw_dir
        paths = (table_path(raw, "leads"), table_path(raw, "accounts"))
        if paths[0] is None or paths[1] is None:
            raise Unavailable(
                f"no raw leads or accounts table in {raw}: run `funnel data generate` or "
                "`funnel data import`"
            )
        version = _version(*paths)
        with self._directory_lock:
            if self._directory is None or self._directory[0] != version:
                started = time.perf_counter()
                try:
                    built = LeadDirectory.read(raw)
                except FunnelError as exc:
                    raise Unavailable(str(exc)) from exc
                self._directory = (version, built)
                log.info(
                    "lead directory: %d leads in %.1f s", len(built), time.perf_counter() - started
                )
            return self._directory[1]

    # -- scoring --------------------------------------------------------------------------
    def _model(self, kind: str) -> Any:
        if self._models is not None:
            if self._models.get(kind) is None:
                raise Unavailable(f"no {kind} model: run `funnel train {kind}`")
            return self._models[kind]
        return load_champion(self.cfg, kind, self.cfg.serving.model_alias)

    def _load_scoring(self) -> Scoring:
        cfg = self.cfg
        store = self._store if self._store is not None else feature_store(cfg)
        model = self._model("mql")
        reads = online_reads(cfg)
        scorer = LeadScorer(
            store, model, reads=reads, reasons=cfg.serving.reasons,
            configured_threshold=cfg.jobs.promotion.threshold, cache_rows=10_000,
        )  # fmt: skip
        ranker, problem = None, None
        try:
            ranker = OfferRanker(
                store, self._model("nbo"), load_offers(cfg), cfg.stages,
                cfg.serving.exploration_epsilon, reads=reads,
            )  # fmt: skip
        except (Unavailable, FunnelError, RuntimeError) as exc:
            problem = str(exc).splitlines()[0]
        return Scoring(store, model, scorer, ranker, problem)

    def snapshot_ticks(self) -> pd.DatetimeIndex:
        """The weekly snapshots of the offline feature tables (read once per build)."""
        path = self.cfg.features_dir / "lead_behavior.parquet"
        if not path.is_file():
            raise Unavailable(
                f"no feature tables in {self.cfg.features_dir}: run `funnel features apply`"
            )
        version = _version(path)
        if self._ticks is None or self._ticks[0] != version:
            column = pq.read_table(path, columns=["event_timestamp"]).column(0)
            ticks = pd.DatetimeIndex(pc.unique(column).to_pandas()).sort_values()
            ticks = ticks.tz_localize("UTC") if ticks.tz is None else ticks.tz_convert("UTC")
            self._ticks = (version, ticks)
        return self._ticks[1]

    def score_history(self, entities: pd.DataFrame) -> pd.DataFrame:
        """The MQL champion's score of each (lead, snapshot) row from the offline store: the
        features the lead had at that moment, point in time, as in training."""
        scoring = self.scoring.get()
        if entities.empty:
            return entities.assign(probability=[])
        frame = historical_features(scoring.store, entities, scoring.model.feature_service)
        prob = scoring.model.predict_proba(frame, num_threads=1)
        return entities.assign(probability=prob)

    # -- registry -------------------------------------------------------------------------
    def champions(self) -> list[Champion]:
        with self._registry_lock:
            now = time.monotonic()
            if self._registry is None or now - self._registry[0] > REGISTRY_TTL_S:
                self._registry = (now, self._registry_reader())
            return self._registry[1]

    # -- funnel ---------------------------------------------------------------------------
    def stage_counts(self) -> pd.DataFrame | str | None:
        """Leads per stage at each snapshot: the frame, or why it cannot be computed, or
        None while it is computed in the background (started by the first call)."""
        tables = [self.cfg.features_dir / f"{t}.parquet" for t in ("lead_behavior", "lead_profile")]
        version = _version(*tables, table_path(self.cfg.raw_dir, "leads"))
        with self._stages_lock:
            if version in self._stages:
                return self._stages[version]
            self._stages = {version: None}  # type: ignore[dict-item]
        threading.Thread(
            target=self._compute_stages, args=(version,), name="console-stages", daemon=True
        ).start()
        return None

    def _compute_stages(self, version: tuple) -> None:
        result: pd.DataFrame | str
        try:
            result = stage_counts(stage_history(self.cfg))
        except (FunnelError, OSError, ValueError, KeyError) as exc:
            result = f"{exc}"
        with self._stages_lock:
            self._stages[version] = result

    # -- start-up -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the slow sources in the background so the first pages answer fast."""

        def run() -> None:
            for step in (
                lambda: self.engine,
                self.directory,
                self.scoring.get,
                self.champions,
                self.stage_counts,
            ):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - the page that needs it says why
                    log.info("console warm-up: %s", str(exc).splitlines()[0] if str(exc) else exc)

        threading.Thread(target=run, name="console-warm-up", daemon=True).start()

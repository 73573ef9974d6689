"""The console's test world: the tiny pipeline (raw tables, feature tables, Feast online store,
small models) in a data folder of its own, with the reports written by the real report
functions and a state store filled by the promotion job's own functions: promotions over the
daily cap, held-out leads, one dead letter, and an audience sync."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from consolehelpers import ADMIN, ENV, VIEWER  # noqa: F401  (the fixtures use them)

from core.config import Config

REFUSED_LEAD_INDEX = 0  # the promoted lead whose message the destination refuses


@dataclass(frozen=True)
class ConsoleWorld:
    cfg: Config
    store: Any
    models: dict[str, Any]
    promoted: list[str]  # lead ids promoted (sent or dead-lettered)
    dead_lead: str  # the lead whose message is a dead letter
    waiting: list[str]
    held_out: list[str]


class _RefusingDestination:
    """Takes every message but the refused lead's, which it refuses for good (a 4xx)."""

    name = "sales"

    def __init__(self, refused: str) -> None:
        self.refused, self.sent = refused, []

    def send(self, message: dict[str, Any]) -> None:
        from activation.destinations import PermanentError

        if message["lead_id"] == self.refused:
            raise PermanentError("400 Bad Request: unknown owner for this lead")
        self.sent.append(message["idempotency_key"])

    def close(self) -> None:
        pass


def _world_config(tiny: Any, base: Path) -> Config:
    """The tiny pipeline's config with a data folder of its own (raw and feature tables linked
    in), so the reports and the state store written here touch no other test's files."""
    data = base / "data"
    data.mkdir(parents=True)
    for part in ("raw", "features"):
        (data / part).symlink_to(tiny.cfg.data_dir / part, target_is_directory=True)
    cfg = tiny.cfg
    return cfg.model_copy(
        update={
            "paths": cfg.paths.model_copy(update={"data_dir": data}),
            "jobs": cfg.jobs.model_copy(
                update={
                    "promotion": cfg.jobs.promotion.model_copy(
                        update={"daily_cap": 6, "holdout": 0.2, "threshold": None}
                    )
                }
            ),
            "ui": cfg.ui.model_copy(update={"page_size": 5}),
        }
    )


def fill_state_store(cfg: Config, tiny: Any) -> tuple[list[str], str, list[str], list[str]]:
    """Score every lead with the tiny MQL model, run the promotion decision and the outbox as
    the job does (with a destination that refuses one lead), and record an audience sync."""
    import sqlalchemy as sa

    from activation.lead_promotion import (
        PromotionReport,
        commit_decisions,
        fingerprint,
        resolve_thresholds,
    )
    from activation.outbox import deliver
    from activation.state import (
        audience_members,
        audience_syncs,
        leased_run,
        promotions,
        upsert,
    )
    from core.tables import read_table
    from serving.schemas import LeadScoreRequest
    from serving.scorer import LeadScorer

    leads = read_table(cfg.raw_dir, "leads")
    scorer = LeadScorer(tiny.store, tiny.model)
    data, _ = scorer.features([LeadScoreRequest(lead_id=i) for i in leads["lead_id"]])
    frame = pd.DataFrame({n: data[n] for n in tiny.model.feature_names})
    scores = pd.DataFrame(
        {
            "lead_id": data["lead_id"],
            "account_id": data["account_id"],
            "probability": tiny.model.predict_proba(frame),
            "reasons": [["Viewed pricing in the last 7 days"]] * len(frame),
            "model_version": tiny.model.version,
            "features_as_of": np.nan,
        }
    )
    scores["fingerprint"] = fingerprint(scores, ["probability"])
    directory = leads.set_index(leads["lead_id"].astype(str))[["email", "job_title", "account_id"]]
    report = PromotionReport()
    with leased_run(cfg.state_store_url, "promote", 30) as job:
        report.thresholds = resolve_thresholds(cfg.jobs.promotion, tiny.model.threshold)
        commit_decisions(
            job.engine, scores, report.thresholds, destination="sales",
            daily_cap=cfg.jobs.promotion.daily_cap, hash_emails=False, directory=directory,
            all_leads=True, now=pd.Timestamp.now(tz="UTC").timestamp(), report=report,
            holdout=cfg.jobs.promotion.holdout,
        )  # fmt: skip
        with job.engine.connect() as conn:
            decided = conn.execute(
                sa.select(promotions.c.lead_id, promotions.c.idempotency_key).order_by(
                    promotions.c.probability.desc()
                )
            ).all()
        promoted = [r.lead_id for r in decided if r.idempotency_key.startswith("mql-promotion:")]
        held_out = [r.lead_id for r in decided if r.idempotency_key.startswith("mql-holdout:")]
        refused = promoted[REFUSED_LEAD_INDEX]
        report.delivery = deliver(job.engine, _RefusingDestination(refused), cfg.jobs.retry)
        job.run.summary = report.as_dict()
    assert report.delivery.dead == 1 and report.waiting > 0 and held_out, report.as_dict()
    waiting = sorted(set(scores.loc[scores["probability"] >= report.thresholds.promote, "lead_id"])
                     - set(promoted) - set(held_out))  # fmt: skip

    # an audience sync, as sync_one commits it, with its run's summary
    members = sorted(leads["lead_id"])[:12]
    with leased_run(cfg.state_store_url, "sync-audiences", 30) as job:
        now = pd.Timestamp.now(tz="UTC").timestamp()
        with job.engine.begin() as conn:
            conn.execute(sa.insert(audience_members), [
                {"audience": "hot_leads", "destination": "ads", "member_id": m, "synced_at": now}
                for m in members
            ])  # fmt: skip
            upsert(conn, audience_syncs, [{
                "audience": "hot_leads", "destination": "ads", "version": 1,
                "members": len(members), "synced_at": now,
            }])  # fmt: skip
        job.run.summary = {"audiences": [{
            "audience": "hot_leads", "destination": "ads", "members": len(members),
            "adds": len(members), "removes": 0, "version": 1, "error": None,
        }]}  # fmt: skip
    return promoted, refused, waiting, held_out


@pytest.fixture(scope="session")
def console_world(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> ConsoleWorld:
    from reports.experiments import write_experiments_report
    from reports.funnel_report import write_funnel_report

    cfg = _world_config(tiny, tmp_path_factory.mktemp("console"))
    promoted, dead, waiting, held_out = fill_state_store(cfg, tiny)
    write_funnel_report(cfg)
    write_experiments_report(cfg)
    return ConsoleWorld(cfg, tiny.store, tiny.models, promoted, dead, waiting, held_out)


@pytest.fixture
def dead_letter(console_world: ConsoleWorld) -> str:
    """The refused lead's message is a dead letter now: a message requeued by an earlier test
    is sent again, and the destination still refuses it. Returns the lead id."""
    from activation.outbox import deliver
    from activation.state import open_engine

    engine = open_engine(console_world.cfg.state_store_url)
    try:
        deliver(engine, _RefusingDestination(console_world.dead_lead), console_world.cfg.jobs.retry)
    finally:
        engine.dispose()
    return console_world.dead_lead


@pytest.fixture
def make_console(console_world: ConsoleWorld) -> Callable[..., Any]:
    """A factory of console apps over the world (no warm-up thread: tests load on demand)."""
    from console.app import create_app
    from console.models import Champion
    from console.sources import Sources

    def registry() -> list[Champion]:
        return [
            Champion("mql", "funnel-mql", version="3", metrics=[("test_roc_auc", 0.81)]),
            Champion(
                "churn",
                "funnel-churn",
                problem="no 'champion' version of funnel-churn yet: run `funnel train churn`",
            ),
        ]

    def factory(env: dict[str, str] | None = None) -> Any:
        sources = Sources(
            console_world.cfg, store=console_world.store, models=console_world.models,
            registry=registry,
        )  # fmt: skip
        return create_app(console_world.cfg, sources=sources,
                          environ=ENV if env is None else env, warm_up=False)  # fmt: skip

    return factory


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())

"""Audience and campaign sync on the shared pipeline (real Feast online store, real champions):
only adds and removes are sent, a failed destination changes nothing, campaign waves are
assigned once with their propensities, and the exposures feed the next NBO model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from receiver import Receiver

from activation.audience_sync import sync_audiences
from activation.campaigns import record_conversions, sync_campaigns
from activation.state import audience_members, campaign_assignments, open_engine, rows_of
from core.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]  # the repository


def jobs_config(
    data_dir: Path,
    mlruns: Path,
    tmp: Path,
    audiences: dict,
    *extra: str,
    hook: str = "http://127.0.0.1:9/none",
    state_store: str | None = None,
) -> Config:
    (tmp / "audiences.yaml").write_text(yaml.safe_dump(audiences))
    destinations = {
        "ads": {"type": "file", "path": str(tmp / "ads.jsonl"), "hash_emails": True},
        "crm": {"type": "file", "path": str(tmp / "crm.jsonl")},
        "sales": {"type": "file", "path": str(tmp / "sales.jsonl")},
        "campaigns": {"type": "file", "path": str(tmp / "campaigns.jsonl")},
        "hook": {"type": "webhook", "url": hook, "timeout_s": 0.5},
    }
    return load_config(
        ROOT / "configs" / "local.yaml",
        [
            f"paths.data_dir={data_dir}",
            f"paths.mlruns_dir={mlruns}",
            f"jobs.state_store={state_store or 'sqlite:///' + str(tmp / 'jobs.db')}",
            f"jobs.audiences_file={tmp / 'audiences.yaml'}",
            f"jobs.destinations={json.dumps(destinations)}",
            "jobs.retry.base_delay_s=0",
            "jobs.retry.attempts_per_run=2",
            *extra,
        ],
    )


def sent(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()] if path.exists() else []


def members_of(messages: list[dict], op: str) -> set[str]:
    return {m["lead_id"] for msg in messages if msg["op"] == op for m in msg["members"]}


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_audience_sync_sends_only_adds_and_removes_with_hashed_emails(
    pipeline, tmp_path, store, request
) -> None:
    url = request.getfixturevalue("pg_state_store") if store == "postgresql" else None
    wide = {
        "audiences": {"engaged": {"destination": "ads", "where": {"events": ["events_30d >= 1"]}}}
    }
    narrow = {
        "audiences": {"engaged": {"destination": "ads", "where": {"events": ["events_30d >= 3"]}}}
    }
    cfg = jobs_config(
        pipeline.cfg.data_dir, pipeline.cfg.paths.mlruns_dir, tmp_path, wide, state_store=url
    )
    first = sync_audiences(cfg, progress=False).audiences[0]
    messages = sent(tmp_path / "ads.jsonl")
    added = members_of(messages, "add")
    assert first.error is None and first.adds == len(added) == first.members > 50
    assert first.removes == 0 and first.version == 1
    leads = pd.read_parquet(pipeline.cfg.raw_dir / "leads.parquet").set_index("lead_id")
    member = messages[0]["members"][0]
    assert "email" not in member  # an ad destination never sees the address
    expected = hashlib.sha256(leads.loc[member["lead_id"], "email"].strip().lower().encode())
    assert member["email_sha256"] == expected.hexdigest()

    again = sync_audiences(cfg, progress=False).audiences[0]  # nothing changed: nothing sent
    assert (again.adds, again.removes) == (0, 0) and len(sent(tmp_path / "ads.jsonl")) == len(
        messages
    )

    cfg = jobs_config(
        pipeline.cfg.data_dir, pipeline.cfg.paths.mlruns_dir, tmp_path, narrow, state_store=url
    )
    third = sync_audiences(cfg, progress=False).audiences[0]
    later = sent(tmp_path / "ads.jsonl")[len(messages) :]
    removed = members_of(later, "remove")
    assert third.adds == 0 and third.removes == len(removed) > 0 and not members_of(later, "add")
    gone = later[0]["members"][0]  # a removal carries the hashed email the platform matches on
    expected = hashlib.sha256(leads.loc[gone["lead_id"], "email"].strip().lower().encode())
    assert gone["email_sha256"] == expected.hexdigest()
    stored = {r["member_id"] for r in rows_of(open_engine(cfg.state_store_url), audience_members)}
    assert stored == added - removed and len(stored) == third.members


def test_a_failed_destination_leaves_the_audience_state_as_it_was(pipeline, tmp_path) -> None:
    receiver = Receiver(secret=None, weights={"500": 1.0}).up()
    tree = {
        "audiences": {
            "pricing": {"destination": "hook", "where": {"events": ["pricing_view_30d >= 1"]}}
        }
    }
    cfg = jobs_config(
        pipeline.cfg.data_dir, pipeline.cfg.paths.mlruns_dir, tmp_path, tree, hook=receiver.url
    )
    failed = sync_audiences(cfg, progress=False).audiences[0]
    assert failed.error and "HTTP 500" in failed.error and failed.adds > 0
    engine = open_engine(cfg.state_store_url)
    assert rows_of(engine, audience_members) == []  # nothing stored: the next run sends it all
    assert len(receiver.deliveries) == 2  # attempts_per_run
    receiver.weights = {"ok": 1.0}
    ok = sync_audiences(cfg, progress=False).audiences[0]
    assert ok.error is None and ok.adds == failed.adds and ok.version == 1
    assert {m["lead_id"] for b in receiver.held.values() for m in b["members"]} == {
        r["member_id"] for r in rows_of(engine, audience_members)
    }
    receiver.down()


@pytest.fixture
def pipeline_copy(pipeline, tmp_path) -> tuple[Path, Path]:
    """The pipeline's data and MLflow store, copied: these tests write exposures and models."""
    data, mlruns = tmp_path / "data", tmp_path / "mlruns"
    shutil.copytree(pipeline.cfg.data_dir, data)
    shutil.copytree(pipeline.cfg.paths.mlruns_dir, mlruns)
    return data, mlruns


CAMPAIGN = {
    "audiences": {
        "prospects": {
            "destination": "crm",
            "where": {"stages": ["awareness", "consideration", "decision"]},
        }
    },
    "campaigns": {"spring": {"audience": "prospects", "destination": "campaigns", "holdout": 0.3}},
}


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_campaign_sync_assigns_once_with_propensities_and_a_holdout(
    pipeline_copy, tmp_path, store, request
) -> None:
    url = request.getfixturevalue("pg_state_store") if store == "postgresql" else None
    data, mlruns = pipeline_copy
    cfg = jobs_config(data, mlruns, tmp_path, CAMPAIGN, state_store=url)
    before = pd.read_parquet(data / "raw" / "offer_exposures.parquet")
    report = sync_campaigns(cfg, wave="w1", progress=False).campaigns[0]
    rows = pd.DataFrame(rows_of(open_engine(cfg.state_store_url), campaign_assignments))
    assert report.assigned == len(rows) == report.eligible > 500
    assert abs(rows["holdout"].mean() - 0.3) < 0.05
    assert (rows.loc[rows["holdout"], "offer_id"] == "control").all()
    assert ((rows["propensity"] > 0) & (rows["propensity"] <= 1)).all()
    messages = sent(tmp_path / "campaigns.jsonl")
    offered = rows[rows["offer_id"] != "control"]
    assert {m["lead_id"] for m in messages} == set(offered["subject_id"])  # control gets nothing
    after = pd.read_parquet(data / "raw" / "offer_exposures.parquet")
    assert len(after) == len(before) + len(rows)
    new = after.iloc[len(before) :]
    assert set(new["subject_id"]) == set(rows["subject_id"]) and new["converted_at"].isna().all()
    assert np.allclose(np.sort(new["propensity"]), np.sort(rows["propensity"]))

    rerun = sync_campaigns(cfg, wave="w1", progress=False)  # the same wave: nothing new
    assert rerun.campaigns[0].assigned == 0 and rerun.exposures_written == 0
    assert len(sent(tmp_path / "campaigns.jsonl")) == len(messages)
    assert len(pd.read_parquet(data / "raw" / "offer_exposures.parquet")) == len(after)


@pytest.mark.timeout(900)
def test_the_loop_closes_assign_simulate_outcomes_retrain(
    pipeline, pipeline_copy, tmp_path
) -> None:
    """Campaign exposures with a known effect (the case study converts big accounts: +30
    points, and nobody else) are all the next NBO model learns from; it finds that effect."""
    from mlflow import MlflowClient

    from core.tables import read_manifest, write_tables
    from features.store import feature_store, historical_features
    from training.nbo import train_nbo
    from training.registry import configure_tracking, load_nbo_model

    data, mlruns = pipeline_copy
    cfg = jobs_config(data, mlruns, tmp_path, CAMPAIGN, "serving.exploration_epsilon=0.6")
    ex = pd.read_parquet(data / "raw" / "offer_exposures.parquet")
    write_tables({"offer_exposures": ex.iloc[:0]}, cfg.raw_dir)  # only the campaign's from here on
    end = pd.Timestamp(read_manifest(cfg.raw_dir)["end"])
    wave_at = (end - pd.Timedelta(days=20)).timestamp()
    sync_campaigns(cfg, wave="loop", progress=False, clock=lambda: wave_at)
    exposures = pd.read_parquet(data / "raw" / "offer_exposures.parquet")
    assert len(exposures) > 1000 and exposures["offer_id"].nunique() >= 3

    leads = pd.read_parquet(data / "raw" / "leads.parquet").set_index("lead_id")
    accounts = pd.read_parquet(data / "raw" / "accounts.parquet").set_index("account_id")
    size = accounts.loc[
        leads.loc[exposures["subject_id"], "account_id"], "employee_count"
    ].to_numpy()
    big = size >= np.median(size)
    p = 0.05 + 0.30 * ((exposures["offer_id"].to_numpy() == "case_study") & big)
    rng = np.random.default_rng(0)
    converted = rng.random(len(exposures)) < p
    conversions = pd.DataFrame(
        {
            "subject_id": exposures.loc[converted, "subject_id"].to_numpy(),
            "converted_at": exposures.loc[converted, "exposed_at"].to_numpy()
            + pd.Timedelta(days=3),
        }
    )
    assert record_conversions(cfg, conversions) == int(converted.sum())

    result = train_nbo(cfg, progress=False)
    configure_tracking(cfg)
    MlflowClient().set_registered_model_alias(
        result.model_name, "loop", result.version.split("/")[-1]
    )
    model = load_nbo_model(cfg, "loop")
    assert result.version != pipeline.nbo.version  # a new model, from the campaign's exposures

    entity = pd.DataFrame(
        {
            "lead_id": exposures["subject_id"].to_numpy(),
            "account_id": leads.loc[exposures["subject_id"], "account_id"].to_numpy(),
            "event_timestamp": exposures["exposed_at"].to_numpy(),
        }
    )
    frame = historical_features(feature_store(cfg), entity, model.feature_service)
    frame = frame.set_index("lead_id").loc[entity["lead_id"]].reset_index()
    uplift = model.uplift(frame)[:, model.offers.index("case_study")]
    assert uplift[big].mean() - uplift[~big].mean() > 0.1, (uplift[big].mean(), uplift[~big].mean())

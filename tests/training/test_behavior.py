"""Behavioral checks of the trained model, through the real feature pipeline: more buying
signals must never lower a lead's score."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd


def _scoring_rows(cfg, lead_ids: list[str], accounts: list[str], at: pd.Timestamp) -> pd.DataFrame:
    from features.store import feature_store, historical_features

    entity = pd.DataFrame({"lead_id": lead_ids, "account_id": accounts, "event_timestamp": at})
    return historical_features(feature_store(cfg), entity, "mql_v1")


def test_pricing_and_demo_events_never_lower_a_score(pipeline, config_at, tmp_path):
    from app.pipeline import apply_features
    from core.tables import read_manifest, read_tables, write_tables
    from training.registry import load_model

    cfg = pipeline.cfg
    model = load_model(cfg, cfg.training.mql.registered_model)
    tables = read_tables(cfg.raw_dir)
    end = pd.Timestamp(read_manifest(cfg.raw_dir)["end"])
    leads = tables["leads"]
    # one lead per account, so no chosen lead's colleague features change with another's events
    chosen = (
        leads[leads["created_at"] < end - pd.Timedelta(days=7)]
        .drop_duplicates("account_id")
        .sample(150, random_state=3)
    )
    before = _scoring_rows(cfg, chosen["lead_id"].tolist(), chosen["account_id"].tolist(), end)

    # the same leads, each with two pricing views and a demo request in the last day
    added = pd.DataFrame(
        {
            "event_id": [f"EXTRA{i:06d}" for i in range(3 * len(chosen))],
            "lead_id": np.repeat(chosen["lead_id"].to_numpy(), 3),
            "account_id": np.repeat(chosen["account_id"].to_numpy(), 3),
            "event_type": ["pricing_view", "pricing_view", "demo_request"] * len(chosen),
            "timestamp": end - pd.to_timedelta(np.tile([20, 10, 5], len(chosen)), unit="h"),
            "properties": None,
        }
    )
    tables["events"] = pd.concat([tables["events"], added], ignore_index=True)
    hot = config_at(tmp_path)
    write_tables(tables, hot.raw_dir)
    shutil.copy(cfg.raw_dir / "manifest.json", hot.raw_dir / "manifest.json")
    apply_features(hot)
    after = _scoring_rows(hot, chosen["lead_id"].tolist(), chosen["account_id"].tolist(), end)

    assert (after["pricing_view_7d"] == before["pricing_view_7d"] + 2).all()
    assert (after["demo_request_7d"] == before["demo_request_7d"] + 1).all()
    p_before, p_after = model.predict_proba(before), model.predict_proba(after)
    assert (p_after >= p_before - 1e-12).all(), np.sort(p_after - p_before)[:5]
    assert (p_after > p_before).mean() > 0.5  # and it does raise most of them

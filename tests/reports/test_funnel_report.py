"""The funnel report: stage history from feature tables, conversion, durations, account stages
and the HTML file. Unit tests use tiny hand-built frames whose numbers are worked out by hand."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.contract import empty_table
from core.stages import STAGES
from core.tables import read_table, write_tables
from reports.funnel_report import (
    account_stages,
    conversion_table,
    lead_stage_durations,
    stage_counts,
    stage_durations,
    stage_history,
    write_funnel_report,
)

T0 = pd.Timestamp("2025-03-03", tz="UTC")
WEEK = pd.Timedelta(days=7)
CODES = {"A": "awareness", "C": "consideration", "D": "decision", "R": "retention"}
IMG = '<img src="data:image/png;base64,'

# lead: (account, source, cohort, stage per weekly snapshot; "-" = not created yet)
FUNNEL = {
    "L1": ("acme", "organic", "2025-01", "A A C C D R"),  # straight through
    "L2": ("beta", "organic", "2025-02", "A D D A A A"),  # skips consideration, falls back
    "L3": ("acme", "paid_search", "2025-02", "- - A A A A"),  # created later, stays aware
    "L4": ("gamma", "paid_search", "2025-01", "C C C A A A"),  # starts in consideration
    "L5": ("beta", "organic", "2025-01", "A A A C C C"),  # three weeks aware, then considers
}


def history_of(leads: dict[str, tuple[str, str, str, str]]) -> pd.DataFrame:
    rows = [
        {
            "lead_id": lead,
            "account_id": account,
            "source": source,
            "cohort": cohort,
            "snapshot": T0 + week * WEEK,
            "stage": CODES[code],
        }
        for lead, (account, source, cohort, stages) in leads.items()
        for week, code in enumerate(stages.split())
        if code != "-"
    ]
    return pd.DataFrame(rows)


def steps(table: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
    """{from_stage: (reached, converted, drop_off)}"""
    return {
        r.from_stage: (r.reached, r.converted, r.drop_off) for r in table.itertuples(index=False)
    }


# ------------------------------------------------------------------------------ pure functions
def test_conversion_counts_reached_converted_and_drop_off() -> None:
    table = conversion_table(history_of(FUNNEL))
    assert list(zip(table["from_stage"], table["to_stage"], strict=True)) == [
        ("awareness", "consideration"),
        ("consideration", "decision"),
        ("decision", "retention"),
    ]
    # awareness: all 5, L3 never left it; consideration: L1, L2 (skipped), L4, L5, of which
    # L1 and L2 went on; decision: L1 and L2, only L1 became a customer
    assert steps(table) == {
        "awareness": (5, 4, 1),
        "consideration": (4, 2, 2),
        "decision": (2, 1, 1),
    }
    np.testing.assert_allclose(table["conversion_rate"], [0.8, 0.5, 0.5])
    np.testing.assert_allclose(table["drop_off_rate"], [0.2, 0.5, 0.5])


def test_a_skipped_stage_counts_as_passed() -> None:
    history = history_of({"S": ("a", "organic", "2025-01", "A D D")})
    assert steps(conversion_table(history)) == {
        "awareness": (1, 1, 0),
        "consideration": (1, 1, 0),  # never seen in consideration, yet it passed it
        "decision": (1, 0, 1),
    }
    # but a stage it was never seen in took no measurable time
    durations = lead_stage_durations(history)
    assert durations["stage"].tolist() == ["awareness"]
    assert durations["days"].tolist() == [7.0]


def test_conversion_by_source_and_by_cohort() -> None:
    history = history_of(FUNNEL)
    by_source = conversion_table(history, by="source")
    assert sorted(by_source["source"].unique()) == ["organic", "paid_search"]
    organic = steps(by_source[by_source["source"] == "organic"])  # L1, L2, L5
    paid = by_source[by_source["source"] == "paid_search"]  # L3, L4
    assert organic == {"awareness": (3, 3, 0), "consideration": (3, 2, 1), "decision": (2, 1, 1)}
    assert steps(paid) == {
        "awareness": (2, 1, 1),
        "consideration": (1, 0, 1),
        "decision": (0, 0, 0),
    }
    assert np.isnan(paid["conversion_rate"].iloc[2])  # nobody reached decision: no rate

    by_cohort = conversion_table(history, by="cohort")
    jan = steps(by_cohort[by_cohort["cohort"] == "2025-01"])  # L1, L4, L5
    feb = steps(by_cohort[by_cohort["cohort"] == "2025-02"])  # L2, L3
    assert jan == {"awareness": (3, 3, 0), "consideration": (3, 1, 2), "decision": (1, 1, 0)}
    assert feb == {"awareness": (2, 1, 1), "consideration": (1, 1, 0), "decision": (1, 0, 1)}
    # the groups add up to the whole
    overall = conversion_table(history)
    summed = by_cohort.groupby("from_stage", sort=False)[["reached", "converted"]].sum()
    assert (summed.to_numpy() == overall[["reached", "converted"]].to_numpy()).all()


def test_conversion_rejects_unknown_grouping_and_stages() -> None:
    history = history_of(FUNNEL)
    with pytest.raises(ValueError, match="by must be"):
        conversion_table(history, by="account_id")  # type: ignore[arg-type]
    history.loc[0, "stage"] = "churned"
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['churned'\]"):
        conversion_table(history)


def test_durations_per_lead_and_summary() -> None:
    per_lead = lead_stage_durations(history_of(FUNNEL))
    got = {(r.lead_id, r.stage): r.days for r in per_lead.itertuples(index=False)}
    # L1: A w0 -> C w2, C w2 -> D w4, D w4 -> R w5; L2: A w0 -> D w1 (then falls back: no more);
    # L5: A w0 -> C w3; L3 and L4 never move on after entering a stage
    assert got == {
        ("L1", "awareness"): 14.0,
        ("L2", "awareness"): 7.0,
        ("L5", "awareness"): 21.0,
        ("L1", "consideration"): 14.0,
        ("L1", "decision"): 7.0,
    }
    summary = stage_durations(history_of(FUNNEL)).set_index("stage")
    assert summary.index.tolist() == ["awareness", "consideration", "decision"]
    assert summary["count"].tolist() == [3, 1, 1]
    aware = summary.loc["awareness"]
    np.testing.assert_allclose(
        aware[["median", "p25", "p75", "mean"]].to_numpy(dtype=float), [14.0, 10.5, 17.5, 14.0]
    )
    np.testing.assert_allclose(summary.loc["decision", ["median", "mean"]].to_numpy(float), 7.0)


def test_durations_of_a_stage_nobody_left_are_empty() -> None:
    summary = stage_durations(history_of({"X": ("a", "organic", "2025-01", "A A A")}))
    assert summary["count"].tolist() == [0, 0, 0]
    assert summary[["median", "p25", "p75", "mean"]].isna().all().all()


def test_stage_counts_per_snapshot() -> None:
    counts = stage_counts(history_of(FUNNEL))
    assert counts.columns.tolist() == list(STAGES)
    assert len(counts) == 6
    assert counts.iloc[0].tolist() == [3, 1, 0, 0]  # L1, L2, L5 aware; L4 considering
    assert counts.iloc[1].tolist() == [2, 1, 1, 0]  # L2 jumped to decision
    assert counts.iloc[5].tolist() == [3, 1, 0, 1]  # L2, L3, L4 aware; L5; L1 a customer
    assert counts.sum(axis=1).tolist() == [4, 4, 5, 5, 5, 5]  # L3 exists from week 2


def test_account_stage_is_the_most_advanced_lead_at_the_latest_snapshot() -> None:
    accounts = account_stages(history_of(FUNNEL)).set_index("account_id")
    assert accounts.index.tolist() == ["acme", "beta", "gamma"]
    # acme: L1 retention + L3 awareness; beta: L2 awareness + L5 consideration;
    # gamma: L4 is back in awareness (its latest stage counts, not the most advanced ever)
    assert accounts["stage"].tolist() == ["retention", "consideration", "awareness"]
    assert accounts["leads"].tolist() == [2, 2, 1]
    assert (accounts["snapshot"] == T0 + 5 * WEEK).all()


# ---------------------------------------------------------------- stage_history on tiny tables
def write_tiny_funnel(cfg, leads: pd.DataFrame) -> None:
    """Raw leads plus the five feature tables, by hand, at snapshots T0, T0+1w, T0+2w.

    acme has an opportunity from T0+2w; beta becomes a customer at T0+2w."""
    write_tables({"leads": leads}, cfg.raw_dir)
    fdir = cfg.features_dir
    fdir.mkdir(parents=True)
    t1, t2 = T0 + WEEK, T0 + 2 * WEEK
    zeros = dict.fromkeys(
        [
            "demo_request_30d",
            "trial_signup_30d",
            "pricing_view_30d",
            "webinar_attended_30d",
            "content_download_30d",
        ],
        0.0,
    )
    behavior = pd.DataFrame(
        [
            {"lead_id": "L1", "event_timestamp": T0, **zeros},
            {"lead_id": "L1", "event_timestamp": t1, **zeros, "pricing_view_30d": 2.0},
            {"lead_id": "L1", "event_timestamp": t2, **zeros, "pricing_view_30d": 1.0},
            # L2 was created exactly at t1: its first feature row is at t2
            {"lead_id": "L2", "event_timestamp": t2, **zeros, "webinar_attended_30d": 1.0},
            {"lead_id": "L3", "event_timestamp": t2, **zeros},
        ]
    )
    behavior.to_parquet(fdir / "lead_behavior.parquet")
    behavior[["lead_id", "event_timestamp"]].to_parquet(fdir / "colleague_interest.parquet")
    usage = pd.DataFrame(
        {
            "account_id": ["acme"] * 3 + ["beta"] * 3,
            "event_timestamp": [T0, t1, t2] * 2,
            "is_customer": [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            "opportunities_90d": [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        }
    )
    usage.to_parquet(fdir / "account_usage.parquet")
    leads[["lead_id", "account_id", "source", "created_at"]].rename(
        columns={"created_at": "event_timestamp"}
    ).to_parquet(fdir / "lead_profile.parquet")
    pd.DataFrame({"account_id": ["acme", "beta"], "event_timestamp": [T0, T0]}).to_parquet(
        fdir / "account_firmographic.parquet"
    )


def tiny_leads() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3"],
            "account_id": ["acme", "beta", "acme"],
            "email": ["a@acme.test", "b@beta.test", "c@acme.test"],
            "job_title": ["CTO", None, "Engineer"],
            "source": ["organic", "webinar", "referral"],
            "created_at": [T0 - pd.Timedelta(days=9), T0 + WEEK, T0 + pd.Timedelta(days=9)],
        }
    )


def test_stage_history_joins_lead_and_account_features_by_snapshot(
    config_at, tmp_path: Path
) -> None:
    cfg = config_at(tmp_path)
    write_tiny_funnel(cfg, tiny_leads())
    history = stage_history(cfg)
    assert history.columns.tolist() == [
        "lead_id",
        "account_id",
        "source",
        "cohort",
        "snapshot",
        "stage",
    ]
    got = {
        (r.lead_id, (r.snapshot - T0).days // 7): r.stage for r in history.itertuples(index=False)
    }
    assert got == {
        ("L1", 0): "awareness",
        ("L1", 1): "consideration",  # pricing view
        ("L1", 2): "decision",  # acme's opportunity, an account feature of that snapshot
        ("L2", 1): "awareness",  # created exactly at the snapshot: exists, no features yet
        ("L2", 2): "retention",  # beta became a customer at t2 (wins over its webinar)
        ("L3", 2): "decision",  # no activity of its own, but its account has an opportunity
    }
    cohorts = history.drop_duplicates("lead_id").set_index("lead_id")["cohort"]
    assert cohorts.to_dict() == {"L1": "2025-02", "L2": "2025-03", "L3": "2025-03"}
    assert history.set_index("lead_id")["source"].to_dict()["L2"] == "webinar"

    # the default path, under the data folder
    path = write_funnel_report(cfg)
    assert path == cfg.data_dir / "reports" / "funnel.html"
    assert path.read_text().count(IMG) >= 4


def test_missing_feature_tables_say_to_run_features_apply(config_at, tmp_path: Path) -> None:
    cfg = config_at(tmp_path)
    with pytest.raises(FileNotFoundError, match="funnel features apply") as err:
        write_funnel_report(cfg, tmp_path / "f.html")
    assert str(cfg.features_dir) in str(err.value)
    cfg.features_dir.mkdir(parents=True)
    pd.DataFrame({"lead_id": [], "event_timestamp": []}).to_parquet(
        cfg.features_dir / "lead_behavior.parquet"
    )
    with pytest.raises(FileNotFoundError, match=r"account_usage\.parquet.*funnel features apply"):
        stage_history(cfg)
    assert not (tmp_path / "f.html").exists()


def test_no_leads_is_a_clear_error(config_at, tmp_path: Path) -> None:
    cfg = config_at(tmp_path)
    write_tiny_funnel(cfg, empty_table("leads"))
    with pytest.raises(ValueError, match="no leads"):
        write_funnel_report(cfg, tmp_path / "f.html")
    assert not (tmp_path / "f.html").exists()


# ------------------------------------------------------------------------ the shared pipeline
def test_report_on_the_pipeline(pipeline, tmp_path: Path) -> None:
    from core.tables import data_window

    cfg = pipeline.cfg
    history = stage_history(cfg)
    leads = read_table(cfg.raw_dir, "leads")
    assert set(history["lead_id"]) == set(leads["lead_id"])
    assert set(history["stage"]) <= set(STAGES)
    assert not history.duplicated(["lead_id", "snapshot"]).any()
    start, end = (pd.Timestamp(t) for t in data_window(cfg.raw_dir))
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    assert history["snapshot"].min() >= start and history["snapshot"].max() == end
    created = history["lead_id"].map(leads.set_index("lead_id")["created_at"])
    assert (history["snapshot"] >= created).all()
    # every lead is in every snapshot from its creation on
    ticks = np.sort(history["snapshot"].unique())
    expected = len(ticks) - np.searchsorted(ticks, leads.set_index("lead_id")["created_at"])
    per_lead = history.groupby("lead_id").size()
    assert (per_lead.loc[leads["lead_id"]].to_numpy() == expected).all()
    # the account features line up: every lead of a customer account is in retention
    usage = pd.read_parquet(cfg.features_dir / "account_usage.parquet")
    at_end = usage[usage["event_timestamp"] == end]
    customers = set(at_end.loc[at_end["is_customer"] == 1, "account_id"])
    latest = history[history["snapshot"] == end]
    assert (
        customers
        and (latest["account_id"].isin(customers) == (latest["stage"] == "retention")).all()
    )
    # the stages really move: more than one stage, and some leads convert
    assert latest["stage"].nunique() >= 3
    assert conversion_table(history)["converted"].gt(0).all()

    path = write_funnel_report(cfg, tmp_path / "f.html")
    assert path == tmp_path / "f.html"
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    for section in (
        "stages-over-time",
        "funnel",
        "by-cohort",
        "by-channel",
        "durations",
        "accounts",
    ):
        assert f'<section id="{section}">' in text
    assert text.count(IMG) >= 4
    assert "Data window" in text and end.strftime("%Y-%m-%d") in text
    for image in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', text):
        assert image.startswith("iVBORw0KGgo")  # PNG magic, base64-encoded
    assert "http://" not in text and "https://" not in text  # self-contained

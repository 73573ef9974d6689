"""The synthetic funnel: deterministic, valid, messy where it should be, and its oracle fair."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.contract import TABLE_NAMES
from core.tables import read_tables
from core.timegrid import snapshot_grid
from synthetic import generate as gen
from synthetic import stats

N_LEADS = 1500
SEED = 11
DAY = 86_400


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("funnel")
    summary = gen.generate(N_LEADS, SEED, out_dir=out, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def tables(data_dir):
    return read_tables(data_dir[0] / "raw")  # validates every table and the references


@pytest.fixture(scope="module")
def oracle(data_dir):
    return pd.read_parquet(data_dir[0] / "oracle" / "mql_oracle.parquet")


@pytest.fixture(scope="module")
def manifest(data_dir):
    return json.loads((data_dir[0] / "raw" / "manifest.json").read_text())


def seconds(s: pd.Series) -> np.ndarray:
    return s.astype("int64").to_numpy() // 10**9


def test_same_seed_gives_byte_identical_tables(tmp_path):
    a = gen.generate(300, 5, out_dir=tmp_path / "a", progress=False)
    b = gen.generate(300, 5, out_dir=tmp_path / "b", progress=False)
    gen.generate(300, 6, out_dir=tmp_path / "c", progress=False)
    assert a["events"] == b["events"]
    oracles = [f"oracle/{m}_oracle.parquet" for m in ("mql", "churn", "nbo")]
    for rel in [f"raw/{n}.parquet" for n in TABLE_NAMES] + oracles:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a/raw/events.parquet").read_bytes() != (
        tmp_path / "c/raw/events.parquet"
    ).read_bytes()


def test_layout_manifest_and_summary(data_dir, manifest, tables):
    out, summary = data_dir
    assert set(manifest) == {"seed", "leads", "accounts", "start", "end", "generated_at"}
    assert manifest["seed"] == SEED and manifest["leads"] == N_LEADS == len(tables["leads"])
    assert manifest["accounts"] == len(tables["accounts"])
    assert pd.Timestamp(manifest["start"]) == pd.Timestamp("2026-01-05", tz="UTC")  # a Monday
    assert pd.Timestamp(manifest["end"]) == pd.Timestamp("2026-01-05", tz="UTC") + pd.Timedelta(
        weeks=39
    )
    assert (out / "oracle" / "mql_oracle.parquet").is_file()
    assert summary["events"] == len(tables["events"])
    assert summary["opportunities"] == len(tables["opportunities"])


def test_tables_are_plausible(tables, manifest):
    accounts, leads, events, opps = (
        tables[n] for n in ("accounts", "leads", "events", "opportunities")
    )
    per_account = leads.groupby("account_id").size()
    assert per_account.between(1, 10).all() and 3 < per_account.mean() < 5
    assert accounts["employee_count"].between(5, 50_000).all()
    assert (
        np.corrcoef(np.log(accounts["employee_count"]), np.log(accounts["annual_revenue"]))[0, 1]
        > 0.8
    )
    assert leads["email"].str.fullmatch(r"[a-z]+\.[a-z]+\d*@[a-z0-9.]+").all()
    assert leads["email"].is_unique
    assert 20 < len(events) / len(leads) < 80  # some tens of events per lead
    assert set(events["event_type"]) == set(gen.EVENT_TYPES)
    # never before the lead existed, never at or after the data end
    created = leads.set_index("lead_id")["created_at"]
    assert (events["timestamp"] >= created.loc[events["lead_id"]].to_numpy()).all()
    end = pd.Timestamp(manifest["end"])
    assert events["timestamp"].max() < end and opps["created_at"].max() < end
    assert (
        accounts.set_index("account_id")["created_at"].loc[leads["account_id"]].to_numpy()
        < leads["created_at"].to_numpy()
    ).all()
    assert opps["lead_id"].is_unique  # a lead converts at most once
    assert (opps["created_at"] > created.loc[opps["lead_id"]].to_numpy()).all()
    assert set(opps["stage"]) <= {"created", "qualified", "closed_won"}


def test_titles_are_messy(tables):
    titles = tables["leads"]["job_title"]
    empty = titles.isna() | (titles == "")
    assert 0.02 < empty.mean() < 0.09 and titles.isna().any() and (titles == "").any()
    text = titles[~empty]
    catalogue = {v for *_, variants in gen.TITLE_CATALOGUE for v in variants}
    assert text.nunique() > 100
    assert (text.str.lower() == text).mean() > 0.1  # lower-case noise
    assert (text.str.upper() == text).any()
    assert (text != text.str.strip()).any()  # stray spaces
    typos = ~text.str.strip().str.lower().isin({c.lower() for c in catalogue})
    assert 0.02 < typos.mean() < 0.15
    assert {"VP Eng", "Head of Growth", "Software Engineer II"} & set(text)


def test_colleagues_are_correlated(tables, manifest):
    """A lead's activity level tracks its colleagues' (account intent and buying windows)."""
    leads, events = tables["leads"], tables["events"]
    end = pd.Timestamp(manifest["end"])
    weeks = (end - leads["created_at"]).dt.total_seconds() / (7 * DAY)
    counts = events["lead_id"].value_counts().reindex(leads["lead_id"]).fillna(0).to_numpy()
    rate = pd.Series(np.log1p(counts / np.maximum(weeks.to_numpy(), 0.5)), index=leads.index)
    acc = leads["account_id"]
    total, size = rate.groupby(acc).transform("sum"), rate.groupby(acc).transform("size")
    has = size > 1
    others = (total - rate)[has] / (size - 1)[has]  # colleagues' mean, the lead excluded
    r = np.corrcoef(rate[has], others)[0, 1]
    rng = np.random.default_rng(0)
    shuffled = np.corrcoef(rate[has], rng.permutation(others.to_numpy()))[0, 1]
    assert r > 0.15 and r > shuffled + 0.1


def test_oracle_rows_are_exactly_the_existing_unconverted_leads(tables, oracle, manifest):
    leads, opps = tables["leads"], tables["opportunities"]
    ticks = snapshot_grid(manifest["start"], manifest["end"])
    assert set(oracle["snapshot_ts"]) <= set(ticks)
    assert str(oracle["snapshot_ts"].dtype) == "datetime64[ns, UTC]"
    grid = leads[["lead_id", "created_at"]].merge(pd.DataFrame({"snapshot_ts": ticks}), how="cross")
    grid = grid.merge(
        opps[["lead_id", "created_at"]].rename(columns={"created_at": "opp_at"}),
        on="lead_id",
        how="left",
    )
    keep = (grid["created_at"] < grid["snapshot_ts"]) & ~(grid["opp_at"] < grid["snapshot_ts"])
    expected = set(zip(grid.loc[keep, "lead_id"], grid.loc[keep, "snapshot_ts"]))
    assert set(zip(oracle["lead_id"], oracle["snapshot_ts"])) == expected
    assert len(oracle) == len(expected)
    assert oracle["p_true"].between(0, 1).all()


def test_oracle_hazard_is_a_function_of_observables(tables, oracle, data_dir):
    """Recompute the weekly hazard h_t (``hazard_7d``) from the raw tables alone (plus the
    title's canonical meaning); p_true, which knows it for the first week, is at least h_t."""
    leads, events, accounts = tables["leads"], tables["events"], tables["accounts"]
    lead_pos = pd.Index(leads["lead_id"])
    acc_of = pd.Index(accounts["account_id"]).get_indexer(leads["account_id"])
    n_types = len(gen.HAZARD_TYPES)
    ev = events[events["event_type"].isin(gen.HAZARD_TYPES)]
    ev_lead = lead_pos.get_indexer(ev["lead_id"])
    ev_type = ev["event_type"].map({t: i for i, t in enumerate(gen.HAZARD_TYPES)}).to_numpy()
    ev_time = seconds(ev["timestamp"])
    o_lead = lead_pos.get_indexer(oracle["lead_id"])
    o_time = seconds(oracle["snapshot_ts"])

    def window(group: np.ndarray, key_of_row: np.ndarray, days: int) -> np.ndarray:
        """Per oracle row: count of events with the same (group, type) in [t - days, t)."""
        keys = np.sort((group[ev_lead].astype(np.int64) * n_types + ev_type) << 32 | ev_time)
        out = np.zeros((len(o_time), n_types))
        for k in range(n_types):
            base = (key_of_row.astype(np.int64) * n_types + k) << 32
            out[:, k] = np.searchsorted(keys, base | o_time) - np.searchsorted(
                keys, base | (o_time - days * DAY)
            )
        return out

    ident = np.arange(len(leads))
    own7, own30 = window(ident, o_lead, 7), window(ident, o_lead, 30)
    own90 = window(ident, o_lead, 90)
    acc30, acc90 = window(acc_of, acc_of[o_lead], 30), window(acc_of, acc_of[o_lead], 90)
    pricing, demo = gen.H["pricing_view"], gen.H["demo_request"]

    # recency reads engagement events only (product usage is not a marketing touch); contacts
    # imported before the data start may have none yet (NaN, read as 60 days by mql_logit)
    touches = events[events["event_type"] != "product_active"]
    all_keys = np.sort(
        lead_pos.get_indexer(touches["lead_id"]).astype(np.int64) << 32
        | seconds(touches["timestamp"])
    )
    pos = np.searchsorted(all_keys, o_lead.astype(np.int64) << 32 | o_time) - 1
    has_touch = (pos >= 0) & ((all_keys[np.maximum(pos, 0)] >> 32) == o_lead)
    created_before_start = (
        leads["created_at"].iloc[o_lead] < pd.Timestamp(data_dir[1]["start"])
    ).to_numpy()
    assert (has_touch | created_before_start).all()  # only imported contacts lack a touch
    days_since = np.where(
        has_touch, (o_time - (all_keys[np.maximum(pos, 0)] & 0xFFFFFFFF)) / DAY, np.nan
    )

    acc = accounts.iloc[acc_of[o_lead]]
    industry_fit = acc["industry"].isin(gen.TARGET_INDUSTRIES).to_numpy(dtype=float)
    emp = acc["employee_count"].to_numpy()
    size_fit = ((emp >= gen.FIT_EMPLOYEES[0]) & (emp <= gen.FIT_EMPLOYEES[1])).astype(float)
    truth = pd.read_parquet(data_dir[0] / "oracle" / "titles.parquet").set_index("lead_id")
    truth = truth.loc[oracle["lead_id"]]
    has_title = (truth["job_title"].notna() & (truth["job_title"] != "")).to_numpy()
    seniority = np.where(
        has_title, truth["seniority"].map(gen.SENIORITIES.index), gen.SENIORITIES.index("unknown")
    )
    department = np.where(
        has_title, truth["department"].map(gen.DEPARTMENTS.index), gen.DEPARTMENTS.index("other")
    )

    z = gen.mql_logit(
        own7,
        own30,
        days_since,
        industry_fit,
        size_fit,
        seniority,
        department,
        acc30[:, pricing] - own30[:, pricing],
        acc90[:, demo] - own90[:, demo],
    )
    np.testing.assert_allclose(
        oracle["hazard_7d"].to_numpy(), stats.sigmoid(z), rtol=1e-9, atol=1e-12
    )
    assert (oracle["p_true"] >= oracle["hazard_7d"] - 1e-12).all()


def test_label_rate_and_oracle_quality(data_dir, tables, oracle, manifest):
    _, summary = data_dir
    opp_at = tables["opportunities"].set_index("lead_id")["created_at"]
    t = oracle["snapshot_ts"]
    at = oracle["lead_id"].map(opp_at)
    label = (at > t) & (at <= t + pd.Timedelta(days=30))
    observed = t + pd.Timedelta(days=30) <= pd.Timestamp(manifest["end"])
    rate = label[observed].mean()
    assert 0.015 < rate < 0.06
    assert summary["mql_label_rate"] == pytest.approx(rate)
    auc = stats.auc(label[observed].to_numpy(), oracle["p_true"][observed].to_numpy())
    assert auc == pytest.approx(summary["oracle_auc"])
    assert 0.75 < auc < 0.97  # informative, not trivial
    assert 0.05 < summary["lead_conversion_rate"] < 0.35


def _observed_rows(tables, oracle, manifest) -> pd.DataFrame:
    """The oracle rows whose 30-day window ends by the data end, with their realized label and
    the persistence value ``1 - (1 - h_t) ** (30/7)`` of the weekly hazard."""
    opp_at = tables["opportunities"].set_index("lead_id")["created_at"]
    t = oracle["snapshot_ts"]
    at = oracle["lead_id"].map(opp_at)
    rows = oracle.assign(
        label=(at > t) & (at <= t + pd.Timedelta(days=30)),
        persistence=1 - (1 - oracle["hazard_7d"]) ** (30 / 7),
    )
    return rows[t + pd.Timedelta(days=30) <= pd.Timestamp(manifest["end"])]


def test_oracle_is_calibrated(tables, oracle, manifest):
    """p_true is P(opportunity within 30 days | the generator's state): in each probability
    band, the realized conversion rate matches the band's mean p_true."""
    rows = _observed_rows(tables, oracle, manifest)
    band = pd.qcut(rows["p_true"], 5, labels=False)
    by_band = rows.groupby(band).agg(
        p=("p_true", "mean"), rate=("label", "mean"), n=("label", "size")
    )
    # snapshots of one lead, and leads of one account, are correlated: allow three binomial
    # errors of a fifth as many rows
    err = 3 * np.sqrt(by_band["p"] * (1 - by_band["p"]) / (by_band["n"] / 5))
    assert ((by_band["rate"] - by_band["p"]).abs() <= err).all(), by_band


def test_oracle_ranks_at_least_as_well_as_persistence(tables, oracle, manifest):
    """The forward-simulated oracle knows where each hazard is heading: on the same rows it
    ranks the realized labels at least as well as the persistence approximation."""
    rows = _observed_rows(tables, oracle, manifest)
    forward = stats.auc(rows["label"].to_numpy(), rows["p_true"].to_numpy())
    persistence = stats.auc(rows["label"].to_numpy(), rows["persistence"].to_numpy())
    assert forward >= persistence, (forward, persistence)


def test_oracle_futures_leave_the_data_alone(monkeypatch):
    """The oracle's futures draw from their own stream: with another number of paths the raw
    tables are the same, value for value."""
    forward = gen._forward_mql_probability
    reference = gen.simulate(300, 5)
    monkeypatch.setattr(
        gen, "_forward_mql_probability", lambda rng, **kw: forward(rng, **kw | {"paths": 3})
    )
    other = gen.simulate(300, 5)
    for name, table in reference.tables.items():
        pd.testing.assert_frame_equal(table, other.tables[name], check_exact=True, obj=name)
    assert not np.array_equal(reference.oracle["p_true"], other.oracle["p_true"])
    np.testing.assert_array_equal(reference.oracle["hazard_7d"], other.oracle["hazard_7d"])


def test_format_ids():
    assert gen.format_ids("L", np.array([1, 42]), 7).tolist() == ["L0000001", "L0000042"]
    assert gen.format_ids("E", np.array([123456]), 3).tolist() == ["E123456"]


def test_future_data_end_is_refused(tmp_path):
    with pytest.raises(ValueError, match="in the future"):
        gen.generate(10, 1, start=pd.Timestamp.now(tz="UTC"), out_dir=tmp_path, progress=False)

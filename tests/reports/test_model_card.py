"""Model cards: PSI and the card's statistics by hand on tiny arrays, then the cards of the
pipeline's trained champions."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest

from reports.model_card import (
    PSI_EPSILON,
    bootstrap_metrics,
    gains_curve,
    population_stability_index,
    psi_reading,
    psi_table,
    threshold_summary,
    tier_summary,
)

EPS = PSI_EPSILON


# -- PSI by hand -------------------------------------------------------------------------------
def test_psi_of_identical_samples_is_zero():
    values = np.arange(1.0, 11.0)
    assert population_stability_index(values, values.copy()) == 0.0
    assert population_stability_index(["a", "b", None], ["b", None, "a"]) == 0.0


def test_psi_of_a_shifted_numeric_sample_by_hand():
    # two quantile bins of [1, 2, 3, 4]: (-inf, 2.5] and (2.5, inf), half each
    expected = [1.0, 2.0, 3.0, 4.0]
    # 1 of 4 low: (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 3
    large = population_stability_index(expected, [1.0, 3.0, 4.0, 4.0], bins=2)
    assert large == pytest.approx(0.25 * math.log(3))
    assert psi_reading(large) == "large"
    # 3 of 10 low: 0.2 ln(0.7 / 0.3)
    moderate = population_stability_index(expected, [1, 2, 2, 3, 3, 3, 4, 4, 4, 4], bins=2)
    assert moderate == pytest.approx(0.2 * math.log(7 / 3))
    assert psi_reading(moderate) == "moderate"
    # 2 of 5 low: 0.1 ln 1.5
    stable = population_stability_index(expected, [1, 2, 3, 4, 4], bins=2)
    assert stable == pytest.approx(0.1 * math.log(1.5))
    assert psi_reading(stable) == "stable"


def test_psi_gives_an_empty_bin_the_epsilon_share_and_out_of_range_values_the_outer_bins():
    # 5 and 6 lie above the expected range: the top bin; the low bin is empty on the actual side
    value = population_stability_index([1, 2, 3, 4], [3, 4, 5, 6], bins=2)
    assert value == pytest.approx((EPS - 0.5) * math.log(EPS / 0.5) + 0.5 * math.log(2))


def test_psi_merges_repeated_quantile_edges():
    # quantiles of eight zeros and 1, 2 are all 0 but the last: bins (-inf, 0] and (0, inf)
    expected = [0.0] * 8 + [1.0, 2.0]
    actual = [0.0] * 5 + [5.0] * 5
    value = population_stability_index(expected, actual, bins=4)
    # (0.5 - 0.8) ln(0.5/0.8) + (0.5 - 0.2) ln(0.5/0.2) = 0.3 ln 4
    assert value == pytest.approx(0.3 * math.log(4))


def test_psi_counts_missing_values_as_their_own_bucket():
    # known [1, 2] -> edge 1.5; expected shares low .25, high .25, missing .5
    value = population_stability_index([1.0, 2.0, np.nan, np.nan], [1.0, 2.0, 3.0, np.nan], bins=2)
    # actual: low .25, high .5, missing .25 -> 0.25 ln 2 - 0.25 ln 0.5 = 0.5 ln 2
    assert value == pytest.approx(0.5 * math.log(2))
    # None in text columns too
    value = population_stability_index(["a", None], ["a", "a"])
    assert value == pytest.approx(0.5 * math.log(2) + (EPS - 0.5) * math.log(EPS / 0.5))


def test_psi_of_categories_puts_unseen_ones_in_one_bucket():
    value = population_stability_index(["a", "a", "b", "b"], ["a", "b", "c", "d"])
    # a, b: 0.5 -> 0.25 each; unseen (c and d): EPS -> 0.5
    by_hand = 2 * (-0.25 * math.log(0.5)) + (0.5 - EPS) * math.log(0.5 / EPS)
    assert value == pytest.approx(by_hand)
    # bools and forced categories are bucketed by value, not by quantile
    assert population_stability_index([True, False], [True, True]) == pytest.approx(
        0.5 * math.log(2) + (EPS - 0.5) * math.log(EPS / 0.5)
    )
    forced = population_stability_index([1, 1, 2, 2], [1, 2, 3, 3], categorical=True)
    assert forced == pytest.approx(by_hand)


def test_psi_reading_boundaries_and_bad_input():
    assert [psi_reading(v) for v in (0.0, 0.0999, 0.1, 0.25, 0.2501, float("nan"))] == [
        "stable", "stable", "moderate", "moderate", "large", "n/a",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="bins must be an integer of at least 2"):
        population_stability_index([1, 2], [1, 2], bins=1)
    with pytest.raises(ValueError, match="at least one value"):
        population_stability_index([], [1.0])


def test_psi_table_lists_every_feature_largest_first():
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "a", "b", "b"], "s": [1.0] * 4})
    current = pd.DataFrame({"x": [1.0, 3.0, 4.0, 4.0], "c": ["a", "b", "c", "d"], "s": [1.0] * 4})
    table = psi_table(reference, current, ["x", "c", "s"], categorical=["c"], bins=2)
    assert table["feature"].tolist() == ["c", "x", "s"]
    assert table["reading"].tolist() == ["large", "large", "stable"]
    assert table["psi"].iloc[1] == pytest.approx(0.25 * math.log(3))
    with pytest.raises(KeyError, match="missing"):
        psi_table(reference, current, ["x", "nope"])


# -- the card's other statistics ---------------------------------------------------------------
def test_bootstrap_metrics_are_the_logged_metrics_with_intervals_around_them():
    from training.metrics import classification_report

    rng = np.random.default_rng(3)
    prob = rng.uniform(0, 1, 2_000)
    y = (rng.uniform(0, 1, 2_000) < prob * 0.5).astype(int)
    table = bootstrap_metrics(y, prob, n_boot=100, seed=1).set_index("metric")
    report = classification_report(y, prob, 0.5)
    for name in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_at_10pct"):
        row = table.loc[name]
        assert row["value"] == pytest.approx(report[name], rel=1e-9), name
        assert row["low"] < row["value"] < row["high"], name
    again = bootstrap_metrics(y, prob, n_boot=100, seed=1).set_index("metric")
    assert again["low"].tolist() == table["low"].tolist()
    with pytest.raises(ValueError, match="both present"):
        bootstrap_metrics([0, 0], [0.1, 0.2])


def test_gains_threshold_and_tier_summaries_by_hand():
    contacted, captured = gains_curve(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    assert contacted.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert captured.tolist() == [0, 0.5, 0.5, 1, 1]

    s = threshold_summary(
        np.array([1, 0, 1, 0]),
        np.array([0.9, 0.6, 0.4, 0.1]),
        0.5,
        np.array(["w1", "w1", "w2", "w2"]),
    )
    assert (s["flagged"], s["flagged_share"], s["flagged_per_week"]) == (2, 0.5, 1.0)
    assert (s["precision"], s["recall"], s["base_rate"]) == (0.5, 0.5, 0.5)

    tiers = [{"name": "low", "min_probability": 0.0}, {"name": "high", "min_probability": 0.5}]
    t = tier_summary(np.array([0, 1, 1, 1]), np.array([0.1, 0.2, 0.6, 0.9]), tiers)
    assert t["tier"].tolist() == ["low", "high"]
    assert t["rows"].tolist() == [2, 2]
    assert t["observed rate"].tolist() == [0.5, 1.0]
    assert t["mean predicted rate"].tolist() == pytest.approx([0.15, 0.75])
    assert t["share of positives"].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert t["probability"].tolist() == ["0.00 – 0.50", "0.50 – 1.00"]


# -- the cards of the pipeline's champions -----------------------------------------------------
def _sections(text: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', text, flags=re.DOTALL))


def _rows(section: str) -> list[list[str]]:
    """Every table row of a section as cell texts (header rows included)."""
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", section, flags=re.DOTALL):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.DOTALL)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def _pngs(text: str) -> int:
    return text.count('src="data:image/png;base64,')


def test_the_mql_card_has_every_section_with_intervals_around_the_metrics(pipeline, tmp_path):
    from reports.model_card import write_model_card
    from training.registry import load_model

    cfg = pipeline.cfg
    out = tmp_path / "card.html"
    assert write_model_card(cfg, "mql", out_path=out) == out
    text = out.read_text()
    sections = _sections(text)
    assert list(sections) == [
        "model", "metrics", "decision", "calibration", "gains", "importance", "reasons", "drift",
    ]  # fmt: skip
    assert _pngs(text) >= 4
    facts = dict(r for r in _rows(sections["model"]) if len(r) == 2)
    assert facts["registered model"] == "funnel-mql"
    assert facts["version"] == str(pipeline.result.version)
    assert "champion" in facts["aliases"]
    assert facts["feature service"] == "mql_v1"
    assert {"train", "validation", "test"} <= {r[0] for r in _rows(sections["model"])}

    metrics = {r[0]: r for r in _rows(sections["metrics"])[1:]}
    assert set(metrics) == {"ROC AUC", "PR AUC", "Brier", "log loss", "lift@10%"}
    for label, (_, value, interval, _) in metrics.items():
        low, high = (float(v) for v in interval.split(" – "))
        assert low <= float(value) <= high, (label, value, interval)
    # the card's test rows are the ones training evaluated on
    assert float(metrics["ROC AUC"][1]) == pytest.approx(
        pipeline.result.metrics["roc_auc"], abs=1e-4
    )

    model = load_model(cfg, "funnel-mql", "champion", "mql")
    assert f"{model.threshold:.4f}" in sections["decision"]
    assert sections["reasons"].count("<h3>") == 3
    drift = _rows(sections["drift"])[1:]
    assert sorted(r[0] for r in drift) == sorted(model.feature_names)
    psi = [float(r[1]) for r in drift]
    assert psi == sorted(psi, reverse=True)
    assert {r[2] for r in drift} <= {"stable", "moderate", "large"}


def test_the_churn_card_shows_the_risk_tiers(pipeline, tmp_path):
    from reports.model_card import write_model_card

    out = write_model_card(pipeline.cfg, "churn", "champion", out_path=tmp_path / "churn.html")
    text = out.read_text()
    sections = _sections(text)
    assert {"model", "metrics", "decision", "drift"} <= set(sections)
    assert "Risk tiers" in sections["decision"]
    tiers = [r[0] for r in _rows(sections["decision"])[1:]]
    assert tiers == [t["name"] for t in pipeline.churn.tiers]
    assert _pngs(text) >= 4
    drift = {r[0] for r in _rows(sections["drift"])[1:]}
    assert "usage_events_30d" in drift and "plan" in drift


def test_the_nbo_card_shows_qini_curves_and_the_served_policy(pipeline, tmp_path):
    from reports.model_card import write_model_card
    from training.registry import load_nbo_model

    out = write_model_card(pipeline.cfg, "nbo", out_path=tmp_path / "nbo.html")
    text = out.read_text()
    sections = _sections(text)
    assert list(sections) == ["model", "qini", "policy"]
    assert _pngs(sections["qini"]) == 1 and _pngs(sections["policy"]) == 1
    offers = {r[0] for r in _rows(sections["qini"])[1:]}
    assert offers == set(load_nbo_model(pipeline.cfg).offers)
    policies = {r[0]: r for r in _rows(sections["policy"]) if len(r) == 4}
    assert set(pipeline.nbo.policy_values) <= set(policies)
    assert policies[pipeline.nbo.served][3] == "yes"
    assert html.escape(pipeline.nbo.reason)[:40] in sections["policy"]


def test_a_missing_alias_or_version_or_kind_is_named(pipeline, tmp_path):
    from reports.model_card import write_model_card
    from training.scoring import BundleError

    out = tmp_path / "card.html"
    with pytest.raises(BundleError, match="no model 'funnel-mql' with alias 'nope'"):
        write_model_card(pipeline.cfg, "mql", "nope", out_path=out)
    with pytest.raises(BundleError, match="no version 999 of model 'funnel-nbo'"):
        write_model_card(pipeline.cfg, "nbo", "999", out_path=out)
    with pytest.raises(ValueError, match=r"unknown model kind 'lead'.*'mql', 'churn', 'nbo'"):
        write_model_card(pipeline.cfg, "lead", out_path=out)
    assert not out.exists()


def test_cli_report_model_prints_the_path(pipeline, tmp_path):
    from click.testing import CliRunner

    from app.cli import main

    paths = pipeline.cfg.paths
    base = [
        "--set",
        f"paths.data_dir={paths.data_dir}",
        "--set",
        f"paths.mlruns_dir={paths.mlruns_dir}",
    ]
    out = tmp_path / "nbo.html"
    result = CliRunner().invoke(
        main, [*base, "report", "model", "nbo", "--alias", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"model card: {out}" in result.output and out.is_file()
    result = CliRunner().invoke(main, [*base, "report", "model", "mql", "--alias", "nope"])
    assert result.exit_code == 1 and "alias 'nope'" in result.output


def test_the_card_interval_is_the_one_training_logged():
    """One bootstrap for both: the card's ROC AUC interval equals the non-predictive guard's."""
    from reports.model_card import BOOTSTRAP_ROUNDS
    from training.bootstrap import predictive_check
    from training.train import PREDICTIVE_BOOT, PREDICTIVE_SEED

    assert BOOTSTRAP_ROUNDS == PREDICTIVE_BOOT
    rng = np.random.default_rng(5)
    prob = rng.uniform(0, 1, 400)
    y = (rng.uniform(0, 1, 400) < prob).astype(int)
    auc = bootstrap_metrics(y, prob).set_index("metric").loc["roc_auc"]
    check = predictive_check(y, prob, PREDICTIVE_BOOT, PREDICTIVE_SEED)
    assert (auc["low"], auc["high"]) == pytest.approx(check.roc_auc_ci, abs=1e-12)


def test_reports_are_written_readable_by_everyone(tmp_path):
    import os
    import stat

    from reports.html import write_atomic

    old = os.umask(0o077)  # even under a strict umask
    try:
        write_atomic(tmp_path / "out" / "page.html", "<p>hi</p>")
    finally:
        os.umask(old)
    page = tmp_path / "out" / "page.html"
    assert page.read_text() == "<p>hi</p>"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644
    assert [p.name for p in page.parent.iterdir()] == ["page.html"]  # no temp file left


@pytest.mark.timeout(600)
def test_the_card_of_an_imported_uplift_model(tmp_path, config_at):
    """An uplift table's model is a next-best-offer bundle: its card is rendered as nbo's, with
    the table's treatment column and arms named <column>:<value>."""
    from app.pipeline import import_flat
    from core.flat import spec_from_flags
    from reports.model_card import write_model_card
    from training.flat_uplift import train_dataset

    rng = np.random.default_rng(1)
    n = 600
    x, treated = rng.normal(size=n), rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(-0.5 + 0.5 * x + treated * 0.8 * (x > 0))))
    pd.DataFrame(
        {"id": [f"u{i}" for i in range(n)], "bought": (rng.uniform(size=n) < p).astype(int),
         "discount": treated, "x": x.round(3), "age": rng.integers(18, 80, n)}
    ).to_csv(tmp_path / "promo.csv", index=False)  # fmt: skip
    cfg = config_at(tmp_path, "training.nbo.learners=[s]", "training.nbo.folds=3",
                    "training.nbo.n_estimators=60", "training.nbo.n_boot=200")  # fmt: skip
    flags = {"label_column": "bought", "id_column": "id", "task": "uplift",
             "treatment": "discount", "control": "0"}  # fmt: skip
    import_flat(cfg, spec_from_flags(tmp_path / "promo.csv", flags))
    result = train_dataset(cfg, "promo", progress=False)
    assert set(result.policy_values) == {"control", "discount:1", "learned"}

    out = write_model_card(cfg, "promo", out_path=tmp_path / "promo.html")
    text = out.read_text()
    sections = _sections(text)
    assert list(sections) == ["model", "qini", "policy"]
    assert "uplift (funnel-promo/1)</h1>" in text
    facts = dict(r for r in _rows(sections["model"]) if len(r) == 2)
    assert facts["registered model"] == "funnel-promo" and facts["arms"] == "discount:1"
    assert facts["treatment column"] == "discount" and facts["control arm"].endswith("= 0)")
    assert {r[0] for r in _rows(sections["qini"])[1:]} == {"discount:1"}
    policies = {r[0]: r for r in _rows(sections["policy"]) if len(r) == 4}
    assert set(result.policy_values) <= set(policies) and policies[result.served][3] == "yes"
    assert "Extra positive labels per unit" in sections["policy"]

"""Champion vs challenger: the paired bootstrap by hand, the champion rule, the non-predictive
guard, and crown / rollback against a real MLflow registry (a copy of the session pipeline's);
versions of an imported table trained on different feature sets, compared and crowned by hand."""

from __future__ import annotations

import json
import math
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core.config import ConfigError, PromotionRuleConfig, load_config
from training.bootstrap import (
    METRICS,
    MetricComparison,
    PredictiveCheck,
    bootstrap_compare,
    champion_verdict,
    is_predictive,
    predictive_check,
)

ROOT = Path(__file__).resolve().parents[2]
# A second MQL version, cheaply: one trial, few rounds, no refit (about a third of the time)
CHEAP = (
    "training.mql.num_boost_round=80",
    "training.mql.refit_on_validation=false",
    "training.mql.num_threads=1",
)


# -- the bootstrap, by hand -----------------------------------------------------------------------
def test_point_values_by_hand():
    y = np.array([0, 0, 1, 1])
    a = np.array([0.1, 0.4, 0.35, 0.8])
    out = bootstrap_compare(y, a, a, n_boot=50)
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert out["roc_auc"].a == pytest.approx(0.75)
    # by score: 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0): precision 1 at recall 1/2, 2/3 at recall 1
    assert out["pr_auc"].a == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert out["brier"].a == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert out["log_loss"].a == pytest.approx(
        -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    )


def test_point_values_match_sklearn_with_ties():
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.binomial(1, 0.3, 300)
    a = np.round(np.clip(0.3 + 0.2 * (y - 0.3) + rng.normal(0, 0.2, 300), 0, 1), 1)  # many ties
    b = rng.random(300)
    out = bootstrap_compare(y, a, b, n_boot=20)
    assert out["roc_auc"].a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert out["pr_auc"].a == pytest.approx(average_precision_score(y, a), abs=1e-12)
    assert out["brier"].b == pytest.approx(brier_score_loss(y, b), abs=1e-12)
    assert out["log_loss"].b == pytest.approx(log_loss(y, np.clip(b, 1e-7, 1 - 1e-7)), abs=1e-12)


def test_perfect_beats_random_and_the_difference_is_oriented():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 30)
    perfect = np.where(y == 1, 0.9, 0.1)
    random = rng.random(len(y))
    out = bootstrap_compare(y, random, perfect, n_boot=300, seed=1)
    assert set(out) == set(METRICS)
    auc = out["roc_auc"]
    assert auc.b == 1.0 and auc.b_ci == (1.0, 1.0)
    assert auc.difference == pytest.approx(1.0 - auc.a)
    for metric in METRICS:  # positive = b better, for Brier and log loss too (lower is better)
        c = out[metric]
        assert c.difference > 0 and c.difference_ci[0] > 0, c
        assert c.verdict == "b better"
        assert c.a_ci[0] <= c.a <= c.a_ci[1] and c.b_ci[0] <= c.b <= c.b_ci[1]
    assert out["brier"].difference == pytest.approx(out["brier"].a - out["brier"].b)
    assert not out["brier"].higher_is_better and out["roc_auc"].higher_is_better
    swapped = bootstrap_compare(y, perfect, random, n_boot=300, seed=1)
    assert swapped["log_loss"].difference == pytest.approx(-out["log_loss"].difference)
    assert swapped["roc_auc"].verdict == "a better"


def test_identical_models_differ_by_zero():
    rng = np.random.default_rng(1)
    y = rng.binomial(1, 0.4, 80)
    p = rng.random(80)
    for c in bootstrap_compare(y, p, p.copy(), n_boot=200).values():
        assert c.difference == 0
        assert c.difference_ci[0] <= 0 <= c.difference_ci[1]
        assert c.verdict == "no clear difference"
        assert c.a_ci == c.b_ci  # paired: the same resampled rows for both


def test_seeded_and_paired():
    rng = np.random.default_rng(2)
    y = rng.binomial(1, 0.3, 200)
    a, b = rng.random(200), np.clip(rng.random(200) + 0.3 * y, 0, 1)
    first = bootstrap_compare(y, a, b, metrics=["roc_auc"], n_boot=100, seed=5)
    again = bootstrap_compare(y, a, b, metrics=["roc_auc"], n_boot=100, seed=5)
    assert first == again and list(first) == ["roc_auc"]
    # pairing: the interval of the difference is narrower than a's and b's added widths
    c = first["roc_auc"]
    width = c.difference_ci[1] - c.difference_ci[0]
    assert width < (c.a_ci[1] - c.a_ci[0]) + (c.b_ci[1] - c.b_ci[0])


@pytest.mark.parametrize(
    "y, a, b, kwargs, message",
    [
        ([0, 1], [0.1, 0.9], [0.1, 0.9], {"metrics": ["auc"]}, "choose from"),
        ([1, 1], [0.1, 0.9], [0.1, 0.9], {}, "both classes"),
        ([0, 2], [0.1, 0.9], [0.1, 0.9], {}, "only 0 and 1"),
        ([0, 1], [0.1, 0.9], [0.1], {}, "do not match"),
        ([0, 1], [0.1, 1.5], [0.1, 0.9], {}, "within [0, 1]"),
        ([0, 1], [0.1, 0.9], [0.1, 0.9], {"n_boot": 0}, "n_boot"),
    ],
)
def test_bad_input_is_named(y, a, b, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        bootstrap_compare(np.array(y), np.array(a), np.array(b), **kwargs)


# -- the non-predictive guard and the promotion rule ---------------------------------------------
def test_random_labels_are_not_predictive():
    rng = np.random.default_rng(4)
    prob = rng.random(2000)
    noise = predictive_check(rng.binomial(1, 0.2, 2000), prob, n_boot=300)
    assert not noise.predictive
    assert noise.roc_auc_ci[0] <= 0.5 <= noise.roc_auc_ci[1]
    assert "does not lie above 0.5" in noise.reason
    y = rng.binomial(1, prob)  # labels that follow the score
    signal = predictive_check(y, prob, n_boot=300)
    assert signal.predictive and signal.roc_auc_ci[0] > 0.5 and signal.lift_at_10pct > 1


def test_is_predictive_needs_both_the_interval_and_the_lift():
    assert is_predictive((0.55, 0.6), 1.4)
    assert not is_predictive((0.49, 0.6), 1.4)  # the interval includes 0.5
    assert not is_predictive((0.55, 0.6), 1.0)  # no lift
    assert not is_predictive((0.3, 0.45), 0.5)  # worse than chance


def _comparison(metric: str, diff: float, low: float, high: float) -> dict[str, MetricComparison]:
    higher = metric in ("roc_auc", "pr_auc")
    return {metric: MetricComparison(metric, 0.7, (0.6, 0.8), 0.7 + diff, (0.6, 0.8), diff,
                                     (low, high), higher)}  # fmt: skip


GOOD = PredictiveCheck(True, 0.8, (0.78, 0.82), 2.5)
NOISE = PredictiveCheck(False, 0.5, (0.48, 0.52), 1.0)


def test_champion_rule():
    default = PromotionRuleConfig()
    assert (default.metric, default.min_improvement, default.require_interval_above) == (
        "roc_auc", 0.0, True,
    )  # fmt: skip
    clear = _comparison("roc_auc", 0.02, 0.01, 0.03)
    assert champion_verdict(clear, default, GOOD).wins
    not_predictive = champion_verdict(clear, default, NOISE)
    assert not not_predictive.wins and "not predictive" in not_predictive.reason
    crossing = _comparison("roc_auc", 0.02, -0.01, 0.05)
    verdict = champion_verdict(crossing, default, GOOD)
    assert not verdict.wins and "does not lie above 0" in verdict.reason
    loose = PromotionRuleConfig(require_interval_above=False)
    assert champion_verdict(crossing, loose, GOOD).wins
    high_bar = PromotionRuleConfig(min_improvement=0.05)
    verdict = champion_verdict(clear, high_bar, GOOD)
    assert not verdict.wins and "does not exceed min_improvement 0.05" in verdict.reason
    # Brier: a positive difference already means lower (better) Brier for b
    brier = PromotionRuleConfig(metric="brier")
    assert champion_verdict(_comparison("brier", 0.004, 0.001, 0.007), brier, GOOD).wins
    assert not champion_verdict(_comparison("brier", -0.004, -0.007, -0.001), brier, GOOD).wins
    with pytest.raises(ValueError, match="has no 'pr_auc'"):
        champion_verdict(clear, PromotionRuleConfig(metric="pr_auc"), GOOD)


def test_promotion_rule_config(tmp_path):
    cfg = load_config(ROOT / "configs" / "local.yaml", [f"paths.data_dir={tmp_path}"])
    assert cfg.training.mql.promotion_rule == cfg.training.churn.promotion_rule
    cfg = load_config(
        ROOT / "configs" / "local.yaml",
        ["training.churn.promotion_rule={metric: log_loss, min_improvement: -0.01}"],
    )
    assert cfg.training.churn.promotion_rule.metric == "log_loss"
    assert cfg.training.churn.promotion_rule.min_improvement == -0.01
    with pytest.raises(ConfigError, match="training.mql.promotion_rule.metric"):
        load_config(ROOT / "configs" / "local.yaml", ["training.mql.promotion_rule.metric=auc"])
    with pytest.raises(ConfigError, match="promotion_rule.min_improvment: unknown key"):
        load_config(
            ROOT / "configs" / "local.yaml", ["training.mql.promotion_rule.min_improvment=0.1"]
        )


def test_train_result_says_not_predictive_loudly():
    from app.cli import format_train_result
    from training.train import TrainResult

    metrics = {"roc_auc": 0.51, "pr_auc": 0.1, "brier": 0.09, "log_loss": 0.3,
               "lift_at_10pct": 0.97, "precision_at_threshold": 0.1, "recall_at_threshold": 0.1,
               "mql_per_week": 150.0}  # fmt: skip
    result = TrainResult("funnel-mql", "4", "run", metrics, 0.2, False, predictive=False,
                         roc_auc_ci=(0.49, 0.53))  # fmt: skip
    text = format_train_result(result)
    assert "[95% CI 0.4900, 0.5300]" in text
    assert "NOT PREDICTIVE: not made champion" in text
    assert "challenger" not in text
    fine = TrainResult("funnel-mql", "5", "run", metrics, 0.2, False, roc_auc_ci=(0.7, 0.8))
    assert "NOT PREDICTIVE" not in format_train_result(fine)
    assert "challenger" in format_train_result(fine)


def test_tag_and_crown_never_crowns_a_non_predictive_model(tmp_path):
    from mlflow import MlflowClient

    from training.registry import configure_tracking, tag_and_crown

    cfg = load_config(
        ROOT / "configs" / "local.yaml",
        [f"paths.data_dir={tmp_path / 'data'}", f"paths.mlruns_dir={tmp_path / 'mlruns'}"],
    )
    configure_tracking(cfg)
    client = MlflowClient()
    client.create_registered_model("m")
    versions = [client.create_model_version("m", str(tmp_path)).version for _ in range(3)]
    # no champion yet, and still none for a model no better than chance
    assert not tag_and_crown("m", versions[0], {"predictive": "false"}, predictive=False,
                             challenger=True)  # fmt: skip
    assert client.get_registered_model("m").aliases == {}
    assert tag_and_crown("m", versions[1], {}, challenger=True)
    assert not tag_and_crown("m", versions[2], {}, challenger=True)
    assert client.get_registered_model("m").aliases == {"champion": 2, "challenger": 3}
    assert client.get_model_version("m", versions[0]).tags["predictive"] == "false"


def test_cli_refuses_bad_kinds_and_an_empty_registry(tmp_path):
    from app.cli import main

    base = ["--set", f"paths.data_dir={tmp_path / 'data'}",
            "--set", f"paths.mlruns_dir={tmp_path / 'mlruns'}"]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(main, [*base, "compare", "nbo"])
    assert result.exit_code == 1 and "unknown model kind 'nbo'" in result.output
    result = runner.invoke(main, [*base, "rollback", "churn"])
    assert result.exit_code == 1
    assert "no registered model 'funnel-churn'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, [*base, "promote", "nbo", "2"])
    assert result.exit_code == 1 and "no registered model 'funnel-nbo'" in result.output


# -- against a real registry -----------------------------------------------------------------------
def _retarget_sqlite(db: Path, old: str, new: str) -> None:
    """Point every stored path of the copied MLflow store at the copy, so runs logged there
    write their artifacts into the copy, never into the session pipeline's folder."""
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for _, column, kind, *_ in con.execute(f"pragma table_info('{table}')"):
                if kind.upper().startswith(("VARCHAR", "TEXT")):
                    con.execute(
                        f'update "{table}" set "{column}" = replace("{column}", ?, ?) '
                        f'where "{column}" like ?',
                        (old, new, f"%{old}%"),
                    )


@pytest.fixture
def registry_copy(pipeline, tmp_path):
    """``make(*overrides)``: a config on a copy of the pipeline's data and MLflow store."""
    from training.registry import configure_tracking

    original = pipeline.cfg
    data, mlruns = tmp_path / "data", tmp_path / "mlruns"
    shutil.copytree(original.data_dir, data)
    shutil.copytree(original.paths.mlruns_dir, mlruns)
    _retarget_sqlite(mlruns / "mlflow.db", str(original.paths.mlruns_dir), str(mlruns))

    def make(*overrides: str):
        return load_config(
            ROOT / "configs" / "local.yaml",
            [f"paths.data_dir={data}", f"paths.mlruns_dir={mlruns}", *overrides],
        )

    yield make
    configure_tracking(original)  # later tests read the pipeline's store


def _aliases(cfg) -> dict[str, str]:
    from mlflow import MlflowClient

    from training.registry import configure_tracking

    configure_tracking(cfg)
    aliases = MlflowClient().get_registered_model(cfg.training.mql.registered_model).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def test_challenger_compare_promote_and_rollback(pipeline, registry_copy):
    from mlflow import MlflowClient

    from app.cli import main
    from training.compare import CompareError, compare_models, read_history, rollback
    from training.train import train_classifier

    cfg = registry_copy()
    name = cfg.training.mql.registered_model
    old = _aliases(cfg)["champion"]
    new = train_classifier(registry_copy(*CHEAP), "mql", progress=False, n_trials=1)
    assert not new.became_champion and new.predictive
    assert _aliases(cfg) == {"champion": old, "challenger": new.version}
    client = MlflowClient()
    assert client.get_model_version(name, new.version).tags["predictive"] == "true"
    # the copy stays self-contained: the new run's artifacts are in it
    assert str(cfg.paths.mlruns_dir) in client.get_run(new.run_id).info.artifact_uri

    # a bar no model clears: the CLI shows the table and leaves the champion alone
    base = ["--set", f"paths.data_dir={cfg.data_dir}",
            "--set", f"paths.mlruns_dir={cfg.paths.mlruns_dir}"]  # fmt: skip
    runner = CliRunner()
    out = runner.invoke(
        main,
        [*base, "--set", "training.mql.promotion_rule.min_improvement=10", "compare", "mql",
         "--promote"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = int(pipeline.result.metrics["rows"])  # training's test part
    assert f"same {rows:,} test rows" in out.output
    for metric in METRICS:
        assert metric in out.output
    assert "does not exceed min_improvement 10" in out.output
    assert f"nothing changed: the champion stays version {old}" in out.output
    assert _aliases(cfg)["champion"] == old

    # a loose rule: b wins and becomes champion, the old one is kept as previous_champion
    loose = registry_copy(
        "training.mql.promotion_rule={min_improvement: -1.0, require_interval_above: false}"
    )
    result = compare_models(loose, "mql", crown=True)
    assert result.rows == rows == new.metrics["rows"]  # both scored on the same test rows
    assert result.comparison["roc_auc"].a == pytest.approx(pipeline.result.metrics["roc_auc"])
    assert result.comparison["roc_auc"].b == pytest.approx(new.metrics["roc_auc"])
    assert result.verdict.wins and result.crowned and result.previous_champion == old
    assert _aliases(cfg) == {"champion": new.version, "previous_champion": old}
    history = read_history(client, name)
    assert [h["version"] for h in history] == [old]
    assert history[0]["reason"].startswith(f"replaced by version {new.version}")
    assert set(history[0]) == {"version", "from", "until", "reason"}

    with pytest.raises(CompareError, match="no alias 'challenger'.*no challenger"):
        compare_models(cfg, "mql")

    # rollback restores the old champion and records that move too
    out = runner.invoke(main, [*base, "rollback", "mql"])
    assert out.exit_code == 0, out.output
    assert f"from version {new.version} to version {old}" in out.output
    assert _aliases(cfg) == {"champion": old, "previous_champion": new.version}
    history = read_history(client, name)
    assert [h["version"] for h in history] == [old, new.version]
    assert history[1]["reason"] == f"rolled back to version {old}"
    assert history[1]["from"] == history[0]["until"]
    assert rollback(cfg, "mql") == (old, new.version)  # twice undoes the rollback
    assert (
        json.loads(client.get_registered_model(name).tags["champion_history"])[-1]["version"] == old
    )


def test_compare_names_what_is_wrong(pipeline, registry_copy):
    from training.compare import CompareError, compare_models, rollback

    cfg = registry_copy()
    with pytest.raises(CompareError, match="no version 99 .*versions: 1"):
        compare_models(cfg, "mql", b="99")
    # the pipeline's registry may hold a challenger too (a retrain by another test)
    with pytest.raises(CompareError, match="no alias 'nope' .*aliases: .*champion -> "):
        compare_models(cfg, "mql", b="nope")
    with pytest.raises(CompareError, match="same model version"):
        compare_models(cfg, "mql", a="champion", b="1")
    with pytest.raises(CompareError, match="no previous champion"):
        rollback(cfg, "mql")
    # the MQL config pointed at the churn model's registry entry: a model of another kind
    crossed = registry_copy(f"training.mql.registered_model={cfg.training.churn.registered_model}")
    with pytest.raises(CompareError, match="is a 'churn' model, not 'mql'"):
        compare_models(crossed, "mql", b="1")
    with pytest.raises(ValueError, match="unknown model kind 'nbo'"):
        compare_models(cfg, "nbo")


def test_random_labels_are_never_crowned(pipeline, registry_copy, monkeypatch):
    """A model trained on shuffled labels is flagged, logged and neither champion nor
    challenger, even when the model has no champion yet."""
    from mlflow import MlflowClient

    from app.cli import format_train_result
    from training import train

    cfg = registry_copy(*CHEAP)
    name = cfg.training.mql.registered_model
    for alias in _aliases(cfg):  # no champion (nor challenger) yet
        MlflowClient().delete_registered_model_alias(name, alias)
    real = train.label_entities

    def shuffled(cfg, kind="mql"):
        entity = real(cfg, kind)
        entity["label"] = np.random.default_rng(0).permutation(entity["label"].to_numpy())
        return entity

    monkeypatch.setattr(train, "label_entities", shuffled)
    result = train.train_classifier(cfg, "mql", progress=False, n_trials=1)
    assert not result.predictive and not result.became_champion
    low, high = result.roc_auc_ci
    assert low <= 0.5 <= high or result.metrics["lift_at_10pct"] <= 1
    assert _aliases(cfg) == {}
    client = MlflowClient()
    assert client.get_model_version(name, result.version).tags["predictive"] == "false"
    run = client.get_run(result.run_id)
    assert run.data.tags["predictive"] == "false"
    assert run.data.metrics["test_roc_auc_ci_low"] == pytest.approx(low)
    assert "NOT PREDICTIVE: not made champion" in format_train_result(result)


# -- an imported table whose feature set changed between versions ---------------------------------
@pytest.mark.timeout(900)
def test_versions_trained_on_different_feature_sets_compare_and_crown(tmp_path):
    """Version 1 learned from a leaky column kept on import; the table re-imported with that
    column declared post-outcome trains version 2 without it. Each version is scored on its own
    features over the same test rows, the old champion's card renders, and a version is crowned
    by hand with the audit trail of `compare --promote`."""
    import pandas as pd
    from mlflow import MlflowClient

    from app.cli import main
    from training.compare import read_history

    rng = np.random.default_rng(0)
    n = 800  # 480 training rows: enough for the first trials' leaf sizes
    x = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-1.5 * x))).astype(int)
    # a column that agrees with the label 70% of the time: strong, not "too good to be true"
    tags = np.where(rng.uniform(size=n) < 0.7, y, 1 - y)
    pd.DataFrame(
        {"id": [f"u{i}" for i in range(n)], "y": y, "x": x.round(3),
         "noise": rng.normal(size=n).round(3), "Tags": np.where(tags == 1, "won", "lost")}
    ).to_csv(tmp_path / "leads.csv", index=False)  # fmt: skip
    base = ["--set", f"paths.data_dir={tmp_path / 'data'}",
            "--set", f"paths.mlruns_dir={tmp_path / 'mlruns'}"]  # fmt: skip
    runner = CliRunner()

    def funnel(*args: str):
        return runner.invoke(main, [*base, *args], catch_exceptions=False)

    table = ["import", str(tmp_path / "leads.csv"), "--label", "y", "--id", "id"]
    assert funnel(*table, "--keep", "Tags").exit_code == 0
    first = funnel("train", "leads", "--trials", "2")
    assert "model funnel-leads version 1 (now champion)" in first.output, first.output
    again = funnel(*table, "--post-outcome", "Tags")
    assert again.exit_code == 0 and "LEAK Tags" in again.output
    second = funnel("train", "leads", "--trials", "2")
    assert "model funnel-leads version 2 (challenger" in second.output, second.output

    compared = funnel("compare", "leads")  # champion (with Tags) vs challenger (without)
    assert compared.exit_code == 0, compared.output
    assert "a: champion (version 1) vs b: challenger (version 2)" in compared.output
    auc = re.search(r"roc_auc\s+([\d.]+) \[[^]]*\]\s+([\d.]+) ", compared.output)
    assert auc and float(auc[1]) > float(auc[2])  # the leak helps version 1
    card = funnel("report", "model", "leads")  # the old champion's card
    assert card.exit_code == 0, card.output
    text = (tmp_path / "data" / "reports" / "model-leads.html").read_text()
    assert "Tags" in text and "Test metrics" in text

    crowned = funnel("promote", "leads", "2", "--reason", "Tags is known only after the outcome")
    assert crowned.exit_code == 0, crowned.output
    assert "version 2 of funnel-leads crowned champion" in crowned.output
    assert "version 1 is previous_champion (`funnel rollback leads` restores it)" in crowned.output
    client = MlflowClient()
    assert {k: str(v) for k, v in client.get_registered_model("funnel-leads").aliases.items()} == {
        "champion": "2", "previous_champion": "1"
    }  # fmt: skip
    (entry,) = read_history(client, "funnel-leads")
    assert entry["version"] == "1"
    assert entry["reason"] == "replaced by version 2: Tags is known only after the outcome"
    for args, message in (
        (("2",), "version 2 of 'funnel-leads' is already the champion"),
        (("9",), "model 'funnel-leads' has no version 9 (versions: 1, 2)"),
    ):
        refused = funnel("promote", "leads", *args)
        assert refused.exit_code == 1 and message in refused.output, refused.output
    back = funnel("promote", "leads", "1")  # the default reason
    assert back.exit_code == 0 and "(crowned by hand)" in back.output
    assert read_history(client, "funnel-leads")[-1]["reason"].endswith(": crowned by hand")

    # a feature neither the feature service nor the import's other columns hold: named
    (tmp_path / "data" / "imports" / "leads" / "columns.parquet").unlink()
    missing = funnel("compare", "leads", "--b", "2")
    assert missing.exit_code == 1
    assert "version funnel-leads/1 needs feature(s) Tags" in missing.output

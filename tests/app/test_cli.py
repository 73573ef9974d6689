"""Every CLI entry point rejects bad input with one clear line and a non-zero exit."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main


@pytest.fixture
def run(tmp_path):
    """Invoke `funnel` with every path under tmp_path."""
    runner = CliRunner()

    def invoke(*args: str):
        base = [
            "--set",
            f"paths.data_dir={tmp_path / 'data'}",
            "--set",
            f"paths.mlruns_dir={tmp_path / 'mlruns'}",
        ]
        return runner.invoke(main, [*base, *args], catch_exceptions=False)

    return invoke


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "features", "train", "serve", "demo"):
        assert command in result.output


def test_misspelled_config_key_is_named(run):
    result = run("--set", "optuna.n_trails=3", "data", "generate", "--leads", "10")
    assert result.exit_code == 1
    assert "optuna.n_trails: unknown key" in result.output


def test_malformed_override(run):
    result = run("--set", "optuna", "data", "generate")
    assert result.exit_code == 1 and "section.key=value" in result.output


def test_bad_option_values(run):
    result = run("data", "generate", "--leads", "0")
    assert result.exit_code == 2 and "--leads" in result.output
    result = run("train", "mql", "--trials", "zero")
    assert result.exit_code == 2 and "--trials" in result.output


def test_missing_config_file(tmp_path):
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.yaml"), "data", "generate"])
    assert result.exit_code != 0 and "nope.yaml" in result.output


def test_steps_out_of_order_say_what_to_run(run):
    for args in (
        ("features", "apply"), ("features", "materialize"), ("train", "mql"), ("train", "churn"),
        ("train", "nbo"),
    ):  # fmt: skip
        result = run(*args)
        assert result.exit_code == 1, args
        assert "funnel data generate" in result.output, (args, result.output)


def test_generate_refuses_a_window_in_the_future(run):
    result = run("--set", "data.start=2099-01-05", "data", "generate", "--leads", "50")
    assert result.exit_code == 1 and "future" in result.output


def test_a_bad_raw_table_names_table_column_rows_and_writes_nothing(run, tmp_path):
    assert run("data", "generate", "--leads", "200", "--seed", "3").exit_code == 0
    events_path = tmp_path / "data" / "raw" / "events.parquet"
    events = pd.read_parquet(events_path)
    events.loc[[4, 9], "event_type"] = "teleported"
    events.to_parquet(events_path)
    result = run("features", "apply")
    assert result.exit_code == 1
    assert "events" in result.output and "event_type" in result.output
    assert "teleported" in result.output and "row 4" in result.output
    assert not (tmp_path / "data" / "features" / "lead_behavior.parquet").exists()


def test_generate_writes_the_contract_tables(run, tmp_path):
    result = run("data", "generate", "--leads", "200", "--seed", "3")
    assert result.exit_code == 0, result.output
    raw = tmp_path / "data" / "raw"
    for table in (
        "accounts",
        "leads",
        "events",
        "opportunities",
        "subscriptions",
        "offer_exposures",
    ):
        assert (raw / f"{table}.parquet").is_file()
    assert (tmp_path / "data" / "oracle" / "mql_oracle.parquet").is_file()


def test_an_offer_the_catalogue_does_not_declare_is_named(run, tmp_path):
    from core.tables import read_tables, write_tables
    from synthetic.generate import generate

    generate(300, 2, out_dir=tmp_path / "data", progress=False)
    tables = read_tables(tmp_path / "data" / "raw")
    tables["offer_exposures"].loc[0, "offer_id"] = "free_lunch"
    write_tables(tables, tmp_path / "data" / "raw")
    result = run("train", "nbo")
    assert result.exit_code == 1
    assert "free_lunch" in result.output and "offers.yaml" in result.output


def test_a_bad_offers_file_is_named(run, tmp_path):
    bad = tmp_path / "offers.yaml"
    bad.write_text("offers:\n  - {id: a, cost: -1, value: 2}\n")
    result = run("--set", f"training.nbo.offers_file={bad}", "train", "nbo")
    assert result.exit_code == 1 and "offers.0.cost" in result.output


def test_score_rejects_a_bad_moment_a_bad_suffix_and_missing_features(run):
    result = run("score", "--as-of", "next tuesday")
    assert result.exit_code == 2 and "--as-of" in result.output and "next tuesday" in result.output
    result = run("score", "--as-of", "2026-01-05", "--out", "scores.json")
    assert result.exit_code == 1 and ".parquet or a .csv" in result.output
    result = run("score", "--as-of", "2026-01-05")
    assert result.exit_code == 1 and "funnel features apply" in result.output


# -- user errors and bugs -------------------------------------------------------------------------
def test_a_user_error_is_one_line_without_a_traceback(run):
    result = run("features", "apply")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("Error: ") and "funnel data generate" in result.output
    assert "Traceback" not in result.output


def test_a_user_error_named_by_key_is_shown_without_quotes(run, monkeypatch):
    import app.pipeline
    from core.errors import UnknownNameError

    def unknown(cfg):
        raise UnknownNameError("unknown audience(s) ['vip']; audiences.yaml declares ['all']")

    monkeypatch.setattr(app.pipeline, "apply_features", unknown)
    result = run("features", "apply")
    assert result.exit_code == 1
    assert result.output == "Error: unknown audience(s) ['vip']; audiences.yaml declares ['all']\n"


@pytest.mark.parametrize("error", [ZeroDivisionError("division by zero"), KeyError("lead_id")])
def test_a_bug_prints_its_traceback_and_asks_for_a_report(run, monkeypatch, error):
    import app.pipeline
    from app.cli import BUG_EXIT, BUG_LINE

    def broken(cfg):
        raise error

    monkeypatch.setattr(app.pipeline, "apply_features", broken)
    result = run("features", "apply")
    assert result.exit_code == BUG_EXIT == 70
    assert "Traceback (most recent call last)" in result.output
    assert f"{type(error).__name__}: {error}" in result.output
    assert "in broken" in result.output  # the frame that raised
    assert result.output.strip().splitlines()[-1] == BUG_LINE
    assert "bug in funnel" in BUG_LINE and "report" in BUG_LINE


def test_help_documents_the_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "70  a bug in funnel" in result.output and "1   a problem you can fix" in result.output


def test_train_mql_and_churn_share_one_command_body():
    from app.cli import train

    for kind, model in (("mql", "MQL"), ("churn", "churn-risk")):
        command = train.commands[kind]
        assert command.help == f"Tune and train the {model} model; register it in MLflow."
        assert [p.name for p in command.params] == ["trials", "workers"]


# -- model promotion and lead promotion: one name each ---------------------------------------------
def test_models_are_crowned_with_promote_and_leads_sent_with_jobs_promote_leads():
    from app.cli import jobs_group

    runner = CliRunner()
    top = runner.invoke(main, ["--help"]).output
    assert "promote" in top and "rollback" in top
    assert set(jobs_group.commands) >= {"promote-leads", "sync-audiences"}
    assert "promote" not in jobs_group.commands
    crown = runner.invoke(main, ["promote", "--help"]).output
    for words in ("NAME VERSION", "--reason", "not predictive", "too good to be true",
                  "champion_history"):  # fmt: skip
        assert words in " ".join(crown.split()), words
    leads = runner.invoke(main, ["jobs", "promote-leads", "--help"])
    assert leads.exit_code == 0 and "threshold" in leads.output


def test_promote_refuses_an_unknown_model_and_an_empty_registry(run):
    result = run("promote", "nope", "1")
    assert result.exit_code == 1
    assert "unknown model 'nope': choose mql, churn, nbo" in result.output
    result = run("promote", "mql", "1")
    assert result.exit_code == 1 and "no registered model 'funnel-mql'" in result.output
    assert "Traceback" not in result.output


def test_policy_values_under_one_print_with_four_significant_digits():
    from app.formatting import format_nbo_result, value_decimals
    from training.nbo import NboResult

    assert value_decimals([12.345, 0.5]) == 2  # money per unit: cents
    assert value_decimals([0.0173, -0.002]) == 5  # 0.01730
    assert value_decimals([0.25]) == 4 and value_decimals([0.0, float("nan")]) == 2
    values = {"learned": (0.0173, 0.0041, 0.0305), "control": (0.0, 0.0, 0.0)}
    result = NboResult(
        model_name="funnel-mail", version="1", run_id="run", learner="s", served="learned",
        reason="learned policy beats ...", validation_qini={"s": 0.1},
        metrics={"mean_qini": 0.05}, policy_values=values, became_champion=True,
    )  # fmt: skip
    text = format_nbo_result(result)
    assert "0.01730  [  0.00410,   0.03050]  <- served" in text


def test_nbo_result_names_both_shares_of_the_oracle():
    from app.formatting import format_nbo_result
    from training.nbo import NboResult

    def text(metrics: dict[str, float]) -> str:
        result = NboResult(
            model_name="funnel-nbo", version="1", run_id="run", learner="b", served="learned",
            reason="...", validation_qini={"b": 0.1}, metrics={"mean_qini": 0.15, **metrics},
            policy_values={"control": (0.0, 0.0, 0.0)}, became_champion=False,
        )  # fmt: skip
        return format_nbo_result(result)

    both = text({"mean_qini_vs_oracle": 0.867, "mean_expected_qini_vs_oracle": 0.949})
    assert "mean Qini 0.150, 95% of the oracle's expected Qini, 87% on the outcomes drawn" in both
    assert "mean Qini 0.150, 87% of the oracle's\n" in text({"mean_qini_vs_oracle": 0.867})
    assert "oracle" not in text({})  # an imported table has no oracle

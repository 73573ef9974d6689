"""Bring your own data as a flat table: type inference, bad files, the leakage guard, each
shared dataset with its traps, and `funnel import` + `funnel train` on one of them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError
from core.flat import (
    FlatImportError,
    ImportSpec,
    infer_column,
    prepare,
    read_flat,
    read_import_spec,
    spec_from_flags,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir() and not IN_CI, reason=f"{SHARED} missing (in CI this fails instead)"
)


def spec(**kw) -> ImportSpec:
    base = {"name": "t", "file": "t.csv", "id": "id", "label": {"column": "y"}}
    return ImportSpec.model_validate({**base, **kw})


def table(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"id": [f"u{i}" for i in range(n)], **columns})


# -- types -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [
        (["1.5", " 2", "", "NA", "n/a", "3"], "numeric", [1.5, 2.0, np.nan, np.nan, np.nan, 3.0]),
        (["Yes", "no", "YES", " ", "null", "No"], "boolean", [1.0, 0.0, 1.0, np.nan, np.nan, 0.0]),
        (
            ["red", "blue", "?", "red", "-", "green"],
            "categorical",
            ["red", "blue", None, "red", None, "green"],
        ),
    ],
)
def test_infer_column_types_and_na_like_strings(values, kind, expected) -> None:
    got_kind, got = infer_column(pd.Series(values, dtype=object))
    assert got_kind == kind
    if kind == "categorical":
        assert got.tolist() == expected
    else:
        np.testing.assert_array_equal(got.to_numpy(dtype=float), np.array(expected, dtype=float))


def test_infer_dates() -> None:
    kind, got = infer_column(pd.Series(["2026-01-05", "2026-02-01", "", "2026-03-09"]))
    assert kind == "date" and got.isna().tolist() == [False, False, True, False]
    assert got.iloc[1] == pd.Timestamp("2026-02-01", tz="UTC")


def test_prepare_types_features_and_drops_identifiers() -> None:
    raw = table(
        y=["yes", "no"] * 50,
        amount=[str(i) for i in range(100)],
        plan=list(np.random.default_rng(0).choice(["a", "b", "c"], 100)),
        email=[f"p{i}@x.com" for i in range(100)],
    )
    feat, labels, report = prepare(spec(), raw)
    assert report.types == {"amount": "numeric", "plan": "categorical", "email": "categorical"}
    assert "email" in report.dropped and report.features == ["amount", "plan"]
    assert list(feat.columns) == ["t_id", "event_timestamp", "amount", "plan"]
    assert labels["label"].tolist() == [1, 0] * 50 and report.positive_rate == 0.5


@pytest.mark.parametrize(
    ("raw", "kw", "message"),
    [
        (
            table(x=["1", "2"], y=["1", "0"]).drop(columns="id"),
            {},
            r"column\(s\) \['id'\] not found",
        ),
        (table(x=["1", "2"]), {}, r"column\(s\) \['y'\] not found"),
        (table(x=["1", "2"], y=["1", "0"]).assign(id=["a", "a"]), {}, "id column 'id' repeats"),
        (table(x=["1", "2", "3"], y=["a", "b", "c"]), {}, "the label must be binary"),
        (table(x=["1", "2"], y=["1", "1"]), {}, "every row has label 1"),
        (
            table(x=["1", "2", "3"], y=["1", "", "0"]),
            {},
            r"label 'y' is missing in 1 row\(s\): lines 3 \(ids u1\).*--drop-missing-label",
        ),
        (
            table(x=["1", "2", "3", "4"], y=["0", "1", "2", "5"]),
            {"label": {"column": "y", "positive": "1"}},
            r"4 values .* \['0', '2', '5'\] would all count as 0.*label.rule such as '> 0'",
        ),
        (
            table(x=["1", "2"], y=["0", "many"]),
            {"label": {"column": "y", "rule": "> 0"}},
            r"label.rule '> 0' needs numbers; found \['many'\]",
        ),
        (
            table(d=["01/02/2026", "03/04/2026"], y=["1", "0"]),
            {},
            r"column 'd' holds dates such as '01/02/2026'.*dayfirst: true or false.*--dayfirst",
        ),
        (
            table(x=["1", "2"], y=["ok", "ko"]),
            {"label": {"column": "y", "positive": "yes"}},
            "no row has the positive label 'yes'",
        ),
        (table(x=["1", "2"], y=["1", "0"]), {"task": "uplift"}, "uplift task needs treatment"),
    ],
)
def test_bad_files_fail_naming_the_column(raw, kw, message) -> None:
    with pytest.raises(FlatImportError, match=message):
        prepare(spec(**kw), raw)


def test_count_labels_need_a_rule_and_many_valued_ones_a_word_on_the_rest() -> None:
    x = [str(v) for v in np.random.default_rng(0).normal(size=8)]  # a feature with no signal
    raw = table(x=x, y=["0", "1", "2", "5"] * 2)
    _, labels, _ = prepare(spec(label={"column": "y", "rule": "> 0"}), raw)
    assert labels["label"].tolist() == [0, 1, 1, 1] * 2
    _, labels, _ = prepare(spec(label={"column": "y", "rule": ">= 2"}), raw)
    assert labels["label"].tolist() == [0, 0, 1, 1] * 2
    status = table(x=x, y=["won", "lost", "open", "won"] * 2)
    told = spec(label={"column": "y", "positive": "won", "others": "negative"})
    _, labels, _ = prepare(told, status)
    assert labels["label"].tolist() == [1, 0, 0, 1] * 2
    with pytest.raises(ValueError, match="not both"):
        spec(label={"column": "y", "positive": "1", "rule": "> 0"})


def test_rows_without_a_label_are_dropped_when_asked_and_named_as_file_lines() -> None:
    raw = table(x=[str(i) for i in range(6)], y=["1", "", "0", "NA", "1", "0"])
    _, labels, report = prepare(spec(label={"column": "y", "drop_missing": True}), raw)
    assert labels["t_id"].tolist() == ["u0", "u2", "u4", "u5"]
    assert report.rows == 4 and report.rows_dropped == 2
    assert "dropped 2 row(s) without a label: lines 3, 5 (ids u1, u3)" in report.notes
    no_ids = raw.drop(columns="id")
    _, labels, _ = prepare(spec(id=None, label={"column": "y", "drop_missing": True}), no_ids)
    assert labels["t_id"].tolist() == ["row_0", "row_2", "row_4", "row_5"]  # stable row ids


def test_dates_are_read_one_way_per_column_and_the_choice_is_noted() -> None:
    raw = table(
        at=["13/02/2026", "01/02/2026", "20/03/2026", "02/03/2026"],
        x=["1", "2", "3", "4"],
        y=["1", "0", "1", "0"],
    )
    feat, _, report = prepare(spec(timestamp="at"), raw)
    assert list(feat["event_timestamp"].dt.month) == [2, 2, 3, 3]
    assert "dates in 'at' read as %d/%m/%Y" in report.notes
    ambiguous = raw.assign(at=["01/02/2026", "03/02/2026", "04/03/2026", "05/03/2026"])
    with pytest.raises(FlatImportError, match="column 'at' holds dates"):
        prepare(spec(timestamp="at"), ambiguous)
    feat, _, _ = prepare(spec(timestamp="at", dayfirst=False), ambiguous)
    assert list(feat["event_timestamp"].dt.month) == [1, 3, 4, 5]


def test_a_trailing_separator_makes_an_empty_column_that_is_dropped_with_a_note(tmp_path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("id;x;y;\nu0;1;1;\nu1;2;0;\nu2;3;1;\n")
    raw = read_flat(path)
    _, _, report = prepare(spec(file=str(path)), raw)
    empty = [c for c in raw.columns if c not in ("id", "x", "y")]
    assert len(empty) == 1 and report.dropped[empty[0]] == "empty in every row"
    assert report.features == ["x"]


def test_a_wrong_separator_and_a_missing_file_are_clear(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a;b\n1;2\n")
    with pytest.raises(FlatImportError, match="one column only; is the separator ','"):
        read_flat(path, ",")
    assert list(read_flat(path).columns) == ["a", "b"]  # sniffed
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_flat(tmp_path / "none.csv")


def test_leakage_guard_reports_and_excludes_a_column_that_is_the_label() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    raw = table(
        y=y.astype(str),
        copy=np.where(y == 1, "won", "lost"),
        noise=rng.normal(size=400).astype(str),
    )
    _, _, report = prepare(spec(), raw)
    assert "copy" in report.leakage and "AUC 1.000" in report.leakage["copy"]
    assert report.features == ["noise"] and "copy" in report.dropped
    _, _, kept = prepare(spec(leakage={"exclude": False}), raw)
    assert "copy" in kept.leakage and kept.features == ["copy", "noise"]  # reported, kept
    _, _, told = prepare(spec(leakage={"keep": ["copy"]}), raw)  # the user has the last word
    assert "copy" in told.features and "kept by leakage.keep" in told.suspects["copy"]


def test_leakage_guard_flags_a_date_after_the_rows_timestamp() -> None:
    raw = table(
        y=["1", "0", "1", "0"],
        at=["2026-01-01"] * 4,
        closed_on=["2026-02-01", "2025-12-01", "2025-11-01", "2025-10-01"],
        x=["1", "2", "3", "4"],
    )
    _, _, report = prepare(spec(timestamp="at"), raw)
    assert "after the row's timestamp in 1 rows" in report.leakage["closed_on"]
    assert "closed_on" not in report.features


def test_spec_from_flags(tmp_path) -> None:
    data = tmp_path / "My-Data.csv"
    got = spec_from_flags(data, {"label_column": "y", "id_column": "cid", "post_outcome": ("d",)})
    assert (got.name, got.id, got.label.column, got.post_outcome) == ("my_data", "cid", "y", ["d"])
    with pytest.raises(ConfigError, match="needs --label"):
        spec_from_flags(data, {})
    with pytest.raises(ConfigError, match="--treatment and --control go together"):
        spec_from_flags(data, {"label_column": "y", "treatment": "arm"})
    yaml_spec = tmp_path / "s.yaml"
    yaml_spec.write_text("file: x.csv\nid: a\nlabel: {column: y}\nlabelz: 1\n")
    with pytest.raises(ConfigError, match="labelz: unknown key"):
        spec_from_flags(yaml_spec, {})
    with pytest.raises(ConfigError, match="put \\['label_column'\\] in it"):
        spec_from_flags(yaml_spec, {"label_column": "y"})


# -- the shared datasets and their traps -----------------------------------------------------------
def shared(name: str):
    s = read_import_spec(ROOT / "configs" / "datasets" / f"{name}.yaml")
    return prepare(s, read_flat(s.file, s.separator))


@needs_shared
def test_telco_blank_total_charges_become_missing_numbers() -> None:
    feat, _, report = shared("telco_churn")
    assert report.rows == 7043 and report.positive_rate == pytest.approx(0.2654, abs=1e-3)
    assert report.types["TotalCharges"] == "numeric" and feat["TotalCharges"].isna().sum() == 11
    assert report.types["Partner"] == "boolean" and report.types["Contract"] == "categorical"
    assert not report.leakage


@needs_shared
def test_bank_semicolons_and_the_post_call_duration_is_flagged_and_dropped() -> None:
    feat, labels, report = shared("bank_marketing")
    assert report.rows == 45_211 and report.positive_rate == pytest.approx(0.117, abs=1e-3)
    assert "duration" in report.leakage and "duration" not in feat.columns
    assert report.types["age"] == "numeric" and report.types["job"] == "categorical"
    assert labels["bank_marketing_id"].str.startswith("row_").all()


@needs_shared
def test_hillstrom_arms_and_outcome_columns_are_not_features() -> None:
    _, labels, report = shared("hillstrom")
    assert report.arms == ["Mens E-Mail", "No E-Mail", "Womens E-Mail"]
    assert {"conversion", "spend", "segment", "visit"}.isdisjoint(report.features)
    assert labels["label"].mean() == pytest.approx(0.147, abs=1e-3)
    assert report.types["zip_code"] == "categorical" and "recency" in report.features


# -- import + train ------------------------------------------------------------------------------
@needs_shared
@pytest.mark.timeout(900)
def test_import_and_train_telco_end_to_end(tmp_path, config_at) -> None:
    from click.testing import CliRunner

    from app.cli import main

    base = [
        "--set",
        f"paths.data_dir={tmp_path / 'data'}",
        "--set",
        f"paths.mlruns_dir={tmp_path / 'mlruns'}",
    ]
    spec_path = ROOT / "configs" / "datasets" / "telco_churn.yaml"
    result = CliRunner().invoke(main, [*base, "import", str(spec_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "imported 'telco_churn': 7,043 rows" in result.output
    assert "train it with `funnel train telco_churn`" in result.output
    result = CliRunner().invoke(
        main, [*base, "train", "telco_churn", "--trials", "2"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "model funnel-telco_churn version 1" in result.output
    auc = float(result.output.split("test ROC AUC ")[1].split()[0])
    assert auc > 0.8  # the 20% stratified test rows
    assert "risk tiers" in result.output  # a churn-like task gets tiers
    card = CliRunner().invoke(
        main, [*base, "report", "model", "telco_churn"], catch_exceptions=False
    )
    assert card.exit_code == 0, card.output
    html = (tmp_path / "data" / "reports" / "model-telco_churn.html").read_text()
    assert "Risk tiers" in html and html.count("data:image/png;base64,") >= 4
    unknown = CliRunner().invoke(main, [*base, "train", "nope"])
    assert unknown.exit_code == 1 and "no imported dataset 'nope'" in unknown.output
    assert "(imported: ['telco_churn'])" in unknown.output


@needs_shared
@pytest.mark.timeout(900)
def test_import_and_train_an_uplift_table(tmp_path, config_at) -> None:
    """A 15,000-row sample of Hillstrom through `funnel import` flags and the NBO path."""
    from app.pipeline import import_flat
    from training.flat_uplift import train_dataset

    sample = pd.read_csv(SHARED / "hillstrom" / "hillstrom.csv").sample(15_000, random_state=0)
    sample.to_csv(tmp_path / "mail.csv", index=False)
    cfg = config_at(
        tmp_path,
        "training.nbo.learners=[s]",
        "training.nbo.folds=3",
        "training.nbo.n_estimators=60",
        "training.nbo.n_boot=200",
    )
    spec_ = spec_from_flags(
        tmp_path / "mail.csv",
        {
            "label_column": "visit",
            "positive": "1",
            "task": "uplift",
            "treatment": "segment",
            "control": "No E-Mail",
            "post_outcome": ("conversion", "spend"),
        },
    )
    report = import_flat(cfg, spec_)
    assert report.task == "uplift" and len(report.arms) == 3
    result = train_dataset(cfg, "mail", progress=False)
    assert result.model_name == "funnel-mail" and result.learner == "s"
    assert set(result.policy_values) >= {"control", "Mens E-Mail", "Womens E-Mail", "learned"}
    # e-mails raise visits: both arms beat sending nothing
    assert result.policy_values["Womens E-Mail"][0] > result.policy_values["control"][0]


def test_write_import_keeps_the_columns_it_does_not_serve(tmp_path, config_at) -> None:
    """columns.parquet holds the typed columns left out of the features (a leak the guard drops,
    a column declared post-outcome), keyed like features.parquet; identifiers stay out."""
    from core.flat import COLUMNS_FILE, write_import

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    path = tmp_path / "t.csv"
    table(
        y=y.astype(str),
        copy=np.where(y == 1, "won", "lost"),
        refund=(y * 10.5).astype(str),
        noise=rng.normal(size=300).round(3).astype(str),
        email=[f"p{i}@x.com" for i in range(300)],
    ).to_csv(path, index=False)
    cfg = config_at(tmp_path)
    report = write_import(cfg, spec(file=str(path), post_outcome=["refund"]))
    assert report.features == ["noise"] and {"copy", "refund", "email"} <= set(report.dropped)
    folder = cfg.data_dir / "imports" / "t"
    feat = pd.read_parquet(folder / "features.parquet")
    other = pd.read_parquet(folder / COLUMNS_FILE)
    assert list(other.columns) == ["t_id", "event_timestamp", "copy", "refund"]
    keys = ["t_id", "event_timestamp"]
    pd.testing.assert_frame_equal(other[keys], feat[keys])
    assert other["copy"].tolist() == np.where(y == 1, "won", "lost").tolist()
    assert other["refund"].dtype == np.float64 and other["refund"].tolist() == (y * 10.5).tolist()
    # imported again with every column served: the old columns do not linger
    write_import(cfg, spec(file=str(path), leakage={"exclude": False}, drop=["refund", "email"]))
    assert list(pd.read_parquet(folder / COLUMNS_FILE).columns) == ["t_id", "event_timestamp"]

"""Bring your own data as a flat table: one row per unit with an id, a label, an optional
timestamp, an optional treatment, and any other columns as features.

``write_import`` reads the file, infers each column's type, checks it (missing id or label, an
all-empty column, duplicate ids, a label that is not binary), runs the leakage guard, and writes
``<data_dir>/imports/<name>/``: ``features.parquet`` (id, event_timestamp, features),
``labels.parquet`` (id, event_timestamp, label[, treatment]) and ``dataset.json`` (the spec, the
inferred schema and the guard's findings). ``features/imported.py`` turns that into a Feast
entity, feature view and feature service ``<name>_v1``; ``funnel train <name>`` trains on it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from core.config import (
    Config,
    ConfigError,
    DecisionRule,
    PromotionRuleConfig,
    Strict,
    format_validation_error,
    read_yaml_mapping,
)
from core.dates import AmbiguousDates, detect_format, looks_like_dates, parse_dates
from core.errors import FunnelError, MissingInputError
from core.leakage import ColumnFinding, LeakagePolicy, find_leaks
from core.stages import OPS

NA_STRINGS = frozenset(
    {"", "na", "n/a", "nan", "null", "none", "nil", "?", "-", "--", "#n/a", "missing", "."}
)
TRUE_STRINGS = frozenset({"yes", "y", "true", "t"})
FALSE_STRINGS = frozenset({"no", "n", "false", "f"})
NO_TIMESTAMP = pd.Timestamp("2000-01-01", tz="UTC")  # rows without a time: all "known" since then
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
ColumnType = Literal["numeric", "boolean", "categorical", "date"]


LabelRule = Annotated[str, Field(pattern=r"^\s*(>=|<=|>|<|==|!=)\s*-?\d+(\.\d+)?\s*$")]
AucLevel = Annotated[float, Field(gt=0.5, le=1)]


class LabelSpec(Strict):
    column: str
    positive: str | None = None  # the value that means 1 (default: yes/true/1)
    rule: LabelRule | None = None  # a numeric label made binary, e.g. "> 0" (1 when it holds)
    drop_missing: bool = False  # drop rows without a label (default: refuse the file)
    # with ``positive`` and more than two values: refuse (default), or count the rest as 0
    others: Literal["refuse", "negative"] = "refuse"

    @model_validator(mode="after")
    def _one_way(self) -> LabelSpec:
        if self.positive is not None and self.rule is not None:
            raise ValueError("give label.positive or label.rule, not both")
        return self


class LeakageSpec(Strict):
    """The leakage guard's thresholds (see core/leakage.py for the rules)."""

    block_auc: AucLevel = LeakagePolicy.block_auc  # alone this strong: dropped
    suspect_auc: AucLevel = LeakagePolicy.suspect_auc  # a leak with a second signal
    standout_gap: Annotated[float, Field(gt=0, lt=0.5)] = LeakagePolicy.standout_gap
    keep: list[str] = Field(default_factory=list)  # known before the outcome: never dropped
    exclude: bool = True  # drop the leaks before training (false: report them only)
    # a trained model whose test AUC reaches this is not crowned without the user's say
    max_test_auc: AucLevel = 0.95

    def policy(self) -> LeakagePolicy:
        return LeakagePolicy(
            block_auc=self.block_auc,
            suspect_auc=self.suspect_auc,
            standout_gap=self.standout_gap,
        )


class TreatmentSpec(Strict):
    column: str
    control: str  # the value of the untreated arm


class ImportSpec(Strict):
    """``configs/datasets/<name>.yaml``, or the flags of ``funnel import FILE ...``."""

    name: Name
    file: Path
    id: str | None = None  # the unit's id column; none: rows are numbered (row_0, row_1, ...)
    label: LabelSpec
    task: Literal["propensity", "churn", "uplift"] = "propensity"
    timestamp: str | None = None  # when the row's features were known (the label comes later)
    treatment: TreatmentSpec | None = None  # required for uplift
    separator: str | None = None  # CSV separator (default: sniffed among , ; tab |)
    drop: list[str] = Field(default_factory=list)  # columns never used as features
    post_outcome: list[str] = Field(default_factory=list)  # only known after the outcome
    leakage: LeakageSpec = LeakageSpec()
    # how to read numeric dates such as 01/02/2018: day first (true), month first (false), or
    # from the data (null: a column whose every date reads both ways is refused)
    dayfirst: bool | None = None
    # how the model flags rows (default: the top fraction at the positive rate); a weekly
    # capacity needs a timestamp. `imports.<name>.decision` in the config wins over this.
    decision: DecisionRule | None = None
    promotion_rule: PromotionRuleConfig | None = None  # when `compare --promote` crowns

    @field_validator("separator")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value.replace("\\t", "\t")) != 1:
            raise ValueError(f"separator must be one character, got {value!r}")
        return value.replace("\\t", "\t") if value else value


def read_import_spec(path: Path) -> ImportSpec:
    tree = read_yaml_mapping(path, "dataset spec")
    tree.setdefault("name", path.stem)
    file = Path(str(tree.get("file", "")))
    if tree.get("file") and not file.is_absolute():  # relative to the spec's folder
        tree["file"] = str((path.parent / file).resolve())
    try:
        return ImportSpec.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None


def spec_from_flags(source: Path, flags: dict[str, Any]) -> ImportSpec:
    """``funnel import``'s SOURCE and options as a spec: a YAML spec (flags not allowed), or
    the data file itself described by the flags (``--label`` required)."""
    # unset options: None, an empty tuple, an off switch (but --monthfirst is dayfirst=False)
    given = {
        k: v
        for k, v in flags.items()
        if v is not None and v != () and (v is not False or k == "dayfirst")
    }
    if source.suffix in (".yaml", ".yml"):
        if given:
            raise ConfigError(
                f"{source} is a dataset spec; put {sorted(given)} in it, not on the command line"
            )
        return read_import_spec(source)
    if "label_column" not in given:
        raise ConfigError("importing a data file needs --label COLUMN (or pass a dataset spec)")
    if ("treatment" in given) != ("control" in given):
        raise ConfigError("--treatment and --control go together")
    name = given.get("name") or source.stem.lower().replace("-", "_").replace(" ", "_")
    tree: dict[str, Any] = {
        "name": name,
        "file": str(source.resolve()),
        "id": given.get("id_column"),
        "label": {
            "column": given["label_column"],
            "positive": given.get("positive"),
            "rule": given.get("label_rule"),
            "drop_missing": bool(given.get("drop_missing_label", False)),
            "others": "negative" if given.get("others_negative") else "refuse",
        },
        "dayfirst": given.get("dayfirst"),
        "leakage": {"keep": list(given.get("keep", ()))},
        "timestamp": given.get("timestamp"),
        "separator": given.get("sep"),
        "post_outcome": list(given.get("post_outcome", ())),
        "drop": list(given.get("drop", ())),
    }
    if "task" in given:
        tree["task"] = given["task"]
    if "treatment" in given:
        tree["treatment"] = {"column": given["treatment"], "control": given["control"]}
    try:
        return ImportSpec.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "funnel import options")) from None


class FlatImportError(FunnelError, ValueError):
    """The file cannot be imported as described; the message names the file and column."""


# -- reading and typing --------------------------------------------------------------------------
def read_flat(
    path: Path, separator: str | None = None, *, empty_is_missing: bool = False
) -> pd.DataFrame:
    """Every column as text (or as stored, for parquet), the separator sniffed among
    ``, ; tab |`` when not given. Nothing is read as missing except, with
    ``empty_is_missing``, empty fields (NA-like strings are judged later, per column)."""
    if not path.is_file():
        raise MissingInputError(f"data file not found: {path}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if separator is None:
            head = path.open(encoding="utf-8", errors="replace").readline()
            separator = max([",", ";", "\t", "|"], key=head.count)
        frame = pd.read_csv(
            path,
            sep=separator,
            dtype=str,
            keep_default_na=False,
            na_values=[""] if empty_is_missing else None,
        )
    except (OSError, ValueError) as exc:  # a corrupt parquet, ragged rows, not UTF-8 text
        raise FlatImportError(f"{path} cannot be read: {exc}") from exc
    if frame.shape[1] == 1 and separator not in frame.columns[0]:
        raise FlatImportError(f"{path}: one column only; is the separator {separator!r} right?")
    return frame


def _missing(values: pd.Series) -> pd.Series:
    if values.dtype != object and not pd.api.types.is_string_dtype(values):
        return values.isna()
    text = values.astype(str).str.strip().str.lower()
    return values.isna() | text.isin(NA_STRINGS)


def infer_column(values: pd.Series, dayfirst: bool | None = None) -> tuple[ColumnType, pd.Series]:
    """The column's type and its values converted: numeric and boolean as float64 (missing as
    NaN), dates as UTC timestamps (one format for the whole column, see core/dates.py; an
    ambiguous column raises ``AmbiguousDates``), the rest as text (missing as None)."""
    missing = _missing(values)
    present = values[~missing]
    if pd.api.types.is_bool_dtype(values):
        return "boolean", values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        return "numeric", values.astype(float)
    if pd.api.types.is_datetime64_any_dtype(values):
        return "date", pd.to_datetime(values, utc=True)
    text = present.astype(str).str.strip()
    lower = text.str.lower()
    if len(text) and lower.isin(TRUE_STRINGS | FALSE_STRINGS).all():
        out = pd.Series(np.nan, index=values.index)
        out[~missing] = lower.isin(TRUE_STRINGS).astype(float).to_numpy()
        return "boolean", out
    numbers = pd.to_numeric(text, errors="coerce")
    if len(text) and numbers.notna().all():
        out = pd.Series(np.nan, index=values.index)
        out[~missing] = numbers.to_numpy(dtype=float)
        return "numeric", out
    if looks_like_dates(text):
        try:
            fmt = detect_format(text, dayfirst)
        except AmbiguousDates:
            raise
        except ValueError:
            fmt = None  # not one date format: text
        if fmt is not None:
            out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
            out[~missing] = parse_dates(text, fmt).to_numpy()
            return "date", out
    out = values.astype(object).where(~missing, None)
    return "categorical", out.map(lambda v: v if v is None else str(v).strip())


def typed_column(
    values: pd.Series, dayfirst: bool | None, where: str
) -> tuple[ColumnType, pd.Series]:
    """``infer_column`` with its date errors named for the user: the column, and what to set."""
    try:
        return infer_column(values, dayfirst)
    except AmbiguousDates as exc:
        raise FlatImportError(
            f"{where}: column '{values.name}' holds {exc}; say how to read them: dayfirst: true "
            "or false in the dataset spec (--dayfirst or --monthfirst)"
        ) from None
    except ValueError as exc:
        raise FlatImportError(f"{where}: column '{values.name}': {exc}") from None


def file_rows(positions: pd.Index, ids: pd.Series | None, csv: bool, most: int = 5) -> str:
    """Rows as the user finds them in the file: CSV lines (the header is line 1), else row
    numbers from 1; with their ids when the table has an id column."""
    first = list(positions[:most])
    where = ", ".join(str(int(i) + (2 if csv else 1)) for i in first)
    more = f" and {len(positions) - most} more" if len(positions) > most else ""
    text = f"{'lines' if csv else 'rows'} {where}{more}"
    if ids is not None:
        text += f" (ids {', '.join(str(ids[i]) for i in first)})"
    return text


def binary_label(
    values: pd.Series,
    positive: str | None,
    where: str,
    rule: str | None = None,
    others: str = "refuse",
) -> np.ndarray:
    """0/1 labels of a label with no missing value: 1 where ``rule`` holds on a numeric label
    (``"> 0"``), where the value is ``positive``, or for yes/true/1 against no/false/0.

    A label with more than two values and a ``positive`` one is refused unless ``others`` says
    the rest are negatives: a count read with ``positive: "1"`` would silently make 2-5 zeros.
    """
    text = values.astype(str).str.strip()
    kinds = sorted(set(text))
    if rule is not None:
        numbers = pd.to_numeric(text, errors="coerce")
        if numbers.isna().any():
            bad = sorted(set(text[numbers.isna()]))[:5]
            raise FlatImportError(f"{where}: label.rule {rule!r} needs numbers; found {bad}")
        op, threshold = re.match(r"^\s*(>=|<=|>|<|==|!=)\s*(\S+)\s*$", rule).groups()
        return OPS[op](numbers.to_numpy(dtype=float), float(threshold)).astype(np.int8)
    if positive is not None:
        if positive not in kinds:
            raise FlatImportError(
                f"{where}: no row has the positive label {positive!r}; values: {kinds[:10]}"
            )
        if len(kinds) > 2 and others != "negative":
            rest = [k for k in kinds if k != positive]
            raise FlatImportError(
                f"{where}: the label has {len(kinds)} values {kinds[:10]}; with positive "
                f"{positive!r} the values {rest[:8]} would all count as 0. Say how to make it "
                "binary: label.rule such as '> 0' for a count (--label-rule '> 0'), or "
                "label.others: negative (--others-negative) when every other value is a 0"
            )
        return (text == positive).to_numpy().astype(np.int8)
    lower = text.str.lower()
    for pos, neg in ((TRUE_STRINGS, FALSE_STRINGS), ({"1", "1.0"}, {"0", "0.0"})):
        if set(lower) <= pos | neg:
            return lower.isin(pos).to_numpy().astype(np.int8)
    raise FlatImportError(
        f"{where}: the label must be binary (yes/no, true/false, 1/0), or name label.positive "
        f"(--positive) or label.rule (--label-rule); values: {kinds[:10]}"
    )


@dataclass
class ImportReport:
    name: str
    rows: int
    positive_rate: float
    types: dict[str, str]
    features: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why
    leakage: dict[str, str] = field(default_factory=dict)  # column -> why it is a leak
    suspects: dict[str, str] = field(default_factory=dict)  # column -> what the guard saw
    single_auc: dict[str, float] = field(default_factory=dict)
    task: str = "propensity"
    arms: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was decided for the user
    rows_dropped: int = 0  # rows without a label, with label.drop_missing


def prepare(spec: ImportSpec, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, ImportReport]:
    """(features, labels, report) from the raw table: typed, checked and guarded. Pure."""
    where = f"{spec.file}"
    csv = spec.file.suffix != ".parquet"
    named = _named_columns(spec)
    _check_named_columns(raw, named, spec.task, spec.treatment, where)
    n_raw = len(raw)
    raw, notes = _labelled_rows(raw, spec, where, csv)
    ids = _unit_ids(raw, spec.id, where)
    y = _labels(raw[spec.label.column], spec.label, where)
    stamp, stamp_note = _row_times(raw, spec.timestamp, spec.dayfirst, where)
    notes += stamp_note
    reserved = set(named) - set(spec.post_outcome) - set(spec.leakage.keep)
    features, types, dated_after, dropped, typed_notes = _typed_features(
        raw, reserved, stamp, bool(spec.timestamp), spec.dayfirst, where
    )
    notes += typed_notes
    findings = find_leaks(features, y, spec.leakage.policy(), dated_after)
    leakage, suspects = _verdicts(findings, spec.post_outcome, spec.leakage.keep, where)
    if spec.leakage.exclude:
        features, excluded = _without_leaking(features, leakage)
        dropped.update(excluded)
    if not features:
        raise FlatImportError(f"{where}: no feature columns left after the checks")
    arms = _treatment_arms(raw, spec.treatment, where)
    feat, labels = _dataset_frames(f"{spec.name}_id", ids, stamp, features, types, y, arms)
    report = ImportReport(
        spec.name,
        len(raw),
        float(y.mean()),
        types,
        list(features),
        dropped,
        leakage,
        suspects,
        {c: f.auc for c, f in findings.items()},
        task=spec.task,
        arms=sorted(set(arms)) if arms is not None else [],
        notes=notes,
        rows_dropped=n_raw - len(raw),
    )
    return feat, labels, report


def _named_columns(spec: ImportSpec) -> list[str]:
    """The columns the spec names: id, label, timestamp, treatment, dropped, post-outcome."""
    return [
        *([spec.id] if spec.id else []),
        spec.label.column,
        *([spec.timestamp] if spec.timestamp else []),
        *([spec.treatment.column] if spec.treatment else []),
        *spec.drop,
        *spec.post_outcome,
        *spec.leakage.keep,
    ]


def _check_named_columns(
    raw: pd.DataFrame,
    named: list[str],
    task: str,
    treatment: TreatmentSpec | None,
    where: str,
) -> None:
    """Every named column is in the file, and an uplift task names its treatment."""
    missing = [c for c in dict.fromkeys(named) if c not in raw.columns]
    if missing:
        raise FlatImportError(
            f"{where}: column(s) {missing} not found; the file has {list(raw.columns)}"
        )
    if task == "uplift" and treatment is None:
        raise FlatImportError(f"{where}: an uplift task needs treatment: {{column, control}}")


def _labelled_rows(
    raw: pd.DataFrame, spec: ImportSpec, where: str, csv: bool
) -> tuple[pd.DataFrame, list[str]]:
    """The rows with a label: rows without one are dropped with ``label.drop_missing``, else
    refused, naming their lines and ids."""
    missing = _missing(raw[spec.label.column])
    if not missing.any():
        return raw, []
    ids = raw[spec.id].astype(str).str.strip() if spec.id else None
    rows = file_rows(raw.index[missing], ids, csv)
    if not spec.label.drop_missing:
        raise FlatImportError(
            f"{where}: the label '{spec.label.column}' is missing in {int(missing.sum())} "
            f"row(s): {rows}. Fill them, or drop them with label.drop_missing: true "
            "(--drop-missing-label)"
        )
    return raw[~missing], [f"dropped {int(missing.sum())} row(s) without a label: {rows}"]


def _unit_ids(raw: pd.DataFrame, id_column: str | None, where: str) -> pd.Series:
    """Each row's unit id as text (``row_<i>`` by its position in the file without an id
    column); present and unique."""
    if id_column is None:
        ids = pd.Series([f"row_{i}" for i in raw.index], index=raw.index)
    else:
        ids = raw[id_column].astype(str).str.strip()
        if _missing(raw[id_column]).any():
            raise FlatImportError(f"{where}: the id column '{id_column}' is empty in some rows")
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise FlatImportError(
            f"{where}: id column '{id_column}' repeats: {int(dup.sum())} rows share "
            f"{ids[dup].nunique()} ids, e.g. {sorted(set(ids[dup]))[:3]}"
        )
    return ids


def _labels(values: pd.Series, label: LabelSpec, where: str) -> np.ndarray:
    """The 0/1 labels (see ``binary_label``); both classes must occur."""
    y = binary_label(
        values, label.positive, f"{where}, label '{label.column}'", label.rule, label.others
    )
    if y.min() == y.max():
        raise FlatImportError(
            f"{where}: every row has label {int(y[0])}; a model needs both classes"
        )
    return y


def _row_times(
    raw: pd.DataFrame, timestamp: str | None, dayfirst: bool | None, where: str
) -> tuple[pd.Series, list[str]]:
    """When each row's features were known: the timestamp column (a date in every row), or
    ``NO_TIMESTAMP`` for all rows when there is none; with a note of how dates were read."""
    if not timestamp:
        return pd.Series(NO_TIMESTAMP, index=raw.index), []
    kind, stamp = typed_column(raw[timestamp], dayfirst, where)
    if kind != "date" or stamp.isna().any():
        raise FlatImportError(
            f"{where}: timestamp column '{timestamp}' must hold dates in every row"
        )
    return stamp, _date_notes({timestamp: raw[timestamp]}, dayfirst)


def _date_notes(columns: dict[str, pd.Series], dayfirst: bool | None) -> list[str]:
    """How each text date column was read, e.g. "'Created On' read as %d/%m/%Y"."""
    notes = []
    for name, values in columns.items():
        text = values[~_missing(values)].astype(str).str.strip()
        if len(text) and values.dtype == object and looks_like_dates(text):
            notes.append(f"dates in '{name}' read as {detect_format(text, dayfirst).format}")
    return notes


def _typed_features(
    raw: pd.DataFrame,
    reserved: set[str],
    stamp: pd.Series,
    dated: bool,
    dayfirst: bool | None,
    where: str,
) -> tuple[dict[str, pd.Series], dict[str, str], dict[str, int], dict[str, str], list[str]]:
    """Every column not ``reserved``, typed: (features, inferred type per column, rows dated
    after the row's time per date column, dropped columns with why, notes).

    A date becomes the days before the row's time; dates after it count only when the rows
    have their own time (``dated``). A column empty in every row (such as the nameless one a
    trailing separator makes) and a text column with too many distinct values (an identifier)
    are dropped, each with a note.
    """
    features: dict[str, pd.Series] = {}
    types: dict[str, str] = {}
    dated_after: dict[str, int] = {}
    dropped: dict[str, str] = {}
    dates: dict[str, pd.Series] = {}
    for column in raw.columns:
        if column in reserved:
            continue
        if _missing(raw[column]).all():
            dropped[column] = "empty in every row"
            continue
        kind, values = typed_column(raw[column], dayfirst, where)
        types[column] = kind
        if kind == "date":  # days before the row's time; after it = known only after the fact
            dates[column] = raw[column]
            days = (values - stamp).dt.total_seconds() / 86_400
            if dated and (days > 0).any():
                dated_after[column] = int((days > 0).sum())
            values, kind = -days, "numeric"
        if kind == "categorical" and values.nunique() > max(50, 0.5 * len(values)):
            dropped[column] = f"{values.nunique()} distinct texts: an identifier, not a feature"
            continue
        features[column] = values
    return features, types, dated_after, dropped, _date_notes(dates, dayfirst)


def _verdicts(
    findings: dict[str, ColumnFinding], post_outcome: list[str], keep: list[str], where: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(leaks, suspects), column -> why: the guard's findings, the columns the user declared
    post-outcome, and none of the columns the user keeps (``leakage.keep``), whose findings
    stay visible among the suspects."""
    both = sorted(set(keep) & set(post_outcome))
    if both:
        raise FlatImportError(f"{where}: {both} both kept and declared post_outcome")
    leaks = {c: "declared post_outcome: known only after the outcome" for c in post_outcome}
    suspects = {}
    for column, finding in findings.items():
        if column in keep:
            if finding.signals:
                suspects[column] = f"kept by leakage.keep although {finding.text()}"
        elif finding.verdict == "leak":
            leaks.setdefault(column, finding.text())
        elif finding.verdict == "suspect":
            suspects[column] = finding.text()
    return leaks, suspects


def _without_leaking(
    features: dict[str, pd.Series], leakage: dict[str, str]
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """(the features without the leaking ones, why each was dropped)."""
    kept = {c: v for c, v in features.items() if c not in leakage}
    excluded = {c: "leakage guard: " + why for c, why in leakage.items() if c in features}
    return kept, excluded


def _treatment_arms(
    raw: pd.DataFrame, treatment: TreatmentSpec | None, where: str
) -> pd.Series | None:
    """Each row's arm as text (None without a treatment); the control arm must occur."""
    if treatment is None:
        return None
    arm = raw[treatment.column].astype(str).str.strip()
    if treatment.control not in set(arm):
        raise FlatImportError(
            f"{where}: no row has the control arm {treatment.control!r} in "
            f"'{treatment.column}'; values: {sorted(set(arm))[:10]}"
        )
    return arm


def _dataset_frames(
    key: str,
    ids: pd.Series,
    stamp: pd.Series,
    features: dict[str, pd.Series],
    types: dict[str, str],
    y: np.ndarray,
    arms: pd.Series | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, labels) keyed by ``key`` and event_timestamp: categorical features as text,
    the others as float64; the labels with the treatment arm when there is one."""
    feat = pd.DataFrame(
        {
            key: ids.to_numpy(),
            "event_timestamp": stamp.to_numpy(),
            **{
                c: (
                    v.to_numpy(dtype=float)
                    if types[c] != "categorical"
                    else v.to_numpy(dtype=object)
                )
                for c, v in features.items()
            },
        }
    )
    labels = pd.DataFrame({key: ids.to_numpy(), "event_timestamp": stamp.to_numpy(), "label": y})
    if arms is not None:
        labels["treatment"] = arms.to_numpy()
    return feat, labels


def import_dir(cfg: Config, name: str) -> Path:
    return cfg.data_dir / "imports" / name


def load_dataset(cfg: Config, name: str) -> dict[str, Any]:
    """The ``dataset.json`` of an imported table; a clear error when it was never imported."""
    path = import_dir(cfg, name) / "dataset.json"
    if not path.is_file():
        root = path.parent.parent
        known = sorted(p.parent.name for p in root.glob("*/dataset.json")) if root.is_dir() else []
        raise MissingInputError(
            f"no imported dataset '{name}' under {root} (imported: {known or 'none'}); models "
            "are mql, churn, nbo or an imported table's name (`funnel import` first)"
        )
    return json.loads(path.read_text())


COLUMNS_FILE = "columns.parquet"  # the typed columns an import does not serve as features


def unserved_columns(spec: ImportSpec, raw: pd.DataFrame, feat: pd.DataFrame) -> pd.DataFrame:
    """The typed columns of ``raw`` that ``feat`` (``prepare``'s features) does not serve: the
    leaks and other columns typed then left out, keyed and typed as in ``features.parquet``.

    A model version trained before a column left the feature set (a leak declared
    post-outcome on re-import) is still scored on its own features from this table."""
    where = f"{spec.file}"
    rows, _ = _labelled_rows(raw, spec, where, spec.file.suffix != ".parquet")
    stamp = pd.Series(feat["event_timestamp"].to_numpy(), index=rows.index)
    reserved = set(_named_columns(spec)) - set(spec.post_outcome) - set(spec.leakage.keep)
    reserved |= set(feat.columns)
    typed, types, _, _, _ = _typed_features(
        rows, reserved, stamp, bool(spec.timestamp), spec.dayfirst, where
    )
    out = feat[[f"{spec.name}_id", "event_timestamp"]].copy()
    for column, values in typed.items():
        kind = object if types[column] == "categorical" else float
        out[column] = values.to_numpy(dtype=kind)
    return out


def write_import(cfg: Config, spec: ImportSpec) -> ImportReport:
    """Read, type, check and guard the file and write the dataset under
    ``<data_dir>/imports/<name>/`` (registering it in Feast is the caller's step), with the
    typed columns it does not serve as features in ``columns.parquet``."""
    raw = read_flat(spec.file, spec.separator)
    feat, labels, report = prepare(spec, raw)
    out = import_dir(cfg, spec.name)
    out.mkdir(parents=True, exist_ok=True)
    feat.to_parquet(out / "features.parquet", index=False)
    labels.to_parquet(out / "labels.parquet", index=False)
    unserved_columns(spec, raw, feat).to_parquet(out / COLUMNS_FILE, index=False)
    meta = {
        "spec": json.loads(spec.model_dump_json()),
        "report": asdict(report),
        "entity_key": f"{spec.name}_id",
        "feature_service": f"{spec.name}_v1",
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return report

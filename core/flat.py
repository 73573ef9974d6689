"""Bring your own data as a flat table: one row per unit with an id, a label, an optional
timestamp, an optional treatment, and any other columns as features.

``import_flat`` reads the file, infers each column's type, checks it (missing id or label, an
all-empty column, duplicate ids, a label that is not binary), runs the leakage guard, and writes
``<data_dir>/imports/<name>/``: ``features.parquet`` (id, event_timestamp, features),
``labels.parquet`` (id, event_timestamp, label[, treatment]) and ``dataset.json`` (the spec, the
inferred schema and the guard's findings). ``features/imported.py`` turns that into a Feast
entity, feature view and feature service ``<name>_v1``; ``funnel train <name>`` trains on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator

from core.config import Config, ConfigError, Strict, _format_error, read_yaml_mapping

NA_STRINGS = frozenset(
    {"", "na", "n/a", "nan", "null", "none", "nil", "?", "-", "--", "#n/a", "missing", "."}
)
TRUE_STRINGS = frozenset({"yes", "y", "true", "t"})
FALSE_STRINGS = frozenset({"no", "n", "false", "f"})
NO_TIMESTAMP = pd.Timestamp("2000-01-01", tz="UTC")  # rows without a time: all "known" since then
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
ColumnType = Literal["numeric", "boolean", "categorical", "date"]


class LabelSpec(Strict):
    column: str
    positive: str | None = None  # the value that means 1 (default: yes/true/1)


class LeakageSpec(Strict):
    # a single column whose own AUC for the label reaches this is reported as leaking
    max_single_auc: Annotated[float, Field(gt=0.5, le=1)] = 0.95
    exclude: bool = True  # drop the reported columns before training


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
        raise ConfigError(_format_error(exc, str(path))) from None


def spec_from_flags(source: Path, flags: dict[str, Any]) -> ImportSpec:
    """``funnel import``'s SOURCE and options as a spec: a YAML spec (flags not allowed), or
    the data file itself described by the flags (``--label`` required)."""
    given = {k: v for k, v in flags.items() if v not in (None, ())}
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
        "label": {"column": given["label_column"], "positive": given.get("positive")},
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
        raise ConfigError(_format_error(exc, "funnel import options")) from None


class FlatImportError(ValueError):
    """The file cannot be imported as described; the message names the file and column."""


# -- reading and typing --------------------------------------------------------------------------
def read_flat(
    path: Path, separator: str | None = None, *, empty_is_missing: bool = False
) -> pd.DataFrame:
    """Every column as text (or as stored, for parquet), the separator sniffed among
    ``, ; tab |`` when not given. Nothing is read as missing except, with
    ``empty_is_missing``, empty fields (NA-like strings are judged later, per column)."""
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
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
    if frame.shape[1] == 1 and separator not in frame.columns[0]:
        raise FlatImportError(f"{path}: one column only; is the separator {separator!r} right?")
    return frame


def _missing(values: pd.Series) -> pd.Series:
    if values.dtype != object and not pd.api.types.is_string_dtype(values):
        return values.isna()
    text = values.astype(str).str.strip().str.lower()
    return values.isna() | text.isin(NA_STRINGS)


def infer_column(values: pd.Series) -> tuple[ColumnType, pd.Series]:
    """The column's type and its values converted: numeric and boolean as float64 (missing as
    NaN), dates as UTC timestamps, the rest as text (missing as None)."""
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
    if len(text) and text.str.contains(r"\d{4}-\d\d-\d\d|\d\d?/\d\d?/\d{2,4}").all():
        dates = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        if dates.notna().all():
            out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
            out[~missing] = dates.to_numpy()
            return "date", out
    out = values.astype(object).where(~missing, None)
    return "categorical", out.map(lambda v: v if v is None else str(v).strip())


def binary_label(values: pd.Series, positive: str | None, where: str) -> np.ndarray:
    """0/1 labels; the positive value is given, or yes/true/1."""
    missing = _missing(values)
    if missing.any():
        rows = list(values.index[missing][:5])
        raise FlatImportError(
            f"{where}: the label is missing in {int(missing.sum())} row(s), e.g. {rows}"
        )
    text = values.astype(str).str.strip()
    if positive is not None:
        if positive not in set(text):
            raise FlatImportError(
                f"{where}: no row has the positive label {positive!r}; values: "
                f"{sorted(set(text))[:10]}"
            )
        return (text == positive).to_numpy().astype(np.int8)
    lower = text.str.lower()
    kinds = set(lower)
    for pos, neg in ((TRUE_STRINGS, FALSE_STRINGS), ({"1", "1.0"}, {"0", "0.0"})):
        if kinds <= pos | neg:
            return lower.isin(pos).to_numpy().astype(np.int8)
    raise FlatImportError(
        f"{where}: the label must be binary (yes/no, true/false, 1/0) or name label.positive; "
        f"values: {sorted(set(text))[:10]}"
    )


def single_column_auc(x: pd.Series, y: np.ndarray) -> float:
    """How well one column alone orders the label: ROC AUC of its values (categories by their
    label rate), folded so that 0.3 counts as 0.7. Missing values form their own group."""
    from sklearn.metrics import roc_auc_score

    if x.dtype == object or pd.api.types.is_datetime64_any_dtype(x):
        # each half scored by the label rates of the other: a many-valued column cannot look
        # predictive by remembering its own rows
        keys = x.astype(str).where(x.notna(), "__missing__").to_numpy()
        half = np.random.default_rng(0).random(len(keys)) < 0.5
        score = np.empty(len(keys))
        for fit, apply in ((half, ~half), (~half, half)):
            rates = pd.Series(y[fit]).groupby(keys[fit]).mean()
            score[apply] = pd.Series(keys[apply]).map(rates).fillna(y[fit].mean()).to_numpy()
    else:
        v = x.to_numpy(dtype=float)
        score = np.where(np.isnan(v), np.nanmin(v) - 1 if np.isfinite(v).any() else 0, v)
    if len(np.unique(y)) < 2:
        return 0.5
    auc = float(roc_auc_score(y, score))
    return max(auc, 1 - auc)


@dataclass
class ImportReport:
    name: str
    rows: int
    positive_rate: float
    types: dict[str, str]
    features: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why
    leakage: dict[str, str] = field(default_factory=dict)  # column -> finding
    single_auc: dict[str, float] = field(default_factory=dict)
    task: str = "propensity"
    arms: list[str] = field(default_factory=list)


def prepare(spec: ImportSpec, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, ImportReport]:
    """(features, labels, report) from the raw table: typed, checked and guarded. Pure."""
    where = f"{spec.file}"
    named = [
        *([spec.id] if spec.id else []),
        spec.label.column,
        *([spec.timestamp] if spec.timestamp else []),
        *([spec.treatment.column] if spec.treatment else []),
        *spec.drop,
        *spec.post_outcome,
    ]
    missing = [c for c in dict.fromkeys(named) if c not in raw.columns]
    if missing:
        raise FlatImportError(
            f"{where}: column(s) {missing} not found; the file has {list(raw.columns)}"
        )
    if spec.task == "uplift" and spec.treatment is None:
        raise FlatImportError(f"{where}: an uplift task needs treatment: {{column, control}}")
    if spec.id is None:
        ids = pd.Series([f"row_{i}" for i in range(len(raw))], index=raw.index)
    else:
        ids = raw[spec.id].astype(str).str.strip()
        if _missing(raw[spec.id]).any():
            raise FlatImportError(f"{where}: the id column '{spec.id}' is empty in some rows")
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise FlatImportError(
            f"{where}: id column '{spec.id}' repeats: {int(dup.sum())} rows share "
            f"{ids[dup].nunique()} ids, e.g. {sorted(set(ids[dup]))[:3]}"
        )
    y = binary_label(
        raw[spec.label.column], spec.label.positive, f"{where}, label '{spec.label.column}'"
    )
    if y.min() == y.max():
        raise FlatImportError(
            f"{where}: every row has label {int(y[0])}; a model needs both classes"
        )
    if spec.timestamp:
        kind, stamp = infer_column(raw[spec.timestamp])
        if kind != "date" or stamp.isna().any():
            raise FlatImportError(
                f"{where}: timestamp column '{spec.timestamp}' must hold dates in every row"
            )
    else:
        stamp = pd.Series(NO_TIMESTAMP, index=raw.index)
    reserved = set(named) - set(spec.post_outcome)
    report = ImportReport(spec.name, len(raw), float(y.mean()), {}, [], task=spec.task)
    features: dict[str, pd.Series] = {}
    for column in raw.columns:
        if column in reserved:
            continue
        if _missing(raw[column]).all():
            raise FlatImportError(
                f"{where}: column '{column}' is empty in every row; drop it "
                "(drop: [...]) or fill it"
            )
        kind, values = infer_column(raw[column])
        report.types[column] = kind
        if kind == "date":  # days before the row's time; after it = known only after the fact
            days = (values - stamp).dt.total_seconds() / 86_400
            if spec.timestamp and (days > 0).any():
                report.leakage[column] = (
                    f"dated after the row's timestamp in {int((days > 0).sum())} rows: known only "
                    "after the outcome"
                )
            values, kind = -days, "numeric"
        if kind == "categorical" and values.nunique() > max(50, 0.5 * len(values)):
            report.dropped[column] = (
                f"{values.nunique()} distinct texts: an identifier, not a feature"
            )
            continue
        features[column] = values
    for column in spec.post_outcome:
        report.leakage[column] = "declared post_outcome: known only after the outcome"
    for column, values in features.items():
        auc = single_column_auc(values, y)
        report.single_auc[column] = round(auc, 4)
        if auc >= spec.leakage.max_single_auc:
            report.leakage.setdefault(
                column,
                f"alone predicts the label with AUC {auc:.3f} (>= {spec.leakage.max_single_auc})",
            )
    if spec.leakage.exclude:
        for column in report.leakage:
            if column in features:
                features.pop(column)
                report.dropped[column] = "leakage guard: " + report.leakage[column]
    report.features = list(features)
    if not report.features:
        raise FlatImportError(f"{where}: no feature columns left after the checks")
    key = f"{spec.name}_id"
    feat = pd.DataFrame(
        {
            key: ids.to_numpy(),
            "event_timestamp": stamp.to_numpy(),
            **{
                c: (
                    v.to_numpy(dtype=float)
                    if report.types[c] != "categorical"
                    else v.to_numpy(dtype=object)
                )
                for c, v in features.items()
            },
        }
    )
    labels = pd.DataFrame({key: ids.to_numpy(), "event_timestamp": stamp.to_numpy(), "label": y})
    if spec.treatment is not None:
        arm = raw[spec.treatment.column].astype(str).str.strip()
        if spec.treatment.control not in set(arm):
            raise FlatImportError(
                f"{where}: no row has the control arm {spec.treatment.control!r} in "
                f"'{spec.treatment.column}'; values: {sorted(set(arm))[:10]}"
            )
        labels["treatment"] = arm.to_numpy()
        report.arms = sorted(set(arm))
    return feat, labels, report


def import_dir(cfg: Config, name: str) -> Path:
    return cfg.data_dir / "imports" / name


def load_dataset(cfg: Config, name: str) -> dict[str, Any]:
    """The ``dataset.json`` of an imported table; a clear error when it was never imported."""
    path = import_dir(cfg, name) / "dataset.json"
    if not path.is_file():
        root = path.parent.parent
        known = sorted(p.parent.name for p in root.glob("*/dataset.json")) if root.is_dir() else []
        raise FileNotFoundError(
            f"no imported dataset '{name}' under {root} (imported: {known or 'none'}); models "
            "are mql, churn, nbo or an imported table's name (`funnel import` first)"
        )
    return json.loads(path.read_text())


def import_flat(cfg: Config, spec: ImportSpec) -> ImportReport:
    """Read, type, check and guard the file, write the dataset, register it in Feast."""
    feat, labels, report = prepare(spec, read_flat(spec.file, spec.separator))
    out = import_dir(cfg, spec.name)
    out.mkdir(parents=True, exist_ok=True)
    feat.to_parquet(out / "features.parquet", index=False)
    labels.to_parquet(out / "labels.parquet", index=False)
    meta = {
        "spec": json.loads(spec.model_dump_json()),
        "report": asdict(report),
        "entity_key": f"{spec.name}_id",
        "feature_service": f"{spec.name}_v1",
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    from app.pipeline import feature_store
    from features.imported import imported_objects
    from features.store import _quiet_feast

    store = feature_store(cfg)
    with _quiet_feast():
        store.apply(imported_objects(cfg.data_dir, spec.name))
    return report

"""What one more point of conversion is worth at each funnel step, and the candidate fixes of
``configs/fixes.yaml`` ranked by the revenue they would add per unit of cost and per week.

The value of a step comes from the observed funnel. For step ``a -> b`` the leads *at risk* are
those seen reaching ``a`` whose path through the step is observed: leads created during the data
window (their whole path is seen) and leads already in the funnel at the first snapshot in ``a``
or an earlier stage. Leads seen first beyond ``a`` (the installed base above all) passed the
step before the data starts and are left out. Of those at risk, ``passed`` went on to ``b`` or
later and ``retained`` reached the last stage. Every lead that reached the last stage during the
window carries a share of its account's value (the account's value split evenly over its leads
that got there), so the retained leads of a step carry the revenue that flowed through it:

    revenue per year = value of the retained leads / years of data
    value of a point = 0.01 x revenue per year / conversion rate

(one more point of conversion at the step sends ``0.01 / rate`` more of the step's leads on, and
each carries the same downstream value). A fix expected to lift a step's conversion by a relative
``lift`` adds ``lift x revenue per year`` (the rate cannot pass 100%). Intervals come from a
bootstrap over accounts (leads of one account move together), joined with the fix's lift range:
a guess is drawn uniformly from its range, a measured lift from the normal its 95% interval
describes. Rates measured in the window are lower than final rates for recent leads, who have
had less time to move on: the values are those of the funnel as observed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from core.config import ConfigError, Strict, read_yaml_mapping
from core.errors import InputError
from core.stages import STAGES
from reports.html import fmt, html_figure, html_section, html_table, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The funnel steps as the fixes file names them: "awareness -> consideration", ...
STEPS: tuple[str, ...] = tuple(f"{a} -> {b}" for a, b in pairwise(STAGES))
RankBy = Literal["per_cost", "per_week"]
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
_NAME = r"^[a-z][a-z0-9_]*$"


# -------------------------------------------------------------------------- the fixes file
class LiftRange(Strict):
    """The expected relative lift of the step's conversion rate: 0.05 = 5% more of the step's
    leads move on (a rate of 20% becomes 21%)."""

    low: Annotated[float, Field(gt=-1)]
    high: Annotated[float, Field(gt=-1)]

    @model_validator(mode="after")
    def _ordered(self) -> LiftRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not be above high ({self.high})")
        return self


class Fix(Strict):
    """A candidate fix: the step it targets, its expected lift, what it costs, how long it
    takes to ship and, optionally, the experiment comparison that measured its lift."""

    name: Annotated[str, Field(pattern=_NAME, max_length=64)]
    description: str = ""
    step: str
    lift: LiftRange
    cost: Annotated[float, Field(gt=0)]
    weeks: Annotated[float, Field(gt=0)]
    experiment: str | None = None

    @field_validator("step")
    @classmethod
    def _known_step(cls, value: str) -> str:
        step = " -> ".join(part.strip() for part in value.replace("→", "->").split("->"))
        if step not in STEPS:
            raise ValueError(f"unknown step {value!r}; the steps are {list(STEPS)}")
        return step


class ValueBasis(Strict):
    """What a customer is worth: ``mrr`` (the monthly recurring revenue the account started
    with, times ``months``) or ``opportunity_amount`` (the mean amount of the account's won
    opportunities, or of all its opportunities when none is marked won)."""

    basis: Literal["mrr", "opportunity_amount"] = "mrr"
    months: Annotated[float, Field(gt=0)] = 12


class Fixes(Strict):
    currency: str = "USD"
    value: ValueBasis = ValueBasis()
    fixes: Annotated[list[Fix], Field(min_length=1)]
    source: str = ""  # the file it came from, for messages (set by read_fixes)

    @field_validator("fixes")
    @classmethod
    def _unique(cls, fixes: list[Fix]) -> list[Fix]:
        names = [f.name for f in fixes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"fix names must be unique; repeated: {repeated}")
        return fixes


def read_fixes(path: Path | str) -> Fixes:
    """Load and validate a fixes file; a bad key or value raises ``ConfigError`` naming the
    fix (by its name) and the key, e.g. ``fixes.pricing_calculator.lift.low``."""
    path = Path(path)
    tree = read_yaml_mapping(path, "fixes file", "reports.fixes_file", "with a 'fixes' list")
    try:
        return Fixes.model_validate({**tree, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(_fixes_error(exc, tree, path)) from None


def _fixes_error(err: ValidationError, tree: Mapping[str, Any], path: Path) -> str:
    """One line per problem, the list index of a fix replaced by the fix's name."""
    listed = tree.get("fixes")
    lines = [f"invalid fixes file {path}:"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "tagged-"))]
        if len(loc) >= 2 and loc[0] == "fixes" and loc[1].isdigit() and isinstance(listed, list):
            i = int(loc[1])
            item = listed[i] if i < len(listed) else None
            name = item.get("name") if isinstance(item, dict) else None
            loc[1] = str(name) if isinstance(name, str) and name else f"[{i}] (no name)"
        msg = "unknown key (not allowed here)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {'.'.join(loc)}: {msg}")
    return "\n".join(lines)


# ------------------------------------------------------------------------ measured lifts
@dataclass(frozen=True)
class Measured:
    """A lift measured by a randomized experiment: relative lift and its 95% interval, where
    it comes from (``source``) and, when known, the comparison's name and metric."""

    lift_rel: float
    low: float
    high: float
    source: str
    name: str = ""
    metric: str = ""


def measured_lifts(readouts: Any, origin: str = "readouts") -> dict[str, Measured]:
    """The measured lifts in a readouts document: every object holding ``name``, ``metric``,
    ``lift_rel``, ``lift_rel_low`` and ``lift_rel_high``, wherever it sits. Keyed by
    ``name:metric`` and by ``name`` alone (the first metric listed for it, the primary one).
    Comparisons without a lift (still pending, or a control rate of zero) are left out."""
    found: list[tuple[str, str, Measured]] = []
    for item, parent in _walk(readouts, None):
        keys = ("name", "metric", "lift_rel", "lift_rel_low", "lift_rel_high")
        if not all(k in item for k in keys):
            continue
        values = [item["lift_rel"], item["lift_rel_low"], item["lift_rel_high"]]
        if not all(isinstance(v, int | float) and np.isfinite(v) for v in values):
            continue
        name, metric = str(item["name"]), str(item["metric"])
        where = f"{parent}: " if parent else ""
        source = f"{origin}: {where}{name} ({metric})"
        lift, low, high = (float(v) for v in values)
        found.append((name, metric, Measured(lift, low, high, source, name, metric)))
    out: dict[str, Measured] = {}
    for name, metric, measured in found:
        out[f"{name}:{metric}"] = measured
        out.setdefault(name, measured)
    return out


def _walk(node: Any, parent: str | None) -> Iterator[tuple[Mapping[str, Any], str | None]]:
    if isinstance(node, Mapping):
        yield node, parent
        label = node.get("name") if isinstance(node.get("name"), str) else parent
        for value in node.values():
            yield from _walk(value, label)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, parent)


def read_measured_lifts(path: Path | str | None) -> dict[str, Measured]:
    """Measured lifts from an experiment readouts JSON file (see ``measured_lifts``); a missing
    file (or None) means no measured lifts, a file that is not JSON raises ``InputError``."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        document = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"experiment readouts {path} are not valid JSON: {exc}") from None
    return measured_lifts(document, Path(path).name)


# ------------------------------------------------------------------- the value of a customer
def account_values(
    subscriptions: pd.DataFrame,
    opportunities: pd.DataFrame,
    *,
    basis: Literal["mrr", "opportunity_amount"] = "mrr",
    months: float = 12.0,
) -> pd.Series:
    """What each customer account is worth, indexed by account_id.

    ``mrr``: the MRR of the account's first subscription times ``months``;
    ``opportunity_amount``: the mean amount of its ``closed_won`` opportunities (all of its
    opportunities when none is won)."""
    if basis == "mrr":
        first = subscriptions.sort_values("started_at").drop_duplicates("account_id")
        return (first.set_index("account_id")["mrr"].astype(float) * months).rename("value")
    if basis == "opportunity_amount":
        won = opportunities.loc[opportunities["stage"].astype(str).str.lower() == "closed_won"]
        amounts = opportunities.groupby("account_id")["amount"].mean()
        amounts.update(won.groupby("account_id")["amount"].mean())
        return amounts.astype(float).rename("value")
    raise ValueError(f"basis must be 'mrr' or 'opportunity_amount', got {basis!r}")


# ------------------------------------------------------------------------- lead outcomes
def stage_ranks(stages: pd.Series | np.ndarray) -> np.ndarray:
    """Stage position per row (awareness 0 ... retention 3); an unknown stage raises."""
    values = pd.Series(np.asarray(stages, dtype=object))
    codes = pd.Categorical(values, categories=STAGES).codes.astype(np.int64)
    if (codes < 0).any():
        bad = sorted({str(s) for s in values[codes < 0]})
        raise ValueError(f"unknown stage(s) {bad}; stages are {list(STAGES)}")
    return codes


def lead_outcomes(history: pd.DataFrame, values: Mapping[str, float] | pd.Series) -> pd.DataFrame:
    """One row per lead: how far it got and what it brought.

    Columns: lead_id, account_id, entry_rank (the first step whose passage is observed: 0 for a
    lead created after the first snapshot, else the rank of its first stage), max_rank,
    value (for a lead that reached the last stage in the window, its share of its account's
    value from ``values``; an account missing there gets the median of the accounts present;
    0 for every other lead)."""
    missing = [c for c in ("lead_id", "account_id", "snapshot", "stage") if c not in history]
    if missing:
        raise KeyError(f"stage history lacks column(s) {missing}")
    frame = history[["lead_id", "account_id", "snapshot"]].reset_index(drop=True)
    frame["rank"] = stage_ranks(history["stage"])
    frame = frame.sort_values(["lead_id", "snapshot"], kind="stable")
    per_lead = frame.groupby("lead_id", sort=True).agg(
        account_id=("account_id", "first"),
        first_snapshot=("snapshot", "first"),
        first_rank=("rank", "first"),
        max_rank=("rank", "max"),
    )
    born_inside = per_lead["first_snapshot"] > frame["snapshot"].min()
    entry = np.where(born_inside, 0, per_lead["first_rank"].to_numpy())
    last = len(STAGES) - 1
    won = (per_lead["max_rank"].to_numpy() == last) & (entry < last)
    value_of = pd.Series(values, dtype=float)
    account_value = per_lead["account_id"].map(value_of).to_numpy(dtype=float)
    known = value_of.dropna()
    fallback = float(known.median()) if len(known) else np.nan
    account_value = np.where(np.isnan(account_value), fallback, account_value)
    winners = pd.Series(won, index=per_lead.index).groupby(per_lead["account_id"]).transform("sum")
    share = np.where(won, account_value / np.maximum(winners.to_numpy(), 1), 0.0)
    return pd.DataFrame(
        {
            "lead_id": per_lead.index.to_numpy(),
            "account_id": per_lead["account_id"].to_numpy(),
            "entry_rank": entry.astype(np.int64),
            "max_rank": per_lead["max_rank"].to_numpy(dtype=np.int64),
            "value": share,
        }
    )


# ------------------------------------------------------------------ the value of a point
@dataclass(frozen=True)
class PointValues:
    """The value of a point per step (``table``) and the bootstrap draws behind its intervals:
    ``draws[step]`` is an (n_boot, 2) array of (revenue per year, conversion rate)."""

    table: pd.DataFrame
    draws: dict[str, np.ndarray]
    level: float
    years: float


def _step_counts(outcomes: pd.DataFrame, i: int) -> pd.DataFrame:
    """Per lead, for step i: at risk, passed, retained (0/1) and the retained value."""
    last = len(STAGES) - 1
    entry, top = outcomes["entry_rank"].to_numpy(), outcomes["max_rank"].to_numpy()
    at_risk = (entry <= i) & (top >= i)
    retained = at_risk & (top == last)
    return pd.DataFrame(
        {
            "at_risk": at_risk.astype(float),
            "passed": (at_risk & (top > i)).astype(float),
            "retained": retained.astype(float),
            "value": np.where(retained, outcomes["value"].to_numpy(dtype=float), 0.0),
        }
    )


def point_values(
    outcomes: pd.DataFrame,
    *,
    years: float,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    cluster: str = "account_id",
) -> PointValues:
    """The value of one more point of conversion at each step, with bootstrap intervals.

    ``outcomes`` is ``lead_outcomes``' frame; ``years`` the length of the data window (so
    values are per year). The bootstrap resamples the ``cluster`` column's units (accounts by
    default; a column unique per lead resamples leads). One row per step: step, from_stage,
    to_stage, leads (at risk), passed, conversion_rate (+ _low/_high), retained,
    downstream_rate (retained / passed), value_per_customer (mean value of a retained lead),
    leads_per_year, revenue_per_year (+ _low/_high), value_of_point (+ _low/_high)."""
    if years <= 0:
        raise ValueError(f"years must be positive, got {years}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    missing = [c for c in ("entry_rank", "max_rank", "value", cluster) if c not in outcomes]
    if missing:
        raise KeyError(f"outcomes lack column(s) {missing}")
    codes, units = pd.factorize(outcomes[cluster], sort=True)
    n_units = len(units)
    rng = np.random.default_rng(seed)
    # one multinomial draw of unit weights per replicate, shared by every step (joint draws)
    weights = (
        rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot).astype(float)
        if n_units
        else np.zeros((n_boot, 0))
    )
    alpha = (1 - level) / 2
    rows, draws = [], {}
    for i, (step, (a, b)) in enumerate(zip(STEPS, pairwise(STAGES), strict=True)):
        per_unit = _step_counts(outcomes, i).groupby(codes).sum().reindex(range(n_units))
        sums = per_unit.to_numpy(dtype=float)  # (units, 4): at_risk, passed, retained, value
        at_risk, passed, retained, value = sums.sum(axis=0)
        boot = weights @ sums  # (n_boot, 4)
        with np.errstate(divide="ignore", invalid="ignore"):
            b_rate = boot[:, 1] / boot[:, 0]
            b_revenue = boot[:, 3] / years
            b_point = 0.01 * b_revenue / b_rate
            rate = passed / at_risk if at_risk else np.nan
            revenue = value / years
            point = 0.01 * revenue / rate if rate else np.nan
        draws[step] = np.column_stack([b_revenue, b_rate])
        rows.append(
            {
                "step": step,
                "from_stage": a,
                "to_stage": b,
                "leads": int(at_risk),
                "passed": int(passed),
                "conversion_rate": rate,
                **_bounds("conversion_rate", b_rate, alpha),
                "retained": int(retained),
                "downstream_rate": retained / passed if passed else np.nan,
                "value_per_customer": value / retained if retained else np.nan,
                "leads_per_year": at_risk / years,
                "revenue_per_year": revenue,
                **_bounds("revenue_per_year", b_revenue, alpha),
                "value_of_point": point,
                **_bounds("value_of_point", b_point, alpha),
            }
        )
    return PointValues(pd.DataFrame(rows), draws, level, years)


def _bounds(name: str, draws: np.ndarray, alpha: float) -> dict[str, float]:
    finite = draws[np.isfinite(draws)]
    if len(finite) == 0:
        return {f"{name}_low": np.nan, f"{name}_high": np.nan}
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return {f"{name}_low": float(low), f"{name}_high": float(high)}


# ----------------------------------------------------------------------------- the ranking
RANKED_COLUMNS: tuple[str, ...] = (
    "rank", "name", "step", "lift_source", "lift", "lift_low", "lift_high", "experiment",
    "measured_by", "revenue", "revenue_low", "revenue_high", "cost", "weeks",
    "per_cost", "per_cost_low", "per_cost_high", "per_week", "per_week_low", "per_week_high",
    "description",
)  # fmt: skip


def rank_fixes(
    values: PointValues,
    fixes: Fixes | Sequence[Fix],
    measured: Mapping[str, Measured] | None = None,
    *,
    rank_by: RankBy = "per_cost",
    seed: int = 0,
) -> pd.DataFrame:
    """The fixes ranked by expected revenue per year per unit of cost (``per_cost``) or per
    week to ship (``per_week``), with intervals at ``values.level``.

    A fix's revenue is ``lift x revenue per year`` of its step, the lift capped where the
    step's rate would pass 100%. A fix naming an ``experiment`` found in ``measured`` uses the
    measured lift and interval (``lift_source`` "measured", ``measured_by`` its source);
    otherwise its guessed range (``lift_source`` "guess"; the point lift is the middle). One
    row per fix, columns ``RANKED_COLUMNS``; ties in the ranking key go by the other key.
    """
    if rank_by not in ("per_cost", "per_week"):
        raise ValueError(f"rank_by must be 'per_cost' or 'per_week', got {rank_by!r}")
    measured = measured or {}
    table = values.table.set_index("step")
    alpha = (1 - values.level) / 2
    rng = np.random.default_rng(seed)
    rows = []
    for fix in fixes.fixes if isinstance(fixes, Fixes) else fixes:
        b_revenue, b_rate = values.draws[fix.step].T
        n = len(b_revenue)
        found = measured.get(fix.experiment) if fix.experiment else None
        if found is not None:
            lift, low, high = found.lift_rel, found.low, found.high
            sd = max(high - low, 0.0) / (2 * Z95)
            b_lift = rng.normal(lift, sd, size=n)
        else:
            low, high = fix.lift.low, fix.lift.high
            lift = (low + high) / 2
            b_lift = rng.uniform(low, high, size=n)
        rate = float(table.loc[fix.step, "conversion_rate"])
        revenue = float(table.loc[fix.step, "revenue_per_year"])
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = revenue * min(lift, _headroom(rate))
            b_gain = b_revenue * np.minimum(b_lift, (1 - b_rate) / b_rate)
        rows.append(
            {
                "name": fix.name,
                "step": fix.step,
                "lift_source": "measured" if found is not None else "guess",
                "lift": lift,
                "lift_low": low,
                "lift_high": high,
                "experiment": fix.experiment or "",
                "measured_by": found.source if found is not None else "",
                "revenue": gain,
                **_bounds("revenue", b_gain, alpha),
                "cost": fix.cost,
                "weeks": fix.weeks,
                "per_cost": gain / fix.cost,
                **_bounds("per_cost", b_gain / fix.cost, alpha),
                "per_week": gain / fix.weeks,
                **_bounds("per_week", b_gain / fix.weeks, alpha),
                "description": fix.description,
            }
        )
    other = "per_week" if rank_by == "per_cost" else "per_cost"
    ranked = pd.DataFrame(rows).sort_values(
        [rank_by, other], ascending=False, na_position="last", kind="stable"
    )
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked.reset_index(drop=True)[list(RANKED_COLUMNS)]


def _headroom(rate: float) -> float:
    """The largest relative lift a rate can take before it passes 100%."""
    return (1 - rate) / rate if rate > 0 else np.inf


# --------------------------------------------------------------------------- the report
def fixes_sections(values: PointValues, ranked: pd.DataFrame, currency: str = "USD") -> list[str]:
    """The report's sections: the value of a point per step, the ranked fixes."""
    pct = round(values.level * 100)
    step_table = pd.DataFrame(
        {
            "step": values.table["step"].str.replace(" -> ", " → "),
            "leads": values.table["leads"],
            "conversion rate": values.table["conversion_rate"],
            "conversion interval": [
                f"{fmt(lo, '{:.1%}')} – {fmt(hi, '{:.1%}')}"
                for lo, hi in zip(
                    values.table["conversion_rate_low"],
                    values.table["conversion_rate_high"],
                    strict=True,
                )
            ],
            "leads per year": values.table["leads_per_year"],
            "rate to the last stage (of those who pass)": values.table["downstream_rate"],
            f"revenue through the step per year ({currency})": values.table["revenue_per_year"],
            f"one point is worth ({currency}/year)": values.table["value_of_point"],
            f"{pct}% interval": [
                _money_range(lo, hi)
                for lo, hi in zip(
                    values.table["value_of_point_low"],
                    values.table["value_of_point_high"],
                    strict=True,
                )
            ],
        }
    )
    point = html_section(
        "value-of-a-point",
        "What one more point of conversion is worth",
        "For each step: the leads whose passage through it the data shows, the share that "
        "moved on, and the revenue per year that flowed through it (the value of the "
        "customers those leads became). One more percentage point of conversion at a step "
        "sends <code>0.01 / rate</code> more of its leads on, each worth the same downstream; "
        f"{pct}% intervals are a bootstrap over accounts. A relative lift of x% at any step "
        "adds x% of that step's revenue: a point is worth most where the rate is lowest.",
        html_figure(_point_plot(values.table, currency)),
        html_table(step_table),
    )
    shown = pd.DataFrame(
        {
            "rank": ranked["rank"],
            "fix": ranked["name"],
            "step": ranked["step"].str.replace(" -> ", " → "),
            "lift": [
                f"{lift:+.1%} ({lo:+.1%} to {hi:+.1%})"
                for lift, lo, hi in zip(
                    ranked["lift"], ranked["lift_low"], ranked["lift_high"], strict=True
                )
            ],
            "lift from": [
                "measured" if s == "measured" else ("guess" + (f" ({e} not measured)" if e else ""))
                for s, e in zip(ranked["lift_source"], ranked["experiment"], strict=True)
            ],
            f"revenue per year ({currency})": [
                f"{fmt(v, '{:,.0f}')} ({_money_range(lo, hi)})"
                for v, lo, hi in zip(
                    ranked["revenue"], ranked["revenue_low"], ranked["revenue_high"], strict=True
                )
            ],
            f"cost ({currency})": ranked["cost"],
            "weeks": ranked["weeks"],
            "revenue per unit of cost": [
                f"{fmt(v, '{:.2f}')} ({fmt(lo, '{:.2f}')} – {fmt(hi, '{:.2f}')})"
                for v, lo, hi in zip(
                    ranked["per_cost"], ranked["per_cost_low"], ranked["per_cost_high"], strict=True
                )
            ],
            f"revenue per week to ship ({currency})": [
                f"{fmt(v, '{:,.0f}')} ({_money_range(lo, hi)})"
                for v, lo, hi in zip(
                    ranked["per_week"], ranked["per_week_low"], ranked["per_week_high"], strict=True
                )
            ],
        }
    )
    fixes = html_section(
        "fixes",
        "Fix priorities",
        "The candidate fixes of the fixes file (<code>reports.fixes_file</code>), ranked by "
        "expected revenue per year per unit of cost, with the revenue per week it takes to "
        f"ship beside it; {pct}% intervals join the funnel's bootstrap with the lift's range. "
        "A guessed lift is drawn from its range; where a randomized experiment measured the "
        "fix, its measured lift and interval replace the guess (<b>measured</b>).",
        html_figure(_fixes_plot(ranked)),
        html_table(shown),
    )
    return [point, fixes]


def _money_range(low: float, high: float) -> str:
    return f"{fmt(low, '{:,.0f}')} – {fmt(high, '{:,.0f}')}"


def _point_plot(table: pd.DataFrame, currency: str) -> Figure:
    fig, ax = new_figure(7.0, 3.8)
    x = np.arange(len(table))
    value = table["value_of_point"].to_numpy(dtype=float)
    low = np.nan_to_num(value - table["value_of_point_low"].to_numpy(dtype=float))
    high = np.nan_to_num(table["value_of_point_high"].to_numpy(dtype=float) - value)
    ax.bar(x, np.nan_to_num(value), yerr=[np.maximum(low, 0), np.maximum(high, 0)], capsize=4,
           color="#4292c6")  # fmt: skip
    for xi, rate in zip(x, table["conversion_rate"], strict=True):
        ax.text(xi, 0, f"rate {fmt(rate, '{:.0%}')}", ha="center", va="bottom", fontsize=8,
                color="white")  # fmt: skip
    ax.set_xticks(x, [s.replace(" -> ", " →\n") for s in table["step"]])
    ax.set_ylabel(f"{currency} per year")
    ax.set_title("Value of one more point of conversion (95% interval)")
    return fig


def _fixes_plot(ranked: pd.DataFrame) -> Figure:
    shown = ranked.iloc[::-1]
    fig, ax = new_figure(8.0, max(2.5, 0.45 * len(shown) + 1.2))
    y = np.arange(len(shown))
    value = shown["per_cost"].to_numpy(dtype=float)
    low = np.nan_to_num(value - shown["per_cost_low"].to_numpy(dtype=float))
    high = np.nan_to_num(shown["per_cost_high"].to_numpy(dtype=float) - value)
    colors = ["#41ab5d" if s == "measured" else "#9ecae1" for s in shown["lift_source"]]
    ax.barh(y, np.nan_to_num(value), xerr=[np.maximum(low, 0), np.maximum(high, 0)],
            color=colors, capsize=3)  # fmt: skip
    ax.axvline(1.0, color="#888", lw=1, ls="--")
    ax.set_yticks(y, [f"{n}  ({s.split(' -> ')[0]} →)" for n, s in zip(shown["name"],
                      shown["step"], strict=True)])  # fmt: skip
    ax.set_xlabel("revenue per year per unit of cost (dashed: pays back in a year)")
    ax.set_title("Fixes ranked (green: measured lift, blue: guessed)")
    return fig


# ------------------------------------------------------------------------------ as text
def format_point_values(table: pd.DataFrame, currency: str = "USD") -> str:
    """The value of a point per step as lines of text (``PointValues.table`` or its JSON
    records as a frame)."""
    lines = [f"value of one more point of conversion ({currency} per year, 95% interval):"]
    for row in table.itertuples(index=False):
        lines.append(
            f"  {row.step:<28} rate {fmt(row.conversion_rate, '{:.1%}')} of "
            f"{row.leads:,} leads   one point {fmt(row.value_of_point, '{:,.0f}')} "
            f"[{_money_range(row.value_of_point_low, row.value_of_point_high)}]"
        )
    return "\n".join(lines)


def format_fixes(ranked: pd.DataFrame, currency: str = "USD", top: int | None = None) -> str:
    """The ranked fixes as lines of text (money in ``currency`` per year), the first ``top``
    of them (all when None)."""
    shown = ranked if top is None else ranked.head(top)
    lines = []
    for row in shown.itertuples(index=False):
        lines.append(
            f"  {row.rank:>2}. {row.name:<22} {row.step:<27} {fmt(row.lift, '{:+.1%}')} "
            f"{'measured' if row.lift_source == 'measured' else 'guess'}  "
            f"+{fmt(row.revenue, '{:,.0f}')}/yr [{_money_range(row.revenue_low, row.revenue_high)}]"
            f"  cost {row.cost:,.0f}, {row.weeks:g} wk  ->  {fmt(row.per_cost, '{:.2f}')} per "
            f"{currency} [{fmt(row.per_cost_low, '{:.2f}')}, {fmt(row.per_cost_high, '{:.2f}')}],"
            f" {fmt(row.per_week, '{:,.0f}')}/wk"
        )
    return "\n".join(lines)

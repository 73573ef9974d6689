"""Experiment readout benchmark: are the intervals right, and does daily peeking stay safe?

Run as ``.venv/bin/python benchmarks/experiments.py [--experiments 400] [--aa-runs 2000]``.

1. Coverage. Each simulated experiment draws fresh leads (``draw_leads``), runs the synthetic
   offer experiment on them (``synthetic.exposures.expose``: an arm drawn uniformly from the
   lead's eligible offers and control, conversion from the generator's true probabilities) and
   reads it out with ``reports.experiments.offer_comparisons``, the report's own path (control
   cut to the eligible leads, Welch intervals), plain and with CUPED. The truth of offer X is
   the generator's effect on the leads eligible for X, weighted as the design draws them
   (1 / number of eligible arms), computed on a million leads. The 95% intervals should cover
   it 93-97% of the time.
2. Daily peeking. A/A experiments (both arms control, the generator's base rates) read every
   day for ``DAYS`` days; the always-valid interval may exclude zero on at most 5% of the runs,
   while the fixed-horizon test read the same way is shown for contrast.
3. A broken assignment (a fifth of the control arm's non-converters lost from the log) must
   trip the sample ratio alert; the intact experiments must not.

Writes ``benchmarks/results/experiments.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.offers import CONTROL, Offers, read_offers
from reports.experiment_stats import sequential_interval, srm_test
from reports.experiments import offer_comparisons
from synthetic.exposures import (
    ARMS,
    OFFER_IDS,
    STAGES,
    Exposures,
    LeadState,
    base_logit,
    eligibility,
    expose,
    lead_stage,
    true_probabilities,
)

RESULTS = ROOT / "benchmarks" / "results"
WINDOW_DAYS = 14
DAYS = 28  # looks of the A/A peeking simulation, one a day
ALPHA = 0.05
FAR = 10**12  # an as_of after every outcome window


def draw_leads(rng: np.random.Generator, n: int) -> LeadState:
    """``n`` leads as the feature tables would show them at a campaign tick."""
    customer = rng.random(n) < 0.35
    senior = rng.random(n)
    return LeadState(
        pricing_30d=rng.poisson(0.6, n).astype(float),
        demo_30d=rng.poisson(0.15, n).astype(float),
        trial_30d=rng.poisson(0.08, n).astype(float),
        webinar_30d=rng.poisson(0.25, n).astype(float),
        content_30d=rng.poisson(0.3, n).astype(float),
        decision_maker=senior < 0.3,
        low_seniority=senior > 0.6,
        employees=np.exp(rng.normal(5.5, 1.5, n)),
        industry_fit=(rng.random(n) < 0.5).astype(float),
        is_customer=customer,
        utilization=np.where(customer, rng.uniform(0.1, 1.2, n), np.nan),
        account_opportunities_90d=rng.poisson(0.1, n).astype(float),
    )


def activity(state: LeadState) -> np.ndarray:
    """The pre-period covariate of CUPED: engagement events in the 30 days before."""
    return state.pricing_30d + state.webinar_30d + state.content_30d + state.demo_30d


def true_effects(rng: np.random.Generator, n: int = 1_000_000) -> dict[str, float]:
    """Offer -> the effect the readout estimates: mean over leads eligible for the offer of
    p(offer) - p(control), each lead weighted by its chance of either arm (1 / its arms)."""
    state = draw_leads(rng, n)
    stage = lead_stage(state)
    eligible = eligibility(stage, state.is_customer)
    p = true_probabilities(state, stage)
    weight = 1.0 / (1 + eligible.sum(axis=1))
    return {
        offer: float(
            np.average(
                p[eligible[:, j], j + 1] - p[eligible[:, j], 0], weights=weight[eligible[:, j]]
            )
        )
        for j, offer in enumerate(OFFER_IDS)
    }


def exposures_frame(ex: Exposures) -> pd.DataFrame:
    """An ``offer_exposures`` table of one simulated experiment."""
    converted = pd.Series(pd.to_datetime(np.maximum(ex.converted_at, 0), unit="s", utc=True))
    return pd.DataFrame(
        {
            "subject_id": ex.lead.astype(str),
            "offer_id": np.asarray(ARMS, dtype=object)[ex.arm],
            "exposed_at": pd.to_datetime(ex.exposed_at, unit="s", utc=True),
            "propensity": ex.propensity,
            "converted_at": converted.where(ex.converted_at >= 0),
        }
    )


def one_experiment(
    rng: np.random.Generator, n: int, offers: Offers, cuped: bool = False
) -> list[dict]:
    """Simulate one offer experiment on ``n`` fresh leads and read it out."""
    state = draw_leads(rng, n)
    ex = expose(rng, np.arange(n), state, 0)
    frame = exposures_frame(ex)
    stages = np.asarray(STAGES, dtype=object)[ex.stage]
    covariate = activity(state)[ex.lead] if cuped else None
    return offer_comparisons(
        frame, offers, window_days=WINDOW_DAYS, as_of=FAR, stages=stages, covariate=covariate
    )


@dataclass
class Rate:
    hits: int
    runs: int

    @property
    def share(self) -> float:
        return self.hits / self.runs

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Clopper-Pearson interval of the share."""
        a = (1 - level) / 2
        low = stats.beta.ppf(a, self.hits, self.runs - self.hits + 1) if self.hits else 0.0
        high = (
            stats.beta.ppf(1 - a, self.hits + 1, self.runs - self.hits)
            if self.hits < self.runs
            else 1.0
        )
        return float(low), float(high)

    def as_dict(self) -> dict:
        low, high = self.interval()
        return {"share": self.share, "low": low, "high": high, "hits": self.hits, "runs": self.runs}


def coverage(
    experiments: int, n: int, seed: int, cuped: bool = False, truth: dict[str, float] | None = None
) -> dict[str, Rate]:
    """Per offer (and "all"), how often the 95% interval of the absolute lift covered the
    truth over ``experiments`` simulated experiments of ``n`` leads."""
    rng = np.random.default_rng(seed)
    truth = truth or true_effects(np.random.default_rng(seed + 1))
    offers = read_offers(ROOT / "configs" / "offers.yaml")
    hits = dict.fromkeys([*OFFER_IDS, "all"], 0)
    runs = dict.fromkeys([*OFFER_IDS, "all"], 0)
    for _ in range(experiments):
        for c in one_experiment(rng, n, offers, cuped):
            if c["status"] != "ok":
                continue
            hit = c["lift_abs_low"] <= truth[c["treatment"]] <= c["lift_abs_high"]
            for key in (c["treatment"], "all"):
                hits[key] += int(hit)
                runs[key] += 1
    return {k: Rate(hits[k], runs[k]) for k in hits}


def aa_peeking(runs: int, per_day: int, seed: int, days: int = DAYS) -> dict[str, Rate]:
    """A/A experiments read every day: how many runs ever called a difference, with the
    always-valid interval and with the fixed-horizon Welch test."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-base_logit(draw_leads(rng, runs * days * per_day * 2))))
    y = (rng.random(p.shape) < p).reshape(runs, days, 2, per_day).astype(float)
    n_arm = per_day * np.arange(1, days + 1)[None, :]  # per arm, after each day
    sums = y.sum(axis=3).cumsum(axis=1)  # (runs, days, arm)
    squares = (y**2).sum(axis=3).cumsum(axis=1)
    mean = sums / n_arm[..., None]
    var = (squares - n_arm[..., None] * mean**2) / (n_arm[..., None] - 1)
    diff = mean[..., 0] - mean[..., 1]
    se = np.sqrt(var[..., 0] / n_arm + var[..., 1] / n_arm)
    _, _, p_seq = sequential_interval(diff, se, 2 * n_arm, ALPHA)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_fixed = 2 * stats.norm.sf(np.abs(diff) / se)
    p_fixed = np.where(se > 0, p_fixed, 1.0)
    return {
        "sequential": Rate(int((p_seq < ALPHA).any(axis=1).sum()), runs),
        "fixed_horizon_peeking": Rate(int((p_fixed < ALPHA).any(axis=1).sum()), runs),
        "fixed_horizon_last_day": Rate(int((p_fixed[:, -1] < ALPHA).sum()), runs),
    }


def srm_trips(experiments: int, n: int, seed: int, lost: float = 0.2) -> dict[str, Rate]:
    """How often the sample ratio alert trips on intact experiments, and on the same ones with
    ``lost`` of the control arm's non-converters missing from the log (per offer comparison)."""
    rng = np.random.default_rng(seed)
    offers = read_offers(ROOT / "configs" / "offers.yaml")
    intact = broken = total = 0
    for _ in range(experiments):
        state = draw_leads(rng, n)
        ex = expose(rng, np.arange(n), state, 0)
        frame = exposures_frame(ex)
        stages = np.asarray(STAGES, dtype=object)[ex.stage]
        drop = (frame["offer_id"] == CONTROL) & frame["converted_at"].isna()
        drop &= rng.random(len(frame)) < lost
        for kept, count in ((np.ones(len(frame), bool), "intact"), (~drop.to_numpy(), "broken")):
            for c in offer_comparisons(
                frame[kept], offers, window_days=WINDOW_DAYS, as_of=FAR, stages=stages[kept]
            ):
                alert = bool(c["srm"] and c["srm"]["alert"])
                if count == "intact":
                    intact += alert
                    total += 1
                else:
                    broken += alert
    return {"intact": Rate(intact, total), "broken": Rate(broken, total)}


def check_srm_formula() -> float:
    """The p-value of a 52/48 split of 20,000 (the alert must trip)."""
    return srm_test([10_400, 9_600], [0.5, 0.5]).p_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=400)
    parser.add_argument("--leads", type=int, default=6000)
    parser.add_argument("--aa-runs", type=int, default=2000)
    parser.add_argument("--per-day", type=int, default=150)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    truth = true_effects(np.random.default_rng(args.seed + 1))
    plain = coverage(args.experiments, args.leads, args.seed, truth=truth)
    cuped = coverage(args.experiments, args.leads, args.seed + 100, cuped=True, truth=truth)
    aa = aa_peeking(args.aa_runs, args.per_day, args.seed + 200)
    srm = srm_trips(max(args.experiments // 4, 50), args.leads, args.seed + 300)
    results = {
        "settings": {**vars(args), "days": DAYS, "alpha": ALPHA},
        "truth": truth,
        "coverage": {k: v.as_dict() for k, v in plain.items()},
        "coverage_cuped": {k: v.as_dict() for k, v in cuped.items()},
        "aa_peeking": {k: v.as_dict() for k, v in aa.items()},
        "srm": {k: v.as_dict() for k, v in srm.items()},
        "seconds": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "experiments.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Experiment readout benchmark",
        "",
        (
            f"{args.experiments} simulated offer experiments of {args.leads} leads "
            f"(`.venv/bin/python benchmarks/experiments.py`), seed {args.seed}; shares with 95% "
            "Clopper-Pearson intervals."
        ),
        "",
        "| check | target | measured | 95% interval | runs |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows = [
        ("coverage of the 95% interval", "0.93-0.97", plain["all"]),
        ("coverage, CUPED", "0.93-0.97", cuped["all"]),
        *((f"coverage, {o}", "0.93-0.97", plain[o]) for o in OFFER_IDS),
        (f"A/A false positives, always-valid, {DAYS} daily looks", "<= 0.05", aa["sequential"]),
        (
            f"A/A false positives, fixed-horizon test, {DAYS} daily looks",
            "(for contrast)",
            aa["fixed_horizon_peeking"],
        ),
        ("A/A false positives, fixed-horizon test, one look", "0.05", aa["fixed_horizon_last_day"]),
        ("SRM alert, intact assignment", "~0.001", srm["intact"]),
        ("SRM alert, 20% of control non-converters lost", "~1", srm["broken"]),
    ]
    for name, target, rate in rows:
        low, high = rate.interval()
        lines.append(
            f"| {name} | {target} | {rate.share:.3f} | [{low:.3f}, {high:.3f}] | {rate.runs} |"
        )
    lines.append("")
    (RESULTS / "experiments.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"{results['seconds']:.0f} s")


if __name__ == "__main__":
    main()

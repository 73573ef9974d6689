"""The CLI's printers: each job's result as the lines `funnel` and `funnel demo` print."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from activation.audience_sync import SyncReport
    from activation.campaigns import CampaignsReport
    from activation.lead_promotion import PromotionReport
    from core.flat import ImportReport
    from training.compare import CompareResult
    from training.nbo import NboResult
    from training.train import TrainResult


def format_import(report: ImportReport) -> str:
    """What ``funnel import`` found: rows, task, feature kinds, leakage and dropped columns."""
    r = report
    kinds: dict[str, int] = {}
    for column in r.features:
        kinds[r.types[column]] = kinds.get(r.types[column], 0) + 1
    mix = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    top = sorted(r.single_auc.items(), key=lambda kv: -kv[1])[:3]
    lines = [
        (
            f"imported '{r.name}': {r.rows:,} rows, positive rate {r.positive_rate:.3f}, task "
            f"{r.task}; {len(r.features)} features ({mix})"
        ),
        "  strongest single columns (AUC alone): " + ", ".join(f"{c} {a:.3f}" for c, a in top),
    ]
    lines += [f"  note: {note}" for note in r.notes]
    lines += [f"  LEAK {column}: {finding}" for column, finding in r.leakage.items()]
    lines += [f"  suspect {column}: {finding}" for column, finding in r.suspects.items()]
    lines += [
        f"  dropped {column}: {why}"
        for column, why in r.dropped.items()
        if not why.startswith("leakage guard")
    ]
    if r.leakage:
        lines.append(
            "  the leaks are not features (a column wrongly flagged: --keep COLUMN, or "
            "leakage.keep in a dataset spec)"
        )
    lines.append(f"  feature service {r.name}_v1; train it with `funnel train {r.name}`")
    return "\n".join(lines)


def value_decimals(values: Sequence[float], significant: int = 4) -> int:
    """Decimals that show values of this size with ``significant`` digits: 2 for money-sized
    values (1 and over), more below 1, so a lift of 0.0173 conversions per unit does not print
    as 0.02."""
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    if largest >= 1 or largest == 0:
        return 2
    return max(2, significant - 1 - math.floor(math.log10(largest)))


def oracle_share(m: dict[str, float]) -> str:
    """The held-out Qini as a share of the generator's oracle, when it is known: expected (the
    outcome draws integrated out) and on the outcomes drawn."""
    if "mean_expected_qini_vs_oracle" in m:
        drawn = (
            f", {m['mean_qini_vs_oracle']:.0%} on the outcomes drawn"
            if "mean_qini_vs_oracle" in m
            else ""
        )
        return f", {m['mean_expected_qini_vs_oracle']:.0%} of the oracle's expected Qini{drawn}"
    if "mean_qini_vs_oracle" in m:
        return f", {m['mean_qini_vs_oracle']:.0%} of the oracle's"
    return ""


def format_nbo_result(result: NboResult) -> str:
    """A next-best-offer training run: learner, Qini, policy values and the served policy."""
    m = result.metrics
    champion = " (now champion)" if result.became_champion else ""
    qinis = ", ".join(f"{k} {v:.3f}" for k, v in result.validation_qini.items())
    lines = [
        f"model {result.model_name} version {result.version}{champion}",
        f"  learner {result.learner} (validation mean Qini: {qinis})",
        f"  held-out (cross-fitted) mean Qini {m['mean_qini']:.3f}" + oracle_share(m),
        (
            "  policy values out of fold (net value per unit over sending nothing, doubly "
            "robust, 95% CI):"
        ),
    ]
    decimals = value_decimals([x for triple in result.policy_values.values() for x in triple])
    for name, (v, lo, hi) in sorted(result.policy_values.items(), key=lambda kv: -kv[1][0]):
        mark = "  <- served" if name == result.served else ""
        lines.append(
            f"    {name:<16} {v:9.{decimals}f}  [{lo:9.{decimals}f}, {hi:9.{decimals}f}]{mark}"
        )
    if "true_value_learned" in m:
        lines.append(
            f"  true value per unit (oracle): learned {m['true_value_learned']:.2f}, best single "
            f"offer {m['true_value_best_single']:.2f}, oracle policy {m['true_value_oracle_policy']:.2f}"
        )
    lines.append(f"  {result.reason}")
    return "\n".join(lines)


def format_train_result(result: TrainResult) -> str:
    """A classifier training run: test metrics with intervals, the threshold or risk tiers."""
    m = result.metrics
    champion = " (now champion)" if result.became_champion else ""
    if not result.became_champion and result.predictive and not result.withheld:
        champion = f" (challenger: weigh it with `funnel compare {result.kind}`)"
    elif result.withheld:
        champion = " (not crowned: see below)"
    low, high = result.roc_auc_ci
    lines = [
        f"model {result.model_name} version {result.version}{champion}",
        f"  test ROC AUC {m['roc_auc']:.4f} [95% CI {low:.4f}, {high:.4f}]",
        (
            f"  PR AUC {m['pr_auc']:.4f}  Brier {m['brier']:.4f}  log loss {m['log_loss']:.4f}  "
            f"lift@10% {m['lift_at_10pct']:.2f}"
        ),
    ]
    if "oracle_roc_auc" in m:
        lines.append(
            f"  oracle ROC AUC {m['oracle_roc_auc']:.4f} on the same rows; gap (oracle - model) "
            f"{m['roc_auc_gap_to_oracle']:+.4f} [95% CI {m['roc_auc_gap_to_oracle_ci_low']:+.4f}, "
            f"{m['roc_auc_gap_to_oracle_ci_high']:+.4f}]"
        )
    if result.tiers:
        parts = []
        for tier in result.tiers:
            name = tier["name"]
            parts.append(
                f"{name} (p >= {tier['min_probability']:g}): "
                f"{m[f'tier_{name}_share']:.0%} of customers, {m[f'tier_{name}_rate']:.0%} churned"
            )
        tiers = "; ".join(parts)
        lines.append(f"  risk tiers on the test rows: {tiers}")
    else:
        flagged = (
            f"{m['mql_per_week']:.0f} MQLs/week"
            if "mql_per_week" in m
            else f"{m['flagged_share']:.1%} of the rows flagged"
        )
        lines.append(
            f"  threshold {result.threshold:.4f}: precision {m['precision_at_threshold']:.3f}, "
            f"recall {m['recall_at_threshold']:.3f}, {flagged}"
        )
    if result.decision_note:
        lines.append(f"  note: {result.decision_note}")
    if result.withheld:
        lines.append(f"  NOT CROWNED: {result.withheld}")
    if not result.predictive:
        lines.append(
            f"  NOT PREDICTIVE: not made champion (the test ROC AUC interval [{low:.4f}, "
            f"{high:.4f}] must lie above 0.5 and lift@10% {m['lift_at_10pct']:.2f} be above 1)"
        )
    return "\n".join(lines)


def format_compare(result: CompareResult) -> str:
    """Two model versions side by side, the champion rule and what it decided."""
    r = result
    a, b = f"a: {r.a.label}", f"b: {r.b.label}"
    lines = [
        (
            f"{r.model_name}: {a} vs {b}, on the same {r.rows:,} test rows "
            "(95% paired-bootstrap intervals)"
        ),
        f"  {'metric':<9} {'a':>25} {'b':>25} {'b better by':>27}  verdict",
    ]
    for c in r.comparison.values():
        name = c.metric if c.higher_is_better else f"{c.metric}*"
        lines.append(
            f"  {name:<9} {c.a:8.4f} [{c.a_ci[0]:.4f}, {c.a_ci[1]:.4f}]"
            f" {c.b:8.4f} [{c.b_ci[0]:.4f}, {c.b_ci[1]:.4f}]"
            f" {c.difference:+8.4f} [{c.difference_ci[0]:+.4f}, {c.difference_ci[1]:+.4f}]"
            f"  {c.verdict}"
        )
    lines.append("  * lower is better: 'b better by' is a - b")
    for side, ref in (("a", r.a), ("b", r.b)):
        check = r.predictive[side]
        state = "predictive" if check.predictive else "NOT PREDICTIVE"
        lines.append(f"  {side} ({ref.label}) {state}: {check.reason}")
    rule = r.rule
    key = (
        f"training.{r.kind}.promotion_rule"
        if r.kind in ("mql", "churn")
        else f"imports.{r.kind}.promotion_rule"
    )
    lines.append(
        f"  rule ({key}): {rule.metric} improvement > "
        f"{rule.min_improvement:g}"
        + (", interval above 0" if rule.require_interval_above else "")
        + ", b predictive"
    )
    outcome = "b wins" if r.verdict.wins else "b does not win"
    lines.append(f"  {outcome}: {r.verdict.reason}")
    if r.crowned:
        lines.append(
            f"  crowned: champion is now version {r.champion}"
            + (
                f"; version {r.previous_champion} is previous_champion "
                f"(`funnel rollback {r.kind}` restores it)"
                if r.previous_champion
                else ""
            )
        )
    elif r.verdict.wins:
        lines.append("  not crowned (run with --promote to crown b champion)")
    elif r.champion is None:
        lines.append("  nothing changed (the model has no champion)")
    else:
        lines.append(f"  nothing changed: the champion stays version {r.champion}")
    return "\n".join(lines)


def format_promotion(report: PromotionReport, destination: str) -> str:
    """A promotion run: scored, changed, promoted, waiting, and what was sent."""
    r, t, d = report, report.thresholds, report.delivery
    lines = [
        (
            f"scored {r.scored:,} leads with {r.model_version or '-'}; "
            f"{r.changed:,} changed since the last run"
        )
    ]
    if t is not None:
        lines.append(f"  threshold p >= {t.promote:.4f}, re-arm below {t.rearm:.4f}")
    lines.append(
        f"  promoted {r.promoted} (daily cap: {r.cap_left} left today); "
        f"{r.waiting} over the cap wait for the next run"
    )
    if r.held_out:
        lines.append(
            f"  held out {r.held_out} from sales (jobs.promotion.holdout): never sent, logged "
            "for `funnel report experiments`"
        )
    retried = f", {d.failures} failed tries" if d.failures else ""
    lines.append(
        f"  sent to {destination}: {d.sent}, dead-lettered {d.dead}, "
        f"still pending {d.pending}{retried}"
    )
    if d.stopped_early:
        lines.append(f"  stopped sending: {d.stopped_early}")
    return "\n".join(lines)


def format_audiences(report: SyncReport) -> str:
    """One line per audience synced: members, adds and removes, the sync reached."""
    lines = []
    for a in report.audiences:
        state = f"FAILED, nothing changed: {a.error}" if a.error else f"now at sync {a.version}"
        lines.append(
            f"{a.audience} -> {a.destination}: {a.members:,} members, +{a.adds:,} / "
            f"-{a.removes:,}; {state}"
        )
    return "\n".join(lines)


def format_campaigns(report: CampaignsReport) -> str:
    """Each campaign wave: audience, eligible, assigned by arm, and what was sent."""
    lines = []
    for c in report.campaigns:
        arms = ", ".join(f"{k} {v}" for k, v in c.by_arm.items()) or "none new"
        d = c.delivery
        lines.append(
            f"{c.campaign} wave {c.wave}: {c.members:,} in the audience, {c.eligible:,} eligible, "
            f"{c.assigned:,} newly assigned ({c.holdout:,} held out); arms: {arms}"
        )
        lines.append(f"  sent {d.sent}, dead-lettered {d.dead}, still pending {d.pending}")
    lines.append(f"offer_exposures: {report.exposures_written:,} new rows")
    return "\n".join(lines)

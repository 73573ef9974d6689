"""The `funnel` command line: parse, load config, call a job, print.

Heavy libraries (feast, mlflow, lightgbm) are imported inside the commands that use them, so
`funnel --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from core.config import Config, ConfigError, load_config
from core.quiet import quiet_libraries

if TYPE_CHECKING:
    from activation.audience_sync import SyncReport
    from activation.campaigns import CampaignsReport
    from activation.lead_promotion import PromotionReport
    from core.flat import ImportReport
    from training.compare import CompareResult
    from training.nbo import NboResult
    from training.train import TrainResult

# Errors that are the user's to fix: shown as one clear line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    FileNotFoundError,
    ValueError,
    KeyError,
)


def _user_errors() -> tuple[type[BaseException], ...]:
    from activation.state import StateStoreError
    from training.scoring import BundleError

    return (*USER_ERRORS, BundleError, StateStoreError)


class FunnelGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except _user_errors() as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise click.ClickException(str(message)) from exc


@click.group(cls=FunnelGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML config (default: configs/local.yaml).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set optuna.n_trials=5 (repeatable).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """funnel: MQL scoring, churn risk and next-best-offer for a marketing funnel."""
    quiet_libraries()
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["overrides"] = overrides


def _config(ctx: click.Context) -> Config:
    try:
        return load_config(ctx.obj["config_path"], ctx.obj["overrides"])
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


# -- data ---------------------------------------------------------------------------------------
@main.group()
def data() -> None:
    """Raw funnel tables: generate synthetic data, or import your own."""


@data.command("generate")
@click.option("--leads", type=click.IntRange(min=1), default=None, help="Number of leads.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same data).")
@click.option("--weeks", type=click.IntRange(min=8), default=None, help="Weeks of events.")
@click.pass_context
def data_generate(
    ctx: click.Context, leads: int | None, seed: int | None, weeks: int | None
) -> None:
    """Write a synthetic B2B funnel (and its oracle) under <data_dir>/raw."""
    from synthetic.generate import generate

    cfg = _config(ctx)
    summary = generate(
        n_leads=leads or cfg.data.leads,
        seed=cfg.data.seed if seed is None else seed,
        start=cfg.data.start,
        weeks=weeks or cfg.data.weeks,
        out_dir=cfg.data_dir,
    )
    for key, value in summary.items():
        click.echo(f"{key}: {value}")


@data.command("import")
@click.argument("mapping", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def data_import(ctx: click.Context, mapping: Path) -> None:
    """Import your own accounts/leads/events/... files through a YAML column mapping."""
    from core.mapping import import_tables

    cfg = _config(ctx)
    for name, rows in import_tables(mapping, cfg.raw_dir).items():
        click.echo(f"{name}: {rows:,} rows")
    click.echo(f"written to {cfg.raw_dir}; next: `funnel features apply`")


# -- features -----------------------------------------------------------------------------------
@main.group()
def features() -> None:
    """Feast features: build point-in-time tables, apply definitions, materialize."""


@features.command("apply")
@click.pass_context
def features_apply(ctx: click.Context) -> None:
    """Compute the point-in-time feature tables and register the Feast definitions."""
    from app.pipeline import apply_features

    cfg = _config(ctx)
    for name, rows in apply_features(cfg).items():
        click.echo(f"{name}: {rows:,} rows")
    click.echo(f"feature definitions applied (registry: {cfg.registry['path']})")


@features.command("materialize")
@click.pass_context
def features_materialize(ctx: click.Context) -> None:
    """Load the newest feature values into the online store."""
    from app.pipeline import materialize_features

    cfg = _config(ctx)
    end = materialize_features(cfg)
    click.echo(f"online store ({cfg.online_store['type']}) holds features as of {end}")


# -- bring your own data -------------------------------------------------------------------------
@main.command("import")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Dataset name (default: the file's stem).")
@click.option(
    "--id", "id_column", default=None, help="The unit's id column (default: row numbers)."
)
@click.option("--label", "label_column", default=None, help="The label column.")
@click.option(
    "--positive", default=None, help="The label value that means 1 (default: yes/true/1)."
)
@click.option("--task", type=click.Choice(["propensity", "churn", "uplift"]), default=None)
@click.option("--timestamp", default=None, help="When each row's features were known.")
@click.option("--treatment", default=None, help="Uplift: the column naming each row's arm.")
@click.option("--control", default=None, help="Uplift: the value of the untreated arm.")
@click.option("--sep", default=None, help="CSV separator (default: sniffed).")
@click.option("--post-outcome", multiple=True, help="A column known only after the outcome.")
@click.option("--drop", multiple=True, help="A column never to use as a feature.")
@click.pass_context
def import_cmd(ctx: click.Context, source: Path, **flags: object) -> None:
    """Import a flat table (CSV or parquet, one row per unit) as a Feast feature view + service.

    SOURCE is a dataset spec (YAML, see configs/datasets/) or the data file itself with --label.
    """
    from core.flat import import_flat, spec_from_flags

    cfg = _config(ctx)
    report = import_flat(cfg, spec_from_flags(source, flags))
    click.echo(format_import(report))


def format_import(report: ImportReport) -> str:
    r = report
    kinds: dict[str, int] = {}
    for kind in r.types.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    mix = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    top = sorted(r.single_auc.items(), key=lambda kv: -kv[1])[:3]
    lines = [
        (
            f"imported '{r.name}': {r.rows:,} rows, positive rate {r.positive_rate:.3f}, task "
            f"{r.task}; {len(r.features)} features ({mix})"
        ),
        "  strongest single columns (AUC alone): " + ", ".join(f"{c} {a:.3f}" for c, a in top),
    ]
    lines += [f"  LEAKAGE {column}: {finding}" for column, finding in r.leakage.items()]
    lines += [f"  dropped {column}: {why}" for column, why in r.dropped.items()]
    lines.append(f"  feature service {r.name}_v1; train it with `funnel train {r.name}`")
    return "\n".join(lines)


# -- training -----------------------------------------------------------------------------------
class TrainGroup(click.Group):
    """``funnel train mql|churn|nbo``, or ``funnel train <name>`` for an imported table."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command

        @click.command(cmd_name, help=f"Train the imported table '{cmd_name}'.")
        @click.option("--trials", type=click.IntRange(min=1), default=None, help="Optuna trials.")
        @click.pass_context
        def train_dataset(inner: click.Context, trials: int | None) -> None:
            from training.flat_uplift import train_dataset as run

            cfg = _config(inner)
            result = run(cfg, cmd_name, n_trials=trials)
            click.echo(
                format_nbo_result(result)
                if hasattr(result, "learner")
                else format_train_result(result)
            )

        return train_dataset


@main.group(cls=TrainGroup)
def train() -> None:
    """Train, tune and register models: mql, churn, nbo, or an imported table by its name."""


@train.command("mql")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Optuna trials.")
@click.pass_context
def train_mql_cmd(ctx: click.Context, trials: int | None) -> None:
    """Tune and train the MQL model; register it in MLflow."""
    from training.train import train_classifier

    cfg = _config(ctx)
    click.echo(format_train_result(train_classifier(cfg, "mql", n_trials=trials)))


@train.command("churn")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Optuna trials.")
@click.pass_context
def train_churn_cmd(ctx: click.Context, trials: int | None) -> None:
    """Tune and train the churn-risk model; register it in MLflow."""
    from training.train import train_classifier

    cfg = _config(ctx)
    click.echo(format_train_result(train_classifier(cfg, "churn", n_trials=trials)))


@train.command("nbo")
@click.pass_context
def train_nbo_cmd(ctx: click.Context) -> None:
    """Fit the next-best-offer uplift learners, keep the best, decide the policy; register it."""
    from training.nbo import train_nbo

    cfg = _config(ctx)
    click.echo(format_nbo_result(train_nbo(cfg)))


def format_nbo_result(result: NboResult) -> str:
    m = result.metrics
    champion = " (now champion)" if result.became_champion else ""
    qinis = ", ".join(f"{k} {v:.3f}" for k, v in result.validation_qini.items())
    lines = [
        f"model {result.model_name} version {result.version}{champion}",
        f"  learner {result.learner} (validation mean Qini: {qinis})",
        f"  held-out (cross-fitted) mean Qini {m['mean_qini']:.3f}"
        + (
            f", {m['mean_qini_vs_oracle']:.0%} of the oracle's"
            if "mean_qini_vs_oracle" in m
            else ""
        ),
        (
            "  policy values out of fold (net value per unit over sending nothing, doubly "
            "robust, 95% CI):"
        ),
    ]
    for name, (v, lo, hi) in sorted(result.policy_values.items(), key=lambda kv: -kv[1][0]):
        mark = "  <- served" if name == result.served else ""
        lines.append(f"    {name:<16} {v:9.2f}  [{lo:9.2f}, {hi:9.2f}]{mark}")
    if "true_value_learned" in m:
        lines.append(
            f"  true value per unit (oracle): learned {m['true_value_learned']:.2f}, best single "
            f"offer {m['true_value_best_single']:.2f}, oracle policy {m['true_value_oracle_policy']:.2f}"
        )
    lines.append(f"  {result.reason}")
    return "\n".join(lines)


def format_train_result(result: TrainResult) -> str:
    m = result.metrics
    champion = " (now champion)" if result.became_champion else ""
    if not result.became_champion and result.predictive:
        champion = f" (challenger: weigh it with `funnel compare {result.kind}`)"
    oracle = ""
    if "oracle_roc_auc" in m:
        oracle = f"  (oracle {m['oracle_roc_auc']:.4f}, gap {m['roc_auc_gap_to_oracle']:+.4f})"
    low, high = result.roc_auc_ci
    lines = [
        f"model {result.model_name} version {result.version}{champion}",
        f"  test ROC AUC {m['roc_auc']:.4f} [95% CI {low:.4f}, {high:.4f}]{oracle}",
        (
            f"  PR AUC {m['pr_auc']:.4f}  Brier {m['brier']:.4f}  log loss {m['log_loss']:.4f}  "
            f"lift@10% {m['lift_at_10pct']:.2f}"
        ),
    ]
    if result.tiers:
        parts = []
        for tier in result.tiers:
            name = tier["name"]
            parts.append(
                f"{name} (p >= {tier['min_probability']:g}): "
                f"{m[f'tier_{name}_share']:.0%} of customers, {m[f'tier_{name}_rate']:.0%} churned"
            )
        tiers = "; ".join(parts)
        lines.append(f"  risk tiers on the test weeks: {tiers}")
    else:
        lines.append(
            f"  threshold {result.threshold:.4f}: precision {m['precision_at_threshold']:.3f}, "
            f"recall {m['recall_at_threshold']:.3f}, {m['mql_per_week']:.0f} MQLs/week"
        )
    if not result.predictive:
        lines.append(
            f"  NOT PREDICTIVE: not made champion (the test ROC AUC interval [{low:.4f}, "
            f"{high:.4f}] must lie above 0.5 and lift@10% {m['lift_at_10pct']:.2f} be above 1)"
        )
    return "\n".join(lines)


# -- comparing models ---------------------------------------------------------------------------


@main.command("compare")
@click.argument("kind")
@click.option("--a", "a", default="champion", show_default=True, help="Alias or version of a.")
@click.option("--b", "b", default="challenger", show_default=True, help="Alias or version of b.")
@click.option("--promote", is_flag=True, help="Make b champion when the promotion rule says so.")
@click.pass_context
def compare_cmd(ctx: click.Context, kind: str, a: str, b: str, promote: bool) -> None:
    """Compare two versions of a model on the test rows it was evaluated on (paired bootstrap).

    KIND is mql, churn or an imported table's name."""
    from training.compare import compare_models

    cfg = _config(ctx)
    click.echo(format_compare(compare_models(cfg, kind, a=a, b=b, promote=promote)))


@main.command("rollback")
@click.argument("kind")
@click.pass_context
def rollback_cmd(ctx: click.Context, kind: str) -> None:
    """Give the champion alias back to the previous champion (recorded in champion_history).

    KIND is mql, churn or an imported table's name."""
    from training.compare import rollback

    cfg = _config(ctx)
    old, new = rollback(cfg, kind)
    click.echo(
        f"{kind}: champion rolled back from version {old} to version {new} "
        f"(version {old} is now previous_champion)"
    )


def format_compare(result: CompareResult) -> str:
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
    lines.append(
        f"  rule (training.{r.kind}.promotion_rule): {rule.metric} improvement > "
        f"{rule.min_improvement:g}"
        + (", interval above 0" if rule.require_interval_above else "")
        + ", b predictive"
    )
    outcome = "b wins" if r.verdict.wins else "b does not win"
    lines.append(f"  {outcome}: {r.verdict.reason}")
    if r.promoted:
        lines.append(
            f"  promoted: champion is now version {r.champion}"
            + (
                f"; version {r.previous_champion} is previous_champion "
                f"(`funnel rollback {r.kind}` restores it)"
                if r.previous_champion
                else ""
            )
        )
    elif r.verdict.wins:
        lines.append("  not promoted (run with --promote to make b champion)")
    elif r.champion is None:
        lines.append("  nothing changed (the model has no champion)")
    else:
        lines.append(f"  nothing changed: the champion stays version {r.champion}")
    return "\n".join(lines)


# -- jobs ---------------------------------------------------------------------------------------
@main.group("jobs")
def jobs_group() -> None:
    """Send scores out: MQL promotion, audience and campaign sync (state in the state store)."""


def _lease_held() -> tuple[type[BaseException], ...]:
    from activation.state import LeaseHeldError, LeaseLostError

    return (LeaseHeldError, LeaseLostError)


@jobs_group.command("promote")
@click.option("--all", "all_leads", is_flag=True, help="Rescore every lead, not only changed ones.")
@click.option(
    "--scores",
    "scores_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Promote from a scores file (parquet/CSV: lead_id, probability) instead of the champion.",
)
@click.option("--no-send", is_flag=True, help="Decide and queue only; send on the next run.")
@click.pass_context
def jobs_promote(
    ctx: click.Context, all_leads: bool, scores_file: Path | None, no_send: bool
) -> None:
    """Promote leads whose MQL score crossed the threshold to the sales destination, once each."""
    from activation.lead_promotion import run_promotion

    cfg = _config(ctx)
    try:
        report = run_promotion(cfg, all_leads=all_leads, scores_file=scores_file, send=not no_send)
    except _lease_held() as exc:
        click.echo(str(exc), err=True)
        ctx.exit(LEASE_HELD_EXIT)
    click.echo(format_promotion(report, cfg.jobs.promotion.destination))
    if report.delivery.stopped_early:
        ctx.exit(PARTIAL_EXIT)


# exit codes a scheduler can act on: 0 done, 3 another run holds the lease, 4 some messages
# could not be sent this time (they stay in the outbox for the next run)
LEASE_HELD_EXIT = 3
PARTIAL_EXIT = 4


def format_promotion(report: PromotionReport, destination: str) -> str:
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
    retried = f", {d.failures} failed tries" if d.failures else ""
    lines.append(
        f"  sent to {destination}: {d.sent}, dead-lettered {d.dead}, "
        f"still pending {d.pending}{retried}"
    )
    if d.stopped_early:
        lines.append(f"  stopped sending: {d.stopped_early}")
    return "\n".join(lines)


@jobs_group.command("sync-audiences")
@click.argument("names", nargs=-1)
@click.pass_context
def jobs_sync_audiences(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Send each audience's adds and removes since its last successful sync (all, or NAMES)."""
    from activation.audience_sync import sync_audiences

    cfg = _config(ctx)
    try:
        report = sync_audiences(cfg, names)
    except _lease_held() as exc:
        click.echo(str(exc), err=True)
        ctx.exit(LEASE_HELD_EXIT)
    click.echo(format_audiences(report))
    if report.failed:
        ctx.exit(PARTIAL_EXIT)


@jobs_group.command("sync-campaigns")
@click.argument("names", nargs=-1)
@click.option("--wave", default=None, help="Wave id (default: today's UTC date); reruns reuse it.")
@click.pass_context
def jobs_sync_campaigns(ctx: click.Context, names: tuple[str, ...], wave: str | None) -> None:
    """Assign offers to each campaign's audience with a random holdout; log and send them."""
    from activation.campaigns import sync_campaigns

    cfg = _config(ctx)
    try:
        report = sync_campaigns(cfg, names, wave=wave)
    except _lease_held() as exc:
        click.echo(str(exc), err=True)
        ctx.exit(LEASE_HELD_EXIT)
    click.echo(format_campaigns(report))
    if any(c.delivery.stopped_early for c in report.campaigns):
        ctx.exit(PARTIAL_EXIT)


def format_audiences(report: SyncReport) -> str:
    lines = []
    for a in report.audiences:
        state = f"FAILED, nothing changed: {a.error}" if a.error else f"now at sync {a.version}"
        lines.append(
            f"{a.audience} -> {a.destination}: {a.members:,} members, +{a.adds:,} / "
            f"-{a.removes:,}; {state}"
        )
    return "\n".join(lines)


def format_campaigns(report: CampaignsReport) -> str:
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


@jobs_group.command("dead-letters")
@click.option("--requeue", is_flag=True, help="Put them back in the outbox for the next run.")
@click.option("--destination", default=None, help="Only this destination's.")
@click.pass_context
def jobs_dead_letters(ctx: click.Context, requeue: bool, destination: str | None) -> None:
    """List the messages a destination refused or that ran out of attempts."""
    from activation.outbox import requeue_dead_letters
    from activation.state import dead_letters, open_engine, rows_of

    cfg = _config(ctx)
    engine = open_engine(cfg.state_store_url)
    where = [] if destination is None else [dead_letters.c.destination == destination]
    rows = rows_of(engine, dead_letters, *where)
    for row in rows:
        click.echo(
            f"{row['destination']}  {row['idempotency_key']}  after {row['attempts']} tries: "
            f"{row['last_error']}"
        )
    if requeue:
        click.echo(f"requeued {requeue_dead_letters(engine, destination)} message(s)")
    elif not rows:
        click.echo("no dead letters")


# -- reports ------------------------------------------------------------------------------------
@main.group("report")
def report_group() -> None:
    """HTML reports with plots."""


@report_group.command("funnel")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the HTML (default: <data_dir>/reports/funnel.html).",
)
@click.pass_context
def report_funnel(ctx: click.Context, out_path: Path | None) -> None:
    """Stage counts over time, conversion and drop-off by cohort and channel, time per stage."""
    from reports.funnel_report import write_funnel_report

    cfg = _config(ctx)
    click.echo(f"funnel report: {write_funnel_report(cfg, out_path)}")


@report_group.command("model")
@click.argument("kind")
@click.option(
    "--alias", default="champion", show_default=True, help="Registry alias or version number."
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the HTML (default: <data_dir>/reports/model-KIND.html).",
)
@click.pass_context
def report_model(ctx: click.Context, kind: str, alias: str, out_path: Path | None) -> None:
    """A model card: data, test metrics with intervals, decision rule, plots, reasons, drift.

    KIND is mql, churn, nbo or an imported table's name."""
    from reports.model_card import write_model_card

    cfg = _config(ctx)
    click.echo(f"model card: {write_model_card(cfg, kind, alias, out_path)}")


# -- serving ------------------------------------------------------------------------------------
@main.command("score")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Scores file, .parquet or .csv (default: <data_dir>/scores/mql.parquet).",
)
@click.option("--as-of", default=None, help="Moment to score at (default: the end of the data).")
@click.pass_context
def score_cmd(ctx: click.Context, out_path: Path | None, as_of: str | None) -> None:
    """Score every lead with the champion MQL model from the offline store, in one batch."""
    import pandas as pd

    from serving.batch import score_leads

    cfg = _config(ctx)
    if as_of is not None:
        try:
            pd.Timestamp(as_of)
        except ValueError:
            raise click.BadParameter(f"not a date or time: {as_of!r}", param_hint="--as-of") from None
    out = out_path or cfg.data_dir / "scores" / "mql.parquet"
    result = score_leads(cfg, as_of=as_of, out=out)
    scores = result.scores
    click.echo(
        f"scored {len(scores):,} leads with {scores['model_version'].iat[0] if len(scores) else '-'}"
        f": {int(scores['is_mql'].sum()):,} at or above the MQL threshold -> {out}"
    )


@main.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="HTTP port.")
@click.pass_context
def serve(ctx: click.Context, port: int | None) -> None:
    """Start the BentoML scoring service (blocks until stopped)."""
    from app.pipeline import serve_command
    from app.process import run_foreground

    cfg = _config(ctx)
    cmd, env = serve_command(cfg, ctx.obj["config_path"], ctx.obj["overrides"], port)
    click.echo(f"serving on http://{cfg.serving.host}:{port or cfg.serving.port}  (Ctrl-C stops)")
    code = run_foreground(cmd, env)
    if code:
        raise click.ClickException(f"the service stopped with exit code {code} (see its log above)")


# -- demo ---------------------------------------------------------------------------------------
@main.command("demo")
@click.option("--leads", type=click.IntRange(min=200), default=None, help="Leads to generate.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Optuna trials.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="HTTP port.")
@click.pass_context
def demo(ctx: click.Context, leads: int | None, trials: int | None, port: int | None) -> None:
    """Generate data, build features, train, materialize, serve, score a few leads, stop."""
    from app.demo import run_demo

    cfg = _config(ctx)
    run_demo(
        cfg, ctx.obj["config_path"], ctx.obj["overrides"], leads=leads, trials=trials, port=port
    )


if __name__ == "__main__":
    main()

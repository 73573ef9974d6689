"""The `funnel` command line: parse, load config, call a job, print.

A ``FunnelError`` (a problem the user can fix) is printed as one line; any other exception is a
bug in funnel and is printed with its traceback and exit code ``BUG_EXIT``.
"""

from __future__ import annotations

import errno
import traceback
from pathlib import Path

import click

from app.formatting import (
    format_audiences,
    format_campaigns,
    format_compare,
    format_import,
    format_nbo_result,
    format_promotion,
    format_train_result,
)
from core.config import Config, load_config
from core.errors import FunnelError
from core.quiet import quiet_libraries

# Each command imports the modules it runs inside its own body, on purpose: importing feast,
# mlflow and lightgbm takes about 10 s, and `funnel --help` must not wait for them.

# exit codes a scheduler can act on: 0 done, 1 a user error (the line says what to fix), 2 a bad
# command line (click's), 3 another run holds the lease, 4 some messages could not be sent this
# time (they stay in the outbox for the next run), 70 a bug in funnel (EX_SOFTWARE)
LEASE_HELD_EXIT = 3
PARTIAL_EXIT = 4
BUG_EXIT = 70
BUG_LINE = (
    "funnel: this is a bug in funnel, not in your data or config; please report it with the "
    "traceback above"
)
EXIT_CODES = """\b
Exit codes:
  0   done
  1   a problem you can fix: one line says what is wrong and what to do
  2   a bad command line (unknown option, bad value)
  3   another run of the job holds its lease
  4   some messages could not be sent this time; they stay in the outbox
  70  a bug in funnel: the traceback is printed; please report it with the traceback"""


class FunnelGroup(click.Group):
    """Prints a ``FunnelError`` as one line (exit 1) and any other exception as a bug: its
    traceback, then ``BUG_LINE`` (exit ``BUG_EXIT``)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FunnelError as exc:
            raise click.ClickException(str(exc)) from exc
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise  # usage errors and exits click reports itself
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader went away (`funnel ... | head`)
                raise
            _report_bug(ctx)
        except Exception:  # noqa: BLE001 - anything else is a bug in funnel: report it
            _report_bug(ctx)


def _report_bug(ctx: click.Context) -> None:
    click.echo(traceback.format_exc().rstrip(), err=True)
    click.echo(BUG_LINE, err=True)
    ctx.exit(BUG_EXIT)


@click.group(cls=FunnelGroup, epilog=EXIT_CODES)
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
    return load_config(ctx.obj["config_path"], ctx.obj["overrides"])


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
    from core.tracking import load_plan
    from synthetic.generate import generate

    cfg = _config(ctx)
    summary = generate(
        n_leads=leads or cfg.data.leads,
        seed=cfg.data.seed if seed is None else seed,
        start=cfg.data.start,
        weeks=weeks or cfg.data.weeks,
        out_dir=cfg.data_dir,
        plan=load_plan(cfg.data.tracking_plan),
        violations=cfg.data.violations,
    )
    tracking = summary.pop("tracking")
    for key, value in summary.items():
        click.echo(f"{key}: {value}")
    click.echo("tracking plan: " + ", ".join(f"{k} {v:,}" for k, v in tracking.items()))
    click.echo("  (details: `funnel data check`)")


@data.command("import")
@click.argument("mapping", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def data_import(ctx: click.Context, mapping: Path) -> None:
    """Import your own accounts/leads/events/... files through a YAML column mapping."""
    from core.mapping import import_tables
    from core.tracking import load_plan

    cfg = _config(ctx)
    plan = load_plan(cfg.data.tracking_plan)
    rows_by_table = import_tables(mapping, cfg.raw_dir, plan=plan, quarantine=cfg.quarantine_dir)
    for name, rows in rows_by_table.items():
        click.echo(f"{name}: {rows:,} rows")
    click.echo(f"written to {cfg.raw_dir}; next: `funnel features apply`")
    click.echo("events checked against the tracking plan: `funnel data check` shows what it found")


@data.command("check")
@click.option(
    "--examples",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows shown per violation type.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def data_check(ctx: click.Context, examples: int, as_json: bool) -> None:
    """What the tracking plan found in the event loads: counts per violation type and source,
    the quarantine's rows, examples with their reasons (also in <data_dir>/quarantine/)."""
    import json

    from core.tracking import format_tracking_report, tracking_report

    cfg = _config(ctx)
    report = tracking_report(cfg.quarantine_dir, examples=examples)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    click.echo(f"tracking plan: {cfg.data.tracking_plan}")
    click.echo(format_tracking_report(report, examples=examples > 0))


@data.command("replay")
@click.option("--source", default=None, help="Replay one source's rows only (default: all).")
@click.pass_context
def data_replay(ctx: click.Context, source: str | None) -> None:
    """Check the quarantined event rows again (after a fix of the tracking plan or the data)
    and load those that pass, exactly once; the others stay quarantined."""
    from core.tracking import load_plan, replay_quarantine

    cfg = _config(ctx)
    result = replay_quarantine(
        load_plan(cfg.data.tracking_plan), cfg.raw_dir, cfg.quarantine_dir, source=source
    )
    for name, counts in result.by_source.items():
        click.echo(
            f"{name}: {counts['checked']:,} checked, {counts['replayed']:,} loaded, "
            f"{counts['already_loaded']:,} already loaded, "
            f"{counts['still_quarantined']:,} still quarantined"
        )
    if result.events_path is not None:
        click.echo(f"events written to {result.events_path}; next: `funnel features apply`")


@data.command("sample-export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", default=8_000, show_default=True, type=click.IntRange(min=100))
@click.option("--seed", default=7, show_default=True, type=int)
def data_sample_export(path: Path, rows: int, seed: int) -> None:
    """Write a messy CRM lead export (a flat CSV with the traps real exports have: columns sales
    fill in after the outcome, day-first dates, blank labels, a trailing separator) to try
    `funnel import` on."""
    from synthetic.crm_export import write_lead_export

    write_lead_export(path, rows, seed)
    click.echo(
        f"wrote {rows:,} leads to {path}; next: funnel import {path} --label Converted "
        '--id "Prospect ID" --timestamp "Created On"'
    )


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
@click.option(
    "--keep",
    multiple=True,
    help="A column known before the outcome: the leakage guard never drops it.",
)
@click.option(
    "--label-rule",
    default=None,
    help="Make a numeric label binary: 1 where the rule holds, e.g. '> 0' for a count.",
)
@click.option(
    "--others-negative",
    is_flag=True,
    default=None,
    help="With --positive and more than two label values: every other value is a 0.",
)
@click.option(
    "--drop-missing-label",
    is_flag=True,
    default=None,
    help="Drop rows whose label is empty (default: refuse the file, naming them).",
)
@click.option(
    "--dayfirst/--monthfirst",
    default=None,
    help="How to read dates such as 01/02/2018 (default: from the data; ambiguous: refused).",
)
@click.pass_context
def import_cmd(ctx: click.Context, source: Path, **flags: object) -> None:
    """Import a flat table (CSV or parquet, one row per unit) as a Feast feature view + service.

    SOURCE is a dataset spec (YAML, see configs/datasets/) or the data file itself with --label.
    """
    from app.pipeline import import_flat
    from core.flat import spec_from_flags

    cfg = _config(ctx)
    report = import_flat(cfg, spec_from_flags(source, flags))
    click.echo(format_import(report))


# -- training -----------------------------------------------------------------------------------
trials_option = click.option(
    "--trials", type=click.IntRange(min=1), default=None, help="Optuna trials."
)


class TrainGroup(click.Group):
    """``funnel train mql|churn|nbo``, or ``funnel train <name>`` for an imported table."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command

        @click.command(cmd_name, help=f"Train the imported table '{cmd_name}'.")
        @trials_option
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


workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="Processes running the Optuna trials (default: optuna.workers); more than one needs "
    "optuna.storage and tracking.uri on PostgreSQL or a tracking server.",
)


def classifier_command(kind: str, model: str) -> click.Command:
    """``funnel train <kind>`` for a classifier (mql, churn): tune, train, register, print."""

    @train.command(kind, help=f"Tune and train the {model} model; register it in MLflow.")
    @trials_option
    @workers_option
    @click.pass_context
    def train_classifier_cmd(ctx: click.Context, trials: int | None, workers: int | None) -> None:
        from training.train import train_classifier

        cfg = _config(ctx)
        result = train_classifier(cfg, kind, n_trials=trials, workers=workers)
        click.echo(format_train_result(result))

    return train_classifier_cmd


train_mql_cmd = classifier_command("mql", "MQL")
train_churn_cmd = classifier_command("churn", "churn-risk")


@train.command("worker")
@click.argument("study")
@click.pass_context
def train_worker_cmd(ctx: click.Context, study: str) -> None:
    """Join the Optuna study STUDY of a `funnel train mql|churn` running elsewhere: run its
    trials until it holds its n_trials, each an MLflow child run of that training run.

    STUDY is the name the training run prints (<kind>-<run id>). The config must name the same
    optuna.storage (PostgreSQL) and tracking.uri (PostgreSQL or a tracking server) as the
    training run; the training rows come from its MLflow run, not from this machine."""
    from training.workers import join_study

    cfg = _config(ctx)
    done = join_study(cfg, study)
    click.echo(
        f"{done.study}: ran {done.ran} trial(s) here; the study holds {done.total} of its "
        f"{done.n_trials}"
    )


@train.command("nbo")
@click.pass_context
def train_nbo_cmd(ctx: click.Context) -> None:
    """Fit the next-best-offer uplift learners, keep the best, decide the policy; register it."""
    from training.nbo import train_nbo

    cfg = _config(ctx)
    click.echo(format_nbo_result(train_nbo(cfg)))


# -- comparing models ---------------------------------------------------------------------------


@main.command("compare")
@click.argument("kind")
@click.option("--a", "a", default="champion", show_default=True, help="Alias or version of a.")
@click.option("--b", "b", default="challenger", show_default=True, help="Alias or version of b.")
@click.option(
    "--promote",
    "crown",
    is_flag=True,
    help="Crown b champion when the champion rule (training.KIND.promotion_rule) says so.",
)
@click.pass_context
def compare_cmd(ctx: click.Context, kind: str, a: str, b: str, crown: bool) -> None:
    """Compare two versions of a model on the test rows it was evaluated on (paired bootstrap),
    each scored on the features it was trained on.

    KIND is mql, churn or an imported table's name."""
    from training.compare import compare_models

    cfg = _config(ctx)
    click.echo(format_compare(compare_models(cfg, kind, a=a, b=b, crown=crown)))


@main.command("promote")
@click.argument("name")
@click.argument("version")
@click.option(
    "--reason",
    default=None,
    help='Why, for the champion_history tag (default: "crowned by hand").',
)
@click.pass_context
def promote_cmd(ctx: click.Context, name: str, version: str, reason: str | None) -> None:
    """Crown VERSION of model NAME champion on purpose (recorded in champion_history).

    NAME is mql, churn, nbo or an imported table's name; VERSION a version number (or an alias
    such as challenger). This is how you confirm a model training withheld from champion: one
    that is not predictive, or one whose test AUC is too good to be true. The replaced champion
    becomes previous_champion; `funnel rollback NAME` gives the alias back."""
    from training.compare import CROWN_REASON, crown_version

    cfg = _config(ctx)
    crowned = crown_version(cfg, name, version, reason or CROWN_REASON)
    previous = (
        f"version {crowned.previous_champion} is previous_champion "
        f"(`funnel rollback {name}` restores it)"
        if crowned.previous_champion
        else "there was no champion before"
    )
    click.echo(
        f"{name}: version {crowned.version} of {crowned.model_name} crowned champion "
        f"({crowned.reason}); {previous}"
    )


@main.command("rollback")
@click.argument("kind")
@click.pass_context
def rollback_cmd(ctx: click.Context, kind: str) -> None:
    """Give the champion alias back to the previous champion (recorded in champion_history).

    KIND is mql, churn, nbo or an imported table's name."""
    from training.compare import rollback

    cfg = _config(ctx)
    old, new = rollback(cfg, kind)
    click.echo(
        f"{kind}: champion rolled back from version {old} to version {new} "
        f"(version {old} is now previous_champion)"
    )


# -- jobs ---------------------------------------------------------------------------------------
@main.group("jobs")
def jobs_group() -> None:
    """Send scores out: MQL leads to sales, audience and campaign sync (state in the state
    store)."""


def _lease_held() -> tuple[type[BaseException], ...]:
    from activation.state import LeaseHeldError, LeaseLostError

    return (LeaseHeldError, LeaseLostError)


@jobs_group.command("promote-leads")
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
def jobs_promote_leads(
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
@click.option(
    "--readouts",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Experiment readouts JSON whose measured lifts replace the fixes' guesses "
    "(default: <data_dir>/reports/experiments.json, if there).",
)
@click.pass_context
def report_funnel(ctx: click.Context, out_path: Path | None, readouts: Path | None) -> None:
    """Stage counts over time, conversion and drop-off by cohort and channel, time per stage,
    fix priorities, touchpoints and drop-off points; the numbers also as JSON beside it."""
    from reports.funnel_report import funnel_json_path, write_funnel_report

    cfg = _config(ctx)
    path = write_funnel_report(cfg, out_path, readouts_path=readouts)
    click.echo(f"funnel report: {path} (JSON: {funnel_json_path(path)})")


@report_group.command("fixes")
@click.option(
    "--by",
    "rank_by",
    type=click.Choice(["per_cost", "per_week"]),
    default="per_cost",
    show_default=True,
    help="Rank by revenue per unit of cost or per week to ship.",
)
@click.option(
    "--readouts",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Experiment readouts JSON (default: <data_dir>/reports/experiments.json, if there).",
)
@click.pass_context
def report_fixes(ctx: click.Context, rank_by: str, readouts: Path | None) -> None:
    """The value of one more point of conversion per step, and the fixes of
    reports.fixes_file ranked by the revenue they would add, with 95% intervals."""
    from reports.fixes import format_fixes, format_point_values
    from reports.funnel_report import funnel_analytics, stage_history

    cfg = _config(ctx)
    found = funnel_analytics(cfg, stage_history(cfg), readouts_path=readouts, rank_by=rank_by)
    click.echo(format_point_values(found.values.table, found.currency))
    by = "unit of cost" if rank_by == "per_cost" else "week to ship"
    click.echo(f"fixes ranked by revenue per {by} ({found.fixes_file}):")
    click.echo(format_fixes(found.ranked, found.currency))


@report_group.command("touchpoints")
@click.option("--per-step", default=5, show_default=True, help="Touchpoints shown per step.")
@click.pass_context
def report_touchpoints(ctx: click.Context, per_step: int) -> None:
    """Touchpoints associated with moving on per step (odds ratios, correlation) and where
    leads stall."""
    from reports.funnel_report import funnel_analytics, stage_history
    from reports.touchpoints import format_stalls, format_touchpoints

    cfg = _config(ctx)
    found = funnel_analytics(cfg, stage_history(cfg))
    click.echo(format_touchpoints(found.odds, per_step=per_step))
    click.echo(format_stalls(found.stalls, found.segments))


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


@report_group.command("experiments")
@click.option(
    "--table",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read out a flat A/B table (CSV/parquet) instead of the stores' experiments.",
)
@click.option("--arm", default=None, help="With --table: the column naming each row's arm.")
@click.option("--control", default=None, help="With --table: the control arm's value.")
@click.option("--outcome", "outcomes", multiple=True, help="With --table: an outcome column.")
@click.option("--covariate", default=None, help="With --table: a pre-period column for CUPED.")
@click.option(
    "--share",
    "shares",
    multiple=True,
    metavar="ARM=SHARE",
    help="With --table: the design's share of an arm, for the sample ratio check (default: equal).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the HTML, the JSON beside it (default: <data_dir>/reports/).",
)
@click.pass_context
def report_experiments(
    ctx: click.Context,
    table: Path | None,
    arm: str | None,
    control: str | None,
    outcomes: tuple[str, ...],
    covariate: str | None,
    shares: tuple[str, ...],
    out_path: Path | None,
) -> None:
    """Lift with intervals, sample ratio check, power and an always-valid readout for the offer
    arms, each campaign wave against its holdout and the promotion holdout, or a flat table."""
    from reports.experiments import format_readout, write_experiments_report, write_table_report

    cfg = _config(ctx)
    if table is None:
        if arm or control or outcomes or covariate or shares:
            raise click.UsageError(
                "--arm, --control, --outcome, --covariate and --share need --table"
            )
        import pandas as pd

        from activation.lead_promotion import promotion_decisions
        from activation.state import campaign_assignments, open_engine, rows_of

        engine = open_engine(cfg.state_store_url)
        written = write_experiments_report(
            cfg,
            campaigns=pd.DataFrame(rows_of(engine, campaign_assignments)),
            promotions=promotion_decisions(engine),
            out_path=out_path,
        )
    else:
        missing = [f"--{n}" for n, v in (("arm", arm), ("control", control)) if not v]
        if missing or not outcomes:
            raise click.UsageError(
                f"--table needs {', '.join([*missing, *([] if outcomes else ['--outcome'])])}"
            )
        split = {}
        for item in shares:
            name, _, value = item.rpartition("=")
            try:
                split[name] = float(value)
            except ValueError:
                raise click.BadParameter(
                    f"{item!r} is not ARM=SHARE", param_hint="--share"
                ) from None
        written = write_table_report(
            cfg, table, arm, control, outcomes, covariate=covariate, shares=split or None,
            out_path=out_path,
        )  # fmt: skip
    click.echo(f"experiments report: {written.html} (JSON: {written.json})")
    click.echo(format_readout(written.comparisons))


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
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default="local",
    show_default=True,
    help="Score in this process, or on Spark (mapInPandas; needs pyspark and Java).",
)
@click.option(
    "--spark-master",
    default="local[*]",
    show_default=True,
    help="Spark master URL with --engine spark (local[N], spark://host:7077, yarn, k8s://...).",
)
@click.option(
    "--partitions",
    type=click.IntRange(1),
    default=None,
    help="Spark partitions to score (default: Spark's default parallelism).",
)
@click.pass_context
def score_cmd(
    ctx: click.Context,
    out_path: Path | None,
    as_of: str | None,
    engine: str,
    spark_master: str,
    partitions: int | None,
) -> None:
    """Score every lead with the champion MQL model from the offline store, in one batch."""
    import pandas as pd

    from serving.batch import score_frame, score_leads

    cfg = _config(ctx)
    if as_of is not None:
        try:
            pd.Timestamp(as_of)
        except ValueError:
            raise click.BadParameter(
                f"not a date or time: {as_of!r}", param_hint="--as-of"
            ) from None
    if engine == "local" and partitions is not None:
        raise click.UsageError("--partitions needs --engine spark")
    out = out_path or cfg.data_dir / "scores" / "mql.parquet"
    if engine == "spark":
        from features.spark import spark_session
        from serving.spark_batch import spark_scorer

        spark = spark_session(spark_master)
        try:
            result = score_leads(cfg, as_of=as_of, out=out, scorer=spark_scorer(spark, partitions))
        finally:
            spark.stop()
    else:
        result = score_leads(cfg, as_of=as_of, out=out, scorer=score_frame)
    scores = result.scores
    where = f" on Spark ({spark_master})" if engine == "spark" else ""
    click.echo(
        f"scored {len(scores):,} leads with {scores['model_version'].iat[0] if len(scores) else '-'}"
        f"{where}: {int(scores['is_mql'].sum()):,} at or above the MQL threshold "
        f"{result.threshold:.4f} -> {out}"
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


@main.command("ui")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="HTTP port (ui.port).")
@click.option("--host", default=None, help="Address to listen on (ui.host).")
@click.pass_context
def ui(ctx: click.Context, port: int | None, host: str | None) -> None:
    """Start the web console for marketing and sales (blocks until stopped). Users come from
    FUNNEL_UI_ADMIN and FUNNEL_UI_VIEWERS (user:password,...)."""
    from console.app import create_app, run_console

    cfg = _config(ctx)
    app = create_app(cfg)  # refuses to start without users, with the variables to set
    host, port = host or cfg.ui.host, port or cfg.ui.port
    click.echo(f"console on http://{host}:{port}/  (Ctrl-C stops)")
    run_console(app, host, port)


# -- demo ---------------------------------------------------------------------------------------
@main.command("demo")
@click.option("--leads", type=click.IntRange(min=200), default=None, help="Leads to generate.")
@trials_option
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

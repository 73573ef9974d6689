"""The Optuna study of a training run and the processes that run its trials.

Each training run owns one study, named ``<kind>-<MLflow run id>``, in the Optuna storage. Its
trials run in the training process (one worker), in worker processes the training run starts
(``funnel train mql --workers N``), or in ``funnel train worker STUDY`` on other machines. Every
worker opens the same study, reads the same training matrices (written once by the training run,
and logged to its MLflow run for the machines that share no disk with it) and logs each trial as
an MLflow child run of the training run, until the study holds ``n_trials`` trials.

Several workers need stores they can all reach and write at once: the study on PostgreSQL and
the runs on PostgreSQL or an MLflow tracking server. SQLite is refused for them (a file on one
machine, with one writer at a time); the local profile tunes in one process.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import PROJECT_ROOT, Config
from core.errors import InputError
from core.pg import ensure_schema
from core.quiet import quiet_libraries
from training.registry import configure_tracking
from training.tuning import TrainData, objective

if TYPE_CHECKING:
    import lightgbm as lgb
    import optuna

JOB_ATTR = "funnel_tuning_job"  # the study's user attribute holding its TuningJob
DATA_FILE = "tuning-data.npz"
DATA_DIR = "tuning"  # the matrices' artifact folder in the training run
HEARTBEAT_S, GRACE_S = 10, 60  # a worker silent for GRACE_S: its running trial is failed
POLL_S = 1.0


@dataclass(frozen=True)
class TuningJob:
    """What every worker of one study shares: the training run its trials log under, the
    number of trials, the sampler's seed and the fits' settings."""

    parent_run_id: str
    experiment_id: str
    n_trials: int
    seed: int
    n_startup_trials: int
    num_boost_round: int
    early_stopping_rounds: int
    fixed: dict[str, Any] = field(default_factory=dict)  # LightGBM parameters never tuned
    timeout_s: float | None = None  # per worker
    data_artifact: str | None = None  # the matrices in the training run, for other machines

    @classmethod
    def of(cls, study: optuna.Study) -> TuningJob:
        """The job recorded in a study by the training run that opened it."""
        fields = study.user_attrs.get(JOB_ATTR)
        if not fields:
            raise InputError(
                f"study {study.study_name!r} records no tuning job: join a study that "
                "`funnel train` opened (its name is printed while it tunes)"
            )
        return cls(**fields)


# -- stores -------------------------------------------------------------------------------------
def shown(url: str) -> str:
    """A store's URL for a message: no query string, no password."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url.split("?")[0])


def is_shared(url: str) -> bool:
    """True for a store that processes on several machines can reach and write at once: a
    database server or an MLflow tracking server (not SQLite, not a local file store)."""
    return url.startswith(("postgresql", "mysql", "http://", "https://"))


def check_shared_stores(workers: int, storage: str, tracking_uri: str) -> None:
    """More than one worker: refuse an Optuna storage or tracking store on SQLite, naming the
    key to set."""
    if workers <= 1:
        return
    for key, url, other in (
        ("optuna.storage", storage, "a PostgreSQL URL"),
        ("tracking.uri", tracking_uri, "a PostgreSQL URL or an MLflow tracking server"),
    ):
        if not is_shared(url):
            raise InputError(
                f"{key} is {shown(url)}: {workers} tuning workers need a store they "
                f"can all write at once; set {key} to {other} (configs/production.yaml), or "
                "tune in one process (--workers 1)"
            )


def open_study(name: str, storage: str, seed: int | None, n_startup_trials: int) -> optuna.Study:
    """The study ``name`` maximizing validation ROC AUC in ``storage``, created or joined (its
    SQLite folder or PostgreSQL schema created if needed): a seeded TPE sampler, median pruning.
    On a shared storage the workers send heartbeats, so the trial of a worker that died is
    failed after a grace period instead of running forever."""
    import optuna

    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    ensure_schema(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend: str | optuna.storages.BaseStorage = storage
    if is_shared(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            backend = optuna.storages.RDBStorage(
                storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
    return optuna.create_study(
        study_name=name,
        storage=backend,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=30),
        load_if_exists=True,
    )


# -- the training matrices ----------------------------------------------------------------------
def save_tuning_data(data: TrainData, path: Path) -> Path:
    """The matrices every trial fits on, in one ``.npz`` file (compressed: feature tables
    of counts shrink several times, and the file may travel to a tracking server)."""
    np.savez_compressed(
        path,
        x_train=data.x_train, y_train=data.y_train, x_valid=data.x_valid, y_valid=data.y_valid,
        feature_names=np.asarray(data.feature_names, dtype=str),
        categorical=np.asarray(data.categorical, dtype=str),
    )  # fmt: skip
    return path


def load_tuning_data(path: Path | str) -> TrainData:
    with np.load(path, allow_pickle=False) as f:
        return TrainData(
            f["x_train"], f["y_train"], f["x_valid"], f["y_valid"],
            f["feature_names"].tolist(), f["categorical"].tolist(),
        )  # fmt: skip


# -- trials -------------------------------------------------------------------------------------
def logged_trial(
    trial: Any,
    run: Callable[[], float],
    parent_run_id: str | None = None,
    experiment_id: str | None = None,
) -> float:
    """Run one Optuna trial inside its own MLflow child run: of ``parent_run_id`` in
    ``experiment_id`` (from any process), else of the active run."""
    import mlflow
    import optuna

    with mlflow.start_run(
        run_name=f"trial-{trial.number}", nested=True, parent_run_id=parent_run_id,
        experiment_id=experiment_id,
    ):  # fmt: skip
        mlflow.set_tag("optuna_trial", trial.number)
        try:
            value = run()
        except optuna.TrialPruned:
            mlflow.log_params(trial.params)
            mlflow.set_tag("state", "PRUNED")
            raise
        mlflow.log_params(trial.params)
        mlflow.log_metrics(
            {
                "val_roc_auc": value,
                **{k: float(v) for k, v in trial.user_attrs.items() if isinstance(v, (int, float))},
            }
        )
        mlflow.set_tag("state", "COMPLETE")
        return value


def trials_in(study: optuna.Study) -> int:
    """Trials the study holds in any state (running ones included)."""
    return len(study.get_trials(deepcopy=False))


def run_trials(
    study: optuna.Study,
    datasets: tuple[lgb.Dataset, lgb.Dataset],
    job: TuningJob,
    n_trials: int | None = None,
    progress: bool = False,
) -> int:
    """Run trials of ``study`` in this process, each an MLflow child run of the job's training
    run, until this process ran ``n_trials`` (None: no limit of its own) or the study holds the
    job's ``n_trials``. Each trial records its worker (``host:pid``). The trials run here."""
    import optuna

    if trials_in(study) >= job.n_trials:
        return 0
    rounds, patience, worker = job.num_boost_round, job.early_stopping_rounds, worker_name()
    ran = 0

    def one(trial: optuna.Trial) -> float:
        nonlocal ran
        ran += 1
        trial.set_user_attr("worker", worker)
        return logged_trial(
            trial,
            lambda: objective(trial, datasets, rounds, patience, job.fixed),
            job.parent_run_id,
            job.experiment_id,
        )

    study.optimize(
        one,
        n_trials=n_trials,
        timeout=job.timeout_s,
        # the study's own count: workers on other machines take their share of it
        callbacks=[optuna.study.MaxTrialsCallback(job.n_trials, states=None)],
        # no bar in a log file, nor without a count of this worker's own to show
        show_progress_bar=progress and n_trials is not None and sys.stderr.isatty(),
    )
    return ran


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def trial_shares(n_trials: int, workers: int) -> list[int]:
    """``n_trials`` split as evenly as can be over at most ``workers`` workers."""
    if n_trials < 1 or workers < 1:
        raise ValueError(f"n_trials and workers must be at least 1, got {n_trials}, {workers}")
    base, extra = divmod(n_trials, workers)
    return [base + (i < extra) for i in range(min(workers, n_trials))]


def worker_main(spec: str) -> None:
    """One local worker process (``spec``: the JSON ``run_in_workers`` writes): worker
    ``index`` runs up to ``n_trials`` trials of the study, its sampler seeded ``seed + index``
    (workers never draw the same start-up trials)."""
    import mlflow

    given = json.loads(spec)
    quiet_libraries()
    mlflow.set_tracking_uri(given["tracking_uri"])
    job = TuningJob(**given["job"])
    seed = job.seed + given["index"]
    study = open_study(given["study"], given["storage"], seed, job.n_startup_trials)
    run_trials(study, load_tuning_data(given["data"]).datasets(), job, given["n_trials"])


# A worker is a fresh interpreter running worker_main (not a multiprocessing child, which
# would run the calling script's main module again, unguarded in a notebook or a script); its
# spec comes on stdin, so no database URL shows in the process list.
WORKER_CODE = "import sys; from training.workers import worker_main; worker_main(sys.stdin.read())"


def run_in_workers(
    study_name: str, storage: str, data_path: Path, job: TuningJob, workers: int
) -> None:
    """Run the job's trials in ``workers`` new processes, each with its share; a worker that
    fails fails the tuning (its error is printed on this process's stderr)."""
    import mlflow

    base = {
        "study": study_name,
        "storage": storage,
        "tracking_uri": mlflow.get_tracking_uri(),
        "data": str(data_path),
        "job": asdict(job),
    }
    processes = []
    for index, share in enumerate(trial_shares(job.n_trials, workers)):
        # cwd: the packages import whether the project is installed or not
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER_CODE], stdin=subprocess.PIPE, cwd=PROJECT_ROOT
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps({**base, "index": index, "n_trials": share}).encode())
        process.stdin.close()
        processes.append(process)
    try:
        codes = [process.wait() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait()
    failed = [f"worker {i} (exit code {code})" for i, code in enumerate(codes) if code != 0]
    if failed:
        raise RuntimeError(f"tuning {', '.join(failed)} failed; see the errors above")


def wait_for_trials(study: optuna.Study, storage: str, poll_s: float = POLL_S) -> None:
    """Wait until no trial of the study runs (the last trials of workers on other machines).
    On a shared storage the workers send heartbeats and the trial of a worker that died is
    failed after the grace period, so this ends; on SQLite (one process) nothing else runs."""
    import optuna

    if not is_shared(storage):
        return
    running = (optuna.trial.TrialState.RUNNING,)
    while study.get_trials(deepcopy=False, states=running):
        optuna.storages.fail_stale_trials(study)
        time.sleep(poll_s)


def share_job(
    study: optuna.Study, storage: str, data: TrainData, job: TuningJob, path: Path, workers: int
) -> TuningJob:
    """Record the job in the study for its workers. The matrices go to ``path`` for local
    worker processes and, on a shared storage, to the training run's artifacts (``tuning/``)
    for workers on other machines, which then may join. The job as recorded."""
    import mlflow

    if is_shared(storage) or workers > 1:
        save_tuning_data(data, path)
    if is_shared(storage):
        mlflow.MlflowClient().log_artifact(job.parent_run_id, str(path), DATA_DIR)
        job = TuningJob(**{**asdict(job), "data_artifact": f"{DATA_DIR}/{path.name}"})
    study.set_user_attr(JOB_ATTR, asdict(job))
    return job


def tune_study(
    study: optuna.Study,
    storage: str,
    data: TrainData,
    datasets: tuple[lgb.Dataset, lgb.Dataset],
    job: TuningJob,
    workers: int = 1,
    progress: bool = False,
) -> optuna.trial.FrozenTrial:
    """Share the job, run its trials here (one worker) or in ``workers`` processes, wait for
    the trials of workers that joined from other machines, and return the best trial."""
    with tempfile.TemporaryDirectory(prefix="funnel-tuning-") as tmp:
        path = Path(tmp) / DATA_FILE
        job = share_job(study, storage, data, job, path, workers)
        if workers <= 1:
            run_trials(study, datasets, job, job.n_trials, progress)
        else:
            run_in_workers(study.study_name, storage, path, job, workers)
    wait_for_trials(study, storage)
    return study.best_trial


# -- joining from another machine ---------------------------------------------------------------
@dataclass(frozen=True)
class JoinResult:
    study: str
    ran: int  # trials run by this worker
    total: int  # trials the study holds now
    n_trials: int  # the study's target


def join_study(cfg: Config, study_name: str) -> JoinResult:
    """Join the study of a training run from this machine (``funnel train worker``): run its
    trials until it holds its ``n_trials``, each an MLflow child run of that training run. The
    config must name the same Optuna storage and tracking store as the training run."""
    import optuna
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    check_shared_stores(2, cfg.optuna_storage, cfg.tracking_uri)
    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ensure_schema(cfg.optuna_storage)
    if study_name not in optuna.get_all_study_names(cfg.optuna_storage):
        raise InputError(
            f"no study {study_name!r} in optuna.storage {shown(cfg.optuna_storage)}: "
            "use the name `funnel train` prints while it tunes (<kind>-<run id>)"
        )
    job = TuningJob.of(optuna.load_study(study_name=study_name, storage=cfg.optuna_storage))
    if job.data_artifact is None:
        raise InputError(
            f"study {study_name!r} was tuned on a storage other machines cannot share; "
            "nothing to join"
        )
    configure_tracking(cfg)
    with tempfile.TemporaryDirectory(prefix="funnel-worker-") as tmp:
        try:
            local = download_artifacts(
                run_id=job.parent_run_id, artifact_path=job.data_artifact, dst_path=tmp
            )
        except MlflowException as exc:
            raise InputError(
                f"the training run {job.parent_run_id} of study {study_name!r} or its tuning "
                f"data is not in tracking.uri {shown(cfg.tracking_uri)}: point "
                "tracking.uri at the tracking store the training run uses"
            ) from exc
        data = load_tuning_data(local)
    study = open_study(study_name, cfg.optuna_storage, None, job.n_startup_trials)
    ran = run_trials(study, data.datasets(), job)
    return JoinResult(study_name, ran, trials_in(study), job.n_trials)

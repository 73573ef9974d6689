"""Tuning with several workers: one Optuna study on PostgreSQL, its trials run by two worker
processes or by a worker that joins from another machine, every trial an MLflow child run of
the one training run, and the study holding exactly its n_trials.

The tests on PostgreSQL (127.0.0.1:5432, database test) use fresh schemas, dropped at the end;
they skip with the reason when it is down, and fail in CI.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core.errors import InputError
from training.tuning import TrainData
from training.workers import (
    JOB_ATTR,
    TuningJob,
    check_shared_stores,
    load_tuning_data,
    open_study,
    save_tuning_data,
    share_job,
    shown,
    trial_shares,
    tune_study,
    worker_name,
)

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def toy_data(rows: int = 800, seed: int = 0) -> TrainData:
    """A small learnable problem: the label leans on two of six features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1])))).astype(int)
    cut = rows * 3 // 4
    names = [f"f{i}" for i in range(6)]
    return TrainData(x[:cut], y[:cut], x[cut:], y[cut:], names, [])


def toy_job(parent_run_id: str, experiment_id: str, n_trials: int) -> TuningJob:
    return TuningJob(
        parent_run_id, experiment_id, n_trials, seed=3, n_startup_trials=2, num_boost_round=40,
        early_stopping_rounds=10, fixed={"num_threads": 1},
    )  # fmt: skip


# -- without services ---------------------------------------------------------------------------
def test_trials_are_shared_out_evenly():
    assert trial_shares(7, 2) == [4, 3]
    assert trial_shares(6, 3) == [2, 2, 2]
    assert trial_shares(2, 5) == [1, 1]  # never a worker with nothing to do
    with pytest.raises(ValueError, match="at least 1"):
        trial_shares(0, 2)


def test_several_workers_refuse_sqlite_naming_the_key():
    sqlite = "sqlite:////tmp/x/optuna.db"
    check_shared_stores(1, sqlite, sqlite)  # one process: the local profile
    with pytest.raises(InputError, match=r"optuna\.storage is sqlite:.*PostgreSQL"):
        check_shared_stores(2, sqlite, PG)
    with pytest.raises(InputError, match=r"tracking\.uri is sqlite:.*tracking server"):
        check_shared_stores(2, PG, sqlite)
    check_shared_stores(2, PG, "http://mlflow.internal:5000")


def test_messages_never_show_a_password():
    url = "postgresql+psycopg://funnel:s3cret@db:5432/test?options=-csearch_path%3Dx"
    assert shown(url) == "postgresql+psycopg://funnel:***@db:5432/test"
    assert shown("http://mlflow:5000") == "http://mlflow:5000"


def test_train_workers_option_refuses_the_local_profile(tmp_path):
    """`funnel train mql --workers 2` on the embedded default fails in a second, before any
    data is read, with one line naming the key to set."""
    from app.cli import main

    result = CliRunner().invoke(
        main,
        ["--set", f"paths.data_dir={tmp_path / 'data'}", "--set",
         f"paths.mlruns_dir={tmp_path / 'mlruns'}", "train", "mql", "--workers", "2"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "optuna.storage is sqlite:" in result.output
    assert "--workers 1" in result.output
    assert not (tmp_path / "mlruns").exists()  # nothing written


def test_tuning_data_round_trips(tmp_path):
    data = toy_data(rows=40)
    data.categorical = ["f2"]
    back = load_tuning_data(save_tuning_data(data, tmp_path / "d.npz"))
    np.testing.assert_array_equal(back.x_train, data.x_train)
    np.testing.assert_array_equal(back.y_valid, data.y_valid)
    assert back.feature_names == data.feature_names
    assert back.categorical == ["f2"]


# -- on PostgreSQL ------------------------------------------------------------------------------
@pytest.fixture
def pg(production_services):
    """``pg(name)``: the URL of a fresh schema on the shared server; MLflow pointed back at
    where it was and the schemas dropped afterwards."""
    import mlflow
    import sqlalchemy

    made, tracking = [], mlflow.get_tracking_uri()

    def url(name: str) -> str:
        schema = f"funnel_test_{name}_{uuid.uuid4().hex[:8]}"
        made.append(schema)
        return f"{PG}?options=-csearch_path%3D{schema}"

    yield url
    mlflow.set_tracking_uri(tracking)
    engine = sqlalchemy.create_engine(PG)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("SET lock_timeout = '5s'"))
        for schema in made:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def parent_run(tracking: str, artifacts: Path) -> tuple[str, str]:
    """A training run to tune under: (run id, experiment id)."""
    import mlflow

    from core.pg import ensure_schema

    ensure_schema(tracking)
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("tuning", artifact_location=artifacts.as_uri())
    return mlflow.MlflowClient().create_run(experiment).info.run_id, experiment


def child_trials(experiment: str, parent: str) -> list[int]:
    """The trial numbers of the MLflow child runs of ``parent``."""
    import mlflow

    children = mlflow.search_runs(
        experiment_ids=[experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    return sorted(children["tags.optuna_trial"].astype(int))


def test_two_worker_processes_run_one_study(pg, tmp_path):
    """Two spawned workers share the six trials: the study holds exactly six, numbered 0-5,
    run by two processes other than this one, each trial one child run of the training run."""
    storage, tracking = pg("optuna"), pg("mlflow")
    parent, experiment = parent_run(tracking, tmp_path / "artifacts")
    data = toy_data()
    study = open_study(f"mql-{parent}", storage, 3, 2)
    job = toy_job(parent, experiment, n_trials=6)

    best = tune_study(study, storage, data, data.datasets(), job, workers=2)

    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state.is_finished() for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and worker_name() not in workers
    complete = [t.value for t in trials if t.state.name == "COMPLETE"]
    assert best.value == max(complete) > 0.6  # the toy problem is learnable
    assert child_trials(experiment, parent) == list(range(6))
    # what a worker on another machine would read: the job and the matrices in the run
    recorded = study.user_attrs[JOB_ATTR]
    assert recorded["parent_run_id"] == parent
    assert recorded["data_artifact"] == "tuning/tuning-data.npz"


def test_a_worker_joins_from_another_machine(pg, tmp_path):
    """`funnel train worker STUDY`, given only the study's name and a config naming the same
    stores, runs the trials a training run left: the matrices come from the MLflow run."""
    from app.cli import main

    storage, tracking = pg("optuna"), pg("mlflow")
    parent, experiment = parent_run(tracking, tmp_path / "artifacts")
    study = open_study(f"mql-{parent}", storage, 3, 2)
    share_job(study, storage, toy_data(), toy_job(parent, experiment, 4), tmp_path / "d.npz", 1)
    args = [
        "--config", str(ROOT / "configs" / "production.yaml"),
        "--set", f"paths.data_dir={tmp_path / 'elsewhere'}",
        "--set", f"optuna.storage={storage}", "--set", f"tracking.uri={tracking}",
        "train", "worker",
    ]  # fmt: skip

    joined = CliRunner().invoke(main, [*args, study.study_name])
    assert joined.exit_code == 0, joined.output
    assert "ran 4 trial(s) here; the study holds 4 of its 4" in joined.output
    assert child_trials(experiment, parent) == [0, 1, 2, 3]

    again = CliRunner().invoke(main, [*args, study.study_name])  # the study is full
    assert "ran 0 trial(s) here" in again.output
    assert len(study.get_trials()) == 4

    unknown = CliRunner().invoke(main, [*args, "mql-nosuchrun"])
    assert unknown.exit_code == 1
    assert "no study 'mql-nosuchrun'" in unknown.output

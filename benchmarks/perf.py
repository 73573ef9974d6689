"""Performance and reliability against peers measured in the same run.

    uv run python benchmarks/perf.py                      # everything (about 40 minutes)
    uv run python benchmarks/perf.py --only online,batch  # some sections
    uv run python benchmarks/perf.py --reuse              # keep the base pipeline of a run before
    uv run python benchmarks/perf.py --tiny               # does it all run? (small, minutes)

Sections (each a ratio against a peer run here, on the same rows or the same model):

- ``quality``: the generator at full size (configs/local.yaml: 10,000 leads, 39 weeks), the
  champions' test metrics against the oracle's on the same rows;
- ``online``: every route of ours (``/v1/leads/score``, ``/v1/accounts/churn_risk``,
  ``/v1/next_best_offer``, ``/v1/leads/score_batch`` per lead; features read from the online
  store, reasons included) on SQLite and on Redis, ``/v1/leads/score`` with the reasons
  cache off and with 2 worker processes (beside the lightgbm-flavor peer with 2), against
  peers measured in the same run, each run as its users would run it best here (LightGBM on
  one thread, ``--workers`` worker processes like ours): ``mlflow models serve`` of the champion booster in MLflow's lightgbm flavor (the reference of every ratio),
  ``mlflow models serve`` of the project's pyfunc, and the floor of the stack
  (``benchmarks/floor_service.py``: a bare BentoML service around the booster, features in the
  payload; native API, the same through a mounted FastAPI app, and with ``pred_contrib``'s top
  three). Every row also as a share of the floor;
- ``build``: the training-set build (Feast point-in-time join, DuckDB offline store) of 1M label
  rows against Feast's default file offline store on the same rows; rows dropped, peak memory;
- ``batch``: ``funnel score`` of 1M leads end to end (join, matrix, predict, write) against bare
  ``Booster.predict`` on the same matrix;
- ``tuning``: 50 Optuna trials on 200k rows with each trial an MLflow child run, against the
  same study (same seed, same storage) without MLflow;
- ``reliability``: 60 s at half the measured capacity; the Redis online store stopped and
  started again under load (a private redis-server, never the machine's own).

Load comes from ``benchmarks/loadgen.py`` in its own process. Times are medians over
repetitions, with the spread (min-max) beside them. Writes benchmarks/results/perf.{json,md}
and the tables into the docs' benchmarks page (docs/reference/benchmarks.md) between its
``perf:begin``/``perf:end`` markers, the online table into the README between
``perf-online:begin``/``perf-online:end``; ``--render`` rewrites only the tables, from
perf.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
FUNNEL = [sys.executable, "-m", "app.cli"]
API_KEY = "bench-key"
SECTIONS = ("quality", "online", "build", "batch", "tuning", "reliability")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # LightGBM's OpenMP threads in every peer
BATCH_LEADS = 20  # leads per /v1/leads/score_batch request
TARGETS = {
    # per lead (or account), against `mlflow models serve` of the booster in MLflow's lightgbm
    # flavor on one thread, features in its payload; ours read them from the online store
    "online_throughput_ratio": 0.8,
    "online_throughput_ratio_aim": 1.0,
    "online_p99_ms": 5.0,  # sequential, one lead per request
    "online_p99_ms_aim": 3.0,
    "build_speedup": 5.0,
    "batch_ratio": 3.0,
    "tuning_overhead": 0.10,
    "auc_gap": 0.01,
    "qini_ratio": 0.90,
}


# -- helpers ------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "n": len(values),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host() -> dict[str, Any]:
    """The machine a benchmark ran on: CPU model, cores, memory, Python."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
    }


def machine() -> dict[str, Any]:
    import bentoml
    import feast
    import lightgbm
    import mlflow
    import optuna

    return {
        **host(),
        "feast": feast.__version__,
        "mlflow": mlflow.__version__,
        "bentoml": bentoml.__version__,
        "lightgbm": lightgbm.__version__,
        "optuna": optuna.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


DEFAULT_WORK = ROOT / "benchmarks" / ".work"
# --tiny: a pipeline small enough to check in minutes that every section runs
TINY = ("data.leads=1000", "optuna.n_trials=2")


class Bench:
    """The base pipeline's paths and config under one work directory; ``size`` overrides
    (``TINY``) apply to every step."""

    def __init__(self, work: Path, size: tuple[str, ...] = ()) -> None:
        self.work = work
        self.data = work / "data"
        self.mlruns = work / "mlruns"
        self.size = size

    def overrides(self, *extra: str) -> list[str]:
        paths = [f"paths.data_dir={self.data}", f"paths.mlruns_dir={self.mlruns}"]
        return [*paths, *self.size, *extra]

    def config(self, *extra: str):
        from core.config import DEFAULT_CONFIG, load_config

        return load_config(DEFAULT_CONFIG, self.overrides(*extra))

    def cli(self, *args: str, extra: tuple[str, ...] = ()) -> str:
        cmd = [*FUNNEL]
        for o in self.overrides(*extra):
            cmd += ["--set", o]
        started = time.perf_counter()
        out = subprocess.run([*cmd, *args], capture_output=True, text=True, env=_env(), check=False)
        if out.returncode:
            raise RuntimeError(f"funnel {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        log(f"funnel {' '.join(args)}: {time.perf_counter() - started:.0f}s")
        return out.stdout


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def run_child(section: str, *args: str, allow_kill: bool = False) -> dict[str, Any]:
    """Run ``perf.py --child SECTION ARGS`` in a fresh interpreter: its own peak memory. With
    ``allow_kill``, a child the kernel killed (out of memory) is a result, not an error."""
    cmd = [sys.executable, __file__, "--child", section, *args]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    if allow_kill and out.returncode == -signal.SIGKILL:
        return {"killed": True, "seconds_before_kill": time.perf_counter() - started}
    if out.returncode:
        raise RuntimeError(f"{section} child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# -- base pipeline ------------------------------------------------------------------------------
def base_pipeline(bench: Bench, reuse: bool) -> dict[str, str]:
    done = bench.work / "base.json"
    if reuse and done.is_file():
        log("base pipeline: reused")
        return json.loads(done.read_text())
    shutil.rmtree(bench.work, ignore_errors=True)
    bench.work.mkdir(parents=True)
    outputs = {}
    for step in (
        ("data", "generate"),
        ("features", "apply"),
        ("train", "mql"),
        ("train", "churn"),
        ("train", "nbo"),
        ("features", "materialize"),
    ):
        outputs[" ".join(step)] = bench.cli(*step)
    done.write_text(json.dumps(outputs))
    return outputs


def crown_untried(bench: Bench) -> None:
    """--tiny only: a model the small pipeline did not make champion (too few rows to beat
    chance) is crowned anyway, its latest version, so that every route can be served."""
    from mlflow import MlflowClient

    from training.registry import configure_tracking

    cfg = bench.config()
    configure_tracking(cfg)
    client = MlflowClient()
    names = [cfg.training.mql.registered_model, cfg.training.churn.registered_model,
             cfg.training.nbo.registered_model]  # fmt: skip
    for name in names:
        if "champion" not in client.get_registered_model(name).aliases:
            latest = max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
            client.set_registered_model_alias(name, "champion", str(latest))
            log(f"tiny: {name} version {latest} crowned to be served")


# -- quality ------------------------------------------------------------------------------------
def champion_metrics(bench: Bench, kind: str) -> dict[str, float]:
    from mlflow import MlflowClient

    from training.registry import configure_tracking

    cfg = bench.config()
    configure_tracking(cfg)
    name = (
        cfg.training.nbo.registered_model
        if kind == "nbo"
        else getattr(cfg.training, kind).registered_model
    )
    client = MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    return dict(client.get_run(version.run_id).data.metrics)


def quality(bench: Bench) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("mql", "churn"):
        m = champion_metrics(bench, kind)
        out[kind] = {
            "test_roc_auc": m.get("test_roc_auc"),
            "oracle_roc_auc": m.get("test_oracle_roc_auc"),
            "gap": m.get("test_roc_auc_gap_to_oracle"),  # oracle - model, paired, same rows
            "gap_ci": [
                m.get("test_roc_auc_gap_to_oracle_ci_low"),
                m.get("test_roc_auc_gap_to_oracle_ci_high"),
            ],
        }
    m = champion_metrics(bench, "nbo")
    out["nbo"] = {
        "qini_vs_oracle": m.get("test_mean_qini_vs_oracle"),  # on the outcomes drawn
        "expected_qini_vs_oracle": m.get("test_mean_expected_qini_vs_oracle"),  # draws integrated
        **{
            k: v for k, v in m.items() if k.endswith("qini_vs_oracle") or k.startswith("true_value")
        },
    }
    return out


# -- servers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Running:
    log: Path  # the server's output
    pid: int  # its process (its workers are its descendants)


@contextmanager
def server(
    cmd: list[str], ready_url: str, env: dict[str, str], log_path: Path
) -> Iterator[Running]:
    with open(log_path, "w") as sink:
        proc = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited ({proc.returncode}); see {log_path}")
                try:
                    with urllib.request.urlopen(ready_url, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready in 180 s; see {log_path}")
                time.sleep(0.5)
            yield Running(log_path, proc.pid)
        finally:
            with suppress(ProcessLookupError):  # the group may be gone already
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # the launcher may exit before the server it started (mlflow execs uvicorn in a
            # shell): the next server must not find this one still answering on the port
            port = urllib.parse.urlsplit(ready_url).port
            if port is not None and not port_free(port, timeout_s=30):
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if not port_free(port, timeout_s=10):
                    raise RuntimeError(f"port {port} still answers after its server was stopped")


def port_free(port: int, timeout_s: float) -> bool:
    """Whether nothing accepts connections on 127.0.0.1:``port`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def funnel_server(bench: Bench, port: int, extra: tuple[str, ...] = ()):
    cmd = [*FUNNEL]
    for o in bench.overrides(*extra):
        cmd += ["--set", o]
    cmd += ["serve", "--port", str(port)]
    env = _env(FUNNEL_API_KEY=API_KEY)
    return server(cmd, f"http://127.0.0.1:{port}/readyz", env, bench.work / f"serve-{port}.log")


def mlflow_server(bench: Bench, port: int, model_uri: str, name: str, workers: int):
    """``mlflow models serve`` of ``model_uri`` as its users would run it best here: LightGBM
    on one OpenMP thread (left at its default, it spin-waits on a 2-core box shared with the
    load generator and runs several times slower)."""
    cfg = bench.config()
    cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--workers",
        str(workers),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    env = _env(MLFLOW_TRACKING_URI=cfg.tracking_uri, **ONE_THREAD)
    return server(cmd, f"http://127.0.0.1:{port}/ping", env, bench.work / f"{name}-{port}.log")


def floor_server(bench: Bench, port: int, booster: Path, workers: int):
    """``benchmarks/floor_service.py``: a bare BentoML service around the booster."""
    cmd = [
        str(BIN / "bentoml"),
        "serve",
        "benchmarks.floor_service:Floor",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--working-dir",
        str(ROOT),
    ]
    env = _env(FLOOR_BOOSTER=str(booster), FLOOR_WORKERS=str(workers), **ONE_THREAD)
    return server(cmd, f"http://127.0.0.1:{port}/readyz", env, bench.work / f"floor-{port}.log")


def wait_for_line(path: Path, text: str, count: int, timeout_s: float = 3600.0) -> float:
    """Seconds until ``text`` appears ``count`` times in the log at ``path``."""
    started = time.monotonic()
    while path.read_text(errors="replace").count(text) < count:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"'{text}' not seen {count} times in {path} in {timeout_s:.0f} s")
        time.sleep(1.0)
    return time.monotonic() - started


def loadgen(url: str, bodies: Path, *args: str, key: bool = True) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "loadgen.py"), url, str(bodies), *args]
    if key:
        cmd += ["--header", f"X-API-Key: {API_KEY}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _jsonl(path: Path, bodies: Iterable[Any]) -> Path:
    path.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    return path


def _plain(row: Iterable[Any]) -> list[Any]:
    """JSON-safe values: NaN as null, numpy scalars unwrapped."""
    out = []
    for v in row:
        v = v.item() if isinstance(v, np.generic) else v
        out.append(None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
    return out


def request_bodies(bench: Bench, n: int = 2000, seed: int = 0) -> dict[str, Path]:
    """JSONL request bodies, one file per target, all for the same ``n`` leads at the newest
    snapshot (as the online store holds them): ``funnel`` (ids), ``pyfunc`` (raw features, for
    the project's MLflow model), ``lightgbm`` (the booster's input row, for MLflow's lightgbm
    flavor), ``floor`` (the same row, for the floor service), ``batch`` (``BATCH_LEADS`` ids a
    body), ``churn`` (customer accounts) and ``nbo`` (ids)."""
    import pandas as pd

    from core.tables import data_window
    from features.sources import feature_table_path
    from features.store import feature_store, historical_features
    from serving.batch import lead_entities
    from training.registry import load_model

    cfg = bench.config()
    model = load_model(cfg, cfg.training.mql.registered_model, "champion", "mql")
    entities = lead_entities(cfg.data_dir, pd.Timestamp(data_window(cfg.raw_dir)[1], tz="UTC"))
    entities = entities.sample(n=min(n, len(entities)), random_state=seed).reset_index(drop=True)
    frame = historical_features(feature_store(cfg), entities, model.feature_service)
    ids = frame["lead_id"].tolist()
    cols = model.feature_names
    raw = frame[cols].astype(object).where(frame[cols].notna(), None)
    x = model.matrix(frame)
    usage = pd.read_parquet(feature_table_path(cfg.data_dir, "account_usage"))
    newest = usage[usage["event_timestamp"] == usage["event_timestamp"].max()]
    customers = newest.loc[newest["is_customer"] >= 1, "account_id"].astype(str).tolist()
    w = bench.work
    return {
        "funnel": _jsonl(w / "bodies-funnel.jsonl", ({"lead_id": i} for i in ids)),
        "pyfunc": _jsonl(
            w / "bodies-pyfunc.jsonl",
            (
                {"dataframe_split": {"columns": cols, "data": [_plain(row)]}}
                for row in raw.itertuples(index=False)
            ),
        ),
        # missing values as NaN, which MLflow's scoring server reads (Python's JSON parser
        # takes it): no signature is needed to make a float column of them
        "lightgbm": _jsonl(
            w / "bodies-lightgbm.jsonl",
            (
                {"dataframe_split": {"columns": cols, "data": [[float(v) for v in row]]}}
                for row in x
            ),
        ),
        "floor": _jsonl(w / "bodies-floor.jsonl", ({"features": _plain(row)} for row in x)),
        "batch": _jsonl(
            w / "bodies-batch.jsonl",
            (
                {"leads": [{"lead_id": i} for i in ids[k : k + BATCH_LEADS]]}
                for k in range(0, len(ids) - BATCH_LEADS + 1, BATCH_LEADS)
            ),
        ),
        "churn": _jsonl(w / "bodies-churn.jsonl", ({"account_id": a} for a in customers)),
        "nbo": _jsonl(w / "bodies-nbo.jsonl", ({"lead_id": i} for i in ids)),
    }


def peer_models(bench: Bench) -> tuple[Path, Path]:
    """The champion MQL booster as a LightGBM model file (for the floor) and as a model in
    MLflow's lightgbm flavor (no calibration: the booster alone, as its users would log it).

    No signature: with one, MLflow casts and checks every column of every request against it
    (measured here: about 2 of its 3.8 ms of CPU per request, 135 against 650 requests/s), a
    price its users who serve for speed do not pay; the requests send NaN for missing values
    instead."""
    import mlflow.lightgbm

    from training.registry import load_model

    cfg = bench.config()
    model = load_model(cfg, cfg.training.mql.registered_model, "champion", "mql")
    booster_file = bench.work / "floor" / "booster.txt"
    booster_file.parent.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(booster_file))
    flavor = bench.work / "mlflow-lightgbm"
    shutil.rmtree(flavor, ignore_errors=True)
    mlflow.lightgbm.save_model(model.booster, str(flavor), pip_requirements=["lightgbm"])
    return booster_file, flavor


def measure_server(
    url: str, bodies: Path, reps: int, seconds: float, key: bool, sequential: int = 3000
) -> dict[str, Any]:
    seq = loadgen(url, bodies, "--mode", "sequential", "--requests", str(sequential), key=key)
    closed = [
        loadgen(
            url,
            bodies,
            "--mode",
            "closed",
            "--connections",
            "16",
            "--seconds",
            str(seconds),
            "--warmup",
            "50",
            key=key,
        )
        for _ in range(reps)
    ]
    return {
        "sequential": seq,
        "throughput_rps": spread([c["throughput_rps"] for c in closed]),
        "closed_errors": sum(c["errors"] for c in closed),
        "closed_p99_ms": spread([c["latency_ms"]["p99"] for c in closed]),
        "errors": seq["errors"] + sum(c["errors"] for c in closed),
    }


def redis_extra(project: str, connection: str) -> tuple[str, ...]:
    return (
        "feature_store.online_store.type=redis",
        f"feature_store.online_store.connection_string={connection}",
        f"feature_store.project={project}",
    )


def prepare_redis(bench: Bench, project: str, connection: str) -> tuple[str, ...]:
    """Register the definitions under their own project (registry file) and materialize into
    Redis; returns the overrides that point the service there."""
    extra = (
        *redis_extra(project, connection),
        f"feature_store.registry.path={bench.work / f'registry-{project}.db'}",
    )
    from app.pipeline import materialize_features
    from features.store import apply, feature_store

    cfg = bench.config(*extra)
    apply(feature_store(cfg), cfg.data_dir)
    materialize_features(cfg)
    return extra


# Our routes, each with its request bodies and how many units (leads, accounts) one answers.
ROUTES = {
    "/v1/leads/score": ("funnel", 1),
    "/v1/accounts/churn_risk": ("churn", 1),
    "/v1/next_best_offer": ("nbo", 1),
    "/v1/leads/score_batch": ("batch", BATCH_LEADS),
}
# name: (store, extra overrides, routes measured, worker processes: None = --workers)
ONLINE_VARIANTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], int | None]] = {
    "sqlite": ("sqlite", (), tuple(ROUTES), None),
    "redis": ("redis", (), tuple(ROUTES), None),
    "sqlite, no reasons cache": (
        "sqlite",
        ("serving.reasons_cache_rows=0",),
        ("/v1/leads/score",),
        None,
    ),
    "sqlite, no access log": ("sqlite", ("serving.access_log=false",), ("/v1/leads/score",), None),
    "sqlite, 2 workers": ("sqlite", (), ("/v1/leads/score",), 2),
}
PEER = "mlflow lightgbm flavor"
PEER_2 = "mlflow lightgbm flavor, 2 workers"
FLOOR = "floor: BentoML + booster"


def online(
    bench: Bench, reps: int, seconds: float, workers: int, sequential: int
) -> dict[str, Any]:
    """Every peer and every route of ours, one server at a time, the same load generator."""
    bodies = request_bodies(bench)
    booster_file, flavor = peer_models(bench)
    cfg = bench.config()
    port = free_port()
    out: dict[str, Any] = {"workers": workers, "batch_leads": BATCH_LEADS, "peers": {}, "ours": {}}
    out["cores"] = os.cpu_count()
    peers = out["peers"]

    def measure(url: str, body: str, key: bool) -> dict[str, Any]:
        return measure_server(url, bodies[body], reps, seconds, key, sequential)

    out["load_before"] = os.getloadavg()  # the box may be shared: the ratios are same-run
    log(f"online: {PEER} (mlflow models serve, 1 thread)")
    with mlflow_server(bench, port, str(flavor), "mlflow-lightgbm", workers):
        peers[PEER] = measure(f"http://127.0.0.1:{port}/invocations", "lightgbm", False)
    log(f"online: {PEER_2}")
    with mlflow_server(bench, port, str(flavor), "mlflow-lightgbm-2", 2):
        peers[PEER_2] = measure(f"http://127.0.0.1:{port}/invocations", "lightgbm", False)
        peers[PEER_2]["workers"] = 2
    log("online: the project's pyfunc (mlflow models serve, 1 thread)")
    uri = f"models:/{cfg.training.mql.registered_model}@champion"
    with mlflow_server(bench, port, uri, "mlflow-pyfunc", workers):
        peers["mlflow pyfunc (the project's)"] = measure(
            f"http://127.0.0.1:{port}/invocations", "pyfunc", False
        )
    log("online: the floor (BentoML + booster)")
    with floor_server(bench, port, booster_file, workers) as running:
        base = f"http://127.0.0.1:{port}"
        peers[FLOOR] = measure(f"{base}/predict", "floor", False)
        peers[FLOOR]["profile"] = profile_sequential(
            running.pid, f"{base}/predict", bodies["floor"], min(sequential, 2000),
            bench.work / "profile-floor.txt", key=False,
        )  # fmt: skip
        peers["floor, mounted FastAPI"] = measure(f"{base}/fastapi/predict", "floor", False)
        peers["floor + pred_contrib top 3"] = measure(f"{base}/predict_contrib", "floor", False)
    redis = prepare_redis(bench, "funnel_bench", "127.0.0.1:6379")
    for name, (store, extra, routes, n) in ONLINE_VARIANTS.items():
        log(f"online: funnel, {name}")
        n = n or workers
        overrides = (*(redis if store == "redis" else ()), *extra, f"serving.workers={n}")
        with funnel_server(bench, port, overrides) as running:
            if "serving.reasons_cache_rows=0" not in extra:
                took = wait_for_line(running.log, "reasons precomputed", n)
                log(f"online: reasons precomputed in {took:.0f} s")
            for route in routes:
                body, units = ROUTES[route]
                r = measure(f"http://127.0.0.1:{port}{route}", body, True)
                r["units_per_request"] = units
                r["workers"] = n
                if route == "/v1/leads/score" and n == 1:
                    log(f"online: profiling {route} ({name})")
                    r["profile"] = profile_sequential(
                        running.pid, f"http://127.0.0.1:{port}{route}", bodies[body],
                        min(sequential, 2000), bench.work / f"profile-{slug(name)}.txt",
                    )  # fmt: skip
                out["ours"][f"{route} ({name})"] = r
    out["load_after"] = os.getloadavg()
    add_ratios(out)
    return out


def add_ratios(out: dict[str, Any]) -> None:
    """Each row's throughput (per lead or account) against the lightgbm-flavor peer and as a
    share of the floor; a row of 2 workers against that peer with 2 workers too."""
    peers = out["peers"]
    peer = peers[PEER]["throughput_rps"]["median"]
    floor = peers[FLOOR]["throughput_rps"]["median"]
    for row in [*peers.values(), *out["ours"].values()]:
        units = row.get("units_per_request", 1) * row["throughput_rps"]["median"]
        row["units_per_s"] = units
        row["vs_peer"] = units / peer
        row["share_of_floor"] = units / floor
        if row.get("workers") == 2 and PEER_2 in peers:
            row["vs_peer_same_workers"] = units / peers[PEER_2]["throughput_rps"]["median"]


# -- training-set build -------------------------------------------------------------------------
def label_rows(bench: Bench, n: int, seed: int = 0) -> Path:
    """n label rows: the MQL label entities (lead, account, weekly snapshot), drawn with
    replacement and moved by up to a week, so most are not on a snapshot tick."""
    import pandas as pd

    from training.train import label_entities

    path = bench.work / f"label_rows_{n}.parquet"
    if path.is_file():
        return path
    base = label_entities(bench.config(), "mql").drop(columns=["label"])
    rng = np.random.default_rng(seed)
    rows = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
    offset = pd.to_timedelta(rng.integers(0, 7 * 86400, n), unit="s")
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True) + offset
    rows.to_parquet(path, index=False)
    return path


def child_build(data_dir: str, store_kind: str, rows_path: str) -> dict[str, Any]:
    """One point-in-time join of the label rows (which carry ``request_job_title``) with the
    DuckDB offline store (through ``historical_features``, which checks the row count) or with
    Feast's file store called directly (which may drop rows: they are counted)."""
    import pandas as pd

    from features.store import get_store, historical_features

    service = Bench(Path(data_dir).parent).config().training.mql.feature_service
    entities = pd.read_parquet(rows_path)
    offline = {"type": "file"} if store_kind == "file" else None
    store = get_store(Path(data_dir), {"type": "sqlite"}, offline=offline)
    base_rss = peak_rss_gib()
    started = time.perf_counter()
    if store_kind == "duckdb":
        frame = historical_features(store, entities, service)
    else:
        features = store.get_feature_service(service)
        frame = store.get_historical_features(entity_df=entities, features=features).to_df()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows_in": len(entities),
        "rows_out": len(frame),
        "dropped": len(entities) - len(frame),
        "peak_rss_gib": peak_rss_gib(),
        "rss_before_gib": base_rss,
    }


def build_at(bench: Bench, n: int, reps: int, peer_reps: int) -> dict[str, Any]:
    rows = label_rows(bench, n)
    out: dict[str, Any] = {"label_rows": n}
    for kind, k in (("duckdb", reps), ("file", peer_reps)):
        runs = []
        for i in range(k):
            log(f"build: {kind} {i + 1}/{k} on {n:,} rows")
            run = run_child(
                "build",
                str(bench.data),
                kind,
                str(rows),
                allow_kill=kind == "file",
            )
            if run.get("killed"):
                out[kind] = run
                break
            runs.append(run)
        else:
            out[kind] = {
                "seconds": spread([r["seconds"] for r in runs]),
                "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
                "dropped": runs[0]["dropped"],
                "rows_out": runs[0]["rows_out"],
            }
    if "seconds" in out["file"]:
        out["speedup"] = out["file"]["seconds"]["median"] / out["duckdb"]["seconds"]["median"]
    return out


def build(bench: Bench, n: int, reps: int, fallback: int) -> dict[str, Any]:
    """At n label rows; when Feast's file store does not survive n (out of memory), both
    again at ``fallback`` rows, where it does."""
    out = build_at(bench, n, reps, peer_reps=1)
    if "speedup" not in out:
        out["fallback"] = build_at(bench, fallback, reps, peer_reps=1)
    return out


# -- batch scoring ------------------------------------------------------------------------------
def million_leads(bench: Bench, n: int) -> Path:
    """A data directory whose lead-keyed feature tables hold n leads: each of the base's leads
    at its newest snapshot, copied under new ids (L...-r07); account tables as they are."""
    import pandas as pd

    from features.store import apply, get_store

    target = bench.work / f"data_{n}"
    if (target / "registry.db").is_file():
        return target
    src, dst = bench.data / "features", target / "features"
    dst.mkdir(parents=True, exist_ok=True)
    profile = pd.read_parquet(src / "lead_profile.parquet")
    copies = -(-n // len(profile))
    for table in ("lead_profile", "lead_behavior", "colleague_interest"):
        frame = pd.read_parquet(src / f"{table}.parquet")
        newest = frame.sort_values("event_timestamp").groupby("lead_id", sort=False).tail(1)
        parts = [newest.assign(lead_id=newest["lead_id"] + f"-r{c:02d}") for c in range(copies)]
        pd.concat(parts, ignore_index=True).iloc[:n].to_parquet(
            dst / f"{table}.parquet", index=False
        )
    for table in ("account_firmographic", "account_usage"):
        shutil.copy(src / f"{table}.parquet", dst / f"{table}.parquet")
    (target / "raw").mkdir(exist_ok=True)
    shutil.copy(bench.data / "raw" / "manifest.json", target / "raw" / "manifest.json")
    apply(get_store(target), target)
    return target


def child_batch(work: str, data_dir: str, reps: str) -> dict[str, Any]:
    import pandas as pd

    from core.tables import data_window
    from features.store import feature_store, historical_features
    from serving.batch import lead_entities, score_leads
    from training.registry import load_model

    bench = Bench(Path(work))
    cfg = bench.config(f"paths.data_dir={data_dir}")
    model = load_model(bench.config(), cfg.training.mql.registered_model, "champion", "mql")
    out_file = Path(data_dir) / "scores.parquet"
    entities = lead_entities(cfg.data_dir, pd.Timestamp(data_window(cfg.raw_dir)[1], tz="UTC"))
    # warm-up on 1,000 leads: imports (Feast, DuckDB, ibis) are not the scoring's cost
    sample = historical_features(feature_store(cfg), entities.head(1000), model.feature_service)
    model.predict_proba(sample)
    e2e, predict, steps = [], [], []
    for _ in range(int(reps)):
        started = time.perf_counter()
        result = score_leads(cfg, model=model, out=out_file, progress=False)
        e2e.append(time.perf_counter() - started)
        steps.append(result.seconds)
    x = model.matrix(historical_features(feature_store(cfg), entities, model.feature_service))
    for _ in range(int(reps)):
        started = time.perf_counter()
        model.booster.predict(x)
        predict.append(time.perf_counter() - started)
    return {
        "leads": len(result.scores),
        "e2e": e2e,
        "predict": predict,
        "steps": steps,
        "peak_rss_gib": peak_rss_gib(),
    }


def batch(bench: Bench, n: int, reps: int) -> dict[str, Any]:
    target = million_leads(bench, n)
    r = run_child("batch", str(bench.work), str(target), str(reps))
    steps = {k: float(np.median([s[k] for s in r["steps"]])) for k in r["steps"][0]}
    out = {
        "leads": r["leads"],
        "end_to_end_s": spread(r["e2e"]),
        "booster_predict_s": spread(r["predict"]),
        "steps_s": steps,
        "peak_rss_gib": r["peak_rss_gib"],
    }
    out["ratio"] = out["end_to_end_s"]["median"] / out["booster_predict_s"]["median"]
    return out


# -- tuning -------------------------------------------------------------------------------------
def child_tuning(work: str, rows: str, trials: str, logged: str) -> dict[str, Any]:
    import mlflow
    import optuna

    from training.registry import configure_tracking, ensure_experiment
    from training.scoring import BundleMeta, ScoringModel
    from training.train import logged_trial, training_split
    from training.tuning import TrainData, monotone_constraints, objective

    bench = Bench(Path(work))
    cfg = bench.config()
    conf = cfg.training.mql
    split = training_split(cfg, "mql")
    import pandas as pd

    pool = pd.concat([split.parts["train"], split.parts["validation"]], ignore_index=True)
    pool = pool.sample(n=min(int(rows), len(pool)), random_state=0, replace=int(rows) > len(pool))
    cut = int(0.8 * len(pool))
    meta = BundleMeta(
        model_kind="mql",
        feature_service=conf.feature_service,
        features=split.names,
        categories={c: sorted(pool[c].dropna().astype(str).unique()) for c in split.categorical},
        calibration={"a": 1.0, "b": 0.0},
        threshold=0.5,
    )
    shell = ScoringModel(booster=None, meta=meta)  # type: ignore[arg-type]
    train, valid = pool.iloc[:cut], pool.iloc[cut:]
    data = TrainData(
        shell.matrix(train),
        train["label"].to_numpy(),
        shell.matrix(valid),
        valid["label"].to_numpy(),
        split.names,
        split.categorical,
    )
    datasets = data.datasets()
    fixed = {
        "num_threads": conf.num_threads,
        "monotone_constraints": monotone_constraints(split.names),
    }
    storage = f"sqlite:///{bench.work / 'tuning-optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=cfg.optuna.seed, n_startup_trials=cfg.optuna.n_startup_trials
        ),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=30),
    )

    def run(t: optuna.Trial) -> float:
        return objective(t, datasets, conf.num_boost_round, conf.early_stopping_rounds, fixed)

    started = time.perf_counter()
    if logged == "1":
        configure_tracking(cfg)
        ensure_experiment(cfg, "bench-tuning")
        mlflow.set_experiment("bench-tuning")
        with mlflow.start_run(run_name="bench-tuning"):
            study.optimize(lambda t: logged_trial(t, lambda: run(t)), n_trials=int(trials))
    else:
        study.optimize(run, n_trials=int(trials))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "trials": len(study.trials),
        "rows": len(pool),
        "best_value": study.best_value,
        "states": dict(pd.Series([t.state.name for t in study.trials]).value_counts()),
    }


def tuning(bench: Bench, rows: int, trials: int, reps: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "mlflow": []}
    for i in range(reps):  # interleaved: A B A B, so drift in the machine hits both
        for name, flag in (("plain", "0"), ("mlflow", "1")):
            log(f"tuning: {name} {i + 1}/{reps}")
            runs[name].append(run_child("tuning", str(bench.work), str(rows), str(trials), flag))
    out: dict[str, Any] = {"rows": rows, "trials": trials}
    for name, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        out[name] = {
            "seconds": spread(secs),
            "trials_per_minute": 60.0 * trials / float(np.median(secs)),
            "best_value": rs[0]["best_value"],
        }
    out["overhead"] = out["mlflow"]["seconds"]["median"] / out["plain"]["seconds"]["median"] - 1.0
    out["same_best"] = abs(out["mlflow"]["best_value"] - out["plain"]["best_value"]) < 1e-12
    return out


# -- reliability --------------------------------------------------------------------------------
@contextmanager
def private_redis(directory: Path, port: int) -> Iterator[Callable[[], None]]:
    """A redis-server of our own on ``port`` that keeps its data in ``directory`` (saved on
    shutdown); yields ``start``; stopping is ``redis-cli shutdown save``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--dir",
                    str(directory),
                    "--dbfilename",
                    "dump.rdb",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--bind",
                    "127.0.0.1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    start()
    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def stop_redis(port: int) -> None:
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "save"], capture_output=True, check=False
    )


@dataclass
class Recording:
    path: Path  # py-spy's chrometrace JSON
    started: float  # epoch seconds of its first sample's clock (ts 0), approximately


def py_spy_binary() -> str | None:
    """py-spy from this environment or PATH; None, said in the log, when it is missing."""
    binary = shutil.which("py-spy", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if binary is None:
        log("py-spy not found: no recording (uv sync installs it with the dev dependencies)")
    return binary


@contextmanager
def py_spy(pid: int, seconds: float, out: Path) -> Iterator[Recording | None]:
    """A py-spy recording (chrometrace JSON, every thread of every process under ``pid``, idle
    ones included, so each thread's timeline is whole) of the next ``seconds``, when py-spy is
    installed (the dev dependencies hold it); None otherwise. Sampled without pausing the
    server (``--nonblocking``): paused 200 times a second, a server loaded at half its capacity
    falls behind and the recording shows the profiler's stalls, not the server's."""
    binary = py_spy_binary()
    if binary is None:
        yield None
        return
    cmd = [binary, "record", "--pid", str(pid), "--subprocesses", "--idle", "--nonblocking",
           "--duration", str(int(seconds)), "--rate", "200", "--format", "chrometrace",
           "--output", str(out)]  # fmt: skip
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield Recording(out, started)
    finally:
        try:
            proc.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Where a request's CPU time goes: each sampled stack goes to the first part whose pattern one
# of its frames matches (the order matters: the feature read sits under the HTTP stack).
PROFILE_PARTS = (
    ("feature read (online store)", ("online_read", "ServiceReader", "get_online_features")),
    ("reasons (cache or TreeSHAP)", ("predict_explain", "pred_contrib", "CachedExplainer")),
    ("model prediction", ("Booster.predict", "ScoringModel", "FeatureMatrix")),
    ("access log", ("StreamHandler.emit", "AccessLogMiddleware", "Logger.")),
    ("metrics and tracing", ("opentelemetry", "otel", "prometheus", "Metrics", "instruments.py")),
    ("JSON and validation", ("model_dump_json", "model_validate", "pydantic", "json")),
    ("HTTP server and routing", ("uvicorn", "starlette", "httptools", "h11", "fastapi", "anyio")),
)


# Innermost frames of a thread that waits (py-spy's own idle test misses these: the event
# loop's selector, a worker thread's queue, the parent process waiting on its child).
IDLE_LEAVES = (
    "Runner.run (asyncio/runners.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Queue.get (queue.py",
    "run_foreground (",
    "select (selectors.py",
)


def slug(name: str) -> str:
    """A variant's name as a file name: 'sqlite, no access log' -> 'sqlite-no_access_log'."""
    return name.replace(", ", "-").replace(" ", "_")


def cpu_profile(collapsed: Path, requests: int, rate: int) -> dict[str, Any]:
    """Busy milliseconds per request by part, from py-spy's collapsed stacks (``--format raw``,
    waiting threads left out) of a run of ``requests`` requests sampled ``rate`` times a
    second; a thread that holds the GIL and one in native code (LightGBM, SQLite) both count."""
    per_part: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if stack.rsplit(";", 1)[-1].startswith(IDLE_LEAVES):
            continue
        n = int(count)
        total += n
        part = next((name for name, pats in PROFILE_PARTS if any(p in stack for p in pats)),
                    "other (event loop, threads, interpreter)")  # fmt: skip
        per_part[part] = per_part.get(part, 0) + n
    ms = {k: round(1000.0 * v / rate / requests, 3) for k, v in per_part.items()}
    return {
        "cpu_ms_per_request": round(1000.0 * total / rate / requests, 3),
        "parts_ms": dict(sorted(ms.items(), key=lambda kv: -kv[1])),
        "samples": total,
    }


def profile_sequential(
    pid: int, url: str, bodies: Path, requests: int, out: Path, key: bool = True
) -> dict[str, Any]:
    """A py-spy CPU profile of ``requests`` sequential requests to the server under ``pid``,
    split by part (``PROFILE_PARTS``); {} when py-spy is missing."""
    binary = py_spy_binary()
    if binary is None:
        return {}
    rate = 500
    cmd = [binary, "record", "--pid", str(pid), "--subprocesses", "--rate", str(rate),
           "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # py-spy attaches
    run = loadgen(url, bodies, "--mode", "sequential", "--requests", str(requests), key=key)
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on interrupt
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not out.is_file():
        return {}
    profile = cpu_profile(out, requests, rate)
    profile["wall_ms_p50"] = run["latency_ms"]["p50"]
    profile["wall_ms_p99"] = run["latency_ms"]["p99"]
    return profile


def stalls(timeline: list[dict[str, Any]], slow_ms: float, gap_s: float = 0.05) -> list[list]:
    """Spans [start, end, requests] (epoch s) in which requests took over ``slow_ms``, from
    a slow request's scheduled start to its answer; overlapping or close spans merged."""
    spans: list[list] = []
    for r in sorted((r for r in timeline if r["ms"] > slow_ms), key=lambda r: r["t"]):
        begin, end = r["t"], r["t"] + r["ms"] / 1000.0
        if spans and begin <= spans[-1][1] + gap_s:
            spans[-1][1] = max(spans[-1][1], end)
            spans[-1][2] += 1
        else:
            spans.append([begin, end, 1])
    return spans


def thread_activity(
    trace: list[dict[str, Any]], origin: float, begin: float, end: float, depth: int = 4
) -> dict[str, list[tuple[str, float]]]:
    """Per thread, what its innermost ``depth`` frames were during [begin, end] (epoch s) in a
    py-spy chrometrace, in ms, the longest first (four at most)."""
    stacks: dict[int, list[str]] = {}
    last: dict[int, float] = {}
    spent: dict[int, dict[str, float]] = {}
    for e in sorted(trace, key=lambda e: (e["ts"], e["ph"] != "E")):
        tid, at = e["tid"], origin + e["ts"] / 1e6
        stack = stacks.setdefault(tid, [])
        if stack and tid in last:
            overlap = min(at, end) - max(last[tid], begin)
            if overlap > 0:
                key = " <- ".join(reversed(stack[-depth:]))
                spent.setdefault(tid, {})[key] = spent.get(tid, {}).get(key, 0.0) + overlap
        last[tid] = at
        where = (
            f"{e['name']} ({Path(str(e['args'].get('filename', ''))).name}:{e['args'].get('line')})"
        )
        if e["ph"] == "B":
            stack.append(where)
        elif stack:
            stack.pop()
    return {
        str(tid): [(k, round(1000 * v, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:4]]
        for tid, d in spent.items()
    }


def stall_report(timeline: Path, recording: Recording | None, slow_ms: float) -> list[dict]:
    """Each stall of the sustained run (requests over ``slow_ms``) with what every thread of
    the service did meanwhile, from the py-spy recording."""
    samples = json.loads(timeline.read_text())
    trace = json.loads(recording.path.read_text()) if recording and recording.path.is_file() else []
    t0 = samples[0]["t"] if samples else 0.0
    out = []
    for begin, end, n in stalls(samples, slow_ms):
        out.append({
            "at_s": round(begin - t0, 2),
            "ms": round(1000 * (end - begin), 1),
            "slow_requests": n,
            "threads": thread_activity(trace, recording.started, begin, end) if trace else {},
        })  # fmt: skip
    return out


def reliability(bench: Bench, capacity: float | None, seconds: float) -> dict[str, Any]:
    ours = request_bodies(bench)["funnel"]
    port = free_port()
    out: dict[str, Any] = {}
    url = f"http://127.0.0.1:{port}/v1/leads/score"
    with funnel_server(bench, port) as running:
        log_path = running.log
        wait_for_line(log_path, "reasons precomputed", 1)
        if capacity is None:
            capacity = loadgen(url, ours, "--mode", "closed", "--seconds", "10")["throughput_rps"]
        rate = capacity / 2
        log(f"reliability: {seconds:.0f} s at {rate:.0f} req/s (half of {capacity:.0f})")
        gc_before = log_path.read_text(errors="replace").count("garbage collection of")
        timeline = bench.work / "sustained-timeline.json"
        with py_spy(running.pid, seconds, bench.work / "sustained.chrometrace.json") as recorded:
            sustained = loadgen(
                url, ours, "--mode", "rate", "--rate", str(rate), "--seconds", str(seconds),
                "--timeline", str(timeline),
            )  # fmt: skip
        slow_gc = log_path.read_text(errors="replace").count("garbage collection of") - gc_before
        out["sustained"] = {
            "rate_rps": rate,
            "capacity_rps": capacity,
            "slow_gc_pauses": slow_gc,  # collections over serving.service.SLOW_GC_MS
            "py_spy": str(recorded.path) if recorded else None,
            # requests over 100 ms (20x a normal answer) and what the service did meanwhile
            "stalls": stall_report(timeline, recorded, 100.0),
            **sustained,
        }

    rport = free_port()
    with private_redis(bench.work / "redis-outage", rport) as start_redis:
        extra = prepare_redis(bench, "funnel_outage", f"127.0.0.1:{rport}")
        with funnel_server(bench, port, extra):
            log("reliability: Redis stopped and started under load")
            timeline = bench.work / "outage-timeline.json"
            cmd = [
                sys.executable,
                str(ROOT / "benchmarks" / "loadgen.py"),
                url,
                str(ours),
                "--mode",
                "rate",
                "--rate",
                "100",
                "--seconds",
                "30",
                "--connections",
                "8",
                "--header",
                f"X-API-Key: {API_KEY}",
                "--timeline",
                str(timeline),
                "--window",
                "1",
            ]
            load = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            time.sleep(8)
            stopped_at = time.time()
            stop_redis(rport)
            ready_during = readyz(port)
            time.sleep(8)
            started_at = time.time()
            start_redis()
            summary = json.loads(load.communicate(timeout=120)[0])
            ready_after = readyz(port)
        samples = json.loads(timeline.read_text())
    down = [s for s in samples if stopped_at + 0.5 <= s["t"] < started_at]
    after = [s for s in samples if s["t"] >= started_at and s["status"] == 200]
    out["redis_outage"] = {
        "summary": summary,
        "during_outage_status": dict(_count(s["status"] for s in down)),
        "during_outage_max_ms": max((s["ms"] for s in down), default=None),
        "readyz_during_outage": ready_during,
        "readyz_after": ready_after,
        "first_200_after_restart_s": (after[0]["t"] - started_at) if after else None,
    }
    return out


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return counts


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


# -- report -------------------------------------------------------------------------------------
def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    header = (
        f"Last run {m['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, feast {m['feast']}, mlflow {m['mlflow']}, bentoml {m['bentoml']}, "
        f"lightgbm {m['lightgbm']}, optuna {m['optuna']}."
    )
    measured = results.get("measured", {})
    if measured:  # sections run on another day or host than the last one
        header += (
            " By section: "
            + "; ".join(f"{name} {w['date']} ({w['cpu']})" for name, w in sorted(measured.items()))
            + "."
        )
    lines = [header, ""]
    if "online" in results and "peers" in results["online"]:
        lines += [online_table(results["online"])]
    lines += [
        "| what | ours | peer (same run) | ratio | target | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    t = TARGETS
    if "build" in results:
        lines += build_rows(results["build"])
    if "batch" in results:
        b = results["batch"]
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in b["steps_s"].items())
        lines.append(
            f"| batch scoring, {b['leads']:,} leads end to end ({steps}) | "
            f"{b['end_to_end_s']['median']:.1f} s ({b['end_to_end_s']['min']:.1f}-{b['end_to_end_s']['max']:.1f}) | "
            f"bare `Booster.predict` {b['booster_predict_s']['median']:.1f} s | {b['ratio']:.2f}x | "
            f"<= {t['batch_ratio']:.0f}x | {verdict(b['ratio'] <= t['batch_ratio'])} |"
        )
    if "tuning" in results:
        u = results["tuning"]
        lines.append(
            f"| tuning, {u['trials']} Optuna trials on {u['rows']:,} rows, each an MLflow child run | "
            f"{u['mlflow']['seconds']['median']:.0f} s, {u['mlflow']['trials_per_minute']:.1f} trials/min | "
            f"no MLflow {u['plain']['seconds']['median']:.0f} s, {u['plain']['trials_per_minute']:.1f} trials/min | "
            f"{100 * u['overhead']:+.1f}% | < {100 * t['tuning_overhead']:.0f}% | {verdict(u['overhead'] < t['tuning_overhead'])} |"
        )
    if "quality" in results:
        q = results["quality"]
        for kind in ("mql", "churn"):
            k = q[kind]
            if k["test_roc_auc"] is None or k["oracle_roc_auc"] is None:
                continue
            gap = k["oracle_roc_auc"] - k["test_roc_auc"]
            ci = k.get("gap_ci") or [None, None]
            interval = f" [95% CI {ci[0]:+.4f}, {ci[1]:+.4f}]" if None not in ci else ""
            lines.append(
                f"| {kind} test ROC AUC, generator at full size | {k['test_roc_auc']:.4f} | oracle "
                f"{k['oracle_roc_auc']:.4f} (forward-simulated ceiling) | gap (oracle - model) "
                f"{gap:+.4f}{interval} | within {t['auc_gap']} below | "
                f"{verdict(0 <= gap <= t['auc_gap'])} |"
            )
        r, e = q["nbo"]["qini_vs_oracle"], q["nbo"].get("expected_qini_vs_oracle")
        if e is not None:
            lines.append(
                f"| nbo held-out mean Qini, outcome draws integrated out | {100 * e:.0f}% of the "
                f"oracle's | oracle (a ceiling) | {e:.2f} | >= {t['qini_ratio']:.2f} | "
                f"{verdict(e >= t['qini_ratio'])} |"
            )
        if r is not None:
            lines.append(
                f"| nbo held-out mean Qini on the outcomes drawn | {100 * r:.0f}% of the oracle's "
                f"| oracle (one draw) | {r:.2f} | "
                + (
                    "reported, moves by about 0.03 from draw to draw | — |"
                    if e is not None
                    else f">= {t['qini_ratio']:.2f} | {verdict(r >= t['qini_ratio'])} |"
                )
            )
    if "reliability" in results:
        r = results["reliability"]
        s = r["sustained"]
        w = s.get("window_p99_ms", [])
        lines += [
            "",
            "| reliability | result |",
            "| --- | --- |",
            f"| {s['seconds']:.0f} s at {s['rate_rps']:.0f} req/s (half of {s['capacity_rps']:.0f}) | "
            f"{s['requests']:,} requests, {s['errors']} errors, p99 {s['latency_ms']['p99']:.1f} ms; "
            f"p99 per 5 s window {min(w):.1f}-{max(w):.1f} ms{stall_text(s)} |"
            if w
            else "",
        ]
        o = r["redis_outage"]
        lines.append(
            f"| Redis stopped for 8 s under 100 req/s, then started | during the outage: status "
            f"{o['during_outage_status']}, slowest answer {o['during_outage_max_ms'] or 0:.0f} ms; "
            f"/readyz {o['readyz_during_outage']} during, {o['readyz_after']} after; first 200 "
            f"{o['first_200_after_restart_s'] if o['first_200_after_restart_s'] is None else round(o['first_200_after_restart_s'], 2)} s after Redis was back |"
        )
    return "\n".join(lines) + "\n"


def stall_text(s: dict[str, Any]) -> str:
    """The sustained run's stalls (requests over 100 ms) and slow collections, in words."""
    if "stalls" not in s:
        return ""
    found = s["stalls"]
    longest = f", the longest {max(x['ms'] for x in found):.0f} ms" if found else ""
    return (
        f"; {len(found)} stalls over 100 ms{longest}; {s['slow_gc_pauses']} garbage "
        "collections over 50 ms"
    )


def online_target(name: str, r: dict[str, Any]) -> tuple[str, bool | None]:
    """The target a row of ours is held to, and whether it is met; none for the peers, nor
    for the row with the reasons cache off (it shows what the cache buys)."""
    t = TARGETS
    if "no reasons cache" in name:
        return "", None
    ratio = r.get("vs_peer_same_workers", r["vs_peer"])
    thr = f">= {t['online_throughput_ratio']}x (aim {t['online_throughput_ratio_aim']}x)"
    if r.get("units_per_request", 1) > 1 or r.get("workers", 1) > 1:
        return thr, ratio >= t["online_throughput_ratio"]
    p99 = r["sequential"]["latency_ms"]["p99"]
    target = f"{thr}; p99 < {t['online_p99_ms']:.0f} ms (aim {t['online_p99_ms_aim']:.0f})"
    return target, ratio >= t["online_throughput_ratio"] and p99 < t["online_p99_ms"]


def online_table(o: dict[str, Any]) -> str:
    """One row per peer and per route of ours: throughput per lead or account (16 connections,
    median and min-max), against the lightgbm-flavor peer and as a share of the floor;
    sequential p50 / p99 (one request at a time); the target and its verdict."""
    load = o.get("load_before")
    busy = ""
    if load:
        busy = (
            f" Load average when the section started: {load[0]:.1f} (1 min) on "
            f"{o.get('cores', os.cpu_count())} cores"
        )
        busy += (
            ": nothing else ran."
            if load[0] < 1.5
            else "; the box was shared with other work, which slows every server alike: "
            "compare the ratios, measured in the same run, more than the rates."
        )
    intro = (
        f"Online scoring, one server at a time, the same load generator; {o['workers']} worker "
        f"unless said, LightGBM on one thread everywhere.{busy}"
    )
    columns = (
        "| server | per s, 16 connections (min-max) | vs lightgbm flavor | share of floor "
        "| sequential p50 / p99 ms | target | verdict |"
    )
    lines = [intro, "", columns, "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in [*o["peers"].items(), *o["ours"].items()]:
        seq = r["sequential"]["latency_ms"]
        thr = r["throughput_rps"]
        units = r.get("units_per_request", 1)
        ours = name in o["ours"]
        what = f"`{name}`" if ours else f"peer: {name}"
        if units > 1:
            what += f", {units} leads a request, per lead"
        if r.get("errors"):
            what += f"; {r['errors']} errors"
        ratio = f"{r['vs_peer']:.2f}x"
        if ours and "vs_peer_same_workers" in r:
            ratio += f" ({r['vs_peer_same_workers']:.2f}x its 2 workers)"
        target, ok = online_target(name, r) if ours else ("", None)
        lines.append(
            f"| {what} | {r['units_per_s']:.0f} ({thr['min'] * units:.0f}-"
            f"{thr['max'] * units:.0f}) | {ratio} | {r['share_of_floor']:.0%} | "
            f"{seq['p50']:.2f} / {seq['p99']:.2f} | {target} | {verdict(ok) if target else ''} |"
        )
    return "\n".join([*lines, *profile_table(o)]) + "\n"


def profile_table(o: dict[str, Any]) -> list[str]:
    """Where a sequential request's CPU time goes in the servers that were profiled."""
    profiled = [(n, r["profile"]) for n, r in [*o["peers"].items(), *o["ours"].items()]
                if r.get("profile")]  # fmt: skip
    if not profiled:
        return []
    lines = [
        "",
        (
            "Where a sequential request's time goes: py-spy sampling the server's processes at "
            "500 Hz over 2,000 sequential requests (idle time left out), CPU milliseconds per "
            "request by part; the wall time is the client's, which also counts the client, the "
            "network stack and the time the server waits to be scheduled."
        ),
        "",
        "| server | wall p50 / p99 ms | server CPU ms | of which |",
        "| --- | --- | --- | --- |",
    ]
    for name, prof in profiled:
        parts = "; ".join(f"{k} {v:.2f}" for k, v in prof["parts_ms"].items() if v >= 0.01)
        lines.append(
            f"| {name} | {prof['wall_ms_p50']:.2f} / {prof['wall_ms_p99']:.2f} | "
            f"{prof['cpu_ms_per_request']:.2f} | {parts} |"
        )
    return lines


def build_rows(b: dict[str, Any]) -> list[str]:
    t = TARGETS
    d, f = b["duckdb"], b["file"]
    ours = (
        f"{d['seconds']['median']:.1f} s ({d['seconds']['min']:.1f}-{d['seconds']['max']:.1f}), "
        f"{d['peak_rss_gib']:.1f} GiB peak, {d['dropped']:,} dropped"
    )
    if f.get("killed"):
        row = (
            f"| training-set build, {b['label_rows']:,} label rows | {ours} | Feast file store: "
            f"killed by the kernel, out of memory (24 GiB), after {f['seconds_before_kill']:.0f} s | "
            f"> {f['seconds_before_kill'] / d['seconds']['median']:.1f}x | >= {t['build_speedup']:.0f}x, "
            f"0 dropped | {verdict(d['dropped'] == 0)} |"
        )
        return [row, *(build_rows(b["fallback"]) if "fallback" in b else [])]
    row = (
        f"| training-set build, {b['label_rows']:,} label rows | {ours} | Feast file store "
        f"{f['seconds']['median']:.1f} s, {f['peak_rss_gib']:.1f} GiB peak, {f['dropped']:,} rows "
        f"dropped | {b['speedup']:.1f}x | >= {t['build_speedup']:.0f}x, 0 dropped | "
        f"{verdict(b['speedup'] >= t['build_speedup'] and d['dropped'] == 0)} |"
    )
    return [row]


def between(page: Path, marker: str, table: str) -> None:
    """Replace what ``page`` holds between its ``<!-- marker:begin -->`` and ``<!--
    marker:end -->`` lines with ``table``; a page without them is left as it is."""
    text = page.read_text()
    begin, end = f"<!-- {marker}:begin -->\n", f"<!-- {marker}:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        page.write_text(head + begin + table + end + rest.split(end, 1)[1])


# -- main ---------------------------------------------------------------------------------------
CHILDREN = {"build": child_build, "batch": child_batch, "tuning": child_tuning}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--reuse", action="store_true", help="reuse the base pipeline")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a check that everything runs: a small pipeline, --quick sizes, short loads; "
        "results go to the work folder, never to benchmarks/results or the docs",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes of every server (online)"
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the tables from results/perf.json"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*args.child[1:]), default=float))
        return
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    quick = args.quick or args.tiny
    work = (
        args.work
        if not args.tiny or args.work != DEFAULT_WORK
        else DEFAULT_WORK.with_name(".work-tiny")
    )
    bench = Bench(work.resolve(), TINY if args.tiny else ())
    results_dir = bench.work / "results" if args.tiny else RESULTS
    out_json = results_dir / "perf.json"
    results: dict[str, Any] = json.loads(out_json.read_text()) if out_json.is_file() else {}
    if not args.render:
        results["machine"] = machine()
        base_pipeline(bench, args.reuse)
        if args.tiny:
            crown_untried(bench)

    def save() -> None:
        results_dir.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2, default=float) + "\n")
        table = markdown(results)
        (results_dir / "perf.md").write_text(table)
        if args.tiny:
            return
        # the docs show the newest tables, the README its online one
        between(ROOT / "docs" / "reference" / "benchmarks.md", "perf", table)
        if "online" in results and "peers" in results["online"]:
            between(ROOT / "README.md", "perf-online", online_table(results["online"]))

    for section in [] if args.render else sections:
        log(f"== {section}")
        m = results["machine"]
        results.setdefault("measured", {})[section] = {"date": m["date"], "cpu": m["cpu"]}
        if section == "quality":
            results["quality"] = quality(bench)
        elif section == "online":
            results["online"] = online(
                bench,
                reps=1 if quick else 3,
                seconds=(2 if args.tiny else 5) if quick else 10,
                workers=args.workers,
                sequential=200 if args.tiny else 3000,
            )
        elif section == "build":
            results["build"] = build(
                bench,
                100_000 if quick else 1_000_000,
                reps=1 if quick else 3,
                fallback=50_000 if quick else 200_000,
            )
        elif section == "batch":
            results["batch"] = batch(bench, 100_000 if quick else 1_000_000, reps=1 if quick else 3)
        elif section == "tuning":
            results["tuning"] = tuning(
                bench, 20_000 if quick else 200_000, 10 if quick else 50, reps=1
            )
        elif section == "reliability":
            cap = (
                results.get("online", {})
                .get("ours", {})
                .get("/v1/leads/score (sqlite)", {})
                .get("units_per_s")
            )
            results["reliability"] = reliability(bench, cap, 15 if quick else 60)
        save()
    if args.render:
        save()
    print((results_dir / "perf.md").read_text())


if __name__ == "__main__":
    main()

"""Capacity curves of the point-in-time feature build: time and peak memory by event count.

    uv run python benchmarks/capacity.py                         # DuckDB and Spark, 1M and 10M
    uv run python benchmarks/capacity.py --sizes 100M --memory-limit 12GB
    uv run python benchmarks/capacity.py --engines duckdb --sizes 10M --memory-limit 2GB
    uv run python benchmarks/capacity.py --render                # rewrite capacity.md only

The event tables come from the synthetic generator (``synthetic.generate``): one base of
``--base-leads`` leads over 39 weeks (about 65 events per lead, about 1M events at 16,000
leads), copied under new lead, account, event and opportunity ids to reach each size, so leads
and accounts grow with events (the generator takes minutes per million events on 2 cores; the
copies take seconds). Times do not move: every copy covers the same 39 weeks, 40 weekly ticks.

Each build (``features.build.build_feature_tables``, the DuckDB engine, and the Spark engine
``local[*]`` when the function takes ``engine=``) runs in a fresh interpreter; this process
samples the resident memory (RSS) of that interpreter and every process it starts (the Spark
JVM and its Python workers) every 0.2 s, and the size of DuckDB's spill directory. Results
accumulate in benchmarks/results/capacity.json by (engine, size, memory limit); capacity.md and
the table in docs/guides/capacity.md are rendered from it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "guides" / "capacity.md"  # its table sits between these markers
MARKERS = ("<!-- capacity:begin -->", "<!-- capacity:end -->")
DEFAULT_WORK = ROOT / "benchmarks" / ".work-capacity"  # perf.py clears .work/ on a fresh run
SIZES = {
    "1M": 1_000_000,
    "10M": 10_000_000,
    "30M": 30_000_000,
    "60M": 60_000_000,
    "100M": 100_000_000,
}
GiB = 2**30
SAMPLE_SECONDS = 0.2
# id columns that get a copy suffix, per raw table
ID_COLUMNS = {
    "accounts": ("account_id", "domain"),
    "leads": ("lead_id", "account_id", "email"),
    "events": ("event_id", "lead_id", "account_id"),
    "opportunities": ("opportunity_id", "lead_id", "account_id"),
    "subscriptions": ("account_id",),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def spark_engine_available() -> bool:
    from features.build import build_feature_tables

    return "engine" in inspect.signature(build_feature_tables).parameters


# -- data ---------------------------------------------------------------------------------------
def base_data(work: Path, leads: int, seed: int) -> Path:
    """The generator's raw tables for ``leads`` leads (made once, reused)."""
    base = work / f"base_{leads}"
    if (base / "raw" / "manifest.json").is_file():
        return base / "raw"
    from synthetic.generate import generate

    log(f"generating {leads:,} leads over 39 weeks")
    summary = generate(
        n_leads=leads, seed=seed, start="2026-01-05", weeks=39, out_dir=base, progress=False
    )
    log(f"  {summary['events']:,} events in {summary['seconds']:.0f} s")
    return base / "raw"


def replicated(work: Path, base_raw: Path, copies: int) -> Path:
    """``copies`` copies of the base's raw tables, ids suffixed ``-c<n>`` (copy 0 keeps them),
    timestamps in microseconds (the generator writes nanoseconds, which Spark's parquet reader
    refuses; DuckDB reads both the same)."""
    import duckdb

    target = work / f"{base_raw.parent.name}_x{copies}_us" / "raw"
    if (target / "manifest.json").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    for table, ids in ID_COLUMNS.items():
        source = base_raw / f"{table}.parquet"
        if not source.is_file():
            continue
        columns = con.execute(f"DESCRIBE SELECT * FROM '{source}'").fetchall()
        select = ", ".join(
            f"CASE WHEN c = 0 THEN {col} ELSE {col} || '-c' || c END AS {col}"
            if col in ids
            else f"CAST({col} AS TIMESTAMPTZ) AS {col}"
            if "TIMESTAMP" in kind
            else col
            for col, kind, *_ in columns
        )
        log(f"  {table} x {copies}")
        con.execute(
            f"COPY (SELECT {select} FROM '{source}', range({copies}) r(c)) "
            f"TO '{target / f'{table}.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
        )
    con.close()
    shutil.copy(base_raw / "manifest.json", target / "manifest.json")
    return target


def table_rows(raw: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    try:
        return {
            table: int(
                con.execute(f"SELECT count(*) FROM '{raw / f'{table}.parquet'}'").fetchone()[0]
            )
            for table in ("events", "leads", "accounts")
        }
    finally:
        con.close()


# -- measuring ----------------------------------------------------------------------------------
class TreeSampler(threading.Thread):
    """Peak RSS of a process and its descendants (and of its Java descendants alone), and the
    peak size of a directory tree (DuckDB's spill), sampled every ``SAMPLE_SECONDS``."""

    def __init__(self, pid: int, spill_root: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.spill_root = pid, spill_root
        self.peak, self.peak_java, self.peak_spill = 0, 0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        last_spill = 0.0
        while not self._halt.is_set():
            total = java = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    total += rss
                    if proc.name().startswith("java"):
                        java += rss
                except psutil.NoSuchProcess:
                    continue
            self.peak, self.peak_java = max(self.peak, total), max(self.peak_java, java)
            if time.monotonic() - last_spill > 1.0:
                self.peak_spill = max(self.peak_spill, dir_size(self.spill_root, "spill"))
                last_spill = time.monotonic()
            self._halt.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def dir_size(root: Path, name: str) -> int:
    """Bytes under every directory called ``name`` below ``root``."""
    total = 0
    for dirpath, _, files in os.walk(root):
        if name in Path(dirpath).parts:
            for f in files:
                try:
                    total += os.stat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
    return total


def child_build(raw: str, out: str, engine: str, memory_limit: str) -> None:
    """In the fresh interpreter: one build, its seconds and row counts as the last line."""
    import pandas as pd

    from core.tables import data_window
    from features.build import build_feature_tables

    start, end = data_window(Path(raw))
    kwargs: dict[str, Any] = {"memory_limit": memory_limit or None}
    if engine != "duckdb":
        kwargs |= {"engine": engine, "spark_master": "local[*]"}
    began = time.perf_counter()
    counts = build_feature_tables(Path(raw), Path(out), pd.Timestamp(start), pd.Timestamp(end), 7,
                                  **kwargs)  # fmt: skip
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "rows": counts}))


def measure(
    raw: Path, out: Path, engine: str, memory_limit: str, timeout: float, driver_memory: str = ""
) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--child", str(raw), str(out), engine, memory_limit]
    env = dict(os.environ)
    if engine == "spark" and driver_memory:
        # local[*] runs its executors inside the driver's JVM: its heap is the whole budget
        # (Spark's default is 1g); set before the JVM starts, as spark-submit would
        env["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {driver_memory} pyspark-shell"
    load = os.getloadavg()[0]  # other work on the box slows the build: recorded with it
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = TreeSampler(proc.pid, out)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        status = f"timed out after {timeout:.0f} s"
    finally:
        sampler.stop()
    result: dict[str, Any] = {
        "status": status,
        "wall_s": round(time.perf_counter() - began, 1),
        "peak_rss_gib": round(sampler.peak / GiB, 2),
        "peak_jvm_rss_gib": round(sampler.peak_java / GiB, 2),
        "peak_spill_gib": round(sampler.peak_spill / GiB, 2),
        "load_before": round(load, 2),
    }
    if status == "ok":
        done = json.loads(stdout.strip().splitlines()[-1])
        result["build_s"] = round(done["seconds"], 1)
        result["feature_rows"] = done["rows"]
    else:
        result["error"] = stderr.strip()[-1500:]
    shutil.rmtree(out, ignore_errors=True)
    return result


# -- results ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    import duckdb

    from benchmarks.perf import host

    info = {**host(), "duckdb": duckdb.__version__}
    try:
        import pyspark

        info["pyspark"] = pyspark.__version__
    except ImportError:
        pass
    return info


def load_results() -> dict[str, Any]:
    path = RESULTS / "capacity.json"
    return json.loads(path.read_text()) if path.is_file() else {"runs": {}}


def run_key(engine: str, size: str, memory_limit: str) -> str:
    return f"{engine}/{size}/{memory_limit or 'default'}"


def render(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = [
        "# Feature build capacity",
        "",
        (
            f"Measured on {m.get('cores', '?')} cores ({m.get('cpu', '?')}), "
            f"{m.get('memory_gib', '?')} GiB, Python {m.get('python', '?')}, duckdb "
            f"{m.get('duckdb', '?')}, pyspark {m.get('pyspark', '-')}. The load column is the "
            "machine's 1-minute load average when the build started ('-': not recorded); it lags, "
            "so right after another build it still counts that one. Well above the core count, "
            "other jobs shared the machine and the time is an upper bound."
        ),
        "",
        (
            "Event tables: the synthetic generator's "
            f"{results.get('base', {}).get('leads', '?'):,} leads over 39 weeks "
            f"({results.get('base', {}).get('events', 0):,} events), copied under new ids to reach "
            "each size (leads and accounts grow with events; 40 weekly ticks throughout). Peak RSS is "
            "the build process and all its children (Spark's JVM and Python workers), sampled every "
            "0.2 s; spill is the peak size of DuckDB's temporary directory."
        ),
        "",
        (
            "| engine | events | leads | feature rows (lead x tick) | memory limit | build | peak RSS "
            "| of which JVM | peak spill | s per 1M events | load | status |"
        ),
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    order = {"duckdb": 0, "spark": 1}
    runs = sorted(
        results["runs"].values(),
        key=lambda r: (order.get(r["engine"], 9), r["events"], r["memory_limit"] or ""),
    )
    for r in runs:
        behavior = r.get("feature_rows", {}).get("lead_behavior")
        build = f"{r['build_s']:.1f} s" if "build_s" in r else "-"
        per_m = f"{r['build_s'] / (r['events'] / 1e6):.1f}" if "build_s" in r else "-"
        jvm = f"{r['peak_jvm_rss_gib']:.2f} GiB" if r["engine"] == "spark" else "-"
        lines.append(
            f"| {r['engine']} | {r['events']:,} | {r['leads']:,} | "
            f"{f'{behavior:,}' if behavior else '-'} | {limit_text(r)} | "
            f"{build} | {r['peak_rss_gib']:.2f} GiB | {jvm} | {r['peak_spill_gib']:.2f} GiB | "
            f"{per_m} | {load_text(r)} | {r['status']} |"
        )
    for note in results.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def load_text(r: dict[str, Any]) -> str:
    """The load average a run started under ('-' for runs recorded before it was kept)."""
    return f"{r['load_before']:.1f}" if "load_before" in r else "-"


def limit_text(r: dict[str, Any]) -> str:
    """The memory cap of a run: DuckDB's memory_limit, or the Spark driver's heap."""
    if r["engine"] == "spark":
        return f"driver heap {r.get('spark_driver_memory') or '1g (default)'}"
    return r["memory_limit"] or "default"


def save(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    text = render(results)
    (RESULTS / "capacity.md").write_text(text)
    doc = DOC.read_text() if DOC.is_file() else ""
    if MARKERS[0] in doc and MARKERS[1] in doc:
        table = text[text.index("| engine") :]
        head, rest = doc.split(MARKERS[0], 1)
        DOC.write_text(f"{head}{MARKERS[0]}\n{table}{MARKERS[1]}{rest.split(MARKERS[1], 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1M,10M", help=f"comma list of {', '.join(SIZES)}")
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--memory-limit", default="", help="DuckDB memory_limit, e.g. 8GB")
    parser.add_argument(
        "--spark-driver-memory",
        default="12g",
        help="the Spark driver's heap in local[*] mode (where the executors run), e.g. 12g",
    )
    parser.add_argument("--base-leads", type=int, default=16_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per build")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--render", action="store_true", help="rewrite capacity.md only")
    parser.add_argument("--child", nargs=4, metavar=("RAW", "OUT", "ENGINE", "LIMIT"))
    args = parser.parse_args()
    if args.child:
        child_build(*args.child)
        return
    results = load_results()
    if args.render:
        save(results)
        return
    engines = [e for e in args.engines.split(",") if e]
    if "spark" in engines and not spark_engine_available():
        print("spark: pending (features.build.build_feature_tables takes no engine= yet)")
        engines.remove("spark")
    args.work.mkdir(parents=True, exist_ok=True)
    base = base_data(args.work, args.base_leads, args.seed)
    base_rows = table_rows(base)
    results["machine"] = machine()
    results["base"] = {"leads": base_rows["leads"], "events": base_rows["events"]}
    for size in args.sizes.split(","):
        copies = max(1, round(SIZES[size] / base_rows["events"]))
        raw = replicated(args.work, base, copies)
        rows = table_rows(raw)
        for engine in engines:
            limit = args.memory_limit if engine == "duckdb" else ""
            heap = args.spark_driver_memory if engine == "spark" else ""
            log(f"{engine} {size}: {rows['events']:,} events, {rows['leads']:,} leads")
            r = measure(raw, args.work / "out", engine, limit, args.timeout, heap)
            r |= {"engine": engine, "size": size, "copies": copies, "memory_limit": limit}
            r |= {"spark_driver_memory": heap} if heap else {}
            r |= {"events": rows["events"], "leads": rows["leads"], "accounts": rows["accounts"]}
            r["date"] = time.strftime("%Y-%m-%d %H:%M")
            log(f"  {r['status']}: {r.get('build_s', '-')} s, peak {r['peak_rss_gib']} GiB"
                f" (JVM {r['peak_jvm_rss_gib']}), spill {r['peak_spill_gib']} GiB")  # fmt: skip
            results["runs"][run_key(engine, size, limit)] = r
            save(results)


if __name__ == "__main__":
    main()

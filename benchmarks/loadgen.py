"""HTTP load generator, run in its own process so it never shares an interpreter with a server.

    python benchmarks/loadgen.py URL BODIES.jsonl --mode sequential --requests 2000
    python benchmarks/loadgen.py URL BODIES.jsonl --mode closed --connections 16 --seconds 10
    python benchmarks/loadgen.py URL BODIES.jsonl --mode rate --rate 200 --seconds 60

Each line of BODIES.jsonl is one request body, sent in turn (cycling). Keep-alive connections
(one per thread, reopened after an error). Modes: ``sequential`` sends one request at a time on
one connection (latency); ``closed`` keeps ``connections`` requests in flight (capacity);
``rate`` schedules requests at a fixed rate across the connections and measures from the
scheduled start, so a stall shows as latency rather than as fewer requests (coordinated
omission). Prints one JSON object: requests, status counts, errors, throughput, latency
percentiles in ms, and per-window p99 (``--window`` seconds) to show whether it is stable.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


class Client:
    """One keep-alive connection to one URL; ``post`` returns (status, seconds)."""

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path or "/"
        self.headers = {"Content-Type": "application/json", **headers}
        self.timeout_s = timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self.conn.request("POST", self.path, body, self.headers)
            response = self.conn.getresponse()
            response.read()
            return response.status, time.perf_counter() - start
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return 0, time.perf_counter() - start  # 0: no HTTP answer (refused, reset, timeout)


def summarize(
    samples: list[tuple[float, int, float]], elapsed: float, window_s: float
) -> dict[str, object]:
    """samples: (start offset s, status, latency s)."""
    statuses = Counter(str(s) for _, s, _ in samples)
    lat = np.asarray([x for _, _, x in samples], dtype=float) * 1000.0
    out: dict[str, object] = {
        "requests": len(samples),
        "seconds": round(elapsed, 3),
        "throughput_rps": round(len(samples) / elapsed, 1) if elapsed else 0.0,
        "status": dict(statuses),
        "errors": sum(n for s, n in statuses.items() if s != "200"),
    }
    if len(lat):
        out["latency_ms"] = {
            f"p{q}": round(float(np.percentile(lat, q)), 3) for q in (50, 90, 99, 99.9)
        } | {"max": round(float(lat.max()), 3), "mean": round(float(lat.mean()), 3)}
        starts = np.asarray([t for t, _, _ in samples])
        windows = []
        for lo in np.arange(0.0, max(elapsed, window_s), window_s):
            sel = lat[(starts >= lo) & (starts < lo + window_s)]
            if len(sel):
                windows.append(round(float(np.percentile(sel, 99)), 3))
        out["window_p99_ms"] = windows
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    bodies = [line.encode() for line in Path(args.bodies).read_text().splitlines() if line]
    headers = dict(h.split(": ", 1) for h in args.header)
    cycle = itertools.cycle(bodies)
    lock = threading.Lock()
    samples: list[tuple[float, int, float]] = []

    def next_body() -> bytes:
        with lock:
            return next(cycle)

    for _ in range(args.warmup):  # warm the server's caches and the connection
        Client(args.url, headers, args.timeout).post(next_body())
    t0 = time.perf_counter()
    epoch0 = time.time()

    def done(result: dict[str, object]) -> dict[str, object]:
        if args.timeline:
            rows = [
                {"t": epoch0 + t, "status": s, "ms": round(x * 1000.0, 3)}
                for t, s, x in sorted(samples)
            ]
            Path(args.timeline).write_text(json.dumps(rows))
        return result

    if args.mode == "sequential":
        client = Client(args.url, headers, args.timeout)
        for _ in range(args.requests):
            begin = time.perf_counter() - t0
            status, took = client.post(next_body())
            samples.append((begin, status, took))
        return done(summarize(samples, time.perf_counter() - t0, args.window))

    deadline = t0 + args.seconds
    interval = 1.0 / args.rate if args.mode == "rate" else 0.0
    ticket = itertools.count()

    def worker() -> None:
        client = Client(args.url, headers, args.timeout)
        local = []
        while True:
            if args.mode == "rate":
                with lock:
                    n = next(ticket)
                due = t0 + n * interval
                if due >= deadline:
                    break
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                status, took = client.post(next_body())
                # latency from the scheduled start: a stalled server cannot hide behind it
                local.append((due - t0, status, time.perf_counter() - due))
            else:
                now = time.perf_counter()
                if now >= deadline:
                    break
                status, took = client.post(next_body())
                local.append((now - t0, status, took))
        with lock:
            samples.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done(summarize(samples, time.perf_counter() - t0, args.window))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("bodies", help="JSON lines, one request body each")
    parser.add_argument("--mode", choices=["sequential", "closed", "rate"], default="sequential")
    parser.add_argument("--requests", type=int, default=2000, help="sequential mode")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (rate)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--timeline", help="also write every request (t epoch s, status, ms) here")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()

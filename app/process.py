"""Start, wait for and stop the `bentoml serve` process (used by the demo and the e2e tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# BentoML's arbiter keeps running when the service's __init__ raises; its log says this.
STARTUP_FAILED = "Application startup failed"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start(
    cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen:
    """Run ``cmd`` in its own process group (the server and its workers stop together),
    its output going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(
    base_url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 180.0
) -> None:
    """Poll /readyz until it answers 200; fail at once, with the server's log, when the
    process exits or the service's start-up fails."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode}:\n{log[-4000:]}")
        if STARTUP_FAILED in log:
            raise RuntimeError(f"the service failed to start:\n{log[-4000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    raise TimeoutError(
        f"the service at {base_url} was not ready after {timeout_s:.0f}s:\n{log[-4000:]}"
    )


def stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop the server and the workers it started (they share its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_foreground(cmd: list[str], env: dict[str, str]) -> int:
    """Run the server in the foreground, echoing its output, until it stops or Ctrl-C.

    When the service's start-up fails, BentoML keeps its arbiter alive with no working worker;
    here the server is stopped at once and the exit code is 1, so a missing or unloadable
    model fails fast instead of leaving a process that never becomes ready.
    """
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    assert proc.stdout is not None

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwind to `finally`, which stops the server's process group

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            if STARTUP_FAILED in line:
                stop(proc)
                return 1
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop(proc)

"""A private PostgreSQL server for tests that stop or restart it (never the machine's shared one
on 5432, which other tests and CI use): initdb into a temp directory, run by the ``postgres``
user (initdb refuses root), on a free loopback port. ``initdb`` and the first start take about a
second here; a fast restart a quarter of one."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from receiver import free_port

BIN_DIRS = [Path(p) for p in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")]


class Unavailable(RuntimeError):
    """The PostgreSQL server binaries, or a user to run them as, are missing."""


def _bin_dir() -> Path:
    for d in BIN_DIRS:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    raise Unavailable(f"initdb/pg_ctl not found (looked in {', '.join(map(str, BIN_DIRS))}, PATH)")


class PrivateServer:
    """``start()``, ``stop()``, ``restart()`` one PostgreSQL cluster of our own; ``url(schema)``
    for the state store. Trust authentication, loopback only, ``fsync=off`` (a test cluster)."""

    def __init__(self, user: str = "postgres") -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="funnel-pg-"))
        self.data, self.log = self.base / "data", self.base / "server.log"
        self.as_root = os.geteuid() == 0
        self.user = user
        if self.as_root:
            try:
                shutil.chown(self.base, user=user)
            except LookupError as exc:
                shutil.rmtree(self.base)
                raise Unavailable(f"running as root and there is no '{user}' user") from exc

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = shlex.join([str(self.bin / args[0]), *args[1:]])
        argv = ["su", self.user, "-s", "/bin/sh", "-c", cmd] if self.as_root else ["sh", "-c", cmd]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise Unavailable(f"{args[0]} failed ({done.returncode}): {tail}")

    def init(self) -> PrivateServer:
        # -N: no fsync of the new cluster (it is thrown away with the test)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-N")
        return self

    def _pg_ctl(self, *action: str) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, *action)

    def start(self) -> None:
        self._pg_ctl("-w", "start")

    def stop(self) -> None:
        """Fast shutdown: open transactions are aborted and their connections cut."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "restart")

    def url(self, schema: str | None = None) -> str:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        return url if schema is None else f"{url}?options=-csearch_path%3D{schema}"

    def close(self) -> None:
        try:
            self.stop()
        except Unavailable:
            pass  # never started, or already stopped
        shutil.rmtree(self.base, ignore_errors=True)

"""Fixtures of the job tests."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from jobhelpers import PG_URL
from pgserver import PrivateServer, Unavailable


@pytest.fixture
def pg_state_store(production_services: None) -> str:
    """A fresh PostgreSQL schema for one test's state store."""
    return PG_URL.format(schema=f"funnel_jobs_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivateServer]:
    """A PostgreSQL server of the module's own, which its tests may stop and restart. Without
    the server binaries (or a user to run them as) the tests skip, and fail in CI, as the
    production-profile tests do."""
    server = None
    try:
        server = PrivateServer().init()
        server.start()
    except (Unavailable, OSError, subprocess.TimeoutExpired) as exc:
        if server is not None:
            server.close()
        message = f"cannot run a private PostgreSQL server: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}: the state-store restart tests need it in CI")
        pytest.skip(message)
    yield server
    server.close()

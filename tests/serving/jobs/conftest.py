"""Fixtures of the job tests."""

from __future__ import annotations

import uuid

import pytest
from jobhelpers import PG_URL


@pytest.fixture
def pg_state_store(production_services: None) -> str:
    """A fresh PostgreSQL schema for one test's state store."""
    return PG_URL.format(schema=f"funnel_jobs_{uuid.uuid4().hex[:10]}")

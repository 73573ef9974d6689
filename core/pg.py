"""PostgreSQL helpers for the production profile.

MLflow and Optuna both keep their migration state in a table named ``alembic_version``; in one
schema they would overwrite each other's revision. The production config gives each its own
schema through the URL (``?options=-csearch_path%3D<schema>``), and this creates it on first use.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

_SCHEMA = re.compile(r"search_path\s*=\s*([A-Za-z_][A-Za-z0-9_]*)")


def schema_of(url: str) -> str | None:
    """The schema named by ``options=-csearch_path=<schema>`` in a SQLAlchemy URL, if any."""
    options = parse_qs(urlsplit(url).query).get("options", [])
    for option in options:
        match = _SCHEMA.search(unquote(option))
        if match:
            return match.group(1)
    return None


def ensure_schema(url: str) -> None:
    """Create the URL's schema if it names one and it does not exist; other URLs are left alone."""
    if not url.startswith("postgresql"):
        return
    schema = schema_of(url)
    if schema is None:
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.split("?", 1)[0])
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()

"""Colleague interest per lead: activity of the other leads of the same account."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Float64, String

from features.build import COLLEAGUE_INTEREST_FEATURES
from features.entities import OWNER, lead
from features.sources import colleague_interest_source

COLLEAGUE_TTL = timedelta(days=14)


def make_colleague_interest_fv(source: FileSource) -> FeatureView:
    # Keyed by lead, not account: "colleagues" excludes the lead itself, so the value differs
    # between two leads of the same account.
    return FeatureView(
        name="colleague_interest_fv",
        entities=[lead],
        ttl=COLLEAGUE_TTL,
        schema=[
            Field(name="lead_id", dtype=String),
            *(Field(name=name, dtype=Float64) for name in COLLEAGUE_INTEREST_FEATURES),
        ],
        source=source,
        online=True,
        description=(
            "Other leads of the lead's account at the snapshot: how many, how many engaged in "
            "30 days, their pricing views (30d), demo requests (90d) and opportunities."
        ),
        owner=OWNER,
        tags={"team": "data-science", "family": "colleague_interest", "cadence": "weekly"},
    )


colleague_interest_fv = make_colleague_interest_fv(colleague_interest_source)

"""Behavioral features per lead: what the lead did, by event type, over 7/30/90 days."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Float64, String

from features.build import LEAD_BEHAVIOR_FEATURES
from features.entities import OWNER, lead
from features.sources import lead_behavior_source

# Rows exist at every weekly tick; two weeks of TTL tolerate one missed build, no more.
BEHAVIOR_TTL = timedelta(days=14)


def make_lead_behavior_fv(source: FileSource) -> FeatureView:
    return FeatureView(
        name="lead_behavior_fv",
        entities=[lead],
        ttl=BEHAVIOR_TTL,
        schema=[
            Field(name="lead_id", dtype=String),
            *(Field(name=name, dtype=Float64) for name in LEAD_BEHAVIOR_FEATURES),
        ],
        source=source,
        online=True,
        description=(
            "Engagement of the lead before the snapshot: counts per event type over 7/30/90 "
            "days, days since the last event and pricing view, 7d-vs-30d trend, email click "
            "rate, active days, lead age. All float64."
        ),
        owner=OWNER,
        tags={"team": "data-science", "family": "behavioral", "cadence": "weekly"},
    )


lead_behavior_fv = make_lead_behavior_fv(lead_behavior_source)

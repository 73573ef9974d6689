"""Firmographic features per account, plus the lead's profile (raw title, source)."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Float64, String

from features.entities import OWNER, account, lead
from features.sources import account_firmographic_source, lead_profile_source

# Profile rows are written once at creation and stay valid: a long TTL, not an infinite one
# (Feast treats ttl=0 as "no limit" offline but the intent is clearer this way).
PROFILE_TTL = timedelta(days=3650)


def make_account_firmographic_fv(source: FileSource) -> FeatureView:
    return FeatureView(
        name="account_firmographic_fv",
        entities=[account],
        ttl=PROFILE_TTL,
        schema=[
            Field(name="account_id", dtype=String),
            Field(name="industry", dtype=String),
            Field(name="employee_count", dtype=Float64),
            Field(name="annual_revenue", dtype=Float64),
            Field(name="country", dtype=String),
        ],
        source=source,
        online=True,
        description="Company facts of the lead's account: industry, employees, revenue, country.",
        owner=OWNER,
        tags={"team": "data-science", "family": "firmographic"},
    )


def make_lead_profile_fv(source: FileSource) -> FeatureView:
    # account_id stays in the table but is not a feature: it is the account entity's join key,
    # and a feature of the same name would collide with it in the training frame. The same
    # value is served as lead_account_id, so a request carrying only a lead id can find the
    # lead's account in the online store (it is a key for serving, never a model input).
    return FeatureView(
        name="lead_profile_fv",
        entities=[lead],
        ttl=PROFILE_TTL,
        schema=[
            Field(name="lead_id", dtype=String),
            Field(name="lead_account_id", dtype=String),
            Field(name="job_title", dtype=String),
            Field(name="source", dtype=String),
        ],
        source=source,
        online=True,
        description="What the lead told us at sign-up: raw job title ('' if none) and source.",
        owner=OWNER,
        tags={"team": "data-science", "family": "firmographic", "pii": "false"},
    )


account_firmographic_fv = make_account_firmographic_fv(account_firmographic_source)
lead_profile_fv = make_lead_profile_fv(lead_profile_source)

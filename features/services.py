"""Feature services: the versioned contract between training and serving."""

from __future__ import annotations

from feast import FeatureService, FeatureView, OnDemandFeatureView

from features.behavioral import lead_behavior_fv
from features.colleague_interest import colleague_interest_fv
from features.entities import OWNER
from features.firmographic import account_firmographic_fv, lead_profile_fv
from features.job_title import job_title_odfv


def make_mql_v1(
    behavior: FeatureView,
    profile: FeatureView,
    firmographic: FeatureView,
    colleagues: FeatureView,
    job_title: OnDemandFeatureView,
) -> FeatureService:
    return FeatureService(
        name="mql_v1",
        features=[behavior, profile, firmographic, colleagues, job_title],
        description=(
            "Lead scoring (MQL) v1: behavior, profile, firmographics, colleague interest and "
            "job title. Entity rows need lead_id, account_id, event_timestamp and "
            "request_job_title ('' = stored title)."
        ),
        owner=OWNER,
        tags={"team": "data-science", "model": "mql", "version": "1"},
    )


mql_v1_service = make_mql_v1(
    lead_behavior_fv,
    lead_profile_fv,
    account_firmographic_fv,
    colleague_interest_fv,
    job_title_odfv,
)

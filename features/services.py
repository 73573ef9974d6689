"""Feature services: the versioned contract between training and serving."""

from __future__ import annotations

from feast import FeatureService, FeatureView, OnDemandFeatureView

from features.account_usage import account_usage_fv
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


def make_churn_v1(usage: FeatureView, firmographic: FeatureView) -> FeatureService:
    return FeatureService(
        name="churn_v1",
        features=[usage, firmographic],
        description=(
            "Churn risk v1: subscription, product usage and engagement of the account, and its "
            "firmographics. Entity rows need account_id and event_timestamp."
        ),
        owner=OWNER,
        tags={"team": "data-science", "model": "churn", "version": "1"},
    )


def make_nbo_v1(
    behavior: FeatureView,
    profile: FeatureView,
    firmographic: FeatureView,
    colleagues: FeatureView,
    job_title: OnDemandFeatureView,
    usage: FeatureView,
) -> FeatureService:
    return FeatureService(
        name="nbo_v1",
        features=[behavior, profile, firmographic, colleagues, job_title, usage],
        description=(
            "Next-best-offer v1: everything mql_v1 reads about the lead, plus its account's "
            "customer status and usage (eligibility rules and some offers' effects depend on "
            "them). Entity rows as for mql_v1."
        ),
        owner=OWNER,
        tags={"team": "data-science", "model": "nbo", "version": "1"},
    )


mql_v1_service = make_mql_v1(
    lead_behavior_fv,
    lead_profile_fv,
    account_firmographic_fv,
    colleague_interest_fv,
    job_title_odfv,
)
churn_v1_service = make_churn_v1(account_usage_fv, account_firmographic_fv)
nbo_v1_service = make_nbo_v1(
    lead_behavior_fv,
    lead_profile_fv,
    account_firmographic_fv,
    colleague_interest_fv,
    job_title_odfv,
    account_usage_fv,
)

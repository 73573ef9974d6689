"""The module `feast apply` (the CLI) reads: the default objects, pointing at <repo root>/data.

The CLI imports every non-ignored .py file of the repository as a top-level module (`behavioral`,
not `features.behavioral`), which would create each object twice. So the family modules are
listed in .feastignore and this single module re-exports their defaults. In code, use
`features.repo.feature_objects(data_dir)` and `features.store.apply` instead.
"""

from features.account_usage import account_usage_fv
from features.behavioral import lead_behavior_fv
from features.colleague_interest import colleague_interest_fv
from features.entities import account, lead
from features.firmographic import account_firmographic_fv, lead_profile_fv
from features.job_title import job_title_odfv
from features.services import churn_v1_service, mql_v1_service, nbo_v1_service
from features.sources import (
    account_firmographic_source,
    account_usage_source,
    colleague_interest_source,
    lead_behavior_source,
    lead_profile_source,
    title_request_source,
)

__all__ = [
    "account",
    "account_firmographic_fv",
    "account_firmographic_source",
    "account_usage_fv",
    "account_usage_source",
    "churn_v1_service",
    "colleague_interest_fv",
    "colleague_interest_source",
    "job_title_odfv",
    "lead",
    "lead_behavior_fv",
    "lead_behavior_source",
    "lead_profile_fv",
    "lead_profile_source",
    "mql_v1_service",
    "nbo_v1_service",
    "title_request_source",
]

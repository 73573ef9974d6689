"""All Feast objects of the repository, pointed at any data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from features import (
    account_usage,
    behavioral,
    colleague_interest,
    entities,
    firmographic,
    job_title,
    services,
    sources,
)


def feature_objects(data_dir: Path, engine: str = "duckdb") -> list[Any]:
    """Entities, sources, feature views and services reading `<data_dir>/features/*.parquet`
    (as `FileSource`s, or `SparkSource`s for Feast's Spark offline store when `engine` is
    "spark").

    Built fresh on each call (no shared state), so tests and jobs can apply the same definitions
    to different data directories in one process.
    """
    behavior_source = sources.make_lead_behavior_source(data_dir, engine)
    profile_source = sources.make_lead_profile_source(data_dir, engine)
    firmographic_source = sources.make_account_firmographic_source(data_dir, engine)
    colleague_source = sources.make_colleague_interest_source(data_dir, engine)
    usage_source = sources.make_account_usage_source(data_dir, engine)
    title_request = sources.make_title_request_source()

    behavior_fv = behavioral.make_lead_behavior_fv(behavior_source)
    profile_fv = firmographic.make_lead_profile_fv(profile_source)
    firmographic_fv = firmographic.make_account_firmographic_fv(firmographic_source)
    colleague_fv = colleague_interest.make_colleague_interest_fv(colleague_source)
    usage_fv = account_usage.make_account_usage_fv(usage_source)
    title_odfv = job_title.make_job_title_odfv(profile_fv, title_request)
    mql_v1 = services.make_mql_v1(
        behavior_fv, profile_fv, firmographic_fv, colleague_fv, title_odfv
    )
    churn_v1 = services.make_churn_v1(usage_fv, firmographic_fv)
    nbo_v1 = services.make_nbo_v1(
        behavior_fv, profile_fv, firmographic_fv, colleague_fv, title_odfv, usage_fv
    )
    return [
        entities.make_lead_entity(),
        entities.make_account_entity(),
        behavior_source,
        profile_source,
        firmographic_source,
        colleague_source,
        usage_source,
        title_request,
        behavior_fv,
        profile_fv,
        firmographic_fv,
        colleague_fv,
        usage_fv,
        title_odfv,
        mql_v1,
        churn_v1,
        nbo_v1,
    ]

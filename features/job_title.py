"""Job-title features, computed on demand so a brand-new lead in a request gets them too."""

from __future__ import annotations

import inspect
from typing import Any

from feast import FeatureView, Field, OnDemandFeatureView, RequestSource
from feast.types import Int64, String

from features.entities import OWNER
from features.firmographic import lead_profile_fv
from features.sources import title_request_source


def job_title_features(inputs: dict[str, Any]) -> dict[str, Any]:
    """Python-mode UDF: columns in, columns out (lists of values, one per row).

    Feast stores this function's source text and re-executes it on load, so it must be
    self-contained: the import stays inside.
    """
    from features.titles import normalize_title

    stored = list(inputs.get("job_title", []))
    requested = list(inputs.get("request_job_title", []))
    n = max(len(stored), len(requested))
    stored += [None] * (n - len(stored))
    requested += [None] * (n - len(requested))
    seniority, department, decision_maker = [], [], []
    for stored_title, request_title in zip(stored, requested):
        # A non-empty request title wins; otherwise the title stored with the lead.
        title = (
            request_title
            if isinstance(request_title, str) and request_title.strip()
            else stored_title
        )
        info = normalize_title(title if isinstance(title, str) else None)
        seniority.append(info.seniority)
        department.append(info.department)
        decision_maker.append(int(info.is_decision_maker))
    return {
        "title_seniority": seniority,
        "title_department": department,
        "is_decision_maker": decision_maker,
    }


def make_job_title_odfv(
    profile_fv: FeatureView, request_source: RequestSource
) -> OnDemandFeatureView:
    return OnDemandFeatureView(
        name="job_title_odfv",
        sources=[profile_fv[["job_title"]], request_source],
        schema=[
            Field(name="title_seniority", dtype=String),
            Field(name="title_department", dtype=String),
            Field(name="is_decision_maker", dtype=Int64),
        ],
        mode="python",
        udf=job_title_features,
        udf_string=inspect.getsource(job_title_features),
        description=(
            "Seniority (c_level..intern, unknown), department and decision-maker flag (0/1) "
            "parsed from the request's job title, or the stored one when the request sends ''."
        ),
        owner=OWNER,
        tags={"team": "data-science", "family": "job_title"},
    )


job_title_odfv = make_job_title_odfv(lead_profile_fv, title_request_source)

"""Account usage per customer account: the subscription in force, product usage against seats,
and the engagement of the account's people (the churn model's family, and the customer status
the next-best-offer model reads)."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Float64, String

from features.build import ACCOUNT_USAGE_FEATURES
from features.entities import OWNER, account
from features.sources import account_usage_source

# Rows exist at every weekly tick, like the behavioral ones.
USAGE_TTL = timedelta(days=14)
TEXT_FEATURES = frozenset({"plan"})


def make_account_usage_fv(source: FileSource) -> FeatureView:
    return FeatureView(
        name="account_usage_fv",
        entities=[account],
        ttl=USAGE_TTL,
        schema=[
            Field(name="account_id", dtype=String),
            *(
                Field(name=name, dtype=String if name in TEXT_FEATURES else Float64)
                for name in ACCOUNT_USAGE_FEATURES
            ),
        ],
        source=source,
        online=True,
        description=(
            "The account at the snapshot: customer or not; plan, seats, MRR, its 90-day change and "
            "tenure of the subscription in force; product events over 7/30 days and the 30 days "
            "before, active users and seat utilization; events and engaged people among its "
            "leads over 30 days; opportunities created in 90 days."
        ),
        owner=OWNER,
        tags={"team": "data-science", "family": "account_usage", "cadence": "weekly"},
    )


account_usage_fv = make_account_usage_fv(account_usage_source)

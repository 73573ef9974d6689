"""Feast entities: the lead (a person) and the account (their company)."""

from __future__ import annotations

from feast import Entity, ValueType

OWNER = "data-science@funnel.example"
_TAGS = {"team": "data-science", "pii": "false"}


# value_type is explicit: without it Feast infers it from the sources and warns on every apply.
def make_lead_entity() -> Entity:
    return Entity(
        name="lead",
        join_keys=["lead_id"],
        value_type=ValueType.STRING,
        description="A person in the funnel (CRM lead), keyed by lead_id such as 'L0000001'.",
        owner=OWNER,
        tags=_TAGS,
    )


def make_account_entity() -> Entity:
    return Entity(
        name="account",
        join_keys=["account_id"],
        value_type=ValueType.STRING,
        description="The company a lead works for, keyed by account_id such as 'A000001'.",
        owner=OWNER,
        tags=_TAGS,
    )


lead = make_lead_entity()
account = make_account_entity()

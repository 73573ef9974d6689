"""Request and response bodies of the scoring API (pydantic only, no BentoML or Feast).

Requests forbid unknown fields, so a misspelled field is a 422 that names it instead of being
silently ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import InitErrorDetails

from core.config import MAX_BATCH_LIMIT

LeadId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
JobTitle = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
# How fresh a response's features are. Field types, not a base class: a base class's fields
# would come first in the JSON answers.
FeaturesAsOf = Annotated[
    datetime | None, Field(description="Event time of the newest feature row used (UTC).")
]
FeatureAge = Annotated[float | None, Field(description="Now minus features_as_of.")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeadScoreRequest(_Request):
    """One lead to score, by id; ``job_title`` overrides the stored title (a new lead's title)."""

    lead_id: LeadId = Field(description="The lead's id in the CRM.", examples=["L0000001"])
    job_title: JobTitle | None = Field(
        default=None,
        description="Request-time job title; replaces the stored one for the title features.",
        examples=["VP Marketing"],
    )


class BatchRequest(_Request):
    """Several leads scored with one feature-store read. The upper bound is the service's
    ``serving.max_batch`` (checked by :meth:`check_size`, since it is configuration); the
    schema's own bound stops a huge list before its items are validated."""

    leads: list[LeadScoreRequest] = Field(min_length=1, max_length=MAX_BATCH_LIMIT)

    def check_size(self, max_batch: int) -> None:
        """Raise a pydantic ``ValidationError`` on ``leads`` when it holds too many items."""
        if len(self.leads) > max_batch:
            raise ValidationError.from_exception_data(
                "BatchRequest",
                [
                    InitErrorDetails(
                        type="too_long",
                        loc=("leads",),
                        input=f"{len(self.leads)} leads",
                        ctx={
                            "field_type": "List",
                            "max_length": max_batch,
                            "actual_length": len(self.leads),
                        },
                    )
                ],
            )


class Reason(BaseModel):
    """One feature that moved the score, as a sentence and as data."""

    text: str
    feature: str
    value: float | int | bool | str | None
    direction: Literal["raises", "lowers"]
    contribution: float = Field(description="Log-odds contribution (LightGBM pred_contrib).")


class LeadScore(BaseModel):
    lead_id: str
    probability: float = Field(ge=0.0, le=1.0, description="Calibrated probability of an MQL.")
    score: int = Field(ge=0, le=100, description="Signal Threshold Score, 0-100.")
    is_mql: bool = Field(description="probability >= threshold")
    threshold: float
    reasons: list[Reason]
    model_version: str
    feature_service: str
    features_as_of: FeaturesAsOf
    feature_age_seconds: FeatureAge


class BatchResponse(BaseModel):
    results: list[LeadScore]
    not_found: list[str]


class ErrorResponse(BaseModel):
    detail: str | list[dict]


AccountId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ChurnRiskRequest(_Request):
    """One customer account, by id."""

    account_id: AccountId = Field(description="The account's id in the CRM.", examples=["A000001"])


class ChurnRisk(BaseModel):
    account_id: str
    probability: float = Field(ge=0.0, le=1.0, description="Calibrated P(churn within 60 days).")
    risk_tier: str = Field(description="The tier the probability falls in (training.churn.tiers).")
    tier_thresholds: dict[str, float] = Field(description="Each tier's lowest probability.")
    reasons: list[Reason]
    model_version: str
    feature_service: str
    features_as_of: FeaturesAsOf
    feature_age_seconds: FeatureAge


class NextBestOfferRequest(LeadScoreRequest):
    """One lead, by id; ``job_title`` overrides the stored title, as for scoring."""


class OfferValue(BaseModel):
    offer_id: str
    uplift: float = Field(description="Predicted change in P(conversion) against no offer.")
    value: float = Field(description="Worth of a conversion (configs/offers.yaml).")
    cost: float = Field(description="Cost of the offer per exposure.")
    expected_net_value: float = Field(description="uplift x value - cost")


class NextBestOffer(BaseModel):
    lead_id: str
    stage: Literal["awareness", "consideration", "decision", "retention"]
    is_customer: bool
    offers: list[OfferValue] = Field(
        description="The lead's eligible offers, best expected net value first."
    )
    chosen_offer: str = Field(description="The offer to give, or 'control' for none.")
    policy: str = Field(
        description="What this model serves: 'learned' (best offer per lead), or the single "
        "offer (or 'control') it fell back to because the learned policy did not beat it."
    )
    policy_choice: str = Field(description="The policy's pick before exploration.")
    explored: bool = Field(description="Whether chosen_offer was drawn at random (exploration).")
    propensity: float = Field(
        gt=0.0, le=1.0, description="Probability that this answer gives chosen_offer; log it."
    )
    model_version: str
    feature_service: str
    features_as_of: datetime | None

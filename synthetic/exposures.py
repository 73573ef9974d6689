"""The synthetic offer experiment: randomized offer exposures with a known effect per offer.

How the data arise
------------------
* Every ``CAMPAIGN_EVERY_WEEKS`` weeks (from week 4, while a 14-day outcome window still fits in
  the data) a campaign reaches each existing lead with probability ``EXPOSE_P`` during the
  campaign day. The lead gets one arm drawn uniformly from the offers it is eligible for plus
  ``control`` (no offer), and the probability of that draw is logged as ``propensity``.
* Eligibility follows the offers' rules (``OFFERS``, the same as ``configs/offers.yaml``) on the
  lead's funnel stage at the campaign tick, by the default stage rules (``lead_stage``):
  retention = the account is a customer; decision = a demo request or trial signup in 30 days,
  or an opportunity at the account in 90 days; consideration = a pricing view, webinar or content
  download in 30 days; awareness otherwise.
* A lead converts within 14 days with probability ``sigmoid(base + effect[arm])``. Both are fixed
  functions of what the feature tables show at the tick (``base_logit``, ``offer_effects``), and
  the effects differ by segment: each offer helps one kind of lead and hurts another.

The oracle
----------
For every exposure, the true conversion probability under every arm (ineligible ones too),
written to ``<out>/oracle/nbo_oracle.parquet`` as ``p_control`` and ``p_<offer>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEEK_S = 7 * 86_400
DAY_S = 86_400
OUTCOME_DAYS = 14
CAMPAIGN_EVERY_WEEKS = 4
FIRST_CAMPAIGN_WEEK = 4
EXPOSE_P = 0.8
CONTROL = "control"
STAGES = ("awareness", "consideration", "decision", "retention")

# id -> who may get it. Kept in step with configs/offers.yaml (a test checks it).
OFFERS: dict[str, dict] = {
    "discount_15": {"customers": False, "stages": ("awareness", "consideration", "decision")},
    "exec_briefing": {"customers": False, "stages": ("consideration", "decision")},
    "case_study": {"customers": None, "stages": ("awareness", "consideration", "retention")},
    "seat_upsell": {"customers": True, "stages": ("retention",)},
}
OFFER_IDS: tuple[str, ...] = tuple(OFFERS)
ARMS: tuple[str, ...] = (CONTROL, *OFFER_IDS)

# what the lead is, in the generator's indices (see synthetic.generate)
LOW_SENIORITY = ("individual_contributor", "intern", "unknown")


@dataclass
class LeadState:
    """What the feature tables show about each existing lead at a campaign tick."""

    pricing_30d: np.ndarray
    demo_30d: np.ndarray
    trial_30d: np.ndarray
    webinar_30d: np.ndarray
    content_30d: np.ndarray
    decision_maker: np.ndarray  # bool
    low_seniority: np.ndarray  # bool
    employees: np.ndarray
    industry_fit: np.ndarray  # 0/1
    is_customer: np.ndarray  # bool (the lead's account)
    utilization: np.ndarray  # the account's active users / seats; NaN if not a customer
    account_opportunities_90d: np.ndarray


def lead_stage(s: LeadState) -> np.ndarray:
    """Funnel stage per lead by the default rules (indices into ``STAGES``)."""
    decision = (s.demo_30d >= 1) | (s.trial_30d >= 1) | (s.account_opportunities_90d >= 1)
    consideration = (s.pricing_30d >= 1) | (s.webinar_30d >= 1) | (s.content_30d >= 1)
    return np.select([s.is_customer, decision, consideration], [3, 2, 1], default=0).astype(np.int8)


def eligibility(stage: np.ndarray, is_customer: np.ndarray) -> np.ndarray:
    """(n, n_offers) mask: may this lead get this offer."""
    out = np.zeros((len(stage), len(OFFER_IDS)), dtype=bool)
    for j, rule in enumerate(OFFERS.values()):
        ok = np.isin(stage, [STAGES.index(s) for s in rule["stages"]])
        if rule["customers"] is not None:
            ok &= is_customer == rule["customers"]
        out[:, j] = ok
    return out


def base_logit(s: LeadState) -> np.ndarray:
    """Logit of converting within 14 days with no offer."""
    return (
        -3.1
        + 0.4 * np.log1p(s.pricing_30d)
        + 0.6 * np.log1p(s.demo_30d)
        + 0.5 * (s.trial_30d >= 1)
        + 0.3 * s.decision_maker
        + 0.3 * s.industry_fit
        + 0.4 * s.is_customer
    )


def offer_effects(s: LeadState, stage: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(n, n_offers) change of the conversion logit per offer; positive helps, negative hurts."""
    util = np.nan_to_num(s.utilization, nan=0.0)
    effects = {
        # price-sensitive evaluators at small and mid-sized companies; large ones read a discount
        # as a weak product
        "discount_15": 1.2 * ((s.pricing_30d >= 1) & (s.employees < 500))
        - 0.6 * (s.employees >= 1000),
        # decision makers at companies of 200+ welcome it; junior people are put off
        "exec_briefing": 1.1 * (s.decision_maker & (s.employees >= 200)) - 0.8 * s.low_seniority,
        # useful when evaluating, noise when merely aware
        "case_study": 0.8 * (stage == STAGES.index("consideration"))
        - 0.5 * (stage == STAGES.index("awareness"))
        + 0.3 * (stage == STAGES.index("retention")),
        # customers short of seats buy more; those with idle seats are reminded of the waste
        "seat_upsell": 1.3 * (util >= 0.8) - 0.8 * (util < 0.4),
    }
    return scale * np.column_stack([effects[o].astype(float) for o in OFFER_IDS])


def true_probabilities(s: LeadState, stage: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(n, n_arms) conversion probability under each arm, columns in ``ARMS`` order."""
    base = base_logit(s)[:, None]
    logits = np.hstack([base, base + offer_effects(s, stage, scale)])
    return 1.0 / (1.0 + np.exp(-logits))


def campaign_weeks(weeks: int) -> list[int]:
    """Campaign ticks whose 14-day outcome window (plus the campaign day) ends in the data."""
    last = weeks * WEEK_S - (OUTCOME_DAYS + 1) * DAY_S
    return [
        w for w in range(FIRST_CAMPAIGN_WEEK, weeks, CAMPAIGN_EVERY_WEEKS) if w * WEEK_S <= last
    ]


@dataclass
class Exposures:
    lead: np.ndarray
    arm: np.ndarray  # indices into ARMS
    exposed_at: np.ndarray  # epoch seconds
    propensity: np.ndarray
    converted_at: np.ndarray  # epoch seconds, -1 = did not convert
    p_true: np.ndarray  # (n, n_arms)
    stage: np.ndarray


def expose(
    rng: np.random.Generator, leads: np.ndarray, state: LeadState, t: int, scale: float = 1.0
) -> Exposures:
    """One campaign at tick ``t`` over the existing ``leads`` (``state`` rows are theirs)."""
    stage = lead_stage(state)
    eligible = eligibility(stage, state.is_customer)
    reached = rng.random(len(leads)) < EXPOSE_P
    arms_ok = np.hstack([np.ones((len(leads), 1), dtype=bool), eligible])  # control always
    k = arms_ok.sum(axis=1)
    pick = np.minimum((rng.random(len(leads)) * k).astype(np.int64), k - 1)
    # the pick-th allowed arm of each row
    arm = np.argmax(np.cumsum(arms_ok, axis=1) > pick[:, None], axis=1)
    p_true = true_probabilities(state, stage, scale)
    converted = rng.random(len(leads)) < p_true[np.arange(len(leads)), arm]
    exposed_at = t + (rng.random(len(leads)) * 12 * 3600).astype(np.int64)
    delay = (rng.random(len(leads)) * OUTCOME_DAYS * DAY_S).astype(np.int64)
    converted_at = np.where(converted, exposed_at + 1 + delay, -1)
    keep = reached
    return Exposures(
        lead=leads[keep],
        arm=arm[keep],
        exposed_at=exposed_at[keep],
        propensity=(1.0 / k)[keep],
        converted_at=converted_at[keep],
        p_true=p_true[keep],
        stage=stage[keep],
    )


def concat(parts: list[Exposures]) -> Exposures:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Exposures(empty, empty, empty, np.zeros(0), empty, np.zeros((0, len(ARMS))), empty)
    return Exposures(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Exposures.__dataclass_fields__)
    )

"""Turn per-row feature contributions into sentences a salesperson can read.

Pure functions: no LightGBM, no MLflow. A contribution is in log-odds, as LightGBM's
``pred_contrib`` returns it; positive raises the score, negative lowers it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_EVENT_WORDS = {
    "page_view": ("viewed", "pages"),
    "pricing_view": ("viewed", "the pricing page"),
    "docs_view": ("read", "the docs"),
    "email_open": ("opened", "emails"),
    "email_click": ("clicked", "emails"),
    "webinar_attended": ("attended", "webinars"),
    "content_download": ("downloaded", "content"),
    "demo_request": ("requested", "a demo"),
    "trial_signup": ("signed up for", "a trial"),
    "product_active": ("used", "the product"),
    "events": ("was active", "on the site or in email"),
}

_FIXED = {
    "trend_7d_vs_30d": "Activity trend this week vs the last month is {v:.2f}x",
    "email_click_rate_90d": "Clicked {v:.2f} times per email opened in the last 90 days",
    "active_days_30d": "Active on {v:.0f} of the last 30 days",
    "lead_age_days": "Became a lead {v:.0f} days ago",
    "n_colleagues": "{v:.0f} colleague(s) from the same company are known leads",
    "engaged_colleagues_30d": "{v:.0f} colleagues were active in the last 30 days",
    "colleague_pricing_views_30d": "Colleagues viewed pricing {v:.0f} times in the last 30 days",
    "colleague_demo_requests_90d": "Colleagues requested {v:.0f} demos in the last 90 days",
    "colleague_open_opportunities": "The company already has {v:.0f} open opportunities",
    "employee_count": "Company size is {v:,.0f} employees",
    "annual_revenue": "Company revenue is about ${v:,.0f}",
    "industry": "Industry is {s}",
    "country": "Based in {s}",
    "source": "Came in through {s}",
    "title_seniority": "Seniority: {s}",
    "title_department": "Department: {s}",
    "is_decision_maker": "{dm}",
    # accounts (churn): the subscription, usage and the account's people
    "plan": "On the {s} plan",
    "seats": "Pays for {v:.0f} seat(s)",
    "mrr": "Pays ${v:,.0f} a month",
    "tenure_days": "A customer for {v:.0f} days",
    "usage_events_7d": "The product was used {v:.0f} times in the last 7 days",
    "usage_events_30d": "The product was used {v:.0f} times in the last 30 days",
    "usage_events_prev_30d": "The product was used {v:.0f} times in the 30 days before that",
    "active_users_30d": "{v:.0f} people used the product in the last 30 days",
    "seat_utilization_30d": "{pct} of paid seats were in use in the last 30 days",
    "lead_engagement_30d": "The account's people had {v:.0f} marketing touches in 30 days",
    "engaged_leads_30d": "{v:.0f} of the account's people engaged in the last 30 days",
    "known_leads": "{v:.0f} people at the account are known",
    "opportunities_90d": "{v:.0f} opportunities opened at the account in 90 days",
}

# Zero reads better as "no ..." than as "0 ...".
_ZERO = {
    "n_colleagues": "No colleague from the same company is a known lead",
    "engaged_colleagues_30d": "No colleague was active in the last 30 days",
    "colleague_pricing_views_30d": "No colleague viewed pricing in the last 30 days",
    "colleague_demo_requests_90d": "No colleague requested a demo in the last 90 days",
    "colleague_open_opportunities": "The company has no open opportunity",
    "active_days_30d": "Not active on any of the last 30 days",
    "usage_events_7d": "Nobody used the product in the last 7 days",
    "usage_events_30d": "Nobody used the product in the last 30 days",
    "usage_events_prev_30d": "Nobody used the product in the 30 days before that",
    "active_users_30d": "Nobody used the product in the last 30 days",
    "seat_utilization_30d": "None of the paid seats was used in the last 30 days",
    "lead_engagement_30d": "The account's people had no marketing touch in 30 days",
    "engaged_leads_30d": "None of the account's people engaged in the last 30 days",
    "opportunities_90d": "No opportunity opened at the account in 90 days",
}

# "days since" features: 999 means never (see features.build.NEVER_DAYS)
_RECENCY = {
    "days_since_last_event": (
        "Has no recorded activity",
        "Was active in the last 24 hours",
        "Last activity was {d} days ago",
    ),
    "days_since_last_pricing_view": (
        "Has never looked at pricing",
        "Looked at pricing in the last 24 hours",
        "Last looked at pricing {d} days ago",
    ),
}
NEVER_DAYS = 999.0


def _recency(feature: str, days: float) -> str:
    never, today, ago = _RECENCY[feature]
    if days >= NEVER_DAYS:
        return never
    if days < 1:
        return today
    return ago.format(d=f"{days:.0f}")


_WINDOW = re.compile(r"^(?P<event>[a-z_]+?)_(?:count_)?(?P<days>\d+)d$")


@dataclass(frozen=True)
class Reason:
    feature: str
    value: object
    contribution: float
    text: str

    @property
    def direction(self) -> str:
        return "raises" if self.contribution >= 0 else "lowers"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _change(feature: str, value: float) -> str:
    """Relative changes: the usage trend is a log ratio, the MRR change a fraction."""
    ratio = math.exp(value) if feature == "usage_trend_30d" else 1.0 + value
    what = "Product usage" if feature == "usage_trend_30d" else "Monthly spend"
    since = "on the previous 30 days" if feature == "usage_trend_30d" else "over 90 days"
    pct = abs(ratio - 1.0)
    if pct < 0.05:
        return f"{what} is steady {since}"
    return f"{what} is {'down' if ratio < 1 else 'up'} {pct:.0%} {since}"


def describe(feature: str, value: object) -> str:
    """One plain-English fact about a feature value, e.g. 'Viewed the pricing page 4 times in
    the last 7 days'."""
    if _is_missing(value):
        if feature == "days_since_last_pricing_view":
            return "Has never looked at pricing"
        return f"No data yet for {feature.replace('_', ' ')}"
    match = _WINDOW.match(feature)
    if match and match["event"] in _EVENT_WORDS:
        verb, obj = _EVENT_WORDS[match["event"]]
        n = float(value)
        times = "once" if n == 1 else f"{n:.0f} times"
        if n == 0:
            verb = "been active" if match["event"] == "events" else verb
            return f"Has not {verb} {obj} in the last {match['days']} days"
        return f"{verb.capitalize()} {obj} {times} in the last {match['days']} days"
    if feature in _RECENCY:
        return _recency(feature, float(value))  # type: ignore[arg-type]
    if feature in ("usage_trend_30d", "mrr_change_90d"):
        return _change(feature, float(value))  # type: ignore[arg-type]
    if feature == "is_customer":
        return "Is a customer" if float(value) >= 1 else "Is not a customer yet"  # type: ignore[arg-type]
    if feature in _ZERO and value == 0:
        return _ZERO[feature]
    template = _FIXED.get(feature)
    if template is None:
        return f"{feature.replace('_', ' ').capitalize()} is {value}"
    if feature == "is_decision_maker":
        return "Holds a decision-making role" if bool(value) else "Not in a decision-making role"
    text = str(value).replace("_", " ")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    return template.format(v=number, s=text, pct=f"{number:.0%}", dm="")


def top_reasons(
    names: list[str], values: list[object], contributions: list[float], k: int = 3
) -> list[Reason]:
    """The ``k`` features that moved this row's score most, strongest first."""
    if not (len(names) == len(values) == len(contributions)):
        raise ValueError("names, values and contributions must have the same length")
    return [
        Reason(names[i], values[i], float(contributions[i]), describe(names[i], values[i]))
        for i in top_indices(contributions, k)
    ]


def top_indices(contributions: Sequence[float], k: int = 3) -> list[int]:
    """Positions of the ``k`` largest contributions by size, strongest first (ties in feature
    order), zeros left out: the features ``top_reasons`` names, for callers that keep only
    those (a reasons cache stores the positions and contributions, not the whole row)."""
    order = sorted(range(len(contributions)), key=lambda i: abs(contributions[i]), reverse=True)
    return [i for i in order[:k] if contributions[i] != 0]

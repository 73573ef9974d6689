"""Hand-built raw tables for the feature tests (the real generator lives in funnel/data)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import pytest

from features.build import ENGAGEMENT_TYPES

START = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday


def ts(value: str | pd.Timestamp) -> pd.Timestamp:
    """A UTC timestamp from text; naive text is read as UTC."""
    out = pd.Timestamp(value)
    return out.tz_localize("UTC") if out.tzinfo is None else out.tz_convert("UTC")


def _utc(values: Iterable) -> pd.Series:
    stamps = [ts(v) for v in values]
    return pd.Series(pd.DatetimeIndex(stamps, dtype="datetime64[ns, UTC]"))


def raw_tables(
    leads: list[tuple[str, str, str | None, str]],
    events: list[tuple[str, str, str]] = (),
    opportunities: list[tuple[str, str]] = (),
    accounts: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Raw tables in the contract's dtypes.

    leads: (lead_id, account_id, job_title, created_at); events: (lead_id, event_type,
    timestamp); opportunities: (lead_id, created_at); accounts default to those the leads use.
    """
    lead_account = {lead_id: account for lead_id, account, _, _ in leads}
    account_ids = accounts if accounts is not None else sorted(set(lead_account.values()))
    accounts_df = pd.DataFrame(
        {
            "account_id": pd.Series(account_ids, dtype=object),
            "domain": [f"{a.lower()}.example" for a in account_ids],
            "industry": ["software"] * len(account_ids),
            "employee_count": pd.Series(
                [50 * (i + 1) for i in range(len(account_ids))], dtype="int64"
            ),
            "annual_revenue": pd.Series(
                [1e6 * (i + 1) for i in range(len(account_ids))], dtype="float64"
            ),
            "country": ["US"] * len(account_ids),
            "created_at": _utc(["2023-01-01"] * len(account_ids)),
        }
    )
    leads_df = pd.DataFrame(
        {
            "lead_id": pd.Series([lead[0] for lead in leads], dtype=object),
            "account_id": pd.Series([lead[1] for lead in leads], dtype=object),
            "email": [f"{lead[0].lower()}@x.example" for lead in leads],
            "job_title": pd.Series([lead[2] for lead in leads], dtype=object),
            "source": ["organic"] * len(leads),
            "created_at": _utc([lead[3] for lead in leads]),
        }
    )
    events = list(events)
    events_df = pd.DataFrame(
        {
            "event_id": pd.Series([f"E{i:08d}" for i in range(len(events))], dtype=object),
            "lead_id": pd.Series([e[0] for e in events], dtype=object),
            "account_id": pd.Series([lead_account.get(e[0]) for e in events], dtype=object),
            "event_type": pd.Series([e[1] for e in events], dtype=object),
            "timestamp": _utc([e[2] for e in events]),
            "properties": pd.Series([None] * len(events), dtype=object),
        }
    )
    opportunities = list(opportunities)
    opps_df = pd.DataFrame(
        {
            "opportunity_id": pd.Series(
                [f"O{i:07d}" for i in range(len(opportunities))], dtype=object
            ),
            "lead_id": pd.Series([o[0] for o in opportunities], dtype=object),
            "account_id": pd.Series([lead_account.get(o[0]) for o in opportunities], dtype=object),
            "created_at": _utc([o[1] for o in opportunities]),
            "amount": pd.Series([10_000.0] * len(opportunities), dtype="float64"),
            "stage": ["open"] * len(opportunities),
        }
    )
    return {
        "accounts": accounts_df,
        "leads": leads_df,
        "events": events_df,
        "opportunities": opps_df,
    }


def synthetic_raw(
    n_leads: int, events_per_lead: float, days: int = 364, seed: int = 0, leads_per_account: int = 5
) -> dict[str, pd.DataFrame]:
    """A random funnel of the contract's shape (for the store tests and timing the build)."""
    rng = np.random.default_rng(seed)
    n_accounts = max(1, n_leads // leads_per_account)
    account_ids = np.array([f"A{i:06d}" for i in range(1, n_accounts + 1)], dtype=object)
    lead_ids = np.array([f"L{i:07d}" for i in range(1, n_leads + 1)], dtype=object)
    lead_account = account_ids[rng.integers(0, n_accounts, n_leads)]
    span = pd.Timedelta(days=days)
    created = START + pd.to_timedelta(
        rng.uniform(-0.3, 0.9, n_leads) * span.total_seconds(), unit="s"
    )
    n_events = int(n_leads * events_per_lead)
    ev_lead = rng.integers(0, n_leads, n_events)
    offset = rng.exponential(days / 6, n_events)
    ev_ts = created[ev_lead] + pd.to_timedelta(offset, unit="D")
    weights = np.array([30, 6, 8, 20, 6, 2, 3, 1, 1], dtype=float)
    ev_type = np.array(ENGAGEMENT_TYPES, dtype=object)[
        rng.choice(len(ENGAGEMENT_TYPES), n_events, p=weights / weights.sum())
    ]
    titles = np.array(
        ["VP Eng", "marketing manager", "Software Engineer II", "", None, "Head of Data", "CTO"],
        dtype=object,
    )
    n_opps = n_leads // 20
    opp_lead = rng.choice(n_leads, n_opps, replace=False)
    opp_ts = created[opp_lead] + pd.to_timedelta(rng.uniform(1, 120, n_opps), unit="D")
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": account_ids,
                "domain": [f"{a.lower()}.example" for a in account_ids],
                "industry": rng.choice(["software", "retail", "finance"], n_accounts).astype(
                    object
                ),
                "employee_count": rng.integers(5, 5000, n_accounts).astype("int64"),
                "annual_revenue": rng.uniform(1e5, 1e8, n_accounts),
                "country": rng.choice(["US", "DE", "FR"], n_accounts).astype(object),
                "created_at": pd.Series(START - pd.Timedelta(days=400), index=range(n_accounts)),
            }
        ),
        "leads": pd.DataFrame(
            {
                "lead_id": lead_ids,
                "account_id": lead_account,
                "email": [f"{x.lower()}@x.example" for x in lead_ids],
                "job_title": titles[rng.integers(0, len(titles), n_leads)],
                "source": rng.choice(["organic", "webinar", "referral"], n_leads).astype(object),
                "created_at": pd.Series(created),
            }
        ),
        "events": pd.DataFrame(
            {
                "event_id": np.array([f"E{i:09d}" for i in range(n_events)], dtype=object),
                "lead_id": lead_ids[ev_lead],
                "account_id": lead_account[ev_lead],
                "event_type": ev_type,
                "timestamp": pd.Series(ev_ts),
                "properties": pd.Series([None] * n_events, dtype=object),
            }
        ),
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": np.array([f"O{i:07d}" for i in range(n_opps)], dtype=object),
                "lead_id": lead_ids[opp_lead],
                "account_id": lead_account[opp_lead],
                "created_at": pd.Series(opp_ts),
                "amount": rng.uniform(1e3, 1e5, n_opps),
                "stage": rng.choice(["open", "won", "lost"], n_opps).astype(object),
            }
        ),
    }


@pytest.fixture(scope="session")
def make_raw() -> Callable[..., dict[str, pd.DataFrame]]:
    """The hand-made raw-table builder, as a fixture (tests/ is not a package)."""
    return raw_tables


@pytest.fixture(scope="session")
def make_synthetic_raw() -> Callable[..., dict[str, pd.DataFrame]]:
    return synthetic_raw

"""The leads page: find a lead by id, company or hashed email; its score with a grade, the
reasons for and against, the score over past snapshots, its stage and next best offer.

``LeadDirectory`` holds the raw leads joined to their accounts in memory (built once per
version of the raw tables: a million leads take a few seconds and a few hundred MB), so a
search or a lead's page never reads the tables again. Emails are kept only as their SHA-256
(what ad platforms match on) and a masked form; the console never shows or logs one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from activation.destinations import hash_email
from core.config import GradeBounds
from core.tables import read_table

SHA256 = re.compile(r"^[0-9a-f]{64}$")
EMAILISH = re.compile(r"^[^@\s]+@[^@\s]+$")
GRADES = ("A", "B", "C", "D", "E")


def grade(score: float, bounds: GradeBounds) -> str:
    """A for a score at or above ``bounds.a``, ... D at or above ``bounds.d``, else E."""
    for letter, low in zip(GRADES, (bounds.a, bounds.b, bounds.c, bounds.d), strict=False):
        if score >= low:
            return letter
    return "E"


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``: enough to recognise, not to send."""
    local, _, domain = str(email).partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def _hashes(emails: Sequence[Any]) -> np.ndarray:
    return np.array([hash_email(e) if isinstance(e, str) else "" for e in emails], dtype=object)


@dataclass
class LeadDirectory:
    """Every lead with its account's domain and industry, searchable by id, company (domain or
    account id) and hashed email."""

    leads: pd.DataFrame  # indexed by lead_id
    by_hash: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, raw_dir: Any) -> LeadDirectory:
        leads = read_table(raw_dir, "leads")
        accounts = read_table(raw_dir, "accounts")[["account_id", "domain", "industry"]]
        return cls.build(leads, accounts)

    @classmethod
    def build(cls, leads: pd.DataFrame, accounts: pd.DataFrame) -> LeadDirectory:
        emails = leads["email"].to_numpy()
        hashes = _hashes(emails)
        account = accounts.drop_duplicates("account_id").set_index("account_id")
        frame = pd.DataFrame(
            {
                "lead_id": leads["lead_id"].astype(str).to_numpy(),
                "account_id": leads["account_id"].astype(str).to_numpy(),
                "job_title": leads["job_title"].to_numpy(),
                "source": leads["source"].to_numpy(),
                "created_at": pd.DatetimeIndex(pd.to_datetime(leads["created_at"], utc=True)),
                "email_sha256": hashes,
                "email": emails,  # kept to mask on a lead's page; never shown or logged whole
            }
        )
        frame["domain"] = account["domain"].reindex(frame["account_id"]).to_numpy()
        frame["industry"] = account["industry"].reindex(frame["account_id"]).to_numpy()
        frame = frame.set_index("lead_id", drop=False)
        return cls(frame, dict(zip(hashes, frame["lead_id"], strict=True)))

    def __post_init__(self) -> None:
        # the leads grouped by account: a company search matches the (fewer) accounts, then
        # takes their leads' rows without scanning every lead
        codes, uniques = pd.factorize(self.leads["account_id"], sort=True)
        self._order = np.argsort(codes, kind="stable")
        self._starts = np.searchsorted(codes[self._order], np.arange(len(uniques) + 1))
        self._accounts = pd.Index(uniques)
        domains = self.leads["domain"].to_numpy()[self._order[self._starts[:-1]]]
        self._domains = pd.Series(domains, dtype=object).astype(str).str.lower().to_numpy()
        # pandas builds an index's hash table on its first lookup (half a second for a million
        # ids): build them now, not in the first search
        for index in (self.leads.index, self._accounts):
            if len(index):
                index.get_loc(index[0])

    def _rows_of_accounts(self, positions: np.ndarray) -> pd.DataFrame:
        parts = [self._order[self._starts[i] : self._starts[i + 1]] for i in positions]
        rows = np.sort(np.concatenate(parts)) if parts else np.array([], dtype=int)
        return self.leads.iloc[rows]

    def __len__(self) -> int:
        return len(self.leads)

    def get(self, lead_id: str) -> dict[str, Any] | None:
        """One lead's row, its email masked (``email_masked``) and the email itself left out."""
        if lead_id not in self.leads.index:
            return None
        row = self.leads.loc[lead_id].to_dict()
        email = row.pop("email")
        row["email_masked"] = mask_email(email) if isinstance(email, str) else ""
        return row

    def search(self, query: str) -> tuple[pd.DataFrame, str]:
        """The leads matching ``query`` and how it was read: a lead id (exact), a SHA-256 of an
        email, an email (hashed here, then matched), else a company: an account id (exact) or
        a part of a domain (case-insensitive)."""
        q = query.strip()
        if not q:
            return self.leads.iloc[:0], ""
        if q in self.leads.index:
            return self.leads.loc[[q]], "lead id"
        lowered = q.lower()
        if SHA256.match(lowered):
            found = self.by_hash.get(lowered)
            return self.leads.loc[[found] if found else []], "hashed email"
        if EMAILISH.match(q):
            found = self.by_hash.get(hash_email(q))
            return self.leads.loc[[found] if found else []], "email (hashed before matching)"
        if q in self._accounts:
            return self._rows_of_accounts(np.array([self._accounts.get_loc(q)])), "account id"
        hit = np.flatnonzero([lowered in d for d in self._domains])
        return self._rows_of_accounts(hit), "company domain"


def split_reasons(reasons: Sequence[Any], per_side: int = 3) -> tuple[list[Any], list[Any]]:
    """The reasons that raise the score and those that lower it, strongest first, at most
    ``per_side`` of each."""
    ordered = sorted(reasons, key=lambda r: -abs(float(r.contribution)))
    up = [r for r in ordered if float(r.contribution) > 0][:per_side]
    down = [r for r in ordered if float(r.contribution) < 0][:per_side]
    return up, down


def history_entities(
    lead_id: str, account_id: str, created_at: pd.Timestamp, ticks: pd.DatetimeIndex
) -> pd.DataFrame:
    """The lead at every snapshot tick at or after its creation (the rows to score)."""
    created = pd.Timestamp(created_at)
    created = created.tz_localize("UTC") if created.tzinfo is None else created
    at = ticks[ticks >= created]
    return pd.DataFrame(
        {"lead_id": lead_id, "account_id": account_id, "event_timestamp": at}
    ).reset_index(drop=True)


def sparkline(points: Sequence[tuple[str, int]], width: int = 560, height: int = 120) -> dict:
    """An inline SVG line of scores (0-100) over snapshots: the polyline's points and the
    labels of the first and last snapshot."""
    if not points:
        return {"points": "", "width": width, "height": height, "dots": []}
    n = len(points)
    step = width / max(n - 1, 1)
    dots = [
        {
            "x": round(i * step, 1),
            "y": round(height - score * height / 100, 1),
            "label": label,
            "score": score,
        }
        for i, (label, score) in enumerate(points)
    ]
    return {
        "points": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "width": width,
        "height": height,
        "dots": dots,
    }

"""A messy CRM lead export, written the way CRMs write them, for trying `funnel import` on a file
with the traps real exports have (``funnel data sample-export``).

One row per lead, ``;``-separated, with:
- honest columns known when the lead came in: origin, source, visits, time on site, pages per
  visit, opt-outs, country (mostly blank);
- ``Created On`` as day-first dates (``13/02/2026``), the row's time;
- columns sales fill in after talking to the lead: ``Tags`` (a status), ``Call Duration (s)``
  (the call's length) and ``Lead Quality`` (filled in mostly once a lead converted): each
  predicts the label because the label caused it;
- ``Converted`` (0/1) blank in a few rows, ``Purchases`` (a count, 0-5);
- lines that end in the separator (an empty, unnamed last column).

The true conversion probability depends only on the honest columns, so a model without the
leaks can reach about the AUC of ``true_probability``; with them, far more, and useless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ORIGINS = ("Landing Page Submission", "API", "Lead Add Form", "Lead Import")
SOURCES = ("Google", "Direct Traffic", "Olark Chat", "Organic Search", "Reference", "Welingak")
TAGS_CONVERTED = ("Will revert after reading the email", "Closed by Horizzon", "Lost to EINS",
                  "Busy")  # fmt: skip
TAGS_OTHER = ("Ringing", "Interested in other courses", "Already a student", "switched off",
              "Will revert after reading the email", "Busy")  # fmt: skip


def lead_export(n: int = 8_000, seed: int = 7, start: str = "2026-01-05") -> pd.DataFrame:
    """The export as text columns, and ``true_probability`` (dropped before writing)."""
    rng = np.random.default_rng(seed)
    intent = rng.normal(size=n)
    origin = rng.choice(len(ORIGINS), n, p=[0.55, 0.3, 0.08, 0.07])
    source = rng.choice(len(SOURCES), n, p=[0.3, 0.27, 0.18, 0.13, 0.07, 0.05])
    visits = rng.poisson(np.exp(0.9 + 0.45 * intent))
    seconds = np.where(
        visits > 0, rng.lognormal(5.4 + 0.55 * intent, 0.8) * np.minimum(visits, 4) / 2, 0
    )
    pages = np.where(visits > 0, np.round(rng.gamma(2 + 0.6 * (intent > 0), 1.2), 2), 0)
    no_email = rng.random(n) < 0.08
    logit = (
        -1.6 + 0.9 * intent + np.array([0, -0.4, 1.8, -1.0])[origin]
        + np.array([0, -0.2, -0.5, 0.1, 1.2, 1.4])[source] - 0.8 * no_email
    )  # fmt: skip
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(int)
    created = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.integers(0, 300, n)), "D")
    tags = np.where(
        y == 1,
        rng.choice(TAGS_CONVERTED, n, p=[0.7, 0.2, 0.04, 0.06]),
        rng.choice(TAGS_OTHER, n, p=[0.35, 0.2, 0.1, 0.15, 0.1, 0.1]),
    )
    tags = np.where(rng.random(n) < 0.25, "", tags)  # not every call gets a tag
    quality_filled = rng.random(n) < np.where(y == 1, 0.75, 0.08)
    quality = np.where(
        quality_filled, rng.choice(["High in Relevance", "Might be", "Not Sure"], n), ""
    )
    converted = y.astype(str).astype(object)
    converted[rng.choice(n, 12, replace=False)] = ""
    return pd.DataFrame(
        {
            "Prospect ID": [f"{rng.integers(16**7, 16**8):08x}-{i:05d}" for i in range(n)],
            "Lead Origin": np.array(ORIGINS)[origin],
            "Lead Source": np.array(SOURCES)[source],
            "Do Not Email": np.where(no_email, "Yes", "No"),
            "TotalVisits": visits.astype(str),
            "Total Time Spent on Website": np.round(seconds).astype(int).astype(str),
            "Page Views Per Visit": pages.astype(str),
            "Country": np.where(rng.random(n) < 0.7, "", rng.choice(["India", "UAE", "US"], n)),
            "Created On": created.strftime("%d/%m/%Y"),
            "Tags": tags,
            "Call Duration (s)": np.round(rng.lognormal(4.6 + 1.0 * y, 0.8))
            .astype(int)
            .astype(str),
            "Lead Quality": quality,
            "Converted": converted,
            "Purchases": np.where(y == 1, rng.integers(1, 6, n), 0).astype(str),
            "true_probability": p,
        }
    )


def write_lead_export(path: Path, n: int = 8_000, seed: int = 7) -> pd.DataFrame:
    """Write the export as a CRM would (``;``, a trailing separator on every line) and return
    the frame with its ``true_probability``."""
    frame = lead_export(n, seed)
    text = frame.drop(columns="true_probability")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [";".join(text.columns) + ";"]
    lines += [";".join(row) + ";" for row in text.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return frame

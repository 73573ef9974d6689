"""Loader for the Hillstrom e-mail experiment (MineThatData, 2008): covariates, outcomes, arms.

Arms are randomized about 1/3 each: ``"control"`` (No E-Mail), ``"mens"`` (Mens E-Mail) and
``"womens"`` (Womens E-Mail). The spelling "Surburban" in ``zip_code`` is the original one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = ROOT.parent / "shared" / "datasets" / "hillstrom" / "hillstrom.csv"

ARM_NAMES = {"No E-Mail": "control", "Mens E-Mail": "mens", "Womens E-Mail": "womens"}
ARMS = ("control", "mens", "womens")
ZIP_CODES = ("Rural", "Surburban", "Urban")
CHANNELS = ("Multichannel", "Phone", "Web")
_REQUIRED = (
    "recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie",
    "channel", "segment", "visit", "spend",
)  # fmt: skip


def load_hillstrom(
    path: str | Path | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y_visit, y_spend, arm)`` from the Hillstrom csv (default: the shared datasets dir).

    ``X`` holds numeric covariates only: recency, history, the ordinal history segment (1-7),
    the mens/womens/newbie flags and one-hot zip code and channel. ``arm`` is a str array.
    """
    path = Path(DEFAULT_PATH if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"Hillstrom csv not found at {path}")
    df = pd.read_csv(path)
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}")
    unknown = sorted(set(df["segment"]) - set(ARM_NAMES))
    if unknown:
        raise ValueError(f"unknown segment value(s) {unknown} in {path}")

    X = pd.DataFrame(
        {
            "recency": df["recency"].astype(float),
            "history": df["history"].astype(float),
            # "1) $0 - $100" ... "7) $1,000 +": the leading digit is the ordinal rank.
            "history_segment": df["history_segment"].str.extract(r"^(\d+)")[0].astype(float),
            "mens": df["mens"].astype(float),
            "womens": df["womens"].astype(float),
            "newbie": df["newbie"].astype(float),
        }
    )
    for zip_code in ZIP_CODES:
        X[f"zip_{zip_code}"] = (df["zip_code"] == zip_code).astype(float)
    for channel in CHANNELS:
        X[f"channel_{channel}"] = (df["channel"] == channel).astype(float)
    y_visit = df["visit"].to_numpy(dtype=int)
    y_spend = df["spend"].to_numpy(dtype=float)
    arm = df["segment"].map(ARM_NAMES).to_numpy(dtype=object).astype(str)
    return X, y_visit, y_spend, arm


def arm_propensity(arm: np.ndarray) -> np.ndarray:
    """Per row, the empirical share of the arm it received (the experiment is randomized)."""
    arm = np.asarray(arm)
    _, inverse, counts = np.unique(arm, return_inverse=True, return_counts=True)
    return (counts / len(arm))[inverse]

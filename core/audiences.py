"""Audiences and campaigns (``configs/audiences.yaml``), validated strictly, and the pure
functions the sync jobs are made of: who is in an audience, what changed since the last sync,
and which offer each campaign member gets (with a randomized holdout and its propensity).

An audience is a set of leads. Its ``where`` conditions must all hold:
- ``stages``: the lead's funnel stage (by the ``stages`` rules of the main config);
- ``mql_score``: the 0-100 Signal Threshold Score of the MQL champion, ``{min, max}`` inclusive;
- ``churn_tiers``: the churn tier of the lead's account (customers only);
- ``best_offers``: the next-best-offer policy's pick for the lead (an offer id or ``control``);
- ``events``: feature conditions, e.g. ``"pricing_view_7d >= 1"``, ``"opportunities_90d == 0"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, model_validator

from core.config import (
    CONDITION_PATTERN,
    Config,
    ConfigError,
    StageName,
    Strict,
    format_validation_error,
    read_yaml_mapping,
)
from core.errors import InputError, UnknownNameError
from core.offers import CONTROL, Offers
from core.stages import OPS, parse_condition

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Condition = Annotated[str, Field(pattern=CONDITION_PATTERN)]


class ScoreRange(Strict):
    min: Annotated[float, Field(ge=0, le=100)] = 0
    max: Annotated[float, Field(ge=0, le=100)] = 100

    @model_validator(mode="after")
    def _ordered(self) -> ScoreRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Where(Strict):
    stages: Annotated[list[StageName], Field(min_length=1)] | None = None
    mql_score: ScoreRange | None = None
    churn_tiers: Annotated[list[str], Field(min_length=1)] | None = None
    best_offers: Annotated[list[str], Field(min_length=1)] | None = None
    events: list[Condition] = Field(default_factory=list)


class Audience(Strict):
    description: str = ""
    destination: Name
    where: Where = Where()


class Campaign(Strict):
    description: str = ""
    audience: Name
    destination: Name
    # share of eligible members kept out at random (they get nothing: the control arm)
    holdout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    offers: Annotated[list[str], Field(min_length=1)] | None = None  # default: every offer


class AudiencesFile(Strict):
    audiences: dict[Name, Audience] = Field(default_factory=dict)
    campaigns: dict[Name, Campaign] = Field(default_factory=dict)
    source: str = ""


def read_audiences(cfg: Config, offers: Offers, path: Path | None = None) -> AudiencesFile:
    """Load and validate the audiences file; a bad key, value or reference (an unknown
    destination, churn tier, offer or audience) raises ``ConfigError`` naming it."""
    path = path or cfg.jobs.audiences_file
    tree = read_yaml_mapping(path, "audiences file", "jobs.audiences_file")
    try:
        spec = AudiencesFile.model_validate({**tree, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    problems = _references(spec, cfg, offers)
    if problems:
        raise ConfigError(f"invalid audiences file {path}:\n" + "\n".join(problems))
    return spec


def _references(spec: AudiencesFile, cfg: Config, offers: Offers) -> list[str]:
    destinations = sorted(cfg.jobs.destinations)
    tiers = [t.name for t in cfg.training.churn.tiers]
    arms = [CONTROL, *offers.ids]
    out = []
    for name, aud in spec.audiences.items():
        where = f"  audiences.{name}"
        if aud.destination not in destinations:
            out.append(f"{where}.destination: unknown destination '{aud.destination}' "
                       f"(jobs.destinations: {destinations})")  # fmt: skip
        for tier in aud.where.churn_tiers or []:
            if tier not in tiers:
                out.append(f"{where}.where.churn_tiers: unknown tier '{tier}' (tiers: {tiers})")
        for offer in aud.where.best_offers or []:
            if offer not in arms:
                out.append(
                    f"{where}.where.best_offers: unknown offer '{offer}' ({offers.source}: {arms})"
                )
    for name, camp in spec.campaigns.items():
        where = f"  campaigns.{name}"
        if camp.audience not in spec.audiences:
            out.append(f"{where}.audience: unknown audience '{camp.audience}' "
                       f"(declared: {sorted(spec.audiences)})")  # fmt: skip
        if camp.destination not in destinations:
            out.append(f"{where}.destination: unknown destination '{camp.destination}' "
                       f"(jobs.destinations: {destinations})")  # fmt: skip
        for offer in camp.offers or []:
            if offer not in offers.ids:
                out.append(
                    f"{where}.offers: unknown offer '{offer}' ({offers.source}: {offers.ids})"
                )
    return out


def chosen_names(
    names: Sequence[str], declared: Mapping[str, object], what: str, source: str
) -> list[str]:
    """The ``names`` a job was asked for (all declared when none), each checked to exist."""
    unknown = sorted(set(names) - set(declared))
    if unknown:
        raise UnknownNameError(f"unknown {what}(s) {unknown}; {source} declares {sorted(declared)}")
    out = list(names) or list(declared)
    if not out:
        raise InputError(f"{source} declares no {what}s")
    return out


# -- who is in -------------------------------------------------------------------------------
def inputs_needed(where: Where) -> set[str]:
    """Which derived columns an audience reads: stage, mql_score, churn_tier, best_offer."""
    needed = set()
    if where.stages is not None:
        needed.add("stage")
    if where.mql_score is not None:
        needed.add("mql_score")
    if where.churn_tiers is not None:
        needed.add("churn_tier")
    if where.best_offers is not None:
        needed.add("best_offer")
    return needed


def audience_mask(where: Where, frame: pd.DataFrame) -> np.ndarray:
    """Rows of ``frame`` (one per lead) that satisfy every condition. A condition on a missing
    value (no score, not a customer, a NaN feature) does not hold."""
    missing = sorted(
        {*inputs_needed(where), *(parse_condition(e)[0] for e in where.events)} - set(frame.columns)
    )
    if missing:
        raise UnknownNameError(
            f"audience conditions read {missing}, which the features do not have"
        )
    mask = np.ones(len(frame), dtype=bool)
    if where.stages is not None:
        mask &= frame["stage"].isin(where.stages).to_numpy()
    if where.mql_score is not None:
        score = frame["mql_score"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            mask &= (score >= where.mql_score.min) & (score <= where.mql_score.max)
    if where.churn_tiers is not None:
        mask &= frame["churn_tier"].isin(where.churn_tiers).to_numpy()
    if where.best_offers is not None:
        mask &= frame["best_offer"].isin(where.best_offers).to_numpy()
    for event in where.events:
        name, op, value = parse_condition(event)
        x = frame[name].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            mask &= OPS[op](x, value) & ~np.isnan(x)
    return mask


def diff_members(previous: Iterable[str], current: Iterable[str]) -> tuple[list[str], list[str]]:
    """(adds, removes), each sorted: what a destination needs to go from ``previous`` to
    ``current``."""
    before, now = set(previous), set(current)
    return sorted(now - before), sorted(before - now)


# -- the policy's pick, for many leads at once ---------------------------------------------------
def best_offers(
    uplift: np.ndarray, offer_ids: Sequence[str], values: np.ndarray, costs: np.ndarray,
    eligible: np.ndarray, served_policy: str, control: str = CONTROL,
) -> np.ndarray:  # fmt: skip
    """Per row, what ``training.nbo_policy.greedy_arm`` picks: under the learned policy the
    eligible offer of highest net value (uplift x value - cost) when positive, else control;
    under a single-offer policy that offer where eligible, else control."""
    n = len(uplift)
    out = np.full(n, control, dtype=object)
    if served_policy == "learned":
        net = np.where(eligible, uplift * values - costs, -np.inf)
        best = np.argmax(net, axis=1)
        worth = net[np.arange(n), best] > 0
        out[worth] = np.asarray(offer_ids, dtype=object)[best[worth]]
    elif served_policy in offer_ids:
        j = list(offer_ids).index(served_policy)
        out[eligible[:, j]] = served_policy
    return out


# -- campaign assignment -----------------------------------------------------------------------
def uniforms(campaign: str, wave: str, subjects: Sequence[str], k: int = 3) -> np.ndarray:
    """(n, k) uniforms fixed by campaign, wave and subject: a rerun of a wave draws the same."""
    out = np.empty((len(subjects), k))
    for i, s in enumerate(subjects):
        digest = hashlib.sha256(f"{campaign}|{wave}|{s}".encode()).digest()
        out[i] = [int.from_bytes(digest[8 * j : 8 * j + 8], "big") / 2**64 for j in range(k)]
    return out


@dataclass(frozen=True)
class Assignment:
    arm: np.ndarray  # offer id or control, per member
    propensity: np.ndarray  # P(this arm | the member), the whole mechanism included
    holdout: np.ndarray  # kept out at random


def assign_offers(
    greedy: np.ndarray, eligible: np.ndarray, offer_ids: Sequence[str], holdout: float,
    epsilon: float, draws: np.ndarray, control: str = CONTROL,
) -> Assignment:  # fmt: skip
    """The campaign's randomized assignment.

    With probability ``holdout`` a member is held out (control). Otherwise, with probability
    ``epsilon`` the member gets an arm drawn uniformly from its eligible offers plus control,
    else the policy's pick ``greedy``. The propensity of the arm a member got sums every way it
    could have got it, so an uplift model can weight the outcome correctly.
    """
    n = len(greedy)
    arms_ok = np.hstack([np.ones((n, 1), dtype=bool), eligible])  # control always allowed
    names = np.asarray([control, *offer_ids], dtype=object)
    k = arms_ok.sum(axis=1)
    pick = np.minimum((draws[:, 2] * k).astype(np.int64), k - 1)
    explored_arm = names[np.argmax(np.cumsum(arms_ok, axis=1) > pick[:, None], axis=1)]
    held = draws[:, 0] < holdout
    explore = draws[:, 1] < epsilon
    arm = np.where(held, control, np.where(explore, explored_arm, greedy)).astype(object)
    is_control = arm == control
    propensity = (
        holdout * is_control
        + (1 - holdout) * ((1 - epsilon) * (arm == greedy) + epsilon / k)
    )  # fmt: skip
    return Assignment(arm=arm, propensity=propensity.astype(float), holdout=held)

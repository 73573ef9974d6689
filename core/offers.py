"""The offer catalogue (``configs/offers.yaml``), validated strictly, and eligibility as a pure
function of each unit's stage and customer status."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field, ValidationError, field_validator

from core.config import (
    Config,
    ConfigError,
    StageName,
    Strict,
    format_validation_error,
    read_yaml_mapping,
)

CONTROL = "control"


class Eligibility(Strict):
    customers: bool | None = None  # True: customers only, False: prospects only, None: anyone
    stages: Annotated[list[StageName], Field(min_length=1)] = Field(
        default_factory=lambda: ["awareness", "consideration", "decision", "retention"]
    )


class Offer(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    description: str = ""
    cost: Annotated[float, Field(ge=0)]
    value: Annotated[float, Field(gt=0)]
    eligible: Eligibility = Eligibility()

    @field_validator("id")
    @classmethod
    def _not_control(cls, value: str) -> str:
        if value == CONTROL:
            raise ValueError(f"'{CONTROL}' is the no-offer arm and cannot be an offer id")
        return value


class Offers(Strict):
    offers: Annotated[list[Offer], Field(min_length=1)]
    source: str = ""  # the file it came from, for messages (set by read_offers)

    @field_validator("offers")
    @classmethod
    def _unique(cls, offers: list[Offer]) -> list[Offer]:
        ids = [o.id for o in offers]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"offer ids must be unique; repeated: {dup}")
        return offers

    @property
    def ids(self) -> list[str]:
        return [o.id for o in self.offers]

    def get(self, offer_id: str) -> Offer:
        for offer in self.offers:
            if offer.id == offer_id:
                return offer
        raise KeyError(f"unknown offer '{offer_id}'; {self.source} declares {self.ids}")

    def values(self) -> np.ndarray:
        return np.array([o.value for o in self.offers], dtype=float)

    def costs(self) -> np.ndarray:
        return np.array([o.cost for o in self.offers], dtype=float)

    def eligible(self, stage: Sequence[str], is_customer: Sequence[float]) -> np.ndarray:
        """(n, n_offers) mask: may each unit get each offer (a missing status is 'not a
        customer')."""
        stage = np.asarray(stage, dtype=object)
        customer = np.nan_to_num(np.asarray(is_customer, dtype=float), nan=0.0) >= 1
        out = np.zeros((len(stage), len(self.offers)), dtype=bool)
        for j, offer in enumerate(self.offers):
            ok = np.isin(stage, offer.eligible.stages)
            if offer.eligible.customers is not None:
                ok &= customer == offer.eligible.customers
            out[:, j] = ok
        return out


def read_offers(path: Path | str) -> Offers:
    """Load and validate an offers file; a bad key or value raises ``ConfigError`` naming it."""
    path = Path(path)
    tree = read_yaml_mapping(
        path, "offers file", "training.nbo.offers_file", "with an 'offers' list"
    )
    try:
        return Offers.model_validate({**tree, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None


def load_offers(cfg: Config) -> Offers:
    return read_offers(cfg.training.nbo.offers_file)

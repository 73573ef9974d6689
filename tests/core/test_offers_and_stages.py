"""The offer catalogue and the stage rules: strict validation, eligibility, stage assignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, StagesConfig, load_config
from core.offers import read_offers
from core.stages import StageRules, assign_stages, features_needed, parse_condition


def write(tmp_path, text: str):
    path = tmp_path / "offers.yaml"
    path.write_text(text)
    return path


def test_shipped_offers_load():
    cfg = load_config()
    offers = read_offers(cfg.training.nbo.offers_file)
    assert offers.ids == ["discount_15", "exec_briefing", "case_study", "seat_upsell"]
    assert (offers.values() > 0).all() and (offers.costs() >= 0).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "offers:\n  - {id: a, cost: 1, value: 2, colour: red}\n",
            r"offers\.0\.colour: unknown key",
        ),
        ("offers:\n  - {id: a, cost: -1, value: 2}\n", r"offers\.0\.cost"),
        ("offers:\n  - {id: control, cost: 1, value: 2}\n", "no-offer arm"),
        ("offers:\n  - {id: a, cost: 1, value: 2}\n  - {id: a, cost: 1, value: 3}\n", "repeated"),
        (
            "offers:\n  - {id: a, cost: 1, value: 2, eligible: {stages: [buying]}}\n",
            r"offers\.0\.eligible\.stages\.0",
        ),
        ("offers: []\n", "offers"),
        ("- 1\n", "mapping"),
    ],
)
def test_bad_offers_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_offers(write(tmp_path, text))


def test_missing_offers_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="training.nbo.offers_file"):
        read_offers(tmp_path / "nope.yaml")


def test_eligibility_by_stage_and_customer_status(tmp_path):
    offers = read_offers(
        write(
            tmp_path,
            "offers:\n"
            "  - {id: promo, cost: 1, value: 9, eligible: {customers: false}}\n"
            "  - {id: upsell, cost: 1, value: 9, eligible: {customers: true}}\n"
            "  - {id: late, cost: 1, value: 9, eligible: {stages: [decision]}}\n",
        )
    )
    mask = offers.eligible(["awareness", "decision", "retention"], [0.0, np.nan, 1.0])
    assert mask.tolist() == [[True, False, False], [True, False, True], [False, True, False]]


def test_default_stage_rules_first_match_wins():
    rows = {
        "is_customer": [1, 0, 0, 0, np.nan],
        "demo_request_30d": [1, 1, 0, 0, 0],
        "trial_signup_30d": [0, 0, 0, 0, 0],
        "opportunities_90d": [0, 0, 0, 0, 0],
        "pricing_view_30d": [3, 0, 2, 0, np.nan],
        "webinar_attended_30d": [0, 0, 0, 0, 0],
        "content_download_30d": [0, 0, 0, 0, 0],
    }
    stages = assign_stages(StagesConfig(), rows)
    assert stages.tolist() == ["retention", "decision", "consideration", "awareness", "awareness"]


def test_one_row_path_agrees_with_the_array_path():
    """``StageRules.first`` (an online request) gives the stage the array path gives, on random
    rows with every operator, None and NaN among the values."""
    rules = StagesConfig(
        rules=[
            {"stage": "retention", "when": ["a >= 1", "b == 2"]},
            {"stage": "decision", "when": ["b != 0", "c < -1.5"]},
            {"stage": "consideration", "when": ["c > 0", "a <= 0"]},
        ]
    )
    compiled = StageRules(rules)
    rng = np.random.default_rng(0)
    values = [None, np.nan, -2.0, -1.5, 0, 0.5, 1, 2, 3]
    for _ in range(500):
        row = {k: [values[rng.integers(len(values))]] for k in "abc"}
        assert compiled.first(row) == assign_stages(rules, row)[0], row
    frame = pd.DataFrame({"a": [5.0, 0.0], "b": [0, 0], "c": [0.0, 0.0]}, index=[7, 9])
    assert compiled.first(frame.iloc[1:]) == "consideration"  # the first row, whatever its label
    with pytest.raises(KeyError, match="'c'"):
        compiled.first({"a": [1], "b": [1]})


def test_stage_rules_name_missing_features_and_bad_conditions():
    with pytest.raises(KeyError, match="is_customer"):
        assign_stages(StagesConfig(), {"pricing_view_30d": [1]})
    assert parse_condition(" pricing_view_30d>=1.5 ") == ("pricing_view_30d", ">=", 1.5)
    with pytest.raises(ValueError, match="feature >= 1"):
        parse_condition("pricing_view_30d is big")
    assert features_needed(StagesConfig())[0] == "is_customer"


def test_bad_stage_rule_in_config_is_named(tmp_path):
    path = tmp_path / "configs" / "c.yaml"
    path.parent.mkdir()
    path.write_text("stages:\n  rules:\n    - {stage: buying, when: ['x >= 1']}\n")
    with pytest.raises(ConfigError, match=r"stages\.rules\.0\.stage"):
        load_config(path)
    path.write_text("stages:\n  rules:\n    - {stage: decision, when: ['x is 1']}\n")
    with pytest.raises(ConfigError, match=r"stages\.rules\.0\.when\.0"):
        load_config(path)

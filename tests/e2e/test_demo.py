"""`funnel demo`, the README's first command, end to end at a small size."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from app.cli import main

pytestmark = pytest.mark.e2e


def test_demo_runs_every_step_and_prints_scored_leads(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "--set",
            f"paths.data_dir={tmp_path / 'data'}",
            "--set",
            f"paths.mlruns_dir={tmp_path / 'mlruns'}",
            "demo",
            "--leads",
            "1500",
            "--trials",
            "2",
        ],
        catch_exceptions=False,
    )
    out = result.output
    assert result.exit_code == 0, out[-3000:]
    assert "(now champion)" in out
    assert re.search(r"test ROC AUC 0\.\d+ \[95% CI 0\.\d+, 0\.\d+\]", out)
    gap = r"oracle ROC AUC 0\.\d+ on the same rows; gap \(oracle - model\) [+-]0\.\d+ \[95% CI"
    assert re.search(gap, out)
    assert re.search(r"scored \d+ random leads over HTTP in one batch", out)
    # each printed lead has a score line and its reasons, with a sign
    assert re.search(r"L\d{7}  score +\d+  p=0\.\d{3}", out)
    assert re.search(r"^\s+[+-] \S", out, re.MULTILINE)
    assert "with job title 'VP of Marketing' sent in the request" in out
    assert re.search(r"model funnel-churn version 1 \(now champion\)", out)
    assert re.search(r"model funnel-nbo version 1 \(now champion\)", out)
    assert re.search(r"churn risk of \d+ random customers over HTTP", out)
    assert re.search(r"A\d{6}  p\(churn in 60 days\)=0\.\d{3}  (low|medium|high)", out)
    assert re.search(r"next best offer for \d+ leads over HTTP", out)
    assert re.search(r"L\d{7}  \w+ +-> \w+ +\(propensity", out)
    assert "service stopped" in out
    # the activation jobs on the demo data
    promoted = re.search(r"promoted (\d+) \(daily cap: \d+ left today\)", out)
    assert promoted and int(promoted[1]) > 0, out[-3000:]
    assert re.search(rf"sent to sales: {promoted[1]}, dead-lettered 0, still pending 0", out)
    assert re.search(r"run again at once: 0 leads changed, 0 promoted, 0 sent", out)
    assert re.search(
        r"pricing_no_opportunity -> ads: [\d,]+ members, \+[\d,]+ / -0; now at sync 1", out
    )
    assert re.search(r"nurture wave \d{4}-\d\d-\d\d: [\d,]+ in the audience", out)
    assert re.search(r"offer_exposures: [1-9][\d,]* new rows", out)
    assert (tmp_path / "data" / "reports" / "funnel.html").is_file()
    # the loop: tracking-plan counts, experiment readouts, ranked fixes, touchpoints, console
    assert re.search(r"tracking plan: [\d,]+ events delivered, [\d,]+ admitted", out)
    assert re.search(r"offers: \w+ vs control \[converted_14d\]: n [\d,]+/[\d,]+", out)
    assert re.search(r"mql promotion: promoted vs held_out", out)
    assert re.search(r"^\s+1\. \w+ +\w+ -> \w+ ", out, re.MULTILINE)
    assert "touchpoints (correlation, not effect)" in out
    assert "drop-off points" in out
    assert re.search(r"console: `funnel ui` serves http://", out)
    assert (tmp_path / "data" / "reports" / "experiments.json").is_file()
    sales = (tmp_path / "data" / "outbox" / "sales.jsonl").read_text().splitlines()
    assert len(sales) == int(promoted[1])
    for step in (
        "generate synthetic funnel",
        "train MQL model",
        "start service",
        "jobs promote-leads",
        "jobs sync-audiences",
        "jobs sync-campaigns",
        "report funnel",
    ):
        assert re.search(rf"{step}.*\d+\.\ds", out), step

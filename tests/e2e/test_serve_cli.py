"""`funnel serve` fails fast, naming what is missing, when there is no model to serve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.process import free_port

pytestmark = pytest.mark.e2e


def test_serve_without_a_champion_exits_with_the_reason(tmp_path):
    funnel = Path(sys.executable).parent / "funnel"
    done = subprocess.run(
        [
            str(funnel),
            "--set",
            f"paths.data_dir={tmp_path / 'data'}",
            "--set",
            f"paths.mlruns_dir={tmp_path / 'mlruns'}",
            "serve",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-2000:]
    assert "no model 'funnel-mql' with alias 'champion'" in out
    assert "funnel train mql" in out

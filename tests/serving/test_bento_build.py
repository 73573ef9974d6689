"""The Bento: `bentoml build` from bentofile.yaml, offline (requirements pinned from uv.lock in
bento-requirements.txt, nothing resolved), carrying code and configs but no model files (the
service loads the champions from MLflow when it starts); and `funnel serve` running the worker
count of the config.

`bentoml build` (BentoML 1.4) calls uv to write the requirements: these tests need uv (on PATH,
in $UV as `uv run` sets it, or in .tools/ as `make setup` installs it); in CI its absence fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from app.pipeline import SERVICE_NAME, serve_command

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "bento-requirements.txt"
BIN = Path(sys.executable).parent
# the command in bento-requirements.txt's header, less the output file
EXPORT = [
    "export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project", "--no-annotate",
]  # fmt: skip


def pins(text: str) -> list[str]:
    """The requirements of a requirements file, normalized (BentoML rewrites
    ``pkg==1 ; python_version < '3.12'`` as ``pkg==1; python_version < "3.12"``)."""
    lines = [line.strip() for line in text.splitlines()]
    return [str(Requirement(line)) for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def uv() -> Path:
    for found in (os.environ.get("UV"), shutil.which("uv"), ROOT / ".tools" / "bin" / "uv"):
        if found and Path(found).is_file():
            return Path(found)
    message = "uv not found (PATH, $UV, .tools/bin): `bentoml build` needs it"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def test_requirements_are_the_lock(uv):
    """bento-requirements.txt is what `uv export` makes of uv.lock now: a dependency added
    without exporting again fails here, naming the command."""
    exported = subprocess.run(
        [str(uv), *EXPORT, "--no-header", "-q"], cwd=ROOT, capture_output=True, text=True,
        check=True, timeout=120,
    ).stdout  # fmt: skip
    assert pins(exported) == pins(REQUIREMENTS.read_text()), (
        "bento-requirements.txt is stale: run `uv export --frozen --no-default-groups --no-hashes "
        "--no-emit-project --no-annotate -o bento-requirements.txt`"
    )


@pytest.mark.e2e
def test_bentoml_build_offline(uv, tmp_path):
    home = tmp_path / "bentoml"
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": os.pathsep.join([str(uv.parent), str(BIN), os.environ.get("PATH", "")]),
        # nothing may be resolved or downloaded
        "UV_OFFLINE": "1",
        "PIP_NO_INDEX": "1",
    }
    bentoml = str(BIN / "bentoml")
    built = subprocess.run(
        [bentoml, "build", "--output", "tag"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    assert name == "funnel"

    listed = subprocess.run(
        [bentoml, "list", "-o", "json"], env=env, capture_output=True, text=True, check=True,
        timeout=300,
    )  # fmt: skip
    assert tag in {b["tag"] for b in json.loads(listed.stdout)}

    bento = home / "bentos" / name / version
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == "serving.service:FunnelService"
    assert info["entry_service"] == SERVICE_NAME  # the key `funnel serve` sets workers under
    assert info["models"] == []  # the champions come from MLflow at start, not in the Bento
    frozen = pins((bento / "env" / "python" / "requirements.txt").read_text())
    assert set(pins(REQUIREMENTS.read_text())) <= set(frozen)
    assert any(p.startswith(("mlflow==", "lightgbm==", "feast==")) for p in frozen)
    src = bento / "src"
    for path in ("serving/service.py", "training/scoring.py", "features/store.py",
                 "core/config.py", "configs/production.yaml"):  # fmt: skip
        assert (src / path).is_file(), path
    for absent in ("data", "mlruns", "tests", "notebooks", "benchmarks", ".venv"):
        assert not (src / absent).exists(), absent


def test_funnel_serve_runs_the_configured_workers(config_at, tmp_path):
    cfg = config_at(tmp_path, "serving.workers=3")
    cmd, env = serve_command(cfg, None, (), None)
    assert cmd[1:3] == ["serve", "serving.service:FunnelService"]
    assert f"services.{SERVICE_NAME}.workers=3" in env["BENTOML_CONFIG_OPTIONS"].split()


@pytest.mark.parametrize("access_log", [True, False])
def test_funnel_serve_passes_the_access_log_setting_to_bentoml(config_at, tmp_path, access_log):
    from bentoml._internal.configuration.containers import BentoMLConfiguration

    cfg = config_at(tmp_path, f"serving.access_log={str(access_log).lower()}")
    _, env = serve_command(cfg, None, (), None)
    parsed = BentoMLConfiguration(override_config_values=env["BENTOML_CONFIG_OPTIONS"]).to_dict()
    service = parsed["services"][SERVICE_NAME]
    assert service.get("logging", {}).get("access", {}).get("enabled", True) is access_log
    assert service["workers"] == cfg.serving.workers

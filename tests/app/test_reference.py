"""The generated reference pages equal what the code produces now, they list the real keys,
routes and commands, and the docs site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from app.cli import main as funnel
from app.reference import REGENERATE, config_reference, main, openapi_document, pages, write_pages
from core.config import (
    ChurnConfig,
    Config,
    JobsConfig,
    OptunaConfig,
    RetryConfig,
    ServingConfig,
    SplitConfig,
    WebhookDestinationConfig,
)
from core.offers import Offer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    return pages()


@pytest.fixture(scope="module")
def config_rows() -> dict[str, tuple[str, str]]:
    """Key -> (type, default), from the configuration page's tables."""
    rows = {}
    for line in config_reference().splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_the_committed_pages_are_what_the_code_generates(generated) -> None:
    for rel, text in generated.items():
        path = ROOT / rel
        assert path.is_file(), f"{rel} is missing: run `{REGENERATE}`"
        assert path.read_text(encoding="utf-8") == text, (
            f"{rel} is out of date with the code: run `{REGENERATE}` (`.venv/bin/python -m "
            "app.reference`) and keep the result"
        )


def test_the_config_page_lists_real_keys_with_their_real_defaults(config_rows) -> None:
    expected = {
        "optuna.n_trials": OptunaConfig.model_fields["n_trials"].default,
        "serving.max_batch": ServingConfig.model_fields["max_batch"].default,
        "serving.reasons": ServingConfig.model_fields["reasons"].default,
        "jobs.retry.max_attempts": RetryConfig.model_fields["max_attempts"].default,
        "jobs.promotion.daily_cap": JobsConfig().promotion.daily_cap,
        # a nested default taken from its parent: the churn split is not SplitConfig's own
        "training.churn.split.test_weeks": ChurnConfig.model_fields["split"].default.test_weeks,
        "training.mql.split.test_weeks": SplitConfig.model_fields["test_weeks"].default,
        # a key of one variant of a discriminated union, under a mapping of names
        "jobs.destinations.<name>.timeout_s": WebhookDestinationConfig.model_fields[
            "timeout_s"
        ].default,
    }
    for key, value in expected.items():
        assert key in config_rows, f"{key} is not on the configuration page"
        assert config_rows[key][1] == f"`{value}`", (key, config_rows[key])
    assert config_rows["offers[].cost"][1] == "required"
    assert Offer.model_fields["cost"].is_required()


def test_every_config_key_is_on_the_page(config_rows) -> None:
    for name in ServingConfig.model_fields:
        assert f"serving.{name}" in config_rows
    for name in Config.model_fields:
        assert any(key == name or key.startswith(f"{name}.") for key in config_rows), name


def test_every_route_and_command_is_on_its_page(generated) -> None:
    api = generated[Path("docs/reference/api.md")]
    for path, item in openapi_document()["paths"].items():
        for method in item:
            assert f"### `{method.upper()} {path}`" in api
    cli = generated[Path("docs/reference/cli.md")]
    ctx = click.Context(funnel, info_name="funnel")
    for name in funnel.list_commands(ctx):
        assert f"## `funnel {name}`" in cli
        command = funnel.get_command(ctx, name)
        for param in command.params if command else []:
            if isinstance(param, click.Option):
                assert f"`{param.opts[0]}" in cli


def test_check_names_the_stale_page_and_the_command(tmp_path, capsys) -> None:
    assert len(write_pages(tmp_path)) == 3
    assert main(["--check"], root=tmp_path) == 0
    page = tmp_path / "docs" / "reference" / "cli.md"
    page.write_text(page.read_text() + "edited by hand\n")
    assert main(["--check"], root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "docs/reference/cli.md" in err and REGENERATE in err
    assert "configuration.md" not in err


def test_the_benchmarks_page_holds_the_table_perf_render_rewrites() -> None:
    text = (ROOT / "docs" / "reference" / "benchmarks.md").read_text()
    assert text.count("<!-- perf:begin -->\n") == 1 and text.count("<!-- perf:end -->") == 1


def test_the_docs_site_builds_with_strict(tmp_path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)]
    done = subprocess.run(
        cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "reference" / "configuration" / "index.html").is_file()

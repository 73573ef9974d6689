# Two commands for a fresh machine:  `make demo`  and  `make test`.
# uv comes from PyPI into .tools/ when it is not on PATH; Python is the machine's 3.11
# (uv never downloads an interpreter here).
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
PYTHON ?= python3.11
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup demo test test-fast lint docs docs-serve clean

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

setup: $(UV)
	$(UV) sync --frozen --python $(PYTHON)

demo: setup
	$(UV) run --frozen --no-sync funnel demo

test: setup
	$(UV) run --frozen --no-sync pytest

test-fast: setup
	$(UV) run --frozen --no-sync pytest -m "not e2e and not production"

lint: setup
	$(UV) run --frozen --no-sync ruff check .

# The docs site (docs/, mkdocs.yml) into site/; --strict fails on a broken link or anchor.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(UV) run --frozen --no-sync mkdocs build --strict

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(UV) run --frozen --no-sync mkdocs serve

clean:
	rm -rf data mlruns/*.db mlruns/artifacts .pytest_cache

"""The house rules, checked on the source: imports point one way (the layers in pyproject.toml's
``[tool.importlinter]``, enforced by import-linter), no import cycles between modules, imports at
module top, and no module importing another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "core",
    "synthetic",
    "features",
    "training",
    "serving",
    "activation",
    "reports",
    "console",
    "app",
)
# Imports inside functions on purpose, each with its reason ("*": every import of the file).
LAZY_BY_DESIGN = {
    ("app/cli.py", "*"): "each command loads its modules when it runs, so that `funnel --help` "
    "does not import Feast, MLflow and LightGBM (about 10 s)",
    ("features/job_title.py", "features.titles"): "Feast stores the on-demand view's function "
    "source and runs it again on load, so the function imports what it uses",
    ("features/store.py", "features.repo"): "the definitions import Feast (about 6 s); the store "
    "module imports Feast only where a function needs it",
}
MAX_SHARE_INSIDE_FUNCTIONS = 0.15


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def project_imports(path: Path) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(statement, module imported, inside a function?) for each import of a project module;
    imports under ``if TYPE_CHECKING:`` are left out (they never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.stmt, str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        yield child, alias.name, in_function
            elif (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and (child.module or "").split(".")[0] in PACKAGES
            ):
                yield child, child.module, in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from walk(child, inner)

    yield from walk(tree, False)


def test_the_layer_contracts_hold() -> None:
    """`lint-imports` reads the contracts from pyproject.toml; it counts imports inside functions
    too, so a lower layer never reaches up, not even lazily."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_import_cycles_between_modules() -> None:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def test_imports_sit_at_module_top() -> None:
    """Imports of the project's own modules go at module top; a lazy import needs a reason (the
    CLI's start-up), and those stay a small share."""
    inside, total = [], 0
    for path in source_files():
        for node, module, in_function in project_imports(path):
            total += 1
            if in_function:
                inside.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}")
    share = len(inside) / total
    assert share < MAX_SHARE_INSIDE_FUNCTIONS, (
        f"{share:.0%} of {total} project imports are inside functions:\n" + "\n".join(inside)
    )
    unexplained = [
        line
        for line in inside
        if (line.split(":")[0], "*") not in LAZY_BY_DESIGN
        and (line.split(":")[0], line.split()[-1]) not in LAZY_BY_DESIGN
    ]
    assert not unexplained, "imports inside functions outside the CLI:\n" + "\n".join(unexplained)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_another_modules_private_names(package: str) -> None:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node, module, _ in project_imports(path):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}: {private}")
    assert not found, "\n".join(found)

"""The notebooks in ``notebooks/`` run top to bottom on a small funnel, in a kernel of this
virtualenv's Python, with every file under ``tmp_path``; and they show what they say they show."""

from __future__ import annotations

import ast
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "funnel-notebook-test"
LEADS = 1500
CELL_TIMEOUT_S = 300
PROBE = "import sys\nprint('kernel python:', sys.executable)"


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one kernelspec whose argv[0] is this interpreter: the notebooks must run
    in the project's venv, not in whatever ``python`` comes first on PATH."""
    from ipykernel.kernelspec import write_kernel_spec

    root = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(root / "kernels" / KERNEL)
    return root


def execute(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jupyter_path: Path
) -> nbformat.NotebookNode:
    """Run a stored notebook; a cell that raises fails the test naming the cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cell"
    assert nb.cells[0].cell_type == "markdown", f"{name} must open with a markdown intro"
    assert "FUNNEL_NOTEBOOK_DIR" in code[0].source, f"{name}'s first code cell sets up the config"
    stored = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not stored, f"{name} is stored with outputs in code cells {stored}; clear them"

    # only this kernelspec, and no user's Jupyter or IPython config or startup files
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    for var, folder in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ):
        monkeypatch.setenv(var, str(jupyter_path / folder))
    monkeypatch.setenv("FUNNEL_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("FUNNEL_NOTEBOOK_LEADS", str(LEADS))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the plots
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},  # a stray ./mlflow.db would land here
    )  # fmt: skip
    began = time.perf_counter()
    client.execute()
    print(f"{name}: {time.perf_counter() - began:.1f}s")

    probe = nb.cells.pop()
    assert stdout_of([probe]).strip() == f"kernel python: {sys.executable}"
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        assert cell.execution_count is not None, f"{name}: code cell {i} did not run"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{name}: code cell {i} raised {errors[0].ename}: {errors[0].evalue}"
    return nb


def stdout_of(cells: list[nbformat.NotebookNode]) -> str:
    return "".join(
        o.get("text", "")
        for c in cells
        for o in c.get("outputs", [])
        if o.output_type == "stream" and o.name == "stdout"
    )


def rich(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    """Every rich output of one MIME type (tables as text/html, plots as image/png)."""
    return [
        o.data[mime]
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type in ("display_data", "execute_result") and mime in o.data
    ]


def test_explore_funnel(tmp_path, monkeypatch, jupyter_path):
    nb = execute("01_explore_funnel.ipynb", tmp_path, monkeypatch, jupyter_path)
    out = stdout_of(nb.cells)
    found = re.search(r"([\d,]+) leads, ([\d,]+) events, ([\d,]+) opportunities; ", out)
    assert found, out[-2000:]
    leads, events, opportunities = (int(g.replace(",", "")) for g in found.groups())
    assert leads == LEADS
    assert events > 10 * leads
    assert 0 < opportunities < leads
    stages = ast.literal_eval(re.search(r"final stages: (\{.*\})", out).group(1))
    assert set(stages) == {"awareness", "consideration", "decision", "retention"}
    assert sum(stages.values()) <= leads
    assert len(rich(nb, "image/png")) >= 4  # events, conversion by source, stages, stage rates
    tables = "".join(rich(nb, "text/html"))
    assert "conversion_rate" in tables and "paid_search" in tables
    assert (tmp_path / "data" / "raw" / "manifest.json").is_file()  # written where it was told


def test_compare_models(tmp_path, monkeypatch, jupyter_path):
    nb = execute("02_compare_models.ipynb", tmp_path, monkeypatch, jupyter_path)
    out = stdout_of(nb.cells)
    assert "2 registered versions of funnel-mql" in out, out[-2000:]
    # the trainings' own results and the comparison read back from MLflow agree
    trained = dict(re.findall(r"version (\d+): test ROC AUC (0\.\d+) \(oracle", out))
    compared = dict(re.findall(r"version (\d+): test ROC AUC (0\.\d+), val ROC AUC 0\.\d+", out))
    assert set(trained) == {"1", "2"}
    assert compared == trained
    for auc in map(float, trained.values()):
        assert 0.65 < auc < 1.0
    aliases = ast.literal_eval(
        re.search(r"registered versions of funnel-mql; aliases (\{.*\})", out).group(1)
    )
    assert str(aliases["champion"]) == "1"  # the first version, never moved by the retrain
    assert "champion: version 1 (run " in out
    tables = "".join(rich(nb, "text/html"))
    assert "trial" in tables and "val_roc_auc" in tables  # the trials table
    assert rich(nb, "image/png")
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert not (tmp_path / "mlflow.db").exists()  # MLflow never fell back to the working dir


def test_uplift_next_best_offer(tmp_path, monkeypatch, jupyter_path):
    nb = execute("03_uplift_next_best_offer.ipynb", tmp_path, monkeypatch, jupyter_path)
    out = stdout_of(nb.cells)
    served = re.search(r"served policy: (\w+)", out)
    assert served, out[-2000:]
    assert served.group(1) in {
        "learned", "control", "discount_15", "exec_briefing", "case_study", "seat_upsell",
    }  # fmt: skip
    assert re.search(r"reason: \S", out)
    found = re.search(r"held-out mean Qini (-?\d\.\d+), (\d+)% of the oracle's", out)
    assert found, out[-2000:]
    assert float(found.group(1)) > 0 and int(found.group(2)) >= 30
    value = re.search(r"true value per lead: learned (-?[\d.]+), best single offer (-?[\d.]+)", out)
    assert value and float(value.group(1)) > 0
    # the model ranks leads the way the truth does
    corr = re.search(r"mean correlation of predicted and true uplift (-?\d\.\d+)", out)
    assert corr and float(corr.group(1)) > 0.3
    assert len(rich(nb, "image/png")) >= 4  # policies, scatter, two Qini plots

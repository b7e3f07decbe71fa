"""The tutorials: stored as jupytext pairs without outputs, and every one runs top to bottom in a
fresh headless kernel, draws its figures and prints its checks. Also the README figures script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
NAMES = ["00_tour", "01_tokenizer", "02_relative_positions", "03_disentangled_attention", "04_ngie_conv",
         "05_heads_and_pipelines", "06_fidelity", "07_fast_paths"]
CELL_TIMEOUT = 300  # seconds per cell; the slowest cell (07's timing table) takes a few seconds


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernel spec running this interpreter (not whatever "python" is first on PATH)."""
    name = "pydeberta-tutorials"
    folder = tmp_path_factory.mktemp("jupyter") / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "pydeberta tests", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(folder.parents[1])] + ([previous] if previous else []))
    yield name
    if previous is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = previous


def cells(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_the_tutorials_are_the_eight_in_order():
    assert sorted(p.stem for p in TUTORIALS.glob("*.py")) == NAMES
    assert sorted(p.stem for p in TUTORIALS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_and_its_script_hold_the_same_cells_and_no_outputs(name):
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    script = jupytext.read(TUTORIALS / f"{name}.py")
    assert cells(notebook) == cells(script), \
        f"{name}.ipynb and {name}.py differ: run jupytext --sync tutorials/{name}.py"
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}.ipynb is stored with outputs"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NAMES)
def test_tutorial_uses_the_bundled_model(name):
    assert 'MODEL = "pydeberta/tiny"' in (TUTORIALS / f"{name}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", NAMES)
def test_tutorial_runs_top_to_bottom_with_figures_and_checks(name, kernel_name):
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(TUTORIALS)}})
    client.execute()  # a fresh kernel; raises CellExecutionError on the first failing cell
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "image/png" in o.data]
    assert images, f"{name} produced no figure"
    printed = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "largest difference" in printed, f"{name} printed no check"
    assert "skipping" not in printed, f"{name} skipped a comparison although its dependencies are installed"


def test_readme_figures_script_writes_its_figures(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "make_readme_figures.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == ["attention_terms.png", "model_view.png"]
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

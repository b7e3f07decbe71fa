"""The tutorials: stored as jupytext pairs without outputs, and every one runs top to bottom in a
fresh headless kernel, draws its figures and prints its checks; every check asserts the difference
it prints. Also the README figures script."""

import ast
import json
import os
import re
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
         "05_heads_and_pipelines", "06_fidelity", "07_fast_paths", "08_after_attention", "09_backward", "10_int8"]
CELL_TIMEOUT = 300  # seconds per cell; the slowest cell (07's timing table) takes a few seconds


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernel spec running this interpreter (not whatever "python" is first on PATH), with one
    OpenBLAS thread: tutorial 09 trains by the book, thousands of small products, and two BLAS
    threads sharing a core with another process spin-wait for each other (its fine-tuning cell
    took over 300 s that way next to one busy process, about 20 s with one thread)."""
    name = "pydeberta-tutorials"
    folder = tmp_path_factory.mktemp("jupyter") / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "pydeberta tests", "language": "python", "env": {"OPENBLAS_NUM_THREADS": "1"}}
    (folder / "kernel.json").write_text(json.dumps(spec))
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(folder.parents[1])] + ([previous] if previous else []))
    yield name
    if previous is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = previous


CHECK = "largest difference"


def cells(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def python_source(cell_source):
    """A code cell's source as Python: IPython magics and shell escapes become comments (line
    numbers are kept)."""
    return "\n".join("#" + line if line.lstrip().startswith(("%", "!")) else line
                     for line in cell_source.splitlines())


def prints_a_check(node):
    """Whether ``node`` is a ``print(...)`` call whose text contains "largest difference"."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"):
        return False
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) and CHECK in n.value
               for arg in node.args for n in ast.walk(arg))


def asserts_a_bound(node):
    """Whether ``node`` is an ``assert`` whose condition bounds a value: it holds a comparison by
    ``==``, ``<=`` or ``<``."""
    return isinstance(node, ast.Assert) and any(
        isinstance(n, ast.Compare) and any(isinstance(op, (ast.Eq, ast.LtE, ast.Lt)) for op in n.ops)
        for n in ast.walk(node.test))


def unasserted_checks(cell_source):
    """Lines of the "largest difference" prints in one code cell that no assert bounding a value
    follows before the next such print (or the end of the cell)."""
    tree = ast.parse(python_source(cell_source))
    prints = sorted(node.lineno for node in ast.walk(tree) if prints_a_check(node))
    asserts = sorted(node.lineno for node in ast.walk(tree) if asserts_a_bound(node))
    missing = []
    for k, line in enumerate(prints):
        end = prints[k + 1] if k + 1 < len(prints) else float("inf")
        if not any(line < a <= end for a in asserts):
            missing.append(line)
    return missing


def test_the_tutorials_are_the_listed_ones_in_order():
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
def test_every_check_asserts_the_difference_it_prints(name):
    """A check that only prints passes whatever it finds: every code cell's "largest difference"
    print must be followed, in the same cell and before the next such print, by an assert that
    bounds a value (``assert diff <= 1e-5, diff``), and every notebook has such checks."""
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    checked = [source for source in code if CHECK in source]
    assert checked, f"{name} has no code cell printing a {CHECK!r} check"
    for source in checked:
        tree = ast.parse(python_source(source))
        assert any(prints_a_check(node) for node in ast.walk(tree)), \
            f"{name}: {CHECK!r} appears in a cell but not in a print:\n{source}"
        missing = unasserted_checks(source)
        assert not missing, f"{name}: the {CHECK!r} print(s) at line(s) {missing} of this cell assert nothing:\n{source}"


@pytest.mark.parametrize("name", NAMES)
def test_prose_cites_no_spec_sections(name):
    """The prose cites the DeBERTa paper or pages under docs/, never a "spec §N"."""
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            assert not re.search(r"§|\bspec\b", cell.source), f"{name} cites a spec section:\n{cell.source}"


def test_the_assert_check_catches_a_print_only_check():
    """The source check itself: a bare print fails, a print followed by a bound passes."""
    assert unasserted_checks('diff = 1.0\nprint("largest difference:", diff)\n') == [2]
    assert unasserted_checks('print(f"largest difference {d:.2e}")\nassert d is not None\n') == [1]
    assert unasserted_checks('%matplotlib inline\nfor d in ds:\n    print(f"largest difference {d}")\n'
                             '    assert d <= 1e-5, d\n') == []
    assert unasserted_checks('print("largest difference", a)\nprint("largest difference", b)\n'
                             'assert a == 0 and b == 0\n') == [1]


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


def test_every_tagged_notebook_figure_is_in_the_readme():
    """A cell tagged ``readme:<name>`` (its figure copied by ``make_readme_figures.py
    --notebooks``) names a PNG that is in docs/figures and shown in the README."""
    tagged = [tag[len("readme:"):] for name in NAMES for cell in jupytext.read(TUTORIALS / f"{name}.py").cells
              for tag in cell.metadata.get("tags", []) if tag.startswith("readme:")]
    assert sorted(tagged) == ["ngie_shift.png", "residual_updates.png"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in tagged:
        assert (REPO / "docs" / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(docs/figures/{name})" in readme


def test_readme_figures_script_writes_its_figures(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "make_readme_figures.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == ["attention_terms.png", "model_view.png", "relative_gradient.png", "relative_positions.png"]
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

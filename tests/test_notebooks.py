"""The lecture notebooks: each committed .ipynb is built from its jupytext twin, and (marker
`notebooks`, `pytest -m notebooks`) every notebook executes from scratch without an error.

Executing needs the `notebooks` extra (nbclient, ipykernel, jupytext) and takes minutes, so the
execution tests are their own tier (deselected by default, see pyproject's addopts); `.ci/run`
installs the extra and runs them after the slow pass.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
LECTURES = ["01_bigram", "02_mlp", "03_activations", "04_backprop", "05_wavenet", "06_sequences"]
#: Each notebook's budget on the 2-core machine.
MAX_SECONDS = 180


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", NOTEBOOKS / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_notebook_per_lecture_in_order():
    assert [p.stem for p in SOURCES] == LECTURES
    for p in SOURCES:
        assert p.with_suffix(".ipynb").is_file(), f"{p.name} has no executed .ipynb beside it"


def _code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]).strip() for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_its_py_twin_and_has_outputs(source: Path):
    """The committed notebook holds the .py's code, every code cell executed, no error."""
    jupytext = pytest.importorskip("jupytext")
    built = json.loads(jupytext.writes(jupytext.read(source), fmt="ipynb"))
    committed = json.loads(source.with_suffix(".ipynb").read_text(encoding="utf-8"))
    assert _code_cells(committed) == _code_cells(built), f"rebuild {source.stem}.ipynb"
    cells = [c for c in committed["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in cells), "a code cell was not executed"
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, errors[:1]
    images = [o for c in cells for o in c["outputs"] if "image/png" in o.get("data", {})]
    text = "".join("".join(o.get("text", "")) for c in cells for o in c["outputs"])
    assert images or text.strip(), "no outputs"


@pytest.fixture
def selected():
    pytest.importorskip("nbclient", reason="executing needs the notebooks extra")
    pytest.importorskip("jupytext", reason="executing needs the notebooks extra")


@pytest.mark.notebooks
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes(source: Path, selected, capsys):
    seconds = _run_all().execute(source, write=False)
    with capsys.disabled():
        print(f"\n{source.stem}: {seconds:.1f} s")
    assert seconds < MAX_SECONDS, f"{source.stem} took {seconds:.0f} s (budget {MAX_SECONDS} s)"


@pytest.mark.notebooks
def test_the_readme_from_python_block_runs_in_jupyter(selected, tmp_path):
    """The README's "From Python" block as one cell of a notebook, executed in a Jupyter
    kernel (ipykernel, via nbclient) from an empty directory: the API works where learners
    work, tqdm's notebook bar included."""
    import nbclient
    import nbformat
    from test_api import readme_python_block

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(readme_python_block())])
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on any error in the cell
    outputs = notebook.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "'train':" in text  # the printed losses
    assert (tmp_path / "runs" / "mlp_small" / "results.json").is_file()

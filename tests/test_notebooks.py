"""Every tutorial in notebooks/ runs top to bottom: converted with jupytext, executed with nbclient.

Each notebook is one test. Its ``WORKDIR`` parameter is pointed at a temporary folder (a cell
injected after the cell tagged ``parameters``, as papermill does), so runs and data never land
in the repository; its default ``SCALE`` ("tiny") keeps it to about a minute on 2 CPU cores.
The kernel is this interpreter's ipykernel (jupyter_client starts the ``python3`` kernel with
``sys.executable``), checked by a first injected cell.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
# A whole notebook; "tiny" ones take one to three minutes on 2 idle CPU cores. Raise it with the
# environment variable on a machine busy with other work.
NOTEBOOK_TIMEOUT_S = float(os.environ.get("WEAKSEG_NOTEBOOK_TIMEOUT_S", 600))
KERNEL = "python3"


def parameters_index(nb) -> int:
    """Position of the cell tagged ``parameters`` (every tutorial has one near the top)."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    raise AssertionError("the notebook has no cell tagged 'parameters'; add `# %% tags=[\"parameters\"]`")


def prepared(path: Path, workdir: Path):
    """The notebook of ``path`` with the kernel check first and ``WORKDIR`` overridden after its parameters."""
    nb = jupytext.read(path)
    check = nbformat.v4.new_code_cell(f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.prefix")
    override = nbformat.v4.new_code_cell(f"WORKDIR = {str(workdir)!r}  # injected by tests/test_notebooks.py")
    nb.cells.insert(parameters_index(nb) + 1, override)
    nb.cells.insert(0, check)
    return nb


def execute(nb, cwd: Path) -> None:
    """Run ``nb`` in a fresh kernel started in ``cwd``; raise on the first failing cell or after the timeout.

    OpenMP threads wait passively unless told otherwise: on a machine shared with other jobs,
    spinning threads slow a 2-thread training step down tenfold.
    """
    client = nbclient.NotebookClient(
        nb, timeout=NOTEBOOK_TIMEOUT_S, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}}
    )
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    asyncio.run(asyncio.wait_for(client.async_execute(env=env), NOTEBOOK_TIMEOUT_S))


def test_the_seven_tutorials_are_there():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(7)], [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_shape(path: Path):
    """The parameters cell comes first (SCALE and WORKDIR, tiny by default); the exercises come last."""
    nb = jupytext.read(path)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert parameters_index(nb) == first_code, "the parameters cell must be the first code cell"
    params = nb.cells[first_code].source
    assert 'SCALE = "tiny"' in params and "WORKDIR = " in params, params
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.name[:2]} ")
    assert nb.cells[-1].cell_type == "markdown" and "## Exercises" in nb.cells[-1].source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path):
    nb = prepared(path, tmp_path / "work")
    t0 = time.perf_counter()
    try:
        execute(nb, tmp_path)
    except TimeoutError:
        pytest.fail(f"{path.name} ran past {NOTEBOOK_TIMEOUT_S} s; keep its SCALE='tiny' sizes small")
    print(f"{path.name}: {time.perf_counter() - t0:.0f} s")

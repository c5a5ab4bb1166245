"""Every tutorial in notebooks/ runs top to bottom: converted with jupytext, executed with nbclient.

Each notebook is one test. Its ``WORKDIR`` parameter is pointed at a temporary folder (a cell
injected after the cell tagged ``parameters``, as papermill does), so runs and data never land
in the repository; its default ``SCALE`` ("tiny") keeps it to about a minute on 2 CPU cores.
The kernel is this interpreter's ipykernel (jupyter_client starts the ``python3`` kernel with
``sys.executable``), checked by a first injected cell.

Besides running, every figure the notebook shows (a cell's result or a ``display`` call) is
rendered with bokeh by a last injected cell and checked with ``plots.page_problems``: wider than
a 1300 px page, a plot that draws nothing, a clipped title, an axis or colourbar labelled "z".
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
# Notebooks whose figures and thread settings are not yet brought to the rules below (05 is the
# dashboard's own tutorial, maintained with the dashboard): they are still run, not checked.
NOT_YET_CHECKED = {"05_dashboard_in_jupyterlab.py"}


def parameters_index(nb) -> int:
    """Position of the cell tagged ``parameters`` (every tutorial has one near the top)."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    raise AssertionError("the notebook has no cell tagged 'parameters'; add `# %% tags=[\"parameters\"]`")


# Injected first: remember every object a cell shows, as its result or through display().
RECORD_FIGURES = """
import IPython.core.display_functions, IPython.display
_weakseg_shown, _weakseg_display = [], IPython.core.display_functions.display
def _weakseg_recording_display(*objs, **kwargs):
    _weakseg_shown.extend(objs)
    return _weakseg_display(*objs, **kwargs)
IPython.display.display = IPython.core.display_functions.display = _weakseg_recording_display
get_ipython().events.register(
    "post_run_cell", lambda result: _weakseg_shown.append(result.result) if result.result is not None else None
)
"""
# Injected last: render every HoloViews figure shown and fail on what a reader would see as broken.
CHECK_FIGURES = """
import holoviews as _hv
from workbench.viz.plots import page_problems as _page_problems
_weakseg_figures = [o for o in _weakseg_shown if isinstance(o, _hv.core.dimension.Dimensioned)]
_weakseg_problems = []
for _i, _o in enumerate(_weakseg_figures):
    try:
        _weakseg_problems += [f"figure {_i + 1} ({type(_o).__name__}): {p}" for p in _page_problems(_o)]
    except Exception as _err:  # a figure bokeh cannot draw shows as an error text in the notebook
        _weakseg_problems.append(f"figure {_i + 1} ({type(_o).__name__}) {_o.label or ''}: cannot be drawn: {_err!r}")
print(f"FIGURES {len(_weakseg_figures)} checked")
assert not _weakseg_problems, "\\n".join(_weakseg_problems)
"""


def prepared(path: Path, workdir: Path):
    """The notebook of ``path`` with the kernel check and figure recorder first, ``WORKDIR`` overridden
    after its parameters and the figure check last."""
    nb = jupytext.read(path)
    check = nbformat.v4.new_code_cell(f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.prefix\n{RECORD_FIGURES}")
    override = nbformat.v4.new_code_cell(f"WORKDIR = {str(workdir)!r}  # injected by tests/test_notebooks.py")
    nb.cells.insert(parameters_index(nb) + 1, override)
    nb.cells.insert(0, check)
    if path.name not in NOT_YET_CHECKED:
        nb.cells.append(nbformat.v4.new_code_cell(CHECK_FIGURES))
    return nb


def execute(nb, cwd: Path) -> None:
    """Run ``nb`` in a fresh kernel started in ``cwd``; raise on the first failing cell or after the timeout.

    OpenMP threads wait passively unless told otherwise: on a machine shared with other jobs,
    spinning threads slow a 2-thread training step down tenfold.
    """
    client = nbclient.NotebookClient(
        nb, timeout=NOTEBOOK_TIMEOUT_S, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}},
        coalesce_streams=True,  # a progress bar's carriage-return updates are saved as its last line
    )  # fmt: skip
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    asyncio.run(asyncio.wait_for(client.async_execute(env=env), NOTEBOOK_TIMEOUT_S))


def test_the_eight_tutorials_are_there():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(8)], [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_shape(path: Path):
    """The parameters cell comes first (SCALE and WORKDIR, tiny by default), then the thread settings;
    the exercises come last."""
    nb = jupytext.read(path)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert parameters_index(nb) == first_code, "the parameters cell must be the first code cell"
    params = nb.cells[first_code].source
    assert 'SCALE = "tiny"' in params and "WORKDIR = " in params, params
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.name[:2]} ")
    assert nb.cells[-1].cell_type == "markdown" and "## Exercises" in nb.cells[-1].source
    if path.name in NOT_YET_CHECKED:
        return
    setup = next(c for c in nb.cells[first_code + 1 :] if c.cell_type == "code").source  # before torch loads
    assert "OMP_WAIT_POLICY" in setup and "torch.set_num_threads(" in setup and "THREADS" in setup, setup
    assert setup.index("OMP_WAIT_POLICY") < setup.index("import torch"), setup


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


@pytest.mark.slow
def test_the_figure_check_fails_a_notebook_with_a_wide_or_unnamed_figure(tmp_path: Path):
    """The injected last cell catches what a reader sees as broken: a row of four 480 px panels, a "z" colourbar."""
    source = tmp_path / "99_bad.py"
    source.write_text(
        '# %% tags=["parameters"]\nSCALE = "tiny"\nWORKDIR = "x"\n\n'
        "# %%\nimport holoviews as hv\nimport numpy as np\nfrom IPython.display import display\n"
        'hv.extension("bokeh")\n'
        "display(hv.Image(np.eye(4)).opts(colorbar=True, width=300))\n"
        "hv.Layout([hv.Curve([(0, 1), (1, 2)]).opts(width=480) for _ in range(4)]).cols(4)\n"
    )
    with pytest.raises(nbclient.exceptions.CellExecutionError) as failure:
        execute(prepared(source, tmp_path / "work"), tmp_path)
    message = str(failure.value)
    assert "figure 1 (Image)" in message and "'z'" in message
    assert "figure 2 (Layout): about 1920 px wide" in message

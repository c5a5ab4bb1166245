"""Notebook 05 inside a real JupyterLab, in headless chromium: Run All, then click the dashboard's
canvas and Retrain, and see the page answer.

JupyterLab starts in the repository root (no token, a free port, its settings, workspaces and
runtime files in a temporary folder); the notebook, converted from its jupytext script as
tests/test_notebooks.py does, is written under ``runs/`` (git-ignored) and removed afterwards.
The kernel imports this checkout (``PYTHONPATH``) and writes its runs into the temporary folder.
Fails on a browser console error, a request leaving the machine (JupyterLab renders Panel with no
internet: ``workbench.viz.offline_panel`` inlines Panel's scripts and stylesheets or has the kernel's Jupyter
server serve them) and any traceback in the notebook's outputs (a callback's error lands there).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

import pytest

pytest.importorskip("playwright")
pytest.importorskip("jupyterlab", reason="jupyterlab is not installed: `make setup` installs it (the ui extra)")
jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")

from panel.tests.util import wait_until  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.ui.browser_data import watch_page  # noqa: E402
from tests.ui.conftest import SCREENSHOTS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "05_dashboard_in_jupyterlab.py"
START_TIMEOUT_S = 90
RUN_ALL_TIMEOUT_MS = 420_000  # the notebook trains a small model; a busy 2-core machine needs minutes
TIMEOUT_MS = 60_000
CANVAS = ".annotation-canvas .bk-events"
STATUS = re.compile(r"(\d+) points, (\d+) scribbles")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebook_for_lab(workdir: Path) -> nbformat.NotebookNode:
    """Notebook 05 with ``WORKDIR`` pointed at ``workdir`` (a cell after the parameters, as papermill does)."""
    nb = jupytext.read(NOTEBOOK)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f"WORKDIR = {str(workdir)!r}  # injected by the test"))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


@pytest.fixture
def lab(tmp_path, page, request):
    """A JupyterLab server on a free port; yields ``(url of the notebook, server log path)``. A failed
    test leaves a screenshot taken before the server stops, and the server's log in the report."""
    folder = REPO / "runs" / f"jupyterlab-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no news toast
    nbformat.write(notebook_for_lab(tmp_path / "work"), folder / "05.ipynb")
    port, log = free_port(), tmp_path / "lab.log"
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
        "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
    }  # fmt: skip
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={REPO}",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", "--allow-root",  # CI runs as root
    ]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/lab/tree/{folder.relative_to(REPO).as_posix()}/05.ipynb", log
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "jupyterlab_before_shutdown.png"), full_page=True)
            print(f"JupyterLab log:\n{log.read_text()[-4000:]}")
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def watch(page) -> list[str]:
    problems = watch_page(page, host="127.0.0.1")
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )  # e.g. a stylesheet the kernel's Jupyter server does not serve
    return problems


def status_counts(page) -> tuple[int, int] | None:
    status = page.get_by_text(STATUS)  # the dashboard's status line (inside Panel's shadow DOM)
    found = STATUS.search(status.first.inner_text()) if status.count() else None
    return (int(found[1]), int(found[2])) if found else None


def tracebacks(page) -> list[str]:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    texts = [errors.nth(i).inner_text() for i in range(errors.count())]
    return [t[-1500:] for t in texts if "Traceback" in t or "Error:" in t]


def test_notebook_05_runs_in_jupyterlab_and_its_dashboard_answers(page, lab):
    url, log = lab
    problems = watch(page)
    page.goto(url)
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=TIMEOUT_MS)  # the kernel is up
    first_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for _ in range(3):  # a Run All clicked while the kernel connection settles can be lost: click again
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            expect(first_prompt).to_have_text(re.compile(r"\[(\*|\d+)\]"), timeout=15_000)
            break
        except AssertionError:
            continue

    canvas = page.locator(CANVAS).first
    t0 = time.monotonic()
    expect(canvas).to_be_visible(timeout=RUN_ALL_TIMEOUT_MS)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached(
        timeout=RUN_ALL_TIMEOUT_MS
    )  # every cell has run, the ones after the dashboard too
    print(f"Run All: dashboard shown and kernel idle {time.monotonic() - t0:.0f} s after the canvas appeared")
    assert tracebacks(page) == [], tracebacks(page)

    canvas.scroll_into_view_if_needed()
    before = status_counts(page)
    assert before is not None
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.3)  # PointDraw: a new point
    wait_until(lambda: status_counts(page) == (before[0] + 1, before[1]), page, timeout=TIMEOUT_MS)

    page.get_by_role("button", name="Retrain").first.click()
    expect(page.get_by_text(re.compile(r"quick retrain: (step|done|finished|new version)")).first).to_be_visible(
        timeout=TIMEOUT_MS
    )
    wait_until(lambda: page.get_by_role("button", name="Retrain").first.is_enabled(), page, timeout=TIMEOUT_MS)
    assert tracebacks(page) == [], tracebacks(page)
    assert problems == [], "\n".join(sorted(set(problems)))  # no CDN: workbench.viz.offline_panel serves it all

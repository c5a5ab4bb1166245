"""The dashboard in a real browser: annotate, undo, retrain, reload; stay responsive while training.

The server runs in this process (``pn.serve`` in a thread), so the tests read the session and
its SQLite store directly; one test serves ``apps/dashboard.py`` with ``panel serve`` as a user
would. Gestures follow HoloViews' own UI tests: clicks and drags on the plot's ``.bk-events``.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("playwright")
pytest.importorskip("panel")

from panel.tests.util import serve_and_wait, wait_until  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.ui.browser_data import active_draw_tool, browser_points  # noqa: E402
from workbench.annotations.store import AnnotationStore  # noqa: E402
from workbench.dashboard.app import Dashboard  # noqa: E402
from workbench.dashboard.retrainer import QuickConfig  # noqa: E402
from workbench.dashboard.session import DashboardSession  # noqa: E402
from workbench.data.folder import load_dataset_info  # noqa: E402
from workbench.labels.weak_labels import Point, Scribble  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 60_000  # generous: CI machines have two cores, often busy
CANVAS = ".annotation-canvas .bk-events"


def make_session(root: Path, tmp_path: Path, steps: int) -> DashboardSession:
    torch.manual_seed(0)
    return DashboardSession.open(
        data=root, store=tmp_path / "annotations.sqlite", out=tmp_path / "out", quick=QuickConfig(steps=steps, lr=3e-3)
    )


def open_app(page, session: DashboardSession) -> None:
    port = serve_and_wait(lambda: Dashboard(session))
    page.goto(f"http://localhost:{port}")
    expect(page.locator(CANVAS)).to_be_visible(timeout=TIMEOUT_MS)


def at(page, fx: float, fy: float) -> tuple[float, float]:
    """Screen position of the point at fractions ``(fx, fy)`` of the canvas (0, 0 = top left)."""
    box = page.locator(CANVAS).bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*at(page, *start))
    page.mouse.down()
    page.mouse.move(*at(page, *end), steps=12)
    page.mouse.up()


def kinds(session: DashboardSession) -> list[str]:
    return sorted(type(item).__name__ for item in session.items().values())


def canvas_pixels(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator(".annotation-canvas").screenshot())).convert("RGB"), float)


def test_annotate_undo_retrain_reload(page, synthetic_root, tmp_path):
    session = make_session(synthetic_root, tmp_path, steps=8)
    open_app(page, session)
    h, w = session.size()

    assert active_draw_tool(page) == "PointDrawTool"
    page.mouse.click(*at(page, 0.2, 0.15))  # a point of the active class (the first, sky) near the top
    wait_until(lambda: kinds(session) == ["Point"], page, timeout=TIMEOUT_MS)
    (point,) = session.items().values()
    assert point.cls == 0 and abs(point.row - 0.15 * h) < 1.5 and abs(point.col - 0.2 * w) < 1.5

    page.keyboard.press("2")  # digits pick the class
    page.get_by_role("button", name="scribble").click()
    wait_until(lambda: active_draw_tool(page) == "FreehandDrawTool", page, timeout=TIMEOUT_MS)
    drag(page, (0.3, 0.8), (0.8, 0.85))
    wait_until(lambda: kinds(session) == ["Point", "Scribble"], page, timeout=TIMEOUT_MS)
    scribble = next(i for i in session.items().values() if isinstance(i, Scribble))
    assert scribble.cls == 1 and len(scribble.path) > 5

    page.keyboard.press("z")  # undo the stroke
    wait_until(lambda: kinds(session) == ["Point"], page, timeout=TIMEOUT_MS)
    expect(page.get_by_text("1 points, 0 scribbles")).to_be_visible(timeout=TIMEOUT_MS)
    page.keyboard.press("Shift+Z")  # and redo it, so the retrain has a stroke to learn from
    wait_until(lambda: kinds(session) == ["Point", "Scribble"], page, timeout=TIMEOUT_MS)

    before_pixels, before_pred = canvas_pixels(page), session.prediction().copy()
    page.get_by_role("button", name="Retrain").click()
    wait_until(lambda: len(session.versions) == 2, page, timeout=TIMEOUT_MS)
    if session.model_version == 0:  # the retrain lowered val mIoU (an untrained model): make it current by hand
        new = session.versions[1]
        label = f"v1 {new.label}: val mIoU {new.summary['miou']:.3f} - not used"
        page.get_by_label("model version").select_option(label=label)
        page.get_by_role("button", name="make current").click()
    expect(page.get_by_text("model v1")).to_be_visible(timeout=TIMEOUT_MS)
    assert (session.prediction() != before_pred).any()
    wait_until(lambda: np.abs(canvas_pixels(page) - before_pixels).mean() > 0.5, page, timeout=TIMEOUT_MS)

    page.reload()
    expect(page.get_by_text("1 points, 1 scribbles")).to_be_visible(timeout=TIMEOUT_MS)
    wait_until(lambda: browser_points(page) == 1, page, timeout=TIMEOUT_MS)
    reopened = AnnotationStore(tmp_path / "annotations.sqlite", session.classes)
    assert sorted(type(i).__name__ for i in reopened.items(session.image_name).values()) == ["Point", "Scribble"]
    reopened.close()
    session.close()


@pytest.mark.skipif(
    os.getloadavg()[0] > (os.cpu_count() or 1),
    reason="the UI answers during training because the worker leaves a core free; on a saturated machine no core is",
)
def test_ui_responds_while_training_and_cancel_keeps_weights(page, synthetic_root, tmp_path):
    session = make_session(synthetic_root, tmp_path, steps=100_000)
    try:
        session.add_point(5, 5)
        weights = {k: v.clone() for k, v in session.model.state_dict().items()}
        open_app(page, session)

        page.get_by_role("button", name="Retrain").click()
        expect(page.get_by_text("quick retrain: step").first).to_be_visible(timeout=TIMEOUT_MS)  # live progress
        page.keyboard.press("n")  # the page still answers while the worker trains
        expect(page.get_by_text(f"(2/{len(session.names)}, split train)")).to_be_visible(timeout=TIMEOUT_MS)
        assert session.trainer.running
        page.get_by_role("button", name="Cancel").click()
        expect(page.get_by_text("quick retrain: cancelled").first).to_be_visible(timeout=TIMEOUT_MS)
        assert session.model_version == 0
        assert all(torch.equal(weights[k], v) for k, v in session.model.state_dict().items())
        expect(page.get_by_role("button", name="Retrain")).to_be_enabled(timeout=TIMEOUT_MS)
    finally:
        session.close()  # stops the worker even when an assertion failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_panel_serve_app_file_stores_a_click(page, synthetic_root, tmp_path):
    """``panel serve apps/dashboard.py --args ...`` as in the README; the click lands in the SQLite file."""
    port, store = _free_port(), tmp_path / "served.sqlite"
    command = [
        sys.executable, "-m", "panel", "serve", "apps/dashboard.py", "--port", str(port), "--address", "127.0.0.1",
        "--args", "--data", str(synthetic_root), "--store", str(store), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                page.goto(f"http://127.0.0.1:{port}/dashboard")
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                if server.poll() is not None or time.monotonic() > deadline:
                    log = server.stdout.read().decode()[-2000:]
                    raise AssertionError(f"panel serve did not start: {log}") from None
                time.sleep(1)
        expect(page.locator(CANVAS)).to_be_visible(timeout=60_000)
        page.mouse.click(*at(page, 0.5, 0.5))
        classes = load_dataset_info(synthetic_root).classes
        expected_name = "train_0000"

        def stored() -> bool:
            with AnnotationStore(store, classes) as s:
                items = s.items(expected_name) if expected_name in s.images() else {}
            return [type(i) for i in items.values()] == [Point]

        wait_until(stored, page, timeout=TIMEOUT_MS)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

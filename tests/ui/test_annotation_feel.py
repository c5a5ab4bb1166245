"""The annotation feel in a real browser: hovers name classes, class buttons carry their colour, ``?``
lists the keys, the eraser removes what it crosses, and a file over the upload limit gets a message
while the page stays connected (Panel's FileInput would close the websocket)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")
pytest.importorskip("panel")

from panel.tests.util import serve_and_wait, wait_until  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.ui.browser_data import active_draw_tool  # noqa: E402
from workbench.dashboard.app import Dashboard  # noqa: E402
from workbench.dashboard.retrainer import QuickConfig  # noqa: E402
from workbench.dashboard.session import DashboardSession  # noqa: E402
from workbench.labels.weak_labels import Scribble  # noqa: E402

TIMEOUT_MS = 60_000
CANVAS = ".annotation-canvas .bk-events"
HEX = re.compile(r"#[0-9a-fA-F]{6}\b")


@pytest.fixture
def served(page, synthetic_root, tmp_path):
    session = DashboardSession.open(
        data=synthetic_root, store=tmp_path / "a.sqlite", out=tmp_path / "out", quick=QuickConfig(steps=2)
    )
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    port = serve_and_wait(lambda: Dashboard(session))
    page.goto(f"http://localhost:{port}")
    expect(page.locator(CANVAS)).to_be_visible(timeout=TIMEOUT_MS)
    yield session, problems
    session.close()


def at(page, row: float, col: float, session) -> tuple[float, float]:
    """Screen position of pixel centre ``(row, col)`` of the current image."""
    box = page.locator(CANVAS).bounding_box()
    h, w = session.size()
    return box["x"] + (col + 0.5) / w * box["width"], box["y"] + (row + 0.5) / h * box["height"]


def tooltip_texts(page) -> list[str]:
    return [" ".join(t.split()) for t in page.locator(".bk-tooltip-content").all_inner_texts() if t.strip()]


def uniform_pixel(mask, away_from: tuple[int, int], margin: int = 3) -> tuple[int, int]:
    """A pixel whose neighbours within ``margin`` share its class (a hover a pixel off still lands on it)."""
    h, w = mask.shape
    for row in range(margin, h - margin):
        for col in range(margin, w - margin):
            window = mask[row - margin : row + margin + 1, col - margin : col + margin + 1]
            if (window == mask[row, col]).all() and abs(row - away_from[0]) + abs(col - away_from[1]) > 8:
                return row, col
    raise AssertionError("no uniform region in the ground truth of this image")


def test_hover_buttons_help_and_eraser(page, served):
    session, problems = served
    names = session.classes
    page.mouse.click(*at(page, 8, 8, session))  # a point of the first class; the click also focuses the page
    wait_until(lambda: len(session.items()) == 1, page, timeout=TIMEOUT_MS)

    page.mouse.move(*at(page, 20, 20, session))
    page.mouse.move(*at(page, 8, 8, session), steps=4)  # hover the point: its class by name
    wait_until(lambda: any(names[0] in t for t in tooltip_texts(page)), page, timeout=TIMEOUT_MS)
    texts = tooltip_texts(page)
    assert not any(HEX.search(t) for t in texts), texts
    assert not any(re.search(r"\b(cls|id|color)\b", t) for t in texts), texts
    page.get_by_label("mask overlay").select_option("ground truth")  # large regions: a pixel is easy to hit
    row, col = uniform_pixel(session.ground_truth(), away_from=(8, 8))
    page.mouse.move(*at(page, row, col, session), steps=4)
    truth = names[int(session.ground_truth()[row, col])]
    wait_until(lambda: f"class: {truth}" in tooltip_texts(page), page, timeout=TIMEOUT_MS)

    button = page.get_by_role("button", name=f"2 {names[1]}")  # digit and name on the class button
    swatch = button.evaluate("b => getComputedStyle(b, '::before').backgroundColor")
    r, g, b = (int(v) for v in session.colors[1][:3])
    assert swatch == f"rgb({r}, {g}, {b})", swatch
    button.click()
    wait_until(lambda: session.active_class == 1, page, timeout=TIMEOUT_MS)

    page.keyboard.press("?")
    expect(page.get_by_text("undo your latest edit")).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="? keys").click()
    expect(page.get_by_text("undo your latest edit")).to_be_hidden(timeout=TIMEOUT_MS)

    session.add_scribble([(20, 4), (20, 26)], cls=1)
    page.locator(CANVAS).click(position={"x": 1, "y": 1})  # focus stays in the dashboard
    page.keyboard.press("e")
    wait_until(lambda: active_draw_tool(page) == "FreehandDrawTool", page, timeout=TIMEOUT_MS)
    assert len(session.items()) == 2
    page.mouse.move(*at(page, 14, 15, session))
    page.mouse.down()
    page.mouse.move(*at(page, 26, 15, session), steps=10)  # across the scribble, not near the point
    page.mouse.up()
    wait_until(lambda: not any(isinstance(i, Scribble) for i in session.items().values()), page, timeout=TIMEOUT_MS)
    assert len(session.items()) == 1
    page.keyboard.press("z")
    wait_until(lambda: len(session.items()) == 2, page, timeout=TIMEOUT_MS)
    assert problems == [], problems


def test_a_file_over_the_limit_gets_a_message_and_the_page_stays_live(page, served):
    session, problems = served
    upload = page.locator('input[type="file"][accept=".json,.xml"]')
    upload.set_input_files({"name": "huge.json", "mimeType": "application/json", "buffer": b" " * 12_000_000})
    expect(page.get_by_text("upload refused: huge.json is 11.4 MiB, over the").first).to_be_visible(timeout=TIMEOUT_MS)
    upload.set_input_files({"name": "bad.json", "mimeType": "application/json", "buffer": b"{not json"})
    expect(page.get_by_text("upload refused: bad.json: upload: not valid JSON").first).to_be_visible(
        timeout=TIMEOUT_MS
    )  # beside the file picker and in the status line
    page.mouse.click(*at(page, 5, 5, session))  # the websocket is still open: a click is still an edit
    wait_until(lambda: len(session.items()) == 1, page, timeout=TIMEOUT_MS)
    assert problems == [], problems

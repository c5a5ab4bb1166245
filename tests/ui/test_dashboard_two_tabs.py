"""Two browser tabs on one dashboard server: each keeps its own image, class and undo stack, and
sees the other's edits, retrain progress and model version within a second or two.

The server runs in this process and serves ``Dashboard(session.new_tab())`` as ``apps/dashboard.py``
does, so the test reads the shared store and each tab's own state directly.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("playwright")
pytest.importorskip("panel")

from panel.tests.util import serve_and_wait, wait_until  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.ui.browser_data import browser_points  # noqa: E402
from workbench.dashboard.app import Dashboard  # noqa: E402
from workbench.dashboard.retrainer import QuickConfig  # noqa: E402
from workbench.dashboard.session import DashboardSession  # noqa: E402

TIMEOUT_MS = 60_000
SYNC_MS = 5_000  # the pages sync every 250 ms; a busy two-core machine gets a few seconds
CANVAS = ".annotation-canvas .bk-events"


def at(page, fx: float, fy: float) -> tuple[float, float]:
    box = page.locator(CANVAS).bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def point_classes(session: DashboardSession) -> list[int]:
    return sorted(item.cls for item in session.items(0).values())


def test_two_tabs_keep_their_own_state_and_share_edits_and_training(context, synthetic_root, tmp_path):
    torch.manual_seed(0)
    session = DashboardSession.open(
        data=synthetic_root, store=tmp_path / "annotations.sqlite", out=tmp_path / "out",
        quick=QuickConfig(steps=8, lr=3e-3), accept_worse=True,
    )  # fmt: skip
    tabs: list[Dashboard] = []

    def new_page_tab() -> Dashboard:
        tabs.append(Dashboard(session.new_tab()))
        return tabs[-1]

    try:
        port = serve_and_wait(new_page_tab)
        a, b = context.new_page(), context.new_page()
        for page in (a, b):
            page.goto(f"http://localhost:{port}")
            expect(page.locator(CANVAS)).to_be_visible(timeout=TIMEOUT_MS)
        first = f"(1/{len(session.names)}, split train)"
        assert len(tabs) == 2

        b.bring_to_front()
        b.mouse.click(*at(b, 0.7, 0.7))  # b's point, class sky; the click also gives b the keys
        wait_until(lambda: point_classes(session) == [0], b, timeout=TIMEOUT_MS)
        b.keyboard.press("n")  # b moves on; a stays on the first image
        expect(b.get_by_text(f"(2/{len(session.names)}, split train)")).to_be_visible(timeout=TIMEOUT_MS)
        wait_until(lambda: browser_points(a) == 1, a, timeout=SYNC_MS)  # b's point reached a's page
        expect(a.get_by_text(first)).to_be_visible()

        a.bring_to_front()
        a.mouse.click(*at(a, 0.2, 0.2))  # a's own point
        wait_until(lambda: len(session.items(0)) == 2, a, timeout=TIMEOUT_MS)
        a.keyboard.press("3")  # a's class; b's stays sky
        wait_until(lambda: tabs[0].session.active_class == 2, a, timeout=TIMEOUT_MS)
        a.mouse.click(*at(a, 0.5, 0.3))
        wait_until(lambda: len(session.items(0)) == 3, a, timeout=TIMEOUT_MS)
        assert point_classes(session) == [0, 0, 2]
        assert [t.session.active_class for t in tabs] == [2, 0] and [t.session.index for t in tabs] == [0, 1]

        b.bring_to_front()
        b.keyboard.press("p")
        expect(b.get_by_text(first)).to_be_visible(timeout=TIMEOUT_MS)
        wait_until(lambda: browser_points(b) == 3, b, timeout=SYNC_MS)
        b.keyboard.press("z")  # b's undo takes back b's own (oldest) point, not a's newer ones
        wait_until(lambda: len(session.items(0)) == 2, b, timeout=TIMEOUT_MS)
        mine = [(round(p.row), round(p.col)) for p in session.items(0).values()]
        h, w = session.size(0)
        assert all(abs(r - 0.7 * h) > 2 or abs(c - 0.7 * w) > 2 for r, c in mine), mine
        wait_until(lambda: browser_points(a) == 2, a, timeout=SYNC_MS)

        b.get_by_role("button", name="Retrain").click()  # progress and the new version show in a too
        expect(a.get_by_text("quick retrain").first).to_be_visible(timeout=TIMEOUT_MS)
        wait_until(lambda: session.current_version == 1, b, timeout=TIMEOUT_MS)
        expect(a.get_by_text("model v1")).to_be_visible(timeout=SYNC_MS)
        expect(a.get_by_role("button", name="Retrain")).to_be_enabled(timeout=TIMEOUT_MS)
    finally:
        session.close()

"""Every tab of the dashboard in a real browser, on a run of each of the 7 methods and on ``--data`` alone.

Fails on any browser console error, any request leaving the machine (resources load inline,
never from a CDN) and any exception on the server side (a tab that shows a traceback or an
alert). Keys act only after a click inside the dashboard.
"""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("playwright")
pytest.importorskip("panel")

from panel.tests.util import serve_and_wait, wait_until  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.ui.browser_data import watch_page  # noqa: E402
from workbench.dashboard.app import Dashboard  # noqa: E402
from workbench.dashboard.retrainer import QuickConfig  # noqa: E402
from workbench.dashboard.session import DashboardSession  # noqa: E402

TIMEOUT_MS = 60_000
CANVAS = ".annotation-canvas .bk-events"
METHOD_NAMES = ("supervised", "partial_ce", "cam", "single_stage", "spml", "simformer", "transfer")
TABS = ["Images", "Where to click", "Affinity", "CAM vs pseudo-mask", "Proposals", "Metrics", "Your image", "Annotate"]


@pytest.fixture(scope="module")
def runs(module_dir, synthetic_root):
    """One-epoch runs of every method, each on its first kind of labels (weak-shot ones with novel
    classes stored as names)."""
    from workbench.methods import METHODS
    from workbench.train.config import TrainConfig
    from workbench.train.loop import train

    base = module_dir
    out = {}
    for name in METHOD_NAMES:
        novel = "ring,cross" if name in ("simformer", "transfer") else None
        config = TrainConfig(data=str(synthetic_root), out=str(base / name), epochs=1, batch_size=4, novel=novel)
        train(METHODS[name], METHODS[name].Config(), config)
        out[name] = base / name
    return out


def visit_every_tab(page, dashboard: Dashboard) -> None:
    for title in TABS:
        page.locator(".bk-tab", has_text=title).first.click()
        page.wait_for_timeout(300)
        if title not in ("Annotate", "Your image"):  # the lazy tabs are built when shown
            wait_until(lambda title=title: title in dashboard.shown, page, timeout=TIMEOUT_MS)
        wait_until(lambda: page.locator(".pn-loading").count() == 0, page, timeout=TIMEOUT_MS)
        if title in ("Images", "Where to click"):  # the lazily built content reached the page
            expect(page.locator(".tabulator").first).to_be_visible(timeout=TIMEOUT_MS)
        if title == "Affinity":
            plot = page.locator(".bk-events").last
            if plot.is_visible():
                box = plot.bounding_box()
                page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        if title == "Metrics":
            run_b = page.get_by_label("run B")
            if run_b.locator("option").count() > 1:  # --data alone has no runs to compare
                run_b.select_option(index=0)
        page.wait_for_timeout(300)
        assert page.get_by_text("Traceback").count() == 0, title
        assert page.locator(".alert-warning, .alert-danger").count() == 0, title


@pytest.mark.parametrize("which", [*METHOD_NAMES, "data only"])
def test_every_tab_without_errors(page, runs, synthetic_root, tmp_path, which, caplog):
    run = None if which == "data only" else runs[which]
    session = DashboardSession.open(
        data=synthetic_root if run is None else None, run=run, store=tmp_path / "s.sqlite", out=tmp_path / "out",
        quick=QuickConfig(steps=2, replay=2),
    )  # fmt: skip
    problems = watch_page(page)
    try:
        dashboards: list[Dashboard] = []
        port = serve_and_wait(lambda: dashboards.append(Dashboard(session)) or dashboards[-1])
        page.goto(f"http://localhost:{port}")
        expect(page.locator(CANVAS)).to_be_visible(timeout=TIMEOUT_MS)
        page.keyboard.press("2")  # not focused yet: the key is not the dashboard's
        page.wait_for_timeout(500)
        assert session.active_class == 0
        box = page.locator(CANVAS).bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        wait_until(lambda: len(session.items()) == 1, page, timeout=TIMEOUT_MS)
        page.keyboard.press("2")
        wait_until(lambda: session.active_class == 1, page, timeout=TIMEOUT_MS)
        page.keyboard.press("n")
        wait_until(lambda: session.index == 1, page, timeout=TIMEOUT_MS)
        assert dashboards[-1].shown == {}  # page load builds the Annotate tab only
        visit_every_tab(page, dashboards[-1])
        page.keyboard.press("p")  # back to the first image with Metrics opened: Affinity follows
        wait_until(lambda: session.index == 0, page, timeout=TIMEOUT_MS)
        page.locator(".bk-tab", has_text="Affinity").first.click()
        page.wait_for_timeout(1000)
        assert not problems, problems
        closed = ("WebSocketClosedError", "StreamClosedError")  # a previous test's page went away: not ours
        server_errors = [
            r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and not any(c in r.getMessage() for c in closed)
        ]  # fmt: skip
        assert not server_errors, server_errors
    finally:
        session.close()

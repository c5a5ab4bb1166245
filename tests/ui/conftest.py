"""Browser tests: Playwright drives Debian's chromium (``make chromium`` installs it; no browser download).

Every test here is marked ``ui``. Without ``/usr/bin/chromium`` (or ``WORKBENCH_CHROMIUM``) they
skip with a message. A failing test leaves a full-page screenshot in ``tests/ui/screenshots/``
(or ``WORKBENCH_SCREENSHOTS``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("WORKBENCH_SCREENSHOTS", Path(__file__).parent / "screenshots"))
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items) -> None:
    ours = [item for item in items if Path(str(item.fspath)).parent == HERE]
    for item in ours:
        item.add_marker(pytest.mark.ui)
    if not CHROMIUM.is_file():
        reason = (
            f"chromium not found at {CHROMIUM}: run `make chromium` (apt-get install chromium) to run browser tests"
        )
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": LAUNCH_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, page):
    """Save a full-page screenshot of a failed test before the page closes."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in request.node.name)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="session", autouse=True)
def torch_threads_as_the_app_sets_them():
    """The app leaves a core for the UI (``leave_a_core``); two model threads on every core thrash."""
    import torch

    from workbench.dashboard.retrainer import leave_a_core

    before = torch.get_num_threads()
    leave_a_core()
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def server_cleanup():
    import panel as pn

    try:
        yield
    finally:
        pn.state.reset()

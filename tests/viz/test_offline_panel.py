"""workbench.viz.offline_panel: in a notebook no stylesheet Panel sends points at its CDN, on the first
display and after a pane is updated in place (the path Panel 1.9.4 leaves on the CDN)."""

from __future__ import annotations

import pytest

pn = pytest.importorskip("panel")

from bokeh.document import Document  # noqa: E402
from bokeh.models import ImportedStyleSheet, InlineStyleSheet, UIElement  # noqa: E402
from panel.io.model import add_to_doc  # noqa: E402
from panel.io.resources import CDN_DIST, DIST_DIR, set_resource_mode  # noqa: E402
from pyviz_comms import Comm  # noqa: E402

from workbench.viz import offline_panel  # noqa: E402


class SilentComm(Comm):
    """A notebook comm with no frontend: what a kernel renders into, minus the sending."""

    def init(self, *args, **kwargs):
        pass

    def send(self, *args, **kwargs):
        pass

    def close(self):
        pass


def sheet_urls(doc: Document) -> list[str]:
    sheets = (s for m in doc.models if isinstance(m, UIElement) for s in m.stylesheets)
    return sorted({str(s.url) for s in sheets if isinstance(s, ImportedStyleSheet)})


@pytest.fixture
def notebook_output(monkeypatch):
    """A Markdown pane in a column, rendered as a notebook cell renders it (inline mode, a comm, a
    document with no server session), with the hook of ``offline_extension`` in place."""
    offline_panel.offline_extension()
    monkeypatch.setattr(offline_panel, "in_kernel", lambda: True)
    status = pn.pane.Markdown("0 points")
    view = pn.Column(status, pn.pane.Str("x"))
    doc = Document()
    with set_resource_mode("inline"):
        root = view.get_root(doc, SilentComm())
    add_to_doc(root, doc, True)
    offline_panel._notebook_hook(view, root)  # what the kernel's IOLoop callback does after the display
    yield doc, status
    view._cleanup(root)


def test_inline_stylesheets_reads_panels_own_files():
    sheet = ImportedStyleSheet(url=f"{CDN_DIST}css/loading.css?v=1")
    other = ImportedStyleSheet(url="https://example.org/site.css")
    model = pn.pane.Markdown("x").get_root()
    model.stylesheets = [sheet, other, ":host { color: red; }"]
    assert offline_panel.inline_stylesheets(model) == 1
    inline, kept, raw = model.stylesheets
    assert isinstance(inline, InlineStyleSheet) and inline.css == (DIST_DIR / "css" / "loading.css").read_text()
    assert kept is other and raw == ":host { color: red; }"  # not Panel's: left alone


def test_no_cdn_stylesheet_on_display_or_after_an_in_place_update(notebook_output):
    doc, status = notebook_output
    assert sheet_urls(doc) == []  # the first display: all inline
    status.object = "1 point"  # Markdown updates in place: Panel re-sends its stylesheets, unprocessed
    urls = sheet_urls(doc)
    assert urls, "the in-place update sent no stylesheet URL: the test no longer checks that path"
    assert not [u for u in urls if u.startswith(("http:", "https:"))], urls
    assert all(u.startswith(offline_panel.jupyter_dist_url()) for u in urls), urls


def test_outside_a_kernel_the_hook_leaves_panel_alone():
    """A served app, a saved HTML file: Panel's server, or its CDN, serves the stylesheets there."""
    offline_panel.offline_extension()
    view = pn.pane.Markdown("x")
    doc = Document()
    with set_resource_mode("cdn"):
        root = view.get_root(doc)
    add_to_doc(root, doc, True)
    before = sheet_urls(doc)
    assert before, "no stylesheet URL: Panel sent none, or the hook inlined them outside a kernel"
    offline_panel._notebook_hook(view, root)
    assert sheet_urls(doc) == before and "dist_url" not in doc._template_variables


def test_jupyter_dist_url_follows_the_hub_prefix(monkeypatch):
    monkeypatch.delenv("WORKBENCH_JUPYTER_BASE_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert offline_panel.jupyter_dist_url() == "/panel-preview/static/extensions/panel/"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    assert offline_panel.jupyter_dist_url() == "/user/ada/panel-preview/static/extensions/panel/"
    monkeypatch.setenv("WORKBENCH_JUPYTER_BASE_URL", "/lab-base")
    assert offline_panel.jupyter_dist_url() == "/lab-base/panel-preview/static/extensions/panel/"

"""Panel and HoloViews with no internet: every script and stylesheet from the kernel or its Jupyter server.

Offline labs (clusters, air-gapped sites) render nothing a CDN has to send. What ``pn.extension(inline=True)``
alone still took from ``cdn.holoviz.org`` in JupyterLab (Panel 1.9.4), and why:

* ``hv.extension("bokeh")`` loads the notebook resources a second time with HoloViews' own default,
  ``inline=False``; that bundle points Tabulator's luxon and CSS and the ES-module shim of ``JSComponent``
  at the CDN. The browser fetches them only when the first, inline load has finished initialising before the
  second arrives (``load_libs`` in Panel's autoload script skips libraries while one is loading), hence
  "only in some runs". Fix: ``inline=True`` there too.
* Components carry stylesheets as ``ImportedStyleSheet`` URLs on the CDN (``loading.css``, the theme's
  ``default.css`` and ``native.css``, ``listpanel.css``). In a notebook Panel swaps them for inline copies
  when an output is displayed and when a layout or pane is rebuilt (``Viewable._preprocess``), but a pane
  updated in place (``_updates = True``: Markdown, HTML, Str, ...) re-sends all its properties, CDN
  stylesheets included, with no preprocessing: the dashboard's status line did this on every click.
  Panel's own way to point these URLs elsewhere is the document's ``dist_url`` template variable (what
  ``panel serve`` and Panel's JupyterLab preview set). Fix: a preprocessing hook sets it to the kernel's
  Jupyter server, which serves Panel's files at ``<base_url>panel-preview/static/extensions/panel/`` (Panel's
  Jupyter server extension, enabled when Panel is installed next to JupyterLab), and inlines every such sheet
  of what is (re-)rendered, so only those in-place updates ask the server.

A served app (``panel serve``) is untouched: its documents have a session context, and Panel's server sets
``dist_url`` and serves the same files itself.
"""

from __future__ import annotations

import os
from functools import cache

import holoviews as hv
import panel as pn
from bokeh.models import ImportedStyleSheet, InlineStyleSheet
from bokeh.models.ui import UIElement
from panel.io.resources import CDN_DIST, DIST_DIR
from panel.io.state import state
from panel.viewable import Viewable
from tornado.ioloop import IOLoop


def jupyter_dist_url() -> str:
    """Where the kernel's Jupyter server serves Panel's ``dist`` folder (Panel's Jupyter server extension).

    JupyterHub gives the server's base URL to the kernel as ``JUPYTERHUB_SERVICE_PREFIX``; elsewhere it is
    ``/`` unless ``WORKBENCH_JUPYTER_BASE_URL`` says otherwise (a lab started with ``--ServerApp.base_url``).
    """
    base = os.environ.get("WORKBENCH_JUPYTER_BASE_URL") or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    return f"{base.rstrip('/')}/panel-preview/static/extensions/panel/"


@cache
def _local_css(url: str) -> str | None:
    """The text of a stylesheet Panel points at its CDN (or at the Jupyter server), read from Panel's
    own ``dist`` folder; None for any other stylesheet."""
    prefix = next((p for p in (CDN_DIST, jupyter_dist_url()) if url.startswith(p)), None)
    if prefix is None:
        return None
    path = DIST_DIR / url[len(prefix) :].split("?")[0]
    return path.read_text(encoding="utf-8") if path.is_file() else None


def inline_stylesheets(model: UIElement) -> int:
    """Replace the CDN stylesheets of ``model`` by inline copies; returns how many were replaced."""
    sheets, replaced = [], 0
    for sheet in model.stylesheets:
        css = _local_css(str(sheet.url)) if isinstance(sheet, ImportedStyleSheet) else None
        if css is not None:
            sheet, replaced = InlineStyleSheet(css=css), replaced + 1
        sheets.append(sheet)
    if replaced:
        model.stylesheets = sheets
    return replaced


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (where Panel renders into notebook outputs)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return hasattr(get_ipython(), "kernel")


def _serve_from_jupyter(doc) -> None:
    """Stylesheets Panel re-sends without preprocessing come from the Jupyter server, not the CDN."""
    doc._template_variables.setdefault("dist_url", jupyter_dist_url())


def _notebook_hook(viewable: Viewable, root, changed: Viewable | None = None, old_models=None) -> None:
    """Panel preprocessing hook (every render and re-render of an output): in a notebook, inline the CDN
    stylesheets of what was (re-)rendered: the whole output at first, then the changed part."""
    doc = root.document
    served = getattr(doc or state.curdoc, "session_context", None) is not None
    if served or not in_kernel():
        return  # a served app or a saved file: Panel's server, or its CDN, serves these files
    ref = root.ref["id"]
    part = changed._models[ref][0] if changed is not None and ref in changed._models else root
    for model in part.select({"type": UIElement}):
        inline_stylesheets(model)
    if doc is not None:
        _serve_from_jupyter(doc)
    elif (loop := IOLoop.current(instance=False)) is not None:
        # a new output: Panel adds it to its document once the cell has displayed it
        def once_displayed() -> None:
            if root.document is not None:
                _serve_from_jupyter(root.document)

        loop.add_callback(once_displayed)


def offline_extension(*extensions: str, **params) -> None:
    """``pn.extension`` and ``hv.extension("bokeh")`` with every resource from the kernel (or the server).

    Use it instead of the two calls in notebooks and apps: the notebooks and the dashboard then render in
    a JupyterLab with no internet, with no request leaving the machine.
    """
    pn.extension(*extensions, inline=True, **params)
    hv.extension("bokeh", inline=True)
    if _notebook_hook not in Viewable._preprocessing_hooks:
        Viewable._preprocessing_hooks.append(_notebook_hook)

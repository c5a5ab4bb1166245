"""The weakseg dashboard: browse images, annotate points and scribbles, retrain in place, inspect the model.

Served by ``apps/dashboard.py``; shown in a JupyterLab cell with::

    from workbench.dashboard.app import Dashboard
    from workbench.dashboard.session import DashboardSession
    Dashboard(DashboardSession.open(run="runs/latest"))

This file is layout only: state and torch work live in :mod:`workbench.dashboard.session` (one tab's view
state over :mod:`workbench.dashboard.workspace`, :mod:`workbench.dashboard.outputs` and :mod:`workbench.dashboard.retrainer`),
drawing in :mod:`workbench.viz.views`; each tab's view below is a function of the session, bound with
``pn.bind`` to the params it reads. Keys: digits pick the class, ``[`` ``]`` brush width, ``z`` undo,
``Z`` redo, ``n``/``p`` next/previous image, ``e`` eraser, ``?`` the list of keys. Every edit is
stored in SQLite at once.
"""

from __future__ import annotations

import asyncio
import io
from functools import partial
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.core.validation import silence
from bokeh.core.validation.warnings import FIXED_SIZING_MODE
from holoviews import streams
from panel.io.callbacks import PeriodicCallback
from panel.io.state import set_curdoc

from workbench.dashboard.canvas import TOOLS, USER_ERRORS, AnnotationCanvas, KeyboardShortcuts, shortcuts
from workbench.dashboard.security import check_upload, safe_path
from workbench.dashboard.session import DashboardSession, read_run
from workbench.dashboard.uploads import MAX_MESSAGE_FILE_BYTES, SizeCheckedFileInput, size_text
from workbench.viz import views
from workbench.viz.offline_panel import offline_extension

offline_extension("tabulator")  # every script and stylesheet from the server or kernel, never a CDN
silence(FIXED_SIZING_MODE)  # images are sized by frame_width/frame_height on purpose (square pixels)

MAX_JSON_BYTES = 5_000_000  # a weak-label JSON of a few thousand images
MAX_IMAGE_BYTES = MAX_MESSAGE_FILE_BYTES  # an image to try the model on: what one websocket message carries
IMAGE_TYPES = ".png,.jpg,.jpeg,.bmp,.tif,.tiff,.webp"
POLL_MS = 250  # how often the page reads the trainer's progress
PROPOSALS_K = 8


def plot_pane(obj, **params) -> pn.pane.HoloViews:
    """A plot that shares no axis with any other plot of the page: linked axes joined the Metrics
    bars' flat class factors with the run comparison's nested ones (Bokeh FactorRange error) and
    tied plots of different tabs together."""
    return pn.pane.HoloViews(obj, linked_axes=False, **params)


def _run_in(doc, fn, *events) -> None:
    with set_curdoc(doc):
        fn(*events)


class Dashboard(pn.viewable.Viewer):
    """The whole page for one browser tab (or notebook cell) over one :class:`DashboardSession` tab.

    Serve ``lambda: Dashboard(session.new_tab())`` so that each browser tab keeps its own image,
    class, tool, overlay and undo stack while all share the store, model and trainer; a periodic
    callback shows the other tabs' edits, retrain progress and model version within ``POLL_MS``.
    """

    tool = param.Selector(default="point", objects=list(TOOLS), doc="what a click or drag on the image does")

    def __init__(self, session: DashboardSession, **params) -> None:
        super().__init__(**params)
        self.session = session
        self.canvas = AnnotationCanvas(session)
        self._before_eraser = "point"
        self._watchers: list = []
        self.shown: dict[str, list] = {}  # what each tab of TABS shows now (built when the tab is first opened)
        self._built: dict[str, dict] = {}  # the session state each tab was built from
        self._poller: PeriodicCallback | None = None
        self._syncer: PeriodicCallback | None = None
        self._build()
        self._watch()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        s = self.session
        self.keys = KeyboardShortcuts(self._on_key, scope=f"weakseg-dashboard-{id(self):x}")
        self.image_name = pn.pane.Markdown(self._image_title(), margin=(0, 10))
        prev_btn = pn.widgets.Button(label="◀ previous (p)", width=120)
        next_btn = pn.widgets.Button(label="next (n) ▶", width=120)
        prev_btn.on_click(lambda e: s.step(-1))
        next_btn.on_click(lambda e: s.step(1))
        self.class_picker = pn.widgets.RadioButtonGroup(
            options=views.class_button_labels(s.classes, s.novel), value=s.active_class, orientation="vertical",
            button_style="outline", stylesheets=[views.class_button_css(s.colors, s.novel)], width=250,
        )  # fmt: skip
        self.class_picker.param.watch(lambda e: setattr(s, "active_class", e.new), "value")
        self.help = pn.pane.HTML(views.keys_help_html(shortcuts(len(s.classes))), visible=False, width=250)
        help_btn = pn.widgets.Button(label="? keys", width=80, description="list the keyboard shortcuts (key ?)")
        help_btn.on_click(lambda e: self.toggle_help())
        tool = pn.widgets.RadioButtonGroup.from_param(self.param.tool, label="tool", color="primary")
        brush = pn.widgets.FloatSlider.from_param(s.param.brush_width, label="brush width ([ ])", step=1)
        opacity = pn.widgets.FloatSlider.from_param(s.param.opacity, step=0.05)
        overlay = pn.widgets.Select.from_param(s.param.overlay, label="mask overlay")
        visible = pn.widgets.CheckButtonGroup.from_param(s.param.visible, label="show classes", orientation="vertical")
        undo_btn = pn.widgets.Button(label="undo (z)", width=95)
        redo_btn = pn.widgets.Button(label="redo (Z)", width=95)

        def undo(_event) -> None:
            s.undo()

        def redo(_event) -> None:
            s.redo()

        undo_btn.on_click(undo)
        redo_btn.on_click(redo)
        self.legend = pn.pane.HTML(views.legend_html(s.classes, s.colors, s.active_class, s.novel))
        self.status = pn.pane.Str(self._status_text(), styles={"font-size": "12px"})
        self.sidebar = pn.Column(
            pn.Row(prev_btn, next_btn), tool, "**class** (digit keys)", self.class_picker, brush,
            pn.Row(undo_btn, redo_btn), overlay, opacity, pn.Accordion(("show classes", visible)),
            self._retrain_box(), self._export_box(), width=280,
        )  # fmt: skip
        annotate = pn.Column(
            pn.Row(self.image_name, help_btn),
            pn.Row(plot_pane(self.canvas.plot, css_classes=["annotation-canvas"]), pn.Column(self.legend, self.help)),
            self.status,
        )
        self._image_input = SizeCheckedFileInput(
            self._on_image_upload, partial(self._refused, "image", MAX_IMAGE_BYTES), accept=IMAGE_TYPES,
            max_bytes=MAX_IMAGE_BYTES,
        )  # fmt: skip
        self._upload_view = pn.Column(self._image_input, "Upload an image to see the current model's prediction on it.")
        # Panel's lazy tabs: only the active tab is sent to the browser (dynamic=True), and each view is a
        # function bound to the session params it reads, first called when its tab is shown (lazy=True)
        self.titles = ["Annotate", *TABS, "Your image"]
        self.tabs = pn.Tabs(dynamic=True)
        views_ = [
            pn.param.ParamFunction(
                pn.bind(
                    self._tab_view, title, active=self.tabs.param.active, **{n: s.param[n] for n in TABS[title][1]}
                ),
                lazy=True,
                loading_indicator=True,
            )
            for title in TABS
        ]
        self.tabs.extend(list(zip(self.titles, [annotate, *views_, self._upload_view])))

    def _retrain_box(self) -> pn.Column:
        s = self.session
        mode = pn.widgets.RadioButtonGroup.from_param(s.param.train_mode, label="retrain mode")
        refusal = s.retrainer.full_refusal()
        if refusal is not None:  # offered only where it can run (a weak-shot run learns from masks and tags)
            mode.options, mode.disabled = ["quick"], True
            s.train_mode = "quick"
            mode.description = f"full retrain: {refusal}"
        self.retrain_btn = pn.widgets.Button(label="Retrain", color="success", width=120)
        self.cancel_btn = pn.widgets.Button(label="Cancel", color="danger", width=120, disabled=True)
        self.progress = pn.indicators.Progress(value=0, max=100, width=250, active=False)
        self.train_text = pn.pane.Str("", styles={"font-size": "12px"})
        self.loss_pipe = streams.Pipe(data=[])  # new points only: the plot is updated, not rebuilt
        self.loss_pane = plot_pane(hv.DynamicMap(lambda data: views.loss_curve(data), streams=[self.loss_pipe]))
        self.loss_box = pn.Column()  # gets the plot at the first retrain: even a hidden plot costs a page load 0.3 s
        self.retrain_btn.on_click(lambda e: self._retrain())
        self.cancel_btn.on_click(lambda e: s.cancel())
        self.version_picker = pn.widgets.Select(name="model version", options=self._version_options(), width=250)
        self.use_btn = pn.widgets.Button(label="make current", width=120)
        self.use_btn.on_click(lambda e: self._guard(lambda: s.use_version(self.version_picker.value)))
        return pn.Column(
            "**retrain in place**", mode, pn.Row(self.retrain_btn, self.cancel_btn), self.progress, self.train_text,
            self.loss_box, self.version_picker, self.use_btn,
        )  # fmt: skip

    def _version_options(self) -> dict:
        s = self.session
        if not s.versions:
            return {f"v{s.model_version} (opened)": s.model_version}
        options = {}
        for v in s.versions:
            mark = " - current" if v.number == s.model_version else (" - not used" if v is s.pending else "")
            mark += {"memory": "", "disk": " (on disk)", "dropped": " (dropped)"}[v.kept]
            options[f"v{v.number} {v.label}: val mIoU {v.summary['miou']:.3f}{mark}"] = v.number
        return options

    def _refresh_versions(self) -> None:
        self.version_picker.options = self._version_options()
        self.version_picker.value = self.session.model_version

    def _export_box(self) -> pn.Column:
        s = self.session
        self.label_format = pn.widgets.Select(
            name="format", options={"weak-label JSON": "weakseg", "Label Studio": "labelstudio", "CVAT XML": "cvat",
                                    "COCO": "coco"}, value="weakseg", width=250,
        )  # fmt: skip
        json_btn = pn.widgets.Button(label="Export", width=120)
        png_btn = pn.widgets.Button(label="Export PNG masks", width=120)
        json_btn.on_click(lambda e: self._guard(lambda: s.export_labels(self.label_format.value)))
        png_btn.on_click(lambda e: self._guard(s.export_png))
        download = pn.widgets.FileDownload(
            callback=self._labels_bytes, filename="annotations.json", label="Download", width=250
        )
        self.label_format.param.watch(lambda e: setattr(download, "filename", _download_name(e.new)), "value")
        upload = SizeCheckedFileInput(
            self._on_json_upload, partial(self._refused, "labels", MAX_JSON_BYTES), accept=".json,.xml",
            max_bytes=MAX_JSON_BYTES,
        )  # fmt: skip
        self.import_note = pn.pane.Alert("", alert_type="light", visible=False, width=250)
        return pn.Column(
            "**annotations**", self.label_format, pn.Row(json_btn, png_btn), download, "import (same format):", upload,
            self.import_note,
        )  # fmt: skip

    def __panel__(self):
        return pn.Row(self.sidebar, self.tabs, self.keys, css_classes=[self.keys.scope])

    # ------------------------------------------------------------------ reacting to the session

    def _watch(self) -> None:
        s = self.session
        on = [
            (self._on_index, ["index"]),
            (lambda e: self.canvas.refresh_annotations(), ["annotation_version"]),
            (self._on_model, ["model_version"]),
            (lambda e: self._refresh_versions(), ["versions_listed"]),
            (lambda e: self.canvas.refresh_overlay(), ["overlay", "opacity", "preview"]),
            (lambda e: self.canvas.refresh_image(), ["visible"]),
            (self._on_class, ["active_class"]),
            (
                lambda e: self._update_status(),
                ["index", "message", "annotation_version", "model_version", "brush_width"],
            ),
        ]
        self._watchers = [s.param.watch(self._in_own_document(fn), names) for fn, names in on]
        self.param.watch(lambda e: self.canvas.set_tool(e.new), "tool")
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda ctx: self.unwatch())
            self._syncer = pn.state.add_periodic_callback(self.sync, period=POLL_MS)
        s.poll()  # a retrain that finished while no tab was open lands now
        if s.trainer.running:  # a tab opened (or reloaded) while a retrain runs follows it
            self._start_polling()

    def _in_own_document(self, fn):
        """The session is shared by every open tab: run ``fn`` on this tab's own event loop and document."""
        doc = pn.state.curdoc

        def run(*events):
            if doc is None or doc.session_context is None or pn.state.curdoc is doc:
                fn(*events)
            else:
                doc.add_next_tick_callback(partial(_run_in, doc, fn, *events))

        return run

    def unwatch(self) -> None:
        """Stop following the shared session (the tab closed)."""
        for watcher in self._watchers:
            self.session.param.unwatch(watcher)
        self._watchers = []
        for callback in (self._poller, self._syncer):
            if callback is not None:
                callback.stop()

    def sync(self) -> None:
        """Show what other tabs did: their edits, the current model version and a retrain they started."""
        self.session.sync()
        if self.session.trainer.running and not self.retrain_btn.disabled:
            self._start_polling()

    def _on_index(self, event) -> None:
        self.image_name.object = self._image_title()
        self.canvas.refresh_image()

    def _on_model(self, event) -> None:
        self._refresh_versions()
        self.canvas.refresh_overlay()

    def _on_class(self, event) -> None:
        s = self.session
        self.class_picker.value = s.active_class
        self.legend.object = views.legend_html(s.classes, s.colors, s.active_class, s.novel)

    def toggle_help(self) -> None:
        """Show or hide the list of keys (the ``?`` button and key)."""
        self.help.visible = not self.help.visible

    def _image_title(self) -> str:
        s = self.session
        return f"### {s.image_name} ({s.index + 1}/{len(s.names)}, split {s.split})"

    def _status_text(self) -> str:
        s = self.session
        items = list(s.items().values())
        n_points = sum(type(i).__name__ == "Point" for i in items)
        right, labelled = s.labelled_accuracy()
        return (
            f"{s.image_name}: {n_points} points, {len(items) - n_points} scribbles | brush {s.brush_width:g} | "
            f"model v{s.model_version}: labelled pixels right {right}/{labelled}\n{s.message}"
        )

    def _update_status(self) -> None:
        self.status.object = self._status_text()

    def _on_key(self, key: str) -> None:
        if key == "?":
            self.toggle_help()
        elif key == "e":  # the eraser, and back to the tool used before it
            self.tool, self._before_eraser = (
                ("eraser", self.tool) if self.tool != "eraser" else (self._before_eraser, "")
            )
        else:
            self._guard(lambda: self.session.handle_key(key))

    def _guard(self, fn) -> None:
        try:
            fn()
        except USER_ERRORS as err:
            self.session.message = str(err)

    # ------------------------------------------------------------------ lazy tabs

    def _tab_view(self, title: str, active: int, **state):
        """The bound view of tab ``title``: built when the tab is open and the session state it reads has
        changed since it was built (a hidden tab keeps its content until it is opened again). The build
        runs in a thread, so the page stays responsive; Panel keeps only the newest of overlapping builds."""
        if self.titles[active] != title or self._built.get(title) == state:
            raise param.Skip
        self._built[title] = state
        return self._build_tab(title)

    async def _build_tab(self, title: str) -> pn.Column:
        try:
            objects = await asyncio.to_thread(TABS[title][0], self.session, self.open_image)
        except USER_ERRORS as err:
            objects = [pn.pane.Alert(str(err), alert_type="warning")]
        self.shown[title] = objects
        return pn.Column(*objects)

    def open_image(self, index: int) -> None:
        """Show image ``index`` in the Annotate tab (a click on a row of the image tables)."""
        self.session.index = int(index)
        self.tabs.active = 0

    # ------------------------------------------------------------------ retraining

    def _retrain(self) -> None:
        try:
            self.session.retrain()
        except USER_ERRORS as err:
            self.session.message = str(err)
            return
        self._start_polling()

    def _start_polling(self) -> None:
        self.retrain_btn.disabled, self.cancel_btn.disabled = True, False
        self.progress.value, self.progress.active = 0, True
        if not len(self.loss_box):
            self.loss_box.append(self.loss_pane)
        self.loss_pipe.send([])
        if self._poller is None:
            self._poller = pn.state.add_periodic_callback(self._poll, period=POLL_MS, start=False)
        self._poller.start()

    def _poll(self) -> None:
        state = self.session.poll()
        self.progress.value = int(100 * state["progress"])
        self.train_text.object = state["message"]
        if len(state["losses"]) != len(self.loss_pipe.data):
            self.loss_pipe.send(state["losses"])
        if "finished" in state or state["status"] != "running":
            self._refresh_versions()  # a retrain that lowered val mIoU is listed, not current
            if self._poller is not None:
                self._poller.stop()
            self.retrain_btn.disabled, self.cancel_btn.disabled, self.progress.active = False, True, False

    # ------------------------------------------------------------------ files

    def _labels_bytes(self) -> io.BytesIO:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = self.session.export_labels(self.label_format.value, Path(tmp) / "labels")
            self.session.message = f"download of the annotations ({self.label_format.value}) prepared"
            return io.BytesIO(path.read_bytes())

    def _on_json_upload(self, name: str, data: bytes) -> None:
        """Import an annotation file (the format picked above); a bad file is refused with why, naming it."""
        try:
            count = self.session.import_labels_bytes(data, self.label_format.value)
        except (*USER_ERRORS, UnicodeDecodeError) as err:
            self._note(f"upload refused: {name}: {err}", "danger")
        else:
            self._note(f"{name}: {self.session.message}" if count else f"{name}: nothing new to import", "success")

    def _refused(self, what: str, limit: int, name: str, size: int) -> None:
        """A file the browser did not send: over ``limit`` (``size`` bytes), or unreadable (``size`` -1)."""
        why = "could not be read" if size < 0 else f"is {size_text(size)}, over the {size_text(limit)} limit"
        fix = "downscale or recompress the image" if what == "image" else "split it or import it with the CLI"
        message = f"upload refused: {name} {why}; {fix}"
        if what == "image":
            self._upload_view.objects = [self._image_input, pn.pane.Alert(message, alert_type="danger")]
        else:
            self._note(message, "danger")

    def _note(self, text: str, kind: str) -> None:
        self.session.message = text
        self.import_note.object, self.import_note.visible = text, True
        self.import_note.alert_type = kind  # type: ignore[assignment]  # one of Alert's kinds, from the callers

    def _on_image_upload(self, name: str, data: bytes) -> None:
        try:
            image = check_upload(data, MAX_IMAGE_BYTES)
        except USER_ERRORS as err:
            self._upload_view.objects = [
                self._image_input,
                pn.pane.Alert(f"upload refused: {name}: {err}", alert_type="danger"),
            ]
            return
        s = self.session
        probs = s.probabilities_of(image)
        view = views.image_element(image) * views.mask_element(
            probs.argmax(0).astype(np.uint8), s.colors, None, s.opacity
        )
        self._upload_view.objects = [
            self._image_input,
            pn.Row(plot_pane(view.opts(title="prediction")),
                   plot_pane(views.uncertainty_view(image, probs, s.uncertainty))),
        ]  # fmt: skip


# ----------------------------------------------------------------------------- the tabs' views
# Each view is a function of the session tab (and of how to open an image): it reads the state it needs
# and returns the tab's components. TABS names the session params each one reads; the Dashboard binds them.


GOOD_TO_BAD = ["#2DC214", "#F1C40F", "#E74C3C"]  # Tabulator progress colours, low value to high


def image_table(
    frame: pd.DataFrame, bar_column: str, size: int, open_image, high_is_good: bool = True
) -> pn.widgets.Tabulator:
    """One row an image (``frame`` has an ``index`` column), ``bar_column`` drawn as a 0..1 bar, green
    where the value is good (a high mIoU, a low uncertainty); clicking a row calls ``open_image(index)``."""
    colors = GOOD_TO_BAD[::-1] if high_is_good else GOOD_TO_BAD
    table = pn.widgets.Tabulator(
        frame, disabled=True, show_index=False, height=size, width=size, selectable=False,
        formatters={bar_column: {"type": "progress", "max": 1, "legend": True, "color": colors}},
    )  # fmt: skip
    table.on_click(lambda event: open_image(int(frame.loc[event.row, "index"])))
    return table


def images_view(s: DashboardSession, open_image) -> list:
    table = image_table(views.per_image_frame(s.per_image_iou()), "miou", 500, open_image)
    return [pn.pane.Markdown(f"Per-image mIoU on **{s.split}**, worst first: click a row to open it."), table]


def uncertainty_view(s: DashboardSession, open_image) -> list:
    kind = pn.widgets.RadioButtonGroup.from_param(s.param.uncertainty)
    # the ranking runs the model over the whole split (seconds, once per version): the map shows at once,
    # the table follows with its own spinner
    table = pn.param.ParamFunction(pn.bind(ranking_table, s, open_image), lazy=True, loading_indicator=True)
    note = (
        f"**Which image next**: every image of **{s.split}** by the model's mean {s.uncertainty} (no ground "
        "truth used), most uncertain first; click a row to annotate it. **Where in this image**: the map."
    )
    return [
        kind,
        pn.pane.Markdown(note),
        pn.Row(table, plot_pane(views.uncertainty_view(s.image(), s.probabilities(), s.uncertainty))),
    ]


async def ranking_table(s: DashboardSession, open_image):
    """A note while every image of the split is ranked (in a thread), then the clickable table."""
    yield pn.Row(pn.indicators.LoadingSpinner(value=True, size=20), f"ranking {len(s.names)} images by uncertainty...")
    rows = await asyncio.to_thread(s.uncertainty_ranking)
    yield image_table(pd.DataFrame(rows).round(3), "uncertainty", 420, open_image, high_is_good=False)


def affinity_view(s: DashboardSession, open_image) -> list:
    if s.features() is None:
        return [plot_pane(views.unavailable("affinity", "not available for this model (no pixel features)"))]
    image = views.image_element(s.image(), title="click a pixel to see its affinity")
    tap = streams.Tap(source=image, x=None, y=None)
    index, (h, w) = s.index, s.size()

    def layer(x, y):
        if x is None or y is None:
            return views.affinity_layer(None, None, shape=(h, w))
        row, col = views.to_pixel(x, y, h)
        pixel = (int(np.clip(round(row), 0, h - 1)), int(np.clip(round(col), 0, w - 1)))
        values, source = s.affinity(*pixel, index=index)
        return views.affinity_layer(values, pixel, source)

    return [plot_pane(image * hv.DynamicMap(layer, streams=[tap]))]


def cam_view(s: DashboardSession, open_image) -> list:
    view = views.cam_vs_pseudo_view(
        s.image(), s.cam(), s.point_pseudo_mask(), s.ground_truth(), s.active_class, s.classes, s.colors
    )
    note = "Class: the active class (digits). The pseudo-mask grows from this image's points and scribbles."
    return [pn.pane.Markdown(note), plot_pane(view)]


def proposals_view(s: DashboardSession, open_image) -> list:
    return [plot_pane(views.proposal_view(s.image(), s.proposals(), PROPOSALS_K, s.classes, s.colors))]


def metrics_view(s: DashboardSession, open_image) -> list:
    summary = s.evaluate("val")
    runs = [str(p.relative_to(s.runs_root)) for p in s.runs()]  # names relative to the runs root, never paths
    run_a = pn.widgets.Select(label="run A", options=runs, value=runs[0] if runs else None, width=250)
    run_b = pn.widgets.Select(label="run B", options=runs, value=runs[-1] if runs else None, width=250)
    return [
        pn.Row(plot_pane(views.iou_bars(summary, f"model v{s.model_version} on val:")),
               plot_pane(views.confusion_heatmap(summary["confusion_matrix"], s.classes, s.novel))),
        plot_pane(views.training_curves(s.run_records())),
        *versions_table(s),
        pn.Row(run_a, run_b),
        pn.param.ParamFunction(pn.bind(compare_view, s, run_a, run_b)),
    ]  # fmt: skip


def versions_table(s: DashboardSession) -> list:
    rows = s.version_table()
    if not rows:
        return []
    novel = {s.classes[c] for c in s.novel}
    frame = pd.DataFrame(rows).round(3).rename(columns={name: name + views.NOVEL_MARK for name in novel})
    return [
        pn.pane.Markdown(
            "**Model versions** (val IoU per class; pick one in the sidebar to make it current; `weights`: "
            "where they are kept, old ones move to disk)"
        ),
        pn.widgets.Tabulator(frame, disabled=True, show_index=False, width=900, height=min(300, 40 + 30 * len(rows))),
    ]


def compare_view(s: DashboardSession, first: str | None, second: str | None):
    """Two runs of the runs root side by side (names relative to it; anything outside is refused)."""
    if not first or not second:
        return plot_pane(views.unavailable("two runs", "no run directories found to compare"))
    try:
        a, b = (read_run(safe_path(s.runs_root, p)) for p in (first, second))
    except USER_ERRORS as err:
        return pn.pane.Alert(str(err), alert_type="warning")
    plot = plot_pane(views.compare_runs(a, b))
    mismatch = views.comparison_mismatch(a, b)
    return pn.Column(pn.pane.Alert(mismatch, alert_type="warning"), plot) if mismatch else plot


TABS = {  # title: (view, the session params it reads)
    "Images": (images_view, ("model_version",)),
    "Where to click": (uncertainty_view, ("index", "model_version", "uncertainty", "annotation_version")),
    "Affinity": (affinity_view, ("index", "model_version")),
    "CAM vs pseudo-mask": (cam_view, ("index", "model_version", "active_class", "annotation_version")),
    "Proposals": (proposals_view, ("index", "model_version")),
    "Metrics": (metrics_view, ("model_version", "versions_listed")),
}


def _download_name(fmt: str) -> str:
    return {"labelstudio": "annotations.labelstudio.json", "cvat": "annotations.cvat.xml",
            "coco": "annotations.coco.json"}.get(fmt, "annotations.json")  # fmt: skip

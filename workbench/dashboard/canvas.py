"""The annotation canvas of the dashboard (image, overlay, points and scribbles that take edits) and
its keyboard shortcuts, which reach Python only while the dashboard has the focus."""

from __future__ import annotations

import dataclasses

import holoviews as hv
import numpy as np
import param
from bokeh.models import CustomJSHover
from holoviews import streams
from panel.custom import JSComponent

from workbench.dashboard.session import DashboardSession
from workbench.dashboard.workspace import SessionError
from workbench.labels.weak_labels import WeakLabelError, rasterize
from workbench.viz import views

MAX_POINTS = 10_000
USER_ERRORS = (WeakLabelError, SessionError, ValueError)
NEW_POINT = "#fffffe"  # what the browser puts in every column of a point it just placed, until the server answers
TOOLS = ("point", "scribble", "eraser", "pan")
KEYS = (
    ("[ ]", "brush (and eraser) width - / +"),
    ("z", "undo your latest edit of this image"),
    ("Z", "redo"),
    ("n p", "next / previous image"),
    ("e", "eraser on / off: drag over points and scribbles to remove them (z brings them back)"),
    ("?", "show / hide this help"),
)


def shortcuts(num_classes: int) -> tuple[tuple[str, str], ...]:
    """Every key the dashboard answers, as the ``?`` help lists them (a test checks both ways)."""
    last = min(num_classes, 10)
    digits = "1" if last == 1 else f"1 … {min(last, 9)}" + (", 0" if last == 10 else "")
    keys = [(digits, f"pick class 1 … {last} (each class button shows its key)")]
    letters = views.CLASS_KEYS[10:num_classes]
    if letters:
        keys.append((" ".join(letters), f"pick class 11 … {10 + len(letters)}"))
    return (*keys, *KEYS)


class KeyboardShortcuts(JSComponent):
    """Sends key presses to Python (``on_key(key)``), but only while this dashboard has the focus.

    The dashboard has the focus from a click inside it (on any element carrying the CSS class
    ``scope``) until a click anywhere else. Keys are caught on ``window`` in the capture phase
    and stopped there, so JupyterLab's command mode (which listens on ``document``) never sees
    a digit meant for the dashboard, and never loses one meant for a notebook cell. Keys typed
    into text fields, and keys with Ctrl, Cmd or Alt, pass through untouched.
    """

    scope = param.String(default="weakseg-dashboard", doc="CSS class of the dashboard's outer layout")
    focused = param.Boolean(default=False, doc="whether the last click landed inside the dashboard")

    _esm = """
    export function render({ model }) {
      const inside = (event) =>
        event.composedPath().some((n) => n.classList && n.classList.contains(model.scope));
      function onPointer(event) {
        const now = inside(event);
        if (now !== model.focused) model.focused = now;
      }
      function onKey(event) {
        if (!model.focused || event.ctrlKey || event.metaKey || event.altKey) return;
        if (event.key.length !== 1) return;
        const target = event.composedPath()[0];
        const tag = (target && target.tagName || "").toLowerCase();
        if (["input", "textarea", "select"].includes(tag) || (target && target.isContentEditable)) return;
        event.stopPropagation();
        event.preventDefault();
        model.send_msg({ key: event.key });
      }
      window.addEventListener("pointerdown", onPointer, true);
      window.addEventListener("keydown", onKey, true);
      model.on("remove", () => {
        window.removeEventListener("pointerdown", onPointer, true);
        window.removeEventListener("keydown", onKey, true);
      });
      const el = document.createElement("span");
      el.style.display = "none";
      return el;
    }
    """

    def __init__(self, on_key, **params) -> None:
        super().__init__(**params)
        self._on_key = on_key

    def _handle_msg(self, msg: dict) -> None:
        key = msg.get("key") if isinstance(msg, dict) else None
        if isinstance(key, str) and len(key) == 1:
            self._on_key(key)


class AnnotationCanvas:
    """The image with a mask overlay, the annotations, a PointDraw and a FreehandDraw layer.

    Edits reach the store at once: a new point is the extra position the PointDraw data
    gains, a moved or deleted one the position that changed or went missing; a finished
    stroke is a scribble. Positions, not the browser's extra columns, are compared, so a
    stale column never turns into an edit. After every edit the layers are re-sent from
    the store, which is the single source of truth.
    """

    def __init__(self, session: DashboardSession) -> None:
        self.session = session
        self.tool = "point"
        self._toolbar = None
        self._overlay_mask: np.ndarray | None = None
        self.image_pipe = streams.Pipe(data=session.image())
        self.overlay_pipe = streams.Pipe(data=self._overlay_rgba())
        self.labels_pipe = streams.Pipe(data=self._labels_rgba())
        self.hover_pipe = streams.Pipe(data=self._hover_values())
        self.points_pipe = streams.Pipe(data=self._points())
        self.path_pipe = streams.Pipe(data=[])
        base = hv.DynamicMap(
            lambda data: views.image_element(data).opts(hooks=[self._remember]), streams=[self.image_pipe]
        )
        overlay = hv.DynamicMap(lambda data: views.image_element(data), streams=[self.overlay_pipe])
        labels = hv.DynamicMap(lambda data: views.image_element(data), streams=[self.labels_pipe])
        hover = hv.DynamicMap(self._hover_layer, streams=[self.hover_pipe])
        halo = hv.DynamicMap(lambda data: hv.Points(views.halo_data(data)), streams=[self.points_pipe]).opts(
            color="black", size=views.POINT_SIZE + 2 * views.HALO_PX, line_width=0
        )  # under each point: dark around its light outline, so it shows on any overlay
        points = hv.DynamicMap(
            lambda data: hv.Points(data, vdims=["color", "cls", "id", "class"]), streams=[self.points_pipe]
        )
        new_point = CustomJSHover(code=f"return value === {NEW_POINT!r} ? 'new point (storing)' : value")
        points = points.opts(
            color="color", size=views.POINT_SIZE, line_color="white", line_width=2, tools=["hover"],
            hover_tooltips=views.POINT_HOVER, hover_formatters={"@{class}": new_point},
        )  # fmt: skip
        path = hv.DynamicMap(lambda data: hv.Path(data), streams=[self.path_pipe]).opts(line_width=3, color="white")
        self.point_draw = streams.PointDraw(source=points, empty_value=NEW_POINT, num_objects=MAX_POINTS)
        self.freehand = streams.FreehandDraw(source=path, num_objects=1)
        self.point_draw.add_subscriber(self._on_points)
        self.freehand.add_subscriber(self._on_stroke)
        self._last_stroke: tuple[tuple[float, float], ...] | None = None
        self.plot = (base * overlay * labels * hover * path * halo * points).opts(
            active_tools=["point_draw", "wheel_zoom"], title=""
        )

    # ------------------------------------------------------------------ what the layers show

    def _overlay_rgba(self) -> np.ndarray:
        s = self.session
        mask = None
        if s.overlay == "prediction":
            mask = s.shown_prediction()  # a retrain's preview of this image while its val check runs
        elif s.overlay == "ground truth":
            mask = s.ground_truth()
        elif s.overlay == "pseudo-mask":
            pseudo = s.point_pseudo_mask()
            mask = None if isinstance(pseudo, str) else pseudo
        self._overlay_mask = mask
        if mask is None:
            return np.zeros((*s.size(), 4), dtype=np.uint8)
        return views.colorize(mask, s.colors, s.visible_classes, s.opacity)

    def _labels_rgba(self) -> np.ndarray:
        """Scribbles and boxes, outlined; points are drawn by the points layer (with their own outline)."""
        s = self.session
        strokes = rasterize(dataclasses.replace(s.weak_labels(), points=()))
        return views.annotation_rgba(strokes, s.colors, s.visible_classes)

    def _hover_values(self) -> np.ndarray:
        return views.hover_values(self._overlay_mask, self.session.annotation_mask())

    def _hover_layer(self, data: np.ndarray) -> hv.Image:
        return views.class_hover_layer(data, self.session.classes)

    def _points(self) -> dict:
        s = self.session
        return views.points_data(s.items(), s.size()[0], s.colors, s.classes)

    def refresh_image(self) -> None:
        self._last_stroke = None
        self.image_pipe.send(self.session.image())
        self.refresh_annotations()
        self.refresh_overlay()

    def refresh_overlay(self) -> None:
        self.overlay_pipe.send(self._overlay_rgba())
        self.hover_pipe.send(self._hover_values())

    def refresh_annotations(self) -> None:
        self.labels_pipe.send(self._labels_rgba())
        self.points_pipe.send(self._points())
        if self.session.overlay == "pseudo-mask":
            self.refresh_overlay()
        else:
            self.hover_pipe.send(self._hover_values())

    # ------------------------------------------------------------------ edits from the browser

    def _on_points(self, data: dict) -> None:
        s = self.session
        h, _ = s.size()
        shown = self.points_pipe.data  # what this tab's browser holds: another tab's new point is no edit here
        old = list(zip(shown["x"], shown["y"]))
        new = [(float(x), float(y)) for x, y in zip(data.get("x", []), data.get("y", []))]
        try:
            if len(new) > len(old) and _same(new[: len(old)], old):  # taps appended points
                for x, y in new[len(old) :]:
                    s.add_point(*views.to_pixel(x, y, h))
            elif len(new) == len(old):  # a drag moved one
                for item_id, a, b in zip(shown["id"], old, new):
                    if not _same([a], [b]):
                        s.move_point(item_id, *views.to_pixel(*b, h))
            elif len(new) < len(old):  # Backspace deleted the selected ones
                kept = list(new)
                for item_id, a in zip(shown["id"], old):
                    if kept and _same([kept[0]], [a]):
                        kept.pop(0)
                    else:
                        s.remove(item_id)
        except USER_ERRORS as err:
            s.message = str(err)
        self.refresh_annotations()

    def _on_stroke(self, data: dict) -> None:
        xs, ys = data.get("xs") or [], data.get("ys") or []
        if not xs or len(xs[-1]) == 0:
            return
        stroke = tuple((float(x), float(y)) for x, y in zip(xs[-1], ys[-1]))
        if stroke == self._last_stroke:
            return
        self._last_stroke = stroke
        h, _ = self.session.size()
        path = [views.to_pixel(x, y, h) for x, y in stroke]
        try:
            if self.tool == "eraser":
                self.erase(path)
            else:
                self.session.add_scribble(path)
        except USER_ERRORS as err:
            self.session.message = str(err)
        self.path_pipe.send([])
        self.refresh_annotations()

    def erase(self, path: list[tuple[float, float]]) -> list[int]:
        """Remove every point and scribble the eraser stroke ``path`` of ``(row, col)`` touches (the brush
        width is the eraser's), as one edit that one ``z`` takes back. Returns the removed ids."""
        s = self.session
        hit = views.touched_items(s.items(), path, s.brush_width / 2)
        if hit:
            s.remove_many(hit)
        s.message = (
            f"eraser removed {len(hit)} annotation{'s' if len(hit) != 1 else ''} (z brings {'them' if len(hit) > 1 else 'it'} back)"
            if hit else "eraser: nothing under the stroke (drag over a point or scribble)"
        )  # fmt: skip
        return hit

    # ------------------------------------------------------------------ tools

    def _remember(self, plot, element) -> None:
        self._toolbar = plot.state.toolbar

    def set_tool(self, name: str) -> None:
        """Make point drawing, freehand drawing (scribble or eraser) or panning the active drag/tap tool."""
        from bokeh.models import FreehandDrawTool, PanTool, PointDrawTool

        if name not in TOOLS:
            raise ValueError(f"unknown tool {name!r}; use one of {list(TOOLS)}")
        self.tool = name
        if self._toolbar is None:
            return
        kind = {"point": PointDrawTool, "scribble": FreehandDrawTool, "eraser": FreehandDrawTool, "pan": PanTool}[name]
        tool = next((t for t in self._toolbar.tools if isinstance(t, kind)), None)
        if tool is None:
            return
        if name == "pan":
            self._toolbar.active_multi = None
            self._toolbar.active_drag = tool
        else:
            self._toolbar.active_multi = tool


def _same(a: list, b: list, tol: float = 1e-6) -> bool:
    return len(a) == len(b) and all(abs(p[0] - q[0]) <= tol and abs(p[1] - q[1]) <= tol for p, q in zip(a, b))

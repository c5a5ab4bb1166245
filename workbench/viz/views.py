"""What the dashboard draws: pure functions from arrays and summaries to arrays and HoloViews elements.

Nothing here reads files, touches a model or keeps state; :mod:`workbench.dashboard.session` computes,
these functions draw, ``apps/dashboard.py`` lays them out. Each works in a notebook cell
(``hv.extension("bokeh")`` first).

Image geometry: an ``(H, W)`` array is drawn with ``bounds=(0, 0, W, H)``, so plot ``x`` is the
column and ``y = H - row``; pixel ``(row, col)`` has its centre at ``(col + 0.5, H - row - 0.5)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from workbench.labels.weak_labels import Point

BASE_COLOR = "#4c78a8"
NOVEL_COLOR = "#f58518"
HEAT_CMAP = "inferno"
CANVAS_WIDTH = 480  # pixels on screen for the longer image side
GALLERY_COLUMNS = 4
ANNOTATION_ALPHA = 230  # annotations stay nearly opaque whatever the overlay opacity
OUTLINE_DARK = (0, 0, 0)  # the outline of drawn annotations alternates dark and light pixels ("marching
OUTLINE_LIGHT = (255, 255, 255)  # ants"), so it shows over any overlay colour, black and white included
POINT_SIZE = 11  # screen pixels of a point's marker; its halo is HALO_PX wider on each side
HALO_PX = 3
NOVEL_MARK = " (novel)"  # after a novel class's name in every per-class chart and button
HOVER_CLASS_STRIDE = 256  # the canvas hover layer packs (overlay class, drawn class) into one value
NO_CLASS = 254  # unlabelled in masks (weak_labels.UNLABELED)


# ----------------------------------------------------------------------------- arrays


def colorize(
    mask: np.ndarray, colors: np.ndarray, visible: Sequence[int] | None = None, alpha: float = 1.0
) -> np.ndarray:
    """``(H, W)`` index mask -> ``(H, W, 4)`` uint8 RGBA with the class colors.

    Pixels of hidden classes, unlabelled (254) and void (255) are transparent; ``alpha`` in [0, 1]
    is the opacity of the rest.
    """
    mask = np.asarray(mask)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[: len(colors), :3] = colors
    shown = range(len(colors)) if visible is None else [c for c in visible if 0 <= c < len(colors)]
    lut[list(shown), 3] = round(255 * alpha)
    return lut[mask.astype(np.uint8)]


def blend(image: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 image with an ``(H, W, 4)`` uint8 layer composited over it (one element to draw, not two)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    return (image[..., :3] * (1 - alpha) + rgba[..., :3] * alpha).round().astype(np.uint8)


def entropy_map(probs: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` probabilities -> ``(H, W)`` entropy divided by ``log C`` (0 sure, 1 uniform)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return (-(p * np.log(p)).sum(0) / math.log(max(p.shape[0], 2))).astype(np.float32)


def margin_map(probs: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` probabilities -> ``(H, W)`` ``1 - (p_first - p_second)`` (1 where two classes tie)."""
    top2 = np.sort(np.asarray(probs, dtype=np.float32), axis=0)[-2:]
    return (1.0 - (top2[1] - top2[0])).astype(np.float32)


def uncertainty_map(probs: np.ndarray, kind: str = "entropy") -> np.ndarray:
    if kind not in ("entropy", "margin"):
        raise ValueError(f"unknown uncertainty {kind!r}; use 'entropy' or 'margin'")
    return entropy_map(probs) if kind == "entropy" else margin_map(probs)


BORDER_FRACTION = 0.03  # of the shorter side: a frame where padding and resizing make every model unsure


def top_pixels(
    values: np.ndarray, k: int = 3, spacing: int = 4, border: float = BORDER_FRACTION
) -> list[tuple[int, int]]:
    """The ``k`` highest pixels ``(row, col)`` of an ``(H, W)`` map, at least ``spacing`` pixels apart and
    off the image's outer ``border`` (a fraction of the shorter side) when the image is big enough to
    have one: uncertainty there is the padding's, not a place worth a click."""
    values = np.array(values, dtype=np.float64)
    h, w = values.shape
    frame = int(round(border * min(h, w)))
    if frame and min(h, w) > 4 * frame:
        values[:frame], values[-frame:], values[:, :frame], values[:, -frame:] = np.nan, np.nan, np.nan, np.nan
    picks = []
    for _ in range(k):
        if not np.isfinite(values).any():
            break
        r, c = np.unravel_index(np.nanargmax(np.where(np.isfinite(values), values, -np.inf)), values.shape)
        picks.append((int(r), int(c)))
        values[max(r - spacing, 0) : min(r + spacing + 1, h), max(c - spacing, 0) : min(c + spacing + 1, w)] = np.nan
    return picks


def binary_iou(pred: np.ndarray, gt: np.ndarray | None, cls: int, num_classes: int) -> float:
    """IoU of a boolean ``(H, W)`` mask against the ground-truth pixels of ``cls``; void is skipped.

    NaN when there is no ground truth or neither mask has the class.
    """
    if gt is None:
        return float("nan")
    valid = np.asarray(gt) < num_classes
    a, b = np.asarray(pred, bool) & valid, (np.asarray(gt) == cls) & valid
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def points_data(items: dict, height: int, colors: np.ndarray, classes: Sequence[str] | None = None) -> dict[str, list]:
    """Columns ``x, y, color, cls, id, class`` of the points among ``items`` (item id -> annotation), for
    ``hv.Points``; ``class`` is the class name the hover shows (the index when ``classes`` is not given)."""
    points = [(i, p) for i, p in items.items() if isinstance(p, Point)]
    hexes = [hex_color(colors[p.cls]) for _, p in points]
    return {
        "x": [p.col + 0.5 for _, p in points],
        "y": [height - p.row - 0.5 for _, p in points],
        "color": hexes,
        "cls": [p.cls for _, p in points],
        "id": [i for i, _ in points],
        "class": [classes[p.cls] if classes is not None else str(p.cls) for _, p in points],
    }


POINT_HOVER = [("class", "@{class}")]  # a point's hover: its class name, never its index or hex colour


def halo_data(points: dict[str, list]) -> dict[str, list]:
    """Only the positions of :func:`points_data`: the dark halo under each point (no hover, no edits)."""
    return {"x": list(points["x"]), "y": list(points["y"])}


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """``(H, W)`` bool: pixels within ``width`` pixels (8-neighbourhood) outside the ``True`` region of ``mask``."""
    mask = np.asarray(mask, bool)
    grown = mask.copy()
    for _ in range(width):
        padded = np.pad(grown, 1)
        h, w = mask.shape
        grown = np.zeros_like(mask)
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                grown |= padded[dr : dr + h, dc : dc + w]
    return grown & ~mask


def annotation_rgba(mask: np.ndarray, colors: np.ndarray, visible: Sequence[int] | None = None) -> np.ndarray:
    """Drawn annotations (``(H, W)`` class indices, 254 elsewhere) as RGBA: the class colour, nearly opaque,
    inside an opaque one-pixel outline of alternating dark and light pixels. Over an overlay of the same
    class colour, of black or of white, the outline still shows where the annotation is."""
    rgba = colorize(mask, colors, visible, ANNOTATION_ALPHA / 255)
    ring = outline(rgba[..., 3] > 0)
    rows, cols = np.indices(ring.shape)
    dark = ring & ((rows + cols) % 2 == 0)
    rgba[dark] = (*OUTLINE_DARK, 255)
    rgba[ring & ~dark] = (*OUTLINE_LIGHT, 255)
    return rgba


def hover_values(overlay: np.ndarray | None, drawn: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint16 ``overlay class * 256 + drawn class`` (254 where none) for :func:`class_hover_layer`."""
    drawn = np.asarray(drawn).astype(np.uint16)
    under = np.full(drawn.shape, NO_CLASS, np.uint16) if overlay is None else np.asarray(overlay).astype(np.uint16)
    return under * HOVER_CLASS_STRIDE + drawn


def class_hover_layer(values: np.ndarray, classes: Sequence[str]) -> hv.Image:
    """An invisible layer over the canvas whose hover names the classes under the mouse: the overlay's
    (prediction, ground truth or pseudo-mask) and the drawn annotation's, never an index or a colour.
    ``values`` come from :func:`hover_values`."""
    from bokeh.models import CustomJSHover

    code = """
      const under = names[Math.floor(value / stride)], drawn = names[value % stride];
      const parts = [];
      if (under !== undefined) parts.push(under);
      if (drawn !== undefined) parts.push("drawn: " + drawn);
      return parts.length ? parts.join(" | ") : "unlabelled";
    """
    names = {str(i): name for i, name in enumerate(classes)} | {"255": "void"}
    formatter = CustomJSHover(code=code, args={"names": names, "stride": HOVER_CLASS_STRIDE})
    values = np.asarray(values)
    return hv.Image(values, bounds=_bounds(values.shape), vdims=["class"]).opts(
        alpha=0, tools=["hover"], hover_tooltips=[("class", "@image{custom}")], hover_formatters={"@image": formatter},
        xaxis=None, yaxis=None, colorbar=False, **_frame(*values.shape),
    )  # fmt: skip


def touched_items(items: dict, path: Sequence[tuple[float, float]], radius: float) -> list[int]:
    """Ids of the points and scribbles among ``items`` that an eraser stroke ``path`` of ``(row, col)``
    vertices and half-width ``radius`` touches (a scribble's own half-width counts too)."""
    stroke = densify(path)
    if len(stroke) == 0:
        return []
    hit = []
    for item_id, item in items.items():
        if isinstance(item, Point):
            vertices, reach = np.array([[item.row, item.col]]), radius + 0.5
        elif hasattr(item, "path"):
            vertices, reach = densify(item.path), radius + item.width / 2
        else:
            continue
        gaps = np.sqrt(((vertices[:, None] - stroke[None]) ** 2).sum(-1))  # (N, M)
        if gaps.min() <= reach + ERASER_STEP:
            hit.append(item_id)
    return hit


ERASER_STEP = 0.5  # pixels between the vertices an eraser hit-test compares (the error it may make)


def densify(path: Sequence[tuple[float, float]], step: float = ERASER_STEP) -> np.ndarray:
    """``(N, 2)`` vertices of the polyline ``path``, with extra ones so that none are over ``step`` apart."""
    vertices = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    if len(vertices) < 2:
        return vertices
    parts = [vertices[:1]]
    for a, b in zip(vertices[:-1], vertices[1:]):
        n = max(1, int(math.ceil(np.linalg.norm(b - a) / step)))
        parts.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, None])
    return np.concatenate(parts)


def to_pixel(x: float, y: float, height: int) -> tuple[float, float]:
    """Plot coordinates -> ``(row, col)`` pixel-centre coordinates (the inverse of :func:`points_data`)."""
    return height - float(y) - 0.5, float(x) - 0.5


def per_image_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Table of ``{index, name, miou}`` rows, worst first (NaN last)."""
    frame = pd.DataFrame(list(rows), columns=["index", "name", "miou"])
    return frame.sort_values("miou", na_position="last", kind="stable").reset_index(drop=True)


def marked(name: str, cls: int, novel: Sequence[int] = ()) -> str:
    """A class name as every per-class chart and button shows it: novel classes carry :data:`NOVEL_MARK`."""
    return f"{name}{NOVEL_MARK}" if cls in novel else name


# One key a class: the digits (1 for the first, 0 for the tenth), then letters no other shortcut uses
# (z undo, n/p images, e eraser), so MSRC-21's 21 classes and CamVid's 11 all have one.
CLASS_KEYS = "1234567890qwrtyuiosdfghjklxcvbm"


def class_key(cls: int) -> str:
    """The key that picks class ``cls`` ("" past the last key)."""
    return CLASS_KEYS[cls] if 0 <= cls < len(CLASS_KEYS) else ""


def class_of_key(key: str) -> int | None:
    """The class index a key picks, or None for a key that picks no class."""
    return CLASS_KEYS.index(key) if len(key) == 1 and key in CLASS_KEYS else None


def class_button_labels(classes: Sequence[str], novel: Sequence[int] = ()) -> dict[str, int]:
    """Button label -> class index: the shortcut digit, the name and, in a weak-shot run, base or novel."""
    labels = {}
    for i, name in enumerate(classes):
        kind = "" if not novel else (" · novel" if i in novel else " · base")
        labels[f"{class_key(i)} {name}{kind}".strip()] = i
    return labels


def class_button_css(colors: np.ndarray, novel: Sequence[int] = ()) -> str:
    """A stylesheet for a Panel ``RadioButtonGroup`` of :func:`class_button_labels`: a colour swatch before
    each label (the class's colour), novel classes' buttons in italics."""
    rules = [
        ".bk-btn-group > .bk-btn { text-align: left; }",
        ".bk-btn-group > .bk-btn::before { content: ''; display: inline-block; width: 12px; height: 12px; "
        "margin-right: 6px; vertical-align: -1px; border: 1px solid #333; }",
    ]
    for i, color in enumerate(colors):
        rules.append(f".bk-btn-group > .bk-btn:nth-child({i + 1})::before {{ background: {hex_color(color)}; }}")
        if i in novel:
            rules.append(f".bk-btn-group > .bk-btn:nth-child({i + 1}) {{ font-style: italic; }}")
    return "\n".join(rules)


def legend_html(
    classes: Sequence[str], colors: np.ndarray, active: int | None = None, novel: Sequence[int] = ()
) -> str:
    """A class legend as HTML: a swatch, the shortcut digit and the name of each class (novel ones marked)."""
    rows = []
    for i, (name, color) in enumerate(zip(classes, colors)):
        key = class_key(i) or "&nbsp;"
        weight = "bold" if i == active else "normal"
        rows.append(
            f'<div style="font-weight:{weight}"><span style="display:inline-block;width:12px;height:12px;'
            f'background:{hex_color(color)};margin-right:6px;border:1px solid #333"></span>{key} {marked(name, i, novel)}</div>'
        )
    return "".join(rows)


def keys_help_html(shortcuts: Sequence[tuple[str, str]]) -> str:
    """The ``?`` help: a table of ``(keys, what they do)``."""
    rows = "".join(
        f"<tr><td style='padding:1px 10px 1px 0'><kbd>{keys}</kbd></td><td>{what}</td></tr>" for keys, what in shortcuts
    )
    return f"<b>Keys</b> (click inside the dashboard first)<table>{rows}</table>"


def hex_color(color: Sequence[int]) -> str:
    """``(r, g, b[, a])`` 0..255 -> ``"#rrggbb"``."""
    r, g, b = (int(v) for v in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


# ----------------------------------------------------------------------------- image elements


def _bounds(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    return (0, 0, shape[1], shape[0])


def _frame(height: int, width: int) -> dict:
    scale = CANVAS_WIDTH / max(height, width)
    return {"frame_width": round(width * scale), "frame_height": round(height * scale)}


def image_element(image: np.ndarray, title: str = "") -> hv.RGB:
    """``(H, W, 3|4)`` uint8 image as ``hv.RGB`` with pixel bounds, equal aspect and no axes."""
    h, w = image.shape[:2]
    vdims = ["R", "G", "B", "A"][: image.shape[2]]
    return hv.RGB(image, bounds=_bounds(image.shape), vdims=vdims).opts(
        xaxis=None, yaxis=None, title=title, tools=["wheel_zoom", "pan", "reset"], **_frame(h, w)
    )


def mask_element(
    mask: np.ndarray, colors: np.ndarray, visible: Sequence[int] | None = None, opacity: float = 0.5
) -> hv.RGB:
    """A class mask as a transparent-background RGBA layer to overlay on :func:`image_element`."""
    return image_element(colorize(mask, colors, visible, opacity))


def heatmap_element(
    values: np.ndarray,
    alpha: float = 0.6,
    clim: tuple[float, float] = (0.0, 1.0),
    cmap: str = HEAT_CMAP,
    label: str = "value",
) -> hv.Image:
    """A continuous ``(H, W)`` map (CAM, affinity, uncertainty) as a colormapped layer; NaN is transparent.
    ``label`` names the value (the colourbar's title and the hover's)."""
    values = np.asarray(values, dtype=np.float32)
    return hv.Image(values, bounds=_bounds(values.shape), vdims=[label]).opts(
        cmap=cmap, alpha=alpha, clim=clim, colorbar=True, xaxis=None, yaxis=None, tools=["hover"],
        clipping_colors={"NaN": "transparent"}, **_frame(*values.shape),
    )  # fmt: skip


def unavailable(title: str, reason: str) -> hv.Text:
    """The "not available for this model" state of a view: an empty plot that says why."""
    return hv.Text(0.5, 0.5, reason).opts(
        title=title, xaxis=None, yaxis=None, text_font_size="11pt", width=CANVAS_WIDTH, height=200,
        toolbar=None, xlim=(0, 1), ylim=(0, 1),
    )  # fmt: skip


def uncertainty_view(image: np.ndarray, probs: np.ndarray, kind: str = "entropy", k: int = 3) -> hv.Overlay:
    """Where to click next: the uncertainty map over the image, its ``k`` highest spots marked."""
    values = uncertainty_map(probs, kind)
    h = values.shape[0]
    spots = top_pixels(values, k)
    marks = hv.Points([(c + 0.5, h - r - 0.5) for r, c in spots]).opts(marker="x", size=18, color="cyan", line_width=3)
    return (image_element(image) * heatmap_element(values, label=kind) * marks).opts(
        title=f"{kind}: click near the crosses next (mean {values.mean():.2f})"
    )


def affinity_layer(
    values: np.ndarray | None, pixel: tuple[int, int] | None, source: str = "", shape: tuple[int, int] | None = None
) -> hv.Overlay:
    """The affinity of the clicked ``pixel`` to every pixel (``(H, W)`` in [0, 1]) and a marker on the pixel.

    Before the first click (``values`` None) an all-NaN (transparent) map of ``shape``: the same
    layers every time, so a DynamicMap never adds a colorbar to a plot already in the browser
    ("cannot find a view for ColorBar").
    """
    if values is None or pixel is None:
        if shape is None:
            return hv.Overlay([hv.Points([]).opts(color="cyan")])
        empty = heatmap_element(np.full(shape, np.nan, dtype=np.float32), label="affinity")
        return (empty * hv.Points([]).opts(marker="circle", size=12, color="cyan")).opts(title="")
    h = values.shape[0]
    mark = hv.Points([(pixel[1] + 0.5, h - pixel[0] - 0.5)]).opts(marker="circle", size=12, color="cyan")
    return (heatmap_element(values, label="affinity") * mark).opts(
        title=f"affinity to ({pixel[0]}, {pixel[1]}): {source}"
    )


def affinity_view(image: np.ndarray, values: np.ndarray | None, pixel: tuple[int, int] | None, source: str = ""):
    """The image under :func:`affinity_layer`."""
    return image_element(image, title="click a pixel to see its affinity") * affinity_layer(values, pixel, source)


def cam_vs_pseudo_view(
    image: np.ndarray,
    cam: np.ndarray | str,
    pseudo: np.ndarray | str,
    gt: np.ndarray | None,
    cls: int,
    classes: Sequence[str],
    colors: np.ndarray,
    threshold: float = 0.2,
) -> hv.Layout:
    """Grad-CAM of class ``cls`` beside the point pseudo-mask, each titled with its IoU against ground truth."""
    name, c = classes[cls], len(classes)
    if isinstance(cam, str):
        left = unavailable(f"Grad-CAM: {name}", cam)
    else:
        iou = binary_iou(cam >= threshold, gt, cls, c)
        left = (image_element(image) * heatmap_element(cam, label="Grad-CAM")).opts(
            title=f"Grad-CAM {name}: IoU {format_score(iou)} (CAM >= {threshold:g})"
        )
    if isinstance(pseudo, str):
        right = unavailable(f"point pseudo-mask: {name}", pseudo)
    else:
        iou = binary_iou(pseudo == cls, gt, cls, c)
        right = (image_element(image) * mask_element(pseudo, colors, [cls], 0.6)).opts(
            title=f"point pseudo-mask {name}: IoU {format_score(iou)}"
        )
    return (left + right).opts(shared_axes=True)


def proposal_view(
    image: np.ndarray, proposals: list[dict] | None, k: int, classes: Sequence[str], colors: np.ndarray
) -> hv.Overlay | hv.Text:
    """The ``k`` best proposal masks (mask in [0, 1], ``cls``, ``score``), each over the image in its class
    color, tiled four to a row into one plot (one plot draws in a tenth of the time of ``k`` plots)."""
    if proposals is None:
        return unavailable("proposal masks", "not available for this model (only SimFormer makes proposals)")
    tiles, labels = [], []
    h, w = image.shape[:2]
    for p in proposals[:k]:
        rgba = np.zeros((h, w, 4), dtype=np.uint8)
        rgba[..., :3] = colors[p["cls"]]
        rgba[..., 3] = (np.clip(p["mask"], 0, 1) * 200).astype(np.uint8)
        tiles.append(blend(image, rgba))
        labels.append(f"{classes[p['cls']]} {p['score']:.2f}")
    if not tiles:
        return unavailable("proposal masks", "the model returned no proposals")
    mosaic, corners = tile(tiles, GALLERY_COLUMNS)
    rows = mosaic.shape[0]
    text = hv.Labels(
        [(c + 1, rows - r - 1, label) for (r, c), label in zip(corners, labels)], ["x", "y"], "label"
    ).opts(text_color="white", text_font_size="9pt", text_align="left", text_baseline="top")
    return (image_element(mosaic) * text).opts(title=f"top {len(tiles)} proposals (class, score)")


def tile(images: Sequence[np.ndarray], columns: int, gap: int = 2) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Equal-size ``(H, W, 3)`` images in a grid of ``columns`` with white gaps; returns the mosaic and
    each image's top-left ``(row, col)``."""
    h, w = images[0].shape[:2]
    n_rows = -(-len(images) // columns)
    n_cols = min(columns, len(images))
    mosaic = np.full((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    corners = []
    for i, img in enumerate(images):
        r, c = (i // columns) * (h + gap), (i % columns) * (w + gap)
        mosaic[r : r + h, c : c + w] = img[..., :3]
        corners.append((r, c))
    return mosaic, corners


def format_score(value: float | None) -> str:
    """A score with two decimals, or ``n/a`` for a missing one (a class absent from the split)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


# ----------------------------------------------------------------------------- metrics


def iou_bars(summary: dict, title: str = "") -> hv.Bars:
    """Per-class IoU bars, base classes blue and novel orange (and named "... (novel)"); the title gives
    mIoU and base/novel/harmonic."""
    novel = set(summary.get("novel_classes", []))
    rows = [
        (
            name + NOVEL_MARK if name in novel else name,
            math.nan if v is None else v,
            "novel" if name in novel else "base",
        )
        for name, v in summary["per_class_iou"].items()
    ]
    head = f"mIoU {format_score(summary['miou'])}"
    if "base_miou" in summary:
        head += (
            f" | base {format_score(summary['base_miou'])} novel {format_score(summary['novel_miou'])} "
            f"harmonic {format_score(summary['harmonic_miou'])}"
        )
    return hv.Bars(rows, kdims=["class"], vdims=["IoU", "group"]).opts(
        color=hv.dim("group").categorize({"base": BASE_COLOR, "novel": NOVEL_COLOR}),
        ylim=(0, 1), xrotation=45, width=CANVAS_WIDTH, height=300, tools=["hover"],
        title=f"{title} {head}".strip(),
    )  # fmt: skip


def confusion_heatmap(cm: np.ndarray | Sequence, classes: Sequence[str], novel: Sequence[int] = ()) -> hv.HeatMap:
    """Row-normalised confusion matrix (rows ground truth, columns prediction); hover shows counts;
    ``novel`` class indices are named "... (novel)"."""
    cm = np.asarray(cm, dtype=np.float64)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = [marked(name, i, novel) for i, name in enumerate(classes)]
    cells = [(names[p], names[t], share[t, p], int(cm[t, p])) for t in range(len(names)) for p in range(len(names))]
    return hv.HeatMap(cells, kdims=["prediction", "ground truth"], vdims=["share", "pixels"]).opts(
        cmap="Blues", clim=(0, 1), colorbar=True, xrotation=45, invert_yaxis=True, tools=["hover"],
        width=CANVAS_WIDTH, height=CANVAS_WIDTH - 40, title="confusion (row-normalised)",
    )  # fmt: skip


def series_by_run(records: Sequence[Mapping], y: str, x: str = "step") -> dict[str, list[tuple[float, float]]]:
    """``{run: sorted [(x, y), ...]}`` of the ``metrics.jsonl`` records (each tagged with ``run``) holding
    finite ``x`` and ``y``."""
    runs: dict[str, list] = {}
    for r in records:
        if _finite(r.get(x)) and _finite(r.get(y)):
            runs.setdefault(str(r.get("run", "run")), []).append((r[x], r[y]))
    return {run: sorted(points) for run, points in runs.items()}


def training_curves(records: Sequence[dict]) -> hv.Overlay | hv.Layout | hv.Text:
    """Loss per step of each run in ``records`` (each tagged with ``run``); validation mIoU per step
    beside it, in its own plot (one shared y axis would flatten one of the two)."""
    runs = series_by_run(records, "loss")
    if not runs:
        return unavailable("training curves", "no metrics.jsonl records yet: train a run or retrain (full)")
    curves = {name: hv.Curve(points, "step", "loss") for name, points in runs.items()}
    loss = hv.NdOverlay(curves, kdims="run").opts(
        width=CANVAS_WIDTH, height=300, title="training loss", legend_position="top_right",
        xlabel="step", ylabel="loss", framewise=True,
    )  # fmt: skip
    miou = series_by_run(records, "val_miou")
    if not miou:
        return loss
    dots = hv.NdOverlay(
        {name: hv.Scatter(p, "step", "val mIoU").opts(size=8, tools=["hover"]) for name, p in miou.items()},
        kdims="run",
    ).opts(width=CANVAS_WIDTH // 2 + 60, height=300, title="validation mIoU", ylim=(0, 1), show_legend=False)
    return (loss + dots).opts(shared_axes=False)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def comparison_mismatch(first: dict, second: dict) -> str:
    """Why two runs' numbers do not compare ("" when they do): another dataset, split or class list."""

    def where(run: dict) -> tuple:
        cfg = run.get("config") or {}
        dataset = cfg.get("dataset") or {}
        return (
            dataset.get("name"),
            tuple(dataset.get("classes") or ()),
            (cfg.get("train_config") or {}).get("val_split"),
        )

    (name_a, classes_a, split_a), (name_b, classes_b, split_b) = where(first), where(second)
    if classes_a and classes_b and classes_a != classes_b:
        return f"{first['name']} and {second['name']} have other classes: their IoUs are not of the same classes"
    if name_a and name_b and name_a != name_b:
        return f"{first['name']} is on {name_a}, {second['name']} on {name_b}: the numbers are of other images"
    if split_a and split_b and split_a != split_b:
        return f"{first['name']} is scored on {split_a}, {second['name']} on {split_b}: not the same images"
    return ""


def compare_runs(first: dict, second: dict) -> hv.Bars | hv.Text:
    """Per-class IoU of two runs side by side (``read_run`` dicts with a ``summary``); a class novel in
    either run is named "... (novel)"."""
    missing = [r["name"] for r in (first, second) if not r.get("summary")]
    if missing:
        return unavailable("two runs", f"no report.json in {', '.join(missing)}: evaluate the run first")
    novel = {n for run in (first, second) for n in run["summary"].get("novel_classes") or [] if isinstance(n, str)}
    rows = []
    for run in (first, second):
        label = f"{run['name']} ({format_score(run['summary']['miou'])})"
        for name, v in run["summary"]["per_class_iou"].items():
            rows.append((name + NOVEL_MARK if name in novel else name, label, math.nan if v is None else v))
    return hv.Bars(rows, kdims=["class", "run"], vdims=["IoU"]).opts(
        ylim=(0, 1), xrotation=45, width=CANVAS_WIDTH + 200, height=320, tools=["hover"],
        title=f"{first['name']} vs {second['name']}", multi_level=False, color=hv.dim("run"), cmap="Category10",
    )  # fmt: skip


def loss_curve(losses: Sequence[tuple[int, float]]) -> hv.Curve:
    """Live loss of the running retrain: step on x, the y axis fitted to the values at every update."""
    points = [(int(step), float(loss)) for step, loss in losses if _finite(loss)]
    return hv.Curve(points, "step", "loss").opts(
        width=260, height=160, title="retrain loss", toolbar=None, framewise=True, axiswise=True
    )

"""Figures for the tutorials: HoloViews builders that :mod:`workbench.views` does not already offer.

Like :mod:`workbench.views` (whose image elements and geometry these reuse), every function
takes arrays or dicts and returns a HoloViews object; nothing reads files or touches a model.
Call ``hv.extension("bokeh")`` before displaying them.

Geometry: an ``(H, W)`` image is drawn with ``bounds=(0, 0, W, H)``, so pixel ``(row, col)``
has its centre at ``x = col + 0.5``, ``y = H - row - 0.5``; box edges are pixel borders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import holoviews as hv
import numpy as np

from workbench import views
from workbench.weak_labels import WeakLabels

POINT_SIZE = 10  # screen pixels
BOX_LINE_WIDTH = 2
OUTLINE = "white"  # drawn around points and scribbles so they stand out on their own class colour


def _hex(color: Sequence[int]) -> str:
    r, g, b = (int(v) for v in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _screen_scale(height: int, width: int) -> float:
    """Screen pixels per image pixel in the canvases of :mod:`workbench.views`."""
    return views.CANVAS_WIDTH / max(height, width)


# ----------------------------------------------------------------------------- weak labels


def weak_label_layer(weak: WeakLabels, colors: np.ndarray) -> hv.Overlay:
    """Points, scribbles and boxes of one image as vector layers in its plot coordinates.

    ``colors``: ``(C, 3)`` uint8 class colours. Layers: a white outline under every scribble,
    one ``hv.Path`` per scribble (its own colour and width in image pixels), ``hv.Rectangles``
    for the boxes and ``hv.Points``.
    Tags have no geometry and go into the title of :func:`weak_label_view`.
    """
    h = weak.height
    scale = _screen_scale(weak.height, weak.width)
    lines = [[(c + 0.5, h - r - 0.5) for r, c in s.path] for s in weak.scribbles]
    widest = max((s.width for s in weak.scribbles), default=1.0) * scale
    outline = hv.Path(lines).opts(color=OUTLINE, line_width=widest + 2, alpha=0.8)
    scribbles = [
        hv.Path(line).opts(color=_hex(colors[s.cls]), line_width=max(s.width * scale, 1.0))
        for line, s in zip(lines, weak.scribbles)
    ]
    boxes = [(b.col0, h - b.row1, b.col1, h - b.row0, _hex(colors[b.cls])) for b in weak.boxes]
    points = [(p.col + 0.5, h - p.row - 0.5, _hex(colors[p.cls])) for p in weak.points]
    return hv.Overlay(
        [
            outline,
            *scribbles,
            hv.Rectangles(boxes, vdims=["color"]).opts(fill_alpha=0.0, line_color="color", line_width=BOX_LINE_WIDTH),
            hv.Points(points, vdims=["color"]).opts(color="color", size=POINT_SIZE, line_color=OUTLINE, line_width=1.5),
        ]
    )


def weak_label_view(
    image: np.ndarray, weak: WeakLabels, colors: np.ndarray, classes: Sequence[str] = (), title: str = ""
) -> hv.Overlay:
    """The image under its weak labels; the title lists the tags by name when ``classes`` are given."""
    if image.shape[:2] != (weak.height, weak.width):
        raise ValueError(
            f"weak labels are for a {weak.height}x{weak.width} image, the image is {image.shape[0]}x{image.shape[1]}; "
            "resize the labels with weak.resized(h, w)"
        )
    if classes:
        tags = ", ".join(classes[c] for c in sorted(weak.tags))
        title = f"{title} [tags: {tags}]".strip()
    return (views.image_element(image) * weak_label_layer(weak, colors)).opts(title=title)


# ----------------------------------------------------------------------------- masks


def mask_panels(
    image: np.ndarray, masks: Mapping[str, np.ndarray], colors: np.ndarray, opacity: float = 0.7, cols: int = 4
) -> hv.Layout:
    """The image, then each ``(H, W)`` index mask of ``masks`` (title -> mask) over it.

    Unlabelled (254) and void (255) pixels stay transparent, so a sparse label map shows
    only what is labelled.
    """
    panels = [views.image_element(image, title="image")]
    for title, mask in masks.items():
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {title!r} is {mask.shape}, the image is {image.shape[:2]}; resize it first")
        panels.append((views.image_element(image) * views.mask_element(mask, colors, None, opacity)).opts(title=title))
    return hv.Layout(panels).cols(cols).opts(shared_axes=True)


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """``(D, H, W)`` pixel features -> ``(H, W, 3)`` uint8: their first three principal components as colours.

    Pixels with similar features get similar colours, so an embedding's segments become visible.
    """
    d, h, w = features.shape
    x = np.asarray(features, dtype=np.float64).reshape(d, -1).T  # (HW, D)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = x @ vt[:3].T  # (HW, <=3)
    comps = np.pad(comps, ((0, 0), (0, 3 - comps.shape[1])))
    lo, hi = comps.min(0), comps.max(0)
    rgb = (comps - lo) / np.where(hi > lo, hi - lo, 1.0)
    return (rgb.reshape(h, w, 3) * 255).round().astype(np.uint8)


def signed_heatmap(values: np.ndarray, title: str = "") -> hv.Image:
    """A signed ``(H, W)`` map (an attribution) on a diverging colormap centred on 0."""
    values = np.asarray(values, dtype=np.float32)
    peak = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    limit = peak if peak > 0 else 1.0
    return views.heatmap_element(values, alpha=1.0, clim=(-limit, limit), cmap="RdBu_r").opts(title=title)


# ----------------------------------------------------------------------------- results


def runs_bars(summaries: Mapping[str, dict], title: str = "per-class IoU") -> hv.Bars:
    """Per-class IoU of several runs side by side (run name -> evaluation summary); legends carry each mIoU."""
    if not summaries:
        raise ValueError("no runs to compare: pass {run name: summary} with at least one entry")
    rows = []
    for name, summary in summaries.items():
        label = f"{name} ({_fmt(summary['miou'])})"
        for cls, v in summary["per_class_iou"].items():
            rows.append((cls, label, math.nan if v is None else v))
    return hv.Bars(rows, kdims=["class", "run"], vdims=["IoU"]).opts(
        ylim=(0, 1), xrotation=45, width=views.CANVAS_WIDTH + 240, height=340, tools=["hover"],
        title=title, multi_level=False, color=hv.dim("run"), cmap="Category10", legend_position="right",
    )  # fmt: skip


def cost_curve(rows: Sequence[dict], x: str = "seconds", y: str = "miou", label: str = "name") -> hv.Overlay:
    """mIoU against annotation cost: one labelled dot per row (``{label, x, y}`` dicts), log-scaled cost axis."""
    if not rows:
        raise ValueError("no rows to plot: pass dicts with the keys x, y and label")
    missing = sorted({k for r in rows for k in (x, y, label) if k not in r})
    if missing:
        raise ValueError(f"rows lack the key(s) {missing}; each row needs {x!r}, {y!r} and {label!r}")
    data = sorted(((float(r[x]), float(r[y]), str(r[label])) for r in rows), key=lambda t: t[0])
    frontier, best = [], -math.inf  # the cheapest way to reach each mIoU: the Pareto front
    for cost, value, _ in data:
        if value > best:
            frontier.append((cost, value))
            best = value
    dots = hv.Scatter(data, x, [y, label]).opts(size=10, tools=["hover"], color="black")
    names = hv.Labels(data, [x, y], label).opts(text_font_size="9pt", yoffset=0.03, text_color="#333")
    front = hv.Curve(frontier, x, y).opts(line_dash="dashed", color="gray")
    return (front * dots * names).opts(
        logx=True, padding=0.15, width=views.CANVAS_WIDTH + 120, height=360, xlabel=f"{x} (log scale)",
        title=f"{y} vs annotation cost (dashed: the cheapest way to each {y})",
    )  # fmt: skip


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"

"""Figures for the tutorials: HoloViews builders that :mod:`workbench.viz.views` does not already offer.

Like :mod:`workbench.viz.views` (whose image elements and geometry these reuse), every function
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

from workbench.labels.weak_labels import IGNORE, UNLABELED, WeakLabels
from workbench.viz import views

POINT_SIZE = 10  # screen pixels
BOX_LINE_WIDTH = 2
OUTLINE = "white"  # drawn around points and scribbles so they stand out on their own class colour
PAGE_WIDTH = 1300  # screen pixels a notebook page shows without a horizontal scroll bar
PANEL_MARGIN = 30  # screen pixels around one image panel (title padding, borders, toolbar gap)
HATCH_RGBA = (128, 128, 128, 170)  # unlabelled pixels: grey diagonal stripes
HATCH_PERIOD = 4  # image pixels per stripe pair
VOID_RGBA = (0, 0, 0, 200)


def _screen_scale(height: int, width: int) -> float:
    """Screen pixels per image pixel in the canvases of :mod:`workbench.viz.views`."""
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
        hv.Path(line).opts(color=views.hex_color(colors[s.cls]), line_width=max(s.width * scale, 1.0))
        for line, s in zip(lines, weak.scribbles)
    ]
    boxes = [(b.col0, h - b.row1, b.col1, h - b.row0, views.hex_color(colors[b.cls])) for b in weak.boxes]
    points = [(p.col + 0.5, h - p.row - 0.5, views.hex_color(colors[p.cls])) for p in weak.points]
    # An empty layer keeps a constant colour: bokeh cannot map colours from an empty column.
    box_color = "color" if boxes else OUTLINE
    point_color = "color" if points else OUTLINE
    return hv.Overlay(
        [
            outline,
            *scribbles,
            hv.Rectangles(boxes, vdims=["color"]).opts(fill_alpha=0.0, line_color=box_color, line_width=BOX_LINE_WIDTH),
            hv.Points(points, vdims=["color"]).opts(
                color=point_color, size=POINT_SIZE, line_color=OUTLINE, line_width=1.5
            ),
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
        label = f"{name} ({views.format_score(summary['miou'])})"
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


# ----------------------------------------------------------------------------- notebook pages


def panel_width(cols: int, extra: int = 0, page: int = PAGE_WIDTH) -> int:
    """Frame width of each of ``cols`` side-by-side panels so the row fits ``page`` screen pixels.

    ``extra``: screen pixels each panel needs beside its frame (e.g. about 90 for a colourbar).
    """
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    return int(min(views.CANVAS_WIDTH, (page - cols * (PANEL_MARGIN + extra)) // cols))


def _sized(element, height: int, width: int, frame_width: int):
    scale = frame_width / max(height, width)
    return element.opts(frame_width=round(width * scale), frame_height=round(height * scale))


def label_rgba(mask: np.ndarray, colors: np.ndarray, opacity: float = 0.7) -> np.ndarray:
    """``(H, W)`` label map -> ``(H, W, 4)`` RGBA: classes in their colours, **unlabelled (254) hatched
    grey** and void (255) dark, so a sparse label map never looks like a full one."""
    rgba = views.colorize(mask, colors, None, opacity)
    rows, cols = np.indices(mask.shape)
    stripe = ((rows + cols) // (HATCH_PERIOD // 2)) % 2 == 0
    rgba[(mask == UNLABELED) & stripe] = HATCH_RGBA
    rgba[mask == IGNORE] = VOID_RGBA
    return rgba


def mask_row(
    image: np.ndarray, masks: Mapping[str, np.ndarray], colors: np.ndarray, cols: int | None = None,
    opacity: float = 0.7, show_image: bool = True,
) -> hv.Layout:  # fmt: skip
    """The image and each labelled ``(H, W)`` mask over it (title -> mask), sized to fit a notebook page.

    Unlike :func:`mask_panels`, unlabelled pixels are hatched grey (:func:`label_rgba`), so what a
    loss sees is visible; put the ground truth among ``masks`` to compare against it.
    """
    h, w = image.shape[:2]
    n = len(masks) + int(show_image)
    cols = cols or min(n, 4)
    side = panel_width(cols)
    panels = [_sized(views.image_element(image, title="image"), h, w, side)] if show_image else []
    for title, mask in masks.items():
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {title!r} is {mask.shape}, the image is {image.shape[:2]}; resize it first")
        layer = views.image_element(label_rgba(mask, colors, opacity))
        panels.append(_sized((views.image_element(image) * layer).opts(title=title), h, w, side))
    return hv.Layout(panels).cols(cols).opts(shared_axes=True)


def class_legend(
    classes: Sequence[str], colors: np.ndarray, novel: Sequence[int] = (), unlabelled: bool = True
) -> hv.Div:
    """The class colours with their ids (0-based, as in masks and configs); novel classes marked."""
    novel_ids = set(novel)
    items = [
        f'<span style="white-space:nowrap;margin-right:14px"><span style="display:inline-block;width:12px;'
        f'height:12px;background:{views.hex_color(c)};border:1px solid #333;margin-right:4px"></span>'
        f"{i} {name}{' <b>(novel)</b>' if i in novel_ids else ''}</span>"
        for i, (name, c) in enumerate(zip(classes, colors))
    ]
    if unlabelled:
        items.append(
            '<span style="white-space:nowrap"><span style="display:inline-block;width:12px;height:12px;'
            "background:repeating-linear-gradient(45deg,#808080 0 3px,transparent 3px 6px);"
            f'border:1px solid #333;margin-right:4px"></span>{UNLABELED} unlabelled</span>'
        )
    return hv.Div(f'<div style="line-height:1.8">{" ".join(items)}</div>').opts(width=PAGE_WIDTH - 100, height=60)


def heat_panel(
    image: np.ndarray, values: np.ndarray, title: str, label: str, clim: tuple[float, float] = (0.0, 1.0),
    cmap: str = views.HEAT_CMAP, cols: int = 3, alpha: float = 0.7, pixel: tuple[int, int] | None = None,
) -> hv.Overlay:  # fmt: skip
    """A continuous ``(H, W)`` map over the image with a colourbar named ``label`` (not HoloViews' "z"),
    sized so ``cols`` such panels fit a page; ``pixel`` ``(row, col)`` is circled (an affinity's anchor).

    Overlay anything else before this sizes the plot: ``panel * other`` is a new overlay at the default size."""
    values = np.asarray(values, dtype=np.float32)
    h, w = values.shape
    heat = hv.Image(values, bounds=(0, 0, w, h), vdims=[hv.Dimension("value", label=label, range=clim)]).opts(
        cmap=cmap, alpha=alpha, clim=clim, colorbar=True, xaxis=None, yaxis=None, tools=["hover"],
        clipping_colors={"NaN": "transparent"}, colorbar_opts={"title": label},
    )  # fmt: skip
    layers = views.image_element(image) * heat
    if pixel is not None:
        layers = layers * marked_pixel(pixel, h)
    return _sized(layers.opts(title=title), h, w, panel_width(cols, extra=90))


def marked_pixel(pixel: tuple[int, int], height: int, color: str = "cyan") -> hv.Points:
    """A circle on pixel ``(row, col)`` of an image ``height`` rows tall (the anchor of an affinity map)."""
    return hv.Points([(pixel[1] + 0.5, height - pixel[0] - 0.5)]).opts(
        marker="circle", size=12, color=color, line_color="black"
    )


def curves(records: Sequence[Mapping]) -> hv.Layout:
    """Two plots of ``metrics.jsonl`` records (each tagged with ``run``): training loss against the
    optimisation step, and validation mIoU against the epoch (logged with ``eval_every``, plus the
    final evaluation). Separate axes, so neither hides the other."""
    losses = views.series_by_run(records, "loss")
    mious: dict[str, list] = {}
    last_epoch: dict[str, int] = {}
    for r in records:
        run = str(r.get("run", "run"))
        if "epoch" in r and "event" not in r:
            last_epoch[run] = max(last_epoch.get(run, 0), int(r["epoch"]))
        if "val_miou" in r:
            epoch = int(r["epoch"]) if "epoch" in r and "event" not in r else last_epoch.get(run, 0)
            mious.setdefault(run, []).append((epoch, r["val_miou"]))
    if not losses:
        raise ValueError("no records with 'loss' and 'step': pass the records of metrics.jsonl (log_every <= steps)")
    width = panel_width(2, extra=160)
    loss = hv.NdOverlay({run: hv.Curve(p, "step", "loss") for run, p in losses.items()}, kdims="run").opts(
        width=width + 160, height=300, title="training loss per optimisation step", legend_position="right",
        logy=True,
    )  # fmt: skip
    miou = hv.NdOverlay(
        {run: hv.Curve(sorted(p), "epoch", "val mIoU") * hv.Scatter(sorted(p), "epoch", "val mIoU").opts(size=7)
         for run, p in mious.items()}, kdims="run",
    ) if mious else views.unavailable("validation mIoU", "no val_miou records: train with eval_every=1")  # fmt: skip
    miou = miou.opts(width=width + 160, height=300, title="validation mIoU per epoch", ylim=(0, 1)) if mious else miou
    return (loss + miou).opts(shared_axes=False)


def bars_by_group(summaries: Mapping[str, dict], groups: Mapping[str, Sequence[str]], title: str) -> hv.Bars:
    """Mean IoU of each class group (e.g. ``{"stuff": [...], "objects": [...]}``) for each run, side by side."""
    rows = []
    for run, summary in summaries.items():
        iou = summary["per_class_iou"]
        for group, classes in groups.items():
            vals = [iou[c] for c in classes if iou.get(c) is not None and not math.isnan(iou[c])]
            rows.append((group, run, float(np.mean(vals)) if vals else math.nan))
    return hv.Bars(rows, kdims=["classes", "run"], vdims=["mIoU"]).opts(
        ylim=(0, 1), width=min(PAGE_WIDTH - 100, 200 + 120 * len(summaries) * len(groups)), height=300,
        title=title, multi_level=True, color=hv.dim("run"), cmap="Category10", tools=["hover"], xlabel="",
    )  # fmt: skip


# ----------------------------------------------------------------------------- checking a page

AXIS_PX = 50  # screen pixels a visible vertical axis with tick labels takes
COLORBAR_PX = 90
TITLE_CHAR_PX = 7.5  # a 12pt bold title character, on average
FORBIDDEN_LABELS = ("z",)  # HoloViews' default value-dimension name: a colourbar or axis nobody named


def page_problems(obj, page: int = PAGE_WIDTH) -> list[str]:
    """What is wrong with a figure on a notebook page: wider than ``page`` screen pixels, a plot
    that draws nothing, a title longer than its plot, an axis or colourbar labelled "z".

    ``obj`` is a HoloViews object (rendered with bokeh here) or a bokeh model. Widths are
    estimated from the model (frames, visible axes, colourbars, legends), not measured in a browser.
    """
    from bokeh.models import Model

    model = obj if isinstance(obj, Model) else hv.render(obj, backend="bokeh")
    problems: list[str] = []
    width = _model_width(model, problems)
    if width > page:
        problems.append(f"about {width} px wide, more than the {page} px page")
    return problems


def _figure_width(fig, problems: list[str]) -> int:
    from bokeh.models.annotations.legends import ColorBar, Legend
    from bokeh.models.axes import Axis
    from bokeh.models.renderers.glyph_renderer import GlyphRenderer

    side = [m for m in (*fig.left, *fig.right) if getattr(m, "visible", True)]
    if fig.frame_width is not None:
        width = fig.frame_width + fig.min_border_left + fig.min_border_right
        width += sum(AXIS_PX for m in side if isinstance(m, Axis))
        width += sum(COLORBAR_PX for m in side if isinstance(m, ColorBar))
        for legend in (m for m in side if isinstance(m, Legend)):
            names = [str(getattr(getattr(item, "label", ""), "value", "") or "") for item in legend.items]
            width += 40 + 7 * max((len(t) for t in names), default=0)
    else:
        width = fig.width or 600
    title = fig.title.text if fig.title is not None else ""
    if title and len(title) * TITLE_CHAR_PX > width:
        problems.append(f"title {title!r} is longer than its {width} px plot: it is clipped")
    labels: list[object] = [getattr(a, "axis_label", None) for a in (*fig.left, *fig.below, *fig.right, *fig.above)]
    labels += [m.title for m in (*fig.left, *fig.right, *fig.above, *fig.below) if isinstance(m, ColorBar)]
    if any(str(label).strip() in FORBIDDEN_LABELS for label in labels if label is not None):
        problems.append(f"plot {title!r} has an axis or colourbar labelled 'z': name the value dimension")
    glyphs = [r for r in fig.renderers if isinstance(r, GlyphRenderer)]
    if not any(_has_data(getattr(r.data_source, "data", {})) for r in glyphs):
        problems.append(f"plot {title!r} draws nothing: no glyph has data")
    return int(width)


def _has_data(data: Mapping) -> bool:
    for values in data.values():
        if len(values) and not (
            isinstance(values[0], np.ndarray) and all(np.asarray(v).size == 0 for v in values)
        ):  # an image glyph holds a list of 2-D arrays
            return True
    return False


def _model_width(model, problems: list[str]) -> int:
    from bokeh.models.layouts import LayoutDOM, Row
    from bokeh.models.plots import GridPlot, Plot
    from bokeh.models.widgets.markups import Markup

    if isinstance(model, Plot):
        return _figure_width(model, problems)
    if isinstance(model, GridPlot):
        columns: dict[int, int] = {}
        for child, _, col, *_ in model.children:
            columns[col] = max(columns.get(col, 0), _model_width(child, problems))
        return sum(columns.values())
    if isinstance(model, Markup):
        return int(model.width or 0)
    children = getattr(model, "children", None)
    if children is not None:
        widths = [_model_width(c[0] if isinstance(c, tuple) else c, problems) for c in children]
        return sum(widths) if isinstance(model, Row) else max(widths, default=0)
    return int(model.width or 0) if isinstance(model, LayoutDOM) else 0


def fit(element, shape: tuple[int, ...], cols: int, extra: int = 0):
    """Resize an image-like element of an ``(H, W, ...)`` image so ``cols`` panels fit a notebook page."""
    return _sized(element, shape[0], shape[1], panel_width(cols, extra))

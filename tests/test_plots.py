"""The tutorial figure builders: geometry of weak-label layers, PCA colours, inputs they refuse; each renders."""

from __future__ import annotations

import math

import holoviews as hv
import numpy as np
import pytest

from workbench import plots
from workbench.weak_labels import Box, Point, Scribble, WeakLabels

hv.extension("bokeh")
COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def render(obj) -> None:
    """Build the bokeh model, as a notebook's display does."""
    hv.render(obj, backend="bokeh")


def test_weak_label_layer_puts_pixel_centres_and_box_borders_in_plot_coordinates():
    weak = WeakLabels(
        10, 20, frozenset({0, 1, 2}),
        points=(Point(2, 3, 0),), scribbles=(Scribble(((1, 1), (8, 15)), 1, 2.0),), boxes=(Box(4, 5, 6, 9, 2),),
    )  # fmt: skip
    outline, path, rects, points = plots.weak_label_layer(weak, COLORS)
    assert len(outline.split()) == 1 and outline.opts.get().kwargs["color"] == "white"
    assert path.opts.get().kwargs["color"] == "#00ff00"
    assert (points.data["x"][0], points.data["y"][0]) == (3.5, 7.5)  # row 2 of 10 -> y = 10 - 2 - 0.5
    assert points.data["color"][0] == "#ff0000"
    assert rects.data.iloc[0][["x0", "y0", "x1", "y1"]].tolist() == [5, 4, 9, 6]  # rows 4..6 -> y 4..6
    assert rects.data["color"][0] == "#0000ff"
    np.testing.assert_allclose(path.array(["x", "y"]), [[1.5, 8.5], [15.5, 1.5]])
    render(plots.weak_label_view(np.zeros((10, 20, 3), np.uint8), weak, COLORS, ("a", "b", "c")))


def test_weak_label_view_names_the_tags_and_refuses_a_wrong_size_image():
    weak = WeakLabels(8, 8, frozenset({0, 2}))
    view = plots.weak_label_view(np.zeros((8, 8, 3), np.uint8), weak, COLORS, ("sky", "grass", "sand"), "img")
    assert view.opts.get().kwargs["title"] == "img [tags: sky, sand]"
    render(view)  # no points, scribbles or boxes: empty layers
    with pytest.raises(ValueError, match="resized"):
        plots.weak_label_view(np.zeros((4, 8, 3), np.uint8), weak, COLORS)


def test_mask_panels_one_panel_per_mask_after_the_image():
    image = np.zeros((6, 6, 3), np.uint8)
    layout = plots.mask_panels(image, {"gt": np.zeros((6, 6), np.uint8), "pred": np.ones((6, 6), np.uint8)}, COLORS)
    assert [p.opts.get().kwargs.get("title") for p in layout] == ["image", "gt", "pred"]
    render(layout)
    with pytest.raises(ValueError, match="resize"):
        plots.mask_panels(image, {"small": np.zeros((3, 3), np.uint8)}, COLORS)


def test_pca_rgb_gives_two_feature_clusters_two_distinct_colours():
    feats = np.zeros((5, 4, 4), np.float32)
    feats[:, :, 2:] = np.arange(5)[:, None, None]  # right half differs from the left along one direction
    rgb = plots.pca_rgb(feats)
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) == 2
    assert (rgb[:, :2] == rgb[0, 0]).all() and (rgb[:, 2:] != rgb[0, 0]).any(-1).all()
    assert plots.pca_rgb(np.ones((1, 3, 3))).shape == (3, 3, 3)  # one channel, constant: no crash


def test_signed_heatmap_is_centred_on_zero():
    element = plots.signed_heatmap(np.array([[-1.0, 3.0]]))
    assert element.opts.get().kwargs["clim"] == (-3.0, 3.0)
    assert plots.signed_heatmap(np.zeros((2, 2))).opts.get().kwargs["clim"] == (-1.0, 1.0)


def test_runs_bars_one_bar_per_class_and_run_with_miou_in_the_legend():
    summary = {"miou": 0.5, "per_class_iou": {"a": 0.25, "b": None}}
    bars = plots.runs_bars({"one": summary, "two": {**summary, "miou": 0.75}})
    assert len(bars) == 4 and set(bars["run"]) == {"one (0.50)", "two (0.75)"}
    assert math.isnan(bars.data[bars.data["class"] == "b"]["IoU"].iloc[0])
    render(bars)
    with pytest.raises(ValueError, match="at least one"):
        plots.runs_bars({})


def test_cost_curve_frontier_keeps_only_runs_that_beat_every_cheaper_run():
    rows = [
        {"name": "tags", "seconds": 2, "miou": 0.2},
        {"name": "points", "seconds": 5, "miou": 0.5},
        {"name": "boxes", "seconds": 20, "miou": 0.4},  # dearer and worse than points: off the front
        {"name": "dense", "seconds": 240, "miou": 0.7},
    ]
    front, dots, labels = plots.cost_curve(rows)
    assert front.data[["seconds", "miou"]].values.tolist() == [[2, 0.2], [5, 0.5], [240, 0.7]]
    assert len(dots) == 4 and list(labels.data["name"]) == ["tags", "points", "boxes", "dense"]
    render(plots.cost_curve(rows))
    with pytest.raises(ValueError, match="miou"):
        plots.cost_curve([{"name": "x", "seconds": 1}])

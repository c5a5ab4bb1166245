"""The tutorial figure builders: geometry of weak-label layers, PCA colours, inputs they refuse; each renders."""

from __future__ import annotations

import math

import holoviews as hv
import numpy as np
import pytest

from workbench.labels.weak_labels import Box, Point, Scribble, WeakLabels
from workbench.viz import plots

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


def test_label_rgba_hatches_unlabelled_pixels_and_keeps_classes():
    mask = np.full((8, 8), 254, np.uint8)
    mask[0, :] = 1
    mask[7, 7] = 255
    rgba = plots.label_rgba(mask, COLORS, opacity=1.0)
    assert (rgba[0, :, :3] == COLORS[1]).all() and (rgba[0, :, 3] == 255).all()
    unlabelled = rgba[1:7]
    grey = (unlabelled == plots.HATCH_RGBA).all(-1)
    assert 0.3 < grey.mean() < 0.7  # stripes: grey and clear pixels alternate, never all of one
    assert (unlabelled[~grey][:, 3] == 0).all()
    assert tuple(rgba[7, 7]) == plots.VOID_RGBA


def test_mask_row_fits_a_page_and_mask_panels_of_four_does_not():
    image = np.zeros((48, 48, 3), np.uint8)
    masks = {f"m{i}": np.full((48, 48), 254, np.uint8) for i in range(3)}
    masks["m0"][:10] = 1
    assert plots.page_problems(plots.mask_row(image, masks, COLORS)) == []
    assert any("px wide" in p for p in plots.page_problems(plots.mask_panels(image, masks, COLORS)))


def test_page_problems_names_z_labels_empty_plots_and_clipped_titles():
    values = np.random.default_rng(0).random((8, 8))
    assert any("'z'" in p for p in plots.page_problems(hv.Image(values).opts(colorbar=True)))
    assert plots.page_problems(plots.heat_panel(np.zeros((8, 8, 3), np.uint8), values, "t", "cosine")) == []
    assert any("draws nothing" in p for p in plots.page_problems(hv.Curve([])))
    long = hv.Curve([(0, 1), (1, 2)]).opts(width=200, title="x" * 60)
    assert any("clipped" in p for p in plots.page_problems(long))


def test_curves_put_loss_on_steps_and_miou_on_epochs():
    records = [
        {"run": "a", "epoch": 0, "step": 2, "loss": 1.0},
        {"run": "a", "epoch": 1, "step": 4, "seconds": 1.0, "val_miou": 0.2},
        {"run": "a", "epoch": 1, "step": 6, "loss": 0.5},
        {"run": "a", "epoch": 2, "step": 8, "seconds": 1.0},
        {"run": "a", "event": "done", "step": 8, "val_miou": 0.3},
    ]
    loss, miou = plots.curves(records)
    assert loss.last.kdims[0].name == "step" and loss.last.dimension_values("loss").tolist() == [1.0, 0.5]
    curve = miou.last.Curve.I
    assert curve.kdims[0].name == "epoch"
    assert curve.array().tolist() == [[1, 0.2], [2, 0.3]]  # the final evaluation belongs to the last epoch
    assert plots.page_problems(loss + miou) == []
    with pytest.raises(ValueError, match="metrics.jsonl"):
        plots.curves([{"epoch": 1, "seconds": 1.0}])


def test_class_legend_numbers_classes_from_zero_and_marks_novel():
    html = plots.class_legend(["sky", "disc"], COLORS[:2], novel=[1]).data
    assert "0 sky" in html and "1 disc <b>(novel)</b>" in html and "254 unlabelled" in html


def test_weak_label_view_of_tags_only_renders():
    """An image with tags and no geometry: empty point and box layers must still render."""
    view = plots.weak_label_view(
        np.zeros((8, 8, 3), np.uint8), WeakLabels(8, 8, frozenset({1})), COLORS, ("a", "b", "c")
    )
    assert plots.page_problems(view) == []

"""Views as pure functions, and the dashboard layout driven through params and stream data (no browser)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

hv = pytest.importorskip("holoviews")
pn = pytest.importorskip("panel")

from workbench.labels.weak_labels import Point, Scribble  # noqa: E402
from workbench.viz import views  # noqa: E402

hv.extension("bokeh")

COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
CLASSES = ("a", "b", "c")


def render(obj) -> None:
    """Every view must turn into a Bokeh model without error."""
    assert hv.render(obj, backend="bokeh") is not None


# ----------------------------------------------------------------------------- arrays


def test_colorize_uses_class_colors_and_hides_what_it_should():
    mask = np.array([[0, 1, 2], [254, 255, 1]], dtype=np.uint8)
    rgba = views.colorize(mask, COLORS, visible=[0, 1], alpha=0.5)
    assert rgba.shape == (2, 3, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[0, 0]) == (255, 0, 0, 128) and tuple(rgba[0, 1]) == (0, 255, 0, 128)
    assert rgba[0, 2, 3] == 0  # class 2 hidden
    assert rgba[1, 0, 3] == 0 and rgba[1, 1, 3] == 0  # unlabelled and void are transparent
    assert views.colorize(mask, COLORS)[0, 2, 3] == 255
    with pytest.raises(ValueError, match="alpha"):
        views.colorize(mask, COLORS, alpha=2)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        views.colorize(mask[None], COLORS)


def test_uncertainty_maps_are_zero_when_sure_and_one_when_torn():
    sure = np.zeros((3, 2, 2), np.float32)
    sure[1] = 1
    torn = np.full((3, 2, 2), 1 / 3, np.float32)
    assert np.allclose(views.entropy_map(sure), 0, atol=1e-6) and np.allclose(views.entropy_map(torn), 1)
    assert np.allclose(views.margin_map(sure), 0) and np.allclose(views.margin_map(torn), 1)
    two_way = np.array([0.5, 0.5, 0.0], np.float32)[:, None, None] * np.ones((3, 1, 1))
    assert views.margin_map(two_way)[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown uncertainty"):
        views.uncertainty_map(torn, "variance")


def test_top_pixels_keep_their_distance():
    values = np.zeros((20, 20))
    values[5, 5], values[5, 6], values[15, 15] = 3, 2, 1
    assert views.top_pixels(values, k=2, spacing=3) == [(5, 5), (15, 15)]
    assert len(views.top_pixels(np.zeros((2, 2)), k=10, spacing=5)) == 1


def test_where_to_click_skips_the_border_where_padding_makes_every_model_unsure():
    """Issue 26 item 10: on CamVid the picks sat on the padded image border."""
    values = np.zeros((100, 120))
    values[0, :] = values[:, -1] = 1.0  # the border: most uncertain
    values[40, 60], values[70, 20] = 0.8, 0.7
    assert views.top_pixels(values, k=2, spacing=3) == [(40, 60), (70, 20)]
    assert views.top_pixels(values, k=1, border=0.0) in ([(0, 0)], [(0, 1)], [(0, 119)])  # off: the border wins


def test_the_uncertainty_bar_is_red_where_uncertain_and_the_miou_bar_green_where_good():
    import pandas as pd

    from workbench.dashboard.app import GOOD_TO_BAD, image_table

    frame = pd.DataFrame({"index": [0], "uncertainty": [0.9]})
    unsure = image_table(frame, "uncertainty", 100, lambda i: None, high_is_good=False)
    good = image_table(frame.rename(columns={"uncertainty": "miou"}), "miou", 100, lambda i: None)
    assert unsure.formatters["uncertainty"]["color"][-1] == GOOD_TO_BAD[-1]  # high uncertainty: red
    assert good.formatters["miou"]["color"][-1] == GOOD_TO_BAD[0]  # high mIoU: green


def test_binary_iou_against_ground_truth():
    gt = np.array([[0, 0, 1], [1, 255, 0]])
    pred = np.array([[1, 0, 1], [0, 1, 0]], bool)
    # class 0 pixels: (0,0), (0,1), (1,2); predicted: (0,0), (0,2), (1,1)=void -> skipped
    assert views.binary_iou(pred, gt, 0, 3) == pytest.approx(1 / 4)
    assert math.isnan(views.binary_iou(pred, None, 0, 3))
    assert math.isnan(views.binary_iou(np.zeros_like(pred), gt, 2, 3))


def test_points_round_trip_through_plot_coordinates():
    items = {4: Point(2.0, 7.0, 1), 5: Scribble(((0, 0), (1, 1)), 0), 9: Point(0.0, 0.0, 2)}
    data = views.points_data(items, height=10, colors=COLORS)
    assert data["id"] == [4, 9] and data["cls"] == [1, 2] and data["color"] == ["#00ff00", "#0000ff"]
    assert (data["x"][0], data["y"][0]) == (7.5, 7.5)
    assert views.to_pixel(data["x"][0], data["y"][0], 10) == (2.0, 7.0)
    image = views.image_element(np.zeros((10, 12, 3), np.uint8))
    assert image.sheet2matrixidx(data["x"][0], data["y"][0]) == (2, 7)  # HoloViews agrees on the pixel


def test_per_image_frame_is_worst_first():
    frame = views.per_image_frame(
        [{"index": 0, "name": "a", "miou": 0.5}, {"index": 1, "name": "b", "miou": float("nan")},
         {"index": 2, "name": "c", "miou": 0.1}]
    )  # fmt: skip
    assert list(frame["name"]) == ["c", "a", "b"]


def test_legend_lists_digits_names_and_colors():
    html = views.legend_html(CLASSES, COLORS, active=1)
    assert "#ff0000" in html and "1 a" in html and "3 c" in html and html.count("bold") == 1


# ----------------------------------------------------------------------------- elements


def test_image_and_mask_elements_have_pixel_bounds():
    image = views.image_element(np.zeros((6, 8, 3), np.uint8))
    assert image.bounds.lbrt() == (0, 0, 8, 6)
    mask = views.mask_element(np.zeros((6, 8), np.uint8), COLORS, opacity=0.3)
    assert mask.dimension_values("A").max() == round(255 * 0.3)
    render(image * mask * views.heatmap_element(np.where(np.eye(6, 8) > 0, np.nan, 0.5)))


def test_uncertainty_affinity_and_unavailable_views_render():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(6, 8)).transpose(2, 0, 1).astype(np.float32)
    image = np.zeros((6, 8, 3), np.uint8)
    render(views.uncertainty_view(image, probs, "margin"))
    render(views.affinity_view(image, probs[0], (2, 3), "cosine"))
    render(views.affinity_view(image, None, None))
    text = views.unavailable("proposals", "not available for this model")
    assert text.text == "not available for this model"
    render(text)


def test_cam_vs_pseudo_titles_carry_their_iou():
    image = np.zeros((2, 3, 3), np.uint8)
    gt = np.array([[1, 1, 0], [0, 0, 0]])
    cam = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 0.0]], np.float32)  # CAM >= 0.2 hits 1 of 2 class-1 pixels
    pseudo = np.array([[1, 1, 1], [254, 0, 0]], np.uint8)  # 2 right, 1 too many
    layout = views.cam_vs_pseudo_view(image, cam, pseudo, gt, 1, CLASSES, COLORS)
    titles = [el.opts.get().kwargs["title"] for el in layout]
    assert "IoU 0.50" in titles[0] and "IoU 0.67" in titles[1]
    render(layout)
    missing = views.cam_vs_pseudo_view(image, "no CAM here", "no points yet", None, 1, CLASSES, COLORS)
    assert [el.text for el in missing] == ["no CAM here", "no points yet"]


def test_proposals_view_shows_top_k_or_says_not_available():
    image = np.zeros((4, 4, 3), np.uint8)
    props = [{"mask": np.full((4, 4), 0.5), "cls": c % 3, "score": 1 - c / 10} for c in range(6)]
    gallery = views.proposal_view(image, props, 5, CLASSES, COLORS)
    mosaic, labels = gallery.get(0), gallery.get(1)
    assert mosaic.bounds.lbrt() == (0, 0, 4 * 4 + 3 * 2, 2 * 4 + 2)  # 4 per row, 2 px gaps, 2 rows
    assert list(labels.dimension_values("label")) == ["a 1.00", "b 0.90", "c 0.80", "a 0.70", "b 0.60"]
    assert tuple(mosaic.data[0, 0]) == tuple(views.blend(image, np.array([[[255, 0, 0, 100]]], np.uint8))[0, 0])
    render(gallery)
    assert "not available for this model" in views.proposal_view(image, None, 4, CLASSES, COLORS).text


def test_iou_bars_color_base_and_novel_and_title_the_means():
    summary = {
        "miou": 0.5, "per_class_iou": {"a": 0.2, "b": None, "c": 0.8}, "novel_classes": ["c"],
        "base_miou": 0.2, "novel_miou": 0.8, "harmonic_miou": 0.32,
    }  # fmt: skip
    bars = views.iou_bars(summary)
    assert list(bars.dimension_values("group")) == ["base", "base", "novel"]
    assert math.isnan(bars.dimension_values("IoU")[1])
    title = bars.opts.get().kwargs["title"]
    assert "base 0.20" in title and "novel 0.80" in title and "harmonic 0.32" in title
    render(bars)


def test_confusion_heatmap_rows_sum_to_one():
    cm = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    heat = views.confusion_heatmap(cm, CLASSES)
    table = heat.dframe()
    shares = table.groupby("ground truth")["share"].sum()
    assert shares["a"] == pytest.approx(1) and shares["b"] == 0 and shares["c"] == pytest.approx(1)
    assert int(table[(table["ground truth"] == "a") & (table["prediction"] == "b")]["pixels"].iloc[0]) == 2
    render(heat)


def test_training_curves_and_run_comparison():
    records = [{"run": "r1", "step": s, "loss": 1 / s} for s in range(1, 5)]
    records += [{"run": "r2", "step": s, "loss": 2 / s} for s in range(1, 3)]
    records += [{"run": "r1", "step": 4, "val_miou": 0.4, "event": "done"}, {"epoch": 1, "seconds": 2.0}]
    render(views.training_curves(records))
    assert isinstance(views.training_curves([{"epoch": 1}]), hv.Text)
    summary = {"miou": 0.5, "per_class_iou": {"a": 0.5, "b": None, "c": 0.5}}
    bars = views.compare_runs({"name": "x", "summary": summary}, {"name": "y", "summary": summary})
    assert len(bars) == 6
    render(bars)
    assert "no report.json in y" in views.compare_runs({"name": "x", "summary": summary}, {"name": "y"}).text


def test_loss_charts_put_step_on_x_and_fit_y_to_the_loss():
    """The Metrics chart had "step" on its y axis; the sidebar's live curve stayed at y 0-1 with loss 2.55."""
    records = [{"run": "r1", "step": s, "loss": 2.5 + s / 100} for s in range(1, 5)]
    records += [{"run": "r1", "step": 4, "val_miou": 0.4}, {"run": "r1", "step": 5, "loss": float("nan")}]
    fig = hv.render(views.training_curves(records))
    loss_plot = fig.children[0][0]
    assert [a.axis_label for a in loss_plot.left] == ["loss"] and loss_plot.xaxis[0].axis_label == "step"
    pipe = hv.streams.Pipe(data=[])
    plot = hv.renderer("bokeh").get_plot(hv.DynamicMap(lambda data: views.loss_curve(data), streams=[pipe]))
    pipe.send([(1, 2.55), (2, 2.4)])
    assert plot.state.y_range.start <= 2.4 and plot.state.y_range.end >= 2.55 and plot.state.y_range.start > 1


# ----------------------------------------------------------------------------- the app, through params


@pytest.fixture
def dashboard(synthetic_root, tmp_path):
    pytest.importorskip("workbench.dashboard.security")
    from workbench.dashboard.app import Dashboard
    from workbench.dashboard.retrainer import QuickConfig
    from workbench.dashboard.session import DashboardSession

    session = DashboardSession.open(
        data=synthetic_root, store=tmp_path / "a.sqlite", out=tmp_path / "out", quick=QuickConfig(steps=2)
    )
    yield Dashboard(session)
    session.close()


def test_point_draw_data_becomes_store_edits(dashboard):
    s, canvas = dashboard.session, dashboard.canvas
    h, _ = s.size()
    canvas.point_draw.event(data={"x": [3.5], "y": [h - 2.5], "color": ["#ffffff"]})  # a tap at pixel (2, 3)
    ((item_id, point),) = s.items().items()
    assert (point.row, point.col, point.cls) == (2.0, 3.0, 0)
    s.active_class = 2
    canvas.point_draw.event(data={"x": [3.5, 10.5], "y": [h - 2.5, h - 5.5]})
    assert [p.cls for p in s.items().values()] == [0, 2]
    canvas.point_draw.event(data={"x": [4.5, 10.5], "y": [h - 2.5, h - 5.5]})  # the first point dragged one pixel right
    assert s.items()[item_id].col == 4.0
    canvas.point_draw.event(data={"x": [10.5], "y": [h - 5.5]})  # Backspace removed the first one
    assert [p.cls for p in s.items().values()] == [2]
    canvas.point_draw.event(data={"x": [10.5, 500.0], "y": [h - 5.5, 3.0]})  # far off the image: refused, said why
    assert len(s.items()) == 1 and "off the" in s.message
    assert "1 points, 0 scribbles" in dashboard.status.object


def test_freehand_strokes_become_scribbles_once(dashboard):
    s, canvas = dashboard.session, dashboard.canvas
    h, _ = s.size()
    s.brush_width = 4
    stroke = {"xs": [[2.5, 8.5, 12.5]], "ys": [[h - 1.5, h - 1.5, h - 3.5]]}
    canvas.freehand.event(data=stroke)
    canvas.freehand.event(data=stroke)  # the same data echoed back is not a second stroke
    ((_, scribble),) = s.items().items()
    assert scribble.path == ((1.0, 2.0), (1.0, 8.0), (3.0, 12.0)) and scribble.width == 4
    canvas.freehand.event(data={"xs": [[]], "ys": [[]]})
    assert len(s.items()) == 1


def page(d):
    """A page load without a browser: the Bokeh models of dashboard ``d`` in a fresh document (Panel renders
    what the browser would see; lazy tabs build when they become visible in it). It opens on the upload tab:
    a rendered annotation canvas updates through an event loop, which a test without a server lacks."""
    from bokeh.document import Document

    d.tabs.active = d.titles.index("Your image")
    doc = Document()
    doc.add_root(pn.panel(d).get_root(doc))
    return doc


def open_tab(d, title: str) -> list:
    d.tabs.active = d.titles.index(title)
    return d.shown.get(title)


def test_tabs_build_when_opened_and_when_what_they_read_changes(dashboard):
    from workbench.dashboard.app import TABS

    d, s = dashboard, dashboard.session
    page(d)
    assert d.shown == {}  # only the Annotate tab is built on page load
    for title in TABS:
        assert len(open_tab(d, title)) > 0, title
    assert "not available for this model" in d.shown["Proposals"][0].object.text
    images, cam = d.shown["Images"], d.shown["CAM vs pseudo-mask"]
    s.add_point(3, 3)  # the CAM tab reads the annotations, Images does not
    s.index = 1  # hidden tabs are not rebuilt: their function is called only when they are shown
    assert d.shown["CAM vs pseudo-mask"] is cam
    assert open_tab(d, "Images") is images  # nothing it reads changed: not rebuilt
    cam_now = open_tab(d, "CAM vs pseudo-mask")
    assert cam_now is not cam and isinstance(cam_now[1].object, hv.Layout)
    s.active_class = 2  # the open tab follows the state it reads at once
    assert d.shown["CAM vs pseudo-mask"] is not cam_now


def test_keys_and_undo_through_the_layout(dashboard):
    d = dashboard
    d.session.add_point(3, 3)
    d.keys._handle_msg({"key": "z"})
    assert d.session.items() == {}
    d.keys._handle_msg({"key": "2"})
    bold_row = next(row for row in d.legend.object.split("<div") if "bold" in row)
    assert d.session.active_class == 1 and bold_row.endswith("2 grass</div>")
    d.keys._handle_msg({"key": "not a key"})
    d.keys._handle_msg("garbage")
    assert d.session.active_class == 1


def test_uploads_are_validated(dashboard):
    from PIL import Image

    d = dashboard
    d._on_image_upload("a.png", b"not an image")
    assert isinstance(d._upload_view[1], pn.pane.Alert) and "refused" in d._upload_view[1].object
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buffer, format="PNG")
    d._on_image_upload("a.png", buffer.getvalue())
    assert isinstance(d._upload_view[1], pn.Row)
    d._refused("labels", 5_000_000, "big.json", 6_000_000)
    assert "over the" in d.session.message
    d._on_json_upload("a.json", b"\xff\xfe")
    assert "upload refused" in d.session.message


def test_run_comparison_is_confined_to_the_runs_root(dashboard, tmp_path):
    from workbench.dashboard.app import compare_view

    view = compare_view(dashboard.session, "../../etc", "../../etc")
    assert isinstance(view, pn.pane.Alert) and "outside" in view.object


def build(view) -> None:
    """Server side of a page load: the Bokeh models of ``view`` in a fresh document, validated."""
    from bokeh.document import Document

    doc = Document()
    doc.add_root(pn.panel(view).get_root(doc))
    doc.validate()


@pytest.fixture(scope="module")
def method_runs(module_dir):
    """A one-epoch run of each of the 7 methods on a tiny synthetic set (weak-shot ones with novel classes)."""
    from workbench.data.synthetic import SyntheticConfig, generate
    from workbench.methods import METHODS
    from workbench.train.config import TrainConfig
    from workbench.train.loop import train

    base = module_dir
    root = generate(base / "data", SyntheticConfig(height=32, width=32, train=8, val=4))
    runs = {}
    for name, method in sorted(METHODS.items()):
        novel = "ring,cross" if name in ("simformer", "transfer") else None
        config = TrainConfig(data=str(root), out=str(base / "runs" / name), epochs=1, batch_size=4, novel=novel)
        train(method, method.Config(), config)
        runs[name] = base / "runs" / name
    return runs


@pytest.mark.parametrize("name", ["cam", "partial_ce", "simformer", "single_stage", "spml", "supervised", "transfer"])
def test_every_tab_builds_on_a_run_of_every_method(method_runs, name, tmp_path):
    """Each tab's content becomes valid Bokeh models (the Metrics FactorRange error happened here), and
    Grad-CAM works on the segmenter of every method."""
    from workbench.dashboard.app import TABS, Dashboard
    from workbench.dashboard.session import DashboardSession

    s = DashboardSession.open(run=method_runs[name], store=tmp_path / "s.sqlite")
    d = Dashboard(s)
    build(d)
    for view, _ in TABS.values():
        build(pn.Column(*view(s, d.open_image)))
    predicted = int(np.bincount(s.prediction().ravel()).argmax())
    cam = s.cam(cls=predicted)
    if isinstance(cam, str):  # an untrained model may hold no positive evidence: said, not raised
        assert "no positive evidence" in cam, cam
    else:
        assert cam.shape == s.size() and cam.max() == pytest.approx(1)
    absent = next((c for c in range(len(s.classes)) if not (s.prediction() == c).any()), None)
    if absent is not None:
        assert "predicts this class nowhere" in s.cam(cls=absent)
    s.close()


@pytest.mark.parametrize("name, full", [("simformer", False), ("supervised", False), ("partial_ce", True)])
def test_full_retrain_is_offered_only_where_it_can_run(method_runs, name, full, tmp_path):
    """Issue 26 item 9: a weak-shot run offered *full* and refused it late, in the status line."""
    from workbench.dashboard.app import Dashboard
    from workbench.dashboard.session import DashboardSession

    s = DashboardSession.open(run=method_runs[name], store=tmp_path / "s.sqlite")
    d = Dashboard(s)
    modes = next(w for w in d.sidebar.select(pn.widgets.RadioButtonGroup) if "quick" in w.options)
    assert ("full" in modes.options) == full and modes.disabled != full and s.train_mode == "quick"
    if not full:
        assert "not from points, scribbles or boxes" in modes.description
    s.close()


def test_run_a_b_selection_updates_the_comparison(method_runs, tmp_path):
    from workbench.dashboard.app import Dashboard
    from workbench.dashboard.session import DashboardSession

    s = DashboardSession.open(run=method_runs["partial_ce"], store=tmp_path / "s.sqlite")
    d = Dashboard(s)
    page(d)
    *_, (run_a, run_b), comparison = open_tab(d, "Metrics")
    run_a.value, run_b.value = "cam", "spml"
    shown = comparison.object()  # the comparison bound to the two selectors
    assert shown.object.label == "" and "cam vs spml" in shown.object.opts["title"]
    run_b.value = "transfer"
    assert "cam vs transfer" in comparison.object().object.opts["title"]
    s.close()


def test_a_symlink_out_of_the_runs_root_is_not_listed(method_runs, tmp_path):
    import shutil

    from workbench.dashboard.app import metrics_view
    from workbench.dashboard.session import DashboardSession

    root = tmp_path / "runs"
    shutil.copytree(method_runs["partial_ce"], root / "mine")
    (root / "elsewhere").symlink_to(method_runs["cam"], target_is_directory=True)
    s = DashboardSession.open(run=root / "mine", store=tmp_path / "s.sqlite")
    assert s.runs() == [(root / "mine").resolve()]
    objects = metrics_view(s, lambda index: None)  # a whole Metrics tab, not one warning
    assert not any(isinstance(o, pn.pane.Alert) for o in objects)
    s.close()


def test_status_line_follows_next_and_previous(dashboard):
    d = dashboard
    d.session.add_point(3, 3)
    assert "1 points" in d.status.object
    d.keys._handle_msg({"key": "n"})
    assert d.session.image_name in d.status.object and "0 points" in d.status.object


def test_a_closed_session_says_so_instead_of_failing(synthetic_root, tmp_path):
    """Notebook 05 used to close its session in the last cell; clicks then raised sqlite3.ProgrammingError."""
    from workbench.dashboard.app import Dashboard
    from workbench.dashboard.session import DashboardSession

    s = DashboardSession.open(data=synthetic_root, store=tmp_path / "c.sqlite")
    d = Dashboard(s)
    s.close()
    h, _ = s.size()
    d.canvas.point_draw.event(data={"x": [3.5], "y": [h - 2.5]})
    d.keys._handle_msg({"key": "z"})
    d.retrain_btn.clicks += 1
    assert "session was closed" in s.message and "session was closed" in d.status.object


def test_versions_are_listed_and_one_can_be_made_current_from_the_sidebar(dashboard):
    d, s = dashboard, dashboard.session
    page(d)
    s.add_point(3, 3)
    s.retrain("quick")
    s.wait(timeout=120)  # the page's poll: the new version is listed, current or not
    assert list(d.version_picker.options.values()) == [0, 1]
    d.version_picker.value = 1
    d.use_btn.clicks += 1
    assert s.model_version == 1 and "current" in [k for k, v in d.version_picker.options.items() if v == 1][0]
    d.version_picker.value = 0
    d.use_btn.clicks += 1
    assert s.model_version == 0 and "v0 (opened)" not in d.version_picker.options
    table = next(o for o in open_tab(d, "Metrics") if isinstance(o, pn.widgets.Tabulator))
    assert list(table.value["version"]) == [0, 1] and list(table.value["current"]) == [True, False]


def test_runs_of_other_datasets_splits_or_classes_are_compared_with_a_warning():
    """Issue 26 item 12: run A vs run B compared runs of different datasets without a word."""

    def run(name: str, dataset: str, classes: list[str], split: str = "val") -> dict:
        config = {"dataset": {"name": dataset, "classes": classes}, "train_config": {"val_split": split}}
        return {"name": name, "config": config, "summary": None, "records": []}

    camvid, other = run("a", "camvid", ["sky", "road"]), run("b", "camvid", ["sky", "road"])
    assert views.comparison_mismatch(camvid, other) == ""
    assert "other classes" in views.comparison_mismatch(camvid, run("m", "msrc21", ["grass", "cow", "tree"]))
    assert "on camvid" in views.comparison_mismatch(camvid, run("c", "camvid-copy", ["sky", "road"]))
    assert "scored on val" in views.comparison_mismatch(camvid, run("t", "camvid", ["sky", "road"], "tune"))
    assert views.comparison_mismatch({"name": "x", "config": None}, camvid) == ""  # an old run: nothing to say

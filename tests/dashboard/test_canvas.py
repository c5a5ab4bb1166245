"""The annotation feel of the dashboard (napari's labels layer, Label Studio), checked on the data the
views send to the browser: class names in every hover, outlines that show over any overlay, class
buttons with swatch and digit, the ``?`` help, the eraser, uploads that say what is wrong."""

from __future__ import annotations

import base64
import io
import re
import string

import numpy as np
import pytest

hv = pytest.importorskip("holoviews")
pn = pytest.importorskip("panel")

from bokeh.models import CustomJSHover, HoverTool  # noqa: E402

from workbench.labels.weak_labels import Point, Scribble  # noqa: E402
from workbench.viz import views  # noqa: E402

hv.extension("bokeh")

HEX = re.compile(r"#[0-9a-fA-F]{6}")


@pytest.fixture
def dashboard(synthetic_root, tmp_path):
    from workbench.dashboard.app import Dashboard
    from workbench.dashboard.retrainer import QuickConfig
    from workbench.dashboard.session import DashboardSession

    session = DashboardSession.open(
        data=synthetic_root, store=tmp_path / "a.sqlite", out=tmp_path / "out", quick=QuickConfig(steps=2)
    )
    yield Dashboard(session)
    session.close()


def hover_tools(plot) -> list[HoverTool]:
    return [t for t in plot.state.tools if isinstance(t, HoverTool)]


def renderer_data(plot) -> list[dict]:
    return [r.data_source.data for r in plot.state.renderers if hasattr(r, "data_source")]


# ----------------------------------------------------------------------------- hover: names, never indices


def test_canvas_hovers_name_classes_not_indices_or_colours(dashboard):
    s, canvas = dashboard.session, dashboard.canvas
    s.active_class = 2
    s.add_point(3, 4)
    s.add_scribble([(10, 2), (10, 12)], cls=1)
    plot = hv.renderer("bokeh").get_plot(canvas.plot)
    tooltips = [tip for tool in hover_tools(plot) for tip in tool.tooltips]
    assert tooltips, "the canvas has no hover"
    fields = " ".join(field for _, field in tooltips)
    assert "@{class}" in fields and "@image{custom}" in fields
    for banned in ("@color", "@{color}", "@cls", "@{cls}", "@id", "@{id}", "@x", "@y"):
        assert banned not in fields, tooltips
    points = next(d for d in renderer_data(plot) if "class" in d and "id" in d)
    assert list(points["class"]) == [s.classes[2]]  # the name the point's hover shows
    formatters = [f for tool in hover_tools(plot) for f in tool.formatters.values()]
    names = next(f.args["names"] for f in formatters if isinstance(f, CustomJSHover) and "names" in f.args)
    assert set(names.values()) >= set(s.classes) and not any(HEX.search(str(v)) for v in names.values())


def test_hover_values_pack_overlay_and_drawn_class():
    overlay = np.array([[0, 1], [2, 255]], np.uint8)
    drawn = np.array([[254, 2], [254, 0]], np.uint8)
    values = views.hover_values(overlay, drawn)
    assert values.dtype == np.uint16
    stride = views.HOVER_CLASS_STRIDE
    assert [(v // stride, v % stride) for v in values.ravel()] == [(0, 254), (1, 2), (2, 254), (255, 0)]
    none = views.hover_values(None, drawn)
    assert (none // stride == views.NO_CLASS).all()
    layer = hv.render(views.class_hover_layer(values, ("sky", "grass", "car")))
    (tool,) = [t for t in layer.tools if isinstance(t, HoverTool)]
    assert tool.tooltips == [("class", "@image{custom}")]
    formatter = tool.formatters["@image"]
    assert formatter.args["names"]["2"] == "car" and "254" not in formatter.args["names"]  # unlabelled: no name


# ----------------------------------------------------------------------------- outlines over any overlay


def luminance(rgb) -> float:
    r, g, b = (np.asarray(rgb, float) / 255).T
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_annotation_outline_shows_over_any_overlay_colour():
    colors = np.array([[0, 0, 0], [255, 255, 255], [128, 128, 128], [0, 128, 0]], np.uint8)
    mask = np.full((12, 12), 254, np.uint8)
    mask[4:8, 3:9] = 3
    rgba = views.annotation_rgba(mask, colors)
    ring = views.outline(mask != 254)
    assert ring.sum() > 0 and not (ring & (mask != 254)).any()
    assert (rgba[ring, 3] == 255).all() and (rgba[mask == 3, 3] == views.ANNOTATION_ALPHA).all()
    assert (rgba[mask == 3, :3] == colors[3]).all()
    assert (rgba[~ring & (mask == 254), 3] == 0).all()  # nothing drawn away from the annotation
    for background in [*colors, (255, 0, 0), (0, 0, 255)]:  # every overlay colour, black and white included
        contrast = np.abs(luminance(rgba[ring, :3]) - luminance(background))
        assert contrast.max() >= 0.5, f"the outline vanishes over {background}"


def test_points_have_a_light_outline_inside_a_dark_halo(dashboard):
    dashboard.session.add_point(5, 5)
    plot = hv.renderer("bokeh").get_plot(dashboard.canvas.plot)
    glyphs = {tuple(sorted(r.data_source.data)): r.glyph for r in plot.state.renderers if hasattr(r, "glyph")}
    point = next(g for keys, g in glyphs.items() if "class" in keys)
    halo = next(g for keys, g in glyphs.items() if keys == ("x", "y"))
    assert point.line_color == "white" and point.line_width >= 1.5
    assert halo.fill_color == "black" and halo.size > point.size
    renderers = [r for r in plot.state.renderers if hasattr(r, "glyph")]
    assert renderers.index(next(r for r in renderers if r.glyph is halo)) < renderers.index(
        next(r for r in renderers if r.glyph is point)
    ), "the halo must be drawn under the points"


# ----------------------------------------------------------------------------- class buttons, help


def test_class_buttons_show_digit_swatch_and_base_or_novel():
    colors = np.array([[10, 20, 30], [200, 0, 0], [0, 0, 255]], np.uint8)
    labels = views.class_button_labels(("sky", "grass", "car"), novel=(2,))
    assert labels == {"1 sky · base": 0, "2 grass · base": 1, "3 car · novel": 2}
    assert views.class_button_labels(("sky", "grass")) == {"1 sky": 0, "2 grass": 1}
    css = views.class_button_css(colors, novel=(2,))
    assert ".bk-btn:nth-child(2)::before { background: #c80000; }" in css
    assert ".bk-btn:nth-child(3) { font-style: italic; }" in css and "nth-child(2) { font-style" not in css


def test_class_buttons_and_digits_stay_in_step(dashboard):
    d = dashboard
    assert list(d.class_picker.options)[1].startswith("2 ")
    d.keys._handle_msg({"key": "3"})
    assert d.session.active_class == 2 and d.class_picker.value == 2
    d.class_picker.value = 0
    assert d.session.active_class == 0


def test_help_lists_exactly_the_keys_the_dashboard_answers(dashboard):
    from workbench.dashboard.canvas import shortcuts

    d = dashboard
    listed = set()
    for keys, _ in shortcuts(len(d.session.classes)):
        if "…" in keys:  # "1 … 8" or "1 … 9, 0"
            first, last = keys.split(",")[0].split("…")
            listed |= {str(i) for i in range(int(first), int(last) + 1)} | ({"0"} if ", 0" in keys else set())
        else:
            listed |= {ch for ch in keys if not ch.isspace()}
    assert listed >= {"1", str(len(d.session.classes))} and str(len(d.session.classes) + 1) not in listed
    answered = set()
    for key in string.ascii_letters + string.digits + string.punctuation:
        s = d.session
        s.active_class = 1 if key == "1" else 0
        before = (s.index, s.active_class, s.brush_width, s.message, d.tool, d.help.visible)
        d.keys._handle_msg({"key": key})
        if before != (s.index, s.active_class, s.brush_width, s.message, d.tool, d.help.visible):
            answered.add(key)
        d.help.visible, d.tool, s.message = False, "point", ""
    assert answered - listed == set(), f"keys that work but the help does not list: {answered - listed}"
    assert listed - answered == set(), f"keys the help lists that do nothing: {listed - answered}"
    assert not d.help.visible
    d.keys._handle_msg({"key": "?"})
    assert d.help.visible and "undo" in d.help.object
    d.keys._handle_msg({"key": "?"})
    assert not d.help.visible


# ----------------------------------------------------------------------------- eraser


def test_touched_items_follow_the_geometry():
    items = {
        1: Point(5.0, 5.0, 0),
        2: Point(5.0, 20.0, 0),
        3: Scribble(((0.0, 10.0), (30.0, 10.0)), 1, 3.0),  # a vertical line crossed between its vertices
        4: Scribble(((25.0, 25.0), (28.0, 28.0)), 1, 1.0),
    }
    stroke = [(5.0, 0.0), (5.0, 12.0)]  # a horizontal eraser stroke along row 5, cols 0..12
    assert views.touched_items(items, stroke, radius=1.0) == [1, 3]
    assert views.touched_items(items, [(15.0, 19.0)], radius=1.0) == []  # a dab away from everything
    assert views.touched_items(items, [(15.0, 12.0)], radius=1.0) == [3]  # within the scribble's half-width
    assert views.touched_items(items, [], radius=1.0) == []


def test_eraser_removes_what_it_touches_and_undo_brings_it_back(dashboard):
    d, s = dashboard, dashboard.session
    h, _ = s.size()
    keep = s.add_point(2, 25)
    s.add_point(10, 5)
    s.add_scribble([(20, 3), (20, 28)], cls=1)
    d.keys._handle_msg({"key": "e"})
    assert d.tool == "eraser" and d.canvas.tool == "eraser"
    s.brush_width = 2
    d.canvas._on_stroke({"xs": [[5.5, 5.5]], "ys": [[h - 5.5, h - 25.5]]})  # down column 5, rows 5..25
    assert set(s.items()) == {keep} and "removed 2" in s.message
    assert s.undo()  # one stroke, one edit: a single z brings both back
    assert keep in s.items() and len(s.items()) == 3
    assert sorted(type(i).__name__ for i in s.items().values()) == ["Point", "Point", "Scribble"]
    d.keys._handle_msg({"key": "e"})  # back to the tool before the eraser: strokes draw again
    assert d.tool == "point"
    d.tool = "scribble"
    d.canvas._on_stroke({"xs": [[2.5, 8.5]], "ys": [[h - 1.5, h - 1.5]]})
    assert len(s.items()) == 4


def test_an_eraser_stroke_is_one_edit_when_other_tabs_edit_the_image_too(dashboard):
    """With two tabs on one image, undo takes back this tab's own latest edit: the whole stroke."""
    s = dashboard.session
    other = s.new_tab()
    theirs = other.add_point(30, 30)
    mine = [s.add_point(10, 5), s.add_point(12, 5)]
    dashboard.canvas.erase([(8.0, 5.0), (14.0, 5.0)])
    assert set(s.items()) == {theirs}
    assert s.undo()
    assert len(s.items()) == 3 and theirs in s.items()
    assert s.redo() and set(s.items()) == {theirs}
    assert s.undo() and s.undo()  # the stroke, then my second point
    assert len(s.items()) == 2 and len(mine) == 2


# ----------------------------------------------------------------------------- uploads


def test_upload_messages_name_the_file_and_the_problem(dashboard):
    from PIL import Image

    d = dashboard
    image_input = d._image_input
    image_input._handle_msg({"name": "notes.txt", "data": base64.b64encode(b"not an image").decode()})
    alert = d._upload_view[1]
    assert isinstance(alert, pn.pane.Alert) and "notes.txt" in alert.object and "BytesIO" not in alert.object
    image_input._handle_msg({"refused": "huge.png", "size": 50 * 2**20})  # the browser's size check
    assert "huge.png is 50.0 MiB, over the 6.0 MiB limit" in d._upload_view[1].object
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buffer, format="PNG")
    image_input._handle_msg({"name": "ok.png", "data": base64.b64encode(buffer.getvalue()).decode()})
    assert isinstance(d._upload_view[1], pn.Row)

    labels_input = d.sidebar.select(type(image_input))[0]
    for fmt, data in [("weakseg", b"\xff\xfe"), ("coco", b"{}"), ("labelstudio", b"not json"), ("cvat", b"[]")]:
        d.label_format.value = fmt
        labels_input._handle_msg({"name": "mine.json", "data": base64.b64encode(data).decode()})
        text = d.import_note.object
        assert text.startswith("upload refused: mine.json: ") and d.import_note.alert_type == "danger", text
        assert "/tmp" not in text and "BytesIO" not in text and "<_io" not in text, text
    labels_input._handle_msg({"refused": "big.json", "size": 7_000_000})
    assert "big.json is 6.7 MiB, over the" in d.import_note.object
    labels_input._handle_msg({"name": "x.json", "data": "%%% not base64"})
    assert "x.json could not be read" in d.import_note.object


def test_reimporting_an_export_adds_nothing(dashboard, tmp_path):
    d, s = dashboard, dashboard.session
    s.add_point(3, 3)
    s.add_scribble([(5, 5), (5, 15)], cls=1)
    s.step(1)
    s.add_point(4, 4, cls=2)
    labels_input = d.sidebar.select(type(d._image_input))[0]
    for fmt in ("weakseg", "labelstudio", "cvat", "coco"):
        d.label_format.value = fmt
        data = s.export_labels(fmt, tmp_path / f"export.{fmt}").read_bytes()
        before = {name: len(s.store.items(name)) for name in s.store.images()}
        labels_input._handle_msg({"name": f"export.{fmt}", "data": base64.b64encode(data).decode()})
        assert {name: len(s.store.items(name)) for name in s.store.images()} == before, fmt
        assert "nothing new" in d.import_note.object, d.import_note.object


# ----------------------------------------------------------------------------- per-class charts


def test_every_per_class_chart_marks_novel_classes():
    classes, novel = ("sky", "grass", "car"), (2,)
    summary = {"miou": 0.5, "per_class_iou": {"sky": 0.9, "grass": 0.5, "car": 0.1}, "novel_classes": ["car"]}
    bars = views.iou_bars(summary)
    assert [row[0] for row in bars.data.values] == ["sky", "grass", "car (novel)"]
    heat = views.confusion_heatmap(np.eye(3) * 5, classes, novel)
    assert "car (novel)" in set(heat.data["prediction"]) and "sky (novel)" not in set(heat.data["prediction"])
    runs = [{"name": n, "summary": summary} for n in ("a", "b")]
    compare = views.compare_runs(*runs)
    assert "car (novel)" in set(compare.data["class"])
    assert views.legend_html(classes, np.eye(3, dtype=np.uint8) * 255, novel=novel).count("(novel)") == 1
    from workbench.viz.plots import page_problems

    for chart in (bars.opts(title="model v3 on val: mIoU 0.50 | base 0.70 novel 0.10 harmonic 0.17"), heat, compare):
        assert page_problems(chart) == [], chart


@pytest.fixture(scope="module")
def weakshot_run(module_dir, synthetic_root):
    from workbench.methods import simformer
    from workbench.train.config import TrainConfig
    from workbench.train.loop import train

    out = module_dir / "simformer"
    config = TrainConfig(data=str(synthetic_root), out=str(out), epochs=1, batch_size=4, novel="ring,cross")
    train(simformer, simformer.Config(), config)
    return out


def test_every_tab_of_a_weakshot_run_marks_novel_classes_and_clips_no_title(weakshot_run, tmp_path):
    """The figures the tabs show, as a user sees them: titles fit their plots, nothing draws empty,
    and every per-class chart names the novel classes as novel."""
    from workbench.dashboard.app import TABS, Dashboard, metrics_view
    from workbench.dashboard.session import DashboardSession
    from workbench.viz.plots import page_problems

    s = DashboardSession.open(run=weakshot_run, store=tmp_path / "s.sqlite")
    try:
        d = Dashboard(s)
        novel = [s.classes[c] for c in s.novel]
        assert sorted(novel) == ["cross", "ring"]
        assert [label for label in d.class_picker.options if "novel" in label] == ["7 ring · novel", "8 cross · novel"]
        assert "ring (novel)" in d.legend.object
        problems = []
        for title in ("Where to click", "Affinity", "CAM vs pseudo-mask", "Proposals", "Metrics"):
            for pane in pn.Column(*TABS[title][0](s, d.open_image)).select(pn.pane.HoloViews):
                problems += [f"{title}: {p}" for p in page_problems(pane.object)]
        assert problems == [], problems
        metrics = pn.Column(*metrics_view(s, d.open_image))
        bars, heat = (p.object for p in metrics.select(pn.pane.HoloViews)[:2])
        assert {f"{n} (novel)" for n in novel} <= set(bars.data["class"]) and "sky (novel)" not in set(
            bars.data["class"]
        )
        assert {f"{n} (novel)" for n in novel} <= set(heat.data["prediction"])
    finally:
        s.close()


def test_every_class_of_a_21_class_dataset_has_a_key_and_the_help_lists_them():
    """Issue 26 item 11: CamVid's 11th class and MSRC-21's 11th..21st had no key; help said "1 ... 9, 0"."""
    from workbench.dashboard.canvas import shortcuts
    from workbench.viz import views

    keys = [views.class_key(c) for c in range(21)]
    assert len(set(keys)) == 21 and "" not in keys and not set(keys) & set("zZnpe?[]")
    assert [views.class_of_key(k) for k in keys] == list(range(21))
    listed = dict(shortcuts(21))
    assert listed["1 … 9, 0"].startswith("pick class 1 … 10")
    assert listed[" ".join(keys[10:])] == "pick class 11 … 21"
    assert [k for k, _ in shortcuts(8)][0] == "1 … 8" and len(shortcuts(8)) == len(shortcuts(10))

"""Label Studio, CVAT and COCO: round trips, and the tools' own (hand-written) sample files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from workbench.annotations import interchange
from workbench.annotations.interchange import (
    InterchangeError,
    export_labels,
    import_labels,
    ls_rle_decode,
    ls_rle_encode,
)
from workbench.annotations.store import AnnotationStore
from workbench.cli import main
from workbench.data.folder import list_split, load_dataset_info
from workbench.labels.weak_labels import (
    IGNORE,
    UNLABELED,
    Box,
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    rasterize,
)

SAMPLES = Path(__file__).parent / "samples" / "interchange"
CLASSES = ("sky", "road", "car")


def example_set() -> WeakLabelSet:
    first = WeakLabels(
        20, 30, frozenset({0, 1, 2}),
        points=(Point(3, 4, 1), Point(10.25, 7.5, 2, radius=2.0), Point(0, 29, 0)),
        scribbles=(Scribble(((2, 3), (10, 12.5), (15, 20)), 0, 3.0), Scribble(((19, 0), (19, 29)), 1, 1.0)),
        boxes=(Box(1, 2, 8, 9.5, 2), Box(0, 0, 20, 30, 1)),
    )  # fmt: skip
    tags_only = WeakLabels(12, 16, frozenset({2}))
    return WeakLabelSet(CLASSES, {"0001": first, "0002": tags_only})


def example_masks() -> dict[str, np.ndarray]:
    mask = np.full((20, 30), UNLABELED, np.uint8)
    mask[5:10, 5:20] = 1
    mask[0, 0] = 0
    mask[12:, 25:] = 2
    mask[19, 29] = IGNORE
    return {"0001": mask}


@pytest.mark.parametrize("fmt", interchange.FORMATS)
def test_export_then_import_gives_the_same_labels(tmp_path, fmt):
    weak_set = example_set()
    masks = example_masks() if fmt != "cvat" else None
    path = export_labels(tmp_path / f"labels.{fmt}", fmt, weak_set, masks)
    got, got_masks = import_labels(path, fmt, CLASSES)
    assert got.classes == CLASSES
    assert got.labels == weak_set.labels
    if masks:
        expected = np.where(masks["0001"] == IGNORE, UNLABELED, masks["0001"])  # the tools know one "no class"
        assert got_masks.keys() == {"0001"} and np.array_equal(got_masks["0001"], expected)


@pytest.mark.parametrize("fmt", ["cvat", "coco"])
def test_cvat_and_coco_files_carry_their_classes(tmp_path, fmt):
    path = export_labels(tmp_path / "labels", fmt, example_set())
    got, _ = import_labels(path, fmt)
    assert got.classes == CLASSES and got.labels == example_set().labels


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1)
)  # fmt: skip
def test_brush_rle_round_trips_any_region(height, width, density, seed):
    region = np.random.default_rng(seed).random((height, width)) < density
    assert np.array_equal(ls_rle_decode(ls_rle_encode(region), height, width), region)


def test_brush_rle_splits_runs_longer_than_its_longest_field():
    region = np.zeros((300, 300), bool)  # 360000 equal bytes: longer than one 16-bit run
    region[150:, 299] = True
    assert np.array_equal(ls_rle_decode(ls_rle_encode(region), 300, 300), region)


def literal_rle(region: np.ndarray) -> list[int]:
    """Label Studio's RLE written with literal runs only (rle-pack's other mode; the encoder never writes it)."""
    values = [v for on in region.ravel() for v in ((0, 0, 0, 255) if on else (0, 0, 0, 0))]
    bits = f"{len(values):032b}{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    for i in range(0, len(values), 8):
        chunk = values[i : i + 8]
        bits += f"000{len(chunk) - 1:03b}" + "".join(f"{v:08b}" for v in chunk)
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def test_label_studio_sample_export():
    """A task as Label Studio exports it (docs: labelstud.io/guide/task_format), uploaded as HASH-street_01.png."""
    got, masks = import_labels(SAMPLES / "labelstudio_export.json", "labelstudio", CLASSES)
    assert list(got.labels) == ["street_01"] and not masks  # the unlabelled task adds nothing
    weak = got.labels["street_01"]
    assert (weak.height, weak.width) == (6, 8) and weak.tags == {0, 1, 2}
    assert weak.points == (Point(1.0, 2.0, 0),)  # x 31.25 % of 8 px is the centre of column 2
    assert weak.boxes == (Box(3.0, 4.0, 6.0, 6.0, 2),)
    stroke = np.zeros((6, 8), bool)
    stroke[4, :4] = True
    (result,) = [r for r in json.loads((SAMPLES / "labelstudio_export.json").read_text())[0]["annotations"][0]["result"]
                 if r["type"] == "brushlabels"]  # fmt: skip
    assert result["value"]["rle"] == literal_rle(stroke)  # the sample's brush holds exactly this stroke
    (scribble,) = weak.scribbles  # a painted stroke becomes a scribble along it
    assert scribble.cls == 1 and np.array_equal(rasterize(weak.only(["scribbles"])) == 1, stroke)


def test_a_thick_painted_stroke_becomes_a_scribble_that_covers_it():
    stroke = np.zeros((40, 60), bool)
    stroke[18:23, 5:55] = True  # 5 px wide
    scribbles, points = interchange.strokes_to_scribbles(stroke, 1)
    assert len(scribbles) == 1 and not points
    drawn = rasterize(WeakLabels(40, 60, frozenset({1}), scribbles=tuple(scribbles))) == 1
    overlap = (drawn & stroke).sum()
    assert overlap / stroke.sum() > 0.85 and overlap / drawn.sum() > 0.85


def test_cvat_sample_file():
    """CVAT for images 1.1 (docs: docs.cvat.ai, 'CVAT for images' XML): points, polyline with width, box, tags."""
    got, masks = import_labels(SAMPLES / "cvat_for_images_1_1.xml", "cvat")
    assert got.classes == ("sky", "road", "car") and not masks
    first, second = got.labels["street_01"], got.labels["street_02"]
    assert (first.height, first.width) == (30, 40) and first.tags == {0, 1, 2}
    assert first.points == (Point(2.0, 10.0, 0), Point(3.0, 20.0, 0))  # "10.50,2.50": centre of pixel (2, 10)
    assert first.scribbles == (Scribble(((25.0, 0.0), (24.0, 15.0), (26.5, 39.0)), 1, 5.0),)
    assert first.boxes == (Box(14.0, 12.0, 21.0, 22.5, 2),)
    assert second.tags == {2} and second.num_clicks() == 0


def test_coco_sample_file():
    """COCO (docs: cocodataset.org/#format-data): keypoints, a bbox, uncompressed RLE and a polygon."""
    got, masks = import_labels(SAMPLES / "coco_instances.json", "coco")
    assert got.classes == ("sky", "road", "car")
    assert got.labels["street_01"].points == (Point(0.0, 3.0, 0),)
    assert got.labels["street_01"].boxes == (Box(2.0, 1.0, 4.0, 3.0, 2),)
    mask = masks["train2017/street_02".rsplit("/", 1)[-1]]
    assert mask[3].tolist() == [1] * 5 and mask[0].tolist() == [0] * 5  # RLE row of road, polygon row of sky
    assert (mask[1:3] == UNLABELED).all()


def test_coco_classes_are_matched_by_name_whatever_their_ids_and_order():
    """Issue 25: the right class names under other ids were refused as "classes differ"."""
    got, masks = import_labels(SAMPLES / "coco_instances.json", "coco", ("road", "car", "sky"))
    assert got.classes == ("road", "car", "sky")
    assert got.labels["street_01"].points == (Point(0.0, 3.0, 2),)  # sky: id 1 in the file, 2 here
    assert got.labels["street_01"].boxes == (Box(2.0, 1.0, 4.0, 3.0, 1),)  # car
    assert masks["street_02"][3].tolist() == [0] * 5 and masks["street_02"][0].tolist() == [2] * 5


def test_label_studio_needs_the_classes_and_known_label_names(tmp_path):
    with pytest.raises(InterchangeError, match="--data"):
        import_labels(SAMPLES / "labelstudio_export.json", "labelstudio")
    with pytest.raises(InterchangeError, match="'car' is not a class"):
        import_labels(SAMPLES / "labelstudio_export.json", "labelstudio", ("sky", "road", "bus"))


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(InterchangeError, match="unknown format 'voc'"):
        import_labels(SAMPLES / "coco_instances.json", "voc")
    with pytest.raises(InterchangeError, match="label 'car' is not a class of the dataset"):
        import_labels(SAMPLES / "coco_instances.json", "coco", ("road", "sky", "bus"))
    bad = tmp_path / "old.xml"
    bad.write_text("<annotations><version>1.0</version></annotations>")
    with pytest.raises(InterchangeError, match="CVAT for images 1.1"):
        import_labels(bad, "cvat")
    off = (SAMPLES / "cvat_for_images_1_1.xml").read_text().replace("10.50,2.50", "99.50,2.50")
    (tmp_path / "off.xml").write_text(off)
    with pytest.raises(WeakLabelError, match="street_01.*point 0.*off the 30x40 image"):
        import_labels(tmp_path / "off.xml", "cvat")
    with pytest.raises(InterchangeError, match="not masks"):
        export_labels(tmp_path / "x.xml", "cvat", example_set(), example_masks())
    with pytest.raises(InterchangeError, match="values \\[7\\]"):
        export_labels(tmp_path / "x.json", "coco", example_set(), {"0001": np.full((20, 30), 7, np.uint8)})


@pytest.mark.parametrize("fmt", interchange.FORMATS)
def test_cli_exports_a_store_and_imports_it_into_a_new_one(synthetic_root, tmp_path, fmt):
    info = load_dataset_info(synthetic_root)
    names = list_split(info, "train")[:2]
    with AnnotationStore(tmp_path / "a.sqlite", info.classes) as store:
        store.add(names[0], Point(3, 4, 1), size=(32, 32))
        store.add(names[0], Scribble(((1, 1), (20, 25)), 2, 3.0), size=(32, 32))
        store.add(names[1], Box(2, 3, 10, 12, 0), size=(32, 32))
        store.set_tags(names[1], [3], size=(32, 32))
        before = store.to_weak_label_set()
    out = tmp_path / f"export.{fmt}"
    common = ["--data", str(synthetic_root)]
    assert main(["annotations", "export", "--store", str(tmp_path / "a.sqlite"), "--split", "train",
                 "--format", fmt, "--out", str(out), *common]) == 0  # fmt: skip
    assert main(["annotations", "import", "--store", str(tmp_path / "b.sqlite"), "--format", fmt,
                 "--file", str(out), *common]) == 0  # fmt: skip
    with AnnotationStore(tmp_path / "b.sqlite", info.classes) as store:
        assert store.to_weak_label_set() == before
    if fmt == "labelstudio":  # with the labelling interface whose controls the file names
        config = ET.parse(out.with_suffix(".labelconfig.xml")).getroot()
        controls = {e.get("name"): e.tag for e in config if e.tag != "Image"}
        assert controls == {"points": "KeyPointLabels", "scribbles": "BrushLabels", "boxes": "RectangleLabels",
                            "mask": "BrushLabels", "tags": "Choices"}  # fmt: skip
        assert [e.get("value") for e in config.find("KeyPointLabels")] == list(info.classes)


def test_cli_import_writes_the_masks_a_file_carries(synthetic_root, tmp_path, capsys):
    info = load_dataset_info(synthetic_root)
    name = list_split(info, "train")[0]
    mask = np.full((32, 32), UNLABELED, np.uint8)
    mask[:8] = 1
    weak = WeakLabelSet(info.classes, {name: WeakLabels(32, 32, frozenset({1}), points=(Point(2, 2, 1),))})
    export_labels(tmp_path / "l.json", "coco", weak, {name: mask})
    args = ["annotations", "import", "--store", str(tmp_path / "s.sqlite"), "--format", "coco",
            "--file", str(tmp_path / "l.json"), "--data", str(synthetic_root)]  # fmt: skip
    assert main(args) == 0 and "--masks DIR" in capsys.readouterr().out
    assert main([*args, "--masks", str(tmp_path / "masks")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "masks" / f"{name}.png")), mask)
    assert main(["annotations", "import", "--store", str(tmp_path / "s.sqlite"), "--format", "cvat",
                 "--file", str(tmp_path / "l.json"), "--data", str(synthetic_root)]) == 2  # fmt: skip

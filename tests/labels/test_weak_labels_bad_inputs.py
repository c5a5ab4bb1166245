"""Bad inputs of workbench.labels.weak_labels: geometry off the image, bad classes, weak-label JSON
that is fractional, infinite or nested too deeply, and weak labels made for another dataset."""

from __future__ import annotations

import pytest

from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import DatasetError, list_split, load_dataset_info
from workbench.labels.weak_labels import (
    Box,
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    check_on_image,
    from_json_dict,
    load_weak_labels,
    parse_json_text,
    rasterize,
    save_weak_labels,
)


@pytest.mark.parametrize(
    "weak, message",
    [
        (WeakLabels(10, 10, points=(Point(3, 12, 1),)), r"point 0 at \(row=3, col=12\) is off the 10x10 image"),
        (WeakLabels(10, 10, points=(Point(-2, 1, 1),)), "is off the 10x10 image; pixel centres run 0..9"),
        (WeakLabels(10, 10, points=(Point(1, 1, 9),)), "point 0 has class 9, outside 0..2; use a class index"),
        (WeakLabels(10, 10, points=(Point(1, 1, 1, -1.0),)), "point 0 radius must be >= 0"),
        (
            WeakLabels(10, 10, scribbles=(Scribble(((1, 1),), 1),)),
            "scribble 0 has 1 vertex; a scribble needs at least 2",
        ),
        (WeakLabels(10, 10, scribbles=(Scribble((), 1),)), "scribble 0 has 0 vertex"),
        (WeakLabels(10, 10, scribbles=(Scribble(((1, 1), (float("nan"), 2)), 1),)), "non-finite vertex"),
        (WeakLabels(10, 10, scribbles=(Scribble(((1, 1), (2, 2)), 1, 0.0),)), "scribble 0 width must be > 0"),
        (WeakLabels(10, 10, boxes=(Box(5, 5, 5, 8, 1),)), r"box 0 \(5,5\)-\(5,8\) is empty; row1>row0"),
        (WeakLabels(0, 10), "image size must be positive"),
    ],
)
def test_bad_weak_labels_are_named(weak, message):
    with pytest.raises(WeakLabelError, match=message):
        weak.validate(3)


def test_a_zero_length_scribble_with_two_equal_vertices_is_a_dot_of_its_width():
    weak = WeakLabels(10, 10, scribbles=(Scribble(((4, 4), (4, 4)), 1, 3.0),)).validate(3)
    label = rasterize(weak)
    assert label[4, 4] == 1 and (label == 1).sum() == 9  # the pixel centres within 1.5 px


def test_weak_labels_for_other_classes_or_sizes_are_refused(dataset, tmp_path):
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[0]
    with pytest.raises(DatasetError, match="weak labels are for classes.*simulate or export them for this dataset"):
        SegmentationDataset(info, "train", "points", weak_labels=WeakLabelSet(("a", "b"), {}))
    wrong_size = WeakLabelSet(info.classes, {name: WeakLabels(16, 16, points=(Point(1, 1, 0),))})
    ds = SegmentationDataset(info, "train", "points", weak_labels=wrong_size, limit=1)
    with pytest.raises(DatasetError, match=f"weak labels of '{name}' are for a 16x16 image, the image is 32x32"):
        ds[0]


@pytest.mark.parametrize(
    "record, message",
    [
        ({"height": 32, "width": 32, "points": [[3, 3, 3.7]]}, r"point 0 class must be a whole number, got 3\.7"),
        ({"height": 64.9, "width": 32}, r"height must be a whole number, got 64\.9"),
        ({"height": 32, "width": 32, "tags": [1.5]}, "tag must be a whole number"),
        ({"height": 32, "width": 32, "boxes": [[0, 0, 5, 5, True]]}, "box 0 class must be a whole number"),
        ({"height": 32, "width": 32, "scribbles": [{"path": [[0, 0], [1, 1]], "cls": 0.5}]}, "scribble 0 class"),
    ],
)
def test_fractional_classes_and_sizes_are_refused_not_truncated(record, message):
    with pytest.raises(WeakLabelError, match=message):
        from_json_dict(record)


def test_infinity_box_coordinates_are_refused(tmp_path):
    path = tmp_path / "weak.json"
    path.write_text(
        '{"format": "weakseg-weak-labels/1", "classes": ["a", "b"], '
        '"images": {"x": {"height": 8, "width": 8, "boxes": [[0, 0, Infinity, 4, 1]]}}}'
    )
    with pytest.raises(WeakLabelError, match="box 0 has a non-finite coordinate"):
        load_weak_labels(path)


def test_deeply_nested_json_is_a_weak_label_error(tmp_path):
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(WeakLabelError, match="nested too deeply"):
        parse_json_text(text, "upload")
    (tmp_path / "deep.json").write_text(text)
    with pytest.raises(WeakLabelError, match="nested too deeply"):
        load_weak_labels(tmp_path / "deep.json")


@pytest.mark.parametrize(
    "weak, message",
    [
        (WeakLabels(10, 10, scribbles=(Scribble(((1, 20), (4, 30)), 1),)), r"scribble 0 lies wholly off the 10x10"),
        (
            WeakLabels(10, 10, boxes=(Box(2, 12, 8, 40, 1),)),
            r"box 0 \(2.0,12.0\)-\(8.0,40.0\) lies wholly off the 10x10",
        ),
    ],
)
def test_a_scribble_or_box_wholly_off_the_image_is_refused_where_labels_come_in(weak, message, tmp_path):
    """Issue 25: accepted by train and import before, labelling no pixel. One that reaches past an edge stays."""
    path = tmp_path / "labels.json"
    save_weak_labels(path, WeakLabelSet(("a", "b", "c"), {"im": weak}))
    with pytest.raises(WeakLabelError, match=message):
        load_weak_labels(path)
    across = WeakLabels(10, 10, scribbles=(Scribble(((1, 5), (4, 30)), 1),), boxes=(Box(2, 5, 8, 40, 1),))
    assert check_on_image(across) is across and rasterize(across)[1, 5] == 1

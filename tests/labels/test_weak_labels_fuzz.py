"""Fuzzing the weak-label JSON import, rasterisation and geometry with hypothesis.

``WEAKSEG_FUZZ_SCALE=20 pytest tests/labels/test_weak_labels_fuzz.py`` runs twenty times the examples.

The import must turn any JSON-like input into weak labels or a :class:`WeakLabelError`, never
another exception; rasterisation must give an ``(H, W)`` uint8 map of classes and ``UNLABELED``
for any valid labels, cropped or not; flips and resizes must undo.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.labels.weak_labels import (
    JSON_FORMAT,
    UNLABELED,
    Box,
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    from_json_dict,
    load_weak_labels,
    rasterize,
)

NUM_CLASSES = 5
SCALE = int(os.environ.get("WEAKSEG_FUZZ_SCALE", "1"))  # e.g. 20 for a long fuzzing run
JSON_EXAMPLES = 300 * SCALE
FILE_EXAMPLES = 100 * SCALE
RASTER_EXAMPLES = 150 * SCALE
GEOMETRY_EXAMPLES = 100 * SCALE


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- JSON-like input

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
numbers_or_junk = st.integers(-5, 50) | st.floats(allow_nan=True, allow_infinity=True) | json_like
record_like = st.fixed_dictionaries(  # mostly the right keys, so the parser gets past the first line
    {},
    optional={
        "height": numbers_or_junk,
        "width": numbers_or_junk,
        "tags": st.lists(numbers_or_junk, max_size=3) | json_like,
        "points": st.lists(st.lists(numbers_or_junk, max_size=5), max_size=3) | json_like,
        "scribbles": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "path": st.lists(st.lists(numbers_or_junk, max_size=3), max_size=4) | json_like,
                    "cls": numbers_or_junk,
                    "width": numbers_or_junk,
                },
            ),
            max_size=3,
        )
        | json_like,
        "boxes": st.lists(st.lists(numbers_or_junk, max_size=6), max_size=3) | json_like,
    },
)


@fuzz(JSON_EXAMPLES)
@given(record_like | json_like)
def test_json_record_import_raises_only_weak_label_errors(record):
    try:
        weak = from_json_dict(record)
        weak.validate(NUM_CLASSES)
    except WeakLabelError as err:
        assert str(err)
    else:
        assert isinstance(weak, WeakLabels)


documents = st.fixed_dictionaries(
    {
        "format": st.just(JSON_FORMAT) | json_like,
        "images": st.dictionaries(st.text(max_size=5), record_like, max_size=3),
    },
    optional={"classes": st.lists(st.text(max_size=3), max_size=6) | json_like},
)
_FUZZ_DIR = Path(tempfile.mkdtemp(prefix="weakseg-fuzz-"))


@fuzz(FILE_EXAMPLES)
@given(documents | json_like, st.booleans())
def test_weak_label_file_import_raises_only_weak_label_errors(doc, as_bytes):
    path = _FUZZ_DIR / "labels.json"
    if as_bytes:  # not even text: a truncated or binary file
        path.write_bytes(json.dumps(doc).encode()[: len(json.dumps(doc)) // 2] + b"\xff\xfe")
    else:
        path.write_text(json.dumps(doc))
    try:
        weak_set = load_weak_labels(path)
    except WeakLabelError as err:
        assert str(path) in str(err)  # every message names the file
    else:
        assert all(isinstance(c, str) for c in weak_set.classes)


def test_a_folder_or_missing_file_is_a_weak_label_error(tmp_path):
    for path in (tmp_path, tmp_path / "missing.json"):
        try:
            load_weak_labels(path)
        except WeakLabelError as err:
            assert str(path) in str(err)
        else:
            raise AssertionError(f"{path} was read as weak labels")


# ----------------------------------------------------------------------------- valid weak labels


@st.composite
def weak_labels(draw, integer: bool = False, inside: bool = False) -> WeakLabels:
    """Valid labels. By default points lie anywhere on the image, scribble vertices anywhere (far off
    the canvas too) and boxes reach past it; ``inside`` keeps everything on the image, ``integer``
    puts it on whole pixels."""
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    cls = st.integers(0, NUM_CLASSES - 1)

    def coord(lo: float, hi: float, exclude_max: bool = False):
        if integer:
            return st.integers(int(lo), int(hi) - exclude_max).map(float)
        return st.floats(lo, hi, exclude_max=exclude_max)

    def span(n: int):  # a non-empty [start, stop) range for a box side
        lo, hi = (0, n) if inside or integer else (-n, 2 * n)
        return st.tuples(coord(lo, hi), coord(lo, hi)).filter(lambda t: t[0] != t[1]).map(sorted)

    if inside or integer:
        vertex = st.tuples(coord(0, h, exclude_max=True), coord(0, w, exclude_max=True))
    else:
        far = st.floats(-1e6, 1e6)
        vertex = st.tuples(st.floats(-2 * h, 3 * h) | far, st.floats(-2 * w, 3 * w) | far)
    radius = st.integers(0, 6).map(float) if integer else st.floats(0, 6)
    if integer:
        points = st.builds(Point, coord(0, h, exclude_max=True), coord(0, w, exclude_max=True), cls, radius)
    else:  # the pixel-centre convention: pixel 0 spans -0.5..0.5
        row, col = st.floats(-0.5, h - 0.5, exclude_max=True), st.floats(-0.5, w - 0.5, exclude_max=True)
        points = st.builds(Point, row, col, cls, radius)
    scribbles = st.builds(Scribble, st.lists(vertex, min_size=2, max_size=6).map(tuple), cls, st.floats(0.1, 12))
    boxes = st.builds(lambda r, c, k: Box(r[0], c[0], r[1], c[1], k), span(h), span(w), cls)
    weak = WeakLabels(
        h,
        w,
        frozenset(draw(st.lists(cls, max_size=3))),
        tuple(draw(st.lists(points, max_size=4))),
        tuple(draw(st.lists(scribbles, max_size=3))),
        tuple(draw(st.lists(boxes, max_size=3))),
    )
    return weak.validate(NUM_CLASSES)


def _check_label_map(label: np.ndarray, height: int, width: int) -> None:
    assert label.shape == (height, width) and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) <= set(range(NUM_CLASSES)) | {UNLABELED}


def _covers(p: Point, r: int, c: int) -> bool:
    """Whether point ``p`` labels pixel ``(r, c)``: its nearest pixel, or the pixels of its disk."""
    pr, pc = round(p.row), round(p.col)
    return (pr, pc) == (r, c) if p.radius < 0.5 else (r - pr) ** 2 + (c - pc) ** 2 <= p.radius**2


@fuzz(RASTER_EXAMPLES)
@given(weak_labels())
def test_rasterize_gives_a_class_map_and_keeps_every_point(weak):
    label = rasterize(weak)
    _check_label_map(label, weak.height, weak.width)
    for p in weak.points:  # points are drawn last, in order: the last one covering a pixel owns it
        r, c = round(p.row), round(p.col)
        owner = [q for q in weak.points if _covers(q, r, c)][-1]
        assert label[r, c] == owner.cls, f"point {p} was not drawn at pixel ({r}, {c})"


@fuzz(RASTER_EXAMPLES)
@given(weak_labels(), st.integers(-40, 40), st.integers(-40, 40), st.integers(1, 40), st.integers(1, 40))
def test_rasterize_after_any_crop(weak, top, left, height, width):
    cropped = weak.cropped(top, left, height, width)
    _check_label_map(rasterize(cropped), height, width)


# ----------------------------------------------------------------------------- geometry round trips


def _close(a: WeakLabels, b: WeakLabels, tol: float = 1e-6) -> bool:
    def flat(weak):
        values = [v for p in weak.points for v in (p.row, p.col, p.radius, p.cls)]
        values += [v for s in weak.scribbles for vertex in s.path for v in vertex] + [s.width for s in weak.scribbles]
        values += [v for b in weak.boxes for v in (b.row0, b.col0, b.row1, b.col1, b.cls)]
        return np.array(values, dtype=np.float64)

    same_shape = (a.height, a.width, a.tags) == (b.height, b.width, b.tags)
    return same_shape and np.allclose(flat(a), flat(b), rtol=0, atol=tol)


@fuzz(GEOMETRY_EXAMPLES)
@given(weak_labels())
def test_flipping_twice_is_the_identity(weak):
    assert _close(weak.flipped().flipped(), weak)


@fuzz(GEOMETRY_EXAMPLES)
@given(weak_labels(integer=True, inside=True))
def test_rasterizing_a_flip_is_flipping_the_raster(weak):
    np.testing.assert_array_equal(rasterize(weak.flipped()), rasterize(weak)[:, ::-1])


@fuzz(GEOMETRY_EXAMPLES)
@given(weak_labels(inside=True), st.integers(1, 80), st.integers(1, 80))
def test_resizing_there_and_back_is_the_identity(weak, height, width):
    """Positions come back; radii and widths follow the mean scale, which anisotropic resizes do not undo."""
    back = weak.resized(height, width).resized(weak.height, weak.width)

    def positions(w: WeakLabels) -> WeakLabels:
        points = tuple(Point(p.row, p.col, p.cls) for p in w.points)
        scribbles = tuple(Scribble(s.path, s.cls, 1.0) for s in w.scribbles)
        return WeakLabels(w.height, w.width, w.tags, points, scribbles, w.boxes)

    assert _close(positions(back), positions(weak))


@fuzz(GEOMETRY_EXAMPLES)
@given(weak_labels(inside=True))
def test_cropping_to_the_whole_image_is_the_identity(weak):
    assert weak.cropped(0, 0, weak.height, weak.width) == weak

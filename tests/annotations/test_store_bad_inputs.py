"""Bad inputs of workbench.annotations.store: what the dashboard may send the store, each refused
without changing it, and files that are not a store."""

from __future__ import annotations

import pytest

from workbench.annotations.store import AnnotationError, AnnotationStore
from workbench.labels.weak_labels import (
    Box,
    Point,
    Scribble,
    WeakLabelError,
)

SIZE = (16, 20)


@pytest.fixture
def store(tmp_path):
    with AnnotationStore(tmp_path / "a.sqlite", ("sky", "grass", "disc")) as s:
        s.add("im", Point(1, 1, 0), SIZE)
        yield s


@pytest.mark.parametrize(
    "item, message",
    [
        (Point(1, 1, 99), r"class 99 is not a class index 0..2"),
        (Point(1, 1, -1), r"class -1 is not a class index"),
        (Point(1, 1, 1.5), r"class 1.5 is not a class index"),
        (Point(1, 1, True), r"class True is not a class index"),
        (Point(1, 1, "1"), r"class '1' is not a class index"),
        (Point(40, 1, 0), r"point 0 at \(row=40.0, col=1.0\) is off the 16x20 image"),
        (Point(1, -3, 0), r"off the 16x20 image"),
        (Point("12", 1, 0), r"point row must be a number, got str '12'"),
        (Point(float("nan"), 1, 0), r"point row must be finite"),
        (Point(1, float("inf"), 0), r"point col must be finite"),
        (Point(1, 1, 0, -2.0), r"radius must be >= 0"),
        (Scribble(((1, 1),), 0), r"scribble 0 has 1 vertex"),
        (Scribble((), 0), r"scribble 0 has 0 vertex"),
        (Scribble("abc", 0), r"scribble path must be a list of \(row, col\) pairs"),
        (Scribble(((1, 1), (2, 2)), 0, 0.0), r"scribble 0 width must be > 0"),
        (Scribble(((1, 1), (2, None)), 0), r"scribble col must be a number"),
        (Box(5, 5, 2, 8, 0), r"box 0 .* is empty"),
        (Box(0, 0, 30, 8, 0), r"reaches off the 16x20 image"),
        ({"row": 1, "col": 1, "cls": 0}, r"expected a Point, Scribble or Box, got dict"),
        (None, r"expected a Point, Scribble or Box, got NoneType"),
    ],
    ids=str,
)
def test_bad_items_from_the_dashboard_are_refused_and_change_nothing(store, item, message):
    before = store.history("im"), store.items("im")
    with pytest.raises(WeakLabelError, match=message):
        store.add("im", item, SIZE)
    item_id = next(iter(store.items("im")))
    with pytest.raises(WeakLabelError, match=message):
        store.replace("im", item_id, item)
    assert (store.history("im"), store.items("im")) == before


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.add("", Point(1, 1, 0), SIZE), "image name must be a non-empty string"),
        (lambda s: s.add(None, Point(1, 1, 0), SIZE), "image name must be a non-empty string"),
        (lambda s: s.add(5, Point(1, 1, 0), SIZE), "image name must be a non-empty string"),
        (lambda s: s.add("new", Point(1, 1, 0), (0, 10)), r"size must be \(height, width\) of positive ints"),
        (lambda s: s.add("new", Point(1, 1, 0), ("16", 20)), r"size must be \(height, width\)"),
        (lambda s: s.add("new", Point(1, 1, 0), (16.5, 20)), r"size must be \(height, width\)"),
        (lambda s: s.add("new", Point(1, 1, 0), None), r"size must be \(height, width\)"),
        (lambda s: s.add("im", Point(1, 1, 0), (32, 32)), "was annotated at 16x20, this edit says 32x32"),
        (lambda s: s.replace("im", 999, Point(1, 1, 0)), "has no item 999"),
        (lambda s: s.replace("im", "1", Point(1, 1, 0)), "has no item '1'"),
        (lambda s: s.remove("im", 999), "has no item 999"),
        (lambda s: s.remove("other", 1), "'other' has no item 1"),
        (lambda s: s.replace("other", 1, Point(1, 1, 0)), "'other' has no annotations yet"),
        (lambda s: s.set_tags("im", [0, 7], SIZE), "tag: class 7 is not a class index"),
        (lambda s: s.set_tags("im", "01", SIZE), "tags must be a list of class indices"),
        (lambda s: s.weak_labels("never-annotated"), "'never-annotated' has no annotations"),
        (lambda s: s.undo(["im"]), "image name must be a non-empty string"),
    ],
    ids=[
        "empty name",
        "None name",
        "int name",
        "zero size",
        "str size",
        "float size",
        "no size",
        "other size",
        "replace unknown id",
        "replace str id",
        "remove unknown id",
        "remove item of other image",
        "replace on unknown image",
        "tag out of range",
        "tags as string",
        "labels of unknown image",
        "undo list name",
    ],  # fmt: skip
)
def test_bad_calls_from_the_dashboard_are_refused_and_change_nothing(store, call, message):
    before = store.history("im"), store.items("im"), store.images()
    with pytest.raises(WeakLabelError, match=message):
        call(store)
    assert (store.history("im"), store.items("im"), store.images()) == before


def test_a_file_that_is_not_a_store_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"these are my notes, not a database" * 50)
    before = path.read_bytes()
    with pytest.raises(AnnotationError, match="not a readable annotation store.*a new file name"):
        AnnotationStore(path, ("a",))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]


@pytest.mark.parametrize("classes", [[], "sky", [1, 2], ["a", ""]])
def test_a_store_needs_class_names(tmp_path, classes):
    with pytest.raises(AnnotationError, match="classes must be a non-empty list of class names"):
        AnnotationStore(tmp_path / "a.sqlite", classes)


@pytest.mark.parametrize("sqlite_says", ["attempt to write a readonly database", "database or disk is full"])
def test_a_read_only_folder_or_full_disk_is_not_blamed_on_the_store(sqlite_says, tmp_path, monkeypatch):
    """Issue 25: both were reported as "not a workbench store", sending the user after a good file."""
    import sqlite3

    def refuse(self):
        raise sqlite3.OperationalError(sqlite_says)

    monkeypatch.setattr(AnnotationStore, "_open", refuse)
    with pytest.raises(AnnotationError, match="cannot write the annotation store there") as info:
        AnnotationStore(tmp_path / "s.sqlite", ["a", "b"])
    assert "not a readable" not in str(info.value)


def test_a_file_that_is_no_store_is_still_called_so(tmp_path):
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AnnotationError, match="not a readable annotation store"):
        AnnotationStore(tmp_path / "garbage.sqlite", ["a", "b"])

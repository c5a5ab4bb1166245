"""The SQLite annotation store: edits, undo/redo across restarts, migrations, concurrency, export."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from workbench.annotations import store as annotations
from workbench.annotations.store import AnnotationError, AnnotationStore, export_png
from workbench.cli import main
from workbench.data.folder import list_split, load_dataset_info, read_mask
from workbench.labels.weak_labels import (
    Box,
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    load_weak_labels,
    rasterize,
    save_weak_labels,
    simulate,
)

CLASSES = ("sky", "grass", "disc")
SIZE = (16, 20)


@pytest.fixture
def store(tmp_path):
    with AnnotationStore(tmp_path / "a.sqlite", CLASSES) as s:
        yield s


def test_add_replace_remove_and_current_state(store):
    p = store.add("im", Point(3, 4, 1), SIZE)
    s = store.add("im", Scribble(((1, 1), (5, 9)), 2, width=2), SIZE)
    b = store.add("im", Box(0, 0, 4, 4, 0), SIZE)
    store.replace("im", p, Point(6, 7, 1, radius=2))
    store.remove("im", b)
    assert store.items("im") == {p: Point(6.0, 7.0, 1, 2.0), s: Scribble(((1.0, 1.0), (5.0, 9.0)), 2, 2.0)}
    weak = store.weak_labels("im")
    assert (weak.height, weak.width) == SIZE
    assert weak.tags == {1, 2}  # classes of the items left; the removed box's class is gone
    assert weak.points == (Point(6.0, 7.0, 1, 2.0),) and len(weak.scribbles) == 1 and weak.boxes == ()
    assert [h["op"] for h in store.history("im")] == ["add", "add", "add", "replace", "remove"]
    assert store.images() == ["im"] and store.items("never-seen") == {}


def test_explicit_tags_add_to_derived_ones_and_undo(store):
    store.add("im", Point(1, 1, 0), SIZE)
    store.set_tags("im", [2], SIZE)
    assert store.weak_labels("im").tags == {0, 2}
    store.set_tags("im", [2], SIZE)  # no change: no edit
    assert [h["op"] for h in store.history("im")] == ["add", "tags"]
    assert store.undo("im")
    assert store.weak_labels("im").tags == {0}
    store.set_tags("fresh", [], SIZE)  # nothing to set: not an edit, not an annotated image
    assert store.images() == ["im"]


def test_undo_redo_is_stroke_level_and_a_new_edit_clears_redo(store):
    a = store.add("im", Point(1, 1, 0), SIZE)
    b = store.add("im", Scribble(((2, 2), (3, 9), (8, 9)), 1), SIZE)
    assert store.undo("im") and set(store.items("im")) == {a}  # the whole stroke goes at once
    assert store.undo("im") and store.items("im") == {}
    assert not store.undo("im")
    assert store.redo("im") and set(store.items("im")) == {a}
    c = store.add("im", Point(5, 5, 2), SIZE)  # b can no longer come back
    assert not store.redo("im")
    assert set(store.items("im")) == {a, c}
    assert store.undo("im") and store.undo("im") and store.items("im") == {}
    assert store.redo("im") and store.redo("im") and set(store.items("im")) == {a, c}
    states = {h["items"][0]: h["state"] for h in store.history("im")}
    assert states == {a: "done", b: "discarded", c: "done"}
    assert b not in store.items("im")


def test_undo_is_per_image(store):
    store.add("one", Point(1, 1, 0), SIZE)
    store.add("two", Point(1, 1, 1), SIZE)
    assert store.undo("one")
    assert store.items("one") == {} and len(store.items("two")) == 1


def test_history_and_undo_survive_a_restart(tmp_path):
    path = tmp_path / "a.sqlite"
    with AnnotationStore(path, CLASSES) as s:
        a = s.add("im", Point(1, 1, 0), SIZE)
        s.replace("im", a, Point(2, 2, 0))
        s.undo("im")
        before = s.history("im")
    with AnnotationStore(path, CLASSES) as s:  # a server restart
        assert s.history("im") == before
        assert [h["undone"] for h in before] == [False, True]
        assert s.items("im") == {a: Point(1.0, 1.0, 0, 0.0)}
        assert s.redo("im") and s.items("im") == {a: Point(2.0, 2.0, 0, 0.0)}
        assert s.undo("im") and s.undo("im") and s.items("im") == {}


def test_store_files_are_in_wal_mode_with_a_schema_version(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(len(annotations.MIGRATIONS),)]
    db.close()


def test_migrations_run_in_order_on_open(tmp_path, monkeypatch):
    path = tmp_path / "a.sqlite"
    with AnnotationStore(path, CLASSES) as s:
        item = s.add("im", Point(1, 1, 0), SIZE)

    def add_author(db):
        db.execute("ALTER TABLE edits ADD COLUMN author TEXT")

    monkeypatch.setattr(annotations, "MIGRATIONS", [*annotations.MIGRATIONS, add_author])
    with AnnotationStore(path, CLASSES) as s:
        assert s.items("im") == {item: Point(1.0, 1.0, 0, 0.0)}  # old data kept
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 2
    assert "author" in [r[1] for r in db.execute("PRAGMA table_info(edits)")]
    db.close()


def test_a_store_from_a_newer_workbench_is_refused(tmp_path):
    path = tmp_path / "a.sqlite"
    AnnotationStore(path, CLASSES).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(AnnotationError, match="schema version 99.*update the workbench"):
        AnnotationStore(path, CLASSES)


def test_other_classes_are_refused(tmp_path):
    AnnotationStore(tmp_path / "a.sqlite", CLASSES).close()
    with pytest.raises(AnnotationError, match=r"classes \['sky', 'grass', 'disc'\] differ"):
        AnnotationStore(tmp_path / "a.sqlite", ("sky", "grass"))


def test_import_is_one_transaction_and_one_undo_per_image(store, synthetic_root):
    info = load_dataset_info(synthetic_root)
    names = list_split(info, "train")[:3]
    labels = {
        n: simulate(read_mask(info.mask_path("train", n), info), ["points", "scribbles"], key=n, num_classes=8)
        for n in names
    }
    with AnnotationStore(store.path.with_name("syn.sqlite"), info.classes) as s:
        assert s.import_weak_label_set(WeakLabelSet(info.classes, labels)) == 3
        assert s.to_weak_label_set().labels == labels  # lossless
        assert s.undo(names[0])
        assert s.weak_labels(names[0]) == WeakLabels(32, 32)
        assert s.weak_labels(names[1]) == labels[names[1]]
        bad = dict(labels, zzz=WeakLabels(32, 32, points=(Point(99, 1, 0),)))
        with pytest.raises(WeakLabelError, match="zzz"):
            s.import_weak_label_set(WeakLabelSet(info.classes, bad))
        assert "zzz" not in s.images()


def test_readers_see_whole_edits_while_another_connection_writes(tmp_path):
    """A training thread reading its own connection while the UI writes: no errors, no torn state."""
    path = tmp_path / "a.sqlite"
    writer, reader = AnnotationStore(path, CLASSES), AnnotationStore(path, CLASSES)
    errors, seen = [], []

    def write():
        try:
            for i in range(60):
                writer.import_weak_label_set(  # two points per edit: a reader must never see one of them
                    WeakLabelSet(CLASSES, {"im": WeakLabels(*SIZE, points=(Point(i % 16, 0, 0), Point(i % 16, 1, 1)))})
                )
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=write)
    thread.start()
    while thread.is_alive():
        try:
            labels = reader.to_weak_label_set().labels
        except Exception as err:  # noqa: BLE001
            errors.append(err)
            break
        seen.append(len(labels["im"].points) if "im" in labels else 0)
    thread.join()
    writer.close(), reader.close()
    assert not errors
    assert all(n % 2 == 0 for n in seen), "a reader saw half an edit"
    assert seen == sorted(seen)
    assert len(set(seen)) >= 3, "the reader never ran while the writer did"
    assert len(AnnotationStore(path, CLASSES).items("im")) == 120


def test_one_store_shared_between_threads(store):
    def work(image):
        for i in range(20):
            store.add(image, Point(i % 16, 0, 0), SIZE)
            store.weak_labels(image)

    threads = [threading.Thread(target=work, args=(f"im{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [len(store.items(f"im{k}")) for k in range(3)] == [20, 20, 20]


# ----------------------------------------------------------------------------- export and the CLI


def _annotated_store(path, info, names):
    store = AnnotationStore(path, info.classes)
    for name in names:
        store.add(name, Point(3, 4, 1), (32, 32))
        store.add(name, Scribble(((10, 2), (10, 20)), 2, width=3), (32, 32))
    store.add("not_in_this_split", Point(0, 0, 0), (8, 8))
    return store


def test_a_closed_store_says_so_and_names_its_file(tmp_path):
    path = tmp_path / "c.sqlite"
    s = AnnotationStore(path, CLASSES)
    s.add("im", Point(1, 1, 0), SIZE)
    s.close()
    for call in (lambda: s.items("im"), lambda: s.add("im", Point(2, 2, 0), SIZE)):
        with pytest.raises(AnnotationError, match=r"c\.sqlite.*closed"):  # not sqlite3.ProgrammingError
            call()
    with AnnotationStore(path, CLASSES) as again:  # nothing was lost
        assert list(again.items("im").values()) == [Point(1, 1, 0)]


def test_export_png_writes_index_masks_equal_to_the_rasterized_labels(tmp_path, synthetic_root):
    info = load_dataset_info(synthetic_root)
    names = list_split(info, "train")[:2]
    with _annotated_store(tmp_path / "a.sqlite", info, names) as store:
        written = export_png(store, info, "train", tmp_path / "masks")
        assert [p.stem for p in written] == names
        for path in written:
            with Image.open(path) as img:
                assert img.mode == "P"
                mask = np.asarray(img)
            np.testing.assert_array_equal(mask, rasterize(store.weak_labels(path.stem)))
            assert set(np.unique(mask)) == {1, 2, 254}


def test_export_checks_every_image_before_writing_any(tmp_path, synthetic_root):
    info = load_dataset_info(synthetic_root)
    names = list_split(info, "train")[:3]
    with _annotated_store(tmp_path / "a.sqlite", info, names[:2]) as store:
        store.add(names[2], Point(1, 1, 0), (16, 16))  # annotated at another size
        with pytest.raises(AnnotationError, match=f"{names[2]}.*32x32.*16x16"):
            export_png(store, info, "train", tmp_path / "masks")
    assert not (tmp_path / "masks").exists()


def test_cli_import_then_export(tmp_path, synthetic_root, capsys):
    info = load_dataset_info(synthetic_root)
    names = list_split(info, "train")[:4]
    labels = {n: simulate(read_mask(info.mask_path("train", n), info), ["points"], key=n, num_classes=8) for n in names}
    save_weak_labels(tmp_path / "sim.json", WeakLabelSet(info.classes, labels))
    store = tmp_path / "store" / "a.sqlite"
    assert main(["annotations", "import", "--store", str(store), "--json", str(tmp_path / "sim.json"),
                 "--data", str(synthetic_root)]) == 0  # fmt: skip
    out = tmp_path / "export"
    args = ["annotations", "export", "--store", str(store), "--data", str(synthetic_root), "--split", "train"]
    assert main([*args, "--out", str(out / "masks"), "--json", str(out / "labels.json")]) == 0
    assert "4 masks" in capsys.readouterr().out
    assert load_weak_labels(out / "labels.json").labels == labels
    for n in names:
        np.testing.assert_array_equal(np.asarray(Image.open(out / "masks" / f"{n}.png")), rasterize(labels[n]))


def test_cli_export_of_a_missing_store_is_an_error_not_a_new_file(tmp_path, synthetic_root, capsys):
    store = tmp_path / "nope.sqlite"
    args = ["annotations", "export", "--store", str(store), "--data", str(synthetic_root), "--out", str(tmp_path)]
    assert main(args) == 2
    assert "no annotation store" in capsys.readouterr().err
    assert not store.exists()

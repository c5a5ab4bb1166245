"""The SQLite annotation store of the dashboard and the CLI: every edit kept, nothing lost.

One file holds the weak labels people draw, one row per edit::

    schema_version   the schema's version; :data:`MIGRATIONS` upgrade older files on open
    meta             the class names the indices refer to
    images           name, height, width and explicitly set tags of each annotated image
    items            the current points, scribbles and boxes (``data`` NULL once removed)
    edits            one row per edit: op, the items and tags it changed (before/after), time, state

Undo and redo are rows too (an edit's ``state`` goes ``done`` -> ``undone`` -> ``done``; a new
edit turns the redo stack ``discarded``), so they survive a browser reload and a server
restart. The file runs in WAL mode: a training thread or another process reads a consistent
snapshot while the dashboard writes, and every edit is one transaction with ``synchronous=FULL``,
so an edit that returned is on disk even if the process is killed the next instant.

Open it from a notebook or the dashboard::

    with AnnotationStore("runs/demo/annotations.sqlite", info.classes) as store:
        item = store.add("0001", Point(12, 30, cls=2), size=(64, 64))
        store.undo("0001")
        train_labels = store.to_weak_label_set()  # -> save_weak_labels / TrainConfig.weak_labels
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from workbench.data.folder import DatasetInfo, image_size, list_split, read_image
from workbench.io import save_index_png
from workbench.labels.weak_labels import (
    Box,
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    check_on_image,
    rasterize,
)

Item = Point | Scribble | Box
STORE_FILE = "annotations.sqlite"  # the usual name under a run or data directory
BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another writer before giving up
MAX_NAME_CHARS = 1024


DISK_REFUSALS = ("readonly", "read-only", "unable to open", "disk i/o", "disk is full", "or disk is full")


def is_disk_refusal(err: sqlite3.Error) -> bool:
    """SQLite's word for a folder it may not write or a full disk (not for a file that is no store)."""
    return isinstance(err, sqlite3.OperationalError) and any(k in str(err).lower() for k in DISK_REFUSALS)


class AnnotationError(WeakLabelError):
    """A store that cannot be opened or an edit that cannot be made (the message says how to fix it)."""


# ----------------------------------------------------------------------------- schema and migrations


def _create_v1(db: sqlite3.Connection) -> None:
    _execute_script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE images (
            name TEXT PRIMARY KEY,
            height INTEGER NOT NULL CHECK (height > 0),
            width INTEGER NOT NULL CHECK (width > 0),
            tags TEXT NOT NULL DEFAULT '[]'
        );
        CREATE TABLE items (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image TEXT NOT NULL REFERENCES images(name),
            data TEXT
        );
        CREATE INDEX items_by_image ON items(image);
        CREATE TABLE edits (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image TEXT NOT NULL REFERENCES images(name),
            op TEXT NOT NULL,
            changes TEXT NOT NULL,
            time REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'done' CHECK (state IN ('done', 'undone', 'discarded'))
        );
        CREATE INDEX edits_by_image ON edits(image, state, id);
        """,
    )


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the open transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


# MIGRATIONS[i] upgrades a file from version i to i + 1 (version 0 is an empty file). Append a
# function to change the schema; never edit one that has shipped.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_create_v1]


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to ``len(MIGRATIONS)`` in one transaction (a crash leaves the old version)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row else 0
    if version > len(MIGRATIONS):
        raise AnnotationError(
            f"{path}: annotation store has schema version {version}, this workbench reads up to "
            f"{len(MIGRATIONS)}; update the workbench (pip install -U) to open it"
        )
    for upgrade in MIGRATIONS[version:]:
        upgrade(db)
    if row is None:
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))
    else:
        db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))


# ----------------------------------------------------------------------------- items <-> JSON


def _encode(item: Item) -> str:
    if isinstance(item, Point):
        return json.dumps({"point": [item.row, item.col, item.cls, item.radius]})
    if isinstance(item, Scribble):
        return json.dumps({"scribble": {"path": [list(v) for v in item.path], "cls": item.cls, "width": item.width}})
    return json.dumps({"box": [item.row0, item.col0, item.row1, item.col1, item.cls]})


def _decode(data: str) -> Item:
    (kind, value), *_ = json.loads(data).items()
    if kind == "point":
        return Point(*value)
    if kind == "scribble":
        return Scribble(tuple((r, c) for r, c in value["path"]), value["cls"], value["width"])
    return Box(*value)


# ----------------------------------------------------------------------------- checks of what callers send


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise AnnotationError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise AnnotationError(f"{what} must be finite, got {value!r}")
    return float(value)


def _class_index(value, num_classes: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < num_classes:
        raise AnnotationError(
            f"{what}: class {value!r} is not a class index 0..{num_classes - 1}; pick a class of the dataset"
        )
    return int(value)


def _check_name(image) -> str:
    if not isinstance(image, str) or not image or len(image) > MAX_NAME_CHARS or "\0" in image:
        raise AnnotationError(
            f"image name must be a non-empty string of at most {MAX_NAME_CHARS} characters, got {image!r}"
        )
    return image


def _check_size(size, image: str) -> tuple[int, int]:
    ok = isinstance(size, (tuple, list)) and len(size) == 2
    ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
    if not ok:
        raise AnnotationError(f"image {image!r}: size must be (height, width) of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def _check_box_on_image(box: Box, size: tuple[int, int], where: str) -> None:
    if box.row0 < 0 or box.col0 < 0 or box.row1 > size[0] or box.col1 > size[1]:
        raise AnnotationError(
            f"{where} ({box.row0},{box.col0})-({box.row1},{box.col1}) reaches off the {size[0]}x{size[1]} image; "
            f"keep 0<=row<={size[0]}, 0<=col<={size[1]}"
        )


def _check_item(item, size: tuple[int, int], num_classes: int, image: str, validated: bool = False) -> Item:
    """A clean copy of ``item`` (plain floats and ints) or :class:`AnnotationError` naming the bad field.

    ``validated``: the caller has validated the image's labels of this ``size`` as a whole (an import),
    so the item is not validated again on its own (that doubled the time of a large import)."""
    where = f"image {image!r}"
    if isinstance(item, Point):
        item = Point(
            _number(item.row, f"{where}: point row"),
            _number(item.col, f"{where}: point col"),
            _class_index(item.cls, num_classes, f"{where}: point"),
            _number(item.radius, f"{where}: point radius"),
        )
    elif isinstance(item, Scribble):
        path = item.path
        if not isinstance(path, (tuple, list)) or not all(isinstance(v, (tuple, list)) and len(v) == 2 for v in path):
            raise AnnotationError(f"{where}: scribble path must be a list of (row, col) pairs, got {path!r}")
        item = Scribble(
            tuple((_number(r, f"{where}: scribble row"), _number(c, f"{where}: scribble col")) for r, c in path),
            _class_index(item.cls, num_classes, f"{where}: scribble"),
            _number(item.width, f"{where}: scribble width"),
        )
    elif isinstance(item, Box):
        row0, col0, row1, col1 = (
            _number(v, f"{where}: box corner") for v in (item.row0, item.col0, item.row1, item.col1)
        )
        item = Box(row0, col0, row1, col1, _class_index(item.cls, num_classes, f"{where}: box"))
        _check_box_on_image(item, size, f"{where}: box")
    else:
        raise AnnotationError(f"{where}: expected a Point, Scribble or Box, got {type(item).__name__}")
    weak = WeakLabels(
        *size,
        points=(item,) if isinstance(item, Point) else (),
        scribbles=(item,) if isinstance(item, Scribble) else (),
        boxes=(item,) if isinstance(item, Box) else (),
    )
    if not validated:
        weak.validate(num_classes, where=where)  # on the image, radius/width/vertex count
    return item


# ----------------------------------------------------------------------------- the store


class AnnotationStore:
    """Weak labels of many images with a per-image undo/redo history, in one SQLite file.

    Safe to share between threads (calls are serialised by a lock) and between processes
    (each opens its own store; SQLite's WAL lets readers run while one process writes).
    Every bad value raises :class:`WeakLabelError` naming it (:class:`AnnotationError`, a subclass,
    for problems of the store itself), so a dashboard catches one exception type.
    """

    def __init__(self, path: str | Path, classes: Sequence[str]) -> None:
        self.path = Path(path)
        if isinstance(classes, str) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise AnnotationError(f"{self.path}: classes must be a non-empty list of class names, got {classes!r}")
        self.classes = tuple(classes)
        self._lock = threading.RLock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )  # isolation_level=None: we open every transaction ourselves
        try:
            self._open()
        except sqlite3.DatabaseError as err:
            self._db.close()
            if is_disk_refusal(err):  # the place, not the file: blaming the store would send the user astray
                raise AnnotationError(
                    f"{self.path}: cannot write the annotation store there ({err}); the file, if there is one, "
                    "was kept as it was: free space, or pass a --store on a writable disk"
                ) from None
            raise AnnotationError(
                f"{self.path}: not a readable annotation store ({err}); pass a store written by the "
                "workbench or a new file name"
            ) from None
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise AnnotationError(
                f"{self.path}: SQLite could not switch to WAL mode (got {mode!r}); keep the store on a local disk"
            )
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged edit survives a crash
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write() as db:
            _migrate(db, self.path)
            row = db.execute("SELECT value FROM meta WHERE key = 'classes'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('classes', ?)", (json.dumps(self.classes),))
            elif tuple(json.loads(row[0])) != self.classes:
                raise AnnotationError(
                    f"{self.path}: the store's classes {json.loads(row[0])} differ from {list(self.classes)}; "
                    "open it with the classes of the dataset it was made for, or start a new store file"
                )

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or (error, crash) none of it."""
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot even while another process writes."""
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # ------------------------------------------------------------------ edits

    def add(self, image: str, item: Item, size: tuple[int, int]) -> int:
        """Add a point, scribble or box to ``image`` of ``size = (height, width)``; return its item id."""
        image = _check_name(image)
        size = _check_size(size, image)
        item = _check_item(item, size, len(self.classes), image)
        with self._write() as db:
            self._ensure_image(db, image, size)
            item_id = db.execute("INSERT INTO items (image, data) VALUES (?, ?)", (image, _encode(item))).lastrowid
            self._record(db, image, "add", [[item_id, None, _encode(item)]])
        assert item_id is not None  # an INSERT always sets lastrowid
        return item_id

    def replace(self, image: str, item_id: int, item: Item) -> None:
        """Move or edit an item (one undoable edit)."""
        image = _check_name(image)
        with self._write() as db:
            size = self._size(db, image)
            item = _check_item(item, size, len(self.classes), image)
            before = self._current(db, image, item_id)
            db.execute("UPDATE items SET data = ? WHERE id = ?", (_encode(item), item_id))
            self._record(db, image, "replace", [[item_id, before, _encode(item)]])

    def remove(self, image: str, item_id: int) -> None:
        self.remove_many(image, [item_id])

    def remove_many(self, image: str, item_ids: Iterable[int]) -> None:
        """Remove items of ``image`` as one undoable edit (an eraser stroke: one undo brings all back)."""
        image = _check_name(image)
        with self._write() as db:
            changes = [[item_id, self._current(db, image, item_id), None] for item_id in dict.fromkeys(item_ids)]
            if not changes:
                return
            db.executemany("UPDATE items SET data = NULL WHERE id = ?", [(c[0],) for c in changes])
            self._record(db, image, "remove", changes)

    def set_tags(self, image: str, tags: Iterable[int], size: tuple[int, int]) -> None:
        """Set the explicit image-level tags (classes of drawn items are tags anyway); undoable."""
        image = _check_name(image)
        size = _check_size(size, image)
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
            raise AnnotationError(f"image {image!r}: tags must be a list of class indices, got {tags!r}")
        after = sorted({_class_index(t, len(self.classes), f"image {image!r}: tag") for t in tags})
        with self._write() as db:
            row = db.execute("SELECT tags FROM images WHERE name = ?", (image,)).fetchone()
            before = json.loads(row[0]) if row else []
            if row is not None or before != after:  # no tags on a new image: no edit, no image row
                self._ensure_image(db, image, size)
            if before != after:
                db.execute("UPDATE images SET tags = ? WHERE name = ?", (json.dumps(after), image))
                self._record(db, image, "tags", [], [before, after])

    def undo(self, image: str) -> bool:
        """Undo the latest edit of ``image`` (a whole stroke, move or import); False when there is none."""
        image = _check_name(image)
        with self._write() as db:
            row = db.execute(
                "SELECT id, changes FROM edits WHERE image = ? AND state = 'done' ORDER BY id DESC LIMIT 1", (image,)
            ).fetchone()
            if row is None:
                return False
            self._apply(db, image, json.loads(row[1]), side=0)
            db.execute("UPDATE edits SET state = 'undone' WHERE id = ?", (row[0],))
        return True

    def redo(self, image: str) -> bool:
        """Redo the edit undone last; False when there is none (a new edit clears the redo stack)."""
        image = _check_name(image)
        with self._write() as db:
            row = db.execute(
                "SELECT id, changes FROM edits WHERE image = ? AND state = 'undone' ORDER BY id LIMIT 1", (image,)
            ).fetchone()
            if row is None:
                return False
            self._apply(db, image, json.loads(row[1]), side=1)
            db.execute("UPDATE edits SET state = 'done' WHERE id = ?", (row[0],))
        return True

    def import_weak_label_set(self, weak_set: WeakLabelSet) -> int:
        """Add every image's labels (e.g. simulated ones) in one transaction; return the number of images.

        Each image's import is one edit, so a single undo takes it back. Explicit tags are merged.
        """
        if weak_set.classes and tuple(weak_set.classes) != self.classes:
            raise AnnotationError(
                f"weak labels are for classes {list(weak_set.classes)}, the store has {list(self.classes)}; "
                "import labels made for this dataset"
            )
        checked = {}
        for name, weak in weak_set.labels.items():
            _check_name(name)
            weak.validate(len(self.classes), where=f"image {name!r}")
            size = _check_size((weak.height, weak.width), name)
            items = [
                _check_item(i, size, len(self.classes), name, validated=True)
                for i in weak.points + weak.scribbles + weak.boxes
            ]
            checked[name] = (size, items, sorted(int(t) for t in weak.tags))
        with self._write() as db:
            for name, (size, items, tags) in sorted(checked.items()):
                self._ensure_image(db, name, size)
                changes = []
                for item in items:
                    data = _encode(item)
                    item_id = db.execute("INSERT INTO items (image, data) VALUES (?, ?)", (name, data)).lastrowid
                    changes.append([item_id, None, data])
                before = json.loads(db.execute("SELECT tags FROM images WHERE name = ?", (name,)).fetchone()[0])
                after = sorted(set(before) | set(tags))
                db.execute("UPDATE images SET tags = ? WHERE name = ?", (json.dumps(after), name))
                self._record(db, name, "import", changes, [before, after])
        return len(checked)

    # ------------------------------------------------------------------ reads

    def items(self, image: str) -> dict[int, Item]:
        """Current items of ``image`` by item id (empty for an image without annotations)."""
        image = _check_name(image)
        with self._read() as db:
            return self._items(db, image)

    def weak_labels(self, image: str) -> WeakLabels:
        """Current labels of ``image``; tags are the explicit ones plus every annotated class."""
        image = _check_name(image)
        with self._read() as db:
            return self._weak_labels(db, image)

    def images(self) -> list[str]:
        """Names of every image that has been edited, sorted."""
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT name FROM images ORDER BY name")]

    def to_weak_label_set(self) -> WeakLabelSet:
        """Everything, from one snapshot: for training or :func:`save_weak_labels`."""
        with self._read() as db:
            names = [r[0] for r in db.execute("SELECT name FROM images ORDER BY name")]
            return WeakLabelSet(self.classes, {name: self._weak_labels(db, name) for name in names})

    def history(self, image: str) -> list[dict]:
        """Edits of ``image``, oldest first: ``id``, ``op``, ``time`` (Unix s), ``undone``, ``state``, ``items``."""
        image = _check_name(image)
        with self._read() as db:
            rows = db.execute("SELECT id, op, time, state, changes FROM edits WHERE image = ? ORDER BY id", (image,))
            return [
                {
                    "id": edit_id,
                    "op": op,
                    "time": t,
                    "undone": state != "done",
                    "state": state,
                    "items": [c[0] for c in json.loads(changes)["items"]],
                }
                for edit_id, op, t, state, changes in rows
            ]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

    def _check_open(self) -> None:
        if self._closed:  # sqlite's own error ("Cannot operate on a closed database") names no file
            raise AnnotationError(
                f"{self.path}: this annotation store was closed; open it again with AnnotationStore(path, classes)"
            )

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers (inside a transaction)

    def _ensure_image(self, db: sqlite3.Connection, image: str, size: tuple[int, int]) -> None:
        row = db.execute("SELECT height, width FROM images WHERE name = ?", (image,)).fetchone()
        if row is None:
            db.execute("INSERT INTO images (name, height, width) VALUES (?, ?, ?)", (image, *size))
        elif tuple(row) != size:
            raise AnnotationError(
                f"image {image!r} was annotated at {row[0]}x{row[1]}, this edit says {size[0]}x{size[1]}; "
                "pass the image's own (height, width)"
            )

    def _size(self, db: sqlite3.Connection, image: str) -> tuple[int, int]:
        row = db.execute("SELECT height, width FROM images WHERE name = ?", (image,)).fetchone()
        if row is None:
            raise AnnotationError(f"image {image!r} has no annotations yet; add one first")
        return row[0], row[1]

    def _current(self, db: sqlite3.Connection, image: str, item_id) -> str:
        row = None
        if isinstance(item_id, (int, np.integer)) and not isinstance(item_id, bool):
            row = db.execute("SELECT data FROM items WHERE id = ? AND image = ?", (int(item_id), image)).fetchone()
        if row is None or row[0] is None:
            raise AnnotationError(
                f"image {image!r} has no item {item_id!r}; use an id from items({image!r}) (it may have been removed)"
            )
        return row[0]

    def _record(self, db: sqlite3.Connection, image: str, op: str, items: list, tags: list | None = None) -> None:
        """Store one edit and drop the redo stack, as every editor does after a new edit."""
        db.execute("UPDATE edits SET state = 'discarded' WHERE image = ? AND state = 'undone'", (image,))
        changes = json.dumps({"items": items, "tags": tags})
        db.execute(
            "INSERT INTO edits (image, op, changes, time) VALUES (?, ?, ?, ?)", (image, op, changes, time.time())
        )

    def _apply(self, db: sqlite3.Connection, image: str, changes: dict, side: int) -> None:
        """Set every changed item and the tags to their ``before`` (side 0) or ``after`` (side 1) value."""
        for item_id, *values in changes["items"]:
            db.execute("UPDATE items SET data = ? WHERE id = ?", (values[side], item_id))
        if changes["tags"] is not None:
            db.execute("UPDATE images SET tags = ? WHERE name = ?", (json.dumps(changes["tags"][side]), image))

    def _items(self, db: sqlite3.Connection, image: str) -> dict[int, Item]:
        rows = db.execute("SELECT id, data FROM items WHERE image = ? AND data IS NOT NULL ORDER BY id", (image,))
        return {item_id: _decode(data) for item_id, data in rows}

    def _weak_labels(self, db: sqlite3.Connection, image: str) -> WeakLabels:
        row = db.execute("SELECT height, width, tags FROM images WHERE name = ?", (image,)).fetchone()
        if row is None:
            raise AnnotationError(f"image {image!r} has no annotations in {self.path}; add one first")
        items = list(self._items(db, image).values())
        tags = set(json.loads(row[2])) | {i.cls for i in items}
        return WeakLabels(
            row[0],
            row[1],
            frozenset(tags),
            tuple(i for i in items if isinstance(i, Point)),
            tuple(i for i in items if isinstance(i, Scribble)),
            tuple(i for i in items if isinstance(i, Box)),
        )


# ----------------------------------------------------------------------------- export


def export_png(store: AnnotationStore, info: DatasetInfo, split: str, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/NAME.png`` palette index masks for the annotated images of ``split``.

    Values: class indices where annotated, ``UNLABELED`` (254) elsewhere; ``IGNORE`` (255) is
    kept for void by the format but annotations never produce it. Every mask is checked against
    its image before the first file is written, so a bad image leaves nothing half-exported.
    Images of the store that are not in ``split`` are skipped.
    """
    if tuple(info.classes) != store.classes:
        raise AnnotationError(
            f"{store.path}: the store's classes {list(store.classes)} differ from {info.root}'s "
            f"{list(info.classes)}; export with the dataset the annotations were made on"
        )
    in_split = set(list_split(info, split))
    masks = {}
    for name, weak in store.to_weak_label_set().labels.items():
        if name not in in_split:
            continue
        height, width = read_image(info.image_path(split, name)).shape[:2]
        if (height, width) != (weak.height, weak.width):
            raise AnnotationError(
                f"image {name!r} is {height}x{width} in {info.root} but was annotated at "
                f"{weak.height}x{weak.width}; export with the dataset the annotations were made on"
            )
        masks[name] = rasterize(weak)
    out_dir = Path(out_dir)
    written = []
    for name, mask in sorted(masks.items()):
        save_index_png(out_dir / f"{name}.png", mask, info.colors)
        written.append(out_dir / f"{name}.png")
    return written


def new_annotations(weak: WeakLabels, stored: WeakLabels | None) -> WeakLabels:
    """``weak`` less the annotations ``stored`` already holds (one for one), so re-importing an export adds nothing."""
    if stored is None:
        return weak

    def new_items(kind: str) -> tuple:
        left, kept = list(getattr(stored, kind)), []
        for item in getattr(weak, kind):
            if item in left:
                left.remove(item)
            else:
                kept.append(item)
        return tuple(kept)

    return dataclasses.replace(
        weak, tags=weak.tags - stored.tags, points=new_items("points"), scribbles=new_items("scribbles"),
        boxes=new_items("boxes"),
    )  # fmt: skip


def fit_to_split(
    weak_by_name: dict[str, WeakLabels],
    info: DatasetInfo,
    split: str,
    size_of: Callable[[str], tuple[int, int]] | None = None,
) -> tuple[dict[str, WeakLabels], dict[str, str]]:
    """Imported labels split into those that fit ``split`` of the dataset and, for each other image, why not.

    A label fits when it names an image of the split, was annotated at that image's size (``size_of(name)``,
    read from the image by default), and its classes and geometry are valid inside the image. The dashboard's
    upload and the CLI's import check the same way.
    """
    names = set(list_split(info, split))
    fits, skipped = {}, {}
    for name, weak in weak_by_name.items():
        if name not in names:
            skipped[name] = f"no image {name!r} in split {split!r} of {info.root}"
            continue
        size = size_of(name) if size_of is not None else image_size(info.image_path(split, name))
        if (weak.height, weak.width) != tuple(size):
            skipped[name] = f"image {name!r} was annotated at {weak.height}x{weak.width}, it is {size[0]}x{size[1]}"
            continue
        try:  # the store checks each item again as it stores it: here once per image, cheaply
            weak = check_on_image(weak.validate(info.num_classes, where=f"image {name!r}"), f"image {name!r}")
            for i, b in enumerate(weak.boxes):
                _check_box_on_image(b, (int(size[0]), int(size[1])), f"image {name!r}: box {i}")
        except WeakLabelError as err:
            skipped[name] = str(err)
            continue
        fits[name] = weak
    return fits, skipped


def import_new(store: AnnotationStore, weak_by_name: dict[str, WeakLabels]) -> int:
    """Store, in one transaction, what ``store`` does not hold yet of labels that fit the dataset
    (:func:`fit_to_split`); return the number of images that gained labels. Importing twice adds nothing."""
    stored = set(store.images())
    labels = {n: new_annotations(w, store.weak_labels(n) if n in stored else None) for n, w in weak_by_name.items()}
    labels = {n: w for n, w in labels.items() if w.points or w.scribbles or w.boxes or w.tags}
    return store.import_weak_label_set(WeakLabelSet(store.classes, labels)) if labels else 0


def remove_store(path: str | Path) -> None:
    """Delete a store file and its WAL and shared-memory companions: only for a store this process has
    just created and that nothing was written to (a dashboard whose start-up failed)."""
    for part in (Path(path), Path(f"{path}-wal"), Path(f"{path}-shm")):
        part.unlink(missing_ok=True)

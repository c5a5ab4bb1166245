"""The annotation workspace: the images of one split and their weak labels in the SQLite store.

It reads images and masks, stores edits at once (:class:`workbench.annotations.store.AnnotationStore`),
takes edits back per tab (:class:`EditHistory`), and imports and exports annotations through
:mod:`workbench.labels.weak_labels`'s JSON functions and :mod:`workbench.annotations.interchange`. No torch: the
model's side is :mod:`workbench.dashboard.outputs`, training :mod:`workbench.dashboard.retrainer`, and
:class:`workbench.dashboard.session.DashboardSession` composes the three for one browser tab.

Images are named by their index in the split; coordinates are pixel centres ``(row, col)`` of the
image at its own size, as in :mod:`workbench.labels.weak_labels`.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.annotations.store import AnnotationStore, export_png, fit_to_split, import_new
from workbench.data.folder import DatasetInfo, list_split, read_image, read_mask
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import (
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    rasterize,
    save_weak_labels,
    weak_labels_from_text,
)

LABEL_FORMATS = ("weakseg", "labelstudio", "cvat", "coco")  # export/import formats (workbench.annotations.interchange)
IMAGE_CACHE = 32  # decoded images kept in memory
CLOSED_MESSAGE = (
    "this session was closed (session.close()); open a new one with DashboardSession.open(...) and show it again"
)


class SessionError(ValueError):
    """A dashboard request that cannot be served (the message says what to do instead)."""


@dataclass
class EditHistory:
    """One tab's own edits, per image, for undo and redo: ``[kind, item_id, before, after]`` records
    (``["group", None, [records], None]`` for an edit of several items, such as an eraser stroke)."""

    undo: dict[str, list[list]] = field(default_factory=dict)
    redo: dict[str, list[list]] = field(default_factory=dict)
    ids: dict[int, int] = field(default_factory=dict)  # item id -> id of the same item re-added by undo/redo

    def current_id(self, item_id: int) -> int:
        while item_id in self.ids:
            item_id = self.ids[item_id]
        return item_id


class AnnotationWorkspace:
    """Images, ground truth and weak labels of one split; every edit reaches the store at once.

    Shared by every tab of a dashboard: :attr:`revision` counts edits from any tab, and
    :attr:`editors` remembers which histories edited which image, so that undo takes back
    the store's own history when one tab is alone on an image and the tab's own edit otherwise.
    """

    def __init__(
        self,
        info: DatasetInfo,
        store: AnnotationStore,
        split: str = "train",
        class_split: ClassSplit | None = None,
        out_dir: Path = Path("runs/dashboard"),
    ) -> None:
        if tuple(store.classes) != tuple(info.classes):
            raise SessionError(f"store classes {list(store.classes)} differ from the dataset's {list(info.classes)}")
        self.info, self.store, self.split = info, store, split
        self.names = list_split(info, split)
        self.class_split = class_split
        self.out_dir = Path(out_dir)
        self.revision = 0
        self.editors: dict[str, set[int]] = {}
        self.closed = False
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()  # the page's event loop and view threads read images together

    # ------------------------------------------------------------------ dataset

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def colors(self) -> np.ndarray:
        """``(C, 3)`` uint8 class colors of the dataset."""
        return np.asarray(self.info.colors, dtype=np.uint8)

    @property
    def novel(self) -> tuple[int, ...]:
        return self.class_split.novel if self.class_split else ()

    def check(self, index: int) -> int:
        """``index`` as an int, or a :class:`SessionError` naming the valid range."""
        i = int(index)
        if not 0 <= i < len(self.names):
            raise SessionError(f"image index {i} is outside 0..{len(self.names) - 1} of split {self.split!r}")
        return i

    def index_of(self, name: str) -> int:
        """Index of the image called ``name`` (a name of the split, never a path)."""
        if name not in self.names:
            raise SessionError(f"no image {name!r} in split {self.split!r}; pick one of the listed names")
        return self.names.index(name)

    def image(self, index: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 image at its own size."""
        i = self.check(index)
        with self._lock:
            if i not in self._images:
                self._images[i] = read_image(self.info.image_path(self.split, self.names[i]))
                while len(self._images) > IMAGE_CACHE:
                    self._images.popitem(last=False)
            return self._images[i]

    def size(self, index: int) -> tuple[int, int]:
        return self.image(index).shape[:2]

    def ground_truth(self, index: int) -> np.ndarray | None:
        """``(H, W)`` uint8 ground truth (255 void), or None when the split has no mask for it."""
        i = self.check(index)
        path = self.info.mask_path(self.split, self.names[i])
        return read_mask(path, self.info, shape=self.size(i)) if path.is_file() else None

    # ------------------------------------------------------------------ reading annotations

    def weak_labels(self, index: int) -> WeakLabels:
        i = self.check(index)
        name = self.names[i]
        if self.closed or name not in self.store.images():  # a closed store shows nothing
            return WeakLabels(*self.size(i))
        return self.store.weak_labels(name)

    def items(self, index: int) -> dict:
        if self.closed:
            return {}
        return self.store.items(self.names[self.check(index)])

    def annotation_mask(self, index: int) -> np.ndarray:
        """``(H, W)`` uint8 rasterised annotations: class where drawn, 254 elsewhere."""
        return rasterize(self.weak_labels(index))

    def work_label(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Annotations rasterised at ``size`` (the model's working size), novel classes hidden under a split."""
        label = rasterize(self.weak_labels(index).resized(*size))
        return self.class_split.hide_novel(label) if self.class_split else label

    def annotation_counts(self) -> dict[str, int]:
        """Number of stored annotations of every annotated image of the split."""
        if self.closed:
            return {}
        return {n: len(self.store.items(n)) for n in self.store.images() if n in self.names}

    # ------------------------------------------------------------------ edits

    def check_open(self) -> None:
        if self.closed:
            raise SessionError(CLOSED_MESSAGE)

    def _did(self, index: int, history: EditHistory, change: list) -> None:
        name = self.names[index]
        self.editors.setdefault(name, set()).add(id(history))
        history.undo.setdefault(name, []).append(change)
        history.redo.pop(name, None)  # a new edit clears the redo stack
        self.revision += 1

    def add(self, index: int, item: Point | Scribble, history: EditHistory) -> int:
        """Store ``item`` on image ``index`` at once; return its id."""
        self.check_open()
        i = self.check(index)
        name = self.names[i]
        item_id = self.store.add(name, item, self.size(i))
        self._did(i, history, ["add", item_id, None, self.store.items(name)[item_id]])
        return item_id

    def add_point(self, index: int, row: float, col: float, cls: int, history: EditHistory) -> int:
        self.check_open()
        row, col = clamp_pixel(row, col, *self.size(index))
        return self.add(index, Point(row, col, cls), history)

    def add_scribble(self, index: int, path, cls: int, width: float, history: EditHistory) -> int:
        """A stroke of ``(row, col)`` vertices; one vertex is a dab of the brush (still a stroke of its width)."""
        path = tuple((float(r), float(c)) for r, c in path)
        if len(path) == 1:
            path = path * 2
        return self.add(index, Scribble(path, cls, width), history)

    def item(self, index: int, item_id: int):
        name = self.names[self.check(index)]
        item = self.store.items(name).get(item_id)
        if item is None:
            raise WeakLabelError(f"item {item_id} of {name!r} is gone (removed here or in another tab)")
        return item

    def move_point(self, index: int, item_id: int, row: float, col: float, history: EditHistory) -> None:
        self.check_open()
        i = self.check(index)
        row, col = clamp_pixel(row, col, *self.size(i))
        old = self.item(i, item_id)
        if not isinstance(old, Point):
            raise WeakLabelError(f"item {item_id} of {self.names[i]!r} is a {type(old).__name__}, not a point")
        new = dataclasses.replace(old, row=row, col=col)
        self.store.replace(self.names[i], item_id, new)
        self._did(i, history, ["replace", item_id, old, new])

    def remove(self, index: int, item_id: int, history: EditHistory) -> None:
        self.remove_many(index, [item_id], history)

    def remove_many(self, index: int, item_ids: list[int], history: EditHistory) -> None:
        """Remove items as one edit: one undo (here and in the store's own history) brings them all back."""
        self.check_open()
        i = self.check(index)
        changes = [["remove", item_id, self.item(i, item_id), None] for item_id in dict.fromkeys(item_ids)]
        if not changes:
            return
        self.store.remove_many(self.names[i], [c[1] for c in changes])
        self._did(i, history, changes[0] if len(changes) == 1 else ["group", None, changes, None])

    def _apply(self, index: int, change: list, side: int, history: EditHistory) -> bool:
        """Put item ``change[1]`` in its state before (``side=0``) or after (``side=1``) the edit; a
        ``group`` record (``change[2]`` holds its edits) is applied whole, newest first when undone.

        Only this tab's own add or remove brings an item back: undoing a move of a point another tab has
        since removed leaves it removed. Returns whether the store changed."""
        kind, item_id, before, after = change
        if kind == "group":
            parts = reversed(before) if side == 0 else before
            return any([self._apply(index, part, side, history) for part in parts])
        image, item_id, target = self.names[index], history.current_id(item_id), (before, after)[side]
        current = self.store.items(image).get(item_id)
        if current is None and target is not None:
            if kind == "replace":  # another tab removed the item this tab moved: the removal stands
                return False
            history.ids[item_id] = self.store.add(image, target, self.size(index))  # a new id for the old
        elif current is not None and target is None:
            self.store.remove(image, item_id)
        elif current is not None:
            self.store.replace(image, item_id, target)
        else:
            return False
        return True

    def step_history(self, index: int, history: EditHistory, undo: bool) -> bool:
        """Undo (or redo) ``history``'s latest edit of image ``index``; False when there is none."""
        self.check_open()
        i = self.check(index)
        image = self.names[i]
        source, dest = (history.undo, history.redo) if undo else (history.redo, history.undo)
        stack = source.get(image) or []
        if self.editors.get(image, set()) <= {id(history)}:
            # no other tab edited this image since the session opened: the store's history is this tab's
            # (kept across restarts, so an undo after a restart still works)
            done = image in self.store.images() and (self.store.undo(image) if undo else self.store.redo(image))
            if done and stack:
                dest.setdefault(image, []).append(stack.pop())
        elif stack:  # other tabs edited it too: take back only this tab's own latest edit
            change = stack.pop()
            done = self._apply(i, change, 0 if undo else 1, history)
            if done:  # an edit whose item another tab removed is dropped, not kept for a redo
                dest.setdefault(image, []).append(change)
        else:
            done = False
        self.revision += 1
        return bool(done)

    # ------------------------------------------------------------------ import and export

    def export_json(self, path: str | Path | None = None) -> Path:
        """Every annotation as a weak-label JSON file (the format ``TrainConfig.weak_labels`` reads)."""
        path = Path(path) if path is not None else self.out_dir / "exports" / "annotations.json"
        save_weak_labels(path, self.store.to_weak_label_set())
        return path

    def export_png(self, out_dir: str | Path | None = None) -> list[Path]:
        """One palette PNG index mask per annotated image of the split (254 = unlabelled)."""
        out_dir = Path(out_dir) if out_dir is not None else self.out_dir / "exports" / "masks"
        return export_png(self.store, self.info, self.split, out_dir)

    def export_labels(self, fmt: str = "weakseg", path: str | Path | None = None) -> Path:
        """Every annotation as a weak-label JSON file (``weakseg``) or a Label Studio, CVAT or COCO file."""
        if fmt == "weakseg":
            return self.export_json(path)
        from workbench.annotations import interchange

        suffix = {"labelstudio": "labelstudio.json", "cvat": "cvat.xml", "coco": "coco.json"}.get(fmt)
        if suffix is None:
            raise SessionError(f"unknown export format {fmt!r}; use one of {list(LABEL_FORMATS)}")
        path = Path(path) if path is not None else self.out_dir / "exports" / f"annotations.{suffix}"
        files = {n: self.info.image_path(self.split, n).name for n in self.store.images() if n in self.names}
        interchange.export_labels(path, fmt, self.store.to_weak_label_set(), image_files=files)
        return path

    def import_json_text(self, text: str | bytes) -> int:
        """Import a weak-label JSON document (an upload): parsed and validated by
        :func:`workbench.labels.weak_labels.weak_labels_from_text`, then stored in one transaction."""
        return self.import_new(dict(weak_labels_from_text(text, "upload", self.classes).labels))

    def import_labels_bytes(self, data: bytes, fmt: str = "weakseg") -> tuple[int, int]:
        """Import an upload in any of :data:`LABEL_FORMATS`: ``(images with new annotations, dense masks
        skipped)``; dense masks are not annotations and the store keeps weak labels only."""
        if fmt == "weakseg":
            return self.import_json_text(bytes(data)), 0
        if fmt not in LABEL_FORMATS:
            raise SessionError(f"unknown import format {fmt!r}; use one of {list(LABEL_FORMATS)}")
        from workbench.annotations import interchange

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload.{'xml' if fmt == 'cvat' else 'json'}"
            path.write_bytes(bytes(data))
            try:
                weak_set, masks = interchange.import_labels(path, fmt, self.classes)
            except RecursionError:
                raise SessionError(f"upload is nested too deeply to be a {fmt} export") from None
            except UnicodeDecodeError as err:
                raise SessionError(f"upload is not UTF-8 text ({err}); upload a file written by Export") from None
            except interchange.InterchangeError as err:  # name the upload, not the temporary file it was read from
                raise SessionError(str(err).replace(str(path), "upload")) from None
        return self.import_new(dict(weak_set.labels)), len(masks)

    def import_new(self, weak_by_name: dict[str, WeakLabels]) -> int:
        """Check every image's labels against the split (:func:`fit_to_split`), refusing the whole upload
        when one does not fit, then store what the store does not hold yet (one transaction); re-importing
        one's own export adds nothing. Returns the number of images that gained labels."""
        self.check_open()
        fits, skipped = fit_to_split(weak_by_name, self.info, self.split, lambda n: self.size(self.names.index(n)))
        if skipped:
            name, why = next(iter(skipped.items()))
            raise SessionError(
                f"upload: {why}" + (f" (and {len(skipped) - 1} more images)" if len(skipped) > 1 else "")
            )
        count = import_new(self.store, fits)
        self.revision += 1
        return count

    def close(self) -> None:
        self.closed = True  # first: a tab's poller that reads now sees a closed workspace, not a closed store
        self.store.close()


def clamp_pixel(row: float, col: float, height: int, width: int) -> tuple[float, float]:
    """Clicks on the border half-pixel land on the edge pixel; clicks further out are refused."""
    if not (math.isfinite(row) and math.isfinite(col)):
        raise WeakLabelError(f"click at (row={row}, col={col}) is not a position; click on the image")
    if not (-1 <= row <= height and -1 <= col <= width):
        raise WeakLabelError(
            f"click at (row={row:.1f}, col={col:.1f}) is off the {height}x{width} image; click inside it"
        )
    return float(np.clip(row, 0, height - 1)), float(np.clip(col, 0, width - 1))

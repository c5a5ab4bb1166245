"""One browser tab's dashboard session: the view state as params over three shared parts.

The parts (each in its own module, shared by every tab of one dashboard):

* :class:`~workbench.dashboard.workspace.AnnotationWorkspace`: images, weak labels in the SQLite store,
  edits and per-tab undo, import and export;
* :class:`~workbench.dashboard.outputs.ModelOutputs`: the current model and its outputs
  (probabilities, features, affinity, proposals, Grad-CAM, pseudo-mask, val summaries,
  uncertainty ranking), cached per model version and image;
* :class:`~workbench.dashboard.retrainer.Retrainer`: quick and full retrain jobs in a thread, model
  versions and the val gate.

:class:`DashboardSession` is a ``param.Parameterized`` facade over them: the tab's image,
active class, brush width, opacity, visible classes, overlay and its own undo history are
params and attributes of the session (so widgets bind to them and tests drive them without a
browser), and its methods call the parts for that image. :meth:`DashboardSession.new_tab`
gives another tab its own view state over the same parts. A notebook session::

    session = DashboardSession.open(data="data/synthetic")          # or run="runs/latest"
    session.add_point(row=20, col=31)                                # stored in SQLite at once
    session.retrain("quick"); session.wait()                         # fine-tune on this image
    views.mask_element(session.prediction(), session.colors)

Coordinates are pixel centres of the original image (row, col), as in
:mod:`workbench.labels.weak_labels`; the model runs at the working size (the run's ``image_size``) and
its outputs are resized back for display.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import param
import torch
from torch import nn

from workbench.annotations.store import STORE_FILE, AnnotationStore, remove_store
from workbench.dashboard.outputs import (
    UNCERTAINTY,
    ModelOutputs,
)
from workbench.dashboard.retrainer import (
    MAX_VERSIONS_IN_MEMORY,
    FullConfig,
    QuickConfig,
    Retrainer,
)
from workbench.dashboard.workspace import (
    CLOSED_MESSAGE,
    AnnotationWorkspace,
    EditHistory,
    SessionError,
)
from workbench.data.folder import DatasetInfo, list_split, load_dataset_info, read_image
from workbench.data.synthetic import ensure_synthetic
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import WeakLabels, WeakLabelSet
from workbench.modeling.backbones import Backbone
from workbench.train import runs
from workbench.train.checkpoint import read_jsonl, resolve_run
from workbench.train.config import pick_device
from workbench.viz import views

OVERLAYS = ("prediction", "ground truth", "pseudo-mask", "none")
MAX_BRUSH = 50.0


class DashboardSession(param.Parameterized):
    """One tab's view state (params) over the shared workspace, model outputs and retrainer.

    Every tab made with :meth:`new_tab` shares ``workspace``, ``outputs`` and ``retrainer``;
    the params (image, class, overlay, brush...) and the undo history are each tab's own.
    """

    created_store = False  # open() made the store file (a refused start-up removes it again)

    index = param.Integer(default=0, bounds=(0, None), doc="position of the current image in the split")
    active_class = param.Selector(default=0, objects=[0], doc="class of new points and scribbles")
    brush_width = param.Number(default=3.0, bounds=(1.0, MAX_BRUSH), doc="scribble width in pixels")
    opacity = param.Number(default=0.5, bounds=(0.0, 1.0), doc="opacity of the mask overlay")
    visible = param.ListSelector(default=[], objects=[], doc="classes drawn in overlays")
    overlay = param.Selector(default="prediction", objects=list(OVERLAYS), doc="the dense mask under the annotations")
    uncertainty = param.Selector(default="entropy", objects=list(UNCERTAINTY))
    train_mode = param.Selector(default="quick", objects=["quick", "full"])
    model_version = param.Integer(default=0, doc="number of the model version in use (new retrains get new numbers)")
    annotation_version = param.Integer(default=0, doc="bumped after every edit, undo and redo")
    preview = param.Integer(
        default=None, allow_None=True, doc="a retrain's version shown on the edited image before its val check"
    )
    versions_listed = param.Integer(default=0, doc="number of model versions (a retrain adds one, current or not)")
    message = param.String(default="", doc="the latest status line for the user")
    accept_worse = param.Boolean(default=False, doc="make a retrain current even when it lowers val mIoU")

    def __init__(
        self,
        info: DatasetInfo,
        store: AnnotationStore,
        method: ModuleType,
        method_config,
        model: nn.Module,
        *,
        split: str = "train",
        work_size: tuple[int, int] | None = None,
        novel: tuple[int, ...] = (),
        run_dir: Path | None = None,
        out_dir: Path = Path("runs/dashboard"),
        quick: QuickConfig = QuickConfig(),
        full: FullConfig = FullConfig(),
        run_config: dict | None = None,
        max_versions_in_memory: int = MAX_VERSIONS_IN_MEMORY,
        **params,
    ) -> None:
        class_split = ClassSplit(info.classes, tuple(novel)) if novel else None
        self.workspace = AnnotationWorkspace(info, store, split, class_split, Path(out_dir))
        h, w = work_size if work_size else read_image(info.image_path(split, self.workspace.names[0])).shape[:2]
        self.outputs = ModelOutputs(self.workspace, method, method_config, model, (int(h), int(w)))
        self.retrainer = Retrainer(
            self.workspace, self.outputs, run_dir=run_dir, quick=quick, full=full, run_config=run_config,
            max_in_memory=max_versions_in_memory,
        )  # fmt: skip
        super().__init__(**params)
        self.outputs.version = self.model_version
        self._own_params()

    def new_tab(self) -> DashboardSession:
        """A view of this session for another browser tab: the same store, model, versions and trainer,
        its own image, class, tool settings, overlay, messages and undo stack (undo takes back only its
        own edits). Another tab's edits and retrains reach it through :meth:`sync`."""
        tab = type(self).__new__(type(self))
        tab.workspace, tab.outputs, tab.retrainer = self.workspace, self.outputs, self.retrainer
        param.Parameterized.__init__(
            tab, model_version=self.outputs.version, annotation_version=self.workspace.revision,
            train_mode=self.train_mode, accept_worse=self.accept_worse,
        )  # fmt: skip
        tab._own_params()
        return tab

    def sync(self) -> bool:
        """Catch up with the other tabs: bump ``annotation_version`` after their edits, follow the
        current model version and a retrain's preview (the page calls this a few times a second);
        True when anything changed."""
        changed = False
        if self.annotation_version != self.workspace.revision:
            self.annotation_version = self.workspace.revision
            changed = True
        if self.model_version != self.outputs.version:
            self.model_version = self.outputs.version
            changed = True
        preview = self.retrainer.preview[0] if self.retrainer.preview else None
        if self.preview != preview:
            self.preview = preview
            changed = True
        if self.versions_listed != len(self.versions):
            self.versions_listed = len(self.versions)
            changed = True
        return changed

    @property
    def current_version(self) -> int:
        """The model version in use by every tab (``model_version`` follows it at the next :meth:`sync`)."""
        return self.outputs.version

    def _own_params(self) -> None:
        self.history = EditHistory()  # this tab's own edits, for undo
        self.param.watch(self._renumber, "model_version")
        classes = dict(zip(self.info.classes, range(self.info.num_classes)))
        self.param.active_class.objects = classes
        self.param.visible.objects = list(self.info.classes)
        self.param.index.bounds = (0, len(self.names) - 1)
        if not self.visible:
            self.visible = list(self.info.classes)

    def _renumber(self, event) -> None:
        """``model_version`` set by hand names the current model for every tab."""
        self.outputs.version = event.new

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        data: str | Path | None = None,
        run: str | Path | None = None,
        method: str = "partial_ce",
        store: str | Path | None = None,
        split: str = "train",
        device: str = "cpu",
        out: str | Path | None = None,
        **params,
    ) -> DashboardSession:
        """A session over ``data`` (default: the synthetic set) with the model of ``run`` or a fresh ``method``.

        The store defaults to ``annotations.sqlite`` in the run directory, else in the data directory.
        """
        from workbench.methods import METHODS

        novel: tuple[int, ...] = ()
        if run is not None:
            module, model, cfg = runs.load_run(run, device)
            info = load_dataset_info(data if data is not None else cfg["dataset"]["root"])
            if list(info.classes) != cfg["dataset"]["classes"]:
                raise SessionError(
                    f"run {run} was trained on classes {cfg['dataset']['classes']}, the dataset {info.root} has "
                    f"{list(info.classes)}; open the run with its own dataset"
                )
            method_config = runs.method_config_from_json(module, cfg["method_config"])
            work_size = tuple(cfg["image_size"])
            novel = novel_ids(cfg.get("novel"), info.classes, run)
            run_dir = resolve_run(run)[0]  # a weights file inside a run also names its run directory
        else:
            if method not in METHODS:
                raise SessionError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
            module = METHODS[method]
            info = load_dataset_info(data if data is not None else ensure_synthetic())
            method_config = module.Config()
            model = module.build(info.num_classes, method_config, Backbone()).to(pick_device(device))
            work_size, run_dir, cfg = None, None, None
        store_path = Path(store) if store is not None else (run_dir or info.root) / STORE_FILE
        out_dir = Path(out) if out is not None else (run_dir / "dashboard" if run_dir else Path("runs/dashboard"))
        list_split(info, split)  # a bad split fails before a store file is created
        created = not store_path.exists()
        annotations = AnnotationStore(store_path, info.classes)
        try:
            session = cls(
                info, annotations, module, method_config, model, split=split, work_size=work_size, novel=novel,
                run_dir=run_dir, out_dir=out_dir, run_config=cfg, **params,
            )  # fmt: skip
        except BaseException:
            annotations.close()
            if created:
                remove_store(store_path)
            raise
        session.created_store = created
        return session

    def close(self) -> None:
        """Stop a running retrain and close the store; every later edit says the session is closed."""
        self.trainer.cancel()
        self.trainer.join(timeout=30)
        self.workspace.close()
        self.message = CLOSED_MESSAGE

    # ------------------------------------------------------------------ the parts' state, by its old names

    info = property(lambda self: self.workspace.info)
    store = property(lambda self: self.workspace.store)
    split = property(lambda self: self.workspace.split)
    names = property(lambda self: self.workspace.names)
    closed = property(lambda self: self.workspace.closed)
    out_dir = property(lambda self: self.workspace.out_dir)
    class_split = property(
        lambda self: self.workspace.class_split, lambda self, value: setattr(self.workspace, "class_split", value)
    )
    method = property(lambda self: self.outputs.method)
    method_config = property(lambda self: self.outputs.method_config)
    model = property(lambda self: self.outputs.model)
    work_size = property(lambda self: self.outputs.work_size)
    trainer = property(lambda self: self.retrainer.trainer)
    versions = property(lambda self: self.retrainer.versions)
    pending = property(lambda self: self.retrainer.pending)
    retrain_runs = property(lambda self: self.retrainer.retrain_runs)
    run_dir = property(lambda self: self.retrainer.run_dir)
    run_config = property(lambda self: self.retrainer.run_config)
    quick_config = property(
        lambda self: self.retrainer.quick_config, lambda self, value: setattr(self.retrainer, "quick_config", value)
    )
    full_config = property(
        lambda self: self.retrainer.full_config, lambda self, value: setattr(self.retrainer, "full_config", value)
    )

    # ------------------------------------------------------------------ dataset

    @property
    def classes(self) -> tuple[str, ...]:
        return self.workspace.classes

    @property
    def colors(self) -> np.ndarray:
        """``(C, 3)`` uint8 class colors of the dataset."""
        return self.workspace.colors

    @property
    def image_name(self) -> str:
        return self.names[self.index]

    @property
    def visible_classes(self) -> list[int]:
        return [self.classes.index(n) for n in self.visible]

    @property
    def novel(self) -> tuple[int, ...]:
        return self.workspace.novel

    def _i(self, index: int | None) -> int:
        return self.workspace.check(self.index if index is None else index)

    def image(self, index: int | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8 image at its own size."""
        return self.workspace.image(self._i(index))

    def size(self, index: int | None = None) -> tuple[int, int]:
        return self.workspace.size(self._i(index))

    def ground_truth(self, index: int | None = None) -> np.ndarray | None:
        """``(H, W)`` uint8 ground truth (255 void), or None when the split has no mask for it."""
        return self.workspace.ground_truth(self._i(index))

    def select(self, name: str) -> None:
        """Open the image called ``name`` (a name of the split, never a path)."""
        self.index = self.workspace.index_of(name)

    def step(self, delta: int) -> None:
        self.index = int(np.clip(self.index + delta, 0, len(self.names) - 1))

    # ------------------------------------------------------------------ annotations

    def weak_labels(self, index: int | None = None) -> WeakLabels:
        return self.workspace.weak_labels(self._i(index))

    def items(self, index: int | None = None) -> dict:
        return self.workspace.items(self._i(index))

    def annotation_mask(self, index: int | None = None) -> np.ndarray:
        """``(H, W)`` uint8 rasterised annotations: class where drawn, 254 elsewhere."""
        return self.workspace.annotation_mask(self._i(index))

    def _edited(self, what: str) -> None:
        self.annotation_version = self.workspace.revision
        self.message = what

    def add_point(self, row: float, col: float, cls: int | None = None) -> int:
        """Store a click of class ``cls`` (default: the active class) at once; return its item id."""
        item_id = self.workspace.add_point(
            self.index, row, col, self.active_class if cls is None else cls, self.history
        )
        self._edited(f"point {item_id} ({self.classes[self.items()[item_id].cls]}) stored")
        return item_id

    def move_point(self, item_id: int, row: float, col: float) -> None:
        self.workspace.move_point(self.index, item_id, row, col, self.history)
        self._edited(f"point {item_id} moved")

    def add_scribble(self, path, cls: int | None = None, width: float | None = None) -> int:
        """Store a stroke ``path`` of ``(row, col)`` vertices with the active class and brush width."""
        cls = self.active_class if cls is None else cls
        item_id = self.workspace.add_scribble(self.index, path, cls, width or self.brush_width, self.history)
        scribble = self.items()[item_id]
        self._edited(f"scribble {item_id} stored ({len(scribble.path)} vertices, width {scribble.width:g})")
        return item_id

    def remove(self, item_id: int) -> None:
        self.workspace.remove(self.index, item_id, self.history)
        self._edited(f"item {item_id} removed")

    def remove_many(self, item_ids: list[int]) -> None:
        """Remove several items as one edit (one ``z`` brings them all back)."""
        self.workspace.remove_many(self.index, item_ids, self.history)
        self._edited(f"{len(item_ids)} item(s) removed")

    def undo(self) -> bool:
        """Take back this tab's latest edit of the current image (other tabs' edits stay)."""
        done = self.workspace.step_history(self.index, self.history, undo=True)
        self._edited("undone" if done else "nothing to undo")
        return done

    def redo(self) -> bool:
        """Redo this tab's edit undone last; a new edit clears the redo stack."""
        done = self.workspace.step_history(self.index, self.history, undo=False)
        self._edited("redone" if done else "nothing to redo")
        return done

    def handle_key(self, key: str) -> str:
        """Keyboard shortcuts: digits, then the letters of :data:`~workbench.viz.views.CLASS_KEYS`, pick the class
        (1 = first), ``[``/``]`` brush width, ``z``/``Z`` undo/redo, ``n``/``p`` images."""
        cls = views.class_of_key(key)
        if cls is not None and cls < len(self.classes):
            self.active_class = cls
            return f"class {self.classes[cls]}"
        if key.isdigit() and len(key) == 1:
            return f"no class {key}"
        actions = {
            "[": lambda: setattr(self, "brush_width", max(1.0, self.brush_width - 1)),
            "]": lambda: setattr(self, "brush_width", min(MAX_BRUSH, self.brush_width + 1)),
            "z": self.undo,
            "Z": self.redo,
            "n": lambda: self.step(1),
            "p": lambda: self.step(-1),
        }
        if key not in actions:
            return ""
        actions[key]()
        return {"[": "brush -", "]": "brush +", "z": "undo", "Z": "redo", "n": "next image", "p": "previous image"}[key]

    def export_json(self, path: str | Path | None = None) -> Path:
        """Every annotation as a weak-label JSON file (the format ``TrainConfig.weak_labels`` reads)."""
        path = self.workspace.export_json(path)
        self.message = f"annotations written to {path}"
        return path

    def export_png(self, out_dir: str | Path | None = None) -> list[Path]:
        """One palette PNG index mask per annotated image of the split (254 = unlabelled)."""
        out_dir = Path(out_dir) if out_dir is not None else self.out_dir / "exports" / "masks"
        written = self.workspace.export_png(out_dir)
        self.message = f"{len(written)} masks written to {out_dir}"
        return written

    def export_labels(self, fmt: str = "weakseg", path: str | Path | None = None) -> Path:
        """Every annotation as a weak-label JSON file (``weakseg``) or a Label Studio, CVAT or COCO file."""
        path = self.workspace.export_labels(fmt, path)
        self.message = f"annotations written to {path}" + ("" if fmt == "weakseg" else f" ({fmt})")
        return path

    def import_json_text(self, text: str | bytes) -> int:
        """Import a weak-label JSON document (an upload); every record is validated before anything is stored."""
        return self._imported(self.workspace.import_json_text(text), 0)

    def import_labels_bytes(self, data: bytes, fmt: str = "weakseg") -> int:
        """Import an upload in any of :data:`LABEL_FORMATS`; dense masks in it are not annotations and are skipped."""
        return self._imported(*self.workspace.import_labels_bytes(data, fmt))

    def _imported(self, count: int, skipped_masks: int) -> int:
        note = (
            f"; {skipped_masks} dense masks in the file skipped (the store keeps weak labels)" if skipped_masks else ""
        )
        self._edited(f"imported annotations of {count} images" + ("" if count else " (all were already stored)") + note)
        return count

    # ------------------------------------------------------------------ model outputs

    def probabilities(self, index: int | None = None) -> np.ndarray:
        """``(C, H, W)`` float32 class probabilities of image ``index`` at its own size (cached per model version)."""
        return self.outputs.probabilities(self._i(index))

    def probabilities_of(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` class probabilities for any ``(H, W, 3)`` uint8 image (e.g. an upload), not cached."""
        return self.outputs.probabilities_of(image)

    def prediction(self, index: int | None = None) -> np.ndarray:
        """``(H, W)`` uint8 arg-max prediction of the current model."""
        return self.outputs.prediction(self._i(index))

    def shown_prediction(self, index: int | None = None) -> np.ndarray:
        """The mask the overlay shows: a finished retrain's prediction of its edited image while the val
        check runs (:attr:`preview`), else the current model's :meth:`prediction`."""
        i = self._i(index)
        if self.preview is not None and self.retrainer.preview == (self.preview, i):
            probs = self.outputs.peek(self.preview, ("probs", i))
            if probs is not None:
                return probs.argmax(0).astype(np.uint8)
        return self.outputs.prediction(i)

    def labelled_accuracy(self, index: int | None = None) -> tuple[int, int]:
        """``(correct, labelled)``: annotated pixels the prediction agrees with (a live check after each retrain)."""
        return self.outputs.labelled_accuracy(self._i(index))

    def features(self, index: int | None = None) -> torch.Tensor | None:
        """``(D, h, w)`` pixel features at the working size, or None."""
        return self.outputs.features(self._i(index))

    def affinity(self, row: float, col: float, index: int | None = None) -> tuple[np.ndarray, str] | None:
        """``((H, W) affinity, source)`` of pixel ``(row, col)`` to every pixel, or None when not available."""
        return self.outputs.affinity(self._i(index), row, col)

    def proposals(self, index: int | None = None) -> list[dict] | None:
        """SimFormer-style proposals ``{mask (H, W), cls, score}`` best first, or None when the method has none."""
        return self.outputs.proposals(self._i(index))

    def cam(self, cls: int | None = None, index: int | None = None) -> np.ndarray | str:
        """``(H, W)`` Grad-CAM of class ``cls`` (default: the active class) in [0, 1], or why there is none."""
        return self.outputs.cam(self._i(index), self.active_class if cls is None else cls)

    def point_pseudo_mask(self, index: int | None = None) -> np.ndarray | str:
        """``(H, W)`` uint8 pseudo-mask grown from the annotations over the model's pixel features, or why there is none."""
        return self.outputs.point_pseudo_mask(self._i(index))

    def evaluate(self, split: str = "val") -> dict:
        """``evaluation.evaluate`` of the current model on ``split`` (cached per model version)."""
        return self.outputs.evaluate(split)

    def uncertainty_ranking(self, kind: str | None = None, batch: int = 16) -> list[dict]:
        """``{index, name, uncertainty, annotations}`` of every image of the split by the model's own
        mean entropy (or margin), most uncertain first: which image to annotate next, no ground truth used."""
        return self.outputs.uncertainty_ranking(kind or self.uncertainty, batch)

    def per_image_iou(self) -> list[dict]:
        """``{index, name, miou}`` of every image of the browsed split, worst first."""
        return self.outputs.per_image_iou()

    # ------------------------------------------------------------------ runs

    def run_records(self) -> list[dict]:
        """Metrics records of the loaded run and every full retrain of this session, tagged by ``run``."""
        records = []
        for run in ([self.run_dir] if self.run_dir else []) + self.retrain_runs:
            records += [{**r, "run": run.name} for r in read_run(run)["records"]]
        return records

    @property
    def runs_root(self) -> Path:
        """The folder whose run directories the dashboard may list and compare (nothing outside it)."""
        return (self.run_dir.parent if self.run_dir else self.out_dir.parent).resolve()

    def runs(self) -> list[Path]:
        """Run directories (a ``config.json`` inside) up to three levels under :attr:`runs_root`, sorted."""
        root = self.runs_root
        found = {p.parent.resolve() for pattern in ("*/config.json", "*/*/config.json", "*/*/*/config.json")
                 for p in root.glob(pattern)}  # fmt: skip
        return sorted(p for p in found if p.is_relative_to(root))  # a symlink pointing outside is not listed

    # ------------------------------------------------------------------ retraining

    def training_labels(self) -> WeakLabelSet:
        """What a full retrain learns from: the run's own weak labels of the split plus every annotation."""
        return self.retrainer.training_labels()

    def retrain(self, mode: str | None = None) -> None:
        """Start a quick (this image) or full retrain in the background; :meth:`poll` applies the result."""
        mode = mode or self.train_mode
        self.retrainer.start(mode, self.index)
        self.message = f"{mode} retrain started"

    def poll(self) -> dict:
        """Trainer snapshot; a retrain's preview and result land here (call from the UI thread).

        The preview (the new model's prediction of the edited image) shows as soon as training
        ends; the new version becomes current only if it does not lower val mIoU (see
        :meth:`workbench.dashboard.retrainer.Retrainer.poll`), else :attr:`pending` holds it and the message says so.
        """
        state = self.retrainer.poll(self.accept_worse)
        if "preview" in state or "finished" in state:
            self.message = state["message"]
        self.sync()
        return state

    def use_version(self, number: int) -> None:
        """Make model version ``number`` current again (its weights, cached outputs and val summary)."""
        version = self.retrainer.use_version(number)
        self.model_version = number
        self.message = (
            f"model v{number} ({version.label}) is current: val mIoU {version.summary['miou']:.3f}"
            + self.retrainer.limit_memory()
        )

    def accept_pending(self) -> None:
        """Make the retrain that lowered val mIoU current anyway."""
        if self.pending is None:
            raise SessionError("no retrain is waiting: every finished retrain is already a version")
        self.use_version(self.pending.number)

    def version_table(self) -> list[dict]:
        """``{version, made by, val mIoU, current, weights, <class IoU>...}`` of every version, oldest first."""
        return self.retrainer.version_table()

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the running job ends, then :meth:`poll` (for notebooks, tests and benchmarks)."""
        self.trainer.join(timeout)
        return self.poll()

    def cancel(self) -> None:
        self.retrainer.cancel()
        self.message = "cancelling: the current weights stay"


# ----------------------------------------------------------------------------- helpers


def read_run(run_dir: str | Path) -> dict:
    """``{"name", "summary", "records", "config"}`` of a run directory (missing files give empty parts)."""
    run_dir = Path(run_dir)

    def load(name: str):
        try:
            return json.loads((run_dir / name).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    metrics = run_dir / "metrics.jsonl"
    return {
        "name": run_dir.name,
        "summary": load("report.json"),
        "records": read_jsonl(metrics) if metrics.is_file() else [],
        "config": load("config.json"),
    }


def novel_ids(stored, classes: tuple[str, ...], run) -> tuple[int, ...]:
    """Novel class ids from a run's ``config.json``: names (new runs) or indices (runs written before names)."""
    ids = []
    for value in stored or []:
        if isinstance(value, str) and value in classes:
            ids.append(classes.index(value))
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
            ids.append(value)
        else:
            raise SessionError(
                f"run {run}: novel class {value!r} in config.json is neither a class name nor an index of "
                f"{list(classes)}; fix the run's config.json or open the run with its own dataset"
            )
    return tuple(sorted(set(ids)))

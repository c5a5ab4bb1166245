"""The dashboard's state: one object that holds the dataset, the annotations, the model and training.

:class:`DashboardSession` is a ``param.Parameterized``: the UI state (image, active class, brush
width, opacity, visible classes, overlay) is params, so widgets bind to it and tests drive it
without a browser. Everything with torch lives here and in :class:`Trainer`; the dashboard
(``apps/dashboard.py``) and notebooks only call. A notebook session::

    session = DashboardSession.open(data="data/synthetic")          # or run="runs/latest"
    session.add_point(row=20, col=31)                                # stored in SQLite at once
    session.retrain("quick"); session.wait()                         # fine-tune on this image
    views.mask_element(session.prediction(), session.colors)

Coordinates are pixel centres of the original image (row, col), as in
:mod:`workbench.weak_labels`; the model runs at the working size (the run's ``image_size``) and
its outputs are resized back for display.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import param
import torch
import torch.nn.functional as F
from torch import nn

from workbench import engine
from workbench.annotations import STORE_FILE, AnnotationStore, export_png
from workbench.checkpoint import read_jsonl, resolve_run
from workbench.data.augment import resize_pair
from workbench.data.dataset import SegmentationDataset, image_tensor
from workbench.data.folder import DatasetInfo, list_split, load_dataset_info, read_image, read_mask
from workbench.data.synthetic import ensure_synthetic
from workbench.methods import optional_hook
from workbench.models import Backbone
from workbench.splits import ClassSplit
from workbench.weak_labels import (
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

OVERLAYS = ("prediction", "ground truth", "pseudo-mask", "none")
UNCERTAINTY = ("entropy", "margin")
LABEL_FORMATS = ("weakseg", "labelstudio", "cvat", "coco")  # export/import formats (workbench.interchange)
ANNOTATION_KINDS = ("points", "scribbles", "boxes")
CACHE_SIZE = 32  # images whose model outputs stay cached (per model version)
MAX_BRUSH = 50.0
CLOSED_MESSAGE = (
    "this session was closed (session.close()); open a new one with DashboardSession.open(...) and show it again"
)


@dataclass
class ModelVersion:
    """One model of the session: its weights (CPU copies), what made it, and its val summary."""

    number: int
    label: str
    state: dict
    summary: dict


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class SessionError(ValueError):
    """A dashboard request that cannot be served (the message says what to do instead)."""


# ----------------------------------------------------------------------------- background training


@dataclass(frozen=True)
class QuickConfig:
    """Quick retrain: fine-tune on the current image (and its mirror image) for a few steps.

    The encoder (every module named ``encoder``) and all BatchNorm statistics stay frozen: one
    image should move the decoder and heads, not the features and running means that every
    image shares; skipping the encoder's backward pass also halves the step time. Losses see
    ``progress = 1`` (every ramp at full weight), since the model is continued, not started.

    One image alone drags the decoder towards its few classes and the rest of the split is
    forgotten (val mIoU 0.38 -> 0.21 after 8 correct points on the 48x48 synthetic set): each
    step therefore also keeps the model's own class probabilities on ``replay`` other images
    (a KL term, learning without forgetting), which needs no labels and works for every method.
    With 8 replay images and weight 10 the same retrain learns all 8 points and val mIoU goes
    0.38 -> 0.41 (weight 1 and 4 images: 0.34; SGD instead of AdamW: 0.32), measured with all 8
    in every step; 2 per step in turn passes the same check (``test_quick_retrain_on_correct_labels_keeps_val_miou``).
    """

    steps: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    flip: bool = True
    freeze_encoder: bool = True
    replay: int = 8  # other images of the split whose current predictions the model must keep
    keep_weight: float = 10.0  # weight of that distillation term against the method's loss
    replay_per_step: int = 2  # replay images in each step's batch, taken in turn (all 8: 5x slower steps)

    def __post_init__(self) -> None:
        if self.steps < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise SessionError(f"quick retrain needs steps >= 1 and a positive lr, got {self.steps}, {self.lr}")
        if (
            self.replay < 0
            or self.replay_per_step < 1
            or not (math.isfinite(self.keep_weight) and self.keep_weight >= 0)
        ):
            raise SessionError(
                f"quick retrain needs replay >= 0 and keep_weight >= 0, got {self.replay}, {self.keep_weight}"
            )


@dataclass(frozen=True)
class FullConfig:
    """Full retrain: the method's own training on every annotation (``engine.train``), from the current weights."""

    epochs: int = 3
    batch_size: int = 8
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise SessionError(f"full retrain needs epochs, batch_size >= 1 and lr > 0, got {self}")


class Trainer:
    """Runs one training job at a time in a daemon thread; the UI polls it.

    A job is ``job(report, should_stop) -> result``; it calls ``report(step, total, loss)``
    after each step and returns early when ``should_stop()`` is true. ``status`` goes
    ``idle -> running -> done | cancelled | failed``; the result (or error) waits in
    :meth:`take_result` for the caller's thread, so UI state never changes from the worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "idle"
        self.progress = 0.0
        self.losses: list[tuple[int, float]] = []
        self.message = ""
        self._result = None
        self._taken = True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: Callable, name: str = "training") -> None:
        if self.running:
            raise SessionError("a training job is already running; cancel it or wait for it to finish")
        self._stop.clear()
        with self._lock:
            self.status, self.progress, self.losses, self.message = "running", 0.0, [], f"{name}: starting"
            self._result, self._taken = None, False
        self._thread = threading.Thread(target=self._run, args=(job, name), daemon=True, name=f"workbench-{name}")
        self._thread.start()

    def _run(self, job: Callable, name: str) -> None:
        t0 = time.perf_counter()

        def report(step: int, total: int, loss: float) -> None:
            with self._lock:
                self.progress = min(1.0, step / max(total, 1))
                self.losses.append((step, float(loss)))
                self.message = f"{name}: step {step}/{total}, loss {loss:.4g}"

        try:
            result = job(report, self._stop.is_set)
            status = "cancelled" if self._stop.is_set() else "done"
            message = f"{name}: {status} in {time.perf_counter() - t0:.1f} s"
        except Exception as err:  # noqa: BLE001 - shown to the user, the UI keeps running
            result, status, message = err, "failed", f"{name} failed: {type(err).__name__}: {err}"
        with self._lock:
            self._result, self.status, self.message = result, status, message
            if status == "done":
                self.progress = 1.0

    def cancel(self) -> None:
        """Ask the job to stop at its next step (cooperative: Python threads cannot be killed)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job; True when no job is running any more."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def snapshot(self) -> dict:
        """``status, progress, message, losses`` as one consistent copy for the UI."""
        with self._lock:
            return {"status": self.status, "progress": self.progress, "message": self.message,
                    "losses": list(self.losses)}  # fmt: skip

    def take_result(self):
        """``(status, result)`` of a finished job, once; ``None`` while running or when already taken."""
        with self._lock:
            if self.running or self._taken:
                return None
            self._taken = True
            return self.status, self._result


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def quick_finetune(
    method: ModuleType,
    method_config,
    model: nn.Module,
    batch: dict,
    config: QuickConfig,
    report: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    replay: torch.Tensor | None = None,
) -> nn.Module:
    """Fine-tune ``model`` in place on one ``batch`` (image, label, tags, index) for ``config.steps`` steps,
    keeping its predictions on the normalised ``replay`` images ``(R, 3, h, w)``."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    trained = []
    for name, p in model.named_parameters():
        frozen = config.freeze_encoder and "encoder" in name.split(".")
        p.requires_grad_(flags[name] and not frozen)
        if p.requires_grad:
            trained.append(p)
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    teacher = None
    if replay is not None and len(replay) and config.keep_weight > 0:
        replay = replay.to(device)
        with torch.no_grad():
            teacher = method.predict(model.eval(), replay).float().log_softmax(1)
    model.train()
    _freeze_batchnorm(model)
    for step in range(1, config.steps + 1):
        if should_stop is not None and should_stop():
            break
        loss = method.training_step(model, {**batch, "progress": 1.0}, method_config)["loss"]
        if teacher is not None and replay is not None:  # a few replay images per step, in turn (cheap steps)
            pick = torch.arange(step * config.replay_per_step, (step + 1) * config.replay_per_step) % len(replay)
            student = method.predict(model, replay[pick]).float().log_softmax(1)
            keep = F.kl_div(student, teacher[pick], log_target=True, reduction="none").sum(1).mean()
            loss = loss + config.keep_weight * keep
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if report is not None:
            report(step, config.steps, float(loss.detach()))
    for name, p in model.named_parameters():
        p.requires_grad_(flags[name])
    return model.eval()


def leave_a_core(threads: int | None = None) -> int:
    """Set torch's CPU threads to ``threads`` (default: all cores but one) and return the number.

    The dashboard runs the model in two threads at once (a retrain and the views); with as
    many torch threads as cores each, they oversubscribe the CPU and both slow down many-fold.
    Process-wide, so apps call it once at start-up.
    """
    threads = threads or max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads


# ----------------------------------------------------------------------------- model outputs (pure torch)


@torch.no_grad()
def pixel_features(method: ModuleType, model: nn.Module, images: torch.Tensor) -> torch.Tensor | None:
    """``(B, D, H, W)`` per-pixel features at the input size, or None when the model has none we know.

    In order: the method's ``pixel_features`` (SimFormer's mask features), a unit ``"embed"``
    output (single-stage, SPML), else the last decoder features of the smp model inside it
    (the input of its ``segmentation_head``). No hooks: views may run this beside another thread
    that predicts with the same model.
    """
    hook = optional_hook(method, "pixel_features")
    if hook is not None:
        return hook(model, images).float()
    out = model(images)
    if isinstance(out, dict) and "embed" in out:
        feats = out["embed"]
    else:
        smp_model: Any = next(
            (m for m in model.modules() if all(hasattr(m, a) for a in ("encoder", "decoder", "segmentation_head"))),
            None,
        )
        if smp_model is None:
            return None
        feats = smp_model.decoder(smp_model.encoder(images))
    return F.interpolate(feats.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)


def segmenter_layer(method: ModuleType, model: nn.Module, images: torch.Tensor) -> tuple[str, nn.Module]:
    """``(name, module)``: the deepest encoder stage (``*encoder.layer4``, ``layer3``, ...) that the method's
    ``predict`` runs through (TransferNet has two encoders; only one segments) and whose output is still
    at least 4x4 pixels (``layer4`` of a 32x32 image is one pixel: a CAM of one value)."""
    stages = ("layer4", "layer3", "layer2", "layer1")
    candidates = [
        (n, m) for stage in stages for n, m in model.named_modules() if n.split(".")[-1] == stage and "encoder" in n
    ]
    sizes: dict[str, tuple[int, int]] = {}

    def hook(name):
        def record(module, inputs, output) -> None:  # returns None: the output stays as it is
            sizes.setdefault(name, tuple(output.shape[-2:]))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in candidates]
    try:
        with torch.no_grad():
            method.predict(model, images)
    finally:
        for h in handles:
            h.remove()
    fired = [(n, m) for n, m in candidates if n in sizes]
    if not fired:
        raise ValueError("the model has no encoder stage its predictions run through")
    return next(((n, m) for n, m in fired if min(sizes[n]) >= 4), fired[-1])


def _score_head(method: ModuleType, model: nn.Module, images: torch.Tensor, shape) -> tuple[str, nn.Module]:
    """The last module to run in ``predict`` whose output has the shape of the class scores (the classifier)."""
    fired: list[str] = []
    modules = dict(model.named_modules())

    def hook(name):
        def record(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and tuple(output.shape) == tuple(shape):
                fired.append(name)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items() if n and not list(m.children())]
    try:
        with torch.no_grad():
            method.predict(model, images)
    finally:
        for h in handles:
            h.remove()
    if not fired:
        raise ValueError("no gradient reaches the encoder and no classifier layer was found")
    return fired[-1], modules[fired[-1]]


def segmenter_gradcam(method: ModuleType, model: nn.Module, images: torch.Tensor, cls: int) -> torch.Tensor:
    """Grad-CAM ``(B, H, W)`` of class ``cls`` on the method's segmenter, for every method.

    captum ``LayerGradCam`` on the score of ``cls`` = the summed ``method.predict`` scores of the
    pixels predicted as ``cls`` (the arg-max frozen once, as in captum's segmentation tutorial),
    at the deepest encoder stage the prediction runs through. ``predict`` hides what the model
    returns (a dict for SimFormer and single-stage), so no method needs its own case.
    """
    try:
        from captum.attr import LayerAttribution, LayerGradCam
    except ImportError:
        raise ValueError("Grad-CAM needs captum: pip install 'weakseg-workbench[explain]'") from None
    model = copy.deepcopy(model).eval()
    for module in model.modules():  # captum#156: hooks and in-place ReLUs clash
        if hasattr(module, "inplace"):
            setattr(module, "inplace", False)  # noqa: B010 - any module type with the flag
    with torch.no_grad():
        scores = method.predict(model, images).float()
    selector = torch.zeros_like(scores).scatter_(1, scores.argmax(1, keepdim=True), 1.0)
    if not selector[:, cls].any():
        raise ValueError("the model predicts this class nowhere in the image, so there is no score to explain")
    name, layer = segmenter_layer(method, model, images)

    def class_scores(inp: torch.Tensor) -> torch.Tensor:
        return (method.predict(model, inp).float() * selector).sum((2, 3))

    try:
        with torch.enable_grad():
            cam = LayerGradCam(class_scores, layer).attribute(images, target=int(cls), relu_attributions=True)
    except RuntimeError as err:  # SPML classifies detached embeddings: no gradient reaches the encoder
        if "not have been used in the graph" not in str(err):
            raise
        name, layer = _score_head(method, model, images, scores.shape)
        with torch.enable_grad():
            cam = LayerGradCam(class_scores, layer).attribute(
                images, target=int(cls), relu_attributions=True, attribute_to_layer_input=True
            )
        name += " input"
    cam = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    if not (cam > 0).any():
        raise ValueError(f"no positive evidence for it at {name} (Grad-CAM is zero everywhere)")
    return cam[:, 0].detach()


def cosine_affinity(features: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """Cosine similarity ``(H, W)`` in [-1, 1] of pixel ``(row, col)`` to every pixel of ``(D, H, W)`` features."""
    flat = F.normalize(features.flatten(1), dim=0)  # (D, HW)
    return (flat[:, row * features.shape[2] + col] @ flat).view(features.shape[1:])


# ----------------------------------------------------------------------------- the session


def _shared(name: str) -> property:
    """An attribute every tab of one dashboard reads and writes together (see :meth:`DashboardSession.new_tab`)."""
    return property(lambda self: getattr(self._shared, name), lambda self, value: setattr(self._shared, name, value))


class DashboardSession(param.Parameterized):
    """Dataset, annotation store, model and trainer of one dashboard, with the UI state as params.

    The dataset, store, model, versions, trainer and caches are shared by every tab made with
    :meth:`new_tab`; the params (image, class, overlay, brush...) and the undo stack are each tab's own.
    """

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
    message = param.String(default="", doc="the latest status line for the user")
    accept_worse = param.Boolean(default=False, doc="make a retrain current even when it lowers val mIoU")

    info = _shared("info")
    store = _shared("store")
    split = _shared("split")
    names = _shared("names")
    method = _shared("method")
    method_config = _shared("method_config")
    model = _shared("model")
    class_split = _shared("class_split")
    run_dir = _shared("run_dir")
    out_dir = _shared("out_dir")
    quick_config = _shared("quick_config")
    full_config = _shared("full_config")
    run_config = _shared("run_config")
    versions = _shared("versions")
    pending = _shared("pending")
    work_size = _shared("work_size")
    trainer = _shared("trainer")
    retrain_runs = _shared("retrain_runs")
    closed = _shared("closed")
    _images = _shared("_images")
    _outputs = _shared("_outputs")
    _summaries = _shared("_summaries")
    _lock = _shared("_lock")

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
        **params,
    ) -> None:
        if tuple(store.classes) != tuple(info.classes):
            raise SessionError(f"store classes {list(store.classes)} differ from the dataset's {list(info.classes)}")
        self._shared = SimpleNamespace(current=0, revision=0, editors={})
        self.info, self.store, self.split = info, store, split
        self.names = list_split(info, split)
        self.method, self.method_config = method, method_config
        self.model = model.eval()
        self.class_split = ClassSplit(info.classes, tuple(novel)) if novel else None
        self.run_dir, self.out_dir = run_dir, Path(out_dir)
        self.quick_config, self.full_config = quick, full
        self.run_config = run_config
        self.versions = []  # filled from the first retrain on (version 0: the opened weights)
        self.pending = None  # a finished retrain that lowered val mIoU
        h, w = work_size if work_size else read_image(info.image_path(split, self.names[0])).shape[:2]
        self.work_size = (int(h), int(w))
        self.trainer = Trainer()
        self.retrain_runs = []
        self._images = OrderedDict()
        self._outputs = OrderedDict()
        self._summaries = {}
        self._lock = threading.RLock()  # caches are shared by the page's event loop and view threads
        super().__init__(**params)
        self._shared.current = self.model_version
        self._own_params()

    def new_tab(self) -> DashboardSession:
        """A view of this session for another browser tab: the same store, model, versions and trainer,
        its own image, class, tool settings, overlay, messages and undo stack (undo takes back only its
        own edits). Another tab's edits and retrains reach it through :meth:`sync`."""
        tab = type(self).__new__(type(self))
        tab._shared = self._shared
        param.Parameterized.__init__(
            tab, model_version=self._shared.current, annotation_version=self._shared.revision,
            train_mode=self.train_mode, accept_worse=self.accept_worse,
        )  # fmt: skip
        tab._own_params()
        return tab

    def sync(self) -> bool:
        """Catch up with the other tabs: bump ``annotation_version`` after their edits and follow the
        current model version (the page calls this a few times a second); True when anything changed."""
        changed = False
        if self.annotation_version != self._shared.revision:
            self.annotation_version = self._shared.revision
            changed = True
        if self.model_version != self._shared.current:
            self.model_version = self._shared.current
            changed = True
        return changed

    @property
    def current_version(self) -> int:
        """The model version in use by every tab (``model_version`` follows it at the next :meth:`sync`)."""
        return self._shared.current

    def _own_params(self) -> None:
        self._undo_stack: dict[str, list[list]] = {}  # image -> this tab's edits, newest last
        self._redo_stack: dict[str, list[list]] = {}
        self._ids: dict[int, int] = {}  # item id -> id of the same item re-added by undo/redo
        self.param.watch(lambda e: setattr(self._shared, "current", e.new), "model_version")  # set by hand: all tabs
        classes = dict(zip(self.info.classes, range(self.info.num_classes)))
        self.param.active_class.objects = classes
        self.param.visible.objects = list(self.info.classes)
        self.param.index.bounds = (0, len(self.names) - 1)
        if not self.visible:
            self.visible = list(self.info.classes)

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
            module, model, cfg = engine.load_run(run, device)
            info = load_dataset_info(data if data is not None else cfg["dataset"]["root"])
            if list(info.classes) != cfg["dataset"]["classes"]:
                raise SessionError(
                    f"run {run} was trained on classes {cfg['dataset']['classes']}, the dataset {info.root} has "
                    f"{list(info.classes)}; open the run with its own dataset"
                )
            method_config = engine.method_config_from_json(module, cfg["method_config"])
            work_size = tuple(cfg["image_size"])
            novel = novel_ids(cfg.get("novel"), info.classes, run)
            run_dir = resolve_run(run)[0]  # a weights file inside a run also names its run directory
        else:
            if method not in METHODS:
                raise SessionError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
            module = METHODS[method]
            info = load_dataset_info(data if data is not None else ensure_synthetic())
            method_config = module.Config()
            model = module.build(info.num_classes, method_config, Backbone()).to(engine.pick_device(device))
            work_size, run_dir, cfg = None, None, None
        store_path = Path(store) if store is not None else (run_dir or info.root) / STORE_FILE
        out_dir = Path(out) if out is not None else (run_dir / "dashboard" if run_dir else Path("runs/dashboard"))
        return cls(
            info, AnnotationStore(store_path, info.classes), module, method_config, model, split=split,
            work_size=work_size, novel=novel, run_dir=run_dir, out_dir=out_dir, run_config=cfg, **params,
        )  # fmt: skip

    def close(self) -> None:
        """Stop a running retrain and close the store; every later edit says the session is closed."""
        self.trainer.cancel()
        self.trainer.join(timeout=30)
        self.store.close()
        self.closed = True
        self.message = CLOSED_MESSAGE

    def _check_open(self) -> None:
        if getattr(self, "closed", False):
            raise SessionError(CLOSED_MESSAGE)

    # ------------------------------------------------------------------ dataset

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def colors(self) -> np.ndarray:
        """``(C, 3)`` uint8 class colors of the dataset."""
        return np.asarray(self.info.colors, dtype=np.uint8)

    @property
    def image_name(self) -> str:
        return self.names[self.index]

    @property
    def visible_classes(self) -> list[int]:
        return [self.classes.index(n) for n in self.visible]

    @property
    def novel(self) -> tuple[int, ...]:
        return self.class_split.novel if self.class_split else ()

    def _i(self, index: int | None) -> int:
        i = self.index if index is None else int(index)
        if not 0 <= i < len(self.names):
            raise SessionError(f"image index {i} is outside 0..{len(self.names) - 1} of split {self.split!r}")
        return i

    def image(self, index: int | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8 image at its own size."""
        i = self._i(index)
        with self._lock:
            if i not in self._images:
                self._images[i] = read_image(self.info.image_path(self.split, self.names[i]))
                while len(self._images) > CACHE_SIZE:
                    self._images.popitem(last=False)
            return self._images[i]

    def size(self, index: int | None = None) -> tuple[int, int]:
        return self.image(index).shape[:2]

    def ground_truth(self, index: int | None = None) -> np.ndarray | None:
        """``(H, W)`` uint8 ground truth (255 void), or None when the split has no mask for it."""
        i = self._i(index)
        path = self.info.mask_path(self.split, self.names[i])
        return read_mask(path, self.info, shape=self.size(i)) if path.is_file() else None

    def select(self, name: str) -> None:
        """Open the image called ``name`` (a name of the split, never a path)."""
        if name not in self.names:
            raise SessionError(f"no image {name!r} in split {self.split!r}; pick one of the listed names")
        self.index = self.names.index(name)

    def step(self, delta: int) -> None:
        self.index = int(np.clip(self.index + delta, 0, len(self.names) - 1))

    # ------------------------------------------------------------------ annotations

    def weak_labels(self, index: int | None = None) -> WeakLabels:
        i = self._i(index)
        name = self.names[i]
        if getattr(self, "closed", False) or name not in self.store.images():  # a closed store shows nothing
            return WeakLabels(*self.size(i))
        return self.store.weak_labels(name)

    def items(self, index: int | None = None) -> dict:
        if getattr(self, "closed", False):
            return {}
        return self.store.items(self.names[self._i(index)])

    def annotation_mask(self, index: int | None = None) -> np.ndarray:
        """``(H, W)`` uint8 rasterised annotations: class where drawn, 254 elsewhere."""
        return rasterize(self.weak_labels(index))

    def _edited(self, what: str) -> None:
        self._shared.revision += 1
        self.annotation_version = self._shared.revision
        self.message = what

    def _did(self, change: list) -> None:
        """Remember one of this tab's own edits ``[kind, item_id, before, after]`` for undo."""
        self._shared.editors.setdefault(self.image_name, set()).add(id(self))
        self._undo_stack.setdefault(self.image_name, []).append(change)
        self._redo_stack.pop(self.image_name, None)  # a new edit clears the redo stack

    def _id(self, item_id: int) -> int:
        while item_id in self._ids:
            item_id = self._ids[item_id]
        return item_id

    def add_point(self, row: float, col: float, cls: int | None = None) -> int:
        """Store a click of class ``cls`` (default: the active class) at once; return its item id."""
        self._check_open()
        h, w = self.size()
        row, col = _clamp_pixel(row, col, h, w)
        point = Point(row, col, self.active_class if cls is None else cls)
        item_id = self.store.add(self.image_name, point, (h, w))
        self._did(["add", item_id, None, self.store.items(self.image_name)[item_id]])
        self._edited(f"point {item_id} ({self.classes[self.store.items(self.image_name)[item_id].cls]}) stored")
        return item_id

    def move_point(self, item_id: int, row: float, col: float) -> None:
        self._check_open()
        h, w = self.size()
        row, col = _clamp_pixel(row, col, h, w)
        old = self._item(item_id)
        if not isinstance(old, Point):
            raise WeakLabelError(f"item {item_id} of {self.image_name!r} is a {type(old).__name__}, not a point")
        new = dataclasses.replace(old, row=row, col=col)
        self.store.replace(self.image_name, item_id, new)
        self._did(["replace", item_id, old, new])
        self._edited(f"point {item_id} moved")

    def add_scribble(self, path, cls: int | None = None, width: float | None = None) -> int:
        """Store a stroke ``path`` of ``(row, col)`` vertices with the active class and brush width."""
        self._check_open()
        path = tuple((float(r), float(c)) for r, c in path)
        if len(path) == 1:
            path = path * 2  # a dab of the brush: a zero-length stroke is still a stroke of the brush's width
        scribble = Scribble(path, self.active_class if cls is None else cls, width or self.brush_width)
        item_id = self.store.add(self.image_name, scribble, self.size())
        self._did(["add", item_id, None, self.store.items(self.image_name)[item_id]])
        self._edited(f"scribble {item_id} stored ({len(path)} vertices, width {scribble.width:g})")
        return item_id

    def remove(self, item_id: int) -> None:
        self._check_open()
        old = self._item(item_id)
        self.store.remove(self.image_name, item_id)
        self._did(["remove", item_id, old, None])
        self._edited(f"item {item_id} removed")

    def _item(self, item_id: int):
        item = self.store.items(self.image_name).get(item_id)
        if item is None:
            raise WeakLabelError(f"item {item_id} of {self.image_name!r} is gone (removed here or in another tab)")
        return item

    def _apply(self, change: list, side: int) -> None:
        """Put item ``change[1]`` in its state before (``side=0``) or after (``side=1``) the edit."""
        kind, item_id, before, after = change
        image, item_id, target = self.image_name, self._id(item_id), (before, after)[side]
        current = self.store.items(image).get(item_id)
        if current is None and target is not None:  # removed: add it again (a new id that stands for the old)
            self._ids[item_id] = self.store.add(image, target, self.size())
        elif current is not None and target is None:
            self.store.remove(image, item_id)
        elif current is not None:
            self.store.replace(image, item_id, target)

    def _step_history(self, undo: bool) -> bool:
        self._check_open()
        image = self.image_name
        source, dest = (self._undo_stack, self._redo_stack) if undo else (self._redo_stack, self._undo_stack)
        stack = source.get(image) or []
        if self._shared.editors.get(image, set()) <= {id(self)}:
            # no other tab edited this image since the session opened: the store's history is this tab's
            # (kept across restarts, so an undo after a restart still works)
            done = image in self.store.images() and (self.store.undo(image) if undo else self.store.redo(image))
            if done and stack:
                dest.setdefault(image, []).append(stack.pop())
        elif stack:  # other tabs edited it too: take back only this tab's own latest edit
            change = stack.pop()
            self._apply(change, side=0 if undo else 1)
            dest.setdefault(image, []).append(change)
            done = True
        else:
            done = False
        self._edited(("undone" if undo else "redone") if done else f"nothing to {'undo' if undo else 'redo'}")
        return bool(done)

    def undo(self) -> bool:
        """Take back this tab's latest edit of the current image (other tabs' edits stay)."""
        return self._step_history(undo=True)

    def redo(self) -> bool:
        """Redo this tab's edit undone last; a new edit clears the redo stack."""
        return self._step_history(undo=False)

    def handle_key(self, key: str) -> str:
        """Keyboard shortcuts: digits pick the class (1 = first), ``[``/``]`` brush width, ``z``/``Z`` undo/redo, ``n``/``p`` images."""
        if key.isdigit() and len(key) == 1:
            cls = (int(key) - 1) % 10
            if cls < len(self.classes):
                self.active_class = cls
                return f"class {self.classes[cls]}"
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
        path = Path(path) if path is not None else self.out_dir / "exports" / "annotations.json"
        save_weak_labels(path, self.store.to_weak_label_set())
        self.message = f"annotations written to {path}"
        return path

    def export_png(self, out_dir: str | Path | None = None) -> list[Path]:
        """One palette PNG index mask per annotated image of the split (254 = unlabelled)."""
        out_dir = Path(out_dir) if out_dir is not None else self.out_dir / "exports" / "masks"
        written = export_png(self.store, self.info, self.split, out_dir)
        self.message = f"{len(written)} masks written to {out_dir}"
        return written

    def import_json_text(self, text: str) -> int:
        """Import a weak-label JSON document (an upload); every record is validated before anything is stored."""
        from workbench.weak_labels import JSON_FORMAT, from_json_dict

        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SessionError(f"upload is not valid JSON ({err}); upload a file written by Export JSON") from None
        except RecursionError:
            raise SessionError(
                "upload is JSON nested too deeply to be a weak-label file; upload a file written by Export JSON"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT or not isinstance(doc.get("images"), dict):
            raise SessionError(f"upload is not a weak-label file (expected 'format': '{JSON_FORMAT}' and 'images')")
        if tuple(doc.get("classes", ())) != self.classes:
            raise SessionError(f"upload is for classes {doc.get('classes')}, this dataset has {list(self.classes)}")
        weak_by_name = {
            name: from_json_dict(record, where=f"upload: image {name!r}") for name, record in doc["images"].items()
        }
        return self._import_new(weak_by_name)

    def _import_new(self, weak_by_name: dict[str, WeakLabels], note: str = "") -> int:
        """Validate every image's labels, then store what the store does not hold yet (one transaction)."""
        self._check_open()
        labels = {}
        for name, weak in weak_by_name.items():
            if name not in self.names:
                raise SessionError(f"upload names image {name!r}, which is not in split {self.split!r}")
            weak = weak.validate(len(self.classes), where=f"upload: image {name!r}")
            if (weak.height, weak.width) != self.size(self.names.index(name)):
                raise SessionError(f"upload: image {name!r} was annotated at {weak.height}x{weak.width}, it is "
                                   f"{self.size(self.names.index(name))}")  # fmt: skip
            labels[name] = _without_stored(weak, self.store.weak_labels(name) if name in self.store.images() else None)
        labels = {n: w for n, w in labels.items() if w.points or w.scribbles or w.boxes or w.tags}
        count = self.store.import_weak_label_set(WeakLabelSet(self.classes, labels)) if labels else 0
        self._edited(f"imported annotations of {count} images" + ("" if count else " (all were already stored)") + note)
        return count

    def export_labels(self, fmt: str = "weakseg", path: str | Path | None = None) -> Path:
        """Every annotation as a weak-label JSON file (``weakseg``) or a Label Studio, CVAT or COCO file."""
        if fmt == "weakseg":
            return self.export_json(path)
        from workbench import interchange

        suffix = {"labelstudio": "labelstudio.json", "cvat": "cvat.xml", "coco": "coco.json"}.get(fmt)
        if suffix is None:
            raise SessionError(f"unknown export format {fmt!r}; use one of {list(LABEL_FORMATS)}")
        path = Path(path) if path is not None else self.out_dir / "exports" / f"annotations.{suffix}"
        files = {n: self.info.image_path(self.split, n).name for n in self.store.images() if n in self.names}
        interchange.export_labels(path, fmt, self.store.to_weak_label_set(), image_files=files)
        self.message = f"annotations written to {path} ({fmt})"
        return path

    def import_labels_bytes(self, data: bytes, fmt: str = "weakseg") -> int:
        """Import an upload in any of :data:`LABEL_FORMATS`; dense masks in it are not annotations and are skipped."""
        if fmt == "weakseg":
            try:
                return self.import_json_text(bytes(data).decode("utf-8"))
            except UnicodeDecodeError as err:
                raise SessionError(f"upload is not UTF-8 text ({err}); upload a file written by Export") from None
        if fmt not in LABEL_FORMATS:
            raise SessionError(f"unknown import format {fmt!r}; use one of {list(LABEL_FORMATS)}")
        import tempfile

        from workbench import interchange

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
        note = f"; {len(masks)} dense masks in the file skipped (the store keeps weak labels)" if masks else ""
        return self._import_new(dict(weak_set.labels), note)

    # ------------------------------------------------------------------ model outputs

    def _tensor(self, index: int | None = None) -> torch.Tensor:
        """``(1, 3, h, w)`` normalised image at the working size, on the model's device."""
        return image_tensor(self.image(index), self.work_size).to(next(self.model.parameters()).device)

    def _cached(self, key: tuple, compute: Callable):
        """``compute()`` once per model version; the lock guards the dict, not the (thread-safe) inference."""
        key = (self.current_version, *key)
        with self._lock:
            if key in self._outputs:
                return self._outputs[key]
        value = compute()
        with self._lock:
            self._outputs[key] = value
            while len(self._outputs) > CACHE_SIZE:
                self._outputs.popitem(last=False)
        return value

    def probabilities(self, index: int | None = None) -> np.ndarray:
        """``(C, H, W)`` float32 class probabilities of image ``index`` at its own size (cached per model version)."""
        i = self._i(index)
        return self._cached(("probs", i), lambda: self.probabilities_of(self.image(i)))

    @torch.no_grad()
    def probabilities_of(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` class probabilities for any ``(H, W, 3)`` uint8 image (e.g. an upload), not cached."""
        self.model.eval()
        return engine.predict_scores(self.method.predict, self.model, image, self.work_size).softmax(0).cpu().numpy()

    def prediction(self, index: int | None = None) -> np.ndarray:
        """``(H, W)`` uint8 arg-max prediction."""
        return self.probabilities(index).argmax(0).astype(np.uint8)

    def labelled_accuracy(self, index: int | None = None) -> tuple[int, int]:
        """``(correct, labelled)``: annotated pixels the prediction agrees with (a live check after each retrain)."""
        label = self.annotation_mask(index)
        seen = label < len(self.classes)
        return int((self.prediction(index)[seen] == label[seen]).sum()), int(seen.sum())

    def features(self, index: int | None = None) -> torch.Tensor | None:
        """``(D, h, w)`` pixel features at the working size, or None."""
        i = self._i(index)

        def compute():
            feats = pixel_features(self.method, self.model, self._tensor(i))
            return None if feats is None else feats[0].cpu()

        return self._cached(("features", i), compute)

    def affinity(self, row: float, col: float, index: int | None = None) -> tuple[np.ndarray, str] | None:
        """``((H, W) affinity, source)`` of pixel ``(row, col)`` to every pixel, or None when not available.

        SimNet's same-class probability for methods with ``simnet_affinity``, else the cosine
        similarity of the pixel features mapped to [0, 1].
        """
        i = self._i(index)
        feats = self.features(i)
        if feats is None:
            return None
        (h, w), (H, W) = self.work_size, self.size(i)
        r = int(np.clip(round((row + 0.5) * h / H - 0.5), 0, h - 1))
        c = int(np.clip(round((col + 0.5) * w / W - 0.5), 0, w - 1))
        simnet = optional_hook(self.method, "simnet_affinity")
        if simnet is not None:
            with torch.no_grad():
                values, source = simnet(self.model, feats, r, c), "SimNet"
        else:
            values, source = (cosine_affinity(feats, r, c) + 1) / 2, "cosine of pixel features"
        return _resize_map(values.float(), (H, W)), source

    def proposals(self, index: int | None = None) -> list[dict] | None:
        """SimFormer-style proposals ``{mask (H, W), cls, score}`` best first, or None when the method has none."""
        hook = optional_hook(self.method, "proposals")
        if hook is None:
            return None
        i = self._i(index)

        def compute():
            props = hook(self.model, self._tensor(i)[0])
            return [{**p, "mask": _resize_map(torch.as_tensor(p["mask"]), self.size(i))} for p in props]

        return self._cached(("proposals", i), compute)

    def cam(self, cls: int | None = None, index: int | None = None) -> np.ndarray | str:
        """``(H, W)`` Grad-CAM of class ``cls`` normalised to [0, 1], or a string saying why there is none."""
        i, cls = self._i(index), self.active_class if cls is None else cls

        def compute():
            try:
                values = segmenter_gradcam(self.method, self.model, self._tensor(i), cls)[0]
            except ValueError as err:
                return f"no Grad-CAM of {self.classes[cls]}: {err}"
            values = values / values.max().clamp(min=1e-6)
            return _resize_map(values.float(), self.size(i))

        return self._cached(("cam", i, cls), compute)

    def point_pseudo_mask(self, index: int | None = None) -> np.ndarray | str:
        """``(H, W)`` uint8 pseudo-mask grown from the annotations over the model's pixel features
        (the single-stage method's on-the-fly rule), or a string saying why there is none."""
        try:
            from workbench.methods import single_stage
        except ImportError:
            return "the point pseudo-mask needs workbench.methods.single_stage, which this installation lacks"
        i = self._i(index)
        label = self._work_label(i)
        if not (label < len(self.classes)).any():
            return "no points or scribbles on this image yet: click to add some"
        feats = self.features(i)
        if feats is None:
            return "not available for this model (it exposes no pixel features)"
        # the run's own knobs when it is a single-stage run, the defaults for any other method
        config = self.method_config if isinstance(self.method_config, single_stage.Config) else single_stage.Config()
        embed = F.normalize(feats[None].float(), dim=1).to(self._tensor(i).device)
        label_t = torch.from_numpy(label.astype(np.int64))[None].to(embed.device)
        pseudo = single_stage.pseudo_mask(embed, self._tensor(i), label_t, len(self.classes), config)[0]
        small = pseudo.clamp(max=255).byte().cpu().numpy()
        return np.asarray(resize_pair(np.zeros((*small.shape, 3), np.uint8), small, *self.size(i))[1])

    # ------------------------------------------------------------------ evaluation and runs

    def _evaluate_model(self, model: nn.Module, split: str = "val") -> dict:
        dataset = SegmentationDataset(self.info, split, "dense", size=self.work_size, include_gt=True)
        return engine.evaluate(self.method, model.eval(), dataset, next(model.parameters()).device, self.class_split)

    def evaluate(self, split: str = "val") -> dict:
        """``engine.evaluate`` of the current model on ``split`` (cached per model version)."""
        key = (self.current_version, split)
        if key not in self._summaries:
            dataset = SegmentationDataset(self.info, split, "dense", size=self.work_size, include_gt=True)
            device = next(self.model.parameters()).device
            summary = engine.evaluate(self.method, self.model, dataset, device, self.class_split)
            with self._lock:
                self._summaries[key] = summary
        return self._summaries[key]

    def uncertainty_ranking(self, kind: str | None = None, batch: int = 16) -> list[dict]:
        """``{index, name, uncertainty, annotations}`` of every image of the split, most uncertain first.

        The mean entropy (or margin) of the model's own prediction, no ground truth needed: with
        no masks at all, the images at the top are where clicks teach the model most (ilastik's
        and MONAI Label's active-learning order). Cached per model version.
        """
        kind = kind or self.uncertainty
        if kind not in UNCERTAINTY:
            raise SessionError(f"unknown uncertainty {kind!r}; use one of {list(UNCERTAINTY)}")

        def compute() -> list[float]:
            scores = []
            device = next(self.model.parameters()).device
            for start in range(0, len(self.names), batch):
                images = torch.cat([image_tensor(self.image(i), self.work_size) for i in
                                    range(start, min(start + batch, len(self.names)))]).to(device)  # fmt: skip
                with torch.no_grad():
                    probs = self.method.predict(self.model.eval(), images).float().softmax(1).cpu().numpy()
                scores += [float(_uncertainty(p, kind).mean()) for p in probs]
            return scores

        scores = self._cached(("ranking", kind), compute)
        stored = set(self.store.images()) if not getattr(self, "closed", False) else set()
        rows = [
            {"index": i, "name": n, "uncertainty": scores[i],
             "annotations": len(self.store.items(n)) if n in stored else 0}
            for i, n in enumerate(self.names)
        ]  # fmt: skip
        return sorted(rows, key=lambda r: -r["uncertainty"])

    def per_image_iou(self) -> list[dict]:
        """``{index, name, miou}`` of every image of the browsed split, worst first."""
        rows = self.evaluate(self.split)["per_image"]
        table = [{"index": self.names.index(r["name"]), "name": r["name"], "miou": r["miou"]} for r in rows]
        return sorted(table, key=lambda r: (math.isnan(r["miou"]), r["miou"]))

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

    def _work_label(self, index: int) -> np.ndarray:
        """Annotations of image ``index`` rasterised at the working size, novel classes hidden under a split."""
        weak = self.weak_labels(index).resized(*self.work_size)
        label = rasterize(weak)
        return self.class_split.hide_novel(label) if self.class_split else label

    def _quick_batch(self, index: int) -> dict:
        weak = self.weak_labels(index).resized(*self.work_size)
        image = self._tensor(index)[0].cpu()
        labels = [self._work_label(index)]
        images = [image]
        if self.quick_config.flip:
            flipped = rasterize(weak.flipped())
            labels.append(self.class_split.hide_novel(flipped) if self.class_split else flipped)
            images.append(image.flip(-1))
        tags = torch.from_numpy(weak.tag_vector(len(self.classes)))
        return {
            "image": torch.stack(images),
            "label": torch.from_numpy(np.stack(labels).astype(np.int64)),
            "tags": tags[None].expand(len(images), -1).clone(),
            "index": torch.full((len(images),), index, dtype=torch.long),
        }

    def _replay_images(self, index: int) -> torch.Tensor | None:
        """``(R, 3, h, w)`` other images of the split whose predictions a quick retrain keeps (a fixed draw per image)."""
        others = [i for i in range(len(self.names)) if i != index]
        count = min(self.quick_config.replay, len(others))
        if count == 0:
            return None
        picks = np.random.default_rng(index).choice(others, size=count, replace=False)
        return torch.cat([self._tensor(int(i)) for i in picks]).cpu()

    def retrain(self, mode: str | None = None) -> None:
        """Start a quick or full retrain in the background; :meth:`poll` applies the result when it is done."""
        self._check_open()
        mode = mode or self.train_mode
        if mode == "quick":
            weak = self.weak_labels(self.index)
            if not (weak.points or weak.scribbles or weak.boxes):  # novel-class clicks count (as tags under a split)
                raise SessionError(
                    f"image {self.image_name} has no points or scribbles yet; annotate it before a quick retrain"
                )
            batch = self._quick_batch(self.index)
            replay = self._replay_images(self.index)
            model = copy.deepcopy(self.model)

            baseline = self._summaries.get((self.current_version, "val"))

            def job(report, should_stop):
                before = baseline or self._evaluate_model(model)
                quick_finetune(
                    self.method, self.method_config, model, batch, self.quick_config, report, should_stop, replay
                )
                return model.eval(), self._evaluate_model(model), before

        elif mode == "full":
            job = self._full_job()
        else:
            raise SessionError(f"unknown retrain mode {mode!r}; use 'quick' or 'full'")
        self.trainer.start(job, f"{mode} retrain")
        self.message = f"{mode} retrain started"

    def training_labels(self) -> WeakLabelSet:
        """What a full retrain learns from: the loaded run's own weak labels of the split plus every annotation.

        Training on the annotations alone is what collapsed the model (val mIoU 0.63 -> 0.09): a
        few clicked images replaced the thousands of labels the run was trained on. A run that
        simulated its labels from masks gets the same simulation again (same kinds, seed and
        image keys); one trained from a weak-label file gets that file's labels.
        """
        own = self._run_labels()
        annotated = self.store.to_weak_label_set().labels
        merged: dict[str, WeakLabels] = {}
        for name in self.names:
            base, added = own.get(name), annotated.get(name)
            if base is None or added is None:
                either = base if added is None else added
                if either is not None:
                    merged[name] = either
                continue
            merged[name] = dataclasses.replace(
                base, tags=base.tags | added.tags, points=base.points + added.points,
                scribbles=base.scribbles + added.scribbles, boxes=base.boxes + added.boxes,
            )  # fmt: skip
        return WeakLabelSet(self.classes, merged)

    def _run_labels(self) -> dict[str, WeakLabels]:
        cfg = self.run_config or {}
        tc = cfg.get("train_config") or {}
        kinds = [k for k in str(cfg.get("supervision", "")).split("+") if k in ANNOTATION_KINDS]
        if not kinds:
            return {}
        if tc.get("weak_labels"):
            try:
                return dict(load_weak_labels(tc["weak_labels"]).labels)
            except (OSError, WeakLabelError):
                return {}
        known = {f.name for f in dataclasses.fields(engine.TrainConfig)}
        try:
            sim = engine.TrainConfig(**{k: v for k, v in tc.items() if k in known and k != "image_size"}).simulation
        except (TypeError, ValueError):
            return {}
        labels = {}
        for name in self.names:
            path = self.info.mask_path(self.split, name)
            if path.is_file():
                mask = read_mask(path, self.info)
                labels[name] = simulate(mask, kinds, sim, key=name, num_classes=self.info.num_classes)
        return labels

    def _full_job(self) -> Callable:
        kinds = [k for k in ANNOTATION_KINDS if k in self.method.SUPERVISION]
        if not kinds:
            raise SessionError(
                f"method {self.method.__name__.rsplit('.', 1)[-1]} learns from {self.method.SUPERVISION}, not from "
                "points, scribbles or boxes; open a run of a sparse-label method (e.g. partial_ce) to retrain on annotations"
            )
        if not self.store.images():
            raise SessionError("no annotations yet: add points or scribbles before a full retrain")
        out = self.out_dir / time.strftime("retrain-%Y%m%d-%H%M%S")
        labels = out / "annotations.json"
        save_weak_labels(labels, self.training_labels())
        full = self.full_config
        config = engine.TrainConfig(
            data=str(self.info.root), out=str(out), supervision="+".join(kinds), weak_labels=str(labels),
            train_split=self.split, image_size=self.work_size, epochs=full.epochs, batch_size=full.batch_size,
            lr=full.lr, log_every=1, novel=",".join(self.classes[c] for c in self.novel) or None,
            device=str(next(self.model.parameters()).device),
        )  # fmt: skip
        n = len(self.names)
        total = full.epochs * max(1, n // full.batch_size if n > full.batch_size else 1)
        model = copy.deepcopy(self.model)
        baseline = self._summaries.get((self.current_version, "val"))
        self.retrain_runs.append(out)

        def job(report, should_stop):
            def on_log(record: dict) -> None:
                if "loss" in record:
                    report(record["step"], total, record["loss"])

            before = baseline or self._evaluate_model(model)
            summary = engine.train(self.method, self.method_config, config, on_log, should_stop, model=model)
            if "miou" not in summary:  # stopped early: evaluate what there is
                summary = self._evaluate_model(model)
            return model.eval(), summary, before

        return job

    def poll(self) -> dict:
        """Trainer snapshot; when a job has just finished, its model becomes a new version (call from the UI thread).

        The new version becomes current unless its val mIoU is lower than the current one's: then
        it waits in :attr:`pending` and the message says so, before anything is replaced
        (:meth:`accept_pending` makes it current anyway, :meth:`use_version` picks any version).
        """
        snapshot = self.trainer.snapshot()
        finished = self.trainer.take_result()
        if finished is not None:
            status, result = finished
            message = snapshot["message"]
            if status == "done":
                model, summary, baseline = result
                if baseline is not None:
                    self._summaries.setdefault((self.current_version, "val"), baseline)
                version = self._add_version(model.eval(), summary, message.split(":")[0])
                before = self.evaluate("val")["miou"]
                after = version.summary["miou"]
                if after < before and not self.accept_worse:
                    self.pending = version
                    message += (
                        f"; it lowered val mIoU {before:.3f} -> {after:.3f}, so v{self.current_version} stays current: "
                        f"'use v{version.number}' takes it anyway"
                    )
                else:
                    self.use_version(version.number)
                    message += f"; val mIoU {before:.3f} -> {after:.3f}"
            self.message = message
            snapshot["finished"] = status
        return snapshot

    def _add_version(self, model: nn.Module, summary: dict, label: str) -> ModelVersion:
        if not self.versions:  # the weights the session opened with are version 0
            self.versions.append(ModelVersion(0, "opened", _state_copy(self.model), self.evaluate("val")))
        number = max(max(v.number for v in self.versions), self.current_version) + 1  # never a number in use
        version = ModelVersion(number, label, _state_copy(model), summary)
        self.versions.append(version)
        with self._lock:
            self._summaries[(number, "val")] = summary
        return version

    def use_version(self, number: int) -> None:
        """Make model version ``number`` current again (its weights, cached outputs and val summary)."""
        version = next((v for v in self.versions if v.number == number), None)
        if version is None:
            known = [v.number for v in self.versions] or [self.current_version]
            raise SessionError(f"no model version {number}; versions: {known}")
        model = copy.deepcopy(self.model)
        model.load_state_dict(version.state)
        self.model = model.eval()
        if self.pending is not None and self.pending.number == number:
            self.pending = None
        self._shared.current = self.model_version = number
        self.message = f"model v{number} ({version.label}) is current: val mIoU {version.summary['miou']:.3f}"

    def accept_pending(self) -> None:
        """Make the retrain that lowered val mIoU current anyway."""
        if self.pending is None:
            raise SessionError("no retrain is waiting: every finished retrain is already a version")
        self.use_version(self.pending.number)

    def version_table(self) -> list[dict]:
        """``{version, made by, val mIoU, current, <class IoU>...}`` of every version, oldest first."""
        rows = []
        for v in self.versions:
            row = {"version": v.number, "made by": v.label, "val mIoU": v.summary["miou"],
                   "current": v.number == self.current_version}  # fmt: skip
            row.update({name: iou for name, iou in v.summary["per_class_iou"].items()})
            rows.append(row)
        return rows

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the running job ends, then :meth:`poll` (for notebooks, tests and benchmarks)."""
        self.trainer.join(timeout)
        return self.poll()

    def cancel(self) -> None:
        self.trainer.cancel()
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


def _without_stored(weak: WeakLabels, stored: WeakLabels | None) -> WeakLabels:
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


def _uncertainty(probs: np.ndarray, kind: str) -> np.ndarray:
    from workbench import views  # pure numpy maps; views imports no session

    return views.uncertainty_map(probs, kind)


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


def _clamp_pixel(row: float, col: float, height: int, width: int) -> tuple[float, float]:
    """Clicks on the border half-pixel land on the edge pixel; clicks further out are refused."""
    if not (math.isfinite(row) and math.isfinite(col)):
        raise WeakLabelError(f"click at (row={row}, col={col}) is not a position; click on the image")
    if not (-1 <= row <= height and -1 <= col <= width):
        raise WeakLabelError(
            f"click at (row={row:.1f}, col={col:.1f}) is off the {height}x{width} image; click inside it"
        )
    return float(np.clip(row, 0, height - 1)), float(np.clip(col, 0, width - 1))


def _resize_map(values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` float map -> ``(H, W)`` float32 numpy, bilinear."""
    if tuple(values.shape[-2:]) != tuple(size):
        values = F.interpolate(values[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    return values.float().cpu().numpy()

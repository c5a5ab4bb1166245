"""The retrainer: quick and full retrain jobs in a background thread, and the model versions they make.

A retrain fine-tunes a copy of the current model (:func:`quick_finetune` on the edited image, or
the method's own ``loop.train`` on the run's labels plus every annotation); the UI polls.
Every finished retrain is a new :class:`ModelVersion` with its val summary. The **gate**: a
version that lowers val mIoU is listed but not made current until the user says so. The
retrained model's prediction of the edited image is shown (a *preview*, cached under the new
version's number) as soon as training ends, while the gate's val evaluation still runs, so the
mask follows an edit before the slower check has finished; nothing is replaced before the gate.

At most ``max_in_memory`` versions keep their weights in memory; older ones move to
``<out>/versions/<dashboard>/v<N>.pt``, one folder per dashboard so that two dashboards on one
run never write each other's files, each file checked against the SHA-256 it was written with before
it is loaded again (or dropped, with a message, when that cannot be written). The
current, the best and a pending version always stay in memory.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.dashboard.outputs import ModelOutputs
from workbench.dashboard.workspace import AnnotationWorkspace, SessionError
from workbench.data.folder import read_mask
from workbench.io import atomic_write_bytes
from workbench.labels.weak_labels import (
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    load_weak_labels,
    rasterize,
    save_weak_labels,
    simulate,
)
from workbench.train import loop
from workbench.train.config import TrainConfig

ANNOTATION_KINDS = ("points", "scribbles", "boxes")
MAX_VERSIONS_IN_MEMORY = 6  # model versions whose weights stay in memory (a ResNet-18 Unet: ~60 MB each)


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
    The learning rate is 5e-4: at 1e-3 AdamW's first steps, which move every decoder weight by about
    the learning rate, jolted the model (loss 0.85 -> 6.9 at step 2); on a model that had reached
    0.434 val mIoU the retrain then lowered it to 0.407 and learned 5 of 8 clicks. At 5e-4, on four
    images: 0.434 -> 0.449-0.473, 7 or 8 of 8 clicks learned.
    """

    steps: int = 10
    lr: float = 5e-4
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
    """Full retrain: the method's own training on every annotation (``loop.train``), from the current weights."""

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
        self._preview = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: Callable, name: str = "training") -> None:
        if self.running:
            raise SessionError("a training job is already running; cancel it or wait for it to finish")
        self._stop.clear()
        with self._lock:
            self.status, self.progress, self.losses, self.message = "running", 0.0, [], f"{name}: starting"
            self._result, self._taken, self._preview = None, False, None
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

    def show(self, value) -> None:
        """From the job: hand an early result (a preview) to the UI thread, which takes it with :meth:`take_preview`."""
        with self._lock:
            self._preview = value

    def take_preview(self):
        """The job's latest preview, once; None when there is none."""
        with self._lock:
            value, self._preview = self._preview, None
            return value

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


# ----------------------------------------------------------------------------- versions


@dataclass
class ModelVersion:
    """One model of the session: its weights (CPU copies, or a file once moved out of memory), what made
    it, and its val summary."""

    number: int
    label: str
    state: dict | None
    summary: dict
    path: Path | None = None
    sha256: str | None = None  # of the file at ``path``, taken when this dashboard wrote it

    @property
    def kept(self) -> str:
        """Where its weights are: ``memory``, ``disk`` or ``dropped``."""
        return "memory" if self.state is not None else ("disk" if self.path is not None else "dropped")


def state_copy(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Retrainer:
    """Retrain jobs on the workspace's annotations, the versions they make, and the val gate."""

    def __init__(
        self,
        workspace: AnnotationWorkspace,
        outputs: ModelOutputs,
        *,
        run_dir: Path | None = None,
        quick: QuickConfig = QuickConfig(),
        full: FullConfig = FullConfig(),
        run_config: dict | None = None,
        max_in_memory: int = MAX_VERSIONS_IN_MEMORY,
    ) -> None:
        if max_in_memory < 2:
            raise SessionError(
                f"keep at least 2 model versions in memory (the current and the best), got {max_in_memory}"
            )
        self.workspace, self.outputs = workspace, outputs
        self.run_dir, self.run_config = run_dir, run_config
        self.quick_config, self.full_config = quick, full
        self.max_in_memory = max_in_memory
        self.trainer = Trainer()
        self.versions: list[ModelVersion] = []  # filled from the first retrain on (version 0: the opened weights)
        self.pending: ModelVersion | None = None  # a finished retrain that lowered val mIoU
        self.preview: tuple[int, int] | None = None  # (version, image) shown before the gate decided
        self.retrain_runs: list[Path] = []
        self._issued = 0  # highest version number handed to a job (numbers are never reused)
        # this dashboard's own folder for versions moved out of memory: another one on the run has its own
        self.versions_dir = self.out_dir / "versions" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"

    @property
    def method(self) -> ModuleType:
        return self.outputs.method

    @property
    def out_dir(self) -> Path:
        return self.workspace.out_dir

    def _new_number(self) -> int:
        self._issued = max([self._issued, self.outputs.version, *(v.number for v in self.versions)]) + 1
        return self._issued

    # ------------------------------------------------------------------ jobs

    def quick_batch(self, index: int) -> dict:
        ws, size = self.workspace, self.outputs.work_size
        weak = ws.weak_labels(index).resized(*size)
        image = self.outputs.tensor(index)[0].cpu()
        labels, images = [ws.work_label(index, size)], [image]
        if self.quick_config.flip:
            flipped = rasterize(weak.flipped())
            labels.append(ws.class_split.hide_novel(flipped) if ws.class_split else flipped)
            images.append(image.flip(-1))
        tags = torch.from_numpy(weak.tag_vector(len(ws.classes)))
        return {
            "image": torch.stack(images),
            "label": torch.from_numpy(np.stack(labels).astype(np.int64)),
            "tags": tags[None].expand(len(images), -1).clone(),
            "index": torch.full((len(images),), index, dtype=torch.long),
        }

    def replay_images(self, index: int) -> torch.Tensor | None:
        """``(R, 3, h, w)`` other images of the split whose predictions a quick retrain keeps (a fixed draw per image)."""
        others = [i for i in range(len(self.workspace.names)) if i != index]
        count = min(self.quick_config.replay, len(others))
        if count == 0:
            return None
        picks = np.random.default_rng(index).choice(others, size=count, replace=False)
        return torch.cat([self.outputs.tensor(int(i)) for i in picks]).cpu()

    def start(self, mode: str, index: int) -> None:
        """Start a quick or full retrain in the background; :meth:`poll` applies the result when it is done."""
        self.workspace.check_open()
        if self.trainer.running:
            raise SessionError("a training job is already running; cancel it or wait for it to finish")
        if mode == "quick":
            weak = self.workspace.weak_labels(index)
            if not (weak.points or weak.scribbles or weak.boxes):  # novel-class clicks count (as tags under a split)
                raise SessionError(
                    f"image {self.workspace.names[index]} has no points or scribbles yet; annotate it before a quick retrain"
                )
            train = self._quick_training(index)
        elif mode == "full":
            train = self._full_training()
        else:
            raise SessionError(f"unknown retrain mode {mode!r}; use 'quick' or 'full'")
        current, version = self.outputs.model, self.outputs.version  # never changed in place: a swap replaces it
        baseline = self.outputs.summary(version)
        model = copy.deepcopy(current)
        number = self._new_number()
        image = self.workspace.image(index)

        def job(report, should_stop):
            summary = train(model, report, should_stop)
            if should_stop():
                return None
            # the mask first: the new model's prediction of the edited image, before the slower val check
            self.trainer.show((number, index, self.outputs.probabilities_of(image, model)))
            summary = summary or self.outputs.evaluate_model(model)
            return model.eval(), summary, baseline or self.outputs.evaluate_model(current), version, number

        self.trainer.start(job, f"{mode} retrain")

    def _quick_training(self, index: int) -> Callable:
        batch, replay = self.quick_batch(index), self.replay_images(index)
        method, method_config, config = self.method, self.outputs.method_config, self.quick_config

        def train(model, report, should_stop) -> None:
            quick_finetune(method, method_config, model, batch, config, report, should_stop, replay)

        return train

    def training_labels(self) -> WeakLabelSet:
        """What a full retrain learns from: the loaded run's own weak labels of the split plus every annotation.

        Training on the annotations alone is what collapsed the model (val mIoU 0.63 -> 0.09): a
        few clicked images replaced the thousands of labels the run was trained on. A run that
        simulated its labels from masks gets the same simulation again (same kinds, seed and
        image keys); one trained from a weak-label file gets that file's labels.
        """
        ws = self.workspace
        own = self._run_labels()
        annotated = ws.store.to_weak_label_set().labels
        merged: dict[str, WeakLabels] = {}
        for name in ws.names:
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
        return WeakLabelSet(ws.classes, merged)

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
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        try:
            sim = TrainConfig(**{k: v for k, v in tc.items() if k in known and k != "image_size"}).simulation
        except (TypeError, ValueError):
            return {}
        ws, labels = self.workspace, {}
        for name in ws.names:
            path = ws.info.mask_path(ws.split, name)
            if path.is_file():
                mask = read_mask(path, ws.info)
                labels[name] = simulate(mask, kinds, sim, key=name, num_classes=ws.info.num_classes)
        return labels

    def full_refusal(self) -> str | None:
        """Why a full retrain cannot run with this method (None: it can), known before anyone asks for one."""
        if any(k in self.method.SUPERVISION for k in ANNOTATION_KINDS):
            return None
        return (
            f"method {self.method.__name__.rsplit('.', 1)[-1]} learns from {self.method.SUPERVISION}, not from "
            "points, scribbles or boxes; open a run of a sparse-label method (e.g. partial_ce) to retrain on annotations"
        )

    def _full_training(self) -> Callable:
        ws = self.workspace
        refusal = self.full_refusal()
        if refusal is not None:
            raise SessionError(refusal)
        kinds = [k for k in ANNOTATION_KINDS if k in self.method.SUPERVISION]
        if not ws.store.images():
            raise SessionError("no annotations yet: add points or scribbles before a full retrain")
        out = self.out_dir / time.strftime("retrain-%Y%m%d-%H%M%S")
        labels = out / "annotations.json"
        save_weak_labels(labels, self.training_labels())
        full = self.full_config
        config = TrainConfig(
            data=str(ws.info.root), out=str(out), supervision="+".join(kinds), weak_labels=str(labels),
            train_split=ws.split, image_size=self.outputs.work_size, epochs=full.epochs, batch_size=full.batch_size,
            lr=full.lr, log_every=1, novel=",".join(ws.classes[c] for c in ws.novel) or None,
            device=str(self.outputs.device),
        )  # fmt: skip
        n = len(ws.names)
        total = full.epochs * max(1, n // full.batch_size if n > full.batch_size else 1)
        self.retrain_runs.append(out)
        method, method_config = self.method, self.outputs.method_config

        def train(model, report, should_stop) -> dict | None:
            def on_log(record: dict) -> None:
                if "loss" in record:
                    report(record["step"], total, record["loss"])

            summary = loop.train(method, method_config, config, on_log, should_stop, model=model)
            return summary if "miou" in summary else None  # stopped early: evaluated after

        return train

    # ------------------------------------------------------------------ results

    def poll(self, accept_worse: bool = False) -> dict:
        """Trainer snapshot; a preview or a finished job lands here (call from the UI thread).

        ``preview`` in the snapshot: the number of the version whose prediction of the edited image
        has just been cached. ``finished``: the job's status once it ended; a finished model becomes
        a new version, current unless its val mIoU is lower than the current one's (and not
        ``accept_worse``): then it waits in :attr:`pending` and the message says so, before
        anything is replaced (:meth:`accept_pending` makes it current anyway).
        """
        snapshot = self.trainer.snapshot()
        shown = self.trainer.take_preview()
        if shown is not None:
            number, index, probs = shown
            self.outputs.put(number, ("probs", index), probs)
            self.preview = (number, index)
            snapshot["preview"] = number
            snapshot["message"] = (
                f"{snapshot['message'].split(':')[0]}: trained; the mask shows v{number} on this image while "
                f"val mIoU is checked (v{self.outputs.version} stays current until then)"
            )
        finished = self.trainer.take_result()
        if finished is None:
            return snapshot
        self.preview = None
        status, result = finished
        message = snapshot["message"]
        if status == "done" and result is not None:
            model, summary, baseline, baseline_version, number = result
            self.outputs.record_summary(baseline_version, baseline)
            version = self._add_version(model, summary, message.split(":")[0], number)
            before = self.outputs.evaluate("val")["miou"]
            after = version.summary["miou"]
            if after < before and not accept_worse:
                self.pending = version
                message += (
                    f"; it lowered val mIoU {before:.3f} -> {after:.3f}, so v{self.outputs.version} stays current: "
                    f"pick v{version.number} under versions and press 'make current' to take it anyway"
                )
            else:
                self.use_version(version.number)
                message += f"; val mIoU {before:.3f} -> {after:.3f}"
            message += self.limit_memory()
        snapshot["message"] = message
        snapshot["finished"] = status
        return snapshot

    def _add_version(self, model: nn.Module, summary: dict, label: str, number: int) -> ModelVersion:
        if not self.versions:  # the weights the session opened with are version 0
            opened = self.outputs.version
            self.versions.append(
                ModelVersion(opened, "opened", state_copy(self.outputs.model), self.outputs.evaluate())
            )
        version = ModelVersion(number, label, state_copy(model), summary)
        self.versions.append(version)
        self.outputs.record_summary(number, summary)
        return version

    def limit_memory(self) -> str:
        """Move the weights of old versions to disk so that at most ``max_in_memory`` stay in memory
        (the current, the best and a pending one always stay); a note for the user, empty when nothing moved."""
        held = [v for v in self.versions if v.state is not None]
        if len(held) <= self.max_in_memory:
            return ""
        best = max(self.versions, key=lambda v: v.summary["miou"])
        keep = {self.outputs.version, best.number, *([self.pending.number] if self.pending else [])}
        for v in sorted(held, key=lambda v: -v.number):  # the newest stay
            if len(keep) >= self.max_in_memory:
                break
            keep.add(v.number)
        moved, dropped = [], []
        for v in held:
            if v.number in keep:
                continue
            path = self.versions_dir / f"v{v.number}.pt"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                buffer = io.BytesIO()
                torch.save(v.state, buffer)
                atomic_write_bytes(path, buffer.getvalue())
                v.path, v.sha256 = path, hashlib.sha256(buffer.getvalue()).hexdigest()
                moved.append(v.number)
            except OSError as err:
                dropped.append(f"v{v.number} ({err.strerror or err})")
            v.state = None
        note = ""
        if moved:
            note += f"; {', '.join(f'v{n}' for n in moved)} moved to {self.versions_dir} (memory keeps {self.max_in_memory})"
        if dropped:
            note += f"; dropped {', '.join(dropped)}: could not write to {self.versions_dir}"
        return note

    def weights(self, version: ModelVersion) -> dict:
        if version.state is not None:
            return version.state
        if version.path is None:
            raise SessionError(
                f"model version {version.number} was dropped from memory (its file could not be written)"
            )
        try:
            data = version.path.read_bytes()
        except OSError as err:
            raise SessionError(f"model version {version.number}: cannot read {version.path} ({err})") from None
        if hashlib.sha256(data).hexdigest() != version.sha256:
            raise SessionError(
                f"model version {version.number}: {version.path} changed on disk since this dashboard wrote it "
                "(its SHA-256 differs); it is not loaded: pick another version"
            )
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def use_version(self, number: int) -> ModelVersion:
        """Make model version ``number`` current again (its weights, cached outputs and val summary)."""
        version = next((v for v in self.versions if v.number == number), None)
        if version is None:
            known = [v.number for v in self.versions] or [self.outputs.version]
            raise SessionError(f"no model version {number}; versions: {known}")
        model = copy.deepcopy(self.outputs.model)
        model.load_state_dict(self.weights(version))
        if version.state is None:  # back from disk: current versions stay in memory
            version.state = state_copy(model)
        self.outputs.use(model, number)
        if self.pending is not None and self.pending.number == number:
            self.pending = None
        return version

    def accept_pending(self) -> ModelVersion:
        """Make the retrain that lowered val mIoU current anyway."""
        if self.pending is None:
            raise SessionError("no retrain is waiting: every finished retrain is already a version")
        return self.use_version(self.pending.number)

    def version_table(self) -> list[dict]:
        """``{version, made by, val mIoU, current, weights, <class IoU>...}`` of every version, oldest first."""
        rows = []
        for v in self.versions:
            row = {"version": v.number, "made by": v.label, "val mIoU": v.summary["miou"],
                   "current": v.number == self.outputs.version, "weights": v.kept}  # fmt: skip
            row.update({name: iou for name, iou in v.summary["per_class_iou"].items()})
            rows.append(row)
        return rows

    def cancel(self) -> None:
        self.trainer.cancel()

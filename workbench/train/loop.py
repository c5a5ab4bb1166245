"""The training loop: one plain loop for every method.

``train(method, method_config, TrainConfig(...))`` builds data and model, runs the epochs,
writes metrics, checkpoints and a report into the run directory and returns the final
evaluation. CPU or CUDA is chosen automatically; on CUDA the forward pass runs under bf16
autocast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm  # text, not tqdm.auto's widget: an executed notebook saves the bar's last state

from workbench.data.dataset import SegmentationDataset, check_imported_labels
from workbench.methods import config_field, is_weak_shot, optional_hook
from workbench.modeling.backbones import ModelError
from workbench.train import checkpoint as ckpt
from workbench.train import dist, tensorboard
from workbench.train.config import ConfigError, TrainConfig, TrainingError, check_numbers, pick_device
from workbench.train.data import (
    check_weak_label_coverage,
    data_fingerprint,
    diagnostics_dataset,
    make_datasets,
    make_loader,
    to_device,
)
from workbench.train.evaluation import autocast, evaluate
from workbench.train.runs import forget_after, model_extra_state, resume, run_config, run_identity, write_report


def build_model(method: ModuleType, num_classes: int, method_config, config: TrainConfig) -> nn.Module:
    """``method.build`` with a clear error when pretrained encoder weights cannot be fetched."""
    try:
        return method.build(num_classes, method_config, config.backbone)
    except OSError as err:  # requests, urllib and huggingface_hub failures are all OSErrors
        if not config.encoder_weights or Path(config.encoder_weights).exists():
            raise
        raise ModelError(
            f"encoder_weights={config.encoder_weights!r}: could not fetch the {config.encoder} weights "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); connect to the "
            "network once (they are cached), pass a local .safetensors/.pth file, or use encoder_weights=None"
        ) from None


DIAGNOSTIC_IMAGES = 32  # training images the diagnostics of a learning curve run on (the final ones: all)


def train(
    method: ModuleType,
    method_config,
    config: TrainConfig = TrainConfig(),
    on_log: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    model: nn.Module | None = None,
    datasets: tuple[SegmentationDataset, SegmentationDataset] | None = None,
) -> dict:
    """Train ``method``; return ``{"stopped", "epoch", "step"}`` plus, when it ran to the end, the
    final evaluation summary (also in ``out/report.json``).

    ``on_log`` receives every metrics record as it is written; ``should_stop`` is polled
    every step (a dashboard's cancel button: the run returns ``stopped=True`` without an
    evaluation). ``model`` continues from given weights; ``datasets`` (train, val) replaces the ones
    ``config`` names (a research variant's data, e.g. training batches that carry ground truth).
    Under ``torchrun`` the model is wrapped in :class:`MethodDDP` and rank 0 alone writes
    the run directory; ``training_step`` must call ``model(...)`` once per step (that call
    starts DDP's gradient synchronisation) and may also use the model's submodules.

    The run directory is locked while training; a folder holding another run is refused
    unless ``config.overwrite`` (and only then, holding the lock, are its files removed), and
    run-like files the workbench did not write are refused even then (:func:`ckpt.check_run_dir`).
    The four phases are :func:`setup_run`, :func:`train_epoch`, :func:`save_epoch` and :func:`finish_run`.
    """
    run = setup_run(method, method_config, config, on_log, model, datasets)
    try:
        for epoch in range(run.start_epoch, config.epochs):
            if not train_epoch(run, epoch, should_stop):
                return finish_run(run, stopped_in=epoch)
            save_epoch(run, epoch)
        return finish_run(run)
    finally:
        run.release()


@dataclass
class TrainRun:
    """Everything one training run holds between its phases (built by :func:`setup_run`)."""

    method: ModuleType
    method_config: object
    config: TrainConfig
    train_ds: SegmentationDataset
    val_ds: SegmentationDataset
    model: nn.Module  # the plain model: weights, checkpoints, evaluation
    trained: nn.Module  # what the steps call: the model, under DDP and/or torch.compile
    device: torch.device
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    identity: dict  # what a resume must agree with (run_identity)
    start_epoch: int
    step: int
    on_log: Callable[[dict], None] | None = None
    lock: ckpt.RunLock | None = None
    board: tensorboard.Board | None = None  # rank 0 with tensorboard installed
    label_check: dict | None = None  # imported labels lost in the resize (check_imported_labels)
    grad_clip: float = 0.0  # full-model L2 norm clipping when > 0 (a method's Config.grad_clip)
    bar: tqdm | None = None  # one progress bar per run (a notebook keeps one compact line, not one per epoch)

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)

    def log(self, record: dict) -> None:
        if dist.is_main():
            ckpt.append_jsonl(self.run_dir / "metrics.jsonl", record)
            if self.board is not None:
                self.board.log(record)
            if self.on_log is not None:
                self.on_log(record)

    def progress_bar(self) -> tqdm:
        if self.bar is None:
            total = self.config.epochs * len(self.loader)
            self.bar = tqdm(
                total=total, initial=self.step, desc=self.run_dir.name, unit="step", leave=True, dynamic_ncols=True,
                disable=not dist.is_main(),
            )  # fmt: skip
        return self.bar

    def release(self) -> None:
        """Close the TensorBoard writer and drop the lock (also after an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.board is not None:
            self.board.close()
            self.board = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def setup_run(
    method: ModuleType,
    method_config,
    config: TrainConfig,
    on_log: Callable[[dict], None] | None = None,
    model: nn.Module | None = None,
    datasets: tuple[SegmentationDataset, SegmentationDataset] | None = None,
) -> TrainRun:
    """Check, build data and model, lock and claim the run directory, resume; nothing is written
    into the folder before this process holds its lock."""
    check_numbers(method_config)  # before anything is written
    run_dir = Path(config.out)
    if os.environ.get("RANK", "0") == "0":  # fail before the slow setup (this check writes nothing); torchrun's
        # RANK, since the process group is not joined yet: other ranks would see rank 0's fresh files as another run
        ckpt.check_run_dir(run_dir, config.resume, config.overwrite)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    device = dist.init_from_env(pick_device(config.device))
    train_ds, val_ds = datasets or make_datasets(method, config)
    info, split = train_ds.info, train_ds.class_split
    if split is not None and is_weak_shot(method) and method_config.novel == ():  # novel ids from the split
        method_config = dataclasses.replace(method_config, novel=split.novel)
    if model is None:
        model = build_model(method, info.num_classes, method_config, config)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    identity = run_identity(method, method_config, config, data_fingerprint(train_ds, config))
    lock = ckpt.RunLock(run_dir).acquire() if dist.is_main() else None
    try:
        loader = make_loader(train_ds, config.batch_size, True, config, device)  # one loader: workers keep caches
        steps_per_epoch = len(loader)
        hook = optional_hook(method, "param_groups")
        groups = hook(model, method_config) if hook is not None else None
        groups = groups or [{"params": list(model.parameters()), "lr_scale": 1.0}]  # e.g. a lower backbone lr
        optimizer = torch.optim.AdamW(
            [{"params": g["params"], "lr": config.lr * g["lr_scale"]} for g in groups], weight_decay=config.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[config.lr * g["lr_scale"] for g in groups], total_steps=config.epochs * steps_per_epoch,
            pct_start=0.1,
        )  # fmt: skip
        if dist.is_main():
            ckpt.claim_run_dir(run_dir, config.resume, config.overwrite)  # holding the lock: now the folder is ours
        start_epoch = resume(run_dir, model, optimizer, scheduler, identity) if config.resume else 0
        if start_epoch > config.epochs:  # before config.json is rewritten to say fewer epochs than were run
            raise ConfigError(
                f"--resume: {run_dir} has trained {start_epoch} epochs, more than epochs={config.epochs}; resume "
                f"with --epochs >= {start_epoch} to go on, or evaluate the run as it is (`eval`)"
            )
        if dist.is_main():
            ckpt.mark_run_dir(run_dir)  # before any run file: the run is the workbench's (a resumed old one too)
            if start_epoch > 0:
                forget_after(run_dir / "metrics.jsonl", start_epoch * steps_per_epoch)
            ckpt.write_config(run_dir, run_config(method, method_config, config, info, split, train_ds))
        run = TrainRun(
            method, method_config, config, train_ds, val_ds, model, wrap(model, device, config), device, loader,
            optimizer, scheduler, identity, start_epoch, start_epoch * steps_per_epoch, on_log, lock,
        )  # fmt: skip
        run.board = tensorboard.open_board(run_dir, run.step) if dist.is_main() else None
        run.grad_clip = float(config_field(method_config, "grad_clip"))
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.label_check = check_imported_labels(train_ds) if dist.is_main() else None
    if run.label_check is not None:
        run.log({"event": "label_check", **run.label_check})
    weak = train_ds.weak_labels
    report = check_weak_label_coverage(train_ds.names, weak, config) if weak is not None else None
    if report and dist.is_main():
        print(report, file=sys.stderr)
        run.log({"event": "weak_labels", "step": run.step, "message": report})
    return run


def train_epoch(run: TrainRun, epoch: int, should_stop: Callable[[], bool] | None = None) -> bool:
    """One epoch of steps, then its metrics record (and a validation every ``eval_every`` epochs).

    Returns False when ``should_stop`` asked to stop before a step (the epoch is left unfinished).
    """
    config, method, device = run.config, run.method, run.device
    total_steps = config.epochs * len(run.loader)
    run.trained.train()
    cast(DistributedSampler, run.loader.sampler).set_epoch(epoch)
    running: dict[str, torch.Tensor] = {}
    t0, n_seen = time.perf_counter(), 0
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # step of the first non-finite loss
    bar = run.progress_bar()
    bar.set_description(f"{run.run_dir.name} epoch {epoch + 1}/{config.epochs}")
    for batch in run.loader:
        if should_stop is not None and should_stop():
            return False
        batch = to_device(batch, device, config.channels_last)
        batch["progress"] = run.step / max(total_steps - 1, 1)
        with autocast(device, config.amp):
            outputs = method.training_step(run.trained, batch, run.method_config)
        loss = outputs["loss"]
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.step += 1
        bar.update(1)
        # device-side bookkeeping: no host synchronisation inside the loop
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), run.step, first_bad)
        n_seen += batch["image"].shape[0] * dist.world_size()
        for k, v in outputs.items():
            running[k] = running.get(k, 0.0) + v.detach().float()
        if run.step % config.log_every == 0:
            check_finite(first_bad, config, epoch)
            record = {
                "epoch": epoch, "step": run.step, "loss": float(loss.detach()), "lr": run.scheduler.get_last_lr()[0]
            }  # fmt: skip
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            run.log(record)
    check_finite(first_bad, config, epoch, run.model)  # before a checkpoint could keep the damage
    seconds = time.perf_counter() - t0
    record = {"epoch": epoch + 1, "step": run.step, "seconds": seconds, "images_per_s": n_seen / max(seconds, 1e-9)}
    record.update({f"train_{k}": float(v) / max(len(run.loader), 1) for k, v in running.items()})
    if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs:
        split = run.train_ds.class_split
        full = not config.curve_at_working_size
        summary = evaluate_and_show(run.board, run.step, method, run.model, run.val_ds, device, split, config, full)
        record["val_miou"] = summary["miou"]
        record.update(diagnostics_during_training(run))
    run.log(record)
    return True


def diagnostics_during_training(run: TrainRun) -> dict[str, float]:
    """The method's ``train_diagnostics`` (e.g. pseudo-label precision and coverage against ground truth) on
    the first :data:`DIAGNOSTIC_IMAGES` training images, as ``diag_*`` fields of the epoch record: a curve
    of how the pseudo labels evolve, read from metrics.jsonl, never a training signal."""
    diagnose = optional_hook(run.method, "train_diagnostics")
    if diagnose is None or not dist.is_main():
        return {}
    subset = diagnostics_dataset(run.train_ds, run.config, DIAGNOSTIC_IMAGES)
    return {f"diag_{k}": float(v) for k, v in diagnose(run.model, subset, run.device, run.method_config).items()}


def save_epoch(run: TrainRun, epoch: int) -> None:
    """The checkpoint after ``epoch``: weights, optimizer, scheduler, RNG and the model's extra state."""
    if not dist.is_main():
        return
    train_state = {
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "epoch": epoch + 1, "rng": torch.get_rng_state(), "run": json.dumps(run.identity),
        "model_extra": model_extra_state(run.model),
    }  # fmt: skip
    if run.device.type == "cuda":
        train_state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    ckpt.save_checkpoint(run.run_dir, run.model, train_state)


def finish_run(run: TrainRun, stopped_in: int | None = None) -> dict:
    """Stopped: log it, keep the weights, return ``{"stopped": True, "epoch", "step"}``. Finished:
    evaluate, write the report, return the summary with ``stopped=False``, ``epoch`` and ``step``."""
    if stopped_in is not None:
        run.log({"event": "stopped", "epoch": stopped_in, "step": run.step})
        if dist.is_main():
            ckpt.save_checkpoint(run.run_dir, run.model)
        run.release()
        return {"stopped": True, "epoch": stopped_in, "step": run.step}
    config, split = run.config, run.train_ds.class_split
    summary = evaluate_and_show(run.board, run.step, run.method, run.model, run.val_ds, run.device, split, config)
    in_sync = dist.params_in_sync(run.model)
    if run.label_check is not None:
        summary["label_check"] = run.label_check
    diagnose = optional_hook(run.method, "train_diagnostics")  # e.g. pseudo-mask quality on train, vs GT
    if dist.is_main() and diagnose is not None:
        diagnostics_ds = diagnostics_dataset(run.train_ds, config)
        summary["train_diagnostics"] = diagnose(run.model, diagnostics_ds, run.device, run.method_config)
        run.log({"event": "train_diagnostics", "step": run.step, **summary["train_diagnostics"]})
    if dist.is_main():
        write_report(run.run_dir, summary, f"{run.train_ds.info.name} / {config.val_split}")
    run.log(
        {
            "event": "done",
            "step": run.step,
            "val_miou": summary["miou"],
            "world_size": dist.world_size(),
            "ranks_in_sync": in_sync,
        }
    )
    if run.board is not None:
        run.board.close()
        run.board = None
    dist.barrier()
    return {**summary, "stopped": False, "epoch": config.epochs, "step": run.step}


def evaluate_and_show(
    board, step: int, method, model, val_ds, device, split, config: TrainConfig, full_resolution: bool = True
) -> dict:
    """:func:`evaluate`, and on rank 0 its numbers and a few prediction overlays into TensorBoard."""
    summary = evaluate(method, model, val_ds, device, split, config.batch_size, config, full_resolution)
    if board is not None:
        board.evaluation(step, summary, tensorboard.prediction_overlays(method, model, val_ds, device))
    return summary


def check_finite(first_bad: torch.Tensor, config: TrainConfig, epoch: int, model: nn.Module | None = None) -> None:
    """Stop with the step of the first non-finite loss and its likely cause (this syncs with the device).

    With ``model``, also its weights: one update can overflow them while the loss it came from was finite.
    """
    bad = int(first_bad)
    broken_weights = model is not None and not all(bool(torch.isfinite(p).all()) for p in model.parameters())
    if bad < 0 and not broken_weights:
        return
    if config.lr > 0.1:
        cause = f"the learning rate lr={config.lr:g} is far too high (the default is {TrainConfig.lr:g}): lower it"
    else:
        cause = (
            f"the learning rate lr={config.lr:g} may still be too high for this method, or the loss overflowed: "
            "lower lr, or try amp=false; check the labels if it persists"
        )
    what = (
        f"the training loss became NaN or infinite at step {bad}"
        if bad >= 0
        else f"the weights became NaN or infinite in epoch {epoch + 1} (the loss was still finite)"
    )
    raise TrainingError(
        f"{what} (epoch {epoch + 1}); likely cause: {cause}. Training stopped; the last checkpoint in "
        f"{config.out} (if any) is from before it"
    )


class MethodDDP(DistributedDataParallel):
    """DDP that still lets a method reach its model's heads (``model.tag_head``) as without DDP.

    Gradients of every parameter are all-reduced by DDP's hooks whichever path used it; some
    heads are unused in some steps, hence ``find_unused_parameters=True``.
    """

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap(model: nn.Module, device: torch.device, config: TrainConfig) -> nn.Module:
    """DistributedDataParallel under torchrun, then optionally torch.compile; the plain model otherwise."""
    wrapped = model
    if dist.is_distributed():
        wrapped = MethodDDP(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if config.compile:
        wrapped = cast(nn.Module, torch.compile(wrapped))  # an OptimizedModule
    return wrapped

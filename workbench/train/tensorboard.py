"""TensorBoard event files beside ``metrics.jsonl``, so ``tensorboard --logdir runs`` shows every run.

The engine hands every metrics record it logs (the same dicts ``metrics.jsonl`` gets: CLI,
notebooks and the dashboard's retrain all go through ``loop.train``) to :meth:`Board.log`, and
every evaluation to :meth:`Board.evaluation`. Scalars:

- ``train/loss_step`` and ``train/lr`` every ``log_every`` steps;
- ``train/<term>``: each loss term a method returns, averaged over the epoch (``train/loss`` is the total);
- ``speed/images_per_s`` and ``speed/epoch_seconds`` per epoch;
- ``val/miou``, ``val/pixel_acc``, ``val/mean_acc`` (and ``val/base_miou``, ``val/novel_miou``,
  ``val/harmonic_miou`` in weak-shot runs) and ``val_iou/<class>`` at each evaluation;

plus an image ``val/predictions``: a few validation images, one a row, as image | ground truth | prediction.

The writer is optional: without the ``tensorboard`` extra installed :func:`open_board` returns
None and a run writes only ``metrics.jsonl``.
"""

from __future__ import annotations

import importlib.util
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

OVERLAY_IMAGES = 4  # validation images drawn per evaluation
OVERLAY_ALPHA = 0.6  # weight of the class colour over the image
EVENT_GLOB = "events.out.tfevents.*"

_STEP_TAGS = {"loss": "train/loss_step", "lr": "train/lr"}
_EPOCH_TAGS = {"images_per_s": "speed/images_per_s", "seconds": "speed/epoch_seconds"}
_EVAL_KEYS = ("miou", "pixel_acc", "mean_acc", "base_miou", "novel_miou", "harmonic_miou")


def available() -> bool:
    """True when the ``tensorboard`` package (the ``tensorboard`` extra) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class Board:
    """A ``SummaryWriter`` over one run directory, fed with the engine's metrics records."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        run_dir = Path(run_dir)
        if not resume_step:  # a fresh run in an old folder starts fresh curves, as metrics.jsonl does
            for old in run_dir.glob(EVENT_GLOB):
                old.unlink()
        # purge_step: a resumed run repeats the steps after its checkpoint, TensorBoard hides the old ones; the
        # checkpoint's own step (its epoch record, kept in metrics.jsonl too) stays: purging drops steps >= it
        self.writer = SummaryWriter(str(run_dir), purge_step=resume_step + 1 if resume_step else None)

    def log(self, record: dict) -> None:
        """Write the scalars of one ``metrics.jsonl`` record (step, epoch or final records)."""
        step = record.get("step")
        if not isinstance(step, numbers.Integral):
            return
        for key, value in record.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            tag = _STEP_TAGS.get(key) or _EPOCH_TAGS.get(key)
            if tag is None and key.startswith("train_"):
                tag = f"train/{key.removeprefix('train_')}"
            if tag is not None:
                self.writer.add_scalar(tag, float(value), int(step))
        if "images_per_s" in record or record.get("event"):
            self.writer.flush()  # an epoch's end: what TensorBoard shows is at most one epoch old

    def evaluation(self, step: int, summary: dict, overlays: np.ndarray | None = None) -> None:
        """Headline numbers, per-class IoU and (``(N, H, W, 3)`` uint8) prediction overlays of one evaluation."""
        for key in _EVAL_KEYS:
            if summary.get(key) is not None:
                self.writer.add_scalar(f"val/{key}", float(summary[key]), step)
        for name, iou in summary.get("per_class_iou", {}).items():
            if iou is not None:  # a class absent from the split and never predicted has no IoU
                self.writer.add_scalar(f"val_iou/{name}", float(iou), step)
        if overlays is not None and len(overlays):
            # one picture, one validation image a row: TensorBoard's own grid would lay them side by side
            self.writer.add_image("val/predictions", np.concatenate(list(overlays), axis=0), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_board(run_dir: str | Path, resume_step: int | None = None) -> Board | None:
    """A :class:`Board` writing into ``run_dir``, or None when tensorboard is not installed."""
    return Board(run_dir, resume_step) if available() else None


def colorize(mask: np.ndarray, colors: Sequence[Sequence[int]]) -> np.ndarray:
    """``(H, W)`` class indices -> ``(H, W, 3)`` uint8 colours; values past the palette (void 255) are black."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(colors)] = np.asarray(colors, np.uint8)
    return palette[np.asarray(mask, np.uint8)]


@torch.no_grad()
def prediction_overlays(
    method, model: nn.Module, dataset, device: torch.device, count: int = OVERLAY_IMAGES
) -> np.ndarray:
    """``(N, H, 3W, 3)`` uint8: image | ground truth over it | prediction over it, for the first images of ``dataset``.

    ``dataset`` is an evaluation :class:`~workbench.data.dataset.SegmentationDataset` (``include_gt``).
    """
    from workbench.data.dataset import denormalize

    items = [dataset[i] for i in range(min(count, len(dataset)))]
    if not items:
        return np.zeros((0, 1, 3, 3), np.uint8)
    images = torch.stack([item["image"] for item in items]).to(device)
    was_training = model.training
    model.eval()
    pred = method.predict(model, images).float().argmax(1).cpu().numpy()
    model.train(was_training)
    rgb = (denormalize(images.float()).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    colors = dataset.info.colors
    rows = []
    for image, truth, guess in zip(rgb, (item["mask"].numpy() for item in items), pred):
        blend = [
            (OVERLAY_ALPHA * colorize(m, colors) + (1 - OVERLAY_ALPHA) * image).round().astype(np.uint8)
            for m in (truth, guess)
        ]
        rows.append(np.concatenate([image, *blend], axis=1))
    return np.stack(rows)

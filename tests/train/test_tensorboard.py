"""Every run writes TensorBoard event files that TensorBoard's own reader parses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from workbench.methods import single_stage, supervised
from workbench.train import tensorboard
from workbench.train.loop import train

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install -e .[tensorboard])")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_events(run_dir: Path) -> EventAccumulator:
    events = sorted(run_dir.glob(tensorboard.EVENT_GLOB))
    assert events, f"no event file in {run_dir}"
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_one_epoch_run_writes_losses_lr_miou_per_class_iou_and_overlays(quick_config, synthetic_root):
    config = replace(quick_config, device="cpu", supervision="points")
    summary = train(single_stage, single_stage.Config(), config)
    acc = read_events(Path(config.out))
    scalars = set(acc.Tags()["scalars"])
    loss_terms = {f"train/{k}" for k in ("loss",)}  # the total; single_stage also logs its terms
    assert {"train/loss_step", "train/lr", "val/miou", "val/pixel_acc", "speed/images_per_s"} | loss_terms <= scalars
    assert len([t for t in scalars if t.startswith("train/")]) > 3  # the method's loss terms, not only the total
    classes = [n for n, v in summary["per_class_iou"].items() if v is not None]
    assert {f"val_iou/{n}" for n in classes} <= scalars
    (miou,) = acc.Scalars("val/miou")
    assert miou.value == pytest.approx(summary["miou"], abs=1e-6)
    steps = [e.step for e in acc.Scalars("train/lr")]
    assert steps == sorted(steps) and len(steps) == 3  # log_every=1, 12 images in batches of 4
    (overlay,) = acc.Images("val/predictions")
    assert (overlay.width, overlay.height) == (3 * 32, 4 * 32)  # image | truth | prediction, 4 val images


def test_an_overwriting_run_in_an_old_folder_starts_fresh_curves(quick_config):
    config = replace(quick_config, device="cpu", limit_train=4)
    train(supervised, supervised.Config(), config)
    train(supervised, supervised.Config(), replace(config, overwrite=True))  # without it the folder is refused
    assert len(list(Path(config.out).glob(tensorboard.EVENT_GLOB))) == 1
    assert len(read_events(Path(config.out)).Scalars("val/miou")) == 1


def test_without_tensorboard_runs_write_only_metrics(quick_config, monkeypatch):
    monkeypatch.setattr(tensorboard, "available", lambda: False)
    config = replace(quick_config, device="cpu", limit_train=4)
    train(supervised, supervised.Config(), config)
    assert (Path(config.out) / "metrics.jsonl").is_file()
    assert not list(Path(config.out).glob(tensorboard.EVENT_GLOB))


def test_colorize_paints_classes_and_blacks_out_void():
    mask = np.array([[0, 1], [255, 1]], np.uint8)
    out = tensorboard.colorize(mask, [(10, 20, 30), (200, 100, 0)])
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert (
        out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [200, 100, 0] and out[1, 0].tolist() == [0, 0, 0]
    )


def test_a_resumed_run_keeps_the_epoch_before_its_checkpoint(quick_config):
    """The last epoch record before the checkpoint vanished from the curves after --resume (issue 25)."""
    config = replace(quick_config, device="cpu", epochs=1)
    train(supervised, supervised.Config(), config)
    train(supervised, supervised.Config(), replace(config, epochs=2, resume=True))
    speed = [e.step for e in read_events(Path(config.out)).Scalars("speed/images_per_s")]
    assert speed == [3, 6]  # one per epoch: 12 images in batches of 4

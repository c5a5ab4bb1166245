"""Benchmark (b): images/s of the workbench training loop against a bare PyTorch loop.

Same model (smp Unet-resnet18), batch, optimizer and images, measured side by side in one
run and interleaved (bare, workbench, bare, workbench, ...) so machine load affects both
alike. The workbench side is ``loop.train`` itself (data pipeline with flips, logging,
per-epoch checkpoints); its images/s comes from its own metrics.jsonl, so only the training
epochs are timed (the final evaluation is not). Target ratio >= 0.95 on CPU::

    .venv/bin/python bench/loop_speed.py --data ../shared/datasets/camvid --images 96 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from workbench.io import atomic_write_text
from workbench.methods import supervised
from workbench.modeling.backbones import build_smp
from workbench.train.checkpoint import read_jsonl
from workbench.train.config import TrainConfig, pick_device
from workbench.train.data import make_datasets
from workbench.train.loop import train


def bare_loop_images_per_s(
    images: torch.Tensor, masks: torch.Tensor, num_classes: int, config: TrainConfig, epochs: int = 2
) -> float:
    """A minimal loop over preloaded tensors: forward, CE, backward, AdamW, one-cycle; last epoch timed."""
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    model = build_smp(config.backbone, num_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = len(images) // config.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=epochs * steps, pct_start=0.1)
    model.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(images))
        for i in range(steps):
            idx = perm[i * config.batch_size : (i + 1) * config.batch_size]
            x, y = images[idx].to(device), masks[idx].to(device)
            loss = F.cross_entropy(model(x), y, ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        seconds = time.perf_counter() - t0
    return steps * config.batch_size / seconds


def workbench_images_per_s(config: TrainConfig, epochs: int = 2) -> float:
    """Run train.loop.train for ``epochs`` and read the last epoch's images/s from its metrics."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(**{**config.__dict__, "out": out, "epochs": epochs, "limit_val": config.batch_size})
        train(supervised, supervised.Config(), cfg)
        epochs_log = [r for r in read_jsonl(Path(out) / "metrics.jsonl") if "images_per_s" in r]
    return epochs_log[-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/datasets/camvid")
    parser.add_argument("--images", type=int, default=96, help="training images per epoch")
    parser.add_argument("--image-size", default="120,160")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.image_size.split(","))
    config = TrainConfig(
        data=args.data, image_size=size, batch_size=args.batch_size, limit_train=args.images, hflip=True
    )
    train_ds, _ = make_datasets(supervised, config)
    items = [train_ds[i] for i in range(len(train_ds))]
    images = torch.stack([it["image"] for it in items])  # (N, 3, H, W): the very pixels the workbench trains on
    masks = torch.stack([it["label"] for it in items])
    bare, ours = [], []
    for r in range(args.rounds):
        bare.append(bare_loop_images_per_s(images, masks, train_ds.info.num_classes, config))
        ours.append(workbench_images_per_s(config))
        print(f"round {r + 1}: bare {bare[-1]:.1f} img/s, workbench {ours[-1]:.1f} img/s", flush=True)
    doc = {
        "device": str(pick_device(config.device)), "threads": torch.get_num_threads(), "image_size": size,
        "batch_size": args.batch_size, "images_per_epoch": args.images, "bare_images_per_s": bare,
        "workbench_images_per_s": ours, "ratio_median": statistics.median(ours) / statistics.median(bare),
    }  # fmt: skip
    name = f"loop_speed_{doc['device']}"
    atomic_write_text(Path(args.out) / f"{name}.json", json.dumps(doc, indent=1))
    table = (
        f"| device | image size | batch | bare loop img/s (median) | workbench img/s (median) | ratio |\n|---|---|---|---|---|---|\n"
        f"| {doc['device']} ({doc['threads']} threads) | {size[0]}x{size[1]} | {args.batch_size} | "
        f"{statistics.median(bare):.1f} | {statistics.median(ours):.1f} | {doc['ratio_median']:.3f} |\n"
    )
    atomic_write_text(Path(args.out) / f"{name}.md", table)
    print(table)


if __name__ == "__main__":
    main()

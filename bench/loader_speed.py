"""Loader benchmark: images/s of the data pipeline alone against what a training step consumes.

The pipeline is the training one (cached decode + resize, random scale, crop, flip, weak-label
rasterisation, normalisation, collation). "Cold" is the first pass (JPEG decode, resize,
weak-label simulation); "warm" the following passes. The training side runs the same number of
supervised steps on the same batches. Target: warm loader >= 3x training consumption::

    .venv/bin/python bench/loader_speed.py --data ../shared/datasets/camvid --supervision points
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from workbench.io import atomic_write_text
from workbench.methods import partial_ce
from workbench.modeling.backbones import build_smp
from workbench.modeling.losses import sparse_cross_entropy
from workbench.train.config import TrainConfig, pick_device
from workbench.train.data import make_datasets, make_loader


def loader_images_per_s(loader) -> float:
    t0, n = time.perf_counter(), 0
    for batch in loader:
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def train_images_per_s(dataset, config: TrainConfig, device: torch.device, steps: int) -> float:
    model = build_smp(config.backbone, dataset.info.num_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [b for _, b in zip(range(steps), make_loader(dataset, config.batch_size, True, config, device))]
    t0 = time.perf_counter()
    for batch in batches:
        loss = sparse_cross_entropy(model(batch["image"].to(device)), batch["label"].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(batches) * config.batch_size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/datasets/camvid")
    parser.add_argument("--image-size", default="120,160")
    parser.add_argument("--supervision", default="points")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.image_size.split(","))
    rows, device = [], None
    for workers in (int(w) for w in args.workers.split(",")):
        config = TrainConfig(
            data=args.data, image_size=size, supervision=args.supervision, batch_size=args.batch_size,
            num_workers=workers, scale_min=0.75, scale_max=1.25,
        )  # fmt: skip
        device = pick_device(config.device)
        dataset = make_datasets(partial_ce, config)[0]
        loader = make_loader(dataset, config.batch_size, True, config, device)  # as train.loop.train: one per run
        cold = loader_images_per_s(loader)
        warm = loader_images_per_s(loader)
        rows.append({"num_workers": workers, "cold_images_per_s": cold, "warm_images_per_s": warm})
        print(f"workers {workers}: cold {cold:.0f} img/s, warm {warm:.0f} img/s", flush=True)
    step_rate = train_images_per_s(dataset, config, device, args.steps)
    for r in rows:
        r["ratio_warm_to_training"] = r["warm_images_per_s"] / step_rate
    doc = {"device": str(device), "image_size": size, "supervision": args.supervision,
           "training_images_per_s": step_rate, "rows": rows}  # fmt: skip
    lines = [
        f"Loader vs training on {device} ({size[0]}x{size[1]}, {args.supervision}, batch {args.batch_size}); "
        f"a training step consumes {step_rate:.1f} img/s.",
        "",
        "| workers | cold img/s | warm img/s | warm / training |",
        "|---|---|---|---|",
    ] + [
        f"| {r['num_workers']} | {r['cold_images_per_s']:.0f} | {r['warm_images_per_s']:.0f} | {r['ratio_warm_to_training']:.1f}x |"
        for r in rows
    ]
    atomic_write_text(Path(args.out) / f"loader_speed_{device}.json", json.dumps(doc, indent=1))
    atomic_write_text(Path(args.out) / f"loader_speed_{device}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

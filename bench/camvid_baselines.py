"""Benchmark (a): full supervision vs partial CE on simulated points and scribbles, CamVid 120x160.

One fixed budget for every row (same model, epochs, batch, schedule). Writes
``bench/results/camvid_baselines.json`` and ``.md``: val mIoU, per-class IoU, ratio to
supervised and annotation cost. Run by hand (about 10 minutes a row on 2 CPU cores)::

    .venv/bin/python bench/camvid_baselines.py --data ../shared/datasets/camvid --epochs 40
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from workbench.io import atomic_write_text
from workbench.methods import partial_ce, supervised
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets
from workbench.train.loop import train

ROWS = (
    ("supervised", supervised, "dense"),
    ("partial_ce", partial_ce, "points"),
    ("partial_ce", partial_ce, "scribbles"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/datasets/camvid")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--image-size", default="120,160")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--runs", default="runs/bench")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.image_size.split(","))
    results = []
    for name, method, supervision in ROWS:
        config = TrainConfig(
            data=args.data, out=f"{args.runs}/camvid_{name}_{supervision}", supervision=supervision,
            image_size=size, epochs=args.epochs, batch_size=8, overwrite=True,
        )  # fmt: skip
        cost = make_datasets(method, config)[0].annotation_cost()
        t0 = time.perf_counter()
        summary = train(method, method.Config(), config)
        results.append({
            "method": name, "supervision": supervision, "val_miou": summary["miou"],
            "per_class_iou": summary["per_class_iou"], "pixel_acc": summary["pixel_acc"],
            "seconds": round(time.perf_counter() - t0, 1), **cost,
        })  # fmt: skip
        print(f"{name:<11} {supervision:<10} mIoU {summary['miou']:.3f}  ({results[-1]['seconds']} s)", flush=True)
    full = results[0]["val_miou"]
    for r in results:
        r["ratio_to_supervised"] = r["val_miou"] / full
    doc = {"dataset": args.data, "image_size": size, "epochs": args.epochs, "batch_size": 8, "rows": results}
    out = Path(args.out)
    atomic_write_text(out / "camvid_baselines.json", json.dumps(doc, indent=1))
    atomic_write_text(out / "camvid_baselines.md", markdown(doc))
    print(markdown(doc))


def markdown(doc: dict) -> str:
    lines = [
        f"CamVid {doc['image_size'][0]}x{doc['image_size'][1]}, {doc['epochs']} epochs, batch {doc['batch_size']}, "
        "smp Unet-resnet18 from scratch, AdamW + one-cycle, flips. Val mIoU at full 360x480 resolution.",
        "",
        "| method | labels | val mIoU | ratio to supervised | labelled px / image | labelled fraction | clicks / image | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['method']} | {r['supervision']} | {r['val_miou']:.3f} | {r['ratio_to_supervised']:.2f} | "
            f"{r['labelled_px_per_image']:.0f} | {r['labelled_fraction']:.4f} | {r['clicks_per_image']:.1f} | {r['seconds']} |"
        )
    classes = list(doc["rows"][0]["per_class_iou"])
    lines += ["", "Per-class IoU:", "", "| labels | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for r in doc["rows"]:
        cells = [f"{r['per_class_iou'][c]:.2f}" if r["per_class_iou"][c] is not None else "n/a" for c in classes]
        lines.append(f"| {r['supervision']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

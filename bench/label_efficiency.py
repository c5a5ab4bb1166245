"""Benchmark (b): label efficiency of the weak methods at one fixed CPU budget per dataset.

Rows: supervised (upper bound), partial_ce, single_stage, spml and cam, each with the weak
labels it learns from (simulated from the dense masks with the default SimulationConfig:
one single-pixel point per connected region, skeleton scribbles 3 px wide, one box per
connected component, tags). Every row uses the same model (smp Unet-resnet18 from scratch),
image size, epochs, batch size and schedule; only the method and its labels change.

Writes ``bench/results/label_efficiency_<dataset>.json`` and ``.md`` after every row: val
mIoU (at the masks' full resolution), ratio to supervised, annotation cost (labelled pixels,
clicks and tags per image) and wall time. Rows already in the JSON with the same budget are
skipped, so the benchmark can be run a row at a time (``--rows spml/points``). CamVid's
supervised and partial_ce rows are taken from ``bench/results/camvid_baselines.json`` when
it exists with the same budget. Run by hand, low priority, one process at a time::

    nice -n 10 .venv/bin/python bench/label_efficiency.py --dataset camvid --epochs 40
    nice -n 10 .venv/bin/python bench/label_efficiency.py --dataset msrc21 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from workbench.engine import TrainConfig, make_datasets, train
from workbench.io import atomic_write_text
from workbench.methods import METHODS

ROWS = {
    "camvid": (
        "supervised/dense", "partial_ce/points", "partial_ce/scribbles", "single_stage/points",
        "single_stage/scribbles", "spml/points", "spml/scribbles", "cam/tags",
    ),
    "msrc21": (
        "supervised/dense", "partial_ce/points", "partial_ce/scribbles", "partial_ce/boxes", "single_stage/points",
        "single_stage/scribbles", "spml/points", "spml/scribbles", "spml/boxes", "spml/tags", "cam/tags",
    ),
}  # fmt: skip

# Method settings that differ from the Config defaults, per row (chosen on val, see bench/README.md).
OVERRIDES = {
    "spml/boxes": {"seed_source": "cam_boxes"},
    "spml/tags": {"seed_source": "cam_tags"},
}
BASELINES_FILE = "camvid_baselines.json"


def run_row(row: str, args, size: tuple[int, int]) -> dict:
    name, supervision = row.split("/")
    method = METHODS[name]
    overrides = {**OVERRIDES.get(row, {}), **json.loads(args.set or "{}").get(row, {})}
    method_config = method.Config(**overrides)
    config = TrainConfig(
        data=args.data or f"../shared/datasets/{args.dataset}", out=f"{args.runs}/{args.dataset}_{name}_{supervision}",
        supervision=supervision, image_size=size, epochs=args.epochs, batch_size=args.batch_size,
        eval_every=args.eval_every,
    )  # fmt: skip
    train_ds = make_datasets(method, config)[0]
    cost = train_ds.annotation_cost()
    cost["tags_per_image"] = float(np.mean([train_ds[i]["tags"].sum().item() for i in range(len(train_ds))]))
    t0 = time.perf_counter()
    summary = train(method, method_config, config)
    return {
        "method": name, "supervision": supervision, "overrides": overrides, "val_miou": summary["miou"],
        "per_class_iou": summary["per_class_iou"], "pixel_acc": summary["pixel_acc"],
        "seconds": round(time.perf_counter() - t0, 1), **cost,
    }  # fmt: skip


def load_doc(path: Path, args, size) -> dict:
    budget = {"dataset": args.dataset, "image_size": list(size), "epochs": args.epochs, "batch_size": args.batch_size}
    doc = json.loads(path.read_text()) if path.exists() else {}
    if any(doc.get(k) != v for k, v in budget.items()):
        doc = {**budget, "rows": []}
    baselines = path.parent / BASELINES_FILE
    if args.dataset == "camvid" and baselines.exists():
        base = json.loads(baselines.read_text())
        if list(base["image_size"]) == list(size) and base["epochs"] == args.epochs:
            done = {f"{r['method']}/{r['supervision']}" for r in doc["rows"]}
            for r in base["rows"]:
                if f"{r['method']}/{r['supervision']}" not in done:
                    doc["rows"].append({**r, "overrides": {}, "source": BASELINES_FILE})
    return doc


def finish(doc: dict, out: Path) -> None:
    rows = {f"{r['method']}/{r['supervision']}": r for r in doc["rows"]}
    order = [k for k in ROWS[doc["dataset"]] if k in rows] + [k for k in rows if k not in ROWS[doc["dataset"]]]
    doc["rows"] = [rows[k] for k in order]
    full = rows.get("supervised/dense", {}).get("val_miou")
    for r in doc["rows"]:
        r["ratio_to_supervised"] = r["val_miou"] / full if full else None
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown(doc))


def markdown(doc: dict) -> str:
    h, w = doc["image_size"]
    lines = [
        f"{doc['dataset']} {h}x{w}, {doc['epochs']} epochs, batch {doc['batch_size']}, smp Unet-resnet18 from scratch, "
        "AdamW + one-cycle, flips; val mIoU at the masks' full resolution. Annotation cost per training image.",
        "",
        "| method | labels | val mIoU | ratio to supervised | labelled px / image | clicks / image | tags / image "
        "| wall time (s) | settings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        ratio = f"{r['ratio_to_supervised']:.2f}" if r.get("ratio_to_supervised") is not None else "n/a"
        settings = ", ".join(f"{k}={v}" for k, v in r.get("overrides", {}).items()) or "defaults"
        tags = f"{r['tags_per_image']:.1f}" if "tags_per_image" in r else "n/a"
        lines.append(
            f"| {r['method']} | {r['supervision']} | {r['val_miou']:.3f} | {ratio} | {r['labelled_px_per_image']:.0f} "
            f"| {r['clicks_per_image']:.1f} | {tags} | {r['seconds']} | {settings} |"
        )
    classes = list(doc["rows"][0]["per_class_iou"]) if doc["rows"] else []
    lines += ["", "Per-class IoU:", "", "| row | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for r in doc["rows"]:
        cells = [f"{v:.2f}" if v is not None else "n/a" for v in r["per_class_iou"].values()]
        lines.append(f"| {r['method']}/{r['supervision']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(ROWS))
    parser.add_argument("--data", help="dataset folder (default ../shared/datasets/DATASET)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", default="120,160")
    parser.add_argument("--rows", help="comma-separated method/supervision rows (default: all of the dataset's)")
    parser.add_argument("--set", help='JSON of extra method settings per row, e.g. \'{"spml/points": {"tau": 0.2}}\'')
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--redo", action="store_true", help="rerun rows that already have a result")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--runs", default="runs/bench")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.image_size.split(","))
    out = Path(args.out) / f"label_efficiency_{args.dataset}"
    doc = load_doc(out.with_suffix(".json"), args, size)
    rows = args.rows.split(",") if args.rows else list(ROWS[args.dataset])
    for row in rows:
        if not args.redo and any(f"{r['method']}/{r['supervision']}" == row for r in doc["rows"]):
            print(f"{row}: already measured, skipped (--redo to rerun)", flush=True)
            continue
        result = run_row(row, args, size)
        doc["rows"] = [r for r in doc["rows"] if f"{r['method']}/{r['supervision']}" != row] + [result]
        finish(doc, out)
        print(f"{row:<24} mIoU {result['val_miou']:.3f}  ({result['seconds']} s)", flush=True)
    finish(doc, out)
    print(markdown(doc))


if __name__ == "__main__":
    main()

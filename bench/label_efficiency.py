"""Benchmark (b): label efficiency of the weak methods, in two regimes, at one budget per table.

Regimes (issue 12): ``scratch`` = smp Unet-resnet18 from random init; ``pretrained`` = Unet on
EfficientNet-Lite0 with its ImageNet weights (the ``pretrained`` extra, offline). Rows:
supervised (upper bound), partial_ce, partial_ce+crf (partial CE plus the dense CRF loss,
``--crf_weight``), single_stage, spml and cam, each with the labels it learns from. Labels are
simulated from the dense masks **at the working size** with the default SimulationConfig (one
single-pixel point per connected region, 1-pixel skeleton scribbles, one box per component,
tags), the same for every seed and row; ``--seeds`` only changes the training seed. SPML's own
point protocol (6-px dilated points) is a separate row setting (``--set``) and is shown in the
table's settings column. Every row of a table has the same model, image size, epochs, batch and
schedule; only the method and its labels change.

Writes ``bench/results/label_efficiency_<dataset>_<regime>.json`` and ``.md`` after every run:
val mIoU (mean +- sd over seeds, at the masks' full resolution), ratio to supervised, labelled
share of the pixels, clicks and tags per image, wall time, per-class IoU. Runs already in the
JSON with the same budget are skipped, so the table can be filled a row at a time
(``--rows spml/points``). Run by hand, low priority, one process at a time, e.g.::

    nice -n 10 .venv/bin/python bench/label_efficiency.py --dataset camvid --regime pretrained --epochs 10 --seeds 0,1
    nice -n 10 .venv/bin/python bench/label_efficiency.py --dataset camvid --regime scratch --epochs 10 --seeds 0,1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from workbench.engine import TrainConfig, make_datasets, train
from workbench.io import atomic_write_text
from workbench.methods import METHODS

ROWS = {
    "camvid": (
        "supervised/dense", "partial_ce/points", "partial_ce+crf/points", "single_stage/points", "spml/points",
        "partial_ce/scribbles", "partial_ce+crf/scribbles", "single_stage/scribbles", "spml/scribbles",
    ),
    "msrc21": (
        "supervised/dense", "partial_ce/points", "partial_ce+crf/points", "single_stage/points", "spml/points",
        "partial_ce/scribbles", "partial_ce+crf/scribbles", "single_stage/scribbles", "spml/scribbles",
        "partial_ce/boxes", "spml/boxes", "spml/tags", "cam/tags",
    ),
}  # fmt: skip
REGIMES = {  # encoder, its weights, default image size per dataset (Lite0 wants sides divisible by 32)
    "scratch": ("resnet18", None, {"camvid": (120, 160), "msrc21": (96, 144)}),
    "pretrained": ("timm-tf_efficientnet_lite0", "imagenet", {"camvid": (128, 160), "msrc21": (96, 128)}),
}
VARIANTS = {"crf": "crf_weight"}  # row suffix +NAME -> the method Config field it switches on (value: --NAME-weight)
# Method settings that differ from the Config defaults, per row.
OVERRIDES = {
    "spml/boxes": {"seed_source": "cam_boxes"},
    "spml/tags": {"seed_source": "cam_tags"},
}
SIMULATION_FIELDS = ("points_per_region", "min_region_px", "point_radius", "scribble_width", "scribble_fraction")


class BenchError(SystemExit):
    """A row this checkout cannot run (the message says why and what to do)."""


def parse_row(row: str) -> tuple[str, tuple[str, ...], str]:
    """``"partial_ce+crf/points"`` -> ``("partial_ce", ("crf",), "points")``."""
    try:
        head, supervision = row.split("/")
    except ValueError:
        raise BenchError(
            f"row {row!r}: write rows as METHOD[+VARIANT]/SUPERVISION, e.g. partial_ce+crf/points"
        ) from None
    name, *variants = head.split("+")
    if name not in METHODS:
        raise BenchError(f"row {row!r}: unknown method {name!r}; choose from {sorted(METHODS)}")
    for v in variants:
        if v not in VARIANTS:
            raise BenchError(f"row {row!r}: unknown variant {v!r}; choose from {sorted(VARIANTS)}")
    return name, tuple(variants), supervision


def row_settings(row: str, args) -> tuple[dict, dict]:
    """(method Config overrides, TrainConfig simulation overrides) of a row; fails clearly when the
    method has no field a variant needs (e.g. ``crf_weight`` before the CRF loss is merged)."""
    name, variants, _ = parse_row(row)
    fields = {f.name for f in dataclasses.fields(METHODS[name].Config)}
    settings = {**OVERRIDES.get(row, {}), **json.loads(args.set or "{}").get(row, {})}
    for v in variants:
        field = VARIANTS[v]
        if field not in fields:
            raise BenchError(
                f"row {row!r} needs {name}.Config.{field}, which this checkout's {name} does not have "
                f"(the dense CRF loss of issue 12, part 3); merge that work first or drop the row"
            )
        settings.setdefault(field, getattr(args, f"{v}_weight"))
    simulation = {k: settings.pop(k) for k in SIMULATION_FIELDS if k in settings}
    unknown = [k for k in settings if k not in fields]
    if unknown:
        raise BenchError(f"row {row!r}: {name}.Config has no field(s) {unknown}; see `workbench train --help`")
    return settings, simulation


def run_one(row: str, seed: int, args, size: tuple[int, int]) -> dict:
    name, _, supervision = parse_row(row)
    method = METHODS[name]
    overrides, simulation = row_settings(row, args)
    encoder, weights, _ = REGIMES[args.regime]
    slug = row.replace("/", "_").replace("+", "-")
    config = TrainConfig(
        data=str(data_folder(args)),
        out=f"{args.runs}/{args.dataset}_{args.regime}/{slug}_seed{seed}", supervision=supervision,
        image_size=size, epochs=args.epochs, batch_size=args.batch_size, encoder=encoder, encoder_weights=weights,
        seed=seed, eval_every=args.eval_every, limit_train=args.limit_train, limit_val=args.limit_val, **simulation,
        overwrite=True,
    )  # fmt: skip
    train_ds = make_datasets(method, config)[0]
    cost = train_ds.annotation_cost()
    cost["tags_per_image"] = float(np.mean([train_ds[i]["tags"].sum().item() for i in range(len(train_ds))]))
    t0 = time.perf_counter()
    summary = train(method, method.Config(**overrides), config)
    return {
        "row": row, "seed": seed, "method": name, "supervision": supervision, "settings": {**overrides, **simulation},
        "val_miou": summary["miou"], "per_class_iou": summary["per_class_iou"], "pixel_acc": summary["pixel_acc"],
        "seconds": round(time.perf_counter() - t0, 1), **cost,
        **({"train_diagnostics": summary["train_diagnostics"]} if "train_diagnostics" in summary else {}),
    }  # fmt: skip


def budget(args, size) -> dict:
    encoder, weights, _ = REGIMES[args.regime]
    return {
        "dataset": args.dataset, "regime": args.regime, "encoder": encoder, "encoder_weights": weights,
        "image_size": list(size), "epochs": args.epochs, "batch_size": args.batch_size,
        "limit_train": args.limit_train, "limit_val": args.limit_val, "data": str(data_folder(args)),
    }  # fmt: skip


def data_folder(args) -> Path:
    """The dataset folder, resolved: ``--data ../shared/datasets/camvid`` and the default are one budget."""
    return Path(args.data or f"../shared/datasets/{args.dataset}").resolve()


def load_doc(path: Path, args, size) -> dict:
    """The table's measured runs, or a new table. A table measured with another budget is never
    dropped silently (that lost rows once): it is an error unless ``--new-table`` says to replace it."""
    wanted = budget(args, size)
    doc = json.loads(path.read_text()) if path.exists() else {"budget": wanted, "runs": []}
    if doc.get("budget") == wanted:
        return doc
    if doc.get("runs") and not args.new_table:
        old = doc.get("budget") or {}
        differ = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in wanted.items() if old.get(k) != v)
        raise BenchError(
            f"{path} holds {len(doc['runs'])} run(s) measured with another budget ({differ}). Rerun with that "
            "budget to add rows to it, pass --out DIR for a separate table, or --new-table to replace it."
        )
    return {"budget": wanted, "runs": []}


def summarise(doc: dict) -> list[dict]:
    """One line per row: mean +- sd over its seeds, the cost of its labels, per-class IoU means."""
    order = list(ROWS.get(doc["budget"]["dataset"], ()))
    order = order or ["supervised/dense"]  # the upper bound first, then the table's order
    rows = sorted({r["row"] for r in doc["runs"]}, key=lambda r: (order.index(r) if r in order else len(order), r))
    out = []
    for row in rows:
        runs = [r for r in doc["runs"] if r["row"] == row]
        mious = np.array([r["val_miou"] for r in runs])
        classes = list(runs[0]["per_class_iou"])
        per_class = {
            c: (float(np.mean(v)) if (v := [r["per_class_iou"][c] for r in runs if r["per_class_iou"][c] is not None])
                else None)
            for c in classes
        }  # fmt: skip
        out.append({
            "row": row, "seeds": [r["seed"] for r in runs], "miou_mean": float(mious.mean()),
            "miou_sd": float(mious.std(ddof=1)) if len(mious) > 1 else 0.0, "settings": runs[0]["settings"],
            "labelled_fraction": runs[0]["labelled_fraction"], "clicks_per_image": runs[0]["clicks_per_image"],
            "tags_per_image": runs[0]["tags_per_image"], "seconds": float(np.mean([r["seconds"] for r in runs])),
            "per_class_iou": per_class,
        })  # fmt: skip
    full = next((r["miou_mean"] for r in out if r["row"] == "supervised/dense"), None)
    for r in out:
        r["ratio_to_supervised"] = r["miou_mean"] / full if full else None
    return out


def markdown(doc: dict) -> str:
    b = doc["budget"]
    h, w = b["image_size"]
    weights = "ImageNet (pretrained extra, offline)" if b["encoder_weights"] else "from scratch"
    limits = "".join(f", {k} {b[k]}" for k in ("limit_train", "limit_val") if b.get(k))
    lines = [
        f"Budget: {b['dataset']} {h}x{w}, regime `{b['regime']}` (Unet-{b['encoder']} {weights}), {b['epochs']} epochs, "
        f"batch {b['batch_size']}{limits}, AdamW + one-cycle, flips; the same for every row. Val mIoU at the masks' "
        "full resolution, mean +- sd over training seeds (labels fixed). Labels simulated at the working size: "
        "single-pixel points (one per region), 1-px skeleton scribbles, unless the settings column says otherwise. "
        "Labelled share and clicks are per training image.",
        "",
        "| row | seeds | val mIoU | ratio to supervised | labelled share | clicks / image | tags / image "
        "| wall time / run (s) | settings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = summarise(doc)
    for r in rows:
        ratio = f"{r['ratio_to_supervised']:.2f}" if r["ratio_to_supervised"] is not None else "n/a"
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(
            f"| {r['row']} | {len(r['seeds'])} | {r['miou_mean']:.3f} +- {r['miou_sd']:.3f} | {ratio} "
            f"| {100 * r['labelled_fraction']:.2f}% | {r['clicks_per_image']:.1f} | {r['tags_per_image']:.1f} "
            f"| {r['seconds']:.0f} | {settings} |"
        )
    classes = list(rows[0]["per_class_iou"]) if rows else []
    lines += ["", "Per-class IoU (mean over seeds):", "", "| row | " + " | ".join(classes) + " |"]
    lines.append("|---" * (len(classes) + 1) + "|")
    for r in rows:
        cells = [f"{v:.2f}" if v is not None else "n/a" for v in r["per_class_iou"].values()]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def finish(doc: dict, out: Path) -> None:
    doc["rows"] = summarise(doc)
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown(doc))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help=f"one of {sorted(ROWS)} (rows), or any name with --data")
    parser.add_argument("--regime", choices=sorted(REGIMES), default="scratch")
    parser.add_argument("--data", help="dataset folder (default ../shared/datasets/DATASET)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", help="HEIGHT,WIDTH (default: the regime's size for the dataset)")
    parser.add_argument("--seeds", default="0,1", help="training seeds, comma-separated (mean +- sd per row)")
    parser.add_argument("--rows", help="comma-separated METHOD[+crf]/SUPERVISION rows (default: the dataset's)")
    parser.add_argument("--crf-weight", type=float, default=1.0, help="crf_weight of the +crf rows")
    parser.add_argument("--set", help='JSON of extra settings per row, e.g. \'{"spml/points": {"point_radius": 6}}\'')
    parser.add_argument("--limit-train", type=int, help="first N training images (smoke runs)")
    parser.add_argument("--limit-val", type=int, help="first N val images (smoke runs)")
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--redo", action="store_true", help="rerun runs that already have a result")
    parser.add_argument(
        "--new-table", action="store_true", help="replace a table measured with another budget (default: refuse)"
    )
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--runs", default="runs/bench_label_efficiency")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.image_size:
        size = tuple(int(v) for v in args.image_size.split(","))
    elif args.dataset in REGIMES[args.regime][2]:
        size = REGIMES[args.regime][2][args.dataset]
    else:
        raise BenchError(f"--image-size is needed for dataset {args.dataset!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = args.rows.split(",") if args.rows else list(ROWS.get(args.dataset, ()))
    if not rows:
        raise BenchError(f"no rows for dataset {args.dataset!r}; pass --rows")
    for row in rows:  # every row checked before the first one trains
        row_settings(row, args)
    out = Path(args.out) / f"label_efficiency_{args.dataset}_{args.regime}"
    doc = load_doc(out.with_suffix(".json"), args, size)
    print(f"budget: {json.dumps(doc['budget'])}; seeds {seeds}", flush=True)
    for row in rows:
        for seed in seeds:
            settings = {**row_settings(row, args)[0], **row_settings(row, args)[1]}
            done = [r for r in doc["runs"] if r["row"] == row and r["seed"] == seed and r["settings"] == settings]
            if done and not args.redo:
                print(f"{row} seed {seed}: already measured, skipped (--redo to rerun)", flush=True)
                continue
            result = run_one(row, seed, args, size)
            doc["runs"] = [r for r in doc["runs"] if not (r["row"] == row and r["seed"] == seed)] + [result]
            finish(doc, out)
            print(f"{row:<28} seed {seed}  mIoU {result['val_miou']:.3f}  ({result['seconds']} s)", flush=True)
    finish(doc, out)
    print(markdown(doc))


if __name__ == "__main__":
    sys.exit(main())

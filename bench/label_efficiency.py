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

from workbench.data.dataset import median_frequency_weights
from workbench.io import atomic_path, atomic_write_text, file_lock
from workbench.methods import METHODS
from workbench.metrics import bootstrap_paired_difference
from workbench.train import checkpoint as ckpt
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets
from workbench.train.loop import train

ROWS = {  # issue 31's converged tables, in this order; an equal-wall-clock control ROW@N sorts after ROW
    "camvid": (
        "supervised/dense", "supervised+balanced/dense", "partial_ce/points", "partial_ce+balanced/points",
        "partial_ce+crf/points", "spml/points", "single_stage/points", "partial_ce/scribbles", "spml/scribbles",
    ),
    "msrc21": (
        "supervised/dense", "supervised+balanced/dense", "partial_ce/points", "partial_ce+balanced/points",
        "spml/points", "cam/tags", "spml/tags", "spml/boxes",
    ),
}  # fmt: skip
REGIMES = {  # encoder, its weights, default image size per dataset (Lite0 wants sides divisible by 32)
    "scratch": ("resnet18", None, {"camvid": (120, 160), "msrc21": (96, 144)}),
    "pretrained": ("timm-tf_efficientnet_lite0", "imagenet", {"camvid": (128, 160), "msrc21": (96, 128)}),
}
# row suffix +NAME -> the method Config field it switches on (crf: --crf-weight; balanced: median-frequency
# class weights of the row's own training targets, SegNet's protocol)
VARIANTS = {"crf": "crf_weight", "balanced": "class_weights"}
MEDIAN_FREQUENCY = "median_frequency"
BASELINE = "partial_ce+balanced/points"  # the converged tables' paired differences are to this row
# Published annotation times per image on PASCAL VOC (Bearman et al., "What's the Point", ECCV 2016): full
# masks 239.7 s, image-level tags 20.0 s, one point per class 22.1 s. Our points are one per region (the
# clicks column gives their number), so these are the published per-image costs, not ours.
ANNOTATION_SECONDS = {"dense": 239.7, "tags": 20.0, "points": 22.1}
# Method settings that differ from the Config defaults, per row.
OVERRIDES = {
    "spml/boxes": {"seed_source": "cam_boxes"},
    "spml/tags": {"seed_source": "cam_tags"},
}
SIMULATION_FIELDS = ("points_per_region", "min_region_px", "point_radius", "scribble_width", "scribble_fraction")


class BenchError(SystemExit):
    """A row this checkout cannot run (the message says why and what to do)."""


def row_epochs(row: str, args) -> int:
    """``ROW@N`` trains N epochs (an equal-wall-clock control); other rows the table's ``--epochs``."""
    _, _, epochs = row.partition("@")
    if epochs and not epochs.isdigit():
        raise BenchError(f"row {row!r}: write ROW@EPOCHS with a whole number of epochs, e.g. {row.split('@')[0]}@40")
    return int(epochs) if epochs else args.epochs


def parse_row(row: str) -> tuple[str, tuple[str, ...], str]:
    """``"partial_ce+crf/points"`` -> ``("partial_ce", ("crf",), "points")`` (an ``@N`` suffix aside)."""
    try:
        head, supervision = row.split("@")[0].split("/")
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
        settings.setdefault(field, MEDIAN_FREQUENCY if v == "balanced" else getattr(args, f"{v}_weight"))
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
    slug = row.replace("/", "_").replace("+", "-").replace("@", "_e")
    config = TrainConfig(
        data=str(data_folder(args)),
        out=f"{args.runs}/{args.dataset}_{args.regime}{args.tag}/{slug}_seed{seed}", supervision=supervision,
        image_size=size, epochs=row_epochs(row, args), batch_size=args.batch_size, encoder=encoder,
        encoder_weights=weights, seed=seed, eval_every=args.eval_every, limit_train=args.limit_train,
        limit_val=args.limit_val, train_split=args.train_split, val_split=args.val_split,
        channels_last=args.channels_last, **simulation,
    )  # fmt: skip
    run_dir = Path(config.out)  # a run stopped mid-way resumes from its last epoch; a finished one is redone
    resume = (run_dir / ckpt.STATE_FILE).exists() and not (run_dir / "report.json").exists()
    config = dataclasses.replace(config, resume=resume, overwrite=not resume and run_dir.exists())
    train_ds = make_datasets(method, config)[0]
    cost = train_ds.annotation_cost()
    cost["tags_per_image"] = float(np.mean([train_ds[i]["tags"].sum().item() for i in range(len(train_ds))]))
    method_overrides = dict(overrides)
    if method_overrides.get("class_weights") == MEDIAN_FREQUENCY:  # from this row's own training targets
        method_overrides["class_weights"] = median_frequency_weights(train_ds)
    t0 = time.perf_counter()
    summary = train(method, method.Config(**method_overrides), config)
    return {
        "row": row, "seed": seed, "method": name, "supervision": supervision, "settings": {**overrides, **simulation},
        "epochs": config.epochs, "val_miou": summary["miou"], "per_class_iou": summary["per_class_iou"],
        "pixel_acc": summary["pixel_acc"], "seconds": round(time.perf_counter() - t0, 1), **cost,
        **({"class_weights": list(method_overrides["class_weights"])} if "class_weights" in overrides else {}),
        **({"train_diagnostics": summary["train_diagnostics"]} if "train_diagnostics" in summary else {}),
        "image_names": [r["name"] for r in summary["per_image"]],
        "image_confusions": [r["confusion"] for r in summary["per_image"]],
    }  # fmt: skip


def budget(args, size) -> dict:
    encoder, weights, _ = REGIMES[args.regime]
    return {
        "dataset": args.dataset, "regime": args.regime, "encoder": encoder, "encoder_weights": weights,
        "image_size": list(size), "epochs": args.epochs, "batch_size": args.batch_size,
        "limit_train": args.limit_train, "limit_val": args.limit_val, "data": str(data_folder(args)),
        **({"train_split": args.train_split, "val_split": args.val_split, "channels_last": True}
           if args.channels_last or (args.train_split, args.val_split) != ("train", "val") else {}),
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


def summarise(doc: dict, confusions: dict[str, np.ndarray] | None = None) -> list[dict]:
    """One line per row: mean +- sd over its seeds, the cost of its labels, per-class IoU means; with the
    runs' per-image confusion matrices also the paired difference to :data:`BASELINE` with a bootstrap
    95% interval over val images, and ratios to the better supervised reference."""
    order = list(ROWS.get(doc["budget"]["dataset"], ()))
    order = order or ["supervised/dense"]  # the upper bound first, then the table's order

    def position(row: str) -> tuple:
        base = row.split("@")[0]
        return (order.index(base) if base in order else len(order), base, row)

    rows = sorted({r["row"] for r in doc["runs"]}, key=position)
    out = []
    for row in rows:
        runs = sorted((r for r in doc["runs"] if r["row"] == row), key=lambda r: r["seed"])
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
            "miou_per_seed": [float(m) for m in mious], "epochs": runs[0].get("epochs", doc["budget"]["epochs"]),
            "labelled_fraction": runs[0]["labelled_fraction"], "clicks_per_image": runs[0]["clicks_per_image"],
            "tags_per_image": runs[0]["tags_per_image"], "seconds": float(np.mean([r["seconds"] for r in runs])),
            "annotation_seconds_published": ANNOTATION_SECONDS.get(runs[0]["supervision"]),
            "per_class_iou": per_class,
        })  # fmt: skip
    full = next((r["miou_mean"] for r in out if r["row"] == "supervised/dense"), None)
    references = [r for r in out if r["row"].split("/")[0].split("+")[0] == "supervised"]
    reference = max(references, key=lambda r: r["miou_mean"]) if references else None
    learned = [c for c, v in reference["per_class_iou"].items() if v is not None and v > 0.1] if reference else []
    baseline = next((r for r in out if r["row"] == BASELINE), None)
    for r in out:
        r["ratio_to_supervised"] = r["miou_mean"] / full if full else None
        if reference:
            r["reference"] = reference["row"]
            r["ratio_to_reference"] = r["miou_mean"] / reference["miou_mean"]
            r["reference_learned_classes"] = learned
            r["ratio_on_learned_classes"] = float(
                np.mean([r["per_class_iou"][c] or 0.0 for c in learned])
                / np.mean([reference["per_class_iou"][c] for c in learned])
            ) if learned else None  # fmt: skip
            r["wall_time_multiplier"] = r["seconds"] / reference["seconds"]
        if confusions and baseline and r is not baseline:
            mine, theirs = run_confusions(confusions, r), run_confusions(confusions, baseline)
            if mine is not None and theirs is not None:
                r["difference_to_baseline"] = {"baseline": BASELINE, **bootstrap_paired_difference(mine, theirs)}
    return out


def confusion_key(row: str, seed: int) -> str:
    return f"{row}|{seed}"


def run_confusions(confusions: dict[str, np.ndarray], summary_row: dict) -> np.ndarray | None:
    """``(seeds, images, C, C)`` of a row, or None while a seed's matrices are missing."""
    keys = [confusion_key(summary_row["row"], seed) for seed in summary_row["seeds"]]
    return np.stack([confusions[k] for k in keys]) if all(k in confusions for k in keys) else None


def markdown(doc: dict) -> str:
    b = doc["budget"]
    h, w = b["image_size"]
    weights = "ImageNet (pretrained extra, offline)" if b["encoder_weights"] else "from scratch"
    limits = "".join(f", {k} {b[k]}" for k in ("limit_train", "limit_val") if b.get(k))
    splits = f", trained on `{b.get('train_split', 'train')}`, scored on `{b.get('val_split', 'val')}` once"
    lines = [
        f"Budget: {b['dataset']} {h}x{w}, regime `{b['regime']}` (Unet-{b['encoder']} {weights}), {b['epochs']} epochs, "
        f"batch {b['batch_size']}{limits}{splits}, AdamW + one-cycle, flips; the same for every row (an `@N` row is "
        "the equal-wall-clock control, N epochs). Val mIoU at the masks' full resolution, mean +- sd over training "
        "seeds (labels fixed). Labels simulated at the working size: single-pixel points (one per region), 1-px "
        "skeleton scribbles, unless the settings column says otherwise. Labelled share and clicks are per training "
        f"image. Difference: mIoU minus `{BASELINE}`'s, paired bootstrap 95% interval over val images (2000 "
        "resamples, seed-mean mIoU), then per seed. Reference: the better supervised row; 'learned classes' are "
        "those it scores above 0.1 IoU. Published annotation seconds per image: PASCAL VOC, Bearman et al. 2016.",
        "",
        "| row | seeds | val mIoU | difference [95% CI] (per seed) | ratio to reference | ratio on learned classes "
        "| labelled share | clicks / image | published s / image | wall time x | settings |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = doc.get("rows") or summarise(doc)
    for r in rows:
        diff = r.get("difference_to_baseline")
        shown = (
            f"{100 * diff['difference']:+.1f} [{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}] ("
            + ", ".join(f"{100 * d:+.1f}" for d in diff["per_seed"]) + ")"
            if diff else ("baseline" if r["row"] == BASELINE else "-")
        )  # fmt: skip
        ratio = f"{r['ratio_to_reference']:.2f}" if r.get("ratio_to_reference") is not None else "n/a"
        learned = f"{r['ratio_on_learned_classes']:.2f}" if r.get("ratio_on_learned_classes") is not None else "n/a"
        seconds = r.get("annotation_seconds_published")
        wall = f"{r['wall_time_multiplier']:.2f}" if r.get("wall_time_multiplier") is not None else "n/a"
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(
            f"| {r['row']} | {len(r['seeds'])} | {r['miou_mean']:.3f} +- {r['miou_sd']:.3f} | {shown} | {ratio} "
            f"| {learned} | {100 * r['labelled_fraction']:.2f}% | {r['clicks_per_image']:.1f} "
            f"| {seconds if seconds is not None else 'n/a'} | {wall} | {settings} |"
        )
    classes = list(rows[0]["per_class_iou"]) if rows else []
    lines += ["", "Per-class IoU (mean over seeds):", "", "| row | " + " | ".join(classes) + " |"]
    lines.append("|---" * (len(classes) + 1) + "|")
    for r in rows:
        cells = [f"{v:.2f}" if v is not None else "n/a" for v in r["per_class_iou"].values()]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    total = sum(r["seconds"] for r in doc["runs"])
    lines += [
        "",
        f"Total compute: {len(doc['runs'])} runs, {total / 3600:.2f} h of training wall time on this machine.",
    ]
    return "\n".join(lines) + "\n"


def confusions_path(out: Path) -> Path:
    return out.with_suffix(".confusions.npz")


def load_confusions(out: Path) -> dict[str, np.ndarray]:
    path = confusions_path(out)
    return dict(np.load(path)) if path.exists() else {}


def finish(doc: dict, out: Path, confusions: dict[str, np.ndarray] | None = None) -> None:
    """The JSON (one object per row with its ``seeds`` and interval fields), the markdown, and the runs'
    per-image confusion matrices beside them (what the intervals resample)."""
    doc["rows"] = summarise(doc, confusions)
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown(doc))
    if confusions:
        with atomic_path(confusions_path(out)) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **confusions)


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
    parser.add_argument("--train-split", default="train", help="train on this split (train-tune while choosing)")
    parser.add_argument("--val-split", default="val", help="score this split (tune while choosing; val once)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last tensors (same maths, faster)")
    parser.add_argument("--tag", default="", help="suffix of the table's file name, e.g. _converged")
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
    out = Path(args.out) / f"label_efficiency_{args.dataset}_{args.regime}{args.tag}"
    doc = load_doc(out.with_suffix(".json"), args, size)
    confusions = load_confusions(out)
    print(f"budget: {json.dumps(doc['budget'])}; seeds {seeds}", flush=True)
    for row in rows:
        for seed in seeds:
            settings = {**row_settings(row, args)[0], **row_settings(row, args)[1]}
            done = [r for r in doc["runs"] if r["row"] == row and r["seed"] == seed and r["settings"] == settings]
            if done and not args.redo:
                print(f"{row} seed {seed}: already measured, skipped (--redo to rerun)", flush=True)
                continue
            result = run_one(row, seed, args, size)
            names, matrices = result.pop("image_names"), result.pop("image_confusions")
            with file_lock(out):  # two processes may fill one table: re-read what the other one added
                doc, confusions = load_doc(out.with_suffix(".json"), args, size), load_confusions(out)
                if doc.setdefault("val_images", names) != names:
                    raise BenchError(f"{row} seed {seed}: scored other val images than the table's; use a new --tag")
                confusions[confusion_key(row, seed)] = np.asarray(matrices, dtype=np.int64)
                doc["runs"] = [r for r in doc["runs"] if not (r["row"] == row and r["seed"] == seed)] + [result]
                finish(doc, out, confusions)
            print(f"{row:<28} seed {seed}  mIoU {result['val_miou']:.3f}  ({result['seconds']} s)", flush=True)
    with file_lock(out):
        doc, confusions = load_doc(out.with_suffix(".json"), args, size), load_confusions(out)
        finish(doc, out, confusions)
    print(markdown(doc))


if __name__ == "__main__":
    sys.exit(main())

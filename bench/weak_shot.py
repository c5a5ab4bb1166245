"""Benchmark (issue 3): weak-shot segmentation, base classes with masks and novel classes with tags.

One fixed budget per dataset for every row (image size, epochs, batch, the engine's optimizer
and schedule). Per row: base, novel, harmonic (ours) and overall mIoU on the validation split,
and the ratio of novel (and base) mIoU to the fully supervised row. Rows:

- ``supervised_all``: cross-entropy on every class (the upper bound, no protocol);
- ``simformer_all``: SimFormer with masks for every class (no protocol), the same-model upper
  bound: the SimFormer rows also get their novel and base ratios to it;
- ``supervised_base``: cross-entropy on base pixels only (novel pixels unlabelled);
- ``cam_baseline``: supervised base + CAM pseudo-masks for novel classes. This is ``transfer``
  with ``label_rule=cam`` and no discriminator: the same tag-trained CAM head, and inside the
  not-base region each pixel takes the arg-max tagged novel class when its normalised CAM
  reaches 0.2, else stays unlabelled (the rule of ``workbench.methods.cam.cam_pseudo_mask``);
- ``simformer`` and its ablations ``simformer_no_comp`` (no complementary loss) and
  ``simformer_no_dist`` (no SimNet distillation);
- ``transfer``: L-Net + P-Net (a reconstruction).

Runs go to ``runs/bench_weak_shot/<dataset>/<row>``; a row whose run finished with the same
settings is read back instead of retrained, so rows can be added one at a time. Results:
``bench/results/weak_shot_<dataset>.json`` and ``.md``, rewritten after every row. By hand::

    nice -n 10 .venv/bin/python bench/weak_shot.py --dataset camvid
    nice -n 10 .venv/bin/python bench/weak_shot.py --dataset msrc21 --rows simformer,transfer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from workbench.checkpoint import read_run_config
from workbench.engine import TrainConfig, train
from workbench.io import atomic_write_text
from workbench.methods import simformer, supervised, transfer
from workbench.metrics import summarize

DATASETS = {  # one fixed budget per dataset
    "camvid": {"protocol": "objects", "image_size": (120, 160), "epochs": 10},
    "msrc21": {"protocol": "objects5", "image_size": (96, 144), "epochs": 15},
}
ROWS = {  # name: (method module, method config, trained under the weak-shot protocol)
    "supervised_all": (supervised, supervised.Config(), False),
    "simformer_all": (simformer, simformer.Config(), False),
    "supervised_base": (supervised, supervised.Config(), True),
    "cam_baseline": (transfer, transfer.Config(label_rule="cam", adversarial=False), True),
    "simformer": (simformer, simformer.Config(), True),
    "simformer_no_comp": (simformer, simformer.Config(complementary=False), True),
    "simformer_no_dist": (simformer, simformer.Config(distillation=False), True),
    "transfer": (transfer, transfer.Config(), True),
}
BATCH_SIZE = 8


def train_config(dataset: str, data_root: Path, row: str, weak_shot: bool, runs: Path, **overrides) -> TrainConfig:
    budget = DATASETS[dataset]
    config = TrainConfig(
        data=str(data_root / dataset), out=str(runs / dataset / row),
        protocol=budget["protocol"] if weak_shot else None, image_size=budget["image_size"],
        epochs=budget["epochs"], batch_size=BATCH_SIZE, overwrite=True,
    )  # fmt: skip
    return dataclasses.replace(config, **overrides)


def finished(config: TrainConfig, method_config) -> dict | None:
    """The report of a finished run with exactly these settings (else None: train it)."""
    run = Path(config.out)
    if not (run / "report.json").is_file():
        return None
    saved = read_run_config(run)

    def same(saved_fields: dict, obj) -> bool:  # fields added to the code later keep their defaults
        mine = json.loads(json.dumps(dataclasses.asdict(obj)))
        return all(saved_fields[k] == v for k, v in mine.items() if k in saved_fields and k != "novel")

    same_run = same(saved["train_config"], config) and same(saved["method_config"], method_config)
    return json.loads((run / "report.json").read_text()) if same_run else None


def run_row(method, method_config, config: TrainConfig, row: str) -> dict:
    """Train the row (or read back its finished run); ``seconds`` is the training wall time."""
    summary, timing = finished(config, method_config), Path(config.out) / "timing.json"
    if summary is None:
        t0 = time.perf_counter()
        summary = train(method, method_config, config)
        atomic_write_text(timing, json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
    seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
    return {"row": row, "method": method.__name__.rsplit(".", 1)[-1], "summary": summary, "seconds": seconds}


def table(dataset: str, data_root: Path, results: list[dict], epochs: int) -> dict:
    """Base / novel / harmonic / overall mIoU of every row under the protocol's split, plus ratios."""
    from workbench.data.folder import load_dataset_info
    from workbench.splits import ClassSplit

    info = load_dataset_info(data_root / dataset)
    split = ClassSplit.from_protocol(info.classes, info.protocols, DATASETS[dataset]["protocol"])
    rows = []
    for r in results:
        s = summarize(np.array(r["summary"]["confusion_matrix"]), info.classes, split.novel)
        rows.append({
            "row": r["row"], "method": r["method"], "base_miou": s["base_miou"], "novel_miou": s["novel_miou"],
            "harmonic_miou": s["harmonic_miou"], "miou": s["miou"], "seconds": r["seconds"],
            "per_class_iou": s["per_class_iou"],
        })  # fmt: skip
    full = next((r for r in rows if r["row"] == "supervised_all"), None)
    for r in rows:
        r["novel_ratio"] = r["novel_miou"] / full["novel_miou"] if full and full["novel_miou"] else None
        r["base_ratio"] = r["base_miou"] / full["base_miou"] if full and full["base_miou"] else None
    same = next((r for r in rows if r["row"] == "simformer_all"), None)
    for r in rows:
        mine = same and r["method"] == "simformer" and r is not same
        r["novel_ratio_same_model"] = r["novel_miou"] / same["novel_miou"] if mine and same["novel_miou"] else None
        r["base_ratio_same_model"] = r["base_miou"] / same["base_miou"] if mine and same["base_miou"] else None
    return {
        "dataset": dataset, "protocol": split.name, "novel_classes": [info.classes[c] for c in split.novel],
        "image_size": DATASETS[dataset]["image_size"], "epochs": epochs, "batch_size": BATCH_SIZE,
        "encoder": TrainConfig().encoder, "rows": rows,
    }  # fmt: skip


def markdown(doc: dict) -> str:
    h, w = doc["image_size"]
    lines = [
        f"# Weak-shot segmentation: {doc['dataset']}, protocol `{doc['protocol']}` "
        f"(novel: {', '.join(doc['novel_classes'])})",
        "",
        f"{h}x{w}, {doc['epochs']} epochs, batch {doc['batch_size']}, {doc['encoder']} from scratch, validation split.",
        "Ratios are to `supervised_all` (the fully supervised upper bound); the SimFormer rows also to "
        "`simformer_all` (same model, every class with masks). Harmonic = 2BN/(B+N) (ours).",
        "",
        "| row | base mIoU | novel mIoU | harmonic | overall mIoU | novel / full | base / full "
        "| novel / same model full | base / same model full | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        ratios = [r[k] for k in ("novel_ratio", "base_ratio", "novel_ratio_same_model", "base_ratio_same_model")]
        cells = " | ".join("" if v is None else f"{v:.2f}" for v in ratios)
        lines.append(
            f"| {r['row']} | {r['base_miou']:.3f} | {r['novel_miou']:.3f} | {r['harmonic_miou']:.3f} | "
            f"{r['miou']:.3f} | {cells} | {r['seconds'] or 0:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    parser.add_argument("--runs", default="runs/bench_weak_shot")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--epochs", type=int, help="override the fixed budget (smoke tests only)")
    parser.add_argument("--limit-train", type=int, help="use the first N training images (smoke tests only)")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("limit_train", args.limit_train)) if v is not None}
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    data_root, runs, out = Path(args.data_root), Path(args.runs), Path(args.out)
    results = []
    for row, (method, method_config, weak_shot) in ROWS.items():  # finished rows are tabled, named ones trained
        config = train_config(args.dataset, data_root, row, weak_shot, runs, **overrides)
        if row not in names and finished(config, method_config) is None:
            continue
        results.append(run_row(method, method_config, config, row))
        doc = table(args.dataset, data_root, results, config.epochs)
        atomic_write_text(out / f"weak_shot_{args.dataset}.json", json.dumps(doc, indent=1))
        atomic_write_text(out / f"weak_shot_{args.dataset}.md", markdown(doc))
        r = doc["rows"][-1]
        print(f"{row:<18} base {r['base_miou']:.3f} novel {r['novel_miou']:.3f} mIoU {r['miou']:.3f}", flush=True)
    if results:
        print(markdown(doc))


if __name__ == "__main__":
    main()

"""Benchmark (issue 14): weak-shot segmentation, base classes with masks and novel classes with tags.

One fixed budget per dataset and regime for every row (image size, epochs, batch, the engine's
optimizer and schedule), run on every split of the dataset; the tables give mean +- sd over
splits of base, novel and harmonic (ours) mIoU on the validation split, and the ratios of novel
and base mIoU to ``simformer_all`` (same model, every class with masks) and ``supervised_all``.

Datasets: ``synthetic`` (the synthetic set's weak-shot mode, protocol ``weakshot``: most images
hold two or three novel classes, so only similarity transfer can separate them), ``msrc21``
(SimFormer-style random 25% splits ``random25:1..4``) and ``camvid`` (its dataset.json splits).
Each split's identifiability report (``python -m workbench data protocols``) is stored beside it.
Regimes: ``scratch`` (resnet18, no pretrained weights) and ``pretrained`` (EfficientNet-Lite0
with ImageNet weights, ``timm-tf_efficientnet_lite0``, which needs the offline weights package).

Rows:

- ``supervised_all``: cross-entropy on every class (no protocol), the usual upper bound;
- ``simformer_all``: SimFormer with masks for every class (no protocol), the same-model bound;
- ``supervised_base``: cross-entropy on base pixels only (novel pixels unlabelled);
- ``cam_baseline``: supervised base + CAM pseudo-masks for novel classes (``transfer`` with
  ``label_rule=cam`` and no discriminator);
- ``simformer`` (S1), ``simformer_no_comp`` (no complementary loss), ``simformer_no_dist`` (no
  SimNet distillation), ``simformer_absent`` (plus the absent-tag term, ``absent_weight=1``, ours),
  ``simformer_partition`` (absent-tag term and novel masks partitioning the not-base region),
  ``simformer_base_pairs`` (SimNet trained on base-base pixel pairs only, ``simnet_pairs="base"``, ours);
- ``simformer_s2``: the S2 pseudo labels that the ``simformer`` run writes for the *training*
  images (tagged novel classes from its predictions, base pixels copied, the rest void), scored
  against the training ground truth (void pseudo pixels count as misses);
- ``simformer_s3``: SimFormer retrained on those pseudo labels (no protocol, no SimNet), scored
  on the validation split like every other row;
- ``transfer``: L-Net + P-Net (a reconstruction).

Runs go to ``runs/bench_weak_shot/<dataset>-<regime>/<split>/<row>``; a row whose run finished
with the same settings is read back instead of retrained. Results:
``bench/results/weak_shot_<dataset>_<regime>.json`` and ``.md``, rewritten after every run::

    nice -n 10 .venv/bin/python bench/weak_shot.py --dataset synthetic --regime scratch
    nice -n 10 .venv/bin/python bench/weak_shot.py --dataset msrc21 --regime pretrained --rows simformer,transfer
    .venv/bin/python bench/weak_shot.py --dataset camvid --splits objects --epochs 1 --limit-train 8 --limit-val 4 \\
        --out /tmp/smoke   # a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from torch.utils.data import default_collate

from workbench.data.folder import list_split, load_dataset_info, read_mask
from workbench.data.synthetic import WEAK_SHOT_PROTOCOL, SyntheticConfig, ensure_synthetic
from workbench.io import atomic_write_text
from workbench.labels.splits import ClassSplit, identifiability, random_protocols
from workbench.methods import simformer, supervised, transfer
from workbench.metrics import summarize
from workbench.train.checkpoint import read_run_config
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets
from workbench.train.loop import train
from workbench.train.runs import load_run

SYNTHETIC = SyntheticConfig(weak_shot=True)  # 64x64, 256 train / 64 val
DATASETS = {  # one fixed budget per dataset; splits: the protocols every row runs on
    # memory_stride: the encoder stage SimFormer's queries attend to (stride 32 leaves a 2x2 map on 64x64 inputs)
    "synthetic": {"splits": [WEAK_SHOT_PROTOCOL], "image_size": (64, 64), "epochs": 20, "memory_stride": 8},
    "msrc21": {"splits": random_protocols(), "image_size": (96, 144), "epochs": 15, "memory_stride": 16},
    "camvid": {"splits": ["objects", "mixed"], "image_size": (120, 160), "epochs": 10, "memory_stride": 16},
}
REGIMES = {
    "scratch": {"encoder": "resnet18", "encoder_weights": None},
    "pretrained": {"encoder": "timm-tf_efficientnet_lite0", "encoder_weights": "imagenet"},
}
# the paper lowers the learning rate of a *pretrained* backbone (x0.1); a random encoder trains at the full rate
BACKBONE_LR_SCALE = {"scratch": 1.0, "pretrained": 0.1}
NO_SIMNET = {"simnet": False, "distillation": False}
ROWS = {  # name: (method module, method config, trained under the weak-shot protocol)
    "supervised_all": (supervised, supervised.Config(), False),
    "simformer_all": (simformer, simformer.Config(**NO_SIMNET), False),
    "supervised_base": (supervised, supervised.Config(), True),
    "cam_baseline": (transfer, transfer.Config(label_rule="cam", adversarial=False), True),
    "simformer": (simformer, simformer.Config(), True),
    "simformer_s2": (simformer, simformer.Config(), True),  # pseudo labels of the simformer run
    "simformer_s3": (simformer, simformer.Config(**NO_SIMNET), False),  # retrained on them
    "simformer_no_comp": (simformer, simformer.Config(complementary=False), True),
    "simformer_no_dist": (simformer, simformer.Config(distillation=False), True),
    "simformer_absent": (simformer, simformer.Config(absent_weight=1.0), True),
    "simformer_partition": (simformer, simformer.Config(absent_weight=1.0, partition=True), True),
    "simformer_base_pairs": (simformer, simformer.Config(simnet_pairs="base"), True),
    "transfer": (transfer, transfer.Config(), True),
}
BATCH_SIZE = 8
SIMNET_IMAGES = 64  # validation images (32 pairs) behind a row's SimNet pair report


def row_method_config(row: str, dataset: str, regime: str):
    """A row's method config with the dataset's and regime's SimFormer settings (other methods as in ROWS)."""
    method, config, _ = ROWS[row]
    if method is not simformer:
        return config
    return dataclasses.replace(
        config, memory_stride=DATASETS[dataset]["memory_stride"], backbone_lr_scale=BACKBONE_LR_SCALE[regime]
    )


def dataset_root(dataset: str, data_root: Path, runs: Path) -> Path:
    if dataset == "synthetic":
        return ensure_synthetic(runs / "data" / "synthetic-weakshot", SYNTHETIC)
    return data_root / dataset


def train_config(budget: dict, regime: str, data: Path, out: Path, protocol: str | None, **overrides) -> TrainConfig:
    config = TrainConfig(
        data=str(data), out=str(out), protocol=protocol, image_size=budget["image_size"], epochs=budget["epochs"],
        batch_size=BATCH_SIZE, overwrite=True, **REGIMES[regime],
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


def run_training(method, method_config, config: TrainConfig, datasets=None) -> tuple[dict, float | None]:
    """Train (or read back) one run: its summary and training seconds (``datasets``: see ``train``)."""
    summary, timing = finished(config, method_config), Path(config.out) / "timing.json"
    if summary is None:
        t0 = time.perf_counter()
        summary = train(method, method_config, config, datasets=datasets)
        atomic_write_text(timing, json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
    return summary, (json.loads(timing.read_text())["seconds"] if timing.is_file() else None)


def pseudo_label_confusion(pseudo_root: Path, data: Path, limit: int | None) -> np.ndarray:
    """``(K, K)`` confusion of the S2 pseudo labels against the training ground truth; void pseudo
    pixels are misses: they count in the ground-truth row (and so lower recall) but in no column."""
    info = load_dataset_info(data)
    k = info.num_classes
    cm = np.zeros((k, k + 1), dtype=np.int64)
    for name in list_split(info, "train")[:limit]:
        truth = read_mask(info.mask_path("train", name), info).astype(np.int64)
        pseudo = read_mask(Path(pseudo_root) / info.mask_dir / "train" / f"{name}{info.mask_ext}", info).astype(
            np.int64
        )
        valid = truth < k
        pred = np.where(pseudo[valid] < k, pseudo[valid], k)
        cm += np.bincount(truth[valid] * (k + 1) + pred, minlength=k * (k + 1)).reshape(k, k + 1)
    return cm


def s2_summary(cm: np.ndarray, classes, novel) -> dict:
    """Per-class IoU with void pseudo pixels as misses (``summarize`` takes a square matrix)."""
    k = len(classes)
    tp = np.diag(cm[:, :k]).astype(float)
    union = cm.sum(1) + cm[:, :k].sum(0) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    mean = lambda ids: float(np.nanmean(iou[list(ids)])) if len(ids) else float("nan")  # noqa: E731
    base = [c for c in range(k) if c not in novel]
    b, n = mean(base), mean(novel)
    return {"base_miou": b, "novel_miou": n, "harmonic_miou": 2 * b * n / (b + n) if b + n > 0 else 0.0,
            "miou": mean(range(k)), "per_class_iou": {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, iou)},
            "coverage": float(cm[:, :k].sum() / max(cm.sum(), 1))}  # fmt: skip


def run_s2_s3(
    dataset_dir: Path, split_dir: Path, s3_train: TrainConfig, s3_method: simformer.Config, limit: int | None
) -> dict[str, dict]:
    """S2 (pseudo labels from the finished ``simformer`` run) and S3 (retraining on them)."""
    run = split_dir / "simformer"
    pseudo = split_dir / "pseudo_labels"
    if (
        not (pseudo / "dataset.json").is_file()
        or (pseudo / "dataset.json").stat().st_mtime < (run / "report.json").stat().st_mtime
    ):
        _, model, cfg = load_run(run, "cpu")
        novel = ClassSplit.from_names(cfg["dataset"]["classes"], cfg["novel"]).novel
        simformer.write_pseudo_label_dataset(model, dataset_dir, novel, tuple(cfg["image_size"]), pseudo)
    out = {"simformer_s2": {"confusion": pseudo_label_confusion(pseudo, dataset_dir, limit), "seconds": None}}
    s3_train = dataclasses.replace(s3_train, data=str(pseudo), out=str(split_dir / "simformer_s3"), protocol=None)
    summary, seconds = run_training(simformer, s3_method, s3_train)
    out["simformer_s3"] = {"summary": summary, "seconds": seconds}
    return out


def simnet_scores(run: Path, data: Path, image_size: tuple[int, int], limit_val: int | None) -> dict[str, float | None]:
    """SimNet's p(same) on validation pixel pairs by kind (:func:`simformer.simnet_pair_report`) of a
    weak-shot SimFormer run: whether pixel-pixel similarity transfers to the novel classes."""
    _, model, cfg = load_run(run, "cpu")
    novel = ClassSplit.from_names(cfg["dataset"]["classes"], cfg["novel"]).novel
    config = TrainConfig(data=str(data), image_size=image_size, hflip=False, limit_val=limit_val)
    _, val = make_datasets(simformer, config)
    batch = default_collate([val[i] for i in range(min(len(val), SIMNET_IMAGES))])
    report = simformer.simnet_pair_report(model, batch["image"], batch["label"], novel)
    return {f"simnet_{key}": value for key, value in report.items()}


def row_scores(row: str, result: dict, info, split: ClassSplit) -> dict:
    if row == "simformer_s2":
        s = s2_summary(result["confusion"], info.classes, split.novel)
    else:
        s = summarize(np.array(result["summary"]["confusion_matrix"]), info.classes, split.novel)
    return {k: s[k] for k in ("base_miou", "novel_miou", "harmonic_miou", "miou", "per_class_iou")} | {
        "seconds": result["seconds"]
    }


def add_ratios(rows: dict[str, dict]) -> None:
    """Novel and base mIoU as shares of ``simformer_all`` (same model) and ``supervised_all``
    (not for ``simformer_s2``, which scores training images)."""
    for bound, tag in (("simformer_all", "same_model"), ("supervised_all", "full")):
        ref = rows.get(bound)
        for name, r in rows.items():
            if name == "simformer_s2":
                r[f"novel_ratio_{tag}"] = r[f"base_ratio_{tag}"] = None
                continue
            for key in ("novel", "base"):
                ok = ref is not None and ref[f"{key}_miou"]
                r[f"{key}_ratio_{tag}"] = r[f"{key}_miou"] / ref[f"{key}_miou"] if ok else None


def aggregate(per_split: dict[str, dict[str, dict]]) -> list[dict]:
    """Mean and sd over splits of every number of every row (rows in ``ROWS`` order)."""
    out = []
    for row in ROWS:
        runs = [rows[row] for rows in per_split.values() if row in rows]
        if not runs:
            continue
        entry = {"row": row, "splits": len(runs)}
        for key in [k for k, v in runs[0].items() if k != "per_class_iou" and (v is None or isinstance(v, float))]:
            values = [r[key] for r in runs if r.get(key) is not None and np.isfinite(r[key])]
            entry[key] = float(np.mean(values)) if values else None
            entry[f"{key}_sd"] = float(np.std(values)) if len(values) > 1 else None
        out.append(entry)
    return out


def markdown(doc: dict) -> str:
    h, w = doc["image_size"]
    lines = [
        f"# Weak-shot segmentation: {doc['dataset']}, {doc['regime']} ({doc['encoder']}"
        f"{', ImageNet weights' if doc['encoder_weights'] else ', from scratch'})",
        "",
        f"{h}x{w}, {doc['epochs']} epochs, batch {doc['batch_size']}, validation split; mean +- sd over "
        f"{len(doc['splits'])} split(s): {', '.join(doc['splits'])}. Ratios: novel (base) mIoU over "
        "`simformer_all` (same model, every class with masks) and over `supervised_all`. Harmonic = 2BN/(B+N) "
        "(ours). `simformer_s2` scores the pseudo labels of the training images, not the validation split. "
        f"SimNet p(same): its mean same-class probability on cross-image pairs of two novel pixels of one class "
        f"and of two novel classes ({SIMNET_IMAGES} validation images; distillation trusts it there, so no gap "
        "means no pixel-pixel transfer). "
        f"SimFormer rows: queries attend to the stride-{doc.get('memory_stride', 32)} encoder stage, encoder "
        f"learning rate x{doc.get('backbone_lr_scale', 0.1)}.",
        "",
        "| row | base mIoU | novel mIoU | harmonic | novel / simformer_all | base / simformer_all "
        "| novel / supervised_all | SimNet p(same), novel pairs: one class / two | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(r, key, digits=3):
        v, sd = r.get(key), r.get(f"{key}_sd")
        return "" if v is None else f"{v:.{digits}f}" + ("" if sd is None else f" +- {sd:.{digits}f}")

    def simnet_cell(r):
        same, diff = cell(r, "simnet_novel_same", 2), cell(r, "simnet_novel_diff", 2)
        return f"{same} / {diff}" if same and diff else ""

    for r in doc["rows"]:
        lines.append(
            f"| {r['row']} | {cell(r, 'base_miou')} | {cell(r, 'novel_miou')} | {cell(r, 'harmonic_miou')} | "
            f"{cell(r, 'novel_ratio_same_model', 2)} | {cell(r, 'base_ratio_same_model', 2)} | "
            f"{cell(r, 'novel_ratio_full', 2)} | {simnet_cell(r)} | {r.get('seconds') or 0:.0f} |"
        )
    lines += ["", "## Identifiability of the splits (training images)", ""]
    for name, report in doc["identifiability"].items():
        counts = " / ".join(str(v) for v in report["images_by_novel_count"].values())
        lines.append(
            f"- `{name}` (novel: {', '.join(report['novel'])}): images by number of novel classes present "
            f"{{{', '.join(report['images_by_novel_count'])}}} = {counts}; novel pixels in images with >= 2 novel "
            f"classes {report['confusable_novel_pixel_share']:.0%}"
            + "".join(f"\n  - warning: {w}" for w in report["warnings"])
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--regime", default="scratch", choices=sorted(REGIMES))
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    parser.add_argument("--splits", help="comma-separated subset of the dataset's splits (protocols)")
    parser.add_argument("--runs", default="runs/bench_weak_shot")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--epochs", type=int, help="override the fixed budget (smoke tests only)")
    parser.add_argument("--limit-train", type=int, help="use the first N training images (smoke tests only)")
    parser.add_argument("--limit-val", type=int, help="use the first N validation images (smoke tests only)")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("limit_train", args.limit_train),
                                   ("limit_val", args.limit_val)) if v is not None}  # fmt: skip
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    budget = DATASETS[args.dataset]
    splits = [s.strip() for s in args.splits.split(",")] if args.splits else budget["splits"]
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    runs, out = Path(args.runs) / f"{args.dataset}-{args.regime}", Path(args.out)
    data = dataset_root(args.dataset, Path(args.data_root), Path(args.runs))
    info = load_dataset_info(data)
    train_masks = [read_mask(info.mask_path("train", n), info) for n in list_split(info, "train")[: args.limit_train]]
    per_split, reports = {}, {}
    for protocol in splits:
        split = ClassSplit.from_protocol(info.classes, info.protocols, protocol)
        reports[protocol] = identifiability(train_masks, split).to_dict()
        split_dir, rows = runs / protocol.replace(":", "_"), {}
        for row in sorted(ROWS, key=lambda r: names.index(r) if r in names else len(names)):  # --rows order first
            if row in ("simformer_s2", "simformer_s3"):
                continue
            method, _, weak_shot = ROWS[row]
            method_config = row_method_config(row, args.dataset, args.regime)
            config = train_config(
                budget, args.regime, data, split_dir / row, protocol if weak_shot else None, **overrides
            )
            if row not in names and finished(config, method_config) is None:
                continue
            summary, seconds = run_training(method, method_config, config)
            rows[row] = row_scores(row, {"summary": summary, "seconds": seconds}, info, split)
            if method is simformer and weak_shot and method_config.simnet:
                rows[row] |= simnet_scores(Path(config.out), data, budget["image_size"], args.limit_val)
            print(f"{protocol:<12} {row:<18} base {rows[row]['base_miou']:.3f} novel {rows[row]['novel_miou']:.3f}",
                  flush=True)  # fmt: skip
            if row == "simformer" and {"simformer_s2", "simformer_s3"} & set(names):
                s3_config = train_config(budget, args.regime, data, split_dir / "simformer_s3", None, **overrides)
                s3_method = row_method_config("simformer_s3", args.dataset, args.regime)
                for name, result in run_s2_s3(data, split_dir, s3_config, s3_method, args.limit_train).items():
                    rows[name] = row_scores(name, result, info, split)
                    print(f"{protocol:<12} {name:<18} base {rows[name]['base_miou']:.3f} "
                          f"novel {rows[name]['novel_miou']:.3f}", flush=True)  # fmt: skip
            add_ratios(rows)
            per_split[protocol] = {r: rows[r] for r in ROWS if r in rows}  # the table keeps ROWS order
            doc = {
                "dataset": args.dataset, "regime": args.regime, "splits": list(per_split), "image_size":
                budget["image_size"], "epochs": overrides.get("epochs", budget["epochs"]), "batch_size": BATCH_SIZE,
                **REGIMES[args.regime], "memory_stride": budget["memory_stride"],
                "backbone_lr_scale": BACKBONE_LR_SCALE[args.regime], "overrides": overrides,
                "rows": aggregate(per_split), "per_split": per_split, "identifiability": reports,
            }  # fmt: skip
            atomic_write_text(out / f"weak_shot_{args.dataset}_{args.regime}.json", json.dumps(doc, indent=1))
            atomic_write_text(out / f"weak_shot_{args.dataset}_{args.regime}.md", markdown(doc))
    if per_split:
        print(markdown(doc))


if __name__ == "__main__":
    main()

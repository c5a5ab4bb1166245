"""Diagnostic (issue 14): how much can SimFormer's pixel-pixel distillation give with a perfect teacher?

On the synthetic weak-shot set SimNet calls same-class and different-class novel pixel pairs
alike (p(same) 0.09 / 0.10), so the ``simformer`` row cannot tell whether distillation fails for
want of a good teacher or could not help anyway. Here SimFormer trains with the bench's budget
(``weak_shot.py``, synthetic, scratch) twice per setting: with its learned SimNet teacher and with
the ground-truth relation (1: same class, 0: not) as the teacher, ``distillation_loss(truth=...)``.
The ground-truth rows see novel labels and are a ceiling of the pixel-pixel pathway, not a method.

Settings: the paper's weights (``dist_weight=0.5``), and ``dist_weight=2`` with the absent-tag
term (``absent_weight=1``, ours). Results: ``bench/results/simformer_teacher_ceiling.{json,md}``::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.simformer_teacher_ceiling --variants learned_paper,truth_paper
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.simformer_teacher_ceiling --variants learned_strong,truth_strong
    .venv/bin/python -m bench.simformer_teacher_ceiling --variants learned_paper   # reads every finished run back

The ground-truth teacher is a variant passed in, not a patch: :func:`truth_teacher` is SimFormer's
module with its ``training_step`` handing the batch's ground truth to the distillation, trained on
a dataset whose batches carry that ground truth (``train(..., datasets=...)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
from pathlib import Path

from bench.weak_shot import DATASETS, SYNTHETIC, row_method_config, run_training, train_config
from workbench.data.synthetic import WEAK_SHOT_PROTOCOL, ensure_synthetic
from workbench.io import atomic_write_text
from workbench.methods import simformer
from workbench.train import make_datasets

PAPER = simformer.Config()  # the defaults the variants change
STRONG = {"dist_weight": 2.0, "absent_weight": 1.0}
VARIANTS = {  # name: (SimFormer settings over the bench's, teacher is the ground truth)
    "learned_paper": ({}, False),
    "truth_paper": ({}, True),
    "learned_strong": (STRONG, False),
    "truth_strong": (STRONG, True),
}


def truth_teacher() -> types.SimpleNamespace:
    """SimFormer with the ground-truth same-class relation as its distillation teacher (sees novel labels)."""
    variant = types.SimpleNamespace(**vars(simformer))  # the same contract, hooks and name
    variant.training_step = lambda model, batch, config: simformer.training_step(model, batch, config, batch["mask"])
    return variant


def datasets_with_truth(method, config) -> tuple:
    """The run's datasets, with the training batches carrying ``mask`` (read only by the teacher above)."""
    train_ds, val_ds = make_datasets(method, config)
    train_ds.include_gt = True
    return train_ds, val_ds


def run_variant(name: str, data: Path, runs: Path) -> dict:
    settings, truth = VARIANTS[name]
    budget = DATASETS["synthetic"]
    method_config = dataclasses.replace(row_method_config("simformer", "synthetic", "scratch"), **settings)
    config = train_config(budget, "scratch", data, runs / name, WEAK_SHOT_PROTOCOL)
    method = truth_teacher() if truth else simformer
    datasets = datasets_with_truth(method, config) if truth else None
    summary, seconds = run_training(method, method_config, config, datasets)
    return {"variant": name, "teacher": "ground truth" if truth else "SimNet", **settings,
            "base_miou": summary["base_miou"], "novel_miou": summary["novel_miou"], "seconds": seconds}  # fmt: skip


def markdown(rows: list[dict]) -> str:
    budget = DATASETS["synthetic"]
    lines = [
        "# SimFormer's distillation with a perfect teacher (synthetic weak-shot set, scratch)",
        "",
        f"{budget['image_size'][0]}x{budget['image_size'][1]}, {budget['epochs']} epochs, batch 8, resnet18 from "
        "scratch, validation split (the `weak_shot.py` budget). "
        "Teacher: SimNet (as trained) or the ground-truth same-class relation (a ceiling, sees novel labels).",
        "",
        "| variant | teacher | dist_weight | absent_weight | base mIoU | novel mIoU | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['teacher']} | {r.get('dist_weight', PAPER.dist_weight)} "
            f"| {r.get('absent_weight', PAPER.absent_weight)} "
            f"| {r['base_miou']:.3f} | {r['novel_miou']:.3f} | {r['seconds'] or ''} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench_weak_shot"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    data = ensure_synthetic(args.runs / "data" / "synthetic-weakshot", SYNTHETIC)
    runs = args.runs / "teacher_ceiling"
    # the asked-for variants train (unless finished with these settings); other finished ones are read back
    rows = [run_variant(v, data, runs) for v in VARIANTS if v in names or (runs / v / "report.json").is_file()]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "simformer_teacher_ceiling.json", json.dumps(rows, indent=1))
    atomic_write_text(args.out / "simformer_teacher_ceiling.md", markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()

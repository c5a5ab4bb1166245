"""Calibrate the training budget on the tune split: where the dense reference stops improving.

Each *setup* trains the supervised reference on ``train-tune`` with a one-cycle schedule of every
length in ``--budgets`` (doubling), scoring ``tune`` after every epoch (the learning curve, at the
working size) and at the end at full resolution. A one-cycle schedule anneals to its own end, so the
plateau is read across schedule lengths, not along one curve:

    budget E = the shortest schedule that no longer schedule beats by ``--tolerance`` (1 point) or more;
    the longest schedule tried cannot confirm itself, so a setup still climbing there has no E.

Val is never touched. Setups (``--setups``):

- ``today``: the configuration the short-budget tables used (smp's default Unet decoder 256..16, NCHW);
- ``channels_last``: ``today`` with channels-last tensors (the same model and maths, a faster layout);
- ``channels_last_balanced``: ``channels_last`` with median-frequency class weights;
- ``fast``: the lighter decoder (128, 64, 32, 16, 8) with channels-last tensors;
- ``fast_balanced``: ``fast`` with median-frequency class weights (SegNet's CamVid protocol);
- ``fast_scale``: ``fast`` with random scale 0.75-1.5 and crop (the field's usual augmentation).

Two setups given side by side in two processes measure the time to plateau under the same load
(the speed-up of issue 31). Every run is a run directory under ``--runs``; a stopped calibration
resumes its unfinished run from its last checkpoint and skips finished ones. Writes
``bench/results/calibration_<dataset>_<regime>.{json,md,png}`` after every run, e.g.::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/calibrate.py --dataset camvid --setups today &
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/calibrate.py --dataset camvid --setups fast,fast_balanced
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from workbench.data.dataset import median_frequency_weights
from workbench.io import atomic_write_text, file_lock
from workbench.methods import supervised
from workbench.train import checkpoint as ckpt
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets
from workbench.train.loop import train

REGIMES = {  # encoder, its weights, image size per dataset (Lite0 wants sides divisible by 32)
    "pretrained": ("timm-tf_efficientnet_lite0", "imagenet", {"camvid": (128, 160), "msrc21": (96, 128)}),
    "scratch": ("resnet18", None, {"camvid": (128, 160), "msrc21": (96, 128)}),
}
LIGHT_DECODER = (128, 64, 32, 16, 8)
SETUPS = {  # name -> TrainConfig fields, and whether the CE is class-balanced
    "today": ({}, False),
    "channels_last": ({"channels_last": True}, False),
    "channels_last_balanced": ({"channels_last": True}, True),
    "fast": ({"decoder_channels": LIGHT_DECODER, "channels_last": True}, False),
    "fast_balanced": ({"decoder_channels": LIGHT_DECODER, "channels_last": True}, True),
    "fast_scale": (
        {"decoder_channels": LIGHT_DECODER, "channels_last": True, "scale_min": 0.75, "scale_max": 1.5},
        False,
    ),
}


def train_config(args, setup: str, epochs: int) -> TrainConfig:
    encoder, weights, sizes = REGIMES[args.regime]
    fields, _ = SETUPS[setup]
    return TrainConfig(
        data=str(data_folder(args)), out=f"{args.runs}/{args.dataset}_{args.regime}/{setup}_e{epochs}_seed{args.seed}",
        train_split="train-tune", val_split="tune", image_size=sizes[args.dataset], epochs=epochs,
        batch_size=args.batch_size, encoder=encoder, encoder_weights=weights, seed=args.seed, eval_every=1,
        curve_at_working_size=True, **fields,
    )  # fmt: skip


def data_folder(args) -> Path:
    return Path(args.data or f"../shared/datasets/{args.dataset}").resolve()


def run_one(args, setup: str, epochs: int) -> dict:
    """Train (or resume) one schedule; its tune curve, final tune mIoU and training seconds."""
    config = train_config(args, setup, epochs)
    method_config = supervised.Config()
    if SETUPS[setup][1]:
        weights = median_frequency_weights(make_datasets(supervised, config)[0])
        method_config = dataclasses.replace(method_config, class_weights=weights)
    run_dir = Path(config.out)
    resume = (run_dir / ckpt.STATE_FILE).exists() and not (run_dir / "report.json").exists()
    config = dataclasses.replace(config, resume=resume, overwrite=not resume and run_dir.exists())
    t0 = time.perf_counter()
    summary = train(supervised, method_config, config)
    records = ckpt.read_jsonl(run_dir / "metrics.jsonl")
    epochs_done = [r for r in records if "seconds" in r and "epoch" in r]
    curve = {r["epoch"]: r["val_miou"] for r in epochs_done if "val_miou" in r}
    curve[epochs] = summary["miou"]
    return {
        "setup": setup, "epochs": epochs, "seed": args.seed, "tune_miou": summary["miou"],
        "per_class_iou": summary["per_class_iou"], "curve": [curve[e] for e in sorted(curve)],
        "train_seconds": round(sum(r["seconds"] for r in epochs_done), 1),
        "wall_seconds": round(time.perf_counter() - t0, 1), "resumed": resume,
        "class_weights": list(method_config.class_weights),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in SETUPS[setup][0].items()},
    }  # fmt: skip


def plateau(runs: list[dict], tolerance: float) -> dict | None:
    """The shortest schedule no longer one beats by ``tolerance`` (None while the longest still climbs).

    Comparing with every longer schedule, not only the next doubling, keeps a pause in the climb (8 and
    16 epochs alike, 64 five points higher) from passing for a plateau.
    """
    by_length = sorted(runs, key=lambda r: r["epochs"])
    for i, short in enumerate(by_length[:-1]):
        if all(long["tune_miou"] - short["tune_miou"] < tolerance for long in by_length[i + 1 :]):
            return short
    return None


def last_quarter_change(run: dict) -> float:
    """How much the per-epoch tune curve moved over the last quarter of its schedule (max - min)."""
    tail = run["curve"][-max(2, len(run["curve"]) // 4) :]
    return max(tail) - min(tail)


def load(path: Path, args) -> dict:
    encoder, weights, sizes = REGIMES[args.regime]
    budget = {
        "dataset": args.dataset, "regime": args.regime, "encoder": encoder, "encoder_weights": weights,
        "image_size": list(sizes[args.dataset]), "batch_size": args.batch_size, "train_split": "train-tune",
        "val_split": "tune", "tolerance": args.tolerance,
    }  # fmt: skip
    doc = json.loads(path.read_text()) if path.exists() else {"budget": budget, "runs": []}
    if doc["budget"] != budget:
        raise SystemExit(f"{path} was measured with another budget {doc['budget']}; pass --out for a new file")
    return doc


def summarise(doc: dict) -> dict:
    """Per setup: its runs by schedule length, the plateau (budget E) and the time to reach it."""
    out = {}
    for setup in sorted({r["setup"] for r in doc["runs"]}, key=list(SETUPS).index):
        runs = sorted((r for r in doc["runs"] if r["setup"] == setup), key=lambda r: r["epochs"])
        found = plateau(runs, doc["budget"]["tolerance"])
        out[setup] = {
            "budget_E": found["epochs"] if found else None, "plateau_tune_miou": found["tune_miou"] if found else None,
            "time_to_plateau_s": found["train_seconds"] if found else None,
            "runs": [{k: r[k] for k in ("epochs", "tune_miou", "train_seconds")} for r in runs],
            "last_quarter_change": {r["epochs"]: round(last_quarter_change(r), 4) for r in runs},
        }  # fmt: skip
    return out


def markdown(doc: dict, summary: dict) -> str:
    b = doc["budget"]
    lengths = sorted({r["epochs"] for s in summary.values() for r in s["runs"]})
    lines = [
        f"# Budget calibration: {b['dataset']} {b['regime']} (Unet-{b['encoder']}, {b['image_size'][0]}x"
        f"{b['image_size'][1]}, batch {b['batch_size']})",
        "",
        "Supervised reference trained on `train-tune`, scored on `tune` (val is never touched). One one-cycle "
        "schedule per length; tune mIoU at full resolution at the end of each. Budget E = the shortest schedule "
        f"that no longer schedule beats by {b['tolerance'] * 100:.0f} point or more. Training seconds are at one "
        "thread per process, two processes side by side on 2 cores. Curves (per epoch, at the working size) "
        "in the PNG.",
        "",
        "| setup | " + " | ".join(f"{e} ep" for e in lengths) + " | budget E | time to plateau |",
        "|---|" + "---|" * (len(lengths) + 2),
    ]
    for setup, s in summary.items():
        by_length = {r["epochs"]: r for r in s["runs"]}
        cells = [
            f"{by_length[e]['tune_miou']:.3f} ({by_length[e]['train_seconds']:.0f} s)" if e in by_length else "-"
            for e in lengths
        ]
        e = f"{s['budget_E']} epochs ({s['plateau_tune_miou']:.3f})" if s["budget_E"] else "not reached"
        t = f"{s['time_to_plateau_s']:.0f} s" if s["time_to_plateau_s"] else "-"
        lines.append(f"| {setup} | " + " | ".join(cells) + f" | {e} | {t} |")
    lines.append("")
    today = summary.get("today")
    if today and today["budget_E"]:
        lines.append(f"budget E = {today['budget_E']} epochs (the reference's plateau, setup today; the same maths "
                     "in channels-last tensors is the tables' configuration)")  # fmt: skip
        target = today["plateau_tune_miou"] - b["tolerance"]
        reached = {
            name: run for name, s in summary.items() if name != "today"
            if (run := next((r for r in s["runs"] if r["tune_miou"] >= target), None))
        }  # fmt: skip
        if reached:
            best = min(reached, key=lambda name: reached[name]["train_seconds"])
            run = reached[best]
            lines.append(
                f"time-to-plateau speed-up: {today['time_to_plateau_s'] / run['train_seconds']:.2f}x ({best} "
                f"reaches today's plateau, tune mIoU {today['plateau_tune_miou']:.3f} - "
                f"{b['tolerance'] * 100:.0f} point, at {run['epochs']} epochs in {run['train_seconds']:.0f} s "
                f"(tune mIoU {run['tune_miou']:.3f}); today takes {today['time_to_plateau_s']:.0f} s)"
            )
            for name, r in sorted(reached.items(), key=lambda kv: kv[1]["train_seconds"]):
                lines.append(f"- {name}: {r['epochs']} epochs, {r['train_seconds']:.0f} s, "
                             f"{today['time_to_plateau_s'] / r['train_seconds']:.2f}x")  # fmt: skip
        missing = [name for name in summary if name != "today" and name not in reached]
        if missing:
            lines.append(f"- never reach it within the schedules tried: {', '.join(missing)}")
    length = today["budget_E"] if today and today["budget_E"] else max(lengths)
    lines += ["", f"Per-class tune IoU of every setup at {length} epochs:", ""]
    for setup in summary:
        run = next((r for r in doc["runs"] if r["setup"] == setup and r["epochs"] == length), None)
        if run:
            lines.append(
                f"- {setup}: " + ", ".join(f"{c} {v:.2f}" for c, v in run["per_class_iou"].items() if v is not None)
            )
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for run in sorted(doc["runs"], key=lambda r: (r["setup"], r["epochs"])):
        ax.plot(range(1, len(run["curve"]) + 1), run["curve"], label=f"{run['setup']} {run['epochs']} ep", lw=1)
    ax.set(
        xlabel="epoch", ylabel="tune mIoU", title=f"{doc['budget']['dataset']} {doc['budget']['regime']}: tune curves"
    )
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def write(doc: dict, path: Path) -> None:
    summary = summarise(doc)
    doc["summary"] = summary
    atomic_write_text(path, json.dumps(doc, indent=1))
    if summary:
        atomic_write_text(path.with_suffix(".md"), markdown(doc, summary))
        plot(doc, path.with_suffix(".png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("camvid", "msrc21"), default="camvid")
    parser.add_argument("--regime", choices=tuple(REGIMES), default="pretrained")
    parser.add_argument("--data", help="dataset folder (default ../shared/datasets/DATASET)")
    parser.add_argument("--setups", default="fast", help=f"comma-separated, of {list(SETUPS)}")
    parser.add_argument("--budgets", default="8,16,32,64", help="schedule lengths in epochs (doubling)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--runs", default="runs/calibration")
    parser.add_argument("--out", default=None, help="results JSON (default bench/results/calibration_D_R.json)")
    args = parser.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown setup(s) {unknown}; choose from {list(SETUPS)}")
    out = Path(args.out or f"bench/results/calibration_{args.dataset}_{args.regime}.json")
    for setup in setups:
        for epochs in sorted(int(b) for b in args.budgets.split(",")):
            with file_lock(out):
                done = any(
                    r["setup"] == setup and r["epochs"] == epochs and r["seed"] == args.seed
                    for r in load(out, args)["runs"]
                )
            if done:
                continue
            print(f"calibration: {setup} {epochs} epochs", file=sys.stderr)
            result = run_one(args, setup, epochs)
            with file_lock(out):
                doc = load(out, args)
                doc["runs"].append(result)
                write(doc, out)
    with file_lock(out):  # the tables again, also when every run was already measured
        write(load(out, args), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

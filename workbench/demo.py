"""The main job: synthetic data -> weak labels -> train -> evaluate -> report.

Trains the fully supervised model on the synthetic default and, with the same model and
budget, partial cross-entropy on simulated scribbles; prints per-class IoU and mIoU of
both, the annotation cost of the scribbles, and writes both run directories. The target
(mIoU >= 0.5) is checked on the supervised model; the scribble model shows what a cheap
label costs before any weak method is applied (compare `single_stage` and `spml`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from workbench.engine import TrainConfig, make_datasets, train
from workbench.io import atomic_write_text
from workbench.methods import partial_ce, supervised
from workbench.metrics import format_summary

TARGET_MIOU = 0.5


def run_demo(out: Path, epochs: int = 15) -> int:
    """Return 0 when the supervised model reaches ``TARGET_MIOU``, 1 otherwise."""
    base = TrainConfig(epochs=epochs, batch_size=16, overwrite=True)  # a demo re-run replaces its runs
    results = {}
    for name, method, supervision in (("dense", supervised, "dense"), ("scribbles", partial_ce, "scribbles")):
        config = dataclasses.replace(base, out=str(out / name), supervision=supervision)
        cost = make_datasets(method, config)[0].annotation_cost()
        print(f"[demo] training {method.__name__.rsplit('.', 1)[-1]} on {supervision} labels ({epochs} epochs)...")
        t0 = time.perf_counter()
        summary = train(method, method.Config(), config)
        results[name] = {"miou": summary["miou"], "seconds": round(time.perf_counter() - t0, 1), **cost}
        print(format_summary(summary))
    full, weak = results["dense"], results["scribbles"]
    ok = full["miou"] >= TARGET_MIOU
    print(
        f"\n[demo] full supervision: mIoU {full['miou']:.3f} ({full['seconds']} s); "
        f"target mIoU >= {TARGET_MIOU}: {'reached' if ok else 'NOT reached'}"
    )
    print(
        f"[demo] partial CE on scribbles ({100 * weak['labelled_fraction']:.1f}% of pixels labelled): "
        f"mIoU {weak['miou']:.3f} = {weak['miou'] / full['miou']:.2f} of full supervision ({weak['seconds']} s)"
    )
    print(f"[demo] run directories: {out}/dense, {out}/scribbles")
    atomic_write_text(out / "demo.json", json.dumps({**results, "target": TARGET_MIOU, "reached": ok}, indent=1))
    return 0 if ok else 1

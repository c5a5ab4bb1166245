"""Benchmark: where a CPU training step's time goes, per method, before and after the speed-ups.

The bench's step: Unet on EfficientNet-Lite0 (ImageNet weights), CamVid 128x160, batch 8, AdamW.
For every method row (its own labels) and both layouts (``today``: NCHW as the short-budget tables
ran; ``channels_last``: the same model and maths in channels-last tensors) at 1 and 2 threads it
times full steps (``method.training_step`` forward with its loss terms, backward, optimiser) on
batches preloaded from the engine's own loader, and splits the forward into encoder, decoder and
the method's loss terms. Also measured: this CPU's fp32 matmul peak (1024^2 sgemm), forward FLOPs
of the model (torch's FlopCounterMode, forward only: its backward count for depthwise convolutions
is wrong), the data pipeline (first epoch decodes and resizes, later epochs read the uint8 cache),
evaluation at full resolution vs the working size, and, from the calibration JSON, the time to the
reference's plateau. GFLOP/s counts forward FLOPs x 3 (forward + backward ~ 2x forward) per step.

Run it on a quiet machine (no other CPU-heavy job)::

    .venv/bin/python bench/step_profile.py --data ../shared/datasets/camvid

Writes ``bench/results/step_profile_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from workbench.io import atomic_write_text
from workbench.methods import METHODS
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets, make_loader, to_device
from workbench.train.evaluation import evaluate
from workbench.train.loop import build_model

ROWS = {  # row -> (method, supervision, method Config overrides)
    "supervised/dense": ("supervised", "dense", {}),
    "partial_ce/points": ("partial_ce", "points", {}),
    "partial_ce+crf/points": ("partial_ce", "points", {"crf_weight": 1.0}),
    "spml/points": ("spml", "points", {}),
    "single_stage/points": ("single_stage", "points", {}),
    "cam/tags": ("cam", "tags", {}),
}
LAYOUTS = {"today": False, "channels_last": True}


def matmul_peak_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def forward_gflop(model: torch.nn.Module, images: torch.Tensor) -> dict:
    """Forward GFLOP per batch: the whole model and, for an smp model, its encoder."""
    model.eval()
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(images)
        out = {"model": counter.get_total_flops() / 1e9}
        encoder = getattr(model, "encoder", None) or getattr(getattr(model, "net", None), "encoder", None)
        if encoder is not None:
            counter = FlopCounterMode(display=False)
            with counter:
                encoder(images)
            out["encoder"] = counter.get_total_flops() / 1e9
    model.train()
    return out


def config_for(args, supervision: str, channels_last: bool) -> TrainConfig:
    return TrainConfig(
        data=args.data, supervision=supervision, train_split="train-tune", val_split="tune",
        image_size=(128, 160), batch_size=8, encoder="timm-tf_efficientnet_lite0", encoder_weights="imagenet",
        channels_last=channels_last, limit_train=8 * args.batches,
    )  # fmt: skip


def profile_row(args, row: str, layout: str, threads: int) -> dict:
    """Seconds per full step (median over ``--steps``) and the forward's parts."""
    torch.set_num_threads(threads)
    name, supervision, overrides = ROWS[row]
    method = METHODS[name]
    config = config_for(args, supervision, LAYOUTS[layout])
    method_config = method.Config(**overrides)
    train_ds, _ = make_datasets(method, config)
    torch.manual_seed(0)
    model = build_model(method, train_ds.info.num_classes, method_config, config)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    batches = [
        to_device(b, torch.device("cpu"), config.channels_last)
        for b in make_loader(train_ds, 8, False, config, torch.device("cpu"))
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps, forwards = [], []
    for i in range(args.warmup + args.steps):
        batch = {**batches[i % len(batches)], "progress": 0.5}
        t0 = time.perf_counter()
        loss = method.training_step(model, batch, method_config)["loss"]
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= args.warmup:
            steps.append(time.perf_counter() - t0)
            forwards.append(t1 - t0)
    parts = model_parts(model, batches[0]["image"])
    step = statistics.median(steps)
    return {
        "row": row, "layout": layout, "threads": threads, "step_s": step, "images_per_s": 8 / step,
        "forward_s": statistics.median(forwards), "backward_and_optimiser_s": step - statistics.median(forwards),
        **parts,
    }  # fmt: skip


def model_parts(model: torch.nn.Module, images: torch.Tensor, repeats: int = 3) -> dict:
    """Forward seconds of the encoder and of the decoder + head (smp models; no grad, train mode)."""
    net = model if hasattr(model, "encoder") else getattr(model, "net", None)
    if net is None or not hasattr(net, "decoder"):
        return {}
    with torch.no_grad():
        features = net.encoder(images)
        encoder_s = min(_timed(lambda: net.encoder(images)) for _ in range(repeats))

        def decode():
            out = net.decoder(features) if _decoder_takes_list(net) else net.decoder(*features)
            return net.segmentation_head(out)

        decoder_s = min(_timed(decode) for _ in range(repeats))
    return {"encoder_forward_s": encoder_s, "decoder_forward_s": decoder_s}


def _decoder_takes_list(net) -> bool:
    import inspect

    params = list(inspect.signature(net.decoder.forward).parameters.values())
    return not any(p.kind is p.VAR_POSITIONAL for p in params)


def data_and_eval(args, threads: int) -> dict:
    """The data pipeline's first (decode + resize) and second (uint8 cache) pass, and evaluation."""
    torch.set_num_threads(threads)
    method = METHODS["supervised"]
    config = dataclasses.replace(config_for(args, "dense", True), limit_train=None)
    train_ds, val_ds = make_datasets(method, config)
    loader = make_loader(train_ds, 8, True, config, torch.device("cpu"))
    first = _timed(lambda: [None for _ in loader])
    second = _timed(lambda: [None for _ in loader])
    model = build_model(method, train_ds.info.num_classes, method.Config(), config).to(
        memory_format=torch.channels_last
    )
    evaluate(method, model, val_ds, torch.device("cpu"), config=config, full_resolution=False)  # warm the caches
    working = _timed(lambda: evaluate(method, model, val_ds, torch.device("cpu"), config=config, full_resolution=False))
    full = _timed(lambda: evaluate(method, model, val_ds, torch.device("cpu"), config=config, full_resolution=True))
    return {
        "threads": threads, "train_images": len(train_ds), "data_first_epoch_s": first, "data_cached_epoch_s": second,
        "eval_images": len(val_ds), "eval_working_size_s": working, "eval_full_resolution_s": full,
    }  # fmt: skip


def plateau_line(calibration: Path) -> str | None:
    """The calibration's time-to-plateau line (bench/calibrate.py), if it has one."""
    if not calibration.exists():
        return None
    lines = [ln for ln in calibration.read_text().splitlines() if ln.startswith("time-to-plateau speed-up:")]
    return lines[0] if lines else None


def markdown(doc: dict) -> str:
    peak = doc["matmul_peak_gflops"]
    flops = doc["forward_gflop"]
    lines = [
        "# CPU training step profile (Unet on Lite0, CamVid 128x160, batch 8, AdamW)",
        "",
        f"Machine: {doc['cpu']}. fp32 matmul peak (1024^2 sgemm): "
        + ", ".join(f"{v:.0f} GFLOP/s at {t} thread(s)" for t, v in peak.items())
        + f". Forward per batch of 8: {flops['model']:.1f} GFLOP"
        + (f", of which the encoder {flops['encoder']:.1f}" if "encoder" in flops else "")
        + " (FlopCounterMode). GFLOP/s = 3 x forward GFLOP per step / step time; share = of the matmul peak "
        "at the same threads; the x3 rule is an estimate (a backward of depthwise convolutions and upsampling costs "
        "less than twice its forward), so a share above 100% says the rule overcounts, not that the CPU beats "
        "its peak. `today` = NCHW (the short-budget tables), `channels_last` = the same model and "
        "maths in channels-last tensors (what the converged tables use).",
        "",
        "| row | threads | layout | step (s) | img/s | forward (s) | backward + AdamW (s) | encoder fwd (s) "
        "| decoder fwd (s) | GFLOP/s | share of peak | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["row"], r["threads"], r["layout"]): r for r in doc["steps"]}
    for r in doc["steps"]:
        gflops = 3 * flops["model"] / r["step_s"]
        base = by_key.get((r["row"], r["threads"], "today"))
        speedup = f"{base['step_s'] / r['step_s']:.2f}x" if base else "-"
        enc = f"{r['encoder_forward_s']:.3f}" if "encoder_forward_s" in r else "-"
        dec = f"{r['decoder_forward_s']:.3f}" if "decoder_forward_s" in r else "-"
        lines.append(
            f"| {r['row']} | {r['threads']} | {r['layout']} | {r['step_s']:.3f} | {r['images_per_s']:.1f} "
            f"| {r['forward_s']:.3f} | {r['backward_and_optimiser_s']:.3f} | {enc} | {dec} | {gflops:.0f} "
            f"| {100 * gflops / peak[str(r['threads'])]:.0f}% | {speedup} |"
        )
    lines += ["", "Data pipeline and evaluation (supervised, channels-last):", ""]
    lines += ["| threads | train images | first epoch data (s) | cached epoch data (s) | eval images "
              "| eval at working size (s) | eval at full resolution (s) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for d in doc["data_and_eval"]:
        lines.append(
            f"| {d['threads']} | {d['train_images']} | {d['data_first_epoch_s']:.2f} | {d['data_cached_epoch_s']:.2f} "
            f"| {d['eval_images']} | {d['eval_working_size_s']:.2f} | {d['eval_full_resolution_s']:.2f} |"
        )
    lines.append("")
    if doc.get("plateau"):
        lines += [doc["plateau"], "", "(from bench/results/calibration_camvid_pretrained.md, measured side by side.)"]
    else:
        lines.append("time-to-plateau: no calibration result yet (run bench/calibrate.py)")
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/datasets/camvid")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {list(ROWS)}")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="distinct preloaded batches")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; choose from {list(ROWS)}")
    threads = [int(t) for t in args.threads.split(",")]
    doc: dict = {"cpu": cpu_name(), "matmul_peak_gflops": {str(t): matmul_peak_gflops(t) for t in threads}}
    config = config_for(args, "dense", False)
    train_ds, _ = make_datasets(METHODS["supervised"], config)
    model = build_model(METHODS["supervised"], train_ds.info.num_classes, METHODS["supervised"].Config(), config)
    doc["forward_gflop"] = forward_gflop(model, torch.stack([train_ds[i]["image"] for i in range(8)]))
    doc["steps"] = []
    for t in threads:
        for row in rows:
            for layout in LAYOUTS:
                result = profile_row(args, row, layout, t)
                print(f"{row} {layout} {t} thread(s): {result['step_s']:.3f} s/step", file=sys.stderr, flush=True)
                doc["steps"].append(result)
    doc["data_and_eval"] = [data_and_eval(args, t) for t in threads]
    doc["plateau"] = plateau_line(Path(args.out) / "calibration_camvid_pretrained.md")
    out = Path(args.out) / "step_profile_cpu"
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

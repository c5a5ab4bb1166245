"""Scaling benchmark: training images/s with 1, 2, ... torchrun processes on one machine.

Each run is the real CLI under ``torch.distributed.run --standalone`` (gloo on CPU, nccl on
GPU) with the same global batch; threads per process = cores / processes. Images/s is read
from the run's metrics.jsonl (last epoch, evaluation excluded)::

    .venv/bin/python bench/ddp_scaling.py --procs 1,2 --data ../shared/datasets/camvid --limit 96
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from workbench.io import atomic_write_text
from workbench.train.checkpoint import read_jsonl


def run(procs: int, args, out: Path) -> float:
    threads = max(1, (os.cpu_count() or 2) // procs)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
           "-m", "workbench", "train", "--method", "supervised", "--out", str(out), "--epochs", str(args.epochs),
           f"--batch_size={args.batch_size}", f"--image_size={args.image_size}", f"--limit_train={args.limit}",
           "--limit_val=8", "--eval_every=0"]  # fmt: skip
    if args.data:
        cmd += ["--data", args.data]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return [r for r in read_jsonl(out / "metrics.jsonl") if "images_per_s" in r][-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--data", default=None, help="dataset folder (default: synthetic)")
    parser.add_argument("--image-size", default="120,160")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=96, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (int(p) for p in args.procs.split(",")):
            ips = run(procs, args, Path(tmp) / f"p{procs}")
            rows.append({"processes": procs, "images_per_s": ips})
            print(f"{procs} process(es): {ips:.1f} img/s", flush=True)
    for r in rows:
        r["speedup"] = r["images_per_s"] / rows[0]["images_per_s"]
    doc = {"data": args.data or "synthetic", "image_size": args.image_size, "global_batch": args.batch_size,
           "cpu_count": os.cpu_count(), "rows": rows}  # fmt: skip
    lines = [
        f"DDP scaling on {os.cpu_count()} CPU cores ({doc['data']}, {args.image_size}, global batch {args.batch_size})",
        "",
        "| processes | threads each | img/s | speedup |",
        "|---|---|---|---|",
    ] + [
        f"| {r['processes']} | {max(1, (os.cpu_count() or 2) // r['processes'])} | {r['images_per_s']:.1f} | {r['speedup']:.2f} |"
        for r in rows
    ]
    atomic_write_text(Path(args.out) / "ddp_scaling_cpu.json", json.dumps(doc, indent=1))
    atomic_write_text(Path(args.out) / "ddp_scaling_cpu.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""torchrun + DDP: two CPU processes match one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workbench.data.synthetic import SyntheticConfig, generate
from workbench.train import dist
from workbench.train.checkpoint import MODEL_FILE, read_jsonl
from workbench.train.config import TrainConfig

# BatchNorm statistics are per process (4 images instead of 8; SyncBatchNorm is GPU-only), so
from workbench.train.data import make_loader

# BatchNorm statistics are per process (4 images instead of 8; SyncBatchNorm is GPU-only), so
# the runs are not bit-identical. Measured here after 4 steps: |delta mIoU| 0.011, relative
# distance of the learnable parameters 0.094 (running BN statistics excluded).
MIOU_TOLERANCE = 0.05
WEIGHT_TOLERANCE = 0.15


def _train(data: Path, out: Path, nproc: int) -> None:
    args = ["-m", "workbench", "train", "--method", "supervised", "--data", str(data), "--out", str(out),
            "--epochs", "2", "--batch_size=8", "--hflip=false", "--log_every=1"]  # fmt: skip
    if nproc > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] + args
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    data = generate(tmp_path / "data", SyntheticConfig(height=32, width=32, train=16, val=8))
    _train(data, tmp_path / "one", 1)
    _train(data, tmp_path / "two", 2)
    one, two = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert two[-1]["world_size"] == 2 and two[-1]["ranks_in_sync"] is True
    assert [r["step"] for r in one if "images_per_s" in r] == [r["step"] for r in two if "images_per_s" in r]
    assert abs(one[-1]["val_miou"] - two[-1]["val_miou"]) <= MIOU_TOLERANCE
    w1, w2 = load_file(str(tmp_path / "one" / MODEL_FILE)), load_file(str(tmp_path / "two" / MODEL_FILE))
    learnable = [k for k in w1 if w1[k].is_floating_point() and "running_" not in k]
    num = sum(float((w1[k].float() - w2[k].float()).norm() ** 2) for k in learnable)
    den = sum(float(w1[k].float().norm() ** 2) for k in learnable)
    assert (num / den) ** 0.5 <= WEIGHT_TOLERANCE
    # rank 0 alone wrote the log: one "done" record, and the reports agree with the logs
    assert sum(1 for r in two if r.get("event") == "done") == 1
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["miou"] == pytest.approx(two[-1]["val_miou"])
    assert (
        torch.tensor(report["confusion_matrix"]).sum()
        == torch.tensor(json.loads((tmp_path / "one" / "report.json").read_text())["confusion_matrix"]).sum()
    )


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_share_out_the_single_process_global_batches(monkeypatch, world):
    dataset = list(range(37))
    config = TrainConfig(seed=3)
    cpu = torch.device("cpu")
    single = [b.tolist() for b in make_loader(dataset, 8, True, config, cpu, epoch=5)]
    per_rank = []
    for r in range(world):
        monkeypatch.setattr(dist, "world_size", lambda: world)
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        per_rank.append([b.tolist() for b in make_loader(dataset, 8, True, config, cpu, epoch=5)])
    for k, batch in enumerate(single):
        assert sorted(sum((rank_batches[k] for rank_batches in per_rank), [])) == sorted(batch)


def test_evaluation_shards_cover_the_split_once(monkeypatch):
    dataset, seen = list(range(10)), []
    for r in range(3):
        monkeypatch.setattr(dist, "world_size", lambda: 3)
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        seen += [i for b in make_loader(dataset, 4, False, TrainConfig(), torch.device("cpu")) for i in b.tolist()]
    assert sorted(seen) == dataset


def test_batch_must_divide_among_processes(monkeypatch):
    monkeypatch.setattr(dist, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="divisible"):
        make_loader(list(range(10)), 8, True, TrainConfig(), torch.device("cpu"))

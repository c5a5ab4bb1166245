"""Every method trains and predicts through the loop on ``WORKBENCH_TEST_DEVICE`` (default cpu) with the
GPU path's settings: autocast (bf16 on CUDA), channels_last, and ``torch.compile`` when
``WORKBENCH_TEST_COMPILE=1``. ``bench/gpu_run.sh`` runs this file on a lent GPU; CI runs it on CPU."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from workbench.labels.splits import ClassSplit
from workbench.methods import METHODS, is_weak_shot
from workbench.train.config import TrainConfig
from workbench.train.loop import train

DEVICE = os.environ.get("WORKBENCH_TEST_DEVICE", "cpu")
COMPILE = os.environ.get("WORKBENCH_TEST_COMPILE") == "1"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_method_trains_and_scores_with_the_gpu_settings(name, synthetic_root, tmp_path):
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("WORKBENCH_TEST_DEVICE asks for CUDA, which this machine lacks")
    method = METHODS[name]
    config = TrainConfig(
        data=str(synthetic_root), out=str(tmp_path / "run"), epochs=1, batch_size=4, limit_train=4, limit_val=2,
        device=DEVICE, amp=True, channels_last=True, compile=COMPILE,
        novel="ring,cross" if is_weak_shot(method) else None,
    )  # fmt: skip
    summary = train(method, method.Config(), config)
    assert 0.0 <= summary["miou"] <= 1.0 and not summary["stopped"]
    if is_weak_shot(method):
        assert ClassSplit.from_names(tuple(summary["per_class_iou"]), "ring,cross").novel
    again = train(method, method.Config(), replace(config, epochs=2, resume=True))  # the resume path on the device
    assert again["epoch"] == 2

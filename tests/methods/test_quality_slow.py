"""Quality: on the synthetic default, each sparse-label method beats partial CE with the same labels.

A method whose key term is broken can still lower its loss and pass every shape test; it cannot
beat its own baseline. Every row trains the same short budget (BUDGET: 128 training images of
the default 64x64 synthetic set, 4 epochs, batch 16, resnet18 from scratch, seed 0; the
simulated labels are the same for every row) and is scored on the 64 validation images. Margins
are in mIoU points and were set below the gaps measured with this budget (bench/README.md,
"Quality tests"), so that a working method passes on any machine and a broken one does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.folder import list_split, load_dataset_info, read_mask
from workbench.data.synthetic import ensure_synthetic
from workbench.methods import cam, partial_ce, single_stage, spml
from workbench.train.config import TrainConfig
from workbench.train.loop import train

pytestmark = pytest.mark.slow

BUDGET = dict(limit_train=128, epochs=4, batch_size=16, log_every=1000, seed=0, sim_seed=0)
# mIoU points over partial CE (0.363 with this budget): single_stage measured +0.040, spml +0.093
MARGINS = {"single_stage": 0.02, "spml": 0.05}


@pytest.fixture(scope="module")
def synthetic_default(tmp_path_factory):
    return ensure_synthetic(tmp_path_factory.mktemp("quality") / "synthetic")


def run(method, config, data, tmp_path, supervision: str, **changes) -> dict:
    out = tmp_path / f"{method.__name__.rsplit('.', 1)[-1]}_{supervision}"
    budget = {**BUDGET, **changes}
    summary = train(method, config, TrainConfig(data=str(data), out=str(out), supervision=supervision, **budget))
    print(f"\n{out.name}: mIoU {summary['miou']:.3f} {summary.get('train_diagnostics', '')}")
    return summary


@pytest.fixture(scope="module")
def partial_ce_points(synthetic_default, tmp_path_factory) -> float:
    return run(partial_ce, partial_ce.Config(), synthetic_default, tmp_path_factory.mktemp("pce"), "points")["miou"]


def test_single_stage_beats_partial_ce_on_points(synthetic_default, tmp_path, partial_ce_points):
    summary = run(single_stage, single_stage.Config(), synthetic_default, tmp_path, "points")
    assert summary["miou"] >= partial_ce_points + MARGINS["single_stage"], (summary["miou"], partial_ce_points)
    assert summary["train_diagnostics"]["pseudo_precision"] > 0.8  # its pseudo-masks are mostly right


def test_spml_beats_partial_ce_on_points(synthetic_default, tmp_path, partial_ce_points):
    summary = run(spml, spml.Config(), synthetic_default, tmp_path, "points")
    assert summary["miou"] >= partial_ce_points + MARGINS["spml"], (summary["miou"], partial_ce_points)


def chance_miou(data) -> float:
    """Expected mIoU of a uniformly random prediction on the val masks: class c with pixel share p
    scores p / (1 + p (C - 1)); the field's "chance" line (below 1/C whenever classes are unequal)."""
    info = load_dataset_info(data)
    masks = [read_mask(info.mask_path("val", n), info) for n in list_split(info, "val")]
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=256)[: info.num_classes]
    share = counts / counts.sum()
    present = share > 0
    return float(np.mean(share[present] / (1 + share[present] * (info.num_classes - 1))))


def test_cam_beats_chance_on_tags(synthetic_default, tmp_path):
    """Tags alone need longer: 10 epochs (measured: segmenter 0.139 and 0.085 in two runs,
    CAM pseudo-masks on train 0.157; chance on the val masks is printed by the test)."""
    summary = run(cam, cam.Config(), synthetic_default, tmp_path, "tags", epochs=10)
    chance = chance_miou(synthetic_default)
    print(f"chance mIoU {chance:.3f}")
    assert summary["miou"] > chance, (summary["miou"], chance)
    assert summary["train_diagnostics"]["cam_argmax_miou"] > chance

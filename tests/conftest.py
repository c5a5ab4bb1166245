"""Shared fixtures: a tiny synthetic dataset, a quick training config, real datasets when present.

Bad-input tests sit beside the module they guard (shared helpers in tests/bad_inputs.py):
- tests/data/test_folder_bad_inputs.py: images, masks, dataset.json, FIFOs, non-UTF-8 names, image bombs
- tests/labels/test_splits_bad_inputs.py: unknown weak-shot protocols and class names
- tests/labels/test_weak_labels_bad_inputs.py: weak-label geometry, classes and JSON
- tests/train/test_config_bad_inputs.py: TrainConfig and method Config values
- tests/train/test_runs_bad_inputs.py: checkpoints, config.json, run locks, --overwrite, --resume
- tests/train/test_loop_bad_inputs.py: non-finite losses, offline weights, unmatched weak labels
- tests/annotations/test_store_bad_inputs.py: what the dashboard may send the annotation store
- tests/test_io_bad_inputs.py: atomic writes and stale temp files
- tests/dashboard/test_security.py: bind address, UI paths, uploads
- tests/test_cli_bad_inputs.py: one-line CLI errors, exit status 2, --debug
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from workbench.data.synthetic import SyntheticConfig, generate
from workbench.methods import partial_ce
from workbench.train.checkpoint import MODEL_FILE
from workbench.train.config import TrainConfig
from workbench.train.loop import train

REPO = Path(__file__).resolve().parents[1]
# WEAKSEG_DATASETS points a git worktree (whose parent has no shared/) at the datasets
SHARED_DATASETS = Path(os.environ.get("WEAKSEG_DATASETS", REPO.parent / "shared" / "datasets"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """12 train / 4 val synthetic scenes of 32x32: enough to run every code path in seconds."""
    return generate(
        tmp_path_factory.mktemp("data") / "synthetic", SyntheticConfig(height=32, width=32, train=12, val=4)
    )


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory, request) -> Iterator[Path]:
    """A folder for a test module's trained runs, deleted when the module ends: a run's checkpoints
    weigh 50-450 MB, and a CI disk once filled up keeping every module's runs to the session's end."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dataset(synthetic_root, tmp_path) -> Path:
    """A private copy of the tiny synthetic dataset to break."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


@pytest.fixture(scope="module")
def trained_run(synthetic_root, module_dir) -> Path:
    """A partial_ce run of one epoch on 4 images, trained once per test module."""
    out = module_dir / "run"
    config = TrainConfig(data=str(synthetic_root), out=str(out), epochs=1, batch_size=4, limit_train=4, limit_val=2)
    train(partial_ce, partial_ce.Config(), config)
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """The run's config and weights (the optimizer state is large and no test using it needs the real one)."""
    run = tmp_path / "run"
    (run / MODEL_FILE).parent.mkdir(parents=True)
    shutil.copy(trained_run / "config.json", run / "config.json")
    shutil.copy(trained_run / MODEL_FILE, run / MODEL_FILE)
    return run


@pytest.fixture
def quick_config(synthetic_root, tmp_path) -> TrainConfig:
    """One epoch, batch 4, on the tiny synthetic dataset, writing into a fresh run directory."""
    return TrainConfig(data=str(synthetic_root), out=str(tmp_path / "run"), epochs=1, batch_size=4, log_every=1)


def real_dataset(name: str) -> Path:
    """Path of ../shared/datasets/NAME, or skip the test when the folder is absent."""
    path = SHARED_DATASETS / name
    if not (path / "dataset.json").is_file():
        pytest.skip(f"real dataset {name} not found at {path}")
    return path


@pytest.fixture(scope="session")
def weakshot_root(tmp_path_factory) -> Path:
    """16 train / 4 val synthetic scenes of 32x32 in weak-shot mode (protocol "weakshot": most images
    hold two or three novel classes): the default data of weak-shot tests."""
    return generate(
        tmp_path_factory.mktemp("data") / "synthetic-weakshot",
        SyntheticConfig(height=32, width=32, train=16, val=4, weak_shot=True),
    )


# Folders the workbench never made, for the tests that check that no writer replaces them.
def user_folder(root: Path) -> Path:
    (root / "notes").mkdir(parents=True)
    (root / "thesis.tex").write_text("three years of work")
    (root / "notes" / "ideas.md").write_text("# ideas")
    return root


def run_like_folder(root: Path) -> Path:
    (root / "checkpoint").mkdir(parents=True)
    (root / "checkpoint" / "model.safetensors").write_bytes(b"weights")
    (root / "config.json").write_text('{"method": "partial_ce"}')
    (root / "report.md").write_text("# mIoU 0.61")
    return root

"""Run folders: ``--overwrite`` deletes only a run the workbench created, never a user's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.ownership import MARKER
from workbench.train import checkpoint as ckpt
from workbench.train.checkpoint import CheckpointError

ENGINE_CONFIG = {"method": "partial_ce", "method_config": {}, "train_config": {}, "dataset": {"classes": ["a"]}}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def old_run(folder: Path, config: dict = ENGINE_CONFIG) -> Path:
    """The files a finished run leaves (tiny stand-ins: only names and ownership matter here)."""
    (folder / "checkpoint").mkdir(parents=True)
    (folder / ckpt.MODEL_FILE).write_bytes(b"weights")
    (folder / ckpt.STATE_FILE).write_bytes(b"state")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    (folder / "report.md").write_text("# report")
    return folder


def user_config(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"lr": 0.1, "my": "experiment notes"}')
    (folder / "data.csv").write_text("1,2,3")
    return folder


def foreign_checkpoint(folder: Path) -> Path:
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "epoch_12.ckpt").write_bytes(b"another tool's weights")
    (folder / "report.md").write_text("# a paper's numbers")
    return folder


@pytest.mark.parametrize("make", [user_config, foreign_checkpoint], ids=["user-config.json", "foreign-checkpoint"])
@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "new-run"])
def test_run_like_files_the_workbench_did_not_write_are_refused_and_kept(tmp_path, make, overwrite):
    folder = make(tmp_path / "out")
    before = snapshot(folder)
    with pytest.raises(CheckpointError, match="not a run the workbench created.*delete those files yourself") as err:
        ckpt.claim_run_dir(folder, overwrite=overwrite)
    assert str(folder) in str(err.value) and ("config.json" in str(err.value) or "report.md" in str(err.value))
    assert snapshot(folder) == before


def test_overwrite_of_a_marked_run_deletes_its_files_and_nothing_else(tmp_path):
    folder = old_run(tmp_path / "run", config={"user": "edited by hand"})  # the marker decides, not config.json
    ckpt.mark_run_dir(folder)
    (folder / "versions").mkdir()
    (folder / "versions" / "v1.pt").write_bytes(b"a dashboard version")
    (folder / "notes.txt").write_text("mine")
    (folder / "events.out.tfevents.1.host").write_bytes(b"curves")
    (folder / "checkpoint" / ".model.safetensors.x1.tmp").write_bytes(b"a killed write")
    with pytest.raises(CheckpointError, match="holds another run.*pass --overwrite"):
        ckpt.claim_run_dir(folder)
    ckpt.claim_run_dir(folder, overwrite=True)
    assert ckpt.run_files(folder) == []
    assert snapshot(folder).keys() == {MARKER, "notes.txt", "versions/v1.pt"}


def test_overwrite_of_a_run_from_before_the_marker_is_recognised_by_its_config(tmp_path):
    folder = old_run(tmp_path / "run")
    assert ckpt.is_workbench_run(folder) and not (folder / MARKER).exists()
    ckpt.claim_run_dir(folder, overwrite=True)
    assert ckpt.run_files(folder) == []


def test_overwrite_refuses_a_workbench_run_whose_checkpoint_folder_holds_foreign_files(tmp_path):
    folder = old_run(tmp_path / "run")
    ckpt.mark_run_dir(folder)
    (folder / "checkpoint" / "best_by_hand.safetensors").write_bytes(b"kept aside")
    before = snapshot(folder)
    with pytest.raises(CheckpointError, match=r"checkpoint/best_by_hand\.safetensors.*move it out"):
        ckpt.claim_run_dir(folder, overwrite=True)
    assert snapshot(folder) == before


def test_a_marker_of_another_kind_or_a_linked_marker_proves_nothing(tmp_path):
    folder = user_config(tmp_path / "out")
    (folder / MARKER).write_text(json.dumps({"version": 1, "kind": "synthetic-dataset", "files": []}))
    assert not ckpt.is_workbench_run(folder)
    elsewhere = tmp_path / "marked"
    elsewhere.mkdir()
    ckpt.mark_run_dir(elsewhere)
    (folder / MARKER).unlink()
    (folder / MARKER).symlink_to(elsewhere / MARKER)
    assert not ckpt.is_workbench_run(folder)

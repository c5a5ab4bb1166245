"""Bad inputs of workbench.train.runs and workbench.train.checkpoint: broken checkpoints, edited
config.json files, locked or foreign run folders, --overwrite and --resume refused where they would lose work."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bad_inputs import RNG, _tiny
from workbench.cli import main
from workbench.data.folder import list_split, load_dataset_info
from workbench.methods import METHODS, partial_ce
from workbench.train import checkpoint as ckpt
from workbench.train.checkpoint import MODEL_FILE, STATE_FILE, CheckpointError
from workbench.train.config import ConfigError, TrainConfig
from workbench.train.loop import train
from workbench.train.runs import load_run


def _edit_run_config(run: Path, edit) -> None:
    cfg = json.loads((run / "config.json").read_text())
    edit(cfg)
    (run / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_an_unreadable_checkpoint_is_named(run_copy, damage):
    weights = run_copy / MODEL_FILE
    data = weights.read_bytes()
    weights.write_bytes({"garbage": os.urandom(4096), "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable checkpoint"):
        load_run(run_copy, device="cpu")


def test_a_checkpoint_of_another_class_count_is_explained(run_copy):
    _edit_run_config(run_copy, lambda cfg: cfg["dataset"].update(classes=["a", "b", "c"], colors=[[0, 0, 0]] * 3))
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch in .*: checkpoint \(8,.*\) vs model \(3,.*\); it was trained with another architecture, encoder or class count",
    ):
        load_run(run_copy, device="cpu")


def test_a_checkpoint_of_another_architecture_is_explained(run_copy):
    _edit_run_config(run_copy, lambda cfg: cfg["train_config"].update(arch="FPN"))
    with pytest.raises(CheckpointError, match="does not fit this model.*build the model from its config.json"):
        load_run(run_copy, device="cpu")


def test_a_checkpoint_without_its_config_is_explained(run_copy):
    (run_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing; a checkpoint needs the config\.json"):
        load_run(run_copy, device="cpu")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("content", ["corrupt", "pickled code"])
def test_a_bad_train_state_is_refused_without_running_code(run_copy, synthetic_root, tmp_path, content):
    marker = tmp_path / "code-ran"
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    state = run_copy / STATE_FILE
    if content == "corrupt":
        state.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        with open(state, "wb") as f:
            pickle.dump({"epoch": 1, "evil": _Payload(marker)}, f, protocol=2)
    config = TrainConfig(data=str(synthetic_root), out=str(run_copy), epochs=2, batch_size=4, limit_train=4)
    with pytest.raises(
        CheckpointError, match=r"train_state\.pt: unreadable training state \(.*\); it is refused, not unpickled"
    ):
        train(partial_ce, partial_ce.Config(), dataclasses.replace(config, resume=True))
    assert not marker.exists()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_process_on_a_locked_run_directory_is_refused_naming_the_holder(synthetic_root, tmp_path):
    out = tmp_path / "run"
    with ckpt.RunLock(out):  # another training process holds the folder (flock: per open file, so this conflicts)
        with pytest.raises(ckpt.RunBusyError, match=rf"pid {os.getpid()}.*choose another --out"):
            train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out))
        assert ckpt.run_files(out) == [], "the refused run wrote into the locked folder"
    train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out))  # released: the folder can be used


def test_the_lock_of_a_dead_process_is_taken_over(synthetic_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ckpt.LOCK_FILE).write_text("999999999\n")  # a killed run's lock file: the kernel dropped its flock
    train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out))
    assert (out / "report.json").is_file()


def test_a_new_run_refuses_a_folder_holding_another_run_and_touches_nothing(trained_run, synthetic_root, tmp_path):
    out = Path(shutil.copytree(trained_run, tmp_path / "old"))
    before = _snapshot(out)
    with pytest.raises(CheckpointError, match="holds another run.*--overwrite"):
        train(METHODS["supervised"], METHODS["supervised"].Config(), _tiny(synthetic_root, out))
    assert _snapshot(out) == before
    assert main(["train", "--method", "supervised", "--data", str(synthetic_root), "--out", str(out)]) == 2
    assert _snapshot(out) == before


def test_overwrite_replaces_the_old_run_whole(trained_run, synthetic_root, tmp_path):
    out = Path(shutil.copytree(trained_run, tmp_path / "old"))
    (out / "metrics.jsonl").write_text('{"step": 999, "loss": 1.0}\n')
    config = _tiny(synthetic_root, out, overwrite=True)
    train(METHODS["supervised"], METHODS["supervised"].Config(), config)
    assert json.loads((out / "config.json").read_text())["method"] == "supervised"
    assert all(r["step"] != 999 for r in ckpt.read_jsonl(out / "metrics.jsonl")), "the old log survived"
    with pytest.raises(ConfigError, match="not both"):
        dataclasses.replace(config, resume=True)


def test_every_new_run_is_marked_and_overwrite_keeps_it_marked(trained_run, synthetic_root, tmp_path):
    assert ckpt.read_marker(trained_run, ckpt.RUN_KIND) is not None, "the engine made a run without its marker"
    out = Path(shutil.copytree(trained_run, tmp_path / "old"))
    train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out, overwrite=True, epochs=1, limit_train=2))
    assert ckpt.read_marker(out, ckpt.RUN_KIND) is not None and (out / "report.json").is_file()


@pytest.mark.parametrize(
    "files",
    [
        {"config.json": '{"lr": 0.1}', "train.py": "print(1)"},
        {"checkpoint/epoch_12.ckpt": "another tool's weights", "report.md": "# a paper's numbers"},
    ],
    ids=["user-config.json", "foreign-checkpoint"],
)
def test_overwrite_refuses_a_folder_the_workbench_never_made_a_run_of(synthetic_root, tmp_path, capsys, files):
    out = tmp_path / "mine"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    with pytest.raises(CheckpointError, match="not a run the workbench created.*delete those files yourself"):
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out, overwrite=True))
    argv = ["train", "--method", "partial_ce", "--data", str(synthetic_root), "--out", str(out), "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error:") and "Traceback" not in err and str(out) in err
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == set(files)
    assert all((out / name).read_text() == text for name, text in files.items())


def test_resume_onto_a_folder_without_checkpoint_is_an_error(synthetic_root, tmp_path):
    for out in (tmp_path / "missing", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(CheckpointError, match="nothing to resume.*drop --resume"):
            train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out, resume=True))


@pytest.mark.parametrize(
    "method, change, field",
    [
        ("supervised", {}, "holds a partial_ce run"),
        ("partial_ce", {"batch_size": 2}, "batch_size"),
        ("partial_ce", {"lr": 1e-2}, "lr"),
        ("partial_ce", {"supervision": "points"}, "supervision"),
        ("partial_ce", {"data": "OTHER"}, "training data differ"),
        ("partial_ce", {"label_smoothing": 0.2}, "label_smoothing"),
    ],
)
def test_resume_refuses_another_method_setting_or_data_naming_it(
    trained_run, synthetic_root, dataset, tmp_path, method, change, field
):
    out = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = _snapshot(out)
    change = dict(change)
    method_change = {k: change.pop(k) for k in list(change) if k == "label_smoothing"}
    if change.get("data") == "OTHER":  # the same folder layout with one image of other content
        info = load_dataset_info(dataset)
        first = list_split(info, "train")[0]
        Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(info.image_path("train", first))
        change["data"] = str(dataset)
    config = dataclasses.replace(_tiny(synthetic_root, out, resume=True), **change)
    m = METHODS[method]
    with pytest.raises(ConfigError, match=rf"--resume: .*{re.escape(field)}"):
        train(m, dataclasses.replace(m.Config(), **method_change), config)
    assert _snapshot(out) == before, "a refused resume rewrote the run"


def test_resume_may_move_the_data_and_add_epochs(trained_run, synthetic_root, dataset, tmp_path):
    out = Path(shutil.copytree(trained_run, tmp_path / "run"))
    train(partial_ce, partial_ce.Config(), _tiny(dataset, out, resume=True, epochs=2))  # a copy: same fingerprint
    assert json.loads((out / "config.json").read_text())["train_config"]["epochs"] == 2


def test_resume_with_fewer_epochs_than_done_is_refused_and_keeps_config_json(trained_run, dataset, tmp_path):
    """``--resume --epochs=2`` on a run at epoch 9 exited 0 and rewrote config.json to say 2 (issue 25)."""
    out = Path(shutil.copytree(trained_run, tmp_path / "run"))
    train(partial_ce, partial_ce.Config(), _tiny(dataset, out, resume=True, epochs=2))
    before = (out / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="has trained 2 epochs, more than epochs=1"):
        train(partial_ce, partial_ce.Config(), _tiny(dataset, out, resume=True, epochs=1))
    assert (out / "config.json").read_bytes() == before


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(method="no_such_method"), "unknown method 'no_such_method'"),
        (lambda c: c["method_config"].update(extra_field=1), "method_config does not fit method partial_ce"),
        (lambda c: c["method_config"].update(label_smoothing=5), "label_smoothing"),
        (lambda c: c.pop("train_config"), "'train_config' is missing"),
        (lambda c: c.pop("method_config"), "'method_config' is missing"),
        (lambda c: c.update(image_size=[0, "x"]), "image_size must be"),
        (lambda c: c.update(image_size=[100000, 100000]), "image_size must be"),
        (lambda c: c["dataset"]["colors"][0].__setitem__(0, 300), "dataset.colors must be"),
        (lambda c: c["dataset"].pop("classes"), "dataset.classes must be"),
    ],
)
def test_an_edited_config_json_names_the_field(run_copy, synthetic_root, tmp_path, capsys, edit, message):
    _edit_run_config(run_copy, edit)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_run(run_copy, device="cpu")
    assert (
        main(["predict", "--checkpoint", str(run_copy), "--data", str(synthetic_root), "--out", str(tmp_path / "p")])
        == 2
    )
    err = capsys.readouterr().err
    assert "config.json" in err and "Traceback" not in err


def test_a_config_json_naming_another_method_is_refused(run_copy):
    _edit_run_config(run_copy, lambda c: c.update(method="spml"))
    with pytest.raises(CheckpointError):
        load_run(run_copy, device="cpu")

"""The command line, run in-process through ``workbench.cli.main``."""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_like_folder, user_folder
from workbench import cli
from workbench.annotations.interchange import export_labels
from workbench.annotations.store import AnnotationStore
from workbench.data.folder import list_split, load_dataset_info, read_mask, validate_dataset
from workbench.labels.weak_labels import Point, SimulationConfig, WeakLabels, WeakLabelSet, load_weak_labels, simulate
from workbench.methods import METHODS
from workbench.ownership import MARKER
from workbench.train.config import TrainConfig


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every subcommand of the parser, nested ones included (``("data", "validate")``)."""
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += [prefix + (name,), *command_paths(sub, prefix + (name,))]
    return paths


COMMANDS = command_paths(cli.build_parser())


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command (argparse exits are caught)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_documented_commands_exist():
    assert {"demo", "train", "eval", "predict", "simulate", "data"} <= {c[0] for c in COMMANDS}
    assert {("data", "generate"), ("data", "validate"), ("data", "convert")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    code, out, _ = run([*command, "--help"], capsys)
    assert code == 0
    assert out.startswith("usage: workbench " + " ".join(command))


def test_train_help_lists_every_method_and_setting(capsys):
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    for name, method in METHODS.items():
        assert name in out
        for field in method.Config.__dataclass_fields__:
            assert f"--{field}=" in out
    for field in ("epochs", "lr", "image_size", "supervision", "protocol"):
        assert f"--{field}=" in out


# ----------------------------------------------------------------------------- overrides


@pytest.fixture
def captured_train(monkeypatch):
    """Replace the engine's train with a recorder: the CLI's parsing is tested without training."""
    calls = []

    def fake_train(method, method_config, config):
        calls.append((method, method_config, config))
        return {"per_class_iou": {"a": 0.5}, "miou": 0.5, "pixel_acc": 0.9}

    monkeypatch.setattr("workbench.train.loop.train", fake_train)
    return calls


def test_overrides_reach_train_config_and_method_config(captured_train, capsys, tmp_path):
    argv = ["train", "--method", "partial_ce", "--data", tmp_path, "--out", tmp_path / "run", "--epochs=3"]
    argv += ["--lr=0.01", "--image_size=16x24", "--hflip=false", "--limit_train", "5", "--label_smoothing=0.1"]
    argv += ["--supervision=points+scribbles", "--protocol=none"]
    code, out, _ = run(argv, capsys)
    assert code == 0 and "0.500" in out
    ((method, method_config, config),) = captured_train
    assert method is METHODS["partial_ce"]
    assert method_config == METHODS["partial_ce"].Config(label_smoothing=0.1)
    expected = TrainConfig(
        data=str(tmp_path), out=str(tmp_path / "run"), epochs=3, lr=0.01, image_size=(16, 24), hflip=False,
        limit_train=5, supervision="points+scribbles", protocol=None,
    )  # fmt: skip
    assert config == expected


def test_default_out_is_named_after_the_method(captured_train, capsys):
    assert run(["train", "--method", "supervised", "--resume"], capsys)[0] == 0
    config = captured_train[0][2]
    assert config.out == "runs/supervised" and config.resume and config.data is None


def test_overwrite_reaches_the_config_and_cannot_go_with_resume(captured_train, capsys):
    assert run(["train", "--method", "supervised", "--overwrite"], capsys)[0] == 0
    assert captured_train[0][2].overwrite and not captured_train[0][2].resume
    code, _, err = run(["train", "--method", "supervised", "--overwrite", "--resume"], capsys)
    assert code == 2 and "either resume" in err and len(captured_train) == 1


def test_the_debug_flag_is_accepted_anywhere(captured_train, capsys):
    assert run(["--debug", "train", "--method", "supervised"], capsys)[0] == 0
    assert run(["train", "--method", "supervised", "--debug"], capsys)[0] == 0
    assert len(captured_train) == 2


def test_a_training_error_exits_1_in_one_line(monkeypatch, capsys):
    from workbench.train.config import TrainingError

    def failing_train(method, method_config, config):
        raise TrainingError("the training loss became NaN or infinite at step 7 (epoch 1); likely cause: lr")

    monkeypatch.setattr("workbench.train.loop.train", failing_train)
    code, _, err = run(["train", "--method", "supervised"], capsys)
    assert code == 1 and err.splitlines()[-1].startswith("error: the training loss became NaN")


def test_unknown_key_exits_2_listing_the_valid_ones(captured_train, capsys):
    code, _, err = run(["train", "--method", "supervised", "--learning_rate=0.1"], capsys)
    assert code == 2 and not captured_train
    assert "unknown setting(s) ['learning_rate']" in err
    assert "epochs" in err and "label_smoothing" in err and "batch_size" in err


@pytest.mark.parametrize(
    "setting, message",
    [
        ("--lr=fast", "expected a finite float"),
        ("--batch_size=2.5", "expected int"),
        ("--hflip=maybe", "expected bool"),
        ("--label_smoothing=1.5", "label_smoothing must be in [0, 1)"),
        ("--batch_size=0", "batch_size must be >= 1"),
    ],
)
def test_bad_values_exit_2_with_the_reason(captured_train, capsys, setting, message):
    code, _, err = run(["train", "--method", "supervised", setting], capsys)
    assert code == 2 and not captured_train
    assert message in err and "Traceback" not in err


def test_unknown_method_is_an_argparse_error(capsys):
    code, _, err = run(["train", "--method", "nope"], capsys)
    assert code == 2 and "invalid choice: 'nope'" in err


# ----------------------------------------------------------------------------- simulate and data


def test_simulate_writes_a_loadable_json(synthetic_root, tmp_path, capsys):
    out = tmp_path / "weak.json"
    argv = ["simulate", "--data", synthetic_root, "--split", "train", "--kind", "points+boxes", "--out", out]
    code, stdout, _ = run([*argv, "--points_per_region=2", "--seed=3"], capsys)
    assert code == 0 and "12 images" in stdout
    weak_set = load_weak_labels(out)
    info = load_dataset_info(synthetic_root)
    assert weak_set.classes == info.classes
    assert sorted(weak_set.labels) == list_split(info, "train")
    mask = read_mask(info.mask_path("train", "train_0003"), info)
    config = SimulationConfig(points_per_region=2, seed=3)
    assert weak_set.labels["train_0003"] == simulate(mask, ["points", "boxes"], config, "train_0003", info.num_classes)


def test_simulate_at_the_training_size_gives_the_labels_training_simulates(synthetic_root, tmp_path, capsys):
    """--image_size: labels made where they are right at that size, stored in the images' coordinates;
    trained from at that size they are the dataset's own simulated labels, and none vanish."""
    from workbench.data.dataset import SegmentationDataset, check_imported_labels

    out = tmp_path / "weak.json"
    argv = ["simulate", "--data", synthetic_root, "--kind", "points+scribbles", "--out", out, "--image_size=20,24"]
    code, _, _ = run(argv, capsys)
    assert code == 0
    weak_set = load_weak_labels(out)
    info = load_dataset_info(synthetic_root)
    assert {(w.height, w.width) for w in weak_set.labels.values()} == {(32, 32)}
    imported = SegmentationDataset(info, "train", "points+scribbles", size=(20, 24), weak_labels=weak_set)
    simulated = SegmentationDataset(info, "train", "points+scribbles", size=(20, 24))
    for i in range(len(imported)):
        np.testing.assert_array_equal(imported[i]["label"].numpy(), simulated[i]["label"].numpy())
    assert check_imported_labels(imported)["vanished_px"] == 0
    code, _, err = run([*argv[:-1], "--image_size=20"], capsys)
    assert code == 2 and "HEIGHT,WIDTH" in err


def test_simulate_refuses_dense(synthetic_root, tmp_path, capsys):
    code, _, err = run(["simulate", "--data", synthetic_root, "--kind", "dense", "--out", tmp_path / "w.json"], capsys)
    assert code == 2 and "must name weak labels" in err


def test_data_generate_then_validate(tmp_path, capsys):
    root = tmp_path / "syn"
    code, _, _ = run(["data", "generate", "--out", root, "--size", "20x28", "--train", 3, "--val", 2], capsys)
    assert code == 0 and validate_dataset(root) == []
    assert np.asarray(Image.open(root / "images" / "train" / "train_0000.png")).shape == (20, 28, 3)
    code, out, _ = run(["data", "validate", root], capsys)
    assert code == 0 and out.strip().endswith("OK")


def test_data_validate_prints_problems_and_returns_1(tmp_path, capsys):
    root = tmp_path / "syn"
    run(["data", "generate", "--out", root, "--size", "16x16", "--train", 2, "--val", 1], capsys)
    (root / "images" / "train" / "train_0001.png").write_bytes(b"garbage")
    doc = json.loads((root / "dataset.json").read_text())
    doc["splits"]["val"] = 3
    (root / "dataset.json").write_text(json.dumps(doc))
    code, out, _ = run(["data", "validate", root], capsys)
    assert code == 1
    assert "train_0001.png: unreadable or corrupt image" in out
    assert "splits.val says 3 images, found 1" in out
    assert "2 problem(s)" in out


def test_missing_dataset_is_reported_without_a_traceback(tmp_path, capsys):
    code, out, _ = run(["data", "validate", tmp_path / "nowhere"], capsys)
    assert code == 1 and "no such dataset folder" in out
    code, _, err = run(["eval", "--checkpoint", tmp_path / "no_run", "--data", tmp_path], capsys)
    assert code == 2 and "no checkpoint there" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- train, eval, predict for real


def test_train_eval_predict_end_to_end(synthetic_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--method", "supervised", "--data", synthetic_root, "--out", run_dir, "--epochs=1"]
    code, out, _ = run([*argv, "--batch_size=4", "--limit_train=4", "--device=cpu", "--encoder=mobilenet_v2"], capsys)
    assert code == 0 and "mIoU" in out and f"run directory: {run_dir}" in out
    report = json.loads((run_dir / "report.json").read_text())

    code, out, _ = run(["eval", "--checkpoint", run_dir, "--data", synthetic_root, "--device", "cpu", "--out", tmp_path / "ev"], capsys)  # fmt: skip
    assert code == 0 and f"{report['miou']:.3f}" in out
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["miou"] == pytest.approx(report["miou"])

    image = synthetic_root / "images" / "val" / "val_0001.png"
    code, out, _ = run(["predict", "--checkpoint", run_dir, "--images", image, "--out", tmp_path / "pred", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0 and "wrote 1 palette PNG" in out
    with Image.open(tmp_path / "pred" / "val_0001.png") as png:
        assert png.mode == "P" and png.size == (32, 32) and np.asarray(png).max() < 8


def test_predict_needs_images_or_data(tmp_path, capsys):
    code, _, err = run(["predict", "--checkpoint", tmp_path, "--out", tmp_path / "p"], capsys)
    assert code == 2 and "give --images FILE... or --data DIR" in err


def test_python_dash_m_workbench_runs(monkeypatch, capsys):
    """``python -m workbench`` reaches the same main (run in-process: a fresh interpreter costs seconds)."""
    monkeypatch.setattr(sys, "argv", ["workbench", "data", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("workbench", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "generate" in out and "validate" in out and "convert" in out


def test_demo_point_methods_are_checked_before_training(tmp_path, capsys):
    """A demo with a method that cannot learn from points stops at once, naming the usable ones."""
    from workbench.demo import demo_runs

    assert [name for name, _, _ in demo_runs(("single_stage", "spml"))] == [
        "dense", "points_partial_ce", "points_single_stage", "points_spml",
    ]  # fmt: skip
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--point-methods", "cam"]) == 2
    err = capsys.readouterr().err
    assert "'cam' does not learn from points" in err and "spml" in err
    assert not (tmp_path / "demo").exists()


# ----------------------------------------------------------------------------- nothing a user owns is replaced


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def other_dataset(root: Path, synthetic_root: Path) -> Path:
    """A dataset folder nobody generated: no marker, no generator stamp."""
    shutil.copytree(synthetic_root, root)
    (root / MARKER).unlink()
    doc = json.loads((root / "dataset.json").read_text())
    del doc["generator"]
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("kind", ["user-files", "trained-run", "other-dataset", "non-empty-current-folder"])
def test_data_generate_refuses_a_folder_it_did_not_make_in_one_line(
    synthetic_root, tmp_path, monkeypatch, capsys, kind
):
    if kind == "other-dataset":
        out = other_dataset(tmp_path / "out", synthetic_root)
    else:
        out = (run_like_folder if kind == "trained-run" else user_folder)(tmp_path / "out")
    before = snapshot(out)
    if kind == "non-empty-current-folder":
        monkeypatch.chdir(out)
    arg = "." if kind == "non-empty-current-folder" else out
    code, _, err = run(["data", "generate", "--out", arg, "--size", "16x16", "--train", 2, "--val", 1], capsys)
    assert code == 2 and err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "not a dataset the generator made" in err and "choose another --out" in err
    assert snapshot(out) == before


def test_data_generate_replaces_the_dataset_it_made(tmp_path, capsys):
    root = tmp_path / "syn"
    assert run(["data", "generate", "--out", root, "--size", "16x16", "--train", 3, "--val", 1], capsys)[0] == 0
    assert run(["data", "generate", "--out", root, "--size", "16x16", "--train", 2, "--val", 1], capsys)[0] == 0
    assert validate_dataset(root) == [] and len(list_split(load_dataset_info(root), "train")) == 2


@pytest.fixture
def data_copy(synthetic_root, tmp_path) -> Path:
    """A dataset of this test's own: a broken guard must not damage the session's."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


@pytest.fixture
def store(data_copy, tmp_path) -> Path:
    info = load_dataset_info(data_copy)
    with AnnotationStore(tmp_path / "a.sqlite", info.classes) as s:
        s.add(list_split(info, "train")[0], Point(3, 4, 1), size=(32, 32))
    return tmp_path / "a.sqlite"


@pytest.fixture
def coco_with_masks(data_copy, tmp_path) -> Path:
    info = load_dataset_info(data_copy)
    name = list_split(info, "train")[0]
    weak = WeakLabelSet(info.classes, {name: WeakLabels(32, 32, frozenset({1}), points=(Point(2, 2, 1),))})
    return export_labels(tmp_path / "labels.json", "coco", weak, {name: np.ones((32, 32), np.uint8)})


EXPORT = ["annotations", "export", "--store", "{store}", "--data", "{data}", "--split", "train"]
IMPORT = ["annotations", "import", "--store", "{tmp}/new.sqlite", "--format", "coco", "--file", "{coco}", "--data", "{data}"]  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "--checkpoint", "{tmp}/run", "--data", "{data}", "--out", "{data}/masks/val"], "lies in the ground-truth masks"),
        (["predict", "--checkpoint", "{tmp}/run", "--data", "{data}", "--out", "{data}/images/val"], "lies in the images"),
        (["predict", "--checkpoint", "{tmp}/run", "--data", "{data}", "--out", "{data}"], "is the dataset folder"),
        (["predict", "--checkpoint", "{tmp}/run", "--images", "{tmp}/pics/a.png", "--out", "{tmp}/pics"], "is also this command's input"),
        ([*EXPORT, "--out", "{data}/masks/train"], "lies in the ground-truth masks"),
        ([*EXPORT, "--format", "labelstudio", "--out", "{data}/dataset.json"], "is the dataset.json"),
        ([*EXPORT, "--format", "cvat", "--out", "{data}/dataset.json"], "is the dataset.json"),
        ([*EXPORT, "--format", "coco", "--out", "{data}/dataset.json"], "is the dataset.json"),
        ([*EXPORT, "--format", "coco", "--out", "{store}"], "is also this command's input"),
        ([*EXPORT, "--out", "{tmp}/png", "--json", "{data}/dataset.json"], "is the dataset.json"),
        ([*IMPORT, "--masks", "{data}/masks/train"], "lies in the ground-truth masks"),
        (["simulate", "--data", "{data}", "--kind", "points", "--out", "{data}/dataset.json"], "is the dataset.json"),
        (["simulate", "--data", "{data}", "--kind", "points", "--out", "{data}/masks/train/train_0000.png"], "lies in the ground-truth masks"),
    ],
    ids=[
        "predict-onto-masks", "predict-onto-images", "predict-into-the-dataset-folder", "predict-onto-its-image",
        "export-png-onto-masks", "export-labelstudio-onto-dataset.json", "export-cvat-onto-dataset.json",
        "export-coco-onto-dataset.json", "export-onto-its-store", "export-json-onto-dataset.json",
        "import-masks-onto-ground-truth", "simulate-onto-dataset.json", "simulate-onto-a-mask",
    ],
)  # fmt: skip
def test_outputs_over_their_own_inputs_are_refused_and_change_nothing(
    data_copy, store, coco_with_masks, tmp_path, capsys, argv, message
):
    (tmp_path / "pics").mkdir()
    shutil.copy(data_copy / "images" / "val" / "val_0000.png", tmp_path / "pics" / "a.png")
    subs = {"{data}": str(data_copy), "{store}": str(store), "{coco}": str(coco_with_masks), "{tmp}": str(tmp_path)}
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in argv]
    before = snapshot(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2 and argv[-1] in err and message in err and "Traceback" not in err  # names the path, says why
    assert snapshot(tmp_path) == before, "a refused command wrote"


def test_outputs_beside_dataset_json_stay_allowed(data_copy, store, capsys):
    """The dashboard keeps annotations.sqlite in the dataset folder; a weak-label JSON or a mask
    export in a subfolder there overwrite nothing of the dataset."""
    weak = data_copy / "weak.json"
    assert run(["simulate", "--data", data_copy, "--kind", "points", "--out", weak], capsys)[0] == 0
    in_root = data_copy / "annotations.sqlite"
    assert run(["annotations", "import", "--store", in_root, "--json", weak, "--data", data_copy], capsys)[0] == 0
    argv = [*EXPORT, "--out", data_copy / "exported", "--json", data_copy / "exported.json"]
    argv = [str(a).replace("{store}", str(in_root)).replace("{data}", str(data_copy)) for a in argv]
    assert run(argv, capsys)[0] == 0 and (data_copy / "exported" / "train_0000.png").is_file()
    assert validate_dataset(data_copy) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--checkpoint", "{tmp}/run", "--data", "{data}", "--out", ""],
        ["eval", "--checkpoint", "{tmp}/run", "--data", "{data}", "--out", ""],
        ["simulate", "--data", "{data}", "--kind", "points", "--out", ""],
        ["data", "generate", "--out", "", "--size", "16x16", "--train", "2", "--val", "1"],
        ["data", "convert", "{data}", "--layout", "ade20k", "--out", ""],
        [*EXPORT, "--out", ""],
        [*EXPORT, "--out", "{tmp}/png", "--json", ""],
        ["demo", "--out", "", "--epochs", "1"],
    ],
    ids=["predict", "eval", "simulate", "generate", "convert", "export", "export-json", "demo"],
)
def test_an_empty_out_is_refused_and_the_current_folder_stays_empty(
    data_copy, store, tmp_path, monkeypatch, capsys, argv
):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    subs = {"{data}": str(data_copy), "{store}": str(store), "{tmp}": str(tmp_path)}
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert "empty path means the current folder" in err or "is a folder; pass the path" in err
    assert os.listdir(".") == []


def test_train_refuses_an_empty_out(captured_train, capsys):
    code, _, err = run(["train", "--method", "partial_ce", "--out", ""], capsys)
    assert code == 2 and "out is empty" in err and captured_train == []

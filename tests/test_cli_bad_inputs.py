"""Bad inputs of workbench.cli: each a one-line error with exit status 2 (a traceback only with --debug),
writing nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.annotations.interchange import export_labels
from workbench.annotations.store import AnnotationStore
from workbench.cli import main
from workbench.data.folder import DatasetError, list_split, load_dataset_info
from workbench.labels.weak_labels import (
    Point,
    WeakLabels,
    WeakLabelSet,
    save_weak_labels,
)
from workbench.train.checkpoint import MODEL_FILE


@pytest.mark.parametrize(
    "setting, key",
    [
        ("--lr=nan", "lr"),
        ("--lr=-1", "lr"),
        ("--epochs=0", "epochs"),
        ("--batch_size=abc", "batch_size"),
        ("--limit_train=-2", "limit_train"),
        ("--label_smoothing=nan", "label_smoothing"),
        ("--label_smoothing=-0.5", "label_smoothing"),
        ("--no_such_setting=1", "no_such_setting"),
    ],
)
def test_cli_config_errors_exit_2_naming_the_key_and_write_nothing(synthetic_root, tmp_path, capsys, setting, key):
    out = tmp_path / "run"
    args = ["train", "--method", "partial_ce", "--data", str(synthetic_root), "--out", str(out), setting]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and key in err and "Traceback" not in err
    assert not out.exists()


def test_cli_eval_of_a_broken_checkpoint_exits_2(run_copy, synthetic_root, capsys):
    (run_copy / MODEL_FILE).write_bytes(b"\x00" * 100)
    assert main(["eval", "--checkpoint", str(run_copy), "--data", str(synthetic_root), "--device", "cpu"]) == 2
    assert "unreadable checkpoint" in capsys.readouterr().err


def test_cli_import_of_a_bad_file_leaves_the_store_as_it_was(tmp_path, synthetic_root, capsys):
    info = load_dataset_info(synthetic_root)
    name = list_split(info, "train")[0]
    store_path = tmp_path / "a.sqlite"
    with AnnotationStore(store_path, info.classes) as s:
        s.add(name, Point(1, 1, 0), (32, 32))
    elsewhere = WeakLabels(32, 32, points=(Point(2, 2, 1),))  # an image this dataset does not have
    bad = WeakLabels(4, 4, points=(Point(1, 1, 0),))  # the image is 32x32: the import must not half-land
    save_weak_labels(tmp_path / "labels.json", WeakLabelSet(info.classes, {"new": elsewhere, name: bad}))
    data = ["--data", str(synthetic_root)]
    assert (
        main(["annotations", "import", "--store", str(store_path), "--json", str(tmp_path / "labels.json"), *data]) == 2
    )
    err = capsys.readouterr().err
    assert "annotated at 4x4, it is 32x32" in err and "no image 'new'" in err and "none of its 2" in err
    with AnnotationStore(store_path, info.classes) as s:
        assert s.images() == [name] and len(s.history(name)) == 1
    (tmp_path / "junk.json").write_text("{")
    missing_store = tmp_path / "never.sqlite"
    junk = ["annotations", "import", "--store", str(missing_store), "--json", str(tmp_path / "junk.json"), *data]
    assert main(junk) == 2
    assert not missing_store.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--method", "partial_ce", "--out", "{file}"], "is a file, not a folder"),
        (["train", "--method", "partial_ce", "--out", "{file}/run"], "is a file, not a folder"),
        (["simulate", "--data", "{data}", "--kind", "points", "--out", "{dir}"], "is a folder; pass the path"),
        (
            ["annotations", "import", "--store", "{dir}", "--json", "{file}", "--data", "{data}"],
            "is a folder; pass the path",
        ),
        (["predict", "--checkpoint", "{dir}", "--images", "{file}", "--out", "{file}"], "is a file, not a folder"),
        (["eval", "--checkpoint", "{dir}", "--data", "{data}", "--out", "{file}"], "is a file, not a folder"),
        (["data", "generate", "--size", "64by64", "--out", "{dir}/g"], "expected HEIGHTxWIDTH"),
        (["data", "generate", "--size", "0x0", "--out", "{dir}/g"], "each side must be 8..4096"),
        (["data", "generate", "--size", "64x64", "--train", "0", "--out", "{dir}/g"], "--train=0"),
    ],
)
def test_cli_paths_of_the_wrong_kind_are_one_line_errors(synthetic_root, tmp_path, capsys, argv, message):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    subs = {"{file}": str(tmp_path / "a_file"), "{dir}": str(tmp_path / "a_dir"), "{data}": str(synthetic_root)}
    for k, v in subs.items():
        argv = [a.replace(k, v) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.splitlines()[-1].startswith("error:") and "Traceback" not in err
    assert (tmp_path / "a_file").read_text() == "x" and list((tmp_path / "a_dir").iterdir()) == []


def test_debug_shows_the_traceback(synthetic_root, tmp_path, monkeypatch, capsys):
    argv = ["train", "--method", "partial_ce", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    with pytest.raises(DatasetError):
        main([*argv, "--debug"])
    monkeypatch.setenv("WORKBENCH_DEBUG", "1")
    with pytest.raises(DatasetError):
        main(argv)


@pytest.mark.parametrize("fmt", ["weakseg", "labelstudio", "cvat", "coco"])
def test_cli_import_checks_names_sizes_and_bounds_against_the_dataset_and_adds_nothing_twice(
    fmt, synthetic_root, tmp_path, capsys
):
    """What the dashboard's upload refuses, the CLI refuses too (issue 25): images the dataset lacks,
    path-like names, labels drawn at another size or off the image; the rest is imported once."""
    info = load_dataset_info(synthetic_root)
    good, small = list_split(info, "train")[:2]
    labels = {
        good: WeakLabels(32, 32, frozenset({1}), points=(Point(3, 4, 1),)),
        "../../etc/passwd": WeakLabels(32, 32, points=(Point(1, 1, 0),)),  # a path, not an image of the split
        "evil": WeakLabels(32, 32, points=(Point(1, 1, 0),)),
        small: WeakLabels(480, 640, points=(Point(400, 600, 2),)),  # drawn on a 480x640 copy of a 32x32 image
    }
    path = tmp_path / f"labels.{'xml' if fmt == 'cvat' else 'json'}"
    if fmt == "weakseg":
        save_weak_labels(path, WeakLabelSet(info.classes, labels))
    else:
        try:
            export_labels(path, fmt, WeakLabelSet(info.classes, labels))
        except Exception as err:  # a format that cannot even write a bad case says so: test what it wrote
            pytest.skip(f"{fmt} does not write these cases ({err})")
    store = tmp_path / "s.sqlite"
    argv = ["annotations", "import", "--store", str(store), "--data", str(synthetic_root), "--format", fmt]
    argv += ["--json", str(path)] if fmt == "weakseg" else ["--file", str(path)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "passwd' in split 'train'" in err and "no image 'evil'" in err, err  # the tools keep the stem
    assert f"image {small!r} was annotated at 480x640, it is 32x32" in err, err
    with AnnotationStore(store, info.classes) as s:
        assert s.images() == [good] and [p.cls for p in s.weak_labels(good).points] == [1]
        history = len(s.history(good))
    assert main(argv) == 0 and "imported new labels of 0 of 1 images" in capsys.readouterr().out
    with AnnotationStore(store, info.classes) as s:
        assert len(s.weak_labels(good).points) == 1 and len(s.history(good)) == history  # not doubled


def test_cli_import_of_labels_for_no_image_of_the_dataset_is_an_error_and_stores_nothing(
    synthetic_root, tmp_path, capsys
):
    info = load_dataset_info(synthetic_root)
    path = tmp_path / "other.json"
    save_weak_labels(path, WeakLabelSet(info.classes, {"somewhere_else": WeakLabels(32, 32, points=(Point(1, 1, 0),))}))
    store = tmp_path / "s.sqlite"
    argv = ["annotations", "import", "--store", str(store), "--data", str(synthetic_root), "--json", str(path)]
    assert main(argv) == 2
    assert "none of its 1 labelled images fits split 'train'" in capsys.readouterr().err
    assert not store.exists()


def test_predict_of_two_images_of_one_name_is_refused_before_writing(trained_run, synthetic_root, tmp_path, capsys):
    """``predict --images a/x.png b/x.png`` said "wrote 2" and left one mask (issue 25)."""
    info = load_dataset_info(synthetic_root)
    source = info.image_path("train", list_split(info, "train")[0])
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(source.read_bytes())
    out = tmp_path / "masks"
    argv = [
        "predict",
        "--checkpoint",
        str(trained_run),
        "--images",
        str(tmp_path / "a/x.png"),
        str(tmp_path / "b/x.png"),
    ]
    assert main([*argv, "--out", str(out)]) == 2
    assert "would both be predicted into" in capsys.readouterr().err
    assert not list(out.glob("*.png"))


@pytest.mark.parametrize("code, why", [(28, "the disk is full"), (30, "the file system is read-only")])
def test_a_full_disk_or_read_only_folder_is_one_line_naming_the_folder_and_keeps_the_old_file(
    code, why, synthetic_root, tmp_path, monkeypatch, capsys
):
    """Issue 25: a full disk and a read-only folder were tracebacks (and blamed on the input)."""
    import errno
    import tempfile

    out = tmp_path / "labels.json"
    out.write_text("the user's earlier labels")

    def refuse(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), str(Path(dir) / ".labels.json.x.tmp"))

    assert code in (errno.ENOSPC, errno.EROFS)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["simulate", "--data", str(synthetic_root), "--kind", "points", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and why in err and f"into {tmp_path}" in err and "Traceback" not in err, err
    assert out.read_text() == "the user's earlier labels"

"""The embedded synthetic generator: deterministic, self-describing, valid, few object classes per image."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_like_folder, user_folder
from workbench.data.folder import list_split, load_dataset_info, read_mask, validate_dataset
from workbench.data.synthetic import (
    CLASSES,
    COLORS,
    PROTOCOLS,
    STUFF,
    SyntheticConfig,
    ensure_sized_synthetic,
    ensure_synthetic,
    generate,
)
from workbench.ownership import MARKER, OwnershipError

TINY = SyntheticConfig(height=24, width=32, train=6, val=2, seed=3)


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = folder_bytes(generate(tmp_path / "a", TINY))
    b = folder_bytes(generate(tmp_path / "b", TINY))
    assert len(a) == 2 + 2 * (TINY.train + TINY.val)  # dataset.json, the ownership marker, images and masks
    assert a == b


def test_another_seed_gives_other_scenes(tmp_path):
    a = folder_bytes(generate(tmp_path / "a", TINY))
    b = folder_bytes(generate(tmp_path / "b", SyntheticConfig(height=24, width=32, train=6, val=2, seed=4)))
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.startswith("masks/"))


def test_dataset_json_describes_classes_colors_protocols(synthetic_root):
    doc = json.loads((synthetic_root / "dataset.json").read_text())
    assert doc["classes"] == list(CLASSES) and len(CLASSES) == 8
    assert doc["colors"] == [list(c) for c in COLORS]
    assert doc["splits"] == {"train": 12, "val": 4}
    info = load_dataset_info(synthetic_root)
    assert info.protocols == PROTOCOLS
    assert set(info.protocols["objects2"]) <= set(CLASSES) - set(STUFF)


def test_generated_folder_validates(synthetic_root):
    assert validate_dataset(synthetic_root) == []


def test_scenes_have_stuff_and_few_object_classes(synthetic_root):
    info = load_dataset_info(synthetic_root)
    objects_seen = set()
    for split in ("train", "val"):
        for name in list_split(info, split):
            mask = read_mask(info.mask_path(split, name), info)
            assert mask.shape == (32, 32)
            present = set(np.unique(mask).tolist())
            assert present <= set(range(len(CLASSES)))  # no void in synthetic scenes
            assert present & set(range(len(STUFF)))  # some background
            objects = present - set(range(len(STUFF)))
            assert len(objects) <= 2  # one or two object classes keep tags informative
            objects_seen |= objects
    assert len(objects_seen) >= 4  # the split as a whole covers most object classes


def test_ensure_synthetic_reuses_an_identical_folder(tmp_path):
    root = ensure_synthetic(tmp_path / "syn", TINY)
    stamp = (root / "dataset.json").stat().st_mtime_ns
    assert ensure_synthetic(root, TINY) == root
    assert (root / "dataset.json").stat().st_mtime_ns == stamp
    ensure_synthetic(root, SyntheticConfig(height=24, width=32, train=3, val=1))
    assert len(list_split(load_dataset_info(root), "train")) == 3  # another config regenerates


def test_sized_synthetic_sets_share_a_folder_per_size_and_never_overwrite_another(tmp_path):
    small = ensure_sized_synthetic(tmp_path, 24, train=3, val=1)
    other = ensure_sized_synthetic(tmp_path, 24, train=4, val=1)
    assert small != other and ensure_sized_synthetic(tmp_path, 24, train=3, val=1) == small
    assert len(list_split(load_dataset_info(small), "train")) == 3
    info = load_dataset_info(other)
    assert read_mask(info.mask_path("train", list_split(info, "train")[0]), info).shape == (24, 24)


def test_weak_shot_mode_puts_several_novel_classes_in_varied_combinations(tmp_path):
    from workbench.data.synthetic import WEAK_SHOT_NOVEL, WEAK_SHOT_PROTOCOL
    from workbench.labels.splits import ClassSplit, identifiability

    info = load_dataset_info(
        generate(tmp_path / "ws", SyntheticConfig(height=32, width=32, train=64, val=1, weak_shot=True))
    )
    assert info.protocols[WEAK_SHOT_PROTOCOL] == WEAK_SHOT_NOVEL and "objects2" in info.protocols
    split = ClassSplit.from_protocol(info.classes, info.protocols, WEAK_SHOT_PROTOCOL)
    masks = [read_mask(info.mask_path("train", n), info) for n in list_split(info, "train")]
    report = identifiability(masks, split)
    several = sum(v for k, v in report.by_count.items() if k >= 2)
    assert several >= 0.6 * report.images  # most images hold >= 2 novel classes
    combos = {tuple(np.isin(split.novel, np.unique(m))) for m in masks}
    assert len(combos) >= 3  # varied combinations: tags tell images apart
    assert report.warnings == []  # neither trivially identifiable nor degenerate


def test_default_synthetic_scenes_are_unchanged_by_the_weak_shot_mode(tmp_path):
    plain = folder_bytes(generate(tmp_path / "a", TINY))
    weak = folder_bytes(generate(tmp_path / "b", SyntheticConfig(**{**TINY.__dict__, "weak_shot": True})))
    assert plain.keys() == weak.keys() and plain["masks/train/train_0000.png"] != weak["masks/train/train_0000.png"]


def test_weak_shot_runs_without_data_use_the_weak_shot_set(tmp_path):
    from workbench.train.config import TrainConfig
    from workbench.train.data import dataset_info

    info = dataset_info(TrainConfig(protocol="weakshot", synthetic_root=str(tmp_path / "syn")))
    assert info.root == tmp_path / "syn-weakshot" and "weakshot" in info.protocols


# ----------------------------------------------------------------------------- what generate may replace


def foreign_dataset(root: Path) -> Path:
    """A dataset folder someone made by hand: no marker, no generator stamp."""
    generate(root, TINY)
    (root / MARKER).unlink()
    doc = json.loads((root / "dataset.json").read_text())
    del doc["generator"]
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


def generated_with_user_files(root: Path) -> Path:
    generate(root, TINY)
    (root / "annotations.sqlite").write_bytes(b"a day of clicks")
    (root / "images" / "train" / "extra_photo.png").write_bytes(b"mine")
    return root


@pytest.mark.parametrize(
    "make, names",
    [
        (user_folder, ["notes/", "thesis.tex"]),
        (run_like_folder, ["checkpoint", "config.json", "report.md"]),
        (foreign_dataset, ["dataset.json", "images", "masks"]),
        (generated_with_user_files, ["annotations.sqlite", "images/train/extra_photo.png"]),
    ],
    ids=["user-files", "trained-run", "other-dataset", "generated-plus-user-files"],
)
def test_generate_refuses_a_folder_holding_what_it_did_not_write_and_changes_nothing(tmp_path, make, names):
    root = make(tmp_path / "out")
    before = folder_bytes(root)
    with pytest.raises(OwnershipError, match="choose another --out, or move those files") as err:
        generate(root, SyntheticConfig(height=16, width=16, train=2, val=1))
    assert str(root) in str(err.value) and all(n.rstrip("/") in str(err.value) for n in names)
    assert folder_bytes(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "a temp folder was left beside it"


def test_generate_refuses_the_current_folder_unless_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(user_folder(tmp_path / "home"))
    with pytest.raises(OwnershipError, match=r"^\.: is not empty .*thesis\.tex"):
        generate(".", TINY)
    with pytest.raises(OwnershipError, match="empty path means the current folder"):
        generate("", TINY)
    assert sorted(os.listdir(".")) == ["notes", "thesis.tex"]
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    generate(".", TINY)  # an empty current folder is filled in place ...
    generate(".", SyntheticConfig(height=24, width=32, train=3, val=1))  # ... and its own dataset replaced there
    assert Path.cwd() == (tmp_path / "empty").resolve() and len(list_split(load_dataset_info("."), "train")) == 3
    assert sorted(os.listdir(tmp_path)) == ["empty", "home"], "a temp folder was left beside it"


def test_generate_replaces_its_own_datasets_marked_or_from_before_the_marker(tmp_path):
    root = generate(tmp_path / "syn", TINY)
    marker = json.loads((root / MARKER).read_text())
    assert marker["kind"] == "synthetic-dataset" and set(marker["files"]) == set(folder_bytes(root)) - {MARKER}
    generate(root, SyntheticConfig(height=24, width=32, train=2, val=1))
    assert len(list_split(load_dataset_info(root), "train")) == 2
    assert not (root / "images" / "train" / "train_0005.png").exists(), "the old dataset's files survived"
    (root / MARKER).unlink()  # generated before the marker: dataset.json's generator stamp names its files
    generate(root, TINY)
    assert len(list_split(load_dataset_info(root), "train")) == TINY.train and (root / MARKER).is_file()
    (root / MARKER).unlink()
    (root / "images" / "val" / "val_0007.png").write_bytes(b"mine")  # beyond the stamp's val count of 2
    with pytest.raises(OwnershipError, match="val_0007.png"):
        generate(root, TINY)


def test_generate_refuses_a_symbolic_link(tmp_path):
    target = user_folder(tmp_path / "real")
    (tmp_path / "link").symlink_to(target, target_is_directory=True)
    with pytest.raises(OwnershipError, match="symbolic link"):
        generate(tmp_path / "link", TINY)
    assert sorted(os.listdir(target)) == ["notes", "thesis.tex"]


def test_ensure_synthetic_regenerates_only_what_it_owns(tmp_path):
    root = ensure_synthetic(tmp_path / "syn", TINY)
    (root / "annotations.sqlite").write_bytes(b"clicks")  # the dashboard's store beside dataset.json
    assert ensure_synthetic(root, TINY) == root  # the same stamp: nothing to replace
    with pytest.raises(OwnershipError, match="annotations.sqlite"):
        ensure_synthetic(root, SyntheticConfig(height=24, width=32, train=3, val=1))
    assert (root / "annotations.sqlite").read_bytes() == b"clicks"

"""The embedded synthetic generator: deterministic, self-describing, valid, few object classes per image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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

TINY = SyntheticConfig(height=24, width=32, train=6, val=2, seed=3)


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = folder_bytes(generate(tmp_path / "a", TINY))
    b = folder_bytes(generate(tmp_path / "b", TINY))
    assert len(a) == 1 + 2 * (TINY.train + TINY.val)
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
    from workbench.splits import ClassSplit, identifiability

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
    from workbench.engine import TrainConfig, dataset_info

    info = dataset_info(TrainConfig(protocol="weakshot", synthetic_root=str(tmp_path / "syn")))
    assert info.root == tmp_path / "syn-weakshot" and "weakshot" in info.protocols

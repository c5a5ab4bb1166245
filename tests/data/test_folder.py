"""The dataset folder format: reading dataset.json, images and masks, and the documented errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.data.folder import (
    DatasetError,
    list_split,
    load_dataset_info,
    read_image,
    read_mask,
    tune_names,
    validate_dataset,
)
from workbench.io import save_index_png

CLASSES = ["road", "car", "tree"]
COLORS = [[128, 64, 128], [0, 0, 142], [107, 142, 35]]


def write_dataset(root: Path, n: int = 3, size: tuple[int, int] = (12, 16), ignore_index: int = 255, **extra) -> Path:
    """A tiny valid folder: ``n`` train images with masks holding every class and a void stripe."""
    info = {"name": "tiny", "classes": CLASSES, "colors": COLORS, "ignore_index": ignore_index}
    info |= {"splits": {"train": n}, **extra}
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(info))
    for i in range(n):
        mask = np.zeros(size, dtype=np.uint8)
        mask[:, size[1] // 3 :] = 1
        mask[:, 2 * size[1] // 3 :] = 2
        mask[0] = ignore_index
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full(size + (3,), (40 * i) % 256, np.uint8)).save(root / "images" / "train" / f"im{i}.png")
        save_index_png(root / "masks" / "train" / f"im{i}.png", mask, COLORS)
    return root


def edit_info(root: Path, **changes) -> None:
    doc = json.loads((root / "dataset.json").read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    (root / "dataset.json").write_text(json.dumps(doc))


def test_load_dataset_info_reads_every_field(tmp_path):
    root = write_dataset(tmp_path / "d", weak_shot_protocols={"cars": {"novel": ["car"]}})
    info = load_dataset_info(root)
    assert info.classes == tuple(CLASSES) and info.num_classes == 3
    assert info.colors == tuple(tuple(c) for c in COLORS)
    assert info.splits == {"train": 3} and info.protocols == {"cars": ("car",)}
    assert info.image_path("train", "im0") == root / "images" / "train" / "im0.png"
    assert load_dataset_info(root).to_json_dict()["weak_shot_protocols"] == {"cars": {"novel": ["car"]}}


def test_list_split_is_sorted_and_complete(tmp_path):
    root = write_dataset(tmp_path / "d", n=3)
    assert list_split(load_dataset_info(root), "train") == ["im0", "im1", "im2"]


def test_read_image_converts_to_rgb_uint8(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.arange(20, dtype=np.uint8).reshape(4, 5)).save(gray)
    image = read_image(gray)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 2]).all() and image[0, 1, 1] == 1


def test_read_mask_keeps_indices_and_void(tmp_path):
    root = write_dataset(tmp_path / "d")
    info = load_dataset_info(root)
    mask = read_mask(info.mask_path("train", "im0"), info, shape=(12, 16))
    assert mask.dtype == np.uint8 and mask.shape == (12, 16)
    assert set(np.unique(mask).tolist()) == {0, 1, 2, 255}


def test_custom_ignore_index_becomes_255(tmp_path):
    root = write_dataset(tmp_path / "d", ignore_index=7)
    info = load_dataset_info(root)
    mask = read_mask(info.mask_path("train", "im1"), info)
    assert (mask[0] == 255).all() and 7 not in mask


def test_validate_passes_a_good_folder(tmp_path):
    assert validate_dataset(write_dataset(tmp_path / "d")) == []


# ----------------------------------------------------------------------------- documented errors


def test_missing_dataset_json_names_the_file(tmp_path):
    root = write_dataset(tmp_path / "d")
    (root / "dataset.json").unlink()
    with pytest.raises(DatasetError, match=r"dataset\.json: missing"):
        load_dataset_info(root)


@pytest.mark.parametrize("key", ["classes", "colors", "ignore_index", "splits", "name"])
def test_missing_key_is_named(tmp_path, key):
    root = write_dataset(tmp_path / "d")
    edit_info(root, **{key: None})
    with pytest.raises(DatasetError, match=rf"dataset\.json: missing key '{key}'"):
        load_dataset_info(root)


def test_colors_must_match_classes(tmp_path):
    root = write_dataset(tmp_path / "d")
    edit_info(root, colors=COLORS[:2])
    with pytest.raises(DatasetError, match="'colors' must be 3"):
        load_dataset_info(root)


def test_mask_size_mismatch_names_the_mask(tmp_path):
    root = write_dataset(tmp_path / "d")
    save_index_png(root / "masks" / "train" / "im1.png", np.zeros((12, 15), np.uint8), COLORS)
    info = load_dataset_info(root)
    with pytest.raises(DatasetError, match=r"im1\.png: mask is 12x15 but its image is 12x16"):
        read_mask(info.mask_path("train", "im1"), info, shape=read_image(info.image_path("train", "im1")).shape[:2])
    problems = validate_dataset(root)
    assert len(problems) == 1 and "masks/train/im1.png" in problems[0]


def test_label_out_of_range_names_the_values(tmp_path):
    root = write_dataset(tmp_path / "d")
    save_index_png(root / "masks" / "train" / "im2.png", np.full((12, 16), 5, np.uint8), COLORS)
    info = load_dataset_info(root)
    with pytest.raises(DatasetError, match=r"im2\.png: label values \[5\] are outside the 3 classes"):
        read_mask(info.mask_path("train", "im2"), info)


def test_corrupt_image_names_the_file(tmp_path):
    root = write_dataset(tmp_path / "d")
    (root / "images" / "train" / "im0.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DatasetError, match=r"im0\.png: unreadable or corrupt image"):
        read_image(root / "images" / "train" / "im0.png")
    problems = validate_dataset(root)
    assert len(problems) == 1 and "images/train/im0.png" in problems[0]


def test_missing_mask_is_reported_by_list_split(tmp_path):
    root = write_dataset(tmp_path / "d")
    (root / "masks" / "train" / "im2.png").unlink()
    with pytest.raises(DatasetError, match=r"1 mask\(s\) missing, e\.g\. im2\.png"):
        list_split(load_dataset_info(root), "train")


def test_color_mask_is_refused_with_a_fix(tmp_path):
    root = write_dataset(tmp_path / "d")
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "masks" / "train" / "im0.png")
    info = load_dataset_info(root)
    with pytest.raises(DatasetError, match="color mask.*data convert"):
        read_mask(info.mask_path("train", "im0"), info)


def test_validate_reports_a_wrong_split_count(tmp_path):
    root = write_dataset(tmp_path / "d")
    edit_info(root, splits={"train": 5})
    problems = validate_dataset(root)
    assert problems == [f"{root}/dataset.json: splits.train says 5 images, found 3"]


def test_tune_is_the_last_block_of_each_video_sequence():
    names = sorted([f"seqA_{i:05d}" for i in range(0, 300, 30)] + [f"seqB_f{i:05d}" for i in range(5)])
    tune = tune_names(names)
    assert tune == sorted([f"seqA_{i:05d}" for i in (240, 270)] + ["seqB_f00004"])  # 20% of 10, of 5


def test_tune_of_unordered_names_is_a_fixed_fifth():
    names = [f"img{i}_s" for i in range(20)]
    tune = tune_names(sorted(names))
    assert len(tune) == 4 and tune == tune_names(sorted(names)) and set(tune) <= set(names)


def test_carved_splits_partition_train_and_read_from_its_folder(tmp_path):
    root = write_dataset(tmp_path / "d", n=10)
    info = load_dataset_info(root)
    tune, rest = list_split(info, "tune"), list_split(info, "train-tune")
    assert len(tune) == 2 and not set(tune) & set(rest) and sorted(tune + rest) == list_split(info, "train")
    assert info.image_path("tune", tune[0]) == root / "images" / "train" / f"{tune[0]}.png"
    assert info.mask_path("train-tune", rest[0]).is_file()


def test_a_real_tune_folder_wins_over_the_carved_split(tmp_path):
    root = write_dataset(tmp_path / "d", n=4)
    for kind in ("images", "masks"):
        (root / kind / "tune").mkdir()
        (root / kind / "train" / "im0.png").rename(root / kind / "tune" / "im0.png")
    info = load_dataset_info(root)
    assert list_split(info, "tune") == ["im0"] and info.image_path("tune", "im0").is_file()

"""Converters from PASCAL VOC and ADE20K / COCO-Stuff layouts, on tiny generated examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.data.convert import VOC_CLASSES, convert_index_masks, convert_voc, voc_colormap
from workbench.data.folder import DatasetError, list_split, load_dataset_info, read_image, read_mask, validate_dataset
from workbench.io import save_index_png

SIZE = (10, 14)


def jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, SIZE + (3,), dtype=np.uint8)).save(path, quality=90)


# image name: (split, class of its one object)
VOC_NAMES = {
    "2007_000001": ("train", 1),
    "2007_000002": ("train", 15),
    "2007_000003": ("train", 20),
    "2008_000001": ("val", 7),
}


def voc_mask(cls: int) -> np.ndarray:
    """Background, one object of class ``cls``, and VOC's 255 border around it."""
    mask = np.zeros(SIZE, dtype=np.uint8)
    mask[2:8, 3:10] = 255
    mask[3:7, 4:9] = cls
    return mask


def fake_voc(root: Path) -> Path:
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split in ("train", "val"):
        (lists / f"{split}.txt").write_text("".join(f"{n}\n" for n, (s, _) in VOC_NAMES.items() if s == split))
    for i, (name, (_, cls)) in enumerate(VOC_NAMES.items()):
        jpeg(root / "JPEGImages" / f"{name}.jpg", seed=i)
        save_index_png(root / "SegmentationClass" / f"{name}.png", voc_mask(cls), voc_colormap(256))
    jpeg(root / "JPEGImages" / "2009_999999.jpg", seed=99)  # an image no split lists (detection only)
    return root


def ade_mask(seed: int) -> np.ndarray:
    """ADE20K stores class k as k+1 and 'other' as 0."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5, SIZE).astype(np.uint8)


def fake_ade(root: Path) -> Path:
    for split, n in (("training", 3), ("validation", 2)):
        for i in range(n):
            jpeg(root / "images" / split / f"ADE_{split}_{i:04d}.jpg", seed=i)
            path = root / "annotations" / split / f"ADE_{split}_{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ade_mask(10 * n + i)).save(path)  # mode L index PNG
    return root


def test_voc_conversion_validates_and_keeps_labels(tmp_path):
    src = fake_voc(tmp_path / "VOC2012")
    out = convert_voc(src, tmp_path / "voc")
    assert validate_dataset(out) == []
    info = load_dataset_info(out)
    assert info.classes == VOC_CLASSES and info.splits == {"train": 3, "val": 1}
    assert info.image_ext == ".jpg" and info.colors[1] == (128, 0, 0)
    assert list_split(info, "train") == ["2007_000001", "2007_000002", "2007_000003"]
    for name, (split, cls) in VOC_NAMES.items():
        np.testing.assert_array_equal(read_mask(info.mask_path(split, name), info), voc_mask(cls))
        assert info.image_path(split, name).read_bytes() == (src / "JPEGImages" / f"{name}.jpg").read_bytes()
    assert not list((out / "images").rglob("2009_999999.jpg"))


def test_voc_palette_starts_like_pascal():
    assert voc_colormap(5) == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]


def test_ade20k_conversion_shifts_labels_and_voids_other(tmp_path):
    src = fake_ade(tmp_path / "ADEChallengeData2016")
    out = convert_index_masks(src, tmp_path / "ade", layout="ade20k")
    assert validate_dataset(out) == []
    info = load_dataset_info(out)
    assert info.splits == {"train": 3, "val": 2}
    assert info.classes == ("class_000", "class_001", "class_002", "class_003")  # stored 1..4 -> 0..3
    original = ade_mask(10 * 3 + 1)
    mask = read_mask(info.mask_path("train", "ADE_training_0001"), info)
    np.testing.assert_array_equal(mask[original == 0], 255)
    np.testing.assert_array_equal(mask[original > 0], original[original > 0] - 1)
    assert read_image(info.image_path("val", "ADE_validation_0000")).shape == SIZE + (3,)


def test_class_names_file_names_the_classes(tmp_path):
    src = fake_ade(tmp_path / "ade_src")
    names = tmp_path / "classes.txt"
    names.write_text("wall\nfloor\nsky\ntree\nperson\n")
    info = load_dataset_info(convert_index_masks(src, tmp_path / "ade", layout="ade20k", classes_file=str(names)))
    assert info.classes == ("wall", "floor", "sky", "tree", "person")


def test_cocostuff_masks_are_kept_as_they_are(tmp_path):
    src = tmp_path / "coco"
    original = ade_mask(1)
    original[0, :] = 255
    jpeg(src / "images" / "train2017" / "000000001.jpg", seed=1)
    (src / "annotations" / "train2017").mkdir(parents=True)
    Image.fromarray(original).save(src / "annotations" / "train2017" / "000000001.png")
    info = load_dataset_info(convert_index_masks(src, tmp_path / "out", layout="cocostuff"))
    assert info.splits == {"train2017": 1} and info.num_classes == 5
    np.testing.assert_array_equal(read_mask(info.mask_path("train2017", "000000001"), info), original)


def test_conversion_refuses_a_non_empty_output(tmp_path):
    src = fake_voc(tmp_path / "VOC2012")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="busy: exists and is not empty"):
        convert_voc(src, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_a_missing_mask_leaves_nothing_half_written(tmp_path):
    src = fake_voc(tmp_path / "VOC2012")
    (src / "SegmentationClass" / "2008_000001.png").unlink()
    with pytest.raises(DatasetError, match=r"2008_000001\.png: missing"):
        convert_voc(src, tmp_path / "voc")
    assert not (tmp_path / "voc").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["VOC2012"]  # no temporary folder left behind

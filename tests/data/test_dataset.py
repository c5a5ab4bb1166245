"""SegmentationDataset items and paired augmentation: image, label and weak labels move together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.data.augment import Augment
from workbench.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationDataset,
    median_frequency_weights,
    parse_supervision,
)
from workbench.data.folder import DatasetError, load_dataset_info, read_mask
from workbench.io import save_index_png
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import (
    IGNORE,
    UNLABELED,
    Box,
    Point,
    Scribble,
    SimulationConfig,
    WeakLabels,
    WeakLabelSet,
)

# Colour-coded scenes: every pixel's colour says its class, so alignment can be read off the image.
CLASS_RGB = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.uint8)
VOID_RGB = (128, 128, 128)


def coded_mask(shift: int) -> np.ndarray:
    """A 30x45 layout that is not left-right symmetric, with a void band at the top."""
    mask = np.zeros((30, 45), dtype=np.uint8)
    mask[5:20, 26 + shift : 41] = 1
    mask[16:28, 3 : 15 + shift] = 2
    mask[:2] = IGNORE
    return mask


def write_coded_dataset(root: Path, n: int = 3) -> Path:
    doc = {"name": "coded", "classes": ["red", "green", "blue"], "colors": CLASS_RGB.tolist(), "ignore_index": 255}
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({**doc, "splits": {"train": n}}))
    (root / "images" / "train").mkdir(parents=True)
    for i in range(n):
        mask = coded_mask(shift=2 * i)
        image = np.empty(mask.shape + (3,), dtype=np.uint8)
        image[mask == IGNORE] = VOID_RGB
        image[mask != IGNORE] = CLASS_RGB[mask[mask != IGNORE]]
        Image.fromarray(image).save(root / "images" / "train" / f"s{i}.png")
        save_index_png(root / "masks" / "train" / f"s{i}.png", mask, CLASS_RGB)
    return root


@pytest.fixture(scope="module")
def coded_root(tmp_path_factory) -> Path:
    return write_coded_dataset(tmp_path_factory.mktemp("coded") / "coded")


def raw_pixels(image: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: ``(3, H, W)`` float -> ``(H, W, 3)`` float in 0..255."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


def decode(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Class whose colour each pixel has, and where that colour is pure (not a blend at a boundary)."""
    dist = np.linalg.norm(raw_pixels(image)[:, :, None, :] - CLASS_RGB[None, None].astype(float), axis=-1)
    return dist.argmin(-1), dist.min(-1) < 8


# ----------------------------------------------------------------------------- items


def test_items_have_the_documented_keys_shapes_dtypes(synthetic_root):
    info = load_dataset_info(synthetic_root)
    item = SegmentationDataset(info, "train", "points")[3]
    assert set(item) == {"image", "label", "tags", "index"}  # no ground truth for training
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["label"].shape == (32, 32) and item["label"].dtype == torch.int64
    assert item["tags"].shape == (8,) and item["tags"].dtype == torch.float32
    assert item["index"] == 3
    assert abs(float(item["image"].mean())) < 3  # normalised, not 0..255
    values = set(item["label"].unique().tolist())
    assert UNLABELED in values and values - {UNLABELED} <= set(range(8))


def test_mask_only_with_include_gt(synthetic_root):
    info = load_dataset_info(synthetic_root)
    item = SegmentationDataset(info, "val", "dense", include_gt=True)[0]
    assert set(item) == {"image", "label", "tags", "index", "mask"}
    assert item["mask"].dtype == torch.int64
    np.testing.assert_array_equal(item["mask"].numpy(), read_mask(info.mask_path("val", "val_0000"), info))


def test_dense_label_is_the_mask_and_tags_its_classes(synthetic_root):
    info = load_dataset_info(synthetic_root)
    dataset = SegmentationDataset(info, "train", "dense")
    for i in range(3):
        mask = read_mask(info.mask_path("train", dataset.names[i]), info)
        item = dataset[i]
        np.testing.assert_array_equal(item["label"].numpy(), mask)
        assert set(np.flatnonzero(item["tags"].numpy()).tolist()) == set(np.unique(mask).tolist())


@pytest.mark.parametrize(
    "supervision, simulation",
    [
        ("points", SimulationConfig(points_per_region=3)),
        ("scribbles", SimulationConfig(scribble_width=1.0, scribble_step=1)),  # along the skeleton itself
        ("points+scribbles", SimulationConfig(scribble_width=1.0, scribble_step=1)),
    ],
)
def test_simulated_weak_labels_land_on_their_class(synthetic_root, supervision, simulation):
    info = load_dataset_info(synthetic_root)
    dataset = SegmentationDataset(info, "train", supervision, simulation=simulation)
    for i in range(len(dataset)):
        label = dataset[i]["label"].numpy()
        mask = read_mask(info.mask_path("train", dataset.names[i]), info)
        sel = label < info.num_classes
        assert sel.sum() > 0
        np.testing.assert_array_equal(label[sel], mask[sel])


def test_weak_shot_split_hides_novel_pixels_but_keeps_novel_tags(synthetic_root):
    info = load_dataset_info(synthetic_root)
    split = ClassSplit.from_protocol(info.classes, info.protocols, "objects2")
    assert split.novel == (5, 7)  # triangle, cross
    dataset = SegmentationDataset(info, "train", "dense", class_split=split, include_gt=True)
    novel_images = 0
    for i in range(len(dataset)):
        item = dataset[i]
        label, mask, tags = item["label"].numpy(), item["mask"].numpy(), item["tags"].numpy()
        novel = np.isin(mask, split.novel)
        assert (label[novel] == UNLABELED).all()
        np.testing.assert_array_equal(label[~novel], mask[~novel])
        for c in split.novel:
            assert tags[c] == float((mask == c).any())  # a novel class present keeps its tag
        novel_images += int(novel.any())
    assert novel_images > 0


def test_weak_shot_split_drops_novel_points(synthetic_root):
    info = load_dataset_info(synthetic_root)
    split = ClassSplit.from_protocol(info.classes, info.protocols, "shapes3")
    dataset = SegmentationDataset(info, "train", "points", class_split=split)
    for i in range(len(dataset)):
        label = dataset[i]["label"].numpy()
        assert not np.isin(label, split.novel).any()
        assert all(dataset[i]["tags"][c] == 1 for c in {p.cls for p in dataset.weak(i).points})


def test_one_pixel_point_survives_a_3x_downscale(tmp_path):
    root = write_coded_dataset(tmp_path / "coded", n=1)
    info = load_dataset_info(root)
    weak = WeakLabelSet(
        info.classes, {"s0": WeakLabels(30, 45, frozenset({0, 1}), (Point(29, 44, 0), Point(10, 30, 1)))}
    )
    dataset = SegmentationDataset(info, "train", "points", size=(10, 15), weak_labels=weak)
    label = dataset[0]["label"].numpy()
    assert label.shape == (10, 15)
    assert {(int(r), int(c)) for r, c in np.argwhere(label != UNLABELED)} == {(9, 14), (3, 10)}
    assert label[9, 14] == 0 and label[3, 10] == 1


def test_weak_labels_for_other_classes_or_sizes_are_refused(tmp_path):
    root = write_coded_dataset(tmp_path / "coded", n=1)
    info = load_dataset_info(root)
    with pytest.raises(DatasetError, match="weak labels are for classes"):
        SegmentationDataset(info, "train", "points", weak_labels=WeakLabelSet(("a", "b"), {}))
    wrong = WeakLabelSet(info.classes, {"s0": WeakLabels(20, 20, points=(Point(1, 1, 0),))})
    with pytest.raises(DatasetError, match=r"'s0' are for a 20x20 image, the image is 30x45"):
        SegmentationDataset(info, "train", "points", weak_labels=wrong)[0]


def test_parse_supervision():
    assert parse_supervision("points+scribbles") == ("points", "scribbles")
    with pytest.raises(DatasetError, match="do not combine"):
        parse_supervision("dense+points")
    with pytest.raises(DatasetError, match="unknown supervision 'clicks'"):
        parse_supervision("clicks")


# ----------------------------------------------------------------------------- augmentation


def aligned_fraction(item: dict, num_classes: int = 3) -> tuple[float, int]:
    """Share of labelled, pure-coloured pixels whose colour matches their label, and how many there are."""
    cls, pure = decode(item["image"])
    label = item["label"].numpy()
    sel = pure & (label < num_classes)
    return float((cls[sel] == label[sel]).mean()), int(sel.sum())


def block_labels(info) -> WeakLabelSet:
    """Hand-made weak labels that lie well inside the blocks of :func:`coded_mask`."""
    labels = {}
    for i in range(3):
        shift = 2 * i
        labels[f"s{i}"] = WeakLabels(
            30, 45, frozenset({0, 1, 2}),
            points=(Point(12, 33 + shift // 2, 1, 2.0), Point(22, 8, 2, 2.0), Point(24, 35, 0, 2.0)),
            scribbles=(Scribble(((8, 29 + shift), (17, 38)), 1, 3.0), Scribble(((19, 5), (25, 12)), 2, 3.0)),
            boxes=(Box(5, 26 + shift, 20, 41, 1), Box(16, 3, 28, 15 + shift, 2)),
        )  # fmt: skip
    return WeakLabelSet(info.classes, labels)


@pytest.mark.parametrize("supervision", ["dense", "points", "scribbles", "boxes", "points+scribbles+boxes"])
def test_augmentation_moves_image_and_label_together(coded_root, supervision):
    info = load_dataset_info(coded_root)
    dataset = SegmentationDataset(
        info, "train", supervision, augment=Augment(hflip=True, scale_min=0.6, scale_max=1.7),
        weak_labels=block_labels(info),
    )  # fmt: skip
    torch.manual_seed(0)
    checked = 0
    for _ in range(4):
        for i in range(len(dataset)):
            agree, n = aligned_fraction(dataset[i])
            assert agree == 1.0
            checked += n
    assert checked > 300


def test_augmented_simulated_points_stay_on_their_class(coded_root):
    info = load_dataset_info(coded_root)
    simulation = SimulationConfig(points_per_region=4, point_radius=1.5)
    dataset = SegmentationDataset(info, "train", "points", augment=Augment(True, 0.6, 1.7), simulation=simulation)
    torch.manual_seed(0)
    for _ in range(4):
        for i in range(len(dataset)):
            agree, n = aligned_fraction(dataset[i])
            assert agree == 1.0 and n > 0


def test_flip_mirrors_the_label(coded_root):
    info = load_dataset_info(coded_root)
    plain = SegmentationDataset(info, "train", "points", simulation=SimulationConfig(points_per_region=3))
    flipping = SegmentationDataset(info, "train", "points", augment=Augment(hflip=True), simulation=plain.simulation)
    original = plain[1]["label"].numpy()
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        label = flipping[1]["label"].numpy()
        flipped = np.array_equal(label, original[:, ::-1])
        assert flipped or np.array_equal(label, original)
        seen.add(flipped)
    assert seen == {True, False}  # both outcomes of the coin occur


@pytest.mark.parametrize("supervision", ["dense", "points"])
def test_crop_padding_is_ignore(coded_root, supervision):
    info = load_dataset_info(coded_root)
    dataset = SegmentationDataset(
        info, "train", supervision, augment=Augment(hflip=False, scale_min=0.5, scale_max=0.5)
    )
    torch.manual_seed(1)
    for i in range(len(dataset)):
        item = dataset[i]
        padding = (raw_pixels(item["image"]) < 1).all(-1)  # the image is padded with black
        label = item["label"].numpy()
        assert 0 < padding.mean() < 1
        np.testing.assert_array_equal(label[padding], IGNORE)
        if supervision != "dense":  # weak targets never read GT void: only padding is ignored
            np.testing.assert_array_equal(label == IGNORE, padding)


# ----------------------------------------------------------------------------- class balance


def test_median_frequency_weights_follow_the_labelled_pixels(coded_root):
    dense = SegmentationDataset(load_dataset_info(coded_root), "train")
    counts = np.zeros(3)
    for i in range(len(dense)):
        counts += np.bincount(dense._base(i).label[dense._base(i).label < 3].ravel(), minlength=3)
    freq = counts / counts.sum()  # every class is in every image: f(c) is its share of all labelled pixels
    assert np.allclose(median_frequency_weights(dense), np.median(freq) / freq, atol=1e-3)
    points = SegmentationDataset(load_dataset_info(coded_root), "train", "points")
    assert np.allclose(median_frequency_weights(points), 1.0)  # one point per region: balanced already

"""The real datasets in ../shared/datasets read through the same code (skipped when they are absent)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import real_dataset
from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import UNLABELED, SimulationConfig, rasterize, simulate

pytestmark = pytest.mark.slow

EXPECTED = {"camvid": (11, (360, 480)), "msrc21": (21, None)}  # classes, image size when fixed
SAMPLE = 4  # images read per split


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_json_loads_with_its_protocols(name):
    info = load_dataset_info(real_dataset(name))
    assert info.num_classes == EXPECTED[name][0] and len(info.colors) == info.num_classes
    assert {"train", "val"} <= set(info.splits)
    for protocol in info.protocols:
        split = ClassSplit.from_protocol(info.classes, info.protocols, protocol)
        assert split.novel and split.base


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_sample_of_images_reads_and_validates(name):
    info = load_dataset_info(real_dataset(name))
    for split in ("train", "val"):
        names = list_split(info, split)
        assert len(names) == info.splits[split]
        for image_name in names[:: max(1, len(names) // SAMPLE)][:SAMPLE]:
            image = read_image(info.image_path(split, image_name))
            mask = read_mask(info.mask_path(split, image_name), info, shape=image.shape[:2])
            assert image.dtype == np.uint8 and image.shape[2] == 3
            if EXPECTED[name][1]:
                assert image.shape[:2] == EXPECTED[name][1]
            labelled = mask[mask != 255]
            assert labelled.size > 0 and labelled.max() < info.num_classes


def test_simulated_points_on_camvid_lie_inside_their_regions():
    info = load_dataset_info(real_dataset("camvid"))
    name = list_split(info, "train")[0]
    mask = read_mask(info.mask_path("train", name), info)
    weak = simulate(mask, ["points"], SimulationConfig(points_per_region=2), key=name, num_classes=info.num_classes)
    assert len(weak.points) >= 30  # a road scene has dozens of regions
    for p in weak.points:
        r, c = int(p.row), int(p.col)
        assert mask[r, c] == p.cls
        regions, _ = ndimage.label(mask == p.cls, structure=np.ones((3, 3)))
        depth = ndimage.distance_transform_edt(np.pad(regions == regions[r, c], 1))[1:-1, 1:-1]
        assert depth[r, c] >= 0.5 * depth.max()  # interior: away from the region's edge and the image's
    label = rasterize(weak)
    assert set(zip(*np.nonzero(label != UNLABELED))) == {(int(p.row), int(p.col)) for p in weak.points}


def test_camvid_trains_at_a_reduced_size_with_points():
    info = load_dataset_info(real_dataset("camvid"))
    dataset = SegmentationDataset(info, "train", "points", size=(120, 160), limit=3)
    item = dataset[0]
    assert item["image"].shape == (3, 120, 160) and item["label"].shape == (120, 160)
    labelled = item["label"][item["label"] != UNLABELED]
    assert 10 <= labelled.numel() and (labelled < info.num_classes).all()
    pixels = {(round(p.row), round(p.col)) for p in dataset.weak(0).points}
    assert len(pixels) == (item["label"] != UNLABELED).sum()  # every point survives the 3x downscale

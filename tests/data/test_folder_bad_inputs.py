"""Bad inputs of workbench.data.folder: images, masks and dataset.json a user can get wrong, and
files that are not what their names say (a FIFO, a name that is not UTF-8, a decompression bomb)."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.bad_inputs import CONVERTIBLE, CORRUPT, RGB, _png16_rgb, _tiny
from workbench.cli import main
from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import DatasetError, list_split, load_dataset_info, read_image, read_mask, validate_dataset
from workbench.labels.weak_labels import (
    IGNORE,
    UNLABELED,
    load_weak_labels,
)
from workbench.methods import partial_ce
from workbench.modeling.losses import sparse_cross_entropy
from workbench.train.config import TrainConfig
from workbench.train.loop import train


def _edit_json(root: Path, **changes) -> Path:
    path = root / "dataset.json"
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DELETE:
            del doc[key]
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))
    return path


_DELETE = object()


@pytest.mark.parametrize("kind", CONVERTIBLE)
def test_images_that_need_converting_are_read_as_rgb(tmp_path, kind):
    data, suffix, expected = CONVERTIBLE[kind]
    path = tmp_path / f"image{suffix}"
    path.write_bytes(data)
    image = read_image(path)
    assert image.shape == (20, 24, 3) and image.dtype == np.uint8
    if expected is not None:
        np.testing.assert_array_equal(image, expected)
    if kind.startswith("16-bit gray"):  # scaled to the full 8-bit range, not truncated to the low byte
        assert image.max() == 255 and np.corrcoef(image[..., 0].ravel(), RGB[..., 0].ravel())[0, 1] > 0.99


@pytest.mark.parametrize("kind", CORRUPT)
def test_corrupt_images_name_the_file_and_the_fix(tmp_path, kind):
    path = tmp_path / "broken.png"
    path.write_bytes(CORRUPT[kind])
    with pytest.raises(DatasetError, match=r"broken\.png: unreadable or corrupt image .*re-export or remove it"):
        read_image(path)


def test_a_missing_image_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.png: image file missing"):
        read_image(tmp_path / "nope.png")


def test_a_dataset_of_grayscale_rgba_and_16_bit_images_trains(dataset):
    info = load_dataset_info(dataset)
    names = list_split(info, "train")
    for name, kind in zip(names, ["grayscale", "rgba", "16-bit gray", "16-bit rgb"]):
        rgb = read_image(info.image_path("train", name))
        if kind == "grayscale":
            Image.fromarray(rgb[..., 0]).save(info.image_path("train", name))
        elif kind == "rgba":
            Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(
                info.image_path("train", name)
            )
        elif kind == "16-bit gray":
            Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(info.image_path("train", name))
        else:
            info.image_path("train", name).write_bytes(_png16_rgb(rgb))
    assert validate_dataset(dataset) == []
    ds = SegmentationDataset(info, "train", "points", limit=4)
    for i in range(4):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and torch.isfinite(item["image"]).all()


def test_a_mask_of_another_size_names_both_sizes(dataset):
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[0]
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(info.mask_path("train", name))
    with pytest.raises(DatasetError, match=rf"{name}\.png: mask is 16x32 but its image is 32x32"):
        read_mask(info.mask_path("train", name), info, shape=(32, 32))
    assert any("16x32" in p for p in validate_dataset(dataset))


@pytest.mark.parametrize("bad_value", [8, 100, 254])
def test_labels_out_of_range_are_listed_with_the_fix(dataset, bad_value):
    info = load_dataset_info(dataset)
    path = info.mask_path("train", list_split(info, "train")[0])
    mask = np.asarray(Image.open(path)).copy()
    mask[0, :3] = bad_value
    Image.fromarray(mask).save(path)
    with pytest.raises(DatasetError, match=rf"label values \[{bad_value}\] are outside the 8 classes.*fix the mask"):
        read_mask(path, info)


def test_a_colour_mask_is_refused_with_the_converter_named(dataset):
    info = load_dataset_info(dataset)
    path = info.mask_path("train", list_split(info, "train")[0])
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    with pytest.raises(DatasetError, match="color mask.*workbench data convert"):
        read_mask(path, info)


def test_a_missing_mask_is_named(dataset):
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[0]
    info.mask_path("train", name).unlink()
    with pytest.raises(DatasetError, match=rf"1 mask\(s\) missing, e.g. {name}\.png.*all-void mask"):
        list_split(info, "train")


def test_an_all_void_mask_gives_zero_loss_not_nan(dataset):
    info = load_dataset_info(dataset)
    for name in list_split(info, "train"):
        Image.fromarray(np.full((32, 32), IGNORE, np.uint8)).save(info.mask_path("train", name))
    dense = SegmentationDataset(info, "train", "dense", limit=2)
    assert (dense[0]["label"] == IGNORE).all() and dense[0]["tags"].sum() == 0
    points = SegmentationDataset(info, "train", "points", limit=2)
    assert (points[0]["label"] == UNLABELED).all()
    logits = torch.randn(2, 8, 32, 32, requires_grad=True)
    loss = sparse_cross_entropy(logits, torch.stack([dense[0]["label"], dense[1]["label"]]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_training_on_all_void_masks_runs_with_zero_loss(dataset, tmp_path):
    info = load_dataset_info(dataset)
    for name in list_split(info, "train")[:4]:
        Image.fromarray(np.full((32, 32), IGNORE, np.uint8)).save(info.mask_path("train", name))
    records = []
    config = TrainConfig(
        data=str(dataset), out=str(tmp_path / "run"), epochs=1, batch_size=4, limit_train=4, limit_val=2, log_every=1
    )
    summary = train(partial_ce, partial_ce.Config(), config, on_log=records.append)
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(loss == 0.0 for loss in losses)
    assert math.isfinite(summary["pixel_acc"])


@pytest.mark.parametrize("key", ["name", "classes", "colors", "ignore_index", "splits"])
def test_dataset_json_missing_keys_are_named(dataset, key):
    _edit_json(dataset, **{key: _DELETE})
    with pytest.raises(DatasetError, match=rf"dataset\.json: missing key '{key}'.*add it"):
        load_dataset_info(dataset)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"classes": "sky,grass"}, "'classes' must be a list"),
        ({"classes": ["sky", "sky"]}, "'classes' must be a non-empty list of distinct names"),
        ({"classes": []}, "'classes' must be a non-empty list"),
        ({"colors": [[0, 0, 0]]}, r"'colors' must be 8 \[r, g, b\] lists"),
        ({"colors": [[0, 0, 300]] * 8}, r"'colors' must be 8 \[r, g, b\] lists of ints 0..255"),
        ({"ignore_index": "255"}, "'ignore_index' must be a int, got str"),
        ({"ignore_index": True}, "'ignore_index' must be a int, got bool"),
        ({"ignore_index": 3}, r"'ignore_index' 3 must be in 8..255 \(not a class index\)"),
        ({"splits": ["train", "val"]}, "'splits' must be a dict, got list"),
        ({"splits": {"train": "many"}}, "'splits' must map split names to image counts"),
        ({"image_ext": 5}, "'image_ext' must be a string"),
        ({"weak_shot_protocols": ["objects2"]}, "'weak_shot_protocols' must be an object"),
        ({"weak_shot_protocols": {"p": {"novel": []}}}, r"weak_shot_protocols\.p must be \{'novel'"),
        ({"weak_shot_protocols": {"p": {"novel": ["unicorn"]}}}, r"names unknown classes \['unicorn'\]; known"),
    ],
    ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else None,
)
def test_dataset_json_wrong_values_are_explained(dataset, changes, message):
    _edit_json(dataset, **changes)
    with pytest.raises(DatasetError, match=message):
        load_dataset_info(dataset)


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ("[1, 2]", "must hold a JSON object")])
def test_dataset_json_that_is_not_an_object(dataset, text, message):
    (dataset / "dataset.json").write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset_info(dataset)


def test_a_folder_without_dataset_json(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset\.json: missing; a dataset folder needs a dataset\.json"):
        load_dataset_info(tmp_path)


def test_a_fifo_named_like_an_image_does_not_hang_validate(dataset, capsys):
    info = load_dataset_info(dataset)
    os.mkfifo(info.image_path("train", "zz_fifo"))
    import signal

    def hung(*_):
        raise TimeoutError("validate blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)  # a regression would block forever in open(); fail instead
    try:
        problems = validate_dataset(dataset)
        with pytest.raises(DatasetError, match="not a regular file"):
            read_image(info.image_path("train", "zz_fifo"))
        with pytest.warns(UserWarning, match="not a regular file"):
            names = list_split(info, "train")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert any("zz_fifo.png: not a regular file" in p and "skipped" in p for p in problems)
    assert "zz_fifo" not in names


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_message(dataset, tmp_path, capsys):
    info = load_dataset_info(dataset)
    first = list_split(info, "train")[0]
    bad = os.fsdecode(b"caf\xe9")  # latin-1 bytes: a surrogate-escaped str
    shutil.copy(info.image_path("train", first), info.image_path("train", bad))
    shutil.copy(info.mask_path("train", first), info.mask_path("train", bad))
    problems = validate_dataset(dataset)
    assert any("not valid UTF-8" in p for p in problems)
    assert main(["simulate", "--data", str(dataset), "--kind", "points", "--out", str(tmp_path / "w.json")]) == 0
    assert bad not in load_weak_labels(tmp_path / "w.json").labels


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (1-bit gray) with one empty IDAT: built in
    microseconds, where encoding a real 100000x100000 image takes a minute."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _bomb_dataset(dataset: Path) -> tuple[Path, Path]:
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[0]
    info.image_path("train", name).write_bytes(_png_claiming(100_000, 100_000))
    return info.image_path("train", name), dataset


def test_a_decompression_bomb_is_refused_in_validate_train_and_predict(dataset, run_copy, tmp_path, capsys):
    bomb, _ = _bomb_dataset(dataset)
    problems = validate_dataset(dataset)
    assert any(f"{bomb}: refused as a decompression bomb" in p for p in problems)
    with pytest.raises(DatasetError, match="decompression bomb"):
        train(partial_ce, partial_ce.Config(), _tiny(dataset, tmp_path / "new", limit_train=None))
    assert main(["predict", "--checkpoint", str(run_copy), "--images", str(bomb), "--out", str(tmp_path / "p")]) == 2
    assert "decompression bomb" in capsys.readouterr().err
    smaller = tmp_path / "big.png"  # under PIL's own limit, over ours: refused from the header, before decoding
    smaller.write_bytes(_png_claiming(12_000, 10_000))
    with pytest.raises(DatasetError, match="12000x10000 pixels, over the limit of 89 megapixels"):
        read_image(smaller)


def test_a_split_with_other_images_than_dataset_json_counts_is_refused_by_train(dataset, tmp_path, capsys):
    """Issue 25: `data validate` reported the mismatch, `train` trained on the partial split without a word."""
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[-1]
    info.image_path("train", name).unlink()
    info.mask_path("train", name).unlink()
    out = tmp_path / "run"
    argv = ["train", "--method", "partial_ce", "--data", str(dataset), "--out", str(out), "--epochs", "1"]
    assert main(argv) == 2
    assert f"splits.train says {info.splits['train']} images, the folder has {info.splits['train'] - 1}" in (
        capsys.readouterr().err
    )
    assert not out.exists()

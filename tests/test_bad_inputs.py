"""The bad-input catalogue: every input a user, a file or the dashboard can get wrong.

Each case either works (images that only need converting, empty masks) or raises an error of the
workbench's own types whose message names the thing and the fix, and leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.annotations import AnnotationError, AnnotationStore
from workbench.checkpoint import MODEL_FILE, STATE_FILE, CheckpointError
from workbench.cli import main
from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import DatasetError, list_split, load_dataset_info, read_image, read_mask, validate_dataset
from workbench.engine import ConfigError, TrainConfig, check_numbers, load_run, train
from workbench.io import atomic_path, save_index_png
from workbench.losses import sparse_cross_entropy
from workbench.methods import METHODS, partial_ce
from workbench.security import UnsafeInputError, bind_address, check_upload, safe_path
from workbench.splits import SplitError
from workbench.weak_labels import (
    IGNORE,
    UNLABELED,
    Box,
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    rasterize,
    save_weak_labels,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files an interrupted atomic write would leave."""
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def dataset(synthetic_root, tmp_path) -> Path:
    """A private copy of the tiny synthetic dataset to break."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


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


# ----------------------------------------------------------------------------- images


def _png16_rgb(rgb: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (PIL cannot write one)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + (rgb[r].astype(">u2") * 257).tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


CONVERTIBLE = {  # name -> (file bytes, suffix, pixels expected exactly or None)
    "grayscale": (_encode(Image.fromarray(RGB[..., 0])), ".png", np.repeat(RGB[..., :1], 3, axis=2)),
    "grayscale+alpha": (_encode(Image.fromarray(RGB[..., 0]).convert("LA")), ".png", np.repeat(RGB[..., :1], 3, 2)),
    "rgba": (_encode(Image.fromarray(np.dstack([RGB, RGB[..., :1]]))), ".png", RGB),
    "palette": (_encode(Image.fromarray(RGB).convert("P")), ".png", None),
    "1-bit": (_encode(Image.fromarray(RGB[..., 0] > 127)), ".png", None),
    "16-bit gray": (_encode(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)), ".png", None),
    "16-bit rgb": (_png16_rgb(RGB), ".png", RGB),
    "32-bit float": (_encode(Image.fromarray(RGB[..., 0].astype(np.float32)), "TIFF"), ".tif", None),
    "cmyk jpeg": (_encode(Image.fromarray(RGB).convert("CMYK"), "JPEG"), ".jpg", None),
}
_good_png = _encode(Image.fromarray(RGB))
_good_jpg = _encode(Image.fromarray(RGB), "JPEG")
CORRUPT = {
    "truncated png": _good_png[: len(_good_png) // 2],
    "truncated jpeg": _good_jpg[: len(_good_jpg) // 2],
    "not an image": b"GIF? no, just text " * 20,
    "empty file": b"",
}


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


# ----------------------------------------------------------------------------- masks


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


# ----------------------------------------------------------------------------- dataset.json


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


# ----------------------------------------------------------------------------- protocols and class names


@pytest.mark.parametrize(
    "setting, message",
    [
        ("--protocol=nonexistent", r"unknown weak-shot protocol 'nonexistent'; dataset\.json defines"),
        ("--novel=disc,unicorn", r"unknown class name\(s\) \['unicorn'\]; the dataset's classes are"),
    ],
)
def test_unknown_protocols_and_class_names_stop_training_before_it_writes(
    synthetic_root, tmp_path, capsys, setting, message
):
    out = tmp_path / "run"
    args = ["train", "--method", "partial_ce", "--data", str(synthetic_root), "--out", str(out), "--epochs", "1"]
    assert main([*args, setting]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_class_split_errors_are_split_errors():
    from workbench.splits import ClassSplit

    with pytest.raises(SplitError, match="every class is novel"):
        ClassSplit(("a", "b"), (0, 1))


# ----------------------------------------------------------------------------- weak labels


@pytest.mark.parametrize(
    "weak, message",
    [
        (WeakLabels(10, 10, points=(Point(3, 12, 1),)), r"point 0 at \(row=3, col=12\) is off the 10x10 image"),
        (WeakLabels(10, 10, points=(Point(-2, 1, 1),)), "is off the 10x10 image; pixel centres run 0..9"),
        (WeakLabels(10, 10, points=(Point(1, 1, 9),)), "point 0 has class 9, outside 0..2; use a class index"),
        (WeakLabels(10, 10, points=(Point(1, 1, 1, -1.0),)), "point 0 radius must be >= 0"),
        (
            WeakLabels(10, 10, scribbles=(Scribble(((1, 1),), 1),)),
            "scribble 0 has 1 vertex; a scribble needs at least 2",
        ),
        (WeakLabels(10, 10, scribbles=(Scribble((), 1),)), "scribble 0 has 0 vertex"),
        (WeakLabels(10, 10, scribbles=(Scribble(((1, 1), (float("nan"), 2)), 1),)), "non-finite vertex"),
        (WeakLabels(10, 10, scribbles=(Scribble(((1, 1), (2, 2)), 1, 0.0),)), "scribble 0 width must be > 0"),
        (WeakLabels(10, 10, boxes=(Box(5, 5, 5, 8, 1),)), r"box 0 \(5,5\)-\(5,8\) is empty; row1>row0"),
        (WeakLabels(0, 10), "image size must be positive"),
    ],
)
def test_bad_weak_labels_are_named(weak, message):
    with pytest.raises(WeakLabelError, match=message):
        weak.validate(3)


def test_a_zero_length_scribble_with_two_equal_vertices_is_a_dot_of_its_width():
    weak = WeakLabels(10, 10, scribbles=(Scribble(((4, 4), (4, 4)), 1, 3.0),)).validate(3)
    label = rasterize(weak)
    assert label[4, 4] == 1 and (label == 1).sum() == 9  # the pixel centres within 1.5 px


def test_weak_labels_for_other_classes_or_sizes_are_refused(dataset, tmp_path):
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[0]
    with pytest.raises(DatasetError, match="weak labels are for classes.*simulate or export them for this dataset"):
        SegmentationDataset(info, "train", "points", weak_labels=WeakLabelSet(("a", "b"), {}))
    wrong_size = WeakLabelSet(info.classes, {name: WeakLabels(16, 16, points=(Point(1, 1, 0),))})
    ds = SegmentationDataset(info, "train", "points", weak_labels=wrong_size, limit=1)
    with pytest.raises(DatasetError, match=f"weak labels of '{name}' are for a 16x16 image, the image is 32x32"):
        ds[0]


# ----------------------------------------------------------------------------- configuration values


@pytest.mark.parametrize(
    "key, value",
    [
        ("lr", float("nan")),
        ("lr", -1e-3),
        ("lr", float("inf")),
        ("weight_decay", -1.0),
        ("epochs", 0),
        ("epochs", float("nan")),
        ("batch_size", 2.5),
        ("scale_min", 0.0),
        ("point_radius", -1.0),
        ("scribble_fraction", float("nan")),
        ("points_per_region", 0),
        ("limit_train", -1),
        ("seed", -1),
        ("image_size", (4, 4)),
    ],
)
def test_train_config_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{key: value})


def _float_fields():
    for name, method in METHODS.items():
        for f in dataclasses.fields(method.Config):
            if isinstance(getattr(method.Config(), f.name), float):
                yield pytest.param(method, f.name, id=f"{name}.{f.name}")


@pytest.mark.parametrize("method, key", list(_float_fields()))
def test_nan_in_any_method_config_is_refused_naming_the_key(method, key):
    """Range checks such as ``x > 0`` let NaN through; ``train`` checks every float before it writes."""
    with pytest.raises(ValueError, match=key):
        check_numbers(dataclasses.replace(method.Config(), **{key: float("nan")}))


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


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def trained_run(synthetic_root, module_dir) -> Path:
    out = module_dir / "run"
    config = TrainConfig(data=str(synthetic_root), out=str(out), epochs=1, batch_size=4, limit_train=4, limit_val=2)
    train(partial_ce, partial_ce.Config(), config)
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """The run's config and weights (the optimizer state is large and no test here needs the real one)."""
    run = tmp_path / "run"
    (run / MODEL_FILE).parent.mkdir(parents=True)
    shutil.copy(trained_run / "config.json", run / "config.json")
    shutil.copy(trained_run / MODEL_FILE, run / MODEL_FILE)
    return run


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


def test_cli_eval_of_a_broken_checkpoint_exits_2(run_copy, synthetic_root, capsys):
    (run_copy / MODEL_FILE).write_bytes(b"\x00" * 100)
    assert main(["eval", "--checkpoint", str(run_copy), "--data", str(synthetic_root), "--device", "cpu"]) == 2
    assert "unreadable checkpoint" in capsys.readouterr().err


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


# ----------------------------------------------------------------------------- what the dashboard may send the store

SIZE = (16, 20)


@pytest.fixture
def store(tmp_path):
    with AnnotationStore(tmp_path / "a.sqlite", ("sky", "grass", "disc")) as s:
        s.add("im", Point(1, 1, 0), SIZE)
        yield s


@pytest.mark.parametrize(
    "item, message",
    [
        (Point(1, 1, 99), r"class 99 is not a class index 0..2"),
        (Point(1, 1, -1), r"class -1 is not a class index"),
        (Point(1, 1, 1.5), r"class 1.5 is not a class index"),
        (Point(1, 1, True), r"class True is not a class index"),
        (Point(1, 1, "1"), r"class '1' is not a class index"),
        (Point(40, 1, 0), r"point 0 at \(row=40.0, col=1.0\) is off the 16x20 image"),
        (Point(1, -3, 0), r"off the 16x20 image"),
        (Point("12", 1, 0), r"point row must be a number, got str '12'"),
        (Point(float("nan"), 1, 0), r"point row must be finite"),
        (Point(1, float("inf"), 0), r"point col must be finite"),
        (Point(1, 1, 0, -2.0), r"radius must be >= 0"),
        (Scribble(((1, 1),), 0), r"scribble 0 has 1 vertex"),
        (Scribble((), 0), r"scribble 0 has 0 vertex"),
        (Scribble("abc", 0), r"scribble path must be a list of \(row, col\) pairs"),
        (Scribble(((1, 1), (2, 2)), 0, 0.0), r"scribble 0 width must be > 0"),
        (Scribble(((1, 1), (2, None)), 0), r"scribble col must be a number"),
        (Box(5, 5, 2, 8, 0), r"box 0 .* is empty"),
        (Box(0, 0, 30, 8, 0), r"reaches off the 16x20 image"),
        ({"row": 1, "col": 1, "cls": 0}, r"expected a Point, Scribble or Box, got dict"),
        (None, r"expected a Point, Scribble or Box, got NoneType"),
    ],
    ids=str,
)
def test_bad_items_from_the_dashboard_are_refused_and_change_nothing(store, item, message):
    before = store.history("im"), store.items("im")
    with pytest.raises(WeakLabelError, match=message):
        store.add("im", item, SIZE)
    item_id = next(iter(store.items("im")))
    with pytest.raises(WeakLabelError, match=message):
        store.replace("im", item_id, item)
    assert (store.history("im"), store.items("im")) == before


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.add("", Point(1, 1, 0), SIZE), "image name must be a non-empty string"),
        (lambda s: s.add(None, Point(1, 1, 0), SIZE), "image name must be a non-empty string"),
        (lambda s: s.add(5, Point(1, 1, 0), SIZE), "image name must be a non-empty string"),
        (lambda s: s.add("new", Point(1, 1, 0), (0, 10)), r"size must be \(height, width\) of positive ints"),
        (lambda s: s.add("new", Point(1, 1, 0), ("16", 20)), r"size must be \(height, width\)"),
        (lambda s: s.add("new", Point(1, 1, 0), (16.5, 20)), r"size must be \(height, width\)"),
        (lambda s: s.add("new", Point(1, 1, 0), None), r"size must be \(height, width\)"),
        (lambda s: s.add("im", Point(1, 1, 0), (32, 32)), "was annotated at 16x20, this edit says 32x32"),
        (lambda s: s.replace("im", 999, Point(1, 1, 0)), "has no item 999"),
        (lambda s: s.replace("im", "1", Point(1, 1, 0)), "has no item '1'"),
        (lambda s: s.remove("im", 999), "has no item 999"),
        (lambda s: s.remove("other", 1), "'other' has no item 1"),
        (lambda s: s.replace("other", 1, Point(1, 1, 0)), "'other' has no annotations yet"),
        (lambda s: s.set_tags("im", [0, 7], SIZE), "tag: class 7 is not a class index"),
        (lambda s: s.set_tags("im", "01", SIZE), "tags must be a list of class indices"),
        (lambda s: s.weak_labels("never-annotated"), "'never-annotated' has no annotations"),
        (lambda s: s.undo(["im"]), "image name must be a non-empty string"),
    ],
    ids=[
        "empty name",
        "None name",
        "int name",
        "zero size",
        "str size",
        "float size",
        "no size",
        "other size",
        "replace unknown id",
        "replace str id",
        "remove unknown id",
        "remove item of other image",
        "replace on unknown image",
        "tag out of range",
        "tags as string",
        "labels of unknown image",
        "undo list name",
    ],  # fmt: skip
)
def test_bad_calls_from_the_dashboard_are_refused_and_change_nothing(store, call, message):
    before = store.history("im"), store.items("im"), store.images()
    with pytest.raises(WeakLabelError, match=message):
        call(store)
    assert (store.history("im"), store.items("im"), store.images()) == before


def test_a_file_that_is_not_a_store_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"these are my notes, not a database" * 50)
    before = path.read_bytes()
    with pytest.raises(AnnotationError, match="not a readable annotation store.*a new file name"):
        AnnotationStore(path, ("a",))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]


@pytest.mark.parametrize("classes", [[], "sky", [1, 2], ["a", ""]])
def test_a_store_needs_class_names(tmp_path, classes):
    with pytest.raises(AnnotationError, match="classes must be a non-empty list of class names"):
        AnnotationStore(tmp_path / "a.sqlite", classes)


def test_cli_import_of_a_bad_file_leaves_the_store_as_it_was(tmp_path, capsys):
    store_path = tmp_path / "a.sqlite"
    with AnnotationStore(store_path, ("a", "b")) as s:
        s.add("x", Point(1, 1, 0), (8, 8))
    good = WeakLabels(8, 8, points=(Point(2, 2, 1),))
    bad = WeakLabels(4, 4, points=(Point(1, 1, 0),))  # "x" is 8x8 in the store: the import must not half-land
    save_weak_labels(tmp_path / "labels.json", WeakLabelSet(("a", "b"), {"new": good, "x": bad}))
    assert main(["annotations", "import", "--store", str(store_path), "--json", str(tmp_path / "labels.json")]) == 2
    assert "annotated at 8x8" in capsys.readouterr().err
    with AnnotationStore(store_path, ("a", "b")) as s:
        assert s.images() == ["x"] and len(s.history("x")) == 1
    (tmp_path / "junk.json").write_text("{")
    missing_store = tmp_path / "never.sqlite"
    assert main(["annotations", "import", "--store", str(missing_store), "--json", str(tmp_path / "junk.json")]) == 2
    assert not missing_store.exists()


# ----------------------------------------------------------------------------- nothing half-written


def test_a_failed_atomic_write_leaves_neither_file_nor_temp(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "report.json") as tmp:
        tmp.write_text('{"half": ')
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"index mask must be \(H, W\)"):
        save_index_png(tmp_path / "mask.png", np.zeros((4, 4, 3), np.uint8), [[0, 0, 0]])
    assert list(tmp_path.iterdir()) == []


def test_training_on_a_corrupt_image_names_it_and_leaves_no_checkpoint(dataset, tmp_path):
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[1]
    info.image_path("train", name).write_bytes(CORRUPT["truncated png"])
    config = TrainConfig(data=str(dataset), out=str(tmp_path / "run"), epochs=1, batch_size=4, limit_train=4)
    with pytest.raises(DatasetError, match=rf"{name}\.png: unreadable or corrupt image"):
        train(partial_ce, partial_ce.Config(), config)
    assert not (tmp_path / "run" / MODEL_FILE).exists() and not _leftovers(tmp_path)


# ----------------------------------------------------------------------------- dashboard security helpers


def test_the_dashboard_listens_on_localhost_unless_told_otherwise():
    assert bind_address() == "127.0.0.1" and bind_address(expose=True) == "0.0.0.0"


@pytest.mark.parametrize(
    "user_path",
    ["../secrets.txt", "images/../../secrets.txt", "/etc/passwd", "link_out/secrets.txt", "a\0b", "", "   ", 5, None],
    ids=["dotdot", "nested dotdot", "absolute", "symlink out", "nul", "empty", "blank", "int", "None"],
)
def test_paths_from_the_ui_cannot_leave_the_data_root(tmp_path, user_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (tmp_path / "secrets.txt").write_text("no")
    (root / "link_out").symlink_to(tmp_path)
    with pytest.raises(UnsafeInputError):
        safe_path(root, user_path)


def test_paths_inside_the_data_root_are_allowed(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "link_in").symlink_to(root / "images")
    assert safe_path(root, "images/a.png") == (root / "images" / "a.png").resolve()
    assert safe_path(root, str(root / "images")) == (root / "images").resolve()
    assert safe_path(root, "link_in/b.png") == (root / "images" / "b.png").resolve()
    assert safe_path(root, "images/../runs/new.sqlite") == (root / "runs" / "new.sqlite").resolve()


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: a decompression bomb's header."""
    return _encode(Image.new("1", (width, height)))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "upload is empty"),
        (_good_png * 3, r"upload is \d+ KiB, over the \d+ KiB limit; downscale or recompress"),
        (CORRUPT["truncated png"], "not a readable image"),
        (CORRUPT["not an image"], "not a readable image"),
        (_encode(Image.fromarray(RGB), "GIF"), "not a readable image.*PNG, JPEG"),
        (_png_header_only(9000, 10), r"9000x10 pixels; at most 8192 per side"),
        (_png_header_only(7000, 7000), r"7000x7000 pixels; .*40 megapixels"),
        ("a string", "upload must be bytes, got str"),
    ],
    ids=["empty", "too large", "truncated", "not an image", "gif", "too wide", "too many pixels", "str"],
)
def test_bad_uploads_are_refused(data, message):
    limit = len(_good_png) * 2 if "limit" in message else 20 * 2**20
    with pytest.raises(UnsafeInputError, match=message):
        check_upload(data, max_bytes=limit)


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "16-bit gray", "16-bit rgb", "palette"])
def test_uploads_that_need_converting_work(kind):
    image = check_upload(CONVERTIBLE[kind][0])
    assert image.shape == (20, 24, 3) and image.dtype == np.uint8


# ============================================================================= issue 13: run ownership, resume, hangs
# Each case of the adversarial report: the clear error (or the right behaviour) it now gets.

from workbench import checkpoint as ckpt  # noqa: E402
from workbench.engine import TrainingError  # noqa: E402
from workbench.io import remove_stale_temps  # noqa: E402
from workbench.models import ModelError  # noqa: E402
from workbench.weak_labels import from_json_dict, load_weak_labels, parse_json_text  # noqa: E402


def _tiny(data: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(data=str(data), out=str(out), epochs=1, batch_size=4, limit_train=4, limit_val=2, log_every=1)
    return dataclasses.replace(base, **changes)


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


def test_a_nan_loss_stops_training_naming_the_step_and_the_cause(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"NaN or infinite .*epoch 1\).*lr=1e\+30 is far too high"):
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out, lr=1e30, epochs=2, limit_train=8))
    assert not (out / STATE_FILE).exists() and not (out / "report.json").exists(), "a NaN model was saved"
    assert all(math.isfinite(r.get("loss", 0.0)) for r in ckpt.read_jsonl(out / "metrics.jsonl")), "NaN was logged"
    args = ["train", "--method", "partial_ce", "--data", str(synthetic_root), "--out", str(tmp_path / "cli")]
    assert main([*args, "--lr=1e30", "--epochs=1", "--batch_size=4", "--limit_train=8"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"at step \d+ \(epoch 1\)", err) and "Traceback" not in err


def test_the_first_non_finite_step_is_named(synthetic_root, tmp_path, monkeypatch):
    real_step = partial_ce.training_step
    calls = iter(range(100))

    def nan_at_third_step(model, batch, config):
        out = real_step(model, batch, config)
        if next(calls) == 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(partial_ce, "training_step", nan_at_third_step)
    with pytest.raises(TrainingError, match=r"loss became NaN or infinite at step 3 \(epoch 1\)"):
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, tmp_path / "run", limit_train=None, log_every=50))


def test_weak_labels_naming_no_image_are_an_error(synthetic_root, tmp_path):
    classes = load_dataset_info(synthetic_root).classes
    path = tmp_path / "weak.json"
    save_weak_labels(path, WeakLabelSet(classes, {"not_an_image": WeakLabels(32, 32, frozenset({1}))}))
    with pytest.raises(WeakLabelError, match=r"none of its 1 labelled images is in split 'train'.*'not_an_image'"):
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, tmp_path / "run", weak_labels=str(path)))
    assert not (tmp_path / "run").exists()


def test_partial_weak_label_matches_are_reported_with_counts(synthetic_root, tmp_path, capsys):
    info = load_dataset_info(synthetic_root)
    names = list_split(info, "train")[:4]
    labels = {n: WeakLabels(32, 32, frozenset({0}), (Point(3, 3, 0),)) for n in names[:2]}
    labels.update({"stray_1": WeakLabels(32, 32), "stray_2": WeakLabels(32, 32)})
    path = tmp_path / "weak.json"
    save_weak_labels(path, WeakLabelSet(info.classes, labels))
    out = tmp_path / "run"
    train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out, weak_labels=str(path), supervision="points"))
    expected = "labels for 2 of 4 train images; 2 names match no image of the split (e.g. 'stray_1')"
    assert expected in capsys.readouterr().err
    assert any(expected in r.get("message", "") for r in ckpt.read_jsonl(out / "metrics.jsonl"))


@pytest.mark.parametrize(
    "record, message",
    [
        ({"height": 32, "width": 32, "points": [[3, 3, 3.7]]}, r"point 0 class must be a whole number, got 3\.7"),
        ({"height": 64.9, "width": 32}, r"height must be a whole number, got 64\.9"),
        ({"height": 32, "width": 32, "tags": [1.5]}, "tag must be a whole number"),
        ({"height": 32, "width": 32, "boxes": [[0, 0, 5, 5, True]]}, "box 0 class must be a whole number"),
        ({"height": 32, "width": 32, "scribbles": [{"path": [[0, 0], [1, 1]], "cls": 0.5}]}, "scribble 0 class"),
    ],
)
def test_fractional_classes_and_sizes_are_refused_not_truncated(record, message):
    with pytest.raises(WeakLabelError, match=message):
        from_json_dict(record)


def test_infinity_box_coordinates_are_refused(tmp_path):
    path = tmp_path / "weak.json"
    path.write_text(
        '{"format": "weakseg-weak-labels/1", "classes": ["a", "b"], '
        '"images": {"x": {"height": 8, "width": 8, "boxes": [[0, 0, Infinity, 4, 1]]}}}'
    )
    with pytest.raises(WeakLabelError, match="box 0 has a non-finite coordinate"):
        load_weak_labels(path)


def test_deeply_nested_json_is_a_weak_label_error(tmp_path):
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(WeakLabelError, match="nested too deeply"):
        parse_json_text(text, "upload")
    (tmp_path / "deep.json").write_text(text)
    with pytest.raises(WeakLabelError, match="nested too deeply"):
        load_weak_labels(tmp_path / "deep.json")


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


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_workers": 100000}, "num_workers 100000 is over the limit of 64"),
        ({"image_size": (100000, 100000)}, r"8 to 4096 pixels each \(the limit\)"),
        ({"batch_size": 10**6}, "batch_size 1000000 is over the limit"),
        ({"epochs": 10**9}, "epochs 1000000000 is over the limit"),
        ({"scale_min": 2.0, "scale_max": 0.5}, "scale_min 2.0 is above scale_max 0.5"),
        ({"device": "tpu"}, "device 'tpu' is not supported; use auto, cpu"),
    ],
)
def test_resource_knobs_are_bounded_naming_the_limit(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("--device=tpu", "device 'tpu' is not supported"),
        ("--scale_min=2", "scale_min 2.0 is above scale_max"),
        ("--num_workers=100000", "over the limit of 64"),
        ("--image_size=100000,100000", "the limit"),
    ],
)
def test_cli_resource_and_device_errors_are_one_line(synthetic_root, tmp_path, capsys, setting, message):
    args = ["train", "--method", "partial_ce", "--data", str(synthetic_root), "--out", str(tmp_path / "r"), setting]
    assert main([*args, "--scale_max=0.5"] if "scale_min" in setting else args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_device_tpu_for_eval_is_one_line(run_copy, synthetic_root, capsys):
    assert main(["eval", "--checkpoint", str(run_copy), "--data", str(synthetic_root), "--device", "tpu"]) == 2
    assert "device 'tpu' is not supported" in capsys.readouterr().err


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


def test_pretrained_weights_without_network_are_a_clear_error(synthetic_root, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno 111] Connection refused")  # what requests / huggingface_hub raise offline

    monkeypatch.setattr(partial_ce, "build", offline)
    config = _tiny(synthetic_root, tmp_path / "run", encoder_weights="imagenet")
    with pytest.raises(ModelError, match="encoder_weights='imagenet': could not fetch.*encoder_weights=None"):
        train(partial_ce, partial_ce.Config(), config)
    with pytest.raises(OSError):  # without pretrained weights an OSError is not a network problem: not relabelled
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, tmp_path / "run"))


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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--method", "partial_ce", "--out", "{file}"], "is a file, not a folder"),
        (["train", "--method", "partial_ce", "--out", "{file}/run"], "is a file, not a folder"),
        (["simulate", "--data", "{data}", "--kind", "points", "--out", "{dir}"], "is a folder; pass the path"),
        (["annotations", "import", "--store", "{dir}", "--json", "{file}"], "is a folder; pass the path"),
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


def test_stale_temp_files_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    stale = tmp_path / ".report.json.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)  # a kill mid-write: nobody holds its lock any more
    other = tmp_path / ".metrics.jsonl.abc123.tmp"
    other.write_text("not ours")
    with atomic_path(tmp_path / "report.json") as tmp:
        tmp.write_text("{}")
        assert not stale.exists()
    assert other.exists(), "only the temp files of the file being written are cleaned"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.jsonl.abc123.tmp", "report.json"]


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    with atomic_path(tmp_path / "w.bin") as live:
        live.write_bytes(b"half")
        assert remove_stale_temps(tmp_path / "w.bin") == [] and live.exists()

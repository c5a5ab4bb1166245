"""The dataset folder format, its reader and its validator.

A dataset is a folder::

    dataset.json                 classes, colors, ignore_index, splits, weak_shot_protocols
    images/<split>/NAME.<image_ext>
    masks/<split>/NAME.<mask_ext>    8-bit index PNG: class index per pixel, ignore_index = void

``../shared/datasets/camvid`` and ``msrc21`` use it; the synthetic generator and the
converters write it. Every problem raises :class:`DatasetError` naming the file and the fix.
"""

from __future__ import annotations

import json
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = int(
    Image.MAX_IMAGE_PIXELS or 89_478_485
)  # ~89 MP, width * height from the header, before any pixel is decoded
# The tune split is carved out of train, so that every setting is chosen off the split it is reported on:
# ``tune`` holds TUNE_FRACTION of train, ``train-tune`` the rest (train on it when tuning on ``tune``).
CARVED_FROM = "train"
CARVED_SPLITS = ("tune", "train-tune")
TUNE_FRACTION = 0.2
TUNE_SEED = 0
SEQUENCE_FRAME = re.compile(
    r"^(.+?)_f?(\d+)$"
)  # video frames SEQUENCE_FRAMENUMBER (CamVid: 0016E5_07959, 0006R0_f00930)
REQUIRED_KEYS = {"name": str, "classes": list, "colors": list, "ignore_index": int, "splits": dict}


class DatasetError(ValueError):
    """A dataset folder, file or value that cannot be used (the message says which and how to fix it)."""


@dataclass(frozen=True)
class DatasetInfo:
    root: Path
    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    splits: dict[str, int] = field(default_factory=dict)
    protocols: dict[str, tuple[str, ...]] = field(default_factory=dict)
    image_dir: str = "images"
    mask_dir: str = "masks"
    image_ext: str = ".png"
    mask_ext: str = ".png"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_folder(self, split: str) -> str:
        """The folder a split's files live in: a carved split (``tune``, ``train-tune``) lives in ``train``."""
        if split in CARVED_SPLITS and not (self.root / self.image_dir / split).is_dir():
            return CARVED_FROM
        return split

    def image_path(self, split: str, name: str) -> Path:
        return self.root / self.image_dir / self.split_folder(split) / f"{name}{self.image_ext}"

    def mask_path(self, split: str, name: str) -> Path:
        return self.root / self.mask_dir / self.split_folder(split) / f"{name}{self.mask_ext}"

    def to_json_dict(self) -> dict:
        return {
            "name": self.name,
            "image_dir": self.image_dir,
            "mask_dir": self.mask_dir,
            "image_ext": self.image_ext,
            "mask_ext": self.mask_ext,
            "ignore_index": self.ignore_index,
            "classes": list(self.classes),
            "colors": [list(c) for c in self.colors],
            "splits": dict(self.splits),
            "weak_shot_protocols": {k: {"novel": list(v)} for k, v in self.protocols.items()},
        }


def load_dataset_info(root: str | Path) -> DatasetInfo:
    """Read and check ``root/dataset.json``."""
    root = Path(root)
    path = root / "dataset.json"
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder; pass the folder that holds dataset.json")
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing; a dataset folder needs a dataset.json (see README, 'Dataset folder format')"
        )
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err}); fix the syntax") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: must hold a JSON object with keys {sorted(REQUIRED_KEYS)}")
    for key, typ in REQUIRED_KEYS.items():
        if key not in doc:
            raise DatasetError(f"{path}: missing key '{key}' ({typ.__name__}); add it")
        if not isinstance(doc[key], typ) or isinstance(doc[key], bool):
            raise DatasetError(f"{path}: '{key}' must be a {typ.__name__}, got {type(doc[key]).__name__}")
    classes = doc["classes"]
    if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise DatasetError(f"{path}: 'classes' must be a non-empty list of distinct names")
    if len(classes) > 254:
        raise DatasetError(
            f"{path}: {len(classes)} classes; at most 254 fit an 8-bit mask beside the unlabelled/void values"
        )
    colors = doc["colors"]
    if len(colors) != len(classes) or not all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colors
    ):
        raise DatasetError(f"{path}: 'colors' must be {len(classes)} [r, g, b] lists of ints 0..255, one per class")
    ignore = doc["ignore_index"]
    if not (0 <= ignore <= 255) or ignore < len(classes):
        raise DatasetError(f"{path}: 'ignore_index' {ignore} must be in {len(classes)}..255 (not a class index)")
    counts = doc["splits"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        raise DatasetError(f"{path}: 'splits' must map split names to image counts (ints >= 0), got {counts}")
    if not isinstance(doc.get("weak_shot_protocols", {}), dict):
        raise DatasetError(f"{path}: 'weak_shot_protocols' must be an object {{name: {{'novel': [class names]}}}}")
    protocols = {}
    for pname, proto in doc.get("weak_shot_protocols", {}).items():
        novel = proto.get("novel") if isinstance(proto, dict) else None
        if not isinstance(novel, list) or not novel:
            raise DatasetError(f"{path}: weak_shot_protocols.{pname} must be {{'novel': [class names]}}")
        unknown = [n for n in novel if n not in classes]
        if unknown:
            raise DatasetError(f"{path}: weak_shot_protocols.{pname} names unknown classes {unknown}; known: {classes}")
        protocols[pname] = tuple(novel)
    for key in ("image_dir", "mask_dir", "image_ext", "mask_ext"):
        if key in doc and not isinstance(doc[key], str):
            raise DatasetError(f"{path}: '{key}' must be a string")
    return DatasetInfo(
        root=root,
        name=doc["name"],
        classes=tuple(classes),
        colors=tuple(tuple(c) for c in colors),
        ignore_index=ignore,
        splits={str(k): int(v) for k, v in doc["splits"].items()},
        protocols=protocols,
        image_dir=doc.get("image_dir", "images"),
        mask_dir=doc.get("mask_dir", "masks"),
        image_ext=doc.get("image_ext", ".png"),
        mask_ext=doc.get("mask_ext", ".png"),
    )


def tune_names(names: list[str]) -> list[str]:
    """The images of ``tune``, out of the sorted ``names`` of train.

    Video frames (every name ``SEQUENCE_FRAMENUMBER``) give the last TUNE_FRACTION of each sequence as
    one contiguous block: neighbouring frames are near-duplicates, so a random draw would leak them
    between train and tune. Any other names give a fixed random TUNE_FRACTION (seed TUNE_SEED).
    """
    if not names:
        return []
    matches = [SEQUENCE_FRAME.match(n) for n in names]
    if all(matches):
        sequences: dict[str, list[tuple[int, str]]] = {}
        for m, name in zip(matches, names):
            assert m is not None
            sequences.setdefault(m.group(1), []).append((int(m.group(2)), name))
        tune = []
        for frames in sequences.values():
            frames.sort()
            block = max(1, round(TUNE_FRACTION * len(frames))) if len(frames) > 1 else 0
            tune += [name for _, name in frames[len(frames) - block :]]
        return sorted(tune)
    count = max(1, round(TUNE_FRACTION * len(names))) if len(names) > 1 else 0
    order = np.random.default_rng(TUNE_SEED).permutation(len(names))
    return sorted(names[i] for i in order[:count])


def list_split(info: DatasetInfo, split: str) -> list[str]:
    """Sorted image names of ``split``; every image must have its mask.

    ``tune`` and ``train-tune`` are carved out of ``train`` (:func:`tune_names`) unless the folder has
    split folders of those names.
    """
    if info.split_folder(split) != split:
        train = list_split(info, CARVED_FROM)
        tune = set(tune_names(train))
        return [n for n in train if (n in tune) == (split == "tune")]
    names, skipped = _scan_split(info, split)
    for problem in skipped:
        warnings.warn(problem, stacklevel=2)
    folder = info.root / info.image_dir / split
    if not names:
        raise DatasetError(f"{folder}: no '*{info.image_ext}' images; check image_ext in dataset.json")
    missing = [n for n in names if not info.mask_path(split, n).is_file()]
    if missing:
        raise DatasetError(
            f"{info.root / info.mask_dir / split}: {len(missing)} mask(s) missing, e.g. {missing[0]}{info.mask_ext}; "
            "every image needs a mask of the same name (an all-void mask if it has no labels)"
        )
    return names


def _scan_split(info: DatasetInfo, split: str) -> tuple[list[str], list[str]]:
    """``(names of the split's regular image files, problems with the other entries)``.

    A FIFO or device named like an image would block the reader forever, and a name that is
    not valid UTF-8 cannot be written to JSON, a store or the terminal: both are skipped.
    """
    folder = info.root / info.image_dir / split
    if not folder.is_dir():
        known = sorted(info.splits) or "none"
        raise DatasetError(f"{folder}: no such split folder; splits in dataset.json: {known}")
    names, skipped = [], []
    for p in folder.iterdir():
        if not p.name.endswith(info.image_ext):
            continue
        shown = p.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:
            skipped.append(f"{folder / shown}: file name is not valid UTF-8; skipped: rename it (e.g. with convmv)")
            continue
        try:
            regular = stat.S_ISREG(p.stat().st_mode)  # follows symlinks: a link to an image is fine
        except OSError:
            regular = False  # a dangling symlink
        if not regular:
            skipped.append(f"{p}: not a regular file (a FIFO, device, folder or broken link); skipped: remove it")
            continue
        names.append(p.name[: -len(info.image_ext)])
    return sorted(names), skipped


@contextmanager
def _opened_image(path: Path) -> Iterator[Image.Image]:
    """The image file opened by PIL (pixels not decoded yet), every failure a DatasetError naming it."""
    _check_regular(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_pixels refuses it
            with Image.open(path) as img:
                yield img
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file missing") from None
    except Image.DecompressionBombError as err:
        raise DatasetError(f"{path}: refused as a decompression bomb ({err}); downscale or remove it") from None
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable or corrupt image ({err}); re-export or remove it") from None


def read_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB; grayscale, RGBA, palette and 16-bit images are converted."""
    path = Path(path)
    with _opened_image(path) as img:
        _check_pixels(path, img.size)
        img.load()
        return image_to_rgb(img)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header, without decoding the pixels."""
    with _opened_image(Path(path)) as img:
        return img.height, img.width


def _check_regular(path: Path, what: str) -> None:
    """Opening a FIFO blocks until someone writes to it: refuse anything but a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} file missing") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the {what} ({err})") from None
    if not stat.S_ISREG(mode):
        raise DatasetError(f"{path}: not a regular file (a FIFO, device or folder); replace it with an {what} file")


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise DatasetError(
            f"{path}: {width}x{height} pixels, over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels "
            "(a corrupt header or a decompression bomb); downscale or remove it"
        )


def image_to_rgb(img: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a loaded image; 16-bit and 32-bit gray are scaled by their maximum."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(0, None)
        arr = (255 * arr / max(arr.max(), 1)).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def read_mask(path: str | Path, info: DatasetInfo, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``(H, W)`` uint8 index mask with void mapped to 255; checks values and (optionally) size."""
    path = Path(path)
    _check_regular(path, "mask")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_pixels refuses it
            with Image.open(path) as img:
                _check_pixels(path, img.size)
                img.load()
                mode = img.mode
                arr = np.asarray(img)
    except FileNotFoundError:
        raise DatasetError(f"{path}: mask file missing") from None
    except Image.DecompressionBombError as err:
        raise DatasetError(f"{path}: refused as a decompression bomb ({err}); downscale or remove it") from None
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable or corrupt mask ({err}); re-export it") from None
    if mode in ("RGB", "RGBA"):
        raise DatasetError(
            f"{path}: color mask ({mode}); masks must be index masks (mode L or P) holding class "
            "indices: convert it with `python -m workbench data convert`"
        )
    if arr.ndim != 2:
        raise DatasetError(f"{path}: mask must be 2-D, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise DatasetError(
            f"{path}: mask is {arr.shape[0]}x{arr.shape[1]} but its image is {shape[0]}x{shape[1]}; "
            "masks must have the size of their image"
        )
    bad = (arr >= info.num_classes) & (arr != info.ignore_index)
    if bad.any():
        values = sorted(set(np.unique(arr[bad]).tolist()))[:8]
        raise DatasetError(
            f"{path}: label values {values} are outside the {info.num_classes} classes (0..{info.num_classes - 1}) "
            f"and not the ignore index {info.ignore_index}; fix the mask or the class list in dataset.json"
        )
    out = arr.astype(np.uint8)
    if info.ignore_index != 255:
        out[arr == info.ignore_index] = 255
    return out


def validate_dataset(root: str | Path, splits: list[str] | None = None) -> list[str]:
    """Check every file of the dataset; return a list of problems (empty when all is well)."""
    try:
        info = load_dataset_info(root)
    except DatasetError as err:
        return [str(err)]
    problems = []
    for split in splits or sorted(info.splits):
        try:
            problems.extend(_scan_split(info, split)[1])
            names = list_split(info, split)
        except DatasetError as err:
            problems.append(str(err))
            continue
        for name in names:
            try:
                image = read_image(info.image_path(split, name))
                read_mask(info.mask_path(split, name), info, shape=image.shape[:2])
            except DatasetError as err:
                problems.append(str(err))
        if info.splits.get(split) not in (None, len(names)):
            problems.append(
                f"{info.root}/dataset.json: splits.{split} says {info.splits[split]} images, found {len(names)}"
            )
    return problems

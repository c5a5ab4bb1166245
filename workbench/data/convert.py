"""Convert other datasets' layouts into the workbench folder format.

- PASCAL VOC: ``JPEGImages/``, palette PNGs in ``SegmentationClass/`` and the split lists in
  ``ImageSets/Segmentation/{train,val}.txt``;
- ADE20K (``ADEChallengeData2016``): ``images/{training,validation}`` and index masks in
  ``annotations/...`` where 0 is "other" (becomes void) and class k is stored as k+1;
- COCO-Stuff style: ``images/<split>`` and ``annotations/<split>`` index masks already 0-based
  with 255 void.

Images are copied unchanged; masks are rewritten as palette index PNGs. Each conversion writes
into a temporary folder renamed into place at the end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.data.folder import DatasetError
from workbench.io import default_mode, save_index_png

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
LAYOUT_SPLITS = {"ade20k": {"training": "train", "validation": "val"}}


def voc_colormap(n: int) -> list[list[int]]:
    """The PASCAL VOC palette (bit-interleaved), also used for datasets that bring no colors."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append([r, g, b])
    return colors


def _write_info(root: Path, name: str, classes, splits: dict[str, int], image_ext: str) -> None:
    doc = {
        "name": name, "image_dir": "images", "mask_dir": "masks", "image_ext": image_ext, "mask_ext": ".png",
        "ignore_index": 255, "classes": list(classes), "colors": voc_colormap(len(classes)), "splits": splits,
        "weak_shot_protocols": {},
    }  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(doc, indent=1))


def _finish(tmp: Path, out: Path) -> Path:
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: exists and is not empty; choose a new --out folder")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out


def _new_tmp(out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: exists and is not empty; choose a new --out folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(default_mode(0o777))  # mkdtemp makes 0700: the dataset gets what mkdir would give it
    return tmp


def convert_voc(src: str | Path, out: str | Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Convert a VOC2012-style folder (palette masks hold class indices, 255 = border)."""
    src, out = Path(src), Path(out)
    lists = src / "ImageSets" / "Segmentation"
    if not (src / "JPEGImages").is_dir() or not (src / "SegmentationClass").is_dir():
        raise DatasetError(f"{src}: not a VOC folder (needs JPEGImages/ and SegmentationClass/)")
    tmp = _new_tmp(out)
    try:
        counts = {}
        for split in splits:
            list_file = lists / f"{split}.txt"
            if not list_file.is_file():
                raise DatasetError(f"{list_file}: missing split list; VOC lists live in ImageSets/Segmentation/")
            names = [n.strip() for n in list_file.read_text().split() if n.strip()]
            for name in names:
                _copy_pair(src / "JPEGImages" / f"{name}.jpg", src / "SegmentationClass" / f"{name}.png",
                           tmp, split, name, len(VOC_CLASSES), shift=0)  # fmt: skip
            counts[split] = len(names)
        _write_info(tmp, src.name or "voc", VOC_CLASSES, counts, ".jpg")
        return _finish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_index_masks(
    src: str | Path, out: str | Path, layout: str = "ade20k", classes_file: str | None = None
) -> Path:
    """Convert an ADE20K or COCO-Stuff style folder of ``images/<split>`` + ``annotations/<split>``."""
    src, out = Path(src), Path(out)
    if layout not in ("ade20k", "cocostuff"):
        raise DatasetError(f"unknown layout {layout!r}; use ade20k or cocostuff")
    if not (src / "images").is_dir() or not (src / "annotations").is_dir():
        raise DatasetError(f"{src}: needs images/<split>/ and annotations/<split>/ folders")
    shift = 1 if layout == "ade20k" else 0
    split_dirs = sorted(p.name for p in (src / "images").iterdir() if p.is_dir())
    classes = _read_classes(classes_file) if classes_file else None
    tmp = _new_tmp(out)
    try:
        counts, max_label = {}, -1
        for split_dir in split_dirs:
            split = LAYOUT_SPLITS.get(layout, {}).get(split_dir, split_dir)
            images = sorted((src / "images" / split_dir).glob("*.jpg"))
            for img in images:
                mask = src / "annotations" / split_dir / f"{img.stem}.png"
                n = len(classes) if classes else 254
                max_label = max(max_label, _copy_pair(img, mask, tmp, split, img.stem, n, shift))
            counts[split] = len(images)
        if classes is None:
            classes = [f"class_{i:03d}" for i in range(max_label + 1)]
        _write_info(tmp, src.name or layout, classes, counts, ".jpg")
        return _finish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_classes(path: str) -> list[str]:
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: no class names (one per line expected)")
    return names


def _copy_pair(image: Path, mask: Path, root: Path, split: str, name: str, num_classes: int, shift: int) -> int:
    """Copy the image, rewrite the mask (``shift`` 1: value 0 -> void, k -> k-1); return its largest label."""
    if not image.is_file() or not mask.is_file():
        raise DatasetError(f"{image if not image.is_file() else mask}: missing; every listed image needs its mask")
    with Image.open(mask) as m:
        arr = np.asarray(m).astype(np.int32)
    if arr.ndim != 2:
        raise DatasetError(f"{mask}: not an index mask (shape {arr.shape}); index PNGs hold one class id per pixel")
    if shift:
        arr = np.where(arr == 0, 255, arr - shift)
    labels = arr[arr != 255]
    if labels.size and labels.max() >= num_classes:
        raise DatasetError(f"{mask}: label {labels.max()} is outside the {num_classes} classes; pass --classes")
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    shutil.copy2(image, root / "images" / split / f"{name}{image.suffix}")
    save_index_png(root / "masks" / split / f"{name}.png", arr.astype(np.uint8), voc_colormap(max(num_classes, 1)))
    return int(labels.max()) if labels.size else -1

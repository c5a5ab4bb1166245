"""Paired augmentation: image, dense mask and weak labels move together.

Images are resized bilinearly and masks by nearest neighbour; weak labels are moved as
geometry (see :class:`workbench.labels.weak_labels.WeakLabels`) and rasterised only afterwards,
so a one-pixel point survives any downscale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from workbench.labels.weak_labels import IGNORE, WeakLabels


@dataclass(frozen=True)
class Augment:
    """Random scale in ``[scale_min, scale_max]``, crop back to the input size, horizontal flip."""

    hflip: bool = True
    scale_min: float = 1.0
    scale_max: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.scale_min <= self.scale_max):
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")


def resize_pair(image: np.ndarray, mask: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an ``(H, W, 3)`` uint8 image (bilinear) and its ``(H, W)`` mask (nearest)."""
    if image.shape[:2] == (height, width):
        return image, mask
    img = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    msk = np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
    return img, msk


def augment_sample(
    image: np.ndarray, mask: np.ndarray, weak: WeakLabels | None, aug: Augment, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, WeakLabels | None]:
    """Apply one random draw of ``aug``; the output has the input's size (crops pad with ignore)."""
    h, w = mask.shape
    s = rng.uniform(aug.scale_min, aug.scale_max)
    if s != 1.0:
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        image, mask = resize_pair(image, mask, sh, sw)
        weak = weak.resized(sh, sw) if weak is not None else None
        top = int(rng.integers(0, sh - h + 1)) if sh >= h else -int(rng.integers(0, h - sh + 1))
        left = int(rng.integers(0, sw - w + 1)) if sw >= w else -int(rng.integers(0, w - sw + 1))
        image, mask = crop_pad(image, mask, top, left, h, w)
        weak = weak.cropped(top, left, h, w) if weak is not None else None
    if aug.hflip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
        weak = weak.flipped() if weak is not None else None
    return np.ascontiguousarray(image), np.ascontiguousarray(mask), weak


def crop_pad(image, mask, top: int, left: int, h: int, w: int):
    """Window ``[top, top+h) x [left, left+w)``; parts outside the input are padded (image 0, mask IGNORE)."""
    out_img = np.zeros((h, w, 3), dtype=image.dtype)
    out_msk = np.full((h, w), IGNORE, dtype=mask.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + h, mask.shape[0]), min(left + w, mask.shape[1])
    out_img[r0 - top : r1 - top, c0 - left : c1 - left] = image[r0:r1, c0:c1]
    out_msk[r0 - top : r1 - top, c0 - left : c1 - left] = mask[r0:r1, c0:c1]
    return out_img, out_msk

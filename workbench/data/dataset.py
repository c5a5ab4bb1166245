"""A torch Dataset over one split of a dataset folder, with the chosen kind of supervision.

Each item is a dict:

- ``image``: ``(3, H, W)`` float32, ImageNet-normalised;
- ``label``: ``(H, W)`` int64 training target: class ids, ``UNLABELED`` (254), ``IGNORE`` (255);
- ``tags``: ``(C,)`` float32 multi-hot image-level tags;
- ``index``: position in the split;
- ``mask``: ``(H, W)`` int64 ground truth, **only** when ``include_gt=True`` (evaluation), so
  that no weakly supervised method can read it by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from workbench.data.augment import Augment, augment_sample, resize_pair
from workbench.data.folder import DatasetError, DatasetInfo, list_split, read_image, read_mask
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import (
    IGNORE,
    KINDS,
    SimulationConfig,
    WeakLabels,
    WeakLabelSet,
    rasterize,
    simulate,
    vanished_pixels,
)

log = logging.getLogger("workbench")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPERVISION_KINDS = ("dense",) + KINDS


def parse_supervision(supervision: str) -> tuple[str, ...]:
    """``"points+scribbles"`` -> ``("points", "scribbles")``; ``dense`` stands alone."""
    kinds = tuple(k.strip() for k in supervision.split("+") if k.strip())
    bad = [k for k in kinds if k not in SUPERVISION_KINDS]
    if not kinds or bad:
        raise DatasetError(f"unknown supervision {supervision!r}; use one of {SUPERVISION_KINDS} or a '+' combination")
    if "dense" in kinds and len(kinds) > 1:
        raise DatasetError("'dense' supervision already labels every pixel; do not combine it with weak kinds")
    return kinds


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 normalised with the ImageNet statistics."""
    x = torch.from_numpy(np.require(image, np.uint8, ["C", "W"])).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def image_tensor(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(1, 3, h, w)`` model input of an ``(H, W, 3)`` uint8 image resized to the working ``size = (h, w)``."""
    from workbench.data.augment import resize_pair

    small, _ = resize_pair(image, np.zeros(image.shape[:2], np.uint8), *size)
    return normalize_image(small)[None]


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalize_image`: ``(..., 3, H, W)`` -> RGB in ``[0, 1]``, same shape and device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(3, 1, 1)
    return (images * std + mean).clamp(0.0, 1.0)


@dataclass
class _Base:
    image: np.ndarray  # (h, w, 3) uint8 at the working size
    mask: np.ndarray  # (h, w) uint8 ground truth at the working size
    weak: WeakLabels | None  # at the working size
    label: np.ndarray  # (h, w) uint8 un-augmented training target
    tags: np.ndarray  # (C,) float32
    label_px: int = 0  # point and scribble pixels
    vanished_px: int = 0  # of those, imported ones whose region vanished at the working size


def simulate_at_size(
    full_mask: np.ndarray,
    size: tuple[int, int],
    kinds: Iterable[str],
    simulation: SimulationConfig,
    key: str,
    num_classes: int,
) -> WeakLabels:
    """Weak labels at the working ``size``: simulated on the mask resized as the dataset resizes it
    (nearest), so each point and scribble has the class the model sees there; tags from the full mask
    (a class too small to see is still in the image). ``.resized(*full_mask.shape)`` gives them in the
    image's own coordinates, and resizing those back to ``size`` returns the same pixels."""
    h, w = size
    mask = full_mask
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(full_mask).resize((w, h), Image.Resampling.NEAREST))
    weak = simulate(mask, [k for k in kinds if k != "dense"], simulation, key=key, num_classes=num_classes)
    present = np.unique(full_mask)
    return replace(weak, tags=frozenset(int(c) for c in present[present < num_classes]))


class SegmentationDataset(Dataset):
    """One split, resized to ``size`` (default: the size of the split's first image)."""

    def __init__(
        self,
        info: DatasetInfo,
        split: str,
        supervision: str = "dense",
        size: tuple[int, int] | None = None,
        augment: Augment | None = None,
        weak_labels: WeakLabelSet | None = None,
        simulation: SimulationConfig = SimulationConfig(),
        class_split: ClassSplit | None = None,
        include_gt: bool = False,
        limit: int | None = None,
    ) -> None:
        self.info, self.split = info, split
        self.kinds = parse_supervision(supervision)
        self.names = list_split(info, split)[:limit]
        if weak_labels is not None and tuple(weak_labels.classes) not in ((), info.classes):
            raise DatasetError(
                f"weak labels are for classes {list(weak_labels.classes)}, the dataset has {list(info.classes)}; "
                "simulate or export them for this dataset"
            )
        self.weak_labels = weak_labels
        self.simulation, self.class_split = simulation, class_split
        self.augment, self.include_gt = augment, include_gt
        if size is None:
            size = read_image(info.image_path(split, self.names[0])).shape[:2]
        if len(size) != 2 or min(size) < 8:
            raise DatasetError(f"image size must be (height, width) of at least 8 pixels, got {size}")
        self.size = (int(size[0]), int(size[1]))
        self._cache: dict[int, _Base] = {}
        self._full_masks: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def full_mask(self, index: int) -> np.ndarray:
        """Ground truth at the original resolution (for evaluation), void = 255."""
        if index not in self._full_masks:
            name = self.names[index]
            image = read_image(self.info.image_path(self.split, name))
            self._full_masks[index] = read_mask(self.info.mask_path(self.split, name), self.info, shape=image.shape[:2])
        return self._full_masks[index]

    def annotation_cost(self) -> dict[str, float]:
        """Mean labelled pixels (at the working size) and clicks (points, scribbles, boxes) per image."""
        c = self.info.num_classes
        labelled = [float((self._base(i).label < c).sum()) for i in range(len(self))]
        clicks = [w.num_clicks() if (w := self._base(i).weak) else 0 for i in range(len(self))]
        pixels = self.size[0] * self.size[1]
        return {
            "labelled_px_per_image": float(np.mean(labelled)),
            "labelled_fraction": float(np.mean(labelled)) / pixels,
            "clicks_per_image": float(np.mean(clicks)),
        }

    def weak(self, index: int) -> WeakLabels | None:
        """The weak labels of an item at the working size (None for dense supervision)."""
        return self._base(index).weak

    def label_check(self) -> dict[str, int]:
        """How many imported point and scribble pixels vanish at the working size (see ``_base``).

        A labelled pixel vanishes when the resized mask has another class there although its own
        class is in the original mask under that pixel: the region was annotated but is too small
        to survive the resize. Such labels are kept as given (never changed silently); the run
        reports this count and warns. Simulated labels never vanish: they are made at the working size.
        """
        out = {"imported": self.weak_labels is not None, "label_px": 0, "vanished_px": 0, "images_with_vanished": 0}
        for i in range(len(self)):
            base = self._base(i)
            out["label_px"] += base.label_px
            out["vanished_px"] += base.vanished_px
            out["images_with_vanished"] += base.vanished_px > 0
        return out

    def _base(self, index: int) -> _Base:
        if index in self._cache:
            return self._cache[index]
        name = self.names[index]
        image = read_image(self.info.image_path(self.split, name))
        full_mask = read_mask(self.info.mask_path(self.split, name), self.info, shape=image.shape[:2])
        h, w = self.size
        image, mask = resize_pair(image, full_mask, h, w)
        weak, vanished = None, 0
        if self.kinds != ("dense",):
            weak = self._weak_for(name, full_mask, mask)
            if self.weak_labels is not None:
                vanished = vanished_pixels(weak, full_mask, mask, self.info.num_classes)
        label = self._target(mask, weak)
        tags = np.zeros(self.info.num_classes, dtype=np.float32)
        present = np.unique(mask)
        tags[present[present < self.info.num_classes]] = 1.0
        if weak is not None:
            tags = weak.tag_vector(self.info.num_classes)
        label_px = int((rasterize(weak.only(["points", "scribbles"])) < self.info.num_classes).sum()) if weak else 0
        base = _Base(np.array(image), np.array(mask), weak, label, tags, label_px, vanished)  # writable copies
        self._cache[index] = base
        return base

    def _weak_for(self, name: str, full_mask: np.ndarray, mask: np.ndarray) -> WeakLabels:
        """The item's weak labels at the working size.

        Simulated labels are made on the mask resized to the working size, so every point and
        scribble lies where its class is visible to the model (tags still come from the full
        mask: a class too small to see is still in the image). Imported labels are resized as given.
        """
        if self.weak_labels is None:
            return simulate_at_size(full_mask, self.size, self.kinds, self.simulation, name, self.info.num_classes)
        given = self.weak_labels.labels.get(name)
        if given is None:  # an image nobody annotated yet: no label, no tag
            return WeakLabels(*mask.shape)
        weak = given
        if (weak.height, weak.width) != full_mask.shape:
            raise DatasetError(
                f"weak labels of {name!r} are for a {weak.height}x{weak.width} image, the image is "
                f"{full_mask.shape[0]}x{full_mask.shape[1]}; re-simulate or re-export them for this dataset"
            )
        return weak.only([k for k in self.kinds if k != "tags"]).resized(*mask.shape)

    def _target(self, mask: np.ndarray, weak: WeakLabels | None, padding: np.ndarray | None = None) -> np.ndarray:
        """Dense: the mask itself. Weak: the rasterised labels, with crop padding (not GT void) ignored."""
        label = mask.copy() if weak is None else rasterize(weak)
        if weak is not None and padding is not None:
            label[padding] = IGNORE
        if self.class_split is not None:
            label = self.class_split.hide_novel(label)
        return label

    def __getitem__(self, index: int) -> dict:
        base = self._base(index)
        image, mask, label = base.image, base.mask, base.label
        if self.augment is not None:
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
            if base.weak is None:
                image, mask, _ = augment_sample(image, mask, None, self.augment, rng)
                label = self._target(mask, None)
            else:  # carry a blank map through the crop to learn where padding is, without reading GT void
                carrier = mask if self.include_gt else np.zeros_like(mask)
                image, carried, weak = augment_sample(image, carrier, base.weak, self.augment, rng)
                padding = carried == IGNORE if not self.include_gt else None
                label, mask = self._target(carried, weak, padding), carried
        item = {
            "image": normalize_image(image),
            "label": torch.from_numpy(label.astype(np.int64)),
            "tags": torch.from_numpy(base.tags),
            "index": index,
        }
        if self.include_gt:
            item["mask"] = torch.from_numpy(mask.astype(np.int64))
        return item


def median_frequency_weights(dataset: SegmentationDataset) -> tuple[float, ...]:
    """Per-class weights ``median(f) / f(c)`` from the training targets (Eigen & Fergus 2015; SegNet's CamVid
    protocol): ``f(c)`` is class c's share of the labelled pixels in the images where c is labelled.

    Counted on what the method trains on (dense masks, or the point/scribble pixels of weak labels),
    never on ground truth it does not see. A class that is never labelled gets weight 1.
    """
    c = dataset.info.num_classes
    pixels = np.zeros(c, np.float64)
    present_total = np.zeros(c, np.float64)
    for i in range(len(dataset)):
        label = dataset._base(i).label
        counts = np.bincount(label[label < c].ravel(), minlength=c).astype(np.float64)
        pixels += counts
        present_total[counts > 0] += counts.sum()
    seen = pixels > 0
    if not seen.any():
        raise DatasetError(
            f"split {dataset.split!r} has no labelled pixels to weight classes by; add labels or drop class_weights"
        )
    freq = np.where(seen, pixels / np.maximum(present_total, 1), np.nan)
    median = float(np.nanmedian(freq))
    return tuple(round(float(median / f), 4) if s else 1.0 for f, s in zip(freq, seen))


def check_imported_labels(dataset: SegmentationDataset) -> dict[str, int] | None:
    """:meth:`SegmentationDataset.label_check` for imported labels (None for simulated ones), with a
    logged warning when some vanish at the working size."""
    if dataset.weak_labels is None or dataset.kinds == ("dense",):
        return None
    check = dataset.label_check()
    if check["vanished_px"]:
        log.warning(
            "%d of %d imported point/scribble pixels (in %d images) lie on regions that vanish at the working "
            "size %dx%d: they now fall on another class. They are kept as given; train at a larger "
            "--image_size or move them into regions visible at this size.",
            check["vanished_px"], check["label_px"], check["images_with_vanished"], *dataset.size,
        )  # fmt: skip
    return check

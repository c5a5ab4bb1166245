"""Weak-shot class splits: base classes keep pixel labels, novel classes keep only image tags.

A split comes from a *protocol* or from a list of classes:

- ``randomP:k`` (e.g. ``random25:1``) works on any dataset folder, as SimFormer's splits do:
  ``round(P% * K)`` novel classes, the head of the ``k``-th random permutation drawn from one
  generator seeded with :data:`PROTOCOL_SEED` (splits 1-4 are ``random25:1`` .. ``random25:4``).
- any other name is looked up in ``dataset.json``'s ``weak_shot_protocols``.
- ``--novel=a,b``: class names, or 0-based class indices (see :func:`class_indices`).

:func:`identifiability` says whether image tags alone already tell the novel classes apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench.labels.weak_labels import UNLABELED

PROTOCOL_SEED = 0  # the one permutation behind every randomP:k protocol
MAX_RANDOM_SPLIT = 10_000  # randomP:k draws k permutations: a bound, so a typo cannot run for hours
RANDOM_PROTOCOL = re.compile(r"^random(\d+):(\d+)$")
DEFAULT_RANDOM_PERCENT = 25
RANDOM_SPLITS = 4  # splits 1-4, as SimFormer's
MIN_CONFUSABLE_SHARE = 0.1  # below: "trivially identifiable" (tags + the not-base region give the novel masks)
MAX_IMAGE_SHARE = 0.9  # above: a novel class is in almost every image ("degenerate")


class SplitError(ValueError):
    """An unknown protocol or class name (the message lists the valid ones)."""


def class_indices(classes: Sequence[str], items: Sequence[str | int] | str) -> tuple[int, ...]:
    """Sorted class indices for class names or indices (a comma-separated string or a sequence).

    Rule: an item that is a class name is that class; otherwise an item that is a whole
    number is a 0-based index into ``classes`` (the order of dataset.json). So old run
    configs (indices) and new ones (names) both read back, and ``--novel=5,7`` works
    unless a class is literally named "5".
    """
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",") if s.strip()]
    out, unknown = set(), []
    for item in items:
        if isinstance(item, str) and item in classes:
            out.add(list(classes).index(item))
        elif isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.lstrip("-").isdigit()):
            index = int(item)
            if not 0 <= index < len(classes):
                raise SplitError(
                    f"class index {index} is outside 0..{len(classes) - 1}; the classes are {list(classes)}"
                )
            out.add(index)
        else:
            unknown.append(item)
    if unknown:
        raise SplitError(f"unknown class name(s) {unknown}; the dataset's classes are {list(classes)}")
    return tuple(sorted(out))


def random_novel(num_classes: int, percent: int, split: int, seed: int = PROTOCOL_SEED) -> tuple[int, ...]:
    """The first ``round(percent% * num_classes)`` classes of permutation ``split`` (1-based).

    One generator seeded once draws permutation 1, 2, ... in turn, so every split is fixed by
    the seed, and ``random30:4`` holds ``random25:4`` (SimFormer's splits 5-9 grow split 4).
    """
    if not 0 < percent < 100:
        raise SplitError(f"random protocol percent must be in 1..99, got {percent}")
    if not 1 <= split <= MAX_RANDOM_SPLIT:
        raise SplitError(f"random protocol split must be in 1..{MAX_RANDOM_SPLIT} (splits count from 1), got {split}")
    size = min(num_classes - 1, max(1, round(percent / 100 * num_classes)))
    rng = np.random.default_rng(seed)
    for _ in range(split):
        perm = rng.permutation(num_classes)
    return tuple(sorted(int(c) for c in perm[:size]))


def random_protocols(percent: int = DEFAULT_RANDOM_PERCENT, splits: int = RANDOM_SPLITS) -> list[str]:
    """Names of the usual random splits: ``random25:1`` .. ``random25:4``."""
    return [f"random{percent}:{k}" for k in range(1, splits + 1)]


@dataclass(frozen=True)
class ClassSplit:
    """Which classes are novel. ``has_mask[c]`` says whether pixels of class ``c`` may be trusted."""

    classes: tuple[str, ...]
    novel: tuple[int, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        bad = [c for c in self.novel if not 0 <= c < len(self.classes)]
        if bad:
            raise SplitError(f"novel class indices {bad} are outside 0..{len(self.classes) - 1}")
        if not self.novel:
            raise SplitError("a weak-shot split needs at least one novel class")
        if len(set(self.novel)) == len(self.classes):
            raise SplitError("every class is novel; keep at least one base class with pixel labels")

    @property
    def base(self) -> tuple[int, ...]:
        return tuple(c for c in range(len(self.classes)) if c not in self.novel)

    @property
    def novel_names(self) -> tuple[str, ...]:
        return tuple(self.classes[c] for c in self.novel)

    @property
    def has_mask(self) -> np.ndarray:
        keep = np.ones(len(self.classes), dtype=bool)
        keep[list(self.novel)] = False
        return keep

    def hide_novel(self, label: np.ndarray) -> np.ndarray:
        """Label map with novel-class pixels turned into ``UNLABELED`` (valid, not base)."""
        out = label.copy()
        out[np.isin(label, self.novel)] = UNLABELED
        return out

    @classmethod
    def from_names(cls, classes: Sequence[str], novel: Sequence[str | int] | str, name: str = "custom") -> ClassSplit:
        """Novel classes by name or index (the rule of :func:`class_indices`)."""
        return cls(tuple(classes), class_indices(classes, novel), name)

    @classmethod
    def from_protocol(cls, classes: Sequence[str], protocols: Mapping[str, Sequence[str]], name: str) -> ClassSplit:
        """``randomP:k`` on any dataset, or a named protocol of dataset.json."""
        match = RANDOM_PROTOCOL.match(name)
        if match:
            return cls(tuple(classes), random_novel(len(classes), int(match[1]), int(match[2])), name)
        if name not in protocols:
            raise SplitError(
                f"unknown weak-shot protocol {name!r}; dataset.json defines {sorted(protocols) or 'none'}, "
                f"and every dataset has {', '.join(random_protocols())} "
                "(or pass the novel classes with --novel=a,b)"
            )
        return cls.from_names(list(classes), protocols[name], name)


def all_protocols(protocols: Mapping[str, Sequence[str]]) -> list[str]:
    """The dataset's named protocols, then the four ``random25`` splits."""
    return list(protocols) + random_protocols()


# ----------------------------------------------------------------------------- identifiability


@dataclass
class Identifiability:
    """How many training images hold 0, 1, 2, ... novel classes, and what that means for weak-shot.

    If an image holds one novel class, its not-base region *is* that class's mask: tags and
    the complementary target supervise it fully, and no similarity transfer is needed.
    """

    split: ClassSplit
    images: int = 0
    by_count: dict[int, int] = field(default_factory=dict)  # number of novel classes present -> images
    images_with: dict[str, int] = field(default_factory=dict)  # novel class -> images holding it
    novel_pixels: int = 0
    confusable_pixels: int = 0  # novel pixels in images with >= 2 novel classes

    @property
    def confusable_share(self) -> float:
        return self.confusable_pixels / self.novel_pixels if self.novel_pixels else 0.0

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.confusable_share < MIN_CONFUSABLE_SHARE:
            out.append(
                f"trivially identifiable: only {self.confusable_share:.0%} of novel pixels lie in images with >= 2 "
                "novel classes; elsewhere the tag and the not-base region give the novel mask exactly, so novel "
                "mIoU measures the complementary target, not similarity transfer"
            )
        for name, n in self.images_with.items():
            if self.images and n / self.images > MAX_IMAGE_SHARE:
                out.append(
                    f"degenerate: novel class {name!r} is in {n} of {self.images} images (> {MAX_IMAGE_SHARE:.0%}); "
                    "its tag carries almost no information"
                )
        return out

    def to_dict(self) -> dict:
        return {
            "protocol": self.split.name, "novel": list(self.split.novel_names), "images": self.images,
            "images_by_novel_count": {str(k): v for k, v in sorted(self.by_count.items())},
            "images_with_class": dict(self.images_with), "confusable_novel_pixel_share": self.confusable_share,
            "warnings": self.warnings,
        }  # fmt: skip

    def format(self) -> str:
        counts = " / ".join(f"{self.by_count.get(k, 0)}" for k in range(len(self.split.novel) + 1))
        lines = [
            f"{self.split.name}: novel {', '.join(self.split.novel_names)}",
            f"  images with 0/1/2/... novel classes: {counts} (of {self.images})",
            f"  images holding each novel class: {', '.join(f'{k} {v}' for k, v in self.images_with.items())}",
            f"  novel pixels in images with >= 2 novel classes: {self.confusable_share:.1%}",
        ]
        return "\n".join(lines + [f"  WARNING {w}" for w in self.warnings])


def identifiability(masks: Iterable[np.ndarray], split: ClassSplit) -> Identifiability:
    """Count, over ``(H, W)`` class-index masks (void any value >= K), how identifiable the novel classes are."""
    report = Identifiability(split, images_with={n: 0 for n in split.novel_names})
    novel = np.array(split.novel)
    for mask in masks:
        counts = np.bincount(mask.ravel(), minlength=256)[novel]
        present = counts > 0
        k = int(present.sum())
        report.images += 1
        report.by_count[k] = report.by_count.get(k, 0) + 1
        for name, p in zip(split.novel_names, present):
            report.images_with[name] += int(p)
        report.novel_pixels += int(counts.sum())
        report.confusable_pixels += int(counts.sum()) if k >= 2 else 0
    return report

"""Weak-shot class splits: base classes keep pixel labels, novel classes keep only image tags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from workbench.weak_labels import UNLABELED


class SplitError(ValueError):
    """An unknown protocol or class name (the message lists the valid ones)."""


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
        if len(set(self.novel)) == len(self.classes):
            raise SplitError("every class is novel; keep at least one base class with pixel labels")

    @property
    def base(self) -> tuple[int, ...]:
        return tuple(c for c in range(len(self.classes)) if c not in self.novel)

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
    def from_names(cls, classes: Sequence[str], novel_names: Sequence[str], name: str = "custom") -> ClassSplit:
        unknown = [n for n in novel_names if n not in classes]
        if unknown:
            raise SplitError(f"unknown class name(s) {unknown}; the dataset's classes are {list(classes)}")
        return cls(tuple(classes), tuple(sorted(classes.index(n) for n in novel_names)), name)

    @classmethod
    def from_protocol(cls, classes: Sequence[str], protocols: Mapping[str, Sequence[str]], name: str) -> ClassSplit:
        if name not in protocols:
            raise SplitError(
                f"unknown weak-shot protocol {name!r}; dataset.json defines {sorted(protocols) or 'none'} "
                "(or pass the novel classes with --novel=a,b)"
            )
        return cls.from_names(list(classes), protocols[name], name)

"""Partial cross-entropy: learn only from the pixels that points, scribbles or boxes label.

The baseline every sparse-label method must beat (e.g. Tang et al., "Normalized cut loss
for weakly-supervised CNN segmentation", CVPR 2018, use it as their starting point).
Unlabelled pixels (254) and void (255) contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.losses import sparse_cross_entropy
from workbench.models import Backbone, build_smp

SUPERVISION = ("points", "scribbles", "boxes", "dense")


@dataclass(frozen=True)
class Config:
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


def build(num_classes: int, config: Config, backbone: Backbone) -> nn.Module:
    return build_smp(backbone, num_classes)


def training_step(model: nn.Module, batch: dict, config: Config) -> dict[str, torch.Tensor]:
    logits = model(batch["image"])  # (B, C, H, W)
    labelled = (batch["label"] < logits.shape[1]).float().mean()
    return {"loss": sparse_cross_entropy(logits, batch["label"], config.label_smoothing), "labelled_frac": labelled}


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images)

"""Full supervision: cross-entropy on dense masks. The upper bound every weak method is compared to.

With a weak-shot protocol the novel pixels are unlabelled, which gives the
"supervised on base classes only" baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import check_class_weights, sparse_cross_entropy

SUPERVISION = ("dense",)


@dataclass(frozen=True)
class Config:
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] = ()  # per-class CE weights (median frequency: SegNet's CamVid protocol)

    def __post_init__(self) -> None:
        check_class_weights(self)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


def build(num_classes: int, config: Config, backbone: Backbone) -> nn.Module:
    if config.class_weights and len(config.class_weights) != num_classes:
        raise ValueError(
            f"class_weights has {len(config.class_weights)} entries for {num_classes} classes; give one per class "
            "(or --class_weights=median_frequency)"
        )
    return build_smp(backbone, num_classes)


def training_step(model: nn.Module, batch: dict, config: Config) -> dict[str, torch.Tensor]:
    logits = model(batch["image"])  # (B, C, H, W)
    return {"loss": sparse_cross_entropy(logits, batch["label"], config.label_smoothing, config.class_weights)}


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images)

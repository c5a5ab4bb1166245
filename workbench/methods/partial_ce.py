"""Partial cross-entropy: learn only from the pixels that points, scribbles or boxes label.

The baseline every sparse-label method must beat (e.g. Tang et al., "Normalized cut loss
for weakly-supervised CNN segmentation", CVPR 2018, use it as their starting point).
Unlabelled pixels (254) and void (255) contribute nothing.

With ``crf_weight > 0`` it becomes partial CE + dense CRF loss (Tang et al., ECCV 2018, "On
regularized losses for weakly-supervised CNN segmentation"), in the local-window gated form of
Obukhov et al. 2019 (:func:`workbench.modeling.losses.crf_loss`): the literature's strongest single
addition for points and scribbles. Ours: the window (dilations 1, 2, 4) and the default sigmas.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import (
    check_class_weights,
    check_crf_config,
    check_loss_weights,
    crf_term,
    sparse_cross_entropy,
)

SUPERVISION = ("points", "scribbles", "boxes", "dense")


@dataclass(frozen=True)
class Config:
    """``crf_weight``: weight of the dense CRF loss (0: off, plain partial CE); ``crf_sigma_rgb`` (RGB
    [0, 1] units) and ``crf_sigma_xy`` (pixels) set its colour and position kernel."""

    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] = ()  # per-class CE weights (median frequency: SegNet's CamVid protocol)
    crf_weight: float = 0.0
    crf_sigma_rgb: float = 0.1
    crf_sigma_xy: float = 6.0

    def __post_init__(self) -> None:
        check_class_weights(self)
        check_loss_weights(self)
        check_crf_config(self)
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
    labelled = (batch["label"] < logits.shape[1]).float().mean()
    ce = sparse_cross_entropy(logits, batch["label"], config.label_smoothing, config.class_weights)
    crf = crf_term(logits, batch, config)
    return {"loss": ce + config.crf_weight * crf, "ce": ce.detach(), "crf": crf.detach(), "labelled_frac": labelled}


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images)

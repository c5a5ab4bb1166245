"""Losses shared by several methods."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from workbench.labels.weak_labels import IGNORE


def check_loss_weights(config) -> None:
    """Raise if a ``*_weight`` field of a method Config is negative: it would reward the loss it weights."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name.endswith("_weight") and value < 0:
            raise ValueError(f"{field.name} must be >= 0 (0 switches the term off), got {value}")


def sparse_cross_entropy(
    logits: torch.Tensor,
    label: torch.Tensor,
    label_smoothing: float = 0.0,
    class_weights: tuple[float, ...] = (),
) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels only.

    ``logits``: ``(B, C, H, W)``; ``label``: ``(B, H, W)`` int64 where values ``>= C``
    (``UNLABELED`` 254, ``IGNORE`` 255) contribute nothing. A batch without any labelled
    pixel gives a zero loss that still has a gradient path, not NaN. ``class_weights`` (one per
    class, e.g. :func:`workbench.data.dataset.median_frequency_weights`) weight each pixel by its
    class and average by the summed weights, as ``F.cross_entropy`` does.
    """
    num_classes = logits.shape[1]
    if label.shape != (logits.shape[0],) + logits.shape[2:]:
        raise ValueError(
            f"label must be (B, H, W) = {(logits.shape[0],) + tuple(logits.shape[2:])}, got {tuple(label.shape)}"
        )
    target = torch.where(label < num_classes, label, torch.full_like(label, IGNORE))
    if not (target != IGNORE).any():
        return logits.sum() * 0.0
    weight = None
    if class_weights:
        if len(class_weights) != num_classes:
            raise ValueError(
                f"class_weights has {len(class_weights)} entries for {num_classes} classes; give one per class"
            )
        weight = torch.tensor(class_weights, dtype=torch.float32, device=logits.device)
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE, label_smoothing=label_smoothing)


def check_class_weights(config) -> None:
    """``config.class_weights`` is empty (unweighted) or holds finite positive numbers."""
    bad = [w for w in config.class_weights if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0)]
    if bad:
        raise ValueError(
            f"class_weights must be finite positive numbers, one per class (or empty for none), got {bad[:3]}; "
            "train --class_weights=median_frequency computes them from the training labels"
        )


def crf_loss(
    probs: torch.Tensor,
    images: torch.Tensor,
    valid: torch.Tensor | None = None,
    dilations: tuple[int, ...] = (1, 2, 4),
    sigma_rgb: float = 0.1,
    sigma_xy: float = 6.0,
) -> torch.Tensor:
    """Dense (gated) CRF loss on a local window: the Potts relaxation ``sum_ij k_ij (1 - y_i . y_j)``.

    Tang et al. (ECCV 2018, "On regularized losses for weakly-supervised CNN segmentation") add a
    dense CRF energy on the softmax to partial cross-entropy; Obukhov et al. (2019, "Gated CRF loss")
    evaluate it on a local window and gate out pixels that must not take part. Here the window is
    the dilated neighbourhood of :mod:`workbench.modeling.affinity` and ``k_ij`` its colour + position
    Gaussian (``sigma_rgb`` in RGB [0, 1] units, ``sigma_xy`` in pixels), so neighbours of similar
    colour are pushed to the same class while label changes across colour edges cost little.

    ``probs``: ``(B, C, H, W)`` softmax (gradient flows through both ends of every pair);
    ``images``: ``(B, 3, H, W)`` ImageNet-normalised; ``valid``: ``(B, H, W)`` bool gate (e.g. not
    padding), pairs touching an invalid pixel are dropped. Returns the pair energies summed and
    divided by (valid pixels x window size), so it is at most 1 whatever the window: 0 when every
    valid pixel is one-hot on one class. Like every regularised loss it also rewards a constant
    prediction, so its weight must stay small next to the cross-entropy of a few clicks (weight
    1.0 with clicks on the synthetic set collapsed partial CE to one class).
    """
    from workbench.modeling.affinity import denormalize, neighbour_kernel, outside_zero

    if probs.shape[0] != images.shape[0] or probs.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"probs {tuple(probs.shape)} and images {tuple(images.shape)} must share (B, H, W)")
    if sigma_rgb <= 0 or sigma_xy <= 0:
        raise ValueError(f"sigma_rgb and sigma_xy must be > 0, got {sigma_rgb} and {sigma_xy}")
    probs = probs.float()
    kernel, offsets = neighbour_kernel(denormalize(images.float()), dilations, sigma_rgb, sigma_xy)
    gate = torch.ones_like(probs[:, :1]) if valid is None else valid[:, None].float()
    energy = probs.new_zeros(())
    for k, (other, other_gate) in enumerate(zip(outside_zero(probs, offsets), outside_zero(gate, offsets))):
        agree = (probs * other).sum(1)  # (B, H, W)
        energy = energy + (kernel[:, k] * gate[:, 0] * other_gate[:, 0] * (1.0 - agree)).sum()
    return energy / (gate.sum().clamp(min=1.0) * len(offsets))


def check_crf_config(config) -> None:
    """Raise unless a method Config's ``crf_sigma_rgb`` and ``crf_sigma_xy`` are positive."""
    if config.crf_sigma_rgb <= 0 or config.crf_sigma_xy <= 0:
        raise ValueError(
            f"crf_sigma_rgb and crf_sigma_xy must be > 0, got {config.crf_sigma_rgb} and {config.crf_sigma_xy}"
        )


def crf_term(logits: torch.Tensor, batch: dict, config) -> torch.Tensor:
    """``crf_loss`` of ``softmax(logits)`` with a method Config's ``crf_*`` fields; void pixels gated out.

    Zero (with a gradient path) when ``config.crf_weight`` is 0, so a switched-off term costs nothing.
    """
    if config.crf_weight == 0:
        return logits.sum() * 0.0
    valid = batch["label"] != IGNORE
    return crf_loss(logits.float().softmax(1), batch["image"], valid, sigma_rgb=config.crf_sigma_rgb,
                    sigma_xy=config.crf_sigma_xy)  # fmt: skip


def ramp(progress: float, start: float, end: float) -> float:
    """A loss weight's schedule over training ``progress`` (0..1): 0 before ``start``, linear to 1 at ``end``
    (a step to 1 at ``start`` when ``end <= start``)."""
    if progress < start:
        return 0.0
    return 1.0 if end <= start else min(1.0, (progress - start) / (end - start))

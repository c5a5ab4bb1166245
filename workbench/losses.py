"""Losses shared by several methods."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from workbench.weak_labels import IGNORE


def check_loss_weights(config) -> None:
    """Raise if a ``*_weight`` field of a method Config is negative: it would reward the loss it weights."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name.endswith("_weight") and value < 0:
            raise ValueError(f"{field.name} must be >= 0 (0 switches the term off), got {value}")


def sparse_cross_entropy(logits: torch.Tensor, label: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels only.

    ``logits``: ``(B, C, H, W)``; ``label``: ``(B, H, W)`` int64 where values ``>= C``
    (``UNLABELED`` 254, ``IGNORE`` 255) contribute nothing. A batch without any labelled
    pixel gives a zero loss that still has a gradient path, not NaN.
    """
    num_classes = logits.shape[1]
    if label.shape != (logits.shape[0],) + logits.shape[2:]:
        raise ValueError(
            f"label must be (B, H, W) = {(logits.shape[0],) + tuple(logits.shape[2:])}, got {tuple(label.shape)}"
        )
    target = torch.where(label < num_classes, label, torch.full_like(label, IGNORE))
    if not (target != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE, label_smoothing=label_smoothing)

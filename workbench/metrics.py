"""Segmentation metrics: first count a confusion matrix, then reduce it.

Confusion matrices are summed over images (and ranks); mIoU is computed once from the sum,
never averaged over images. Rows are ground truth, columns are predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` int64 counts; target pixels outside ``0..C-1`` (void, unlabelled) are skipped."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    valid = (target >= 0) & (target < num_classes)
    idx = target[valid].long() * num_classes + pred[valid].long().clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoU of each class; NaN for classes absent from both ground truth and predictions."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def harmonic(a: float, b: float) -> float:
    """Harmonic mean of base and novel mIoU (ours: SimFormer reports none)."""
    if math.isnan(a) or math.isnan(b) or a + b == 0:
        return float("nan") if (math.isnan(a) or math.isnan(b)) else 0.0
    return 2 * a * b / (a + b)


def summarize(cm: np.ndarray | torch.Tensor, classes: Sequence[str], novel: Sequence[int] = ()) -> dict:
    """mIoU, pixel and mean accuracy, per-class IoU; base / novel / harmonic mIoU when ``novel`` is given."""
    cm = np.asarray(cm, dtype=np.float64)
    iou = iou_per_class(cm)
    gt_total = cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(gt_total > 0, np.diag(cm) / gt_total, np.nan)
    out: dict[str, Any] = {
        "miou": _nanmean(iou),
        "pixel_acc": float(np.diag(cm).sum() / max(cm.sum(), 1)),
        "mean_acc": _nanmean(acc),
        "per_class_iou": {name: (None if math.isnan(v) else float(v)) for name, v in zip(classes, iou)},
        "pixels": int(cm.sum()),
    }
    if novel:
        base = [c for c in range(len(classes)) if c not in set(novel)]
        out["base_miou"] = _nanmean(iou[base])
        out["novel_miou"] = _nanmean(iou[list(novel)])
        out["harmonic_miou"] = harmonic(out["base_miou"], out["novel_miou"])
        out["novel_classes"] = [classes[c] for c in novel]
    return out


def format_summary(summary: dict) -> str:
    """A plain-text table of per-class IoU followed by the headline numbers."""
    width = max(len(n) for n in summary["per_class_iou"]) + 2
    novel = set(summary.get("novel_classes", []))
    lines = [f"{'class':<{width}} IoU"]
    for name, v in summary["per_class_iou"].items():
        tag = "  (novel)" if name in novel else ""
        lines.append(f"{name:<{width}} {'  n/a' if v is None else f'{v:.3f}'}{tag}")
    lines.append(f"{'mIoU':<{width}} {summary['miou']:.3f}")
    lines.append(f"{'pixel acc':<{width}} {summary['pixel_acc']:.3f}")
    for key in ("base_miou", "novel_miou", "harmonic_miou"):
        if key in summary:
            lines.append(f"{key.replace('_miou', ' mIoU'):<{width}} {summary[key]:.3f}")
    return "\n".join(lines)

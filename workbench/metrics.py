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


def miou_of(cms: np.ndarray) -> np.ndarray:
    """mIoU of each summed matrix in ``(..., C, C)`` (NaN classes skipped, as in :func:`summarize`)."""
    cms = np.asarray(cms, dtype=np.float64)
    tp = np.diagonal(cms, axis1=-2, axis2=-1)
    union = cms.sum(-1) + cms.sum(-2) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return np.nanmean(iou, axis=-1)


def bootstrap_paired_difference(
    image_cms_a: np.ndarray, image_cms_b: np.ndarray, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """mIoU(a) - mIoU(b) with a bootstrap interval over the evaluation images, paired.

    ``image_cms_*`` are ``(seeds, images, C, C)`` per-image confusion matrices of two rows on the
    same images in the same order. Each resample draws images with replacement (the same draw for
    both rows and every seed), sums the matrices per seed, and takes the difference of the seed-mean
    mIoUs: the interval is the uncertainty of evaluating on this finite set of images, for the
    seeds measured. The per-seed differences (seed i of a minus seed i of b) show the training noise.
    """
    a, b = np.asarray(image_cms_a, dtype=np.float64), np.asarray(image_cms_b, dtype=np.float64)
    if a.ndim != 4 or a.shape[1:] != b.shape[1:] or b.ndim != 4:
        raise ValueError(f"need (seeds, images, C, C) matrices on the same images, got {a.shape} and {b.shape}")
    n = a.shape[1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=samples)  # (samples, images)
    diffs = miou_of(np.einsum("kn,sncd->kscd", counts, a)).mean(1) - miou_of(
        np.einsum("kn,sncd->kscd", counts, b)
    ).mean(1)
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    per_seed_a, per_seed_b = miou_of(a.sum(1)), miou_of(b.sum(1))
    pairs = min(len(per_seed_a), len(per_seed_b))
    return {
        "difference": float(per_seed_a.mean() - per_seed_b.mean()), "low": float(low), "high": float(high),
        "level": level, "samples": samples, "images": n,
        "per_seed": [float(x - y) for x, y in zip(per_seed_a[:pairs], per_seed_b[:pairs])],
    }  # fmt: skip


def pseudo_label_counts(
    pseudo: torch.Tensor, label: torch.Tensor, gt: torch.Tensor, num_classes: int
) -> dict[str, int]:
    """Counts for the quality of pseudo labels against ground truth, over ``(B, H, W)`` maps.

    ``label`` holds the annotations (class ids, anything >= ``num_classes`` unannotated or void), ``pseudo``
    the method's labels (class ids or >= ``num_classes`` for none). Unannotated pixels with a ground-truth
    class are the ones scored: ``kept`` of them got a pseudo label, ``right`` a correct one.
    """
    scored = (label >= num_classes) & (gt < num_classes) & (label != 255)
    hit = scored & (pseudo < num_classes)
    annotated = (label < num_classes) & (gt < num_classes)
    return {
        "right": int((hit & (pseudo == gt)).sum()), "kept": int(hit.sum()), "open": int(scored.sum()),
        "annotated_right": int((annotated & (label == gt)).sum()), "annotated": int(annotated.sum()),
    }  # fmt: skip


def pseudo_label_scores(counts: dict[str, int]) -> dict[str, float]:
    """``pseudo_precision`` (right / kept), ``pseudo_coverage`` (kept / open) and ``label_precision``
    (annotations that agree with ground truth) from summed :func:`pseudo_label_counts`."""
    return {
        "pseudo_precision": counts["right"] / max(counts["kept"], 1),
        "pseudo_coverage": counts["kept"] / max(counts["open"], 1),
        "label_precision": counts["annotated_right"] / max(counts["annotated"], 1),
    }

"""Low-level image affinity shared by the sparse-label methods (single_stage, spml).

- :func:`denormalize` turns the loader's ImageNet-normalised images back into RGB in [0, 1]
  (superpixels and colour kernels want real colours);
- :func:`local_affinity` + :func:`propagate`: an image-guided filter, a few steps of
  ``F_i <- sum_j w_ij F_j`` over a sparse local window whose weights are a softmax of a
  colour + position kernel (PAR-style dilated neighbourhood, no dense ``HW x HW`` matrix);
- :func:`downsample_labels`: a label map at a coarser grid in which single labelled pixels
  (clicks) survive, where nearest-neighbour resizing would drop most of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.data.dataset import denormalize as denormalize  # re-exported: the methods import it from here
from workbench.labels.weak_labels import IGNORE, UNLABELED

DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def neighbour_offsets(dilations: tuple[int, ...]) -> list[tuple[int, int]]:
    """The centre plus the 8 directions at each dilation: ``1 + 8 * len(dilations)`` offsets."""
    return [(0, 0)] + [(dy * d, dx * d) for d in dilations for dy, dx in DIRECTIONS]


def shifted(x: torch.Tensor, offsets: list[tuple[int, int]]) -> list[torch.Tensor]:
    """``[x shifted by (dy, dx)]``: ``out[..., i, j] = x[..., i + dy, j + dx]`` with edge replication.

    ``x`` is ``(B, K, H, W)``; it is padded once and sliced per offset (views, no copies).
    """
    p = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p), mode="replicate") if p else x
    return [padded[..., p + dy : p + dy + h, p + dx : p + dx + w] for dy, dx in offsets]


def local_affinity(
    guide: torch.Tensor, dilations: tuple[int, ...], sigma_guide: float, sigma_space: float
) -> torch.Tensor:
    """Softmax weights ``(B, O, H, W)`` over the ``O`` neighbour offsets of every pixel.

    ``w_ij ∝ exp(-|g_i - g_j|^2 / sigma_guide^2 - |p_i - p_j|^2 / sigma_space^2)`` for ``j`` in the
    dilated window (``guide``: ``(B, K, H, W)``, e.g. RGB in [0, 1]; ``sigma_space`` in pixels).
    """
    offsets = neighbour_offsets(dilations)
    logits = [
        -(guide - other).pow(2).sum(1) / sigma_guide**2 - (dy * dy + dx * dx) / sigma_space**2
        for (dy, dx), other in zip(offsets, shifted(guide, offsets))
    ]  # each (B, H, W)
    return torch.stack(logits, 1).softmax(1)


def propagate(features: torch.Tensor, weights: torch.Tensor, dilations: tuple[int, ...], steps: int) -> torch.Tensor:
    """``steps`` rounds of ``F_i <- sum_j w_ij F_j``; ``features`` ``(B, D, H, W)``, ``weights`` from :func:`local_affinity`."""
    offsets = neighbour_offsets(dilations)
    if weights.shape[1] != len(offsets):
        raise ValueError(f"weights have {weights.shape[1]} offsets, dilations {dilations} give {len(offsets)}")
    for _ in range(steps):
        total = torch.zeros_like(features)  # summed in the same order as before: identical numbers, no stack
        for k, other in enumerate(shifted(features, offsets)):
            total = total + weights[:, k : k + 1] * other
        features = total
    return features


def downsample_labels(label: torch.Tensor, stride: int, num_classes: int) -> torch.Tensor:
    """``(B, H, W)`` label map -> ``(B, ceil(H/s), ceil(W/s))`` by majority of the *labelled* pixels of each cell.

    A cell with any labelled pixel takes the majority class among them (so clicks survive);
    otherwise ``UNLABELED`` if any pixel of the cell is valid, else ``IGNORE`` (all padding).
    """
    if stride == 1:
        return label
    labelled = (label < num_classes).unsqueeze(1)
    onehot = torch.zeros(label.shape[0], num_classes, *label.shape[1:], device=label.device)
    onehot.scatter_(1, label.clamp(max=num_classes - 1).unsqueeze(1), labelled.float())
    counts = F.avg_pool2d(onehot, stride, ceil_mode=True)  # (B, C, h, w)
    valid = F.max_pool2d((label != IGNORE).unsqueeze(1).float(), stride, ceil_mode=True)[:, 0] > 0
    best = counts.argmax(1)
    out = torch.where(valid, torch.full_like(best, UNLABELED), torch.full_like(best, IGNORE))
    return torch.where(counts.amax(1) > 0, best, out)


def neighbour_kernel(
    guide: torch.Tensor, dilations: tuple[int, ...], sigma_guide: float, sigma_space: float
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Unnormalised Gaussian kernel ``(B, O, H, W)`` to the ``O`` neighbours of every pixel (centre left out).

    ``k_ij = exp(-|g_i - g_j|^2 / 2 sigma_guide^2 - |p_i - p_j|^2 / 2 sigma_space^2)``, the colour +
    position kernel of a dense CRF restricted to a dilated window; neighbours outside the image get
    0 (no edge replication: a border pixel must not count itself again). Also returns the offsets.
    """
    offsets = neighbour_offsets(dilations)[1:]
    inside = outside_zero(torch.ones_like(guide[:, :1]), offsets)
    kernel = [
        torch.exp(-(guide - other).pow(2).sum(1) / (2 * sigma_guide**2) - (dy * dy + dx * dx) / (2 * sigma_space**2))
        * valid[:, 0]
        for (dy, dx), other, valid in zip(offsets, shifted(guide, offsets), inside)
    ]
    return torch.stack(kernel, 1), offsets


def outside_zero(x: torch.Tensor, offsets: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Like :func:`shifted` but with zeros where the neighbour falls outside the image."""
    p = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p)) if p else x
    return [padded[..., p + dy : p + dy + h, p + dx : p + dx + w] for dy, dx in offsets]

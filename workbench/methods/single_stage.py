"""Single-stage point supervision with on-the-fly pseudo-masks (Akiva & Dana, arXiv 2106.10309 / WACV 2023).

**Reconstruction** (METHODS.md §4, [recon]): no code was released and the paper body was not
available, so every component below is a reasonable design that fits the abstract, not the
authors' exact recipe. One network trains from scratch in one stage:

- an smp encoder-decoder with two heads on the last decoder feature map: the class head
  ``Y`` (``(B, C, H, W)``) and a pixel-embedding head ``F`` (``(B, D, H, W)``, L2-normalised);
- every iteration, without gradient, a pseudo-mask from the annotated pixels
  (:func:`pseudo_mask`): refine ``F`` with an image-guided filter (a few steps of local
  affinity propagation whose kernel mixes colour and position), take one anchor per class
  per ``anchor_cell`` grid cell among the labelled pixels (a click is one anchor; a scribble
  gives a few spread along it), and score every pixel ``x`` against every anchor ``p``::

      s_p(x) = exp(kappa * (cos(F~x, F~p) - 1)) * exp(-|c~x - c~p|^2 / 2 sigma_c^2) * exp(-|x - p|^2 / 2 sigma_p^2)

  (feature similarity, a colour kernel on the filtered image -- our addition, off with
  ``color_sigma=0`` -- and the spatial filter). A pixel takes the class of its best anchor
  when that score exceeds ``tau``, else it is ignored (``UNLABELED``); labelled pixels keep
  their own label, so a pseudo-mask never contradicts its points;
- loss ``CE_points(Y) + lambda(t) * CE_pseudo(Y)`` with ``lambda`` ramped linearly from 0 over
  ``[ramp_start, ramp_end]`` of training progress (random early features make garbage masks),
  plus a pixel-to-prototype contrastive term that trains ``F``: every labelled pixel (and,
  with ``embed_on_pseudo``, a sample of pseudo-labelled pixels, ramped the same way) is
  classified against the batch's class prototypes (mean embeddings of the labelled pixels)
  with temperature ``embed_temperature``.

Inference is the arg-max of ``Y`` (no CRF).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.affinity import denormalize, local_affinity, propagate
from workbench.losses import check_loss_weights, sparse_cross_entropy
from workbench.models import Backbone, build_smp
from workbench.weak_labels import IGNORE, UNLABELED

SUPERVISION = ("points", "scribbles")


@dataclass(frozen=True)
class Config:
    """Pseudo-mask knobs (``sigma_*`` of the filter in RGB [0, 1] units and pixels; ``spatial_sigma`` as
    a fraction of the image's longer side) and loss knobs. Paper values are unknown ([recon])."""

    embed_dim: int = 16
    refine_steps: int = 3
    refine_dilations: tuple[int, ...] = (1, 2, 4)
    filter_sigma_color: float = 0.1
    filter_sigma_space: float = 4.0
    feature_kappa: float = 10.0
    color_sigma: float = 0.3
    spatial_sigma: float = 0.25
    tau: float = 0.1
    anchor_cell: int = 8
    pseudo_weight: float = 1.0
    ramp_start: float = 0.1
    ramp_end: float = 0.4
    embed_weight: float = 0.5
    embed_temperature: float = 0.1
    embed_on_pseudo: bool = True
    embed_pseudo_pixels: int = 2048

    def __post_init__(self) -> None:
        check_loss_weights(self)
        if self.embed_dim < 2 or self.anchor_cell < 1 or self.refine_steps < 0 or self.embed_pseudo_pixels < 0:
            raise ValueError("embed_dim must be >= 2, anchor_cell >= 1, refine_steps and embed_pseudo_pixels >= 0")
        if min(self.filter_sigma_color, self.filter_sigma_space, self.spatial_sigma, self.embed_temperature) <= 0:
            raise ValueError("filter_sigma_color, filter_sigma_space, spatial_sigma and embed_temperature must be > 0")
        if self.color_sigma < 0 or self.feature_kappa < 0:
            raise ValueError("color_sigma and feature_kappa must be >= 0 (0 turns that kernel off)")
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {self.tau}")
        if not 0.0 <= self.ramp_start <= self.ramp_end <= 1.0:
            raise ValueError(f"need 0 <= ramp_start <= ramp_end <= 1, got {self.ramp_start}, {self.ramp_end}")


# ----------------------------------------------------------------------------- model


class SingleStageNet(nn.Module):
    """smp encoder-decoder with a class head and an embedding head on the last decoder features."""

    def __init__(self, backbone: Backbone, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.net = build_smp(backbone, num_classes)
        channels = self.net.segmentation_head[0].in_channels
        self.embed = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, embed_dim, 1)
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"logits": (B, C, H, W), "embed": (B, D, H, W) unit-norm}``."""
        decoded = self.net.decoder(self.net.encoder(images))
        logits = self.net.segmentation_head(decoded)
        embed = self.embed(decoded)
        if embed.shape[-2:] != logits.shape[-2:]:
            embed = F.interpolate(embed, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits, "embed": F.normalize(embed.float(), dim=1)}


def build(num_classes: int, config: Config, backbone: Backbone) -> nn.Module:
    return SingleStageNet(backbone, num_classes, config.embed_dim)


# ----------------------------------------------------------------------------- pseudo-masks (pure)


def select_anchors(label: torch.Tensor, num_classes: int, cell: int) -> tuple[torch.Tensor, ...]:
    """One labelled pixel per (grid cell, class) of an ``(H, W)`` label map: ``(rows, cols, classes)``, each ``(K,)``."""
    rows, cols = torch.nonzero(label < num_classes, as_tuple=True)
    classes = label[rows, cols]
    cells_per_row = -(-label.shape[1] // cell)
    key = ((rows // cell) * cells_per_row + cols // cell) * num_classes + classes
    _, inverse = torch.unique(key, return_inverse=True)
    order = torch.arange(len(key), device=label.device)
    first = torch.full((int(inverse.max()) + 1 if len(key) else 0,), len(key), device=label.device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    return rows[first], cols[first], classes[first]


def anchor_scores(
    feats: torch.Tensor, colour: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, config: Config
) -> torch.Tensor:
    """``(K, H*W)`` scores in [0, 1] of every pixel against ``K`` anchors of one image.

    ``feats``: ``(D, H, W)`` refined unit embeddings; ``colour``: ``(3, H, W)`` filtered RGB.
    """
    d, h, w = feats.shape
    flat = feats.reshape(d, -1)
    score = torch.exp(config.feature_kappa * (flat[:, rows * w + cols].T @ flat - 1.0))  # (K, HW)
    if config.color_sigma > 0:
        c = colour.reshape(3, -1)
        dist2 = (c[:, None, :] - c[:, rows * w + cols][:, :, None]).pow(2).sum(0)
        score = score * torch.exp(-dist2 / (2 * config.color_sigma**2))
    yy = torch.arange(h, device=feats.device, dtype=feats.dtype).repeat_interleave(w)
    xx = torch.arange(w, device=feats.device, dtype=feats.dtype).repeat(h)
    space2 = (yy[None] - rows[:, None]).pow(2) + (xx[None] - cols[:, None]).pow(2)
    sigma = config.spatial_sigma * max(h, w)
    return score * torch.exp(-space2 / (2 * sigma**2))


@torch.no_grad()
def refine(embed: torch.Tensor, images: torch.Tensor, config: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-guided filter: ``(B, D, H, W)`` unit embeddings and ``(B, 3, H, W)`` normalised images ->
    (refined unit embeddings, filtered RGB in [0, 1])."""
    rgb = denormalize(images.float())
    weights = local_affinity(rgb, config.refine_dilations, config.filter_sigma_color, config.filter_sigma_space)
    feats = propagate(embed.float(), weights, config.refine_dilations, config.refine_steps)
    colour = propagate(rgb, weights, config.refine_dilations, config.refine_steps)
    return F.normalize(feats, dim=1), colour


@torch.no_grad()
def pseudo_mask(
    embed: torch.Tensor, images: torch.Tensor, label: torch.Tensor, num_classes: int, config: Config = Config()
) -> torch.Tensor:
    """On-the-fly pseudo-mask ``(B, H, W)`` int64 from sparse labels (see the module docstring).

    ``embed``: ``(B, D, H, W)`` unit embeddings; ``images``: ``(B, 3, H, W)`` normalised;
    ``label``: ``(B, H, W)`` sparse labels (classes, 254 unlabelled, 255 void). Output: classes
    where confident, ``UNLABELED`` where not, ``IGNORE`` where ``label`` is void; every labelled
    pixel keeps its label.
    """
    if embed.shape[-2:] != label.shape[-2:] or images.shape[-2:] != label.shape[-2:]:
        raise ValueError(
            f"embed {tuple(embed.shape)}, images {tuple(images.shape)} and label {tuple(label.shape)} must share (H, W)"
        )
    feats, colour = refine(embed, images, config)
    out = torch.full_like(label, UNLABELED)
    for i in range(label.shape[0]):
        rows, cols, classes = select_anchors(label[i], num_classes, config.anchor_cell)
        if len(rows) == 0:
            continue
        best, which = anchor_scores(feats[i], colour[i], rows, cols, config).max(0)  # (HW,)
        assigned = torch.where(best > config.tau, classes[which], torch.full_like(which, UNLABELED))
        out[i] = assigned.reshape(label.shape[1:])
    out = torch.where(label < num_classes, label, out)
    return torch.where(label == IGNORE, label, out)


# ----------------------------------------------------------------------------- losses and training


def ramp(progress: float, start: float, end: float) -> float:
    """0 before ``start``, linear to 1 at ``end``."""
    if progress <= start:
        return 0.0
    return 1.0 if end <= start else min(1.0, (progress - start) / (end - start))


def prototype_contrast(
    embed: torch.Tensor, label: torch.Tensor, num_classes: int, temperature: float, extra=None
) -> torch.Tensor:
    """Pixel-to-prototype cross-entropy on labelled pixels.

    ``embed``: ``(B, D, H, W)`` unit; ``label``: ``(B, H, W)``. Prototypes are the normalised
    mean embeddings of each class's labelled pixels in the batch; each labelled pixel (plus the
    ``extra = (embeddings (N, D), classes (N,))`` pixels) is classified among them.
    """
    emb = embed.permute(0, 2, 3, 1).reshape(-1, embed.shape[1])
    lab = label.reshape(-1)
    keep = lab < num_classes
    if not keep.any():
        return embed.sum() * 0.0
    emb, lab = emb[keep], lab[keep]
    sums = torch.zeros(num_classes, emb.shape[1], device=emb.device, dtype=emb.dtype).index_add_(0, lab, emb)
    present = torch.bincount(lab, minlength=num_classes) > 0
    protos = F.normalize(sums[present], dim=1)  # (P, D)
    remap = torch.cumsum(present.long(), 0) - 1  # class -> prototype row
    if extra is not None:
        extra_emb, extra_cls = extra
        ok = present[extra_cls]
        emb, lab = torch.cat([emb, extra_emb[ok]]), torch.cat([lab, extra_cls[ok]])
    return F.cross_entropy(emb @ protos.T / temperature, remap[lab])


def _pseudo_sample(embed: torch.Tensor, pseudo: torch.Tensor, label: torch.Tensor, num_classes: int, n: int):
    """Up to ``n`` random pseudo-labelled (not annotated) pixels: ``(embeddings (N, D), classes (N,))``."""
    flat = pseudo.reshape(-1)
    idx = torch.nonzero((flat < num_classes) & (label.reshape(-1) >= num_classes), as_tuple=True)[0]
    idx = idx[torch.randperm(len(idx), device=idx.device)[:n]]
    emb = embed.permute(0, 2, 3, 1).reshape(-1, embed.shape[1])
    return emb[idx], flat[idx]


def training_step(model: SingleStageNet, batch: dict, config: Config) -> dict[str, torch.Tensor]:
    out = model(batch["image"])
    logits, embed, label = out["logits"], out["embed"], batch["label"]
    num_classes = logits.shape[1]
    point_loss = sparse_cross_entropy(logits, label)
    weight = ramp(float(batch.get("progress", 1.0)), config.ramp_start, config.ramp_end)
    pseudo_loss, coverage, extra = logits.sum() * 0.0, torch.zeros(()), None
    if weight > 0:
        pseudo = pseudo_mask(embed.detach(), batch["image"], label, num_classes, config)
        pseudo_loss = sparse_cross_entropy(logits, pseudo)
        coverage = (pseudo < num_classes).float().mean()
        if config.embed_on_pseudo and config.embed_pseudo_pixels:
            extra = _pseudo_sample(embed, pseudo, label, num_classes, round(weight * config.embed_pseudo_pixels))
    embed_loss = prototype_contrast(embed, label, num_classes, config.embed_temperature, extra)
    loss = point_loss + config.pseudo_weight * weight * pseudo_loss + config.embed_weight * embed_loss
    return {
        "loss": loss, "points": point_loss.detach(), "pseudo": pseudo_loss.detach(),
        "embed": embed_loss.detach(), "pseudo_coverage": coverage,
    }  # fmt: skip


def predict(model: SingleStageNet, images: torch.Tensor) -> torch.Tensor:
    """Class scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images)["logits"]

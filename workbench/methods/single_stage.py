"""Single-stage point supervision with on-the-fly pseudo-masks (Akiva & Dana, arXiv 2106.10309 / WACV 2023).

**Reconstruction** (METHODS.md §4, [recon]): no code was released and the paper body was not
available, so every component below is a reasonable design that fits the abstract, not the
authors' exact recipe. What follows the paper: one network, one stage, trained from its points
(or scribbles) plus pseudo-masks it makes on the fly by spreading each annotation over the pixels
whose features resemble it. Everything else is ours:

- an smp encoder-decoder with two heads on the last decoder feature map: the class head
  ``Y`` (``(B, C, H, W)``) and a pixel-embedding head ``F`` (``(B, D, H, W)``, L2-normalised);
- an **EMA teacher** (mean teacher: a copy of both heads whose weights follow the student's with
  decay ``ema_decay`` every step, BatchNorm statistics copied) makes the pseudo-masks, so a
  student never learns from its own noise of the same step;
- pseudo-mask from the annotated pixels (:func:`pseudo_targets`, no gradient): refine the
  teacher's ``F`` with an image-guided filter (a few steps of local affinity propagation whose
  kernel mixes colour and position), take one anchor per class per ``anchor_cell`` grid cell
  among the labelled pixels (a click is one anchor; a scribble gives a few spread along it), and
  score every pixel ``x`` against every anchor ``p``::

      s_p(x) = exp(kappa * (cos(F~x, F~p) - 1)) * exp(-|c~x - c~p|^2 / 2 sigma_c^2) * exp(-|x - p|^2 / 2 sigma_p^2)

  (feature similarity, a colour kernel on the filtered image -- off with ``color_sigma=0`` -- and
  the spatial filter). Each class scores the max over its anchors. A pixel takes its top class
  only when (1) that score exceeds ``tau``, (2) the **margin** between the top two classes'
  shares of the score, ``(s_1 - s_2) / (s_1 + s_2)``, reaches ``margin`` (a max over ~60 anchors
  almost always exceeds a fixed ``tau``: alone it does not filter), and (3) the teacher's class
  head ``Y`` agrees: its probability of that class is at least ``teacher_agreement`` times its
  top probability (1: it must be the arg-max; 0: off). A strict arg-max agreement kept ~1% of
  the pixels on the synthetic set (the teacher's class head, trained on clicks, is the weaker
  of the two early on); a share of 0.5 drops only pixels the teacher clearly gives elsewhere.
  Otherwise it stays
  ``UNLABELED``; labelled pixels keep their own label, so a pseudo-mask never contradicts its points;
- loss ``CE_points(Y) + pseudo_weight * lambda(t) * wCE_pseudo(Y)`` where ``wCE`` weights each
  pseudo pixel by its **confidence** (the margin share times the teacher's class-head probability
  of the pseudo class relative to its top class: 1 when they agree) and averages over the kept
  pixels, and ``lambda`` ramps linearly from 0 over ``[ramp_start, ramp_end]`` of training
  progress (random early features make garbage masks); plus a pixel-to-prototype contrastive term that trains ``F``: every labelled pixel (and,
  with ``embed_on_pseudo``, a sample of pseudo-labelled pixels, ramped the same way) is
  classified against the batch's class prototypes (mean embeddings of the labelled pixels) with
  temperature ``embed_temperature``; plus, with ``crf_weight > 0``, the dense CRF loss of
  :func:`workbench.modeling.losses.crf_loss` on ``softmax(Y)``.

Diagnostics, never a training signal: every step logs the pseudo-mask coverage (share of
unannotated valid pixels it labels) and mean confidence; :func:`train_diagnostics`, which the
engine calls after training on the training images with their ground truth, reports the
teacher's pseudo-mask precision and coverage against GT. Ground truth never enters a batch.

Inference is the arg-max of the student's ``Y`` (no CRF).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.metrics import pseudo_label_counts, pseudo_label_scores
from workbench.modeling.affinity import denormalize, local_affinity, propagate
from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import check_crf_config, check_loss_weights, crf_term, ramp, sparse_cross_entropy

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
    margin: float = 0.2
    teacher_agreement: float = 0.5
    ema_decay: float = 0.99
    anchor_cell: int = 8
    pseudo_weight: float = 1.0
    ramp_start: float = 0.1
    ramp_end: float = 0.4
    embed_weight: float = 0.5
    embed_temperature: float = 0.1
    embed_on_pseudo: bool = True
    embed_pseudo_pixels: int = 2048
    crf_weight: float = 0.0
    crf_sigma_rgb: float = 0.1
    crf_sigma_xy: float = 6.0

    def __post_init__(self) -> None:
        check_loss_weights(self)
        check_crf_config(self)
        if not 0.0 <= self.teacher_agreement <= 1.0:
            raise ValueError(
                f"teacher_agreement must be in [0, 1] (0: off, 1: the teacher's arg-max), got {self.teacher_agreement}"
            )
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1) (0 keeps every pixel above tau), got {self.margin}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: the teacher is the student), got {self.ema_decay}")
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


class Heads(nn.Module):
    """The teacher: a copy of the student's encoder-decoder and embedding head, never trained by gradient."""

    def __init__(self, net: nn.Module, embed: nn.Module) -> None:
        super().__init__()
        self.net, self.embed = net, embed
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return _heads(self.net, self.embed, images)


def _heads(net: Any, embed_head: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    decoded = net.decoder(net.encoder(images))
    logits = net.segmentation_head(decoded)
    embed = embed_head(decoded)
    if embed.shape[-2:] != logits.shape[-2:]:
        embed = F.interpolate(embed, size=logits.shape[-2:], mode="bilinear", align_corners=False)
    return {"logits": logits, "embed": F.normalize(embed.float(), dim=1)}


class SingleStageNet(nn.Module):
    """smp encoder-decoder with a class head and an embedding head on the last decoder features,
    and their EMA teacher (``teacher``, saved with the weights so a resumed run continues it)."""

    def __init__(self, backbone: Backbone, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.net = build_smp(backbone, num_classes)
        channels = self.net.segmentation_head[0].in_channels
        self.embed = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, embed_dim, 1)
        )
        self.teacher = Heads(copy.deepcopy(self.net), copy.deepcopy(self.embed))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"logits": (B, C, H, W), "embed": (B, D, H, W) unit}`` of the student."""
        return _heads(self.net, self.embed, images)

    @torch.no_grad()
    def update_teacher(self, decay: float) -> None:
        """``teacher <- decay * teacher + (1 - decay) * student`` for weights; buffers (BN statistics) copied."""
        student = [*self.net.parameters(), *self.embed.parameters()]
        for t, s in zip(self.teacher.parameters(), student):
            t.lerp_(s.detach(), 1.0 - decay)
        for tb, sb in zip(self.teacher.buffers(), [*self.net.buffers(), *self.embed.buffers()]):
            tb.copy_(sb)


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
def class_scores(
    embed: torch.Tensor, images: torch.Tensor, label: torch.Tensor, num_classes: int, config: Config = Config()
) -> torch.Tensor:
    """``(B, C, H, W)`` score of every pixel for every class: the max of :func:`anchor_scores` over
    that class's anchors (0 for a class without anchors in the image)."""
    if embed.shape[-2:] != label.shape[-2:] or images.shape[-2:] != label.shape[-2:]:
        raise ValueError(
            f"embed {tuple(embed.shape)}, images {tuple(images.shape)} and label {tuple(label.shape)} must share (H, W)"
        )
    feats, colour = refine(embed, images, config)
    b, h, w = label.shape
    out = torch.zeros(b, num_classes, h * w, device=embed.device)
    for i in range(b):
        rows, cols, classes = select_anchors(label[i], num_classes, config.anchor_cell)
        if len(rows) == 0:
            continue
        scores = anchor_scores(feats[i], colour[i], rows, cols, config).float()  # (K, HW)
        out[i].scatter_reduce_(0, classes[:, None].expand_as(scores), scores, reduce="amax")
    return out.reshape(b, num_classes, h, w)


@torch.no_grad()
def pseudo_targets(
    embed: torch.Tensor,
    images: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    config: Config = Config(),
    teacher_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-mask ``(B, H, W)`` int64 and per-pixel confidence ``(B, H, W)`` in [0, 1] (module docstring).

    ``embed``: ``(B, D, H, W)`` unit embeddings (the teacher's); ``images``: ``(B, 3, H, W)``
    normalised; ``label``: ``(B, H, W)`` sparse labels (classes, 254 unlabelled, 255 void);
    ``teacher_logits``: ``(B, C, H, W)`` the teacher's class head, for the agreement filter and the
    confidence (``None``: no agreement filter, confidence = margin share). Output: classes where
    kept, ``UNLABELED`` where not, ``IGNORE`` where ``label`` is void; every labelled pixel keeps
    its label with confidence 1.
    """
    scores = class_scores(embed, images, label, num_classes, config)
    top2, cls2 = scores.topk(min(2, num_classes), dim=1)
    s1 = top2[:, 0]
    s2 = top2[:, 1] if num_classes > 1 else torch.zeros_like(s1)
    share = (s1 - s2) / (s1 + s2).clamp(min=1e-12)
    cls = cls2[:, 0]
    keep = (s1 > config.tau) & (share >= config.margin)
    confidence = share
    if teacher_logits is not None:
        prob = teacher_logits.float().softmax(1)
        support = prob.gather(1, cls[:, None])[:, 0] / prob.amax(1)  # 1 when the teacher's arg-max agrees
        keep &= support >= config.teacher_agreement
        confidence = confidence * support
    out = torch.where(keep, cls, torch.full_like(cls, UNLABELED))
    annotated = label < num_classes
    out = torch.where(annotated, label, out)
    confidence = torch.where(annotated, torch.ones_like(confidence), confidence * keep)
    out = torch.where(label == IGNORE, label, out)
    return out, torch.where(label == IGNORE, torch.zeros_like(confidence), confidence)


def pseudo_mask(
    embed: torch.Tensor, images: torch.Tensor, label: torch.Tensor, num_classes: int, config: Config = Config()
) -> torch.Tensor:
    """The pseudo-mask of :func:`pseudo_targets` without a teacher class head: ``(B, H, W)`` int64."""
    return pseudo_targets(embed, images, label, num_classes, config)[0]


# ----------------------------------------------------------------------------- losses and training


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


def weighted_pseudo_ce(logits: torch.Tensor, pseudo: torch.Tensor, confidence: torch.Tensor,
                       label: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Cross-entropy on the pseudo-labelled (not annotated) pixels, each weighted by its confidence,
    averaged over those pixels: a half-sure pixel counts half."""
    num_classes = logits.shape[1]
    kept = (pseudo < num_classes) & (label >= num_classes)
    if not kept.any():
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float(), pseudo.clamp(max=num_classes - 1), reduction="none")
    return (ce * confidence)[kept].sum() / kept.sum()


def training_step(model: SingleStageNet, batch: dict, config: Config) -> dict[str, torch.Tensor]:
    out = model(batch["image"])
    logits, embed, label = out["logits"], out["embed"], batch["label"]
    num_classes = logits.shape[1]
    model.update_teacher(config.ema_decay)
    point_loss = sparse_cross_entropy(logits, label)
    weight = ramp(float(batch.get("progress", 1.0)), config.ramp_start, config.ramp_end)
    zero = logits.sum() * 0.0
    pseudo_loss, coverage, mean_conf, extra = zero, zero.detach(), zero.detach(), None
    if weight > 0:
        pseudo, confidence = teacher_pseudo_targets(model, batch, num_classes, config)
        pseudo_loss = weighted_pseudo_ce(logits, pseudo, confidence, label)
        open_ = (label >= num_classes) & (label != IGNORE)
        kept = (pseudo < num_classes) & open_
        coverage = kept.sum() / open_.sum().clamp(min=1)
        mean_conf = confidence[kept].mean() if kept.any() else zero.detach()
        if config.embed_on_pseudo and config.embed_pseudo_pixels:
            extra = _pseudo_sample(embed, pseudo, label, num_classes, round(weight * config.embed_pseudo_pixels))
    embed_loss = prototype_contrast(embed, label, num_classes, config.embed_temperature, extra)
    crf = crf_term(logits, batch, config)
    loss = (
        point_loss + config.pseudo_weight * weight * pseudo_loss + config.embed_weight * embed_loss
        + config.crf_weight * crf
    )  # fmt: skip
    return {
        "loss": loss, "points": point_loss.detach(), "pseudo": pseudo_loss.detach(),
        "embed": embed_loss.detach(), "crf": crf.detach(), "pseudo_coverage": coverage.detach(),
        "pseudo_confidence": mean_conf.detach(),
    }  # fmt: skip


@torch.no_grad()
def teacher_pseudo_targets(model: SingleStageNet, batch: dict, num_classes: int, config: Config):
    """Pseudo-mask and confidence ``(B, H, W)`` from the EMA teacher (eval mode: BN statistics, no dropout)."""
    teacher = model.teacher
    teacher.eval()
    t_out = teacher(batch["image"])
    return pseudo_targets(t_out["embed"], batch["image"], batch["label"], num_classes, config, t_out["logits"])


@torch.no_grad()
def train_diagnostics(model: SingleStageNet, dataset, device: torch.device, config: Config,
                      batch_size: int = 8) -> dict[str, float]:  # fmt: skip
    """Pseudo-mask quality of the teacher against ground truth on the training images (a report, not a signal).

    ``dataset`` yields ``image``, ``label`` (the sparse labels) and ``mask`` (GT, ``include_gt=True``)
    without augmentation. ``precision``: share of pseudo-labelled unannotated pixels whose class is
    right; ``coverage``: share of unannotated valid pixels that get a pseudo label; also the
    annotated pixels' own agreement with GT.
    """
    from torch.utils.data import DataLoader

    was_training = model.training
    model.eval()
    totals: Counter[str] = Counter()
    num_classes = model.net.segmentation_head[0].out_channels
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        pseudo, _ = teacher_pseudo_targets(model, batch, num_classes, config)
        totals.update(pseudo_label_counts(pseudo, batch["label"], batch["mask"], num_classes))
    model.train(was_training)
    return pseudo_label_scores(totals)


def predict(model: SingleStageNet, images: torch.Tensor) -> torch.Tensor:
    """Class scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images)["logits"]

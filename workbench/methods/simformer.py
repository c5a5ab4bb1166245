"""SimFormer: weak-shot segmentation by dual similarity transfer (METHODS.md §1).

Base classes have pixel labels; novel classes only image tags (``label`` holds novel pixels
as ``UNLABELED`` 254, void and padding as ``IGNORE`` 255). A MaskFormer-style model splits
segmentation into N proposals that each *classify* (K classes + "no object") and *segment*
(a mask = proposal embedding · pixel embeddings). Every class present is supervised through
classification; only base proposals get mask losses (and, by default, the novel class of an
image with exactly one novel tag: its mask is the not-base region), and the proposal-pixel
similarity transfers to novel proposals. Three more terms help the novel classes:

- the **complementary loss**: the union of the matched novel masks, floored at probability
  0.05, should cover exactly the not-base, not-void pixels;
- **SimNet**: an MLP on pairs of (detached) pixel features learns from cross-image base pixel
  pairs whether two pixels share a class;
- **distillation**: SimNet's pixel-pixel similarity is distilled into the cosine similarity
  of the novel class-score vectors of pixel pairs from images sharing a novel tag.

Shapes: images ``(B, 3, H, W)``; mask features ``F`` ``(B, D, H/4, W/4)``; per decoder layer
class logits ``(B, N, K+1)`` and mask logits ``(B, N, H/4, W/4)``.

Choices of ours (the paper's code differs or says nothing), all in this file:

- the backbone is smp's encoder + FPN decoder (``Backbone.arch`` is ignored); inputs are
  zero-padded (the mean colour) to a multiple of 32 and the mask features cropped back; the transformer decoder is ``torch.nn.TransformerDecoder`` (post-norm) with
  the learned queries as its input sequence and the sine positional encoding added to the
  projected deepest features (DETR adds positions to queries and keys only);
- tags are image-level (option (b) of §1.2): a crop may drop a tagged class;
- distillation samples only ``UNLABELED`` pixels (the paper's region also holds padding) and
  averages over pairs of points that really lie in that region;
- pairs are formed inside the batch (:func:`pair_partners`): any batch size works;
- by default the mask and complementary losses are computed at the mask resolution (H/4, with
  area-averaged soft targets so small objects keep theirs), 16x cheaper than the paper's full
  resolution (``full_resolution=true``);
- optimisation: the paper's full-model gradient clipping (L2 norm ``grad_clip=0.01``) and
  backbone learning rate x ``backbone_lr_scale=0.1`` (the smp encoder; pixel decoder,
  transformer and SimNet at the full rate); AdamW, learning rate and schedule are the
  engine's (one-cycle, ``--lr``), not the paper's 1e-4 with a poly schedule;
- the distillation teacher (SimNet under no-grad) normalises with *batch* statistics, as the
  official code does (its SimNet stays in training mode): ``teacher_bn="batch"``; unlike the
  official code the teacher's batches do not update BatchNorm's running statistics, which
  stay those of SimNet's own (base-pair) training. ``teacher_bn="running"`` uses them instead;
- ``single_novel_masks`` (default on, ours): in an image with exactly one novel tag the
  not-base region *is* that class's mask, so it is supervised (matched and trained) like a
  base mask. Images with two or more novel tags are left to the complementary loss and
  similarity transfer;
- ``partition`` (default off, ours): novel masks partition the not-base region. In each image,
  every pixel of the region is shared among the matched novel queries by a softmax across
  their mask logits (detached), and each query's mask is trained (focal + dice, weight
  ``partition_weight``) towards its share: the masks compete for pixels instead of all
  covering the whole region, which the complementary loss (a union) allows;
- ``simnet_pairs="base"`` (default ``"one_base"`` as the paper, ours): SimNet learns only from
  pairs of two base pixels. With ``"one_base"`` every pair that holds a novel pixel is a
  "different" pair, so SimNet can learn "a novel-looking pixel is different from everything";
  on the synthetic weak-shot set it then calls 97% of same-class novel pairs different
  (p(same) 0.09), and distillation pushes every novel score vector away from every other.
  With ``"base"`` it gives novel pairs p(same) 0.82 whatever their classes: from scratch the
  pixel features do not tell novel classes apart (synthetic, 20 epochs: novel 0.208 vs 0.202).
  From ImageNet features (Lite0) on the same set, ``"base"`` gives base / novel 0.727 / 0.201
  against 0.526 / 0.118 with ``"one_base"``; on MSRC-21 ``"one_base"`` does separate novel
  classes (p(same) 0.46 one class vs 0.17 two), so the paper's pairs stay the default;
- ``absent_weight`` (default 0, ours): image tags also say which novel classes are *absent*;
  ``-log(1 - max_q p_q(c))`` for each of them, per decoder layer. Unmatched queries otherwise
  learn "no object" only at ``no_object_weight`` 0.1, so where a novel class is in most images
  (the synthetic weak-shot set: each in about 2 of 3) one query predicts it in every image;

Defaults are sized for a CPU (16 queries, D=64, 3 decoder layers, 32 points per image); the
paper's values (100, 256, 6, 100, dropout 0.1, FFN 2048, 8 heads) are reachable by Config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import check_loss_weights

SUPERVISION = ("dense",)
FEATURE_STRIDE = 4  # mask features are at 1/4 of the input resolution
INPUT_MULTIPLE = 32  # smp's FPN needs sides divisible by 32 (and GroupNorm >= 2x2 at stride 32): inputs are
# padded to a multiple of 32 of at least 64, outputs cropped back
IGNORE_PROPOSAL_LOGIT = math.log(0.05 / 0.95)  # tau = logit(0.05): the complementary loss's fixed floor
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
SAMPLING_JITTER = 0.1  # "random sampling" = top-k of (region indicator + 0.1 * U(0, 1))
DECONFOUND_RARE_P = 0.01  # probability of pairing on the novel class with the fewest partners
DISTILL_MODES = ("cce", "ce")
TEACHER_BN_MODES = ("batch", "running")
SIMNET_PAIRS = ("one_base", "base")  # pairs SimNet learns from: at least one base pixel (paper), or both
MEMORY_STRIDES = (8, 16, 32)
DISTILL_CLAMP = 0.01
AFFINITY_CHUNK = 65536  # pixel pairs per SimNet call in simnet_affinity


@dataclass(frozen=True)
class Config:
    novel: tuple[int, ...] = ()  # novel class ids; the engine fills them from --protocol / --novel
    num_queries: int = 16  # paper 100
    hidden_dim: int = 64  # paper 256 (pixel decoder, transformer and mask embedding width)
    decoder_layers: int = 3  # paper 6
    heads: int = 4  # paper 8
    ffn_dim: int = 256  # paper 2048
    dropout: float = 0.0  # paper 0.1
    memory_stride: int = 32  # encoder stage the queries attend to: 32 (paper, res5), 16 or 8 for small images
    deep_supervision: bool = True  # losses on every decoder layer (paper) or only the last
    no_object_weight: float = 0.1
    class_weight: float = 1.0  # classification loss and matching cost
    mask_weight: float = 20.0  # focal term of the mask loss and matching cost
    dice_weight: float = 1.0
    complementary: bool = True  # ablation switch
    comp_weight: float = 0.2  # paper 0.15 (COCO) / 0.2 (ADE)
    simnet: bool = True  # train SimNet (its loss never reaches the segmenter)
    distillation: bool = True  # ablation switch; needs simnet
    sim_weight: float = 1.0
    dist_weight: float = 0.5  # paper 0.5 (ADE), 0.1 or 0 (COCO splits)
    dist_mode: str = "cce"  # "cce" (margin pull/push) or "ce" (clamped BCE)
    simnet_dim: int = 64  # paper 256
    simnet_blocks: int = 3
    points_per_image: int = 32  # paper 100
    common_fraction: float = 0.8  # share of SimNet points inside a base class common to both images
    balance_window: int = 25  # iterations of pair counts behind SimNet's class balance
    full_resolution: bool = False  # mask and complementary losses at the input size (paper) or at H/4 (16x cheaper)
    grad_clip: float = 0.01  # full-model gradient L2 norm clip (paper); 0 = off
    backbone_lr_scale: float = 0.1  # encoder learning rate = lr x this (paper 0.1)
    teacher_bn: str = "batch"  # distillation teacher's BatchNorm: "batch" statistics (official) or "running"
    single_novel_masks: bool = True  # one novel tag in an image: its not-base region is that class's mask
    partition: bool = False  # novel masks share the not-base region by a softmax across novel queries
    partition_weight: float = 1.0
    absent_weight: float = 0.0  # novel classes an image's tags rule out: -log(1 - max_q p_q(c)) (0: off)
    simnet_pairs: str = "one_base"  # SimNet's training pairs: at least one base pixel (paper) or "base" (both)

    def __post_init__(self) -> None:
        check_loss_weights(self)
        object.__setattr__(self, "novel", tuple(int(c) for c in self.novel))  # JSON gives lists back
        if self.hidden_dim % 32 or self.hidden_dim % self.heads:
            raise ValueError(
                f"hidden_dim must be a multiple of 32 (GroupNorm in smp's FPN) and of heads={self.heads}, "
                f"got {self.hidden_dim}"
            )
        for key in ("num_queries", "decoder_layers", "heads", "ffn_dim", "simnet_dim", "simnet_blocks",
                    "points_per_image", "balance_window"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.memory_stride not in MEMORY_STRIDES:
            raise ValueError(f"memory_stride must be one of {MEMORY_STRIDES}, got {self.memory_stride}")
        if self.dist_mode not in DISTILL_MODES:
            raise ValueError(f"dist_mode must be one of {DISTILL_MODES}, got {self.dist_mode!r}")
        if self.teacher_bn not in TEACHER_BN_MODES:
            raise ValueError(f"teacher_bn must be one of {TEACHER_BN_MODES}, got {self.teacher_bn!r}")
        if self.simnet_pairs not in SIMNET_PAIRS:
            raise ValueError(f"simnet_pairs must be one of {SIMNET_PAIRS}, got {self.simnet_pairs!r}")
        if self.grad_clip < 0 or not 0 < self.backbone_lr_scale <= 1:
            raise ValueError(
                f"grad_clip must be >= 0 (0: off) and backbone_lr_scale in (0, 1], "
                f"got {self.grad_clip} and {self.backbone_lr_scale}"
            )
        if self.distillation and not self.simnet:
            raise ValueError("distillation needs SimNet as its teacher: set simnet=true or distillation=false")
        if not 0.0 <= self.common_fraction <= 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("common_fraction must be in [0, 1] and dropout in [0, 1)")


# ----------------------------------------------------------------------------- model


def sine_position(height: int, width: int, dim: int, device: torch.device) -> torch.Tensor:
    """DETR's normalised sine positional encoding, ``(height * width, dim)``: half rows, half columns."""
    half = dim // 2
    rows = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 * math.pi
    cols = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    freq = 10000 ** (2 * (torch.arange(half, device=device) // 2) / half)
    pos_r = rows[:, None] / freq  # (h, half)
    pos_c = cols[:, None] / freq  # (w, half)
    pos_r = torch.stack([pos_r[:, 0::2].sin(), pos_r[:, 1::2].cos()], 2).flatten(1)
    pos_c = torch.stack([pos_c[:, 0::2].sin(), pos_c[:, 1::2].cos()], 2).flatten(1)
    return torch.cat([pos_r[:, None].expand(-1, width, -1), pos_c[None].expand(height, -1, -1)], -1).flatten(0, 1)


class MLP(nn.Module):
    """Mask-embedding head: ``layers`` linear layers with ReLU between them."""

    def __init__(self, dim: int, layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class ResidualBlock(nn.Module):
    """Two (1x1 conv = linear) - BN - ReLU layers plus a shortcut (a projection with ReLU when widths differ)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(cin, cout),
            nn.BatchNorm1d(cout),
            nn.ReLU(),
            nn.Linear(cout, cout),
            nn.BatchNorm1d(cout),
            nn.ReLU(),
        )
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(nn.Linear(cin, cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class SimNet(nn.Module):
    """``(P, 2D)`` concatenated pixel-feature pairs -> ``(P, 2)`` logits; softmax[:, 1] = same class."""

    def __init__(self, feature_dim: int, dim: int, blocks: int) -> None:
        super().__init__()
        widths = [2 * feature_dim] + [dim] * blocks
        self.blocks = nn.Sequential(*[ResidualBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.out = nn.Linear(dim, 2)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(pairs))


class SimFormer(nn.Module):
    """smp encoder + FPN pixel decoder + transformer decoder with learned queries + SimNet."""

    pair_counts: torch.Tensor  # buffers (register_buffer below), declared for the type checker
    pair_step: torch.Tensor

    def __init__(self, num_classes: int, config: Config, backbone: Backbone) -> None:
        super().__init__()
        d = config.hidden_dim
        fpn = build_smp(
            Backbone("FPN", backbone.encoder, backbone.encoder_weights), num_classes,
            decoder_pyramid_channels=d, decoder_segmentation_channels=d, decoder_dropout=0.0,
        )  # fmt: skip
        self.encoder, self.pixel_decoder = fpn.encoder, fpn.decoder  # smp's segmentation head is dropped
        self.mask_features = nn.Conv2d(d, d, 3, padding=1)
        self.memory_level = int(math.log2(config.memory_stride))  # smp encoders list features at strides 1, 2, ..., 32
        self.input_proj = nn.Conv2d(self.encoder.out_channels[self.memory_level], d, 1)
        self.query = nn.Embedding(config.num_queries, d)
        layer = nn.TransformerDecoderLayer(d, config.heads, config.ffn_dim, config.dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.decoder_layers, norm=nn.LayerNorm(d))
        self.class_head = nn.Linear(d, num_classes + 1)
        self.mask_embed = MLP(d)
        self.simnet = SimNet(d, config.simnet_dim, config.simnet_blocks)
        self.num_classes = num_classes
        # running (positive, negative) counts of SimNet pairs over the last iterations: the class balance
        self.register_buffer("pair_counts", torch.zeros(config.balance_window, 2), persistent=False)
        self.register_buffer("pair_step", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, images: torch.Tensor | None = None, pairs: torch.Tensor | None = None):
        """``logits (L, B, N, K+1)``, ``masks (L, B, N, H/4, W/4)`` per decoder layer, ``features (B, D, H/4, W/4)``.

        Given ``pairs (P, 2D)`` instead, SimNet's logits ``(P, 2)``: SimNet is called through
        ``forward`` so that wrappers (DistributedDataParallel, torch.compile) see every call.
        """
        if pairs is not None:
            return self.simnet(pairs)
        if images is None:
            raise ValueError("SimFormer needs images (or pairs for SimNet)")
        height, width = images.shape[-2:]
        pad_h, pad_w = (max(-side % INPUT_MULTIPLE, 2 * INPUT_MULTIPLE - side) for side in (height, width))
        padded = F.pad(images, (0, pad_w, 0, pad_h))  # 0 = the mean colour
        feats = self.encoder(padded)
        pixels = self.mask_features(self.pixel_decoder(feats))  # (B, D, H'/4, W'/4) of the padded input
        pixels = pixels[..., : math.ceil(height / FEATURE_STRIDE), : math.ceil(width / FEATURE_STRIDE)]
        deep = self.input_proj(feats[self.memory_level])  # (B, D, H/32, W/32) with the paper's memory_stride
        b, d, h, w = deep.shape
        memory = deep.flatten(2).transpose(1, 2) + sine_position(h, w, d, deep.device).to(deep.dtype)
        queries = self.query.weight[None].expand(b, -1, -1)
        logits, masks = [], []
        norm = cast(nn.Module, self.decoder.norm)  # built with a LayerNorm
        for layer in self.decoder.layers:
            queries = layer(queries, memory)
            out = norm(queries)  # (B, N, D)
            logits.append(self.class_head(out))
            masks.append(torch.einsum("bnd,bdhw->bnhw", self.mask_embed(out), pixels))
        return {"logits": torch.stack(logits), "masks": torch.stack(masks), "features": pixels}


def build(num_classes: int, config: Config, backbone: Backbone) -> nn.Module:
    return SimFormer(num_classes, config, backbone)


def param_groups(model: nn.Module, config: Config) -> list[dict]:
    """The encoder at ``backbone_lr_scale`` x the learning rate, everything else at 1x (the engine's hook)."""
    net = cast(SimFormer, model)
    encoder = {id(p) for p in net.encoder.parameters()}
    rest = [p for p in net.parameters() if id(p) not in encoder]
    return [{"params": list(net.encoder.parameters()), "lr_scale": config.backbone_lr_scale},
            {"params": rest, "lr_scale": 1.0}]  # fmt: skip


# ----------------------------------------------------------------------------- targets and matching


@dataclass(frozen=True)
class Targets:
    """One image's targets: classes with masks ``(T_masked, H, W)`` first (base classes, then the novel
    class of a one-novel-tag image), then the other tagged novel classes (tag only)."""

    classes: torch.Tensor  # (T,) int64
    masks: torch.Tensor  # (T_masked, H, W) float in [0, 1]

    @property
    def num_masked(self) -> int:
        return self.masks.shape[0]


def image_targets(
    label: torch.Tensor,
    tags: torch.Tensor,
    num_classes: int,
    novel: tuple[int, ...],
    size: tuple[int, int] | None = None,
    single_novel_masks: bool = False,
) -> Targets:
    """Base classes present in ``label (H, W)`` and the novel classes named by ``tags (C,)``.

    With ``single_novel_masks`` and exactly one novel tag, that class gets the ``UNLABELED``
    region as its mask. With ``size``, masks are area-averaged to it (soft targets), so that
    a small object still present in the label keeps a target at the mask resolution.
    """
    present = torch.unique(label)
    base = [int(c) for c in present if c < num_classes and int(c) not in novel]
    novel_present = [c for c in novel if tags[c] > 0]
    planes = [(label == c).float() for c in base]
    if single_novel_masks and len(novel_present) == 1:
        planes.append((label == UNLABELED).float())
    masks = torch.stack(planes) if planes else label.new_zeros((0,) + label.shape).float()
    if size is not None and tuple(size) != tuple(label.shape):
        masks = F.interpolate(masks[None], size=tuple(size), mode="area")[0]
    return Targets(torch.tensor(base + novel_present, dtype=torch.long, device=label.device), masks)


def not_base_region(label: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The complementary loss's target: 1 where a pixel is neither base nor void (``UNLABELED``).

    ``(B, H, W)`` label -> ``(B, H, W)`` float, or area-averaged to ``size`` (soft targets).
    Void and padding (``IGNORE``) count as 0, as base pixels do.
    """
    region = (label == UNLABELED).float()
    if size is not None and tuple(size) != tuple(label.shape[-2:]):
        region = F.interpolate(region[:, None], size=tuple(size), mode="area")[:, 0]
    return region


def pairwise_focal(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid focal loss of every prediction ``(N, P)`` against every target ``(T, P)``: ``(N, T)``."""
    prob = logits.sigmoid()
    pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * F.softplus(-logits)
    neg = (1 - FOCAL_ALPHA) * prob**FOCAL_GAMMA * F.softplus(logits)
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss of every prediction ``(N, P)`` against every target ``(T, P)``: ``(N, T)``."""
    prob = logits.sigmoid()
    inter = prob @ targets.T
    return 1 - (2 * inter + 1) / (prob.sum(1)[:, None] + targets.sum(1)[None] + 1)


@torch.no_grad()
def matching_cost(logits: torch.Tensor, mask_logits: torch.Tensor, targets: Targets, config: Config) -> torch.Tensor:
    """§1.4 cost ``(N, T)``: ``-p(c)`` for every target, ``+ 20 focal + 1 dice`` for targets with masks only.

    ``logits (N, K+1)``, ``mask_logits (N, h, w)``; base masks are nearest-downsampled to ``(h, w)``.
    """
    cost = -config.class_weight * logits.float().softmax(-1)[:, targets.classes]
    if targets.num_masked:
        gt = F.interpolate(targets.masks[None], size=mask_logits.shape[-2:], mode="nearest")[0].flatten(1)
        pred = mask_logits.float().flatten(1)
        mask_cost = config.mask_weight * pairwise_focal(pred, gt) + config.dice_weight * pairwise_dice(pred, gt)
        cost[:, : targets.num_masked] += mask_cost
    return cost


def hungarian(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost assignment of a ``(N, T)`` cost: ``(query indices, target indices)``, min(N, T) pairs."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


# ----------------------------------------------------------------------------- losses


def focal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss (alpha 0.25, gamma 2) averaged over pixels: ``(T, P), (T, P) -> (T,)``."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return (alpha_t * (1 - p_t) ** FOCAL_GAMMA * ce).mean(1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - (2 sum(p g) + 1) / (sum p + sum g + 1)`` per row: ``(T, P), (T, P) -> (T,)``."""
    prob = logits.sigmoid()
    return 1 - (2 * (prob * targets).sum(1) + 1) / (prob.sum(1) + targets.sum(1) + 1)


def complementary_loss(novel_mask_logits: torch.Tensor, region: torch.Tensor, config: Config) -> torch.Tensor:
    """§1.5.3 for one image: the union of its matched novel masks should be exactly the not-base region.

    ``novel_mask_logits (T_novel, H, W)``; ``region (H, W)`` from :func:`not_base_region` (not base,
    not void: unlabelled pixels are positives, void and padding negatives). The union is the
    pixel-wise max, floored at the fixed "ignore" logit ``logit(0.05)`` so that weak novel
    proposals are not pushed to -inf on base pixels.
    """
    union = novel_mask_logits.float().amax(0).clamp(min=IGNORE_PROPOSAL_LOGIT).flatten()[None]
    target = region.float().flatten()[None]
    return config.mask_weight * focal_loss(union, target)[0] + config.dice_weight * dice_loss(union, target)[0]


def partition_loss(novel_mask_logits: torch.Tensor, region: torch.Tensor, config: Config) -> torch.Tensor:
    """Novel masks ``(T_novel, H, W)`` towards their softmax share (across the queries, detached) of
    the not-base ``region (H, W)``: the shares sum to the region, so the masks partition it."""
    logits = novel_mask_logits.float().flatten(1)
    share = (logits.detach().softmax(0) * region.float().flatten()[None]).clamp(0, 1)
    return (config.mask_weight * focal_loss(logits, share) + config.dice_weight * dice_loss(logits, share)).mean()


def absent_class_loss(logits: torch.Tensor, tags: torch.Tensor, novel: tuple[int, ...]) -> torch.Tensor:
    """``-log(1 - max_q p_q(c))`` averaged over the novel classes ``c`` that an image's tags rule out:
    ``(B, N, K+1)`` logits, ``(B, K)`` tags. Unmatched queries otherwise learn "no object" only at
    ``no_object_weight``, so a novel class present in most images is predicted in every image."""
    top = logits.float().softmax(-1)[..., list(novel)].amax(1)  # (B, K_novel): the most confident query
    absent = (tags[:, list(novel)] <= 0).float()
    return (-torch.log1p(-top.clamp(max=1 - 1e-4)) * absent).sum() / absent.sum().clamp(min=1)


def layer_losses(
    logits: torch.Tensor, masks: torch.Tensor, targets: list[Targets], region: torch.Tensor, config: Config
) -> dict[str, torch.Tensor]:
    """Classification, mask, complementary (and partition) losses of one decoder layer.

    ``logits (B, N, K+1)``, ``masks (B, N, h, w)``, targets and ``region (B, H, W)`` at the loss
    resolution (masks are upsampled bilinearly when it is larger). Matching is per image.
    """
    b, n, k1 = logits.shape
    size = region.shape[-2:]
    class_target = torch.full((b, n), k1 - 1, dtype=torch.long, device=logits.device)  # "no object"
    novel = torch.tensor(config.novel, dtype=torch.long, device=logits.device)
    mask_terms, comp_terms, part_terms = [], [], []
    for i, tgt in enumerate(targets):
        if len(tgt.classes) == 0:
            continue
        queries, cols = hungarian(matching_cost(logits[i], masks[i], tgt, config))
        queries, cols = queries.to(logits.device), cols.to(logits.device)
        class_target[i, queries] = tgt.classes[cols]
        has_mask = cols < tgt.num_masked
        is_novel = torch.isin(tgt.classes[cols], novel)
        matched = masks[i][queries].float()  # (T_matched, h, w)
        if matched.shape[-2:] != size:
            matched = F.interpolate(matched[None], size=size, mode="bilinear", align_corners=False)[0]
        if has_mask.any():
            pred, gt = matched[has_mask].flatten(1), tgt.masks[cols[has_mask]].flatten(1)
            mask_terms.append(config.mask_weight * focal_loss(pred, gt) + config.dice_weight * dice_loss(pred, gt))
        if config.complementary and is_novel.any():
            comp_terms.append(complementary_loss(matched[is_novel], region[i], config))
        if config.partition and is_novel.sum() >= 2:
            part_terms.append(partition_loss(matched[is_novel], region[i], config))
    weight = torch.ones(k1, device=logits.device)
    weight[-1] = config.no_object_weight
    zero = logits.sum() * 0.0
    num_masked = max(sum(t.num_masked for t in targets), 1)
    out = {
        "cls": F.cross_entropy(logits.float().transpose(1, 2), class_target, weight=weight),
        "mask": torch.cat(mask_terms).sum() / num_masked if mask_terms else zero,
        "comp": torch.stack(comp_terms).mean() if comp_terms else zero,
    }
    if config.partition:
        out["part"] = torch.stack(part_terms).mean() if part_terms else zero
    return out


# ----------------------------------------------------------------------------- pairs, SimNet, distillation


def pair_partners(tags: torch.Tensor, label: torch.Tensor, novel: tuple[int, ...]) -> list[int]:
    """A partner in the batch for every image: the §1.6 "Deconf0.01" rules adapted to a batch.

    For image i with novel tags, pick one of them (with probability 0.01 the one with the fewest
    deconfounded partners, else uniformly) and a random image whose novel tags meet i's in exactly
    that class. If there is none, fall back to an image sharing any novel tag (we test the
    intersection; the paper's code tests whether i has >= 2 novel tags), then one sharing a base
    class, then any other image, then i itself (batch of one). Draws use torch's global RNG.
    """
    b, num_classes = tags.shape
    novel_sets = [{c for c in novel if tags[i, c] > 0} for i in range(b)]
    base_sets = [{int(c) for c in torch.unique(label[i]) if c < num_classes and int(c) not in novel} for i in range(b)]

    def pick(candidates: list[int]) -> int | None:
        return candidates[int(torch.randint(len(candidates), ()))] if candidates else None

    partners = []
    for i in range(b):
        others = [j for j in range(b) if j != i]
        deconfounded = {c: [j for j in others if novel_sets[j] & novel_sets[i] == {c}] for c in sorted(novel_sets[i])}
        choice = None
        if deconfounded:
            classes = sorted(deconfounded)
            if float(torch.rand(())) < DECONFOUND_RARE_P:
                cls = min(classes, key=lambda c: len(deconfounded[c]))
            else:
                cls = classes[int(torch.randint(len(classes), ()))]
            choice = pick(deconfounded[cls])
        fallbacks = (
            [j for j in others if novel_sets[j] & novel_sets[i]],
            [j for j in others if base_sets[j] & base_sets[i]],
            others,
        )
        for candidates in fallbacks:
            if choice is None:
                choice = pick(candidates)
        partners.append(i if choice is None else choice)
    return partners


def sample_points(region: torch.Tensor, allowed: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of (region + 0.1 U(0,1)) over allowed pixels of an ``(H, W)`` map: ``(flat indices (k,), inside (k,))``.

    Region pixels come first in random order, then random allowed pixels; ``inside`` marks the
    points that really lie in the region and are allowed (there may be fewer than k).
    """
    score = region.float() + SAMPLING_JITTER * torch.rand(region.shape, device=region.device)
    score = torch.where(allowed, score, torch.full_like(score, -1.0)).flatten()
    idx = score.topk(min(k, score.numel())).indices
    return idx, (region & allowed).flatten()[idx]


def gather_points(maps: torch.Tensor, idx: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinearly sample ``maps (C, h, w)`` at flat pixel indices of an ``(H, W)`` image: ``(k, C)``."""
    height, width = size
    rows, cols = idx // width, idx % width
    grid = torch.stack([(cols + 0.5) / width * 2 - 1, (rows + 0.5) / height * 2 - 1], -1)  # (x, y) in [-1, 1]
    out = F.grid_sample(maps[None].float(), grid[None, None].float(), align_corners=False)  # (1, C, 1, k)
    return out[0, :, 0].T


def pair_grid(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """All ordered pairs ``[fa_i; fb_j]`` of ``(Pa, D)`` and ``(Pb, D)`` features: ``(Pa * Pb, 2D)``, row-major."""
    pa, pb = fa.shape[0], fb.shape[0]
    return torch.cat([fa[:, None].expand(pa, pb, -1), fb[None].expand(pa, pb, -1)], -1).flatten(0, 1)


def _base_mask(label: torch.Tensor, num_classes: int, novel: tuple[int, ...]) -> torch.Tensor:
    return (label < num_classes) & ~torch.isin(label, torch.tensor(novel, dtype=label.dtype, device=label.device))


def _balance_weights(model: nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """``(w_0, w_1)`` = (fraction of positives, fraction of negatives) over the last ``balance_window`` steps."""
    net = cast(SimFormer, model)
    counts = torch.stack([(targets == 1).sum(), (targets == 0).sum()]).float()
    net.pair_counts[net.pair_step % net.pair_counts.shape[0]] = counts
    net.pair_step += 1
    pos, neg = net.pair_counts.sum(0)
    return torch.stack([pos, neg]) / (pos + neg).clamp(min=1)


def simnet_loss(model: nn.Module, out: dict, label: torch.Tensor, partners: list[int], config: Config) -> torch.Tensor:
    """§1.5.4: class-balanced BCE of SimNet on cross-image pixel pairs of which at least one is base.

    Per image, ``common_fraction`` of the points lie in a base class present in both images of
    the pair (in the whole base region when there is none), the rest anywhere else outside void
    (in the rest of the base region with ``simnet_pairs="base"``). Target: same label. Features are detached, so this loss trains SimNet only. Both orders
    (A->B and B->A) of every pair are used; SimNet runs once on all pairs of the batch.
    """
    feats, k, size = out["features"].detach(), cast(SimFormer, model).num_classes, label.shape[-2:]
    n_common = round(config.common_fraction * config.points_per_image)
    grids: list[torch.Tensor] = []
    target_parts: list[torch.Tensor] = []
    for i, j in enumerate(partners):
        base = [_base_mask(label[x], k, config.novel) for x in (i, j)]
        common = sorted(set(label[i][base[0]].unique().tolist()) & set(label[j][base[1]].unique().tolist()))
        cls = common[int(torch.randint(len(common), ()))] if common else None
        points = []
        for x, is_base in zip((i, j), base):
            inside = label[x] == cls if cls is not None else is_base
            allowed = label[x] != IGNORE
            idx_a, _ = sample_points(inside, allowed, n_common)
            rest = ~inside & (is_base if config.simnet_pairs == "base" else allowed)
            idx_b, _ = sample_points(rest, allowed, config.points_per_image - n_common)
            idx = torch.cat([idx_a, idx_b])
            ok = allowed.flatten()[idx]
            points.append((gather_points(feats[x], idx, size), label[x].flatten()[idx], is_base.flatten()[idx], ok))
        (fa, la, ba, oa), (fb, lb, bb, ob) = points
        either = (ba[:, None] & bb[None]) if config.simnet_pairs == "base" else (ba[:, None] | bb[None])
        valid = either & oa[:, None] & ob[None]  # (Pa, Pb): "different" is certain
        same = la[:, None] == lb[None]
        for first, second, v, s in ((fa, fb, valid, same), (fb, fa, valid.T, same.T)):
            grids.append(pair_grid(first, second)[v.flatten()])
            target_parts.append(s.flatten()[v.flatten()].long())
    pairs, targets = torch.cat(grids), torch.cat(target_parts)
    if targets.numel() < 2:  # BatchNorm needs two rows; nothing to learn from anyway
        return torch.stack([p.sum() for p in cast(SimFormer, model).simnet.parameters()]).sum() * 0.0
    weights = _balance_weights(model, targets)
    ce = F.cross_entropy(model(pairs=pairs).float(), targets, reduction="none")
    return (ce * weights[targets]).sum() / targets.numel()


def distill_term(student: torch.Tensor, teacher: torch.Tensor, mode: str) -> torch.Tensor:
    """Mean distillation loss of student similarities ``s`` towards teacher similarities ``t`` (both in [0, 1]).

    ``cce``: ``-max(t-1/2, 0) log(1+s) - max(1/2-t, 0) log(2-s)`` (pull above 1/2, push below);
    ``ce``: binary cross-entropy with both clamped to [0.01, 0.99].
    """
    if mode == "ce":
        s, t = student.clamp(DISTILL_CLAMP, 1 - DISTILL_CLAMP), teacher.clamp(DISTILL_CLAMP, 1 - DISTILL_CLAMP)
        return -(t * s.log() + (1 - t) * (1 - s).log()).mean()
    pull = (teacher - 0.5).clamp(min=0) * torch.log1p(student)
    push = (0.5 - teacher).clamp(min=0) * torch.log(2 - student)
    return -(pull + push).mean()


def novel_scores(logits: torch.Tensor, mask_logits: torch.Tensor, novel: tuple[int, ...]) -> torch.Tensor:
    """Novel class-score vectors ``v_c = sum_q softmax(Z_q)_c sigmoid(M_q)``: ``(N, K+1), (P, N) -> (P, K_novel)``."""
    return mask_logits.float().sigmoid() @ logits.float().softmax(-1)[:, list(novel)]


@contextmanager
def teacher_mode(simnet: nn.Module, bn: str):
    """SimNet as the distillation teacher: BatchNorm on ``"batch"`` statistics without updating the
    running ones (momentum 0), or on the ``"running"`` statistics (eval mode)."""
    was_training = simnet.training
    norms = [m for m in simnet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    if bn == "running":
        simnet.eval()
    else:
        simnet.train()
        for m in norms:
            m.momentum = 0.0
    try:
        yield simnet
    finally:
        simnet.train(was_training)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def distillation_loss(
    model: nn.Module,
    out: dict,
    label: torch.Tensor,
    tags: torch.Tensor,
    partners: list[int],
    config: Config,
    truth: torch.Tensor | None = None,
) -> torch.Tensor:
    """§1.5.5: SimNet's similarity (teacher, no grad, :func:`teacher_mode`) distilled into ``ReLU(cos(v_i, v_j))``.

    Only pairs of images sharing a novel tag; points are sampled in each image's ``UNLABELED``
    region, and only pairs of points that really lie in it count. ``truth`` (ground truth
    ``(B, H, W)``) replaces SimNet by a perfect teacher (1: same class, 0: not): a diagnostic
    ceiling of pixel-pixel transfer (``bench/simformer_teacher_ceiling.py``), never training.
    """
    logits, masks, feats = out["logits"][-1], out["masks"][-1], out["features"]
    size, terms = label.shape[-2:], []
    novel_tags = tags[:, list(config.novel)] > 0
    for i, j in enumerate(partners):
        if i == j or not (novel_tags[i] & novel_tags[j]).any():
            continue
        points = []
        for x in (i, j):
            region = label[x] == UNLABELED
            idx, inside = sample_points(region, region, config.points_per_image)
            v = novel_scores(logits[x], gather_points(masks[x], idx, size), config.novel)
            points.append((gather_points(feats[x].detach(), idx, size), v, inside, idx))
        (fa, va, oa, ia), (fb, vb, ob, ib) = points
        valid = (oa[:, None] & ob[None]).flatten()
        if valid.sum() < 2:
            continue
        if truth is not None:
            teacher = (truth[i].flatten()[ia][:, None] == truth[j].flatten()[ib][None]).float().flatten()
        else:
            with torch.no_grad(), teacher_mode(cast(SimFormer, model).simnet, config.teacher_bn):
                teacher = model(pairs=pair_grid(fa, fb)).float().softmax(-1)[:, 1]
        student = F.relu(F.cosine_similarity(va[:, None], vb[None], dim=-1)).flatten()
        terms.append(distill_term(student[valid], teacher[valid], config.dist_mode))
    return torch.stack(terms).mean() if terms else logits.sum() * 0.0


# ----------------------------------------------------------------------------- the method contract


def training_step(
    model: nn.Module, batch: dict, config: Config, truth: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``L = sum_layers [cls + mask + comp_weight comp] + sim_weight sim + dist_weight dist`` (§1.5).

    ``truth`` (``(B, H, W)`` ground truth) replaces SimNet as the distillation teacher: a ceiling of the
    pixel-pixel pathway for ``bench/simformer_teacher_ceiling.py``, never a training run's input."""
    out = model(batch["image"])
    label, tags = batch["label"], batch["tags"]
    size = tuple(label.shape[-2:] if config.full_resolution else out["masks"].shape[-2:])
    num_classes = cast(SimFormer, model).num_classes
    targets = [
        image_targets(label[i], tags[i], num_classes, config.novel, size, config.single_novel_masks)
        for i in range(label.shape[0])
    ]
    region = not_base_region(label, size)
    layers = range(out["logits"].shape[0]) if config.deep_supervision else [out["logits"].shape[0] - 1]
    logs: dict[str, Any] = {"cls": 0.0, "mask": 0.0, "comp": 0.0}  # tensors after the first layer
    if config.partition:
        logs["part"] = 0.0
    for layer in layers:
        terms = layer_losses(out["logits"][layer], out["masks"][layer], targets, region, config)
        logs = {k: logs[k] + terms[k] for k in logs}
    loss = config.class_weight * logs["cls"] + logs["mask"] + config.comp_weight * logs["comp"]
    if config.partition:
        loss = loss + config.partition_weight * logs["part"]
    if config.absent_weight and config.novel:
        logs["absent"] = sum(absent_class_loss(out["logits"][layer], tags, config.novel) for layer in layers)
        loss = loss + config.absent_weight * logs["absent"]
    if config.simnet or config.distillation:
        partners = pair_partners(tags, label, config.novel)
    if config.simnet:
        logs["sim"] = simnet_loss(model, out, label, partners, config)
        loss = loss + config.sim_weight * logs["sim"]
    if config.distillation and config.novel:
        logs["dist"] = distillation_loss(model, out, label, tags, partners, config, truth=truth)
        loss = loss + config.dist_weight * logs["dist"]
    return {"loss": loss, **logs}


def semantic_scores(logits: torch.Tensor, masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """§1.8: ``S_c = sum_q softmax(Z_q)_c sigmoid(M_q)`` without "no object", upsampled: ``(B, K, H, W)``."""
    probs = logits.float().softmax(-1)[..., :-1]  # (B, N, K)
    scores = torch.einsum("bnk,bnhw->bkhw", probs, masks.float().sigmoid())
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images (final decoder layer)."""
    out = model(images)
    return semantic_scores(out["logits"][-1], out["masks"][-1], images.shape[-2:])


# ----------------------------------------------------------------------------- for the dashboard


@torch.no_grad()
def proposals(model: nn.Module, image: torch.Tensor) -> list[dict]:
    """Every query's proposal for one normalised ``(3, H, W)`` image, best first.

    Each is ``{"mask": (H, W) float32 numpy in [0, 1], "cls": int, "score": float, "no_object": float}``
    where ``cls`` is the most probable real class and ``score`` its probability.
    """
    was_training = model.training
    model.eval()
    out = model(image[None])
    model.train(was_training)
    probs = out["logits"][-1, 0].float().softmax(-1)  # (N, K+1)
    score, cls = probs[:, :-1].max(-1)
    masks = F.interpolate(out["masks"][-1].float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
    probs_np = masks[0].sigmoid().cpu().numpy()
    order = torch.argsort(score, descending=True).tolist()
    return [
        {"mask": probs_np[q], "cls": int(cls[q]), "score": float(score[q]), "no_object": float(probs[q, -1])}
        for q in order
    ]


@torch.no_grad()
def pixel_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Mask features bilinearly upsampled to the image size, ``(B, D, H, W)``: what SimNet compares."""
    was_training = model.training
    model.eval()
    feats = model(images)["features"].float()
    model.train(was_training)
    return F.interpolate(feats, size=images.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def simnet_affinity(
    model: nn.Module, features: torch.Tensor, row: int, col: int, other: torch.Tensor | None = None
) -> torch.Tensor:
    """SimNet's same-class probability between pixel ``(row, col)`` and every pixel: ``(D, H, W) -> (H, W)``.

    ``features`` is one image of :func:`pixel_features`; pass ``other`` (another image's
    ``(D, H', W')`` features) for a cross-image map of shape ``(H', W')``, as SimNet is trained.
    Both pair orders are averaged; SimNet runs in eval mode.
    """
    d, h, w = features.shape
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"pixel ({row}, {col}) is outside the {h}x{w} feature map")
    other = features if other is None else other
    if other.shape[0] != d:
        raise ValueError(f"other has {other.shape[0]} feature channels, features has {d}; use the same model")
    simnet = cast(SimFormer, model).simnet
    was_training = simnet.training
    simnet.eval()
    targets = other.flatten(1).T  # (H'*W', D)
    query = features[:, row, col][None].expand_as(targets)
    sims = []
    for start in range(0, len(targets), AFFINITY_CHUNK):
        q, o = query[start : start + AFFINITY_CHUNK], targets[start : start + AFFINITY_CHUNK]
        ab = simnet(torch.cat([q, o], 1)).float().softmax(-1)[:, 1]
        ba = simnet(torch.cat([o, q], 1)).float().softmax(-1)[:, 1]
        sims.append((ab + ba) / 2)
    simnet.train(was_training)
    return torch.cat(sims).view(other.shape[1:])


@torch.no_grad()
def simnet_pair_report(
    model: nn.Module, images: torch.Tensor, label: torch.Tensor, novel: Sequence[int], points: int = 200, seed: int = 0
) -> dict[str, float | None]:
    """SimNet's mean p(same) on cross-image pixel pairs of images ``(0, 1), (2, 3), ...``, by the pairs'
    ground truth: ``base_same``, ``base_diff`` (two base pixels of one class / of two), ``novel_same``,
    ``novel_diff`` (two novel pixels). Distillation trusts SimNet on novel pairs, so a small gap
    between ``novel_same`` and ``novel_diff`` means no pixel-pixel transfer. A diagnostic against
    ground truth (``label`` with novel classes visible), never a training signal; SimNet in eval mode.
    """
    net = cast(SimFormer, model)
    was_training = net.training
    net.eval()
    features = net(images)["features"]
    generator = torch.Generator().manual_seed(seed)
    size, k = label.shape[-2:], net.num_classes
    is_novel = torch.zeros(k + 1, dtype=torch.bool)
    is_novel[list(novel)] = True
    sums: dict[str, list[float]] = {key: [0.0, 0.0] for key in ("base_same", "base_diff", "novel_same", "novel_diff")}
    for a in range(0, len(images) - 1, 2):
        sampled = []
        for x in (a, a + 1):
            idx = torch.randperm(size[0] * size[1], generator=generator)[:points].to(label.device)
            cls = label[x].flatten()[idx]
            keep = cls < k
            sampled.append((gather_points(features[x], idx[keep], size), cls[keep].cpu()))
        (fa, la), (fb, lb) = sampled
        if not len(la) or not len(lb):
            continue
        p_same = net.simnet(pair_grid(fa, fb)).float().softmax(-1)[:, 1].cpu()
        same = (la[:, None] == lb[None]).flatten()
        for kind, both in (("base", ~is_novel[la][:, None] & ~is_novel[lb][None]),
                           ("novel", is_novel[la][:, None] & is_novel[lb][None])):  # fmt: skip
            for name, chosen in (("same", both.flatten() & same), ("diff", both.flatten() & ~same)):
                sums[f"{kind}_{name}"][0] += float(p_same[chosen].sum())
                sums[f"{kind}_{name}"][1] += int(chosen.sum())
    net.train(was_training)
    return {key: (total / count if count else None) for key, (total, count) in sums.items()}


# ----------------------------------------------------------------------------- optional retraining (§1.7 S2/S3)


def pseudo_label(scores: torch.Tensor, label: torch.Tensor, tags: torch.Tensor, novel: tuple[int, ...]) -> torch.Tensor:
    """S2 rule for one image: ``(C, H, W)`` scores, ``(H, W)`` given label, ``(C,)`` tags -> ``(H, W)`` uint8.

    Start from all ``IGNORE``; pixels whose argmax is a *tagged* novel class get it (absent novel
    classes are dropped); every base pixel of the given label is copied over, base wins.
    """
    pred = scores.argmax(0)
    out = torch.full(label.shape, IGNORE, dtype=torch.uint8, device=label.device)
    for c in novel:
        if tags[c] > 0:
            out[pred == c] = c
    base = label < scores.shape[0]
    out[base] = label[base].to(torch.uint8)
    return out


@torch.no_grad()
def write_pseudo_label_dataset(
    model: nn.Module, data: str | Path, split_novel: tuple[int, ...], size: tuple[int, int], out: str | Path
) -> Path:
    """S2 as files: a dataset folder whose ``train`` masks are pseudo labels, for retraining (S3).

    ``out/images`` links to the original images, ``out/masks/val`` to the original validation
    masks, ``out/masks/train`` holds one PNG index mask per training image at its original size
    (base pixels from the given masks, tagged novel classes from the model at ``size``, the rest
    void 255). Retrain on it *without* a protocol (novel classes now have masks), e.g.
    ``python -m workbench train --method simformer --data OUT --simnet=false --distillation=false``,
    and evaluate with ``python -m workbench eval --checkpoint RUN --data ORIGINAL --protocol NAME``.
    """
    import json

    from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
    from workbench.inference import predict_scores
    from workbench.io import save_index_png
    from workbench.labels.splits import ClassSplit

    info, out = load_dataset_info(data), Path(out)
    split = ClassSplit(info.classes, tuple(split_novel))
    (out / info.mask_dir / "train").mkdir(parents=True, exist_ok=True)
    doc = info.to_json_dict() | {"ignore_index": IGNORE, "description": f"SimFormer pseudo labels for {info.name}"}
    (out / "dataset.json").write_text(json.dumps(doc, indent=1))
    for link, target in ((out / info.image_dir, info.root / info.image_dir),
                         (out / info.mask_dir / "val", info.root / info.mask_dir / "val")):  # fmt: skip
        if not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=True)
    was_training = model.training
    model.eval()
    for name in list_split(info, "train"):
        image = read_image(info.image_path("train", name))
        mask = read_mask(info.mask_path("train", name), info, shape=image.shape[:2])
        tags = torch.zeros(info.num_classes)
        tags[[c for c in np.unique(mask).tolist() if c < info.num_classes]] = 1.0
        scores = predict_scores(predict, model, image, size).cpu()
        given = torch.from_numpy(split.hide_novel(mask).astype(np.int64))
        save_index_png(out / info.mask_dir / "train" / f"{name}{info.mask_ext}",
                       pseudo_label(scores, given, tags, split.novel).numpy(), info.colors)  # fmt: skip
    model.train(was_training)
    return out

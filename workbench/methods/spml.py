"""SPML: universal weakly supervised segmentation by pixel-to-segment contrastive learning
(Ke, Hwang, Yu, ICLR 2021), METHODS.md §2.

One learner for tags, boxes, points and scribbles:

- an smp encoder-decoder maps each pixel to a unit-norm embedding ``(B, D, H, W)`` (smp's
  segmentation head with ``D`` outputs plays the "conv to D"; D=32 here, 64 in the paper);
- every iteration each image is over-segmented on a stride-``loss_stride`` grid: spherical
  k-means of ``normalize([e; location])`` from a ``kmeans_grid`` x ``kmeans_grid`` grid
  initialisation, intersected with low-level superpixels (skimage SLIC or felzenszwalb on the
  de-normalised image; the paper uses HED-owt-ucm) and with the labels;
- each pixel is contrasted against segment prototypes with the SegSort+ softmax loss
  (:func:`segsort_loss`) under four relations, each with its own switch, weight and
  concentration: image similarity (same superpixel, per image, location-augmented
  prototypes), semantic annotation (same label), co-occurrence (images whose tags
  intersect) and feature affinity (pseudo label from the nearest labelled segment of the
  same image with cosine >= ``affinity_threshold``; inactive in the authors' release, off
  by default here too);
- a memory bank keeps the detached prototypes, labels and tags of the last
  ``memory_iterations`` iterations for the semantic, co-occurrence and affinity terms;
- a softmax classifier (conv3x3 D->2D, BN, ReLU, dropout, conv1x1 2D->C) trained with CE on
  the labels, added to the semantic term (§2.5 "extra CE term"); ``predict`` returns its scores.
  The paper feeds it *detached* embeddings (``detach_classifier=True``).

Label conventions (§2.2): ``IGNORE`` (255, padding/void) pixels are dropped from clustering
and every loss; ``UNLABELED`` (254) pixels are valid: they are clustered and take part in the
image-similarity, co-occurrence and affinity terms, but not in the annotation term or CE.

Differences from the paper, in one run on a small CPU budget (documented choices):

- *Every labelled pixel* takes part in the semantic term (``sample_pixels`` always keeps them);
  ``pixels_per_image`` random pixels more are drawn for the other terms. With a fixed random
  sample the term saw about a third of the clicks.
- *Co-occurrence without near-universal classes*: SPML leaves background out of the tag sets, or
  every VOC pair would co-occur. Our datasets have no background class but do have classes in
  nearly every image (CamVid road, sky, building), which made every pair co-occur and the term
  identically 0. Classes whose share of the images seen so far (``tag_counts`` /
  ``image_count`` buffers, saved with the weights) reaches ``cooccurrence_common`` are left out
  of the tag sets of this term (1.0: only classes in every image); :func:`cooccurrence_positives`.
- *Class signal reaches the backbone*: by default (``detach_classifier=False``, ours) the CE of
  the classifier (and its pseudo-label CE) back-propagates into the embedding network. Trained
  from scratch with a detached classifier, no class signal reaches the backbone, and the walk
  spreads classes over embeddings that never learnt them.
- *SPML's own point setting* is :meth:`Config.paper_points` (weights 0.1 / 0.1 / 0.1,
  co-occurrence kappa 8, detached classifier) with dilated points (``--point_radius``, SPML uses
  6 px at 512 crops, about 2 px at 160 wide); from the CLI:
  ``--image_weight=0.1 --semantic_weight=0.1 --cooccurrence_weight=0.1 --cooccurrence_kappa=8
  --detach_classifier=true --point_radius=2``.
- *Dense CRF loss* (ours, off by default): ``crf_weight > 0`` adds
  :func:`workbench.modeling.losses.crf_loss` on the classifier's softmax (in place of SPML's DenseCRF
  post-processing of the pseudo labels).

- *Classifier stage*: instead of separate stages (freeze the embedding, make pseudo labels
  offline, retrain the classifier), from ``pseudo_start`` of training progress the classifier
  also learns from pseudo labels made on the fly without gradient: a random walk over
  embedding affinity (:func:`random_walk`, §2.6 "cam_rw", seeds = the classifier's softmax
  normalised per class by its max and masked to the tags) or kNN retrieval over the memory
  bank's labelled prototypes (:func:`knn_labels`). No DenseCRF.
- *Tags and boxes*: seeds come from CAMs (:mod:`workbench.methods.cam`) of a GAP + linear tag
  classifier on the deepest encoder features, trained jointly with BCE (the paper uses SEAM
  CAMs from a separate network). Tags: arg-max tag class where the normalised CAM reaches
  ``cam_bg_threshold``, else unlabelled (there is no background class in our datasets).
  Boxes: ``cam.box_pseudo_mask`` (CAM of the box class normalised inside its boxes,
  threshold ``box_threshold``). CAM seeds start at ``cam_start`` of training progress.
  ``seed_source="auto"`` uses CAM tag seeds for images without any labelled pixel and the
  labels otherwise; boxes need ``seed_source="cam_boxes"`` (a rasterised box map looks like
  any other label map).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import cam
from workbench.metrics import pseudo_label_counts, pseudo_label_scores
from workbench.modeling.affinity import denormalize, downsample_labels
from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import check_crf_config, check_loss_weights, crf_term, sparse_cross_entropy

SUPERVISION = ("points", "scribbles", "boxes", "tags")
SEED_SOURCES = ("auto", "labels", "cam_tags", "cam_boxes")
SUPERPIXEL_KINDS = ("slic", "felzenszwalb")
PSEUDO_SOURCES = ("walk", "knn")
MAX_KAPPA = 50.0  # exp(50) * 1e6 segments still fits float32
CACHE_LIMIT = 4096  # superpixel maps kept per model (an epoch of a few thousand images)


@dataclass(frozen=True)
class Config:
    """Defaults are small CPU settings; the paper's (VOC) values are in METHODS.md §2.3-2.6:
    ``embed_dim=64``, ``kmeans_grid=6``, ``kmeans_iterations=10``, kappas 16/6/8-12/12, weights per
    annotation (tags 0.1/0.3/0.3, boxes 0.1/0.3/0.3, scribbles 0.1/1.0/0.5, points 0.1/0.1/0.1 for
    image/semantic/co-occurrence), ``classifier_dropout=0.75``, walk ``beta=20`` with 6 squarings."""

    embed_dim: int = 32
    loss_stride: int = 4
    pixels_per_image: int = 400  # random pixels per image on top of every labelled one (0: all)
    kmeans_grid: int = 6
    kmeans_iterations: int = 10
    location_weight: float = 1.0
    superpixels: str = "slic"
    superpixel_segments: int = 64  # SLIC: approximate count
    superpixel_compactness: float = 10.0  # SLIC
    superpixel_scale: float = 50.0  # felzenszwalb
    use_image: bool = True
    image_weight: float = 0.1
    image_kappa: float = 16.0
    use_semantic: bool = True
    semantic_weight: float = 1.0
    semantic_kappa: float = 6.0
    use_cooccurrence: bool = True
    cooccurrence_weight: float = 0.5
    cooccurrence_kappa: float = 12.0
    cooccurrence_common: float = 0.9  # leave out of the tag sets classes in this share of images or more
    use_affinity: bool = False
    affinity_weight: float = 0.5
    affinity_kappa: float = 12.0
    affinity_threshold: float = 0.95
    memory_iterations: int = 2
    classifier_dropout: float = 0.1
    detach_classifier: bool = False  # paper: True (the classifier never trains the embedding)
    pseudo_start: float = 0.5  # progress at which the classifier also learns from pseudo labels (1: never)
    pseudo_weight: float = 1.0
    pseudo_source: str = "walk"
    walk_stride: int = 8
    walk_beta: float = 20.0
    walk_squarings: int = 6
    knn_k: int = 20
    seed_source: str = "auto"
    cam_weight: float = 1.0
    cam_start: float = 0.3
    cam_bg_threshold: float = 0.2
    box_threshold: float = 0.5
    crf_weight: float = 0.0
    crf_sigma_rgb: float = 0.1
    crf_sigma_xy: float = 6.0

    @classmethod
    def paper_points(cls, **changes) -> Config:
        """SPML's point setting (METHODS.md §2.5): weights 0.1 / 0.1 / 0.1 for image / semantic /
        co-occurrence, co-occurrence kappa 8, classifier on detached embeddings. Train it with
        dilated points (``TrainConfig(point_radius=...)``)."""
        paper = dict(image_weight=0.1, semantic_weight=0.1, cooccurrence_weight=0.1, cooccurrence_kappa=8.0,
                     detach_classifier=True)  # fmt: skip
        return cls(**{**paper, **changes})

    def __post_init__(self) -> None:
        check_loss_weights(self)
        check_crf_config(self)
        if not 0.0 < self.cooccurrence_common <= 1.0:
            raise ValueError(
                f"cooccurrence_common must be in (0, 1] (1: only classes in every image), got {self.cooccurrence_common}"
            )
        for key, allowed in (
            ("superpixels", SUPERPIXEL_KINDS), ("seed_source", SEED_SOURCES), ("pseudo_source", PSEUDO_SOURCES)
        ):  # fmt: skip
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        for key in ("embed_dim", "loss_stride", "kmeans_grid", "walk_stride", "knn_k", "superpixel_segments"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if min(self.pixels_per_image, self.kmeans_iterations, self.memory_iterations, self.walk_squarings) < 0:
            raise ValueError("pixels_per_image, kmeans_iterations, memory_iterations and walk_squarings must be >= 0")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {self.classifier_dropout}")
        for key in ("pseudo_start", "cam_start", "cam_bg_threshold", "box_threshold"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        for key in ("image_kappa", "semantic_kappa", "cooccurrence_kappa", "affinity_kappa"):
            if not 0.0 < getattr(self, key) <= MAX_KAPPA:
                raise ValueError(f"{key} must be in (0, {MAX_KAPPA}], got {getattr(self, key)}")
        if not -1.0 <= self.affinity_threshold <= 1.0:
            raise ValueError(f"affinity_threshold is a cosine in [-1, 1], got {self.affinity_threshold}")


# ----------------------------------------------------------------------------- model


class SpmlNet(nn.Module):
    """Embedding network + softmax classifier on detached embeddings + a tag classifier for CAM seeds.

    ``memory`` (prototype bank) and ``superpixel_cache`` are plain attributes, not weights.
    """

    tag_counts: torch.Tensor  # buffers: images seen with each tag, and images seen
    image_count: torch.Tensor

    def __init__(self, backbone: Backbone, num_classes: int, config: Config) -> None:
        super().__init__()
        d = config.embed_dim
        self.net = build_smp(backbone, d)
        self.classifier = nn.Sequential(
            nn.Conv2d(d, 2 * d, 3, padding=1, bias=False), nn.BatchNorm2d(2 * d), nn.ReLU(),
            nn.Dropout(config.classifier_dropout), nn.Conv2d(2 * d, num_classes, 1),
        )  # fmt: skip
        self.tag_head = cam.ClassifierHead(self.net.encoder.out_channels[-1], num_classes)
        self.memory: list[dict[str, torch.Tensor]] = []
        self.superpixel_cache: dict[tuple, np.ndarray] = {}
        self.detach_classifier = config.detach_classifier
        self.register_buffer("tag_counts", torch.zeros(num_classes))  # images seen with each tag
        self.register_buffer("image_count", torch.zeros(()))

    def resume_state(self) -> dict:
        """The memory bank: training state outside the weights, saved with the checkpoint for an exact resume."""
        return {"memory": [{k: v.detach().cpu() for k, v in bank.items()} for bank in self.memory]}

    def load_resume_state(self, state: dict) -> None:
        device = next(self.parameters()).device
        self.memory = [{k: v.to(device) for k, v in bank.items()} for bank in state.get("memory", [])]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"embed": (B, D, H, W) unit, "logits": (B, C, H, W), "tag_logits": (B, C), "deep": (B, K, h, w)}``."""
        stages = self.net.encoder(images)
        embed = F.normalize(self.net.segmentation_head(self.net.decoder(stages)).float(), dim=1)
        return {
            "embed": embed, "logits": self.classifier(embed.detach() if self.detach_classifier else embed),
            "tag_logits": self.tag_head(stages[-1]), "deep": stages[-1],
        }  # fmt: skip


def build(num_classes: int, config: Config, backbone: Backbone) -> nn.Module:
    return SpmlNet(backbone, num_classes, config)


# ----------------------------------------------------------------------------- superpixels


def superpixels(image: np.ndarray, config: Config) -> np.ndarray:
    """``(H, W, 3)`` RGB float in [0, 1] -> ``(H, W)`` int64 superpixel ids from 0."""
    from skimage.segmentation import felzenszwalb, slic

    if config.superpixels == "slic":
        sp = slic(image, n_segments=config.superpixel_segments, compactness=config.superpixel_compactness,
                  start_label=0, channel_axis=-1)  # fmt: skip
    else:
        sp = felzenszwalb(image, scale=config.superpixel_scale, sigma=0.5, min_size=20)
    return sp.astype(np.int64)


def batch_superpixels(model: SpmlNet, images: torch.Tensor, index, config: Config) -> torch.Tensor:
    """``(B, H, W)`` int64 superpixels of normalised images, cached per (index, image checksum)."""
    rgb = denormalize(images.detach().float())
    weights = torch.linspace(0.0, 1.0, rgb.shape[-1], device=rgb.device)  # a flip changes this sum
    out = []
    for i in range(rgb.shape[0]):
        key = None
        if index is not None:
            key = (int(index[i]), round(float(rgb[i].sum()), 2), round(float((rgb[i] * weights).sum()), 2))
        sp = model.superpixel_cache.get(key) if key is not None else None
        if sp is None:
            sp = superpixels(rgb[i].permute(1, 2, 0).cpu().numpy(), config)
            if key is not None and len(model.superpixel_cache) < CACHE_LIMIT:
                model.superpixel_cache[key] = sp
        out.append(torch.from_numpy(sp))
    return torch.stack(out).to(images.device)


# ----------------------------------------------------------------------------- segments (pure)


def location_grid(h: int, w: int, device=None) -> torch.Tensor:
    """``(2, h, w)`` (y, x) coordinates in [-0.5, 0.5]."""
    ys = torch.linspace(-0.5, 0.5, h, device=device)
    xs = torch.linspace(-0.5, 0.5, w, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def with_location(embed: torch.Tensor, weight: float) -> torch.Tensor:
    """``(B, D, h, w)`` -> ``normalize([e; weight * (y, x)])`` ``(B, D+2, h, w)``."""
    h, w = embed.shape[-2:]
    loc = location_grid(h, w, device=embed.device).expand(embed.shape[0], -1, -1, -1)
    return F.normalize(torch.cat([embed, weight * loc.to(embed.dtype)], 1), dim=1)


def grid_cells(h: int, w: int, k: int, device=None) -> torch.Tensor:
    """``(h, w)`` ids of a ``k`` x ``k`` grid of cells (fewer when the map is smaller than ``k``)."""
    rows = torch.arange(h, device=device) * min(k, h) // h
    cols = torch.arange(w, device=device) * min(k, w) // w
    return rows[:, None] * min(k, w) + cols[None, :]


@torch.no_grad()
def spherical_kmeans(x: torch.Tensor, init: torch.Tensor, iterations: int) -> torch.Tensor:
    """Spherical k-means of ``(N, D)`` unit vectors from an initial assignment ``init`` ``(N,)``.

    M-step: prototype = normalised sum of members (empty clusters keep their prototype);
    E-step: arg-max cosine. Returns ``(N,)`` cluster ids in ``0..init.max()``.
    """
    k = int(init.max()) + 1
    assign = init
    centroids = F.normalize(torch.zeros(k, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, assign, x), dim=1)
    for _ in range(iterations):
        assign = (x @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = torch.bincount(assign, minlength=k) > 0
        centroids = torch.where(filled[:, None], F.normalize(sums, dim=1), centroids)
    return assign


@torch.no_grad()
def make_segments(
    embed_loc: torch.Tensor, label: torch.Tensor, superpixel: torch.Tensor, num_classes: int, grid: int, iterations: int
) -> torch.Tensor:
    """Segment ids ``(B, h, w)`` int64, consecutive over the batch, ``-1`` on ``IGNORE`` pixels.

    A segment is a unique (image, k-means cluster, label, superpixel) combination, so it never
    crosses a superpixel or label boundary. ``embed_loc``: ``(B, D, h, w)`` unit features for
    k-means; ``label``: ``(B, h, w)``; ``superpixel``: ``(B, h, w)`` int64.
    """
    b, _, h, w = embed_loc.shape
    cells = grid_cells(h, w, grid, embed_loc.device).reshape(-1)
    valid = label != IGNORE
    clusters = torch.zeros(b, h * w, dtype=torch.long, device=label.device)
    for i in range(b):
        keep = valid[i].reshape(-1)
        if keep.any():
            x = embed_loc[i].reshape(embed_loc.shape[1], -1).T[keep]
            init = torch.unique(cells[keep], return_inverse=True)[1]
            clusters[i, keep] = spherical_kmeans(x, init, iterations)
    lab = label.clamp(max=num_classes).reshape(b, -1)  # unlabelled (254) -> C: one more "label"
    n_sp = int(superpixel.max()) + 1
    n_cl = int(clusters.max()) + 1
    image = torch.arange(b, device=label.device)[:, None]
    key = ((image * n_cl + clusters) * (num_classes + 1) + lab) * n_sp + superpixel.reshape(b, -1)
    ids = torch.full_like(key, -1)
    flat_valid = valid.reshape(b, -1)
    ids[flat_valid] = torch.unique(key[flat_valid], return_inverse=True)[1]
    return ids.reshape(b, h, w)


def segment_means(values: torch.Tensor, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Normalised per-segment sums: ``values`` ``(N, D)``, ``ids`` ``(N,)`` in ``0..n-1`` -> ``(n, D)``."""
    sums = torch.zeros(n, values.shape[1], device=values.device, dtype=values.dtype).index_add(0, ids, values)
    return F.normalize(sums, dim=1)


def segment_attribute(values: torch.Tensor, ids: torch.Tensor, n: int) -> torch.Tensor:
    """The value of each segment for a per-pixel attribute constant inside segments: ``(N,)`` -> ``(n,)``."""
    return torch.zeros(n, dtype=values.dtype, device=values.device).scatter(0, ids, values)


# ----------------------------------------------------------------------------- the contrastive loss (pure)


def segsort_loss(
    embed: torch.Tensor,
    protos: torch.Tensor,
    kappa: float,
    positive: torch.Tensor,
    candidate: torch.Tensor | None = None,
    own: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel-to-segment contrastive loss, SegSort+ form (§2.5).

    ``embed``: ``(N, D)`` unit pixel embeddings; ``protos``: ``(S, D)`` unit prototypes;
    ``positive``/``candidate``: ``(N, S)`` bool; ``own``: ``(N,)`` the pixel's own segment
    (-1: none among ``protos``). With ``a_s = exp(kappa e_i . mu_s)``: the numerator sums the
    candidate positives other than the own segment, or the own segment when there are none;
    the denominator adds the candidate negatives. Pixels with an empty numerator are skipped.
    """
    logits = kappa * embed @ protos.T  # (N, S)
    candidate = torch.ones_like(positive) if candidate is None else candidate
    own_mask = torch.zeros_like(positive)
    if own is not None:
        has_own = own >= 0
        own_mask[has_own.nonzero(as_tuple=True)[0], own[has_own]] = True
    own_mask &= candidate
    others = positive & candidate & ~own_mask
    num_mask = torch.where(others.any(1, keepdim=True), others, own_mask)
    neg_mask = candidate & ~positive
    rows = num_mask.any(1)
    if not rows.any():
        return embed.sum() * 0.0
    a = torch.exp(logits[rows].float())  # |kappa e.mu| <= kappa <= MAX_KAPPA: no overflow, no max-shift needed
    num = (a * num_mask[rows]).sum(1)
    den = num + (a * neg_mask[rows]).sum(1)
    return (den.log() - num.log()).mean()


# ----------------------------------------------------------------------------- pseudo labels (pure)


@torch.no_grad()
def random_walk(
    embed: torch.Tensor, seeds: torch.Tensor, stride: int = 8, beta: float = 20.0, squarings: int = 6
) -> torch.Tensor:
    """Diffuse ``seeds`` ``(B, C, H, W)`` over embedding affinity (§2.6 "cam_rw"): ``(B, C, H, W)``.

    At stride ``stride``: ``A_ij = exp(5 (e_i . e_j - 1))^beta``, column-normalised to ``T`` and
    squared ``squarings`` times (``T^(2^squarings)``); the result ``seeds . T`` is upsampled
    bilinearly. ``embed``: ``(B, D, H, W)`` unit.
    """
    size = seeds.shape[-2:]
    e = F.normalize(F.avg_pool2d(embed.float(), stride, ceil_mode=True), dim=1).flatten(2)  # (B, D, n)
    s = F.avg_pool2d(seeds.float(), stride, ceil_mode=True)
    small = s.shape[-2:]
    affinity = torch.exp(5.0 * beta * (e.transpose(1, 2) @ e - 1.0))  # (B, n, n)
    walk = affinity / affinity.sum(1, keepdim=True)
    for _ in range(squarings):
        walk = walk @ walk
    out = (s.flatten(2) @ walk).reshape(*s.shape[:2], *small)
    return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def knn_labels(embed: torch.Tensor, protos: torch.Tensor, proto_labels: torch.Tensor, k: int, num_classes: int):
    """kNN retrieval over labelled prototypes (§2.6 "cam_nn"): class scores ``(B, C, H, W)``, the
    fraction of each pixel's ``k`` most similar prototypes (cosine) with that label."""
    b, d, h, w = embed.shape
    sims = embed.permute(0, 2, 3, 1).reshape(-1, d) @ protos.T  # (BHW, S)
    top = sims.topk(min(k, protos.shape[0]), dim=1).indices
    votes = F.one_hot(proto_labels[top], num_classes).float().mean(1)  # (BHW, C)
    return votes.reshape(b, h, w, num_classes).permute(0, 3, 1, 2)


@torch.no_grad()
def walk_seeds(logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Seeds for points/scribbles (§2.6): softmax, normalised by each class's max per image, masked to the tags."""
    prob = logits.float().softmax(1)
    prob = prob / (prob.amax((2, 3), keepdim=True) + cam.EPS)
    return prob * (tags[:, :, None, None] > 0)


def pseudo_labels(scores: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Arg-max of ``(B, C, H, W)`` scores as a label map; annotated pixels keep their label, void stays void."""
    out = torch.where(scores.amax(1) > 0, scores.argmax(1), torch.full_like(label, UNLABELED))
    out = torch.where(label < num_classes, label, out)
    return torch.where(label == IGNORE, label, out)


# ----------------------------------------------------------------------------- seeds from CAMs


@torch.no_grad()
def seed_labels(
    tag_head: cam.ClassifierHead, deep: torch.Tensor, batch: dict, config: Config, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The label map the losses use, and a ``(B,)`` bool of the images whose seeds come from CAMs.

    ``deep``: ``(B, K, h, w)`` deepest encoder features feeding ``tag_head``.
    """
    label, tags = batch["label"], batch["tags"]
    if config.seed_source == "labels":
        return label, torch.zeros(label.shape[0], dtype=torch.bool, device=label.device)
    if config.seed_source == "auto":
        uses_cam = ~(label < num_classes).flatten(1).any(1)
    else:
        uses_cam = torch.ones(label.shape[0], dtype=torch.bool, device=label.device)
    if float(batch.get("progress", 1.0)) < config.cam_start or not uses_cam.any():
        blank = torch.where(label == IGNORE, label, torch.full_like(label, UNLABELED))
        seeds = torch.where(uses_cam[:, None, None], blank, label) if config.seed_source != "cam_boxes" else blank
        return seeds, uses_cam
    cams = cam.fast_cams(tag_head, deep.detach(), tuple(label.shape[-2:]), tags)
    if config.seed_source == "cam_boxes":
        seeds = cam.box_pseudo_mask(cams, label, num_classes, config.box_threshold)
    else:
        seeds = cam.cam_pseudo_mask(cams, config.cam_bg_threshold, valid=label != IGNORE)
    return torch.where(uses_cam[:, None, None], seeds, label), uses_cam


# ----------------------------------------------------------------------------- training


def sample_pixels(valid: torch.Tensor, per_image: int, always: torch.Tensor | None = None) -> torch.Tensor:
    """Flat indices into ``(B*h*w,)``: every ``always`` pixel (``(B, h, w)`` bool, e.g. the labelled
    ones) plus up to ``per_image`` random other valid pixels of each image (0: all valid pixels)."""
    picked = []
    for i in range(valid.shape[0]):
        keep = valid[i].reshape(-1)
        must = always[i].reshape(-1) & keep if always is not None else torch.zeros_like(keep)
        idx = torch.nonzero(keep & ~must, as_tuple=True)[0]
        if per_image:
            idx = idx[torch.randperm(len(idx), device=idx.device)[:per_image]]
        idx = torch.cat([torch.nonzero(must, as_tuple=True)[0], idx]).sort().values
        picked.append(idx + i * valid[i].numel())
    return torch.cat(picked)


def common_classes(tag_counts: torch.Tensor, image_count: torch.Tensor, share: float) -> torch.Tensor:
    """``(C,)`` bool: classes tagged in at least ``share`` of the images seen (none before any image)."""
    if float(image_count) == 0:
        return torch.zeros_like(tag_counts, dtype=torch.bool)
    return tag_counts / image_count >= share


def cooccurrence_positives(tags_a: torch.Tensor, tags_b: torch.Tensor, common: torch.Tensor) -> torch.Tensor:
    """``(N, S)`` bool: the tag sets of ``(N, C)`` and ``(S, C)`` share a class that is not ``common``
    (SPML leaves background out the same way: a class in every image makes every pair co-occur)."""
    keep = (~common).float()
    return ((tags_a.float() * keep) @ tags_b.float().T) > 0


def contrastive_terms(embed: torch.Tensor, label: torch.Tensor, superpixel: torch.Tensor, tags: torch.Tensor,
                      memory: list[dict], config: Config,
                      common: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:  # fmt: skip
    """The four relation losses on stride-``loss_stride`` maps, and this batch's prototypes for the memory bank.

    ``embed``: ``(B, D, h, w)`` unit; ``label``, ``superpixel``: ``(B, h, w)``; ``tags``: ``(B, C)``;
    ``common``: ``(C,)`` bool classes left out of the co-occurrence tag sets (None: none).
    """
    num_classes = tags.shape[1]
    b, d, h, w = embed.shape
    embed_loc = with_location(embed, config.location_weight)
    ids = make_segments(embed_loc.detach(), label, superpixel, num_classes, config.kmeans_grid,
                        config.kmeans_iterations)  # fmt: skip
    flat_ids = ids.reshape(-1)
    valid = flat_ids >= 0
    n = int(flat_ids.max()) + 1
    pix = embed.permute(0, 2, 3, 1).reshape(-1, d)
    pix_loc = embed_loc.permute(0, 2, 3, 1).reshape(-1, d + 2)
    image_of_pixel = torch.arange(b, device=embed.device).repeat_interleave(h * w)
    seg = flat_ids[valid]
    protos = segment_means(pix[valid], seg, n)  # (n, D), with gradient
    protos_loc = segment_means(pix_loc[valid], seg, n)
    seg_label = segment_attribute(label.reshape(-1)[valid].clamp(max=num_classes), seg, n)  # C = unlabelled
    seg_image = segment_attribute(image_of_pixel[valid], seg, n)
    seg_sp = segment_attribute(superpixel.reshape(-1)[valid], seg, n)
    seg_tags = tags[seg_image]  # (n, C)

    mem_protos = torch.cat([m["protos"] for m in memory] + [protos.detach()[:0]])
    mem_label = torch.cat([m["label"] for m in memory] + [seg_label[:0]])
    mem_tags = torch.cat([m["tags"] for m in memory] + [seg_tags[:0]])
    all_protos = torch.cat([protos, mem_protos])
    all_label = torch.cat([seg_label, mem_label])
    all_tags = torch.cat([seg_tags, mem_tags])

    sample = sample_pixels(valid.reshape(b, h, w), config.pixels_per_image, always=label < num_classes)
    e, e_loc, own = pix[sample], pix_loc[sample], flat_ids[sample]
    lab, img = label.reshape(-1)[sample].clamp(max=num_classes), image_of_pixel[sample]
    losses = {}
    if config.use_image:  # same superpixel, segments of the same image, location-augmented
        same_image = img[:, None] == seg_image[None, :]
        same_sp = superpixel.reshape(-1)[sample][:, None] == seg_sp[None, :]
        losses["image"] = segsort_loss(e_loc, protos_loc, config.image_kappa, same_sp & same_image, same_image, own)
    labelled_segs = all_label < num_classes
    if config.use_semantic:
        rows = lab < num_classes
        positive = lab[rows, None] == all_label[None, :]
        candidate = labelled_segs[None, :].expand_as(positive)
        losses["semantic"] = segsort_loss(e[rows], all_protos, config.semantic_kappa, positive, candidate, own[rows])
    if config.use_cooccurrence:
        common = torch.zeros(num_classes, dtype=torch.bool, device=tags.device) if common is None else common
        positive = cooccurrence_positives(tags[img], all_tags, common)
        losses["cooccurrence"] = segsort_loss(e, all_protos, config.cooccurrence_kappa, positive, None, own)
    if config.use_affinity:
        nearest = _nearest_labelled(e_loc, img, protos_loc, seg_image, seg_label, num_classes, config)
        rows = nearest < num_classes
        positive = nearest[rows, None] == all_label[None, :]
        candidate = labelled_segs[None, :].expand_as(positive)
        losses["affinity"] = segsort_loss(e[rows], all_protos, config.affinity_kappa, positive, candidate, own[rows])
    bank = {"protos": protos.detach(), "label": seg_label, "tags": seg_tags}
    return losses, bank


def _nearest_labelled(e_loc, img, protos_loc, seg_image, seg_label, num_classes, config) -> torch.Tensor:
    """Label of each pixel's most similar labelled segment of its own image if cosine >= threshold, else C."""
    with torch.no_grad():
        sims = e_loc @ protos_loc.T
        usable = (img[:, None] == seg_image[None, :]) & (seg_label[None, :] < num_classes)
        sims = sims.masked_fill(~usable, -2.0)
        best, which = sims.max(1)
        return torch.where(best >= config.affinity_threshold, seg_label[which], torch.full_like(which, num_classes))


def training_step(model: SpmlNet, batch: dict, config: Config) -> dict[str, torch.Tensor]:
    images, tags = batch["image"], batch["tags"]
    out = model(images)
    num_classes = tags.shape[1]
    progress = float(batch.get("progress", 1.0))
    label, uses_cam = seed_labels(model.tag_head, out["deep"], batch, config, num_classes)
    zero = out["embed"].sum() * 0.0
    tag_loss = F.binary_cross_entropy_with_logits(out["tag_logits"].float(), tags) if uses_cam.any() else zero

    s = config.loss_stride
    embed_s = F.normalize(F.avg_pool2d(out["embed"], s, ceil_mode=True), dim=1) if s > 1 else out["embed"]
    label_s = downsample_labels(label, s, num_classes)
    sp = batch_superpixels(model, images, batch.get("index"), config)
    sp_s = F.interpolate(sp[:, None].float(), size=label_s.shape[-2:], mode="nearest")[:, 0].long()
    memory = model.memory[-config.memory_iterations :] if config.memory_iterations else []
    with torch.no_grad():  # tag statistics of the images seen so far (buffers: saved with the weights)
        model.tag_counts.add_((tags > 0).float().sum(0))
        model.image_count.add_(tags.shape[0])
    common = common_classes(model.tag_counts, model.image_count, config.cooccurrence_common)
    terms, bank = contrastive_terms(embed_s, label_s, sp_s, tags, memory, config, common)
    if config.memory_iterations:
        model.memory = (model.memory + [bank])[-config.memory_iterations :]

    ce = sparse_cross_entropy(out["logits"], label)
    crf = crf_term(out["logits"], batch, config)
    pseudo_loss = zero
    if progress >= config.pseudo_start and config.pseudo_weight > 0:
        pseudo = make_pseudo_labels(out, label, tags, memory, config)
        pseudo_loss = sparse_cross_entropy(out["logits"], pseudo)
    loss = (
        config.image_weight * terms.get("image", zero)
        + config.semantic_weight * (terms.get("semantic", zero) + ce)
        + config.cooccurrence_weight * terms.get("cooccurrence", zero)
        + config.affinity_weight * terms.get("affinity", zero)
        + config.pseudo_weight * pseudo_loss
        + config.cam_weight * tag_loss
        + config.crf_weight * crf
    )
    logs = {f"loss_{k}": v.detach() for k, v in terms.items()}
    logs.update(loss=loss, ce=ce.detach(), pseudo=pseudo_loss.detach(), tags=tag_loss.detach(), crf=crf.detach())
    logs["common_classes"] = common.sum().float()
    logs["labelled_frac"] = (label < num_classes).float().mean()
    return logs


@torch.no_grad()
def make_pseudo_labels(out: dict, label: torch.Tensor, tags: torch.Tensor, memory: list[dict], config: Config):
    """Pseudo labels ``(B, H, W)`` for the classifier: a random walk from the classifier's own
    normalised softmax, or kNN over the memory bank's labelled prototypes (masked to the tags)."""
    num_classes = tags.shape[1]
    embed = out["embed"].detach()
    if config.pseudo_source == "walk":
        seeds = walk_seeds(out["logits"].detach(), tags)
        scores = random_walk(embed, seeds, config.walk_stride, config.walk_beta, config.walk_squarings)
    else:
        protos = torch.cat([m["protos"] for m in memory]) if memory else embed.new_zeros(0, embed.shape[1])
        labels = torch.cat([m["label"] for m in memory]) if memory else label.new_zeros(0)
        keep = labels < num_classes
        if not keep.any():
            return torch.where(label == IGNORE, label, torch.full_like(label, UNLABELED))
        scores = knn_labels(embed, protos[keep], labels[keep], config.knn_k, num_classes)
        scores = scores * (tags[:, :, None, None] > 0)
    return pseudo_labels(scores, label, num_classes)


@torch.no_grad()
def train_diagnostics(model: SpmlNet, dataset, device: torch.device, config: Config, batch_size: int = 8) -> dict:
    """Quality of the classifier's pseudo labels against ground truth on training images (a report, never a
    signal): the labels :func:`make_pseudo_labels` gives from the current model and memory bank, scored on
    the unannotated pixels (``pseudo_precision``, ``pseudo_coverage``), and of the seeds the losses use
    (the annotations, or CAM seeds for tags and boxes: ``seed_precision``, ``seed_coverage``).

    ``dataset`` yields ``image``, ``label``, ``tags``, ``index`` and ground truth ``mask`` (``include_gt=True``).
    """
    from torch.utils.data import DataLoader

    was_training = model.training
    model.eval()
    pseudo_totals: Counter[str] = Counter()
    seed_totals: Counter[str] = Counter()
    memory = model.memory[-config.memory_iterations :] if config.memory_iterations else []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = model(batch["image"])
        num_classes, gt = batch["tags"].shape[1], batch["mask"]
        seeds, _ = seed_labels(model.tag_head, out["deep"], {**batch, "progress": 1.0}, config, num_classes)
        pseudo = make_pseudo_labels(out, seeds, batch["tags"], memory, config)
        pseudo_totals.update(pseudo_label_counts(pseudo, batch["label"], gt, num_classes))
        blank = torch.where(batch["label"] == IGNORE, batch["label"], torch.full_like(batch["label"], UNLABELED))
        seed_totals.update(pseudo_label_counts(seeds, blank, gt, num_classes))  # every seed scored
    model.train(was_training)
    scores = pseudo_label_scores(pseudo_totals)
    seeds_scored = pseudo_label_scores(seed_totals)
    return {
        **scores,
        "seed_precision": seeds_scored["pseudo_precision"],
        "seed_coverage": seeds_scored["pseudo_coverage"],
    }


def predict(model: SpmlNet, images: torch.Tensor) -> torch.Tensor:
    """Softmax-classifier scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images)["logits"]

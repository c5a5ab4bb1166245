"""CAM baseline: a multi-label classifier learns from image tags, its class activation maps
become pseudo-masks, and a segmentation head learns from those (CAM -> pseudo-mask -> segmenter).

Classifier: global average pooling + linear over the deepest features of an smp encoder,
trained with BCE against the tags. For such a classifier the class activation map
``CAM_c = sum_k w_ck A_k`` is exact and costs one einsum (Zhou et al., CVPR 2016), so training
uses it (:func:`fast_cams`); Grad-CAM (Selvaraju et al., ICCV 2017) is offered for any model
(:func:`gradcam` and its captum twin :func:`gradcam_captum`, both :mod:`workbench.explain`'s,
with bilinear upsampling, following the pitfalls of UI_AND_TESTING.md §4). For a GAP + linear classifier both agree up to a positive factor.

Pseudo-masks: CAMs are ReLU'd, upsampled bilinearly, normalised per image and class to
[0, 1], and zeroed for classes absent from the tags; a pixel takes the arg-max tag class,
or ``UNLABELED`` when its largest CAM is below ``bg_threshold`` (our datasets have no
background class, so weak evidence means "unknown", not "background"; SPML uses 0.2).

Schedule (one run, no separate stages): the loss is ``BCE(tags)`` plus the segmenter's
cross-entropy on the current pseudo-mask, weighted by a linear ramp over
``[seg_start, seg_start + seg_ramp]`` of training progress, so the segmenter only listens
once the classifier's CAMs mean something. The pseudo-masks are made without gradient from
the same forward pass. ``predict`` returns the segmenter's scores.

Two numbers, two protocols (ours to report both): :func:`train_diagnostics` scores the CAM
pseudo-masks against ground truth on the *training* images (the WSSS papers' "pseudo-mask mIoU on
train"); the run's ``miou`` is the *segmenter* on the validation split. The engine writes the
first under ``train_diagnostics`` in report.json / report.md and in the metrics log.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench import explain
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.modeling.affinity import denormalize, local_affinity, propagate
from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import check_loss_weights, ramp, sparse_cross_entropy

SUPERVISION = ("tags",)
EPS = 1e-5


@dataclass(frozen=True)
class Config:
    """``bg_threshold``: max normalised CAM below which a pixel stays unlabelled; ``cam_stage``:
    which encoder stage feeds the classifier (-1 the deepest, stride 32; -2 stride 16 is finer);
    ``refine_steps`` > 0 smooths CAMs with the image-guided filter before the arg-max."""

    bg_threshold: float = 0.2
    cam_stage: int = -1
    bce_weight: float = 1.0
    seg_weight: float = 1.0
    seg_start: float = 0.3
    seg_ramp: float = 0.2
    refine_steps: int = 0
    refine_dilations: tuple[int, ...] = (1, 2, 4)
    refine_sigma_color: float = 0.1
    refine_sigma_space: float = 8.0

    def __post_init__(self) -> None:
        check_loss_weights(self)
        if not 0.0 <= self.bg_threshold <= 1.0:
            raise ValueError(f"bg_threshold must be in [0, 1], got {self.bg_threshold}")
        if not (0.0 <= self.seg_start <= 1.0 and self.seg_ramp >= 0.0):
            raise ValueError(f"need 0 <= seg_start <= 1 and seg_ramp >= 0, got {self.seg_start}, {self.seg_ramp}")
        if self.cam_stage >= 0:
            raise ValueError(f"cam_stage counts encoder stages from the deepest: -1, -2, ...; got {self.cam_stage}")
        if self.refine_steps < 0 or min(self.refine_sigma_color, self.refine_sigma_space) <= 0:
            raise ValueError("refine_steps must be >= 0 and the refine sigmas > 0")


# ----------------------------------------------------------------------------- model


class ClassifierHead(nn.Module):
    """GAP + linear: ``(B, K, h, w)`` features -> ``(B, C)`` tag logits; :meth:`cams` gives the exact CAMs."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.mean((2, 3)))

    def cams(self, features: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps ``(B, C, h, w)``: the class logit is their spatial mean plus the bias."""
        return torch.einsum("ck,bkhw->bchw", self.linear.weight, features)


class CamNet(nn.Module):
    """An smp segmenter whose encoder also feeds a tag classifier.

    ``features`` is an identity layer on the classifier's input, the hook point for Grad-CAM
    (``layer="features"``).
    """

    def __init__(self, backbone: Backbone, num_classes: int, cam_stage: int = -1) -> None:
        super().__init__()
        self.seg = build_smp(backbone, num_classes)
        self.cam_stage = cam_stage
        self.features = nn.Identity()
        self.head = ClassifierHead(self.seg.encoder.out_channels[cam_stage], num_classes)

    def forward(self, images: torch.Tensor, segment: bool = True) -> dict[str, torch.Tensor]:
        """``{"seg": (B, C, H, W), "logits": (B, C), "features": (B, K, h, w)}``; ``segment=False``
        skips the decoder (no ``"seg"``)."""
        stages = self.seg.encoder(images)
        feats = self.features(stages[self.cam_stage])
        out = {"logits": self.head(feats), "features": feats}
        if segment:
            out["seg"] = self.seg.segmentation_head(self.seg.decoder(stages))
        return out

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Tag logits ``(B, C)`` (encoder + head only)."""
        return self.head(self.features(self.seg.encoder(images)[self.cam_stage]))


def build(num_classes: int, config: Config, backbone: Backbone) -> nn.Module:
    return CamNet(backbone, num_classes, config.cam_stage)


# ----------------------------------------------------------------------------- CAMs and pseudo-masks (pure)


def normalize_cams(cams: torch.Tensor, tags: torch.Tensor | None = None) -> torch.Tensor:
    """ReLU, then divide each ``(image, class)`` map by its max: ``(B, C, H, W)`` in [0, 1].

    Classes with ``tags == 0`` (``(B, C)`` multi-hot) are zeroed.
    """
    cams = cams.float().clamp(min=0)
    cams = cams / (cams.amax((2, 3), keepdim=True) + EPS)
    if tags is not None:
        cams = cams * (tags[:, :, None, None] > 0)
    return cams


def fast_cams(head: ClassifierHead, features: torch.Tensor, size: tuple[int, int], tags=None) -> torch.Tensor:
    """Exact CAMs of a GAP + linear classifier: ReLU at feature resolution, upsampled bilinearly
    to ``size``, normalised (the order captum's Grad-CAM uses): ``(B, C, H, W)``."""
    cams = F.interpolate(head.cams(features).float().clamp(min=0), size=size, mode="bilinear", align_corners=False)
    return normalize_cams(cams, tags)


def refine_cams(cams: torch.Tensor, images: torch.Tensor, config: Config) -> torch.Tensor:
    """Smooth ``(B, C, H, W)`` CAMs along image edges (``images`` normalised ``(B, 3, H, W)``), renormalised."""
    if config.refine_steps == 0:
        return cams
    weights = local_affinity(
        denormalize(images.float()), config.refine_dilations, config.refine_sigma_color, config.refine_sigma_space
    )
    out = propagate(cams, weights, config.refine_dilations, config.refine_steps)
    return out / (out.amax((2, 3), keepdim=True) + EPS) * (cams.amax((2, 3), keepdim=True) > 0)


def cam_pseudo_mask(cams: torch.Tensor, bg_threshold: float = 0.2, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, C, H, W)`` normalised CAMs -> ``(B, H, W)`` int64 label map.

    Arg-max class where the largest CAM reaches ``bg_threshold``, ``UNLABELED`` (254)
    elsewhere; ``IGNORE`` where ``valid`` (``(B, H, W)`` bool, e.g. not padding) is False.
    """
    top, cls = cams.max(1)
    out = torch.where(top >= bg_threshold, cls, torch.full_like(cls, UNLABELED))
    if valid is not None:
        out = torch.where(valid, out, torch.full_like(out, IGNORE))
    return out


def box_pseudo_mask(
    cams: torch.Tensor, box_label: torch.Tensor, num_classes: int, threshold: float = 0.5
) -> torch.Tensor:
    """Boxes -> label map (SPML §2.2): inside the boxes of class c, CAM_c normalised to [0, 1]
    over that region and thresholded at ``threshold``; the rest of the region is unlabelled.

    ``box_label``: ``(B, H, W)`` rasterised boxes (class inside a box, 254 outside, 255 void).
    The normalisation is per class over the union of its boxes, not per box: the rasterised
    map no longer tells boxes of one class apart. ``cams``: ``(B, C, H, W)`` non-negative.
    """
    inside = box_label < num_classes
    cls = box_label.clamp(max=num_classes - 1)
    region = F.one_hot(cls, num_classes).permute(0, 3, 1, 2).bool() & inside[:, None]  # (B, C, H, W)
    peak = torch.where(region, cams, torch.zeros_like(cams)).amax((2, 3), keepdim=True)
    norm = cams / (peak + EPS)
    own = norm.gather(1, cls[:, None])[:, 0]  # (B, H, W): the box class's CAM
    out = torch.where(inside & (own >= threshold), box_label, torch.full_like(box_label, UNLABELED))
    return torch.where(box_label == IGNORE, box_label, out)


# ----------------------------------------------------------------------------- Grad-CAM (for any model)


def _score_fn_and_layer(model: nn.Module, images: torch.Tensor, layer: str | None):
    """``(images -> (B, C) scores, layer module)``.

    For :class:`CamNet`: the tag logits and ``features``. For a segmentation model with
    ``(B, C, H, W)`` output: the summed logits of the pixels whose arg-max is each class,
    the arg-max frozen once from the unperturbed input (captum's segmentation tutorial), and
    by default the deepest encoder stage ``encoder.layer4``.
    """
    if isinstance(model, CamNet):
        return model.classify, model.get_submodule(layer or "features")
    with torch.no_grad():
        out = model(images)
    if isinstance(out, tuple):  # smp with aux_params returns (mask, label)
        out = out[0]
    selector = torch.zeros_like(out).scatter_(1, out.argmax(1, keepdim=True), 1.0)

    def per_class_score(inp: torch.Tensor) -> torch.Tensor:
        o = model(inp)
        o = o[0] if isinstance(o, tuple) else o
        return (o * selector).sum((2, 3))

    name = layer or "encoder.layer4"
    try:
        return per_class_score, model.get_submodule(name)
    except AttributeError:
        raise ValueError(
            f"model has no layer {name!r}; pass layer='...' naming a module, e.g. 'decoder.blocks.3'"
        ) from None


def gradcam(model: nn.Module, images: torch.Tensor, cls: int | torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM ``(B, H, W)`` (non-negative, not normalised) of class ``cls`` (one int or ``(B,)``) of a
    :class:`CamNet` (its tag scores at ``features``) or of an smp segmenter (``encoder.layer4``):
    :func:`workbench.explain.gradcam`. ``model`` is left untouched."""
    model = explain.attribution_copy(model)
    score_fn, module = _score_fn_and_layer(model, images, layer)
    return explain.gradcam(score_fn, module, images, cls)


def gradcam_captum(
    model: nn.Module, images: torch.Tensor, cls: int | torch.Tensor, layer: str | None = None
) -> torch.Tensor:
    """:func:`gradcam` through captum's ``LayerGradCam(..., relu_attributions=True)`` (needs captum)."""
    model = explain.attribution_copy(model)
    score_fn, module = _score_fn_and_layer(model, images, layer)
    return explain.gradcam_captum(score_fn, module, images, cls)


# ----------------------------------------------------------------------------- training


def training_step(model: CamNet, batch: dict, config: Config) -> dict[str, torch.Tensor]:
    weight = ramp(float(batch.get("progress", 1.0)), config.seg_start, config.seg_start + config.seg_ramp)
    out = model(batch["image"], segment=weight > 0)
    tags = batch["tags"]
    bce = F.binary_cross_entropy_with_logits(out["logits"].float(), tags)
    if weight == 0:  # the segmenter waits for the CAMs to mean something
        zero = torch.zeros((), device=bce.device)
        return {"loss": config.bce_weight * bce, "bce": bce.detach(), "seg": zero, "pseudo_coverage": zero}
    with torch.no_grad():
        cams = fast_cams(model.head, out["features"].detach(), tuple(batch["image"].shape[-2:]), tags)
        cams = refine_cams(cams, batch["image"], config)
        pseudo = cam_pseudo_mask(cams, config.bg_threshold, valid=batch["label"] != IGNORE)
    seg_loss = sparse_cross_entropy(out["seg"], pseudo)
    loss = config.bce_weight * bce + config.seg_weight * weight * seg_loss
    coverage = (pseudo < tags.shape[1]).float().mean()
    return {"loss": loss, "bce": bce.detach(), "seg": seg_loss.detach(), "pseudo_coverage": coverage}


def _pseudo_ious(cm: torch.Tensor) -> torch.Tensor:
    """IoU per class of a ``(C, C+1)`` GT x prediction count matrix whose last column is "no label"
    (counted as a miss); NaN for classes absent from both."""
    tp = cm.diag().double()
    union = cm.sum(1).double() + cm[:, :-1].sum(0).double() - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


@torch.no_grad()
def train_diagnostics(model: CamNet, dataset, device: torch.device, config: Config,
                      batch_size: int = 8) -> dict[str, float]:  # fmt: skip
    """CAM pseudo-mask quality on the training images, the field's standard protocol, kept apart
    from the segmenter's mIoU on val (a frequent source of confusion in WSSS papers).

    ``dataset`` yields ``image``, ``tags``, ``label`` and ground truth ``mask`` (``include_gt=True``,
    unaugmented). ``cam_pseudo_miou``: the training pseudo-masks (tag CAMs, ``bg_threshold``), a
    pixel left unlabelled counts as a miss; ``cam_argmax_miou``: every pixel takes its arg-max tag
    class (no threshold); ``cam_pseudo_precision`` / ``cam_pseudo_coverage``: accuracy on the
    pixels the pseudo-mask labels, and their share.
    """
    from torch.utils.data import DataLoader

    was_training = model.training
    model.eval()
    c = model.head.linear.out_features
    cm_thr = torch.zeros(c, c + 1, dtype=torch.int64)
    cm_arg = torch.zeros(c, c + 1, dtype=torch.int64)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images, tags, gt = batch["image"].to(device), batch["tags"].to(device), batch["mask"].to(device)
        out = model(images, segment=False)
        cams = refine_cams(fast_cams(model.head, out["features"], tuple(images.shape[-2:]), tags), images, config)
        valid = gt < c
        for cm, threshold in ((cm_thr, config.bg_threshold), (cm_arg, 0.0)):
            pred = cam_pseudo_mask(cams, threshold).clamp(max=c)  # UNLABELED -> column c
            pred = torch.where(cams.amax(1) > 0, pred, torch.full_like(pred, c)) if threshold == 0 else pred
            idx = gt[valid] * (c + 1) + pred[valid]
            cm += torch.bincount(idx, minlength=c * (c + 1)).reshape(c, c + 1).cpu()
    model.train(was_training)
    labelled = cm_thr[:, :-1].sum()
    return {
        "cam_pseudo_miou": float(_pseudo_ious(cm_thr).nanmean()),
        "cam_argmax_miou": float(_pseudo_ious(cm_arg).nanmean()),
        "cam_pseudo_precision": float(cm_thr.diag().sum() / labelled.clamp(min=1)),
        "cam_pseudo_coverage": float(labelled / cm_thr.sum().clamp(min=1)),
    }  # fmt: skip


def predict(model: CamNet, images: torch.Tensor) -> torch.Tensor:
    """Segmenter scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images)["seg"]

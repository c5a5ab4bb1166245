"""Transferable semi-supervised segmentation, L-Net + P-Net (METHODS.md §3).

Paper: Huaxin Xiao, Yunchao Wei, Yu Liu, Maojun Zhang, Jiashi Feng, "Transferable
Semi-Supervised Semantic Segmentation", AAAI 2018.

**A reconstruction**: no code exists and only the abstract was available, so every design
choice below is ours, made to fit the abstract (METHODS.md §3.2, items marked ⚠ there).

Strong (base) classes have pixel labels; weak (novel) classes only image tags.

- **L-Net** (one smp network, ``Backbone`` arch/encoder) with two heads sharing encoder and
  decoder: a class-agnostic head and a multi-label CAM head.

  * Class-agnostic head: our datasets have no background class, so "foreground vs
    background" is ill-defined. The head predicts **not-base**: 1 on ``UNLABELED`` pixels
    (novel classes), 0 on base pixels, void ignored. It is learnt from every image's base
    labels, as the paper's L-Net learns class-agnostic masks from strong categories.
  * CAM head: ``C`` maps whose global average is the multi-label tag logit (BCE with tags),
    so each map is a class activation map; ReLU, then divided by its max.
- **Label transfer** (per image, no gradient): inside the not-base region the novel classes
  are told apart by self-diffusion of CAM seeds over superpixels. The region is the known
  ``UNLABELED`` set of the given label (base labels are given, so the complement is exact; the
  class-agnostic head's probability weights the seeds ``Y_c(u) = mean_u A_c * M``, and is what
  would define the region on an image without base labels). SLIC superpixels inside the
  region, a colour affinity graph between touching superpixels, ``F = (I - a S)^-1 Y`` with
  ``S = D^-1/2 W D^-1/2``; each superpixel takes the arg-max tagged novel class. An image with
  one novel tag gets it on the whole region. ``label_rule="cam"`` replaces diffusion with the
  pixel-wise arg-max of thresholded CAMs (``cam.cam_pseudo_mask`` over the tagged novel
  classes): the "supervised base + CAM pseudo-masks" baseline.
- **P-Net**: an smp segmenter trained with cross-entropy on base labels + transferred labels,
  and an adversarial term: a spectral-norm patch discriminator on (image, class-probability map
  restricted to a region) learns what ground-truth label maps look like, and pushes P-Net's
  predictions on the novel region towards that structure. Its real examples come from *every*
  image: the base-class region of the label map (where ground truth exists), as a *softened*
  one-hot (label smoothing ``real_smoothing``) so that entropy alone does not give the fakes
  away; its fake examples are P-Net's softmax on the same base region. The generator term asks
  the (frozen) discriminator to call P-Net's softmax on the not-base (novel) region real.
  Losses are averaged over discriminator patches weighted by how much of the region each
  patch covers. (Before issue 14, real examples came only from images without novel pixels,
  3 of 367 on CamVid, and were exactly one-hot.)

Schedule, in the engine's single loop (``batch["progress"]`` in [0, 1]): the L-Net trains
throughout; P-Net learns from base labels only until ``lnet_until``, then also from the labels
transferred by the current L-Net; the adversarial term starts at ``adv_from`` (CE warm-up
before). The generator and discriminator updates are simultaneous (one optimizer step on
``seg + adv_weight * adv + disc``): the generator's term sees the discriminator through
detached parameters, the discriminator's terms see detached predictions. ``predict`` is P-Net.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic
from torch import nn
from torch.func import functional_call
from torch.nn.utils.parametrizations import spectral_norm

from workbench.data.dataset import denormalize
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods.cam import cam_pseudo_mask, normalize_cams
from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import check_loss_weights, sparse_cross_entropy

SUPERVISION = ("dense",)
LABEL_RULES = ("diffusion", "cam")
MIN_SUPERPIXEL_REGION = 16  # smaller regions take the pixel-wise arg-max of the seeds
EPS = 1e-6


@dataclass(frozen=True)
class Config:
    novel: tuple[int, ...] = ()  # novel (weak) class ids; the engine fills them from --protocol / --novel
    lnet_until: float = 0.3  # P-Net learns from transferred labels after this share of training
    adversarial: bool = True
    adv_from: float = 0.6  # adversarial term after this share of training (CE warm-up before)
    adv_weight: float = 0.01
    disc_channels: int = 32
    label_rule: str = "diffusion"  # "diffusion" (L-Net) or "cam" (thresholded CAM arg-max baseline)
    superpixels: int = 40  # SLIC segments asked for inside the not-base region
    compactness: float = 10.0
    alpha: float = 0.99  # diffusion strength
    color_sigma: float = 0.1  # affinity bandwidth on mean RGB in [0, 1]
    cam_threshold: float = 0.2  # "cam" rule: pixels whose best normalised CAM is lower stay unlabelled
    real_smoothing: float = 0.2  # discriminator's real maps: (1 - s) one-hot + s / C (softened, not one-hot)

    def __post_init__(self) -> None:
        check_loss_weights(self)
        object.__setattr__(self, "novel", tuple(int(c) for c in self.novel))  # JSON gives lists back
        if self.label_rule not in LABEL_RULES:
            raise ValueError(f"label_rule must be one of {LABEL_RULES}, got {self.label_rule!r}")
        if not (0.0 <= self.lnet_until <= 1.0 and 0.0 <= self.adv_from <= 1.0):
            raise ValueError(
                f"lnet_until and adv_from are shares of training in [0, 1], got {self.lnet_until}, {self.adv_from}"
            )
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1) for the diffusion to converge, got {self.alpha}")
        if not 0.0 <= self.real_smoothing < 1.0:
            raise ValueError(f"real_smoothing must be in [0, 1), got {self.real_smoothing}")
        if self.superpixels < 1 or self.disc_channels < 1 or self.color_sigma <= 0:
            raise ValueError("superpixels and disc_channels must be >= 1 and color_sigma > 0")


# ----------------------------------------------------------------------------- model


class Discriminator(nn.Module):
    """Patch discriminator: ``(B, 3 + C, H, W)`` image + label map -> ``(B, 1, H/16, W/16)`` real/fake logits."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        widths = [in_channels, channels, 2 * channels, 4 * channels, 8 * channels]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv2d(widths[-1], 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransferNet(nn.Module):
    """L-Net (``1 + C`` outputs: not-base logit, CAM logits), P-Net (``C`` outputs), discriminator."""

    def __init__(self, num_classes: int, config: Config, backbone: Backbone) -> None:
        super().__init__()
        self.lnet = build_smp(backbone, 1 + num_classes)
        self.pnet = build_smp(backbone, num_classes)
        self.disc = Discriminator(3 + num_classes, config.disc_channels)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor, part: str = "pnet", label_map: torch.Tensor | None = None):
        """``part``: ``pnet`` ``(B, C, H, W)``; ``lnet`` ``(B, 1 + C, H, W)``; ``disc`` / ``disc_frozen``
        ``(B, 1, h, w)`` on ``(images, label_map)``, the frozen one with detached discriminator
        weights (the generator's term must not train the discriminator). Everything goes through
        ``forward`` so that wrappers (DistributedDataParallel) see every call."""
        if part == "pnet":
            return self.pnet(images)
        if part == "lnet":
            return self.lnet(images)
        if label_map is None:
            raise ValueError(f"part {part!r} scores an image with its label map; pass label_map")
        x = torch.cat([images, label_map.to(images.dtype)], 1)
        if part == "disc":
            return self.disc(x)
        if part == "disc_frozen":
            params = {k: v.detach() for k, v in self.disc.named_parameters()}
            return functional_call(self.disc, params, (x,))
        raise ValueError(f"unknown part {part!r}; use pnet, lnet, disc or disc_frozen")


def build(num_classes: int, config: Config, backbone: Backbone) -> nn.Module:
    return TransferNet(num_classes, config, backbone)


# ----------------------------------------------------------------------------- label transfer (pure)


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """Normalised ``(3, H, W)`` tensor -> ``(H, W, 3)`` float64 RGB in [0, 1] (for SLIC)."""
    return denormalize(image.float()).permute(1, 2, 0).cpu().numpy().astype(np.float64)


def superpixel_graph(rgb: np.ndarray, segments: np.ndarray, sigma: float) -> np.ndarray:
    """Affinity ``(n, n)`` between 4-connected superpixels: ``exp(-|mean rgb_u - mean rgb_v|^2 / 2 sigma^2)``.

    ``segments (H, W)``: superpixel ids ``0..n-1``, ``-1`` outside.
    """
    n = segments.max() + 1
    inside = segments >= 0
    counts = np.bincount(segments[inside], minlength=n).clip(min=1)
    color = np.stack([np.bincount(segments[inside], rgb[..., c][inside], minlength=n) for c in range(3)], 1)
    color = color / counts[:, None]
    pairs = [(segments[:, :-1], segments[:, 1:]), (segments[:-1], segments[1:])]
    a = np.concatenate([p.ravel() for p, _ in pairs])
    b = np.concatenate([q.ravel() for _, q in pairs])
    keep = (a >= 0) & (b >= 0) & (a != b)
    a, b = a[keep], b[keep]
    weights = np.zeros((n, n))
    weights[a, b] = np.exp(-((color[a] - color[b]) ** 2).sum(1) / (2 * sigma**2))
    return np.maximum(weights, weights.T)


def diffuse(weights: np.ndarray, seeds: np.ndarray, alpha: float) -> np.ndarray:
    """Self-diffusion ``F = (I - alpha D^-1/2 W D^-1/2)^-1 Y`` of seeds ``(n, K)`` over an ``(n, n)`` graph."""
    inv_sqrt = 1.0 / np.sqrt(np.maximum(weights.sum(1), EPS))
    s = inv_sqrt[:, None] * weights * inv_sqrt[None]
    return np.linalg.solve(np.eye(len(weights)) - alpha * s, seeds)


def self_diffusion(rgb: np.ndarray, region: np.ndarray, seeds: np.ndarray, config: Config) -> np.ndarray:
    """Index ``(H, W)`` into the ``K`` seed maps ``(K, H, W)`` for each region pixel, ``-1`` outside the region.

    SLIC superpixels inside ``region``; seeds averaged per superpixel, diffused, arg-max.
    """
    out = np.full(region.shape, -1, dtype=np.int64)
    if region.sum() < MIN_SUPERPIXEL_REGION:
        out[region] = seeds[:, region].argmax(0)
        return out
    segments = slic(rgb, n_segments=config.superpixels, compactness=config.compactness, mask=region, start_label=1)
    segments = segments.astype(np.int64) - 1  # -1 outside the region
    n, inside = segments.max() + 1, segments >= 0
    counts = np.bincount(segments[inside], minlength=n).clip(min=1)
    y = np.stack([np.bincount(segments[inside], s[inside], minlength=n) for s in seeds], 1) / counts[:, None]
    cls = diffuse(superpixel_graph(rgb, segments, config.color_sigma), y, config.alpha).argmax(1)
    out[inside] = cls[segments[inside]]
    out[region & ~inside] = seeds[:, region & ~inside].argmax(0)  # pixels SLIC left out, if any
    return out


@torch.no_grad()
def transfer_labels(
    lnet_out: torch.Tensor, images: torch.Tensor, label: torch.Tensor, tags: torch.Tensor, config: Config
) -> torch.Tensor:
    """Base labels + labels transferred to the novel region: ``(B, H, W)`` int64.

    ``lnet_out (B, 1 + C, H, W)``: not-base logit and CAM logits. Inside each image's
    ``UNLABELED`` region the tagged novel classes are assigned by ``config.label_rule``; what
    stays unassigned remains ``UNLABELED`` (ignored by the cross-entropy).
    """
    notbase = lnet_out[:, 0].float().sigmoid()
    cams = normalize_cams(lnet_out[:, 1:])
    out = label.clone()
    for b in range(label.shape[0]):
        tagged = [c for c in config.novel if tags[b, c] > 0]
        region = label[b] == UNLABELED
        if not tagged or not region.any():
            continue
        classes = torch.tensor(tagged, device=label.device)
        if len(tagged) == 1 and config.label_rule == "diffusion":
            out[b][region] = classes[0]
        elif config.label_rule == "cam":  # the CAM baseline's rule, restricted to tagged novel classes
            maps = torch.zeros_like(cams[b])
            maps[tagged] = cams[b, tagged]
            pseudo = cam_pseudo_mask(maps[None], config.cam_threshold)[0]
            keep = region & torch.isin(pseudo, classes)  # zero CAMs everywhere would arg-max to class 0
            out[b][keep] = pseudo[keep]
        else:
            seeds = (cams[b, tagged] * notbase[b]).cpu().numpy()
            idx = torch.from_numpy(self_diffusion(to_rgb(images[b]), region.cpu().numpy(), seeds, config))
            idx = idx.to(label.device)
            out[b][region] = classes[idx[region].clamp(min=0)]
    return out


# ----------------------------------------------------------------------------- the method contract


def lnet_losses(lnet_out: torch.Tensor, label: torch.Tensor, tags: torch.Tensor) -> dict[str, torch.Tensor]:
    """Not-base BCE on valid pixels and multi-label BCE of the CAM maps' global averages."""
    valid = label != IGNORE
    notbase = lnet_out[:, 0].float()
    target = (label == UNLABELED).float()
    region = F.binary_cross_entropy_with_logits(notbase[valid], target[valid]) if valid.any() else notbase.sum() * 0
    tag_logits = lnet_out[:, 1:].float().mean((2, 3))  # (B, C): GAP of the CAM logits
    return {"lnet_region": region, "lnet_tags": F.binary_cross_entropy_with_logits(tag_logits, tags.float())}


def soft_label_map(label: torch.Tensor, num_classes: int, region: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Real examples: ``(1 - s) one-hot + s / C`` of ``label (B, H, W)`` inside ``region (B, H, W)``, 0 elsewhere."""
    onehot = F.one_hot(label.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()
    return ((1 - smoothing) * onehot + smoothing / num_classes) * region[:, None].float()


def patch_bce(logits: torch.Tensor, target: float, region: torch.Tensor) -> torch.Tensor:
    """BCE of patch logits ``(B, 1, h, w)`` against ``target``, weighted by the share of ``region (B, H, W)``
    each patch covers (patches outside the region see zeros in real and fake maps alike)."""
    weight = F.adaptive_avg_pool2d(region[:, None].float(), (logits.shape[-2], logits.shape[-1]))
    bce = F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target), reduction="none")
    return (bce * weight).sum() / weight.sum().clamp(min=EPS)


def adversarial_losses(
    model: nn.Module, images: torch.Tensor, logits: torch.Tensor, label: torch.Tensor, smoothing: float = 0.2
) -> dict:
    """Generator term (P-Net's softmax on the novel region should look real) and discriminator terms
    (real: the softened label map on the base region of every image; fake: P-Net's softmax there)."""
    num_classes = logits.shape[1]
    prob = logits.float().softmax(1)
    base = label < num_classes  # base pixels (novel ones are UNLABELED, void IGNORE)
    novel = label == UNLABELED
    out = {}
    if novel.any():
        fake_novel = prob * novel[:, None]
        out["adv"] = patch_bce(model(images, "disc_frozen", fake_novel), 1.0, novel)
    else:
        out["adv"] = logits.sum() * 0.0
    if base.any():
        real = soft_label_map(label, num_classes, base, smoothing)
        fake = (prob * base[:, None]).detach()
        out["disc"] = patch_bce(model(images, "disc", real), 1.0, base) + patch_bce(
            model(images, "disc", fake), 0.0, base
        )
    return out


def training_step(model: nn.Module, batch: dict, config: Config) -> dict[str, torch.Tensor]:
    """L-Net losses always; P-Net CE on base (+ transferred after ``lnet_until``); adversarial after ``adv_from``."""
    images, label, tags = batch["image"], batch["label"], batch["tags"]
    progress = float(batch.get("progress", 1.0))
    lnet_out = model(images, "lnet")
    logs = lnet_losses(lnet_out, label, tags)
    target = label
    if progress >= config.lnet_until and config.novel:
        target = transfer_labels(lnet_out.detach(), images, label, tags, config)
    logits = model(images, "pnet")
    logs["pnet_ce"] = sparse_cross_entropy(logits, target)
    logs["transferred_frac"] = ((label == UNLABELED) & (target != UNLABELED)).float().mean()
    loss = logs["lnet_region"] + logs["lnet_tags"] + logs["pnet_ce"]
    if config.adversarial and progress >= config.adv_from:
        adv = adversarial_losses(model, images, logits, label, config.real_smoothing)
        loss = loss + config.adv_weight * adv["adv"] + adv.get("disc", 0.0)
        logs.update(adv)
    return {"loss": loss, **{k: v.detach() for k, v in logs.items()}}


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """P-Net class scores ``(B, C, H, W)`` for normalised ``(B, 3, H, W)`` images."""
    return model(images, "pnet")

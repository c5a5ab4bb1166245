"""The methods. Each module follows one small contract, written down as :class:`Method`:

- ``SUPERVISION``: the weak-label kinds it learns from (``dense``, ``tags``, ``points``, ...);
- ``Config``: a frozen dataclass of its knobs, with small CPU defaults;
- ``build(num_classes, config, backbone) -> nn.Module``;
- ``training_step(model, batch, config) -> dict`` with a scalar ``"loss"`` (other entries are logged);
  ``batch`` is a :class:`Batch`: ``image``, ``label``, ``tags``, ``index`` and ``progress`` (0..1 through training);
- ``predict(model, images) -> (B, C, H, W)`` class scores.

A method may also offer the optional hooks of :data:`OPTIONAL_HOOKS` (the dashboard's views use
them); callers ask :func:`optional_hook`, never ``hasattr`` or a method's identity.

``METHODS`` maps CLI names to modules; it is the only name lookup (the CLI's edge).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import torch
from torch import nn

from workbench.methods import cam, partial_ce, simformer, single_stage, spml, supervised, transfer
from workbench.models import Backbone


class Batch(TypedDict, total=False):
    """What ``training_step`` receives: the loader's collated items on the device, plus ``progress``."""

    image: torch.Tensor  # (B, 3, H, W) float, ImageNet-normalised
    label: torch.Tensor  # (B, H, W) int64: classes 0..C-1, UNLABELED 254, IGNORE 255
    tags: torch.Tensor  # (B, C) float multi-hot image tags
    index: torch.Tensor  # (B,) int64 dataset indices (methods that cache per image, e.g. superpixels)
    mask: torch.Tensor  # (B, H, W) int64 dense ground truth; evaluation sets only
    progress: float  # 0 at the first step, 1 at the last


@runtime_checkable
class Method(Protocol):
    """A method module (every entry of :data:`METHODS` satisfies it; tests/test_methods_contract.py checks)."""

    SUPERVISION: tuple[str, ...]
    Config: type

    def build(self, num_classes: int, config: Any, backbone: Backbone) -> nn.Module: ...

    def training_step(self, model: Any, batch: Any, config: Any) -> dict[str, torch.Tensor]: ...

    def predict(self, model: Any, images: torch.Tensor) -> torch.Tensor: ...


# name -> what the hook computes. Signatures:
#   pixel_features(model, images (B, 3, H, W)) -> (B, D, H, W) per-pixel features at the input size
#   simnet_affinity(model, features (D, h, w), row, col) -> (h, w) same-class probability of every pixel
#   proposals(model, image (3, H, W)) -> [{"mask": (H, W), "cls": int, "score": float, ...}, ...] best first
#   param_groups(model, config) -> [{"params": [...], "lr_scale": float}, ...] (the engine's optimizer groups)
#   train_diagnostics(model, dataset with GT, device, config) -> {name: float}: the engine's report on
#       the training images after training (e.g. pseudo-mask quality against GT), never a training signal
Hook = Literal["pixel_features", "simnet_affinity", "proposals", "param_groups", "train_diagnostics"]
OPTIONAL_HOOKS: tuple[Hook, ...] = (
    "pixel_features",
    "simnet_affinity",
    "proposals",
    "param_groups",
    "train_diagnostics",
)


def optional_hook(method: Any, name: Hook) -> Callable[..., Any] | None:
    """The method's optional hook ``name``, or None when it does not offer one."""
    if name not in OPTIONAL_HOOKS:
        raise ValueError(f"unknown optional hook {name!r}; the hooks are {OPTIONAL_HOOKS}")
    hook = getattr(method, name, None)
    return hook if callable(hook) else None


METHODS: dict[str, Any] = {
    "supervised": supervised,
    "partial_ce": partial_ce,
    "single_stage": single_stage,
    "spml": spml,
    "cam": cam,
    "simformer": simformer,
    "transfer": transfer,
}

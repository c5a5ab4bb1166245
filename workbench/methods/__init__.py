"""The methods. Each module follows one small contract, written down as :class:`Method`:

- ``SUPERVISION``: the weak-label kinds it learns from (``dense``, ``tags``, ``points``, ...);
- ``Config``: a frozen dataclass of its knobs, with small CPU defaults;
- ``build(num_classes, config, backbone) -> nn.Module``;
- ``training_step(model, batch, config) -> dict`` with a scalar ``"loss"`` (other entries are logged);
  ``batch`` is a :class:`Batch`: ``image``, ``label``, ``tags``, ``index`` and ``progress`` (0..1 through training);
- ``predict(model, images) -> (B, C, H, W)`` class scores.

A method may also offer the optional hooks of :data:`OPTIONAL_HOOKS` (the dashboard's views use
them); callers ask :func:`optional_hook`, never ``hasattr`` or a method's identity. The rest of
what callers rely on is declared here too, each clause tested over every method in
``tests/methods/test_contract.py``:

- a ``Config`` may hold the fields of :data:`OPTIONAL_CONFIG_FIELDS` (read with
  :func:`config_field`); one with ``novel`` is a weak-shot method (:func:`is_weak_shot`), and the
  training loop fills ``novel`` from the run's class split;
- a model that keeps training state outside its weights (spml's memory bank) is a
  :class:`KeepsTrainingState`; the loop saves and restores that state with each checkpoint;
- a forward that returns a dict may hold :data:`PIXEL_EMBEDDING`: ``(B, D, h, w)`` per-pixel
  features (the dashboard's affinity view); without it nor a ``pixel_features`` hook, the model is or
  holds an smp ``SegmentationModel``, whose decoder output gives them;
- the image encoder is a submodule named ``encoder`` (smp's convention): Grad-CAM explains the
  deepest of its stages that ``predict`` runs through (:func:`workbench.explain.segmenter_layer`);
- ``training_step`` and the hooks get the model as the loop trains it: under ``torchrun`` a
  ``MethodDDP`` that forwards attribute access (``model.tag_head``) to the model inside, so no
  method unwraps it.

``METHODS`` maps CLI names to modules; it is the only name lookup (the CLI's edge).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import torch
from torch import nn

from workbench.methods import cam, partial_ce, simformer, single_stage, spml, supervised, transfer
from workbench.modeling.backbones import Backbone


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
    """A method module (every entry of :data:`METHODS` satisfies it; tests/methods/test_contract.py checks)."""

    SUPERVISION: tuple[str, ...]
    Config: type

    def build(self, num_classes: int, config: Any, backbone: Backbone) -> nn.Module: ...

    def training_step(self, model: Any, batch: Any, config: Any) -> dict[str, torch.Tensor]: ...

    def predict(self, model: Any, images: torch.Tensor) -> torch.Tensor: ...


# Config fields a method may declare, with the value meant when it does not.
OPTIONAL_CONFIG_FIELDS: dict[str, Any] = {
    "novel": (),  # tuple[int, ...] novel class ids: a weak-shot method; the loop fills them from the class split
    "grad_clip": 0.0,  # float: full-model gradient L2-norm clip in the loop (0: off)
}

PIXEL_EMBEDDING = "embed"  # the forward dict's key of (B, D, h, w) per-pixel features


def config_field(config: Any, name: str) -> Any:
    """The optional Config field ``name`` of :data:`OPTIONAL_CONFIG_FIELDS`, or its meant value when absent."""
    if name not in OPTIONAL_CONFIG_FIELDS:
        raise ValueError(f"unknown optional config field {name!r}; the fields are {sorted(OPTIONAL_CONFIG_FIELDS)}")
    return getattr(config, name, OPTIONAL_CONFIG_FIELDS[name])


def is_weak_shot(method: Any) -> bool:
    """A weak-shot method (base classes with masks, novel classes with tags) declares ``Config.novel``."""
    return "novel" in {f.name for f in dataclasses.fields(method.Config)}


@runtime_checkable
class KeepsTrainingState(Protocol):
    """A model with training state outside its weights and buffers, saved in each checkpoint's train state."""

    def resume_state(self) -> dict: ...

    def load_resume_state(self, state: dict) -> None: ...


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

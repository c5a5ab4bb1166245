"""Building segmentation networks from segmentation-models-pytorch.

Models train from scratch by default (``encoder_weights=None``: nothing is fetched from a
hub). ``encoder_weights`` may also name a local ``.safetensors`` / ``.pth`` file with encoder
weights, or ``"imagenet"`` for users with internet access.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

ARCHITECTURES = tuple(sorted(smp.MODEL_ARCHITECTURES_MAPPING))  # lower-case names, e.g. "unet", "fpn"


class ModelError(ValueError):
    """A model that cannot be built or loaded as asked (the message says how to fix it)."""


@dataclass(frozen=True)
class Backbone:
    """Which smp architecture and encoder a method builds on."""

    arch: str = "Unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None


def build_smp(backbone: Backbone, num_classes: int, **kwargs) -> nn.Module:
    """An smp model with ``num_classes`` output channels (extra ``kwargs`` go to the smp class)."""
    if backbone.arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise ModelError(f"unknown architecture {backbone.arch!r}; choose from {ARCHITECTURES}")
    if not backbone.encoder.startswith("tu-") and backbone.encoder not in smp.encoders.get_encoder_names():
        raise ModelError(
            f"unknown encoder {backbone.encoder!r}; see segmentation_models_pytorch.encoders.get_encoder_names(), or a timm name as 'tu-NAME'"
        )
    weights = backbone.encoder_weights
    local = weights is not None and (Path(weights).suffix in (".pt", ".pth", ".safetensors") or Path(weights).exists())
    model = smp.create_model(
        backbone.arch, encoder_name=backbone.encoder, encoder_weights=None if local else weights,
        classes=num_classes, **kwargs,
    )  # fmt: skip
    if local:
        load_encoder_weights(model.encoder, weights)
    return model


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load encoder weights from a local file, never unpickling code (safetensors or weights-only torch)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: encoder weights file not found; pass an existing .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure means the same thing to the user
        raise ModelError(f"{path}: cannot read encoder weights ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # classifier of ImageNet checkpoints
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if unexpected or len(missing) == len(encoder.state_dict()):
        raise ModelError(
            f"{path}: weights do not fit the encoder ({len(unexpected)} unexpected keys, e.g. {unexpected[:3]}; "
            f"{len(missing)} missing); pass weights of the same encoder"
        )

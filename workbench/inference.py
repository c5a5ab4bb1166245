"""Class scores of one image at its own size from any method's ``predict``: below the methods, which use it too."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.dataset import image_tensor


@torch.no_grad()
def predict_scores(predict: Callable, model: nn.Module, image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` float class scores of an ``(H, W, 3)`` uint8 image at the image's own size.

    The image is resized to the working ``size`` the model was trained at, ``predict(model, images)``
    (a method's ``predict``) scores it, and the scores are resized back bilinearly.
    """
    scores = predict(model, image_tensor(image, size).to(next(model.parameters()).device)).float()
    return F.interpolate(scores, size=image.shape[:2], mode="bilinear", align_corners=False)[0]


def predict_image(method: ModuleType, model: nn.Module, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` uint8 prediction for an ``(H, W, 3)`` uint8 image, at the image's own size."""
    return predict_scores(method.predict, model, image, size).argmax(0).byte().cpu().numpy()

"""The dense (gated) CRF loss on local windows: its defining properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workbench.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from workbench.modeling.losses import crf_loss


def normalised(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] ``(B, 3, H, W)`` -> the loader's ImageNet-normalised images."""
    return (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def two_colour_image(h: int = 16, w: int = 16, edge: int = 8) -> torch.Tensor:
    rgb = torch.zeros(1, 3, h, w)
    rgb[:, 0, :, :edge] = 1.0  # red left of the edge, blue right of it
    rgb[:, 2, :, edge:] = 1.0
    return normalised(rgb)


def split_prediction(h: int, w: int, column: int, c: int = 2) -> torch.Tensor:
    cls = (torch.arange(w) >= column).long().expand(h, w)
    return F.one_hot(cls, c).permute(2, 0, 1)[None].float()


def test_zero_for_constant_confident_predictions():
    g = torch.Generator().manual_seed(0)
    images = normalised(torch.rand(2, 3, 12, 10, generator=g))
    probs = torch.zeros(2, 4, 12, 10)
    probs[:, 2] = 1.0
    assert float(crf_loss(probs, images)) == pytest.approx(0.0, abs=1e-7)


def test_edge_aligned_prediction_costs_less_than_edge_crossing():
    images = two_colour_image()
    aligned = crf_loss(split_prediction(16, 16, 8), images)
    crossing = crf_loss(split_prediction(16, 16, 4), images)  # the label changes inside the red region
    assert float(aligned) < 0.1 * float(crossing)
    assert float(crossing) > 0


def test_noisy_prediction_costs_more_than_a_smooth_one():
    g = torch.Generator().manual_seed(0)
    images = normalised(torch.full((1, 3, 12, 12), 0.5))
    smooth = split_prediction(12, 12, 6, 3)
    noisy = F.one_hot(torch.randint(0, 3, (12, 12), generator=g), 3).permute(2, 0, 1)[None].float()
    assert crf_loss(smooth, images) < crf_loss(noisy, images)


def test_gradient_descent_on_logits_lowers_it_and_gated_pixels_get_no_gradient():
    g = torch.Generator().manual_seed(0)
    images = two_colour_image()
    logits = torch.randn(1, 2, 16, 16, generator=g).requires_grad_()
    valid = torch.ones(1, 16, 16, dtype=torch.bool)
    valid[:, :, :2] = False
    first = crf_loss(logits.softmax(1), images, valid)
    first.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert logits.grad[..., :2].abs().sum() == 0  # pairs touching a gated pixel are dropped
    opt = torch.optim.SGD([logits], lr=1000.0)
    for _ in range(30):
        opt.zero_grad()
        loss = crf_loss(logits.softmax(1), images, valid)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * float(first.detach())


def test_bad_shapes_and_sigmas_name_the_problem():
    with pytest.raises(ValueError, match="must share"):
        crf_loss(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="sigma_rgb"):
        crf_loss(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8), sigma_rgb=0.0)

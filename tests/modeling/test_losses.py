"""Shared losses: the class-weighted sparse cross-entropy (the CRF loss has tests/modeling/test_losses_crf.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import partial_ce, supervised
from workbench.modeling.backbones import Backbone
from workbench.modeling.losses import sparse_cross_entropy


def test_class_weights_weigh_each_labelled_pixel_by_its_class():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    label = torch.randint(0, 3, (2, 4, 5))
    label[0, 0] = UNLABELED
    label[1, 1] = IGNORE
    weights = (0.5, 2.0, 4.0)
    per_pixel = F.cross_entropy(logits, label.clamp(max=2), reduction="none")
    w = torch.tensor(weights)[label.clamp(max=2)] * (label < 3)
    expected = (per_pixel * w).sum() / w.sum()
    assert torch.allclose(sparse_cross_entropy(logits, label, class_weights=weights), expected, atol=1e-6)
    assert not torch.allclose(sparse_cross_entropy(logits, label), expected, atol=1e-3)
    with pytest.raises(ValueError, match="2 entries for 3 classes"):
        sparse_cross_entropy(logits, label, class_weights=(1.0, 2.0))


@pytest.mark.parametrize("method", [supervised, partial_ce])
def test_bad_class_weights_are_named(method):
    with pytest.raises(ValueError, match="finite positive"):
        method.Config(class_weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="2 entries for 3 classes"):
        method.build(3, method.Config(class_weights=(1.0, 2.0)), Backbone())


def test_ramp_is_zero_before_start_linear_to_end_and_a_step_when_they_meet():
    from workbench.modeling.losses import ramp

    assert ramp(0.05, 0.1, 0.4) == 0.0 and ramp(0.1, 0.1, 0.4) == 0.0
    assert ramp(0.25, 0.1, 0.4) == pytest.approx(0.5) and ramp(0.9, 0.1, 0.4) == 1.0
    assert ramp(0.2, 0.3, 0.3) == 0.0 and ramp(0.3, 0.3, 0.3) == 1.0

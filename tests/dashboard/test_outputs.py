"""ModelOutputs on its own: outputs cached per model version, features of any smp model, no output without labels."""

from __future__ import annotations

import numpy as np
import torch

from tests.dashboard.parts import outputs, workspace
from workbench.dashboard.outputs import pixel_features
from workbench.methods import partial_ce
from workbench.modeling.backbones import Backbone


def test_outputs_are_computed_once_per_model_version(synthetic_root, tmp_path):
    out = outputs(workspace(synthetic_root, tmp_path))
    first = out.probabilities(0)
    assert out.probabilities(0) is first  # cached
    assert first.shape[0] == out.workspace.info.num_classes and np.allclose(first.sum(0), 1.0, atol=1e-4)
    torch.manual_seed(1)
    out.use(partial_ce.build(out.workspace.info.num_classes, partial_ce.Config(), Backbone()), version=1)
    assert out.probabilities(0) is not first and out.peek(0, ("probs", 0)) is first  # each version its own


def test_an_smp_model_gives_decoder_features_at_the_input_size():
    model = partial_ce.build(5, partial_ce.Config(), Backbone()).eval()
    feats = pixel_features(partial_ce, model, torch.randn(2, 3, 32, 32))
    assert feats is not None and feats.shape[0] == 2 and feats.shape[-2:] == (32, 32)


def test_the_point_pseudo_mask_says_why_there_is_none_without_labels(synthetic_root, tmp_path):
    out = outputs(workspace(synthetic_root, tmp_path))
    assert "no points or scribbles" in out.point_pseudo_mask(0)

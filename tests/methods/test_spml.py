"""SPML: k-means, segments, the pixel-to-segment contrastive loss, pseudo labels, training and the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from workbench.cli import main
from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import load_dataset_info
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import spml
from workbench.modeling.backbones import Backbone

TINY = Backbone("Unet", "resnet18")


def tiny_batch(root, supervision: str = "points", n: int = 4) -> dict:
    ds = SegmentationDataset(load_dataset_info(root), "train", supervision)
    items = [ds[i] for i in range(n)]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "label", "tags", "index")}
    batch["progress"] = 1.0
    return batch


def quadrant_features(h: int = 8, w: int = 8, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h*w, 4)`` unit features, one well-separated direction per image quadrant, and the quadrant ids."""
    g = torch.Generator().manual_seed(seed)
    quadrant = ((torch.arange(h) >= h // 2)[:, None] * 2 + (torch.arange(w) >= w // 2)[None, :]).reshape(-1)
    x = F.one_hot(quadrant, 4).float() + noise * torch.randn(h * w, 4, generator=g)
    return F.normalize(x, dim=1), quadrant


def test_kmeans_recovers_separable_clusters_and_is_stable():
    x, quadrant = quadrant_features()
    init = spml.grid_cells(8, 8, 2).reshape(-1)
    assign = spml.spherical_kmeans(x, init, 10)
    assert torch.equal(assign, quadrant)
    assert torch.equal(spml.spherical_kmeans(x, init, 30), assign)


def test_kmeans_clusters_stay_pure_from_a_finer_grid():
    x, quadrant = quadrant_features(12, 12, seed=1)
    assign = spml.spherical_kmeans(x, spml.grid_cells(12, 12, 6).reshape(-1), 10)
    for k in assign.unique():
        assert quadrant[assign == k].unique().numel() == 1  # no cluster mixes two separable groups
    assert torch.equal(spml.spherical_kmeans(x, spml.grid_cells(12, 12, 6).reshape(-1), 20), assign)


@pytest.mark.parametrize("seed", range(5))
def test_segments_never_cross_superpixel_or_label_boundaries(seed):
    g = torch.Generator().manual_seed(seed)
    b, h, w, c = 2, 10, 12, 4
    embed = F.normalize(torch.randn(b, 6, h, w, generator=g), dim=1)
    label = torch.randint(0, c, (b, h, w), generator=g)
    label[torch.rand(b, h, w, generator=g) < 0.4] = UNLABELED
    label[:, 0, :3] = IGNORE
    superpixel = torch.randint(0, 5, (b, h, w), generator=g)
    ids = spml.make_segments(embed, label, superpixel, c, grid=3, iterations=5)
    assert torch.equal(ids < 0, label == IGNORE)  # void is dropped, unlabelled (254) pixels are kept
    image = torch.arange(b)[:, None, None].expand(b, h, w)
    for s in ids.unique()[1:] if (ids < 0).any() else ids.unique():
        members = ids == s
        for attribute in (label, superpixel, image):
            assert attribute[members].unique().numel() == 1
    assert torch.equal(ids.unique()[(ids.unique() >= 0)], torch.arange(int(ids.max()) + 1))  # consecutive ids


def test_segsort_loss_matches_the_hand_formula():
    e = torch.tensor([[1.0, 0.0]])
    protos = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    positive = torch.tensor([[True, True, False]])
    kappa = 2.0
    a = torch.exp(kappa * (e @ protos.T))[0]
    own = torch.tensor([0])
    expected = -torch.log(a[1] / (a[1] + a[2]))  # the own segment 0 leaves the numerator: another positive exists
    torch.testing.assert_close(spml.segsort_loss(e, protos, kappa, positive, None, own), expected)
    only_own = torch.tensor([[True, False, False]])
    expected = -torch.log(a[0] / (a[0] + a[1] + a[2]))
    torch.testing.assert_close(spml.segsort_loss(e, protos, kappa, only_own, None, own), expected)


def test_contrastive_loss_is_lower_for_aligned_than_for_shuffled_embeddings():
    g = torch.Generator().manual_seed(0)
    segments = torch.arange(6).repeat_interleave(10)  # 6 segments of 10 pixels
    seg_label = torch.tensor([0, 0, 1, 1, 2, 2])
    protos = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    aligned = F.normalize(protos[segments] + 0.1 * torch.randn(60, 8, generator=g), dim=1)
    shuffled = aligned[torch.randperm(60, generator=g)]
    positive = seg_label[segments][:, None] == seg_label[None, :]
    good = spml.segsort_loss(aligned, protos, 6.0, positive, None, segments)
    bad = spml.segsort_loss(shuffled, protos, 6.0, positive, None, segments)
    assert good < bad


def test_contrastive_terms_use_unlabelled_pixels_but_never_void():
    g = torch.Generator().manual_seed(0)
    embed = F.normalize(torch.randn(2, 8, 6, 6, generator=g), dim=1).requires_grad_()
    label = torch.full((2, 6, 6), UNLABELED)
    label[0, 1, 1], label[1, 4, 4] = 0, 1
    label[:, 5] = IGNORE
    superpixel = (torch.arange(6)[None, :, None] >= 3).long().expand(2, 6, 6).contiguous()
    tags = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    config = spml.Config(use_affinity=True, affinity_threshold=-1.0, pixels_per_image=0)
    losses, bank = spml.contrastive_terms(embed, label, superpixel, tags, [], config)
    assert set(losses) == {"image", "semantic", "cooccurrence", "affinity"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert embed.grad[:, :, 2:5].abs().sum() > 0  # unlabelled pixels get gradient
    assert embed.grad[:, :, 5].abs().sum() == 0  # void pixels never do
    assert bank["protos"].requires_grad is False and (bank["label"] < 3).sum() == 2


def test_random_walk_spreads_seeds_inside_an_embedding_region_only():
    embed = torch.zeros(1, 2, 8, 8)
    embed[:, 0, :, :4] = 1.0  # left half one direction, right half orthogonal
    embed[:, 1, :, 4:] = 1.0
    seeds = torch.zeros(1, 2, 8, 8)
    seeds[0, 0, 0, 0] = 1.0
    seeds[0, 1, 7, 7] = 1.0
    out = spml.random_walk(embed, seeds, stride=1, beta=20.0, squarings=4)
    labels = out[0].argmax(0)
    assert (labels[:, :4] == 0).all() and (labels[:, 4:] == 1).all()


def test_knn_labels_vote_among_the_nearest_prototypes():
    protos = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    protos = F.normalize(protos, dim=1)
    embed = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    votes = spml.knn_labels(embed, protos, torch.tensor([2, 2, 0]), k=2, num_classes=3)
    assert votes[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]


def test_superpixel_cache_tells_a_flipped_image_apart(synthetic_root):
    model = spml.build(8, spml.Config(), TINY)
    batch = tiny_batch(synthetic_root, n=1)
    first = spml.batch_superpixels(model, batch["image"], batch["index"], spml.Config())
    flipped = spml.batch_superpixels(model, batch["image"].flip(-1), batch["index"], spml.Config())
    assert len(model.superpixel_cache) == 2
    assert torch.equal(spml.batch_superpixels(model, batch["image"], batch["index"], spml.Config()), first)
    assert first.shape == flipped.shape == (1, 32, 32)


@pytest.mark.parametrize(
    ("supervision", "changes"),
    [("points", {}), ("scribbles", {"pseudo_source": "knn"}), ("tags", {"cam_start": 0.0}),
     ("boxes", {"seed_source": "cam_boxes", "cam_start": 0.0})],
)  # fmt: skip
def test_training_steps_lower_the_loss(synthetic_root, supervision, changes):
    torch.manual_seed(0)
    batch = tiny_batch(synthetic_root, supervision)
    config = spml.Config(pseudo_start=0.0, **changes)
    model = spml.build(8, config, TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        out = spml.training_step(model, batch, config)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert len(model.memory) == config.memory_iterations
    assert sum(losses[-2:]) < sum(losses[:2])
    assert spml.predict(model.eval(), batch["image"]).shape == (4, 8, 32, 32)


def test_tag_seeds_come_from_cams_only_for_images_without_labels():
    model = spml.build(3, spml.Config(), TINY)
    label = torch.full((2, 32, 32), UNLABELED)
    label[0, 3, 3] = 1
    batch = {"image": torch.randn(2, 3, 32, 32), "label": label, "tags": torch.tensor([[0, 1.0, 0], [1, 0, 1]])}
    deep = model(batch["image"])["deep"]
    seeds, uses_cam = spml.seed_labels(model.tag_head, deep, batch, spml.Config(cam_start=0.0), 3)
    assert uses_cam.tolist() == [False, True]
    assert torch.equal(seeds[0], label[0])
    assert set(seeds[1].unique().tolist()) <= {0, 2, UNLABELED}  # only tag classes


def test_cli_trains_one_epoch(synthetic_root, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--method", "spml", "--data", str(synthetic_root), "--out", str(out), "--epochs=1",
                 "--batch_size=4", "--supervision=scribbles", "--use_affinity=true"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "config.json").read_text())["method_config"]["use_affinity"] is True
    assert 0.0 <= json.loads((out / "report.json").read_text())["miou"] <= 1.0


def test_every_labelled_pixel_joins_the_semantic_term():
    g = torch.Generator().manual_seed(0)
    embed = F.normalize(torch.randn(2, 8, 10, 10, generator=g), dim=1).requires_grad_()
    label = torch.full((2, 10, 10), UNLABELED)
    where = torch.randperm(200, generator=g)[:60]
    label.view(-1)[where] = torch.randint(0, 3, (60,), generator=g)
    superpixel = torch.zeros(2, 10, 10, dtype=torch.long)
    tags = torch.ones(2, 3)
    config = spml.Config(pixels_per_image=1, use_image=False, use_cooccurrence=False)
    losses, _ = spml.contrastive_terms(embed, label, superpixel, tags, [], config)
    losses["semantic"].backward()
    touched = embed.grad.abs().sum(1) > 0
    assert torch.equal(touched, label < 3)  # all 60 clicks, not a random subset of them
    picked = spml.sample_pixels(torch.ones(2, 10, 10, dtype=torch.bool), 5, always=label < 3)
    assert len(picked) == 60 + 10 and set(where.tolist()) <= set(picked.tolist())


def test_cooccurrence_leaves_out_classes_in_nearly_every_image():
    counts, images = torch.tensor([100.0, 95.0, 30.0, 0.0]), torch.tensor(100.0)
    assert spml.common_classes(counts, images, 0.9).tolist() == [True, True, False, False]
    assert spml.common_classes(counts, images, 1.0).tolist() == [True, False, False, False]
    assert not spml.common_classes(counts, torch.tensor(0.0), 0.9).any()
    tags = torch.tensor([[1.0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 0]])
    common = torch.tensor([True, True, False, False])
    positive = spml.cooccurrence_positives(tags, tags, common)
    assert positive.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    assert spml.cooccurrence_positives(tags, tags, torch.zeros(4, dtype=torch.bool)).all()  # road is everywhere


def cooccurrence_loss(aligned: bool, common: torch.Tensor | None) -> torch.Tensor:
    """Co-occurrence term of 4 images tagged {road, car}, {road, car}, {road, tree}, {road, tree}.

    ``aligned``: images sharing a rare tag have the same embedding; else pairs across tags do.
    """
    g = torch.Generator().manual_seed(0)
    dirs = F.normalize(torch.randn(2, 8, generator=g), dim=1)
    groups = [0, 0, 1, 1] if aligned else [0, 1, 0, 1]
    embed = torch.stack([dirs[k][:, None, None].expand(8, 6, 6) for k in groups])
    embed = F.normalize(embed + 0.01 * torch.randn(4, 8, 6, 6, generator=g), dim=1)
    label = torch.full((4, 6, 6), UNLABELED)
    superpixel = (torch.arange(6)[None, :, None] >= 3).long().expand(4, 6, 6).contiguous()
    tags = torch.tensor([[1.0, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 1]])
    config = spml.Config(use_image=False, use_semantic=False, pixels_per_image=0)
    losses, _ = spml.contrastive_terms(embed, label, superpixel, tags, [], config, common)
    return losses["cooccurrence"]


def test_cooccurrence_term_is_live_on_camvid_like_tags_and_prefers_shared_tags():
    assert float(cooccurrence_loss(True, None)) == pytest.approx(0.0, abs=1e-6)  # road in every image: dead term
    common = torch.tensor([True, False, False])
    good, bad = cooccurrence_loss(True, common), cooccurrence_loss(False, common)
    assert float(good) > 0 and good < bad


def test_training_counts_tags_and_the_classifier_trains_the_backbone_unless_detached(synthetic_root):
    batch = tiny_batch(synthetic_root)
    for detach in (False, True):
        torch.manual_seed(0)
        config = spml.Config(detach_classifier=detach, use_image=False, use_cooccurrence=False, semantic_weight=0.0)
        model = spml.build(8, config, TINY)
        config_ce_only = dataclasses.replace(config, semantic_weight=1.0, use_semantic=False, cam_weight=0.0)
        out = spml.training_step(model, batch, config_ce_only)
        out["loss"].backward()
        encoder_grad = sum(p.grad.abs().sum() for p in model.net.encoder.parameters() if p.grad is not None)
        assert (float(encoder_grad) > 0) is (not detach)
    assert model.image_count == 4 and torch.equal(model.tag_counts, (batch["tags"] > 0).float().sum(0))
    assert {"tag_counts", "image_count"} <= set(model.state_dict())


def test_spml_point_setting_is_reachable_from_the_cli(tmp_path, synthetic_root):
    paper = spml.Config.paper_points()
    assert (paper.image_weight, paper.semantic_weight, paper.cooccurrence_weight) == (0.1, 0.1, 0.1)
    assert paper.cooccurrence_kappa == 8.0 and paper.detach_classifier
    out = tmp_path / "run"
    flags = ["--image_weight=0.1", "--semantic_weight=0.1", "--cooccurrence_weight=0.1", "--cooccurrence_kappa=8",
             "--detach_classifier=true", "--point_radius=2"]  # fmt: skip
    assert main(["train", "--method", "spml", "--data", str(synthetic_root), "--out", str(out), "--epochs=1",
                 "--batch_size=4", *flags]) == 0  # fmt: skip
    saved = json.loads((out / "config.json").read_text())
    assert (
        spml.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["method_config"].items()}) == paper
    )
    assert saved["train_config"]["point_radius"] == 2.0


def test_train_diagnostics_score_pseudo_labels_and_seeds_against_ground_truth(synthetic_root):
    """Issue 31 ask 5: spml's pseudo labels and seeds against ground truth, a report and never a signal."""
    info = load_dataset_info(synthetic_root)
    dataset = SegmentationDataset(info, "train", "points", include_gt=True, limit=4)
    model = spml.build(info.num_classes, spml.Config(), TINY)
    model.train()
    diag = spml.train_diagnostics(model, dataset, torch.device("cpu"), spml.Config())
    assert diag["label_precision"] == 1.0 and diag["seed_precision"] == 1.0  # point seeds are the clicks
    assert 0.0 < diag["pseudo_coverage"] <= 1.0 and 0.0 <= diag["pseudo_precision"] <= 1.0
    assert 0.0 < diag["seed_coverage"] < 0.1  # one click a region labels a sliver of the pixels
    assert model.training  # left in the mode it was in

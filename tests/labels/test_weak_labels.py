"""Weak labels: rasterisation, geometry, simulation from dense masks and JSON I/O."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from workbench.data.synthetic import render_scene
from workbench.labels.weak_labels import (
    IGNORE,
    UNLABELED,
    Box,
    Point,
    Scribble,
    SimulationConfig,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    load_weak_labels,
    rasterize,
    save_weak_labels,
    simulate,
    vanished_pixels,
)

H, W = 20, 30


def labelled(label: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in np.argwhere(label != UNLABELED)}


def toy_mask() -> np.ndarray:
    """A 24x32 mask: class 0 background, a 6x8 block of class 1, two blobs of class 2, a 2-pixel speck of 3."""
    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[3:9, 4:12] = 1
    mask[14:22, 2:10] = 2
    mask[12:20, 20:30] = 2
    mask[0, 30:32] = 3  # smaller than min_region_px
    mask[23, 0:5] = IGNORE
    return mask


def synthetic_masks(n: int = 12, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [render_scene(rng, size, size)[1] for _ in range(n)]


# ----------------------------------------------------------------------------- rasterisation


def test_point_radius_zero_labels_exactly_its_pixel():
    label = rasterize(WeakLabels(H, W, points=(Point(4, 7, 2), Point(11.4, 20.6, 1))))
    assert label.dtype == np.uint8 and label.shape == (H, W)
    assert labelled(label) == {(4, 7), (11, 21)}
    assert label[4, 7] == 2 and label[11, 21] == 1


def test_point_disk_labels_pixels_within_radius():
    label = rasterize(WeakLabels(H, W, points=(Point(10, 15, 3, radius=2.0),)))
    expected = {(r, c) for r in range(H) for c in range(W) if (r - 10) ** 2 + (c - 15) ** 2 <= 4}
    assert labelled(label) == expected
    assert len(expected) == 13
    assert set(label[label != UNLABELED].tolist()) == {3}


def test_point_disk_is_clipped_at_the_border():
    label = rasterize(WeakLabels(H, W, points=(Point(0, 0, 1, radius=1.0),)))
    assert labelled(label) == {(0, 0), (0, 1), (1, 0)}


def test_scribble_covers_its_path_with_its_width():
    label = rasterize(WeakLabels(H, W, scribbles=(Scribble(((10, 5), (10, 25)), 1, width=3.0),)))
    rows, cols = np.nonzero(label == 1)
    assert set(rows.tolist()) == {9, 10, 11}  # width 3: one pixel either side of the path
    assert (label[9:12, 5:26] == 1).all()  # every pixel along the path, full width
    assert cols.min() == 4 and cols.max() == 26  # round ends reach half the width past the end vertices
    assert (label[:8] == UNLABELED).all() and (label[13:] == UNLABELED).all()


def test_thin_diagonal_scribble_is_an_unbroken_line():
    label = rasterize(WeakLabels(H, W, scribbles=(Scribble(((2, 2), (17, 27)), 0, width=1.0),)))
    components, n = ndimage.label(label == 0, structure=np.ones((3, 3)))
    assert n == 1
    assert label[2, 2] == 0 and label[17, 27] == 0
    assert all((label[:, c] == 0).sum() >= 1 for c in range(2, 28))  # one pixel per column at least


def test_long_scribble_segments_are_drawn_like_short_ones():
    """A scribble with one long segment (the memory-saving path) gives the same pixels as many short ones."""
    long_path = ((5.0, 3.0), (5.0, 600.0), (200.0, 600.0))
    dense_path = tuple((5.0, float(c)) for c in range(3, 601, 3)) + tuple((float(r), 600.0) for r in range(8, 201, 3))
    a = rasterize(WeakLabels(210, 610, scribbles=(Scribble(long_path, 1, 5.0),)))
    b = rasterize(WeakLabels(210, 610, scribbles=(Scribble(dense_path + ((200.0, 600.0),), 1, 5.0),)))
    np.testing.assert_array_equal(a, b)


def test_single_class_box_is_labelled_on_its_half_open_range():
    label = rasterize(WeakLabels(H, W, boxes=(Box(2, 3, 6, 9, 4),)))
    assert labelled(label) == {(r, c) for r in range(2, 6) for c in range(3, 9)}
    assert (label[2:6, 3:9] == 4).all()


def test_fractional_box_labels_the_pixels_whose_centre_it_holds():
    label = rasterize(WeakLabels(H, W, boxes=(Box(2.4, 3.6, 6.4, 9.5, 1),)))
    assert labelled(label) == {(r, c) for r in range(2, 6) for c in range(4, 9)}


def test_overlap_of_two_classes_stays_unlabelled():
    label = rasterize(WeakLabels(H, W, boxes=(Box(0, 0, 10, 10, 1), Box(5, 5, 15, 15, 2))))
    assert (label[5:10, 5:10] == UNLABELED).all()
    assert (label[0:5, 0:10] == 1).all() and (label[10:15, 5:15] == 2).all()
    assert label[17, 17] == UNLABELED


def test_overlap_of_the_same_class_is_labelled():
    label = rasterize(WeakLabels(H, W, boxes=(Box(0, 0, 10, 10, 1), Box(5, 5, 15, 15, 1))))
    assert (label[5:10, 5:10] == 1).all()


def test_points_and_scribbles_are_drawn_over_boxes():
    weak = WeakLabels(
        H, W, points=(Point(3, 3, 0),), scribbles=(Scribble(((7, 2), (7, 8)), 2, 1.0),), boxes=(Box(0, 0, 10, 10, 1),)
    )
    label = rasterize(weak)
    assert label[3, 3] == 0 and (label[7, 2:9] == 2).all() and label[1, 1] == 1


def test_tags_only_give_an_all_unlabelled_map():
    label = rasterize(WeakLabels(H, W, tags=frozenset({0, 3})))
    assert (label == UNLABELED).all()


# ----------------------------------------------------------------------------- geometry


def example_labels() -> WeakLabels:
    return WeakLabels(
        H,
        W,
        frozenset({0, 1, 2}),
        (Point(4, 7, 2), Point(12, 0, 1), Point(15, 22, 0, radius=1.5)),
        (Scribble(((2, 3), (9, 14), (17, 20)), 1, 3.0),),
        (Box(1, 17, 8.5, 28.2, 0),),
    )


def test_flipped_points_equal_flipped_raster():
    weak = example_labels().only(["points"])
    np.testing.assert_array_equal(rasterize(weak.flipped()), rasterize(weak)[:, ::-1])


@pytest.mark.parametrize("kind", ["scribbles", "boxes"])
def test_flipped_scribbles_and_boxes_equal_flipped_raster(kind):
    weak = example_labels().only([kind])
    np.testing.assert_array_equal(rasterize(weak.flipped()), rasterize(weak)[:, ::-1])


def test_flipping_twice_gives_the_original():
    weak = example_labels()
    assert weak.flipped().flipped() == weak


def test_resize_scales_coordinates():
    weak = example_labels().resized(2 * H, 3 * W)
    assert (weak.height, weak.width) == (2 * H, 3 * W)
    p = weak.points[0]
    assert (p.row, p.col) == ((4 + 0.5) * 2 - 0.5, (7 + 0.5) * 3 - 0.5)  # pixel centres move with PIL's resize
    b = weak.boxes[0]
    assert (b.row0, b.col0, b.row1, b.col1) == (2, 51, 17, pytest.approx(84.6))  # borders scale directly
    assert weak.scribbles[0].path[1] == ((9 + 0.5) * 2 - 0.5, (14 + 0.5) * 3 - 0.5)
    assert weak.tags == example_labels().tags


def test_resize_round_trip_and_box_raster():
    weak = example_labels()
    back = weak.resized(3 * H, 3 * W).resized(H, W)
    for a, b in zip(back.points, weak.points):
        assert (a.row, a.col, a.radius) == pytest.approx((b.row, b.col, b.radius))
    boxes = WeakLabels(H, W, boxes=(Box(1, 17, 8, 28, 0), Box(10, 2, 19, 9, 1)))
    expected = rasterize(boxes).repeat(2, 0).repeat(3, 1)  # pixel borders scale exactly
    np.testing.assert_array_equal(rasterize(boxes.resized(2 * H, 3 * W)), expected)


def test_points_at_the_last_pixel_survive_any_downscale():
    weak = WeakLabels(48, 48, points=(Point(47, 47, 1), Point(0, 0, 2)))
    for size in (16, 12, 7, 5):
        small = weak.resized(size, size)
        assert labelled(rasterize(small)) == {(size - 1, size - 1), (0, 0)}


def test_crop_moves_points_and_boxes_with_the_window():
    weak = example_labels().only(["points", "boxes"])
    crop = weak.cropped(2, 5, 12, 20)
    np.testing.assert_array_equal(rasterize(crop), rasterize(weak)[2:14, 5:25])
    assert all(0 <= p.row < 12 and 0 <= p.col < 20 for p in crop.points)
    assert len(crop.points) == 1  # (4, 7) stays; (12, 0) and (15, 22) fall outside


def test_crop_keeps_a_point_whose_pixel_is_inside():
    crop = WeakLabels(H, W, points=(Point(9.6, 4.0, 1),)).cropped(10, 0, 10, W)
    assert labelled(rasterize(crop)) == {(0, 4)}


def test_crop_past_the_border_shifts_scribbles():
    weak = example_labels().only(["scribbles"])
    crop = weak.cropped(-3, -4, H, W)  # a window reaching past the top-left corner (padding)
    np.testing.assert_array_equal(rasterize(crop)[3:, 4:], rasterize(weak)[: H - 3, : W - 4])


def test_only_keeps_tags_and_the_named_kinds():
    weak = example_labels().only(["boxes"])
    assert weak.tags == frozenset({0, 1, 2}) and weak.boxes and not weak.points and not weak.scribbles
    with pytest.raises(WeakLabelError, match="unknown weak-label kind"):
        example_labels().only(["clicks"])


# ----------------------------------------------------------------------------- simulation


@pytest.mark.parametrize("kinds", [["points"], ["scribbles"], ["points", "scribbles", "boxes"]])
def test_simulation_is_deterministic_by_seed_and_key(kinds):
    mask = synthetic_masks(1)[0]
    a = simulate(mask, kinds, SimulationConfig(points_per_region=3, seed=5), key="img_01")
    b = simulate(mask, kinds, SimulationConfig(points_per_region=3, seed=5), key="img_01")
    assert a == b


def test_different_seeds_and_keys_give_different_points():
    masks = synthetic_masks(4)
    config = SimulationConfig(points_per_region=2)
    base = [simulate(m, ["points"], config, key=f"k{i}") for i, m in enumerate(masks)]
    other_seed = [simulate(m, ["points"], SimulationConfig(points_per_region=2, seed=1), key=f"k{i}") for i, m in enumerate(masks)]  # fmt: skip
    other_key = [simulate(m, ["points"], config, key=f"x{i}") for i, m in enumerate(masks)]
    assert base != other_seed and base != other_key


def test_points_lie_deep_inside_their_region():
    for key, mask in enumerate(synthetic_masks()):
        weak = simulate(mask, ["points"], SimulationConfig(points_per_region=2), key=str(key), num_classes=8)
        assert weak.points
        for p in weak.points:
            r, c = int(p.row), int(p.col)
            assert (p.row, p.col) == (r, c) and mask[r, c] == p.cls
            regions, _ = ndimage.label(mask == p.cls, structure=np.ones((3, 3)))
            region = regions == regions[r, c]
            depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
            assert depth[r, c] >= 0.5 * depth.max()  # interior, not on the boundary


def test_one_point_per_region_above_the_size_threshold():
    mask = toy_mask()
    weak = simulate(mask, ["points"], SimulationConfig(points_per_region=1, min_region_px=4), key="toy", num_classes=4)
    per_class = {c: sum(p.cls == c for p in weak.points) for c in range(4)}
    assert per_class == {0: 1, 1: 1, 2: 2, 3: 0}  # class 2 has two blobs; the 2-pixel speck of 3 is skipped
    regions = [ndimage.label(mask == p.cls, structure=np.ones((3, 3)))[0][int(p.row), int(p.col)] for p in weak.points]
    blobs = [r for p, r in zip(weak.points, regions) if p.cls == 2]
    assert len(set(blobs)) == 2  # one in each blob


def test_void_is_never_annotated_and_tags_equal_mask_classes():
    mask = toy_mask()
    weak = simulate(mask, ["points", "scribbles", "boxes"], SimulationConfig(min_region_px=1), key="t", num_classes=4)
    assert weak.tags == frozenset({0, 1, 2, 3})
    label = rasterize(weak.only(["points", "scribbles"]))
    assert (label[mask == IGNORE] == UNLABELED).all()
    for key, m in enumerate(synthetic_masks(6)):
        tags = simulate(m, ["tags"], key=str(key), num_classes=8).tags
        assert tags == frozenset(np.unique(m).tolist())


def test_scribble_vertices_lie_inside_their_region():
    outside = total = 0
    for key, mask in enumerate(synthetic_masks()):
        weak = simulate(mask, ["scribbles"], SimulationConfig(scribble_width=1.0), key=str(key), num_classes=8)
        assert weak.scribbles
        for s in weak.scribbles:
            assert all(mask[int(r), int(c)] == s.cls for r, c in s.path)
            drawn = rasterize(WeakLabels(*mask.shape, scribbles=(s,))) == s.cls
            outside += int((mask[drawn] != s.cls).sum())
            total += int(drawn.sum())
    assert outside <= 0.01 * total  # straight chords between skeleton vertices rarely leave the region


def test_dense_scribbles_follow_the_skeleton_inside_the_region():
    config = SimulationConfig(scribble_width=1.0, scribble_step=1)
    for key, mask in enumerate(synthetic_masks()):
        weak = simulate(mask, ["scribbles"], config, key=str(key), num_classes=8)
        label = rasterize(weak)
        drawn = label != UNLABELED
        assert (mask[drawn] == label[drawn]).all()


@pytest.mark.parametrize("width", [1.0, 3.0, 5.0])
def test_scribbles_of_any_width_never_leave_their_region(width):
    """Chords and a wide brush would cut corners of thin, curved regions: such scribbles are
    shortened or drawn one pixel wide, so every pixel a simulated scribble labels is its class."""
    kept = 0
    for key, mask in enumerate(synthetic_masks()):
        weak = simulate(mask, ["scribbles"], SimulationConfig(scribble_width=width), key=str(key), num_classes=8)
        for s in weak.scribbles:
            drawn = rasterize(WeakLabels(*mask.shape, scribbles=(s,))) == s.cls
            assert drawn.any() and (mask[drawn] == s.cls).all()
            kept += s.width == width
    assert kept > 0  # the asked width survives where the region is wide enough


def test_vanished_pixels_counts_labels_whose_region_is_lost_in_the_resize():
    full = np.zeros((8, 8), dtype=np.uint8)
    full[:, 3] = 1  # a one-pixel line: a 2x nearest downscale samples columns 0, 2, 4, 6 and loses it
    small = full[::2, ::2]
    assert not (small == 1).any()
    on_line = WeakLabels(8, 8, points=(Point(2, 3, 1), Point(6, 3, 1), Point(4, 6, 0))).resized(4, 4)
    assert vanished_pixels(on_line, full, small, num_classes=2) == 2  # the two line points, not the background one
    wrong_class = WeakLabels(8, 8, points=(Point(2, 6, 1),)).resized(4, 4)  # no class 1 near it: a wrong label,
    assert vanished_pixels(wrong_class, full, small, num_classes=2) == 0  # not one lost in the resize


def test_boxes_bound_their_component():
    for key, mask in enumerate(synthetic_masks()):
        weak = simulate(mask, ["boxes"], SimulationConfig(min_region_px=1), key=str(key), num_classes=8)
        n_components = 0
        for c in np.unique(mask):
            regions, n = ndimage.label(mask == c, structure=np.ones((3, 3)))
            n_components += n
            for i in range(1, n + 1):
                rows, cols = np.nonzero(regions == i)
                box = Box(rows.min(), cols.min(), rows.max() + 1, cols.max() + 1, int(c))
                assert box in weak.boxes
        assert len(weak.boxes) == n_components


def test_simulation_rejects_bad_budgets():
    with pytest.raises(WeakLabelError, match="points_per_region"):
        SimulationConfig(points_per_region=0)
    with pytest.raises(WeakLabelError, match="scribble_fraction"):
        SimulationConfig(scribble_fraction=1.5)


# ----------------------------------------------------------------------------- JSON I/O


def test_json_round_trip_is_exact(tmp_path):
    mask = toy_mask()
    sim = simulate(mask, ["points", "scribbles", "boxes"], SimulationConfig(point_radius=1.5), key="a", num_classes=4)
    weak_set = WeakLabelSet(
        ("bg", "block", "blob", "speck"),
        {"a": sim, "b": example_labels().resized(24, 32), "c": WeakLabels(24, 32, frozenset({1}))},
    )
    path = tmp_path / "weak.json"
    save_weak_labels(path, weak_set)
    assert load_weak_labels(path) == weak_set


def test_loading_checks_classes_and_positions(tmp_path):
    path = tmp_path / "weak.json"
    save_weak_labels(path, WeakLabelSet(("a", "b"), {"img": WeakLabels(10, 10, points=(Point(3, 3, 5),))}))
    with pytest.raises(WeakLabelError, match=r"img.*point 0.*class 5"):
        load_weak_labels(path)
    save_weak_labels(path, WeakLabelSet(("a", "b"), {"img": WeakLabels(10, 10, points=(Point(3, 12, 1),))}))
    with pytest.raises(WeakLabelError, match="off the 10x10 image"):
        load_weak_labels(path)
    with pytest.raises(WeakLabelError, match="no such weak-label file"):
        load_weak_labels(tmp_path / "missing.json")

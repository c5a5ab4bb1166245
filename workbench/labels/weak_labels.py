"""Weak-label types, their geometry, rasterisation, simulation from dense masks and JSON I/O.

One set of types serves the CLI, the methods and the dashboard:

- image tags: the set of classes present;
- points: ``Point(row, col, cls)``, optionally a disk of ``radius`` pixels;
- scribbles: ``Scribble(path, cls, width)``, a polyline of (row, col) vertices;
- boxes: ``Box(row0, col0, row1, col1, cls)``, half-open pixel ranges.

Coordinates are floats in pixel units of the image the labels belong to, so resizing,
cropping and flipping move them exactly; they become pixels only in :func:`rasterize`.
Points and scribble vertices are pixel centres (pixel ``(r, c)`` is at ``(r, c)``); box
edges are pixel borders (a box ``0, 0, 2, 2`` covers four pixels).

Label-map convention (shared by every method, see METHODS.md §6): values ``0..C-1`` are
classes, ``UNLABELED`` (254) is a valid pixel without a label, ``IGNORE`` (255) is void or
padding and is dropped everywhere.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order
from skimage.morphology import skeletonize

UNLABELED = 254
IGNORE = 255
KINDS = ("tags", "points", "scribbles", "boxes")
JSON_FORMAT = "weakseg-weak-labels/1"


class WeakLabelError(ValueError):
    """A weak label that cannot be used as given (the message says how to fix it)."""


@dataclass(frozen=True)
class Point:
    row: float
    col: float
    cls: int
    radius: float = 0.0


@dataclass(frozen=True)
class Scribble:
    path: tuple[tuple[float, float], ...]
    cls: int
    width: float = 3.0


@dataclass(frozen=True)
class Box:
    row0: float
    col0: float
    row1: float
    col1: float
    cls: int


@dataclass(frozen=True)
class WeakLabels:
    """All weak annotations of one image of size ``height`` x ``width``."""

    height: int
    width: int
    tags: frozenset[int] = frozenset()
    points: tuple[Point, ...] = ()
    scribbles: tuple[Scribble, ...] = ()
    boxes: tuple[Box, ...] = ()

    def validate(self, num_classes: int, where: str = "weak labels") -> WeakLabels:
        """Raise :class:`WeakLabelError` naming the bad annotation; return self when all is well."""
        if self.height <= 0 or self.width <= 0:
            raise WeakLabelError(f"{where}: image size must be positive, got {self.height}x{self.width}")
        for c in self.tags:
            _check_class(c, num_classes, f"{where}: tag")
        for i, p in enumerate(self.points):
            _check_class(p.cls, num_classes, f"{where}: point {i}")
            if not (-0.5 <= p.row < self.height - 0.5 and -0.5 <= p.col < self.width - 0.5):  # on a pixel
                raise WeakLabelError(
                    f"{where}: point {i} at (row={p.row}, col={p.col}) is off the {self.height}x{self.width} "
                    f"image; pixel centres run 0..{self.height - 1} x 0..{self.width - 1}, so keep "
                    f"-0.5<=row<{self.height - 0.5}, -0.5<=col<{self.width - 0.5}"
                )
            if not np.isfinite(p.radius) or p.radius < 0:
                raise WeakLabelError(f"{where}: point {i} radius must be >= 0, got {p.radius}")
        for i, s in enumerate(self.scribbles):
            _check_class(s.cls, num_classes, f"{where}: scribble {i}")
            if len(s.path) < 2:
                raise WeakLabelError(
                    f"{where}: scribble {i} has {len(s.path)} vertex; a scribble needs at least 2 (use a Point for a click)"
                )
            if not np.all(np.isfinite(np.asarray(s.path, dtype=float))):
                raise WeakLabelError(f"{where}: scribble {i} has a non-finite vertex")
            if not np.isfinite(s.width) or s.width <= 0:
                raise WeakLabelError(f"{where}: scribble {i} width must be > 0, got {s.width}")
        for i, b in enumerate(self.boxes):
            _check_class(b.cls, num_classes, f"{where}: box {i}")
            if not np.all(np.isfinite([b.row0, b.col0, b.row1, b.col1])):
                raise WeakLabelError(
                    f"{where}: box {i} has a non-finite coordinate ({b.row0}, {b.col0})-({b.row1}, {b.col1}); "
                    "box edges must be finite pixel coordinates"
                )
            if not (b.row1 > b.row0 and b.col1 > b.col0):
                raise WeakLabelError(
                    f"{where}: box {i} ({b.row0},{b.col0})-({b.row1},{b.col1}) is empty; row1>row0 and col1>col0 are needed"
                )
        return self

    def only(self, kinds: Iterable[str]) -> WeakLabels:
        """Keep only the annotation kinds named (tags are always kept: every weak label implies them)."""
        kinds = set(kinds)
        unknown = kinds - set(KINDS)
        if unknown:
            raise WeakLabelError(f"unknown weak-label kind(s) {sorted(unknown)}; choose from {KINDS}")
        return replace(
            self,
            points=self.points if "points" in kinds else (),
            scribbles=self.scribbles if "scribbles" in kinds else (),
            boxes=self.boxes if "boxes" in kinds else (),
        )

    def resized(self, height: int, width: int) -> WeakLabels:
        """The same annotations on the image resized to ``height`` x ``width``."""
        sy, sx = height / self.height, width / self.width
        scale = (sy + sx) / 2  # radii and widths follow the mean scale

        def centre(v: float, s: float) -> float:  # pixel centres move as PIL moves them: the edges stay edges
            return (v + 0.5) * s - 0.5

        return WeakLabels(
            height,
            width,
            self.tags,
            tuple(Point(centre(p.row, sy), centre(p.col, sx), p.cls, p.radius * scale) for p in self.points),
            tuple(
                Scribble(tuple((centre(r, sy), centre(c, sx)) for r, c in s.path), s.cls, max(1.0, s.width * scale))
                for s in self.scribbles
            ),
            tuple(Box(b.row0 * sy, b.col0 * sx, b.row1 * sy, b.col1 * sx, b.cls) for b in self.boxes),
        )

    def flipped(self) -> WeakLabels:
        """Mirror left-right, as a horizontal flip of the image does."""
        w = self.width
        return replace(
            self,
            points=tuple(replace(p, col=w - 1 - p.col) for p in self.points),
            scribbles=tuple(replace(s, path=tuple((r, w - 1 - c) for r, c in s.path)) for s in self.scribbles),
            boxes=tuple(replace(b, col0=w - b.col1, col1=w - b.col0) for b in self.boxes),
        )

    def cropped(self, top: int, left: int, height: int, width: int) -> WeakLabels:
        """Annotations of the window ``[top, top+height) x [left, left+width)``.

        The window may reach past the image (padding). Points outside it are dropped,
        boxes are clipped, scribbles keep their vertices (rasterisation clips them).
        Tags stay image-level tags (METHODS.md §1.2 option b).
        """
        points = tuple(
            replace(p, row=p.row - top, col=p.col - left)
            for p in self.points
            if -0.5 <= p.row - top < height - 0.5 and -0.5 <= p.col - left < width - 0.5  # its pixel is inside
        )
        scribbles = tuple(replace(s, path=tuple((r - top, c - left) for r, c in s.path)) for s in self.scribbles)
        boxes = []
        for b in self.boxes:
            r0, r1 = max(b.row0 - top, 0), min(b.row1 - top, height)
            c0, c1 = max(b.col0 - left, 0), min(b.col1 - left, width)
            if r1 > r0 and c1 > c0:
                boxes.append(Box(r0, c0, r1, c1, b.cls))
        return WeakLabels(height, width, self.tags, points, scribbles, tuple(boxes))

    def tag_vector(self, num_classes: int) -> np.ndarray:
        """Multi-hot ``(num_classes,)`` float32 vector of the tags."""
        vec = np.zeros(num_classes, dtype=np.float32)
        vec[list(self.tags)] = 1.0
        return vec

    def num_clicks(self) -> int:
        """A rough annotation cost: one per point, scribble, box (tags are one per tag)."""
        return len(self.points) + len(self.scribbles) + len(self.boxes)


def _check_class(c: int, num_classes: int, what: str) -> None:
    if not (isinstance(c, (int, np.integer)) and 0 <= c < num_classes):
        raise WeakLabelError(f"{what} has class {c!r}, outside 0..{num_classes - 1}; use a class index of the dataset")


# ----------------------------------------------------------------------------- rasterisation


def rasterize(weak: WeakLabels) -> np.ndarray:
    """Sparse ``(H, W)`` uint8 label map: classes where annotated, ``UNLABELED`` elsewhere.

    Boxes are drawn first and only where boxes of a single class cover a pixel (pixels
    covered by boxes of two classes stay unlabelled); scribbles then points are drawn on
    top, since they are the more precise annotations.
    """
    h, w = weak.height, weak.width
    label = np.full((h, w), UNLABELED, dtype=np.uint8)
    if weak.boxes:
        owner = np.full((h, w), -1, dtype=np.int32)
        for b in weak.boxes:
            # pixels whose centre lies inside the box, as a nearest-neighbour resize of the mask would keep them
            r0, r1 = int(np.ceil(b.row0 - 0.5)), int(np.ceil(b.row1 - 0.5))
            c0, c1 = int(np.ceil(b.col0 - 0.5)), int(np.ceil(b.col1 - 0.5))
            win = owner[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)]
            win[win == -1] = b.cls
            win[(win >= 0) & (win != b.cls)] = -2
        label[owner >= 0] = owner[owner >= 0]
    for s in weak.scribbles:
        _draw_scribble(label, s)
    for p in weak.points:
        r, c = int(round(p.row)), int(round(p.col))
        if p.radius < 0.5:
            if 0 <= r < h and 0 <= c < w:
                label[r, c] = p.cls
            continue
        rad = int(np.ceil(p.radius))
        r0, r1, c0, c1 = max(r - rad, 0), min(r + rad + 1, h), max(c - rad, 0), min(c + rad + 1, w)
        yy, xx = np.ogrid[r0:r1, c0:c1]
        disk = (yy - r) ** 2 + (xx - c) ** 2 <= p.radius**2
        label[r0:r1, c0:c1][disk] = p.cls
    return label


def _draw_scribble(label: np.ndarray, scribble: Scribble) -> None:
    """Label the pixels whose centre lies within ``width / 2`` of the polyline (round ends, exact under flips)."""
    rad = max(scribble.width, 1.0) / 2
    path = np.asarray(scribble.path, dtype=np.float64)  # (V, 2) rows, cols
    starts, ends = path[:-1], path[1:]  # (S, 2) each
    corner, extent = _windows(starts, ends, rad, label.shape)
    on_canvas = (extent > 0).all(1)  # segments wholly off the image draw nothing
    starts, ends, corner, extent = starts[on_canvas], ends[on_canvas], corner[on_canvas], extent[on_canvas]
    if not len(starts):
        return
    if len(starts) * extent[:, 0].max() * extent[:, 1].max() <= _SCRIBBLE_BATCH_PX:
        _draw_segments(label, starts, ends, corner, extent.max(0), rad, scribble.cls)
    else:  # long segments: one at a time keeps memory small
        for i in range(len(starts)):
            _draw_segments(label, starts[i : i + 1], ends[i : i + 1], corner[i : i + 1], extent[i], rad, scribble.cls)


def _windows(starts: np.ndarray, ends: np.ndarray, rad: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corner and size ``(S, 2)`` of the pixel window of each segment, clipped to the image
    (a vertex far off the canvas must not make a window of millions of pixels)."""
    limit = np.asarray(shape)
    corner = np.clip(np.floor(np.minimum(starts, ends) - rad), 0, limit).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(starts, ends) + rad) + 1, 0, limit).astype(np.int64)
    return corner, stop - corner


_SCRIBBLE_BATCH_PX = 1 << 20  # segments are rasterised together while their windows hold fewer pixels


def _draw_segments(
    label: np.ndarray, starts: np.ndarray, ends: np.ndarray, corner: np.ndarray, size: np.ndarray, rad: float, cls: int
) -> None:
    """Label pixels within ``rad`` of any segment ``starts[i] -> ends[i]`` (``(S, 2)`` arrays), in a
    ``size`` window from each ``corner``."""
    rows = corner[:, 0, None, None] + np.arange(size[0])[None, :, None]  # (S, K0, 1)
    cols = corner[:, 1, None, None] + np.arange(size[1])[None, None, :]  # (S, 1, K1)
    a_r, a_c = starts[:, 0, None, None], starts[:, 1, None, None]
    d_r, d_c = (ends - starts)[:, 0, None, None], (ends - starts)[:, 1, None, None]
    length2 = np.maximum(d_r**2 + d_c**2, 1e-12)
    t = np.clip(((rows - a_r) * d_r + (cols - a_c) * d_c) / length2, 0, 1)  # nearest point on the segment
    hit = (rows - a_r - t * d_r) ** 2 + (cols - a_c - t * d_c) ** 2 <= rad * rad + 1e-9  # (S, K0, K1)
    h, w = label.shape
    hit &= (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    rows, cols = np.broadcast_to(rows, hit.shape), np.broadcast_to(cols, hit.shape)
    label[rows[hit], cols[hit]] = cls


# ----------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SimulationConfig:
    """How weak labels are simulated from dense masks (the annotation budget).

    Sizes are in pixels of the mask given to :func:`simulate`; the dataset gives it the mask
    resized to the working size, so that every label lies where its class is visible to the model.
    ``points_per_region``: clicks per connected region; ``min_region_px``: smaller regions
    get no point, scribble or box (annotators skip specks); ``scribble_fraction``: the share
    of each region's skeleton path kept; ``scribble_width``: brush width (1: a one-pixel line,
    a few % of the pixels); ``point_radius``: 0 for single pixels (SPML
    dilates points by 6 px, scribbles by 3). Points and scribbles never leave their region;
    dilated points (``point_radius > 0``) may, as SPML's do.
    """

    points_per_region: int = 1
    min_region_px: int = 4
    point_radius: float = 0.0
    scribble_width: float = 1.0
    scribble_fraction: float = 1.0
    scribble_step: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.points_per_region < 1:
            raise WeakLabelError(f"points_per_region must be >= 1, got {self.points_per_region}")
        if not (0 < self.scribble_fraction <= 1):
            raise WeakLabelError(f"scribble_fraction must be in (0, 1], got {self.scribble_fraction}")
        if self.min_region_px < 1 or self.scribble_step < 1:
            raise WeakLabelError("min_region_px and scribble_step must be >= 1")
        if self.scribble_width <= 0 or self.point_radius < 0:
            raise WeakLabelError("scribble_width must be > 0 and point_radius >= 0")


def image_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the image's name, not on visiting order."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def simulate(
    mask: np.ndarray,
    kinds: Iterable[str],
    config: SimulationConfig = SimulationConfig(),
    key: str = "",
    num_classes: int | None = None,
) -> WeakLabels:
    """Simulate weak labels of the given ``kinds`` from a dense ``(H, W)`` index mask.

    Values ``>= num_classes`` (void, unlabelled) are never annotated. Deterministic in
    ``(config.seed, key)``; pass the image name as ``key``.
    """
    kinds = set(kinds)
    WeakLabels(1, 1).only(kinds)  # validates the kind names
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise WeakLabelError(f"mask must be (H, W), got shape {mask.shape}")
    limit = num_classes if num_classes is not None else UNLABELED
    classes = [int(c) for c in np.unique(mask) if c < limit]
    rng = image_rng(config.seed, key)
    points, scribbles, boxes = [], [], []
    for c in classes:
        regions, n = ndimage.label(mask == c, structure=np.ones((3, 3)))
        for i, sl in enumerate(ndimage.find_objects(regions), start=1):
            region = regions[sl] == i
            if region.sum() < config.min_region_px:
                continue
            top, left = sl[0].start, sl[1].start
            if "points" in kinds:
                points += _interior_points(region, c, top, left, config, rng)
            if "scribbles" in kinds:
                scribbles += _skeleton_scribble(region, c, top, left, config)
            if "boxes" in kinds:
                boxes.append(Box(top, left, sl[0].stop, sl[1].stop, c))
    return WeakLabels(mask.shape[0], mask.shape[1], frozenset(classes), tuple(points), tuple(scribbles), tuple(boxes))


def _interior_points(region, cls, top, left, config, rng) -> list[Point]:
    """Points drawn among the pixels at least half as deep inside the region as its centre."""
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(depth >= 0.5 * depth.max())
    pick = rng.choice(len(rows), size=min(config.points_per_region, len(rows)), replace=False)
    return [Point(float(rows[k] + top), float(cols[k] + left), cls, config.point_radius) for k in pick]


def _skeleton_scribble(region, cls, top, left, config) -> list[Scribble]:
    """One scribble along the longest path of the region's skeleton (regions of 1-pixel skeleton get none).

    Every pixel the scribble draws lies inside its region: straight chords between vertices and the
    brush width can cut corners of thin or curved regions, so such a scribble is first shortened to
    the part of the path deep enough for the brush and, failing that, drawn 1 pixel wide along the
    skeleton itself (which is inside by construction).
    """
    skel = skeletonize(region)
    rows, cols = np.nonzero(skel)
    if len(rows) < 2:
        return []
    path = _longest_path(rows, cols)
    keep = max(2, int(round(len(path) * config.scribble_fraction)))
    start = (len(path) - keep) // 2
    path = path[start : start + keep]
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    rad = config.scribble_width / 2
    deep = [depth[r, c] > rad + 1 for r, c in path]  # one pixel of margin for the chords
    run = _longest_run(deep)
    candidates = [(path, config.scribble_width, config.scribble_step)]
    if run is not None and run[1] - run[0] >= 2:
        candidates.append((path[run[0] : run[1]], config.scribble_width, config.scribble_step))
    candidates.append((path, 1.0, 1))
    for cand_path, width, step in candidates:
        vertices = cand_path[::step]
        if vertices[-1] != cand_path[-1]:
            vertices.append(cand_path[-1])
        if len(vertices) < 2:
            continue
        pad = int(np.ceil(width / 2)) + 1  # the brush may reach past the region's bounding box
        canvas = np.full((region.shape[0] + 2 * pad, region.shape[1] + 2 * pad), UNLABELED, dtype=np.uint8)
        _draw_scribble(canvas, Scribble(tuple((r + pad, c + pad) for r, c in vertices), cls, width))
        drawn = canvas != UNLABELED
        if drawn.any() and np.pad(region, pad)[drawn].all():
            return [Scribble(tuple((float(r + top), float(c + left)) for r, c in vertices), cls, width)]
    return []


def _longest_run(flags: list[bool]) -> tuple[int, int] | None:
    """``(start, stop)`` of the longest stretch of True values, or None."""
    best, start = None, None
    for i, f in enumerate([*flags, False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def _longest_path(rows: np.ndarray, cols: np.ndarray) -> list[tuple[int, int]]:
    """Approximate longest path in the 8-connected pixel graph: BFS to the farthest pixel, twice."""
    index = {(r, c): i for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))}
    src, dst = [], []
    for (r, c), i in index.items():
        for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
            j = index.get((r + dr, c + dc))
            if j is not None:
                src.append(i)
                dst.append(j)
    n = len(index)
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)).tocsr()
    order = breadth_first_order(graph, 0, directed=False, return_predecessors=False)
    far = order[-1]
    order, pred = breadth_first_order(graph, far, directed=False, return_predecessors=True)
    node, path = order[-1], []
    while node >= 0:
        path.append((int(rows[node]), int(cols[node])))
        node = pred[node]
    return path


def vanished_pixels(weak: WeakLabels, full_mask: np.ndarray, mask: np.ndarray, num_classes: int) -> int:
    """Point and scribble pixels of ``weak`` (at the size of ``mask``, the resized ``full_mask``) that
    fall on another class of ``mask`` although their class is in ``full_mask`` under that pixel: the
    annotated region vanished in the resize. Void pixels of ``mask`` are not counted."""
    label = rasterize(weak.only(["points", "scribbles"]))
    wrong = (label < num_classes) & (mask < num_classes) & (label != mask)
    if not wrong.any():
        return 0
    (h, w), (big_h, big_w) = mask.shape, full_mask.shape
    count = 0
    for r, c in zip(*np.nonzero(wrong)):
        r0, r1 = (r * big_h) // h, max(-(-(r + 1) * big_h // h), (r * big_h) // h + 1)
        c0, c1 = (c * big_w) // w, max(-(-(c + 1) * big_w // w), (c * big_w) // w + 1)
        count += bool((full_mask[r0:r1, c0:c1] == label[r, c]).any())
    return count


# ----------------------------------------------------------------------------- JSON I/O


def to_json_dict(weak: WeakLabels) -> dict:
    return {
        "height": weak.height,
        "width": weak.width,
        "tags": sorted(int(t) for t in weak.tags),
        "points": [[p.row, p.col, p.cls, p.radius] for p in weak.points],
        "scribbles": [{"path": [list(v) for v in s.path], "cls": s.cls, "width": s.width} for s in weak.scribbles],
        "boxes": [[b.row0, b.col0, b.row1, b.col1, b.cls] for b in weak.boxes],
    }


def _whole(value, what: str) -> int:
    """A JSON number that must be a whole number (a class index, a size): 3.7 is refused, not truncated."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WeakLabelError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise WeakLabelError(f"{what} must be a whole number, got {value!r}; class indices and sizes are integers")
    return int(value)


def from_json_dict(d: dict, where: str = "weak labels") -> WeakLabels:
    """Parse one image's record; malformed records raise :class:`WeakLabelError` naming the field."""
    try:
        return WeakLabels(
            _whole(d["height"], f"{where}: height"),
            _whole(d["width"], f"{where}: width"),
            frozenset(_whole(t, f"{where}: tag") for t in d.get("tags", [])),
            tuple(
                Point(
                    float(p[0]),
                    float(p[1]),
                    _whole(p[2], f"{where}: point {i} class"),
                    float(p[3]) if len(p) > 3 else 0.0,
                )
                for i, p in enumerate(d.get("points", []))
            ),
            tuple(
                Scribble(
                    tuple((float(r), float(c)) for r, c in s["path"]),
                    _whole(s["cls"], f"{where}: scribble {i} class"),
                    float(s.get("width", 3.0)),
                )
                for i, s in enumerate(d.get("scribbles", []))
            ),
            tuple(
                Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), _whole(b[4], f"{where}: box {i} class"))
                for i, b in enumerate(d.get("boxes", []))
            ),
        )
    except WeakLabelError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError, RecursionError) as err:
        raise WeakLabelError(
            f"{where}: malformed record ({type(err).__name__}: {err}); expected "
            "{height, width, tags: [c], points: [[row, col, cls, radius]], scribbles: [{path, cls, width}], "
            "boxes: [[row0, col0, row1, col1, cls]]}"
        ) from None


@dataclass(frozen=True)
class WeakLabelSet:
    """Weak labels of many images of one dataset split, keyed by image name."""

    classes: tuple[str, ...]
    labels: dict[str, WeakLabels] = field(default_factory=dict)


def save_weak_labels(path: str | Path, weak_set: WeakLabelSet) -> None:
    """Write a weak-label JSON file atomically."""
    from workbench.io import atomic_write_text

    doc = {
        "format": JSON_FORMAT,
        "classes": list(weak_set.classes),
        "images": {name: to_json_dict(w) for name, w in sorted(weak_set.labels.items())},
    }
    atomic_write_text(path, json.dumps(doc))


def parse_json_text(text: str | bytes, where: str) -> object:
    """``json.loads`` whose every failure (bad syntax, bad encoding, nesting deeper than Python's
    recursion limit) is a :class:`WeakLabelError` naming ``where``: for files and uploads alike."""
    try:
        return json.loads(text)
    except RecursionError:
        raise WeakLabelError(
            f"{where}: JSON nested too deeply to be a weak-label file; re-export the annotations"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeakLabelError(f"{where}: not valid JSON ({err}); re-export the annotations") from None


MAX_LABEL_FILE_BYTES = 512 * 2**20  # a label file read whole: about 8 minutes of import at ~1 MB/s


def check_file_size(path: Path, what: str) -> None:
    """Refuse a label file too big to read whole, naming the limit, before a byte of it is read."""
    try:
        size = path.stat().st_size
    except OSError:
        return  # the reader names a missing or unreadable file
    if size > MAX_LABEL_FILE_BYTES:
        raise WeakLabelError(
            f"{path}: {size / 2**20:.0f} MiB is more than a {what} may be ({MAX_LABEL_FILE_BYTES // 2**20} MiB); "
            "split it, e.g. one file per split or per batch of tasks, and import the parts"
        )


def load_weak_labels(path: str | Path) -> WeakLabelSet:
    """Read and validate a weak-label JSON file written by :func:`save_weak_labels`."""
    path = Path(path)
    if path.is_dir():
        raise WeakLabelError(f"{path}: is a folder; pass the weak-label JSON file")
    check_file_size(path, "weak-label file")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise WeakLabelError(
            f"{path}: no such weak-label file; write one with `python -m workbench simulate`"
        ) from None
    except OSError as err:
        raise WeakLabelError(f"{path}: cannot read the weak-label file ({err}); pass a readable JSON file") from None
    return weak_labels_from_text(text, str(path))


def weak_labels_from_text(text: str | bytes, where: str, classes: tuple[str, ...] | None = None) -> WeakLabelSet:
    """Parse and validate the text of a weak-label JSON file (a file or an upload; errors name ``where``);
    with ``classes``, a file written for other classes is refused before its records are read."""
    doc = parse_json_text(text, where)
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT or not isinstance(doc.get("images"), dict):
        raise WeakLabelError(
            f"{where}: not a weak-label file (expected 'format': '{JSON_FORMAT}', 'classes', 'images')"
        )
    expected, classes = classes, doc.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise WeakLabelError(f"{where}: 'classes' must be a list of class names, got {classes!r:.80}")
    classes = tuple(classes)
    if expected is not None and classes != tuple(expected):
        raise WeakLabelError(f"{where}: written for classes {list(classes)}, this dataset has {list(expected)}")
    labels = {}
    for name, rec in doc["images"].items():
        weak = from_json_dict(rec, where=f"{where}: image {name!r}")
        labels[name] = check_on_image(
            weak.validate(len(classes), where=f"{where}: image {name!r}"), f"{where}: image {name!r}"
        )
    return WeakLabelSet(classes, labels)


def check_on_image(weak: WeakLabels, where: str = "weak labels") -> WeakLabels:
    """Refuse a scribble or box that lies wholly off the image: it would label no pixel, without a word.

    One that reaches past an edge is kept (a stroke drawn over the border, a box a crop cut): rasterising
    clips it. Applied where labels come in (files, uploads, imports), not to a crop of valid labels.
    """
    h, w = weak.height, weak.width
    for i, s in enumerate(weak.scribbles):
        rows, cols = np.asarray(s.path, dtype=float).T
        if rows.max() < -0.5 or rows.min() > h - 0.5 or cols.max() < -0.5 or cols.min() > w - 0.5:
            raise WeakLabelError(
                f"{where}: scribble {i} lies wholly off the {h}x{w} image (rows {rows.min():g}..{rows.max():g}, "
                f"cols {cols.min():g}..{cols.max():g}); draw it on the image, rows -0.5..{h - 0.5}, cols -0.5..{w - 0.5}"
            )
    for i, b in enumerate(weak.boxes):
        if b.row1 <= 0 or b.col1 <= 0 or b.row0 >= h or b.col0 >= w:
            raise WeakLabelError(
                f"{where}: box {i} ({b.row0},{b.col0})-({b.row1},{b.col1}) lies wholly off the {h}x{w} image; "
                f"a box must overlap 0..{h} x 0..{w}"
            )
    return weak

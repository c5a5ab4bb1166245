"""Embedded default data: a seeded generator of small scenes in the dataset folder format.

Each scene has textured "stuff" (sky above a horizon; grass and/or sand below, split by a
wavy boundary) and one to three objects of one or two object classes. Object classes
differ in shape; each has a usual colour but borrows another class's colour 30% of the
time, and textures (plain, striped, dotted) vary, so a model must use shape as well as
colour. Few object classes per image keep tags, points, scribbles and boxes informative.

**Weak-shot mode** (``SyntheticConfig(weak_shot=True)``, ``data generate --weak-shot``): the
novel classes of protocol ``weakshot`` (disc, triangle, cross) come in varied combinations,
and most images hold two or three of them (plus, often, a base object). Image tags and the
not-base region then say *which* novel classes are in an image but not *where* each one is,
so only similarity transfer (proposal-pixel, pixel-pixel) can segment them; ``python -m
workbench data protocols`` shows it. This is the default data of weak-shot tests and the bench.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import disk, polygon

from workbench import ownership
from workbench.io import default_mode, save_index_png
from workbench.ownership import DATASET_FILE, OwnershipError

STUFF = ("sky", "grass", "sand")
OBJECTS = ("disc", "square", "triangle", "ring", "cross")
CLASSES = STUFF + OBJECTS
COLORS = (
    (110, 160, 230), (60, 150, 60), (215, 190, 130),
    (220, 40, 40), (40, 70, 220), (240, 200, 30), (150, 50, 170), (250, 130, 20),
)  # fmt: skip
OBJECT_RGB = {  # usual colour of each object class (index into CLASSES)
    3: (210, 40, 40), 4: (40, 70, 220), 5: (235, 205, 30), 6: (150, 50, 170), 7: (245, 130, 20),
}  # fmt: skip
BORROW_COLOUR_P = 0.3
PROTOCOLS = {"objects2": ("triangle", "cross"), "shapes3": ("disc", "ring", "cross")}
WEAK_SHOT_PROTOCOL = "weakshot"
WEAK_SHOT_NOVEL = ("disc", "triangle", "cross")  # the novel classes of weak-shot mode
WEAK_SHOT_NOVEL_COUNTS = (1, 2, 3)  # novel classes per weak-shot image ...
WEAK_SHOT_NOVEL_P = (0.15, 0.55, 0.3)  # ... with these probabilities: 85% hold two or more
WEAK_SHOT_BASE_P = 0.6  # probability of a base object (square or ring) in a weak-shot image
GENERATOR_VERSION = 1
OWNER_KIND = "synthetic-dataset"  # the kind in the marker of a generated dataset (workbench.ownership)


@dataclass(frozen=True)
class SyntheticConfig:
    """Size of the generated dataset; the defaults train to >0.5 mIoU in about a minute on 2 CPU cores."""

    height: int = 64
    width: int = 64
    train: int = 256
    val: int = 64
    seed: int = 0
    max_objects: int = 3
    weak_shot: bool = False  # most images hold >= 2 novel classes of protocol "weakshot" (module docstring)


def render_scene(
    rng: np.random.Generator, height: int, width: int, max_objects: int = 3, weak_shot: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(H, W, 3)`` uint8 image and its ``(H, W)`` uint8 class mask."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    mask = _stuff_layout(rng, yy, xx, height, width)
    image = np.zeros((height, width, 3), dtype=np.float32)
    for c in range(len(STUFF)):
        sel = mask == c
        if sel.any():
            image[sel] = _stuff_texture(c, rng, yy, xx, height)[sel]
    if weak_shot:
        objects = _weak_shot_objects(rng)
    else:
        n_classes = rng.integers(1, 3)
        classes = rng.choice(np.arange(len(STUFF), len(CLASSES)), size=n_classes, replace=False)
        objects = [int(rng.choice(classes)) for _ in range(rng.integers(1, max_objects + 1))]
    for cls in objects:
        shape = _object_shape(cls, rng, height, width)
        if shape.sum() < 4:
            continue
        mask[shape] = cls
        image[shape] = _object_texture(cls, rng, yy, xx)[shape]
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _weak_shot_objects(rng: np.random.Generator) -> list[int]:
    """Object classes to draw, in order: maybe a base object first, then 1-3 novel classes, one object each.

    Drawn later, novel objects are rarely hidden by the base one, so their tags stay true.
    """
    novel = [CLASSES.index(n) for n in WEAK_SHOT_NOVEL]
    base = [c for c in range(len(STUFF), len(CLASSES)) if c not in novel]
    n_novel = int(rng.choice(WEAK_SHOT_NOVEL_COUNTS, p=WEAK_SHOT_NOVEL_P))
    objects = [int(rng.choice(base))] if rng.random() < WEAK_SHOT_BASE_P else []
    return objects + [int(c) for c in rng.choice(novel, size=n_novel, replace=False)]


def _stuff_layout(rng, yy, xx, h, w) -> np.ndarray:
    horizon = h * rng.uniform(0.25, 0.5) + h * 0.05 * np.sin(xx / w * rng.uniform(2, 6) + rng.uniform(0, 6))
    ground = np.where(rng.random() < 0.5, 1, 2) * np.ones_like(yy, dtype=np.uint8)
    if rng.random() < 0.6:  # grass and sand side by side along a slanted wavy boundary
        slope = rng.uniform(-0.8, 0.8)
        boundary = w * rng.uniform(0.3, 0.7) + slope * (yy - h / 2) + 3 * np.sin(yy / rng.uniform(4, 9))
        ground = np.where(xx < boundary, 1, 2).astype(np.uint8)
    return np.where(yy < horizon, 0, ground).astype(np.uint8)


def _stuff_texture(c, rng, yy, xx, h) -> np.ndarray:
    if c == 0:  # sky: smooth vertical gradient
        base = np.array(COLORS[0], np.float32) * (0.8 + 0.3 * (yy / h))[..., None]
    elif c == 1:  # grass: blotchy noise
        noise = rng.normal(0, 1, (yy.shape[0] // 2 + 1, yy.shape[1] // 2 + 1)).repeat(2, 0).repeat(2, 1)
        base = np.array(COLORS[1], np.float32) * (1 + 0.15 * noise[: yy.shape[0], : yy.shape[1]])[..., None]
    else:  # sand: diagonal ripples
        ripples = np.sin((xx + 0.5 * yy) / rng.uniform(1.5, 3.0))
        base = np.array(COLORS[2], np.float32) * (1 + 0.08 * ripples)[..., None]
    return np.broadcast_to(base, yy.shape + (3,))


def _object_shape(cls, rng, h, w) -> np.ndarray:
    size = rng.uniform(0.12, 0.3) * min(h, w)
    cy, cx = rng.uniform(size * 0.6, h - size * 0.6), rng.uniform(size * 0.6, w - size * 0.6)
    angle = rng.uniform(0, np.pi)
    out = np.zeros((h, w), dtype=bool)
    name = CLASSES[cls]
    if name == "disc":
        out[disk((cy, cx), size * 0.55, shape=(h, w))] = True
    elif name == "ring":
        out[disk((cy, cx), size * 0.6, shape=(h, w))] = True
        out[disk((cy, cx), size * 0.3, shape=(h, w))] = False
    elif name == "square":
        out[_poly(cy, cx, size * 0.5, angle, 4, h, w)] = True
    elif name == "triangle":
        out[_poly(cy, cx, size * 0.65, angle, 3, h, w)] = True
    else:  # cross: two bars
        for a in (angle, angle + np.pi / 2):
            corners = [(-0.6, -0.18), (-0.6, 0.18), (0.6, 0.18), (0.6, -0.18)]
            rot = [(u * np.cos(a) - v * np.sin(a), u * np.sin(a) + v * np.cos(a)) for u, v in corners]
            rr, cc = polygon([cy + size * r for r, _ in rot], [cx + size * c for _, c in rot], shape=(h, w))
            out[rr, cc] = True
    return out


def _poly(cy, cx, radius, angle, n, h, w):
    theta = angle + np.arange(n) * 2 * np.pi / n
    return polygon(cy + radius * np.sin(theta), cx + radius * np.cos(theta), shape=(h, w))


def _object_texture(cls, rng, yy, xx) -> np.ndarray:
    rgb_cls = cls if rng.random() > BORROW_COLOUR_P else int(rng.choice(list(OBJECT_RGB)))
    rgb = np.array(OBJECT_RGB[rgb_cls], np.float32) * rng.uniform(0.8, 1.1)
    kind = rng.integers(0, 3)
    if kind == 0:  # plain
        shade = np.ones_like(yy)
    elif kind == 1:  # stripes
        shade = 0.75 + 0.25 * (np.sin((xx * rng.uniform(-1, 1) + yy) / rng.uniform(0.8, 1.6)) > 0)
    else:  # dots
        shade = 0.7 + 0.3 * ((np.sin(xx / 1.3) * np.sin(yy / 1.3)) > 0.3)
    return np.clip(rgb * shade[..., None], 0, 255)


def generate(root: str | Path, config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write the dataset folder at ``root`` (atomically: a half-written folder never appears).

    ``root`` may be new, an empty folder, or a dataset this generator wrote that holds nothing
    else (its marker lists what it wrote); anything else is refused with :class:`OwnershipError`
    before the scenes are drawn, and checked again before the old folder is replaced.
    """
    if not str(root).strip():
        raise OwnershipError("root '': an empty path means the current folder; name the dataset folder to write")
    root = Path(root)
    check_replaceable(root)
    where = Path(os.path.abspath(root))  # "." has no name to put a temp folder beside
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.", dir=where.parent))
    tmp.chmod(default_mode(0o777))  # mkdtemp makes 0700: the dataset gets what mkdir would give it
    try:
        files = _write_dataset(tmp, config)
        ownership.write_marker(tmp, OWNER_KIND, files)
        owned = check_replaceable(root)  # again: the folder may have changed while the scenes were drawn
        _replace(where, tmp, owned)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_dataset(tmp: Path, config: SyntheticConfig) -> list[str]:
    """Draw every scene into ``tmp``; returns the relative paths written."""
    rng = np.random.default_rng(config.seed)
    counts = {"train": config.train, "val": config.val}
    files = [DATASET_FILE]
    for split, n in counts.items():
        (tmp / "images" / split).mkdir(parents=True)
        for i in range(n):
            image, mask = render_scene(rng, config.height, config.width, config.max_objects, config.weak_shot)
            name = f"{split}_{i:04d}"
            Image.fromarray(image).save(tmp / "images" / split / f"{name}.png")
            save_index_png(tmp / "masks" / split / f"{name}.png", mask, COLORS)
            files += [f"images/{split}/{name}.png", f"masks/{split}/{name}.png"]
    doc = {
        "name": "synthetic",
        "description": "workbench synthetic shapes: 3 stuff + 5 object classes"
        + (f"; weak-shot mode (protocol {WEAK_SHOT_PROTOCOL!r})" if config.weak_shot else ""),
        "image_dir": "images",
        "mask_dir": "masks",
        "image_ext": ".png",
        "mask_ext": ".png",
        "ignore_index": 255,
        "classes": list(CLASSES),
        "colors": [list(c) for c in COLORS],
        "splits": counts,
        "weak_shot_protocols": {k: {"novel": list(v)} for k, v in protocols(config).items()},
        "generator": {"version": GENERATOR_VERSION, **asdict(config)},
    }
    (tmp / DATASET_FILE).write_text(json.dumps(doc, indent=1))
    return files


def _replace(where: Path, tmp: Path, owned: set[str]) -> None:
    """Put ``tmp`` at ``where``: renamed there, or swapped for an owned dataset (set aside, then deleted).

    The current folder cannot be renamed from under the process: there (and in an empty folder) the
    old files are deleted and the new ones moved in, dataset.json first out and last in.
    """
    if not where.exists():
        tmp.rename(where)
    elif any(where.iterdir()) and not Path.cwd().is_relative_to(where.resolve()):
        old = Path(tempfile.mkdtemp(prefix=f".{where.name}.old.", dir=where.parent))
        where.rename(old / where.name)
        tmp.rename(where)
        shutil.rmtree(old)
    else:
        present = [e for e in ownership.folder_entries(where) if e in owned]  # never a path the marker merely names
        for rel in sorted(present, key=lambda e: e != DATASET_FILE):
            (where / rel).unlink()
        for top, dirs, files in os.walk(where, topdown=False):  # the emptied folders (checked: nothing else)
            if top != str(where) and not dirs and not files:
                os.rmdir(top)
        for entry in sorted(tmp.iterdir(), key=lambda p: p.name == DATASET_FILE):
            entry.rename(where / entry.name)


def check_replaceable(root: str | Path) -> set[str]:
    """``root`` may be replaced by :func:`generate`: new, empty, or a generated dataset holding only its own
    files; returns those files (empty for a new or empty folder)."""
    root = Path(root)
    fix = "choose another --out, or move those files out of it"
    if root.is_symlink():
        raise OwnershipError(f"{root}: is a symbolic link; data generate writes a real folder: choose another --out")
    if not root.exists():
        return set()
    if not root.is_dir():
        raise OwnershipError(f"{root}: is a file, not a folder; choose another --out")
    owned = generated_files(root)
    if owned is None:
        foreign = sorted(p.name for p in root.iterdir())
        if foreign:
            raise OwnershipError(
                f"{root}: is not empty and not a dataset the generator made (it holds {ownership.shown(foreign)}); "
                f"data generate replaces only an empty folder or a generated dataset: {fix}"
            )
        return set()
    foreign = ownership.foreign_entries(root, owned)
    if foreign:
        raise OwnershipError(
            f"{root}: a generated dataset that also holds files the workbench did not write "
            f"({ownership.shown(foreign)}); replacing it would delete them: {fix}"
        )
    return owned


def generated_files(root: Path) -> set[str] | None:
    """The files the generator wrote in ``root`` (its marker's list), or None when it did not make ``root``.

    Datasets generated before the marker are recognised by the ``"generator"`` stamp in their
    dataset.json: its ``train``/``val`` counts name the ``images|masks/SPLIT/SPLIT_NNNN.png`` files it wrote.
    """
    marker = ownership.read_marker(root, OWNER_KIND)
    if marker is not None:
        return set(marker["files"])
    try:
        stamp = json.loads((root / DATASET_FILE).read_text()).get("generator")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(stamp, dict):
        return None
    counts = {s: stamp.get(s) for s in ("train", "val")}
    return {DATASET_FILE} | {e for e in ownership.folder_entries(root) if _stamped_name(e, counts)}


def _stamped_name(entry: str, counts: dict) -> bool:
    """``images/train/train_0007.png`` is a file the generator wrote when train held more than 7 images."""
    parts = entry.split("/")
    if len(parts) != 3 or parts[0] not in ("images", "masks") or parts[1] not in counts:
        return False
    split, n = parts[1], counts[parts[1]]
    index = parts[2].removeprefix(f"{split}_").removesuffix(".png")
    return isinstance(n, int) and index.isdigit() and int(index) < n and parts[2] == f"{split}_{int(index):04d}.png"


def protocols(config: SyntheticConfig) -> dict[str, tuple[str, ...]]:
    """The dataset.json protocols: ``weakshot`` first in weak-shot mode, then the usual ones."""
    return ({WEAK_SHOT_PROTOCOL: WEAK_SHOT_NOVEL} if config.weak_shot else {}) | PROTOCOLS


def ensure_synthetic(root: str | Path = "data/synthetic", config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Generate the default dataset at ``root`` unless an identical one is already there."""
    root = Path(root)
    stamp = {"version": GENERATOR_VERSION, **asdict(config)}
    try:
        if json.loads((root / "dataset.json").read_text()).get("generator") == stamp:
            return root
    except (OSError, json.JSONDecodeError):
        pass
    return generate(root, config)


def ensure_sized_synthetic(workdir: str | Path, side: int, train: int, val: int, weak_shot: bool = False) -> Path:
    """A ``side`` x ``side`` synthetic set under ``workdir/data``, named by its sizes so that
    notebooks asking for the same sizes share one copy and different sizes never overwrite it."""
    config = SyntheticConfig(height=side, width=side, train=train, val=val, weak_shot=weak_shot)
    kind = "synthetic-weakshot" if weak_shot else "synthetic"
    return ensure_synthetic(Path(workdir) / "data" / f"{kind}-{side}-{train}-{val}", config)

"""Weak labels and masks in and out of the tools people label with: Label Studio, CVAT and COCO.

One pair of functions serves the CLI (``annotations export|import --format``), notebooks and the
dashboard::

    export_labels(path, "labelstudio", weak_set, masks=None, image_files=None)
    weak_set, masks = import_labels(path, "cvat", classes=None)

``weak_set`` is a :class:`~workbench.labels.weak_labels.WeakLabelSet` (points, scribbles, boxes, tags per
image); ``masks`` maps image names to ``(H, W)`` uint8 class-index masks (``UNLABELED`` 254 and
``IGNORE`` 255 where there is no class; the tools know no difference, so both come back as 254), e.g.
predictions or dense ground truth. Imported labels
are checked by :meth:`WeakLabels.validate`, so a bad file fails naming the image and the label.

Formats (coordinates: the workbench puts pixel ``(r, c)``'s centre at ``(r, c)``; the tools below
put pixel edges on whole numbers, so a point's centre is at ``c + 0.5`` there, and box edges map
one to one):

- ``labelstudio``: Label Studio's JSON export (a list of tasks, ``annotations[0].result``; positions
  in percent of ``original_width`` / ``original_height``). Points are ``keypointlabels``, boxes
  ``rectanglelabels``, tags ``choices``, masks ``brushlabels`` in Label Studio's brush RLE; scribbles
  are brush strokes too (Label Studio has no polyline), whose exact polyline rides along in the
  region's ``meta`` so a round trip is lossless; a stroke painted in Label Studio becomes a scribble
  along its skeleton, as wide as the stroke. :func:`labelstudio_config` writes the matching
  labelling interface. Label names carry no index, so importing needs the dataset's classes.
- ``cvat``: CVAT for images 1.1 XML. ``<points>``, ``<polyline>`` (with a ``width`` attribute),
  ``<box>`` and ``<tag>`` elements; classes from ``<meta><task><labels>``. Masks are not written (CVAT
  1.1 masks are polygons or its own RLE); use Label Studio or COCO for them.
- ``coco``: COCO object-detection JSON. Masks are RLE (``pycocotools``, one annotation per class
  and image, ``iscrowd`` 1), points are ``keypoints`` of a one-keypoint category skeleton
  (``[x, y, 2]`` at the pixel index, COCO's keypoint convention), boxes are ``bbox`` annotations
  without segmentation, scribbles are RLE strokes with their polyline in ``weakseg_scribble``, and
  the tags are listed per image in ``weakseg_tags`` (COCO has no image-level labels).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from workbench.io import atomic_write_text
from workbench.labels.weak_labels import (
    IGNORE,
    UNLABELED,
    Box,
    Point,
    Scribble,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    _draw_scribble,
    _longest_path,
    check_file_size,
)

FORMATS = ("labelstudio", "cvat", "coco")
MASK_FREE = (UNLABELED, IGNORE)
# names of the Label Studio controls (the ``from_name`` of each result), as :func:`labelstudio_config` writes them
LS_IMAGE, LS_POINTS, LS_BOXES, LS_SCRIBBLES, LS_MASK, LS_TAGS = "image", "points", "boxes", "scribbles", "mask", "tags"
LS_POINT_SIZE = 1.0  # keypoint marker size in Label Studio, percent of the image width
_LS_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio renames uploads to HASH-name.png


MAX_IMPORT_SIDE = 32_768  # image side a file's mask or stroke may be decoded at (1 GiB of bool at most)


class InterchangeError(WeakLabelError):
    """A file in one of the tools' formats that cannot be read or written (the message names the place)."""


# ----------------------------------------------------------------------------- entry points


def export_labels(
    path: str | Path,
    fmt: str,
    weak_set: WeakLabelSet,
    masks: Mapping[str, np.ndarray] | None = None,
    image_files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``weak_set`` (and ``masks``) to ``path`` in format ``fmt``; ``image_files`` maps names to file names."""
    _check_format(fmt)
    if not weak_set.classes:
        raise InterchangeError("the weak labels have no class names; export labels that carry their dataset's classes")
    masks = dict(masks or {})
    for name, weak in weak_set.labels.items():
        weak.validate(len(weak_set.classes), where=f"image {name!r}")
    for name, mask in masks.items():
        _check_mask(mask, len(weak_set.classes), f"mask of image {name!r}", _size_of(weak_set, name, mask))
    files = {name: (image_files or {}).get(name, f"{name}.png") for name in sorted(set(weak_set.labels) | set(masks))}
    writer = {"labelstudio": _labelstudio_export, "cvat": _cvat_export, "coco": _coco_export}[fmt]
    text = writer(weak_set, masks, files)
    atomic_write_text(path, text)
    return Path(path)


def import_labels(
    path: str | Path, fmt: str, classes: Sequence[str] | None = None
) -> tuple[WeakLabelSet, dict[str, np.ndarray]]:
    """Read a file in format ``fmt``: ``(weak labels, masks)`` keyed by image name (file stem).

    ``classes`` (the dataset's class names) maps label names to indices; CVAT and COCO files
    carry their own list (under any ids, in any order), whose names must then be among ``classes``.
    """
    _check_format(fmt)
    path = Path(path)
    check_file_size(path, f"{fmt} file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise InterchangeError(f"{path}: cannot read it ({err}); pass a file exported from {fmt}") from None
    except UnicodeDecodeError as err:
        raise InterchangeError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); pass the {fmt} export"
        ) from None
    reader = {"labelstudio": _labelstudio_import, "cvat": _cvat_import, "coco": _coco_import}[fmt]
    try:
        file_classes, labels, masks = reader(text, classes, path)
    except RecursionError:
        raise InterchangeError(f"{path}: nested too deeply to be a {fmt} export") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, StopIteration, OverflowError) as err:
        if isinstance(err, WeakLabelError):
            raise
        raise InterchangeError(  # a field of the wrong type or missing: the file is not what it claims
            f"{path}: not a {fmt} export this workbench can read ({type(err).__name__}: {err})"
        ) from None
    unknown = sorted(set(file_classes or ()) - set(classes or file_classes or ()))
    if unknown:  # labels are matched by class name: other ids or another order are fine, other names are not
        raise InterchangeError(
            f"{path}: its classes {unknown} are not among the dataset's {list(classes or ())}; "
            "import with the dataset the labels were made for"
        )
    names = tuple(classes if classes is not None else file_classes or ())
    for name, weak in labels.items():
        weak.validate(len(names), where=f"{path}: image {name!r}")
    for name, mask in masks.items():
        _check_mask(mask, len(names), f"{path}: mask of image {name!r}", mask.shape)
    return WeakLabelSet(names, labels), masks


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InterchangeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _size_of(weak_set: WeakLabelSet, name: str, mask: np.ndarray) -> tuple[int, int]:
    weak = weak_set.labels.get(name)
    return (weak.height, weak.width) if weak is not None else (int(np.shape(mask)[0]), int(np.shape(mask)[1]))


def _check_mask(mask, num_classes: int, where: str, size: tuple[int, int]) -> None:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise InterchangeError(f"{where}: expected an (H, W) uint8 class-index mask, got {mask.dtype} {mask.shape}")
    if mask.shape != tuple(size):
        raise InterchangeError(f"{where}: mask is {mask.shape[0]}x{mask.shape[1]}, the labels say {size[0]}x{size[1]}")
    bad = np.setdiff1d(np.unique(mask), [*range(num_classes), *MASK_FREE])
    if bad.size:
        raise InterchangeError(f"{where}: values {bad.tolist()} are not classes 0..{num_classes - 1} nor 254/255")


def _class_of(label: str, classes: Sequence[str], where: str) -> int:
    try:
        return list(classes).index(label)
    except ValueError:
        raise InterchangeError(
            f"{where}: label {label!r} is not a class of the dataset ({', '.join(classes)}); "
            "rename it in the labelling tool or import with the dataset it was made for"
        ) from None


def _stem(reference: str) -> str:
    """Image name from a file name, path or URL (``/data/upload/1/8e3f2a1b-0001.png`` -> ``0001``)."""
    name = PurePosixPath(reference.split("?d=")[-1].split("?")[0]).stem
    return _LS_UPLOAD_PREFIX.sub("", name)


# ----------------------------------------------------------------------------- raster helpers


def scribble_mask(scribble: Scribble, height: int, width: int) -> np.ndarray:
    """Boolean ``(H, W)`` pixels of one scribble, exactly as :func:`~workbench.labels.weak_labels.rasterize` draws it."""
    canvas = np.full((height, width), UNLABELED, np.uint8)
    _draw_scribble(canvas, Scribble(scribble.path, 0, scribble.width))
    return canvas == 0


def strokes_to_scribbles(region: np.ndarray, cls: int) -> tuple[list[Scribble], list[Point]]:
    """A painted stroke -> one scribble per blob along its skeleton's longest path, as wide as the stroke.

    The width is the blob's thickness (twice its deepest distance to the edge, less one pixel), so
    the scribble covers about the painted pixels; a blob too small for a skeleton becomes a point.
    """
    blobs, count = ndimage.label(region, structure=np.ones((3, 3)))
    scribbles, points = [], []
    for k in range(1, count + 1):
        blob = blobs == k
        rows, cols = np.nonzero(skeletonize(blob))
        if len(rows) < 2:
            rows, cols = np.nonzero(blob)
            points.append(Point(float(np.round(rows.mean())), float(np.round(cols.mean())), cls))
            continue
        depth = ndimage.distance_transform_edt(np.pad(blob, 1))[1:-1, 1:-1]
        path = _longest_path(rows, cols)
        width = max(1.0, float(2 * depth.max() - 1))
        scribbles.append(Scribble(tuple((float(r), float(c)) for r, c in path), cls, width))
    return scribbles, points


# ----------------------------------------------------------------------------- Label Studio brush RLE
# Label Studio stores a brush region as the run-length code of thi.ng's rle-pack over the RGBA bytes of
# an image of the original size (the region is where alpha > 0): a 32-bit value count, a 5-bit word size
# minus 1, four 4-bit run-length field sizes minus 1, then runs: a bit (1 repeat, 0 literal), a 2-bit
# field-size index, the run length minus 1, and the value(s).

_RLE_SIZES = (3, 4, 8, 16)


def ls_rle_encode(region: np.ndarray) -> list[int]:
    """Boolean ``(H, W)`` region -> Label Studio brush RLE bytes (RGBA 255 inside, 0 outside)."""
    values = np.repeat(np.asarray(region, bool).ravel().astype(np.uint8) * 255, 4)
    bits = [f"{values.size:032b}", f"{8 - 1:05b}", "".join(f"{s - 1:04b}" for s in _RLE_SIZES)]
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [values.size]]))
    for start, length in zip(starts.tolist(), lengths.tolist()):
        value = f"{int(values[start]):08b}"
        while length > 0:
            run = min(length, 1 << _RLE_SIZES[-1])
            index = next(i for i, s in enumerate(_RLE_SIZES) if run <= 1 << s)
            bits.append(f"1{index:02b}{run - 1:0{_RLE_SIZES[index]}b}{value}")
            length -= run
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[i : i + 8], 2) for i in range(0, len(stream), 8)]


def ls_rle_decode(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> boolean ``(H, W)`` region (alpha > 0)."""
    _check_decodable_size(height, width, "brush image")
    if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in rle):
        raise InterchangeError("brush RLE must be a list of bytes 0..255; re-export the task from Label Studio")
    bits = np.unpackbits(np.asarray(rle, dtype=np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > bits.size:
            raise InterchangeError("brush RLE ends early; re-export the task from Label Studio")
        chunk = bits[pos : pos + n]
        pos += n
        return int("".join("1" if b else "0" for b in chunk) or "0", 2)

    num = read(32)
    if num != height * width * 4:
        raise InterchangeError(
            f"brush RLE holds {num} values, a {height}x{width} RGBA image needs {height * width * 4}"
        )
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint32)
    i = 0
    while i < num:
        repeat = read(1)
        j = min(num, i + 1 + read(sizes[read(2)]))
        if repeat:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out.reshape(height, width, 4)[..., 3] > 0


# ----------------------------------------------------------------------------- Label Studio


def labelstudio_config(classes: Sequence[str]) -> str:
    """The labelling interface XML whose control names :func:`export_labels` writes and reads."""
    labels = "".join(f'    <Label value="{_xml_text(c)}"/>\n' for c in classes)
    choices = "".join(f'    <Choice value="{_xml_text(c)}"/>\n' for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{LS_IMAGE}" value="$image" zoom="true"/>\n'
        f'  <KeyPointLabels name="{LS_POINTS}" toName="{LS_IMAGE}" strokeWidth="2">\n{labels}  </KeyPointLabels>\n'
        f'  <BrushLabels name="{LS_SCRIBBLES}" toName="{LS_IMAGE}">\n{labels}  </BrushLabels>\n'
        f'  <RectangleLabels name="{LS_BOXES}" toName="{LS_IMAGE}">\n{labels}  </RectangleLabels>\n'
        f'  <BrushLabels name="{LS_MASK}" toName="{LS_IMAGE}">\n{labels}  </BrushLabels>\n'
        f'  <Choices name="{LS_TAGS}" toName="{LS_IMAGE}" choice="multiple">\n{choices}  </Choices>\n'
        "</View>\n"
    )


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _labelstudio_export(weak_set: WeakLabelSet, masks: dict[str, np.ndarray], files: dict[str, str]) -> str:
    tasks = []
    for task_id, (name, file) in enumerate(files.items(), start=1):
        results = _labelstudio_results(weak_set.labels.get(name), masks.get(name), weak_set.classes)
        tasks.append({"id": task_id, "data": {LS_IMAGE: file}, "annotations": [{"id": task_id, "result": results}]})
    return json.dumps(tasks)


def _labelstudio_results(weak: WeakLabels | None, mask: np.ndarray | None, classes: Sequence[str]) -> list[dict]:
    """The ``result`` list of one image's annotation."""
    h, w = (weak.height, weak.width) if weak is not None else mask.shape  # type: ignore[union-attr]
    results: list[dict] = []

    def add(kind: str, control: str, value: dict, meta: dict | None = None) -> None:
        results.append({
            "id": f"r{len(results) + 1}", "type": kind, "from_name": control, "to_name": LS_IMAGE,
            "original_width": w, "original_height": h, "image_rotation": 0, "value": value,
            **({"meta": {"text": [json.dumps(meta)]}} if meta else {}),
        })  # fmt: skip

    if weak is not None:
        if weak.tags:
            add("choices", LS_TAGS, {"choices": [classes[c] for c in sorted(weak.tags)]})
        for p in weak.points:
            value = {"x": (p.col + 0.5) / w * 100, "y": (p.row + 0.5) / h * 100, "width": LS_POINT_SIZE}
            add("keypointlabels", LS_POINTS, {**value, "keypointlabels": [classes[p.cls]]},
                {"radius": p.radius} if p.radius else None)  # fmt: skip
        for b in weak.boxes:
            value = {"x": b.col0 / w * 100, "y": b.row0 / h * 100, "width": (b.col1 - b.col0) / w * 100,
                     "height": (b.row1 - b.row0) / h * 100, "rotation": 0}  # fmt: skip
            add("rectanglelabels", LS_BOXES, {**value, "rectanglelabels": [classes[b.cls]]})
        for s in weak.scribbles:
            stroke = {"format": "rle", "rle": ls_rle_encode(scribble_mask(s, h, w)), "brushlabels": [classes[s.cls]]}
            add(
                "brushlabels",
                LS_SCRIBBLES,
                stroke,
                {"weakseg_scribble": {"path": [list(v) for v in s.path], "width": s.width}},
            )
    if mask is not None:
        for c in np.unique(mask).tolist():
            if c not in MASK_FREE:
                add(
                    "brushlabels",
                    LS_MASK,
                    {"format": "rle", "rle": ls_rle_encode(mask == c), "brushlabels": [classes[c]]},
                )
    return results


def _labelstudio_import(text: str, classes: Sequence[str] | None, path: Path):
    if classes is None:
        raise InterchangeError(
            f"{path}: Label Studio exports carry label names only; pass the dataset (--data DIR) so names map to classes"
        )
    tasks = json.loads(text)
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise InterchangeError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
    labels, masks = {}, {}
    for t, task in enumerate(tasks):
        name = _stem(str(next(iter(task["data"].values()))))
        where = f"{path}: task {task.get('id', t)} ({name})"
        annotations = [
            a for a in task.get("annotations") or task.get("completions") or [] if not a.get("was_cancelled")
        ]
        results = annotations[-1]["result"] if annotations else []
        sizes = {(r["original_height"], r["original_width"]) for r in results if "original_width" in r}
        if not sizes:
            continue  # an unlabelled task
        if len(sizes) > 1:
            raise InterchangeError(f"{where}: results disagree on the image size {sorted(sizes)}")
        ((h, w),) = sizes
        tags, points, scribbles, boxes, mask = set(), [], [], [], None
        for r in results:
            kind, value = r["type"].lower(), r["value"]
            if kind == "choices":
                tags |= {_class_of(c, classes, where) for c in value["choices"]}
                continue
            if kind not in ("keypointlabels", "rectanglelabels", "brushlabels"):
                raise InterchangeError(
                    f"{where}: result type {r['type']!r} is not read (points, boxes, brush, choices)"
                )
            (label,) = value[kind]
            cls = _class_of(label, classes, where)
            meta = _meta(r)
            if kind == "keypointlabels":
                row, col = value["y"] / 100 * h - 0.5, value["x"] / 100 * w - 0.5
                points.append(Point(row, col, cls, float(meta.get("radius", 0.0))))
            elif kind == "rectanglelabels":
                if value.get("rotation", 0):
                    raise InterchangeError(
                        f"{where}: rotated rectangle ({value['rotation']} deg); boxes must be upright"
                    )
                x0, y0 = value["x"] / 100 * w, value["y"] / 100 * h
                boxes.append(Box(y0, x0, y0 + value["height"] / 100 * h, x0 + value["width"] / 100 * w, cls))
            else:
                try:
                    region = ls_rle_decode(value["rle"], h, w)
                except InterchangeError as err:  # name the file and task: the decoder knows neither
                    raise InterchangeError(f"{where}: {err}") from None
                if r["from_name"] == LS_MASK:
                    mask = np.full((h, w), UNLABELED, np.uint8) if mask is None else mask
                    mask[region] = cls
                elif "weakseg_scribble" in meta:
                    poly = meta["weakseg_scribble"]
                    scribbles.append(Scribble(tuple((float(a), float(b)) for a, b in poly["path"]), cls, poly["width"]))
                else:  # a stroke painted in Label Studio
                    found, specks = strokes_to_scribbles(region, cls)
                    scribbles += found
                    points += specks
        items = points + scribbles + boxes
        if items or tags:
            tags |= {i.cls for i in items}
            labels[name] = WeakLabels(h, w, frozenset(tags), tuple(points), tuple(scribbles), tuple(boxes))
        if mask is not None:
            masks[name] = mask
    return None, labels, masks


def _meta(result: dict) -> dict:
    """The workbench's JSON in a result's ``meta.text`` (empty for regions drawn in Label Studio)."""
    out = {}
    for line in (result.get("meta") or {}).get("text", []):
        try:
            value = json.loads(line)
        except (TypeError, json.JSONDecodeError):
            continue  # a note someone typed
        if isinstance(value, dict):
            out.update(value)
    return out


# ----------------------------------------------------------------------------- CVAT for images 1.1


def _fmt(v: float) -> str:
    return f"{v:.2f}" if float(v).is_integer() else repr(float(v))


def _cvat_export(weak_set: WeakLabelSet, masks: dict[str, np.ndarray], files: dict[str, str]) -> str:
    if masks:
        raise InterchangeError(
            "CVAT export writes points, polylines, boxes and tags, not masks; use labelstudio or coco"
        )
    classes = weak_set.classes
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "size").text = str(len(files))
    labels = ET.SubElement(task, "labels")
    for class_name in classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = class_name
        ET.SubElement(label, "type").text = "any"
        attributes = ET.SubElement(label, "attributes")
        for attr, default, values in (("width", "3", "1;64;1"), ("radius", "0", "0;64;1")):  # polyline / points
            attribute = ET.SubElement(attributes, "attribute")
            for key, text in (("name", attr), ("mutable", "False"), ("input_type", "number"),
                              ("default_value", default), ("values", values)):  # fmt: skip
                ET.SubElement(attribute, key).text = text
    for image_id, (name, file) in enumerate(files.items()):
        weak = weak_set.labels[name]
        image = ET.SubElement(
            root, "image", id=str(image_id), name=file, width=str(weak.width), height=str(weak.height)
        )
        common = {"source": "manual", "occluded": "0", "z_order": "0"}
        for c in sorted(weak.tags):
            ET.SubElement(image, "tag", label=classes[c], source="manual")
        for p in weak.points:
            element = ET.SubElement(
                image, "points", label=classes[p.cls], points=f"{_fmt(p.col + 0.5)},{_fmt(p.row + 0.5)}", attrib=common
            )
            if p.radius:
                ET.SubElement(element, "attribute", name="radius").text = _fmt(p.radius)
        for s in weak.scribbles:
            points = ";".join(f"{_fmt(c + 0.5)},{_fmt(r + 0.5)}" for r, c in s.path)
            element = ET.SubElement(image, "polyline", label=classes[s.cls], points=points, attrib=common)
            ET.SubElement(element, "attribute", name="width").text = _fmt(s.width)
        for b in weak.boxes:
            ET.SubElement(image, "box", label=classes[b.cls], xtl=_fmt(b.col0), ytl=_fmt(b.row0), xbr=_fmt(b.col1),
                          ybr=_fmt(b.row1), attrib=common)  # fmt: skip
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _cvat_import(text: str, classes: Sequence[str] | None, path: Path):
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise InterchangeError(f"{path}: not valid XML ({err}); export the task as 'CVAT for images 1.1'") from None
    if root.tag != "annotations" or root.findtext("version", "").strip() != "1.1":
        raise InterchangeError(f"{path}: not a 'CVAT for images 1.1' file (<annotations><version>1.1</version>)")
    file_classes = [e.text or "" for e in root.iterfind("meta/*/labels/label/name")] or None
    names = list(classes if classes is not None else file_classes or [])
    if not names:
        raise InterchangeError(f"{path}: no <labels> in <meta>; pass the dataset so label names map to classes")
    labels = {}
    for image in root.iterfind("image"):
        name = _stem(image.get("name", ""))
        where = f"{path}: image {name!r}"
        h, w = int(image.get("height", "0")), int(image.get("width", "0"))
        tags, points, scribbles, boxes = set(), [], [], []
        for element in image:
            cls = _class_of(element.get("label", ""), names, where)
            attributes = {a.get("name"): a.text for a in element.iterfind("attribute")}
            xy = [tuple(float(v) for v in pair.split(",")) for pair in element.get("points", "").split(";") if pair]
            if element.tag == "tag":
                tags.add(cls)
            elif element.tag == "points":
                radius = float(attributes.get("radius") or 0.0)
                points += [Point(y - 0.5, x - 0.5, cls, radius) for x, y in xy]
            elif element.tag == "polyline":
                path_ = tuple((y - 0.5, x - 0.5) for x, y in xy)
                scribbles.append(Scribble(path_, cls, float(attributes.get("width") or 3.0)))
            elif element.tag == "box":
                if float(element.get("rotation", "0")):
                    raise InterchangeError(f"{where}: rotated box; boxes must be upright")
                x0, y0, x1, y1 = (float(element.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))  # type: ignore[arg-type]
                boxes.append(Box(y0, x0, y1, x1, cls))
            else:
                raise InterchangeError(f"{where}: <{element.tag}> is not read (points, polyline, box, tag)")
        tags |= {i.cls for i in points + scribbles + boxes}
        labels[name] = WeakLabels(h, w, frozenset(tags), tuple(points), tuple(scribbles), tuple(boxes))
    return file_classes, labels, {}


# ----------------------------------------------------------------------------- COCO


def _mask_utils():
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise InterchangeError("COCO masks need pycocotools: pip install -e '.[coco]'") from None
    return mask_utils


def _coco_rle(region: np.ndarray) -> dict:
    rle = _mask_utils().encode(np.asfortranarray(region.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _coco_export(weak_set: WeakLabelSet, masks: dict[str, np.ndarray], files: dict[str, str]) -> str:
    classes = weak_set.classes
    doc: dict = {
        "info": {"description": "weak labels exported by the weakseg workbench"},
        "images": [],
        "annotations": [],
        "categories": [
            {"id": c + 1, "name": name, "supercategory": "", "keypoints": ["point"], "skeleton": []}
            for c, name in enumerate(classes)
        ],
    }

    def add(image_id: int, cls: int, **fields) -> None:
        ann = {"id": len(doc["annotations"]) + 1, "image_id": image_id, "category_id": cls + 1, "iscrowd": 0, **fields}
        if "segmentation" in fields:
            m = _mask_utils()
            ann.update(
                iscrowd=1, area=float(m.area(fields["segmentation"])), bbox=m.toBbox(fields["segmentation"]).tolist()
            )
        doc["annotations"].append(ann)

    for image_id, (name, file) in enumerate(files.items(), start=1):
        weak, mask = weak_set.labels.get(name), masks.get(name)
        h, w = (weak.height, weak.width) if weak is not None else mask.shape  # type: ignore[union-attr]
        record: dict = {"id": image_id, "file_name": file, "height": h, "width": w}
        if weak is not None:
            record["weakseg_tags"] = [c + 1 for c in sorted(weak.tags)]
            for p in weak.points:
                add(image_id, p.cls, keypoints=[p.col, p.row, 2], num_keypoints=1, bbox=[p.col, p.row, 0, 0], area=0.0,
                    **({"weakseg_radius": p.radius} if p.radius else {}))  # fmt: skip
            for b in weak.boxes:
                add(image_id, b.cls, bbox=[b.col0, b.row0, b.col1 - b.col0, b.row1 - b.row0],
                    area=(b.col1 - b.col0) * (b.row1 - b.row0))  # fmt: skip
            for s in weak.scribbles:
                add(image_id, s.cls, segmentation=_coco_rle(scribble_mask(s, h, w)),
                    weakseg_scribble={"path": [list(v) for v in s.path], "width": s.width})  # fmt: skip
        if mask is not None:
            for c in np.unique(mask).tolist():
                if c not in MASK_FREE:
                    add(image_id, c, segmentation=_coco_rle(mask == c))
        doc["images"].append(record)
    return json.dumps(doc)


def _coco_import(text: str, classes: Sequence[str] | None, path: Path):
    doc = json.loads(text)
    if not isinstance(doc, dict) or not {"images", "annotations", "categories"} <= doc.keys():
        raise InterchangeError(f"{path}: not a COCO file (expected 'images', 'annotations' and 'categories')")
    categories = sorted(doc["categories"], key=lambda c: c["id"])
    file_classes = [c["name"] for c in categories]
    names = list(classes if classes is not None else file_classes)
    by_category = {c["id"]: _class_of(c["name"], names, f"{path}: category {c['id']}") for c in categories}
    images = {im["id"]: im for im in doc["images"]}
    found: dict[int, dict] = {i: {"points": [], "scribbles": [], "boxes": [], "mask": None} for i in images}
    for ann in doc["annotations"]:
        image = images[ann["image_id"]]
        h, w, cls = image["height"], image["width"], by_category[ann["category_id"]]
        where = f"{path}: annotation {ann.get('id')} of {image['file_name']!r}"
        into = found[ann["image_id"]]
        if ann.get("num_keypoints") or ann.get("keypoints"):
            kp = ann["keypoints"]
            into["points"] += [Point(float(y), float(x), cls, float(ann.get("weakseg_radius", 0.0)))
                               for x, y, v in zip(kp[0::3], kp[1::3], kp[2::3]) if v > 0]  # fmt: skip
        elif ann.get("segmentation"):
            region = _coco_region(ann["segmentation"], h, w, where)
            if "weakseg_scribble" in ann:
                poly = ann["weakseg_scribble"]
                into["scribbles"].append(
                    Scribble(tuple((float(a), float(b)) for a, b in poly["path"]), cls, poly["width"])
                )
            else:
                into["mask"] = np.full((h, w), UNLABELED, np.uint8) if into["mask"] is None else into["mask"]
                into["mask"][region] = cls
        elif ann.get("bbox"):
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            into["boxes"].append(Box(y, x, y + bh, x + bw, cls))
    labels, masks = {}, {}
    for image_id, image in images.items():
        name, into = _stem(image["file_name"]), found[image_id]
        tags = {by_category[c] for c in image.get("weakseg_tags", [])}
        items = into["points"] + into["scribbles"] + into["boxes"]
        if items or tags:
            tags |= {i.cls for i in items}
            labels[name] = WeakLabels(image["height"], image["width"], frozenset(tags), tuple(into["points"]),
                                      tuple(into["scribbles"]), tuple(into["boxes"]))  # fmt: skip
        if into["mask"] is not None:
            masks[name] = into["mask"]
    return file_classes, labels, masks


def _coco_region(segmentation, h: int, w: int, where: str) -> np.ndarray:
    """Boolean mask of a COCO segmentation: RLE (compressed or not) or polygons, each checked before
    pycocotools sees it (a NaN vertex made it allocate 19 GB; a run length past uint32 overflowed)."""
    m = _mask_utils()
    _check_decodable_size(h, w, f"{where}: image")
    if isinstance(segmentation, list):
        for polygon in segmentation:
            _check_polygon(polygon, h, w, where)
        rle = m.merge(m.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        counts = segmentation["counts"]
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**32 for c in counts):
            raise InterchangeError(f"{where}: RLE counts must be whole numbers 0..2^32-1")
        if sum(counts) != h * w:
            raise InterchangeError(f"{where}: RLE counts cover {sum(counts)} pixels, the image has {h * w}")
        rle = m.frPyObjects(segmentation, h, w)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    else:
        raise InterchangeError(
            f"{where}: segmentation must be polygons or an RLE dict, got {type(segmentation).__name__}"
        )
    if list(rle["size"]) != [h, w]:
        raise InterchangeError(f"{where}: segmentation size {list(rle['size'])} differs from the image's [{h}, {w}]")
    return m.decode(rle).astype(bool)


def _check_decodable_size(h, w, what: str) -> None:
    """A size a mask may be decoded at: whole numbers 1..MAX_IMPORT_SIDE, so a number in a file cannot
    make numpy or pycocotools allocate gigabytes."""
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_IMPORT_SIDE for v in (h, w)):
        raise InterchangeError(
            f"{what} size {h}x{w} must be whole numbers 1..{MAX_IMPORT_SIDE} (positive, up to {MAX_IMPORT_SIDE} a side)"
        )


def _check_polygon(polygon, h: int, w: int, where: str) -> None:
    """A COCO polygon: at least 3 finite (x, y) vertices near the image."""
    if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
        raise InterchangeError(f"{where}: a polygon needs an even number of at least 6 coordinates (x1, y1, x2, ...)")
    values = np.asarray([v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in polygon])
    reach = 2 * max(h, w)
    if not (np.isfinite(values).all() and (np.abs(values) <= reach).all()):
        raise InterchangeError(f"{where}: polygon coordinates must be finite numbers within {reach} px of the image")


# ----------------------------------------------------------------------------- the annotation store


def export_store(store, info, split: str, path: str | Path, fmt: str) -> int:
    """Write the store's labels of ``split``'s images to ``path`` in ``fmt``; return the number of images.

    Image file names come from the dataset, so the tool finds the labels' images. The CLI's
    ``annotations export --format`` and the dashboard's export button call this.
    """
    from workbench.annotations.store import AnnotationError
    from workbench.data.folder import list_split

    if tuple(info.classes) != store.classes:
        raise AnnotationError(
            f"{store.path}: the store's classes {list(store.classes)} differ from {info.root}'s "
            f"{list(info.classes)}; export with the dataset the annotations were made on"
        )
    names = set(list_split(info, split))
    labels = {n: w for n, w in store.to_weak_label_set().labels.items() if n in names}
    files = {n: info.image_path(split, n).name for n in labels}
    export_labels(path, fmt, WeakLabelSet(store.classes, labels), image_files=files)
    return len(labels)

"""The committed full-scale benchmark results (``bench/results/*.json``), read for the tutorials.

A tutorial's tiny run (48x48 scenes, a few epochs) can rarely show the effect its text
describes. Each tutorial therefore prints, beside its own numbers, the committed result of the
same comparison at full scale, read from the file the benchmark wrote (never typed in), with
mIoU split into "stuff" (background: sky, road, grass...) and "object" classes, because a
mean over both hides whether any object was learnt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from workbench.data import synthetic

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"
# Background ("stuff") classes of each dataset; every other class is an object. CamVid's Fence and
# MSRC-21's flower are region-like but thin or small; they count as objects here.
STUFF = {
    "synthetic": tuple(synthetic.STUFF),
    "camvid": ("Sky", "Building", "Road", "Pavement", "Tree"),
    "msrc21": ("building", "grass", "tree", "sky", "water", "road"),
}


def load_result(name: str, root: str | Path = RESULTS_DIR) -> dict:
    """``bench/results/<name>.json`` as a dict (keys: the run settings, and ``rows``)."""
    path = Path(root) / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in Path(root).glob("*.json")) if Path(root).is_dir() else []
        raise FileNotFoundError(f"no benchmark result {path}; available: {available or 'none'} (run bench/ first)")
    return json.loads(path.read_text())


def find_result(names: Sequence[str], rows: Sequence[str] = (), root: str | Path = RESULTS_DIR) -> tuple[str, dict]:
    """The first of ``names`` (file stems, most wanted first, e.g. the pretrained regime before the
    scratch one) that is committed and has every row of ``rows``; returns its name and content."""
    for name in names:
        if (Path(root) / f"{name}.json").is_file():
            result = load_result(name, root)
            if set(rows) <= set(row_keys(result)):
                return name, result
    raise FileNotFoundError(f"none of the results {list(names)} in {root} has the rows {list(rows)}; run bench/ first")


def _meta(result: Mapping) -> dict:
    """Run settings of a result, whether at the top level or under ``budget`` (label-efficiency files)."""
    return {**result, **result.get("budget", {})}


def stuff_classes(dataset: str) -> tuple[str, ...]:
    """The background classes of ``dataset`` (a key of :data:`STUFF`, or a path ending in one)."""
    key = Path(str(dataset)).name.lower()
    key = "synthetic" if key.startswith("synthetic") else key
    if key not in STUFF:
        raise KeyError(f"no stuff/object split for dataset {dataset!r}; add its background classes to STUFF")
    return STUFF[key]


def group_miou(per_class_iou: Mapping[str, float | None], classes: Sequence[str]) -> float:
    """Mean IoU over ``classes`` only; classes with no IoU (absent from the split) are skipped, NaN if none is left."""
    found = [per_class_iou.get(c) for c in classes]
    values = [float(v) for v in found if v is not None and not math.isnan(float(v))]
    return sum(values) / len(values) if values else math.nan


def split_miou(per_class_iou: Mapping[str, float | None], stuff: Sequence[str]) -> dict[str, float]:
    """``{"mIoU", "stuff mIoU", "object mIoU"}`` of one per-class IoU dict."""
    objects = [c for c in per_class_iou if c not in set(stuff)]
    return {
        "mIoU": group_miou(per_class_iou, list(per_class_iou)),
        "stuff mIoU": group_miou(per_class_iou, stuff),
        "object mIoU": group_miou(per_class_iou, objects),
    }


def settings(result: Mapping) -> str:
    """One line naming the dataset, size, epochs and encoder of a result (the caveat printed beside it)."""
    meta = _meta(result)
    size = "x".join(str(v) for v in meta.get("image_size", ())) or "?"
    weights = "ImageNet weights" if meta.get("encoder_weights") else "from scratch"
    encoder = meta.get("encoder", "resnet18")
    name = Path(str(meta.get("dataset", "?"))).name
    return f"{name} {size}, {meta.get('epochs', '?')} epochs, {encoder} {weights}"


def _row_key(row: Mapping) -> str:
    return row.get("row") or f"{row['method']}/{row['supervision']}"


def row_keys(result: Mapping) -> list[str]:
    """The row names of a result: ``"method/supervision"``, or the weak-shot row names."""
    return [_row_key(r) for r in result["rows"]]


def comparison(result: Mapping, rows: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of a result (``"method/supervision"`` or a weak-shot row name; all when None) with
    mIoU split into stuff and objects, and base/novel mIoU where the result has them."""
    by_key = {_row_key(r): r for r in result["rows"]}
    missing = [k for k in rows or () if k not in by_key]
    if missing:
        raise KeyError(f"rows {missing} are not in this result; it has {sorted(by_key)}")
    stuff = stuff_classes(_meta(result).get("dataset", ""))
    table = {}
    for key in rows or list(by_key):
        row = by_key[key]
        if row.get("per_class_iou"):
            entry = split_miou(row["per_class_iou"], stuff)
        else:  # a result without per-class IoU: only its mean is known
            entry = {
                "mIoU": row.get("val_miou", row.get("miou", row.get("miou_mean", math.nan))),
                "stuff mIoU": math.nan,
                "object mIoU": math.nan,
            }
        for k in ("base_miou", "novel_miou", "harmonic_miou"):
            if k in row:
                entry[k.replace("_miou", " mIoU")] = row[k]
        table[key] = entry
    return pd.DataFrame(table).T


def tiny_vs_full(
    tiny: Mapping[str, Mapping], full: Mapping, rows: Mapping[str, str], stuff: Sequence[str]
) -> pd.DataFrame:
    """Tiny-run summaries (label -> summary) beside the committed full-scale rows (label -> row key of ``full``).

    One table: a ``(scale, label)`` index, stuff / object mIoU columns, so the same comparison can
    be read at both scales.
    """
    frames = {}
    for label, summary in tiny.items():
        entry = split_miou(summary["per_class_iou"], stuff)
        for k in ("base_miou", "novel_miou"):
            if k in summary:
                entry[k.replace("_miou", " mIoU")] = summary[k]
        frames[("this notebook (tiny)", label)] = entry
    full_table = comparison(full, list(rows.values()))
    for label, key in rows.items():
        frames[("committed (full scale)", label)] = full_table.loc[key].to_dict()
    return pd.DataFrame(frames).T

"""Hostile tool exports (issue 25): each a one-line InterchangeError naming the file, never a traceback,
a hang or an allocation sized by a number in the file. The cases that once allocated gigabytes run in
a subprocess under a 4 GiB memory cap, so a regression fails the test instead of the machine."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from workbench.cli import main
from workbench.data.folder import list_split, load_dataset_info

MEMORY_CAP = 4 * 2**30
ALLOCATING = {"coco_nan_polygon.json", "coco_huge_image.json", "ls_huge_brush.json"}  # 19 GB, 10^12 px, 13 GiB


def coco(name: str, **annotation) -> dict:
    return {
        "images": [{"id": 1, "file_name": f"{name}.png", "height": 32, "width": 32}],
        "categories": [{"id": 1, "name": "disc"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0, **annotation}],
    }


def label_studio(name: str, **change) -> list:
    result = {"type": "brushlabels", "from_name": "mask", "to_name": "image", "original_height": 32,
              "original_width": 32, "value": {"brushlabels": ["disc"], "rle": [0, 0, 16]}}  # fmt: skip
    task = {"id": 1, "data": {"image": f"{name}.png"}, "annotations": [{"result": [result]}]}
    for key, value in change.items():
        target, field = (result["value"], key[6:]) if key.startswith("value_") else (task, key)
        target[field] = value
    return [task]


def cases(name: str) -> dict[str, tuple[str, bytes, str]]:
    """file name -> (format, content, words of the error)."""
    nested = ("[" * 100_000 + "]" * 100_000).encode()
    return {
        "coco_not_utf8.json": ("coco", b"\xff\xfe{\x00", "not UTF-8 text"),
        "ls_not_utf8.json": ("labelstudio", b"\xff\xfe[\x00", "not UTF-8 text"),
        "cvat_not_utf8.xml": ("cvat", b"<?xml version='1.0'?><annotations>\xff\xfe</annotations>", "not UTF-8 text"),
        "coco_nested.json": ("coco", nested, "nested too deeply"),
        "ls_nested.json": ("labelstudio", nested, "nested too deeply"),
        "coco_three_numbers.json": ("coco", json.dumps(coco(name, segmentation=[[1, 2, 3]])).encode(), "at least 6"),
        "coco_nan_polygon.json": (
            "coco",
            json.dumps(coco(name, segmentation=[[1, 2, float("nan"), 4, 5, 6]])).encode(),
            "finite numbers",
        ),
        "coco_count_overflow.json": (
            "coco",
            json.dumps(coco(name, iscrowd=1, segmentation={"size": [32, 32], "counts": [2**33, 5]})).encode(),
            "0..2^32-1",
        ),
        "coco_huge_image.json": (
            "coco",
            json.dumps(
                {
                    **coco(name, segmentation={"size": [10**6, 10**6], "counts": [5]}),
                    "images": [{"id": 1, "file_name": f"{name}.png", "height": 10**6, "width": 10**6}],
                }
            ).encode(),
            "up to 32768",
        ),  # fmt: skip
        "ls_annotation_is_a_string.json": (
            "labelstudio",
            json.dumps([{"data": {"image": f"{name}.png"}, "annotations": ["a string"]}]).encode(),
            "not a labelstudio export",
        ),
        "ls_empty_data.json": (
            "labelstudio",
            json.dumps([{"data": {}, "annotations": [{"result": []}]}]).encode(),
            "not a labelstudio export",
        ),
        "ls_rle_byte_999.json": ("labelstudio", json.dumps(label_studio(name, value_rle=[999, 0])).encode(), "0..255"),
        "ls_huge_brush.json": (
            "labelstudio",
            json.dumps(
                [
                    {
                        **t,
                        "annotations": [
                            {
                                "result": [
                                    {
                                        **t["annotations"][0]["result"][0],
                                        "original_height": 60000,
                                        "original_width": 60000,
                                    }
                                ]
                            }
                        ],
                    }
                    for t in label_studio(name)
                ]
            ).encode(),
            "1..32768",
        ),  # fmt: skip
    }


@pytest.mark.parametrize("case", sorted(cases("x")))
def test_a_hostile_export_is_a_one_line_error(case, synthetic_root, tmp_path, capsys):
    name = list_split(load_dataset_info(synthetic_root), "train")[0]
    fmt, content, words = cases(name)[case]
    path = tmp_path / case
    path.write_bytes(content)
    store = tmp_path / "s.sqlite"
    argv = ["annotations", "import", "--store", str(store), "--data", str(synthetic_root), "--format", fmt,
            "--file", str(path)]  # fmt: skip
    if case in ALLOCATING:

        def cap_memory() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

        done = subprocess.run(
            [sys.executable, "-m", "workbench", *argv], capture_output=True, text=True, timeout=120,
            preexec_fn=cap_memory,
        )  # fmt: skip
        code, err = done.returncode, done.stderr
    else:
        code, err = main(argv), capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and words in err and str(path) in err, err
    assert err.count("\n") == 1, err
    assert not store.exists(), "a refused import created the store"


@pytest.mark.parametrize("fmt", ["weakseg", "labelstudio", "coco"])
def test_a_label_file_past_the_size_limit_is_refused_before_it_is_read(fmt, synthetic_root, tmp_path, capsys):
    """Issue 25: a 244 MB Label Studio file was still importing at 120 s; one past the limit is refused at once,
    naming the limit (a sparse file: no disk is used)."""
    from workbench.labels.weak_labels import MAX_LABEL_FILE_BYTES

    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(MAX_LABEL_FILE_BYTES + 1)
    source = ["--json", str(path)] if fmt == "weakseg" else ["--format", fmt, "--file", str(path)]
    argv = ["annotations", "import", "--store", str(tmp_path / "s.sqlite"), "--data", str(synthetic_root), *source]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is more than" in err and "512 MiB" in err and str(path) in err, err

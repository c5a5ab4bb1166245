"""The tutorials' reader of committed benchmark results: stuff/object split by hand, rows by name, clear errors."""

from __future__ import annotations

import json
import math

import pytest

from workbench.viz import bench_results


def test_split_miou_averages_stuff_and_objects_apart_skipping_absent_classes():
    iou = {"sky": 0.9, "grass": 0.7, "sand": None, "disc": 0.1, "ring": 0.0}
    split = bench_results.split_miou(iou, bench_results.stuff_classes("data/synthetic-48px"))
    assert split["stuff mIoU"] == pytest.approx(0.8)
    assert split["object mIoU"] == pytest.approx(0.05)
    assert split["mIoU"] == pytest.approx(1.7 / 4)
    assert math.isnan(bench_results.group_miou(iou, ["sand"]))


def test_comparison_reads_rows_from_the_file(tmp_path):
    result = {
        "dataset": "../shared/datasets/camvid", "image_size": [120, 160], "epochs": 40,
        "rows": [
            {"method": "supervised", "supervision": "dense", "per_class_iou": {"Sky": 0.9, "Car": 0.5}},
            {"method": "partial_ce", "supervision": "points", "per_class_iou": {"Sky": 0.5, "Car": 0.1}},
        ],
    }  # fmt: skip
    (tmp_path / "x.json").write_text(json.dumps(result))
    loaded = bench_results.load_result("x", tmp_path)
    table = bench_results.comparison(loaded, ["partial_ce/points"])
    assert table.loc["partial_ce/points", "object mIoU"] == pytest.approx(0.1)
    assert table.loc["partial_ce/points", "stuff mIoU"] == pytest.approx(0.5)
    assert bench_results.settings(loaded) == "camvid 120x160, 40 epochs, resnet18 from scratch"
    with pytest.raises(KeyError, match="spml/points"):
        bench_results.comparison(loaded, ["spml/points"])
    with pytest.raises(FileNotFoundError, match="available: \\['x'\\]"):
        bench_results.load_result("missing", tmp_path)


def test_the_committed_results_the_tutorials_read_are_there():
    for name, row in (
        ("label_efficiency_camvid", "partial_ce/scribbles"),
        ("camvid_baselines", "partial_ce/points"),
        ("weak_shot_msrc21", "simformer"),
        ("weak_shot_camvid", "supervised_base"),
    ):
        table = bench_results.comparison(bench_results.load_result(name), [row])
        assert 0.0 <= table.loc[row, "mIoU"] <= 1.0


def test_find_result_takes_the_first_committed_file_with_the_rows(tmp_path):
    new = {  # bench/label_efficiency.py's layout: settings under "budget", rows named "method/supervision"
        "budget": {"dataset": "camvid", "image_size": [128, 160], "epochs": 10, "encoder": "lite0",
                   "encoder_weights": "imagenet"},
        "rows": [{"row": "supervised/dense", "miou_mean": 0.6, "per_class_iou": {"Sky": 0.9, "Car": 0.3}}],
    }  # fmt: skip
    old = {"dataset": "camvid", "rows": [{"method": "partial_ce", "supervision": "points", "per_class_iou": {}}]}
    (tmp_path / "pre.json").write_text(json.dumps(new))
    (tmp_path / "old.json").write_text(json.dumps(old))
    name, result = bench_results.find_result(["missing", "pre", "old"], ["supervised/dense"], tmp_path)
    assert name == "pre" and bench_results.settings(result) == "camvid 128x160, 10 epochs, lite0 ImageNet weights"
    assert bench_results.comparison(result).loc["supervised/dense", "object mIoU"] == pytest.approx(0.3)
    assert bench_results.find_result(["pre", "old"], ["partial_ce/points"], tmp_path)[0] == "old"
    with pytest.raises(FileNotFoundError, match="spml/points"):
        bench_results.find_result(["pre", "old"], ["spml/points"], tmp_path)

"""bench/label_efficiency.py keeps measured runs: a table with another budget is refused, never dropped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "label_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("label_efficiency", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_table(bench, tmp_path: Path, data: Path, epochs: int) -> Path:
    args = bench_args(bench, tmp_path, data, epochs)
    table = tmp_path / "out" / "label_efficiency_synthetic_scratch.json"
    table.parent.mkdir()
    run = {"row": "partial_ce/points", "seed": 0, "settings": {}, "val_miou": 0.5}
    table.write_text(json.dumps({"budget": bench.budget(args, (64, 64)), "runs": [run]}))
    return table


def bench_args(bench, tmp_path: Path, data: Path, epochs: int, *extra: str):
    argv = ["--dataset", "synthetic", "--data", str(data), "--image-size", "64,64", "--epochs", str(epochs),
            "--rows", "partial_ce/points", "--seeds", "0", "--out", str(tmp_path / "out"), *extra]  # fmt: skip
    return bench.build_parser().parse_args(argv)


def test_a_table_with_another_budget_is_refused_and_kept(bench, tmp_path):
    data = tmp_path / "data"
    table = write_table(bench, tmp_path, data, epochs=3)
    before = table.read_text()
    with pytest.raises(bench.BenchError, match=r"1 run\(s\) measured with another budget \(epochs 3 -> 2\)"):
        bench.load_doc(table, bench_args(bench, tmp_path, data, 2), (64, 64))
    assert table.read_text() == before
    replaced = bench.load_doc(table, bench_args(bench, tmp_path, data, 2, "--new-table"), (64, 64))
    assert replaced["runs"] == [] and replaced["budget"]["epochs"] == 2


def test_the_same_folder_spelled_another_way_is_the_same_budget(bench, tmp_path, monkeypatch):
    data = tmp_path / "data"
    table = write_table(bench, tmp_path, data, epochs=3)
    monkeypatch.chdir(tmp_path / "out")
    doc = bench.load_doc(table, bench_args(bench, tmp_path, Path("../data"), 3), (64, 64))
    assert [r["row"] for r in doc["runs"]] == ["partial_ce/points"]


def fake_run(row: str, seed: int, miou: float, iou: dict) -> dict:
    return {"row": row, "seed": seed, "supervision": row.split("@")[0].split("/")[1], "settings": {},
            "val_miou": miou, "per_class_iou": iou, "labelled_fraction": 0.01, "clicks_per_image": 3.0,
            "tags_per_image": 2.0, "seconds": 10.0 * (1 + seed)}  # fmt: skip


def test_converged_rows_carry_seeds_interval_and_ratios_to_the_better_reference(bench):
    import numpy as np

    rows = ("supervised/dense", "supervised+balanced/dense", bench.BASELINE, "spml/points@4")
    runs, confusions = [], {}
    for k, row in enumerate(rows):
        for seed in range(3):
            cm = np.zeros((5, 2, 2), dtype=np.int64)  # 5 images, 2 classes: row k is right k+1 times in 5
            cm[:, 0, 0], cm[:, 1, 1], cm[:, 0, 1] = 5 + k, 5, 5 - k
            confusions[bench.confusion_key(row, seed)] = cm
            runs.append(fake_run(row, seed, 0.5 + 0.1 * k, {"a": 0.5 + 0.1 * k, "b": 0.05}))
    doc = {"budget": {"dataset": "camvid", "epochs": 8}, "runs": runs}
    summary = {r["row"]: r for r in bench.summarise(doc, confusions)}
    assert list(summary) == ["supervised/dense", "supervised+balanced/dense", bench.BASELINE, "spml/points@4"]
    spml = summary["spml/points@4"]
    assert spml["seeds"] == [0, 1, 2] and spml["reference"] == "supervised+balanced/dense"
    assert spml["reference_learned_classes"] == ["a"] and spml["ratio_on_learned_classes"] == pytest.approx(0.8 / 0.6)
    gap = spml["difference_to_baseline"]
    assert (
        gap["baseline"] == bench.BASELINE and gap["low"] <= gap["difference"] <= gap["high"] and gap["difference"] > 0
    )
    assert "difference_to_baseline" not in summary[bench.BASELINE]
    assert bench.row_epochs("spml/points@4", bench_args(bench, Path("/tmp"), Path("/tmp"), 8)) == 4
    with pytest.raises(bench.BenchError, match="whole number"):
        bench.row_epochs("spml/points@x", bench_args(bench, Path("/tmp"), Path("/tmp"), 8))

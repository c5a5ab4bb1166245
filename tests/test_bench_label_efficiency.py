"""bench/label_efficiency.py keeps measured runs: a table with another budget is refused, never dropped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "label_efficiency.py"


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

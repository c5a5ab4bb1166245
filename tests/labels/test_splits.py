"""Weak-shot class splits: names or indices, random protocols, identifiability reports, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.cli import main
from workbench.dashboard.session import DashboardSession
from workbench.labels.splits import ClassSplit, SplitError, class_indices, identifiability, random_novel
from workbench.train.evaluation import evaluate_run

CLASSES = ("sky", "grass", "sand", "disc", "square", "triangle", "ring", "cross")


def test_classes_by_name_or_index_with_names_first():
    assert class_indices(CLASSES, "triangle,cross") == (5, 7)
    assert class_indices(CLASSES, "5,7") == class_indices(CLASSES, [7, 5]) == (5, 7)
    assert class_indices(("a", "1", "b"), "1") == (1,)  # a class named "1" wins over index 1
    with pytest.raises(SplitError, match="unknown class name.*'triangel'"):
        class_indices(CLASSES, "triangel")
    with pytest.raises(SplitError, match="outside 0..7"):
        class_indices(CLASSES, "8")


def test_random_protocols_are_fixed_heads_of_seeded_permutations():
    splits = [random_novel(21, 25, k) for k in (1, 2, 3, 4)]
    assert all(len(s) == 5 for s in splits)  # round(25% of 21)
    assert splits == [random_novel(21, 25, k) for k in (1, 2, 3, 4)]  # fixed by the seed
    assert len(set(splits)) == 4  # four different splits
    assert set(splits[3]) <= set(random_novel(21, 30, 4))  # larger shares grow the same permutation
    assert len(random_novel(3, 90, 1)) == 2  # always one base class left
    split = ClassSplit.from_protocol(CLASSES, {}, "random25:2")
    assert split.novel == random_novel(8, 25, 2) and split.name == "random25:2"
    with pytest.raises(SplitError, match="random25:1"):
        ClassSplit.from_protocol(CLASSES, {"objects2": ("triangle",)}, "nope")


def test_identifiability_counts_images_and_confusable_novel_pixels():
    split = ClassSplit(CLASSES, (5, 7))
    one = np.zeros((4, 4), np.uint8)
    one[0] = 5  # 4 novel pixels, one novel class
    two = np.zeros((4, 4), np.uint8)
    two[0], two[1, :2] = 5, 7  # 6 novel pixels, two novel classes
    report = identifiability([one, two, np.zeros((4, 4), np.uint8)], split)
    assert report.by_count == {1: 1, 2: 1, 0: 1}
    assert report.images_with == {"triangle": 2, "cross": 1}
    assert report.confusable_share == pytest.approx(6 / 10)
    assert report.warnings == []
    trivial = identifiability([one, one, one], split)
    assert any("trivially identifiable" in w for w in trivial.warnings)
    assert any("degenerate" in w and "triangle" in w for w in trivial.warnings)  # in 3 of 3 images


def test_cli_reports_every_protocol(synthetic_root, capsys):
    assert main(["data", "protocols", str(synthetic_root), "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    names = [r["protocol"] for r in reports]
    assert names[:2] == ["objects2", "shapes3"] and names[-4:] == [f"random25:{k}" for k in (1, 2, 3, 4)]
    assert sum(reports[0]["images_by_novel_count"].values()) == reports[0]["images"] == 12
    assert main(["data", "protocols", str(synthetic_root), "--protocol", "random25:9"]) == 0
    assert main(["data", "protocols", str(synthetic_root), "--protocol", "nope"]) == 2


@pytest.mark.parametrize("method", ["simformer", "transfer"])
@pytest.mark.parametrize("how", ["--novel=triangle,cross", "--novel=5,7", "--protocol=objects2"])
def test_weak_shot_runs_take_names_or_indices_and_store_names(method, how, synthetic_root, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--method", method, "--data", str(synthetic_root), "--out", str(out), "--epochs", "1"]
    assert main(args + [how, "--batch_size=4", "--log_every=1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["novel"] == ["triangle", "cross"]
    assert tuple(cfg["method_config"]["novel"]) == (5, 7)
    assert evaluate_run(out, synthetic_root)["novel_classes"] == ["triangle", "cross"]
    session = DashboardSession.open(data=synthetic_root, run=out, out=tmp_path / "dash")
    try:  # the dashboard opens every weak-shot run and knows its novel classes
        assert session.novel == (5, 7)
    finally:
        session.close()


def test_old_runs_with_novel_indices_still_evaluate(synthetic_root, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--method", "supervised", "--data", str(synthetic_root), "--out", str(out), "--epochs", "1"]
    assert main(args + ["--novel=cross", "--batch_size=4"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(cfg | {"novel": [7]}))  # as runs stored it before
    assert evaluate_run(out, synthetic_root)["novel_classes"] == ["cross"]

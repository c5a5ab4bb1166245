"""Bad inputs of workbench.labels.splits: unknown weak-shot protocols and class names, impossible splits."""

from __future__ import annotations

import re

import pytest

from workbench.cli import main
from workbench.labels.splits import SplitError


@pytest.mark.parametrize(
    "setting, message",
    [
        ("--protocol=nonexistent", r"unknown weak-shot protocol 'nonexistent'; dataset\.json defines"),
        ("--novel=disc,unicorn", r"unknown class name\(s\) \['unicorn'\]; the dataset's classes are"),
        ("--protocol=random25:100000000", r"random protocol split must be in 1\.\.10000"),  # was a hang (issue 25)
    ],
)
def test_unknown_protocols_and_class_names_stop_training_before_it_writes(
    synthetic_root, tmp_path, capsys, setting, message
):
    out = tmp_path / "run"
    args = ["train", "--method", "partial_ce", "--data", str(synthetic_root), "--out", str(out), "--epochs", "1"]
    assert main([*args, setting]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_class_split_errors_are_split_errors():
    from workbench.labels.splits import ClassSplit

    with pytest.raises(SplitError, match="every class is novel"):
        ClassSplit(("a", "b"), (0, 1))


def test_a_huge_random_split_is_refused_at_once_in_data_protocols(synthetic_root, capsys):
    """``data protocols --protocol random25:100000000`` drew 10^8 permutations (a hang, issue 25)."""
    assert main(["data", "protocols", str(synthetic_root), "--protocol", "random25:100000000"]) == 2
    assert "must be in 1..10000" in capsys.readouterr().err

"""Bad inputs of workbench.train.loop (and its data setup, workbench.train.data): non-finite losses,
unreachable pretrained weights, weak labels that match no image, a corrupt image mid-run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from tests.bad_inputs import CORRUPT, _tiny
from workbench.cli import main
from workbench.data.folder import DatasetError, list_split, load_dataset_info
from workbench.labels.weak_labels import (
    Point,
    WeakLabelError,
    WeakLabels,
    WeakLabelSet,
    save_weak_labels,
)
from workbench.methods import partial_ce
from workbench.modeling.backbones import ModelError
from workbench.train import checkpoint as ckpt
from workbench.train.checkpoint import MODEL_FILE, STATE_FILE
from workbench.train.config import TrainConfig, TrainingError
from workbench.train.loop import train


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files an interrupted atomic write would leave."""
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


def test_training_on_a_corrupt_image_names_it_and_leaves_no_checkpoint(dataset, tmp_path):
    info = load_dataset_info(dataset)
    name = list_split(info, "train")[1]
    info.image_path("train", name).write_bytes(CORRUPT["truncated png"])
    config = TrainConfig(data=str(dataset), out=str(tmp_path / "run"), epochs=1, batch_size=4, limit_train=4)
    with pytest.raises(DatasetError, match=rf"{name}\.png: unreadable or corrupt image"):
        train(partial_ce, partial_ce.Config(), config)
    assert not (tmp_path / "run" / MODEL_FILE).exists() and not _leftovers(tmp_path)


def test_a_nan_loss_stops_training_naming_the_step_and_the_cause(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"NaN or infinite .*epoch 1\).*lr=1e\+30 is far too high"):
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out, lr=1e30, epochs=2, limit_train=8))
    assert not (out / STATE_FILE).exists() and not (out / "report.json").exists(), "a NaN model was saved"
    assert all(math.isfinite(r.get("loss", 0.0)) for r in ckpt.read_jsonl(out / "metrics.jsonl")), "NaN was logged"
    args = ["train", "--method", "partial_ce", "--data", str(synthetic_root), "--out", str(tmp_path / "cli")]
    assert main([*args, "--lr=1e30", "--epochs=1", "--batch_size=4", "--limit_train=8"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"at step \d+ \(epoch 1\)", err) and "Traceback" not in err


def test_the_first_non_finite_step_is_named(synthetic_root, tmp_path, monkeypatch):
    real_step = partial_ce.training_step
    calls = iter(range(100))

    def nan_at_third_step(model, batch, config):
        out = real_step(model, batch, config)
        if next(calls) == 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(partial_ce, "training_step", nan_at_third_step)
    with pytest.raises(TrainingError, match=r"loss became NaN or infinite at step 3 \(epoch 1\)"):
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, tmp_path / "run", limit_train=None, log_every=50))


def test_weak_labels_naming_no_image_are_an_error(synthetic_root, tmp_path):
    classes = load_dataset_info(synthetic_root).classes
    path = tmp_path / "weak.json"
    save_weak_labels(path, WeakLabelSet(classes, {"not_an_image": WeakLabels(32, 32, frozenset({1}))}))
    with pytest.raises(WeakLabelError, match=r"none of its 1 labelled images is in split 'train'.*'not_an_image'"):
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, tmp_path / "run", weak_labels=str(path)))
    assert not (tmp_path / "run").exists()


def test_partial_weak_label_matches_are_reported_with_counts(synthetic_root, tmp_path, capsys):
    info = load_dataset_info(synthetic_root)
    names = list_split(info, "train")[:4]
    labels = {n: WeakLabels(32, 32, frozenset({0}), (Point(3, 3, 0),)) for n in names[:2]}
    labels.update({"stray_1": WeakLabels(32, 32), "stray_2": WeakLabels(32, 32)})
    path = tmp_path / "weak.json"
    save_weak_labels(path, WeakLabelSet(info.classes, labels))
    out = tmp_path / "run"
    train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, out, weak_labels=str(path), supervision="points"))
    expected = "labels for 2 of 4 train images; 2 names match no image of the split (e.g. 'stray_1')"
    assert expected in capsys.readouterr().err
    assert any(expected in r.get("message", "") for r in ckpt.read_jsonl(out / "metrics.jsonl"))


def test_pretrained_weights_without_network_are_a_clear_error(synthetic_root, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno 111] Connection refused")  # what requests / huggingface_hub raise offline

    monkeypatch.setattr(partial_ce, "build", offline)
    config = _tiny(synthetic_root, tmp_path / "run", encoder_weights="imagenet")
    with pytest.raises(ModelError, match="encoder_weights='imagenet': could not fetch.*encoder_weights=None"):
        train(partial_ce, partial_ce.Config(), config)
    with pytest.raises(OSError):  # without pretrained weights an OSError is not a network problem: not relabelled
        train(partial_ce, partial_ce.Config(), _tiny(synthetic_root, tmp_path / "run"))

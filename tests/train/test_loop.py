"""The training loop end to end on the tiny synthetic dataset: run directory, resume, evaluation, prediction."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from workbench.data.folder import load_dataset_info
from workbench.labels.splits import SplitError
from workbench.methods import partial_ce, supervised
from workbench.train import checkpoint as ckpt
from workbench.train.config import ConfigError, TrainConfig
from workbench.train.data import make_datasets
from workbench.train.evaluation import evaluate_run, predict_files, predict_split
from workbench.train.loop import train
from workbench.train.runs import load_run


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    """One epoch of three batches of four 32x32 images, on the CPU so that runs repeat exactly."""
    base = TrainConfig(data=str(data), out=str(out), epochs=1, batch_size=4, log_every=1, device="cpu")
    return replace(base, **changes)


SMALL = {"encoder": "mobilenet_v2", "limit_train": 8}  # half the weights to checkpoint, two batches an epoch


@pytest.fixture(scope="module")
def trained_run(synthetic_root, module_dir) -> tuple[Path, dict]:
    config = tiny_config(synthetic_root, module_dir / "run", supervision="points")
    records = []
    summary = train(partial_ce, partial_ce.Config(), config, on_log=records.append)
    return Path(config.out), {"summary": summary, "records": records}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / ckpt.MODEL_FILE))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def epoch_records(run_dir: Path) -> list[dict]:
    return [r for r in ckpt.read_jsonl(run_dir / "metrics.jsonl") if "seconds" in r]


# ----------------------------------------------------------------------------- the run directory


def test_train_writes_the_run_directory(trained_run, synthetic_root):
    run_dir, result = trained_run
    for name in ("config.json", "metrics.jsonl", ckpt.MODEL_FILE, ckpt.STATE_FILE, "report.json", "report.md"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["method"] == "partial_ce" and config["supervision"] == "points"
    assert config["image_size"] == [32, 32]
    assert config["dataset"]["classes"] == list(load_dataset_info(synthetic_root).classes)
    assert config["train_config"]["epochs"] == 1


def test_metrics_log_steps_epochs_and_the_end(trained_run):
    run_dir, result = trained_run
    records = ckpt.read_jsonl(run_dir / "metrics.jsonl")
    assert records == result["records"]  # on_log sees exactly what is written
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]  # 12 images, batch 4, log_every 1
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in steps)
    (epoch,) = epoch_records(run_dir)
    assert epoch["epoch"] == 1 and epoch["images_per_s"] > 0 and 0 < epoch["train_labelled_frac"] < 0.2
    assert records[-1]["event"] == "done" and records[-1]["val_miou"] == result["summary"]["miou"]


def test_report_holds_the_returned_summary(trained_run):
    run_dir, result = trained_run
    report = json.loads((run_dir / "report.json").read_text())
    summary = result["summary"]
    assert report["miou"] == summary["miou"] and 0 <= summary["miou"] <= 1
    assert set(report["per_class_iou"]) == set(summary["per_class_iou"])
    assert np.array(report["confusion_matrix"]).sum() == 4 * 32 * 32  # every val pixel, none void
    assert "mIoU" in (run_dir / "report.md").read_text()


def test_evaluate_run_reproduces_the_report(trained_run, synthetic_root):
    run_dir, _ = trained_run
    report = json.loads((run_dir / "report.json").read_text())
    again = evaluate_run(run_dir, synthetic_root, "val", device="cpu")
    assert again["miou"] == pytest.approx(report["miou"], abs=1e-12)
    assert again["confusion_matrix"] == report["confusion_matrix"]


def test_load_run_from_the_directory_or_the_weights_file(trained_run):
    run_dir, _ = trained_run
    method, model, config = load_run(run_dir / ckpt.MODEL_FILE, device="cpu")
    assert method is partial_ce and not model.training
    assert config == json.loads((run_dir / "config.json").read_text())
    reference = weights(run_dir)
    assert max_difference({k: v for k, v in model.state_dict().items() if k in reference}, reference) == 0.0


def test_predict_writes_palette_pngs_of_the_image_size(trained_run, synthetic_root, tmp_path):
    run_dir, _ = trained_run
    info = load_dataset_info(synthetic_root)
    odd = tmp_path / "odd.png"  # another size than the training images: predictions come back at this size
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 24, 3), dtype=np.uint8)).save(odd)
    (written,) = predict_files(run_dir, [odd], tmp_path / "pred", device="cpu")
    with Image.open(written) as png:
        assert png.mode == "P" and png.size == (24, 40)
        assert np.asarray(png).max() < info.num_classes
        assert png.getpalette()[:6] == [*info.colors[0], *info.colors[1]]
    paths = predict_split(run_dir, synthetic_root, "val", tmp_path / "val", device="cpu")
    assert sorted(p.name for p in paths) == [f"val_{i:04d}.png" for i in range(4)]
    assert all(np.asarray(Image.open(p)).shape == (32, 32) for p in paths)


# ----------------------------------------------------------------------------- resume


def test_resume_with_more_epochs_trains_only_the_new_ones(synthetic_root, tmp_path):
    config = tiny_config(synthetic_root, tmp_path / "run", supervision="points", **SMALL)
    train(partial_ce, partial_ce.Config(), config)
    after_one = weights(Path(config.out))
    train(partial_ce, partial_ce.Config(), replace(config, epochs=2, resume=True))
    records = ckpt.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in epoch_records(tmp_path / "run")] == [1, 2]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # epoch 2 only: steps 3 and 4
    assert max_difference(weights(tmp_path / "run"), after_one) > 0


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(synthetic_root, tmp_path):
    """Stopped at the start of epoch 2, then resumed: the same weights as a run that never stopped.

    Measured on CPU: the weights are bit-identical (difference 0.0); the tolerance leaves room for
    other thread counts only.
    """
    config = tiny_config(
        synthetic_root, tmp_path / "straight", epochs=2, supervision="points", scale_min=0.8, scale_max=1.25, **SMALL
    )
    train(partial_ce, partial_ce.Config(), config)

    polls = iter(range(100))  # two batches per epoch: the third poll is the first of epoch 2
    interrupted = replace(config, out=str(tmp_path / "interrupted"))
    stopped = train(partial_ce, partial_ce.Config(), interrupted, should_stop=lambda: next(polls) >= 2)
    assert stopped == {"stopped": True, "epoch": 1, "step": 2}
    assert not (tmp_path / "interrupted" / "report.json").exists()
    train(partial_ce, partial_ce.Config(), replace(interrupted, resume=True))

    assert max_difference(weights(tmp_path / "straight"), weights(tmp_path / "interrupted")) <= 1e-6
    assert [r["epoch"] for r in epoch_records(tmp_path / "interrupted")] == [1, 2]


# ----------------------------------------------------------------------------- weak-shot and configuration


def test_weak_shot_run_reports_base_novel_and_harmonic(synthetic_root, tmp_path):
    config = tiny_config(synthetic_root, tmp_path / "run", protocol="objects2", limit_train=8)
    summary = train(supervised, supervised.Config(), config)
    assert summary["novel_classes"] == ["triangle", "cross"]
    for key in ("base_miou", "novel_miou", "harmonic_miou"):
        assert key in summary
    assert json.loads((tmp_path / "run" / "config.json").read_text())["novel"] == ["triangle", "cross"]


def test_training_datasets_follow_the_config(synthetic_root, tmp_path):
    config = tiny_config(synthetic_root, tmp_path / "run", image_size=(16, 24), limit_train=5, limit_val=2)
    train_ds, val_ds = make_datasets(partial_ce, replace(config, supervision="scribbles"))
    assert (len(train_ds), len(val_ds)) == (5, 2) and train_ds.size == val_ds.size == (16, 24)
    assert train_ds.kinds == ("scribbles",) and val_ds.include_gt and not train_ds.include_gt
    assert train_ds[0]["label"].shape == (16, 24)
    assert make_datasets(partial_ce, config)[0].kinds == ("points",)  # the method's first supervision kind


def test_bad_configurations_raise_named_errors(synthetic_root, tmp_path):
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="either protocol or novel"):
        TrainConfig(protocol="objects2", novel="disc")
    with pytest.raises(ConfigError, match=r"does not learn from \['points'\]"):
        make_datasets(supervised, tiny_config(synthetic_root, tmp_path, supervision="points"))
    with pytest.raises(SplitError, match="unknown weak-shot protocol 'nope'.*objects2"):
        make_datasets(supervised, tiny_config(synthetic_root, tmp_path, protocol="nope"))


# ----------------------------------------------------------------------------- tune split, light decoder, curves


def test_tuning_on_tune_trains_on_train_without_it(synthetic_root, tmp_path):
    config = tiny_config(synthetic_root, tmp_path / "run", train_split="train-tune", val_split="tune")
    train_ds, tune_ds = make_datasets(supervised, config)
    assert len(train_ds) + len(tune_ds) == 12 and not set(train_ds.names) & set(tune_ds.names)
    with pytest.raises(ConfigError, match="use train_split=train-tune with val_split=tune"):
        replace(config, train_split="train")


def test_a_light_decoder_run_reloads_with_its_widths(synthetic_root, tmp_path):
    light = (32, 16, 8, 8, 4)
    config = tiny_config(synthetic_root, tmp_path / "run", decoder_channels=light, channels_last=True, **SMALL)
    train(supervised, supervised.Config(), config)
    _, model, cfg = load_run(config.out)
    assert cfg["train_config"]["decoder_channels"] == list(light)
    assert [b.conv2[0].out_channels for b in model.decoder.blocks] == list(light)


def test_curve_scores_at_the_working_size_and_the_last_at_full_size(synthetic_root, tmp_path):
    from workbench.train.config import pick_device
    from workbench.train.evaluation import evaluate

    config = tiny_config(synthetic_root, tmp_path / "run", image_size=(16, 16), **SMALL)
    model = supervised.build(8, supervised.Config(), config.backbone)
    val_ds = make_datasets(supervised, config)[1]
    full = evaluate(supervised, model, val_ds, pick_device("cpu"))
    small = evaluate(supervised, model, val_ds, pick_device("cpu"), full_resolution=False)
    labelled_full = sum(int((val_ds.full_mask(i) < 8).sum()) for i in range(len(val_ds)))
    labelled_small = sum(int((val_ds[i]["mask"] < 8).sum()) for i in range(len(val_ds)))
    assert np.sum(full["confusion_matrix"]) == labelled_full and labelled_full > 4 * 16 * 16
    assert np.sum(small["confusion_matrix"]) == labelled_small <= 4 * 16 * 16


def test_pseudo_label_diagnostics_are_logged_over_training_not_only_at_the_end(quick_config):
    """Issue 31 ask 5: single_stage's pseudo-label precision and coverage against ground truth at every
    validation of the learning curve (diag_* of the epoch records), and on all training images at the end."""
    from workbench.methods import single_stage
    from workbench.train.checkpoint import read_jsonl

    config = replace(quick_config, supervision="points", epochs=3, eval_every=1)
    summary = train(single_stage, single_stage.Config(), config)
    epochs = [r for r in read_jsonl(Path(config.out) / "metrics.jsonl") if "val_miou" in r and "epoch" in r]
    curve = [r for r in epochs if "diag_pseudo_precision" in r]
    assert [r["epoch"] for r in curve] == [1, 2]  # every validation before the last epoch
    assert all(0.0 <= r["diag_pseudo_precision"] <= 1.0 and 0.0 <= r["diag_pseudo_coverage"] <= 1.0 for r in curve)
    assert "pseudo_precision" in summary["train_diagnostics"]
    plain = train(partial_ce, partial_ce.Config(), replace(config, out=config.out + "-pce", supervision="points"))
    assert "train_diagnostics" not in plain  # a method without the hook logs none

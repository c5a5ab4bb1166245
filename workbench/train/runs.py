"""A run directory's identity and resume, its ``config.json`` and report, and loading a trained run back.

The files themselves (locks, checkpoints, ownership of the folder) are :mod:`workbench.train.checkpoint`'s.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from workbench.data.folder import DatasetInfo
from workbench.io import atomic_write_text
from workbench.methods import METHODS, KeepsTrainingState
from workbench.metrics import format_summary
from workbench.modeling.backbones import Backbone
from workbench.train import checkpoint as ckpt
from workbench.train.config import MAX_IMAGE_SIDE, ConfigError, TrainConfig, check_numbers, pick_device

# TrainConfig fields a resumed run may change: where things are, how it is logged and run, how long it goes.
RESUME_MAY_CHANGE = {
    "data", "out", "weak_labels", "synthetic_root", "epochs", "resume", "overwrite", "device", "num_workers",
    "log_every", "eval_every", "curve_at_working_size", "compile", "limit_val", "val_split",
}  # fmt: skip


def run_identity(method: ModuleType, method_config, config: TrainConfig, fingerprint: str) -> dict:
    """What a checkpoint must agree with to be resumed: the method, its settings, the run settings, the data."""
    train_config = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUME_MAY_CHANGE}
    return json.loads(json.dumps({
        "method": method.__name__.rsplit(".", 1)[-1], "method_config": dataclasses.asdict(method_config),
        "train_config": train_config, "data_fingerprint": fingerprint,
    }))  # fmt: skip


def check_resume_identity(saved: dict, current: dict, run_dir: Path) -> None:
    """Refuse to resume a checkpoint made with another method, settings or data, naming the field."""
    fix = "resume with the checkpoint's value, or start a new run (--overwrite, or another --out)"
    if saved["method"] != current["method"]:
        raise ConfigError(f"--resume: {run_dir} holds a {saved['method']} run, not {current['method']}; {fix}")
    for section in ("method_config", "train_config"):
        for key in sorted(set(saved[section]) | set(current[section])):
            old, new = saved[section].get(key), current[section].get(key)
            if old != new:
                raise ConfigError(f"--resume: {key} is {new!r} now but {old!r} in the checkpoint of {run_dir}; {fix}")
    if saved["data_fingerprint"] != current["data_fingerprint"]:
        raise ConfigError(
            f"--resume: the training data differ from the checkpoint's (data fingerprint {current['data_fingerprint']}"
            f" vs {saved['data_fingerprint']}: other images, masks or weak labels); {fix}"
        )


def model_extra_state(model: nn.Module) -> dict:
    """Training state a model keeps outside its weights: non-persistent buffers and a method's
    :class:`KeepsTrainingState` (e.g. spml's memory bank); saved in the train state for an exact resume."""
    buffers = {name: b.detach().cpu().clone() for name, b in model.named_buffers()}
    extra = model.resume_state() if isinstance(model, KeepsTrainingState) else {}
    return {"buffers": buffers, "method": extra}


def load_model_extra_state(model: nn.Module, state: dict) -> None:
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name in state.get("buffers", {}):
                buffer.copy_(state["buffers"][name])
    if isinstance(model, KeepsTrainingState):
        model.load_resume_state(state.get("method", {}))


def resume(run_dir: Path, model: nn.Module, optimizer, scheduler, identity: dict | None = None) -> int:
    """Load the last checkpoint of ``run_dir`` into model, optimizer and scheduler; return the next epoch.

    The checkpoint must come from the same method, settings and data as ``identity``.
    """
    state = ckpt.load_train_state(run_dir)
    if state is None:
        raise ckpt.CheckpointError(f"{run_dir}: no {ckpt.STATE_FILE} to resume from; drop --resume to start a new run")
    if identity is not None and "run" in state:
        check_resume_identity(json.loads(state["run"]), identity, run_dir)
    ckpt.load_weights(model, state.get("model", run_dir / ckpt.MODEL_FILE))  # the copy in step with the optimizer
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(replanned(state["scheduler"], scheduler))
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"], next(model.parameters()).device)
    if "model_extra" in state:
        load_model_extra_state(model, state["model_extra"])
    return int(state["epoch"])


def forget_after(log: Path, step: int) -> None:
    """Drop the records a killed run wrote after its checkpoint: the resumed run repeats those steps."""
    if log.exists():
        kept = [r for r in ckpt.read_jsonl(log) if r.get("step", 0) <= step]
        atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))


def replanned(saved: dict, scheduler) -> dict:
    """The saved one-cycle state, laid out over the current total steps when the epoch budget changed.

    Resuming a 1-epoch run with ``epochs=2`` keeps the steps done and the optimizer state and
    continues on the one-cycle schedule of the new length (the learning rate moves onto it).
    """
    fresh = scheduler.state_dict()
    if saved.get("total_steps") == fresh["total_steps"]:
        return saved
    return {**saved, "total_steps": fresh["total_steps"], "_schedule_phases": fresh["_schedule_phases"]}


def run_config(method, method_config, config: TrainConfig, info: DatasetInfo, split, train_ds) -> dict:
    """What ``config.json`` holds: enough to rebuild the model and to read its predictions."""
    return {
        "method": method.__name__.rsplit(".", 1)[-1],
        "method_config": dataclasses.asdict(method_config),
        "train_config": dataclasses.asdict(config),
        "supervision": "+".join(train_ds.kinds),
        "image_size": list(train_ds.size),
        "dataset": {"root": str(info.root), "name": info.name, "classes": list(info.classes),
                    "colors": [list(c) for c in info.colors]},
        "novel": list(split.novel_names) if split else [],  # names; runs before issue 14 hold indices
        "protocol": split.name if split else None,
    }  # fmt: skip


def write_report(run_dir: Path, summary: dict, title: str) -> None:
    atomic_write_text(run_dir / "report.json", json.dumps(summary, indent=1))
    table = format_summary(summary)
    extra = ""
    if summary.get("train_diagnostics"):
        rows = "\n".join(f"{k:<24} {v:.4f}" for k, v in summary["train_diagnostics"].items())
        extra = f"\n## Training images (diagnostics against ground truth, not a training signal)\n\n```\n{rows}\n```\n"
    atomic_write_text(run_dir / "report.md", f"# Evaluation: {title}\n\n```\n{table}\n```\n{extra}")


def method_config_from_json(method: ModuleType, fields: dict):
    """``method.Config`` from its ``config.json`` dict: JSON hands tuples back as lists, frozen configs want tuples."""

    def tuples(value):
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    return method.Config(**{k: tuples(v) for k, v in fields.items()})


def load_run(path: str | Path, device: str = "auto") -> tuple[ModuleType, nn.Module, dict]:
    """``(method module, model with weights, config.json dict)`` of a run directory or weights file."""

    run_dir, weights = ckpt.resolve_run(path)
    cfg = ckpt.read_run_config(run_dir)
    method, method_config = check_run_config(cfg, run_dir / ckpt.CONFIG_FILE)
    tc = cfg["train_config"]
    decoder = tuple(tc["decoder_channels"]) if tc.get("decoder_channels") else None  # absent in older runs
    backbone = Backbone(tc["arch"], tc["encoder"], None, decoder)
    model = method.build(len(cfg["dataset"]["classes"]), method_config, backbone)
    ckpt.load_weights(model, weights)
    return method, model.to(pick_device(device)).eval(), cfg


def check_run_config(cfg, where: Path) -> tuple[ModuleType, object]:
    """``(method, method config)`` of a run's ``config.json``, every field checked: a hand-edited
    file gets an error naming the field instead of a traceback far from it."""
    fix = "restore the config.json that `train` wrote (or retrain)"

    def bad(what: str) -> ckpt.CheckpointError:
        return ckpt.CheckpointError(f"{where}: {what}; {fix}")

    if not isinstance(cfg, dict):
        raise bad("must hold a JSON object")
    for key, typ in (("method", str), ("method_config", dict), ("train_config", dict), ("dataset", dict),
                     ("image_size", list)):  # fmt: skip
        if not isinstance(cfg.get(key), typ):
            raise bad(f"'{key}' is missing or not a {typ.__name__}")
    if cfg["method"] not in METHODS:
        raise bad(f"unknown method {cfg['method']!r}; known: {sorted(METHODS)}")
    method = METHODS[cfg["method"]]
    try:
        method_config = method_config_from_json(method, cfg["method_config"])
        check_numbers(method_config)
    except (TypeError, ValueError) as err:
        raise bad(f"method_config does not fit method {cfg['method']} ({err})") from None
    tc = cfg["train_config"]
    if not all(isinstance(tc.get(k), str) for k in ("arch", "encoder")):
        raise bad("train_config needs 'arch' and 'encoder' names")
    size = cfg["image_size"]
    if len(size) != 2 or not all(type(v) is int and 8 <= v <= MAX_IMAGE_SIDE for v in size):
        raise bad(f"image_size must be [height, width] of 8..{MAX_IMAGE_SIDE} pixels, got {size}")
    classes, colors = cfg["dataset"].get("classes"), cfg["dataset"].get("colors")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("dataset.classes must be a non-empty list of class names")
    if (
        not isinstance(colors, list)
        or len(colors) != len(classes)
        or not all(
            isinstance(c, list) and len(c) == 3 and all(type(v) is int and 0 <= v <= 255 for v in c) for c in colors
        )
    ):
        raise bad(f"dataset.colors must be {len(classes)} [r, g, b] lists of ints 0..255, one per class")
    return method, method_config

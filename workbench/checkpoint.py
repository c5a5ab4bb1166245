"""Run directories and checkpoints.

A run directory holds::

    config.json                    method, method config, train config, classes, colors
    metrics.jsonl                  one JSON record per logged step and per epoch
    checkpoint/model.safetensors   model weights (no pickle)
    checkpoint/train_state.pt      optimizer, scheduler, epoch, RNG and a copy of the weights
                                   (read with weights_only=True)
    report.json, report.md         the final evaluation

Every file is written atomically; loading never unpickles code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workbench.io import atomic_path, atomic_write_text

MODEL_FILE = "checkpoint/model.safetensors"
STATE_FILE = "checkpoint/train_state.pt"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (the message says why)."""


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one line; a line is written in one call so a crash leaves whole lines only."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a metrics file; a torn last line (crash mid-write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_config(run_dir: Path, config: dict) -> None:
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config, indent=1))


def save_checkpoint(run_dir: Path, model: nn.Module, train_state: dict | None = None) -> None:
    """Weights as safetensors, optimizer/scheduler/epoch/RNG as a weights-only torch file.

    The train state holds its own copy of the weights under ``"model"``: the two files are
    renamed into place one after the other, and a kill between the renames must not pair new
    weights with the old optimizer state when training resumes.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        save_file(_untie(state), str(tmp))
    if train_state is not None:
        with atomic_path(run_dir / STATE_FILE) as tmp:
            torch.save({**train_state, "model": state}, tmp)


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: give each its own copy."""
    seen, out = set(), {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        out[k] = v.clone() if ptr in seen else v
        if ptr is not None:
            seen.add(ptr)
    return out


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """``(run_dir, weights_file)`` from a run directory or a weights file inside one."""
    path = Path(path)
    if path.is_dir():
        weights = path / MODEL_FILE
        run_dir = path
    else:
        weights = path
        run_dir = path.parent.parent if path.parent.name == "checkpoint" else path.parent
    if not weights.is_file():
        raise CheckpointError(
            f"{path}: no checkpoint there (looked for {weights}); pass a run directory written by `train`"
        )
    if not (run_dir / CONFIG_FILE).is_file():
        raise CheckpointError(f"{run_dir / CONFIG_FILE}: missing; a checkpoint needs the config.json written beside it")
    return run_dir, weights


def read_run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable run config ({err})") from None


def load_weights(model: nn.Module, weights: str | Path | dict[str, torch.Tensor]) -> None:
    """Load safetensors weights (or a train state's ``"model"`` dict), with a clear error for
    another architecture or class count."""
    if isinstance(weights, dict):
        state, weights = weights, "the training state's weights"
    else:
        try:
            state = load_file(str(weights))
        except Exception as err:  # noqa: BLE001 - any reader failure means "not a usable checkpoint"
            raise CheckpointError(f"{weights}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if mismatched or missing or unexpected:
        detail = (
            f"shape mismatch in {mismatched[0]}: checkpoint {tuple(state[mismatched[0]].shape)} vs model "
            f"{tuple(own[mismatched[0]].shape)}"
            if mismatched
            else f"{len(missing)} missing and {len(unexpected)} unexpected keys"
        )
        raise CheckpointError(
            f"{weights}: checkpoint does not fit this model ({detail}); it was trained with another "
            "architecture, encoder or class count: build the model from its config.json"
        )
    model.load_state_dict(state)


def load_train_state(run_dir: Path) -> dict | None:
    """The optimizer/scheduler/epoch/RNG state, or None; tensors and plain containers only (never code)."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: unreadable training state ({type(err).__name__}: {_reason(err)}); it is refused, not "
            "unpickled: delete it to start over"
        ) from None


def _reason(err: Exception) -> str:
    """The useful line of an error: torch's weights-only refusal buries it under advice to unpickle."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    return " ".join(text.split("\n\n", 1)[0].split()) or type(err).__name__

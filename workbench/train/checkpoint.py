"""Run directories and checkpoints.

A run directory holds::

    config.json                    method, method config, train config, classes, colors
    metrics.jsonl                  one JSON record per logged step and per epoch
    checkpoint/model.safetensors   model weights (no pickle)
    checkpoint/train_state.pt      optimizer, scheduler, epoch, RNG and a copy of the weights
                                   (read with weights_only=True)
    report.json, report.md         the final evaluation
    .lock                          the pid of the process training into it (locked while it runs)
    .workbench-owned.json          the marker saying the workbench created this run (workbench.ownership)

A run directory belongs to one run: :class:`RunLock` keeps a second process out while one
trains, and :func:`claim_run_dir` refuses a folder holding another run unless told to
overwrite it, and refuses run-like files the workbench did not write even then. Every file
is written atomically; loading never unpickles code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workbench.io import atomic_path, atomic_write_text
from workbench.ownership import MARKER, folder_entries, read_marker, shown, write_marker

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "checkpoint/model.safetensors"
STATE_FILE = "checkpoint/train_state.pt"
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
RUN_FILES = (CONFIG_FILE, "metrics.jsonl", CHECKPOINT_DIR, "report.json", "report.md")  # what makes a folder a run
RUN_KIND = "run"  # the kind in a run's ownership marker (workbench.ownership.MARKER)
RUN_CONFIG_KEYS = {"method": str, "method_config": dict, "train_config": dict, "dataset": dict}  # runs.run_config
TENSORBOARD_EVENTS = "events.out.tfevents.*"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, the ownership check still applies
    fcntl = None  # type: ignore[assignment]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (the message says why)."""


class RunBusyError(CheckpointError):
    """Another live process is training into the same run directory."""


class RunLock:
    """An exclusive lock on a run directory while one process trains into it.

    ``flock`` on ``run_dir/.lock``: the kernel drops it when its holder dies, so the lock of a
    killed run is taken over without any cleanup; the file holds the holder's pid for the message.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        check_out_dir(self.run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(
                f"{self.run_dir}: cannot create the run directory ({err}); choose another --out"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self.path.read_text().strip() or "unknown"
                os.close(fd)
                raise RunBusyError(
                    f"{self.run_dir}: another training process (pid {holder}) is writing this run directory; "
                    "wait for it to finish or stop it, or choose another --out"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking it would race a waiter)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_out_dir(run_dir: str | Path) -> None:
    """``run_dir`` must be a folder or not exist yet (nor may any of its parents be a file)."""
    run_dir = Path(run_dir)
    for p in (run_dir, *run_dir.parents):
        if p.exists() and not p.is_dir():
            raise CheckpointError(f"{p}: is a file, not a folder; pass a folder (new or holding a run) as --out")


def run_files(run_dir: str | Path) -> list[str]:
    """The files of a run found in ``run_dir`` (empty: a new or unrelated folder), TensorBoard's event files included."""
    run_dir = Path(run_dir)
    events = sorted(p.name for p in run_dir.glob(TENSORBOARD_EVENTS)) if run_dir.is_dir() else []
    return [name for name in RUN_FILES if (run_dir / name).exists()] + events


def check_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> list[str]:
    """Check that a run may write ``run_dir`` (writing nothing); returns the old run's files ``overwrite`` replaces.

    Run-like files in a folder the workbench did not make a run of are refused either way: ``overwrite``
    deletes only a run whose marker (:func:`mark_run_dir`) or config.json says the engine wrote it.
    """
    run_dir = Path(run_dir)
    check_out_dir(run_dir)
    if resume:
        if not (run_dir / STATE_FILE).is_file():
            raise CheckpointError(
                f"{run_dir}: nothing to resume (no {STATE_FILE}: the run never finished an epoch or the folder holds "
                "no run); drop --resume to start a new run"
            )
        return []
    found = run_files(run_dir)
    if not found:
        return []
    if not is_workbench_run(run_dir):
        raise CheckpointError(
            f"{run_dir}: holds {shown(found)} but is not a run the workbench created (no {MARKER}, and no "
            "config.json the engine wrote); nothing there is deleted: delete those files yourself, or choose "
            "another --out"
        )
    if not overwrite:
        raise CheckpointError(
            f"{run_dir}: holds another run ({shown(found)}); pass --overwrite to replace it, --resume to "
            "continue it, or choose another --out"
        )
    foreign = foreign_run_entries(run_dir, found)
    if foreign:
        raise CheckpointError(
            f"{run_dir}: the old run's folder also holds what the workbench did not write ({shown(foreign)}); "
            "--overwrite would delete it: move it out, or choose another --out"
        )
    return found


def claim_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Check that a run may write ``run_dir`` (:func:`check_run_dir`); with ``overwrite``, delete the old run's files.

    Call it holding the :class:`RunLock` (the deletion must not race the old run), and call
    :func:`check_run_dir` before slow setup to fail early.
    """
    for name in check_run_dir(run_dir, resume, overwrite):
        target = Path(run_dir) / name
        if target.is_dir():
            shutil.rmtree(target)  # checkpoint/: checked to hold the workbench's files only
        else:
            target.unlink()


def mark_run_dir(run_dir: str | Path) -> None:
    """Record that the workbench created the run in ``run_dir`` (the marker says what ``--overwrite`` may delete)."""
    write_marker(run_dir, RUN_KIND, RUN_FILES)


def is_workbench_run(run_dir: str | Path) -> bool:
    """The workbench created this run: its marker says so, or (runs from before the marker) its config.json
    is one :func:`write_config` wrote (method, method and train config, dataset)."""
    run_dir = Path(run_dir)
    if read_marker(run_dir, RUN_KIND) is not None:
        return True
    path = run_dir / CONFIG_FILE
    try:
        doc = json.loads(path.read_text()) if path.is_file() and not path.is_symlink() else None
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and all(isinstance(doc.get(k), t) for k, t in RUN_CONFIG_KEYS.items())


def foreign_run_entries(run_dir: Path, found: list[str]) -> list[str]:
    """What, among a workbench run's files, the workbench did not write: links, and foreign files in checkpoint/."""
    checkpoint = run_dir / CHECKPOINT_DIR
    foreign = [n for n in found if (run_dir / n).is_symlink() or (n == CHECKPOINT_DIR and not checkpoint.is_dir())]
    if CHECKPOINT_DIR in found and not foreign:
        own = {Path(MODEL_FILE).name, Path(STATE_FILE).name}
        foreign += [
            f"{CHECKPOINT_DIR}/{e}"
            for e in folder_entries(checkpoint)
            if (e not in own and not _is_temp_of(e, own)) or (checkpoint / e).is_symlink()
        ]
    return foreign


def _is_temp_of(entry: str, names: set[str]) -> bool:
    """``.model.safetensors.abc123.tmp``: a temp file :func:`workbench.io.atomic_path` left for one of ``names``."""
    return any(entry.startswith(f".{n}.") and entry.endswith(".tmp") and "/" not in entry for n in names)


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

"""The training loop, evaluation and prediction: one plain loop for every method.

``train(method, method_config, TrainConfig(...))`` builds data and model, runs the epochs,
writes metrics, checkpoints and a report into the run directory and returns the final
evaluation. CPU or CUDA is chosen automatically; on CUDA the forward pass runs under bf16
autocast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm  # text, not tqdm.auto's widget: an executed notebook saves the bar's last state

from workbench import checkpoint as ckpt
from workbench import dist, tensorboard
from workbench.configs import field_type
from workbench.data.augment import Augment
from workbench.data.dataset import SegmentationDataset, check_imported_labels, image_tensor, parse_supervision
from workbench.data.folder import CARVED_FROM, CARVED_SPLITS, DatasetError, DatasetInfo, load_dataset_info, read_image
from workbench.data.synthetic import SyntheticConfig, ensure_synthetic
from workbench.io import atomic_write_text, save_index_png
from workbench.methods import optional_hook
from workbench.metrics import confusion_matrix, format_summary, summarize
from workbench.models import Backbone, ModelError
from workbench.splits import ClassSplit
from workbench.weak_labels import SimulationConfig, WeakLabelError, load_weak_labels


class ConfigError(ValueError):
    """A configuration value that cannot work (the message names the key and the valid range)."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message names the step and the likely cause."""


# Resource bounds: far above any sensible run, low enough that a typo cannot fork a thousand
# processes or allocate a 100000x100000 batch.
MAX_IMAGE_SIDE = 4096
MAX_BATCH_SIZE = 4096
MAX_EPOCHS = 100_000
MAX_NUM_WORKERS = 64
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_numbers(config) -> None:
    """Int fields must hold whole numbers and float fields finite ones, in any config dataclass.

    Range checks such as ``lr > 0`` let NaN through (every comparison with NaN is False), and
    2.5 epochs would fail far from its cause.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind, _ = field_type(f.type)
        if value is None or kind not in ("int", "float"):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{f.name} must be a number, got {value!r}")
        if kind == "int" and not isinstance(value, numbers.Integral):
            raise ConfigError(f"{f.name} must be a whole number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a run except the method's own knobs. ``data=None`` uses the synthetic default."""

    data: str | None = None
    out: str = "runs/latest"
    supervision: str | None = None  # None: the method's first supported kind
    protocol: str | None = None  # weak-shot protocol from dataset.json
    novel: str | None = None  # or novel classes: comma-separated names (or 0-based indices)
    weak_labels: str | None = None  # a weak-label JSON file instead of simulated labels
    train_split: str = "train"
    val_split: str = "val"
    image_size: tuple[int, int] | None = None  # (height, width); None: the first image's size
    limit_train: int | None = None
    limit_val: int | None = None
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    arch: str = "Unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    decoder_channels: tuple[int, ...] | None = None  # Unet decoder widths, deepest first; None: smp's (256..16)
    hflip: bool = True
    scale_min: float = 1.0
    scale_max: float = 1.0
    points_per_region: int = 1
    min_region_px: int = 4
    point_radius: float = 0.0
    scribble_width: float = 1.0
    scribble_fraction: float = 1.0
    sim_seed: int = 0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    amp: bool = True
    channels_last: bool = False  # NHWC tensors: faster convolutions on recent GPUs
    compile: bool = False  # torch.compile the model (first steps are slow while it compiles)
    eval_every: int = 0  # evaluate every N epochs (0: only at the end)
    curve_at_working_size: bool = False  # the eval_every scores at the working size (faster); the last is full-size
    log_every: int = 20
    resume: bool = False  # continue the run in ``out`` from its last checkpoint (same settings and data)
    overwrite: bool = False  # replace the run that ``out`` holds (without it a new run refuses such a folder)
    synthetic_root: str = "data/synthetic"

    def __post_init__(self) -> None:
        check_numbers(self)
        if not str(self.out).strip():
            raise ConfigError("out is empty, which would make the current folder a run; name a run folder (runs/NAME)")
        for key in ("epochs", "batch_size", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "weight_decay", "scale_min", "scale_max", "point_radius", "scribble_width"):
            v = getattr(self, key)
            if not math.isfinite(v) or v < 0 or (key in ("lr", "scale_min", "scale_max", "scribble_width") and v == 0):
                raise ConfigError(
                    f"{key} must be a finite {'positive' if key != 'weight_decay' else 'non-negative'} number, got {v}"
                )
        if self.num_workers < 0 or self.eval_every < 0:
            raise ConfigError("num_workers and eval_every must be >= 0")
        for key, limit in (("num_workers", MAX_NUM_WORKERS), ("batch_size", MAX_BATCH_SIZE), ("epochs", MAX_EPOCHS)):
            if getattr(self, key) > limit:
                raise ConfigError(f"{key} {getattr(self, key)} is over the limit of {limit}; use at most {limit}")
        if self.scale_min > self.scale_max:
            raise ConfigError(
                f"scale_min {self.scale_min} is above scale_max {self.scale_max}; the scale is drawn from "
                "[scale_min, scale_max], so give scale_min <= scale_max"
            )
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"device {self.device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
        if self.resume and self.overwrite:
            raise ConfigError("give either resume (continue the run in out) or overwrite (replace it), not both")
        for key in ("limit_train", "limit_val"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1 (or None for every image), got {getattr(self, key)}")
        if self.seed < 0 or self.sim_seed < 0:
            raise ConfigError(f"seed and sim_seed must be >= 0, got {self.seed} and {self.sim_seed}")
        try:
            _ = self.simulation  # SimulationConfig checks its own fields
        except WeakLabelError as err:
            raise ConfigError(str(err)) from None
        if self.image_size is not None and (
            len(self.image_size) != 2
            or not all(isinstance(v, numbers.Integral) for v in self.image_size)
            or min(self.image_size) < 8
            or max(self.image_size) > MAX_IMAGE_SIDE
        ):
            raise ConfigError(
                f"image_size must be HEIGHT,WIDTH of 8 to {MAX_IMAGE_SIDE} pixels each (the limit), got {self.image_size}"
            )
        if self.protocol and self.novel:
            raise ConfigError("give either protocol or novel, not both")
        if self.val_split in CARVED_SPLITS and self.train_split == CARVED_FROM:
            raise ConfigError(
                f"val_split {self.val_split!r} is carved out of {CARVED_FROM!r}, so training on {CARVED_FROM!r} would "
                "train on the images it scores; use train_split=train-tune with val_split=tune"
            )

    @property
    def backbone(self) -> Backbone:
        return Backbone(self.arch, self.encoder, self.encoder_weights, self.decoder_channels)

    @property
    def simulation(self) -> SimulationConfig:
        return SimulationConfig(
            points_per_region=self.points_per_region, min_region_px=self.min_region_px,
            point_radius=self.point_radius, scribble_width=self.scribble_width,
            scribble_fraction=self.scribble_fraction, seed=self.sim_seed,
        )  # fmt: skip


def pick_device(name: str = "auto") -> torch.device:
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available; use device=cpu or auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA devices; use cuda:0..")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' asked for but it is not available; use device=cpu or auto")
    return torch.device(name)


def dataset_info(config: TrainConfig) -> DatasetInfo:
    """The dataset folder; without one, the synthetic set (its weak-shot mode for weak-shot runs, next to it)."""
    if config.data is not None:
        return load_dataset_info(config.data)
    if config.protocol or config.novel:
        weak_shot = SyntheticConfig(weak_shot=True)
        return load_dataset_info(ensure_synthetic(f"{config.synthetic_root.rstrip('/')}-weakshot", weak_shot))
    return load_dataset_info(ensure_synthetic(config.synthetic_root))


def class_split(info: DatasetInfo, config: TrainConfig) -> ClassSplit | None:
    if config.protocol:
        return ClassSplit.from_protocol(info.classes, info.protocols, config.protocol)
    if config.novel:
        return ClassSplit.from_names(info.classes, config.novel)
    return None


def supervision_for(method: ModuleType, config: TrainConfig) -> str:
    supervision = config.supervision or method.SUPERVISION[0]
    kinds = parse_supervision(supervision)
    unsupported = [k for k in kinds if k not in method.SUPERVISION]
    if unsupported:
        raise ConfigError(
            f"method {method.__name__.rsplit('.', 1)[-1]} does not learn from {unsupported}; "
            f"its supervision kinds are {method.SUPERVISION}"
        )
    return supervision


def make_datasets(method: ModuleType, config: TrainConfig) -> tuple[SegmentationDataset, SegmentationDataset]:
    info = dataset_info(config)
    split = class_split(info, config)
    weak = load_weak_labels(config.weak_labels) if config.weak_labels else None
    train_ds = SegmentationDataset(
        info, config.train_split, supervision_for(method, config), size=config.image_size,
        augment=Augment(config.hflip, config.scale_min, config.scale_max), weak_labels=weak,
        simulation=config.simulation, class_split=split, limit=config.limit_train,
    )  # fmt: skip
    val_ds = SegmentationDataset(
        info, config.val_split, "dense", size=train_ds.size, include_gt=True, limit=config.limit_val
    )
    if weak is not None:
        check_weak_label_coverage(train_ds.names, weak, config)  # no match: an error before any setup
    return train_ds, val_ds


def check_weak_label_coverage(names: list[str], weak, config: TrainConfig) -> str:
    """A weak-label file must label some image of the split; return a one-line coverage report.

    Images without labels train on nothing (no tag, no pixel), and names of the file that match
    no image are most likely another dataset's or split's: both are counted in the report.
    """
    labelled = [n for n in names if n in weak.labels]
    unknown = sorted(set(weak.labels) - set(names))
    if not labelled:
        example = f" (e.g. {unknown[0]!r}; images are named like {names[0]!r})" if unknown and names else ""
        raise WeakLabelError(
            f"{config.weak_labels}: none of its {len(weak.labels)} labelled images is in split "
            f"{config.train_split!r} of {len(names)} images{example}; export the labels for this dataset and split"
        )
    report = f"{config.weak_labels}: labels for {len(labelled)} of {len(names)} {config.train_split} images"
    if unknown:
        report += f"; {len(unknown)} names match no image of the split (e.g. {unknown[0]!r}) and are not used"
    return report


def data_fingerprint(train_ds: SegmentationDataset, config: TrainConfig) -> str:
    """What the model trains on, independent of where the folder lives: classes, the split's file
    names and sizes, and the bytes of a weak-label file. Resume refuses a change."""
    digest = hashlib.sha256(json.dumps([list(train_ds.info.classes), train_ds.split]).encode())
    info = train_ds.info
    for name in train_ds.names:
        for path in (info.image_path(train_ds.split, name), info.mask_path(train_ds.split, name)):
            digest.update(f"{path.name}:{path.stat().st_size};".encode("utf-8", "surrogateescape"))
    if config.weak_labels:
        digest.update(Path(config.weak_labels).read_bytes())
    return digest.hexdigest()[:16]


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


def diagnostics_dataset(train_ds: SegmentationDataset, config: TrainConfig) -> SegmentationDataset:
    """The training images with their training labels *and* ground truth, unaugmented: only for a
    method's ``train_diagnostics`` report after training, never for a training batch."""
    return SegmentationDataset(
        train_ds.info, config.train_split, "+".join(train_ds.kinds), size=train_ds.size, include_gt=True,
        weak_labels=load_weak_labels(config.weak_labels) if config.weak_labels else None,
        simulation=config.simulation, class_split=train_ds.class_split, limit=config.limit_train,
    )  # fmt: skip


def make_loader(dataset, batch_size: int, shuffle: bool, config: TrainConfig, device: torch.device, epoch: int = 0):
    """A loader over this rank's share of ``dataset``; ``batch_size`` is the global batch.

    Training draws one seeded permutation per epoch and deals it out across ranks, so the
    global batches are the same for one process or several. Evaluation shards by index,
    without the padding duplicates DistributedSampler would add.
    """
    world = dist.world_size()
    if shuffle and batch_size % world:
        raise ConfigError(f"batch_size {batch_size} must be divisible by the number of processes ({world})")
    per_rank = batch_size // world if shuffle else batch_size
    sampler: DistributedSampler | list[int]
    if shuffle:
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=dist.rank(), shuffle=True, seed=config.seed, drop_last=world > 1
        )
        sampler.set_epoch(epoch)
    else:
        sampler = list(range(dist.rank(), len(dataset), world))
    return DataLoader(
        dataset, batch_size=per_rank, sampler=sampler, drop_last=shuffle and len(sampler) > per_rank,
        num_workers=config.num_workers, pin_memory=device.type == "cuda",
        persistent_workers=shuffle and config.num_workers > 0,
    )  # fmt: skip


def _to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def build_model(method: ModuleType, num_classes: int, method_config, config: TrainConfig) -> nn.Module:
    """``method.build`` with a clear error when pretrained encoder weights cannot be fetched."""
    try:
        return method.build(num_classes, method_config, config.backbone)
    except OSError as err:  # requests, urllib and huggingface_hub failures are all OSErrors
        if not config.encoder_weights or Path(config.encoder_weights).exists():
            raise
        raise ModelError(
            f"encoder_weights={config.encoder_weights!r}: could not fetch the {config.encoder} weights "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); connect to the "
            "network once (they are cached), pass a local .safetensors/.pth file, or use encoder_weights=None"
        ) from None


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def train(
    method: ModuleType,
    method_config,
    config: TrainConfig = TrainConfig(),
    on_log: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    model: nn.Module | None = None,
) -> dict:
    """Train ``method``; return ``{"stopped", "epoch", "step"}`` plus, when it ran to the end, the
    final evaluation summary (also in ``out/report.json``).

    ``on_log`` receives every metrics record as it is written; ``should_stop`` is polled
    every step (a dashboard's cancel button: the run returns ``stopped=True`` without an
    evaluation). ``model`` continues from given weights.
    Under ``torchrun`` the model is wrapped in :class:`MethodDDP` and rank 0 alone writes
    the run directory; ``training_step`` must call ``model(...)`` once per step (that call
    starts DDP's gradient synchronisation) and may also use the model's submodules.

    The run directory is locked while training; a folder holding another run is refused
    unless ``config.overwrite`` (and only then, holding the lock, are its files removed), and
    run-like files the workbench did not write are refused even then (:func:`ckpt.check_run_dir`).
    The four phases are :func:`setup_run`, :func:`train_epoch`, :func:`save_epoch` and :func:`finish_run`.
    """
    run = setup_run(method, method_config, config, on_log, model)
    try:
        for epoch in range(run.start_epoch, config.epochs):
            if not train_epoch(run, epoch, should_stop):
                return finish_run(run, stopped_in=epoch)
            save_epoch(run, epoch)
        return finish_run(run)
    finally:
        run.release()


@dataclass
class TrainRun:
    """Everything one training run holds between its phases (built by :func:`setup_run`)."""

    method: ModuleType
    method_config: object
    config: TrainConfig
    train_ds: SegmentationDataset
    val_ds: SegmentationDataset
    model: nn.Module  # the plain model: weights, checkpoints, evaluation
    trained: nn.Module  # what the steps call: the model, under DDP and/or torch.compile
    device: torch.device
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    identity: dict  # what a resume must agree with (run_identity)
    start_epoch: int
    step: int
    on_log: Callable[[dict], None] | None = None
    lock: ckpt.RunLock | None = None
    board: tensorboard.Board | None = None  # rank 0 with tensorboard installed
    label_check: dict | None = None  # imported labels lost in the resize (check_imported_labels)
    grad_clip: float = 0.0  # full-model L2 norm clipping when > 0 (a method's Config.grad_clip)
    bar: tqdm | None = None  # one progress bar per run (a notebook keeps one compact line, not one per epoch)

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)

    def log(self, record: dict) -> None:
        if dist.is_main():
            ckpt.append_jsonl(self.run_dir / "metrics.jsonl", record)
            if self.board is not None:
                self.board.log(record)
            if self.on_log is not None:
                self.on_log(record)

    def progress_bar(self) -> tqdm:
        if self.bar is None:
            total = self.config.epochs * len(self.loader)
            self.bar = tqdm(
                total=total, initial=self.step, desc=self.run_dir.name, unit="step", leave=True, dynamic_ncols=True,
                disable=not dist.is_main(),
            )  # fmt: skip
        return self.bar

    def release(self) -> None:
        """Close the TensorBoard writer and drop the lock (also after an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.board is not None:
            self.board.close()
            self.board = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def setup_run(
    method: ModuleType,
    method_config,
    config: TrainConfig,
    on_log: Callable[[dict], None] | None = None,
    model: nn.Module | None = None,
) -> TrainRun:
    """Check, build data and model, lock and claim the run directory, resume; nothing is written
    into the folder before this process holds its lock."""
    check_numbers(method_config)  # before anything is written
    run_dir = Path(config.out)
    if os.environ.get("RANK", "0") == "0":  # fail before the slow setup (this check writes nothing); torchrun's
        # RANK, since the process group is not joined yet: other ranks would see rank 0's fresh files as another run
        ckpt.check_run_dir(run_dir, config.resume, config.overwrite)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    device = dist.init_from_env(pick_device(config.device))
    train_ds, val_ds = make_datasets(method, config)
    info, split = train_ds.info, train_ds.class_split
    if split is not None and getattr(method_config, "novel", None) == ():  # weak-shot methods that need the
        method_config = dataclasses.replace(method_config, novel=split.novel)  # novel ids get them from the split
    if model is None:
        model = build_model(method, info.num_classes, method_config, config)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    identity = run_identity(method, method_config, config, data_fingerprint(train_ds, config))
    lock = ckpt.RunLock(run_dir).acquire() if dist.is_main() else None
    try:
        loader = make_loader(train_ds, config.batch_size, True, config, device)  # one loader: workers keep caches
        steps_per_epoch = len(loader)
        hook = optional_hook(method, "param_groups")
        groups = hook(model, method_config) if hook is not None else None
        groups = groups or [{"params": list(model.parameters()), "lr_scale": 1.0}]  # e.g. a lower backbone lr
        optimizer = torch.optim.AdamW(
            [{"params": g["params"], "lr": config.lr * g["lr_scale"]} for g in groups], weight_decay=config.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[config.lr * g["lr_scale"] for g in groups], total_steps=config.epochs * steps_per_epoch,
            pct_start=0.1,
        )  # fmt: skip
        if dist.is_main():
            ckpt.claim_run_dir(run_dir, config.resume, config.overwrite)  # holding the lock: now the folder is ours
        start_epoch = _resume(run_dir, model, optimizer, scheduler, identity) if config.resume else 0
        if dist.is_main():
            ckpt.mark_run_dir(run_dir)  # before any run file: the run is the workbench's (a resumed old one too)
            if start_epoch > 0:
                _forget_after(run_dir / "metrics.jsonl", start_epoch * steps_per_epoch)
            ckpt.write_config(run_dir, run_config(method, method_config, config, info, split, train_ds))
        run = TrainRun(
            method, method_config, config, train_ds, val_ds, model, _wrap(model, device, config), device, loader,
            optimizer, scheduler, identity, start_epoch, start_epoch * steps_per_epoch, on_log, lock,
        )  # fmt: skip
        run.board = tensorboard.open_board(run_dir, run.step) if dist.is_main() else None
        run.grad_clip = float(getattr(method_config, "grad_clip", 0.0))
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.label_check = check_imported_labels(train_ds) if dist.is_main() else None
    if run.label_check is not None:
        run.log({"event": "label_check", **run.label_check})
    weak = train_ds.weak_labels
    report = check_weak_label_coverage(train_ds.names, weak, config) if weak is not None else None
    if report and dist.is_main():
        print(report, file=sys.stderr)
        run.log({"event": "weak_labels", "step": run.step, "message": report})
    return run


def train_epoch(run: TrainRun, epoch: int, should_stop: Callable[[], bool] | None = None) -> bool:
    """One epoch of steps, then its metrics record (and a validation every ``eval_every`` epochs).

    Returns False when ``should_stop`` asked to stop before a step (the epoch is left unfinished).
    """
    config, method, device = run.config, run.method, run.device
    total_steps = config.epochs * len(run.loader)
    run.trained.train()
    cast(DistributedSampler, run.loader.sampler).set_epoch(epoch)
    running: dict[str, torch.Tensor] = {}
    t0, n_seen = time.perf_counter(), 0
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # step of the first non-finite loss
    bar = run.progress_bar()
    bar.set_description(f"{run.run_dir.name} epoch {epoch + 1}/{config.epochs}")
    for batch in run.loader:
        if should_stop is not None and should_stop():
            return False
        batch = _to_device(batch, device, config.channels_last)
        batch["progress"] = run.step / max(total_steps - 1, 1)
        with _autocast(device, config.amp):
            outputs = method.training_step(run.trained, batch, run.method_config)
        loss = outputs["loss"]
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.step += 1
        bar.update(1)
        # device-side bookkeeping: no host synchronisation inside the loop
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), run.step, first_bad)
        n_seen += batch["image"].shape[0] * dist.world_size()
        for k, v in outputs.items():
            running[k] = running.get(k, 0.0) + v.detach().float()
        if run.step % config.log_every == 0:
            _check_finite(first_bad, config, epoch)
            record = {
                "epoch": epoch, "step": run.step, "loss": float(loss.detach()), "lr": run.scheduler.get_last_lr()[0]
            }  # fmt: skip
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            run.log(record)
    _check_finite(first_bad, config, epoch, run.model)  # before a checkpoint could keep the damage
    seconds = time.perf_counter() - t0
    record = {"epoch": epoch + 1, "step": run.step, "seconds": seconds, "images_per_s": n_seen / max(seconds, 1e-9)}
    record.update({f"train_{k}": float(v) / max(len(run.loader), 1) for k, v in running.items()})
    if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs:
        split = run.train_ds.class_split
        full = not config.curve_at_working_size
        summary = _evaluate_and_show(run.board, run.step, method, run.model, run.val_ds, device, split, config, full)
        record["val_miou"] = summary["miou"]
    run.log(record)
    return True


def save_epoch(run: TrainRun, epoch: int) -> None:
    """The checkpoint after ``epoch``: weights, optimizer, scheduler, RNG and the model's extra state."""
    if not dist.is_main():
        return
    train_state = {
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "epoch": epoch + 1, "rng": torch.get_rng_state(), "run": json.dumps(run.identity),
        "model_extra": _model_extra_state(run.model),
    }  # fmt: skip
    if run.device.type == "cuda":
        train_state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    ckpt.save_checkpoint(run.run_dir, run.model, train_state)


def finish_run(run: TrainRun, stopped_in: int | None = None) -> dict:
    """Stopped: log it, keep the weights, return ``{"stopped": True, "epoch", "step"}``. Finished:
    evaluate, write the report, return the summary with ``stopped=False``, ``epoch`` and ``step``."""
    if stopped_in is not None:
        run.log({"event": "stopped", "epoch": stopped_in, "step": run.step})
        if dist.is_main():
            ckpt.save_checkpoint(run.run_dir, run.model)
        run.release()
        return {"stopped": True, "epoch": stopped_in, "step": run.step}
    config, split = run.config, run.train_ds.class_split
    summary = _evaluate_and_show(run.board, run.step, run.method, run.model, run.val_ds, run.device, split, config)
    in_sync = dist.params_in_sync(run.model)
    if run.label_check is not None:
        summary["label_check"] = run.label_check
    diagnose = optional_hook(run.method, "train_diagnostics")  # e.g. pseudo-mask quality on train, vs GT
    if dist.is_main() and diagnose is not None:
        diagnostics_ds = diagnostics_dataset(run.train_ds, config)
        summary["train_diagnostics"] = diagnose(run.model, diagnostics_ds, run.device, run.method_config)
        run.log({"event": "train_diagnostics", "step": run.step, **summary["train_diagnostics"]})
    if dist.is_main():
        write_report(run.run_dir, summary, f"{run.train_ds.info.name} / {config.val_split}")
    run.log(
        {
            "event": "done",
            "step": run.step,
            "val_miou": summary["miou"],
            "world_size": dist.world_size(),
            "ranks_in_sync": in_sync,
        }
    )
    if run.board is not None:
        run.board.close()
        run.board = None
    dist.barrier()
    return {**summary, "stopped": False, "epoch": config.epochs, "step": run.step}


def _evaluate_and_show(
    board, step: int, method, model, val_ds, device, split, config: TrainConfig, full_resolution: bool = True
) -> dict:
    """:func:`evaluate`, and on rank 0 its numbers and a few prediction overlays into TensorBoard."""
    summary = evaluate(method, model, val_ds, device, split, config.batch_size, config, full_resolution)
    if board is not None:
        board.evaluation(step, summary, tensorboard.prediction_overlays(method, model, val_ds, device))
    return summary


def _check_finite(first_bad: torch.Tensor, config: TrainConfig, epoch: int, model: nn.Module | None = None) -> None:
    """Stop with the step of the first non-finite loss and its likely cause (this syncs with the device).

    With ``model``, also its weights: one update can overflow them while the loss it came from was finite.
    """
    bad = int(first_bad)
    broken_weights = model is not None and not all(bool(torch.isfinite(p).all()) for p in model.parameters())
    if bad < 0 and not broken_weights:
        return
    if config.lr > 0.1:
        cause = f"the learning rate lr={config.lr:g} is far too high (the default is {TrainConfig.lr:g}): lower it"
    else:
        cause = (
            f"the learning rate lr={config.lr:g} may still be too high for this method, or the loss overflowed: "
            "lower lr, or try amp=false; check the labels if it persists"
        )
    what = (
        f"the training loss became NaN or infinite at step {bad}"
        if bad >= 0
        else f"the weights became NaN or infinite in epoch {epoch + 1} (the loss was still finite)"
    )
    raise TrainingError(
        f"{what} (epoch {epoch + 1}); likely cause: {cause}. Training stopped; the last checkpoint in "
        f"{config.out} (if any) is from before it"
    )


def _model_extra_state(model: nn.Module) -> dict:
    """Training state a model keeps outside its weights: non-persistent buffers and a method's
    ``resume_state()`` (e.g. spml's memory bank); saved in the train state for an exact resume."""
    buffers = {name: b.detach().cpu().clone() for name, b in model.named_buffers()}
    resume_state = getattr(model, "resume_state", None)
    extra = resume_state() if callable(resume_state) else {}
    return {"buffers": buffers, "method": extra}


def _load_model_extra_state(model: nn.Module, state: dict) -> None:
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name in state.get("buffers", {}):
                buffer.copy_(state["buffers"][name])
    load_resume_state = getattr(model, "load_resume_state", None)
    if callable(load_resume_state):
        load_resume_state(state.get("method", {}))


def _resume(run_dir: Path, model: nn.Module, optimizer, scheduler, identity: dict | None = None) -> int:
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
    scheduler.load_state_dict(_replanned(state["scheduler"], scheduler))
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"], next(model.parameters()).device)
    if "model_extra" in state:
        _load_model_extra_state(model, state["model_extra"])
    return int(state["epoch"])


def _forget_after(log: Path, step: int) -> None:
    """Drop the records a killed run wrote after its checkpoint: the resumed run repeats those steps."""
    if log.exists():
        kept = [r for r in ckpt.read_jsonl(log) if r.get("step", 0) <= step]
        atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))


def _replanned(saved: dict, scheduler) -> dict:
    """The saved one-cycle state, laid out over the current total steps when the epoch budget changed.

    Resuming a 1-epoch run with ``epochs=2`` keeps the steps done and the optimizer state and
    continues on the one-cycle schedule of the new length (the learning rate moves onto it).
    """
    fresh = scheduler.state_dict()
    if saved.get("total_steps") == fresh["total_steps"]:
        return saved
    return {**saved, "total_steps": fresh["total_steps"], "_schedule_phases": fresh["_schedule_phases"]}


class MethodDDP(DistributedDataParallel):
    """DDP that still lets a method reach its model's heads (``model.tag_head``) as without DDP.

    Gradients of every parameter are all-reduced by DDP's hooks whichever path used it; some
    heads are unused in some steps, hence ``find_unused_parameters=True``.
    """

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def _wrap(model: nn.Module, device: torch.device, config: TrainConfig) -> nn.Module:
    """DistributedDataParallel under torchrun, then optionally torch.compile; the plain model otherwise."""
    wrapped = model
    if dist.is_distributed():
        wrapped = MethodDDP(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if config.compile:
        wrapped = cast(nn.Module, torch.compile(wrapped))  # an OptimizedModule
    return wrapped


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


@torch.no_grad()
def evaluate(
    method: ModuleType,
    model: nn.Module,
    dataset: SegmentationDataset,
    device: torch.device,
    split: ClassSplit | None = None,
    batch_size: int = 8,
    config: TrainConfig = TrainConfig(),
    full_resolution: bool = True,
) -> dict:
    """Summed confusion matrix over the split, at each image's original resolution (or, with
    ``full_resolution=False``, at the working size against the nearest-resized masks: a learning
    curve's cheaper estimate, never a reported number)."""
    model.eval()
    c = dataset.info.num_classes
    cm = torch.zeros(c, c, dtype=torch.int64)
    per_image = []
    for batch in make_loader(dataset, batch_size, False, config, device):
        with _autocast(device, config.amp):
            scores = method.predict(model, batch["image"].to(device))
        for i, (score, index) in enumerate(zip(scores.float(), batch["index"].tolist())):
            if full_resolution:
                truth = torch.from_numpy(dataset.full_mask(index).astype(np.int64))
                score = F.interpolate(score[None], size=truth.shape, mode="bilinear", align_corners=False)[0]
            else:
                truth = batch["mask"][i]
            image_cm = confusion_matrix(score.argmax(0).cpu(), truth, c)
            cm += image_cm
            per_image.append({
                "name": dataset.names[index], "miou": summarize(image_cm, dataset.info.classes)["miou"],
                "confusion": image_cm.tolist(),  # kept per image: bootstrap intervals resample images
            })  # fmt: skip
    cm = dist.all_reduce_sum(cm.to(device)).cpu()
    per_image = [r for part in dist.all_gather_objects(per_image) for r in part]
    summary = summarize(cm, dataset.info.classes, split.novel if split else ())
    summary["confusion_matrix"] = cm.tolist()
    summary["per_image"] = sorted(per_image, key=lambda r: r["name"])
    return summary


def write_report(run_dir: Path, summary: dict, title: str) -> None:
    atomic_write_text(run_dir / "report.json", json.dumps(summary, indent=1))
    table = format_summary(summary)
    extra = ""
    if summary.get("train_diagnostics"):
        rows = "\n".join(f"{k:<24} {v:.4f}" for k, v in summary["train_diagnostics"].items())
        extra = f"\n## Training images (diagnostics against ground truth, not a training signal)\n\n```\n{rows}\n```\n"
    atomic_write_text(run_dir / "report.md", f"# Evaluation: {title}\n\n```\n{table}\n```\n{extra}")


# ----------------------------------------------------------------------------- loading runs, predicting


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
    from workbench.methods import METHODS

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


@torch.no_grad()
def predict_scores(predict: Callable, model: nn.Module, image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` float class scores of an ``(H, W, 3)`` uint8 image at the image's own size.

    The image is resized to the working ``size`` the model was trained at, ``predict(model, images)``
    (a method's ``predict``) scores it, and the scores are resized back bilinearly.
    """
    scores = predict(model, image_tensor(image, size).to(next(model.parameters()).device)).float()
    return F.interpolate(scores, size=image.shape[:2], mode="bilinear", align_corners=False)[0]


def predict_image(method: ModuleType, model: nn.Module, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` uint8 prediction for an ``(H, W, 3)`` uint8 image, at the image's own size."""
    return predict_scores(method.predict, model, image, size).argmax(0).byte().cpu().numpy()


def predict_files(run: str | Path, images: list[Path], out_dir: Path, device: str = "auto") -> list[Path]:
    """Write one palette PNG index mask per image into ``out_dir``."""
    method, model, cfg = load_run(run, device)
    colors = cfg["dataset"]["colors"]
    written = []
    for path in images:
        image = read_image(path)
        mask = predict_image(method, model, image, tuple(cfg["image_size"]))
        target = out_dir / f"{Path(path).stem}.png"
        save_index_png(target, mask, colors)
        written.append(target)
    return written


def evaluate_run(
    run: str | Path, data: str | Path, split: str = "val", device: str = "auto", protocol: str | None = None
) -> dict:
    """Evaluate a trained run on any dataset folder with the same classes."""
    method, model, cfg = load_run(run, device)
    info = load_dataset_info(data)
    if list(info.classes) != cfg["dataset"]["classes"]:
        raise DatasetError(
            f"{info.root}: classes {list(info.classes)} differ from the run's {cfg['dataset']['classes']}; "
            "evaluate on a dataset with the same classes"
        )
    novel = cfg.get("novel") or []
    class_split = (
        ClassSplit.from_protocol(info.classes, info.protocols, protocol)
        if protocol
        else (ClassSplit.from_names(info.classes, novel) if novel else None)  # names, or indices (old runs)
    )
    dataset = SegmentationDataset(info, split, "dense", size=tuple(cfg["image_size"]), include_gt=True)
    device_ = next(model.parameters()).device
    return evaluate(method, model, dataset, device_, class_split)


def predict_split(run: str | Path, data: str | Path, split: str, out_dir: Path, device: str = "auto") -> list[Path]:
    info = load_dataset_info(data)
    from workbench.data.folder import list_split

    return predict_files(run, [info.image_path(split, n) for n in list_split(info, split)], out_dir, device)

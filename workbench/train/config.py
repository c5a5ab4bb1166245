"""What a run is set up from: :class:`TrainConfig`, its checks and limits, and the device."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass

import torch

from workbench.configs import field_type
from workbench.data.folder import CARVED_FROM, CARVED_SPLITS
from workbench.labels.weak_labels import SimulationConfig, WeakLabelError
from workbench.modeling.backbones import Backbone


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

"""The training loop, evaluation and prediction: one plain loop for every method.

``train(method, method_config, TrainConfig(...))`` builds data and model, runs the epochs,
writes metrics, checkpoints and a report into the run directory and returns the final
evaluation. CPU or CUDA is chosen automatically; on CUDA the forward pass runs under bf16
autocast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
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
from workbench.data.folder import DatasetError, DatasetInfo, load_dataset_info, read_image
from workbench.data.synthetic import SyntheticConfig, ensure_synthetic
from workbench.io import atomic_write_text, save_index_png
from workbench.methods import optional_hook
from workbench.metrics import confusion_matrix, format_summary, summarize
from workbench.models import Backbone
from workbench.splits import ClassSplit
from workbench.weak_labels import SimulationConfig, WeakLabelError, load_weak_labels


class ConfigError(ValueError):
    """A configuration value that cannot work (the message names the key and the valid range)."""


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
    log_every: int = 20
    resume: bool = False
    synthetic_root: str = "data/synthetic"

    def __post_init__(self) -> None:
        check_numbers(self)
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
        ):
            raise ConfigError(f"image_size must be HEIGHT,WIDTH of at least 8 pixels each, got {self.image_size}")
        if self.protocol and self.novel:
            raise ConfigError("give either protocol or novel, not both")

    @property
    def backbone(self) -> Backbone:
        return Backbone(self.arch, self.encoder, self.encoder_weights)

    @property
    def simulation(self) -> SimulationConfig:
        return SimulationConfig(
            points_per_region=self.points_per_region, min_region_px=self.min_region_px,
            point_radius=self.point_radius, scribble_width=self.scribble_width,
            scribble_fraction=self.scribble_fraction, seed=self.sim_seed,
        )  # fmt: skip


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available; use device=cpu or auto")
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
    return train_ds, val_ds


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
    """Train ``method`` and return the final evaluation summary (also in ``out/report.json``).

    ``on_log`` receives every metrics record as it is written; ``should_stop`` is polled
    every step (a dashboard's cancel button). ``model`` continues from given weights.
    Under ``torchrun`` the model is wrapped in :class:`MethodDDP` and rank 0 alone writes
    the run directory; ``training_step`` must call ``model(...)`` once per step (that call
    starts DDP's gradient synchronisation) and may also use the model's submodules.
    """
    check_numbers(method_config)  # before anything is written
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    device = dist.init_from_env(pick_device(config.device))
    train_ds, val_ds = make_datasets(method, config)
    info, split = train_ds.info, train_ds.class_split
    run_dir = Path(config.out)
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    if split is not None and getattr(method_config, "novel", None) == ():  # weak-shot methods that need the
        method_config = dataclasses.replace(method_config, novel=split.novel)  # novel ids get them from the split
    if model is None:
        model = method.build(info.num_classes, method_config, config.backbone)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = make_loader(train_ds, config.batch_size, True, config, device)  # one loader: workers keep their caches
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
    grad_clip = float(getattr(method_config, "grad_clip", 0.0))  # full-model L2 norm clipping when > 0
    start_epoch = _resume(run_dir, model, optimizer, scheduler) if config.resume else 0
    if dist.is_main():
        if start_epoch == 0 and (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()  # a fresh run in an old folder starts a fresh log
        elif start_epoch > 0:
            _forget_after(run_dir / "metrics.jsonl", start_epoch * steps_per_epoch)
        ckpt.write_config(run_dir, run_config(method, method_config, config, info, split, train_ds))
    trained = _wrap(model, device, config)
    board = tensorboard.open_board(run_dir, start_epoch * steps_per_epoch) if dist.is_main() else None

    def log(record: dict) -> None:
        if dist.is_main():
            ckpt.append_jsonl(run_dir / "metrics.jsonl", record)
            if board is not None:
                board.log(record)
            if on_log is not None:
                on_log(record)

    label_check = check_imported_labels(train_ds) if dist.is_main() else None  # imported labels lost in the resize
    if label_check is not None:
        log({"event": "label_check", **label_check})
    step = start_epoch * steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    # One bar per run, not one per epoch: a notebook keeps one compact line (a widget per epoch
    # piles up, and an executed notebook saves each as "0%").
    bar = tqdm(
        total=total_steps, initial=step, desc=run_dir.name, unit="step", leave=True, dynamic_ncols=True,
        disable=not dist.is_main(),
    )  # fmt: skip
    for epoch in range(start_epoch, config.epochs):
        trained.train()
        loader.sampler.set_epoch(epoch)
        running: dict[str, torch.Tensor] = {}
        t0, n_seen = time.perf_counter(), 0
        bar.set_description(f"{run_dir.name} epoch {epoch + 1}/{config.epochs}")
        for batch in loader:
            if should_stop is not None and should_stop():
                log({"event": "stopped", "epoch": epoch, "step": step})
                if dist.is_main():
                    ckpt.save_checkpoint(run_dir, model)
                    if board is not None:
                        board.close()
                bar.close()
                return {"stopped": True, "epoch": epoch, "step": step}
            batch = _to_device(batch, device, config.channels_last)
            batch["progress"] = step / max(total_steps - 1, 1)
            with _autocast(device, config.amp):
                outputs = method.training_step(trained, batch, method_config)
            loss = outputs["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            n_seen += batch["image"].shape[0] * dist.world_size()
            for k, v in outputs.items():  # device tensors: no host synchronisation inside the loop
                running[k] = running.get(k, 0.0) + v.detach().float()
            if step % config.log_every == 0:
                record = {"epoch": epoch, "step": step, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0]}
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                log(record)
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "step": step, "seconds": seconds, "images_per_s": n_seen / max(seconds, 1e-9)}
        record.update({f"train_{k}": float(v) / max(len(loader), 1) for k, v in running.items()})
        if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs:
            record["val_miou"] = _evaluate_and_show(board, step, method, model, val_ds, device, split, config)["miou"]
        log(record)
        if dist.is_main():
            train_state = {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1, "rng": torch.get_rng_state(),
            }  # fmt: skip
            ckpt.save_checkpoint(run_dir, model, train_state)
    bar.close()
    summary = _evaluate_and_show(board, step, method, model, val_ds, device, split, config)
    in_sync = dist.params_in_sync(model)
    if label_check is not None:
        summary["label_check"] = label_check
    if dist.is_main():
        write_report(run_dir, summary, f"{info.name} / {config.val_split}")
    log(
        {
            "event": "done",
            "step": step,
            "val_miou": summary["miou"],
            "world_size": dist.world_size(),
            "ranks_in_sync": in_sync,
        }
    )
    if board is not None:
        board.close()
    dist.barrier()
    return summary


def _evaluate_and_show(board, step: int, method, model, val_ds, device, split, config: TrainConfig) -> dict:
    """:func:`evaluate`, and on rank 0 its numbers and a few prediction overlays into TensorBoard."""
    summary = evaluate(method, model, val_ds, device, split, config.batch_size, config)
    if board is not None:
        board.evaluation(step, summary, tensorboard.prediction_overlays(method, model, val_ds, device))
    return summary


def _resume(run_dir: Path, model: nn.Module, optimizer, scheduler) -> int:
    """Load the last checkpoint of ``run_dir`` into model, optimizer and scheduler; return the next epoch."""
    state = ckpt.load_train_state(run_dir)
    if state is None:
        return 0
    ckpt.load_weights(model, state.get("model", run_dir / ckpt.MODEL_FILE))  # the copy in step with the optimizer
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(_replanned(state["scheduler"], scheduler))
    torch.set_rng_state(state["rng"])
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
) -> dict:
    """Summed confusion matrix over the split, at each image's original resolution."""
    model.eval()
    c = dataset.info.num_classes
    cm = torch.zeros(c, c, dtype=torch.int64)
    per_image = []
    for batch in make_loader(dataset, batch_size, False, config, device):
        with _autocast(device, config.amp):
            scores = method.predict(model, batch["image"].to(device))
        for score, index in zip(scores.float(), batch["index"].tolist()):
            full = torch.from_numpy(dataset.full_mask(index).astype(np.int64))
            pred = F.interpolate(score[None], size=full.shape, mode="bilinear", align_corners=False)[0].argmax(0).cpu()
            image_cm = confusion_matrix(pred, full, c)
            cm += image_cm
            per_image.append({"name": dataset.names[index], "miou": summarize(image_cm, dataset.info.classes)["miou"]})
    cm = dist.all_reduce_sum(cm.to(device)).cpu()
    per_image = [r for part in dist.all_gather_objects(per_image) for r in part]
    summary = summarize(cm, dataset.info.classes, split.novel if split else ())
    summary["confusion_matrix"] = cm.tolist()
    summary["per_image"] = sorted(per_image, key=lambda r: r["name"])
    return summary


def write_report(run_dir: Path, summary: dict, title: str) -> None:
    atomic_write_text(run_dir / "report.json", json.dumps(summary, indent=1))
    table = format_summary(summary)
    atomic_write_text(run_dir / "report.md", f"# Evaluation: {title}\n\n```\n{table}\n```\n")


# ----------------------------------------------------------------------------- loading runs, predicting


def method_config_from_json(method: ModuleType, fields: dict):
    """``method.Config`` from its ``config.json`` dict: JSON hands tuples back as lists, frozen configs want tuples."""

    def tuples(value):
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    return method.Config(**{k: tuples(v) for k, v in fields.items()})


def load_run(path: str | Path, device: str = "auto") -> tuple[ModuleType, nn.Module, dict]:
    """``(method module, model with weights, config.json dict)`` of a run directory or weights file."""
    from workbench.methods import METHODS

    run_dir, weights = ckpt.resolve_run(path)
    cfg = ckpt.read_run_config(run_dir)
    if cfg.get("method") not in METHODS:
        raise ckpt.CheckpointError(f"{run_dir}: unknown method {cfg.get('method')!r}; known: {sorted(METHODS)}")
    method = METHODS[cfg["method"]]
    method_config = method_config_from_json(method, cfg["method_config"])
    tc = cfg["train_config"]
    backbone = Backbone(tc["arch"], tc["encoder"], None)
    model = method.build(len(cfg["dataset"]["classes"]), method_config, backbone)
    ckpt.load_weights(model, weights)
    return method, model.to(pick_device(device)).eval(), cfg


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

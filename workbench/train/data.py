"""The training and validation datasets of a run, their loaders and the data fingerprint a resume checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import torch
from torch.utils.data import DataLoader, DistributedSampler

from workbench.data.augment import Augment
from workbench.data.dataset import SegmentationDataset, parse_supervision
from workbench.data.folder import DatasetError, DatasetInfo, list_split, load_dataset_info
from workbench.data.synthetic import SyntheticConfig, ensure_synthetic
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import WeakLabelError, load_weak_labels
from workbench.train import dist
from workbench.train.config import ConfigError, TrainConfig


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
    for name in (config.train_split, config.val_split):
        check_split_count(info, name)
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


def check_split_count(info: DatasetInfo, split: str) -> None:
    """A split whose folder holds another number of images than dataset.json says (a partial copy, a
    stale count) is refused, as ``data validate`` reports it, instead of training on it without a word."""
    declared = info.splits.get(split)
    if declared is None:  # a carved split (tune, train-tune) or one dataset.json does not count
        return
    found = len(list_split(info, split))
    if found != declared:
        raise DatasetError(
            f"{info.root}/dataset.json: splits.{split} says {declared} images, the folder has {found}; restore "
            f"the missing images or correct the count (`python -m workbench data validate {info.root}` lists both)"
        )


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


def diagnostics_dataset(
    train_ds: SegmentationDataset, config: TrainConfig, limit: int | None = None
) -> SegmentationDataset:
    """The training images (the first ``limit``) with their training labels *and* ground truth, unaugmented:
    only for a method's ``train_diagnostics`` report, never for a training batch."""
    limits = [n for n in (config.limit_train, limit) if n is not None]
    return SegmentationDataset(
        train_ds.info, config.train_split, "+".join(train_ds.kinds), size=train_ds.size, include_gt=True,
        weak_labels=load_weak_labels(config.weak_labels) if config.weak_labels else None,
        simulation=config.simulation, class_split=train_ds.class_split, limit=min(limits) if limits else None,
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


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out

"""Scoring a model on a split (confusion matrices at full resolution) and writing predictions of a trained run."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.dataset import SegmentationDataset
from workbench.data.folder import DatasetError, list_split, load_dataset_info, read_image
from workbench.inference import predict_image
from workbench.io import save_index_png
from workbench.labels.splits import ClassSplit
from workbench.metrics import confusion_matrix, summarize
from workbench.train import dist
from workbench.train.config import TrainConfig
from workbench.train.data import make_loader
from workbench.train.runs import load_run


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


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
        with autocast(device, config.amp):
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


def predict_files(run: str | Path, images: list[Path], out_dir: Path, device: str = "auto") -> list[Path]:
    """Write one palette PNG index mask per image into ``out_dir`` (``NAME.png`` for image ``NAME.*``).

    Two images of one name (``a/x.jpg``, ``b/x.png``) would write one mask over the other: refused first.
    """
    by_stem: dict[str, Path] = {}
    for path in map(Path, images):
        if path.stem in by_stem:
            raise DatasetError(
                f"{by_stem[path.stem]} and {path} would both be predicted into {out_dir / (path.stem + '.png')}; "
                "predict them into separate --out folders"
            )
        by_stem[path.stem] = path
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
    return predict_files(run, [info.image_path(split, n) for n in list_split(info, split)], out_dir, device)

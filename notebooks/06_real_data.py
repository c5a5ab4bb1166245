# %% [markdown]
# # 06 · Real data: CamVid, MSRC-21, your own folder, GPUs and torchrun
#
# Every dataset the workbench reads is a folder in one format, so moving from the synthetic scenes
# to real images is a path. This notebook
#
# 1. opens **CamVid** (road scenes, 11 classes) and **MSRC-21** (objects, 21 classes) from a folder
#    path, validates them and looks at their labels;
# 2. trains a weakly supervised model on one of them;
# 3. writes **your own** dataset folder from arrays, shows what validation says when a file is
#    wrong, and trains on it;
# 4. shows the commands for a **GPU** and for several processes with **torchrun**.
#
# The real datasets are not in the repository (their licences do not allow redistribution). When
# the folder below is absent, sections 1 and 2 say so and are skipped.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": a smoke-sized run, ~20 s of CPU time; "full": the README's CamVid run
WORKDIR = "runs/tutorials"  # runs and the example dataset folder of this notebook go here
DATASETS = ""  # folder holding camvid/ and msrc21/; "" means ../shared/datasets beside the repository
TRAIN_ON = "camvid"  # or "msrc21"
THREADS = 2  # CPU threads torch may use (notebook 00 explains the two thread settings)

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # a value set outside the notebook wins
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # both are read once, when torch loads OpenMP
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# %%
import json
from dataclasses import replace
from pathlib import Path

import holoviews as hv
import numpy as np
from IPython.display import display
from PIL import Image
from skimage.draw import disk

import workbench
from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask, validate_dataset
from workbench.inference import predict_image
from workbench.io import save_index_png
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import SimulationConfig, simulate
from workbench.methods import partial_ce, supervised
from workbench.train import load_run, train
from workbench.train.config import TrainConfig, pick_device
from workbench.viz import bench_results, plots, views
from workbench.viz.offline_panel import offline_extension

offline_extension()  # hv.extension("bokeh") with BokehJS inline: renders with no internet

SIZES = {  # "full" is the CPU budget of the README's CamVid command (about 10 minutes a run on 2 cores)
    "tiny": {"image_size": (90, 120), "limit_train": 24, "limit_val": 8, "epochs": 2, "batch_size": 8},
    "full": {"image_size": (120, 160), "limit_train": None, "limit_val": None, "epochs": 40, "batch_size": 8},
}[SCALE]
work = Path(WORKDIR) / "06_real_data"
datasets = Path(DATASETS) if DATASETS else Path(workbench.__file__).resolve().parents[2] / "shared" / "datasets"
available = {n: datasets / n for n in ("camvid", "msrc21") if (datasets / n / "dataset.json").is_file()}
if available:
    print(f"found {sorted(available)} under {datasets}")
else:
    print(
        f"SKIPPED sections 1-2: no camvid/ or msrc21/ with a dataset.json under {datasets}. "
        "Set DATASETS to the folder that holds them (sections 3-4 run without them)."
    )

# %% [markdown]
# ## 1. Two real datasets from a folder path
#
# `load_dataset_info` reads `dataset.json`: class names and colours, the ignore index (void pixels,
# dropped everywhere), the splits and the weak-shot protocols. `validate_dataset` reads every file
# of the splits asked for and returns a list of problems, each naming the file and the fix (empty:
# all is well).

# %%
for name, root in available.items():
    info = load_dataset_info(root)
    problems = validate_dataset(root, splits=["val"] if SCALE == "tiny" else None)
    first = read_image(info.image_path("val", list_split(info, "val")[0]))
    print(f"{name}: {info.num_classes} classes, splits {info.splits}, images like {first.shape}")
    print(f"  protocols {info.protocols}; validation problems: {problems or 'none'}")

# %% [markdown]
# CamVid and MSRC-21 differ in what weak labels are worth. CamVid images hold most of its classes
# (tags say little: every image has road, sky, building...); MSRC-21 images hold two or three of
# 21 (tags are informative). The pixel share of each class, on some validation masks, and the
# number of tags per image:

# %%
for name, root in available.items():
    info = load_dataset_info(root)
    masks = [read_mask(info.mask_path("val", n), info) for n in list_split(info, "val")[:20]]
    counts = sum(np.bincount(m.ravel(), minlength=256)[: info.num_classes] for m in masks)
    tags = np.mean([len(np.unique(m[m < info.num_classes])) for m in masks])
    bars = hv.Bars(list(zip(info.classes, counts / counts.sum())), "class", "pixel share")
    display(bars.opts(xrotation=45, width=600, height=260, title=f"{name}: {tags:.1f} tags per image"))

# %%
for root in available.values():
    info = load_dataset_info(root)
    colors = np.asarray(info.colors, dtype=np.uint8)
    image_name = list_split(info, "val")[0]
    image, mask = read_image(info.image_path("val", image_name)), read_mask(info.mask_path("val", image_name), info)
    weak = simulate(mask, ["points", "scribbles"], SimulationConfig(), key=image_name, num_classes=info.num_classes)
    split = ClassSplit.from_protocol(info.classes, info.protocols, next(iter(info.protocols)))
    masks = {"ground truth": mask, f"weak-shot {split.name}: novel hidden": split.hide_novel(mask)}
    display(
        plots.mask_row(image, masks, colors, cols=4)
        + plots.fit(plots.weak_label_view(image, weak, colors, title="simulated clicks and scribbles"), mask.shape, 4)
    )

# %% [markdown]
# ## 2. Training on a real dataset
#
# The same `train` call as on synthetic data, with a working size (`image_size`, height and width;
# the model runs at this size, evaluation compares at each image's full resolution). Partial
# cross-entropy on simulated scribbles. With `SCALE = "tiny"` (24 images, 2 epochs) this is a smoke
# test of the pipeline, not a result: beside it, the committed benchmark's row for the same method
# and labels (`bench/results/label_efficiency_<dataset>_<regime>.json`, read from the file) says what the
# comparison gives at full scale. `SCALE = "full"` gives the README's CPU run
# (`python -m workbench train --method partial_ce --supervision=scribbles --data ... --image_size=120,160 --epochs=40`).

# %%
if TRAIN_ON in available:
    info = load_dataset_info(available[TRAIN_ON])
    info_stuff = bench_results.stuff_classes(TRAIN_ON)
    colors = np.asarray(info.colors, dtype=np.uint8)
    config = TrainConfig(
        data=str(available[TRAIN_ON]), out=str(work / TRAIN_ON), supervision="scribbles", overwrite=True, **SIZES
    )
    summary = train(partial_ce, partial_ce.Config(), config)
    method, model, cfg = load_run(work / TRAIN_ON)
    image_name = list_split(info, "val")[0]
    image = read_image(info.image_path("val", image_name))
    prediction = predict_image(method, model, image, tuple(cfg["image_size"]))
    display(views.iou_bars(summary, f"{TRAIN_ON}, partial CE on scribbles").opts(width=plots.PAGE_WIDTH // 2))
    truth = read_mask(info.mask_path("val", image_name), info)
    display(plots.mask_row(image, {"ground truth": truth, "prediction": prediction}, colors))
    rows = {"partial CE, scribbles": "partial_ce/scribbles"}
    candidates = [f"label_efficiency_{TRAIN_ON}{regime}" for regime in ("_pretrained", "_scratch", "")]
    name, full_scale = bench_results.find_result(candidates, rows.values())
    print(f"committed: bench/results/{name}.json, {bench_results.settings(full_scale)}")
    display(bench_results.tiny_vs_full({"partial CE, scribbles": summary}, full_scale, rows, info_stuff).round(3))
else:
    print(f"SKIPPED: {TRAIN_ON!r} is not under {datasets}")

# %% [markdown]
# ## 3. Your own dataset folder
#
# Write the folder, then validate it:
#
# ```
# my_dataset/
#   dataset.json                 name, classes, colors, ignore_index, splits (+ optional protocols)
#   images/<split>/NAME.png      RGB (grayscale, RGBA and 16-bit are converted)
#   masks/<split>/NAME.png       8-bit index PNG: class index per pixel, ignore_index = void
# ```
#
# Here the images are drawn from arrays (a noisy background and a disc); yours come from a camera,
# a microscope or an export. Layouts of VOC, ADE20K and COCO-Stuff convert in one command:
# `python -m workbench data convert VOCdevkit/VOC2012 --layout voc --out data/voc`.

# %%
root = work / "my_dataset"
classes, palette = ["background", "blob"], [[40, 40, 40], [230, 80, 30]]
rng = np.random.default_rng(0)
splits = {"train": 16, "val": 4}
for split, count in splits.items():
    for i in range(count):
        image = rng.integers(0, 80, (48, 64, 3)).astype(np.uint8)  # (H, W, 3) uint8
        mask = np.zeros((48, 64), np.uint8)  # (H, W) class ids
        rows, cols = disk(rng.integers(12, 36, 2), rng.integers(6, 12), shape=mask.shape)
        image[rows, cols], mask[rows, cols] = (200, 90, 40), 1
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / split / f"{split}_{i:03d}.png")
        save_index_png(root / "masks" / split / f"{split}_{i:03d}.png", mask, palette)
doc = {"name": "my_dataset", "classes": classes, "colors": palette, "ignore_index": 255, "splits": splits}
(root / "dataset.json").write_text(json.dumps(doc, indent=1))
print(f"validation problems: {validate_dataset(root) or 'none'}")

# %% [markdown]
# A mask with a value that is neither a class nor the ignore index is the most common mistake.
# Validation names the file and says what to fix:

# %%
bad = root / "masks" / "val" / "val_000.png"
good_mask = np.asarray(Image.open(bad))
save_index_png(bad, np.full_like(good_mask, 7), palette)
for problem in validate_dataset(root):
    print(problem)
save_index_png(bad, good_mask, palette)  # put the good mask back
assert validate_dataset(root) == []

# %%
mine_config = TrainConfig(data=str(root), out=str(work / "my_run"), epochs=2, overwrite=True)  # re-runs replace it
mine = train(supervised, supervised.Config(), mine_config)
print(f"my_dataset: mIoU {mine['miou']:.3f} after 2 epochs")

# %% [markdown]
# ## 4. On a GPU, and with torchrun
#
# Nothing changes in the code: `device="auto"` (the default) picks CUDA when there is one, and on
# CUDA the forward pass runs under bf16 autocast (`amp=True`). `channels_last=True` and
# `compile=True` are worth trying on recent GPUs; `num_workers` loads images in parallel.

# %%
device = pick_device("auto")
print(f"this kernel would train on {device}; CUDA available: {torch.cuda.is_available()}")
gpu = replace(TrainConfig(), device="cuda", channels_last=True, num_workers=4, batch_size=16)
print({k: getattr(gpu, k) for k in ("device", "amp", "channels_last", "compile", "num_workers", "batch_size")})

# %% [markdown]
# From a terminal (these are not run here):
#
# ```bash
# # one GPU: the same command, at CamVid's full resolution
# python -m workbench train --method spml --supervision=points --data ../shared/datasets/camvid \
#     --image_size=360,480 --epochs=60 --batch_size=16 --num_workers=4 --channels_last=true --out runs/camvid-spml
#
# # several GPUs (or CPU processes) on one machine: one process per device under torchrun;
# # batch_size is the global batch (divisible by the number of processes), rank 0 writes the run
# torchrun --standalone --nproc-per-node 4 -m workbench train --method spml --supervision=points \
#     --data ../shared/datasets/camvid --image_size=360,480 --epochs=60 --batch_size=32 --out runs/camvid-spml-ddp
#
# # evaluate or predict with any run, on any machine
# python -m workbench eval --checkpoint runs/camvid-spml --data ../shared/datasets/camvid --split val
# ```
#
# Under torchrun every process joins one process group (NCCL on GPUs, gloo on CPUs), the model is
# wrapped in DistributedDataParallel, each process reads its share of every global batch, and the
# confusion matrices of evaluation are summed across processes, so the reported mIoU is the same
# as with one process.
#
# ## Exercises
#
# 1. Set `TRAIN_ON = "msrc21"`: its images differ in size, which `image_size` handles. Which classes
#    reach a non-zero IoU in the tiny run, and why those?
# 2. Train on CamVid with `supervision="points"` and compare the annotation cost
#    (`make_datasets(...)[0].annotation_cost()`) with scribbles.
# 3. Train `simformer` on MSRC-21 with `protocol="objects5"` (notebook 04): base, novel and harmonic
#    mIoU on real objects.
# 4. Make your own dataset harder: add a second shape class and a `weak_shot_protocols` entry to its
#    `dataset.json`, then train `transfer` with that protocol.
# 5. On a machine with two GPUs, time one epoch with and without torchrun
#    (`metrics.jsonl` records `images_per_s`).

# %% [markdown]
# # 00 · Quickstart: from weak labels to a segmentation model
#
# The workbench trains a segmentation model from *cheap* labels (image tags, clicks, scribbles,
# boxes) instead of dense masks, and lets you inspect what it learned. This notebook is one pass
# through the whole pipeline:
#
# 1. **data**: a small synthetic dataset in the workbench's folder format;
# 2. **weak labels**: scribbles simulated from the dense masks;
# 3. **train**: partial cross-entropy on the scribbles, and full supervision with the same budget;
# 4. **evaluate**: per-class IoU and mIoU on the validation split;
# 5. **look**: predictions, the confusion matrix and the training curve.
#
# Everything runs on a CPU. The notebook only *calls* `workbench`; every function used here is
# documented and tested in the package. `notebooks/README.md` lists all the tutorials, their run
# times and the order to read them in.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": about a minute on 2 idle CPU cores; "full": the demo's sizes (a few minutes)
WORKDIR = "runs/tutorials"  # the synthetic data and the run directories of this notebook go here
THREADS = 2  # CPU threads torch may use; on a machine busy with other jobs, fewer threads than cores is faster

# %% [markdown]
# **Threads.** PyTorch runs its CPU kernels on OpenMP threads. Two settings matter on a laptop or
# a machine shared with other jobs, and both must come before `torch` is first imported:
# `OMP_WAIT_POLICY=PASSIVE` makes idle threads sleep instead of spinning (spinning threads can slow
# a training step on a busy 2-core machine tenfold), and `OMP_NUM_THREADS` with
# `torch.set_num_threads` caps the threads. `THREADS` sets both, unless `OMP_NUM_THREADS` was
# already set outside the notebook (e.g. `OMP_NUM_THREADS=1 jupyter lab`): then that value wins.

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # a value set outside the notebook wins
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # both are read once, when torch loads OpenMP
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# %%
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
from workbench.data.synthetic import STUFF, ensure_sized_synthetic
from workbench.inference import predict_image
from workbench.labels.weak_labels import IGNORE, UNLABELED, SimulationConfig, rasterize, simulate
from workbench.methods import partial_ce, supervised
from workbench.metrics import format_summary
from workbench.train import TrainConfig, load_run, make_datasets, train
from workbench.train.checkpoint import read_jsonl
from workbench.viz import bench_results, plots, views
from workbench.viz.offline_panel import offline_extension

offline_extension()  # hv.extension("bokeh") with BokehJS inline: renders with no internet

SIZES = {
    "tiny": {"side": 48, "train": 64, "val": 16, "epochs": 8, "batch_size": 8},
    "full": {"side": 64, "train": 256, "val": 64, "epochs": 15, "batch_size": 16},
}[SCALE]
work = Path(WORKDIR) / "00_quickstart"
SIZES

# %% [markdown]
# ## 1. Data
#
# A dataset is a folder: `dataset.json` (class names, colours, splits, the ignore index),
# `images/<split>/` and `masks/<split>/` (8-bit index PNGs). The built-in generator writes such a
# folder of synthetic scenes: three "stuff" classes (sky, grass, sand) and five object shapes whose
# colours are sometimes swapped, so a model has to look at shape as well as colour.

# %%
data_root = ensure_sized_synthetic(WORKDIR, SIZES["side"], SIZES["train"], SIZES["val"])
info = load_dataset_info(data_root)
colors = np.asarray(info.colors, dtype=np.uint8)
names = list_split(info, "train")
print(f"{info.name}: {info.num_classes} classes {list(info.classes)}; splits {info.splits}")
plots.class_legend(info.classes, colors)

# %%
name = names[0]
image = read_image(info.image_path("train", name))  # (H, W, 3) uint8
mask = read_mask(info.mask_path("train", name), info)  # (H, W) uint8 class ids, 255 = void
plots.mask_row(image, {"ground truth": mask}, colors)

# %% [markdown]
# ## 2. Weak labels
#
# `simulate` turns a dense mask into weak labels the way papers simulate annotators: **tags**
# (the classes present), **points** (clicks inside each connected region), **scribbles** (strokes
# along each region's skeleton) and **boxes** (one per connected component). It is seeded by the
# image name, so every run sees the same labels.
#
# `rasterize` turns them into a sparse label map. Its convention is shared by every method:
# values $0..C-1$ are classes, `UNLABELED` = 254 is a valid pixel nobody labelled, `IGNORE` = 255
# is void or padding. In the figures, unlabelled pixels are **hatched grey**: what is not hatched
# is all a sparse loss ever sees.

# %%
weak = simulate(mask, ["scribbles"], SimulationConfig(seed=0), key=name, num_classes=info.num_classes)
sparse = rasterize(weak)  # (H, W) uint8
labelled = (sparse < info.num_classes).mean()
print(f"{len(weak.scribbles)} scribbles label {labelled:.1%} of the pixels; values: {np.unique(sparse).tolist()}")
print(f"UNLABELED={UNLABELED}, IGNORE={IGNORE}")
strokes = plots.fit(plots.weak_label_view(image, weak, colors, title="scribbles as strokes"), image.shape, cols=3)
strokes + plots.mask_row(
    image, {"ground truth": mask, "scribbles, rasterised": sparse}, colors, cols=3, show_image=False
)

# %% [markdown]
# ## 3. Train
#
# **Partial cross-entropy** is the baseline every sparse-label method must beat: the ordinary
# cross-entropy, summed only over the set $\Omega_L$ of labelled pixels,
#
# $$\mathcal{L}_{\text{pCE}} = -\frac{1}{|\Omega_L|} \sum_{i \in \Omega_L} \log p_{i, y_i},$$
#
# where $p_i = \operatorname{softmax}(f_\theta(x))_i$ is the model's class distribution at pixel
# $i$. Unlabelled (254) and void (255) pixels contribute nothing. **Full supervision** is the same
# loss with $\Omega_L$ = every non-void pixel: the upper bound, trained with the same model and
# budget.
#
# `train(method, method_config, TrainConfig)` builds the data and the model (an smp U-Net with a
# ResNet-18 encoder, from scratch), runs the epochs and writes a run directory: `config.json`,
# `metrics.jsonl`, a safetensors checkpoint and `report.json` / `report.md`.

# `eval_every=1` evaluates on the validation split after every epoch, for the learning curves below.

# %%
base = TrainConfig(
    data=str(data_root),
    epochs=SIZES["epochs"],
    batch_size=SIZES["batch_size"],
    log_every=2,
    eval_every=1,
    overwrite=True,  # re-running the notebook replaces its runs
)
plan = {"partial CE, scribbles": (partial_ce, "scribbles"), "supervised, dense": (supervised, "dense")}
summaries, run_dirs = {}, {}
for label, (method, supervision) in plan.items():
    run_dirs[label] = work / supervision
    config = replace(base, supervision=supervision, out=str(run_dirs[label]))
    summaries[label] = train(method, method.Config(), config)
    print(f"{label}: mIoU {summaries[label]['miou']:.3f} -> {run_dirs[label]}")

# %% [markdown]
# ## 4. Evaluate
#
# Evaluation sums **one** confusion matrix over the whole validation split (each prediction resized
# back to the image's own resolution), then computes per-class IoU $= TP / (TP + FP + FN)$ and
# mIoU, their mean. The weak model's mIoU divided by the supervised one's is the *label
# efficiency* of the scribbles.
#
# One mean over all eight classes hides what matters: the three "stuff" classes (sky, grass, sand)
# are large, textured and easy, the five objects are small and hard. So the tables split mIoU into
# **stuff** and **object** classes; an object mIoU near 0 means the model learnt the background only.

# %%
weak_summary, full_summary = summaries["partial CE, scribbles"], summaries["supervised, dense"]
print(format_summary(weak_summary))
cost = make_datasets(partial_ce, replace(base, supervision="scribbles"))[0].annotation_cost()  # no training
print(
    f"scribbles label {cost['labelled_fraction']:.1%} of the training pixels ({cost['clicks_per_image']:.1f} strokes per image)"
)
split = pd.DataFrame({k: bench_results.split_miou(s["per_class_iou"], STUFF) for k, s in summaries.items()}).T
split.loc["ratio (scribbles / dense)"] = split.iloc[0] / split.iloc[1]
split.round(3)

# %%
plots.runs_bars(summaries, title="per-class IoU on the validation split")

# %% [markdown]
# **Scale caveat.** These are tiny runs: 48x48 scenes, 64 training images, 8 epochs, a U-Net from
# scratch. They show the pipeline, not the methods' real gap. The same comparison at full scale on
# real road scenes, read from the committed CamVid benchmark in `bench/results/` (the printed line
# names the file, budget and regime: ImageNet-pretrained when that table is committed, else from scratch), sits below
# this run's numbers: there scribbles come close to dense
# masks in mIoU, dense masks keep the lead on the stuff classes, and the small objects (poles, signs,
# pedestrians, bicyclists) stay hard for both at this budget. Papers report far higher numbers
# because they start from ImageNet weights and train much longer (notebook 07).

# %%
rows = {"partial CE, scribbles": "partial_ce/scribbles", "supervised, dense": "supervised/dense"}
name, full_scale = bench_results.find_result(["label_efficiency_camvid_pretrained", "camvid_baselines"], rows.values())
print(f"committed: bench/results/{name}.json, {bench_results.settings(full_scale)}")
bench_results.tiny_vs_full(summaries, full_scale, rows, STUFF).round(3)

# %% [markdown]
# ## 5. Look at the result
#
# `load_run` rebuilds the model from a run directory; `predict_image` runs it on any image at the
# run's working size and resizes the prediction back.

# %%
method, model, cfg = load_run(run_dirs["partial CE, scribbles"])
val_name = list_split(info, "val")[0]
val_image = read_image(info.image_path("val", val_name))
prediction = predict_image(method, model, val_image, tuple(cfg["image_size"]))
val_mask = read_mask(info.mask_path("val", val_name), info)
plots.mask_row(val_image, {"ground truth": val_mask, "prediction (partial CE, scribbles)": prediction}, colors)

# %% [markdown]
# The learning curves: the training loss at every logged optimisation step (log scale) and the
# validation mIoU after every epoch, one line per run. The two losses are not comparable in
# value (one averages over the scribbled pixels, the other over all pixels); their shapes are.

# %%
records = [{**r, "run": label} for label, d in run_dirs.items() for r in read_jsonl(d / "metrics.jsonl")]
plots.curves(records)

# %%
views.confusion_heatmap(weak_summary["confusion_matrix"], info.classes).opts(
    title="partial CE on scribbles: confusion, rows normalised"
)

# %% [markdown]
# The same from a terminal:
#
# ```bash
# python -m workbench train --method partial_ce --supervision=scribbles --epochs=15 --out runs/scribbles
# python -m workbench eval --checkpoint runs/scribbles --data data/synthetic --split val
# ```
#
# ## Exercises
#
# 1. Train `partial_ce` on `supervision="points"` instead of scribbles. How much mIoU do you lose,
#    and how many labelled pixels did you save? `make_datasets(method, config)` (imported above)
#    builds the training and validation datasets a run would use without training;
#    `make_datasets(partial_ce, replace(base, supervision="points"))[0].annotation_cost()` gives the
#    labelled pixels and clicks per training image.
# 2. Set `SCALE = "full"` and re-run: does the ratio to full supervision change with more data?
# 3. Which class has the lowest IoU? Use the confusion matrix to say what it is confused with, and
#    guess why from the generator's description (shapes, borrowed colours).
# 4. Change `scribble_fraction` in `TrainConfig` (the share of each skeleton kept) to 0.25: is a
#    quarter of the ink worth a quarter of the mIoU?

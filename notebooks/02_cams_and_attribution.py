# %% [markdown]
# # 02 · CAMs and attribution
#
# Where does a model look when it says "disc"? This notebook answers with three attribution
# methods and then asks the question that matters for weak supervision: **how good are the
# pseudo-masks** made from such maps, compared with masks grown from a few clicks?
#
# 1. **CAM** (Zhou et al., CVPR 2016) of a tag classifier, exact for global-average-pooling + linear;
# 2. **Grad-CAM** (Selvaraju et al., ICCV 2017) on a *segmentation* model, ours and captum's;
# 3. **Integrated gradients** (Sundararajan et al., ICML 2017) with captum;
# 4. **CAM pseudo-masks vs point pseudo-masks**: the `cam` method's masks from tags against the
#    `single_stage` method's masks grown from one click per region.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": about a minute on 2 idle CPU cores; "full": 64x64 scenes, 256 images, 20 epochs
WORKDIR = "runs/tutorials"  # the synthetic data and the run directories of this notebook go here
IG_STEPS = 16  # integration steps of integrated gradients (captum's default is 50)
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

import holoviews as hv
import numpy as np
import pandas as pd
import torch.nn.functional as F
from captum.attr import IntegratedGradients

from workbench.data.dataset import normalize_image
from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
from workbench.data.synthetic import STUFF, ensure_sized_synthetic
from workbench.labels.weak_labels import SimulationConfig, rasterize, simulate
from workbench.methods import cam, single_stage
from workbench.train import TrainConfig, load_run, train
from workbench.viz import bench_results, plots, views
from workbench.viz.offline_panel import offline_extension

offline_extension()  # hv.extension("bokeh") with BokehJS inline: renders with no internet

SIZES = {
    "tiny": {"side": 48, "train": 48, "val": 16, "epochs": 8, "batch_size": 8},
    "full": {"side": 64, "train": 256, "val": 64, "epochs": 20, "batch_size": 16},
}[SCALE]
work = Path(WORKDIR) / "02_cams_and_attribution"
side = SIZES["side"]
data_root = ensure_sized_synthetic(WORKDIR, SIZES["side"], SIZES["train"], SIZES["val"])
info = load_dataset_info(data_root)
C, colors = info.num_classes, np.asarray(info.colors, dtype=np.uint8)

# %% [markdown]
# ## Two models to explain
#
# * `cam` learns from **tags** only. A classifier (global average pooling + linear over the encoder's
#   features) learns the tags with binary cross-entropy; its class activation maps become
#   pseudo-masks; a U-Net segmenter learns from those, in the same run. `cam_stage=-2` reads the
#   encoder at stride 16 instead of 32: coarse maps are the weak spot of CAMs on small images.
# * `single_stage` learns from **one click per region**: every step it grows a pseudo-mask from the
#   clicks over its own pixel embeddings and learns from both.

# %%
base = TrainConfig(
    data=str(data_root), epochs=SIZES["epochs"], batch_size=SIZES["batch_size"], log_every=5, overwrite=True
)  # overwrite: re-running the notebook replaces its runs
cam_config, point_config = cam.Config(cam_stage=-2), single_stage.Config()
cam_summary = train(cam, cam_config, replace(base, supervision="tags", out=str(work / "cam")))
point_summary = train(single_stage, point_config, replace(base, supervision="points", out=str(work / "points")))
print(f"cam (tags) mIoU {cam_summary['miou']:.3f}; single_stage (points) mIoU {point_summary['miou']:.3f}")
split = {
    "cam (tags)": bench_results.split_miou(cam_summary["per_class_iou"], STUFF),
    "single_stage (points)": bench_results.split_miou(point_summary["per_class_iou"], STUFF),
}
print(pd.DataFrame(split).T.round(3))
_, cam_model, _ = load_run(work / "cam", device="cpu")
_, point_model, _ = load_run(work / "points", device="cpu")

# %% [markdown]
# One training image, its tags and the class we explain (its first object class, else its first
# class):

# %%
name = list_split(info, "train")[0]
image = read_image(info.image_path("train", name))  # (H, W, 3) uint8, already at the working size
gt = read_mask(info.mask_path("train", name), info)  # (H, W) uint8
x = normalize_image(image)[None]  # (1, 3, H, W)
tags = torch.zeros(1, C)
tags[0, [int(c) for c in np.unique(gt) if c < C]] = 1.0
present = [c for c in range(C) if tags[0, c] > 0]
cls = next((c for c in present if info.classes[c] not in ("sky", "grass", "sand")), present[0])
print(f"{name}: tags {[info.classes[c] for c in present]}; explaining {info.classes[cls]!r}")

# %% [markdown]
# ## 1. CAM
#
# For a classifier $S_c = \frac{1}{Z}\sum_{x} \sum_k w_{ck} A_k(x)$ (global average pooling of the
# feature maps $A_k$, then a linear layer), the score of class $c$ is the spatial mean of
#
# $$\mathrm{CAM}_c(x) = \sum_k w_{ck}\, A_k(x),$$
#
# so $\mathrm{CAM}_c$ says exactly how much each location adds to the score. `cam.fast_cams` computes
# it with one einsum, keeps the positive part, upsamples it bilinearly and divides by its maximum.

# %%
with torch.no_grad():
    features = cam_model(x, segment=False)["features"]  # (1, K, h, w)
    cams = cam.fast_cams(cam_model.head, features, (side, side), tags)  # (1, C, H, W) in [0, 1]
print(f"features {tuple(features.shape)} -> CAMs {tuple(cams.shape)}")
hv.Layout(
    [plots.heat_panel(image, cams[0, c].numpy(), f"CAM: {info.classes[c]}", "CAM / its max", cols=4) for c in present]
).cols(4)

# %% [markdown]
# ## 2. Grad-CAM, ours and captum's
#
# Grad-CAM replaces the linear weights by the spatially averaged gradient of the score, so it works
# for any layer of any model:
#
# $$\alpha_k^c = \frac{1}{Z}\sum_x \frac{\partial S_c}{\partial A_k(x)}, \qquad
# L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A_k\Big).$$
#
# On the GAP + linear classifier, $\alpha_k^c = w_{ck}/Z$: Grad-CAM *is* the CAM up to a positive
# factor. `cam.gradcam` is a few lines of torch; `cam.gradcam_captum` calls captum's
# `LayerGradCam(..., relu_attributions=True)` with bilinear upsampling. Both run on an eval-mode copy
# with in-place ReLUs turned off (captum's hooks and in-place operations do not mix).

# %%
ours = cam.gradcam(cam_model, x, cls)[0]  # (H, W), not normalised
theirs = cam.gradcam_captum(cam_model, x, cls)[0]
exact = cams[0, cls]
print(f"ours vs captum: max |difference| {float((ours - theirs).abs().max()):.2e}")
print(f"Grad-CAM / max vs CAM: max |difference| {float((ours / ours.max().clamp(min=1e-12) - exact).abs().max()):.2e}")

# %% [markdown]
# On a **segmentation** model the output is a map $(C, H, W)$, not a score. Following captum's
# segmentation tutorial, the score of class $c$ is the sum of the logits of the pixels whose arg-max
# is $c$, with the arg-max frozen once from the unperturbed image:
#
# $$S_c(x') = \sum_{i:\ \arg\max_k f(x)_{k,i} = c} f(x')_{c,i}.$$
#
# The layer decides the resolution: the encoder's deepest stage (`encoder.layer4`, stride 32) or a
# decoder block (`decoder.blocks.3`, stride 2). Here we explain the `cam` model's segmenter, for a
# class it predicts somewhere (the score of a class with no predicted pixel is identically 0).

# %%
segmenter = cam_model.seg
with torch.no_grad():
    seg_pred = segmenter(x).argmax(1)[0].byte().numpy()  # (H, W)
predicted = np.bincount(seg_pred.ravel(), minlength=C)  # pixels predicted per class
seg_cls = cls if predicted[cls] > 0 else int(predicted.argmax())  # a class with no predicted pixel scores 0
print(f"explaining {info.classes[seg_cls]!r}: {predicted[seg_cls]} pixels predicted")
deep = cam.gradcam_captum(segmenter, x, seg_cls)[0].numpy()
fine = cam.gradcam_captum(segmenter, x, seg_cls, layer="decoder.blocks.3")[0].numpy()
deep, fine = deep / max(deep.max(), 1e-12), fine / max(fine.max(), 1e-12)  # each map to [0, 1]
(
    plots.mask_row(image, {"ground truth": gt, "segmenter prediction": seg_pred}, colors, cols=4, show_image=False)
    + plots.heat_panel(image, deep, "Grad-CAM at encoder.layer4", "Grad-CAM / its max", cols=4)
    + plots.heat_panel(image, fine, "Grad-CAM at decoder.blocks.3", "Grad-CAM / its max", cols=4)
).cols(4)

# %% [markdown]
# ## 3. Integrated gradients
#
# Gradients at one input are local; integrated gradients average them along the straight path from
# a baseline $x'$ (here the mean image: zeros after normalisation) to the input:
#
# $$\mathrm{IG}_i(x) = (x_i - x'_i) \int_0^1 \frac{\partial S_c\big(x' + \alpha (x - x')\big)}{\partial x_i}\, d\alpha.$$
#
# The attributions add up to $S_c(x) - S_c(x')$ (completeness); captum returns the gap left by the
# finite Riemann sum as the *convergence delta*. The scoring function is the same frozen-arg-max sum
# as above; integrated gradients need no layer, so in-place ReLUs are harmless here.

# %%
segmenter.eval()
with torch.no_grad():
    selector = F.one_hot(segmenter(x).argmax(1), C).permute(0, 3, 1, 2).float()  # (1, C, H, W), frozen


def class_scores(inputs: torch.Tensor) -> torch.Tensor:  # (B, C): summed logits of each class's pixels
    return (segmenter(inputs) * selector).sum((2, 3))


ig, delta = IntegratedGradients(class_scores).attribute(
    x, baselines=torch.zeros_like(x), target=seg_cls, n_steps=IG_STEPS, return_convergence_delta=True
)
per_pixel = ig[0].sum(0).detach().numpy()  # (H, W): summed over the colour channels
with torch.no_grad():
    gap = float(class_scores(x)[0, seg_cls] - class_scores(torch.zeros_like(x))[0, seg_cls])
print(
    f"sum of attributions {float(ig.sum()):.3f}; S(x) - S(x') = {gap:.3f}; delta {float(delta[0]):.3f} ({IG_STEPS} steps)"
)
limit = float(np.abs(per_pixel).max()) or 1.0
plots.fit(views.image_element(image, title="image"), image.shape, cols=2) + plots.heat_panel(
    image,
    per_pixel,
    f"integrated gradients for {info.classes[seg_cls]!r}",
    "attribution (red +, blue -)",
    clim=(-limit, limit),
    cmap="RdBu_r",
    cols=2,
    alpha=0.85,
)

# %% [markdown]
# ## 4. CAM pseudo-masks vs point pseudo-masks
#
# What a weakly supervised segmenter learns from is a pseudo-mask, so its quality bounds the result.
#
# * **CAM pseudo-mask** (tags): each pixel takes the arg-max over the tagged classes of the
#   normalised CAMs, or stays unlabelled where the largest is below `bg_threshold` ($0.2$).
# * **Point pseudo-mask** (one click per region, `single_stage`): every pixel $x$ is scored against
#   every click $p$ by feature, colour and spatial similarity,
#   $s_p(x) = e^{\kappa(\cos(f_x, f_p) - 1)}\, e^{-\lVert c_x - c_p\rVert^2 / 2\sigma_c^2}\, e^{-\lVert x - p\rVert^2 / 2\sigma_p^2}$,
#   and takes the class of its best click if $s_p(x) > \tau$.
#
# `views.cam_vs_pseudo_view` shows both for one class with their IoU against the ground truth.

# %%
points = rasterize(simulate(gt, ["points"], SimulationConfig(), key=name, num_classes=C))  # as in training
with torch.no_grad():
    cam_pseudo = cam.cam_pseudo_mask(cams, cam_config.bg_threshold)[0]
    embed = point_model(x)["embed"]
    point_pseudo = single_stage.pseudo_mask(embed, x, torch.from_numpy(points.astype(np.int64))[None], C, point_config)[
        0
    ]
cam_pseudo, point_pseudo = cam_pseudo.clamp(max=255).byte().numpy(), point_pseudo.clamp(max=255).byte().numpy()
views.cam_vs_pseudo_view(
    image, exact.numpy(), point_pseudo, gt, cls, info.classes, colors, cam_config.bg_threshold
).redim(z="CAM / its max")

# %%
masks = {"ground truth": gt, "clicks": points, "CAM pseudo-mask": cam_pseudo, "point pseudo-mask": point_pseudo}
plots.mask_row(image, masks, colors, cols=4, show_image=False)

# %% [markdown]
# Two numbers summarise a pseudo-mask: its **coverage** (the share of pixels it labels) and its
# **precision** (the share of those it labels correctly). A loss only ever sees the covered pixels,
# so low precision teaches errors and low coverage teaches little.

# %%
for label, pseudo in (("CAM", cam_pseudo), ("points", point_pseudo)):
    covered = pseudo < C
    precision = (pseudo[covered] == gt[covered]).mean() if covered.any() else float("nan")
    print(f"{label:>6} pseudo-mask: coverage {covered.mean():.2f}, precision {precision:.2f}")

# %% [markdown]
# **Scale caveat.** These maps come from models trained for a few dozen steps on 48x48 scenes: they
# show how each method reads a model, not how good the models get. The committed MSRC-21 benchmark
# in `bench/results/` (the printed line names the file, budget and regime: ImageNet-pretrained when that table is committed, else from scratch) trains the same two methods on real photographs; there too, tags alone (the CAM
# route) stay far behind one click per region:

# %%
rows = {"cam (tags)": "cam/tags", "single_stage (points)": "single_stage/points"}
candidates = ["label_efficiency_msrc21_pretrained", "label_efficiency_msrc21_scratch", "label_efficiency_msrc21"]
name, full_scale = bench_results.find_result(candidates, rows.values())
print(f"committed: bench/results/{name}.json, {bench_results.settings(full_scale)}")
summaries = {"cam (tags)": cam_summary, "single_stage (points)": point_summary}
bench_results.tiny_vs_full(summaries, full_scale, rows, STUFF).round(3)

# %% [markdown]
# ## Exercises
#
# 1. Set `cam_stage=-1` (stride 32) and look at the CAMs again. What does the resolution do to the
#    CAM pseudo-mask's precision near object borders?
# 2. Try `cam.Config(refine_steps=3)`: the CAMs are smoothed along image edges before the arg-max.
#    Does coverage or precision move?
# 3. Change the integrated-gradients baseline from zeros (the mean colour) to a blurred copy of the
#    image. Which pixels keep their attribution?
# 4. The convergence delta shrinks as `IG_STEPS` grows. Plot it for 4, 8, 16 and 32 steps.
# 5. Compute coverage and precision over the whole training split for both pseudo-masks. At what
#    `bg_threshold` does the CAM pseudo-mask match the point pseudo-mask's precision, and what
#    coverage is left then?

# %% [markdown]
# # 04 · Weak-shot segmentation: SimFormer and L-Net/P-Net
#
# **Weak-shot** segmentation: the *base* classes come with pixel masks, the *novel* classes only
# with image tags. The question is how much of what a model learns about segmenting base classes
# transfers to the novel ones. Two answers:
#
# 1. **SimFormer** (Chen et al., NeurIPS 2022, "Weak-shot semantic segmentation via dual similarity
#    transfer"; `docs/METHODS.md`, SimFormer): a MaskFormer whose proposal-pixel similarity, learnt
#    on base masks, also segments novel proposals; plus a pixel-pair similarity network (SimNet)
#    distilled into the novel class scores;
# 2. **L-Net + P-Net** (Xiao, Wei, Liu, Zhang and Feng, AAAI 2018, "Transferable semi-supervised
#    semantic segmentation"; our reconstruction): a label-transfer network makes pseudo-masks for
#    the novel classes, a segmentation network learns from them.
#
# Both are compared with the model trained on base masks alone.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": about a minute on 2 idle CPU cores; "full": 64x64 scenes, 256 images, 20 epochs
WORKDIR = "runs/tutorials"  # the synthetic data and the run directories of this notebook go here
PROTOCOL = (
    "weakshot"  # novel classes: disc, triangle and cross ("objects2": triangle, cross; "shapes3": disc, ring, cross)
)
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
from IPython.display import display

from workbench.data.dataset import normalize_image
from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
from workbench.data.synthetic import STUFF, ensure_sized_synthetic
from workbench.labels.splits import ClassSplit
from workbench.labels.weak_labels import UNLABELED
from workbench.methods import simformer, supervised, transfer
from workbench.train import TrainConfig, train
from workbench.train.runs import load_run, method_config_from_json
from workbench.viz import bench_results, plots, views
from workbench.viz.offline_panel import offline_extension

offline_extension()  # hv.extension("bokeh") with BokehJS inline: renders with no internet

SIZES = {
    "tiny": {"side": 48, "train": 48, "val": 16, "epochs": 6, "batch_size": 8},
    "full": {"side": 64, "train": 256, "val": 64, "epochs": 20, "batch_size": 16},
}[SCALE]
work = Path(WORKDIR) / "04_weak_shot"
data_root = ensure_sized_synthetic(WORKDIR, SIZES["side"], SIZES["train"], SIZES["val"], weak_shot=True)
info = load_dataset_info(data_root)
C, colors = info.num_classes, np.asarray(info.colors, dtype=np.uint8)
split = ClassSplit.from_protocol(info.classes, info.protocols, PROTOCOL)
print(f"base: {[info.classes[c] for c in split.base]}; novel: {[info.classes[c] for c in split.novel]}")

# %% [markdown]
# ## The setting
#
# A protocol in `dataset.json` names the novel classes. Training images keep their tags, but novel
# pixels become `UNLABELED` (254, hatched grey below): valid pixels whose class the model must
# find out. `ClassSplit.hide_novel` does this to a mask; `TrainConfig(protocol=...)` does it to the
# whole training split.
#
# An image with a single novel tag teaches little: every hidden pixel must then be that class. The
# interesting case holds **two or more novel classes**: the tags say they are there, and only what
# transfers from the base classes can say which hidden pixel is which. The synthetic scenes are
# generated in **weak-shot mode** here (`ensure_sized_synthetic(..., weak_shot=True)`, or
# `python -m workbench data generate --weak-shot`): most images hold two or three of the novel
# classes, in varied combinations (`python -m workbench data protocols DIR` reports it).


# %%
def novel_count(n: str) -> int:
    return len(set(np.unique(read_mask(info.mask_path("train", n), info))) & set(split.novel))


counts = {n: novel_count(n) for n in list_split(info, "train")}
name = max(counts, key=counts.get)  # the first image with the most novel classes
print(f"training images by number of novel classes: {pd.Series(counts).value_counts().sort_index().to_dict()}")
image, gt = read_image(info.image_path("train", name)), read_mask(info.mask_path("train", name), info)
tags = [info.classes[c] for c in np.unique(gt) if c < C]
print(f"{name}: tags {tags}, {counts[name]} of them novel")
display(plots.class_legend(info.classes, colors, novel=split.novel))
plots.mask_row(image, {"ground truth": gt, "what training sees": split.hide_novel(gt)}, colors)

# %% [markdown]
# Evaluation reports the mIoU over the base classes $B$, over the novel classes $N$, and their
# harmonic mean, which is high only when both are:
#
# $$\text{mIoU}_B = \frac{1}{|B|}\sum_{c\in B}\text{IoU}_c, \qquad \text{mIoU}_N = \frac{1}{|N|}\sum_{c\in N}\text{IoU}_c, \qquad
# \text{hIoU} = \frac{2\,\text{mIoU}_B\,\text{mIoU}_N}{\text{mIoU}_B + \text{mIoU}_N}.$$
#
# ## SimFormer in brief
#
# $N$ learnt queries become proposal embeddings $\epsilon_q$; each *classifies* into $K + 1$ classes
# ("no object" included) and *segments* a mask $m_q = \sigma(\epsilon_q^\top F)$ over the pixel
# embeddings $F$. Proposals are matched to the classes of an image (Hungarian matching). Every
# present class, base or novel, supervises classification; only base proposals get mask losses.
# Because $m_q$ is the same dot product for every class, what it learns on base masks transfers to
# novel proposals. Three more terms help the novel classes:
#
# * **complementary loss**: the union of the matched novel masks, $\max_{q \in N} m_q$, should
#   cover exactly the pixels that are neither base nor void;
# * **SimNet**: an MLP on pairs of pixel features learns from base pixel pairs across images whether
#   two pixels share a class;
# * **distillation**: SimNet's pixel-pair similarity is distilled into the similarity of the novel
#   class-score vectors of pixel pairs.
#
# ## L-Net / P-Net in brief
#
# The **L-Net** learns a class-agnostic "not base" map from the base labels and CAMs from the tags.
# Inside the not-base region of each image, the tagged novel classes are spread over superpixels by
# self-diffusion of the CAM seeds $Y$ on a colour-affinity graph $S = D^{-1/2} W D^{-1/2}$,
#
# $$F = (I - \alpha S)^{-1}\, Y,$$
#
# each superpixel taking its arg-max class. The **P-Net** learns from base labels plus these
# transferred labels, with an adversarial term that makes its maps look like real label maps.

# %%
base = TrainConfig(
    data=str(data_root), protocol=PROTOCOL, epochs=SIZES["epochs"], batch_size=SIZES["batch_size"], log_every=5,
    overwrite=True,  # re-running the notebook replaces its runs
)  # fmt: skip
rows = {
    "supervised, base only": (supervised, supervised.Config()),
    "SimFormer": (simformer, simformer.Config()),
    "L-Net/P-Net": (transfer, transfer.Config()),
}
summaries, runs = {}, {}
for label, (method, method_config) in rows.items():
    runs[label] = work / method.__name__.rsplit(".", 1)[-1]
    summaries[label] = train(method, method_config, replace(base, out=str(runs[label])))
keys = ("base_miou", "novel_miou", "harmonic_miou", "miou")
table = pd.DataFrame({label: {k: s[k] for k in keys} for label, s in summaries.items()}).T
table["base objects mIoU"] = [  # the base mIoU without sky, grass and sand
    bench_results.group_miou(s["per_class_iou"], [info.classes[c] for c in split.base if info.classes[c] not in STUFF])
    for s in summaries.values()
]
table.round(3)

# %% [markdown]
# Per-class IoU of each run: **blue bars are base classes** (trained with masks), **orange bars are
# novel classes** (tags only).

# %%
hv.Layout([views.iou_bars(s).opts(title=label, width=plots.panel_width(3)) for label, s in summaries.items()]).cols(3)

# %% [markdown]
# **Scale caveat.** With `SCALE = "tiny"` each run is a few dozen steps: SimFormer (a transformer
# decoder with Hungarian matching, trained from scratch) has barely started, and the novel classes
# are mostly still missed, so the novel column above is near 0 for every row. The effect the method
# is about shows at full scale. The committed weak-shot benchmark in `bench/results/` (the printed
# line names the file, data, protocol, budget and regime: the synthetic weak-shot scenes when that
# table is committed, else MSRC-21's `objects5` protocol with cow, car, bird, chair and cat novel)
# has the same three rows: there the model trained on base masks alone scores (almost) 0 on the
# novel classes, and the transfer methods are what lift them.

# %%
rows = {"supervised, base only": "supervised_base", "SimFormer": "simformer", "L-Net/P-Net": "transfer"}
candidates = [f"weak_shot_{d}_{r}" for d in ("synthetic", "msrc21") for r in ("pretrained", "scratch")]
name, full_scale = bench_results.find_result([*candidates, "weak_shot_msrc21"], rows.values())
protocol = full_scale.get("protocol") or full_scale.get("splits")
print(f"committed: bench/results/{name}.json, {bench_results.settings(full_scale)}, protocol {protocol}")
bench_results.tiny_vs_full(summaries, full_scale, rows, STUFF)[["base mIoU", "novel mIoU", "mIoU"]].round(3)
#
# ## Inside SimFormer: proposals and pixel affinity
#
# `simformer.proposals` returns every query's mask, class and score, best first. Below, the best
# proposal of each class the image is tagged with (novel ones first): a proposal's mask is its
# query's similarity to every pixel, so a good novel proposal covers its object and little else.
# The affinity heatmap shows SimNet's probability that each pixel shares the class of the marked
# pixel (a novel pixel here): the pixel-pixel similarity that distillation transfers to the novel
# classes.

# %%
_, model, _ = load_run(runs["SimFormer"], device="cpu")
x = normalize_image(image)[None]
with torch.no_grad():
    proposals = simformer.proposals(model, x[0])
    features = simformer.pixel_features(model, x)[0]  # (D, H, W)
novel_rows, novel_cols = np.nonzero(np.isin(gt, split.novel))
pixel = (int(novel_rows[len(novel_rows) // 2]), int(novel_cols[len(novel_cols) // 2]))
with torch.no_grad():
    affinity = simformer.simnet_affinity(model, features, *pixel).numpy()
present = [int(c) for c in np.unique(gt) if c < C]
order = sorted(present, key=lambda c: c not in split.novel)  # novel classes first
best = [next(p for p in proposals if p["cls"] == c) for c in order if any(p["cls"] == c for p in proposals)]
print(
    f"{len(proposals)} proposals; best of each tagged class: {[(info.classes[p['cls']], round(p['score'], 2)) for p in best]}"
)
views.proposal_view(image, best, 4, info.classes, colors).opts(
    title="best proposal of each tagged class (class, score)"
)

# %%
title = f"SimNet: same class as the marked {info.classes[gt[pixel]]} pixel?"
(
    plots.heat_panel(image, affinity, title, "P(same class)", pixel=pixel)
    + plots.mask_row(image, {"ground truth": gt}, colors, cols=3, show_image=False)
)

# %% [markdown]
# ## Inside L-Net / P-Net: the transferred labels
#
# The L-Net's not-base probability, and the label map P-Net learns from: base labels as given,
# novel classes transferred into the not-base region. Put it beside what training sees (novel
# pixels hidden) and the ground truth: with two or more novel tags, each hidden pixel's class is
# the transfer's guess, and every pixel whose colour differs from the ground truth's is a wrong
# label the P-Net learns from. After a tiny run expect many: the CAMs that seed the diffusion have
# barely started to tell the novel classes apart.

# %%
method, model, cfg = load_run(runs["L-Net/P-Net"], device="cpu")
config = method_config_from_json(transfer, cfg["method_config"])  # holds the novel ids the engine filled in
hidden = torch.from_numpy(split.hide_novel(gt).astype(np.int64))[None]
tag_vector = torch.zeros(1, C)
tag_vector[0, [int(c) for c in np.unique(gt) if c < C]] = 1.0
with torch.no_grad():
    lnet_out = model(x, "lnet")  # (1, 1 + C, H, W): not-base logit, CAM logits
    transferred = transfer.transfer_labels(lnet_out, x, hidden, tag_vector, config)[0].clamp(max=255).byte().numpy()
    not_base = lnet_out[0, 0].sigmoid().numpy()
hidden_px = split.hide_novel(gt) == UNLABELED
given = hidden_px & (transferred < C)  # hidden pixels the transfer gave a class to
correct = (transferred[given] == gt[given]).mean() if given.any() else float("nan")
print(
    f"the transfer labels {given.sum() / max(hidden_px.sum(), 1):.0%} of the hidden pixels, {correct:.0%} of those correctly"
)
masks = {"what training sees": split.hide_novel(gt), "transferred labels": transferred, "ground truth": gt}
hv.Layout(
    [plots.heat_panel(image, not_base, "L-Net: probability of not base", "P(not base)", cols=4)]
    + list(plots.mask_row(image, masks, colors, cols=4, show_image=False))
).cols(4)

# %% [markdown]
# ## Exercises
#
# 1. Ablate SimFormer: `simformer.Config(complementary=False)`, then `distillation=False`. Which term
#    carries the novel mIoU here?
# 2. Switch the L-Net's rule to `transfer.Config(label_rule="cam", adversarial=False)`: the
#    "supervised base + CAM pseudo-masks" baseline. How far behind self-diffusion is it?
# 3. `simformer.simnet_affinity(model, features, row, col, other=...)` compares a pixel with another
#    image's pixels, as SimNet is trained. Pick a novel pixel and an image sharing its tag.
# 4. Set `PROTOCOL = "shapes3"`: three novel classes, two of which (disc and ring) are easily
#    confused. What happens to the novel mIoU?
# 5. SimFormer's optional last stage (`simformer.write_pseudo_label_dataset`) writes the model's
#    novel predictions as a dataset to retrain on. Try it and retrain `supervised` on that folder.

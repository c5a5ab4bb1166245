# %% [markdown]
# # 01 · Weak labels and what they cost
#
# A dense mask costs minutes per image; a tag costs a second. Weakly supervised segmentation lives
# between the two. This notebook
#
# 1. simulates the four kinds of weak label the workbench knows (**tags, points, scribbles,
#    boxes**) from dense masks, and shows how they are stored;
# 2. trains one model per kind of label with the same budget;
# 3. plots **mIoU against annotation cost**, with the cost of each kind from a simple, stated
#    timing model you can change.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": about 1.5 minutes on 2 idle CPU cores; "full": 64x64 scenes, 256 images, 15 epochs
WORKDIR = "runs/tutorials"  # the synthetic data and the run directories of this notebook go here
# Modelled annotation time in seconds. Orders of magnitude from timing studies on VOC: about 1 s per
# class to tag an image and a couple of seconds per click (Bearman et al., ECCV 2016, who also time a
# full mask at about 240 s), about 7 s per box with extreme clicking (Papadopoulos et al., ICCV 2017).
# The scribble time is our guess. Replace them with timings of your own annotation tool.
SECONDS = {"tag": 1.0, "point": 2.4, "scribble": 10.0, "box": 7.0, "dense": 240.0}
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
import pandas as pd

from workbench.data.folder import list_split, load_dataset_info, read_image, read_mask
from workbench.data.synthetic import STUFF, ensure_sized_synthetic
from workbench.labels.weak_labels import (
    SimulationConfig,
    WeakLabelSet,
    load_weak_labels,
    rasterize,
    save_weak_labels,
    simulate,
)
from workbench.methods import cam, partial_ce, supervised
from workbench.train import TrainConfig, make_datasets, train
from workbench.viz import bench_results, plots
from workbench.viz.offline_panel import offline_extension

offline_extension()  # hv.extension("bokeh") with BokehJS inline: renders with no internet

SIZES = {
    "tiny": {"side": 48, "train": 48, "val": 16, "epochs": 6, "batch_size": 8},
    "full": {"side": 64, "train": 256, "val": 64, "epochs": 15, "batch_size": 16},
}[SCALE]
work = Path(WORKDIR) / "01_weak_labels_and_cost"
side = SIZES["side"]
data_root = ensure_sized_synthetic(WORKDIR, SIZES["side"], SIZES["train"], SIZES["val"])
info = load_dataset_info(data_root)
colors = np.asarray(info.colors, dtype=np.uint8)

# %% [markdown]
# ## 1. Four kinds of weak label
#
# All four are plain frozen dataclasses in `workbench.labels.weak_labels`, in floating-point pixel
# coordinates of their image:
#
# | kind | type | simulated from a dense mask as |
# |---|---|---|
# | tags | `WeakLabels.tags` (a set of class ids) | the classes present |
# | points | `Point(row, col, cls, radius)` | `points_per_region` clicks per connected region, deep inside it |
# | scribbles | `Scribble(path, cls, width)` | a stroke along the longest path of each region's skeleton |
# | boxes | `Box(row0, col0, row1, col1, cls)` | the bounding box of each connected component |
#
# Regions smaller than `min_region_px` get nothing: annotators skip specks. The simulation is seeded
# by `(seed, image name)`, so it does not depend on the order images are visited in. Training
# simulates on the mask resized to the working size (`image_size`), so every point and scribble lies
# where its class is still visible to the model; labels you import are kept as drawn, and the run
# reports how many of their pixels fall on regions that vanish at that size.

# %%
name = list_split(info, "train")[3]
image = read_image(info.image_path("train", name))
mask = read_mask(info.mask_path("train", name), info)
weak = simulate(mask, ["tags", "points", "scribbles", "boxes"], SimulationConfig(), key=name)
print(f"tags {sorted(info.classes[c] for c in weak.tags)}")
print(f"{len(weak.points)} points, {len(weak.scribbles)} scribbles, {len(weak.boxes)} boxes")
panels = [plots.weak_label_view(image, weak.only([]), colors, info.classes, "tags")]
panels += [plots.weak_label_view(image, weak.only([k]), colors, title=k) for k in ("points", "scribbles", "boxes")]
hv.Layout([plots.fit(v, image.shape, cols=4) for v in panels]).cols(4)

# %% [markdown]
# `rasterize` turns the geometry into the sparse label map that losses read: class ids where
# labelled, 254 (`UNLABELED`) elsewhere, 255 (`IGNORE`) for void. Boxes rasterise to their whole
# interior, which is why a box-trained partial cross-entropy learns box-shaped objects: box methods
# (SPML's `seed_source="cam_boxes"`) refine the interior first. Hatched grey pixels are unlabelled;
# the ground truth is on the left.

# %%
rasters = {k: rasterize(weak.only([k])) for k in ("points", "scribbles", "boxes")}
for k, r in rasters.items():
    print(f"{k:>9}: {(r < info.num_classes).mean():.1%} of the pixels labelled")
plots.mask_row(image, {"ground truth": mask, **rasters}, colors, cols=4, show_image=False)

# %% [markdown]
# The geometry stays exact under augmentation: `resized`, `flipped` and `cropped` move the
# coordinates, and only `rasterize` turns them into pixels. Flipping the labels and rasterising
# gives the flipped raster:

# %%
assert (rasterize(weak.flipped()) == rasterize(weak)[:, ::-1]).all()
small = weak.resized(side // 2, side // 2)
print(f"resized to {small.height}x{small.width}: first point {weak.points[0]} -> {small.points[0]}")

# %% [markdown]
# ## 2. Weak labels as files
#
# Labels are stored as JSON (`weakseg-weak-labels/1`), one record per image: the same file the CLI's
# `simulate` writes and the dashboard exports. Training from a file instead of simulating is one
# field: `TrainConfig(weak_labels="weak.json")`.

# %%
labels = {
    n: simulate(read_mask(info.mask_path("train", n), info), ["points", "scribbles"], SimulationConfig(), key=n)
    for n in list_split(info, "train")
}
path = work / "weak.json"
save_weak_labels(path, WeakLabelSet(info.classes, labels))
assert load_weak_labels(path).labels == labels
print(json.dumps(json.loads(path.read_text())["images"][name])[:400], "...")

# %% [markdown]
# ## 3. Annotation cost against mIoU
#
# One model per row, the same U-Net, epochs, batch size and schedule; only the labels (and, for
# tags, the method) change:
#
# * **tags** train the CAM baseline (`cam`, notebook 02): a classifier's class activation maps
#   become pseudo-masks for a segmenter;
# * **points, scribbles, boxes** train partial cross-entropy (notebook 00): the loss on the
#   labelled pixels only;
# * **dense** masks train the supervised upper bound.
#
# The cost of a row is the modelled time per training image,
#
# $$T = t_\text{tag}\,n_\text{tags} + t_\text{point}\,n_\text{points} + t_\text{scribble}\,n_\text{scribbles} + t_\text{box}\,n_\text{boxes},$$
#
# counted on the labels the run actually trained on (or $t_\text{dense}$ per image for masks).

# %%
ROWS = [  # (name, method, supervision, simulation overrides)
    ("tags", cam, "tags", {}),
    ("1 point/region", partial_ce, "points", {"points_per_region": 1}),
    ("3 points/region", partial_ce, "points", {"points_per_region": 3}),
    ("scribbles", partial_ce, "scribbles", {}),
    ("boxes", partial_ce, "boxes", {}),
    ("dense", supervised, "dense", {}),
]
base = TrainConfig(
    data=str(data_root), epochs=SIZES["epochs"], batch_size=SIZES["batch_size"], log_every=5, overwrite=True
)  # overwrite: re-running the notebook replaces its runs


def seconds(weak) -> float:  # modelled time to annotate one image's weak labels
    counts = {"tag": len(weak.tags), "point": len(weak.points), "scribble": len(weak.scribbles), "box": len(weak.boxes)}
    return sum(SECONDS[k] * n for k, n in counts.items())


results, summaries = [], []
for row, method, supervision, simulation in ROWS:
    config = replace(base, supervision=supervision, out=str(work / row.replace("/", "_")), **simulation)
    train_set = make_datasets(method, config)[0]
    cost = (
        SECONDS["dense"]
        if supervision == "dense"
        else np.mean([seconds(train_set.weak(i)) for i in range(len(train_set))])
    )
    summary = train(method, method.Config(), config)
    summaries.append(summary)
    labelled = train_set.annotation_cost()["labelled_fraction"] if supervision != "tags" else 0.0
    results.append({"name": row, "seconds": cost, "miou": summary["miou"], "labelled %": 100 * labelled})
    print(f"{row:<16} {cost:6.1f} s/image  mIoU {summary['miou']:.3f}")

# %%
table = pd.DataFrame(results).set_index("name")
table["mIoU / dense"] = table["miou"] / table.loc["dense", "miou"]
table["object mIoU"] = [bench_results.split_miou(s["per_class_iou"], STUFF)["object mIoU"] for s in summaries]
table.round(3)

# %%
plots.cost_curve(results)

# %% [markdown]
# Read the curve from the left: each dot on the dashed line is the cheapest way found to reach its
# mIoU; a dot below the line costs more than another that does as well.
#
# **Scale caveat.** With `SCALE = "tiny"` the runs are too short to rank the kinds reliably (the CAM
# baseline in particular needs many epochs), and the object mIoU column shows how little of the
# mIoU comes from objects. The committed MSRC-21 benchmark in `bench/results/` (real photographs of
# objects; the printed line names the file, budget and regime: ImageNet-pretrained when that table is committed, else from scratch) is
# the same comparison at a larger scale, with the labelled pixels per image each kind gave:

# %%
keys = {"tags": "cam/tags", "1 point/region": "partial_ce/points", "scribbles": "partial_ce/scribbles"}
keys["dense"] = "supervised/dense"
candidates = ["label_efficiency_msrc21_pretrained", "label_efficiency_msrc21_scratch", "label_efficiency_msrc21"]
name, full_scale = bench_results.find_result(candidates, keys.values())
print(f"committed: bench/results/{name}.json, {bench_results.settings(full_scale)}")
committed = bench_results.comparison(full_scale, list(keys.values()))
rows = dict(zip(bench_results.row_keys(full_scale), full_scale["rows"]))
committed["labelled %"] = [100 * rows[k]["labelled_fraction"] for k in committed.index]
committed.round(3)

# %% [markdown]
# ## Exercises
#
# 1. Double `SECONDS["scribble"]`. Which rows leave the dashed line?
# 2. The timing model charges a scribble the same whatever its length. Charge it by length instead
#    (the vertices are in `Scribble.path`) and add a row with `{"scribble_fraction": 0.25}`: a
#    quarter of each stroke. Is a quarter of the ink worth a quarter of the mIoU?
# 3. Add a row `("points, radius 2", partial_ce, "points", {"point_radius": 2.0})`: clicks dilated
#    into small disks label more pixels for the same clicks. Does it help?
# 4. Boxes rasterise to their interior. Train SPML on boxes
#    (`spml.Config(seed_source="cam_boxes")`, notebook 03) and compare it with partial CE on boxes.
# 5. Write weak labels by hand: build a `WeakLabels` with two `Point`s for one image, save a
#    `WeakLabelSet` with it and train with `TrainConfig(weak_labels=...)`. What happens to the
#    images without labels?

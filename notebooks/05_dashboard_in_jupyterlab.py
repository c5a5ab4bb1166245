# %% [markdown]
# # 05 · The dashboard, cell by cell
#
# The dashboard (`workbench/dashboard/`, served by `apps/dashboard.py`) is three layers, and each works on its own in a notebook:
#
# * `workbench.dashboard.session.DashboardSession`: the state (dataset, annotation store, model, background
#   trainer). Every edit is stored in SQLite at once; every model output is a method call. It is one
#   view's state (image, class, brush, overlay, undo) over three parts you can also use alone:
#   `session.workspace` (images and annotations), `session.outputs` (the model's outputs, cached per
#   model version and image) and `session.retrainer` (retrain jobs, model versions, the val gate).
# * `workbench.viz.views`: pure functions from arrays to HoloViews figures.
# * `workbench.dashboard.app`: the Panel layout that wires them to widgets and drawing tools.
#
# This notebook drives the session from code (so it runs top to bottom without a mouse), shows each
# view, retrains **in place** on the new annotations, and ends with the whole app in a cell. In
# JupyterLab you can then click on the canvas yourself.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny": ~30 s of CPU time; "full": 64x64 scenes, 256 images, 15 epochs
WORKDIR = "runs/tutorials"  # the synthetic data, the run and the annotation store of this notebook go here

# %%
from dataclasses import replace
from pathlib import Path

from workbench.dashboard.app import Dashboard
from workbench.dashboard.canvas import AnnotationCanvas
from workbench.dashboard.retrainer import FullConfig, QuickConfig
from workbench.dashboard.session import DashboardSession
from workbench.data.synthetic import ensure_sized_synthetic
from workbench.labels.weak_labels import SimulationConfig, simulate
from workbench.methods import partial_ce
from workbench.train import TrainConfig, train
from workbench.viz import plots, views
from workbench.viz.offline_panel import offline_extension

offline_extension("tabulator")  # pn.extension + hv.extension("bokeh") that render with no internet

SIZES = {
    "tiny": {"side": 48, "train": 48, "val": 16, "epochs": 6, "batch_size": 8},
    "full": {"side": 64, "train": 256, "val": 64, "epochs": 15, "batch_size": 16},
}[SCALE]
work = Path(WORKDIR) / "05_dashboard"
data_root = ensure_sized_synthetic(WORKDIR, SIZES["side"], SIZES["train"], SIZES["val"])

# %% [markdown]
# ## A model to correct
#
# A partial cross-entropy model trained on one click per region: good enough to be useful, bad
# enough to need corrections.

# %%
config = TrainConfig(
    data=str(data_root), supervision="points", epochs=SIZES["epochs"], batch_size=SIZES["batch_size"], log_every=5,
    overwrite=True,  # re-running the notebook replaces its run
)  # fmt: skip
summary = train(partial_ce, partial_ce.Config(), replace(config, out=str(work / "run")))
print(f"mIoU {summary['miou']:.3f}")

# %% [markdown]
# ## Open a session
#
# `DashboardSession.open(run=...)` loads the run's model and dataset; the annotation store is a
# SQLite file (by default `annotations.sqlite` in the run directory). Retraining is configured by
# two small frozen dataclasses: `QuickConfig` (fine-tune on the current image for a few steps) and
# `FullConfig` (the method's own training on every annotation, from the current weights).

# %%
store = work / "annotations.sqlite"
store.unlink(missing_ok=True)  # start every run of the notebook from an empty store
session = DashboardSession.open(
    run=work / "run", store=store, out=work / "dashboard", quick=QuickConfig(steps=12), full=FullConfig(epochs=2)
)
worst = session.per_image_iou()[0]  # the training image the model gets most wrong
session.index = worst["index"]
print(f"{len(session.names)} images; opened {session.image_name} (mIoU {worst['miou']:.2f}), classes {session.classes}")
views.per_image_frame(session.per_image_iou()).head()

# %% [markdown]
# ## Annotate
#
# In the app a click adds a point of the active class and a drag adds a scribble of the brush's
# width; here the same calls come from code. We play a careful annotator: one click deep inside
# every region of the ground truth, and a stroke along the biggest one.

# %%
gt = session.ground_truth()
clicks = simulate(
    gt, ["points", "scribbles"], SimulationConfig(seed=1), key=session.image_name, num_classes=len(session.classes)
)
for p in clicks.points:
    session.add_point(p.row, p.col, cls=p.cls)
stroke = max(clicks.scribbles, key=lambda s: len(s.path))
session.brush_width = 3.0
scribble_id = session.add_scribble(stroke.path, cls=stroke.cls)
print(session.message)
session.undo()  # the history is per image: undo takes the stroke back...
assert scribble_id not in session.items()
session.redo()  # ...and redo restores it
print(f"{len(session.items())} annotations on {session.image_name}")
plots.weak_label_view(session.image(), session.weak_labels(), session.colors, session.classes, "annotations")

# %% [markdown]
# ## Look at the model
#
# The views the app shows in its tabs, each one call:
#
# * **where to click next**: the prediction's uncertainty, entropy
#   $H(p_i) = -\sum_c p_{i,c}\log p_{i,c} / \log C$ (0 sure, 1 uniform), with its peaks marked;
# * **affinity**: how similar every pixel's features are to a clicked pixel's;
# * **CAM vs pseudo-mask**: the Grad-CAM of a class beside the mask grown from your clicks.

# %%
image = session.image()
prediction = views.image_element(image) * views.mask_element(session.prediction(), session.colors)
views.uncertainty_view(image, session.probabilities(), "entropy") + prediction.opts(title="prediction")

# %%
p = clicks.points[0]
values, source = session.affinity(p.row, p.col)
cls = max(clicks.points, key=lambda q: q.cls).cls  # an object class when the image has one
views.affinity_view(image, values, (int(p.row), int(p.col)), source) + views.cam_vs_pseudo_view(
    image, session.cam(cls), session.point_pseudo_mask(), gt, cls, session.classes, session.colors
)

# %% [markdown]
# ## Retrain in place
#
# **Quick** fine-tunes a copy of the model on this image (and its mirror image) in a background
# thread, BatchNorm statistics frozen; when it is done, `poll` (the app calls it on a timer, `wait`
# blocks) swaps the new weights in. The UI never waits for training. The check that matters: how
# many annotated pixels the prediction now agrees with.

# %%
before = session.prediction().copy()
correct, labelled = session.labelled_accuracy()
session.retrain("quick")
result = session.wait(timeout=300)
after_correct, _ = session.labelled_accuracy()
print(f"{result['message']}; annotated pixels predicted right: {correct}/{labelled} -> {after_correct}/{labelled}")
plots.mask_panels(
    image, {"ground truth": gt, "before": before, "after quick retrain": session.prediction()}, session.colors
)

# %% [markdown]
# **Full** runs the method's own training (`workbench.train.loop.train`) over every annotation in the store,
# exported as a weak-label JSON file, starting from the current weights. It writes an ordinary run
# directory beside the others, so the comparison tab can put it next to the original run.

# %%
session.retrain("full")
result = session.wait(timeout=600)
print(result["message"])
views.iou_bars(session.evaluate(), "after full retrain") + views.training_curves(session.run_records())

# %% [markdown]
# ## The whole app in a cell
#
# `Dashboard(session)` is a Panel `Viewer`: as the last expression of a cell it renders the full
# app (drawing tools, class picker, retrain box, view tabs) bound to the same session, so what you
# draw there is in `session` here. Outside a notebook:
#
# ```bash
# panel serve apps/dashboard.py --args --run runs/tutorials/05_dashboard/run
# ```

# %%
app = Dashboard(session)
app

# %% [markdown]
# Just the annotation canvas (the image, the overlay, a PointDraw and a FreehandDraw layer):

# %%
AnnotationCanvas(session).plot

# %% [markdown]
# Annotations leave the store as a weak-label JSON file (what `TrainConfig(weak_labels=...)` and
# `python -m workbench train --weak_labels=...` read) or as palette PNG masks (254 = unlabelled).

# %%
exported = session.export_json(work / "exports" / "annotations.json")
masks = session.export_png(work / "exports" / "masks")
print(exported, [m.name for m in masks])

# %% [markdown]
# The session stays open, so the app above keeps working after *Run All*: click on its canvas and
# press Retrain. When you are done, `session.close()` stops a running retrain and closes the
# store; the app then says that its session is closed instead of failing.

# %% [markdown]
# ## Exercises
#
# 1. In JupyterLab, click on the canvas above to add points and drag to add scribbles (click inside
#    the app first: digits then pick the class, and never reach the notebook). Then run the
#    quick-retrain cell again: does the uncertainty map move?
# 2. Annotate only where `views.uncertainty_view` puts its crosses, on three images, and compare the
#    gain per click with annotating at random.
# 3. Change `QuickConfig(steps=...)`. When does fine-tuning on one image start to hurt the others
#    (`session.evaluate()["miou"]`)?
# 4. Open the same store with a `spml` run (`DashboardSession.open(run=..., store=...)`): the
#    annotations are the same, the affinity view now shows SPML's embeddings.

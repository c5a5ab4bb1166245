"""The dashboard session without a browser: edits reach the store, retraining runs in the background.

Tiny synthetic data (32x32), a few optimiser steps; the UI state is driven through params.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("param")

from workbench.annotations.store import AnnotationStore  # noqa: E402
from workbench.dashboard.outputs import cosine_affinity  # noqa: E402
from workbench.dashboard.retrainer import FullConfig, QuickConfig, Trainer  # noqa: E402
from workbench.dashboard.session import DashboardSession  # noqa: E402
from workbench.dashboard.workspace import SessionError  # noqa: E402
from workbench.labels.splits import ClassSplit  # noqa: E402
from workbench.labels.weak_labels import Point, Scribble, WeakLabelError, load_weak_labels  # noqa: E402
from workbench.methods import partial_ce, supervised  # noqa: E402
from workbench.train.loop import train  # noqa: E402


@pytest.fixture
def session(synthetic_root, tmp_path):
    torch.manual_seed(0)
    s = DashboardSession.open(
        data=synthetic_root, store=tmp_path / "a.sqlite", out=tmp_path / "out",
        quick=QuickConfig(steps=3, lr=5e-3), full=FullConfig(epochs=1, batch_size=4),
    )  # fmt: skip
    yield s
    s.close()


def label_some_pixels(s: DashboardSession) -> None:
    """A point and a stroke with the ground-truth classes under them."""
    gt = s.ground_truth()
    s.active_class = int(gt[4, 4])
    s.add_point(4, 4)
    s.add_scribble([(26, 4), (26, 28)], cls=int(gt[26, 16]), width=3)


def test_edits_are_stored_at_once_and_survive_a_restart(session, synthetic_root, tmp_path):
    label_some_pixels(session)
    assert sorted(type(i).__name__ for i in session.items().values()) == ["Point", "Scribble"]
    assert session.annotation_version == 2
    assert session.undo() and [type(i) for i in session.items().values()] == [Point]
    session.store.close()
    reopened = DashboardSession.open(data=synthetic_root, store=tmp_path / "a.sqlite", out=tmp_path / "out")
    assert [type(i) for i in reopened.items().values()] == [Point]
    assert reopened.redo()  # the undo history survived the restart too
    assert [type(i) for i in reopened.items().values()] == [Point, Scribble]
    reopened.close()


def test_annotation_mask_has_the_brush_width(session):
    session.add_scribble([(10, 5), (10, 25)], cls=2, width=5)
    mask = session.annotation_mask()
    column = mask[:, 15]
    assert (column == 2).sum() == 5 and set(np.unique(mask)) == {2, 254}


def test_clicks_on_the_border_snap_in_and_clicks_far_off_are_refused(session):
    h, w = session.size()
    item_id = session.add_point(-0.4, w - 0.6)
    item = session.items()[item_id]
    assert (item.row, item.col) == (0.0, w - 1.0)
    with pytest.raises(WeakLabelError, match="off the"):
        session.add_point(h + 5, 3)
    with pytest.raises(WeakLabelError):
        session.add_point(float("nan"), 3)
    with pytest.raises(WeakLabelError):
        session.add_point(3, 3, cls=99)
    assert len(session.items()) == 1


def test_keyboard_shortcuts(session):
    assert session.handle_key("3") == "class sand" and session.active_class == 2
    assert session.handle_key("9").startswith("no class") and session.active_class == 2
    session.handle_key("]")
    session.handle_key("]")
    session.handle_key("[")
    assert session.brush_width == 4.0
    session.handle_key("n")
    session.handle_key("n")
    session.handle_key("p")
    assert session.index == 1
    session.add_point(3, 3)
    session.handle_key("z")
    assert session.items() == {}
    session.handle_key("Z")
    assert len(session.items()) == 1
    assert session.handle_key("q") == ""
    for _ in range(60):
        session.handle_key("[")
    assert session.brush_width == 1.0


def test_select_takes_names_of_the_split_only(session):
    session.select(session.names[3])
    assert session.index == 3
    with pytest.raises(SessionError, match="no image"):
        session.select("../../etc/passwd")


def test_quick_retrain_fine_tunes_a_copy_and_swaps_it_in(session):
    label_some_pixels(session)
    before = session.probabilities().copy()
    weights = {k: v.clone() for k, v in session.model.state_dict().items()}
    session.accept_worse = True  # an untrained model's val mIoU may drop; the version gate has its own test
    session.retrain("quick")
    state = session.wait(timeout=120)
    assert state["finished"] == "done" and session.model_version == 1
    assert [step for step, _ in state["losses"]] == [1, 2, 3]
    assert not np.allclose(session.probabilities(), before)  # the cache follows the model version
    changed = [k for k, v in session.model.state_dict().items() if not torch.equal(v, weights[k])]
    assert changed and not any("running" in k or k.startswith("encoder.") for k in changed)  # frozen parts
    assert all(p.requires_grad for p in session.model.parameters())


def test_quick_retrain_learns_the_clicked_pixels(session):
    # an untrained model: little worth keeping on other images (the trained case: the slow test below)
    session.quick_config = QuickConfig(steps=12, lr=1e-2, keep_weight=1.0)
    label_some_pixels(session)
    session.retrain("quick")
    session.wait(timeout=300)
    if session.pending is not None:  # an untrained model's val mIoU may drop: take the version anyway
        session.accept_pending()
    right, labelled = session.labelled_accuracy()
    assert labelled > 20 and right / labelled > 0.9


def test_every_retrain_is_a_version_and_any_version_can_be_current_again(session):
    label_some_pixels(session)
    before = session.probabilities().copy()
    session.retrain("quick")
    session.wait(timeout=120)
    if session.pending is not None:
        session.accept_pending()
    assert session.model_version == 1 and [v.number for v in session.versions] == [0, 1]
    table = session.version_table()
    assert [r["version"] for r in table] == [0, 1] and [r["current"] for r in table] == [False, True]
    assert all(0 <= r["val mIoU"] <= 1 and set(session.classes) <= set(r) for r in table)  # per-class IoU beside
    after = session.probabilities().copy()
    session.use_version(0)
    assert session.model_version == 0 and np.allclose(session.probabilities(), before)  # the old weights, exactly
    session.use_version(1)
    assert np.allclose(session.probabilities(), after)
    with pytest.raises(SessionError, match="no model version 7"):
        session.use_version(7)


def test_a_retrain_that_lowers_val_miou_says_so_before_replacing_anything(session, monkeypatch):
    label_some_pixels(session)
    baseline = session.evaluate("val")
    worse = {**baseline, "miou": baseline["miou"] - 0.1}
    monkeypatch.setattr(session.outputs, "evaluate_model", lambda model, split="val": worse)
    weights = {k: v.clone() for k, v in session.model.state_dict().items()}
    session.retrain("quick")
    session.wait(timeout=120)
    assert "lowered val mIoU" in session.message and session.model_version == 0
    assert all(torch.equal(weights[k], v) for k, v in session.model.state_dict().items())
    assert session.pending is not None and session.pending.number == 1
    session.accept_pending()
    assert session.model_version == 1 and session.pending is None
    session.model_version = 5  # someone bumped the number: a new version never reuses a number in use
    session.accept_worse = True  # benchmarks: every retrain becomes current
    session.retrain("quick")
    session.wait(timeout=120)
    assert session.model_version == 6 and session.pending is None


def test_quick_retrain_needs_annotations(session):
    with pytest.raises(SessionError, match="no points or scribbles"):
        session.retrain("quick")
    with pytest.raises(SessionError, match="unknown retrain mode"):
        session.retrain("sideways")


def test_cancel_keeps_the_current_weights(session):
    session.quick_config = QuickConfig(steps=100_000)
    session.add_point(5, 5)
    weights = {k: v.clone() for k, v in session.model.state_dict().items()}
    session.retrain("quick")
    with pytest.raises(SessionError, match="already running"):
        session.retrain("quick")
    session.cancel()
    state = session.wait(timeout=60)
    assert state["finished"] == "cancelled" and session.model_version == 0
    assert all(torch.equal(weights[k], v) for k, v in session.model.state_dict().items())


def test_full_retrain_trains_the_method_on_the_exported_annotations(session):
    label_some_pixels(session)
    session.accept_worse = True  # an untrained model's val mIoU may drop; the version gate has its own test
    session.retrain("full")
    state = session.wait(timeout=300)
    assert state["finished"] == "done", state["message"]
    assert session.model_version == 1
    (run,) = session.retrain_runs
    labels = load_weak_labels(run / "annotations.json")
    assert list(labels.labels) == [session.image_name]
    assert labels.labels[session.image_name] == session.weak_labels()
    config = json.loads((run / "config.json").read_text())
    assert config["train_config"]["supervision"] == "points+scribbles+boxes"
    assert any("loss" in r for r in session.run_records())
    assert session.evaluate()["miou"] == pytest.approx(json.loads((run / "report.json").read_text())["miou"])


def test_full_retrain_refuses_a_dense_only_method(synthetic_root, tmp_path):
    s = DashboardSession.open(data=synthetic_root, method="supervised", store=tmp_path / "s.sqlite")
    s.add_point(3, 3)
    with pytest.raises(SessionError, match="not from points, scribbles or boxes"):
        s.retrain("full")
    s.close()


def test_trainer_reports_progress_and_failures():
    trainer = Trainer()

    def job(report, should_stop):
        for step in range(1, 4):
            report(step, 3, 1.0 / step)
        return "result"

    trainer.start(job, "job")
    trainer.join(10)
    assert trainer.take_result() == ("done", "result") and trainer.take_result() is None
    snap = trainer.snapshot()
    assert snap["progress"] == 1.0 and len(snap["losses"]) == 3 and "done" in snap["message"]

    def broken(report, should_stop):
        raise RuntimeError("out of memory")

    trainer.start(broken, "job")
    trainer.join(10)
    status, err = trainer.take_result()
    assert status == "failed" and isinstance(err, RuntimeError)
    assert "RuntimeError: out of memory" in trainer.snapshot()["message"]


def test_a_failed_retrain_leaves_the_model_and_says_why(session, monkeypatch):
    session.add_point(3, 3)

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA error: device lost")

    monkeypatch.setattr("workbench.dashboard.retrainer.quick_finetune", boom)
    session.retrain("quick")
    state = session.wait(timeout=30)
    assert state["finished"] == "failed" and session.model_version == 0
    assert "device lost" in session.message


def test_exports_json_and_png(session, tmp_path):
    label_some_pixels(session)
    path = session.export_json(tmp_path / "e" / "labels.json")
    assert load_weak_labels(path).labels == session.store.to_weak_label_set().labels
    (png,) = session.export_png(tmp_path / "e" / "masks")
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(png)), session.annotation_mask())


def test_import_validates_everything_before_storing(session):
    label_some_pixels(session)
    good = session.export_json()
    session.undo()
    session.undo()
    text = good.read_text()
    doc = json.loads(text)
    bad_point = json.loads(text)
    bad_point["images"][session.image_name]["points"] = [[999, 3, 0, 0.0]]
    unknown_image = {**doc, "images": {"not_an_image": doc["images"][session.image_name]}}
    for bad, match in [
        ("{not json", "not valid JSON"),
        (json.dumps({**doc, "format": "x"}), "not a weak-label file"),
        (json.dumps({**doc, "classes": ["a"]}), "written for classes"),
        (json.dumps(unknown_image), "no image 'not_an_image' in split"),
        (json.dumps(bad_point), "off the"),
    ]:
        with pytest.raises((SessionError, WeakLabelError), match=match):
            session.import_json_text(bad)
    assert session.items() == {}
    assert session.import_json_text(text) == 1
    assert sorted(type(i).__name__ for i in session.items().values()) == ["Point", "Scribble"]


def test_reimporting_ones_own_export_adds_nothing(session):
    label_some_pixels(session)
    text = session.export_json().read_text()
    assert session.import_json_text(text) == 0 and "already stored" in session.message
    assert sorted(type(i).__name__ for i in session.items().values()) == ["Point", "Scribble"]
    session.undo()  # the scribble is gone: importing brings back that one only
    assert session.import_json_text(text) == 1
    assert sorted(type(i).__name__ for i in session.items().values()) == ["Point", "Scribble"]


def test_deeply_nested_json_is_a_clear_error(session):
    with pytest.raises(WeakLabelError, match="nested too deeply"):
        session.import_json_text("[" * 100_000 + "]" * 100_000)


def test_affinity_features_cam_and_pseudo_mask(session):
    h, w = session.size()
    feats = session.features()
    assert feats.shape[1:] == session.work_size
    values, source = session.affinity(7, 9)
    assert values.shape == (h, w) and values[7, 9] == pytest.approx(1.0, abs=1e-5) and "cosine" in source
    assert 0 <= values.min() and values.max() <= 1 + 1e-6
    cam = session.cam(cls=1)
    assert cam.shape == (h, w) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    assert "no points or scribbles" in session.point_pseudo_mask()
    label_some_pixels(session)
    pseudo = session.point_pseudo_mask()
    label = session.annotation_mask()
    assert pseudo.shape == (h, w) and np.array_equal(pseudo[label < 8], label[label < 8])
    assert session.proposals() is None  # partial_ce makes no proposals


def test_cosine_affinity_is_one_at_the_pixel_and_symmetric():
    feats = torch.randn(5, 6, 7)
    a = cosine_affinity(feats, 2, 3)
    assert a[2, 3] == pytest.approx(1.0) and cosine_affinity(feats, 4, 1)[2, 3] == pytest.approx(float(a[4, 1]))


def test_evaluation_and_worst_first_table(session):
    summary = session.evaluate("val")
    assert 0 <= summary["miou"] <= 1 and len(summary["per_image"]) == 4
    table = session.per_image_iou()
    assert [r["name"] for r in table] == [session.names[r["index"]] for r in table]
    values = [r["miou"] for r in table]
    assert values == sorted(values)


def test_open_a_trained_run(quick_config, tmp_path):
    train(partial_ce, partial_ce.Config(), quick_config)
    s = DashboardSession.open(run=quick_config.out)
    assert s.run_dir is not None and s.store.path == s.run_dir / "annotations.sqlite"
    assert s.method is partial_ce and s.work_size == (32, 32)
    assert any("loss" in r for r in s.run_records()) and s.run_dir in s.runs()
    s.close()


def test_weak_shot_runs_hide_novel_annotations_from_retraining(synthetic_root, tmp_path):
    s = DashboardSession.open(data=synthetic_root, store=tmp_path / "n.sqlite")
    s.class_split = ClassSplit(s.classes, (5, 7))
    s.add_point(3, 3, cls=5)
    s.add_point(6, 6, cls=1)
    batch = s.retrainer.quick_batch(s.index)
    assert set(np.unique(batch["label"][0].numpy())) == {1, 254}
    assert batch["tags"][0, 5] == 1  # the tag of the novel class is kept
    s.close()


def test_unknown_method_and_mismatched_store(synthetic_root, tmp_path):
    with pytest.raises(SessionError, match="unknown method"):
        DashboardSession.open(data=synthetic_root, method="nope")
    AnnotationStore(tmp_path / "other.sqlite", ["a", "b"]).close()
    with pytest.raises(WeakLabelError, match="differ"):
        DashboardSession.open(data=synthetic_root, store=tmp_path / "other.sqlite")


def test_supervised_model_still_quick_retrains(synthetic_root, tmp_path):
    s = DashboardSession.open(data=synthetic_root, method="supervised", store=tmp_path / "s.sqlite")
    assert s.method is supervised
    s.quick_config = QuickConfig(steps=2)
    s.accept_worse = True
    s.add_point(3, 3)
    s.retrain("quick")
    assert s.wait(timeout=120)["finished"] == "done" and s.model_version == 1
    s.close()


@pytest.mark.parametrize("stored", [[6, 7], ["ring", "cross"]])
def test_weak_shot_runs_open_with_novel_stored_by_index_or_name(quick_config, stored):
    """Old runs store novel classes as indices, new ones as names: both open."""
    import dataclasses

    train(partial_ce, partial_ce.Config(), dataclasses.replace(quick_config, novel="ring,cross"))
    config_file = quick_config.out + "/config.json"
    cfg = json.loads(open(config_file).read())
    cfg["novel"] = stored
    open(config_file, "w").write(json.dumps(cfg))
    s = DashboardSession.open(run=quick_config.out)
    assert s.novel == (6, 7)
    s.close()
    cfg["novel"] = ["unicorn"]
    open(config_file, "w").write(json.dumps(cfg))
    with pytest.raises(SessionError, match="unicorn.*neither a class name nor an index"):
        DashboardSession.open(run=quick_config.out)


def test_a_novel_class_point_counts_for_quick_retrain(synthetic_root, tmp_path):
    s = DashboardSession.open(data=synthetic_root, store=tmp_path / "n.sqlite", quick=QuickConfig(steps=2, replay=2))
    s.class_split = ClassSplit(s.classes, (5, 7))
    s.add_point(3, 3, cls=5)
    s.retrain("quick")  # no "no points or scribbles yet": the click is there, as the novel class's tag
    assert s.wait(timeout=120)["finished"] == "done"
    s.close()


def test_full_retrain_learns_from_the_runs_own_labels_plus_the_annotations(quick_config, tmp_path):
    """Annotations alone replaced the run's labels and collapsed the model (0.63 -> 0.09 val mIoU)."""
    import dataclasses

    train(partial_ce, partial_ce.Config(), dataclasses.replace(quick_config, supervision="points"))
    s = DashboardSession.open(run=quick_config.out, store=tmp_path / "f.sqlite")
    before = s.training_labels().labels
    assert set(before) == set(s.names) and all(w.points for w in before.values())  # the run's simulated points
    s.add_point(5, 5, cls=2)
    after = s.training_labels().labels
    first = s.names[0]
    assert after[first].points[:-1] == before[first].points and after[first].points[-1].cls == 2
    assert all(after[n] == before[n] for n in s.names[1:])
    s.close()


@pytest.mark.slow
def test_quick_retrain_on_correct_labels_keeps_val_miou(tmp_path_factory):
    """8 correct clicks on one image must not cost the rest of the split: val mIoU drops by at most 0.02."""
    from workbench.data.synthetic import SyntheticConfig, generate
    from workbench.train.config import TrainConfig

    root = generate(tmp_path_factory.mktemp("d") / "syn", SyntheticConfig(height=48, width=48, train=96, val=24))
    out = tmp_path_factory.mktemp("run") / "pce"
    train(partial_ce, partial_ce.Config(), TrainConfig(data=str(root), out=str(out), epochs=8, batch_size=8,
                                                       supervision="points", log_every=50))  # fmt: skip
    s = DashboardSession.open(run=out, store=out / "s.sqlite")
    before = s.evaluate("val")["miou"]
    gt, rng = s.ground_truth(), np.random.default_rng(0)
    for r, c in rng.integers(0, 48, size=(8, 2)):
        if gt[r, c] < len(s.classes):
            s.add_point(r, c, cls=int(gt[r, c]))
    s.retrain("quick")
    assert s.wait(timeout=300)["finished"] == "done"
    assert s.pending is None and s.model_version == 1  # the new version is current: it did not lower val mIoU
    right, labelled = s.labelled_accuracy()
    # it learned the clicks (a click can sit on an object's edge, which 48x48 predictions may not split)
    assert right >= labelled - 1 and labelled >= 6
    assert s.evaluate("val")["miou"] >= before - 0.02
    s.close()


@pytest.mark.parametrize("fmt", ["weakseg", "labelstudio", "cvat", "coco"])
def test_export_and_import_in_every_interchange_format(session, fmt):
    if fmt == "coco":
        pytest.importorskip("pycocotools")
    label_some_pixels(session)
    data = session.export_labels(fmt).read_bytes()
    assert session.import_labels_bytes(data, fmt) == 0  # one's own export: nothing new
    assert len(session.items()) == 2
    session.undo()
    session.undo()
    assert session.import_labels_bytes(data, fmt) == 1 and len(session.items()) >= 1
    with pytest.raises(SessionError, match="unknown import format"):
        session.import_labels_bytes(data, "pascal")


def test_images_ranked_by_the_models_own_uncertainty(session):
    from workbench.viz import views

    session.add_point(3, 3)
    ranking = session.uncertainty_ranking("entropy")
    assert sorted(r["name"] for r in ranking) == sorted(session.names)
    values = [r["uncertainty"] for r in ranking]
    assert values == sorted(values, reverse=True) and 0 <= values[-1] <= values[0] <= 1
    top = ranking[0]
    assert top["uncertainty"] == pytest.approx(views.entropy_map(session.probabilities(top["index"])).mean(), abs=1e-4)
    assert next(r for r in ranking if r["index"] == 0)["annotations"] == 1
    assert session.uncertainty_ranking("margin") != ranking
    with pytest.raises(SessionError, match="unknown uncertainty"):
        session.uncertainty_ranking("luck")


def test_each_tab_has_its_own_view_state_and_undo_over_one_shared_store(session):
    a, b = session.new_tab(), session.new_tab()
    assert a.store is b.store is session.store and a.model is session.model and a.trainer is session.trainer
    b.index, b.active_class, b.overlay, b.brush_width = 2, 3, "ground truth", 7.0
    b.handle_key("n")
    assert (a.index, a.active_class, a.overlay, a.brush_width) == (0, 0, "prediction", 3.0)
    assert b.index == 3
    b.index = a.index = 0
    first = a.add_point(3, 3)
    second = b.add_point(10, 10, cls=2)
    assert set(a.items()) == set(b.items()) == {first, second}  # edits go to the shared store
    before = a.annotation_version
    assert a.sync() and a.annotation_version > before and not a.sync()  # b's edit reached a's page
    assert a.undo() and set(b.items()) == {second}  # a's undo took back a's own point, not b's newer one
    assert b.undo() and a.items() == {}
    assert not a.undo() and "nothing to undo" in a.message
    assert a.redo() and b.redo()
    assert len(a.items()) == 2 and sorted(i.cls for i in a.items().values()) == [0, 2]
    a.move_point(next(k for k, i in a.items().items() if i.cls == 0), 5, 5)
    assert a.undo() and any(i.row == 3 for i in b.items().values())


def test_undoing_a_move_of_a_point_another_tab_removed_leaves_it_removed(session):
    """Issue 25: after tab B undid its point, tab A's undo of moving that point brought it back."""
    a, b = session.new_tab(), session.new_tab()
    b.index = a.index = 0
    point = b.add_point(10, 10, cls=2)
    a.move_point(point, 12, 12)
    assert b.undo() and a.items() == {} == b.items()  # b's add taken back (and with it the point a moved)
    a.undo()
    assert a.items() == {} == b.items(), "a's undo of the move brought the removed point back"
    assert not a.redo()  # the dropped move is not kept for a redo either


def test_a_retrain_started_in_one_tab_shows_in_every_tab(session):
    a, b = session.new_tab(), session.new_tab()
    a.accept_worse = True
    label_some_pixels(a)
    a.retrain("quick")
    assert b.trainer.running or b.trainer.snapshot()["status"] != "idle"
    a.wait(timeout=120)
    assert a.model_version == 1 and b.model_version == 0
    assert b.sync() and b.model_version == 1 and b.current_version == 1
    assert np.array_equal(a.prediction(), b.prediction())


def test_two_dashboards_over_one_session_keep_their_own_view_state(session):
    """Two browser tabs, through the pages' own widgets and keys: n and digits stay in their tab, edits
    are shared (the other page redraws at its next sync), undo takes back the page's own edit only."""
    pytest.importorskip("panel")
    pytest.importorskip("workbench.dashboard.security")
    from workbench.dashboard.app import Dashboard

    a, b = Dashboard(session.new_tab()), Dashboard(session.new_tab())
    h, _ = a.session.size()
    b.keys._handle_msg({"key": "n"})
    b.keys._handle_msg({"key": "3"})
    b.session.overlay = "ground truth"
    assert (a.session.index, a.session.active_class, a.session.overlay) == (0, 0, "prediction")
    assert b.session.index == 1 and "(1/" in a.image_name.object and "(2/" in b.image_name.object
    b.keys._handle_msg({"key": "p"})
    a.canvas.point_draw.event(data={"x": [3.5], "y": [h - 2.5]})  # a's tap at pixel (2, 3), class 0
    b.canvas.point_draw.event(data={"x": [10.5], "y": [h - 5.5]})  # b's tap, class 2 (b had not seen a's point yet)
    assert sorted(p.cls for p in session.items().values()) == [0, 2]  # both stored, neither moved
    assert len(a.canvas.points_pipe.data["x"]) == 1
    a.sync()
    assert sorted(a.canvas.points_pipe.data["cls"]) == [0, 2]  # b's point shows in a after the sync
    a.keys._handle_msg({"key": "z"})  # a's undo: a's point goes, b's newer one stays
    assert [p.cls for p in session.items().values()] == [2]
    b.sync()
    assert b.canvas.points_pipe.data["cls"] == [2] and "1 points" in b.status.object


def test_the_mask_follows_a_retrain_before_the_val_check_and_the_gate_still_decides(session, monkeypatch):
    """The edited image's new prediction shows as soon as training ends; the version changes only after the
    val check, and a retrain that lowers val mIoU still replaces nothing."""
    import threading
    import time

    label_some_pixels(session)
    worse = {**session.evaluate("val"), "miou": session.evaluate("val")["miou"] - 0.1}
    checked = threading.Event()
    monkeypatch.setattr(session.outputs, "evaluate_model", lambda model, split="val": checked.wait(60) and worse)
    before = session.prediction().copy()
    session.retrain("quick")
    deadline = time.monotonic() + 120
    while session.poll() and session.preview is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.preview == 1 and session.model_version == 0 and session.trainer.running
    assert "the mask shows v1" in session.message
    shown = session.shown_prediction()
    assert np.array_equal(shown, session.outputs.peek(1, ("probs", session.index)).argmax(0))
    assert np.array_equal(session.prediction(), before)  # the current model is still v0 everywhere else
    session.index = 1
    assert np.array_equal(session.shown_prediction(), session.prediction())  # the preview is of the edited image
    session.index = 0
    checked.set()
    session.wait(timeout=60)
    assert session.preview is None and session.model_version == 0 and "lowered val mIoU" in session.message
    assert np.array_equal(session.shown_prediction(), before)
    session.accept_pending()
    assert np.array_equal(session.prediction(), shown)  # the preview was the new version's own prediction


def scripted_val(session, monkeypatch, scores):
    """Retrains' val mIoU taken from ``scores`` in turn (the real summary otherwise)."""
    real, scores = session.evaluate("val"), iter(scores)
    monkeypatch.setattr(session.outputs, "evaluate_model", lambda model, split="val": {**real, "miou": next(scores)})
    return real


def retrain_times(session, n: int) -> None:
    for _ in range(n):
        session.retrain("quick")
        assert session.wait(timeout=120)["finished"] == "done"


def test_old_versions_leave_memory_but_the_current_and_the_best_stay(synthetic_root, tmp_path, monkeypatch):
    s = DashboardSession.open(
        data=synthetic_root, store=tmp_path / "m.sqlite", out=tmp_path / "out",
        quick=QuickConfig(steps=1, replay=0), max_versions_in_memory=2,
    )  # fmt: skip
    s.accept_worse = True
    s.add_point(3, 3)
    opened = s.probabilities().copy()
    scripted_val(s, monkeypatch, [0.9, 0.1, 0.2])  # v1 is the best
    retrain_times(s, 3)
    table = {r["version"]: r["weights"] for r in s.version_table()}
    assert table == {0: "disk", 1: "memory", 2: "disk", 3: "memory"} and s.model_version == 3
    assert "v2 moved to" in s.message and (s.retrainer.versions_dir / "v2.pt").is_file()
    assert s.retrainer.versions_dir.parent == tmp_path / "out" / "versions"
    s.use_version(0)  # back from disk, the exact weights
    assert np.allclose(s.probabilities(), opened)
    assert {r["version"]: r["weights"] for r in s.version_table()} == {0: "memory", 1: "memory", 2: "disk", 3: "disk"}
    with pytest.raises(SessionError, match="at least 2"):
        DashboardSession.open(data=synthetic_root, store=tmp_path / "m.sqlite", max_versions_in_memory=1)
    s.close()


def test_versions_that_cannot_be_written_are_dropped_with_a_message(synthetic_root, tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("a file where the versions folder would go")
    s = DashboardSession.open(
        data=synthetic_root, store=tmp_path / "d.sqlite", out=tmp_path / "not-a-folder",
        quick=QuickConfig(steps=1, replay=0), max_versions_in_memory=2,
    )  # fmt: skip
    s.accept_worse = True
    s.add_point(3, 3)
    scripted_val(s, monkeypatch, [0.9, 0.1])
    retrain_times(s, 2)
    assert "dropped v0" in s.message and "could not write" in s.message
    assert {r["version"]: r["weights"] for r in s.version_table()} == {0: "dropped", 1: "memory", 2: "memory"}
    with pytest.raises(SessionError, match="dropped from memory"):
        s.use_version(0)
    assert s.model_version == 2
    s.close()


@pytest.mark.parametrize("fmt, data", [("cvat", b"<annotations><image"), ("labelstudio", b"\xff\xfe[")])
def test_a_bad_interchange_upload_names_the_upload_not_a_temporary_file(session, fmt, data):
    with pytest.raises(SessionError) as err:
        session.import_labels_bytes(data, fmt)
    assert "upload" in str(err.value) and "tmp" not in str(err.value)

"""Retrainer on its own: a quick retrain becomes a version, the val gate keeps a worse one out, numbers never repeat."""

from __future__ import annotations

import pytest

from tests.dashboard.parts import outputs, workspace
from workbench.dashboard.retrainer import QuickConfig, Retrainer
from workbench.dashboard.workspace import EditHistory, SessionError


def retrainer(synthetic_root, tmp_path) -> Retrainer:
    ws = workspace(synthetic_root, tmp_path)
    return Retrainer(ws, outputs(ws), quick=QuickConfig(steps=2))


def test_a_quick_retrain_needs_annotations_on_its_image(synthetic_root, tmp_path):
    with pytest.raises(SessionError, match="no points or scribbles"):
        retrainer(synthetic_root, tmp_path).start("quick", 0)


def test_a_finished_retrain_is_a_new_version_and_the_gate_decides_if_it_is_current(synthetic_root, tmp_path):
    r = retrainer(synthetic_root, tmp_path)
    r.workspace.add_point(0, row=10.0, col=10.0, cls=1, history=EditHistory())
    scores = iter([0.4, 0.5])  # the candidate (scored first) is worse than the current model

    def evaluate_model(model, split="val"):
        return {"miou": next(scores), "per_class_iou": {}}

    r.outputs.evaluate_model = evaluate_model
    r.start("quick", 0)
    assert r.trainer.join(120)
    state = r.poll()
    assert state["finished"] == "done"
    assert "press 'make current'" in state["message"]  # the button's own label (issue 26 item 8)
    assert [v.number for v in r.versions] == [0, 1] and r.outputs.version == 0  # v1 listed, v0 still current
    assert r.pending is not None and r.accept_pending().number == 1 and r.outputs.version == 1
    assert r._new_number() == 2  # a number is never handed out twice


def test_an_unknown_mode_is_refused(synthetic_root, tmp_path):
    with pytest.raises(SessionError, match="unknown retrain mode"):
        retrainer(synthetic_root, tmp_path).start("slow", 0)


def two_versions_on_disk(r: Retrainer) -> None:
    """Versions 0 and 1 of ``r``, both moved out of memory."""
    r.max_in_memory = 2
    r.workspace.add_point(0, row=10.0, col=10.0, cls=1, history=EditHistory())
    r.outputs.evaluate_model = lambda model, split="val": {"miou": 0.5, "per_class_iou": {}}
    for _ in range(3):
        r.start("quick", 0)
        assert r.trainer.join(120)
        r.poll(accept_worse=True)
        r.limit_memory()


def test_a_version_file_swapped_on_disk_is_refused_naming_it(synthetic_root, tmp_path):
    """Issue 25: a swapped vN.pt loaded and showed another version's mIoU."""
    r = retrainer(synthetic_root, tmp_path)
    two_versions_on_disk(r)
    on_disk = [v for v in r.versions if v.kept == "disk"]
    assert on_disk, r.version_table()
    victim = on_disk[0]
    victim.path.write_bytes(b"not the weights this dashboard wrote")
    with pytest.raises(SessionError, match=f"model version {victim.number}: .* changed on disk"):
        r.use_version(victim.number)


def test_two_dashboards_on_one_run_write_their_versions_apart(synthetic_root, tmp_path):
    """Issue 25: two dashboards on one run wrote the same vN.pt, so a rollback loaded the other's weights."""
    first, second = retrainer(synthetic_root, tmp_path), retrainer(synthetic_root, tmp_path)
    assert first.out_dir == second.out_dir and first.versions_dir != second.versions_dir
    two_versions_on_disk(first)
    two_versions_on_disk(second)
    for r in (first, second):
        for v in (v for v in r.versions if v.kept == "disk"):
            assert v.path.parent == r.versions_dir
            r.weights(v)  # its own file, unchanged: loads

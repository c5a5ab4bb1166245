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
    assert [v.number for v in r.versions] == [0, 1] and r.outputs.version == 0  # v1 listed, v0 still current
    assert r.pending is not None and r.accept_pending().number == 1 and r.outputs.version == 1
    assert r._new_number() == 2  # a number is never handed out twice


def test_an_unknown_mode_is_refused(synthetic_root, tmp_path):
    with pytest.raises(SessionError, match="unknown retrain mode"):
        retrainer(synthetic_root, tmp_path).start("slow", 0)

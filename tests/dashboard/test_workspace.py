"""AnnotationWorkspace on its own: every edit reaches the store at once, undo is per history, imports are checked."""

from __future__ import annotations

import pytest

from tests.dashboard.parts import workspace
from workbench.annotations.store import AnnotationStore
from workbench.dashboard.workspace import EditHistory, SessionError


def test_an_edit_is_in_the_store_at_once_and_in_the_training_label(synthetic_root, tmp_path):
    ws = workspace(synthetic_root, tmp_path)
    history = EditHistory()
    ws.add_point(0, row=5.0, col=7.0, cls=2, history=history)
    reopened = AnnotationStore(tmp_path / "store.sqlite", ws.classes)  # another connection: nothing is buffered
    assert [(p.row, p.col, p.cls) for p in reopened.weak_labels(ws.names[0]).points] == [(5.0, 7.0, 2)]
    assert ws.revision == 1 and ws.work_label(0, (32, 32))[5, 7] == 2


def test_undo_takes_back_this_historys_edit_and_redo_brings_it_back(synthetic_root, tmp_path):
    ws = workspace(synthetic_root, tmp_path)
    history = EditHistory()
    ws.add_point(1, row=3.0, col=3.0, cls=1, history=history)
    assert ws.step_history(1, history, undo=True) and not ws.weak_labels(1).points
    assert ws.step_history(1, history, undo=False) and len(ws.weak_labels(1).points) == 1
    assert not ws.step_history(2, history, undo=True)  # nothing to undo on another image


def test_an_index_outside_the_split_and_a_closed_workspace_are_refused(synthetic_root, tmp_path):
    ws = workspace(synthetic_root, tmp_path)
    with pytest.raises(SessionError):
        ws.check(len(ws.names))
    ws.close()
    with pytest.raises(SessionError):
        ws.add_point(0, row=1.0, col=1.0, cls=0, history=EditHistory())


def test_a_store_of_other_classes_is_refused(synthetic_root, tmp_path):
    from workbench.dashboard.workspace import AnnotationWorkspace
    from workbench.data.folder import load_dataset_info

    info = load_dataset_info(synthetic_root)
    with pytest.raises(SessionError, match="differ"):
        AnnotationWorkspace(info, AnnotationStore(tmp_path / "other.sqlite", ["a", "b"]))


def test_its_own_export_imports_as_nothing_new(synthetic_root, tmp_path):
    ws = workspace(synthetic_root, tmp_path)
    ws.add_scribble(0, [(2.0, 2.0), (2.0, 9.0)], cls=3, width=1.0, history=EditHistory())
    exported = ws.export_json(tmp_path / "labels.json")
    assert ws.import_json_text(exported.read_text()) == 0

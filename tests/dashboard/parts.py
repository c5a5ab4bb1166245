"""The dashboard's three parts built by hand over the tiny synthetic set, without a session."""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.annotations.store import AnnotationStore
from workbench.dashboard.outputs import ModelOutputs
from workbench.dashboard.workspace import AnnotationWorkspace
from workbench.data.folder import load_dataset_info
from workbench.methods import partial_ce
from workbench.modeling.backbones import Backbone

WORK_SIZE = (32, 32)


def workspace(data: Path, tmp_path: Path) -> AnnotationWorkspace:
    info = load_dataset_info(data)
    return AnnotationWorkspace(info, AnnotationStore(tmp_path / "store.sqlite", info.classes), "train", None, tmp_path)


def outputs(ws: AnnotationWorkspace) -> ModelOutputs:
    torch.manual_seed(0)
    model = partial_ce.build(ws.info.num_classes, partial_ce.Config(), Backbone())
    return ModelOutputs(ws, partial_ce, partial_ce.Config(), model, WORK_SIZE)

"""The cache of model outputs: everything the dashboard shows about the model, per model version and image.

Like segment-anything's predictor, :class:`ModelOutputs` sits beside the ``nn.Module``: it holds
the current model and its version number and computes class probabilities, predictions, pixel
features, affinity, proposals, Grad-CAM, the point pseudo-mask, val summaries and the dataset's
uncertainty ranking on demand, each once per ``(version, image)`` in a small LRU cache. A new
version needs no invalidation: its outputs have other keys, and old ones age out. The images
and annotations come from :class:`workbench.dashboard.workspace.AnnotationWorkspace`.

The functions above the class are pure torch (no state), usable from notebooks on any model.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import SegmentationModel
from torch import nn

from workbench.dashboard.workspace import AnnotationWorkspace, SessionError
from workbench.data.augment import resize_pair
from workbench.data.dataset import SegmentationDataset, image_tensor
from workbench.explain import segmenter_gradcam
from workbench.inference import predict_scores
from workbench.methods import PIXEL_EMBEDDING, optional_hook
from workbench.train import evaluation

UNCERTAINTY = ("entropy", "margin")
CACHE_SIZE = 32  # model outputs kept (each an image's probabilities, features, CAM... of one version)
# ----------------------------------------------------------------------------- pure torch


@torch.no_grad()
def pixel_features(method: ModuleType, model: nn.Module, images: torch.Tensor) -> torch.Tensor | None:
    """``(B, D, H, W)`` per-pixel features at the input size, or None when the model has none we know.

    In order: the method's ``pixel_features`` (SimFormer's mask features), a unit ``"embed"``
    output (single-stage, SPML), else the last decoder features of the smp model inside it
    (the input of its ``segmentation_head``). No hooks: views may run this beside another thread
    that predicts with the same model.
    """
    hook = optional_hook(method, "pixel_features")
    if hook is not None:
        return hook(model, images).float()
    out = model(images)
    if isinstance(out, dict) and PIXEL_EMBEDDING in out:
        feats = out[PIXEL_EMBEDDING]
    else:
        smp_model: Any = next((m for m in model.modules() if isinstance(m, SegmentationModel)), None)
        if smp_model is None:
            return None
        feats = smp_model.decoder(smp_model.encoder(images))
    return F.interpolate(feats.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)


def cosine_affinity(features: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """Cosine similarity ``(H, W)`` in [-1, 1] of pixel ``(row, col)`` to every pixel of ``(D, H, W)`` features."""
    flat = F.normalize(features.flatten(1), dim=0)  # (D, HW)
    return (flat[:, row * features.shape[2] + col] @ flat).view(features.shape[1:])


def resize_map(values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` float map -> ``(H, W)`` float32 numpy, bilinear."""
    if tuple(values.shape[-2:]) != tuple(size):
        values = F.interpolate(values[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    return values.float().cpu().numpy()


# ----------------------------------------------------------------------------- the cache


class ModelOutputs:
    """The current model (``model``, ``version``) and its outputs on the workspace's images, cached.

    Thread-safe for the dashboard's use: views compute in worker threads while a retrain trains
    a copy; the lock guards the caches, not the (no-grad) inference.
    """

    def __init__(
        self,
        workspace: AnnotationWorkspace,
        method: ModuleType,
        method_config,
        model: nn.Module,
        work_size: tuple[int, int],
        version: int = 0,
    ) -> None:
        self.workspace, self.method, self.method_config = workspace, method, method_config
        self.model = model.eval()
        self.version = version
        self.work_size = (int(work_size[0]), int(work_size[1]))
        self._outputs: OrderedDict[tuple, Any] = OrderedDict()
        self._summaries: dict[tuple[int, str], dict] = {}
        self._lock = threading.RLock()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def use(self, model: nn.Module, version: int) -> None:
        """Make ``model`` current as version ``version`` (outputs cached for that number are its own)."""
        self.model, self.version = model.eval(), int(version)

    def put(self, version: int, key: tuple, value) -> None:
        """Cache an output computed elsewhere (a retrain's prediction of the edited image) for ``version``."""
        with self._lock:
            self._outputs[(version, *key)] = value
            self._outputs.move_to_end((version, *key))
            while len(self._outputs) > CACHE_SIZE:
                self._outputs.popitem(last=False)

    def peek(self, version: int, key: tuple):
        """A cached output of ``version``, or None (never computes)."""
        with self._lock:
            return self._outputs.get((version, *key))

    def cached(self, key: tuple, compute: Callable):
        """``compute()`` once per model version; the lock guards the dict, not the inference."""
        version = self.version
        with self._lock:
            if (version, *key) in self._outputs:
                self._outputs.move_to_end((version, *key))
                return self._outputs[(version, *key)]
        value = compute()
        self.put(version, key, value)
        return value

    def tensor(self, index: int) -> torch.Tensor:
        """``(1, 3, h, w)`` normalised image at the working size, on the model's device."""
        return image_tensor(self.workspace.image(index), self.work_size).to(self.device)

    # ------------------------------------------------------------------ per image

    def probabilities(self, index: int) -> np.ndarray:
        """``(C, H, W)`` float32 class probabilities of image ``index`` at its own size."""
        i = self.workspace.check(index)
        return self.cached(("probs", i), lambda: self.probabilities_of(self.workspace.image(i)))

    @torch.no_grad()
    def probabilities_of(self, image: np.ndarray, model: nn.Module | None = None) -> np.ndarray:
        """``(C, H, W)`` class probabilities for any ``(H, W, 3)`` uint8 image (e.g. an upload), not cached."""
        model = (model or self.model).eval()
        return predict_scores(self.method.predict, model, image, self.work_size).softmax(0).cpu().numpy()

    def prediction(self, index: int) -> np.ndarray:
        """``(H, W)`` uint8 arg-max prediction."""
        return self.probabilities(index).argmax(0).astype(np.uint8)

    def labelled_accuracy(self, index: int, prediction: np.ndarray | None = None) -> tuple[int, int]:
        """``(correct, labelled)``: annotated pixels the prediction agrees with (a live check after each retrain)."""
        label = self.workspace.annotation_mask(index)
        seen = label < len(self.workspace.classes)
        prediction = self.prediction(index) if prediction is None else prediction
        return int((prediction[seen] == label[seen]).sum()), int(seen.sum())

    def features(self, index: int) -> torch.Tensor | None:
        """``(D, h, w)`` pixel features at the working size, or None."""
        i = self.workspace.check(index)

        def compute():
            feats = pixel_features(self.method, self.model, self.tensor(i))
            return None if feats is None else feats[0].cpu()

        return self.cached(("features", i), compute)

    def affinity(self, index: int, row: float, col: float) -> tuple[np.ndarray, str] | None:
        """``((H, W) affinity, source)`` of pixel ``(row, col)`` to every pixel, or None when not available.

        SimNet's same-class probability for methods with ``simnet_affinity``, else the cosine
        similarity of the pixel features mapped to [0, 1].
        """
        i = self.workspace.check(index)
        feats = self.features(i)
        if feats is None:
            return None
        (h, w), (H, W) = self.work_size, self.workspace.size(i)
        r = int(np.clip(round((row + 0.5) * h / H - 0.5), 0, h - 1))
        c = int(np.clip(round((col + 0.5) * w / W - 0.5), 0, w - 1))
        simnet = optional_hook(self.method, "simnet_affinity")
        if simnet is not None:
            with torch.no_grad():
                values, source = simnet(self.model, feats, r, c), "SimNet"
        else:
            values, source = (cosine_affinity(feats, r, c) + 1) / 2, "cosine of pixel features"
        return resize_map(values.float(), (H, W)), source

    def proposals(self, index: int) -> list[dict] | None:
        """SimFormer-style proposals ``{mask (H, W), cls, score}`` best first, or None when the method has none."""
        hook = optional_hook(self.method, "proposals")
        if hook is None:
            return None
        i = self.workspace.check(index)

        def compute():
            props = hook(self.model, self.tensor(i)[0])
            return [{**p, "mask": resize_map(torch.as_tensor(p["mask"]), self.workspace.size(i))} for p in props]

        return self.cached(("proposals", i), compute)

    def cam(self, index: int, cls: int) -> np.ndarray | str:
        """``(H, W)`` Grad-CAM of class ``cls`` normalised to [0, 1], or a string saying why there is none."""
        i = self.workspace.check(index)

        def compute():
            try:
                values = segmenter_gradcam(self.method.predict, self.model, self.tensor(i), cls)[0]
            except ValueError as err:
                return f"no Grad-CAM of {self.workspace.classes[cls]}: {err}"
            values = values / values.max().clamp(min=1e-6)
            return resize_map(values.float(), self.workspace.size(i))

        return self.cached(("cam", i, cls), compute)

    def point_pseudo_mask(self, index: int) -> np.ndarray | str:
        """``(H, W)`` uint8 pseudo-mask grown from the annotations over the model's pixel features
        (the single-stage method's on-the-fly rule), or a string saying why there is none."""
        try:
            from workbench.methods import single_stage
        except ImportError:
            return "the point pseudo-mask needs workbench.methods.single_stage, which this installation lacks"
        i = self.workspace.check(index)
        label = self.workspace.work_label(i, self.work_size)
        if not (label < len(self.workspace.classes)).any():
            return "no points or scribbles on this image yet: click to add some"
        feats = self.features(i)
        if feats is None:
            return "not available for this model (it exposes no pixel features)"
        # the run's own knobs when it is a single-stage run, the defaults for any other method
        config = self.method_config if isinstance(self.method_config, single_stage.Config) else single_stage.Config()
        image = self.tensor(i)
        embed = F.normalize(feats[None].float(), dim=1).to(image.device)
        label_t = torch.from_numpy(label.astype(np.int64))[None].to(embed.device)
        pseudo = single_stage.pseudo_mask(embed, image, label_t, len(self.workspace.classes), config)[0]
        small = pseudo.clamp(max=255).byte().cpu().numpy()
        return np.asarray(resize_pair(np.zeros((*small.shape, 3), np.uint8), small, *self.workspace.size(i))[1])

    # ------------------------------------------------------------------ whole splits

    def evaluate_model(self, model: nn.Module, split: str = "val") -> dict:
        """``evaluation.evaluate`` of any ``model`` (a retrain's candidate) on ``split``, not cached."""
        ws = self.workspace
        dataset = SegmentationDataset(ws.info, split, "dense", size=self.work_size, include_gt=True)
        return evaluation.evaluate(self.method, model.eval(), dataset, next(model.parameters()).device, ws.class_split)

    def summary(self, version: int, split: str = "val") -> dict | None:
        """The cached evaluation of ``version`` on ``split``, or None."""
        with self._lock:
            return self._summaries.get((version, split))

    def record_summary(self, version: int, summary: dict, split: str = "val") -> None:
        with self._lock:
            self._summaries.setdefault((version, split), summary)

    def evaluate(self, split: str = "val") -> dict:
        """``evaluation.evaluate`` of the current model on ``split`` (cached per model version)."""
        version, model = self.version, self.model
        summary = self.summary(version, split)
        if summary is None:
            summary = self.evaluate_model(model, split)
            self.record_summary(version, summary, split)
        return self.summary(version, split) or summary

    def uncertainty_ranking(self, kind: str, batch: int = 16) -> list[dict]:
        """``{index, name, uncertainty, annotations}`` of every image of the split, most uncertain first.

        The mean entropy (or margin) of the model's own prediction, no ground truth needed: with
        no masks at all, the images at the top are where clicks teach the model most (ilastik's
        and MONAI Label's active-learning order). Cached per model version.
        """
        if kind not in UNCERTAINTY:
            raise SessionError(f"unknown uncertainty {kind!r}; use one of {list(UNCERTAINTY)}")
        ws = self.workspace

        def compute() -> list[float]:
            scores, model = [], self.model.eval()
            for start in range(0, len(ws.names), batch):
                images = torch.cat([image_tensor(ws.image(i), self.work_size) for i in
                                    range(start, min(start + batch, len(ws.names)))]).to(self.device)  # fmt: skip
                with torch.no_grad():
                    probs = self.method.predict(model, images).float().softmax(1).cpu().numpy()
                scores += [float(_uncertainty(p, kind).mean()) for p in probs]
            return scores

        scores = self.cached(("ranking", kind), compute)
        counts = ws.annotation_counts()
        rows = [{"index": i, "name": n, "uncertainty": scores[i], "annotations": counts.get(n, 0)}
                for i, n in enumerate(ws.names)]  # fmt: skip
        return sorted(rows, key=lambda r: -r["uncertainty"])

    def per_image_iou(self) -> list[dict]:
        """``{index, name, miou}`` of every image of the browsed split, worst first."""
        ws = self.workspace
        rows = self.evaluate(ws.split)["per_image"]
        table = [{"index": ws.names.index(r["name"]), "name": r["name"], "miou": r["miou"]} for r in rows]
        return sorted(table, key=lambda r: (math.isnan(r["miou"]), r["miou"]))


def _uncertainty(probs: np.ndarray, kind: str) -> np.ndarray:
    from workbench.viz import views  # pure numpy maps; views imports no session

    return views.uncertainty_map(probs, kind)

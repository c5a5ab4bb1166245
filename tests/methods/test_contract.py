"""The method contract, checked for every entry of METHODS (a new method is tested the moment it is listed),
and the partial cross-entropy that the sparse-label methods share."""

from __future__ import annotations

import dataclasses
import json
from types import ModuleType

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from workbench.data.dataset import SUPERVISION_KINDS
from workbench.labels.weak_labels import IGNORE, UNLABELED
from workbench.methods import (
    METHODS,
    OPTIONAL_CONFIG_FIELDS,
    PIXEL_EMBEDDING,
    KeepsTrainingState,
    config_field,
    is_weak_shot,
    partial_ce,
)
from workbench.modeling.backbones import Backbone
from workbench.modeling.losses import sparse_cross_entropy
from workbench.train.config import TrainConfig
from workbench.train.data import make_datasets
from workbench.train.runs import method_config_from_json

NUM_CLASSES = 8  # the synthetic dataset
STEPS = 8  # enough for every method to get past early spikes (simformer jumps x18 after one step)


def method_config(method: ModuleType, novel: tuple[int, ...]):
    """Default config; weak-shot methods get the novel ids as ``loop.train`` gives them."""
    config = method.Config()
    return dataclasses.replace(config, novel=novel) if is_weak_shot(method) else config


def fixed_batch(method: ModuleType, synthetic_root) -> tuple[dict, tuple[int, ...]]:
    """Four training items of the method's first supervision kind, as the engine's loader would batch them."""
    config = TrainConfig(data=str(synthetic_root), hflip=False, protocol="objects2" if is_weak_shot(method) else None)
    train_ds, _ = make_datasets(method, config)
    batch = default_collate([train_ds[i] for i in range(4)])
    batch["progress"] = 0.5
    return batch, train_ds.class_split.novel if train_ds.class_split else ()


@pytest.fixture(params=sorted(METHODS), ids=str)
def method(request) -> ModuleType:
    return METHODS[request.param]


def test_methods_are_listed_under_their_module_name(method):
    name = method.__name__.rsplit(".", 1)[-1]
    assert METHODS[name] is method  # load_run finds a run's method by this name


def test_supervision_is_a_tuple_of_known_kinds(method):
    assert isinstance(method.SUPERVISION, tuple) and method.SUPERVISION
    assert set(method.SUPERVISION) <= set(SUPERVISION_KINDS)


def test_config_is_a_frozen_dataclass_that_survives_json(method):
    assert dataclasses.is_dataclass(method.Config) and method.Config.__dataclass_params__.frozen
    config = method.Config()
    field = dataclasses.fields(config)[0].name if dataclasses.fields(config) else None
    if field is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, field, getattr(config, field))
    from_json = method_config_from_json(method, json.loads(json.dumps(dataclasses.asdict(config))))
    assert from_json == config and hash(from_json) == hash(config)  # as load_run rebuilds it from config.json


def test_build_training_step_and_predict(method, synthetic_root):
    torch.manual_seed(0)
    batch, novel = fixed_batch(method, synthetic_root)
    config = method_config(method, novel)
    model = method.build(NUM_CLASSES, config, Backbone())
    assert isinstance(model, nn.Module)

    model.train()
    outputs = method.training_step(model, batch, config)
    loss = outputs["loss"]
    assert loss.ndim == 0 and loss.requires_grad and torch.isfinite(loss)
    assert all(isinstance(v, torch.Tensor) and v.numel() == 1 for v in outputs.values())  # the engine logs them
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        scores = method.predict(model, batch["image"])
    assert scores.shape == (4, NUM_CLASSES, 32, 32) and torch.isfinite(scores).all()


def test_a_few_steps_on_a_fixed_batch_reduce_the_loss(method, synthetic_root):
    torch.manual_seed(0)
    batch, novel = fixed_batch(method, synthetic_root)
    config = method_config(method, novel)
    model = method.build(NUM_CLASSES, config, Backbone())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(STEPS):
        loss = method.training_step(model, batch, config)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.9 * losses[0], losses


# ----------------------------------------------------------------------------- partial cross-entropy


def sparse_label(shape=(2, 6, 7)) -> torch.Tensor:
    """A few labelled pixels among unlabelled and void ones."""
    label = torch.full(shape, UNLABELED, dtype=torch.long)
    label[0, 1, 2], label[0, 4, 4], label[1, 0, 0], label[1, 5, 6] = 0, 2, 1, 2
    label[:, 3] = IGNORE
    return label


def test_partial_ce_is_the_mean_over_labelled_pixels():
    logits = torch.randn(2, 3, 6, 7)
    label = sparse_label()
    picked = [
        torch.nn.functional.cross_entropy(logits[b, :, r, c][None], label[b, r, c][None])
        for b, r, c in [(0, 1, 2), (0, 4, 4), (1, 0, 0), (1, 5, 6)]
    ]
    assert sparse_cross_entropy(logits, label) == pytest.approx(float(torch.stack(picked).mean()), rel=1e-6)


def test_partial_ce_ignores_unlabelled_and_void_pixels():
    torch.manual_seed(0)
    label = sparse_label()
    unlabelled = (label >= 3)[:, None].expand(2, 3, 6, 7)
    logits = torch.randn(2, 3, 6, 7, requires_grad=True)
    loss = sparse_cross_entropy(logits, label)
    loss.backward()
    assert (logits.grad[unlabelled] == 0).all()
    assert (logits.grad[~unlabelled] != 0).any()

    changed = logits.detach().clone()
    changed[unlabelled] = torch.randn(int(unlabelled.sum())) * 100
    assert sparse_cross_entropy(changed, label).item() == loss.item()


def test_all_unlabelled_batch_gives_zero_loss_not_nan():
    logits = torch.randn(2, 3, 6, 7, requires_grad=True)
    label = torch.full((2, 6, 7), UNLABELED, dtype=torch.long)
    label[1] = IGNORE
    loss = sparse_cross_entropy(logits, label)
    assert loss.item() == 0.0
    loss.backward()  # still differentiable, so a training step never breaks on an empty crop
    assert (logits.grad == 0).all()


def test_partial_ce_rejects_a_label_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"label must be \(B, H, W\)"):
        sparse_cross_entropy(torch.randn(2, 3, 6, 7), torch.zeros(2, 6, 6, dtype=torch.long))


class _Logits(nn.Module):
    """A 'model' whose output is a free tensor: gradients of the method's loss w.r.t. every output pixel."""

    def __init__(self, shape) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.randn(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_partial_ce_training_step_learns_only_from_labelled_pixels():
    model = _Logits((2, 3, 6, 7))
    label = sparse_label()
    batch = {
        "image": torch.zeros(2, 3, 6, 7),
        "label": label,
        "tags": torch.ones(2, 3),
        "index": [0, 1],
        "progress": 0.0,
    }
    outputs = partial_ce.training_step(model, batch, partial_ce.Config())
    outputs["loss"].backward()
    unlabelled = (label >= 3)[:, None].expand(2, 3, 6, 7)
    assert (model.logits.grad[unlabelled] == 0).all()
    assert outputs["labelled_frac"].item() == pytest.approx(4 / (2 * 6 * 7))


WEIGHTS = [
    (name, field.name)
    for name, method in METHODS.items()
    for field in dataclasses.fields(method.Config)
    if field.name.endswith("_weight")
]


@pytest.mark.parametrize(("name", "weight"), WEIGHTS)
def test_a_negative_loss_weight_is_refused_by_name_and_zero_switches_the_term_off(name, weight):
    with pytest.raises(ValueError, match=f"{weight} must be >= 0"):
        METHODS[name].Config(**{weight: -0.5})
    assert getattr(METHODS[name].Config(**{weight: 0.0}), weight) == 0.0


def test_every_method_satisfies_the_written_contract(method):
    from workbench.methods import Method

    assert isinstance(method, Method)
    assert dataclasses.is_dataclass(method.Config) and isinstance(method.SUPERVISION, tuple)


def test_optional_hooks_are_found_through_one_function():
    from workbench.methods import OPTIONAL_HOOKS, cam, optional_hook, simformer, single_stage, supervised

    views = ("pixel_features", "simnet_affinity", "proposals", "param_groups")  # the dashboard and optimizer hooks
    assert all(optional_hook(simformer, name) is getattr(simformer, name) for name in views)
    for method in (single_stage, cam):  # the engine's report on the training images
        assert optional_hook(method, "train_diagnostics") is method.train_diagnostics
    assert all(optional_hook(supervised, name) is None for name in OPTIONAL_HOOKS)
    with pytest.raises(ValueError, match="unknown optional hook 'proposal'"):
        optional_hook(simformer, "proposal")


def test_no_caller_discovers_hooks_with_hasattr_or_special_cases_a_method():
    """The contract lives in workbench/methods/__init__.py: callers use optional_hook, never hasattr/identity."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = "|".join(METHODS)
    pattern = re.compile(
        rf"hasattr\((self\.)?method\b|\bmethod is (not )?({names})\b"  # a hook found by hasattr, a method by identity
        rf"|getattr\([a-z_]*config, \"({'|'.join(OPTIONAL_CONFIG_FIELDS)})\""  # a Config field found by getattr
        r"|getattr\(model, \"(module|resume_state|load_resume_state)\""  # DDP unwrapped, training state found by name
    )
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("workbench", "apps")
        for path in sorted((root / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


def test_optional_config_fields_have_the_declared_meaning(method):
    """Every declared optional field a Config holds has the type of its meant value; only weak-shot methods hold
    ``novel``, and they are the methods that learn from a class split."""
    fields = {f.name: f for f in dataclasses.fields(method.Config)}
    for name, absent in OPTIONAL_CONFIG_FIELDS.items():
        if name in fields:
            assert isinstance(getattr(method.Config(), name), type(absent)), name
        else:
            assert config_field(method.Config(), name) == absent
    assert is_weak_shot(method) == ("novel" in fields)
    assert is_weak_shot(method) == (method.__name__.rsplit(".", 1)[-1] in ("simformer", "transfer"))
    with pytest.raises(ValueError, match="unknown optional config field 'grad_clipping'"):
        config_field(method.Config(), "grad_clipping")


def test_the_loop_fills_novel_ids_and_reads_grad_clip(method, synthetic_root, tmp_path):
    """What the loop does with the declared fields: weak-shot methods get the split's novel ids, grad_clip is read."""
    from workbench.train.loop import setup_run

    protocol = "objects2" if is_weak_shot(method) else None
    config = TrainConfig(data=str(synthetic_root), out=str(tmp_path / "run"), epochs=1, limit_train=8, limit_val=4,
                         protocol=protocol)  # fmt: skip
    run = setup_run(method, method.Config(), config)
    try:
        if is_weak_shot(method):
            assert run.method_config.novel == run.train_ds.class_split.novel != ()
        assert run.grad_clip == config_field(run.method_config, "grad_clip")
    finally:
        run.release()


def test_training_state_outside_the_weights_survives_a_checkpoint(method):
    """A model that keeps training state declares both halves of :class:`KeepsTrainingState`; the loop's
    checkpoint state holds it and gives it back."""
    from workbench.train.runs import load_model_extra_state, model_extra_state

    model = method.build(NUM_CLASSES, method_config(method, (6, 7)), Backbone())
    halves = [callable(getattr(model, name, None)) for name in ("resume_state", "load_resume_state")]
    assert halves[0] == halves[1], "resume_state and load_resume_state come together"
    assert isinstance(model, KeepsTrainingState) == halves[0]
    if isinstance(model, KeepsTrainingState):
        saved = model_extra_state(model)["method"]
        assert saved == model.resume_state()
        load_model_extra_state(model, {"method": saved})


def test_spml_memory_bank_is_training_state_kept_by_the_checkpoint():
    from workbench.methods import spml
    from workbench.train.runs import load_model_extra_state, model_extra_state

    model = spml.build(NUM_CLASSES, spml.Config(), Backbone())
    assert isinstance(model, KeepsTrainingState)
    model.memory = [{"embed": torch.ones(3, 4)}]
    state = model_extra_state(model)
    model.memory = []
    load_model_extra_state(model, state)
    assert len(model.memory) == 1 and torch.equal(model.memory[0]["embed"], torch.ones(3, 4))


def test_a_pixel_embedding_in_the_forward_dict_is_per_pixel_features(method):
    model = method.build(NUM_CLASSES, method_config(method, (6, 7)), Backbone()).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(images)
    if isinstance(out, dict) and PIXEL_EMBEDDING in out:
        embed = out[PIXEL_EMBEDDING]
        assert embed.ndim == 4 and embed.shape[0] == 2 and embed.shape[-1] <= 32


def test_methods_reach_their_heads_through_the_ddp_wrapper():
    """The one unwrap mechanism: MethodDDP forwards what the wrapper lacks to the model inside."""
    from workbench.train.loop import MethodDDP

    inner = nn.Linear(2, 2)
    inner.tag_head = nn.Linear(2, 3)
    wrapper = MethodDDP.__new__(MethodDDP)  # no process group needed for attribute lookup
    nn.Module.__init__(wrapper)
    wrapper.module = inner
    assert wrapper.tag_head is inner.tag_head

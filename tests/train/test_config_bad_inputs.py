"""Bad inputs of workbench.train.config: NaN, negative and unbounded values of TrainConfig and of every
method's Config, each refused naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from workbench.methods import METHODS
from workbench.train.config import ConfigError, TrainConfig, check_numbers


@pytest.mark.parametrize(
    "key, value",
    [
        ("lr", float("nan")),
        ("lr", -1e-3),
        ("lr", float("inf")),
        ("weight_decay", -1.0),
        ("epochs", 0),
        ("epochs", float("nan")),
        ("batch_size", 2.5),
        ("scale_min", 0.0),
        ("point_radius", -1.0),
        ("scribble_fraction", float("nan")),
        ("points_per_region", 0),
        ("limit_train", -1),
        ("seed", -1),
        ("image_size", (4, 4)),
    ],
)
def test_train_config_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{key: value})


def _float_fields():
    for name, method in METHODS.items():
        for f in dataclasses.fields(method.Config):
            if isinstance(getattr(method.Config(), f.name), float):
                yield pytest.param(method, f.name, id=f"{name}.{f.name}")


@pytest.mark.parametrize("method, key", list(_float_fields()))
def test_nan_in_any_method_config_is_refused_naming_the_key(method, key):
    """Range checks such as ``x > 0`` let NaN through; ``train`` checks every float before it writes."""
    with pytest.raises(ValueError, match=key):
        check_numbers(dataclasses.replace(method.Config(), **{key: float("nan")}))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_workers": 100000}, "num_workers 100000 is over the limit of 64"),
        ({"image_size": (100000, 100000)}, r"8 to 4096 pixels each \(the limit\)"),
        ({"batch_size": 10**6}, "batch_size 1000000 is over the limit"),
        ({"epochs": 10**9}, "epochs 1000000000 is over the limit"),
        ({"scale_min": 2.0, "scale_max": 0.5}, "scale_min 2.0 is above scale_max 0.5"),
        ({"device": "tpu"}, "device 'tpu' is not supported; use auto, cpu"),
    ],
)
def test_resource_knobs_are_bounded_naming_the_limit(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)

"""The one parser of config field annotations, shared by the CLI's --key=value and the engine's number checks."""

from __future__ import annotations

import dataclasses

import pytest

from workbench.cli import UsageError, coerce
from workbench.configs import field_type
from workbench.train.config import ConfigError, TrainConfig, check_numbers


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("int", ("int", False)),
        (int, ("int", False)),
        ("float | None", ("float", True)),
        ("None | str", ("str", True)),
        ("tuple[int, int] | None", ("tuple[int, int]", True)),
        ("tuple[int | None, ...]", ("tuple[int | None, ...]", False)),
        ("str | int", ("str | int", False)),
    ],
)
def test_field_type(annotation, expected):
    assert field_type(annotation) == expected


def test_cli_and_engine_read_the_same_types():
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    assert coerce("none", fields["limit_train"], "limit_train") is None  # int | None
    assert coerce("12", fields["limit_train"], "limit_train") == 12
    assert coerce("120x160", fields["image_size"], "image_size") == (120, 160)
    with pytest.raises(UsageError, match="expected int"):
        coerce("2.5", fields["epochs"], "epochs")
    config = TrainConfig()
    object.__setattr__(config, "limit_val", 2.5)  # past __post_init__, as a loaded config could be
    with pytest.raises(ConfigError, match="limit_val must be a whole number"):
        check_numbers(config)

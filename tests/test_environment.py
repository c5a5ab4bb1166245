"""The environment files agree: conda, pip (`make setup`), CI and pre-commit install the same pinned things."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    """``constraints.txt`` as ``{canonical name: exact version}``."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier  # one exact pin a line
            assert spec.operator == "==", f"constraints.txt: {line!r} must pin one exact version (==)"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _pip_lines() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    return pip


def test_conda_environment_installs_every_extra_with_the_constraints():
    pip = _pip_lines()
    assert "-c constraints.txt" in pip
    (editable,) = [line for line in pip if line.startswith("-e .")]
    extras = set(re.fullmatch(r"-e \.\[(.*)\]", editable).group(1).split(","))
    assert extras == set(_pyproject()["project"]["optional-dependencies"])


def test_every_requirement_is_pinned_in_constraints_and_the_pin_is_allowed():
    project, pins = _pyproject()["project"], _pins()
    requirements = list(project["dependencies"]) + [r for rs in project["optional-dependencies"].values() for r in rs]
    for line in requirements:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is required by pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} breaks {line!r}"


def test_make_setup_and_ci_install_through_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt", makefile)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_pre_commit_hooks_use_the_constraints_pins():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    pins = _pins()
    hooks = [h for repo in config["repos"] for h in repo["hooks"]]
    assert {"ruff", "ruff-format", "check-added-large-files", "jupytext-round-trip", "no-paired-ipynb"} <= {
        h["id"] for h in hooks
    }
    for hook in hooks:
        for dep in hook.get("additional_dependencies", []):
            req = Requirement(dep)
            assert str(req.specifier) == f"=={pins[canonicalize_name(req.name)]}", (
                f"hook {hook['id']}: {dep} differs from constraints.txt"
            )


def test_license_is_an_spdx_expression_the_build_backend_understands():
    data = _pyproject()
    assert data["project"]["license"] == "MIT"
    (setuptools,) = [Requirement(r) for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert not setuptools.specifier.contains("76.9")  # PEP 639 license strings need setuptools >= 77


def test_views_dependency_pandas_is_declared():
    ui = [canonicalize_name(Requirement(r).name) for r in _pyproject()["project"]["optional-dependencies"]["ui"]]
    assert "pandas" in ui

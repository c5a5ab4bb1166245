"""The folder tree is the architecture: imports only run downhill, and nothing imports in a circle.

Every ``workbench`` import is read from the source (function-level imports too; ``TYPE_CHECKING``
blocks are types only and skipped). A module may import its own floor or any floor below it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"

# Lowest first. A folder or top-level module sits on one floor.
FLOORS = (
    ("io", "configs", "metrics", "ownership"),  # plain utilities
    ("labels",),  # weak-label types, simulation, class splits
    ("data",),  # dataset folders, conversion, the synthetic set, the torch dataset
    ("annotations",),  # a user's edited labels and their exchange formats
    ("modeling",),  # backbones, affinities, losses: the parts methods are built from
    ("inference", "explain"),  # scoring and explaining any method's model
    ("methods",),  # one file per method
    ("train",),  # config, data loaders, the loop, run folders, evaluation
    ("viz",),  # HoloViews/Panel drawing, committed bench results
    ("dashboard",),  # the annotation and inspection app
    ("cli", "demo", "__main__"),  # entry points
)
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    path = PACKAGE.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def workbench_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every workbench import; ``from pkg import mod`` counts as ``pkg.mod``."""
    tree = ast.parse(path.read_text())
    types_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in types_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("workbench"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("workbench")]
    return found


def import_map() -> dict[str, list[tuple[int, str]]]:
    return {module_name(p): workbench_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the package itself
    if parts[1] not in FLOOR:
        raise AssertionError(f"{module} is on no floor: add workbench/{parts[1]} to FLOORS in {__file__}")
    return FLOOR[parts[1]]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_is_on_a_floor():
    for module in import_map():
        floor_of(module)


def test_imports_only_run_downhill():
    uphill = [
        f"{module}:{line} imports {target} (floor {floor_of(target)} above {floor_of(module)})"
        for module, imported in import_map().items()
        for line, target in imported
        if floor_of(target) > floor_of(module)
    ]
    assert not uphill, "\n".join(uphill)


def test_no_import_circle():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported in import_map().items():
        graph[module].update(target for _, target in imported if target != module)
    assert not cycles(graph), cycles(graph)


def test_the_checks_catch_what_they_guard():
    """An uphill import and a circle, made up, are both found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert floor_of("workbench.methods.spml") < floor_of("workbench.train.loop")
    with pytest.raises(AssertionError, match="on no floor"):
        floor_of("workbench.nowhere")

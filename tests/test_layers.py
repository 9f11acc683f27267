"""Imports point one way (the README's layering rule), with no cycles between the package's parts.

Every `faceattr_ray` import counts, also those inside functions (the lazy ones that keep torch and
Ray out of `--help`): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "faceattr_ray")

# Lowest first. A part may import its own layer or the ones below, never one above.
LAYERS = [
    {"__init__", "errors", "attributes", "crops", "metrics", "runtime"},
    {"models", "heads"},
    {"bundle", "data", "localizers", "presets"},
    {"predictor", "train", "calibrate", "bundled"},
    {"pipeline", "evaluation"},
    {"reproduce", "demo"},
    {"cli"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """faceattr_ray.localizers.lnet -> localizers; faceattr_ray -> __init__."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    """{part: parts it imports}, from every .py file of the package."""
    graph: dict[str, set[str]] = defaultdict(set)
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
            me = _part(rel.removesuffix(".__init__"))
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        "faceattr_ray"):
                    targets = [node.module]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names if a.name.startswith("faceattr_ray")]
                else:
                    continue
                graph[me].update(_part(t) for t in targets if _part(t) != me)
    return graph


def test_every_part_has_a_layer():
    parts = {n[:-3] if n.endswith(".py") else n for n in os.listdir(PACKAGE)
             if n.endswith(".py") or os.path.isfile(os.path.join(PACKAGE, n, "__init__.py"))}
    assert parts == set(RANK), "new part: give it a layer here and in the README"


def test_imports_point_down():
    wrong = [(a, b) for a, bs in _imports().items() for b in bs if RANK[b] > RANK[a]]
    assert not wrong, f"imports pointing up a layer: {sorted(wrong)}"


def test_no_cycles_between_parts():
    graph = _imports()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for part in sorted(graph):
        if part not in state:
            visit(part, [])

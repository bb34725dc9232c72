"""The package's layers import downward only, pure layers never import Dagster, and no module imports in a cycle.

Layers, lowest first (docs/architecture.md draws them):

    core  <  stripe, store  <  traits  <  extract  <  segment  <  privacy, webhooks  <  defs  <  definitions

A module may import its own package and any lower rank; packages of the same
rank are independent of each other (``stripe`` and ``store`` never import one
another). Only ``defs`` and ``definitions`` may import dagster.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s2s_pipeline"

RANKS: dict[str, int] = {
    "core": 0,
    "stripe": 1, "store": 1,
    "traits": 2,
    "extract": 3,
    "segment": 4,
    "privacy": 5, "webhooks": 5,
    "defs": 6,
    "definitions": 7,
}
DAGSTER_ALLOWED = {"defs", "definitions"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "s2s_pipeline" else None


def test_every_package_has_a_rank():
    layers = {_layer(m) for m in MODULES} - {None}
    assert layers <= set(RANKS), f"give these packages a rank here and in docs/architecture.md: {layers - set(RANKS)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_downward_only(module):
    own = _layer(module)
    if own is None:
        return
    wrong = []
    for target in IMPORTS[module]:
        other = _layer(target)
        if other is None or other == own or target not in MODULES and other not in RANKS:
            continue
        if RANKS[other] >= RANKS[own]:
            wrong.append(f"{target} ({other}, rank {RANKS[other]})")
    assert not wrong, f"{module} ({own}, rank {RANKS[own]}) imports upward or sideways: {sorted(set(wrong))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) not in DAGSTER_ALLOWED))
def test_pure_layers_do_not_import_dagster(module):
    dagster = sorted(t for t in IMPORTS[module] if t == "dagster" or t.startswith(("dagster.", "dagster_")))
    assert not dagster, f"{module} imports {dagster}: only s2s_pipeline.defs may use Dagster"


def test_no_module_imports_in_a_cycle():
    graph = {m: {t for t in IMPORTS[m] if t in MODULES and t != m} for m in MODULES}
    # a package's __init__ is imported by its children implicitly; only explicit edges count here
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_see_real_imports():
    """Guard against a scan that finds nothing (which would make every test above pass)."""
    assert "s2s_pipeline.core.contract" in IMPORTS["s2s_pipeline.segment.event_mapping"]
    assert any(t.startswith("dagster") for t in IMPORTS["s2s_pipeline.definitions"])

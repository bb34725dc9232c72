"""The store owns every SQL statement: nothing outside ``s2s_pipeline/store/`` imports SQLAlchemy,
or reaches for a store object's private attributes or its engine.

A plain AST scan of the package's sources (no imports, so it is fast and sees every module).
Which layer may import which is ``test_layering.py``'s business.
"""

from __future__ import annotations

import ast
from pathlib import Path

import s2s_pipeline

PACKAGE = Path(s2s_pipeline.__file__).parent
STORE = PACKAGE / "store"

#: Names under which code outside the store holds store objects (``store``, ``state_store``,
#: ``self.store``, ``store.mirror`` ...): any ``_private`` attribute read off them is a leak.
STORE_HANDLES = {"store", "state_store", "mirror", "ledger", "cursors", "identities", "pushed_traits",
                 "track_state", "traits_table", "inbox"}

def _modules(root: Path):
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _outside_store():
    for path, tree in _modules(PACKAGE):
        if STORE not in path.parents:
            yield path, tree


def _imported(tree: ast.AST):
    """(line, dotted module name) of every import in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _handle_name(node: ast.AST) -> str | None:
    """The last name of ``store`` / ``self.store`` / ``x.store.mirror`` style expressions."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):  # state_store.store()._insert
        return _handle_name(node.func)
    return None


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_only_the_store_imports_sqlalchemy():
    offenders = [f"{_rel(path)}:{line} imports {name}" for path, tree in _outside_store()
                 for line, name in _imported(tree) if name == "sqlalchemy" or name.startswith("sqlalchemy.")]
    assert offenders == []


def _reaches_inside(node: ast.AST) -> bool:
    """``store._insert``, ``store.engine`` ...: a private attribute, or the engine, of a store object."""
    return (isinstance(node, ast.Attribute) and _handle_name(node.value) in STORE_HANDLES
            and (node.attr == "engine" or (node.attr.startswith("_") and not node.attr.startswith("__"))))


def test_nothing_outside_the_store_uses_a_store_objects_private_attributes_or_engine():
    offenders = [f"{_rel(path)}:{node.lineno} uses .{node.attr}" for path, tree in _outside_store()
                 for node in ast.walk(tree) if _reaches_inside(node)]
    assert offenders == []


def test_nothing_outside_the_store_imports_a_private_store_name():
    offenders = []
    for path, tree in _outside_store():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s2s_pipeline.store"):
                offenders += [f"{_rel(path)}:{node.lineno} imports {a.name}" for a in node.names
                              if a.name.startswith("_")]
            if isinstance(node, ast.ImportFrom) and node.module == "s2s_pipeline.store.statements":
                offenders.append(f"{_rel(path)}:{node.lineno} imports the store's statement helpers")
    assert offenders == []


def test_the_scan_sees_a_leak():
    """The checks above catch what they are meant to (guards against a scan that finds nothing)."""
    leak = ast.parse("from sqlalchemy import select\nstore._insert(t)\nself.store.engine\nstate_store.store()._x\n")
    assert [name for _, name in _imported(leak)] == ["sqlalchemy"]
    assert sorted(n.attr for n in ast.walk(leak) if _reaches_inside(n)) == ["_insert", "_x", "engine"]

"""The .pyi stubs of the native modules (fastsync/_*.pyi, written by hand from ext/fastsync/*.pyx)
name exactly what the compiled modules expose: the module's public names, and for each class its
public methods and properties; so a stub cannot drift from its extension. (tests/test_types.py
type-checks them.)"""
from __future__ import annotations

import ast
import importlib
import inspect
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ["_ringbuf", "_framing", "_wal", "_avro", "_pgcopy", "_mysqlrows", "_treewalk"]


def public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def stub_names(tree: ast.Module | ast.ClassDef) -> dict[str, ast.AST]:
    """What a stub (or one of its classes) defines: classes, functions, annotated or assigned
    names; not its imports."""
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
        elif isinstance(node, ast.Assign):
            found.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
    return found


def is_property(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)


@pytest.mark.parametrize("name", NATIVE)
def test_stub_names_what_the_module_exposes(name):
    module = importlib.import_module("fastsync." + name)
    stub = stub_names(ast.parse((ROOT / "fastsync" / (name + ".pyi")).read_text()))
    exposed = public(n for n in dir(module) if not isinstance(getattr(module, n), types.ModuleType))
    assert public(stub) == exposed, "fastsync/%s.pyi: missing %s, not in the module %s" % (
        name, sorted(exposed - public(stub)), sorted(public(stub) - exposed))
    for cls_name, node in stub.items():
        if not isinstance(node, ast.ClassDef) or cls_name.startswith("_"):
            continue
        cls = getattr(module, cls_name)
        members = stub_names(node)
        # methods and properties (a Cython readonly attribute is a property too); a stub may
        # declare more attributes (an exception's, set in __init__), not more methods
        runtime = public(vars(cls))
        methods = public(n for n, m in members.items() if isinstance(m, ast.FunctionDef) and not is_property(m))
        runtime_methods = public(n for n in runtime if callable(inspect.getattr_static(cls, n)))
        assert methods == runtime_methods, "fastsync/%s.pyi class %s: methods missing %s, not in the class %s" % (
            name, cls_name, sorted(runtime_methods - methods), sorted(methods - runtime_methods))
        assert runtime <= public(members), "fastsync/%s.pyi class %s: missing %s" % (
            name, cls_name, sorted(runtime - public(members)))


"""The shipped type stub (_core.pyi) and py.typed stay true to the compiled module."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import fisherkit
from fisherkit._loader import _core


def test_stub_lists_exactly_the_compiled_functions():
    stub = Path(fisherkit.__file__).with_name("_core.pyi")
    assert stub.is_file() and Path(fisherkit.__file__).with_name("py.typed").is_file()
    tree = ast.parse(stub.read_text())
    declared = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    compiled = {name for name, obj in vars(_core).items() if callable(obj) and not name.startswith("_")
                and not inspect.isclass(obj)}
    assert set(declared) == compiled
    for name, node in declared.items():
        # pybind11's docstring signature starts with the same parameter names, in order
        doc = getattr(_core, name).__doc__ or ""
        params = [a.arg for a in node.args.args]
        head = doc.split("->")[0]
        positions = [head.find(f"{p}:") for p in params]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), name

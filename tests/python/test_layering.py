"""The Python package reads top-down: its modules import each other without cycles, and no
module defers an import of another fisherkit module to dodge one (only the command-line
entry points import lazily, to load optional dependencies when a command needs them)."""
from __future__ import annotations

import ast
from pathlib import Path

import fisherkit

PKG = Path(fisherkit.__file__).parent
LAZY_OK = {"cli.py", "demo.py", "rl/cli.py", "_loader.py"}


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = ["fisherkit", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(mod: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        up = mod.split(".") if is_pkg else mod.split(".")[:-1]
        up = up[: len(up) - (node.level - 1)]
        base = ".".join(up + ([node.module] if node.module else []))
    if not base.startswith("fisherkit"):
        return []
    names = [f"{base}.{a.name}" for a in node.names]
    return [n for n in names if n in MODULES] or [base]


MODULES = {_module(p): p for p in PKG.rglob("*.py")}


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    graph, lazy = {}, []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            targets = [t for t in _target(mod, path.name == "__init__.py", node) if t in MODULES and t != mod]
            if node.col_offset == 0:
                deps.update(targets)
            elif targets and str(path.relative_to(PKG)) not in LAZY_OK:
                lazy.append(f"{path.relative_to(PKG)}:{node.lineno} imports {', '.join(targets)} inside a function")
        graph[mod] = deps
    return graph, lazy


def test_no_import_cycles() -> None:
    graph, _ = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    # a package importing its own submodules is not a cycle of the layering
    cycles = [c for c in cycles if not all(x.startswith(c.split(" -> ")[0]) for x in c.split(" -> "))]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_lazy_imports_between_modules() -> None:
    _, lazy = _graph()
    assert not lazy, "\n".join(lazy)

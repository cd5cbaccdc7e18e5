"""Code blocks of the README and of the documentation, extracted and run as a reader would.

``markdown_blocks`` reads fenced blocks (```python) of a Markdown file, ``rst_blocks`` the
``.. code-block:: python`` directives of a reStructuredText page. ``run_python`` executes a
list of blocks in order, in one fresh namespace, in a subprocess started in ``cwd``; each
block is compiled under its file name and padded so that a traceback points at the line
of the file itself. A block that imports an optional dependency the machine lacks (CuPy
with a visible GPU, PyTorch, Gymnasium) is left out, and ``run_python`` says which.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line in `path`
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_blocks(path: Path, lang: str) -> list[Block]:
    out, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```\s*([\w+-]+)\s*$", lines[i])
        if m:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if m.group(1) == lang:
                out.append(Block(path, start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def rst_blocks(path: Path, lang: str) -> list[Block]:
    out, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. code-block::\s*(\S+)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        i += 1
        while i < len(lines) and re.match(r"^\s+:\w[\w-]*:", lines[i]):  # directive options
            i += 1
        body, first = [], None
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            if lines[i].strip() and first is None:
                first = i
            body.append(lines[i])
            i += 1
        if m.group(2) == lang and first is not None:
            body = body[first - (i - len(body)):]
            while body and not body[-1].strip():
                body.pop()
            cut = min(len(s) - len(s.lstrip()) for s in body if s.strip())
            out.append(Block(path, first + 1, lang, "\n".join(s[cut:] for s in body) + "\n"))
    return out


def _imports(code: str) -> set[str]:
    names = set(re.findall(r"^\s*import\s+([\w]+)", code, re.M))
    names |= set(re.findall(r"^\s*from\s+([\w]+)[\w.]*\s+import", code, re.M))
    return names


def _gpu_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        import fisherkit

        return bool(cupy.cuda.is_available()) and bool(fisherkit.info()["gpu_visible"])
    except Exception:  # noqa: BLE001 - any failure means no usable GPU
        return False


def missing_requirement(block: Block) -> str | None:
    """Why the block cannot run here, or None."""
    imports = _imports(block.code)
    if "cupy" in imports and not _gpu_available():
        return "needs CuPy and a visible GPU"
    if "rl.train(" in block.code:  # fisherkit.rl.train builds Gymnasium environments
        imports.add("gymnasium")
    for name in ("torch", "gymnasium"):
        if name in imports and importlib.util.find_spec(name) is None:
            return f"needs {name}"
    return None


_DRIVER = """
import json, sys
ns = {"__name__": "__main__"}
for b in json.load(open(sys.argv[1])):
    print(f"=== running {b['where']}", flush=True)
    exec(compile("\\n" * (b["line"] - 1) + b["code"], b["file"], "exec"), ns)
"""


def run_python(blocks: list[Block], cwd: Path, timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the runnable blocks in order in one namespace; returns the process and the
    blocks left out (with the reason)."""
    runnable, skipped = [], []
    for b in blocks:
        why = missing_requirement(b)
        if why:
            skipped.append(f"{b.where}: {why}")
        else:
            runnable.append({"where": b.where, "file": str(b.path), "line": b.line, "code": b.code})
    spec = Path(cwd) / "blocks.json"
    spec.write_text(json.dumps(runnable))
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(spec)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)
    return proc, skipped

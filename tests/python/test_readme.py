"""Every code block of README.md runs as written.

The Python blocks run in order in one namespace, as a reader following the README would
run them (a block needing CuPy and a GPU is left out elsewhere). The C++ block is built
with the README's own CMake block against the installed package and run; its output is
compared with the same computation in Python. The C++ part skips without CMake, a C++
compiler or a build tool (test_cpp's toolchain fixture).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

import fisherkit
from snippets import ROOT, markdown_blocks, run_python
from test_cpp import Toolchain, toolchain  # noqa: F401 - the fixture is used by name

README = ROOT / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    first = markdown_blocks(README, "bash")[0]
    assert first.line <= 8  # below the title and the screenshot
    assert 'pip install ".[report]" && fisherkit demo' in first.code
    assert 'pip install ".[test]" && python -m pytest' in first.code


def test_readme_python_blocks_run(tmp_path: Path) -> None:
    blocks = markdown_blocks(README, "python")
    assert len(blocks) >= 4
    proc, skipped = run_python(blocks, tmp_path)
    assert proc.returncode == 0, f"a README block failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    assert proc.stdout.count("=== running") == len(blocks) - len(skipped)


def test_readme_cpp_block_builds_and_agrees_with_python(toolchain: Toolchain, tmp_path: Path) -> None:  # noqa: F811
    (cmake_block,) = markdown_blocks(README, "cmake")
    (cpp_block,) = markdown_blocks(README, "cpp")
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(cmake_block.code)
    (src / "main.cpp").write_text(cpp_block.code)
    build = tmp_path / "build"
    proc = toolchain.configure(src, build)
    assert proc.returncode == 0, f"configuring the README's C++ project failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    toolchain.build(build)
    run = subprocess.run([str(build / "app")], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    m = re.search(r"P = (\d+), h_0 = \((\S+), (\S+)\), F_00 = (\S+)", run.stdout)
    assert m, run.stdout

    # the same network in Python, from the numbers in the C++ block
    def array(name: str) -> np.ndarray:
        body = re.search(rf"\b{name} = \{{([^}}]*)\}}", cpp_block.code).group(1)
        return np.array([float(v) for v in body.split(",")])

    model = fisherkit.MLP([(array("W1").reshape(3, 2), array("b1")), (array("W2").reshape(2, 3), array("b2"))],
                          "tanh", "categorical")
    X = array("X").reshape(4, 2)
    assert int(m.group(1)) == model.n_params
    np.testing.assert_allclose([float(m.group(2)), float(m.group(3))], model.forward(X)[0], atol=1e-4)
    np.testing.assert_allclose(float(m.group(4)), fisherkit.fisher(model, X).values[0], rtol=1e-5, atol=1e-6)

"""The C++ side, built against the INSTALLED package through its CMake config.

A: ``tests/cpp/consumer`` (a downstream project that ``find_package(fisherkit)``s the
package and checks forward / per-sample gradients against hand-written loops).
B: the doctest unit tests in ``tests/cpp``, configured standalone and run with ctest.

Skips when no CMake, C++ compiler or build tool is found. B also skips when doctest is not
installed (``apt-get install doctest-dev``), unless ``FISHERKIT_REQUIRE_CPP_TESTS=1``,
which turns the skip into a failure (for CI, where the C++ tests must run).
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import fisherkit

ROOT = Path(__file__).resolve().parents[2]
CPP_TESTS = ROOT / "tests" / "cpp"
CONSUMER = CPP_TESTS / "consumer"
DOCTEST_MISSING = "doctest not found"  # printed by tests/cpp/CMakeLists.txt


def _module_tool(module: str, attr: str, name: str) -> str | None:
    """A tool shipped by a PyPI package (``cmake``, ``ninja``), when installed."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    bindir = getattr(mod, attr, "") or ""
    path = Path(bindir) / name if bindir else None
    return str(path) if path is not None and path.is_file() else None


def _cmake() -> str | None:
    return shutil.which("cmake") or _module_tool("cmake", "CMAKE_BIN_DIR", "cmake")


def _ctest(cmake: str) -> str | None:
    beside = Path(cmake).with_name("ctest")
    return str(beside) if beside.is_file() else shutil.which("ctest")


def _ninja() -> str | None:
    return shutil.which("ninja") or _module_tool("ninja", "BIN_DIR", "ninja")


def _cxx() -> str | None:
    for name in filter(None, [os.environ.get("CXX"), "c++", "g++", "clang++"]):
        path = shutil.which(name)
        if path:
            return path
    return None


def _openblas_args() -> list[str]:
    """Where scipy-openblas32 is, when the package config cannot find it by itself.

    The installed config looks for it beside the ``fisherkit`` folder in site-packages
    (a normal install). A venv created with ``--system-site-packages`` can hold fisherkit
    while scipy-openblas32 sits in the base interpreter's site-packages: pass its folder.
    """
    sibling = Path(fisherkit.cmake_dir()).parents[3] / "scipy_openblas32" / "lib" / "cmake" / "openblas"
    if sibling.is_dir():
        return []
    import scipy_openblas32

    return [f"-DFISHERKIT_OPENBLAS_DIR={Path(scipy_openblas32.get_lib_dir()) / 'cmake' / 'openblas'}"]


@dataclass
class Toolchain:
    cmake: str
    ctest: str
    configure_args: list[str] = field(default_factory=list)

    def run(self, cmd: list[str], what: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                        f"--- stdout ---\n{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")
        return proc

    def configure(self, src: Path, build: Path) -> subprocess.CompletedProcess[str]:
        cmd = [self.cmake, "-S", str(src), "-B", str(build), *self.configure_args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)

    def build(self, build: Path) -> None:
        self.run([self.cmake, "--build", str(build)], "build")


@pytest.fixture(scope="module")
def toolchain() -> Toolchain:
    cmake = _cmake()
    if cmake is None:
        pytest.skip("cmake not found (pip install cmake)")
    ctest = _ctest(cmake)
    if ctest is None:
        pytest.skip("ctest not found beside cmake")
    cxx = _cxx()
    if cxx is None:
        pytest.skip("no C++ compiler found (set CXX, or install g++ / clang++)")
    args = ["-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_CXX_COMPILER={cxx}",
            f"-Dfisherkit_DIR={fisherkit.cmake_dir()}", *_openblas_args()]
    ninja = _ninja()
    if ninja is not None:
        args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    elif shutil.which("make") is None:
        pytest.skip("no build tool found (pip install ninja, or install make)")
    return Toolchain(cmake, ctest, args)


def _configure_failed(proc: subprocess.CompletedProcess[str], what: str) -> str:
    return (f"configuring {what} failed (exit {proc.returncode})\n"
            f"--- stdout ---\n{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")


def test_cmake_package_is_installed() -> None:
    cmake_dir = Path(fisherkit.cmake_dir())
    assert (cmake_dir / "fisherkitConfig.cmake").is_file()
    assert (cmake_dir / "fisherkitConfigVersion.cmake").is_file()
    assert (Path(fisherkit.include_dir()) / "fisherkit" / "fisherkit.hpp").is_file()


def test_downstream_consumer_builds_and_agrees(toolchain: Toolchain, tmp_path: Path) -> None:
    build = tmp_path / "consumer"
    proc = toolchain.configure(CONSUMER, build)
    if proc.returncode != 0:
        pytest.fail(_configure_failed(proc, "tests/cpp/consumer"))
    toolchain.build(build)
    exe = build / "fisherkit_consumer"
    assert exe.is_file(), f"no executable at {exe}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"consumer failed:\n{run.stdout}\n{run.stderr}"
    assert "consumer ok" in run.stdout
    assert fisherkit.info()["version"] in run.stdout


def test_cpp_unit_tests_pass_against_installed_package(toolchain: Toolchain, tmp_path: Path) -> None:
    build = tmp_path / "cpp-tests"
    proc = toolchain.configure(CPP_TESTS, build)
    if proc.returncode != 0:
        # CMake wraps long messages: compare with whitespace collapsed.
        if DOCTEST_MISSING in " ".join((proc.stdout + proc.stderr).split()):
            if os.environ.get("FISHERKIT_REQUIRE_CPP_TESTS") == "1":
                pytest.fail(f"FISHERKIT_REQUIRE_CPP_TESTS=1 but {DOCTEST_MISSING} "
                            "(apt-get install doctest-dev)")
            pytest.skip(f"{DOCTEST_MISSING} (apt-get install doctest-dev)")
        pytest.fail(_configure_failed(proc, "tests/cpp"))
    toolchain.build(build)
    run = subprocess.run([toolchain.ctest, "--output-on-failure", "--timeout", "300"], cwd=build,
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, f"ctest failed:\n{run.stdout[-20000:]}\n{run.stderr[-4000:]}"
    assert "100% tests passed" in run.stdout
    # doctest_discover_tests registers one ctest entry per test case: make sure they ran.
    assert "No tests were found" not in run.stdout + run.stderr


def test_cpp_example_builds_and_runs(toolchain: Toolchain, tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "examples" / "cpp"
    build = tmp_path / "example"
    proc = toolchain.configure(src, build)
    if proc.returncode != 0:
        pytest.fail(_configure_failed(proc, "examples/cpp"))
    toolchain.build(build)
    run = subprocess.run([str(build / "fisher_example")], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0 and "example ok" in run.stdout, run.stdout + run.stderr

"""The fisherkit command."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import fisherkit
from fisherkit.cli import main


def test_info_and_cmake_dir(capsys):
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["version"] == fisherkit.__version__
    assert "openblas" in facts["blas"].lower()
    assert isinstance(facts["cuda_compiled"], bool) and isinstance(facts["gpu_visible"], bool)
    assert main(["--cmake-dir"]) == 0
    d = capsys.readouterr().out.strip()
    assert os.path.isfile(os.path.join(d, "fisherkitConfig.cmake"))
    assert os.path.isfile(os.path.join(fisherkit.include_dir(), "fisherkit", "fisherkit.hpp"))


def test_module_entry_point_prints_cmake_dir():
    out = subprocess.run([sys.executable, "-m", "fisherkit", "--cmake-dir"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == fisherkit.cmake_dir()


def test_demo_runs_and_reports(capsys):
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "training" in out and "per-sample gradients" in out
    # the demo's own consistency check: mean of per-sample gradients equals the batch gradient
    line = next(l for l in out.splitlines() if "max |diff|" in l)
    assert float(line.rsplit("=", 1)[1]) < 1e-10

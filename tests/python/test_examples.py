"""The examples in examples/ run as written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quickstart_runs():
    out = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "unit blocks agree: True" in out
    assert "natural gradient (unit-correlated): loss" in out
    first, last = (float(v) for v in out.rsplit("loss", 1)[1].split("in")[0].split("->"))
    assert last < first


def test_gpu_example_runs_or_says_why_not():
    out = subprocess.run([sys.executable, str(EXAMPLES / "gpu_fisher.py")], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "needs CuPy and a visible NVIDIA GPU" in out or "on the GPU vs the CPU" in out

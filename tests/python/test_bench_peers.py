"""benchmarks/bench_peers.py runs end to end in its --smoke mode (tiny odd sizes, one
repeat), so the peer benchmark cannot rot: every row, every installed peer and every
agreement check runs, the table and the chart are written.

Runs without PyTorch too (CI has none): fisherkit and the rooflines need no peer, and a
peer that is not installed is skipped by the script itself and named as such in the table
(benchmarks/peers/make_env.sh makes an environment with them). Speed is not asserted.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from snippets import ROOT

SCRIPT = ROOT / "benchmarks" / "bench_peers.py"
ROW_TITLES = ["exact diag", "layer blocks", "unit blocks", "full", "per-sample gradients, fresh",
              "per-sample gradients, out=", "10 Fisher-vector products", "MC diagonal, 1 draw"]
PEERS = {"BackPACK": "backpack", "curvlinops": "curvlinops", "NNGeometry": "nngeometry", "ASDL": "asdl"}


def _importable(module: str) -> bool:
    if importlib.util.find_spec(module) is None:
        return False
    if module == "asdl":  # the PyPI name 'asdl' may be another project; ASDL has get_fisher_maker
        proc = subprocess.run([sys.executable, "-c", "import asdl; asdl.get_fisher_maker"], capture_output=True)
        return proc.returncode == 0
    return True


def test_bench_peers_smoke_runs_every_row_and_check(tmp_path):
    out = tmp_path / "peers"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], capture_output=True,
                          text=True, timeout=900, env=env, cwd=ROOT)
    log = f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, log
    page = (tmp_path / "peers.md").read_text()
    assert "Smoke run" in page
    assert "check failed" not in page and "**failed**" not in page, page
    summary = page.split("## Every measurement")[0]
    for title in ROW_TITLES:
        line = next((ln for ln in summary.splitlines() if ln.startswith(f"| {title} ")), None)
        assert line is not None, f"no summary line for {title!r}:\n{summary}"
        assert "x roofline" in line.split("|")[4], f"fisherkit has no time in {line!r}"
    details = page.split("## Every measurement")[1]
    for name, module in PEERS.items():
        if _importable(module):  # each installed peer was run and agreed somewhere
            assert f"| {name} |" in details, f"{name} is installed but has no measurement:\n{details}"
        else:
            assert name in page.split("| row |")[0], f"{name} is not installed and the page does not say so"
    if importlib.util.find_spec("matplotlib") is not None:
        png = tmp_path / "peers.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_short_calls_are_timed_until_they_fill_the_minimum_time(monkeypatch):
    """timed_calls: a slow first call is timed once more, a call of moderate length --repeat
    times, and a call of a few milliseconds until its calls take about --min-time seconds,
    at most MAX_CALLS times."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # the script sets them
        monkeypatch.setenv(var, os.environ.get(var, ""))
    spec = importlib.util.spec_from_file_location("bench_peers_for_test", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    assert bench.timed_calls(30.0, 3, 20.0, 0.5) == 1
    assert bench.timed_calls(1.0, 3, 20.0, 0.5) == 3
    assert bench.timed_calls(0.05, 3, 20.0, 0.5) == 10
    assert bench.timed_calls(0.001, 3, 20.0, 0.5) == bench.MAX_CALLS
    assert bench.timed_calls(0.001, 3, 20.0, 0.0) == 3

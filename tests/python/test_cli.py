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


def test_demo_trains_then_writes_the_report(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--max-seconds", "15", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "training" in out and "epoch   40" in out
    assert "fisherkit report: MLP 2-16-16-3" in out
    page = tmp_path / "fisherkit-demo" / "report.html"
    assert f"page: {page}" in out
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html", "results.npz", "summary.json"]
    # the report is of the trained network: its loss is the last training line's
    last = [l for l in out.splitlines() if "epoch   40" in l][0]
    rep = fisherkit.Report.load(page.parent)
    assert f"{float(rep['overview/loss']):.4f}" == last.split("loss")[1].split()[0]


def test_demo_digits_without_scikit_learn_says_so(capsys, tmp_path, monkeypatch):
    from fisherkit import datasets

    def missing():
        raise ImportError("the digits data set comes with scikit-learn: pip install scikit-learn")

    monkeypatch.setattr(datasets, "digits", missing)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert "scikit-learn" in err and "pip install scikit-learn" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_report_help_names_every_option(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["report", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--labels", "--out", "--estimators", "--samples", "--max-seconds", "--quiet", "--arch",
                "--activation", "--head"):
        assert opt in text

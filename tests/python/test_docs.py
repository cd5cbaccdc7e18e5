"""The documentation in docs/: it builds with warnings as errors, its Python examples run
as written, and the places the code cites in it exist.

The build skips when Sphinx is not installed, unless FISHERKIT_REQUIRE_DOCS=1 (set by
.ci/run), which turns the skip into a failure.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snippets import ROOT, rst_blocks, run_python

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)
EXAMPLE_PAGES = [p for p in PAGES if rst_blocks(p, "python")]
# where code may cite the documentation, as docs/<page>.rst#<label>
CODE_DIRS = ("src", "cpp", "python", "cuda")
CITATION = re.compile(r"docs/([\w/.-]+?\.rst)#([\w-]+)")


def _require_sphinx() -> None:
    if importlib.util.find_spec("sphinx") is None:
        if os.environ.get("FISHERKIT_REQUIRE_DOCS") == "1":
            pytest.fail("FISHERKIT_REQUIRE_DOCS=1 but Sphinx is not installed (pip install '.[docs]')")
        pytest.skip("Sphinx is not installed (pip install '.[docs]')")


def test_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    _require_sphinx()
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    took = time.perf_counter() - start
    assert proc.returncode == 0, (f"sphinx-build failed (exit {proc.returncode}, {took:.0f} s): {' '.join(cmd)}\n"
                                  f"--- stderr ---\n{proc.stderr[-12000:]}\n--- stdout ---\n{proc.stdout[-4000:]}")
    for page in ("index", "install", "peers", "guide/fisher", "maths/variance", "api/fisherkit"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page
    api = (tmp_path / "html" / "api" / "fisherkit.html").read_text()
    assert 'id="fisherkit.fisher"' in api and 'id="fisherkit.variance"' in api  # autodoc imported the package


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=[str(p.relative_to(DOCS)) for p in EXAMPLE_PAGES])
def test_examples_of_a_page_run_as_written(page: Path, tmp_path: Path) -> None:
    proc, skipped = run_python(rst_blocks(page, "python"), tmp_path)
    assert proc.returncode == 0, f"an example failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    if skipped and not proc.stdout.count("=== running"):
        pytest.skip("; ".join(skipped))


def _labels() -> dict[str, set[str]]:
    out = {}
    for p in PAGES:
        out[str(p.relative_to(DOCS))] = set(re.findall(r"^\.\. _([\w-]+):\s*$", p.read_text(), re.M))
    return out


def _code_files() -> list[Path]:
    files = []
    for d in CODE_DIRS:
        for p in (ROOT / d).rglob("*"):
            if p.is_file() and p.suffix in (".py", ".pyi", ".hpp", ".cpp", ".cu", ".cuh", ".h"):
                files.append(p)
    return files


def test_labels_are_unique() -> None:
    seen: dict[str, str] = {}
    for page, labels in _labels().items():
        for label in labels:
            assert label not in seen, f"label {label!r} defined in {seen[label]} and {page}"
            seen[label] = page


def test_citations_in_code_point_at_existing_sections() -> None:
    labels = _labels()
    bad = []
    for f in _code_files():
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for page, label in CITATION.findall(line):
                if label not in labels.get(page, set()):
                    bad.append(f"{f.relative_to(ROOT)}:{n}: docs/{page}#{label}")
    assert not bad, "citations of missing pages or labels:\n" + "\n".join(bad)


def test_code_cites_no_document_outside_the_repository() -> None:
    stale = re.compile(r"\b(?:math/)?(?:variance|natgrad)\.md\b|\bMATH\.md\b|\bDESIGN\.md\b|\bSTYLE\.md\b")
    hits = [f"{f.relative_to(ROOT)}:{n}" for f in _code_files()
            for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if stale.search(line)]
    assert not hits, f"{len(hits)} citations of notes outside the repository, e.g. {hits[:5]}"

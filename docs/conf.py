"""Sphinx configuration of fisherkit's documentation.

Build (warnings are errors, no network needed):

    sphinx-build -W -b html docs docs/_build/html

The API reference imports the *installed* fisherkit (autodoc), so install the package
first (``pip install ".[docs]"``). ``tests/python/test_docs.py`` runs the same build.
"""
from __future__ import annotations

import fisherkit

project = "fisherkit"
author = "fisherkit developers"
copyright = "fisherkit developers"
release = fisherkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build"]
root_doc = "index"
language = "en"

# ---- docstrings: numpydoc-style sections ("Parameters\n----------") through napoleon
napoleon_numpy_docstring = True
napoleon_google_docstring = False  # "Returns x with ..." lines are prose, not Google sections
napoleon_use_rtype = False
napoleon_use_ivar = True

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"

# ---- output
html_theme = "alabaster"
html_title = f"fisherkit {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "Fisher information of multilayer perceptrons", "fixed_sidebar": True}

# ---- docstrings that are not valid reStructuredText
# Each is rendered verbatim (a literal block of its plain text) instead of being parsed,
# so that "-W" stays meaningful for every other docstring: a newly malformed docstring
# fails the build. Keyed by where the object is defined (module, qualified name), so a
# re-export does not matter; once a docstring is fixed, delete its entry here.
VERBATIM_DOCSTRINGS = {
    ("fisherkit.natgrad", ""): "the method table is a simple table whose text runs into the column margin",
    ("fisherkit.meanfield", ""): "'|c| <= 25' reads as a substitution reference",
    ("fisherkit.meanfield", "meanfield_forward"): "'|x|^2' reads as a substitution reference",
    ("fisherkit.variance", "variance_bounds"): "'||J_i||' and '|abar_j|' read as substitution references",
    ("fisherkit.variance", "Recommendation"): "the attribute list is indented without a blank line",
    ("fisherkit.rl.trainer", "conjugate_gradient"): "'|b|' reads as a substitution reference",
    ("fisherkit.rl.policies", "CategoricalPolicy.init"): "'*hidden' starts an emphasis",
    ("fisherkit.rl.policies", "GaussianPolicy.init"): "'*hidden' starts an emphasis",
}


def _where(what: str, obj: object) -> tuple[str, str]:
    if what == "module":
        return getattr(obj, "__name__", ""), ""
    target = getattr(obj, "__func__", obj)  # classmethods
    return getattr(target, "__module__", "") or "", getattr(target, "__qualname__", "") or ""


def _verbatim(app, what, name, obj, options, lines):  # noqa: ANN001 - Sphinx callback
    if _where(what, obj) in VERBATIM_DOCSTRINGS and lines:
        lines[:] = ["::", ""] + ["   " + line if line else "" for line in lines] + [""]


def setup(app):  # noqa: ANN001 - Sphinx entry point
    app.connect("autodoc-process-docstring", _verbatim, priority=600)  # after napoleon

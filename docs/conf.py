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

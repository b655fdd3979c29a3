"""Sphinx configuration for trio_dag's documentation.

Builds offline (no intersphinx fetches); ``sphinx-build -W docs docs/_build``
treats every warning as an error, as CI does.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio_dag  # noqa: E402

project = "trio_dag"
author = "The trio_dag authors"
copyright = "2026, The trio_dag authors"
release = trio_dag.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"trio_dag {release}"

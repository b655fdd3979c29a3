"""Sphinx configuration for trio_dag's documentation.

Builds offline (no intersphinx fetches); ``sphinx-build -W -b html docs docs/_build/html``
treats every warning as an error, as CI does.
"""

from __future__ import annotations

import enum
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import attrs

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
# Types only for the parameters a docstring documents: a class users never
# construct (Run, RunReport) would otherwise list its private constructor's.
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"trio_dag {release}"

# Classes a run or a DAG hands out and users never construct: their
# signature would show private constructor arguments.
_HANDED_OUT = {"trio_dag.Handle", "trio_dag.Run", "trio_dag.RunReport"}
# ``<class 'Exception'>`` in a signature, as the source would say it: ``Exception``.
_CLASS_REPR = re.compile(r"<class '(?:\w+\.)*(\w+)'>")


def _attrs_signature(cls: type) -> str:
    """The constructor of an attrs class, its defaults shown as values.

    autodoc_preserve_defaults reads defaults from the source, which attrs
    generates (``attr_dict['cost'].default``), and stores that in the
    ``__signature__`` it leaves behind; so this reads attrs' own fields.
    """
    parameters = [
        inspect.Parameter(
            field.alias or field.name,
            inspect.Parameter.KEYWORD_ONLY
            if field.kw_only
            else inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=inspect.Parameter.empty if field.default is attrs.NOTHING else field.default,
        )
        for field in attrs.fields(cls)
        if field.init
    ]
    return _CLASS_REPR.sub(r"\1", str(inspect.Signature(parameters)))


def _signature(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, ret: str | None
) -> tuple[str, str | None] | None:
    if what in ("class", "exception"):
        if name in _HANDED_OUT or isinstance(obj, enum.EnumType):
            return "", None  # an enum's (value) says nothing: its members are listed
        if attrs.has(obj):
            return _attrs_signature(obj), None
    if signature and "<class '" in signature:
        # A default autodoc could not read from the source shows as its repr.
        return _CLASS_REPR.sub(r"\1", signature), ret
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-signature", _signature)

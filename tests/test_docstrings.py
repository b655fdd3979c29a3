"""The docstrings of the public API: every public class, function and method has
one, and none points a user to what a user does not have.

``help()`` and the API reference are generated from these docstrings, so a
public name without one, a pointer to the SPEC (which is not shipped), to a
docs section by a title that exists nowhere, or to "the package docs" is a
hole in the documentation. ``test_exports.py`` pins the names; this file
checks what they say.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
from collections.abc import Iterator
from typing import Any

import pytest

import trio_dag
import trio_dag.testing

MODULES = ["trio_dag", "trio_dag.events", "trio_dag.testing", "trio_dag.graphlib"]
# Dunders a user calls through syntax (len(), iteration, [], in, a call):
# documented like methods. Others (__repr__, __eq__, ...) say nothing new.
USER_DUNDERS = {"__call__", "__contains__", "__getitem__", "__iter__", "__len__", "__bool__"}
# What no public docstring may say: users have no SPEC, and no docs section
# or "package docs" is named that way.
FORBIDDEN = ["SPEC", 'section "', "package docs"]


def _own_members(cls: type) -> Iterator[tuple[str, Any]]:
    """The methods and properties *cls* defines itself that a user sees."""
    for name, value in vars(cls).items():
        if name.startswith("_") and name not in USER_DUNDERS:
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, (types.FunctionType, property)):
            yield name, value


def public_objects() -> Iterator[tuple[str, Any]]:
    """``(qualified name, object)`` of every public module, class, function and method."""
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        yield module_name, module
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, types.FunctionType):
                yield f"{module_name}.{name}", obj
            elif isinstance(obj, type):
                yield f"{module_name}.{name}", obj
                for member, value in _own_members(obj):
                    yield f"{module_name}.{name}.{member}", value


OBJECTS = dict(public_objects())


def own_doc(obj: Any) -> str:
    """*obj*'s own docstring, not one inherited from a base class."""
    if isinstance(obj, (type, types.ModuleType)):
        return vars(obj).get("__doc__") or ""
    return inspect.cleandoc(obj.__doc__ or "")


@pytest.mark.parametrize("qualname", sorted(OBJECTS))
def test_every_public_class_function_and_method_has_a_docstring(qualname: str) -> None:
    assert own_doc(OBJECTS[qualname]).strip(), f"{qualname} has no docstring"


@pytest.mark.parametrize("qualname", sorted(OBJECTS))
def test_no_docstring_points_to_what_users_do_not_have(qualname: str) -> None:
    doc = own_doc(OBJECTS[qualname])
    found = [phrase for phrase in FORBIDDEN if phrase in doc]
    assert not found, f"the docstring of {qualname} says {found}"


def test_the_package_docstring_lists_every_public_name() -> None:
    # help(trio_dag) shows the public API, one line each: "- ``name``: ...".
    doc = trio_dag.__doc__ or ""
    listed = set(re.findall(r"^- ``(\w+)``", doc, flags=re.MULTILINE))
    missing = [name for name in trio_dag.__all__ if name not in listed]
    assert not missing, f"the package docstring does not list {missing}"


@pytest.mark.parametrize(
    "function",
    [
        trio_dag.DAG.add,
        trio_dag.DAG.map,
        trio_dag.run,
        trio_dag.run_sync,
        trio_dag.open_run,
        trio_dag.batched,
        trio_dag.testing.check_run,
    ],
    ids=lambda f: f.__qualname__,
)
def test_the_main_functions_document_each_parameter(function: Any) -> None:
    doc = inspect.getdoc(function) or ""
    args = doc.partition("\nArgs:\n")[2]
    assert args, f"{function.__qualname__} has no Args: section"
    for name, parameter in inspect.signature(function).parameters.items():
        if name == "self":
            continue
        shown = {
            inspect.Parameter.VAR_POSITIONAL: f"*{name}",
            inspect.Parameter.VAR_KEYWORD: f"**{name}",
        }.get(parameter.kind, name)
        assert re.search(rf"^ +{re.escape(shown)}:", args, flags=re.MULTILINE), (
            f"{function.__qualname__} does not document {shown}"
        )

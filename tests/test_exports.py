"""The public API, pinned: the names each public module exports, and how they show.

As trio's ``test_exports``: a name added to or dropped from a public module is
a decision this file records; every public name exists, has a docstring, and
shows its public path; nothing private leaks into ``dir()``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pickle
import pydoc
import re
import types
from typing import Any

import pytest

import trio_dag
import trio_dag.events
import trio_dag.testing

PUBLIC: dict[str, list[str]] = {
    "trio_dag": [
        "CORE",
        "DAG",
        "Batched",
        "Cache",
        "CacheEntry",
        "CacheFileError",
        "CacheStats",
        "CacheStore",
        "CallbackError",
        "CycleError",
        "DuplicateTaskError",
        "Executor",
        "ExecutorError",
        "ForeignHandleError",
        "GraphError",
        "Handle",
        "MemoryCache",
        "NoEffectWarning",
        "ResourceError",
        "Run",
        "RunCounts",
        "RunFailedError",
        "RunReport",
        "RunStats",
        "TaskCancelledError",
        "TaskFailedError",
        "TaskInfo",
        "TaskOptions",
        "TaskSkippedError",
        "TaskState",
        "TaskTimeoutError",
        "TaskTiming",
        "Threshold",
        "TrioDagError",
        "UnknownDependencyError",
        "WorkerDiedError",
        "batched",
        "current_run",
        "current_task",
        "events",
        "open_run",
        "run",
        "run_sync",
    ],
    "trio_dag.events": [
        "Event",
        "TaskFinished",
        "TaskNotCached",
        "TaskAdded",
        "TaskRetrying",
        "TaskStarted",
        "TaskState",
    ],
    "trio_dag.testing": [
        "RULES",
        "BrokenPromise",
        "DagPlan",
        "DagShape",
        "Growth",
        "Interrupt",
        "Recorder",
        "check_run",
        "dag_plans",
        "dag_shapes",
        "dags",
        "growing_dags",
    ],
}
MODULES = sorted(PUBLIC)
# The dunders a module may show besides its public names.
BASICS = {
    "__all__",
    "__builtins__",
    "__cached__",
    "__dir__",
    "__doc__",
    "__file__",
    "__loader__",
    "__name__",
    "__package__",
    "__path__",
    "__spec__",
    "__version__",
}


def public(module_name: str) -> list[tuple[str, Any]]:
    module = importlib.import_module(module_name)
    return [(name, getattr(module, name)) for name in module.__all__]


def shown(obj: object) -> bool:
    """Whether *obj* is a class or function, which carry their module and docstring."""
    return isinstance(obj, (type, types.FunctionType))


@pytest.mark.parametrize("module_name", MODULES)
def test_all_lists_exactly_the_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(PUBLIC[module_name])
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing


@pytest.mark.parametrize("module_name", MODULES)
def test_dir_shows_the_public_names_and_dunders_only(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = set(dir(module))
    assert set(module.__all__) <= names
    stray = sorted(names - set(module.__all__) - BASICS)
    assert not stray, f"{module_name} shows names outside __all__: {stray}"


def test_private_modules_stay_reachable_as_attributes() -> None:
    # dir() hides them; attribute access (monkeypatch, debuggers) still works.
    assert trio_dag._dag.DAG is trio_dag.DAG
    assert "_dag" not in dir(trio_dag)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    undocumented = []
    for name, obj in public(module_name):
        if isinstance(obj, types.FunctionType):
            documented = bool(obj.__doc__ and obj.__doc__.strip())
        elif isinstance(obj, (type, types.ModuleType)):
            # Its own: a class without one would show its base's.
            documented = bool((vars(obj).get("__doc__") or "").strip())
        else:
            # A value (a str, a dict, a type union) has no docstring of its own:
            # the string literal after its assignment documents it.
            documented = bool(attribute_docstring(module_name, name))
        if not documented:
            undocumented.append(name)
    assert not undocumented, f"{module_name}: no docstring for {undocumented}"


def attribute_docstring(module_name: str, name: str) -> str | None:
    """The docstring after *name*'s assignment, followed through ``from . import``s."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    body = tree.body
    for node, after in zip(body, [*body[1:], None], strict=True):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                return after.value.value
            return None
    package = module_name if hasattr(module, "__path__") else module_name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = importlib.util.resolve_name(
                        "." * node.level + (node.module or ""), package
                    )
                    return attribute_docstring(source, alias.name)
    return None


@pytest.mark.parametrize("module_name", MODULES)
def test_classes_and_functions_show_their_public_module(module_name: str) -> None:
    wrong = {
        name: obj.__module__
        for name, obj in public(module_name)
        if shown(obj)
        and obj.__module__ != module_name
        # A name two public modules export shows the shorter path.
        and not (obj.__module__ == "trio_dag" and name in trio_dag.__all__)
    }
    assert not wrong, f"{module_name}: {wrong}"


def test_reprs_show_the_public_path() -> None:
    assert repr(trio_dag.DAG) == "<class 'trio_dag.DAG'>"
    assert repr(trio_dag.TaskState) == "<enum 'TaskState'>"
    assert trio_dag.TaskState.__module__ == "trio_dag"
    assert repr(trio_dag.events.TaskStarted) == "<class 'trio_dag.events.TaskStarted'>"
    assert repr(trio_dag.testing.Recorder) == "<class 'trio_dag.testing.Recorder'>"
    assert trio_dag.DAG.add.__module__ == "trio_dag"


@pytest.mark.parametrize("module_name", MODULES)
def test_public_classes_pickle_by_their_public_path(module_name: str) -> None:
    for _, obj in public(module_name):
        if isinstance(obj, type):
            assert pickle.loads(pickle.dumps(obj)) is obj


@pytest.mark.parametrize("module_name", MODULES)
def test_help_lists_the_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    text = pydoc.render_doc(module, renderer=pydoc.plaintext)
    # Each name starts an entry of its own: "class DAG(...)", "async run(...)",
    # "CORE = 'cython'", or a line of PACKAGE CONTENTS.
    missing = [
        name
        for name in module.__all__
        if not re.search(rf"^ *(class |async )?{name}\b", text, flags=re.MULTILINE)
    ]
    assert not missing, f"help({module_name}) does not list {missing}"

"""How a public module shows its names: under their public path, and nothing else.

Public names are defined in private modules and re-exported; as trio's
``fixup_module_metadata`` does, each public module sets the ``__module__``
of its classes and functions (and of their methods) to itself, so reprs,
tracebacks, pickles and ``help()`` show ``trio_dag.DAG``, not
``trio_dag._dag.DAG``. Its ``__dir__`` lists ``__all__`` and the dunders,
not the private submodules an import binds on a package.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["public_dir", "publish", "show_under"]


def show_under(module_name: str, namespace: Mapping[str, Any]) -> None:
    """Set ``__module__`` to *module_name* on the classes and functions of ``__all__``.

    Only objects of trio_dag are changed: those defined in a private module
    (``trio_dag._x``, ``trio_dag.testing._x``), and those shown under a
    public module inside *module_name*, so that a name two public modules
    export (``TaskState``, in ``trio_dag`` and ``trio_dag.events``) shows
    the shorter path whichever module is imported first.
    """
    for name in namespace["__all__"]:
        # .get: trio_dag.testing's strategies are missing without Hypothesis.
        _show(module_name, namespace.get(name))


def _show(module_name: str, obj: object) -> None:
    if not isinstance(obj, (type, types.FunctionType)):
        return
    current = obj.__module__
    if not (_is_private(current) or current.startswith(module_name + ".")):
        return
    obj.__module__ = module_name
    if isinstance(obj, type):
        for attr in vars(obj).values():
            _show(module_name, attr)


def _is_private(module: str) -> bool:
    return module.startswith("trio_dag.") and any(
        part.startswith("_") for part in module.split(".")[1:]
    )


def public_dir(namespace: Mapping[str, Any]) -> Callable[[], list[str]]:
    """A module ``__dir__``: the module's ``__all__`` and its dunders, sorted."""

    def __dir__() -> list[str]:
        dunders = (k for k in namespace if k.startswith("__") and k.endswith("__"))
        return sorted({*namespace["__all__"], *dunders})

    return __dir__


def publish(module_name: str, namespace: Mapping[str, Any]) -> Callable[[], list[str]]:
    """Make a public module show its names: ``show_under`` now, and its ``__dir__``.

    A public module ends with ``__dir__ = _public.publish(__name__, globals())``.
    """
    show_under(module_name, namespace)
    return public_dir(namespace)

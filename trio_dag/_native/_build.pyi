"""Types of the builder: ``_build`` (Cython) and ``_build_py`` (its twin) in ``_native``.

A Builder appends tasks to a DAG's columns for the common call of ``DAG.add``
and ``DAG.map``, and returns None where the general path must decide.
"""

from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# _build only (the twin's is trio_dag._handle's own class): the compiled
# Handle, which trio_dag.Handle is when the compiled backend is chosen at
# import. Typed as that class; see trio_dag/_handle.py.
Handle: type

class Names:
    """The names given with ``name=``: name -> task index, and task index -> name."""

    def __init__(self, items: Iterable[tuple[str, int]] = ()) -> None: ...
    def add(self, name: str, i: int) -> None:
        """Name task *i*, the last one named so far, *name* (checked to be free: ValueError)."""
    def get(self, name: str, default: int | None = None) -> int | None:
        """The task named *name*, or *default*."""
    def name_of(self, i: int) -> str | None:
        """The name task *i* was given, or None."""
    def truncate(self, n: int) -> None:
        """Forget the names of tasks *n* and on."""
    def __getitem__(self, name: str) -> int: ...
    def __contains__(self, name: object) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]:
        """The names, in the order given."""
    def items(self) -> list[tuple[str, int]]:
        """(name, task) pairs, in the order given."""

class Builder:
    """Appends tasks to a DAG's columns in one call, for the common call only."""

    checked_fn: object
    def __init__(
        self,
        fns: list[Any],
        args: list[Any],
        opts: list[Any],
        off: array[int],
        src: array[int],
        where: dict[int, tuple[int, ...]],
        index_of: Names,
        pending: dict[int, tuple[int, str]],
        default_like: set[int],
        handle_type: type,
        default_options: object,
        defaults: Iterable[object],
        no_after: object,
    ) -> None: ...
    def add(
        self,
        dag: object,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        name: object,
        kwargs: object,
        after: object,
        *options: object,
    ) -> Any:
        """The handle of the task added, or None when the call needs the general path."""
    def map(
        self, dag: object, fn: Callable[..., Any], iterable: Iterable[Any], add: Callable[..., Any]
    ) -> list[Any]:
        """Add ``fn(item)`` per item; *add* takes the items the fast path cannot."""

def set_general_add(dag_class: type, general: Callable[..., Any]) -> None:
    """Take *general* (DAG.add in Python) for every call ``add`` does not take itself."""

# DAG.add without a Python frame (a callable that binds as a method): the
# common call here, every other to the general one.
add: Callable[..., Any]

# Builder.add's common call as a C function, for the core's Grower (compiled only).
run_add_capsule: object

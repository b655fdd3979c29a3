"""Task names: the default name of a task, how an error names a task being added,
the checks of a new task's name, and the suggestion for a name that matches no task.

A task not named with ``name=`` is called ``f"{fn_name(fn)}-{index}"``; the
DAG stores only the names given by hand and computes the others.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ._errors import DuplicateTaskError

__all__ = ["check_default_name", "check_name", "close_name", "fn_name", "task_label"]

# With more tasks than this, an unknown name is compared with the explicit
# names only (and the default names it resembles), to keep the error fast.
_SUGGEST_ALL_BELOW: Final = 20_000


def fn_name(fn: Callable[..., Any]) -> str:
    """The name default task names start with: ``fn.__name__`` (of a partial's function)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def task_label(fn: Callable[..., Any], i: int, name: object) -> str:
    """How an error names the task being added: the name it would have had."""
    return repr(name) if isinstance(name, str) else repr(f"{fn_name(fn)}-{i}")


def check_name(
    name: object, fn: Callable[..., Any], i: int, lookup: Callable[[str], int | None]
) -> None:
    """Check ``name=`` of task *i*; *lookup* gives the index of the task a name is taken by."""
    if not isinstance(name, str):
        raise TypeError(f"task {i}: name must be a str, got {name!r} ({type(name).__name__})")
    if not name:
        raise ValueError(f"task {i}: name must not be empty; leave it out for a default name")
    j = lookup(name)
    if j is not None:
        raise DuplicateTaskError(
            name,
            f"task {i} ({fn_name(fn)}) cannot be named {name!r}: task {j} already has "
            "that name; pass a different name=",
        )


def check_default_name(fn: Callable[..., Any], i: int, index_of: Mapping[str, int]) -> None:
    """Check that no task was given the default name of task *i* with ``name=``.

    *index_of* maps the names given with ``name=`` to their tasks.
    """
    # Only needed once some task was named by hand: it may have taken the
    # default name this task gets now.
    default = f"{fn_name(fn)}-{i}"
    j = index_of.get(default)
    if j is not None:
        raise DuplicateTaskError(
            default,
            f"task {i} gets the default name {default!r}, but task {j} was given that "
            "name with name=; pass a name= to this task or rename that one",
        )


def close_name(
    missing: str, n: int, name_of: Callable[[int], str], given: Iterable[str]
) -> str | None:
    """The name of tasks ``0..n-1`` closest to *missing*, if one is close (difflib).

    *name_of* gives the name of a task by index; *given* holds the names
    given with ``name=``.
    """
    if n <= _SUGGEST_ALL_BELOW:
        names: Iterable[str] = map(name_of, range(n))
    else:
        # Comparing with a million names would take seconds: compare with
        # the names given by hand, and the default name with the same index.
        names = list(given)
        digits = missing.rpartition("-")[2]
        if digits.isascii() and digits.isdigit() and int(digits) < n:
            names.append(name_of(int(digits)))
    close = difflib.get_close_matches(missing, names, n=1)
    return close[0] if close else None

"""What the compiled modules and their pure-Python twins share: codes, size limits, checks.

``_core.pyx`` and ``_core_py``, ``_loop.pyx`` and ``_loop_py``, ``_intern.pyx``
and ``_intern_py`` each import these from here, never from one another, so
each half of the backend (see :mod:`trio_dag._native`) stands on its own, and
both say the same thing about the same bad input.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Final

__all__ = [
    "CANCELLED",
    "CHECKPOINT",
    "EXCLUDED",
    "FAILED",
    "FAIRNESS_EVERY",
    "MAX_EDGES",
    "MAX_NODES",
    "PENDING",
    "PLAIN_TYPES",
    "RAISED",
    "READY",
    "RUNNING",
    "SKIPPED",
    "SLOW",
    "STATE_NAMES",
    "SUCCEEDED",
    "SUSPENDED",
    "check_edge_count",
    "check_n",
    "int_array",
]

# The state of a node in a run of the core (one byte per node).
PENDING: Final = 0
READY: Final = 1
RUNNING: Final = 2
SUCCEEDED: Final = 3
FAILED: Final = 4
SKIPPED: Final = 5
CANCELLED: Final = 6
EXCLUDED: Final = 7

STATE_NAMES: Final = (
    "pending",
    "ready",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "excluded",
)

# Why the loop's run() handed a task back to the engine:
SLOW: Final = 1  # not started: needs the engine's general path
SUSPENDED: Final = 2  # its body suspended: drive it (loop.coro/trap/ctx)
RAISED: Final = 3  # its body raised loop.error
CHECKPOINT: Final = 4  # not started: let other Trio tasks run first

# Tasks run this many in a row without the scheduler before a checkpoint.
FAIRNESS_EVERY: Final = 2048

# The compiled core keeps node numbers, degrees and CSR offsets in C ints
# (int32): a node is 0..n-1, the offsets run 0..n (n + 1 of them, so n + 1
# must be an int32 too) and count edges, duplicates included, while it builds.
_INT32_MAX: Final = 2**31 - 1
MAX_NODES: Final = _INT32_MAX - 1
MAX_EDGES: Final = _INT32_MAX


def check_n(n: object) -> int:
    """*n*, the number of nodes of a graph, if the core can hold that many."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if n < 0 or n > MAX_NODES:
        raise ValueError(f"n must be between 0 and {MAX_NODES}, got {n}")
    return n


def check_edge_count(count: int) -> None:
    """Raise ValueError when a graph is given more edges than the core can hold."""
    if count > MAX_EDGES:
        raise ValueError(f"a graph takes at most {MAX_EDGES} edges, got {count}")


def int_array(values: Iterable[int], what: str) -> array[int]:
    """*values* as an ``array('i')`` (itself when it is one already)."""
    if isinstance(values, array) and values.typecode == "i":
        return values
    try:
        return array("i", values)
    except OverflowError:
        raise ValueError(f"{what} holds a node index that is not a 32-bit integer") from None
    except TypeError as exc:
        raise TypeError(f"{what} must be an iterable of ints: {exc}") from None


# Types of plain values: never searched for handles (see trio_dag._dependencies).
PLAIN_TYPES: Final = (str, int, float, bool, bytes, type(None), complex)


# Kinds of edge, in a DAG's pos column: >= 0 is the position of a top-level
# positional handle; these two mark the others (see trio_dag._dependencies).
NESTED: Final = -1  # a handle in kwargs or inside a container
AFTER: Final = -2  # an after= edge: order only, no output passed

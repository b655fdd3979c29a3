"""Policies and strategies, turned into the per-task keys of the core's ready heap.

The core orders ready tasks by a float key (smallest first), then by the
order they became ready (or the reverse, for ``lifo``). Every policy becomes
such keys once per run, so choosing the next task never calls back into Python.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, final

import attrs

from ._bodies import THREAD, kind_of
from ._errors import CallbackError

if TYPE_CHECKING:
    from ._handle import Handle
    from ._snapshot import Snapshot

__all__ = [
    "DEPTH_STEP",
    "POLICIES",
    "Policy",
    "Strategy",
    "Threshold",
    "depth_first_key",
    "ready_keys",
]

PolicyName = Literal["fifo", "lifo", "priority", "critical_path", "depth_first"]
Policy = PolicyName | Callable[["Handle[Any]"], Any]
POLICIES: Final = ("fifo", "lifo", "priority", "critical_path", "depth_first")
_EXACT: Final = 2**53  # every int of at most this size is exactly a float
# policy="depth_first": the task of index i and dependency level L (a root is
# level 0, a task 1 + the largest level of its dependencies) has the key
# ``depth_first_key(L, i) = i - L * DEPTH_STEP``: deeper first, ties in insertion
# order. Indices stay below DEPTH_STEP (MAX_NODES < 2**31) and levels below
# 2**21, so every key is an exact float; a task added while the run goes gets
# its key the same way from its own level and index.
DEPTH_STEP: Final = 2**32


@final
@attrs.frozen
class Threshold:
    """A run strategy: start ready tasks in groups of at least *n*.

    Give it as a run's ``strategy``: ready tasks wait until *n* of them
    are ready, then start together (within ``limit`` and ``resources``).
    Fewer start only when waiting could not bring more: when no task is
    running, or when no task is left waiting for its dependencies or for a
    retry. It suits bodies that are cheaper when many start together::

        report = trio_dag.run_sync(dag, strategy=trio_dag.Threshold(32))

    Args:
      n: The size of a group, an ``int`` >= 1.

    Raises:
      ValueError: *n* is not an ``int`` >= 1.
    """

    n: int = attrs.field()

    @n.validator
    def _check_n(self, attribute: object, value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Threshold(n) needs an int n >= 1, got {value!r}")


Strategy = Literal["immediate", "waves"] | Threshold


def check_policy(policy: object) -> None:
    """Raise ValueError (or TypeError) unless *policy* is a known name or a sync callable."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(
                f"unknown policy {policy!r}; use one of {', '.join(POLICIES)} or a key function"
            )
    elif not callable(policy):
        raise TypeError(
            f"policy must be one of {', '.join(POLICIES)} or a key function, "
            f"not {type(policy).__name__}"
        )
    elif kind_of(policy) != THREAD or inspect.isasyncgenfunction(policy):
        raise TypeError(
            f"policy key function {_name_of(policy)} is async, but it is called, not awaited, "
            "once per task before the run starts; pass a plain function"
        )


def check_strategy(strategy: object) -> None:
    """Raise ValueError unless *strategy* is "immediate", "waves" or a Threshold."""
    if not (strategy in ("immediate", "waves") or isinstance(strategy, Threshold)):
        raise ValueError(
            f"unknown strategy {strategy!r}; use 'immediate', 'waves' or trio_dag.Threshold(n)"
        )


def _dense_ranks(order: list[int], same: Callable[[int, int], bool], n: int) -> list[float]:
    # Equal keys share a rank, so the core breaks their ties by readiness.
    ranks = [0.0] * n
    rank = 0.0
    for k in range(1, len(order)):
        if not same(order[k - 1], order[k]):
            rank += 1.0
        ranks[order[k]] = rank
    return ranks


def _priority_keys(priorities: list[int]) -> list[float]:
    """Keys for ``policy="priority"``, highest first, exact for ints of any size.

    A float holds every int up to 2**53 exactly, so within that range the key
    is ``-priority``; beyond it (or past the float range) the distinct
    priorities are ranked instead, so no two of them tie.
    """
    if not priorities or (-_EXACT <= min(priorities) and max(priorities) <= _EXACT):
        return [float(-p) for p in priorities]
    rank = {p: float(r) for r, p in enumerate(sorted(set(priorities), reverse=True))}
    return [rank[p] for p in priorities]


def depth_first_key(level: int, index: int) -> float:
    """The ready-heap key of a task under ``policy="depth_first"`` (smaller first)."""
    return float(index - level * DEPTH_STEP)


def _user_keys(
    snap: Snapshot, key: Callable[[Handle[Any]], Any], members: Sequence[int]
) -> list[Any]:
    values: list[Any] = [None] * snap.n
    for i in members:
        try:
            values[i] = key(snap.handle(i))
        except Exception as exc:
            raise CallbackError(f"policy key function {_name_of(key)}", exc) from exc
    return values


def _name_of(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def ready_keys(
    snap: Snapshot, policy: Policy, strategy: Strategy, members: Sequence[int]
) -> tuple[list[float] | None, bool]:
    """The core's ``(keys, lifo)`` for *policy*, waves first under ``strategy="waves"``.

    *members* are the indices of the tasks in the run; a key function is
    called once for each of them and no other. Keys a key function returns
    that cannot be sorted (``1`` and ``"a"``) raise CallbackError, with the
    error of the comparison as ``__cause__``.
    """
    if callable(policy):
        values = _user_keys(snap, policy, members)
        try:
            return _ranked_keys(snap, values, strategy, members), False
        except Exception as exc:
            raise CallbackError(
                f"policy key function {_name_of(policy)} (sorting its keys)", exc
            ) from exc
    lifo = policy == "lifo"
    if policy == "priority":
        keys: list[float] | None = _priority_keys(snap.priorities)
    elif policy == "critical_path":
        keys = [-r for r in snap.graph.upward_rank(snap.costs)]
    elif policy == "depth_first":
        keys = [depth_first_key(level, i) for i, level in enumerate(snap.graph.levels())]
    else:
        keys = None
    if strategy == "waves":
        if keys is None:
            return [float(x) for x in snap.graph.levels()], lifo
        return _ranked_keys(snap, keys, strategy, members), lifo
    return keys, lifo


def _ranked_keys(
    snap: Snapshot, values: Sequence[Any], strategy: Strategy, members: Sequence[int]
) -> list[float]:
    """Dense ranks of the members by *values* (by wave first, under ``"waves"``)."""
    if strategy == "waves":
        levels = snap.graph.levels()
        order = sorted(members, key=lambda i: (levels[i], values[i]))
        return _dense_ranks(
            order, lambda a, b: levels[a] == levels[b] and values[a] == values[b], snap.n
        )
    order = sorted(members, key=lambda i: values[i])
    return _dense_ranks(order, lambda a, b: values[a] == values[b], snap.n)

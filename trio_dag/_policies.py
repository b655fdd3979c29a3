"""Policies and strategies, turned into the per-task keys of the core's ready heap.

The core orders ready tasks by a float key (smallest first), then by the
order they became ready (or the reverse, for ``lifo``). Every policy becomes
such keys once per run, so choosing the next task never calls back into Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, final

import attrs

from ._errors import CallbackError

if TYPE_CHECKING:
    from ._handle import Handle
    from ._snapshot import Snapshot

__all__ = ["POLICIES", "Policy", "Strategy", "Threshold", "ready_keys"]

PolicyName = Literal["fifo", "lifo", "priority", "critical_path"]
Policy = PolicyName | Callable[["Handle[Any]"], Any]
POLICIES: Final = ("fifo", "lifo", "priority", "critical_path")


@final
@attrs.frozen
class Threshold:
    """Start ready tasks in groups of at least *n*.

    Fewer start only when no more can become ready (nothing is running or
    waiting to retry). ``strategy=trio_dag.Threshold(32)`` suits bodies that
    are cheaper when many start together.
    """

    n: int = attrs.field()

    @n.validator
    def _check_n(self, attribute: object, value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Threshold(n) needs an int n >= 1, got {value!r}")


Strategy = Literal["immediate", "waves"] | Threshold


def check_policy(policy: object) -> None:
    """Raise ValueError (or TypeError) unless *policy* is a known name or a callable."""
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
    called once for each of them and no other.
    """
    n = snap.n
    lifo = policy == "lifo"
    values: Sequence[Any] | None
    if policy in ("fifo", "lifo"):
        values = None
    elif policy == "priority":
        values = [-p for p in snap.priorities]
    elif policy == "critical_path":
        values = [-r for r in snap.graph.upward_rank(snap.costs)]
    else:
        assert callable(policy)
        values = _user_keys(snap, policy, members)
    if strategy == "waves":
        levels = snap.graph.levels()
        if values is None:
            return [float(x) for x in levels], lifo
        vals = values
        order = sorted(members, key=lambda i: (levels[i], vals[i]))
        return _dense_ranks(
            order, lambda a, b: levels[a] == levels[b] and vals[a] == vals[b], n
        ), lifo
    if values is None or policy in ("priority", "critical_path"):
        return (None if values is None else [float(v) for v in values]), lifo
    vals = values
    order = sorted(members, key=lambda i: vals[i])
    return _dense_ranks(order, lambda a, b: vals[a] == vals[b], n), lifo

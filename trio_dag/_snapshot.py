"""Snapshot: a validated DAG, frozen in the form the engine runs.

``DAG._freeze`` makes one. It reads the DAG's columns in place (no copy)
and gives the engine what it asks of a task by index: its function, options
and name, and its arguments with the outputs of its dependencies bound in.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, cast, final

from ._dependencies import AFTER, rebuild
from ._errors import UnknownDependencyError
from ._handle import Handle

if TYPE_CHECKING:
    from ._dag import DAG
    from ._native import Backend
    from ._native._core import Graph
    from ._options import TaskOptions

__all__ = ["Snapshot"]

_NO_KWARGS: Final[Mapping[str, Any]] = MappingProxyType({})
_PRIORITY: Final = attrgetter("priority")
_COST: Final = attrgetter("cost")


@final
class Snapshot:
    """A validated DAG, frozen for the engine: ``dag._freeze()`` makes it.

    It shares the DAG's append-only columns and reads only tasks ``0..n-1``,
    so it stays valid and unchanged while tasks are added to the DAG, and
    running it never changes the DAG. Indices *i* are task insertion indices,
    which are also the core's node numbers; methods do not range-check *i*.

    Attributes (read them, do not set them):

    - ``dag``: the :class:`DAG`.
    - ``n``: the number of tasks.
    - ``graph``: the ``core.Graph``: node *i* is task *i*, an edge
      ``dependency -> dependent`` for every data and ``after=`` dependency.
    - ``backend``: the :class:`~trio_dag._native.Backend` whose core built
      ``graph``; a run of the snapshot takes its ``RunState`` and loop from it.
    - ``all_done``: ``array('i')``, ascending indices of the tasks with
      ``trigger="all_done"`` (for ``core.RunState(all_done=...)``).
    - ``has_batched``: whether any task is of a ``@batched`` function.
    - ``has_uses``: whether any task has ``uses=``.
    - ``priorities``: ``list[int]`` and ``costs``: ``array('d')``, one entry
      per task, computed on first use.
    """

    __slots__ = (
        "_args",
        "_costs",
        "_fns",
        "_kwargs",
        "_off",
        "_opts",
        "_paths",
        "_pos",
        "_priorities",
        "_src",
        "all_done",
        "backend",
        "dag",
        "graph",
        "has_batched",
        "has_uses",
        "n",
    )

    def __init__(self, dag: DAG, graph: Graph, backend: Backend) -> None:
        self.dag = dag
        self.graph = graph
        self.backend = backend
        self.n: int = graph.n
        self.all_done = dag._all_done[: bisect.bisect_left(dag._all_done, self.n)]
        self.has_batched = bool(dag._batched) and dag._batched[0] < self.n
        self.has_uses = bool(dag._with_uses) and dag._with_uses[0] < self.n
        self._fns = dag._fns
        self._args = dag._args
        self._opts = dag._opts
        self._kwargs = dag._kwargs
        self._paths = dag._paths
        self._off = dag._off
        self._src = dag._src
        self._pos = dag._pos
        self._priorities: list[int] | None = None
        self._costs: array[float] | None = None

    def fn(self, i: int) -> Callable[..., Any]:
        """The function of task *i*."""
        return self._fns[i]

    def options(self, i: int) -> TaskOptions:
        """The options of task *i*."""
        return self._opts[i]

    def name(self, i: int) -> str:
        """The name of task *i*."""
        return self.dag._name(i)

    def handle(self, i: int) -> Handle[Any]:
        """A handle of task *i* (a new object; equal to every other handle of it)."""
        return Handle(self.dag, i)

    def index(self, task: Handle[Any] | str) -> int:
        """The index of a task given by handle or name, e.g. for ``targets=``.

        Raises ForeignHandleError for a handle of another DAG and
        UnknownDependencyError (``.task`` None) for a name no task of this
        snapshot has.
        """
        dag = self.dag
        try:
            i = dag._task_index(task)
        except KeyError:
            assert isinstance(task, str)
            raise UnknownDependencyError(None, task, dag._close_name(task)) from None
        if i >= self.n:
            raise UnknownDependencyError(None, dag._name(i))
        return i

    @property
    def priorities(self) -> list[int]:
        """``priority`` of every task, by index."""
        if self._priorities is None:
            self._priorities = list(map(_PRIORITY, islice(self._opts, self.n)))
        return self._priorities

    @property
    def costs(self) -> array[float]:
        """``cost`` of every task, by index (for ``graph.upward_rank``)."""
        if self._costs is None:
            self._costs = array("d", map(_COST, islice(self._opts, self.n)))
        return self._costs

    def bind(self, i: int, outputs: Sequence[Any]) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
        """The arguments to call task *i*'s fn with: ``fn(*args, **kwargs)``.

        Each handle is replaced by ``outputs[its index]``. A task without
        handles gets the stored tuple and mapping themselves: treat both as
        read-only. O(number of handles) unless handles sit in containers or
        kwargs, which are copied along the paths that lead to them.
        """
        args = self._args[i]
        kwargs = self._kwargs.get(i, _NO_KWARGS)
        lo = self._off[i]
        src = self._src
        if type(args) is int:
            return tuple([outputs[j] for j in src[lo : lo + args]]), kwargs
        args = cast(tuple[Any, ...], args)
        hi = self._off[i + 1]
        pos = self._pos
        if lo == hi or pos[lo] == AFTER:
            return args, kwargs
        paths = self._paths.get(i)
        if paths is None:
            bound = list(args)
            for e in range(lo, hi):
                p = pos[e]
                if p < 0:
                    break
                bound[p] = outputs[src[e]]
            return tuple(bound), kwargs
        values = [outputs[src[e]] for e in range(lo, lo + len(paths))]
        try:
            return rebuild(args, kwargs, paths, values)
        except (LookupError, TypeError):
            raise RuntimeError(
                f"the arguments of task {self.name(i)!r} were changed after it was added; "
                "the DAG keeps references to them, so pass containers you will not modify"
            ) from None

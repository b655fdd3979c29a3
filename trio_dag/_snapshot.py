"""Snapshot: a validated DAG, frozen in the form the engine runs.

``DAG._freeze`` makes one and passes in what it needs: the task
:class:`Columns` (shared with the DAG, not copied), the ``graph``, and how to
name and find tasks. It gives the engine what it asks of a task by index: its
function, options and name, and its arguments with the outputs of its
dependencies bound in. It reads nothing private of the DAG.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, cast, final

import attrs

from ._dependencies import rebuild
from ._errors import UnknownDependencyError
from ._handle import Handle

if TYPE_CHECKING:
    from ._dag import DAG
    from ._native import Backend
    from ._native._core import Graph
    from ._options import TaskOptions

__all__ = ["Columns", "Snapshot"]

_NO_KWARGS: Final[Mapping[str, Any]] = MappingProxyType({})
_PRIORITY: Final = attrgetter("priority")
_COST: Final = attrgetter("cost")


@final
@attrs.frozen
class Columns:
    """The per-task columns the loops read by task index: the snapshot->loop contract.

    The DAG's own append-only columns, shared, not copied: a holder reads
    only tasks ``0..n-1`` of its snapshot and never writes to them. Both
    loops (``_loop.pyx`` and ``_loop_py.py``) and :meth:`Snapshot.bind` read
    these fields and nothing else of the snapshot's storage.

    - ``fns``: the function of each task.
    - ``opts``: the :class:`TaskOptions` of each task.
    - ``args``: the positional arguments as given, or, when every one is a
      handle, their count ``k`` (then ``src[off[i]:off[i]+k]`` are the tasks).
    - ``kwargs``: task -> its keyword arguments, for tasks that have any.
    - ``off``: ``array('i')``, ``n+1`` entries: task *i*'s edges are
      ``off[i]:off[i+1]``, data edges first, then ``after=`` edges.
    - ``src``: ``array('i')``, the task each edge comes from.
    - ``where``: task -> the position among the positional arguments of
      each data edge's handle, only for tasks whose arguments mix handles
      and plain values (and hold none in a container or kwargs).
    - ``paths``: task -> the paths of its handles, one per data edge, for
      tasks with a handle in a container or kwargs (see ``rebuild``).

    So task *i* has ``args[i]`` data edges when that is an int, else
    ``len(paths[i])`` or ``len(where[i])``, else none: a task whose
    positional arguments are a tuple and that is in neither table passes
    no output (its edges, if any, are ``after=`` ones).
    """

    fns: list[Callable[..., Any]]
    opts: list[TaskOptions]
    args: list[tuple[Any, ...] | int]
    kwargs: dict[int, dict[str, Any]]
    off: array[int]
    src: array[int]
    where: dict[int, tuple[int, ...]]
    paths: dict[int, tuple[tuple[Any, ...], ...]]

    def bind(self, i: int, outputs: Sequence[Any]) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
        """The arguments to call task *i*'s fn with: ``fn(*args, **kwargs)``.

        The one binder: both loops and the engine's general path call it
        (through :meth:`Snapshot.bind`, which names the task in the error).
        Each handle is replaced by ``outputs[its index]``. A task without
        handles gets the stored tuple and mapping themselves: treat both as
        read-only. O(number of handles) unless handles sit in containers or
        kwargs, which are copied along the paths that lead to them. Raises
        LookupError or TypeError when the arguments were changed after
        ``add`` and no longer fit.
        """
        args = self.args[i]
        kwargs = self.kwargs.get(i, _NO_KWARGS)
        lo = self.off[i]
        src = self.src
        if type(args) is int:
            return tuple([outputs[j] for j in src[lo : lo + args]]), kwargs
        args = cast(tuple[Any, ...], args)
        paths = self.paths.get(i)
        if paths is None:
            where = self.where.get(i)
            if where is None:
                return args, kwargs
            bound = list(args)
            for e, p in enumerate(where, lo):
                bound[p] = outputs[src[e]]
            return tuple(bound), kwargs
        values = [outputs[src[e]] for e in range(lo, lo + len(paths))]
        return rebuild(args, kwargs, paths, values)


@final
class Snapshot:
    """A validated DAG, frozen for the engine: ``dag._freeze()`` makes it.

    It shares the DAG's append-only columns and reads only tasks ``0..n-1``,
    so it stays valid and unchanged while tasks are added to the DAG, and
    running it never changes the DAG. Indices *i* are task insertion indices,
    which are also the core's node numbers; methods do not range-check *i*.

    Attributes (read them, do not set them):

    - ``dag``: the :class:`DAG` (for handles; the snapshot reads nothing private of it).
    - ``n``: the number of tasks.
    - ``graph``: the ``core.Graph``: node *i* is task *i*, an edge
      ``dependency -> dependent`` for every data and ``after=`` dependency
      (a property: after a run added tasks, it is rebuilt over all of them).
    - ``backend``: the :class:`~trio_dag._native.Backend` whose core built
      ``graph``; a run of the snapshot takes its ``RunState`` and loop from it.
    - ``columns``: the :class:`Columns` the loops read.
    - ``all_done``: ``array('i')``, ascending indices of the tasks with
      ``trigger="all_done"`` (for ``core.RunState(all_done=...)``).
    - ``has_batched``: whether any task is of a ``@batched`` function.
    - ``has_uses``: whether any task has ``uses=``.
    - ``with_notes``: ``array('i')``, ascending indices of the tasks with a
      ``priority`` other than 0 or with ``tags`` (what a run's warnings read).
    - ``priorities``: ``list[int]`` and ``costs``: ``array('d')``, one entry
      per task, computed on first use.
    """

    __slots__ = (
        "_base_n",
        "_close_name",
        "_costs",
        "_fork",
        "_graph",
        "_graph_of",
        "_name",
        "_priorities",
        "_task_index",
        "all_done",
        "backend",
        "columns",
        "dag",
        "has_batched",
        "has_uses",
        "n",
        "with_notes",
    )

    def __init__(
        self,
        dag: DAG,
        graph: Graph,
        backend: Backend,
        columns: Columns,
        *,
        all_done: array[int],
        has_batched: bool,
        has_uses: bool,
        with_notes: array[int],
        name: Callable[[int], str],
        task_index: Callable[[Handle[Any] | str], int],
        close_name: Callable[[str], str | None],
    ) -> None:
        """Freeze *graph*'s ``n`` tasks, described by *columns*.

        *name* gives task *i*'s name; *task_index* the index of a task given
        by handle or name (KeyError for an unknown name, ForeignHandleError
        for a handle of another DAG); *close_name* the existing name closest
        to a missing one, or None.
        """
        self.dag = dag
        self._graph = graph
        self.backend = backend
        self.n: int = graph.n
        self.columns = columns
        self.all_done = all_done
        self.has_batched = has_batched
        self.has_uses = has_uses
        self.with_notes = with_notes
        self._name = name
        self._task_index = task_index
        self._close_name = close_name
        self._priorities: list[int] | None = None
        self._costs: array[float] | None = None
        # A run that adds tasks (see _growth) keeps them in a fork of the
        # DAG: tasks from _base_n on are the fork's.
        self._fork: DAG | None = None
        self._graph_of: Callable[[], Graph] | None = None
        self._base_n = graph.n

    @property
    def graph(self) -> Graph:
        """The core ``Graph`` of the snapshot's tasks (rebuilt after a run added tasks)."""
        if self._graph_of is not None and self._graph.n != self.n:
            self._graph = self._graph_of()
        return self._graph

    def for_run(self) -> Snapshot:
        """A copy for one run, which may grow (:meth:`grow`) without changing this one."""
        copy = Snapshot(
            self.dag,
            self._graph,
            self.backend,
            self.columns,
            all_done=self.all_done,
            has_batched=self.has_batched,
            has_uses=self.has_uses,
            with_notes=self.with_notes,
            name=self._name,
            task_index=self._task_index,
            close_name=self._close_name,
        )
        copy._priorities = self._priorities
        copy._costs = self._costs
        return copy

    def grow(
        self,
        fork: DAG,
        columns: Columns,
        n: int,
        *,
        name: Callable[[int], str],
        task_index: Callable[[Handle[Any] | str], int],
        close_name: Callable[[str], str | None],
        graph: Callable[[], Graph],
    ) -> None:
        """Take the tasks a run added to *fork*, a fork of the DAG: *n* tasks in all.

        The tasks of the DAG keep their handles; those added are the fork's.
        *columns* are the fork's; *name*, *task_index* and *close_name* are as
        for the constructor, over the fork; *graph* gives the fork's graph.
        """
        self.n = n
        if self._fork is fork:
            return
        self._fork = fork
        self.columns = columns
        self._name = name
        self._task_index = task_index
        self._close_name = close_name
        self._graph_of = graph
        self._priorities = self._costs = None

    def fn(self, i: int) -> Callable[..., Any]:
        """The function of task *i*."""
        return self.columns.fns[i]

    def options(self, i: int) -> TaskOptions:
        """The options of task *i*."""
        return self.columns.opts[i]

    def name(self, i: int) -> str:
        """The name of task *i*."""
        return self._name(i)

    def handle(self, i: int) -> Handle[Any]:
        """A handle of task *i* (a new object; equal to every other handle of it)."""
        if i < self._base_n or self._fork is None:
            return Handle(self.dag, i)
        return Handle(self._fork, i)

    def index(self, task: Handle[Any] | str) -> int:
        """The index of a task given by handle or name, e.g. for ``targets=``.

        Raises ForeignHandleError for a handle of another DAG and
        UnknownDependencyError (``.task`` None) for a name no task of this
        snapshot has.
        """
        try:
            i = self._task_index(task)
        except KeyError:
            assert isinstance(task, str)
            raise UnknownDependencyError(None, task, self._close_name(task)) from None
        if i >= self.n:
            raise UnknownDependencyError(None, self._name(i))
        return i

    @property
    def priorities(self) -> list[int]:
        """``priority`` of every task, by index."""
        if self._priorities is None or len(self._priorities) != self.n:
            self._priorities = list(map(_PRIORITY, islice(self.columns.opts, self.n)))
        return self._priorities

    @property
    def costs(self) -> array[float]:
        """``cost`` of every task, by index (for ``graph.upward_rank``)."""
        if self._costs is None or len(self._costs) != self.n:
            self._costs = array("d", map(_COST, islice(self.columns.opts, self.n)))
        return self._costs

    def bind(self, i: int, outputs: Sequence[Any]) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
        """The arguments to call task *i*'s fn with (see :meth:`Columns.bind`).

        Raises RuntimeError, naming the task, when its arguments were changed
        after it was added and no longer fit.
        """
        try:
            return self.columns.bind(i, outputs)
        except (LookupError, TypeError):
            raise RuntimeError(
                f"the arguments of task {self.name(i)!r} were changed after it was added; "
                "the DAG keeps references to them, so pass containers you will not modify"
            ) from None

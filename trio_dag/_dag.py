"""DAG: building a graph of tasks, looking tasks up, validating it, exporting it.

Tasks are stored column-wise, one entry per task in parallel lists and
``array('i')`` buffers, so a task costs a few machine words beyond what the
user passed. :meth:`DAG._freeze` turns the DAG into a :class:`Snapshot`, the
form the engine runs; data flows one way: this module builds, the core
freezes, the engine runs.

Beside it: ``_handle`` (Handle), ``_options`` (TaskOptions and the checks
of ``add``'s options), ``_names`` (default names, the checks of ``name=``,
suggestions), ``_dependencies`` (the handles in a task's arguments and
``after=``), ``_snapshot`` (the frozen form) and ``_export`` (DOT, Mermaid).
"""

from __future__ import annotations

import bisect
import functools
import gc
from array import array
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload

from . import _native
from ._batching import Batched
from ._dependencies import AFTER, copy_kwargs, scan, scan_after
from ._errors import CycleError, ForeignHandleError, UnknownDependencyError
from ._export import render_dot, render_mermaid
from ._handle import Handle
from ._names import check_default_name, check_name, close_name, fn_name, task_label
from ._options import (
    DEFAULT_OPTIONS,
    DEFAULT_VALUES,
    RunIn,
    TaskOptions,
    Trigger,
    check_fn,
    make_options,
)
from ._snapshot import Columns, Snapshot

if TYPE_CHECKING:
    from ._native._core import Graph

__all__ = ["DAG"]

T = TypeVar("T")

# array('i') of positions 0..k-1, shared for the usual small k.
_FIRST: Final = tuple(array("i", range(k)) for k in range(64))


@final
class DAG:
    """A directed acyclic graph of tasks, built with :meth:`add`::

        dag = DAG()
        raw = dag.add(load, "a.txt", name="load-a")
        clean = dag.add(normalize, raw)          # normalize(load("a.txt"))
        dag.add(store, [clean], after=["open-db"])
        dag.add(open_db, name="open-db")         # names may be used before they exist

    Task *i* (its insertion index) is stored column-wise. The columns grow
    as tasks are added, and what is written for a task never changes (but
    for the -1 placeholders of ``_src``, filled once their name resolves), so
    a :class:`Snapshot` shares the columns and reads tasks ``0..n-1`` while
    the user keeps adding.

    - ``_fns[i]``: the function.
    - ``_args[i]``: the user's positional arguments, or an int *k*: the task's
      arguments are exactly *k* handles, its first *k* edges, in order.
    - ``_opts[i]``: its :class:`TaskOptions` (one shared default instance).
    - ``_kwargs``: ``{i: kwargs}`` (a private copy) for tasks that have some.
    - Edges of task *i* are ``_off[i]:_off[i + 1]`` of ``_src`` (the dependency,
      -1 for an ``after=`` name not yet resolved), ``_dst`` (*i*) and ``_pos``
      (a position, ``NESTED`` or ``AFTER``); data edges come first, in the
      order the handles were found, then ``after=`` edges.
    - ``_paths``: ``{i: paths}`` for tasks with a handle in kwargs or inside a
      container: one path per data edge, ``(0, position, key, ...)`` into the
      arguments or ``(1, name, key, ...)`` into kwargs.
    - ``_names`` ``{i: name}`` and ``_index_of`` ``{name: i}``: names given
      with ``name=``; the others are computed (``f"{fn.__name__}-{i}"``).
    - ``_pending``: ``{edge: (task, name)}`` for ``after=`` names not yet resolved.
    - ``_all_done``: ascending indices of tasks with ``trigger="all_done"``.
    - ``_batched``: ascending indices of tasks of ``@batched`` functions.
    - ``_with_uses``: ascending indices of tasks with ``uses=``.
    - ``_runs``: how many runs of the DAG are in progress (``add`` refuses
      while any is); ``_checked_fn``: the last function ``check_fn`` passed.
    """

    __slots__ = (
        "__weakref__",
        "_all_done",
        "_args",
        "_b",
        "_batched",
        "_default_like",
        "_fns",
        "_given",
        "_graph_cache",
        "_index_of",
        "_kwargs",
        "_named",
        "_off",
        "_opts",
        "_paths",
        "_pending",
        "_pos",
        "_runs",
        "_snapshot",
        "_src",
        "_with_uses",
    )

    def __init__(self) -> None:
        self._fns: list[Callable[..., Any]] = []
        self._args: list[tuple[Any, ...] | int] = []
        self._opts: list[TaskOptions] = []
        self._kwargs: dict[int, dict[str, Any]] = {}
        self._off = array("i", [0])
        self._src = array("i")
        self._pos = array("i")
        self._paths: dict[int, tuple[tuple[Any, ...], ...]] = {}
        self._index_of: dict[str, int] = {}
        self._named = bytearray()
        self._given: dict[int, str] | None = None
        self._default_like: set[int] = set()
        self._pending: dict[int, tuple[int, str]] = {}
        self._all_done = array("i")
        self._batched = array("i")
        self._with_uses = array("i")
        self._graph_cache: Graph | None = None
        self._snapshot: Snapshot | None = None
        self._runs = 0
        self._b = self._builder()
        if _compiled_add is not None:
            _install_compiled_add()

    def _builder(self) -> Any:
        """The backend's builder of the common call of add and map, on this DAG's columns."""
        return _native.BACKEND.build.Builder(
            self._fns,
            self._args,
            self._opts,
            self._off,
            self._src,
            self._pos,
            self._index_of,
            self._named,
            self._pending,
            self._default_like,
            Handle,
            DEFAULT_OPTIONS,
            _OPTION_DEFAULTS,
            _NO_AFTER,
            AFTER,
        )

    def __getstate__(self) -> dict[str, Any]:
        # The builder and the caches are remade, not pickled.
        return {
            slot: getattr(self, slot)
            for slot in self.__slots__
            if slot not in ("__weakref__", "_b", "_given", "_graph_cache", "_snapshot")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for slot, value in state.items():
            setattr(self, slot, value)
        self._given = self._graph_cache = self._snapshot = None
        self._b = self._builder()

    # --- building ----------------------------------------------------------

    @overload
    def add(
        self,
        fn: Batched[Any, T],
        /,
        *args: Any,
        name: str | None = ...,
        kwargs: Mapping[str, Any] | None = ...,
        after: Handle[Any] | str | Iterable[Handle[Any] | str] = ...,
        priority: int = ...,
        cost: float = ...,
        tags: Iterable[str] = ...,
        uses: Mapping[str, float] | None = ...,
        retries: int = ...,
        retry_delay: float = ...,
        retry_backoff: float = ...,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
        timeout: float | None = ...,
        run_in: RunIn | None = ...,
        trigger: Trigger = ...,
    ) -> Handle[T]: ...
    @overload
    def add(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        name: str | None = ...,
        kwargs: Mapping[str, Any] | None = ...,
        after: Handle[Any] | str | Iterable[Handle[Any] | str] = ...,
        priority: int = ...,
        cost: float = ...,
        tags: Iterable[str] = ...,
        uses: Mapping[str, float] | None = ...,
        retries: int = ...,
        retry_delay: float = ...,
        retry_backoff: float = ...,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
        timeout: float | None = ...,
        run_in: RunIn | None = ...,
        trigger: Trigger = ...,
    ) -> Handle[T]: ...
    @overload
    def add(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        name: str | None = ...,
        kwargs: Mapping[str, Any] | None = ...,
        after: Handle[Any] | str | Iterable[Handle[Any] | str] = ...,
        priority: int = ...,
        cost: float = ...,
        tags: Iterable[str] = ...,
        uses: Mapping[str, float] | None = ...,
        retries: int = ...,
        retry_delay: float = ...,
        retry_backoff: float = ...,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
        timeout: float | None = ...,
        run_in: RunIn | None = ...,
        trigger: Trigger = ...,
    ) -> Handle[T]: ...

    def add(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        after: Handle[Any] | str | Iterable[Handle[Any] | str] = (),
        priority: int = 0,
        cost: float = 1.0,
        tags: Iterable[str] = (),
        uses: Mapping[str, float] | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None,
        run_in: RunIn | None = None,
        trigger: Trigger = "all_succeeded",
    ) -> Handle[Any]:
        """Add a task that calls ``fn(*args, **kwargs)``; return its handle.

        Handles in *args*, in *kwargs* values, or nested in lists, tuples and
        dicts make dependencies, replaced by their outputs at run time;
        *after* adds dependencies (handles or names, also of tasks added
        later) that pass no output. *name* defaults to
        ``f"{fn.__name__}-{index}"``; the other options are described in
        the docs of ``trio_dag`` (section "Building a graph").

        Beyond SPEC: subclasses of list, tuple and dict (namedtuples,
        OrderedDict, defaultdict) are searched too and reach *fn* as their
        own type; a handle in a set, frozenset, deque or dict key, where no
        output could be put, is a TypeError. Generator functions (sync or
        async) are refused: calling one would not run its body. A task of a
        ``@batched`` function takes one positional argument and no
        ``kwargs=`` or ``run_in=``.

        Everything is checked before anything is recorded, so a rejected call
        (TypeError, ValueError, ForeignHandleError, DuplicateTaskError) leaves
        the DAG as it was. While a run of the DAG is in progress (from
        ``run``/``open_run`` freezing it to the run's end; for ``open_run``,
        to the end of its block) ``add`` raises RuntimeError.
        """
        # The common call, in one call of the backend's builder (None: not common).
        handle = self._b.add(
            self,
            fn,
            args,
            name,
            kwargs,
            after,
            priority,
            cost,
            tags,
            uses,
            retries,
            retry_delay,
            retry_backoff,
            retry_on,
            timeout,
            run_in,
            trigger,
        )
        if handle is not None:
            return handle  # type: ignore[no-any-return]
        i = len(self._fns)
        # A function checked once need not be checked again (dag.map, loops);
        # a @batched one is never remembered: its check is of the arguments.
        # While a run is in progress none is (see _running), so the test of
        # _runs costs nothing on the way of a remembered function.
        if fn is not self._b.checked_fn:
            if self._runs:
                raise RuntimeError(
                    f"task {task_label(fn, i, name)}: the DAG is being run; tasks cannot be "
                    "added to a running DAG yet; add them before the run starts or after it "
                    "has ended"
                )
            check_fn(fn, args, kwargs, i, name)
            if type(fn) is not Batched:
                self._b.checked_fn = fn
        values = (
            priority,
            cost,
            tags,
            uses,
            retries,
            retry_delay,
            retry_backoff,
            retry_on,
            timeout,
            run_in,
            trigger,
        )
        # Options equal to the defaults (the usual case) share one TaskOptions.
        # A bool equal to a default (priority=False, cost=True) goes on to
        # make_options, which refuses it; other numbers equal to a default
        # (retries=0.0) give the default options. Identity tests: the cheapest.
        opts = (
            DEFAULT_OPTIONS
            if values == DEFAULT_VALUES
            and priority is not False
            and retries is not False
            and cost is not True
            and retry_delay is not False
            else make_options(fn, task_label(fn, i, name), *values)
        )
        if name is not None:
            check_name(name, fn, i, self._lookup)
        elif self._index_of:
            check_default_name(fn, i, self._index_of)
        kw = None if kwargs is None else copy_kwargs(kwargs, fn, i, name)
        after_items = None if after == () else scan_after(self, self._lookup, after, fn, i, name)
        # The common case first: every positional argument is a handle of
        # this DAG (or there are none) and kwargs hold none.
        data = [a._index for a in args if type(a) is Handle and a._dag is self]
        if len(data) == len(args) and not kw:
            self._record(fn, len(data) or args, kw, opts, name, data, None, None, after_items)
        else:
            stored, data, pos, paths = scan(self, args, kw, fn, i, name)
            self._record(fn, stored, kw, opts, name, data, pos, paths, after_items)
        return Handle(self, i)

    @overload
    def map(
        self, fn: Callable[[Any], Awaitable[T]], iterable: Iterable[Any], /, **options: Any
    ) -> list[Handle[T]]: ...
    @overload
    def map(
        self, fn: Callable[[Any], T], iterable: Iterable[Any], /, **options: Any
    ) -> list[Handle[T]]: ...

    def map(
        self, fn: Callable[[Any], Any], iterable: Iterable[Any], /, **options: Any
    ) -> list[Handle[Any]]:
        """Add one task ``fn(item)`` per item, all with the same options; return their handles.

        An item may be a handle (its task's output is then the argument).
        Takes every keyword of :meth:`add` except ``name``: the tasks get
        default names. All or nothing: a rejected item adds no task at all.
        """
        if "name" in options:
            raise TypeError(
                "map() gives its tasks default names; to name them, call add() in a loop"
            )
        start = len(self._fns)
        # The cyclic GC would walk the growing columns again and again while
        # map adds a task per item (most of map's time); the objects map
        # makes form no cycle, so it waits until map returns.
        collecting = gc.isenabled()
        gc.disable()
        try:
            if not options:
                return self._b.map(self, fn, iterable, self.add)  # type: ignore[no-any-return]
            return [self.add(fn, item, **options) for item in iterable]
        except BaseException:
            self._truncate(start)
            raise
        finally:
            if collecting:
                gc.enable()

    # --- helpers of add and map --------------------------------------------

    def _record(
        self,
        fn: Callable[..., Any],
        stored: tuple[Any, ...] | int,
        kw: dict[str, Any] | None,
        opts: TaskOptions,
        name: str | None,
        data: list[int],
        pos: list[int] | None,
        paths: tuple[tuple[Any, ...], ...] | None,
        after_items: list[int | str] | None,
    ) -> None:
        """Append a checked task to every column; nothing here can fail.

        *pos* None means the data edges are positions ``0..len(data)-1``.
        """
        i = len(self._fns)
        if type(fn) is Batched:
            self._batched.append(i)
        self._fns.append(fn)
        self._args.append(stored)
        self._opts.append(opts)
        src = self._src
        if data:
            src.fromlist(data)
            if pos is not None:
                self._pos.fromlist(pos)
            else:
                self._pos.extend(_FIRST[len(data)] if len(data) < 64 else range(len(data)))
        if after_items:
            for a in after_items:
                if isinstance(a, str):
                    self._pending[len(src)] = (i, a)
                    src.append(-1)
                else:
                    src.append(a)
            self._pos.fromlist([AFTER] * len(after_items))
        self._off.append(len(src))
        if opts is not DEFAULT_OPTIONS or kw or paths or name is not None:
            if kw:
                self._kwargs[i] = kw
            if paths is not None:
                self._paths[i] = paths
            if name is not None:
                self._name_task(i, name)
            if opts.trigger == "all_done":
                self._all_done.append(i)
            if opts.uses:
                self._with_uses.append(i)

    def _truncate(self, n: int) -> None:
        """Forget every task from index *n* on (map() undoing a partly done call)."""
        end = self._off[n]
        del self._fns[n:], self._args[n:], self._opts[n:], self._off[n + 1 :]
        del self._src[end:], self._pos[end:]
        del self._all_done[bisect.bisect_left(self._all_done, n) :]
        del self._batched[bisect.bisect_left(self._batched, n) :]
        del self._with_uses[bisect.bisect_left(self._with_uses, n) :]
        for table in (self._kwargs, self._paths):
            for k in [k for k in table if k >= n]:
                del table[k]
        if len(self._named) > n:
            del self._named[n:]
            for name in [name for name, j in self._index_of.items() if j >= n]:
                del self._index_of[name]
            self._given = None
        for e in [e for e in self._pending if e >= end]:
            del self._pending[e]

    # --- names and lookup --------------------------------------------------

    def _name_task(self, i: int, name: str) -> None:
        """Record *name*, checked, as the name of task *i*, the last one added."""
        self._index_of[name] = i
        named = self._named
        if len(named) < i:
            named.extend(bytes(i - len(named)))
        named.append(1)
        # A name that reads as a default name, "<base>-<digits>", may be the
        # default name of task <digits>: add's fast path leaves that one to
        # check_default_name.
        _, dash, digits = name.rpartition("-")
        if dash and 0 < len(digits) <= 10 and digits.isascii() and digits.isdigit():
            self._default_like.add(int(digits))

    def _is_named(self, i: int) -> bool:
        """Whether task *i* was given a name with ``name=``."""
        return i < len(self._named) and self._named[i] == 1

    def _name(self, i: int) -> str:
        """The name of task *i*: given with ``name=``, or ``f"{fn.__name__}-{i}"``."""
        if not self._is_named(i):
            return f"{fn_name(self._fns[i])}-{i}"
        # Names are stored name -> index only; the reverse is made on demand,
        # and mirrors the table in its order, which is the tasks' order: the
        # names not mirrored yet are the newest, at the table's end.
        given = self._given
        if given is None:
            given = self._given = {j: name for name, j in self._index_of.items()}
        elif i not in given:
            for name, j in reversed(self._index_of.items()):
                if j in given:
                    break
                given[j] = name
        return given[i]

    def _lookup(self, name: str) -> int | None:
        """The index of the task called *name*, or None."""
        j = self._index_of.get(name)
        if j is not None:
            return j
        # Default names are not stored: parse "<fn name>-<index>" and check.
        base, dash, digits = name.rpartition("-")
        if not dash or not (digits.isascii() and digits.isdigit()):
            return None
        j = int(digits)
        if (
            str(j) != digits
            or j >= len(self._fns)
            or self._is_named(j)
            or fn_name(self._fns[j]) != base
        ):
            return None
        return j

    def _close_name(self, missing: str) -> str | None:
        """The existing name closest to *missing*, if one is close (difflib)."""
        return close_name(missing, len(self._fns), self._name, self._index_of)

    def _task_index(self, task: Handle[Any] | str) -> int:
        """The index of a task given by handle or name (KeyError for an unknown name)."""
        if type(task) is Handle:
            if task._dag is not self:
                raise ForeignHandleError(
                    f"{task!r} belongs to another DAG; look tasks up in their own DAG"
                )
            return task._index
        if isinstance(task, str):
            j = self._lookup(task)
            if j is None:
                close = self._close_name(task)
                hint = f"; did you mean {close!r}?" if close is not None else ""
                raise KeyError(f"no task is named {task!r}{hint}")
            return j
        raise TypeError(f"a task is given by its Handle or its name, not {task!r}")

    def _resolve_edge(self, e: int) -> int:
        """The task an ``after=`` name of edge *e* names, or UnknownDependencyError."""
        task, name = self._pending[e]
        j = self._lookup(name)
        if j is None:
            raise UnknownDependencyError(self._name(task), name, self._close_name(name))
        return j

    def _resolve_pending(self) -> None:
        # In edge order, that is insertion order: the first error is the
        # earliest task's.
        src = self._src
        for e in self._pending:
            src[e] = self._resolve_edge(e)
        self._pending.clear()

    # --- the container protocol --------------------------------------------

    def __len__(self) -> int:
        """The number of tasks."""
        return len(self._fns)

    def __iter__(self) -> Iterator[Handle[Any]]:
        """The handles of every task, in insertion order."""
        for i in range(len(self._fns)):
            yield Handle(self, i)

    def __contains__(self, task: object) -> bool:
        """Whether a task has this name (or whether a handle is of this DAG)."""
        if type(task) is Handle:
            return task._dag is self
        return isinstance(task, str) and self._lookup(task) is not None

    def __getitem__(self, name: str | Handle[Any]) -> Handle[Any]:
        """The handle of the task called *name* (KeyError, with a suggestion, if none)."""
        return Handle(self, self._task_index(name))

    def __repr__(self) -> str:
        return f"<trio_dag.DAG with {len(self._fns)} tasks>"

    def dependencies(self, task: Handle[Any] | str) -> tuple[Handle[Any], ...]:
        """The tasks *task* waits for (data and ``after=``), once each, in insertion order.

        Raises UnknownDependencyError if one of its ``after=`` names matches no task.
        """
        i = self._task_index(task)
        src = self._src
        deps = {src[e] if src[e] >= 0 else self._resolve_edge(e) for e in self._edges(i)}
        return tuple([Handle(self, j) for j in sorted(deps)])

    def dependents(self, task: Handle[Any] | str) -> tuple[Handle[Any], ...]:
        """The tasks that wait for *task* (data and ``after=``), once each, in insertion order.

        Needs every ``after=`` name of the DAG to exist (UnknownDependencyError
        otherwise); builds the whole graph once after each change.
        """
        i = self._task_index(task)
        return tuple([Handle(self, j) for j in self._graph().children(i)])

    def _edges(self, i: int) -> range:
        return range(self._off[i], self._off[i + 1])

    # --- runs ----------------------------------------------------------------

    @contextmanager
    def _running(self) -> Iterator[None]:
        """Count a run of the DAG as in progress for the ``with`` block (``add`` refuses)."""
        self._runs += 1
        self._b.checked_fn = None  # so that add looks at _runs
        try:
            yield
        finally:
            self._runs -= 1

    # --- freezing and validation -------------------------------------------

    def _graph(self) -> Graph:
        """The core graph of every task and edge, cached until the next add."""
        n = len(self._fns)
        graph = self._graph_cache
        graph_type = _native.BACKEND.core.Graph
        if graph is None or graph.n != n or type(graph) is not graph_type:
            if self._pending:
                self._resolve_pending()
            # The DAG's builder spells out the targets the DAG does not keep.
            graph = graph_type(n, self._src, self._b.targets(n))
            self._graph_cache = graph
        return graph

    def _freeze(self) -> Snapshot:
        """The DAG as the engine runs it, validated; cached until the next add.

        Raises UnknownDependencyError (first, in insertion order), then CycleError.
        """
        backend = _native.BACKEND
        snapshot = self._snapshot
        if snapshot is not None and snapshot.n == len(self._fns) and snapshot.backend is backend:
            return snapshot
        graph = self._graph()
        cycle = graph.find_cycle()
        if cycle is not None:
            raise CycleError([self._name(v) for v in cycle])
        n = graph.n
        columns = Columns(
            self._fns,
            self._opts,
            self._args,
            self._kwargs,
            self._off,
            self._src,
            self._pos,
            self._paths,
        )
        snapshot = self._snapshot = Snapshot(
            self,
            graph,
            backend,
            columns,
            all_done=self._all_done[: bisect.bisect_left(self._all_done, n)],
            has_batched=bool(self._batched) and self._batched[0] < n,
            has_uses=bool(self._with_uses) and self._with_uses[0] < n,
            name=self._name,
            task_index=self._task_index,
            close_name=self._close_name,
        )
        return snapshot

    def validate(self) -> None:
        """Check that the DAG can run: every ``after=`` name exists and there is no cycle.

        Raises UnknownDependencyError (checked first) or CycleError. Linear in
        tasks + edges and iterative; the result is kept until the next add.
        """
        self._freeze()

    def topological_order(self) -> list[Handle[Any]]:
        """Every task, each after all of its dependencies (validates first)."""
        return [Handle(self, i) for i in self._freeze().graph.topological_order()]

    def waves(self) -> list[list[Handle[Any]]]:
        """The tasks by level, each level in insertion order (validates first).

        Wave *k* holds the tasks whose longest chain of dependencies has *k*
        links, so each wave can run once the waves before it have ended.
        """
        waves: list[list[Handle[Any]]] = []
        for i, level in enumerate(self._freeze().graph.levels()):
            while len(waves) <= level:
                waves.append([])
            waves[level].append(Handle(self, i))
        return waves

    # --- exports -------------------------------------------------------------

    def _export(self) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[int, int, bool]]]:
        """``(name, tags)`` per task and ``(src, dst, order_only)`` per distinct edge.

        Edges are sorted by dependent, then dependency; an edge is order-only
        (``after=``) when no handle passes output along it.
        """
        if self._pending:
            self._resolve_pending()
        src = self._src
        pos = self._pos
        tasks = [(self._name(i), self._opts[i].tags) for i in range(len(self._fns))]
        edges: list[tuple[int, int, bool]] = []
        for i in range(len(self._fns)):
            data = {src[e] for e in self._edges(i) if pos[e] != AFTER}
            every = data.union([src[e] for e in self._edges(i)])
            edges.extend((j, i, j not in data) for j in sorted(every))
        return tasks, edges

    def to_dot(self) -> str:
        """The DAG in Graphviz DOT: tasks by name and tags, ``after=`` edges dashed.

        Deterministic: the same DAG always gives the same text.
        """
        return render_dot(*self._export())

    def to_mermaid(self) -> str:
        """The DAG as a Mermaid flowchart: tasks by name and tags, ``after=`` edges dotted.

        Deterministic: the same DAG always gives the same text.
        """
        return render_mermaid(*self._export())


# The option arguments of DAG.add as it receives them when the caller gives
# none (the very objects: the builder tests identity), and after='s.
_OPTION_DEFAULTS: Final = tuple(
    DAG.add.__kwdefaults__[option]  # type: ignore[index]
    for option in (
        "priority",
        "cost",
        "tags",
        "uses",
        "retries",
        "retry_delay",
        "retry_backoff",
        "retry_on",
        "timeout",
        "run_in",
        "trigger",
    )
)
_NO_AFTER: Final = DAG.add.__kwdefaults__["after"]  # type: ignore[index]


# The compiled builder's module also has DAG.add without a Python frame (no
# keyword-only defaults to fill in, no second call): the common call is
# taken there and every other goes to the add above, as it came. Installed
# at the first DAG(), once the package has published add under its public
# module, and only when the compiled backend was chosen.
_compiled_add: Any = _native.BACKEND.build if _native.BACKEND.name == "cython" else None


def _install_compiled_add() -> None:
    global _compiled_add
    build, _compiled_add = _compiled_add, None
    general = DAG.__dict__["add"]
    fast = build.add
    build.set_general_add(general)
    functools.update_wrapper(fast, general)
    type.__setattr__(DAG, "add", fast)

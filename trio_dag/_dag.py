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
import copy
import gc
from array import array
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload

from . import _native
from ._batching import Batched
from ._dependencies import copy_kwargs, scan, scan_after
from ._errors import CycleError, ForeignHandleError, UnknownDependencyError
from ._export import render_dot, render_mermaid
from ._handle import Handle
from ._names import check_default_name, check_name, close_name, fn_name, task_label
from ._options import (
    BUILT_IN,
    DEFAULT_OPTIONS,
    DEFAULT_VALUES,
    RunIn,
    TaskOptions,
    Trigger,
    check_fn,
    options_of,
)
from ._snapshot import Columns, Snapshot

if TYPE_CHECKING:
    from ._native._build_py import Names
    from ._native._core import Graph

__all__ = ["DAG"]

T = TypeVar("T")


@final
class DAG:
    """A directed acyclic graph of tasks: build it with :meth:`add`, then run it.

    Each task is a function and its arguments; :meth:`add` returns a
    :class:`Handle` that stands for the task's output. Passing a handle as
    an argument of another task makes a dependency: that task starts once
    the first has succeeded, and receives its output in place of the
    handle. Nothing runs until the DAG is given to :func:`run`,
    :func:`run_sync` or :func:`open_run`::

        dag = trio_dag.DAG()
        raw = dag.add(load, "a.txt", name="load-a")
        clean = dag.add(normalize, raw)          # normalize(load("a.txt"))
        dag.add(store, [clean], after=["open-db"])
        dag.add(open_db, name="open-db")         # names may be used before they exist
        report = trio_dag.run_sync(dag, limit=8)
        report[clean]                            # normalize()'s return value

    A DAG is also a container of its tasks: ``len(dag)``, ``iter(dag)``
    (handles in insertion order), ``name in dag`` and ``dag[name]``.
    Running a DAG never changes it: one DAG can be run many times, also
    several runs at once. While a run is in progress, :meth:`add` refuses
    new tasks. See the user guide, *Graphs and handles*.
    """

    # Task i (its insertion index) is stored column-wise. The columns grow
    # as tasks are added, and what is written for a task never changes (but
    # for the -1 placeholders of _src, filled once their name resolves), so
    # a Snapshot shares the columns and reads tasks 0..n-1 while the user
    # keeps adding.
    #
    # - _fns[i]: the function.
    # - _args[i]: the user's positional arguments, or an int k: the task's
    #   arguments are exactly k handles, its first k edges, in order.
    # - _opts[i]: its TaskOptions (one shared default instance).
    # - _kwargs: {i: kwargs} (a private copy) for tasks that have some.
    # - Edges of task i are _off[i]:_off[i + 1] of _src (the dependency, -1
    #   for an after= name not yet resolved); the edge's target, i, is not
    #   stored (freezing spells the targets out from _off). Data edges come
    #   first, in the order the handles were found, then after= edges. How
    #   many are data edges, and where their handles sit, is stored only
    #   where _args does not say it: _args[i] an int k: the first k edges,
    #   positions 0..k-1; i in _paths: one data edge per path; i in _where:
    #   one per position; else (a tuple of plain values) none.
    # - _where: {i: positions} for tasks whose positional arguments mix
    #   handles and plain values (and hold no handle in a container or
    #   kwargs): the position among the arguments of each data edge's handle.
    # - _paths: {i: paths} for tasks with a handle in kwargs or inside a
    #   container: one path per data edge, (0, position, key, ...) into the
    #   arguments or (1, name, key, ...) into kwargs.
    # - _index_of: the names given with name=, the one table of names, the
    #   backend's Names (a mapping {name: i} that also gives name_of(i); the
    #   compiled one keeps each name once, with no int object). The
    #   other names are computed (f"{fn.__name__}-{i}"). _default_like: the
    #   <digits> of given names that read "<base>-<digits>", which add's
    #   fast path leaves to the general checks.
    # - _pending: {edge: (task, name)} for after= names not yet resolved.
    # - _all_done: ascending indices of tasks with trigger="all_done".
    # - _batched: ascending indices of tasks of @batched functions.
    # - _with_uses: ascending indices of tasks with uses=.
    # - _with_notes: ascending indices of tasks with a priority, tags, cache= or an
    #   executor's run_in= (for the run's warnings and checks of those settings).
    # - _runs: how many runs of the DAG are in progress (add refuses while
    #   any is).
    # - _b: the backend's Builder over these columns, which records the
    #   common call of add and map in one step (it remembers the last
    #   function check_fn passed).

    __slots__ = (
        "__weakref__",
        "_all_done",
        "_args",
        "_b",
        "_base",
        "_batched",
        "_default_like",
        "_fns",
        "_graph_cache",
        "_index_of",
        "_kwargs",
        "_off",
        "_opts",
        "_paths",
        "_pending",
        "_runs",
        "_snapshot",
        "_src",
        "_where",
        "_with_notes",
        "_with_uses",
    )

    def __init__(self) -> None:
        self._fns: list[Callable[..., Any]] = []
        self._args: list[tuple[Any, ...] | int] = []
        self._opts: list[TaskOptions] = []
        self._kwargs: dict[int, dict[str, Any]] = {}
        self._off = array("i", [0])
        self._src = array("i")
        self._where: dict[int, tuple[int, ...]] = {}
        self._paths: dict[int, tuple[tuple[Any, ...], ...]] = {}
        self._index_of: Names = _native.BACKEND.build.Names()
        self._default_like: set[int] = set()
        self._pending: dict[int, tuple[int, str]] = {}
        self._all_done = array("i")
        self._batched = array("i")
        self._with_uses = array("i")
        self._with_notes = array("i")
        self._graph_cache: Graph | None = None
        self._snapshot: Snapshot | None = None
        self._runs = 0
        # A fork (see _fork): the DAG whose run it is, whose handles it takes as its own.
        self._base: DAG | None = None
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
            self._where,
            self._index_of,
            self._pending,
            self._default_like,
            Handle,
            DEFAULT_OPTIONS,
            _OPTION_DEFAULTS,
            _NO_AFTER,
        )

    def __getstate__(self) -> dict[str, Any]:
        # The builder and the caches are remade, not pickled; the names are
        # pickled as a dict, whichever backend's table holds them.
        state = {
            slot: getattr(self, slot)
            for slot in self.__slots__
            if slot not in ("__weakref__", "_b", "_graph_cache", "_snapshot")
        }
        state["_index_of"] = dict(self._index_of.items())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for slot, value in state.items():
            if slot in self.__slots__:  # not _named and _given of older pickles
                setattr(self, slot, value)
        # The names in the table of this process's backend.
        self._index_of = _native.BACKEND.build.Names(dict(state["_index_of"]).items())
        self._graph_cache = self._snapshot = None
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
        cache: bool | Callable[..., Any] = ...,
        version: str | None = ...,
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
        cache: bool | Callable[..., Any] = ...,
        version: str | None = ...,
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
        cache: bool | Callable[..., Any] = ...,
        version: str | None = ...,
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
        cache: bool | Callable[..., Any] = False,
        version: str | None = None,
    ) -> Handle[Any]:
        """Add a task that calls ``fn(*args, **kwargs)``; return its :class:`Handle`.

        As with ``nursery.start_soon``, positional arguments go to *fn* and
        the keyword arguments of ``add`` are options; ``kwargs=`` carries
        keyword arguments for *fn*. Nothing runs yet: the task runs when the
        DAG is run.

        A :class:`Handle` among the arguments makes its task a dependency:
        the new task starts only once that task has succeeded, and receives
        its output in place of the handle, so ``dag.add(clean, raw)`` calls
        ``clean(<output of raw>)``. Handles are found as positional
        arguments, as values of ``kwargs=``, and nested at any depth inside
        lists, tuples and dict values, including their subclasses
        (namedtuples, ``OrderedDict``, ``defaultdict``), which reach *fn* as
        their own type with every handle replaced. ``after=`` adds
        dependencies that pass no output::

            raw = dag.add(load, "a.txt")
            clean = dag.add(normalize, raw, kwargs={"lower": True}, retries=2)
            dag.add(store, {"text": clean}, after="open-db", uses={"db": 1})
            dag.add(open_db, name="open-db")

        Everything is checked before anything is recorded: a call that
        raises leaves the DAG as it was. Settings that are valid but have no
        effect in a run (a ``priority`` the run's policy ignores, a tag equal
        to a resource name) are reported by the run with a
        :class:`NoEffectWarning`. See the user guide, *Graphs and handles*.

        Args:
          fn: What the task calls: an async function (awaited in the event
            loop), a sync function (called in a worker thread unless
            ``run_in`` says otherwise), any callable such as a
            ``functools.partial`` or an object with a ``__call__``, or a
            :func:`batched` function, whose task takes exactly one positional
            argument, its item, and no ``kwargs=``.
            Generator functions, sync or async, are refused: calling one only
            makes a generator, so the body would never run as the task.
          *args: Positional arguments for *fn*; the handles among them (or
            nested in them) are dependencies, replaced by their outputs.
          name: The task's name, a non-empty ``str`` unique in the DAG.
            Default ``None``: ``f"{fn.__name__}-{index}"``, with ``index``
            the task's insertion index counted from 0 (for a
            ``functools.partial``, the name of its function), so the same
            graph built twice gets the same names.
          kwargs: Keyword arguments for *fn*: a mapping with ``str`` keys,
            copied; handles in its values are dependencies. Default ``None``:
            none.
          after: Tasks that must end first without passing their output: a
            handle, a name, or an iterable of them. A name may be of a task
            added later: it is resolved when the DAG is validated, by
            :meth:`validate` or when a run starts, which raise
            :class:`UnknownDependencyError` if no task has it. A dependency
            given by ``after=`` must still succeed, as any other, unless
            ``trigger="all_done"``. Default: none.
          priority: An ``int``. Under ``policy="priority"`` the ready task
            with the HIGHER priority starts first (ties in the order the
            tasks became ready); note that a key function given as
            ``policy`` runs SMALLER keys first. Every other policy ignores
            it, and a run with another policy warns
            :class:`NoEffectWarning` for tasks that set it. Default 0.
          cost: The task's estimated duration relative to the others, a
            finite number > 0. Only ``policy="critical_path"`` reads it: it
            starts first the ready task with the longest remaining chain of
            costs to the end of the graph. Default 1.0.
          tags: Labels, an iterable of ``str`` (not one ``str``): shown by
            :func:`current_task`, :meth:`to_dot`, :meth:`to_mermaid` and the
            report's Chrome trace. Tags cap nothing: a tag that equals a
            resource name does not make the task use the resource, and a run
            warns :class:`NoEffectWarning` when a task has such a tag
            without ``uses`` of that resource. To limit how many tasks of a
            kind run at once, give them ``uses=``. Default: none.
          uses: ``{resource: amount}``: how much of each resource the task
            holds while an attempt runs. The capacities are given to the run
            (``run(dag, resources={"gpu": 2})``); a ready task starts only
            once all its amounts fit, and gives them back when its attempt
            ends. Amounts are finite numbers > 0, counted exactly, never in
            floats: a float counts as the shortest decimal that reads back as
            it, so three tasks using ``0.1`` fit together in a capacity of
            ``0.3``. A run that does not provide a resource a task uses, or
            whose capacity is smaller than the task's amount, raises
            :class:`ResourceError` before anything starts. Default ``None``:
            none.
          retries: How many more attempts the task gets after an attempt
            raises an exception that matches ``retry_on``: an ``int`` >= 0.
            Between attempts the task holds no ``limit`` slot and none of its
            ``uses``; it takes them again, in policy order, once its wait is
            over. Default 0.
          retry_delay: Seconds (on the Trio clock) to wait before the first
            retry, a finite number >= 0. The wait before retry *k* (counted
            from 1) is ``retry_delay * retry_backoff ** (k - 1)``. Default
            0.0: retry at once.
          retry_backoff: What each wait is multiplied by for the next, a
            finite number > 0. Default 2.0.
          retry_on: The exception class, or tuple of classes, that is
            retried; each must be a subclass of ``Exception``. A
            ``BaseException`` that is not an ``Exception`` (such as
            ``KeyboardInterrupt``) is never retried: it stops the whole run.
            Default ``(Exception,)``, which includes
            :class:`TaskTimeoutError`.
          timeout: Seconds (on the Trio clock) one attempt may run, a finite
            number > 0: an attempt still running after it is cancelled and
            fails with :class:`TaskTimeoutError`, which is retried as any
            failure when it matches ``retry_on``. An async body is
            interrupted at its next checkpoint (an ``await`` of a Trio
            operation), as by any Trio cancel scope. A sync body in a worker
            thread cannot be interrupted: the attempt goes on until the
            function returns, still holding its ``limit`` slot and its
            ``uses``; then its result or its exception is thrown away and
            the attempt fails with :class:`TaskTimeoutError`. So does an
            ``"inline"`` body, or an async one that does not reach a
            checkpoint in time: it runs to its end, and if that is at or
            past its deadline its result is thrown away. For a
            :func:`batched` function, the timeout of the task that opened a
            batch bounds the whole call. Default ``None``: no limit.
          run_in: How the body is called.

            - ``None`` (default): an async function is awaited in the event
              loop, any other callable is called in a worker thread
              (``trio.to_thread.run_sync``).
            - ``"async"``: awaited in the event loop: for a callable that
              returns an awaitable without being an async function.
            - ``"inline"``: a sync function called directly in the event
              loop, which it blocks while it runs: for tiny functions, where
              a thread would cost more than the call.
            - ``"thread"``: a sync function called in a worker thread.
            - ``"process"``, or any other name: a sync function run on the
              executor of that name, which the run provides
              (``run(..., executors={name: executor})``; ``"process"``,
              unless mapped, is a worker process of the run). The function
              must pickle: define it at module level. See the user guide,
              *Executors*.

            ``"inline"``, ``"thread"`` and executors are refused for an
            async function. A :func:`batched` function takes ``None``, or
            when it is sync ``"inline"``, ``"thread"`` or an executor: its
            call runs there once per batch.
          trigger: When the task may start. ``"all_succeeded"`` (default):
            once every dependency SUCCEEDED; if one does not, the task ends
            SKIPPED without running. ``"all_done"``: once every dependency
            has ended, in any state; the task then receives an
            ``outcome.Outcome`` (``outcome.Value`` or ``outcome.Error``) in
            place of each dependency's output. This is how clean-up and
            teardown tasks are written: they also run after a failure under
            ``on_failure="fail_fast"``.
          cache: Whether the task's result may come from the run's cache
            (``run(..., cache=...)``). ``False`` (default): it always runs.
            ``True``: it runs only when the cache holds no result for its
            key (its function's code, ``version``, its literal arguments and
            the output digests of its dependencies); otherwise it ends
            ``CACHED`` with the stored output. A function: as ``True``, and
            it is called with the task's resolved arguments (as the body
            would be) just before the lookup; what it returns (hashable
            canonically, such as a file's modification time) is part of the
            key.
          version: A ``str`` mixed into the task's cache key: change it to
            invalidate the stored results when something the key cannot see
            changed (a global, a helper function). Default ``None``.

        Returns:
          The new task's :class:`Handle`. For type checkers, a
          ``Handle[T]`` where *fn* returns ``T`` (or an awaitable of ``T``).

        Raises:
          TypeError: *fn* is not callable, or is a generator function; an
            option has the wrong type (``priority=1.5``, ``tags="io"``,
            ``uses=["gpu"]``, a ``bool`` for a number, ...); ``name`` is not a
            ``str``; ``kwargs=`` is not a mapping with ``str`` keys;
            ``after=`` holds something other than handles and non-empty
            names; a handle sits where no output could be put (in a set, a
            frozenset, a deque or a dict key); a task of a :func:`batched`
            function has other than one positional argument, or ``kwargs=``;
            ``cache`` is neither a bool nor callable, or ``version`` not a
            ``str`` or None.
          ForeignHandleError: A handle, among the arguments or in ``after=``,
            belongs to another DAG. It is also a ``TypeError``.
          ValueError: A number is out of its range (``retries < 0``,
            ``cost`` or ``timeout`` <= 0, ``retry_delay < 0``, an infinite or
            NaN value), or the longest retry wait is too large for a float;
            ``run_in`` or ``trigger`` is not one of the values above, or
            ``run_in`` does not suit *fn*; ``retry_on`` holds a
            ``BaseException`` that is not an ``Exception``; ``name`` is
            empty; an argument contains itself (a list that holds itself).
          DuplicateTaskError: Another task already has this name (or the
            default name this task would get). It is also a ``ValueError``.
          RuntimeError: A run of this DAG is in progress: from the start of
            :func:`run` (or :func:`run_sync`) to its end, and for
            :func:`open_run` until its ``async with`` block is left. Add the
            tasks before the run starts or after it has ended.
        """
        # The common call, in one call of the backend's builder (None: not
        # common); cache= and version= always take the general path.
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
        builder = self._b if cache is False and version is None else _GENERAL
        handle = builder.add(self, fn, args, name, kwargs, after, *values)
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
            and cache is False
            and version is None
            else options_of(fn, lambda: task_label(fn, i, name), (*values, cache, version))
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
        """Add one task ``fn(item)`` per item of *iterable*; return their handles, in order.

        The same as calling :meth:`add` once per item, with the same
        options, except that it is all or nothing: if :meth:`add` raises for
        one item, no task of the call stays in the DAG. An item may be a
        handle (or a list, tuple or dict holding handles): the task then
        depends on it, as with :meth:`add`::

            chunks = dag.map(split, ["a.txt", "b.txt"])
            vectors = dag.map(embed, chunks, retries=2, uses={"gpu": 1})

        Args:
          fn: What each task calls, with its item as the one positional
            argument; anything :meth:`add` accepts.
          iterable: The items, read once.
          **options: Keyword options of :meth:`add`, the same for every
            task, except ``name``: the tasks get default names
            (``f"{fn.__name__}-{index}"``).

        Returns:
          The handles of the new tasks, one per item, in the order of the
          items.

        Raises:
          TypeError: ``name=`` is given (call :meth:`add` in a loop to name
            the tasks), or as :meth:`add`.
          ValueError: As :meth:`add` (also :class:`DuplicateTaskError`).
          ForeignHandleError: As :meth:`add`.
          RuntimeError: A run of this DAG is in progress, as for :meth:`add`.

        Any exception that iterating *iterable* raises propagates, and the
        tasks added for earlier items are removed.
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

        *pos* None means the data edges are positions ``0..len(data)-1``;
        only a task whose arguments mix handles and plain values (*stored* a
        tuple, no *paths*) keeps *pos*, in ``_where``.
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
            if paths is None and type(stored) is not int:
                assert pos is not None
                self._where[i] = tuple(pos)
        if after_items:
            for a in after_items:
                if isinstance(a, str):
                    self._pending[len(src)] = (i, a)
                    src.append(-1)
                else:
                    src.append(a)
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
            if opts.priority or opts.tags or opts.cache or opts.run_in not in BUILT_IN:
                self._with_notes.append(i)

    def _truncate(self, n: int) -> None:
        """Forget every task from index *n* on (map() undoing a partly done call)."""
        end = self._off[n]
        del self._fns[n:], self._args[n:], self._opts[n:], self._off[n + 1 :]
        del self._src[end:]
        del self._all_done[bisect.bisect_left(self._all_done, n) :]
        del self._batched[bisect.bisect_left(self._batched, n) :]
        del self._with_uses[bisect.bisect_left(self._with_uses, n) :]
        del self._with_notes[bisect.bisect_left(self._with_notes, n) :]
        for table in (self._kwargs, self._paths, self._where):
            for k in [k for k in table if k >= n]:
                del table[k]
        self._index_of.truncate(n)
        for e in [e for e in self._pending if e >= end]:
            del self._pending[e]
        # A graph or snapshot made in the meantime (by the iterable) covers
        # tasks that are gone: never reuse one.
        self._graph_cache = self._snapshot = None

    # --- names and lookup --------------------------------------------------

    def _name_task(self, i: int, name: str) -> None:
        """Record *name*, checked, as the name of task *i*, the last one added."""
        self._index_of.add(name, i)
        # A name that reads as a default name, "<base>-<digits>", may be the
        # default name of task <digits>: add's fast path leaves that one to
        # check_default_name.
        _, dash, digits = name.rpartition("-")
        if dash and 0 < len(digits) <= 10 and digits.isascii() and digits.isdigit():
            self._default_like.add(int(digits))

    def _is_named(self, i: int) -> bool:
        """Whether task *i* was given a name with ``name=``."""
        return self._index_of.name_of(i) is not None

    def _name(self, i: int) -> str:
        """The name of task *i*: given with ``name=``, or ``f"{fn.__name__}-{i}"``."""
        given = self._index_of.name_of(i)
        return f"{fn_name(self._fns[i])}-{i}" if given is None else given

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
            if task._dag is not self and (self._base is None or task._dag is not self._base):
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
        """The number of tasks in the DAG: ``len(dag)``."""
        return len(self._fns)

    def __iter__(self) -> Iterator[Handle[Any]]:
        """The handles of every task, in insertion order: ``for handle in dag``."""
        for i in range(len(self._fns)):
            yield Handle(self, i)

    def __contains__(self, task: object) -> bool:
        """``name in dag``: whether a task has this name.

        ``handle in dag``: whether the handle is of this DAG. Anything else
        is in no DAG (False, never an error).
        """
        if type(task) is Handle:
            # A fork (see _fork) holds the tasks of the DAG it forks too.
            return task._dag is self or (self._base is not None and task._dag is self._base)
        return isinstance(task, str) and self._lookup(task) is not None

    def __getitem__(self, name: str | Handle[Any]) -> Handle[Any]:
        """``dag[name]``: the handle of the task called *name*.

        A handle of this DAG is accepted too: an equal handle is returned.

        Raises:
          KeyError: No task has this name; the message suggests the
            closest existing name when one is close.
          ForeignHandleError: *name* is a handle of another DAG.
          TypeError: *name* is neither a ``str`` nor a :class:`Handle`.
        """
        return Handle(self, self._task_index(name))

    def __repr__(self) -> str:
        return f"<trio_dag.DAG with {len(self._fns)} tasks>"

    def dependencies(self, task: Handle[Any] | str) -> tuple[Handle[Any], ...]:
        """The tasks that *task* waits for, each once, in insertion order.

        Both kinds of dependency: handles among its arguments and ``after=``.

        Args:
          task: A handle of this DAG, or a task name.

        Returns:
          A tuple of handles.

        Raises:
          UnknownDependencyError: An ``after=`` name of *task* matches no task.
          KeyError: No task has the name *task* (with a suggestion).
          ForeignHandleError: *task* is a handle of another DAG.
          TypeError: *task* is neither a ``str`` nor a :class:`Handle`.
        """
        i = self._task_index(task)
        src = self._src
        deps = {src[e] if src[e] >= 0 else self._resolve_edge(e) for e in self._edges(i)}
        return tuple([Handle(self, j) for j in sorted(deps)])

    def dependents(self, task: Handle[Any] | str) -> tuple[Handle[Any], ...]:
        """The tasks that wait for *task*, each once, in insertion order.

        Both kinds of dependency: *task*'s handle among their arguments, and
        ``after=``. The first call after a change builds the whole graph,
        which is then kept until the next :meth:`add`.

        Args:
          task: A handle of this DAG, or a task name.

        Returns:
          A tuple of handles.

        Raises:
          UnknownDependencyError: An ``after=`` name of any task of the DAG
            matches no task: the graph cannot be built.
          KeyError: No task has the name *task* (with a suggestion).
          ForeignHandleError: *task* is a handle of another DAG.
          TypeError: *task* is neither a ``str`` nor a :class:`Handle`.
        """
        i = self._task_index(task)
        return tuple([Handle(self, j) for j in self._graph().children(i)])

    def _edges(self, i: int) -> range:
        return range(self._off[i], self._off[i + 1])

    def _data_count(self, i: int) -> int:
        """How many of task *i*'s edges are data edges (its first ones; see the columns)."""
        stored = self._args[i]
        if type(stored) is int:
            return stored
        return len(self._paths.get(i) or self._where.get(i) or ())

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

    def _fork(self) -> DAG:
        """A DAG with copies of this one's columns, for a run that adds tasks.

        The run adds its tasks to the fork (``_growth``), never to this DAG;
        the fork takes this DAG's handles as its own (``_base``). It counts
        as running (its ``add`` refuses) but while the run adds a task.
        """
        if self._pending:
            self._resolve_pending()
        fork = DAG.__new__(DAG)
        for slot, value in self.__getstate__().items():
            setattr(fork, slot, copy.copy(value))
        # __getstate__ gives the names as a dict: the fork's own table.
        fork._index_of = _native.BACKEND.build.Names(self._index_of.items())
        fork._graph_cache = fork._snapshot = None
        fork._base = self
        fork._runs = 1
        fork._b = fork._builder()
        return fork

    # --- freezing and validation -------------------------------------------

    def _graph(self) -> Graph:
        """The core graph of every task and edge, cached until the next add."""
        n = len(self._fns)
        graph = self._graph_cache
        graph_type = _native.BACKEND.core.Graph
        if graph is None or graph.n != n or type(graph) is not graph_type:
            if self._pending:
                self._resolve_pending()
            # Task i's parents are _src[_off[i]:_off[i + 1]]: the compiled
            # core reads both arrays in place (they are only appended to).
            graph = graph_type(n, self._src, offsets=self._off)
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
            self._where,
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
            with_notes=self._with_notes[: bisect.bisect_left(self._with_notes, n)],
            name=self._name,
            task_index=self._task_index,
            close_name=self._close_name,
        )
        return snapshot

    def validate(self) -> None:
        """Check that the DAG can run: every ``after=`` name exists and there is no cycle.

        Every run does the same before any task starts; call it to find
        these errors while building. The check takes time linear in tasks +
        edges and has no recursion, so a chain of a million tasks
        validates; its result is kept until the next :meth:`add`.

        Raises:
          UnknownDependencyError: An ``after=`` name matches no task (checked
            first; the first such task in insertion order is named, with the
            closest existing name when one is close).
          CycleError: Tasks depend on each other in a loop; ``.cycle`` lists
            the names along one cycle.
        """
        self._freeze()

    def topological_order(self) -> list[Handle[Any]]:
        """Every task, each after all of its dependencies.

        Calls :meth:`validate` first, and raises what it raises.
        """
        return [Handle(self, i) for i in self._freeze().graph.topological_order()]

    def waves(self) -> list[list[Handle[Any]]]:
        """The tasks by level, each level in insertion order.

        Wave *k* holds the tasks whose longest chain of dependencies has *k*
        links: wave 0 the tasks without dependencies, and each wave can run
        once the waves before it have ended, as ``strategy="waves"`` runs
        them. Calls :meth:`validate` first, and raises what it raises.
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
        off = self._off
        tasks = [(self._name(i), self._opts[i].tags) for i in range(len(self._fns))]
        edges: list[tuple[int, int, bool]] = []
        for i in range(len(self._fns)):
            data = set(src[off[i] : off[i] + self._data_count(i)])
            every = data.union([src[e] for e in self._edges(i)])
            edges.extend((j, i, j not in data) for j in sorted(every))
        return tasks, edges

    def to_dot(self) -> str:
        """The DAG as Graphviz DOT text: tasks by name and tags, ``after=`` edges dashed.

        Deterministic: the same DAG always gives the same text. Render it
        with ``dot -Tsvg``. Raises :class:`UnknownDependencyError` when an
        ``after=`` name matches no task; a cycle is drawn, not refused.
        """
        return render_dot(*self._export())

    def to_mermaid(self) -> str:
        """The DAG as a Mermaid flowchart: tasks by name and tags, ``after=`` edges dotted.

        Deterministic: the same DAG always gives the same text; paste it
        into a Markdown ``mermaid`` block. Raises
        :class:`UnknownDependencyError` when an ``after=`` name matches no
        task; a cycle is drawn, not refused.
        """
        return render_mermaid(*self._export())


class _General:
    """A builder that takes no call: ``add`` with cache= or version= goes the general way."""

    @staticmethod
    def add(*args: Any) -> None:
        return None


_GENERAL: Final = _General()


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
    _native.install_compiled_add(DAG, build.add, lambda add: build.set_general_add(DAG, add))

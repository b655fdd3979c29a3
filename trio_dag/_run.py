"""The public ways to run a DAG: ``run``, ``run_sync`` and ``open_run``.

They check every option before anything starts, freeze the DAG, turn the
policy into core keys, and hand over to the engine.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from threading import get_ident
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, final

import outcome
import trio

from . import _native
from ._bodies import THREAD, fatal, kind_of
from ._caching import check_store
from ._control import Completed, RunCounts, control_of, counts_of, tally_of
from ._dag import DAG
from ._errors import RunFailedError, TaskFailedError
from ._events import _CURRENT, Event
from ._executors import Executor, check_executors
from ._handle import Handle
from ._no_effect import warn_no_effect
from ._options import show_number
from ._policies import Policy, Strategy, check_policy, check_strategy, ready_keys

if TYPE_CHECKING:
    from ._cache import CacheStore
    from ._engine import Engine
    from ._report import RunReport

__all__ = ["Run", "open_run", "run", "run_sync"]

OnFailure = Literal["skip", "fail_fast"]
T = TypeVar("T")


def _check_limit(limit: object) -> None:
    if limit is None or isinstance(limit, trio.CapacityLimiter):
        return
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(
            f"limit must be None, an int >= 1 or a trio.CapacityLimiter, not {type(limit).__name__}"
        )
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}; use None for no limit")


def _check_resources(resources: object) -> None:
    if resources is None:
        return
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"resources must be a mapping of name to capacity, not {type(resources).__name__}"
        )
    for name, capacity in resources.items():
        if not isinstance(name, str):
            raise TypeError(f"resource names must be str, got {name!r}")
        if (
            not isinstance(capacity, numbers.Real)
            or isinstance(capacity, bool)
            # An int or Fraction is finite however large (math.isfinite would
            # overflow on it); the run counts it exactly.
            or not (isinstance(capacity, numbers.Rational) or math.isfinite(capacity))
            or capacity < 0
        ):
            raise ValueError(
                f"resource {name!r} needs a finite capacity >= 0, got {show_number(capacity)}"
            )


def _check_on_event(on_event: object) -> None:
    if on_event is None:
        return
    if not callable(on_event):
        raise TypeError(f"on_event must be callable, not {type(on_event).__name__}")
    if kind_of(on_event) != THREAD or inspect.isasyncgenfunction(on_event):
        raise TypeError(
            f"on_event {on_event!r} is async, but it is called, not awaited, with each event "
            "as it happens; pass a plain function, or iterate run.events() of open_run to "
            "await something per event"
        )


def _engine(
    dag: DAG,
    *,
    limit: int | trio.CapacityLimiter | None,
    resources: Mapping[str, float] | None,
    policy: Policy,
    strategy: Strategy,
    on_failure: OnFailure,
    targets: Iterable[Handle[Any] | str] | None,
    on_event: Callable[[Event], None] | None,
    stream: Callable[[Event], None] | None,
    cache: CacheStore | None = None,
    executors: Mapping[str, Executor | tuple[Executor, int]] | None = None,
) -> Engine:
    from ._engine import Engine

    _check_limit(limit)
    _check_resources(resources)
    check_policy(policy)
    check_strategy(strategy)
    if on_failure not in ("skip", "fail_fast"):
        raise ValueError(f"on_failure must be 'skip' or 'fail_fast', got {on_failure!r}")
    _check_on_event(on_event)
    check_store(cache)  # a closed Cache raises CacheFileError here, before anything starts
    if not isinstance(dag, DAG):
        raise TypeError(f"run needs a trio_dag.DAG to run, not {type(dag).__name__}")
    if isinstance(targets, (str, Handle)):
        targets = [targets]
    elif targets is not None and not isinstance(targets, Iterable):
        raise TypeError(
            f"targets must be handles or task names (or one of them), not {type(targets).__name__}"
        )
    snap = dag._freeze()
    members = None
    if targets is not None:
        members = snap.graph.ancestors([snap.index(t) for t in targets])
    on_executors = check_executors(snap, members, executors)
    keys, lifo = ready_keys(snap, policy, strategy, range(snap.n) if members is None else members)
    engine = Engine(
        snap,
        members,
        keys=keys,
        lifo=lifo,
        limit=limit,
        resources=resources,
        strategy=strategy,
        fail_fast=on_failure == "fail_fast",
        on_event=on_event,
        stream=stream,
        cache=cache,
        executors=on_executors,
    )
    engine.policy = policy
    warn_no_effect(snap, members, policy, resources, engine.admission.used, cache)
    return engine


def _reraise(error: BaseException) -> NoReturn:
    """Raise *error* again, keeping the context it had."""
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context


def _checked(report: RunReport, check: bool) -> RunReport:
    if check and report._errors:
        failures = [
            TaskFailedError(report._snap.name(i), exc) for i, exc in sorted(report._errors.items())
        ]
        count = len(failures)
        raise RunFailedError(f"{count} task{'s' if count != 1 else ''} failed", failures, report)
    return report


async def run(
    dag: DAG,
    *,
    limit: int | trio.CapacityLimiter | None = None,
    resources: Mapping[str, float] | None = None,
    policy: Policy = "fifo",
    strategy: Strategy = "immediate",
    on_failure: OnFailure = "skip",
    targets: Iterable[Handle[Any] | str] | None = None,
    check: bool = True,
    on_event: Callable[[Event], None] | None = None,
    cache: CacheStore | None = None,
    executors: Mapping[str, Executor | tuple[Executor, int]] | None = None,
) -> RunReport:
    """Run every task of *dag* (or only *targets* and what they need); return the report.

    Checks every option and validates the DAG before any task starts, then
    starts each task as soon as its dependencies allow, within ``limit`` and
    the ``resources``, in the order ``policy`` and ``strategy`` say, in a
    nursery of its own. It returns once no task of the run is still
    running, also when it raises: structured concurrency holds, and a task
    in a worker thread is waited for. Every task of the run ends in one
    final state (SUCCEEDED, FAILED, SKIPPED or CANCELLED); the
    :class:`RunReport` tells which, with outputs, errors and timings.
    Times are read on the Trio clock, so under
    ``trio.testing.MockClock(autojump_threshold=0)`` a run's sleeps, retry
    delays and timeouts take no real time. While the run is in
    progress, ``dag.add`` raises RuntimeError; running never changes the
    DAG, and one DAG may be run several times at once::

        report = await trio_dag.run(dag, limit=8, resources={"gpu": 2})
        print(report.summary())

    See the user guide, *Running*.

    Args:
      dag: The :class:`DAG` to run.
      limit: How many task bodies may run at once. ``None`` (default): no
        limit. An ``int`` >= 1. Or a ``trio.CapacityLimiter``, shared with
        other code (and other runs): each attempt holds one of its tokens
        while it runs. A call of a :func:`batched` function counts once,
        however many tasks it runs. Between attempts a task holds no slot.
      resources: ``{name: capacity}``: the resources tasks draw on with
        ``uses=``. A capacity is an ``int``, a ``float`` or a
        ``fractions.Fraction``, finite and >= 0. A ready task starts only
        once every amount it uses fits in what is free; ready tasks are
        considered in policy order, and one that does not fit sets aside
        the free amounts of what it waits for, so later tasks never starve
        it, and it never holds back tasks that need other resources (or
        none). Capacities and amounts are counted exactly, never in floats:
        a float counts as the shortest decimal that reads back as it, so
        tasks using ``0.1`` and ``0.2`` fit together in a capacity of
        ``0.3``, and what tasks give back always adds up to the capacity
        again. A resource that no task of the run uses warns
        :class:`NoEffectWarning`. Default ``None``: no resources.
      policy: Which ready task starts first when not all can:

        - ``"fifo"`` (default): in the order they became ready, ties by
          insertion order;
        - ``"lifo"``: the newest ready first, ties by reverse insertion
          order (depth first: finishes branches early, holds less in
          memory);
        - ``"priority"``: the HIGHER ``priority=`` of :meth:`DAG.add`
          first, ties as ``"fifo"``;
        - ``"critical_path"``: the task with the longest chain of ``cost=``
          from it to the end of the graph first, ties as ``"fifo"``;
        - ``"depth_first"``: the deeper task first, by dependency level (a
          task with no dependencies is level 0, any other one more than the
          deepest of its dependencies), ties in insertion order: in a
          pipeline of many items, each item goes through its steps before
          the next starts, so the first results arrive early;
        - a key function ``key(handle) -> sortable``: the SMALLER key
          first, ties as ``"fifo"``. It is called once per task of the
          run, before any task starts, and must be a plain (not async)
          function.

        A run whose policy ignores ``priority=`` warns
        :class:`NoEffectWarning` when tasks set it. With ``limit=1`` the
        start order is fully determined.
      strategy: When ready tasks may start. ``"immediate"`` (default):
        as soon as a slot is free. ``"waves"``: no task of wave *k + 1*
        (see :meth:`DAG.waves`) starts before every task of wave *k* of
        the run has ended. ``trio_dag.Threshold(n)``: in groups of at
        least *n* ready tasks, or fewer when no more can become ready.
      on_failure: What a failure does to the rest of the run. ``"skip"``
        (default): the tasks that depend on the failed one (by a handle or
        ``after=``) end SKIPPED without running, and so do their own
        dependents; an ``all_done`` task still runs once its dependencies
        have ended; all other tasks go on. ``"fail_fast"``: the first
        failure stops the run: running tasks are cancelled, nothing new
        starts except ``all_done`` tasks (teardown) whose dependencies have
        all ended, and every other task that had not ended ends CANCELLED.
      targets: The tasks to run, as handles or names (or one of them):
        only they and the tasks they depend on, directly or not, run; the
        report gives the others the state PENDING. Default ``None``: every
        task.
      check: When True (default), a run in which a task FAILED raises
        :class:`RunFailedError` once it has ended; its ``.report`` is the
        report. When False, a run with FAILED tasks returns its report too.
      on_event: A plain callable (not async) called with every event of
        the run (:mod:`trio_dag.events`), in the event loop, as it
        happens: for progress bars and logs. It must not block. If it
        raises an ``Exception``, the run stops as under ``"fail_fast"``
        and raises :class:`CallbackError` once it has ended; a
        ``BaseException`` it raises (KeyboardInterrupt) stops everything
        and propagates. A stop asked while it runs (its own error, or
        :meth:`Run.cancel`) is deferred until it returns, so the events of
        one moment (a failure and the skips it causes) are all told
        first. Default ``None``.
      cache: Where the results of the tasks added with ``cache=`` are
        looked up and stored: a :class:`Cache` (a SQLite file), a
        :class:`MemoryCache`, or any object with the :class:`CacheStore`
        methods. A cached task whose key the cache holds does not run: it
        ends CACHED with the stored output. Results are stored as tasks
        return, and ``flush()`` is called at the run's end when the store
        has it; the run never closes the store. Default ``None``: nothing
        is cached.
      executors: ``{name: executor}``: where the tasks whose ``run_in=``
        names an executor run their bodies. An executor is any object with
        ``submit(fn, /, *args, **kwargs)`` returning a
        ``concurrent.futures``-style future (:class:`Executor`): a
        ``ProcessPoolExecutor``, a ``distributed.Client``. ``"process"``
        needs no entry: unless mapped here it is trio-parallel's worker
        processes, started for the run and shut down as it ends. A task's
        function must pickle (it is defined at module level). An entry
        ``(executor, n)`` also says the executor runs *n* bodies at once:
        the run starts no more of its tasks at once (for ``"process"``,
        trio-parallel's default limiter says it), the others wait among the
        ready tasks in policy order. The run never shuts an executor down.
        Default ``None``: only ``"process"``. See the user guide,
        *Executors*.

    Returns:
      The :class:`RunReport` of the run.

    Raises:
      TypeError: An option has the wrong type (such as a ``limit`` that is
        not an ``int``, an async ``on_event`` or key function, or a
        ``cache`` without the :class:`CacheStore` methods), or *dag*
        is not a :class:`DAG`. Raised before anything starts.
      ValueError: An option has a wrong value (an unknown ``policy``,
        ``strategy`` or ``on_failure``, ``limit < 1``, a negative or
        infinite capacity). Raised before anything starts.
      UnknownDependencyError: An ``after=`` name or a name in ``targets``
        matches no task; before anything starts.
      CycleError: The tasks depend on each other in a loop; before anything
        starts.
      ResourceError: A task of the run uses a resource the run does not
        provide, or more than its whole capacity; before anything starts.
      ForeignHandleError: ``targets`` holds a handle of another DAG.
      CallbackError: A policy key function raised, or returned keys that
        cannot be compared (before anything starts), or ``on_event`` raised
        (after the run, which stopped as under ``"fail_fast"``). The
        callback's exception is ``__cause__``.
      CacheFileError: ``cache=`` is a :class:`Cache` that was closed;
        before anything starts.
      ExecutorError: A task's ``run_in=`` names an executor that
        ``executors=`` does not map, or a task with an executor has a
        function that cannot be pickled (a lambda, a local function);
        before anything starts. An ``executors=`` entry without ``submit``
        is a TypeError, a capacity that is not an int >= 1 a ValueError.
      RunFailedError: ``check=True`` and at least one task FAILED: an
        ``ExceptionGroup`` of one :class:`TaskFailedError` per failed task,
        each with the task's exception as ``__cause__``.
      BaseException: A task raised a ``BaseException`` that is not an
        ``Exception`` (KeyboardInterrupt, SystemExit, your own): it is
        never retried, every other task is cancelled and awaited, and the
        exception propagates as it is, not inside an exception group.

    When the caller's cancel scope is cancelled, the run stops everything,
    ``all_done`` tasks included, waits for its tasks to end, and lets
    ``trio.Cancelled`` propagate.

    Warns:
      NoEffectWarning: Before any task starts, once for each setting that
        does nothing, naming the tasks: ``priority=`` on tasks while the
        policy is not ``"priority"``; a resource given to ``resources=``
        that no task of the run uses (when the run has tasks; those left
        out by ``targets=`` do not count); a task with a tag named like a
        resource of the run but no ``uses=`` of it; tasks with ``cache=``
        while the run has no ``cache=``, or a ``cache=`` while no task of
        the run asks for it. ``run_sync`` and
        ``open_run`` warn the same. Silence them with
        ``warnings.filterwarnings("ignore", category=trio_dag.NoEffectWarning)``.
    """
    engine = _engine(
        dag,
        limit=limit,
        resources=resources,
        policy=policy,
        strategy=strategy,
        on_failure=on_failure,
        targets=targets,
        on_event=on_event,
        stream=None,
        cache=cache,
        executors=executors,
    )
    engine.run = Run(engine, None)
    with dag._running():
        report = await engine.execute()
    return _checked(report, check)


def run_sync(dag: DAG, **options: Any) -> RunReport:
    """Run *dag* from synchronous code: ``trio.run(trio_dag.run, dag, **options)``.

    Starts a Trio event loop for the run, so it cannot be called from
    inside one (Trio raises RuntimeError); in async code, await :func:`run`.
    Runs on the real clock::

        report = trio_dag.run_sync(dag, limit=4, on_failure="fail_fast")

    Args:
      dag: The :class:`DAG` to run.
      **options: The keyword options of :func:`run`, with the same
        defaults: ``limit``, ``resources``, ``policy``, ``strategy``,
        ``on_failure``, ``targets``, ``check``, ``on_event``, ``cache`` and
        ``executors``.

    Returns:
      The :class:`RunReport` of the run.

    Raises:
      TypeError: An option that :func:`run` does not take.

    Everything :func:`run` raises is raised here too: the errors of the
    options and the DAG, :class:`RunFailedError` when a task FAILED and
    ``check=True``, :class:`CallbackError`, and a ``BaseException`` a task
    raised.
    """
    return trio.run(partial(run, dag, **options))


@final
class Run:
    """A run in progress, as :func:`open_run` gives it, and as
    :func:`current_run` gives it inside a task of any run.

    Iterate :meth:`events` to watch it (:func:`open_run`'s only), call
    :meth:`cancel` to stop it, and read :attr:`report` once it has ended.
    Made by the run functions only.
    """

    def __init__(self, engine: Engine, receive: trio.MemoryReceiveChannel[Event] | None) -> None:
        self._engine = engine
        self._receive = receive
        self._iterated = False
        # Trio's thread (a Run is made in it): run.add from another goes through it.
        self._thread = get_ident()
        if _compiled_add is not None:
            _install_compiled_add()
        # run.counts makes a new RunCounts only when the counters changed.
        self._tally: tuple[int, ...] = ()
        self._counts: RunCounts | None = None
        # run.add's compiled common call (_growth makes it at the first add).
        self._grower: Any = None

    def events(self) -> AsyncIterator[Event]:
        """Every event of the run, from its start, in the order they happened.

        An async iterator: ``async for event in run.events():``. It yields
        each :class:`~trio_dag.events.TaskStarted`,
        :class:`~trio_dag.events.TaskRetrying` and
        :class:`~trio_dag.events.TaskFinished` and ends when the run ends,
        after the last event. Events are buffered without bound, so a slow
        reader never holds the run back and never misses an event, even
        one that happened before it started reading. Each result can be
        used as soon as its task's :class:`~trio_dag.events.TaskFinished`
        arrives, while the rest of the run goes on::

            async with trio_dag.open_run(dag) as run:
                async for event in run.events():
                    if isinstance(event, trio_dag.events.TaskFinished):
                        print(event.task.name, event.state, event.outcome)

        When results arrive depends on the run's ``policy``. Under
        ``"fifo"`` a task that became ready earlier starts earlier, so in a
        pipeline of many items, each going through several steps, the
        first item's last step runs only after every item's first step;
        ``policy="lifo"`` (depth first) takes each item through its steps
        before starting the next. Calling :meth:`cancel` from the loop
        stops the run at once; the events of the tasks it cancels still
        follow.

        Raises:
          RuntimeError: The events were asked for before: they may be
            iterated once. Or the run was started by :func:`run` or
            :func:`run_sync` (this :class:`Run` came from
            :func:`current_run`): only :func:`open_run` streams events.
        """
        if self._receive is None:
            raise RuntimeError(
                "run.events() streams the events of open_run() only; this run was started "
                "by run() or run_sync(): pass on_event= to hear its events"
            )
        if self._iterated:
            raise RuntimeError("run.events() may be iterated only once")
        self._iterated = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        assert self._receive is not None
        async with self._receive:
            async for event in self._receive:
                yield event

    def add(self, fn: Callable[..., Any], /, *args: Any, **options: Any) -> Handle[Any]:
        """Add a task to the run while it goes on; return its :class:`Handle`.

        Exactly :meth:`DAG.add`'s arguments, options, checks and errors
        (bad input is refused before anything is recorded), from a task's
        body (``trio_dag.current_run().add(...)``, async, inline or in a
        worker thread) or from the ``async with`` block of :func:`open_run`
        while the run has tasks that have not ended::

            async def split(path):
                run = trio_dag.current_run()
                return [run.add(embed, chunk) for chunk in chunks_of(path)]

        The new task may depend on any task of the run, ended or not: on
        one that SUCCEEDED it gets the output at once; on one that FAILED,
        was SKIPPED or CANCELLED it ends SKIPPED as it is added (or, with
        ``trigger="all_done"``, runs with its outcome). A name in
        ``after=`` must be taken already. Its ``uses`` are counted against
        the run's ``resources`` (ResourceError as before a run), and it
        starts in the run's policy order (see the guide, *Adding tasks
        while running*, for its rank under ``"critical_path"``). The DAG
        itself does not change: the task belongs to the run, and its
        handle's ``dag`` is a private fork of the DAG. The report covers
        it, and listeners hear a :class:`~trio_dag.events.TaskAdded`.

        A task that returns handles of its run (or a list, tuple or dict
        holding them) joins them: its output becomes the same value with
        each handle replaced by that task's output, once they have all
        ended, and its dependents wait until then. Tasks of a
        :func:`batched` function join batches as the DAG's do. See the
        guide, *Adding tasks while running*.

        Raises:
          RuntimeError: The run has ended; or it runs with
            ``strategy="waves"``.
          TypeError: The run's policy is a key function (it ranks the
            tasks before the run starts); and as :meth:`DAG.add`.
          ValueError: A dependency that ``targets=`` left out of the run;
            and as :meth:`DAG.add`.
          UnknownDependencyError: An ``after=`` name that no task has.
          ResourceError: ``uses=`` of a resource the run lacks, or more
            than its capacity.
          ForeignHandleError: A handle of another DAG (or run).
          ExecutorError: ``run_in=`` names an executor the run does not
            have (``"process"`` or a name of its ``executors=``).
        """
        grower = self._grower
        if grower is not None and type(grower) is not _grower_tried:
            # The twin's Grower (the compiled one has been offered the call
            # already, in _core.run_add, and declined it: not asked twice).
            handle = grower.add(fn, args, options)
            if handle is not None:
                return handle  # type: ignore[no-any-return]
        engine = self._engine
        slot = _CURRENT.get(None)
        parent = slot[1] if slot is not None and slot[0] is engine.snap else -1
        if get_ident() == self._thread:
            growth = engine.growth
            if growth is not None and parent >= 0 and engine.report is None:
                # The common call: from a body, once the run has grown.
                return growth.add(fn, args, options, parent)
            return engine.add(fn, args, options, parent, parent < 0)  # type: ignore[no-any-return]
        # From a worker thread: the run is changed in Trio's thread only.
        return trio.from_thread.run_sync(engine.add, fn, args, options, parent, True)

    def cancel(self) -> None:
        """Stop the run: cancel every running task and start nothing more.

        As when the caller's scope is cancelled, ``all_done`` (teardown)
        tasks are stopped too. Tasks that have ended keep their results; the
        others end CANCELLED. Leaving the ``async with`` block then waits for
        the cancelled tasks to end (a task in a worker thread, until its
        function returns); when no task FAILED it raises nothing, even with
        ``check=True``, and :attr:`report` says ``ok`` is False.

        Called from an ``on_event`` callback, the stop is deferred until the
        callback returns and the events of that moment (a failure and the
        skips it causes) have all been told. Calling it again, or once the
        run has ended, does nothing.
        """
        self._engine.cancel()

    @property
    def counts(self) -> RunCounts:
        """How many tasks are pending, ready, running and in each final state, now.

        A :class:`RunCounts`, read in constant time from the counters the
        run keeps (well under a microsecond), so a progress display may
        read it as often as it likes::

            counts = run.counts
            print(f"{counts.total - counts.pending - counts.ready - counts.running}/{counts.total}")

        Once the run has ended, every task is counted in its final state.
        """
        tally = tally_of(self._engine)
        if tally != self._tally or self._counts is None:
            self._tally = tally
            self._counts = counts_of(tally)
        return self._counts

    async def result(self, task: Handle[T] | str) -> T:
        """Wait until *task* has ended; return its output, or raise what ``report[task]`` raises.

        From the :func:`open_run` block it just waits. From inside a task
        of the run (through :func:`current_run`), the waiting task gives
        back its ``limit`` slot while it waits, so another task may start,
        and takes one again before it goes on: when none is free it waits
        for one, before the tasks that have not started (so ``limit=1``
        with a task that awaits another, independent one finishes). It does not give back
        its ``uses``: a task holds its resources for its whole attempt, as
        its body may be using them while it waits. A ``timeout=`` of the
        waiting task counts the wait, and cancelling it (``fail_fast``,
        :meth:`cancel_task`) ends the wait.

        Args:
          task: A handle or a task name of the run.

        Returns:
          The task's output (SUCCEEDED or CACHED).

        Raises:
          TaskFailedError: It FAILED; its exception is ``__cause__``.
          TaskSkippedError: It was SKIPPED.
          TaskCancelledError: It was CANCELLED.
          KeyError: It is not part of the run (``targets=`` left it out, or
            no task has that name).
          ForeignHandleError: *task* is a handle of another DAG.
          RuntimeError: Awaited from inside a task, *task* is that task
            itself, depends on it (directly or not), or awaits its result:
            the wait would never end. Raised at once.
        """
        control = control_of(self._engine)
        return await control.result(control.index(task, "run.result()"))  # type: ignore[no-any-return]

    def cancel_task(self, task: Handle[Any] | str) -> None:
        """Cancel one task, whatever it is doing; the rest of the run goes on.

        A task that has not started (pending, ready, waiting for a slot or
        a resource, or waiting to retry) ends CANCELLED at once; a running
        one is cancelled as Trio cancels (a body in a worker thread ends
        when its function returns, and its result is discarded). Its
        dependents with the default trigger end SKIPPED, and ``all_done``
        ones run once their dependencies have ended, as after any task
        that did not succeed. Nothing else is stopped: this is not a
        failure, so ``on_failure="fail_fast"`` does not stop the run for
        it, and ``check=True`` raises nothing for it (the report's ``ok``
        is False, as for any CANCELLED task).

        A task that has ended already, or a run that has ended, is left as
        it is: nothing happens. A running body that returns before the
        cancellation reaches it (it did not reach a checkpoint) keeps its
        result and ends SUCCEEDED.

        Args:
          task: A handle or a task name of the run.

        Raises:
          KeyError: It is not part of the run.
          ForeignHandleError: *task* is a handle of another DAG.
          RuntimeError: It is the opener of a :func:`batched` call that
            serves other tasks too and holds their ``uses=``, or that waits
            for more tasks (``max_delay``). Any other task of a batch is
            cancelled alone: before its call it leaves the batch, during
            the call it ends CANCELLED at once and its result is dropped
            (the call goes on for the others; a call left serving no task
            is cancelled).
        """
        control = control_of(self._engine)
        control.cancel_task(control.index(task, "run.cancel_task()"))

    def as_completed(
        self, handles: Iterable[Handle[Any] | str] | None = None
    ) -> AsyncIterator[tuple[Handle[Any], outcome.Outcome[Any]]]:
        """Each task as it ends: ``(handle, outcome)`` pairs, in the order the tasks end.

        An async iterator; ``outcome`` is what :meth:`RunReport.outcome`
        gives (``.unwrap()`` returns the output or raises): an
        ``outcome.Error`` of its exception for a FAILED task, of a
        :class:`TaskSkippedError` or :class:`TaskCancelledError` for the
        others that did not succeed. Tasks that ended before the iteration
        began come first, in the order they ended::

            async with trio_dag.open_run(dag, policy="depth_first") as run:
                async for handle, result in run.as_completed():
                    print(handle.name, result.unwrap())

        Works from the :func:`open_run` block and from inside a task. Each
        call gives a new iterator; several may run at once.

        Args:
          handles: The tasks to wait for, as handles or names; it ends once
            each has been yielded. ``None`` (default): every task of the
            run; it ends when the run has no task left to end.

        Raises:
          KeyError: A task is not part of the run (when called).
          ForeignHandleError: A handle of another DAG (when called).
        """
        control = control_of(self._engine)
        wanted = None
        if handles is not None:
            if isinstance(handles, (str, Handle)):
                handles = [handles]
            wanted = {control.index(h, "run.as_completed()") for h in handles}
        return Completed(control, wanted)

    @property
    def report(self) -> RunReport:
        """The :class:`RunReport` of the run, once it has ended.

        Available after the ``async with`` block, and inside it once
        :meth:`events` is exhausted. When the block raises
        :class:`RunFailedError`, the same report is its ``.report``.

        Raises:
          RuntimeError: The run has not ended yet.
        """
        if self._engine.report is None:
            raise RuntimeError("the run has not ended yet; read run.report after the block")
        return self._engine.report


@asynccontextmanager
async def open_run(
    dag: DAG,
    *,
    limit: int | trio.CapacityLimiter | None = None,
    resources: Mapping[str, float] | None = None,
    policy: Policy = "fifo",
    strategy: Strategy = "immediate",
    on_failure: OnFailure = "skip",
    targets: Iterable[Handle[Any] | str] | None = None,
    check: bool = True,
    on_event: Callable[[Event], None] | None = None,
    cache: CacheStore | None = None,
    executors: Mapping[str, Executor | tuple[Executor, int]] | None = None,
) -> AsyncIterator[Run]:
    """Start a run in the background; give a :class:`Run` to watch it or stop it.

    An async context manager: the run starts as the block is entered, with
    the options of :func:`run`, and the block gets a :class:`Run` whose
    :meth:`Run.events` streams every event as it happens, so outputs can be
    used before the whole run has ended, and whose :meth:`Run.cancel` stops
    it::

        async with trio_dag.open_run(dag, limit=4) as run:
            async for event in run.events():
                print(event)
        print(run.report.summary())

    Leaving the block waits for the run to end. If the block raises, the
    run is cancelled first (as by :meth:`Run.cancel`) and the block's
    exception propagates as it is, not inside an exception group. Until the
    block is left, the DAG counts as running: ``dag.add`` raises
    RuntimeError. See the user guide, *Events and streaming*.

    Each option is the one of :func:`run`, with the same default, values
    and errors:

    Args:
      dag: The :class:`DAG` to run.
      limit: How many task bodies may run at once: ``None`` (default, no
        limit), an ``int`` >= 1 or a ``trio.CapacityLimiter``.
      resources: ``{name: capacity}`` of the resources tasks use with
        ``uses=``. Default ``None``.
      policy: Which ready task starts first: ``"fifo"`` (default),
        ``"lifo"``, ``"priority"`` (higher first), ``"critical_path"``,
        ``"depth_first"``, or
        a key function (smaller keys first).
      strategy: When ready tasks start: ``"immediate"`` (default),
        ``"waves"`` or a :class:`Threshold`.
      on_failure: ``"skip"`` (default) or ``"fail_fast"``.
      targets: Run only these tasks and what they depend on. Default
        ``None``: every task.
      check: When True (default), leaving the block raises
        :class:`RunFailedError` if a task FAILED.
      on_event: A plain callable given every event as it happens; it
        hears each event before :meth:`Run.events` yields it. Default
        ``None``.
      cache: Where cached tasks' results are looked up and stored (a
        :class:`Cache`, a :class:`MemoryCache` or another
        :class:`CacheStore`). Default ``None``.
      executors: ``{name: executor}`` for the tasks whose ``run_in=`` names
        one (``"process"`` needs no entry). Default ``None``.

    Yields:
      The :class:`Run`.

    Raises:
      RunFailedError: On leaving the block, as :func:`run` raises it.
      CallbackError: On leaving the block, when ``on_event`` raised.

    The errors of the options and of the DAG (TypeError, ValueError,
    :class:`UnknownDependencyError`, :class:`CycleError`,
    :class:`ResourceError`, :class:`ExecutorError`, a :class:`CallbackError`
    from a key function)
    are raised on entering the block, before anything starts; a
    ``BaseException`` a task raises propagates from the block as from
    :func:`run`.
    """
    send, receive = trio.open_memory_channel[Event](math.inf)
    engine = _engine(
        dag,
        limit=limit,
        resources=resources,
        policy=policy,
        strategy=strategy,
        on_failure=on_failure,
        targets=targets,
        on_event=on_event,
        stream=send.send_nowait,
        cache=cache,
        executors=executors,
    )
    handle = Run(engine, receive)
    engine.run = handle
    failure: list[BaseException] = []
    raised: list[BaseException] = []

    async def background() -> None:
        try:
            await engine.execute()
        except BaseException as exc:
            if not isinstance(exc, Exception) and fatal(exc) is None:
                raise  # cancellation (a Cancelled or a group of them), for the scopes
            failure.append(exc)  # raised below, outside the nursery
        finally:
            send.close()

    try:
        with dag._running():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(background)
                try:
                    yield handle
                except BaseException as error:
                    raised.append(error)
                    engine.cancel()
                    raise
    except BaseExceptionGroup as group:
        # What the block raised comes out as it was, not inside the group
        # of this context manager's own nursery; so does a KeyboardInterrupt
        # (or other BaseException) Trio delivered to this task meanwhile.
        if raised and len(group.exceptions) == 1 and group.exceptions[0] is raised[0]:
            _reraise(raised.pop())
        delivered = fatal(group)
        if delivered is not None:
            _reraise(delivered)
        raise
    if failure:
        raise failure[0]
    assert engine.report is not None
    _checked(engine.report, check)


# The compiled core's module also has Run.add without a Python frame (see
# _core.run_add): the common call from a body is its Grower's, every other
# goes to the add above, as it came. Installed at the first Run(), as
# DAG.add's (see _dag), and only when the compiled backend was chosen.
_compiled_add: Any = _native.BACKEND.core if _native.BACKEND.name == "cython" else None


# The Grower type whose adds _core.run_add offers before it calls the add
# above (once it is installed): the add above does not offer them again.
_grower_tried: Any = None


def _install_compiled_add() -> None:
    global _compiled_add, _grower_tried
    core, _compiled_add = _compiled_add, None
    _native.install_compiled_add(Run, core.run_add, core.set_general_run_add)
    _grower_tried = core.Grower

"""Executors: task bodies that run elsewhere, on an executor the run names.

A task added with ``run_in="process"``, or with any other name that is not a
built-in way of calling a body (None, ``"async"``, ``"inline"``,
``"thread"``), has its sync body run on the executor the run maps that name
to: ``run(dag, executors={"cluster": client})``. An executor is anything with
``submit(fn, /, *args, **kwargs)`` returning a future with
``add_done_callback``, ``cancel`` and ``result`` (the ``concurrent.futures``
protocol, which ``distributed.Client`` follows). ``"process"``, unless the
run maps it, is trio-parallel's worker processes, in a worker context the run
opens for itself and closes as it ends.

:func:`check_executors` checks a run's executors against its tasks before
anything starts and gives the :class:`Executors` the engine calls bodies
through. Awaiting a future costs no thread: its done-callback wakes the
waiting task through the run's ``TrioToken``. A cancelled task cancels its
future and does not wait for a body already running elsewhere (it is
abandoned, its result discarded); trio-parallel's workers are killed instead.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ._batching import Batched
from ._dask import DaskFutures, is_dask_client
from ._errors import ExecutorError, WorkerDiedError, describe
from ._names import fn_name
from ._options import BUILT_IN, option_kinds

if TYPE_CHECKING:
    import trio_parallel

    from ._snapshot import Snapshot

__all__ = [
    "PROCESS",
    "Executor",
    "Executors",
    "check_executors",
    "executors_of",
    "not_pickled",
    "open_workers",
    "unpicklable",
]

PROCESS: Final = "process"
# How many task names an error shows before it counts the rest.
_SHOWN: Final = 5


class Future(Protocol):
    """What an executor's ``submit`` returns (``concurrent.futures.Future``)."""

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None:
        """Call *fn* with the future once it is done, in any thread."""
        ...

    def cancel(self) -> bool:
        """Cancel the call if it has not started."""
        ...

    def result(self) -> Any:
        """The call's result, or raise its exception (asked only once done)."""
        ...


class Executor(Protocol):
    """What ``run(..., executors=)`` maps names to: the ``concurrent.futures`` protocol.

    Any object with ``submit(fn, /, *args, **kwargs)`` returning a future
    with ``add_done_callback``, ``cancel`` and ``result`` will do:
    ``concurrent.futures.ProcessPoolExecutor`` and ``ThreadPoolExecutor``,
    ``distributed.Client``. A task's body is submitted once per attempt;
    the run waits for the future without a thread (its done-callback wakes
    the run), and a task cancelled meanwhile calls ``future.cancel()`` and
    does not wait for a call already running.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Start ``fn(*args, **kwargs)`` and return the future of its result."""
        ...


def _call_batched(fn: Batched[Any, Any], items: list[Any]) -> Any:
    """Call the list-taking function of the batched *fn* with *items*, where it runs.

    Submitted in place of ``fn.fn``, which cannot be pickled by reference:
    its module's name for it is the :class:`Batched`.
    """
    return fn.fn(items)


def _in_worker(job: bytes) -> bytes:
    """Run a body in a worker process: *job* is its ``(fn, args, kwargs)`` pickled;
    return its output pickled, or say why it cannot be."""
    fn, args, kwargs = pickle.loads(job)
    result = fn(*args, **kwargs)
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(
            f"the output of {fn_name(_written(fn, args))} cannot be pickled, so it cannot "
            f"come back from the worker process ({describe(exc)}); return data that pickle "
            "can copy, such as built-in types, arrays or instances of module-level classes"
        ) from None


def _written(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[..., Any]:
    """The function a user wrote behind *fn* (a batched function behind :func:`_call_batched`)."""
    return args[0] if fn is _call_batched else fn


class _Futures:
    """An executor of the ``concurrent.futures`` protocol, awaited without a thread."""

    __slots__ = ("executor",)

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def call(
        self, task: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        future = self.executor.submit(fn, *args, **kwargs)
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake(_: object) -> None:
            # Called in whichever thread ends the future (or here, at once,
            # when it has ended already).
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # the run is gone: nobody waits for the result

        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            # Cancelled (or a KeyboardInterrupt): a body already running
            # elsewhere is not waited for but abandoned, its result discarded.
            future.cancel()
            raise
        return future.result()


class _Processes:
    """trio-parallel's worker processes, in a worker context of one run.

    The context is opened by the first call (so a run that never sends a
    body to a process, or adds its first such task while running, imports
    and starts nothing before that) and closed by :meth:`aclose` as the run
    ends, so no worker outlives the run.
    """

    __slots__ = ("_opened", "_opening", "context")

    def __init__(self) -> None:
        self.context: trio_parallel.WorkerContext | None = None
        self._opened: Any = None  # the context manager, to exit as the run ends
        self._opening = trio.Lock()

    async def _open(self) -> trio_parallel.WorkerContext:
        async with self._opening:
            if self.context is None:
                # Imported only by runs that use it: it starts nothing, but takes
                # time to import.
                import trio_parallel

                opened = trio_parallel.open_worker_context()
                self.context = await opened.__aenter__()
                self._opened = opened
            return self.context

    def capacity(self) -> int | None:
        """How many bodies run at once: the total of trio-parallel's default
        limiter in this Trio run (the CPU count unless changed), or None
        when it is unbounded or there is no Trio run."""
        import trio_parallel

        try:
            tokens = trio_parallel.current_default_worker_limiter().total_tokens
        except RuntimeError:
            return None  # no Trio run: nothing to read it from
        return None if math.isinf(tokens) else max(1, int(tokens))

    async def aclose(self) -> None:
        """Shut the run's worker processes down, if it started any."""
        opened, self._opened, self.context = self._opened, None, None
        if opened is None:
            return
        import trio_parallel

        try:
            await opened.__aexit__(None, None, None)
        except trio_parallel.BrokenWorkerError:
            # An idle worker that would not exit in time was killed; every
            # task has ended by now, so there is no one to tell.
            pass

    async def call(
        self, task: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        import trio_parallel

        context = self.context or await self._open()
        # Pickled here, with the standard pickle the run's check used, so that
        # arguments that cannot cross fail with a message that says so.
        try:
            job = pickle.dumps((fn, args, dict(kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"the arguments of task {task!r} cannot be pickled, so they cannot be sent "
                f"to a worker process ({describe(exc)}); pass data that pickle can copy, "
                "such as built-in types, arrays or instances of module-level classes"
            ) from None
        try:
            data = await context.run_sync(_in_worker, job, kill_on_cancel=True)
        except trio_parallel.BrokenWorkerError as exc:
            raise WorkerDiedError(task, _exit_code(exc)) from None
        return pickle.loads(data)


def _exit_code(exc: trio_parallel.BrokenWorkerError) -> int | None:
    # trio-parallel gives the worker's multiprocessing.Process as its last argument.
    process = exc.args[-1] if exc.args else None
    code = getattr(process, "exitcode", None)
    return code if isinstance(code, int) else None


class Executors:
    """The executors of one run, by name; made by :func:`check_executors`."""

    __slots__ = ("_by_name", "_capacities", "_processes", "users")

    def __init__(
        self,
        by_name: dict[str, _Futures | _Processes | DaskFutures],
        processes: _Processes | None,
        capacities: Mapping[str, int] | None = None,
    ):
        self._by_name = by_name
        self._processes = processes
        self._capacities = capacities or {}
        # The run's tasks on an executor, by its name, in task order: what
        # check_executors found (admission counts their slots from it).
        self.users: dict[str, list[int]] = {}

    def capacity(self, name: str) -> int | None:
        """How many bodies executor *name* runs at once, when that is known:
        the capacity given with it (``executors={name: (executor, n)}``), or
        for trio-parallel's ``"process"`` its default limiter's total; else None.

        The run starts no more of its tasks on the executor than this at
        once (see ``_admission``): the others wait among the ready tasks.
        """
        capacity = self._capacities.get(name)
        if capacity is None and self._processes is not None and name == PROCESS:
            capacity = self._processes.capacity()
        return capacity

    async def call(
        self,
        name: str,
        task: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        on_suspend: Callable[[], None],
    ) -> Any:
        """Run task *task*'s ``fn(*args, **kwargs)`` on the executor named *name*; return
        its result.

        *on_suspend* is called first: the calling worker is about to wait.
        A batched *fn* is called with its list of items, ``args == (items,)``.
        """
        executor = self._by_name[name]
        on_suspend()
        if isinstance(fn, Batched):
            return await executor.call(task, _call_batched, (fn, *args), {})
        return await executor.call(task, fn, args, kwargs)


@asynccontextmanager
async def open_workers(executors: Executors | None) -> AsyncIterator[None]:
    """Close the worker processes a run's tasks started, as the run ends.

    trio-parallel's workers (``"process"``, unless the run maps it) start
    in a worker context of the run's own when its first task needs one; they
    are reused by the run's tasks and shut down here, so none outlives it.
    """
    try:
        yield
    finally:
        if executors is not None and executors._processes is not None:
            await executors._processes.aclose()


def _task_list(snap: Snapshot, tasks: Sequence[int]) -> str:
    names = [repr(snap.name(i)) for i in tasks[:_SHOWN]]
    more = len(tasks) - _SHOWN
    if more > 0:
        names.append(f"{more} more")
    return ("task " if len(tasks) == 1 else "tasks ") + ", ".join(names)


def _check_mapping(executors: object) -> tuple[dict[str, Any], dict[str, int]]:
    """The executors of *executors* (``executors=``) by name, and the capacities given."""
    if executors is None:
        return {}, {}
    if not isinstance(executors, Mapping):
        raise TypeError(
            "executors must be a mapping {name: executor}, such as "
            f"{{'cluster': distributed.Client(...)}}, not {type(executors).__name__}"
        )
    by_name: dict[str, Any] = {}
    capacities: dict[str, int] = {}
    for name, executor in executors.items():
        if not isinstance(name, str) or name in BUILT_IN or not name:
            raise TypeError(
                f"executors= keys are the names tasks give to run_in=, non-empty str other "
                f"than 'async', 'inline' and 'thread'; got {name!r}"
            )
        if isinstance(executor, tuple):
            executor, capacity = _with_capacity(name, executor)
            capacities[name] = capacity
        if not callable(getattr(executor, "submit", None)):
            raise TypeError(
                f"executor {name!r} has no submit method: an executor is an object with "
                "submit(fn, /, *args, **kwargs) returning a future, such as a "
                "concurrent.futures.ProcessPoolExecutor or a distributed.Client; "
                f"got {executor!r}"
            )
        by_name[name] = executor
    return by_name, capacities


def _with_capacity(name: str, entry: tuple[Any, ...]) -> tuple[Any, int]:
    """An ``(executor, capacity)`` entry of ``executors=``, checked."""
    if len(entry) != 2:
        raise TypeError(
            f"executors= entry {name!r} is a tuple of {len(entry)}; give an executor, or "
            "(executor, capacity): the executor and how many bodies it runs at once"
        )
    executor, capacity = entry
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(
            f"executor {name!r}: its capacity (how many bodies it runs at once) must be "
            f"an int >= 1, got {capacity!r}"
        )
    return executor, capacity


def not_pickled(who: str, name: str, fn: Callable[..., Any], why: str | None) -> str:
    """The message of an :class:`ExecutorError` for *fn*, which cannot be
    pickled (*why*): *who* (``"task 'x' runs"``) on executor *name*."""
    return (
        f"{who} on executor {name!r}, which needs its function pickled, but {fn_name(fn)} "
        f"cannot be ({why}); define it at module level (not a lambda, a local "
        "function or a method of a local class), so that pickle finds it by name"
    )


def unpicklable(fn: Callable[..., Any]) -> str | None:
    """Why *fn* cannot be pickled (standard pickle, by reference), or None."""
    try:
        pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return describe(exc)
    return None


def _executor_users(snap: Snapshot) -> dict[str, list[int]]:
    """The tasks whose ``run_in`` names an executor, by that name, in task order.

    Reads only the tasks the snapshot notes.
    """
    opts = snap.columns.opts
    users: dict[str, list[int]] = {}
    # First the options' kinds: a run of many tasks with other options
    # (cache=, priority=) pays no Python loop per task.
    if all(o.run_in in BUILT_IN for o in option_kinds(islice(opts, snap.n))):
        return users
    last = on = None  # most noted tasks share their options with the one before
    for i in snap.with_notes:
        o = opts[i]
        if o is not last:
            last = o
            on = o.run_in if o.run_in not in BUILT_IN else None
        if on is not None:
            users.setdefault(on, []).append(i)
    return users


def check_executors(snap: Snapshot, members: Sequence[int] | None, executors: object) -> Executors:
    """Check *executors* (the run's ``executors=``) against the tasks of the run.

    Reads only the tasks the snapshot notes (``with_notes`` holds every task
    whose ``run_in`` names an executor), so a run without executor tasks
    pays for none. Returns the run's :class:`Executors` (see
    :func:`executors_of`), which start nothing until a task is sent to one.

    Raises TypeError for an ``executors=`` that is not a mapping of names
    to objects with ``submit``; :class:`ExecutorError` for a name no
    executor answers to, or a function that cannot be pickled, naming the
    tasks.
    """
    mapping, capacities = _check_mapping(executors)
    fns = snap.columns.fns
    users = _executor_users(snap)
    if members is not None and users:
        in_run = set(members)
        users = {k: kept for k, v in users.items() if (kept := [i for i in v if i in in_run])}
    if not users:
        return executors_of(mapping, capacities)
    for name, tasks in users.items():
        if name not in mapping and name != PROCESS:
            known = ", ".join(repr(k) for k in [PROCESS, *mapping])
            raise ExecutorError(
                name,
                [snap.name(i) for i in tasks],
                f"{_task_list(snap, tasks)} run{'s' if len(tasks) == 1 else ''} on executor "
                f"{name!r}, which the run does not provide; pass executors={{{name!r}: ...}} "
                f"to the run (it knows {known})",
            )
    why_of: dict[int, str | None] = {}
    for name, tasks in users.items():
        bad: list[int] = []
        why = None
        for i in tasks:
            fn = fns[i]
            key = id(fn)
            if key not in why_of:
                why_of[key] = unpicklable(fn)
            if why_of[key] is not None:
                bad.append(i)
                why = why or why_of[key]
        if bad:
            raise ExecutorError(
                name,
                [snap.name(i) for i in bad],
                not_pickled(
                    f"{_task_list(snap, bad)} run{'s' if len(bad) == 1 else ''}",
                    name,
                    fns[bad[0]],
                    why,
                ),
            )
    on = executors_of(mapping, capacities)
    on.users = users
    return on


def executors_of(
    mapping: Mapping[str, Any], capacities: Mapping[str, int] | None = None
) -> Executors:
    """Every executor of a run: each name it maps, and ``"process"``;
    *capacities*: how many bodies those given one run at once.

    Tasks added while the run goes on may use any of them, so the run holds
    all, not only the ones its first tasks use; nothing is started until a
    task is sent to it.
    """
    processes = None if PROCESS in mapping else _Processes()
    by_name: dict[str, _Futures | _Processes | DaskFutures] = {
        # A Dask client's own adapter: see _dask.py.
        name: (DaskFutures if is_dask_client(executor) else _Futures)(executor)
        for name, executor in mapping.items()
    }
    if processes is not None:
        by_name[PROCESS] = processes
    return Executors(by_name, processes, capacities)

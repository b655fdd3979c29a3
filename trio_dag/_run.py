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
from typing import TYPE_CHECKING, Any, Literal, NoReturn, final

import trio

from ._bodies import THREAD, fatal, kind_of
from ._dag import DAG
from ._errors import RunFailedError, TaskFailedError
from ._events import Event
from ._handle import Handle
from ._no_effect import warn_no_effect
from ._options import show_number
from ._policies import Policy, Strategy, check_policy, check_strategy, ready_keys

if TYPE_CHECKING:
    from ._engine import Engine
    from ._report import RunReport

__all__ = ["Run", "open_run", "run", "run_sync"]

OnFailure = Literal["skip", "fail_fast"]


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
) -> Engine:
    from ._engine import Engine

    _check_limit(limit)
    _check_resources(resources)
    check_policy(policy)
    check_strategy(strategy)
    if on_failure not in ("skip", "fail_fast"):
        raise ValueError(f"on_failure must be 'skip' or 'fail_fast', got {on_failure!r}")
    _check_on_event(on_event)
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
    )
    warn_no_effect(snap, members, policy, resources, engine.admission.used)
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
) -> RunReport:
    """Run every task of *dag* (or of ``targets`` and their dependencies) and report.

    Returns when nothing of the run is still running. With ``check=True``
    a run with failed tasks raises :class:`RunFailedError` (its ``.report``
    holds the report). See the package docs for each option. While it runs,
    ``dag.add`` raises RuntimeError.

    Resource capacities and ``uses`` amounts are counted exactly, never in
    floats: a float counts as the decimal its shortest repr shows, so
    ``0.1 + 0.2`` fits in a capacity of ``0.3`` and what tasks give back
    always adds up to the capacity again (SPEC asks for exact accounting;
    this rule for floats is ours).

    Warns:
        NoEffectWarning: before any task starts, once for each setting that
          does nothing, naming the tasks: ``priority=`` on tasks while the
          policy is not ``"priority"``; a resource given to ``resources=``
          that no task of the run uses (when the run has tasks; those left
          out by ``targets=`` do not count); a task with a tag named like a
          resource of the run but no ``uses=`` of it. ``run_sync`` and
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
    )
    with dag._running():
        report = await engine.execute()
    return _checked(report, check)


def run_sync(dag: DAG, **options: Any) -> RunReport:
    """``trio.run(trio_dag.run, dag, **options)``: run *dag* from synchronous code."""
    return trio.run(partial(run, dag, **options))


@final
class Run:
    """A run in progress, from :func:`open_run`.

    Iterate :meth:`events` to watch it, call :meth:`cancel` to stop it; read
    :attr:`report` after the ``async with`` block.
    """

    def __init__(self, engine: Engine, receive: trio.MemoryReceiveChannel[Event]) -> None:
        self._engine = engine
        self._receive = receive
        self._iterated = False

    def events(self) -> AsyncIterator[Event]:
        """Every event of the run from its start, in order; ends when the run ends.

        May be iterated once. Events are buffered without bound, so a slow
        reader never blocks the run and never misses one.
        """
        if self._iterated:
            raise RuntimeError("run.events() may be iterated only once")
        self._iterated = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        async with self._receive:
            async for event in self._receive:
                yield event

    def cancel(self) -> None:
        """Stop the run: running tasks are cancelled, nothing more starts.

        Finished tasks keep their results; the rest end CANCELLED. The
        ``async with`` block then returns the report (``ok`` is False).
        """
        self._engine.cancel()

    @property
    def report(self) -> RunReport:
        """The run's report; available once the run has ended."""
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
) -> AsyncIterator[Run]:
    """Start a run in the background and yield a :class:`Run` to watch or stop it.

    Leaving the block waits for the run to end (an exception in the block
    cancels it first); then ``check=True`` raises :class:`RunFailedError` if
    any task failed. Until the block is left the DAG counts as running:
    ``dag.add`` raises RuntimeError.
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
    )
    handle = Run(engine, receive)
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

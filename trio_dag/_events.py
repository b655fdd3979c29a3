"""Events of a run, the task states they report, and the per-task context.

Events are built only when someone listens (an ``on_event`` callback or
``run.events()``), so a run nobody watches pays nothing for them. An event
prints (``repr``) whatever the user's objects in it do: an exception or
output whose ``repr()`` raises is shown by what can be said of it instead.
"""

from __future__ import annotations

import contextvars
import enum
from typing import TYPE_CHECKING, Any, final

import attrs
import outcome

from ._errors import describe

if TYPE_CHECKING:
    from ._handle import Handle
    from ._run import Run

__all__ = [
    "Event",
    "TaskAdded",
    "TaskFinished",
    "TaskInfo",
    "TaskNotCached",
    "TaskRetrying",
    "TaskStarted",
    "TaskState",
    "current_run",
    "current_task",
]


class TaskState(enum.Enum):
    """The final state of a task, in a run's report and its events.

    Every task of a run ends in exactly one of ``SUCCEEDED``, ``CACHED``,
    ``FAILED``, ``SKIPPED`` and ``CANCELLED``; ``PENDING`` marks a task that
    ``targets=`` left out of the run (only :meth:`RunReport.state` says it).

    Attributes:
      PENDING: Not part of the run: ``targets=`` left it out.
      SUCCEEDED: Its body returned; the report holds its output.
      CACHED: It did not run: the run's cache held its result, which the
        report holds as its output. It counts as success everywhere
        (dependents, ``report.ok``).
      FAILED: Its last attempt raised (or timed out), with no retry left.
      SKIPPED: It never ran, because a dependency did not succeed (under
        the default ``trigger="all_succeeded"``).
      CANCELLED: The run was stopped (``on_failure="fail_fast"``,
        :meth:`Run.cancel`, a cancelled scope, KeyboardInterrupt, ...)
        before the task ended: while it ran, or before it started; or the
        task alone was cancelled by :meth:`Run.cancel_task`.
    """

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


def _shown(value: object) -> str:
    """``repr(value)``, or when that raises, what :func:`describe` says of an
    exception (its type and message) or the type of anything else.

    SPEC does not say; a progress callback that prints its events must not
    fail on a user's exception whose ``__repr__`` or ``__str__`` raises.
    """
    try:
        return repr(value)
    except Exception as exc:
        if isinstance(value, BaseException):
            text = describe(value)  # "Type: message", or "<...>" when str() raises too
            return text if text.startswith("<") else f"<{text}>"
        return f"<{type(value).__name__} object (repr() raised {type(exc).__name__})>"


def _outcome_shown(result: outcome.Outcome[Any]) -> str:
    # Outcome's own repr calls repr() on what it holds.
    if isinstance(result, outcome.Error):
        return f"Error({_shown(result.error)})"
    if isinstance(result, outcome.Value):
        return f"Value({_shown(result.value)})"
    return _shown(result)


@final
@attrs.frozen
class TaskStarted:
    """An attempt of a task started: told once per attempt.

    Attributes:
      task: The task's :class:`~trio_dag.Handle`.
      attempt: Which attempt: 1 for the first, 2 for the first retry, ...
      time: When it started, on the Trio clock (seconds).
      batch: The number (from 1) of the :func:`~trio_dag.batched` call that
        runs it, as :meth:`~trio_dag.RunReport.batch` gives it; None for a
        task whose function is not batched.
    """

    task: Handle[Any]
    attempt: int
    time: float
    batch: int | None = None


@final
@attrs.frozen
class TaskRetrying:
    """An attempt of a task failed, and the task will be tried again.

    Told after the failed attempt, before the wait; the next attempt is
    told by its :class:`TaskStarted`. An attempt after which no retry is
    left is told by the task's :class:`TaskFinished` instead.

    Attributes:
      task: The task's :class:`~trio_dag.Handle`.
      attempt: The attempt that failed (from 1).
      error: What it raised (a :class:`~trio_dag.TaskTimeoutError` when it
        timed out).
      delay: The seconds (Trio clock) to wait before the next attempt:
        ``retry_delay * retry_backoff ** (attempt - 1)``.
    """

    task: Handle[Any]
    attempt: int
    error: BaseException = attrs.field(repr=_shown)
    delay: float


@final
@attrs.frozen
class TaskFinished:
    """A task ended: told once per task of the run, whatever its final state.

    Also for tasks that end SKIPPED or CANCELLED without starting, and for
    CACHED tasks, which do not run: ``outcome`` holds the stored output.
    Use its output as soon as this event arrives: ``event.outcome.unwrap()``.

    Attributes:
      task: The task's :class:`~trio_dag.Handle`.
      state: Its final :class:`~trio_dag.TaskState`.
      time: When it ended, on the Trio clock (seconds).
      duration: From the start of its first attempt to its end, in
        seconds; 0.0 for a task that never started (CACHED ones too).
      outcome: ``outcome.Value(output)``, or ``outcome.Error`` of its
        exception, a :class:`~trio_dag.TaskSkippedError` or a
        :class:`~trio_dag.TaskCancelledError`: what an ``all_done``
        dependent receives, as :meth:`~trio_dag.RunReport.outcome` gives it.
    """

    task: Handle[Any]
    state: TaskState
    time: float
    duration: float
    outcome: outcome.Outcome[Any] = attrs.field(repr=_outcome_shown)


@final
@attrs.frozen
class TaskNotCached:
    """A task that asked for the cache (``cache=`` of :meth:`~trio_dag.DAG.add`)
    runs uncached this run, or its result is not stored; never a failure.

    Told before the task starts when its key cannot be made (an argument,
    or what its ``cache=`` function returns, cannot be hashed canonically;
    its ``cache=`` function raised; a dependency's output cannot be
    pickled; the store's ``lookup`` raised), or once it has returned an
    output that cannot be pickled (before its :class:`TaskFinished`), or
    when the store's ``store`` or ``flush`` raised while keeping its result
    (told then: after its :class:`TaskFinished`, or just before). The reason
    names the store's exception; an ``Exception`` of the store never leaves
    the run.

    Attributes:
      task: The task's :class:`~trio_dag.Handle`.
      reason: Which value, and why it cannot be cached.
    """

    task: Handle[Any]
    reason: str


@final
@attrs.frozen
class TaskAdded:
    """A task was added to the running run with :meth:`~trio_dag.Run.add`.

    Told before any other event of the new task (which may follow at once:
    a task added after a dependency that failed ends SKIPPED as it is
    added).

    Attributes:
      task: The new task's :class:`~trio_dag.Handle`.
      parent: The :class:`~trio_dag.Handle` of the task whose body added
        it, or None when it was added from outside the run's tasks (the
        ``Run`` of :func:`~trio_dag.open_run`).
      time: When it was added, on the Trio clock (seconds).
    """

    task: Handle[Any]
    parent: Handle[Any] | None
    time: float


Event = TaskStarted | TaskRetrying | TaskFinished | TaskNotCached | TaskAdded
"""Any event of a run: a :class:`TaskStarted`, :class:`TaskRetrying`,
:class:`TaskFinished`, :class:`TaskNotCached` or :class:`TaskAdded`.

Use it to annotate an ``on_event`` callback: ``def progress(event: Event) -> None``.
"""


@final
@attrs.frozen
class TaskInfo:
    """What a running task knows about itself, as :func:`current_task` gives it.

    Attributes:
      name: The task's name.
      attempt: Which attempt is running: 1 for the first, 2 for the first
        retry, ...
      tags: The task's ``tags=``, as a tuple.
    """

    name: str
    attempt: int
    tags: tuple[str, ...]


# Each worker sets this once, in its own context, to its slot
# ``[snapshot, task, attempt, start time, run]``; the task is -1 between bodies. Bodies
# run in copies of the worker's context, so they see their worker's slot. The run is
# the :class:`Run` that current_run() gives (the loops read only the first four items).
_CURRENT: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("trio_dag_current_task")


def current_task() -> TaskInfo:
    """The task whose body is running: its name, attempt and tags.

    Call it from a task's body, async or sync, also in its worker thread
    and in the tasks of a nursery the body opens; in a :func:`batched`
    call, it is the task that opened the batch::

        async def fetch(url):
            task = trio_dag.current_task()
            log.info("%s: attempt %d", task.name, task.attempt)
            ...

    Returns:
      A :class:`TaskInfo`.

    Raises:
      RuntimeError: Called outside a task body, or in a body on an executor
        (``run_in="process"`` or a named executor), which runs elsewhere.
    """
    slot = _CURRENT.get(None)
    if slot is None or slot[1] < 0:
        raise RuntimeError(
            "trio_dag.current_task() was called outside a task body; "
            "call it from a function that a run started"
        )
    snap, i, attempt = slot[0], slot[1], slot[2]
    return TaskInfo(snap.name(i), attempt, snap.options(i).tags)


def current_run() -> Run:
    """The :class:`Run` of the run whose task body is running.

    Call it from a task's body, async or sync, also in its worker thread
    and in the tasks of a nursery the body opens, as :func:`current_task`.
    Every run has one, whether it was started by :func:`run`,
    :func:`run_sync` or :func:`open_run` (then it is the object the
    ``async with`` block gets)::

        async def report_progress():
            counts = trio_dag.current_run().counts
            ...

    Returns:
      The task's :class:`Run`.

    Raises:
      RuntimeError: Called outside a task body.
    """
    slot = _CURRENT.get(None)
    if slot is None or slot[1] < 0:
        raise RuntimeError(
            "trio_dag.current_run() was called outside a task body; "
            "call it from a function that a run started"
        )
    run: Run = slot[4]
    return run

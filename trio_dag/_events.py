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

__all__ = [
    "Event",
    "TaskFinished",
    "TaskInfo",
    "TaskRetrying",
    "TaskStarted",
    "TaskState",
    "current_task",
]


class TaskState(enum.Enum):
    """The state of a task in a run's report.

    ``PENDING`` marks a task that ``targets=`` left out of the run; every task
    of the run ends in one of the other four.
    """

    PENDING = "pending"
    SUCCEEDED = "succeeded"
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
    """An attempt of *task* started at Trio time *time* (attempts count from 1).

    *batch* is the number (from 1) of the batched call that runs it, or None.
    """

    task: Handle[Any]
    attempt: int
    time: float
    batch: int | None = None


@final
@attrs.frozen
class TaskRetrying:
    """Attempt *attempt* of *task* raised *error*; the next starts after *delay* seconds."""

    task: Handle[Any]
    attempt: int
    error: BaseException = attrs.field(repr=_shown)
    delay: float


@final
@attrs.frozen
class TaskFinished:
    """*task* ended in *state* at *time*.

    *duration* runs from its first attempt's start (0.0 when it never
    started); *outcome* is what an ``all_done`` dependent receives.
    """

    task: Handle[Any]
    state: TaskState
    time: float
    duration: float
    outcome: outcome.Outcome[Any] = attrs.field(repr=_outcome_shown)


Event = TaskStarted | TaskRetrying | TaskFinished
"""Any event of a run: a :class:`TaskStarted`, :class:`TaskRetrying` or :class:`TaskFinished`."""


@final
@attrs.frozen
class TaskInfo:
    """What a running task knows about itself: see :func:`current_task`."""

    name: str
    attempt: int
    tags: tuple[str, ...]


# Each worker sets this once, in its own context, to its slot
# ``[snapshot, task, attempt, start time]``; the task is -1 between bodies. Bodies run in
# copies of the worker's context, so they see their worker's slot.
_CURRENT: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("trio_dag_current_task")


def current_task() -> TaskInfo:
    """The task whose body is running in this context (also in its worker thread).

    Raises RuntimeError outside a task body.
    """
    slot = _CURRENT.get(None)
    if slot is None or slot[1] < 0:
        raise RuntimeError(
            "trio_dag.current_task() was called outside a task body; "
            "call it from a function that a run started"
        )
    snap, i, attempt, _ = slot
    return TaskInfo(snap.name(i), attempt, snap.options(i).tags)

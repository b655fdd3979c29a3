"""Events of a run, the task states they report, and the per-task context.

Events are built only when someone listens (an ``on_event`` callback or
``run.events()``), so a run nobody watches pays nothing for them.
"""

from __future__ import annotations

import contextvars
import enum
from typing import TYPE_CHECKING, Any, final

import attrs
import outcome

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
    error: BaseException
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
    outcome: outcome.Outcome[Any]


Event = TaskStarted | TaskRetrying | TaskFinished


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

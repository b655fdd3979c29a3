"""The events a run reports, for ``on_event`` callbacks and ``run.events()``.

Each task's events come in order: a :class:`TaskStarted` per attempt, a
:class:`TaskRetrying` after each attempt that will be retried, and one
:class:`TaskFinished` when the task ends, also for a task that ends
SKIPPED, CANCELLED or CACHED without starting; a task of the cache that runs
uncached this run is told by a :class:`TaskNotCached`, and a task added
while the run goes on (:meth:`Run.add <trio_dag.Run.add>`) by a
:class:`TaskAdded`. A run tells every event in the order they happened.
Events are built only when someone listens, so a run nobody watches pays
nothing for them::

    def progress(event: trio_dag.events.Event) -> None:
        if isinstance(event, trio_dag.events.TaskFinished):
            print(f"{event.task.name}: {event.state.name} in {event.duration:.2f} s")

    trio_dag.run_sync(dag, on_event=progress)

See the user guide, *Events and streaming*.
"""

from . import _public
from ._events import Event as Event
from ._events import TaskAdded as TaskAdded
from ._events import TaskFinished as TaskFinished
from ._events import TaskNotCached as TaskNotCached
from ._events import TaskRetrying as TaskRetrying
from ._events import TaskStarted as TaskStarted
from ._events import TaskState as TaskState

__all__ = [
    "Event",
    "TaskAdded",
    "TaskFinished",
    "TaskNotCached",
    "TaskRetrying",
    "TaskStarted",
    "TaskState",
]

__dir__ = _public.publish(__name__, globals())

"""The events a run reports, for ``on_event`` callbacks and ``run.events()``."""

from . import _public
from ._events import Event as Event
from ._events import TaskFinished as TaskFinished
from ._events import TaskRetrying as TaskRetrying
from ._events import TaskStarted as TaskStarted
from ._events import TaskState as TaskState

__all__ = ["Event", "TaskFinished", "TaskRetrying", "TaskStarted", "TaskState"]

__dir__ = _public.publish(__name__, globals())

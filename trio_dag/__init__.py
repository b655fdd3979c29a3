"""trio_dag: run directed acyclic graphs of tasks on Trio, with a compiled core."""

from . import _public
from . import events as events
from ._batching import Batched as Batched
from ._batching import batched as batched
from ._dag import DAG as DAG
from ._errors import CallbackError as CallbackError
from ._errors import CycleError as CycleError
from ._errors import DuplicateTaskError as DuplicateTaskError
from ._errors import ForeignHandleError as ForeignHandleError
from ._errors import GraphError as GraphError
from ._errors import NoEffectWarning as NoEffectWarning
from ._errors import ResourceError as ResourceError
from ._errors import RunFailedError as RunFailedError
from ._errors import TaskCancelledError as TaskCancelledError
from ._errors import TaskFailedError as TaskFailedError
from ._errors import TaskSkippedError as TaskSkippedError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import TrioDagError as TrioDagError
from ._errors import UnknownDependencyError as UnknownDependencyError
from ._events import TaskInfo as TaskInfo
from ._events import TaskState as TaskState
from ._events import current_task as current_task
from ._handle import Handle as Handle
from ._native import CORE as CORE
from ._options import TaskOptions as TaskOptions
from ._policies import Threshold as Threshold
from ._report import RunReport as RunReport
from ._report import RunStats as RunStats
from ._report import TaskTiming as TaskTiming
from ._run import Run as Run
from ._run import open_run as open_run
from ._run import run as run
from ._run import run_sync as run_sync

__version__ = "0.1.0"

__all__ = [
    "CORE",
    "DAG",
    "Batched",
    "CallbackError",
    "CycleError",
    "DuplicateTaskError",
    "ForeignHandleError",
    "GraphError",
    "Handle",
    "NoEffectWarning",
    "ResourceError",
    "Run",
    "RunFailedError",
    "RunReport",
    "RunStats",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskInfo",
    "TaskOptions",
    "TaskSkippedError",
    "TaskState",
    "TaskTimeoutError",
    "TaskTiming",
    "Threshold",
    "TrioDagError",
    "UnknownDependencyError",
    "batched",
    "current_task",
    "events",
    "open_run",
    "run",
    "run_sync",
]

__dir__ = _public.publish(__name__, globals())

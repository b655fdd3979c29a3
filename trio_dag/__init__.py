"""trio_dag: run directed acyclic graphs of tasks on Trio, with a compiled core.

Build a graph of tasks, async or sync functions whose arguments may be the
outputs of other tasks, then run it: each task starts the moment its
dependencies are done, within the limits you set, under Trio's structured
concurrency; a report tells what every task did::

    import trio_dag

    async def load(path): ...
    async def parse(text): ...

    dag = trio_dag.DAG()
    text = dag.add(load, "a.txt")        # a Handle: stands for load's output
    doc = dag.add(parse, text, retries=2)
    report = trio_dag.run_sync(dag, limit=8)
    report[doc]                          # parse(load("a.txt"))

The public API, by what it is for:

Building a graph

- ``DAG``: a graph of tasks; ``dag.add(fn, *args, **options)`` adds one.
- ``Handle``: one task of a DAG; pass it as an argument to depend on it.
- ``TaskOptions``: the checked options of one task.
- ``Cache``: the results of cached tasks in a SQLite file (``run(..., cache=)``).
- ``MemoryCache``: the same in a dict, for tests.
- ``CacheStore``: the protocol of a cache: plug in your own store.
- ``CacheEntry``: what a store keeps for one key.
- ``CacheStats``: what ``Cache.stats()`` says: entries, bytes, hits, misses.
- ``batched``: decorator running many tasks of a function as one call.
- ``Batched``: what ``@batched`` makes of a function.

Running

- ``run``: run a DAG (``await``) and return its report.
- ``run_sync``: the same from synchronous code.
- ``open_run``: ``async with``: run in the background, stream events, cancel.
- ``Run``: the run in progress that ``open_run`` (and ``current_run``) gives.
- ``RunCounts``: what ``run.counts`` says: tasks in each state, now.
- ``Threshold``: the strategy that starts ready tasks in groups.
- ``Executor``: the protocol of ``run(..., executors=)``: ``submit`` returning a future.
- ``current_task``: inside a task, its name, attempt and tags.
- ``current_run``: inside a task, the ``Run`` of its run.
- ``TaskInfo``: what ``current_task`` returns.
- ``events``: the module of the events a run tells (``TaskStarted``, ...).

The report

- ``RunReport``: states, outputs, errors, timings and figures of a run.
- ``RunStats``: figures of a whole run (makespan, speedup, ...).
- ``TaskTiming``: when one task ran.
- ``TaskState``: SUCCEEDED, CACHED, FAILED, SKIPPED, CANCELLED or PENDING.

Errors and warnings

- ``TrioDagError``: the base class of every error of trio_dag.
- ``GraphError``: the graph cannot run as built (also a ValueError).
- ``CycleError``: tasks depend on each other in a loop.
- ``UnknownDependencyError``: a name in ``after=`` or ``targets=`` matches no task.
- ``DuplicateTaskError``: two tasks would have the same name.
- ``ResourceError``: a task uses a resource the run lacks, or too much of it.
- ``ForeignHandleError``: a handle of one DAG given to another.
- ``TaskFailedError``: a task FAILED (``report[task]``, ``RunFailedError``).
- ``TaskSkippedError``: a task was SKIPPED.
- ``TaskCancelledError``: a task was CANCELLED.
- ``TaskTimeoutError``: an attempt ran past its ``timeout=``.
- ``RunFailedError``: a run had FAILED tasks (an ExceptionGroup).
- ``CallbackError``: ``on_event`` or a policy key function raised.
- ``CacheFileError``: a cache file that cannot be used.
- ``ExecutorError``: a task's executor is missing from the run, or its function cannot be pickled.
- ``WorkerDiedError``: the worker process running a task died.
- ``NoEffectWarning``: a setting that has no effect in a run.

Also

- ``CORE``: ``"cython"`` or ``"python"``: which graph core is in use.
- ``trio_dag.testing``: check runs against trio_dag's guarantees; Hypothesis strategies.
- ``trio_dag.graphlib``: the standard library's ``graphlib`` on trio_dag's core.

The documentation has a tutorial, a user guide and an API reference.
"""

from . import _public
from . import events as events
from ._batching import Batched as Batched
from ._batching import batched as batched
from ._cache import Cache as Cache
from ._cache import CacheEntry as CacheEntry
from ._cache import CacheStats as CacheStats
from ._cache import CacheStore as CacheStore
from ._cache import MemoryCache as MemoryCache
from ._control import RunCounts as RunCounts
from ._dag import DAG as DAG
from ._errors import CacheFileError as CacheFileError
from ._errors import CallbackError as CallbackError
from ._errors import CycleError as CycleError
from ._errors import DuplicateTaskError as DuplicateTaskError
from ._errors import ExecutorError as ExecutorError
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
from ._errors import WorkerDiedError as WorkerDiedError
from ._events import TaskInfo as TaskInfo
from ._events import TaskState as TaskState
from ._events import current_run as current_run
from ._events import current_task as current_task
from ._executors import Executor as Executor
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
    "Cache",
    "CacheEntry",
    "CacheFileError",
    "CacheStats",
    "CacheStore",
    "CallbackError",
    "CycleError",
    "DuplicateTaskError",
    "Executor",
    "ExecutorError",
    "ForeignHandleError",
    "GraphError",
    "Handle",
    "MemoryCache",
    "NoEffectWarning",
    "ResourceError",
    "Run",
    "RunCounts",
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
    "WorkerDiedError",
    "batched",
    "current_run",
    "current_task",
    "events",
    "open_run",
    "run",
    "run_sync",
]

__dir__ = _public.publish(__name__, globals())

"""Every exception of trio_dag, in one hierarchy under :class:`TrioDagError`, and
its one warning category, :class:`NoEffectWarning`.

Graph errors (:class:`GraphError` and its subclasses) are also ``ValueError``s;
they are raised by ``DAG.add``, ``DAG.validate()`` and by every run before any
task starts. The other classes describe what happened during a run.

Each class pickles with its attributes, so errors can cross process boundaries.
"""

from __future__ import annotations

import graphlib
import math
import signal
from collections.abc import Sequence
from typing import Any, Self

__all__ = [
    "CacheFileError",
    "CallbackError",
    "CycleError",
    "DuplicateTaskError",
    "ExecutorError",
    "ForeignHandleError",
    "GraphError",
    "NoEffectWarning",
    "ResourceError",
    "RunFailedError",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskSkippedError",
    "TaskTimeoutError",
    "TrioDagError",
    "UnknownDependencyError",
    "WorkerDiedError",
]

# A cycle longer than this is printed as its first and last few names.
_CYCLE_SHOWN = 10


def message_of(error: BaseException) -> str:
    """``str(error)``, or ``<Type object (str() raised ...)>`` when that raises.

    A user's exception may break its own ``__str__``; an error about it, a
    report or a summary must still print.
    """
    try:
        return str(error)
    except Exception as exc:
        return _unprintable(error, "str", exc)


def describe(error: BaseException) -> str:
    """``Type: message`` of *error*, or its repr when the message is empty; never raises."""
    try:
        text = str(error)
    except Exception as exc:
        return _unprintable(error, "str", exc)
    if text:
        return f"{type(error).__name__}: {text}"
    try:
        return repr(error)
    except Exception as exc:
        return _unprintable(error, "repr", exc)


def _unprintable(error: BaseException, how: str, exc: Exception) -> str:
    return f"<{type(error).__name__} object ({how}() raised {type(exc).__name__})>"


class TrioDagError(Exception):
    """The base class of every error trio_dag raises: ``except TrioDagError`` catches them all.

    A task's own exception is not wrapped in one, except where a run
    reports it: in :class:`TaskFailedError` (its ``__cause__``) inside
    :class:`RunFailedError`. Most errors about a wrong argument are plain
    TypeErrors and ValueErrors, raised before anything changes.
    """


class GraphError(TrioDagError, ValueError):
    """The graph cannot run as built: a cycle, an unknown name, a duplicate name, a resource.

    Also a ``ValueError``. :class:`DuplicateTaskError` is raised by
    :meth:`DAG.add`; the others by :meth:`DAG.validate` and by every run,
    before any task starts.
    """


class CycleError(GraphError, graphlib.CycleError):
    """Tasks depend on each other in a loop, so none of them can ever start.

    Raised by :meth:`DAG.validate`, :meth:`DAG.topological_order`,
    :meth:`DAG.waves` and every run, before any task starts. Its message
    shows the loop: ``'a' -> 'b' -> 'c' -> 'a'``. It is also a
    ``ValueError`` and a :class:`graphlib.CycleError`, whose ``args[1]`` is
    the same list as ``.cycle``. When the graph has several cycles, one is
    reported.

    Attributes:
      cycle: The task names along one cycle, each a dependency of the
        next, with the first name repeated last: ``["a", "b", "c", "a"]``.
    """

    cycle: list[str]

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(self._message(self.cycle), self.cycle)

    @staticmethod
    def _message(cycle: list[str]) -> str:
        names = [repr(name) for name in cycle]
        if len(names) > 2 * _CYCLE_SHOWN:
            hidden = len(names) - 2 * _CYCLE_SHOWN
            names[_CYCLE_SHOWN:-_CYCLE_SHOWN] = [f"... ({hidden} more tasks) ..."]
        return (
            f"tasks depend on each other in a cycle: {' -> '.join(names)}; "
            "each must finish before the next can start, so none can run. "
            "Remove one of these dependencies."
        )

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cycle,), self.__dict__)


class UnknownDependencyError(GraphError):
    """A name in ``after=`` (or ``targets=``) matches no task.

    Raised by :meth:`DAG.validate`, every run before any task starts, and
    the methods of :class:`DAG` that need the whole graph. The message names
    the closest existing name when one is close. Also a ``ValueError``.

    Attributes:
      task: The name of the task whose ``after=`` holds the name, or None
        for a name in a run's ``targets=``.
      missing: The name that matches no task.
      suggestion: The existing name closest to it (found with
        :mod:`difflib`), or None when none is close.
    """

    task: str | None
    missing: str
    suggestion: str | None

    def __init__(self, task: str | None, missing: str, suggestion: str | None = None) -> None:
        self.task = task
        self.missing = missing
        self.suggestion = suggestion
        if task is None:
            message = f"targets= names {missing!r}, but no task has that name"
        else:
            message = f"task {task!r} must run after {missing!r}, but no task has that name"
        if suggestion is not None:
            message += f"; did you mean {suggestion!r}?"
        else:
            message += f"; add a task named {missing!r} or correct the name"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.missing, self.suggestion), self.__dict__)


class DuplicateTaskError(GraphError):
    """Two tasks of one DAG would have the same name.

    Raised by :meth:`DAG.add` (and :meth:`DAG.map`) for a ``name=`` that a
    task already has, or for a task whose default name
    (``f"{fn.__name__}-{index}"``) an earlier task was given by hand. Also
    a ``ValueError``.

    Attributes:
      name: The name two tasks would share.
    """

    name: str

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message or f"a task named {name!r} already exists; pass a different name=")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, str(self)), self.__dict__)


class ResourceError(GraphError):
    """A task uses a resource the run does not provide, or more than its whole capacity.

    Such a task could never start, so the run raises this before any task
    starts. Also a ``ValueError``.

    Attributes:
      task: The task's name.
      resource: The resource's name.
      amount: What the task uses of it (its ``uses=``).
      capacity: What the run provides (its ``resources=``), or None when
        the run does not provide it.
      suggestion: The name of a resource the run provides that is close to
        a missing one (found with :mod:`difflib`), or None.
    """

    task: str
    resource: str
    amount: float
    capacity: float | None
    suggestion: str | None

    def __init__(
        self,
        task: str,
        resource: str,
        amount: float,
        capacity: float | None,
        suggestion: str | None = None,
    ) -> None:
        self.task = task
        self.resource = resource
        self.amount = amount
        self.capacity = capacity
        self.suggestion = suggestion
        if capacity is None:
            message = (
                f"task {task!r} uses {_amount(amount)} of resource {resource!r}, which the run "
                "does not provide; "
            )
            if suggestion is not None:
                message += f"did you mean {suggestion!r}?"
            else:
                message += f"pass resources={{{resource!r}: ...}} to the run"
        else:
            message = (
                f"task {task!r} uses {_amount(amount)} of resource {resource!r}, more than its "
                f"whole capacity {_amount(capacity)}, so it could never start; raise the capacity "
                "or lower the task's uses="
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.task, self.resource, self.amount, self.capacity, self.suggestion),
            self.__dict__,
        )


def _amount(x: float) -> str:
    """An amount or capacity as it was given: a float as ``%g``, an int or a
    ``Fraction`` exactly (``1/3``; a huge int, which no float holds, by its size)."""
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, int) and x.bit_length() > 1000:
        return f"an int of about {int(x.bit_length() * math.log10(2)) + 1} digits"
    return str(x)


class ForeignHandleError(TrioDagError, TypeError):
    """A handle of one DAG was given to another.

    Raised by :meth:`DAG.add` (a handle among the arguments or in
    ``after=``), by looking a task up (``dag[handle]``,
    :meth:`DAG.dependencies`, ``targets=``, the report's methods) with a
    handle of another DAG. Also a ``TypeError``, like a non-callable
    ``fn``: the argument is not something this DAG can use. Pass handles
    returned by this DAG's ``add``, or look tasks up by name with
    ``dag[name]``.
    """


class TaskFailedError(TrioDagError):
    """A task FAILED: its last attempt raised.

    Raised by ``report[task]`` for a FAILED task, and held, one per FAILED
    task, by :class:`RunFailedError`. The task's own exception is its
    ``__cause__`` (and in ``report.errors``).

    Attributes:
      task: The task's name.
    """

    task: str

    def __init__(self, task: str, error: BaseException | None = None) -> None:
        self.task = task
        message = f"task {task!r} failed"
        if error is not None:
            message += f": {describe(error)}"
            self.__cause__ = error
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.__cause__), self.__dict__)


class TaskSkippedError(TrioDagError):
    """A task did not run because a dependency did not succeed.

    Raised by ``report[task]`` for a SKIPPED task; an ``all_done`` task
    receives it as the ``outcome.Error`` of a SKIPPED dependency.

    Attributes:
      task: The SKIPPED task's name.
      dependency: The name of a dependency that did not succeed, or None
        when none is known.
    """

    task: str
    dependency: str | None

    def __init__(self, task: str, dependency: str | None = None) -> None:
        self.task = task
        self.dependency = dependency
        if dependency is None:
            message = f"task {task!r} was skipped: a dependency did not succeed"
        else:
            message = f"task {task!r} was skipped: its dependency {dependency!r} did not succeed"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.dependency), self.__dict__)


class TaskCancelledError(TrioDagError):
    """A task was cancelled before it finished (or before it started).

    Raised by ``report[task]`` for a CANCELLED task; an ``all_done`` task
    receives it as the ``outcome.Error`` of a CANCELLED dependency.

    Attributes:
      task: The task's name.
    """

    task: str

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"task {task!r} was cancelled before it finished")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task,), self.__dict__)


class TaskTimeoutError(TrioDagError, TimeoutError):
    """An attempt of a task ran longer than its ``timeout=``.

    It is the attempt's own error: retried when it matches ``retry_on`` (the
    default ``(Exception,)`` does), and otherwise the task's exception, in
    ``report.errors`` and as the ``__cause__`` of its
    :class:`TaskFailedError`. Also a ``TimeoutError``.

    Attributes:
      task: The task's name.
      timeout: The limit, in seconds.
    """

    task: str
    timeout: float

    def __init__(self, task: str, timeout: float) -> None:
        self.task = task
        self.timeout = timeout
        super().__init__(f"task {task!r} timed out after {timeout:g} s")

    def __str__(self) -> str:
        # OSError (TimeoutError's base) would format args as "[Errno ...]".
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.timeout), self.__dict__)


class ExecutorError(TrioDagError, ValueError):
    """The run's executors do not fit its tasks: a task's ``run_in=`` names an
    executor the run does not provide, or its function cannot be pickled to
    be sent to one.

    Raised by every run before any task starts. Also a ``ValueError``.

    Attributes:
      executor: The executor's name, as the tasks give it to ``run_in=``.
      tasks: The names of the tasks concerned, in insertion order.
    """

    executor: str
    tasks: tuple[str, ...]

    def __init__(self, executor: str, tasks: Sequence[str], message: str) -> None:
        self.executor = executor
        self.tasks = tuple(tasks)
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.executor, self.tasks, str(self)), self.__dict__)


class WorkerDiedError(TrioDagError):
    """The worker process running a task's body died before the body returned.

    The attempt's own error (killed by a signal, out of memory, ``os._exit``):
    retried like any failure when ``retries=`` allows, since the default
    ``retry_on=(Exception,)`` matches it.

    Attributes:
      task: The task's name.
      exitcode: The worker's exit code, negative for the signal that killed
        it (``-9`` for SIGKILL), or None when not known.
    """

    task: str
    exitcode: int | None

    def __init__(self, task: str, exitcode: int | None = None) -> None:
        self.task = task
        self.exitcode = exitcode
        super().__init__(
            f"the worker process running task {task!r} died ({_ending(exitcode)}) "
            "before the body returned"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.exitcode), self.__dict__)


def _ending(code: int | None) -> str:
    """How a process ended, from its exit code: ``killed by SIGKILL``, ``exit code 3``."""
    if code is None:
        return "how is not known"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class RunFailedError(TrioDagError, ExceptionGroup[TaskFailedError]):
    """A run ended with FAILED tasks, and ``check=True`` asked to raise.

    Raised by :func:`run` and :func:`run_sync`, and on leaving the block of
    :func:`open_run`, once the run has ended. An ``ExceptionGroup`` of one
    :class:`TaskFailedError` per FAILED task, in insertion order, each with
    the task's exception as ``__cause__``; ``except*`` and ``split()`` keep
    the class and the report::

        try:
            trio_dag.run_sync(dag)
        except trio_dag.RunFailedError as error:
            print(error.report.summary())

    Attributes:
      report: The run's whole :class:`RunReport`.
    """

    # The report's class lives downstream (in _report); errors import nothing of trio_dag.
    report: Any

    def __new__(
        cls, message: str, exceptions: Sequence[TaskFailedError], report: Any = None
    ) -> Self:
        self = super().__new__(cls, message, exceptions)
        self.report = report
        return self

    def __init__(
        self, message: str, exceptions: Sequence[TaskFailedError], report: Any = None
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[TaskFailedError]) -> RunFailedError:  # type: ignore[override]
        """A group of the same kind and report holding *excs* (used by ``split``)."""
        return RunFailedError(self.message, excs, self.report)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, list(self.exceptions), self.report), self.__dict__)


class CallbackError(TrioDagError):
    """A callback of the run (``on_event``, a policy key function) raised.

    An ``on_event`` callback that raises an ``Exception`` stops the run as
    ``on_failure="fail_fast"`` does; the run raises this once it has ended.
    A policy key function is called before any task starts: when it raises,
    or returns keys that cannot be compared, the run raises this at once.
    The callback's exception is ``__cause__``.

    Attributes:
      callback: Which callback, as a phrase such as ``"on_event"`` or
        ``"policy key function by_size"``.
    """

    callback: str

    def __init__(self, callback: str, error: BaseException | None = None) -> None:
        self.callback = callback
        message = f"{callback} raised, so the run was stopped"
        if error is not None:
            message += f": {describe(error)}"
            self.__cause__ = error
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.callback, self.__cause__), self.__dict__)


class CacheFileError(TrioDagError):
    """A cache file cannot be used: not a SQLite file, not a trio_dag cache,
    written by a newer trio_dag, or closed. Raised when it is opened, before
    any task of a run starts."""


class NoEffectWarning(UserWarning):
    """A setting of a run that does nothing, so probably not what was meant.

    A run warns (once for each kind, naming the first few tasks, before any
    task starts) when:

    - tasks set ``priority=`` but the run's policy is not ``"priority"``, the
      only one that reads it (a key function gets handles, which do not show
      the priority);
    - a resource given to ``resources=`` is used by no task of the run (tasks
      left out by ``targets=`` do not count; a run with no task to run does
      not warn);
    - a task has a tag that is the name of a resource of the run but does not
      use that resource: tags limit nothing, only ``uses=`` does.

    It is a ``UserWarning``, shown once per place by default. To silence it::

        warnings.filterwarnings("ignore", category=trio_dag.NoEffectWarning)

    A ``uses=`` naming a resource the run lacks is no warning but a
    :class:`ResourceError`.
    """

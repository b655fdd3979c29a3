"""Every exception of trio_dag, in one hierarchy under :class:`TrioDagError`, and
its one warning category, :class:`NoEffectWarning`.

Graph errors (:class:`GraphError` and its subclasses) are also ``ValueError``s;
they are raised by ``DAG.add``, ``DAG.validate()`` and by every run before any
task starts. The other classes describe what happened during a run.

Each class pickles with its attributes, so errors can cross process boundaries.
"""

from __future__ import annotations

import graphlib
from collections.abc import Sequence
from typing import Any, Self

__all__ = [
    "CallbackError",
    "CycleError",
    "DuplicateTaskError",
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
    """The base class of every error trio_dag raises."""


class GraphError(TrioDagError, ValueError):
    """The graph cannot run as built: a cycle, an unknown name, a duplicate name."""


class CycleError(GraphError, graphlib.CycleError):
    """Tasks depend on each other in a loop.

    ``.cycle`` lists the task names along one cycle, each a dependency of the
    next, with the first name repeated last: ``["a", "b", "c", "a"]``. As for
    :class:`graphlib.CycleError`, ``args[1]`` is the same list.
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

    ``.task`` is the task whose ``after=`` holds the name (None for a name
    given to a run), ``.missing`` the name, ``.suggestion`` the closest
    existing name when one is close (the DAG finds it with :mod:`difflib`).
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
    """Two tasks of one DAG would have the same name. ``.name`` is that name."""

    name: str

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message or f"a task named {name!r} already exists; pass a different name=")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, str(self)), self.__dict__)


class ResourceError(GraphError):
    """A task uses a resource the run does not provide, or more than its capacity.

    ``.task`` and ``.resource`` are names, ``.amount`` what the task uses and
    ``.capacity`` what the run provides (None when it does not provide it).
    ``.suggestion`` is the name of a resource the run provides that is close
    to a missing one (found with :mod:`difflib`), or None.
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
                f"task {task!r} uses {amount:g} of resource {resource!r}, which the run "
                "does not provide; "
            )
            if suggestion is not None:
                message += f"did you mean {suggestion!r}?"
            else:
                message += f"pass resources={{{resource!r}: ...}} to the run"
        else:
            message = (
                f"task {task!r} uses {amount:g} of resource {resource!r}, more than its "
                f"whole capacity {capacity:g}, so it could never start; raise the capacity "
                "or lower the task's uses="
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.task, self.resource, self.amount, self.capacity, self.suggestion),
            self.__dict__,
        )


class ForeignHandleError(TrioDagError, TypeError):
    """A handle of one DAG was given to another.

    Also a ``TypeError``, like a non-callable ``fn``: the argument is not
    something this DAG can use. Pass handles returned by this DAG's ``add``,
    or look tasks up by name with ``dag[name]``.
    """


class TaskFailedError(TrioDagError):
    """A task raised. ``.task`` is its name; the task's exception is ``__cause__``."""

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

    ``.task`` is its name, ``.dependency`` the dependency that did not
    succeed, when known.
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
    """A task was cancelled before it finished. ``.task`` is its name."""

    task: str

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"task {task!r} was cancelled before it finished")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task,), self.__dict__)


class TaskTimeoutError(TrioDagError, TimeoutError):
    """An attempt of a task ran longer than its ``timeout=``.

    ``.task`` is the task's name, ``.timeout`` the limit in seconds. Also a
    ``TimeoutError``, so the default ``retry_on=(Exception,)`` retries it.
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


class RunFailedError(TrioDagError, ExceptionGroup[TaskFailedError]):
    """A run ended with failed tasks (and ``check=True``).

    An ``ExceptionGroup`` of one :class:`TaskFailedError` per failed task;
    ``.report`` is the run's whole report. ``except*`` and ``split()`` keep the
    class and the report.
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
    """A user callback (``on_event``, a policy key function) raised and stopped the run.

    ``.callback`` says which one, as a phrase such as ``"on_event callback"`` or
    ``"policy key function by_size"``; its exception is ``__cause__``.
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

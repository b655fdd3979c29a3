"""Recorder: keeps every event of a run, in order, for :func:`check_run` and for tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, final, overload

from .._events import Event, TaskFinished, TaskRetrying, TaskStarted

if TYPE_CHECKING:
    from .._handle import Handle

__all__ = ["Recorder"]


@final
class Recorder:
    """A run's events, in the order they happened.

    Pass it as the run's ``on_event`` callback (it is a plain callable), or
    call it with each event read from ``run.events()``; then hand it to
    :func:`check_run`::

        recorder = trio_dag.testing.Recorder()
        report = await trio_dag.run(dag, limit=4, on_event=recorder, check=False)
        trio_dag.testing.check_run(dag, report, recorder, limit=4)
        assert [e.task.name for e in recorder.started()][:1] == ["load"]

    A Recorder keeps its events (and through them the tasks' outputs) alive
    until it is dropped or :meth:`clear` is called. It is also a sequence of
    its events: ``len(recorder)``, ``recorder[0]``, ``for event in
    recorder``.

    Attributes:
      events: Every event recorded so far, oldest first (a list).
    """

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        """Record *event* (the ``on_event`` protocol)."""
        self.events.append(event)

    def __iter__(self) -> Iterator[Event]:
        """The events, oldest first: ``for event in recorder``."""
        return iter(self.events)

    def __len__(self) -> int:
        """The number of events recorded: ``len(recorder)``."""
        return len(self.events)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        """``recorder[i]``: an event by its position (a slice gives a list)."""
        return self.events[index]

    def clear(self) -> None:
        """Forget every event, e.g. between two runs that share the recorder."""
        self.events.clear()

    def of(self, task: Handle[Any] | str) -> list[Event]:
        """The events of one task (given by handle or name), in order.

        For a task that was retried once: its ``TaskStarted``,
        ``TaskRetrying``, ``TaskStarted`` and ``TaskFinished``.
        """
        if isinstance(task, str):
            return [e for e in self.events if e.task.name == task]
        return [e for e in self.events if e.task == task]

    def started(self) -> list[TaskStarted]:
        """Every :class:`~trio_dag.events.TaskStarted`, one per attempt, in order."""
        return [e for e in self.events if type(e) is TaskStarted]

    def retrying(self) -> list[TaskRetrying]:
        """Every :class:`~trio_dag.events.TaskRetrying`, in order."""
        return [e for e in self.events if type(e) is TaskRetrying]

    def finished(self) -> list[TaskFinished]:
        """Every :class:`~trio_dag.events.TaskFinished`, one per task, in order."""
        return [e for e in self.events if type(e) is TaskFinished]

    def __repr__(self) -> str:
        return f"<Recorder of {len(self.events)} events>"

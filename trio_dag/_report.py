"""RunReport: what a run did, task by task, with its timings, stats and exports."""

from __future__ import annotations

import heapq
import json
import math
import os
from array import array
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final, final

import attrs
from outcome import Error, Outcome, Value

from ._errors import (
    TaskCancelledError,
    TaskFailedError,
    TaskSkippedError,
    UnknownDependencyError,
    message_of,
)
from ._events import TaskState
from ._handle import Handle
from ._native import core

if TYPE_CHECKING:
    from ._snapshot import Snapshot

__all__ = ["CACHED", "STATE_OF", "RunReport", "RunStats", "TaskTiming", "task_outcome"]

# The report's code of a task that ended CACHED: the core counts it
# SUCCEEDED (its dependents may start); the engine records which ones were
# cached and the report's states say so with this code, which no core
# state has.
CACHED: Final = 8

# A core state code as the report and the events tell it: EXCLUDED is a task
# that ``targets=`` left out (PENDING); the engine never tells one.
STATE_OF: Final = {
    core.SUCCEEDED: TaskState.SUCCEEDED,
    CACHED: TaskState.CACHED,
    core.FAILED: TaskState.FAILED,
    core.SKIPPED: TaskState.SKIPPED,
    core.CANCELLED: TaskState.CANCELLED,
    core.EXCLUDED: TaskState.PENDING,
}


def task_outcome(
    snap: Snapshot,
    code: int,
    i: int,
    outputs: list[Any],
    errors: dict[int, BaseException],
    state_of: Callable[[int], int],
) -> Outcome[Any]:
    """The Outcome of task *i*, which ended with core state *code* (or CACHED)."""
    if code == core.SUCCEEDED or code == CACHED:
        return Value(outputs[i])
    if code == core.FAILED:
        return Error(errors[i])
    if code == core.SKIPPED:
        blocker = next(
            (
                snap.name(p)
                for p in snap.graph.parents(i)
                if state_of(p) != core.SUCCEEDED and state_of(p) != CACHED
            ),
            None,
        )
        return Error(TaskSkippedError(snap.name(i), blocker))
    return Error(TaskCancelledError(snap.name(i)))


@final
@attrs.frozen
class TaskTiming:
    """When a task ran, on the Trio clock, as :meth:`RunReport.timing` gives it.

    For a task that never started (SKIPPED, CACHED, or CANCELLED before it
    started) the times are None and ``attempts`` is 0.

    Attributes:
      start: When its first attempt started (Trio clock, seconds), or None.
      end: When its last attempt ended (Trio clock, seconds), or None.
      attempts: How many attempts started: 1, and one more per retry.
    """

    start: float | None
    end: float | None
    attempts: int

    @property
    def duration(self) -> float | None:
        """``end - start`` in seconds, waits between attempts included; None if it never started."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


@final
@attrs.frozen
class RunStats:
    """Figures of a whole run, as :attr:`RunReport.stats` gives them.

    Times are in seconds on the Trio clock. ``speedup`` and
    ``tasks_per_second`` are 0.0 when the makespan is 0 (a run of no tasks,
    or of tasks that never wait, on a ``MockClock``).

    Attributes:
      tasks: How many tasks were part of the run (``targets=`` may leave
        some out).
      makespan: The time from the start of the run to its end.
      busy: The time spent inside attempts, summed over all attempts (a
        :func:`batched` call counts once).
      speedup: ``busy / makespan``: how many bodies ran at once, on average.
      peak_concurrency: The most task bodies that ran at the same time (a
        :func:`batched` call counts as one).
      waves: How many dependency levels the run's tasks span (see
        :meth:`DAG.waves`).
      tasks_per_second: ``tasks / makespan``.
      cached: How many tasks ended CACHED (their results came from the
        run's cache).
    """

    tasks: int
    makespan: float
    busy: float
    speedup: float
    peak_concurrency: int
    waves: int
    tasks_per_second: float
    cached: int = 0


@final
class RunReport:
    """What a run did: every task's state, its output or error, timings and figures.

    :func:`run` returns it (and :class:`RunFailedError` carries it as
    ``.report``). Wherever a task is asked for, its :class:`Handle` or its
    name will do::

        report = trio_dag.run_sync(dag, check=False)
        if report.ok:
            print(report[vectors])             # the task's output
        else:
            for name, error in report.errors.items():
                print(name, error)
        print(report.summary())

    It is also a container of the tasks of the run: ``len(report)``,
    ``iter(report)`` (their handles, in insertion order) and ``task in
    report``; tasks that ``targets=`` left out are not in it. A report is
    never changed after the run, and it keeps the outputs of the tasks
    alive. See the user guide, *The report*.

    Asking about a task raises KeyError when the DAG had no such task when
    it ran (the message says so), :class:`ForeignHandleError` for a handle
    of another DAG, and TypeError for something that is neither a handle
    nor a name.
    """

    __slots__ = (
        "_attempts",
        "_batch_of",
        "_busy",
        "_end",
        "_end_order",
        "_ended_at",
        "_errors",
        "_extra",
        "_outputs",
        "_peak",
        "_snap",
        "_start",
        "_started_at",
        "_states",
    )

    def __init__(
        self,
        snap: Snapshot,
        states: bytes,
        outputs: list[Any],
        errors: dict[int, BaseException],
        start: array[float],
        end: array[float],
        end_order: array[int],
        attempts: array[int],
        extra: list[tuple[int, int, float, float]],
        busy: float,
        peak: int,
        batch_of: dict[int, int],
        started_at: float,
        ended_at: float,
    ) -> None:
        # start/end hold NaN for tasks that never started, end_order 0 (else
        # the rank of the task's last attempt among all attempt ends); extra
        # holds (task, attempt, start, end) of every attempt of each task
        # that may retry.
        self._snap = snap
        self._states = states
        self._outputs = outputs
        self._errors = errors
        self._start = start
        self._end = end
        self._end_order = end_order
        self._attempts = attempts
        self._extra = extra
        self._busy = busy
        self._peak = peak
        self._batch_of = batch_of
        self._started_at = started_at
        self._ended_at = ended_at

    def _index(self, task: Handle[Any] | str) -> int:
        if not isinstance(task, (str, Handle)):
            raise TypeError(f"ask the report about a Handle or a task name, not {task!r}")
        try:
            return self._snap.index(task)
        except UnknownDependencyError:
            name = task if isinstance(task, str) else task.name
            raise KeyError(
                f"task {name!r} is not in this report: the DAG had no such task when it ran"
            ) from None

    def state(self, task: Handle[Any] | str) -> TaskState:
        """The final state of *task*: SUCCEEDED, CACHED, FAILED, SKIPPED or CANCELLED.

        ``TaskState.PENDING`` for a task that ``targets=`` left out of the run.
        """
        st = self._states[self._index(task)]
        return STATE_OF.get(st, TaskState.CANCELLED)

    def _of(self, st: int) -> list[Handle[Any]]:
        return [self._snap.handle(i) for i, s in enumerate(self._states) if s == st]

    @property
    def ok(self) -> bool:
        """True when every task of the run SUCCEEDED or was CACHED (tasks ``targets=``
        left out do not count)."""
        return all(s == core.SUCCEEDED or s == core.EXCLUDED or s == CACHED for s in self._states)

    @property
    def succeeded(self) -> list[Handle[Any]]:
        """The tasks that SUCCEEDED, in insertion order."""
        return self._of(core.SUCCEEDED)

    @property
    def cached(self) -> list[Handle[Any]]:
        """The tasks that ended CACHED (their results came from the cache), in insertion order."""
        return self._of(CACHED)

    @property
    def failed(self) -> list[Handle[Any]]:
        """The tasks that FAILED, in insertion order."""
        return self._of(core.FAILED)

    @property
    def skipped(self) -> list[Handle[Any]]:
        """The tasks that were SKIPPED, in insertion order."""
        return self._of(core.SKIPPED)

    @property
    def cancelled(self) -> list[Handle[Any]]:
        """The tasks that were CANCELLED, in insertion order."""
        return self._of(core.CANCELLED)

    @property
    def errors(self) -> dict[str, BaseException]:
        """``{name: exception}`` of every FAILED task, in insertion order.

        Each exception is the one the task's last attempt raised, as it was
        raised (a :class:`TaskTimeoutError` for an attempt that timed out).
        """
        return {self._snap.name(i): e for i, e in sorted(self._errors.items())}

    def outcome(self, task: Handle[Any] | str) -> Outcome[Any]:
        """How *task* ended, as an ``outcome.Outcome``: what an ``all_done`` dependent receives.

        ``outcome.Value(output)`` for a task that SUCCEEDED or was CACHED; otherwise
        ``outcome.Error`` of the task's own exception (FAILED), of a
        :class:`TaskSkippedError` (SKIPPED) or of a
        :class:`TaskCancelledError` (CANCELLED). ``.unwrap()`` gives the
        output or raises the error.

        Raises:
          KeyError: *task* was not part of the run (``targets=``).
        """
        return self._outcome(self._index(task))

    def _outcome(self, i: int) -> Outcome[Any]:
        st = self._states[i]
        if st == core.EXCLUDED:
            raise KeyError(f"task {self._snap.name(i)!r} was not part of this run (targets=)")
        return task_outcome(
            self._snap, st, i, self._outputs, self._errors, self._states.__getitem__
        )

    def __getitem__(self, task: Handle[Any] | str) -> Any:
        """``report[task]``: the output of *task*, which SUCCEEDED or was CACHED.

        Raises:
          TaskFailedError: The task FAILED; its exception is ``__cause__``.
          TaskSkippedError: The task was SKIPPED.
          TaskCancelledError: The task was CANCELLED.
          KeyError: The task was not part of the run (``targets=``).
        """
        i = self._index(task)
        st = self._states[i]
        if st == core.SUCCEEDED or st == CACHED:
            return self._outputs[i]
        if st == core.FAILED:
            err = self._errors[i]
            raise TaskFailedError(self._snap.name(i), err) from err
        return self._outcome(i).unwrap()

    def __contains__(self, task: object) -> bool:
        """``task in report``: whether a task (handle or name) was part of the run; never raises."""
        if not isinstance(task, (str, Handle)):
            return False
        try:
            return bool(self._states[self._snap.index(task)] != core.EXCLUDED)
        except (KeyError, TypeError, ValueError):
            return False

    def __iter__(self) -> Iterator[Handle[Any]]:
        """The handles of the run's tasks, in insertion order (not those ``targets=`` left out)."""
        return (self._snap.handle(i) for i, s in enumerate(self._states) if s != core.EXCLUDED)

    def __len__(self) -> int:
        """The number of tasks in the run (without those ``targets=`` left out)."""
        return sum(1 for s in self._states if s != core.EXCLUDED)

    def batch(self, task: Handle[Any] | str) -> int | None:
        """The number of the :func:`batched` call that ran *task*'s last attempt.

        Calls are numbered from 1 in the order they started, across all the
        batched functions of the run. None for a task whose function is not
        batched, or that never ran. Tasks with the same number ran in one
        call.
        """
        return self._batch_of.get(self._index(task))

    def timing(self, task: Handle[Any] | str) -> TaskTiming:
        """When *task* ran: first start, last end and attempts, as a :class:`TaskTiming`."""
        i = self._index(task)
        start = self._start[i]
        if math.isnan(start):
            return TaskTiming(None, None, 0)
        return TaskTiming(start, self._end[i], self._attempts[i])

    @property
    def stats(self) -> RunStats:
        """Figures of the whole run, as a :class:`RunStats`.

        Its makespan, busy time, speedup, peak concurrency, waves and tasks
        per second.
        """
        tasks = len(self)
        makespan = self._ended_at - self._started_at
        levels = self._snap.graph.levels()
        waves = max(
            (levels[i] + 1 for i, s in enumerate(self._states) if s != core.EXCLUDED), default=0
        )
        return RunStats(
            tasks=tasks,
            makespan=makespan,
            busy=self._busy,
            speedup=self._busy / makespan if makespan > 0 else 0.0,
            peak_concurrency=self._peak,
            waves=waves,
            tasks_per_second=tasks / makespan if makespan > 0 else 0.0,
            cached=self._states.count(CACHED),
        )

    def critical_path(self) -> list[Handle[Any]]:
        """The chain of tasks that bounded the makespan, first task first.

        It ends at the task that ended last; each task before it is the
        dependency of the next that ended last, the one the next waited for.
        To make the run shorter, make these tasks faster. Empty when no task
        ran.
        """
        order = self._end_order
        last = max(range(len(order)), key=order.__getitem__, default=-1)
        if last < 0 or order[last] == 0:
            return []
        path = [last]
        while True:
            parents = self._snap.graph.parents(path[-1])
            gate = max(parents, key=order.__getitem__, default=-1)
            if gate < 0 or order[gate] == 0:
                break
            path.append(gate)
        return [self._snap.handle(k) for k in reversed(path)]

    def summary(self, *, slowest: int = 5) -> str:
        """A table for a person to read: figures, counts per state, the slowest tasks, the failures.

        The first line gives the run's figures (see :attr:`stats`), then
        come the number of tasks in each state (CACHED only when some were), the *slowest* tasks by
        duration with their attempts, and each FAILED task with the first
        line of its error::

            print(report.summary(slowest=3))

        Args:
          slowest: How many of the slowest tasks to list. Default 5.
        """
        stats = self.stats
        lines = [
            f"{stats.tasks} tasks in {stats.makespan:.3f} s "
            f"(busy {stats.busy:.3f} s, speedup {stats.speedup:.2f}, "
            f"peak concurrency {stats.peak_concurrency}, {stats.waves} waves)",
            "",
        ]
        if self._batch_of:
            # Calls are numbered 1, 2, ... as they start, and the last one
            # ran the last attempt of its tasks: the highest number is how
            # many calls ran, retried ones included (each attempt of a
            # batched task ran in one call).
            calls = max(self._batch_of.values())
            attempts = sum(self._attempts[i] for i in self._batch_of)
            lines[0] += f"; {calls} batched calls of {attempts / calls:.1f} tasks on average"
        counts: dict[TaskState, int] = {s: 0 for s in TaskState if s is not TaskState.PENDING}
        for s in self._states:
            if s != core.EXCLUDED:
                counts[STATE_OF.get(s, TaskState.CANCELLED)] += 1
        width = max(len(state.name) for state in counts)
        if not counts[TaskState.CACHED]:
            del counts[TaskState.CACHED]  # a run without a cache hit says nothing of it
        lines += [f"  {state.name:<{width}}  {count:>8}" for state, count in counts.items()]
        ran = [
            (self._end[i] - self._start[i], i)
            for i in range(len(self._start))
            if not math.isnan(self._start[i])
        ]
        top = heapq.nlargest(slowest, ran, key=lambda d: (d[0], -d[1]))
        if top:
            names = [self._snap.name(i) for _, i in top]
            nw = max(len(n) for n in names)
            lines += ["", f"slowest {len(top)}:"]
            lines += [
                f"  {name:<{nw}}  {dur:>10.3f} s  {self._attempts[i]} attempt(s)"
                for name, (dur, i) in zip(names, top, strict=True)
            ]
        if self._errors:
            lines += ["", f"failures ({len(self._errors)}):"]
            items = sorted(self._errors.items())
            names = [self._snap.name(i) for i, _ in items]
            nw = max(len(n) for n in names)
            for name, (_, err) in zip(names, items, strict=True):
                first = (message_of(err).splitlines() or [""])[0]
                lines.append(f"  {name:<{nw}}  {type(err).__name__}: {first}".rstrip())
        return "\n".join(lines)

    def to_chrome_trace(self, file: str | os.PathLike[str] | IO[str]) -> None:
        """Write the run as a trace in Chrome's Trace Event Format (JSON).

        Open it in Perfetto (https://ui.perfetto.dev) or ``chrome://tracing``
        to see what ran when. Each attempt is a slice named after its task,
        with its tags, final state and attempt number as args, on one lane
        per slot of concurrency. A :func:`batched` call is one slice, named
        after the task that opened it, with the batch number and the names
        of every task it ran as args. A CACHED task, which did not run, is an
        instant event (category ``"cached"``) at the time it ended. Times
        count from the run's start::

            report.to_chrome_trace("run.trace.json")

        Args:
          file: A path (``str`` or ``os.PathLike``), written in UTF-8 and
            replaced if it exists, or a text file open for writing.
        """
        events: list[dict[str, Any]] = []
        free: list[int] = []
        busy: list[tuple[float, int]] = []
        lanes = 0
        batches: dict[int, dict[str, Any]] = {}
        for start, end, i, attempt in self._spans():
            number = self._batch_of.get(i) if attempt == self._attempts[i] else None
            if number is not None and number in batches:
                batches[number]["args"]["tasks"].append(self._snap.name(i))
                continue
            while busy and busy[0][0] <= start:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                lane = heapq.heappop(free)
            else:
                lane = lanes
                lanes += 1
            heapq.heappush(busy, (end, lane))
            opts = self._snap.options(i)
            event: dict[str, Any] = {
                "name": self._snap.name(i),
                "cat": ",".join(opts.tags) or "task",
                "ph": "X",
                "ts": (start - self._started_at) * 1e6,
                "dur": (end - start) * 1e6,
                "pid": 1,
                "tid": lane + 1,
                "args": {
                    "state": self.state(self._snap.handle(i)).name,
                    "attempt": attempt,
                    "tags": list(opts.tags),
                },
            }
            if number is not None:
                event["args"].update(batch=number, tasks=[self._snap.name(i)])
                batches[number] = event
            events.append(event)
        # A cached task did not run: an instant event at the time it ended.
        events += [
            {
                "name": self._snap.name(i),
                "cat": "cached",
                "ph": "i",
                "s": "p",
                "ts": (self._end[i] - self._started_at) * 1e6,
                "pid": 1,
                "tid": 0,
                "args": {"state": TaskState.CACHED.name},
            }
            for i, s in enumerate(self._states)
            if s == CACHED
        ]
        events += [
            {
                "name": "thread_name",
                "ph": "M",
                "pid": 1,
                "tid": lane + 1,
                "args": {"name": f"slot {lane + 1}"},
            }
            for lane in range(lanes)
        ]
        doc = {"traceEvents": events, "displayTimeUnit": "ms"}
        if isinstance(file, (str, os.PathLike)):
            with open(file, "w", encoding="utf-8") as f:
                json.dump(doc, f)
        else:
            json.dump(doc, file)

    def _spans(self) -> list[tuple[float, float, int, int]]:
        # Every attempt as (start, end, task, attempt), by start time. Tasks
        # that may retry have each attempt in ``extra``; any other task that
        # started ran once, from its start to its end.
        spans = [(s, e, i, a) for i, a, s, e in self._extra]
        recorded = {i for i, _, _, _ in self._extra}
        for i in range(len(self._start)):
            if self._attempts[i] and i not in recorded:
                spans.append((self._start[i], self._end[i], i, 1))
        spans.sort(key=lambda x: (x[0], x[2], x[3]))
        return spans

    def __repr__(self) -> str:
        stats = self.stats
        return f"<RunReport {stats.tasks} tasks ok={self.ok} makespan={stats.makespan:.3f}s>"

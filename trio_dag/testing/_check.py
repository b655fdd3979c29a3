"""check_run: hold a finished run to the guarantees trio_dag makes for every run.

The checks read only what a user can see: the DAG, the report and the
events, in the order they happened. Each broken rule raises an
AssertionError that starts with the rule's name (a key of :data:`RULES`)
and names the tasks involved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import outcome
import trio

from .. import (
    Handle,
    TaskCancelledError,
    TaskFailedError,
    TaskSkippedError,
    TaskState,
)
from ..events import Event
from ._facts import Run
from ._recorder import Recorder
from ._replay import EventCheck
from ._rules import FINAL, OK, RAN, RULES, broken
from ._timings import check_overlaps

if TYPE_CHECKING:
    from .. import DAG, RunReport
    from .._policies import Policy, Strategy

__all__ = ["RULES", "check_run"]


def check_run(
    dag: DAG,
    report: RunReport,
    events: Recorder | Iterable[Event] | None = None,
    *,
    cancelled: bool = False,
    cancelled_tasks: Iterable[Handle[Any] | str] = (),
    limit: int | trio.CapacityLimiter | None = None,
    resources: Mapping[str, float] | None = None,
    policy: Policy = "fifo",
    strategy: Strategy = "immediate",
    on_failure: str = "skip",
    targets: Iterable[Handle[Any] | str] | None = None,
    check: bool = True,
    on_event: Callable[[Event], None] | None = None,
) -> None:
    """Check a finished run of *dag* against every guarantee trio_dag makes for a run.

    Give it the run's report, its *events* and the options the run was
    given, as keywords. It checks what they show: dependency order, final
    states, the ``limit`` and the resource capacities, the skip and
    fail-fast rules, what ended CANCELLED and why, retries, the wave
    barrier, batched calls, and the order the policy sets (each rule is a
    key of :data:`RULES`, with what it promises). It returns None when every
    rule holds::

        options = dict(limit=2, resources={"gpu": 1}, on_failure="fail_fast")
        recorder = trio_dag.testing.Recorder()
        report = await trio_dag.run(dag, check=False, on_event=recorder, **options)
        trio_dag.testing.check_run(dag, report, recorder, **options)

    Without events, only what the report shows is checked: final states,
    dependency order and the wave barrier by timing, the skip and fail-fast
    rules, what ended CANCELLED, batch numbers, peak concurrency, and the
    limit and resources wherever the report's timings overlap. With them,
    also concurrency and resource use at every start, retries, durations,
    every batched call, the order of every skip and stop, (with
    ``limit=1``, strategy ``"immediate"``, no ``uses`` and no delayed
    retry) the start order of the policy, and (any strategy but
    ``"waves"``, any policy but ``"lifo"``) that no task overtakes one that
    waits before it for the single resource it uses. Threshold groups are
    not checked: the events do not show when a group opened.

    The rules hold on any clock: they compare events by their order, and
    times only where one clock reading must come before another (a task
    starts after its dependency ended), never two readings for equality;
    so runs on the real clock are checked as well as runs on a
    ``MockClock``. Resource amounts and capacities are summed exactly, each
    float as the shortest decimal that reads back as it, so three tasks
    using 0.1 fit in a capacity of 0.3, as they do in a run. From the
    report alone, the bodies counted against the limit and the capacities
    are those whose timings strictly overlap (spans that only touch do
    not), among tasks that made a single attempt. See the user guide, *The
    testing toolkit*.

    Args:
      dag: The DAG that ran. It may have grown since: only the tasks it had
        when the run started are checked.
      report: The run's :class:`~trio_dag.RunReport` (run it with
        ``check=False``, or take ``.report`` of the
        :class:`~trio_dag.RunFailedError`).
      events: The run's events, in the order they happened: a
        :class:`Recorder`, or any iterable of events. Default ``None``: the
        events of ``on_event`` when it is a :class:`Recorder`, otherwise
        none (fewer rules can be checked).
      cancelled: Say True when something other than its tasks may have
        stopped the run: :meth:`~trio_dag.Run.cancel`, a cancelled scope
        around it, a KeyboardInterrupt from outside, or an ``on_event``
        callback that raised (the run raised
        :class:`~trio_dag.CallbackError`). Default False: then a task that
        ended CANCELLED breaks a rule unless a failure under fail-fast (for
        tasks other than ``all_done`` teardown), a task raising a
        ``BaseException``, or a policy key function that raised or gave
        keys that do not compare explains it.
      cancelled_tasks: The tasks :meth:`~trio_dag.Run.cancel_task` was
        called for during the run (handles or names). Each may end
        CANCELLED without stopping anything else, and its dependents then
        end SKIPPED (``all_done`` ones run), under ``"fail_fast"`` too. A
        task that had ended before the call keeps its state. Default: none.
      limit: The ``limit`` the run was given. Default ``None``. A task
        that awaits :meth:`~trio_dag.Run.result` (or iterates
        :meth:`~trio_dag.Run.as_completed`) in its body gives back its slot
        while it waits, which neither the report nor the events show:
        check such a run without its ``limit``.
      resources: The ``resources`` the run was given. Default ``None``.
      policy: The ``policy`` the run was given. A key function is called
        again, once per task, to check the start order. Default ``"fifo"``.
      strategy: The ``strategy`` the run was given. Default
        ``"immediate"``.
      on_failure: The ``on_failure`` the run was given. Default ``"skip"``.
      targets: The ``targets`` the run was given. Default ``None``.
      check: Ignored: accepted so that the run's options can be passed as
        they are.
      on_event: The ``on_event`` the run was given: when it is a
        :class:`Recorder` and *events* is None, its events are checked.

    Raises:
      AssertionError: A rule is broken. The message names the rule (a key
        of :data:`RULES`: ``rule 'limit' broken: ...``) and the tasks
        involved, and ends with what the rule promises.
      ValueError: *report* is of a run of another DAG, or ``on_failure`` or
        ``limit`` has a value a run does not take.
    """
    if events is None and isinstance(on_event, Recorder):
        events = on_event
    if on_failure not in ("skip", "fail_fast"):
        raise ValueError(f"on_failure must be 'skip' or 'fail_fast', got {on_failure!r}")
    run = Run(
        dag,
        report,
        targets,
        limit,
        resources,
        policy,
        strategy,
        on_failure,
        cancelled,
        cancelled_tasks,
    )
    check_report(run)
    if events is not None:
        EventCheck(run, list(events)).check()
    else:
        # The events show who ran together, and that the report's peak agrees.
        peak = report.stats.peak_concurrency
        if run.cap is not None and peak > run.cap:
            broken("limit", f"report.stats.peak_concurrency is {peak}, above the limit {run.cap}")
    check_overlaps(run)


def check_report(run: Run) -> None:
    """Check what the report alone shows: the rules that need no events."""
    _membership(run)
    _final_states(run)
    _report_agrees(run)
    _order_by_timing(run)
    _skips(run)
    _cancel_causes(run)
    _batches(run)
    _cached(run)
    _fail_fast_by_timing(run)
    if run.strategy == "waves":
        _waves_by_timing(run)


def _membership(run: Run) -> None:
    expected = [True] * run.n
    if run.targets is not None:
        # Tasks added while the run went on are in it, whatever targets= says.
        expected = [False] * run.base_n + [True] * (run.n - run.base_n)
        stack = list(run.targets)
        while stack:
            i = stack.pop()
            if not expected[i]:
                expected[i] = True
                stack.extend(run.parents[i])
    for i in range(run.n):
        if expected[i] != run.in_run[i]:
            how = "left out of" if expected[i] else "part of"
            broken(
                "targets",
                f"task {run.label(i)} was {how} the run (state {run.states[i].name})",
            )


def _final_states(run: Run) -> None:
    for i in run.members():
        if run.states[i] not in FINAL:
            broken("final state", f"task {run.label(i)} ended {run.states[i].name}")


def _report_agrees(run: Run) -> None:
    report = run.report
    by_state: dict[TaskState, list[Handle[Any]]] = {s: [] for s in FINAL}
    for i in run.members():
        by_state[run.states[i]].append(run.handles[i])
    lists = {
        TaskState.SUCCEEDED: report.succeeded,
        TaskState.CACHED: report.cached,
        TaskState.FAILED: report.failed,
        TaskState.SKIPPED: report.skipped,
        TaskState.CANCELLED: report.cancelled,
    }
    for state, listed in lists.items():
        if listed != by_state[state]:
            broken(
                "report",
                f"report.{state.name.lower()} lists {[h.name for h in listed]}, "
                f"but report.state() says {[h.name for h in by_state[state]]}",
            )
    ok = len(by_state[TaskState.SUCCEEDED]) + len(by_state[TaskState.CACHED])
    if report.ok != (ok == sum(run.in_run)):
        broken("report", f"report.ok is {report.ok}")
    if report.stats.cached != len(by_state[TaskState.CACHED]):
        broken("report", f"report.stats.cached is {report.stats.cached}")
    failed = {h.name for h in by_state[TaskState.FAILED]}
    if set(run.errors) != failed:
        broken("report", f"report.errors names {sorted(run.errors)}, not {sorted(failed)}")
    if report.stats.tasks != sum(run.in_run):
        broken("report", f"report.stats.tasks is {report.stats.tasks}, not {sum(run.in_run)}")
    for i in range(run.n):
        _task_agrees(run, i)


def _task_agrees(run: Run, i: int) -> None:
    report, h, state = run.report, run.handles[i], run.states[i]
    timing = report.timing(h)
    if (
        (timing.start is None) != (timing.attempts == 0)
        or (timing.start is None) != (timing.end is None)
        or (timing.start is not None and timing.end is not None and timing.end < timing.start)
    ):
        broken("report", f"task {run.label(i)} has timing {timing}")
    if timing.attempts > run.opts[i].retries + 1:
        broken(
            "attempts",
            f"task {run.label(i)} made {timing.attempts} attempts with "
            f"retries={run.opts[i].retries}",
        )
    if state in RAN and timing.attempts == 0:
        broken("final state", f"task {run.label(i)} ended {state.name} but never started")
    if state is TaskState.PENDING:
        if timing.attempts:
            broken("targets", f"task {run.label(i)} was left out of the run but started")
        return
    result = report.outcome(h)
    try:
        value = report[h]
    except (TaskFailedError, TaskSkippedError, TaskCancelledError) as exc:
        raised: BaseException | None = exc
    else:
        raised = None
    if state in OK:
        if not isinstance(result, outcome.Value) or raised is not None:
            broken("report", f"task {run.label(i)} {state.name} but its outcome is {result!r}")
        if result.value is not value:
            broken("report", f"report[{run.label(i)}] is not its outcome's value")
        return
    expected = {
        TaskState.FAILED: TaskFailedError,
        TaskState.SKIPPED: TaskSkippedError,
        TaskState.CANCELLED: TaskCancelledError,
    }[state]
    if not isinstance(result, outcome.Error) or not isinstance(raised, expected):
        broken(
            "report",
            f"task {run.label(i)} ended {state.name} but report[...] gives "
            f"{raised!r} and its outcome is {result!r}",
        )
    if state is TaskState.FAILED and result.error is not run.errors[run.names[i]]:
        broken("report", f"the outcome of failed task {run.label(i)} is not its error")


def _order_by_timing(run: Run) -> None:
    timing = run.report.timing
    for i in run.members():
        start = timing(run.handles[i]).start
        if start is None:
            continue
        for p in run.parents[i]:
            dep = run.states[p]
            if dep not in OK and not run.all_done(i):
                broken(
                    "dependency order",
                    f"task {run.label(i)} started although its dependency "
                    f"{run.label(p)} ended {dep.name}",
                )
            end = timing(run.handles[p]).end
            if end is not None and start < end:
                broken(
                    "dependency order",
                    f"task {run.label(i)} started at {start}, before its dependency "
                    f"{run.label(p)} ended at {end}",
                )


def _skips(run: Run) -> None:
    states = run.states
    for i in run.members():
        bad = [p for p in run.parents[i] if states[p] not in OK]
        if states[i] is TaskState.SKIPPED:
            if run.all_done(i):
                broken("skip", f"all_done task {run.label(i)} ended SKIPPED")
            if not bad:
                broken(
                    "skip",
                    f"task {run.label(i)} ended SKIPPED, but all its dependencies succeeded",
                )
            if run.report.timing(run.handles[i]).attempts:
                broken("skip", f"task {run.label(i)} ended SKIPPED after it started")
            if run.fail_fast and not any(_cut_off(run, p) for p in bad):
                broken(
                    "fail_fast",
                    f"task {run.label(i)} ended SKIPPED (its dependency {run.label(bad[0])} "
                    "did not succeed); under fail_fast it must end CANCELLED",
                )
            if all(_raised_base_exception(run, p) for p in bad):
                broken(
                    "cancellation",
                    f"task {run.label(i)} ended SKIPPED, but its dependency "
                    f"{run.label(bad[0])} raised a BaseException, which cancels every "
                    "task that had not ended",
                )
        elif (
            not run.fail_fast
            and not run.all_done(i)
            # CANCELLED: a stop from outside may have come before the failure.
            and states[i] is not TaskState.CANCELLED
            and any(states[p] in (TaskState.FAILED, TaskState.SKIPPED) for p in bad)
        ):
            p = next(p for p in bad if states[p] in (TaskState.FAILED, TaskState.SKIPPED))
            broken(
                "skip",
                f"task {run.label(i)} ended {states[i].name}, but its dependency "
                f"{run.label(p)} ended {states[p].name}, so it must end SKIPPED",
            )


def _cut_off(run: Run, i: int) -> bool:
    """Whether task *i* ended CANCELLED by run.cancel_task, or SKIPPED because of one.

    From the report alone: the order of a cancel and a failure is not known.
    """
    if run.cancelled_alone(i):
        return True
    return run.states[i] is TaskState.SKIPPED and any(
        _cut_off(run, p) for p in run.parents[i] if run.states[p] not in OK
    )


def _raised_base_exception(run: Run, i: int) -> bool:
    """Whether task *i* FAILED with a BaseException that is not an Exception."""
    error = run.errors.get(run.names[i])
    return error is not None and not isinstance(error, Exception)


def _cancel_causes(run: Run) -> None:
    """A task ends CANCELLED only when something stopped the run."""
    if run.unseen_stop:
        return
    # A BaseException raised by a task stops everything, as from outside.
    if any(not isinstance(e, Exception) for e in run.errors.values()):
        return
    failed = any(run.states[i] is TaskState.FAILED for i in run.members())
    for i in run.members():
        if run.states[i] is not TaskState.CANCELLED or run.cancelled_alone(i):
            continue
        if run.fail_fast and failed and not run.all_done(i):
            continue
        if not run.fail_fast:
            why = "on_failure='skip' cancels nothing"
        elif failed:
            why = "it is all_done teardown, which still runs after a failure under fail_fast"
        else:
            why = "no task failed under fail_fast"
        broken(
            "cancel cause",
            f"task {run.label(i)} ended CANCELLED, but nothing stopped the run: {why}, and "
            "check_run was not told cancelled=True (the run stopped from outside or by a "
            "CallbackError)",
        )


def _batches(run: Run) -> None:
    """What the report says of batched calls: one function each, at most max_size tasks."""
    calls: dict[int, list[int]] = {}
    for i in run.members():
        number = run.report.batch(run.handles[i])
        if number is None:
            continue
        fn = run.batched[i]
        if fn is None:
            broken(
                "batches",
                f"report.batch({run.label(i)}) is {number!r}, but the task is not of a "
                "batched function",
            )
        if not isinstance(number, int) or number < 1:
            broken("batches", f"report.batch({run.label(i)}) is {number!r}, not a number >= 1")
        if run.report.timing(run.handles[i]).attempts == 0:
            broken("batches", f"report.batch({run.label(i)}) is {number}, but it never started")
        tasks = calls.setdefault(number, [])
        tasks.append(i)
        if run.batched[tasks[0]] is not fn:
            broken(
                "batches",
                f"tasks {run.label(tasks[0])} and {run.label(i)} of different functions "
                f"ran in batched call {number}",
            )
        if len(tasks) > fn.max_size:
            broken(
                "batches",
                f"batched call {number} ran {[run.names[t] for t in tasks]}, more than "
                f"max_size={fn.max_size} of {fn!r}",
            )


def _cached(run: Run) -> None:
    """A CACHED task was added with cache=, never started, and its dependencies succeeded."""
    for i in run.members():
        if run.states[i] is not TaskState.CACHED:
            continue
        if not run.opts[i].cache:
            broken("cache", f"task {run.label(i)} ended CACHED but was not added with cache=")
        if run.report.timing(run.handles[i]).attempts:
            broken("cache", f"task {run.label(i)} ended CACHED after it started")
        bad = [p for p in run.parents[i] if run.states[p] not in OK]
        if bad and not run.all_done(i):
            broken(
                "dependency order",
                f"task {run.label(i)} ended CACHED although its dependency "
                f"{run.label(bad[0])} ended {run.states[bad[0]].name}",
            )


def _fail_fast_by_timing(run: Run) -> None:
    if not run.fail_fast:
        return
    timing = run.report.timing
    # A task that joined others (a run that added tasks) fails when a joined
    # task does, after its body's end: its TaskFailedError is no failure time.
    joined = {
        name for name, error in run.errors.items() if run.grown and type(error) is TaskFailedError
    }
    ends = [
        timing(run.handles[i]).end
        for i in run.members()
        if run.states[i] is TaskState.FAILED and run.names[i] not in joined
    ]
    first = min((e for e in ends if e is not None), default=None)
    if first is None:
        return
    for i in run.members():
        start = timing(run.handles[i]).start
        if start is not None and start > first and not run.all_done(i):
            broken(
                "fail_fast",
                f"task {run.label(i)} started at {start}, after the first failure at {first}",
            )


def _waves_by_timing(run: Run) -> None:
    timing = run.report.timing
    # The latest end of each wave, among the tasks that started.
    last_end: dict[int, float] = {}
    for i in run.members():
        end = timing(run.handles[i]).end
        if end is not None:
            level = run.levels[i]
            last_end[level] = max(last_end.get(level, end), end)
    latest = -math.inf
    for level in range(max(run.levels, default=-1) + 1):
        for i in run.members():
            start = timing(run.handles[i]).start
            if run.levels[i] == level and start is not None and start < latest:
                broken(
                    "waves",
                    f"task {run.label(i)} of wave {level} started at {start}, before "
                    f"an earlier wave ended at {latest}",
                )
        latest = max(latest, last_end.get(level, -math.inf))

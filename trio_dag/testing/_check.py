"""check_run: hold a finished run to the guarantees of SPEC section 3.

The checks read only what a user can see: the DAG, the report and the
events, in the order they happened. Each broken rule raises an
AssertionError that starts with the rule's name (a key of :data:`RULES`)
and names the tasks involved.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import outcome
import trio

from .. import (
    Batched,
    Handle,
    TaskCancelledError,
    TaskFailedError,
    TaskOptions,
    TaskSkippedError,
    TaskState,
)
from ..events import Event
from ._order import primary_keys
from ._recorder import Recorder
from ._replay import EventCheck
from ._rules import FINAL, RAN, RULES, broken
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
    limit: int | trio.CapacityLimiter | None = None,
    resources: Mapping[str, float] | None = None,
    policy: Policy = "fifo",
    strategy: Strategy = "immediate",
    on_failure: str = "skip",
    targets: Iterable[Handle[Any] | str] | None = None,
    check: bool = True,
    on_event: Callable[[Event], None] | None = None,
) -> None:
    """Check a finished run of *dag* against every guarantee of SPEC section 3.

    Give it the run's report, its *events* (a :class:`Recorder`, or any
    iterable of events in the order they happened) and the options the run
    was given, as keywords; ``check`` is ignored, and when *events* is None
    and ``on_event`` is a Recorder, that Recorder's events are used::

        options = dict(limit=2, resources={"gpu": 1}, on_failure="fail_fast")
        recorder = trio_dag.testing.Recorder()
        report = await trio_dag.run(dag, check=False, on_event=recorder, **options)
        trio_dag.testing.check_run(dag, report, recorder, **options)

    Say ``cancelled=True`` when something other than its tasks may have
    stopped the run: ``run.cancel()``, a cancelled scope around it,
    KeyboardInterrupt, or an ``on_event`` callback that raised (the run
    raised CallbackError). Otherwise a task that ended CANCELLED is a broken
    rule unless a failure under fail_fast (for tasks other than
    ``all_done`` teardown), a task raising a BaseException, or a policy key
    function that raises or gives keys that do not compare explains it.

    Without events only what the report shows is checked: final states,
    dependency order and the wave barrier by timing, the skip and fail-fast
    rules, what ended CANCELLED, batch numbers, peak concurrency, and the
    limit and resources wherever the report's timings overlap (see below).
    With them, also concurrency and resource use at every start, retries,
    durations, every batched call, the order of every skip and stop, (with
    ``limit=1``, strategy "immediate", no ``uses`` and no delayed retry) the
    start order of the policy, and (any strategy but "waves", any policy but
    "lifo") that no task overtakes one that waits before it for the single
    resource it uses. A key function is called again for these, once per
    task. Threshold groups are not checked: the events do not show when a
    group opened.

    The rules hold on any clock: they compare events by their order, and
    times only where one clock reading must come before another (a task
    starts after its dependency ended), never two readings for equality;
    so runs on the real clock are checked as well as runs on a MockClock.
    Resource amounts and capacities are summed exactly, each float as the
    shortest decimal that reads back as it, so three tasks using 0.1 fit in
    a capacity of 0.3 (the engine accounts them the same way). From the
    report alone, the bodies counted against the limit and the capacities
    are those whose timings strictly overlap (spans that only touch do
    not), among tasks that made a single attempt.

    Raises AssertionError naming the broken rule (see :data:`RULES`) and the
    tasks involved.
    """
    if events is None and isinstance(on_event, Recorder):
        events = on_event
    if on_failure not in ("skip", "fail_fast"):
        raise ValueError(f"on_failure must be 'skip' or 'fail_fast', got {on_failure!r}")
    run = Run(dag, report, targets, limit, resources, policy, strategy, on_failure, cancelled)
    run.check_report()
    if events is not None:
        EventCheck(run, list(events)).check()
    else:
        # The events show who ran together, and that the report's peak agrees.
        peak = report.stats.peak_concurrency
        if run.cap is not None and peak > run.cap:
            broken("limit", f"report.stats.peak_concurrency is {peak}, above the limit {run.cap}")
    check_overlaps(run)


class Run:
    """What the DAG, the options and the report say; the checks that need only them."""

    def __init__(
        self,
        dag: DAG,
        report: RunReport,
        targets: Iterable[Handle[Any] | str] | None,
        limit: int | trio.CapacityLimiter | None,
        resources: Mapping[str, float] | None,
        policy: Policy,
        strategy: Strategy,
        on_failure: str,
        cancelled: bool,
    ) -> None:
        self.report = report
        # The only private read: the snapshot the run ran, for the number of its
        # tasks (the DAG may have grown since), their options and functions,
        # which the public API does not expose.
        snap = report._snap
        if snap.dag is not dag:
            raise ValueError(f"the report is of a run of another DAG than {dag!r}")
        self.n = n = snap.n
        self.handles = handles = list(itertools.islice(dag, n))
        self.states = states = [report.state(h) for h in handles]
        self.names = [h.name for h in handles]
        self.opts: list[TaskOptions] = [snap.options(i) for i in range(n)]
        # The batched function of each task that the engine runs in batches.
        self.batched: list[Batched[Any, Any] | None] = [
            fn if isinstance(fn, Batched) and opts.run_in is None else None
            for fn, opts in zip((snap.fn(i) for i in range(n)), self.opts, strict=True)
        ]
        self.parents = [sorted({d.index for d in dag.dependencies(h)}) for h in handles]
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, ps in enumerate(self.parents):
            for p in ps:
                self.children[p].append(i)
        self.in_run = [s is not TaskState.PENDING for s in states]
        self.targets = None if targets is None else _indices(dag, targets)
        self.cap = _capacity(limit)
        self.limiter = isinstance(limit, trio.CapacityLimiter)
        self.resources = dict(resources or {})
        self.policy = policy
        self.strategy = strategy
        self.fail_fast = on_failure == "fail_fast"
        self.levels = _levels(self.parents)
        # A stop the events may not show: from outside, or by a callback that raised.
        self.unseen_stop = cancelled or self._key_function_raised()

    def _key_function_raised(self) -> bool:
        """Whether the policy key function raised during the run (CallbackError), as it may
        have if it raises now or gives keys that do not compare."""
        if not callable(self.policy) or not any(s is TaskState.CANCELLED for s in self.states):
            return False
        keys = primary_keys(self, self.policy)
        if keys is None:
            return True
        try:
            sorted(keys[i] for i in self.members())
        except TypeError:
            return True
        return False

    def label(self, i: int) -> str:
        return repr(self.names[i])

    def all_done(self, i: int) -> bool:
        return self.opts[i].trigger == "all_done"

    def members(self) -> Iterable[int]:
        return (i for i in range(self.n) if self.in_run[i])

    # -- from the report alone -------------------------------------------------

    def check_report(self) -> None:
        self._membership()
        self._final_states()
        self._report_agrees()
        self._order_by_timing()
        self._skips()
        self._cancel_causes()
        self._batches()
        self._fail_fast_by_timing()
        if self.strategy == "waves":
            self._waves_by_timing()

    def _membership(self) -> None:
        expected = [True] * self.n
        if self.targets is not None:
            expected = [False] * self.n
            stack = list(self.targets)
            while stack:
                i = stack.pop()
                if not expected[i]:
                    expected[i] = True
                    stack.extend(self.parents[i])
        for i in range(self.n):
            if expected[i] != self.in_run[i]:
                how = "left out of" if expected[i] else "part of"
                broken(
                    "targets",
                    f"task {self.label(i)} was {how} the run (state {self.states[i].name})",
                )

    def _final_states(self) -> None:
        for i in self.members():
            if self.states[i] not in FINAL:
                broken("final state", f"task {self.label(i)} ended {self.states[i].name}")

    def _report_agrees(self) -> None:
        report = self.report
        by_state: dict[TaskState, list[Handle[Any]]] = {s: [] for s in FINAL}
        for i in self.members():
            by_state[self.states[i]].append(self.handles[i])
        lists = {
            TaskState.SUCCEEDED: report.succeeded,
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
        if report.ok != (len(by_state[TaskState.SUCCEEDED]) == sum(self.in_run)):
            broken("report", f"report.ok is {report.ok}")
        failed = {h.name for h in by_state[TaskState.FAILED]}
        self.errors = report.errors  # built on each access: read it once
        if set(self.errors) != failed:
            broken("report", f"report.errors names {sorted(self.errors)}, not {sorted(failed)}")
        if report.stats.tasks != sum(self.in_run):
            broken("report", f"report.stats.tasks is {report.stats.tasks}, not {sum(self.in_run)}")
        for i in range(self.n):
            self._task_agrees(i)

    def _task_agrees(self, i: int) -> None:
        report, h, state = self.report, self.handles[i], self.states[i]
        timing = report.timing(h)
        if (
            (timing.start is None) != (timing.attempts == 0)
            or (timing.start is None) != (timing.end is None)
            or (timing.start is not None and timing.end is not None and timing.end < timing.start)
        ):
            broken("report", f"task {self.label(i)} has timing {timing}")
        if timing.attempts > self.opts[i].retries + 1:
            broken(
                "attempts",
                f"task {self.label(i)} made {timing.attempts} attempts with "
                f"retries={self.opts[i].retries}",
            )
        if state in RAN and timing.attempts == 0:
            broken("final state", f"task {self.label(i)} ended {state.name} but never started")
        if state is TaskState.PENDING:
            if timing.attempts:
                broken("targets", f"task {self.label(i)} was left out of the run but started")
            return
        result = report.outcome(h)
        try:
            value = report[h]
        except (TaskFailedError, TaskSkippedError, TaskCancelledError) as exc:
            raised: BaseException | None = exc
        else:
            raised = None
        if state is TaskState.SUCCEEDED:
            if not isinstance(result, outcome.Value) or raised is not None:
                broken("report", f"task {self.label(i)} SUCCEEDED but its outcome is {result!r}")
            if result.value is not value:
                broken("report", f"report[{self.label(i)}] is not its outcome's value")
            return
        expected = {
            TaskState.FAILED: TaskFailedError,
            TaskState.SKIPPED: TaskSkippedError,
            TaskState.CANCELLED: TaskCancelledError,
        }[state]
        if not isinstance(result, outcome.Error) or not isinstance(raised, expected):
            broken(
                "report",
                f"task {self.label(i)} ended {state.name} but report[...] gives "
                f"{raised!r} and its outcome is {result!r}",
            )
        if state is TaskState.FAILED and result.error is not self.errors[self.names[i]]:
            broken("report", f"the outcome of failed task {self.label(i)} is not its error")

    def _order_by_timing(self) -> None:
        timing = self.report.timing
        for i in self.members():
            start = timing(self.handles[i]).start
            if start is None:
                continue
            for p in self.parents[i]:
                dep = self.states[p]
                if dep is not TaskState.SUCCEEDED and not self.all_done(i):
                    broken(
                        "dependency order",
                        f"task {self.label(i)} started although its dependency "
                        f"{self.label(p)} ended {dep.name}",
                    )
                end = timing(self.handles[p]).end
                if end is not None and start < end:
                    broken(
                        "dependency order",
                        f"task {self.label(i)} started at {start}, before its dependency "
                        f"{self.label(p)} ended at {end}",
                    )

    def _skips(self) -> None:
        states = self.states
        for i in self.members():
            bad = [p for p in self.parents[i] if states[p] is not TaskState.SUCCEEDED]
            if states[i] is TaskState.SKIPPED:
                if self.all_done(i):
                    broken("skip", f"all_done task {self.label(i)} ended SKIPPED")
                if not bad:
                    broken(
                        "skip",
                        f"task {self.label(i)} ended SKIPPED, but all its dependencies succeeded",
                    )
                if self.report.timing(self.handles[i]).attempts:
                    broken("skip", f"task {self.label(i)} ended SKIPPED after it started")
                if self.fail_fast:
                    broken(
                        "fail_fast",
                        f"task {self.label(i)} ended SKIPPED (its dependency {self.label(bad[0])} "
                        "did not succeed); under fail_fast it must end CANCELLED",
                    )
                if all(self._raised_base_exception(p) for p in bad):
                    broken(
                        "cancellation",
                        f"task {self.label(i)} ended SKIPPED, but its dependency "
                        f"{self.label(bad[0])} raised a BaseException, which cancels every "
                        "task that had not ended",
                    )
            elif (
                not self.fail_fast
                and not self.all_done(i)
                # CANCELLED: a stop from outside may have come before the failure.
                and states[i] is not TaskState.CANCELLED
                and any(states[p] in (TaskState.FAILED, TaskState.SKIPPED) for p in bad)
            ):
                p = next(p for p in bad if states[p] in (TaskState.FAILED, TaskState.SKIPPED))
                broken(
                    "skip",
                    f"task {self.label(i)} ended {states[i].name}, but its dependency "
                    f"{self.label(p)} ended {states[p].name}, so it must end SKIPPED",
                )

    def _raised_base_exception(self, i: int) -> bool:
        """Whether task *i* FAILED with a BaseException that is not an Exception."""
        error = self.errors.get(self.names[i])
        return error is not None and not isinstance(error, Exception)

    def _cancel_causes(self) -> None:
        """A task ends CANCELLED only when something stopped the run."""
        if self.unseen_stop:
            return
        # A BaseException raised by a task stops everything, as from outside.
        if any(not isinstance(e, Exception) for e in self.errors.values()):
            return
        failed = any(self.states[i] is TaskState.FAILED for i in self.members())
        for i in self.members():
            if self.states[i] is not TaskState.CANCELLED:
                continue
            if self.fail_fast and failed and not self.all_done(i):
                continue
            if not self.fail_fast:
                why = "on_failure='skip' cancels nothing"
            elif failed:
                why = "it is all_done teardown, which still runs after a failure under fail_fast"
            else:
                why = "no task failed under fail_fast"
            broken(
                "cancel cause",
                f"task {self.label(i)} ended CANCELLED, but nothing stopped the run: {why}, and "
                "check_run was not told cancelled=True (the run stopped from outside or by a "
                "CallbackError)",
            )

    def _batches(self) -> None:
        """What the report says of batched calls: one function each, at most max_size tasks."""
        calls: dict[int, list[int]] = {}
        for i in self.members():
            number = self.report.batch(self.handles[i])
            if number is None:
                continue
            fn = self.batched[i]
            if fn is None:
                broken(
                    "batches",
                    f"report.batch({self.label(i)}) is {number!r}, but the task is not of a "
                    "batched function",
                )
            if not isinstance(number, int) or number < 1:
                broken("batches", f"report.batch({self.label(i)}) is {number!r}, not a number >= 1")
            if self.report.timing(self.handles[i]).attempts == 0:
                broken(
                    "batches", f"report.batch({self.label(i)}) is {number}, but it never started"
                )
            tasks = calls.setdefault(number, [])
            tasks.append(i)
            if self.batched[tasks[0]] is not fn:
                broken(
                    "batches",
                    f"tasks {self.label(tasks[0])} and {self.label(i)} of different functions "
                    f"ran in batched call {number}",
                )
            if len(tasks) > fn.max_size:
                broken(
                    "batches",
                    f"batched call {number} ran {[self.names[t] for t in tasks]}, more than "
                    f"max_size={fn.max_size} of {fn!r}",
                )

    def _fail_fast_by_timing(self) -> None:
        if not self.fail_fast:
            return
        timing = self.report.timing
        ends = [
            timing(self.handles[i]).end
            for i in self.members()
            if self.states[i] is TaskState.FAILED
        ]
        first = min((e for e in ends if e is not None), default=None)
        if first is None:
            return
        for i in self.members():
            start = timing(self.handles[i]).start
            if start is not None and start > first and not self.all_done(i):
                broken(
                    "fail_fast",
                    f"task {self.label(i)} started at {start}, after the first failure at {first}",
                )

    def _waves_by_timing(self) -> None:
        timing = self.report.timing
        # The latest end of each wave, among the tasks that started.
        last_end: dict[int, float] = {}
        for i in self.members():
            end = timing(self.handles[i]).end
            if end is not None:
                level = self.levels[i]
                last_end[level] = max(last_end.get(level, end), end)
        latest = -math.inf
        for level in range(max(self.levels, default=-1) + 1):
            for i in self.members():
                start = timing(self.handles[i]).start
                if self.levels[i] == level and start is not None and start < latest:
                    broken(
                        "waves",
                        f"task {self.label(i)} of wave {level} started at {start}, before "
                        f"an earlier wave ended at {latest}",
                    )
            latest = max(latest, last_end.get(level, -math.inf))


def _indices(dag: DAG, targets: Iterable[Handle[Any] | str]) -> list[int]:
    if isinstance(targets, (str, Handle)):
        targets = [targets]
    return [dag[t].index for t in targets]


def _capacity(limit: object) -> int | None:
    if isinstance(limit, trio.CapacityLimiter):
        tokens = limit.total_tokens
        return None if math.isinf(tokens) else int(tokens)
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(
            f"limit must be None, an int >= 1 or a trio.CapacityLimiter, not {limit!r}"
        )
    return limit


def _levels(parents: list[list[int]]) -> list[int]:
    """Wave of each task: the number of links of its longest chain of dependencies."""
    levels = [0] * len(parents)
    for i in _topological(parents):
        levels[i] = max((levels[p] + 1 for p in parents[i]), default=0)
    return levels


def _topological(parents: list[list[int]]) -> list[int]:
    # Dependencies may come after their dependents (after= names), so not just range(n).
    n = len(parents)
    count = [len(ps) for ps in parents]
    children: list[list[int]] = [[] for _ in range(n)]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    order = [i for i in range(n) if count[i] == 0]
    for v in order:
        for c in children[v]:
            count[c] -= 1
            if count[c] == 0:
                order.append(c)
    return order

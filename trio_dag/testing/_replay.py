"""The checks of check_run that replay the events of a run, in the order they happened.

Walking the events once keeps, for every task, its attempts, whether one is
running, and when it ended; each start is checked against the dependencies,
the limit, the resources, the batched calls, the wave barrier and any stop
before it. Rules are decided by the order of the events; their times are
compared only where one clock reading must come before another, so the
replay holds on the real clock as on a MockClock.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import outcome

from .. import Batched, Handle, TaskState
from ..events import Event, TaskAdded, TaskFinished, TaskNotCached, TaskRetrying, TaskStarted
from ._policy_order import first_out_of_order
from ._resource_order import first_overtaking
from ._rules import OK, RAN, broken, exact

if TYPE_CHECKING:
    from ._facts import Run

__all__ = ["EventCheck"]

# The states of the tasks a failure or a stop ends at once, one event after another.
_CASCADE = frozenset({TaskState.SKIPPED, TaskState.CANCELLED})


class EventCheck:
    """The checks that need the events, in the order they happened."""

    def __init__(self, run: Run, events: list[Event]) -> None:
        self.run = run
        self.events = events
        n = run.n
        self.attempts = [0] * n
        self.running = [False] * n
        self.ended_at = [-1] * n  # position of the task's TaskFinished
        self.finish: list[TaskFinished | None] = [None] * n
        self.first_start = [math.nan] * n
        self.last_start = [math.nan] * n
        self.delay = [0.0] * n
        self.live = 0  # bodies running: plain tasks, and batched calls
        self.peak = 0
        self.call_of: dict[int, tuple[str, int]] = {}  # the call each running task is in
        self.calls: dict[tuple[str, int], list[Any]] = {}  # call: [running tasks, its uses]
        self.in_use: dict[str, int | Fraction] = dict.fromkeys(run.resources, 0)
        self.capacity = {name: exact(c) for name, c in run.resources.items()}
        # Batched calls by number: (function, start time, tasks started in it).
        self.batches: dict[int, tuple[Batched[Any, Any], float, list[int]]] = {}
        self.batch_of: list[int | None] = [None] * n  # of each task's last attempt
        self.fail_pos = -1  # the first failure under fail_fast
        self.fatal_pos = -1  # the first task that raised a BaseException: a stop
        self.halt_pos = -1  # the first cancellation from outside
        # Before each position: the last event that is not a TaskFinished of a
        # task SKIPPED or CANCELLED (what a cascade of skips is made of).
        self.cascade_from: list[int] = []
        self.running_at: dict[int, list[bool]] = {}  # who ran just after each stop
        self.unended = [0] * (max(run.levels, default=-1) + 1)
        for i in run.members():
            self.unended[run.levels[i]] += 1
        self.wave = 0
        self._advance()
        self.added: set[int] = set()  # the tasks whose TaskAdded was told

    def check(self) -> None:
        last_time = -math.inf
        last_other = -1
        for pos, event in enumerate(self.events):
            self.cascade_from.append(last_other)
            if type(event) is not TaskFinished or event.state not in _CASCADE:
                last_other = pos
            i = self._index(pos, event)
            if type(event) is TaskAdded:
                self._added(pos, i, event)
                continue
            if i >= self.run.base_n and i not in self.added:
                broken(
                    "added",
                    f"event #{pos} ({type(event).__name__}) is about {self.run.label(i)}, "
                    "added while the run went on, before its TaskAdded",
                )
            if type(event) is TaskNotCached:
                if not self.run.opts[i].cache:
                    broken(
                        "cache",
                        f"TaskNotCached of {self.run.label(i)} (event #{pos}), which was not "
                        "added with cache=",
                    )
                continue
            if type(event) is not TaskRetrying:
                if event.time < last_time:
                    broken(
                        "events",
                        f"event #{pos} ({type(event).__name__} of {self.run.label(i)}) "
                        f"has time {event.time}, earlier than the event before it",
                    )
                last_time = event.time
            if type(event) is TaskStarted:
                self._started(pos, i, event)
            elif type(event) is TaskRetrying:
                self._retrying(pos, i, event)
            else:
                assert type(event) is TaskFinished
                self._finished(pos, i, event)
        self._complete()
        self._stops()
        if len(self.added) != self.run.n - self.run.base_n:
            missing = next(i for i in range(self.run.base_n, self.run.n) if i not in self.added)
            broken("added", f"task {self.run.label(missing)} was added without a TaskAdded")
        if self.run.grown:
            # The start order a policy gives, and what resources let overtake,
            # are checked for the DAG's own graph only: tasks added meanwhile
            # join the ready heap at times the events do not pin down.
            return
        detail = first_out_of_order(self.run, self.events)
        if detail is not None:
            broken("policy", detail)
        detail = first_overtaking(self.run, self.events)
        if detail is not None:
            broken("resource order", detail)

    def _index(self, pos: int, event: object) -> int:
        run = self.run
        if type(event) not in (TaskStarted, TaskRetrying, TaskFinished, TaskNotCached, TaskAdded):
            broken("events", f"event #{pos} is not an event of trio_dag.events: {event!r}")
        assert isinstance(
            event, (TaskStarted, TaskRetrying, TaskFinished, TaskNotCached, TaskAdded)
        )
        h = event.task
        if type(h) is not Handle or h.index >= run.n or h != run.handles[h.index]:
            broken("events", f"event #{pos} is about {h!r}, not a task of this run's DAG")
        if not run.in_run[h.index]:
            broken("targets", f"event #{pos} is about {run.label(h.index)}, left out of the run")
        done = self.finish[h.index]
        if done is not None and not (
            # A result the store failed to keep is told once the store fails.
            type(event) is TaskNotCached and done.state is TaskState.SUCCEEDED
        ):
            broken(
                "events", f"event #{pos} about {run.label(h.index)} comes after its TaskFinished"
            )
        return h.index

    def _added(self, pos: int, i: int, event: TaskAdded) -> None:
        """TaskAdded: once, for a task added while the run went on, by a task running then."""
        run = self.run
        if i < run.base_n or i in self.added:
            broken("added", f"TaskAdded of {run.label(i)} (event #{pos}): it was not added now")
        self.added.add(i)
        parent = event.parent
        if parent is not None:
            p = parent.index
            if p >= run.n or parent != run.handles[p] or not self.running[p]:
                broken(
                    "added",
                    f"TaskAdded of {run.label(i)} (event #{pos}) names {parent!r} as the task "
                    "that added it, which was not running then",
                )

    def _started(self, pos: int, i: int, event: TaskStarted) -> None:
        run = self.run
        if self.running[i] or event.attempt != self.attempts[i] + 1:
            broken(
                "attempts",
                f"task {run.label(i)} started attempt {event.attempt} (event #{pos}) "
                f"after {self.attempts[i]} attempt(s)"
                + (", one of them still running" if self.running[i] else ""),
            )
        if event.attempt > run.opts[i].retries + 1:
            broken(
                "attempts",
                f"task {run.label(i)} started attempt {event.attempt} with retries="
                f"{run.opts[i].retries}",
            )
        if event.attempt == 1:
            self.first_start[i] = event.time
            self._dependencies_ended(pos, i)
        elif event.time < self.last_start[i] + self.delay[i] - 1e-9:
            broken(
                "retries",
                f"task {run.label(i)} started attempt {event.attempt} at {event.time}, before "
                f"its retry delay of {self.delay[i]} after the attempt that began at "
                f"{self.last_start[i]}",
            )
        if self.fail_pos >= 0 and not run.all_done(i):
            failed = self.events[self.fail_pos].task.name
            broken(
                "fail_fast",
                f"task {run.label(i)} started (event #{pos}) after the first failure, "
                f"of {failed!r} (event #{self.fail_pos})",
            )
        # A stop the events do not show may have been a CallbackError's, after
        # which teardown still starts, as under fail_fast.
        if self.halt_pos >= 0 and not (run.unseen_stop and run.all_done(i)):
            broken(
                "cancellation",
                f"task {run.label(i)} started (event #{pos}) after the run was cancelled "
                f"(event #{self.halt_pos})",
            )
        if run.strategy == "waves" and run.levels[i] > self.wave:
            waiting = next(
                j for j in run.members() if run.levels[j] == self.wave and self.ended_at[j] < 0
            )
            broken(
                "waves",
                f"task {run.label(i)} of wave {run.levels[i]} started (event #{pos}) while "
                f"task {run.label(waiting)} of wave {self.wave} had not ended",
            )
        self._batch(pos, i, event)
        self.attempts[i] = event.attempt
        self.last_start[i] = event.time
        self.running[i] = True
        # A batched call is one body, however many tasks it serves, and holds
        # the uses of the task that opened it (the first to start) once.
        call = ("task", i) if event.batch is None else ("batch", event.batch)
        self.call_of[i] = call
        if call in self.calls:
            self.calls[call][0] += 1
            return
        self.calls[call] = [1, run.opts[i].uses]
        self.live += 1
        self.peak = max(self.peak, self.live)
        if run.grown:
            # A task that joins others holds no slot and no uses once its body
            # has returned, which no event tells: a run that added tasks has
            # its limit and resources checked by its timings (check_overlaps).
            return
        if run.cap is not None and self.live > run.cap:
            others = [run.names[j] for j in range(run.n) if self.running[j] and j != i]
            broken(
                "limit",
                f"task {run.label(i)} started (event #{pos}) while {others} ran: "
                f"{self.live} bodies at once, above the limit {run.cap}",
            )
        for name, amount in run.opts[i].uses:
            capacity = self.capacity.get(name, 0)
            self.in_use[name] = self.in_use.get(name, 0) + exact(amount)
            if self.in_use[name] > capacity:
                holders = [
                    run.names[j]
                    for j in range(run.n)
                    if self.running[j] and any(r == name for r, _ in run.opts[j].uses)
                ]
                broken(
                    "resources",
                    f"task {run.label(i)} started (event #{pos}) while {holders} held "
                    f"{name!r}: {float(self.in_use[name]):g} in use, above its capacity "
                    f"{float(capacity):g}",
                )

    def _batch(self, pos: int, i: int, event: TaskStarted) -> None:
        """A task starts in a batched call only with others of its function, at the call's start."""
        run, number = self.run, event.batch
        fn = run.batched[i]
        self.batch_of[i] = number
        if number is None:
            if fn is not None:
                broken(
                    "batches",
                    f"task {run.label(i)} of {fn!r} started (event #{pos}) in no batched call",
                )
            return
        if fn is None:
            broken(
                "batches",
                f"task {run.label(i)} is not of a batched function, but started (event #{pos}) "
                f"in batched call {number!r}",
            )
        if not isinstance(number, int) or number < 1:
            broken("batches", f"task {run.label(i)} started (event #{pos}) in batch {number!r}")
        call = self.batches.get(number)
        latest = max(self.batches, default=0)
        if call is None:
            if number < latest:
                broken(
                    "batches",
                    f"task {run.label(i)} started (event #{pos}) batched call {number} after "
                    f"call {latest}: calls are numbered in the order they start",
                )
            self.batches[number] = (fn, event.time, [i])
            return
        of, began, tasks = call
        if number != latest:
            broken(
                "batches",
                f"task {run.label(i)} joined batched call {number} (event #{pos}) after call "
                f"{latest} had started",
            )
        if of is not fn:
            broken(
                "batches",
                f"task {run.label(i)} of {fn!r} started (event #{pos}) in batched call {number} "
                f"of {of!r}",
            )
        if event.time != began:
            # One reading of the clock starts every task of a call.
            broken(
                "batches",
                f"task {run.label(i)} started (event #{pos}) in batched call {number} at "
                f"{event.time}, but the call started at {began}",
            )
        tasks.append(i)
        if len(tasks) > fn.max_size:
            broken(
                "batches",
                f"task {run.label(i)} started (event #{pos}) in batched call {number}, which then "
                f"ran {[run.names[t] for t in tasks]}: more than max_size={fn.max_size}",
            )

    def _dependencies_ended(self, pos: int, i: int) -> None:
        run = self.run
        for p in run.parents[i]:
            finish = self.finish[p]
            if finish is None:
                broken(
                    "dependency order",
                    f"task {run.label(i)} started (event #{pos}) before its dependency "
                    f"{run.label(p)} ended",
                )
            if finish.state not in OK and not run.all_done(i):
                broken(
                    "dependency order",
                    f"task {run.label(i)} started (event #{pos}) although its dependency "
                    f"{run.label(p)} ended {finish.state.name}",
                )

    def _attempt_ended(self, i: int) -> None:
        self.running[i] = False
        call = self.call_of.pop(i)
        held = self.calls[call]
        held[0] -= 1
        if held[0] == 0:
            del self.calls[call]
            self.live -= 1
            for name, amount in held[1]:
                self.in_use[name] -= exact(amount)

    def _retrying(self, pos: int, i: int, event: TaskRetrying) -> None:
        run, opts = self.run, self.run.opts[i]
        if not self.running[i] or event.attempt != self.attempts[i]:
            broken(
                "events",
                f"TaskRetrying of {run.label(i)} for attempt {event.attempt} (event #{pos}), "
                f"but {'attempt ' + str(self.attempts[i]) if self.running[i] else 'no attempt'} "
                "was running",
            )
        error = event.error
        if event.attempt > opts.retries or not (
            isinstance(error, Exception) and isinstance(error, opts.retry_on)
        ):
            broken(
                "retries",
                f"task {run.label(i)} is retried after attempt {event.attempt} raised "
                f"{error!r}, with retries={opts.retries} and retry_on={opts.retry_on}",
            )
        expected = opts.retry_delay * opts.retry_backoff ** (event.attempt - 1)
        if not math.isclose(event.delay, expected, rel_tol=1e-9, abs_tol=1e-12):
            broken(
                "retries",
                f"task {run.label(i)} waits {event.delay} before attempt {event.attempt + 1}, "
                f"not {expected}",
            )
        self.delay[i] = event.delay
        self._attempt_ended(i)

    def _finished(self, pos: int, i: int, event: TaskFinished) -> None:
        run = self.run
        if self.running[i]:
            self._attempt_ended(i)
        self.finish[i] = event
        self.ended_at[i] = pos
        state = event.state
        if state is TaskState.SKIPPED:
            blockers = [
                p
                for p in run.parents[i]
                if self.finish[p] and self.finish[p].state not in OK  # type: ignore[union-attr]
            ]
            if not blockers:
                broken(
                    "skip",
                    f"task {run.label(i)} ended SKIPPED (event #{pos}) before any of its "
                    "dependencies ended without success",
                )
        if state is TaskState.CACHED:
            self._cached(pos, i, event)
        if state is TaskState.FAILED:
            error = getattr(event.outcome, "error", None)
            if not isinstance(error, Exception) and self.fatal_pos < 0:
                self.fatal_pos = pos
        alone = run.cancelled_alone(i)
        if state is TaskState.CANCELLED and not alone:
            self._cancel_cause(pos, i)
        if state is TaskState.FAILED and run.fail_fast and self.fail_pos < 0:
            self.fail_pos = pos
            self.running_at[pos] = self.running[:]
        elif state is TaskState.CANCELLED and self.halt_pos < 0 and not alone:
            if not run.fail_fast or self.fail_pos < 0 or run.all_done(i):
                self.halt_pos = pos
                self.running_at[pos] = self.running[:]
        self.unended[run.levels[i]] -= 1
        self._advance()

    def _cached(self, pos: int, i: int, event: TaskFinished) -> None:
        """A CACHED task never started, and ended as a start would have: once its
        dependencies succeeded, before any stop that keeps it from starting."""
        run = self.run
        if self.attempts[i]:
            broken(
                "cache",
                f"task {run.label(i)} ended CACHED (event #{pos}) after it started",
            )
        if event.duration != 0.0:
            broken(
                "cache",
                f"TaskFinished of CACHED {run.label(i)} says duration {event.duration}, not 0.0",
            )
        self._dependencies_ended(pos, i)
        if self.fail_pos >= 0 and not run.all_done(i):
            broken(
                "fail_fast",
                f"task {run.label(i)} ended CACHED (event #{pos}) after the first failure "
                f"(event #{self.fail_pos}): it had not ended, so it must end CANCELLED",
            )
        if self.halt_pos >= 0 and not (run.unseen_stop and run.all_done(i)):
            broken(
                "cancellation",
                f"task {run.label(i)} ended CACHED (event #{pos}) after the run was cancelled "
                f"(event #{self.halt_pos})",
            )

    def _cancel_cause(self, pos: int, i: int) -> None:
        """A task ends CANCELLED only after what stopped the run, or by a stop no event shows."""
        run = self.run
        if run.unseen_stop or self.fatal_pos >= 0:
            return
        if self.fail_pos >= 0 and not run.all_done(i):
            return
        if self.fail_pos >= 0:
            why = (
                f"it is all_done teardown, which the failure of "
                f"{self.events[self.fail_pos].task.name!r} (event #{self.fail_pos}) does not cancel"
            )
        elif run.fail_fast:
            why = "no task had failed before it"
        else:
            why = "on_failure='skip' cancels nothing"
        broken(
            "cancel cause",
            f"task {run.label(i)} ended CANCELLED (event #{pos}) though nothing had stopped the "
            f"run: {why}, and check_run was not told cancelled=True (the run stopped from outside "
            "or by a CallbackError)",
        )

    def _advance(self) -> None:
        """Move the wave barrier past the waves that have ended."""
        while self.wave < len(self.unended) - 1 and self.unended[self.wave] == 0:
            self.wave += 1

    def _complete(self) -> None:
        run, report = self.run, self.run.report
        for i in run.members():
            finish = self.finish[i]
            if finish is None:
                broken("events", f"task {run.label(i)} has no TaskFinished")
            if finish.state is not run.states[i]:
                broken(
                    "events",
                    f"TaskFinished of {run.label(i)} says {finish.state.name}, the report "
                    f"{run.states[i].name}",
                )
            timing = report.timing(run.handles[i])
            if timing.attempts != self.attempts[i]:
                broken(
                    "events",
                    f"task {run.label(i)} has {self.attempts[i]} TaskStarted events, the "
                    f"report counts {timing.attempts} attempts",
                )
            self._timing_agrees(i, finish, timing)
            if report.batch(run.handles[i]) != self.batch_of[i]:
                broken(
                    "batches",
                    f"report.batch({run.label(i)}) is {report.batch(run.handles[i])}, but its "
                    f"last TaskStarted says batch {self.batch_of[i]}",
                )
            self._outcome_agrees(i, finish)
        if self.peak != report.stats.peak_concurrency and not run.grown:
            broken(
                "report",
                f"report.stats.peak_concurrency is {report.stats.peak_concurrency}, but the "
                f"events show {self.peak} bodies running at once",
            )

    def _timing_agrees(self, i: int, finish: TaskFinished, timing: Any) -> None:
        """The report's timing, the TaskStarted times and the TaskFinished agree.

        A task's first TaskStarted carries the very reading the report keeps
        as its start (a batched call reads the clock once, for all its tasks).
        ``duration`` is the report's ``end - start``, computed from the same
        two readings (0.0 for a task that never started), and the task ends
        after its last attempt ended.
        """
        run = self.run
        if timing.start is None:
            if finish.duration != 0.0:
                broken(
                    "events",
                    f"TaskFinished of {run.label(i)} says duration {finish.duration}, but it "
                    "never started: 0.0",
                )
            return
        first = self.first_start[i]
        if timing.start != first:
            broken(
                "events",
                f"task {run.label(i)} first started at {first}, the report says {timing.start}",
            )
        if finish.duration != timing.end - timing.start:
            broken(
                "events",
                f"TaskFinished of {run.label(i)} says duration {finish.duration}, but the "
                f"report's timing gives end - start = {timing.end - timing.start}",
            )
        if finish.time < timing.end:
            broken(
                "events",
                f"TaskFinished of {run.label(i)} has time {finish.time}, before the end of its "
                f"last attempt at {timing.end} (report.timing)",
            )

    def _outcome_agrees(self, i: int, finish: TaskFinished) -> None:
        run = self.run
        expected = run.report.outcome(run.handles[i])
        got = finish.outcome
        if isinstance(expected, outcome.Value):
            same = isinstance(got, outcome.Value) and got.value is expected.value
        else:
            assert isinstance(expected, outcome.Error)
            # A failure carries the task's own exception; a skip or cancellation an
            # error made for the occasion, of the same class.
            same = isinstance(got, outcome.Error) and (
                got.error is expected.error or type(got.error) is type(expected.error)
            )
        if not same:
            broken(
                "events",
                f"TaskFinished of {run.label(i)} carries {got!r}, the report {expected!r}",
            )

    def _stops(self) -> None:
        """Who may end how, once the first failure (fail_fast) or a cancellation stopped the run."""
        run = self.run
        for i in run.members():
            if (
                run.all_done(i)
                and self.halt_pos < 0
                and run.states[i] not in RAN
                and run.states[i] is not TaskState.CACHED
                and not run.cancelled_alone(i)
            ):
                rule = "fail_fast" if run.fail_fast else "skip"
                broken(
                    rule,
                    f"all_done task {run.label(i)} ended {run.states[i].name}; it must run "
                    "once its dependencies have ended",
                )
            self._after_skip_cause(i)
        for rule, stop in (("fail_fast", self.fail_pos), ("cancellation", self.halt_pos)):
            if stop < 0:
                continue
            when = self.events[stop]
            assert type(when) is TaskFinished
            # Teardown goes on after a failure under fail_fast, and after a
            # CallbackError, which the events do not tell from a cancellation.
            teardown_goes_on = rule == "fail_fast" or run.unseen_stop
            for i in run.members():
                if self.ended_at[i] <= stop or (teardown_goes_on and run.all_done(i)):
                    continue
                finish = self.finish[i]
                assert finish is not None
                if finish.state is TaskState.CANCELLED:
                    continue
                if self.running_at[stop][i] and finish.state in RAN:
                    # Its body may have passed its last checkpoint before the
                    # cancellation reached it; no event shows when it did.
                    continue
                broken(
                    rule,
                    f"task {run.label(i)} had not ended when {when.task.name!r} ended "
                    f"{when.state.name} (event #{stop}), but it ended {finish.state.name}",
                )

    def _after_skip_cause(self, i: int) -> None:
        """Under skip: a dependent of a FAILED or SKIPPED task ends SKIPPED at once."""
        run = self.run
        if run.fail_fast or run.all_done(i):
            return
        finish = self.finish[i]
        assert finish is not None
        for p in run.parents[i]:
            cause = self.finish[p]
            assert cause is not None
            if cause.state not in (TaskState.FAILED, TaskState.SKIPPED):
                continue
            end, cause_end = self.ended_at[i], self.ended_at[p]
            if end < cause_end:
                continue  # it ended (CANCELLED) before: checked with the stops
            error = getattr(cause.outcome, "error", None)
            if cause.state is TaskState.FAILED and not isinstance(error, Exception):
                # A BaseException stops the run: its dependents, pending, are cancelled.
                if finish.state is not TaskState.CANCELLED:
                    broken(
                        "cancellation",
                        f"task {run.label(i)} ended {finish.state.name} (event #{end}); its "
                        f"dependency {run.label(p)} raised {type(error).__name__} (event "
                        f"#{cause_end}), which cancels every task that had not ended",
                    )
                continue
            # At once: in the cascade of events that ends the skipped tasks right
            # after their cause (the clock is read anew for each of them).
            if finish.state is not TaskState.SKIPPED or self.cascade_from[end] > cause_end:
                broken(
                    "skip",
                    f"task {run.label(i)} ended {finish.state.name} (event #{end}); its "
                    f"dependency {run.label(p)} ended {cause.state.name} (event #{cause_end}), "
                    "so it must end SKIPPED at once, among the skips that follow",
                )

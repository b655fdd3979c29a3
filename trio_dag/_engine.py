"""The Trio run loop: workers pull ready tasks from the core and run their bodies.

A run keeps at most ``limit`` worker tasks in one nursery. A worker pops the
next task that may start, runs its body, tells the core how it ended, and
loops. It starts with one worker; more are spawned only when a body suspends
(or waits for a limiter or a thread), so bodies that never suspend cost no
Trio task each. No limiter, cancel scope or event object is made per task
unless the run needs it: a shared ``CapacityLimiter``, a timeout, fail-fast or
an event listener.

Stopping comes in two kinds. Fail-fast (the first failure under
``on_failure="fail_fast"``, or an ``on_event`` callback that raises) cancels
every pending task and every running one except ``all_done`` (teardown)
tasks, through one cancel scope per task, and lets teardown run. A halt
(``run.cancel()``, the caller's scope, a task raising a BaseException that is
not an Exception) cancels everything through the nursery.
"""

from __future__ import annotations

import contextvars
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import outcome
import trio

from . import _bodies
from ._admission import Admission
from ._batch_runner import Batcher
from ._batching import Batched
from ._caching import RunCache
from ._errors import CallbackError
from ._events import _CURRENT, Event, TaskFinished, TaskNotCached, TaskRetrying, TaskStarted
from ._executors import Executors, open_workers
from ._native import CHECKPOINT, FAIRNESS_EVERY, RAISED, SLOW, SUSPENDED, core
from ._options import BUILT_IN
from ._policies import Strategy
from ._report import CACHED, STATE_OF, RunReport, task_outcome

if TYPE_CHECKING:
    from ._control import Control
    from ._growth import Growth
    from ._options import TaskOptions
    from ._snapshot import Snapshot

__all__ = ["Engine"]


def _took_token(limiter: trio.CapacityLimiter) -> bool:
    """Whether a token of *limiter* was free (and is now taken)."""
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        return False
    return True


def _retry_delay(opts: TaskOptions, attempt: int) -> float:
    """The wait after failed attempt *attempt*: ``retry_delay * retry_backoff ** (attempt - 1)``.

    A wait too long for a float is ``math.inf`` (the task then waits until
    the run is cancelled); SPEC does not say, but it must not raise.
    """
    if opts.retry_delay == 0:
        return 0.0
    try:
        return float(opts.retry_delay * opts.retry_backoff ** (attempt - 1))
    except OverflowError:
        return math.inf


class _Outcomes:
    """What an ``all_done`` task receives for each dependency: an Outcome.

    Passed to ``Snapshot.bind`` in place of the outputs list; it only indexes.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getitem__(self, j: int) -> outcome.Outcome[Any]:
        e = self._engine
        return task_outcome(e.snap, e.st.state(j), j, e.outputs, e.errors, e.st.state)


class _Host:
    """The engine as its Batcher sees it (``_batch_runner.BatchHost``)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def listening(self) -> bool:
        e = self._engine
        return e.on_event is not None or e.stream is not None

    def stopped(self, teardown: int) -> bool:
        e = self._engine
        return e.halted or (e.failing and not teardown)

    def spawn(self) -> None:
        self._engine._spawn()

    def emit(self, event: Event) -> None:
        self._engine._emit(event)

    def succeeded(self, v: int, result: Any) -> None:
        self._engine._returned(v, result)

    def raised(self, v: int, exc: BaseException) -> None:
        e = self._engine
        e._threw(v, e.snap.options(v), exc)

    def gave_up(self, v: int, exc: Exception) -> None:
        self._engine._gave_up(v, exc)

    def cancelled(self, v: int, failure: BaseException | None = None) -> None:
        self._engine._cancelled(v, failure)

    def dropped(self, v: int) -> None:
        e = self._engine
        e._ended(v, core.CANCELLED, e.st.cancel(v))

    def on_executor(self, name: str, v: int, fn: Batched[Any, Any], items: list[Any]) -> Any:
        e = self._engine
        assert e.executors is not None
        return e.executors.call(name, e.snap.name(v), fn, (items,), {}, e._spawn)


class Engine:
    """One run of a snapshot. Build it, ``await execute()``, read ``report``."""

    def __init__(
        self,
        snap: Snapshot,
        members: Sequence[int] | None,
        *,
        keys: list[float] | None,
        lifo: bool,
        limit: int | trio.CapacityLimiter | None,
        resources: Mapping[str, float] | None,
        strategy: Strategy,
        fail_fast: bool,
        on_event: Callable[[Event], None] | None,
        stream: Callable[[Event], None] | None,
        cache: Any = None,
        executors: Executors | None = None,
    ) -> None:
        # The run's own copy of the snapshot: tasks added while it runs
        # (_growth) grow it, not the DAG's.
        snap = snap.for_run()
        n = snap.n
        self.snap = snap
        # The run state and the loop come from the backend the snapshot was
        # frozen with, so a RunState only ever meets the loop built for it.
        backend = snap.backend
        self.st = backend.core.RunState(
            snap.graph, keys, lifo=lifo, all_done=snap.all_done, targets=members
        )
        self.admission = Admission(snap, self.st, resources, strategy, keys, executors)
        self.errors: dict[int, BaseException] = {}
        self.on_event = on_event
        self.stream = stream
        self.fail_fast = fail_fast
        self.teardown = bytearray(n)
        for i in snap.all_done:
            self.teardown[i] = 1
        # Per-task cancel scopes, only when something may cancel tasks one by one.
        self.scopes: dict[int, trio.CancelScope] | None = (
            {} if fail_fast or on_event is not None else None
        )
        self.limiter = limit if isinstance(limit, trio.CapacityLimiter) else None
        if self.limiter is not None:
            tokens = self.limiter.total_tokens
            self.cap = n if math.isinf(tokens) else max(1, int(tokens))
            self.unbounded = math.isinf(tokens)
        else:
            self.cap = n if limit is None else int(limit)  # type: ignore[arg-type]
            self.unbounded = limit is None
        # Tasks added while the run goes on, and joins (see _growth): made at
        # the first add. The policy (set by _run) and keys give added tasks theirs.
        self.growth: Growth | None = None
        self.policy: Any = None
        self.keys = keys
        self.limited = limit is not None
        self.workers = 0
        # Workers with nothing to do wait here for _spawn to hand them a task.
        self.idle: list[trio.lowlevel.Task] = []
        # Tasks waiting out a retry delay: a heap of (due time, task) that one
        # timer serves, and the scope it sleeps in (None: no timer runs).
        self.retry_waiting = 0
        self.retries: list[tuple[float, int]] = []
        self.retry_timer: trio.CancelScope | None = None
        self.failing = False
        # Events being told (nested), and the stop a listener asked for meanwhile.
        self.emitting = 0
        self.deferred_halt = False
        self.deferred_fail_fast = False
        self.halted = False
        self.fatal: BaseException | None = None
        # Where tasks with an executor's name for run_in run (see _executors).
        self.executors = executors
        self.callback_error: CallbackError | None = None
        self.since_checkpoint = 0
        self.nursery: trio.Nursery | None = None
        self.report: RunReport | None = None
        # The Run that current_run() gives inside a body (set by _run.py), and
        # what its per-task methods keep (_control.py), made on first use.
        self.run: Any = None
        self.control: Control | None = None
        # Until then, the tasks that end outside the fast loop, with how many
        # attempts had ended then (the loop's end order places the others).
        self.log: list[tuple[int, int]] = []
        # Set while _control asks workers to stop at their next task boundary.
        self.handover = False
        # The slots of the live workers (see _worker), and tasks ended CACHED.
        self.slots: dict[int, list[Any]] = {}
        self.cached = 0
        self.started_at = 0.0
        # The run's cache (see _caching): its cached tasks are looked up as
        # they become ready, and their results stored as they return.
        self.caching: RunCache | None = None
        if cache is not None:
            self.caching = RunCache(snap, cache, members)
        # Tasks run through the fast loop unless the run needs per-task Python
        # work around them (events, scopes, limiter, admission rules).
        fast = (
            self.admission.plain
            and self.limiter is None
            and self.scopes is None
            and on_event is None
            and stream is None
        )
        self.loop = backend.loop.Loop(snap, self.st, trio.current_time, fast, self._spawn)
        if fast and self.caching is not None and self.caching.count:
            # The loop hands back a cached task not looked up yet (the worker
            # looks it up) and runs those that missed, telling the cache
            # their outputs.
            self.loop.unlooked = self.caching.asks
            self.loop.on_return = self.caching.returned
        self.outputs = self.loop.outputs
        # Tasks of @batched functions run in batches, which the Batcher keeps.
        self.batcher: Batcher | None = None
        if snap.has_batched:
            self.start_batching()

    def start_batching(self) -> None:
        """Make the Batcher: as the run starts, or when a batched task is added."""
        self.batcher = Batcher(
            self.snap,
            self.st,
            self.loop,
            self.admission,
            self.teardown,
            _Outcomes(self),
            _Host(self),
        )
        if self.caching is not None and self.caching.count:
            self.batcher.unlooked = self.caching.asks

    # -- the run as a whole --------------------------------------------------

    def add(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        options: dict[str, Any],
        parent: int,
        wake: bool,
    ) -> Any:
        """Add a task while the run goes on (``Run.add``); *parent*: the adding
        task, or -1; *wake*: give ready tasks workers now (the caller is no
        async body, whose worker would go on to them)."""
        if self.report is not None or (self.nursery is not None and self.st.finished):
            # Every task has ended: the run is ending, its workers gone.
            raise RuntimeError(
                "the run has ended; run.add adds tasks only while the run goes on "
                "(add them to the DAG for the next run)"
            )
        if self.admission.levels is not None:
            raise RuntimeError(
                "run.add cannot add tasks to a run with strategy='waves': its waves "
                "are fixed as it starts"
            )
        if self.growth is None:
            from ._growth import Growth

            self.growth = Growth(self)
        handle = self.growth.add(fn, args, options, parent)
        if wake and self.nursery is not None and not self.halted:
            self._spawn()
        return handle

    async def execute(self) -> RunReport:
        """Run every task of the run; return the report once nothing runs."""
        self.loop.now = trio.lowlevel.current_clock().current_time
        self.started_at = self.loop.now()
        try:
            async with open_workers(self.executors), trio.open_nursery() as nursery:
                self.nursery = nursery
                if self.caching is not None and self.caching.not_cached:
                    self._tell_not_cached(self.caching.not_cached)
                # One worker to begin with; it starts more when a body suspends.
                v = self._next()
                if v >= 0:
                    self.workers += 1
                    nursery.start_soon(self._worker, v)
            caching = self.caching
            if caching is not None:
                # Still in the run: what the store fails to keep is told.
                caching.close()
                if caching.unstored:
                    self._tell_unstored()
        except BaseExceptionGroup as group:
            # A KeyboardInterrupt (a real Ctrl-C) goes to the task that called
            # run, here, and leaves the nursery inside its group: SPEC 3 wants
            # it unwrapped. Cancellation passes on as it is, for the scopes.
            fatal = _bodies.fatal(group)
            if fatal is None:
                raise
            if self.fatal is None:
                self.fatal = fatal
        finally:
            self.nursery = None
            self._finish()
            caching = self.caching
            if caching is not None and not caching.closed:
                # Also when the run raises: what finished is kept for the next
                # run. A store that fails now has nobody to tell (the run raises).
                caching.close()
        if self.fatal is not None:
            raise self.fatal
        if self.callback_error is not None:
            raise self.callback_error
        assert self.report is not None
        return self.report

    def cancel(self) -> None:
        """Stop the run: cancel what runs and start nothing more, teardown included."""
        if self.report is None:
            if self.emitting:
                # Called by a listener as it hears an event: the events that
                # belong with it (a failure and the skips it causes) go first.
                self.deferred_halt = True
            else:
                self._halt()

    def _fail_fast(self, failed: int = -1) -> None:
        """Stop as fail-fast does; *failed* is the task whose failure stops the run.

        Pending tasks are cancelled before the failure is told to the core, so
        the failed task's dependents end CANCELLED (not SKIPPED) like every
        other task that had not ended; the events still tell the failure first.
        """
        if self.failing or self.halted:
            if failed >= 0:
                self._ended(failed, core.FAILED, self.st.fail(failed))
            return
        self.failing = True
        cancelled = self.st.cancel_pending(keep_all_done=True)
        if failed >= 0:
            self._ended(failed, core.FAILED, self.st.fail(failed))
            self._ready_in_event_order([failed, *cancelled])
        for v in cancelled:
            self._ended(v, core.CANCELLED)
        self._cancel_waiting(teardown_too=False)
        self._cancel_retries(teardown_too=False)
        assert self.scopes is not None
        for v, scope in self.scopes.items():
            if not self.teardown[v]:
                scope.cancel()
        if self.st.finished:
            self._dismiss_idle()

    def _ready_in_event_order(self, ended: list[int]) -> None:
        """Order the teardown tasks that *ended* made ready as the events tell it.

        The core saw the cancellations before the failure, the events tell
        the failure first: a teardown task becomes ready, for "fifo", at the
        event of the last of its dependencies to end. Tasks ready before
        keep their place.
        """
        st = self.st
        rank = {v: k for k, v in enumerate(ended)}
        graph = self.snap.graph
        fresh: list[tuple[int, int]] = []
        for v in st.pop_all():
            last = max((rank.get(p, -1) for p in graph.parents(v)), default=-1)
            if last < 0:
                st.push_back(v)
            else:
                fresh.append((last, v))
        for _, v in sorted(fresh):
            st.requeue(v)

    def _halt(self, failed: int = -1) -> None:
        """Stop everything, teardown included; *failed* is the task whose
        BaseException stops the run.

        As in ``_fail_fast``, pending tasks are cancelled before the failure
        is told to the core, so its dependents end CANCELLED (SPEC 3: every
        other task is cancelled), not SKIPPED; the events tell the failure first.
        """
        if self.halted:
            if failed >= 0:
                self._ended(failed, core.FAILED, self.st.fail(failed))
            return
        self.halted = True
        self.loop.stopped = True
        self._dismiss_idle()
        cancelled = self.st.cancel_pending(keep_all_done=False)
        if failed >= 0:
            self._ended(failed, core.FAILED, self.st.fail(failed))
        for v in cancelled:
            self._ended(v, core.CANCELLED)
        self._cancel_waiting(teardown_too=True)
        self._cancel_retries(teardown_too=True)
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    def _cancel_waiting(self, *, teardown_too: bool) -> None:
        # Tasks waiting for a resource were taken from the heap: cancel_pending
        # does not see them.
        for v in self.admission.drain():
            if teardown_too or not self.teardown[v]:
                self._ended(v, core.CANCELLED, self.st.cancel(v))
            else:
                self.st.push_back(v)

    def _finish(self) -> None:
        st = self.st
        # Tasks that have not ended here are those a halt stopped: without
        # a halt every task ends before the nursery does (fail-fast too,
        # whose teardown runs), and one that did not would be an engine bug
        # (tests check it, see tests/test_resources.py).
        if not st.finished:
            for v in st.cancel_pending(keep_all_done=False):
                self._ended(v, core.CANCELLED)
            states = st.states()
            for v in range(self.snap.n):
                if states[v] == core.RUNNING:
                    self._ended(v, core.CANCELLED, st.cancel(v))
        loop = self.loop
        states = st.states()
        caching = self.caching
        if caching is not None and any(caching.hit):
            # The core counts a cached task SUCCEEDED; the report says CACHED.
            marked = bytearray(states)
            for v, was_hit in enumerate(caching.hit):
                if was_hit:
                    marked[v] = CACHED
            states = bytes(marked)
        if self.growth is not None:
            self.growth.finish()
        self.report = RunReport(
            self.snap,
            states,
            loop.outputs,
            self.errors,
            loop.start,
            loop.end,
            loop.end_order,
            loop.attempts,
            loop.extra,
            loop.busy,
            loop.peak,
            {} if self.batcher is None else self.batcher.batch_of,
            self.started_at,
            loop.now(),
        )

    # -- workers -------------------------------------------------------------

    def _next(self) -> int:
        """The next task that may start now, or -1.

        A cached task not looked up yet is looked up here, with every other
        such task that is ready; hits end CACHED at once and take no worker.
        """
        while True:
            v = self._pop()
            if v >= 0 and self.growth is not None and self.growth.marks[v]:
                self.growth.resolve(v)  # a joining task whose joins have ended
                continue
            caching = self.caching
            if v >= 0 and caching is not None and caching.asks[v] and self._look_up(v):
                continue
            if v >= 0 and self.admission.gate and not self.admission.admit(v):
                continue  # it waits for a slot of its executor (see _admission)
            batcher = self.batcher
            if v < 0 or batcher is None:
                return v
            fn = self.snap.fn(v)
            if not isinstance(fn, Batched) or batcher.claim(v, fn):
                return v

    def _look_up(self, v: int) -> bool:
        """Look up task *v*, just popped, and every ready cached task not looked
        up yet, in one call; end the hits CACHED. Return whether *v* was one.

        The other ready tasks go back to the places they had, so the order
        of the tasks that do run is the policy's. Tasks that admission has
        seen (woken from a resource's queue) or holds back (a later wave)
        are left to it: they are looked up when it hands them out.
        """
        caching = self.caching
        assert caching is not None
        st = self.st
        batch = [v]
        asks = caching.asks
        admission = self.admission
        seen = admission.places
        levels = admission.levels
        if not seen and levels is None:
            batch += st.pop_marked(asks)  # the common case, in one call
        else:
            rest = []
            for u in st.pop_all():
                if asks[u] and u not in seen and (levels is None or levels[u] <= admission.wave):
                    batch.append(u)
                else:
                    rest.append(u)
            for u in rest:
                st.push_back(u)
        hits, dropped = caching.look_up(batch, self.outputs, self._bind)
        hit = caching.hit
        if len(batch) > 1:
            st.push_back_unmarked(batch[1:], hit)  # the misses
        if dropped and (self.on_event is not None or self.stream is not None):
            self._tell_not_cached(dropped)
        if hits:
            now = self.loop.now()
            end = self.loop.end
            if (
                not (self.halted or self.failing or self.retries)
                and self.admission.plain
                and self.on_event is None
                and self.stream is None
            ):
                # The common case, with what _ended would do for each (nothing) left out.
                done = st.done
                for u in hits:
                    end[u] = now
                    done(u)
                self.cached += len(hits)
                if self.control is None:
                    self.log.extend([(self.loop.ends, u) for u in hits])
                else:
                    self.control.ended_many(hits)
                return bool(hit[v])
            for u in hits:
                if self.halted or (self.failing and not self.teardown[u]):
                    # The run stopped while the hits were told: not started, cancelled.
                    hit[u] = 0
                    self._ended(u, core.CANCELLED, st.cancel(u))
                    continue
                end[u] = now
                if self.retries:
                    self._requeue_due()
                st.done(u)
                self.cached += 1
                self._ended(u, CACHED)
        return bool(hit[v])

    def _bind(self, v: int) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
        """Task *v*'s arguments, as its body would get them (for a cache= function)."""
        opts = self.snap.options(v)
        outputs = _Outcomes(self) if opts.trigger == "all_done" else self.outputs
        return self.snap.bind(v, outputs)  # type: ignore[arg-type]

    def _tell_unstored(self) -> None:
        """Tell the tasks whose results the store failed to keep."""
        caching = self.caching
        assert caching is not None
        unstored, caching.unstored = caching.unstored, []
        self._tell_not_cached(unstored)

    def _tell_not_cached(self, tasks: list[tuple[int, str]]) -> None:
        if self.on_event is not None or self.stream is not None:
            for v, reason in tasks:
                self._emit(TaskNotCached(self.snap.handle(v), reason))

    def _pop(self) -> int:
        if self.halted or self.nursery is None:
            return -1
        admission = self.admission
        if admission.plain:
            v: int = self.st.pop()
            return v
        if not admission.open(self.retry_waiting):
            return -1
        return admission.take()

    def _spawn(self) -> None:
        """Give each task that may start a worker: an idle one, or a new one up to the limit.

        Called when the calling worker is about to wait: a body that finishes
        without suspending needs no second worker.
        """
        caching = self.caching
        if caching is not None and caching.pending:
            caching.store_pending()  # before the wait: a crash keeps what has ended
            if caching.unstored:
                self._tell_unstored()
        # An idle worker is woken only while fewer than cap workers are busy:
        # with run.result() there may be more workers than cap (see _control).
        while (self.idle and self.workers - len(self.idle) < self.cap) or self.workers < self.cap:
            v = self._next()
            if v < 0:
                return
            if self.idle:
                trio.lowlevel.reschedule(self.idle.pop(), outcome.Value(v))
            else:
                self.workers += 1
                assert self.nursery is not None
                self.nursery.start_soon(self._worker, v)

    def _dismiss_idle(self) -> None:
        """Let idle workers exit: the run has ended or stopped."""
        idle, self.idle = self.idle, []
        for task in idle:
            trio.lowlevel.reschedule(task, outcome.Value(-1))

    async def _wait_for_work(self) -> int:
        """Wait, idle, until _spawn hands this worker a task (-1: exit).

        Waking an idle worker costs far less than spawning a new one, and
        workers run out of ready tasks often (a task's dependents become
        ready only when all their dependencies are done).
        """
        if self.control is not None and self.workers <= self.cap:
            # The loop may have stopped for _control with tasks still ready.
            ready = self._next()
            if ready >= 0:
                return ready
        if self.st.finished or self.halted or self.st.running == self.admission.parked():
            # With nothing running (not even a retry wait), nothing can
            # change what may start: waiting would never end.
            self._dismiss_idle()
            return -1
        if self.workers > self.cap:
            return -1  # a slot given back by run.result() came back: one worker leaves
        task = trio.lowlevel.current_task()
        self.idle.append(task)

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            self.idle.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        v: int = await trio.lowlevel.wait_task_rescheduled(abort)
        return v

    async def _worker(self, v: int) -> None:
        # One cancel scope per worker, not per task: run.cancel_task cancels
        # the scope of the worker that holds the task (see _control), and the
        # worker goes on in a new one.
        while True:
            with trio.CancelScope() as scope:
                await self._work(v, scope)
            if not scope.cancel_called or self.halted or self.nursery is None:
                return
            assert self.control is not None
            if not self.control.renewed():
                return
            self.workers += 1
            v = self._next()

    async def _work(self, v: int, scope: trio.CancelScope) -> None:
        # The slot: [snapshot, task, attempt, start time] for the loop and
        # current_task(), then the Run, this scope, the task held (-1: none),
        # and the worker's Trio task.
        slot: list[Any] = [self.snap, -1, 0, 0.0, self.run, scope, -1, trio.lowlevel.current_task()]
        _CURRENT.set(slot)
        self.slots[id(slot)] = slot
        loop = self.loop
        try:
            if v < 0:
                v = await self._wait_for_work()
            while v >= 0:
                if self.handover:
                    assert self.control is not None
                    v = self.control.received(v)
                    if v < 0:
                        break
                if self.halted:
                    # Handed a task just before the run stopped: it never starts.
                    self._cancelled(v)
                    return
                v = loop.run(v, slot)
                while v >= 0:
                    slot[6] = v  # popped, not started (or its body is slot[1])
                    why = loop.why
                    if why == SUSPENDED:
                        self._spawn()
                        v = await self._drive(slot)
                        continue
                    if why == SLOW and self.growth is not None and self.growth.marks[v]:
                        self.growth.resolve(v)  # a joining task whose joins have ended
                        v = self._next()
                    elif why == SLOW and loop.unlooked is not None and loop.unlooked[v]:
                        # A cached task the loop took: look it up (and the
                        # other ready ones); a miss goes back to the loop.
                        if self._look_up(v):
                            v = self._next()
                    elif why == CHECKPOINT:
                        await self._checkpoint(v)
                    elif why == SLOW and self.admission.gate and not self.admission.admit(v):
                        v = self._next()  # v waits for a slot of its executor
                    else:
                        broke: Exception | None = None
                        try:
                            if why == RAISED:
                                error = loop.error
                                loop.error = None
                                assert error is not None
                                self._attempt_raised(v, loop.began, self.snap.options(v), error)
                            elif self.scopes is None:
                                await self._attempt(v, slot)
                            else:
                                await self._scoped(v, lambda v: self._attempt(v, slot))
                        except Exception as exc:
                            broke = exc
                        if broke is not None:
                            self._broke(v, broke)
                        self.since_checkpoint += 1
                        if self.since_checkpoint >= FAIRNESS_EVERY:
                            self.since_checkpoint = 0
                            await trio.lowlevel.checkpoint()
                        if self.handover and self.control is not None and self.control.leave():
                            return
                        v = self._next()
                    if v >= 0:
                        v = loop.run(v, slot)
                slot[6] = -1
                if self.handover and self.control is not None and self.control.leave():
                    return
                v = await self._wait_for_work()
        finally:
            del self.slots[id(slot)]
            self.workers -= 1

    async def _drive(self, slot: list[Any]) -> int:
        """Await the loop's suspended body; return the next task it hands back.

        The loop hands back every exception but a bare Cancelled as RAISED.
        """
        try:
            v: int = await self.loop.drive(slot)
        except trio.Cancelled as exc:
            cancelled = exc
        else:
            return v
        v = slot[1]
        slot[1] = -1
        self._attempt_raised(v, slot[3], self.snap.options(v), cancelled)
        return self._next()

    async def _checkpoint(self, v: int) -> None:
        # Task v was popped but has not started: a cancellation here ends it.
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            cancelled = exc
        else:
            return
        self._cancelled(v)
        raise cancelled

    async def _scoped(self, v: int, step: Callable[[int], Any]) -> None:
        # A cancel scope of its own, so fail-fast can cancel this task alone.
        assert self.scopes is not None
        if self.halted or (self.failing and not self.teardown[v]):
            # The run stopped between taking this task and starting it.
            self._cancelled(v)
            return
        with trio.CancelScope() as scope:
            self.scopes[v] = scope
            try:
                await step(v)
            finally:
                del self.scopes[v]

    def _cancelled(self, v: int, failure: BaseException | None = None) -> None:
        """Task *v* saw Cancelled (or was stopped before it started): record it,
        give back what it holds, and halt if the cancellation came from outside.

        With *failure*, what the cancelled scope lets out besides (see
        :func:`_bodies.split_cancelled`), the task ends FAILED with it, not
        retried; its attempt has been ended already.
        """
        control = self.control
        if control is not None and control.cancelled(v):
            pass  # run.cancel_task(v): that task alone
        elif not self.halted and (self.teardown[v] or not self.failing):
            self._halt()
        if failure is None:
            self._ended(v, core.CANCELLED, self.st.cancel(v))
        else:
            # Halted or failing now: _failed does not retry.
            self._threw(v, self.snap.options(v), failure)
        if self.batcher is not None:
            # v may have opened a batch that others joined before v started.
            self.batcher.drop(v)
        if self.st.finished:
            self._dismiss_idle()
        elif not self.halted:
            # Teardown tasks may have become ready (also for what v gave
            # back), and this may be no worker that would go on to start them.
            self._spawn()

    # -- one attempt ---------------------------------------------------------

    async def _attempt(self, v: int, slot: list[Any]) -> None:
        limiter = self.limiter
        if limiter is not None and not _took_token(limiter):
            await self._wait_for_token(v, limiter)
            if self.halted or (self.failing and not self.teardown[v]):
                # The run stopped as the token came, too late for the wait to
                # see Cancelled: as in _scoped, the task never starts.
                limiter.release()
                self._cancelled(v)
                return
        try:
            await self._body(v, slot)
        finally:
            if limiter is not None and (self.control is None or self.control.holds_token()):
                limiter.release()

    async def _wait_for_token(self, v: int, limiter: trio.CapacityLimiter) -> None:
        # Other workers go on meanwhile; a cancellation here ends task v.
        self._spawn()
        try:
            await limiter.acquire()
        except trio.Cancelled as exc:
            cancelled = exc
        else:
            return
        self._cancelled(v)  # gives back v's uses with the rest of its end
        raise cancelled

    async def _body(self, v: int, slot: list[Any]) -> None:
        """Run one attempt of task *v* by the general path and record how it ended.

        Where SPEC does not say: arguments that cannot be bound (a container
        changed after ``add``) fail the attempt, counted and not retried; a
        body cancelled while it also failed (a group mixing ``Cancelled``
        with its own error) ends FAILED with the part that is not
        ``Cancelled``, as a Trio scope lets it out.
        """
        snap = self.snap
        loop = self.loop
        opts = snap.options(v)
        fn = snap.fn(v)
        kind = loop.kind(fn)
        if kind == _bodies.BATCH:
            assert isinstance(fn, Batched) and self.batcher is not None
            await self.batcher.run(v, fn, opts, slot)
            return
        began = loop.begin(v)
        attempt = loop.attempts[v]
        if self.on_event is not None or self.stream is not None:
            self._emit(TaskStarted(snap.handle(v), attempt, began))
        outputs = _Outcomes(self) if opts.trigger == "all_done" else loop.outputs
        try:
            args, kwargs = snap.bind(v, outputs)  # type: ignore[arg-type]
        except Exception as exc:
            unbound: Exception | None = exc
        else:
            unbound = None
        if unbound is not None:
            # Its arguments were changed after add(): no attempt can work.
            self._end_attempt(v, began, opts)
            self._gave_up(v, unbound)
            return
        ctx = contextvars.copy_context()
        slot[1] = v
        slot[2] = attempt
        result: Any = None
        error: BaseException | None = None
        if opts.run_in is not None:
            kind = _bodies.KINDS[opts.run_in] if opts.run_in in BUILT_IN else _bodies.EXECUTOR
        if kind == _bodies.EXECUTOR:
            assert self.executors is not None and opts.run_in is not None
            body = self.executors.call(opts.run_in, snap.name(v), fn, args, kwargs, self._spawn)
        else:
            body = _bodies.call(kind, fn, args, kwargs, ctx, self._spawn)
        try:
            if opts.timeout is None:
                result = await body
            else:
                result = await _bodies.within(opts.timeout, snap.name(v), body)
        except BaseException as exc:
            error = exc
        slot[1] = -1
        # Outside the except block: a stop it causes (fail_fast) must not give
        # the Cancelled of other tasks this error as __context__.
        if error is None:
            self._succeeded(v, began, opts, result)
        else:
            self._attempt_raised(v, began, opts, error)

    def _attempt_raised(self, v: int, began: float, opts: TaskOptions, exc: BaseException) -> None:
        """The attempt of task *v* begun at *began* raised *exc*: end it as Trio's scopes decide.

        A cancellation from a scope around the task ends it CANCELLED, or
        FAILED with what that scope lets out besides, and is raised again for
        that scope to catch; anything else is the attempt's own error. Call
        it outside any ``except`` block (see ``_body``).
        """
        cancelled, failure = _bodies.split_cancelled(exc)
        if cancelled is None:
            self._raised(v, began, opts, exc)
            return
        self._end_attempt(v, began, opts)
        self._cancelled(v, failure)
        raise cancelled

    def _end_attempt(self, v: int, began: float, opts: TaskOptions) -> None:
        """End the attempt of task *v* begun at *began* and give back its resources."""
        self.loop.finish(v, began, opts.retries)
        if self.admission.held:
            self.admission.release(v)

    def _succeeded(self, v: int, began: float, opts: TaskOptions, result: Any) -> None:
        self._end_attempt(v, began, opts)
        self._returned(v, result)

    def _returned(self, v: int, result: Any) -> None:
        """Task *v* returned *result*; its attempt has ended."""
        self.outputs[v] = result
        if self.growth is not None:
            if self.growth.joined(v, result):
                return  # it waits for the tasks it joins
            result = self.outputs[v]
        caching = self.caching
        if caching is not None:
            why = caching.returned(v, result)
            if why is not None:
                self._tell_not_cached([(v, why)])
            if caching.unstored:
                self._tell_unstored()
        if self.retries:
            self._requeue_due()
        self.st.done(v)
        self._ended(v, core.SUCCEEDED)

    def _raised(self, v: int, began: float, opts: TaskOptions, exc: BaseException) -> None:
        """An attempt of task *v* begun at *began* raised *exc* (not Cancelled)."""
        self._end_attempt(v, began, opts)
        self._threw(v, opts, exc)

    def _threw(self, v: int, opts: TaskOptions, exc: BaseException) -> None:
        """Task *v* raised *exc* (not Cancelled); its attempt has ended: retry or fail."""
        if isinstance(exc, Exception):
            self._failed(v, self.loop.attempts[v], exc, opts)
            return
        # KeyboardInterrupt, SystemExit and the like stop the whole run, and
        # leave it unwrapped, also from the group of a nursery in the body.
        self.errors[v] = exc
        if self.fatal is None:
            self.fatal = _bodies.fatal(exc) or exc
        self._halt(failed=v)

    def _failed(self, v: int, attempt: int, exc: Exception, opts: TaskOptions) -> None:
        if self.retries:
            self._requeue_due()
        if (
            attempt <= opts.retries
            and isinstance(exc, opts.retry_on)
            and not self.failing
            and not self.halted
        ):
            delay = _retry_delay(opts, attempt)
            if delay > 0:
                self._retry_later(v, delay)
            else:
                self.st.requeue(v)
            if self.on_event is not None or self.stream is not None:
                # After the retry is set up: if the listener raises, stopping
                # the run cancels the retry with the rest.
                self._emit(TaskRetrying(self.snap.handle(v), attempt, exc, delay))
            return
        self._gave_up(v, exc)

    def _gave_up(self, v: int, exc: Exception) -> None:
        """Task *v* fails for good with *exc*: record it, and stop as ``on_failure`` says."""
        if self.retries:
            self._requeue_due()
        self.errors[v] = exc
        if self.fail_fast:
            self._fail_fast(failed=v)
        else:
            self._ended(v, core.FAILED, self.st.fail(v))

    def _broke(self, v: int, exc: Exception) -> None:
        """Last resort: the engine's own code raised *exc* while it ran task *v*.

        A bug of trio_dag; rather than leave the run's nursery as a bare
        ExceptionGroup with no report, it becomes task *v*'s failure, not
        retried (what its attempt held, timing or resources, may be left as
        it was). Should *v* have ended already there is no task to blame,
        and *exc* is raised.
        """
        if self.st.state(v) != core.RUNNING:
            raise exc
        self._gave_up(v, exc)

    def _retry_later(self, v: int, delay: float) -> None:
        """Put task *v* back in the ready heap once *delay* seconds have passed.

        One timer serves every waiting retry, so the retries that fall due
        at the same instant go back together, in task order: the ready heap
        then starts them in policy order (ties by insertion, reversed under
        lifo), the same on every run. SPEC asks that with ``limit=1``; one
        sleeping Trio task per retry would let Trio's scheduling pick.
        """
        due = trio.current_time() + delay
        heapq.heappush(self.retries, (due, v))
        self.retry_waiting += 1
        self.loop.before_end = self._requeue_due
        timer = self.retry_timer
        if timer is None:
            self.retry_timer = trio.CancelScope(deadline=due)
            assert self.nursery is not None
            self.nursery.start_soon(self._retry_timer)
        elif due < timer.deadline:
            timer.deadline = due

    async def _retry_timer(self) -> None:
        retries = self.retries
        try:
            while retries:
                assert self.retry_timer is not None
                with self.retry_timer:
                    await trio.sleep_forever()
                due = self._requeue_due()
                self.retry_timer = trio.CancelScope(deadline=retries[0][0] if retries else math.inf)
                if due:
                    self._spawn()
        except trio.Cancelled:
            if not self.halted:
                self._halt()  # cancelled from outside the run
            raise
        finally:
            self.retry_timer = None

    def _requeue_due(self) -> bool:
        """Put back in the ready heap the retries due by now; return whether any was.

        Called by the timer, and before any task's end is recorded while
        retries wait (the loops call it as ``before_end``): a retry due at
        the instant a task ends is ready before the task's dependents, on
        every run, rather than whichever of the timer and the ending body
        Trio happens to wake first (with ``limit=1`` that decides the start
        order).
        """
        retries = self.retries
        now = trio.current_time()
        due = []
        while retries and retries[0][0] <= now:
            due.append(heapq.heappop(retries)[1])
        if not retries:
            self.loop.before_end = None
        if not due:
            return False
        self.retry_waiting -= len(due)
        for v in due:
            self.st.requeue(v)
        return True

    def _cancel_retries(self, *, teardown_too: bool) -> None:
        """End CANCELLED the tasks waiting out a retry delay (teardown ones only
        if *teardown_too*); the others wait on."""
        if not self.retries:
            return
        cancelled: list[int] = []
        kept: list[tuple[float, int]] = []
        for due, v in sorted(self.retries):
            if teardown_too or not self.teardown[v]:
                cancelled.append(v)
            else:
                kept.append((due, v))
        cancelled.sort()  # in task order, as cancel_pending ends tasks
        self.retries[:] = kept  # sorted: a heap
        if not kept:
            self.loop.before_end = None
        self.retry_waiting -= len(cancelled)
        if self.retry_timer is not None:
            # Wake the timer to sleep until the next retry due, or to end.
            self.retry_timer.deadline = -math.inf
        for v in cancelled:
            self._ended(v, core.CANCELLED, self.st.cancel(v))
        if not self.halted and not self.st.finished:
            self._spawn()  # teardown tasks may have become ready

    # -- ended tasks and events ----------------------------------------------

    def _ended(self, v: int, code: int, skipped: Sequence[int] = ()) -> None:
        control = self.control
        if control is None:
            ends = self.loop.ends
            self.log.append((ends, v))
            if skipped:
                self.log.extend([(ends, s) for s in skipped])
        else:
            control.ended(v, skipped)
        admission = self.admission
        if v in admission.held:
            # However a task ended (also cancelled before it started), what
            # it took goes back.
            admission.release(v)
        if admission.levels is not None:
            admission.ended(v)
            for s in skipped:
                admission.ended(s)
        if self.on_event is not None or self.stream is not None:
            # One group: a stop a listener asks for while it hears of these
            # ends waits until all of them are told.
            self.emitting += 1
            try:
                self._emit_finished(v, code)
                for s in skipped:
                    self._emit_finished(s, core.SKIPPED)
            finally:
                self.emitting -= 1
            self._stop_if_asked()

    def _emit_finished(self, v: int, code: int) -> None:
        loop = self.loop
        start = loop.start[v]
        duration = 0.0 if math.isnan(start) else loop.end[v] - start
        result = task_outcome(self.snap, code, v, self.outputs, self.errors, self.st.state)
        self._emit(TaskFinished(self.snap.handle(v), STATE_OF[code], loop.now(), duration, result))

    def _stop_if_asked(self) -> None:
        """Stop the run as a listener asked while events were being told."""
        if self.emitting:
            return
        if self.deferred_halt:
            self.deferred_halt = self.deferred_fail_fast = False
            self._halt()
        elif self.deferred_fail_fast:
            self.deferred_fail_fast = False
            self._fail_fast()

    def _emit(self, event: Event) -> None:
        self.emitting += 1
        try:
            self._tell(event)
        finally:
            self.emitting -= 1
        self._stop_if_asked()

    def _tell(self, event: Event) -> None:
        if self.stream is not None:
            try:
                self.stream(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.stream = None  # the reader stopped listening; the run goes on
        if self.on_event is not None:
            try:
                self.on_event(event)
            except trio.Cancelled:
                raise
            except BaseException as exc:
                error = exc
            else:
                return
            # Outside the except block, as in _body.
            self.on_event = None
            if isinstance(error, Exception):
                self.callback_error = CallbackError("on_event", error)
                self.deferred_fail_fast = True
            else:
                # KeyboardInterrupt and the like stop everything, and propagate
                # from run() as they are, as when a task raises them.
                if self.fatal is None:
                    self.fatal = error
                self.deferred_halt = True

"""Per-task control of a running run: results, cancel_task, counts, as_completed.

The engine runs with none of this until a :class:`~trio_dag.Run` method asks
(``run.counts`` aside, which only reads counters): then a :class:`Control` is
made for the run, and from then on it hears every task's end (the engine's
``_ended``, and the fast loop's ``on_return`` for bodies that return there).
What ended before it was made is read back from the engine's log (tasks that
ended outside the fast loop) and the loop's end order (the others).

Giving back a ``limit`` slot (``await run.result(h)`` inside a task). With an
``int`` limit the engine's workers are the slots: the waiting task's worker
stays, and the engine's ``cap`` grows by one while it waits, so another
worker may start. To go on, the task needs a slot again: at once if a worker
place is free (an idle worker leaves for it), otherwise it queues, the loop
stops its chains (``loop.stopped``) and the first worker to reach the end of
a task hands its place over and leaves (``leave``). With a
``trio.CapacityLimiter`` the worker's token goes back to the limiter and is
taken again in the limiter's own order. ``uses`` are never given back.

Cancelling one task. A task that has not started leaves the core's heap (or
admission's queues, or the retry timer's heap) and ends CANCELLED at once. A
task a worker holds is cancelled through that worker's cancel scope (one per
worker, see ``Engine._worker``); the engine's ``_cancelled`` asks
:meth:`Control.cancelled` and does not stop the run for it, and the worker
goes on in a new scope. A task handed to a worker that has not picked it up
yet ends as the worker receives it (``received``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import outcome
import trio

from ._batching import Batched
from ._errors import TaskFailedError, UnknownDependencyError
from ._events import _CURRENT
from ._handle import Handle
from ._native import core
from ._report import CACHED, task_outcome

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Completed", "Control", "RunCounts", "control_of", "counts_of", "tally_of"]

_FINAL = frozenset({core.SUCCEEDED, core.FAILED, core.SKIPPED, core.CANCELLED})
_NOT_STARTED = frozenset({core.PENDING, core.READY})


class RunCounts(NamedTuple):
    """How many tasks of a running run are in each state, as ``run.counts`` gives it.

    A snapshot, read in constant time from the counters the run keeps. The
    states add up to ``total``: ``pending + ready + running`` tasks have not
    ended, the others have. A named tuple, not an attrs class: a progress
    display may read it after every task, and a tuple is made in a quarter
    of the time a frozen attrs instance of nine fields takes.

    Attributes:
      pending: Waiting for their dependencies, or for the delay before a
        retry.
      ready: May start as soon as a ``limit`` slot (and their ``uses``) is
        free.
      running: Started and not ended (a body that awaits
        :meth:`Run.result` counts here).
      succeeded: Ended SUCCEEDED.
      failed: Ended FAILED.
      skipped: Ended SKIPPED.
      cancelled: Ended CANCELLED.
      cached: Ended CACHED.
      total: Every task of the run.
    """

    pending: int
    ready: int
    running: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    cached: int
    total: int


Tally = tuple[int, ...]
_new_tuple = tuple.__new__


def tally_of(engine: Engine) -> Tally:
    """What :class:`RunCounts` is made of: the core's counters, the tasks
    waiting for a resource or a retry, and the CACHED ones. Cheap to compare:
    ``run.counts`` makes a new RunCounts only when it changed."""
    waiting = engine.admission.waiting
    parked = sum(map(len, waiting.values())) if waiting else 0
    tally: Tally = (*engine.st.tally(), parked, engine.retry_waiting, engine.cached)
    return tally


def counts_of(tally: Tally) -> RunCounts:
    """The :class:`RunCounts` of a :func:`tally_of`."""
    ready, running, ended, total, failed, skipped, cancelled, parked, retrying, cached = tally
    # Tasks waiting for a resource or a retry were taken from the heap: the
    # core counts them running.
    ready += parked
    running -= parked + retrying
    # tuple.__new__ skips the named tuple's own __new__ (a Python function).
    return _new_tuple(
        RunCounts,
        (
            total - ended - ready - running,
            ready,
            running,
            ended - failed - skipped - cancelled - cached,
            failed,
            skipped,
            cancelled,
            cached,
            total,
        ),
    )


# How a task waiting for a result gave back its slot.
_KEPT = 0  # it did not (no limit, or awaited from outside the run's tasks)
_PLACE = 1  # a worker place (an int limit)
_TOKEN = 2  # a token of the run's CapacityLimiter


class Control:
    """What one run's per-task methods keep; made by :func:`control_of`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Every task that has ended, in the order they ended.
        self.order: list[int] = self._history()
        # Set (and replaced) whenever tasks end, for as_completed.
        self.more = trio.Event()
        self.listeners = 0
        # Tasks someone awaits the result of; tasks being cancelled by
        # cancel_task; which task each waiting task awaits.
        self.waiting: dict[int, trio.Event] = {}
        self.cancelling: set[int] = set()
        self.awaiting: dict[int, int] = {}
        # Tasks whose result came and that wait for a worker place.
        self.rejoining: deque[trio.Event] = deque()
        # Worker scopes cancel_task used that their worker has not renewed.
        self.used_scopes = 0
        # Workers of tasks cancelled while they had given back their token.
        self.tokenless: set[trio.lowlevel.Task] = set()
        loop = engine.loop
        self._on_return = loop.on_return
        loop.on_return = self.returned
        engine.log = []
        engine.control = self

    def _history(self) -> list[int]:
        e = self.engine
        states = e.st.states()
        end_order = e.loop.end_order
        logged = {v for _, v in e.log}
        keyed: list[tuple[int, int, int, int]] = [
            (ends, 1, k, v) for k, (ends, v) in enumerate(e.log)
        ]
        for v, code in enumerate(states):
            if code == core.SUCCEEDED and v not in logged:
                keyed.append((end_order[v], 0, 0, v))
        keyed.sort()
        return [item[3] for item in keyed]

    # -- hearing the ends of tasks (called by the engine and the loop) -------

    def ended(self, v: int, skipped: Sequence[int] = ()) -> None:
        self._one(v)
        for s in skipped:
            self._one(s)
        self._wake()

    def ended_many(self, tasks: Iterable[int]) -> None:
        for v in tasks:
            self._one(v)
        self._wake()

    def returned(self, v: int, output: Any) -> Any:
        """The loop's ``on_return``: task *v* returned in the fast loop."""
        why = None if self._on_return is None else self._on_return(v, output)
        if v in self.cancelling:
            # It returned before the cancellation reached it: it SUCCEEDED.
            # Its worker's scope stays cancelled: stop the chain there.
            self.engine.loop.stopped = True
        self._one(v)
        self._wake()
        return why

    def _one(self, v: int) -> None:
        self.order.append(v)
        event = self.waiting.pop(v, None)
        if event is not None:
            event.set()
        self.cancelling.discard(v)

    def _wake(self) -> None:
        if self.listeners:
            self.more.set()
            self.more = trio.Event()

    # -- what the engine asks ------------------------------------------------

    def cancelled(self, v: int) -> bool:
        """Whether task *v*'s cancellation came from cancel_task (not a stop of the run)."""
        return v in self.cancelling

    def holds_token(self) -> bool:
        """Whether the calling worker holds its CapacityLimiter token (to give back)."""
        if not self.tokenless:
            return True
        task = trio.lowlevel.current_task()
        if task in self.tokenless:
            self.tokenless.discard(task)
            return False
        return True

    def received(self, v: int) -> int:
        """A worker picks up task *v*: end it if cancel_task asked; the task to run, or -1."""
        e = self.engine
        ended = False
        while v >= 0 and v in self.cancelling and e.st.state(v) == core.RUNNING:
            e._ended(v, core.CANCELLED, e.st.cancel(v))
            ended = True
            v = e._next()
        if ended and e.st.finished:
            e._dismiss_idle()  # that was the last task: idle workers leave too
        self._settle()
        return v

    def leave(self) -> bool:
        """A worker that holds no task asks whether it must leave (True) or go on."""
        e = self.engine
        slot = _CURRENT.get()
        if slot[5].cancel_called:
            return True  # cancel_task used its scope: Engine._worker renews it
        if self.rejoining:
            # Its place goes to the task that waited longest for one.
            e.cap -= 1
            self.rejoining.popleft().set()
            self._settle()
            return True
        self._settle()
        if e.workers <= e.cap:
            return False
        if e.st.finished or e.st.running == e.admission.parked():
            e._dismiss_idle()  # it was the last worker with work: nothing will wake them
        return True

    def renewed(self) -> bool:
        """A worker whose scope cancel_task used (and that left the run's
        count of workers) asks whether it goes on, in a new scope."""
        e = self.engine
        self.used_scopes -= 1
        self._grant()  # its place, now free, goes first to a task waiting to go on
        if e.workers < e.cap:
            return True
        # A slot given back by the task it held is over: it leaves.
        if e.st.finished or e.st.running == e.admission.parked():
            e._dismiss_idle()
        return False

    def _settle(self) -> None:
        e = self.engine
        busy = bool(self.rejoining or self.used_scopes)
        e.handover = busy or bool(self.cancelling) or e.workers > e.cap
        e.loop.stopped = e.halted or busy

    # -- run.result ------------------------------------------------------------

    def index(self, task: object, what: str) -> int:
        """The index of *task* (a handle or name) in the run, with report[task]'s errors."""
        if not isinstance(task, (str, Handle)):
            raise TypeError(f"{what} takes a Handle or a task name, not {task!r}")
        e = self.engine
        try:
            v = e.snap.index(task)
        except UnknownDependencyError:
            name = task if isinstance(task, str) else task.name
            raise KeyError(f"task {name!r} is not in this run: its DAG had no such task") from None
        if e.st.state(v) == core.EXCLUDED:
            raise KeyError(f"task {e.snap.name(v)!r} is not part of this run (targets=)")
        return v

    def has_ended(self, v: int) -> bool:
        return self.engine.st.state(v) in _FINAL

    def outcome(self, v: int) -> outcome.Outcome[Any]:
        """How task *v*, which has ended, ended: what ``report.outcome`` gives."""
        e = self.engine
        st = e.st
        code = st.state(v)
        caching = e.caching
        if caching is not None and caching.hit[v]:
            code = CACHED
        return task_outcome(e.snap, code, v, e.outputs, e.errors, st.state)

    def value(self, v: int) -> Any:
        """What ``report[v]`` gives for task *v*, which has ended: its output, or its error."""
        e = self.engine
        code = e.st.state(v)
        if code == core.FAILED:
            error = e.errors[v]
            raise TaskFailedError(e.snap.name(v), error) from error
        if code == core.SUCCEEDED:
            return e.outputs[v]
        return self.outcome(v).unwrap()

    async def result(self, v: int) -> Any:
        if not self.has_ended(v):
            e = self.engine
            found = _CURRENT.get(None)
            slot: list[Any] = []
            me = -1
            if found is not None and found[1] >= 0 and len(found) > 7 and found[4] is e.run:
                slot = found
                me = slot[1]
                self._check_wait(me, v)
            event = self.waiting.get(v)
            if event is None:
                event = self.waiting[v] = trio.Event()
            if me < 0:
                await event.wait()
            else:
                self.awaiting[me] = v
                try:
                    await self._wait_in_task(event, slot)
                finally:
                    del self.awaiting[me]
        return self.value(v)

    async def wait(self, event: trio.Event) -> None:
        """Wait for *event*, giving back the slot when called from a task of the run."""
        slot = _CURRENT.get(None)
        if slot is not None and slot[1] >= 0 and len(slot) > 7 and slot[4] is self.engine.run:
            await self._wait_in_task(event, slot)
        else:
            await event.wait()

    def _check_wait(self, me: int, v: int) -> None:
        e = self.engine
        name = e.snap.name
        if v == me:
            raise RuntimeError(f"task {name(me)!r} awaits its own result: it would wait forever")
        graph = e.snap.graph
        seen = {me}
        stack = [me]
        while stack:
            for c in graph.children(stack.pop()):
                if c == v:
                    raise RuntimeError(
                        f"task {name(me)!r} awaits the result of {name(v)!r}, which depends "
                        "on it: it would wait forever"
                    )
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        x = v
        while x in self.awaiting:
            x = self.awaiting[x]
            if x == me:
                raise RuntimeError(
                    f"task {name(me)!r} awaits the result of {name(v)!r}, which awaits "
                    f"(through run.result) the result of {name(me)!r}: they would wait forever"
                )

    async def _wait_in_task(self, event: trio.Event, slot: list[Any]) -> None:
        """Wait for *event* inside a task, its slot given back meanwhile."""
        e = self.engine
        worker: trio.lowlevel.Task = slot[7]
        if e.limiter is not None:
            given = _TOKEN
            e.limiter.release_on_behalf_of(worker)
        elif e.limited:
            given = _PLACE
        else:
            given = _KEPT
        if given != _KEPT:
            e.cap += 1
            self._grant()  # a task waiting to go on takes the place first
            e._spawn()
        try:
            await event.wait()
        except BaseException:
            self._abandon(given, worker)
            raise
        if given == _TOKEN:
            try:
                await e.limiter.acquire_on_behalf_of(worker)  # type: ignore[union-attr]
            except BaseException:
                self._abandon(given, worker)
                raise
            e.cap -= 1
            self._settle()
        elif given == _PLACE:
            await self._take_place()

    def _grant(self) -> None:
        """Give free places to the tasks waiting to go on, longest waiting first.

        Busy workers (all but the idle ones) hold a place each, and ``cap``
        counts the limit plus one per task that gave its place back; a
        waiting task's place comes back as ``cap`` goes down by one.
        """
        e = self.engine
        while self.rejoining and e.workers - len(e.idle) < e.cap:
            e.cap -= 1
            self.rejoining.popleft().set()
        self._settle()

    async def _take_place(self) -> None:
        e = self.engine
        if not self.rejoining and e.workers - len(e.idle) < e.cap:
            e.cap -= 1  # a place is free (an idle worker's, or one not taken)
            self._settle()
            return
        turn = trio.Event()
        self.rejoining.append(turn)
        self._settle()
        try:
            await turn.wait()
        except BaseException:
            if not turn.is_set():
                self.rejoining.remove(turn)
                self._abandon(_PLACE, None)
            raise

    def _abandon(self, given: int, worker: trio.lowlevel.Task | None) -> None:
        """The waiting task was cancelled: what it gave back stays given back.

        Its worker goes on as any other once the task has ended; the place
        it had over the limit goes (a worker leaves when one is too many),
        and a limiter's token it no longer holds is not released again.
        """
        if given == _KEPT:
            return
        e = self.engine
        e.cap -= 1
        if given == _TOKEN:
            assert worker is not None
            self.tokenless.add(worker)
        self._settle()

    # -- run.cancel_task --------------------------------------------------------

    def cancel_task(self, v: int) -> None:
        e = self.engine
        if e.report is not None or e.halted or v in self.cancelling:
            return
        st = e.st
        code = st.state(v)
        if code in _FINAL:
            return
        if code in _NOT_STARTED:
            if code == core.READY:
                e.admission.forget(v)  # woken from a resource's queue
            self._end_now(v)
            return
        # Taken from the heap: waiting for a retry or a resource, or held by a worker.
        for k, (_, u) in enumerate(e.retries):
            if u == v:
                e.retries.pop(k)
                e.retries.sort()  # a heap again
                e.retry_waiting -= 1
                if not e.retries:
                    e.loop.before_end = None
                if e.retry_timer is not None:
                    # Wake the timer to sleep until the next retry due, or to end.
                    e.retry_timer.deadline = -math.inf
                self._end_now(v)
                return
        if e.admission.forget(v):
            self._end_now(v)
            return
        if isinstance(e.snap.fn(v), Batched):
            # Its call serves other tasks too: cancelling the worker's scope
            # would cancel them all. It leaves its batch, or its result is
            # dropped (see Batcher.cancel).
            how = False if e.batcher is None else e.batcher.cancel(v)
            if how is True:
                self._end_now(v)
                return
            if how is not False:  # the call serves v alone now: cancel it
                self.cancelling.add(v)
                self.used_scopes += 1
                how[5].cancel()
                self._settle()
                return
            raise RuntimeError(
                f"task {e.snap.name(v)!r} opened a call of its batched function that "
                "serves other tasks too and holds their uses= (or waits for more tasks): "
                "it cannot be cancelled alone now"
            )
        for slot in e.slots.values():
            if slot[1] == v or (slot[1] < 0 and slot[6] == v):
                self.cancelling.add(v)
                self.used_scopes += 1
                slot[5].cancel()
                self._settle()
                return
        # Handed to a worker that has not picked it up yet: it ends there.
        self.cancelling.add(v)
        self._settle()

    def _end_now(self, v: int) -> None:
        e = self.engine
        e._ended(v, core.CANCELLED, e.st.cancel(v))
        if e.st.finished:
            e._dismiss_idle()
        elif not e.halted and e.nursery is not None:
            e._spawn()  # all_done dependents may have become ready

    # -- run.as_completed ------------------------------------------------------

    def finished(self) -> bool:
        e = self.engine
        return e.report is not None or e.st.finished


class Completed:
    """The async iterator of ``run.as_completed()``: ``(handle, outcome)`` in finish order."""

    def __init__(self, control: Control, wanted: set[int] | None) -> None:
        self._control = control
        self._wanted = wanted
        self._left = None if wanted is None else len(wanted)
        self._pos = 0

    def __aiter__(self) -> Completed:
        return self

    async def __anext__(self) -> tuple[Handle[Any], outcome.Outcome[Any]]:
        control = self._control
        while True:
            order = control.order
            wanted = self._wanted
            while self._pos < len(order) and self._left != 0:
                v = order[self._pos]
                self._pos += 1
                if wanted is None or v in wanted:
                    if self._left is not None:
                        self._left -= 1
                    return control.engine.snap.handle(v), control.outcome(v)
            if self._left == 0 or control.finished():
                raise StopAsyncIteration
            control.listeners += 1
            try:
                await control.wait(control.more)
            finally:
                control.listeners -= 1


def control_of(engine: Engine) -> Control:
    """The run's :class:`Control`, made on first use."""
    control = engine.control
    if control is None:
        control = Control(engine)
    return control

"""How the engine runs tasks of a batched function: gather, wait, call once, share out.

The worker that takes a task of a batched function opens a batch: it pops
the other ready tasks of the same function from the core (leaving the rest
in their places), and if the batch is not full and ``max_delay`` allows,
waits for more; meanwhile other workers that take a task of the function add
it to the open batch instead of starting a call. Then it calls the function
once with the items and gives each task its element of the result.

A batch is opened when a worker is handed its first task, before that
worker runs: every way that task can end ends the batch with it (the tasks
that joined end too, and the opener's ``uses`` go back exactly once), or
they would wait for a call that never comes. Teardown (``all_done``) tasks
and the others are batched apart, so that fail-fast, which cancels only the
others, cancels whole batches.

A :class:`Batcher` keeps the batches of one run. It reads the run's state
(snapshot, core, loop, admission) and counts calls in the loop's ledger
(``begin_batch``/``finish_batch``/``end_batch``), but ends tasks, starts
workers and tells events only through the :class:`BatchHost` the engine
gives it; the engine calls it through ``claim``, ``drop`` and ``run``.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, Protocol

import trio

from . import _bodies
from ._batching import Batched
from ._events import Event, TaskStarted
from ._native import core
from ._options import BUILT_IN

if TYPE_CHECKING:
    from ._admission import Admission
    from ._options import TaskOptions
    from ._snapshot import Snapshot

__all__ = ["BatchHost", "Batcher", "OpenBatch"]


class BatchHost(Protocol):
    """What a :class:`Batcher` may ask of the run that owns it.

    Every task handed to a ``succeeded``/``raised``/``gave_up``/``cancelled``
    has had its attempt ended (or never started) and its resources given
    back by the Batcher: the host only records how it ended.
    """

    def listening(self) -> bool:
        """Whether anyone hears events (``emit`` is worth calling)."""
        ...

    def stopped(self, teardown: int) -> bool:
        """Whether the run starts no more tasks of this kind (teardown or not)."""
        ...

    def spawn(self) -> None:
        """Give ready tasks workers: the calling worker is about to wait."""
        ...

    def emit(self, event: Event) -> None:
        """Tell *event* to the listeners."""
        ...

    def succeeded(self, v: int, result: Any) -> None:
        """Task *v* returned *result*."""
        ...

    def raised(self, v: int, exc: BaseException) -> None:
        """An attempt of task *v* raised *exc* (not a cancellation): retry or fail."""
        ...

    def gave_up(self, v: int, exc: Exception) -> None:
        """Task *v* fails for good with *exc*, not retried."""
        ...

    def cancelled(self, v: int, failure: BaseException | None = None) -> None:
        """Task *v* saw Cancelled or the run stopped before it started (see
        ``Engine._cancelled``); with *failure*, it ends FAILED with it."""
        ...

    def dropped(self, v: int) -> None:
        """Task *v*, which joined a batch that never ran, ends CANCELLED."""
        ...

    def on_executor(self, name: str, v: int, fn: Batched[Any, Any], items: list[Any]) -> Any:
        """An awaitable that calls *fn* with *items* on the executor *name*, for task
        *v*, the batch's first, and returns its result."""
        ...


class OpenBatch:
    """A batch of one batched function: its opener first, then the tasks that joined.

    ``holding``: the opener still holds its ``uses``, which the whole call
    takes once; they go back when the batch ends, however it ends.
    """

    __slots__ = ("fn", "full", "holding", "key", "tasks")

    def __init__(self, fn: Batched[Any, Any], key: tuple[Any, int], opener: int) -> None:
        self.fn = fn
        self.key = key
        self.tasks = [opener]
        self.full = trio.Event()
        self.holding = True


class Batcher:
    """The batches of one run: which are open, whose openers have not started,
    which call ran each task (``batch_of``, for the report)."""

    def __init__(
        self,
        snap: Snapshot,
        st: Any,
        loop: Any,
        admission: Admission,
        teardown: bytearray,
        outcomes: Any,
        host: BatchHost,
    ) -> None:
        self.snap = snap
        self.st = st
        self.loop = loop
        self.admission = admission
        self.teardown = teardown
        # What the all_done tasks of a batch are bound with.
        self.outcomes = outcomes
        self.host = host
        # The batch each function (with the teardown flag) waits to fill, the
        # batches whose openers have not started, which call ran whom.
        self.open_batches: dict[tuple[Any, int], OpenBatch] = {}
        self.openers: dict[int, OpenBatch] = {}
        self.calls = 0
        self.batch_of: dict[int, int] = {}
        # Set by the engine of a run with a cache: 1 for a cached task not yet
        # looked up, which joins a batch only once the engine has looked it up.
        self.unlooked: bytearray | None = None
        # Batches whose openers gather them or wait for more; the tasks of
        # calls under way (with the call's start); tasks cancelled alone
        # during their call, whose results are dropped (see cancel).
        self.gathering: set[OpenBatch] = set()
        self.in_flight: dict[int, tuple[float, list[Any], list[int]]] = {}
        self.discarded: set[int] = set()

    def claim(self, v: int, fn: Batched[Any, Any]) -> bool:
        """Task *v* of *fn* was just taken: open a batch with it (True), or join one (False).

        A task that joins is taken care of by the batch's opener; its resources
        go back at once, since a call takes its opener's once. A batch takes no
        more than ``fn.max_size`` tasks: one of size 1 is full as it opens.
        """
        key = (fn, self.teardown[v])
        batch = self.open_batches.get(key)
        if batch is None:
            batch = self.openers[v] = OpenBatch(fn, key, v)
            if fn.max_size > 1:
                self.open_batches[key] = batch
            return True
        self.admission.release(v)
        batch.tasks.append(v)
        if len(batch.tasks) >= fn.max_size:
            self._close(batch)
            batch.full.set()
        return False

    def drop(self, v: int) -> None:
        """Task *v* ended CANCELLED before it started: if it opened a batch, end the batch.

        The batch takes no more tasks, the opener's ``uses`` go back, and the
        tasks that joined it end CANCELLED as the opener did (they share its
        kind: teardown or not).
        """
        batch = self.openers.pop(v, None)
        if batch is None:
            return
        self._close(batch)
        self._give_back(batch)
        for u in batch.tasks[1:]:
            self.host.dropped(u)

    async def run(self, v: int, fn: Batched[Any, Any], opts: TaskOptions, slot: list[Any]) -> None:
        """Run the batch task *v* opened; or first open or join one (the fast loop takes
        tasks without claiming them)."""
        batch = self.openers.pop(v, None)
        if batch is None:
            if not self.claim(v, fn):
                return
            batch = self.openers.pop(v)
        self.gathering.add(batch)
        try:
            self._gather(batch)
            if len(batch.tasks) < fn.max_size and fn.max_delay > 0:
                await self._wait_for_more(batch)
        finally:
            self.gathering.discard(batch)
        self._close(batch)
        if self._stopped(batch):
            # The run stopped while the opener waited, too late for its wait
            # to see Cancelled (the batch filled, or max_delay ran out, in the
            # same step): as for a task stopped before it starts, nothing starts.
            self._abandon(batch)
            return
        await self._call(batch, opts, slot)

    def cancel(self, v: int) -> bool | list[Any]:
        """``run.cancel_task`` of task *v*, taken to start: True if it may end
        CANCELLED alone now (the caller ends it), the worker's slot if its
        call now serves it alone (the caller cancels the call), False if it
        cannot be cancelled alone.

        A task that joined a batch not called yet leaves it. One whose call is
        under way has its attempt ended now and its result dropped when the
        call returns, while the call serves the other tasks on; the last task
        a call serves cancels the call. The opener of a call that holds the
        call's ``uses`` cannot while others remain (they go back when the
        call ends), nor an opener waiting for more tasks.
        """
        entry = self.in_flight.get(v)
        if entry is not None:
            began, slot, members = entry
            if all(u == v or u in self.discarded for u in members):
                return slot
            if v in self.admission.held:
                return False
            self.loop.finish_batch(v, began, self.snap.options(v).retries)
            self.discarded.add(v)
            return True
        if v in self.admission.held:
            return False
        for batch in [*self.open_batches.values(), *self.openers.values(), *self.gathering]:
            if v in batch.tasks[1:]:
                batch.tasks.remove(v)
                return True
        return False

    def _close(self, batch: OpenBatch) -> None:
        # No task joins the batch from now on.
        if self.open_batches.get(batch.key) is batch:
            del self.open_batches[batch.key]

    def _give_back(self, batch: OpenBatch) -> None:
        # The opener's uses go back once, whichever way the batch ends.
        if batch.holding:
            batch.holding = False
            self.admission.release(batch.tasks[0])

    def _gather(self, batch: OpenBatch) -> None:
        # Pop ready tasks of the batch's function and kind, in policy order; the
        # others go back in place. So do tasks woken from a resource's queue:
        # admission set aside their amounts, and only admission.take, which
        # takes or passes on that amount, may take them from the heap.
        fn = batch.fn
        tasks = batch.tasks
        st = self.st
        snap = self.snap
        teardown = self.teardown
        kind = teardown[tasks[0]]
        admission = self.admission
        levels = admission.levels
        woken = admission.woken
        unlooked = self.unlooked
        held = []
        while len(tasks) < fn.max_size:
            u = st.pop()
            if u < 0:
                break
            if (
                snap.fn(u) is fn
                and teardown[u] == kind
                and (levels is None or levels[u] <= admission.wave)
                and u not in woken
                and (unlooked is None or not unlooked[u])
            ):
                tasks.append(u)
            else:
                held.append(u)
        for u in held:
            st.push_back(u)
        if len(tasks) < fn.max_size and admission.waiting:
            tasks.extend(
                admission.take_waiting(
                    lambda u: (
                        snap.fn(u) is fn
                        and teardown[u] == kind
                        and (unlooked is None or not unlooked[u])
                    ),
                    fn.max_size - len(tasks),
                )
            )

    async def _wait_for_more(self, batch: OpenBatch) -> None:
        try:
            self.host.spawn()
            with trio.move_on_after(batch.fn.max_delay):
                await batch.full.wait()
        except trio.Cancelled:
            self._abandon(batch)
            raise

    def _abandon(self, batch: OpenBatch) -> None:
        # The batch never starts: every task of it ends CANCELLED unstarted.
        self._close(batch)
        self._give_back(batch)
        for u in batch.tasks:
            self.host.cancelled(u)

    def _start(self, batch: OpenBatch, began: float, number: int) -> None:
        """Start an attempt of every task of the batch, in call *number* begun at *began*.

        Every task starts at the call's one clock reading, which its TaskStarted
        carries and the report keeps, also one that then fails on its arguments
        (a plain task too starts before its arguments are bound). The call is
        one body running, however many tasks it serves.
        """
        snap = self.snap
        loop = self.loop
        host = self.host
        listening = host.listening()
        tasks = batch.tasks
        for k, u in enumerate(tasks):
            if k and listening and self._stopped(batch):
                # An event listener raised on an earlier TaskStarted and stopped
                # the run: nothing more starts; the rest end CANCELLED unstarted.
                unstarted = tasks[k:]
                del tasks[k:]
                for w in unstarted:
                    host.cancelled(w)
                return
            loop.begin_batch(u, began, not k)
            self.batch_of[u] = number
            if listening:
                host.emit(TaskStarted(snap.handle(u), loop.attempts[u], began, number))

    def _stopped(self, batch: OpenBatch) -> bool:
        """Whether the run stopped starting tasks like the batch's (teardown goes on, fail_fast)."""
        return self.host.stopped(self.teardown[batch.tasks[0]])

    def _bind(self, batch: OpenBatch, began: float) -> tuple[list[Any], list[int]]:
        """The items of the batch's tasks, and the tasks they belong to.

        A task whose arguments cannot be bound (its argument list was changed
        after ``add``) or are not exactly one item fails alone, its attempt
        ended at once; the call goes on for the others. The items of
        ``all_done`` tasks are Outcomes, as for any ``all_done`` task.
        """
        snap = self.snap
        host = self.host
        outputs: Any = self.outcomes if self.teardown[batch.tasks[0]] else self.loop.outputs
        items = []
        members = []
        for u in batch.tasks:
            try:
                args, kwargs = snap.bind(u, outputs)
            except Exception as exc:
                unbound: Exception | None = exc
            else:
                unbound = None
            if unbound is not None:
                # Its arguments changed after add(): it fails for good, as in Engine._body.
                self._end_alone(u, began)
                host.gave_up(u, unbound)
                continue
            if len(args) != 1 or kwargs:
                error = TypeError(
                    f"task {snap.name(u)!r} of batched {batch.fn!r} must have exactly one "
                    f"positional argument, its item; it has {len(args)} and {len(kwargs)} "
                    "keyword argument(s)"
                )
                self._end_alone(u, began)
                host.raised(u, error)
                continue
            items.append(args[0])
            members.append(u)
        return items, members

    def _end_alone(self, u: int, began: float) -> None:
        # Task u's attempt ends before the call; the call's body goes on (for
        # the others, or until _end_call), so its time counts with the call's.
        self.loop.finish_batch(u, began, self.snap.options(u).retries)

    async def _call(self, batch: OpenBatch, opts: TaskOptions, slot: list[Any]) -> None:
        snap = self.snap
        loop = self.loop
        host = self.host
        fn = batch.fn
        began = loop.now()
        self.calls += 1
        self._start(batch, began, self.calls)
        items, members = self._bind(batch, began)
        if not members or self._stopped(batch):
            # Every task failed on its arguments, or one of those failures (or
            # an event listener) stopped the run: there is nothing to call.
            self._end_call(batch, members, began)
            for u in members:
                host.cancelled(u)
            return
        in_flight = self.in_flight
        for u in members:
            in_flight[u] = (began, slot, members)
        leader = members[0]
        ctx = contextvars.copy_context()
        slot[1] = leader
        slot[2] = loop.attempts[leader]
        slot[3] = began
        run_in = opts.run_in
        if run_in in BUILT_IN:
            kind = _bodies.kind_of(fn.fn) if run_in is None else _bodies.KINDS[run_in]
            body = _bodies.call(kind, fn.fn, (items,), {}, ctx, host.spawn)
        else:
            body = host.on_executor(run_in, leader, fn, items)
        try:
            if opts.timeout is None:
                results = await body
            else:
                results = await _bodies.within(opts.timeout, snap.name(leader), body)
            if not isinstance(results, list) or len(results) != len(items):
                got = (
                    f"{len(results)} results" if isinstance(results, list) else repr(type(results))
                )
                raise ValueError(
                    f"batched {fn!r} was called with {len(items)} items and returned {got}; "
                    "it must return a list with one result per item, in order"
                )
        except BaseException as exc:
            raised: BaseException | None = exc
        else:
            raised = None
        slot[1] = -1
        self._end_call(batch, members, began)
        if raised is not None:
            # Outside the except block, as in Engine._body.
            self._call_raised(members, raised)
            return
        discarded = self.discarded
        for u, result in zip(members, results, strict=True):
            if u in discarded:
                discarded.discard(u)  # cancelled alone during the call: ended already
                continue
            host.succeeded(u, result)

    def _call_raised(self, members: list[int], exc: BaseException) -> None:
        # Decided as for one task's body (Engine._attempt_raised); the call's
        # uses went back in _end_call.
        host = self.host
        cancelled, failure = _bodies.split_cancelled(exc)
        if self.discarded:
            # Cancelled alone during the call: ended already.
            dropped = self.discarded.intersection(members)
            self.discarded -= dropped
            members = [u for u in members if u not in dropped]
        if cancelled is None:
            for u in members:
                host.raised(u, exc)
            return
        for u in members:
            if self.st.state(u) == core.RUNNING:
                host.cancelled(u, failure)
        raise cancelled

    def _end_call(self, batch: OpenBatch, members: list[int], began: float) -> None:
        # Every task of the call ends its attempt now, and the call once. The
        # call's uses go back before any task's end can start another.
        loop = self.loop
        snap = self.snap
        in_flight = self.in_flight
        discarded = self.discarded
        for u in members:
            in_flight.pop(u, None)
            if u not in discarded:  # a discarded task's attempt ended as it was cancelled
                loop.finish_batch(u, began, snap.options(u).retries)
        loop.end_batch(began)
        self._give_back(batch)

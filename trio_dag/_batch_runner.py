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
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

import trio

from . import _bodies
from ._batching import Batched
from ._events import TaskStarted
from ._native import core

if TYPE_CHECKING:
    from ._engine import Engine
    from ._options import TaskOptions

__all__ = ["OpenBatch", "claim", "drop", "join_or_run"]


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


def claim(engine: Engine, v: int, fn: Batched[Any, Any]) -> bool:
    """Task *v* of *fn* was just taken: open a batch with it (True), or join one (False).

    A task that joins is taken care of by the batch's opener; its resources
    go back at once, since a call takes its opener's once. A batch takes no
    more than ``fn.max_size`` tasks: one of size 1 is full as it opens.
    """
    key = (fn, engine.teardown[v])
    batch = engine.open_batches.get(key)
    if batch is None:
        batch = engine.openers[v] = OpenBatch(fn, key, v)
        if fn.max_size > 1:
            engine.open_batches[key] = batch
        return True
    engine.admission.release(v)
    batch.tasks.append(v)
    if len(batch.tasks) >= fn.max_size:
        _close(engine, batch)
        batch.full.set()
    return False


def drop(engine: Engine, v: int) -> None:
    """Task *v* ended CANCELLED before it started: if it opened a batch, end the batch.

    The batch takes no more tasks, the opener's ``uses`` go back, and the
    tasks that joined it end CANCELLED as the opener did (they share its
    kind: teardown or not).
    """
    batch = engine.openers.pop(v, None)
    if batch is None:
        return
    _close(engine, batch)
    _give_back(engine, batch)
    st = engine.st
    for u in batch.tasks[1:]:
        engine._ended(u, core.CANCELLED, st.cancel(u))


def _close(engine: Engine, batch: OpenBatch) -> None:
    # No task joins the batch from now on.
    if engine.open_batches.get(batch.key) is batch:
        del engine.open_batches[batch.key]


def _give_back(engine: Engine, batch: OpenBatch) -> None:
    # The opener's uses go back once, whichever way the batch ends.
    if batch.holding:
        batch.holding = False
        engine.admission.release(batch.tasks[0])


async def join_or_run(
    engine: Engine, v: int, fn: Batched[Any, Any], opts: TaskOptions, slot: list[Any]
) -> None:
    """Run the batch task *v* opened; or first open or join one (the fast loop takes
    tasks without claiming them)."""
    batch = engine.openers.pop(v, None)
    if batch is None:
        if not claim(engine, v, fn):
            return
        batch = engine.openers.pop(v)
    _gather(engine, batch)
    if len(batch.tasks) < fn.max_size and fn.max_delay > 0:
        await _wait_for_more(engine, batch)
    _close(engine, batch)
    await _call(engine, batch, opts, slot)


def _gather(engine: Engine, batch: OpenBatch) -> None:
    # Pop ready tasks of the batch's function and kind, in policy order; the
    # others go back in place. So do tasks woken from a resource's queue:
    # admission set aside their amounts, and only admission.take, which
    # takes or passes on that amount, may take them from the heap.
    fn = batch.fn
    tasks = batch.tasks
    st = engine.st
    snap = engine.snap
    teardown = engine.teardown
    kind = teardown[tasks[0]]
    admission = engine.admission
    levels = admission.levels
    woken = admission.woken
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
        ):
            tasks.append(u)
        else:
            held.append(u)
    for u in held:
        st.push_back(u)
    if len(tasks) < fn.max_size and admission.waiting:
        tasks.extend(
            admission.take_waiting(
                lambda u: snap.fn(u) is fn and teardown[u] == kind, fn.max_size - len(tasks)
            )
        )


async def _wait_for_more(engine: Engine, batch: OpenBatch) -> None:
    try:
        engine._spawn()
        with trio.move_on_after(batch.fn.max_delay):
            await batch.full.wait()
    except trio.Cancelled:
        _close(engine, batch)
        _give_back(engine, batch)
        for u in batch.tasks:
            engine._cancelled(u)
        raise


def _start(engine: Engine, batch: OpenBatch, began: float, number: int) -> None:
    """Start an attempt of every task of the batch, in call *number* begun at *began*.

    Every task starts at the call's one clock reading, which its TaskStarted
    carries and the report keeps, also one that then fails on its arguments
    (a plain task too starts before its arguments are bound). The call is
    one body running, however many tasks it serves.
    """
    snap = engine.snap
    loop = engine.loop
    start = loop.start
    listening = engine.on_event is not None or engine.stream is not None
    tasks = batch.tasks
    for k, u in enumerate(tasks):
        if k and listening and _stopped(engine, batch):
            # An event listener raised on an earlier TaskStarted and stopped
            # the run: nothing more starts; the rest end CANCELLED unstarted.
            unstarted = tasks[k:]
            del tasks[k:]
            for w in unstarted:
                engine._cancelled(w)
            return
        if k:
            loop.live -= 1
        loop.begin(u)
        if loop.attempts[u] == 1:
            start[u] = began
        engine.batch_of[u] = number
        if listening:
            engine._emit(TaskStarted(snap.handle(u), loop.attempts[u], began, number))


def _stopped(engine: Engine, batch: OpenBatch) -> bool:
    """Whether the run stopped starting tasks like the batch's (teardown goes on, fail_fast)."""
    return engine.halted or (engine.failing and not engine.teardown[batch.tasks[0]])


def _bind(engine: Engine, batch: OpenBatch, began: float) -> tuple[list[Any], list[int]]:
    """The items of the batch's tasks, and the tasks they belong to.

    A task whose arguments cannot be bound (its argument list was changed
    after ``add``) or are not exactly one item fails alone, its attempt
    ended at once; the call goes on for the others. The items of
    ``all_done`` tasks are Outcomes, as for any ``all_done`` task.
    """
    snap = engine.snap
    loop = engine.loop
    outputs: Any = engine.outcomes if engine.teardown[batch.tasks[0]] else loop.outputs
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
            _end_alone(engine, u, began)
            engine._gave_up(u, unbound)
            continue
        if len(args) != 1 or kwargs:
            error = TypeError(
                f"task {snap.name(u)!r} of batched {batch.fn!r} must have exactly one "
                f"positional argument, its item; it has {len(args)} and {len(kwargs)} "
                "keyword argument(s)"
            )
            _end_alone(engine, u, began)
            engine._raised(u, began, snap.options(u), error, release=False, timed=False)
            continue
        items.append(args[0])
        members.append(u)
    return items, members


def _end_alone(engine: Engine, u: int, began: float) -> None:
    # Task u's attempt ends before the call; the call's body goes on (for
    # the others, or until _end_call), so it still counts once, and its
    # busy time is counted with the call's.
    loop = engine.loop
    loop.live += 1
    loop.finish(u, began, engine.snap.options(u).retries)
    loop.busy -= loop.end[u] - began


async def _call(engine: Engine, batch: OpenBatch, opts: TaskOptions, slot: list[Any]) -> None:
    snap = engine.snap
    loop = engine.loop
    fn = batch.fn
    began = loop.now()
    engine.batches += 1
    _start(engine, batch, began, engine.batches)
    items, members = _bind(engine, batch, began)
    if not members or _stopped(engine, batch):
        # Every task failed on its arguments, or one of those failures (or
        # an event listener) stopped the run: there is nothing to call.
        _end_call(engine, batch, members, began)
        for u in members:
            engine._cancelled(u)
        return
    leader = members[0]
    ctx = contextvars.copy_context()
    slot[1] = leader
    slot[2] = loop.attempts[leader]
    slot[3] = began
    try:
        if opts.timeout is None:
            results = await _bodies.call(_bodies.ASYNC, fn.fn, (items,), {}, ctx, engine._spawn)
        else:
            with trio.move_on_after(opts.timeout) as deadline:
                results = await _bodies.call(_bodies.ASYNC, fn.fn, (items,), {}, ctx, engine._spawn)
            if deadline.cancel_called:
                from ._errors import TaskTimeoutError

                raise TaskTimeoutError(snap.name(leader), opts.timeout)
        if not isinstance(results, list) or len(results) != len(items):
            got = f"{len(results)} results" if isinstance(results, list) else repr(type(results))
            raise ValueError(
                f"batched {fn!r} was called with {len(items)} items and returned {got}; "
                "it must return a list with one result per item, in order"
            )
    except BaseException as exc:
        raised: BaseException | None = exc
    else:
        raised = None
    slot[1] = -1
    _end_call(engine, batch, members, began)
    if raised is not None:
        # Outside the except block, as in Engine._body.
        _call_raised(engine, members, began, raised)
        return
    for u, result in zip(members, results, strict=True):
        engine._succeeded(u, began, snap.options(u), result, release=False, timed=False)


def _call_raised(engine: Engine, members: list[int], began: float, exc: BaseException) -> None:
    # Decided as for one task's body (Engine._attempt_raised); the call's
    # uses went back in _end_call.
    snap = engine.snap
    cancelled, failure = _bodies.split_cancelled(exc)
    if cancelled is None:
        for u in members:
            engine._raised(u, began, snap.options(u), exc, release=False, timed=False)
        return
    for u in members:
        if engine.st.state(u) == core.RUNNING:
            engine._cancelled(u, failure)
    raise cancelled


def _end_call(engine: Engine, batch: OpenBatch, members: list[int], began: float) -> None:
    # Every task of the call ends its attempt now; the call counted once
    # while it ran, so it counts once in the busy time too. The call's
    # uses go back before any task's end can start another.
    loop = engine.loop
    snap = engine.snap
    loop.live += len(members) - 1
    for u in members:
        loop.finish(u, began, snap.options(u).retries)
    loop.busy -= sum(loop.end[u] - began for u in members[1:])
    _give_back(engine, batch)

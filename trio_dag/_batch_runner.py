"""How the engine runs tasks of a batched function: gather, wait, call once, share out.

The worker that takes a task of a batched function opens a batch: it pops
the other ready tasks of the same function from the core (leaving the rest
in their places), and if the batch is not full and ``max_delay`` allows,
waits for more; meanwhile other workers that take a task of the function add
it to the open batch instead of starting a call. Then it calls the function
once with the items and gives each task its element of the result.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

import trio

from . import _bodies
from ._batching import Batched
from ._events import TaskStarted
from ._impl import core

if TYPE_CHECKING:
    from ._engine import Engine
    from ._options import TaskOptions

__all__ = ["OpenBatch", "claim", "join_or_run"]


class OpenBatch:
    """A batch that tasks of its function may still join."""

    __slots__ = ("full", "tasks")

    def __init__(self, opener: int) -> None:
        self.tasks = [opener]
        self.full = trio.Event()


def claim(engine: Engine, v: int, fn: Batched[Any, Any]) -> bool:
    """Task *v* of *fn* was just taken: open a batch with it (True), or join one (False).

    A task that joins is taken care of by the batch's opener; its resources
    go back at once, since a call takes its opener's once.
    """
    batch = engine.open_batches.get(fn)
    if batch is None or batch.tasks[0] == v:
        batch = engine.open_batches[fn] = OpenBatch(v)
        engine.openers[v] = batch
        return True
    engine.admission.release(v)
    batch.tasks.append(v)
    if len(batch.tasks) >= fn.max_size:
        del engine.open_batches[fn]
        batch.full.set()
    return False


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
    tasks = batch.tasks
    _gather(engine, fn, tasks)
    if len(tasks) < fn.max_size and fn.max_delay > 0:
        await _wait_for_more(engine, fn, batch)
    if engine.open_batches.get(fn) is batch:
        del engine.open_batches[fn]
    await _call(engine, fn, opts, tasks, slot)


def _gather(engine: Engine, fn: Batched[Any, Any], tasks: list[int]) -> None:
    # Pop ready tasks of fn, in policy order; the others go back in place.
    st = engine.st
    snap = engine.snap
    levels = engine.admission.levels
    held = []
    while len(tasks) < fn.max_size:
        u = st.pop()
        if u < 0:
            break
        if snap.fn(u) is fn and (levels is None or levels[u] <= engine.admission.wave):
            tasks.append(u)
        else:
            held.append(u)
    for u in held:
        st.push_back(u)
    if len(tasks) < fn.max_size and engine.admission.waiting:
        tasks.extend(
            engine.admission.take_waiting(lambda u: snap.fn(u) is fn, fn.max_size - len(tasks))
        )


async def _wait_for_more(engine: Engine, fn: Batched[Any, Any], batch: OpenBatch) -> None:
    try:
        engine._spawn()
        with trio.move_on_after(fn.max_delay):
            await batch.full.wait()
    except trio.Cancelled:
        if engine.open_batches.get(fn) is batch:
            del engine.open_batches[fn]
        for u in batch.tasks:
            engine._cancelled(u)
        raise


async def _call(
    engine: Engine, fn: Batched[Any, Any], opts: TaskOptions, tasks: list[int], slot: list[Any]
) -> None:
    snap = engine.snap
    loop = engine.loop
    items = []
    members = []
    for u in tasks:
        try:
            args, kwargs = snap.bind(u, loop.outputs)
        except Exception as exc:
            unbound: Exception | None = exc
        else:
            unbound = None
        if unbound is not None:
            # Its arguments changed after add(): it fails for good, as in Engine._body.
            engine._end_attempt(u, loop.begin(u), snap.options(u), release=False)
            engine._gave_up(u, unbound)
            continue
        if len(args) != 1 or kwargs:
            error = TypeError(
                f"task {snap.name(u)!r} of batched {fn!r} must have exactly one positional "
                f"argument, its item; it has {len(args)} and {len(kwargs)} keyword argument(s)"
            )
            engine._raised(u, loop.begin(u), snap.options(u), error, release=False)
            continue
        items.append(args[0])
        members.append(u)
    if not members:
        return
    engine.batches += 1
    number = engine.batches
    leader = members[0]
    began = loop.now()
    for u in members:
        # One call is one body running, however many tasks it serves.
        if u != leader:
            loop.live -= 1
        loop.begin(u)
        engine.batch_of[u] = number
        if engine.on_event is not None or engine.stream is not None:
            engine._emit(TaskStarted(snap.handle(u), loop.attempts[u], began, number))
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
    _end_call(loop, snap, members, began)
    if raised is not None:
        # Outside the except block, as in Engine._body.
        _call_raised(engine, members, began, raised)
        return
    for u, result in zip(members, results, strict=True):
        engine._succeeded(u, began, snap.options(u), result, release=u == leader, timed=False)


def _call_raised(engine: Engine, members: list[int], began: float, exc: BaseException) -> None:
    # Decided as for one task's body (Engine._attempt_raised); the call took
    # its opener's resources only.
    snap = engine.snap
    leader = members[0]
    cancelled, failure = _bodies.split_cancelled(exc)
    if cancelled is None:
        for u in members:
            engine._raised(u, began, snap.options(u), exc, release=u == leader, timed=False)
        return
    engine.admission.release(leader)
    for u in members:
        if engine.st.state(u) == core.RUNNING:
            engine._cancelled(u, failure)
    raise cancelled


def _end_call(loop: Any, snap: Any, members: list[int], began: float) -> None:
    # Every task of the call ends its attempt now; the call counted once
    # while it ran, so it counts once in the busy time too.
    loop.live += len(members) - 1
    for u in members:
        loop.finish(u, began, snap.options(u).retries)
    loop.busy -= sum(loop.end[u] - began for u in members[1:])

"""How a task's body is called: in the event loop, inline, in a worker thread, or
on an executor (``_executors``).

Each attempt runs in its own copy of the worker's ``contextvars`` context,
as if it were its own Trio task: context variables a body sets never leak
into other bodies, and ``current_task()`` sees only its own task.

An async body is started with ``coro.send(None)`` by the worker itself, so a
body that returns without suspending never goes through the scheduler and
needs no second worker; only when it suspends does the engine hear about it
(``on_suspend``), and the worker goes on driving it with :func:`_resume`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, Final

import trio

from ._batching import Batched
from ._errors import TaskTimeoutError

__all__ = [
    "ASYNC",
    "BATCH",
    "EXECUTOR",
    "INLINE",
    "KINDS",
    "THREAD",
    "call",
    "fatal",
    "kind_of",
    "resume",
    "split_cancelled",
    "within",
]

ASYNC: Final = 0
INLINE: Final = 1
THREAD: Final = 2
BATCH: Final = 3  # a @batched function: the engine gathers its tasks into calls
EXECUTOR: Final = 4  # run_in names an executor: see _executors
KINDS: Final = {"async": ASYNC, "inline": INLINE, "thread": THREAD}
_COROUTINE: Final = types.CoroutineType


def kind_of(fn: Callable[..., Any]) -> int:
    """BATCH for ``@batched`` functions, ASYNC for coroutine functions (also
    behind ``functools.partial`` or an async ``__call__``), THREAD for every
    other callable.

    A class is always THREAD, like any sync callable, even when its instances
    have an async ``__call__``: calling the class makes an instance, it does
    not call one. (SPEC does not say; ``run_in="inline"`` makes it in the
    event loop.)
    """
    if isinstance(fn, Batched):
        return BATCH
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, type):
        return THREAD
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        return ASYNC
    return THREAD


def split_cancelled(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """Split what a body raised as a cancelled Trio scope around it would: ``(cancelled, rest)``.

    *cancelled* is the part a cancelled scope around the body catches: a
    ``trio.Cancelled``, or the group of them a nursery inside the body
    raises; the caller records the task CANCELLED and raises it again for
    that scope. *rest* is what the scope lets out: the body's own error (a
    group mixing Cancelled with a ``ValueError`` leaves the group of the
    ``ValueError``), or None. When no scope around the body is cancelled, a
    Cancelled can only be one the body let out of a scope of its own: then
    all of *exc* is the body's own doing, ``(None, exc)``, like any other
    BaseException.
    """
    if isinstance(exc, trio.Cancelled):
        cancelled: BaseException | None = exc
        rest: BaseException | None = None
    elif isinstance(exc, BaseExceptionGroup):
        cancelled, rest = exc.split(trio.Cancelled)
    else:
        return None, exc
    if cancelled is None or trio.current_effective_deadline() != -math.inf:
        return None, exc
    return cancelled, rest


def fatal(exc: BaseException) -> BaseException | None:
    """The exception in *exc* that stops a whole run and leaves it unwrapped, or None.

    That is a BaseException that is neither an ``Exception`` nor a
    ``trio.Cancelled`` (KeyboardInterrupt, SystemExit, a custom one): *exc*
    itself, or the first such one in a group, as Trio delivers a Ctrl-C
    through a nursery (SPEC 3: it propagates from ``run`` unwrapped).
    """
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = fatal(inner)
            if found is not None:
                return found
        return None
    if isinstance(exc, (Exception, trio.Cancelled)):
        return None
    return exc


@types.coroutine
def resume(
    coro: Coroutine[Any, Any, Any], trap: Any, ctx: contextvars.Context
) -> Generator[Any, Any, Any]:
    """Go on driving *coro* in *ctx*; it has just yielded *trap* for the scheduler."""
    while True:
        try:
            value = yield trap
        except BaseException as exc:
            try:
                trap = ctx.run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                trap = ctx.run(coro.send, value)
            except StopIteration as stop:
                return stop.value


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def call(
    kind: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    ctx: contextvars.Context,
    on_suspend: Callable[[], None],
) -> Any:
    """Run one attempt of a body in *ctx* and return its result.

    A sync body in a thread cannot be interrupted: a cancellation or deadline
    that arrives while it runs takes effect when it returns, and its result
    or its exception is then discarded (the checkpoint after it raises
    ``Cancelled``). A BaseException that is not an Exception (KeyboardInterrupt,
    SystemExit) still propagates: it stops the run whatever happened.
    """
    if kind == ASYNC:
        coro = ctx.run(fn, *args, **kwargs)
        if type(coro) is not _COROUTINE:
            # Some other awaitable: let Trio drive it, from a coroutine made in ctx.
            coro = ctx.run(_await, coro)
        try:
            trap = ctx.run(coro.send, None)
        except StopIteration as stop:
            return stop.value
        on_suspend()
        return await resume(coro, trap, ctx)
    if kind == INLINE:
        return ctx.run(fn, *args, **kwargs)
    on_suspend()
    try:
        result = await trio.to_thread.run_sync(functools.partial(ctx.run, fn, *args, **kwargs))
    except Exception:
        # An error is discarded like a result: the task was cancelled as it ran.
        await trio.lowlevel.checkpoint_if_cancelled()
        raise
    await trio.lowlevel.checkpoint_if_cancelled()
    return result


async def within(timeout: float, task: str, body: Awaitable[Any]) -> Any:
    """Await *body* (a :func:`call`) for at most *timeout* seconds; past them it
    is cancelled and ``TaskTimeoutError(task, timeout)`` raised.

    A body that cannot be interrupted (a thread, an inline function, an
    async function that does not suspend) and returns at or past its
    deadline has its result discarded and fails the same way: the timeout
    takes effect when it returns. The engine awaits :func:`call` directly
    when there is no timeout, so an attempt without one costs no cancel
    scope and no extra coroutine.
    """
    with trio.move_on_after(timeout) as scope:
        result = await body
    # Trio notices a passed deadline only at a checkpoint: a body that ran
    # past it without one left the scope uncancelled.
    if scope.cancel_called or trio.current_time() >= scope.deadline:
        raise TaskTimeoutError(task, timeout)
    return result

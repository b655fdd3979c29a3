"""Batched tasks: one call of a list-taking function for many ready tasks of one item.

``@trio_dag.batched(max_size=64, max_delay=0.0)`` marks an async function of
a list of items that returns a list of results of the same length. Each task
added with it (``dag.add(embed, chunk)``) stands for one item; the engine
gathers ready tasks of the same batched function into one call.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, final

__all__ = ["Batched", "batched"]

T = TypeVar("T")
R = TypeVar("R")


@final
class Batched(Generic[T, R]):
    """An async function of ``list[T]`` returning ``list[R]``, run once per batch.

    A task of it takes exactly one positional argument, its item (a value or
    a handle). Calling the object directly calls the function with a list.
    """

    __slots__ = ("__dict__", "fn", "max_delay", "max_size")

    def __init__(
        self, fn: Callable[[list[T]], Awaitable[list[R]]], max_size: int, max_delay: float
    ) -> None:
        self.fn = fn
        self.max_size = max_size
        self.max_delay = max_delay
        functools.update_wrapper(self, fn)

    async def __call__(self, items: list[T]) -> list[R]:
        return await self.fn(items)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"<batched {name} max_size={self.max_size} max_delay={self.max_delay}>"


def batched(
    max_size: int = 64, max_delay: float = 0.0
) -> Callable[[Callable[[list[T]], Awaitable[list[R]]]], Batched[T, R]]:
    """Run tasks of the decorated function in batches of at most *max_size* items.

    The engine gathers ready tasks of the function into one call, waiting at
    most *max_delay* seconds (Trio clock) after the first is ready for more
    to become ready. One call counts once against ``limit`` and takes the
    ``uses`` of the task that opened the batch once; give the tasks of one
    batched function the same ``uses``. If the call raises, or returns a
    list of the wrong length, every task in the batch fails with that error
    (and retries on its own, in a later batch); a task whose arguments
    cannot be bound fails alone. A call never gets more than *max_size*
    items. ``all_done`` tasks are batched apart from the others and their
    items are Outcomes, as for any ``all_done`` task; so ``on_failure=
    "fail_fast"`` cancels whole batches and lets teardown batches run. If
    the run stops while a batch waits or runs, every task in it ends
    CANCELLED. ``current_task()`` inside the call is the task that opened
    the batch::

        @trio_dag.batched(max_size=64)
        async def embed(texts: list[str]) -> list[list[float]]:
            return await model.embed(texts)

        vectors = [dag.add(embed, chunk) for chunk in chunks]
    """
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
        raise ValueError(f"batched(max_size=...) needs an int >= 1, got {max_size!r}")
    if (
        not isinstance(max_delay, (int, float))
        or isinstance(max_delay, bool)
        or not math.isfinite(max_delay)
        or max_delay < 0
    ):
        raise ValueError(f"batched(max_delay=...) needs seconds >= 0, got {max_delay!r}")

    def decorate(fn: Callable[[list[T]], Awaitable[list[R]]]) -> Batched[T, R]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"@trio_dag.batched needs an async function of a list of items, got {fn!r}"
            )
        return Batched(fn, max_size, float(max_delay))

    return decorate

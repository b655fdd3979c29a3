"""Batched tasks: one call of a list-taking function for many ready tasks of one item.

``@trio_dag.batched(max_size=64, max_delay=0.0)`` marks a function of a list
of items that returns a list of results of the same length: async, or sync
to run in a worker thread or on an executor (``run_in=``). Each task
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
    """A function of ``list[T]`` returning ``list[R]``, run once per batch.

    What :func:`batched` makes of the function it decorates; give it to
    :meth:`DAG.add` like the function itself. A task of it takes exactly one
    positional argument, its item (a value, or a handle whose output is the
    item), and its output is the item's result. Awaiting the object
    directly calls the function with a list: ``await embed(["a", "b"])``
    (a sync function is called in the event loop). It pickles by name, as
    its function would, so a batched function defined at module level can be
    sent to an executor.

    Attributes:
      fn: The decorated function.
      max_size: The most items one call gets.
      max_delay: The most seconds (Trio clock) a batch waits for more items.
    """

    __slots__ = ("__dict__", "fn", "max_delay", "max_size")

    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[list[R]]] | Callable[[list[T]], list[R]],
        max_size: int,
        max_delay: float,
    ) -> None:
        self.fn = fn
        self.max_size = max_size
        self.max_delay = max_delay
        functools.update_wrapper(self, fn)

    async def __call__(self, items: list[T]) -> list[R]:
        """Call the decorated function with *items*, outside any run."""
        result = self.fn(items)
        if inspect.isawaitable(result):
            return await result
        return result

    def __reduce__(self) -> str:
        # By name, as pickle takes a function: the module's name for the
        # function is this object, so pickling self.fn by name would fail.
        name = self.__dict__.get("__qualname__")
        if not isinstance(name, str):
            raise TypeError(f"cannot pickle {self!r}: its function has no __qualname__")
        return name

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"<batched {name} max_size={self.max_size} max_delay={self.max_delay}>"


def batched(
    max_size: int = 64, max_delay: float = 0.0
) -> Callable[
    [Callable[[list[T]], Awaitable[list[R]]] | Callable[[list[T]], list[R]]], Batched[T, R]
]:
    """Decorate a function of a list of items so its tasks run in batches.

    The decorated function takes a list of items and returns a list of
    results of the same length, in the same order. Each task added with it
    stands for one item; a run gathers the ready tasks of the function into
    one call of at most *max_size* items, and gives each task its result as
    its output. This suits work that is cheaper in bulk, such as a model
    that embeds many texts in one call::

        @trio_dag.batched(max_size=64)
        async def embed(texts: list[str]) -> list[list[float]]:
            return await model.embed(texts)

        vectors = [dag.add(embed, chunk) for chunk in chunks]

    The function may also be sync: like any sync body it is called in a
    worker thread, or as ``run_in=`` says, such as ``run_in="process"``
    (each batch is then one call in a worker process: see the user guide,
    *Executors*).

    In a run:

    - A call starts with the tasks of the function that are ready (in
      policy order); it waits up to *max_delay* seconds for more to become
      ready, unless it is full.
    - One call counts once against ``limit`` and takes the ``uses`` of the
      task that opened the batch, once; give the tasks of one batched
      function the same ``uses``. Its ``timeout`` bounds the whole call.
    - If the call raises, or returns other than a list of one result per
      item, every task in the batch fails with that error, and each retries
      on its own (``retries=``), in a later batch. A task whose item cannot
      be made (a container in its argument was changed after ``add``) fails
      alone.
    - ``all_done`` tasks are batched apart from the others, and their items
      are outcomes (``outcome.Outcome``), as for any ``all_done`` task; so
      ``on_failure="fail_fast"`` cancels whole batches and lets teardown
      batches run.
    - If the run stops while a batch waits or runs, every task in it ends
      CANCELLED.
    - The ``run_in`` and ``timeout`` of the task that opened a batch apply
      to its call.
    - :func:`current_task` inside the call is the task that opened the
      batch (not on an executor), and :meth:`RunReport.batch` tells which call ran each task.

    See the user guide, *Batching*.

    Args:
      max_size: The most items one call gets, an ``int`` >= 1. Default 64.
      max_delay: The most seconds (Trio clock) a call waits, after its
        first task is ready, for more tasks to fill it: a finite number
        >= 0. Default 0.0: call at once with the tasks ready now.

    Returns:
      A decorator that turns a function of ``list[T]`` returning
      ``list[R]`` (async or not) into a :class:`Batched`, whose tasks have
      outputs of type ``R``.

    Raises:
      ValueError: *max_size* is not an ``int`` >= 1, or *max_delay* is not
        a finite number >= 0.
      TypeError: The decorated object is not callable, or is a generator
        function (raised by the decorator).
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

    def decorate(
        fn: Callable[[list[T]], Awaitable[list[R]]] | Callable[[list[T]], list[R]],
    ) -> Batched[T, R]:
        if (
            not callable(fn)
            or isinstance(fn, Batched)
            or inspect.isgeneratorfunction(fn)
            or inspect.isasyncgenfunction(fn)
        ):
            raise TypeError(
                f"@trio_dag.batched needs a function of a list of items returning a list, "
                f"async or sync, got {fn!r}"
            )
        return Batched(fn, max_size, float(max_delay))

    return decorate

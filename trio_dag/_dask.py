"""Dask distributed's ``Client`` as a run's executor: fresh submissions, results fetched in bulk.

A ``distributed.Client`` follows the ``concurrent.futures`` protocol that
``executors=`` asks for, and :class:`~trio_dag._executors` could await its
futures like any other; two things of Dask's make it worth an adapter:

- ``submit`` names a submission by its function and arguments
  (``pure=True``, its default) and hands back the existing future for the
  same ones: a retry would get its failed attempt's future again, at once,
  and two tasks with equal arguments would share one call. Every attempt
  here is submitted with ``pure=False``, a call of its own.
- ``Future.result()`` is a round trip to the cluster for the value, made
  from the calling thread: one per task, waited for in turn, would cost more
  than Dask's own dispatch. Here a task whose future has ended fetches, in
  a worker thread, the values of every future of the run that has ended and
  is not fetched yet, in one ``client.gather``; the others that ended
  meanwhile wait for that fetch instead of making their own.

A body's keyword arguments are bound with ``functools.partial``: given to
``submit`` as they are, one named ``key``, ``workers``, ``priority`` or
``retries`` would be taken by Dask for itself.

Nothing here imports ``distributed``: a client is recognised by its
class's module (:func:`is_dask_client`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import outcome
import trio

__all__ = ["DaskFutures", "is_dask_client"]


def is_dask_client(executor: object) -> bool:
    """Whether *executor* is a ``distributed.Client`` (or of a subclass defined in Dask)."""
    return any(
        cls.__module__.partition(".")[0] == "distributed" and cls.__name__ == "Client"
        for cls in type(executor).__mro__
    )


class _Waiting:
    """One submitted future: set ``ended`` once it has, ``outcome`` once fetched."""

    __slots__ = ("ended", "future", "outcome")

    def __init__(self, future: Any) -> None:
        self.future = future
        self.ended = trio.Event()
        self.outcome: outcome.Outcome[Any] | None = None


class DaskFutures:
    """A ``distributed.Client``, awaited without a thread per task; made per run."""

    __slots__ = ("_cancelling", "_lock", "_woken", "client", "fetch", "unfetched")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.unfetched: list[_Waiting] = []  # ended, their values not asked for yet
        self.fetch: trio.Event | None = None  # set when the fetch under way is done
        # Ended in Dask's callback thread, not yet told to the event loop;
        # one wake-up of the loop tells all of them.
        self._woken: list[_Waiting] = []
        # Futures of cancelled tasks, for a thread to cancel on the cluster.
        self._cancelling: list[Any] = []
        self._lock = threading.Lock()

    async def call(
        self, task: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Submit ``fn(*args, **kwargs)``; its value, or its error raised."""
        if kwargs:
            # Client.submit would take a keyword of its own (key=, workers=,
            # priority=, retries=, ...) for itself: the body's go with it.
            fn = functools.partial(fn, **kwargs)
        waiting = _Waiting(self.client.submit(fn, *args, pure=False))
        token = trio.lowlevel.current_trio_token()

        def wake(_: object) -> None:
            # In Dask's callback thread, once the future has ended.
            with self._lock:
                self._woken.append(waiting)
                if len(self._woken) > 1:
                    return  # the loop is told already, and takes it with the others
            try:
                token.run_sync_soon(self._ended)
            except trio.RunFinishedError:
                pass  # the run is gone: nobody waits for the value

        waiting.future.add_done_callback(wake)
        try:
            await waiting.ended.wait()
            while waiting.outcome is None:
                if self.fetch is None:
                    await self._fetch_ended()
                else:
                    await self.fetch.wait()
        except BaseException:
            # Cancelled (or a KeyboardInterrupt): a body already running on the
            # cluster is not waited for but abandoned, its result discarded.
            self._cancel_soon(waiting.future)
            raise
        return waiting.outcome.unwrap()

    def _cancel_soon(self, future: Any) -> None:
        """Cancel *future* on the cluster from a thread: ``Future.cancel`` of a
        synchronous client waits for the scheduler, which would hold the event
        loop a round trip per task when fail_fast stops many at once. The
        futures cancelled meanwhile go in one ``client.cancel``."""
        with self._lock:
            self._cancelling.append(future)
            if len(self._cancelling) > 1:
                return  # a thread is on its way, and takes it with the others
        trio.lowlevel.start_thread_soon(self._cancel_all, _ignore)

    def _cancel_all(self) -> None:
        # In a thread of its own.
        while True:
            with self._lock:
                batch, self._cancelling = self._cancelling, []
            if not batch:
                return
            try:
                self.client.cancel(batch)
            except Exception:
                pass  # the client is closed or the scheduler gone: nothing runs for us

    def _ended(self) -> None:
        with self._lock:
            woken, self._woken = self._woken, []
        self.unfetched += woken
        for waiting in woken:
            waiting.ended.set()

    async def _fetch_ended(self) -> None:
        """Fetch the values of every ended future not fetched yet, in a worker thread."""
        batch, self.unfetched = self.unfetched, []
        self.fetch = done = trio.Event()
        try:
            # Not abandoned when cancelled: the futures have ended, so the
            # fetch is short, and the others wait for its outcomes.
            outcomes = await trio.to_thread.run_sync(_gather, self.client, batch)
            for waiting, got in zip(batch, outcomes, strict=True):
                waiting.outcome = got
        finally:
            for waiting in batch:
                if waiting.outcome is None:  # the fetch itself failed: each on its own
                    self.unfetched.append(waiting)
            self.fetch = None
            done.set()


def _ignore(_: outcome.Outcome[None]) -> None:
    """What start_thread_soon tells of a cancelling thread: nothing to do."""


def _gather(client: Any, batch: list[_Waiting]) -> list[outcome.Outcome[Any]]:
    """The outcomes of *batch*'s ended futures: the finished ones' values in one gather."""
    finished = [w.future for w in batch if w.future.status == "finished"]
    values: dict[Any, outcome.Outcome[Any]] = {}
    if finished:
        try:
            fetched = client.gather(finished)
        except Exception:
            pass  # one lost value: each is fetched on its own below, to get its own error
        else:
            values = {f.key: outcome.Value(v) for f, v in zip(finished, fetched, strict=True)}
    return [values.get(w.future.key) or outcome.capture(w.future.result) for w in batch]

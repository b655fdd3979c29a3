"""Dask distributed's ``Client`` as a run's executor: fresh submissions, sent and awaited in bulk.

A ``distributed.Client`` follows the ``concurrent.futures`` protocol that
``executors=`` asks for, and :class:`~trio_dag._executors` could await its
futures like any other; but Dask's own dispatch costs about a millisecond of
CPU a task, and doing it one future at a time from another thread would
add half as much again. So this adapter:

- submits every attempt with ``pure=False``, a call of its own. With
  ``pure=True``, Dask's default, ``submit`` names a submission by its
  function and arguments and hands back the existing future for the same
  ones: a retry would get its failed attempt's future again, at once, and
  two tasks with equal arguments would share one call;
- submits the tasks that become ready together in one go: the first of
  them to reach :meth:`DaskFutures.call` waits one checkpoint for the
  others, then sends the calls of one function with as many arguments in
  one ``client.map`` (one message to the scheduler), the others with
  ``submit``;
- learns of ended futures without a callback per future (Dask runs each
  through its event loop and then a thread of its own): one
  ``distributed.as_completed`` on the client's event loop tracks them, and
  one coroutine there (:meth:`DaskFutures._pump`) hands the ended ones to
  the run in batches, one ``TrioToken.run_sync_soon`` per batch;
- fetches values in bulk: ``Future.result()`` is a round trip to the
  cluster, made from the calling thread. A task whose future has ended
  fetches, in a worker thread, the values of every future of the run that
  has ended and is not fetched yet, in one ``client.gather``; the others
  that ended meanwhile wait for that fetch instead of making their own.
  (Fetching in the coroutine instead, before waking the run, held the
  next batch back for a round trip: the run took longer, for the same CPU.)

A body's keyword arguments are bound with ``functools.partial``: given to
``submit`` as they are, one named ``key``, ``workers``, ``priority`` or
``retries`` would be taken by Dask for itself.

``distributed`` is imported only once a run sends a task to a client: a
client is recognised by its class's module (:func:`is_dask_client`).
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
    """One call: its ``job`` until submitted, then its ``future``; ``ended`` set once
    it has, ``outcome`` once fetched."""

    __slots__ = ("ended", "future", "job", "outcome")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.job: tuple[Callable[..., Any], tuple[Any, ...]] | None = (fn, args)
        self.future: Any = None
        self.ended = trio.Event()
        self.outcome: outcome.Outcome[Any] | None = None


class DaskFutures:
    """A ``distributed.Client``, awaited without a thread per task; made per run.

    Two threads meet here: the run's (Trio's) and the client's event loop
    (an asyncio loop in a thread of Dask's). Each hands the other work in
    batches, one wake-up per batch, never one per future.
    """

    __slots__ = (
        "_cancelling",
        "_lock",
        "_new",
        "_pumping",
        "_queued",
        "_token",
        "_tracker",
        "_waiting",
        "client",
        "fetch",
        "unfetched",
    )

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = threading.Lock()
        # In the run's thread: the tasks waiting, by their future's key.
        self._waiting: dict[Any, _Waiting] = {}
        self._token: trio.lowlevel.TrioToken | None = None
        # Calls not submitted yet: the tasks that become ready together are
        # submitted together.
        self._queued: list[_Waiting] = []
        # Submitted, not yet handed to the tracker; one wake-up of the
        # client's loop takes all of them.
        self._new: list[Any] = []
        # In the client's loop only: a distributed.as_completed of the
        # futures not ended yet, and whether _pump reads it.
        self._tracker: Any = None
        self._pumping = False
        # Ended, their values not asked for yet: fetched together, in a worker thread.
        self.unfetched: list[_Waiting] = []
        self.fetch: trio.Event | None = None  # set when the fetch under way is done
        # Futures of cancelled tasks, for a thread to cancel on the cluster.
        self._cancelling: list[Any] = []

    async def call(
        self, task: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Submit ``fn(*args, **kwargs)``; its value, or its error raised."""
        if kwargs:
            # Client.submit would take a keyword of its own (key=, workers=,
            # priority=, retries=, ...) for itself: the body's go with it.
            fn = functools.partial(fn, **kwargs)
        waiting = _Waiting(fn, args)
        self._queued.append(waiting)
        if len(self._queued) == 1:
            # The first of the tasks that become ready together submits them
            # all, once the others have queued theirs.
            try:
                await trio.lowlevel.cancel_shielded_checkpoint()
            finally:  # a KeyboardInterrupt too: the others must not wait forever
                self._submit_queued()
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
            if waiting.future is None:
                waiting.job = None  # not submitted yet, and now never will be
            else:
                self._cancel_soon(waiting.future)
            raise
        finally:
            if waiting.future is not None:
                self._waiting.pop(waiting.future.key, None)
        return waiting.outcome.unwrap()

    def _submit_queued(self) -> None:
        """Submit the queued calls, then have them tracked: the calls of one function
        with as many arguments go in one ``client.map``, one message to the scheduler."""
        queued, self._queued = self._queued, []
        groups: dict[tuple[int, int], list[_Waiting]] = {}
        for waiting in queued:
            if waiting.job is not None:  # else its task was cancelled meanwhile
                fn, args = waiting.job
                groups.setdefault((id(fn), len(args)), []).append(waiting)
        submitted = []
        for group in groups.values():
            jobs = [w.job for w in group if w.job is not None]
            for waiting, future in zip(group, self._submit(jobs), strict=True):
                waiting.job = None
                if isinstance(future, Exception):
                    waiting.outcome = outcome.Error(future)
                    waiting.ended.set()
                else:
                    waiting.future = future
                    self._waiting[future.key] = waiting
                    submitted.append(future)
        if not submitted:
            return
        if self._token is None:
            self._token = trio.lowlevel.current_trio_token()
        with self._lock:
            first = not self._new
            self._new += submitted
        if first:
            self.client.loop.add_callback(self._track)

    def _submit(self, jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
        """Submit calls of one function with as many arguments: their futures, or
        the error each one's submission raised."""
        fn, args = jobs[0]
        if len(jobs) > 1 and args:
            try:
                columns = zip(*(args for _, args in jobs), strict=True)
                return list(self.client.map(fn, *columns, pure=False))
            except Exception:
                pass  # one call's arguments, say: each on its own, to get its own error
        futures: list[Any] = []
        for fn, args in jobs:
            try:
                futures.append(self.client.submit(fn, *args, pure=False))
            except Exception as exc:
                futures.append(exc)
        return futures

    def _track(self) -> None:
        """In the client's loop: track the futures submitted since the last call."""
        with self._lock:
            new, self._new = self._new, []
        if self._tracker is None:
            import distributed

            track: Any = distributed.as_completed
            self._tracker = track(loop=self.client.loop)
        self._tracker.update(new)
        if not self._pumping:
            self._pumping = True
            self.client.loop.add_callback(self._pump)

    async def _pump(self) -> None:
        """In the client's loop: tell the run of futures as they end, in batches;
        return once none is left to track."""
        tracker = self._tracker
        try:
            while True:
                try:
                    first = await tracker.__anext__()
                except StopAsyncIteration:
                    return  # _track starts another pump for the next ones
                batch = [first, *tracker.next_batch(block=False)]
                try:
                    self._token.run_sync_soon(self._ended, batch)  # type: ignore[union-attr]
                except trio.RunFinishedError:
                    pass  # the run is gone: nobody waits for the values
        finally:
            self._pumping = False

    def _ended(self, batch: list[Any]) -> None:
        """In the run: wake the tasks of *batch*, ended futures; the first to run
        fetches the values of all."""
        for future in batch:
            waiting = self._waiting.get(future.key)
            if waiting is not None:  # else its task was cancelled
                self.unfetched.append(waiting)
                waiting.ended.set()

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

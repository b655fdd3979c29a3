"""Helpers of the Dask tests: the moment a batch of submissions waits for its
tasks, held open; and a stand-in for ``distributed.Client`` in this process.

``DaskFutures.call`` queues each task's call; the first of the tasks that
become ready together waits one cancel-shielded checkpoint, for the others to
queue theirs, and then submits them all. A task cancelled in that moment
never has a future: it gives up its job, which the submission skips. Trio
decides at random whether the cancelled task resumes (and gives up its job)
before the first one's checkpoint returns, so a test cannot count on it. A
:class:`Window` holds that checkpoint open (still shielded: the first task
cannot be cancelled there, as in the real one) until the test releases it,
having cancelled what it wants: an order Trio may pick, made certain.

:class:`Client` has what ``_dask`` uses of a ``distributed.Client`` (``map``,
``submit``, ``cancel``, ``gather``, ``loop.add_callback``; futures with
``key``, ``status`` and ``result``), keeps every future it made, and runs
each call at once (``run=True``) or leaves it running until it is cancelled,
a body that takes long. Its "event loop" is a Trio nursery of the test, and
:class:`AsCompleted` stands in for ``distributed.as_completed`` on it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import trio

import trio_dag
from trio_dag import _dask


class _Delegate:
    """A module's attributes, some replaced."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class Window:
    """Holds the first queued task's checkpoint in ``DaskFutures.call`` open until
    :attr:`release` is set; records every call ``_dask`` queues.

    Install it with :meth:`install` (it replaces ``_dask``'s ``trio`` and
    ``_Waiting`` for the test). Once released, later batches wait a plain
    checkpoint.
    """

    def __init__(self) -> None:
        self.release = trio.Event()
        # The names of the tasks whose checkpoint was held.
        self.held: list[str] = []
        # Every call queued: the task's name and its _Waiting.
        self.calls: list[tuple[str, Any]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Window:
        lowlevel = _Delegate(trio.lowlevel, cancel_shielded_checkpoint=self._checkpoint)
        monkeypatch.setattr(_dask, "trio", _Delegate(trio, lowlevel=lowlevel))
        calls = self.calls

        class Recorded(_dask._Waiting):
            __slots__ = ()

            def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
                super().__init__(fn, args)
                calls.append((trio_dag.current_task().name, self))

        monkeypatch.setattr(_dask, "_Waiting", Recorded)
        return self

    async def _checkpoint(self) -> None:
        if self.release.is_set():
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self.held.append(trio_dag.current_task().name)
        with trio.CancelScope(shield=True):
            await self.release.wait()

    def given_up(self) -> list[str]:
        """The tasks whose call was queued and never submitted: no future, no outcome."""
        return [
            name
            for name, w in self.calls
            if w.job is None and w.future is None and w.outcome is None
        ]

    def submitted(self) -> list[str]:
        """The tasks whose call has a future."""
        return [name for name, w in self.calls if w.future is not None]


class Future:
    """A call on the stand-in cluster."""

    def __init__(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.key = key
        self.fn = fn
        self.args = args
        self.status = "pending"  # then "finished", "error" or "cancelled"
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        if self.status == "finished":
            return self.value
        if self.status == "error":
            assert self.error is not None
            raise self.error
        raise RuntimeError(f"future {self.key} is {self.status}")


class AsCompleted:
    """``distributed.as_completed`` on the stand-in's loop: ended futures, in the
    order they ended; the iteration stops once none is left to wait for."""

    def __init__(self, loop: Loop) -> None:
        self._pending: set[Future] = set()
        self._done: deque[Future] = deque()
        self._changed = trio.Event()
        loop.trackers.append(self)

    def update(self, futures: Iterable[Future]) -> None:
        for future in futures:
            if future.status == "pending":
                self._pending.add(future)
            else:
                self._done.append(future)
        self._changed.set()

    def ended(self, future: Future) -> None:
        if future in self._pending:
            self._pending.remove(future)
            self._done.append(future)
            self._changed.set()

    def __aiter__(self) -> AsCompleted:
        return self

    async def __anext__(self) -> Future:
        while not self._done:
            if not self._pending:
                raise StopAsyncIteration
            self._changed = trio.Event()
            await self._changed.wait()
        return self._done.popleft()

    def next_batch(self, block: bool = True) -> list[Future]:
        batch = list(self._done)
        self._done.clear()
        return batch


class Loop:
    """The client's event loop: callbacks run as tasks of a Trio nursery."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.trackers: list[AsCompleted] = []

    def add_callback(self, callback: Callable[..., Any], *args: Any) -> None:
        async def call() -> None:
            result = callback(*args)
            if result is not None:
                await result

        self._nursery.start_soon(call)

    def ended(self, future: Future) -> None:
        for tracker in self.trackers:
            tracker.ended(future)


class Client:
    """What ``_dask`` uses of a ``distributed.Client``; submitted calls run at once in
    this process when *run*, else they run until cancelled."""

    # is_dask_client knows a Client by its class's name and package.
    __module__ = "distributed.stand_in"

    def __init__(self, nursery: trio.Nursery, *, run: bool = True) -> None:
        self.loop = Loop(nursery)
        self._run = run
        self._token = trio.lowlevel.current_trio_token()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        # Each submission: ("map" or "submit", its function, the calls' arguments).
        self.submissions: list[tuple[str, Callable[..., Any], list[tuple[Any, ...]]]] = []
        self.futures: list[Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any, pure: bool = True) -> Future:
        assert pure is False
        self.submissions.append(("submit", fn, [args]))
        return self._start(fn, args)

    def map(
        self, fn: Callable[..., Any], *columns: Iterable[Any], pure: bool = True
    ) -> list[Future]:
        assert pure is False
        calls = list(zip(*columns, strict=True))
        self.submissions.append(("map", fn, calls))
        return [self._start(fn, args) for args in calls]

    def _start(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future:
        future = Future(f"call-{len(self.futures)}", fn, args)
        with self._lock:
            self.futures.append(future)
        if self._run:
            self.loop.add_callback(self._finish, future)
        return future

    def _finish(self, future: Future) -> None:
        with self._lock:
            if future.status != "pending":
                return
            try:
                future.value = future.fn(*future.args)
            except Exception as exc:
                future.error = exc
                future.status = "error"
            else:
                future.status = "finished"
            self._settled.notify_all()
        self.loop.ended(future)

    def cancel(self, futures: list[Future]) -> None:
        # In _dask's cancelling thread.
        with self._lock:
            for future in futures:
                if future.status == "pending":
                    future.status = "cancelled"
                    self._token.run_sync_soon(self.loop.ended, future)
            self._settled.notify_all()

    def gather(self, futures: list[Future]) -> list[Any]:
        return [future.result() for future in futures]

    def called(self) -> list[tuple[Any, ...]]:
        """The arguments of every call submitted, in order."""
        return [args for _, _, calls in self.submissions for args in calls]

    async def settled(self, timeout: float = 10.0) -> list[Future]:
        """Wait (on the real clock, in a thread) until no future runs; every future."""

        def wait() -> bool:
            with self._lock:
                return self._settled.wait_for(
                    lambda: all(f.status != "pending" for f in self.futures), timeout
                )

        assert await trio.to_thread.run_sync(wait), [f.key for f in self.futures]
        return list(self.futures)


def stand_in_as_completed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``distributed.as_completed`` (which ``_dask`` imports when it first tracks
    futures) the stand-in's, for the test."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(distributed, "as_completed", lambda loop: AsCompleted(loop))

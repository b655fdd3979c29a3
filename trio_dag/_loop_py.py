"""The per-task ledger and the fast loop, in plain Python (twin of ``_loop.pyx``).

:class:`Loop` keeps each run's per-task records (attempts, start and end
times, outputs, busy time, concurrency) for the engine and the report, and
runs the hot path: pop a ready task, bind its arguments, start its body with
``coro.send(None)`` in a fresh context, and when the body returns at once,
record it and go on to the next, without going back to the Trio scheduler.
Whatever is not that simple goes back to the engine, which does it in Python.
"""

from __future__ import annotations

import contextvars
import types
from array import array
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final

import trio

from ._bodies import ASYNC, kind_of

if TYPE_CHECKING:
    from ._snapshot import Snapshot

__all__ = ["CHECKPOINT", "RAISED", "SLOW", "SUSPENDED", "Loop"]

# Why Loop.run() handed a task back to the engine:
SLOW: Final = 1  # not started: needs the engine's general path
SUSPENDED: Final = 2  # its body suspended: resume it with loop.coro/trap/ctx
RAISED: Final = 3  # its body raised loop.error
CHECKPOINT: Final = 4  # not started: let other Trio tasks run first

# Tasks run this many in a row without the scheduler before a checkpoint.
FAIRNESS_EVERY: Final = 2048
_NAN: Final = float("nan")
_COROUTINE: Final = types.CoroutineType
_CANCELLED: Final = trio.Cancelled


class Loop:
    """One run's ledger and fast loop. The engine reads the fields for its report.

    Each worker has a *slot*, ``[snapshot, task, attempt, start time]``
    (task -1 between bodies), which ``current_task()`` reads through a
    context variable the worker sets once; ``run`` fills it in for each body
    it starts.
    """

    def __init__(
        self,
        snap: Snapshot,
        st: Any,
        now: Callable[[], float],
        fast: bool,
        on_suspend: Callable[[], None],
    ) -> None:
        n = snap.n
        self.snap = snap
        self.st = st
        self.now = now
        self.fast = fast
        self.on_suspend = on_suspend
        self.stopped = False
        self.outputs: list[Any] = [None] * n
        self.start = array("d", [_NAN]) * n
        self.end = array("d", [_NAN]) * n
        self.attempts = array("i", [0]) * n
        # The order in which tasks' last attempts ended: ties on the clock are
        # common, and the critical path needs to know which ended last.
        self.end_order = array("q", [0]) * n
        self.ends = 0
        self.extra: list[tuple[int, int, float, float]] = []
        self.busy = 0.0
        self.live = 0
        self.peak = 0
        self.since_checkpoint = 0
        self.kinds: dict[Any, int] = {}
        self.eligible: dict[int, bool] = {}
        # Set when run() hands a task back:
        self.why = 0
        self.began = 0.0
        self.coro: Any = None
        self.trap: Any = None
        self.ctx: contextvars.Context | None = None
        self.error: BaseException | None = None

    def begin(self, v: int) -> float:
        """Count an attempt of task *v* as started; return its start time."""
        attempt = self.attempts[v] + 1
        self.attempts[v] = attempt
        began = self.now()
        if attempt == 1:
            self.start[v] = began
        self.live += 1
        if self.live > self.peak:
            self.peak = self.live
        return began

    def finish(self, v: int, began: float, retries: int) -> None:
        """Count the attempt of task *v* that began at *began* as ended."""
        now = self.now()
        self.end[v] = now
        self.ends += 1
        self.end_order[v] = self.ends
        self.busy += now - began
        self.live -= 1
        if retries:
            self.extra.append((v, self.attempts[v], began, now))

    def kind(self, fn: Callable[..., Any]) -> int:
        """How *fn* runs by default (ASYNC or THREAD), cached per function."""
        try:
            return self.kinds[fn]
        except KeyError:
            kind = self.kinds[fn] = kind_of(fn)
            return kind
        except TypeError:  # an unhashable callable
            return kind_of(fn)

    def _simple(self, opts: Any) -> bool:
        key = id(opts)
        simple = self.eligible.get(key)
        if simple is None:
            simple = self.eligible[key] = (
                opts.timeout is None
                and opts.trigger == "all_succeeded"
                and opts.run_in in (None, "async")
            )
        return simple

    def run(self, v: int, slot: list[Any]) -> int:
        """Run task *v* and those after it while their bodies return at once.

        Returns -1 when nothing more may start; otherwise the task handed back
        to the engine, with the reason in ``why``: SLOW (not started),
        CHECKPOINT (not started), RAISED (``began``, ``error``) or SUSPENDED
        (``began``, ``trap``: then ``await drive(slot)``).
        """
        if not self.fast:
            self.why = SLOW
            return v
        return self._chain(v, slot)

    def _chain(self, v: int, slot: list[Any]) -> int:
        snap = self.snap
        st = self.st
        outputs = self.outputs
        opts_of = snap._opts
        fns = snap._fns
        while v >= 0:
            if self.since_checkpoint >= FAIRNESS_EVERY:
                self.since_checkpoint = 0
                self.why = CHECKPOINT
                return v
            opts = opts_of[v]
            fn = fns[v]
            if not self._simple(opts) or (opts.run_in is None and self.kind(fn) != ASYNC):
                self.why = SLOW
                return v
            args, kwargs = snap.bind(v, outputs)
            self.since_checkpoint += 1
            began = self.begin(v)
            ctx = contextvars.copy_context()
            slot[1] = v
            slot[2] = self.attempts[v]
            slot[3] = began
            try:
                coro = ctx.run(fn, *args, **kwargs)
                if type(coro) is not _COROUTINE:
                    raise TypeError(f"{fn!r} is async but returned {type(coro).__name__}")
                trap = ctx.run(coro.send, None)
            except StopIteration as stop:
                slot[1] = -1
                self._succeeded(v, began, opts.retries, stop.value)
                v = -1 if self.stopped else st.pop()
                continue
            except BaseException as exc:
                slot[1] = -1
                self.why = RAISED
                self.began = began
                self.error = exc
                return v
            self.why = SUSPENDED
            self.began = began
            self.coro = coro
            self.trap = trap
            self.ctx = ctx
            return v
        return -1

    def _succeeded(self, v: int, began: float, retries: int, result: Any) -> None:
        self.finish(v, began, retries)
        self.outputs[v] = result
        self.st.done(v)

    @types.coroutine
    def drive(self, slot: list[Any]) -> Generator[Any, Any, int]:
        """Drive the suspended body of the worker's task to its end, then go on.

        Bodies that the chain starts and that suspend in turn are driven
        here too, so a worker goes back to the engine only for a task that
        needs it: returns what ``run`` returns. ``Cancelled`` propagates;
        the slot's task and start time (``slot[1]``, ``slot[3]``) tell which
        attempt it ended. The loop is shared by all workers: what one
        suspended body needs is taken from it at once, and the rest lives
        in the worker's slot.
        """
        while True:
            coro, ctx, trap = self.coro, self.ctx, self.trap
            self.coro = self.ctx = self.trap = None
            assert ctx is not None
            while True:
                try:
                    value = yield trap
                except BaseException as exc:
                    step, arg = coro.throw, exc
                else:
                    step, arg = coro.send, value
                try:
                    trap = ctx.run(step, arg)
                except StopIteration as stop:
                    result = stop.value
                    break
                except _CANCELLED:
                    raise
                except BaseException as exc:
                    v = slot[1]
                    slot[1] = -1
                    self.why = RAISED
                    self.began = slot[3]
                    self.error = exc
                    return v  # type: ignore[no-any-return]
            v = slot[1]
            slot[1] = -1
            self._succeeded(v, slot[3], self.snap._opts[v].retries, result)
            v = self._chain(-1 if self.stopped else self.st.pop(), slot)
            if v < 0 or self.why != SUSPENDED:
                return v
            self.on_suspend()

"""The per-task ledger and the fast loop, in plain Python (twin of ``_loop.pyx``).

:class:`Loop` keeps each run's per-task records (attempts, start and end
times, outputs, busy time, concurrency) for the engine and the report, and
runs the hot path: pop a ready task, bind its arguments, start its body in a
fresh context (through a runner, see ``_runner``), and when the body returns
at once, record it and go on to the next, without going back to the Trio
scheduler. Whatever is not that simple goes back to the engine, which does it
in Python.
"""

from __future__ import annotations

import contextvars
import types
from array import array
from collections.abc import Callable, Generator, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

import trio

from .._bodies import ASYNC, kind_of

# Why run() hands a task back to the engine, and how many tasks run between
# checkpoints: the same codes as the compiled loop's.
from ._shared import CHECKPOINT, FAIRNESS_EVERY, RAISED, SLOW, SUSPENDED

if TYPE_CHECKING:
    from .._snapshot import Snapshot

__all__ = ["Loop"]

_NAN: Final = float("nan")
_COROUTINE: Final = types.CoroutineType
_CANCELLED: Final = trio.Cancelled
_RETURNED: Final = object()  # what a runner yields once its body has returned
# Outputs that hold no handle (no join), told without a call.
_PLAIN: Final = frozenset({type(None), int, str, float, bool, bytes})


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
        self.before_end: Callable[[], None] | None = None
        # A run's cache (see _engine): a task marked in unlooked is handed back
        # (SLOW) for its lookup; on_return(v, output) hears each output.
        self.unlooked: bytearray | None = None
        self.on_return: Callable[[int, Any], Any] | None = None
        # Tasks added or joining during the run (see _growth): a task marked
        # in handback is handed back (SLOW) for the engine to resolve its joins.
        self.handback: bytearray | None = None
        # on_join(v, output) hears each output that is no plain value first;
        # when it returns True the task joins others (on_return waits).
        self.on_join: Callable[[int, Any], bool] | None = None
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
        # Set when run() hands a task back:
        self.why = 0
        self.began = 0.0
        self.coro: Any = None
        self.trap: Any = None
        self.ctx: contextvars.Context | None = None
        self.error: BaseException | None = None
        # The runner of the next body, and where runners leave return values.
        self._runner: Generator[Any, Any, None] | None = None
        self._result: list[Any] = [None]
        # The columns, and how many times grow() changed them (the chain
        # reads them anew after a body that added tasks).
        self._cols = snap.columns
        self._gen = 0

    def grow(self, cols: Any, n: int) -> None:
        """Take the tasks added to the run: *n* tasks in all, read from *cols*.

        The per-task records grow in place (the same objects, longer), and
        the columns are read from *cols* from now on; a body may call it
        while the chain runs, which reads them anew after that body.
        """
        more = n - len(self.outputs)
        if more < 0:
            raise ValueError(f"a loop grows, it does not shrink ({len(self.outputs)} -> {n} tasks)")
        self._cols = cols
        self._gen += 1
        if more:
            self.outputs.extend([None] * more)
            self.start.extend(array("d", [_NAN]) * more)
            self.end.extend(array("d", [_NAN]) * more)
            self.attempts.extend(array("i", [0]) * more)
            self.end_order.extend(array("q", [0]) * more)

    @property
    def now(self) -> Callable[[], float]:
        """The clock: a callable returning Trio time."""
        return self._now

    @now.setter
    def now(self, value: Callable[[], float]) -> None:
        self._now = value
        # Trio's SystemClock is its offset plus time.perf_counter(): read that
        # directly, without a call in between.
        owner = getattr(value, "__self__", None)
        if (
            owner is not None
            and type(owner).__name__ == "SystemClock"
            and type(owner).__module__.startswith("trio")
            and getattr(value, "__name__", "") == "current_time"
        ):
            self._offset: float | None = owner.offset
        else:
            self._offset = None

    def _time(self) -> float:
        offset = self._offset
        return self._now() if offset is None else offset + perf_counter()

    def begin(self, v: int) -> float:
        """Count an attempt of task *v* as started; return its start time."""
        began = self._time()
        attempt = self.attempts[v] + 1
        self.attempts[v] = attempt
        if attempt == 1:
            self.start[v] = began
        self.live += 1
        if self.live > self.peak:
            self.peak = self.live
        return began

    def finish(self, v: int, began: float, retries: int) -> None:
        """Count the attempt of task *v* that began at *began* as ended."""
        self._finish(v, began, self._time(), retries)

    def _finish(self, v: int, began: float, now: float, retries: int) -> None:
        self._ended(v, began, now, retries)
        self.busy += now - began
        self.live -= 1

    def _ended(self, v: int, began: float, now: float, retries: int) -> None:
        self.end[v] = now
        self.ends += 1
        self.end_order[v] = self.ends
        if retries:
            self.extra.append((v, self.attempts[v], began, now))

    def begin_batch(self, v: int, began: float, first: bool) -> None:
        """Count an attempt of task *v* as started in the batched call begun at *began*.

        The call is one body running, however many tasks it serves: it
        enters the live count (and the peak) with its *first* task only.
        """
        attempt = self.attempts[v] + 1
        self.attempts[v] = attempt
        if attempt == 1:
            self.start[v] = began
        if first:
            self.live += 1
            if self.live > self.peak:
                self.peak = self.live

    def finish_batch(self, v: int, began: float, retries: int) -> None:
        """Count the attempt of task *v* in the batched call begun at *began* as ended.

        The call's live count and busy time are not touched: ``end_batch``
        counts them once, when the call ends.
        """
        self._ended(v, began, self._time(), retries)

    def end_batch(self, began: float) -> None:
        """The batched call begun at *began* has ended: it leaves the live
        count, and its time counts once in the busy time."""
        self.busy += self._time() - began
        self.live -= 1

    def kind(self, fn: Callable[..., Any]) -> int:
        """How *fn* runs by default (ASYNC or THREAD), cached per function."""
        try:
            return self.kinds[fn]
        except KeyError:
            kind = self.kinds[fn] = kind_of(fn)
            return kind
        except TypeError:  # an unhashable callable
            return kind_of(fn)

    def _allows(self, opts: Any, fn: Callable[..., Any]) -> bool:
        # Whether a task with these options and function may take the fast
        # path; the chain keeps the answer for the last pair, which most
        # tasks share.
        run_in = opts.run_in
        return (
            opts.timeout is None
            and opts.trigger == "all_succeeded"
            and (run_in == "async" or (run_in is None and self.kind(fn) == ASYNC))
        )

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
        return self._chain(v, slot, self._time())

    def _chain(self, v: int, slot: list[Any], now: float) -> int:
        # The clock is read once per task: when a body ends, that time is also
        # the next body's start. Counters stay in locals while the chain runs
        # and go back to the fields however it ends.
        cols = self._cols
        gen = self._gen
        st = self.st
        outputs = self.outputs
        opts_of = cols.opts
        fns = cols.fns
        bind = cols.bind
        args_of = cols.args
        kwargs_of = cols.kwargs
        off = cols.off
        src = cols.src
        attempts = self.attempts
        start = self.start
        end = self.end
        end_order = self.end_order
        # Trio's SystemClock is its offset plus perf_counter(); any other clock
        # is read as 0.0 plus itself, which is exactly its time.
        if self._offset is None:
            offset, clock = 0.0, self._now
        else:
            offset, clock = self._offset, perf_counter
        copy_context = contextvars.copy_context
        runner = self._runner or self._new_runner()
        send = runner.send
        result = self._result
        since = self.since_checkpoint
        ends = self.ends
        busy = self.busy
        live = self.live + 1  # while a body of the chain runs
        peak = self.peak
        last_opts = last_fn = None
        # Set by the engine while retries wait; no body of the chain can set it.
        before_end = self.before_end
        unlooked = self.unlooked
        handback = self.handback
        fast = False
        retries = 0
        try:
            while v >= 0:
                if since >= FAIRNESS_EVERY:
                    since = 0
                    self.why = CHECKPOINT
                    return v
                opts = opts_of[v]
                fn = fns[v]
                if opts is not last_opts or fn is not last_fn:
                    fast = self._allows(opts, fn)
                    last_opts = opts
                    last_fn = fn
                    retries = opts.retries
                if (
                    not fast
                    or (unlooked is not None and unlooked[v])
                    or (handback is not None and handback[v])
                ):
                    self.why = SLOW
                    return v
                # Columns.bind, with its two common cases inline (as the
                # compiled loop has them): no argument at all, or every
                # argument a handle (args_of holds their count).
                stored = args_of[v]
                kwargs: Mapping[str, Any] | None = kwargs_of.get(v) if kwargs_of else None
                if not (stored or kwargs):
                    args: tuple[Any, ...] = ()
                elif type(stored) is int:
                    lo = off[v]
                    args = tuple([outputs[j] for j in src[lo : lo + stored]])
                else:
                    try:
                        args, kwargs = bind(v, outputs)
                    except Exception:
                        # Its arguments changed after add(): the engine fails it.
                        self.why = SLOW
                        return v
                since += 1
                attempt = attempts[v] + 1
                attempts[v] = attempt
                if attempt == 1:
                    start[v] = now
                if live > peak:
                    self.peak = peak = live
                slot[1] = v
                slot[2] = attempt
                ctx = copy_context()
                try:
                    trap = ctx.run(send, (fn, args, kwargs))
                except BaseException as exc:
                    slot[1] = -1
                    self._handed_back(RAISED, now, live)
                    self.error = exc
                    return v
                if trap is not _RETURNED:
                    slot[3] = now
                    self._handed_back(SUSPENDED, now, live)
                    self.coro = runner
                    self.trap = trap
                    self.ctx = ctx
                    return v
                slot[1] = -1
                began = now
                now = offset + clock()
                end[v] = now
                ends += 1
                end_order[v] = ends
                busy += now - began
                if retries:
                    self.extra.append((v, attempt, began, now))
                outputs[v] = result[0]
                if gen != self._gen:
                    # The body added tasks: the columns may be others.
                    gen = self._gen
                    cols = self._cols
                    opts_of, fns, bind = cols.opts, cols.fns, cols.bind
                    args_of, kwargs_of, off, src = cols.args, cols.kwargs, cols.off, cols.src
                    unlooked = self.unlooked
                    handback = self.handback
                if before_end is not None:
                    before_end()
                out = outputs[v]
                # Read each time, as the compiled loop does: a body may make the
                # engine listen (run.result, as_completed) or add tasks (joins).
                on_join = self.on_join
                if on_join is not None and type(out) not in _PLAIN and on_join(v, out):
                    pass  # it joins others: the core's _done leaves it running
                elif self.on_return is not None:
                    self.on_return(v, outputs[v])
                if self.stopped:
                    st._done(v)
                    return -1
                v = st._done_pop(v)
            return -1
        finally:
            self.since_checkpoint = since
            self.ends = ends
            self.busy = busy

    def _new_runner(self) -> Generator[Any, Any, None]:
        runner = self._runner = _runner(self._result)
        next(runner)
        return runner

    def _handed_back(self, why: int, began: float, live: int) -> None:
        # A body began at *began* and did not return at once: its runner
        # goes with it, and it stays live until the engine ends it.
        self._runner = None
        self.live = live
        self.why = why
        self.began = began

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
            runner, ctx, trap = self.coro, self.ctx, self.trap
            self.coro = self.ctx = self.trap = None
            assert ctx is not None
            while True:
                try:
                    value = yield trap
                except BaseException as exc:
                    step, arg = runner.throw, exc
                else:
                    step, arg = runner.send, value
                try:
                    trap = ctx.run(step, arg)
                except _CANCELLED:
                    raise
                except BaseException as exc:
                    v = slot[1]
                    slot[1] = -1
                    self.why = RAISED
                    self.began = slot[3]
                    self.error = exc
                    return v  # type: ignore[no-any-return]
                if trap is _RETURNED:
                    break
            v = slot[1]
            slot[1] = -1
            now = self._time()
            self._finish(v, slot[3], now, self._cols.opts[v].retries)
            self.outputs[v] = self._result[0]
            if self.before_end is not None:
                self.before_end()
            out = self.outputs[v]
            if self.on_join is not None and type(out) not in _PLAIN and self.on_join(v, out):
                pass  # it joins others: the core's _done leaves it running
            elif self.on_return is not None:
                self.on_return(v, self.outputs[v])
            self.st._done(v)
            v = self._chain(-1 if self.stopped else self.st._pop(), slot, now)
            if v < 0 or self.why != SUSPENDED:
                return v
            self.on_suspend()


@types.coroutine
def _runner(result: list[Any]) -> Generator[Any, Any, None]:
    """Run each body sent in as ``(fn, args, kwargs)``: yield its traps, then _RETURNED.

    The body's return value is left in ``result[0]``. Through ``yield from``
    it comes back without a StopIteration, which costs a fast body a good
    part of its time. A runner that raised or suspended serves no other body.
    """
    call = yield None
    while True:
        fn, args, kwargs = call
        coro = fn(*args, **kwargs) if kwargs else fn(*args)
        if type(coro) is not _COROUTINE:
            raise TypeError(f"{fn!r} is async but returned {type(coro).__name__}")
        result[0] = yield from coro  # type: ignore[misc]  # allowed in a types.coroutine
        call = yield _RETURNED

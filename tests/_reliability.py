"""Helpers of the reliability suite (tests/test_reliability_*.py).

``mock_run`` runs a DAG on Trio's MockClock with a Recorder listening and
returns the report, the events and the options exactly as the run got them
(a drawn ``limit="limiter"`` becomes a ``trio.CapacityLimiter(2)`` made inside
the run), ready for ``trio_dag.testing.check_run``.

``run_drawn`` runs a drawn DAG as users run one: through ``run`` or
``open_run``, with ``check`` on or off, cancelled from outside (by
``run.cancel()`` or an outer cancel scope, after a drawn time or at a drawn
event) or not, with an ``on_event`` that may raise; ``held_to_spec`` then
holds what came out to SPEC section 3. Every run ends within a bounded time:
a hang is an AssertionError that names the drawn plan and options.
"""

from __future__ import annotations

import _thread
import faulthandler
import math
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import attrs
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag.events import Event
from trio_dag.testing import BrokenPromise, Interrupt, Recorder, check_run

T = TypeVar("T")

RESOURCES = {"gpu": 2.0, "mem": 3.5}
# Capacities whose parts add up exactly, where float sums drift: 0.1 + 0.2
# in 0.3, 0.2 + 0.7 in 0.9; an int capacity and one with a fraction.
EXACT_RESOURCES: dict[str, float] = {"gpu": 2, "mem": 3.5, "tenths": 0.3, "nines": 0.9}


# The settings of the property suites that draw runs: their dag_core
# fixture is function-scoped on purpose (one core for all examples).
SUITE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def examples(share: float) -> int:
    """*share* of the profile's ``max_examples``: a test that sets its own number
    of examples this way still runs 100 times more under ``--hypothesis-profile=long``."""
    return max(1, round(settings().max_examples * share))


def newest_first(handle: trio_dag.Handle[Any]) -> int:
    """A policy key function, as a user writes one."""
    return -handle.index


POLICIES: list[Any] = ["fifo", "lifo", "priority", "critical_path", "depth_first", newest_first]
STRATEGIES: list[Any] = [
    "immediate",
    "waves",
    trio_dag.Threshold(1),
    trio_dag.Threshold(2),
    trio_dag.Threshold(4),
]


def run_options(resources: dict[str, float] = RESOURCES) -> st.SearchStrategy[dict[str, Any]]:
    """Every policy, strategy, failure mode and kind of limit; the given resources."""
    return st.fixed_dictionaries(
        {
            "limit": st.sampled_from([None, 1, 2, 3, "limiter"]),
            "policy": st.sampled_from(POLICIES),
            "strategy": st.sampled_from(STRATEGIES),
            "on_failure": st.sampled_from(["skip", "fail_fast"]),
            "resources": st.just(resources),
        }
    )


def draw_targets(data: st.DataObject, dag: trio_dag.DAG) -> list[str] | None:
    """None (the whole DAG) or a few task names."""
    names = [h.name for h in dag]
    if not names or not data.draw(st.booleans(), label="with targets"):
        return None
    return data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3), label="targets")


HANG_AFTER = 10_000.0
WATCHDOG_SECONDS = 30.0
# After the watchdog cancelled a run that still does not end: dump every
# thread's stack with the plan, and interrupt the main thread.
LAST_RESORT_SECONDS = 15.0


class _Watchdog:
    """A thread that cancels *scope* after *seconds* of wall-clock time, and as a last
    resort (the run ignores the cancellation, or never yields to Trio) prints *what*
    and every thread's stack to stderr and interrupts the main thread."""

    def __init__(self, scope: trio.CancelScope, seconds: float, what: str) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.scope = scope
        self.seconds = seconds
        self.what = what
        self.stop = threading.Event()
        self.fired = False
        self.thread = threading.Thread(target=self._watch, name="hang watchdog", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        if self.stop.wait(self.seconds):
            return
        self.fired = True
        try:
            self.token.run_sync_soon(self.scope.cancel)
        except trio.RunFinishedError:
            return
        if self.stop.wait(LAST_RESORT_SECONDS):
            return
        sys.stderr.write(
            f"\nHANG: not over {self.seconds + LAST_RESORT_SECONDS:g} s after it started, "
            f"{LAST_RESORT_SECONDS:g} s after it was cancelled:\n{self.what}\n"
        )
        faulthandler.dump_traceback(all_threads=True)
        _thread.interrupt_main()

    def close(self) -> None:
        self.stop.set()


@contextmanager
def hang_guard(
    *, threads: bool = False, real: bool = False, what: str = "", seconds: float | None = None
) -> Iterator[None]:
    """Fail, instead of hanging, when the block does not end.

    On a MockClock (the default) the limit is 10,000 s of Trio time: a run
    that waits for something that never comes makes the clock jump straight
    to it. With *threads* a MockClock may jump while a thread returns its
    result, so no Trio deadline may be set. On the *real* clock the limit is
    *seconds* (default 30) of Trio time. Always, a watchdog thread cancels
    the block after *seconds* of wall-clock time (a safety net, not a timing
    assertion: healthy runs take milliseconds), which also catches a run
    that never yields to Trio's clock. The AssertionError names *what*
    (the drawn plan and options).
    """
    wall = WATCHDOG_SECONDS if seconds is None else seconds
    deadline = None if threads else (wall if real else HANG_AFTER)
    with trio.CancelScope() as scope:
        watchdog = _Watchdog(scope, wall, what)
        if deadline is not None:
            scope.deadline = trio.current_time() + deadline
        try:
            yield
        finally:
            watchdog.close()
    if scope.cancelled_caught:
        how = f"{wall:g} s of wall-clock time" if watchdog.fired else f"{deadline:g} s of Trio time"
        raise AssertionError(f"hangs: not over after {how}" + (f"\n{what}" if what else ""))


def on_mock_clock(fn: Callable[[], Awaitable[T]], *, threads: bool = False, what: str = "") -> T:
    """``trio.run(fn)`` on a MockClock that jumps as soon as every task waits.

    Fails if *fn* hangs (see :func:`hang_guard`; say whether it runs *threads*).
    """

    async def guarded() -> T:
        with hang_guard(threads=threads, what=what):
            return await fn()

    return trio.run(guarded, clock=MockClock(autojump_threshold=0))


def on_real_clock(fn: Callable[[], Awaitable[T]], *, seconds: float, what: str = "") -> T:
    """``trio.run(fn)`` on the real clock; fails if *fn* is not over after *seconds*."""

    async def guarded() -> T:
        with hang_guard(real=True, seconds=seconds, what=what):
            return await fn()

    return trio.run(guarded)


def real_options(options: dict[str, Any]) -> dict[str, Any]:
    """*options* with a drawn ``limit="limiter"`` made into a CapacityLimiter (inside Trio)."""
    if options.get("limit") == "limiter":
        return {**options, "limit": trio.CapacityLimiter(2)}
    return dict(options)


def mock_run(
    dag: trio_dag.DAG, *, threads: bool = False, **options: Any
) -> tuple[trio_dag.RunReport, Recorder, dict[str, Any]]:
    """Run *dag* with ``check=False`` on a MockClock; ``(report, events, options used)``."""
    recorder = Recorder()
    used: dict[str, Any] = {}

    async def main() -> trio_dag.RunReport:
        used.update(real_options(options))
        return await trio_dag.run(dag, check=False, on_event=recorder, **used)

    return on_mock_clock(main, threads=threads), recorder, used


# -- runs as users run them, cancelled from outside or not -------------------------------


@attrs.frozen
class Cancel:
    """How a test stops a run from outside: ``run.cancel()`` or an outer cancel scope
    (*by*), *when*: after *at* time units (from a task beside the run), at the
    *at*-th event (from ``on_event``, inside the engine's call), or when the
    ``run.events()`` reader has read the *at*-th event."""

    by: Literal["run.cancel", "outer"]
    when: Literal["time", "event", "reader"]
    at: int


def cancels(api: str) -> st.SearchStrategy[Cancel | None]:
    """No cancel, or a cancel by any means *api* allows, at a drawn offset (0 to 12
    half units, or the 1st to 12th event): a plain ``run()`` has no Run to cancel
    and no reader."""
    by = ["outer"] if api == "run" else ["run.cancel", "outer"]
    when = ["time", "event"] if api == "run" else ["time", "event", "reader"]
    return st.none() | st.builds(
        Cancel, by=st.sampled_from(by), when=st.sampled_from(when), at=st.integers(0, 12)
    )


class CallbackBoom(Exception):
    """What a drawn ``on_event`` raises: the run must raise CallbackError."""


@attrs.define
class Ran:
    """What came out of one run: its report (when a report came out), what it raised,
    every event, the options it was given, and what the test did to it."""

    report: trio_dag.RunReport | None = None
    raised: BaseException | None = None
    events: list[Event] = attrs.Factory(list)
    streamed: list[Event] | None = None
    stream_complete: bool = False
    used: dict[str, Any] = attrs.Factory(dict)
    cancelled: bool = False
    outer: bool = False
    callback_raised: bool = False
    check: bool = False


async def run_drawn(
    dag: trio_dag.DAG,
    options: dict[str, Any],
    *,
    api: Literal["run", "open_run"] = "open_run",
    check: bool = False,
    cancel: Cancel | None = None,
    raise_at: int | None = None,
    unit: float = 1.0,
) -> Ran:
    """Run *dag* as a user does (see the module docstring); never raises what the run
    raised (it is in ``Ran.raised``), but lets Cancelled through to the test's scopes.

    A ``run.cancel()`` or the reader's cancel needs ``api="open_run"``.
    """
    ran = Ran(used=real_options(options), check=check)
    recorder = Recorder()
    outer = trio.CancelScope()
    handles: list[trio_dag.Run] = []

    def stop(by: str) -> None:
        ran.cancelled = True
        if by == "outer":
            outer.cancel()
        else:
            handles[0].cancel()

    def on_event(event: Event) -> None:
        recorder(event)
        count = len(recorder.events)
        if cancel is not None and cancel.when == "event" and count == cancel.at:
            stop(cancel.by)
        if count == raise_at:
            ran.callback_raised = True
            raise CallbackBoom(f"on_event raised at event {count}")

    async def stop_later(seconds: float) -> None:
        await trio.sleep(seconds)
        stop("run.cancel")

    async def read(run: trio_dag.Run) -> None:
        streamed = ran.streamed = []
        async for event in run.events():
            streamed.append(event)
            if cancel is not None and cancel.when == "reader" and len(streamed) == cancel.at:
                stop(cancel.by)
        ran.stream_complete = True

    try:
        # The run is called in no nursery of the test's own: what it raises
        # comes out as it is, not inside the test's exception group.
        with outer:
            if cancel is not None and cancel.when == "time" and cancel.by == "outer":
                outer.deadline = trio.current_time() + cancel.at * unit / 2
            if api == "run":
                ran.report = await trio_dag.run(dag, check=check, on_event=on_event, **ran.used)
            else:
                async with trio_dag.open_run(
                    dag, check=check, on_event=on_event, **ran.used
                ) as run:
                    handles.append(run)
                    async with trio.open_nursery() as nursery:
                        if cancel is not None and cancel.when == "time" and cancel.by != "outer":
                            nursery.start_soon(stop_later, cancel.at * unit / 2)
                        await read(run)
                        nursery.cancel_scope.cancel()
    except trio.Cancelled as exc:
        if trio.current_effective_deadline() == -math.inf:
            raise  # the test's own scope (the hang guard) was cancelled
        ran.raised = exc  # a Cancelled that no scope of the caller's asked for
    except BaseException as exc:  # what left the run: held to SPEC by held_to_spec
        ran.raised = exc
    ran.outer = outer.cancel_called
    ran.cancelled = ran.cancelled or ran.outer
    if ran.report is None and handles:
        try:
            ran.report = handles[0].report
        except RuntimeError:
            pass  # the run never ended: held_to_spec says so
    if ran.report is None and isinstance(ran.raised, trio_dag.RunFailedError):
        ran.report = ran.raised.report
    ran.events = recorder.events
    return ran


def describe(plan: object, options: dict[str, Any], **more: object) -> str:
    """The drawn plan and options, for a failure message."""
    extra = "".join(f", {key}={value!r}" for key, value in more.items())
    return f"plan: {plan!r}\noptions: {options!r}{extra}"


def check_spec(dag: trio_dag.DAG, ran: Ran) -> None:
    """``check_run`` on the run's report and every event (``cancelled=True`` when
    the run was stopped from outside, by a CallbackError or by an Interrupt).

    An ``on_event`` that raised hears no more events: then the events are the
    ones ``run.events()`` streamed, or none when the stream was not read to
    its end.
    """
    assert ran.report is not None
    events: list[Event] | None = ran.events
    if ran.callback_raised:
        events = ran.streamed if ran.stream_complete else None
    stopped = ran.cancelled or ran.callback_raised or isinstance(ran.raised, Interrupt)
    check_run(dag, ran.report, events, cancelled=stopped, **ran.used)


def held_to_spec(dag: trio_dag.DAG, ran: Ran, *, plan: object, run_api: str) -> None:
    """What left the run is what SPEC section 3 says may, and no task ended CANCELLED
    that nobody cancelled. Raises AssertionError naming the plan."""
    where = f"\n{describe(plan, ran.used, run_api=run_api, check=ran.check)}"
    raised = ran.raised
    report = ran.report
    if isinstance(raised, BrokenPromise):
        raise AssertionError(f"a body saw the engine break a promise: {raised}{where}")
    if isinstance(raised, trio_dag.RunFailedError):
        assert ran.check, f"RunFailedError from a run with check=False{where}"
        assert raised.report.failed, f"RunFailedError though no task FAILED{where}"
    elif isinstance(raised, trio_dag.CallbackError):
        assert ran.callback_raised, f"CallbackError though on_event never raised: {raised!r}{where}"
        assert isinstance(raised.__cause__, CallbackBoom), where
    elif isinstance(raised, Interrupt):
        pass  # a task raised it: it propagates unwrapped
    elif raised is not None:
        raise AssertionError(
            f"{type(raised).__name__} left the run, which SPEC does not allow: {raised!r}{where}"
        ) from raised
    if report is None:
        # Only a plain run() stopped by an outer scope, or raising, gives no report.
        assert run_api == "run" and (ran.cancelled or raised is not None), (
            f"no report came out of the run{where}"
        )
        return
    if raised is None and ran.check and report.failed:
        # Only an outer scope's Cancelled, which it absorbs, stops RunFailedError.
        assert ran.outer, f"check=True, tasks FAILED, and the run returned normally{where}"
    if ran.callback_raised and raised is None and not ran.outer:
        raise AssertionError(f"on_event raised, yet the run did not raise CallbackError{where}")
    _no_needless_cancel(ran, report, where)


def _no_needless_cancel(ran: Ran, report: trio_dag.RunReport, where: str) -> None:
    if ran.cancelled or isinstance(ran.raised, Interrupt):
        return  # stopped from outside, or by an Interrupt: anything may be CANCELLED
    failing_fast = ran.callback_raised or (
        ran.used.get("on_failure") == "fail_fast" and bool(report.failed)
    )
    cancelled = [h.name for h in report.cancelled]
    if not failing_fast:
        assert not cancelled, f"tasks ended CANCELLED in a run nobody cancelled: {cancelled}{where}"
        return
    snap = report._snap
    teardown = [h.name for h in report.cancelled if snap.options(h.index).trigger == "all_done"]
    assert not teardown, (
        f"teardown (all_done) tasks ended CANCELLED under fail_fast, though SPEC says "
        f"teardown still runs: {teardown}{where}"
    )

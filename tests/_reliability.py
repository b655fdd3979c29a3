"""Helpers of the reliability suite (tests/test_reliability_*.py).

``mock_run`` runs a DAG on Trio's MockClock with a Recorder listening and
returns the report, the events and the options exactly as the run got them
(a drawn ``limit="limiter"`` becomes a ``trio.CapacityLimiter(2)`` made inside
the run), ready for ``trio_dag.testing.check_run``.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import trio
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag.testing import Recorder

T = TypeVar("T")

RESOURCES = {"gpu": 2.0, "mem": 3.5}


def newest_first(handle: trio_dag.Handle[Any]) -> int:
    """A policy key function, as a user writes one."""
    return -handle.index


POLICIES: list[Any] = ["fifo", "lifo", "priority", "critical_path", newest_first]
STRATEGIES: list[Any] = [
    "immediate",
    "waves",
    trio_dag.Threshold(1),
    trio_dag.Threshold(2),
    trio_dag.Threshold(4),
]


def run_options() -> st.SearchStrategy[dict[str, Any]]:
    """Every policy, strategy, failure mode and kind of limit; the suite's resources."""
    return st.fixed_dictionaries(
        {
            "limit": st.sampled_from([None, 1, 2, 3, "limiter"]),
            "policy": st.sampled_from(POLICIES),
            "strategy": st.sampled_from(STRATEGIES),
            "on_failure": st.sampled_from(["skip", "fail_fast"]),
            "resources": st.just(RESOURCES),
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


@contextmanager
def hang_guard(*, threads: bool = False) -> Iterator[None]:
    """Fail, instead of hanging, when the block does not end.

    Without threads the limit is 10,000 s of Trio time: on a MockClock a run
    that waits for something that never comes makes the clock jump straight
    to it. With *threads* a MockClock may jump while a thread returns its
    result, so no Trio deadline may be set; a watchdog thread cancels the
    block after 30 s of wall-clock time instead (a safety net, not a timing
    assertion: healthy runs take milliseconds).
    """
    if not threads:
        try:
            with trio.fail_after(HANG_AFTER):
                yield
        except trio.TooSlowError:
            raise AssertionError(f"hangs: not over after {HANG_AFTER:g} s of Trio time") from None
        return
    token = trio.lowlevel.current_trio_token()
    with trio.CancelScope() as scope:
        watchdog = threading.Timer(WATCHDOG_SECONDS, token.run_sync_soon, [scope.cancel])
        watchdog.start()
        try:
            yield
        finally:
            watchdog.cancel()
    if scope.cancelled_caught:
        raise AssertionError(f"hangs: not over after {WATCHDOG_SECONDS:g} s of wall-clock time")


def on_mock_clock(fn: Callable[[], Awaitable[T]], *, threads: bool = False) -> T:
    """``trio.run(fn)`` on a MockClock that jumps as soon as every task waits.

    Fails if *fn* hangs (see :func:`hang_guard`; say whether it runs *threads*).
    """

    async def guarded() -> T:
        with hang_guard(threads=threads):
            return await fn()

    return trio.run(guarded, clock=MockClock(autojump_threshold=0))


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

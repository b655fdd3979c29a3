"""Stopping a run from outside: run.cancel(), the caller's cancel scope, an
exception in the open_run block. Whatever the direction, nothing of the run
is still running once run or the block returns (SPEC 3, guarantee 4).

Every test runs the engine on both cores (``dag_core``) on a MockClock.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from _engine_probe import Probe, add_nap
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import Event, TaskFinished


async def flaky(probe: Probe, seconds: float) -> str:
    """Fail the first attempt after *seconds*, then succeed."""
    task = trio_dag.current_task()
    with probe.attempt():
        await trio.sleep(seconds)
        if task.attempt == 1:
            raise ValueError("first attempt")
    return task.name


def _busy_dag(probe: Probe) -> trio_dag.DAG:
    """quick ends at 1; slow, waiting-retry, queued and the rest are unfinished at 3."""
    dag = trio_dag.DAG()
    quick = add_nap(dag, probe, "quick", 1)
    slow = add_nap(dag, probe, "slow", 10)
    add_nap(dag, probe, "after-slow", 1, slow)
    add_nap(dag, probe, "teardown", 1, slow, quick, trigger="all_done")
    dag.add(flaky, probe, 1, name="retrying", retries=1, retry_delay=10)
    add_nap(dag, probe, "queued", 1, quick, uses={"A": 1})
    add_nap(dag, probe, "hold-a", 20, uses={"A": 1})
    return dag


def _assert_stopped_at_3(report: trio_dag.RunReport, probe: Probe) -> None:
    assert probe.running == set()
    assert not report.ok
    assert report["quick"] == "quick"  # finished tasks keep their results
    assert report.succeeded == [report_handle(report, "quick")]
    assert {h.name for h in report.cancelled} == {
        "slow",
        "after-slow",
        "teardown",  # teardown is cancelled too
        "retrying",
        "queued",
        "hold-a",
    }
    with pytest.raises(trio_dag.TaskCancelledError):
        report["slow"]
    assert probe.end("slow") == probe.end("hold-a") == 3
    assert "teardown" not in probe.spans and "after-slow" not in probe.spans
    assert len(probe.spans["retrying"]) == 1
    assert report.stats.makespan == 3


def report_handle(report: trio_dag.RunReport, name: str) -> trio_dag.Handle[Any]:
    return next(h for h in report if h.name == name)


# -- run.cancel() ------------------------------------------------------------------


async def test_run_cancel_returns_the_report(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    finished: list[TaskFinished] = []
    async with trio_dag.open_run(_busy_dag(probe), resources={"A": 1}) as run:
        await trio.sleep(3)
        run.cancel()
        async for event in run.events():
            if isinstance(event, TaskFinished):
                finished.append(event)
    assert probe.now() == 3
    report = run.report
    _assert_stopped_at_3(report, probe)
    assert sorted(e.task.name for e in finished) == sorted(h.name for h in report)
    by_name = {e.task.name: e for e in finished}
    assert by_name["after-slow"].duration == 0.0
    assert isinstance(by_name["after-slow"].outcome.error, trio_dag.TaskCancelledError)
    assert by_name["slow"].state is TaskState.CANCELLED


async def test_run_cancel_with_a_failure_still_checks(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "bad", 1, fail=ValueError("bad"))
    add_nap(dag, probe, "slow", 10)
    with pytest.raises(trio_dag.RunFailedError) as info:
        async with trio_dag.open_run(dag) as run:
            await trio.sleep(2)
            run.cancel()
    assert info.value.report is run.report
    assert run.report.state("slow") is TaskState.CANCELLED
    async with trio_dag.open_run(dag, check=False) as run:
        await trio.sleep(2)
        run.cancel()
    assert run.report.state("bad") is TaskState.FAILED
    assert probe.running == set()


async def test_run_cancel_before_anything_started(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    async with trio_dag.open_run(_busy_dag(probe), resources={"A": 1}) as run:
        run.cancel()
        run.cancel()  # a second call changes nothing
    assert probe.started == []
    assert len(run.report.cancelled) == len(run.report) == 7
    assert not run.report.ok


async def test_run_cancel_after_the_run_ended_changes_nothing(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "a", 1)
    async with trio_dag.open_run(dag) as run:
        async for _ in run.events():
            pass
        await trio.sleep(1)
        run.cancel()
    assert run.report.ok
    assert run.report["a"] == "a"


async def test_run_cancel_while_waiting_for_a_shared_limiter(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    limiter = trio.CapacityLimiter(1)
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "starved", 1)

    async def outside(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with limiter:
            task_status.started()
            await trio.sleep(5)

    async with trio.open_nursery() as nursery:
        await nursery.start(outside)
        async with trio_dag.open_run(dag, limit=limiter) as run:
            await trio.sleep(2)
            run.cancel()
        assert limiter.borrowed_tokens == 1  # the outside holder's only
    assert run.report.state("starved") is TaskState.CANCELLED
    assert probe.started == []
    assert limiter.borrowed_tokens == 0


async def test_run_cancel_waits_for_a_thread_and_discards_its_result(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    release = threading.Event()
    t0 = trio.current_time()

    def blocked() -> str:
        release.wait(30)  # set at t=5 below; 30 s is only a safety net
        return "late"

    async def release_at_5() -> None:
        await trio.sleep(5)
        release.set()

    dag = trio_dag.DAG()
    dag.add(blocked, name="blocked")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_at_5)
        async with trio_dag.open_run(dag) as run:
            await trio.sleep(1)
            run.cancel()
        assert release.is_set()  # the block ended only once the thread returned
        assert trio.current_time() - t0 == 5
    assert run.report.state("blocked") is TaskState.CANCELLED
    with pytest.raises(trio_dag.TaskCancelledError):
        run.report["blocked"]


# -- the caller's cancel scope --------------------------------------------------------


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
@pytest.mark.parametrize("strategy", ["immediate", "waves", trio_dag.Threshold(2)])
async def test_caller_scope_cancelled_leaves_nothing_running(
    dag_core: Any, autojump_clock: MockClock, on_failure: str, strategy: Any
) -> None:
    probe = Probe()
    with trio.move_on_after(3) as scope:
        await trio_dag.run(
            _busy_dag(probe), resources={"A": 1}, on_failure=on_failure, strategy=strategy
        )
    assert scope.cancelled_caught
    assert probe.running == set()
    assert probe.now() == 3
    assert "teardown" not in probe.spans


async def test_caller_scope_cancelled_ends_the_rest_cancelled(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # SPEC: cancellation from outside stops everything: "finished tasks keep
    # their results, the rest are CANCELLED" (not SKIPPED).
    probe = Probe()
    finished: list[TaskFinished] = []

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFinished):
            finished.append(event)

    with trio.move_on_after(3):
        await trio_dag.run(_busy_dag(probe), resources={"A": 1}, on_event=on_event)
    states = {e.task.name: e.state for e in finished}
    assert len(finished) == len(states)  # one TaskFinished per task
    assert states == {
        "quick": TaskState.SUCCEEDED,
        "slow": TaskState.CANCELLED,
        "after-slow": TaskState.CANCELLED,
        "teardown": TaskState.CANCELLED,
        "retrying": TaskState.CANCELLED,
        "queued": TaskState.CANCELLED,
        "hold-a": TaskState.CANCELLED,
    }


@pytest.mark.parametrize("direction", ["caller-scope", "run.cancel"])
async def test_outside_cancellation_stops_teardown_too(
    dag_core: Any, autojump_clock: MockClock, direction: str
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 1, fail=ValueError("bad"))
    add_nap(dag, probe, "teardown", 10, bad, trigger="all_done")
    with trio.move_on_after(3):  # the caller's scope
        async with trio_dag.open_run(dag, on_failure="fail_fast", check=False) as run:
            if direction == "run.cancel":
                await trio.sleep(2.5)
                run.cancel()
            else:
                await trio.sleep_forever()
    assert probe.running == set()
    assert probe.spans["teardown"] == [(1, 3 if direction == "caller-scope" else 2.5)]
    assert run.report.state("teardown") is TaskState.CANCELLED
    assert run.report.state("bad") is TaskState.FAILED


async def test_caller_scope_cancelled_around_open_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    with trio.move_on_after(3):
        async with trio_dag.open_run(_busy_dag(probe), resources={"A": 1}) as run:
            await trio.sleep_forever()
    _assert_stopped_at_3(run.report, probe)


async def test_caller_scope_cancelled_waits_for_a_thread(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    release = threading.Event()
    t0 = trio.current_time()

    def blocked() -> None:
        release.wait(30)  # set at t=5 below; 30 s is only a safety net

    async def release_at_5() -> None:
        await trio.sleep(5)
        release.set()

    dag = trio_dag.DAG()
    dag.add(blocked, name="blocked")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_at_5)
        with trio.move_on_after(1):
            await trio_dag.run(dag)
        assert release.is_set()
        assert trio.current_time() - t0 == 5


# -- an exception in the open_run block --------------------------------------------------


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt])
async def test_exception_in_the_block_cancels_the_run_and_propagates(
    dag_core: Any, autojump_clock: MockClock, exc_type: type[BaseException]
) -> None:
    # Trio's advice for context managers that open a nursery: do not leak the
    # nursery's ExceptionGroup; the block's own exception comes out as it is.
    probe = Probe()
    with pytest.raises(exc_type) as info:
        async with trio_dag.open_run(_busy_dag(probe), resources={"A": 1}) as run:
            await trio.sleep(2)
            raise exc_type("stop")
    assert type(info.value) is exc_type
    assert probe.running == set()
    assert probe.end("slow") == 2
    assert run.report.state("slow") is TaskState.CANCELLED
    assert run.report["quick"] == "quick"

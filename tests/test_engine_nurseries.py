"""Bodies that hold a nursery (or ``trio.run_process``, which opens one), or
that catch and re-raise their cancellation, stopped by each of fail_fast,
``run.cancel()`` and the caller's cancel scope.

Whatever shape the cancellation takes when it leaves the body (a
``Cancelled``, a group of them, a group mixing them with the body's own
error), the run decides as Trio's cancel scopes do (SPEC 6): the task ends
CANCELLED, or FAILED with the part that is not ``Cancelled``, the report is
whole and the run returns or raises as SPEC 3 says. Every test runs on both
cores (``dag_core``); the subprocess ones on the real clock, the others on
a MockClock.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import pytest
import trio
from _engine_probe import Probe, add_nap
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import Event, TaskFinished

T = TypeVar("T")
Body = Callable[[Probe], Awaitable[str]]
# Every run here ends long before this (mock or real seconds): past it, it hung.
BOUND = 10


async def bounded(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run *scenario*; fail if it hangs past BOUND or lets out a BaseException.

    pytest-trio passes a test that a ``Cancelled`` (or a group of them) left,
    skipping its asserts: what the engine lets out must be caught here.
    """
    with trio.move_on_after(BOUND) as scope:
        result = await outcome.acapture(scenario)
    if scope.cancel_called:
        pytest.fail(f"the run hung: still running after {BOUND} s")
    if isinstance(result, outcome.Error) and not isinstance(result.error, Exception):
        pytest.fail(f"{result.error!r} escaped from the run")
    return result.unwrap()


async def holds_a_nursery(probe: Probe) -> str:
    """Two children sleeping in a nursery of the body's own."""
    with probe.attempt():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 100)
            nursery.start_soon(trio.sleep, 100)
    return "late"


async def reraises(probe: Probe) -> str:
    """Catches its Cancelled, and raises it again."""
    with probe.attempt():
        try:
            await trio.sleep(100)
        except trio.Cancelled:
            raise
    return "late"


async def reraises_the_group(probe: Probe) -> str:
    """Catches the group of Cancelled its nursery raises, and raises it again."""
    with probe.attempt():
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 100)
                nursery.start_soon(trio.sleep, 100)
        except BaseExceptionGroup:
            raise
    return "late"


async def runs_a_process(probe: Probe) -> str:
    """A real child process with captured output (trio.run_process opens a nursery)."""
    with probe.attempt():
        await trio.run_process(
            [sys.executable, "-c", "import time; time.sleep(5)"], capture_stdout=True
        )
    return "late"


BODIES: dict[str, Body] = {
    "nursery": holds_a_nursery,
    "reraise": reraises,
    "reraise-group": reraises_the_group,
}


def _dag(probe: Probe, body: Body, fail_at: float | None = None) -> trio_dag.DAG:
    """job runs *body*; with *fail_at*, bad fails then; after-job waits for job."""
    dag = trio_dag.DAG()
    job = dag.add(body, probe, name="job")
    add_nap(dag, probe, "after-job", 1, job)
    if fail_at is not None:
        add_nap(dag, probe, "bad", fail_at, fail=ValueError("bad"))
    return dag


def _states(report: trio_dag.RunReport) -> dict[str, TaskState]:
    return {h.name: report.state(h) for h in report}


# -- MockClock: inner nurseries and re-raised cancellation ---------------------------


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("listen", [False, True])
async def test_fail_fast_cancels_a_body_holding_a_nursery(
    dag_core: Any, autojump_clock: MockClock, body: str, listen: bool
) -> None:
    probe = Probe()
    finished: list[TaskFinished] = []

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFinished):
            finished.append(event)

    async def scenario() -> trio_dag.RunFailedError:
        with pytest.raises(trio_dag.RunFailedError) as info:
            await trio_dag.run(
                _dag(probe, BODIES[body], fail_at=1),
                on_failure="fail_fast",
                on_event=on_event if listen else None,
            )
        return info.value

    error = await bounded(scenario)
    report = error.report
    assert _states(report) == {
        "job": TaskState.CANCELLED,
        "after-job": TaskState.CANCELLED,
        "bad": TaskState.FAILED,
    }
    assert [e.task for e in error.exceptions] == ["bad"]
    assert probe.running == set()
    assert probe.end("job") == 1
    with pytest.raises(trio_dag.TaskCancelledError):
        report["job"]
    if listen:
        assert sorted(e.task.name for e in finished) == ["after-job", "bad", "job"]


@pytest.mark.parametrize("body", BODIES)
async def test_run_cancel_cancels_a_body_holding_a_nursery(
    dag_core: Any, autojump_clock: MockClock, body: str
) -> None:
    probe = Probe()

    async def scenario() -> trio_dag.RunReport:
        async with trio_dag.open_run(_dag(probe, BODIES[body])) as run:
            await trio.sleep(1)
            run.cancel()
        return run.report

    report = await bounded(scenario)
    assert _states(report) == {"job": TaskState.CANCELLED, "after-job": TaskState.CANCELLED}
    assert not report.ok
    assert probe.running == set()
    assert probe.end("job") == 1


async def _stopped_by_the_caller(dag: trio_dag.DAG, at: float, streaming: bool) -> Any:
    """Run *dag* in a scope the caller cancels at *at*; the report, when streaming."""

    async def scenario() -> trio_dag.RunReport | None:
        report = None
        with trio.move_on_after(at) as scope:
            if streaming:
                async with trio_dag.open_run(dag) as run:
                    await trio.sleep_forever()
            else:
                await trio_dag.run(dag)
        assert scope.cancelled_caught
        if streaming:
            report = run.report
        return report

    return await bounded(scenario)


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("streaming", [False, True])
async def test_caller_scope_cancels_a_body_holding_a_nursery(
    dag_core: Any, autojump_clock: MockClock, body: str, streaming: bool
) -> None:
    # Without streaming the engine takes its fast loop: both paths are checked.
    probe = Probe()
    report = await _stopped_by_the_caller(_dag(probe, BODIES[body]), 1, streaming)
    assert probe.running == set()
    assert probe.end("job") == 1
    if streaming:
        assert _states(report) == {"job": TaskState.CANCELLED, "after-job": TaskState.CANCELLED}


async def _cancelled_with_a_failure(probe: Probe) -> str:
    """A nursery child that, cancelled, fails: Trio lets its ValueError out of the scope."""

    async def child() -> None:
        try:
            await trio.sleep(100)
        finally:
            raise ValueError("cleanup failed")

    with probe.attempt():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            nursery.start_soon(trio.sleep, 100)
    return "late"


@pytest.mark.parametrize("how", ["fail_fast", "run.cancel", "caller-scope"])
async def test_cancelled_body_that_also_fails_ends_failed_with_what_is_not_cancelled(
    dag_core: Any, autojump_clock: MockClock, how: str
) -> None:
    # Trio's cancel scope catches the Cancelled of a mixed group and lets the
    # rest out: that rest is the task's failure, the Cancelled stops the run.
    probe = Probe()
    dag = _dag(probe, _cancelled_with_a_failure, fail_at=1 if how == "fail_fast" else None)

    async def scenario() -> trio_dag.RunReport:
        with trio.move_on_after(1 if how == "caller-scope" else BOUND):
            async with trio_dag.open_run(
                dag, on_failure="fail_fast" if how == "fail_fast" else "skip", check=False
            ) as run:
                if how == "run.cancel":
                    await trio.sleep(1)
                    run.cancel()
                elif how == "caller-scope":
                    await trio.sleep_forever()
        return run.report

    report = await bounded(scenario)
    assert report.state("job") is TaskState.FAILED
    error = report.errors["job"]
    assert isinstance(error, ExceptionGroup)
    assert [type(e) for e in error.exceptions] == [ValueError]
    assert report.state("after-job") is TaskState.CANCELLED
    assert probe.running == set()
    assert probe.end("job") == 1


# -- the real clock: trio.run_process ------------------------------------------------


@pytest.mark.parametrize("listen", [False, True])
async def test_fail_fast_cancels_a_running_process(dag_core: Any, listen: bool) -> None:
    probe = Probe()

    async def scenario() -> trio_dag.RunFailedError:
        with pytest.raises(trio_dag.RunFailedError) as info:
            await trio_dag.run(
                _dag(probe, runs_a_process, fail_at=0.3),
                on_failure="fail_fast",
                on_event=(lambda event: None) if listen else None,
            )
        return info.value

    error = await bounded(scenario)
    assert _states(error.report) == {
        "job": TaskState.CANCELLED,
        "after-job": TaskState.CANCELLED,
        "bad": TaskState.FAILED,
    }
    assert probe.running == set()
    assert probe.end("job") < 5  # cancelled, not waited for


async def test_run_cancel_cancels_a_running_process(dag_core: Any) -> None:
    probe = Probe()

    async def scenario() -> trio_dag.RunReport:
        async with trio_dag.open_run(_dag(probe, runs_a_process)) as run:
            await trio.sleep(0.3)
            run.cancel()
        return run.report

    report = await bounded(scenario)
    assert _states(report) == {"job": TaskState.CANCELLED, "after-job": TaskState.CANCELLED}
    assert probe.running == set()
    assert probe.end("job") < 5


@pytest.mark.parametrize("streaming", [False, True])
async def test_caller_scope_cancels_a_running_process(dag_core: Any, streaming: bool) -> None:
    probe = Probe()
    report = await _stopped_by_the_caller(_dag(probe, runs_a_process), 0.3, streaming)
    assert probe.running == set()
    assert probe.end("job") < 5
    if streaming:
        assert _states(report) == {"job": TaskState.CANCELLED, "after-job": TaskState.CANCELLED}


# -- what a cancelled body sees ------------------------------------------------------


@trio_dag.batched(max_size=2)
async def batched_failing(items: list[int]) -> list[int]:
    await trio.sleep(1)
    raise ValueError("the batch failed")


@pytest.mark.parametrize("stopper", ["fail_fast", "batch", "on_event", "run.cancel"])
async def test_cancelled_seen_by_a_body_has_no_context(
    dag_core: Any, autojump_clock: MockClock, stopper: str
) -> None:
    # Plain Trio: the Cancelled a task sees is not raised "during handling of"
    # anything. The engine stops the run outside the except block that saw
    # the failure, so the failing task's error does not leak into it.
    probe = Probe()
    contexts: list[BaseException | None] = []

    async def watched() -> str:
        with probe.attempt():
            try:
                await trio.sleep(100)
            except trio.Cancelled as exc:
                contexts.append(exc.__context__)
                raise
        return "late"

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFinished) and event.task.name == "quick":
            raise RuntimeError("progress bar broke")

    dag = trio_dag.DAG()
    dag.add(watched, name="watched")
    if stopper == "batch":
        dag.add(batched_failing, 1, name="quick")
    else:
        add_nap(dag, probe, "quick", 1, fail=ValueError("bad") if stopper != "on_event" else None)

    async def scenario() -> None:
        if stopper == "run.cancel":
            async with trio_dag.open_run(dag, check=False) as run:
                await trio.sleep(1)
                run.cancel()
        else:
            with pytest.raises((trio_dag.RunFailedError, trio_dag.CallbackError)):
                await trio_dag.run(
                    dag,
                    on_failure="fail_fast",
                    on_event=on_event if stopper == "on_event" else None,
                )

    await bounded(scenario)
    assert contexts == [None]
    assert probe.running == set()


# -- a batched call holding a nursery ------------------------------------------------


@trio_dag.batched(max_size=4)
async def batched_nursery(items: list[int]) -> list[int]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 100)
        nursery.start_soon(trio.sleep, 100)
    return items


@pytest.mark.parametrize("how", ["fail_fast", "run.cancel", "caller-scope"])
async def test_cancelled_batched_call_holding_a_nursery_ends_its_tasks_cancelled(
    dag_core: Any, autojump_clock: MockClock, how: str
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    for k in range(3):
        dag.add(batched_nursery, k, name=f"item-{k}")
    if how == "fail_fast":
        add_nap(dag, probe, "bad", 1, fail=ValueError("bad"))

    async def scenario() -> trio_dag.RunReport:
        with trio.move_on_after(1 if how == "caller-scope" else BOUND):
            async with trio_dag.open_run(
                dag, on_failure="fail_fast" if how == "fail_fast" else "skip", check=False
            ) as run:
                if how == "run.cancel":
                    await trio.sleep(1)
                    run.cancel()
                elif how == "caller-scope":
                    await trio.sleep_forever()
        return run.report

    report = await bounded(scenario)
    assert {h.name for h in report.cancelled} == {"item-0", "item-1", "item-2"}
    assert report.stats.makespan == 1

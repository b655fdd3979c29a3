"""Dask: a task cancelled after its call was queued for submission, before it has a future.

The tasks that become ready together are submitted together: the first to
reach ``DaskFutures.call`` waits one checkpoint for the others, then submits
every queued call. A task cancelled meanwhile (fail_fast, ``run.cancel()``,
``run.cancel_task``, the caller's deadline, its own ``timeout=``) must give
up its call: it is never submitted, ends CANCELLED (or, timed out, is
retried and submitted once), and the run ends. A :class:`Window` holds that
checkpoint open until the test has cancelled, so each test reaches the path
every time (see ``_dask_window``); the cluster is a stand-in :class:`Client`
in this process, which keeps every future it made, so the tests see that
none is left running.

Every test runs the engine on both cores (``dag_core``), bounded by
``trio.fail_after``.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _dask_window import Client, Window, stand_in_as_completed
from trio.testing import MockClock, wait_all_tasks_blocked

import trio_dag
from trio_dag import TaskState
from trio_dag.testing import Recorder, check_run

pytestmark = pytest.mark.usefixtures("dag_core")

BOUND = 30.0


def where(value: int) -> int:
    """The body the stand-in cluster runs: *value* back."""
    return value


async def opens() -> None:
    """The gate: the cluster tasks become ready together as it ends."""


def build(n: int = 4) -> tuple[trio_dag.DAG, list[trio_dag.Handle[int]]]:
    """*n* cluster tasks ``c0``... that become ready together, after a gate."""
    dag = trio_dag.DAG()
    gate = dag.add(opens, name="gate")
    return dag, [dag.add(where, i, after=gate, run_in="cluster", name=f"c{i}") for i in range(n)]


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> Window:
    stand_in_as_completed(monkeypatch)
    return Window().install(monkeypatch)


async def queued(window: Window, n: int) -> tuple[str, list[str]]:
    """Wait until *n* calls are queued, the first one held: its task's name, and
    the others' in the order they queued (Trio's)."""
    await wait_all_tasks_blocked()
    try:
        assert len(window.calls) == n, window.calls
        assert window.held == [window.calls[0][0]]
    except BaseException:
        window.release.set()  # else the held task, shielded, never ends
        raise
    return window.held[0], [name for name, _ in window.calls[1:]]


def number(name: str) -> tuple[int]:
    """The arguments of task *name*'s call: ``c2`` calls ``where(2)``."""
    return (int(name[1:]),)


async def release(window: Window) -> None:
    """Once the cancelled tasks have given up their calls, let the first submit."""
    await wait_all_tasks_blocked()
    window.release.set()


async def test_fail_fast_while_calls_are_queued_submits_none_of_the_others(
    window: Window,
) -> None:
    dag, tasks = build()
    go = trio.Event()

    async def fails() -> None:
        await go.wait()
        raise ValueError("boom")

    bad = dag.add(fails, name="bad")
    recorder = Recorder()
    seen: list[Any] = []
    async with trio.open_nursery() as nursery:
        client = Client(nursery, run=False)  # the held body runs until it is cancelled

        async def stop() -> None:
            seen.extend(await queued(window, 4))
            go.set()
            await release(window)

        nursery.start_soon(stop)
        with trio.fail_after(BOUND):
            report = await trio_dag.run(
                dag,
                executors={"cluster": client},
                on_failure="fail_fast",
                check=False,
                on_event=recorder,
            )
            futures = await client.settled()
        nursery.cancel_scope.cancel()  # the stand-in's loop
    held, others = seen
    assert report.state(bad) is TaskState.FAILED
    assert [report.state(t) for t in tasks] == [TaskState.CANCELLED] * 4
    assert window.given_up() == others
    assert window.submitted() == [held]
    # Only the held task reached the cluster, and its call there was cancelled.
    assert client.called() == [number(held)]
    assert [f.status for f in futures] == ["cancelled"]
    check_run(dag, report, recorder, on_failure="fail_fast")


async def test_run_cancel_while_calls_are_queued_submits_none_of_the_others(
    window: Window,
) -> None:
    dag, tasks = build()
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        client = Client(nursery, run=False)
        with trio.fail_after(BOUND):
            async with trio_dag.open_run(
                dag, executors={"cluster": client}, on_event=recorder
            ) as run:
                held, others = await queued(window, 4)
                run.cancel()
                await release(window)
            futures = await client.settled()
        nursery.cancel_scope.cancel()
    report = run.report
    assert [report.state(t) for t in tasks] == [TaskState.CANCELLED] * 4
    assert window.given_up() == others
    assert client.called() == [number(held)]
    assert [f.status for f in futures] == ["cancelled"]
    check_run(dag, report, recorder, cancelled=True)


@pytest.mark.parametrize("which", [0, -1])
async def test_cancel_task_while_calls_are_queued_leaves_it_out_of_the_batch(
    window: Window, which: int
) -> None:
    # The task cancelled is the first or the last to queue after the held one.
    dag, tasks = build()
    total = dag.add(lambda *xs: sum(xs), *tasks, run_in="inline", name="total")
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        client = Client(nursery)  # the calls run at once
        with trio.fail_after(BOUND):
            async with trio_dag.open_run(
                dag, executors={"cluster": client}, on_event=recorder, check=False
            ) as run:
                _, others = await queued(window, 4)
                cancelled = others[which]
                run.cancel_task(cancelled)
                await release(window)
            futures = await client.settled()
        nursery.cancel_scope.cancel()
    report = run.report
    states = {t.name: report.state(t) for t in tasks}
    assert states.pop(cancelled) is TaskState.CANCELLED
    assert set(states.values()) == {TaskState.SUCCEEDED}
    assert report.state(total) is TaskState.SKIPPED
    assert window.given_up() == [cancelled]
    # The other three went together, in one map; the cancelled one never left.
    kept = [number(name) for name, _ in window.calls if name != cancelled]
    assert [(how, calls) for how, _, calls in client.submissions] == [("map", kept)]
    assert {f.status for f in futures} == {"finished"}
    assert sorted(report[t] for t in tasks if t.name != cancelled) == sorted(k for (k,) in kept)
    check_run(dag, report, recorder, cancelled_tasks=[cancelled])


def test_the_callers_deadline_while_calls_are_queued_submits_none_of_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The deadline passes while the calls are queued: the clock jumps to it
    # once every task waits, and the window is released after.
    stand_in_as_completed(monkeypatch)
    dag, tasks = build()
    recorder = Recorder()

    seen: list[Any] = []

    async def main() -> tuple[trio_dag.RunReport, Client, list[Any], Window]:
        window = Window().install(monkeypatch)
        async with trio.open_nursery() as nursery:
            client = Client(nursery, run=False)
            scope = trio.move_on_after(10)

            async def pass_the_deadline() -> None:
                seen.extend(await queued(window, 4))
                await trio.sleep(20)  # the clock reaches the deadline first
                assert scope.cancelled_caught or scope.cancel_called
                await release(window)

            nursery.start_soon(pass_the_deadline)
            with trio.fail_after(BOUND):
                with scope:
                    async with trio_dag.open_run(
                        dag, executors={"cluster": client}, on_event=recorder
                    ) as run:
                        await trio.sleep_forever()
            assert scope.cancelled_caught
            # The cancelling thread runs on the real clock.
            futures = await client.settled()
            nursery.cancel_scope.cancel()
        return run.report, client, futures, window

    report, client, futures, window = trio.run(main, clock=MockClock(autojump_threshold=0))
    held, others = seen
    assert [report.state(t) for t in tasks] == [TaskState.CANCELLED] * 4
    assert window.given_up() == others
    assert client.called() == [number(held)]
    assert [f.status for f in futures] == ["cancelled"]
    check_run(dag, report, recorder, cancelled=True)


async def later() -> None:
    """A second gate, a moment after the first."""
    await trio.sleep(0.05)


async def test_a_task_timed_out_while_its_call_is_queued_is_retried_and_submitted_once(
    window: Window,
) -> None:
    # c0's call is held; c1 and c2 queue theirs a moment later, and c1's
    # attempt times out before its call is submitted: it gives the call up,
    # and its retry's call goes with the others (c1's argument once). On the
    # real clock: the values are fetched in a worker thread, during which an
    # autojumping clock would jump to the run's bound.
    dag = trio_dag.DAG()
    first = dag.add(opens, name="gate")
    second = dag.add(later, name="later")
    tasks = [
        dag.add(where, 0, after=first, run_in="cluster", name="c0"),
        dag.add(where, 1, after=second, run_in="cluster", name="c1", timeout=0.5, retries=1),
        dag.add(where, 2, after=second, run_in="cluster", name="c2"),
    ]
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        client = Client(nursery)

        async def time_out() -> None:
            while len(window.calls) < 4:  # c0, c1, c2, and c1's second attempt
                await trio.sleep(0.01)
            assert await queued(window, 4) == ("c0", ["c1", "c2", "c1"])
            await release(window)

        nursery.start_soon(time_out)
        with trio.fail_after(BOUND):
            report = await trio_dag.run(
                dag, executors={"cluster": client}, on_event=recorder, check=False
            )
            futures = await client.settled()
        nursery.cancel_scope.cancel()
    assert report.ok
    assert [report[t] for t in tasks] == [0, 1, 2]
    assert report.timing(tasks[1]).attempts == 2
    assert window.given_up() == ["c1"]  # the first attempt's call
    assert window.submitted() == ["c0", "c2", "c1"]
    assert sorted(client.called()) == [(0,), (1,), (2,)]
    assert {f.status for f in futures} == {"finished"}
    check_run(dag, report, recorder)

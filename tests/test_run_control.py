"""Controlling a running run: current_run(), and the Run's per-task methods.

Every test runs the engine on both cores (``dag_core``) on a MockClock, each
run bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

import trio_dag


def _the_run() -> trio_dag.Run:
    return trio_dag.current_run()


async def _the_run_async() -> trio_dag.Run:
    await trio.sleep(0)
    return trio_dag.current_run()


async def _the_run_from_a_child() -> trio_dag.Run:
    found: list[trio_dag.Run] = []

    async def child() -> None:
        await trio.sleep(0)
        found.append(trio_dag.current_run())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
    return found[0]


def _runs_dag() -> tuple[trio_dag.DAG, list[trio_dag.Handle[trio_dag.Run]]]:
    dag = trio_dag.DAG()
    handles = [
        dag.add(_the_run, name="inline", run_in="inline"),
        dag.add(_the_run, name="thread"),
        dag.add(_the_run_async, name="async"),
        dag.add(_the_run_from_a_child, name="child"),
    ]
    return dag, handles


# The two tests below run a thread: on the real clock (an autojumping clock
# would jump past fail_after's deadline while the thread runs).
async def test_current_run_in_open_run_is_the_block_s_run(dag_core: Any) -> None:
    dag, handles = _runs_dag()
    with trio.fail_after(5):
        async with trio_dag.open_run(dag, limit=2) as run:
            pass
    for h in handles:
        assert run.report[h] is run


async def test_current_run_in_run_is_one_run_for_all_its_tasks(dag_core: Any) -> None:
    dag, handles = _runs_dag()
    with trio.fail_after(5):
        report = await trio_dag.run(dag)
        again = await trio_dag.run(dag)
    runs = {id(report[h]) for h in handles}
    assert len(runs) == 1
    (first,) = {report[h] for h in handles[:1]}
    assert isinstance(first, trio_dag.Run)
    assert first.report is report  # the run it belongs to, ended
    assert again[handles[0]] is not first  # each run has its own


def test_current_run_in_run_sync(dag_core: Any) -> None:
    dag, handles = _runs_dag()
    report = trio_dag.run_sync(dag)
    assert {id(report[h]) for h in handles} == {id(report[handles[0]])}
    assert report[handles[0]].report is report


def test_current_run_outside_a_task_raises() -> None:
    with pytest.raises(RuntimeError, match=r"current_run\(\) was called outside a task body"):
        trio_dag.current_run()


async def test_current_run_of_run_has_no_event_stream(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    h = dag.add(_the_run, run_in="inline")
    with trio.fail_after(5):
        report = await trio_dag.run(dag)
    with pytest.raises(RuntimeError, match="open_run"):
        report[h].events()

"""Executors: run_in="process" (trio-parallel) and named executors (run(..., executors=)).

Bodies that run in worker processes live in ``_executor_bodies`` so that the
workers find them by name. Tests with real processes run on the real clock,
each bounded by ``trio.fail_after``; the cancellation tests use a fake
executor driven by the Trio clock, so they are deterministic under MockClock.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
from collections.abc import Callable
from multiprocessing import resource_tracker
from typing import Any

import pytest
import trio
from _executor_bodies import lock, pid, square
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState

# Generous: a worker process starts in well under a second, but the machine is shared.
BOUND = 60.0


def no_worker_left() -> bool:
    return not multiprocessing.active_children() and not _children()


def _children() -> list[int]:
    """This process's child processes, but multiprocessing's resource tracker,
    which the first spawned process starts and which lives as long as we do."""
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    found = []
    for path in os.scandir(f"/proc/{os.getpid()}/task"):
        try:
            with open(os.path.join(path.path, "children")) as f:
                found += [int(pid) for pid in f.read().split()]
        except OSError:
            pass
    return [pid for pid in found if pid != tracker]


async def run_bounded(dag: trio_dag.DAG, **options: Any) -> trio_dag.RunReport:
    with trio.fail_after(BOUND):
        return await trio_dag.run(dag, **options)


# -- run_in="process" ------------------------------------------------------------------


async def test_process_runs_bodies_in_worker_processes_with_args_kwargs_and_outputs() -> None:
    dag = trio_dag.DAG()
    a = dag.add(square, 3, run_in="process")
    b = dag.add(square, a, kwargs={"plus": 1}, run_in="process")
    c = dag.add(pid, run_in="process", after=b)
    report = await run_bounded(dag)
    assert (report[a], report[b]) == (9, 82)
    assert report[c] != os.getpid()
    assert no_worker_left()


async def test_process_workers_are_reused_within_a_run() -> None:
    dag = trio_dag.DAG()
    first = dag.add(pid, run_in="process")
    second = dag.add(pid, run_in="process", after=first)
    report = await run_bounded(dag, limit=1)
    assert report[first] == report[second] != os.getpid()
    assert no_worker_left()


async def test_an_output_that_cannot_be_pickled_fails_that_task_alone() -> None:
    dag = trio_dag.DAG()
    bad = dag.add(lock, run_in="process")
    good = dag.add(square, 2, run_in="process")
    report = await run_bounded(dag, check=False)
    assert report.state(bad) == TaskState.FAILED
    error = report.errors[bad.name]
    assert isinstance(error, TypeError)
    assert "output of lock cannot be pickled" in str(error)
    assert "_thread.lock" in str(error)
    assert report[good] == 4
    assert no_worker_left()


# -- named executors -------------------------------------------------------------------


async def test_a_thread_pool_executor_mapped_by_name() -> None:
    dag = trio_dag.DAG()
    a = dag.add(square, 3, run_in="pool")
    b = dag.add(square, a, kwargs={"plus": 1}, run_in="pool")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        report = await run_bounded(dag, executors={"pool": pool})
    assert (report[a], report[b]) == (9, 82)


async def test_a_process_pool_executor_mapped_by_name() -> None:
    dag = trio_dag.DAG()
    a = dag.add(square, 3, run_in="cpu")
    c = dag.add(pid, run_in="cpu", after=a)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        report = await run_bounded(dag, executors={"cpu": pool})
    assert report[a] == 9
    assert report[c] != os.getpid()


async def test_process_can_be_mapped_to_another_executor() -> None:
    dag = trio_dag.DAG()
    a = dag.add(pid, run_in="process")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        report = await run_bounded(dag, executors={"process": pool})
    assert report[a] == os.getpid()  # a thread of this process, not a worker process


# -- errors before anything starts -----------------------------------------------------


def started_nothing(dag: trio_dag.DAG, **options: Any) -> BaseException:
    """Run *dag*, expecting an error before any task starts; return the error."""
    heard: list[Any] = []
    with pytest.raises(Exception) as info:
        trio_dag.run_sync(dag, on_event=heard.append, **options)
    assert heard == []
    return info.value


def test_a_name_no_executor_answers_to_is_an_error_naming_its_tasks() -> None:
    dag = trio_dag.DAG()
    dag.add(square, 1, name="one", run_in="cluster")
    dag.add(square, 2, name="two", run_in="cluster")
    dag.add(square, 3, name="three", run_in="process")
    error = started_nothing(dag)
    assert isinstance(error, trio_dag.ExecutorError)
    assert error.executor == "cluster"
    assert error.tasks == ("one", "two")
    assert "tasks 'one', 'two'" in str(error) and "executors={'cluster': ...}" in str(error)


def test_an_executor_without_submit_is_a_type_error() -> None:
    dag = trio_dag.DAG()
    dag.add(square, 1, run_in="cluster")
    error = started_nothing(dag, executors={"cluster": object()})
    assert isinstance(error, TypeError)
    assert "'cluster' has no submit method" in str(error)


@pytest.mark.parametrize("executors", [[], {1: object()}, {"thread": object()}])
def test_executors_must_map_names_to_executors(executors: Any) -> None:
    dag = trio_dag.DAG()
    dag.add(square, 1, run_in="process")
    assert isinstance(started_nothing(dag, executors=executors), TypeError)


def local_functions() -> list[Callable[..., Any]]:
    def local(x: int) -> int:
        return x

    return [lambda x: x, local]


@pytest.mark.parametrize("fn", local_functions(), ids=["lambda", "local"])
@pytest.mark.parametrize("run_in", ["process", "pool"])
def test_a_function_that_cannot_be_pickled_is_an_error_naming_its_tasks(
    fn: Callable[..., Any], run_in: str
) -> None:
    dag = trio_dag.DAG()
    dag.add(square, 1, run_in=run_in)
    dag.add(fn, 1, name="bad", run_in=run_in)
    dag.add(fn, 1, name="fine-here")  # not on an executor
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        error = started_nothing(dag, executors={"pool": pool})
    assert isinstance(error, trio_dag.ExecutorError)
    assert error.tasks == ("bad",)
    assert "define it at module level" in str(error)


def test_tasks_left_out_by_targets_need_no_executor() -> None:
    dag = trio_dag.DAG()
    a = dag.add(square, 2, run_in="inline")
    dag.add(square, 1, run_in="cluster")
    report = trio_dag.run_sync(dag, targets=[a])
    assert report[a] == 4


def test_add_refuses_an_async_function_on_an_executor() -> None:
    async def fetch() -> None: ...

    dag = trio_dag.DAG()
    with pytest.raises(ValueError, match=r"task 'fetch-0': run_in='process' .* fetch is async"):
        dag.add(fetch, run_in="process")
    with pytest.raises(ValueError, match="unknown run_in ''"):
        dag.add(square, 1, run_in="")
    assert len(dag) == 0


def test_a_batched_function_pickles_by_name() -> None:
    from _executor_bodies import lengths

    assert pickle.loads(pickle.dumps(lengths)) is lengths


_ = MockClock

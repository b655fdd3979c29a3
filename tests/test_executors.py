"""Executors: run_in="process" (trio-parallel) and named executors (run(..., executors=)).

Bodies that run in worker processes live in ``_executor_bodies`` so that the
workers find them by name. Tests with real processes run on the real clock,
each bounded by ``trio.fail_after``; the cancellation tests use a fake
executor driven by the Trio clock, so they are deterministic under MockClock.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest
import trio
from _executor_bodies import fail, lengths, lock, pid, square, whoami
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
import trio_dag.testing
from trio_dag import TaskState
from trio_dag.events import TaskFinished, TaskRetrying, TaskStarted

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


async def test_arguments_that_cannot_be_pickled_fail_that_task_alone() -> None:
    dag = trio_dag.DAG()
    held = dag.add(lock, run_in="inline")
    bad = dag.add(square, held, run_in="process", name="bad")
    good = dag.add(square, 3, run_in="process")
    report = await run_bounded(dag, check=False)
    assert report.state(bad) == TaskState.FAILED
    error = report.errors["bad"]
    assert isinstance(error, TypeError)
    assert "the arguments of task 'bad' cannot be pickled" in str(error)
    assert report[good] == 9
    assert no_worker_left()


@pytest.mark.parametrize("stop", ["timeout", "run.cancel()", "outer scope"])
async def test_a_stopped_process_task_kills_its_worker_at_once(tmp_path: Path, stop: str) -> None:
    from _executor_bodies import started_then_mark

    started = tmp_path / "started"
    marker = tmp_path / "marker"
    dag = trio_dag.DAG()
    timeout = 1.0 if stop == "timeout" else None
    body = dag.add(
        started_then_mark, str(started), 30.0, str(marker), run_in="process", timeout=timeout
    )
    report = None
    with trio.fail_after(BOUND):
        if stop == "timeout":
            report = await trio_dag.run(dag, check=False)
        elif stop == "run.cancel()":
            async with trio_dag.open_run(dag) as run:
                while not started.exists():
                    await trio.sleep(0.01)
                run.cancel()
            report = run.report
        else:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(partial(trio_dag.run, dag))
                    while not started.exists():
                        await trio.sleep(0.01)
                    scope.cancel()
    if report is not None:
        expected = TaskState.FAILED if stop == "timeout" else TaskState.CANCELLED
        assert report.state(body) == expected
    assert no_worker_left()
    assert not marker.exists()


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


async def test_open_run_raises_on_entering_for_a_missing_executor() -> None:
    dag = trio_dag.DAG()
    dag.add(square, 1, run_in="cluster")
    with pytest.raises(trio_dag.ExecutorError):
        async with trio_dag.open_run(dag):
            pytest.fail("the block ran")  # pragma: no cover


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


# -- a fake executor on the Trio clock -------------------------------------------------


class FakeFuture(concurrent.futures.Future[Any]):
    """A future that counts the calls of its cancel()."""

    def __init__(self) -> None:
        super().__init__()
        self.cancel_calls = 0

    def cancel(self) -> bool:
        self.cancel_calls += 1
        return super().cancel()


class FakeExecutor:
    """Runs each call after *pending* seconds (queued, cancellable) for *running*
    seconds (then no longer cancellable) on the Trio clock, in the test's nursery."""

    def __init__(self, nursery: trio.Nursery, pending: float = 0.0, running: float = 1.0) -> None:
        self.nursery = nursery
        self.pending = pending
        self.running = running
        self.futures: list[FakeFuture] = []
        self.calls: list[tuple[Any, ...]] = []  # the calls that ran: (fn, *args)
        self.now = 0
        self.peak = 0
        self.ended_at: list[float] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> FakeFuture:
        future = FakeFuture()
        self.futures.append(future)
        self.nursery.start_soon(self._work, future, fn, args, kwargs)
        return future

    async def _work(
        self, future: FakeFuture, fn: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        await trio.sleep(self.pending)
        if not future.set_running_or_notify_cancel():
            return
        self.now += 1
        self.peak = max(self.peak, self.now)
        await trio.sleep(self.running)
        self.now -= 1
        self.calls.append((fn, *args))
        self.ended_at.append(trio.current_time())
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)

    @property
    def cancel_calls(self) -> int:
        return sum(f.cancel_calls for f in self.futures)


async def test_a_named_executor_runs_bodies_and_the_run_waits_without_a_thread(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, pending=1.0, running=2.0)
        dag = trio_dag.DAG()
        a = dag.add(square, 3, run_in="fake")
        b = dag.add(square, a, kwargs={"plus": 1}, run_in="fake", name="b")
        report = await trio_dag.run(dag, executors={"fake": fake})
    assert (report[a], report[b]) == (9, 82)
    assert fake.calls == [(square, 3), (square, 9)]
    assert trio.current_time() == 6.0  # two calls of 1 + 2 seconds, nothing more
    assert report.timing(b).start == 3.0


STOPS = ["fail_fast", "timeout", "run.cancel()", "outer scope"]


async def _stopped_run(dag: trio_dag.DAG, stop: str, at: float, fake: FakeExecutor) -> Any:
    """Run *dag* on *fake*, stopped at time *at* in the way *stop* says; the report
    (None when the caller's scope stopped it)."""
    if stop == "run.cancel()":
        async with trio_dag.open_run(dag, executors={"fake": fake}) as run:
            await trio.sleep(at)
            run.cancel()
        return run.report
    if stop == "outer scope":
        with trio.move_on_after(at):
            await trio_dag.run(dag, executors={"fake": fake})
        return None
    on_failure = "fail_fast" if stop == "fail_fast" else "skip"
    return await trio_dag.run(dag, executors={"fake": fake}, on_failure=on_failure, check=False)


async def fail_at(seconds: float) -> None:
    await trio.sleep(seconds)
    raise ValueError("stop")


@pytest.mark.parametrize("stop", STOPS)
@pytest.mark.parametrize("moment", ["pending", "running"])
async def test_a_stopped_task_cancels_its_future_and_does_not_wait_for_it(
    dag_core: Any, autojump_clock: MockClock, stop: str, moment: str
) -> None:
    # The call waits 2 s in the executor's queue, then runs 10 s.
    at = 1.0 if moment == "pending" else 5.0
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, pending=2.0, running=10.0)
        dag = trio_dag.DAG()
        timeout = at if stop == "timeout" else None
        slow = dag.add(square, 3, run_in="fake", name="slow", timeout=timeout)
        if stop == "fail_fast":
            dag.add(fail_at, at)
        report = await _stopped_run(dag, stop, at, fake)
        assert trio.current_time() == at  # the run did not wait for the call
        assert fake.cancel_calls == 1
        if report is not None:
            expected = TaskState.FAILED if stop == "timeout" else TaskState.CANCELLED
            assert report.state(slow) == expected
    # A call still queued never runs; one already running is abandoned: it
    # runs to its end elsewhere, and its result is discarded.
    assert fake.calls == ([] if moment == "pending" else [(square, 3)])
    if report is not None:
        assert report.state(slow) != TaskState.SUCCEEDED


async def test_executor_tasks_count_against_limit_and_uses(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        for i in range(6):
            dag.add(square, i, run_in="fake")
        report = await trio_dag.run(dag, limit=2, executors={"fake": fake})
        assert report.ok and fake.peak == 2 and trio.current_time() == 3.0
        fake.peak = 0
        gpu = trio_dag.DAG()
        for i in range(4):
            gpu.add(square, i, run_in="fake", uses={"gpu": 1})
        report = await trio_dag.run(gpu, resources={"gpu": 2}, executors={"fake": fake})
        assert report.ok and fake.peak == 2


async def test_executor_tasks_are_retried_and_checked_like_any_task(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    recorder = trio_dag.testing.Recorder()
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        bad = dag.add(fail, "no", run_in="fake", retries=2, name="bad")
        dag.add(square, bad, run_in="fake")
        good = dag.add(square, 4, run_in="fake")
        report = await trio_dag.run(dag, executors={"fake": fake}, check=False, on_event=recorder)
    assert report.state(bad) == TaskState.FAILED
    assert str(report.errors["bad"]) == "no"
    assert len(fake.calls) == 3 + 1  # three attempts of bad, one of good
    assert report[good] == 16
    trio_dag.testing.check_run(dag, report, recorder, check=False)


async def test_a_batched_call_is_one_submission(dag_core: Any, autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        words = ["a", "bb", "ccc", "dddd", "eeeee"]
        handles = [dag.add(lengths, w, run_in="fake") for w in words]
        report = await trio_dag.run(dag, executors={"fake": fake})
    assert len(fake.futures) == 1
    assert [report[h][0] for h in handles] == [1, 2, 3, 4, 5]
    assert len({report.batch(h) for h in handles}) == 1


async def test_check_run_counts_a_batched_call_on_an_executor_once(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    recorder = trio_dag.testing.Recorder()
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        for word in ["a", "bb", "ccc", "dddd"]:
            dag.add(lengths, word, run_in="fake")
        report = await trio_dag.run(dag, limit=1, executors={"fake": fake}, on_event=recorder)
    assert len(fake.futures) == 1
    trio_dag.testing.check_run(dag, report, recorder, limit=1)


async def test_a_sync_batched_function_runs_in_a_thread_by_default(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    handles = [dag.add(lengths, w) for w in ["a", "bb"]]
    inline = dag.add(lengths, "ccc", run_in="inline", after=handles)
    report = await trio_dag.run(dag)
    assert [report[h] for h in handles] == [(1, os.getpid()), (2, os.getpid())]
    assert report[inline] == (3, os.getpid())
    assert await lengths(["xy"]) == [(2, os.getpid())]


def test_a_batched_function_refuses_what_does_not_suit_it() -> None:
    dag = trio_dag.DAG()
    with pytest.raises(ValueError, match=r"run_in='async' does not apply to batched lengths"):
        dag.add(lengths, "a", run_in="async")


# -- capacity: tasks wait among the ready ones, not on the executor --------------------


def most_at_once(events: Any, of: Any = None) -> int:
    """The most attempts the events show running at once (of the handles *of*)."""
    running: set[int] = set()
    most = 0
    counted = None if of is None else {h.index for h in of}
    for event in events:
        if counted is not None and event.task.index not in counted:
            continue
        if type(event) is TaskStarted:
            running.add(event.task.index)
            most = max(most, len(running))
        elif type(event) in (TaskRetrying, TaskFinished):
            running.discard(event.task.index)
    return most


def started(events: Any) -> list[str]:
    return [e.task.name for e in events if type(e) is TaskStarted]


async def test_an_executor_given_a_capacity_starts_no_more_of_its_tasks_at_once(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    recorder = trio_dag.testing.Recorder()
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        handles = [dag.add(square, i, run_in="fake") for i in range(6)]
        here = [dag.add(square, i, run_in="inline", name=f"here{i}") for i in range(3)]
        report = await trio_dag.run(dag, executors={"fake": (fake, 2)}, on_event=recorder)
    trio_dag.testing.check_run(dag, report, recorder)
    assert [report[h] for h in handles] == [i * i for i in range(6)]
    assert fake.peak == 2 and most_at_once(recorder, handles) == 2
    assert trio.current_time() == 3.0
    # A task starts when the executor can take it (the wait is not its run
    # time); the others are not held back.
    assert [report.timing(h).start for h in handles] == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert all(report.timing(h).start == 0.0 for h in here)


@pytest.mark.parametrize("policy", ["fifo", "lifo", "priority", "critical_path", "depth_first"])
async def test_tasks_waiting_for_an_executor_start_in_policy_order(
    dag_core: Any, autojump_clock: MockClock, policy: str
) -> None:
    async def start_order(**options: Any) -> list[str]:
        recorder = trio_dag.testing.Recorder()
        async with trio.open_nursery() as nursery:
            fake = FakeExecutor(nursery, running=1.0)
            dag = trio_dag.DAG()
            for i, priority in enumerate([3, 0, 5, 1, 4, 2]):
                mine = {"priority": priority} if policy == "priority" else {}
                first = dag.add(square, i, run_in="fake", name=f"f{i}", **mine)
                if i % 2:
                    mine = {"cost": i} if policy == "critical_path" else {}
                    dag.add(square, first, run_in="inline", name=f"g{i}", **mine)
            executors = {"fake": (fake, options.pop("capacity")) if "capacity" in options else fake}
            await trio_dag.run(
                dag, policy=policy, executors=executors, on_event=recorder, **options
            )
        return [name for name in started(recorder) if name.startswith("f")]

    # The executor's one slot starts its tasks in the order limit=1 starts them.
    assert await start_order(capacity=1) == await start_order(limit=1)


async def test_slots_alone_leave_the_other_tasks_the_fast_loop(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    seen = []

    async def nothing(i: int) -> int:
        engine = trio_dag.current_run()._engine  # type: ignore[attr-defined]
        seen.append((engine.admission.gate, engine.loop.fast))
        return i

    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        on_fake = [dag.add(square, i, run_in="fake") for i in range(3)]
        here = [dag.add(nothing, i) for i in range(3)]
        report = await trio_dag.run(dag, executors={"fake": (fake, 1)})
    assert seen == [(True, True)] * 3
    assert [report[h] for h in on_fake + here] == [0, 1, 4, 0, 1, 2]
    assert trio.current_time() == 3.0 and fake.peak == 1


async def test_a_timeout_counts_from_the_start_not_the_wait_for_the_executor(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        handles = [dag.add(square, i, run_in="fake", timeout=1.5) for i in range(3)]
        report = await trio_dag.run(dag, executors={"fake": (fake, 1)})
    assert report.ok and [report[h] for h in handles] == [0, 1, 4]
    assert trio.current_time() == 3.0


async def test_tasks_on_an_executor_with_a_capacity_retry_and_count_limit_and_uses(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    recorder = trio_dag.testing.Recorder()
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        bad = dag.add(fail, "no", run_in="fake", retries=2, name="bad")
        after_bad = dag.add(square, bad, run_in="fake")
        good = [dag.add(square, i, run_in="fake") for i in range(4)]
        gpu = [dag.add(square, i, run_in="fake", uses={"gpu": 1}) for i in range(3)]
        options: dict[str, Any] = {"limit": 3, "resources": {"gpu": 1}}
        report = await trio_dag.run(
            dag, executors={"fake": (fake, 2)}, check=False, on_event=recorder, **options
        )
    trio_dag.testing.check_run(dag, report, recorder, check=False, **options)
    assert report.state(bad) == TaskState.FAILED
    assert report.state(after_bad) == TaskState.SKIPPED
    assert [report[h] for h in good + gpu] == [0, 1, 4, 9, 0, 1, 4]
    assert len(fake.calls) == 3 + 4 + 3
    # Tasks with uses= go to the executor as they start (they hold their
    # amounts meanwhile, as SPEC's resource order asks): one gpu task at a
    # time beside the two slots.
    assert fake.peak <= 3 and most_at_once(recorder) <= 3


@pytest.mark.parametrize("stop", ["cancel_task", "fail_fast", "run.cancel()"])
async def test_tasks_waiting_for_an_executor_are_cancelled_without_a_submission(
    dag_core: Any, autojump_clock: MockClock, stop: str
) -> None:
    recorder = trio_dag.testing.Recorder()
    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=2.0)
        dag = trio_dag.DAG()
        handles = [dag.add(square, i, run_in="fake", name=f"t{i}") for i in range(4)]
        if stop == "fail_fast":
            dag.add(fail_at, 1.0)
        options: dict[str, Any] = {"on_failure": "fail_fast" if stop == "fail_fast" else "skip"}
        async with trio_dag.open_run(
            dag, executors={"fake": (fake, 1)}, on_event=recorder, check=False, **options
        ) as run:
            await trio.sleep(1.0)
            if stop == "cancel_task":
                run.cancel_task(handles[2])
            elif stop == "run.cancel()":
                run.cancel()
        report = run.report
        ended = trio.current_time()
    assert report is not None
    if stop == "cancel_task":
        trio_dag.testing.check_run(dag, report, recorder, cancelled_tasks=[handles[2]])
        assert [report.state(h) for h in handles] == [
            TaskState.SUCCEEDED,
            TaskState.SUCCEEDED,
            TaskState.CANCELLED,
            TaskState.SUCCEEDED,
        ]
        assert [args for _, *args in fake.calls] == [[0], [1], [3]]
        assert fake.cancel_calls == 0
        return
    trio_dag.testing.check_run(
        dag, report, recorder, check=False, cancelled=stop == "run.cancel()", **options
    )
    # The one running is cancelled; those waiting for the executor never reach it.
    assert [report.state(h) for h in handles] == [TaskState.CANCELLED] * 4
    assert len(fake.futures) == 1 and fake.cancel_calls == 1
    assert ended == 1.0  # the run did not wait for the call it abandoned


async def test_tasks_added_to_a_run_wait_for_the_executor_too(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    recorder = trio_dag.testing.Recorder()

    async def adds(count: int) -> list[trio_dag.Handle[int]]:
        run = trio_dag.current_run()
        return [run.add(square, i, run_in="fake") for i in range(count)]

    async with trio.open_nursery() as nursery:
        fake = FakeExecutor(nursery, running=1.0)
        dag = trio_dag.DAG()
        first = [dag.add(square, i, run_in="fake") for i in range(3)]
        joined = dag.add(adds, 4)
        report = await trio_dag.run(dag, executors={"fake": (fake, 2)}, on_event=recorder)
    trio_dag.testing.check_run(dag, report, recorder)
    assert [report[h] for h in first] == [0, 1, 4] and report[joined] == [0, 1, 4, 9]
    on_fake = [e.task for e in recorder if e.task.index != joined.index]
    assert fake.peak == 2 and most_at_once(recorder, on_fake) == 2
    assert trio.current_time() == 4.0


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        ((object, 0), ValueError, r"executor 'x': its capacity .* an int >= 1, got 0"),
        ((object, True), ValueError, r"an int >= 1, got True"),
        ((object, 2.0), ValueError, r"an int >= 1, got 2.0"),
        ((object,), TypeError, r"executors= entry 'x' is a tuple of 1; give an executor, or"),
        ((object(), 2), TypeError, r"executor 'x' has no submit method"),
    ],
)
def test_an_executors_capacity_is_checked(entry: Any, error: type, message: str) -> None:
    dag = trio_dag.DAG()
    dag.add(square, 1, run_in="x")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    entry = tuple(pool if part is object else part for part in entry)
    try:
        with pytest.raises(error, match=message):
            trio_dag.run_sync(dag, executors={"x": entry})
    finally:
        pool.shutdown()


async def test_a_pool_given_its_capacity_runs_every_task() -> None:
    dag = trio_dag.DAG()
    handles = [dag.add(square, i, run_in="pool") for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        report = await run_bounded(dag, executors={"pool": (pool, 2)})
    assert [report[h] for h in handles] == [i * i for i in range(8)]


def test_the_capacity_of_process_is_trio_parallels_limiter_within_a_trio_run() -> None:
    import trio_parallel

    from trio_dag._executors import executors_of

    assert executors_of({}).capacity("process") is None  # no Trio run to read it in

    async def main() -> list[int | None]:
        limiter = trio_parallel.current_default_worker_limiter()
        found = [executors_of({}).capacity("process")]
        limiter.total_tokens = 3
        found.append(executors_of({}).capacity("process"))
        limiter.total_tokens = math.inf
        found.append(executors_of({}).capacity("process"))
        return found

    assert trio.run(main) == [os.cpu_count() or 1, 3, None]
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        given = executors_of({"process": pool, "pool": pool}, {"pool": 2})
        assert (given.capacity("pool"), given.capacity("process")) == (2, None)
    finally:
        pool.shutdown()


async def test_process_tasks_never_start_more_than_trio_parallels_workers() -> None:
    import trio_parallel

    # The default limiter of this Trio run: trio-parallel's workers at once.
    trio_parallel.current_default_worker_limiter().total_tokens = 2
    recorder = trio_dag.testing.Recorder()
    dag = trio_dag.DAG()
    handles = [
        dag.add(square, i, run_in="process", priority=p, name=f"t{i}")
        for i, p in enumerate([3, 0, 5, 1, 4, 2, 6, 7])
    ]
    report = await run_bounded(dag, policy="priority", on_event=recorder)
    trio_dag.testing.check_run(dag, report, recorder, policy="priority")
    assert [report[h] for h in handles] == [i * i for i in range(8)]
    assert most_at_once(recorder) <= 2
    assert started(recorder) == ["t7", "t6", "t2", "t4", "t0", "t5", "t3", "t1"]
    assert no_worker_left()


@st.composite
def capacity_plans(draw: st.DrawFn) -> dict[str, Any]:
    """Random DAGs of tasks on a fake executor given a capacity, beside others."""
    n = draw(st.integers(1, 10))
    tasks = []
    for i in range(n):
        tasks.append(
            {
                "deps": sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else [],
                "where": draw(st.sampled_from(["fake", "fake", "inline"])),
                "gpu": draw(st.integers(0, 4)) == 0,
                "fails": draw(st.integers(0, 5)) == 0,
                "retries": draw(st.integers(0, 1)),
                "priority": draw(st.integers(0, 3)),
            }
        )
    return {
        "tasks": tasks,
        "capacity": draw(st.integers(1, 3)),
        "limit": draw(st.sampled_from([None, 1, 2, 4])),
        "policy": draw(st.sampled_from(["fifo", "lifo", "priority", "critical_path"])),
        "on_failure": draw(st.sampled_from(["skip", "fail_fast"])),
        "strategy": draw(st.sampled_from(["immediate", "waves", trio_dag.Threshold(2)])),
    }


@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=capacity_plans())
def test_runs_on_an_executor_with_a_capacity_keep_every_rule(
    dag_core: Any, plan: dict[str, Any]
) -> None:
    options: dict[str, Any] = {
        "resources": {"gpu": 1},
        **{k: plan[k] for k in ("limit", "policy", "on_failure", "strategy")},
    }

    async def main() -> tuple[trio_dag.DAG, Any, Any, list[Any]]:
        recorder = trio_dag.testing.Recorder()
        dag = trio_dag.DAG()
        handles: list[Any] = []
        gated = []
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                fake = FakeExecutor(nursery, running=1.0)
                for i, t in enumerate(plan["tasks"]):
                    fn: Any = fail if t["fails"] else square
                    h = dag.add(
                        fn,
                        f"t{i}" if t["fails"] else i,
                        after=[handles[d] for d in t["deps"]],
                        run_in=t["where"],
                        uses={"gpu": 1} if t["gpu"] else None,
                        retries=t["retries"],
                        priority=t["priority"],
                        name=f"t{i}",
                    )
                    handles.append(h)
                    if t["where"] == "fake" and not t["gpu"]:
                        gated.append(h)
                report = await trio_dag.run(
                    dag,
                    executors={"fake": (fake, plan["capacity"])},
                    on_event=recorder,
                    check=False,
                    **options,
                )
        return dag, report, recorder, gated

    dag, report, recorder, gated = trio.run(main, clock=MockClock(autojump_threshold=0))
    trio_dag.testing.check_run(dag, report, recorder, check=False, **options)
    assert most_at_once(recorder, gated) <= plan["capacity"]


# -- process faults (real clock) -------------------------------------------------------


async def _kill_when_written(pid_file: Any) -> int:
    """Wait for a body to write its worker's pid to *pid_file*; SIGKILL that worker."""
    while not pid_file.exists() or not pid_file.read_text():
        await trio.sleep(0.01)
    victim = int(pid_file.read_text())
    os.kill(victim, 9)
    return victim


@pytest.mark.parametrize("retries", [0, 1])
async def test_a_worker_killed_mid_task(tmp_path: Any, retries: int) -> None:
    from _executor_bodies import pid_then_wait

    pid_file = tmp_path / "pid"
    dag = trio_dag.DAG()
    victim = dag.add(pid_then_wait, str(pid_file), 30.0, run_in="process", retries=retries)
    other = dag.add(square, 5, run_in="process")
    after = dag.add(square, other, run_in="inline")
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            killed: list[int] = []

            async def kill() -> None:
                killed.append(await _kill_when_written(pid_file))

            nursery.start_soon(kill)
            report = await trio_dag.run(dag, check=False, limit=2)
    assert (report[other], report[after]) == (25, 625)
    if retries:
        assert report.ok
        assert report[victim] not in (killed[0], os.getpid())
    else:
        assert report.state(victim) == TaskState.FAILED
        error = report.errors[victim.name]
        assert isinstance(error, trio_dag.WorkerDiedError)
        assert error.exitcode == -9
        assert "died (killed by SIGKILL)" in str(error)
    assert no_worker_left()


async def test_fail_fast_kills_the_worker_before_its_body_ends(tmp_path: Any) -> None:
    from _executor_bodies import started_then_mark

    started = tmp_path / "started"
    marker = tmp_path / "marker"
    seconds = 1.0

    async def fail_once_started() -> None:
        while not started.exists():
            await trio.sleep(0.01)
        raise ValueError("stop the run")

    dag = trio_dag.DAG()
    body = dag.add(started_then_mark, str(started), seconds, str(marker), run_in="process")
    dag.add(fail_once_started)
    with trio.fail_after(BOUND):
        report = await trio_dag.run(dag, on_failure="fail_fast", check=False)
        began = trio.current_time()
        assert report.state(body) == TaskState.CANCELLED
        assert no_worker_left()
        # Past the time the body would have written the marker, had it lived.
        await trio.sleep(seconds + 0.5)
    assert not marker.exists()
    assert trio.current_time() - began < seconds + 1.0 + 0.5


async def test_a_batched_function_on_process_runs_each_batch_in_one_call() -> None:
    dag = trio_dag.DAG()
    handles = [dag.add(lengths, w, run_in="process") for w in ["a", "bb", "ccc"]]
    report = await run_bounded(dag)
    assert [report[h][0] for h in handles] == [1, 2, 3]
    pids = {report[h][1] for h in handles}
    assert len(pids) == 1 and os.getpid() not in pids
    assert no_worker_left()


async def test_current_task_is_not_available_in_a_worker_process() -> None:
    dag = trio_dag.DAG()
    there = dag.add(whoami, run_in="process")
    here = dag.add(whoami, name="here")
    report = await run_bounded(dag)
    assert report[there].startswith("no task: ")
    assert report[here] == "here"


def test_run_sync_with_process() -> None:
    dag = trio_dag.DAG()
    a = dag.add(square, 4, run_in="process")
    assert trio_dag.run_sync(dag)[a] == 16
    assert no_worker_left()
    assert math.isfinite(BOUND)


# -- the guide's programs --------------------------------------------------------------

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide" / "executors.md"
PROGRAM = re.compile(r"```python\n(?P<code>.*?)```\n.*?```text\n(?P<output>.*?)```", re.DOTALL)


def test_the_guides_programs_run_as_scripts_and_print_what_it_shows(tmp_path: Path) -> None:
    # The page's own check runs its blocks in one namespace, where the
    # programs' `if __name__ == "__main__":` is false; here each runs as the
    # script a reader saves, with its worker processes.
    programs = [
        (m["code"], m["output"])
        for m in PROGRAM.finditer(GUIDE.read_text(encoding="utf-8"))
        if 'if __name__ == "__main__":' in m["code"]
    ]
    assert len(programs) >= 2
    for code, output in programs:
        script = tmp_path / "program.py"
        script.write_text(code, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(GUIDE.parent.parent.parent)}
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BOUND,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == output

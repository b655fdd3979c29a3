"""Dask distributed as an executor: a LocalCluster of 2 worker processes runs task bodies.

The cluster is real (``LocalCluster(n_workers=2, processes=True)`` on
127.0.0.1, no dashboard), started once for the module and closed by its
fixture; its scheduler is told ``allowed-failures=0``, so a task whose worker
dies fails at once instead of being run again by Dask itself (which it
otherwise does up to 3 times): what trio_dag's ``retries=`` does about it is
then what the tests see. The faults are real too: a worker process killed by
SIGKILL while it runs a task, and the client's connection to the scheduler
lost in the middle of a run (on a cluster of its own, as the fixture's client
must go on working). Real clock; every run is bounded by ``trio.fail_after``.

The functions sent to the cluster are defined at module level: the workers
import them by name from this module (the pytest process's ``sys.path``
goes to the worker processes it spawns).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trio
from _dask_window import Window
from trio.testing import wait_all_tasks_blocked

import trio_dag
from trio_dag import TaskState
from trio_dag.testing import Recorder, check_run

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

HERE = str(Path(__file__).resolve().parent)
# How long a run may take before the test fails: Dask's round trips take
# milliseconds, a dead worker is noticed within a second or two.
BOUND = 30.0
# Without a dashboard the scheduler still serves its health routes over HTTP,
# by default on port 8787, and warns (an error here) when another cluster on
# the machine has it: any free port instead.
NO_FIXED_PORT = {"dashboard_address": ":0"}


def local_cluster(workers: int) -> Any:
    """A LocalCluster of *workers* single-threaded worker processes on 127.0.0.1,
    whose scheduler lets no task be run again after its worker dies."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs=NO_FIXED_PORT,
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A LocalCluster of 2 single-threaded worker processes, closed at the module's end."""
    # Dask logs a killed worker and a lost connection as errors; the tests
    # check what the run says about them instead.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    local = local_cluster(2)
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    """A client of the module's cluster, once both of its workers are up."""
    with distributed.Client(cluster) as client:
        # A worker killed by the test before is restarted by its nanny.
        client.wait_for_workers(2, timeout=BOUND)
        yield client


def where(value: int, *after: object) -> tuple[int, int]:
    """*value* and the pid of the process that ran this (*after* is not used)."""
    return value, os.getpid()


def add(*values: tuple[int, int]) -> int:
    """The sum of the values of :func:`where`'s pairs."""
    return sum(value for value, _ in values)


@trio_dag.batched(max_size=8)
def squares(items: list[int]) -> list[tuple[int, int]]:
    """Each item squared, with the pid of the process that ran the batch."""
    return [(item * item, os.getpid()) for item in items]


def hold_once(folder: str, value: int) -> int:
    """On the first attempt: write this process's pid to *folder*/pid and sleep a minute
    (the test kills the process); on any later attempt, return *value* at once."""
    try:
        Path(folder, "attempted").touch(exist_ok=False)
    except FileExistsError:
        return value
    Path(folder, "pid.tmp").write_text(str(os.getpid()))
    Path(folder, "pid.tmp").rename(Path(folder, "pid"))  # whole, for the test to read
    time.sleep(60)
    return value


async def started(folder: Path) -> int:
    """The pid :func:`hold_once` wrote once it runs."""
    while not (folder / "pid").exists():
        await trio.sleep(0.02)
    return int((folder / "pid").read_text())


async def kill_when_started(folder: Path, killed: trio.Event, client: Any) -> None:
    """SIGKILL the worker process that runs :func:`hold_once`, once it does; set *killed*
    once the scheduler knows it is gone."""
    pid = await started(folder)
    (address,) = [a for a, p in client.run(os.getpid).items() if p == pid]
    os.kill(pid, signal.SIGKILL)
    while address in (await trio.to_thread.run_sync(client.scheduler_info))["workers"]:
        await trio.sleep(0.02)
    killed.set()


def after_the_kill(dag: trio_dag.DAG, killed: trio.Event) -> list[trio_dag.Handle[Any]]:
    """Four cluster tasks that start once the worker was killed, and a local one that runs
    meanwhile.

    Started before, they could be queued on the worker that dies: Dask
    fails every task it gave to a dead worker, not only the running one (with
    ``allowed-failures=0``).
    """
    gate = dag.add(killed.wait, name="gate")
    return [dag.add(where, i, gate, run_in="cluster", name=f"after{i}") for i in range(4)]


def worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


def build_sums() -> tuple[trio_dag.DAG, list[trio_dag.Handle[Any]], trio_dag.Handle[int]]:
    """Eight cluster tasks, a batched function on the cluster, and a local sum of them."""
    dag = trio_dag.DAG()
    pairs = [dag.add(where, i, run_in="cluster", name=f"where{i}") for i in range(8)]
    squared = [dag.add(squares, i, run_in="cluster", name=f"square{i}") for i in range(8)]
    total = dag.add(add, *pairs, *squared, name="total")  # a sync body, in a local thread
    return dag, [*pairs, *squared], total


async def test_a_dag_runs_its_bodies_on_the_cluster(client: Any) -> None:
    dag, remote, total = build_sums()
    with trio.fail_after(BOUND):
        report = await trio_dag.run(dag, executors={"cluster": client})
    assert report.outcome(total).unwrap() == sum(range(8)) + sum(i * i for i in range(8))
    pids = {report.outcome(task).unwrap()[1] for task in remote}
    assert pids <= worker_pids(client)
    assert os.getpid() not in pids
    # Each batch is one submission: 8 items of max_size=8 in at most 8 calls.
    assert 1 <= len({report.batch(task) for task in remote[8:]}) <= 8


async def test_the_same_dag_runs_locally_with_another_executor() -> None:
    dag, remote, total = build_sums()
    with ThreadPoolExecutor(2) as pool, trio.fail_after(BOUND):
        report = await trio_dag.run(dag, executors={"cluster": pool})
    assert report.outcome(total).unwrap() == sum(range(8)) + sum(i * i for i in range(8))
    assert {report.outcome(task).unwrap()[1] for task in remote} == {os.getpid()}


async def test_a_task_whose_worker_is_killed_is_retried(client: Any, tmp_path: Path) -> None:
    dag = trio_dag.DAG()
    killed = trio.Event()
    held = dag.add(hold_once, str(tmp_path), 7, run_in="cluster", retries=1)
    others = after_the_kill(dag, killed)
    after = dag.add(add, (7, 0), *others)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_when_started, tmp_path, killed, client)
            report = await trio_dag.run(dag, executors={"cluster": client})
            nursery.cancel_scope.cancel()  # the fault's helper, if it still waits
    assert report.outcome(held).unwrap() == 7
    assert report.timing(held).attempts == 2
    assert report.outcome(after).unwrap() == 7 + sum(range(4))


async def test_without_retries_a_killed_worker_fails_its_task_and_says_so(
    client: Any, tmp_path: Path
) -> None:
    dag = trio_dag.DAG()
    held = dag.add(hold_once, str(tmp_path), 7, run_in="cluster", name="held")
    downstream = dag.add(add, held, name="downstream")
    killed = trio.Event()
    others = after_the_kill(dag, killed)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_when_started, tmp_path, killed, client)
            report = await trio_dag.run(dag, executors={"cluster": client}, check=False)
            nursery.cancel_scope.cancel()  # the fault's helper, if it still waits
    assert report.state(held) is TaskState.FAILED
    error = report.errors["held"]
    assert isinstance(error, distributed.KilledWorker)
    assert "workers died while running it" in str(error)
    assert report.state(downstream) is TaskState.SKIPPED
    assert [report.outcome(task).unwrap()[0] for task in others] == list(range(4))


async def test_a_lost_scheduler_connection_ends_the_run_and_says_so(tmp_path: Path) -> None:
    # A cluster of its own: this one's client is cut off from its scheduler.
    own = local_cluster(1)
    try:
        with distributed.Client(own) as client:
            dag = trio_dag.DAG()
            held = dag.add(hold_once, str(tmp_path), 7, run_in="cluster", name="held")
            downstream = dag.add(add, held, name="downstream")
            local = dag.add(trio.sleep, 0.2, name="local")

            async def cut_when_started() -> None:
                await started(tmp_path)
                # What a network failure or a dead scheduler does to the client.
                client.loop.add_callback(client.scheduler_comm.comm.abort)

            with trio.fail_after(BOUND):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cut_when_started)
                    report = await trio_dag.run(dag, executors={"cluster": client}, check=False)
                    nursery.cancel_scope.cancel()  # the fault's helper, if it still waits
    finally:
        own.close()
    assert report.state(held) is TaskState.FAILED
    assert "lost the connection to the scheduler" in str(report.errors["held"])
    assert report.state(downstream) is TaskState.SKIPPED
    assert report.state(local) is TaskState.SUCCEEDED
    assert len(report.failed) + len(report.skipped) + len(report.succeeded) == len(dag)


def count_call(folder: str) -> int:
    """Append a line to *folder*/calls; how many lines it has then. Under an
    exclusive lock of the file: two workers appending and reading at once
    could otherwise both see the other's line."""
    import fcntl

    with open(Path(folder, "calls"), "a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.write("call\n")
        file.flush()
        file.seek(0)
        return len(file.read().splitlines())


def a_lock() -> Any:
    """An output that cannot be pickled."""
    import threading

    return threading.Lock()


def sleep_then_mark(folder: str) -> None:
    """Sleep 10 s, then write *folder*/marker."""
    time.sleep(10)
    Path(folder, "marker").touch()


async def test_tasks_of_equal_arguments_each_run(client: Any, tmp_path: Path) -> None:
    # Dask's own default (pure=True) would run one call for both.
    dag = trio_dag.DAG()
    calls = [dag.add(count_call, str(tmp_path), run_in="cluster") for _ in range(2)]
    with trio.fail_after(BOUND):
        report = await trio_dag.run(dag, executors={"cluster": client})
    assert sorted(report[task] for task in calls) == [1, 2]


def keywords(value: int, *, key: str, retries: int) -> tuple[int, str, int]:
    """Its arguments back: keywords that Client.submit has parameters of its own for."""
    return value, key, retries


async def test_keyword_arguments_reach_the_body_not_dask(client: Any) -> None:
    dag = trio_dag.DAG()
    task = dag.add(keywords, 1, kwargs={"key": "k", "retries": 5}, run_in="cluster")
    with trio.fail_after(BOUND):
        report = await trio_dag.run(dag, executors={"cluster": client})
    assert report[task] == (1, "k", 5)


async def test_an_output_that_cannot_be_pickled_fails_its_task(client: Any) -> None:
    dag = trio_dag.DAG()
    lock = dag.add(a_lock, run_in="cluster", name="lock")
    fine = dag.add(where, 1, run_in="cluster")
    with trio.fail_after(BOUND):
        report = await trio_dag.run(dag, executors={"cluster": client}, check=False)
    assert report.state(lock) is TaskState.FAILED
    assert "pickle" in str(report.errors["lock"]).lower()
    assert report[fine][0] == 1


async def test_fail_fast_ends_the_run_without_waiting_for_the_cluster(
    client: Any, tmp_path: Path
) -> None:
    async def fail_soon() -> None:
        await trio.sleep(0.3)
        raise ValueError("boom")

    dag = trio_dag.DAG()
    held = dag.add(sleep_then_mark, str(tmp_path), run_in="cluster")
    dag.add(fail_soon)
    with trio.fail_after(BOUND):
        report = await trio_dag.run(
            dag, executors={"cluster": client}, on_failure="fail_fast", check=False
        )
    assert report.state(held) is TaskState.CANCELLED
    # The body on the worker is abandoned, not waited for (Dask cannot stop it).
    assert not (tmp_path / "marker").exists()


async def test_a_killed_scheduler_ends_the_run_and_says_so(tmp_path: Path) -> None:
    # The scheduler is a process of its own (as on a real cluster), killed by
    # SIGKILL mid-run; its worker is stopped by the test afterwards.
    info = tmp_path / "scheduler.json"
    python = [sys.executable, "-m"]
    # Both import this module: the scheduler to read the tasks, the worker to run them.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, *sys.path])}
    scheduler = subprocess.Popen(
        [
            *python,
            "distributed.cli.dask_scheduler",
            "--scheduler-file",
            str(info),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            ":0",
            "--no-show",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    worker = None
    try:
        with trio.fail_after(BOUND):
            while not info.exists():
                await trio.sleep(0.05)
            worker = subprocess.Popen(
                [
                    *python,
                    "distributed.cli.dask_worker",
                    "--scheduler-file",
                    str(info),
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            client = await trio.to_thread.run_sync(
                lambda: distributed.Client(scheduler_file=str(info), timeout=5)
            )
        try:
            with trio.fail_after(BOUND):
                await trio.to_thread.run_sync(lambda: client.wait_for_workers(1, timeout=BOUND))
                dag = trio_dag.DAG()
                held = dag.add(hold_once, str(tmp_path), 7, run_in="cluster", name="held")
                downstream = dag.add(add, held, name="downstream")
                local = dag.add(trio.sleep, 0.2, name="local")

                async def kill_when_started() -> None:
                    await started(tmp_path)
                    scheduler.kill()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(kill_when_started)
                    report = await trio_dag.run(dag, executors={"cluster": client}, check=False)
                    nursery.cancel_scope.cancel()  # the fault's helper, if it still waits
        finally:
            await trio.to_thread.run_sync(client.close)
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.kill()
                process.wait()
    assert report.state(held) is TaskState.FAILED
    assert "lost the connection to the scheduler" in str(report.errors["held"])
    assert report.state(downstream) is TaskState.SKIPPED
    assert report.state(local) is TaskState.SUCCEEDED


class CountingClient(distributed.Client):  # type: ignore[misc]
    """A client that records how its tasks were submitted: the size of each ``map``, and
    how many ``submit`` calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.maps: list[int] = []
        self.submits = 0

    def map(self, func: Any, *iterables: Any, **kwargs: Any) -> Any:
        futures = super().map(func, *iterables, **kwargs)
        self.maps.append(len(futures))
        return futures

    def submit(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        self.submits += 1
        return super().submit(func, *args, **kwargs)


@pytest.fixture
def counting_client(cluster: Any) -> Iterator[CountingClient]:
    """A :class:`CountingClient` of the module's cluster, once both of its workers are up."""
    with CountingClient(cluster) as client:
        client.wait_for_workers(2, timeout=BOUND)
        yield client


async def test_tasks_ready_together_are_submitted_together_each_its_own_call(
    counting_client: CountingClient, tmp_path: Path
) -> None:
    # Sixteen tasks ready at once: ten of one function with equal arguments,
    # five of another, and one with keyword arguments (a call of its own).
    dag = trio_dag.DAG()
    calls = [dag.add(count_call, str(tmp_path), run_in="cluster") for _ in range(10)]
    pairs = [dag.add(where, i, run_in="cluster") for i in range(5)]
    named = dag.add(keywords, 1, kwargs={"key": "k", "retries": 5}, run_in="cluster")
    with trio.fail_after(BOUND):
        report = await trio_dag.run(dag, executors={"cluster": counting_client})
    # Each task is a call of its own (pure=False), also inside one map.
    assert sorted(report[task] for task in calls) == list(range(1, 11))
    assert [report[task][0] for task in pairs] == list(range(5))
    assert report[named] == (1, "k", 5)
    assert sum(counting_client.maps) + counting_client.submits == 16
    # Fewer messages to the scheduler than tasks.
    assert len(counting_client.maps) + counting_client.submits < 16


async def test_an_argument_that_cannot_be_pickled_fails_only_its_task(client: Any) -> None:
    import threading

    dag = trio_dag.DAG()
    fine = [dag.add(where, i, run_in="cluster") for i in range(4)]
    # Submitted together with the others, in one map that cannot be sent.
    lock = dag.add(where, threading.Lock(), run_in="cluster", name="lock")
    with trio.fail_after(BOUND):
        report = await trio_dag.run(dag, executors={"cluster": client}, check=False)
    assert report.state(lock) is TaskState.FAILED
    assert "serialize" in str(report.errors["lock"])
    assert [report[task][0] for task in fine] == list(range(4))


def fail_now(*after: object) -> None:
    """Fail at once (*after* is not used)."""
    raise ValueError("boom")


async def test_fail_fast_as_tasks_are_being_submitted_ends_every_task(client: Any) -> None:
    # The failing task and the cluster tasks become ready together: fail_fast
    # cancels tasks still queued for submission as well as submitted ones,
    # whichever Trio runs first (it picks the order at random: a few runs).
    for _ in range(5):
        dag = trio_dag.DAG()
        gate = dag.add(trio.sleep, 0, name="gate")
        held = [dag.add(where, i, gate, run_in="cluster") for i in range(8)]
        fails = dag.add(fail_now, gate, run_in="inline")
        with trio.fail_after(BOUND):
            report = await trio_dag.run(
                dag, executors={"cluster": client}, on_failure="fail_fast", check=False
            )
        assert report.state(fails) is TaskState.FAILED
        assert {report.state(task) for task in held} == {TaskState.CANCELLED}


def mark(folder: str, value: int) -> int:
    """Write *folder*/ran<value>; *value* back."""
    Path(folder, f"ran{value}").touch()
    return value


async def opens() -> None:
    """A gate: the tasks after it become ready together."""


async def test_a_task_cancelled_while_its_call_is_queued_never_reaches_the_cluster(
    counting_client: CountingClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four tasks become ready together; the first call's wait for the others
    # is held open (see _dask_window) while one of the others is cancelled:
    # it gives up its call, and the three others go in one map.
    window = Window().install(monkeypatch)
    dag = trio_dag.DAG()
    gate = dag.add(opens, name="gate")
    tasks = [
        dag.add(mark, str(tmp_path), i, after=gate, run_in="cluster", name=f"m{i}")
        for i in range(4)
    ]
    recorder = Recorder()
    with trio.fail_after(BOUND):
        async with trio_dag.open_run(
            dag, executors={"cluster": counting_client}, on_event=recorder, check=False
        ) as run:
            await wait_all_tasks_blocked()
            try:
                assert len(window.calls) == 4 and window.held == [window.calls[0][0]]
                cancelled = window.calls[-1][0]
                run.cancel_task(cancelled)
                await wait_all_tasks_blocked()
            finally:
                window.release.set()  # else the held task, shielded, never ends
    report = run.report
    assert window.given_up() == [cancelled]
    states = {t.name: report.state(t) for t in tasks}
    assert states.pop(cancelled) is TaskState.CANCELLED
    assert set(states.values()) == {TaskState.SUCCEEDED}
    assert counting_client.maps == [3] and counting_client.submits == 0
    ran = {p.name for p in tmp_path.iterdir()}
    assert ran == {f"ran{name[1:]}" for name in states}
    check_run(dag, report, recorder, cancelled_tasks=[cancelled])

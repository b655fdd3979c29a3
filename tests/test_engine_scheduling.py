"""What starts when: limits, resources, policies and strategies (SPEC section 3).

Every test runs the engine on both cores (``dag_core``) on a MockClock.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _engine_probe import Probe, add_nap
from trio.testing import MockClock

import trio_dag
import trio_dag.testing
from trio_dag import TaskState
from trio_dag.events import TaskStarted

# -- limit -------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3])
async def test_limit_is_reached_and_never_exceeded(
    dag_core: Any, autojump_clock: MockClock, limit: int
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    roots = [add_nap(dag, probe, f"r{i}", 1 + i % 3) for i in range(8)]
    for i in range(4):
        add_nap(dag, probe, f"c{i}", 2, roots[i], roots[-1 - i])
    report = await trio_dag.run(dag, limit=limit)
    assert report.ok
    assert probe.peak == report.stats.peak_concurrency == limit
    assert sum(1 for h in roots if probe.start(h.name) == 0) == limit
    assert probe.running == set()


async def test_no_limit_starts_every_ready_task_at_once(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    roots = [add_nap(dag, probe, f"r{i}", 1) for i in range(20)]
    add_nap(dag, probe, "last", 1, *roots)
    report = await trio_dag.run(dag)
    assert [probe.start(h.name) for h in roots] == [0] * 20
    assert probe.peak == 20
    assert report.stats.makespan == 2


async def test_shared_capacity_limiter_counts_outside_holders(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    limiter = trio.CapacityLimiter(2)
    probe = Probe()
    dag = trio_dag.DAG()
    for i in range(4):
        add_nap(dag, probe, f"t{i}", 1)

    async def outside(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with limiter:
            task_status.started()
            await trio.sleep(3)

    async with trio.open_nursery() as nursery:
        await nursery.start(outside)
        report = await trio_dag.run(dag, limit=limiter)
    assert probe.peak == 1  # one token was held outside until t=3
    assert sorted(probe.start(f"t{i}") for i in range(4)) == [0, 1, 2, 3]
    assert report.ok
    assert limiter.borrowed_tokens == 0


async def test_capacity_limiter_shared_by_two_runs(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    limiter = trio.CapacityLimiter(3)
    probe = Probe()
    dags = []
    for prefix in "xy":
        dag = trio_dag.DAG()
        for i in range(5):
            add_nap(dag, probe, f"{prefix}{i}", 1 + i % 2)
        dags.append(dag)
    reports: list[trio_dag.RunReport] = []

    async def one(dag: trio_dag.DAG) -> None:
        reports.append(await trio_dag.run(dag, limit=limiter))

    async with trio.open_nursery() as nursery:
        for dag in dags:
            nursery.start_soon(one, dag)
    assert probe.peak == 3
    assert all(r.ok for r in reports)
    assert limiter.borrowed_tokens == 0


# -- resources ---------------------------------------------------------------------


async def test_resources_are_reached_and_never_exceeded(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    amounts = [1, 2, 3, 1, 1, 2, 0.5, 2.5, 1, 3]
    for i, amount in enumerate(amounts):
        add_nap(dag, probe, f"t{i}", 1 + i % 3, uses={"gpu": amount, "ram": 1})
    report = await trio_dag.run(dag, resources={"gpu": 3, "ram": 2.5})
    assert report.ok
    assert probe.peak_use == {"gpu": 3, "ram": 2}
    assert probe.running == set()


async def test_resources_and_limit_together(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    for i in range(6):
        add_nap(dag, probe, f"g{i}", 2, uses={"gpu": 1})
    for i in range(6):
        add_nap(dag, probe, f"c{i}", 1)
    report = await trio_dag.run(dag, limit=3, resources={"gpu": 2})
    assert report.ok
    assert probe.peak == 3
    assert probe.peak_use == {"gpu": 2}


@pytest.mark.parametrize(
    ("uses", "capacity"), [({"gpu": 1}, None), ({"gpu": 3}, 2.0), ({"cpu": 1, "gpu": 2.5}, 2.0)]
)
async def test_resource_error_before_anything_starts(
    dag_core: Any, autojump_clock: MockClock, uses: dict[str, float], capacity: float | None
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "fine", 1)
    add_nap(dag, probe, "train", 1, uses=uses)
    resources = {"cpu": 4} if capacity is None else {"cpu": 4, "gpu": capacity}
    with pytest.raises(trio_dag.ResourceError, match="gpu") as info:
        await trio_dag.run(dag, resources=resources)
    assert (info.value.task, info.value.resource) == ("train", "gpu")
    assert info.value.capacity == capacity
    with pytest.raises(trio_dag.ResourceError):
        async with trio_dag.open_run(dag, resources=resources):
            raise AssertionError("the block must not run")  # pragma: no cover
    assert probe.started == []


async def test_task_waiting_for_a_resource_holds_back_no_other(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "hold-a", 10, uses={"A": 1})
    add_nap(dag, probe, "big-a", 1, uses={"A": 2})  # first in line, does not fit
    add_nap(dag, probe, "only-b", 1, uses={"B": 1})
    add_nap(dag, probe, "nothing", 1)
    await trio_dag.run(dag, limit=3, resources={"A": 2, "B": 1})
    assert probe.start("only-b") == probe.start("nothing") == 0
    assert probe.start("big-a") == 10


async def test_task_waiting_for_a_resource_is_not_starved(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "hold-a", 10, uses={"A": 1})
    add_nap(dag, probe, "big-a", 2, uses={"A": 2})
    for i in range(3):
        add_nap(dag, probe, f"small-a{i}", 1, uses={"A": 1})  # would fit at once
    gate = add_nap(dag, probe, "gate", 4)
    add_nap(dag, probe, "late-a", 1, gate, uses={"A": 1})  # ready at t=4
    await trio_dag.run(dag, resources={"A": 2})
    assert probe.start("big-a") == 10
    assert all(probe.start(f"small-a{i}") >= 12 for i in range(3))
    assert probe.start("late-a") >= 12
    assert probe.peak_use == {"A": 2}


@pytest.mark.parametrize("amount", [1, 2])
async def test_waiting_tasks_queue_in_policy_order(
    dag_core: Any, autojump_clock: MockClock, amount: int
) -> None:
    # SPEC: "Ready tasks are considered in policy order". urgent becomes ready
    # after big-a began to wait for A, but comes first under priority: it
    # starts as soon as what it needs is free, ahead of big-a.
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "hold-a", 10, uses={"A": 1})
    add_nap(dag, probe, "big-a", 2, uses={"A": 2})
    gate = add_nap(dag, probe, "gate", 4)
    add_nap(dag, probe, "urgent", 1, gate, uses={"A": amount}, priority=5)
    await trio_dag.run(dag, resources={"A": 2}, policy="priority")
    if amount == 1:
        assert probe.start("urgent") == 4  # fits beside hold-a
        assert probe.start("big-a") == 10
    else:
        assert probe.start("urgent") == 10  # waits, but ahead of big-a
        assert probe.start("big-a") == 11
    assert probe.peak_use == {"A": 2}


async def test_waiting_task_sets_aside_only_the_resources_it_waits_for(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # SPEC: "one that does not fit sets aside the free amounts of the resources
    # it waits for ... a task waiting for resource A never holds back one that
    # needs only B". big-ab fits on B and waits only for A.
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "hold-a", 10, uses={"A": 1})
    add_nap(dag, probe, "big-ab", 1, uses={"A": 2, "B": 1})
    add_nap(dag, probe, "all-b", 1, uses={"B": 2})
    await trio_dag.run(dag, resources={"A": 2, "B": 2})
    assert probe.start("all-b") == 0
    assert probe.start("big-ab") == 10


async def test_task_woken_for_one_resource_still_waits_behind_earlier_waiters_of_another(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # big-a waits for A (1 of 2 free) and sets that 1 aside. later-ba waits
    # for B first; woken when B frees at 5, it still comes after big-a for A
    # and may not take the 1 set aside for it.
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "hold-b", 5, uses={"B": 1})
    add_nap(dag, probe, "hold-a", 10, uses={"A": 1})
    add_nap(dag, probe, "big-a", 1, uses={"A": 2})
    add_nap(dag, probe, "later-ba", 1, uses={"B": 1, "A": 1})
    recorder = trio_dag.testing.Recorder()
    options: dict[str, Any] = {"resources": {"A": 2, "B": 1}}
    report = await trio_dag.run(dag, on_event=recorder, **options)
    trio_dag.testing.check_run(dag, report, recorder, **options)
    assert probe.start("big-a") == 10
    assert probe.start("later-ba") == 11


async def test_task_woken_for_one_resource_that_waits_for_another_holds_nobody_back(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # r-then-b waits for R, then (woken when R frees at 5) for B, taking
    # nothing: all-r behind it in R's queue starts at 5 on the R it left free,
    # not when r-then-b finally runs and releases R.
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "hold-r", 5, uses={"R": 2})
    add_nap(dag, probe, "hold-b", 10, uses={"B": 1})
    add_nap(dag, probe, "r-then-b", 1, uses={"R": 1, "B": 1})
    add_nap(dag, probe, "all-r", 1, uses={"R": 2})
    options: dict[str, Any] = {"resources": {"R": 2, "B": 1}}
    recorder = trio_dag.testing.Recorder()
    report = await trio_dag.run(dag, on_event=recorder, **options)
    trio_dag.testing.check_run(dag, report, recorder, **options)
    assert probe.start("all-r") == 5
    assert probe.start("r-then-b") == 10


async def fail_once_then_hold(*deps: Any) -> str:
    task = trio_dag.current_task()
    if task.attempt == 1:
        raise ValueError("first attempt")
    await trio.sleep(1)
    return task.name


# One DAG under every policy: its priority= counts under "priority" only.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@pytest.mark.parametrize(
    ("policy", "order"), [("fifo", ["t0", "t1", "t2"]), ("priority", ["t2", "t0", "t1"])]
)
def test_retries_due_at_once_take_a_resource_again_in_policy_order(
    dag_core: Any, policy: str, order: list[str]
) -> None:
    # No limit: the resource decides who runs, and the retries that fall
    # due together queue for it in policy order, on every run.
    seen = set()
    for _ in range(30):
        dag = trio_dag.DAG()
        for i, priority in enumerate([1, 0, 2]):
            dag.add(
                fail_once_then_hold,
                name=f"t{i}",
                uses={"r": 0.1},
                retries=1,
                retry_delay=2,
                priority=priority,
            )
        recorder = trio_dag.testing.Recorder()

        async def main(dag: trio_dag.DAG = dag, on_event: Any = recorder) -> None:
            with trio.fail_after(60):
                await trio_dag.run(dag, resources={"r": 0.1}, policy=policy, on_event=on_event)

        trio.run(main, clock=MockClock(autojump_threshold=0))
        seen.add(
            tuple(
                e.task.name
                for e in recorder.events
                if isinstance(e, TaskStarted) and e.attempt == 2
            )
        )
    assert seen == {tuple(order)}


# -- policies ------------------------------------------------------------------------

_KEY = {"a": 3, "b": 1, "c": 2, "a1": 0, "b1": 0}.__getitem__

START_ORDERS = [
    ("fifo", "immediate", ["a", "b", "c", "a1", "b1"]),
    ("lifo", "immediate", ["c", "b", "b1", "a", "a1"]),
    ("priority", "immediate", ["b", "c", "a", "a1", "b1"]),
    ("critical_path", "immediate", ["a", "a1", "c", "b", "b1"]),
    ("key", "immediate", ["b", "b1", "c", "a", "a1"]),
    ("fifo", "waves", ["a", "b", "c", "a1", "b1"]),
    ("lifo", "waves", ["c", "b", "a", "a1", "b1"]),
    ("critical_path", "waves", ["a", "c", "b", "a1", "b1"]),
    ("key", "waves", ["b", "c", "a", "b1", "a1"]),
]


# One DAG under every policy: its priority= counts under "priority" only.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@pytest.mark.parametrize(("policy", "strategy", "expected"), START_ORDERS)
async def test_start_order_with_limit_1(
    dag_core: Any, autojump_clock: MockClock, policy: str, strategy: str, expected: list[str]
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 1, priority=0, cost=1)
    b = add_nap(dag, probe, "b", 1, priority=5, cost=2)
    add_nap(dag, probe, "c", 1, priority=1, cost=4)
    add_nap(dag, probe, "a1", 1, a, priority=10, cost=5)
    add_nap(dag, probe, "b1", 1, b, priority=0, cost=1)
    chosen: Any = (lambda h: _KEY(h.name)) if policy == "key" else policy
    await trio_dag.run(dag, limit=1, policy=chosen, strategy=strategy)
    assert probe.started == expected


async def test_key_function_is_called_once_per_task_of_the_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    calls: list[str] = []

    def key(h: trio_dag.Handle[Any]) -> tuple[int, str]:
        calls.append(h.name)
        return (len(h.name), h.name)  # any sortable value

    probe = Probe()
    dag = trio_dag.DAG()
    xs = [add_nap(dag, probe, name, 1) for name in ("ccc", "a", "bb", "b")]
    add_nap(dag, probe, "z", 1, *xs)
    add_nap(dag, probe, "left-out", 1)
    await trio_dag.run(dag, limit=1, policy=key, targets=["z"])
    assert sorted(calls) == ["a", "b", "bb", "ccc", "z"]
    assert probe.started == ["a", "b", "bb", "ccc", "z"]


async def test_key_function_ties_are_fifo(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    first = add_nap(dag, probe, "first", 1)
    add_nap(dag, probe, "x", 1)
    add_nap(dag, probe, "child", 1, first)
    add_nap(dag, probe, "y", 1)
    await trio_dag.run(dag, limit=1, policy=lambda h: 0)
    assert probe.started == ["first", "x", "y", "child"]


async def test_key_function_raising_is_a_callback_error(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    def by_size(h: trio_dag.Handle[Any]) -> int:
        if h.name == "b":
            raise LookupError("no size for b")
        return 0

    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "a", 1)
    add_nap(dag, probe, "b", 1)
    with pytest.raises(trio_dag.CallbackError, match="by_size") as info:
        await trio_dag.run(dag, policy=by_size)
    assert isinstance(info.value.__cause__, LookupError)
    with pytest.raises(trio_dag.CallbackError):
        async with trio_dag.open_run(dag, policy=by_size):
            raise AssertionError("the block must not run")  # pragma: no cover
    assert probe.started == []


# -- strategies ------------------------------------------------------------------------


def _two_chains(probe: Probe, first_fails: bool = False) -> trio_dag.DAG:
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 1, fail=ValueError("a") if first_fails else None)
    b = add_nap(dag, probe, "b", 5)
    add_nap(dag, probe, "e", 2)
    c = add_nap(dag, probe, "c", 1, a)
    add_nap(dag, probe, "d", 1, b)
    add_nap(dag, probe, "f", 3, c)
    add_nap(dag, probe, "g", 1, after=["a"])  # wave 1 through an after= edge
    return dag


async def test_immediate_starts_as_soon_as_ready(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    await trio_dag.run(_two_chains(probe))
    assert [probe.start(n) for n in "abecdfg"] == [0, 0, 0, 1, 5, 2, 1]


async def test_waves_barrier(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    report = await trio_dag.run(_two_chains(probe), strategy="waves")
    assert [probe.start(n) for n in "abe"] == [0, 0, 0]
    assert [probe.start(n) for n in "cdg"] == [5, 5, 5]  # after all of wave 0
    assert probe.start("f") == 6  # after all of wave 1
    assert report.stats.waves == 3
    assert report.stats.makespan == 9


async def test_waves_barrier_lifts_when_a_wave_fails_or_is_skipped(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    report = await trio_dag.run(_two_chains(probe, first_fails=True), strategy="waves", check=False)
    assert report.state("a") is TaskState.FAILED
    assert [report.state(n) for n in "cfg"] == [TaskState.SKIPPED] * 3
    assert probe.start("d") == 5
    assert report.stats.makespan == 6


async def test_waves_with_limit(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    report = await trio_dag.run(_two_chains(probe), strategy="waves", limit=2)
    # wave 0: a, b at 0; e at 1 (a's slot) until 3; b ends at 5.
    assert [probe.start(n) for n in "abe"] == [0, 0, 1]
    assert min(probe.start(n) for n in "cdg") == 5
    assert probe.peak == 2
    assert report.ok


def _threshold_dag(probe: Probe, with_grandchild: bool) -> trio_dag.DAG:
    dag = trio_dag.DAG()
    for i, seconds in enumerate((1, 2, 3, 4)):
        root = add_nap(dag, probe, f"r{i}", seconds)
        child = add_nap(dag, probe, f"c{i}", 10, root)
        if with_grandchild and i == 0:
            add_nap(dag, probe, "g", 1, child)
    return dag


async def test_threshold_starts_ready_tasks_in_groups(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = _threshold_dag(probe, with_grandchild=True)
    report = await trio_dag.run(dag, strategy=trio_dag.Threshold(3))
    assert [probe.start(f"r{i}") for i in range(4)] == [0, 0, 0, 0]
    # c0 is ready at 1, c1 at 2: they wait for c2 (t=3) to make a group of 3.
    assert [probe.start(f"c{i}") for i in range(3)] == [3, 3, 3]
    # c3 (ready at 4) alone is too few while c0-c2 run and g may still become
    # ready; once they end (t=13) nothing more can come: c3 and g start.
    assert probe.start("c3") == probe.start("g") == 13
    assert report.ok


async def test_threshold_starts_fewer_when_no_more_can_become_ready(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    await trio_dag.run(trio_dag.DAG(), strategy=trio_dag.Threshold(3))
    dag = trio_dag.DAG()
    add_nap(dag, probe, "only", 1)
    add_nap(dag, probe, "two", 1)
    await trio_dag.run(dag, strategy=trio_dag.Threshold(5))
    assert probe.start("only") == probe.start("two") == 0


async def test_threshold_does_not_wait_for_tasks_that_cannot_come(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # SPEC: "groups of at least n, or fewer when no more can become ready".
    # At t=4 c3 is ready and every other task has ended or is running with no
    # task left to make ready: none can come, so c3 starts at 4.
    probe = Probe()
    await trio_dag.run(_threshold_dag(probe, with_grandchild=False), strategy=trio_dag.Threshold(3))
    assert [probe.start(f"c{i}") for i in range(3)] == [3, 3, 3]
    assert probe.start("c3") == 4


async def test_threshold_respects_the_limit(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    for i in range(6):
        add_nap(dag, probe, f"t{i}", 1)
    report = await trio_dag.run(dag, strategy=trio_dag.Threshold(4), limit=2)
    assert probe.peak == 2
    assert report.ok
    assert report.stats.makespan == 3

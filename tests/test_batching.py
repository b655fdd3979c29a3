"""Batched tasks: grouping, delays, limits and resources per call, failures and retries."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import TaskStarted


class Model:
    """A batched function's body that records its calls on the Trio clock."""

    def __init__(self, seconds: float = 1.0, fail: BaseException | None = None) -> None:
        self.seconds = seconds
        self.fail = fail
        self.calls: list[tuple[float, list[Any]]] = []
        self.running = 0
        self.peak = 0

    async def __call__(self, items: list[Any]) -> list[Any]:
        self.calls.append((trio.current_time(), list(items)))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(self.seconds)
        finally:
            self.running -= 1
        if self.fail is not None:
            raise self.fail
        return [(item, "done") for item in items]


def batched_model(model: Model, **options: Any) -> trio_dag.Batched[Any, Any]:
    async def call(items: list[Any]) -> list[Any]:
        return await model(items)

    return trio_dag.batched(**options)(call)


async def ready_at(seconds: float, value: Any) -> Any:
    await trio.sleep(seconds)
    return value


def run(dag: trio_dag.DAG, **options: Any) -> trio_dag.RunReport:
    options.setdefault("check", False)
    return trio.run(lambda: trio_dag.run(dag, **options), clock=MockClock(autojump_threshold=0))


def test_batches_hold_at_most_max_size(dag_core: Any) -> None:
    model = Model()
    embed = batched_model(model, max_size=4)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, i) for i in range(10)]
    report = run(dag)
    # Batches are filled in policy order; which of two batches that open at
    # the same moment calls first is up to Trio's scheduler.
    assert sorted(sorted(items) for _, items in model.calls) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    assert [report[h] for h in handles] == [(i, "done") for i in range(10)]
    numbers = [report.batch(h) for h in handles]
    assert sorted(set(numbers)) == [1, 2, 3]
    assert len({numbers[0], numbers[4], numbers[8]}) == 3
    assert numbers[:4] == [numbers[0]] * 4 and numbers[4:8] == [numbers[4]] * 4


def test_without_delay_a_batch_takes_only_what_is_ready(dag_core: Any) -> None:
    model = Model(seconds=0.0)
    embed = batched_model(model, max_size=8, max_delay=0.0)
    dag = trio_dag.DAG()
    for i in range(3):
        dag.add(embed, dag.add(ready_at, i * 1.0, i))
    run(dag)
    assert [(t, items) for t, items in model.calls] == [(0.0, [0]), (1.0, [1]), (2.0, [2])]


def test_a_batch_waits_at_most_max_delay(dag_core: Any) -> None:
    model = Model(seconds=0.0)
    embed = batched_model(model, max_size=3, max_delay=0.5)
    dag = trio_dag.DAG()
    for i, at in enumerate([0.0, 0.2, 0.4, 0.6, 2.0]):
        dag.add(embed, dag.add(ready_at, at, i))
    run(dag)
    # Full after 0.4 s; the next opens at 0.6 and waits its whole 0.5 s; the last alone.
    assert [(t, items) for t, items in model.calls] == [
        (0.4, [0, 1, 2]),
        (pytest.approx(1.1), [3]),
        (2.5, [4]),
    ]


def test_one_call_counts_once_against_limit(dag_core: Any) -> None:
    model = Model()
    embed = batched_model(model, max_size=5)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, i) for i in range(10)]
    report = run(dag, limit=1)
    assert [len(items) for _, items in model.calls] == [5, 5]
    assert report.stats.peak_concurrency == 1
    assert report.ok and len({report.batch(h) for h in handles}) == 2


def test_a_call_takes_its_uses_once(dag_core: Any) -> None:
    model = Model()
    embed = batched_model(model, max_size=4)
    dag = trio_dag.DAG()
    for i in range(8):
        dag.add(embed, i, uses={"model": 1})
    report = run(dag, resources={"model": 1}, limit=4)
    assert report.ok
    assert model.peak == 1
    assert [(t, len(items)) for t, items in model.calls] == [(0.0, 4), (1.0, 4)]


def test_a_failed_call_fails_every_task_in_it(dag_core: Any) -> None:
    model = Model(fail=RuntimeError("model down"))
    embed = batched_model(model, max_size=3)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, i) for i in range(3)]
    after = dag.add(ready_at, 0, handles[0])
    report = run(dag)
    assert [report.state(h) for h in handles] == [TaskState.FAILED] * 3
    assert all(str(report.errors[h.name]) == "model down" for h in handles)
    assert report.state(after) is TaskState.SKIPPED
    with pytest.raises(trio_dag.RunFailedError) as info:
        run(dag, check=True)
    assert len(info.value.exceptions) == 3


def test_failed_tasks_retry_in_a_later_batch(dag_core: Any) -> None:
    attempts: list[list[int]] = []

    @trio_dag.batched(max_size=4)
    async def flaky(items: list[int]) -> list[int]:
        attempts.append(list(items))
        await trio.sleep(1)
        if len(attempts) == 1:
            raise ValueError("first call fails")
        return [item * 2 for item in items]

    dag = trio_dag.DAG()
    handles = [dag.add(flaky, i, retries=1, retry_delay=1.0) for i in range(4)]
    report = run(dag)
    assert report.ok
    assert [report[h] for h in handles] == [0, 2, 4, 6]
    # The retries come due together and form one batch again (timers wake
    # in an order Trio chooses, so the items' order within it may differ).
    assert attempts[0] == [0, 1, 2, 3]
    assert len(attempts) == 2 and sorted(attempts[1]) == [0, 1, 2, 3]
    assert [report.timing(h).attempts for h in handles] == [2] * 4
    assert {report.batch(h) for h in handles} == {2}


def test_a_result_of_the_wrong_length_fails_the_batch_clearly(dag_core: Any) -> None:
    @trio_dag.batched(max_size=3)
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    dag = trio_dag.DAG()
    handles = [dag.add(short, i) for i in range(3)]
    report = run(dag)
    errors = [report.errors[h.name] for h in handles]
    assert all(isinstance(e, ValueError) for e in errors)
    assert "called with 3 items and returned 2 results" in str(errors[0])


def test_a_task_must_pass_exactly_one_item(dag_core: Any) -> None:
    # Refused by add() (issue 14, defect 3), no longer a failure at run time.
    model = Model(seconds=0)
    embed = batched_model(model, max_size=4)
    dag = trio_dag.DAG()
    good = dag.add(embed, 1)
    with pytest.raises(TypeError, match=r"'two-items'.* exactly one positional argument"):
        dag.add(embed, 1, 2, name="two-items")
    assert len(dag) == 1
    report = run(dag)
    assert report[good] == (1, "done")


def test_events_show_each_task_and_its_batch(dag_core: Any) -> None:
    model = Model(seconds=0)
    embed = batched_model(model, max_size=2)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, i) for i in range(3)]
    events: list[Any] = []
    run(dag, on_event=events.append)
    started = [(e.task, e.batch) for e in events if isinstance(e, TaskStarted)]
    assert started == [(handles[0], 1), (handles[1], 1), (handles[2], 2)]


def test_tasks_of_other_functions_keep_their_places(dag_core: Any) -> None:
    model = Model(seconds=0)
    embed = batched_model(model, max_size=10)
    order: list[str] = []

    async def other(name: str) -> None:
        order.append(name)

    dag = trio_dag.DAG()
    dag.add(other, "a")
    dag.add(embed, 1)
    dag.add(other, "b")
    dag.add(embed, 2)
    report = run(dag, limit=1)
    assert report.ok
    assert model.calls == [(0.0, [1, 2])]
    assert order == ["a", "b"]


def test_batched_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="max_size"):
        trio_dag.batched(max_size=0)
    with pytest.raises(ValueError, match="max_delay"):
        trio_dag.batched(max_delay=-1)
    with pytest.raises(ValueError, match="max_delay"):
        trio_dag.batched(max_delay=math.inf)
    with pytest.raises(TypeError, match="a function of a list of items"):
        trio_dag.batched()(42)  # type: ignore[arg-type]

    def generator(items: list[int]) -> Any:
        yield from items

    with pytest.raises(TypeError, match="a function of a list of items"):
        trio_dag.batched()(generator)


def test_a_batched_function_can_be_called_directly() -> None:
    @trio_dag.batched()
    async def double(items: list[int]) -> list[int]:
        return [2 * i for i in items]

    assert trio.run(double, [1, 2]) == [2, 4]
    assert double.__name__ == "double"


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ready=st.lists(st.integers(0, 5), min_size=1, max_size=30),
    max_size=st.integers(1, 8),
    max_delay=st.sampled_from([0.0, 0.5, 2.0]),
    limit=st.sampled_from([None, 1, 3]),
)
def test_every_item_gets_its_own_result(
    dag_core: Any, ready: list[int], max_size: int, max_delay: float, limit: int | None
) -> None:
    model = Model(seconds=0.25)
    embed = batched_model(model, max_size=max_size, max_delay=max_delay)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, dag.add(ready_at, at, i)) for i, at in enumerate(ready)]
    report = run(dag, limit=limit)
    assert report.ok
    assert [report[h] for h in handles] == [(i, "done") for i in range(len(ready))]
    assert all(len(items) <= max_size for _, items in model.calls)
    assert sorted(i for _, items in model.calls for i in items) == list(range(len(ready)))
    for start, items in model.calls:
        # No call starts later than max_delay after its first item was ready.
        assert start <= min(ready[i] for i in items) + max_delay + 1e-9 or limit is not None
    if limit is not None:
        assert model.peak <= limit


def test_a_batched_call_counts_once_in_the_loops_ledger(dag_core: Any) -> None:
    """``begin_batch``/``finish_batch``/``end_batch``: each task gets an attempt,
    a start and an end of its own, the call counts once in live, peak and busy."""

    async def noop() -> None:
        return None

    dag = trio_dag.DAG()
    for _ in range(3):
        dag.add(noop, retries=1)
    snap = dag._freeze()
    now = [10.0]
    st_ = snap.backend.core.RunState(snap.graph)
    loop = snap.backend.loop.Loop(snap, st_, lambda: now[0], False, lambda: None)
    with pytest.raises(IndexError):
        loop.begin_batch(3, 0.0, True)
    with pytest.raises(IndexError):
        loop.finish_batch(3, 0.0, 0)
    for k in range(3):
        loop.begin_batch(k, 10.0, k == 0)
    assert (loop.live, loop.peak) == (1, 1)
    assert list(loop.attempts) == [1, 1, 1]
    assert list(loop.start) == [10.0] * 3
    now[0] = 11.0
    loop.finish_batch(2, 10.0, 1)  # one task ends alone; the call goes on
    now[0] = 12.0
    for k in range(2):
        loop.finish_batch(k, 10.0, 1)
    assert loop.live == 1
    loop.end_batch(10.0)
    assert (loop.live, loop.peak, loop.busy) == (0, 1, 2.0)
    assert list(loop.end) == [12.0, 12.0, 11.0]
    assert list(loop.end_order) == [2, 3, 1]
    assert sorted(loop.extra) == [(0, 1, 10.0, 12.0), (1, 1, 10.0, 12.0), (2, 1, 10.0, 11.0)]


class _Host:
    """A BatchHost that records what a Batcher asks of it, without an engine."""

    def __init__(self, st_: Any) -> None:
        self.st = st_
        self.calls: list[tuple[str, int, Any]] = []

    def listening(self) -> bool:
        return False

    def stopped(self, teardown: int) -> bool:
        return False

    def spawn(self) -> None:
        self.calls.append(("spawn", -1, None))

    def emit(self, event: Any) -> None:
        raise AssertionError("not listening")

    def succeeded(self, v: int, result: Any) -> None:
        self.st.done(v)
        self.calls.append(("succeeded", v, result))

    def raised(self, v: int, exc: BaseException) -> None:
        self.calls.append(("raised", v, exc))

    def gave_up(self, v: int, exc: Exception) -> None:
        self.calls.append(("gave_up", v, exc))

    def cancelled(self, v: int, failure: BaseException | None = None) -> None:
        self.calls.append(("cancelled", v, failure))

    def dropped(self, v: int) -> None:
        self.st.cancel(v)
        self.calls.append(("dropped", v, None))


def _batcher(dag: trio_dag.DAG) -> tuple[Any, Any, _Host]:
    from trio_dag._admission import Admission
    from trio_dag._batch_runner import Batcher

    snap = dag._freeze()
    st_ = snap.backend.core.RunState(snap.graph)
    loop = snap.backend.loop.Loop(snap, st_, trio.current_time, False, lambda: None)
    admission = Admission(snap, st_, None, "immediate")
    host = _Host(st_)
    teardown = bytearray(snap.n)
    return Batcher(snap, st_, loop, admission, teardown, None, host), st_, host


def test_a_batcher_runs_a_call_through_its_host_alone(dag_core: Any) -> None:
    """The Batcher needs no engine: it ends tasks only through its BatchHost."""

    @trio_dag.batched(max_size=8)
    async def double(items: list[int]) -> list[int]:
        await trio.sleep(1)
        return [2 * i for i in items]

    dag = trio_dag.DAG()
    for i in range(3):
        dag.add(double, i)

    async def main() -> None:
        batcher, st_, host = _batcher(dag)
        v = st_.pop()
        assert batcher.claim(v, double)
        with trio.fail_after(5):
            await batcher.run(v, double, dag._freeze().options(v), [None, -1, 0, 0.0])
        # It asked for workers for the others as its call suspended.
        assert host.calls == [("spawn", -1, None)] + [("succeeded", u, 2 * u) for u in range(3)]
        assert batcher.batch_of == {0: 1, 1: 1, 2: 1}
        assert (batcher.loop.live, batcher.loop.peak, batcher.loop.busy) == (0, 1, 1.0)

    trio.run(main, clock=MockClock(autojump_threshold=0))


def test_a_dropped_opener_ends_the_tasks_that_joined_its_batch(dag_core: Any) -> None:
    @trio_dag.batched(max_size=8)
    async def double(items: list[int]) -> list[int]:
        return [2 * i for i in items]

    dag = trio_dag.DAG()
    for i in range(3):
        dag.add(double, i)

    async def main() -> None:
        batcher, st_, host = _batcher(dag)
        opener, *joined = (st_.pop() for _ in range(3))
        assert batcher.claim(opener, double)
        assert [batcher.claim(u, double) for u in joined] == [False, False]
        st_.cancel(opener)
        batcher.drop(opener)
        assert host.calls == [("dropped", u, None) for u in joined]
        assert batcher.open_batches == {} and batcher.openers == {}

    trio.run(main, clock=MockClock(autojump_threshold=0))


def test_a_batched_call_past_its_timeout_fails_every_task_with_a_timeout(dag_core: Any) -> None:
    """The call runs under the ``timeout`` of the task that opened the batch,
    and the TaskTimeoutError names that task; each task retries on its own."""
    model = Model(seconds=5.0)
    embed = batched_model(model, max_size=4)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, i, timeout=1.0, retries=1) for i in range(3)]

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(60):
            return await trio_dag.run(dag, check=False)

    report = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert [report.state(h) for h in handles] == [TaskState.FAILED] * 3
    errors = [report.errors[h.name] for h in handles]
    assert all(isinstance(e, trio_dag.TaskTimeoutError) for e in errors)
    assert {e.task for e in errors} <= {h.name for h in handles}
    assert [report.timing(h).attempts for h in handles] == [2, 2, 2]
    # Two calls of all three items, each cut at its timeout.
    assert [(t, sorted(items)) for t, items in model.calls] == [(0.0, [0, 1, 2]), (1.0, [0, 1, 2])]

"""Batched tasks when things go wrong: fail-fast, cancellation, bad arguments, bad calls.

A batch is opened by the task a worker is handed; other tasks of the same
function join it before that worker has started. Whatever ends the opener
(fail-fast, ``run.cancel()``, a cancelled wait for the limiter or for
``max_delay``) must end the tasks that joined it and give back what it held,
or the run hangs or a teardown task finds its resource taken.

Every run is bounded (``trio.fail_after``): a hang is a failure that names
what hung, never a stuck suite. Runs are repeated where the outcome depends
on the order in which Trio schedules tasks (it randomizes it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import TaskStarted
from trio_dag.testing import Recorder, check_run

FINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED}


class Model:
    """A batched function's body: records each call's items and how many calls overlap."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls: list[list[Any]] = []
        self.running = 0
        self.peak = 0

    async def __call__(self, items: list[Any]) -> list[Any]:
        self.calls.append(list(items))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(self.seconds)
        finally:
            self.running -= 1
        return [("done", item) for item in items]


def batched_model(model: Model, **options: Any) -> trio_dag.Batched[Any, Any]:
    async def embed(items: list[Any]) -> list[Any]:
        return await model(items)

    return trio_dag.batched(**options)(embed)


async def ready_at(seconds: float, value: Any) -> Any:
    await trio.sleep(seconds)
    return value


async def fail_at(seconds: float) -> None:
    await trio.sleep(seconds)
    raise ValueError("boom")


async def teardown(*outcomes: Any) -> str:
    await trio.sleep(0)
    return "cleaned up"


def bounded(run: Callable[[], Any], seconds: float, what: str) -> Any:
    """Call the async *run* inside fail_after(*seconds*) on a MockClock."""

    async def main() -> Any:
        with trio.fail_after(seconds):
            return await run()

    try:
        return trio.run(main, clock=MockClock(autojump_threshold=0))
    except trio.TooSlowError:
        pytest.fail(f"the run hung: {what}")


def bounded_real(run: Callable[[], Any], seconds: float, what: str) -> Any:
    """Call the async *run* inside fail_after(*seconds*) on the real clock."""

    async def main() -> Any:
        with trio.fail_after(seconds):
            return await run()

    try:
        return trio.run(main)
    except trio.TooSlowError:
        pytest.fail(f"the run hung: {what}")


# -- the opener ends before it starts (defect 2) ------------------------------------


def _joined_dag(model: Model, max_delay: float) -> tuple[trio_dag.DAG, list[Any], Any]:
    """A task that fails as soon as it resumes, beside three tasks of one batched function.

    The failing task's first suspension hands a worker the batch opener and
    lets the other two join; whether the failure or that worker runs first
    is up to Trio's scheduler.
    """
    embed = batched_model(model, max_size=4, max_delay=max_delay)
    dag = trio_dag.DAG()
    dag.add(fail_at, 0, name="boom")
    handles = [dag.add(embed, i, name=f"embed-{i}") for i in range(3)]
    cleanup = dag.add(teardown, *handles, trigger="all_done", name="cleanup")
    return dag, handles, cleanup


@pytest.mark.parametrize("max_delay", [0.0, 0.5])
def test_fail_fast_ends_the_tasks_that_joined_an_unstarted_batch(
    dag_core: Any, max_delay: float
) -> None:
    seen: set[TaskState] = set()
    for attempt in range(30):
        model = Model()
        dag, handles, cleanup = _joined_dag(model, max_delay)
        report = bounded(
            lambda dag=dag: trio_dag.run(dag, on_failure="fail_fast", check=False),
            60,
            f"fail_fast beside a batch, attempt {attempt}",
        )
        states = {report.state(h) for h in handles}
        # The batch ran before the failure, or none of it did.
        assert states in ({TaskState.SUCCEEDED}, {TaskState.CANCELLED}), states
        seen |= states
        assert report.state("boom") is TaskState.FAILED
        assert report.state(cleanup) is TaskState.SUCCEEDED
        assert all(len(items) <= 4 for items in model.calls)


def test_fail_fast_ends_the_tasks_that_joined_an_unstarted_batch_on_the_real_clock(
    dag_core: Any,
) -> None:
    for attempt in range(20):
        model = Model()
        dag, handles, cleanup = _joined_dag(model, 0.0)
        report = bounded_real(
            lambda dag=dag: trio_dag.run(dag, on_failure="fail_fast", check=False),
            5,
            f"fail_fast beside a batch on the real clock, attempt {attempt}",
        )
        assert {report.state(h) for h in handles} in ({TaskState.SUCCEEDED}, {TaskState.CANCELLED})
        assert report.state(cleanup) is TaskState.SUCCEEDED


async def _cancel_its_run(runs: list[trio_dag.Run]) -> None:
    await trio.sleep(0)
    runs[0].cancel()


async def _run_open(dag: trio_dag.DAG, runs: list[trio_dag.Run]) -> trio_dag.RunReport:
    async with trio_dag.open_run(dag, check=False) as run:
        runs.append(run)
    return run.report


def test_run_cancel_ends_the_tasks_that_joined_an_unstarted_batch(dag_core: Any) -> None:
    for attempt in range(30):
        model = Model()
        embed = batched_model(model, max_size=4)
        runs: list[trio_dag.Run] = []
        dag = trio_dag.DAG()
        dag.add(_cancel_its_run, runs, name="stop")
        handles = [dag.add(embed, i) for i in range(3)]
        report = bounded(
            lambda dag=dag, runs=runs: _run_open(dag, runs),
            60,
            f"run.cancel() beside a batch, attempt {attempt}",
        )
        states = {report.state(h) for h in handles}
        assert states in ({TaskState.SUCCEEDED}, {TaskState.CANCELLED}), states


def test_a_batch_opener_cancelled_waiting_for_the_limiter_ends_its_batch(dag_core: Any) -> None:
    model = Model()
    embed = batched_model(model, max_size=4)
    limiter = trio.CapacityLimiter(3)

    async def main() -> trio_dag.RunReport:
        # Other users of the limiter hold two of its three tokens: the worker
        # handed the opener waits for one while the other tasks join.
        await limiter.acquire_on_behalf_of("someone")
        await limiter.acquire_on_behalf_of("someone else")
        dag = trio_dag.DAG()
        dag.add(fail_at, 1, name="boom")
        for i in range(3):
            dag.add(embed, i, name=f"embed-{i}")
        return await trio_dag.run(dag, limit=limiter, on_failure="fail_fast", check=False)

    report = bounded(main, 60, "an opener waiting for the limiter under fail_fast")
    assert report.state("boom") is TaskState.FAILED
    assert [report.state(f"embed-{i}") for i in range(3)] == [TaskState.CANCELLED] * 3
    assert model.calls == []
    assert limiter.borrowed_tokens == 2


# -- max_size is a bound (defect 11) ------------------------------------------------


def test_max_size_one_calls_with_one_item(dag_core: Any) -> None:
    model = Model(seconds=0.1)
    embed = batched_model(model, max_size=1)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, i) for i in range(6)]
    for i in range(3):
        dag.add(ready_at, 0.05, i)
    report = bounded(lambda: trio_dag.run(dag), 60, "six tasks of max_size=1")
    assert report.ok
    assert sorted(model.calls) == [[i] for i in range(6)]
    assert len({report.batch(h) for h in handles}) == 6


# -- what an opener holds goes back (defect 10, batched part) ------------------------


def _mutated_argument(dag: trio_dag.DAG, dep: trio_dag.Handle[Any], embed: Any, **opts: Any) -> Any:
    """A task of *embed* whose argument list is changed after add: binding it raises."""
    argument = [dep]
    handle = dag.add(embed, argument, **opts)
    argument.clear()
    return handle


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
def test_a_batch_member_whose_arguments_fail_fails_alone_and_gives_back_its_uses(
    dag_core: Any, on_failure: str
) -> None:
    model = Model(seconds=1)
    embed = batched_model(model, max_size=4)
    dag = trio_dag.DAG()
    source = dag.add(ready_at, 0, "x", name="source")
    # The opener (first in fifo order) is the task whose arguments fail.
    bad = _mutated_argument(dag, source, embed, name="bad", uses={"model": 1})
    good = [dag.add(embed, source, name=f"good-{i}", uses={"model": 1}) for i in range(2)]
    later = dag.add(embed, dag.add(ready_at, 5, "y"), name="later", uses={"model": 1})
    cleanup = dag.add(teardown, bad, *good, later, trigger="all_done", uses={"model": 1})
    report = bounded(
        lambda: trio_dag.run(dag, resources={"model": 1}, on_failure=on_failure, check=False),
        60,
        f"a batch member with bad arguments under {on_failure}",
    )
    assert report.state(bad) is TaskState.FAILED
    assert isinstance(report.errors["bad"], RuntimeError)
    assert "changed after it was added" in str(report.errors["bad"])
    if on_failure == "skip":
        assert [report[h] for h in good] == [("done", "x")] * 2
        assert report[later] == ("done", "y")
    else:
        assert {report.state(h) for h in [*good, later]} == {TaskState.CANCELLED}
    assert report.state(cleanup) is TaskState.SUCCEEDED


def test_a_batch_of_members_whose_arguments_all_fail_gives_back_its_uses(dag_core: Any) -> None:
    model = Model()
    embed = batched_model(model, max_size=4)
    dag = trio_dag.DAG()
    source = dag.add(ready_at, 0, "x")
    bad = [_mutated_argument(dag, source, embed, uses={"model": 1}) for _ in range(2)]
    after = dag.add(embed, dag.add(ready_at, 1, "y"), name="after", uses={"model": 1})
    report = bounded(
        lambda: trio_dag.run(dag, resources={"model": 1}, check=False), 60, "all members bad"
    )
    assert [report.state(h) for h in bad] == [TaskState.FAILED] * 2
    assert report[after] == ("done", "y")
    assert model.calls == [["y"]]


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
@pytest.mark.parametrize("bad", [1, 2])
def test_a_batch_member_failing_on_its_arguments_starts_with_its_call(
    dag_core: Any, on_failure: str, bad: int
) -> None:
    # Its failed attempt counts in the report, as a plain task's does: the
    # events tell it, started in the call (at its start, with its number)
    # like the others, and check_run accepts the run. With bad=2 every
    # member fails: the call numbered 1 never calls the function.
    model = Model(seconds=1)
    embed = batched_model(model, max_size=4)
    dag = trio_dag.DAG()
    source = dag.add(ready_at, 0, "x", name="source")
    wrong = [_mutated_argument(dag, source, embed, name=f"bad-{i}") for i in range(bad)]
    good = [dag.add(embed, source, name=f"good-{i}") for i in range(2 - bad)]
    dag.add(teardown, *wrong, *good, trigger="all_done", name="cleanup")
    recorder = Recorder()
    report = bounded(
        lambda: trio_dag.run(dag, on_failure=on_failure, check=False, on_event=recorder),
        60,
        f"{bad} batch member(s) with bad arguments under {on_failure}",
    )
    started = {e.task.name: e for e in recorder if isinstance(e, TaskStarted)}
    for h in [*wrong, *good]:
        assert report.timing(h).attempts == 1
        assert report.timing(h).start == started[h.name].time
        assert report.batch(h) == started[h.name].batch == 1
    assert [report.state(h) for h in wrong] == [TaskState.FAILED] * bad
    if good:
        expected = TaskState.SUCCEEDED if on_failure == "skip" else TaskState.CANCELLED
        assert report.state(good[0]) is expected
    assert report["cleanup"] == "cleaned up"
    check_run(dag, report, recorder, on_failure=on_failure)


def test_a_batch_opener_cancelled_in_max_delay_gives_back_its_uses(dag_core: Any) -> None:
    model = Model()
    embed = batched_model(model, max_size=4, max_delay=5)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, i, uses={"model": 1}) for i in range(2)]
    dag.add(fail_at, 1, name="boom")
    cleanup = dag.add(teardown, *handles, trigger="all_done", uses={"model": 1})
    report = bounded(
        lambda: trio_dag.run(dag, resources={"model": 1}, on_failure="fail_fast", check=False),
        60,
        "an opener waiting out max_delay under fail_fast",
    )
    assert [report.state(h) for h in handles] == [TaskState.CANCELLED] * 2
    assert model.calls == []
    assert report.state(cleanup) is TaskState.SUCCEEDED


def _fails_now(*deps: Any) -> None:
    raise ValueError("boom")


@pytest.mark.parametrize("policy", ["fifo", "lifo"])
def test_a_batch_filled_as_the_run_fails_fast_never_starts(dag_core: Any, policy: str) -> None:
    # "a" opens a batch and waits for more (max_delay). When "t0" ends, one
    # worker, without a checkpoint, adds "b" to the batch (which fills it and
    # wakes "a") and runs "boom" inline, which fails. "a" was woken by the
    # full batch before fail-fast cancelled it, so its wait ended without
    # Cancelled: the batch must still not start (it did, under "lifo").
    for attempt in range(5):
        model = Model()
        embed = batched_model(model, max_size=2, max_delay=5)
        dag = trio_dag.DAG()
        first = dag.add(embed, "a", name="a")
        t0 = dag.add(ready_at, 1, "x", name="t0")
        second = dag.add(embed, t0, name="b")
        boom = dag.add(_fails_now, t0, name="boom", run_in="inline")
        recorder = Recorder()
        report = bounded(
            lambda dag=dag, recorder=recorder: trio_dag.run(
                dag, on_failure="fail_fast", policy=policy, on_event=recorder, check=False
            ),
            60,
            f"a batch filled as the run fails fast, attempt {attempt}",
        )
        assert model.calls == []
        assert [report.state(h) for h in (first, second)] == [TaskState.CANCELLED] * 2
        assert report.state(boom) is TaskState.FAILED
        assert not [e for e in recorder if isinstance(e, TaskStarted) and e.batch is not None]
        check_run(dag, report, recorder, on_failure="fail_fast", policy=policy)


def test_a_batch_never_strands_a_task_waiting_for_a_resource(dag_core: Any) -> None:
    # When "hold" gives back R, admission wakes "a" (and sets R aside for
    # it) but not "b", which waits behind it. The batch that "opener" opens
    # then must not take "a" without R: nothing would wake "b" again, and
    # it would end CANCELLED in a run nobody cancelled.
    model = Model(seconds=0.1)
    embed = batched_model(model, max_size=2)
    dag = trio_dag.DAG()
    hold = dag.add(ready_at, 1, "hold", name="hold", uses={"R": 1})
    dag.add(embed, "a", name="a", uses={"R": 1})
    dag.add(embed, "b", name="b", uses={"R": 1})
    dag.add(embed, hold, name="opener", priority=10)
    report = bounded(
        lambda: trio_dag.run(dag, resources={"R": 1}, policy="priority", check=False),
        60,
        "a task woken for a resource beside a batch",
    )
    assert report.ok, {h.name: report.state(h) for h in report}
    assert sorted(item for call in model.calls for item in call) == ["a", "b", "hold"]


def test_run_cancel_while_a_batch_waits_cancels_every_member(dag_core: Any) -> None:
    model = Model()
    embed = batched_model(model, max_size=8, max_delay=5)
    dag = trio_dag.DAG()
    handles = [dag.add(embed, dag.add(ready_at, 0.1 * i, i)) for i in range(4)]

    async def main() -> trio_dag.RunReport:
        async with trio_dag.open_run(dag, resources={"model": 1}) as run:
            await trio.sleep(1)
            run.cancel()
        return run.report

    # No task uses "model" (the batched tasks have no uses=): the run says so.
    with pytest.warns(trio_dag.NoEffectWarning, match="'model'"):
        report = bounded(main, 60, "run.cancel() while a batch waits out max_delay")
    assert [report.state(h) for h in handles] == [TaskState.CANCELLED] * 4
    assert model.calls == []
    assert report.batch(handles[0]) is None


# -- calls that raise or return the wrong number of results ---------------------------


def test_calls_that_raise_or_return_too_few_results_retry_in_later_batches(dag_core: Any) -> None:
    calls: list[list[int]] = []

    @trio_dag.batched(max_size=3)
    async def flaky(items: list[int]) -> list[int]:
        calls.append(list(items))
        await trio.sleep(1)
        if len(calls) == 1:
            raise ConnectionError("model down")
        if len(calls) == 2:
            return items[:-1]
        return [item * 10 for item in items]

    dag = trio_dag.DAG()
    handles = [dag.add(flaky, i, retries=2, retry_delay=1, uses={"model": 1}) for i in range(3)]
    cleanup = dag.add(teardown, *handles, trigger="all_done", uses={"model": 1})
    report = bounded(lambda: trio_dag.run(dag, resources={"model": 1}), 60, "retried batched calls")
    assert [report[h] for h in handles] == [0, 10, 20]
    assert [report.timing(h).attempts for h in handles] == [3] * 3
    assert len(calls) == 3 and all(sorted(c) == [0, 1, 2] for c in calls)
    assert report.state(cleanup) is TaskState.SUCCEEDED


@pytest.mark.parametrize("wrong", ["raise", "short"])
def test_a_failing_call_under_fail_fast_fails_its_members_and_runs_teardown(
    dag_core: Any, wrong: str
) -> None:
    calls: list[list[int]] = []

    @trio_dag.batched(max_size=3)
    async def bad(items: list[int]) -> list[int]:
        calls.append(list(items))
        await trio.sleep(1)
        if wrong == "raise":
            raise ConnectionError("model down")
        return items[:-1]

    dag = trio_dag.DAG()
    handles = [dag.add(bad, i, retries=1, uses={"model": 1}) for i in range(3)]
    slow = dag.add(ready_at, 10, "slow", name="slow")
    cleanup = dag.add(teardown, *handles, slow, trigger="all_done", uses={"model": 1})
    with pytest.raises(trio_dag.RunFailedError) as info:
        bounded(
            lambda: trio_dag.run(dag, resources={"model": 1}, on_failure="fail_fast"),
            60,
            f"a batched call that fails ({wrong}) under fail_fast",
        )
    report = info.value.report
    # The first call's failure is retried; the second ends the run.
    assert len(calls) == 2
    assert [report.state(h) for h in handles] == [TaskState.FAILED] * 3
    assert report.state(slow) is TaskState.CANCELLED
    assert report.state(cleanup) is TaskState.SUCCEEDED


# -- every option at once ----------------------------------------------------------

POLICIES: list[Any] = ["fifo", "lifo", "priority", "critical_path", lambda h: h.name[::-1]]
STRATEGIES: list[Any] = ["immediate", "waves", trio_dag.Threshold(2)]


def _limits() -> list[Any]:
    return [None, 1, 2, trio.CapacityLimiter(2)]


def _matrix_run(
    on_failure: str, policy: Any, strategy: Any, limit: Any, max_size: int, max_delay: float
) -> None:
    what = (
        f"on_failure={on_failure} policy={policy} strategy={strategy} limit={limit} "
        f"max_size={max_size} max_delay={max_delay}"
    )
    model = Model(seconds=0.25)
    other = Model(seconds=0.0)
    embed = batched_model(model, max_size=max_size, max_delay=max_delay)
    store = batched_model(other, max_size=max_size, max_delay=max_delay)
    dag = trio_dag.DAG()
    sources = [dag.add(ready_at, at, i, name=f"src-{i}") for i, at in enumerate([0, 0, 0.2, 0.7])]
    embedded = []
    for i in range(8):
        item = sources[i // 2] if i % 2 else f"item-{i}"
        embedded.append(
            dag.add(
                embed, item, name=f"embed-{i}", uses={"model": 1}, priority=i % 3, cost=1 + i % 2
            )
        )
    stored = [dag.add(store, h, name=f"store-{i}") for i, h in enumerate(embedded[::2])]
    boom = dag.add(fail_at, 0.3, name="boom")
    doomed = dag.add(embed, boom, name="doomed", uses={"model": 1})
    everything = [*sources, *embedded, *stored, boom, doomed]
    dag.add(teardown, *everything, trigger="all_done", name="cleanup", uses={"model": 1})
    report = bounded(
        lambda: trio_dag.run(
            dag,
            limit=limit,
            resources={"model": 1},
            policy=policy,
            strategy=strategy,
            on_failure=on_failure,
            check=False,
        ),
        120,
        what,
    )
    states = {h.name: report.state(h) for h in report}
    assert set(states.values()) <= FINAL, (what, states)
    # Resources are all free at the end: the teardown that needs the model runs.
    assert states["cleanup"] is TaskState.SUCCEEDED, (what, states)
    assert states["boom"] is TaskState.FAILED, (what, states)
    assert all(len(items) <= max_size for items in model.calls + other.calls), what
    assert model.peak <= 1, what  # the model's one unit is held by one call at a time
    if on_failure == "skip":
        assert states["doomed"] is TaskState.SKIPPED, what
        assert TaskState.CANCELLED not in states.values(), (what, states)
        for i, h in enumerate(embedded):
            assert report[h] == ("done", i // 2 if i % 2 else f"item-{i}"), what
    else:
        assert states["doomed"] in (TaskState.CANCELLED, TaskState.SKIPPED), what
        for h in [*embedded, *stored]:
            assert states[h.name] in (TaskState.SUCCEEDED, TaskState.CANCELLED), what
    # Each item went to at most one call of each function; nothing ran twice.
    items = [item for call in model.calls for item in call]
    assert len(items) == len(set(map(repr, items))), what


# One DAG under every policy: its priority= counts under "priority" only.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@pytest.mark.parametrize(
    ("on_failure", "policy", "strategy"),
    list(itertools.product(["skip", "fail_fast"], POLICIES, STRATEGIES)),
    ids=lambda p: p.__name__ if callable(p) and not isinstance(p, trio_dag.Threshold) else str(p),
)
def test_batched_and_plain_tasks_under_every_option(
    dag_core: Any, on_failure: str, policy: Any, strategy: Any
) -> None:
    for limit, max_size, max_delay in itertools.product(_limits(), [1, 2, 5], [0.0, 0.5]):
        _matrix_run(on_failure, policy, strategy, limit, max_size, max_delay)


# -- teardown tasks of a batched function --------------------------------------------


def test_all_done_tasks_of_a_batched_function_get_outcomes_in_a_batch_of_their_own(
    dag_core: Any,
) -> None:
    model = Model()
    embed = batched_model(model, max_size=8, max_delay=1)
    dag = trio_dag.DAG()
    ok = dag.add(ready_at, 0, "fine")
    bad = dag.add(fail_at, 0)
    plain = dag.add(embed, ok, name="plain")
    after = [
        dag.add(embed, h, trigger="all_done", name=f"after-{i}") for i, h in enumerate([ok, bad])
    ]
    report = bounded(lambda: trio_dag.run(dag, check=False), 60, "all_done batched tasks")
    assert report[plain] == ("done", "fine")
    outcomes = [report[h][1] for h in after]
    assert outcomes[0].unwrap() == "fine"
    assert isinstance(outcomes[1].error, ValueError)
    assert report.batch(after[0]) == report.batch(after[1]) != report.batch(plain)


def test_fail_fast_cancels_a_batch_but_lets_a_teardown_batch_run(dag_core: Any) -> None:
    model = Model(seconds=1)
    embed = batched_model(model, max_size=8, max_delay=0.5)
    dag = trio_dag.DAG()
    work = [dag.add(embed, dag.add(ready_at, 0.1 * i, i), name=f"work-{i}") for i in range(3)]
    boom = dag.add(fail_at, 0.3, name="boom")
    cleanup = [
        dag.add(embed, h, trigger="all_done", name=f"cleanup-{i}") for i, h in enumerate(work)
    ]
    cleanup.append(dag.add(embed, boom, trigger="all_done", name="cleanup-boom"))
    report = bounded(
        lambda: trio_dag.run(dag, on_failure="fail_fast", check=False), 60, "teardown batch"
    )
    assert [report.state(h) for h in work] == [TaskState.CANCELLED] * 3
    assert [report.state(h) for h in cleanup] == [TaskState.SUCCEEDED] * 4
    assert len({report.batch(h) for h in cleanup}) == 1


# -- drawn DAGs -------------------------------------------------------------------


@st.composite
def _plans(draw: st.DrawFn) -> dict[str, Any]:
    functions = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "max_size": st.integers(1, 5),
                    "max_delay": st.sampled_from([0.0, 0.3]),
                    "seconds": st.sampled_from([0.0, 0.1]),
                    "wrong": st.sampled_from([None, "raise", "short"]),
                }
            ),
            min_size=1,
            max_size=2,
        )
    )
    tasks = []
    for i in range(draw(st.integers(1, 14))):
        task = {
            "batched": draw(st.one_of(st.none(), st.integers(0, len(functions) - 1))),
            "deps": draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=2)) if i else [],
            "fail": draw(st.booleans()),
            "seconds": draw(st.sampled_from([0.0, 0.05, 0.1])),
            "retries": draw(st.integers(0, 2)),
            "retry_delay": draw(st.sampled_from([0.0, 0.2])),
            "all_done": draw(st.booleans()) and draw(st.booleans()),
            "uses": draw(st.sampled_from([{}, {"model": 1}, {"model": 0.5}, {"other": 1}])),
        }
        tasks.append(task)
    return {
        "functions": functions,
        "tasks": tasks,
        # Every batched task uses the model; or none does; or each its own way.
        "uses": draw(st.sampled_from(["same", "none", "mixed"])),
        "on_failure": draw(st.sampled_from(["skip", "fail_fast"])),
        "policy": draw(st.sampled_from(["fifo", "lifo", "priority", "critical_path"])),
        "strategy": draw(st.sampled_from(["immediate", "waves", "threshold"])),
        "limit": draw(st.sampled_from([None, 1, 2, 3])),
    }


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=_plans())
def test_drawn_dags_with_batched_tasks_end_and_free_their_resources(
    dag_core: Any, plan: dict[str, Any]
) -> None:
    sizes: list[tuple[int, int]] = []
    live = [0, 0]

    def make(spec: dict[str, Any]) -> trio_dag.Batched[Any, Any]:
        made = [0]

        async def call(items: list[Any]) -> list[Any]:
            sizes.append((spec["max_size"], len(items)))
            made[0] += 1
            live[0] += 1
            live[1] = max(live)
            try:
                await trio.sleep(spec["seconds"])
            finally:
                live[0] -= 1
            if spec["wrong"] == "raise" and made[0] % 2:
                raise ValueError("the call failed")
            if spec["wrong"] == "short" and made[0] % 2:
                return [0] * (len(items) - 1)
            return [0] * len(items)

        return trio_dag.batched(max_size=spec["max_size"], max_delay=spec["max_delay"])(call)

    async def plain(seconds: float, fail: bool, *deps: Any) -> int:
        await trio.sleep(seconds)
        if fail:
            raise ValueError("the task failed")
        return 0

    functions = [make(spec) for spec in plan["functions"]]
    dag = trio_dag.DAG()
    handles: list[trio_dag.Handle[Any]] = []
    for i, task in enumerate(plan["tasks"]):
        options: dict[str, Any] = {
            "name": f"t{i}",
            "retries": task["retries"],
            "retry_delay": task["retry_delay"],
            "trigger": "all_done" if task["all_done"] else "all_succeeded",
        }
        deps = [handles[d] for d in task["deps"]]
        if task["batched"] is None:
            handles.append(dag.add(plain, task["seconds"], task["fail"], *deps, **options))
        else:
            if plan["uses"] == "same":
                options["uses"] = {"model": 1}
            elif plan["uses"] == "mixed":
                options["uses"] = task["uses"]
            item = deps[0] if deps else i
            handles.append(dag.add(functions[task["batched"]], item, **options))
    cleanup = dag.add(plain, 0, False, *handles, trigger="all_done", uses={"model": 1, "other": 1})
    strategy = trio_dag.Threshold(2) if plan["strategy"] == "threshold" else plan["strategy"]
    report = bounded(
        lambda: trio_dag.run(
            dag,
            limit=plan["limit"],
            resources={"model": 1, "other": 1},
            policy=plan["policy"],
            strategy=strategy,
            on_failure=plan["on_failure"],
            check=False,
        ),
        600,
        repr(plan),
    )
    assert {report.state(h) for h in report} <= FINAL
    assert report.state(cleanup) is TaskState.SUCCEEDED
    assert all(size <= max_size for max_size, size in sizes)
    if plan["uses"] == "same":
        assert live[1] <= 1
    if plan["on_failure"] == "skip":
        assert not report.cancelled

"""Controlling a running run: current_run(), and the Run's per-task methods.

Every test runs the engine on both cores (``dag_core``) on a MockClock, each
run bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from typing import Any

import outcome
import pytest
import trio
from trio.testing import MockClock

import trio_dag
import trio_dag.testing
from trio_dag.events import TaskStarted


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


# -- helpers -------------------------------------------------------------------


async def work(seconds: float, value: Any = None, *deps: Any) -> Any:
    await trio.sleep(seconds)
    return value


async def boom(seconds: float, *deps: Any) -> None:
    await trio.sleep(seconds)
    raise ValueError("boom")


class Active:
    """How many bodies counted against the limit run at once (those not awaiting results)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


async def counted(active: Active, seconds: float, value: Any = None) -> Any:
    active.enter()
    try:
        await trio.sleep(seconds)
    finally:
        active.leave()
    return value


async def awaiting(active: Active, name: str, before: float = 0.0) -> Any:
    """Count as active, except while awaiting *name*'s result."""
    run = trio_dag.current_run()
    active.enter()
    try:
        await trio.sleep(before)
    finally:
        active.leave()
    value = await run.result(name)  # a cancelled wait unwinds without a slot
    active.enter()
    try:
        await trio.sleep(1)
    finally:
        active.leave()
    return ("got", value)


# -- run.counts -------------------------------------------------------------------


async def test_counts_follow_the_run(dag_core: Any, autojump_clock: MockClock) -> None:
    dag = trio_dag.DAG()
    a = dag.add(work, 1, "a", name="a")
    dag.add(work, 1, "b", a, name="b")
    dag.add(boom, 2, name="bad")
    dag.add(work, 1, None, name="after-bad", after=["bad"])
    dag.add(work, 5, name="slow")
    seen = []
    with trio.fail_after(30):
        async with trio_dag.open_run(dag, limit=2, check=False) as run:
            seen.append(run.counts)
            await trio.sleep(1.5)
            seen.append(run.counts)
            await trio.sleep(1)
            seen.append(run.counts)
        seen.append(run.counts)
    C = trio_dag.RunCounts
    assert seen[0] == C(2, 3, 0, 0, 0, 0, 0, 0, 5)
    # At 1.5: a done, bad and slow running (limit 2), b ready, after-bad pending.
    assert seen[1] == C(1, 1, 2, 1, 0, 0, 0, 0, 5)
    # At 2.5: bad failed, after-bad skipped, b (from 2) and slow running.
    assert seen[2] == C(0, 0, 2, 1, 1, 1, 0, 0, 5)
    assert seen[3] == C(0, 0, 0, 3, 1, 1, 0, 0, 5)
    for c in seen:
        assert (
            c.pending
            + c.ready
            + c.running
            + c.succeeded
            + c.failed
            + c.skipped
            + c.cancelled
            + c.cached
            == c.total
        )


async def test_counts_of_waiting_for_a_resource_or_a_retry(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def flaky() -> None:
        if trio_dag.current_task().attempt == 1:
            raise ValueError("again")

    dag = trio_dag.DAG()
    dag.add(work, 2, name="holder", uses={"gpu": 1})
    dag.add(work, 1, name="waiter", uses={"gpu": 1})
    dag.add(flaky, name="flaky", retries=1, retry_delay=5)
    with trio.fail_after(30):
        async with trio_dag.open_run(dag, resources={"gpu": 1}) as run:
            await trio.sleep(0.5)
            counts = run.counts
    assert (counts.pending, counts.ready, counts.running) == (1, 1, 1)


def test_counts_in_a_task_and_of_cached_tasks(dag_core: Any) -> None:
    def progress() -> trio_dag.RunCounts:
        return trio_dag.current_run().counts

    def one() -> int:
        return 1

    cache = trio_dag.MemoryCache()
    dag = trio_dag.DAG()
    first = dag.add(one, cache=True, run_in="inline")
    dag.add(progress, run_in="inline", name="progress", after=[first])
    trio_dag.run_sync(dag, cache=cache)
    report = trio_dag.run_sync(dag, cache=cache)
    assert report["progress"] == trio_dag.RunCounts(0, 0, 1, 0, 0, 0, 0, 1, 2)


def test_tally_of_both_cores(core: Any) -> None:
    graph = core.Graph(4, [0, 1], [1, 2])
    st = core.RunState(graph)
    assert st.tally() == (2, 0, 0, 4, 0, 0, 0)
    v = st.pop()
    assert st.fail(v) == [1, 2]
    w = st.pop()
    st.cancel(w)
    assert st.tally() == (0, 0, 4, 4, 1, 2, 1)
    st = core.RunState(graph)
    assert st.cancel_pending(keep_all_done=False) == [0, 1, 2, 3]
    assert st.tally() == (0, 0, 4, 4, 0, 0, 4)


# -- run.result ---------------------------------------------------------------------


def _outcomes_dag() -> trio_dag.DAG:
    dag = trio_dag.DAG()
    dag.add(work, 1, "value", name="ok")
    bad = dag.add(boom, 2, name="bad")
    dag.add(work, 1, None, bad, name="skipped")
    dag.add(work, 10, None, name="slow")
    dag.add(work, 1, None, name="left-out")
    return dag


async def _raised(awaitable: Any) -> BaseException | None:
    try:
        await awaitable
    except BaseException as exc:
        return exc
    return None


async def test_result_from_open_run_is_report_s_answer(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = _outcomes_dag()
    targets = ["ok", "skipped", "slow"]
    got: dict[str, Any] = {}
    with trio.fail_after(30):
        async with trio_dag.open_run(dag, targets=targets, check=False) as run:
            got["ok"] = await run.result("ok")
            assert trio.current_time() == 1
            for name in ("bad", "skipped"):
                got[name] = await _raised(run.result(name))
            assert trio.current_time() == 2
            run.cancel_task("slow")
            got["slow"] = await _raised(run.result(dag["slow"]))
            with pytest.raises(KeyError, match="not part of this run"):
                await run.result("left-out")
            with pytest.raises(KeyError, match="no-such-task"):
                await run.result("no-such-task")
            with pytest.raises(trio_dag.ForeignHandleError):
                await run.result(trio_dag.DAG().add(work, 0))
            with pytest.raises(TypeError):
                await run.result(3)  # type: ignore[arg-type]
    report = run.report
    assert got["ok"] == report["ok"] == "value"
    for name, kind in (
        ("bad", trio_dag.TaskFailedError),
        ("skipped", trio_dag.TaskSkippedError),
        ("slow", trio_dag.TaskCancelledError),
    ):
        assert type(got[name]) is kind
        with pytest.raises(kind) as caught:
            report[name]
        assert str(caught.value) == str(got[name])
    assert isinstance(got["bad"].__cause__, ValueError)
    # After the run, the answers stay.
    assert await run.result("ok") == "value"


@pytest.mark.parametrize("limit", [1, 2, "limiter"])
async def test_a_task_awaiting_another_gives_back_its_slot(
    dag_core: Any, autojump_clock: MockClock, limit: Any
) -> None:
    if limit == "limiter":
        limit = trio.CapacityLimiter(1)
    active = Active()
    dag = trio_dag.DAG()
    dag.add(awaiting, active, "child", name="parent")
    dag.add(counted, active, 2, "child-value", name="child")
    for k in range(3):
        dag.add(counted, active, 1, k, name=f"other-{k}")
    with trio.fail_after(30):
        report = await trio_dag.run(dag, limit=limit)
    assert report["parent"] == ("got", "child-value")
    cap = 1 if not isinstance(limit, int) else limit
    assert active.peak <= cap
    assert active.now == 0


async def test_a_task_awaiting_a_task_that_waits_for_a_slot(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # Parents await children; every task needs the one slot in turn.
    active = Active()
    dag = trio_dag.DAG()
    for k in range(4):
        dag.add(awaiting, active, f"child-{k}", 0.5, name=f"parent-{k}")
    for k in range(4):
        dag.add(counted, active, 1, k, name=f"child-{k}")
    with trio.fail_after(60):
        report = await trio_dag.run(dag, limit=1)
    assert [report[f"parent-{k}"] for k in range(4)] == [("got", k) for k in range(4)]
    assert active.peak == 1


async def test_awaiting_a_result_in_a_thread(dag_core: Any) -> None:
    def in_thread() -> Any:
        run = trio_dag.current_run()
        return trio.from_thread.run(run.result, "child")

    dag = trio_dag.DAG()
    dag.add(in_thread, name="parent", run_in="thread")
    dag.add(work, 0.01, "child-value", name="child")
    with trio.fail_after(10):
        report = await trio_dag.run(dag, limit=1)
    assert report["parent"] == "child-value"


async def _await(name: str) -> Any:
    return await trio_dag.current_run().result(name)


async def test_awaiting_itself_or_a_dependent_raises_at_once(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    me = dag.add(_await, "me", name="me")
    parent = dag.add(_await, "grandchild", name="parent")
    child = dag.add(work, 0, None, parent, name="child")
    dag.add(work, 0, None, child, name="grandchild")
    a = dag.add(_await, "b", name="a")
    b = dag.add(_await, "a", name="b")
    with trio.fail_after(10):
        report = await trio_dag.run(dag, check=False)
    assert "awaits its own result" in str(report.errors["me"])
    assert "which depends on it" in str(report.errors["parent"])
    assert isinstance(report.errors["me"], RuntimeError)
    # Two tasks awaiting each other: the second to ask is refused.
    states = {report.state(a), report.state(b)}
    assert trio_dag.TaskState.FAILED in states
    failed = a if report.state(a) is trio_dag.TaskState.FAILED else b
    assert "they would wait forever" in str(report.errors[failed.name])
    assert me is not None


@pytest.mark.parametrize("limiter", [False, True])
async def test_timeout_of_a_task_awaiting_a_result(
    dag_core: Any, autojump_clock: MockClock, limiter: bool
) -> None:
    active = Active()
    dag = trio_dag.DAG()
    dag.add(awaiting, active, "slow", name="impatient", timeout=1)
    dag.add(counted, active, 5, "late", name="slow")
    for k in range(3):
        dag.add(counted, active, 1, k, name=f"other-{k}")
    with trio.fail_after(30):
        limit = trio.CapacityLimiter(1) if limiter else 1
        report = await trio_dag.run(dag, limit=limit, check=False)
    assert isinstance(report.errors["impatient"], trio_dag.TaskTimeoutError)
    assert report["slow"] == "late"
    assert active.peak == 1


async def test_fail_fast_cancels_a_task_awaiting_a_result(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    active = Active()
    dag = trio_dag.DAG()
    dag.add(awaiting, active, "slow", name="waiting")
    dag.add(counted, active, 5, name="slow")
    dag.add(boom, 1, name="bad")
    dag.add(counted, active, 1, name="queued")
    with trio.fail_after(30):
        report = await trio_dag.run(dag, limit=2, on_failure="fail_fast", check=False)
    assert report.state("waiting") is trio_dag.TaskState.CANCELLED
    assert report.state("bad") is trio_dag.TaskState.FAILED
    assert active.peak <= 2


@pytest.mark.parametrize("limiter", [False, True])
async def test_cancelling_a_task_awaiting_a_result(
    dag_core: Any, autojump_clock: MockClock, limiter: bool
) -> None:
    active = Active()
    dag = trio_dag.DAG()
    dag.add(awaiting, active, "slow", name="waiting")
    dag.add(counted, active, 5, "late", name="slow")
    for k in range(4):
        dag.add(counted, active, 1, k, name=f"other-{k}")
    with trio.fail_after(30):
        limit = trio.CapacityLimiter(1) if limiter else 1
        async with trio_dag.open_run(dag, limit=limit) as run:
            await trio.sleep(0.5)
            run.cancel_task("waiting")
    report = run.report
    assert report.state("waiting") is trio_dag.TaskState.CANCELLED
    assert report["slow"] == "late"
    assert [report[f"other-{k}"] for k in range(4)] == [0, 1, 2, 3]
    assert active.peak == 1


# -- run.cancel_task ------------------------------------------------------------------


async def _cancel_at(when: float, names: list[str]) -> None:
    await trio.sleep(when)
    run = trio_dag.current_run()
    for name in names:
        run.cancel_task(name)


def _states(report: trio_dag.RunReport) -> dict[str, str]:
    return {h.name: report.state(h).name for h in report}


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
async def test_cancel_task_in_every_situation(
    dag_core: Any, autojump_clock: MockClock, on_failure: str
) -> None:
    async def flaky() -> None:
        await trio.sleep(0.1)
        raise ValueError("again")

    def in_thread() -> str:
        import time

        time.sleep(0.01)
        return "thread done"

    dag = trio_dag.DAG()
    running = dag.add(work, 10, "r", name="running")
    dag.add(work, 1, None, running, name="after-running")
    dag.add(work, 1, "teardown", running, name="teardown", trigger="all_done")
    holder = dag.add(work, 10, None, name="holder", uses={"gpu": 1})
    dag.add(work, 1, None, name="needs-gpu", uses={"gpu": 1})
    dag.add(flaky, name="retrying", retries=3, retry_delay=100)
    dag.add(work, 1, None, holder, name="pending")
    dag.add(_cancel_at, 1, ["running", "needs-gpu", "retrying", "pending", "ready"], name="w")
    dag.add(work, 3, "fine", name="fine")  # starts when retrying waits to retry
    dag.add(work, 1, "ready", name="ready")  # waits for a slot: limit=4
    recorder = trio_dag.testing.Recorder()
    options: dict[str, Any] = dict(limit=4, resources={"gpu": 1}, on_failure=on_failure)
    with trio.fail_after(60):
        report = await trio_dag.run(dag, on_event=recorder, **options)  # check=True: no raise
    states = _states(report)
    assert states == {
        "running": "CANCELLED",
        "after-running": "SKIPPED",
        "teardown": "SUCCEEDED",
        "holder": "SUCCEEDED",
        "needs-gpu": "CANCELLED",
        "retrying": "CANCELLED",
        "pending": "CANCELLED",
        "w": "SUCCEEDED",
        "ready": "CANCELLED",
        "fine": "SUCCEEDED",
    }
    assert not report.ok
    assert report.timing("running").end == 1.0
    assert report.timing("fine").end == 3.1  # the run went on
    assert report.timing("holder").end == 10.0
    cancelled = ["running", "needs-gpu", "retrying", "pending", "ready"]
    trio_dag.testing.check_run(dag, report, recorder, cancelled_tasks=cancelled, **options)


async def test_cancel_task_of_an_ended_task_does_nothing(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    dag.add(work, 1, "a", name="a")
    dag.add(boom, 1, name="bad")
    with trio.fail_after(10):
        async with trio_dag.open_run(dag, check=False) as run:
            await trio.sleep(2)
            run.cancel_task("a")
            run.cancel_task("bad")
            run.cancel_task("a")
        run.cancel_task("a")  # after the run too
    assert _states(run.report) == {"a": "SUCCEEDED", "bad": "FAILED"}
    with pytest.raises(KeyError):
        run.cancel_task("nope")


async def test_a_task_cancels_itself(dag_core: Any, autojump_clock: MockClock) -> None:
    async def quitter() -> None:
        trio_dag.current_run().cancel_task(trio_dag.current_task().name)
        await trio.sleep(1)
        raise AssertionError("not cancelled")

    dag = trio_dag.DAG()
    q = dag.add(quitter, name="quitter")
    dag.add(work, 1, None, q, name="after")
    dag.add(work, 2, "other", name="other")
    with trio.fail_after(10):
        report = await trio_dag.run(dag, limit=1)
    assert _states(report) == {"quitter": "CANCELLED", "after": "SKIPPED", "other": "SUCCEEDED"}


async def test_cancel_a_thread_ends_when_it_returns(dag_core: Any) -> None:
    import threading

    release = threading.Event()

    def blocked() -> str:
        release.wait(10)
        return "late"

    dag = trio_dag.DAG()
    dag.add(blocked, name="thread", run_in="thread")
    with trio.fail_after(10):
        async with trio_dag.open_run(dag) as run:
            await trio.sleep(0.01)
            run.cancel_task("thread")
            await trio.sleep(0.01)
            assert run.counts.running == 1  # it cannot be interrupted
            release.set()
    assert run.report.state("thread") is trio_dag.TaskState.CANCELLED


async def test_cancel_task_many_tasks_of_a_fast_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # Bodies on the engine's fast path (async, no options), cancelled while they sleep.
    dag = trio_dag.DAG()
    for k in range(50):
        dag.add(work, 1 + k % 3, k, name=f"t{k}")
    with trio.fail_after(30):
        async with trio_dag.open_run(dag, limit=10) as run:
            await trio.sleep(0.5)
            for k in range(0, 50, 2):
                run.cancel_task(f"t{k}")
    report = run.report
    for k in range(50):
        expected = "CANCELLED" if k % 2 == 0 else "SUCCEEDED"
        assert report.state(f"t{k}").name == expected
    assert report.stats.peak_concurrency <= 10


# -- policy="depth_first" --------------------------------------------------------------


def _pipeline(items: int, steps: int) -> trio_dag.DAG:
    dag = trio_dag.DAG()
    for i in range(items):
        prev = None
        for s in range(steps):
            args = () if prev is None else (prev,)
            prev = dag.add(work, 1, f"{i}.{s}", *args, name=f"item{i}-step{s}")
    return dag


async def test_depth_first_takes_each_item_through_its_steps(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = _pipeline(3, 3)
    recorder = trio_dag.testing.Recorder()
    with trio.fail_after(60):
        report = await trio_dag.run(dag, limit=1, policy="depth_first", on_event=recorder)
    started = [e.task.name for e in recorder.events if isinstance(e, TaskStarted)]
    assert started == [f"item{i}-step{s}" for i in range(3) for s in range(3)]
    # The first item is done after its own steps, not after every item's first step.
    assert report.timing("item0-step2").end == 3
    trio_dag.testing.check_run(dag, report, recorder, limit=1, policy="depth_first")


async def test_depth_first_keys_deeper_first_ties_in_insertion_order(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    a = dag.add(work, 1, None, name="a")
    b = dag.add(work, 1, None, name="b")
    dag.add(work, 1, None, a, b, name="ab")  # level 1
    c = dag.add(work, 1, None, a, name="c")  # level 1
    dag.add(work, 1, None, c, name="d")  # level 2
    dag.add(work, 1, None, name="e")  # level 0
    recorder = trio_dag.testing.Recorder()
    with trio.fail_after(60):
        report = await trio_dag.run(dag, limit=1, policy="depth_first", on_event=recorder)
    started = [e.task.name for e in recorder.events if isinstance(e, TaskStarted)]
    assert started == ["a", "c", "d", "b", "ab", "e"]
    trio_dag.testing.check_run(dag, report, recorder, limit=1, policy="depth_first")


def test_depth_first_key() -> None:
    from trio_dag._policies import DEPTH_STEP, depth_first_key

    assert depth_first_key(0, 0) == 0.0
    assert depth_first_key(1, 5) < depth_first_key(0, 0) < depth_first_key(0, 1)
    big = depth_first_key(2**20, 2**31 - 2)
    assert big == (2**31 - 2) - 2**20 * DEPTH_STEP
    assert int(big) == big  # exact


async def test_check_run_catches_a_wrong_depth_first_order(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = _pipeline(2, 2)
    recorder = trio_dag.testing.Recorder()
    with trio.fail_after(60):
        report = await trio_dag.run(dag, limit=1, policy="fifo", on_event=recorder)
    with pytest.raises(AssertionError, match="rule 'policy' broken"):
        trio_dag.testing.check_run(dag, report, recorder, limit=1, policy="depth_first")


# -- run.as_completed ---------------------------------------------------------------


async def test_as_completed_yields_in_finish_order(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    dag.add(work, 3, "c", name="c")
    dag.add(work, 1, "a", name="a")
    bad = dag.add(boom, 2, name="bad")
    dag.add(work, 1, None, bad, name="skipped")
    dag.add(work, 9, None, name="cancelled")
    seen: list[tuple[str, Any]] = []
    with trio.fail_after(60):
        async with trio_dag.open_run(dag, check=False) as run:
            async for handle, result in run.as_completed():
                seen.append((handle.name, result))
                if handle.name == "c":
                    run.cancel_task("cancelled")
    names = [name for name, _ in seen]
    assert names == ["a", "bad", "skipped", "c", "cancelled"]
    report = run.report
    for name, result in seen:
        expected = report.outcome(name)
        assert type(result) is type(expected)
        if isinstance(result, outcome.Value):
            assert result.value == expected.value
        else:
            assert type(result.error) is type(expected.error)


async def test_as_completed_starts_with_what_ended_before(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    first = dag.add(work, 0, "first", name="first")  # ends in the fast loop
    dag.add(boom, 1, name="bad")
    dag.add(work, 1, None, name="after-bad", after=["bad"])
    dag.add(work, 2, "second", first, name="second")
    dag.add(work, 5, "last", name="last")
    with trio.fail_after(60):
        report = await trio_dag.run(dag, check=False)
        async with trio_dag.open_run(dag, check=False) as run:
            await trio.sleep(3)
            names = [h.name async for h, _ in run.as_completed()]
    assert names == ["first", "bad", "after-bad", "second", "last"]
    ends = sorted(report, key=lambda h: report.timing(h).end or -1)
    assert names[-1] == ends[-1].name


async def test_as_completed_of_some_tasks_from_inside_a_task(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def gather() -> list[tuple[str, Any]]:
        run = trio_dag.current_run()
        return [(h.name, r.unwrap()) async for h, r in run.as_completed(["x", "y"])]

    dag = trio_dag.DAG()
    dag.add(gather, name="gather")
    dag.add(work, 2, "x", name="x")
    dag.add(work, 1, "y", name="y")
    dag.add(work, 9, "z", name="z")
    with trio.fail_after(60):
        report = await trio_dag.run(dag, limit=1)
    assert report["gather"] == [("x", "x"), ("y", "y")]  # one slot: x first (fifo)
    assert report.timing("gather").end == 3


async def test_depth_first_as_completed_gives_the_first_item_early(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = _pipeline(4, 3)
    with trio.fail_after(60):
        async with trio_dag.open_run(dag, limit=2, policy="depth_first") as run:
            async for handle, result in run.as_completed():
                if handle.name.endswith("step2"):
                    first = (handle.name, result.unwrap(), trio.current_time())
                    break
    assert first[0] in ("item0-step2", "item1-step2")
    assert first[2] == 3


# -- random runs with tasks cancelled at random moments ---------------------------------

from _reliability import RESOURCES, on_mock_clock, real_options, run_options  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_suite = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _descendants(dag: trio_dag.DAG, roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for h in dag:
        for d in dag.dependencies(h):
            children.setdefault(d.index, []).append(h.index)
    seen = set(roots)
    stack = list(roots)
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def _draw_cancels(data: st.DataObject, names: list[str]) -> list[tuple[int, str]]:
    """Up to 4 (moment in half seconds, task name) pairs to cancel at."""
    if not names:
        return []
    return data.draw(
        st.lists(st.tuples(st.integers(0, 8), st.sampled_from(names)), max_size=4),
        label="cancels (half seconds, task)",
    )


@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@_suite
@given(
    dag=trio_dag.testing.dags(priorities=True, max_tasks=12, resources=RESOURCES),
    options=run_options(),
    data=st.data(),
)
def test_cancelling_random_tasks_at_random_moments(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any], data: st.DataObject
) -> None:
    names = [h.name for h in dag]
    picks = _draw_cancels(data, names)
    # The watcher cancels each drawn task at its drawn moment: a task of the run
    # itself (through current_run) when the run has no limit, else the block of
    # open_run. In the run without cancels it does nothing.
    inside = options["limit"] is None and data.draw(st.booleans(), label="watcher inside")
    plan: list[tuple[int, str]] = []
    called: list[str] = []

    asked: dict[str, float] = {}  # when each task was first asked to cancel

    async def watch(run: trio_dag.Run) -> None:
        for at, name in sorted(plan):
            await trio.sleep_until(at / 2)
            run.cancel_task(name)
            called.append(name)
            asked.setdefault(name, trio.current_time())
            assert run.counts.total == len(names) + inside

    async def watcher() -> None:
        await watch(trio_dag.current_run())

    if inside:
        dag.add(watcher, name="watcher")
    recorder = trio_dag.testing.Recorder()
    used: dict[str, Any] = {}

    async def main() -> trio_dag.RunReport:
        used.update(real_options(options))
        plan[:] = picks
        async with trio_dag.open_run(dag, check=False, on_event=recorder, **used) as run:
            if not inside:
                await watch(run)
        return run.report

    async def baseline() -> trio_dag.RunReport:
        plan[:] = []
        return await trio_dag.run(dag, check=False, **real_options(options))

    report = on_mock_clock(main)
    cancelled = sorted(set(called))
    trio_dag.testing.check_run(dag, report, recorder, cancelled_tasks=cancelled, **used)
    states = {h.name: report.state(h) for h in dag}
    # Only the cancelled tasks and what depends on them are affected: in a run
    # that nothing else stops, the other tasks end as they do without cancels.
    plain = on_mock_clock(baseline)
    if options["on_failure"] == "skip" and not plain.cancelled:
        hit = {
            dag[name].index for name in cancelled if states[name] is trio_dag.TaskState.CANCELLED
        }
        affected = _descendants(dag, hit)
        for h in dag:
            if h.index not in affected:
                assert states[h.name] is plain.state(h), h.name
            elif h.index not in hit:
                assert (
                    states[h.name]
                    in (
                        trio_dag.TaskState.SKIPPED,
                        plain.state(h),
                    )
                    or dag.options(h).trigger == "all_done"
                ), h.name
    # A task asked to cancel that did not end CANCELLED had ended by then (or
    # its body returned before the cancellation reached it). "Then" is when
    # the watcher asked: a watcher inside the run may itself start late (a
    # policy or strategy that holds it back), after its drawn moment.
    for name, when in asked.items():
        if states[name] is not trio_dag.TaskState.CANCELLED:
            timing = report.timing(name)
            ended = timing.end if timing.end is not None else -1.0  # SKIPPED: never ran
            assert ended <= when or states[name] is trio_dag.TaskState.SKIPPED, name


async def test_as_completed_reads_back_ends_of_the_fast_loop(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def late() -> list[str]:
        await trio.sleep(1)
        run = trio_dag.current_run()
        return [h.name async for h, _ in run.as_completed(["b", "a", "bad", "skipped"])]

    async def instant(value: str, *deps: Any) -> str:
        return value

    async def fails() -> None:
        raise ValueError("no")

    dag = trio_dag.DAG()
    dag.add(late, name="late")
    b = dag.add(instant, "b", name="b")
    dag.add(instant, "a", b, name="a")
    bad = dag.add(fails, name="bad")
    dag.add(instant, "s", bad, name="skipped")
    with trio.fail_after(10):
        report = await trio_dag.run(dag, check=False)  # no options: the fast loop
    # In the order they ended (Trio's scheduling decides whether b or bad runs
    # first): the attempts by the loop's end order, skipped right after bad.
    ran = sorted(["b", "a", "bad"], key=lambda name: report._end_order[dag[name].index])
    expected = [x for name in ran for x in ([name, "skipped"] if name == "bad" else [name])]
    assert report["late"] == expected


@pytest.mark.parametrize("when", [0.5, 1.5])
async def test_cancel_task_of_a_batched_task(
    dag_core: Any, autojump_clock: MockClock, when: float
) -> None:
    # At 0.5 the batch waits for more tasks (max_delay=1): d1, which joined
    # it, leaves it. At 1.5 the call (from 1 to 3) is under way: d1 ends
    # CANCELLED now and its result is dropped. Either way the call serves
    # d0 and d2, and its opener d0 cannot be cancelled alone while it waits.
    @trio_dag.batched(max_size=4, max_delay=1)
    async def double(items: list[int]) -> list[int]:
        await trio.sleep(2)
        return [2 * x for x in items]

    dag = trio_dag.DAG()
    for k in range(3):
        dag.add(double, k, name=f"d{k}")
    dag.add(double, 9, name="later", after=["d0"])
    dag.add(double, 5, name="after_d1", after=["d1"])
    recorder = trio_dag.testing.Recorder()
    with trio.fail_after(30):
        async with trio_dag.open_run(dag, on_event=recorder) as run:
            await trio.sleep(when)
            if when < 1:
                with pytest.raises(RuntimeError, match="cannot be cancelled alone"):
                    run.cancel_task("d0")
            run.cancel_task("d1")
            assert run.counts.cancelled == 1 and run.counts.skipped == 1
            run.cancel_task("later")  # not started: fine
    report = run.report
    assert [report.state(f"d{k}") for k in range(3)] == [
        trio_dag.TaskState.SUCCEEDED,
        trio_dag.TaskState.CANCELLED,
        trio_dag.TaskState.SUCCEEDED,
    ]
    assert report["d0"] == 0 and report["d2"] == 4
    assert report.state("after_d1") is trio_dag.TaskState.SKIPPED
    assert report.state("later") is trio_dag.TaskState.CANCELLED
    started = {e.task.name for e in recorder.events if isinstance(e, TaskStarted)}
    assert ("d1" in started) == (when > 1)
    trio_dag.testing.check_run(dag, report, recorder, cancelled_tasks=["d1", "later"])


@pytest.mark.parametrize("limit", [1, 2])
async def test_a_chain_of_tasks_awaiting_each_other(
    dag_core: Any, autojump_clock: MockClock, limit: int
) -> None:
    async def relay(k: int) -> int:
        await trio.sleep(0.5)
        if k == 4:
            return 0
        return await trio_dag.current_run().result(f"r{k + 1}") + 1

    dag = trio_dag.DAG()
    for k in range(5):
        dag.add(relay, k, name=f"r{k}")
    with trio.fail_after(30):
        report = await trio_dag.run(dag, limit=limit)
    assert [report[f"r{k}"] for k in range(5)] == [4, 3, 2, 1, 0]


@_suite
@given(
    waits=st.lists(st.lists(st.integers(1, 7), max_size=3), min_size=1, max_size=8),
    seconds=st.lists(st.integers(0, 3), min_size=8, max_size=8),
    limit=st.sampled_from([1, 2, 3, "limiter"]),
)
def test_random_tasks_awaiting_later_ones_finish_within_the_limit(
    dag_core: Any, waits: list[list[int]], seconds: list[int], limit: Any
) -> None:
    # Task k awaits the results of tasks after it (never a cycle), between sleeps.
    n = len(waits)
    active = Active()

    async def body(k: int) -> int:
        run = trio_dag.current_run()
        total = k
        active.enter()
        try:
            await trio.sleep(seconds[k] / 2)
        finally:
            active.leave()
        for step in waits[k]:
            j = k + step
            if j < n:
                total += await run.result(f"k{j}")
        active.enter()
        try:
            await trio.sleep(seconds[k] / 2)
        finally:
            active.leave()
        return total

    dag = trio_dag.DAG()
    for k in range(n):
        dag.add(body, k, name=f"k{k}")

    async def main() -> trio_dag.RunReport:
        cap = trio.CapacityLimiter(2) if limit == "limiter" else limit
        return await trio_dag.run(dag, limit=cap)

    report = on_mock_clock(main)
    expected: list[int] = [0] * n
    for k in reversed(range(n)):
        expected[k] = k + sum(expected[k + s] for s in waits[k] if k + s < n)
    assert [report[f"k{k}"] for k in range(n)] == expected
    assert active.peak <= (2 if limit == "limiter" else limit)


def test_cancelling_a_retry_as_it_falls_due_lets_the_run_end(dag_core: Any) -> None:
    # The retry timer and the cancelling task wake at the same instant, in an
    # order Trio picks at random: when the retry was handed to a worker first,
    # that worker ended it CANCELLED as the run's last task and left, and an
    # idle worker waited on, so the run never ended. Repeated for both orders.
    async def body() -> None:
        await trio.sleep(2)

    async def canceller() -> None:
        await trio.sleep(4)
        trio_dag.current_run().cancel_task("t0")

    for _ in range(20):
        dag = trio_dag.DAG()
        dag.add(body, name="t0", retries=1, retry_delay=2, timeout=2, uses={"gpu": 0.1})

        dag.add(canceller, name="w")

        async def main(dag: trio_dag.DAG = dag) -> trio_dag.RunReport:
            with trio.fail_after(100):
                return await trio_dag.run(dag, resources={"gpu": 2.0}, check=False)

        report = trio.run(main, clock=MockClock(autojump_threshold=0))
        assert report.state("t0") == trio_dag.TaskState.CANCELLED
        assert report.state("w") == trio_dag.TaskState.SUCCEEDED


@_suite
@given(
    dag=trio_dag.testing.dags(max_tasks=12, batched=True, resources=RESOURCES),
    options=run_options(),
    data=st.data(),
)
def test_cancelling_random_batched_tasks_keeps_the_rules(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any], data: st.DataObject
) -> None:
    # Tasks of @batched functions, cancelled alone at random moments: before
    # their batch is called they leave it, during the call their result is
    # dropped; an opener holding the call's uses (or waiting for more) refuses.
    names = [h.name for h in dag]
    picks = _draw_cancels(data, names)
    called: list[str] = []
    recorder = trio_dag.testing.Recorder()
    used = real_options(options)

    async def main() -> trio_dag.RunReport:
        async with trio_dag.open_run(dag, check=False, on_event=recorder, **used) as run:
            for at, name in sorted(picks):
                await trio.sleep_until(at / 2)
                try:
                    run.cancel_task(name)
                except RuntimeError as error:
                    assert "cannot be cancelled alone" in str(error)
                else:
                    called.append(name)
        return run.report

    report = on_mock_clock(main)
    trio_dag.testing.check_run(dag, report, recorder, cancelled_tasks=sorted(set(called)), **used)
    for name in called:
        assert report.state(name) in (
            trio_dag.TaskState.CANCELLED,
            trio_dag.TaskState.SUCCEEDED,
            trio_dag.TaskState.FAILED,
            trio_dag.TaskState.SKIPPED,
        )

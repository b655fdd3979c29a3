"""When tasks fail: skip and fail_fast, all_done outcomes, retries, timeouts,
callbacks that raise, and BaseExceptions from tasks (SPEC section 3).

Every test runs the engine on both cores (``dag_core``) on a MockClock.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import outcome
import pytest
import trio
from _engine_probe import Probe, add_nap
from trio.testing import MockClock

import trio_dag
import trio_dag.testing
from trio_dag import TaskState
from trio_dag.events import Event, TaskFinished, TaskRetrying


async def flaky(probe: Probe, seconds: float, fails: int, *deps: Any) -> str:
    """Fail the first *fails* attempts (each after *seconds*), then succeed."""
    task = trio_dag.current_task()
    with probe.attempt():
        await trio.sleep(seconds)
        if task.attempt <= fails:
            raise ValueError(f"attempt {task.attempt}")
    return task.name


def collect(*deps: Any, **named: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """An all_done body: return the outcomes it was given."""
    return deps, named


def _error_type(o: outcome.Outcome[Any]) -> type[BaseException]:
    assert isinstance(o, outcome.Error)
    return type(o.error)


# -- on_failure="skip" -------------------------------------------------------------


async def test_skip_ends_dependents_skipped_at_once_and_others_go_on(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    finished: dict[str, tuple[TaskState, float]] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFinished):
            finished[event.task.name] = (event.state, event.time - probe.t0)

    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 1, fail=ValueError("bad"))
    child = add_nap(dag, probe, "child", 1, bad)
    grand = add_nap(dag, probe, "grand", 1, child)
    side = add_nap(dag, probe, "side", 3)
    cleanup = dag.add(collect, child, bad, side, name="cleanup", trigger="all_done")
    after_cleanup = add_nap(dag, probe, "after-cleanup", 1, cleanup)
    failing_cleanup = add_nap(
        dag, probe, "failing-cleanup", 1, grand, trigger="all_done", fail=OSError("cleanup failed")
    )
    after_failing = add_nap(dag, probe, "after-failing", 1, failing_cleanup)
    report = await trio_dag.run(dag, check=False, on_event=on_event)
    assert finished["child"] == finished["grand"] == (TaskState.SKIPPED, 1)
    assert finished["side"] == (TaskState.SUCCEEDED, 3)
    assert report.failed == [bad, failing_cleanup]
    assert report.skipped == [child, grand, after_failing]
    assert report.succeeded == [side, cleanup, after_cleanup]
    deps, _ = report[cleanup]
    assert _error_type(deps[0]) is trio_dag.TaskSkippedError
    assert deps[1].error is report.errors["bad"]
    assert deps[2] == outcome.Value("side")
    assert probe.start("after-cleanup") == 3
    assert "child" not in probe.spans
    assert report.cancelled == []


async def test_all_done_task_receives_outcomes_wherever_the_handles_are(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    ok = add_nap(dag, probe, "ok", 1)
    bad = add_nap(dag, probe, "bad", 2, fail=KeyError("k"))
    skipped = add_nap(dag, probe, "skipped", 1, bad)
    seen = dag.add(
        collect, [ok, {"x": (bad,)}], name="seen", kwargs={"s": skipped}, trigger="all_done"
    )
    report = await trio_dag.run(dag, check=False)
    (listed,), named = report[seen]
    assert listed[0] == outcome.Value("ok") == report.outcome(ok)
    assert listed[1]["x"][0].error is report.errors["bad"] is report.outcome(bad).error
    assert isinstance(listed[1]["x"][0].error, KeyError)
    skipped_error = named["s"].error
    assert isinstance(skipped_error, trio_dag.TaskSkippedError)
    assert skipped_error.task == "skipped"
    assert skipped_error.dependency == "bad"
    assert _error_type(report.outcome(skipped)) is trio_dag.TaskSkippedError
    assert report.state(seen) is TaskState.SUCCEEDED


# -- on_failure="fail_fast" ----------------------------------------------------------


async def test_fail_fast_cancels_the_rest_but_runs_teardown(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 2, fail=ValueError("first"))
    slow = add_nap(dag, probe, "slow", 10)
    waiting = add_nap(dag, probe, "waiting", 1)  # ready, but no slot (limit=2)
    after_slow = add_nap(dag, probe, "after-slow", 1, slow)
    teardown = dag.add(collect, slow, bad, after_slow, name="teardown", trigger="all_done")
    td_probe = add_nap(dag, probe, "td-probe", 3, after_slow, trigger="all_done")
    after_teardown = add_nap(dag, probe, "after-teardown", 1, teardown)
    with pytest.raises(trio_dag.RunFailedError) as info:
        await trio_dag.run(dag, limit=2, on_failure="fail_fast")
    report = info.value.report
    assert [e.task for e in info.value.exceptions] == ["bad"]
    assert probe.running == set()
    assert probe.end("slow") == 2  # cancelled at the failure
    assert report.cancelled == [slow, waiting, after_slow, after_teardown]
    assert "waiting" not in probe.spans and "after-slow" not in probe.spans
    assert report.state(teardown) is report.state(td_probe) is TaskState.SUCCEEDED
    assert probe.start("td-probe") >= 2
    deps, _ = report[teardown]
    assert [_error_type(o) for o in deps] == [
        trio_dag.TaskCancelledError,
        ValueError,
        trio_dag.TaskCancelledError,
    ]
    assert report.stats.makespan == 2 + 3


@pytest.mark.parametrize("stop", ["fail_fast", "cancel"])
async def test_a_task_given_a_shared_limiter_s_token_as_the_run_stops_never_starts(
    dag_core: Any, autojump_clock: MockClock, stop: str
) -> None:
    # The caller holds one of the limiter's 3 tokens; "boom" (first to start)
    # takes one, "a" or "b" (Trio picks) the last, and the other waits for a
    # token. At 1 s "boom" gives the caller's token back, which hands it to
    # the waiting task, and in the same step stops the run: by failing
    # (fail_fast) or by run.cancel(). The waiting task was woken with its
    # token before the stop cancelled it, so its wait ended without
    # Cancelled: it must still not start (it did), and its token goes back.
    limiter = trio.CapacityLimiter(3)
    await limiter.acquire_on_behalf_of("caller")

    async def boom() -> None:
        await trio.sleep(1)
        limiter.release_on_behalf_of("caller")
        if stop == "cancel":
            trio_dag.current_run().cancel()
            await trio.sleep(0)
        raise ValueError("boom")

    async def nap() -> None:
        await trio.sleep(5)

    dag = trio_dag.DAG()
    dag.add(boom, name="boom")
    pair = [dag.add(nap, name="a"), dag.add(nap, name="b")]
    recorder = trio_dag.testing.Recorder()
    options: dict[str, Any] = {"limit": limiter, "on_failure": "fail_fast"}
    with trio.fail_after(60):
        report = await trio_dag.run(dag, on_event=recorder, check=False, **options)
    assert [report.state(h) for h in pair] == [TaskState.CANCELLED] * 2
    assert sorted(report.timing(h).start is None for h in pair) == [False, True]
    assert limiter.borrowed_tokens == 0
    trio_dag.testing.check_run(dag, report, recorder, cancelled=stop == "cancel", **options)


async def test_fail_fast_lets_a_running_teardown_finish(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # SPEC: the first failure cancels every running task "except all_done tasks
    # (teardown) whose dependencies have all ended"; "every other task that
    # had not ended (running, or never started) ends CANCELLED".
    probe = Probe()
    dag = trio_dag.DAG()
    setup = add_nap(dag, probe, "setup", 1)
    add_nap(dag, probe, "teardown", 4, setup, trigger="all_done")  # runs 1..5
    add_nap(dag, probe, "bad", 2, fail=ValueError("x"))
    report = await trio_dag.run(dag, on_failure="fail_fast", check=False)
    assert report.state("teardown") is TaskState.SUCCEEDED
    assert probe.end("teardown") == 5


async def test_fail_fast_does_not_count_a_failure_that_is_retried(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    dag.add(flaky, probe, 1, 1, name="flaky", retries=1)
    add_nap(dag, probe, "slow", 5)
    report = await trio_dag.run(dag, on_failure="fail_fast")
    assert report.ok
    assert probe.end("slow") == 5


async def test_failure_during_teardown_is_reported(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 1, fail=ValueError("first"))
    td1 = add_nap(dag, probe, "td1", 1, bad, trigger="all_done", fail=OSError("td"))
    td2 = add_nap(dag, probe, "td2", 2, bad, trigger="all_done")
    report = await trio_dag.run(dag, on_failure="fail_fast", check=False)
    assert report.failed == [bad, td1]
    assert report.state(td2) is TaskState.SUCCEEDED
    assert probe.end("td2") == 3


async def test_fail_fast_starts_teardown_in_the_order_the_events_made_it_ready(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # "bad" fails before "pending" starts. The events tell bad FAILED, then
    # pending CANCELLED, so under fifo td-bad (ready at the failure) comes
    # before td-pending (ready at the cancellation), though the core cancels
    # pending tasks before it is told of the failure.
    probe = Probe()
    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 0, fail=ValueError("x"))
    pending = add_nap(dag, probe, "pending", 1)
    add_nap(dag, probe, "td-pending", 1, pending, trigger="all_done")
    add_nap(dag, probe, "td-bad", 1, bad, trigger="all_done")
    recorder = trio_dag.testing.Recorder()
    options: dict[str, Any] = {"limit": 1, "on_failure": "fail_fast"}
    report = await trio_dag.run(dag, check=False, on_event=recorder, **options)
    trio_dag.testing.check_run(dag, report, recorder, **options)
    assert report.state(pending) is TaskState.CANCELLED
    assert (probe.start("td-bad"), probe.start("td-pending")) == (0, 1)


# -- retries --------------------------------------------------------------------------


async def test_retries_wait_with_backoff(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    events: list[Event] = []
    dag = trio_dag.DAG()
    h = dag.add(flaky, probe, 1, 3, name="h", retries=3, retry_delay=1, retry_backoff=3)
    report = await trio_dag.run(dag, on_event=events.append)
    assert report[h] == "h"
    # attempts take 1 s; delays 1, 3, 9
    assert [s for s, _ in probe.spans["h"]] == [0, 2, 6, 16]
    retrying = [e for e in events if isinstance(e, TaskRetrying)]
    assert [(e.attempt, e.delay, str(e.error)) for e in retrying] == [
        (1, 1, "attempt 1"),
        (2, 3, "attempt 2"),
        (3, 9, "attempt 3"),
    ]
    timing = report.timing(h)
    assert (timing.start, timing.end, timing.attempts, timing.duration) == (0, 17, 4, 17)


async def test_retries_exhausted_fail_with_the_last_error(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    h = dag.add(flaky, probe, 1, 99, name="h", retries=2)
    report = await trio_dag.run(dag, check=False)
    assert report.state(h) is TaskState.FAILED
    assert str(report.errors["h"]) == "attempt 3"
    assert [s for s, _ in probe.spans["h"]] == [0, 1, 2]  # no delay by default
    assert report.timing(h).attempts == 3


async def test_retry_on_selects_what_is_retried(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    no = dag.add(flaky, probe, 1, 1, name="no", retries=3, retry_on=KeyError)
    yes = dag.add(flaky, probe, 1, 1, name="yes", retries=3, retry_on=(KeyError, ValueError))
    report = await trio_dag.run(dag, check=False)
    assert report.state(no) is TaskState.FAILED
    assert len(probe.spans["no"]) == 1
    assert report[yes] == "yes"
    assert len(probe.spans["yes"]) == 2


async def test_retrying_task_holds_no_limit_slot(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    dag.add(flaky, probe, 1, 1, name="x", retries=1, retry_delay=5)
    add_nap(dag, probe, "y", 3)
    add_nap(dag, probe, "z", 3)
    report = await trio_dag.run(dag, limit=1)
    assert probe.start("y") == 1  # while x waits out its delay
    assert probe.start("z") == 4
    assert probe.start("x", 2) == 7  # due at 6, then waits for the slot
    assert report.ok


async def test_retrying_task_holds_none_of_its_uses(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    dag.add(flaky, probe, 1, 1, name="x", retries=1, retry_delay=5, uses={"A": 1})
    add_nap(dag, probe, "y", 3, uses={"A": 1})
    report = await trio_dag.run(dag, resources={"A": 1})
    assert probe.start("y") == 1
    assert probe.start("x", 2) == 6
    assert report.ok


# One DAG under every policy: its priority= counts under "priority" only.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@pytest.mark.parametrize(
    ("policy", "expected"),
    [("priority", ["x", "y", "x", "z", "w"]), ("fifo", ["x", "y", "z", "w", "x"])],
)
async def test_retry_takes_its_slot_again_in_policy_order(
    dag_core: Any, autojump_clock: MockClock, policy: str, expected: list[str]
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    dag.add(flaky, probe, 1, 1, name="x", retries=1, retry_delay=1, priority=5)
    add_nap(dag, probe, "y", 2, priority=4)
    add_nap(dag, probe, "z", 1, priority=1)
    add_nap(dag, probe, "w", 1, priority=0)
    await trio_dag.run(dag, limit=1, policy=policy)
    assert probe.started == expected


async def fail_first_attempt(started: list[tuple[str, int]], *deps: Any) -> str:
    """Fail the first attempt at once, succeed the next."""
    task = trio_dag.current_task()
    started.append((task.name, task.attempt))
    if task.attempt == 1:
        raise ValueError("first attempt")
    return task.name


PRIORITY = {"t0": 1, "t1": 3, "t2": 0, "t3": 2}
COST = {"t0": 2.0, "t1": 1.0, "t2": 4.0, "t3": 3.0}
KEY = {"t0": 2, "t1": 0, "t2": 3, "t3": 1}


# One DAG under every policy: its priority= counts under "priority" only.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@pytest.mark.parametrize(
    ("policy", "order"),
    [
        ("fifo", ["t0", "t1", "t2", "t3"]),
        ("lifo", ["t3", "t2", "t1", "t0"]),
        ("priority", ["t1", "t3", "t0", "t2"]),
        ("critical_path", ["t2", "t3", "t0", "t1"]),
        (lambda h: KEY[h.name], ["t1", "t3", "t0", "t2"]),
    ],
    ids=["fifo", "lifo", "priority", "critical_path", "key"],
)
@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
def test_retries_due_at_once_restart_in_policy_order(
    dag_core: Any, policy: Any, order: list[str], on_failure: str
) -> None:
    # SPEC: with limit=1 the start order is fully determined, and a retry
    # takes its slot again "in policy order, when its delay is over". The
    # four tasks fail at once and fall due at once; each run is a new
    # trio.run, whose scheduler picks its own order of wake-ups.
    seen = set()
    for _ in range(30):
        started: list[tuple[str, int]] = []
        dag = trio_dag.DAG()
        for name in sorted(order):
            dag.add(
                fail_first_attempt,
                started,
                name=name,
                retries=1,
                retry_delay=5,
                priority=PRIORITY[name],
                cost=COST[name],
            )

        async def main(dag: trio_dag.DAG = dag) -> trio_dag.RunReport:
            with trio.fail_after(60):
                return await trio_dag.run(dag, limit=1, policy=policy, on_failure=on_failure)

        report = trio.run(main, clock=MockClock(autojump_threshold=0))
        assert report.ok
        seen.add(tuple(started))
    expected = [(name, 1) for name in order] + [(name, 2) for name in order]
    assert seen == {tuple(expected)}


async def _sleep_one(started: list[tuple[str, int]], nursery: bool, *deps: Any) -> str:
    task = trio_dag.current_task()
    started.append((task.name, task.attempt))
    if nursery:
        # Its end reaches the engine one scheduler batch after the sleep's.
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.sleep, 1)
    else:
        await trio.sleep(1)
    return task.name


@pytest.mark.parametrize(
    ("policy", "order"),
    [
        ("fifo", ["a", "x", "a", "y"]),
        ("lifo", ["a", "x", "y", "a"]),
        ("priority", ["a", "x", "a", "y"]),
    ],
)
@pytest.mark.parametrize("nursery", [False, True], ids=["sleep", "nursery"])
# One DAG for every policy: its priorities matter only under "priority".
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
def test_a_retry_due_as_a_task_ends_is_ready_before_the_tasks_dependents(
    dag_core: Any, policy: str, order: list[str], nursery: bool
) -> None:
    # With limit=1: "a" starts first, fails at once and falls due at t=1, the
    # instant "x" ends and makes "y" ready. The retry counts as ready first
    # (fifo: it starts first; lifo: last; priority: a tie, broken by who was
    # ready first), on every run, whichever of the retry timer and x's body
    # Trio wakes first.
    seen = set()
    for _ in range(30):
        started: list[tuple[str, int]] = []
        dag = trio_dag.DAG()
        a = partial(fail_first_attempt, started)
        if policy != "lifo":  # "a" must start first: added first, or last under lifo
            dag.add(a, name="a", retries=1, retry_delay=1, priority=2)
        x = dag.add(_sleep_one, started, nursery, name="x", priority=1)
        if policy == "lifo":
            dag.add(a, name="a", retries=1, retry_delay=1, priority=2)
        dag.add(_sleep_one, started, False, x, name="y", priority=2)

        async def main(dag: trio_dag.DAG = dag) -> trio_dag.RunReport:
            with trio.fail_after(60):
                return await trio_dag.run(dag, limit=1, policy=policy)

        assert trio.run(main, clock=MockClock(autojump_threshold=0)).ok
        seen.add(tuple(name for name, _ in started))
    assert seen == {tuple(order)}, f"{policy}: {sorted(seen)}"


async def test_fail_fast_cancels_a_task_waiting_to_retry(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    events: list[Event] = []
    dag = trio_dag.DAG()
    x = dag.add(flaky, probe, 1, 1, name="x", retries=1, retry_delay=10)
    add_nap(dag, probe, "bad", 2, fail=ValueError("bad"))
    report = await trio_dag.run(dag, on_failure="fail_fast", check=False, on_event=events.append)
    assert report.state(x) is TaskState.CANCELLED
    assert report.stats.makespan == 2
    assert len(probe.spans["x"]) == 1
    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert [(e.task.name, e.state, e.time) for e in finished] == [
        ("bad", TaskState.FAILED, 2),
        ("x", TaskState.CANCELLED, 2),
    ]


async def test_fail_fast_lets_a_teardown_retry_after_its_delay(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    setup = add_nap(dag, probe, "setup", 1)
    td = dag.add(flaky, probe, 1, 1, setup, name="td", trigger="all_done", retries=1, retry_delay=3)
    add_nap(dag, probe, "bad", 3, fail=ValueError("bad"))
    report = await trio_dag.run(dag, on_failure="fail_fast", check=False)
    assert report.state(td) is TaskState.SUCCEEDED
    assert probe.spans["td"] == [(1, 2), (5, 6)]


@pytest.mark.parametrize("delay", [0, 2])
async def test_on_event_raising_on_a_retry_cancels_the_retry(
    dag_core: Any, autojump_clock: MockClock, delay: float
) -> None:
    probe = Probe()

    def on_event(event: Event) -> None:
        if isinstance(event, TaskRetrying):
            raise RuntimeError("no retries, please")

    dag = trio_dag.DAG()
    x = dag.add(flaky, probe, 1, 1, name="x", retries=1, retry_delay=delay)
    with trio.fail_after(60), pytest.raises(trio_dag.CallbackError):
        async with trio_dag.open_run(dag, on_event=on_event) as run:
            pass
    assert run.report.state(x) is TaskState.CANCELLED
    assert len(probe.spans["x"]) == 1


@pytest.mark.parametrize("stop", ["run.cancel", "fail_fast", "caller's scope"])
async def test_a_retry_delay_of_inf_waits_until_the_run_is_stopped(
    dag_core: Any, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    # add() refuses delays that overflow; the engine must not hang or raise
    # on one all the same (retry_delay * retry_backoff ** k is inf then).
    monkeypatch.setattr("trio_dag._engine._retry_delay", lambda opts, attempt: math.inf)
    probe = Probe()
    dag = trio_dag.DAG()
    x = dag.add(flaky, probe, 1, 1, name="x", retries=1, retry_delay=1)
    add_nap(dag, probe, "bad", 3, fail=ValueError("bad") if stop == "fail_fast" else None)
    with trio.fail_after(60):
        if stop == "run.cancel":
            async with trio_dag.open_run(dag) as run:
                async for event in run.events():
                    if isinstance(event, TaskRetrying):
                        assert event.delay == math.inf
                        run.cancel()
            report = run.report
        elif stop == "fail_fast":
            report = await trio_dag.run(dag, on_failure="fail_fast", check=False)
        else:
            with trio.move_on_after(3):
                await trio_dag.run(dag)
            assert probe.running == set()
            return
    assert report.state(x) is TaskState.CANCELLED
    assert len(probe.spans["x"]) == 1


def test_retry_delay_too_long_for_a_float_is_inf() -> None:
    from trio_dag._engine import _retry_delay
    from trio_dag._options import TaskOptions

    huge = TaskOptions(retries=5, retry_delay=1.0, retry_backoff=1e200)
    assert [_retry_delay(huge, k) for k in (1, 2, 3, 4)] == [1.0, 1e200, math.inf, math.inf]
    never = TaskOptions(retries=5, retry_delay=0.0, retry_backoff=1e200)
    assert _retry_delay(never, 4) == 0.0
    ints = TaskOptions(retries=5, retry_delay=3, retry_backoff=10**200)
    assert _retry_delay(ints, 3) == math.inf


# -- timeouts ---------------------------------------------------------------------------


async def test_timeout_fails_the_attempt(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    slow = add_nap(dag, probe, "slow", 5, timeout=2)
    quick = add_nap(dag, probe, "quick", 1, timeout=2)
    report = await trio_dag.run(dag, check=False)
    error = report.errors["slow"]
    assert isinstance(error, trio_dag.TaskTimeoutError)
    assert isinstance(error, TimeoutError)
    assert (error.task, error.timeout) == ("slow", 2)
    assert probe.end("slow") == 2
    assert report.state(slow) is TaskState.FAILED
    assert report[quick] == "quick"


async def test_timeout_is_per_attempt_and_retried_by_default(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    events: list[Event] = []
    dag = trio_dag.DAG()
    slow = add_nap(dag, probe, "slow", 5, timeout=2, retries=2, retry_delay=1)
    report = await trio_dag.run(dag, check=False, on_event=events.append)
    assert probe.spans["slow"] == [(0, 2), (3, 5), (7, 9)]
    assert all(
        isinstance(e.error, trio_dag.TaskTimeoutError)
        for e in events
        if isinstance(e, TaskRetrying)
    )
    assert report.timing(slow).attempts == 3
    assert report.timing(slow).end == 9


async def test_timeout_not_retried_when_retry_on_excludes_it(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "slow", 5, timeout=2, retries=2, retry_on=ValueError)
    report = await trio_dag.run(dag, check=False)
    assert len(probe.spans["slow"]) == 1
    assert isinstance(report.errors["slow"], trio_dag.TaskTimeoutError)


async def test_timeout_of_a_thread_takes_effect_when_it_returns(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    release = threading.Event()
    returned: list[float] = []

    def blocked() -> str:
        release.wait(30)  # set at t=5 by the task below; 30 s is only a safety net
        return "late"

    async def release_at_5() -> None:
        await trio.sleep(5)
        release.set()

    t0 = trio.current_time()
    dag = trio_dag.DAG()
    h = dag.add(blocked, name="blocked", timeout=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_at_5)
        report = await trio_dag.run(dag, check=False)
        returned.append(trio.current_time() - t0)
    assert isinstance(report.errors["blocked"], trio_dag.TaskTimeoutError)
    assert returned == [5]
    assert report.timing(h).end == t0 + 5


@pytest.mark.parametrize("run_in", ["inline", "async"])
async def test_timeout_of_a_body_that_never_checkpoints_takes_effect_when_it_returns(
    dag_core: Any, autojump_clock: MockClock, run_in: str
) -> None:
    # The body moves the clock past its deadline without a checkpoint, as a
    # long computation does on the real clock: Trio cannot interrupt it, and
    # its result is discarded when it returns.
    def busy_inline() -> str:
        autojump_clock.jump(3)
        return "late"

    async def busy_async() -> str:
        autojump_clock.jump(3)
        return "late"

    dag = trio_dag.DAG()
    fn: Callable[[], Any] = busy_inline if run_in == "inline" else busy_async
    late = dag.add(fn, name="late", timeout=2, run_in=run_in)  # type: ignore[arg-type]
    with trio.fail_after(60):
        report = await trio_dag.run(dag, check=False)
    assert isinstance(report.errors["late"], trio_dag.TaskTimeoutError)
    assert report.state(late) is TaskState.FAILED
    assert report.timing(late).end - report.timing(late).start == 3


async def test_a_body_that_returns_in_time_without_checkpoint_keeps_its_result(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    def quick() -> str:
        autojump_clock.jump(1.5)
        return "in time"

    dag = trio_dag.DAG()
    h = dag.add(quick, timeout=2, run_in="inline")
    with trio.fail_after(60):
        report = await trio_dag.run(dag)
    assert report[h] == "in time"


# -- callbacks that raise -----------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_on_event_raising_stops_the_run_with_callback_error(
    dag_core: Any, autojump_clock: MockClock, streaming: bool
) -> None:
    probe = Probe()
    problem = RuntimeError("progress bar broke")

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFinished) and event.task.name == "quick":
            raise problem

    dag = trio_dag.DAG()
    quick = add_nap(dag, probe, "quick", 1)
    add_nap(dag, probe, "slow", 10)
    add_nap(dag, probe, "later", 1, quick)
    add_nap(dag, probe, "teardown", 1, quick, trigger="all_done")
    with pytest.raises(trio_dag.CallbackError, match="progress bar broke") as info:
        if streaming:
            async with trio_dag.open_run(dag, on_event=on_event):
                pass
        else:
            await trio_dag.run(dag, on_event=on_event)
    assert info.value.__cause__ is problem
    assert probe.running == set()
    assert probe.end("slow") == 1
    assert "later" not in probe.spans
    assert "teardown" in probe.spans  # the run stops as under fail_fast


class Unprintable(Exception):
    """str() and repr() both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


async def test_on_event_raising_an_exception_that_cannot_be_printed(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    problem = Unprintable()

    def on_event(event: Event) -> None:
        raise problem

    dag = trio_dag.DAG()
    add_nap(dag, Probe(), "quick", 1)
    with trio.fail_after(100), pytest.raises(trio_dag.CallbackError) as info:
        await trio_dag.run(dag, on_event=on_event)
    assert info.value.__cause__ is problem
    assert "str() raised RuntimeError" in str(info.value)


# -- BaseExceptions from tasks --------------------------------------------------------


class Abort(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, Abort, SystemExit])
@pytest.mark.parametrize("run_in", ["async", "inline", "thread"])
async def test_base_exception_propagates_unwrapped_after_the_rest_is_cancelled(
    dag_core: Any, autojump_clock: MockClock, exc_type: type[BaseException], run_in: str
) -> None:
    probe = Probe()
    calls: list[int] = []

    def fatal() -> None:
        calls.append(trio_dag.current_task().attempt)
        raise exc_type("stop")

    async def fatal_async() -> None:
        await trio.sleep(1)
        fatal()

    dag = trio_dag.DAG()
    gate = add_nap(dag, probe, "gate", 1)
    body = fatal_async if run_in == "async" else fatal
    options: dict[str, Any] = {} if run_in == "async" else {"run_in": run_in}
    h = dag.add(body, after=[] if run_in == "async" else [gate], retries=3, **options)
    # Only a cancellation ends "forever". (Mock time may jump while a thread
    # runs, so the thread case does not check when.)
    add_nap(dag, probe, "forever", math.inf)
    add_nap(dag, probe, "teardown", 1, h, trigger="all_done")
    with pytest.raises(exc_type) as info:
        await trio_dag.run(dag, on_failure="skip")
    assert type(info.value) is exc_type
    assert calls == [1]  # never retried
    assert probe.running == set()
    assert "forever" in probe.spans
    if run_in != "thread":
        assert probe.end("forever") == 1
    assert "teardown" not in probe.spans


async def test_base_exception_propagates_unwrapped_from_open_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "fatal", 1, fail=KeyboardInterrupt())
    add_nap(dag, probe, "slow", 10)
    seen: list[Event] = []
    with pytest.raises(KeyboardInterrupt):
        async with trio_dag.open_run(dag) as run:
            async for event in run.events():
                seen.append(event)
    assert probe.running == set()
    assert {e.task.name for e in seen if isinstance(e, TaskFinished)} == {"fatal", "slow"}


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, Abort, SystemExit])
async def test_base_exception_from_a_nursery_in_a_body_propagates_unwrapped(
    dag_core: Any, autojump_clock: MockClock, exc_type: type[BaseException]
) -> None:
    # The body's nursery wraps it in a BaseExceptionGroup; SPEC 3 still wants
    # `except KeyboardInterrupt:` to catch it.
    probe = Probe()

    async def child() -> None:
        await trio.sleep(1)
        raise exc_type("stop")

    async def holds_a_nursery() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            nursery.start_soon(trio.sleep, 100)

    dag = trio_dag.DAG()
    dag.add(holds_a_nursery, name="fatal")
    add_nap(dag, probe, "forever", math.inf)
    with trio.fail_after(100), pytest.raises(exc_type) as info:
        await trio_dag.run(dag)
    assert type(info.value) is exc_type
    assert probe.running == set()
    assert probe.end("forever") == 1


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, Abort])
async def test_base_exception_cancels_the_dependents_of_its_task(
    dag_core: Any, autojump_clock: MockClock, exc_type: type[BaseException], on_failure: str
) -> None:
    # SPEC 3: every other task is cancelled, its dependents too (not SKIPPED,
    # which would say the run went on without them); the events tell the
    # failure first, and check_run accepts the run.
    probe = Probe()
    dag = trio_dag.DAG()
    fatal = add_nap(dag, probe, "fatal", 1, fail=exc_type("stop"))
    child = add_nap(dag, probe, "child", 1, fatal)
    grandchild = add_nap(dag, probe, "grandchild", 1, child)
    teardown = add_nap(dag, probe, "teardown", 1, fatal, trigger="all_done")
    slow = add_nap(dag, probe, "slow", 10)
    recorder = trio_dag.testing.Recorder()
    runs: list[trio_dag.Run] = []
    with trio.fail_after(100), pytest.raises(exc_type):
        async with trio_dag.open_run(
            dag, check=False, on_event=recorder, on_failure=on_failure
        ) as run:
            runs.append(run)
    report = runs[0].report
    assert report.failed == [fatal]
    assert report.cancelled == [child, grandchild, teardown, slow]
    assert report.skipped == []
    assert [(e.task.name, e.state) for e in recorder.finished()] == [
        ("fatal", TaskState.FAILED),
        ("child", TaskState.CANCELLED),
        ("grandchild", TaskState.CANCELLED),
        ("teardown", TaskState.CANCELLED),
        ("slow", TaskState.CANCELLED),
    ]
    assert probe.running == set()
    trio_dag.testing.check_run(dag, report, recorder, on_failure=on_failure)
    trio_dag.testing.check_run(dag, report, on_failure=on_failure)


# -- a real Ctrl-C (SIGINT) ------------------------------------------------------------
#
# Sync tests around trio.run on the real clock: Trio's SIGINT handler is
# installed by trio.run. Every other task sleeps 5 s, so a lost Ctrl-C
# fails the test after 5 s instead of hanging it.


def _ctrl_c() -> None:
    signal.raise_signal(signal.SIGINT)


def _what_left(main: Callable[[], Awaitable[Any]]) -> BaseException | None:
    """Run *main* in trio.run; return whatever it raised (never let it reach pytest)."""
    try:
        trio.run(main)
    except BaseException as exc:
        return exc
    return None


def _cut_short(probe: Probe) -> bool:
    """Whether every body that started was stopped before its 5 s were up."""
    return all(end - start < 5 for spans in probe.spans.values() for start, end in spans)


def _sleepers(probe: Probe) -> trio_dag.DAG:
    dag = trio_dag.DAG()
    add_nap(dag, probe, "sleeper-1", 5)
    add_nap(dag, probe, "sleeper-2", 5)
    return dag


@pytest.mark.parametrize("where", ["thread", "async", "inline"])
def test_ctrl_c_from_a_body_leaves_run_sync_unwrapped(dag_core: Any, where: str) -> None:
    probe = Probe()
    dag = _sleepers(probe)

    async def in_async_body() -> None:
        _ctrl_c()
        await trio.sleep(5)

    if where == "async":
        dag.add(in_async_body, name="interrupt")
    else:
        dag.add(_ctrl_c, name="interrupt", run_in=where)
    try:
        trio_dag.run_sync(dag)
    except BaseException as exc:
        left: BaseException | None = exc
    else:
        left = None
    assert type(left) is KeyboardInterrupt, repr(left)
    assert probe.running == set()
    assert _cut_short(probe)


@pytest.mark.parametrize("how", ["run", "open_run-block", "open_run-exit"])
def test_ctrl_c_while_every_body_sleeps_propagates_unwrapped(dag_core: Any, how: str) -> None:
    # Raised by a system task (KI-protected), the KeyboardInterrupt goes to
    # the main task: the one that awaits the run.
    probe = Probe()
    dag = _sleepers(probe)

    async def interrupt_soon() -> None:
        await trio.sleep(0.2)
        _ctrl_c()

    async def main() -> None:
        trio.lowlevel.spawn_system_task(interrupt_soon)
        if how == "run":
            await trio_dag.run(dag)
        else:
            async with trio_dag.open_run(dag):
                if how == "open_run-block":
                    await trio.sleep(5)

    left = _what_left(main)
    assert type(left) is KeyboardInterrupt, repr(left)
    assert probe.running == set()
    assert _cut_short(probe)


# -- errors of the engine's own: the task fails, the report is whole --------------------


async def gather(items: list[Any]) -> list[Any]:
    await trio.sleep(1)
    return items


def _changed_after_add(probe: Probe, **options: Any) -> trio_dag.DAG:
    """gather's argument list loses its handle after add(): binding it must fail."""
    dag = trio_dag.DAG()
    first = add_nap(dag, probe, "first", 1)
    items = [first]
    dag.add(gather, items, name="gather", **options)
    add_nap(dag, probe, "after", 1, dag["gather"])
    add_nap(dag, probe, "other", 3)
    items.clear()
    return dag


@pytest.mark.parametrize("listen", [False, True])
@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
async def test_arguments_changed_after_add_fail_their_task(
    dag_core: Any, autojump_clock: MockClock, listen: bool, on_failure: str
) -> None:
    # Without a listener the engine takes its fast loop: both paths are checked.
    probe = Probe()
    events: list[Event] = []
    dag = _changed_after_add(probe, retries=2)
    with trio.fail_after(100):
        report = await trio_dag.run(
            dag, check=False, on_failure=on_failure, on_event=events.append if listen else None
        )
    assert report.state("gather") is TaskState.FAILED
    error = report.errors["gather"]
    assert isinstance(error, RuntimeError)
    assert "changed after it was added" in str(error)
    assert report.timing("gather").attempts == 1  # not retried: it cannot work
    assert report["first"] == "first"
    if on_failure == "skip":
        assert report.state("after") is TaskState.SKIPPED
        assert report["other"] == "other"
    else:
        assert report.state("other") is TaskState.CANCELLED
    if listen:
        trio_dag.testing.check_run(dag, report, events, on_failure=on_failure)


async def test_arguments_changed_after_add_raise_run_failed_error(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    with trio.fail_after(100), pytest.raises(trio_dag.RunFailedError) as info:
        await trio_dag.run(_changed_after_add(Probe()))
    assert [e.task for e in info.value.exceptions] == ["gather"]
    assert isinstance(info.value.exceptions[0].__cause__, RuntimeError)
    assert info.value.report.state("other") is TaskState.SUCCEEDED


@trio_dag.batched(max_size=4)
async def batched_gather(items: list[list[Any]]) -> list[list[Any]]:
    await trio.sleep(1)
    return items


async def test_arguments_of_a_batched_task_changed_after_add_fail_it(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    first = add_nap(dag, probe, "first", 1)
    items = [[first] for _ in range(3)]
    for k, item in enumerate(items):
        dag.add(batched_gather, item, name=f"batch-{k}")
    items[1].clear()
    with trio.fail_after(100):
        report = await trio_dag.run(dag, check=False)
    assert report.state("batch-1") is TaskState.FAILED
    assert isinstance(report.errors["batch-1"], RuntimeError)
    assert report["batch-0"] == report["batch-2"] == ["first"]


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
async def test_an_internal_error_around_a_task_fails_that_task(
    dag_core: Any, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch, on_failure: str
) -> None:
    # The last-resort guard: a bug of the engine's own code around a task
    # (forced here: the table of body kinds lost its entries) becomes that
    # task's failure, not a bare ExceptionGroup out of the run's nursery.
    probe = Probe()
    dag = trio_dag.DAG()
    gate = add_nap(dag, probe, "gate", 1)
    broken = dag.add(lambda: "never", name="broken", run_in="thread", after=[gate])
    add_nap(dag, probe, "after", 1, broken)
    add_nap(dag, probe, "other", 3)
    monkeypatch.setattr("trio_dag._bodies.KINDS", {})
    with trio.fail_after(100):
        report = await trio_dag.run(dag, check=False, on_failure=on_failure)
    assert report.state("broken") is TaskState.FAILED
    assert isinstance(report.errors["broken"], KeyError)
    assert report["gate"] == "gate"
    assert probe.running == set()
    if on_failure == "skip":
        assert report.state("after") is TaskState.SKIPPED
        assert report["other"] == "other"
    else:
        assert report.state("other") is TaskState.CANCELLED
    with trio.fail_after(100), pytest.raises(trio_dag.RunFailedError) as info:
        await trio_dag.run(dag, on_failure=on_failure)
    assert [e.task for e in info.value.exceptions] == ["broken"]

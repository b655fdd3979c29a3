"""Events of a run: on_event and open_run's stream, their order and completeness.

Every test runs the engine on both cores (``dag_core``) on a MockClock,
except those about readings of the real clock.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import outcome
import pytest
import trio
from _engine_probe import Probe, add_nap
from trio.testing import MockClock

import trio_dag
import trio_dag.testing
from trio_dag import TaskState
from trio_dag.events import Event, TaskFinished, TaskRetrying, TaskStarted


async def flaky(probe: Probe, seconds: float, fails: int, *deps: Any) -> str:
    """Fail the first *fails* attempts (each after *seconds*), then succeed."""
    task = trio_dag.current_task()
    with probe.attempt():
        await trio.sleep(seconds)
        if task.attempt <= fails:
            raise ValueError(f"attempt {task.attempt}")
    return task.name


def _mixed_dag(probe: Probe) -> trio_dag.DAG:
    """Every kind of ending: success, retries, failure, skip, all_done."""
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 1)
    r = dag.add(flaky, probe, 1, 2, a, name="r", retries=2, retry_delay=2)
    bad = add_nap(dag, probe, "bad", 2, fail=KeyError("bad"))
    skipped = add_nap(dag, probe, "skipped", 1, bad)
    add_nap(dag, probe, "skipped-too", 1, skipped)
    add_nap(dag, probe, "cleanup", 1, skipped, r, trigger="all_done")
    add_nap(dag, probe, "instant", 0, r)
    return dag


def _check_events(events: list[Event], report: trio_dag.RunReport, dag: trio_dag.DAG) -> None:
    """Every guarantee about a run's events, against its report."""
    names = [h.name for h in report]
    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert sorted(e.task.name for e in finished) == sorted(names)  # exactly one each
    times = [e.time for e in events if not isinstance(e, TaskRetrying)]
    assert times == sorted(times)
    for h in report:
        mine = [e for e in events if e.task == h]
        started = [e for e in mine if isinstance(e, TaskStarted)]
        retrying = [e for e in mine if isinstance(e, TaskRetrying)]
        timing = report.timing(h)
        assert [e.attempt for e in started] == list(range(1, timing.attempts + 1))
        assert [e.attempt for e in retrying] == list(range(1, len(retrying) + 1))
        assert len(retrying) in (timing.attempts - 1, timing.attempts)
        assert isinstance(mine[-1], TaskFinished)  # the last event of each task
        # Started k, Retrying k, Started k + 1, ...: the two kinds alternate
        kinds = [type(e) for e in mine[:-1]]
        assert kinds == [TaskStarted, TaskRetrying] * len(retrying) + [TaskStarted] * (
            len(started) - len(retrying)
        )
        end = mine[-1]
        assert end.state is report.state(h)
        if timing.start is None:
            assert end.duration == 0.0
        else:
            assert started[0].time == timing.start
            assert end.duration == timing.duration
            assert end.time >= timing.end
        expected = report.outcome(h)
        if isinstance(expected, outcome.Value):
            assert end.outcome == expected
        else:
            assert isinstance(end.outcome, outcome.Error)
            assert type(end.outcome.error) is type(expected.error)
        for dep in dag.dependencies(h):
            if started:  # a dependency ended before the task started
                first = events.index(started[0])
                assert any(isinstance(e, TaskFinished) and e.task == dep for e in events[:first])


async def test_on_event_sees_every_event_in_order(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    events: list[Event] = []
    dag = _mixed_dag(probe)
    report = await trio_dag.run(dag, check=False, on_event=events.append)
    _check_events(events, report, dag)
    retrying = [e for e in events if isinstance(e, TaskRetrying)]
    assert [(e.task.name, e.attempt, e.delay, str(e.error)) for e in retrying] == [
        ("r", 1, 2, "attempt 1"),
        ("r", 2, 4, "attempt 2"),
    ]
    started_r = [
        e.time - probe.t0 for e in events if isinstance(e, TaskStarted) and e.task.name == "r"
    ]
    assert started_r == [1, 4, 9]
    states = {e.task.name: e.state for e in events if isinstance(e, TaskFinished)}
    assert states == {
        "a": TaskState.SUCCEEDED,
        "r": TaskState.SUCCEEDED,
        "bad": TaskState.FAILED,
        "skipped": TaskState.SKIPPED,
        "skipped-too": TaskState.SKIPPED,
        "cleanup": TaskState.SUCCEEDED,
        "instant": TaskState.SUCCEEDED,
    }


async def test_open_run_streams_the_same_events(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    called: list[Event] = []
    streamed: list[Event] = []
    dag = _mixed_dag(probe)
    async with trio_dag.open_run(dag, check=False, on_event=called.append) as run:
        async for event in run.events():
            streamed.append(event)
    assert streamed == called
    assert all(a is b for a, b in zip(streamed, called, strict=True))
    _check_events(streamed, run.report, dag)


async def test_events_of_a_fail_fast_run(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 1, fail=ValueError("x"))
    slow = add_nap(dag, probe, "slow", 5)
    add_nap(dag, probe, "never", 1, slow)
    add_nap(dag, probe, "teardown", 1, bad, slow, trigger="all_done")
    async with trio_dag.open_run(dag, on_failure="fail_fast", check=False) as run:
        events = [event async for event in run.events()]
    _check_events(events, run.report, dag)
    never = next(e for e in events if isinstance(e, TaskFinished) and e.task.name == "never")
    assert never.state is TaskState.CANCELLED
    assert never.duration == 0.0
    assert isinstance(never.outcome.error, trio_dag.TaskCancelledError)


async def test_slow_reader_misses_no_event(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    roots = [add_nap(dag, probe, f"r{i}", i % 3) for i in range(30)]
    add_nap(dag, probe, "last", 1, *roots)
    events: list[Event] = []
    async with trio_dag.open_run(dag) as run:
        async for event in run.events():
            events.append(event)
            await trio.sleep(10)  # far slower than the run
    assert len(events) == 2 * 31
    assert probe.now() == 10 * 62  # the reader, not the run, took the time
    assert run.report.stats.makespan == 3
    _check_events(events, run.report, dag)


async def test_events_can_be_read_after_the_run_ended(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "a", 1)
    async with trio_dag.open_run(dag) as run:
        await trio.sleep(5)
        assert run.report.ok  # ended before the block did
        events = [event async for event in run.events()]
    assert [type(e) for e in events] == [TaskStarted, TaskFinished]


async def test_events_may_be_iterated_once(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "a", 1)
    async with trio_dag.open_run(dag) as run:
        with pytest.raises(RuntimeError, match="run has not ended"):
            _ = run.report
        events = run.events()
        with pytest.raises(RuntimeError, match="once"):
            run.events()
        async with aclosing(events):
            assert len([e async for e in events]) == 2
    assert isinstance(run, trio_dag.Run)


async def test_open_run_check_raises_after_the_block(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "bad", 1, fail=ValueError("bad"))
    add_nap(dag, probe, "slow", 3)
    after_block: list[float] = []
    with pytest.raises(trio_dag.RunFailedError) as info:
        async with trio_dag.open_run(dag) as run:
            await trio.sleep(2)
            after_block.append(probe.now())
    assert after_block == [2]
    assert probe.now() == 3  # leaving the block waited for the run
    assert info.value.report is run.report
    assert [e.task for e in info.value.exceptions] == ["bad"]
    async with trio_dag.open_run(dag, check=False) as run:
        pass
    assert run.report.state("bad") is TaskState.FAILED


async def test_stream_stays_complete_when_on_event_raises(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # SPEC: run.events() "yields every event from the run's start ... and
    # never loses one"; a failing on_event callback must not cut the stream.
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "quick", 1)
    add_nap(dag, probe, "slow", 5)
    add_nap(dag, probe, "slower", 6)

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFinished):
            raise RuntimeError("callback broke")

    events: list[Event] = []
    with pytest.raises(trio_dag.CallbackError):
        async with trio_dag.open_run(dag, on_event=on_event) as run:
            async for event in run.events():
                events.append(event)
    finished = {e.task.name: e.state for e in events if isinstance(e, TaskFinished)}
    assert finished == {
        "quick": TaskState.SUCCEEDED,
        "slow": TaskState.CANCELLED,
        "slower": TaskState.CANCELLED,
    }


async def test_reader_that_stops_early_does_not_fail_the_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # Stopping to read (closing the iterator, as Trio advises for async
    # generators) is not an on_event callback raising: the run goes on.
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "quick", 1)
    add_nap(dag, probe, "slow", 5)
    async with trio_dag.open_run(dag) as run:
        async with aclosing(run.events()) as events:
            async for _ in events:
                break
    assert run.report.ok
    assert probe.end("slow") == 5


def test_batched_tasks_start_in_the_report_when_their_call_started(dag_core: Any) -> None:
    # On the real clock each reading differs: the TaskStarted events of a call
    # and the report's start of each of its tasks must be the same reading.
    calls_with_4: list[list[int]] = []

    @trio_dag.batched(max_size=3, max_delay=0.002)
    async def double(items: list[int]) -> list[int]:
        # The first call holding item 4 fails: its tasks retry in a later call.
        await trio.sleep(0.001)
        if 4 in items:
            calls_with_4.append(items)
            if len(calls_with_4) == 1:
                raise ValueError("first call with 4")
        return [2 * x for x in items]

    dag = trio_dag.DAG()
    handles = dag.map(double, range(7), retries=1)
    recorder = trio_dag.testing.Recorder()

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(5):
            return await trio_dag.run(dag, on_event=recorder)

    report = trio.run(main)
    assert [report[h] for h in handles] == [2 * x for x in range(7)]
    assert any(report.timing(h).attempts == 2 for h in handles)
    first_started = {}
    for event in recorder:
        if isinstance(event, TaskStarted):
            assert event.batch is not None
            first_started.setdefault(event.task.name, event.time)
    for h in handles:
        assert report.timing(h).start == first_started[h.name], h.name
    _check_events(list(recorder), report, dag)
    trio_dag.testing.check_run(dag, report, recorder)


class _Unprintable(Exception):
    """A user's exception whose str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("str broke")

    def __repr__(self) -> str:
        raise RuntimeError("repr broke")


class _NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr broke")


async def test_events_print_whatever_their_exception_or_output_does(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # A progress callback that prints its events must not become a
    # CallbackError because a task's exception cannot print itself.
    async def unprintable() -> None:
        raise _Unprintable

    async def no_repr() -> _NoRepr:
        return _NoRepr()

    async def in_a_group() -> None:
        raise ExceptionGroup("from a nursery", [_Unprintable()])

    dag = trio_dag.DAG()
    dag.add(unprintable, name="unprintable", retries=1)
    dag.add(no_repr, name="no-repr")
    dag.add(in_a_group, name="in-a-group")
    printed: dict[tuple[str, str], str] = {}

    def on_event(event: Event) -> None:
        printed[type(event).__name__, event.task.name] = repr(event)
        assert str(event) == repr(event)

    report = await trio_dag.run(dag, check=False, on_event=on_event)
    assert report.failed == [dag["unprintable"], dag["in-a-group"]]
    unprintable_shown = "<_Unprintable object (str() raised RuntimeError)>"
    assert f"error={unprintable_shown}" in printed["TaskRetrying", "unprintable"]
    assert f"outcome=Error({unprintable_shown})" in printed["TaskFinished", "unprintable"]
    assert (
        "outcome=Value(<_NoRepr object (repr() raised RuntimeError)>)"
        in (printed["TaskFinished", "no-repr"])
    )
    assert (
        "outcome=Error(<ExceptionGroup: from a nursery (1 sub-exception)>)"
        in (printed["TaskFinished", "in-a-group"])
    )


async def _boom_at(seconds: float) -> None:
    await trio.sleep(seconds)
    raise KeyError("boom")


async def test_run_cancel_from_a_listener_comes_after_the_skips_of_the_failure_it_heard(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # The failure and the skips it causes are one step of the run: an
    # on_event listener that cancels the run on hearing the failure does not
    # cut it in two.
    dag = trio_dag.DAG()
    bad = dag.add(_boom_at, 1, name="bad")
    dag.add(_boom_at, 5, bad, name="skipped")
    dag.add(trio.sleep, 10, name="slow")  # waits for the one slot: pending at the cancel
    runs: list[trio_dag.Run] = []

    def listen(event: Event) -> None:
        if isinstance(event, TaskFinished) and event.state is TaskState.FAILED:
            runs[0].cancel()

    with trio.fail_after(60):
        async with trio_dag.open_run(dag, check=False, on_event=listen, limit=1) as run:
            runs.append(run)
            seen = [event async for event in run.events()]
    report = run.report
    assert report.state("skipped") is TaskState.SKIPPED
    assert report.state("slow") is TaskState.CANCELLED
    finished = [(e.task.name, e.state) for e in seen if isinstance(e, TaskFinished)]
    assert finished == [
        ("bad", TaskState.FAILED),
        ("skipped", TaskState.SKIPPED),
        ("slow", TaskState.CANCELLED),
    ]
    trio_dag.testing.check_run(dag, report, seen, cancelled=True)


async def test_on_event_raising_on_a_batched_start_starts_nothing_more(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    calls: list[list[int]] = []

    @trio_dag.batched(max_size=3)
    async def double(items: list[int]) -> list[int]:
        calls.append(items)
        await trio.sleep(1)
        return [2 * x for x in items]

    dag = trio_dag.DAG()
    for x in range(3):
        dag.add(double, x, name=f"d{x}")

    def listen(event: Event) -> None:
        if isinstance(event, TaskStarted):
            raise RuntimeError("listener broke")

    with trio.fail_after(60), pytest.raises(trio_dag.CallbackError):
        async with trio_dag.open_run(dag, on_event=listen) as run:
            seen = [event async for event in run.events()]
    assert calls == []
    started = [e.task.name for e in seen if isinstance(e, TaskStarted)]
    assert started == ["d0"]
    assert {e.task.name: e.state for e in seen if isinstance(e, TaskFinished)} == {
        name: TaskState.CANCELLED for name in ("d0", "d1", "d2")
    }

"""Faults from task bodies and user callbacks, each with its exact outcome (SPEC section 3).

BaseExceptions and trio.Cancelled from a body, callbacks and key functions
that raise, exceptions raised while a body is being cancelled, a real SIGINT
in the middle of a run, odd return values, thread bodies that block and
bodies that never yield. Every test runs the engine on both cores
(``dag_core``); time is a MockClock, except where a real signal is sent.
"""

from __future__ import annotations

import math
import pickle
import signal
import threading
from typing import Any

import pytest
import trio
from _engine_probe import Probe, add_nap
from _reliability import hang_guard
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import Event, TaskFinished, TaskStarted
from trio_dag.testing import Recorder, check_run


class Abort(BaseException):
    """A BaseException of the user's own."""


def _fatal_dag(probe: Probe, exc: BaseException, run_in: str) -> tuple[trio_dag.DAG, list[int]]:
    """'fatal' raises *exc* at 1; 'forever' only ends by cancellation; 'teardown' waits.

    Also returns the attempts 'fatal' made, as they happen.
    """
    calls: list[int] = []

    def fatal() -> None:
        calls.append(trio_dag.current_task().attempt)
        raise exc

    async def fatal_async() -> None:
        await trio.sleep(1)
        fatal()

    dag = trio_dag.DAG()
    gate = add_nap(dag, probe, "gate", 1)
    if run_in == "async":
        h = dag.add(fatal_async, name="fatal", retries=3)
    else:
        h = dag.add(fatal, name="fatal", after=[gate], retries=3, run_in=run_in)  # type: ignore[arg-type]
    add_nap(dag, probe, "forever", math.inf)
    add_nap(dag, probe, "teardown", 1, h, trigger="all_done")
    add_nap(dag, probe, "after-gate", 5, gate)
    return dag, calls


# -- BaseExceptions from a task --------------------------------------------------------


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
@pytest.mark.parametrize("run_in", ["async", "inline"])
@pytest.mark.parametrize("make", [KeyboardInterrupt, SystemExit, Abort])
async def test_task_base_exception_propagates_alone_after_the_rest_is_cancelled(
    dag_core: Any,
    autojump_clock: MockClock,
    make: type[BaseException],
    run_in: str,
    on_failure: str,
) -> None:
    probe = Probe()
    exc = make("stop")
    dag, calls = _fatal_dag(probe, exc, run_in)
    recorder = Recorder()
    with pytest.raises(make) as info:
        await trio_dag.run(dag, on_failure=on_failure, on_event=recorder)
    assert info.value is exc  # unwrapped: not in an exception group, not a copy
    assert calls == [1]  # never retried
    assert probe.running == set()  # guarantee 4
    assert probe.end("forever") == 1  # cancelled when the exception came
    assert "teardown" not in probe.spans
    ends = {e.task.name: e for e in recorder.finished()}
    assert set(ends) == {h.name for h in dag}  # the events are complete
    assert ends["fatal"].state is TaskState.FAILED
    assert ends["fatal"].outcome.error is exc  # type: ignore[union-attr]
    for name in ("forever", "teardown", "after-gate"):
        assert ends[name].state is TaskState.CANCELLED


@pytest.mark.parametrize("make", [KeyboardInterrupt, Abort])
async def test_task_base_exception_from_a_thread_waits_for_the_others(
    dag_core: Any, autojump_clock: MockClock, make: type[BaseException]
) -> None:
    probe = Probe()
    exc = make("stop")
    dag, calls = _fatal_dag(probe, exc, "thread")
    with pytest.raises(make) as info:
        await trio_dag.run(dag)
    assert info.value is exc
    assert calls == [1]
    assert probe.running == set()


async def test_task_base_exception_propagates_unwrapped_from_open_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    exc = Abort("stop")
    seen: list[Event] = []
    with pytest.raises(Abort) as info:
        async with trio_dag.open_run(_fatal_dag(probe, exc, "async")[0]) as run:
            async for event in run.events():
                seen.append(event)
    assert info.value is exc
    assert probe.running == set()
    assert len([e for e in seen if isinstance(e, TaskFinished)]) == 5


# -- trio.Cancelled raised by a body's own cancel scope ---------------------------------


async def test_cancelled_absorbed_by_the_body_own_scope_is_no_cancellation(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()

    async def gives_up_early() -> str:
        with trio.CancelScope() as scope:
            scope.cancel()
            await trio.sleep(5)
        with trio.move_on_after(2):
            await trio.sleep(5)
        return "gave up"

    dag = trio_dag.DAG()
    h = dag.add(gives_up_early, name="gives-up", retries=2)
    slow = add_nap(dag, probe, "slow", 10)
    add_nap(dag, probe, "after", 1, h)
    recorder = Recorder()
    report = await trio_dag.run(dag, on_failure="fail_fast", on_event=recorder)
    assert report.ok
    assert report[h] == "gave up"
    assert report.timing(h).duration == 2
    assert report.timing(h).attempts == 1
    assert report[slow] == "slow"
    check_run(dag, report, recorder, on_failure="fail_fast")


async def test_fail_after_inside_a_body_is_an_ordinary_failure(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def impatient() -> None:
        with trio.fail_after(1):
            await trio.sleep(5)

    probe = Probe()
    dag = trio_dag.DAG()
    h = dag.add(impatient, name="impatient", retries=1)
    other = add_nap(dag, probe, "other", 3)
    recorder = Recorder()
    report = await trio_dag.run(dag, check=False, on_event=recorder)
    assert report.state(h) is TaskState.FAILED
    assert isinstance(report.errors["impatient"], trio.TooSlowError)
    assert report.timing(h).attempts == 2  # an Exception, so retried
    assert report[other] == "other"
    check_run(dag, report, recorder)


async def test_cancelled_leaked_from_a_body_own_scope_propagates_like_a_base_exception(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # SPEC 3: a task raising an exception that is not an Exception makes run
    # cancel the rest and raise it unwrapped. A body that catches its own
    # scope's Cancelled and raises it again outside that scope raises such an
    # exception; the run was not cancelled by anyone, so it must not report
    # a cancelled run.
    leaked: list[trio.Cancelled] = []

    async def leaky() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                leaked.append(exc)
        raise leaked[0]

    probe = Probe()
    dag = trio_dag.DAG()
    dag.add(leaky, name="leaky", retries=2)
    add_nap(dag, probe, "slow", 10)
    with pytest.raises(trio.Cancelled) as info:
        await trio_dag.run(dag)
    assert info.value is leaked[0]
    assert probe.running == set()


# -- callbacks that raise ----------------------------------------------------------------


def _busy(probe: Probe) -> trio_dag.DAG:
    dag = trio_dag.DAG()
    quick = add_nap(dag, probe, "quick", 1)
    add_nap(dag, probe, "slow", 10)
    add_nap(dag, probe, "later", 1, quick)
    dag.add(_blocking_thread, name="thread", run_in="thread")
    return dag


_RELEASE = threading.Event()


def _blocking_thread() -> str:
    _RELEASE.wait()
    return "thread"


@pytest.mark.parametrize("when", [TaskStarted, TaskFinished])
@pytest.mark.parametrize("streaming", [False, True])
async def test_on_event_raising_ends_the_run_cleanly_with_callback_error(
    dag_core: Any, autojump_clock: MockClock, when: type, streaming: bool
) -> None:
    probe = Probe()
    problem = RuntimeError("progress bar broke")
    calls: list[Event] = []

    def on_event(event: Event) -> None:
        calls.append(event)
        if isinstance(event, when) and event.task.name == "quick":
            raise problem

    _RELEASE.clear()
    with hang_guard(threads=True):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_at, 3)
            with pytest.raises(trio_dag.CallbackError, match="on_event") as info:
                if streaming:
                    async with trio_dag.open_run(_busy(probe), on_event=on_event) as run:
                        async for _ in run.events():
                            pass
                else:
                    await trio_dag.run(_busy(probe), on_event=on_event)
    assert info.value.__cause__ is problem
    assert "progress bar broke" in str(info.value)
    assert probe.running == set()
    assert "later" not in probe.spans
    if "slow" in probe.spans:  # it may not have started before the callback raised
        assert probe.end("slow") == (1 if when is TaskFinished else 0)
    # Once it raised, the callback is not called again.
    assert calls[-1].task.name == "quick" and isinstance(calls[-1], when)


async def _release_at(seconds: float) -> None:
    await trio.sleep(seconds)
    _RELEASE.set()


@pytest.mark.parametrize("make", [KeyboardInterrupt, Abort])
async def test_on_event_raising_a_base_exception_propagates_it_alone(
    dag_core: Any, autojump_clock: MockClock, make: type[BaseException]
) -> None:
    probe = Probe()
    exc = make("stop")
    calls: list[Event] = []

    def on_event(event: Event) -> None:
        calls.append(event)
        if isinstance(event, TaskFinished):
            raise exc

    dag = trio_dag.DAG()
    add_nap(dag, probe, "a", 1)
    add_nap(dag, probe, "b", 5)
    with pytest.raises(make) as info:
        await trio_dag.run(dag, on_event=on_event)
    assert info.value is exc  # unwrapped, and raised once
    assert probe.running == set()
    assert len([e for e in calls if isinstance(e, TaskFinished)]) == 1


@pytest.mark.parametrize("which", [0, 2])
async def test_key_function_raising_stops_the_run_before_anything_starts(
    dag_core: Any, autojump_clock: MockClock, which: int
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    for i in range(3):
        add_nap(dag, probe, f"t{i}", 1)

    def by_weight(h: trio_dag.Handle[Any]) -> int:
        if h.index == which:
            raise KeyError(f"no weight for {h.name}")
        return h.index

    for streaming in (False, True):
        with pytest.raises(trio_dag.CallbackError, match="by_weight") as info:
            if streaming:
                async with trio_dag.open_run(dag, policy=by_weight, limit=1):
                    raise AssertionError("the block must not run")  # pragma: no cover
            else:
                await trio_dag.run(dag, policy=by_weight, limit=1)
        assert isinstance(info.value.__cause__, KeyError)
        assert f"no weight for t{which}" in str(info.value)
    assert probe.started == []


# -- an exception raised while a body is being cancelled -----------------------------------


async def _stubborn() -> None:
    try:
        await trio.sleep(10)
    finally:
        raise OSError("cleanup failed")


@pytest.mark.parametrize("how", ["fail_fast", "run.cancel", "caller scope"])
async def test_exception_from_finally_while_cancelled_is_reported(
    dag_core: Any, autojump_clock: MockClock, how: str
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    stubborn = dag.add(_stubborn, name="stubborn")
    if how == "fail_fast":
        add_nap(dag, probe, "bad", 2, fail=ValueError("bad"))
    recorder = Recorder()
    runs: list[trio_dag.Run] = []
    with trio.move_on_after(2 if how == "caller scope" else math.inf):
        async with trio_dag.open_run(
            dag, on_failure="fail_fast", check=False, on_event=recorder
        ) as run:
            runs.append(run)
            if how == "run.cancel":
                await trio.sleep(2)
                run.cancel()
    report = runs[0].report
    assert report.state(stubborn) is TaskState.FAILED
    error = report.errors["stubborn"]
    assert isinstance(error, OSError) and str(error) == "cleanup failed"
    assert isinstance(error.__context__, trio.Cancelled)
    assert report.timing(stubborn).end == 2
    finished = [e for e in recorder.finished() if e.task == stubborn]
    assert finished[0].outcome.error is error  # type: ignore[union-attr]
    assert probe.running == set()


async def test_exception_from_finally_while_cancelled_fails_a_checked_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    dag.add(_stubborn, name="stubborn")
    with pytest.raises(trio_dag.RunFailedError) as info:
        async with trio_dag.open_run(dag) as run:
            await trio.sleep(2)
            run.cancel()
    [failure] = info.value.exceptions
    assert failure.task == "stubborn"
    assert isinstance(failure.__cause__, OSError)


# -- a real KeyboardInterrupt ------------------------------------------------------------------


@pytest.mark.parametrize("run_in", ["async", "inline"])
def test_sigint_inside_a_task_stops_the_run_and_the_next_run_works(
    dag_core: Any, run_in: str
) -> None:
    probe = Probe()

    def interrupt() -> None:
        signal.raise_signal(signal.SIGINT)

    async def interrupt_async() -> None:
        await trio.sleep(1)
        interrupt()
        await trio.sleep(1)  # trio may deliver it at the next checkpoint

    dag = trio_dag.DAG()
    gate = add_nap(dag, probe, "gate", 1)
    if run_in == "async":
        dag.add(interrupt_async, name="interrupt")
    else:
        dag.add(interrupt, name="interrupt", after=[gate], run_in="inline")
    add_nap(dag, probe, "forever", math.inf)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        trio.run(trio_dag.run, dag, clock=MockClock(autojump_threshold=0))
    assert probe.running == set()
    assert signal.getsignal(signal.SIGINT) is handler

    again = trio_dag.DAG()
    first = add_nap(again, probe, "first", 1)
    add_nap(again, probe, "second", 1, first)
    report = trio.run(trio_dag.run, again, clock=MockClock(autojump_threshold=0))
    assert report.ok and report["second"] == "second"


# -- odd return values ------------------------------------------------------------------------


class Hostile:
    """An output that fails every operation an engine might be tempted to use."""

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle a Hostile")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no ==")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __iter__(self) -> Any:
        raise RuntimeError("no iter")


@pytest.mark.parametrize(
    "make",
    [Hostile, threading.Lock, lambda: lambda: None, lambda: bytearray(256 * 2**20)],
    ids=["hostile", "lock", "lambda", "256-MiB"],
)
async def test_unpicklable_hostile_or_enormous_outputs_pass_through_untouched(
    dag_core: Any, autojump_clock: MockClock, make: Any
) -> None:
    made: list[Any] = []

    async def produce() -> Any:
        made.append(make())
        return made[0]

    def consume(value: Any, *, nested: Any) -> bool:
        return value is made[0] and nested[0]["v"] is made[0]

    dag = trio_dag.DAG()
    out = dag.add(produce, name="produce")
    same = dag.add(consume, out, kwargs={"nested": [{"v": out}]}, run_in="inline")
    recorder = Recorder()
    report = await trio_dag.run(dag, on_event=recorder)
    if make is Hostile:
        with pytest.raises(TypeError):
            pickle.dumps(made[0])
    assert report[out] is made[0]
    assert report[same] is True
    assert report.outcome(out).unwrap() is made[0]
    assert recorder.finished()[0].outcome.unwrap() is made[0]
    report.summary()  # never renders outputs


# -- thread bodies that block, bodies that never yield ----------------------------------------


async def test_thread_blocked_for_long_leaves_the_loop_free_and_is_awaited(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    release = threading.Event()
    probe = Probe()

    def blocked() -> str:
        release.wait()
        return "done"

    dag = trio_dag.DAG()
    slow = dag.add(blocked, name="blocked", run_in="thread")
    chain = add_nap(dag, probe, "c0", 1)
    for i in range(1, 50):
        chain = add_nap(dag, probe, f"c{i}", 1, chain)
    add_nap(dag, probe, "after", 1, slow)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_set_when, release, probe, "c49")
        report = await trio_dag.run(dag)
    assert report.ok and report[slow] == "done"
    assert probe.end("c49") == 50  # the loop ran 50 bodies while the thread was blocked
    assert probe.start("after") >= 50


async def _set_when(event: threading.Event, probe: Probe, name: str) -> None:
    while name not in probe.spans:
        await trio.sleep(1)
    event.set()


@pytest.mark.parametrize("ends", ["returns", "raises"])
@pytest.mark.parametrize("how", ["run.cancel", "timeout", "fail_fast"])
async def test_blocked_thread_is_awaited_when_cancelled_and_its_result_discarded(
    dag_core: Any, autojump_clock: MockClock, how: str, ends: str
) -> None:
    # Whether the thread returns or raises once the run stopped (or its
    # deadline passed), what it gives back is discarded the same way.
    release = threading.Event()
    returned: list[float] = []

    def blocked() -> str:
        release.wait()
        returned.append(1)
        if ends == "raises":
            raise KeyError("late")
        return "late"

    async def fail_at_2() -> None:
        await trio.sleep(2)
        raise ValueError("bad")

    dag = trio_dag.DAG()
    h = dag.add(blocked, name="blocked", run_in="thread", timeout=1 if how == "timeout" else None)
    if how == "fail_fast":
        dag.add(fail_at_2, name="bad")

    async def release_later() -> None:
        await trio.sleep(10)
        release.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_later)
        async with trio_dag.open_run(dag, on_failure="fail_fast", check=False) as run:
            if how == "run.cancel":
                await trio.sleep(2)
                run.cancel()
    report = run.report
    assert returned == [1]  # the run waited for the thread
    assert trio.current_time() >= 10
    with pytest.raises(
        trio_dag.TaskFailedError if how == "timeout" else trio_dag.TaskCancelledError
    ):
        report[h]  # the result was discarded
    if how == "timeout":
        assert isinstance(report.errors["blocked"], trio_dag.TaskTimeoutError)


async def test_bodies_that_never_yield_still_let_the_loop_breathe(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    beats: list[int] = []
    done: list[int] = []

    async def busy(k: int) -> int:
        total = 0
        for j in range(200):  # computes without ever reaching a checkpoint
            total += j * k
        done.append(k)
        return total

    async def heartbeat() -> None:
        while True:
            beats.append(len(done))
            await trio.lowlevel.checkpoint()

    dag = trio_dag.DAG()
    dag.map(busy, range(10_000))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat)
        report = await trio_dag.run(dag)
        nursery.cancel_scope.cancel()
    assert report.ok and len(done) == 10_000
    # The heartbeat ran while the run was going on, not only before and after it.
    assert any(0 < k < 10_000 for k in beats)


async def test_a_long_body_that_never_yields_runs_to_its_end(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def spin() -> int:
        total = 0
        for j in range(2_000_000):
            total += j
        return total

    dag = trio_dag.DAG()
    h = dag.add(spin, name="spin", timeout=1)
    after = dag.add(lambda x: x + 1, h, run_in="inline")
    recorder = Recorder()
    report = await trio_dag.run(dag, on_event=recorder)
    # On the Trio clock no time passed, so the timeout did not expire.
    assert report[after] == sum(range(2_000_000)) + 1
    check_run(dag, report, recorder)

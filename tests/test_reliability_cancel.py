"""Cancellation arriving at every step of a task's life, and retries that must not leak.

A task ("victim") is brought to one step of its life at time 2 (waiting for
a dependency, a slot, a shared limiter, a resource, the wave barrier, a
Threshold group, its retry delay; inside its body, in a thread or on a second
attempt) and the run is stopped right then, by ``run.cancel()`` (with every
event still unread), by the caller's scope, or by a failure under fail_fast.
Each case checks the exact outcome, then the whole run with check_run.
Every test runs the engine on both cores (``dag_core``) on a MockClock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from _engine_probe import Probe, add_nap
from _reliability import hang_guard
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import TaskFinished, TaskRetrying, TaskStarted
from trio_dag.testing import Recorder, check_run

STEPS = [
    "dependency",
    "slot",
    "shared limiter",
    "resource",
    "wave barrier",
    "threshold group",
    "retry delay",
    "mid-body",
    "mid-body thread",
    "second attempt",
]
HOWS = ["run.cancel", "caller scope", "fail_fast"]
CANCEL_AT = 2
THREAD_RETURNS_AT = 5


@dataclass
class Scene:
    """A DAG whose task 'victim' is at one step of its life at time 2."""

    step: str
    how: str
    probe: Probe = field(default_factory=Probe)
    dag: trio_dag.DAG = field(default_factory=trio_dag.DAG)
    options: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # attempts the victim made before time 2
    saw_cancelled: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    limiter: trio.CapacityLimiter | None = None


async def _flaky_then_nap(scene: Scene) -> str:
    """Fail the first attempt at 1; later attempts nap for 10 seconds."""
    task = trio_dag.current_task()
    with scene.probe.attempt():
        try:
            await trio.sleep(1 if task.attempt == 1 else 10)
        except trio.Cancelled:
            scene.saw_cancelled.append(task.name)
            raise
        if task.attempt == 1:
            raise ValueError("first attempt")
    return task.name


async def _nap_noting_cancel(scene: Scene, *deps: Any) -> str:
    with scene.probe.attempt():
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            scene.saw_cancelled.append("victim")
            raise
    return "victim"


def _blocked(scene: Scene) -> str:
    scene.release.wait()
    return "victim"


def build(step: str, how: str) -> Scene:
    scene = Scene(step, how)
    dag, probe = scene.dag, scene.probe
    blockers = 0
    if step in ("dependency", "resource", "wave barrier", "threshold group", "slot"):
        uses = {"gpu": 1} if step == "resource" else None
        hog = add_nap(dag, probe, "hog", 10, uses=uses)
        blockers += 1
    if how == "fail_fast":
        add_nap(dag, probe, "trigger", CANCEL_AT, fail=RuntimeError("trigger"))
        blockers += 1
    if step not in ("slot", "shared limiter"):
        quick = add_nap(dag, probe, "quick", 1)
    victim_options: dict[str, Any] = {"name": "victim"}
    if step == "dependency":
        victim = add_nap(dag, probe, "victim", 1, hog)
    elif step in ("slot", "shared limiter"):
        victim = add_nap(dag, probe, "victim", 1)
        if step == "slot":
            scene.options["limit"] = blockers
        else:
            scene.limiter = trio.CapacityLimiter(blockers + 1)
            scene.options["limit"] = scene.limiter
    elif step == "resource":
        victim = add_nap(dag, probe, "victim", 1, uses={"gpu": 1})
        scene.options["resources"] = {"gpu": 1}
    elif step in ("wave barrier", "threshold group"):
        victim = add_nap(dag, probe, "victim", 1, quick)
        add_nap(dag, probe, "late", 1, hog)
        strategy = "waves" if step == "wave barrier" else trio_dag.Threshold(2)
        scene.options["strategy"] = strategy
    elif step in ("retry delay", "second attempt"):
        delay = 10 if step == "retry delay" else 0
        victim = dag.add(_flaky_then_nap, scene, retries=1, retry_delay=delay, **victim_options)
        scene.attempts = 1 if step == "retry delay" else 2
    elif step == "mid-body":
        victim = dag.add(_nap_noting_cancel, scene, **victim_options)
        scene.attempts = 1
    else:
        assert step == "mid-body thread"
        victim = dag.add(_blocked, scene, run_in="thread", **victim_options)
        scene.attempts = 1
    add_nap(dag, probe, "teardown", 1, victim, trigger="all_done")
    scene.options["on_failure"] = "fail_fast" if how == "fail_fast" else "skip"
    return scene


async def _hold_one_token(
    limiter: trio.CapacityLimiter, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with limiter:
        task_status.started()
        await trio.sleep(20)


async def _release_thread(scene: Scene) -> None:
    await trio.sleep(THREAD_RETURNS_AT)
    scene.release.set()


async def stop_the_run(scene: Scene) -> tuple[trio_dag.RunReport, Recorder]:
    """Run the scene and stop the run at time 2 in the scene's way."""
    recorder = Recorder()
    runs: list[trio_dag.Run] = []
    options = {**scene.options, "check": False, "on_event": recorder}
    with hang_guard(threads=scene.step == "mid-body thread"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_thread, scene)
            if scene.limiter is not None:
                await nursery.start(_hold_one_token, scene.limiter)
            with trio.move_on_after(CANCEL_AT if scene.how == "caller scope" else math.inf):
                async with trio_dag.open_run(scene.dag, **options) as run:
                    runs.append(run)
                    if scene.how == "run.cancel":
                        await trio.sleep(CANCEL_AT)
                        run.cancel()
                        # Nothing was read so far: the stream still holds every event.
                        streamed = [event async for event in run.events()]
            nursery.cancel_scope.cancel()
    if scene.how == "run.cancel":
        assert streamed == recorder.events
        assert all(a is b for a, b in zip(streamed, recorder.events, strict=True))
    return runs[0].report, recorder


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("step", STEPS)
async def test_cancellation_at_every_step_of_a_task_life(
    dag_core: Any, autojump_clock: MockClock, step: str, how: str
) -> None:
    scene = build(step, how)
    report, recorder = await stop_the_run(scene)
    probe = scene.probe
    victim = scene.dag["victim"]
    assert report.state(victim) is TaskState.CANCELLED
    with pytest.raises(trio_dag.TaskCancelledError):
        report[victim]
    assert report.timing(victim).attempts == scene.attempts
    assert [e.attempt for e in recorder.of(victim) if isinstance(e, TaskStarted)] == list(
        range(1, scene.attempts + 1)
    )
    if step in ("mid-body", "second attempt"):
        assert scene.saw_cancelled == ["victim"]  # the body itself saw the cancellation
    assert probe.running == set()  # guarantee 4
    if "quick" in scene.dag:
        assert report["quick"] == "quick"  # finished tasks keep their results
    ended = THREAD_RETURNS_AT if step == "mid-body thread" else CANCEL_AT
    if how == "fail_fast":
        assert report["teardown"] == "teardown"  # teardown still runs, once the victim ended
        assert probe.start("teardown") == ended
    else:
        assert report.state("teardown") is TaskState.CANCELLED  # outside: teardown too
        assert "teardown" not in probe.spans
        assert report.stats.makespan == ended
    check_run(scene.dag, report, recorder, cancelled=how != "fail_fast", **scene.options)


async def test_cancel_before_anything_started_and_after_the_end(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 1)
    add_nap(dag, probe, "b", 1, a)
    recorder = Recorder()
    async with trio_dag.open_run(dag, check=False, on_event=recorder) as run:
        run.cancel()
    assert run.report.cancelled == list(dag)
    assert probe.started == []
    check_run(dag, run.report, recorder, cancelled=True)
    async with trio_dag.open_run(dag) as run:
        pass
    run.cancel()  # after the end: changes nothing
    assert run.report.ok


# -- retries never leak into dependents ---------------------------------------------------


async def _flaky(probe: Probe, fails: int) -> str:
    task = trio_dag.current_task()
    with probe.attempt():
        await trio.sleep(1)
        if task.attempt <= fails:
            raise ValueError(f"attempt {task.attempt}")
    return task.name


@pytest.mark.parametrize("on_failure", ["skip", "fail_fast"])
@pytest.mark.parametrize("limit", [None, 1])
@pytest.mark.parametrize("fails", [2, 3])
async def test_while_a_task_waits_to_retry_no_dependent_moves(
    dag_core: Any, autojump_clock: MockClock, fails: int, limit: int | None, on_failure: str
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    flaky = dag.add(_flaky, probe, fails, name="flaky", retries=2, retry_delay=5, retry_backoff=1)
    dependents = {
        add_nap(dag, probe, "by-arg", 1, flaky),
        add_nap(dag, probe, "by-after", 1, after=[flaky]),
        add_nap(dag, probe, "in-list", 1, [flaky]),
        add_nap(dag, probe, "teardown", 1, flaky, trigger="all_done"),
    }
    dependents.add(add_nap(dag, probe, "grandchild", 1, *dependents))
    add_nap(dag, probe, "bystander", 30)
    recorder = Recorder()
    options: dict[str, Any] = {"limit": limit, "on_failure": on_failure}
    with hang_guard():
        report = await trio_dag.run(dag, check=False, on_event=recorder, **options)
    waiting = False
    for event in recorder:
        if event.task == flaky:
            waiting = isinstance(event, TaskRetrying)
        elif waiting:
            assert event.task not in dependents, f"{event} while 'flaky' waited to retry"
    assert len(recorder.retrying()) == 2
    assert [e.attempt for e in recorder.of(flaky) if isinstance(e, TaskStarted)] == [1, 2, 3]
    if fails == 2:
        assert report.ok
    else:
        assert report.state(flaky) is TaskState.FAILED
        finished = recorder.finished()
        first = next(i for i, e in enumerate(finished) if e.task == flaky)
        assert all(
            e.task != d for e in finished[:first] for d in dependents
        )  # nothing of them ended before 'flaky' failed for good
        if on_failure == "skip":
            assert report["teardown"] == "teardown"
            skipped = {"by-arg", "by-after", "in-list", "grandchild"}
            assert {h.name for h in report.skipped} == skipped
    check_run(dag, report, recorder, **options)


async def test_retry_waiting_task_cancelled_by_fail_fast_never_starts_again(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    flaky = dag.add(_flaky, probe, 1, name="flaky", retries=1, retry_delay=5)
    add_nap(dag, probe, "bad", 3, fail=KeyError("bad"))
    recorder = Recorder()
    with hang_guard():
        report = await trio_dag.run(dag, on_failure="fail_fast", check=False, on_event=recorder)
    assert report.state(flaky) is TaskState.CANCELLED
    assert len(probe.spans["flaky"]) == 1
    ends = [e for e in recorder.of(flaky) if isinstance(e, TaskFinished)]
    assert ends[0].time == 3
    check_run(dag, report, recorder, on_failure="fail_fast")


@pytest.mark.parametrize("how", ["fail_fast", "run.cancel"])
async def test_retry_delay_ending_as_the_run_stops_starts_nothing(
    dag_core: Any, autojump_clock: MockClock, how: str
) -> None:
    # SPEC 3: after the first failure under fail_fast "nothing new starts", and
    # run.cancel() "stops everything". A retry whose delay ends in the very
    # instant the run stops is something new: it must not start, whatever
    # order Trio wakes the tasks in (several runs try both orders).
    for _ in range(8):
        probe = Probe()
        dag = trio_dag.DAG()
        flaky = dag.add(_flaky, probe, 1, name="flaky", retries=1, retry_delay=1)
        if how == "fail_fast":
            add_nap(dag, probe, "bad", 2, fail=KeyError("bad"))
        recorder = Recorder()
        with hang_guard():
            async with trio_dag.open_run(
                dag, on_failure="fail_fast", check=False, on_event=recorder
            ) as run:
                if how == "run.cancel":
                    await trio.sleep(2)
                    run.cancel()
        report = run.report
        assert report.state(flaky) is TaskState.CANCELLED
        assert len(probe.spans["flaky"]) == 1
        check_run(dag, report, recorder, cancelled=how == "run.cancel", on_failure="fail_fast")


async def test_fail_fast_reports_the_failure_before_what_it_cancelled(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # Events come "in the order they happened": the failure, then the
    # cancellations it caused (a reader must not see tasks cancelled before
    # anything failed, as when the run is cancelled from outside).
    probe = Probe()
    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 1, fail=KeyError("bad"))
    add_nap(dag, probe, "child", 1, bad)
    add_nap(dag, probe, "slow", 5)
    add_nap(dag, probe, "later", 1, after=["slow"])
    recorder = Recorder()
    with hang_guard():
        report = await trio_dag.run(dag, on_failure="fail_fast", check=False, on_event=recorder)
    ends = [(e.task.name, e.state) for e in recorder.finished()]
    assert ends[0] == ("bad", TaskState.FAILED)
    assert sorted(ends[1:]) == [
        ("child", TaskState.CANCELLED),
        ("later", TaskState.CANCELLED),
        ("slow", TaskState.CANCELLED),
    ]
    check_run(dag, report, recorder, on_failure="fail_fast")

"""Running a DAG: outputs, run/run_sync, run_in, current_task, targets, check,
concurrent runs of one DAG, option checking, and guarantees 1-3 as a property.

Every test that runs the engine takes ``dag_core``, so it runs against both
cores; time is Trio's MockClock (``autojump_clock``).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
import trio
from _engine_probe import Probe, add_nap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState

FINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED}


# -- outputs and dependencies -------------------------------------------------


async def test_outputs_flow_to_dependents(dag_core: Any, autojump_clock: MockClock) -> None:
    dag = trio_dag.DAG()
    one = dag.add(lambda: 1, name="one")

    async def plus(x: int, y: int = 0) -> int:
        await trio.sleep(1)
        return x + y

    two = dag.add(plus, one, kwargs={"y": 1})
    nested = dag.add(lambda d, v: (d, v), {"k": [one, (two,)]}, [[two]])
    order = dag.add(lambda: "after", after=[two, "one"])
    report = await trio_dag.run(dag)
    assert report[one] == 1
    assert report[two] == 2
    assert report[nested] == ({"k": [1, (2,)]}, [[2]])
    assert report[order] == "after"
    assert report.ok


async def test_async_bodies_get_their_literal_arguments_beside_after_edges(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # Async bodies that return at once take the loop's fast path, which hands
    # a task without handles its stored arguments as they are.
    async def echo(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return args, kwargs

    dag = trio_dag.DAG()
    first = dag.add(echo, name="first")
    bare = dag.add(echo, after=[first])
    literal = dag.add(echo, 1, "two", after=[first])
    keyword = dag.add(echo, 3, kwargs={"k": [4]}, after=[first, bare])
    mixed = dag.add(echo, first, 5, kwargs={"k": literal}, after=[keyword])
    report = await trio_dag.run(dag)
    assert report[first] == report[bare] == ((), {})
    assert report[literal] == ((1, "two"), {})
    assert report[keyword] == ((3,), {"k": [4]})
    assert report[mixed] == ((((), {}), 5), {"k": ((1, "two"), {})})


async def test_task_starts_only_after_its_dependencies_succeeded(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 3)
    b = add_nap(dag, probe, "b", 1)
    c = add_nap(dag, probe, "c", 2, a, b)
    add_nap(dag, probe, "d", 1, c, after=["e"])
    add_nap(dag, probe, "e", 7)
    report = await trio_dag.run(dag)
    assert probe.start("c") == max(probe.end("a"), probe.end("b")) == 3
    assert probe.start("d") == max(probe.end("c"), probe.end("e")) == 7
    assert sorted(probe.started) == ["a", "b", "c", "d", "e"]  # each body once
    assert all(report.state(h) is TaskState.SUCCEEDED for h in dag)


async def test_empty_dag_runs(dag_core: Any, autojump_clock: MockClock) -> None:
    report = await trio_dag.run(trio_dag.DAG(), limit=2)
    assert report.ok
    assert len(report) == 0
    assert report.stats.tasks == 0
    assert report.critical_path() == []


def test_run_sync_runs_the_dag_and_returns_the_report(dag_core: Any) -> None:
    dag = trio_dag.DAG()
    a = dag.add(lambda: 20, run_in="inline")
    b = dag.add(lambda x: x + 1, a)  # a sync function: runs in a worker thread

    async def double(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return 2 * x

    c = dag.add(double, b)
    report = trio_dag.run_sync(dag, limit=1, policy="lifo")
    assert isinstance(report, trio_dag.RunReport)
    assert report[c] == 42
    assert report.ok


def test_run_sync_passes_check_and_options(dag_core: Any) -> None:
    dag = trio_dag.DAG()

    def boom() -> None:
        raise ValueError("boom")

    bad = dag.add(boom, run_in="inline")
    dag.add(lambda: 1, name="other", run_in="inline")
    with pytest.raises(trio_dag.RunFailedError):
        trio_dag.run_sync(dag)
    report = trio_dag.run_sync(dag, check=False, targets=[bad])
    assert report.state(bad) is TaskState.FAILED
    assert report.state("other") is TaskState.PENDING


# -- run_in ------------------------------------------------------------------------


async def test_run_in_default_async_in_loop_sync_in_thread(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    loop = threading.get_ident()

    async def in_async() -> int:
        await trio.sleep(1)
        return threading.get_ident()

    def in_sync() -> int:
        return threading.get_ident()

    class AsyncCallable:
        async def __call__(self) -> int:
            await trio.lowlevel.checkpoint()
            return threading.get_ident()

    dag = trio_dag.DAG()
    a = dag.add(in_async)
    s = dag.add(in_sync)
    p = dag.add(functools.partial(in_async))
    o = dag.add(AsyncCallable())
    report = await trio_dag.run(dag)
    assert report[a] == report[p] == report[o] == loop
    assert report[s] != loop


async def test_run_in_explicit(dag_core: Any, autojump_clock: MockClock) -> None:
    loop = threading.get_ident()

    async def in_async() -> int:
        await trio.sleep(1)
        return threading.get_ident()

    def in_sync() -> int:
        trio.lowlevel.current_task()  # raises RuntimeError outside the event loop
        return threading.get_ident()

    def in_thread() -> int:
        with pytest.raises(RuntimeError):
            trio.lowlevel.current_task()
        return threading.get_ident()

    dag = trio_dag.DAG()
    a = dag.add(in_async, run_in="async")
    i = dag.add(in_sync, run_in="inline")
    t = dag.add(in_thread, run_in="thread")
    report = await trio_dag.run(dag)
    assert report[a] == report[i] == loop
    assert report[t] != loop


# -- current_task ---------------------------------------------------------------


async def test_current_task_in_async_inline_and_thread_bodies(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    def info() -> tuple[str, int, tuple[str, ...]]:
        task = trio_dag.current_task()
        assert isinstance(task, trio_dag.TaskInfo)
        return task.name, task.attempt, task.tags

    async def in_async() -> tuple[str, int, tuple[str, ...]]:
        await trio.sleep(1)
        return info()

    dag = trio_dag.DAG()
    a = dag.add(in_async, name="a", tags=["io", "net"])
    i = dag.add(info, name="i", run_in="inline", tags=("cpu",))
    t = dag.add(info, name="t", run_in="thread")
    d = dag.add(info)  # default: a sync function in a thread
    report = await trio_dag.run(dag, limit=2)
    assert report[a] == ("a", 1, ("io", "net"))
    assert report[i] == ("i", 1, ("cpu",))
    assert report[t] == ("t", 1, ())
    assert report[d] == (d.name, 1, ())


async def test_current_task_counts_attempts(dag_core: Any, autojump_clock: MockClock) -> None:
    seen: list[int] = []

    async def flaky() -> int:
        attempt = trio_dag.current_task().attempt
        seen.append(attempt)
        await trio.sleep(1)
        if attempt < 3:
            raise ValueError(attempt)
        return attempt

    dag = trio_dag.DAG()
    h = dag.add(flaky, retries=5)
    report = await trio_dag.run(dag)
    assert report[h] == 3
    assert seen == [1, 2, 3]


async def test_current_task_outside_a_task_body_raises() -> None:
    with pytest.raises(RuntimeError, match="outside a task body"):
        trio_dag.current_task()


async def test_current_task_in_on_event_raises(dag_core: Any, autojump_clock: MockClock) -> None:
    # The docstring: "Raises RuntimeError outside a task body"; an on_event
    # callback is not a task body, also for events emitted while a task ends.
    found: list[tuple[str, str | None]] = []

    def on_event(event: trio_dag.events.Event) -> None:
        try:
            found.append((type(event).__name__, trio_dag.current_task().name))
        except RuntimeError:
            pass

    async def flaky() -> None:
        await trio.sleep(1)
        if trio_dag.current_task().attempt == 1:
            raise ValueError("again")

    dag = trio_dag.DAG()
    dag.add(flaky, retries=1)
    dag.add(flaky, retries=1, retry_delay=1)
    dag.add(lambda: None)
    await trio_dag.run(dag, on_event=on_event)
    assert found == []


# -- targets -----------------------------------------------------------------------


@pytest.mark.parametrize("by", ["handle", "name"])
async def test_targets_run_only_them_and_their_ancestors(
    dag_core: Any, autojump_clock: MockClock, by: str
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 1)
    b = add_nap(dag, probe, "b", 1, a)
    c = add_nap(dag, probe, "c", 1, after=["a"])
    d = add_nap(dag, probe, "d", 1, b, c)
    other = add_nap(dag, probe, "other", 1)
    report = await trio_dag.run(dag, targets=[b if by == "handle" else "b", c.name])
    assert sorted(probe.started) == ["a", "b", "c"]
    assert [report.state(h) for h in (a, b, c)] == [TaskState.SUCCEEDED] * 3
    assert report.state(d) is report.state(other) is TaskState.PENDING
    assert report[b] == "b"
    for left_out in (d, other, "d"):
        with pytest.raises(KeyError):
            report[left_out]
        assert left_out not in report
    assert report.ok
    assert list(report) == [a, b, c]
    assert report.stats.tasks == len(report) == 3
    assert report.timing(d).attempts == 0


async def test_targets_as_one_name(dag_core: Any, autojump_clock: MockClock) -> None:
    dag = trio_dag.DAG()
    a = dag.add(lambda: 1, name="a", run_in="inline")
    b = dag.add(lambda: 2, name="b", run_in="inline")
    report = await trio_dag.run(dag, targets="a")
    assert report[a] == 1
    assert report.state(b) is TaskState.PENDING


async def test_unknown_target_raises_before_anything_starts(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "load", 1)
    with pytest.raises(trio_dag.UnknownDependencyError, match="load") as info:
        await trio_dag.run(dag, targets=["laod"])
    assert info.value.missing == "laod"
    assert info.value.task is None
    with pytest.raises(trio_dag.ForeignHandleError):
        await trio_dag.run(dag, targets=[trio_dag.DAG().add(print)])
    with pytest.raises(trio_dag.UnknownDependencyError):
        async with trio_dag.open_run(dag, targets=["nope"]):
            raise AssertionError("the block must not run")  # pragma: no cover
    assert probe.started == []


# -- check ---------------------------------------------------------------------------


async def test_check_raises_run_failed_error_after_the_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    bad1 = add_nap(dag, probe, "bad1", 1, fail=ValueError("one"))
    bad2 = add_nap(dag, probe, "bad2", 2, fail=KeyError("two"))
    slow = add_nap(dag, probe, "slow", 5)
    with pytest.raises(trio_dag.RunFailedError) as info:
        await trio_dag.run(dag)
    group = info.value
    assert isinstance(group, ExceptionGroup)
    assert probe.running == set()
    assert probe.end("slow") == 5  # the run went on to its end first
    assert [type(e) for e in group.exceptions] == [trio_dag.TaskFailedError] * 2
    by_task = {e.task: e for e in group.exceptions}
    assert isinstance(by_task["bad1"].__cause__, ValueError)
    assert str(by_task["bad1"].__cause__) == "one"
    assert isinstance(by_task["bad2"].__cause__, KeyError)
    report = group.report
    assert isinstance(report, trio_dag.RunReport)
    assert report.failed == [bad1, bad2]
    assert report[slow] == "slow"
    assert report.errors["bad1"] is by_task["bad1"].__cause__


async def test_check_false_returns_the_report(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    bad = add_nap(dag, probe, "bad", 1, fail=ValueError("no"))
    after = add_nap(dag, probe, "after", 1, bad)
    report = await trio_dag.run(dag, check=False)
    assert not report.ok
    assert report.state(bad) is TaskState.FAILED
    assert report.state(after) is TaskState.SKIPPED


# -- one DAG, several runs at once ---------------------------------------------------


async def test_a_dag_runs_several_times_at_once(dag_core: Any, autojump_clock: MockClock) -> None:
    calls: dict[str, int] = {}

    async def work(x: int, *deps: int) -> int:
        name = trio_dag.current_task().name
        calls[name] = calls.get(name, 0) + 1
        await trio.sleep(x)
        return x + sum(deps)

    dag = trio_dag.DAG()
    a = dag.add(work, 1, name="a")
    b = dag.add(work, 2, name="b")
    c = dag.add(work, 3, a, b, name="c")
    d = dag.add(work, 1, c, name="d")
    names = [h.name for h in dag]
    reports: dict[str, trio_dag.RunReport] = {}

    async def one(key: str, **options: Any) -> None:
        reports[key] = await trio_dag.run(dag, **options)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(one, "free"))
        nursery.start_soon(functools.partial(one, "serial", limit=1, policy="lifo"))
        nursery.start_soon(functools.partial(one, "waves", strategy="waves"))
        nursery.start_soon(functools.partial(one, "part", targets=["a"]))
    assert calls == {"a": 4, "b": 3, "c": 3, "d": 3}
    for key in ("free", "serial", "waves"):
        assert reports[key][d] == 1 + (3 + 1 + 2)
        assert reports[key].ok
    assert reports["free"].stats.makespan == 2 + 3 + 1
    assert reports["serial"].stats.makespan == 1 + 2 + 3 + 1
    assert reports["serial"].stats.peak_concurrency == 1
    assert reports["part"].state(c) is TaskState.PENDING
    assert [h.name for h in dag] == names  # running never changes the DAG
    assert len(dag) == 4


# -- options are checked before anything runs ---------------------------------------


BAD_OPTIONS = [
    ({"limit": 0}, ValueError, "limit"),
    ({"limit": -2}, ValueError, "limit"),
    ({"limit": "x"}, TypeError, "limit"),
    ({"limit": 1.5}, TypeError, "limit"),
    ({"limit": True}, TypeError, "limit"),
    ({"policy": "newest"}, ValueError, "policy"),
    ({"policy": 3}, TypeError, "policy"),
    ({"strategy": "batches"}, ValueError, "strategy"),
    ({"strategy": 4}, ValueError, "strategy"),
    ({"on_failure": "ignore"}, ValueError, "on_failure"),
    ({"on_event": "print"}, TypeError, "on_event"),
    ({"resources": {"gpu": -1}}, ValueError, "gpu"),
    ({"resources": ["gpu"]}, TypeError, "resources"),
]


def _watched_dag() -> tuple[trio_dag.DAG, list[str]]:
    ran: list[str] = []
    dag = trio_dag.DAG()
    dag.add(ran.append, "ran", run_in="inline")
    return dag, ran


@pytest.mark.parametrize(("options", "error", "mentions"), BAD_OPTIONS)
async def test_bad_options_raise_before_anything_runs(
    options: dict[str, Any], error: type[Exception], mentions: str
) -> None:
    dag, ran = _watched_dag()
    with pytest.raises(error, match=mentions):
        await trio_dag.run(dag, **options)
    with pytest.raises(error, match=mentions):
        async with trio_dag.open_run(dag, **options):
            raise AssertionError("the block must not run")  # pragma: no cover
    assert ran == []


@pytest.mark.parametrize(("options", "error", "mentions"), BAD_OPTIONS[:3])
def test_run_sync_checks_options_first(
    options: dict[str, Any], error: type[Exception], mentions: str
) -> None:
    dag, ran = _watched_dag()
    with pytest.raises(error, match=mentions):
        trio_dag.run_sync(dag, **options)
    assert ran == []


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_threshold_needs_a_positive_int(n: Any) -> None:
    with pytest.raises(ValueError, match="Threshold"):
        trio_dag.Threshold(n)


async def test_graph_errors_raise_before_anything_runs(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag, ran = _watched_dag()
    dag.add(print, after=["missing"])
    with pytest.raises(trio_dag.UnknownDependencyError):
        await trio_dag.run(dag)
    cyclic, ran2 = _watched_dag()
    cyclic.add(print, after=["y"], name="x")
    cyclic.add(print, after=["x"], name="y")
    with pytest.raises(trio_dag.CycleError):
        await trio_dag.run(cyclic)
    assert ran == ran2 == []


# -- guarantees 1-3, whatever the options ---------------------------------------------

_POLICIES = ["fifo", "lifo", "priority", "critical_path", lambda h: -h.index]
_STRATEGIES = ["immediate", "waves", trio_dag.Threshold(2), trio_dag.Threshold(4)]


@st.composite
def _runs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 12))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        tasks.append(
            {
                "deps": deps,
                "seconds": draw(st.integers(0, 3)),
                "gpu": draw(st.sampled_from([0, 0, 1, 2])),
                "fails": draw(st.booleans()) and draw(st.booleans()),
                "all_done": draw(st.booleans()) and draw(st.booleans()),
                "priority": draw(st.integers(-2, 2)),
            }
        )
    return {
        "tasks": tasks,
        "limit": draw(st.sampled_from([None, 1, 2, 3])),
        "policy": draw(st.sampled_from(range(len(_POLICIES)))),
        "strategy": draw(st.sampled_from(range(len(_STRATEGIES)))),
        "on_failure": draw(st.sampled_from(["skip", "fail_fast"])),
    }


# Drawn runs: priority= under every policy, resources no drawn task uses.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=_runs())
def test_guarantees_hold_whatever_the_options(dag_core: Any, spec: dict[str, Any]) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    handles: list[trio_dag.Handle[Any]] = []
    for i, task in enumerate(spec["tasks"]):
        deps = [handles[j] for j in task["deps"]]
        uses = {"gpu": task["gpu"]} if task["gpu"] else None
        handles.append(
            add_nap(
                dag,
                probe,
                f"t{i}",
                task["seconds"],
                *deps,
                uses=uses,
                fail=ValueError(i) if task["fails"] else None,
                priority=task["priority"],
                trigger="all_done" if task["all_done"] else "all_succeeded",
            )
        )
    strategy = _STRATEGIES[spec["strategy"]]
    report = trio.run(
        functools.partial(
            trio_dag.run,
            dag,
            limit=spec["limit"],
            resources={"gpu": 2},
            policy=_POLICIES[spec["policy"]],
            strategy=strategy,
            on_failure=spec["on_failure"],
            check=False,
        ),
        clock=MockClock(autojump_threshold=0),
    )
    assert probe.running == set()  # guarantee 4
    assert probe.peak <= (spec["limit"] or len(handles))  # guarantee 3
    assert probe.peak_use.get("gpu", 0) <= 2
    assert report.stats.peak_concurrency == probe.peak
    levels = {h: k for k, wave in enumerate(dag.waves()) for h in wave}
    for h, task in zip(handles, spec["tasks"], strict=True):
        state = report.state(h)
        assert state in FINAL  # guarantee 2
        spans = probe.spans.get(h.name, [])
        assert len(spans) <= 1  # no retries here: no body runs twice
        if state is TaskState.SUCCEEDED:
            assert spans and not task["fails"]
        elif state is TaskState.FAILED:
            assert spans and task["fails"]
        elif state is TaskState.SKIPPED:
            assert not spans
        if not spans:
            continue
        for j in task["deps"]:  # guarantee 1
            dep = handles[j]
            if not task["all_done"]:
                assert report.state(dep) is TaskState.SUCCEEDED
            if dep.name in probe.spans:
                assert spans[0][0] >= probe.end(dep.name)
        if strategy == "waves":
            for other in handles:
                if levels[other] < levels[h] and other.name in probe.spans:
                    assert spans[0][0] >= probe.end(other.name)
    if spec["on_failure"] == "skip":
        for h, task in zip(handles, spec["tasks"], strict=True):
            if not task["all_done"] and any(
                report.state(handles[j]) is not TaskState.SUCCEEDED for j in task["deps"]
            ):
                assert report.state(h) is TaskState.SKIPPED
        assert report.cancelled == []

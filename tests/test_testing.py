"""trio_dag.testing: its public names, the strategies, the Recorder, and check_run.

check_run must pass real runs and catch every rule broken on purpose: each
test below doctors a real report or event log so that exactly one rule
breaks, and checks the AssertionError names that rule and the task.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import attrs
import pytest
import trio
from _forged import Doctored, rejects
from _reliability import RESOURCES, on_mock_clock
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import trio_dag
import trio_dag.testing
from trio_dag import TaskState
from trio_dag.events import Event, TaskFinished, TaskRetrying, TaskStarted
from trio_dag.testing import DagShape, Recorder, check_run, dag_shapes, dags

# -- the public surface --------------------------------------------------------------------


def test_public_names() -> None:
    public = {name for name in dir(trio_dag.testing) if not name.startswith("_")}
    assert public == {
        "BrokenPromise",
        "DagPlan",
        "DagShape",
        "Interrupt",
        "RULES",
        "Recorder",
        "check_run",
        "dag_plans",
        "dag_shapes",
        "dags",
        "Growth",
        "growing_dags",
    }
    for name in public - {"RULES"}:
        assert getattr(trio_dag.testing, name).__doc__


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_import_trio_dag_imports_no_hypothesis_and_the_toolkit_needs_no_pytest() -> None:
    done = _python(
        """
        import sys
        import trio_dag
        assert "hypothesis" not in sys.modules, "trio_dag imported hypothesis"
        sys.modules["pytest"] = sys.modules["_pytest"] = None  # as if not installed
        import trio_dag.testing
        from hypothesis import find
        shape = find(trio_dag.testing.dag_shapes(), lambda s: len(s) > 1)
        assert shape == trio_dag.testing.DagShape(((), ()))
        find(trio_dag.testing.dags(), lambda d: len(d) > 1)
        """
    )
    assert done.returncode == 0, done.stderr


def test_without_hypothesis_check_run_works_and_strategies_say_what_to_install() -> None:
    done = _python(
        """
        import sys
        sys.modules["hypothesis"] = None  # as if it were not installed
        import trio_dag, trio_dag.testing
        from trio_dag.testing import Recorder, check_run
        dag = trio_dag.DAG()
        dag.add(lambda: 1, name="one", run_in="inline")
        recorder = Recorder()
        report = trio_dag.run_sync(dag, on_event=recorder)
        check_run(dag, report, recorder)
        for name in ("dags", "dag_shapes", "DagShape"):
            try:
                getattr(trio_dag.testing, name)
            except ImportError as exc:
                assert "pip install trio_dag[test]" in str(exc), exc
            else:
                raise AssertionError(name)
        try:
            from trio_dag.testing import dags
        except ImportError as exc:
            assert "pip install trio_dag[test]" in str(exc), exc
        else:
            raise AssertionError("imported dags")
        try:
            trio_dag.testing.no_such_name
        except AttributeError:
            pass
        """
    )
    assert done.returncode == 0, done.stderr


# -- the Recorder -----------------------------------------------------------------------------


async def _flaky() -> str:
    await trio.sleep(1)
    if trio_dag.current_task().attempt == 1:
        raise ValueError("first")
    return "flaky"


def _small_dag() -> trio_dag.DAG:
    dag = trio_dag.DAG()
    a = dag.add(_flaky, name="a", retries=1, retry_delay=1)
    dag.add(lambda x: x * 2, a, name="b", run_in="inline")
    return dag


async def test_recorder_records_every_event_in_order(autojump_clock: Any) -> None:
    dag = _small_dag()
    recorder = Recorder()
    async with trio_dag.open_run(dag, on_event=recorder) as run:
        streamed = Recorder()
        async for event in run.events():
            streamed(event)
    assert recorder.events == streamed.events and len(recorder) == 6
    assert [type(e) for e in recorder.of("a")] == [
        TaskStarted,
        TaskRetrying,
        TaskStarted,
        TaskFinished,
    ]
    assert recorder.of(dag["b"]) == recorder.of("b") == recorder[-2:]
    assert [e.attempt for e in recorder.started()] == [1, 2, 1]
    assert [e.task.name for e in recorder.retrying()] == ["a"]
    assert [e.task.name for e in recorder.finished()] == ["a", "b"]
    assert list(recorder) == recorder.events
    assert repr(recorder) == "<Recorder of 6 events>"
    check_run(dag, run.report, recorder)
    check_run(dag, run.report, on_event=recorder)  # a Recorder given as on_event is used
    recorder.clear()
    assert len(recorder) == 0


# -- dag_shapes --------------------------------------------------------------------------------


@given(
    shape=dag_shapes(min_tasks=2, max_tasks=30, max_parents=3),
)
def test_dag_shapes_are_within_their_bounds(shape: DagShape) -> None:
    assert 2 <= len(shape) <= 30
    for i, parents in enumerate(shape.parents):
        assert len(parents) <= 3
        assert list(parents) == sorted(set(parents)) and all(p < i for p in parents)
    assert shape.edges == [(p, i) for i, ps in enumerate(shape.parents) for p in ps]


def test_dag_shapes_shrink_to_the_smallest_shape() -> None:
    two_edges = find(dag_shapes(), lambda s: len(s.edges) >= 2)
    assert len(two_edges) == 3 and len(two_edges.edges) == 2
    assert find(dag_shapes(), lambda s: any(len(p) >= 3 for p in s.parents)) == DagShape(
        ((), (), (), (0, 1, 2))
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_tasks": -1},
        {"max_tasks": 2, "min_tasks": 3},
        {"max_parents": -1},
        {"max_tasks": 1.5},
        {"min_tasks": True},
    ],
)
def test_dag_shapes_check_their_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        dag_shapes(**kwargs)
    with pytest.raises(InvalidArgument):
        dags(**kwargs)


def test_dag_shape_refuses_what_is_not_a_dag() -> None:
    with pytest.raises(ValueError, match="parents"):
        DagShape(((), (1,)))
    with pytest.raises(ValueError, match="parents"):
        DagShape(((), (0, 0)))


# -- dags ----------------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(dag=dags(max_tasks=20, resources={"gpu": 2, "tiny": 0.5, "none": 0}))
def test_drawn_dags_are_valid_and_use_what_is_there(dag: trio_dag.DAG) -> None:
    dag.validate()
    assert [h.name for h in dag] == [f"t{i}" for i in range(len(dag))]
    assert len(dag) <= 20
    snap = dag._freeze()
    for h in dag:
        opts = snap.options(h.index)
        assert opts.run_in in (None, "inline")
        for resource, amount in opts.uses:
            assert amount <= {"gpu": 2, "tiny": 0.5}[resource]
        assert all(d.index < h.index for d in dag.dependencies(h))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seconds": 3},
        {"failures": "yes"},
        {"priorities": 1},
        {"run_in": ()},
        {"run_in": "async"},
        {"run_in": ("process",)},
        {"resources": ["gpu"]},
        {"resources": {"gpu": -1}},
        {"resources": {1: 1}},
    ],
)
def test_dags_check_their_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        dags(**kwargs)


def test_dags_show_the_arguments_of_dag_plans_and_their_own_doc() -> None:
    # dags takes dag_plans' parameters (one signature for both); help() and
    # the docs must still show them, under dags' own name and docstring.
    dags_sig = inspect.signature(dags)
    plans_sig = inspect.signature(trio_dag.testing.dag_plans)
    assert dags_sig.parameters == plans_sig.parameters
    assert "DAG]" in str(dags_sig.return_annotation)
    assert dags.__name__ == "dags" and dags.__module__ == "trio_dag.testing"
    assert dags.__doc__ is not None and dags.__doc__.startswith("Draw whole DAGs")
    loose: Any = dags
    with pytest.raises(TypeError):
        loose(3)


def test_dags_with_every_option_off_are_plain() -> None:
    dag = find(
        dags(failures=False, retries=False, timeouts=False, all_done=False, run_in=["thread"]),
        lambda d: len(d) >= 3,
    )
    snap = dag._freeze()
    assert [snap.options(h.index).run_in for h in dag] == ["thread"] * 3
    report = on_mock_clock(lambda: trio_dag.run(dag), threads=True)
    assert report.ok and [report[h] for h in dag] == ["t0", "t1", "t2"]


def test_a_failing_property_prints_a_small_readable_dag() -> None:
    @settings(database=None, max_examples=200, derandomize=True)
    @given(dag=dags(resources=RESOURCES))
    def prop(dag: trio_dag.DAG) -> None:
        report = on_mock_clock(lambda: trio_dag.run(dag, check=False, resources=RESOURCES))
        # A deliberately false property: "a failed task never has a dependent".
        assert not any(dag.dependents(h) for h in report.failed)

    with pytest.raises(AssertionError) as info:
        prop()
    # Hypothesis reports the example in the exception's notes, or in its message.
    example = "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])
    assert "dag=build_dag(" in example and "dag_plan(" in example
    # One task per line, defaults left out, and no more tasks than it takes
    # (a couple at most beside the failing task and its dependent).
    tasks = dict(re.findall(r"^ +(t\d+)=(task\(.*\)),$", example, re.MULTILINE))
    assert 2 <= len(tasks) <= 3, example
    failing = [t for t, body in tasks.items() if re.search(r"fails=1|timeout=", body)]
    assert len(failing) == 1, example
    assert any(re.match(rf"task\(.*\b{failing[0]}\b", body) for body in tasks.values()), example
    assert all(len(body) < 40 for body in tasks.values()), example


# -- check_run passes real runs ---------------------------------------------------------------


def _mixed_dag() -> trio_dag.DAG:
    dag = trio_dag.DAG()

    async def nap(seconds: float, *deps: Any) -> str:
        await trio.sleep(seconds)
        return trio_dag.current_task().name

    async def bad(*deps: Any) -> None:
        await trio.sleep(2)
        raise KeyError("bad")

    a = dag.add(nap, 1, name="a", uses={"gpu": 1})
    b = dag.add(nap, 3, name="b", uses={"gpu": 1})
    f = dag.add(bad, a, name="f")
    dag.add(nap, 1, f, name="skipped")
    dag.add(nap, 1, f, b, name="teardown", trigger="all_done")
    dag.add(_flaky, name="flaky", retries=2, retry_delay=0.5)
    dag.add(nap, 1, b, a, name="late")
    return dag


def _real_run(**options: Any) -> tuple[trio_dag.DAG, trio_dag.RunReport, list[Event]]:
    dag = _mixed_dag()
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(
            dag, check=False, on_event=recorder, resources={"gpu": 2}, **options
        )

    return dag, on_mock_clock(main), recorder.events


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"limit": 1},
        {"limit": 1, "policy": "lifo"},
        {"limit": 1, "policy": "critical_path"},
        {"limit": 1, "policy": "priority"},
        {"strategy": "waves"},
        {"targets": ["late"]},
    ],
)
def test_check_run_passes_real_runs(options: dict[str, Any]) -> None:
    dag, report, events = _real_run(**options)
    check_run(dag, report, events, resources={"gpu": 2}, **options)
    check_run(dag, report, resources={"gpu": 2}, **options)  # the report alone


@pytest.mark.parametrize("limit", [None, 1, 2])
def test_check_run_counts_a_batched_call_once(limit: int | None) -> None:
    @trio_dag.batched(max_size=3)
    async def double(items: list[int]) -> list[int]:
        await trio.sleep(1)
        return [2 * x for x in items]

    dag = trio_dag.DAG()
    dag.map(double, range(7), uses={"gpu": 2})
    dag.add(_flaky, name="flaky", retries=1)
    recorder = Recorder()
    options: dict[str, Any] = {"limit": limit, "resources": {"gpu": 2}}

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(dag, on_event=recorder, **options)

    report = on_mock_clock(main)
    assert {report.batch(h) for h in dag if h.name != "flaky"} == {1, 2, 3}
    check_run(dag, report, recorder, **options)


# -- check_run catches every broken rule -------------------------------------------------------


def _broken(
    rule: str,
    task: str | tuple[str, ...],
    dag: trio_dag.DAG,
    report: Any,
    events: Any,
    **options: Any,
) -> None:
    """check_run raises the AssertionError of *rule*, naming *task* (or one of them)."""
    rejects(rule, task, dag, report, events, **{"resources": {"gpu": 2}, **options})


def _index(events: list[Event], kind: type, name: str, state: TaskState | None = None) -> int:
    return next(
        i
        for i, e in enumerate(events)
        if type(e) is kind and e.task.name == name and (state is None or e.state is state)  # type: ignore[union-attr]
    )


def test_catches_a_task_run_outside_its_targets() -> None:
    dag, report, _ = _real_run()
    _broken("targets", "b", dag, report, None, targets=["skipped"])


def test_catches_a_task_that_ran_without_starting() -> None:
    dag, report, _ = _real_run()
    never = trio_dag.TaskTiming(None, None, 0)
    doctored = Doctored(report, timing=lambda h: never if h.name == "late" else report.timing(h))
    _broken("final state", "late", dag, doctored, None)


def test_catches_a_body_run_twice() -> None:
    dag, report, events = _real_run()
    i = _index(events, TaskStarted, "late")
    _broken("attempts", "late", dag, report, [*events[: i + 1], events[i], *events[i + 1 :]])


def test_catches_a_task_started_before_its_dependency_ended() -> None:
    dag, report, events = _real_run()
    started = _index(events, TaskStarted, "late")
    dep_end = _index(events, TaskFinished, "b")
    moved = [e for e in events if e is not events[started]]
    moved.insert(dep_end, events[started])
    _broken("dependency order", "late", dag, report, moved)
    early = attrs.evolve(report.timing("late"), start=0.0)
    doctored = Doctored(report, timing=lambda h: early if h.name == "late" else report.timing(h))
    _broken("dependency order", "late", dag, doctored, None)


def test_catches_too_many_bodies_at_once() -> None:
    dag, report, events = _real_run()
    _broken("limit", ("a", "b", "flaky"), dag, report, events, limit=1)  # all start at 0
    with pytest.raises(AssertionError, match=r"rule 'limit' broken: report\.stats\.peak"):
        check_run(dag, report, resources={"gpu": 2}, limit=1)


def test_catches_a_resource_over_its_capacity() -> None:
    dag, report, events = _real_run()
    _broken("resources", "b", dag, report, events, resources={"gpu": 1})


def test_catches_a_skip_without_cause_and_a_missing_skip() -> None:
    dag, report, events = _real_run()
    failed = _index(events, TaskFinished, "f")
    doctored = [*events]
    doctored[failed] = attrs.evolve(events[failed], state=TaskState.SUCCEEDED)
    _broken("skip", "skipped", dag, report, doctored)
    states = {"skipped": TaskState.SUCCEEDED}
    ran = Doctored(report, state=lambda h: states.get(h.name, report.state(h)))
    with pytest.raises(AssertionError, match=r"rule '(skip|report)' broken"):
        check_run(dag, ran, resources={"gpu": 2})


def test_catches_a_start_after_the_first_failure_under_fail_fast() -> None:
    dag, report, events = _real_run()  # under "skip": 'late' starts after 'f' failed
    _broken("fail_fast", "skipped", dag, report, None, on_failure="fail_fast")
    without_skips = [e for e in events if getattr(e, "state", None) is not TaskState.SKIPPED]
    states = {"skipped": TaskState.CANCELLED}
    doctored = Doctored(report, state=lambda h: states.get(h.name, report.state(h)))
    with pytest.raises(AssertionError, match=r"rule '(fail_fast|report|events)' broken"):
        check_run(dag, doctored, without_skips, resources={"gpu": 2}, on_failure="fail_fast")


def test_catches_a_start_after_the_run_was_cancelled() -> None:
    dag = trio_dag.DAG()

    async def nap(seconds: float, *deps: Any) -> str:
        await trio.sleep(seconds)
        return "done"

    quick = dag.add(nap, 1, name="quick")
    dag.add(nap, 10, name="slow")
    dag.add(nap, 1, quick, name="late")
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        async with trio_dag.open_run(dag, check=False, on_event=recorder) as run:
            await trio.sleep(5)
            run.cancel()
        return run.report

    report = on_mock_clock(main)
    check_run(dag, report, recorder, cancelled=True)
    events = recorder.events
    cancelled = _index(events, TaskFinished, "slow", TaskState.CANCELLED)
    late = [e for e in events if e.task.name == "late"]
    moved = [e for e in events if e.task.name != "late"]
    moved[cancelled - 2 + 1 : cancelled - 2 + 1] = [attrs.evolve(e, time=5.0) for e in late]  # type: ignore[misc]
    _broken("cancellation", "late", dag, report, moved, cancelled=True)


def test_catches_a_wrong_retry() -> None:
    dag, report, events = _real_run()
    i = _index(events, TaskRetrying, "flaky")
    wrong_delay = [*events]
    wrong_delay[i] = attrs.evolve(events[i], delay=5.0)
    _broken("retries", "flaky", dag, report, wrong_delay)
    not_retryable = [*events]
    not_retryable[i] = attrs.evolve(events[i], error=KeyboardInterrupt())
    _broken("retries", "flaky", dag, report, not_retryable)


def test_catches_a_task_starting_before_its_wave() -> None:
    dag, report, events = _real_run()  # "immediate": 'f' (wave 1) starts while 'b' runs
    _broken("waves", "f", dag, report, events, strategy="waves")
    _broken("waves", "f", dag, report, None, strategy="waves")


async def _nap() -> None:
    await trio.sleep(1)


# Run under lifo, checked under every policy: priority= counts under "priority" only.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
def test_catches_a_start_out_of_policy_order() -> None:
    dag = trio_dag.DAG()
    first = dag.add(_nap, name="first", priority=1)
    for name in ("x", "y", "z"):
        dag.add(_nap, name=name, after=[first], priority=-ord(name))  # x first
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(dag, limit=1, policy="lifo", check=False, on_event=recorder)

    report = on_mock_clock(main)
    check_run(dag, report, recorder, limit=1, policy="lifo")
    for policy, task in [("fifo", "z"), ("priority", "z"), ("critical_path", "z")]:
        _broken("policy", task, dag, report, recorder.events, limit=1, policy=policy)
    check_run(dag, report, recorder, limit=1, policy=lambda h: -h.index)  # z, y, x: as lifo
    _broken("policy", "z", dag, report, recorder.events, limit=1, policy=lambda h: h.index)
    with pytest.raises(AssertionError, match="under policy='the key function'"):
        check_run(dag, report, recorder, limit=1, policy=lambda h: h.name)


def test_catches_a_task_that_overtakes_one_waiting_for_its_resource() -> None:
    # Run under priority: hold, then y, then x take the one "A". Checked as
    # fifo, y overtook x, which waited for "A" since the start and comes first.
    dag = trio_dag.DAG()
    dag.add(_nap, name="hold", priority=3, uses={"A": 1})
    dag.add(_nap, name="x", priority=1, uses={"A": 1})
    dag.add(_nap, name="y", priority=2, uses={"A": 1, "B": 1})
    resources = {"A": 1, "B": 1}
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(
            dag, resources=resources, policy="priority", check=False, on_event=recorder
        )

    report = on_mock_clock(main)
    check_run(dag, report, recorder, resources=resources, policy="priority")
    _broken("resource order", ("y", "x"), dag, report, recorder.events, resources=resources)
    with pytest.raises(AssertionError, match="'x', ready from the start and before it"):
        check_run(dag, report, recorder, resources=resources)
    for other in [{"limit": trio.CapacityLimiter(3)}, {"strategy": trio_dag.Threshold(2)}]:
        _broken("resource order", "y", dag, report, recorder.events, resources=resources, **other)
    # Left unchecked where the events cannot show the order: lifo, waves.
    check_run(dag, report, recorder, resources=resources, policy="lifo")
    check_run(dag, report, recorder, resources=resources, strategy="waves")


def test_a_task_waiting_for_one_resource_may_be_passed_on_another() -> None:
    # SPEC: a task waiting for A never holds back one that needs only B.
    # big-ab waits for A; all-b, after it in fifo order, takes B at once.
    dag = trio_dag.DAG()
    dag.add(_nap, name="hold-a", uses={"A": 1})
    dag.add(_nap, name="big-ab", uses={"A": 2, "B": 1})
    dag.add(_nap, name="all-b", uses={"B": 2})
    resources = {"A": 2, "B": 2}
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(dag, resources=resources, check=False, on_event=recorder)

    report = on_mock_clock(main)
    assert [e.task.name for e in recorder.events if type(e) is TaskStarted] == [
        "hold-a",
        "all-b",
        "big-ab",
    ]
    check_run(dag, report, recorder, resources=resources)


def test_key_function_that_raises_leaves_the_order_unchecked() -> None:
    dag = trio_dag.DAG()
    for name in ("a", "b"):
        dag.add(_nap, name=name)
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(dag, limit=1, check=False, on_event=recorder)

    report = on_mock_clock(main)

    def bad_key(handle: trio_dag.Handle[Any]) -> int:
        raise RuntimeError("key")

    check_run(dag, report, recorder, limit=1, policy=bad_key)


def test_catches_a_broken_event_log() -> None:
    dag, report, events = _real_run()
    end = _index(events, TaskFinished, "late")
    _broken("events", "late", dag, report, events[:end] + events[end + 1 :])
    _broken("events", "late", dag, report, [*events, events[end]])
    other = trio_dag.DAG().add(_flaky, name="late")
    with pytest.raises(AssertionError, match="rule 'events' broken: event #0 is about"):
        check_run(dag, report, [TaskStarted(other, 1, 0.0)], resources={"gpu": 2})
    with pytest.raises(AssertionError, match="rule 'events' broken: event #0 is not an event"):
        check_run(dag, report, ["started"], resources={"gpu": 2})  # type: ignore[list-item]
    backwards = [*events]
    backwards[end] = attrs.evolve(events[end], time=0.0)
    _broken("events", "late", dag, report, backwards)


def test_catches_a_report_that_disagrees() -> None:
    dag, report, events = _real_run()
    _broken("report", "f", dag, Doctored(report, errors={}), None)
    _broken("report", "a", dag, Doctored(report, getitem=lambda h: "other"), None)
    stats = attrs.evolve(report.stats, peak_concurrency=1)
    with pytest.raises(AssertionError, match=r"rule 'report' broken: report\.stats\.peak"):
        check_run(dag, Doctored(report, stats=stats), events, resources={"gpu": 2})


def test_check_run_checks_its_own_arguments() -> None:
    dag, report, _ = _real_run()
    with pytest.raises(ValueError, match="on_failure"):
        check_run(dag, report, on_failure="ignore")
    with pytest.raises(ValueError, match="limit"):
        check_run(dag, report, limit=0)
    with pytest.raises(ValueError, match="another DAG"):
        check_run(_mixed_dag(), report)


# -- check_run never fails in any other way ----------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(dag=dags(max_tasks=10, resources=RESOURCES), data=st.data())
def test_check_run_on_mangled_event_logs_only_raises_assertion_errors(
    dag: trio_dag.DAG, data: st.DataObject
) -> None:
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(dag, check=False, on_event=recorder, resources=RESOURCES)

    report = on_mock_clock(main)
    events = list(recorder)
    if events:
        for _ in range(data.draw(st.integers(1, 3), label="mangles")):
            i = data.draw(st.integers(0, len(events) - 1), label="at")
            how = data.draw(st.sampled_from(["drop", "repeat", "swap", "to-end"]), label="how")
            event = events.pop(i) if how in ("drop", "to-end") else events[i]
            if how == "repeat":
                events.insert(i, event)
            elif how == "to-end":
                events.append(event)
            elif how == "swap" and i + 1 < len(events):
                events[i], events[i + 1] = events[i + 1], events[i]
            if not events:
                break
    try:
        check_run(dag, report, events, resources=RESOURCES)
    except AssertionError as exc:
        assert str(exc).startswith("rule ")

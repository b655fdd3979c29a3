"""Every malformed call of the public API gets a specific error, at once.

Never an AttributeError or a TypeError from deep inside, never a hang, and a
rejected call changes nothing: the DAG keeps its tasks and a run starts none.
Runs take ``dag_core``, so they are checked on both cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import trio
from _reliability import on_mock_clock
from trio.testing import MockClock

import trio_dag


async def nap() -> str:
    await trio.sleep(1)
    return "nap"


def _dag() -> tuple[trio_dag.DAG, trio_dag.Handle[str]]:
    dag = trio_dag.DAG()
    return dag, dag.add(nap, name="a")


_OTHER = trio_dag.DAG()
_FOREIGN = _OTHER.add(nap, name="elsewhere")

# (options of DAG.add, exception, a phrase the message must hold)
BAD_ADD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"name": 3}, TypeError, "name must be a str"),
    ({"name": ""}, ValueError, "name must not be empty"),
    ({"name": "a"}, trio_dag.DuplicateTaskError, "'a'"),
    ({"kwargs": [1]}, TypeError, "kwargs="),
    ({"kwargs": {1: 2}}, TypeError, "kwargs= keys must be str"),
    ({"after": 3}, TypeError, "after="),
    ({"after": [None]}, TypeError, "after="),
    ({"after": [""]}, TypeError, "after="),
    ({"after": [_FOREIGN]}, trio_dag.ForeignHandleError, "another DAG"),
    ({"priority": 1.5}, TypeError, "priority"),
    ({"priority": True}, TypeError, "priority"),
    ({"cost": 0}, ValueError, "cost"),
    ({"cost": -1}, ValueError, "cost"),
    ({"cost": math.nan}, ValueError, "cost"),
    ({"cost": math.inf}, ValueError, "cost"),
    ({"cost": "1"}, TypeError, "cost"),
    ({"tags": "io"}, TypeError, "tags"),
    ({"tags": [1]}, TypeError, "tags"),
    ({"tags": None}, TypeError, "tags"),
    ({"uses": ["gpu"]}, TypeError, "uses="),
    ({"uses": {1: 1}}, TypeError, "uses="),
    ({"uses": {"gpu": 0}}, ValueError, "uses['gpu']"),
    ({"uses": {"gpu": -1}}, ValueError, "uses['gpu']"),
    ({"uses": {"gpu": math.nan}}, ValueError, "uses['gpu']"),
    ({"uses": {"gpu": "1"}}, TypeError, "uses['gpu']"),
    ({"retries": -1}, ValueError, "retries"),
    ({"retries": 1.5}, TypeError, "retries"),
    ({"retry_delay": -1}, ValueError, "retry_delay"),
    ({"retry_delay": math.inf}, ValueError, "retry_delay"),
    ({"retry_backoff": 0}, ValueError, "retry_backoff"),
    ({"retry_on": "ValueError"}, TypeError, "retry_on"),
    ({"retry_on": (ValueError, 3)}, TypeError, "retry_on"),
    ({"retry_on": KeyboardInterrupt}, ValueError, "KeyboardInterrupt"),
    ({"timeout": 0}, ValueError, "timeout"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"timeout": math.nan}, ValueError, "timeout"),
    ({"timeout": "1"}, TypeError, "timeout"),
    ({"run_in": "process"}, ValueError, "run_in"),
    ({"run_in": "thread"}, ValueError, "async"),  # nap is async
    ({"trigger": "any"}, ValueError, "trigger"),
]


@pytest.mark.parametrize(("options", "error", "phrase"), BAD_ADD)
def test_bad_add_raises_a_specific_error_and_adds_nothing(
    options: dict[str, Any], error: type[Exception], phrase: str
) -> None:
    dag, a = _dag()
    with pytest.raises(error) as info:
        dag.add(nap, a, **options)
    assert phrase in str(info.value)
    assert len(dag) == 1 and list(dag) == [a]
    dag.add(nap, a, name="fine")  # the DAG is still usable


BAD_FN: list[Any] = [None, 3, "nap", nap(), [nap]]


@pytest.mark.parametrize("fn", BAD_FN, ids=["None", "int", "str", "coroutine", "list"])
def test_add_of_something_not_callable_is_a_type_error(fn: Any) -> None:
    dag, _ = _dag()
    with pytest.raises(TypeError, match="callable"):
        dag.add(fn)
    if hasattr(fn, "close"):
        fn.close()
    assert len(dag) == 1


@pytest.mark.parametrize(
    "args",
    [(_FOREIGN,), ([_FOREIGN],), ({"k": (_FOREIGN,)},)],
    ids=["handle", "in-list", "nested"],
)
def test_handle_of_another_dag_as_argument_is_rejected(args: tuple[Any, ...]) -> None:
    dag, _ = _dag()
    with pytest.raises(trio_dag.ForeignHandleError, match="another DAG"):
        dag.add(nap, *args)
    with pytest.raises(trio_dag.ForeignHandleError):
        dag.add(nap, kwargs={"x": args[0]})
    assert len(dag) == 1


def test_argument_that_contains_itself_is_rejected() -> None:
    dag, a = _dag()
    loop: list[Any] = [a]
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        dag.add(nap, loop)
    assert len(dag) == 1


def test_bad_map_adds_nothing() -> None:
    dag, a = _dag()
    with pytest.raises(TypeError, match="default names"):
        dag.map(nap, [1, 2], name="x")
    with pytest.raises(TypeError):
        dag.map(nap, 3)  # type: ignore[arg-type]
    with pytest.raises(trio_dag.ForeignHandleError):
        dag.map(nap, [a, a, _FOREIGN])
    with pytest.raises(ValueError, match="retries"):
        dag.map(nap, [1, 2], retries=-1)
    assert len(dag) == 1


LOOKUPS: list[tuple[Callable[[trio_dag.DAG], Any], type[Exception]]] = [
    (lambda dag: dag["missing"], KeyError),
    (lambda dag: dag[3], TypeError),
    (lambda dag: dag[_FOREIGN], trio_dag.ForeignHandleError),
    (lambda dag: dag.dependencies("missing"), KeyError),
    (lambda dag: dag.dependencies(None), TypeError),
    (lambda dag: dag.dependents(_FOREIGN), trio_dag.ForeignHandleError),
]


@pytest.mark.parametrize(("lookup", "error"), LOOKUPS)
def test_bad_lookups_raise_a_specific_error(
    lookup: Callable[[trio_dag.DAG], Any], error: type[Exception]
) -> None:
    dag, _ = _dag()
    with pytest.raises(error):
        lookup(dag)
    assert 3 not in dag and None not in dag and _FOREIGN not in dag


def test_graph_errors_name_the_problem() -> None:
    dag, _ = _dag()
    dag.add(nap, name="b", after=["c"])
    dag.add(nap, name="c", after=["b"])
    with pytest.raises(trio_dag.CycleError) as cycle:
        dag.validate()
    assert cycle.value.cycle in (["b", "c", "b"], ["c", "b", "c"])
    typo, _ = _dag()
    typo.add(nap, name="load", after=["aa"])
    with pytest.raises(trio_dag.UnknownDependencyError, match="did you mean 'a'"):
        typo.validate()


# -- run(), run_sync() and open_run() -----------------------------------------------------

NOT_A_DAG: list[Any] = [None, "dag", 3, [trio_dag.DAG()], _FOREIGN]


@pytest.mark.parametrize("thing", NOT_A_DAG, ids=["None", "str", "int", "list", "handle"])
def test_running_something_that_is_not_a_dag_is_a_type_error(dag_core: Any, thing: Any) -> None:
    async def run() -> None:
        with pytest.raises(TypeError, match="DAG"):
            await trio_dag.run(thing)
        with pytest.raises(TypeError, match="DAG"):
            async with trio_dag.open_run(thing):
                raise AssertionError("the block must not run")  # pragma: no cover

    on_mock_clock(run)
    with pytest.raises(TypeError, match="DAG"):
        trio_dag.run_sync(thing)


BAD_RUN: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"limit": 0}, ValueError, "limit"),
    ({"limit": 1.5}, TypeError, "limit"),
    ({"limit": trio.CapacityLimiter}, TypeError, "limit"),
    ({"resources": {"gpu": math.nan}}, ValueError, "gpu"),
    ({"resources": {"gpu": math.inf}}, ValueError, "gpu"),
    ({"resources": {3: 1}}, TypeError, "resource names"),
    ({"resources": "gpu"}, TypeError, "resources"),
    ({"policy": None}, TypeError, "policy"),
    ({"policy": "random"}, ValueError, "policy"),
    ({"strategy": trio_dag.Threshold}, ValueError, "strategy"),
    ({"strategy": None}, ValueError, "strategy"),
    ({"on_failure": None}, ValueError, "on_failure"),
    ({"on_event": 3}, TypeError, "on_event"),
    ({"targets": ["missing"]}, trio_dag.UnknownDependencyError, "missing"),
    ({"targets": [_FOREIGN]}, trio_dag.ForeignHandleError, "another DAG"),
    ({"targets": 3}, TypeError, "targets"),
    ({"targets": [3]}, TypeError, "3"),
    ({"resources": {"gpu": 1}, "_uses": {"gpu": 2}}, trio_dag.ResourceError, "capacity 1"),
    ({"resources": {"cpu": 1}, "_uses": {"gpu": 1}}, trio_dag.ResourceError, "does not provide"),
    ({"_uses": {"gpu": 1}}, trio_dag.ResourceError, "does not provide"),
]


@pytest.mark.parametrize(("options", "error", "phrase"), BAD_RUN)
async def test_bad_run_options_raise_before_anything_starts(
    dag_core: Any,
    autojump_clock: MockClock,
    options: dict[str, Any],
    error: type[Exception],
    phrase: str,
) -> None:
    options = dict(options)
    started: list[str] = []
    dag = trio_dag.DAG()
    dag.add(started.append, "a", name="a", run_in="inline")
    if "_uses" in options:
        dag.add(started.append, "b", name="b", run_in="inline", uses=options.pop("_uses"))
    with pytest.raises(error) as info:
        await trio_dag.run(dag, **options)
    assert phrase in str(info.value)
    with pytest.raises(error):
        async with trio_dag.open_run(dag, **options):
            raise AssertionError("the block must not run")  # pragma: no cover
    assert started == []


async def test_resource_above_capacity_is_fine_for_a_task_left_out_of_the_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    dag.add(nap, name="small", uses={"gpu": 1})
    dag.add(nap, name="huge", uses={"gpu": 5})
    report = await trio_dag.run(dag, resources={"gpu": 1}, targets=["small"])
    assert report["small"] == "nap"
    with pytest.raises(trio_dag.ResourceError) as info:
        await trio_dag.run(dag, resources={"gpu": 1})
    assert (info.value.task, info.value.resource, info.value.amount) == ("huge", "gpu", 5)


async def test_a_single_handle_as_targets_is_one_target(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # A single name is one target (SPEC: "targets: handles or names"); so is a
    # single handle.
    dag, a = _dag()
    other = dag.add(nap, name="other")
    report = await trio_dag.run(dag, targets=a)
    assert report[a] == "nap"
    assert report.state(other) is trio_dag.TaskState.PENDING


async def test_positional_options_and_unknown_options_are_type_errors(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag, _ = _dag()
    with pytest.raises(TypeError):
        await trio_dag.run(dag, 2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="limt"):
        await trio_dag.run(dag, limt=2)  # type: ignore[call-arg]


async def test_run_sync_inside_a_run_is_a_runtime_error(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag, _ = _dag()
    with pytest.raises(RuntimeError):
        trio_dag.run_sync(dag)


async def test_misuse_of_an_open_run(dag_core: Any, autojump_clock: MockClock) -> None:
    dag, _ = _dag()
    async with trio_dag.open_run(dag) as run:
        with pytest.raises(RuntimeError, match="not ended"):
            run.report  # noqa: B018
        events = run.events()
        with pytest.raises(RuntimeError, match="once"):
            run.events()
        async for _ in events:
            pass
    assert run.report.ok


# -- the report -----------------------------------------------------------------------------


async def test_asking_a_report_about_unknown_tasks(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag, a = _dag()
    report = await trio_dag.run(dag)
    added_later = dag.add(nap, name="later")
    # SPEC 4: report[h] raises KeyError for a task that was not part of the run,
    # with a message about the report (no targets= was given, and 'later' exists).
    for task, name in (("missing", "missing"), (added_later, "later")):
        with pytest.raises(KeyError, match=name) as info:
            report[task]
        assert "targets=" not in str(info.value)
        assert task not in report
    with pytest.raises(TypeError):
        report[3]  # type: ignore[index]
    with pytest.raises(trio_dag.ForeignHandleError):
        report[_FOREIGN]
    assert list(report) == [a] and len(report) == 1

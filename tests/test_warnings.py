"""NoEffectWarning: a run says which of its settings do nothing, before anything starts.

Each warning is raised once per run, names the tasks (the first few, and
how many), points at the user's call, and is not raised where the setting
has an effect. A ``uses=`` naming a resource the run lacks is a
ResourceError that suggests a close name.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from trio.testing import MockClock

import trio_dag
from trio_dag.testing import dags

NoEffect = trio_dag.NoEffectWarning


def nothing(*args: Any) -> None:
    return None


@contextmanager
def warned() -> Iterator[list[warnings.WarningMessage]]:
    """Every NoEffectWarning raised in the block, each shown (none turned into an error)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoEffect)
        yield caught
    caught[:] = [w for w in caught if issubclass(w.category, NoEffect)]


def messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught]


def prioritized(n: int) -> trio_dag.DAG:
    dag = trio_dag.DAG()
    for i in range(n):
        dag.add(nothing, name=f"p{i}", priority=i + 1)
    dag.add(nothing, name="plain")
    return dag


# -- priority= under a policy that ignores it --------------------------------------------------


def test_no_effect_warning_is_a_public_user_warning() -> None:
    assert issubclass(NoEffect, UserWarning)
    assert NoEffect.__module__ == "trio_dag"
    assert "filterwarnings" in (NoEffect.__doc__ or "")


@pytest.mark.parametrize("policy", ["fifo", "lifo", "critical_path"])
async def test_priority_under_a_policy_that_ignores_it_warns(
    dag_core: Any, autojump_clock: MockClock, policy: str
) -> None:
    dag = prioritized(1)
    with warned() as caught:
        await trio_dag.run(dag, policy=policy)  # type: ignore[arg-type]
    assert len(caught) == 1
    assert caught[0].category is NoEffect
    assert caught[0].filename == __file__  # the user's call, not trio_dag's
    message = str(caught[0].message)
    assert message.startswith("task 'p0' sets priority=")
    assert f"policy={policy!r} ignores" in message and "policy='priority'" in message


async def test_priority_under_a_key_function_warns(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # A key function gets handles, which show no priority: it cannot read it.
    def by_index(handle: trio_dag.Handle[Any]) -> int:
        return handle.index

    with warned() as caught:
        await trio_dag.run(prioritized(2), policy=by_index)
    assert messages(caught) == [
        "tasks 'p0', 'p1' set priority=, which the policy key function "
        f"{by_index.__qualname__} ignores: only policy='priority' starts tasks by priority "
        "(higher first); run with policy='priority', or leave priority= out"
    ]


async def test_a_warning_names_the_first_tasks_and_counts_them(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    with warned() as caught:
        await trio_dag.run(prioritized(5))
    assert len(caught) == 1
    assert str(caught[0].message).startswith("5 tasks ('p0', 'p1', 'p2', ...) set priority=")


@pytest.mark.parametrize("strategy", ["immediate", "waves", trio_dag.Threshold(2)])
async def test_priority_under_policy_priority_does_not_warn(
    dag_core: Any, autojump_clock: MockClock, strategy: Any
) -> None:
    # filterwarnings=error: any warning fails the test.
    report = await trio_dag.run(prioritized(3), policy="priority", strategy=strategy)
    assert report.ok


async def test_default_priority_and_tasks_outside_targets_do_not_warn(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    first = dag.add(nothing, name="first", priority=0, retries=1)
    dag.add(nothing, name="urgent", priority=5)
    assert (await trio_dag.run(dag, targets=[first])).ok


async def test_options_shared_or_not_warn_for_exactly_the_tasks_in_the_run(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # The warnings ask each distinct TaskOptions once (tasks added alike
    # share one): interleaved, equal-but-not-shared and outside-targets
    # options must still name exactly the tasks of the run that set them.
    dag = trio_dag.DAG()
    tasks = [
        dag.add(nothing, name=f"t{i}", priority=i % 2, tags=("x",) if i == 4 else ())
        for i in range(6)
    ]
    dag.add(nothing, name="outside", cache=True, priority=3)
    with warned() as caught:
        await trio_dag.run(dag, targets=tasks, resources={"x": 1})
    shown = [str(w.message) for w in caught]
    assert len(shown) == 3
    assert shown[0].startswith("tasks 't1', 't3', 't5' set priority=")
    assert shown[1].startswith("resources= gives 'x', but no task of the run uses it")
    assert shown[2].startswith("task 't4' has a tag named like a resource of the run ('x')")


# -- a resource no task uses -------------------------------------------------------------------


async def test_a_resource_no_task_uses_warns(dag_core: Any, autojump_clock: MockClock) -> None:
    dag = trio_dag.DAG()
    dag.add(nothing, name="train", uses={"gpu": 1})
    dag.add(nothing, name="plain")
    with warned() as caught:
        await trio_dag.run(dag, resources={"gpu": 1, "mem": 8, "disk": 0})
    assert len(caught) == 1 and caught[0].filename == __file__
    message = str(caught[0].message)
    assert message.startswith("resources= gives 'mem', 'disk', but no task of the run uses them")
    assert "uses={'mem': amount}" in message


async def test_a_resource_used_only_outside_targets_warns(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    plain = dag.add(nothing, name="plain")
    dag.add(nothing, plain, name="train", uses={"gpu": 1})
    with warned() as caught:
        await trio_dag.run(dag, resources={"gpu": 1}, targets=[plain])
    assert len(caught) == 1
    assert "'gpu', but no task of the run uses it" in str(caught[0].message)
    # The whole DAG uses it.
    assert (await trio_dag.run(dag, resources={"gpu": 1})).ok


async def test_resources_of_a_run_with_no_task_do_not_warn(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # Nothing runs, so nothing could have used them: not worth a warning.
    assert (await trio_dag.run(trio_dag.DAG(), resources={"gpu": 1})).ok


async def test_resources_every_task_kind_uses_do_not_warn(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    @trio_dag.batched(max_size=4)
    async def embed(items: list[int]) -> list[int]:
        return items

    dag = trio_dag.DAG()
    for i in range(3):
        dag.add(embed, i, uses={"model": 1})
    dag.add(nothing, uses={"gpu": 0.5})
    report = await trio_dag.run(dag, resources={"model": 1, "gpu": 1})
    assert report.ok


# -- tags named like a resource, without uses --------------------------------------------------


async def test_a_tag_named_like_a_resource_without_uses_warns(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    dag.add(nothing, name="a", tags=("io", "gpu"))
    dag.add(nothing, name="b", tags=("gpu",), uses={"gpu": 1})  # uses it: fine
    dag.add(nothing, name="c", tags=("io",))  # no resource of that name: fine
    dag.add(nothing, name="d", tags=("gpu",))
    with warned() as caught:
        await trio_dag.run(dag, resources={"gpu": 1})
    assert messages(caught) == [
        "tasks 'a', 'd' have a tag named like a resource of the run ('gpu') but no uses= of "
        "it: tags limit nothing; to take the resource, pass uses={'gpu': amount} to dag.add"
    ]


async def test_tags_without_resources_do_not_warn(dag_core: Any, autojump_clock: MockClock) -> None:
    dag = trio_dag.DAG()
    dag.add(nothing, name="a", tags=("gpu",))
    assert (await trio_dag.run(dag)).ok


# -- every kind at once, every entry point, filtering ------------------------------------------


def mixed() -> trio_dag.DAG:
    dag = trio_dag.DAG()
    dag.add(nothing, name="urgent", priority=1)
    dag.add(nothing, name="tagged", tags=("gpu",))
    return dag


def test_run_sync_warns_each_kind_once_at_the_callers_line(dag_core: Any) -> None:
    with warned() as caught:
        trio_dag.run_sync(mixed(), resources={"gpu": 1})
    assert [w.filename for w in caught] == [__file__] * 3
    assert len({w.lineno for w in caught}) == 1
    text = messages(caught)
    assert "task 'urgent' sets priority=" in text[0]
    assert "resources= gives 'gpu'" in text[1]
    assert "task 'tagged' has a tag named like a resource" in text[2]


async def test_open_run_warns_at_the_callers_line_before_the_block(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    with warned() as caught:
        async with trio_dag.open_run(mixed(), resources={"gpu": 1}) as run:
            assert len(caught) == 3
        assert run.report.ok
    assert [w.filename for w in caught] == [__file__] * 3


async def test_a_warning_made_an_error_stops_the_run_before_anything_starts(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    started = []
    dag = trio_dag.DAG()
    dag.add(started.append, 1, priority=2)
    with pytest.raises(NoEffect):  # filterwarnings=error
        await trio_dag.run(dag)
    assert started == []
    dag.add(nothing)  # the DAG is not left running


def test_filtering_the_category_silences_every_warning(dag_core: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=trio_dag.NoEffectWarning)
        assert trio_dag.run_sync(mixed(), resources={"gpu": 1}).ok
    assert caught == []


# -- uses= naming a resource the run lacks -----------------------------------------------------


async def test_an_unknown_resource_suggests_a_close_name(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    dag.add(nothing, name="train", uses={"gpus": 1}, priority=1)
    # The error comes first, even where a warning would be an error.
    with pytest.raises(trio_dag.ResourceError) as info:
        await trio_dag.run(dag, resources={"gpu": 2, "cpu": 4})
    error = info.value
    assert (error.task, error.resource, error.capacity, error.suggestion) == (
        "train",
        "gpus",
        None,
        "gpu",
    )
    assert str(error).endswith("which the run does not provide; did you mean 'gpu'?")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.suggestion) == (str(error), "gpu")
    with pytest.raises(trio_dag.ResourceError, match="did you mean 'gpu'"):
        async with trio_dag.open_run(dag, resources={"gpu": 2}):
            raise AssertionError("the block must not run")  # pragma: no cover


async def test_an_unknown_resource_with_nothing_close_says_to_pass_it(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    dag.add(nothing, name="train", uses={"gpu": 1})
    with pytest.raises(trio_dag.ResourceError) as info:
        await trio_dag.run(dag, resources={"memory": 2})
    assert info.value.suggestion is None
    assert "pass resources={'gpu': ...} to the run" in str(info.value)


# -- the testing strategies draw DAGs that do not warn ----------------------------------------

RESOURCES = {"gpu": 2, "mem": 3.5}


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dag=dags(max_tasks=8, resources=RESOURCES, batched=True))
def test_drawn_dags_use_every_resource_and_keep_default_priorities(
    dag_core: Any, dag: trio_dag.DAG
) -> None:
    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(dag, resources=RESOURCES, check=False)

    trio.run(main, clock=MockClock(autojump_threshold=0))  # filterwarnings=error


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dag=dags(max_tasks=8, priorities=True))
def test_drawn_priorities_do_not_warn_under_policy_priority(
    dag_core: Any, dag: trio_dag.DAG
) -> None:
    trio.run(
        lambda: trio_dag.run(dag, policy="priority", check=False),
        clock=MockClock(autojump_threshold=0),
    )

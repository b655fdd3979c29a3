"""What ordinary Trio users write, drawn, run and held to SPEC by ``check_run``.

The bodies come from ``trio_dag.testing.dag_plans``: coroutines that sleep,
open a nursery of children, catch ``Cancelled`` and clean up behind a
shield, await a clean-up in ``finally`` behind a shield, hand work to
``trio.to_thread.run_sync``, time out by their own ``trio.fail_after``,
raise an ``ExceptionGroup`` (on the real clock, also run a short process
with ``trio.run_process``); sync bodies run inline and in threads;
``@batched`` functions, async and sync (inline, in a thread), under every
option (``max_size``, ``max_delay``, ``uses``, retries, timeouts); ``uses=``
amounts as floats that add up exactly to a capacity (0.1 + 0.2 of 0.3) and
as ``Fraction``s. Runs go under every policy, strategy, ``on_failure`` and
kind of limit, while a task beside the run calls ``run.cancel_task`` and
``run.cancel()`` at drawn moments. Every run is checked by ``check_run``
with every event, and what each failed task holds must be what its body
raised: a body's own ``TooSlowError`` is not a ``TaskTimeoutError``, and
the other way round.

Each test runs on both cores (``dag_core``). Time is a MockClock (with no
Trio deadline of the test's own: the clock may jump while a thread runs) or,
in one small test, the real clock; every run is bounded (a hang fails with
the drawn plan). ``--hypothesis-profile=long`` runs 100 times more examples.

Last, what users pass that trio_dag does not look into: a handle inside a
dataclass or attrs instance (the guide says so; SPEC lists the containers
searched).
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
from _reliability import (
    EXACT_RESOURCES,
    SUITE,
    describe,
    examples,
    on_mock_clock,
    on_real_clock,
    real_options,
    run_options,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_dag
from trio_dag.testing import DagPlan, Recorder, check_run, dag_plans

# Drawn DAGs run under every policy (priority= counts under "priority" only).
pytestmark = pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")


MOCK_BODIES = ("sleep", "nursery", "catch", "finally", "to_thread", "fail_after")
# Processes first, as only the real-clock test draws them.
REAL_BODIES = ("process", "finally", "to_thread", "fail_after", "nursery", "catch", "sleep")
RUN_IN = ("async", "inline", "thread")


def _draw_stops(data: st.DataObject, plan: DagPlan) -> tuple[list[tuple[int, str]], int | None]:
    """Up to 4 ``run.cancel_task`` calls (half units from the start, task name), and
    when to call ``run.cancel()`` (half units), or never."""
    names = [f"t{i}" for i in range(len(plan))]
    picks = (
        data.draw(
            st.lists(st.tuples(st.integers(0, 8), st.sampled_from(names)), max_size=4),
            label="cancel_task (half units, task)",
        )
        if names
        else []
    )
    stop_at = data.draw(st.none() | st.integers(0, 12), label="run.cancel() at (half units)")
    return sorted(picks), stop_at


class _Stops:
    """What the task beside the run did: the tasks it cancelled alone, and whether
    it called ``run.cancel()`` before the run ended."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.run = False


async def _run_and_stop(
    dag: trio_dag.DAG,
    used: dict[str, Any],
    recorder: Recorder,
    picks: list[tuple[int, str]],
    stop_at: int | None,
    unit: float,
    stops: _Stops,
) -> trio_dag.RunReport:
    async def cancel_tasks(run: trio_dag.Run, start: float) -> None:
        for at, name in picks:
            await trio.sleep_until(start + at * unit / 2)
            try:
                run.cancel_task(name)
            except RuntimeError as error:
                assert "cannot be cancelled alone" in str(error)
            else:
                stops.tasks.append(name)

    async def cancel_run(run: trio_dag.Run, at: int) -> None:
        await trio.sleep(at * unit / 2)
        counts = run.counts
        if counts.pending + counts.ready + counts.running:
            stops.run = True  # else the run has ended: cancel() does nothing
        run.cancel()

    async with trio_dag.open_run(dag, check=False, on_event=recorder, **used) as run:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_tasks, run, trio.current_time())
            if stop_at is not None:
                nursery.start_soon(cancel_run, run, stop_at)
            async for _ in run.events():
                pass  # to the run's end
            nursery.cancel_scope.cancel()
    return run.report


def _check_stopped_run(
    plan: DagPlan,
    dag: trio_dag.DAG,
    report: trio_dag.RunReport,
    recorder: Recorder,
    stops: _Stops,
    used: dict[str, Any],
) -> None:
    """check_run's rules, with the cancels that took, and each error the body's own."""
    check_run(
        dag, report, recorder, cancelled=stops.run, cancelled_tasks=sorted(set(stops.tasks)), **used
    )
    _errors_are_the_bodies_own(plan, report)


def _errors_are_the_bodies_own(plan: DagPlan, report: trio_dag.RunReport) -> None:
    """Each FAILED task holds what its body (or its batched call, or its timeout)
    raised, of the drawn kind: never another task's error, never a timeout where
    none was set (a batch runs under its opener's), never a body's own
    TooSlowError made a TaskTimeoutError."""
    for i, task in enumerate(plan.tasks):
        name = f"t{i}"
        if name not in report.errors:
            continue
        error = report.errors[name]
        kind = type(error)
        where = f"task {name} failed with {kind.__name__}\nplan: {plan!r}"
        if task.batch is not None:
            # A call that raised, or returned a short list; or it timed out,
            # under the timeout of the task that opened the batch (the guide).
            timed = any(t.timeout is not None for t in plan.tasks if t.batch == task.batch)
            assert kind is ValueError or (kind is trio_dag.TaskTimeoutError and timed), where
            continue
        if kind is trio_dag.TaskTimeoutError:
            assert task.timeout is not None, where
            continue
        if task.body == "fail_after" and task.run_in == "async":
            assert kind is trio.TooSlowError, where
            continue
        if task.body == "process" and task.run_in == "async":
            assert kind is subprocess.CalledProcessError, where
            continue
        allowed = {"value": (ValueError,), "unprintable": (Exception,), "group": (ExceptionGroup,)}
        if task.body == "nursery" and task.run_in == "async":
            assert kind is ExceptionGroup or task.error == "unprintable", where
        else:
            assert isinstance(error, allowed[task.error]), where
            assert kind is not trio.TooSlowError, where


@SUITE
@given(
    plan=dag_plans(
        priorities=True,
        max_tasks=10,
        resources=EXACT_RESOURCES,
        bodies=MOCK_BODIES,
        run_in=RUN_IN,
        batched=True,
    ),
    options=run_options(EXACT_RESOURCES),
    data=st.data(),
)
def test_what_users_write_keeps_the_rules_when_cancelled_at_drawn_moments(
    dag_core: Any, plan: DagPlan, options: dict[str, Any], data: st.DataObject
) -> None:
    _stopped_at_drawn_moments(
        plan, options, data, 1.0, lambda main, what: on_mock_clock(main, threads=True, what=what)
    )


def _stopped_at_drawn_moments(
    plan: DagPlan,
    options: dict[str, Any],
    data: st.DataObject,
    gap: float,
    run_on: Callable[[Callable[[], Awaitable[trio_dag.RunReport]], str], trio_dag.RunReport],
) -> None:
    """Run *plan* with *options*, stopping tasks or the run at drawn moments
    (*gap* seconds apart), on the clock *run_on* gives (``run_on(main,
    what)``), and check what it did."""
    dag = plan.build()
    picks, stop_at = _draw_stops(data, plan)
    recorder = Recorder()
    used: dict[str, Any] = {}
    stops = _Stops()

    async def main() -> trio_dag.RunReport:
        used.update(real_options(options))
        return await _run_and_stop(dag, used, recorder, picks, stop_at, gap, stops)

    report = run_on(main, describe(plan, options, picks=picks, stop_at=stop_at))
    _check_stopped_run(plan, dag, report, recorder, stops, used)


@settings(SUITE, max_examples=examples(0.5))
@given(
    plan=dag_plans(
        priorities=True, max_tasks=8, resources=EXACT_RESOURCES, bodies=MOCK_BODIES, batched=True
    ),
    options=run_options(EXACT_RESOURCES),
    release_at=st.integers(0, 8),
    data=st.data(),
)
def test_a_limiter_shared_with_the_caller_keeps_the_rules(
    dag_core: Any, plan: DagPlan, options: dict[str, Any], release_at: int, data: st.DataObject
) -> None:
    # The run's limit is a CapacityLimiter the caller also holds a token of,
    # and gives back at a drawn moment: a worker of the run waits for a token
    # (the run has as many workers as tokens), and gets it then.
    dag = plan.build()
    picks, stop_at = _draw_stops(data, plan)
    recorder = Recorder()
    used: dict[str, Any] = {}
    stops = _Stops()

    async def main() -> trio_dag.RunReport:
        limiter = trio.CapacityLimiter(2)
        await limiter.acquire_on_behalf_of("caller")
        used.update({**options, "limit": limiter})

        async def give_back() -> None:
            await trio.sleep(release_at / 2)
            limiter.release_on_behalf_of("caller")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(give_back)
            report = await _run_and_stop(dag, used, recorder, picks, stop_at, 1.0, stops)
        assert limiter.borrowed_tokens == 0
        return report

    report = on_mock_clock(
        main,
        threads=True,
        what=describe(plan, options, picks=picks, stop_at=stop_at, release_at=release_at),
    )
    _check_stopped_run(plan, dag, report, recorder, stops, used)


@settings(SUITE, max_examples=examples(0.1))
@given(
    plan=dag_plans(
        priorities=True,
        max_tasks=5,
        max_parents=2,
        resources=EXACT_RESOURCES,
        bodies=REAL_BODIES,
        run_in=RUN_IN,
        batched=True,
        real_clock=True,
    ),
    options=run_options(EXACT_RESOURCES),
    data=st.data(),
)
def test_what_users_write_keeps_the_rules_on_the_real_clock(
    dag_core: Any, plan: DagPlan, options: dict[str, Any], data: st.DataObject
) -> None:
    _stopped_at_drawn_moments(
        plan, options, data, 0.002, lambda main, what: on_real_clock(main, seconds=10, what=what)
    )


# -- a handle inside an object of the user's own ---------------------------------------


@dataclasses.dataclass
class _Config:
    source: Any


@attrs.define
class _Settings:
    source: Any


def test_a_handle_inside_a_dataclass_or_attrs_instance_is_not_looked_for(dag_core: Any) -> None:
    # As the guide says (graphs.md, "Handles are not looked for anywhere
    # else"): only lists, tuples and dicts (and their subclasses) are
    # searched, as walking arbitrary objects at every add would cost every
    # user. The task does not depend on the handle, and its body receives the
    # object as it was passed, handle inside.
    dag = trio_dag.DAG()
    source = dag.add(str, "data", name="source", run_in="inline")
    boxes = [_Config(source), _Settings(source)]
    tasks = [
        dag.add(lambda box: box, box, name=f"t{k}", run_in="inline") for k, box in enumerate(boxes)
    ]
    assert [dag.dependencies(t) for t in tasks] == [(), ()]
    report = on_mock_clock(lambda: trio_dag.run(dag))
    assert [report[t] for t in tasks] == boxes
    assert all(report[t].source is source for t in tasks)

"""The engine keeps every promise of SPEC section 3 on random DAGs under random options.

Random DAGs come from ``trio_dag.testing.dags`` and ``dag_plans``: the bodies
users write (sleeps, inner nurseries, bodies that catch and re-raise
``Cancelled``, inline and thread bodies, short real processes on the real
clock, ``@batched`` functions with wrong-length results and raising calls),
failures, retries falling due together, timeouts, all_done teardown, and
resource uses in whole and fractional amounts that add up exactly to the
capacities. Options come from every policy, strategy, failure mode and kind
of limit. Runs go through ``run`` and ``open_run``, with ``check`` on and
off, watched through ``on_event`` and ``run.events()``, and stopped from
outside (``run.cancel()``, an outer scope; after a drawn time or at a drawn
event) or not. Each run is held to the SPEC by ``trio_dag.testing.check_run``
and by what may leave a run (``held_to_spec``); each test runs on both cores
(``dag_core``). Time is a MockClock, or the real clock in short runs; every
run is bounded (a hang fails with the drawn plan). Hypothesis seeds Trio's
scheduler per example (Trio registers its scheduling ``Random`` with
Hypothesis), so MockClock examples mostly replay.

``--hypothesis-profile=long`` runs 100 times more examples.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _reliability import (
    EXACT_RESOURCES,
    RESOURCES,
    SUITE,
    cancels,
    check_spec,
    describe,
    draw_targets,
    examples,
    held_to_spec,
    mock_run,
    newest_first,
    on_mock_clock,
    on_real_clock,
    real_options,
    run_drawn,
    run_options,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_dag
from trio_dag.events import Event
from trio_dag.testing import DagPlan, Recorder, check_run, dag_plans, dags

# Drawn DAGs run under every policy (priority= counts under "priority" only)
# and with targets= (which may leave out the tasks that use a resource):
# settings without effect are part of the draw, not a mistake.
pytestmark = pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")

DAGS = dags(priorities=True, max_tasks=16, resources=RESOURCES)
# What users write, on the MockClock: every async body but processes, batched
# functions, inline bodies, exact resources.
BODIES = ("sleep", "nursery", "catch")
PLANS = dag_plans(
    priorities=True, max_tasks=12, resources=EXACT_RESOURCES, bodies=BODIES, batched=True
)


@SUITE
@given(dag=DAGS, options=run_options(), data=st.data())
def test_every_run_keeps_the_guarantees(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any], data: st.DataObject
) -> None:
    options["targets"] = draw_targets(data, dag)
    report, recorder, used = mock_run(dag, **options)
    check_run(dag, report, recorder, **used)


CONTENDED = {"A": 2.0, "B": 1.0, "C": 3.0}


@SUITE
@given(
    dag=dags(
        priorities=True,
        max_tasks=12,
        failures=False,
        retries=False,
        timeouts=False,
        all_done=False,
        resources=CONTENDED,
    ),
    limit=st.sampled_from([None, 2, 3]),
    policy=st.sampled_from(["fifo", "priority", "critical_path", newest_first]),
)
def test_tasks_contending_for_resources_wait_their_turn(
    dag_core: Any, dag: trio_dag.DAG, limit: int | None, policy: Any
) -> None:
    # Most tasks need two or three scarce resources: what check_run's
    # "resource order" rule sees best (no task overtakes one that waits
    # before it; one waiting for A never holds back one that needs only B).
    report, recorder, used = mock_run(dag, limit=limit, policy=policy, resources=CONTENDED)
    check_run(dag, report, recorder, **used)


@SUITE
@given(dag=DAGS, options=run_options())
def test_check_raises_exactly_when_a_task_failed(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any]
) -> None:
    recorder = Recorder()
    used = real_options(options)

    async def main() -> trio_dag.RunReport:
        try:
            report = await trio_dag.run(dag, on_event=recorder, **used)
        except trio_dag.RunFailedError as group:
            report = group.report
            assert isinstance(report, trio_dag.RunReport)
            assert report.failed  # raised only when a task FAILED
            assert [e.task for e in group.exceptions] == [h.name for h in report.failed]
            for error in group.exceptions:
                assert type(error) is trio_dag.TaskFailedError
                assert error.__cause__ is report.errors[error.task]
        else:
            assert not report.failed
        return report

    report = on_mock_clock(main)
    check_run(dag, report, recorder, **used)


@SUITE
@given(
    dag=DAGS,
    options=run_options(),
    cancel_at=st.none() | st.integers(0, 8).map(lambda k: k / 2),
    reader_sleeps=st.sampled_from([0, 0, 3]),
)
def test_streamed_runs_keep_the_guarantees_also_when_cancelled(
    dag_core: Any,
    dag: trio_dag.DAG,
    options: dict[str, Any],
    cancel_at: float | None,
    reader_sleeps: float,
) -> None:
    # run.cancel() at a drawn moment (or never), and a reader that may be far
    # slower than the run: the stream still holds every event, in order.
    events: list[Event] = []
    used = real_options(options)

    async def main() -> trio_dag.RunReport:
        async with trio_dag.open_run(dag, check=False, **used) as run:
            async with trio.open_nursery() as nursery:
                if cancel_at is not None:

                    async def cancel_later() -> None:
                        await trio.sleep(cancel_at)
                        run.cancel()

                    nursery.start_soon(cancel_later)
                async for event in run.events():
                    events.append(event)
                    await trio.sleep(reader_sleeps)
                nursery.cancel_scope.cancel()
        return run.report

    report = on_mock_clock(main)
    check_run(dag, report, events, cancelled=cancel_at is not None, **used)


@SUITE
@given(dag=DAGS, options=run_options(), cancel_at=st.integers(1, 8).map(lambda k: k / 2))
def test_runs_cancelled_by_the_caller_keep_the_guarantees(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any], cancel_at: float
) -> None:
    recorder = Recorder()
    used = real_options(options)
    runs: list[trio_dag.Run] = []

    async def main() -> None:
        with trio.move_on_after(cancel_at):
            async with trio_dag.open_run(dag, check=False, on_event=recorder, **used) as run:
                runs.append(run)

    on_mock_clock(main)
    check_run(dag, runs[0].report, recorder, cancelled=True, **used)


@pytest.mark.parametrize("strategy", ["immediate", "waves"])
@settings(SUITE, max_examples=examples(0.25))
@given(
    dag=dags(
        priorities=True,
        max_tasks=10,
        resources=EXACT_RESOURCES,
        run_in=("async", "inline", "thread"),
        bodies=BODIES,
        batched=True,
    ),
    options=run_options(EXACT_RESOURCES),
)
def test_runs_with_thread_bodies_keep_the_guarantees(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any], strategy: str
) -> None:
    # Threads finish when the OS lets them, so these runs are not replayable
    # exactly; the guarantees hold whatever the order.
    options["strategy"] = strategy
    report, recorder, used = mock_run(dag, threads=True, **options)
    check_run(dag, report, recorder, **used)


# -- what users write, cancelled from outside or not --------------------------------------


@SUITE
@given(
    plan=dag_plans(
        priorities=True,
        max_tasks=12,
        resources=EXACT_RESOURCES,
        bodies=BODIES,
        batched=True,
        interrupts=True,
    ),
    options=run_options(EXACT_RESOURCES),
    check=st.booleans(),
    data=st.data(),
)
def test_nothing_leaves_a_run_but_what_spec_says(
    dag_core: Any, plan: DagPlan, options: dict[str, Any], check: bool, data: st.DataObject
) -> None:
    # A report, or RunFailedError (check=True and a task FAILED), CallbackError
    # (on_event raised), or the BaseException a body raised, unwrapped: never a
    # group of Cancelled, never an internal error. And no task ends CANCELLED
    # in a run that nobody cancelled.
    dag = plan.build()
    api = data.draw(st.sampled_from(["open_run", "run"]), label="api")
    cancel = data.draw(cancels(api), label="cancel")
    raise_at = data.draw(st.none() | st.integers(1, 12), label="on_event raises at event")
    ran = on_mock_clock(
        lambda: run_drawn(dag, options, api=api, check=check, cancel=cancel, raise_at=raise_at),
        what=describe(plan, options, api=api, cancel=cancel, raise_at=raise_at),
    )
    held_to_spec(dag, ran, plan=plan, run_api=api)
    if ran.report is not None:
        check_spec(dag, ran)


@SUITE
@given(plan=PLANS, options=run_options(EXACT_RESOURCES), data=st.data())
def test_drawn_runs_keep_the_guarantees_also_when_cancelled(
    dag_core: Any, plan: DagPlan, options: dict[str, Any], data: st.DataObject
) -> None:
    dag = plan.build()
    options["targets"] = draw_targets(data, dag)
    cancel = data.draw(cancels("open_run"), label="cancel")
    ran = on_mock_clock(
        lambda: run_drawn(dag, options, cancel=cancel),
        what=describe(plan, options, cancel=cancel),
    )
    held_to_spec(dag, ran, plan=plan, run_api="open_run")
    check_spec(dag, ran)
    if ran.stream_complete:
        assert ran.streamed == ran.events, "run.events() and on_event saw different events"


@SUITE
@given(
    plan=dag_plans(
        priorities=True,
        max_tasks=12,
        resources=EXACT_RESOURCES,
        bodies=BODIES,
        batched=True,
        failures=False,
        timeouts=False,
    ),
    options=run_options(EXACT_RESOURCES),
)
def test_runs_where_nothing_fails_succeed_entirely(
    dag_core: Any, plan: DagPlan, options: dict[str, Any]
) -> None:
    # No body fails, nothing times out, nobody cancels: every task SUCCEEDS,
    # also when amounts of a resource add up exactly to its capacity (0.1 +
    # 0.2 of 0.3, 0.2 + 0.7 of 0.9), however the floats round.
    dag = plan.build()
    ran = on_mock_clock(lambda: run_drawn(dag, options), what=describe(plan, options))
    held_to_spec(dag, ran, plan=plan, run_api="open_run")
    assert ran.report is not None
    not_ok = {h.name: ran.report.state(h).name for h in ran.report if h not in ran.report.succeeded}
    assert not not_ok, f"tasks did not succeed: {not_ok}\n{describe(plan, options)}"


# On the real clock: ms-scale durations, a few tasks, every body users write;
# processes first, as only these runs draw them.
REAL_BODIES = ("process", "nursery", "catch", "sleep")


@settings(SUITE, max_examples=examples(0.5))
@given(
    plan=dag_plans(
        priorities=True,
        max_tasks=6,
        max_parents=2,
        resources=EXACT_RESOURCES,
        bodies=REAL_BODIES,
        run_in=("async", "inline", "thread"),
        batched=True,
        real_clock=True,
    ),
    options=run_options(EXACT_RESOURCES),
    data=st.data(),
)
def test_runs_on_the_real_clock_keep_the_guarantees(
    dag_core: Any, plan: DagPlan, options: dict[str, Any], data: st.DataObject
) -> None:
    dag = plan.build()
    cancel = data.draw(cancels("open_run"), label="cancel")
    ran = on_real_clock(
        lambda: run_drawn(dag, options, cancel=cancel, unit=0.002),
        seconds=10,
        what=describe(plan, options, cancel=cancel),
    )
    held_to_spec(dag, ran, plan=plan, run_api="open_run")
    check_spec(dag, ran)


# -- every run ends: a hang is a failure that names the plan -------------------------------


def test_a_run_that_waits_forever_on_the_mock_clock_fails_naming_its_plan() -> None:
    with pytest.raises(AssertionError, match=r"(?s)hangs: not over after 10000 s of Trio time.*t0"):
        on_mock_clock(trio.sleep_forever, what="plan: dag_plan(t0=task())")


def test_a_hang_the_mock_clock_cannot_see_fails_on_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With threads no Trio deadline may be set; the watchdog thread cancels.
    monkeypatch.setattr("_reliability.WATCHDOG_SECONDS", 0.2)
    with pytest.raises(AssertionError, match=r"(?s)wall-clock time.*the plan"):
        on_mock_clock(trio.sleep_forever, threads=True, what="the plan")


def test_a_run_on_the_real_clock_that_hangs_fails_naming_its_plan() -> None:
    with pytest.raises(AssertionError, match=r"(?s)hangs: not over.*the plan"):
        on_real_clock(trio.sleep_forever, seconds=0.2, what="the plan")

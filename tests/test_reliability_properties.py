"""The engine keeps every promise of SPEC section 3 on random DAGs under random options.

Random DAGs come from ``trio_dag.testing.dags`` (sleeps on the Trio clock,
failures, retries, timeouts, all_done teardown, resource uses), options from
every policy, strategy, failure mode and kind of limit; each run is then held
to the SPEC by ``trio_dag.testing.check_run``. Runs are watched through
``on_event`` and through ``run.events()``, stopped by ``run.cancel()`` and by
the caller's scope, and each test runs on both cores (``dag_core``). Time is
a MockClock; Hypothesis seeds Trio's scheduler per example (Trio registers
its scheduling ``Random`` with Hypothesis), so examples replay exactly.

``--hypothesis-profile=long`` runs 100 times more examples.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _reliability import (
    RESOURCES,
    draw_targets,
    mock_run,
    newest_first,
    on_mock_clock,
    real_options,
    run_options,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_dag
from trio_dag.events import Event
from trio_dag.testing import Recorder, check_run, dags

# The dag_core fixture is function-scoped on purpose: one core for all examples.
suite = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DAGS = dags(max_tasks=16, resources=RESOURCES)


@suite
@given(dag=DAGS, options=run_options(), data=st.data())
def test_every_run_keeps_the_guarantees(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any], data: st.DataObject
) -> None:
    options["targets"] = draw_targets(data, dag)
    report, recorder, used = mock_run(dag, **options)
    check_run(dag, report, recorder, **used)


CONTENDED = {"A": 2.0, "B": 1.0, "C": 3.0}


@suite
@given(
    dag=dags(
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


@suite
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


@suite
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


@suite
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
@settings(suite, max_examples=25)
@given(
    dag=dags(max_tasks=10, resources=RESOURCES, run_in=("async", "inline", "thread")),
    options=run_options(),
)
def test_runs_with_thread_bodies_keep_the_guarantees(
    dag_core: Any, dag: trio_dag.DAG, options: dict[str, Any], strategy: str
) -> None:
    # Threads finish when the OS lets them, so these runs are not replayable
    # exactly; the guarantees hold whatever the order.
    options["strategy"] = strategy
    report, recorder, used = mock_run(dag, threads=True, **options)
    check_run(dag, report, recorder, **used)

"""Invariants of runs that grow, on both cores: random tasks that add tasks and join them.

Every added task reaches one final state, dependencies are respected, the
limit and resources hold (``check_run``, with the events), and every join
is resolved to its tasks' outputs or fails with the first joined failure
as its cause.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.testing import Recorder, check_run, growing_dags

pytestmark = pytest.mark.usefixtures("dag_core")

OPTIONS = st.fixed_dictionaries(
    {
        "limit": st.sampled_from([None, 1, 2]),
        "policy": st.sampled_from(["fifo", "lifo", "priority", "critical_path", "depth_first"]),
        "on_failure": st.sampled_from(["skip", "fail_fast"]),
    }
)


def _joined_outputs_agree(report: trio_dag.RunReport) -> None:
    # A joining task's output holds its children's outputs; its failure's
    # cause is a child's error.
    for h in [*report.succeeded, *report.failed]:
        fn = h.dag._fns[h.index]  # the plan the task ran
        plan = getattr(fn, "args", (None,))[0]
        if plan is None or not getattr(plan, "join", False):
            continue
        if report.state(h) is TaskState.SUCCEEDED:
            assert isinstance(report[h], list)
            assert len(report[h]) == len(plan.children)
        else:
            error = report.errors[h.name]
            assert error.__cause__ is not None or isinstance(error, ValueError)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag=growing_dags(), options=OPTIONS)
def test_growing_runs_keep_the_rules(dag: trio_dag.DAG, options: dict[str, Any]) -> None:
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(600):
            return await trio_dag.run(dag, check=False, on_event=recorder, **options)

    report = trio.run(main, clock=MockClock(autojump_threshold=0))
    check_run(dag, report, recorder, **options)
    check_run(dag, report, **options)  # the report alone
    _joined_outputs_agree(report)
    assert len(dag) == report.stats.tasks - (report.stats.tasks - len(dag))  # unchanged DAG

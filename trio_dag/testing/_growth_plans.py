"""Hypothesis strategies of runs that grow: tasks that add tasks, and joins.

:func:`growing_dags` draws a DAG whose tasks add tasks to their run while it
goes on (``trio_dag.current_run().add``), some of them adding tasks in turn,
and may join what they added by returning the handles. Every body is
deterministic given the draw (sleeps on the Trio clock, failures drawn), so
a run can be checked with :func:`~trio_dag.testing.check_run` and replayed.
Never imports pytest.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

import attrs
import trio
from hypothesis import strategies as st

from .. import DAG, Handle, current_run

__all__ = ["Growth", "growing_dags"]

_TRIGGERS: Final = ("all_succeeded", "all_succeeded", "all_done")


@attrs.frozen
class Growth:
    """What one task of a growing DAG does: sleep, maybe fail, add tasks, maybe join them.

    Attributes:
      delay: Seconds (Trio clock) its body sleeps, after adding.
      fails: Whether its body raises ``ValueError`` (after sleeping).
      children: What each task it adds does, in the order added.
      after: For each child, the earlier children (by position) it depends on.
      join: Whether it returns the handles of its children (a join) rather
        than their count.
      trigger: The ``trigger=`` it is added with (children only).
    """

    delay: int
    fails: bool
    children: tuple[Growth, ...] = ()
    after: tuple[tuple[int, ...], ...] = ()
    join: bool = False
    trigger: str = "all_succeeded"


async def _body(plan: Growth, *_inputs: Any) -> Any:
    """A task of a growing DAG: add the children, sleep, fail or return."""
    made: list[Handle[Any]] = []
    if plan.children:
        add = current_run().add
        for child, after in zip(plan.children, plan.after, strict=True):
            made.append(
                add(
                    partial(_body, child),
                    after=[made[j] for j in after],
                    trigger=child.trigger,
                )
            )
    if plan.delay:
        await trio.sleep(plan.delay)
    if plan.fails:
        raise ValueError(f"drawn to fail after {plan.delay} s")
    return made if plan.join else len(made)


@st.composite
def _growths(draw: st.DrawFn, depth: int, budget: list[int]) -> Growth:
    delay = draw(st.integers(0, 2))
    fails = draw(st.integers(0, 5)) == 0
    trigger = draw(st.sampled_from(_TRIGGERS))
    children: list[Growth] = []
    after: list[tuple[int, ...]] = []
    if depth > 0:
        for k in range(draw(st.integers(0, min(3, budget[0])))):
            if budget[0] <= 0:
                break
            budget[0] -= 1
            after.append(
                tuple(draw(st.lists(st.integers(0, k - 1), max_size=2, unique=True))) if k else ()
            )
            children.append(draw(_growths(depth - 1, budget)))
    join = bool(children) and draw(st.booleans())
    return Growth(delay, fails, tuple(children), tuple(after), join, trigger)


@st.composite
def growing_dags(draw: st.DrawFn, *, max_tasks: int = 4, max_added: int = 8) -> DAG:
    """A DAG of up to *max_tasks* tasks that add up to *max_added* tasks in all while running.

    Each task of the DAG (a chain or fan-in drawn at random) may add
    children with :meth:`Run.add <trio_dag.Run.add>`, which may add their
    own (two levels), depend on earlier children (``after=``, some with
    ``trigger="all_done"``), sleep a drawn number of seconds, fail, and join
    what they added by returning the handles. Each task's function is a
    :func:`functools.partial` of one body and the task's :class:`Growth`
    (its ``args[0]``), so a test can read what a task was drawn to do::

        @given(dag=trio_dag.testing.growing_dags())
        def test_growing_runs(dag):
            recorder = trio_dag.testing.Recorder()
            report = trio_dag.run_sync(dag, check=False, on_event=recorder)
            trio_dag.testing.check_run(dag, report, recorder)
    """
    if not isinstance(max_tasks, int) or max_tasks < 1:
        raise ValueError(f"max_tasks must be an int >= 1, got {max_tasks!r}")
    if not isinstance(max_added, int) or max_added < 0:
        raise ValueError(f"max_added must be an int >= 0, got {max_added!r}")
    n = draw(st.integers(1, max_tasks))
    budget = [max_added]
    dag = DAG()
    handles: list[Handle[Any]] = []
    for i in range(n):
        plan = draw(_growths(2, budget))
        parents = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        handles.append(dag.add(partial(_body, plan), *[handles[p] for p in parents]))
    return dag

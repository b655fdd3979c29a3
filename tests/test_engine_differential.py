"""The compiled and the pure-Python backends run the same drawn DAGs the same way.

One drawn plan is built twice, once under each backend (switched as the
``dag_core`` fixture switches them), and run on a MockClock. With
``limit=1`` a run is fully determined (SPEC 3: "With limit=1 the start order
is fully determined"), so the two runs must agree on everything a user sees:
the start order of every attempt, batch numbers, timings, states, outputs
and errors, under every policy, strategy and failure mode; and two runs on
one backend must agree as well. With any limit,
runs with ``on_failure="skip"`` whose outcomes do not hang on the order of
tasks ready at one instant (no batched call that fails or times out) must
agree on states and outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import attrs
import conftest
import pytest
from _reliability import (
    EXACT_RESOURCES,
    SUITE,
    describe,
    examples,
    on_mock_clock,
    real_options,
    run_options,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_dag
from trio_dag.events import TaskStarted
from trio_dag.testing import DagPlan, Recorder, dag_plans

# Drawn DAGs run under every policy (priority= counts under "priority" only)
# and with targets= (which may leave out the tasks that use a resource):
# settings without effect are part of the draw, not a mistake.
pytestmark = pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")

suite = settings(SUITE, max_examples=examples(0.6))
BODIES = ("sleep", "nursery", "catch")
PLANS = dag_plans(
    priorities=True, max_tasks=12, resources=EXACT_RESOURCES, bodies=BODIES, batched=True
)


@pytest.fixture
def use_backend(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Switch to the backend tagged "python" or "cython" in the middle of a test.

    Calls the ``dag_core`` fixture's own code, so that however that fixture
    switches backends, this switches them the same way; the compiled one is
    skipped (or fails, under TRIO_DAG_REQUIRE_EXTENSION) as it is there.
    """
    switch = conftest.dag_core.__wrapped__
    implementations = {param.id: param.values[0] for param in conftest.BOTH}

    def use(tag: str) -> None:
        switch(SimpleNamespace(param=implementations[tag]), monkeypatch)

    return use


def _error(exc: BaseException) -> tuple[str, str]:
    try:
        text = str(exc)
    except Exception:  # a drawn error that cannot be printed
        text = "<unprintable>"
    return type(exc).__name__, text


def _seen(plan: DagPlan, options: dict[str, Any], *, order: bool) -> dict[str, Any]:
    """Run a fresh DAG of *plan* with *options*; what a user sees of the run."""
    dag = plan.build()
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        used = real_options(options)
        return await trio_dag.run(dag, check=False, on_event=recorder, **used)

    report = on_mock_clock(main, what=describe(plan, options))
    seen: dict[str, Any] = {
        "states": {h.name: report.state(h).name for h in dag},
        "outputs": {h.name: report[h] for h in report.succeeded},
        "errors": {name: _error(exc) for name, exc in report.errors.items()},
    }
    if order:
        started = [e for e in recorder.events if isinstance(e, TaskStarted)]
        seen["starts"] = [(e.task.name, e.attempt, e.time, e.batch) for e in started]
        seen["timings"] = {h.name: attrs.astuple(report.timing(h)) for h in report}
        seen["makespan"] = report.stats.makespan
    return seen


def _same(
    first: dict[str, Any], second: dict[str, Any], names: tuple[str, str], where: str
) -> None:
    for what in first:
        assert first[what] == second[what], (
            f"{names[0]} and {names[1]} disagree on {what}:\n  {names[0]}: {first[what]}\n"
            f"  {names[1]}: {second[what]}\n{where}"
        )


def _compare(
    use_backend: Callable[[str], None], plan: DagPlan, options: dict[str, Any], *, order: bool
) -> None:
    use_backend("python")
    python = _seen(plan, options, order=order)
    use_backend("cython")
    cython = _seen(plan, options, order=order)
    _same(python, cython, ("the python backend", "the cython one"), describe(plan, options))


@suite
@given(plan=PLANS, options=run_options(EXACT_RESOURCES), targets=st.booleans())
def test_with_limit_one_the_backends_run_alike(
    use_backend: Callable[[str], None], plan: DagPlan, options: dict[str, Any], targets: bool
) -> None:
    options["limit"] = 1
    if targets and len(plan):
        options["targets"] = [f"t{len(plan) - 1}"]
    _compare(use_backend, plan, options, order=True)


@suite
@given(plan=PLANS, options=run_options(EXACT_RESOURCES))
def test_with_limit_one_a_run_goes_the_same_way_every_time(
    dag_core: Any, plan: DagPlan, options: dict[str, Any]
) -> None:
    # Also when tasks become ready together: Trio's scheduler, which orders
    # the two runs' tasks differently, must not decide anything.
    options["limit"] = 1
    first = _seen(plan, options, order=True)
    second = _seen(plan, options, order=True)
    _same(first, second, ("one run", "the next"), describe(plan, options))


def _deterministic(plan: DagPlan) -> DagPlan:
    """*plan* without what makes outcomes hang on the order of tasks ready at once:
    batched calls that fail, and timeouts of batched calls (a call's timeout is
    the one of the task that opened it)."""
    batched = tuple(attrs.evolve(fn, fails=0, short=0) for fn in plan.batched)
    tasks = tuple(
        attrs.evolve(task, timeout=None) if task.batch is not None else task for task in plan.tasks
    )
    return attrs.evolve(plan, tasks=tasks, batched=batched)


@suite
@given(plan=PLANS.map(_deterministic), options=run_options(EXACT_RESOURCES))
def test_the_backends_agree_on_states_and_outputs(
    use_backend: Callable[[str], None], plan: DagPlan, options: dict[str, Any]
) -> None:
    options["on_failure"] = "skip"
    _compare(use_backend, plan, options, order=False)

"""Resource accounting: exact amounts, and every task gives back what it took.

SPEC section 6: "Resource amounts are accounted exactly (no float drift)";
section 3: under fail_fast, teardown (``trigger="all_done"``) still runs, so
the resources of cancelled tasks must come back to it. A task that ends
CANCELLED in a run that nothing cancelled is an engine bug:
:func:`every_task_ends` catches the engine leaving tasks unended.

Every test runs the engine on both cores (``dag_core``) on a MockClock.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag._admission import exact
from trio_dag._engine import Engine


@contextmanager
def every_task_ends() -> Iterator[None]:
    """Fail if a run's nursery ends with tasks that have not ended and no halt stopped it.

    Without a halt (``run.cancel()``, the caller's scope, a BaseException)
    every task ends on its own, fail-fast included, whose teardown runs; the
    engine would end the others CANCELLED though nothing cancelled them.
    """
    stray: list[list[str]] = []
    finish = Engine._finish

    def checked(self: Engine) -> None:
        if not self.st.finished and not self.halted:
            core = sys.modules[type(self.snap.graph).__module__]
            states = self.st.states()
            unended = (core.PENDING, core.READY, core.RUNNING)
            stray.append([self.snap.name(v) for v in range(self.snap.n) if states[v] in unended])
        finish(self)

    Engine._finish = checked  # type: ignore[method-assign]
    try:
        yield
    finally:
        Engine._finish = finish  # type: ignore[method-assign]
    assert not stray, f"runs ended with tasks that never ended, though nothing halted: {stray}"


class Ledger:
    """What task bodies hold of each resource, counted exactly; fails past a capacity."""

    def __init__(self, resources: Mapping[str, float]) -> None:
        self.capacity = {name: exact(c) for name, c in resources.items()}
        self.in_use = {name: Fraction(0) for name in resources}
        self.peak = dict(self.in_use)
        self.started: list[str] = []

    @contextmanager
    def hold(self, uses: Mapping[str, float]) -> Iterator[None]:
        self.started.append(trio_dag.current_task().name)
        for name, amount in uses.items():
            self.in_use[name] += exact(amount)
            assert self.in_use[name] <= self.capacity[name], f"{name} over capacity"
            self.peak[name] = max(self.peak[name], self.in_use[name])
        try:
            yield
        finally:
            for name, amount in uses.items():
                self.in_use[name] -= exact(amount)


async def work(
    ledger: Ledger, uses: Mapping[str, float], seconds: float, fails: int, *deps: Any
) -> str:
    """Hold *uses* for *seconds*; fail the first *fails* attempts."""
    task = trio_dag.current_task()
    with ledger.hold(uses):
        await trio.sleep(seconds)
        if task.attempt <= fails:
            raise ValueError(f"{task.name} attempt {task.attempt}")
    return task.name


def add_work(
    dag: trio_dag.DAG,
    ledger: Ledger,
    name: str,
    uses: Mapping[str, float],
    seconds: float = 1,
    *deps: Any,
    fails: int = 0,
    **options: Any,
) -> trio_dag.Handle[str]:
    return dag.add(work, ledger, uses, seconds, fails, *deps, name=name, uses=uses, **options)


async def bounded_run(dag: trio_dag.DAG, options: dict[str, Any]) -> trio_dag.RunReport:
    """``run(dag, check=False, **options)``, failing if it has not ended after a long while."""
    with trio.fail_after(10_000):
        return await trio_dag.run(dag, check=False, **options)


# -- exact amounts ----------------------------------------------------------------------


async def test_float_amounts_given_back_fit_again(dag_core: Any, autojump_clock: MockClock) -> None:
    # 0.9 - 0.2 + 0.2 is 0.8999999999999999 in floats: "big" never started
    # and ended CANCELLED, though nothing cancelled it.
    resources = {"r": 0.9}
    ledger = Ledger(resources)
    dag = trio_dag.DAG()
    small = add_work(dag, ledger, "small", {"r": 0.2})
    big = add_work(dag, ledger, "big", {"r": 0.9}, 1, small)
    with every_task_ends(), trio.fail_after(60):
        report = await trio_dag.run(dag, resources=resources)
    assert report.succeeded == [small, big]
    assert ledger.started == ["small", "big"]


@pytest.mark.parametrize(
    ("amounts", "capacity"),
    [
        ([0.1, 0.2], 0.3),
        ([0.1, 0.1, 0.1], 0.3),
        ([0.7, 0.2, 0.1], 1),
        ([1 / 3, 1 / 3, 1 / 3], 1.0),
        ([1 / 3, 2 / 3], 1.0),
        ([0.45, 0.45], 0.9),
        ([1e-20, 1e-20], 2e-20),
        ([Fraction(1, 3), Fraction(2, 3)], Fraction(1)),
        # Counted as given: as floats, 5/6 reads 0.8333333333333334, and two
        # of them were more than 5/3, so they ran one after the other.
        ([Fraction(5, 6), Fraction(5, 6)], Fraction(5, 3)),
    ],
)
async def test_amounts_that_sum_to_the_capacity_run_together(
    dag_core: Any, autojump_clock: MockClock, amounts: list[float], capacity: float
) -> None:
    resources = {"r": capacity}
    ledger = Ledger(resources)
    dag = trio_dag.DAG()
    for i, amount in enumerate(amounts):
        add_work(dag, ledger, f"t{i}", {"r": amount}, 1)
    with every_task_ends(), trio.fail_after(60):
        report = await trio_dag.run(dag, resources=resources)
    assert report.ok
    assert report.stats.peak_concurrency == len(amounts)
    assert report.stats.makespan == 1


async def test_amount_over_the_capacity_by_the_last_digit_is_a_resource_error(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # The same exact comparison decides ResourceError: 0.1 + 0.2 is
    # 0.30000000000000004, more than 0.3.
    ledger = Ledger({"r": 0.3})
    dag = trio_dag.DAG()
    add_work(dag, ledger, "t", {"r": 0.1 + 0.2})
    with pytest.raises(trio_dag.ResourceError) as info:
        await trio_dag.run(dag, resources={"r": 0.3})
    assert (info.value.amount, info.value.capacity) == (0.1 + 0.2, 0.3)
    assert ledger.started == []


async def test_a_resource_error_shows_amounts_as_they_were_given(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # A Fraction stays a Fraction (its message said 0.333333, and a Fraction
    # capacity made the message itself raise TypeError); floats show as %g.
    dag = trio_dag.DAG()
    dag.add(work, Ledger({}), {}, 0, name="t", uses={"r": Fraction(1, 3)})
    cases = [
        ({"r": Fraction(1, 4)}, "uses 1/3 of resource 'r', more than its whole capacity 1/4"),
        ({"r": 0.25}, "uses 1/3 of resource 'r', more than its whole capacity 0.25"),
        ({"s": 1}, "uses 1/3 of resource 'r', which the run does not provide"),
    ]
    for resources, message in cases:
        with pytest.raises(trio_dag.ResourceError, match=message) as info:
            await trio_dag.run(dag, resources=resources)
        assert info.value.amount == Fraction(1, 3)
        assert type(info.value.amount) is Fraction


async def test_capacity_may_be_an_int_too_large_for_a_float(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    resources = {"r": 10**400}
    ledger = Ledger(resources)
    dag = trio_dag.DAG()
    add_work(dag, ledger, "a", {"r": 1e300})
    add_work(dag, ledger, "b", {"r": 0.5})
    report = await trio_dag.run(dag, resources=resources)
    assert report.ok
    assert report.stats.peak_concurrency == 2


def test_exact_reads_floats_as_their_shortest_decimal() -> None:
    assert exact(0.1) == Fraction(1, 10)
    assert exact(0.1 + 0.2) == Fraction(30000000000000004, 10**17)
    assert exact(3) == 3 and exact(Fraction(1, 3)) == Fraction(1, 3)
    assert exact(1e300) == 10**300
    assert exact(5e-324) == Fraction(5, 10**324)


# -- nothing leaks -----------------------------------------------------------------------


async def fail_soon() -> None:
    # Fails a scheduling step after it starts: whether the tasks handed to
    # new workers meanwhile have started by then is up to Trio's scheduler.
    await trio.lowlevel.checkpoint()
    raise ValueError("first failure")


async def teardown(*outcomes: Any) -> str:
    return "clean"


@pytest.mark.parametrize("limit", [None, 1, 2, 4])
@pytest.mark.parametrize(("capacity", "amount", "width"), [(1, 1, 3), (2, 1, 5), (1.0, 0.5, 4)])
def test_fail_fast_gives_back_the_uses_of_tasks_cancelled_before_they_start(
    dag_core: Any, limit: int | None, capacity: float, amount: float, width: int
) -> None:
    # A task handed to a new worker has taken its uses; the failure lands
    # before the worker starts it, and it ends CANCELLED without starting.
    # Its uses must come back: the teardown needs the whole capacity.
    # Trio's scheduler decides whether the failure comes first, so each
    # shape runs many times.
    resources = {"r": capacity}
    states = set()
    for _ in range(40):
        ledger = Ledger(resources)
        dag = trio_dag.DAG()
        dag.add(fail_soon, name="bad")
        users = [add_work(dag, ledger, f"u{i}", {"r": amount}) for i in range(width)]
        td = dag.add(teardown, *users, name="teardown", trigger="all_done", uses={"r": capacity})

        with every_task_ends():
            report = trio.run(
                bounded_run,
                dag,
                {"resources": resources, "limit": limit, "on_failure": "fail_fast"},
                clock=MockClock(autojump_threshold=0),
            )
        assert report.state(td) is TaskState.SUCCEEDED, report.summary()
        states.update(report.state(u) for u in users)
    assert TaskState.CANCELLED in states


# -- the property ----------------------------------------------------------------------

# Amounts users write, ints and floats, among them ones whose float sums
# drift (0.1 + 0.2, thirds, 0.9 - 0.2 + 0.2): a capacity is the sum of some of
# them, written as a user writes it (0.3, not 0.1 + 0.2), and often one task
# uses all of it, as exclusive use is written.
AMOUNTS = [0.1, 0.2, 0.3, 0.4, 0.7, 0.9, 1 / 3, 2 / 3, 0.25, 1, 2, 1e-3]


@st.composite
def resource_plans(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    tasks = []
    for i in range(n):
        uses = draw(
            st.dictionaries(st.sampled_from(["A", "B"]), st.sampled_from(AMOUNTS), max_size=2)
        )
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        tasks.append(
            {
                "uses": uses,
                "deps": deps,
                "seconds": draw(st.sampled_from([0, 0.5, 1])),
                "fails": draw(st.integers(0, 2)),
                "retries": draw(st.integers(0, 2)),
                "retry_delay": draw(st.sampled_from([0, 0.5, 1])),
                "teardown": draw(st.booleans()) if deps else False,
            }
        )
    resources = {}
    for name in ("A", "B"):
        used = [t["uses"][name] for t in tasks if name in t["uses"]]
        parts = draw(st.lists(st.sampled_from(used or AMOUNTS), min_size=1, max_size=3))
        total = max([sum(map(exact, parts), Fraction(0)), *map(exact, used)])
        resources[name] = float(total)
        if used and n > 1 and draw(st.booleans()):
            tasks[draw(st.integers(1, n - 1))]["uses"][name] = resources[name]
    return {
        "tasks": tasks,
        "resources": resources,
        "limit": draw(st.sampled_from([None, 1, 2, 3])),
        "policy": draw(st.sampled_from(["fifo", "lifo", "priority", "critical_path"])),
        "on_failure": draw(st.sampled_from(["skip", "fail_fast"])),
    }


# Drawn plans may give the run a resource no drawn task uses.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=resource_plans())
def test_runs_with_float_amounts_never_end_a_task_cancelled_that_nothing_cancelled(
    dag_core: Any, plan: dict[str, Any]
) -> None:
    ledger = Ledger(plan["resources"])
    dag = trio_dag.DAG()
    handles: list[trio_dag.Handle[str]] = []
    for i, t in enumerate(plan["tasks"]):
        handles.append(
            add_work(
                dag,
                ledger,
                f"t{i}",
                t["uses"],
                t["seconds"],
                *(handles[d] for d in t["deps"]),
                fails=t["fails"],
                retries=t["retries"],
                retry_delay=t["retry_delay"],
                trigger="all_done" if t["teardown"] else "all_succeeded",
            )
        )
    fail_fast = plan["on_failure"] == "fail_fast"

    options = {k: plan[k] for k in ("resources", "limit", "policy", "on_failure")}
    with every_task_ends():
        report = trio.run(bounded_run, dag, options, clock=MockClock(autojump_threshold=0))
    for i, t in enumerate(plan["tasks"]):
        state = report.state(handles[i])
        if not fail_fast or t["teardown"]:
            # Nothing cancels these: skip mode cancels nothing, and
            # fail_fast lets teardown run.
            assert state is not TaskState.CANCELLED, (f"t{i}", plan, report.summary())
    assert all(v == 0 for v in ledger.in_use.values())

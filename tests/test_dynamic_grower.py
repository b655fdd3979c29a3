"""The compiled ``Run.add``'s ways back to the general path (``_core_grow.pxi``'s ``Grower``).

The Grower reads the run's task count in the snapshot's ``n`` slot and the
engine's ``cap`` in its ``__dict__``, and takes a call only from a body of
its own run; each has a fallback: an attribute when the snapshot's type has
no such slot or the engine's type has a ``cap`` of its own, the general path
(``Growth.add``) for a call from outside a body, from another run's body,
with a current-task slot of another shape, or after tasks were added to the
run's fork directly. Each test drives one fallback and checks it gives what
the normal path gives; every test runs on both cores (``dag_core``): the
twin's Grower takes no call, so it is the general path to compare with.
"""

from __future__ import annotations

import contextvars
from types import ModuleType
from typing import Any

import pytest
import trio
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState, _growth
from trio_dag._engine import Engine
from trio_dag._events import _CURRENT
from trio_dag._snapshot import Snapshot

pytestmark = pytest.mark.usefixtures("dag_core")


def _run(dag: trio_dag.DAG, **options: Any) -> trio_dag.RunReport:
    async def main() -> trio_dag.RunReport:
        with trio.fail_after(60):
            return await trio_dag.run(dag, **options)

    return trio.run(main, clock=MockClock(autojump_threshold=0))


async def square(x: int) -> int:
    return x * x


async def nap(x: int) -> int:
    await trio.sleep(1)
    return x


@pytest.fixture
def general_adds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the adds that take the general path (``Growth.add``), by parent."""
    calls: list[int] = []
    general = _growth.Growth.add

    def counted(self: Any, fn: Any, args: Any, options: Any, parent: int) -> Any:
        calls.append(parent)
        return general(self, fn, args, options, parent)

    monkeypatch.setattr(_growth.Growth, "add", counted)
    return calls


class CountedN(Snapshot):
    """A snapshot whose ``n`` is a property (over the slot), counting its reads and writes."""

    __slots__ = ()
    reads = 0
    writes = 0

    @property  # type: ignore[override]
    def n(self) -> int:
        type(self).reads += 1
        return Snapshot.n.__get__(self)  # type: ignore[attr-defined, no-any-return]

    @n.setter
    def n(self, value: int) -> None:
        type(self).writes += 1
        Snapshot.n.__set__(self, value)  # type: ignore[attr-defined]


def grows(made: dict[str, Any], before_first: Any = None) -> Any:
    """A body: *before_first* (given the engine), then a first add and the common ones."""

    async def body() -> None:
        run = trio_dag.current_run()
        if before_first is not None:
            before_first(run._engine)  # type: ignore[attr-defined]
        made["first"] = run.add(square, 2)  # the run grows: the Grower is made
        made["named"] = run.add(square, 3, name="named")
        made["after"] = run.add(square, made["named"], after=made["first"])
        made["by name"] = run.add(square, 4, after="named")
        made["plain"] = run.add(square, 5)

    return body


def outcomes(report: trio_dag.RunReport, made: dict[str, Any]) -> list[Any]:
    return [(k, h.index, h.name, report[h]) for k, h in made.items()]


def test_a_snapshot_without_the_n_slot_grows_through_the_attribute(
    dag_core: ModuleType, general_adds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CountedN, "reads", 0)
    monkeypatch.setattr(CountedN, "writes", 0)
    plain: dict[str, Any] = {}
    dag = trio_dag.DAG()
    dag.add(grows(plain), name="adder")
    expected = outcomes(_run(dag), plain)
    general_adds.clear()

    def no_slot(engine: Engine) -> None:
        engine.snap.__class__ = CountedN

    made: dict[str, Any] = {}
    dag = trio_dag.DAG()
    dag.add(grows(made, no_slot), name="adder")
    report = _run(dag)
    assert outcomes(report, made) == expected
    assert report.stats.tasks == 6 and report.ok
    # Each add set n through the property: the Grower's fallback when compiled
    # (it took the four after the first; writing the slot, it would bypass the
    # property and leave 2), Growth's own in the twin.
    assert CountedN.writes == 6 and CountedN.reads >= 5
    assert len(general_adds) == (5 if dag_core.__name__.endswith("_py") else 1)


class CapProperty(Engine):
    """An engine whose type has a ``cap`` (a property over its ``__dict__``), counting writes."""

    writes = 0

    @property
    def cap(self) -> int:
        return self.__dict__["cap"]  # type: ignore[no-any-return]

    @cap.setter
    def cap(self, value: int) -> None:
        type(self).writes += 1
        self.__dict__["cap"] = value


def test_an_engine_with_a_cap_of_its_type_is_given_the_cap_as_an_attribute(
    dag_core: ModuleType, general_adds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unbounded: each add raises the worker cap, so the added tasks nap together.
    monkeypatch.setattr(CapProperty, "writes", 0)
    made: dict[str, Any] = {}

    def cap_of_its_type(engine: Engine) -> None:
        engine.__class__ = CapProperty

    async def body() -> None:
        run = trio_dag.current_run()
        cap_of_its_type(run._engine)  # type: ignore[attr-defined]
        made["first"] = run.add(nap, 0)
        for i in range(1, 5):
            made[f"nap{i}"] = run.add(nap, i, name=f"nap{i}")

    dag = trio_dag.DAG()
    dag.add(body, name="adder")
    report = _run(dag)
    assert [report[h] for h in made.values()] == list(range(5))
    assert report.stats.peak_concurrency == 5
    assert report.stats.makespan == pytest.approx(1.0)
    # One per add, whichever path took it (the compiled Grower writing the
    # engine's __dict__ would bypass the property and leave 1).
    assert CapProperty.writes == 5
    assert len(general_adds) == (5 if dag_core.__name__.endswith("_py") else 1)


def test_adds_from_outside_a_body_of_the_run_take_the_general_path(
    dag_core: ModuleType, general_adds: list[int]
) -> None:
    # From a Trio task that is no body (no current task) and from a body of
    # another run (its slot names another snapshot): tasks without a parent.
    # (open_run's block would do for the first, but a run with an event
    # stream makes no Grower at all.)
    started = trio.Event()
    made: dict[str, Any] = {}
    runs: list[trio_dag.Run] = []

    async def adder() -> None:
        runs.append(trio_dag.current_run())
        made["first"] = runs[0].add(square, 2)
        started.set()
        await trio.sleep(5)

    async def main() -> trio_dag.RunReport:
        dag = trio_dag.DAG()
        dag.add(adder, name="adder")
        reports: list[trio_dag.RunReport] = []

        async def outer() -> None:
            reports.append(await trio_dag.run(dag))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outer)
                await started.wait()
                run = runs[0]
                made["from a task"] = run.add(square, 3, name="task")

                async def in_another_run() -> None:
                    made["from another run"] = run.add(square, 4, after="task")

                other = trio_dag.DAG()
                other.add(in_another_run)
                await trio_dag.run(other)
        return reports[0]

    report = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert outcomes(report, made) == [
        ("first", 1, "square-1", 4),
        ("from a task", 2, "task", 9),
        ("from another run", 3, "square-3", 16),
    ]
    assert report.ok
    # The first add (Growth.add makes the run grow), then the two without a parent.
    assert general_adds == [0, -1, -1]


@pytest.mark.parametrize(
    "slot",
    ["tuple", "short", "no parent"],
)
def test_a_current_task_slot_of_another_shape_takes_the_general_path(
    dag_core: ModuleType, slot: str
) -> None:
    # The slot is private (_events._CURRENT); a stray value there gives the
    # same on both cores: what Run.add's general path makes of it.
    made: dict[str, Any] = {}
    errors: list[type[BaseException]] = []

    async def adder() -> None:
        run = trio_dag.current_run()
        made["first"] = run.add(square, 2)  # the Grower is made
        real = _CURRENT.get()
        shape = {
            "tuple": (real[0], real[1]),  # not a list: read as the adding task's
            "short": [real[0]],  # no task index: the general path fails
            "no parent": [real[0], -1],  # between tasks: no parent
        }[slot]

        def add() -> None:
            _CURRENT.set(shape)  # type: ignore[arg-type]
            made["odd"] = run.add(square, 3)

        try:
            contextvars.copy_context().run(add)
        except Exception as exc:
            errors.append(type(exc))
        made["after"] = run.add(square, 4)  # the common call again

    dag = trio_dag.DAG()
    dag.add(adder, name="adder")
    report = _run(dag)
    if slot == "short":
        assert errors == [IndexError]
        assert outcomes(report, made) == [("first", 1, "square-1", 4), ("after", 2, "square-2", 16)]
    else:
        assert errors == []
        assert outcomes(report, made) == [
            ("first", 1, "square-1", 4),
            ("odd", 2, "square-2", 9),
            ("after", 3, "square-3", 16),
        ]
    assert report.ok


def test_tasks_added_to_the_fork_directly_are_refused_by_either_path(
    dag_core: ModuleType,
) -> None:
    # The Grower sees the fork hold more tasks than the run (its _known()),
    # declines, and the general path refuses and takes them off the fork.
    errors: list[str] = []
    made: dict[str, Any] = {}

    async def adder() -> None:
        run = trio_dag.current_run()
        made["first"] = run.add(square, 2)
        made["first"].dag.add(square, 9)  # the run's fork, directly
        try:
            run.add(square, 3)
        except RuntimeError as exc:
            errors.append(str(exc))
        made["then"] = run.add(square, 4, name="then")

    dag = trio_dag.DAG()
    dag.add(adder, name="adder")
    report = _run(dag)
    assert len(errors) == 1 and "directly" in errors[0]
    assert outcomes(report, made) == [("first", 1, "square-1", 4), ("then", 2, "then", 16)]
    assert report.stats.tasks == 3 and report.state(made["then"]) is TaskState.SUCCEEDED

"""One DAG, many runs: growing the DAG while a run of it is going on, and determinism.

Determinism assumes what Trio's own suite does: under a MockClock the only
source of scheduling randomness is ``trio._core._run._r`` (the order within
a batch of runnable tasks), so seeding it fixes the order of every event.
Every test runs the engine on both cores (``dag_core``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio._core._run
from _engine_probe import Probe, add_nap
from _reliability import RESOURCES, mock_run
from trio.testing import MockClock

import trio_dag
from trio_dag.events import Event
from trio_dag.testing import Recorder, check_run

# -- a DAG that grows while it runs ---------------------------------------------------------


async def test_tasks_added_during_a_run_are_refused_and_do_not_change_it(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # Such tasks used to be kept and never run, and broke the next run; now
    # add() refuses them while the run is in progress (issue 14, defect 15).
    probe = Probe()
    dag = trio_dag.DAG()
    first = add_nap(dag, probe, "first", 2)
    refused: list[str] = []

    def refuse(add: Callable[[], object]) -> None:
        try:
            add()
        except RuntimeError as exc:
            refused.append(str(exc))

    async def grow() -> str:
        await trio.sleep(1)
        # A body adds tasks to the DAG it runs in: a dependent of a running
        # task, a dependent of itself, and an after= name that does not exist.
        refuse(lambda: add_nap(dag, probe, "inside-1", 1, first))
        refuse(lambda: add_nap(dag, probe, "inside-2", 1, after=["grow", "not-yet"]))
        return "grew"

    grower = dag.add(grow, name="grow")
    last = add_nap(dag, probe, "last", 1, first, grower)
    original = list(dag)
    recorder = Recorder()
    async with trio_dag.open_run(dag, on_event=recorder) as run:
        await trio.sleep(0.5)
        refuse(lambda: dag.map(nap_from_outside, [first, grower]))
        refuse(lambda: add_nap(dag, probe, "outside", 1, last))
    report = run.report
    assert report.ok
    assert list(report) == original and len(report) == 3 and list(dag) == original
    assert len(refused) == 4 and all("the DAG is being run" in r for r in refused)
    assert probe.started == ["first", "last"]
    assert {e.task for e in recorder} == set(original)
    check_run(dag, report, recorder)
    # Once the run has ended the DAG grows again, for the next run.
    add_nap(dag, probe, "outside", 1, last)
    assert (await trio_dag.run(dag)).ok


async def nap_from_outside(value: Any) -> Any:
    return value


async def test_the_next_run_includes_the_tasks_added(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 1)
    async with trio_dag.open_run(dag) as run:
        with pytest.raises(RuntimeError, match="the DAG is being run"):
            add_nap(dag, probe, "b", 1, a)
    b = add_nap(dag, probe, "b", 1, a)
    assert list(run.report) == [a]
    again = await trio_dag.run(dag)
    assert again[b] == "b" and list(again) == [a, b]
    assert run.report[a] == "a"  # the first report is unchanged
    assert b not in run.report


async def test_concurrent_runs_of_one_dag_refuse_adds_until_the_last_ends(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def work(*deps: Any) -> str:
        await trio.sleep(3)
        return trio_dag.current_task().name

    dag = trio_dag.DAG()
    dag.add(work, name="t0")
    reports: list[trio_dag.RunReport] = []

    async def run_now() -> None:
        reports.append(await trio_dag.run(dag))

    async with trio.open_nursery() as nursery:
        for i in range(1, 4):
            nursery.start_soon(run_now)
            await trio.sleep(1)
            with pytest.raises(RuntimeError, match="the DAG is being run"):
                dag.add(work, dag["t0"], name=f"t{i}")
    assert [len(r) for r in reports] == [1, 1, 1]
    assert [r["t0"] for r in reports] == ["t0", "t0", "t0"]
    dag.add(work, dag["t0"], name="t1")
    assert len(await trio_dag.run(dag)) == 2


# -- determinism -------------------------------------------------------------------------------


def _tied_dag() -> trio_dag.DAG:
    """Many tasks that end in the same instants: every tie is Trio's to order."""
    probe = Probe()
    dag = trio_dag.DAG()
    roots = [
        add_nap(dag, probe, f"r{i}", 1 + i % 2, uses={"gpu": 1} if i % 4 == 0 else None)
        for i in range(24)
    ]
    mids = [
        add_nap(
            dag,
            probe,
            f"m{i}",
            1,
            roots[i],
            roots[(i * 7) % 24],
            fail=ValueError(i) if i % 5 == 0 else None,
        )
        for i in range(24)
    ]
    for i in range(12):
        add_nap(
            dag,
            probe,
            f"t{i}",
            1,
            mids[i],
            mids[23 - i],
            trigger="all_done" if i % 3 == 0 else "all_succeeded",
        )
    return dag


def _event_order(
    dag: trio_dag.DAG, seed: int, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> list[tuple[Any, ...]]:
    monkeypatch.setattr(trio._core._run, "_r", random.Random(seed))
    _, recorder, _ = mock_run(dag, resources=RESOURCES, **options)
    return [_describe(e) for e in recorder]


def _describe(event: Event) -> tuple[Any, ...]:
    return (
        type(event).__name__,
        event.task.name,
        *(getattr(event, field, None) for field in ("attempt", "state", "time", "delay")),
    )


# Seeded runs under several policies: priority= counts under "priority" only.
@pytest.mark.filterwarnings("ignore::trio_dag.NoEffectWarning")
@pytest.mark.parametrize(
    "options",
    [{}, {"limit": 3, "policy": "lifo"}, {"on_failure": "fail_fast", "strategy": "waves"}],
    ids=["free", "limit-3-lifo", "fail-fast-waves"],
)
def test_the_same_seed_gives_the_same_event_order(
    dag_core: Any, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    dag = _tied_dag()
    orders = {seed: _event_order(dag, seed, monkeypatch, **options) for seed in range(4)}
    for seed, order in orders.items():
        assert _event_order(dag, seed, monkeypatch, **options) == order
    # And the seed is what decides: Trio does order the ties differently.
    assert len({tuple(order) for order in orders.values()}) > 1

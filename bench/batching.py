"""Throughput of a model called on batches against one call per item, on Trio's mock clock.

The model is simulated on the Trio clock: a call of n items takes 2 ms plus
20 us per item, and one call runs at a time (a ``model`` resource of
capacity 1). Each of the ``--items`` items comes from its own small upstream
task, and item i is ready i microseconds after the start, so items arrive
one by one as they would from a real pipeline. Unbatched, a task calls the
model on its item alone; batched, the tasks are of a ``@trio_dag.batched``
function of ``max_size=--max-size``. Throughput is items per simulated second
of the run's makespan; the ideal is ``ceil(items / max_size)`` full calls back
to back. Every task's result is checked to be its own item's.

    python bench/batching.py [--items N] [--max-size N] [--max-delay SECONDS]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trio.testing

import trio_dag

PER_CALL = 0.002
PER_ITEM = 20e-6
ARRIVAL = 1e-6  # item i is ready at i * ARRIVAL
RATIO_TARGET = 10.0
IDEAL_TARGET = 0.80


class Model:
    """The simulated model: ``f(x) = 3x + 1`` on each item, taking Trio time per call."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # the size of each call

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(len(items))
        await trio.sleep(PER_CALL + PER_ITEM * len(items))
        return [3 * x + 1 for x in items]


@dataclass(frozen=True)
class Result:
    """One run: how many calls it made, the biggest, and its makespan in simulated seconds."""

    mode: str
    items: int
    calls: int
    largest: int
    makespan: float
    wall: float

    @property
    def throughput(self) -> float:
        """Items per simulated second."""
        return self.items / self.makespan


async def upstream(i: int) -> int:
    """Item *i*, ready at ``i * ARRIVAL`` seconds."""
    await trio.sleep(i * ARRIVAL)
    return i


def build(items: int, task: Callable[[int], Awaitable[int]]) -> tuple[trio_dag.DAG, list[Any]]:
    """A DAG of *items* upstream tasks, each followed by a model task of *task*."""
    dag = trio_dag.DAG()
    outputs = [dag.add(task, dag.add(upstream, i), uses={"model": 1}) for i in range(items)]
    return dag, outputs


def measure(mode: str, items: int, task: Callable[[int], Awaitable[int]], model: Model) -> Result:
    """Run the DAG on the mock clock, check every output, and time it."""
    dag, outputs = build(items, task)
    began = time.perf_counter()
    report = trio.run(
        partial(trio_dag.run, dag, resources={"model": 1}),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    wall = time.perf_counter() - began
    wrong = [i for i, h in enumerate(outputs) if report[h] != 3 * i + 1]
    if wrong:
        raise SystemExit(f"{mode}: {len(wrong)} tasks got another item's result, first {wrong[0]}")
    if sum(model.calls) != items:
        raise SystemExit(f"{mode}: the model saw {sum(model.calls)} items, not {items}")
    return Result(mode, items, len(model.calls), max(model.calls), report.stats.makespan, wall)


def unbatched(items: int) -> Result:
    """One model call per task."""
    model = Model()

    async def call_one(item: int) -> int:
        return (await model([item]))[0]

    return measure("unbatched", items, call_one, model)


def batched(items: int, max_size: int, max_delay: float) -> Result:
    """Tasks of a batched function: the engine calls the model on up to *max_size* items."""
    model = Model()
    fn = trio_dag.batched(max_size=max_size, max_delay=max_delay)(model.__call__)
    return measure(f"batched max_size={max_size}", items, fn, model)


def ideal(items: int, max_size: int) -> Result:
    """Full calls back to back from time 0: no run can be faster."""
    calls = math.ceil(items / max_size)
    makespan = calls * PER_CALL + items * PER_ITEM
    return Result("ideal", items, calls, min(items, max_size), makespan, 0.0)


def verdict(ok: bool) -> str:
    """How a target fared, for the printout."""
    return "met" if ok else "NOT MET"


def main() -> int:
    """Run both, print the table and the targets; the exit status is 1 if one is not met."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument("--max-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument(
        "--max-delay", type=float, default=0.0, help="seconds, default: %(default)s"
    )
    args = parser.parse_args()

    print(
        f"model: {PER_CALL * 1e3:g} ms per call + {PER_ITEM * 1e6:g} us per item, one call at "
        f"a time; {args.items:,} items, item i ready at i us; Trio's mock clock\n"
    )
    one = unbatched(args.items)
    many = batched(args.items, args.max_size, args.max_delay)
    best = ideal(args.items, args.max_size)
    print("| run | calls | largest call | makespan (sim s) | items/s (sim) | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in (one, many, best):
        wall = f"{r.wall:.2f}" if r.wall else ""
        print(
            f"| {r.mode} | {r.calls:,} | {r.largest} | {r.makespan:.4f} | "
            f"{r.throughput:,.0f} | {wall} |"
        )
    ratio = many.throughput / one.throughput
    share = many.throughput / best.throughput
    print(
        f"\nbatched / unbatched: {ratio:.1f}x (target >= {RATIO_TARGET:g}x: "
        f"{verdict(ratio >= RATIO_TARGET)})"
    )
    print(
        f"batched / ideal: {share:.1%} (target >= {IDEAL_TARGET:.0%}: "
        f"{verdict(share >= IDEAL_TARGET)})"
    )
    return 0 if ratio >= RATIO_TARGET and share >= IDEAL_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

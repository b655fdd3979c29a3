"""Adding tasks while a run goes on, against building the same graph before it.

One process, the compiled core (or ``--core python``). Two ways to run the
same layered graph of N noop tasks (``bench/_contenders.py``'s ``layered``
shape: layers of 1,000, each task with up to 4 parents in the layer above):

- **static**: ``dag.add`` for every task, then ``trio_dag.run``: the build
  and the run, timed together;
- **dynamic**: a DAG of one root task whose body adds the N tasks with
  ``trio_dag.current_run().add`` (each after its parents, the root's
  children), then returns: the run, timed whole.

Each is timed ``--repeat`` times (after one warm-up), in CPU time of the
process (``time.process_time``: the runs use no thread, and other load on
the machine does not count); the table gives the best and the median per
task, and the ratio of the medians (the issue's target: dynamic at most
1.5x static). With ``--counts``, the cost of one
read of ``run.counts`` inside a running run, when the core has it.

    python bench/dynamic.py                 # N=100,000, 5 repeats
    python bench/dynamic.py --n 10000 --repeat 3
    python bench/dynamic.py --core python   # the pure-Python twins
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # last: only for _contenders

import trio
from _contenders import layered, noop

import trio_dag
from trio_dag import _native


def static(parents: list[tuple[int, ...]]) -> float:
    """Build the DAG with dag.add, then run it; the seconds both take."""

    async def main() -> float:
        began = time.process_time()
        dag = trio_dag.DAG()
        add = dag.add
        handles: list[Any] = []
        for ps in parents:
            handles.append(add(noop, after=[handles[p] for p in ps]) if ps else add(noop))
        await trio_dag.run(dag)
        return time.process_time() - began

    return trio.run(main)


def dynamic(parents: list[tuple[int, ...]]) -> float:
    """Run a DAG of one root that adds the tasks; the seconds the run takes."""

    async def root() -> None:
        add = trio_dag.current_run().add
        handles: list[Any] = []
        for ps in parents:
            handles.append(add(noop, after=[handles[p] for p in ps]) if ps else add(noop))

    async def main() -> float:
        dag = trio_dag.DAG()
        dag.add(root)
        began = time.process_time()
        report = await trio_dag.run(dag)
        took = time.process_time() - began
        assert report.stats.tasks == len(parents) + 1
        return took

    return trio.run(main)


def counts_per_call(calls: int) -> float | None:
    """CPU seconds per read of ``run.counts`` inside a running run (None without it)."""
    if not hasattr(trio_dag.Run, "counts"):
        return None

    async def reader() -> float:
        run = trio_dag.current_run()
        began = time.process_time()
        for _ in range(calls):
            run.counts  # noqa: B018
        return (time.process_time() - began) / calls

    dag = trio_dag.DAG()
    h = dag.add(reader)
    for _ in range(1000):
        dag.add(noop, after=h)
    report = trio_dag.run_sync(dag)
    return float(report[h])


def timed(fn: Callable[[list[tuple[int, ...]]], float], parents: Any, repeat: int) -> list[float]:
    fn(parents)  # warm-up
    out = []
    for _ in range(repeat):
        gc.collect()
        out.append(fn(parents))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="tasks (default 100,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--core", choices=["cython", "python"], default="cython")
    parser.add_argument("--counts", type=int, default=1_000_000, help="reads of run.counts")
    args = parser.parse_args(argv)
    _native.BACKEND = _native.compiled() if args.core == "cython" else _native.python()
    parents = [tuple(sorted(set(ps))) for ps in layered(args.n)]
    rows = []
    for label, fn in (("static (build + run)", static), ("dynamic (run.add)", dynamic)):
        times = timed(fn, parents, args.repeat)
        rows.append((label, min(times), statistics.median(times)))
    n = args.n
    print(f"{n:,} noop tasks, layered, core {args.core}, {args.repeat} runs, pid {os.getpid()}")
    print(f"{'':24}{'best us/task':>14}{'median us/task':>16}")
    for label, best, median in rows:
        print(f"{label:24}{best / n * 1e6:14.3f}{median / n * 1e6:16.3f}")
    print(f"dynamic / static (medians): {rows[1][2] / rows[0][2]:.2f}x")
    per_read = counts_per_call(args.counts)
    if per_read is not None:
        print(f"run.counts: {per_read * 1e9:.0f} ns per read")


if __name__ == "__main__":
    main()

"""Build a 1,000,000-task layered DAG with DAG.add, validate it, and weigh it.

The graph: 10,000 layers of 100 tasks; each task past the first layer gets 4
parents drawn from the layer above by ``random.Random(0)`` (duplicates
collapse), passed to ``dag.add`` as positional handle arguments. Times are the
best of ``--repeat`` builds. The bench's own loop (picking the parent handles,
calling) is timed with a stand-in for ``dag.add`` and shown apart.

Memory (tracemalloc, in a separate build) is set against the same graph as
the dict of predecessor lists ``graphlib.TopologicalSorter`` is fed (one int
object per task, shared by the lists) plus that sorter after ``prepare()``.

    python bench/build.py [--layers 10000] [--width 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_dag import DAG
from trio_dag._native import CORE

# Targets of the issue.
ADD_US = 3.0
VALIDATE_S = 0.5
MEMORY_RATIO = 0.5


def task(*parents: object) -> None:
    """The function of every task; it never runs here."""


def draw_parents(layers: int, width: int) -> list[tuple[int, ...]]:
    """For each task past the first layer, its parents' positions in the layer above."""
    rng = random.Random(0)
    population = range(width)
    return [tuple(dict.fromkeys(rng.choices(population, k=4))) for _ in range((layers - 1) * width)]


def build(add: Callable[..., Any], layers: int, width: int, picks: list[tuple[int, ...]]) -> None:
    """Call ``add(task, *parents)`` for every task, layer by layer."""
    prev = [add(task) for _ in range(width)]
    k = 0
    for _ in range(1, layers):
        cur = []
        for _ in range(width):
            cur.append(add(task, *[prev[j] for j in picks[k]]))
            k += 1
        prev = cur


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of *repeat* timed calls in seconds, and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def timed_build(layers: int, width: int, picks: list[tuple[int, ...]]) -> DAG:
    dag = DAG()
    build(dag.add, layers, width, picks)
    return dag


def stand_in(fn: object, *args: object) -> object:
    """What the bench's loop costs without DAG.add: a call that returns a placeholder."""
    return fn


def traced(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated after *fn* returns (its result is kept), and the result."""
    gc.collect()
    tracemalloc.start()
    result = fn()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size, result


def graphlib_dict(layers: int, width: int, picks: list[tuple[int, ...]]) -> dict[int, list[int]]:
    graph: dict[int, list[int]] = {}
    prev = list(range(width))
    for i in prev:
        graph[i] = []
    k = 0
    for layer in range(1, layers):
        cur = list(range(layer * width, (layer + 1) * width))
        for i in cur:
            graph[i] = [prev[j] for j in picks[k]]
            k += 1
        prev = cur
    return graph


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    layers, width = args.layers, args.width
    n = layers * width
    picks = draw_parents(layers, width)
    edges = sum(map(len, picks))
    print(f"layered DAG: {n:,} tasks, {edges:,} edges; core: {CORE}; best of {args.repeat}")

    loop_s, _ = best_of(args.repeat, lambda: build(stand_in, layers, width, picks))
    build_s, dag = best_of(args.repeat, lambda: timed_build(layers, width, picks))
    validate_s = float("inf")
    for _ in range(args.repeat):
        dag._snapshot = dag._graph_cache = None  # validate from scratch each time
        gc.collect()
        t0 = time.perf_counter()
        dag.validate()
        validate_s = min(validate_s, time.perf_counter() - t0)
    add_us = (build_s - loop_s) / n * 1e6
    del dag

    dag_bytes, dag = traced(lambda: timed_build(layers, width, picks))
    validated_bytes, _ = traced(dag.validate)
    del dag
    gc.collect()
    dict_bytes, graph = traced(lambda: graphlib_dict(layers, width, picks))

    def prepare() -> graphlib.TopologicalSorter[int]:
        sorter = graphlib.TopologicalSorter(graph)
        sorter.prepare()
        return sorter

    sorter_bytes, _ = traced(prepare)
    ours = dag_bytes + validated_bytes
    theirs = dict_bytes + sorter_bytes
    ratio = ours / theirs

    print(
        f"add       {add_us:6.2f} us per call (target <= {ADD_US:g}) {verdict(add_us <= ADD_US)}"
        f"   [whole loop {build_s / n * 1e6:.2f} us per task, the bench's own part"
        f" {loop_s / n * 1e6:.2f}]"
    )
    print(
        f"validate  {validate_s:6.3f} s (target <= {VALIDATE_S:g}) "
        f"{verdict(validate_s <= VALIDATE_S)}"
    )
    print(
        f"memory    DAG {dag_bytes / 1e6:.1f} MB + validated snapshot"
        f" {validated_bytes / 1e6:.1f} MB = {ours / 1e6:.1f} MB"
    )
    print(
        f"          graphlib: dict of lists {dict_bytes / 1e6:.1f} MB + sorter after prepare()"
        f" {sorter_bytes / 1e6:.1f} MB = {theirs / 1e6:.1f} MB"
    )
    print(
        f"          ratio {ratio:.2f} (target <= {MEMORY_RATIO:g}) {verdict(ratio <= MEMORY_RATIO)}"
        f"; {ours / n:.0f} bytes per task against {theirs / n:.0f}"
    )


if __name__ == "__main__":
    main()

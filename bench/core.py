"""Build and drain a 1,000,000-node layered graph with each core and with graphlib.

The graph: 10,000 layers of 100 nodes; each node past the first layer has 4
parents drawn from the layer above by ``random.Random(0)`` (duplicates
collapse). Each contender builds its structure from the same edges, then pops
every node and marks it done, in batches the way ``graphlib`` is driven
(``get_ready()`` then ``done(*ready)``). Best of 3 each, in one process.

    python bench/core.py [--layers 10000] [--width 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import random
import sys
import time
import tracemalloc
from array import array
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_dag import _native

_core_py = _native.python().core
try:
    _core_c: ModuleType | None = _native.compiled().core
except ImportError:
    _core_c = None


def layered_edges(layers: int, width: int, parents: int = 4) -> tuple[array[int], array[int]]:
    """Edges (parent -> child) of the layered benchmark graph, duplicates removed."""
    rng = random.Random(0)
    src = array("i")
    dst = array("i")
    for layer in range(1, layers):
        base = (layer - 1) * width
        for k in range(width):
            child = layer * width + k
            for p in sorted({base + rng.randrange(width) for _ in range(parents)}):
                src.append(p)
                dst.append(child)
    return src, dst


def drain_core(core: ModuleType, n: int, src: array[int], dst: array[int]) -> Any:
    """Build a Graph and a RunState, then drain it; return the state."""
    state = core.RunState(core.Graph(n, src, dst))
    while state.ready:
        state.done_many(state.pop_all())
    assert state.finished
    return state


def graphlib_graph(n: int, src: array[int], dst: array[int]) -> dict[int, list[int]]:
    """The same edges as the dict of predecessor lists graphlib is fed."""
    graph: dict[int, list[int]] = {v: [] for v in range(n)}
    for p, c in zip(src, dst, strict=True):
        graph[c].append(p)
    return graph


def drain_graphlib(graph: dict[int, list[int]]) -> graphlib.TopologicalSorter[int]:
    """Build a TopologicalSorter from the dict, prepare it, drain it."""
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    while ts.is_active():
        ts.done(*ts.get_ready())
    return ts


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """The fastest of *repeat* timed calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        del result
    return best


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak traced memory while *fn* runs and its result is alive."""
    gc.collect()
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    n = args.layers * args.width
    src, dst = layered_edges(args.layers, args.width)
    graph = graphlib_graph(n, src, dst)
    print(f"layered graph: {n:,} nodes, {len(src):,} edges; best of {args.repeat}")

    contenders: list[tuple[str, Callable[[], Any]]] = []
    if _core_c is not None:
        contenders.append(("compiled core", lambda: drain_core(_core_c, n, src, dst)))
    else:
        print("compiled core: not built (pip install . with a C compiler)")
    contenders.append(("python core", lambda: drain_core(_core_py, n, src, dst)))
    contenders.append(("graphlib", lambda: drain_graphlib(graph)))

    times = {name: best_of(args.repeat, fn) for name, fn in contenders}
    peaks = {name: peak_bytes(fn) for name, fn in contenders if name != "graphlib"}
    peaks["graphlib"] = peak_bytes(lambda: (graphlib_graph(n, src, dst), drain_graphlib(graph)))

    print(f"{'contender':<15} {'ns/node':>9} {'total s':>9} {'peak MB':>9}")
    for name, seconds in times.items():
        print(f"{name:<15} {seconds / n * 1e9:>9.1f} {seconds:>9.3f} {peaks[name] / 1e6:>9.1f}")
    if "compiled core" in times:
        fast = times["compiled core"]
        print(f"compiled vs graphlib:    {times['graphlib'] / fast:6.1f}x faster (target >= 30x)")
        print(f"compiled vs python core: {times['python core'] / fast:6.1f}x faster (target >= 5x)")
        print(f"compiled core structures: {peaks['compiled core'] / 1e6:.1f} MB (target <= 64 MB)")
    print("graphlib peak counts its input dict and the sorter; the cores' counts their structures")


if __name__ == "__main__":
    main()

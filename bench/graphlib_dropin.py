"""Drain the 1,000,000-node layered graph with graphlib and with trio_dag.graphlib.

The graph of ``bench/core.py`` (10,000 layers of 100 nodes; each node past the
first layer has 4 parents drawn from the layer above by ``random.Random(0)``,
duplicates collapsed) as a dict of predecessor lists, with ``int`` nodes and
with ``str`` nodes (one string object per node, as when nodes come from a list
of names). Each contender runs ``TopologicalSorter(graph)``, ``prepare()``,
then ``get_ready()`` / ``done(*ready)`` until it is inactive; best of 3 by
total, in one process, on the core ``trio_dag._native`` picks.

The mapping floor is the hashable-to-index mapping alone, at C speed and with
no core: one dict lookup per node mention to number the nodes (the mentions
flattened beforehand, untimed), then one list lookup per node to map the
indices the core hands out back to nodes, as ``get_ready`` must. ``done(*ready)``
needs no lookup back: the sorter knows the batch it handed out.

    python bench/graphlib_dropin.py [--layers 10000] [--width 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from itertools import chain, count
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import graphlib_graph, layered_edges

import trio_dag.graphlib
from trio_dag import _native

Graph = Mapping[Any, Sequence[Any]]
Phases = tuple[float, float, float]  # build, prepare, drain


def drain(module: ModuleType, graph: Graph) -> Phases:
    """Build a sorter from *graph*, prepare it, drain it in batches; time each phase."""
    t0 = time.perf_counter()
    ts = module.TopologicalSorter(graph)
    t1 = time.perf_counter()
    ts.prepare()
    t2 = time.perf_counter()
    drained = 0
    while ts.is_active():
        ready = ts.get_ready()
        drained += len(ready)
        ts.done(*ready)
    t3 = time.perf_counter()
    assert drained == len(graph)
    return t1 - t0, t2 - t1, t3 - t2


def mapping_floor(graph: Graph) -> Callable[[], Phases]:
    """The mapping alone, as a contender: numbering, then index -> node."""
    mentions = list(chain.from_iterable(map(chain, zip(graph), graph.values())))

    def run() -> Phases:
        t0 = time.perf_counter()
        index: defaultdict[Hashable, int] = defaultdict(count().__next__)
        deque(map(index.__getitem__, mentions), maxlen=0)
        nodes = list(index)
        t1 = time.perf_counter()
        deque(map(nodes.__getitem__, range(len(nodes))), maxlen=0)
        t2 = time.perf_counter()
        return t1 - t0, 0.0, t2 - t1

    return run


def best_of(repeat: int, fn: Callable[[], Phases]) -> Phases:
    """The phases of the fastest of *repeat* calls, by total."""
    runs = []
    for _ in range(repeat):
        gc.collect()
        runs.append(fn())
    return min(runs, key=sum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    n = args.layers * args.width
    src, dst = layered_edges(args.layers, args.width)
    by_int = graphlib_graph(n, src, dst)
    names = [f"n{v}" for v in range(n)]
    by_str = {names[v]: [names[p] for p in preds] for v, preds in by_int.items()}
    del src, dst

    print(
        f"layered graph: {n:,} nodes, {sum(map(len, by_int.values())):,} edges; "
        f"trio_dag core: {_native.CORE}; best of {args.repeat}, wall seconds"
    )
    if _native.CORE != "cython":
        print("  (the compiled core is not in use: these are the pure-Python twin's times)")
    print(
        f"{'nodes':<6} {'contender':<18} {'build':>7} {'prepare':>8} {'drain':>7} {'total':>7}"
        "  vs graphlib"
    )
    targets = {"int": 8, "str": 5}
    graphs: dict[str, Graph] = {"int": by_int, "str": by_str}
    for kind, graph in graphs.items():
        rows = {
            "graphlib": best_of(args.repeat, partial(drain, graphlib, graph)),
            "trio_dag.graphlib": best_of(args.repeat, partial(drain, trio_dag.graphlib, graph)),
            "mapping floor": best_of(args.repeat, mapping_floor(graph)),
        }
        theirs = sum(rows["graphlib"])
        ours = sum(rows["trio_dag.graphlib"])
        floor = sum(rows["mapping floor"])
        notes = {
            "graphlib": "",
            "trio_dag.graphlib": f"{theirs / ours:5.1f}x speed-up (target >= {targets[kind]}x)",
            "mapping floor": f"{theirs / floor:5.1f}x at most (ours: {ours / floor:.1f}x floor)",
        }
        for name, (build, prepare, drained) in rows.items():
            print(
                f"{kind:<6} {name:<18} {build:>7.3f} {prepare:>8.3f} {drained:>7.3f} "
                f"{build + prepare + drained:>7.3f}  {notes[name]}"
            )


if __name__ == "__main__":
    main()

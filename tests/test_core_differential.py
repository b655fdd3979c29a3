"""Properties of the graph core on random graphs.

The compiled core must give exactly the twin's results, step by step: the same
return values, the same exceptions with the same messages, the same states.
Each implementation must also keep a run's invariants on its own.
"""

from __future__ import annotations

import graphlib
import itertools
import random
from array import array
from collections.abc import Callable
from types import ModuleType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_dag._native import _core_py as twin

MAX_NODES = 40

Edges = tuple[int, list[int], list[int]]


@st.composite
def graphs(draw: st.DrawFn, *, cyclic: bool = True) -> Edges:
    """``(n, sources, targets)``: a random DAG under a random numbering, with duplicate
    edges, and with *cyclic* a few random edges more (self-loops and cycles likely)."""
    n = draw(st.integers(0, MAX_NODES))
    if n == 0:
        return 0, [], []
    position = draw(st.permutations(range(n)))
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))
    edges = [
        (position[min(a, b)], position[max(a, b)])
        for a, b in draw(st.lists(pairs, max_size=3 * n))
        if a != b
    ]
    if edges:
        edges += draw(st.lists(st.sampled_from(edges), max_size=5))
    if cyclic:
        edges += draw(st.lists(pairs, max_size=2))
    order = draw(st.sampled_from(["any", "by target", "by target, distinct"]))
    if order == "any":
        edges = draw(st.permutations(edges))
    else:
        # As a DAG records them: grouped by target, sources ascending (a
        # build path of its own in the compiled core), with or without repeats.
        edges = sorted(set(edges) if order.endswith("distinct") else edges, key=lambda e: e[::-1])
    return n, [s for s, _ in edges], [d for _, d in edges]


def node_lists(n: int, max_size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, n - 1), max_size=max_size) if n else st.just([])


@st.composite
def run_options(draw: st.DrawFn, n: int) -> dict[str, Any]:
    """Keyword arguments of RunState: keys (ties likely), lifo, all_done and targets."""
    key = st.integers(-2, 2) | st.floats(allow_nan=False)
    return {
        "keys": draw(st.none() | st.lists(key, min_size=n, max_size=n)),
        "lifo": draw(st.booleans()),
        "all_done": draw(st.none() | node_lists(n, n)),
        "targets": draw(st.none() | node_lists(n, 3)),
    }


def exact(value: object) -> object:
    """*value* with its types spelled out, so that 1 == 1.0 or a list == an array fails."""
    if isinstance(value, array):
        return ("array", value.typecode, value.tolist())
    if isinstance(value, list):
        return ("list", [exact(v) for v in value])
    if type(value).__module__.startswith("trio_dag."):
        return ("object", type(value).__qualname__)  # a Graph or RunState: its class says enough
    return (type(value), value)


def outcome(call: Callable[[], object]) -> tuple[object, tuple[object, ...]]:
    """What *call* returned, and how it ended in a form to compare."""
    try:
        value = call()
    except Exception as exc:
        return None, ("raised", type(exc), str(exc))
    return value, ("returned", exact(value))


def agree(left: object, right: object, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call *method* on both objects; assert they agree; return the twin's result."""
    value, expected = outcome(lambda: getattr(left, method)(*args, **kwargs))
    _, actual = outcome(lambda: getattr(right, method)(*args, **kwargs))
    assert actual == expected, f"{method}{args}{kwargs}"
    return value


def assert_same_graph(left: Any, right: Any, data: st.DataObject) -> None:
    n = left.n
    assert exact(right.n) == exact(n)
    assert exact(right.num_edges) == exact(left.num_edges)
    for v in range(-1, n + 1):
        for method in ("children", "parents", "indegree", "outdegree"):
            agree(left, right, method, v)
    for method in ("find_cycle", "topological_order", "levels"):
        agree(left, right, method)
    cost = st.integers(0, 9) | st.floats(-1e3, 1e3, allow_nan=False)
    agree(left, right, "upward_rank", data.draw(st.lists(cost, min_size=n, max_size=n)))
    agree(left, right, "upward_rank", [1.0] * (n + 1))
    agree(left, right, "ancestors", data.draw(st.lists(st.integers(-1, n), max_size=4)))


def assert_same_run(left: Any, right: Any) -> None:
    for name in ("ready", "running", "ended", "total", "finished"):
        assert exact(getattr(right, name)) == exact(getattr(left, name)), name
    assert exact(right.states()) == exact(left.states())


OPERATIONS = (
    "pop",
    "done",
    "pop_all",
    "fail",
    "push_back",
    "requeue",
    "cancel",
    "done_many",
    "cancel_pending",
    "pop_marked",
    "push_back_unmarked",
)


def step(left: Any, right: Any, data: st.DataObject) -> None:
    """One random operation on both runs, mostly on a running node."""
    n = left.graph.n
    op = data.draw(st.sampled_from(OPERATIONS))
    running = [v for v, s in enumerate(left.states()) if s == twin.RUNNING]
    node = st.integers(-1, n)
    if running:
        node = st.sampled_from(running) | node
    if op in ("pop", "pop_all"):
        agree(left, right, op)
    elif op == "done_many":
        agree(left, right, op, data.draw(st.lists(node, max_size=len(running) + 1)))
    elif op == "cancel_pending":
        agree(left, right, op, keep_all_done=data.draw(st.booleans()))
    elif op == "pop_marked":
        agree(left, right, op, bytearray(data.draw(st.lists(st.booleans(), max_size=n + 1))))
    elif op == "push_back_unmarked":
        marks = bytearray(data.draw(st.lists(st.booleans(), max_size=n + 1)))
        agree(left, right, op, data.draw(st.lists(node, max_size=len(running) + 1)), marks)
    else:
        agree(left, right, op, data.draw(node))


@settings(max_examples=3 * settings.default.max_examples)
@given(data=st.data())
def test_compiled_core_agrees_with_the_twin(compiled_core: ModuleType, data: st.DataObject) -> None:
    agree_on_a_run(compiled_core, data)


@settings(max_examples=settings.default.max_examples)
@given(data=st.data())
def test_compiled_core_agrees_with_the_twin_across_renumbering(
    compiled_core: ModuleType, data: st.DataObject
) -> None:
    # The compiled RunState keeps each node's seq in an int32 and renumbers
    # them all when the next would pass the top: lowered here to a few, so
    # runs renumber again and again (retries and push-backs included).
    old = compiled_core._set_seq_max(data.draw(st.integers(1, 6)))
    try:
        agree_on_a_run(compiled_core, data)
    finally:
        compiled_core._set_seq_max(old)


def agree_on_a_run(compiled_core: ModuleType, data: st.DataObject) -> None:
    """A random graph and run, stepped in both cores: every answer the same."""
    n, sources, targets = data.draw(graphs())
    left = twin.Graph(n, sources, targets)
    right = compiled_core.Graph(n, sources, targets)
    assert_same_graph(left, right, data)

    options = data.draw(run_options(n))
    runs = (twin.RunState(left, **options), compiled_core.RunState(right, **options))
    assert_same_run(*runs)
    for _ in range(data.draw(st.integers(0, 3 * n + 5))):
        step(*runs, data)
        assert_same_run(*runs)
    # Then run what is left to the end, so every run reaches its final states.
    while True:
        agree(*runs, "pop_all")
        running = [v for v, s in enumerate(runs[0].states()) if s == twin.RUNNING]
        if not running:
            break
        agree(*runs, "done_many", running)
        assert_same_run(*runs)


@settings(max_examples=settings.default.max_examples)
@given(data=st.data())
def test_compiled_core_rejects_what_the_twin_rejects(
    compiled_core: ModuleType, data: st.DataObject
) -> None:
    n = data.draw(st.integers(-2, 6) | st.sampled_from([2**31, True, 1.0]))
    index = st.integers(-2, max(n, 1) + 1) | st.just(2**40)
    sources = data.draw(st.lists(index, max_size=4))
    size = len(sources)
    targets = data.draw(st.lists(index, min_size=max(size - 1, 0), max_size=size + 1))
    left = agree(twin, compiled_core, "Graph", n, sources, targets)
    if left is None:
        return
    right = compiled_core.Graph(n, sources, targets)
    key = st.floats() | st.integers(-2, 2)
    keys = data.draw(st.none() | st.lists(key, min_size=max(n - 1, 0), max_size=n + 1))
    options = {
        "lifo": data.draw(st.booleans()),
        "all_done": data.draw(st.none() | st.lists(index, max_size=3)),
        "targets": data.draw(st.none() | st.lists(index, max_size=3)),
    }
    _, expected = outcome(lambda: twin.RunState(left, keys, **options))
    _, actual = outcome(lambda: compiled_core.RunState(right, keys, **options))
    assert actual == expected


# -- Invariants, on each implementation ---------------------------------------


def edge_set(sources: list[int], targets: list[int]) -> set[tuple[int, int]]:
    return set(zip(sources, targets, strict=True))


@given(edges=graphs(), data=st.data())
def test_graph_answers_are_consistent(core: ModuleType, edges: Edges, data: st.DataObject) -> None:
    n, sources, targets = edges
    g = core.Graph(n, sources, targets)
    distinct = edge_set(sources, targets)
    assert g.num_edges == len(distinct)
    for v in range(n):
        assert g.children(v) == sorted(c for p, c in distinct if p == v)
        assert g.parents(v) == sorted(p for p, c in distinct if c == v)
        assert (g.indegree(v), g.outdegree(v)) == (len(g.parents(v)), len(g.children(v)))

    wanted = data.draw(node_lists(n, 3))
    closure = set(wanted)
    frontier = list(wanted)
    while frontier:
        for p in g.parents(frontier.pop()):
            if p not in closure:
                closure.add(p)
                frontier.append(p)
    assert g.ancestors(wanted) == array("i", sorted(closure))

    sorter = graphlib.TopologicalSorter({v: g.parents(v) for v in range(n)})
    try:
        sorter.prepare()
    except graphlib.CycleError:
        assert_is_a_cycle(g, g.find_cycle())
        return
    assert g.find_cycle() is None
    order = g.topological_order()
    assert sorted(order) == list(range(n))
    position = {v: i for i, v in enumerate(order)}
    assert all(position[p] < position[c] for p, c in distinct)
    levels = g.levels()
    for v in order:
        assert levels[v] == max((levels[p] + 1 for p in g.parents(v)), default=0)
    costs = data.draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    rank = g.upward_rank(costs)
    for v in order:
        assert rank[v] == costs[v] + max((rank[c] for c in g.children(v)), default=0)


def assert_is_a_cycle(g: Any, cycle: list[int] | None) -> None:
    assert cycle is not None
    loop = cycle[:-1]
    assert cycle[-1] == cycle[0] == min(loop)
    assert len(set(loop)) == len(loop)
    assert all(b in g.children(a) for a, b in itertools.pairwise(cycle))


@given(edges=graphs(cyclic=False), data=st.data())
def test_a_run_keeps_its_invariants(core: ModuleType, edges: Edges, data: st.DataObject) -> None:
    n, sources, targets = edges
    g = core.Graph(n, sources, targets)
    options = data.draw(run_options(n))
    rs = core.RunState(g, **options)
    all_done = set(options["all_done"] or ())
    included = set(range(n)) if options["targets"] is None else set(g.ancestors(options["targets"]))
    final: dict[int, int] = {}  # each node that ended, with the state it ended in
    running: set[int] = set()
    retries = 0

    def may_start(v: int) -> bool:
        ends = [final.get(p) for p in g.parents(v)]
        if v in all_done:
            return None not in ends
        return all(end == core.SUCCEEDED for end in ends)

    while True:
        assert_counts_add_up(core, rs, final, running, included)
        if rs.ready and (not running or data.draw(st.booleans())):
            v = rs.pop()
            assert v in included and v not in final and v not in running
            assert may_start(v), f"node {v} started before its parents ended as required"
            running.add(v)
            continue
        if not running:
            break
        v = data.draw(st.sampled_from(sorted(running)))
        running.remove(v)
        action = data.draw(st.sampled_from(["done", "fail", "requeue"]))
        ready_before = rs.ready
        if action == "requeue" and retries < n:
            retries += 1
            rs.requeue(v)
        elif action == "fail":
            final[v] = core.FAILED
            for s in rs.fail(v):
                assert s in included and s not in final and s not in all_done
                # Breadth-first: each skipped node hangs below one that ended before it.
                assert any(p in final and final[p] != core.SUCCEEDED for p in g.parents(s))
                final[s] = core.SKIPPED
        else:
            final[v] = core.SUCCEEDED
            assert rs.done(v) == rs.ready - ready_before

    assert rs.finished, "an acyclic run stopped with nodes still pending"
    assert set(final) == included
    assert list(rs.states()) == [final.get(v, core.EXCLUDED) for v in range(n)]


def assert_counts_add_up(
    core: ModuleType, rs: Any, final: dict[int, int], running: set[int], included: set[int]
) -> None:
    states = rs.states()
    assert rs.ready == states.count(core.READY)
    assert rs.running == states.count(core.RUNNING) == len(running)
    assert rs.ended == len(final)
    assert rs.total == len(included) == len(states) - states.count(core.EXCLUDED)
    assert rs.ready + rs.running + rs.ended + states.count(core.PENDING) == rs.total
    assert rs.finished == (rs.ended == rs.total)
    assert all(states[v] == s for v, s in final.items())


@settings(max_examples=20, deadline=None)
@given(lifo=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_cores_agree_while_thousands_wait(compiled_core: ModuleType, lifo: bool, seed: int) -> None:
    # A 4-ary tree, breadth-first: the ready nodes outgrow the ring the
    # compiled core starts with (1,024) while it is wrapped around, and
    # pops, push_backs, requeues, cancels and failures interleave; the twin
    # decides.
    rng = random.Random(seed)
    n = 5000
    sources = [(v - 1) // 4 for v in range(1, n)]
    runs = [
        core.RunState(core.Graph(n, sources, range(1, n)), lifo=lifo)
        for core in (twin, compiled_core)
    ]
    ops = ["done"] * 17 + ["push_back", "requeue", "fail"]
    running: list[int] = []
    while True:
        roll = rng.random()
        if running and roll < 0.45:
            v = running.pop(rng.randrange(len(running)))
            agree(*runs, rng.choice(ops), v)
        elif roll < 0.46 and runs[0].ready:
            ready = [v for v, s in enumerate(runs[0].states()) if s == twin.READY]
            agree(*runs, "cancel", rng.choice(ready))
        else:
            v = agree(*runs, "pop")
            if v >= 0:
                running.append(v)
            elif not running:
                break
        assert_same_run(*runs)
    assert runs[0].finished

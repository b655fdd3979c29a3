"""Graph and RunState of the graph core, each test run against both implementations."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from array import array
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import trio_dag
from trio_dag._native import _shared

STATE_CONSTANTS = (
    "PENDING",
    "READY",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "SKIPPED",
    "CANCELLED",
    "EXCLUDED",
)


def graph(core: ModuleType, n: int, *edges: tuple[int, int]) -> Any:
    return core.Graph(n, [s for s, _ in edges], [d for _, d in edges])


def drain(rs: Any) -> list[int]:
    """Run every node to success, one at a time; return the order they started in."""
    order = []
    while (v := rs.pop()) >= 0:
        order.append(v)
        rs.done(v)
    return order


def counts(rs: Any) -> tuple[int, int, int, int, bool]:
    return rs.ready, rs.running, rs.ended, rs.total, rs.finished


# -- Graph: construction ------------------------------------------------------


def assert_diamond(g: Any) -> None:
    assert g.n == 4
    assert g.num_edges == 4
    assert [g.children(v) for v in range(4)] == [[1, 2], [3], [3], []]
    assert [g.parents(v) for v in range(4)] == [[], [0], [0], [1, 2]]
    assert [g.indegree(v) for v in range(4)] == [0, 1, 1, 2]
    assert [g.outdegree(v) for v in range(4)] == [2, 1, 1, 0]


DIAMOND_SOURCES = [0, 0, 1, 2]
DIAMOND_TARGETS = [1, 2, 3, 3]


def test_graph_from_lists(core: ModuleType) -> None:
    g = core.Graph(4, DIAMOND_SOURCES, DIAMOND_TARGETS)
    assert_diamond(g)
    assert type(g.children(0)) is list
    assert type(g.parents(3)) is list


@pytest.mark.parametrize("typecode", ["i", "q"])
def test_graph_from_int_arrays(core: ModuleType, typecode: str) -> None:
    assert_diamond(
        core.Graph(4, array(typecode, DIAMOND_SOURCES), array(typecode, DIAMOND_TARGETS))
    )


@pytest.mark.parametrize("typecode", ["i", "q"])
def test_graph_from_memoryviews(core: ModuleType, typecode: str) -> None:
    src = memoryview(array(typecode, DIAMOND_SOURCES))
    dst = memoryview(array(typecode, DIAMOND_TARGETS))
    assert_diamond(core.Graph(4, src, dst))


def test_graph_from_iterators(core: ModuleType) -> None:
    assert_diamond(core.Graph(4, iter(DIAMOND_SOURCES), (d for d in DIAMOND_TARGETS)))


def test_graph_keeps_no_reference_to_its_input(core: ModuleType) -> None:
    src = array("i", DIAMOND_SOURCES)
    dst = list(DIAMOND_TARGETS)
    g = core.Graph(4, src, dst)
    src[0] = 3
    dst[0] = 0
    assert_diamond(g)


def test_graph_is_immutable(core: ModuleType) -> None:
    g = core.Graph(4, DIAMOND_SOURCES, DIAMOND_TARGETS)
    with pytest.raises(AttributeError):
        g.n = 5
    with pytest.raises(AttributeError):
        g.num_edges = 0
    g.children(0).append(3)
    g.parents(3).clear()
    assert_diamond(g)


@pytest.mark.parametrize("n", [4.0, "4", None, True])
def test_graph_n_must_be_an_int(core: ModuleType, n: object) -> None:
    with pytest.raises(TypeError, match="n must be an int"):
        core.Graph(n, [], [])


@pytest.mark.parametrize("n", [-1, -(2**40), 2**31])
def test_graph_n_must_be_a_non_negative_int32(core: ModuleType, n: int) -> None:
    # 2**31 - 2, not 2**31 - 1: n + 1 offsets must fit an int32 (see below).
    with pytest.raises(ValueError, match=f"n must be between 0 and 2147483646, got {n}"):
        core.Graph(n, [], [])


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with at most 4 GiB of address space.

    For calls that could crash the interpreter (a C buffer overrun) or try
    to allocate tens of gigabytes: either fails there, not in the test run.
    """
    limit = (
        "try:\n"
        "    import resource\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (1 << 32, 1 << 32))\n"
        "except (ImportError, ValueError):\n"
        "    pass\n"
    )
    root = str(Path(trio_dag.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-c", limit + code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_graph_of_2_31_minus_1_nodes_is_refused_before_anything_is_allocated(
    core: ModuleType,
) -> None:
    """Its n + 1 CSR offsets would not fit a C int.

    The compiled core used to compute ``n + 1`` in a C int, allocate one
    offset and write 2**31 of them: a crash. The twin agrees on the limit.
    """
    code = (
        f"import {core.__name__} as core\n"
        "try:\n"
        "    core.Graph(2**31 - 1, [], [])\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    result = run_isolated(code)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout == "n must be between 0 and 2147483646, got 2147483647\n"


def test_the_largest_graph_the_core_takes_is_the_shared_limit() -> None:
    assert _shared.MAX_NODES == 2**31 - 2
    assert _shared.MAX_EDGES == 2**31 - 1


def test_graph_edge_count_is_checked_against_the_shared_limit(
    core: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edges are counted as given, repeats included: the core counts them in C ints.

    2**31 edges take 16 GiB to pass, so the limit is lowered to show that
    both cores check it, the same way, before building anything.
    """
    monkeypatch.setattr(_shared, "MAX_EDGES", 3)
    assert graph(core, 3, (0, 1), (1, 2), (0, 1)).num_edges == 2
    with pytest.raises(ValueError, match="a graph takes at most 3 edges, got 4"):
        graph(core, 3, (0, 1), (1, 2), (0, 1), (0, 2))


def test_graph_edge_lists_must_have_the_same_length(core: ModuleType) -> None:
    msg = "sources and targets must have the same length, got 1 and 2"
    with pytest.raises(ValueError, match=msg):
        core.Graph(3, [0], [1, 2])


@pytest.mark.parametrize(
    ("sources", "targets", "message"),
    [
        ([0, 3], [1, 2], "edge 1 (3 -> 2) names node 3, but the graph has 3 nodes"),
        ([0, 1], [1, 3], "edge 1 (1 -> 3) names node 3, but the graph has 3 nodes"),
        ([-1, 1], [1, 2], "edge 0 (-1 -> 1) names node -1, but the graph has 3 nodes"),
        ([0, 1], [1, -2], "edge 1 (1 -> -2) names node -2, but the graph has 3 nodes"),
        ([5], [7], "edge 0 (5 -> 7) names node 5, but the graph has 3 nodes"),
    ],
)
def test_graph_edge_out_of_range_names_the_edge(
    core: ModuleType, sources: list[int], targets: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        core.Graph(3, sources, targets)


def test_graph_of_no_nodes_takes_no_edges(core: ModuleType) -> None:
    with pytest.raises(ValueError, match=re.escape("edge 0 (0 -> 0) names node 0")):
        core.Graph(0, [0], [0])


@pytest.mark.parametrize("which", ["sources", "targets"])
def test_graph_edge_must_fit_in_32_bits(core: ModuleType, which: str) -> None:
    big = array("q", [2**40])
    small = array("q", [0])
    edges = (big, small) if which == "sources" else (small, big)
    msg = f"{which} holds a node index that is not a 32-bit integer"
    with pytest.raises(ValueError, match=msg):
        core.Graph(3, *edges)


@pytest.mark.parametrize("bad", [[0.5], ["0"], 7])
def test_graph_edges_must_be_ints(core: ModuleType, bad: object) -> None:
    with pytest.raises(TypeError, match="sources must be an iterable of ints"):
        core.Graph(3, bad, [1])


@pytest.mark.parametrize("method", ["children", "parents", "indegree", "outdegree"])
@pytest.mark.parametrize("node", [-1, 3, 100])
def test_graph_node_out_of_range_raises_index_error(
    core: ModuleType, method: str, node: int
) -> None:
    g = graph(core, 3, (0, 1))
    with pytest.raises(IndexError, match=f"node {node} is out of range for a graph of 3 nodes"):
        getattr(g, method)(node)


HUGE = 2**70  # beyond every C integer type


@pytest.mark.parametrize(
    "call",
    [
        lambda core, g: g.children(HUGE),
        lambda core, g: g.parents(-HUGE),
        lambda core, g: g.indegree(HUGE),
        lambda core, g: g.outdegree(HUGE),
        lambda core, g: g.ancestors([HUGE]),
        lambda core, g: core.RunState(g, all_done=[HUGE]),
        lambda core, g: core.RunState(g, targets=[HUGE]),
        lambda core, g: core.RunState(g).state(HUGE),
        lambda core, g: core.RunState(g).done(HUGE),
        lambda core, g: core.RunState(g).done_many([HUGE]),
        lambda core, g: core.RunState(g).fail(HUGE),
        lambda core, g: core.RunState(g).cancel(HUGE),
        lambda core, g: core.RunState(g).push_back(HUGE),
        lambda core, g: core.RunState(g).requeue(HUGE),
    ],
    ids=[
        "children",
        "parents",
        "indegree",
        "outdegree",
        "ancestors",
        "all_done",
        "targets",
        "state",
        "done",
        "done_many",
        "fail",
        "cancel",
        "push_back",
        "requeue",
    ],
)
def test_huge_node_index_is_out_of_range(core: ModuleType, call: Any) -> None:
    with pytest.raises(IndexError, match="is out of range for a graph of 3 nodes"):
        call(core, graph(core, 3, (0, 1)))


def test_duplicate_edges_collapse(core: ModuleType) -> None:
    g = graph(core, 3, (1, 2), (0, 2), (1, 2), (0, 1), (1, 2), (0, 2))
    assert g.num_edges == 3
    assert g.children(0) == [1, 2]
    assert g.children(1) == [2]
    assert g.parents(2) == [0, 1]
    assert (g.indegree(2), g.outdegree(1)) == (2, 1)
    rs = core.RunState(g)
    rs.pop()
    assert rs.done(0) == 1  # 2 still waits for 1, however often the edge was given
    assert drain(rs) == [1, 2]


def test_adjacency_is_ascending_whatever_the_edge_order(core: ModuleType) -> None:
    g = graph(core, 5, (4, 0), (4, 3), (2, 0), (4, 1), (3, 0), (1, 0))
    assert g.children(4) == [0, 1, 3]
    assert g.parents(0) == [1, 2, 3, 4]


def test_edges_in_order_or_not_make_the_same_graph(core: ModuleType) -> None:
    # Sorted by target then source, as a DAG records them, or in any order with repeats.
    edges = [(0, 2), (1, 2), (0, 3), (2, 3), (4, 3), (1, 5), (3, 5), (4, 5)]
    shuffled = [edges[i] for i in (7, 2, 5, 0, 6, 1, 4, 3)] + [(4, 3), (0, 2)]
    a, b = graph(core, 6, *edges), graph(core, 6, *shuffled)
    assert a.num_edges == b.num_edges == 8
    for v in range(6):
        assert a.children(v) == b.children(v)
        assert a.parents(v) == b.parents(v)
    assert a.topological_order() == b.topological_order()
    assert drain(core.RunState(a)) == drain(core.RunState(b))


def offsets_of(n: int, edges: list[tuple[int, int]]) -> tuple[array[int], array[int]]:
    """*edges* (grouped by target) as a DAG keeps them: sources, and offsets per target."""
    src = array("i", [s for s, _ in edges])
    off = array("i", [0] * (n + 1))
    for _, d in edges:
        off[d + 1] += 1
    for v in range(n):
        off[v + 1] += off[v]
    return src, off


@pytest.mark.parametrize(
    "edges",
    [
        [(0, 2), (1, 2), (0, 3), (2, 3), (4, 3), (1, 5), (3, 5), (4, 5)],  # ascending: shared
        [(1, 2), (0, 2), (0, 3), (0, 3), (4, 3), (2, 3), (4, 5), (1, 5), (3, 5)],  # not
        [],
    ],
)
def test_offsets_form_makes_the_same_graph_as_edges(
    core: ModuleType, edges: list[tuple[int, int]]
) -> None:
    src, off = offsets_of(6, edges)
    a, b = graph(core, 6, *edges), core.Graph(6, src, offsets=off)
    assert a.num_edges == b.num_edges
    for v in range(6):
        assert a.children(v) == b.children(v)
        assert a.parents(v) == b.parents(v)
        assert a.indegree(v) == b.indegree(v)
    assert a.topological_order() == b.topological_order()
    assert a.ancestors([5]) == b.ancestors([5])
    assert drain(core.RunState(a)) == drain(core.RunState(b))


def test_offsets_form_reads_only_the_first_n_nodes_edges(core: ModuleType) -> None:
    # A DAG's arrays run on past the tasks frozen: appends do not change the graph.
    src, off = offsets_of(3, [(0, 1), (0, 2), (1, 2)])
    g = core.Graph(3, src, offsets=off)
    for _ in range(10_000):  # moves the buffers
        src.append(2)
        off.append(len(src))
    assert [g.parents(v) for v in range(3)] == [[], [0], [0, 1]]
    assert list(g.topological_order()) == [0, 1, 2]
    assert g.find_cycle() is None
    assert drain(core.RunState(g)) == [0, 1, 2]


def test_offsets_form_finds_a_cycle(core: ModuleType) -> None:
    src, off = offsets_of(3, [(2, 0), (0, 1), (1, 2)])
    assert core.Graph(3, src, offsets=off).find_cycle() == [0, 1, 2, 0]


@pytest.mark.parametrize(
    ("n", "src", "off", "message"),
    [
        (3, [0], [0, 0, 1], r"offsets must have at least n \+ 1 \(4\) entries, got 3"),
        (2, [0], [1, 1, 1], "offsets must start at 0, got 1"),
        (2, [0], [0, 1, 0], "offsets must not decrease, but entry 2 is below entry 1"),
        (2, [0], [0, 0, 2], "offsets end at 2, past the 1 sources"),
        (2, [0, 5], [0, 1, 2], r"edge 1 \(5 -> 1\) names node 5, but the graph has 2 nodes"),
    ],
)
def test_offsets_form_checks_its_input(
    core: ModuleType, n: int, src: list[int], off: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        core.Graph(n, src, offsets=off)


def test_graph_takes_targets_or_offsets(core: ModuleType) -> None:
    with pytest.raises(TypeError, match="not both"):
        core.Graph(1, [], [], offsets=[0, 0])
    with pytest.raises(TypeError, match="needs targets"):
        core.Graph(1, [])


def test_empty_graph(core: ModuleType) -> None:
    g = core.Graph(0, [], [])
    assert (g.n, g.num_edges) == (0, 0)
    assert g.find_cycle() is None
    assert g.topological_order() == array("i")
    assert g.levels() == array("i")
    assert g.upward_rank([]) == array("d")
    assert g.ancestors([]) == array("i")
    rs = core.RunState(g)
    assert counts(rs) == (0, 0, 0, 0, True)
    assert rs.pop() == -1
    assert rs.pop_all() == []
    assert rs.states() == b""
    assert rs.cancel_pending(keep_all_done=False) == []


def test_single_node(core: ModuleType) -> None:
    g = core.Graph(1, [], [])
    assert g.children(0) == g.parents(0) == []
    assert g.find_cycle() is None
    assert g.topological_order() == array("i", [0])
    assert g.levels() == array("i", [0])
    assert g.upward_rank([2.5]) == array("d", [2.5])
    assert g.ancestors([0]) == array("i", [0])
    rs = core.RunState(g)
    assert rs.state(0) == core.READY
    assert rs.pop() == 0
    assert rs.done(0) == 0
    assert counts(rs) == (0, 0, 1, 1, True)


# -- Graph: cycles and orders -------------------------------------------------


def test_find_cycle_is_none_when_acyclic(core: ModuleType) -> None:
    assert core.Graph(4, DIAMOND_SOURCES, DIAMOND_TARGETS).find_cycle() is None
    assert core.Graph(3, [], []).find_cycle() is None
    # Edges to a lower node, but no cycle.
    assert graph(core, 4, (3, 0), (2, 0), (3, 1), (1, 0)).find_cycle() is None


def test_self_loop_is_a_cycle(core: ModuleType) -> None:
    assert graph(core, 1, (0, 0)).find_cycle() == [0, 0]
    g = graph(core, 3, (0, 1), (1, 1), (1, 2))
    assert g.find_cycle() == [1, 1]
    assert g.children(1) == [1, 2]
    assert g.parents(1) == [0, 1]


def test_two_node_cycle(core: ModuleType) -> None:
    assert graph(core, 2, (1, 0), (0, 1)).find_cycle() == [0, 1, 0]


def test_cycle_in_the_middle_of_the_graph(core: ModuleType) -> None:
    # 5 -> 0 -> 4 -> 2 -> 3 -> 4, and 3 -> 1: nodes before and after the cycle.
    g = graph(core, 6, (5, 0), (0, 4), (4, 2), (2, 3), (3, 4), (3, 1))
    assert g.find_cycle() == [2, 3, 4, 2]


def test_cycle_found_from_a_node_below_it(core: ModuleType) -> None:
    # Node 0 is not on the cycle 2 -> 3 -> 2 but depends on it.
    g = graph(core, 4, (2, 3), (3, 2), (3, 0), (1, 2))
    assert g.find_cycle() == [2, 3, 2]


def test_cycle_starts_at_its_smallest_node(core: ModuleType) -> None:
    assert graph(core, 5, (4, 1), (1, 3), (3, 4), (0, 4)).find_cycle() == [1, 3, 4, 1]


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.topological_order(),
        lambda g: g.levels(),
        lambda g: g.upward_rank([1.0] * g.n),
    ],
    ids=["topological_order", "levels", "upward_rank"],
)
@pytest.mark.parametrize(
    "edges",
    [[(0, 0)], [(0, 1), (1, 0)], [(3, 0), (0, 1), (1, 2), (2, 0), (2, 3)]],
    ids=["self_loop", "two_nodes", "middle"],
)
def test_orders_reject_a_cyclic_graph(
    core: ModuleType, call: Any, edges: list[tuple[int, int]]
) -> None:
    g = graph(core, 5, *edges)
    message = "the graph has a cycle; find_cycle() shows one"
    with pytest.raises(ValueError, match=re.escape(message)):
        call(g)


def test_topological_order_is_breadth_first_from_ascending_sources(core: ModuleType) -> None:
    g = graph(core, 5, (4, 0), (4, 1), (0, 3), (2, 3))
    order = g.topological_order()
    assert order == array("i", [2, 4, 0, 1, 3])
    assert order.typecode == "i"


def test_levels(core: ModuleType) -> None:
    # 0 -> 1 -> 2 -> 3 with a shortcut 0 -> 3, a late source 5 -> 2, an isolated 4.
    g = graph(core, 6, (0, 1), (1, 2), (2, 3), (0, 3), (5, 2))
    levels = g.levels()
    assert levels == array("i", [0, 1, 2, 3, 0, 0])
    assert levels.typecode == "i"


def test_levels_take_the_longest_chain(core: ModuleType) -> None:
    g = graph(core, 5, (0, 4), (0, 1), (1, 2), (2, 3), (3, 4))
    assert g.levels() == array("i", [0, 1, 2, 3, 4])


def test_upward_rank(core: ModuleType) -> None:
    g = graph(core, 5, (0, 1), (0, 2), (1, 3), (2, 3))
    rank = g.upward_rank([1, 2, 5.5, 1, 0.25])
    assert rank == array("d", [7.5, 3.0, 6.5, 1.0, 0.25])
    assert rank.typecode == "d"


def test_upward_rank_takes_any_sequence_of_costs(core: ModuleType) -> None:
    g = graph(core, 2, (0, 1))
    assert g.upward_rank(array("d", [1.5, 2.0])) == array("d", [3.5, 2.0])
    assert g.upward_rank((1, 2)) == array("d", [3.0, 2.0])


def test_upward_rank_needs_one_cost_per_node(core: ModuleType) -> None:
    g = graph(core, 3, (0, 1))
    message = "costs must have one value per node (3), got 2"
    with pytest.raises(ValueError, match=re.escape(message)):
        g.upward_rank([1.0, 2.0])


def test_ancestors(core: ModuleType) -> None:
    # 0 -> 1 -> 3, 2 -> 3, 3 -> 4, 5 -> 4, 6 alone.
    g = graph(core, 7, (0, 1), (1, 3), (2, 3), (3, 4), (5, 4))
    result = g.ancestors([3])
    assert result == array("i", [0, 1, 2, 3])
    assert result.typecode == "i"
    assert g.ancestors([1, 5, 1]) == array("i", [0, 1, 5])
    assert g.ancestors(iter([4])) == array("i", [0, 1, 2, 3, 4, 5])
    assert g.ancestors([6]) == array("i", [6])
    assert g.ancestors([]) == array("i")


def test_ancestors_of_a_cyclic_graph(core: ModuleType) -> None:
    g = graph(core, 5, (0, 1), (1, 2), (2, 1), (2, 3), (4, 3))
    assert g.ancestors([2]) == array("i", [0, 1, 2])
    assert g.ancestors([3]) == array("i", [0, 1, 2, 3, 4])


@pytest.mark.parametrize("node", [-1, 3])
def test_ancestors_of_a_node_out_of_range(core: ModuleType, node: int) -> None:
    g = graph(core, 3, (0, 1))
    with pytest.raises(IndexError, match=f"node {node} is out of range for a graph of 3 nodes"):
        g.ancestors([0, node])


def test_chain_of_a_million_nodes(core: ModuleType) -> None:
    n = 1_000_000
    g = core.Graph(n, array("i", range(n - 1)), array("i", range(1, n)))
    assert g.num_edges == n - 1
    assert g.find_cycle() is None
    assert g.topological_order() == array("i", range(n))
    levels = g.levels()
    assert levels[0] == 0
    assert levels[-1] == n - 1
    rs = core.RunState(g)
    pop = rs.pop
    done = rs.done
    expected = 0
    while (v := pop()) >= 0:
        assert v == expected
        expected += 1
        done(v)
    assert expected == n
    assert counts(rs) == (0, 0, n, n, True)


# -- RunState: construction ---------------------------------------------------


def test_core_has_every_name_of_the_stub(core: ModuleType) -> None:
    stub = Path(core.__file__).with_name("_core.pyi")
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, ast.AnnAssign):
            assert isinstance(node.target, ast.Name)
            assert hasattr(core, node.target.id), node.target.id
        elif isinstance(node, ast.ClassDef):
            cls = getattr(core, node.name)
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    assert hasattr(cls, member.name), f"{node.name}.{member.name}"


def test_state_constants_exist_and_are_distinct(core: ModuleType) -> None:
    values = [getattr(core, name) for name in STATE_CONSTANTS]
    assert all(type(v) is int and 0 <= v < 256 for v in values)
    assert len(set(values)) == len(values)


def test_runstate_needs_a_graph(core: ModuleType) -> None:
    with pytest.raises(TypeError):
        core.RunState("not a graph")


def test_runstate_remembers_its_graph(core: ModuleType) -> None:
    g = graph(core, 2, (0, 1))
    assert core.RunState(g).graph is g


def test_runstate_needs_one_key_per_node(core: ModuleType) -> None:
    g = graph(core, 3, (0, 1))
    with pytest.raises(ValueError, match=re.escape("keys must have one value per node (3), got 4")):
        core.RunState(g, [0.0] * 4)


def test_runstate_keys_must_not_be_nan(core: ModuleType) -> None:
    g = graph(core, 3, (0, 1))
    with pytest.raises(ValueError, match="keys must not be NaN"):
        core.RunState(g, [0.0, float("nan"), 1.0])


@pytest.mark.parametrize("option", ["all_done", "targets"])
@pytest.mark.parametrize("node", [-1, 3])
def test_runstate_node_out_of_range(core: ModuleType, option: str, node: int) -> None:
    g = graph(core, 3, (0, 1))
    with pytest.raises(IndexError, match=f"node {node} is out of range for a graph of 3 nodes"):
        core.RunState(g, **{option: [0, node]})


def test_calling_init_again_cannot_corrupt_a_compiled_graph_or_runstate(
    compiled_core: ModuleType,
) -> None:
    """The compiled Graph and RunState are made by ``__cinit__``, once.

    A second ``__init__`` used to make new arrays for the new graph but keep
    the old, smaller ones for what it was not given (keys, all_done): the
    next pop read past them and crashed. Now it changes nothing, and an
    object cannot be made without its arguments.
    """
    code = (
        f"import {compiled_core.__name__} as core\n"
        "small = core.Graph(2, [0], [1])\n"
        "big = core.Graph(3_000_000, [], [])\n"
        "rs = core.RunState(small, [0.0, 1.0], all_done=[1])\n"
        "rs.__init__(big)\n"
        "small.__init__(3_000_000, [], [])\n"
        "print(small.n, rs.graph is small, rs.pop(), rs.pop())\n"
        "for cls in (core.Graph, core.RunState):\n"
        "    try:\n"
        "        cls.__new__(cls)\n"
        "    except TypeError:\n"
        "        print('TypeError')\n"
    )
    result = run_isolated(code)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.splitlines() == ["2 True 0 -1", "TypeError", "TypeError"]


def test_runstates_over_one_graph_are_independent(core: ModuleType) -> None:
    g = graph(core, 3, (0, 1), (1, 2))
    first = core.RunState(g)
    second = core.RunState(g, lifo=True)
    assert drain(first) == [0, 1, 2]
    assert second.states() == bytes([core.READY, core.PENDING, core.PENDING])
    assert drain(second) == [0, 1, 2]


# -- RunState: order of the ready heap ----------------------------------------


def test_fifo_order(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 5, (0, 3), (1, 4)))
    assert rs.pop_all() == [0, 1, 2]
    rs.done(1)
    rs.done(0)
    assert rs.pop_all() == [4, 3]  # in the order they became ready, not by index


def test_lifo_order(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 5, (0, 3), (1, 4)), lifo=True)
    assert rs.pop() == 2  # ties among the first ready: highest index first
    assert rs.pop() == 1
    rs.done(1)
    assert rs.pop() == 4  # the newest ready goes first
    assert rs.pop() == 0
    rs.done(0)
    rs.done(4)
    assert rs.pop_all() == [3]


def test_lifo_order_of_nodes_ready_at_once(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 4, (0, 1), (0, 2), (0, 3)), lifo=True)
    rs.pop()
    assert rs.done(0) == 3
    assert rs.pop_all() == [3, 2, 1]


def test_keys_order_with_ties_by_ready_order(core: ModuleType) -> None:
    g = core.Graph(4, [], [])
    assert core.RunState(g, [1.0, 0.0, 1.0, 0.0]).pop_all() == [1, 3, 0, 2]
    assert core.RunState(g, [1.0, 0.0, 1.0, 0.0], lifo=True).pop_all() == [3, 1, 2, 0]


def test_keys_order_newly_ready_nodes(core: ModuleType) -> None:
    # 0 -> 3 and 1 -> 2; keys put 2 and 3 ahead of the still-ready 4.
    rs = core.RunState(graph(core, 5, (0, 3), (1, 2)), array("d", [0, 0, -1, -1, 2]))
    assert rs.pop() == 0
    assert rs.pop() == 1
    rs.done(0)
    rs.done(1)
    assert rs.pop_all() == [3, 2, 4]


def test_keys_may_be_ints(core: ModuleType) -> None:
    assert core.RunState(core.Graph(3, [], []), (2, 1, 3)).pop_all() == [1, 0, 2]


def test_pop_marked_pops_the_marked_ready_nodes_and_leaves_the_others_in_place(
    core: ModuleType,
) -> None:
    rs = core.RunState(graph(core, 6, (0, 5)))
    assert rs.pop_marked(bytearray([0, 1, 0, 1])) == [1, 3]  # 4 and 5: past the marks
    assert rs.running == 2 and rs.ready == 3
    assert rs.pop_all() == [0, 2, 4]  # as they were
    rs.push_back_unmarked([1, 3, 0], bytearray([0, 1]))  # 1 stays popped
    assert rs.running == 3 and rs.ready == 2
    assert rs.pop_all() == [0, 3]
    with pytest.raises(ValueError):
        rs.push_back_unmarked([5], bytearray())  # pending, not popped
    assert rs.pop_marked(bytearray()) == []


def test_pop_returns_minus_one_when_nothing_is_ready(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 2, (0, 1)))
    assert rs.pop() == 0
    assert rs.pop() == -1
    assert rs.pop_all() == []


def test_push_back_keeps_its_place(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 4, (1, 3)))
    assert rs.pop() == 0
    assert rs.pop() == 1
    rs.done(1)
    rs.push_back(0)
    assert rs.state(0) == core.READY
    assert counts(rs) == (3, 0, 1, 4, False)
    assert rs.pop_all() == [0, 2, 3]


def test_requeue_goes_to_the_back(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 4, (1, 3)))
    assert rs.pop() == 0
    assert rs.pop() == 1
    rs.done(1)
    rs.requeue(0)
    assert rs.state(0) == core.READY
    assert counts(rs) == (3, 0, 1, 4, False)
    assert rs.pop_all() == [2, 3, 0]


def test_push_back_and_requeue_under_lifo(core: ModuleType) -> None:
    rs = core.RunState(core.Graph(3, [], []), lifo=True)
    assert rs.pop() == 2
    assert rs.pop() == 1
    rs.push_back(2)
    rs.requeue(1)
    assert rs.pop_all() == [1, 2, 0]


def test_push_back_and_requeue_respect_keys(core: ModuleType) -> None:
    rs = core.RunState(core.Graph(3, [], []), [0.0, 1.0, 1.0])
    assert rs.pop_all() == [0, 1, 2]
    rs.requeue(1)
    rs.requeue(0)
    rs.push_back(2)
    assert rs.pop_all() == [0, 2, 1]


# -- RunState: ending nodes ---------------------------------------------------


def test_done_returns_how_many_became_ready(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 4, (0, 1), (0, 2), (1, 3), (2, 3)))
    rs.pop()
    assert rs.done(0) == 2
    assert rs.pop_all() == [1, 2]
    assert rs.done(1) == 0
    assert rs.done(2) == 1
    assert rs.state(0) == core.SUCCEEDED
    assert rs.state(3) == core.READY


def test_done_many(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 4, (0, 3), (1, 3), (2, 3)))
    assert rs.done_many([]) == 0
    assert rs.pop_all() == [0, 1, 2]
    assert rs.done_many(iter([2, 0, 1])) == 1
    assert rs.pop_all() == [3]


def test_done_many_ends_nodes_in_turn_until_one_is_not_running(core: ModuleType) -> None:
    rs = core.RunState(core.Graph(3, [], []))
    assert rs.pop_all() == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot mark done node 0: it is succeeded"):
        rs.done_many([1, 0, 0, 2])
    assert rs.states() == bytes([core.SUCCEEDED, core.SUCCEEDED, core.RUNNING])


def one_node_in_each_state(core: ModuleType) -> Any:
    """A run whose nodes 0..7 are ready, pending, running, succeeded, failed, skipped,
    cancelled and excluded."""
    g = graph(core, 8, (2, 1), (4, 5))
    keys = [9.0] + [0.0] * 7
    rs = core.RunState(g, keys, targets=range(7))
    assert [rs.pop() for _ in range(4)] == [2, 3, 4, 6]
    rs.done(3)
    assert rs.fail(4) == [5]
    assert rs.cancel(6) == []
    return rs


def test_states(core: ModuleType) -> None:
    rs = one_node_in_each_state(core)
    states = rs.states()
    assert type(states) is bytes
    assert list(states) == [
        core.READY,
        core.PENDING,
        core.RUNNING,
        core.SUCCEEDED,
        core.FAILED,
        core.SKIPPED,
        core.CANCELLED,
        core.EXCLUDED,
    ]
    assert [rs.state(v) for v in range(8)] == list(states)
    assert counts(rs) == (1, 1, 4, 7, False)


@pytest.mark.parametrize("node", [-1, 8])
@pytest.mark.parametrize(
    "action", ["state", "push_back", "requeue", "done", "fail", "cancel", "done_many"]
)
def test_runstate_node_out_of_range_raises_index_error(
    core: ModuleType, action: str, node: int
) -> None:
    rs = one_node_in_each_state(core)
    before = rs.states()
    arg: Any = [node] if action == "done_many" else node
    with pytest.raises(IndexError, match=f"node {node} is out of range for a graph of 8 nodes"):
        getattr(rs, action)(arg)
    assert rs.states() == before


NOT_RUNNING = {
    0: "ready",
    1: "pending",
    3: "succeeded",
    4: "failed",
    5: "skipped",
    6: "cancelled",
    7: "excluded",
}
VERBS = {"push_back": "push back", "requeue": "requeue", "done": "mark done", "fail": "fail"}


@pytest.mark.parametrize("action", list(VERBS))
@pytest.mark.parametrize("node", list(NOT_RUNNING))
def test_ending_a_node_that_is_not_running_raises_value_error(
    core: ModuleType, action: str, node: int
) -> None:
    rs = one_node_in_each_state(core)
    before = (rs.states(), counts(rs))
    message = f"cannot {VERBS[action]} node {node}: it is {NOT_RUNNING[node]}"
    with pytest.raises(ValueError, match=message):
        getattr(rs, action)(node)
    assert (rs.states(), counts(rs)) == before


@pytest.mark.parametrize("node", [3, 4, 5, 6, 7])
def test_cancel_a_node_that_ended_or_is_excluded_raises_value_error(
    core: ModuleType, node: int
) -> None:
    rs = one_node_in_each_state(core)
    before = (rs.states(), counts(rs))
    with pytest.raises(ValueError, match=f"cannot cancel node {node}: it is {NOT_RUNNING[node]}"):
        rs.cancel(node)
    assert (rs.states(), counts(rs)) == before


def test_fail_skips_dependents_breadth_first(core: ModuleType) -> None:
    # 0 -> 1 -> 3 -> 5 and 0 -> 2 -> 4; 6 and 7 -> 4 are not reached through 0.
    g = graph(core, 8, (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (7, 4))
    rs = core.RunState(g)
    assert rs.pop() == 0
    assert rs.fail(0) == [1, 2, 3, 4, 5]
    assert rs.state(0) == core.FAILED
    assert all(rs.state(v) == core.SKIPPED for v in range(1, 6))
    assert counts(rs) == (2, 0, 6, 8, False)
    assert drain(rs) == [6, 7]
    assert rs.finished


def test_fail_skips_a_dependent_at_once_while_its_other_parents_run(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 3, (0, 2), (1, 2)))
    assert rs.pop_all() == [0, 1]
    assert rs.fail(0) == [2]
    assert rs.done(1) == 0
    assert rs.finished


def test_fail_stops_at_all_done_nodes(core: ModuleType) -> None:
    # 0 -> 1 -> 2 -> 3 with 2 all_done.
    g = graph(core, 4, (0, 1), (1, 2), (2, 3))
    rs = core.RunState(g, all_done=[2])
    rs.pop()
    assert rs.fail(0) == [1]
    assert rs.state(2) == core.READY  # all its parents ended: 1 was skipped
    assert rs.state(3) == core.PENDING
    assert counts(rs) == (1, 0, 2, 4, False)
    assert drain(rs) == [2, 3]


def test_all_done_node_waits_for_every_parent(core: ModuleType) -> None:
    # 0 -> 3, 1 -> 3, 2 -> 3 with 3 all_done; the parents end in three ways.
    rs = core.RunState(graph(core, 4, (0, 3), (1, 3), (2, 3)), all_done=[3])
    assert rs.pop_all() == [0, 1, 2]
    assert rs.fail(0) == []
    assert rs.cancel(1) == []
    assert rs.state(3) == core.PENDING
    assert rs.done(2) == 1
    assert rs.pop() == 3


def test_all_done_node_behind_a_skipped_one_waits_for_its_other_parents(
    core: ModuleType,
) -> None:
    # 0 -> 1 -> 3, 2 -> 3 with 3 all_done.
    rs = core.RunState(graph(core, 4, (0, 1), (1, 3), (2, 3)), all_done=[3])
    assert rs.pop_all() == [0, 2]
    assert rs.fail(0) == [1]
    assert rs.state(3) == core.PENDING
    assert rs.done(2) == 1
    assert rs.pop() == 3


def test_all_done_node_has_default_dependents(core: ModuleType) -> None:
    # 0 -> 1 -> 2 with 1 all_done: 2 is skipped only if 1 itself does not succeed.
    rs = core.RunState(graph(core, 3, (0, 1), (1, 2)), all_done=[1])
    rs.pop()
    rs.fail(0)
    assert rs.pop() == 1
    assert rs.fail(1) == [2]
    assert rs.finished


def test_cancel_a_pending_node(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 4, (0, 1), (1, 2), (1, 3)), all_done=[3])
    assert rs.pop() == 0
    assert rs.cancel(1) == [2]
    assert rs.state(1) == core.CANCELLED
    assert rs.state(3) == core.READY  # its only parent has ended, though 0 still runs
    assert counts(rs) == (1, 1, 2, 4, False)
    assert rs.done(0) == 0


def test_cancel_a_ready_node(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 3, (0, 2)))
    assert counts(rs) == (2, 0, 0, 3, False)
    assert rs.cancel(0) == [2]
    assert rs.state(0) == core.CANCELLED
    assert counts(rs) == (1, 0, 2, 3, False)
    assert rs.pop_all() == [1]


def test_cancel_a_running_node(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 3, (0, 1), (0, 2)), all_done=[2])
    assert rs.pop() == 0
    assert rs.cancel(0) == [1]
    assert rs.state(0) == core.CANCELLED
    assert rs.state(2) == core.READY
    assert counts(rs) == (1, 0, 2, 3, False)
    with pytest.raises(ValueError, match="cannot mark done node 0: it is cancelled"):
        rs.done(0)


def teardown_run(core: ModuleType) -> Any:
    """0 and 1 running, 2 ready behind a key, 3 pending below 0, 4 teardown (all_done)
    below 0, 1 and 3."""
    g = graph(core, 5, (0, 3), (0, 4), (1, 4), (3, 4))
    rs = core.RunState(g, [0.0, 0.0, 1.0, 0.0, 0.0], all_done=[4])
    assert rs.pop() == 0
    assert rs.pop() == 1
    return rs


def test_cancel_pending_cancels_every_pending_and_ready_node(core: ModuleType) -> None:
    rs = teardown_run(core)
    assert rs.cancel_pending(keep_all_done=False) == [2, 3, 4]
    assert counts(rs) == (0, 2, 3, 5, False)
    assert rs.pop() == -1
    assert rs.done(0) == 0
    assert rs.fail(1) == []
    assert rs.finished


def test_cancel_pending_keeps_all_done_nodes(core: ModuleType) -> None:
    rs = teardown_run(core)
    assert rs.cancel_pending(keep_all_done=True) == [2, 3]
    assert rs.state(4) == core.PENDING
    assert counts(rs) == (0, 2, 2, 5, False)
    assert rs.done(0) == 0
    assert rs.fail(1) == []
    assert rs.state(4) == core.READY
    assert drain(rs) == [4]
    assert rs.finished


def test_cancel_pending_makes_kept_nodes_ready(core: ModuleType) -> None:
    # 0 -> 1 -> 2 with 2 all_done: cancelling 1 leaves 2 with no parent to wait for.
    rs = core.RunState(graph(core, 3, (0, 1), (1, 2)), all_done=[2])
    rs.pop()
    rs.done(0)
    assert rs.cancel_pending(keep_all_done=True) == [1]
    assert rs.state(2) == core.READY
    assert rs.pop_all() == [2]


def test_cancel_pending_twice_cancels_nothing_more(core: ModuleType) -> None:
    rs = teardown_run(core)
    rs.cancel_pending(keep_all_done=False)
    assert rs.cancel_pending(keep_all_done=False) == []
    assert counts(rs) == (0, 2, 3, 5, False)


# -- RunState: targets --------------------------------------------------------


def test_targets_run_only_with_their_dependencies(core: ModuleType) -> None:
    # 0 -> 1 -> 2, 0 -> 3, 4 alone.
    g = graph(core, 5, (0, 1), (1, 2), (0, 3))
    rs = core.RunState(g, targets=[2])
    assert rs.total == 3
    assert rs.states() == bytes([core.READY, core.PENDING, core.PENDING] + [core.EXCLUDED] * 2)
    assert rs.pop() == 0
    assert rs.done(0) == 1
    assert drain(rs) == [1, 2]
    assert counts(rs) == (0, 0, 3, 3, True)
    assert rs.state(3) == rs.state(4) == core.EXCLUDED


def test_targets_bring_in_every_ancestor(core: ModuleType) -> None:
    # 0 -> 1 -> 2 and 3 -> 2: targets 0 and 2 take 1 and 3 along.
    g = graph(core, 5, (0, 1), (1, 2), (3, 2))
    rs = core.RunState(g, targets=[0, 2])
    assert rs.total == 4
    assert rs.state(4) == core.EXCLUDED
    assert drain(rs) == [0, 3, 1, 2]


def test_targets_accept_any_iterable_with_repeats(core: ModuleType) -> None:
    g = graph(core, 3, (0, 1))
    rs = core.RunState(g, targets=iter([1, 0, 1]))
    assert rs.total == 2
    assert drain(rs) == [0, 1]


def test_no_targets_run_nothing(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 2, (0, 1)), targets=[])
    assert counts(rs) == (0, 0, 0, 0, True)
    assert rs.pop() == -1
    assert rs.states() == bytes([core.EXCLUDED] * 2)


# -- RunState: counts ---------------------------------------------------------


def test_counts_through_a_run(core: ModuleType) -> None:
    rs = core.RunState(graph(core, 4, (0, 1), (0, 2), (1, 3)))
    assert counts(rs) == (1, 0, 0, 4, False)
    assert rs.pop() == 0
    assert counts(rs) == (0, 1, 0, 4, False)
    rs.done(0)
    assert counts(rs) == (2, 0, 1, 4, False)
    assert rs.pop_all() == [1, 2]
    assert counts(rs) == (0, 2, 1, 4, False)
    rs.requeue(2)
    assert counts(rs) == (1, 1, 1, 4, False)
    assert rs.fail(1) == [3]
    assert counts(rs) == (1, 0, 3, 4, False)
    rs.pop()
    rs.done(2)
    assert counts(rs) == (0, 0, 4, 4, True)

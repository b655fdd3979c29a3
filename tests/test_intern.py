"""The interner of trio_dag.graphlib, ``_native._intern`` and its twin ``_native._intern_py``.

Each test runs on each interner (and, where a run is involved, on each core);
the compiled interner must number nodes, record edges and fail exactly as the
twin does.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_dag._native import _intern_py

UNHASHABLE: Any = {}

# Nodes that are equal across types (1, 1.0, True) share a number, as dict keys do.
NODES = st.one_of(st.integers(0, 6), st.sampled_from(["a", "b", 1.0, True, (1, 2)]))
MAYBE_UNHASHABLE = st.one_of(NODES, st.just(UNHASHABLE))
CALLS = st.lists(
    st.lists(st.tuples(MAYBE_UNHASHABLE, st.lists(MAYBE_UNHASHABLE, max_size=4)), max_size=4),
    max_size=6,
)


def state(interner: Any) -> tuple[list[tuple[Any, int]], list[int], list[int], int]:
    """What an interner holds: its index, its edges, its node count."""
    n, sources, targets = interner.edges()
    return list(interner.index.items()), list(sources), list(targets), n


def outcome(interner: Any, pairs: list[tuple[Any, list[Any]]]) -> tuple[str, str]:
    try:
        interner.add(pairs)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "returned", ""


@given(calls=CALLS)
def test_interners_agree_with_the_twin(
    interner: ModuleType, calls: list[list[tuple[Any, list[Any]]]]
) -> None:
    """The same add() calls, some failing: the same results, errors and state after each."""
    theirs, mine = _intern_py.Interner[Any](), interner.Interner(len(calls))
    for pairs in calls:
        assert outcome(mine, pairs) == outcome(theirs, pairs)
        assert state(mine) == state(theirs)
    assert mine.freeze() == theirs.freeze()


@pytest.mark.parametrize("size_hint", [0, -5, 10**6, 2**70])
def test_any_int_is_a_size_hint(interner: ModuleType, size_hint: int) -> None:
    """Like the twin, the compiled interner takes any int (it presizes at most a bounded dict)."""
    interner_ = interner.Interner(size_hint)
    interner_.add([("b", ["a"])])
    assert interner_.edges()[0] == 2


@pytest.mark.parametrize("size_hint", [1.5, "3", None])
def test_a_size_hint_must_be_an_int(interner: ModuleType, size_hint: Any) -> None:
    with pytest.raises(TypeError):
        interner.Interner(size_hint)


def test_edges_are_int_arrays_graph_takes(interner: ModuleType) -> None:
    interner_ = interner.Interner()
    interner_.add([("c", ["a", "b"]), ("d", ["c", "a"])])
    n, sources, targets = interner_.edges()
    assert n == 4
    assert isinstance(sources, array) and sources.typecode == "i"
    assert isinstance(targets, array) and targets.typecode == "i"
    assert (list(sources), list(targets)) == ([1, 2, 0, 1], [0, 0, 3, 3])
    assert interner_.freeze() == ["c", "a", "b", "d"]
    assert interner_.edges() == (4, array("i"), array("i"))


@pytest.mark.parametrize(
    "pairs",
    [
        [(UNHASHABLE, [1])],
        [(5, [6, UNHASHABLE, 7])],
        [(5, [6]), (7, [1, 8]), (UNHASHABLE, [])],
        [(5, [6]), (7, [1, 8]), (9, [UNHASHABLE])],
    ],
    ids=["first node", "a predecessor", "a later node", "a later predecessor"],
)
def test_a_failed_add_changes_nothing(interner: ModuleType, pairs: list[Any]) -> None:
    """Whatever it added before the unhashable node is dropped; numbering goes on unbroken."""
    interner_ = interner.Interner()
    interner_.add([(1, [2]), (3, [])])
    before = state(interner_)
    with pytest.raises(TypeError, match="unhashable"):
        interner_.add(pairs)
    assert state(interner_) == before
    interner_.add([(4, [2])])
    assert dict(interner_.index) == {1: 0, 2: 1, 3: 2, 4: 3}
    assert interner_.freeze() == [1, 2, 3, 4]


def test_an_add_stopped_by_any_exception_changes_nothing(interner: ModuleType) -> None:
    def predecessors() -> Iterator[int]:
        yield from (4, 5)
        raise KeyboardInterrupt

    interner_ = interner.Interner()
    interner_.add([(1, [2])])
    before = state(interner_)
    with pytest.raises(KeyboardInterrupt):
        interner_.add([(3, [2, 6]), (7, predecessors()), (8, [])])
    assert state(interner_) == before


def frozen_run(core: ModuleType, interner: ModuleType, pairs: list[Any]) -> tuple[Any, Any]:
    """An interner with *pairs* added, and a run of *core* over its graph, as prepare() makes."""
    interner_ = interner.Interner()
    interner_.add(pairs)
    run = core.RunState(core.Graph(*interner_.edges()))
    interner_.freeze()
    return interner_, run


def test_take_ready_gives_nodes_and_done_batch_takes_them_back(
    core: ModuleType, interner: ModuleType
) -> None:
    interner_, run = frozen_run(core, interner, [("c", ["a", "b"]), ("d", ["c"])])
    batch = interner_.take_ready(run)
    assert batch == ("a", "b")
    assert interner_.take_ready(run) == ()
    assert not interner_.done_batch(run, batch)  # not the last batch taken
    assert run.running == 2
    run.done(interner_.index["a"])
    run.done(interner_.index["b"])
    batch = interner_.take_ready(run)
    assert batch == ("c",)
    assert interner_.done_batch(run, batch)
    assert not interner_.done_batch(run, batch)  # forgotten once done
    assert interner_.take_ready(run) == ("d",)
    assert not interner_.done_batch(run, ("c",))
    assert interner_.done_batch(run, ())  # what the failed call left: nothing taken
    assert run.running == 1


def test_done_batch_of_a_node_done_since_raises_the_cores_error(
    core: ModuleType, interner: ModuleType
) -> None:
    interner_, run = frozen_run(core, interner, [("c", ["a", "b"])])
    batch = interner_.take_ready(run)
    run.done(interner_.index["b"])
    with pytest.raises(ValueError, match=r"^cannot mark done node 2: it is succeeded$"):
        interner_.done_batch(run, batch)
    assert run.state(interner_.index["a"]) == core.SUCCEEDED


def test_take_ready_never_reads_past_the_nodes(core: ModuleType, interner: ModuleType) -> None:
    """A run over more nodes than were numbered (a node's hash re-entered the sorter)."""
    interner_ = interner.Interner()
    interner_.add([(1, [])])
    interner_.freeze()
    run = core.RunState(core.Graph(3, [], []))
    with pytest.raises(IndexError):
        interner_.take_ready(run)

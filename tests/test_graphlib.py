"""trio_dag.graphlib, the drop-in graphlib, held to the standard library with each core.

CPython's own ``test.test_graphlib`` runs against ours; Hypothesis drives ours
and the standard library side by side on random graphs; the rest pins down
each behaviour and each documented difference. Sorters run on each core with
each interner: the compiled interner also works on the twin core.
"""

from __future__ import annotations

import collections
import graphlib
import importlib.util
import io
import itertools
import os
import types
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_dag
from trio_dag import _native
from trio_dag import graphlib as ours


@contextmanager
def on_core(core: ModuleType, interner: ModuleType) -> Iterator[None]:
    """Make trio_dag.graphlib build its sorters on *interner* and *core* inside the block."""
    with mock.patch.object(ours, "_core", core), mock.patch.object(ours, "_intern", interner):
        yield


@pytest.fixture
def sorter_core(core: ModuleType, interner: ModuleType) -> Iterator[ModuleType]:
    """The ``core`` fixture, with trio_dag.graphlib on it and on *interner* for the test."""
    with on_core(core, interner):
        yield core


# -- CPython's own tests ------------------------------------------------------------


def load_cpython_tests() -> ModuleType:
    """CPython's ``test.test_graphlib``, loaded afresh under a private name, on ours.

    Loading from the file leaves ``sys.modules`` alone; the module's global
    ``graphlib`` is then replaced, so every test in it calls trio_dag.graphlib.
    """
    try:
        found = importlib.util.find_spec("test.test_graphlib")
    except ModuleNotFoundError:
        found = None
    if found is None or found.origin is None:
        pytest.skip("CPython's test package is not installed with this interpreter")
    spec = importlib.util.spec_from_file_location("_cpython_test_graphlib", found.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.graphlib is graphlib
    module.graphlib = ours
    return module


def write_graphlib_shim(directory: Path, core: ModuleType, interner: ModuleType, log: Path) -> None:
    """A ``graphlib.py`` in *directory* that makes ``import graphlib`` give ours, on *core*
    and *interner*.

    It first steps aside (trio_dag itself imports the standard library's
    graphlib), then puts ours in its place in ``sys.modules``, which is what
    ``import`` returns, and appends a line to *log* to show that it ran.
    """
    (directory / "graphlib.py").write_text(
        "import sys\n"
        f"sys.path.remove({str(directory)!r})\n"
        "del sys.modules[__name__]\n"
        f"import {core.__name__} as core\n"
        f"import {interner.__name__} as interner\n"
        "import trio_dag.graphlib as ours\n"
        "ours._core = core\n"
        "ours._intern = interner\n"
        f"with open({str(log)!r}, 'a') as log:\n"
        "    log.write('trio_dag.graphlib\\n')\n"
        "sys.modules[__name__] = ours\n"
    )


def test_cpython_test_graphlib_passes(
    sorter_core: ModuleType,
    interner: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every test of CPython's test_graphlib passes against trio_dag.graphlib.

    ``test_static_order_does_not_change_with_the_hash_seed`` runs ``import
    graphlib`` in two child interpreters, which copy our environment: a
    ``graphlib.py`` first on their PYTHONPATH makes that import ours, on the
    same core and interner, and the log it writes shows that both children used it.
    """
    tests = load_cpython_tests()
    log = tmp_path / "imports.log"
    write_graphlib_shim(tmp_path, sorter_core, interner, log)
    root = Path(trio_dag.__file__).resolve().parent.parent
    path = [str(tmp_path), str(root)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))

    stream = io.StringIO()
    suite = unittest.TestLoader().loadTestsFromModule(tests)
    result = unittest.TextTestRunner(stream=stream, verbosity=2).run(suite)

    report = stream.getvalue()
    assert result.wasSuccessful(), report
    assert result.testsRun > 0, report
    assert not result.skipped, report
    assert log.read_text().splitlines() == ["trio_dag.graphlib"] * 2, report


# -- side by side with the standard library ------------------------------------------

NODES = st.integers(0, 9)
UNKNOWN = 99  # never added

# (node, predecessors) for each add() call; predecessors repeat freely.
adds = st.lists(st.tuples(NODES, st.lists(NODES, max_size=4)), max_size=12)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What *call* did: its result, or the type and message of what it raised."""
    try:
        return "returned", call()
    except Exception as exc:
        return type(exc).__name__, str(exc)


def assert_is_cycle(cycle: list[int], calls: list[tuple[int, list[int]]]) -> None:
    """*cycle* closes, and each node in it is a predecessor of the next."""
    edges = {(p, node) for node, preds in calls for p in preds}
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert (a, b) in edges


def build(module: ModuleType, calls: list[tuple[int, list[int]]]) -> Any:
    ts = module.TopologicalSorter()
    for node, preds in calls:
        ts.add(node, *preds)
    return ts


@given(calls=adds, data=st.data())
def test_matches_the_standard_library_step_by_step(
    core: ModuleType,
    interner: ModuleType,
    calls: list[tuple[int, list[int]]],
    data: st.DataObject,
) -> None:
    """Random add() calls, then random get_ready(), done() and is_active() calls,
    good and bad, then a drain, on ours and on the standard library: the same
    cycle verdict, the same first batch, the same set in every later batch, the
    same errors."""
    with on_core(core, interner):
        theirs, mine = build(graphlib, calls), build(ours, calls)
        try:
            theirs.prepare()
        except graphlib.CycleError:
            with pytest.raises(graphlib.CycleError) as raised:
                mine.prepare()
            assert raised.value.args[0] == "nodes are in a cycle"
            assert_is_cycle(raised.value.args[1], calls)
        else:
            mine.prepare()
        known = sorted({n for node, preds in calls for n in (node, *preds)})
        first = True
        out: list[int] = []
        got: tuple[int, ...] = ()
        ops = ["get_ready", "done", "done", "done_batch", "is_active", "add"]
        for _ in range(40):
            op = data.draw(st.sampled_from(ops))
            if op == "get_ready":
                ready = theirs.get_ready()
                got = mine.get_ready()
                if first:  # the nodes ready at prepare() come in the same order
                    assert got == ready
                    first = False
                assert sorted(got) == sorted(ready)
                out += ready
            elif op == "done_batch":  # done(*ready), possibly not the last batch any more
                assert outcome(partial(mine.done, *got)) == outcome(partial(theirs.done, *got))
            elif op == "done":
                pool = st.sampled_from([*out, *known, UNKNOWN])
                nodes = data.draw(st.lists(pool, max_size=4))
                assert outcome(partial(mine.done, *nodes)) == outcome(partial(theirs.done, *nodes))
            elif op == "is_active":
                assert mine.is_active() == theirs.is_active()
                assert bool(mine) == bool(theirs)
            else:
                assert outcome(partial(mine.add, 1)) == outcome(partial(theirs.add, 1))
        for node in out:  # finish what is still out
            assert outcome(partial(mine.done, node)) == outcome(partial(theirs.done, node))
        while theirs.is_active():  # and drain the rest
            ready = theirs.get_ready()
            got = mine.get_ready()
            assert sorted(got) == sorted(ready)
            theirs.done(*ready)
            mine.done(*got)
        assert not mine.is_active()


@given(calls=adds)
def test_static_order_matches_the_standard_library(
    core: ModuleType, interner: ModuleType, calls: list[tuple[int, list[int]]]
) -> None:
    """The same nodes, predecessors first, or CycleError for both."""
    with on_core(core, interner):
        try:
            expected = list(build(graphlib, calls).static_order())
        except graphlib.CycleError:
            with pytest.raises(graphlib.CycleError):
                list(build(ours, calls).static_order())
            return
        order = list(build(ours, calls).static_order())
    assert sorted(order) == sorted(expected)
    position = {node: i for i, node in enumerate(order)}
    for node, preds in calls:
        assert all(position[p] < position[node] for p in preds)


# -- the API, one behaviour at a time -------------------------------------------------


def test_public_names_are_the_standard_librarys() -> None:
    assert ours.__all__ == ["CycleError", "TopologicalSorter"]
    assert set(ours.__all__) == set(graphlib.__all__)


def test_cycle_error_is_the_standard_librarys() -> None:
    assert ours.CycleError is graphlib.CycleError
    assert issubclass(ours.CycleError, ValueError)


def test_sorters_use_the_core_and_interner_impl_picks() -> None:
    assert ours._core is _native.BACKEND.core
    assert ours._intern is _native.BACKEND.intern


def test_prepare_builds_the_run_on_the_patched_core(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter({1: [2]})
    ts.prepare()
    assert isinstance(ts._run, sorter_core.RunState)


def test_get_ready_hands_out_nodes_in_batches(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter({"c": ["a", "b"], "d": ["c"]})
    ts.prepare()
    assert ts.get_ready() == ("a", "b")
    assert ts.get_ready() == ()
    ts.done("b", "a")
    assert ts.get_ready() == ("c",)
    ts.done("c")
    assert ts.get_ready() == ("d",)
    ts.done("d")
    assert not ts.is_active()
    assert not ts


def test_get_ready_lists_nodes_released_together_in_order_of_first_mention(
    sorter_core: ModuleType,
) -> None:
    """The documented difference in order: the standard library follows the edges."""
    for module, expected in [(ours, ("x", "y")), (graphlib, ("y", "x"))]:
        ts = module.TopologicalSorter()
        ts.add("x")
        ts.add("y", "a")
        ts.add("x", "a")
        ts.prepare()
        assert ts.get_ready() == ("a",)
        ts.done("a")
        assert ts.get_ready() == expected


def test_nodes_ready_at_prepare_come_in_order_of_first_mention(sorter_core: ModuleType) -> None:
    for module in (ours, graphlib):
        ts = module.TopologicalSorter({1: [5, 3], 2: [], 4: [3, 6]})
        ts.prepare()
        assert ts.get_ready() == (5, 3, 2, 6)


def test_duplicate_predecessors_count_once(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter()
    ts.add(1, 2, 2, 2)
    ts.add(1, 2)
    ts.prepare()
    assert ts.get_ready() == (2,)
    ts.done(2)
    assert ts.get_ready() == (1,)


def test_graph_values_may_be_any_iterable(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter({0: (n for n in [1, 2]), 3: {0}})
    assert list(ts.static_order()) == [1, 2, 0, 3]


def test_add_after_prepare_raises(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter[int]()
    ts.prepare()
    with pytest.raises(ValueError, match=r"^Nodes cannot be added after a call to prepare\(\)$"):
        ts.add(1)


def test_add_an_unhashable_node_changes_nothing(sorter_core: ModuleType) -> None:
    """The standard library would leave 3 added, waiting forever on 4 and {}."""
    ts = ours.TopologicalSorter[Any]()
    ts.add(1, 2)
    with pytest.raises(TypeError, match="unhashable"):
        ts.add(3, 4, {}, 5)
    with pytest.raises(TypeError, match="unhashable"):
        ts.add([], 2)
    ts.add(6)
    ts.prepare()
    assert ts.get_ready() == (2, 6)
    with pytest.raises(ValueError, match=r"^node 3 was not added using add\(\)$"):
        ts.done(3)


class Lenient(ours.TopologicalSorter[Any]):
    """Survives a graph that fails, to show what the failure left."""

    def __init__(self, graph: Any, error: type[BaseException]) -> None:
        with pytest.raises(error):
            super().__init__(graph)


def test_a_graph_that_fails_midway_leaves_the_sorter_empty(sorter_core: ModuleType) -> None:
    """Nodes 1 to 4 were added before the unhashable predecessor: none stays."""
    ts = Lenient({1: [2], 3: [4, {}, 5], 6: []}, TypeError)
    ts.add(7, 2)
    assert list(ts.static_order()) == [2, 7]


def test_a_graph_stopped_by_any_exception_leaves_the_sorter_empty(
    sorter_core: ModuleType,
) -> None:
    def predecessors() -> Iterator[int]:
        yield 4
        raise KeyboardInterrupt

    ts = Lenient({1: [2], 3: predecessors(), 6: []}, KeyboardInterrupt)
    ts.add(7)
    assert list(ts.static_order()) == [7]


def test_graph_may_be_any_object_with_items(sorter_core: ModuleType) -> None:
    class Items:
        def items(self) -> list[tuple[int, list[int]]]:
            return [(1, [2]), (3, [1])]

    assert list(ours.TopologicalSorter(Items()).static_order()) == [2, 1, 3]
    ordered = collections.OrderedDict([(1, [2]), (3, [1])])
    assert list(ours.TopologicalSorter(ordered).static_order()) == [2, 1, 3]


def test_constructor_calls_an_overriding_add(sorter_core: ModuleType) -> None:
    calls = []

    class Logged(ours.TopologicalSorter[int]):
        def add(self, node: int, *predecessors: int) -> None:
            calls.append((node, predecessors))
            super().add(node, *predecessors)

    ts = Logged({1: [2, 3], 2: []})
    assert calls == [(1, (2, 3)), (2, ())]
    assert list(ts.static_order()) == [2, 3, 1]


def test_prepare_twice_raises(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter[int]()
    ts.prepare()
    with pytest.raises(ValueError, match=r"^cannot prepare\(\) more than once$"):
        ts.prepare()


def test_prepare_on_a_cycle_raises_and_leaves_the_rest_ready(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter({"a": ["b"], "b": ["a"], "c": ["d"], "e": ["a"]})
    with pytest.raises(graphlib.CycleError) as raised:
        ts.prepare()
    assert raised.value.args == ("nodes are in a cycle", ["a", "b", "a"])
    assert ts.get_ready() == ("d",)
    ts.done("d")
    assert ts.get_ready() == ("c",)
    ts.done("c")
    assert ts.get_ready() == ()
    assert not ts.is_active()
    with pytest.raises(ValueError, match=r"^cannot prepare\(\) more than once$"):
        ts.prepare()


def test_self_loop_is_a_cycle(sorter_core: ModuleType) -> None:
    with pytest.raises(graphlib.CycleError) as raised:
        ours.TopologicalSorter({1: [1]}).prepare()
    assert raised.value.args[1] == [1, 1]


@pytest.mark.parametrize("method", ["get_ready", "is_active", "__bool__", "done"])
def test_calls_before_prepare_raise(method: str) -> None:
    ts = ours.TopologicalSorter({1: [2]})
    with pytest.raises(ValueError, match=r"^prepare\(\) must be called first$"):
        getattr(ts, method)()


def test_done_names_the_node_it_rejects(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter({"b": ["a"]})
    ts.prepare()
    with pytest.raises(ValueError, match=r"^node 'a' was not passed out \(still not ready\)$"):
        ts.done("a")
    with pytest.raises(ValueError, match=r"^node 'z' was not added using add\(\)$"):
        ts.done("z")
    assert ts.get_ready() == ("a",)
    ts.done("a")
    with pytest.raises(ValueError, match=r"^node 'a' was already marked done$"):
        ts.done("a")
    with pytest.raises(TypeError, match="unhashable"):
        ts.done({})


def test_done_marks_the_nodes_before_the_one_it_rejects(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter({"c": ["a", "b"]})
    ts.prepare()
    ts.get_ready()
    with pytest.raises(ValueError, match=r"^node 'a' was already marked done$"):
        ts.done("b", "a", "a")
    assert ts.get_ready() == ("c",)


def test_done_of_a_whole_batch_checks_it_was_not_done_before(sorter_core: ModuleType) -> None:
    ts = ours.TopologicalSorter({"c": ["a", "b"]})
    ts.prepare()
    ready = ts.get_ready()
    ts.done(ready[1])
    with pytest.raises(ValueError, match=r"^node 'b' was already marked done$"):
        ts.done(*ready)
    assert ts.get_ready() == ("c",)
    with pytest.raises(ValueError, match=r"^node 'a' was already marked done$"):
        ts.done("c", "a")
    assert not ts.is_active()


def test_static_order_raises_cycle_error_on_first_next(sorter_core: ModuleType) -> None:
    order = ours.TopologicalSorter({1: [2], 2: [1]}).static_order()
    with pytest.raises(graphlib.CycleError):
        next(order)


def test_class_getitem_gives_a_generic_alias() -> None:
    alias = ours.TopologicalSorter[str]
    assert type(alias) is types.GenericAlias
    assert alias.__origin__ is ours.TopologicalSorter
    assert alias.__args__ == (str,)
    assert isinstance(alias(), ours.TopologicalSorter)

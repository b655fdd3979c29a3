"""The snapshot: the columns it hands the loops, the one binder, and its one-way contract.

Binding tests take ``dag_core``, so each runs against both loops: the fast
loop binds a plain async task, the engine's general path binds an inline or
``all_done`` one, and ``Snapshot.bind`` is asked directly; all must agree.
"""

from __future__ import annotations

import ast
import pickle
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import outcome
import pytest
import trio
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag._snapshot import Columns, Snapshot

PACKAGE = Path(trio_dag.__file__).parent


class Pair(NamedTuple):
    x: Any
    y: Any


class SubPair(Pair):
    """A subclass of a namedtuple: rebuilt with ``_make``, keeps its type."""


class Row(tuple[Any, ...]):
    """A tuple subclass that is no namedtuple: rebuilt with ``Row(items)``."""


class Tagged(list[Any]):
    """A list subclass with an attribute the copy must keep."""

    tag = "class"


def tagged(*items: Any) -> Tagged:
    out = Tagged(items)
    out.tag = "instance"
    return out


def factory_dict(**items: Any) -> defaultdict[str, Any]:
    out: defaultdict[str, Any] = defaultdict(list)
    out.update(items)
    return out


# Each shape builds a task's (args, kwargs) from two values: called with the
# handles of tasks returning "A" and "B" it gives what the task is added
# with, called with "A" and "B" what the task must be called with.
Shape = Callable[[Any, Any], tuple[tuple[Any, ...], dict[str, Any]]]
SHAPES: dict[str, Shape] = {
    "nothing": lambda a, b: ((), {}),
    "plain": lambda a, b: ((1, "x", None), {}),
    "handles only": lambda a, b: ((a, b, a), {}),
    "handles and plain": lambda a, b: ((1, a, "x", b), {}),
    "plain kwargs": lambda a, b: ((), {"k": 1}),
    "handles and plain kwargs": lambda a, b: ((a, b), {"k": 1}),
    "handle in kwargs": lambda a, b: ((1,), {"k": a, "m": b}),
    "nested list": lambda a, b: (([a, 1, [b, [a]]],), {}),
    "nested tuple": lambda a, b: (((a, (b, 2)), 3), {}),
    "nested dict": lambda a, b: (({"k": a, "n": {"m": b, "o": 0}},), {}),
    "nested in kwargs": lambda a, b: ((), {"k": [a, {"z": (b,)}], "p": 5}),
    "namedtuple": lambda a, b: ((Pair(a, b),), {}),
    "namedtuple subclass": lambda a, b: ((SubPair(a, [b]),), {}),
    "tuple subclass": lambda a, b: ((Row([a, b, 1]),), {}),
    "list subclass": lambda a, b: ((tagged(a, 1, b),), {}),
    "OrderedDict": lambda a, b: ((OrderedDict(k=a, m=1),), {}),
    "defaultdict": lambda a, b: ((), {"d": factory_dict(k=b, m=a)}),
}


def typed(x: Any) -> Any:
    """*x* with the type of every container spelled out, to compare shapes exactly."""
    if isinstance(x, (list, tuple)):
        return (type(x), getattr(x, "tag", None), [typed(item) for item in x])
    if isinstance(x, dict):
        factory = getattr(x, "default_factory", None)
        return (type(x), factory, [(k, typed(v)) for k, v in x.items()])
    if isinstance(x, outcome.Value):
        return (outcome.Value, typed(x.value))
    if isinstance(x, outcome.Error):
        return (outcome.Error, type(x.error), str(x.error))
    return x


async def record(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def record_inline(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


async def give(value: str) -> str:
    return value


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
async def test_both_loops_and_the_general_path_bind_every_argument_shape_alike(
    dag_core: Any, autojump_clock: MockClock, shape: str
) -> None:
    build = SHAPES[shape]
    dag = trio_dag.DAG()
    a = dag.add(give, "A")
    b = dag.add(give, "B")
    args, kwargs = build(a, b)
    fast = dag.add(record, *args, kwargs=kwargs)
    slow = dag.add(record_inline, *args, kwargs=kwargs, run_in="inline")
    waits = dag.add(record, *args, kwargs=kwargs, after=[b])
    with trio.fail_after(5):
        report = await trio_dag.run(dag)
    want_args, want_kwargs = build("A", "B")
    want = typed((want_args, dict(want_kwargs)))
    snap = dag._freeze()
    outputs = [report[h] for h in dag]
    for task in (fast, slow, waits):
        got_args, got_kwargs = report[task]
        assert typed((got_args, dict(got_kwargs))) == want, task
        bound_args, bound_kwargs = snap.bind(task.index, outputs)
        assert typed((bound_args, dict(bound_kwargs))) == want, task


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
async def test_an_all_done_task_is_bound_with_the_outcomes_of_its_dependencies(
    dag_core: Any, autojump_clock: MockClock, shape: str
) -> None:
    async def fail() -> str:
        raise ValueError("boom")

    build = SHAPES[shape]
    dag = trio_dag.DAG()
    a = dag.add(give, "A")
    b = dag.add(fail)
    args, kwargs = build(a, b)
    teardown = dag.add(record, *args, kwargs=kwargs, trigger="all_done")
    with trio.fail_after(5):
        report = await trio_dag.run(dag, check=False)
    assert report.state(teardown) == TaskState.SUCCEEDED
    want_args, want_kwargs = build(outcome.Value("A"), outcome.Error(ValueError("boom")))
    got_args, got_kwargs = report[teardown]
    assert typed((got_args, dict(got_kwargs))) == typed((want_args, dict(want_kwargs)))


def test_columns_are_a_frozen_declared_type_shared_with_the_dag() -> None:
    dag = trio_dag.DAG()
    h = dag.add(give, "A")
    dag.add(record, h)
    snap = dag._freeze()
    cols = snap.columns
    assert type(cols) is Columns
    assert [f.name for f in attrs.fields(Columns)] == [
        "fns",
        "opts",
        "args",
        "kwargs",
        "off",
        "src",
        "where",
        "paths",
    ]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cols.fns = []  # type: ignore[misc]
    # Shared, not copied: a later add does not change what the snapshot reads.
    dag.add(give, "C")
    assert snap.n == 2
    assert snap.fn(1) is record
    assert cols.bind(1, ["A", None]) == (("A",), {})


def _private_reads(path: Path, names: set[str]) -> list[str]:
    """``name._attr`` reads in *path* where *name* is one of *names*."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and isinstance(node.value, ast.Name)
        and node.value.id in names
    ]


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("_snapshot.py", {"dag"}),
        ("_dependencies.py", {"dag"}),
        ("_loop_py.py", {"snap", "snapshot", "cols"}),
        ("_loop.pyx", {"snap", "snapshot", "cols"}),
    ],
)
def test_graph_modules_and_loops_read_nothing_private_of_the_dag_or_snapshot(
    module: str, names: set[str]
) -> None:
    # The data flows DAG -> snapshot -> loop one way: what a module needs is
    # passed in (Snapshot's arguments, scan_after's lookup, Columns).
    path = PACKAGE / module
    if not path.exists():  # moved with the native backend
        path = PACKAGE / "_native" / module
    source = path.read_text()
    if module.endswith(".pyx"):
        assert "snap._" not in source and "_snap._" not in source
        return
    assert _private_reads(path, names) == []
    if module == "_loop_py.py":
        assert "snap._" not in source


def test_snapshot_bind_names_the_task_whose_arguments_changed_after_add() -> None:
    dag = trio_dag.DAG()
    a = dag.add(give, "A")
    box = [a]
    t = dag.add(record, box, name="reader")
    box.clear()
    with pytest.raises(RuntimeError, match="'reader' were changed after it was added"):
        dag._freeze().bind(t.index, ["A", None])
    with pytest.raises(IndexError):
        dag._freeze().columns.bind(t.index, ["A", None])


def test_snapshot_is_built_from_what_the_dag_passes_in() -> None:
    dag = trio_dag.DAG()
    a = dag.add(give, "A", name="first")
    dag.add(record, a, trigger="all_done")
    snap = dag._freeze()
    assert isinstance(snap, Snapshot)
    assert snap.all_done.tolist() == [1]
    assert not snap.has_batched and not snap.has_uses
    assert snap.name(0) == "first"
    assert snap.index("first") == 0
    with pytest.raises(trio_dag.UnknownDependencyError) as info:
        snap.index("frist")
    assert "first" in str(info.value)


async def test_edge_positions_are_stored_only_for_tasks_mixing_handles_and_values(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # A task's arguments all handles (args holds their count), all plain
    # values, or nested (paths) imply where its data edges' handles sit;
    # only one mixing handles and values keeps positions, in where.
    dag = trio_dag.DAG()
    a = dag.add(give, "A")
    b = dag.add(give, "B")
    handles = dag.add(record, a, b, after=["x"])
    plain = dag.add(record, 1, 2, after=[a])
    mixed = dag.add(record, 1, b, 2, a, after=[a, "x"])
    nested = dag.add(record, [a], b, after=b)
    mapped = dag.map(record, [a, 5])
    dag.add(give, "X", name="x")
    assert dag._where == {mixed.index: (1, 3)}
    with trio.fail_after(5):
        report = await trio_dag.run(dag)
    assert report[handles] == (("A", "B"), {})
    assert report[plain] == ((1, 2), {})
    assert report[mixed] == ((1, "B", 2, "A"), {})
    assert report[nested] == ((["A"], "B"), {})
    assert [report[h] for h in mapped] == [(("A",), {}), ((5,), {})]
    # Data and after= edges keep their kinds in the exports: an edge is
    # order-only when no handle passes output along it.
    edges = {(dst, src): only for src, dst, only in dag._export()[1]}
    x = dag["x"].index
    assert edges[(handles.index, x)] and not edges[(handles.index, a.index)]
    assert edges[(plain.index, a.index)]
    assert not edges[(mixed.index, a.index)] and not edges[(mixed.index, b.index)]
    assert edges[(mixed.index, x)]
    assert not edges[(nested.index, b.index)] and not edges[(nested.index, a.index)]


def test_map_undoing_its_tasks_forgets_the_positions_of_those_added_meanwhile() -> None:
    dag = trio_dag.DAG()
    a = dag.add(give, "A")

    def items() -> Any:
        yield a
        dag.add(record, 1, a)  # the iterable adds a task of mixed arguments
        raise ValueError("items ran out")

    with pytest.raises(ValueError, match="items ran out"):
        dag.map(record, items())
    assert len(dag) == 1
    assert dag._where == {}
    mixed = dag.add(record, a, 2)
    assert dag._where == {mixed.index: (0,)}


def test_a_pickled_dag_keeps_and_extends_its_stored_positions() -> None:
    dag = trio_dag.DAG()
    a = dag.add(give, "A")
    dag.add(record, a, "x", name="mixed")
    copy_ = pickle.loads(pickle.dumps(dag))
    assert copy_._where == {1: (0,)}
    later = copy_.add(record, 1, copy_["mixed"], after=next(iter(copy_)))
    assert copy_._where == {1: (0,), 2: (1,)} and dag._where == {1: (0,)}
    report = trio_dag.run_sync(copy_)
    assert report[later] == ((1, (("A", "x"), {})), {})

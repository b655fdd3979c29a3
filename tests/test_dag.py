"""DAG and Handle: building, lookup, validation, waves, exports and the frozen snapshot."""

from __future__ import annotations

import copy
import functools
import gc
import graphlib
import math
import pickle
import re
import weakref
from types import ModuleType
from typing import Any, assert_type

import pytest

import trio_dag
from trio_dag import (
    DAG,
    CycleError,
    DuplicateTaskError,
    ForeignHandleError,
    GraphError,
    Handle,
    UnknownDependencyError,
    _native,
)
from trio_dag._handle import PyHandle
from trio_dag._options import TaskOptions
from trio_dag._snapshot import Snapshot


async def load(path: str) -> bytes:
    return path.encode()


def normalize(data: bytes) -> str:
    return data.decode()


def store(*items: object, **options: object) -> None:
    return None


def open_db() -> None:
    return None


def state(dag: DAG) -> tuple[Any, ...]:
    """Everything a DAG records, to check that a rejected call changed nothing."""
    return (
        list(dag._fns),
        list(dag._args),
        list(dag._opts),
        dict(dag._kwargs),
        dag._off.tolist(),
        dag._src.tolist(),
        dict(dag._where),
        dict(dag._paths),
        bytes(dag._named),
        dict(dag._index_of),
        set(dag._default_like),
        dict(dag._pending),
        dag._all_done.tolist(),
    )


def names(handles: Any) -> list[Any]:
    """Names of a list of handles, or of a list of lists of them."""
    return [names(h) if isinstance(h, list) else h.name for h in handles]


def spec_example() -> tuple[DAG, dict[str, Handle[Any]]]:
    """The graph of SPEC section 1."""
    dag = DAG()
    raw = dag.add(load, "corpus/a.txt", name="load-a")
    clean = dag.add(normalize, raw)
    vec = dag.add(normalize, clean, kwargs={"dim": 384}, retries=2, timeout=30, tags=("ml",))
    out = dag.add(store, [vec, clean], after=["open-db"], priority=5)
    db = dag.add(open_db, name="open-db")
    return dag, {"raw": raw, "clean": clean, "vec": vec, "out": out, "db": db}


# -- exports ------------------------------------------------------------------


def test_dag_and_handle_are_exported() -> None:
    assert trio_dag.DAG is DAG
    assert trio_dag.Handle is Handle


# -- add and handles ----------------------------------------------------------


def test_add_returns_a_handle_with_index_name_and_dag() -> None:
    dag = DAG()
    h = dag.add(load, "a.txt")
    assert (h.index, h.name, h.dag) == (0, "load-0", dag)
    assert h.dag is dag
    named = dag.add(load, "b.txt", name="load-b")
    assert (named.index, named.name) == (1, "load-b")
    assert len(dag) == 2


def test_default_names_are_the_function_name_and_the_index() -> None:
    dag = DAG()
    dag.add(open_db)
    dag.add(load, "x", name="custom")
    dag.add(open_db)
    dag.add(lambda: None)
    dag.add(functools.partial(store, 1))
    dag.add(print)
    assert [h.name for h in dag] == [
        "open_db-0",
        "custom",
        "open_db-2",
        "<lambda>-3",
        "store-4",
        "print-5",
    ]


def test_default_name_of_a_callable_object_is_its_class_name() -> None:
    class Job:
        def __call__(self) -> None:
            return None

    dag = DAG()
    assert dag.add(Job()).name == "Job-0"


def test_the_same_graph_built_twice_gets_the_same_names() -> None:
    first, _ = spec_example()
    second, _ = spec_example()
    assert [h.name for h in first] == [h.name for h in second]


def test_add_is_typed_by_the_return_type_of_fn() -> None:
    dag = DAG()
    raw = dag.add(load, "a.txt")
    assert_type(raw, Handle[bytes])
    text = dag.add(normalize, raw)
    assert_type(text, Handle[str])
    assert_type(dag.map(load, ["a", "b"]), list[Handle[bytes]])


def test_handle_is_immutable() -> None:
    h = DAG().add(open_db)
    with pytest.raises(AttributeError, match="immutable"):
        h.foo = 1
    with pytest.raises(AttributeError):
        h._index = 3
    with pytest.raises(AttributeError):
        del h._index
    with pytest.raises(AttributeError):
        h.index = 3  # type: ignore[misc]


def test_handles_are_equal_by_dag_and_index() -> None:
    dag, other = DAG(), DAG()
    a = dag.add(open_db)
    b = dag.add(open_db)
    x = other.add(open_db)
    assert a == dag["open_db-0"] == Handle(dag, 0)
    assert hash(a) == hash(dag["open_db-0"])
    assert a != b
    assert a != x  # same index, another DAG
    assert a != 0
    assert len({a, b, x, dag["open_db-0"]}) == 3


def test_handle_repr_shows_name_and_index() -> None:
    dag = DAG()
    dag.add(open_db)
    assert repr(dag.add(load, "x", name="load-x")) == "<Handle 'load-x' (task 1)>"


def test_handle_copies_and_pickles() -> None:
    dag = DAG()
    h = dag.add(open_db, name="db")
    assert copy.copy(h) == h
    dag2, h2 = pickle.loads(pickle.dumps((dag, h)))
    assert h2.dag is dag2 and h2.name == "db" and len(dag2) == 1


def test_handle_is_the_backends_type_shown_as_trio_dag_handle() -> None:
    # One class for the process: the compiled twin when the compiled backend
    # was chosen at import, else the pure-Python one; public either way.
    if _native.BACKEND.name == "cython":
        assert Handle is _native.BACKEND.build.Handle
    else:
        assert Handle is PyHandle
    assert (Handle.__module__, Handle.__qualname__, Handle.__name__) == (
        "trio_dag",
        "Handle",
        "Handle",
    )
    alias = Handle[bytes]
    assert alias.__origin__ is Handle and alias.__args__ == (bytes,)
    assert type(DAG().add(open_db)) is Handle


@pytest.mark.parametrize("cls", [Handle, PyHandle], ids=["Handle", "PyHandle"])
def test_both_handle_types_behave_alike(cls: Any) -> None:
    dag, other = DAG(), DAG()
    dag.add(open_db, name="db")
    dag.add(load, "x")
    a, b = cls(dag, 0), cls(dag, 1)
    assert (a.dag, a.index, a.name, b.name) == (dag, 0, "db", "load-1")
    assert repr(a) == "<Handle 'db' (task 0)>"
    assert a == cls(dag, 0) and not a != cls(dag, 0)
    assert a != b and a != cls(other, 0) and a != 0 and not a == 0
    assert hash(a) == hash(cls(dag, 0)) == hash((id(dag), 0))
    assert copy.copy(a) == a and copy.deepcopy(b).name == "load-1"
    for attempt in ("a.foo = 1", "a._index = 3", "del a._index", "a.index = 3", "a.dag = other"):
        with pytest.raises(AttributeError, match="immutable"):
            exec(attempt)
    if cls is Handle:
        assert pickle.loads(pickle.dumps(a)).name == "db"


def test_a_cycle_through_a_handle_is_collected() -> None:
    # A handle refers to its DAG, and a DAG may refer to its handles: those
    # in kwargs=, and any a task's function or argument holds. Handle is a
    # GC-tracked type, so the cyclic GC frees such a DAG.
    def build() -> weakref.ref[DAG]:
        dag = DAG()
        first = dag.add(open_db)

        def later(**_: object) -> str:
            return first.name

        dag.add(later, kwargs={"x": [first]}, after=first)
        dag.map(store, [first, first])
        trio_dag.run_sync(dag)
        return weakref.ref(dag)

    ref = build()
    gc.collect()
    assert ref() is None


def test_iteration_gives_handles_in_insertion_order() -> None:
    dag, h = spec_example()
    assert list(dag) == [h["raw"], h["clean"], h["vec"], h["out"], h["db"]]


def test_lookup_by_name() -> None:
    dag, h = spec_example()
    assert dag["load-a"] == h["raw"]
    assert dag["normalize-1"] == h["clean"]
    assert dag[h["vec"]] == h["vec"]
    assert "open-db" in dag and "normalize-2" in dag and h["raw"] in dag
    for missing in ["load-0", "normalize-01", "normalize-3", "normalize-", "store-1", "x", 0]:
        assert missing not in dag
    assert DAG().add(open_db) not in dag


def test_unknown_name_is_a_key_error_with_a_suggestion() -> None:
    dag, _ = spec_example()
    with pytest.raises(KeyError, match="no task is named 'open-bd'; did you mean 'open-db'"):
        dag["open-bd"]
    with pytest.raises(KeyError, match="no task is named 'zzzzzz'"):
        dag["zzzzzz"]
    with pytest.raises(TypeError, match="Handle or its name"):
        dag[3]  # type: ignore[index]


def test_default_names_are_found_without_being_stored() -> None:
    dag = DAG()
    for _ in range(1000):
        dag.add(open_db)
    assert not dag._named and not dag._index_of
    assert dag["open_db-999"].index == 999
    assert "open_db-1000" not in dag
    assert "open_db-٣" not in dag  # a non-ASCII digit


def test_len_and_repr() -> None:
    dag, _ = spec_example()
    assert len(dag) == 5
    assert repr(dag) == "<trio_dag.DAG with 5 tasks>"


# -- dependencies in arguments ------------------------------------------------


def test_dependencies_come_from_args_kwargs_and_nested_containers() -> None:
    dag = DAG()
    a, b, c, d, e = (dag.add(open_db) for _ in range(5))
    t = dag.add(store, a, [1, (b, {"k": [c]})], kwargs={"x": d, "y": {"z": (e,)}})
    assert dag.dependencies(t) == (a, b, c, d, e)
    assert all(dag.dependents(h) == (t,) for h in (a, b, c, d, e))


def test_dependencies_include_after_and_come_once_each_in_insertion_order() -> None:
    dag = DAG()
    a, b, c = (dag.add(open_db) for _ in range(3))
    t = dag.add(store, c, c, [a, c], after=[b, "open_db-0", c])
    assert dag.dependencies(t) == (a, b, c)
    assert dag.dependencies(a) == ()
    assert dag.dependents(c) == (t,)
    assert dag.dependencies("store-3") == (a, b, c)


def test_after_takes_a_single_handle_or_name() -> None:
    dag = DAG()
    a = dag.add(open_db, name="a")
    b = dag.add(open_db, after=a)
    c = dag.add(open_db, after="a")
    assert dag.dependencies(b) == dag.dependencies(c) == (a,)


def test_after_names_may_point_forward() -> None:
    dag = DAG()
    t = dag.add(store, after=["later", "open_db-2"])
    later = dag.add(open_db, name="later")
    db = dag.add(open_db)
    assert dag.dependencies(t) == (later, db)
    assert dag.dependents(later) == (t,)
    assert names(dag.topological_order()) == ["later", "open_db-2", "store-0"]


def test_dependencies_of_a_task_with_an_unknown_after_name_raise() -> None:
    dag = DAG()
    t = dag.add(store, after="nope")
    with pytest.raises(UnknownDependencyError):
        dag.dependencies(t)
    with pytest.raises(UnknownDependencyError):
        dag.dependents(t)


def test_a_deeply_nested_handle_is_found_without_recursion() -> None:
    dag = DAG()
    a = dag.add(open_db)
    nested: Any = a
    for _ in range(20_000):
        nested = [nested]
    t = dag.add(store, nested)
    assert dag.dependencies(t) == (a,)
    args, _ = dag._freeze().bind(t.index, ["OUT", None])
    inner = args[0]
    for _ in range(20_000):
        inner = inner[0]
    assert inner == "OUT"


def test_an_argument_that_contains_itself_is_rejected() -> None:
    dag = DAG()
    loop: list[Any] = [1]
    loop.append(loop)
    before = state(dag)
    with pytest.raises(ValueError, match=r"contains itself \(a list at args\[0\]\[1\]\)"):
        dag.add(store, loop)
    assert state(dag) == before


def test_a_container_shared_by_two_arguments_is_walked_for_both() -> None:
    dag = DAG()
    a = dag.add(open_db)
    shared = [a]
    t = dag.add(store, shared, {"again": shared})
    assert dag._freeze().bind(t.index, ["A", None]) == ((["A"], {"again": ["A"]}), {})


# -- bind: handles replaced by outputs ---------------------------------------


def bind(dag: DAG, task: Handle[Any], outputs: list[Any]) -> tuple[Any, Any]:
    return dag._freeze().bind(task.index, outputs)


def test_bind_without_handles_returns_the_stored_arguments_themselves() -> None:
    dag = DAG()
    args = ("a.txt", 3)
    t = dag.add(store, *args, kwargs={"k": 1})
    bound_args, bound_kwargs = bind(dag, t, [None])
    assert bound_args == args
    assert bound_kwargs == {"k": 1}
    assert bind(dag, t, [None])[1] is bound_kwargs
    empty = dag.add(open_db, after=t)
    assert bind(dag, empty, [None, None]) == ((), {})


def test_bind_replaces_top_level_handles() -> None:
    dag = DAG()
    a, b = dag.add(open_db), dag.add(open_db)
    only_handles = dag.add(store, b, a, b)
    mixed = dag.add(store, "x", a, 2, b, after=[only_handles])
    outputs = ["A", "B", "C", "D"]
    assert bind(dag, only_handles, outputs) == (("B", "A", "B"), {})
    assert bind(dag, mixed, outputs) == (("x", "A", 2, "B"), {})
    assert dag._args[only_handles.index] == 3  # no tuple kept for handle-only arguments
    assert dag._paths == {}


def test_bind_rebuilds_only_the_containers_that_hold_handles() -> None:
    dag = DAG()
    a, b = dag.add(open_db), dag.add(open_db)
    untouched = {"big": list(range(5))}
    args = (1, [a, (b, 2)], untouched)
    kwargs: dict[str, Any] = {"k": {"x": (a,), "y": "plain"}, "plain": untouched}
    t = dag.add(store, *args, kwargs=kwargs)
    bound_args, bound_kwargs = bind(dag, t, ["A", "B", None])
    assert bound_args == (1, ["A", ("B", 2)], untouched)
    assert type(bound_args[1][1]) is tuple
    assert bound_args[2] is untouched
    assert bound_kwargs == {"k": {"x": ("A",), "y": "plain"}, "plain": untouched}
    assert bound_kwargs["plain"] is untouched
    # The user's arguments still hold the handles.
    assert args[1] == [a, (b, 2)] and kwargs["k"]["x"] == (a,)


def test_bind_handles_kwargs_values_that_are_handles() -> None:
    dag = DAG()
    a = dag.add(open_db)
    t = dag.add(store, a, kwargs={"db": a, "n": 1})
    assert bind(dag, t, ["A", None]) == (("A",), {"db": "A", "n": 1})


def test_bind_does_not_change_the_dag() -> None:
    dag = DAG()
    a = dag.add(open_db)
    t = dag.add(store, a, [a], kwargs={"k": (a,)})
    before = state(dag)
    bind(dag, t, ["A", "B"])
    bind(dag, a, ["A", "B"])
    assert state(dag) == before


def test_kwargs_are_copied_when_added() -> None:
    dag = DAG()
    kwargs = {"k": 1}
    t = dag.add(store, kwargs=kwargs)
    kwargs["k"] = 2
    assert bind(dag, t, [None])[1] == {"k": 1}


def test_bind_reports_a_container_changed_after_add() -> None:
    dag = DAG()
    a = dag.add(open_db)
    items = [a]
    t = dag.add(store, items)
    items.clear()
    with pytest.raises(RuntimeError, match="arguments of task 'store-1' were changed"):
        bind(dag, t, ["A", None])


# -- map ------------------------------------------------------------------------


def test_map_adds_one_task_per_item() -> None:
    dag = DAG()
    srcs = dag.map(load, ["a", "b", "c"], tags=("io",))
    assert [h.name for h in srcs] == ["load-0", "load-1", "load-2"]
    assert all(dag._opts[h.index].tags == ("io",) for h in srcs)
    outs = dag.map(normalize, srcs, after="load-0")
    assert [dag.dependencies(h) for h in outs] == [
        (srcs[0],),
        (srcs[0], srcs[1]),
        (srcs[0], srcs[2]),
    ]
    assert bind(dag, outs[1], ["A", "B", "C", None, None, None]) == (("B",), {})
    assert dag.map(load, []) == []


def test_map_rejects_name() -> None:
    with pytest.raises(TypeError, match="default names"):
        DAG().map(load, ["a"], name="x")


def test_map_is_all_or_nothing() -> None:
    dag, other = DAG(), DAG()
    dag.add(open_db, name="db", after="later")
    dag.add(open_db, kwargs={"k": 1}, trigger="all_done")
    foreign = other.add(open_db)
    before = state(dag)
    items = ["a", [dag["db"]], {"x": foreign}]
    with pytest.raises(ForeignHandleError):
        dag.map(store, items, kwargs={"z": 1}, after=["later", "db"], trigger="all_done")
    assert state(dag) == before
    with pytest.raises(ValueError, match="retries"):
        dag.map(store, ["a"], retries=-1)
    assert state(dag) == before


# -- bad input ----------------------------------------------------------------


BAD_ADDS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"fn": 3}, TypeError, "fn must be callable"),
    ({"fn": "load"}, TypeError, "fn must be callable"),
    ({"retries": -1}, ValueError, "retries must be >= 0"),
    ({"retries": 1.5}, TypeError, "retries must be an int"),
    ({"timeout": 0}, ValueError, "timeout must be finite and > 0"),
    ({"timeout": -1}, ValueError, "timeout must be finite and > 0"),
    ({"timeout": math.inf}, ValueError, "None for no timeout"),
    ({"timeout": "1"}, TypeError, "timeout must be a number"),
    ({"cost": 0}, ValueError, "cost must be finite and > 0"),
    ({"cost": -2.0}, ValueError, "cost must be finite and > 0"),
    ({"cost": math.nan}, ValueError, "cost must be finite"),
    ({"cost": "1"}, TypeError, "cost must be a number"),
    # Any other non-empty str names an executor, which the run checks (test_executors.py).
    ({"run_in": ""}, ValueError, "unknown run_in ''"),
    ({"run_in": 1}, ValueError, "unknown run_in 1"),
    ({"run_in": "thread", "fn": load}, ValueError, "load is async"),
    ({"run_in": "inline", "fn": load}, ValueError, "load is async"),
    ({"trigger": "any"}, ValueError, "unknown trigger 'any'"),
    ({"priority": 1.5}, TypeError, "priority must be an int"),
    ({"priority": True}, TypeError, "priority must be an int"),
    # Equal to a default, but not of its kind (issue 14, defect 12).
    ({"priority": False}, TypeError, "priority must be an int"),
    ({"retries": False}, TypeError, "retries must be an int"),
    ({"cost": True}, TypeError, "cost must be a number"),
    ({"retry_delay": False}, TypeError, "retry_delay must be a number"),
    # Too large for a float (defects 4 and 12).
    ({"cost": 10**400}, ValueError, "cost must be finite and > 0"),
    ({"timeout": 10**400}, ValueError, "timeout must be finite and > 0"),
    ({"retry_delay": 10**400}, ValueError, "retry_delay must be finite and >= 0"),
    ({"retries": 3, "retry_backoff": 1e200, "retry_delay": 1}, ValueError, "too large for a float"),
    ({"tags": "io"}, TypeError, "tags must be an iterable of str"),
    ({"tags": 3}, TypeError, "tags must be an iterable of str"),
    ({"tags": ["io", 3]}, TypeError, "tags must be str"),
    ({"uses": ["gpu"]}, TypeError, "uses= must be a mapping"),
    ({"uses": {1: 1}}, TypeError, "uses= keys must be resource names"),
    ({"uses": {"gpu": 0}}, ValueError, r"uses\['gpu'\] must be finite and > 0"),
    ({"uses": {"gpu": "1"}}, TypeError, r"uses\['gpu'\] must be a number"),
    ({"uses": {"gpu": math.inf}}, ValueError, r"uses\['gpu'\] must be finite"),
    ({"retry_delay": -1}, ValueError, "retry_delay must be finite and >= 0"),
    ({"retry_backoff": 0}, ValueError, "retry_backoff must be finite and > 0"),
    ({"retry_on": ValueError("x")}, TypeError, "retry_on must be an exception class"),
    ({"retry_on": (ValueError, int)}, TypeError, "retry_on must be an exception class"),
    ({"retry_on": KeyboardInterrupt}, ValueError, "KeyboardInterrupt, which is not an Exception"),
    ({"name": 3}, TypeError, "name must be a str"),
    ({"name": ""}, ValueError, "name must not be empty"),
    ({"name": "db"}, DuplicateTaskError, "task 1 already has that name"),
    ({"name": "load-0"}, DuplicateTaskError, "task 0 already has that name"),
    ({"kwargs": [("a", 1)]}, TypeError, "kwargs= must be a mapping"),
    ({"kwargs": {1: 1}}, TypeError, "kwargs= keys must be str"),
    ({"after": 3}, TypeError, "after= must be a handle, a task name, or an iterable"),
    ({"after": [3]}, TypeError, "after= holds 3"),
    ({"after": [""]}, TypeError, "after= holds ''"),
    ({"args": (1, "FOREIGN")}, ForeignHandleError, "belongs to another DAG"),
    ({"args": ([{"k": ("FOREIGN",)}],)}, ForeignHandleError, "belongs to another DAG"),
    ({"kwargs": {"x": "FOREIGN"}}, ForeignHandleError, "belongs to another DAG"),
    ({"after": "FOREIGN"}, ForeignHandleError, "belongs to another DAG"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_ADDS)
def test_bad_input_fails_at_once_and_changes_nothing(
    bad: dict[str, Any], error: type[Exception], message: str
) -> None:
    dag = DAG()
    dag.add(load, "x")
    dag.add(open_db, name="db", after="later")
    foreign = DAG().add(open_db)

    def swap(value: Any) -> Any:
        if value == "FOREIGN":
            return foreign
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    options = swap(bad)
    fn = options.pop("fn", store)
    args = options.pop("args", ())
    before = state(dag)
    with pytest.raises(error, match=message) as info:
        dag.add(fn, *args, **options)
    assert state(dag) == before
    if error is not DuplicateTaskError and "fn" not in bad and "name" not in bad:
        assert "task 'store-2'" in str(info.value)  # the name it would have had


def test_a_rejected_task_is_named_by_the_name_it_was_given() -> None:
    with pytest.raises(ValueError, match="task 'fetch': retries must be >= 0"):
        DAG().add(load, "x", name="fetch", retries=-1)


def test_foreign_handle_error_is_a_type_error() -> None:
    other = DAG().add(open_db)
    with pytest.raises(TypeError):
        DAG().add(store, other)
    with pytest.raises(ForeignHandleError):
        DAG().dependencies(other)


def test_a_name_may_not_take_a_default_name_of_a_later_task() -> None:
    dag = DAG()
    dag.add(open_db, name="open_db-1")
    before = state(dag)
    with pytest.raises(DuplicateTaskError, match="gets the default name 'open_db-1'") as info:
        dag.add(open_db)
    assert info.value.name == "open_db-1"
    assert state(dag) == before
    assert dag.add(open_db, name="other").index == 1
    assert dag.add(open_db).name == "open_db-2"


def test_a_task_named_like_a_default_name_owns_that_name() -> None:
    dag = DAG()
    dag.add(load, "x", name="open_db-1")
    dag.add(load, "y")  # load-1: its default name does not collide
    assert dag["open_db-1"].index == 0
    assert dag["load-1"].index == 1


def test_options_are_stored_and_defaults_are_shared() -> None:
    dag = DAG()
    plain = [dag.add(open_db) for _ in range(3)]
    assert len({id(dag._opts[h.index]) for h in plain}) == 1
    assert dag._opts[0] == TaskOptions()
    custom = dag.add(
        store,
        priority=3,
        cost=2,
        tags=["a", "b"],
        uses={"gpu": 1, "ram": 0.5},
        retries=2,
        retry_delay=0.5,
        retry_backoff=3,
        retry_on=KeyError,
        timeout=10,
        run_in="thread",
        trigger="all_done",
    )
    assert dag._opts[custom.index] == TaskOptions(
        priority=3,
        cost=2.0,
        tags=("a", "b"),
        uses=(("gpu", 1.0), ("ram", 0.5)),
        retries=2,
        retry_delay=0.5,
        retry_backoff=3.0,
        retry_on=(KeyError,),
        timeout=10.0,
        run_in="thread",
        trigger="all_done",
    )
    assert type(dag._opts[custom.index].cost) is float


def test_add_defaults_match_task_options_defaults() -> None:
    import inspect

    signature = inspect.signature(DAG.add)
    defaults = TaskOptions()
    for field in [
        "priority",
        "cost",
        "tags",
        "retries",
        "retry_delay",
        "retry_backoff",
        "retry_on",
        "timeout",
        "run_in",
        "trigger",
    ]:
        assert signature.parameters[field].default == getattr(defaults, field), field
    assert signature.parameters["uses"].default is None and defaults.uses == ()


# -- validation -----------------------------------------------------------------


def test_validate_accepts_the_spec_example() -> None:
    dag, _ = spec_example()
    dag.validate()


def test_unknown_after_name_is_reported_with_a_close_match() -> None:
    dag = DAG()
    dag.add(open_db, name="open-db")
    dag.add(store, after=["open-bd"], name="store")
    with pytest.raises(UnknownDependencyError) as info:
        dag.validate()
    err = info.value
    assert (err.task, err.missing, err.suggestion) == ("store", "open-bd", "open-db")
    assert "did you mean 'open-db'?" in str(err)
    assert isinstance(err, GraphError) and isinstance(err, ValueError)


def test_unknown_names_are_reported_before_cycles_in_insertion_order(dag_core: ModuleType) -> None:
    dag = DAG()
    dag.add(open_db, name="a", after="b")
    dag.add(open_db, name="b", after="a")
    dag.add(open_db, name="c", after="first-missing")
    dag.add(open_db, name="d", after="second-missing")
    with pytest.raises(UnknownDependencyError) as info:
        dag.validate()
    assert (info.value.task, info.value.missing) == ("c", "first-missing")
    with pytest.raises(UnknownDependencyError):
        dag.waves()
    dag.add(open_db, name="first-missing")
    dag.add(open_db, name="second-missing")
    with pytest.raises(CycleError):
        dag.validate()


def test_unknown_name_in_a_huge_dag_still_gets_a_suggestion_quickly() -> None:
    dag = DAG()
    dag.add(open_db, name="open-db")
    for _ in range(30_000):
        dag.add(load, "x")
    dag.add(store, after=["open-bd", "lod-29999"])
    with pytest.raises(UnknownDependencyError, match="did you mean 'open-db'"):
        dag.validate()
    dag.add(open_db, name="open-bd")
    with pytest.raises(UnknownDependencyError, match="did you mean 'load-29999'"):
        dag.validate()


def test_a_cycle_names_its_tasks_in_order(dag_core: ModuleType) -> None:
    dag = DAG()
    dag.add(open_db, name="a", after="c")
    dag.add(open_db, name="b", after="a")
    dag.add(open_db, name="c", after="b")
    dag.add(open_db, name="d", after="c")
    with pytest.raises(CycleError) as info:
        dag.validate()
    err = info.value
    assert err.cycle == ["a", "b", "c", "a"]
    assert "'a' -> 'b' -> 'c' -> 'a'" in str(err)
    assert isinstance(err, graphlib.CycleError)
    with pytest.raises(CycleError):
        dag.topological_order()


def test_a_task_after_itself_is_a_cycle(dag_core: ModuleType) -> None:
    dag = DAG()
    dag.add(open_db, name="x", after="x")
    with pytest.raises(CycleError) as info:
        dag.validate()
    assert info.value.cycle == ["x", "x"]


def test_a_cycle_of_100_000_tasks_is_reported_without_listing_them(dag_core: ModuleType) -> None:
    dag = DAG()
    n = 100_000
    h = dag.add(open_db, after=f"open_db-{n - 1}")
    for _ in range(n - 1):
        h = dag.add(open_db, h)
    with pytest.raises(CycleError) as info:
        dag.validate()
    err = info.value
    assert len(err.cycle) == n + 1
    assert err.cycle[0] == err.cycle[-1] == "open_db-0"
    assert err.cycle[1] == "open_db-1"
    assert len(str(err)) < 1000
    assert f"{n - 19} more tasks" in str(err)


@pytest.mark.slow
def test_a_chain_of_a_million_tasks_validates() -> None:
    dag = DAG()
    h: Handle[Any] = dag.add(open_db)
    for _ in range(999_999):
        h = dag.add(normalize, h)
    dag.validate()
    assert dag._freeze().graph.levels()[h.index] == 999_999


def test_a_long_chain_validates_without_recursion(dag_core: ModuleType) -> None:
    dag = DAG()
    h: Handle[Any] = dag.add(open_db)
    for _ in range(50_000):
        h = dag.add(normalize, h)
    dag.validate()
    waves = dag.waves()
    assert len(waves) == 50_001 and waves[-1] == [h]
    assert dag.topological_order()[-1] == h


# -- freezing -------------------------------------------------------------------


def test_freeze_is_cached_until_the_next_add() -> None:
    dag, _ = spec_example()
    snapshot = dag._freeze()
    assert dag._freeze() is snapshot
    dag.validate()
    assert dag._freeze() is snapshot
    dag.add(open_db)
    again = dag._freeze()
    assert again is not snapshot
    assert (snapshot.n, again.n) == (5, 6)


def test_a_snapshot_stays_valid_while_the_dag_grows(dag_core: ModuleType) -> None:
    dag = DAG()
    a = dag.add(open_db)
    b = dag.add(store, a, "x", trigger="all_done")
    snapshot = dag._freeze()
    graph_edges = [snapshot.graph.children(v) for v in range(2)]
    for _ in range(1000):
        c = dag.add(store, b, [a], kwargs={"k": b}, after="later", trigger="all_done")
    dag.add(open_db, name="later")
    dag.validate()
    assert snapshot.n == snapshot.graph.n == 2
    assert [snapshot.graph.children(v) for v in range(2)] == graph_edges
    assert snapshot.all_done.tolist() == [1]
    assert snapshot.bind(1, ["A", "B"]) == (("A", "x"), {})
    assert snapshot.priorities == [0, 0] and snapshot.costs.tolist() == [1.0, 1.0]
    with pytest.raises(UnknownDependencyError):
        snapshot.index(c)
    with pytest.raises(UnknownDependencyError):
        snapshot.index("later")


def test_snapshot_interface() -> None:
    dag, h = spec_example()
    snapshot = dag._freeze()
    assert isinstance(snapshot, Snapshot)
    assert snapshot.dag is dag and snapshot.n == 5
    assert sorted(snapshot.graph.parents(h["out"].index)) == [1, 2, 4]
    assert snapshot.fn(0) is load and snapshot.name(4) == "open-db"
    assert snapshot.handle(2) == h["vec"]
    assert snapshot.options(2).retries == 2 and snapshot.options(2).tags == ("ml",)
    assert snapshot.priorities == [0, 0, 0, 5, 0]
    assert snapshot.costs.tolist() == [1.0] * 5
    assert snapshot.all_done.tolist() == []
    assert snapshot.index("open-db") == 4 and snapshot.index(h["raw"]) == 0
    with pytest.raises(UnknownDependencyError, match="did you mean 'open-db'") as info:
        snapshot.index("open-bd")
    assert info.value.task is None
    with pytest.raises(ForeignHandleError):
        snapshot.index(DAG().add(open_db))
    assert snapshot.bind(h["out"].index, ["R", "C", "V", None, None]) == ((["V", "C"],), {})
    assert snapshot.bind(2, ["R", "C", None, None, None]) == (("C",), {"dim": 384})


def test_all_done_lists_the_teardown_tasks() -> None:
    dag = DAG()
    dag.add(open_db)
    dag.add(open_db, trigger="all_done")
    dag.add(open_db)
    dag.add(open_db, trigger="all_done")
    assert dag._freeze().all_done.tolist() == [1, 3]


# -- order and waves ----------------------------------------------------------------


def test_topological_order_and_waves_of_the_spec_example(dag_core: ModuleType) -> None:
    dag, _ = spec_example()
    order = names(dag.topological_order())
    assert order.index("load-a") < order.index("normalize-1") < order.index("normalize-2")
    assert order.index("open-db") < order.index("store-3")
    assert names(dag.waves()) == [
        ["load-a", "open-db"],
        ["normalize-1"],
        ["normalize-2"],
        ["store-3"],
    ]


def test_waves_of_an_empty_dag() -> None:
    dag = DAG()
    assert dag.waves() == [] and dag.topological_order() == []
    dag.validate()


def test_waves_put_a_task_after_its_longest_chain(dag_core: ModuleType) -> None:
    dag = DAG()
    a = dag.add(open_db)
    b = dag.add(normalize, a)
    c = dag.add(normalize, b)
    d = dag.add(store, a, c)
    e = dag.add(open_db, after=a)
    assert dag.waves() == [[a], [b, e], [c], [d]]


# -- exports ------------------------------------------------------------------------


def test_to_dot() -> None:
    dag, _ = spec_example()
    assert dag.to_dot() == (
        "digraph trio_dag {\n"
        "  node [shape=box];\n"
        '  t0 [label="load-a"];\n'
        '  t1 [label="normalize-1"];\n'
        '  t2 [label="normalize-2\\n[ml]"];\n'
        '  t3 [label="store-3"];\n'
        '  t4 [label="open-db"];\n'
        "  t0 -> t1;\n"
        "  t1 -> t2;\n"
        "  t1 -> t3;\n"
        "  t2 -> t3;\n"
        "  t4 -> t3 [style=dashed];\n"
        "}\n"
    )


def test_to_mermaid() -> None:
    dag, _ = spec_example()
    assert dag.to_mermaid() == (
        "flowchart TD\n"
        '    t0["load-a"]\n'
        '    t1["normalize-1"]\n'
        '    t2["normalize-2<br>[ml]"]\n'
        '    t3["store-3"]\n'
        '    t4["open-db"]\n'
        "    t0 --> t1\n"
        "    t1 --> t2\n"
        "    t1 --> t3\n"
        "    t2 --> t3\n"
        "    t4 -.-> t3\n"
    )


def test_an_edge_with_data_and_after_is_drawn_solid() -> None:
    dag = DAG()
    a = dag.add(open_db)
    dag.add(store, a, after=a)
    assert "t0 -> t1;" in dag.to_dot() and "dashed" not in dag.to_dot()
    assert "t0 --> t1" in dag.to_mermaid()


NASTY = ['a"b', "x -> y", "back\\slash", "new\nline", "cr\r\nlf", "#quot; <b>&`", "}{;[]"]

DOT_STRING = r'"(?:[^"\\\n]|\\.)*"'
DOT_LINE = re.compile(
    rf"^(digraph trio_dag \{{|  node \[shape=box\];|  t\d+ \[label={DOT_STRING}\];"
    r"|  t\d+ -> t\d+( \[style=dashed\])?;|\})$"
)


def unescape_dot(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text)


def test_to_dot_quotes_names_safely() -> None:
    dag = DAG()
    for name in NASTY:
        dag.add(open_db, name=name, tags=(name,))
    dot = dag.to_dot()
    labels = []
    for line in dot.splitlines():
        assert DOT_LINE.match(line), line
        if "label=" in line:
            labels.append(unescape_dot(line.split("label=", 1)[1][1:-3]))
    assert labels == [f"{n}\n[{n}]".replace("\r\n", "\n").replace("\r", "\n") for n in NASTY]


def test_to_mermaid_quotes_names_safely() -> None:
    dag = DAG()
    for name in NASTY:
        dag.add(open_db, name=name)
    lines = dag.to_mermaid().splitlines()
    assert lines[0] == "flowchart TD"
    assert len(lines) == 1 + len(NASTY)
    for k, line in enumerate(lines[1:]):
        match = re.fullmatch(rf'    t{k}\["([^"`<>&\n]*(?:<br>[^"`<>&\n]*)*)"\]', line)
        assert match, line
    assert lines[1] == '    t0["a#quot;b"]'
    assert lines[2] == '    t1["x -#gt; y"]'
    assert lines[6] == '    t5["#35;quot; #lt;b#gt;#amp;#96;"]'


def test_exports_are_deterministic() -> None:
    first, _ = spec_example()
    second, _ = spec_example()
    assert first.to_dot() == second.to_dot()
    assert first.to_mermaid() == second.to_mermaid()


def test_exports_need_every_after_name() -> None:
    dag = DAG()
    dag.add(open_db, after="nope")
    for export in (dag.to_dot, dag.to_mermaid):
        with pytest.raises(UnknownDependencyError):
            export()


def test_exports_draw_a_cycle() -> None:
    dag = DAG()
    dag.add(open_db, name="a", after="b")
    dag.add(open_db, name="b", after="a")
    assert "t1 -> t0 [style=dashed];" in dag.to_dot()
    assert "t0 -.-> t1" in dag.to_mermaid()


def test_a_graph_frozen_during_a_failed_map_is_not_reused(dag_core: ModuleType) -> None:
    # The compiled core's graph reads the DAG's edge arrays in place; map()
    # undoing a failed call removes edges from them. A graph (and snapshot)
    # made by the iterable in the meantime is dropped, and reading one kept
    # raises instead of reading edges that are gone.
    dag = DAG()
    first = dag.add(open_db)
    kept = []

    def items() -> Any:
        for _ in range(50):
            yield first
        dag.validate()
        kept.append(dag._graph())
        raise KeyError("stop")

    with pytest.raises(KeyError, match="stop"):
        dag.map(store, items())
    assert len(dag) == 1
    graph = kept[0]
    if type(graph).__module__.endswith("_core"):
        with pytest.raises(RuntimeError, match="have been removed"):
            graph.parents(50)
    else:
        assert graph.parents(50) == [0]
    for _ in range(60):
        dag.add(open_db)
    assert dag.dependencies(dag["open_db-55"]) == ()
    assert [len(wave) for wave in dag.waves()] == [61]

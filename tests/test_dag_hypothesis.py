"""Random DAGs built through the public API, checked against a plain reference.

Each test runs against both graph cores (the ``core`` fixture): the backend
of each is swapped into ``trio_dag._native`` for the duration of the example.
Handles are drawn inside every kind of container users pass: lists, tuples,
dicts, namedtuples and subclasses (found, and rebuilt as their own type), and
sets, frozensets, deques and dict keys (refused by ``add``).
"""

from __future__ import annotations

import collections
import graphlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_dag import DAG, CycleError, Handle, _native


def using(core: ModuleType) -> Any:
    """Make DAGs frozen inside the ``with`` block use the backend of *core*."""
    python = _native.python()
    return mock.patch.object(
        _native, "BACKEND", python if core is python.core else _native.compiled()
    )


def fetch(*args: Any, **kwargs: Any) -> None:
    return None


def parse(*args: Any, **kwargs: Any) -> None:
    return None


FNS = (fetch, parse)


@dataclass
class Plan:
    """A graph to build: per task its function, its name (None: default) and its
    dependencies, each with how it is given."""

    fns: list[int] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)
    deps: list[list[tuple[int, str]]] = field(default_factory=list)

    def name(self, i: int) -> str:
        given = self.names[i]
        return given if given is not None else f"{FNS[self.fns[i]].__name__}-{i}"

    def edges(self) -> set[tuple[int, int]]:
        return {(j, i) for i, deps in enumerate(self.deps) for j, _ in deps}


Point = collections.namedtuple("Point", "x y")


class Tagged(list[Any]):
    """A list subclass."""


class Row(tuple[Any, ...]):
    """A tuple subclass that is not a namedtuple."""


# Containers a handle may sit in, each wrapping one value x: the handle is
# found, and its output put in its place in a container of the same type.
WRAPS: dict[str, Callable[[Any], Any]] = {
    "list": lambda x: [1, [x]],
    "tuple": lambda x: (x, 2),
    "dict": lambda x: {"x": {"y": x}},
    "namedtuple": lambda x: Point(x, 2),
    "ordereddict": lambda x: collections.OrderedDict([("b", 1), ("a", x)]),
    "defaultdict": lambda x: collections.defaultdict(list, {"k": x}),
    "list-subclass": lambda x: Tagged([x, 3]),
    "tuple-subclass": lambda x: Row((4, x)),
}
# Hashable wrappers, which may go inside a set or a dict key.
HASHABLE: dict[str, Callable[[Any], Any]] = {
    "tuple": WRAPS["tuple"],
    "namedtuple": WRAPS["namedtuple"],
    "tuple-subclass": WRAPS["tuple-subclass"],
    "frozenset": lambda x: frozenset([x, 5]),
}
# Where a handle has no place for an output: add() refuses it.
REFUSED: dict[str, Callable[[Any], Any]] = {
    "set": lambda x: {x, 6},
    "frozenset": lambda x: frozenset([x]),
    "deque": lambda x: collections.deque([7, x]),
    "dict-key": lambda x: {x: 8},
}

HOW = ("arg", *WRAPS, "kwarg", "after-handle", "after-name")


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (namedtuple == tuple is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return (
            list(a) == list(b)
            and getattr(a, "default_factory", None) is getattr(b, "default_factory", None)
            and all(same(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def same_call(bound: tuple[Any, Any], expected: tuple[Any, Any]) -> bool:
    """``same`` for ``(args, kwargs)``; kwargs may be any mapping (bind shares a read-only one)."""
    return same(bound[0], expected[0]) and same(dict(bound[1]), expected[1])


@st.composite
def plans(draw: st.DrawFn, *, acyclic: bool) -> Plan:
    """A random plan. Acyclic plans rank the tasks at random and only depend on
    lower ranks, so dependencies often point to tasks added later (by name)."""
    n = draw(st.integers(0, 24))
    rank = draw(st.permutations(range(n)))
    plan = Plan()
    for i in range(n):
        plan.fns.append(draw(st.integers(0, 1)))
        plan.names.append(draw(st.sampled_from([None, None, f"t{i}", f'odd "{i}" -> x'])))
    for i in range(n):
        allowed = [j for j in range(n) if rank[j] < rank[i]] if acyclic else list(range(n))
        deps = []
        if allowed:
            for j in draw(st.lists(st.sampled_from(allowed), max_size=4)):
                # A task added later can only be named; an earlier one may also be
                # given by handle, anywhere in the arguments.
                how = draw(st.sampled_from(HOW)) if j < i else "after-name"
                deps.append((j, how))
        plan.deps.append(deps)
    return plan


def build(plan: Plan) -> tuple[DAG, list[tuple[tuple[Any, ...], dict[str, Any]]]]:
    """Build *plan* with DAG.add; also return each task's arguments with every
    handle replaced by ``("out", index)``, the reference for ``bind``."""
    dag = DAG()
    handles: list[Handle[Any]] = []
    expected = []
    for i, deps in enumerate(plan.deps):
        args: list[Any] = ["plain"]
        want: list[Any] = ["plain"]
        kwargs: dict[str, Any] = {}
        want_kwargs: dict[str, Any] = {}
        after: list[Any] = []
        for k, (j, how) in enumerate(deps):
            out = ("out", j)
            if how == "arg":
                args.append(handles[j])
                want.append(out)
            elif how in WRAPS:
                args.append(WRAPS[how](handles[j]))
                want.append(WRAPS[how](out))
            elif how == "kwarg":
                kwargs[f"k{k}"] = handles[j]
                want_kwargs[f"k{k}"] = out
            elif how == "after-handle":
                after.append(handles[j])
            else:
                after.append(plan.name(j))
        handles.append(
            dag.add(
                FNS[plan.fns[i]],
                *args,
                name=plan.names[i],
                kwargs=kwargs or None,
                after=after,
            )
        )
        expected.append((tuple(want), want_kwargs))
    return dag, expected


def reference_levels(plan: Plan) -> list[int]:
    """Longest chain of dependencies of each task, by repeated relaxation."""
    n = len(plan.deps)
    level = [0] * n
    for _ in range(n):
        for j, i in plan.edges():
            level[i] = max(level[i], level[j] + 1)
    return level


@given(plan=plans(acyclic=True))
def test_random_dags_order_waves_and_bind_match_the_reference(core: ModuleType, plan: Plan) -> None:
    with using(core):
        dag, expected = build(plan)
        n = len(plan.deps)
        edges = plan.edges()
        assert [h.name for h in dag] == [plan.name(i) for i in range(n)]
        assert all(dag[plan.name(i)].index == i for i in range(n))

        order = [h.index for h in dag.topological_order()]
        assert sorted(order) == list(range(n))
        position = {i: k for k, i in enumerate(order)}
        assert all(position[j] < position[i] for j, i in edges)

        levels = reference_levels(plan)
        waves = [[h.index for h in wave] for wave in dag.waves()]
        assert waves == [
            [i for i in range(n) if levels[i] == k] for k in range(max(levels, default=-1) + 1)
        ]

        for i in range(n):
            assert [h.index for h in dag.dependencies(dag[plan.name(i)])] == sorted(
                {j for j, t in edges if t == i}
            )
            assert [h.index for h in dag.dependents(dag[plan.name(i)])] == sorted(
                {t for j, t in edges if j == i}
            )

        snapshot = dag._freeze()
        outputs = [("out", i) for i in range(n)]
        for i in range(n):
            assert same_call(snapshot.bind(i, outputs), expected[i])


@given(plan=plans(acyclic=False))
def test_random_graphs_are_acyclic_exactly_when_graphlib_says_so(
    core: ModuleType, plan: Plan
) -> None:
    with using(core):
        dag, _ = build(plan)
        edges = plan.edges()
        sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
        for i in range(len(plan.deps)):
            sorter.add(i, *[j for j, t in edges if t == i])
        try:
            sorter.prepare()
        except graphlib.CycleError:
            acyclic = False
        else:
            acyclic = True
        try:
            dag.validate()
        except CycleError as err:
            assert not acyclic
            cycle = [dag[name].index for name in err.cycle]
            assert cycle[0] == cycle[-1]
            assert len(set(cycle)) == len(cycle) - 1
            assert all((cycle[k], cycle[k + 1]) in edges for k in range(len(cycle) - 1))
        else:
            assert acyclic


@st.composite
def placements(draw: st.DrawFn) -> tuple[list[str], str | None, list[str], bool]:
    """Where a handle goes: wrappers from the outside in, then maybe a refused
    container and hashable wrappers inside it; in a positional argument or kwargs."""
    outer = draw(st.lists(st.sampled_from(sorted(WRAPS)), max_size=4))
    refused = draw(st.none() | st.sampled_from(sorted(REFUSED)))
    inner = draw(st.lists(st.sampled_from(sorted(HASHABLE)), max_size=2)) if refused else []
    return outer, refused, inner, draw(st.booleans())


def place(x: Any, outer: list[str], refused: str | None, inner: list[str]) -> Any:
    for how in reversed(inner):
        x = HASHABLE[how](x)
    if refused is not None:
        x = REFUSED[refused](x)
    for how in reversed(outer):
        x = WRAPS[how](x)
    return x


@given(where=placements())
def test_a_handle_anywhere_is_a_dependency_or_refused(
    core: ModuleType, where: tuple[list[str], str | None, list[str], bool]
) -> None:
    outer, refused, inner, in_kwargs = where
    with using(core):
        dag = DAG()
        h = dag.add(fetch)
        value = place(h, outer, refused, inner)
        args, kwargs = ((), {"v": value}) if in_kwargs else ((value,), {})
        if refused is not None:
            with pytest.raises(TypeError, match=r"list or tuple|as a value"):
                dag.add(parse, "plain", *args, kwargs=kwargs)
            assert len(dag) == 1 and [t.name for t in dag] == ["fetch-0"]
            return
        t = dag.add(parse, "plain", *args, kwargs=kwargs)
        assert dag.dependencies(t) == (h,)
        want = place("OUT", outer, None, [])
        bound = dag._freeze().bind(t.index, ["OUT", None])
        expected = (("plain",), {"v": want}) if in_kwargs else (("plain", want), {})
        assert same_call(bound, expected)
        assert same(value, place(h, outer, None, []))  # the DAG's own copy is untouched

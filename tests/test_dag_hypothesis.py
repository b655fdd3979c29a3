"""Random DAGs built through the public API, checked against a plain reference.

Each test runs against both graph cores (the ``core`` fixture): the backend
of each is swapped into ``trio_dag._impl`` for the duration of the example.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from trio_dag import DAG, CycleError, Handle, _impl


def using(core: ModuleType) -> Any:
    """Make DAGs frozen inside the ``with`` block use the backend of *core*."""
    python = _impl.python()
    return mock.patch.object(_impl, "BACKEND", python if core is python.core else _impl.compiled())


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


HOW = ("arg", "list", "tuple", "dict", "kwarg", "after-handle", "after-name")


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
            elif how == "list":
                args.append([1, [handles[j]]])
                want.append([1, [out]])
            elif how == "tuple":
                args.append((handles[j], 2))
                want.append((out, 2))
            elif how == "dict":
                args.append({"x": {"y": handles[j]}})
                want.append({"x": {"y": out}})
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
            assert snapshot.bind(i, outputs) == expected[i]


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

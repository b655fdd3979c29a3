"""Graphs, task bodies and contenders of ``bench/overhead.py``, and their correctness check.

A contender builds its own structure from a :class:`Graph` (its build, timed
apart), then runs every task of it once, each after its dependencies, with
at most ``LIMIT`` bodies at once when it takes a limit (its run: the figure
that is compared). :func:`check` runs a contender on small graphs with bodies
that record what they see, so one that skips, repeats or reorders tasks is
caught before it is timed.
"""

from __future__ import annotations

import asyncio
import graphlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import import_module
from types import ModuleType
from typing import Any, Protocol

import trio

import trio_dag

# DAG._freeze takes its backend from ``_native.BACKEND``; tests/conftest.py's
# ``dag_core`` fixture patches the same attribute. A snapshot carries the
# backend it was frozen with, so the whole run follows.
from trio_dag import _native

LIMIT = 64
WIDTH = 100  # tasks per layer of the layered graph
FAN_IN = 4  # parents drawn per task of the layered graph

Parents = tuple[int, ...]
Body = Callable[..., Any]
BODY_KINDS = ("noop", "yield")

COMPILED_CORE = "trio_dag._native._core"
PYTHON_CORE = "trio_dag._native._core_py"


class Bodies(Protocol):
    """``bodies[i]`` is the body of task *i*: a list, or :class:`Same`."""

    def __getitem__(self, i: int, /) -> Body: ...


# --- graphs: task i's parents, always tasks before i ----------------------


def layered(n: int) -> Iterator[Parents]:
    """Layers of ``WIDTH``; each task past the first layer has ``FAN_IN`` parents
    drawn from the layer above by ``random.Random(0)`` (duplicates collapse):
    the graph of ``bench/core.py``."""
    rng = random.Random(0)
    for i in range(n):
        layer = i // WIDTH
        if layer == 0:
            yield ()
            continue
        base = (layer - 1) * WIDTH
        yield tuple(sorted({base + rng.randrange(WIDTH) for _ in range(FAN_IN)}))


def wide(n: int) -> Iterator[Parents]:
    """*n* independent tasks."""
    for _ in range(n):
        yield ()


def chain(n: int) -> Iterator[Parents]:
    """*n* tasks in a line."""
    for i in range(n):
        yield (i - 1,) if i else ()


def tree(n: int) -> Iterator[Parents]:
    """A binary reduction: task *i* is node ``n - 1 - i`` of a heap whose node
    *h* waits for nodes ``2h + 1`` and ``2h + 2``; the last task is the root."""
    for i in range(n):
        yield tuple(p for p in (2 * i - n - 1, 2 * i - n) if p >= 0)


SHAPES: dict[str, Callable[[int], Iterator[Parents]]] = {
    "layered": layered,
    "wide": wide,
    "chain": chain,
    "tree": tree,
}


@dataclass(frozen=True)
class Graph:
    """One benchmark graph, materialized: ``parents[i]`` are task *i*'s dependencies."""

    shape: str
    n: int
    parents: list[Parents]

    @classmethod
    def make(cls, shape: str, n: int) -> Graph:
        return cls(shape, n, list(SHAPES[shape](n)))

    def deps(self) -> dict[int, Parents]:
        """The dict of dependencies a graphlib user feeds ``TopologicalSorter``."""
        return dict(enumerate(self.parents))


# --- task bodies ------------------------------------------------------------


async def noop() -> None:
    return None


async def yield_trio() -> None:
    await trio.lowlevel.checkpoint()


async def yield_asyncio() -> None:
    await asyncio.sleep(0)


def noop_sync(*_outputs: object) -> None:
    return None


# (loop, body kind) -> the body; the synchronous scheduler has nothing to yield to.
BODIES: dict[tuple[str, str], Body] = {
    ("trio", "noop"): noop,
    ("trio", "yield"): yield_trio,
    ("asyncio", "noop"): noop,
    ("asyncio", "yield"): yield_asyncio,
    ("sync", "noop"): noop_sync,
}


class Same:
    """``bodies[i]`` is *fn* for every *i*, without a list of them."""

    def __init__(self, fn: Body) -> None:
        self.fn = fn

    def __getitem__(self, i: int, /) -> Body:
        return self.fn


# --- the contenders' code ---------------------------------------------------


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    """Seconds that ``await fn()`` takes, measured inside the event loop."""
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def build_dag(parents: Iterable[Parents], bodies: Iterable[Body]) -> trio_dag.DAG:
    """A DAG of one task per set of parents, added with ``dag.add`` in order."""
    dag = trio_dag.DAG()
    add = dag.add
    handles: list[trio_dag.Handle[None]] = []
    for fn, ps in zip(bodies, parents, strict=False):  # bodies may be endless
        handles.append(add(fn, after=[handles[p] for p in ps]))
    return dag


@contextmanager
def frozen_with(module_name: str) -> Iterator[ModuleType]:
    """DAGs frozen inside the block use the backend whose core is *module_name*."""
    backend = _native.compiled() if module_name == COMPILED_CORE else _native.python()
    saved = _native.BACKEND
    _native.BACKEND = backend
    try:
        yield backend.core
    finally:
        _native.BACKEND = saved


def run_trio_dag(core: str, dag: trio_dag.DAG) -> float:
    """``await trio_dag.run(dag, limit=LIMIT)`` on a DAG not yet frozen: freezing counts."""
    with frozen_with(core) as module:
        seconds = trio.run(timed, partial(trio_dag.run, dag, limit=LIMIT))
        used = type(dag._freeze().graph).__module__
    if used != module.__name__:
        raise RuntimeError(
            f"the DAG froze with {used}, not {module.__name__}: _native.BACKEND no longer "
            "picks the backend; update frozen_with in bench/_contenders.py"
        )
    return seconds


async def handrolled_trio(deps: Mapping[int, Parents], bodies: Bodies) -> None:
    """graphlib, one nursery, a CapacityLimiter and a channel of finished tasks."""
    sorter = graphlib.TopologicalSorter(deps)
    sorter.prepare()
    limiter = trio.CapacityLimiter(LIMIT)
    send, receive = trio.open_memory_channel[int](math.inf)

    async def task(node: int) -> None:
        async with limiter:
            await bodies[node]()
        await send.send(node)

    async with trio.open_nursery() as nursery:
        while sorter.is_active():
            for node in sorter.get_ready():
                nursery.start_soon(task, node)
            sorter.done(await receive.receive())


async def handrolled_asyncio(deps: Mapping[int, Parents], bodies: Bodies) -> None:
    """The same with asyncio: a TaskGroup, a Semaphore and a Queue of finished tasks."""
    sorter = graphlib.TopologicalSorter(deps)
    sorter.prepare()
    semaphore = asyncio.Semaphore(LIMIT)
    finished: asyncio.Queue[int] = asyncio.Queue()

    async def task(node: int) -> None:
        async with semaphore:
            await bodies[node]()
        await finished.put(node)

    async with asyncio.TaskGroup() as group:
        while sorter.is_active():
            for node in sorter.get_ready():
                group.create_task(task(node))
            sorter.done(await finished.get())


async def waves_trio(deps: Mapping[int, Parents], bodies: Bodies) -> None:
    """Level by level, as wave-based schedulers run: a nursery per level."""
    sorter = graphlib.TopologicalSorter(deps)
    sorter.prepare()
    limiter = trio.CapacityLimiter(LIMIT)

    async def task(node: int) -> None:
        async with limiter:
            await bodies[node]()

    while sorter.is_active():
        wave = sorter.get_ready()
        async with trio.open_nursery() as nursery:
            for node in wave:
                nursery.start_soon(task, node)
        sorter.done(*wave)


async def await_all(order: Sequence[int], bodies: Bodies) -> None:
    """The floor: every body awaited in topological order in one Trio task."""
    for node in order:
        await bodies[node]()


async def spawn_all(n: int, bodies: Bodies) -> None:
    """The floor: every body spawned in one nursery, no dependencies, no limit."""
    async with trio.open_nursery() as nursery:
        for node in range(n):
            nursery.start_soon(bodies[node])


def build_dask(graph: Graph, bodies: Bodies) -> tuple[dict[int, tuple[Any, ...]], list[int]]:
    """The equivalent dask graph (a task's parents are its arguments) and its sinks."""
    dsk = {i: (bodies[i], *ps) for i, ps in enumerate(graph.parents)}
    has_child = bytearray(graph.n)
    for ps in graph.parents:
        for p in ps:
            has_child[p] = 1
    return dsk, [i for i in range(graph.n) if not has_child[i]]


def run_dask(structure: tuple[dict[int, tuple[Any, ...]], list[int]]) -> float:
    """dask's local synchronous scheduler on the whole graph (every task leads to a sink)."""
    from dask.local import get_sync

    dsk, sinks = structure
    start = time.perf_counter()
    get_sync(dsk, sinks)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Contender:
    """How to build one contender's structure from a graph, and how to run it once."""

    name: str
    about: str
    loop: str  # whose bodies it awaits: "trio", "asyncio" or "sync"
    build: Callable[[Graph, Bodies], Any]
    run: Callable[[Any], float]  # seconds of one run of what build made
    limited: bool = True  # at most LIMIT bodies at once
    ordered: bool = True  # each task after its dependencies
    needs: str | None = None  # a module that must import
    install: str = ""

    @property
    def bodies(self) -> tuple[str, ...]:
        return tuple(kind for kind in BODY_KINDS if (self.loop, kind) in BODIES)

    def missing(self) -> str | None:
        """Why this contender cannot run here, or None."""
        if self.needs is None:
            return None
        try:
            import_module(self.needs)
        except ImportError as exc:
            return f"{self.needs} does not import ({exc}); {self.install}"
        return None


def _trio(fn: Callable[..., Awaitable[None]], structure: tuple[Any, Bodies]) -> float:
    return trio.run(timed, partial(fn, *structure))


def _asyncio(fn: Callable[..., Awaitable[None]], structure: tuple[Any, Bodies]) -> float:
    return asyncio.run(timed(partial(fn, *structure)))


def _dag(graph: Graph, bodies: Bodies) -> trio_dag.DAG:
    return build_dag(graph.parents, (bodies[i] for i in range(graph.n)))


def _dag_on(core: str, graph: Graph, bodies: Bodies) -> trio_dag.DAG:
    """:func:`_dag` with the backend whose core is *core* selected, should ``add`` consult it."""
    with frozen_with(core):
        return _dag(graph, bodies)


def _from_deps(graph: Graph, bodies: Bodies) -> tuple[dict[int, Parents], Bodies]:
    return graph.deps(), bodies


def _topological(graph: Graph, bodies: Bodies) -> tuple[list[int], Bodies]:
    return list(graphlib.TopologicalSorter(graph.deps()).static_order()), bodies


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in [
        Contender(
            "trio_dag",
            "trio_dag.run, compiled core",
            "trio",
            partial(_dag_on, COMPILED_CORE),
            partial(run_trio_dag, COMPILED_CORE),
            needs=COMPILED_CORE,
            install="build it with `python setup.py build_ext --inplace`",
        ),
        Contender(
            "trio_dag_py",
            "trio_dag.run, pure-Python core",
            "trio",
            partial(_dag_on, PYTHON_CORE),
            partial(run_trio_dag, PYTHON_CORE),
        ),
        Contender(
            "handrolled_trio",
            "graphlib + nursery + CapacityLimiter + channel",
            "trio",
            _from_deps,
            partial(_trio, handrolled_trio),
        ),
        Contender(
            "handrolled_asyncio",
            "graphlib + TaskGroup + Semaphore + Queue",
            "asyncio",
            _from_deps,
            partial(_asyncio, handrolled_asyncio),
        ),
        Contender(
            "waves_trio",
            "graphlib levels, a nursery per level",
            "trio",
            _from_deps,
            partial(_trio, waves_trio),
        ),
        Contender(
            "dask",
            "dask.local.get_sync on the same graph",
            "sync",
            build_dask,
            run_dask,
            needs="dask",
            install="pip install dask (or pip install '.[bench]')",
        ),
        Contender(
            "floor_await",
            "floor: await each body in order, one task",
            "trio",
            _topological,
            partial(_trio, await_all),
        ),
        Contender(
            "floor_spawn",
            "floor: spawn each body in one nursery",
            "trio",
            lambda g, b: (g.n, b),
            partial(_trio, spawn_all),
            limited=False,
            ordered=False,
        ),
    ]
}


# --- the correctness check --------------------------------------------------


class Probe:
    """Bodies that record, for each task, how often it ran and what it saw."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.starts = [0] * graph.n
        self.ends = [0] * graph.n
        self.early: list[int] = []  # tasks started before a dependency had ended
        self.running = 0
        self.peak = 0

    def start(self, i: int) -> None:
        self.starts[i] += 1
        if any(not self.ends[p] for p in self.graph.parents[i]):
            self.early.append(i)
        self.running += 1
        self.peak = max(self.peak, self.running)

    def end(self, i: int) -> None:
        self.running -= 1
        self.ends[i] += 1

    def bodies(self, loop: str, kind: str) -> list[Body]:
        return [self._body(loop, kind, i) for i in range(self.graph.n)]

    def _body(self, loop: str, kind: str, i: int) -> Body:
        if loop == "sync":

            def sync_body(*_outputs: object) -> None:
                self.start(i)
                self.end(i)

            return sync_body
        pause = BODIES[loop, kind] if kind == "yield" else None

        async def body() -> None:
            self.start(i)
            if pause is not None:
                await pause()
            self.end(i)

        return body

    def problems(self, contender: Contender) -> list[str]:
        found = []
        for what, counts in (("started", self.starts), ("ended", self.ends)):
            wrong = [i for i, count in enumerate(counts) if count != 1]
            if wrong:
                found.append(
                    f"{len(wrong)} tasks {what} other than once "
                    f"(task {wrong[0]}: {counts[wrong[0]]} times)"
                )
        if contender.ordered and self.early:
            found.append(
                f"{len(self.early)} tasks started before a dependency ended (task {self.early[0]})"
            )
        if contender.limited and self.peak > LIMIT:
            found.append(f"{self.peak} bodies ran at once, over the limit of {LIMIT}")
        return found


def check(contender: Contender, *, n: int = 300) -> list[str]:
    """Run *contender* once on every shape with each body it runs; what went wrong."""
    problems = []
    for shape in SHAPES:
        graph = Graph.make(shape, n)
        for kind in contender.bodies:
            probe = Probe(graph)
            contender.run(contender.build(graph, probe.bodies(contender.loop, kind)))
            problems += [
                f"{contender.name}, {shape}, {kind} bodies: {p}" for p in probe.problems(contender)
            ]
    return problems

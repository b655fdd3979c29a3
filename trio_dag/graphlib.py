"""The standard library's :mod:`graphlib` on trio_dag's graph core: change one import.

::

    from trio_dag.graphlib import CycleError, TopologicalSorter

Same API, same errors in the same situations, the same nodes in each
``get_ready()`` batch; ``CycleError`` is the standard library's own class.
Nodes are any hashable objects. The readiness bookkeeping (counters, the
ready queue, the cycle search) runs in trio_dag's graph core, on arrays, in
compiled code when ``trio_dag.CORE`` is ``"cython"``. See the user guide,
*The graphlib drop-in*.

Differences from the standard library, all outside what it documents:

- Within one ``get_ready()`` tuple, the nodes that a single node's ``done()``
  made ready come in the order they were first mentioned; the standard
  library lists them in the order their edges from that node were added. The
  nodes ready at ``prepare()``, and everything else about the order, match.
- When the graph has several cycles, ``CycleError`` may report another one (the
  standard library promises only "one undefined choice"); each node of the
  list is still an immediate predecessor of the next, first node repeated last.
- ``add()`` that raises (an unhashable node or predecessor) leaves the sorter
  as it was. The standard library leaves the node half added: its counter
  already includes every predecessor, so it can never become ready.
- Of several equal nodes (``37`` and ``37.0``), the one mentioned first is
  the one handed out; the standard library may hand out a later one.
- A constructor graph whose predecessors are not iterable (``{1: 2}``) raises
  TypeError with Python's own message, not the ``Value after * must be an
  iterable`` of the standard library's ``add(node, *predecessors)``.
- A sorter pickles until ``prepare()``; after it, the sorter holds the
  core's state, which the compiled core cannot pickle (TypeError), while the
  standard library's sorters pickle at any time. Copying a prepared sorter
  is not supported either: ``copy.copy`` would share that state.
"""

# add() numbers nodes in order of first mention and records edges between
# numbers; prepare() hands those to the core. The numbering, and the mapping
# of the core's numbers back to nodes, is an interner's job: compiled
# (trio_dag._native._intern) when the compiled backend is the one
# trio_dag._native chose. The core and the interner are those of
# trio_dag._native.BACKEND: _core (private) is the module whose Graph and
# RunState prepare() uses, _intern the one whose Interner a sorter is built
# on; the tests monkeypatch them to run each implementation through
# CPython's own graphlib tests. The compiled interner works on either core.

from __future__ import annotations

from collections.abc import Iterable, Iterator
from graphlib import CycleError as CycleError
from types import GenericAlias, ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _native

if TYPE_CHECKING:
    from _typeshed import SupportsItems

    from ._native._core import RunState
    from ._native._intern import Interner

__all__ = ["CycleError", "TopologicalSorter"]

_T = TypeVar("_T")

_core: ModuleType = _native.BACKEND.core
_intern: ModuleType = _native.BACKEND.intern


class TopologicalSorter(Generic[_T]):
    """Sorts a graph of hashable nodes topologically, batch by batch.

    *graph*, when given, maps each node to an iterable of its predecessors,
    added as if by :meth:`add` (a subclass that overrides ``add`` sees each
    call). Then :meth:`prepare`, and loop::

        ts = TopologicalSorter(graph)
        ts.prepare()
        while ts.is_active():
            ready = ts.get_ready()
            ...  # process them, in any order, in parallel
            ts.done(*ready)
    """

    def __init__(self, graph: SupportsItems[_T, Iterable[_T]] | None = None) -> None:
        # A dict holds at least as many nodes as keys.
        size_hint = len(graph) if isinstance(graph, dict) else 0
        self._interner: Interner[_T] = _intern.Interner(size_hint)
        self._run: RunState | None = None
        if graph is None:
            return
        if type(self).add is TopologicalSorter.add:
            self._interner.add(graph.items())
        else:
            for node, predecessors in graph.items():
                self.add(node, *predecessors)

    def add(self, node: _T, *predecessors: _T) -> None:
        """Add *node* and its *predecessors*, which must all be hashable.

        Adding a node again adds to its predecessors; a predecessor not yet
        seen becomes a node with no predecessors of its own; a predecessor
        given twice is no different from one given once.

        Raises ValueError after :meth:`prepare`, TypeError (changing nothing)
        when a node is not hashable.
        """
        if self._run is not None:
            raise ValueError("Nodes cannot be added after a call to prepare()")
        self._interner.add(((node, predecessors),))

    def prepare(self) -> None:
        """Freeze the graph and check it for cycles.

        Raises CycleError when there is one; :meth:`get_ready` still hands out
        every node the cycle does not block. Raises ValueError when called twice.
        """
        if self._run is not None:
            raise ValueError("cannot prepare() more than once")
        graph = _core.Graph(*self._interner.edges())
        self._run = _core.RunState(graph)
        nodes = self._interner.freeze()
        cycle: list[int] | None = graph.find_cycle()
        if cycle is not None:
            raise CycleError("nodes are in a cycle", [nodes[i] for i in cycle])

    def get_ready(self) -> tuple[_T, ...]:
        """Every node that is ready and not yet handed out, as a tuple.

        Empty when nothing is ready until more nodes are :meth:`done` (or ever,
        once the work is over or blocked by a cycle). Raises ValueError before
        :meth:`prepare`.
        """
        return self._interner.take_ready(self._checked_run())

    def is_active(self) -> bool:
        """True while a node is ready or handed out and not yet done.

        Raises ValueError before :meth:`prepare`.
        """
        run = self._checked_run()
        return run.running > 0 or run.ready > 0

    def __bool__(self) -> bool:
        """The same as :meth:`is_active`."""
        return self.is_active()

    def done(self, *nodes: _T) -> None:
        """Mark *nodes*, handed out by :meth:`get_ready`, as processed, in turn.

        Raises ValueError, after marking the nodes before it, at the first node
        that was never added, not yet handed out, or already done; ValueError
        before :meth:`prepare`.
        """
        run = self._checked_run()
        if self._interner.done_batch(run, nodes):  # done(*get_ready()): no lookups
            return
        ended = run.ended
        try:
            run.done_many(map(self._interner.index.__getitem__, nodes))
        except (KeyError, TypeError, ValueError):
            pass
        else:
            return
        # The core stopped at a node it names by index, or a lookup failed:
        # the nodes before it are done; the standard library's error names it.
        self._done_each(run, nodes[run.ended - ended :])

    def _done_each(self, run: RunState, nodes: tuple[_T, ...]) -> None:
        # done() one node at a time, raising the standard library's error at
        # the first node that cannot be done.
        index = self._interner.index
        for node in nodes:
            i = index.get(node)
            if i is None:
                raise ValueError(f"node {node!r} was not added using add()")
            state = run.state(i)
            if state == _core.SUCCEEDED:
                raise ValueError(f"node {node!r} was already marked done")
            if state != _core.RUNNING:
                raise ValueError(f"node {node!r} was not passed out (still not ready)")
            run.done(i)

    def _checked_run(self) -> RunState:
        if self._run is None:
            raise ValueError("prepare() must be called first")
        return self._run

    def static_order(self) -> Iterator[_T]:
        """Every node, predecessors first: :meth:`prepare`, then drain batch by batch.

        Raises CycleError (on the first ``next()``) when the graph has a cycle.
        """
        self.prepare()
        while self.is_active():
            node_group = self.get_ready()
            yield from node_group
            self.done(*node_group)

    def __class_getitem__(cls, item: Any) -> GenericAlias:
        """``TopologicalSorter[int]``, for annotations, as in the standard library."""
        return GenericAlias(cls, item)

"""Hashable nodes to core indices and back, for :mod:`trio_dag.graphlib`: the pure-Python twin.

Same API and results as the compiled ``trio_dag._native._intern``; see ``_intern.pyi``.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import count
from operator import index as _index
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from ._core import RunState

__all__ = ["Interner"]

_T = TypeVar("_T")


class Interner(Generic[_T]):
    """Numbers nodes in order of first mention and records edges between the numbers.

    Once frozen, it maps the indices the core hands out back to nodes, batch by
    batch. *size_hint* (how many nodes to expect) is for the compiled twin: a
    defaultdict cannot be presized.
    """

    def __init__(self, size_hint: int = 0) -> None:
        _index(size_hint)  # an int, as the compiled twin takes
        # Each node's index is its rank in order of first mention; a missing
        # key numbers itself. Edges go predecessor -> node, by index.
        self._index: defaultdict[_T, int] = defaultdict(count().__next__)
        # "I", not "i": appending a Python int to an "i" array goes through
        # PyArg_Parse, several times slower. Indices are never negative, so
        # edges() hands the core the same bytes as an "i" array.
        self._sources = array("I")
        self._targets = array("I")
        self._nodes: list[_T] = []  # index -> node, from freeze() on
        # The last batch take_ready() handed out and its indices, until a
        # done_batch() call: done(*batch) then needs no lookups.
        self._batch: tuple[_T, ...] = ()
        self._batch_ids: list[int] = []

    @property
    def index(self) -> Mapping[_T, int]:
        """Each node's index."""
        return self._index

    def add(self, pairs: Iterable[tuple[_T, Iterable[_T]]]) -> None:
        """Number each node and its predecessors; record an edge from each predecessor.

        All or nothing: when it raises (an unhashable node), nothing changed.
        """
        # A plain loop beats map() here, which would build an iterator per node.
        index = self._index
        sources = self._sources
        targets = self._targets
        before = len(index)
        edges = len(sources)
        try:
            for node, predecessors in pairs:
                i = index[node]
                for p in predecessors:
                    sources.append(index[p])
                    targets.append(i)
        except BaseException:
            # New nodes are the last keys: dropping them restores the interner.
            del sources[edges:], targets[edges:]
            while len(index) > before:
                index.popitem()
            index.default_factory = count(before).__next__
            raise

    def edges(self) -> tuple[int, array[int], array[int]]:
        """The number of nodes, then the edges' sources and targets: ``Graph``'s arguments."""
        sources = array("i", self._sources.tobytes())
        targets = array("i", self._targets.tobytes())
        return len(self._index), sources, targets

    def freeze(self) -> list[_T]:
        """Stop numbering (:meth:`index` no longer grows) and drop the edges; the nodes by index."""
        self._index.default_factory = None
        self._nodes = list(self._index)
        self._sources, self._targets = array("I"), array("I")
        return self._nodes

    def take_ready(self, run: RunState) -> tuple[_T, ...]:
        """Pop every ready node of *run*, as a tuple of nodes; remember the batch."""
        ids = run.pop_all()
        ready = tuple(map(self._nodes.__getitem__, ids))
        self._batch, self._batch_ids = ready, ids
        return ready

    def done_batch(self, run: RunState, nodes: tuple[_T, ...]) -> bool:
        """When *nodes* is the batch last taken, mark it done in *run* and return True.

        The batch is forgotten either way: it is all out and not yet done only
        until the next ``done()``.
        """
        batch, ids = self._batch, self._batch_ids
        self._batch, self._batch_ids = (), []
        if nodes != batch:
            return False
        run.done_many(ids)
        return True

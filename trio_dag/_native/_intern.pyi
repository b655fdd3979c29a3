"""Types of the interner: ``_intern`` (Cython) and ``_intern_py`` (its twin) in ``_native``.

The interner is :mod:`trio_dag.graphlib`'s half of a sorter: it numbers
hashable nodes ``0..n-1`` in order of first mention, records each edge
predecessor -> node by number, and maps the numbers the core hands out back to
nodes. Either interner works with either core's ``RunState``.
"""

from array import array
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from ._core import RunState

_T = TypeVar("_T")

class Interner(Generic[_T]):
    """Numbers nodes in order of first mention and records edges between the numbers.

    Once frozen, it maps the indices the core hands out back to nodes, batch by
    batch. *size_hint* is how many nodes to expect (the compiled interner
    presizes its dict).
    """

    def __init__(self, size_hint: int = 0) -> None: ...
    @property
    def index(self) -> Mapping[_T, int]:
        """Each node's index."""
    def add(self, pairs: Iterable[tuple[_T, Iterable[_T]]]) -> None:
        """Number each node and its predecessors; record an edge from each predecessor.

        All or nothing: when it raises (an unhashable node), nothing changed.
        """
    def edges(self) -> tuple[int, array[int], array[int]]:
        """The number of nodes, then the edges' sources and targets: ``Graph``'s arguments."""
    def freeze(self) -> list[_T]:
        """Stop numbering and drop the edges; return the nodes by index."""
    def take_ready(self, run: RunState) -> tuple[_T, ...]:
        """Pop every ready node of *run*, as a tuple of nodes; remember the batch."""
    def done_batch(self, run: RunState, nodes: tuple[_T, ...]) -> bool:
        """When *nodes* is the batch last taken, mark it done in *run* and return True.

        The batch is forgotten either way: it is all out and not yet done only
        until the next ``done()``.
        """

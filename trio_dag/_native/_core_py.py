"""The pure-Python twin of ``trio_dag._native._core``: same names, same results, same order.

Nodes are the integers ``0..n-1``; an edge ``src -> dst`` makes *src* a
dependency (parent) of *dst*. :class:`Graph` is immutable, so one graph can
serve many :class:`RunState` objects at once.

Everything is stored in flat lists (the parents in an array) indexed by node
or edge; the only per-node objects are the transient tuples in the ready heap.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, chain, repeat
from operator import index as _index
from operator import sub

# The twins share their constants and argument checks, so both say the
# same thing about the same bad input.
from ._shared import CANCELLED as CANCELLED
from ._shared import EXCLUDED as EXCLUDED
from ._shared import FAILED as FAILED
from ._shared import PENDING as PENDING
from ._shared import READY as READY
from ._shared import RUNNING as RUNNING
from ._shared import SKIPPED as SKIPPED
from ._shared import STATE_NAMES as STATE_NAMES
from ._shared import SUCCEEDED as SUCCEEDED
from ._shared import check_edge_count, check_n, int_array

# Two int32 words side by side read as one int64: the one at _HIGH weighs more.
_LOW, _HIGH = (0, 1) if sys.byteorder == "little" else (1, 0)


def _sorted_edges(src: array[int], dst: array[int]) -> tuple[array[int], array[int]]:
    """The edges sorted by target then source, without repeats, at C speed.

    Each edge becomes one int64, ``target << 32 | source``, for the sort; a
    negative source sorts as a large one (both are rejected later).
    """
    pairs = array("i", bytes(8 * len(src)))
    pairs[_LOW::2] = src
    pairs[_HIGH::2] = dst
    keys = array("q", dict.fromkeys(sorted(array("q", pairs.tobytes()))))
    pairs = array("i", keys.tobytes())
    return pairs[_LOW::2], pairs[_HIGH::2]


def _edge_lists(src: array[int], dst: array[int] | None) -> tuple[list[int], list[int]]:
    # Lists, so that the loops over them make no int object per step; the
    # sources read as unsigned, so that a negative one fails to index, as a
    # source too large does. No targets (the offsets form has them as a list
    # already) give an empty list.
    return array("I", src.tobytes()).tolist(), [] if dst is None else dst.tolist()


def _degrees(n: int, src: list[int], dst: list[int]) -> tuple[list[int], list[int], bool] | None:
    """Each node's out- and in-degree, and whether every edge goes to a higher
    node (then there is no cycle); None unless the edges come sorted by
    target then source, without repeats.

    Raises IndexError for a node out of range, but a negative target, which
    sorts first, is left for the caller to see.
    """
    outdegree = [0] * n
    indegree = [0] * n
    forward = True
    last_d = last_s = -1
    for s, d in zip(src, dst, strict=True):
        if d != last_d:
            if d < last_d:
                return None
            last_d = d
        elif s <= last_s:
            return None
        last_s = s
        outdegree[s] += 1
        indegree[d] += 1
        if s >= d:
            forward = False
    return outdegree, indegree, forward


def _offset_degrees(
    n: int, src: list[int], dst: list[int], indegree: list[int]
) -> tuple[list[int], list[int], bool] | None:
    """:func:`_degrees` for the targets of the offsets form, which never
    decrease: the in-degrees are the counts of parents the offsets give,
    once the sources of each target are found ascending without repeats.
    It saves :func:`_degrees`' list update per edge for the in-degrees.
    """
    outdegree = [0] * n
    forward = True
    last_d = last_s = -1
    for s, d in zip(src, dst, strict=True):
        if d != last_d:
            last_d = d
        elif s <= last_s:
            return None
        last_s = s
        outdegree[s] += 1
        if s >= d:
            forward = False
    return outdegree, indegree, forward


def _out_of_range(n: int, src: array[int], dst: array[int]) -> ValueError:
    """The error for the first edge, in the order given, that names no node."""
    edges = enumerate(zip(src, dst, strict=True))
    i, s, d = next((i, s, d) for i, (s, d) in edges if not (0 <= s < n and 0 <= d < n))
    bad = s if not 0 <= s < n else d
    return ValueError(f"edge {i} ({s} -> {d}) names node {bad}, but the graph has {n} nodes")


def _offset_targets(n: int, src: array[int], off: array[int]) -> tuple[list[int], list[int]]:
    """The target of each edge when node v's parents are ``src[off[v]:off[v + 1]]``.

    Only the first ``off[n]`` sources are edges. The checks and errors of the
    compiled core's offsets form; a source out of range is the constructor's
    (the same error, for the first such edge). A list, as :func:`_edge_lists`
    gives the targets: written at C speed, each node's int object repeated
    rather than one made per edge; and the count of each node's edges.
    """
    if len(off) < n + 1:
        raise ValueError(f"offsets must have at least n + 1 ({n + 1}) entries, got {len(off)}")
    if off[0] != 0:
        raise ValueError(f"offsets must start at 0, got {off[0]}")
    counts = list(map(sub, off[1 : n + 1], off))
    if counts and min(counts) < 0:
        v = next(v for v, count in enumerate(counts) if count < 0)
        raise ValueError(f"offsets must not decrease, but entry {v + 1} is below entry {v}")
    e = off[n]
    if e > len(src):
        raise ValueError(f"offsets end at {e}, past the {len(src)} sources")
    check_edge_count(e)
    return list(chain.from_iterable(map(repeat, range(n), counts))), counts


def _zeros(values: list[int]) -> Iterator[int]:
    """The indices of the zeros in *values*, ascending, each found at C speed."""
    i = -1
    try:
        while True:
            i = values.index(0, i + 1)
            yield i
    except ValueError:
        return


def _breadth_first(queue: list[int], child_off: list[int], child: list[int]) -> Iterator[int]:
    """The children of each node of *queue* in turn, in CSR order.

    The caller appends to *queue* while it reads, which makes the walk breadth-first.
    """
    i = 0
    while i < len(queue):
        v = queue[i]
        i += 1
        yield from child[child_off[v] : child_off[v + 1]]


class Graph:
    """An immutable graph in CSR form (children and parents).

    Built in O(n + e) from edges sorted by target then source, as a DAG
    usually records them, and in O(n + e log e) from others. Both adjacency
    lists are sorted by node index and duplicate edges collapse into one, so
    every result below is deterministic.

    A graph holds at most ``MAX_NODES`` (2**31 - 2) nodes and is given at
    most ``MAX_EDGES`` (2**31 - 1) edges, repeats included: what the compiled
    core's C ints hold (SPEC sets no limit). Both twins raise the same
    ValueError past them, before building anything.
    """

    __slots__ = ("_child", "_child_off", "_forward", "_indegree", "_n", "_par", "_par_off")

    def __init__(
        self,
        n: int,
        sources: Iterable[int],
        targets: Iterable[int] | None = None,
        *,
        offsets: Iterable[int] | None = None,
    ) -> None:
        dst: array[int] | None
        counts: list[int] = []
        if offsets is not None:
            if targets is not None:
                raise TypeError("give targets or offsets, not both")
            n = check_n(n)
            src = int_array(sources, "sources")
            edge_dst, counts = _offset_targets(n, src, int_array(offsets, "offsets"))
            if len(src) > len(edge_dst):
                src = src[: len(edge_dst)]
            edge_src = _edge_lists(src, None)[0]
            # The targets as an array only for the edges out of order or range.
            dst = None
        elif targets is None:
            raise TypeError("Graph() needs targets, or offsets=")
        else:
            n = check_n(n)
            src = int_array(sources, "sources")
            dst = int_array(targets, "targets")
            if len(src) != len(dst):
                raise ValueError(
                    f"sources and targets must have the same length, got {len(src)} and {len(dst)}"
                )
            check_edge_count(len(src))
            edge_src, edge_dst = _edge_lists(src, dst)
        # The parents are the sources in (target, source) order, which the
        # edges of a DAG usually come in already; the children are then
        # placed by a counting sort on the source, which visits the targets
        # ascending and so leaves each node's children sorted.
        par = src[:]
        try:
            if dst is None:
                degrees = _offset_degrees(n, edge_src, edge_dst, counts)
            else:
                degrees = _degrees(n, edge_src, edge_dst)
            if degrees is None:
                if dst is None:
                    dst = array("i", edge_dst)
                par, tgt = _sorted_edges(src, dst)
                edge_src, edge_dst = _edge_lists(par, tgt)
                degrees = _degrees(n, edge_src, edge_dst)
        except IndexError:
            degrees = None
        # Edges in order may still name a negative target, which sorts first.
        if degrees is None or (edge_dst and edge_dst[0] < 0):
            raise _out_of_range(n, src, array("i", edge_dst) if dst is None else dst)
        outdegree, indegree, forward = degrees
        child_off = [0, *accumulate(outdegree)]
        fill = child_off[:n]
        child = [0] * len(edge_src)
        for s, d in zip(edge_src, edge_dst, strict=True):
            j = fill[s]
            child[j] = d
            fill[s] = j + 1
        self._n = n
        self._child_off = child_off
        self._child = child
        self._par_off = [0, *accumulate(indegree)]
        self._par = par
        self._indegree = indegree
        # Every edge going to a higher node rules out a cycle at once.
        self._forward = forward

    @property
    def n(self) -> int:
        """The number of nodes."""
        return self._n

    @property
    def num_edges(self) -> int:
        """The number of distinct edges."""
        return len(self._child)

    def _check(self, node: int) -> int:
        node = _index(node)
        if not 0 <= node < self._n:
            raise IndexError(f"node {node} is out of range for a graph of {self._n} nodes")
        return node

    def children(self, node: int) -> list[int]:
        """The nodes that depend on *node*, ascending."""
        node = self._check(node)
        return self._child[self._child_off[node] : self._child_off[node + 1]]

    def parents(self, node: int) -> list[int]:
        """The nodes *node* depends on, ascending."""
        node = self._check(node)
        return self._par[self._par_off[node] : self._par_off[node + 1]].tolist()

    def indegree(self, node: int) -> int:
        """How many distinct parents *node* has."""
        node = self._check(node)
        return self._par_off[node + 1] - self._par_off[node]

    def outdegree(self, node: int) -> int:
        """How many distinct children *node* has."""
        node = self._check(node)
        return self._child_off[node + 1] - self._child_off[node]

    def _kahn(self) -> list[int]:
        # Breadth-first Kahn: sources ascending, children in CSR order. Nodes on
        # or below a cycle never reach indegree zero and are left out.
        n = self._n
        par_off = self._par_off
        child_off = self._child_off
        child = self._child
        count = [par_off[v + 1] - par_off[v] for v in range(n)]
        order = [v for v in range(n) if count[v] == 0]
        for c in _breadth_first(order, child_off, child):
            count[c] -= 1
            if count[c] == 0:
                order.append(c)
        return order

    def _acyclic_order(self) -> list[int]:
        order = self._kahn()
        if len(order) != self._n:
            raise ValueError("the graph has a cycle; find_cycle() shows one")
        return order

    def find_cycle(self) -> list[int] | None:
        """One cycle as ``[a, b, ..., a]`` along edge direction, or None.

        The cycle starts at its smallest node. Linear and iterative: Kahn's
        algorithm removes every node not on or below a cycle; from the smallest
        node left, following any remaining parent must close a loop.
        """
        if self._forward:
            return None
        n = self._n
        order = self._kahn()
        if len(order) == n:
            return None
        left = [True] * n
        for v in order:
            left[v] = False
        start = left.index(True)
        par_off = self._par_off
        par = self._par
        pos: dict[int, int] = {}
        path: list[int] = []
        v = start
        while v not in pos:
            pos[v] = len(path)
            path.append(v)
            for j in range(par_off[v], par_off[v + 1]):
                if left[par[j]]:
                    v = par[j]
                    break
        loop = path[pos[v] :]
        loop.reverse()
        # ``loop`` now runs along edge direction, closing from its last node
        # back to its first; rotate it to start at its smallest node.
        k = loop.index(min(loop))
        loop = loop[k:] + loop[:k]
        loop.append(loop[0])
        return loop

    def topological_order(self) -> array[int]:
        """Every node, parents before children (Kahn's order, sources ascending).

        Raises ValueError when the graph has a cycle.
        """
        return array("i", self._acyclic_order())

    def levels(self) -> array[int]:
        """For each node, the number of links in its longest chain of dependencies."""
        level = [0] * self._n
        child_off = self._child_off
        child = self._child
        for v in self._acyclic_order():
            nxt = level[v] + 1
            for j in range(child_off[v], child_off[v + 1]):
                c = child[j]
                if level[c] < nxt:
                    level[c] = nxt
        return array("i", level)

    def upward_rank(self, costs: Sequence[float]) -> array[float]:
        """For each node, the largest total cost of a path from it to a sink, itself included."""
        n = self._n
        if len(costs) != n:
            raise ValueError(f"costs must have one value per node ({n}), got {len(costs)}")
        rank = [0.0] * n
        child_off = self._child_off
        child = self._child
        order = self._acyclic_order()
        for i in range(n - 1, -1, -1):
            v = order[i]
            best = 0.0
            for j in range(child_off[v], child_off[v + 1]):
                r = rank[child[j]]
                if r > best:
                    best = r
            rank[v] = float(costs[v]) + best
        return array("d", rank)

    def ancestors(self, targets: Iterable[int]) -> array[int]:
        """The targets and every node they depend on, directly or not, ascending."""
        n = self._n
        mark = bytearray(n)
        stack = []
        for t in targets:
            t = self._check(t)
            if not mark[t]:
                mark[t] = 1
                stack.append(t)
        par_off = self._par_off
        par = self._par
        while stack:
            v = stack.pop()
            for j in range(par_off[v], par_off[v + 1]):
                p = par[j]
                if not mark[p]:
                    mark[p] = 1
                    stack.append(p)
        return array("i", [v for v in range(n) if mark[v]])


class RunState:
    """One run's bookkeeping over a :class:`Graph`.

    Ready nodes wait in a heap ordered by ``keys[node]`` (smallest first; all
    zero when *keys* is None), then by the order in which they became ready
    (first first, or last first with ``lifo=True``). Nodes whose index is in
    *all_done* become ready when every parent has ended in any state; the
    others when every parent SUCCEEDED. *targets* (None: every node) limits
    the run to those nodes and their ancestors; the rest are EXCLUDED.

    Without keys, the heap is a deque in that order (nodes that become ready
    join one end) plus a heap for the nodes pushed back to their old place.
    ``_pop`` and ``_done`` are ``pop`` and ``done`` without the checks, and
    ``_done_pop`` the two in one call, for the loop.
    """

    __slots__ = (
        "_all_done",
        "_cancelled",
        "_child",
        "_child_off",
        "_count",
        "_ended",
        "_failed",
        "_gn",
        "_graph",
        "_grown",
        "_head",
        "_heap",
        "_joining",
        "_keys",
        "_n",
        "_next_seq",
        "_queue",
        "_running",
        "_seq",
        "_skipped",
        "_stale",
        "_state",
        "_step",
        "_take",
        "_total",
        "_xchild",
    )

    def __init__(
        self,
        graph: Graph,
        keys: Sequence[float] | None = None,
        *,
        lifo: bool = False,
        all_done: Iterable[int] | None = None,
        targets: Iterable[int] | None = None,
    ) -> None:
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a Graph, not {type(graph).__name__}")
        n = graph._n
        if keys is not None:
            if len(keys) != n:
                raise ValueError(f"keys must have one value per node ({n}), got {len(keys)}")
            keys = [float(k) for k in keys]
            if any(k != k for k in keys):
                raise ValueError("keys must not be NaN")
        done_mask = bytearray(n)
        if all_done is not None:
            for v in all_done:
                v = graph._check(v)
                done_mask[v] = 1
        # A list, not a bytearray: the loop reads and writes it for every task.
        state = [PENDING] * n
        if targets is not None:
            state = [EXCLUDED] * n
            for v in graph.ancestors(targets):
                state[v] = PENDING
        self._graph = graph
        self._child = graph._child
        self._child_off = graph._child_off
        self._keys = keys
        self._all_done = done_mask
        self._count = graph._indegree.copy()
        self._state = state
        self._seq = [0] * n
        self._next_seq = 0
        self._step = -1 if lifo else 1
        # The deque holds nodes in the order they became ready; they leave
        # from its left end, or with lifo from its right end.
        self._queue: deque[int] = deque()
        self._take = self._queue.pop if lifo else self._queue.popleft
        self._head = -1 if lifo else 0
        self._heap: list[tuple[float, int, int]] = []
        # Entries of the deque and heap whose node is no longer READY (it was
        # cancelled there): the ready count is their length less these.
        self._stale = 0
        self._running = 0
        self._ended = 0
        # How many nodes ended in each final state but SUCCEEDED (that one is the rest).
        self._failed = 0
        self._skipped = 0
        self._cancelled = 0
        self._total = n - state.count(EXCLUDED)
        # Growth (see add and join): the graph's nodes are 0.._gn-1; nodes
        # added during the run, and edges into them or into a joining node,
        # live in _xchild {node: [children in the order added]}.
        self._n = n
        self._gn = n
        self._grown = False
        self._xchild: dict[int, list[int]] = {}
        self._joining = bytearray(n)
        for v in _zeros(self._count):
            if state[v] == PENDING:
                self._make_ready(v)

    def _make_ready(self, v: int) -> None:
        seq = self._next_seq
        self._next_seq = seq + self._step
        self._seq[v] = seq
        self._state[v] = READY
        keys = self._keys
        if keys is None:
            self._queue.append(v)
        else:
            heapq.heappush(self._heap, (keys[v], seq, v))

    def _push(self, v: int) -> None:
        self._state[v] = READY
        keys = self._keys
        heapq.heappush(self._heap, (keys[v] if keys is not None else 0.0, self._seq[v], v))

    def _pop(self) -> int:
        queue = self._queue
        heap = self._heap
        state = self._state
        while queue or heap:
            # Without keys, a pushed-back node goes first if it became ready first.
            if heap and (not queue or heap[0][1] < self._seq[queue[self._head]]):
                v = heapq.heappop(heap)[2]
            else:
                v = self._take()
            if state[v] == READY:
                state[v] = RUNNING
                self._running += 1
                return v
            self._stale -= 1
        return -1

    def _done(self, node: int) -> int:
        if self._grown and (self._joining[node] or self._state[node] != RUNNING):
            # A node that joins others (or went back to the heap to be
            # resolved) ends when its joins are resolved, not when its body returns.
            return 0
        self._running -= 1
        self._ended += 1
        state = self._state
        state[node] = SUCCEEDED
        count = self._count
        made = 0
        for c in self._children(node):
            k = count[c] - 1
            count[c] = k
            if k == 0:
                if state[c] == PENDING:
                    self._make_ready(c)
                    made += 1
                elif self._joined(c):
                    made += 1
        return made

    def _children(self, node: int) -> list[int]:
        """*node*'s children: the graph's, then those added during the run."""
        kids = (
            self._child[self._child_off[node] : self._child_off[node + 1]]
            if node < self._gn
            else []
        )
        if self._grown:
            extra = self._xchild.get(node)
            if extra:
                kids = kids + extra
        return kids

    def _joined(self, c: int) -> bool:
        """Make *c* ready if it is RUNNING and joining (its joins can be resolved)."""
        if self._joining[c] and self._state[c] == RUNNING:
            self._joining[c] = 0
            self._running -= 1
            self._make_ready(c)
            return True
        return False

    def _done_pop(self, node: int) -> int:
        # _done(node) then _pop(), written out for the deque alone (no keys,
        # nothing pushed back): one call per task for the loop. Popping a
        # node leaves _running as it was.
        if self._keys is not None or self._heap or self._grown:
            self._done(node)
            return self._pop()
        self._ended += 1
        state = self._state
        state[node] = SUCCEEDED
        count = self._count
        queue = self._queue
        for c in self._child[self._child_off[node] : self._child_off[node + 1]]:
            k = count[c] - 1
            count[c] = k
            if k == 0 and state[c] == PENDING:
                seq = self._next_seq
                self._next_seq = seq + self._step
                self._seq[c] = seq
                state[c] = READY
                queue.append(c)
        take = self._take
        while queue:
            v = take()
            if state[v] == READY:
                state[v] = RUNNING
                return v
            self._stale -= 1
        self._running -= 1
        return -1

    def _check_node(self, node: int) -> int:
        if self._n == self._gn:
            return self._graph._check(node)
        node = _index(node)
        if not 0 <= node < self._n:
            raise IndexError(f"node {node} is out of range for a graph of {self._n} nodes")
        return node

    def _check(self, node: int, allowed: tuple[int, ...], action: str) -> int:
        node = self._check_node(node)
        st = self._state[node]
        if st not in allowed:
            raise ValueError(f"cannot {action} node {node}: it is {STATE_NAMES[st]}")
        return node

    @property
    def graph(self) -> Graph:
        """The graph this run is over."""
        return self._graph

    @property
    def ready(self) -> int:
        """How many nodes wait in the ready heap."""
        return len(self._queue) + len(self._heap) - self._stale

    @property
    def running(self) -> int:
        """How many nodes were popped and have not ended."""
        return self._running

    @property
    def ended(self) -> int:
        """How many nodes of the run have ended, in any final state."""
        return self._ended

    @property
    def total(self) -> int:
        """How many nodes take part in the run (all but the EXCLUDED ones)."""
        return self._total

    @property
    def finished(self) -> bool:
        """True once every node of the run has ended."""
        return self._ended == self._total

    def tally(self) -> tuple[int, int, int, int, int, int, int]:
        """``(ready, running, ended, total, failed, skipped, cancelled)``: the
        counters, in one call (succeeded is ended less the three others)."""
        return (
            len(self._queue) + len(self._heap) - self._stale,
            self._running,
            self._ended,
            self._total,
            self._failed,
            self._skipped,
            self._cancelled,
        )

    def state(self, node: int) -> int:
        """The state of *node* (one of the module's state constants)."""
        node = self._check_node(node)
        return self._state[node]

    def states(self) -> bytes:
        """A copy of every node's state, one byte per node."""
        return bytes(self._state)

    def pop(self) -> int:
        """Take the next ready node and mark it RUNNING; -1 when none is ready."""
        return self._pop()

    def pop_all(self) -> list[int]:
        """Pop every ready node, in heap order."""
        out = []
        v = self._pop()
        while v >= 0:
            out.append(v)
            v = self._pop()
        return out

    def order(self, node: int) -> int:
        """Where *node* stands among ready nodes of equal key, as of its last
        becoming ready (smaller first; with lifo the last to become ready is
        smallest)."""
        if not 0 <= node < self._n:
            raise IndexError(f"node {node} out of range")
        return self._seq[node]

    def push_back(self, node: int) -> None:
        """Return a popped node to the heap at the place it had (it could not start yet)."""
        node = self._check(node, (RUNNING,), "push back")
        self._running -= 1
        self._push(node)

    def pop_marked(self, marks: bytearray) -> list[int]:
        """Pop every ready node whose mark is set (``marks[node]``), in heap
        order; the other ready nodes stay ready, at the places they had (as
        :meth:`pop_all` then :meth:`push_back` of each would leave them)."""
        out = []
        rest = []
        m = len(marks)
        for v in self.pop_all():
            if v < m and marks[v]:
                out.append(v)
            else:
                rest.append(v)
        for v in rest:
            self._running -= 1
            self._push(v)
        return out

    def push_back_unmarked(self, nodes: list[int], marks: bytearray) -> None:
        """:meth:`push_back` each node of *nodes* whose mark (``marks[node]``) is 0."""
        m = len(marks)
        for node in nodes:
            node = self._check(node, (RUNNING,), "push back")
            if node < m and marks[node]:
                continue
            self._running -= 1
            self._push(node)

    def requeue(self, node: int) -> None:
        """Return a popped node to the heap as if it became ready now (a retry)."""
        node = self._check(node, (RUNNING,), "requeue")
        self._running -= 1
        self._make_ready(node)

    def done(self, node: int) -> int:
        """Mark a RUNNING node SUCCEEDED; return how many nodes became ready."""
        return self._done(self._check(node, (RUNNING,), "mark done"))

    def done_many(self, nodes: Iterable[int]) -> int:
        """``done`` for each node in turn; return how many nodes became ready."""
        total = 0
        for v in nodes:
            total += self.done(v)
        return total

    def _end(self, node: int, final: int) -> list[int]:
        # Breadth-first: default-trigger dependents of an unsuccessful node are
        # SKIPPED at once; all_done dependents count it as ended.
        self._state[node] = final
        self._ended += 1
        if final == FAILED:
            self._failed += 1
        else:
            self._cancelled += 1
        count = self._count
        state = self._state
        all_done = self._all_done
        skipped: list[int] = []
        queue = [node]
        for c in self._breadth_first(queue):
            k = count[c] - 1
            count[c] = k
            if state[c] != PENDING:
                self._joined(c)
                continue
            if all_done[c]:
                if k == 0:
                    self._make_ready(c)
            else:
                state[c] = SKIPPED
                self._ended += 1
                skipped.append(c)
                queue.append(c)
        self._skipped += len(skipped)
        return skipped

    def fail(self, node: int) -> list[int]:
        """Mark a RUNNING node FAILED; return the dependents this SKIPPED, breadth-first."""
        node = self._check(node, (RUNNING,), "fail")
        self._running -= 1
        return self._end(node, FAILED)

    def cancel(self, node: int) -> list[int]:
        """Mark a node that has not ended CANCELLED; return the dependents this SKIPPED."""
        node = self._check(node, (PENDING, READY, RUNNING), "cancel")
        st = self._state[node]
        if st == RUNNING:
            self._running -= 1
        elif st == READY:
            self._stale += 1
        return self._end(node, CANCELLED)

    def cancel_pending(self, *, keep_all_done: bool) -> list[int]:
        """CANCEL every PENDING or READY node, ascending; return them.

        With ``keep_all_done=True`` the all_done nodes stay, and become ready
        once all their dependencies have ended (teardown under fail-fast).
        """
        n = self._n
        state = self._state
        all_done = self._all_done
        gone = []
        for v in range(n):
            st = state[v]
            if (st == PENDING or st == READY) and not (keep_all_done and all_done[v]):
                if st == READY:
                    self._stale += 1
                state[v] = CANCELLED
                gone.append(v)
        self._ended += len(gone)
        self._cancelled += len(gone)
        count = self._count
        for v in gone:
            for c in self._children(v):
                k = count[c] - 1
                count[c] = k
                if k == 0 and state[c] == PENDING:
                    self._make_ready(c)
                else:
                    self._joined(c)
        return gone

    def _breadth_first(self, queue: list[int]) -> Iterator[int]:
        """The children of each node of *queue* in turn (see the module's ``_breadth_first``)."""
        if not self._grown:
            yield from _breadth_first(queue, self._child_off, self._child)
            return
        i = 0
        while i < len(queue):
            v = queue[i]
            i += 1
            yield from self._children(v)

    # --- growth during a run -------------------------------------------------

    @property
    def n(self) -> int:
        """The number of nodes: the graph's, and those added since."""
        return self._n

    def add(self, parents: Iterable[int], all_done: bool = False, key: float = 0.0) -> int:
        """Append a node depending on *parents* (nodes of the run); return it.

        Parents that SUCCEEDED are satisfied already, those that have not
        ended are waited for. A parent that FAILED, was SKIPPED or CANCELLED
        is ended too for an *all_done* node; any other node is then SKIPPED
        at once (read ``state``). A node with nothing to wait for is READY.
        *key* is its key in the ready heap (ignored without keys). Parents
        are checked before anything changes: ValueError for one that the
        run excludes, IndexError for one out of range.
        """
        if key != key:
            raise ValueError("keys must not be NaN")
        distinct = sorted({self._check_node(p) for p in parents})
        state = self._state
        for p in distinct:
            if state[p] == EXCLUDED:
                raise ValueError(f"cannot add a node after node {p}: it is excluded")
        v = self._n
        self._n = v + 1
        self._grown = True
        self._total += 1
        self._seq.append(0)
        self._all_done.append(1 if all_done else 0)
        self._joining.append(0)
        if self._keys is not None:
            self._keys.append(float(key))
        waiting = 0
        blocked = False
        for p in distinct:
            st = state[p]
            if st == SUCCEEDED:
                continue
            if st in (PENDING, READY, RUNNING):
                waiting += 1
                self._xchild.setdefault(p, []).append(v)
            elif not all_done:
                blocked = True
        self._count.append(waiting)
        state.append(PENDING)
        if blocked:
            # Its dependents (none yet) have nothing to skip: only it ends.
            state[v] = SKIPPED
            self._ended += 1
            self._skipped += 1
        elif waiting == 0:
            self._make_ready(v)
        return v

    def added_children(self, node: int) -> list[int]:
        """The nodes added during the run that wait for *node*: those added
        after it (``add``) and those joining it (``join``), in that order."""
        node = self._check_node(node)
        return list(self._xchild.get(node, ()))

    def join(self, node: int, on: Iterable[int]) -> int:
        """Make the RUNNING *node* wait for the nodes *on*; return how many it waits for.

        When every one of them has ended, or as soon as one ends other than
        SUCCEEDED, *node* goes back to the ready heap (then pop it and end it
        with done or fail). Nodes that have ended already are not waited for;
        0 means nothing to wait for (*node* stays RUNNING).
        """
        node = self._check(node, (RUNNING,), "join")
        distinct = sorted({self._check_node(j) for j in on} - {node})
        state = self._state
        live = []
        for j in distinct:
            st = state[j]
            if st == EXCLUDED:
                raise ValueError(f"cannot join node {j}: it is excluded")
            if st in (PENDING, READY, RUNNING):
                live.append(j)
            elif st != SUCCEEDED:
                return 0  # one has ended other than SUCCEEDED: resolve now
        for j in live:
            self._xchild.setdefault(j, []).append(node)
        waiting = len(live)
        if waiting:
            self._grown = True
            self._count[node] += waiting
            self._joining[node] = 1
        return waiting


class Grower:
    """The compiled core's ``Run.add`` shortcut (see ``_core.Grower``), absent
    here: ``add`` always returns None, so every add takes ``Growth.add``,
    the path the compiled one matches."""

    def __init__(
        self,
        st: RunState,
        growth: object,
        engine: object,
        fork: object,
        loop: object,
        columns: object,
        current: object,
        batched: type,
        default_options: object,
        unbounded: bool,
    ) -> None:
        # What the compiled one tells it: the run has ended; the growth keeps levels.
        self.closed = False
        self.levels = False

    def add(self, fn: object, args: tuple[object, ...], options: dict[str, object]) -> None:
        """None: the general path adds the task."""
        return None

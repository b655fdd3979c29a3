# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled graph core. Same API, results and errors as ``trio_dag._native._core_py``.

Nodes are the integers ``0..n-1``; an edge ``src -> dst`` makes *src* a
dependency (parent) of *dst*. Everything lives in C arrays of int32 (CSR
adjacency, counters, the ready heap), so popping and finishing a node touch no
Python object. The argument checks and state constants are shared with the
twin (both import them from ``trio_dag._native._shared``), so both say the
same thing about bad input, and nothing reaches a C int that does not fit.
"""

cimport cython
from cpython.array cimport array, clone
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongAndOverflow, PyLong_AsSsize_t, PyLong_CheckExact
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.contextvars cimport get_value
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memcpy, memset

from operator import index as _index

from trio_dag._native._shared import (
    CANCELLED,
    EXCLUDED,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    SKIPPED,
    STATE_NAMES,
    SUCCEEDED,
    check_edge_count,
    check_n,
    int_array,
)

cdef array _INT_TEMPLATE = array("i")
cdef array _DOUBLE_TEMPLATE = array("d")

# The seq past which RunState renumbers its nodes' (the top of an int32);
# lowered by tests only, through _set_seq_max.
cdef int64_t _seq_max = 2147483647


def _set_seq_max(value):
    """Set the seq at which a RunState renumbers (tests); returns the old one."""
    global _seq_max
    old = _seq_max
    _seq_max = value
    return old


cdef uint8_t C_PENDING = PENDING
cdef uint8_t C_READY = READY
cdef uint8_t C_RUNNING = RUNNING
cdef uint8_t C_SUCCEEDED = SUCCEEDED
cdef uint8_t C_FAILED = FAILED
cdef uint8_t C_SKIPPED = SKIPPED
cdef uint8_t C_CANCELLED = CANCELLED
cdef uint8_t C_EXCLUDED = EXCLUDED


cdef void* _alloc(Py_ssize_t count, size_t size) except NULL:
    cdef void* p = PyMem_RawMalloc(<size_t>(count if count > 0 else 1) * size)
    if p == NULL:
        raise MemoryError()
    return p


cdef void* _zeros(Py_ssize_t count, size_t size) except NULL:
    cdef void* p = _alloc(count, size)
    memset(p, 0, <size_t>(count if count > 0 else 1) * size)
    return p


cdef void* _regrow(void* p, Py_ssize_t count, size_t size) except NULL:
    cdef void* q = PyMem_RawRealloc(p, <size_t>(count if count > 0 else 1) * size)
    if q == NULL:
        raise MemoryError()
    return q


cdef array _int_result(const int* data, Py_ssize_t count):
    cdef array out = clone(_INT_TEMPLATE, count, False)
    if count:
        memcpy(out.data.as_ints, data, <size_t>count * sizeof(int))
    return out


@cython.final
@cython.no_gc  # it holds only the two shared arrays, exact array('i'): no cycle
cdef class Graph:
    """An immutable graph in CSR form (children and parents), built in O(n + e).

    Both adjacency lists are sorted by node index and duplicate edges collapse
    into one, so every result below is deterministic.

    A graph holds at most ``MAX_NODES`` (2**31 - 2) nodes and is given at
    most ``MAX_EDGES`` (2**31 - 1) edges, repeats included: what the compiled
    core's C ints hold (SPEC sets no limit). Both twins raise the same
    ValueError past them, before building anything.
    """

    # __cinit__, not __init__: it runs exactly once, so no call can leave
    # the arrays out of step with _n (a second __init__ could).
    def __cinit__(self, n, sources, targets=None, *, offsets=None):
        if offsets is not None:
            if targets is not None:
                raise TypeError("give targets or offsets, not both")
            self._from_offsets(n, sources, offsets)
            return
        if targets is None:
            raise TypeError("Graph() needs targets, or offsets=")
        n = check_n(n)
        cdef array src = int_array(sources, "sources")
        cdef array dst = int_array(targets, "targets")
        if len(src) != len(dst):
            raise ValueError(
                f"sources and targets must have the same length, got {len(src)} and {len(dst)}"
            )
        # Checked before anything is allocated: n + 1 offsets and the edge
        # counts must fit the C ints they are kept in.
        check_edge_count(len(src))
        cdef int nn = n
        cdef Py_ssize_t e = len(src), i, j
        cdef int* s = src.data.as_ints
        cdef int* d = dst.data.as_ints
        for i in range(e):
            if not (0 <= s[i] < nn and 0 <= d[i] < nn):
                bad = s[i] if not 0 <= s[i] < nn else d[i]
                raise ValueError(
                    f"edge {i} ({s[i]} -> {d[i]}) names node {bad}, but the graph has {nn} nodes"
                )
        self._build(nn, s, d, e)

    cdef int _build(self, int n, const int* s, const int* d, Py_ssize_t e) except -1:
        # Parents first, grouped by child: when the edges already come grouped
        # by target (as the DAG records them), the sources are used as they
        # are; otherwise a counting sort groups them. Children are then filled
        # in ascending order, which makes duplicate edges adjacent, and the
        # parents are rebuilt from the children, sorted and distinct. Edges
        # grouped by target with strictly ascending sources in each group
        # are already both: their parents are a copy, and no edge is a
        # duplicate (one pass over the edges instead of four).
        cdef int v, p, c
        cdef Py_ssize_t i, j
        cdef bint grouped = True
        cdef bint ascending = True
        cdef int* off = <int*>_zeros(n + 1, sizeof(int))
        cdef int* fill = NULL
        cdef int* by_dst = NULL
        cdef int* last = NULL
        cdef const int* grouped_src = s
        try:
            fill = <int*>_alloc(n, sizeof(int))
            self._child_off = <int*>_zeros(n + 1, sizeof(int))
            with nogil:
                for i in range(e):
                    off[d[i] + 1] += 1
                    if i and d[i] <= d[i - 1]:
                        if d[i] < d[i - 1]:
                            grouped = False
                            ascending = False
                        elif s[i] <= s[i - 1]:
                            ascending = False
                for v in range(n):
                    off[v + 1] += off[v]
            if ascending:
                self._build_ascending(n, s, d, e, off, fill)
                off = NULL  # now the parents' offsets
                return 0
            self._par_off = <int*>_zeros(n + 1, sizeof(int))
            last = <int*>_alloc(n, sizeof(int))
            if not grouped:
                by_dst = <int*>_alloc(e, sizeof(int))
                with nogil:
                    memcpy(fill, off, <size_t>n * sizeof(int))
                    for i in range(e):
                        by_dst[fill[d[i]]] = s[i]
                        fill[d[i]] += 1
                grouped_src = by_dst
            with nogil:
                memset(last, 0xFF, <size_t>n * sizeof(int))
                for v in range(n):
                    for j in range(off[v], off[v + 1]):
                        p = grouped_src[j]
                        if last[p] != v:
                            last[p] = v
                            self._child_off[p + 1] += 1
                for v in range(n):
                    self._child_off[v + 1] += self._child_off[v]
            self._child = <int*>_alloc(self._child_off[n], sizeof(int))
            with nogil:
                memcpy(fill, self._child_off, <size_t>n * sizeof(int))
                memset(last, 0xFF, <size_t>n * sizeof(int))
                for v in range(n):
                    for j in range(off[v], off[v + 1]):
                        p = grouped_src[j]
                        if last[p] != v:
                            last[p] = v
                            self._child[fill[p]] = v
                            fill[p] += 1
            PyMem_RawFree(by_dst)
            by_dst = NULL
            self._par = <int*>_alloc(self._child_off[n], sizeof(int))
            with nogil:
                for j in range(self._child_off[n]):
                    self._par_off[self._child[j] + 1] += 1
                for v in range(n):
                    self._par_off[v + 1] += self._par_off[v]
                memcpy(fill, self._par_off, <size_t>n * sizeof(int))
                for p in range(n):
                    for j in range(self._child_off[p], self._child_off[p + 1]):
                        c = self._child[j]
                        self._par[fill[c]] = p
                        fill[c] += 1
            self._n = n
        finally:
            PyMem_RawFree(off)
            PyMem_RawFree(fill)
            PyMem_RawFree(by_dst)
            PyMem_RawFree(last)
        return 0

    cdef int _build_ascending(
        self, int n, const int* s, const int* d, Py_ssize_t e, int* off, int* fill
    ) except -1:
        # The edges are grouped by target, sources strictly ascending in each
        # group: *off* (the targets' offsets) becomes the parents' offsets and
        # the parents are the sources as they are. Filling children by
        # ascending target keeps each child list sorted.
        cdef int p
        cdef Py_ssize_t i
        self._par = <int*>_alloc(e, sizeof(int))
        self._child = <int*>_alloc(e, sizeof(int))
        with nogil:
            memcpy(self._par, s, <size_t>e * sizeof(int))
            for i in range(e):
                self._child_off[s[i] + 1] += 1
            for p in range(n):
                self._child_off[p + 1] += self._child_off[p]
            memcpy(fill, self._child_off, <size_t>n * sizeof(int))
            for i in range(e):
                p = s[i]
                self._child[fill[p]] = d[i]
                fill[p] += 1
        self._par_off = off
        self._n = n
        return 0

    cdef int _from_offsets(self, object n_, object sources, object offsets) except -1:
        # Node v's parents are sources[offsets[v]:offsets[v + 1]], as a DAG
        # records its edges. When each group ascends strictly (no duplicate
        # edge), they are the parents as they are: the graph keeps the two
        # arrays and reads them in place instead of a copy (the DAG only
        # appends to them, so the first offsets[n] sources never change;
        # an append may move the buffer, so _sync re-reads the pointers
        # before each use). Otherwise the edges are built as in the other form.
        cdef int n = check_n(n_)
        cdef array src = int_array(sources, "sources")
        cdef array off = int_array(offsets, "offsets")
        if type(src) is not array:
            src = array("i", src)
        if type(off) is not array:
            off = array("i", off)
        if len(off) < n + 1:
            raise ValueError(f"offsets must have at least n + 1 ({n + 1}) entries, got {len(off)}")
        cdef int* o = off.data.as_ints
        cdef int* s = src.data.as_ints
        cdef Py_ssize_t e, j
        cdef int v, p
        cdef bint ascending = True
        if o[0] != 0:
            raise ValueError(f"offsets must start at 0, got {o[0]}")
        for v in range(n):
            if o[v + 1] < o[v]:
                raise ValueError(f"offsets must not decrease, but entry {v + 1} is below entry {v}")
        e = o[n]
        if e > len(src):
            raise ValueError(f"offsets end at {e}, past the {len(src)} sources")
        check_edge_count(e)
        for v in range(n):
            for j in range(o[v], o[v + 1]):
                if not 0 <= s[j] < n:
                    raise ValueError(
                        f"edge {j} ({s[j]} -> {v}) names node {s[j]}, but the graph has {n} nodes"
                    )
                if j > o[v] and s[j] <= s[j - 1]:
                    ascending = False
        cdef array dst
        if not ascending:
            dst = _targets(off, n)
            self._build(n, s, dst.data.as_ints, e)
            return 0
        cdef int* fill = <int*>_alloc(n, sizeof(int))
        try:
            self._child_off = <int*>_zeros(n + 1, sizeof(int))
            self._child = <int*>_alloc(e, sizeof(int))
            with nogil:
                for j in range(e):
                    self._child_off[s[j] + 1] += 1
                for p in range(n):
                    self._child_off[p + 1] += self._child_off[p]
                memcpy(fill, self._child_off, <size_t>n * sizeof(int))
                for v in range(n):
                    for j in range(o[v], o[v + 1]):
                        p = s[j]
                        self._child[fill[p]] = v
                        fill[p] += 1
        finally:
            PyMem_RawFree(fill)
        self._shared_off = off
        self._shared_par = src
        self._borrowed = True
        self._n = n
        self._sync()
        return 0

    cdef int _sync(self) except -1:
        # The shared arrays' buffers, where they are now (see _from_offsets).
        # They only grow, but for DAG.map undoing a failed call: a graph built
        # in the meantime must not read past them.
        cdef array off, par
        if self._borrowed:
            off = <array>self._shared_off
            par = <array>self._shared_par
            if len(off) < self._n + 1 or len(par) < off.data.as_ints[self._n]:
                raise RuntimeError("the edges this graph was built from have been removed")
            self._par_off = off.data.as_ints
            self._par = par.data.as_ints
        return 0

    def __dealloc__(self):
        PyMem_RawFree(self._child_off)
        PyMem_RawFree(self._child)
        if not self._borrowed:  # (the GC may have cleared the shared arrays' fields)
            PyMem_RawFree(self._par_off)
            PyMem_RawFree(self._par)

    @property
    def n(self):
        """The number of nodes."""
        return self._n

    @property
    def num_edges(self):
        """The number of distinct edges."""
        return self._child_off[self._n] if self._child_off != NULL else 0

    cdef Py_ssize_t _check(self, object node) except -1:
        cdef long v
        cdef int overflow = 0
        if PyLong_CheckExact(node):
            # The common case, without a call to operator.index.
            v = PyLong_AsLongAndOverflow(node, &overflow)
            if 0 <= v < self._n and not overflow:
                return v
        else:
            node = _index(node)
        if not 0 <= node < self._n:
            raise IndexError(f"node {node} is out of range for a graph of {self._n} nodes")
        return node

    def children(self, node_):
        """The nodes that depend on *node*, ascending."""
        cdef Py_ssize_t node = self._check(node_)
        return [self._child[j] for j in range(self._child_off[node], self._child_off[node + 1])]

    def parents(self, node_):
        """The nodes *node* depends on, ascending."""
        cdef Py_ssize_t node = self._check(node_)
        self._sync()
        return [self._par[j] for j in range(self._par_off[node], self._par_off[node + 1])]

    def indegree(self, node_):
        """How many distinct parents *node* has."""
        cdef Py_ssize_t node = self._check(node_)
        self._sync()
        return self._par_off[node + 1] - self._par_off[node]

    def outdegree(self, node_):
        """How many distinct children *node* has."""
        cdef Py_ssize_t node = self._check(node_)
        return self._child_off[node + 1] - self._child_off[node]

    cdef int _kahn(self, int* order) noexcept nogil:
        # Breadth-first Kahn: sources ascending, children in CSR order. Nodes on
        # or below a cycle never reach indegree zero and are left out. Returns
        # how many nodes it ordered, or -1 when out of memory.
        cdef int n = self._n, v, c, head = 0, tail = 0
        cdef Py_ssize_t j
        cdef int* count = <int*>PyMem_RawMalloc(<size_t>(n if n > 0 else 1) * sizeof(int))
        if count == NULL:
            return -1
        for v in range(n):
            count[v] = self._par_off[v + 1] - self._par_off[v]
            if count[v] == 0:
                order[tail] = v
                tail += 1
        while head < tail:
            v = order[head]
            head += 1
            for j in range(self._child_off[v], self._child_off[v + 1]):
                c = self._child[j]
                count[c] -= 1
                if count[c] == 0:
                    order[tail] = c
                    tail += 1
        PyMem_RawFree(count)
        return tail

    cdef int* _acyclic_order(self) except NULL:
        cdef int* order = <int*>_alloc(self._n, sizeof(int))
        cdef int got
        self._sync()
        with nogil:
            got = self._kahn(order)
        if got != self._n:
            PyMem_RawFree(order)
            if got < 0:
                raise MemoryError()
            raise ValueError("the graph has a cycle; find_cycle() shows one")
        return order

    def find_cycle(self):
        """One cycle as ``[a, b, ..., a]`` along edge direction, or None.

        The cycle starts at its smallest node. Linear and iterative: Kahn's
        algorithm removes every node not on or below a cycle; from the smallest
        node left, following any remaining parent must close a loop.
        """
        cdef int n = self._n, got, v, start, k, i, length
        cdef Py_ssize_t j
        cdef int* order = <int*>_alloc(n, sizeof(int))
        cdef int* pos = NULL
        cdef uint8_t* left = NULL
        try:
            self._sync()
            with nogil:
                got = self._kahn(order)
            if got < 0:
                raise MemoryError()
            if got == n:
                return None
            left = <uint8_t*>_alloc(n, sizeof(uint8_t))
            memset(left, 1, <size_t>n)
            for i in range(got):
                left[order[i]] = 0
            start = 0
            while not left[start]:
                start += 1
            # ``order`` is reused as the path, ``pos`` as each node's place on it.
            pos = <int*>_alloc(n, sizeof(int))
            memset(pos, 0xFF, <size_t>n * sizeof(int))
            length = 0
            v = start
            while pos[v] < 0:
                pos[v] = length
                order[length] = v
                length += 1
                for j in range(self._par_off[v], self._par_off[v + 1]):
                    if left[self._par[j]]:
                        v = self._par[j]
                        break
            loop = [order[i] for i in range(length - 1, pos[v] - 1, -1)]
        finally:
            PyMem_RawFree(order)
            PyMem_RawFree(pos)
            PyMem_RawFree(left)
        # ``loop`` runs along edge direction, closing from its last node back
        # to its first; rotate it to start at its smallest node.
        k = loop.index(min(loop))
        loop = loop[k:] + loop[:k]
        loop.append(loop[0])
        return loop

    def topological_order(self):
        """Every node, parents before children (Kahn's order, sources ascending).

        Raises ValueError when the graph has a cycle.
        """
        cdef int* order = self._acyclic_order()
        try:
            return _int_result(order, self._n)
        finally:
            PyMem_RawFree(order)

    def levels(self):
        """For each node, the number of links in its longest chain of dependencies."""
        cdef int* order = self._acyclic_order()
        cdef array out = clone(_INT_TEMPLATE, self._n, True)
        cdef int* level = out.data.as_ints
        cdef int i, v, c, nxt
        cdef Py_ssize_t j
        with nogil:
            for i in range(self._n):
                v = order[i]
                nxt = level[v] + 1
                for j in range(self._child_off[v], self._child_off[v + 1]):
                    c = self._child[j]
                    if level[c] < nxt:
                        level[c] = nxt
        PyMem_RawFree(order)
        return out

    def upward_rank(self, costs):
        """For each node, the largest total cost of a path from it to a sink, itself included."""
        cdef int n = self._n, i, v
        cdef Py_ssize_t j
        cdef double best, r
        if len(costs) != n:
            raise ValueError(f"costs must have one value per node ({n}), got {len(costs)}")
        cdef array out = clone(_DOUBLE_TEMPLATE, n, True)
        cdef double* rank = out.data.as_doubles
        cdef int* order = self._acyclic_order()
        try:
            for i in range(n - 1, -1, -1):
                v = order[i]
                best = 0.0
                for j in range(self._child_off[v], self._child_off[v + 1]):
                    r = rank[self._child[j]]
                    if r > best:
                        best = r
                rank[v] = float(costs[v]) + best
        finally:
            PyMem_RawFree(order)
        return out

    def ancestors(self, targets):
        """The targets and every node they depend on, directly or not, ascending."""
        cdef int n = self._n, v, p, top = 0, count = 0
        cdef Py_ssize_t j, t
        cdef uint8_t* mark = <uint8_t*>_zeros(n, sizeof(uint8_t))
        cdef int* stack = NULL
        cdef array out
        try:
            stack = <int*>_alloc(n, sizeof(int))
            for target in targets:
                t = self._check(target)
                if not mark[t]:
                    mark[t] = 1
                    stack[top] = <int>t
                    top += 1
            self._sync()
            with nogil:
                while top:
                    top -= 1
                    v = stack[top]
                    for j in range(self._par_off[v], self._par_off[v + 1]):
                        p = self._par[j]
                        if not mark[p]:
                            mark[p] = 1
                            stack[top] = p
                            top += 1
                for v in range(n):
                    if mark[v]:
                        stack[count] = v
                        count += 1
            out = _int_result(stack, count)
        finally:
            PyMem_RawFree(mark)
            PyMem_RawFree(stack)
        return out


@cython.final
cdef class RunState:
    """One run's bookkeeping over a :class:`Graph`.

    Ready nodes wait in a heap ordered by ``keys[node]`` (smallest first; all
    zero when *keys* is None), then by the order in which they became ready
    (first first, or last first with ``lifo=True``). Nodes whose index is in
    *all_done* become ready when every parent has ended in any state; the
    others when every parent SUCCEEDED. *targets* (None: every node) limits
    the run to those nodes and their ancestors; the rest are EXCLUDED.

    Without keys, nodes that become ready wait in a ring buffer instead, in
    that order already (a queue, or with lifo a stack: O(1) each), and the
    heap holds only the nodes pushed back to their old place, as the twin does.
    """

    # __cinit__, as for Graph: every array is made once, for one graph.
    def __cinit__(self, graph, keys=None, *, lifo=False, all_done=None, targets=None):
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a Graph, not {type(graph).__name__}")
        cdef Graph g = <Graph>graph
        cdef int n = g._n, v
        cdef Py_ssize_t j, i
        cdef double k
        self._graph = g
        self._lifo = bool(lifo)
        if keys is not None:
            if len(keys) != n:
                raise ValueError(f"keys must have one value per node ({n}), got {len(keys)}")
            self._keys = <double*>_alloc(n, sizeof(double))
            for i in range(n):
                self._keys[i] = float(keys[i])
            for i in range(n):
                k = self._keys[i]
                if k != k:
                    raise ValueError("keys must not be NaN")
        if all_done is not None:
            self._all_done = <uint8_t*>_zeros(n, sizeof(uint8_t))
            for node in all_done:
                i = g._check(node)
                self._all_done[i] = 1
        self._state = <uint8_t*>_zeros(n, sizeof(uint8_t))
        if targets is not None:
            memset(self._state, C_EXCLUDED, <size_t>n)
            for node in g.ancestors(targets):
                self._state[<int>node] = C_PENDING
        self._count = <int*>_alloc(n, sizeof(int))
        self._seq = <int32_t*>_zeros(n, sizeof(int32_t))
        if keys is None:
            self._q_cap = 1
            while self._q_cap < n and self._q_cap < 1024:
                self._q_cap <<= 1
            self._queue = <int*>_alloc(self._q_cap, sizeof(int))
            self._heap_cap = 16
        else:
            self._heap_cap = n if n < 1024 else 1024
        self._heap = <int*>_alloc(self._heap_cap, sizeof(int))
        self._total = n
        self._n = n
        self._cap = n
        g._sync()
        for v in range(n):
            self._count[v] = g._par_off[v + 1] - g._par_off[v]
            if self._state[v] == C_EXCLUDED:
                self._total -= 1
        for v in range(n):
            if self._count[v] == 0 and self._state[v] == C_PENDING:
                self._make_ready(v)

    def __dealloc__(self):
        PyMem_RawFree(self._keys)
        PyMem_RawFree(self._all_done)
        PyMem_RawFree(self._count)
        PyMem_RawFree(self._state)
        PyMem_RawFree(self._seq)
        PyMem_RawFree(self._heap)
        PyMem_RawFree(self._queue)
        PyMem_RawFree(self._joining)
        PyMem_RawFree(self._xhead)
        PyMem_RawFree(self._xtail)
        PyMem_RawFree(self._xnext)
        PyMem_RawFree(self._xdst)

    cdef inline bint _before(self, int a, int b) noexcept:
        if self._keys != NULL and self._keys[a] != self._keys[b]:
            return self._keys[a] < self._keys[b]
        return self._seq[a] < self._seq[b]

    cdef int _make_ready(self, int v) except -1:
        cdef int64_t seq = self._next_seq
        if seq >= _seq_max:
            self._renumber()
            seq = self._next_seq
        self._next_seq = seq + 1
        self._seq[v] = <int32_t>(-seq if self._lifo else seq)
        if self._queue == NULL:
            return self._push(v)
        # Its seq is past every queued node's: it joins the ring's tail.
        if self._q_len == self._q_cap:
            self._grow_queue()
        self._queue[(self._q_head + self._q_len) & (self._q_cap - 1)] = v
        self._q_len += 1
        self._state[v] = C_READY
        self._ready += 1
        return 0

    cdef int _renumber(self) except -1:
        # A node's seq is an int32 (4 bytes a node less): once 2**31 - 1 nodes
        # have become ready in one run (retries count), every node's seq is
        # renumbered 0..n-1 in its order, so every comparison stays as it was
        # and the next seq is past (with lifo: below) them all.
        cdef Py_ssize_t n = self._n, rank
        cdef list values = [self._seq[v] for v in range(n)]
        cdef list order = sorted(range(n), key=values.__getitem__)
        for rank in range(n):
            self._seq[<Py_ssize_t>order[rank]] = <int32_t>(rank - n if self._lifo else rank)
        self._next_seq = n + 1 if self._lifo else n
        return 0

    cdef int _grow_queue(self) except -1:
        # Double the ring, its nodes unrolled from the head to the front.
        cdef Py_ssize_t cap = self._q_cap, first = cap - self._q_head
        cdef int* grown = <int*>_alloc(2 * cap, sizeof(int))
        memcpy(grown, self._queue + self._q_head, <size_t>first * sizeof(int))
        memcpy(grown + first, self._queue, <size_t>self._q_head * sizeof(int))
        PyMem_RawFree(self._queue)
        self._queue = grown
        self._q_head = 0
        self._q_cap = 2 * cap
        return 0

    cdef inline int _take(self) noexcept:
        # The next ready node by its seq: the ring's front (tail with lifo) or
        # a node in the heap; -1 when both are empty. The node may be stale
        # (no longer READY). With keys the ring stays empty: the heap alone.
        cdef int front
        cdef Py_ssize_t at
        if self._q_len:
            if self._lifo:
                at = (self._q_head + self._q_len - 1) & (self._q_cap - 1)
            else:
                at = self._q_head
            front = self._queue[at]
            if not self._heap_len or self._seq[front] < self._seq[self._heap[0]]:
                self._q_len -= 1
                if not self._lifo:
                    self._q_head = (at + 1) & (self._q_cap - 1)
                return front
        elif not self._heap_len:
            return -1
        return self._heap_pop()

    cdef int _push(self, int v) except -1:
        cdef Py_ssize_t i, parent, cap
        cdef int* grown
        if self._heap_len == self._heap_cap:
            # The capacity changes only once the heap has grown: after a
            # MemoryError the next push must not write past the old heap.
            cap = self._heap_cap * 2 if self._heap_cap else 1
            grown = <int*>PyMem_RawRealloc(self._heap, <size_t>cap * sizeof(int))
            if grown == NULL:
                raise MemoryError()
            self._heap = grown
            self._heap_cap = cap
        self._state[v] = C_READY
        self._ready += 1
        i = self._heap_len
        self._heap_len += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not self._before(v, self._heap[parent]):
                break
            self._heap[i] = self._heap[parent]
            i = parent
        self._heap[i] = v
        return 0

    cdef int _heap_pop(self) noexcept:
        # Remove and return the heap's top; the heap is not empty.
        cdef int top = self._heap[0], last
        cdef Py_ssize_t i, child, size
        self._heap_len -= 1
        size = self._heap_len
        if size:
            last = self._heap[size]
            i = 0
            while True:
                child = 2 * i + 1
                if child >= size:
                    break
                if child + 1 < size and self._before(self._heap[child + 1], self._heap[child]):
                    child += 1
                if not self._before(self._heap[child], last):
                    break
                self._heap[i] = self._heap[child]
                i = child
            self._heap[i] = last
        return top

    cdef int _pop(self) noexcept:
        cdef int top
        while True:
            top = self._take()
            if top < 0:
                return -1
            if self._state[top] == C_READY:
                self._state[top] = C_RUNNING
                self._ready -= 1
                self._running += 1
                return top

    cdef Py_ssize_t _check_node(self, object node_) except -1:
        cdef long v
        cdef int overflow = 0
        if self._n == self._graph._n:
            return self._graph._check(node_)
        if PyLong_CheckExact(node_):
            v = PyLong_AsLongAndOverflow(node_, &overflow)
            if 0 <= v < self._n and not overflow:
                return v
        node = _index(node_)
        if not 0 <= node < self._n:
            raise IndexError(f"node {node} is out of range for a graph of {self._n} nodes")
        return node

    cdef Py_ssize_t _check_state(self, object node_, int allowed, str action) except -1:
        cdef Py_ssize_t node = self._check_node(node_)
        cdef uint8_t st = self._state[node]
        if not (allowed >> st) & 1:
            raise ValueError(f"cannot {action} node {node}: it is {STATE_NAMES[st]}")
        return node

    @property
    def graph(self):
        """The graph this run is over."""
        return self._graph

    @property
    def ready(self):
        """How many nodes wait in the ready heap."""
        return self._ready

    @property
    def running(self):
        """How many nodes were popped and have not ended."""
        return self._running

    @property
    def ended(self):
        """How many nodes of the run have ended, in any final state."""
        return self._ended

    @property
    def total(self):
        """How many nodes take part in the run (all but the EXCLUDED ones)."""
        return self._total

    @property
    def finished(self):
        """True once every node of the run has ended."""
        return self._ended == self._total

    def tally(self):
        """``(ready, running, ended, total, failed, skipped, cancelled)``: the
        counters, in one call (succeeded is ended less the three others)."""
        return (
            self._ready,
            self._running,
            self._ended,
            self._total,
            self._failed,
            self._skipped,
            self._cancelled,
        )

    def state(self, node):
        """The state of *node* (one of the module's state constants)."""
        return self._state[self._check_node(node)]

    def states(self):
        """A copy of every node's state, one byte per node."""
        return PyBytes_FromStringAndSize(<char*>self._state, self._n)

    def pop(self):
        """Take the next ready node and mark it RUNNING; -1 when none is ready."""
        return self._pop()

    def pop_all(self):
        """Pop every ready node, in heap order."""
        # Exactly the READY nodes come out: the list is sized once.
        cdef Py_ssize_t i, k = self._ready
        cdef list out = [None] * k
        for i in range(k):
            out[i] = self._pop()
        return out

    def order(self, Py_ssize_t node):
        """Where *node* stands among ready nodes of equal key, as of its last
        becoming ready (smaller first; with lifo the last to become ready is
        smallest). Renumbered (order kept) after 2**31 - 1 nodes became ready."""
        if node < 0 or node >= self._n:
            raise IndexError(f"node {node} out of range")
        return self._seq[node]

    def push_back(self, node_):
        """Return a popped node to the heap at the place it had (it could not start yet)."""
        cdef Py_ssize_t node = self._check_state(node_, 1 << C_RUNNING, "push back")
        self._running -= 1
        self._push(<int>node)

    def pop_marked(self, bytearray marks):
        """Pop every ready node whose mark is set (``marks[node]``), in heap
        order; the other ready nodes stay ready, at the places they had (as
        :meth:`pop_all` then :meth:`push_back` of each would leave them)."""
        cdef Py_ssize_t i, r = 0, k = self._ready, m = len(marks)
        cdef const unsigned char* mark = marks
        cdef list out = []
        cdef int v
        cdef int* rest = <int*>PyMem_RawMalloc(<size_t>(k if k else 1) * sizeof(int))
        if rest == NULL:
            raise MemoryError()
        try:
            for i in range(k):
                v = self._pop()
                if v < 0:
                    break
                if v < m and mark[v]:
                    out.append(v)
                else:
                    rest[r] = v
                    r += 1
            for i in range(r):
                self._running -= 1
                self._push(rest[i])
        finally:
            PyMem_RawFree(rest)
        return out

    def push_back_unmarked(self, list nodes, bytearray marks):
        """:meth:`push_back` each node of *nodes* whose mark (``marks[node]``) is 0."""
        cdef Py_ssize_t m = len(marks), node
        cdef object node_
        cdef const unsigned char* mark = marks
        for node_ in nodes:
            node = self._check_state(node_, 1 << C_RUNNING, "push back")
            if node < m and mark[node]:
                continue
            self._running -= 1
            self._push(<int>node)

    def requeue(self, node_):
        """Return a popped node to the heap as if it became ready now (a retry)."""
        cdef Py_ssize_t node = self._check_state(node_, 1 << C_RUNNING, "requeue")
        self._running -= 1
        self._make_ready(<int>node)

    cdef Py_ssize_t _done(self, int node) except -1:
        cdef Graph g = self._graph
        cdef Py_ssize_t j, before = self._ready
        cdef int c, e
        if self._joining != NULL and (self._joining[node] or self._state[node] != C_RUNNING):
            # A node that joins others (or went back to the heap to be
            # resolved) ends when its joins are resolved, not when its body returns.
            return 0
        self._running -= 1
        self._ended += 1
        self._state[node] = C_SUCCEEDED
        if node < g._n:
            for j in range(g._child_off[node], g._child_off[node + 1]):
                c = g._child[j]
                self._count[c] -= 1
                if self._count[c] == 0 and self._state[c] == C_PENDING:
                    self._make_ready(c)
        if self._xhead != NULL:
            e = self._xhead[node]
            while e >= 0:
                self._after_done(self._xdst[e])
                e = self._xnext[e]
        return self._ready - before

    cdef int _after_done(self, int c) except -1:
        self._count[c] -= 1
        if self._count[c] == 0:
            if self._state[c] == C_PENDING:
                self._make_ready(c)
            elif self._joining != NULL and self._joining[c] and self._state[c] == C_RUNNING:
                self._unjoin(c)
        return 0

    cdef int _unjoin(self, int c) except -1:
        # A joining node whose joins can be resolved goes back to the heap.
        self._joining[c] = 0
        self._running -= 1
        return self._make_ready(c)

    cdef int _after_end(self, int c, list skipped) except -1:
        self._count[c] -= 1
        if self._state[c] != C_PENDING:
            if self._joining != NULL and self._joining[c] and self._state[c] == C_RUNNING:
                self._unjoin(c)
            return 0
        if self._all_done != NULL and self._all_done[c]:
            if self._count[c] == 0:
                self._make_ready(c)
        else:
            self._state[c] = C_SKIPPED
            self._ended += 1
            skipped.append(c)
        return 0

    cdef int _after_cancel(self, int c) except -1:
        self._count[c] -= 1
        if self._count[c] == 0 and self._state[c] == C_PENDING:
            self._make_ready(c)
        elif self._joining != NULL and self._joining[c] and self._state[c] == C_RUNNING:
            self._unjoin(c)
        return 0

    def done(self, node_):
        """Mark a RUNNING node SUCCEEDED; return how many nodes became ready."""
        cdef Py_ssize_t node = self._check_state(node_, 1 << C_RUNNING, "mark done")
        return self._done(<int>node)

    def done_many(self, nodes):
        """``done`` for each node in turn; return how many nodes became ready."""
        cdef Py_ssize_t total = 0, v
        for node in nodes:
            v = self._check_state(node, 1 << C_RUNNING, "mark done")
            total += self._done(<int>v)
        return total

    cdef list _end(self, int node, uint8_t final):
        # Breadth-first: default-trigger dependents of an unsuccessful node are
        # SKIPPED at once; all_done dependents count it as ended. The list of
        # skipped nodes doubles as the queue.
        cdef Graph g = self._graph
        cdef list skipped = []
        cdef Py_ssize_t i = -1, j
        cdef int v = node, c, e
        self._state[node] = final
        self._ended += 1
        if final == C_FAILED:
            self._failed += 1
        else:
            self._cancelled += 1
        while True:
            if v < g._n:
                for j in range(g._child_off[v], g._child_off[v + 1]):
                    self._after_end(g._child[j], skipped)
            if self._xhead != NULL:
                e = self._xhead[v]
                while e >= 0:
                    self._after_end(self._xdst[e], skipped)
                    e = self._xnext[e]
            i += 1
            if i >= len(skipped):
                self._skipped += len(skipped)
                return skipped
            v = skipped[i]

    def fail(self, node_):
        """Mark a RUNNING node FAILED; return the dependents this SKIPPED, breadth-first."""
        cdef Py_ssize_t node = self._check_state(node_, 1 << C_RUNNING, "fail")
        self._running -= 1
        return self._end(<int>node, C_FAILED)

    def cancel(self, node_):
        """Mark a node that has not ended CANCELLED; return the dependents this SKIPPED."""
        cdef Py_ssize_t node = self._check_state(
            node_, (1 << C_PENDING) | (1 << C_READY) | (1 << C_RUNNING), "cancel"
        )
        cdef uint8_t st = self._state[node]
        if st == C_RUNNING:
            self._running -= 1
        elif st == C_READY:
            self._ready -= 1
        return self._end(<int>node, C_CANCELLED)

    def cancel_pending(self, *, bint keep_all_done):
        """CANCEL every PENDING or READY node, ascending; return them.

        With ``keep_all_done=True`` the all_done nodes stay, and become ready
        once all their dependencies have ended (teardown under fail-fast).
        """
        cdef Graph g = self._graph
        cdef int n = self._n, v, c, e
        cdef uint8_t st
        cdef Py_ssize_t j, i
        cdef list gone = []
        self._stopping = True
        for v in range(n):
            st = self._state[v]
            if (st == C_PENDING or st == C_READY) and not (
                keep_all_done and self._all_done != NULL and self._all_done[v]
            ):
                if st == C_READY:
                    self._ready -= 1
                self._state[v] = C_CANCELLED
                gone.append(v)
        self._ended += len(gone)
        self._cancelled += len(gone)
        for i in range(len(gone)):
            v = gone[i]
            if v < g._n:
                for j in range(g._child_off[v], g._child_off[v + 1]):
                    self._after_cancel(g._child[j])
            if self._xhead != NULL:
                e = self._xhead[v]
                while e >= 0:
                    self._after_cancel(self._xdst[e])
                    e = self._xnext[e]
        return gone

    # --- growth during a run -------------------------------------------------

    @property
    def n(self):
        """The number of nodes: the graph's, and those added since."""
        return self._n

    cdef int _grow_nodes(self) except -1:
        # Room for one more node: every per-node array doubles together.
        cdef Py_ssize_t cap = self._cap * 2 if self._cap >= 8 else 16
        cdef Py_ssize_t old = self._cap, i
        self._state = <uint8_t*>_regrow(self._state, cap, sizeof(uint8_t))
        self._count = <int*>_regrow(self._count, cap, sizeof(int))
        self._seq = <int32_t*>_regrow(self._seq, cap, sizeof(int32_t))
        if self._keys != NULL:
            self._keys = <double*>_regrow(self._keys, cap, sizeof(double))
        if self._all_done == NULL:
            self._all_done = <uint8_t*>_zeros(cap, sizeof(uint8_t))
        else:
            self._all_done = <uint8_t*>_regrow(self._all_done, cap, sizeof(uint8_t))
            memset(self._all_done + old, 0, <size_t>(cap - old))
        self._grow_growth(cap)
        self._cap = cap
        return 0

    cdef int _grow_growth(self, Py_ssize_t cap) except -1:
        # The arrays of growth: made at the first add or join, with -1 heads.
        cdef Py_ssize_t old = self._cap if self._xhead != NULL else 0, i
        if self._xhead == NULL:
            self._xhead = <int*>_alloc(cap, sizeof(int))
            self._xtail = <int*>_alloc(cap, sizeof(int))
            self._joining = <uint8_t*>_zeros(cap, sizeof(uint8_t))
        else:
            self._xhead = <int*>_regrow(self._xhead, cap, sizeof(int))
            self._xtail = <int*>_regrow(self._xtail, cap, sizeof(int))
            self._joining = <uint8_t*>_regrow(self._joining, cap, sizeof(uint8_t))
            memset(self._joining + old, 0, <size_t>(cap - old))
        for i in range(old, cap):
            self._xhead[i] = -1
            self._xtail[i] = -1
        return 0

    cdef int _add_edge(self, int p, int c) except -1:
        # Append p -> c to p's list of edges added during the run.
        cdef Py_ssize_t cap
        if self._xlen == self._xcap:
            cap = self._xcap * 2 if self._xcap else 64
            self._xnext = <int*>_regrow(self._xnext, cap, sizeof(int))
            self._xdst = <int*>_regrow(self._xdst, cap, sizeof(int))
            self._xcap = cap
        cdef int e = <int>self._xlen
        self._xlen += 1
        self._xdst[e] = c
        self._xnext[e] = -1
        if self._xtail[p] >= 0:
            self._xnext[self._xtail[p]] = e
        else:
            self._xhead[p] = e
        self._xtail[p] = e
        return 0

    def add(self, parents, bint all_done=False, double key=0.0):
        """Append a node depending on *parents* (nodes of the run); return it.

        Parents that SUCCEEDED are satisfied already, those that have not
        ended are waited for. A parent that FAILED, was SKIPPED or CANCELLED
        is ended too for an *all_done* node; any other node is then SKIPPED
        at once (read ``state``). A node with nothing to wait for is READY.
        *key* is its key in the ready heap (ignored without keys). Parents
        are checked before anything changes: ValueError for one that the
        run excludes, IndexError for one out of range.
        """
        cdef Py_ssize_t p, j
        cdef list distinct = None
        cdef array given
        cdef int* at
        if key != key:
            raise ValueError("keys must not be NaN")
        if type(parents) is array and (<array>parents).ob_descr.typecode == b"i":
            # The common call (run.add's): a few parents in an int array,
            # checked in place; duplicates are skipped (_append). Anything out
            # of range or excluded takes the general way, for its error.
            given = <array>parents
            at = given.data.as_ints
            for j in range(len(given)):
                if not 0 <= at[j] < self._n or self._state[at[j]] == C_EXCLUDED:
                    break
            else:
                return self._append(at, len(given), all_done, key, True)
        distinct = sorted({self._check_node(p) for p in parents})
        for p in distinct:
            if self._state[p] == C_EXCLUDED:
                raise ValueError(f"cannot add a node after node {p}: it is excluded")
        given = array("i", distinct)
        return self._append(given.data.as_ints, len(distinct), all_done, key, False)

    cdef int _append(
        self, const int* at, Py_ssize_t k, bint all_done, double key, bint repeats
    ) except -1:
        """``add`` of a node after the *k* nodes *at* (in range, not excluded,
        checked by the caller; with *repeats*, a node may come more than once:
        it counts once); return the node."""
        cdef Py_ssize_t j, m
        cdef uint8_t st
        cdef int waiting = 0, v, p
        cdef bint blocked = False
        if self._n >= 2147483646:
            raise ValueError("a run holds at most 2**31 - 2 nodes")
        if self._n == self._cap:
            self._grow_nodes()
        elif self._xhead == NULL:
            self._grow_growth(self._cap)
        v = self._n
        self._n = v + 1
        self._total += 1
        self._seq[v] = 0
        self._all_done[v] = all_done
        self._joining[v] = 0
        if self._keys != NULL:
            self._keys[v] = key
        for j in range(k):
            p = at[j]
            if repeats:
                for m in range(j):
                    if at[m] == p:
                        break
                else:
                    m = -1
                if m >= 0:
                    continue
            st = self._state[p]
            if st == C_SUCCEEDED:
                continue
            if st == C_PENDING or st == C_READY or st == C_RUNNING:
                waiting += 1
                self._add_edge(p, v)
            elif not all_done:
                blocked = True
        self._count[v] = waiting
        self._state[v] = C_PENDING
        if blocked:
            self._state[v] = C_SKIPPED
            self._ended += 1
            self._skipped += 1
        elif waiting == 0:
            self._make_ready(v)
        return v

    def added_children(self, node_):
        """The nodes added during the run that wait for *node*: those added
        after it (``add``) and those joining it (``join``), in that order."""
        cdef Py_ssize_t node = self._check_node(node_)
        cdef list out = []
        cdef int e
        if self._xhead != NULL:
            e = self._xhead[node]
            while e >= 0:
                out.append(self._xdst[e])
                e = self._xnext[e]
        return out

    def join(self, node_, on):
        """Make the RUNNING *node* wait for the nodes *on*; return how many it waits for.

        When every one of them has ended, or as soon as one ends other than
        SUCCEEDED, *node* goes back to the ready heap (then pop it and end it
        with done or fail). Nodes that have ended already are not waited for;
        0 means nothing to wait for (*node* stays RUNNING).
        """
        cdef Py_ssize_t node = self._check_state(node_, 1 << C_RUNNING, "join")
        cdef list distinct = sorted({self._check_node(j) for j in on} - {node})
        cdef list live = []
        cdef Py_ssize_t j
        cdef uint8_t st
        for j in distinct:
            st = self._state[j]
            if st == C_EXCLUDED:
                raise ValueError(f"cannot join node {j}: it is excluded")
            if st == C_PENDING or st == C_READY or st == C_RUNNING:
                live.append(j)
            elif st != C_SUCCEEDED:
                return 0  # one has ended other than SUCCEEDED: resolve now
        if not live:
            return 0
        if self._xhead == NULL:
            self._grow_growth(self._cap)
        for j in live:
            self._add_edge(<int>j, <int>node)
        self._count[node] += len(live)
        self._joining[node] = 1
        return len(live)


cdef array _targets(array off, Py_ssize_t n):
    # The target of each edge of nodes 0..n-1: v for each of off[v]:off[v+1]
    # (n < len(off), checked by the caller).
    cdef int* o = off.data.as_ints
    cdef array out = clone(_INT_TEMPLATE, o[n], False)
    cdef int* t = out.data.as_ints
    cdef Py_ssize_t i
    cdef int e
    for i in range(n):
        for e in range(o[i], o[i + 1]):
            t[e] = <int>i
    return out


include "_core_grow.pxi"

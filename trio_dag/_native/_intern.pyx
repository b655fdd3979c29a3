# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Hashable nodes to core indices and back, for ``trio_dag.graphlib``, compiled.

Same API and results as the twin ``trio_dag._native._intern_py``; see ``_intern.pyi``.
Numbering costs one dict lookup per mention of a node, and the edges go
straight into the ``"i"`` arrays that ``Graph`` takes as they are. On the
compiled core, ready nodes are popped and marked done in C as well: no Python
int per node.
"""

cimport cython
from cpython.array cimport array, clone, resize_smart
from cpython.dict cimport PyDict_GetItemWithError, PyDict_SetItem
from cpython.list cimport PyList_Append, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsSsize_t
from cpython.object cimport Py_SIZE, PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint8_t

from trio_dag._native._core cimport RunState

from operator import index as _index

from trio_dag._native._shared import RUNNING

cdef extern from *:
    """
    #if defined(PYPY_VERSION) || defined(Py_LIMITED_API)
    #define __trio_dag_presized_dict(n) PyDict_New()
    #else
    #define __trio_dag_presized_dict(n) _PyDict_NewPresized(n)
    #endif
    """
    # A dict that grows to its final size in one step: growing a million
    # string keys step by step reads every key's hash again at each step.
    dict _presized_dict "__trio_dag_presized_dict"(Py_ssize_t n)

cdef array _INT_TEMPLATE = array("i")
cdef Py_ssize_t _MAX_PRESIZE = 1 << 20
cdef uint8_t C_RUNNING = RUNNING


cdef inline Py_ssize_t _number(dict index, list nodes, object node) except -1:
    # A node seen before costs one lookup; a new one gets the next index.
    cdef PyObject* found = PyDict_GetItemWithError(index, node)
    cdef Py_ssize_t i
    if found != NULL:
        return PyLong_AsSsize_t(<object>found)
    i = PyList_GET_SIZE(nodes)
    PyDict_SetItem(index, node, i)
    PyList_Append(nodes, node)
    return i


cdef inline int _append(array a, Py_ssize_t value) except -1:
    # An index past a C int wraps here, harmlessly: it needs more nodes than
    # a Graph takes, so prepare() raises (n too large) before any is used.
    cdef Py_ssize_t n = Py_SIZE(a)
    resize_smart(a, n + 1)
    a.data.as_ints[n] = <int>value
    return 0


@cython.final
cdef class Interner:
    """Numbers nodes in order of first mention and records edges between the numbers.

    Once frozen, it maps the indices the core hands out back to nodes, batch by
    batch. *size_hint* is how many nodes to expect.
    """

    cdef dict _index
    cdef list _nodes  # index -> node, in step with _index
    cdef array _sources
    cdef array _targets
    # The last batch take_ready() handed out and its indices (an "i" array
    # from the compiled core, a list from the twin) until done_batch().
    cdef tuple _batch
    cdef object _batch_ids

    def __init__(self, size_hint=0):
        # Any int is a hint, as for the twin; the dict presizes to at most this.
        cdef Py_ssize_t hint = min(max(_index(size_hint), 0), _MAX_PRESIZE)
        self._index = _presized_dict(hint)
        self._nodes = []
        self._sources = array("i")
        self._targets = array("i")
        self._batch = ()
        self._batch_ids = ()

    @property
    def index(self):
        """Each node's index."""
        return self._index

    def add(self, pairs):
        """Number each node and its predecessors; record an edge from each predecessor.

        All or nothing: when it raises (an unhashable node), nothing changed.
        """
        # Locals, not attributes: a node's __hash__ may run any code, so the
        # loop must not depend on what self holds from one step to the next.
        cdef dict index = self._index
        cdef list nodes = self._nodes
        cdef array sources = self._sources
        cdef array targets = self._targets
        cdef Py_ssize_t before = PyList_GET_SIZE(nodes), edges = Py_SIZE(sources), i
        try:
            for node, predecessors in pairs:
                i = _number(index, nodes, node)
                for p in predecessors:
                    _append(sources, _number(index, nodes, p))
                    _append(targets, i)
        except BaseException:
            # New nodes are the last keys: dropping them restores the interner.
            if Py_SIZE(sources) > edges:
                resize_smart(sources, edges)
                resize_smart(targets, edges)
            del nodes[before:]
            while len(index) > before:
                index.popitem()
            raise

    def edges(self):
        """The number of nodes, then the edges' sources and targets: ``Graph``'s arguments."""
        return PyList_GET_SIZE(self._nodes), self._sources, self._targets

    def freeze(self):
        """Stop numbering and drop the edges; return the nodes by index."""
        self._sources = array("i")
        self._targets = array("i")
        return self._nodes

    def take_ready(self, run):
        """Pop every ready node of *run*, as a tuple of nodes; remember the batch."""
        cdef RunState st
        cdef list nodes = self._nodes
        cdef Py_ssize_t k, j
        cdef tuple ready
        cdef array ids
        cdef int v
        cdef object node
        if type(run) is not RunState:  # the twin's
            popped = run.pop_all()
            ready = tuple([nodes[i] for i in popped])
            self._batch, self._batch_ids = ready, popped
            return ready
        st = <RunState>run
        k = st._ready
        ready = PyTuple_New(k)
        ids = clone(_INT_TEMPLATE, k, False)
        for j in range(k):
            v = st._pop()
            # The core counts its ready nodes exactly, so v >= 0, and the graph
            # has len(nodes) nodes unless a node's __hash__ re-entered the
            # sorter: check, as the twin's list lookup does, never read past.
            if not 0 <= v < PyList_GET_SIZE(nodes):
                raise IndexError("list index out of range")
            ids.data.as_ints[j] = v
            node = <object>PyList_GET_ITEM(nodes, v)
            Py_INCREF(node)
            PyTuple_SET_ITEM(ready, j, node)
        self._batch, self._batch_ids = ready, ids
        return ready

    def done_batch(self, run, tuple nodes):
        """When *nodes* is the batch last taken, mark it done in *run* and return True.

        The batch is forgotten either way: it is all out and not yet done only
        until the next ``done()``.
        """
        cdef RunState st
        cdef array taken
        cdef Py_ssize_t j
        cdef int v
        batch, ids = self._batch, self._batch_ids
        self._batch, self._batch_ids = (), ()
        if nodes != batch:
            return False
        if type(run) is not RunState or type(ids) is not array:  # the twin's
            run.done_many(ids)
            return True
        st = <RunState>run
        taken = <array>ids
        for j in range(Py_SIZE(taken)):
            v = taken.data.as_ints[j]
            if 0 <= v < st._graph._n and st._state[v] == C_RUNNING:
                st._done(v)
            else:
                st.done(v)  # not out: raises the core's own error
        return True

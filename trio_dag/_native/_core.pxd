# Declarations of the compiled core, so other compiled modules can cimport
# Graph and RunState and call their C-level methods without Python overhead.

cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t


@cython.final
cdef class Graph:
    cdef int _n
    cdef int* _child_off
    cdef int* _child
    cdef int* _par_off
    cdef int* _par
    # Set when the parents are the caller's arrays, shared (offsets= form):
    # _par_off and _par then point into them, re-read by _sync before use.
    cdef object _shared_off
    cdef object _shared_par
    cdef bint _borrowed

    cdef int _build(self, int n, const int* s, const int* d, Py_ssize_t e) except -1
    cdef int _build_ascending(
        self, int n, const int* s, const int* d, Py_ssize_t e, int* off, int* fill
    ) except -1
    cdef Py_ssize_t _check(self, object node) except -1
    cdef int _from_offsets(self, object n, object sources, object offsets) except -1
    cdef int _sync(self) except -1
    cdef int* _acyclic_order(self) except NULL
    cdef int _kahn(self, int* order) noexcept nogil


@cython.final
cdef class RunState:
    cdef Graph _graph
    cdef double* _keys
    cdef bint _lifo
    cdef uint8_t* _all_done
    cdef int* _count
    cdef uint8_t* _state
    cdef int32_t* _seq
    cdef int64_t _next_seq
    cdef int* _heap
    cdef int* _queue
    cdef Py_ssize_t _q_head
    cdef Py_ssize_t _q_len
    cdef Py_ssize_t _q_cap
    cdef Py_ssize_t _heap_len
    cdef Py_ssize_t _heap_cap
    cdef Py_ssize_t _ready
    cdef Py_ssize_t _running
    cdef Py_ssize_t _ended
    cdef Py_ssize_t _total
    # Growth during a run (add, join): _n nodes in arrays of _cap; the
    # edges added since, as per-node lists (_xhead/_xtail: first and last
    # edge, -1 none; _xnext, _xdst per edge); _joining marks joining nodes.
    cdef int _n
    cdef Py_ssize_t _cap
    cdef uint8_t* _joining
    cdef int* _xhead
    cdef int* _xtail
    cdef int* _xnext
    cdef int* _xdst
    cdef Py_ssize_t _xlen
    cdef Py_ssize_t _xcap
    # How many nodes ended in each final state but SUCCEEDED (that one is the rest).
    cdef Py_ssize_t _failed
    cdef Py_ssize_t _skipped
    cdef Py_ssize_t _cancelled
    # Set by cancel_pending: the run is stopping (run.add's Grower then
    # leaves each add to the general path).
    cdef bint _stopping

    cdef inline bint _before(self, int a, int b) noexcept
    cdef int _make_ready(self, int v) except -1
    cdef int _renumber(self) except -1
    cdef int _grow_queue(self) except -1
    cdef inline int _take(self) noexcept
    cdef int _push(self, int v) except -1
    cdef int _heap_pop(self) noexcept
    cdef int _pop(self) noexcept
    cdef Py_ssize_t _check_state(self, object node_, int allowed, str action) except -1
    cdef Py_ssize_t _done(self, int node) except -1
    cdef list _end(self, int node, uint8_t final)
    cdef int _append(
        self, const int* at, Py_ssize_t k, bint all_done, double key, bint repeats
    ) except -1
    cdef int _unjoin(self, int c) except -1
    cdef int _after_done(self, int c) except -1
    cdef int _after_end(self, int c, list skipped) except -1
    cdef int _after_cancel(self, int c) except -1
    cdef Py_ssize_t _check_node(self, object node_) except -1
    cdef int _grow_nodes(self) except -1
    cdef int _grow_growth(self, Py_ssize_t cap) except -1
    cdef int _add_edge(self, int p, int c) except -1

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The per-task ledger and the fast loop, compiled. Same API and behaviour as ``_loop_py``.

The hot path stays in C from one task to the next: pop from the core's
ready heap, build the arguments from the outputs of the task's handles,
call the function and send into its coroutine in a fresh context, record
the result and tell the core. Nothing passes through the Trio scheduler
unless a body suspends; anything not that simple goes back to the engine.
"""

cimport cython
from cpython.array cimport array
from cpython.object cimport PyObject, PyObject_Call
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int64_t

from trio_dag._core cimport RunState

import contextvars
import types
from array import array as _array

from trio_dag._bodies import ASYNC, kind_of
from trio_dag._loop_py import CHECKPOINT, FAIRNESS_EVERY, RAISED, SLOW, SUSPENDED


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iter, object arg, PyObject** presult)
    object PyContext_CopyCurrent()
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec* tp)
    int CLOCK_MONOTONIC


cdef object _COROUTINE = types.CoroutineType
cdef int C_SLOW = SLOW
cdef int C_SUSPENDED = SUSPENDED
cdef int C_RAISED = RAISED
cdef int C_CHECKPOINT = CHECKPOINT
cdef int C_FAIRNESS = FAIRNESS_EVERY
cdef int C_ASYNC = ASYNC


cdef int _send(object coro, PyObject** out) except -1:
    # 0: the body returned (*out is its value); 1: it yielded *out.
    cdef PySendResult r = PyIter_Send(coro, None, out)
    if r == PYGEN_ERROR:
        return -1
    return 0 if r == PYGEN_RETURN else 1


@cython.final
cdef class Loop:
    """One run's ledger and fast loop. The engine reads the fields for its report.

    Each worker has a *slot*, ``[snapshot, task, attempt]`` (task -1 between
    bodies), which ``current_task()`` reads through a context variable the
    worker sets once; ``run`` fills it in for each body it starts.
    """

    cdef RunState _st
    cdef object _snap
    cdef object _now
    cdef bint _system_clock
    cdef double _offset
    cdef public bint fast
    cdef public list outputs
    cdef public array start
    cdef public array end
    cdef public array attempts
    cdef public array end_order
    cdef public list extra
    cdef public double busy
    cdef public Py_ssize_t live
    cdef public Py_ssize_t peak
    cdef public int64_t ends
    cdef public Py_ssize_t since_checkpoint
    cdef public dict kinds
    cdef public int why
    cdef public double began
    cdef public object coro
    cdef public object trap
    cdef public object ctx
    cdef public object error
    cdef object _kwargs
    cdef object _last_opts
    cdef bint _last_simple
    cdef int _last_retries
    cdef object _last_fn
    cdef int _last_kind

    def __init__(self, snap, st, now, fast):
        n = snap.n
        self._snap = snap
        self._st = <RunState?>st
        self.now = now
        self.fast = fast
        self.outputs = [None] * n
        self.start = _array("d", [float("nan")]) * n
        self.end = _array("d", [float("nan")]) * n
        self.attempts = _array("i", [0]) * n
        # The order in which tasks' last attempts ended: ties on the clock are
        # common, and the critical path needs to know which ended last.
        self.end_order = _array("q", [0]) * n
        self.extra = []
        self.kinds = {}

    @property
    def now(self):
        """The clock: a callable returning Trio time."""
        return self._now

    @now.setter
    def now(self, value):
        self._now = value
        # Trio's SystemClock is its offset plus the monotonic clock that
        # time.perf_counter() reads: read that directly, without a call.
        owner = getattr(value, "__self__", None)
        self._system_clock = (
            owner is not None
            and type(owner).__name__ == "SystemClock"
            and type(owner).__module__.startswith("trio")
            and getattr(value, "__name__", "") == "current_time"
        )
        if self._system_clock:
            self._offset = owner.offset

    cdef inline double _time(self) except? -1.0:
        cdef timespec ts
        if self._system_clock:
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return self._offset + ts.tv_sec + ts.tv_nsec * 1e-9
        return self._now()

    cpdef double begin(self, Py_ssize_t v) except? -1.0:
        """Count an attempt of task *v* as started; return its start time."""
        return self._begin(v, self._time())

    cdef inline double _begin(self, Py_ssize_t v, double began) noexcept:
        cdef int attempt = self.attempts.data.as_ints[v] + 1
        self.attempts.data.as_ints[v] = attempt
        if attempt == 1:
            self.start.data.as_doubles[v] = began
        self.live += 1
        if self.live > self.peak:
            self.peak = self.live
        return began

    cpdef int finish(self, Py_ssize_t v, double began, int retries) except -1:
        """Count the attempt of task *v* that began at *began* as ended."""
        return self._finish(v, began, self._time(), retries)

    cdef inline int _finish(self, Py_ssize_t v, double began, double now, int retries) except -1:
        self.end.data.as_doubles[v] = now
        self.ends += 1
        (<int64_t*>self.end_order.data.as_voidptr)[v] = self.ends
        self.busy += now - began
        self.live -= 1
        if retries:
            self.extra.append((v, self.attempts.data.as_ints[v], began, now))
        return 0

    def kind(self, fn):
        """How *fn* runs by default (ASYNC or THREAD), cached per function."""
        try:
            return self.kinds[fn]
        except KeyError:
            kind = self.kinds[fn] = kind_of(fn)
            return kind
        except TypeError:  # an unhashable callable
            return kind_of(fn)

    cdef int _simple(self, object opts) except -1:
        # Whether a task with these options may take the fast path; most
        # tasks share one options object, so remember the last answer.
        if opts is not self._last_opts:
            self._last_simple = (
                opts.timeout is None
                and opts.trigger == "all_succeeded"
                and opts.run_in in (None, "async")
            )
            self._last_retries = 1 if opts.retries else 0
            self._last_opts = opts
        return self._last_simple

    cdef object _bind(self, Py_ssize_t v):
        # The common case in C: every argument is a handle (the snapshot
        # stores their count); anything else goes through Snapshot.bind.
        # The kwargs to call with are left in self._kwargs.
        cdef object snap = self._snap
        cdef object stored = (<list>snap._args)[v]
        cdef Py_ssize_t k, j, lo
        cdef array off, src
        cdef list outputs = self.outputs
        cdef object item, tup
        cdef dict kw_of = snap._kwargs
        if type(stored) is int:
            k = stored
            off = snap._off
            src = snap._src
            lo = off.data.as_ints[v]
            tup = PyTuple_New(k)
            for j in range(k):
                item = outputs[src.data.as_ints[lo + j]]
                Py_INCREF(item)
                PyTuple_SET_ITEM(tup, j, item)
            self._kwargs = kw_of.get(v) if kw_of else None
            return tup
        bound = snap.bind(v, outputs)
        self._kwargs = bound[1] or None
        return bound[0]

    def run(self, Py_ssize_t v, list slot):
        """Run task *v* and those after it while their bodies return at once.

        Returns -1 when nothing more may start; otherwise a task handed back
        to the engine, with the reason in ``why`` (and ``began``, ``coro``,
        ``trap``, ``ctx`` or ``error`` as it says).
        """
        if not self.fast:
            self.why = C_SLOW
            return v
        cdef RunState st = self._st
        cdef list fns = self._snap._fns
        cdef list opts_of = self._snap._opts
        cdef list outputs = self.outputs
        cdef object fn, opts, args, coro, ctx, kwargs = None
        cdef PyObject* result = NULL
        cdef int sent
        cdef double began, now = self._time()
        slot[0] = self._snap
        while v >= 0:
            if self.since_checkpoint >= C_FAIRNESS:
                self.since_checkpoint = 0
                self.why = C_CHECKPOINT
                return v
            opts = opts_of[v]
            fn = fns[v]
            if not self._simple(opts):
                self.why = C_SLOW
                return v
            if opts.run_in is None:
                if fn is not self._last_fn:
                    self._last_kind = self.kind(fn)
                    self._last_fn = fn
                if self._last_kind != C_ASYNC:
                    self.why = C_SLOW
                    return v
            args = self._bind(v)
            kwargs = self._kwargs
            self.since_checkpoint += 1
            began = self._begin(v, now)
            slot[1] = v
            slot[2] = self.attempts.data.as_ints[v]
            ctx = PyContext_CopyCurrent()
            PyContext_Enter(ctx)
            try:
                coro = PyObject_Call(fn, args, kwargs)
                if type(coro) is not _COROUTINE:
                    raise TypeError(f"{fn!r} is async but returned {type(coro).__name__}")
                sent = _send(coro, &result)
            except BaseException as exc:
                PyContext_Exit(ctx)
                slot[1] = -1
                self.why = C_RAISED
                self.began = began
                self.error = exc
                return v
            PyContext_Exit(ctx)
            if sent == 1:
                self.why = C_SUSPENDED
                self.began = began
                self.coro = coro
                self.trap = <object>result
                Py_XDECREF(result)
                self.ctx = ctx
                return v
            slot[1] = -1
            now = self._time()
            self._finish(v, began, now, self._last_retries)
            outputs[v] = <object>result
            Py_XDECREF(result)
            st._done(<int>v)
            v = st._pop()
        return -1

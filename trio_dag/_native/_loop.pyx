# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The per-task ledger and the fast loop, compiled. Same API and behaviour as ``_loop_py``.

The hot path stays in C from one task to the next: pop from the core's
ready heap, build the arguments from the outputs of the task's handles,
call the function and send into its coroutine in a fresh context, record
the result and tell the core. Nothing passes through the Trio scheduler
unless a body suspends; anything not that simple goes back to the engine.
"""

cimport cython
from cpython.array cimport array, resize_smart
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport NAN
from libc.stdint cimport int64_t

from trio_dag._native._core cimport RunState
from trio_dag._native._keyhash cimport Returns as _Returns

import contextvars
import types
from array import array as _array

from trio_dag._bodies import ASYNC, kind_of
import trio

from trio_dag._native._shared import CHECKPOINT, FAIRNESS_EVERY, RAISED, SLOW, SUSPENDED


cdef extern from "Python.h":
    # kwargs is a pointer, not an object: no keyword arguments is NULL, which
    # an object argument cannot pass (None would be taken for a dict).
    object _call "PyObject_Call"(object callable, object args, PyObject* kwargs)
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
cdef object _CANCELLED = trio.Cancelled
cdef int C_SLOW = SLOW
cdef int C_SUSPENDED = SUSPENDED
cdef int C_RAISED = RAISED
cdef int C_CHECKPOINT = CHECKPOINT
cdef int C_FAIRNESS = FAIRNESS_EVERY
cdef int C_ASYNC = ASYNC
cdef int64_t _END_MAX = 2147483647


cdef inline int _check_slot(list slot) except -1:
    # The chain writes slot[1..3] without bounds checks; the twin's list
    # would raise IndexError.
    if len(slot) < 4:
        raise IndexError(f"a worker's slot has 4 items, got {len(slot)}")
    return 0


cdef inline bint _plain(object value) noexcept:
    # A value that holds no handle, told at C speed.
    t = type(value)
    return value is None or t is int or t is str or t is float or t is bool or t is bytes


cdef int _send_value(object coro, object value, PyObject** out) except -1:
    # 0: the body returned (*out is its value); 1: it yielded *out.
    cdef PySendResult r = PyIter_Send(coro, value, out)
    if r == PYGEN_ERROR:
        return -1
    return 0 if r == PYGEN_RETURN else 1


@cython.final
cdef class Loop:
    """One run's ledger and fast loop. The engine reads the fields for its report.

    Each worker has a *slot*, ``[snapshot, task, attempt, start time]``
    (task -1 between bodies), which ``current_task()`` reads through a
    context variable the worker sets once; ``run`` fills it in for each body
    it starts.
    """

    cdef RunState _st
    cdef object _now
    cdef bint _system_clock
    cdef double _offset
    cdef Py_ssize_t _n
    cdef public bint fast
    cdef public bint stopped
    cdef public object on_suspend
    cdef public object before_end
    # A run's cache (see _engine): a task marked in unlooked is handed back
    # (SLOW) for its lookup; on_return(v, output) hears each output.
    cdef public bytearray unlooked
    cdef public object on_return
    # Tasks added or joining during the run (see _growth): a task marked in
    # handback is handed back (SLOW) for the engine to resolve its joins.
    cdef public bytearray handback
    # on_join(v, output) hears each output that is no plain value (None, a
    # number, str or bytes) first; when it returns True the task joins
    # others and on_return does not hear it now.
    cdef public object on_join
    # Read-only: C code indexes them by task without a check.
    cdef readonly list outputs
    cdef readonly array start
    cdef readonly array end
    cdef readonly array attempts
    cdef readonly array end_order
    cdef readonly list extra
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
    cdef dict _kwargs
    # The snapshot's Columns (the declared contract with the snapshot), read
    # for every task: looked up once in __cinit__.
    cdef object _cols
    cdef list _fns
    cdef list _opts
    cdef list _args_of
    cdef dict _kwargs_of
    cdef array _off
    cdef array _src
    cdef dict _where
    cdef dict _paths
    cdef object _last_opts
    cdef bint _last_run_in_none
    cdef bint _last_simple
    cdef int _last_retries
    cdef object _last_fn
    cdef int _last_kind

    # __cinit__, not __init__: the arrays above exist, for snap.n tasks, from
    # the moment the object does.
    def __cinit__(self, snap, st, now, fast, on_suspend):
        cdef Py_ssize_t n = snap.n
        self._n = n
        self.on_suspend = on_suspend
        self.before_end = None
        self.unlooked = None
        self.on_return = None
        self.handback = None
        self.on_join = None
        self._st = <RunState?>st
        self._take_columns(snap.columns)
        self.now = now
        self.fast = fast
        self.outputs = [None] * n
        self.start = _array("d", [float("nan")]) * n
        self.end = _array("d", [float("nan")]) * n
        self.attempts = _array("i", [0]) * n
        # The order in which tasks' last attempts ended: ties on the clock are
        # common, and the critical path needs to know which ended last. Only
        # the order counts: int32 (4 bytes a task less than the twin's int64),
        # renumbered in order on the rare run that ends 2**31 - 1 attempts.
        self.end_order = _array("i", [0]) * n
        self.extra = []
        self.kinds = {}

    def grow(self, object cols, Py_ssize_t n):
        """Take the tasks added to the run: *n* tasks in all, read from *cols*.

        The per-task records grow in place (the same objects, longer), and
        the columns are read from *cols* from now on; a body may call it
        while the chain runs, which reads them anew for each task.
        """
        self._grow(cols, n)

    cdef int _grow(self, object cols, Py_ssize_t n) except -1:
        cdef Py_ssize_t i, old = self._n, more = n - self._n
        if more < 0:
            raise ValueError(f"a loop grows, it does not shrink ({self._n} -> {n} tasks)")
        if cols is not self._cols:
            self._take_columns(cols)
        if more:
            # One task at a time, as run.add adds them: resize_smart grows
            # each array by a share of its size, so appends are amortized O(1).
            if more == 1:
                self.outputs.append(None)
            else:
                self.outputs.extend([None] * more)
            resize_smart(self.start, n)
            resize_smart(self.end, n)
            resize_smart(self.attempts, n)
            resize_smart(self.end_order, n)
            for i in range(old, n):
                self.start.data.as_doubles[i] = NAN
                self.end.data.as_doubles[i] = NAN
                self.attempts.data.as_ints[i] = 0
                self.end_order.data.as_ints[i] = 0
            self._n = n
        return 0

    cdef int _take_columns(self, object cols) except -1:
        self._cols = cols
        self._fns = cols.fns
        self._opts = cols.opts
        self._args_of = cols.args
        self._kwargs_of = cols.kwargs
        self._off = cols.off
        self._src = cols.src
        self._where = cols.where
        self._paths = cols.paths
        return 0

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
        self._check_task(v)
        return self._begin(v, self._time())

    cdef inline int _check_task(self, Py_ssize_t v) except -1:
        # begin() and finish() come from Python: a task out of range raises
        # as an array of the twin does, rather than write past the arrays.
        if not 0 <= v < self._n:
            raise IndexError("array index out of range")
        return 0

    cdef inline double _begin(self, Py_ssize_t v, double began) noexcept:
        cdef int attempt = self.attempts.data.as_ints[v] + 1
        self.attempts.data.as_ints[v] = attempt
        if attempt == 1:
            self.start.data.as_doubles[v] = began
        self.live += 1
        if self.live > self.peak:
            self.peak = self.live
        return began

    cpdef int finish(self, Py_ssize_t v, double began, bint retries) except -1:
        """Count the attempt of task *v* that began at *began* as ended."""
        self._check_task(v)
        return self._finish(v, began, self._time(), retries)

    cdef inline int _finish(self, Py_ssize_t v, double began, double now, int retries) except -1:
        self.busy += now - began
        self.live -= 1
        return self._ended(v, began, now, retries)

    cdef inline int _ended(self, Py_ssize_t v, double began, double now, int retries) except -1:
        self.end.data.as_doubles[v] = now
        if self.ends >= _END_MAX:
            self._renumber_ends()
        self.ends += 1
        self.end_order.data.as_ints[v] = <int>self.ends
        if retries:
            self.extra.append((v, self.attempts.data.as_ints[v], began, now))
        return 0

    cdef int _renumber_ends(self) except -1:
        # 1, 2, ... in the order the tasks ended, so the next end is past them.
        cdef int* order = self.end_order.data.as_ints
        cdef Py_ssize_t v, k = 0
        for v in sorted([v for v in range(self._n) if order[v]], key=self.end_order.__getitem__):
            k += 1
            order[v] = <int>k
        self.ends = k
        return 0

    cpdef int begin_batch(self, Py_ssize_t v, double began, bint first) except -1:
        """Count an attempt of task *v* as started in the batched call begun at
        *began*; the call enters the live count with its *first* task only."""
        self._check_task(v)
        cdef int attempt = self.attempts.data.as_ints[v] + 1
        self.attempts.data.as_ints[v] = attempt
        if attempt == 1:
            self.start.data.as_doubles[v] = began
        if first:
            self.live += 1
            if self.live > self.peak:
                self.peak = self.live
        return 0

    cpdef int finish_batch(self, Py_ssize_t v, double began, bint retries) except -1:
        """Count the attempt of task *v* in the batched call begun at *began* as ended."""
        self._check_task(v)
        return self._ended(v, began, self._time(), retries)

    cpdef int end_batch(self, double began) except -1:
        """The batched call begun at *began* has ended: it leaves the live count,
        and its time counts once in the busy time."""
        self.busy += self._time() - began
        self.live -= 1
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
            self._last_run_in_none = opts.run_in is None
            self._last_opts = opts
        return self._last_simple

    cdef tuple _bind(self, Py_ssize_t v):
        # Columns.bind, the one binder, with its first two branches in C:
        # every argument a handle (the columns store their count), or none;
        # anything else goes through Columns.bind itself. Both give the same
        # arguments (tests/test_snapshot.py checks every shape on both loops).
        # The kwargs to call with are left in self._kwargs. None: binding
        # raised, and the engine's general path fails the task.
        cdef object stored = self._args_of[v]
        cdef Py_ssize_t k, j, lo
        cdef array src = self._src
        cdef list outputs = self.outputs
        cdef object item, tup
        cdef dict kw_of = self._kwargs_of
        if type(stored) is int:
            k = stored
            lo = self._off.data.as_ints[v]
            tup = PyTuple_New(k)
            for j in range(k):
                item = outputs[src.data.as_ints[lo + j]]
                Py_INCREF(item)
                PyTuple_SET_ITEM(tup, j, item)
            self._kwargs = kw_of.get(v) if kw_of else None
            return tup
        if (
            type(stored) is tuple
            and not (self._where and v in self._where)
            and not (self._paths and v in self._paths)
        ):
            # No handle among the arguments (a task with handles mixed with
            # values, or nested, is in where or paths): the stored tuple
            # itself, as Columns.bind gives it.
            self._kwargs = kw_of.get(v) if kw_of else None
            return stored
        try:
            bound = self._cols.bind(v, outputs)
        except Exception:
            return None  # its arguments changed after add(): the engine fails it
        self._kwargs = bound[1] or None
        return bound[0]

    def run(self, Py_ssize_t v, list slot):
        """Run task *v* and those after it while their bodies return at once.

        Returns -1 when nothing more may start; otherwise the task handed back
        to the engine, with the reason in ``why``: SLOW (not started),
        CHECKPOINT (not started), RAISED (``began``, ``error``) or SUSPENDED
        (``began``, ``trap``: then ``await drive(slot)``).
        """
        _check_slot(slot)
        if not self.fast:
            self.why = C_SLOW
            return v
        return self._chain(v, slot, self._time())

    cdef Py_ssize_t _chain(self, Py_ssize_t v, list slot, double now) except -2:
        # The columns are read from self for each task: a body may add tasks
        # (grow), which may give the loop other columns.
        cdef RunState st = self._st
        cdef object fn, opts, coro, ctx
        cdef tuple args
        cdef dict kwargs
        cdef PyObject* result = NULL
        cdef int sent
        cdef double began
        while v >= 0:
            if self.since_checkpoint >= C_FAIRNESS:
                self.since_checkpoint = 0
                self.why = C_CHECKPOINT
                return v
            opts = self._opts[v]
            fn = self._fns[v]
            if (
                not self._simple(opts)
                or (self.unlooked is not None and self.unlooked[v])
                or (self.handback is not None and self.handback[v])
            ):
                self.why = C_SLOW
                return v
            if self._last_run_in_none:
                if fn is not self._last_fn:
                    self._last_kind = self.kind(fn)
                    self._last_fn = fn
                if self._last_kind != C_ASYNC:
                    self.why = C_SLOW
                    return v
            args = self._bind(v)
            if args is None:
                self.why = C_SLOW
                return v
            kwargs = self._kwargs
            self.since_checkpoint += 1
            began = self._begin(v, now)
            slot[1] = v
            slot[2] = self.attempts.data.as_ints[v]
            ctx = PyContext_CopyCurrent()
            PyContext_Enter(ctx)
            try:
                coro = _call(fn, args, <PyObject*>kwargs if kwargs else NULL)
                if type(coro) is not _COROUTINE:
                    raise TypeError(f"{fn!r} is async but returned {type(coro).__name__}")
                sent = _send_value(coro, None, &result)
            except BaseException as exc:
                PyContext_Exit(ctx)
                slot[1] = -1
                self.why = C_RAISED
                self.began = began
                self.error = exc
                return v
            PyContext_Exit(ctx)
            if sent == 1:
                slot[3] = began
                self.why = C_SUSPENDED
                self.began = began
                self.coro = coro
                self.trap = <object>result
                Py_XDECREF(result)
                self.ctx = ctx
                return v
            slot[1] = -1
            now = self._time()
            self._succeeded(v, began, now, self._last_retries, <object>result)
            Py_XDECREF(result)
            v = -1 if self.stopped else st._pop()
        return -1

    cdef inline int _succeeded(
        self, Py_ssize_t v, double began, double now, int retries, object result
    ) except -1:
        self._finish(v, began, now, retries)
        self.outputs[v] = result
        if self.before_end is not None:
            self.before_end()
        if self.on_join is not None and not _plain(result) and self.on_join(v, result):
            pass  # it joins others: the core's _done leaves it running
        elif self.on_return is not None:
            if type(self.on_return) is _Returns:  # the cache's, compiled: a C call
                (<_Returns>self.on_return).call(v, result)
            else:
                self.on_return(v, result)
        self._st._done(<int>v)
        return 0

    def drive(self, list slot):
        """Drive the suspended body of the worker's task to its end, then go on.

        Bodies that the chain starts and that suspend in turn are driven
        here too, so a worker goes back to the engine only for a task that
        needs it: returns what ``run`` returns. ``Cancelled`` propagates;
        the slot's task and start time (``slot[1]``, ``slot[3]``) tell which
        attempt it ended. The loop is shared by all workers: what one
        suspended body needs is taken from it at once, and the rest lives
        in the worker's slot.
        """
        _check_slot(slot)
        cdef _Drive d = _Drive.__new__(_Drive)
        d.loop = self
        d.slot = slot
        d._take()
        return d


@cython.final
cdef class _Drive:
    """The awaitable ``Loop.drive`` returns: it is its own iterator."""

    cdef Loop loop
    cdef list slot
    cdef object coro
    cdef object ctx
    cdef object trap

    cdef void _take(self) noexcept:
        loop = self.loop
        self.coro = loop.coro
        self.ctx = loop.ctx
        self.trap = loop.trap
        loop.coro = loop.ctx = loop.trap = None

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self._step(None, None)

    def send(self, value):
        return self._step(value, None)

    def throw(self, typ, val=None, tb=None):
        if val is None:
            val = typ() if isinstance(typ, type) else typ
        return self._step(None, val)

    def close(self):
        if self.coro is not None:
            self.coro.close()

    cdef object _step(self, object value, object exc):
        # Resume the body with value (or throw exc into it). Returns the
        # next trap to yield to Trio, or raises StopIteration(task) when the
        # worker must go back to the engine.
        cdef PyObject* result = NULL
        cdef int sent
        cdef Py_ssize_t v
        cdef double now
        cdef Loop loop = self.loop
        cdef list slot = self.slot
        if self.trap is not None:
            # The first step hands Trio the trap the body already yielded.
            trap = self.trap
            self.trap = None
            return trap
        coro = self.coro
        ctx = self.ctx
        PyContext_Enter(ctx)
        try:
            if exc is None:
                sent = _send_value(coro, value, &result)
            else:
                sent = 2
                trap = coro.throw(exc)
        except StopIteration as stop:
            PyContext_Exit(ctx)
            done_value = stop.value
        except _CANCELLED:
            PyContext_Exit(ctx)
            raise
        except BaseException as error:
            PyContext_Exit(ctx)
            v = slot[1]
            slot[1] = -1
            self.coro = self.ctx = None
            loop.why = C_RAISED
            loop.began = slot[3]
            loop.error = error
            raise StopIteration(v)
        else:
            PyContext_Exit(ctx)
            if sent == 2:
                return trap
            if sent == 1:
                trap = <object>result
                Py_XDECREF(result)
                return trap
            done_value = <object>result
            Py_XDECREF(result)
        v = slot[1]
        slot[1] = -1
        self.coro = self.ctx = None
        loop._check_task(v)
        now = loop._time()
        opts = loop._opts[v]
        loop._succeeded(v, slot[3], now, 1 if opts.retries else 0, done_value)
        v = loop._chain(-1 if loop.stopped else loop._st._pop(), slot, now)
        if v < 0 or loop.why != C_SUSPENDED:
            raise StopIteration(v)
        loop.on_suspend()
        self._take()
        trap = self.trap
        self.trap = None
        return trap


cdef int _grow_loop(object loop, object cols, Py_ssize_t n) except -1:
    # Loop.grow for the compiled core's Grower, a C call (see grow_capsule).
    if type(loop) is Loop:
        return (<Loop>loop)._grow(cols, n)
    loop.grow(cols, n)
    return 0


grow_capsule = PyCapsule_New(<void*>_grow_loop, b"trio_dag._native._loop.grow", NULL)
"""``Loop.grow(cols, n)`` as a C function ``int (object, object, Py_ssize_t) except -1``:
run.add's compiled common call (``_core.Grower``) grows the loop without a Python call."""

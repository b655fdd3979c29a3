# Included by _core.pyx (one compiled module): run.add's common call, compiled.
# Run.add is run_add, a vectorcall callable; the run's Grower takes its common
# call through the DAG's builder (_build), the core and the loop (_loop), the
# other modules' parts reached as C functions through their capsules.

from types import MemberDescriptorType as _MEMBER_DESCRIPTOR


ctypedef object (*_builder_add_t)(
    object, object, object, PyObject**, Py_ssize_t, object, PyObject*
)
ctypedef int (*_loop_grow_t)(object, object, Py_ssize_t) except -1


cdef extern from *:
    """
    #include "structmember.h"
    /* Where an instance keeps the object slot *descr* describes (a
       __slots__ member of its class); -1 with an error if it is not one. */
    static Py_ssize_t trio_dag_core_slot_offset(PyObject *descr) {
        if (Py_TYPE(descr) != &PyMemberDescr_Type
            || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            PyErr_SetString(PyExc_TypeError, "not an object slot");
            return -1;
        }
        return ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    /* The slot at *offset* of *op*: a borrowed reference, or NULL when unset. */
    static PyObject *trio_dag_core_slot_get(PyObject *op, Py_ssize_t offset) {
        return *(PyObject **)((char *)op + offset);
    }
    /* Store *value* in the slot at *offset* of *op* (a new reference taken). */
    static void trio_dag_core_slot_set(PyObject *op, Py_ssize_t offset, PyObject *value) {
        PyObject **at = (PyObject **)((char *)op + offset);
        PyObject *old = *at;
        Py_INCREF(value);
        *at = value;
        Py_XDECREF(old);
    }
    """
    Py_ssize_t _slot_offset "trio_dag_core_slot_offset"(object descr) except -1
    PyObject* _slot_get "trio_dag_core_slot_get"(object op, Py_ssize_t offset)
    void _slot_set "trio_dag_core_slot_set"(object op, Py_ssize_t offset, object value)


@cython.final
cdef class Grower:
    """``Run.add``'s common call, compiled: a task body adds a task with
    ``name=`` and ``after=`` at most, to a run whose added tasks need no key,
    cache or event (see ``_growth``, which makes it).

    One C call from :data:`run_add` to the task recorded everywhere: the
    DAG's builder (``_build``'s, a C function), the core, the loop's
    per-task records (``_loop``'s, a C function) and the engine's; what
    it reads of the run is kept here, the same objects appended to in
    place. The run's task count is the snapshot's ``n``, read and written
    in its slot. What changes the path is told here, not read per call:
    ``closed`` (the run has ended), ``levels`` (the growth keeps levels),
    and the core's own mark of a stopping run (``cancel_pending``).

    ``add`` returns the new task's handle, or None having changed nothing:
    the call then takes the general path, ``Growth.add``. Past the DAG's
    builder, a task this path cannot finish (a name still pending, the run
    stopping, levels kept) is finished by ``Growth.took``.
    """

    cdef RunState st
    cdef object growth, engine, snap, fork, builder, loop, columns, current, batched
    cdef object default_options
    cdef bytearray marks, teardown
    cdef list fns, opts, uses
    cdef dict pending, engine_dict
    cdef array off, src
    cdef unsigned long thread
    cdef bint unbounded
    cdef Py_ssize_t n_offset
    cdef _builder_add_t builder_add
    cdef _loop_grow_t loop_grow
    cdef public bint closed
    cdef public bint levels

    def __init__(
        self, RunState st, growth, engine, fork, loop, columns, current, batched,
        default_options, bint unbounded,
    ):
        from trio_dag._native import _build, _loop

        self.st = st
        self.growth = growth
        self.engine = engine
        self.snap = engine.snap
        # The snapshot's n in its slot; read and set as an attribute if it has none.
        self.n_offset = -1
        n_slot = getattr(type(self.snap), "n", None)
        if type(n_slot) is _MEMBER_DESCRIPTOR:
            self.n_offset = _slot_offset(n_slot)
        self.fork = fork
        self.builder = fork._b
        self.builder_add = <_builder_add_t>PyCapsule_GetPointer(
            _build.run_add_capsule, b"trio_dag._native._build.run_add"
        )
        self.fns = fork._fns
        self.opts = fork._opts
        self.off = fork._off
        self.src = fork._src
        self.pending = fork._pending
        self.loop = loop
        self.loop_grow = <_loop_grow_t>PyCapsule_GetPointer(
            _loop.grow_capsule, b"trio_dag._native._loop.grow"
        )
        self.columns = columns
        self.current = current
        self.batched = batched
        self.default_options = default_options
        self.marks = growth.marks
        self.teardown = engine.teardown
        self.uses = engine.admission.uses
        # The engine's cap in its __dict__ (None: set as an attribute).
        self.engine_dict = getattr(engine, "__dict__", None)
        if hasattr(type(engine), "cap"):
            self.engine_dict = None
        self.unbounded = unbounded
        self.thread = PyThread_get_thread_ident()

    def add(self, fn, tuple args, dict options):
        """Add ``fn(*args)`` with *options* (``Run.add``'s); its handle, or None."""
        cdef object name = None
        cdef PyObject* after = NULL
        cdef Py_ssize_t k = len(options)
        if k:
            if "after" in options:
                after = <PyObject*>options["after"]
                k -= 1
            if "name" in options:
                name = options["name"]
                k -= 1
            if k:
                return None
        return self._add(fn, PySequence_Fast_ITEMS(args), PyTuple_GET_SIZE(args), name, after)

    cdef object _add(
        self, object fn, PyObject** argv, Py_ssize_t nargs, object name, PyObject* after
    ):
        # fn(*argv[:nargs]), name=, after= (NULL: not given).
        cdef object slot, handle, count
        cdef Py_ssize_t parent, i, n, k, start
        cdef bint appended
        cdef int v
        if (
            self.closed
            or PyThread_get_thread_ident() != self.thread
            or type(fn) is self.batched
        ):
            return None
        slot = get_value(self.current)
        if type(slot) is not list or len(<list>slot) < 2 or (<list>slot)[0] is not self.snap:
            return None
        parent = (<list>slot)[1]
        i = PyList_GET_SIZE(self.fns)
        if parent < 0 or self._known() != i:
            return None  # tasks added to the fork directly: Growth.add refuses
        handle = self.builder_add(self.builder, self.fork, fn, argv, nargs, name, after)
        if handle is None:
            return None
        if (
            self.pending
            or self.levels
            or self.st._stopping
            or <object>PyList_GET_ITEM(self.opts, i) is not self.default_options
        ):
            return self.growth.took(i, handle, parent)
        start = self.off.data.as_ints[i]
        k = self.off.data.as_ints[i + 1] - start
        appended = False
        try:  # not try/except: entering that saves the exception state, a cost per add
            v = self.st._append(self.src.data.as_ints + start, k, False, 0.0, True)
            appended = True
        finally:
            if not appended:
                self.fork._truncate(i)  # as Growth.took: a failed add records nothing
        n = i + 1
        count = n
        if self.n_offset >= 0:
            _slot_set(self.snap, self.n_offset, count)
        else:
            self.snap.n = count
        self.loop_grow(self.loop, self.columns, n)
        _append_zero(self.marks)
        _append_zero(self.teardown)
        if self.uses is not None:
            self.uses.append(())
        if self.unbounded:
            if self.engine_dict is not None:
                self.engine_dict["cap"] = count
            else:
                self.engine.cap = count
        if k and self.st._state[v] == C_SKIPPED:
            self.engine._ended(v, C_SKIPPED)
        return handle


    cdef inline Py_ssize_t _known(self) except? -1:
        # The run's task count: the snapshot's n (-1 when unset).
        cdef PyObject* known
        if self.n_offset < 0:
            return self.snap.n
        known = _slot_get(self.snap, self.n_offset)
        return -1 if known is NULL else PyLong_AsSsize_t(<object>known)


cdef inline int _append_zero(bytearray b) except -1:
    cdef Py_ssize_t n = PyByteArray_GET_SIZE(b)
    PyByteArray_Resize(b, n + 1)  # over-allocates: amortized O(1)
    PyByteArray_AS_STRING(b)[n] = 0
    return 0


cdef extern from *:
    """
    /* Run.add itself: a callable that binds as a function does (a method of
       Run), called by vectorcall with the keywords' names apart, so that the
       common call makes no argument tuple or keyword dict (as _build's
       DAG.add). Its __dict__ takes functools.update_wrapper's names. */
    typedef struct {
        PyObject_HEAD
        vectorcallfunc vectorcall;
        PyObject *dict;
    } trio_dag_run_add;

    static PyObject *(*trio_dag_run_add_impl)(PyObject *, PyObject **, size_t, PyObject *);

    static PyObject *trio_dag_run_add_call(
        PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames
    ) {
        return trio_dag_run_add_impl(self, (PyObject **)args, nargsf, kwnames);
    }

    static void trio_dag_set_run_add_impl(
        PyObject *(*impl)(PyObject *, PyObject **, size_t, PyObject *)
    ) {
        trio_dag_run_add_impl = impl;
    }

    static PyObject *trio_dag_run_add_get(PyObject *self, PyObject *obj, PyObject *type) {
        if (obj == NULL || obj == Py_None) {
            Py_INCREF(self);
            return self;
        }
        return PyMethod_New(self, obj);
    }

    static int trio_dag_run_add_traverse(PyObject *self, visitproc visit, void *arg) {
        Py_VISIT(((trio_dag_run_add *)self)->dict);
        return 0;
    }

    static int trio_dag_run_add_clear(PyObject *self) {
        Py_CLEAR(((trio_dag_run_add *)self)->dict);
        return 0;
    }

    static void trio_dag_run_add_dealloc(PyObject *self) {
        PyObject_GC_UnTrack(self);
        Py_CLEAR(((trio_dag_run_add *)self)->dict);
        PyObject_GC_Del(self);
    }

    static PyObject *trio_dag_run_add_repr(PyObject *self) {
        PyObject *name = PyObject_GetAttrString(self, "__qualname__");
        PyObject *text;
        if (name == NULL) {
            PyErr_Clear();
            return PyUnicode_FromFormat("<function at %p>", self);
        }
        text = PyUnicode_FromFormat("<function %S at %p>", name, self);
        Py_DECREF(name);
        return text;
    }

    static PyGetSetDef trio_dag_run_add_getset[] = {
        {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
        {NULL}
    };

    static PyTypeObject trio_dag_run_add_type = {
        PyVarObject_HEAD_INIT(NULL, 0)
        .tp_name = "trio_dag._native._core.FastRunAdd",
        .tp_basicsize = sizeof(trio_dag_run_add),
        .tp_dealloc = trio_dag_run_add_dealloc,
        .tp_vectorcall_offset = offsetof(trio_dag_run_add, vectorcall),
        .tp_repr = trio_dag_run_add_repr,
        .tp_call = PyVectorcall_Call,
        .tp_getattro = PyObject_GenericGetAttr,
        .tp_setattro = PyObject_GenericSetAttr,
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                    | Py_TPFLAGS_METHOD_DESCRIPTOR,
        .tp_traverse = trio_dag_run_add_traverse,
        .tp_clear = trio_dag_run_add_clear,
        .tp_getset = trio_dag_run_add_getset,
        .tp_descr_get = trio_dag_run_add_get,
        .tp_dictoffset = offsetof(trio_dag_run_add, dict),
    };

    static PyObject *trio_dag_run_add_new(void) {
        trio_dag_run_add *self;
        if (PyType_Ready(&trio_dag_run_add_type) < 0)
            return NULL;
        self = PyObject_GC_New(trio_dag_run_add, &trio_dag_run_add_type);
        if (self == NULL)
            return NULL;
        self->vectorcall = trio_dag_run_add_call;
        self->dict = NULL;
        PyObject_GC_Track((PyObject *)self);
        return (PyObject *)self;
    }
    """
    object _new_run_add "trio_dag_run_add_new"()
    void _set_run_add_impl "trio_dag_set_run_add_impl"(
        object (*impl)(object, PyObject**, size_t, PyObject*)
    )
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf, PyObject* kwnames)


cdef object _general_run_add = None
cdef str _AFTER = "after", _NAME = "name", _GROWER = "_grower"


def set_general_run_add(general):
    """Take *general* (Run.add in Python) for every call :data:`run_add` does not take itself."""
    global _general_run_add
    _general_run_add = general


cdef object _run_add_call(object self, PyObject** args, size_t nargsf, PyObject* kwnames):
    # run.add(fn, *args, name=..., after=...): the run's Grower's, when it
    # takes it; every other call, and a call it declines, goes to the
    # Python Run.add as it came.
    cdef Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), j
    cdef PyObject* key
    cdef PyObject* after = NULL
    cdef object name = None, grower, h
    if nargs >= 2:
        grower = getattr(<object>args[0], _GROWER, None)
        if type(grower) is Grower:
            if kwnames is not NULL:
                for j in range(PyTuple_GET_SIZE(<object>kwnames)):
                    key = PyTuple_GET_ITEM(<object>kwnames, j)
                    if key is <PyObject*>_AFTER:
                        after = args[nargs + j]
                    elif key is <PyObject*>_NAME:
                        name = <object>args[nargs + j]
                    else:
                        break
                else:
                    h = (<Grower>grower)._add(<object>args[1], args + 2, nargs - 2, name, after)
                    if h is not None:
                        return h
            else:
                h = (<Grower>grower)._add(<object>args[1], args + 2, nargs - 2, None, NULL)
                if h is not None:
                    return h
    return PyObject_Vectorcall(_general_run_add, args, nargsf, kwnames)


_set_run_add_impl(_run_add_call)
run_add = _new_run_add()
"""``Run.add`` without a Python frame: the common call goes to the run's
:class:`Grower`; every other (no Grower yet, or one that declines) to the
Python ``Run.add`` as it came."""

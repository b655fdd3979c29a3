# Included by _build.pyx (one compiled module): DAG.add itself, the callable the
# compiled backend installs as the method, and what it needs to find a DAG's builder.

cdef extern from *:
    """
    /* DAG.add itself: a callable that binds as a function does (a method of
       DAG), called by vectorcall with the keywords' names apart, so that the
       common call parses no dict and makes no tuple. Its __dict__ takes
       functools.update_wrapper's __doc__, __wrapped__, __qualname__ and so
       on, so it shows as the Python add it stands for. */
    typedef struct {
        PyObject_HEAD
        vectorcallfunc vectorcall;
        PyObject *dict;
    } trio_dag_fast;

    static PyObject *(*trio_dag_fast_impl)(PyObject *, PyObject **, size_t, PyObject *);

    static PyObject *trio_dag_fast_call(
        PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames
    ) {
        return trio_dag_fast_impl(self, (PyObject **)args, nargsf, kwnames);
    }

    static void trio_dag_set_fast_impl(
        PyObject *(*impl)(PyObject *, PyObject **, size_t, PyObject *)
    ) {
        trio_dag_fast_impl = impl;
    }

    static PyObject *trio_dag_fast_get(PyObject *self, PyObject *obj, PyObject *type) {
        if (obj == NULL || obj == Py_None) {
            Py_INCREF(self);
            return self;
        }
        return PyMethod_New(self, obj);
    }

    static int trio_dag_fast_traverse(PyObject *self, visitproc visit, void *arg) {
        Py_VISIT(((trio_dag_fast *)self)->dict);
        return 0;
    }

    static int trio_dag_fast_clear(PyObject *self) {
        Py_CLEAR(((trio_dag_fast *)self)->dict);
        return 0;
    }

    static void trio_dag_fast_dealloc(PyObject *self) {
        PyObject_GC_UnTrack(self);
        Py_CLEAR(((trio_dag_fast *)self)->dict);
        PyObject_GC_Del(self);
    }

    static PyObject *trio_dag_fast_repr(PyObject *self) {
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

    static PyGetSetDef trio_dag_fast_getset[] = {
        {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
        {NULL}
    };

    static PyTypeObject trio_dag_fast_type = {
        PyVarObject_HEAD_INIT(NULL, 0)
        .tp_name = "trio_dag._native._build.FastAdd",
        .tp_basicsize = sizeof(trio_dag_fast),
        .tp_dealloc = trio_dag_fast_dealloc,
        .tp_vectorcall_offset = offsetof(trio_dag_fast, vectorcall),
        .tp_repr = trio_dag_fast_repr,
        .tp_call = PyVectorcall_Call,
        .tp_getattro = PyObject_GenericGetAttr,
        .tp_setattro = PyObject_GenericSetAttr,
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                    | Py_TPFLAGS_METHOD_DESCRIPTOR,
        .tp_traverse = trio_dag_fast_traverse,
        .tp_clear = trio_dag_fast_clear,
        .tp_getset = trio_dag_fast_getset,
        .tp_descr_get = trio_dag_fast_get,
        .tp_dictoffset = offsetof(trio_dag_fast, dict),
    };

    static PyObject *trio_dag_fast_new(void) {
        trio_dag_fast *self;
        if (PyType_Ready(&trio_dag_fast_type) < 0)
            return NULL;
        self = PyObject_GC_New(trio_dag_fast, &trio_dag_fast_type);
        if (self == NULL)
            return NULL;
        self->vectorcall = trio_dag_fast_call;
        self->dict = NULL;
        PyObject_GC_Track((PyObject *)self);
        return (PyObject *)self;
    }

    /* The slot of a DAG instance at *offset* (a borrowed reference, or NULL). */
    static PyObject *trio_dag_slot(PyObject *op, Py_ssize_t offset) {
        return *(PyObject **)((char *)op + offset);
    }
    """
    object new_fast "trio_dag_fast_new"()
    void set_fast_impl "trio_dag_set_fast_impl"(
        object (*impl)(object, PyObject**, size_t, PyObject*)
    )
    PyObject* slot_at "trio_dag_slot"(PyObject* op, Py_ssize_t offset)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf, PyObject* kwnames)


cdef object _general_add = None
cdef PyObject* _dag_type = NULL  # the DAG class (kept alive by _dag_class)
cdef object _dag_class = None
cdef Py_ssize_t _b_offset = -1  # where a DAG instance keeps its builder (its _b slot)
cdef str _AFTER = "after", _NAME = "name", _KWARGS = "kwargs"


cdef object _fast_call(
    object self, PyObject** args, size_t nargsf, PyObject* kwnames
):
    # dag.add(fn, *args, name=..., after=...) (or kwargs=None): the
    # builder's, when it takes it; every other call, and a call it declines,
    # goes to the Python add as it came.
    cdef Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), j
    cdef PyObject* dag
    cdef PyObject* b
    cdef PyObject* key
    cdef object name, after, value, h
    if nargs >= 2 and _b_offset >= 0:
        dag = args[0]
        if <PyObject*>Py_TYPE(<object>dag) is _dag_type:
            b = slot_at(dag, _b_offset)
            if b is not NULL and <PyObject*>Py_TYPE(<object>b) is <PyObject*>Builder and (
                (<Builder>b).checked_fn is <object>args[1]
            ):
                name = None
                after = (<Builder>b).no_after
                if kwnames is not NULL:
                    for j in range(PyTuple_GET_SIZE(<object>kwnames)):
                        key = PyTuple_GET_ITEM(<object>kwnames, j)
                        value = <object>args[nargs + j]
                        if key is <PyObject*>_AFTER:
                            after = value
                        elif key is <PyObject*>_NAME:
                            name = value
                        elif not (key is <PyObject*>_KWARGS and value is None):
                            break
                    else:
                        h = (<Builder>b)._add(
                            <object>dag, <object>args[1], args + 2, nargs - 2, None, name, after
                        )
                        if h is not None:
                            return h
                else:
                    h = (<Builder>b)._add(
                        <object>dag, <object>args[1], args + 2, nargs - 2, None, name, after
                    )
                    if h is not None:
                        return h
    return PyObject_Vectorcall(_general_add, args, nargsf, kwnames)


def set_general_add(dag_class, general):
    """Take *general* (DAG.add in Python) for every call :data:`add` does not take itself.

    *dag_class* is DAG: :data:`add` reads the builder from its ``_b`` slot.
    """
    global _general_add, _dag_type, _dag_class, _b_offset
    _general_add = general
    _dag_class = dag_class
    _dag_type = <PyObject*>dag_class
    _b_offset = _slot_offset(dag_class.__dict__["_b"])


cdef extern from *:
    """
    #include "structmember.h"
    static Py_ssize_t trio_dag_member_offset(PyObject *descr) {
        if (Py_TYPE(descr) != &PyMemberDescr_Type) {
            PyErr_SetString(PyExc_TypeError, "not a slot");
            return -1;
        }
        if (((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            PyErr_SetString(PyExc_TypeError, "not an object slot");
            return -1;
        }
        return ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    """
    Py_ssize_t _slot_offset "trio_dag_member_offset"(object descr) except -1


set_fast_impl(_fast_call)
add = new_fast()
"""``DAG.add`` without a Python frame: the common call here, every other to the general one.

``DAG.add(dag, fn, *args, name=..., after=...)`` with no other option, on a DAG
with a compiled builder, is its builder's; everything else (another option, a
missing fn, an unknown keyword, a call the builder declines) goes to the
Python ``DAG.add`` as it came, which checks and raises exactly as always.
"""

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled fast path of ``DAG.add`` and ``DAG.map``. Same API and behaviour as ``_build_py``.

A :class:`Builder` shares the DAG's columns (lists and ``array('i')``) and
appends one task to them in one call, for the common call only: a function
already checked, no option but ``name=`` and ``after=``, positional
arguments that are handles of the DAG or plain values, ``after=`` a list or
tuple of handles and names. For anything else, and for anything that could be
an error, it returns None having recorded nothing, and ``DAG.add`` takes its
general path, which checks and raises exactly as before.

Also here, from the included files: :class:`Names`, the DAG's table of
given names (``_build_names.pxi``), and :data:`add`, ``DAG.add`` itself with
this backend, a callable that takes the common call straight to the
builder, with no argument tuple or keyword dict made (``_build_add.pxi``).
"""

cimport cython
from cpython.array cimport array
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.object cimport Py_SIZE, Py_TYPE
from cpython.pycapsule cimport PyCapsule_New
from cpython.list cimport PyList_GET_SIZE
from cpython.sequence cimport PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM, PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_READ_CHAR, PyUnicode_GET_LENGTH

from types import GenericAlias as _GenericAlias

from trio_dag._native._shared import PLAIN_TYPES


cdef extern from *:
    """
    #include "structmember.h"

    /* CPython's arrayobject (Modules/arraymodule.c), unchanged since 3.8. */
    typedef struct {
        PyObject_VAR_HEAD
        char *ob_item;
        Py_ssize_t allocated;
        const void *ob_descr;
        PyObject *weakreflist;
        Py_ssize_t ob_exports;
    } trio_dag_array;

    /* Append n ints to an array('i'), growing it as CPython does (by 1/16). */
    static int trio_dag_push(PyObject *op, const int *values, Py_ssize_t n) {
        trio_dag_array *a = (trio_dag_array *)op;
        Py_ssize_t size = Py_SIZE(a), want = size + n;
        if (want > a->allocated) {
            Py_ssize_t cap;
            char *items;
            if (a->ob_exports > 0) {
                PyErr_SetString(PyExc_BufferError,
                                "cannot resize an array that is exporting buffers");
                return -1;
            }
            cap = want + (want >> 4) + (want < 8 ? 3 : 7);
            items = (char *)PyMem_Realloc(a->ob_item, (size_t)cap * sizeof(int));
            if (items == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            a->ob_item = items;
            a->allocated = cap;
        }
        memcpy(a->ob_item + size * sizeof(int), values, (size_t)n * sizeof(int));
        Py_SET_SIZE(a, want);
        return 0;
    }
    """
    int push "trio_dag_push"(object a, const int* values, Py_ssize_t n) except -1


cdef extern from "Python.h":
    ctypedef Py_ssize_t Py_hash_t
    Py_hash_t PyObject_Hash(object o) except -1
    int PyObject_RichCompareBool(object a, object b, int op) except -1
    PyObject* PyList_GET_ITEM(object l, Py_ssize_t i)
    void* PyMem_Calloc(size_t n, size_t size)
    void* PyMem_Realloc(void* p, size_t size)
    void PyMem_Free(void* p)
    int Py_EQ


cdef frozenset _PLAIN = frozenset(PLAIN_TYPES)
cdef int _STACK = 64
cdef Py_ssize_t _INT_MIN = -2147483648, _INT_MAX = 2147483647
cdef Py_ssize_t _DECLINE = _INT_MIN - 1  # from _index_in: not a dependency the fast path takes  # edges of one task counted in a C buffer; more take the general path


cdef inline bint _default_like(str name):
    """Whether *name* reads as a default name: ``<anything>-<ASCII digits>``.

    Such a name may be taken by a task with that default name, which only
    the general path's lookup can tell.
    """
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(name), k = n
    cdef Py_UCS4 c
    while k > 0:
        c = PyUnicode_READ_CHAR(name, k - 1)
        if c < 48 or c > 57:
            break
        k -= 1
    return k < n and k > 0 and PyUnicode_READ_CHAR(name, k - 1) == 45


cdef extern from *:
    """
    /* Show the compiled Handle as the public trio_dag.Handle (its __module__,
       __qualname__, pickles and reprs), as the package does for its classes. */
    static void trio_dag_rename(PyObject *type, const char *name) {
        ((PyTypeObject *)type)->tp_name = name;
        PyType_Modified((PyTypeObject *)type);
    }
    """
    void rename_type "trio_dag_rename"(object type, const char* name)


def _handle_dag(self) -> "DAG":
    """The DAG the task belongs to."""
    return (<Handle?>self)._dag


def _handle_index(self) -> int:
    """The task's insertion index in its DAG, from 0."""
    return (<Handle?>self)._index


def _handle_name(self) -> str:
    """The task's name, unique in its DAG (given with ``name=``, or the default)."""
    return (<Handle?>self)._dag._name((<Handle?>self)._index)


@cython.final
@cython.no_gc_clear  # the DAG's slots break a cycle; a handle never shows dag None
@cython.freelist(64)
cdef class Handle:
    """Handle(dag, index)
--

A task of a :class:`DAG`, as :meth:`DAG.add` returns it.

    Pass it as an argument of another task (also inside a list, tuple or
    dict, or in ``kwargs=``) to make that task depend on this one and
    receive its output; give it to ``after=`` to depend on it without the
    output; ask a :class:`RunReport` about it (``report[handle]``) for its
    output after a run. ``dag[name]`` gives the handle of a task by name.

    Immutable and hashable: handles are equal when they name the same task
    of the same DAG. For type checkers, ``Handle[bytes]`` is a task whose
    function returns bytes. See the user guide, *Graphs and handles*.
    """

    # The compiled twin of trio_dag._handle's class, with the same behaviour:
    # the index is a C integer, not an int object, so a handle is 48 bytes in
    # all. The building modules read _dag and _index (declared in _build.pxd,
    # which _keyhash cimports); nothing else does.

    def __init__(self, dag, Py_ssize_t index):
        self._dag = dag
        self._index = index

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item)

    # Python properties, not Cython's (getset descriptors): autodoc and
    # introspection see them as the twin's.
    dag = property(_handle_dag)
    index = property(_handle_index)
    name = property(_handle_name)

    def __setattr__(self, attr, value):
        raise AttributeError(f"Handle is immutable; cannot set {attr!r}")

    def __delattr__(self, attr):
        raise AttributeError(f"Handle is immutable; cannot delete {attr!r}")

    def __eq__(self, other):
        if type(other) is not Handle:
            return NotImplemented
        return self._dag is (<Handle>other)._dag and self._index == (<Handle>other)._index

    def __ne__(self, other):
        if type(other) is not Handle:
            return NotImplemented
        return not (self._dag is (<Handle>other)._dag and self._index == (<Handle>other)._index)

    def __hash__(self):
        return hash((id(self._dag), self._index))

    def __repr__(self):
        return f"<Handle {self.name!r} (task {self._index})>"

    def __reduce__(self):
        return (Handle, (self._dag, self._index))


rename_type(Handle, b"trio_dag.Handle")


cdef inline Handle _new_handle(object dag, Py_ssize_t i):
    cdef Handle h = Handle.__new__(Handle)
    h._dag = dag
    h._index = i
    return h


include "_build_names.pxi"


@cython.final
cdef class Builder:
    """Appends tasks to a DAG's columns in one call, for the common call only (see the module)."""

    cdef list fns, args, opts
    cdef object off, src
    cdef dict where, pending
    cdef Names index_of
    cdef set default_like
    cdef object default_options, no_after
    cdef tuple defaults
    cdef object handle_type  # this module's Handle, or the twin's (read as Python objects)
    cdef public object checked_fn

    def __init__(
        self, fns, args, opts, off, src, where, index_of, pending, default_like,
        handle_type, default_options, defaults, no_after,
    ):
        self.fns = fns
        self.args = args
        self.opts = opts
        self.off = off
        self.src = src
        self.where = where
        self.index_of = index_of
        self.pending = pending
        self.default_like = default_like
        self.handle_type = handle_type
        self.default_options = default_options
        self.defaults = tuple(defaults)
        if len(self.defaults) != 11:
            raise ValueError("defaults holds the 11 option defaults of DAG.add")
        self.no_after = no_after
        self.checked_fn = None

    def add(
        self, dag, fn, tuple args, name, kwargs, after, priority, cost, tags, uses, retries,
        retry_delay, retry_backoff, retry_on, timeout, run_in, trigger,
    ):
        """The handle of the task added, or None when the call needs the general path."""
        cdef tuple d = self.defaults
        if (
            fn is not self.checked_fn
            or kwargs is not None
            or priority is not <object>PyTuple_GET_ITEM(d, 0)
            or cost is not <object>PyTuple_GET_ITEM(d, 1)
            or tags is not <object>PyTuple_GET_ITEM(d, 2)
            or uses is not <object>PyTuple_GET_ITEM(d, 3)
            or retries is not <object>PyTuple_GET_ITEM(d, 4)
            or retry_delay is not <object>PyTuple_GET_ITEM(d, 5)
            or retry_backoff is not <object>PyTuple_GET_ITEM(d, 6)
            or retry_on is not <object>PyTuple_GET_ITEM(d, 7)
            or timeout is not <object>PyTuple_GET_ITEM(d, 8)
            or run_in is not <object>PyTuple_GET_ITEM(d, 9)
            or trigger is not <object>PyTuple_GET_ITEM(d, 10)
        ):
            return None
        return self._add(
            dag, fn, PySequence_Fast_ITEMS(args), PyTuple_GET_SIZE(args), args, name, after
        )

    cdef object _add(
        self, object dag, object fn, PyObject** argv, Py_ssize_t k, tuple whole, object name,
        object after,
    ):
        # The task's positional arguments are argv[0:k]; *whole*, when not
        # None, is a tuple of exactly them (stored as it is when it must be).
        cdef Py_ssize_t i = PyList_GET_SIZE(self.fns)
        cdef Py_ssize_t nd = 0, j, n_after
        cdef int data[64]
        cdef int where[64]
        cdef int after_idx[64]
        cdef bint plain = False
        cdef object a, t, items, stored
        cdef PyObject** seq
        cdef Py_ssize_t index
        if name is not None:
            if type(name) is not str or not name or _default_like(name):
                return None
        elif self.default_like and i in self.default_like:
            return None
        # Positional arguments: handles of this DAG, or plain values.
        if k > _STACK:
            return None
        for j in range(k):
            a = <object>argv[j]
            t = type(a)
            if t is Handle or t is self.handle_type:
                index = self._index_in(a, dag)
                if index == _DECLINE:
                    return None
                data[nd] = <int>index
                where[nd] = <int>j
                nd += 1
            elif t in _PLAIN:
                plain = True
            else:
                return None
        # after=: a handle, a name, or a list or tuple of them.
        if after is self.no_after:
            items = None
            n_after = 0
        else:
            t = type(after)
            if t is list or t is tuple:
                items = after
            elif t is Handle or t is self.handle_type or t is str:
                items = (after,)
            else:
                return None
            n_after = PySequence_Fast_GET_SIZE(items)
            if n_after > _STACK:
                return None
            seq = PySequence_Fast_ITEMS(items)
            for j in range(n_after):
                a = <object>seq[j]
                t = type(a)
                if t is Handle or t is self.handle_type:
                    index = self._index_in(a, dag)
                    if index == _DECLINE:
                        return None
                    after_idx[j] = <int>index
                elif t is str and a and not _default_like(a):
                    index = self.index_of.find(a, PyObject_Hash(a))
                    after_idx[j] = -1 if index < 0 else self.index_of.tasks[index]
                else:
                    return None
        # Checked but for the name being taken: record. Nothing in _record can
        # fail after the name is taken but for lack of memory.
        if not plain:
            stored = k if k else ()
        elif whole is not None:
            stored = whole
        else:
            stored = PyTuple_New(k)
            for j in range(k):
                a = <object>argv[j]
                Py_INCREF(a)
                PyTuple_SET_ITEM(stored, j, a)
        return self._record(dag, fn, stored, name, i, nd, plain, data, where, items, n_after, after_idx)

    cdef object _record(
        self, object dag, object fn, object stored, object name, Py_ssize_t i,
        Py_ssize_t nd, bint plain, int* data, int* where, object items, Py_ssize_t n_after,
        int* after_idx,
    ):
        # The index as an int object only where a table keeps it.
        cdef object pyi = i if n_after or (nd and plain) else None
        cdef Py_ssize_t j, lo = Py_SIZE(self.src)
        cdef int end
        # The name's last check and its record in one probe of the table: a
        # name taken already is left to the general path (DuplicateTaskError).
        if name is not None and self.index_of.put(name, i) >= 0:
            return None
        self.fns.append(fn)
        self.args.append(stored)
        self.opts.append(self.default_options)
        if nd:
            push(self.src, data, nd)
            if plain:
                # Positions are kept only where args does not imply them.
                self.where[pyi] = tuple([where[j] for j in range(nd)])
        if n_after:
            for j in range(n_after):
                if after_idx[j] < 0:
                    self.pending[lo + nd + j] = (pyi, items[j])
            push(self.src, after_idx, n_after)
        end = <int>(lo + nd + n_after)
        push(self.off, &end, 1)
        return self._handle(dag, i)

    cdef inline Py_ssize_t _index_in(self, object a, object dag) except? -1:
        # The index of handle *a* when it is of *dag* and fits a C int, else
        # _DECLINE. The twin's Handle (with the compiled builder only when
        # the package chose the twins at import) is read as a Python object.
        cdef object of
        cdef Py_ssize_t index
        if type(a) is Handle:
            of = (<Handle>a)._dag
            index = (<Handle>a)._index
        else:
            of = a._dag
            index = a._index
        if of is not dag or not _INT_MIN <= index <= _INT_MAX:
            return _DECLINE
        return index

    cdef inline object _handle(self, object dag, Py_ssize_t i):
        if self.handle_type is Handle:
            return _new_handle(dag, i)
        return self.handle_type(dag, i)

    def map(self, dag, fn, iterable, add):
        """Add ``fn(item)`` for each item; *add* (``dag.add``) takes the items the fast path cannot.

        Returns the handles. On an error the tasks added so far stay: the
        caller removes them.
        """
        cdef list out = []
        cdef Py_ssize_t i, lo
        cdef int data[1]
        cdef int end
        cdef object t, one
        cdef Py_ssize_t index
        cdef object default_options = self.default_options
        cdef list fns = self.fns, args = self.args, opts = self.opts
        for item in iterable:
            i = PyList_GET_SIZE(fns)
            t = type(item)
            if fn is not self.checked_fn or (self.default_like and i in self.default_like):
                out.append(add(fn, item))
                continue
            if t is Handle or t is self.handle_type:
                index = self._index_in(item, dag)
                if index == _DECLINE:
                    out.append(add(fn, item))
                    continue
                data[0] = <int>index
                lo = len(self.src)
                fns.append(fn)
                args.append(1)
                opts.append(default_options)
                push(self.src, data, 1)
                end = <int>(lo + 1)
                push(self.off, &end, 1)
            elif t in _PLAIN:
                one = PyTuple_New(1)
                Py_INCREF(item)
                PyTuple_SET_ITEM(one, 0, item)
                fns.append(fn)
                args.append(one)
                opts.append(default_options)
                end = <int>len(self.src)
                push(self.off, &end, 1)
            else:
                out.append(add(fn, item))
                continue
            out.append(self._handle(dag, i))
        return out


include "_build_add.pxi"


cdef object _run_add(
    object b, object dag, object fn, PyObject** argv, Py_ssize_t k, object name, PyObject* after
):
    # Builder.add's common call (name= and after= at most; *after* NULL when
    # not given) for run.add's compiled common call (_core.Grower): the
    # handle, or None when the call needs the general path.
    if type(b) is not Builder or (<Builder>b).checked_fn is not fn:
        return None
    return (<Builder>b)._add(
        dag, fn, argv, k, None, name, (<Builder>b).no_after if after is NULL else <object>after
    )


run_add_capsule = PyCapsule_New(<void*>_run_add, b"trio_dag._native._build.run_add", NULL)
"""``Builder.add``'s common call as a C function, for ``_core.Grower`` (see ``_run_add``)."""

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled fast path of ``DAG.add`` and ``DAG.map``. Same API and behaviour as ``_build_py``.

A :class:`Builder` shares the DAG's columns (lists and ``array('i')``) and
appends one task to them in one call, for the common call only: a function
already checked, no option but ``name=`` and ``after=``, positional
arguments that are handles of the DAG or plain values, ``after=`` a list or
tuple of handles and names. For anything else, and for anything that could be
an error, it returns None having recorded nothing, and ``DAG.add`` takes its
general path, which checks and raises exactly as before.

Also here: :data:`add`, ``DAG.add`` itself with this backend (a callable
that takes the common call straight to the builder, with no argument tuple
or keyword dict made), and :class:`Names`, the DAG's table of given names.
"""

cimport cython
from cpython.array cimport array
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.object cimport Py_SIZE, Py_TYPE
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
    # all. The building modules read _dag and _index; nothing else does.
    cdef readonly object _dag
    cdef readonly Py_ssize_t _index

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


@cython.final
cdef class Names:
    """The names given with ``name=``: name -> task index, and task index -> name.

    A name is kept once, in a list in the order given, which is the tasks'
    order, beside its task's index in a C array (ascending); an
    open-addressing table of positions in the list (C ints, at most 2/3
    full) finds a name. About 25 bytes a name where a dict of int objects
    took about 75, and the reverse lookup is a bisection, with no second
    table. Reads as a mapping: ``get``, ``in``, ``[]``, ``len``, ``keys``,
    ``items`` (in the order given).
    """

    cdef list names
    cdef int* tasks  # tasks[k]: the task named names[k]
    cdef Py_ssize_t room  # entries tasks has room for
    # The table: 0 for a free slot, else (k + 1) | tag << bits for names[k],
    # the tag being high bits of the name's hash, so that a probe looks at a
    # name (a cache miss) only when its tag matches.
    cdef unsigned int* slots
    cdef Py_ssize_t mask  # len(slots) - 1, a power of two less 1; -1 while there is no table
    cdef int bits  # len(slots) == 1 << bits

    def __cinit__(self):
        self.names = []
        self.tasks = NULL
        self.room = 0
        self.slots = NULL
        self.mask = -1
        self.bits = 0

    def __dealloc__(self):
        PyMem_Free(self.tasks)
        PyMem_Free(self.slots)

    def __init__(self, items=()):
        for name, i in items:
            if self.put(name, i) >= 0:
                raise ValueError(f"name {name!r} given twice")

    cdef inline unsigned int tag(self, Py_hash_t h) noexcept:
        # The hash's top bits, as many as the slot has beside the position.
        return <unsigned int>((<unsigned long long>h) >> (32 + self.bits)) << self.bits

    cdef Py_ssize_t find(self, object name, Py_hash_t h) except -2:
        """The position of *name* in names, or -1."""
        cdef size_t perturb = <size_t>h, j
        cdef unsigned int v, tag, low = <unsigned int>self.mask
        cdef Py_ssize_t k
        cdef object other
        if self.mask < 0:
            return -1
        tag = self.tag(h)
        j = <size_t>h & <size_t>self.mask
        while True:
            v = self.slots[j]
            if v == 0:
                return -1
            if (v & ~low) == tag:
                k = <Py_ssize_t>(v & low) - 1
                other = <object>PyList_GET_ITEM(self.names, k)
                if other is name or (
                    PyObject_Hash(other) == h and PyObject_RichCompareBool(other, name, Py_EQ)
                ):
                    return k
            perturb >>= 5
            j = (j * 5 + perturb + 1) & <size_t>self.mask

    cdef void place(self, Py_ssize_t k, Py_hash_t h) noexcept:
        """Put position *k* in the table's first free slot on *h*'s probe sequence."""
        cdef size_t perturb = <size_t>h, j = <size_t>h & <size_t>self.mask
        while self.slots[j] != 0:
            perturb >>= 5
            j = (j * 5 + perturb + 1) & <size_t>self.mask
        self.slots[j] = <unsigned int>(k + 1) | self.tag(h)

    cdef int rebuild(self, int bits) except -1:
        """A table of ``1 << bits`` slots over every name."""
        cdef unsigned int* slots = <unsigned int*>PyMem_Calloc(
            (<size_t>1) << bits, sizeof(unsigned int)
        )
        cdef Py_ssize_t k
        if slots is NULL:
            raise MemoryError()
        PyMem_Free(self.slots)
        self.slots = slots
        self.bits = bits
        self.mask = ((<Py_ssize_t>1) << bits) - 1
        for k in range(PyList_GET_SIZE(self.names)):
            self.place(k, PyObject_Hash(<object>PyList_GET_ITEM(self.names, k)))
        return 0

    cdef Py_ssize_t put(self, object name, Py_ssize_t i) except -2:
        """Name task *i* (the last one named so far) *name*, unless taken: then its task."""
        cdef Py_hash_t h = PyObject_Hash(name)
        cdef Py_ssize_t k = self.find(name, h), n = PyList_GET_SIZE(self.names), room
        cdef int* tasks
        if k >= 0:
            return self.tasks[k]
        if (n + 1) * 3 > (self.mask + 1) * 2:
            if self.bits >= 31:
                raise OverflowError("too many names")
            self.rebuild(3 if self.mask < 0 else self.bits + 1)
        if n == self.room:
            room = n + (n >> 3) + 8
            tasks = <int*>PyMem_Realloc(self.tasks, <size_t>room * sizeof(int))
            if tasks is NULL:
                raise MemoryError()
            self.tasks = tasks
            self.room = room
        self.names.append(name)
        self.tasks[n] = <int>i
        self.place(n, h)
        return -1

    cdef Py_ssize_t position(self, Py_ssize_t i) noexcept:
        """The position of the first name of a task >= *i* (bisection)."""
        cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(self.names), mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.tasks[mid] < i:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def add(self, name, Py_ssize_t i):
        """Name task *i*, the last one named so far, *name* (checked to be free: ValueError)."""
        if self.put(name, i) >= 0:
            raise ValueError(f"name {name!r} is taken")

    def get(self, name, default=None):
        """The task named *name*, or *default*."""
        cdef Py_ssize_t k = self.find(name, PyObject_Hash(name))
        return default if k < 0 else self.tasks[k]

    def name_of(self, Py_ssize_t i):
        """The name task *i* was given, or None."""
        cdef Py_ssize_t k = self.position(i)
        if k < PyList_GET_SIZE(self.names) and self.tasks[k] == i:
            return <object>PyList_GET_ITEM(self.names, k)
        return None

    def truncate(self, Py_ssize_t n):
        """Forget the names of tasks *n* and on."""
        cdef Py_ssize_t k = self.position(n)
        if k < PyList_GET_SIZE(self.names):
            del self.names[k:]
            if self.mask >= 0:
                self.rebuild(self.bits)

    def __getitem__(self, name):
        cdef Py_ssize_t k = self.find(name, PyObject_Hash(name))
        if k < 0:
            raise KeyError(name)
        return self.tasks[k]

    def __contains__(self, name):
        return self.find(name, PyObject_Hash(name)) >= 0

    def __len__(self):
        return PyList_GET_SIZE(self.names)

    def __iter__(self):
        return iter(list(self.names))

    def keys(self):
        """The names, in the order given."""
        return list(self.names)

    def items(self):
        """(name, task) pairs, in the order given."""
        return [(self.names[k], self.tasks[k]) for k in range(PyList_GET_SIZE(self.names))]

    def __reduce__(self):
        return (Names, (self.items(),))

    def __repr__(self):
        return f"Names({dict(self.items())!r})"


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

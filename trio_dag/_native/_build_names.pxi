# Included by _build.pyx (one compiled module): Names, the DAG's table of given names.

@cython.final
@cython.no_gc_clear  # a name (a str subclass) may hold its DAG: never leave names None
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

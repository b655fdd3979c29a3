# The compiled Handle's shape, so other compiled modules (_keyhash) can
# cimport it and read a handle's index as a C integer.

cimport cython


@cython.final
cdef class Handle:
    cdef readonly object _dag
    cdef readonly Py_ssize_t _index

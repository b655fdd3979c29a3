# The compiled Returns' shape, so the compiled loop (_loop) can cimport it and
# hand each output to it with a C call, not a Python one.

from libc.stdint cimport uint64_t


cdef class Returns:
    cdef list keys
    cdef list pending_keys, pending, pending_tasks, digests
    cdef bytearray wants
    cdef bytes person
    cdef const uint64_t* start
    cdef bint whole
    cdef Py_ssize_t every
    cdef object flush, slow

    cdef object call(self, Py_ssize_t v, object result)

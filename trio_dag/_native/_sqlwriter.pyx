# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The SQLite cache's writer as a C thread that never takes the GIL.

``_cache_file.Writer`` (Python) is starved of the GIL while a run goes on:
the event loop's thread lets go of it only briefly and often, so a thread
waiting for it rarely wins it, and each SQLite statement of the Python
``sqlite3`` module needs it back. This writer owns its write connection
through SQLite's C API and runs all its work without the GIL: the event
loop's thread only copies each row into a C buffer (:meth:`Writer.put`).

SQLite's functions are resolved at run time from the very library Python's
``sqlite3`` module uses (``_sqlite3``'s shared object, whose dependencies
dlsym searches too), so both share one SQLite instance: two copies of
SQLite in one process would break its POSIX file locks. No header and no
link-time dependency. :func:`available` says whether every function was
found; if not, ``_cache_file`` uses the Python writer.

What a commit does, and the writer's mark (``alone``, ``last``, ``token``),
are exactly ``_cache_file.Writer``'s; its error is kept (the code and
message) and shown as the ``sqlite3`` exception the Python writer would
have raised.
"""

import os

from libc.stdlib cimport malloc, realloc, free, qsort
from libc.string cimport memcpy, memcmp, memset, strlen
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.pythread cimport (
    PyThread_type_lock, PyThread_allocate_lock, PyThread_acquire_lock, PyThread_release_lock, PyLockStatus, PY_LOCK_ACQUIRED, WAIT_LOCK,
    NOWAIT_LOCK,
)
from cpython.exc cimport PyErr_CheckSignals

cdef extern from "pythread.h":
    void PyThread_free_lock(PyThread_type_lock) nogil
    unsigned long PyThread_start_new_thread(void (*)(void*) noexcept nogil, void*)
    unsigned long PYTHREAD_INVALID_THREAD_ID
    PyLockStatus PyThread_acquire_lock_timed(
        PyThread_type_lock, long long microseconds, int intr_flag) nogil

cdef extern from *:
    """
    #include <time.h>
    #ifdef _WIN32
    #include <windows.h>
    static double tdw_monotonic(void) { return (double)GetTickCount64() / 1e3; }
    #else
    static double tdw_monotonic(void) {
        struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
    }
    #endif
    static double tdw_wallclock(void) {
        struct timespec t; timespec_get(&t, TIME_UTC);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
    }
    """
    double tdw_monotonic() nogil
    double tdw_wallclock() nogil

# --- SQLite's C API, resolved at run time ------------------------------------

ctypedef int (*open_v2_t)(const char*, void**, int, const char*) noexcept nogil
ctypedef int (*db_t)(void*) noexcept nogil  # close_v2, errcode
ctypedef int (*prepare_t)(void*, const char*, int, void**, const char**) noexcept nogil
ctypedef int (*stmt_t)(void*) noexcept nogil  # step, reset, finalize
ctypedef int (*bind_int64_t)(void*, int, long long) noexcept nogil
ctypedef int (*bind_double_t)(void*, int, double) noexcept nogil
ctypedef int (*bind_blob_t)(void*, int, const void*, int, void*) noexcept nogil
ctypedef int (*column_int_t)(void*, int) noexcept nogil  # column_type, column_bytes
ctypedef const unsigned char* (*column_text_t)(void*, int) noexcept nogil
ctypedef int (*busy_timeout_t)(void*, int) noexcept nogil
ctypedef const char* (*errmsg_t)(void*) noexcept nogil

cdef struct _Api:
    open_v2_t open_v2
    db_t close_v2
    db_t errcode
    db_t get_autocommit
    prepare_t prepare_v2
    stmt_t step
    stmt_t reset
    stmt_t finalize
    bind_int64_t bind_int64
    bind_double_t bind_double
    bind_blob_t bind_blob
    bind_blob_t bind_text
    column_int_t column_type
    column_int_t column_bytes
    column_text_t column_text
    busy_timeout_t busy_timeout
    errmsg_t errmsg

cdef _Api api
cdef int _resolved = -1  # -1 not tried, 0 missing, 1 found

_NAMES = (
    "open_v2", "close_v2", "extended_errcode", "get_autocommit", "prepare_v2",
    "step", "reset", "finalize", "bind_int64", "bind_double", "bind_blob", "bind_text",
    "column_type", "column_bytes", "column_text", "busy_timeout", "errmsg",
)

cdef enum:
    SQLITE_OK = 0
    SQLITE_TEXT = 3
    SQLITE_TOOBIG = 18
    SQLITE_MISUSE = 21
    SQLITE_ROW = 100
    SQLITE_DONE = 101
    SQLITE_OPEN_READWRITE = 0x2
    SQLITE_OPEN_NOMUTEX = 0x8000  # one thread at a time uses the connection: no mutex a call
    INT_MAX = 2147483647
    _ROW = 0    # a _Rec of a row to write
    _TOUCH = 1  # a _Rec of a hit to mark used


def available():
    """Whether every SQLite function this writer needs was found in the library
    Python's ``sqlite3`` module uses (resolved once, at the first call)."""
    global _resolved
    if _resolved < 0:
        _resolved = 0
        try:
            import ctypes
            import _sqlite3

            lib = ctypes.CDLL(_sqlite3.__file__)
            found = [ctypes.cast(getattr(lib, "sqlite3_" + name), ctypes.c_void_p).value
                     for name in _NAMES]
        except (ImportError, OSError, AttributeError):
            return False
        if not all(found) or len(found) * sizeof(void*) != sizeof(_Api):
            return False
        _set_api(found)
        _resolved = 1
    return _resolved == 1


cdef void _set_api(list found):
    """Fill ``api`` from the addresses of _NAMES, in its fields' order."""
    cdef void** fields = <void**>&api
    cdef Py_ssize_t i
    for i in range(len(found)):
        fields[i] = <void*><size_t>found[i]


include "_sqlwriter_thread.pxi"


# --- the Python side ---------------------------------------------------------

# Forks of this process so far, as the child sees it: a writer made before a
# fork has no thread in the child (and its mutex may be held for good there).
cdef long long _forks = 0


def _after_fork_in_child():
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _exception(int code, str message):
    """The ``sqlite3`` exception the ``sqlite3`` module raises for *code* (its
    ``_pysqlite_seterror``'s mapping), with its ``sqlite_errorcode``."""
    import sqlite3

    primary = code & 0xFF
    if primary == 7:
        return MemoryError()
    if primary in (2, 12):
        kind = sqlite3.InternalError
    elif primary in (1, 3, 4, 5, 6, 8, 9, 10, 13, 14, 15, 16, 17):
        kind = sqlite3.OperationalError
    elif primary == 18:
        kind = sqlite3.DataError
    elif primary in (19, 20):
        kind = sqlite3.IntegrityError
    elif primary in (21, 25):
        kind = sqlite3.InterfaceError
    else:
        kind = sqlite3.DatabaseError
    exc = kind(message)
    exc.sqlite_errorcode = code
    return exc


cdef class Writer:
    """The C writer thread of one ``Cache``: ``_cache_file.Writer``'s job without the GIL.

    ``Writer(path, pending, token, last, unpend, interval, gap, busy_timeout)``
    opens *path* (a file ``_cache_file.open_file`` has checked) and starts
    the thread. :meth:`put` queues rows and :meth:`touch` hits to mark used;
    the thread commits what it holds once *gap* seconds have passed since
    its last commit, and at most *interval* after it was queued; :meth:`flush`
    commits now and waits; :meth:`stop` commits, closes and ends the thread.
    *pending* (key to entry) holds what was put and not yet committed, as
    :meth:`pending` returns it: each put is merged into it only when asked
    (a cold run from an empty file never asks), and leaves it once its
    commit has ended (``unpend(pending, keys, entries)``, with the GIL: at
    the next call into this object), or is dropped unmerged.
    """

    cdef _State* s
    cdef readonly str token
    cdef dict _pending
    cdef object unpend
    cdef long long forks     # _forks when made: another value means a forked child
    cdef list batches        # (keys, entries) of each put not yet committed, in order
    cdef Py_ssize_t merged   # how many of them, from the first, are in pending
    cdef long long retired   # puts committed and dropped from batches so far
    cdef object _error

    def __cinit__(self):
        self.s = NULL

    def __init__(self, path, dict pending, str token, last, unpend,
                 double interval, double gap, double busy_timeout):
        cdef bytes name, tok, prev
        cdef _State* s
        if not available():
            raise RuntimeError("SQLite's C API was not found")
        name = os.fsencode(path)
        tok = token.encode()
        if len(tok) >= 64:
            raise ValueError("the token is too long")
        s = self.s = <_State*>malloc(sizeof(_State))
        if s == NULL:
            raise MemoryError()
        memset(s, 0, sizeof(_State))
        self.token, self._pending, self.unpend = token, pending, unpend
        self.batches = []
        self.merged = 0
        self.forks = _forks
        memcpy(s.token, <char*>tok, len(tok))
        s.token_len = len(tok)
        s.last_len = -2  # a mark that matches none: alone is cleared at the first commit
        if last is None:
            s.last_len = -1
        elif isinstance(last, str) and len(last.encode()) < 256:
            prev = last.encode()
            memcpy(s.last, <char*>prev, len(prev))
            s.last_len = len(prev)
        s.alone = 1
        s.interval, s.gap, s.last_end = interval, gap, tdw_monotonic()
        s.wake = PyThread_allocate_lock()
        s.finished = PyThread_allocate_lock()
        if s.wake != NULL and s.finished != NULL:
            s.mutex = PyThread_allocate_lock()
        if s.mutex == NULL:
            if s.wake != NULL:
                PyThread_free_lock(s.wake)
            if s.finished != NULL:
                PyThread_free_lock(s.finished)
            raise MemoryError()
        PyThread_acquire_lock(s.wake, WAIT_LOCK)
        PyThread_acquire_lock(s.finished, WAIT_LOCK)
        self._open(name, busy_timeout)
        s.running = 1
        if PyThread_start_new_thread(_main, <void*>s) == PYTHREAD_INVALID_THREAD_ID:
            s.running = 0
            _close_db(s)
            raise RuntimeError("cannot start the cache's writer thread")

    cdef _open(self, bytes name, double busy_timeout):
        """Open the connection as ``_cache_file.connect`` does, and prepare the
        Python writer's statements (``_insert(1)``, ``_TOUCH``, ``_MARK``)."""
        cdef _State* s = self.s
        cdef const char* c_name = name
        cdef int rc
        with nogil:
            rc = api.open_v2(c_name, &s.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
        if rc == SQLITE_OK:
            api.busy_timeout(s.db, <int>(busy_timeout * 1000))
            rc = self._prepare(b"PRAGMA synchronous = NORMAL", NULL)
        if rc == SQLITE_OK:
            rc = self._prepare(b"PRAGMA cache_size = -32768", NULL)
        if rc == SQLITE_OK:
            rc = self._prepare(b"BEGIN IMMEDIATE", &s.begin)
        if rc == SQLITE_OK:
            rc = self._prepare(b"COMMIT", &s.commit)
        if rc == SQLITE_OK:
            rc = self._prepare(b"ROLLBACK", &s.rollback)
        if rc == SQLITE_OK:
            rc = self._prepare(
                b"INSERT OR REPLACE INTO results(id, entry, used) VALUES (?, ?, ?)", &s.insert)
        if rc == SQLITE_OK:
            rc = self._prepare(b"UPDATE results SET used = ? WHERE id = ?", &s.touch)
        if rc == SQLITE_OK:
            rc = self._prepare(
                b"INSERT OR REPLACE INTO trio_dag_meta VALUES ('writer', ?)", &s.mark)
        if rc == SQLITE_OK:
            rc = self._prepare(
                b"SELECT value FROM trio_dag_meta WHERE name = 'writer'", &s.read_mark)
        if rc != SQLITE_OK:
            if s.db != NULL:
                rc = api.errcode(s.db)
            message = (api.errmsg(s.db) if s.db != NULL else b"out of memory").decode(
                "utf-8", "replace")
            _close_db(s)
            raise _exception(rc, message)

    cdef int _prepare(self, bytes sql, void** slot):
        """Prepare *sql* into *slot*; with no slot, run it once."""
        cdef void* stmt = NULL
        cdef int rc = api.prepare_v2(self.s.db, <const char*>sql, -1, &stmt, NULL)
        if rc != SQLITE_OK or slot != NULL:
            if slot != NULL:
                slot[0] = stmt
            return rc
        rc = api.step(stmt)
        api.finalize(stmt)
        return SQLITE_OK if rc in (SQLITE_DONE, SQLITE_ROW) else rc

    def __dealloc__(self):
        cdef _State* s = self.s
        if s == NULL:
            return
        if self.forks != _forks:  # a forked child: its thread and connection are the parent's
            return
        if s.running:
            with nogil:
                _stop(s)
        _close_db(s)
        if s.mutex != NULL:  # else none is
            PyThread_free_lock(s.mutex)
            PyThread_free_lock(s.wake)
            PyThread_free_lock(s.finished)
        free(s.q.data)
        free(s.q.recs)
        free(s.mine.data)
        free(s.mine.recs)
        free(s)
        self.s = NULL

    cdef long long _read(self, long long* field):
        """A counter the thread updates, read under the mutex."""
        cdef long long value
        PyThread_acquire_lock(self.s.mutex, WAIT_LOCK)
        value = field[0]
        PyThread_release_lock(self.s.mutex)
        return value

    cdef int _retire(self) except -1:
        """Drop the puts committed since the last call, unpending the merged ones."""
        cdef long long done
        cdef Py_ssize_t cut, merged
        if self.forks != _forks:
            return 0
        done = self._read(&self.s.committed_batches)
        if done == self.retired:
            return 0
        cut = <Py_ssize_t>(done - self.retired)
        merged = min(cut, self.merged)
        batches = self.batches[:merged]
        del self.batches[:cut]  # before unpend, which another thread may enter meanwhile
        self.merged -= merged
        self.retired = done
        for keys, entries in batches:
            self.unpend(self._pending, keys, entries)
        return 0

    def pending(self):
        """The entries put and not yet committed: key to entry, the later put's
        entry of a key put twice (this object's *pending*, brought up to date)."""
        cdef Py_ssize_t n
        cdef dict pending = self._pending
        if self.batches:
            self._retire()
            n = len(self.batches)
            while self.merged < n:
                keys, entries = self.batches[self.merged]
                self.merged += 1
                pending.update(zip(keys, entries))
        return pending

    cdef int _queue(self, list keys, list entries, double now) except -1:
        """Copy rows (*entries* a list) or hits at *now* (*entries* None) into the queue."""
        cdef _State* s = self.s
        cdef Py_ssize_t n = len(keys), i
        cdef size_t total = 0
        cdef object k, e
        cdef _Rec* r
        cdef _Buf* q = &s.q
        cdef int failed = 0
        if entries is not None and len(entries) != n:
            raise ValueError("keys and entries differ in length")
        for i in range(n):
            k = keys[i]
            if type(k) is not bytes or PyBytes_GET_SIZE(k) < 8:
                raise TypeError("a key is bytes of at least 8")
            if entries is not None:
                e = entries[i]
                if type(e) is not bytes:
                    raise TypeError("an entry is bytes")
                total += <size_t>PyBytes_GET_SIZE(e)
        if n == 0:
            return 0
        PyThread_acquire_lock(s.mutex, WAIT_LOCK)  # the thread holds it only briefly
        if _grow(q, <size_t>n, total) < 0:
            failed = 1
        else:
            if q.n == 0:
                q.first = tdw_monotonic()
                _signal(s)
            for i in range(n):
                r = &q.recs[q.n]
                r.ident = _ident(<const unsigned char*>PyBytes_AS_STRING(keys[i]))
                r.order = q.n
                q.n += 1
                if entries is None:
                    r.kind = _TOUCH
                    r.used = now
                    continue
                e = entries[i]
                r.kind = _ROW
                r.at = q.used
                r.size = <size_t>PyBytes_GET_SIZE(e)
                memcpy(q.data + q.used, PyBytes_AS_STRING(e), r.size)
                q.used += r.size
            if entries is not None:
                q.batches += 1
        PyThread_release_lock(s.mutex)
        if failed:
            raise MemoryError()
        return 0

    def put(self, list keys, list entries):
        """Queue rows: each key's first 8 bytes (its id) and its entry (copied)."""
        if self.forks != _forks:
            return  # nothing to write them (see error)
        if self.batches:
            self._retire()
        self._queue(keys, entries, 0.0)
        if keys:
            self.batches.append((keys, entries))

    def touch(self, double now, list keys):
        """Queue lookup hits to mark used at *now*."""
        if self.forks == _forks:
            self._queue(keys, None, now)

    def flush(self):
        """Commit everything queued; return when that commit has ended (or failed).

        The wait lets go of the GIL, and ends early (raising) if a signal
        handler raises, as ``threading.Event.wait`` would."""
        cdef _State* s = self.s
        cdef _Req* req = <_Req*>malloc(sizeof(_Req))
        cdef int waiting = 0
        cdef PyLockStatus got = PY_LOCK_ACQUIRED
        if self.forks != _forks:
            free(req)
            return  # nothing to commit with (see error)
        if req == NULL:
            raise MemoryError()
        req.abandoned = 0
        req.done = PyThread_allocate_lock()
        if req.done == NULL:
            free(req)
            raise MemoryError()
        PyThread_acquire_lock(req.done, WAIT_LOCK)
        PyThread_acquire_lock(s.mutex, WAIT_LOCK)
        if s.running and not s.stop:
            req.next = s.requests
            s.requests = req
            _signal(s)
            waiting = 1
        PyThread_release_lock(s.mutex)
        try:
            while waiting:
                with nogil:
                    got = PyThread_acquire_lock_timed(req.done, 50000, 0)
                if got == PY_LOCK_ACQUIRED:
                    break
                PyErr_CheckSignals()  # raises what a signal handler raised
        finally:
            if got == PY_LOCK_ACQUIRED:
                _free_req(req)
            else:  # interrupted: the thread frees it, unless it is done already
                PyThread_acquire_lock(s.mutex, WAIT_LOCK)
                if PyThread_acquire_lock(req.done, NOWAIT_LOCK):
                    _free_req(req)
                else:
                    req.abandoned = 1
                PyThread_release_lock(s.mutex)
        self._retire()

    def stop(self):
        """Commit what is queued, close the connection and end the thread; idempotent.

        The wait lets go of the GIL, and ends early (raising) if a signal
        handler raises, as ``Thread.join`` would: the thread still ends
        after its commit."""
        cdef _State* s = self.s
        cdef int wait
        cdef PyLockStatus got
        if self.forks != _forks:
            return
        with nogil:
            wait = _ask_stop(s)
        while wait:
            with nogil:
                got = PyThread_acquire_lock_timed(s.finished, 50000, 0)
            if got == PY_LOCK_ACQUIRED:
                PyThread_release_lock(s.finished)  # for any other waiter
                break
            PyErr_CheckSignals()
        self._retire()

    @property
    def alone(self):
        """False once another connection was seen to write the file (see ``_cache_file.Writer``)."""
        return bool(self.s.alone)

    @alone.setter
    def alone(self, value):
        if not value:
            self.s.alone = 0

    @property
    def commits(self):
        """Commits ended."""
        return self._read(&self.s.commits) if self.forks == _forks else self.s.commits

    @property
    def error(self):
        """The exception of the commit that failed, as ``sqlite3`` raises it; or None."""
        cdef int code
        if self._error is None and self.forks != _forks:
            self._error = RuntimeError(
                "this process was forked from the one that opened the Cache, and its "
                "writer thread stayed there; open the Cache again in this process")
        if self._error is None:
            PyThread_acquire_lock(self.s.mutex, WAIT_LOCK)
            code = self.s.error_code
            PyThread_release_lock(self.s.mutex)
            if code:  # its message is written before its code, and then never again
                self._error = _exception(code, (<bytes>self.s.error_msg).decode(
                    "utf-8", "replace"))
        return self._error

    @property
    def running(self):
        """Whether the thread has not ended (in this process)."""
        if self.forks != _forks:
            return False
        PyThread_acquire_lock(self.s.mutex, WAIT_LOCK)
        running = self.s.running
        PyThread_release_lock(self.s.mutex)
        return bool(running)


cdef int _ask_stop(_State* s) noexcept nogil:
    """Ask the thread to end after its last commit; whether it had not ended."""
    cdef int running
    PyThread_acquire_lock(s.mutex, WAIT_LOCK)
    running = s.running
    if running and not s.stop:
        s.stop = 1
        _signal(s)
    PyThread_release_lock(s.mutex)
    return running


cdef void _stop(_State* s) noexcept nogil:
    """Ask the thread to end after its last commit, and wait until it has."""
    if _ask_stop(s):
        PyThread_acquire_lock(s.finished, WAIT_LOCK)
        PyThread_release_lock(s.finished)  # for any other waiter

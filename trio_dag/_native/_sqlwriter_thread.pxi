# Included by _sqlwriter.pyx (one compiled module): the queue the event loop's
# thread appends to, and the C thread that commits it, never taking the GIL.
# It reaches SQLite through ``api`` (the pyx's, resolved at run time).

# --- the queue ---------------------------------------------------------------

cdef enum:
    _KEEP_BYTES = 16 << 20  # a buffer larger than this is let go of once committed


cdef struct _Rec:
    long long ident   # the key's first 8 bytes, little-endian, signed (_cache_file._id)
    size_t at         # a row: where its entry starts in the buffer's data
    size_t size       # a row: its entry's length
    double used       # a touch: the time of the hit
    size_t order      # queued order: of two rows of one id, the later wins
    int kind          # _ROW or _TOUCH


cdef struct _Buf:
    char* data
    size_t used
    size_t cap
    _Rec* recs
    size_t n
    size_t ncap
    size_t batches    # put() calls of rows in it: what a commit of it lets unpend
    double first      # monotonic time its first record was queued


cdef struct _Req:               # a flush() waiting, on the heap
    PyThread_type_lock done     # held until the thread has committed for it
    int abandoned               # its waiter was interrupted: the thread frees it
    _Req* next


cdef struct _State:
    PyThread_type_lock mutex    # guards q, requests, signalled, stop, running, and the
                                # counters and error the Python side reads
    PyThread_type_lock wake     # held while nothing is signalled; released to wake the thread
    PyThread_type_lock finished # held until the thread has ended
    _Buf q                      # the event loop's side: appended to under the mutex
    _Buf mine                   # the thread's side: the rows of one commit
    _Req* requests
    int signalled
    int stop
    int running
    double interval             # COMMIT_INTERVAL
    double gap                  # the least time between two commits, unless asked
    double last_end             # monotonic time the last commit ended
    # the connection, its statements, the mark
    void* db
    void* begin
    void* commit
    void* rollback
    void* insert
    void* touch
    void* mark
    void* read_mark
    char token[64]
    int token_len
    char last[256]
    int last_len                # -1: the file had no mark; -2: a mark never matched
    int alone                   # only ever cleared, by either side: read without the mutex
    long long commits
    long long committed_batches
    int error_code
    char error_msg[512]


cdef int _grow(_Buf* b, size_t nrecs, size_t nbytes) noexcept nogil:
    """Room for *nrecs* more records and *nbytes* more data; -1 if out of memory."""
    cdef size_t cap
    cdef void* p
    if b.n + nrecs > b.ncap:
        cap = b.ncap * 2 if b.ncap else 1024
        while cap < b.n + nrecs:
            cap *= 2
        p = realloc(b.recs, cap * sizeof(_Rec))
        if p == NULL:
            return -1
        b.recs = <_Rec*>p
        b.ncap = cap
    if b.used + nbytes > b.cap:
        cap = b.cap * 2 if b.cap else 65536
        while cap < b.used + nbytes:
            cap *= 2
        p = realloc(b.data, cap)
        if p == NULL:
            return -1
        b.data = <char*>p
        b.cap = cap
    return 0


cdef void _empty(_Buf* b) noexcept nogil:
    """Empty *b*, keeping its memory for the next rows unless it grew large."""
    b.n = b.used = b.batches = 0
    if b.cap > _KEEP_BYTES:
        free(b.data)
        b.data = NULL
        b.cap = 0
    if b.ncap * sizeof(_Rec) > _KEEP_BYTES:
        free(b.recs)
        b.recs = NULL
        b.ncap = 0


cdef inline long long _ident(const unsigned char* p) noexcept nogil:
    cdef unsigned long long u = 0
    cdef int j
    for j in range(8):
        u |= (<unsigned long long>p[j]) << (8 * j)
    return <long long>u


cdef int _by_kind_id_order(const void* a, const void* b) noexcept nogil:
    cdef const _Rec* x = <const _Rec*>a
    cdef const _Rec* y = <const _Rec*>b
    if x.kind != y.kind:
        return -1 if x.kind < y.kind else 1
    if x.ident != y.ident:
        return -1 if x.ident < y.ident else 1
    return -1 if x.order < y.order else (1 if x.order > y.order else 0)


cdef void _free_req(_Req* r) noexcept nogil:
    PyThread_free_lock(r.done)
    free(r)


cdef void _signal(_State* s) noexcept nogil:
    """Wake the thread (the caller holds the mutex)."""
    if not s.signalled:
        s.signalled = 1
        PyThread_release_lock(s.wake)


# --- the thread --------------------------------------------------------------

cdef void _fail(_State* s, int code, const char* msg) noexcept nogil:
    """Keep the error (the thread's first); nothing more is written after it."""
    cdef size_t n = strlen(msg)
    if n > 511:
        n = 511
    PyThread_acquire_lock(s.mutex, WAIT_LOCK)
    memcpy(s.error_msg, msg, n)
    s.error_msg[n] = 0
    s.error_code = code if code else SQLITE_MISUSE
    PyThread_release_lock(s.mutex)


cdef int _run_stmt(_State* s, void* stmt) noexcept nogil:
    """Step *stmt* to its end; 0, or the error code (the message kept)."""
    cdef int rc = api.step(stmt)
    api.reset(stmt)
    if rc == SQLITE_DONE or rc == SQLITE_ROW:
        return 0
    return rc


cdef int _mark_is_last(_State* s) noexcept nogil:
    """1 if the file's writer mark is still the one this writer last saw,
    0 if not, -1 on an error."""
    cdef int rc = api.step(s.read_mark)
    cdef int same, n
    cdef const unsigned char* text
    if rc == SQLITE_DONE:
        same = s.last_len == -1
    elif rc == SQLITE_ROW:
        same = 0
        if s.last_len >= 0 and api.column_type(s.read_mark, 0) == SQLITE_TEXT:
            text = api.column_text(s.read_mark, 0)
            n = api.column_bytes(s.read_mark, 0)
            same = n == s.last_len and memcmp(text, s.last, n) == 0
    else:
        api.reset(s.read_mark)
        return -1
    api.reset(s.read_mark)
    return same


cdef void _commit(_State* s) noexcept nogil:
    """Commit the thread's buffer in one transaction, as _cache_file.Writer.commit does."""
    cdef _Buf* b = &s.mine
    cdef size_t i
    cdef _Rec* r
    cdef double now
    cdef int rc = 0, same
    if b.n == 0 or s.error_code:
        return
    now = tdw_wallclock()
    qsort(b.recs, b.n, sizeof(_Rec), _by_kind_id_order)
    rc = _run_stmt(s, s.begin)
    if rc == 0 and s.alone:
        same = _mark_is_last(s)
        if same < 0:
            rc = api.errcode(s.db)
        elif not same:
            s.alone = 0
    i = 0
    while rc == 0 and i < b.n:
        r = &b.recs[i]
        if r.kind == _ROW:
            if r.size > INT_MAX:
                _fail(s, SQLITE_TOOBIG, "string or blob too big")
                break
            api.bind_int64(s.insert, 1, r.ident)
            api.bind_blob(s.insert, 2, b.data + r.at, <int>r.size, NULL)
            api.bind_double(s.insert, 3, now)
            rc = _run_stmt(s, s.insert)
        else:
            api.bind_double(s.touch, 1, r.used)
            api.bind_int64(s.touch, 2, r.ident)
            rc = _run_stmt(s, s.touch)
        i += 1
    if rc == 0 and not s.error_code:
        api.bind_text(s.mark, 1, s.token, s.token_len, NULL)
        rc = _run_stmt(s, s.mark)
    if rc == 0 and not s.error_code:
        rc = _run_stmt(s, s.commit)
    if rc != 0 and not s.error_code:
        _fail(s, api.errcode(s.db), api.errmsg(s.db))
    if s.error_code:
        if not api.get_autocommit(s.db):
            _run_stmt(s, s.rollback)
        return
    memcpy(s.last, s.token, s.token_len)
    s.last_len = s.token_len
    PyThread_acquire_lock(s.mutex, WAIT_LOCK)
    s.commits += 1
    s.committed_batches += b.batches
    PyThread_release_lock(s.mutex)


cdef void _main(void* arg) noexcept nogil:
    cdef _State* s = <_State*>arg
    cdef _Buf swap
    cdef _Req* reqs
    cdef _Req* nxt
    cdef double now, due
    cdef int go, stop, acquired
    cdef long long us
    while True:
        PyThread_acquire_lock(s.mutex, WAIT_LOCK)
        stop = s.stop
        reqs = s.requests
        go = stop or reqs != NULL
        due = -1.0
        if not go and s.q.n:
            now = tdw_monotonic()
            due = s.q.first + s.interval
            if s.last_end + s.gap < due:
                due = s.last_end + s.gap
            go = now >= due
        if go:
            s.requests = NULL
            swap = s.mine
            s.mine = s.q
            s.q = swap
            s.q.n = s.q.used = s.q.batches = 0
        PyThread_release_lock(s.mutex)
        if go:
            _commit(s)
            _empty(&s.mine)
            s.last_end = tdw_monotonic()
            PyThread_acquire_lock(s.mutex, WAIT_LOCK)
            while reqs != NULL:  # a waiter frees its request once released
                nxt = reqs.next
                if reqs.abandoned:
                    _free_req(reqs)
                else:
                    PyThread_release_lock(reqs.done)
                reqs = nxt
            PyThread_release_lock(s.mutex)
            if stop:
                break
            continue
        if due < 0:
            acquired = PyThread_acquire_lock(s.wake, WAIT_LOCK)
        else:
            us = <long long>((due - now) * 1e6) + 1
            acquired = PyThread_acquire_lock_timed(s.wake, us, 0) == PY_LOCK_ACQUIRED
        if acquired:
            PyThread_acquire_lock(s.mutex, WAIT_LOCK)
            s.signalled = 0
            PyThread_release_lock(s.mutex)
    _close_db(s)
    PyThread_acquire_lock(s.mutex, WAIT_LOCK)
    s.running = 0
    PyThread_release_lock(s.mutex)
    PyThread_release_lock(s.finished)


cdef inline void _finalize(void** stmt) noexcept nogil:
    if stmt[0] != NULL:
        api.finalize(stmt[0])
        stmt[0] = NULL


cdef void _close_db(_State* s) noexcept nogil:
    _finalize(&s.begin)
    _finalize(&s.commit)
    _finalize(&s.rollback)
    _finalize(&s.insert)
    _finalize(&s.touch)
    _finalize(&s.mark)
    _finalize(&s.read_mark)
    if s.db != NULL:
        api.close_v2(s.db)
        s.db = NULL

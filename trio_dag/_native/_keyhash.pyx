# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The cache's per-task hashing, compiled.

Same API and bytes as the twin ``trio_dag._native._keyhash_py`` (its
docstring gives the layouts); see ``_keyhash.pyi``. Each encoding is written
into one C buffer and hashed there by the blake2b of
``_keyhash_blake2b.pxi``: no Python object per part, no hashlib call.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcmp, memcpy
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF

from trio_dag._native._build cimport Handle as _CHandle

import pickle

cdef object _loads = pickle.loads
cdef object _dumps = pickle.dumps

cdef enum:
    _BUF = 4096  # bytes of an argument tuple's encoding hashed from the stack


cdef inline Py_ssize_t _put_u64(char* p, uint64_t v) noexcept nogil:
    cdef int k
    for k in range(8):
        p[k] = <char>((v >> (8 * k)) & 0xFF)
    return 8


cdef bytes _FRAME = b"\x20\x00\x00\x00\x00\x00\x00\x00"  # u64(32): a digest's frame

include "_keyhash_blake2b.pxi"

cdef enum:
    _MAX_DEPS = 456  # _BUF // 9: more handles than a flat tuple's encoding can hold


def flat_args_digest(tuple args, type handle_type, bytes person):
    cdef Py_ssize_t deps[_MAX_DEPS]
    cdef bytes digest = PyBytes_FromStringAndSize(NULL, 32)
    cdef Py_ssize_t k, n = _flat(
        args, handle_type, _start(person), <uint8_t*>PyBytes_AS_STRING(digest), deps
    )
    if n < 0:
        return None
    return digest, tuple([deps[k] for k in range(n)])


cdef Py_ssize_t _flat(
    tuple args, type handle_type, const uint64_t* start, uint8_t* digest, Py_ssize_t* deps
) except -2:
    """Hash a flat tuple of arguments into *digest* (32 bytes) and write its
    handles' indices in slot order to *deps*; return how many, or -1 when
    the tuple is not flat (see flat_args_digest)."""
    cdef char buf[_BUF]
    cdef Py_ssize_t n = len(args), at = 0, i, k, size, slot, nd = 0, j
    cdef object a, data
    cdef type t
    cdef long long value
    cdef int overflow
    buf[0] = b"("
    at = 1 + _put_u64(buf + 1, <uint64_t>n)
    for i in range(n):
        if at > _BUF - 300:  # room for the longest item and the tail
            return -1
        a = args[i]
        t = type(a)
        if t is handle_type:
            j = (<_CHandle>a)._index if t is _CHandle else a._index
            slot = -1
            for k in range(nd):
                if deps[k] == j:
                    slot = k
                    break
            if slot < 0:
                slot = nd
                deps[nd] = j
                nd += 1
            buf[at] = b"H"
            at += 1 + _put_u64(buf + at + 1, <uint64_t>slot)
        elif t is int:
            value = PyLong_AsLongLongAndOverflow(a, &overflow)
            if overflow:
                return -1
            buf[at] = b"i"
            at += 1 + _put_u64(buf + at + 1, <uint64_t><int64_t>value)
        elif t is str:
            data = (<str>a).encode("utf-8", "surrogatepass")
            size = PyBytes_GET_SIZE(data)
            if size >= 256:
                return -1
            buf[at] = b"u"
            at += 1 + _put_u64(buf + at + 1, <uint64_t>size)
            memcpy(buf + at, PyBytes_AS_STRING(data), size)
            at += size
        elif a is None:
            buf[at] = b"0"
            at += 1
        elif t is bool:
            buf[at] = b"T" if a else b"F"
            at += 1
        else:
            return -1
    buf[at] = b"k"
    at += 1 + _put_u64(buf + at + 1, 0)
    _b2_hash(start, <const uint8_t*>buf, at, digest)
    return nd


cdef inline uint64_t _get_u64(const char* p) noexcept nogil:
    return _b2_load(<const uint8_t*>p)


# A part (see make_part): u64(len(deps)), each dependency as a u64, then the
# key body's head. These two are the only places that know the layout.

cdef bytes _new_part(Py_ssize_t nd, Py_ssize_t head_size, char** deps_at):
    """A part of *nd* dependencies and a head of *head_size* bytes, its count
    written; the dependencies (then the head) are the caller's to write, at
    *deps_at* (the head at ``deps_at + 8 * nd``)."""
    cdef bytes part = PyBytes_FromStringAndSize(NULL, 8 + 8 * nd + head_size)
    cdef char* p = PyBytes_AS_STRING(part)
    _put_u64(p, <uint64_t>nd)
    deps_at[0] = p + 8
    return part


cdef Py_ssize_t _part_deps(bytes part, const char** deps_at) except -1:
    """How many dependencies *part* has; *deps_at* points to the first (and
    the head starts ``8 *`` that many bytes on). ValueError if it is not a part."""
    cdef const char* p = PyBytes_AS_STRING(part)
    cdef Py_ssize_t nd = -1
    if PyBytes_GET_SIZE(part) >= 8:
        nd = <Py_ssize_t>_get_u64(p)
    if nd < 0 or PyBytes_GET_SIZE(part) < 8 + 8 * nd:
        raise ValueError("split_part: not a part")
    deps_at[0] = p + 8
    return nd


def make_part(bytes prefix, deps):
    cdef Py_ssize_t nd = len(deps), k, size = PyBytes_GET_SIZE(prefix)
    cdef char* p
    cdef bytes part = _new_part(nd, size, &p)
    for k in range(nd):
        _put_u64(p + 8 * k, <uint64_t><Py_ssize_t>deps[k])
    memcpy(p + 8 * nd, PyBytes_AS_STRING(prefix), size)
    return part


def split_part(bytes part):
    cdef const char* p
    cdef Py_ssize_t k, nd = _part_deps(part, &p)
    return (
        PyBytes_FromStringAndSize(p + 8 * nd, PyBytes_GET_SIZE(part) - 8 - 8 * nd),
        tuple([<Py_ssize_t>_get_u64(p + 8 * k) for k in range(nd)]),
    )


def task_keys(
    tasks,
    list parts,
    list digests,
    bytearray plain,
    bytes person,
    list keys,
    list asking,
    bytearray asks,
):
    cdef list rest = []
    cdef Py_ssize_t v, size, at, j, k, nd, head_size
    cdef object d, part
    cdef bytes body
    cdef char buf[_BUF]
    cdef char* p
    cdef const char* q
    cdef const char* head
    cdef bint ok
    cdef const uint64_t* start = _start(person)
    cdef unsigned char* is_plain = plain
    cdef unsigned char* asked = asks
    cdef Py_ssize_t n = len(plain), m = len(digests)
    if len(asks) != n or len(parts) < n:
        raise ValueError("task_keys: plain, asks and parts differ in length")
    for v in tasks:
        if v < 0 or v >= n:
            raise IndexError(f"task_keys: task {v} out of range")
        asked[v] = 0
        if not is_plain[v]:
            rest.append(v)
            continue
        part = parts[v]
        if type(part) is not bytes:
            raise TypeError(f"task_keys: task {v} has no part")
        nd = _part_deps(<bytes>part, &q)
        head = q + 8 * nd
        head_size = PyBytes_GET_SIZE(part) - 8 - 8 * nd
        size = head_size + 1
        ok = True
        for k in range(nd):
            j = <Py_ssize_t>_get_u64(q + 8 * k)
            if j < 0 or j >= m:
                raise IndexError(f"task_keys: dependency {j} out of range")
            d = digests[j]
            if d is None:
                ok = False
                break
            size += PyBytes_GET_SIZE(d)
        if not ok:
            rest.append(v)
            continue
        # The body in a stack buffer, or in a bytes object when it is long.
        body = None
        if size <= _BUF:
            p = buf
        else:
            body = PyBytes_FromStringAndSize(NULL, size)
            p = PyBytes_AS_STRING(body)
        memcpy(p, head, head_size)
        at = head_size
        for k in range(nd):
            d = digests[<Py_ssize_t>_get_u64(q + 8 * k)]
            memcpy(p + at, PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d))
            at += PyBytes_GET_SIZE(d)
        p[at] = b"0"
        keys.append(_b2_digest(start, p, size))
        asking.append(v)
    return rest


def take_hits(
    list asking,
    list keys,
    dict found,
    list outputs,
    bytearray wants,
    list digests,
    bytearray hit,
    list missed,
    object decode,
):
    cdef list hits = []
    cdef Py_ssize_t i, v, n = len(asking)
    cdef object key, entry, digest, payload, value
    cdef unsigned char* want = wants
    cdef unsigned char* was_hit = hit
    if len(keys) != n:
        raise ValueError("take_hits: asking and keys differ in length")
    cdef Py_ssize_t m = len(missed)
    for i in range(n):
        v = asking[i]
        if v < 0 or v >= len(wants) or v >= len(hit) or v >= m:
            raise IndexError(f"take_hits: task {v} out of range")
        key = keys[i]
        entry = found.get(key)
        if entry is not None:
            digest, payload = entry
            try:
                if PyBytes_GET_SIZE(payload) and PyBytes_AS_STRING(payload)[0] == b"\x80":
                    value = _loads(payload)
                else:
                    value = decode(payload)
            except Exception:  # a payload this process cannot load: run it again
                pass
            else:
                outputs[v] = value
                if want[v]:
                    digests[v] = _FRAME + digest
                was_hit[v] = 1
                hits.append(v)
                continue
        missed[v] = key
    return hits


def encode_entry(object value, bytes key, bytes person):
    cdef bytes entry = _entry(value, key, _start(person))
    if entry is None:
        return None
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(entry) + 24, 32), entry


cdef enum:
    _SMALL = 300  # room for the pickle of any value _small_pickle takes


cdef Py_ssize_t _small_pickle(object value, char* out) except -2:
    """Write ``pickle.dumps(value, protocol=5)`` into *out* for a value of
    an exact type among None, bool, int in 32 bits, float and str under 256
    bytes of UTF-8, and return its length; -1 for any other value (pickle
    it). The bytes are pickle's own (tests/test_cache_keys.py compares)."""
    cdef char body[_SMALL]
    cdef Py_ssize_t n = 0, size
    cdef type t = type(value)
    cdef long long i
    cdef int overflow
    cdef double x
    cdef uint64_t bits
    cdef int k
    cdef object data
    if value is None:
        body[0] = b"N"
        n = 1
    elif t is bool:
        body[0] = b"\x88" if value else b"\x89"
        n = 1
    elif t is int:
        i = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow or i < -2147483648 or i > 2147483647:
            return -1
        if 0 <= i < 256:
            body[0] = b"K"
            body[1] = <char>i
            n = 2
        elif 0 <= i < 65536:
            body[0] = b"M"
            body[1] = <char>(i & 0xFF)
            body[2] = <char>((i >> 8) & 0xFF)
            n = 3
        else:
            body[0] = b"J"
            _put_u64(body + 1, <uint64_t><int64_t>i)  # the low 4 bytes are the int32's
            n = 5
    elif t is float:
        x = value
        memcpy(&bits, &x, 8)
        body[0] = b"G"
        for k in range(8):
            body[1 + k] = <char>((bits >> (8 * (7 - k))) & 0xFF)  # big-endian
        n = 9
    elif t is str:
        data = (<str>value).encode("utf-8", "surrogatepass")
        size = PyBytes_GET_SIZE(data)
        if size >= 256:
            return -1
        body[0] = b"\x8c"  # SHORT_BINUNICODE, then MEMOIZE
        body[1] = <char>size
        memcpy(body + 2, PyBytes_AS_STRING(data), size)
        body[2 + size] = b"\x94"
        n = 3 + size
    else:
        return -1
    body[n] = b"."
    n += 1
    out[0] = b"\x80"
    out[1] = 5
    if n < 4:  # pickle frames 4 bytes or more
        memcpy(out + 2, body, n)
        return 2 + n
    out[2] = b"\x95"
    _put_u64(out + 3, <uint64_t>n)
    memcpy(out + 11, body, n)
    return 11 + n


def small_pickle(object value):
    """``pickle.dumps(value, protocol=5)`` for the values _small_pickle takes, else None."""
    cdef char buf[_SMALL]
    cdef Py_ssize_t n = _small_pickle(value, buf)
    return None if n < 0 else PyBytes_FromStringAndSize(buf, n)


cdef bytes _pickled(object value, char* small, const char** at, Py_ssize_t* size):
    """Pickle *value* and point *at* to its *size* bytes: in *small* when it is
    small (then None is returned), else in the bytes returned, which the caller
    keeps while it reads them. *size* is -1 when the pickle has out-of-band
    buffers (none is taken as an entry)."""
    cdef list buffers
    cdef bytes data
    cdef Py_ssize_t n = _small_pickle(value, small)
    if n >= 0:
        at[0] = small
        size[0] = n
        return None
    buffers = []
    data = _dumps(value, protocol=5, buffer_callback=buffers.append)
    if buffers:
        size[0] = -1
        return None
    at[0] = PyBytes_AS_STRING(data)
    size[0] = PyBytes_GET_SIZE(data)
    return data


cdef bytes _entry(object value, bytes key, const uint64_t* start):
    """The entry of *value* stored for *key* (the key's last 24 bytes, the
    output's digest, its pickle), or None (out-of-band buffers)."""
    cdef char small[_SMALL]
    cdef const char* at
    cdef Py_ssize_t size
    cdef bytes data = _pickled(value, small, &at, &size)  # keeps a large pickle alive
    if size < 0:
        return None
    if PyBytes_GET_SIZE(key) != 32:
        raise ValueError("encode_entry: keys and digests are 32 bytes")
    cdef bytes entry = PyBytes_FromStringAndSize(NULL, 24 + 32 + size)
    cdef char* p = PyBytes_AS_STRING(entry)
    memcpy(p, PyBytes_AS_STRING(key) + 8, 24)
    _b2_hash(start, <const uint8_t*>at, size, <uint8_t*>(p + 24))
    memcpy(p + 56, at, size)
    return entry


cdef bytes _framed(const char* digest):
    """A digest as keys lay it out among the dependencies': ``u64(32) digest``."""
    cdef bytes framed = PyBytes_FromStringAndSize(NULL, 8 + 32)
    cdef char* p = PyBytes_AS_STRING(framed)
    memcpy(p, PyBytes_AS_STRING(_FRAME), 8)
    memcpy(p + 8, digest, 32)
    return framed


cdef object _digest_of(object value, const uint64_t* start):
    """The framed digest of *value*'s pickle, or None (out-of-band buffers)."""
    cdef char small[_SMALL]
    cdef const char* at
    cdef Py_ssize_t size
    cdef uint8_t digest[32]
    cdef bytes data = _pickled(value, small, &at, &size)  # keeps a large pickle alive
    if size < 0:
        return None
    _b2_hash(start, <const uint8_t*>at, size, digest)
    return _framed(<const char*>digest)


def hash_tasks(
    tasks,
    list opts,
    list fns,
    list stored_args,
    other,
    in_run,
    object head_of,
    type handle_type,
    bytes person,
    list parts,
    bytearray asks,
    bytearray plain,
    bytearray wants,
):
    cdef list rest = []
    cdef object o, fn, stored
    cdef Py_ssize_t deps[_MAX_DEPS]
    cdef uint8_t digest[32]
    cdef Py_ssize_t nd, j
    cdef object last_opts = None, last_fn = None, head = None, last_version = None
    cdef Py_ssize_t i, k, n = len(asks)
    cdef unsigned char* asked = asks
    cdef unsigned char* is_plain = plain
    cdef unsigned char* wanted = wants
    cdef const uint64_t* start = _start(person)
    cdef bytes part
    cdef char* p
    cdef Py_ssize_t size
    if (
        len(plain) != n or len(wants) != n or len(parts) < n
        or len(opts) < n or len(fns) < n or len(stored_args) < n
    ):
        raise ValueError("hash_tasks: columns shorter than the run")
    for i in tasks:
        if i < 0 or i >= n:
            raise IndexError(f"hash_tasks: task {i} out of range")
        o = opts[i]
        if not o.cache or (in_run is not None and i not in in_run):
            continue
        stored = stored_args[i]
        if type(stored) is not tuple or i in other:
            rest.append(i)
            continue
        fn = fns[i]
        if (
            fn is not last_fn
            or head is None
            or (o is not last_opts and o.version is not last_version and o.version != last_version)
        ):
            last_fn = fn
            head = head_of(fn, o)
            if head is None:
                rest.append(i)
                continue
            if type(head) is not bytes:
                raise TypeError("hash_tasks: head_of must return bytes or None")
        if o is not last_opts:
            last_opts = o
            last_version = o.version
        nd = _flat(<tuple>stored, handle_type, start, digest, deps)
        if nd < 0:
            rest.append(i)
            continue
        for k in range(nd):
            j = deps[k]
            if j < 0 or j >= n:
                raise IndexError(f"hash_tasks: dependency {j} out of range")
        # u64(len(deps)), the deps, then head + digest + u64(len(deps)), as one
        # bytes object (see make_part): no tuple per task for the GC to walk.
        size = PyBytes_GET_SIZE(head)
        part = _new_part(nd, size + 32 + 8, &p)
        for k in range(nd):
            _put_u64(p + 8 * k, <uint64_t>deps[k])
        p += 8 * nd
        memcpy(p, PyBytes_AS_STRING(head), size)
        memcpy(p + size, digest, 32)
        _put_u64(p + size + 32, <uint64_t>nd)
        parts[i] = part
        asked[i] = 1
        if o.cache is True:
            is_plain[i] = 1
        for k in range(nd):
            wanted[deps[k]] = 1
    return rest


cdef inline bint _match(object e, const unsigned char* key) except -1:
    """Whether entry *e* (bytes) holds the other 24 bytes of *key*."""
    return PyBytes_GET_SIZE(e) >= 56 and memcmp(PyBytes_AS_STRING(e), key + 8, 24) == 0


def snapshot_found(
    list keys,
    dict rows,
    dict stale,
    dict pending,
    set since,
    dict found,
    list touched,
    list later,
):
    cdef Py_ssize_t i, j, n = len(keys)
    cdef object k, row, e
    cdef const unsigned char* p
    cdef uint64_t u
    cdef object ident
    for i in range(n):
        k = keys[i]
        if type(k) is not bytes or PyBytes_GET_SIZE(k) != 32:
            later.append(k)  # not a run's key: the file answers
            continue
        p = <const unsigned char*>PyBytes_AS_STRING(k)
        u = 0
        for j in range(8):
            u |= (<uint64_t>p[j]) << (8 * j)
        ident = <int64_t>u
        e = rows.get(ident)
        if e is None:
            e = stale.get(ident)
            if e is not None and _match(e, p):
                touched.append(k)
        if e is not None and _match(e, p):
            found[k] = (e[24:56], e[56:])
            continue
        if k in since or k in pending:
            later.append(k)


cdef class Returns:
    """What a run's cache does with each returned output (``RunCache.returned``), compiled.

    Its attributes are declared in ``_keyhash.pxd``: the compiled loop calls
    :meth:`call` directly.
    """

    def __init__(
        self,
        list keys,
        list pending_keys,
        list pending,
        list pending_tasks,
        bytearray wants,
        list digests,
        bytes person,
        bint whole,
        Py_ssize_t every,
        object flush,
        object slow,
    ):
        self.start = _start(person)  # checks it; cached for good in _PERSONS
        self.keys = keys
        self.pending_keys = pending_keys
        self.pending = pending
        self.pending_tasks = pending_tasks
        self.wants = wants
        self.digests = digests
        self.person = person
        self.whole = whole
        self.every = every
        self.flush = flush
        self.slow = slow

    def __call__(self, Py_ssize_t v, object result):
        return self.call(v, result)

    cdef object call(self, Py_ssize_t v, object result):
        cdef object key = None, framed
        cdef bytes entry
        cdef const uint64_t* start = self.start
        if v < 0 or v >= len(self.wants) or v >= len(self.digests) or v >= len(self.keys):
            raise IndexError(f"Returns: task {v} out of range")
        key = self.keys[v]
        if key is not None:
            self.keys[v] = None
            if not self.whole or type(key) is not bytes or PyBytes_GET_SIZE(key) != 32:
                return self.slow(v, result, key)
            try:
                entry = _entry(result, <bytes>key, start)
            except Exception:  # the slow path says why
                entry = None
            if entry is None:
                return self.slow(v, result, key)
            self.pending.append(entry)
            self.pending_keys.append(key)
            self.pending_tasks.append(v)
            if self.wants[v]:
                self.digests[v] = _framed(PyBytes_AS_STRING(entry) + 24)
            if len(self.pending_keys) >= self.every:
                self.flush()
        elif self.wants[v]:
            try:
                framed = _digest_of(result, start)
            except Exception:  # the slow path says why
                framed = None
            if framed is None:
                return self.slow(v, result, None)
            self.digests[v] = framed
        return None


cdef struct _Row:
    int64_t ident
    Py_ssize_t at


cdef int _by_id(const void* a, const void* b) noexcept nogil:
    cdef const _Row* x = <const _Row*>a
    cdef const _Row* y = <const _Row*>b
    if x.ident != y.ident:
        return -1 if x.ident < y.ident else 1
    return -1 if x.at < y.at else (1 if x.at > y.at else 0)


def insert_rows(list keys, list entries, object now):
    cdef Py_ssize_t n = len(keys), i, j, at
    cdef const unsigned char* p
    cdef uint64_t u
    cdef _Row* rows
    cdef list values
    cdef object k, e, ident
    if len(entries) != n:
        raise ValueError("insert_rows: keys and entries differ in length")
    for i in range(n):
        k = keys[i]
        if type(k) is not bytes or PyBytes_GET_SIZE(k) < 8:
            raise TypeError("insert_rows: a key is bytes of at least 8")
    rows = <_Row*>malloc((n if n else 1) * sizeof(_Row))
    if rows == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            p = <const unsigned char*>PyBytes_AS_STRING(keys[i])
            u = 0
            for j in range(8):
                u |= (<uint64_t>p[j]) << (8 * j)
            rows[i].ident = <int64_t>u
            rows[i].at = i
        qsort(rows, n, sizeof(_Row), _by_id)
        values = PyList_New(3 * n)
        for i in range(n):
            ident = rows[i].ident
            e = entries[rows[i].at]
            Py_INCREF(ident)
            PyList_SET_ITEM(values, 3 * i, ident)
            Py_INCREF(e)
            PyList_SET_ITEM(values, 3 * i + 1, e)
            Py_INCREF(now)
            PyList_SET_ITEM(values, 3 * i + 2, now)
    finally:
        free(rows)
    return values


def unpend(dict pending, list keys, list entries):
    cdef Py_ssize_t i, n = len(keys)
    cdef object k
    if len(entries) != n:
        raise ValueError("unpend: keys and entries differ in length")
    for i in range(n):
        k = keys[i]
        if pending.get(k) is entries[i]:
            del pending[k]

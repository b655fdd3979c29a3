# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The cache's per-task hashing, compiled.

Same API and bytes as the twin ``trio_dag._native._keyhash_py`` (its
docstring gives the layouts); see ``_keyhash.pyi``. Each encoding is written
into one C buffer and hashed with one copy of the blake2b template: no
Python object per part.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

import pickle

cdef object _loads = pickle.loads
cdef object _dumps = pickle.dumps

cdef enum:
    _BUF = 4096  # bytes of an argument tuple's encoding hashed from the stack


cdef inline Py_ssize_t _put_u64(char* p, uint64_t v) noexcept:
    cdef int k
    for k in range(8):
        p[k] = <char>((v >> (8 * k)) & 0xFF)
    return 8


cdef bytes _FRAME = b"\x20\x00\x00\x00\x00\x00\x00\x00"  # u64(32): a digest's frame


def flat_args_digest(tuple args, type handle_type, object template):
    return _flat(args, handle_type, template)


cdef object _flat(tuple args, type handle_type, object template):
    cdef char buf[_BUF]
    cdef Py_ssize_t n = len(args), at = 0, i, k, size, slot
    cdef list deps = []
    cdef object a, data, j
    cdef type t
    cdef long long value
    cdef int overflow
    buf[0] = b"("
    at = 1 + _put_u64(buf + 1, <uint64_t>n)
    for i in range(n):
        if at > _BUF - 300:  # room for the longest item and the tail
            return None
        a = args[i]
        t = type(a)
        if t is handle_type:
            j = a._index
            slot = -1
            for k in range(len(deps)):
                if deps[k] == j:
                    slot = k
                    break
            if slot < 0:
                slot = len(deps)
                deps.append(j)
            buf[at] = b"H"
            at += 1 + _put_u64(buf + at + 1, <uint64_t>slot)
        elif t is int:
            value = PyLong_AsLongLongAndOverflow(a, &overflow)
            if overflow:
                return None
            buf[at] = b"i"
            at += 1 + _put_u64(buf + at + 1, <uint64_t><int64_t>value)
        elif t is str:
            data = (<str>a).encode("utf-8", "surrogatepass")
            size = PyBytes_GET_SIZE(data)
            if size >= 256:
                return None
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
            return None
    buf[at] = b"k"
    at += 1 + _put_u64(buf + at + 1, 0)
    h = template.copy()
    h.update(PyBytes_FromStringAndSize(buf, at))
    return h.digest(), tuple(deps)


def task_keys(
    tasks,
    dict parts,
    list digests,
    bytearray plain,
    object template,
    list keys,
    list asking,
    bytearray asks,
):
    cdef list rest = []
    cdef Py_ssize_t v, size, at, j
    cdef object deps, d, head, body
    cdef tuple pair
    cdef char* p
    cdef bint ok
    cdef unsigned char* is_plain = plain
    cdef unsigned char* asked = asks
    cdef Py_ssize_t n = len(plain)
    if len(asks) != n:
        raise ValueError("task_keys: plain and asks differ in length")
    for v in tasks:
        if v < 0 or v >= n:
            raise IndexError(f"task_keys: task {v} out of range")
        asked[v] = 0
        if not is_plain[v]:
            rest.append(v)
            continue
        pair = <tuple>parts[v]
        head = pair[0]
        deps = pair[1]
        size = PyBytes_GET_SIZE(head) + 1
        ok = True
        for j in deps:
            d = digests[j]
            if d is None:
                ok = False
                break
            size += PyBytes_GET_SIZE(d)
        if not ok:
            rest.append(v)
            continue
        body = PyBytes_FromStringAndSize(NULL, size)
        p = PyBytes_AS_STRING(body)
        at = PyBytes_GET_SIZE(head)
        memcpy(p, PyBytes_AS_STRING(head), at)
        for j in deps:
            d = digests[j]
            memcpy(p + at, PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d))
            at += PyBytes_GET_SIZE(d)
        p[at] = b"0"
        h = template.copy()
        h.update(body)
        keys.append(h.digest())
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
    dict missed,
    object decode,
):
    cdef list hits = []
    cdef Py_ssize_t i, v, n = len(asking)
    cdef object key, entry, digest, payload, value
    cdef unsigned char* want = wants
    cdef unsigned char* was_hit = hit
    if len(keys) != n:
        raise ValueError("take_hits: asking and keys differ in length")
    for i in range(n):
        v = asking[i]
        if v < 0 or v >= len(wants) or v >= len(hit):
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


def encode_entry(object value, bytes key, object template):
    cdef list buffers = []
    cdef bytes data = _dumps(value, protocol=5, buffer_callback=buffers.append)
    if buffers:
        return None
    h = template.copy()
    h.update(data)
    cdef bytes digest = h.digest()
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef bytes entry = PyBytes_FromStringAndSize(NULL, 24 + 32 + size)
    cdef char* p = PyBytes_AS_STRING(entry)
    if PyBytes_GET_SIZE(key) != 32 or PyBytes_GET_SIZE(digest) != 32:
        raise ValueError("encode_entry: keys and digests are 32 bytes")
    memcpy(p, PyBytes_AS_STRING(key) + 8, 24)
    memcpy(p + 24, PyBytes_AS_STRING(digest), 32)
    memcpy(p + 56, PyBytes_AS_STRING(data), size)
    return digest, entry


def hash_tasks(
    tasks,
    list opts,
    list fns,
    list stored_args,
    other,
    in_run,
    object head_of,
    type handle_type,
    object template,
    dict parts,
    bytearray asks,
    bytearray plain,
    bytearray wants,
):
    cdef list rest = []
    cdef object o, fn, stored, flat, digest, deps, j
    cdef object last_opts = None, last_fn = None, head = None, last_version = None
    cdef Py_ssize_t i, k, n = len(asks)
    cdef unsigned char* asked = asks
    cdef unsigned char* is_plain = plain
    cdef unsigned char* wanted = wants
    cdef char count[8]
    if len(plain) != n or len(wants) != n or len(opts) < n or len(fns) < n or len(stored_args) < n:
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
        if o is not last_opts:
            last_opts = o
            last_version = o.version
        flat = _flat(<tuple>stored, handle_type, template)
        if flat is None:
            rest.append(i)
            continue
        digest, deps = flat
        _put_u64(count, <uint64_t>len(deps))
        parts[i] = (head + digest + PyBytes_FromStringAndSize(count, 8), deps)
        asked[i] = 1
        if o.cache is True:
            is_plain[i] = 1
        for j in deps:
            k = j
            if k < 0 or k >= n:
                raise IndexError(f"hash_tasks: dependency {k} out of range")
            wanted[k] = 1
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

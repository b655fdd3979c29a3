# BLAKE2b (RFC 7693) with a 32-byte digest, no key and a personalisation:
# the bytes of hashlib.blake2b(data, digest_size=32, person=person).digest(),
# computed from a C buffer into a C buffer. Hashing the few hundred bytes of
# a key or an argument tuple this way costs a fraction of what a hashlib
# object's copy(), update() and digest() calls do (tests/test_cache_keys.py
# checks it against hashlib). Included by _keyhash.pyx.

from libc.stdint cimport uint8_t
from libc.string cimport memset

cdef extern from *:
    """
    /* BLAKE2b's compression function, as RFC 7693 gives it, unrolled. */
    #include <stdint.h>
    static const uint64_t trio_dag_b2_iv[8] = {
        0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL,
        0xA54FF53A5F1D36F1ULL, 0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL,
        0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL};
    static const uint8_t trio_dag_b2_sigma[12][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
        {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
        {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
        {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
        {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};
    static inline uint64_t trio_dag_b2_load(const uint8_t *p) {
        return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16)
            | ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40)
            | ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
    }
    #define TRIO_DAG_B2_ROTR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
    #define TRIO_DAG_B2_G(r, i, a, b, c, d) do { \\
        a = a + b + m[trio_dag_b2_sigma[r][2 * i]]; \\
        d = TRIO_DAG_B2_ROTR(d ^ a, 32); c = c + d; b = TRIO_DAG_B2_ROTR(b ^ c, 24); \\
        a = a + b + m[trio_dag_b2_sigma[r][2 * i + 1]]; \\
        d = TRIO_DAG_B2_ROTR(d ^ a, 16); c = c + d; b = TRIO_DAG_B2_ROTR(b ^ c, 63); \\
    } while (0)
    #define TRIO_DAG_B2_ROUND(r) do { \\
        TRIO_DAG_B2_G(r, 0, v[0], v[4], v[8], v[12]); \\
        TRIO_DAG_B2_G(r, 1, v[1], v[5], v[9], v[13]); \\
        TRIO_DAG_B2_G(r, 2, v[2], v[6], v[10], v[14]); \\
        TRIO_DAG_B2_G(r, 3, v[3], v[7], v[11], v[15]); \\
        TRIO_DAG_B2_G(r, 4, v[0], v[5], v[10], v[15]); \\
        TRIO_DAG_B2_G(r, 5, v[1], v[6], v[11], v[12]); \\
        TRIO_DAG_B2_G(r, 6, v[2], v[7], v[8], v[13]); \\
        TRIO_DAG_B2_G(r, 7, v[3], v[4], v[9], v[14]); \\
    } while (0)
    static void trio_dag_b2_compress(uint64_t *h, const uint8_t *block, uint64_t t, int last) {
        uint64_t m[16], v[16];
        int i;
        for (i = 0; i < 16; i++) m[i] = trio_dag_b2_load(block + 8 * i);
        for (i = 0; i < 8; i++) { v[i] = h[i]; v[i + 8] = trio_dag_b2_iv[i]; }
        v[12] ^= t;  /* the byte count's high word is 0: inputs stay far below 2**64 bytes */
        if (last) v[14] = ~v[14];
        TRIO_DAG_B2_ROUND(0); TRIO_DAG_B2_ROUND(1); TRIO_DAG_B2_ROUND(2);
        TRIO_DAG_B2_ROUND(3); TRIO_DAG_B2_ROUND(4); TRIO_DAG_B2_ROUND(5);
        TRIO_DAG_B2_ROUND(6); TRIO_DAG_B2_ROUND(7); TRIO_DAG_B2_ROUND(8);
        TRIO_DAG_B2_ROUND(9); TRIO_DAG_B2_ROUND(10); TRIO_DAG_B2_ROUND(11);
        for (i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }
    """
    const uint64_t* _B2_IV "trio_dag_b2_iv"
    uint64_t _b2_load "trio_dag_b2_load" (const uint8_t* p) noexcept nogil
    void _b2_compress "trio_dag_b2_compress" (
        uint64_t* h, const uint8_t* block, uint64_t t, int last
    ) noexcept nogil


cdef void _b2_person(uint64_t* h, const uint8_t* person, Py_ssize_t size) noexcept nogil:
    """The initial state of a 32-byte, unkeyed digest personalised with
    *person* (at most 16 bytes, zero-padded, as hashlib pads it)."""
    cdef uint8_t padded[16]
    cdef Py_ssize_t k
    for k in range(16):
        padded[k] = person[k] if k < size else 0
    for k in range(8):
        h[k] = _B2_IV[k]
    h[0] ^= 0x01010020  # digest length 32, key length 0, fanout 1, depth 1
    h[6] ^= _b2_load(padded)
    h[7] ^= _b2_load(padded + 8)


cdef void _b2_hash(
    const uint64_t* start, const uint8_t* data, Py_ssize_t size, uint8_t* out
) noexcept nogil:
    """blake2b of *size* bytes at *data* from the initial state *start*
    (see _b2_person); the 32-byte digest into *out*."""
    cdef uint64_t h[8]
    cdef uint8_t block[128]
    cdef Py_ssize_t at = 0, k, rest
    for k in range(8):
        h[k] = start[k]
    while size - at > 128:
        _b2_compress(h, data + at, <uint64_t>(at + 128), False)
        at += 128
    rest = size - at
    memcpy(block, data + at, rest)
    memset(block + rest, 0, 128 - rest)
    _b2_compress(h, block, <uint64_t>size, True)
    for k in range(4):
        _put_u64(<char*>out + 8 * k, h[k])


cdef class _Person:
    """A personalisation's initial state, made once per person bytes."""

    cdef uint64_t state[8]


cdef dict _PERSONS = {}


cdef const uint64_t* _start(object person) except NULL:
    """The initial state of *person* (bytes of at most 16), cached."""
    cdef _Person p = _PERSONS.get(person)
    if p is None:
        if type(person) is not bytes:
            raise TypeError(f"a blake2b personalisation is bytes, not {type(person).__name__}")
        if PyBytes_GET_SIZE(person) > 16:
            raise ValueError("maximum person length is 16 bytes")  # as hashlib says
        p = _Person()
        _b2_person(p.state, <const uint8_t*>PyBytes_AS_STRING(person), PyBytes_GET_SIZE(person))
        _PERSONS[person] = p
    return p.state


cdef bytes _b2_digest(const uint64_t* start, const char* data, Py_ssize_t size):
    """The 32-byte digest of *size* bytes at *data*, as a bytes object."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 32)
    _b2_hash(start, <const uint8_t*>data, size, <uint8_t*>PyBytes_AS_STRING(out))
    return out


def blake2b_digest(bytes data, bytes person):
    """``hashlib.blake2b(data, digest_size=32, person=person).digest()``."""
    return _b2_digest(_start(person), PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

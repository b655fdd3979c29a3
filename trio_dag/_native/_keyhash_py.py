"""The cache's per-task hashing in pure Python: the twin of ``_keyhash.pyx``.

What a run with ``cache=`` does once per cached task, in bulk (see
``trio_dag._caching``): hash a flat tuple of arguments at the freeze, build
the keys of a ready set, take the hits of a lookup, encode a returned output.
Both give the same bytes as ``trio_dag._keys`` (tests/test_cache_keys.py
checks them against it); each takes the blake2b personalisations it hashes
with (``_keys.ARGS_PERSON``...: a 32-byte digest, no key), so neither imports
the rest of trio_dag. Layouts (``_keys`` documents them):

- an argument tuple: ``b"(" u64(n)``, each item (``b"H" u64(slot)`` a
  handle, ``b"i" i64`` an int, ``b"u" u64(len) utf-8`` a str under 256
  bytes, ``b"0"`` None, ``b"T"``/``b"F"`` a bool), then ``b"k" u64(0)``;
- a task's part (what the freeze keeps per cached task, one bytes object):
  ``u64(len(deps))``, each dependency's index as a u64 (slot order), then
  the key body's head;
- a key body: its head (key head, arguments' digest, dependency count), each
  dependency's framed digest (``u64(32) digest``), ``b"0"`` (no ``cache=``
  function);
- a stored entry (the SQLite cache's row): the key's last 24 bytes, the
  output's digest, its pickle.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from collections.abc import Callable, Container, Sequence
from typing import Any, Final

__all__ = [
    "Returns",
    "blake2b_digest",
    "encode_entry",
    "flat_args_digest",
    "hash_tasks",
    "insert_rows",
    "make_part",
    "small_pickle",
    "snapshot_found",
    "split_part",
    "take_hits",
    "task_keys",
    "unpend",
]

_u64 = struct.Struct("<Q").pack
_i64 = struct.Struct("<q").pack
_I64_BOUND: Final = 1 << 63
_TAIL: Final = b"k" + _u64(0)
_FRAME: Final = _u64(32)


def blake2b_digest(data: bytes, person: bytes) -> bytes:
    """``hashlib.blake2b(data, digest_size=32, person=person).digest()``."""
    return hashlib.blake2b(data, digest_size=32, person=person).digest()


def small_pickle(value: Any) -> bytes | None:
    """``pickle.dumps(value, protocol=5)`` for a value of an exact type among
    None, bool, int in 32 bits, float and str under 256 bytes of UTF-8 (the
    compiled module writes those itself); None for any other value."""
    t = type(value)
    if t is int:
        if not -(2**31) <= value < 2**31:
            return None
    elif t is str:
        if len(value.encode("utf-8", "surrogatepass")) >= 256:
            return None
    elif value is not None and t is not bool and t is not float:
        return None
    return pickle.dumps(value, protocol=5)


def flat_args_digest(
    args: tuple[Any, ...], handle_type: type, person: bytes
) -> tuple[bytes, tuple[int, ...]] | None:
    """The digest (blake2b personalised with *person*) of a flat tuple of
    handles (of *handle_type*, read by ``_index``), ints, short strs, None and
    bools, and its handles' indices in slot order; None for any other tuple."""
    parts = [b"(" + _u64(len(args))]
    add = parts.append
    deps: list[int] = []
    for a in args:
        t = type(a)
        if t is handle_type:
            j = a._index
            if j in deps:
                add(b"H" + _u64(deps.index(j)))
            else:
                add(b"H" + _u64(len(deps)))
                deps.append(j)
        elif t is int:
            if not -_I64_BOUND <= a < _I64_BOUND:
                return None
            add(b"i" + _i64(a))
        elif t is str:
            data = a.encode("utf-8", "surrogatepass")
            if len(data) >= 256:
                return None
            add(b"u" + _u64(len(data)) + data)
        elif a is None:
            add(b"0")
        elif t is bool:
            add(b"T" if a else b"F")
        else:
            return None
    add(_TAIL)
    return blake2b_digest(b"".join(parts), person), tuple(deps)


def make_part(prefix: bytes, deps: Sequence[int]) -> bytes:
    """A task's part: its dependencies (slot order) and its key body's head *prefix*."""
    return struct.pack(f"<{len(deps) + 1}Q", len(deps), *deps) + prefix


def split_part(part: bytes) -> tuple[bytes, tuple[int, ...]]:
    """``(prefix, deps)`` of a part made by :func:`make_part`."""
    if len(part) < 8:
        raise ValueError("split_part: not a part")
    (n,) = struct.unpack_from("<Q", part)
    if len(part) < 8 + 8 * n:
        raise ValueError("split_part: not a part")
    return part[8 + 8 * n :], struct.unpack_from(f"<{n}Q", part, 8)


def task_keys(
    tasks: Sequence[int],
    parts: list[bytes | None],
    digests: list[bytes | None],
    plain: bytearray,
    person: bytes,
    keys: list[bytes],
    asking: list[int],
    asks: bytearray,
) -> list[int]:
    """Append to *keys* and *asking* the key and index of each task of
    *tasks* whose key needs no Python: ``plain[v]`` (``cache=True``) and every
    dependency's digest there (``parts[v]`` holds its head and dependencies,
    see :func:`make_part`). Return the others, in order. Clear ``asks[v]``
    of every task (each is looked up now)."""
    rest = []
    for v in tasks:
        asks[v] = 0
        if not plain[v]:
            rest.append(v)
            continue
        part = parts[v]
        if type(part) is not bytes:
            raise TypeError(f"task_keys: task {v} has no part")
        head, deps = split_part(part)
        body = [head]
        for j in deps:
            d = digests[j]
            if d is None:
                rest.append(v)
                break
            body.append(d)
        else:
            body.append(b"0")
            keys.append(blake2b_digest(b"".join(body), person))
            asking.append(v)
    return rest


def take_hits(
    asking: Sequence[int],
    keys: Sequence[bytes],
    found: dict[bytes, tuple[bytes, bytes]],
    outputs: list[Any],
    wants: bytearray,
    digests: list[bytes | None],
    hit: bytearray,
    missed: list[bytes | None],
    decode: Callable[[bytes], Any],
) -> list[int]:
    """Take *found* (``(digest, payload)`` by key) for the tasks *asking*:
    each hit's output unpickled into *outputs* (a payload that is not a
    plain pickle by *decode*), its framed digest kept when ``wants[v]``,
    ``hit[v]`` set; return the hits in order. A miss, or a payload that
    does not load, has its key in *missed* (``missed[v]``)."""
    hits = []
    get = found.get
    for v, key in zip(asking, keys, strict=True):
        entry = get(key)
        if entry is not None:
            digest, payload = entry
            try:
                value = pickle.loads(payload) if payload[:1] == b"\x80" else decode(payload)
            except Exception:  # a payload this process cannot load: run it again
                pass
            else:
                outputs[v] = value
                if wants[v]:
                    digests[v] = _FRAME + digest
                hit[v] = 1
                hits.append(v)
                continue
        missed[v] = key
    return hits


def encode_entry(value: Any, key: bytes, person: bytes) -> tuple[bytes, bytes] | None:
    """``(digest, entry)`` of an output pickled in band: its digest (blake2b
    personalised with *person*) and its stored entry for *key*. None when it
    has out-of-band buffers (the caller encodes those); raises what pickling
    raises."""
    buffers: list[Any] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    if buffers:
        return None
    if len(key) != 32:
        raise ValueError("encode_entry: keys and digests are 32 bytes")
    digest = blake2b_digest(data, person)
    return digest, b"".join((key[8:], digest, data))


def hash_tasks(
    tasks: Sequence[int],
    opts: Sequence[Any],
    fns: Sequence[Any],
    stored_args: Sequence[Any],
    other: Container[int],
    in_run: Container[int] | None,
    head_of: Callable[[Any, Any], bytes | None],
    handle_type: type,
    person: bytes,
    parts: list[bytes | None],
    asks: bytearray,
    plain: bytearray,
    wants: bytearray,
) -> list[int]:
    """Hash the arguments of each task of *tasks* (ascending) whose options
    say ``cache`` and that is *in_run* (None: all), when they are a flat tuple
    (see :func:`flat_args_digest`) and the task is not in *other* (tasks with
    kwargs or nested handles): ``parts[i]`` is its part (:func:`make_part`):
    its dependencies and its key head (``head_of(fn, opts)``, reused while a
    task shares its function and ``version=`` with the one before),
    arguments' digest and dependency count; ``asks[i]``,
    ``plain[i]`` (``cache=True``) and each dependency's ``wants`` are set.
    Return the other cached tasks (a head_of of None among them), in order."""
    rest = []
    last_opts = last_fn = head = last_version = None
    for i in tasks:
        o = opts[i]
        if not o.cache or (in_run is not None and i not in in_run):
            continue
        stored = stored_args[i]
        if type(stored) is not tuple or i in other:
            rest.append(i)
            continue
        fn = fns[i]
        # Most tasks share the function and version= with the task before.
        if fn is not last_fn or head is None or (o is not last_opts and o.version != last_version):
            last_fn = fn
            head = head_of(fn, o)
            if head is None:
                rest.append(i)
                continue
            if type(head) is not bytes:
                raise TypeError("hash_tasks: head_of must return bytes or None")
        if o is not last_opts:
            last_opts, last_version = o, o.version
        flat = flat_args_digest(stored, handle_type, person)
        if flat is None:
            rest.append(i)
            continue
        digest, deps = flat
        parts[i] = make_part(head + digest + _u64(len(deps)), deps)
        asks[i] = 1
        if o.cache is True:
            plain[i] = 1
        for j in deps:
            wants[j] = 1
    return rest


def snapshot_found(
    keys: Sequence[bytes],
    rows: dict[int, bytes],
    stale: dict[int, bytes],
    pending: dict[bytes, bytes],
    since: set[bytes],
    found: dict[bytes, tuple[bytes, bytes]],
    touched: list[bytes],
    later: list[bytes],
) -> None:
    """Look up 32-byte *keys* in a cache's snapshot (``rows`` and ``stale``:
    id -> entry, see ``trio_dag._cache._Snapshot``): each hit's ``(digest,
    payload)`` into *found*, and to *touched* when found in *stale*; a miss
    that is in *since* or *pending* (or not a 32-byte key) to *later*, for
    the file to answer."""
    get = rows.get
    for k in keys:
        if type(k) is not bytes or len(k) != 32:
            later.append(k)
            continue
        ident = int.from_bytes(k[:8], "little", signed=True)
        e = get(ident)
        if e is None:
            e = stale.get(ident)
            if e is not None and e[:24] == k[8:]:
                touched.append(k)
        if e is not None and len(e) >= 56 and e[:24] == k[8:]:
            found[k] = (e[24:56], e[56:])
            continue
        if k in since or k in pending:
            later.append(k)


class Returns:
    """What a run's cache does with each returned output: ``returned(v,
    output)`` of ``trio_dag._caching.RunCache``, for the common cases.

    Called with a task and its output; returns why the output cannot be
    stored, or None. A task with a key in *keys* (``keys[v]``, cleared): with *whole*,
    its entry (see :func:`encode_entry`) goes to *pending*, its key to
    *pending_keys*, the task to *pending_tasks*, and *flush* is called once
    *every* are pending. A task with ``wants[v]`` gets its framed output
    digest in *digests*. Anything else (not *whole*, out-of-band buffers,
    an output that does not pickle) is ``slow(v, output, key)``'s: the key,
    or None for a digest alone.
    """

    __slots__ = (
        "digests",
        "every",
        "flush",
        "keys",
        "pending",
        "pending_keys",
        "pending_tasks",
        "person",
        "slow",
        "wants",
        "whole",
    )

    def __init__(
        self,
        keys: list[bytes | None],
        pending_keys: list[bytes],
        pending: list[Any],
        pending_tasks: list[int],
        wants: bytearray,
        digests: list[bytes | None],
        person: bytes,
        whole: bool,
        every: int,
        flush: Callable[[], None],
        slow: Callable[[int, Any, bytes | None], str | None],
    ) -> None:
        blake2b_digest(b"", person)  # checks it
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

    def __call__(self, v: int, result: Any) -> str | None:
        if not 0 <= v < min(len(self.wants), len(self.digests)):
            raise IndexError(f"Returns: task {v} out of range")
        key = self.keys[v]
        if key is not None:
            self.keys[v] = None
            if not self.whole or type(key) is not bytes or len(key) != 32:
                return self.slow(v, result, key)
            try:
                encoded = encode_entry(result, key, self.person)
            except Exception:  # the slow path says why
                encoded = None
            if encoded is None:
                return self.slow(v, result, key)
            digest, entry = encoded
            self.pending.append(entry)
            self.pending_keys.append(key)
            self.pending_tasks.append(v)
            if self.wants[v]:
                self.digests[v] = _FRAME + digest
            if len(self.pending_keys) >= self.every:
                self.flush()
        elif self.wants[v]:
            buffers: list[Any] = []
            try:
                data = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
            except Exception:  # the slow path says why
                return self.slow(v, result, None)
            if buffers:
                return self.slow(v, result, None)
            self.digests[v] = _FRAME + blake2b_digest(data, self.person)
        return None


def insert_rows(keys: list[bytes], entries: list[bytes], now: float) -> list[Any]:
    """The values of a cache's INSERT of each key's entry: ``id, entry, now``
    a row (the id: the key's first 8 bytes, little-endian, signed), the rows
    in id order (neighbours in the B-tree written together), rows of one id
    in the order given (the later one replaces the earlier)."""
    if len(entries) != len(keys):
        raise ValueError("insert_rows: keys and entries differ in length")
    for k in keys:
        if type(k) is not bytes or len(k) < 8:
            raise TypeError("insert_rows: a key is bytes of at least 8")
    ids = [int.from_bytes(k[:8], "little", signed=True) for k in keys]
    order = sorted(range(len(ids)), key=ids.__getitem__)
    values: list[Any] = [now] * (3 * len(order))
    values[0::3] = [ids[j] for j in order]
    values[1::3] = [entries[j] for j in order]
    return values


def unpend(pending: dict[bytes, bytes], keys: list[bytes], entries: list[bytes]) -> None:
    """Drop each committed ``(key, entry)`` from *pending*, unless a newer
    entry of that key was stored meanwhile (it stays until its own commit)."""
    if len(entries) != len(keys):
        raise ValueError("unpend: keys and entries differ in length")
    for k, e in zip(keys, entries, strict=True):
        if pending.get(k) is e:
            del pending[k]

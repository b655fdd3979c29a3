"""Types of the cache's per-task hashing: ``_keyhash`` (Cython) and ``_keyhash_py`` (its twin).

Both give the bytes of ``trio_dag._keys`` (the twin's docstring gives the
layouts); each hashes with blake2b (32-byte digests) personalised with the
*person* it is given (``_keys.ARGS_PERSON``, ``KEY_PERSON``, ``OUTPUT_PERSON``).
"""

from collections.abc import Callable, Container, Sequence
from typing import Any

def blake2b_digest(data: bytes, person: bytes) -> bytes:
    """``hashlib.blake2b(data, digest_size=32, person=person).digest()``."""

def small_pickle(value: Any) -> bytes | None:
    """``pickle.dumps(value, protocol=5)`` of None, a bool, an int in 32 bits,
    a float or a str under 256 bytes of UTF-8 (exact types); else None."""

def flat_args_digest(
    args: tuple[Any, ...], handle_type: type, person: bytes
) -> tuple[bytes, tuple[int, ...]] | None:
    """The arguments' digest of a flat tuple of handles, ints, short strs,
    None and bools, and its handles' indices in slot order; None for any
    other tuple."""

def make_part(prefix: bytes, deps: Sequence[int]) -> bytes:
    """A task's part: ``u64(len(deps))``, each dependency as a u64, then *prefix*
    (its key body's head)."""

def split_part(part: bytes) -> tuple[bytes, tuple[int, ...]]:
    """``(prefix, deps)`` of a part made by :func:`make_part`."""

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
    """Append the keys of the tasks with ``plain[v]`` and every dependency's
    digest to *keys* and *asking*; return the other tasks; clear ``asks``."""

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
    """Load the hits' outputs, keep their framed digests, mark them; misses
    go to *missed*; return the hits in order."""

def encode_entry(value: Any, key: bytes, person: bytes) -> tuple[bytes, bytes] | None:
    """``(digest, entry)`` of an output with no out-of-band buffer, else None."""

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
    """Fill ``parts``, ``asks``, ``plain``, ``wants`` for the cached tasks
    whose arguments are a flat tuple; return the other cached tasks."""

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
    """Look up 32-byte *keys* in a cache's snapshot: hits into *found* (and
    *touched* when found in *stale*), misses in *since* or *pending* to *later*."""

class Returns:
    """``RunCache.returned``: queue a returned output's entry, keep its digest."""

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
    ) -> None: ...
    def __call__(self, v: int, result: Any) -> str | None: ...

def insert_rows(keys: list[bytes], entries: list[bytes], now: float) -> list[Any]:
    """A cache's INSERT values, ``id, entry, now`` a row, in id order (stable)."""

def unpend(pending: dict[bytes, bytes], keys: list[bytes], entries: list[bytes]) -> None:
    """Drop each committed ``(key, entry)`` from *pending*, unless replaced meanwhile."""

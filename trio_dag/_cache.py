"""Stores of cached results: the CacheStore protocol, MemoryCache, and Cache (SQLite).

A store maps a task's key (bytes, see ``_keys``) to a :class:`CacheEntry`:
the digest of the task's output and its pickled payload. The engine looks up
a whole ready wave of keys at once and stores results as tasks finish; it
calls both from the Trio thread, so :meth:`CacheStore.store` must not block
(:class:`Cache` hands the entries to its writer thread).

``Cache`` keeps one SQLite file in WAL mode (the file, its schema and its
writer thread are ``_cache_file``'s). Its writer thread owns the one
write connection and commits whatever it was given at most 100 ms after it
was given, and at once on :meth:`Cache.flush` and :meth:`Cache.close`: a
crash loses at most that window and never corrupts the file. Lookups read
from a connection of the calling thread: a run that will ask for at least a
quarter as many keys as a small file holds reads the whole table once, in
file order, at its first lookup (a ``_Snapshot``), not one B-tree seek a
key. Another process may use the same file at once: SQLite's locks and a
busy timeout order the writes.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self, final, runtime_checkable

import attrs

from ._cache_file import (
    KEY_SIZE,
    PAYLOAD,
    SELECT_ALL,
    SIZE_SQL,
    TAIL,
    USE_GRANULARITY,
    connect,
    open_file,
    prune_file,
    select,
    shut,
    start_writer,
    writer_mark,
)
from ._errors import CacheFileError

__all__ = [
    "Cache",
    "CacheEntry",
    "CacheFileError",
    "CacheStats",
    "CacheStore",
    "MemoryCache",
]

_CHUNK: Final = 500  # keys per SELECT ... IN (...): under SQLite's variable limit
# Keys a Cache remembers storing while it knows they are all the file holds
# (see Cache._alone): about 100 bytes each.
_ALONE_MAX: Final = 1_000_000
# A run that will look up at least a quarter as many keys as the file holds
# (and at least _SNAPSHOT_MIN) reads the whole table once, in file order, at
# its first lookup, instead of one B-tree seek a key: see Cache._snapshot.
# Only for a file of at most _SNAPSHOT_BYTES (the rows are then held in memory).
_SNAPSHOT_MIN: Final = 2048
_SNAPSHOT_SHARE: Final = 4
_SNAPSHOT_BYTES: Final = 32 << 20


@final
@attrs.frozen
class CacheEntry:
    """What a store keeps for one key: the output's digest and its pickled payload."""

    digest: bytes
    payload: bytes


@final
@attrs.frozen
class CacheStats:
    """What :meth:`Cache.stats` reports.

    ``entries`` and ``bytes`` (keys, digests and payloads) count what the
    file holds; ``hits`` and ``misses`` the keys looked up through this
    object; ``file_size`` the bytes on disk, write-ahead log included.
    """

    entries: int
    bytes: int
    hits: int
    misses: int
    file_size: int


@runtime_checkable
class CacheStore(Protocol):
    """What a run needs of a cache; plug in your own store by writing these three.

    Keys are bytes (32-byte digests); an entry is a :class:`CacheEntry`.
    The engine calls the methods from the Trio thread, so they must return
    quickly: ``store`` may queue the entries and write them later, but a
    ``lookup`` after a ``store`` should see them. Two entries stored for one
    key are interchangeable: keep either. :class:`MemoryCache` is the
    smallest correct store.
    """

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, CacheEntry]:
        """The entries of the *keys* the store holds; a key it lacks is absent."""
        ...

    def store(self, entries: Sequence[tuple[bytes, CacheEntry]]) -> None:
        """Keep each ``(key, entry)``, replacing any entry of that key."""
        ...

    def close(self) -> None:
        """Write what is pending and let go of resources; idempotent."""
        ...


@final
class MemoryCache:
    """A :class:`CacheStore` in a dict, for tests and as the example to copy.

    ::

        class MemoryCache:
            def __init__(self):
                self.entries = {}

            def lookup(self, keys):
                return {k: self.entries[k] for k in keys if k in self.entries}

            def store(self, entries):
                self.entries.update(entries)

            def close(self):
                pass
    """

    def __init__(self) -> None:
        self.entries: dict[bytes, CacheEntry] = {}

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, CacheEntry]:
        """The entries of the *keys* held; a key not held is absent."""
        entries = self.entries
        return {k: entries[k] for k in keys if k in entries}

    def store(self, entries: Sequence[tuple[bytes, CacheEntry]]) -> None:
        """Keep each ``(key, entry)``, replacing any entry of that key."""
        self.entries.update(entries)

    def close(self) -> None:
        """Nothing to write or let go of."""

    def __repr__(self) -> str:
        return f"<MemoryCache of {len(self.entries)} entries>"


@final
class _Snapshot:
    """The results table as a run's first lookup read it: ``rows`` maps an id
    to its entry, of the rows used within the hour (see USE_GRANULARITY),
    ``stale`` those of the others (a hit there is marked used); ``since``
    holds the keys stored through the Cache after the read (they are looked
    up in the file, not here). Two dicts of ``id: entry``, not a dict of
    rows: the read makes no tuple a row.

    A key in neither is a miss with no SELECT: an entry another process
    commits during the run is not seen by that run (a miss is always
    correct; what was committed before the run began is seen). A row pruned
    meanwhile may still be a hit: its entry is still right for its key."""

    __slots__ = ("match", "rows", "since", "stale")

    def __init__(self, rows: dict[int, bytes], stale: dict[int, bytes], match: Any) -> None:
        self.rows = rows
        self.stale = stale
        self.since: set[bytes] = set()
        self.match = match  # _keyhash's snapshot_found, compiled or its twin


@final
class Cache:
    """The SQLite cache: results kept in one file across runs and processes.

    ``Cache("results.sqlite3")`` opens the file, creating it (and its
    folder) if needed, and checks it: a file that is not a trio_dag cache, or
    one written by a newer trio_dag, raises :class:`CacheFileError` at once
    (one written by an older trio_dag is migrated, its entries kept).
    Entries are written by a background thread and committed at most 100 ms
    after :meth:`store`, and at once by :meth:`flush` and :meth:`close`.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        db = open_file(self.path)
        # Entries stored and not yet committed: key -> entry (see _RESULTS),
        # the writer's to keep (see its pending()).
        self._pending: dict[bytes, bytes] = {}
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._closed = False
        self._hits = 0
        self._misses = 0
        try:
            reader = self._reader()
            reader.execute("BEGIN")
            try:
                (empty,) = reader.execute("SELECT NOT EXISTS (SELECT 1 FROM results)").fetchone()
                self._first = writer_mark(reader)
            finally:
                reader.execute("COMMIT")
            # It closes db (the C writer opens its own connection), or takes it.
            self._writer = start_writer(
                self.path, db, self._pending, os.urandom(16).hex(), self._first
            )
        except BaseException:
            db.close()  # a no-op when closed
            for r in self._readers:
                r.close()
            raise
        self._finalizer = weakref.finalize(self, shut, self._writer, self._readers)
        # While the file held nothing when this thread's reader first saw it
        # and no other connection has written it since, the keys stored
        # through this object are all it holds: a lookup (from this thread)
        # of any other key is a miss with no SELECT. None once that is not
        # known (or too many keys to keep). Another connection's commit is
        # seen by the file's mark (see _cache_file.Writer): by the writer when it
        # commits, and here at each lookup (the mark neither the one the
        # file had at open while the writer has not committed, nor the
        # writer's). A prune deletes without marking: a key it dropped is
        # then read and missed, never a wrong hit.
        self._alone: set[bytes] | None = set() if empty else None
        self._mark_read = -math.inf  # time.monotonic() of the last read of the mark
        self._alone_db = reader
        self._snapshots: list[_Snapshot] = []  # taken and not yet released

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            with self._lock:
                self._readers.append(db)
            self._local.db = db
        return db

    def _check_closed(self) -> None:
        if self._closed:
            raise CacheFileError(f"{self!r} is closed")

    def _check_open(self) -> None:
        self._check_closed()
        if self._writer.error is not None:
            raise CacheFileError(
                f"{self!r} could not write: {self._writer.error!r}"
            ) from self._writer.error

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, CacheEntry]:
        """The entries of the *keys* this cache holds, stored entries not yet
        committed included. Each hit marks its entry as used now (to the
        hour, see ``USE_GRANULARITY``), for :meth:`prune`."""
        return {k: CacheEntry(d, p) for k, (d, p) in self._lookup_pairs(list(keys)).items()}

    def _snapshot(self, asked: int, match: Any) -> _Snapshot | None:
        """For a run about to look up *asked* keys: the whole table read once
        (see _SNAPSHOT_SHARE), to pass to :meth:`_lookup_pairs` and then to
        :meth:`_release`, matched with *match* (the backend's
        ``keyhash.snapshot_found``, compiled or its twin); or None when
        seeking each key is cheaper, or the file too large to hold, or the
        keys stored here are all it holds."""
        self._check_open()
        if asked < _SNAPSHOT_MIN or self._alone is not None:
            return None
        size = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p)
        )
        if size > _SNAPSHOT_BYTES:
            return None
        db = self._reader()
        db.execute("BEGIN")
        try:
            (rows,) = db.execute("SELECT count(*) FROM results").fetchone()
            if rows > _SNAPSHOT_SHARE * asked:
                return None
            cut = (time.time() - USE_GRANULARITY,)
            snapshot = _Snapshot(
                dict(db.execute(SELECT_ALL + " WHERE used >= ?", cut)),
                dict(db.execute(SELECT_ALL + " WHERE used < ?", cut)),
                match,
            )
        finally:
            db.execute("COMMIT")
        self._snapshots.append(snapshot)
        return snapshot

    def _release(self, snapshot: _Snapshot) -> None:
        """The run that took *snapshot* has ended."""
        try:
            self._snapshots.remove(snapshot)
        except ValueError:
            pass

    def _lookup_pairs(
        self, keys: list[bytes], snapshot: _Snapshot | None = None, *, within: float = 0.0
    ) -> dict[bytes, tuple[bytes, bytes]]:
        """:meth:`lookup`, each entry as ``(digest, payload)``: what a run
        reads; with *snapshot* (see :meth:`_snapshot`), read from it.

        While this Cache is the file's only writer (``_alone``), the file's
        mark is read again only when it was last read *within* seconds ago
        or more: a run passes ``COMMIT_INTERVAL``, so its waves of lookups
        read it at most ten times a second (the writer reads it too at each
        commit), and another process's commit is seen within that; a call of
        :meth:`lookup` (*within* 0) reads it every time."""
        self._check_open()
        if snapshot is not None:
            return self._from_snapshot(keys, snapshot)
        found: dict[bytes, tuple[bytes, bytes]] = {}
        db = self._reader()
        asked = len(keys)
        alone = self._alone
        if alone is not None and db is self._alone_db:
            writer = self._writer
            now_m = time.monotonic()
            if not within or now_m - self._mark_read >= within:
                self._mark_read = now_m
                mark = writer_mark(db)
                if mark != writer.token and (mark != self._first or writer.commits):
                    writer.alone = False  # the last commit was not the writer's: another's
            if not writer.alone:
                alone = self._alone = None
            else:
                # Only the keys stored through this object can be hits (a
                # cold run's keys are none of them: one C call says so).
                if not alone.isdisjoint(keys):
                    keys = [k for k in keys if k in alone]
                else:
                    keys = []
                if not keys:
                    self._misses += asked
                    return found
        pending = self._writer.pending()
        if pending:
            for k in keys:
                e = pending.get(k)
                if e is not None:
                    found[k] = (e[TAIL:PAYLOAD], e[PAYLOAD:])
        now = time.time()
        stale = now - USE_GRANULARITY
        touched = []
        from_bytes = int.from_bytes
        for start in range(0, len(keys), _CHUNK):
            chunk = {
                from_bytes(k[:8], "little", signed=True): k
                for k in keys[start : start + _CHUNK]
                if k not in found
            }
            if not chunk:
                continue
            for i, e, used in db.execute(select(len(chunk)), list(chunk)).fetchall():
                k = chunk[i]
                if k.endswith(e[:TAIL]):  # the key's other 24 bytes: not a clash of ids
                    found[k] = (e[TAIL:PAYLOAD], e[PAYLOAD:])
                    if used < stale:
                        touched.append(k)
        self._hits += len(found)
        self._misses += asked - len(found)
        if touched:
            self._writer.touch(now, touched)
        return found

    def _from_snapshot(
        self, keys: list[bytes], snapshot: _Snapshot
    ) -> dict[bytes, tuple[bytes, bytes]]:
        found: dict[bytes, tuple[bytes, bytes]] = {}
        now = time.time()
        touched: list[bytes] = []
        later: list[bytes] = []
        snapshot.match(
            keys,
            snapshot.rows,
            snapshot.stale,
            self._writer.pending(),
            snapshot.since,
            found,
            touched,
            later,
        )
        self._hits += len(found)
        self._misses += len(keys) - len(found) - len(later)
        if touched:
            self._writer.touch(now, touched)
        if later:  # stored through this object after the snapshot: pending, or in the file
            found.update(self._lookup_pairs(later))
        return found

    def store(self, entries: Sequence[tuple[bytes, CacheEntry]]) -> None:
        """Queue the entries for the writer; return at once.

        Keys and digests are 32 bytes (as a run makes them): another length
        is a ValueError."""
        for k, e in entries:
            if len(k) != KEY_SIZE or len(e.digest) != KEY_SIZE:
                raise ValueError(
                    f"a Cache keeps 32-byte keys and digests, not {len(k)} and {len(e.digest)}"
                )
        self._store_entries(
            [k for k, _ in entries], [k[8:] + e.digest + e.payload for k, e in entries]
        )

    def _store_entries(self, keys: list[bytes], entries: list[bytes]) -> None:
        """:meth:`store` of each key and its entry as the table keeps it: the
        key's last 24 bytes, the digest, the payload. What a run calls."""
        self._check_open()
        if not keys:
            return
        self._writer.put(keys, entries)
        alone = self._alone
        if alone is not None:
            if len(alone) + len(keys) > _ALONE_MAX:
                self._alone = None
            else:
                alone.update(keys)
        for snapshot in self._snapshots:
            snapshot.since.update(keys)

    def flush(self) -> None:
        """Commit every entry stored so far; return when it is on disk."""
        self._check_open()
        self._request(None)

    def _request(self, call: Callable[[sqlite3.Connection], Any] | None) -> Any:
        """Commit, then (with *call*) ``call(db)`` on a connection that may write."""
        writer = self._writer
        result = None
        if call is None:
            writer.flush()
        else:
            result = writer.call(call)
        self._check_open()
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self) -> None:
        """Commit what is pending and close the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        if self._writer.error is not None:
            raise CacheFileError(
                f"{self!r} could not write: {self._writer.error!r}"
            ) from self._writer.error

    def stats(self) -> CacheStats:
        """Entries and bytes in the file (after a flush), hits and misses of this object."""
        self.flush()
        entries, size = (
            self._reader()
            .execute(f"SELECT count(*), coalesce(sum({SIZE_SQL}), 0) FROM results")
            .fetchone()
        )
        file_size = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p)
        )
        return CacheStats(entries, size, self._hits, self._misses, file_size)

    def prune(
        self, older_than: float | timedelta | None = None, max_bytes: int | None = None
    ) -> int:
        """Drop entries; return how many.

        *older_than* (seconds or a timedelta) drops the entries not stored or
        hit for that long; then *max_bytes* drops the least recently used
        until the entries' bytes (see :class:`CacheStats`) are at most that.
        """
        if isinstance(older_than, timedelta):
            older_than = older_than.total_seconds()
        if older_than is not None and not older_than >= 0:
            raise ValueError(f"older_than must be a duration >= 0, got {older_than!r}")
        if max_bytes is not None and not max_bytes >= 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes!r}")
        self.flush()
        removed: int = self._request(
            functools.partial(prune_file, older_than=older_than, max_bytes=max_bytes)
        )
        return removed

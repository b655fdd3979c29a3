"""Stores of cached results: the CacheStore protocol, MemoryCache, and Cache (SQLite).

A store maps a task's key (bytes, see ``_keys``) to a :class:`CacheEntry`:
the digest of the task's output and its pickled payload. The engine looks up
a whole ready wave of keys at once and stores results as tasks finish; it
calls both from the Trio thread, so :meth:`CacheStore.store` must not block
(:class:`Cache` hands the entries to its writer thread).

``Cache`` keeps one SQLite file in WAL mode. Its writer thread owns the one
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
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self, final, runtime_checkable

import attrs

from . import _native
from ._errors import CacheFileError

__all__ = [
    "Cache",
    "CacheEntry",
    "CacheFileError",
    "CacheStats",
    "CacheStore",
    "MemoryCache",
]

SCHEMA: Final = 2  # of the file: the tables below; 1 is migrated (see _migrate)
COMMIT_INTERVAL: Final = 0.1  # seconds an entry may wait in the writer before its commit
BUSY_TIMEOUT: Final = 60.0  # seconds a statement waits for another process's lock
_CHUNK: Final = 500  # keys per SELECT ... IN (...): under SQLite's variable limit
# Keys a Cache remembers storing while it knows they are all the file holds
# (see Cache._alone): about 100 bytes each.
_ALONE_MAX: Final = 1_000_000
# A hit marks its entry used only when its last use is older than this, so
# a rerun within the hour writes nothing; prune's LRU order is to the hour.
USE_GRANULARITY: Final = 3600.0
# A run that will look up at least a quarter as many keys as the file holds
# (and at least _SNAPSHOT_MIN) reads the whole table once, in file order, at
# its first lookup, instead of one B-tree seek a key: see Cache._snapshot.
# Only for a file of at most _SNAPSHOT_BYTES (the rows are then held in memory).
_SNAPSHOT_MIN: Final = 2048
_SNAPSHOT_SHARE: Final = 4
_SNAPSHOT_BYTES: Final = 32 << 20
_FORMAT: Final = "trio_dag cache"
# Pages of a new file: a commit of a window's random ids touches fewer of
# them than of 4 KiB pages (the writer costs about a third less CPU a row).
_PAGE_SIZE: Final = 16384

_RESULTS: Final = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY, -- the key's first 8 bytes: one B-tree, found by rowid
    entry BLOB NOT NULL,    -- the key's other 24 bytes (a lookup checks them: a clash of
                            -- ids is a miss), the output's digest (32 bytes), its payload
    used REAL NOT NULL      -- time.time() of the store or of a hit, to the hour: prune's LRU
);
"""
_CREATE: Final = (
    """
CREATE TABLE IF NOT EXISTS trio_dag_meta (name TEXT PRIMARY KEY, value ANY NOT NULL);
INSERT OR IGNORE INTO trio_dag_meta VALUES ('format', 'trio_dag cache'), ('schema', 2);
"""
    + _RESULTS
)
KEY_SIZE: Final = 32  # bytes of a key and of a digest: what Cache stores
_TAIL: Final = KEY_SIZE - 8  # the key's bytes kept in the entry
_PAYLOAD: Final = _TAIL + KEY_SIZE  # where the payload starts in an entry
# What an entry's bytes count as (prune's max_bytes, stats): the key, the digest, the payload.
_SIZE: Final = "(length(entry) + 8)"


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


# --- the SQLite store -------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    # check_same_thread=False only so close() may close every thread's reader;
    # each connection is used by one thread.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across a crash of the process
    db.execute("PRAGMA cache_size = -32768")  # 32 MiB: a wave's random keys touch many pages
    return db


def _open(path: Path) -> sqlite3.Connection:
    """Connect, check the file is a cache of this schema, create it if empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = _connect(path)
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        if not tables:
            db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # prune gives space back
            db.execute("PRAGMA journal_mode = WAL")
            # One transaction: two processes may create it at once.
            db.executescript("BEGIN IMMEDIATE;" + _CREATE + "COMMIT;")
            tables = {"trio_dag_meta"}
        if "trio_dag_meta" not in tables:
            raise CacheFileError(
                f"{str(path)!r} is a SQLite database but not a trio_dag cache (it has "
                f"tables {', '.join(sorted(tables))}); give Cache() another path"
            )
        meta = dict(db.execute("SELECT name, value FROM trio_dag_meta").fetchall())
        if meta.get("format") != _FORMAT:
            raise CacheFileError(f"{str(path)!r} is not a trio_dag cache; give another path")
        if not isinstance(meta.get("schema"), int) or meta["schema"] > SCHEMA:
            raise CacheFileError(
                f"{str(path)!r} was written by a newer trio_dag (cache schema "
                f"{meta.get('schema')!r}, this one reads {SCHEMA}); upgrade trio_dag or "
                "give another path"
            )
        if meta["schema"] < SCHEMA:
            _migrate(db)
        db.execute("PRAGMA journal_mode = WAL")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise _unusable(path, exc) from None
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Rewrite a schema 1 file's rows as schema 2's, in one transaction; its entries
    stay valid, as keys did not change. (A trio_dag of schema 1 still using the
    file then fails to write, and says so.)"""
    db.execute("BEGIN IMMEDIATE")
    try:
        (schema,) = db.execute("SELECT value FROM trio_dag_meta WHERE name = 'schema'").fetchone()
        if schema == 1:  # not migrated meanwhile by another process
            db.execute("ALTER TABLE results RENAME TO results_1")
            db.execute(_RESULTS)
            db.execute(
                "INSERT INTO results SELECT id, "
                "CAST(substr(key, 9) || digest || payload AS BLOB), used "
                "FROM results_1 WHERE length(key) = 32 AND length(digest) = 32"
            )
            db.execute("DROP TABLE results_1")
            db.execute("UPDATE trio_dag_meta SET value = 2 WHERE name = 'schema'")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> CacheFileError:
    return CacheFileError(
        f"cannot use {str(path)!r} as a trio_dag cache: {exc}; give Cache() another path"
    )


@final
class _Flush:
    """A request to the writer: commit now, then set ``done``; or run ``call``."""

    __slots__ = ("call", "done", "result")

    def __init__(self, call: Callable[[sqlite3.Connection], Any] | None = None) -> None:
        self.call = call
        self.done = threading.Event()
        self.result: Any = None


_STOP: Final = object()
# Rows an INSERT writes: 3 variables each, under SQLite's limit of 32766.
# Many rows a statement: sqlite3 lets go of the GIL at each step, and a step
# a row would hand the GIL to and fro with the event loop's thread once a
# row (the convoy effect), slowing it down.
_ROWS: Final = 4096
_INSERTS: dict[int, str] = {}


def _insert(n: int) -> str:
    """INSERT OR REPLACE of *n* rows ``(id, entry, used)`` in one statement: a
    later row of an id replaces an earlier (two keys of one id, a chance of
    2**-64 a pair, keep the later one: an eviction). Anonymous ``?``
    variables: SQLite numbers them as it parses, where each numbered
    ``?NNN`` would be searched for among those before it (quadratic)."""
    sql = _INSERTS.get(n)
    if sql is None:
        if len(_INSERTS) > 64:
            _INSERTS.clear()
        sql = _INSERTS[n] = "INSERT OR REPLACE INTO results VALUES " + ", ".join(["(?, ?, ?)"] * n)
    return sql


_TOUCH: Final = "UPDATE results SET used = ? WHERE id = ?"
_MARK: Final = "INSERT OR REPLACE INTO trio_dag_meta VALUES ('writer', ?)"


def _mark(db: sqlite3.Connection) -> Any:
    """The token of the Cache whose writer last committed to the file, or None."""
    row = db.execute("SELECT value FROM trio_dag_meta WHERE name = 'writer'").fetchone()
    return None if row is None else row[0]


def _id(key: bytes) -> int:
    return int.from_bytes(key[:8], "little", signed=True)


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
class _Writer:
    """The thread that owns the write connection and commits every 100 ms.

    Its queue takes ``(keys, entries)`` (two lists) to write, ``(time,
    keys)`` of lookup hits to mark used, a :class:`_Flush`, or ``_STOP``.
    Each commit marks the file with ``token`` (the meta row ``writer``),
    having checked that the mark is still the one it left (``last``; at
    first, the one the file had when opened): if not, another connection
    wrote the file, and ``alone`` is cleared for good (see Cache._alone).
    """

    def __init__(
        self, db: sqlite3.Connection, pending: dict[bytes, bytes], token: str, last: Any
    ) -> None:
        self.kh = _native.BACKEND.keyhash  # insert_rows and unpend, compiled or their twins
        self.db = db
        self.pending = pending
        self.token = token
        self.last = last
        self.alone = True
        self.commits = 0  # counted as each ends
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="trio_dag cache writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        keys: list[bytes] = []
        entries: list[bytes] = []
        touched: dict[bytes, float] = {}
        deadline = math.inf
        while True:
            timeout = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if type(item) is tuple:
                if not keys and not touched:
                    deadline = time.monotonic() + COMMIT_INTERVAL
                if type(item[0]) is list:  # (keys, entries) to write
                    keys += item[0]
                    entries += item[1]
                else:  # (time, keys) of lookup hits
                    touched.update(dict.fromkeys(item[1], item[0]))
                continue
            self.commit(keys, entries, touched)
            keys, entries, touched, deadline = [], [], {}, math.inf
            if isinstance(item, _Flush):
                if item.call is not None and self.error is None:
                    try:
                        item.result = item.call(self.db)
                    except BaseException as exc:
                        item.result = exc
                item.done.set()
            elif item is _STOP:
                self.db.close()
                return

    def commit(self, keys: list[bytes], entries: list[bytes], touched: dict[bytes, float]) -> None:
        if (not keys and not touched) or self.error is not None:
            return
        now = time.time()
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            if self.alone and _mark(db) != self.last:
                self.alone = False
            # In id order: neighbours in the B-tree are written together.
            # (Compiled: what the writer does with the GIL held, the event
            # loop's thread waits for.)
            values = self.kh.insert_rows(keys, entries, now)
            for at in range(0, len(values), 3 * _ROWS):
                part = values[at : at + 3 * _ROWS]
                db.execute(_insert(len(part) // 3), part)
            if touched:
                db.executemany(_TOUCH, sorted((t, _id(k)) for k, t in touched.items()))
            db.execute(_MARK, (self.token,))
            db.execute("COMMIT")
            self.last = self.token
            self.commits += 1
        except BaseException as exc:
            self.error = exc
            if db.in_transaction:
                db.execute("ROLLBACK")
            return
        # A newer entry of a key, stored meanwhile, stays until its own commit.
        self.kh.unpend(self.pending, keys, entries)


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
        db = _open(self.path)
        # Entries stored and not yet committed: key -> entry (see _RESULTS).
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
                self._first = _mark(reader)
            finally:
                reader.execute("COMMIT")
        except BaseException:
            db.close()
            for r in self._readers:
                r.close()
            raise
        self._writer = _Writer(db, self._pending, os.urandom(16).hex(), self._first)
        self._finalizer = weakref.finalize(self, _shut, self._writer, self._readers)
        # While the file held nothing when this thread's reader first saw it
        # and no other connection has written it since, the keys stored
        # through this object are all it holds: a lookup (from this thread)
        # of any other key is a miss with no SELECT. None once that is not
        # known (or too many keys to keep). Another connection's commit is
        # seen by the file's mark (see _Writer): by the writer when it
        # commits, and here at each lookup (the mark neither the one the
        # file had at open while the writer has not committed, nor the
        # writer's). A prune deletes without marking: a key it dropped is
        # then read and missed, never a wrong hit.
        self._alone: set[bytes] | None = set() if empty else None
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
            db = _connect(self.path)
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
                dict(db.execute(_ALL + " WHERE used >= ?", cut)),
                dict(db.execute(_ALL + " WHERE used < ?", cut)),
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
        self, keys: list[bytes], snapshot: _Snapshot | None = None
    ) -> dict[bytes, tuple[bytes, bytes]]:
        """:meth:`lookup`, each entry as ``(digest, payload)``: what a run
        reads; with *snapshot* (see :meth:`_snapshot`), read from it."""
        self._check_open()
        if snapshot is not None:
            return self._from_snapshot(keys, snapshot)
        found: dict[bytes, tuple[bytes, bytes]] = {}
        pending = self._pending
        db = self._reader()
        asked = len(keys)
        alone = self._alone
        if alone is not None and db is self._alone_db:
            writer = self._writer
            mark = _mark(db)
            if mark != writer.token and (mark != self._first or writer.commits):
                writer.alone = False  # the last commit was not the writer's: another's
            if not writer.alone:
                alone = self._alone = None
            else:
                # Only the keys stored through this object can be hits.
                keys = [k for k in keys if k in alone]
                if not keys:
                    self._misses += asked
                    return found
        if pending:
            for k in keys:
                e = pending.get(k)
                if e is not None:
                    found[k] = (e[_TAIL:_PAYLOAD], e[_PAYLOAD:])
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
            for i, e, used in db.execute(_select(len(chunk)), list(chunk)).fetchall():
                k = chunk[i]
                if k.endswith(e[:_TAIL]):  # the key's other 24 bytes: not a clash of ids
                    found[k] = (e[_TAIL:_PAYLOAD], e[_PAYLOAD:])
                    if used < stale:
                        touched.append(k)
        self._hits += len(found)
        self._misses += asked - len(found)
        if touched:
            self._writer.queue.put((now, touched))
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
            self._pending,
            snapshot.since,
            found,
            touched,
            later,
        )
        self._hits += len(found)
        self._misses += len(keys) - len(found) - len(later)
        if touched:
            self._writer.queue.put((now, touched))
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
        self._pending.update(zip(keys, entries, strict=True))
        alone = self._alone
        if alone is not None:
            if len(alone) + len(keys) > _ALONE_MAX:
                self._alone = None
            else:
                alone.update(keys)
        for snapshot in self._snapshots:
            snapshot.since.update(keys)
        self._writer.queue.put((keys, entries))

    def flush(self) -> None:
        """Commit every entry stored so far; return when it is on disk."""
        self._check_open()
        self._request(None)

    def _request(self, call: Callable[[sqlite3.Connection], Any] | None) -> Any:
        request = _Flush(call)
        self._writer.queue.put(request)
        request.done.wait()
        self._check_open()
        if isinstance(request.result, BaseException):
            raise request.result
        return request.result

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
            .execute(f"SELECT count(*), coalesce(sum({_SIZE}), 0) FROM results")
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
            functools.partial(_prune, older_than=older_than, max_bytes=max_bytes)
        )
        return removed


def _prune(db: sqlite3.Connection, older_than: float | None, max_bytes: int | None) -> int:
    db.execute("BEGIN IMMEDIATE")
    try:
        removed = 0
        if older_than is not None:
            cut = time.time() - older_than
            removed += db.execute("DELETE FROM results WHERE used < ?", (cut,)).rowcount
        if max_bytes is not None:
            removed += db.execute(
                f"""DELETE FROM results WHERE rowid IN (
                       SELECT rowid FROM (
                           SELECT rowid, sum{_SIZE} OVER (
                               ORDER BY used DESC, rowid DESC) AS kept
                           FROM results)
                       WHERE kept > ?)""",
                (max_bytes,),
            ).rowcount
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("PRAGMA incremental_vacuum")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return removed


_ALL: Final = "SELECT id, entry FROM results"
_SELECTS: dict[int, str] = {}


def _select(n: int) -> str:
    sql = _SELECTS.get(n)
    if sql is None:
        sql = _SELECTS[n] = (
            f"SELECT id, entry, used FROM results WHERE id IN ({', '.join('?' * n)})"
        )
    return sql


def _shut(writer: _Writer, readers: Iterable[sqlite3.Connection]) -> None:
    """Stop the writer after its last commit and close the readers (also at exit)."""
    writer.queue.put(_STOP)
    writer.thread.join()
    for db in list(readers):
        db.close()

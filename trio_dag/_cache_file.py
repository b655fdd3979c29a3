"""The SQLite file of a :class:`~trio_dag._cache.Cache`: its schema, opening and
migrating it, and the writer thread that commits to it.

The file holds two tables: ``trio_dag_meta`` (the format, the schema and
the mark of the last writer, see :class:`Writer`) and ``results``, one row
per key (see ``_RESULTS``). It is in WAL mode. The writer thread owns the
one write connection and commits whatever it was given at most
``COMMIT_INTERVAL`` after it was given (and at once when asked): a crash
loses at most that window and never corrupts the file. Readers
(``_cache.Cache``'s lookups) use connections of their own threads.

Two writers do that job alike (:func:`start_writer` picks one as a Cache
opens). The compiled one (:class:`CWriter`, on ``_native._sqlwriter``) is
a C thread that never takes the GIL: it commits as a run goes on, where a
Python thread is starved of the GIL by the event loop's thread. It needs
SQLite's C API, found in the library Python's ``sqlite3`` uses; without it,
without the compiled modules, or with the environment variable
``TRIO_DAG_PYTHON_WRITER`` set non-empty (read at each open), the Python
:class:`Writer` is used.
"""

from __future__ import annotations

import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from . import _native
from ._errors import CacheFileError

__all__ = [
    "BUSY_TIMEOUT",
    "COMMIT_GAP",
    "COMMIT_INTERVAL",
    "KEY_SIZE",
    "PAYLOAD",
    "SCHEMA",
    "SELECT_ALL",
    "SIZE_SQL",
    "TAIL",
    "USE_GRANULARITY",
    "CWriter",
    "Flush",
    "Writer",
    "connect",
    "open_file",
    "prune_file",
    "select",
    "shut",
    "start_writer",
    "writer_mark",
]

SCHEMA: Final = 3  # of the file: the tables below; 1 and 2 are migrated (see _migrate)
COMMIT_INTERVAL: Final = 0.1  # seconds an entry may wait in the writer before its commit
# The compiled writer commits sooner, as soon as this long has passed since
# its last commit ended: it keeps up with a run, leaving little for its end.
COMMIT_GAP: Final = 0.01
BUSY_TIMEOUT: Final = 60.0  # seconds a statement waits for another process's lock
# A hit marks its entry used only when its last use is older than this, so
# a rerun within the hour writes nothing; prune's LRU order is to the hour.
USE_GRANULARITY: Final = 3600.0
_FORMAT: Final = "trio_dag cache"
# Pages of a new file: a commit of a window's random ids touches fewer of
# them than of 4 KiB pages (the writer costs about a third less CPU a row).
_PAGE_SIZE: Final = 16384

_RESULTS: Final = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,    -- the rowid, in the order rows were written
    id INTEGER NOT NULL UNIQUE, -- the key's first 8 bytes: found through its index
    entry BLOB NOT NULL,        -- the key's other 24 bytes (a lookup checks them: a clash
                                -- of ids is a miss), the output's digest (32 bytes), its payload
    used REAL NOT NULL          -- time.time() of the store or of a hit, to the hour: prune's LRU
);
"""
# Schema 3's rows are in the order they were written, found by id through
# its index: a commit of a window of random ids writes its rows at the
# table's end and changes the index's small pages, where schema 2 (rows
# keyed by id) rewrote most of the table's pages at each commit (the writer
# spends about a quarter less CPU a row). Schemas 1 and 2 are migrated.
_CREATE: Final = (
    """
CREATE TABLE IF NOT EXISTS trio_dag_meta (name TEXT PRIMARY KEY, value ANY NOT NULL);
INSERT OR IGNORE INTO trio_dag_meta VALUES ('format', 'trio_dag cache'), ('schema', 3);
"""
    + _RESULTS
)
KEY_SIZE: Final = 32  # bytes of a key and of a digest: what Cache stores
TAIL: Final = KEY_SIZE - 8  # the key's bytes kept in the entry
PAYLOAD: Final = TAIL + KEY_SIZE  # where the payload starts in an entry
# What an entry's bytes count as (prune's max_bytes, stats): the key, the digest, the payload.
SIZE_SQL: Final = "(length(entry) + 8)"


def connect(path: Path) -> sqlite3.Connection:
    # check_same_thread=False only so close() may close every thread's reader;
    # each connection is used by one thread.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across a crash of the process
    db.execute("PRAGMA cache_size = -32768")  # 32 MiB: a wave's random keys touch many pages
    return db


def open_file(path: Path) -> sqlite3.Connection:
    """Connect, check the file is a cache of this schema, create it if empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = connect(path)
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
    """Rewrite a schema 1 or 2 file's rows as schema 3's, in one transaction; its
    entries stay valid, as keys did not change. (A trio_dag of an older schema
    still using the file then fails to write, and says so.)"""
    db.execute("BEGIN IMMEDIATE")
    try:
        (schema,) = db.execute("SELECT value FROM trio_dag_meta WHERE name = 'schema'").fetchone()
        old = None
        if schema == 1:  # not migrated meanwhile by another process
            # One row: the key, its digest, its payload, their size, when used.
            old = (
                "SELECT id, CAST(substr(key, 9) || digest || payload AS BLOB), used "
                "FROM results_old WHERE length(key) = 32 AND length(digest) = 32"
            )
        elif schema == 2:  # rows keyed by id, one blob each
            old = "SELECT id, entry, used FROM results_old"
        if old is not None:
            db.execute("ALTER TABLE results RENAME TO results_old")
            db.execute(_RESULTS)
            db.execute(f"INSERT INTO results(id, entry, used) {old} ORDER BY 1")
            db.execute("DROP TABLE results_old")
            db.execute(f"UPDATE trio_dag_meta SET value = {SCHEMA} WHERE name = 'schema'")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> CacheFileError:
    return CacheFileError(
        f"cannot use {str(path)!r} as a trio_dag cache: {exc}; give Cache() another path"
    )


@final
class Flush:
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
        sql = _INSERTS[n] = "INSERT OR REPLACE INTO results(id, entry, used) VALUES " + ", ".join(
            ["(?, ?, ?)"] * n
        )
    return sql


_TOUCH: Final = "UPDATE results SET used = ? WHERE id = ?"
_MARK: Final = "INSERT OR REPLACE INTO trio_dag_meta VALUES ('writer', ?)"


def writer_mark(db: sqlite3.Connection) -> Any:
    """The token of the Cache whose writer last committed to the file, or None."""
    row = db.execute("SELECT value FROM trio_dag_meta WHERE name = 'writer'").fetchone()
    return None if row is None else row[0]


def _id(key: bytes) -> int:
    return int.from_bytes(key[:8], "little", signed=True)


@final
class Writer:
    """The thread that owns the write connection and commits every 100 ms.

    Its queue takes ``(keys, entries)`` (two lists) to write, ``(time,
    keys)`` of lookup hits to mark used, or (through :meth:`request`) a
    :class:`Flush` or ``_STOP``. Each commit marks the file with ``token``
    (the meta row ``writer``), having checked that the mark is still the one
    it left (``last``; at first, the one the file had when opened): if not,
    another connection wrote the file, and ``alone`` is cleared for good (see
    ``_cache.Cache._alone``).

    Idle, the thread waits for the queue's first item; from then on it sleeps
    until the commit is due, woken sooner only by a request (``urgent``),
    and takes what was queued meanwhile at once. So it does not wake, and
    take the GIL from the event loop's thread, for each batch a run stores.
    """

    def __init__(
        self, db: sqlite3.Connection, pending: dict[bytes, bytes], token: str, last: Any
    ) -> None:
        self.kh = _native.BACKEND.keyhash  # insert_rows and unpend, compiled or their twins
        self.db = db
        self.uncommitted = pending  # what pending() returns
        self.token = token
        self.last = last
        self.alone = True
        self.commits = 0  # counted as each ends
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.urgent = threading.Event()  # set with each request
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="trio_dag cache writer", daemon=True)
        self.thread.start()

    def request(self, item: Flush | object) -> None:
        """Queue a :class:`Flush` or ``_STOP``, and wake the thread for it."""
        self.queue.put(item)
        self.urgent.set()

    def put(self, keys: list[bytes], entries: list[bytes]) -> None:
        """Queue rows to write: each key and its entry (see ``_RESULTS``)."""
        self.uncommitted.update(zip(keys, entries, strict=True))  # before the thread may unpend
        self.queue.put((keys, entries))

    def pending(self) -> dict[bytes, bytes]:
        """The entries put and not yet committed: key to entry (the thread
        drops each after its commit)."""
        return self.uncommitted

    def touch(self, now: float, keys: list[bytes]) -> None:
        """Queue lookup hits to mark used at *now*."""
        self.queue.put((now, keys))

    def flush(self) -> None:
        """Commit what is queued; return when done (or failed: see ``error``)."""
        self.call(None)

    def call(self, call: Callable[[sqlite3.Connection], Any] | None) -> Any:
        """Commit what is queued, then ``call(db)`` on the write connection:
        its result, or the exception it raised (returned, not raised); None
        after an error, or with no *call*."""
        request = Flush(call)
        self.request(request)
        request.done.wait()
        return request.result

    def stop(self) -> None:
        """Commit what is queued, close the connection, end the thread."""
        self.request(_STOP)
        self.thread.join()

    def run(self) -> None:
        keys: list[bytes] = []
        entries: list[bytes] = []
        touched: dict[bytes, float] = {}
        deadline = math.inf
        while True:
            if deadline == math.inf:
                items = [self.queue.get()]  # idle: the first item wakes it
            else:
                self.urgent.wait(max(0.0, deadline - time.monotonic()))
                # Cleared before the queue is read: a request queued after
                # this is found now, or sets it again for the next round.
                self.urgent.clear()
                items = []
            while True:  # and whatever else is queued
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            for item in items:
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
                if isinstance(item, Flush):
                    if item.call is not None and self.error is None:
                        try:
                            item.result = item.call(self.db)
                        except BaseException as exc:
                            item.result = exc
                    item.done.set()
                elif item is _STOP:
                    self.db.close()
                    return
            if deadline != math.inf and time.monotonic() >= deadline:
                self.commit(keys, entries, touched)
                keys, entries, touched, deadline = [], [], {}, math.inf

    def commit(self, keys: list[bytes], entries: list[bytes], touched: dict[bytes, float]) -> None:
        if (not keys and not touched) or self.error is not None:
            return
        now = time.time()
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            if self.alone and writer_mark(db) != self.last:
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
        self.kh.unpend(self.uncommitted, keys, entries)


def prune_file(db: sqlite3.Connection, older_than: float | None, max_bytes: int | None) -> int:
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
                           SELECT rowid, sum{SIZE_SQL} OVER (
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


SELECT_ALL: Final = "SELECT id, entry FROM results"
_SELECTS: dict[int, str] = {}


def select(n: int) -> str:
    sql = _SELECTS.get(n)
    if sql is None:
        sql = _SELECTS[n] = (
            f"SELECT id, entry, used FROM results WHERE id IN ({', '.join('?' * n)})"
        )
    return sql


if TYPE_CHECKING:
    from ._native._sqlwriter import Writer as _CBase
else:
    _CBase = object if _native.SQLWRITER is None else _native.SQLWRITER.Writer


@final
class CWriter(_CBase):
    """The compiled writer (``_native._sqlwriter.Writer``, a C thread), with
    :meth:`call`: a :class:`Flush`'s call runs, after a commit, on a Python
    connection of its own (the C thread's is not one)."""

    def __init__(
        self, path: Path, pending: dict[bytes, bytes], token: str, last: Any, unpend: Any
    ) -> None:
        super().__init__(
            path, pending, token, last, unpend, COMMIT_INTERVAL, COMMIT_GAP, BUSY_TIMEOUT
        )
        self.path = path
        self.db: sqlite3.Connection | None = None
        self.calls = threading.Lock()  # one call at a time on self.db

    def call(self, call: Callable[[sqlite3.Connection], Any]) -> Any:
        """As :meth:`Writer.call`."""
        self.flush()
        if self.error is not None:
            return None
        with self.calls:
            if self.db is None:
                self.db = connect(self.path)
            try:
                return call(self.db)
            except BaseException as exc:
                return exc

    def stop(self) -> None:
        """As :meth:`Writer.stop`."""
        super().stop()
        with self.calls:
            if self.db is not None:
                self.db.close()
                self.db = None


def start_writer(
    path: Path, db: sqlite3.Connection, pending: dict[bytes, bytes], token: str, last: Any
) -> Writer | CWriter:
    """The writer of a Cache of *path*, opened as *db* (see the module's docstring)."""
    module = _native.SQLWRITER
    if module is not None and not os.environ.get("TRIO_DAG_PYTHON_WRITER") and module.available():
        db.close()  # the C thread opens its own connection
        return CWriter(path, pending, token, last, _native.BACKEND.keyhash.unpend)
    return Writer(db, pending, token, last)


def shut(writer: Writer | CWriter, readers: Iterable[sqlite3.Connection]) -> None:
    """Stop the writer after its last commit and close the readers (also at exit).

    A signal handler that raises ends the wait for the writer (it still
    commits and ends); the readers are closed all the same."""
    try:
        writer.stop()
    finally:
        for db in list(readers):
            db.close()

"""Cache stores (``_cache``): the protocol, MemoryCache, and the SQLite Cache."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio

import trio_dag
import trio_dag._cache
import trio_dag._cache_file
import trio_dag._native
from trio_dag._cache import (
    Cache,
    CacheEntry,
    CacheFileError,
    CacheStats,
    CacheStore,
    MemoryCache,
)
from trio_dag.events import TaskNotCached

ROOT = Path(trio_dag.__file__).parent.parent
TIMEOUT = 60  # seconds any subprocess or wait may take


def k(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=32).digest()


def entry(i: int, size: int = 10) -> CacheEntry:
    return CacheEntry(k(-i), str(i).encode().ljust(size, b"."))


def row_id(key: bytes) -> int:
    """The row of *key* in the results table: its first 8 bytes."""
    return int.from_bytes(key[:8], "little", signed=True)


def sql(path: Path, query: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path, timeout=TIMEOUT)
    try:
        with db:
            return db.execute(query, args).fetchall()
    finally:
        db.close()


@pytest.fixture(
    autouse=True,
    params=[pytest.param("c-writer", marks=pytest.mark.c_extension), "python-writer"],
)
def writer_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with each SQLite writer (see _cache_file.start_writer):
    the compiled one when it is there, and the Python one (forced through the
    environment, which subprocesses inherit)."""
    if request.param == "python-writer":
        monkeypatch.setenv("TRIO_DAG_PYTHON_WRITER", "1")
    else:
        monkeypatch.delenv("TRIO_DAG_PYTHON_WRITER", raising=False)
        sqlwriter = trio_dag._native.SQLWRITER
        if sqlwriter is None or not sqlwriter.available():
            pytest.skip("the compiled cache writer is not in use (not built, or no extensions)")
    return str(request.param)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheStore]:
    made: CacheStore = MemoryCache() if request.param == "memory" else Cache(tmp_path / "c.db")
    yield made
    made.close()


# --- MemoryCache and Cache behave alike -------------------------------------


def test_both_stores_follow_the_protocol(store: CacheStore) -> None:
    assert isinstance(store, CacheStore)


def test_lookup_of_absent_keys_is_empty(store: CacheStore) -> None:
    assert store.lookup([]) == {}
    assert store.lookup([k(1), k(2)]) == {}


def test_lookup_sees_what_was_stored_at_once(store: CacheStore) -> None:
    store.store([(k(1), entry(1)), (k(2), entry(2))])
    assert store.lookup([k(1), k(3), k(2)]) == {k(1): entry(1), k(2): entry(2)}


def test_store_replaces_an_entry(store: CacheStore) -> None:
    store.store([(k(1), entry(1))])
    store.store([(k(1), entry(7))])
    assert store.lookup([k(1)]) == {k(1): entry(7)}


def test_many_keys_at_once(store: CacheStore) -> None:
    store.store([(k(i), entry(i)) for i in range(0, 3000, 2)])
    if isinstance(store, Cache):
        store.flush()
    found = store.lookup([k(i) for i in range(3000)])
    assert found == {k(i): entry(i) for i in range(0, 3000, 2)}


def test_close_is_idempotent(store: CacheStore) -> None:
    store.close()
    store.close()


def test_memory_cache_repr() -> None:
    cache = MemoryCache()
    cache.store([(k(1), entry(1))])
    assert repr(cache) == "<MemoryCache of 1 entries>"


# --- the SQLite file --------------------------------------------------------


def test_cache_creates_file_and_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "results.sqlite3"
    with Cache(path) as cache:
        assert repr(cache) == f"Cache({str(path)!r})"
    assert path.exists()
    assert sql(path, "PRAGMA journal_mode") == [("wal",)]


def test_reopen_sees_committed_entries(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.db") as cache:
        cache.store([(k(i), entry(i)) for i in range(100)])
    with Cache(tmp_path / "c.db") as cache:
        assert cache.lookup([k(i) for i in range(100)]) == {k(i): entry(i) for i in range(100)}


def test_flush_makes_entries_visible_to_another_cache(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.db") as writer, Cache(tmp_path / "c.db") as reader:
        writer.store([(k(1), entry(1))])
        writer.flush()
        assert reader.lookup([k(1)]) == {k(1): entry(1)}


def test_entries_are_committed_within_the_commit_window(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(1), entry(1))])
        start = time.monotonic()
        # No flush: the writer commits by itself, 100 ms after the store.
        while not sql(path, "SELECT count(*) FROM results")[0][0]:
            assert time.monotonic() - start < TIMEOUT
            time.sleep(0.01)


def test_writes_wait_for_the_commit_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A window of an hour (and, for the compiled writer, an hour between its
    # commits): nothing is committed unprompted during this test.
    monkeypatch.setattr(trio_dag._cache_file, "COMMIT_INTERVAL", 3600.0)
    monkeypatch.setattr(trio_dag._cache_file, "COMMIT_GAP", 3600.0)
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(1), entry(1))])
        cache.store([(k(2), entry(2))])
        time.sleep(0.05)
        assert sql(path, "SELECT count(*) FROM results") == [(0,)]
        # Stored but not committed: this cache's lookups see it all the same.
        assert cache.lookup([k(1), k(2)]) == {k(1): entry(1), k(2): entry(2)}
        cache.flush()
        assert sql(path, "SELECT count(*) FROM results") == [(2,)]


def test_lookup_works_from_any_thread(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.db") as cache:
        cache.store([(k(1), entry(1))])
        cache.flush()
        seen = []
        thread = threading.Thread(target=lambda: seen.append(cache.lookup([k(1)])))
        thread.start()
        thread.join(TIMEOUT)
        assert seen == [{k(1): entry(1)}]


def test_closed_cache_refuses_use(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c.db")
    cache.close()
    with pytest.raises(CacheFileError, match="closed"):
        cache.store([(k(1), entry(1))])
    with pytest.raises(CacheFileError, match="closed"):
        cache.flush()
    with pytest.raises(CacheFileError, match="closed"):
        cache.lookup([k(1)])


def test_not_a_sqlite_file_is_a_clear_error_at_open(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, but some text long enough to be read as a header\n" * 20)
    with pytest.raises(CacheFileError, match=r"cannot use .* as a trio_dag cache: file is not a"):
        Cache(path)
    assert path.read_text().startswith("not a database")


def test_another_sqlite_database_is_a_clear_error_at_open(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sql(path, "CREATE TABLE people (name TEXT)")
    with pytest.raises(CacheFileError, match=r"not a trio_dag cache.*people"):
        Cache(path)


def test_newer_schema_is_a_clear_error_at_open(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    Cache(path).close()
    sql(path, "UPDATE trio_dag_meta SET value = 99 WHERE name = 'schema'")
    with pytest.raises(CacheFileError, match="newer trio_dag"):
        Cache(path)


SCHEMA_1 = """
CREATE TABLE trio_dag_meta (name TEXT PRIMARY KEY, value ANY NOT NULL);
INSERT INTO trio_dag_meta VALUES ('format', 'trio_dag cache'), ('schema', 1);
CREATE TABLE results (
    id INTEGER PRIMARY KEY, key BLOB NOT NULL, digest BLOB NOT NULL,
    payload BLOB NOT NULL, size INTEGER NOT NULL, used REAL NOT NULL
);
"""


def test_a_schema_1_file_is_migrated_with_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    with db:
        db.executemany(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)",
            [(row_id(k(i)), k(i), entry(i).digest, entry(i).payload, 74, 1e9) for i in range(20)],
        )
    db.close()
    with Cache(path) as cache:
        assert cache.lookup([k(i) for i in range(25)]) == {k(i): entry(i) for i in range(20)}
        assert cache.stats().bytes == 20 * (32 + 32 + 10)
    assert sql(path, "SELECT value FROM trio_dag_meta WHERE name = 'schema'") == [(3,)]
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]


SCHEMA_2 = """
CREATE TABLE trio_dag_meta (name TEXT PRIMARY KEY, value ANY NOT NULL);
INSERT INTO trio_dag_meta VALUES ('format', 'trio_dag cache'), ('schema', 2);
CREATE TABLE results (id INTEGER PRIMARY KEY, entry BLOB NOT NULL, used REAL NOT NULL);
"""


def test_a_schema_2_file_is_migrated_with_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2)
    with db:
        db.executemany(
            "INSERT INTO results VALUES (?, ?, ?)",
            [
                (row_id(k(i)), k(i)[8:] + entry(i).digest + entry(i).payload, 1e9 + i)
                for i in range(20)
            ],
        )
    db.close()
    with Cache(path) as cache:
        assert cache.lookup([k(i) for i in range(25)]) == {k(i): entry(i) for i in range(20)}
        assert cache.stats().bytes == 20 * (32 + 32 + 10)
        cache.store([(k(1), entry(30)), (k(40), entry(40))])  # a replaced entry, a new one
        cache.flush()
        assert cache.lookup([k(1), k(40)]) == {k(1): entry(30), k(40): entry(40)}
        assert cache.stats().entries == 21
    assert sql(path, "SELECT value FROM trio_dag_meta WHERE name = 'schema'") == [(3,)]
    # Schema 3: rows in the order written, each id once, found through its index.
    assert sql(path, "SELECT count(DISTINCT id), count(*) FROM results") == [(21, 21)]
    assert sql(path, "SELECT id FROM results ORDER BY seq DESC LIMIT 1") in (
        [(row_id(k(1)),)],
        [(row_id(k(40)),)],
    )
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_file_older_trio_dag_still_writes_fails_there_not_here(tmp_path: Path) -> None:
    # A trio_dag of schema 2 still holding the file after the migration: its
    # INSERT of three values into four columns fails; the file stays whole.
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2)
    db.close()
    Cache(path).close()
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.OperationalError), db:
        db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (1, b"e" * 56, 1.0))
    db.close()
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_cache_opened_on_an_empty_file_sees_another_connections_entries(
    tmp_path: Path,
) -> None:
    # Opened empty, a Cache answers misses without reading the file while
    # it is the only writer; another connection's commits end that.
    path = tmp_path / "c.db"
    with Cache(path) as first, Cache(path) as other:
        assert first._alone is not None
        assert first.lookup([k(1), k(2)]) == {}
        other.store([(k(2), entry(2))])
        other.flush()
        # The first has not committed since its last lookup: the change is another's.
        assert first.lookup([k(1), k(2)]) == {k(2): entry(2)}
        assert first._alone is None
    with Cache(path) as again, Cache(path) as other:
        assert again._alone is None  # not empty: every lookup reads the file


def test_another_connections_commit_after_the_writers_is_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Cache(path) as first, Cache(path) as other:
        assert first.lookup([k(3)]) == {}
        first.store([(k(1), entry(1))])
        first.flush()
        assert first.lookup([k(1), k(3)]) == {k(1): entry(1)}
        assert first._alone is not None  # its own commit: still the file's only writer
        other.store([(k(3), entry(3))])
        other.flush()
        assert first.lookup([k(1), k(3)]) == {k(1): entry(1), k(3): entry(3)}
        assert first._alone is None


def test_a_runs_lookups_read_the_mark_at_most_once_per_interval(tmp_path: Path) -> None:
    # A run's waves of lookups (within=COMMIT_INTERVAL) read the file's mark
    # at most once an interval: another connection's commit is seen once
    # the interval has passed since the last read (here: never, then at once).
    path = tmp_path / "c.db"
    with Cache(path) as first, Cache(path) as other:
        assert first._lookup_pairs([k(3)], within=3600.0) == {}  # reads the mark
        other.store([(k(3), entry(3))])
        other.flush()
        assert first._lookup_pairs([k(3)], within=3600.0) == {}  # within the interval
        assert first._alone is not None
        got = first._lookup_pairs([k(3)], within=0.0)  # as lookup() does: reads it
        assert got == {k(3): (entry(3).digest, entry(3).payload)}
        assert first._alone is None


def test_a_writer_sees_another_connections_commit_at_its_own(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Cache(path) as first, Cache(path) as other:
        other.store([(k(3), entry(3))])
        other.flush()
        first.store([(k(1), entry(1))])
        first.flush()  # the file's mark was not the one it had at open
        assert not first._writer.alone
        assert first.lookup([k(1), k(3)]) == {k(1): entry(1), k(3): entry(3)}


def test_the_writer_is_the_one_asked_for(tmp_path: Path, writer_kind: str) -> None:
    with Cache(tmp_path / "c.db") as cache:
        kind = (
            trio_dag._cache_file.CWriter
            if writer_kind == "c-writer"
            else trio_dag._cache_file.Writer
        )
        assert type(cache._writer) is kind


def test_a_commit_leaves_nothing_pending_and_keeps_the_later_of_two_entries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(1), entry(1)), (k(2), entry(2))])
        cache.store([(k(1), entry(7))])  # one window: the later entry of k(1) is kept
        cache.flush()
        assert cache._writer.pending() == {}
    assert sql(path, "SELECT count(*) FROM results") == [(2,)]
    with Cache(path) as cache:
        assert cache.lookup([k(1), k(2)]) == {k(1): entry(7), k(2): entry(2)}


def row(key: int, value: int) -> bytes:
    """The entry of key *key* storing ``entry(value)``, as the table keeps it."""
    return k(key)[8:] + entry(value).digest + entry(value).payload


def test_the_writers_pending_entries_are_those_stored_and_not_yet_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trio_dag._cache_file, "COMMIT_INTERVAL", 3600.0)
    monkeypatch.setattr(trio_dag._cache_file, "COMMIT_GAP", 3600.0)
    with Cache(tmp_path / "c.db") as cache:
        writer = cache._writer
        cache.store([(k(1), entry(1))])
        assert writer.pending() == {k(1): row(1, 1)}
        cache.store([(k(1), entry(7)), (k(2), entry(2))])
        assert writer.pending() == {k(1): row(1, 7), k(2): row(2, 2)}
        cache.store([(k(3), entry(3))])  # never asked for before its commit
        cache.flush()
        assert writer.pending() == {}
        cache.store([(k(1), entry(8))])
        assert writer.pending() == {k(1): row(1, 8)}
        assert cache.lookup([k(1), k(2), k(3)]) == {k(1): entry(8), k(2): entry(2), k(3): entry(3)}


def test_only_the_compiled_writer_commits_before_the_window_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer_kind: str
) -> None:
    # A window of an hour: the compiled writer commits anyway, as soon as
    # COMMIT_GAP has passed since its last commit; the Python one waits.
    monkeypatch.setattr(trio_dag._cache_file, "COMMIT_INTERVAL", 3600.0)
    monkeypatch.setattr(trio_dag._cache_file, "COMMIT_GAP", 0.0)
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(1), entry(1))])
        if writer_kind == "python-writer":
            time.sleep(0.1)
            assert sql(path, "SELECT count(*) FROM results") == [(0,)]
            return
        start = time.monotonic()
        while not sql(path, "SELECT count(*) FROM results")[0][0]:
            assert time.monotonic() - start < TIMEOUT
            time.sleep(0.01)
        cache.store([(k(2), entry(2))])  # and the next too
        while sql(path, "SELECT count(*) FROM results")[0][0] < 2:
            assert time.monotonic() - start < TIMEOUT
            time.sleep(0.01)
        assert cache._writer.pending() == {}


def test_a_file_that_stopped_being_a_cache_fails_the_commit_and_every_use_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    cache = Cache(path)
    cache.store([(k(1), entry(1))])
    cache.flush()
    sql(path, "DROP TABLE results")
    cache.store([(k(2), entry(2))])
    with pytest.raises(CacheFileError, match="could not write: OperationalError") as info:
        cache.flush()
    error = info.value.__cause__
    assert isinstance(error, sqlite3.OperationalError)
    assert str(error) == "no such table: results"
    assert cache._writer.error is error
    with pytest.raises(CacheFileError, match="no such table"):
        cache.store([(k(3), entry(3))])
    with pytest.raises(CacheFileError, match="no such table"):
        cache.lookup([k(1)])
    with pytest.raises(CacheFileError, match="no such table"):
        cache.close()
    cache.close()  # closed: nothing more to say
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_lock_held_past_the_busy_timeout_fails_the_commit_and_nothing_more_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trio_dag._cache_file, "BUSY_TIMEOUT", 0.05)
    path = tmp_path / "c.db"
    cache = Cache(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write lock
        cache.store([(k(1), entry(1))])
        with pytest.raises(CacheFileError, match="database is locked") as info:
            cache.flush()
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        other.execute("COMMIT")
        # The entry stays pending, so this object still sees it; the file never gets it.
        assert cache._writer.pending()
        with pytest.raises(CacheFileError, match="database is locked"):
            cache.close()
    finally:
        other.close()
    assert sql(path, "SELECT count(*) FROM results") == [(0,)]
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_run_whose_commits_fail_still_ends_ok_and_says_which_tasks_were_not_kept(
    tmp_path: Path,
) -> None:
    async def double(x: int) -> int:
        return 2 * x

    events: list[object] = []
    dag = trio_dag.DAG()
    a = dag.add(double, 1, cache=True, name="a")
    dag.add(double, a, cache=True, name="b")
    dag.add(double, 3, name="c")
    path = tmp_path / "c.db"
    cache = Cache(path)
    sql(path, "DROP TABLE results")  # the file stops being a cache under it
    report = trio.run(functools.partial(trio_dag.run, dag, cache=cache, on_event=events.append))
    assert report.ok and report["b"] == 4
    told = {e.task.name: e.reason for e in events if isinstance(e, TaskNotCached)}
    assert sorted(told) == ["a", "b"]
    assert all(
        "could not write: OperationalError('no such table: results')" in r for r in told.values()
    )
    with pytest.raises(CacheFileError, match="no such table"):
        cache.close()


class _Interrupted(Exception):
    """What the SIGALRM handler of the two tests below raises."""


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted


@contextlib.contextmanager
def _locked_then_interrupted(path: Path, cache: Cache) -> Iterator[None]:
    """Another connection holds *path*'s write lock while *cache* stores a
    row; a SIGALRM handler raises 0.1 s into the block. The lock is let go
    at the block's end (and the timer and handler restored)."""
    other = sqlite3.connect(path, isolation_level=None)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        other.execute("BEGIN IMMEDIATE")
        cache.store([(k(1), entry(1))])
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        yield
        other.execute("COMMIT")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        other.close()


@pytest.mark.skipif(sys.platform == "win32", reason="setitimer is POSIX")
def test_a_flush_waiting_for_a_lock_ends_when_a_signal_handler_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trio_dag._cache_file, "BUSY_TIMEOUT", float(TIMEOUT))
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        with _locked_then_interrupted(path, cache):
            start = time.monotonic()
            with pytest.raises(_Interrupted):
                cache.flush()
            assert time.monotonic() - start < TIMEOUT / 2
        cache.flush()  # the lock is gone: the commit goes through
        assert sql(path, "SELECT count(*) FROM results") == [(1,)]


@pytest.mark.skipif(sys.platform == "win32", reason="setitimer is POSIX")
def test_a_close_waiting_for_a_lock_ends_when_a_signal_handler_raises_and_commits_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trio_dag._cache_file, "BUSY_TIMEOUT", float(TIMEOUT))
    path = tmp_path / "c.db"
    cache = Cache(path)
    with _locked_then_interrupted(path, cache), pytest.raises(_Interrupted):
        cache.close()
    cache.close()  # closed already
    start = time.monotonic()  # the writer commits once the lock is gone, and ends
    while not sql(path, "SELECT count(*) FROM results")[0][0]:
        assert time.monotonic() - start < TIMEOUT
        time.sleep(0.01)
    with pytest.raises(CacheFileError, match="closed"):
        cache.store([(k(2), entry(2))])


def test_cache_store_takes_32_byte_keys_and_digests(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.db") as cache:
        with pytest.raises(ValueError, match="32-byte keys"):
            cache.store([(b"short", entry(1))])
        with pytest.raises(ValueError, match="32-byte keys"):
            cache.store([(k(1), CacheEntry(b"short", b"payload"))])


def test_cache_file_error_is_a_trio_dag_error() -> None:
    assert issubclass(CacheFileError, trio_dag.TrioDagError)


# --- prune and stats --------------------------------------------------------


def test_stats(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.db") as cache:
        cache.store([(k(i), entry(i)) for i in range(10)])
        cache.lookup([k(0), k(1), k(99)])
        stats = cache.stats()
    assert isinstance(stats, CacheStats)
    assert stats.entries == 10
    assert stats.bytes == 10 * (32 + 32 + 10)
    assert (stats.hits, stats.misses) == (2, 1)
    assert stats.file_size > 0


def test_prune_older_than_drops_entries_not_used_for_that_long(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(i), entry(i)) for i in range(10)])
        cache.flush()
        sql(path, "UPDATE results SET used = used - 3 * 86400 WHERE id % 2 = 0")
        old = sql(path, "SELECT count(*) FROM results WHERE id % 2 = 0")[0][0]
        assert cache.prune(older_than=timedelta(days=2)) == old
        assert cache.prune(older_than=2 * 86400.0) == 0
        assert cache.stats().entries == 10 - old


def test_lookup_hit_marks_entry_used(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(1), entry(1)), (k(2), entry(2))])
        cache.flush()
        sql(path, "UPDATE results SET used = used - 3 * 86400")
        assert cache.lookup([k(1)]) == {k(1): entry(1)}
        assert cache.prune(older_than=timedelta(days=1)) == 1
        assert cache.lookup([k(1), k(2)]) == {k(1): entry(1)}


def test_prune_max_bytes_drops_least_recently_used_first(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(i), entry(i, size=100)) for i in range(10)])
        cache.flush()
        for i in range(10):  # entry i was last used i hours ago
            sql(path, "UPDATE results SET used = used - ? WHERE id = ?", 3600.0 * i, row_id(k(i)))
        size = 32 + 32 + 100
        assert cache.prune(max_bytes=4 * size + 10) == 6
        assert set(cache.lookup([k(i) for i in range(10)])) == {k(0), k(1), k(2), k(3)}
        assert cache.prune(max_bytes=0) == 4
        assert cache.stats().entries == 0


def test_prune_checks_its_arguments(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.db") as cache:
        with pytest.raises(ValueError, match="older_than"):
            cache.prune(older_than=-1)
        with pytest.raises(ValueError, match="max_bytes"):
            cache.prune(max_bytes=-1)


# --- crashes and other processes --------------------------------------------

WRITER = """
import hashlib, sys
from trio_dag._cache import Cache, CacheEntry

def k(i):
    return hashlib.blake2b(str(i).encode(), digest_size=32).digest()

path, first, count, flush_every = sys.argv[1], *map(int, sys.argv[2:])
cache = Cache(path)
i = first
while i < first + count:
    cache.store([(k(j), CacheEntry(k(-j), b"x" * 200)) for j in range(i, i + 50)])
    i += 50
    if (i - first) % flush_every == 0:
        cache.flush()
        print(i, flush=True)  # every entry below i is acknowledged
cache.close()
"""


def writer(path: Path, first: int, count: int, flush_every: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(first), str(count), str(flush_every)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")
def test_kill_9_mid_write_keeps_the_file_sound_and_every_flushed_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    proc = writer(path, 0, 10**9, 500)
    assert proc.stdout is not None
    acknowledged = 0
    try:
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 5000:
                break
        timer.cancel()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
        proc.stdout.close()
    assert acknowledged >= 5000
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    with Cache(path) as cache:
        found = cache.lookup([k(i) for i in range(acknowledged)])
    assert len(found) == acknowledged


def test_two_processes_writing_one_file_both_finish(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    procs = [writer(path, 0, 3000, 250), writer(path, 2000, 3000, 250)]
    for proc in procs:
        out, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0
        assert out.split()[-1] in {"3000", "5000"}
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    with Cache(path) as cache:
        assert len(cache.lookup([k(i) for i in range(5000)])) == 5000
        assert cache.stats().entries == 5000


def test_finalizer_commits_a_cache_never_closed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from trio_dag._cache import Cache, CacheEntry
        cache = Cache(sys.argv[1])
        cache.store([(b"k" * 32, CacheEntry(b"d" * 32, b"payload"))])
        """
    )
    path = tmp_path / "c.db"
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, timeout=TIMEOUT, check=True)
    # The entry: the key's last 24 bytes, the digest, the payload.
    assert sql(path, "SELECT entry FROM results") == [(b"k" * 24 + b"d" * 32 + b"payload",)]


FORKED = """
import hashlib, os, sys
from trio_dag._cache import Cache, CacheEntry, CacheFileError
cache = Cache(sys.argv[1])
k = hashlib.blake2b(b"1", digest_size=32).digest()
cache.store([(k, CacheEntry(k, b"parent"))])
pid = os.fork()
if pid == 0:
    try:
        cache.store([(k, CacheEntry(k, b"child"))])
        print("child stored", flush=True)
    except CacheFileError as exc:
        print("child:", exc, flush=True)
    sys.exit(0)  # runs the finalizer: it must not wait for the parent's writer
_, status = os.waitpid(pid, 0)
cache.flush()
print("parent", os.waitstatus_to_exitcode(status), cache.lookup([k])[k].payload.decode())
cache.close()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_neither_hangs_at_exit_nor_disturbs_the_parents_writer(
    tmp_path: Path, writer_kind: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path / "c.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    child, parent = result.stdout.splitlines()
    assert parent == "parent 0 parent"
    if writer_kind == "c-writer":  # its thread stayed in the parent: the child is told
        assert "forked from the one that opened the Cache" in child
    else:  # the Python writer takes the child's entries and never writes them
        assert child == "child stored"


def test_a_snapshot_answers_lookups_and_sees_what_this_cache_stores_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_dag._native import _keyhash_py

    monkeypatch.setattr(trio_dag._cache, "_SNAPSHOT_MIN", 2)
    matchers: list[object] = [_keyhash_py.snapshot_found]
    try:
        from trio_dag._native import _keyhash

        matchers.append(_keyhash.snapshot_found)
    except ImportError:
        pass
    for n, match in enumerate(matchers):
        path = tmp_path / f"c{n}.db"
        with Cache(path) as cache:
            cache.store([(k(i), entry(i)) for i in range(4)])
        sql(path, "UPDATE results SET used = used - 7200 WHERE id = ?", row_id(k(0)))
        with Cache(path) as cache, Cache(path) as other:
            assert cache._snapshot(1, match) is None  # too few keys asked
            snap = cache._snapshot(4, match)
            assert snap is not None
            cache._release(snap)
            snap = cache._snapshot(4, match)
            assert snap is not None
            pairs = cache._lookup_pairs([k(i) for i in range(6)], snap)
            assert pairs == {k(i): (entry(i).digest, entry(i).payload) for i in range(4)}
            cache.store([(k(4), entry(4))])  # after the snapshot: pending, then committed
            other.store([(k(5), entry(5))])  # another connection's, after it: not seen
            other.flush()
            assert set(cache._lookup_pairs([k(4), k(5)], snap)) == {k(4)}
            cache.flush()
            assert set(cache._lookup_pairs([k(4), k(5)], snap)) == {k(4)}
            assert set(cache._lookup_pairs([k(5)])) == {k(5)}  # no snapshot: the file
            cache._release(snap)
            assert cache.stats().hits == 4 + 2 + 1
            # The stale row's hit marked it used.
            assert sql(path, "SELECT count(*) FROM results WHERE used < ?", time.time() - 3600) == [
                (0,)
            ]


def test_a_snapshot_is_not_taken_of_a_large_file_or_many_more_rows_than_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_dag._native._keyhash_py import snapshot_found as match

    monkeypatch.setattr(trio_dag._cache, "_SNAPSHOT_MIN", 2)
    path = tmp_path / "c.db"
    with Cache(path) as cache:
        cache.store([(k(i), entry(i)) for i in range(40)])
    with Cache(path) as cache:
        assert cache._snapshot(9, match) is None  # 40 rows: more than 4 times 9
        monkeypatch.setattr(trio_dag._cache, "_SNAPSHOT_BYTES", 100)
        assert cache._snapshot(40, match) is None
        monkeypatch.setattr(trio_dag._cache, "_SNAPSHOT_BYTES", 1 << 30)
        assert cache._snapshot(10, match) is not None

"""Cached tasks in runs (#17): hits and misses, what reruns, early cutoff, CACHED
under skip and fail_fast, batched cached tasks, ``cache=`` functions, tasks that
cannot be cached, the testing toolkit on cached runs, a property over drawn DAGs,
and the SQLite cache across a kill -9 and two processes at once.

Every test that runs the engine takes ``dag_core`` (both cores) and runs on
Trio's MockClock (``autojump_clock``), bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_dag
from trio_dag import MemoryCache, NoEffectWarning, TaskState
from trio_dag._bodies import ASYNC, kind_of
from trio_dag._keys import output_digest
from trio_dag.events import TaskNotCached, TaskStarted
from trio_dag.testing import Recorder, _plans, check_run

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # seconds any subprocess or wait may take


class Store:
    """A MemoryCache that counts its calls: a CacheStore of the test's own, with flush."""

    def __init__(self) -> None:
        self.entries: dict[bytes, trio_dag.CacheEntry] = {}
        self.lookups: list[list[bytes]] = []
        self.stores = 0
        self.flushes = 0

    def lookup(self, keys: Any) -> dict[bytes, trio_dag.CacheEntry]:
        self.lookups.append(list(keys))
        return {k: self.entries[k] for k in keys if k in self.entries}

    def store(self, entries: Any) -> None:
        self.stores += 1
        self.entries.update(entries)

    def flush(self) -> None:
        self.flushes += 1


async def run(dag: trio_dag.DAG, cache: Any, **options: Any) -> tuple[trio_dag.RunReport, Recorder]:
    """Run *dag* with events, check it with check_run, return the report and events."""
    recorder = Recorder()
    options.setdefault("check", False)
    with trio.fail_after(1000):
        report = await trio_dag.run(dag, cache=cache, on_event=recorder, **options)
    check_run(dag, report, recorder, **options)
    check_run(dag, report, **options)  # the report alone, too
    return report, recorder


class DAG(trio_dag.DAG):
    """A DAG whose sync tasks run inline: a thread would let the MockClock jump."""

    def add(self, fn: Any, /, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        if kind_of(fn) != ASYNC and not isinstance(fn, trio_dag.Batched):
            options.setdefault("run_in", "inline")
        return super().add(fn, *args, **options)


def counted(fn: Callable[..., Any], calls: list[Any]) -> Callable[..., Any]:
    def body(*args: Any) -> Any:
        calls.append(args)
        return fn(*args)

    return body


def double(x: int) -> int:
    return 2 * x


def add(x: int, y: int) -> int:
    return x + y


SLOW_CALLS: list[int] = []


async def slow_plus_one(x: int) -> int:
    # A closure's values are part of its key: what it counts with is a global.
    SLOW_CALLS.append(x)
    await trio.sleep(1)
    return x + 1


# -- hits and misses -----------------------------------------------------------


async def test_a_rerun_with_the_same_cache_runs_nothing(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    calls = SLOW_CALLS
    calls.clear()

    def make() -> tuple[DAG, list[trio_dag.Handle[Any]]]:
        dag = DAG()
        a = dag.add(double, 1, cache=True)
        b = dag.add(double, 2, cache=True)
        c = dag.add(add, a, b, cache=True)

        d = dag.add(slow_plus_one, c, cache=True)
        return dag, [a, b, c, d]

    cache = Store()
    dag, handles = make()
    first, _ = await run(dag, cache)
    assert first.ok and first.cached == [] and first.stats.cached == 0
    assert [first[h] for h in handles] == [2, 4, 6, 7]
    assert calls == [6]
    assert cache.flushes == 1 and len(cache.entries) == 4
    assert "CACHED" not in first.summary()

    dag, handles = make()
    second, events = await run(dag, cache)
    assert calls == [6]  # nothing ran
    assert second.ok
    assert second.cached == handles and second.succeeded == []
    assert [second[h] for h in handles] == [2, 4, 6, 7]
    assert [second.state(h) for h in handles] == [TaskState.CACHED] * 4
    assert second.stats.cached == 4
    assert "  CACHED            4" in second.summary()
    assert not any(type(e) is TaskStarted for e in events.events)
    finished = events.finished()
    assert [e.state for e in finished] == [TaskState.CACHED] * 4
    assert all(e.duration == 0.0 and e.outcome.unwrap() == second[e.task] for e in finished)
    assert second.timing(handles[3]) == trio_dag.TaskTiming(None, None, 0)
    assert second.outcome(handles[3]).unwrap() == 7
    # Lookups are batched: the roots in one call (the chain then one per wave).
    assert [len(keys) for keys in cache.lookups[-3:]] == [2, 1, 1]
    assert cache.flushes == 2


async def test_the_trace_marks_cached_tasks(
    dag_core: Any, autojump_clock: MockClock, tmp_path: Path
) -> None:
    import json

    cache = MemoryCache()
    for _ in range(2):
        dag = DAG()
        a = dag.add(double, 1, cache=True, name="a")
        dag.add(double, a, name="b")
        report, _ = await run(dag, cache)
    report.to_chrome_trace(tmp_path / "t.json")
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    cached = [e for e in events if e.get("cat") == "cached"]
    assert [(e["name"], e["ph"]) for e in cached] == [("a", "i")]
    assert [e["name"] for e in events if e.get("ph") == "X"] == ["b"]


async def test_a_changed_literal_reruns_the_task_and_its_dependents(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    cache = MemoryCache()
    calls: list[Any] = []

    def make(x: int) -> trio_dag.DAG:
        dag = DAG()
        a = dag.add(counted(double, calls), x, cache=True, name="a")
        b = dag.add(counted(double, calls), 5, cache=True, name="b")
        dag.add(counted(add, calls), a, b, cache=True, name="c")
        return dag

    await run(make(1), cache)
    calls.clear()
    report, _ = await run(make(2), cache)
    assert calls == [(2,), (4, 10)]  # a, then c: b is cached
    assert [h.name for h in report.cached] == ["b"]
    calls.clear()
    report, _ = await run(make(1), cache)  # back to the first: all stored
    assert calls == []
    assert len(report.cached) == 3


async def test_a_changed_function_or_version_reruns_the_task(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    cache = MemoryCache()
    source = "def step(x):\n    return x {} 1\n"
    one: dict[str, Any] = {}
    other: dict[str, Any] = {}
    exec(source.format("+"), one)
    exec(source.format("-"), other)

    def make(fn: Any, version: str | None) -> trio_dag.DAG:
        dag = DAG()
        a = dag.add(fn, 10, cache=True, version=version, name="a")
        dag.add(double, a, cache=True, name="b")
        return dag

    report, _ = await run(make(one["step"], None), cache)
    assert report["b"] == 22
    report, _ = await run(make(other["step"], None), cache)  # the body changed
    assert report.cached == [] and report["b"] == 18
    report, _ = await run(make(one["step"], None), cache)
    assert len(report.cached) == 2
    report, _ = await run(make(one["step"], "2"), cache)  # the version changed
    assert report.state("a") is TaskState.SUCCEEDED
    # Same output as before: its dependent stays cached (early cutoff).
    assert report.state("b") is TaskState.CACHED


async def test_an_upstream_rerun_with_the_same_output_keeps_dependents_cached(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    cache = MemoryCache()
    calls: list[Any] = []
    stamp = [1]

    def read(path: str) -> str:
        calls.append(("read", path))
        return "contents"

    def make() -> trio_dag.DAG:
        dag = DAG()
        # The file's "mtime" is extra key material: a change reruns the read.
        text = dag.add(read, "f.txt", cache=lambda path: stamp[0], name="read")
        words = dag.add(counted(str.split, calls), text, cache=True, name="split")
        dag.add(counted(len, calls), words, cache=True, name="count")
        return dag

    await run(make(), cache)
    calls.clear()
    stamp[0] = 2  # touched, not changed
    report, _ = await run(make(), cache)
    assert calls == [("read", "f.txt")]
    assert report.state("read") is TaskState.SUCCEEDED
    assert [h.name for h in report.cached] == ["split", "count"]
    assert report["count"] == 1


async def test_the_cache_function_gets_the_resolved_arguments(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    seen: list[Any] = []

    def extra(*args: Any, **kwargs: Any) -> int:
        seen.append((args, kwargs))
        return 0

    dag = DAG()
    a = dag.add(double, 3)
    dag.add(lambda x, y, z=0: x + y + z, a, 1, kwargs={"z": [a]}, cache=extra)
    await run(dag, MemoryCache())
    assert seen == [((6, 1), {"z": [6]})]


# -- states, policies and limits -----------------------------------------------


def fail() -> None:
    raise ValueError("boom")


async def test_cached_tasks_under_skip(dag_core: Any, autojump_clock: MockClock) -> None:
    cache = MemoryCache()

    def make(broken: bool) -> trio_dag.DAG:
        dag = DAG()
        a = dag.add(double, 1, cache=True, name="a")
        bad = dag.add(fail if broken else double, 2, name="bad")
        dag.add(add, a, bad, cache=True, name="c")  # SKIPPED: bad failed
        dag.add(double, a, cache=True, name="d")  # CACHED: a did
        dag.add(lambda *o: len(o), a, bad, trigger="all_done", cache=True, name="teardown")
        return dag

    await run(make(False), cache)
    report, events = await run(make(True), cache)
    states = {h.name: report.state(h) for h in report}
    assert states == {
        "a": TaskState.CACHED,
        "bad": TaskState.FAILED,
        "c": TaskState.SKIPPED,
        "d": TaskState.CACHED,
        "teardown": TaskState.SUCCEEDED,  # a dependency failed: no key, it runs
    }
    assert [e.task.name for e in events.events if type(e) is TaskNotCached] == ["teardown"]
    assert not report.ok


async def test_cached_tasks_under_fail_fast(dag_core: Any, autojump_clock: MockClock) -> None:
    cache = MemoryCache()

    async def slow(x: int) -> int:
        await trio.sleep(5)
        return x

    async def failing_later() -> None:
        await trio.sleep(1)
        raise ValueError("boom")

    def make(broken: bool) -> trio_dag.DAG:
        dag = DAG()
        a = dag.add(double, 1, cache=True, name="a")
        dag.add(failing_later if broken else (lambda: None), name="bad")
        s = dag.add(slow, a, name="slow")
        dag.add(double, s, cache=True, name="after-slow")
        dag.add(double, a, cache=True, name="d")
        dag.add(lambda *o: "cleaned", a, s, trigger="all_done", name="teardown")
        return dag

    await run(make(False), cache, on_failure="fail_fast")
    report, _ = await run(make(True), cache, on_failure="fail_fast")
    states = {h.name: report.state(h) for h in report}
    assert states == {
        "a": TaskState.CACHED,
        "bad": TaskState.FAILED,
        "slow": TaskState.CANCELLED,
        "after-slow": TaskState.CANCELLED,
        "d": TaskState.CACHED,
        "teardown": TaskState.SUCCEEDED,
    }


async def test_a_cancelled_run_cancels_tasks_not_looked_up(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    cache = MemoryCache()

    def make() -> trio_dag.DAG:
        dag = DAG()
        a = dag.add(trio.sleep, 1, name="a")
        dag.add(double, a, cache=True, name="b")
        return dag

    await run(make(), cache)  # b's key: the output of a, None
    dag = make()
    async with trio_dag.open_run(dag, cache=cache, check=False) as handle:
        async for event in handle.events():
            if type(event) is TaskStarted:
                handle.cancel()
    report = handle.report
    assert report.state("a") is TaskState.CANCELLED
    assert report.state("b") is TaskState.CANCELLED
    check_run(dag, report, cancelled=True)


@pytest.mark.parametrize("policy", ["fifo", "lifo", "priority", "critical_path"])
async def test_with_limit_1_the_tasks_that_run_start_in_policy_order(
    dag_core: Any, autojump_clock: MockClock, policy: str
) -> None:
    cache = MemoryCache()

    async def nap(*args: Any) -> int:
        await trio.sleep(1)
        return len(args)

    def make(salt: int) -> trio_dag.DAG:
        dag = DAG()

        def priority(i: int) -> dict[str, int]:
            return {"priority": i} if policy == "priority" else {}

        roots = [
            dag.add(nap, i % 3, salt if i % 2 else 0, cache=True, cost=i + 1, **priority(i % 4))
            for i in range(8)
        ]
        mids = [dag.add(nap, roots[i], roots[-1 - i], cache=True, **priority(i)) for i in range(8)]
        dag.add(nap, *mids, cache=True)
        return dag

    await run(make(0), cache, limit=1, policy=policy)
    report, _ = await run(make(1), cache, limit=1, policy=policy)
    assert report.cached and report.succeeded


async def test_a_hit_takes_no_resource(dag_core: Any, autojump_clock: MockClock) -> None:
    cache = MemoryCache()

    async def use(x: int) -> int:
        await trio.sleep(1)
        return x

    def make() -> trio_dag.DAG:
        dag = DAG()
        for i in range(4):
            dag.add(use, i, uses={"gpu": 1}, cache=True)
        return dag

    await run(make(), cache, resources={"gpu": 1})
    start = trio.current_time()
    report, _ = await run(make(), cache, resources={"gpu": 1})
    assert len(report.cached) == 4
    assert trio.current_time() == start


class Stop(BaseException):
    pass


async def test_what_finished_before_a_base_exception_is_stored(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    cache = Store()

    async def stop(x: int) -> None:
        await trio.sleep(1)
        raise Stop

    dag = DAG()
    a = dag.add(double, 1, cache=True, name="a")
    dag.add(stop, a, name="stop")
    with pytest.raises(Stop), trio.fail_after(100):
        await trio_dag.run(dag, cache=cache)
    assert len(cache.entries) == 1 and cache.flushes == 1
    dag = DAG()
    dag.add(double, 1, cache=True, name="a")
    report, _ = await run(dag, cache)
    assert report.state("a") is TaskState.CACHED


async def test_hits_among_tasks_waiting_for_a_resource_leave_it_to_the_others(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def use(i: int, *deps: Any) -> int:
        await trio.sleep(1)
        return i

    def make(salt: int) -> trio_dag.DAG:
        dag = DAG()
        roots = [dag.add(use, i, uses={"gpu": 1}, cache=True) for i in range(6)]
        for i in range(6):
            # Odd ones change on the second run: they run, the even ones hit.
            dag.add(use, i + (salt if i % 2 else 0), roots[i], uses={"gpu": 2}, cache=True)
        return dag

    for strategy in ("immediate", "waves"):
        cache = MemoryCache()
        await run(make(0), cache, resources={"gpu": 2}, strategy=strategy)
        report, _ = await run(make(1), cache, resources={"gpu": 2}, strategy=strategy)
        assert report.ok and len(report.cached) == 9


# -- batched cached tasks --------------------------------------------------------


async def test_a_batch_is_made_of_the_tasks_that_missed(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    calls: list[list[int]] = []

    @trio_dag.batched(max_size=10)
    async def embed(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [i * 10 for i in items]

    cache = MemoryCache()

    def make(items: list[int]) -> trio_dag.DAG:
        dag = DAG()
        dag.map(embed, items, cache=True)
        return dag

    report, _ = await run(make([1, 2, 3]), cache)
    assert calls == [[1, 2, 3]]
    report, _ = await run(make([1, 2, 3, 4, 5]), cache)
    assert calls == [[1, 2, 3], [4, 5]]
    assert [report[h] for h in report] == [10, 20, 30, 40, 50]
    assert len(report.cached) == 3
    assert [report.batch(h) for h in report.cached] == [None] * 3


# -- what cannot be cached ---------------------------------------------------------


async def test_an_uncacheable_argument_runs_the_task_uncached(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    cache = Store()
    lock = threading.Lock()
    calls: list[Any] = []
    for _ in range(2):
        dag = DAG()
        a = dag.add(counted(lambda lk: 1, calls), lock, cache=True, name="a")
        dag.add(double, a, cache=True, name="b")
        report, events = await run(dag, cache)
        assert report.state("a") is TaskState.SUCCEEDED
        not_cached = [e for e in events.events if type(e) is TaskNotCached]
        assert [e.task.name for e in not_cached] == ["a"]
        assert "lock" in not_cached[0].reason
        assert isinstance(events.events[0], TaskNotCached)  # told before anything starts
    assert len(calls) == 2
    assert report.state("b") is TaskState.CACHED  # its own key does not need a's arguments


async def test_an_unpicklable_output_is_not_stored(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    cache = MemoryCache()
    calls: list[Any] = []
    for _ in range(2):
        dag = DAG()
        a = dag.add(counted(lambda: threading.Lock(), calls), cache=True, name="a")
        dag.add(lambda lk: 1, a, cache=True, name="b")
        report, events = await run(dag, cache)
        assert report.ok and report.cached == []
        told = [(e.task.name, type(e).__name__) for e in events.events if e.task.name == "a"]
        assert told[-2:] == [("a", "TaskNotCached"), ("a", "TaskFinished")]
        assert [e.task.name for e in events.events if type(e) is TaskNotCached] == ["a", "b"]
    assert len(calls) == 2
    assert cache.entries == {}


async def test_a_cache_function_that_raises_runs_the_task_uncached(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    def stat(path: str) -> float:
        raise FileNotFoundError(path)

    dag = DAG()
    dag.add(len, "abc", cache=stat, name="a")
    report, events = await run(dag, MemoryCache())
    assert report["a"] == 3
    (told,) = [e for e in events.events if type(e) is TaskNotCached]
    assert "FileNotFoundError" in told.reason


async def test_a_run_without_listeners_caches_through_the_fast_loop(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    # No listener, no limit: the fast loop runs the tasks, hands back each
    # cached one for its lookup and tells the cache what the misses returned.
    calls: list[int] = []

    async def quick(x: int, *deps: int) -> int:
        calls.append(x)
        return x + sum(deps)

    async def slow(x: int, *deps: int) -> int:
        calls.append(x)
        await trio.sleep(1)
        return x + sum(deps)

    def make() -> DAG:
        dag = DAG()
        a = dag.add(quick, 1, cache=True, name="a")
        b = dag.add(slow, 2, a, cache=True, name="b")
        c = dag.add(quick, 3, a, b, name="c")  # not cached, between cached ones
        d = dag.add(quick, 4, c, cache=True, name="d")
        dag.add(slow, 5, d, name="e")
        dag.add(quick, 6, d, cache=True, name="f")
        return dag

    cache = Store()
    with trio.fail_after(100):
        first = await trio_dag.run(make(), cache=cache)
    assert first.ok and first.cached == [] and sorted(calls) == [1, 2, 3, 4, 5, 6]
    assert len(cache.entries) == 4 and cache.flushes == 1
    calls.clear()
    dag = make()
    with trio.fail_after(100):
        second = await trio_dag.run(dag, cache=cache)
    check_run(dag, second)
    assert [h.name for h in second.cached] == ["a", "b", "d", "f"]
    assert sorted(calls) == [3, 5]  # c reran with the same output: d and f stay cached
    assert [second[n] for n in "abcdef"] == [first[n] for n in "abcdef"] == [1, 3, 7, 11, 16, 17]


# -- a store that raises --------------------------------------------------------------


class Broken(Store):
    """A Store whose methods named in *failing* raise OSError (or *error*)."""

    def __init__(self, *failing: str, error: BaseException | None = None) -> None:
        super().__init__()
        self.failing = set(failing)
        self.error = error

    def _fail(self, method: str) -> None:
        if method in self.failing:
            raise self.error or OSError(f"the disk is gone ({method})")

    def lookup(self, keys: Any) -> dict[bytes, trio_dag.CacheEntry]:
        self._fail("lookup")
        return super().lookup(keys)

    def store(self, entries: Any) -> None:
        self._fail("store")
        super().store(entries)

    def flush(self) -> None:
        self._fail("flush")
        super().flush()


def _store_error_dag() -> tuple[DAG, list[int]]:
    calls: list[int] = []
    dag = DAG()
    a = dag.add(counted(double, calls), 1, cache=True, name="a")
    b = dag.add(counted(double, calls), 2, name="b")
    dag.add(counted(add, calls), a, b, cache=True, name="c")
    return dag, calls


@pytest.mark.parametrize("method", ["lookup", "store", "flush"])
async def test_a_store_that_raises_never_fails_the_run(
    dag_core: Any, autojump_clock: MockClock, method: str
) -> None:
    cache = Broken(method)
    dag, calls = _store_error_dag()
    report, events = await run(dag, cache)
    assert report.ok and report.cached == [] and len(calls) == 3
    assert report["c"] == 6
    told = {e.task.name: e.reason for e in events.events if type(e) is TaskNotCached}
    assert sorted(told) == ["a", "c"]  # b did not ask for the cache
    for reason in told.values():
        assert f"the cache's {method} raised OSError" in reason and "disk is gone" in reason
    if method == "lookup":
        assert cache.entries == {}  # a task that was not looked up is not stored either
    else:
        # Told once its result was not kept: after its TaskFinished.
        names = [(e.task.name, type(e).__name__) for e in events.events]
        assert names.index(("a", "TaskNotCached")) > names.index(("a", "TaskFinished"))
    # Without listeners too; a store that works again caches the next run.
    report = await trio_dag.run(dag, cache=cache)
    # (This store kept what it took before its flush failed: those are hits.)
    assert report.ok and len(calls) == (4 if method == "flush" else 6)
    cache.failing.clear()
    await trio_dag.run(dag, cache=cache)
    report = await trio_dag.run(dag, cache=cache)
    assert [h.name for h in report.cached] == ["a", "c"]


async def test_a_store_that_fails_mid_run_tells_the_rest_unstored(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    class Once(Store):
        def store(self, entries: Any) -> None:
            if self.stores:
                raise ValueError("full")
            super().store(entries)

    async def step(x: int) -> int:
        await trio.sleep(1)  # a wait between tasks: each store call takes one entry
        return x

    cache = Once()
    dag = DAG()
    h = dag.add(step, 0, cache=True, name="t0")
    for i in range(1, 4):
        h = dag.add(step, h, cache=True, name=f"t{i}")
    report, events = await run(dag, cache)
    assert report.ok
    told = [(e.task.name, e.reason) for e in events.events if type(e) is TaskNotCached]
    assert [name for name, _ in told] == ["t1", "t2", "t3"]
    assert all("the cache's store raised ValueError: full" in r for _, r in told)
    assert len(cache.entries) == 1


async def test_a_base_exception_from_the_store_propagates(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    for method in ("lookup", "store", "flush"):
        dag, _ = _store_error_dag()
        with pytest.raises(Stop), trio.fail_after(100):
            await trio_dag.run(dag, cache=Broken(method, error=Stop()))


# -- options, checks and warnings ----------------------------------------------------


def test_add_checks_cache_and_version(dag_core: Any) -> None:
    dag = trio_dag.DAG()
    with pytest.raises(TypeError, match="cache= must be"):
        dag.add(double, 1, cache=1)
    with pytest.raises(TypeError, match="version= must be"):
        dag.add(double, 1, version=2)
    with pytest.raises(TypeError, match="cache= must be"):
        dag.map(double, [1], cache="yes")

    async def mtime(x: int) -> float:
        return 0.0

    with pytest.raises(TypeError, match="not async"):
        dag.add(double, 1, cache=mtime)
    assert len(dag) == 0
    # The compiled add passes these calls on to the general one.
    h = dag.add(double, 1, cache=True, version="v")
    hs = dag.map(double, [1, 2], cache=len)
    options = dag._freeze().options
    assert options(h.index).cache is True and options(h.index).version == "v"
    assert all(options(x.index).cache is len for x in hs)
    assert options(dag.add(double, 1).index) == trio_dag.TaskOptions()


def test_run_refuses_a_cache_without_the_protocol(dag_core: Any) -> None:
    ran: list[int] = []
    dag = trio_dag.DAG()
    dag.add(counted(double, ran), 1, cache=True)
    with pytest.raises(TypeError, match="CacheStore"):
        trio_dag.run_sync(dag, cache={})
    assert ran == []


def test_no_effect_warnings(dag_core: Any) -> None:
    dag = trio_dag.DAG()
    dag.add(double, 1, cache=True, name="cached")
    with pytest.warns(NoEffectWarning, match="task 'cached' sets cache=, but the run has no"):
        trio_dag.run_sync(dag)
    plain = trio_dag.DAG()
    plain.add(double, 1)
    with pytest.warns(NoEffectWarning, match="no task of the run asks for it"):
        trio_dag.run_sync(plain, cache=MemoryCache())
    trio_dag.run_sync(dag, cache=MemoryCache())  # no warning (filterwarnings=error)


def test_a_closed_cache_fails_the_run_before_anything_runs(dag_core: Any, tmp_path: Path) -> None:
    ran: list[int] = []
    dag = trio_dag.DAG()
    dag.add(counted(double, ran), 1, cache=True, run_in="inline")
    cache = trio_dag.Cache(tmp_path / "c.sqlite3")
    cache.close()
    with pytest.raises(trio_dag.CacheFileError, match="closed"):
        trio_dag.run_sync(dag, cache=cache)
    assert ran == []


def test_cache_file_errors_come_before_anything_runs(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database, not at all" * 100)
    with pytest.raises(trio_dag.CacheFileError):
        trio_dag.Cache(junk)
    newer = tmp_path / "newer.sqlite3"
    trio_dag.Cache(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE trio_dag_meta SET value = 99 WHERE name = 'schema'")
    db.close()
    with pytest.raises(trio_dag.CacheFileError, match="newer"):
        trio_dag.Cache(newer)
    assert issubclass(trio_dag.CacheFileError, trio_dag.TrioDagError)


# -- a property over drawn DAGs ---------------------------------------------------------


RESOURCES = {"gpu": 2, "io": 1.5}


class _CachedDAG(trio_dag.DAG):
    """A DAG whose every task asks for the cache, each under a version of its own
    name (the drawn bodies are callable objects, whose state no key sees)."""

    def add(self, fn: Any, /, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        return super().add(fn, *args, cache=True, version=options.get("name"), **options)


def _names_of(entries: dict[bytes, trio_dag.CacheEntry]) -> dict[str, bytes]:
    """The key of each task whose output is its name (every unbatched drawn task)."""
    from trio_dag._keys import decode_output

    out = {}
    for key, entry in entries.items():
        value = decode_output(entry.payload)
        if isinstance(value, str):
            out[value] = key
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.one_of(
        trio_dag.testing.dag_plans(min_tasks=1, max_tasks=12, batched=True, run_in=("async",)),
        trio_dag.testing.dag_plans(
            min_tasks=1, max_tasks=12, run_in=("async",), resources=RESOURCES, priorities=True
        ),
    ),
    keep=st.lists(st.booleans(), min_size=12, max_size=12),
    limit=st.sampled_from([None, 1, 3]),
    on_failure=st.sampled_from(["skip", "fail_fast"]),
    policy=st.sampled_from(["fifo", "priority"]),
)
def test_a_cache_holding_some_entries_caches_exactly_those_tasks(
    dag_core: Any,
    monkeypatch: pytest.MonkeyPatch,
    plan: Any,
    keep: list[bool],
    limit: Any,
    on_failure: str,
    policy: str,
) -> None:
    monkeypatch.setattr(_plans, "DAG", _CachedDAG)
    full = MemoryCache()

    resources = RESOURCES if any(t.uses for t in plan.tasks) else None
    options = dict(limit=limit, on_failure=on_failure, resources=resources, policy=policy)
    if policy == "priority" or not any(t.priority for t in plan.tasks):
        pass
    else:
        options["policy"] = "priority"  # the plan sets priorities: no NoEffectWarning

    async def go(dag: trio_dag.DAG, cache: Any) -> tuple[trio_dag.RunReport, Recorder]:
        recorder = Recorder()
        with trio.fail_after(10_000):
            report = await trio_dag.run(dag, cache=cache, check=False, on_event=recorder, **options)
        check_run(dag, report, recorder, **options)
        return report, recorder

    first, _ = trio.run(go, plan.build(), full, clock=MockClock(autojump_threshold=0))
    kept = MemoryCache()
    for k, key in enumerate(sorted(full.entries)):
        if keep[k % len(keep)]:
            kept.entries[key] = full.entries[key]
    held = set(kept.entries)  # the run adds what it stores
    dag = plan.build()
    second, _ = trio.run(go, dag, kept, clock=MockClock(autojump_threshold=0))
    keys = _names_of(full.entries)
    ok = {TaskState.SUCCEEDED, TaskState.CACHED}
    for h in second:
        state = second.state(h)
        if state is TaskState.CACHED:
            assert second[h] == first[h.name]
        # A parent that ran again may give another output (a batched task's
        # output tells its call), and then its dependents' keys differ: early
        # cutoff holds only for parents whose output pickles the same. An
        # equal output may not: a batched task's output holding a cached
        # parent's name is a copy where the first run shared one string.
        parents_ok = all(
            second.state(p) in ok
            and first.state(p.name) in ok
            and output_digest(second[p]) == output_digest(first[p.name])
            for p in dag.dependencies(h)
        )
        # Under fail_fast a failure may cancel a task before it is looked up.
        if keys.get(h.name) in held and parents_ok and state is not TaskState.CANCELLED:
            assert state is TaskState.CACHED, h
    assert len(second.cached) <= len(held)


# -- the SQLite cache: kill -9, two processes ---------------------------------------------

PIPELINE = """
import sys, time, trio, trio_dag

path, marker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def step(i, previous):
    await trio.sleep(0.02)
    with open(marker, "a") as f:
        f.write(f"{i} {time.time()}\\n")
    return i

dag = trio_dag.DAG()
previous = None
for i in range(count):
    previous = dag.add(step, i, previous, cache=True)
with trio_dag.Cache(path) as cache:
    report = trio_dag.run_sync(dag, cache=cache, limit=1)
print(len(report.cached), len(report.succeeded), flush=True)
"""


def pipeline(path: Path, marker: Path, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PIPELINE, str(path), str(marker), str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def finished(marker: Path) -> list[tuple[int, float]]:
    if not marker.exists():
        return []
    rows = []
    for line in marker.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((int(parts[0]), float(parts[1])))
    return rows


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")
def test_kill_9_mid_run_then_a_rerun_redoes_only_the_last_commit_window(tmp_path: Path) -> None:
    path, marker = tmp_path / "c.sqlite3", tmp_path / "marker"
    proc = pipeline(path, marker, 10_000)
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(finished(marker)) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.time()
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()
    before = finished(marker)
    assert len(before) >= 100
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
    # Tasks that finished well before the kill (the commit window is 100 ms) are committed.
    committed = {i for i, at in before if at < killed_at - 0.5}
    assert committed
    marker.unlink()
    count = max(i for i, _ in before) + 1
    rerun = pipeline(path, marker, count)
    out, _ = rerun.communicate(timeout=TIMEOUT)
    assert rerun.returncode == 0
    again = {i for i, _ in finished(marker)}
    assert not committed & again
    cached, ran = map(int, out.split())
    assert cached + ran == count and cached >= len(committed)


def test_two_processes_on_one_cache_file_both_finish(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    procs = [pipeline(path, tmp_path / f"marker{k}", 30) for k in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0
        cached, ran = map(int, out.split())
        assert cached + ran == 30
    third = pipeline(path, tmp_path / "marker3", 30)
    out, _ = third.communicate(timeout=TIMEOUT)
    assert third.returncode == 0
    assert out.split() == ["30", "0"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()


# -- the SQLite cache's snapshot: a run asking for many keys reads the table once --


async def test_a_run_asking_for_much_of_the_file_reads_it_once(
    dag_core: Any, autojump_clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trio_dag._cache

    monkeypatch.setattr(trio_dag._cache, "_SNAPSHOT_MIN", 2)
    taken: list[Any] = []
    snapshot = trio_dag._cache.Cache._snapshot

    def spy(self: Any, asked: int, match: Any) -> Any:
        taken.append(snapshot(self, asked, match))
        return taken[-1]

    monkeypatch.setattr(trio_dag._cache.Cache, "_snapshot", spy)
    calls: list[Any] = []

    def make(extra: bool) -> trio_dag.DAG:
        dag = DAG()
        hs = [dag.add(counted(double, calls), i, cache=True, name=f"t{i}") for i in range(6)]
        dag.add(counted(add, calls), hs[0], hs[1], cache=True, name="s")
        if extra:  # a new task: missed, run, stored after the snapshot
            dag.add(counted(add, calls), hs[2], hs[3], cache=True, name="new")
        return dag

    path = tmp_path / "c.sqlite3"
    with trio_dag.Cache(path) as cache:
        await run(make(False), cache)  # an empty file: every lookup answered from memory
    assert taken == [None] and len(calls) == 7
    sqlite3.connect(path).execute("UPDATE results SET used = used - 7200").connection.commit()
    calls.clear()
    with trio_dag.Cache(path) as cache:
        report, _ = await run(make(True), cache)
        assert taken[-1] is not None and not cache._snapshots  # taken, then released
        assert len(report.cached) == 7
        assert calls == [(4, 6)]
        calls.clear()
        report, _ = await run(make(True), cache)  # the new task's entry, stored after it
        assert len(report.cached) == 8 and calls == []
        assert len(taken) == 3 and taken[-1] is not None
        stats = cache.stats()
        assert (stats.hits, stats.misses) == (15, 1)
    # Every hit of a row last used over an hour ago marked it used now.
    db = sqlite3.connect(path)
    try:
        cut = time.time() - 3600
        (old,) = db.execute("SELECT count(*) FROM results WHERE used < ?", (cut,)).fetchone()
    finally:
        db.close()
    assert old == 0

"""Three programs users write, end to end, with no workaround (issue #14).

- A fetch pipeline: fetchers race two mirrors in a nursery of their own, some
  time out or fail now and then and are retried; pages are parsed inline and
  aggregated, and an ``all_done`` summary reports what could not be fetched.
  MockClock.
- A build pipeline of real processes (``trio.run_process`` of short Python
  programs) under ``on_failure="fail_fast"``: a failing job (nonzero exit,
  ``CalledProcessError``) stops the rest, a long job is killed, the
  ``all_done`` teardown still runs, and no process is left running. Real
  clock, bounded.
- A batched model pipeline: documents are chunked, chunks embedded by a
  ``@batched(max_size=8, max_delay=0.01)`` fake model that one call at a time
  may use (``uses={"model": 1}``), and stored; results stream in through
  ``open_run`` events as they are stored. MockClock.

Each runs on both backends (``dag_core``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import outcome
import pytest
import trio
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import TaskFinished

# -- a fetch pipeline with retries and timeouts ------------------------------------------

# Seconds each mirror takes to answer, per attempt; None: it never answers.
LATENCY: dict[str, list[tuple[float | None, float | None]]] = {
    "a": [(0.5, 0.8)],  # the first mirror wins
    "b": [(None, None), (0.7, None)],  # times out once, then the first mirror answers
    "c": [(None, 1.2)],  # the second mirror wins
    "d": [(None, None), (None, None), (None, None)],  # never answers: fails for good
    "e": [(0.3, 0.3)],  # a tie: either mirror's page will do
}
FLAKY = {"c"}  # the first attempt gets a connection reset after answering


async def mirror(url: str, k: int, seconds: float | None, pages: list[str]) -> None:
    if seconds is None:
        await trio.sleep_forever()
    await trio.sleep(seconds)
    pages.append(f"<html>{url} from mirror {k}</html>")


async def fetch(url: str) -> str:
    """Race the two mirrors of *url*; the first page wins and the other is cancelled."""
    attempt = trio_dag.current_task().attempt
    delays = LATENCY[url][min(attempt, len(LATENCY[url])) - 1]
    pages: list[str] = []
    async with trio.open_nursery() as nursery:

        async def one(k: int, seconds: float | None) -> None:
            await mirror(url, k, seconds, pages)
            nursery.cancel_scope.cancel()

        for k, seconds in enumerate(delays):
            nursery.start_soon(one, k, seconds)
    if url in FLAKY and attempt == 1:
        raise ConnectionResetError(f"{url}: connection reset")
    return pages[0]


def parse(page: str) -> dict[str, str]:
    return {"title": page.removeprefix("<html>").removesuffix("</html>")}


def aggregate(parsed: list[dict[str, str]]) -> list[str]:
    return sorted(p["title"] for p in parsed)


def summarize(*results: outcome.Outcome[dict[str, str]]) -> dict[str, Any]:
    return {
        "ok": sorted(r.value["title"].split()[0] for r in results if isinstance(r, outcome.Value)),
        "failed": sum(isinstance(r, outcome.Error) for r in results),
    }


def build_fetch_pipeline() -> tuple[trio_dag.DAG, trio_dag.Handle[list[str]]]:
    dag = trio_dag.DAG()
    parsed = []
    for url in LATENCY:
        page = dag.add(
            fetch, url, name=f"fetch {url}", retries=2, retry_delay=0.5, timeout=2, tags=("io",)
        )
        parsed.append(dag.add(parse, page, name=f"parse {url}", run_in="inline"))
    dag.add(summarize, *parsed, name="summary", trigger="all_done", run_in="inline")
    total = dag.add(aggregate, parsed, name="aggregate", run_in="inline")
    return dag, total


def test_a_fetch_pipeline_with_retries_and_timeouts(dag_core: Any) -> None:
    dag, total = build_fetch_pipeline()

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(1000):
            return await trio_dag.run(dag, limit=3)

    with pytest.raises(trio_dag.RunFailedError) as info:
        trio.run(main, clock=MockClock(autojump_threshold=0))
    report = info.value.report
    assert [e.task for e in info.value.exceptions] == ["fetch d"]
    assert isinstance(report.errors["fetch d"], trio_dag.TaskTimeoutError)
    assert report.timing("fetch d").attempts == 3
    assert report.state("parse d") is TaskState.SKIPPED
    assert report.state(total) is TaskState.SKIPPED
    assert report.timing("fetch b").attempts == 2
    assert report.timing("fetch c").attempts == 2
    assert report["fetch a"] == "<html>a from mirror 0</html>"
    assert report["fetch b"] == "<html>b from mirror 0</html>"
    assert report["fetch c"] == "<html>c from mirror 1</html>"
    assert report["fetch e"] in ("<html>e from mirror 0</html>", "<html>e from mirror 1</html>")
    assert report["summary"] == {"ok": ["a", "b", "c", "e"], "failed": 1}
    assert not report.cancelled


def test_a_fetch_pipeline_streams_and_stops_when_told(dag_core: Any) -> None:
    # The same pipeline, watched through open_run and stopped by run.cancel()
    # once the summary is in: every task has ended by then, so nothing is cancelled.
    dag, total = build_fetch_pipeline()
    finished: list[str] = []

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(1000):
            async with trio_dag.open_run(dag, limit=2, check=False) as run:
                async for event in run.events():
                    if isinstance(event, TaskFinished):
                        finished.append(event.task.name)
                        if event.task.name == "summary":
                            run.cancel()
            return run.report

    report = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert sorted(finished) == sorted(h.name for h in dag)
    assert finished[-1] == "summary"
    assert report["summary"] == {"ok": ["a", "b", "c", "e"], "failed": 1}
    assert report.state(total) is TaskState.SKIPPED
    assert not report.cancelled  # everything had ended when the run was told to stop


# -- a build pipeline of real processes under fail_fast -----------------------------------


async def job(code: str, *deps: str) -> str:
    """Run a short Python program; its output is the job's result (nonzero exit raises)."""
    done = await trio.run_process(
        [sys.executable, "-c", textwrap.dedent(code)], capture_stdout=True, capture_stderr=True
    )
    return done.stdout.decode().strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_build_pipeline_of_processes_stops_at_the_first_failure(
    dag_core: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "slow.pid"
    cleaned: list[dict[str, str]] = []

    def cleanup(*jobs: outcome.Outcome[str]) -> None:
        names = ["compile-a", "compile-b", "lint", "link"]
        cleaned.append(
            {
                name: "ok" if isinstance(r, outcome.Value) else type(r.error).__name__
                for name, r in zip(names, jobs, strict=True)
            }
        )

    dag = trio_dag.DAG()
    a = dag.add(job, "print('a.o')", name="compile-a")
    b = dag.add(
        job,
        f"""
        import os, pathlib, time
        pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
        time.sleep(30)
        print('b.o')
        """,
        name="compile-b",
    )
    lint = dag.add(
        job,
        f"""
        import pathlib, sys, time
        while not pathlib.Path({str(pid_file)!r}).exists():
            time.sleep(0.01)  # fail only once the slow job runs
        sys.exit(2)
        """,
        name="lint",
        after=[a],  # so compile-a has surely ended when lint fails
    )
    link = dag.add(job, "print('app')", a, b, name="link")
    dag.add(job, "print('tests pass')", link, name="test")
    dag.add(cleanup, a, b, lint, link, name="cleanup", trigger="all_done")

    async def main() -> None:
        with trio.fail_after(20):  # the slow job alone would take 30 s
            await trio_dag.run(dag, on_failure="fail_fast", limit=4)

    with pytest.raises(trio_dag.RunFailedError) as info:
        trio.run(main)
    report = info.value.report
    [failure] = info.value.exceptions
    assert failure.task == "lint"
    assert isinstance(failure.__cause__, subprocess.CalledProcessError)
    assert failure.__cause__.returncode == 2
    states = {h.name: report.state(h) for h in dag}
    assert states == {
        "compile-a": TaskState.SUCCEEDED,
        "compile-b": TaskState.CANCELLED,
        "lint": TaskState.FAILED,
        "link": TaskState.CANCELLED,
        "test": TaskState.CANCELLED,
        "cleanup": TaskState.SUCCEEDED,
    }
    assert report["compile-a"] == "a.o"
    assert cleaned == [
        {
            "compile-a": "ok",
            "compile-b": "TaskCancelledError",
            "lint": "CalledProcessError",
            "link": "TaskCancelledError",
        }
    ]
    assert not _alive(int(pid_file.read_text())), "the slow job's process is still running"


# -- a batched model pipeline, streamed --------------------------------------------------


class FakeModel:
    """Embeds texts in batches; one call at a time, as the resource says."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.running = 0
        self.peak = 0

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(0.05)
            if len(self.calls) == 2:
                raise RuntimeError("model overloaded")  # once: its tasks retry
        finally:
            self.running -= 1
        return [[float(len(t)), float(sum(map(ord, t)) % 97)] for t in texts]


DOCS = {
    "intro": "trio runs tasks. nurseries hold them. cancel scopes stop them.",
    "dag": "a dag orders tasks. each waits for its dependencies.",
    "batch": "batches share one call. a call may fail. tasks retry alone. "
    "results stream. stores fill up. every chunk lands.",
}


async def load(name: str) -> str:
    await trio.sleep(0.01 * len(name))
    return DOCS[name]


def chunk(text: str, k: int) -> str:
    return text.split(". ")[k]


async def store(db: dict[str, list[float]], key: str, vector: list[float]) -> str:
    await trio.sleep(0.001)
    db[key] = vector
    return key


def test_a_batched_model_pipeline_streams_what_it_stores(dag_core: Any) -> None:
    model = FakeModel()
    embed = trio_dag.batched(max_size=8, max_delay=0.01)(model.embed)
    db: dict[str, list[float]] = {}
    dag = trio_dag.DAG()
    keys = []
    for name, text in DOCS.items():
        doc = dag.add(load, name, name=f"load {name}")
        for k in range(len(text.split(". "))):
            piece = dag.add(chunk, doc, k, name=f"chunk {name}/{k}", run_in="inline")
            vector = dag.add(embed, piece, name=f"embed {name}/{k}", uses={"model": 1}, retries=2)
            keys.append(f"{name}/{k}")
            dag.add(store, db, f"{name}/{k}", vector, name=f"store {name}/{k}")
    stored: list[str] = []

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(1000):
            async with trio_dag.open_run(dag, limit=8, resources={"model": 1}) as run:
                async for event in run.events():
                    if isinstance(event, TaskFinished) and event.task.name.startswith("store"):
                        assert event.state is TaskState.SUCCEEDED
                        stored.append(event.outcome.unwrap())
            return run.report

    report = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert report.ok
    assert sorted(stored) == sorted(keys)
    assert db == {
        key: [float(len(c)), float(sum(map(ord, c)) % 97)]
        for key in keys
        for c in [DOCS[key.split("/")[0]].split(". ")[int(key.split("/")[1])]]
    }
    assert model.peak == 1
    assert max(model.calls) <= 8
    assert len(model.calls) >= 1 + math.ceil(len(keys) / 8)  # one call failed
    retried = [h for h in dag if h.name.startswith("embed") and report.timing(h).attempts == 2]
    assert retried, "the tasks of the failed call were not retried"

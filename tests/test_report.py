"""The RunReport (SPEC section 4): states, outputs and errors, timings, stats,
the critical path, the summary and the Chrome trace, on schedules worked out
by hand on a MockClock.

Every test runs the engine on both cores (``dag_core``).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import attrs
import outcome
import pytest
import trio
from _engine_probe import Probe, add_nap
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState


def _hand_schedule(probe: Probe) -> trio_dag.DAG:
    """a 0-2, b 0-3, c(a) 2-6, d(b) 3-4, e(c, d) 6-7: makespan 7, path a-c-e."""
    dag = trio_dag.DAG()
    a = add_nap(dag, probe, "a", 2, tags=["io"])
    b = add_nap(dag, probe, "b", 3)
    c = add_nap(dag, probe, "c", 4, a, tags=["cpu", "big"])
    d = add_nap(dag, probe, "d", 1, b)
    add_nap(dag, probe, "e", 1, c, d)
    return dag


async def flaky(seconds: float, fails: int) -> str:
    task = trio_dag.current_task()
    await trio.sleep(seconds)
    if task.attempt <= fails:
        raise ValueError(f"attempt {task.attempt}")
    return task.name


# -- stats, timings, critical path ---------------------------------------------------


async def test_stats_of_a_hand_built_schedule(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    report = await trio_dag.run(_hand_schedule(probe))
    stats = report.stats
    assert isinstance(stats, trio_dag.RunStats)
    assert stats.tasks == 5
    assert stats.makespan == 7
    assert stats.busy == 2 + 3 + 4 + 1 + 1
    assert stats.speedup == pytest.approx(11 / 7)
    assert stats.peak_concurrency == 2
    assert stats.waves == 3
    assert stats.tasks_per_second == pytest.approx(5 / 7)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.makespan = 0  # type: ignore[misc]


async def test_timing_of_each_task(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    report = await trio_dag.run(_hand_schedule(probe))
    expected = {"a": (0, 2), "b": (0, 3), "c": (2, 6), "d": (3, 4), "e": (6, 7)}
    for name, (start, end) in expected.items():
        timing = report.timing(name)
        assert isinstance(timing, trio_dag.TaskTiming)
        assert (timing.start - probe.t0, timing.end - probe.t0) == (start, end)
        assert timing.duration == end - start
        assert timing.attempts == 1


async def test_critical_path_of_a_hand_built_schedule(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = _hand_schedule(probe)
    report = await trio_dag.run(dag)
    assert report.critical_path() == [dag["a"], dag["c"], dag["e"]]


async def test_critical_path_follows_the_dependency_that_ended_last(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    long = add_nap(dag, probe, "long", 5)
    short = add_nap(dag, probe, "short", 1)
    mid = add_nap(dag, probe, "mid", 6, short)  # 1-7: ends after long
    add_nap(dag, probe, "side", 1, long)  # 5-6
    add_nap(dag, probe, "last", 2, long, after=[mid])  # 7-9
    add_nap(dag, probe, "early", 1)
    report = await trio_dag.run(dag)
    assert [h.name for h in report.critical_path()] == ["short", "mid", "last"]
    assert report.stats.makespan == 9


async def test_critical_path_of_a_run_that_ran_nothing(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    report = await trio_dag.run(trio_dag.DAG())
    assert report.critical_path() == []
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "a", 1)
    async with trio_dag.open_run(dag) as run:
        run.cancel()
    assert run.report.critical_path() == []


async def test_busy_counts_attempts_not_retry_delays(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = trio_dag.DAG()
    h = dag.add(flaky, 1, 1, name="h", retries=1, retry_delay=2)
    report = await trio_dag.run(dag)
    timing = report.timing(h)
    assert (timing.end - timing.start, timing.duration, timing.attempts) == (4, 4, 2)
    assert report.stats.busy == 2
    assert report.stats.makespan == 4
    assert report.stats.speedup == 0.5


async def test_zero_makespan_gives_zero_rates(dag_core: Any, autojump_clock: MockClock) -> None:
    dag = trio_dag.DAG()
    for i in range(3):
        dag.add(lambda: None, name=f"t{i}", run_in="inline")
    stats = (await trio_dag.run(dag)).stats
    assert (stats.tasks, stats.makespan, stats.busy) == (3, 0, 0)
    assert stats.speedup == 0.0
    assert stats.tasks_per_second == 0.0


# -- states, outputs, errors -----------------------------------------------------------


async def test_report_states_outputs_and_errors(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    boom = KeyError("boom")
    dag = trio_dag.DAG()
    ok = add_nap(dag, probe, "ok", 1)
    bad = add_nap(dag, probe, "bad", 2, fail=boom)
    skipped = add_nap(dag, probe, "skipped", 1, bad)
    slow = add_nap(dag, probe, "slow", 9)
    teardown = add_nap(dag, probe, "teardown", 1, skipped, trigger="all_done")
    report = await trio_dag.run(dag, on_failure="fail_fast", check=False)
    assert isinstance(report, trio_dag.RunReport)
    assert not report.ok
    # SPEC 3, fail_fast: every task that had not ended ends CANCELLED, the
    # failed task's own dependents included (SKIPPED is the "skip" rule).
    assert [report.state(h) for h in dag] == [
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.SUCCEEDED,
    ]
    assert (report.succeeded, report.failed) == ([ok, teardown], [bad])
    assert (report.skipped, report.cancelled) == ([], [skipped, slow])
    assert report.errors == {"bad": boom}
    assert report[ok] == report["ok"] == "ok"
    with pytest.raises(trio_dag.TaskFailedError) as failed:
        report[bad]
    assert failed.value.task == "bad"
    assert failed.value.__cause__ is boom
    with pytest.raises(trio_dag.TaskCancelledError) as never_ran:
        report["skipped"]
    assert never_ran.value.task == "skipped"
    with pytest.raises(trio_dag.TaskCancelledError) as cancelled:
        report[slow]
    assert cancelled.value.task == "slow"
    assert report.outcome("ok") == outcome.Value("ok")
    assert report.outcome(bad).error is boom
    assert isinstance(report.outcome(skipped).error, trio_dag.TaskCancelledError)
    assert isinstance(report.outcome("slow").error, trio_dag.TaskCancelledError)
    never = report.timing("skipped")
    assert (never.start, never.end, never.attempts, never.duration) == (None, None, 0, None)
    assert report.timing("slow").end - probe.t0 == 2  # cancelled at the failure
    assert len(report) == 5
    assert list(report) == list(dag)
    assert "ok" in report and ok in report


async def test_report_ok_for_a_run_that_succeeded(dag_core: Any, autojump_clock: MockClock) -> None:
    probe = Probe()
    report = await trio_dag.run(_hand_schedule(probe))
    assert report.ok
    assert report.failed == report.skipped == report.cancelled == []
    assert report.errors == {}
    assert "5 tasks" in repr(report)


# -- summary ---------------------------------------------------------------------------


async def test_summary_shows_counts_slowest_and_failures(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = _hand_schedule(probe)
    bad = add_nap(dag, probe, "bad-task", 1, fail=ValueError("disk full\nsecond line"))
    add_nap(dag, probe, "skipped-task", 1, bad)
    report = await trio_dag.run(dag, check=False)
    text = report.summary()
    assert isinstance(text, str)
    assert "7 tasks" in text
    assert re.search(r"SUCCEEDED\s+5\b", text)
    assert re.search(r"FAILED\s+1\b", text)
    assert re.search(r"SKIPPED\s+1\b", text)
    assert re.search(r"CANCELLED\s+0\b", text)
    slowest = text[text.index("slowest") :]
    assert slowest.index("c ") < slowest.index("b ")  # c took 4 s, b 3 s
    assert "4.000" in slowest
    failures = text[text.index("failures") :]
    assert "bad-task" in failures
    assert "ValueError: disk full" in failures
    assert "second line" not in failures


class Unprintable(Exception):
    """str() and repr() both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


async def test_summary_counts_every_batched_call_retried_ones_too(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    calls: list[list[int]] = []

    @trio_dag.batched(max_size=2)
    async def model(items: list[int]) -> list[int]:
        calls.append(items)
        await trio.sleep(1)
        if len(calls) == 1:
            raise RuntimeError("model overloaded")
        return [2 * x for x in items]

    dag = trio_dag.DAG()
    dag.map(model, [1, 2, 3, 4], retries=1)
    with trio.fail_after(60):
        report = await trio_dag.run(dag, limit=1)
    assert report.ok
    assert len(calls) == 3  # [1, 2] failed and ran again; [3, 4] once
    assert "; 3 batched calls of 2.0 tasks on average" in report.summary()


async def test_report_of_an_exception_that_cannot_be_printed(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    add_nap(dag, probe, "odd", 1, fail=Unprintable())
    add_nap(dag, probe, "fine", 1)
    with pytest.raises(trio_dag.RunFailedError) as info:
        await trio_dag.run(dag)
    report = info.value.report
    assert "odd" in str(info.value.exceptions[0])
    assert isinstance(report.errors["odd"], Unprintable)
    with pytest.raises(trio_dag.TaskFailedError, match="str\\(\\) raised RuntimeError") as failed:
        report["odd"]
    assert isinstance(failed.value.__cause__, Unprintable)
    failures = report.summary()[report.summary().index("failures") :]
    assert "odd  Unprintable: <Unprintable object (str() raised RuntimeError)>" in failures
    assert report["fine"] == "fine"


# -- Chrome trace ----------------------------------------------------------------------


def _slices(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X"]


def _check_lanes(slices: list[dict[str, Any]], peak: int) -> None:
    """One lane per concurrent slot: as many lanes as the peak, none overlapping."""
    assert len({s["tid"] for s in slices}) == peak
    for s in slices:
        for t in slices:
            if s is not t and s["tid"] == t["tid"]:
                assert s["ts"] + s["dur"] <= t["ts"] or t["ts"] + t["dur"] <= s["ts"]


async def test_chrome_trace_of_a_hand_built_schedule(
    dag_core: Any, autojump_clock: MockClock, tmp_path: Path
) -> None:
    probe = Probe()
    report = await trio_dag.run(_hand_schedule(probe))
    path = tmp_path / "trace.json"
    report.to_chrome_trace(path)
    report.to_chrome_trace(str(tmp_path / "again.json"))
    buffer = io.StringIO()
    report.to_chrome_trace(buffer)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert json.loads(buffer.getvalue()) == doc
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == doc
    slices = {s["name"]: s for s in _slices(doc)}
    assert sorted(slices) == ["a", "b", "c", "d", "e"]
    assert (slices["c"]["ts"], slices["c"]["dur"]) == (2e6, 4e6)  # microseconds
    assert slices["c"]["args"]["tags"] == ["cpu", "big"]
    assert slices["a"]["args"]["state"] == "SUCCEEDED"
    _check_lanes(list(slices.values()), report.stats.peak_concurrency)
    lanes = [e for e in doc["traceEvents"] if e["ph"] == "M"]
    assert len(lanes) == 2


async def test_chrome_trace_has_one_slice_per_attempt(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    probe = Probe()
    dag = trio_dag.DAG()
    dag.add(flaky, 1, 2, name="retried", retries=2, retry_delay=1)
    add_nap(dag, probe, "may-retry", 2, retries=3)  # succeeds on its first attempt
    add_nap(dag, probe, "plain", 3)
    add_nap(dag, probe, "failed", 1, fail=OSError("x"), retries=1)
    report = await trio_dag.run(dag, check=False, limit=2)
    buffer = io.StringIO()
    report.to_chrome_trace(buffer)
    slices = _slices(json.loads(buffer.getvalue()))
    counts = {h.name: report.timing(h).attempts for h in dag}
    assert counts == {"retried": 3, "may-retry": 1, "plain": 1, "failed": 2}
    assert sorted(s["name"] for s in slices) == sorted(
        name for name, n in counts.items() for _ in range(n)
    )
    assert sorted(s["args"]["attempt"] for s in slices if s["name"] == "retried") == [1, 2, 3]
    _check_lanes(slices, report.stats.peak_concurrency)

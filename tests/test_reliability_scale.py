"""Scale: thousands of tasks failing at once, a million tasks deep and wide, and a soak.

The million-task graphs run in a child process, so their peak memory is
measured alone (Linux: VmRSS before the run, the peak VmHWM after). The soak runs
one DAG many times and checks, with weak references and tracemalloc, that
finished runs leave nothing behind. Slow variants are marked ``slow``:
``pytest -m slow`` runs only them, ``pytest -m "not slow"`` leaves them out.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
import weakref
from typing import Any

import outcome
import pytest
import trio
from _reliability import on_mock_clock

import trio_dag
from trio_dag import TaskState
from trio_dag.testing import Recorder, check_run

# -- thousands of tasks failing at once -------------------------------------------------

FAILING = 5_000


async def _fail_at_1(k: int) -> None:
    await trio.sleep(1)
    raise ValueError(f"failure {k}")


def _many_failures() -> trio_dag.DAG:
    dag = trio_dag.DAG()
    failing = dag.map(_fail_at_1, range(FAILING))
    dag.map(lambda x: x, failing, run_in="inline")  # one dependent each
    dag.add(
        lambda *outcomes: outcomes, *failing, name="teardown", trigger="all_done", run_in="inline"
    )
    return dag


def test_thousands_failing_at_once_under_skip(dag_core: Any) -> None:
    dag = _many_failures()
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        with pytest.raises(trio_dag.RunFailedError) as info:
            await trio_dag.run(dag, on_event=recorder)
        group = info.value
        assert str(group).startswith(f"{FAILING} tasks failed")
        assert [e.task for e in group.exceptions] == [f"_fail_at_1-{k}" for k in range(FAILING)]
        report: trio_dag.RunReport = group.report
        return report

    report = on_mock_clock(main)
    assert len(report.failed) == len(report.skipped) == FAILING
    assert report.stats.makespan == 1
    outcomes = report["teardown"]
    assert len(outcomes) == FAILING
    assert all(isinstance(o, outcome.Error) for o in outcomes)
    assert len(recorder.finished()) == 2 * FAILING + 1
    check_run(dag, report, recorder)


def test_thousands_failing_at_once_under_fail_fast(dag_core: Any) -> None:
    dag = _many_failures()
    recorder = Recorder()

    async def main() -> trio_dag.RunReport:
        return await trio_dag.run(dag, on_failure="fail_fast", check=False, on_event=recorder)

    report = on_mock_clock(main)
    failing = [h for h in dag if h.name.startswith("_fail_at_1")]
    # They all failed in one instant: each either raised before the first
    # failure's cancellation reached it, or was cancelled by it.
    states = {report.state(h) for h in failing}
    assert states <= {TaskState.FAILED, TaskState.CANCELLED}
    assert report.failed and report.failed == [
        h for h in failing if report.state(h) is TaskState.FAILED
    ]
    dependents = [h for h in dag if h.name.startswith("<lambda>") and h.name != "teardown"]
    assert all(report.state(h) is TaskState.CANCELLED for h in dependents)
    assert len(report["teardown"]) == FAILING  # teardown still ran, once
    assert report.stats.makespan == 1
    check_run(dag, report, recorder, on_failure="fail_fast")


# -- a million tasks, deep and wide ------------------------------------------------------------

MILLION = 1_000_000
# The run of a million tasks may take this much memory beyond the DAG it runs
# (outputs, timings, the report): a small constant per task, not a Trio task each.
BYTES_PER_TASK = 300

_BIG_RUN = textwrap.dedent(
    """
    import json, sys
    import trio, trio_dag
    from trio.testing import MockClock

    shape, n, limit, suspend = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"

    async def step(*deps):
        if suspend:
            await trio.lowlevel.checkpoint()
        return 1 if not deps else deps[0] + 1

    dag = trio_dag.DAG()
    if shape == "chain":
        h = dag.add(step)
        for _ in range(n - 1):
            h = dag.add(step, h)
    else:
        root = dag.add(step)
        dag.map(step, [root] * (n - 1))
    dag.validate()

    def status_kib(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    before = status_kib("VmRSS")
    report = trio.run(
        lambda: trio_dag.run(dag, limit=None if limit == "none" else int(limit)),
        clock=MockClock(autojump_threshold=0),
    )
    # VmHWM, this process's own peak: ru_maxrss would carry the parent's over exec.
    peak = status_kib("VmHWM")
    last = list(dag)[-1]
    print(json.dumps({
        "core": trio_dag.CORE, "ok": report.ok, "tasks": report.stats.tasks,
        "last": report[last], "grew_kib": peak - before,
    }))
    """
)


def _big_run(core: str, shape: str, limit: str, suspend: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("TRIO_DAG_NO_EXTENSIONS", None)
    if core == "python":
        # The twin is asked for: a requirement of the extension (CI's) is not
        # this child's, and the two together are an import error.
        env["TRIO_DAG_NO_EXTENSIONS"] = "1"
        env.pop("TRIO_DAG_REQUIRE_EXTENSION", None)
    done = subprocess.run(
        [sys.executable, "-c", _BIG_RUN, shape, str(MILLION), limit, "1" if suspend else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    if result["core"] != core:
        if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            pytest.fail(f"the {core} core did not load in the child process")
        pytest.skip(f"the {core} core is not available")
    return result


BIG = [
    pytest.param("cython", "chain", "none", False, id="cython-chain"),
    pytest.param("cython", "fan-out", "none", False, id="cython-fan-out"),
    pytest.param("python", "chain", "none", False, id="python-chain", marks=pytest.mark.slow),
    pytest.param("python", "fan-out", "none", False, id="python-fan-out", marks=pytest.mark.slow),
    # Bodies that suspend: each one goes through Trio's scheduler.
    pytest.param(
        "cython", "chain", "none", True, id="cython-chain-suspending", marks=pytest.mark.slow
    ),
    pytest.param(
        "cython", "fan-out", "1000", True, id="cython-fan-out-suspending", marks=pytest.mark.slow
    ),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize(("core", "shape", "limit", "suspend"), BIG)
def test_a_million_tasks_run_to_completion_in_bounded_memory(
    core: str, shape: str, limit: str, suspend: bool
) -> None:
    result = _big_run(core, shape, limit, suspend)
    assert result["ok"] and result["tasks"] == MILLION
    assert result["last"] == (MILLION if shape == "chain" else 2)
    assert result["grew_kib"] * 1024 <= BYTES_PER_TASK * MILLION, result


# -- soak ---------------------------------------------------------------------------------------


class Output:
    """A task's output, weakly referable."""


class Argument:
    """An argument given to dag.add, weakly referable."""


# (runs, tasks, traced): tracemalloc follows the last *traced* runs (it slows
# every allocation down); memory may not grow from the first of them to the last.
SOAK = [
    pytest.param(12, 2_000, 8, id="12-runs-of-2k"),
    pytest.param(100, 10_000, 25, id="100-runs-of-10k", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("runs", "tasks", "traced"), SOAK)
def test_soak_finished_runs_leave_nothing_behind(
    dag_core: Any, runs: int, tasks: int, traced: int
) -> None:
    received: list[weakref.ref[Any]] = []  # what sampled bodies got, this run

    async def step(argument: Argument, *deps: Output, nested: Any = ()) -> Output:
        if trio_dag.current_task().name.endswith("7"):
            received.extend(weakref.ref(d) for d in (*deps, *nested))
        return Output()

    dag = trio_dag.DAG()
    handles: list[trio_dag.Handle[Output]] = []
    arguments: list[weakref.ref[Argument]] = []
    for i in range(tasks):
        argument = Argument()
        arguments.append(weakref.ref(argument))
        nested = [handles[i // 2]] if i > 1 and i % 5 == 0 else []
        deps = handles[-2:] if i % 3 else []
        handles.append(dag.add(step, argument, *deps, kwargs={"nested": nested}, name=f"t{i}"))
    del argument, deps, nested
    sample = handles[::97]

    gc.collect()
    sizes: list[int] = []
    try:
        for r in range(runs):
            if r == runs - traced:
                tracemalloc.start()
            recorder = Recorder()
            options: dict[str, Any] = {
                "limit": None if r % 3 else 8,
                "on_event": recorder if r % 2 else None,
                "strategy": "waves" if r % 4 == 3 else "immediate",
            }
            report = on_mock_clock(functools.partial(trio_dag.run, dag, **options))
            assert report.ok
            outputs = [weakref.ref(report[h]) for h in sample]
            assert received
            del report, recorder, options
            gc.collect()
            assert [o for o in outputs if o() is not None] == []
            assert [a for a in received if a() is not None] == []
            received.clear()
            if tracemalloc.is_tracing():
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    growth = sizes[-1] - sizes[0]
    assert growth < 64 * 1024, f"{growth} bytes more after {traced - 1} more runs"
    assert all(a() is not None for a in arguments)  # the DAG keeps what it was given
    del dag, handles, sample
    gc.collect()
    assert [a for a in arguments if a() is not None] == []

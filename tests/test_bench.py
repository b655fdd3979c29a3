"""bench/overhead.py and bench/build.py still run, through pyperf, and write pyperf JSON.

A smoke run of each on tiny graphs in pyperf's ``--debug-single-value`` mode
(one worker process per benchmark, one value): the master and its workers
must agree on the benchmarks (each worker re-runs the script and times only
its own), the tables must print, and the JSON must hold every benchmark.
Nothing is timed for its value. pyperf is in the ``bench`` extra, not in
``test``: without it these tests are skipped (``test_bench_overhead.py``
checks the contenders without pyperf).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pyperf = pytest.importorskip("pyperf")

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--debug-single-value", "--n", "300", "--memory-n", "300"]


def _run(script: str, *args: str) -> str:
    command = [sys.executable, str(ROOT / "bench" / script), *SMOKE, *args]
    env = {k: v for k, v in os.environ.items() if k != "TRIO_DAG_NO_EXTENSIONS"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _names(path: Path) -> set[str]:
    return {bench.get_name() for bench in pyperf.BenchmarkSuite.load(str(path))}


def _compiled() -> bool:
    from trio_dag import _native

    try:
        _native.compiled()
    except ImportError:
        return False
    return True


def test_overhead_runs_through_pyperf_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    contenders = "trio_dag,handrolled_trio" if _compiled() else "trio_dag_py,handrolled_trio"
    fast = contenders.split(",")[0]
    stdout = _run("overhead.py", "--body", "noop", "--contenders", contenders, "-o", str(out))
    assert "layered, noop bodies, N=300" in stdout
    assert "handrolled_trio" in stdout.split("layered, noop bodies")[-1]
    assert _names(out) == {
        f"overhead/layered/300/{fast}/build",
        "overhead/layered/300/handrolled_trio/build",
        f"overhead/layered/300/noop/{fast}",
        "overhead/layered/300/noop/handrolled_trio",
    }
    for bench in pyperf.BenchmarkSuite.load(str(out)):
        assert bench.get_unit() == "second"
        assert bench.get_nvalue() == 1
        assert bench.get_metadata()["inner_loops"] == 300 * (10_000 // 300)


def test_overhead_memory_writes_peaks_in_bytes(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    stdout = _run("overhead.py", "--memory", "-o", str(out))
    assert "peak MiB" in stdout
    suite = pyperf.BenchmarkSuite.load(str(out))
    names = {bench.get_name() for bench in suite}
    assert "memory/layered/300/baseline/peak_rss" in names
    assert "memory/layered/300/trio_dag_py/peak_rss" in names
    assert all(bench.get_unit() == "byte" for bench in suite)


def test_build_reports_every_target_for_both_cores_and_compares(tmp_path: Path) -> None:
    out = tmp_path / "build.json"
    stdout = _run("build.py", "-o", str(out))
    for row in [
        "dag.add(fn, after=[...])",
        "dag.add(fn, after=[...], name=)",
        "dag.add(fn, *handles)",
        "dag.map(fn, items)",
        "end to end: dag.add, then run",
        "end to end: hand-rolled Trio",
        "hand-rolled / trio_dag",
        "peak RSS, anonymous tasks",
        "bytes per name beyond the string",
    ]:
        assert row in stdout
    cores = ["cython", "python"] if _compiled() else ["python"]
    names = _names(out)
    for core in cores:
        for key in ("add_after", "add_name", "add_handles", "map", "e2e"):
            assert f"build/{key}/{core}/300" in names
        for kind in ("baseline", "anonymous", "named"):
            assert f"build/memory/{kind}/{core}/300" in names
    assert f"build/handrolled/{cores[0]}/300" in names
    # Each core was measured in processes that imported that core.
    for bench in pyperf.BenchmarkSuite.load(str(out)):
        core = bench.get_metadata().get("trio_dag_core")
        if core is not None:
            assert bench.get_metadata()["trio_dag_core_default"] == core
    # What the before/after comparison runs.
    done = subprocess.run(
        [sys.executable, "-m", "pyperf", "compare_to", str(out), str(out), "--table"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "build/add_after/python/300" in done.stdout
    assert "build/memory/named/python/300" in done.stdout

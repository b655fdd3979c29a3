"""bench/executors.py runs end to end on a few tasks, prints its table and writes pyperf JSON.

Nothing is judged here (the figures mean something at thousands of tasks,
on an idle machine): the smoke run checks that every part runs, that the
script's own checks of the outputs pass, and that the table and the JSON
hold every contender. The Dask part needs ``distributed`` (the ``dask``
extra, in ``test``); the JSON needs pyperf (``bench``), else it is skipped.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "executors.py"
SMOKE = ["--n", "20", "--repeat", "1", "--work-tasks", "2", "--work-ms", "5", "--quiet"]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(BENCH), *SMOKE, *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # 1 is a target not met: likely at this size, and not this test's business.
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="needs the dask extra")
def test_bench_executors_prints_every_part(tmp_path: Path) -> None:
    out = tmp_path / "executors.json"
    with_json = importlib.util.find_spec("pyperf") is not None
    done = run_bench(*(["-o", str(out)] if with_json else []))
    assert re.search(r"^\| run_in='process' \(trio-parallel\) \| [\d,.]+ \|", done.stdout, re.M)
    assert re.search(r"^\| Dask LocalCluster, 2 workers \| [\d,.]+ \|", done.stdout, re.M)
    assert "CPU-bound: 2 tasks" in done.stdout
    if with_json:
        import pyperf

        names = {bench.get_name() for bench in pyperf.BenchmarkSuite.load(str(out))}
        assert names == {
            f"executors/{name}"
            for name in (
                "process/trio_parallel",
                "process/trio_dag",
                "dask/client",
                "dask/trio_dag",
                "cpu/thread",
                "cpu/process",
            )
        }


def test_bench_executors_runs_a_part_alone() -> None:
    done = run_bench("--only", "process")
    assert "run_in='process'" in done.stdout
    assert "Dask" not in done.stdout
    assert "CPU-bound" not in done.stdout

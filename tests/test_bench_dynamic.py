"""bench/dynamic.py still runs: both ways of building the graph, and the counts figure.

A smoke run on a small graph, as a user runs the script; nothing is timed
for its value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("core", ["cython", "python"])
def test_bench_dynamic_prints_both_runs_and_their_ratio(core: str) -> None:
    if core == "cython":
        pytest.importorskip("trio_dag._native._core")
    command = [
        sys.executable,
        str(ROOT / "bench" / "dynamic.py"),
        *("--n", "2000", "--repeat", "1", "--counts", "1000", "--core", core),
    ]
    env = {k: v for k, v in os.environ.items() if k != "TRIO_DAG_NO_EXTENSIONS"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "static (build + run)" in done.stdout
    assert "dynamic (run.add)" in done.stdout
    assert "dynamic / static (medians):" in done.stdout
    assert "run.counts:" in done.stdout

"""bench/cache.py runs end to end on a tiny graph and prints its three figures.

Nothing is judged here (the targets are set at 100,000 tasks): the smoke
test checks that each mode runs, that the script's own checks of the
outputs and CACHED states pass, and that the table is printed, with both
stores.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import trio_dag

BENCH = Path(__file__).resolve().parent.parent / "bench" / "cache.py"


@pytest.mark.skipif(trio_dag.CORE != "cython", reason="the benchmark needs the compiled core")
@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_bench_cache_prints_the_three_runs(store: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "300", "--repeat", "1", "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # 1 is a target not met: possible at this size, and not this test's business.
    assert done.returncode in (0, 1), done.stderr
    for mode in ("uncached", "cold, cache=True on every task", "fully cached rerun"):
        assert re.search(rf"^\| {re.escape(mode)} \| \d+\.\d\d \|", done.stdout, re.MULTILINE)
    assert "N=300" in done.stdout

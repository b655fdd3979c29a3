"""What ``bench/overhead.py`` and ``bench/build.py`` share: pyperf, spreads, peak memory.

pyperf is imported only when a script times something (:func:`runner`), so
the scripts' modules import without it (``tests/test_bench_overhead.py``
loads ``overhead.py`` in CI, where the ``bench`` extra is not installed).

How the scripts use pyperf: one :class:`pyperf.Runner` per process; the
master process parses the arguments, spawns worker processes that re-run the
script with ``--worker --worker-task=K`` plus the script's own arguments
(:func:`runner`'s *forward* callback), and each worker runs the K-th
``bench_time_func`` call only. So every script makes its ``bench_time_func``
calls in an order fixed by its arguments alone, and prints or checks nothing
in a worker. A time function times ``loops`` iterations; an iteration is a
whole graph (or several small ones) and ``inner_loops`` is its number of
tasks, so pyperf's values are seconds per task.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

INSTALL = "pyperf is not installed: pip install pyperf (or pip install '.[bench]')"

# Worker processes and values per process when no option says otherwise.
# pyperf's own defaults (20 processes) suit microsecond benchmarks; one value
# here is a whole graph of 100,000 tasks. --fast halves the processes (at
# least 3), --rigorous doubles them, -p and -n (--values) set them.
PROCESSES = 6
VALUES = 3


def have_pyperf() -> bool:
    try:
        import pyperf  # noqa: F401
    except ImportError:
        return False
    return True


def runner(
    description: str,
    add_options: Callable[[Any], None],
    forward: Callable[[Any], list[str]],
    argv: Sequence[str] | None = None,
) -> tuple[Any, Any]:
    """The pyperf Runner with the script's options added, and the parsed arguments.

    *description* (the script's docstring) is what ``--help`` shows first.
    *add_options(parser)* adds the script's own options; *forward(args)* gives
    the ones a worker needs to make the same ``bench_time_func`` calls.
    One iteration is a whole graph, so ``loops`` defaults to 1, not to
    pyperf's calibration.
    """
    try:
        import pyperf
    except ImportError:
        sys.exit(INSTALL)

    def add_cmdline_args(cmd: list[str], args: Any) -> None:
        cmd.extend(forward(args))

    perf = pyperf.Runner(
        processes=PROCESSES,
        values=VALUES,
        loops=1,
        add_cmdline_args=add_cmdline_args,
        program_args=(os.path.abspath(sys.argv[0]),),
    )
    perf.argparser.description = description
    perf.argparser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_options(perf.argparser)
    args = perf.parse_args(None if argv is None else list(argv))
    return perf, args


@dataclass(frozen=True)
class Spread:
    """Mean and standard deviation of a pyperf benchmark's values, and how many."""

    mean: float
    std: float
    values: int

    @classmethod
    def of(cls, bench: Any) -> Spread:
        values = bench.get_values()
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return cls(statistics.fmean(values), std, len(values))

    @classmethod
    def of_values(cls, values: Sequence[float]) -> Spread:
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return cls(statistics.fmean(values), std, len(values))

    def scaled(self, factor: float) -> Spread:
        return Spread(self.mean * factor, self.std * factor, self.values)

    def text(self, digits: int = 3) -> str:
        """``mean ± std`` (``mean`` alone from a single value)."""
        if math.isnan(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_runs(args: Any) -> int:
    """Fresh processes per memory figure: one with --debug-single-value, else 3 (--fast 2)."""
    if args.debug_single_value:
        return 1
    if args.fast:
        return 2
    return 5 if args.rigorous else 3


def save_memory(args: Any, name: str, peaks: Sequence[int], metadata: dict[str, Any]) -> None:
    """Append peak RSS values (bytes, one run per process) to the -o/--append file, if any."""
    files = [f for f in (args.output, args.append) if f]
    if not files or not peaks:
        return
    import pyperf

    runs = [
        pyperf.Run([peak], metadata={"name": name, "unit": "byte", "loops": 1, **metadata})
        for peak in peaks
    ]
    bench = pyperf.Benchmark(runs)
    for file in files:
        pyperf.add_runs(file, bench)

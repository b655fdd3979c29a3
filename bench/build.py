"""The cost of building a DAG (issue #20): each target beside the figure the issue measured.

Figures are pyperf's: worker processes, each with a warm-up then timed
values, reported as mean ± standard deviation in microseconds per task (one
value is one whole graph; pyperf divides by its tasks). Ratios are taken
between the means of one invocation. The graph is ``bench/overhead.py``'s
layered one (layers of 100, 4 parents drawn from the layer above), its
parents made before the clock starts.

- ``dag.add(fn, after=[...])`` per task, ``dag.add(fn, after=[...],
  name=...)`` (names made beforehand), ``dag.add(fn, *handles)`` and
  ``dag.map(fn, items)``: a whole ``--n``-task graph per value (200,000 by
  default, as the issue measured); "the loop alone" is the same loop with a
  stand-in for ``dag.add``, the part of each figure that is the caller's.
- End to end: build with ``dag.add`` then ``trio_dag.run_sync(dag,
  limit=64)``, noop bodies, 100,000 tasks by default; hand-rolled Trio
  (``bench/_contenders.py``'s) measured the same way: its dict of
  dependencies built from the same parents, then run.
- Memory (fresh processes, peak RSS from VmHWM): 1,000,000 anonymous tasks
  built from the generator and run; the same named ``f"t{n}"``. The bytes a
  name costs beyond the string are the difference of the two peaks per task
  minus the strings' own size (``sys.getsizeof``).

Each is measured with the compiled core and with the pure-Python core, each
in processes of its own (the latter with ``TRIO_DAG_NO_EXTENSIONS=1``), so
whatever ``dag.add`` the checkout has is what is measured.

    python bench/build.py                  # everything, both cores (~10 minutes on 2 cores)
    python bench/build.py --fast           # 3 processes x 2 values: rough, quicker
    python bench/build.py --core cython --no-memory
    python bench/build.py --memory         # the memory figures alone
    python bench/build.py --debug-single-value --n 1000 --memory-n 1000  # smoke run

How to compare before and after a change: measure both trees with this
same harness (copy ``bench/`` into the old tree: it uses only the public API
and ``_native``'s backend choice), writing pyperf JSON, then let pyperf
compare the files; it marks each difference as significant or not::

    git worktree add /tmp/before OLD_COMMIT && cp bench/*.py /tmp/before/bench/
    (cd /tmp/before && python setup.py build_ext --inplace -q &&
     python bench/build.py -o /tmp/before.json)
    python setup.py build_ext --inplace -q && python bench/build.py -o /tmp/after.json
    python -m pyperf compare_to /tmp/before.json /tmp/after.json --table
    python -m pyperf stats /tmp/after.json  # each benchmark's values in detail

Run both with the same options (pyperf matches benchmarks by name), on the
same machine, under the same load, back to back (the load average is
printed); ``bench/overhead.py -o FILE`` compares the same way. pyperf's
options apply: ``-p``/``--processes``, ``-n``/``--values`` (not ``--n``),
``-w``/``--warmups``, ``--fast``, ``--rigorous``, ``--debug-single-value``,
``-o``/``--output`` FILE, ``--append`` FILE (the memory figures go in the
same file, in bytes). pyperf is in the ``bench`` extra: ``pip install
'.[bench]'``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # last: only for _contenders, _perf

# Nothing of trio_dag is imported at the top: a worker first sets
# TRIO_DAG_NO_EXTENSIONS for the core it measures (see use_core).
from _perf import Spread, memory_runs, peak_rss_bytes, runner, save_memory

BUILD_N = 200_000  # the add and map figures: layered 200k
E2E_N = 100_000  # the end-to-end target: layered 100k
MEMORY_N = 1_000_000
LIMIT = 64  # the same as _contenders.LIMIT, asserted where that is imported
CORES = ("cython", "python")
MIB = 1024 * 1024  # the "MB" are MiB: its 191 is this table's 192 MiB on main


@dataclass(frozen=True)
class Target:
    """A row of the table: the issue's figure now, and its bound (None: reported only)."""

    what: str
    now: str
    bound: float | None
    unit: str = "us/task"
    above: bool = False  # the bound is a floor, not a ceiling

    def verdict(self, value: float | None) -> str:
        if self.bound is None or value is None:
            return ""
        met = value >= self.bound if self.above else value <= self.bound
        return "met" if met else "NOT MET"

    def bound_text(self) -> str:
        if self.bound is None:
            return "-"
        return f"{'>=' if self.above else '<='} {self.bound:g}"


# The benchmarks, in the order of bench_time_func calls: key -> its row.
TIMED: dict[str, Target] = {
    "loop": Target("the loop alone (stand-in for add)", "-", None),
    "add_after": Target("dag.add(fn, after=[...])", "3.0", 0.8),
    "add_name": Target("dag.add(fn, after=[...], name=)", "3.7", 1.0),
    "add_handles": Target("dag.add(fn, *handles)", "2.7", None),
    "map": Target("dag.map(fn, items)", "1.7", 0.3),
    "e2e": Target("end to end: dag.add, then run", "3.2", 1.0),
}
HANDROLLED = Target("end to end: hand-rolled Trio", "14.3", None)
RATIO = Target("  hand-rolled / trio_dag", "4.5", 14, "x", above=True)
PEAK = Target("peak RSS, anonymous tasks, MiB", "191", 150, "MiB")
NAME = Target("bytes per name beyond the string", "235*", 100, "B")
ONCE = ("loop",)  # core-independent: measured once, with the compiled core's package


@dataclass(frozen=True)
class Bench:
    """One bench_time_func call: which figure, with which core's package, on how many tasks."""

    key: str
    core: str
    n: int

    @property
    def name(self) -> str:
        return f"build/{self.key}/{self.core}/{self.n}"


def plan(args: argparse.Namespace) -> list[Bench]:
    """Every bench_time_func call, in order: the same in the master and in each worker."""
    if args.memory:
        return []
    build_n, e2e_n = args.n or BUILD_N, args.n or E2E_N
    cores = args.core.split(",")
    benches = [Bench("loop", cores[0], build_n)]
    for core in cores:
        for key in ("add_after", "add_name", "add_handles", "map"):
            benches.append(Bench(key, core, build_n))
        benches.append(Bench("e2e", core, e2e_n))
    benches.append(Bench("handrolled", cores[0], e2e_n))
    return benches


# --- in a worker: one core's package, imported after its environment is set ------


def use_core(core: str) -> None:
    """Import trio_dag with *core* ("cython" or "python"); exit if it gets another."""
    if core == "python":
        os.environ["TRIO_DAG_NO_EXTENSIONS"] = "1"
        os.environ.pop("TRIO_DAG_REQUIRE_EXTENSION", None)
    else:
        os.environ.pop("TRIO_DAG_NO_EXTENSIONS", None)
    import trio_dag

    if trio_dag.CORE != core:
        sys.exit(f"trio_dag.CORE is {trio_dag.CORE!r}, not {core!r}: {sys.modules['trio_dag']}")


def parents_of(n: int) -> list[tuple[int, ...]]:
    from _contenders import LIMIT as CONTENDERS_LIMIT
    from _contenders import layered

    assert CONTENDERS_LIMIT == LIMIT
    return list(layered(n))


async def noop() -> None:
    return None


async def gather(*_outputs: object) -> None:
    return None


async def one(_item: object) -> None:
    return None


def stand_in(fn: object, *args: object, after: object = ()) -> object:
    """What the loop costs without dag.add: a call that returns a placeholder."""
    return fn


def build_loop(add: Callable[..., Any], parents: Sequence[tuple[int, ...]]) -> None:
    """``add(noop, after=[...])`` per task, as ``_contenders.build_dag`` does."""
    handles: list[Any] = []
    append = handles.append
    for ps in parents:
        append(add(noop, after=[handles[p] for p in ps]))


def time_loop(loops: int, n: int) -> float:
    return timed_builds(loops, n, lambda dag, parents: build_loop(stand_in, parents))


def time_add_after(loops: int, n: int) -> float:
    return timed_builds(loops, n, lambda dag, parents: build_loop(dag.add, parents))


def time_add_name(loops: int, n: int) -> float:
    names = [f"t{i}" for i in range(n)]

    def build(dag: Any, parents: Sequence[tuple[int, ...]]) -> None:
        add = dag.add
        handles: list[Any] = []
        append = handles.append
        for name, ps in zip(names, parents, strict=True):
            append(add(noop, after=[handles[p] for p in ps], name=name))

    return timed_builds(loops, n, build)


def time_add_handles(loops: int, n: int) -> float:
    def build(dag: Any, parents: Sequence[tuple[int, ...]]) -> None:
        add = dag.add
        handles: list[Any] = []
        append = handles.append
        for ps in parents:
            append(add(gather, *[handles[p] for p in ps]))

    return timed_builds(loops, n, build)


def time_map(loops: int, n: int) -> float:
    items = list(range(n))
    return timed_builds(loops, n, lambda dag, parents: dag.map(one, items))


def timed_builds(
    loops: int, n: int, build: Callable[[Any, Sequence[tuple[int, ...]]], Any]
) -> float:
    """Seconds of *loops* builds of a fresh DAG of *n* tasks; freeing it is not timed."""
    import trio_dag

    parents = parents_of(n)
    total = 0.0
    for _ in range(loops):
        gc.collect()
        start = time.perf_counter()
        dag = trio_dag.DAG()
        build(dag, parents)
        total += time.perf_counter() - start
        del dag
    return total


def time_e2e(loops: int, n: int) -> float:
    """Build with dag.add (as overhead.py's contender does), then run_sync; both timed."""
    from _contenders import build_dag

    import trio_dag

    parents = parents_of(n)
    total = 0.0
    for _ in range(loops):
        gc.collect()
        start = time.perf_counter()
        trio_dag.run_sync(build_dag(parents, itertools.repeat(noop)), limit=LIMIT)
        total += time.perf_counter() - start
    return total


def time_handrolled(loops: int, n: int) -> float:
    """overhead.py's hand-rolled Trio: its dict built from the same parents, then run."""
    import trio
    from _contenders import Same, handrolled_trio

    parents = parents_of(n)
    total = 0.0
    for _ in range(loops):
        gc.collect()
        start = time.perf_counter()
        trio.run(handrolled_trio, dict(enumerate(parents)), Same(noop))
        total += time.perf_counter() - start
    return total


TIME_FUNCS: dict[str, Callable[[int, int], float]] = {
    "loop": time_loop,
    "add_after": time_add_after,
    "add_name": time_add_name,
    "add_handles": time_add_handles,
    "map": time_map,
    "e2e": time_e2e,
    "handrolled": time_handrolled,
}


# --- memory: fresh child processes ------------------------------------------------


def memory_child(kind: str, core: str, n: int) -> None:
    """Build *n* tasks from the layered generator and run them; print the peak RSS."""
    use_core(core)
    from _contenders import build_dag, layered

    import trio_dag

    start = time.perf_counter()
    if kind == "anonymous":
        trio_dag.run_sync(build_dag(layered(n), itertools.repeat(noop)), limit=LIMIT)
    elif kind == "named":
        dag = trio_dag.DAG()
        add = dag.add
        handles: list[Any] = []
        for i, ps in enumerate(layered(n)):
            handles.append(add(noop, after=[handles[p] for p in ps], name=f"t{i}"))
        del handles
        trio_dag.run_sync(dag, limit=LIMIT)
    print(json.dumps({"peak": peak_rss_bytes(), "seconds": time.perf_counter() - start}))


def measure_memory(args: argparse.Namespace, cores: Sequence[str]) -> dict[str, dict[str, Spread]]:
    """core -> kind -> peak RSS in MiB over fresh processes; also saved to -o/--append."""
    n = args.memory_n
    runs = memory_runs(args)
    found: dict[str, dict[str, Spread]] = {}
    for core in cores:
        for kind in ("baseline", "anonymous", "named"):
            command = [sys.executable, str(Path(__file__).resolve())]
            command += ["--memory-child", kind, "--core", core, "--memory-n", str(n)]
            peaks = []
            for run in range(runs):
                say(f"memory: {core} core, {kind}, {n:,} tasks, {run + 1}/{runs} ...")
                child = subprocess.run(command, capture_output=True, text=True, check=False)
                if child.returncode != 0:
                    reason = (child.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"memory: {core} core, {kind}: failed: {reason}")
                    break
                peaks.append(json.loads(child.stdout.splitlines()[-1])["peak"])
            if len(peaks) < runs:
                continue
            found.setdefault(core, {})[kind] = Spread.of_values([p / MIB for p in peaks])
            about = f"peak RSS, {kind}, {n:,} tasks built and run, {core} core"
            save_memory(args, f"build/memory/{kind}/{core}/{n}", peaks, {"description": about})
    return found


def string_bytes(n: int) -> float:
    """The mean size of the names ``f"t{i}"``, as ``sys.getsizeof`` counts it."""
    return sum(sys.getsizeof(f"t{i}") for i in range(n)) / n


# --- the table ----------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def row(target: Target, cells: Sequence[tuple[str, str]]) -> str:
    text = f"  {target.what:<36} {target.now:>6} {target.bound_text():>7}"
    return text + "".join(f"  {value:>17} {verdict:>7}" for value, verdict in cells)


def report(
    args: argparse.Namespace,
    cores: Sequence[str],
    timed: dict[tuple[str, str], Spread],
    memory: dict[str, dict[str, Spread]],
) -> None:
    build_n, e2e_n = args.n or BUILD_N, args.n or E2E_N
    names = {"cython": "compiled core", "python": "pure-Python core"}
    print(f"\nbuilding a layered DAG: N={build_n:,} (end to end N={e2e_n:,}, limit {LIMIT})")
    print("mean ± std dev over pyperf's values, us per task unless said; 'now': the issue's")
    head = "".join(f"  {names[core]:>17} {'':>7}" for core in cores)
    print(f"  {'':<36} {'now':>6} {'target':>7}{head}")

    def cell(target: Target, spread: Spread | None, core: str, digits: int = 3) -> tuple[str, str]:
        if spread is None:
            return "-", ""
        return spread.text(digits), judge(target, spread.mean, core)

    def judge(target: Target, value: float, core: str) -> str:
        """The verdict: the targets are the compiled core's, at the issue's sizes."""
        if core != "cython":
            return ""
        if target in (PEAK, NAME) and args.memory_n != MEMORY_N:
            return "n/a"
        if target not in (PEAK, NAME) and args.n:
            return "n/a"
        return target.verdict(value)

    if timed:
        for key, target in TIMED.items():
            cells = []
            for core in cores:
                if key in ONCE and core != cores[0]:
                    cells.append(("(same)", ""))
                else:
                    cells.append(cell(target, timed.get((key, core)), core))
            print(row(target, cells))
        hand = timed.get(("handrolled", cores[0]))
        print(
            row(HANDROLLED, [cell(HANDROLLED, hand, "", 2)] + [("(same)", "")] * (len(cores) - 1))
        )
        cells = []
        for core in cores:
            e2e = timed.get(("e2e", core))
            if hand is None or e2e is None:
                cells.append(("-", ""))
                continue
            ratio = hand.mean / e2e.mean
            cells.append((f"{ratio:.2f}x", judge(RATIO, ratio, core)))
        print(row(RATIO, cells))
    if memory:
        n = args.memory_n
        per_name = string_bytes(n)
        print(
            f'\nmemory: {n:,} tasks, fresh processes, peak RSS (VmHWM) in MiB (the issue\'s "MB")'
        )
        cells, names_cells, lines = [], [], []
        for core in cores:
            got = memory.get(core, {})
            anonymous, named, base = got.get("anonymous"), got.get("named"), got.get("baseline")
            cells.append(cell(PEAK, anonymous, core, 1))
            if anonymous is None or named is None:
                names_cells.append(("-", ""))
                continue
            beyond = (named.mean - anonymous.mean) * MIB / n - per_name
            names_cells.append((f"{beyond:.0f}", judge(NAME, beyond, core)))
            lines.append(
                f"  {names[core]}: baseline {base.text(1) if base else '-'} MiB (interpreter, "
                f"trio_dag imported), anonymous {anonymous.text(1)}, named {named.text(1)}; "
                f"names {(named.mean - anonymous.mean) * MIB / n:.0f} B per task in all"
            )
        print(row(PEAK, cells))
        print(row(NAME, names_cells))
        for line in lines:
            print(line)
        print(f"  a name's string: {per_name:.1f} B (sys.getsizeof); * 'now' includes the string")
    if args.n or args.memory_n != MEMORY_N:
        print("  n/a: the targets are set at the issue's sizes (the defaults of --n, --memory-n)")


# --- main ---------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    """This script's options, beside pyperf's."""
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help=f"tasks per graph (default: {BUILD_N:,} for add and map, {E2E_N:,} end to end)",
    )
    parser.add_argument(
        "--core",
        default="both",
        choices=["both", *CORES, ",".join(CORES)],
        metavar="{both,cython,python}",
        help="the cores to measure (default: both)",
    )
    parser.add_argument(
        "--memory", action="store_true", help="the memory figures alone (fresh processes)"
    )
    parser.add_argument("--no-memory", action="store_true", help="the timings alone")
    parser.add_argument(
        "--memory-n", type=int, default=MEMORY_N, help=f"tasks of the memory figures ({MEMORY_N:,})"
    )


def forward(args: argparse.Namespace) -> list[str]:
    """What a worker needs to make the same bench_time_func calls as the master."""
    words = [f"--core={args.core}"]
    if args.n:
        words.append(f"--n={args.n}")
    return words


def available(cores: Sequence[str]) -> list[str]:
    """The cores asked for that can be measured here (the compiled one may be unbuilt)."""
    from trio_dag import _native

    found = []
    for core in cores:
        if core == "cython":
            try:
                _native.compiled()
            except ImportError as exc:
                print(f"skipped the compiled core: {exc}")
                continue
        found.append(core)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    child = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    child.add_argument("--memory-child", choices=["baseline", "anonymous", "named"])
    child.add_argument("--core", default="cython")
    child.add_argument("--memory-n", type=int, default=MEMORY_N)
    known, _ = child.parse_known_args(argv)
    if known.memory_child:  # no pyperf in a memory child: it would weigh on the baseline
        memory_child(known.memory_child, known.core, known.memory_n)
        return 0
    perf, args = runner(__doc__ or "", add_options, forward, argv)
    if (args.n is not None and args.n < 1) or args.memory_n < 1:
        perf.argparser.error("--n and --memory-n must be at least 1")
    if args.memory and args.no_memory:
        perf.argparser.error("--memory and --no-memory exclude each other")
    if args.core == "both":
        args.core = ",".join(CORES)
    benches = plan(args)
    if args.worker:
        if args.worker_task is None and len(args.core.split(",")) > 1:
            perf.argparser.error("a worker without --worker-task takes one --core")
        use_core(benches[args.worker_task or 0].core)
    else:
        args.core = ",".join(available(args.core.split(",")))
        if not args.core:
            return 1
        benches = plan(args)
        print(f"python {platform.python_version()}; {load()}")
    import trio_dag

    perf.metadata["trio_dag_core_default"] = trio_dag.CORE
    timed: dict[tuple[str, str], Spread] = {}
    for bench in benches:
        about = TIMED[bench.key].what if bench.key in TIMED else HANDROLLED.what
        result = perf.bench_time_func(
            bench.name,
            TIME_FUNCS[bench.key],
            bench.n,
            inner_loops=bench.n,
            metadata={"description": about, "trio_dag_core": bench.core},
        )
        if result is not None:
            timed[bench.key, bench.core] = Spread.of(result).scaled(1e6)
    if args.worker:
        return 0
    cores = args.core.split(",")
    memory = {} if args.no_memory else measure_memory(args, cores)
    report(args, cores, timed, memory)
    print(f"\n{load()}")
    for file in dict.fromkeys(f for f in (args.output, args.append) if f):
        if os.path.exists(file):
            print(f"pyperf JSON in {file}: python -m pyperf compare_to BEFORE.json {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

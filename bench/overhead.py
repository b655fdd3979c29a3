"""Scheduling overhead of trio_dag against what Trio, asyncio and dask users run today.

One process, every contender on the same seeded graph, best of ``--repeat``
each, ``limit=64`` wherever one is taken. A contender's run is timed from its
structure already built: trio_dag from a DAG built with ``dag.add`` and not
yet frozen (freezing counts), the hand-rolled versions from their dict of
dependencies, dask from its task dict. Building that structure is timed apart
("build" column). Every contender first runs on small graphs with recording
bodies, and the timing stops if one of them skips, repeats or reorders tasks.
See ``bench/_contenders.py`` for the graphs and the contenders.

    python bench/overhead.py                    # layered, N=100,000, noop and yield bodies
    python bench/overhead.py --shape all --body noop --json out.json
    python bench/overhead.py --sizes --contenders trio_dag,trio_dag_py,handrolled_trio
    python bench/overhead.py --memory           # peak RSS, 1,000,000 tasks, one process each
    python bench/overhead.py --check            # the correctness check alone
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # last: only for _contenders

import trio
from _contenders import (
    BODIES,
    BODY_KINDS,
    CONTENDERS,
    LIMIT,
    SHAPES,
    Contender,
    Graph,
    Same,
    build_dag,
    check,
    handrolled_trio,
    noop,
)

import trio_dag

SIZES = (1_000, 10_000, 100_000, 1_000_000)
TARGET_N = 100_000
MEMORY_N = 1_000_000
FAST = "trio_dag"  # ratios are against this contender
# Children of --memory: name -> (TRIO_DAG_NO_EXTENSIONS, the trio_dag.CORE it must get).
MEMORY_CHILDREN: dict[str, tuple[str, str | None]] = {
    "baseline": ("", None),
    "trio_dag": ("", "cython"),
    "trio_dag_py": ("1", "python"),
    "handrolled_trio": ("", None),
}


@dataclass(frozen=True)
class Measurement:
    """One contender on one graph with one body kind: every repeat's seconds."""

    contender: str
    shape: str
    body: str
    n: int
    limit: int
    runs: list[float]
    builds: list[float]

    @property
    def us(self) -> float:
        """Best run, in microseconds per task."""
        return min(self.runs) / self.n * 1e6

    @property
    def build_us(self) -> float:
        return min(self.builds) / self.n * 1e6

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "us_per_task": self.us, "build_us_per_task": self.build_us}


@dataclass
class Verdict:
    """One target: met (True/False), or None when a figure it needs is missing."""

    met: bool | None
    text: str

    def line(self) -> str:
        label = {True: "met", False: "NOT MET", None: "n/a"}[self.met]
        return f"  [{label:>7}] {self.text}"


@dataclass
class Results:
    measurements: dict[tuple[str, str, str, int], Measurement] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)

    def add(self, m: Measurement) -> None:
        self.measurements[m.contender, m.shape, m.body, m.n] = m

    def get(self, contender: str, shape: str, body: str, n: int) -> Measurement | None:
        return self.measurements.get((contender, shape, body, n))


def repeats_for(n: int, repeat: int) -> int:
    """Small graphs run more often, so that their best is not noise."""
    return max(repeat, min(100, TARGET_N // n))


def measure(
    contenders: Sequence[Contender], graph: Graph, body: str, repeat: int
) -> list[Measurement]:
    """Build and run each contender *repeat* times on *graph*, taking turns.

    Turns, not one contender's repeats in a row, so that a change of load on a
    shared machine weighs on every contender alike.
    """
    runs: dict[str, list[float]] = {c.name: [] for c in contenders}
    builds: dict[str, list[float]] = {c.name: [] for c in contenders}
    for turn in range(repeat):
        for contender in contenders:
            say(f"{contender.name}: {graph.shape}, {body}, N={graph.n:,}, {turn + 1}/{repeat}")
            bodies = [BODIES[contender.loop, body]] * graph.n
            gc.collect()
            start = time.perf_counter()
            structure = contender.build(graph, bodies)
            builds[contender.name].append(time.perf_counter() - start)
            gc.collect()
            runs[contender.name].append(contender.run(structure))
            del structure, bodies
    return [
        Measurement(c.name, graph.shape, body, graph.n, LIMIT, runs[c.name], builds[c.name])
        for c in contenders
    ]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


# --- targets ------------------------------------------------------------------


def at_most(what: str, value: float | None, bound: float, unit: str, needs: str) -> Verdict:
    if value is None:
        return Verdict(None, f"{what} <= {bound:g} {unit}: needs {needs}")
    return Verdict(value <= bound, f"{what} <= {bound:g} {unit}: {value:.3g} {unit}")


def faster(
    results: Results, fast: str, slow: str, times: float, shape: str, body: str, n: int
) -> Verdict:
    a, b = results.get(fast, shape, body, n), results.get(slow, shape, body, n)
    what = f"{fast} >= {times:g}x faster than {slow} ({body})"
    if a is None or b is None:
        missing = " and ".join(name for name, m in ((fast, a), (slow, b)) if m is None)
        return Verdict(None, f"{what}: needs {missing}")
    ratio = b.us / a.us
    return Verdict(ratio >= times, f"{what}: {ratio:.2f}x ({b.us:.3g} vs {a.us:.3g} us/task)")


def speed_targets(results: Results, shape: str, body: str, n: int) -> list[Verdict]:
    """The issue's targets that one (layered) table can decide."""
    if shape != "layered":
        return []
    verdicts = []
    if body == "noop":
        fast = results.get(FAST, shape, body, n)
        verdicts.append(
            at_most(f"{FAST} ({body})", fast.us if fast else None, 0.5, "us/task", FAST),
        )
        verdicts.append(faster(results, FAST, "handrolled_trio", 30, shape, body, n))
        verdicts.append(faster(results, FAST, "handrolled_asyncio", 15, shape, body, n))
        py = results.get("trio_dag_py", shape, body, n)
        verdict = at_most("trio_dag_py (noop)", py.us if py else None, 3, "us/task", "trio_dag_py")
        if py is not None:
            verdict.text += f" (build + run: {py.us + py.build_us:.3g})"
        verdicts.append(verdict)
        verdicts.append(faster(results, "trio_dag_py", "handrolled_trio", 5, shape, body, n))
    if body == "yield":
        verdicts.append(faster(results, FAST, "floor_spawn", 3, shape, body, n))
    if verdicts and n != TARGET_N:
        for v in verdicts:
            v.text += f" [targets are set at N={TARGET_N:,}]"
    return verdicts


def growth_target(results: Results, shape: str, body: str) -> list[Verdict]:
    if shape != "layered":
        return []
    small, big = results.get(FAST, shape, body, SIZES[0]), results.get(FAST, shape, body, SIZES[-1])
    what = f"{FAST} ({body}) cost per task grows <= 1.5x from N={SIZES[0]:,} to {SIZES[-1]:,}"
    if small is None or big is None:
        return [Verdict(None, f"{what}: needs {FAST} at both sizes")]
    growth = big.us / small.us
    return [Verdict(growth <= 1.5, f"{what}: {growth:.2f}x ({small.us:.3g} -> {big.us:.3g})")]


# --- tables -------------------------------------------------------------------


def print_table(results: Results, names: Sequence[str], shape: str, body: str, n: int) -> None:
    repeat = next((len(m.runs) for name in names if (m := results.get(name, shape, body, n))), 0)
    print(f"\n{shape}, {body} bodies, N={n:,}, limit {LIMIT}, best of {repeat}")
    print(f"  {'contender':<20} {'us/task':>9} {'ratio':>8} {'build us':>9}  what")
    fast = results.get(FAST, shape, body, n)
    for name in names:
        m = results.get(name, shape, body, n)
        if m is None:
            continue
        ratio = f"{m.us / fast.us:.2f}x" if fast is not None else "-"
        about = CONTENDERS[name].about
        print(f"  {name:<20} {m.us:>9.3f} {ratio:>8} {m.build_us:>9.3f}  {about}")
    if fast is not None:
        print(f"  ratio: time / {FAST}'s (above 1: {FAST} is faster); build: not in us/task")
    verdicts = speed_targets(results, shape, body, n)
    results.verdicts += verdicts
    for verdict in verdicts:
        print(verdict.line())


def print_sizes(results: Results, names: Sequence[str], shape: str, body: str) -> None:
    print(f"\n{shape}, {body} bodies, limit {LIMIT}: us per task by N (best of each)")
    head = "".join(f"{n:>12,}" for n in SIZES)
    print(f"  {'contender':<20}{head} {'growth':>8}")
    for name in names:
        cells = [results.get(name, shape, body, n) for n in SIZES]
        row = "".join(f"{m.us:>12.3f}" if m else f"{'-':>12}" for m in cells)
        first, last = cells[0], cells[-1]
        growth = f"{last.us / first.us:.2f}x" if first and last else "-"
        print(f"  {name:<20}{row} {growth:>8}")
    print(f"  growth: us/task at N={SIZES[-1]:,} / at N={SIZES[0]:,}")
    verdicts = growth_target(results, shape, body)
    results.verdicts += verdicts
    for verdict in verdicts:
        print(verdict.line())


# --- memory: one child process per contender ----------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_child(name: str) -> None:
    """Build the 1,000,000-task layered graph from its generator, run it, print the peak."""
    start = time.perf_counter()
    parents = SHAPES["layered"](MEMORY_N)
    if name in ("trio_dag", "trio_dag_py"):
        wanted = MEMORY_CHILDREN[name][1]
        if trio_dag.CORE != wanted:
            sys.exit(f"trio_dag.CORE is {trio_dag.CORE!r}, not {wanted!r}")
        trio_dag.run_sync(build_dag(parents, itertools.repeat(noop)), limit=LIMIT)
    elif name == "handrolled_trio":
        trio.run(handrolled_trio, dict(enumerate(parents)), Same(noop))
    print(json.dumps({"peak_mib": peak_rss_mib(), "seconds": time.perf_counter() - start}))


def memory(results: Results) -> None:
    print(f"\nmemory: layered, {MEMORY_N:,} tasks, noop bodies, limit {LIMIT}; one process each")
    print("  graph built in the child (trio_dag: dag.add from the generator; hand-rolled:")
    print("  its dict of dependencies from the same generator), then run; peak = VmHWM")
    print(f"  {'child':<18} {'peak MiB':>9} {'above base':>11} {'seconds':>8}")
    peaks: dict[str, float] = {}
    for name, (no_ext, _) in MEMORY_CHILDREN.items():
        say(f"memory: {name} ...")
        env = {k: v for k, v in os.environ.items() if k != "TRIO_DAG_NO_EXTENSIONS"}
        if no_ext:
            env["TRIO_DAG_NO_EXTENSIONS"] = no_ext
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name]
        child = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            reason = (child.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"  {name:<18} skipped: {reason}")
            continue
        row = json.loads(child.stdout.splitlines()[-1])
        results.memory.append({"child": name, "n": MEMORY_N, **row})
        peaks[name] = row["peak_mib"]
        above = row["peak_mib"] - peaks.get("baseline", 0.0)
        print(f"  {name:<18} {row['peak_mib']:>9.1f} {above:>11.1f} {row['seconds']:>8.2f}")
    print("  baseline: the interpreter with trio and trio_dag imported, nothing built")
    what = f"{FAST} peak RSS <= 0.5x handrolled_trio's ({MEMORY_N:,} tasks)"
    if FAST in peaks and "handrolled_trio" in peaks:
        ratio = peaks[FAST] / peaks["handrolled_trio"]
        text = f"{what}: {ratio:.2f}x ({peaks[FAST]:.0f} vs {peaks['handrolled_trio']:.0f} MiB)"
        verdict = Verdict(ratio <= 0.5, text)
    else:
        verdict = Verdict(None, f"{what}: needs both children")
    results.verdicts.append(verdict)
    print(verdict.line())


# --- main ---------------------------------------------------------------------


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def select(names: str) -> list[Contender]:
    """The contenders named (comma list, or "all"), minus those that cannot run here."""
    wanted = list(CONTENDERS) if names == "all" else [n.strip() for n in names.split(",")]
    unknown = [n for n in wanted if n not in CONTENDERS]
    if unknown:
        sys.exit(f"unknown contenders {unknown}; choose among {', '.join(CONTENDERS)}")
    chosen = []
    for name in wanted:
        reason = CONTENDERS[name].missing()
        if reason is None:
            chosen.append(CONTENDERS[name])
        else:
            print(f"skipped {name}: {reason}")
    return chosen


def run_checks(contenders: Sequence[Contender]) -> bool:
    """The correctness check of every contender; prints and returns whether all passed."""
    ok = True
    for contender in contenders:
        problems = check(contender)
        ok = ok and not problems
        status = "ok" if not problems else "FAILED"
        print(f"check {contender.name:<20} {status}")
        for problem in problems:
            print(f"  {problem}")
    return ok


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog=f"contenders: {', '.join(CONTENDERS)}",
    )
    parser.add_argument("--shape", default="layered", choices=[*SHAPES, "all"])
    parser.add_argument("--body", default="both", choices=[*BODY_KINDS, "both"])
    parser.add_argument("--n", type=int, default=TARGET_N, help="tasks per graph")
    parser.add_argument(
        "--sizes", action="store_true", help=f"run N = {', '.join(f'{n:,}' for n in SIZES)}"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help=f"best of this many (graphs under {TARGET_N:,} tasks: {TARGET_N:,}/N, up to 100)",
    )
    parser.add_argument("--contenders", default="all", help="comma list (default: all)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every measurement")
    parser.add_argument(
        "--memory", action="store_true", help=f"peak RSS of {MEMORY_N:,} tasks, one process each"
    )
    parser.add_argument("--check", action="store_true", help="run the correctness check only")
    parser.add_argument("--memory-child", choices=list(MEMORY_CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    meta = {
        "python": platform.python_version(),
        "trio": version("trio"),
        "dask": version("dask"),
        "trio_dag_core_default": trio_dag.CORE,
        "limit": LIMIT,
        "load_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    print(f"python {meta['python']}, trio {meta['trio']}, dask {meta['dask'] or '-'}; {load()}")
    results = Results()
    ok = True
    if args.memory:
        memory(results)
    else:
        contenders = select(args.contenders)
        ok = run_checks(contenders)
        if not ok:
            print("a contender failed its check: not timing")
        elif not args.check:
            time_all(args, contenders, results)
    print(f"\n{load()}")
    if args.json:
        meta["load_after"] = os.getloadavg()
        document = {
            "meta": meta,
            "measurements": [m.to_json() for m in results.measurements.values()],
            "targets": [asdict(v) for v in results.verdicts],
            "memory": results.memory,
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if ok else 1


def time_all(args: argparse.Namespace, contenders: Sequence[Contender], results: Results) -> None:
    """Time every contender on every selected shape, body kind and size; print the tables."""
    shapes = list(SHAPES) if args.shape == "all" else [args.shape]
    kinds = list(BODY_KINDS) if args.body == "both" else [args.body]
    sizes = SIZES if args.sizes else (args.n,)
    for contender in contenders:
        skipped = [kind for kind in kinds if kind not in contender.bodies]
        if skipped:
            print(f"skipped {contender.name} with {'/'.join(skipped)} bodies: no event loop")
    for shape in shapes:
        for n in sizes:
            graph = Graph.make(shape, n)
            for kind in kinds:
                able = [c for c in contenders if kind in c.bodies]
                for m in measure(able, graph, kind, repeats_for(n, args.repeat)):
                    results.add(m)
            del graph
            if not args.sizes:
                for kind in kinds:
                    print_table(results, [c.name for c in contenders], shape, kind, n)
        if args.sizes:
            for kind in kinds:
                print_sizes(results, [c.name for c in contenders], shape, kind)


if __name__ == "__main__":
    sys.exit(main())

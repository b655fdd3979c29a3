"""Scheduling overhead of trio_dag against what Trio, asyncio and dask users run today.

Every contender on the same seeded graph, ``limit=64`` wherever one is
taken, each figure measured by pyperf: worker processes that each take
warm-up values then timed ones, reported as mean ± standard deviation. A
contender's value is the run of one graph per iteration (several small
graphs under 10,000 tasks), divided by its tasks, timed from its structure
already built: trio_dag from a DAG built with ``dag.add`` and not yet frozen
(freezing counts), the hand-rolled versions from their dict of dependencies,
dask from its task dict. Building that structure is a benchmark of its own
("build" column). Ratios are taken between the means of one invocation.
Before anything is timed, every contender runs on small graphs with
recording bodies, and the timing stops if one of them skips, repeats or
reorders tasks. See ``bench/_contenders.py`` for the graphs and contenders.

    python bench/overhead.py                    # layered, N=100,000, noop and yield bodies
    python bench/overhead.py --fast             # fewer processes: rough figures, quicker
    python bench/overhead.py --rigorous -o after.json
    python bench/overhead.py --shape all --body noop -o out.json
    python bench/overhead.py --sizes --contenders trio_dag,trio_dag_py,handrolled_trio
    python bench/overhead.py --memory           # peak RSS, 1,000,000 tasks, fresh processes
    python bench/overhead.py --check            # the correctness check alone
    python -m pyperf compare_to before.json after.json --table

pyperf's options apply: ``-p``/``--processes``, ``-n``/``--values`` (not
``--n``, the graph size), ``-w``/``--warmups``, ``--fast``, ``--rigorous``,
``--debug-single-value``, ``-o``/``--output`` FILE (pyperf JSON, the memory
figures included, in bytes), ``--append`` FILE. The trio_dag_py contender
runs (and builds) with the pure-Python backend selected in-process
(``_native.BACKEND``); ``bench/build.py`` also measures that core in
processes started with ``TRIO_DAG_NO_EXTENSIONS=1``. pyperf is in the
``bench`` extra: ``pip install '.[bench]'``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # last: only for _contenders, _perf

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
from _perf import INSTALL, Spread, have_pyperf, memory_runs, peak_rss_bytes, runner, save_memory

import trio_dag

SIZES = (1_000, 10_000, 100_000, 1_000_000)
TARGET_N = 100_000
MEMORY_N = 1_000_000
MIB = 1024 * 1024
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
    """One contender on one graph with one body kind: pyperf's spreads, in us per task."""

    contender: str
    shape: str
    body: str
    n: int
    run: Spread
    build: Spread | None

    @property
    def us(self) -> float:
        """Mean run, in microseconds per task."""
        return self.run.mean


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

    def add(self, m: Measurement) -> None:
        self.measurements[m.contender, m.shape, m.body, m.n] = m

    def get(self, contender: str, shape: str, body: str, n: int) -> Measurement | None:
        return self.measurements.get((contender, shape, body, n))


TASKS_PER_VALUE = 10_000


def graphs_per_value(n: int) -> int:
    """Small graphs run several times per value, so that a value is at least 10,000 tasks."""
    return max(1, TASKS_PER_VALUE // n)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


# --- what a worker times --------------------------------------------------------


@functools.cache
def graph_of(shape: str, n: int) -> Graph:
    """The graph, made once per process (a worker makes only the one it times)."""
    return Graph.make(shape, n)


def time_runs(loops: int, name: str, shape: str, n: int, body: str) -> float:
    """Seconds of *loops* iterations' runs; an iteration builds (untimed) and runs graphs."""
    contender = CONTENDERS[name]
    graph = graph_of(shape, n)
    total = 0.0
    for _ in range(loops * graphs_per_value(n)):
        bodies = [BODIES[contender.loop, body]] * graph.n
        structure = contender.build(graph, bodies)
        gc.collect()
        total += contender.run(structure)
        del structure, bodies
    return total


def time_builds(loops: int, name: str, shape: str, n: int) -> float:
    """Seconds of *loops* iterations' builds of the contender's structure (noop bodies)."""
    contender = CONTENDERS[name]
    graph = graph_of(shape, n)
    body = BODIES[contender.loop, "noop"]
    total = 0.0
    for _ in range(loops * graphs_per_value(n)):
        bodies = [body] * graph.n
        gc.collect()
        start = time.perf_counter()
        structure = contender.build(graph, bodies)
        total += time.perf_counter() - start
        del structure, bodies
    return total


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
        if py is not None and py.build is not None:
            verdict.text += f" (build + run: {py.us + py.build.mean:.3g})"
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
    values = next((m.run.values for name in names if (m := results.get(name, shape, body, n))), 0)
    print(f"\n{shape}, {body} bodies, N={n:,}, limit {LIMIT}; mean ± std dev of {values} values")
    print(f"  {'contender':<20} {'us/task':>17} {'ratio':>8} {'build us/task':>17}  what")
    fast = results.get(FAST, shape, body, n)
    for name in names:
        m = results.get(name, shape, body, n)
        if m is None:
            continue
        ratio = f"{m.us / fast.us:.2f}x" if fast is not None else "-"
        build = m.build.text() if m.build is not None else "-"
        about = CONTENDERS[name].about
        print(f"  {name:<20} {m.run.text():>17} {ratio:>8} {build:>17}  {about}")
    if fast is not None:
        print(f"  ratio: mean / {FAST}'s mean (above 1: {FAST} is faster); build: not in us/task")
    verdicts = speed_targets(results, shape, body, n)
    results.verdicts += verdicts
    for verdict in verdicts:
        print(verdict.line())


def print_sizes(results: Results, names: Sequence[str], shape: str, body: str) -> None:
    print(f"\n{shape}, {body} bodies, limit {LIMIT}: mean us per task by N")
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


# --- memory: fresh child processes --------------------------------------------


def memory_child(name: str, n: int) -> None:
    """Build the *n*-task layered graph from its generator, run it, print the peak."""
    start = time.perf_counter()
    parents = SHAPES["layered"](n)
    if name in ("trio_dag", "trio_dag_py"):
        wanted = MEMORY_CHILDREN[name][1]
        if trio_dag.CORE != wanted:
            sys.exit(f"trio_dag.CORE is {trio_dag.CORE!r}, not {wanted!r}")
        trio_dag.run_sync(build_dag(parents, itertools.repeat(noop)), limit=LIMIT)
    elif name == "handrolled_trio":
        trio.run(handrolled_trio, dict(enumerate(parents)), Same(noop))
    print(json.dumps({"peak": peak_rss_bytes(), "seconds": time.perf_counter() - start}))


def memory(args: argparse.Namespace, results: Results) -> None:
    runs, n = memory_runs(args), args.memory_n
    print(f"\nmemory: layered, {n:,} tasks, noop bodies, limit {LIMIT}; peak RSS (VmHWM)")
    print(f"  of {runs} fresh processes each (mean ± std dev); graph built in the child")
    print("  (trio_dag: dag.add from the generator; hand-rolled: its dict of dependencies")
    print("  from the same generator), then run")
    print(f"  {'child':<18} {'peak MiB':>15} {'above base':>11} {'seconds':>8}")
    peaks: dict[str, float] = {}
    for name, (no_ext, _) in MEMORY_CHILDREN.items():
        env = {k: v for k, v in os.environ.items() if k != "TRIO_DAG_NO_EXTENSIONS"}
        if no_ext:
            env["TRIO_DAG_NO_EXTENSIONS"] = no_ext
            env.pop("TRIO_DAG_REQUIRE_EXTENSION", None)
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name]
        command += ["--memory-n", str(n)]
        rows = []
        for run in range(runs):
            say(f"memory: {name} {run + 1}/{runs} ...")
            child = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if child.returncode != 0:
                reason = (child.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"  {name:<18} skipped: {reason}")
                break
            rows.append(json.loads(child.stdout.splitlines()[-1]))
        if len(rows) < runs:
            continue
        peak = Spread.of_values([row["peak"] / MIB for row in rows])
        seconds = Spread.of_values([row["seconds"] for row in rows])
        peaks[name] = peak.mean
        above = peak.mean - peaks.get("baseline", 0.0)
        print(f"  {name:<18} {peak.text(1):>15} {above:>11.1f} {seconds.mean:>8.2f}")
        save_memory(
            args,
            f"memory/layered/{n}/{name}/peak_rss",
            [row["peak"] for row in rows],
            {"description": f"peak RSS, {name}, {n:,} tasks built and run"},
        )
    print("  baseline: the interpreter with trio and trio_dag imported, nothing built")
    what = f"{FAST} peak RSS <= 0.5x handrolled_trio's ({n:,} tasks)"
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


def select(names: str, *, quiet: bool = False) -> list[Contender]:
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
        elif not quiet:
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


def add_options(parser: argparse.ArgumentParser) -> None:
    """This script's options, beside pyperf's."""
    parser.epilog = f"contenders: {', '.join(CONTENDERS)}"
    parser.add_argument("--shape", default="layered", choices=[*SHAPES, "all"])
    parser.add_argument("--body", default="both", choices=[*BODY_KINDS, "both"])
    parser.add_argument("--n", type=int, default=TARGET_N, help="tasks per graph")
    parser.add_argument(
        "--sizes", action="store_true", help=f"run N = {', '.join(f'{n:,}' for n in SIZES)}"
    )
    parser.add_argument("--contenders", default="all", help="comma list (default: all)")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="peak RSS of --memory-n tasks, fresh processes (3; --fast 2; --rigorous 5)",
    )
    parser.add_argument(
        "--memory-n", type=int, default=MEMORY_N, help=f"tasks of --memory (default {MEMORY_N:,})"
    )
    parser.add_argument("--check", action="store_true", help="run the correctness check only")


def forward(args: argparse.Namespace) -> list[str]:
    """What a worker needs to make the same bench_time_func calls as the master."""
    names = ",".join(c.name for c in select(args.contenders, quiet=True))
    words = [
        f"--shape={args.shape}",
        f"--body={args.body}",
        f"--n={args.n}",
        f"--contenders={names}",
    ]
    return [*words, "--sizes"] if args.sizes else words


def main(argv: Sequence[str] | None = None) -> int:
    child = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    child.add_argument("--memory-child", choices=list(MEMORY_CHILDREN))
    child.add_argument("--memory-n", type=int, default=MEMORY_N)
    known, _ = child.parse_known_args(argv)
    if known.memory_child:  # no pyperf in a memory child: it would weigh on the baseline
        memory_child(known.memory_child, known.memory_n)
        return 0
    if not have_pyperf():  # --check needs no pyperf
        parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
        add_options(parser)
        plain = parser.parse_known_args(argv)[0]
        if not plain.check:
            sys.exit(INSTALL)
        return 0 if run_checks(select(plain.contenders)) else 1
    perf, args = runner(__doc__ or "", add_options, forward, argv)
    if args.n < 1 or args.memory_n < 1:
        perf.argparser.error("--n and --memory-n must be at least 1")
    perf.metadata.update(
        {
            "trio_dag_core_default": trio_dag.CORE,
            "trio_version": version("trio") or "-",
            "limit": LIMIT,
        }
    )
    if args.worker:
        time_all(perf, args, select(args.contenders, quiet=True), None)
        return 0
    print(
        f"python {platform.python_version()}, trio {version('trio')}, "
        f"dask {version('dask') or '-'}; {load()}"
    )
    results = Results()
    ok = True
    if args.memory:
        memory(args, results)
    else:
        contenders = select(args.contenders)
        ok = run_checks(contenders)
        if not ok:
            print("a contender failed its check: not timing")
        elif not args.check:
            time_all(perf, args, contenders, results)
    print(f"\n{load()}")
    for file in dict.fromkeys(f for f in (args.output, args.append) if f):
        if os.path.exists(file):
            print(f"pyperf JSON in {file}: python -m pyperf compare_to BEFORE.json {file}")
    return 0 if ok else 1


def time_all(
    perf: Any, args: argparse.Namespace, contenders: Sequence[Contender], results: Results | None
) -> None:
    """Time every contender on every selected shape, body kind and size; print the tables.

    The master and every worker make the same bench_time_func calls in the
    same order (pyperf runs call K in worker K); *results* is None in a worker.
    """
    shapes = list(SHAPES) if args.shape == "all" else [args.shape]
    kinds = list(BODY_KINDS) if args.body == "both" else [args.body]
    sizes = SIZES if args.sizes else (args.n,)
    if results is not None:
        for contender in contenders:
            skipped = [kind for kind in kinds if kind not in contender.bodies]
            if skipped:
                print(f"skipped {contender.name} with {'/'.join(skipped)} bodies: no event loop")
    for shape in shapes:
        for n in sizes:
            inner = n * graphs_per_value(n)
            builds: dict[str, Spread] = {}
            for c in contenders:
                meta = {"description": f"build: {c.about}"}
                name = f"overhead/{shape}/{n}/{c.name}/build"
                bench = perf.bench_time_func(
                    name, time_builds, c.name, shape, n, inner_loops=inner, metadata=meta
                )
                if bench is not None:
                    builds[c.name] = Spread.of(bench).scaled(1e6)
            for kind in kinds:
                for c in contenders:
                    if kind not in c.bodies:
                        continue
                    meta = {"description": f"run, {kind} bodies: {c.about}"}
                    name = f"overhead/{shape}/{n}/{kind}/{c.name}"
                    bench = perf.bench_time_func(
                        name, time_runs, c.name, shape, n, kind, inner_loops=inner, metadata=meta
                    )
                    if results is not None and bench is not None:
                        run = Spread.of(bench).scaled(1e6)
                        results.add(Measurement(c.name, shape, kind, n, run, builds.get(c.name)))
            graph_of.cache_clear()
            if results is not None and not args.sizes:
                for kind in kinds:
                    print_table(results, [c.name for c in contenders], shape, kind, n)
        if results is not None and args.sizes:
            for kind in kinds:
                print_sizes(results, [c.name for c in contenders], shape, kind)


if __name__ == "__main__":
    sys.exit(main())

"""What running task bodies on an executor costs: trio_dag's dispatch against the executor's own.

Three measurements, each the best of ``--repeat`` rounds, the contenders
taking turns within a round:

- **process dispatch**: ``--n`` independent tasks with a no-op sync body,
  ``run_in="process"`` (trio-parallel's worker processes), against a plain
  Trio program that opens a trio-parallel worker context and calls
  ``context.run_sync`` once per item from a nursery, as many at once as
  trio-parallel's default limiter lets (the CPU count; trio_dag's run goes
  through the same limiter, and starts no more of its tasks at once than it
  lets: the others wait in the run's ready queue). Both pay for starting their workers: a run
  opens its worker context and closes it as it ends, and so does the plain
  program.
- **Dask dispatch**: the same tasks on a ``LocalCluster`` of 2
  single-threaded worker processes (started once, warm), through
  ``executors={"cluster": client}``, against ``client.submit`` of each item
  (``pure=False``, as the run submits them) then one ``client.gather``,
  from a plain loop.
- **CPU-bound work**: ``--work-tasks`` tasks of a pure-Python loop (about
  ``--work-ms`` ms each, measured here first), ``run_in="thread"`` against
  ``run_in="process"``: the GIL keeps threads on one core, 2 worker
  processes use 2. The processes' run starts its workers (spawned, each
  importing this script and trio_dag) within the time measured, so the
  work must be long enough to repay that: 32 tasks of 300 ms by default.

A dispatch figure is µs per task, the DAG's building included; our overhead
is how much longer trio_dag takes than the executor alone. Beside it, the
CPU time of this process per task (its threads and, on the LocalCluster,
the scheduler; not the workers), which a busy machine disturbs less than
the wall-clock time. The issue's
targets: at most 10% overhead on either executor, and the CPU-bound work at
least 1.7x faster in 2 processes than in threads on 2 cores. On a machine
busy with other work every figure moves; the load average printed with the
table says how busy it was. The CPU-bound figure needs idle cores: on Linux
with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``),
the processes of one session share one fair share of the CPUs, so while
other sessions keep the cores busy, 2 worker processes get no more CPU time
than one thread would.

pyperf is not used to time: its worker processes would each start their own
pools of worker processes (and a Dask cluster), so every value would be
taken against cold workers and a machine crowded by the benchmark's own
processes. ``-o FILE`` still writes pyperf's JSON (one value per round, in
seconds per task), which ``python -m pyperf compare_to`` reads.

    python bench/executors.py [--n N] [--repeat N] [--only process,dask,cpu]
                              [--work-tasks N] [--work-ms MS] [-o FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

import trio_dag

PARTS = ("process", "dask", "cpu")
TARGET_OVERHEAD = 0.10  # at most this much more time than the executor alone
TARGET_SPEEDUP = 1.7  # 2 processes against threads, on 2 cores
WORKERS = 2  # the Dask cluster's worker processes


def noop(i: int) -> int:
    """The dispatch benchmarks' body: its argument back."""
    return i


def spin(loops: int) -> int:
    """CPU-bound pure Python: a sum over *loops* steps, holding the GIL throughout."""
    total = 0
    for k in range(loops):
        total += k * k % 7
    return total


def loops_for(ms: float) -> int:
    """How many steps of :func:`spin` take about *ms* milliseconds here."""
    probe = 200_000
    began = time.perf_counter()
    spin(probe)
    seconds = time.perf_counter() - began
    return max(1, int(probe * ms / 1000 / seconds))


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User and system CPU time so far of this process (its threads, and with a
    LocalCluster its scheduler; not the worker processes), or with
    ``RUSAGE_CHILDREN`` of its child processes that have ended."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, float]:
    """Wall-clock seconds of ``fn()``, after a garbage collection; this process's CPU
    seconds meanwhile; and those of its children that ended meanwhile (trio-parallel's
    workers, at the end of their run)."""
    gc.collect()
    cpu = cpu_seconds()
    children = cpu_seconds(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    fn()
    wall = time.perf_counter() - began
    return wall, cpu_seconds() - cpu, cpu_seconds(resource.RUSAGE_CHILDREN) - children


def ours(n: int, run_in: str, executors: dict[str, Any] | None = None) -> None:
    """*n* no-op tasks on *run_in*, through a run; checks their outputs."""
    dag = trio_dag.DAG()
    handles = [dag.add(noop, i, run_in=run_in) for i in range(n)]
    report = trio.run(lambda: trio_dag.run(dag, executors=executors))
    if [report[h] for h in handles] != list(range(n)):
        raise SystemExit(f"{run_in}: a task gave a wrong output")


def direct_processes(n: int) -> None:
    """*n* calls of :func:`noop` through a trio-parallel worker context, from a nursery."""
    import trio_parallel

    results: list[int] = [-1] * n

    async def call(context: Any, i: int) -> None:
        results[i] = await context.run_sync(noop, i)

    async def main() -> None:
        async with trio_parallel.open_worker_context() as context:
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(call, context, i)

    trio.run(main)
    if results != list(range(n)):
        raise SystemExit("trio-parallel: a call gave a wrong output")


def direct_dask(client: Any, n: int) -> None:
    """*n* submissions of :func:`noop`, then one gather."""
    futures = [client.submit(noop, i, pure=False) for i in range(n)]
    if client.gather(futures) != list(range(n)):
        raise SystemExit("dask: a call gave a wrong output")


def work(tasks: int, loops: int, run_in: str) -> None:
    """*tasks* independent CPU-bound tasks on *run_in*."""
    dag = trio_dag.DAG()
    handles = [dag.add(spin, loops, run_in=run_in) for _ in range(tasks)]
    report = trio.run(trio_dag.run, dag)
    if len({report[h] for h in handles}) != 1:
        raise SystemExit(f"{run_in}: the tasks disagree")


class Figures:
    """The rounds' seconds of each contender, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.cores: dict[str, list[float]] = {}  # CPU seconds, children's too, per second
        self.per: dict[str, int] = {}  # what a figure is divided by: tasks

    def add(self, name: str, per: int, measured: tuple[float, float, float]) -> None:
        wall, cpu, children = measured
        self.seconds.setdefault(name, []).append(wall)
        self.cpu.setdefault(name, []).append(cpu)
        self.cores.setdefault(name, []).append((cpu + children) / wall)
        self.per[name] = per

    def busy(self, name: str) -> float:
        """The cores kept busy (CPU seconds of this process and its ended children per
        second) in the best round."""
        values = self.seconds[name]
        return self.cores[name][values.index(min(values))]

    def best(self, name: str) -> float:
        """The best round's wall-clock seconds per task."""
        return min(self.seconds[name]) / self.per[name]

    def best_cpu(self, name: str) -> float:
        """The least CPU seconds per task of this process in a round."""
        return min(self.cpu[name]) / self.per[name]

    def save(self, path: str) -> None:
        """Write pyperf JSON: one benchmark per contender, one value per round."""
        try:
            import pyperf
        except ImportError:
            sys.exit("-o needs pyperf: pip install pyperf (or pip install '.[bench]')")
        suite = []
        for name, values in self.seconds.items():
            run = pyperf.Run(
                [v / self.per[name] for v in values],
                metadata={"name": f"executors/{name}", "unit": "second", "loops": 1},
                collect_metadata=False,
            )
            suite.append(pyperf.Benchmark([run]))
        pyperf.BenchmarkSuite(suite).dump(path, replace=True)


def start_cluster() -> tuple[Any, Any]:
    """A LocalCluster of :data:`WORKERS` single-threaded processes and its client."""
    import logging

    import distributed

    logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = distributed.LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    )
    return cluster, distributed.Client(cluster)


def measure(args: argparse.Namespace, say: Callable[[str], None]) -> Figures:
    """Every contender of the parts asked for, over ``--repeat`` rounds."""
    figures = Figures()
    n, tasks = args.n, args.work_tasks
    loops = loops_for(args.work_ms) if "cpu" in args.only else 0
    cluster = client = None
    if "dask" in args.only:
        say("starting the Dask cluster")
        cluster, client = start_cluster()
        on_cluster = {"cluster": client}
        direct_dask(client, WORKERS * 10)  # warm: the workers have imported noop
    try:
        for turn in range(1, args.repeat + 1):
            if "process" in args.only:
                say(f"round {turn}/{args.repeat}: trio-parallel")
                figures.add("process/trio_parallel", n, timed(lambda: direct_processes(n)))
                say(f"round {turn}/{args.repeat}: run_in='process'")
                figures.add("process/trio_dag", n, timed(lambda: ours(n, "process")))
            if client is not None:
                say(f"round {turn}/{args.repeat}: dask")
                figures.add("dask/client", n, timed(lambda: direct_dask(client, n)))
                say(f"round {turn}/{args.repeat}: run_in='cluster'")
                figures.add("dask/trio_dag", n, timed(lambda: ours(n, "cluster", on_cluster)))
            if "cpu" in args.only:
                say(f"round {turn}/{args.repeat}: CPU-bound, threads")
                figures.add("cpu/thread", tasks, timed(lambda: work(tasks, loops, "thread")))
                say(f"round {turn}/{args.repeat}: CPU-bound, processes")
                figures.add("cpu/process", tasks, timed(lambda: work(tasks, loops, "process")))
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return figures


def verdict(ok: bool) -> str:
    """How a target fared, for the printout."""
    return "met" if ok else "NOT MET"


def report(args: argparse.Namespace, figures: Figures) -> bool:
    """Print the table; whether every target shown was met."""
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"N={args.n:,} no-op tasks per dispatch figure, best of {args.repeat}; "
        f"{cpus} CPUs, load average {load}\n"
    )
    if {"process", "dask"} & set(args.only):
        print(
            "| what | µs/task | executor alone µs/task | our overhead | target "
            "| CPU µs/task, ours / alone |"
        )
        print("|---|---:|---:|---:|---|---:|")
    ok = True
    for part, label, alone in (
        ("process", "run_in='process' (trio-parallel)", "trio_parallel"),
        ("dask", f"Dask LocalCluster, {WORKERS} workers", "client"),
    ):
        if part not in args.only:
            continue
        mine = figures.best(f"{part}/trio_dag")
        theirs = figures.best(f"{part}/{alone}")
        overhead = mine / theirs - 1
        met = overhead <= TARGET_OVERHEAD
        ok &= met
        cpu = (figures.best_cpu(f"{part}/trio_dag"), figures.best_cpu(f"{part}/{alone}"))
        print(
            f"| {label} | {mine * 1e6:,.1f} | {theirs * 1e6:,.1f} | {overhead:+.1%} | "
            f"≤ {TARGET_OVERHEAD:.0%}: {verdict(met)} | {cpu[0] * 1e6:,.0f} / "
            f"{cpu[1] * 1e6:,.0f} |"
        )
    if "cpu" in args.only:
        threads = figures.best("cpu/thread")
        processes = figures.best("cpu/process")
        speedup = threads / processes
        met = speedup >= TARGET_SPEEDUP
        ok &= met
        print(
            f"\nCPU-bound: {args.work_tasks} tasks of ~{args.work_ms:g} ms of pure Python: "
            f"threads {threads * args.work_tasks:.2f} s "
            f"({figures.busy('cpu/thread'):.2f} cores busy), processes "
            f"{processes * args.work_tasks:.2f} s ({figures.busy('cpu/process'):.2f} cores "
            f"busy): {speedup:.2f}x (≥ {TARGET_SPEEDUP:g}x on 2 cores: {verdict(met)})"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the targets; the exit status is 1 if one is not met."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=2000, help="tasks per dispatch figure (default: %(default)s)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; the best is kept (default: %(default)s)"
    )
    parser.add_argument(
        "--only",
        type=lambda text: tuple(text.split(",")),
        default=PARTS,
        help=f"which parts, comma-separated, of {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--work-tasks",
        type=int,
        default=32,
        help="CPU-bound tasks (default: %(default)s)",
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=300.0,
        help="milliseconds of pure Python per CPU-bound task (default: %(default)s)",
    )
    parser.add_argument("-o", "--output", help="write the rounds' values as pyperf JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1 or args.work_tasks < 1 or args.work_ms <= 0:
        parser.error("--n, --repeat and --work-tasks must be at least 1, --work-ms above 0")
    if unknown := set(args.only) - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")

    def say(text: str) -> None:
        if not args.quiet:
            print(f"\r{text:<50}", end="", file=sys.stderr, flush=True)

    figures = measure(args, say)
    say("")
    if not args.quiet:
        print("\r", end="", file=sys.stderr, flush=True)
    ok = report(args, figures)
    if args.output:
        figures.save(args.output)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The contenders of bench/overhead.py run every task once, after its dependencies.

The benchmark's figures mean something only if each contender does the work:
this runs its correctness check (every shape, each body kind, N=300) so a
contender that skips, repeats or reorders tasks fails here. Nothing is timed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "overhead.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_overhead", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


overhead = _load()


@pytest.mark.parametrize("name", list(overhead.CONTENDERS))
def test_contender_runs_every_task_once_after_its_dependencies(name: str) -> None:
    contender = overhead.CONTENDERS[name]
    reason = contender.missing()  # dask is a benchmark extra; the compiled core may be unbuilt
    if reason is not None:
        pytest.skip(reason)
    assert overhead.check(contender, n=300) == []


def test_the_check_catches_a_contender_that_skips_tasks() -> None:
    honest = overhead.CONTENDERS["floor_await"]
    cheat = overhead.Contender(
        "cheat",
        "awaits every other task",
        "trio",
        lambda graph, bodies: honest.build(graph, bodies),
        lambda structure: honest.run((structure[0][::2], structure[1])),
        limited=False,
    )
    assert any("other than once" in problem for problem in overhead.check(cheat, n=300))


def test_the_check_catches_a_contender_that_ignores_dependencies() -> None:
    spawn = overhead.CONTENDERS["floor_spawn"]
    cheat = overhead.Contender("cheat", "spawns all", "trio", spawn.build, spawn.run)
    problems = overhead.check(cheat, n=300)
    assert any("before a dependency ended" in problem for problem in problems)
    assert any("over the limit" in problem for problem in problems)

"""A probe for the engine tests: task bodies report to it what they did and when.

Every attempt records its start and end on the Trio clock (relative to the
probe's creation), how many bodies were running at once and how much of each
resource they held. The end is recorded in a ``finally``, so a cancelled
attempt is seen leaving too: ``probe.running`` empty means nothing runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import trio

import trio_dag


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # made outside Trio (a test that calls trio.run itself)
        return 0.0


class Probe:
    """What task bodies did: start order, spans, concurrency, resource use."""

    def __init__(self) -> None:
        self.t0 = _now()
        self.started: list[str] = []  # one entry per attempt, in start order
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.running: set[str] = set()
        self.peak = 0
        self.in_use: dict[str, float] = {}
        self.peak_use: dict[str, float] = {}

    def now(self) -> float:
        return trio.current_time() - self.t0

    @contextmanager
    def attempt(self, uses: Mapping[str, float] | None = None) -> Iterator[None]:
        name = trio_dag.current_task().name
        assert name not in self.running, f"{name} runs twice at once"
        began = self.now()
        self.started.append(name)
        self.running.add(name)
        self.peak = max(self.peak, len(self.running))
        for resource, amount in (uses or {}).items():
            self.in_use[resource] = self.in_use.get(resource, 0.0) + amount
            self.peak_use[resource] = max(self.peak_use.get(resource, 0.0), self.in_use[resource])
        try:
            yield
        finally:
            self.running.discard(name)
            for resource, amount in (uses or {}).items():
                self.in_use[resource] -= amount
            self.spans.setdefault(name, []).append((began, self.now()))

    def start(self, name: str, attempt: int = 1) -> float:
        """When attempt *attempt* of *name* started."""
        return self.spans[name][attempt - 1][0]

    def end(self, name: str, attempt: int = -1) -> float:
        """When attempt *attempt* (default: the last) of *name* ended."""
        return self.spans[name][attempt if attempt < 0 else attempt - 1][1]


async def nap(
    probe: Probe,
    seconds: float,
    *deps: Any,
    uses: Mapping[str, float] | None = None,
    fail: BaseException | None = None,
) -> str:
    """Sleep *seconds* of Trio time, then raise *fail* or return the task's name."""
    with probe.attempt(uses):
        await trio.sleep(seconds)
        if fail is not None:
            raise fail
    return trio_dag.current_task().name


def add_nap(
    dag: trio_dag.DAG,
    probe: Probe,
    name: str,
    seconds: float,
    *deps: Any,
    uses: Mapping[str, float] | None = None,
    fail: BaseException | None = None,
    **options: Any,
) -> trio_dag.Handle[str]:
    """Add a :func:`nap` task named *name*; *deps* are passed as arguments (dependencies)."""
    kwargs: dict[str, Any] = {}
    if uses:
        kwargs["uses"] = uses
    if fail is not None:
        kwargs["fail"] = fail
    return dag.add(
        nap, probe, seconds, *deps, name=name, kwargs=kwargs or None, uses=uses, **options
    )

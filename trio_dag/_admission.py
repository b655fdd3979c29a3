"""Which ready task may start now: weighted resources, the wave barrier, Threshold groups.

The core's heap already holds ready tasks in policy order (waves first under
``strategy="waves"``); admission only decides whether the next ones may start.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ResourceError
from ._impl import core
from ._policies import Strategy, Threshold

if TYPE_CHECKING:
    from ._snapshot import Snapshot

__all__ = ["Admission"]

Uses = tuple[tuple[str, float], ...]


class Admission:
    """Resources, waves and Threshold gating for one run.

    ``plain`` is True when none applies: the engine then pops the core directly.
    """

    def __init__(
        self,
        snap: Snapshot,
        st: Any,
        resources: Mapping[str, float] | None,
        strategy: Strategy,
    ) -> None:
        self.st = st
        states = st.states()
        self.free: dict[str, float] = dict(resources or {})
        # Tasks waiting for a resource, in the order found, by the resource
        # they lack; and those woken from a queue back into the heap.
        self.waiting: dict[str, deque[int]] = {}
        self.woken: set[int] = set()
        self.uses: list[Uses] | None = None
        if snap.has_uses:
            self.uses = [o.uses for o in snap._opts[: snap.n]]
            for i, uses in enumerate(self.uses):
                if uses and states[i] != core.EXCLUDED:
                    for name, amount in uses:
                        capacity = self.free.get(name)
                        if capacity is None or amount > capacity:
                            raise ResourceError(snap.name(i), name, amount, capacity)
        self.threshold = strategy.n if isinstance(strategy, Threshold) else 0
        self.group_left = 0
        self.levels: array[int] | None = None
        self.remaining: list[int] = []
        self.wave = 0
        if strategy == "waves":
            levels = snap.graph.levels()
            remaining = [0] * (max(levels, default=-1) + 1)
            for i, level in enumerate(levels):
                if states[i] != core.EXCLUDED:
                    remaining[level] += 1
            self.levels = levels
            self.remaining = remaining
            self._advance()
        self.plain = self.uses is None and self.levels is None and not self.threshold

    def open(self, retry_waiting: int) -> bool:
        """Whether Threshold lets tasks start now.

        A group opens when at least ``n`` tasks are ready, or when no more
        can become ready before something starts: nothing runs, or no task
        waits for dependencies and none waits to retry. An open group stays
        open until as many tasks as were ready when it opened have started.
        """
        if not self.threshold or self.group_left > 0:
            return True
        st = self.st
        # Tasks waiting for a resource count as ready, not as running.
        parked = self.parked()
        ready = st.ready + parked
        running = st.running - parked
        waiting = st.total - st.ended - ready - running
        if ready >= self.threshold or running == 0 or (waiting == 0 and retry_waiting == 0):
            self.group_left = ready
            return True
        return False

    def take(self) -> int:
        """Pop the next task that may start now (taking its resources), or -1.

        A task whose resources do not fit waits, out of the ready heap, in the
        queue of the first resource it lacks, until a release of that resource
        can let it start: so each waiting task is looked at again only when it
        may fit, however many wait. A task that needs a resource others
        already wait for waits behind them (it cannot starve them), while
        tasks that need other resources, or none, go ahead.
        """
        st = self.st
        levels = self.levels
        uses_of = self.uses
        while True:
            v: int = st.pop()
            if v < 0:
                return -1
            if levels is not None and levels[v] > self.wave:
                # The heap is ordered by wave first: nothing behind v may start.
                st.push_back(v)
                return -1
            if uses_of is not None:
                uses = uses_of[v]
                if uses:
                    lacking = self._lacking(v, uses)
                    if lacking is not None:
                        self.waiting.setdefault(lacking, deque()).append(v)
                        continue
                    for name, amount in uses:
                        self.free[name] -= amount
            self.group_left -= 1
            return v

    def _lacking(self, v: int, uses: Uses) -> str | None:
        # The first resource task v must wait for, or None when all fit. A
        # task woken from a queue is not held back by the tasks behind it.
        woken = v in self.woken
        if woken:
            self.woken.discard(v)
        for name, amount in uses:
            if self.free[name] < amount or (self.waiting.get(name) and not woken):
                return name
        return None

    def release(self, v: int) -> None:
        """Give back what task *v* took (its attempt ended), waking waiters it may fit."""
        if self.uses is not None:
            for name, amount in self.uses[v]:
                self.free[name] += amount
                self._wake(name)

    def _wake(self, name: str) -> None:
        # Back to the heap go the first waiters of the resource whose
        # amounts fit in what is free; they start in policy order from there.
        queue = self.waiting.get(name)
        if not queue:
            return
        budget = self.free[name]
        uses_of = self.uses
        assert uses_of is not None
        while queue:
            amount = dict(uses_of[queue[0]])[name]
            if amount > budget:
                break
            budget -= amount
            u = queue.popleft()
            self.woken.add(u)
            self.st.push_back(u)
        if not queue:
            del self.waiting[name]

    def parked(self) -> int:
        """How many tasks wait for a resource (taken from the heap, not running)."""
        return sum(map(len, self.waiting.values())) if self.waiting else 0

    def take_waiting(self, wanted: Callable[[int], bool], most: int) -> list[int]:
        """Take up to *most* waiting tasks for which *wanted* is true, in queue order.

        For batches: a task that joins a batch needs no resources of its own.
        """
        taken: list[int] = []
        for name in list(self.waiting):
            queue = self.waiting[name]
            kept: deque[int] = deque()
            for u in queue:
                if len(taken) < most and wanted(u):
                    taken.append(u)
                else:
                    kept.append(u)
            if kept:
                self.waiting[name] = kept
            else:
                del self.waiting[name]
        return taken

    def drain(self) -> list[int]:
        """Every task waiting for a resource, taken out of the queues (to cancel them)."""
        tasks = [u for queue in self.waiting.values() for u in queue]
        self.waiting.clear()
        self.woken.clear()
        return sorted(tasks)

    def ended(self, v: int) -> None:
        """Count task *v* as ended for the wave barrier."""
        if self.levels is not None:
            self.remaining[self.levels[v]] -= 1
            self._advance()

    def _advance(self) -> None:
        remaining = self.remaining
        while self.wave < len(remaining) - 1 and remaining[self.wave] == 0:
            self.wave += 1

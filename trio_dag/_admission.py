"""Which ready task may start now: weighted resources, the wave barrier, Threshold groups.

The core's heap already holds ready tasks in policy order (waves first under
``strategy="waves"``); admission only decides whether the next ones may start.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
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
        ready = st.ready
        waiting = st.total - st.ended - ready - st.running
        if ready >= self.threshold or st.running == 0 or (waiting == 0 and retry_waiting == 0):
            self.group_left = ready
            return True
        return False

    def take(self) -> int:
        """Pop the next task that may start now (taking its resources), or -1."""
        st = self.st
        levels = self.levels
        uses_of = self.uses
        held: list[int] = []
        reserved: dict[str, float] = {}
        found = -1
        while True:
            v: int = st.pop()
            if v < 0:
                break
            if levels is not None and levels[v] > self.wave:
                # The heap is ordered by wave first: nothing behind v may start.
                held.append(v)
                break
            uses = uses_of[v] if uses_of is not None else ()
            if uses and not self._fits(uses, reserved):
                self._set_aside(uses, reserved)
                held.append(v)
                continue
            found = v
            break
        for v in held:
            st.push_back(v)
        if found >= 0:
            self.group_left -= 1
            if uses_of is not None:
                for name, amount in uses_of[found]:
                    self.free[name] -= amount
        return found

    def _fits(self, uses: Uses, reserved: dict[str, float]) -> bool:
        free = self.free
        return all(free[name] - reserved.get(name, 0.0) >= amount for name, amount in uses)

    def _set_aside(self, uses: Uses, reserved: dict[str, float]) -> None:
        # A task that does not fit keeps what is free of each resource it
        # waits for, so tasks behind it cannot starve it; resources that do
        # fit stay usable by the tasks behind it.
        for name, amount in uses:
            left = self.free[name] - reserved.get(name, 0.0)
            if left < amount:
                reserved[name] = reserved.get(name, 0.0) + max(left, 0.0)

    def release(self, v: int) -> None:
        """Give back what task *v* took (its attempt ended)."""
        if self.uses is not None:
            for name, amount in self.uses[v]:
                self.free[name] += amount

    def ended(self, v: int) -> None:
        """Count task *v* as ended for the wave barrier."""
        if self.levels is not None:
            self.remaining[self.levels[v]] -= 1
            self._advance()

    def _advance(self) -> None:
        remaining = self.remaining
        while self.wave < len(remaining) - 1 and remaining[self.wave] == 0:
            self.wave += 1

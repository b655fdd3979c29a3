"""Which ready task may start now: weighted resources, executor slots, the wave
barrier, Threshold groups.

The core's heap already holds ready tasks in policy order (waves first under
``strategy="waves"``); admission only decides whether the next ones may start.
An executor whose capacity is known (``Executors.capacity``) is a resource
of its own, counted under ``("run_in", name)`` (never a resource name, which
is a str): each of its tasks uses one slot, so no more start than it runs at
once and the rest wait here, in policy order, instead of as started tasks
parked on the executor.
"""

from __future__ import annotations

import difflib
import heapq
import math
import numbers
from array import array
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ._batching import Batched
from ._errors import ResourceError
from ._native import core
from ._policies import Strategy, Threshold

if TYPE_CHECKING:
    from ._executors import Executors
    from ._snapshot import Snapshot

__all__ = ["Admission", "exact"]

# What admission counts: a resource of the run (its name), or the slots of an
# executor with a known capacity, ("run_in", its name).
Counted = str | tuple[str, str]
Uses = tuple[tuple[Counted, int], ...]  # amounts in units of the resource's quantum
Place = tuple[float, int, int]  # a waiter's place in policy order: key, order, task


def exact(x: float) -> Fraction:
    """*x* as an exact rational: what resource amounts and capacities are counted in.

    A float counts as the decimal number its shortest repr shows (``0.1`` is
    1/10, so three tasks of 0.1 fill a capacity of 0.3 exactly, and
    0.30000000000000004 is more than 0.3); an int or a Fraction as what it is.
    """
    if isinstance(x, numbers.Integral):
        return Fraction(int(x))
    if isinstance(x, numbers.Rational):
        return Fraction(x.numerator, x.denominator)
    return Fraction(repr(float(x)))


class Admission:
    """Resources, waves and Threshold gating for one run.

    ``plain`` is True when none applies: the engine then pops the core directly.
    *keys* are the core's: with the core's readiness order
    (``RunState.order``) they order the tasks that wait for a resource as
    the ready heap orders tasks.

    Resource amounts are accounted exactly, never in floats: each capacity
    and amount is taken as an exact rational (see :func:`exact`), and each
    resource is counted in whole quanta, one over the least common multiple
    of the denominators of its capacity and the amounts the run's tasks use
    of it. So what tasks give back always adds up to the capacity again, and
    amounts that sum to the capacity exactly fit together.
    """

    def __init__(
        self,
        snap: Snapshot,
        st: Any,
        resources: Mapping[str, float] | None,
        strategy: Strategy,
        keys: Sequence[float] | None = None,
        executors: Executors | None = None,
    ) -> None:
        self.st = st
        states = st.states()
        # What each resource has free, in its quanta.
        self.free: dict[Counted, int] = {}
        # Tasks waiting for a resource, by the resource they lack: heaps in
        # policy order. Those woken from a queue back into the ready heap,
        # with the resource whose queue they left.
        self.waiting: dict[Counted, list[Place]] = {}
        self.woken: dict[int, Counted] = {}
        self.keys = keys
        # Each waiting task's place, kept from the first time it was taken
        # from the heap (its readiness order) until it starts.
        self.places: dict[int, Place] = {}
        # What each task that took its uses holds until it gives them back.
        self.held: dict[int, Uses] = {}
        self.uses: list[Uses] | None = None
        # The resources the run's tasks use (for the warning about unused ones).
        self.used: set[str] = set()
        # Each resource's quanta per unit (see _quantize), and the capacities
        # given: a task added during the run (_growth) is quantized with them.
        self.scale: dict[str, int] = {}
        self.resources: Mapping[str, float] = resources or {}
        # With resources given, tasks go through take() even when none uses
        # any yet: a task added during the run may.
        if snap.has_uses or resources:
            self.uses = self._quantize(snap, states, resources or {})
        # The executors whose tasks take a slot, by name: what each counts under.
        self.slots: dict[str, Counted] = {}
        if executors is not None and executors.users:
            self._count_slots(snap, states, executors)
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
        # Executor slots alone leave the engine its fast loop: it asks admit()
        # only of the tasks that leave the loop (gate), never of the others.
        slots_only = self.uses is not None and not (snap.has_uses or resources)
        self.plain = (
            (self.uses is None or slots_only) and self.levels is None and not self.threshold
        )
        self.gate = slots_only and self.plain

    def _quantize(
        self, snap: Snapshot, states: bytes, resources: Mapping[str, float]
    ) -> list[Uses]:
        """Each task's uses in quanta (set ``free`` to the capacities in quanta).

        Raises ResourceError for the first task that uses a resource the run
        lacks (suggesting a close name the run has), or more of it than its
        capacity (compared exactly).
        """
        rationals: dict[float, Fraction] = {}

        def rational(x: float) -> Fraction:
            r = rationals.get(x)
            if r is None:
                r = rationals[x] = exact(x)
            return r

        # Tasks tend to share a few uses: each distinct one is worked out once.
        opts = snap.columns.opts[: snap.n]
        distinct = {o.uses for i, o in enumerate(opts) if o.uses and states[i] != core.EXCLUDED}
        self.used = {name for uses in distinct for name, _ in uses}
        scale = {name: rational(capacity).denominator for name, capacity in resources.items()}
        for uses in distinct:
            for name, amount in uses:
                if name in scale:
                    scale[name] = math.lcm(scale[name], rational(amount).denominator)
        capacities = {name: int(rational(c) * scale[name]) for name, c in resources.items()}
        quantized: dict[tuple[tuple[str, float], ...], Uses] = {(): ()}
        out: list[Uses] = []
        for i, o in enumerate(opts):
            q = quantized.get(o.uses)
            if q is None:
                if states[i] == core.EXCLUDED:
                    out.append(())
                    continue
                pairs: list[tuple[Counted, int]] = []
                for name, amount in o.uses:
                    capacity = capacities.get(name)
                    quanta = -1 if capacity is None else int(rational(amount) * scale[name])
                    if capacity is None:
                        close = difflib.get_close_matches(name, list(resources), n=1)
                        raise ResourceError(
                            snap.name(i), name, amount, None, close[0] if close else None
                        )
                    if quanta > capacity:
                        raise ResourceError(snap.name(i), name, amount, resources[name])
                    pairs.append((name, quanta))
                q = quantized[o.uses] = tuple(pairs)
            out.append(q)
        self.free.update(capacities)
        self.scale = scale
        return out

    def _count_slots(self, snap: Snapshot, states: bytes, executors: Executors) -> None:
        """Give each task on an executor of known capacity one slot of it to use.

        Only where it matters: an executor that has more such tasks than its
        capacity (a run with fewer pays nothing for it). Left out, and sent
        to the executor as they start, as before: tasks with ``uses=`` (a
        task that waited for a slot would not set their amounts aside, which
        SPEC's resource order asks) and ``@batched`` ones (a batch holds
        what it uses while it gathers, one slot per call would idle the
        executor meanwhile).
        """
        opts, fns = snap.columns.opts, snap.columns.fns
        for name, users in executors.users.items():
            tasks = [
                i
                for i in users
                if not opts[i].uses
                and states[i] != core.EXCLUDED
                and not isinstance(fns[i], Batched)
            ]
            capacity = executors.capacity(name)
            if capacity is None or len(tasks) <= capacity:
                continue
            if self.uses is None:
                self.uses = [()] * snap.n
            key = self.slots[name] = ("run_in", name)
            self.free[key] = capacity
            one: Uses = ((key, 1),)
            for i in tasks:
                self.uses[i] = one

    def slot_of(self, run_in: str | None, fn: object) -> Uses:
        """The uses of a task added during the run with neither ``uses=`` nor
        anything else to count: a slot of its executor, if the run counts them."""
        key = self.slots.get(run_in) if run_in is not None and self.slots else None
        if key is None or isinstance(fn, Batched):
            return ()
        return ((key, 1),)

    def quantize_more(self, task: str, uses: tuple[tuple[str, float], ...]) -> Uses:
        """The uses of a task added during the run, in quanta; ResourceError
        as before the run. A resource whose quanta cannot count the amount
        exactly is counted in finer quanta from now on (everything it holds
        and every task's amount of it, scaled alike)."""
        resources = self.resources
        pairs: list[tuple[Counted, int]] = []
        for name, amount in uses:
            if name not in resources:
                close = difflib.get_close_matches(name, list(resources), n=1)
                raise ResourceError(task, name, amount, None, close[0] if close else None)
            if exact(amount) > exact(resources[name]):
                raise ResourceError(task, name, amount, resources[name])
        for name, amount in uses:
            quanta = exact(amount) * self.scale[name]
            if quanta.denominator != 1:
                self._rescale(name, quanta.denominator)
                quanta = exact(amount) * self.scale[name]
            self.used.add(name)
            pairs.append((name, int(quanta)))
        return tuple(pairs)

    def _rescale(self, name: str, factor: int) -> None:
        # Every amount of resource *name* in quanta, times factor.
        def scaled(uses: Uses) -> Uses:
            return tuple((r, a * factor if r == name else a) for r, a in uses)

        self.scale[name] *= factor
        self.free[name] *= factor
        for v, held in self.held.items():
            self.held[v] = scaled(held)
        if self.uses is not None:
            self.uses[:] = [scaled(u) if u else u for u in self.uses]

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
        may fit, however many wait. Queues are in policy order (the core's
        key, then when the task became ready, the last first under lifo): a task
        that needs a resource others already wait for waits behind those that
        come before it (it cannot starve them) and goes ahead of the others,
        as SPEC's "considered in policy order" asks; tasks that need other
        resources, or none, go ahead. A task woken for one resource that
        must wait for another leaves the first one's amount free: that
        queue is woken again, so no task behind it waits for nothing.
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
            if uses_of is not None and uses_of[v] and not self.admit(v):
                continue
            self.group_left -= 1
            return v

    def admit(self, v: int) -> bool:
        """Whether task *v*, taken from the heap, may start now: take what it
        uses (True), or queue it where it waits (False; see :meth:`take`).

        A task that holds what it uses already is admitted again as it is.
        With ``gate`` set (executor slots alone), the engine asks this of
        each task it takes outside its fast loop, which pops the core itself.
        """
        assert self.uses is not None
        uses = self.uses[v]
        if not uses or v in self.held:
            return True
        place = self._place(v)
        lacking = self._lacking(uses, place)
        woken_for = self.woken.pop(v, None)
        if lacking is not None:
            heapq.heappush(self.waiting.setdefault(lacking, []), place)
            if woken_for is not None:
                self._wake(woken_for)
            return False
        del self.places[v]
        for name, amount in uses:
            self.free[name] -= amount
        self.held[v] = uses
        return True

    def _place(self, v: int) -> Place:
        # The place the core's heap gave v: its key, then when it became
        # ready (the last first under lifo), so a queue starts its tasks in
        # the order the heap would have. Should the core renumber (after
        # 2**31 - 1 readinesses), a place kept from before may misplace a
        # waiter against later ones: their order, never what they hold.
        place = self.places.get(v)
        if place is None:
            key = 0.0 if self.keys is None else self.keys[v]
            place = self.places[v] = (key, self.st.order(v), v)
        return place

    def _lacking(self, uses: Uses, place: Place) -> Counted | None:
        # The first resource a task at *place* must wait for, or None when all
        # fit: one too little is free of, or one a task before it in policy
        # order waits for (SPEC: it set aside what is free). A task woken from
        # a queue came first in it, so only earlier tasks hold it back there.
        waiting = self.waiting
        for name, amount in uses:
            if self.free[name] < amount:
                return name
            queue = waiting.get(name)
            if queue and queue[0] < place:
                return name
        return None

    def release(self, v: int) -> None:
        """Give back what task *v* holds, waking waiters it may fit.

        Call it whenever a task's attempt ends or the task ends, however:
        a task gives back only what it took, once.
        """
        uses = self.held.pop(v, None)
        if uses is not None:
            for name, amount in uses:
                self.free[name] += amount
                self._wake(name)

    def _wake(self, name: Counted) -> None:
        # Back to the heap go the first waiters of the resource whose
        # amounts fit in what is free; they start in policy order from there.
        queue = self.waiting.get(name)
        if not queue:
            return
        budget = self.free[name]
        uses_of = self.uses
        assert uses_of is not None
        while queue:
            u = queue[0][2]
            amount = dict(uses_of[u])[name]
            if amount > budget:
                break
            budget -= amount
            heapq.heappop(queue)
            self.woken[u] = name
            self.st.push_back(u)
        if not queue:
            del self.waiting[name]

    def parked(self) -> int:
        """How many tasks wait for a resource (taken from the heap, not running)."""
        return sum(map(len, self.waiting.values())) if self.waiting else 0

    def take_waiting(self, wanted: Callable[[int], bool], most: int) -> list[int]:
        """Take up to *most* waiting tasks for which *wanted* is true, in queue order.

        For batches: a task that joins a batch needs no resources of its own.
        The tasks behind those taken are woken if what is free now fits them.
        """
        taken: list[int] = []
        for name in list(self.waiting):
            kept: list[Place] = []
            before = len(taken)
            for place in sorted(self.waiting[name]):
                u = place[2]
                if len(taken) < most and wanted(u):
                    taken.append(u)
                    del self.places[u]
                else:
                    kept.append(place)
            if kept:
                self.waiting[name] = kept  # sorted: a heap
                if len(taken) > before:
                    self._wake(name)
            else:
                del self.waiting[name]
        return taken

    def forget(self, v: int) -> bool:
        """Take task *v* out of what waits for a resource (``run.cancel_task``);
        return whether it waited there (out of the heap, not running).

        A task woken from a queue is back in the heap: it only leaves the
        ``woken`` record, and the queue it left is woken again, as when it
        must wait for another resource.
        """
        self.places.pop(v, None)
        woken_for = self.woken.pop(v, None)
        if woken_for is not None:
            self._wake(woken_for)
            return False
        for name, queue in self.waiting.items():
            kept = [place for place in queue if place[2] != v]
            if len(kept) < len(queue):
                if kept:
                    heapq.heapify(kept)
                    self.waiting[name] = kept
                else:
                    del self.waiting[name]
                self._wake(name)
                return True
        return False

    def drain(self) -> list[int]:
        """Every task waiting for a resource, taken out of the queues (to cancel them)."""
        tasks = [place[2] for queue in self.waiting.values() for place in queue]
        self.waiting.clear()
        self.woken.clear()
        self.places.clear()
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

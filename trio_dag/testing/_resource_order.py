"""The rule "resource order", replayed from the events: no task overtakes one that waits before it.

SPEC 3: ready tasks are considered in policy order, and one that does not fit
sets aside the free amounts of the resources it waits for, so a later task
that needs the same resource cannot start while it waits. The replay knows
what a task waits for only when it uses a single resource. Such a task X,
ready no later than a task Y that needs the same resource and after it in
policy order, must not still wait when Y starts; it did wait if the two did
not fit together beside what the tasks running then held (had X taken its
share first, Y could not have fit). Only the order of the events is used,
never their times, so the rule holds on any clock; amounts are summed
exactly (see ``exact``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..events import Event, TaskFinished, TaskRetrying, TaskStarted
from ._facts import Readiness, Run, primary_keys
from ._rules import exact

__all__ = ["first_overtaking"]

Order = tuple[Any, int, int]  # policy key, position of the event that made it ready, index


def first_overtaking(run: Run, events: list[Event]) -> str | None:
    """What is wrong with the first task that overtook a waiting one, or None.

    Checks every run but those with strategy "waves" (the barrier orders
    tasks by wave first), policy "lifo" (a task that comes first became
    ready later, which the events do not place before the other's start),
    "critical_path" with ``targets``, a key function that raises (it is
    called again, once per task), or a batched call. Tasks that retried are
    left out: their return to the queue leaves no event. So are waiting
    tasks that never started: under fail_fast their cancellation may be
    reported after a teardown task starts.
    """
    if not run.resources or run.strategy == "waves":
        return None
    policy = run.policy
    if policy == "lifo" or (policy == "critical_path" and run.targets is not None):
        return None
    if any(type(e) is TaskStarted and e.batch for e in events):
        return None
    retried = {e.task.index for e in events if type(e) is TaskRetrying}
    uses = [
        [(name, exact(amount)) for name, amount in run.opts[i].uses if amount > 0]
        if i not in retried
        else []
        for i in range(run.n)
    ]
    capacity = {name: exact(c) for name, c in run.resources.items()}
    # The tasks that use one resource: what they wait for, and how much.
    single = {i: u[0] for i, u in enumerate(uses) if len(u) == 1 and run.in_run[i]}
    if not single:
        return None
    primary = primary_keys(run, policy)
    if primary is None:
        return None

    order: dict[int, Order] = {}
    waiting: dict[str, set[int]] = {}  # single-resource tasks ready and not started
    in_use: dict[str, int | Fraction] = dict.fromkeys(run.resources, 0)
    holding: dict[int, list[tuple[str, int | Fraction]]] = {}  # running attempts, their uses

    def became_ready(i: int, pos: int) -> None:
        order[i] = (primary[i], pos, i)
        if i in single:
            waiting.setdefault(single[i][0], set()).add(i)

    def released(i: int) -> None:
        for name, held in holding.pop(i, ()):
            in_use[name] = in_use.get(name, 0) - held

    readiness = Readiness(run)
    for i in readiness.roots():
        became_ready(i, -1)
    started: set[int] = set()
    suspects: list[tuple[int, int, str, int]] = []  # waiter, starter, resource, position
    try:
        for pos, event in enumerate(events):
            i = event.task.index
            if type(event) is TaskStarted:
                if event.attempt == 1 and i in order:
                    started.add(i)
                    if i in single:
                        waiting[single[i][0]].discard(i)
                    for name, need in uses[i]:
                        free = capacity.get(name, 0) - in_use.get(name, 0)
                        suspects.extend(
                            (x, i, name, pos)
                            for x in waiting.get(name, ())
                            if order[x][1] <= order[i][1]
                            and order[x] < order[i]
                            and free < single[x][1] + need
                        )
                holding[i] = [(name, exact(held)) for name, held in run.opts[i].uses]
                for name, held in holding[i]:
                    in_use[name] = in_use.get(name, 0) + held
            elif type(event) is TaskRetrying:
                released(i)
            elif type(event) is TaskFinished:
                released(i)
                if i in single:
                    waiting.setdefault(single[i][0], set()).discard(i)
                for c in readiness.after(event):
                    became_ready(c, pos)
    except TypeError:
        return None  # keys that do not compare: the run raised CallbackError
    for x, y, name, pos in suspects:
        if x in started:
            return (
                f"task {run.label(y)} started (event #{pos}) needing {name!r} while "
                f"{run.label(x)}, {since(order[x][1])} and before it in policy order, "
                f"waited for {name!r}: the two did not fit together beside the tasks running"
            )
    return None


def since(pos: int) -> str:
    """When a task became ready, in words."""
    return "ready from the start" if pos < 0 else f"ready since event #{pos}"

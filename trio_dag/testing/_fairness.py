"""Resource order, replayed from the events: no task overtakes one that waits before it.

SPEC 3: ready tasks are considered in policy order, and one that does not fit
sets aside the free amounts of the resources it waits for, so a later task
that needs the same resource cannot start while it waits. The replay knows
what a task waits for only when it uses a single resource; each such task
that was ready before another task needing that resource started, and
comes before it in policy order, must not start at a later instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import TaskState
from ..events import Event, TaskFinished, TaskRetrying, TaskStarted
from ._order import primary_keys

if TYPE_CHECKING:
    from ._check import Run

__all__ = ["first_overtaking"]

Order = tuple[Any, int, int]  # policy key, position of the event that made it ready, index


def first_overtaking(run: Run, events: list[Event]) -> str | None:
    """What is wrong with the first task that overtook a waiting one, or None.

    Checks runs whose order the events show: strategy "immediate", ``limit``
    None or an int (a shared CapacityLimiter may hold an admitted task back),
    policy "fifo", "priority", "critical_path" (without ``targets``) or a key
    function (called again, once per task; when it raises nothing is
    checked), no batched call. Tasks that retried are left out: their return
    to the queue leaves no event. A task that never started is left out too:
    its cancellation may be reported after a teardown task starts.
    """
    if not run.resources or run.limiter or run.strategy != "immediate":
        return None
    policy = run.policy
    if policy == "lifo" or (policy == "critical_path" and run.targets is not None):
        return None
    if any(type(e) is TaskStarted and e.batch for e in events):
        return None
    retried = {e.task.index for e in events if type(e) is TaskRetrying}
    uses = [
        [(name, amount) for name, amount in run.opts[i].uses if amount > 0]
        if i not in retried
        else []
        for i in range(run.n)
    ]
    single = {i: u[0][0] for i, u in enumerate(uses) if len(u) == 1 and run.in_run[i]}
    if not single:
        return None
    primary = primary_keys(run, policy)
    if primary is None:
        return None

    order: dict[int, Order] = {}
    ready_time: dict[int, float] = {}
    waiting: dict[str, set[int]] = {}  # single-resource tasks ready and not started

    def became_ready(i: int, pos: int, time: float) -> None:
        order[i] = (primary[i], pos, i)
        ready_time[i] = time
        if i in single:
            waiting.setdefault(single[i], set()).add(i)

    for i in run.members():
        if not run.parents[i]:
            became_ready(i, -1, float("-inf"))
    ended = [0] * run.n
    succeeded = [0] * run.n
    started: dict[int, float] = {}
    suspects: list[tuple[int, int, str, float, int]] = []  # waiter, starter, resource, when, pos
    try:
        for pos, event in enumerate(events):
            i = event.task.index
            if type(event) is TaskStarted:
                if event.attempt != 1:
                    continue
                started[i] = event.time
                if i in single:
                    waiting.setdefault(single[i], set()).discard(i)
                for name, _ in uses[i] if i in order else ():
                    suspects.extend(
                        (x, i, name, event.time, pos)
                        for x in waiting.get(name, ())
                        if ready_time[x] < event.time and order[x] < order[i]
                    )
            elif type(event) is TaskFinished:
                if i in single:
                    waiting.setdefault(single[i], set()).discard(i)
                for c in run.children[i]:
                    ended[c] += 1
                    succeeded[c] += event.state is TaskState.SUCCEEDED
                    if ended[c] == len(run.parents[c]) and run.in_run[c]:
                        if run.all_done(c) or succeeded[c] == ended[c]:
                            became_ready(c, pos, event.time)
    except TypeError:
        return None  # keys that do not compare: the run raised CallbackError
    for x, y, name, when, pos in suspects:
        if x in started and started[x] > when:
            return (
                f"task {run.label(y)} started at {when} (event #{pos}) needing {name!r} while "
                f"{run.label(x)}, {since(ready_time[x])} and before it in policy order, "
                f"waited for {name!r}; {run.label(x)} started only at {started[x]}"
            )
    return None


def since(time: float) -> str:
    """When a task became ready, in words."""
    return "ready from the start" if time == float("-inf") else f"ready since {time}"

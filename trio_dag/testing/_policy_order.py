"""The rule "policy": the start order of a policy, replayed from the events of a ``limit=1`` run.

With one slot, each start must be the first ready task in policy order. The
ready tasks and the order in which they became ready are rebuilt from the
events: a task becomes ready at the event that ended its last dependency
(roots before any event), or at its TaskRetrying when it retries at once;
tasks that became ready at the same event rank by insertion.
"""

from __future__ import annotations

from typing import Any

from ..events import Event, TaskFinished, TaskRetrying, TaskStarted
from ._facts import Readiness, Run, primary_keys

__all__ = ["first_out_of_order"]

Key = tuple[Any, int, int]


def first_out_of_order(run: Run, events: list[Event]) -> str | None:
    """What is wrong with the first start out of policy order, or None.

    Only checks runs where the order is fully determined by what the events show:
    ``limit=1`` (an int), strategy "immediate", no task with ``uses``, no
    retry after a delay (its return to the queue leaves no event), no batched
    call, and for "critical_path" no ``targets``. A key function is called
    again, once per task of the run: it must give the same keys as during the
    run; when it raises, the order is not checked.
    """
    policy = run.policy
    if run.cap != 1 or run.limiter or run.strategy != "immediate":
        return None
    if policy == "critical_path" and run.targets is not None:
        return None
    if any(run.opts[i].uses for i in run.members()):
        return None
    if any(
        (type(e) is TaskRetrying and e.delay > 0) or (type(e) is TaskStarted and e.batch)
        for e in events
    ):
        return None
    primary = primary_keys(run, policy)
    if primary is None:
        return None
    lifo = policy == "lifo"

    def key(i: int, pos: int) -> Key:
        if lifo:
            return (primary[i], -pos, -i)
        return (primary[i], pos, i)

    readiness = Readiness(run)
    ready: dict[int, Key] = {i: key(i, -1) for i in readiness.roots()}
    for pos, event in enumerate(events):
        i = event.task.index
        if type(event) is TaskStarted:
            if i in ready:
                best = min(ready, key=ready.__getitem__)
                if ready[best] < ready[i]:
                    name = policy if isinstance(policy, str) else "the key function"
                    return (
                        f"task {run.label(i)} started (event #{pos}) while {run.label(best)} "
                        f"was ready and comes first under policy={name!r}"
                    )
                del ready[i]
        elif type(event) is TaskRetrying:
            ready[i] = key(i, pos)
        elif type(event) is TaskFinished:
            ready.pop(i, None)
            for c in readiness.after(event):
                ready[c] = key(c, pos)
    return None

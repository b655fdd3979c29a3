"""The limit and the resources, checked from the report's timings alone.

Each body (a plain task's attempt, or one batched call) held its ``limit``
slot and its ``uses`` over at least the span the report gives it, from its
start to its end: the engine reads the start after taking them and the end
before giving them back. Bodies whose spans strictly overlap therefore held
them together; spans that only touch (one's end is the other's start), and
two spans of no length at one instant, are taken to have followed each
other. So an overload seen here happened on any clock.

Only tasks that made a single attempt are counted: the report gives a
retried task's first start and last end, not where each attempt began and
ended, and the span between also holds its waits, when it held nothing. A
batched call spans its tasks' spans and holds, as the engine takes them,
the ``uses`` of the task that opened it; the report does not say which one
that was, so it counts the smallest amount of each resource among them
(``@batched`` asks that they be the same).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from fractions import Fraction
from typing import TYPE_CHECKING

import attrs

from ._rules import broken, exact

if TYPE_CHECKING:
    from ._facts import Run

__all__ = ["check_overlaps"]

Amount = int | Fraction


@attrs.frozen
class _Body:
    start: float
    end: float
    uses: dict[str, Amount]
    tasks: tuple[int, ...]


def check_overlaps(run: Run) -> None:
    """Hold the bodies whose report timings overlap to the limit and the capacities."""
    bodies = _bodies(run)
    if run.cap is not None:
        found = _overload(bodies, [1] * len(bodies), run.cap)
        if found is not None:
            at, tasks, load = found
            broken(
                "limit",
                f"tasks {_names(run, tasks)} ran at once by the report's timings (at {at}): "
                f"{load} bodies, above the limit {run.cap}",
            )
    for name in sorted({name for body in bodies for name in body.uses}):
        capacity = exact(run.resources.get(name, 0))
        found = _overload(bodies, [body.uses.get(name, 0) for body in bodies], capacity)
        if found is not None:
            at, tasks, load = found
            broken(
                "resources",
                f"tasks {_names(run, tasks)} held {name!r} at once by the report's timings "
                f"(at {at}): {float(load):g} in use, above its capacity {float(capacity):g}",
            )


def _bodies(run: Run) -> list[_Body]:
    report = run.report
    bodies = []
    calls: dict[int, list[int]] = defaultdict(list)
    for i in run.members():
        h = run.handles[i]
        number = report.batch(h)
        if number is not None:
            calls[number].append(i)
            continue
        timing = report.timing(h)
        if timing.attempts == 1 and timing.start is not None and timing.end is not None:
            uses = {name: exact(amount) for name, amount in run.opts[i].uses}
            bodies.append(_Body(timing.start, timing.end, uses, (i,)))
    for members in calls.values():
        spans = [
            (t.start, t.end)
            for t in (report.timing(run.handles[i]) for i in members)
            if t.attempts == 1 and t.start is not None and t.end is not None
        ]
        if spans:
            uses = _common_uses(dict(run.opts[i].uses) for i in members)
            start = min(s for s, _ in spans)
            end = max(e for _, e in spans)
            bodies.append(_Body(start, end, uses, tuple(members)))
    return bodies


def _common_uses(all_uses: Iterable[dict[str, float]]) -> dict[str, Amount]:
    """The smallest amount of each resource that every one of *all_uses* takes."""
    common: dict[str, Amount] | None = None
    for uses in all_uses:
        amounts = {name: exact(amount) for name, amount in uses.items()}
        if common is None:
            common = amounts
        else:
            common = {n: min(a, amounts[n]) for n, a in common.items() if n in amounts}
    return common or {}


def _overload(
    bodies: list[_Body], amounts: list[Amount], capacity: Amount
) -> tuple[float, list[int], Amount] | None:
    """The first instant at which the bodies' *amounts* add up above *capacity*, or None.

    Returns the instant, the tasks of the bodies then holding, and their sum.
    """
    starting: dict[float, list[int]] = defaultdict(list)
    ending: dict[float, list[int]] = defaultdict(list)
    points: dict[float, list[int]] = defaultdict(list)
    for k, body in enumerate(bodies):
        if amounts[k] <= 0:
            continue
        if body.start < body.end:
            starting[body.start].append(k)
            ending[body.end].append(k)
        else:
            points[body.start].append(k)
    held: dict[int, Amount] = {}
    total: Amount = 0
    for t in sorted({*starting, *ending, *points}):
        for k in ending.get(t, ()):
            total -= held.pop(k)
        # Spans of no length at t overlap the spans open across t, not each other.
        if t in points:
            k = max(points[t], key=amounts.__getitem__)
            if total + amounts[k] > capacity:
                return t, _tasks(bodies, [*held, k]), total + amounts[k]
        for k in starting.get(t, ()):
            held[k] = amounts[k]
            total += amounts[k]
        if total > capacity:
            return t, _tasks(bodies, list(held)), total
    return None


def _tasks(bodies: list[_Body], which: list[int]) -> list[int]:
    return sorted(i for k in which for i in bodies[k].tasks)


def _names(run: Run, tasks: list[int]) -> list[str]:
    return [run.names[i] for i in tasks]

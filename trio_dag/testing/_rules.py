"""The rules check_run holds a run to, by name, and the error a broken one raises."""

from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Final, NoReturn

from .. import TaskState

__all__ = ["FINAL", "OK", "RAN", "RULES", "broken", "exact"]

RULES: Final = {
    "targets": "only the targets and their ancestors run",
    "final state": "every task of the run ends in exactly one final state",
    "attempts": "no task body runs twice, retries aside",
    "dependency order": (
        "a task starts (or ends CACHED) only after every dependency SUCCEEDED or was CACHED "
        "(all_done: ended)"
    ),
    "limit": "no more than `limit` task bodies run at once",
    "resources": "the amounts of a resource in use never exceed its capacity",
    "resource order": (
        "ready tasks are considered in policy order; a task waiting for a "
        "resource is never overtaken by later tasks that need it"
    ),
    "skip": (
        "on_failure='skip': a task whose dependency did not succeed ends SKIPPED at once "
        "(all_done tasks still run); all other tasks go on"
    ),
    "fail_fast": (
        "on_failure='fail_fast': after the first failure nothing new starts but "
        "all_done teardown, and every other task that had not ended ends CANCELLED"
    ),
    "cancellation": (
        "cancellation from outside stops everything, teardown included; "
        "finished tasks keep their results, the rest are CANCELLED"
    ),
    "cancel cause": (
        "a task ends CANCELLED only when something stops the run: the first failure "
        "under fail_fast (never teardown), a BaseException raised by a task, a CallbackError, "
        "or cancellation from outside; or run.cancel_task cancels that task alone"
    ),
    "retries": (
        "only an Exception matching retry_on is retried, at most `retries` "
        "times, after retry_delay * retry_backoff**(k-1)"
    ),
    "batches": (
        "@batched: one call runs at most max_size tasks of one batched function, all started "
        "at its start; calls are numbered from 1 in the order they start, as report.batch() says"
    ),
    "waves": "strategy='waves': no task of wave k+1 starts before all of wave k ended",
    "policy": (
        "with limit=1 the next task to start is the first ready one "
        "in policy order (a key function: smallest key first)"
    ),
    "events": (
        "TaskStarted once per attempt, TaskRetrying with the attempt that "
        "failed, TaskFinished once per task, every event in the order it happened"
    ),
    "cache": (
        "a task ends CACHED only when added with cache=, without starting, and counts as "
        "success; TaskNotCached is told only of such a task, before its TaskFinished (or after it, "
        "of a SUCCEEDED task whose result the store failed to keep)"
    ),
    "report": "the report describes the run as it happened",
    "added": (
        "a task added while the run went on (Run.add) is told by one TaskAdded before its "
        "other events, naming the task that was running and added it (or None)"
    ),
}
"""The rules :func:`check_run` checks: ``{name: what the rule promises}``.

A broken rule raises an AssertionError whose message names the rule
(``rule 'limit' broken: ...``) and ends with its promise.
"""

FINAL: Final = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.CACHED,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.CANCELLED,
    }
)
"""The states a task of a run may end in."""
OK: Final = frozenset({TaskState.SUCCEEDED, TaskState.CACHED})
"""The states that count as success: for dependents, ``report.ok`` and every rule."""
RAN: Final = frozenset({TaskState.SUCCEEDED, TaskState.FAILED})
"""The states of a task whose body ran to its end."""


def broken(rule: str, detail: str) -> NoReturn:
    """Raise the AssertionError of a broken rule."""
    raise AssertionError(f"rule {rule!r} broken: {detail}\n  ({RULES[rule]})")


def exact(amount: object) -> int | Fraction:
    """*amount* (a resource amount or capacity) as an exact number.

    A float counts as the shortest decimal that reads back as it
    (``Fraction(repr(x))``), so three amounts of 0.1 sum to exactly 0.3;
    ints (and Fractions) count as they are. This is how the engine accounts
    resources too, so that no sum drifts.
    """
    if isinstance(amount, (int, Fraction)):
        return amount
    if isinstance(amount, numbers.Real):
        return Fraction(repr(float(amount)))
    raise TypeError(f"an amount must be a real number, not {amount!r}")

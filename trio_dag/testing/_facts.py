"""The facts of a finished run that the checks share: what the DAG, the options and
the report say, and which tasks the events make ready.

A leaf: it imports nothing else of ``trio_dag.testing``, and every check
module reads a run through it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from .. import Batched, Handle, TaskOptions, TaskState
from ..events import TaskFinished

if TYPE_CHECKING:
    from .. import DAG, RunReport
    from .._policies import Policy, Strategy

__all__ = ["Readiness", "Run", "primary_keys"]


class Run:
    """What the DAG, the options and the report say about a finished run."""

    def __init__(
        self,
        dag: DAG,
        report: RunReport,
        targets: Iterable[Handle[Any] | str] | None,
        limit: int | trio.CapacityLimiter | None,
        resources: Mapping[str, float] | None,
        policy: Policy,
        strategy: Strategy,
        on_failure: str,
        cancelled: bool,
        cancelled_tasks: Iterable[Handle[Any] | str] = (),
    ) -> None:
        self.report = report
        # The only private read: the snapshot the run ran, for the number of its
        # tasks (the DAG may have grown since), their options and functions,
        # which the public API does not expose.
        snap = report._snap
        if snap.dag is not dag:
            raise ValueError(f"the report is of a run of another DAG than {dag!r}")
        self.n = n = snap.n
        # Tasks from base_n on were added while the run went on (Run.add):
        # their handles are of the run's fork of the DAG, which knows them.
        self.base_n = base_n = snap._base_n
        handles = list(itertools.islice(dag, min(n, base_n)))
        handles += [snap.handle(i) for i in range(len(handles), n)]
        self.handles = handles
        self.states = states = [report.state(h) for h in handles]
        self.names = [h.name for h in handles]
        self.opts: list[TaskOptions] = [snap.options(i) for i in range(n)]
        # The batched function of each task: the engine runs them all in
        # batches, whatever their run_in (a thread, an executor).
        self.batched: list[Batched[Any, Any] | None] = [
            fn if isinstance(fn, Batched) else None for fn in (snap.fn(i) for i in range(n))
        ]
        self.parents = [sorted({d.index for d in h.dag.dependencies(h)}) for h in handles]
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, ps in enumerate(self.parents):
            for p in ps:
                self.children[p].append(i)
        self.in_run = [s is not TaskState.PENDING for s in states]
        self.targets = None if targets is None else _indices(dag, targets)
        self.cap = _capacity(limit)
        self.limiter = isinstance(limit, trio.CapacityLimiter)
        self.resources = dict(resources or {})
        self.policy = policy
        self.strategy = strategy
        self.fail_fast = on_failure == "fail_fast"
        self.levels = _levels(self.parents)
        self.errors = report.errors  # built on each access: read it once
        # A stop the events may not show: from outside, or by a callback that raised.
        self.unseen_stop = cancelled or self._key_function_raised()
        # The tasks run.cancel_task was called for: each may end CANCELLED
        # alone, its dependents SKIPPED (under fail_fast too).
        self.cancelled_tasks = frozenset(_indices(dag, list(cancelled_tasks)))

    def cancelled_alone(self, i: int) -> bool:
        """Whether task *i* ended CANCELLED by run.cancel_task, not by a stop of the run."""
        return i in self.cancelled_tasks and self.states[i] is TaskState.CANCELLED

    def _key_function_raised(self) -> bool:
        """Whether the policy key function raised during the run (CallbackError), as it may
        have if it raises now or gives keys that do not compare."""
        if not callable(self.policy) or not any(s is TaskState.CANCELLED for s in self.states):
            return False
        keys = primary_keys(self, self.policy)
        if keys is None:
            return True
        try:
            sorted(keys[i] for i in self.members())
        except TypeError:
            return True
        return False

    def label(self, i: int) -> str:
        return repr(self.names[i])

    def all_done(self, i: int) -> bool:
        return self.opts[i].trigger == "all_done"

    @property
    def grown(self) -> bool:
        """Whether the run added tasks while it went on (Run.add)."""
        return self.n > self.base_n

    def members(self) -> Iterable[int]:
        return (i for i in range(self.n) if self.in_run[i])


class Readiness:
    """Which tasks of a run the events make ready, replayed one TaskFinished at a time.

    A task becomes ready at the event that ends its last dependency (all of
    them SUCCEEDED or were CACHED, or ended in any state for ``all_done``); roots before
    any event.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.ended = [0] * run.n  # dependencies ended so far
        self.succeeded = [0] * run.n

    def roots(self) -> list[int]:
        """The tasks of the run ready before any event, ascending."""
        return [i for i in self.run.members() if not self.run.parents[i]]

    def after(self, event: TaskFinished) -> list[int]:
        """The tasks *event* makes ready, ascending."""
        run, ended, succeeded = self.run, self.ended, self.succeeded
        made = []
        for c in run.children[event.task.index]:
            ended[c] += 1
            succeeded[c] += event.state is TaskState.SUCCEEDED or event.state is TaskState.CACHED
            if ended[c] == len(run.parents[c]) and run.in_run[c]:
                if run.all_done(c) or succeeded[c] == ended[c]:
                    made.append(c)
        return made


def primary_keys(run: Run, policy: Any) -> list[Any] | None:
    """Each task's policy key, smallest first; None when a key function raises."""
    if callable(policy):
        try:
            return [policy(run.handles[i]) if run.in_run[i] else None for i in range(run.n)]
        except Exception:
            return None  # the run stopped with a CallbackError: the order is moot
    if policy == "priority":
        return [-o.priority for o in run.opts]  # exact: ints above 2**53 do not tie
    if policy == "critical_path":
        # The longest total cost of a path from the task to a sink, itself included;
        # by wave from the last, so children come first.
        rank = [0.0] * run.n
        for v in sorted(range(run.n), key=run.levels.__getitem__, reverse=True):
            rank[v] = run.opts[v].cost + max((rank[c] for c in run.children[v]), default=0.0)
        return [-r for r in rank]
    if policy == "depth_first":
        # Deeper first (by dependency level), ties in insertion order.
        return [(-run.levels[i], i) for i in range(run.n)]
    return [0.0] * run.n


def _indices(dag: DAG, targets: Iterable[Handle[Any] | str]) -> list[int]:
    if isinstance(targets, (str, Handle)):
        targets = [targets]
    return [dag[t].index for t in targets]


def _capacity(limit: object) -> int | None:
    if isinstance(limit, trio.CapacityLimiter):
        tokens = limit.total_tokens
        return None if math.isinf(tokens) else int(tokens)
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(
            f"limit must be None, an int >= 1 or a trio.CapacityLimiter, not {limit!r}"
        )
    return limit


def _levels(parents: list[list[int]]) -> list[int]:
    """Wave of each task: the number of links of its longest chain of dependencies."""
    levels = [0] * len(parents)
    for i in _topological(parents):
        levels[i] = max((levels[p] + 1 for p in parents[i]), default=0)
    return levels


def _topological(parents: list[list[int]]) -> list[int]:
    # Dependencies may come after their dependents (after= names), so not just range(n).
    n = len(parents)
    count = [len(ps) for ps in parents]
    children: list[list[int]] = [[] for _ in range(n)]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    order = [i for i in range(n) if count[i] == 0]
    for v in order:
        for c in children[v]:
            count[c] -= 1
            if count[c] == 0:
                order.append(c)
    return order

"""Hypothesis strategies: dependency structures (``dag_shapes``) and runnable DAGs (``dags``).

Imports Hypothesis, never pytest. Everything shrinks towards fewer tasks,
fewer dependencies and default options, and a drawn DAG prints as the plan
it was built from (``build_dag(dag_plan(t0=task(seconds=1), ...))``), so a
failing example reads as a small program.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any, Final, Literal, final

import attrs
import trio
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .. import DAG, Handle, current_task

__all__ = ["DagShape", "dag_shapes", "dags"]

RunIn = Literal["async", "inline", "thread"]
_RUN_IN: Final = ("async", "inline", "thread")
# How a dependency is given to DAG.add: a positional handle, a handle inside a
# list, after= by handle, after= by name. Shrinks towards the first.
_HOWS: Final = ("arg", "list", "after", "name")
_ARGS: Final = ("arg", "list")
Trigger = Literal["all_succeeded", "all_done"]


def _check_parents(
    instance: DagShape, attribute: object, value: tuple[tuple[int, ...], ...]
) -> None:
    for i, parents in enumerate(value):
        if list(parents) != sorted(set(parents)) or any(not 0 <= p < i for p in parents):
            raise ValueError(
                f"parents[{i}] must be distinct indices of earlier tasks, ascending; got {parents}"
            )


@final
@attrs.frozen
class DagShape:
    """The dependency structure of a DAG, as drawn by :func:`dag_shapes`.

    Task *i* depends on the tasks ``parents[i]``, all earlier than *i*, so
    adding the tasks in index order always works::

        handles = []
        for deps in shape.parents:
            handles.append(dag.add(work, *[handles[p] for p in deps]))
    """

    parents: tuple[tuple[int, ...], ...] = attrs.field(validator=_check_parents)

    def __len__(self) -> int:
        """The number of tasks."""
        return len(self.parents)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Hypothesis's printer: the shape itself, not the call that made it.
        p.text(repr(self))

    @property
    def edges(self) -> list[tuple[int, int]]:
        """Every ``(dependency, dependent)`` pair, by dependent, then dependency."""
        return [(p, i) for i, parents in enumerate(self.parents) for p in parents]


def _check_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an int, got {value!r}")
    if value < low:
        raise InvalidArgument(f"{name} must be at least {low}, got {value}")
    return value


def _check_sizes(min_tasks: object, max_tasks: object, max_parents: object) -> None:
    low = _check_int("min_tasks", min_tasks, 0)
    if _check_int("max_tasks", max_tasks, 0) < low:
        raise InvalidArgument(f"max_tasks={max_tasks} is below min_tasks={min_tasks}")
    _check_int("max_parents", max_parents, 0)


def _picks(max_tasks: int, max_parents: int) -> st.SearchStrategy[list[int]]:
    """Which earlier tasks a task depends on, as numbers taken modulo its index.

    Drawn without knowing the task's index, so that every task is one
    element of a list, which Hypothesis shrinks by deleting whole tasks; a
    dependency shrinks towards task 0, which deleting tasks never moves.
    """
    return st.lists(st.integers(0, max(0, max_tasks - 2)), max_size=max_parents, unique=True)


def _parents(i: int, picks: list[int]) -> tuple[int, ...]:
    """The dependencies of task *i*."""
    return tuple(sorted({k % i for k in picks})) if i else ()


def _shape(all_picks: list[list[int]]) -> DagShape:
    return DagShape(tuple(_parents(i, picks) for i, picks in enumerate(all_picks)))


def dag_shapes(
    *, min_tasks: int = 0, max_tasks: int = 50, max_parents: int = 4
) -> st.SearchStrategy[DagShape]:
    """Draw dependency structures: each task depends on up to *max_parents* earlier ones.

    Shrinks towards fewer tasks and fewer dependencies::

        @given(shape=trio_dag.testing.dag_shapes(max_tasks=20))
        def test_my_pipeline_on_any_shape(shape):
            dag = trio_dag.DAG()
            handles = []
            for deps in shape.parents:
                handles.append(dag.add(my_step, *[handles[p] for p in deps]))
            ...
    """
    _check_sizes(min_tasks, max_tasks, max_parents)
    tasks = st.lists(_picks(max_tasks, max_parents), min_size=min_tasks, max_size=max_tasks)
    return tasks.map(_shape)


@final
@attrs.frozen
class _Nap:
    """An async body: sleep on the Trio clock, fail the first *fails* attempts.

    A body of 0 seconds returns without suspending at all.
    """

    seconds: float
    fails: int

    async def __call__(self, *deps: object) -> str:
        if self.seconds:
            await trio.sleep(self.seconds)
        return _finish(self.fails)


@final
@attrs.frozen
class _Instant:
    """A sync body ("inline" or "thread"): returns at once, or fails the first *fails* attempts."""

    fails: int

    def __call__(self, *deps: object) -> str:
        return _finish(self.fails)


def _finish(fails: int) -> str:
    task = current_task()
    if task.attempt <= fails:
        raise ValueError(f"drawn failure of task {task.name!r}, attempt {task.attempt}")
    return task.name


@final
@attrs.frozen(repr=False)
class _TaskPlan:
    """One task of a drawn DAG; its repr shows what differs from the defaults."""

    deps: tuple[tuple[int, str], ...] = ()
    seconds: float = 0
    fails: int = 0
    run_in: RunIn = "async"
    trigger: Trigger = "all_succeeded"
    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 2.0
    retry_on: tuple[type[Exception], ...] = (Exception,)
    timeout: float | None = None
    priority: int = 0
    cost: float = 1.0
    uses: tuple[tuple[str, float], ...] = ()

    def __repr__(self) -> str:
        args = [f"t{p}" if how == "arg" else f"[t{p}]" for p, how in self.deps if how in _ARGS]
        after = [
            f"t{p}" if how == "after" else f"'t{p}'" for p, how in self.deps if how not in _ARGS
        ]
        if after:
            args.append(f"after=[{', '.join(after)}]")
        for field in attrs.fields(_TaskPlan)[1:]:
            value = getattr(self, field.name)
            if value == field.default:
                continue
            if field.name == "retry_on":
                text = f"({', '.join(c.__name__ for c in value)},)"
            elif field.name == "uses":
                text = repr(dict(value))
            else:
                text = repr(value)
            args.append(f"{field.name}={text}")
        return f"task({', '.join(args)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


@final
@attrs.frozen(repr=False)
class _Plan:
    """A drawn DAG before it is built: task *i* is named ``t{i}``."""

    tasks: tuple[_TaskPlan, ...]

    def __repr__(self) -> str:
        tasks = ", ".join(f"t{i}={task!r}" for i, task in enumerate(self.tasks))
        return f"dag_plan({tasks})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Hypothesis's printer: one task per line in a falsifying example.
        if not self.tasks:
            p.text("dag_plan()")
            return
        with p.group(4, "dag_plan("):
            for i, task in enumerate(self.tasks):
                p.break_()
                p.text(f"t{i}={task!r},")
        p.break_()
        p.text(")")


def build_dag(plan: _Plan) -> DAG:
    """The DAG a plan describes (Hypothesis prints drawn DAGs as this call)."""
    dag = DAG()
    handles: list[Handle[Any]] = []
    for i, task in enumerate(plan.tasks):
        args: list[object] = []
        after: list[Handle[Any] | str] = []
        for p, how in task.deps:
            if how == "arg":
                args.append(handles[p])
            elif how == "list":
                args.append([handles[p]])
            else:
                after.append(handles[p] if how == "after" else f"t{p}")
        body = _Nap(task.seconds, task.fails) if task.run_in == "async" else _Instant(task.fails)
        handles.append(
            dag.add(
                body,
                *args,
                name=f"t{i}",
                after=after,
                priority=task.priority,
                cost=task.cost,
                uses=dict(task.uses) or None,
                retries=task.retries,
                retry_delay=task.retry_delay,
                retry_backoff=task.retry_backoff,
                retry_on=task.retry_on,
                timeout=task.timeout,
                run_in=None if task.run_in == "async" else task.run_in,
                trigger=task.trigger,
            )
        )
    return dag


@attrs.frozen
class _Options:
    """The arguments of :func:`dags`, checked."""

    min_tasks: int
    max_tasks: int
    max_parents: int
    seconds: st.SearchStrategy[float]
    failures: bool
    retries: bool
    timeouts: bool
    all_done: bool
    resources: tuple[tuple[str, float], ...]
    run_in: tuple[RunIn, ...]


def _one_in(draw: st.DrawFn, k: int) -> bool:
    """True about once in *k* draws; shrinks to False."""
    return draw(st.integers(0, k - 1)) == k - 1


@st.composite
def _tasks(draw: st.DrawFn, o: _Options) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    """One task: its dependencies as ``(pick, how given)`` (see _picks), and its options."""
    picks = draw(_picks(o.max_tasks, o.max_parents))
    deps = [(k, draw(st.sampled_from(_HOWS))) for k in picks]
    plan: dict[str, Any] = {
        "seconds": draw(o.seconds),
        "run_in": draw(st.sampled_from(o.run_in)),
        "priority": draw(st.integers(-2, 2)),
        "cost": draw(st.sampled_from([1.0, 2.0, 0.5, 3.0])),
    }
    if o.retries and _one_in(draw, 3):
        plan["retries"] = draw(st.integers(1, 2))
        plan["retry_delay"] = draw(st.sampled_from([0.0, 1.0, 0.5, 2.0]))
        plan["retry_backoff"] = draw(st.sampled_from([2.0, 1.0, 0.5]))
        if _one_in(draw, 4):
            plan["retry_on"] = (KeyError,)  # the drawn failures and timeouts are not retried
    if o.failures and _one_in(draw, 4):
        plan["fails"] = draw(st.integers(1, plan.get("retries", 0) + 1))
    if o.timeouts and _one_in(draw, 4):
        plan["timeout"] = float(draw(st.integers(1, 3)))
    if o.all_done and _one_in(draw, 5):
        plan["trigger"] = "all_done"
    uses = []
    for name, capacity in o.resources:
        if capacity > 0 and draw(st.booleans()):
            top = math.floor(capacity)
            uses.append((name, float(draw(st.integers(1, top))) if top >= 1 else capacity))
    plan["uses"] = tuple(uses)
    return deps, plan


def _plan(tasks: list[tuple[list[tuple[int, str]], dict[str, Any]]]) -> _Plan:
    planned = []
    for i, (deps, plan) in enumerate(tasks):
        how_of: dict[int, str] = {}
        for k, how in deps if i else ():
            how_of.setdefault(k % i, how)  # two picks may name one task: the first counts
        planned.append(_TaskPlan(deps=tuple(sorted(how_of.items())), **plan))
    return _Plan(tuple(planned))


def dags(
    *,
    min_tasks: int = 0,
    max_tasks: int = 50,
    max_parents: int = 4,
    seconds: st.SearchStrategy[float] | None = None,
    failures: bool = True,
    retries: bool = True,
    timeouts: bool = True,
    all_done: bool = True,
    resources: Mapping[str, float] | None = None,
    run_in: Collection[RunIn] = ("async", "inline"),
) -> st.SearchStrategy[DAG]:
    """Draw whole DAGs, ready to run, named ``t0``, ``t1``, ...

    Each task depends on up to *max_parents* earlier ones (as a positional
    handle, a handle in a list, or ``after=`` by handle or name). Its body
    sleeps a time drawn from *seconds* (default: 0 to 3 whole seconds) on
    the Trio clock, then returns its name, or raises ``ValueError`` for its
    first few attempts when *failures*; sync bodies (*run_in* ``"inline"``
    or ``"thread"``) return at once. With the flags set, tasks may also
    draw ``retries`` (with delay, backoff and a ``retry_on`` that does not
    match), a ``timeout``, ``trigger="all_done"``, and ``uses`` within the
    capacities of *resources*; every task draws a ``priority`` and a
    ``cost``. Run them with a ``MockClock`` and the same *resources*::

        @given(dag=trio_dag.testing.dags(resources={"gpu": 2}))
        def test_runs_keep_their_promises(dag):
            recorder = trio_dag.testing.Recorder()
            report = trio_dag.run_sync(dag, resources={"gpu": 2}, check=False,
                                       on_event=recorder)  # or trio.run with a MockClock
            trio_dag.testing.check_run(dag, report, recorder, resources={"gpu": 2})

    Threads make runs depend on the OS scheduler, so "thread" is not among
    the default *run_in*.
    """
    _check_sizes(min_tasks, max_tasks, max_parents)
    if seconds is None:
        seconds = st.integers(0, 3).map(float)
    elif not isinstance(seconds, st.SearchStrategy):
        raise InvalidArgument(f"seconds must be a strategy of durations, got {seconds!r}")
    for flag, value in [
        ("failures", failures),
        ("retries", retries),
        ("timeouts", timeouts),
        ("all_done", all_done),
    ]:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{flag} must be True or False, got {value!r}")
    kinds = tuple(run_in) if isinstance(run_in, Collection) and not isinstance(run_in, str) else ()
    if not kinds or any(kind not in _RUN_IN for kind in kinds):
        raise InvalidArgument(
            f"run_in must be a non-empty collection of 'async', 'inline', 'thread'; got {run_in!r}"
        )
    options = _Options(
        min_tasks,
        max_tasks,
        max_parents,
        seconds,
        failures,
        retries,
        timeouts,
        all_done,
        _check_resources(resources),
        kinds,
    )
    tasks = st.lists(_tasks(options), min_size=min_tasks, max_size=max_tasks)
    return tasks.map(_plan).map(build_dag)


def _check_resources(resources: object) -> tuple[tuple[str, float], ...]:
    if resources is None:
        return ()
    if not isinstance(resources, Mapping):
        raise InvalidArgument(f"resources must be a mapping of name to capacity, got {resources!r}")
    checked = []
    for name, capacity in sorted(resources.items()):
        if (
            not isinstance(name, str)
            or isinstance(capacity, bool)
            or not isinstance(capacity, numbers.Real)
            or not math.isfinite(capacity)
            or capacity < 0
        ):
            raise InvalidArgument(
                f"resources must map names (str) to finite capacities >= 0; got {name!r}: "
                f"{capacity!r}"
            )
        checked.append((name, float(capacity)))
    return tuple(checked)

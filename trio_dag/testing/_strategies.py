"""Hypothesis strategies: dependency structures (``dag_shapes``) and runnable DAGs (``dags``).

Imports Hypothesis, never pytest. Everything shrinks towards fewer tasks,
fewer dependencies and default options, and a drawn DAG prints as the plan
it was built from (``build_dag(dag_plan(t0=task(seconds=1), ...))``), so a
failing example reads as a small program.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Collection, Mapping
from fractions import Fraction
from typing import Any, Final, ParamSpec, final

import attrs
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .. import DAG
from ._plans import (
    BODIES,
    HOWS,
    POSITIONAL,
    BatchPlan,
    Body,
    DagPlan,
    RunIn,
    TaskPlan,
    build_dag,
)

__all__ = ["DagShape", "dag_plans", "dag_shapes", "dags"]

_RUN_IN: Final = ("async", "inline", "thread")
_SLEEP: Final[tuple[Body, ...]] = ("sleep",)
# The time unit of drawn durations on the real clock: runs stay short.
_REAL_UNIT: Final = 0.002
_P = ParamSpec("_P")
# Priorities users write too: ints beyond 2**53, where floats tie.
_HUGE_PRIORITIES: Final = (2**53, 2**53 + 1, -(2**53) - 1, 2**64 + 1)
# Of amounts of one value, which comes first (see _amounts).
_TYPE_ORDER: Final = {int: 0, float: 1, Fraction: 2}


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

    ``len(shape)`` is the number of tasks.

    Attributes:
      parents: For each task, the indices of its dependencies: distinct,
        ascending, each smaller than the task's own index.

    Raises:
      ValueError: Made by hand with *parents* that break that rule.
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

    A Hypothesis strategy of :class:`DagShape`, for testing your own task
    functions on any graph. It shrinks towards fewer tasks and fewer
    dependencies::

        @given(shape=trio_dag.testing.dag_shapes(max_tasks=20))
        def test_my_pipeline_on_any_shape(shape):
            dag = trio_dag.DAG()
            handles = []
            for deps in shape.parents:
                handles.append(dag.add(my_step, *[handles[p] for p in deps]))
            ...

    Args:
      min_tasks: The fewest tasks, an ``int`` >= 0. Default 0.
      max_tasks: The most tasks, an ``int`` >= *min_tasks*. Default 50.
      max_parents: The most dependencies of one task, an ``int`` >= 0.
        Default 4.

    Raises:
      hypothesis.errors.InvalidArgument: An argument is not an ``int`` in
        its range.
    """
    _check_sizes(min_tasks, max_tasks, max_parents)
    tasks = st.lists(_picks(max_tasks, max_parents), min_size=min_tasks, max_size=max_tasks)
    return tasks.map(_shape)


@attrs.frozen
class _Options:
    """The arguments of :func:`dag_plans`, checked."""

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
    bodies: tuple[Body, ...]
    batched: bool
    interrupts: bool
    real_clock: bool
    priorities: bool

    @property
    def unit(self) -> float:
        """The time unit of every drawn duration: a second, or 2 ms on the real clock."""
        return _REAL_UNIT if self.real_clock else 1.0


def _one_in(draw: st.DrawFn, k: int) -> bool:
    """True about once in *k* draws; shrinks to False."""
    return draw(st.integers(0, k - 1)) == k - 1


def _amounts(capacity: float) -> list[float]:
    """The amounts a task may use of a resource of *capacity*, smallest first.

    Whole numbers (as ints, and one as a float), tenths and what they leave of
    the capacity, halves and thirds of it, and all of it: amounts that add up
    exactly to the capacity, as 0.1 + 0.2 to 0.3 or 0.2 + 0.7 to 0.9, where
    float sums drift; each tenth also as a ``Fraction``, as users give exact
    amounts.
    """
    exact = Fraction(repr(capacity))
    found: dict[tuple[type, float], Any] = {}
    for k in range(1, min(int(exact), 8) + 1):
        found[int, k] = k
    if exact >= 1:
        found[float, float(int(exact))] = float(int(exact))
    for k in range(1, min(int(exact * 10), 10) + 1):
        tenth = Fraction(k, 10)
        for amount in (tenth, exact - tenth):
            if amount > 0:
                found.setdefault((float, float(amount)), float(amount))
        found.setdefault((Fraction, float(tenth)), tenth)
    for amount in (exact / 2, exact / 3, exact):
        if amount > 0:
            found.setdefault((float, float(amount)), float(amount))
    # By value (a float as the decimal it shows), then int, float, Fraction:
    # draws shrink towards the smallest amount, written plainest.
    return sorted(
        found.values(),
        key=lambda a: (Fraction(repr(a)) if type(a) is float else a, _TYPE_ORDER[type(a)]),
    )


def _uses(draw: st.DrawFn, o: _Options) -> tuple[tuple[str, float], ...]:
    uses = []
    for name, capacity in o.resources:
        if capacity > 0 and draw(st.booleans()):
            uses.append((name, draw(st.sampled_from(_amounts(capacity)))))
    return tuple(uses)


Drawn = tuple[list[tuple[int, str]], dict[str, Any]]


@st.composite
def _tasks(draw: st.DrawFn, o: _Options) -> Drawn:
    """One task: its dependencies as ``(pick, how given)`` (see _picks), and its options."""
    picks = draw(_picks(o.max_tasks, o.max_parents))
    deps = [(k, draw(st.sampled_from(HOWS))) for k in picks]
    plan: dict[str, Any] = {}
    unit = o.unit
    if o.batched and _one_in(draw, 3):
        plan["batch"] = draw(st.integers(0, 1))  # which function: taken modulo their number
    else:
        run_in = plan["run_in"] = draw(st.sampled_from(o.run_in))
        if run_in == "async":
            plan["body"] = draw(st.sampled_from(o.bodies))
        if run_in == "async" or (run_in == "thread" and o.real_clock):
            plan["seconds"] = draw(o.seconds)
        plan["partial"] = _one_in(draw, 4)
        if o.interrupts and _one_in(draw, 8):
            plan["interrupt"] = True
    if o.priorities:
        plan["priority"] = draw(st.integers(-2, 2) | st.sampled_from(_HUGE_PRIORITIES))
    plan["cost"] = draw(st.sampled_from([1.0, 2.0, 0.5, 3.0]))
    if o.retries and _one_in(draw, 3):
        plan["retries"] = draw(st.integers(1, 2))
        # Few delays, so that retries often fall due at the same instant.
        plan["retry_delay"] = draw(st.sampled_from([0.0, 1.0, 0.5, 2.0])) * unit
        plan["retry_backoff"] = draw(st.sampled_from([2.0, 1.0, 0.5]))
        if _one_in(draw, 4):
            plan["retry_on"] = (KeyError,)  # the drawn failures and timeouts are not retried
    if o.failures and "batch" not in plan and _one_in(draw, 4):
        plan["fails"] = draw(st.integers(1, plan.get("retries", 0) + 1))
        if _one_in(draw, 6):
            plan["error"] = draw(st.sampled_from(["unprintable", "group"]))
    if o.timeouts and _one_in(draw, 4):
        plan["timeout"] = draw(st.integers(1, 3)) * unit
    if "batch" not in plan:
        if o.all_done and _one_in(draw, 5):
            plan["trigger"] = "all_done"
        plan["uses"] = _uses(draw, o)
    return deps, plan


@st.composite
def _batch_plans(draw: st.DrawFn, o: _Options) -> BatchPlan:
    unit = o.unit
    fails = short = 0
    if o.failures and _one_in(draw, 3):
        fails = draw(st.integers(1, 2))
    if o.failures and _one_in(draw, 3):
        short = draw(st.integers(1, 2))
    run_in = draw(st.sampled_from(o.run_in))
    timed = run_in == "async" or (run_in == "thread" and o.real_clock)
    return BatchPlan(
        max_size=draw(st.integers(1, 5)),
        max_delay=draw(st.sampled_from([0.0, 0.5, 1.0])) * unit,
        seconds=draw(o.seconds) if timed else 0.0,
        fails=fails,
        short=short,
        uses=_uses(draw, o),
        run_in=run_in,
    )


def _task_plan(i: int, deps: list[tuple[int, str]], plan: dict[str, Any], batches: int) -> TaskPlan:
    how_of: dict[int, str] = {}
    for k, how in deps if i else ():
        how_of.setdefault(k % i, how)  # two picks may name one task: the first counts
    if "batch" in plan:
        # A batched task's one positional argument is its item: the first
        # dependency given as an argument; the others are given with after=.
        item = False
        for p, how in how_of.items():
            if how in POSITIONAL and not item:
                item = True
            elif how not in ("after", "name"):
                how_of[p] = "after"
        plan = {**plan, "batch": f"b{plan['batch'] % batches}"}
    return TaskPlan(deps=tuple(sorted(how_of.items())), **plan)


def _plan(o: _Options, drawn: tuple[list[Drawn], list[BatchPlan]]) -> DagPlan:
    tasks, batches = drawn
    used = {
        plan["batch"] % len(batches) for _, plan in tasks if "batch" in plan
    }  # functions no task uses are left out, renumbered in order
    kept = [b for k, b in enumerate(batches) if k in used]
    number = {k: n for n, k in enumerate(sorted(used))}
    planned = []
    for i, (deps, plan) in enumerate(tasks):
        if "batch" in plan:
            plan = {**plan, "batch": number[plan["batch"] % len(batches)]}
        planned.append(_task_plan(i, deps, plan, max(1, len(kept))))
    if planned:
        _use_every_resource(o, planned, kept)
    return DagPlan(tuple(planned), tuple(kept))


def _use_every_resource(o: _Options, tasks: list[TaskPlan], batches: list[BatchPlan]) -> None:
    """Give the last task that is not batched (or else the last task's batched
    function) the smallest amount of each resource no task uses yet.

    A run given a resource that no task uses warns NoEffectWarning; so the
    resources passed to both the strategy and the run stay used, whatever
    was drawn. A resource of capacity 0 fits no amount and stays unused.
    """
    used = {name for task in tasks if task.batch is None for name, _ in task.uses}
    used.update(name for fn in batches for name, _ in fn.uses)
    missing = tuple(
        (name, _amounts(capacity)[0])
        for name, capacity in o.resources
        if capacity > 0 and name not in used
    )
    if not missing:
        return
    plain = [i for i, task in enumerate(tasks) if task.batch is None]
    if plain:
        i = plain[-1]
        tasks[i] = attrs.evolve(tasks[i], uses=tasks[i].uses + missing)
    else:
        batch = tasks[-1].batch
        assert batch is not None
        k = int(batch[1:])
        batches[k] = attrs.evolve(batches[k], uses=batches[k].uses + missing)


def _building(
    plans: Callable[_P, st.SearchStrategy[DagPlan]],
) -> Callable[[Callable[[], None]], Callable[_P, st.SearchStrategy[DAG]]]:
    """A strategy of built DAGs that takes the arguments of *plans*, a strategy of plans.

    The decorated function gives only its name and docstring; the result draws
    a plan from ``plans(...)`` and builds it, and shows the signature of *plans*.
    """

    def decorate(doc: Callable[[], None]) -> Callable[_P, st.SearchStrategy[DAG]]:
        def built(*args: _P.args, **kwargs: _P.kwargs) -> st.SearchStrategy[DAG]:
            return plans(*args, **kwargs).map(build_dag)

        built.__name__ = built.__qualname__ = doc.__name__
        built.__doc__ = doc.__doc__
        signature = inspect.signature(plans)
        built.__signature__ = signature.replace(  # type: ignore[attr-defined]
            return_annotation="st.SearchStrategy[DAG]"
        )
        return built

    return decorate


def dag_plans(
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
    bodies: Collection[Body] = _SLEEP,
    batched: bool = False,
    interrupts: bool = False,
    real_clock: bool = False,
    priorities: bool = False,
) -> st.SearchStrategy[DagPlan]:
    """Draw plans of DAGs: :func:`dags` before building, to build as often as you like.

    Takes the arguments of :func:`dags`. ``plan.build()`` makes a fresh DAG,
    with fresh bodies, each time: run one plan on two backends, or twice, and
    compare::

        @given(plan=trio_dag.testing.dag_plans(max_tasks=10, batched=True))
        def test_runs_agree(plan):
            first = trio_dag.run_sync(plan.build(), limit=1, check=False)
            second = trio_dag.run_sync(plan.build(), limit=1, check=False)
            assert [first.state(h.name) for h in first] == [second.state(h.name) for h in second]
    """
    _check_sizes(min_tasks, max_tasks, max_parents)
    for flag, value in [
        ("failures", failures),
        ("retries", retries),
        ("timeouts", timeouts),
        ("all_done", all_done),
        ("batched", batched),
        ("interrupts", interrupts),
        ("real_clock", real_clock),
        ("priorities", priorities),
    ]:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{flag} must be True or False, got {value!r}")
    unit = _REAL_UNIT if real_clock else 1.0
    if seconds is None:
        seconds = st.integers(0, 3).map(lambda k: k * unit)
    elif not isinstance(seconds, st.SearchStrategy):
        raise InvalidArgument(f"seconds must be a strategy of durations, got {seconds!r}")
    kinds = _kinds("bodies", bodies, BODIES)
    if "process" in kinds and not real_clock:
        raise InvalidArgument(
            "bodies with 'process' need real_clock=True: a MockClock jumps ahead while a "
            "process runs, so its timeouts and the run's deadlines would pass at once"
        )
    o = _Options(
        min_tasks,
        max_tasks,
        max_parents,
        seconds,
        failures,
        retries,
        timeouts,
        all_done,
        _check_resources(resources),
        _kinds("run_in", run_in, _RUN_IN),
        kinds,
        batched,
        interrupts,
        real_clock,
        priorities,
    )
    tasks = st.lists(_tasks(o), min_size=o.min_tasks, max_size=o.max_tasks)
    functions = st.lists(_batch_plans(o), min_size=1, max_size=2) if o.batched else st.just([])
    return st.tuples(tasks, functions).map(functools.partial(_plan, o))


@_building(dag_plans)
def dags() -> None:
    """Draw whole DAGs, ready to run, named ``t0``, ``t1``, ...

    Each task depends on up to *max_parents* earlier ones, given as users
    give them: a positional handle, a handle in a list, in a dict, in a
    namedtuple, in ``kwargs=``, or ``after=`` by handle or name. Its body
    waits a time drawn from *seconds* (default: 0 to 3 whole seconds) on the
    Trio clock, then returns its name, or raises (a ``ValueError``, or now
    and then an exception whose ``str()`` raises, or an ``ExceptionGroup``
    holding a ``ValueError``) for its first few attempts when *failures*.
    Bodies may be given behind ``functools.partial``.

    - *bodies*: what async bodies do while they wait: ``"sleep"``;
      ``"nursery"`` (an inner nursery of two children, the failure raised by
      one of them); ``"catch"`` (catches ``Cancelled``, cleans up behind a
      shield, raises it again); ``"finally"`` (a ``try``/``finally`` whose
      clean-up awaits half the body's time more behind a shield, however the
      body ends); ``"to_thread"`` (first runs a function through
      ``trio.to_thread.run_sync``, which checks ``current_task()`` there: a
      MockClock may jump while it runs, so run these with no Trio deadline
      of your own); ``"fail_after"`` (sleeps inside its own
      ``trio.fail_after``, which a failing attempt sets short, so that it
      raises ``trio.TooSlowError``); ``"process"`` (``trio.run_process`` of a
      short real Python process with captured output; a failure is its
      nonzero exit, ``CalledProcessError``; needs *real_clock*).
    - *run_in*: ``"async"`` bodies as above; ``"inline"`` and ``"thread"``
      sync bodies, which return at once (on the real clock a thread body
      sleeps its time first).
    - *batched*: tasks of one or two ``@batched`` functions mixed with the
      others (``max_size`` 1 to 5, ``max_delay`` 0 or more, ``uses``, and
      retries and timeouts as other tasks; async, or sync and run as one of
      *run_in* says; with *failures*, calls that raise and calls that return
      a list one item short).
    - *interrupts*: a task may raise :class:`Interrupt`, a BaseException
      that is not an Exception, which propagates from the run.
    - *real_clock*: every drawn duration (sleeps by default, retry delays,
      timeouts, batch delays) is in units of 2 ms instead of seconds.
    - *priorities*: every task draws a ``priority`` (now and then one
      beyond 2**53), for runs with ``policy="priority"``; under any other
      policy ``priority=`` does nothing and the run warns
      :class:`~trio_dag.NoEffectWarning`, so without it every task keeps
      the default priority.

    With the flags set, tasks may also draw ``retries`` (with few distinct
    delays, so retries fall due together, a backoff, and a ``retry_on``
    that does not match), a ``timeout``, ``trigger="all_done"``, and
    ``uses`` within the capacities of *resources* (whole and fractional
    amounts, including ones that add up exactly to a capacity); every task
    draws a ``cost``. A DAG with tasks uses every resource of *resources*
    (the last task that is not batched gets the smallest amount of any
    resource no other draw used), so a run given the same *resources* does
    not warn :class:`~trio_dag.NoEffectWarning` that one is unused; only a
    resource of capacity 0, which fits no amount, stays unused.
    A body that sees the engine break a promise (a Handle in place of an
    output, a batch above ``max_size``) raises ``BrokenPromise``, a
    BaseException that propagates from the run. Run them with a
    ``MockClock`` (or, with *real_clock*, the real one) and the same
    *resources*::

        @given(dag=trio_dag.testing.dags(resources={"gpu": 2}))
        def test_runs_keep_their_promises(dag):
            recorder = trio_dag.testing.Recorder()
            report = trio_dag.run_sync(dag, resources={"gpu": 2}, check=False,
                                       on_event=recorder)  # or trio.run with a MockClock
            trio_dag.testing.check_run(dag, report, recorder, resources={"gpu": 2})

    Threads make runs depend on the OS scheduler, and a MockClock jumps
    ahead while a thread runs, so "thread" is not among the default *run_in*.
    """


def _kinds(name: str, value: object, allowed: tuple[str, ...]) -> tuple[Any, ...]:
    kinds = tuple(value) if isinstance(value, Collection) and not isinstance(value, str) else ()
    if not kinds or any(kind not in allowed for kind in kinds):
        raise InvalidArgument(
            f"{name} must be a non-empty collection of {', '.join(map(repr, allowed))}; "
            f"got {value!r}"
        )
    return kinds


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

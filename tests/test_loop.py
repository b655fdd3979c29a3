"""The fast loop (``_loop_py`` and the compiled ``_loop``): bodies that return at
once, raise at once or suspend, their arguments, contexts and clock.

Every test takes ``dag_core``, so it runs against both loops.
"""

from __future__ import annotations

import contextvars
from functools import partial
from typing import Any

import pytest
import trio
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def test_bodies_that_return_at_once_get_the_outputs_of_their_handles(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def one() -> int:
        return 1

    async def add(*xs: int) -> int:
        return sum(xs)

    dag = trio_dag.DAG()
    a = dag.add(one)
    b = dag.add(add, a, a)
    c = dag.add(add, b, a, b)
    d = dag.add(add, c)
    report = await trio_dag.run(dag, limit=1)
    assert [report[h] for h in (a, b, c, d)] == [1, 2, 5, 5]


async def test_an_async_body_that_returns_no_coroutine_fails(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    def not_async() -> int:
        return 1

    dag = trio_dag.DAG()
    h = dag.add(not_async, run_in="async")
    after = dag.add(not_async, run_in="inline", after=[h])
    report = await trio_dag.run(dag, check=False)
    assert report.state(h) == TaskState.FAILED
    assert report.state(after) == TaskState.SKIPPED
    error = report.errors[h.name]
    assert isinstance(error, TypeError)
    assert str(error) == f"{not_async!r} is async but returned int"


async def test_a_body_that_raises_at_once_leaves_the_others_running(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def value(x: int) -> int:
        return x

    async def boom() -> None:
        raise ValueError("boom")

    dag = trio_dag.DAG()
    first = dag.add(value, 1)
    bad = dag.add(boom, after=[first])
    skipped = dag.add(value, 2, after=[bad])
    later = [dag.add(value, i, after=[first]) for i in range(3, 6)]
    report = await trio_dag.run(dag, limit=1, check=False)
    assert report.state(bad) == TaskState.FAILED
    assert report.state(skipped) == TaskState.SKIPPED
    assert [report[h] for h in (first, *later)] == [1, 3, 4, 5]


async def test_bodies_that_suspend_and_bodies_that_do_not_take_turns(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def at_once(x: int) -> int:
        return x + 1

    async def slow(x: int) -> int:
        await trio.sleep(1)
        return x * 10

    dag = trio_dag.DAG()
    h = dag.add(at_once, 0)
    for i in range(6):
        h = dag.add(slow if i % 2 else at_once, h)
    report = await trio_dag.run(dag)
    assert report[h] == ((((1 + 1) * 10 + 1) * 10 + 1) * 10)
    assert report.ok


async def test_each_body_runs_in_a_context_of_its_own(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    async def set_and_read(value: str) -> str:
        seen = VAR.get()
        VAR.set(value)
        return seen

    dag = trio_dag.DAG()
    a = dag.add(set_and_read, "a")
    b = dag.add(set_and_read, "b", after=[a])
    VAR.set("run")
    report = await trio_dag.run(dag, limit=1)
    assert (report[a], report[b]) == ("run", "run")
    assert VAR.get() == "run"


async def test_times_are_read_from_the_run_clock(dag_core: Any) -> None:
    # No MockClock: Trio's own clock, which the loop reads without a call.
    async def noop() -> None:
        return None

    dag = trio_dag.DAG()
    handles = [dag.add(noop)]
    for _ in range(20):
        handles.append(dag.add(noop, after=[handles[-1]]))
    before = trio.current_time()
    report = await trio_dag.run(dag)
    after = trio.current_time()
    times = [before]
    for h in handles:
        timing = report.timing(h)
        assert timing.start is not None and timing.end is not None
        times += [timing.start, timing.end]
    times.append(after)
    assert times == sorted(times)  # and each task ends before the next starts


class Scale:
    """An object with an async ``__call__``: the body is ``functools.partial(Scale(), ...)``."""

    async def __call__(self, x: int, *, factor: int, **more: int) -> tuple[int, dict[str, int]]:
        return x * factor, more


async def times(x: int, *, factor: int) -> int:
    return x * factor


async def total(xs: list[int], *, factor: int) -> int:
    return sum(xs) * factor


async def test_a_partial_with_keywords_gets_them_and_only_them(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    """Keyword arguments bound in a partial reach the body, with no others.

    A task without ``kwargs=`` used to be called by the compiled loop with
    None where C wants no keyword arguments at all (undefined behaviour): a
    partial with keywords then failed with "'NoneType' object has no
    attribute 'keys'". Every way the loop binds arguments is here: none,
    constants, handles only, a handle in a container, ``kwargs=`` with and
    without a handle.
    """
    dag = trio_dag.DAG()
    alone = dag.add(partial(Scale(), 2, factor=3))
    constant = dag.add(partial(Scale(), factor=3), 2)
    first = dag.add(partial(times, 1, factor=5))
    handle = dag.add(partial(times, factor=2), first)
    contained = dag.add(partial(total, factor=2), [first, first])
    with_kwargs = dag.add(partial(Scale(), factor=3), 2, kwargs={"more": 1})
    handle_in_kwargs = dag.add(partial(Scale(), 2), kwargs={"factor": first})
    report = await trio_dag.run(dag, limit=1)
    assert report[alone] == (6, {})
    assert report[constant] == (6, {})
    assert (report[first], report[handle], report[contained]) == (5, 10, 20)
    assert report[with_kwargs] == (6, {"more": 1})
    assert report[handle_in_kwargs] == (10, {})


def test_the_ledger_checks_what_python_hands_it(dag_core: Any) -> None:
    """A task out of range or a short worker slot raises IndexError on both loops.

    The compiled loop indexes its arrays and the slot without checks; these
    are the calls that come from Python. Retries count only as "any or none"
    (the compiled loop took them as a C int, which a large count overflowed).
    """

    async def noop() -> None:
        return None

    dag = trio_dag.DAG()
    dag.add(noop)
    snap = dag._freeze()
    st = snap.backend.core.RunState(snap.graph)
    loop = snap.backend.loop.Loop(snap, st, lambda: 0.0, True, lambda: None)
    with pytest.raises(IndexError):
        loop.begin(1)
    with pytest.raises(IndexError):
        loop.finish(1, 0.0, 0)
    assert loop.begin(0) == 0.0
    loop.finish(0, 0.0, 2**64)
    assert list(loop.attempts) == [1]
    assert loop.extra == [(0, 1, 0.0, 0.0)]
    with pytest.raises(IndexError):
        loop.run(st.pop(), [snap])


def test_the_end_order_survives_2_31_ends(dag_core: Any) -> None:
    """end_order keeps the order of the tasks' ends past 2**31 - 1 of them.

    The compiled loop keeps it in int32 and renumbers it when the count of
    ends reaches the top; the twin's int64 never does. Either way only the
    order is read.
    """

    async def noop() -> None:
        return None

    dag = trio_dag.DAG()
    for _ in range(3):
        dag.add(noop)
    snap = dag._freeze()
    st = snap.backend.core.RunState(snap.graph)
    loop = snap.backend.loop.Loop(snap, st, lambda: 0.0, True, lambda: None)
    for v in (0, 2, 1):
        loop.begin(v)
        loop.finish(v, 0.0, 0)
        if v == 0:
            loop.ends = 2**31 - 1
    assert sorted(range(3), key=loop.end_order.__getitem__) == [0, 2, 1]
    assert all(loop.end_order)

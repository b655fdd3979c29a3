"""Bad input refused by ``add()`` and ``run()`` before anything is recorded or starts
(issue 14: defects 3, 4, 12, 14, 15, 16 and 17).

A refused ``add`` names the task and what to do, and leaves the DAG as it
was: ``recorded(dag)`` is compared before and after. Runs use both cores
(``dag_core``) and are bounded by ``trio.fail_after``; runs with thread bodies
use the real clock, since a MockClock jumps while a thread works.
"""

from __future__ import annotations

import collections
import functools
import math
import re
import threading
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from typing import Any, NamedTuple

import pytest
import trio
from _engine_probe import Probe, add_nap
from trio.testing import MockClock

import trio_dag
from trio_dag import DAG, Handle
from trio_dag._bodies import ASYNC, THREAD, kind_of


def recorded(dag: DAG) -> tuple[Any, ...]:
    """What a DAG holds, to check that a refused call changed nothing."""
    return (
        len(dag),
        [h.name for h in dag],
        list(dag._fns),
        list(dag._args),
        list(dag._opts),
        dict(dag._kwargs),
        dag._src.tolist(),
        dict(dag._where),
        dict(dag._paths),
        dag._batched.tolist(),
    )


def run_mock(dag: DAG, **options: Any) -> trio_dag.RunReport:
    """Run *dag* on a MockClock, failing (not hanging) if it takes over 100 Trio seconds."""

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(100):
            return await trio_dag.run(dag, **options)

    return trio.run(main, clock=MockClock(autojump_threshold=0))


def run_real(dag: DAG, **options: Any) -> trio_dag.RunReport:
    """Run *dag* on the real clock (for thread bodies), bounded by 10 seconds."""

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(10):
            return await trio_dag.run(dag, **options)

    return trio.run(main)


async def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    await trio.sleep(1)
    return args, kwargs


async def value(x: Any) -> Any:
    await trio.sleep(1)
    return x


@trio_dag.batched(max_size=4)
async def embed(items: list[Any]) -> list[Any]:
    await trio.sleep(1)
    return [("vec", item) for item in items]


# -- defect 3: @batched tasks ---------------------------------------------------------


@pytest.mark.parametrize("run_in", ["async", "inline", "thread"])
def test_run_in_is_refused_for_a_batched_function(run_in: str) -> None:
    dag = DAG()
    dag.add(embed, "a")
    before = recorded(dag)
    # An async batched function runs in the event loop (a sync one may run
    # elsewhere: see test_executors.py).
    with pytest.raises(ValueError, match=r"async batched .* runs in the event loop") as info:
        dag.add(embed, "b", run_in=run_in, name="b")
    assert "task 'b'" in str(info.value) and f"run_in={run_in!r}" in str(info.value)
    assert recorded(dag) == before
    with pytest.raises(ValueError, match=r"async batched .* runs in the event loop"):
        dag.map(embed, ["c", "d"], run_in=run_in)
    assert recorded(dag) == before


@pytest.mark.parametrize("args", [(), ("a", "b"), ("a", "b", "c")])
def test_a_batched_task_takes_exactly_one_positional_argument(args: tuple[Any, ...]) -> None:
    dag = DAG()
    item = dag.add(value, "x")
    before = recorded(dag)
    with pytest.raises(TypeError, match=f"'embed-1'.* its item .*got {len(args)}"):
        dag.add(embed, *args)
    with pytest.raises(TypeError, match="exactly one positional argument"):
        dag.add(embed, item, item)  # all handles: the fast path of add
    assert recorded(dag) == before


def test_a_batched_task_takes_no_kwargs() -> None:
    dag = DAG()
    before = recorded(dag)
    with pytest.raises(TypeError, match=r"'embed-0'.* takes no kwargs="):
        dag.add(embed, "a", kwargs={"k": 1})
    with pytest.raises(TypeError, match="takes no kwargs="):
        dag.map(embed, ["a", "b"], kwargs={"k": 1})
    assert recorded(dag) == before
    dag.add(embed, "a", kwargs={})  # nothing to pass: nothing wrong


def test_batched_tasks_refused_at_add_leave_a_dag_that_runs(dag_core: Any) -> None:
    # The run that hung: two tasks of one batched function, the first with run_in=.
    dag = DAG()
    with pytest.raises(ValueError, match="batched"):
        dag.add(embed, "a", run_in="async")
    b = dag.add(embed, "b")
    handles = dag.map(embed, ["c", "d"])
    report = run_mock(dag)
    assert report[b] == ("vec", "b")
    assert [report[h] for h in handles] == [("vec", "c"), ("vec", "d")]


# -- defect 4: retry_backoff ----------------------------------------------------------


@pytest.mark.parametrize(
    ("retries", "retry_delay", "retry_backoff"),
    [(3, 1.0, 1e200), (2, 1e300, 1e10), (10**400, 1.0, 2.0), (2000, 0.5, 2.0)],
    ids=["backoff-1e200", "delay-1e300", "retries-10**400", "retries-2000"],
)
def test_a_retry_wait_too_large_for_a_float_is_refused(
    retries: int, retry_delay: float, retry_backoff: float
) -> None:
    dag = DAG()
    before = recorded(dag)
    with pytest.raises(ValueError, match=r"'value-0'.*retry_backoff \*\* \(retries - 1\)"):
        dag.add(value, 1, retries=retries, retry_delay=retry_delay, retry_backoff=retry_backoff)
    assert recorded(dag) == before


@pytest.mark.parametrize(
    ("retries", "retry_delay", "retry_backoff"),
    [(2, 1.0, 1e200), (1, 1.0, 1e300), (10**400, 1.0, 0.5), (10**400, 1.0, 1.0)],
    ids=["one-wait-1e200", "no-backoff-used", "backoff-0.5", "backoff-1"],
)
def test_retry_waits_that_stay_finite_are_accepted(
    retries: int, retry_delay: float, retry_backoff: float
) -> None:
    # Only the wait before the last retry can be the longest, and only when
    # the backoff is above 1.
    DAG().add(value, 1, retries=retries, retry_delay=retry_delay, retry_backoff=retry_backoff)


# -- defect 12: numbers ---------------------------------------------------------------


BIG = [2**53, 2**53 + 1, 2**53 + 2, 10**400, -(10**400), 10**400 + 1, 0]


@pytest.mark.parametrize("strategy", ["immediate", "waves"])
def test_priorities_of_any_size_order_exactly(dag_core: Any, strategy: str) -> None:
    probe = Probe()
    dag = DAG()
    for k, p in enumerate(BIG):
        add_nap(dag, probe, f"p{k}", 1, priority=p)
    run_mock(dag, limit=1, policy="priority", strategy=strategy)
    by_priority = sorted(range(len(BIG)), key=lambda k: -BIG[k])
    assert probe.started == [f"p{k}" for k in by_priority]


def test_equal_huge_priorities_tie_in_fifo_order(dag_core: Any) -> None:
    probe = Probe()
    dag = DAG()
    for k, p in enumerate([10**400, 2**60, 10**400, 2**60]):
        add_nap(dag, probe, f"p{k}", 1, priority=p)
    run_mock(dag, limit=1, policy="priority")
    assert probe.started == ["p0", "p2", "p1", "p3"]


@pytest.mark.parametrize(
    ("option", "given"),
    [
        ("cost", 10**400),
        ("timeout", 10**400),
        ("retry_delay", 10**400),
        ("retry_backoff", 10**400),
        ("uses", {"gpu": 10**400}),
        ("cost", 10**5000),  # too long for repr(): the message still says what it got
    ],
    ids=["cost", "timeout", "retry_delay", "retry_backoff", "uses", "cost-5000-digits"],
)
def test_numbers_too_large_for_a_float_are_a_value_error(option: str, given: Any) -> None:
    dag = DAG()
    before = recorded(dag)
    with pytest.raises(ValueError, match=f"task 'value-0': {option}.* must be finite"):
        dag.add(value, 1, **{option: given})
    assert recorded(dag) == before


def test_a_resource_capacity_that_is_not_finite_is_a_value_error() -> None:
    # An int capacity of any size is counted exactly (tests/test_resources.py);
    # a float that is not finite cannot be.
    dag = DAG()
    dag.add(value, 1, uses={"gpu": 1})
    for capacity in (math.inf, math.nan):
        with pytest.raises(ValueError, match="resource 'gpu' needs a finite capacity"):
            run_mock(dag, resources={"gpu": capacity})


@pytest.mark.parametrize(
    ("option", "given"),
    [
        ("priority", False),
        ("priority", True),
        ("retries", False),
        ("retries", True),
        ("cost", True),
        ("retry_delay", False),
        ("retry_backoff", True),
        ("timeout", True),
        ("uses", {"gpu": True}),
    ],
)
def test_bool_is_not_a_number_for_any_option(option: str, given: Any) -> None:
    # False == 0 and True == 1.0: equal to a default, they were let through.
    dag = DAG()
    before = recorded(dag)
    with pytest.raises(TypeError, match=f"task 'value-0': {option}.* must be a"):
        dag.add(value, 1, **{option: given})
    assert recorded(dag) == before


def test_numbers_equal_to_the_defaults_are_accepted() -> None:
    dag = DAG()
    h = dag.add(value, 1, priority=0, retries=0, cost=1, retry_delay=0, retry_backoff=2)
    assert dag._opts[h.index] == trio_dag._options.DEFAULT_OPTIONS


# -- defect 14: where handles may be ----------------------------------------------------


class Pair(NamedTuple):
    first: Any
    second: Any


Point = collections.namedtuple("Point", "x y")


class Tagged(list[Any]):
    """A list subclass with an attribute of its own."""

    label = "class"


class Row(tuple[Any, ...]):
    pass


def test_handles_in_namedtuples_and_container_subclasses_are_dependencies(
    dag_core: Any,
) -> None:
    dag = DAG()
    a = dag.add(value, "A")
    b = dag.add(value, "B")
    tagged = Tagged([a, 1])
    tagged.label = "mine"
    counts = collections.defaultdict(list, {"k": b})
    args = (
        Point(a, 2),
        Pair(first=[b], second=Point(x=1, y=a)),
        tagged,
        Row((b, 3)),
        collections.OrderedDict([("z", a), ("y", 2)]),
        counts,
    )
    t = dag.add(echo, *args, kwargs={"opt": collections.OrderedDict(k=Point(b, b))})
    assert dag.dependencies(t) == (a, b)
    report = run_mock(dag)
    got, kwargs = report[t]
    assert got == (
        Point("A", 2),
        Pair(["B"], Point(1, "A")),
        ["A", 1],
        ("B", 3),
        {"z": "A", "y": 2},
        {"k": "B"},
    )
    assert [type(x) for x in got] == [type(x) for x in args]
    assert type(got[1].second) is Point
    assert got[2].label == "mine"
    assert list(got[4]) == ["z", "y"]
    assert got[5].default_factory is list
    assert kwargs == {"opt": {"k": ("B", "B")}}
    assert type(kwargs["opt"]) is collections.OrderedDict and type(kwargs["opt"]["k"]) is Point
    # The arguments the DAG keeps still hold the handles.
    assert args[0] == Point(a, 2) and counts["k"] is b


def _refused_places(h: Handle[Any]) -> list[tuple[tuple[Any, ...], dict[str, Any], str]]:
    """Arguments with *h* in a set, frozenset or deque, and where the error says it is."""
    return [
        (({h},), {}, "the set at args[0]"),
        ((frozenset([h, 1]),), {}, "the frozenset at args[0]"),
        ((collections.deque([1, h]),), {}, "the deque at args[0]"),
        ((1, [2, {"k": {h}}]), {}, "the set at args[1][1]['k']"),
        ((), {"x": (1, frozenset([(h, 2)]))}, "the frozenset at kwargs['x'][1]"),
        ((Tagged([collections.deque([[h]])]),), {}, "the deque at args[0][0]"),
    ]


def _key_places(h: Handle[Any]) -> list[tuple[tuple[Any, ...], dict[str, Any], str]]:
    """Arguments with *h* in a dict key, and where the error says the dict is."""
    return [
        (({h: 1},), {}, "the dict at args[0]"),
        (([{(h, 2): 1}],), {}, "the dict at args[0][0]"),
        (({frozenset([h]): 1},), {}, "the dict at args[0]"),
        ((), {"x": collections.OrderedDict([(h, 1)])}, "the OrderedDict at kwargs['x']"),
    ]


@pytest.mark.parametrize("k", range(6))
def test_a_handle_in_a_set_frozenset_or_deque_is_refused(k: int) -> None:
    dag = DAG()
    h = dag.add(value, 1)
    args, kwargs, where = _refused_places(h)[k]
    before = recorded(dag)
    with pytest.raises(TypeError, match=re.escape(f"'echo-1': {where} ")) as info:
        dag.add(echo, *args, kwargs=kwargs)
    assert "put the handles in a list or tuple" in str(info.value)
    assert recorded(dag) == before


@pytest.mark.parametrize("k", range(4))
def test_a_handle_in_a_dict_key_is_refused(k: int) -> None:
    dag = DAG()
    h = dag.add(value, 1)
    args, kwargs, where = _key_places(h)[k]
    before = recorded(dag)
    with pytest.raises(TypeError, match=re.escape(f"'echo-1': {where} ")) as info:
        dag.add(echo, *args, kwargs=kwargs)
    assert "has a Handle in the key" in str(info.value)
    assert recorded(dag) == before


def test_sets_deques_and_dict_keys_without_handles_are_plain_values(dag_core: Any) -> None:
    dag = DAG()
    a = dag.add(value, "A")
    looped: collections.deque[Any] = collections.deque([1])
    looped.append(looped)
    args = ({1, 2}, frozenset("ab"), looped, {(1, 2): a, frozenset(): [a]})
    t = dag.add(echo, *args)
    got, _ = run_mock(dag)[t]
    assert got[:3] == args[:3] and got[2] is looped
    assert got[3] == {(1, 2): "A", frozenset(): ["A"]}


def test_a_tuple_subclass_rebuilt_from_its_items() -> None:
    dag = DAG()
    a = dag.add(value, 1)
    t = dag.add(echo, [Row((a, 2))])
    args, _ = dag._freeze().bind(t.index, ["X", None])
    assert args == ([("X", 2)],) and type(args[0][0]) is Row


# -- defect 15: add during a run ------------------------------------------------------


def test_add_while_the_dag_runs_raises_and_the_next_run_works(dag_core: Any) -> None:
    dag = DAG()
    refused: list[str] = []

    async def grow() -> None:
        try:
            dag.add(value, "late", name="late")
        except RuntimeError as exc:
            refused.append(str(exc))

    dag.add(grow, name="grow")
    report = run_mock(dag)
    assert report.ok and len(dag) == 1
    assert refused == [
        "task 'late': the DAG is being run; tasks cannot be added to a running DAG yet; "
        "add them before the run starts or after it has ended"
    ]
    late = dag.add(value, "late", name="late")  # the run has ended
    refused.clear()
    report = run_mock(dag)
    assert report[late] == "late" and len(refused) == 1
    assert dag._runs == 0


async def test_add_in_an_open_run_block_raises(dag_core: Any, autojump_clock: MockClock) -> None:
    dag = DAG()
    dag.add(value, 1)
    with trio.fail_after(100):
        async with trio_dag.open_run(dag) as run:
            with pytest.raises(RuntimeError, match="the DAG is being run"):
                dag.add(value, 2)
            with pytest.raises(RuntimeError, match="the DAG is being run"):
                dag.map(value, [3, 4])
            async for _ in run.events():
                pass
            with pytest.raises(RuntimeError, match="the DAG is being run"):
                dag.add(value, 2)  # the run ended, but the block has not
    assert len(dag) == 1
    dag.add(value, 2)


async def test_concurrent_runs_of_one_dag_each_count(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = DAG()
    dag.add(value, 1)
    ends: list[int] = []

    async def run_after(delay: float) -> None:
        await trio.sleep(delay)
        await trio_dag.run(dag)
        ends.append(dag._runs)

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_after, 0)
            nursery.start_soon(run_after, 0.5)
            await trio.sleep(0.75)
            assert dag._runs == 2
    assert ends == [1, 0]
    dag.add(value, 2)


@pytest.fixture
def failing_dag() -> DAG:
    async def boom() -> None:
        await trio.sleep(1)
        raise ValueError("boom")

    dag = DAG()
    dag.add(boom)
    dag.add(value, 1)
    return dag


async def test_a_failed_or_cancelled_run_ends_the_running_state(
    dag_core: Any, autojump_clock: MockClock, failing_dag: DAG
) -> None:
    with trio.fail_after(100):
        with pytest.raises(trio_dag.RunFailedError):
            await trio_dag.run(failing_dag)
        assert failing_dag._runs == 0
        with trio.move_on_after(0.5) as scope:
            await trio_dag.run(failing_dag)
        assert scope.cancelled_caught and failing_dag._runs == 0
        with pytest.raises(KeyError):
            async with trio_dag.open_run(failing_dag):
                assert failing_dag._runs == 1
                raise KeyError("in the block")
        assert failing_dag._runs == 0
        with pytest.raises(trio_dag.RunFailedError):
            async with trio_dag.open_run(failing_dag):
                pass
        assert failing_dag._runs == 0
        with pytest.raises(ValueError, match="on_failure"):
            await trio_dag.run(failing_dag, on_failure="stop")  # refused before it starts
        assert failing_dag._runs == 0
    failing_dag.add(value, 2)


# -- defect 16: classes ---------------------------------------------------------------


class Scorer:
    """A class whose instances are async callables."""

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.made_in = threading.get_ident()

    async def __call__(self, x: int) -> int:
        await trio.sleep(0)
        return self.weight * x


def test_a_class_is_a_sync_callable_even_with_an_async_call() -> None:
    assert kind_of(Scorer) == THREAD
    assert kind_of(functools.partial(Scorer, 2)) == THREAD
    assert kind_of(Scorer(2)) == ASYNC
    assert kind_of(functools.partial(Scorer(2), 3)) == ASYNC


def test_a_class_as_fn_makes_an_instance_and_its_instance_is_awaited(dag_core: Any) -> None:
    dag = DAG()
    made = dag.add(Scorer, 3)
    inline = dag.add(Scorer, 4, run_in="inline")
    scored = dag.add(Scorer(5), 2)
    report = run_real(dag)
    assert type(report[made]) is Scorer and report[made].weight == 3
    assert report[made].made_in != threading.get_ident()  # a worker thread, like any sync fn
    assert report[inline].made_in == threading.get_ident()
    assert report[scored] == 10


def test_run_in_thread_for_an_async_callable_object_is_refused() -> None:
    dag = DAG()
    with pytest.raises(ValueError, match="Scorer is async"):
        dag.add(Scorer(1), 2, run_in="thread")
    dag.add(Scorer, 2, run_in="thread")  # the class itself is sync
    assert len(dag) == 1


# -- defect 17: callbacks and generators ----------------------------------------------


async def on_event_async(event: Any) -> None:
    raise AssertionError("never called")  # pragma: no cover


async def on_event_agen(event: Any) -> AsyncIterator[None]:
    yield  # pragma: no cover


class AsyncListener:
    async def __call__(self, event: Any) -> None:
        raise AssertionError("never called")  # pragma: no cover


ASYNC_CALLBACKS = [
    on_event_async,
    functools.partial(on_event_async),
    AsyncListener(),
    on_event_agen,
]


@pytest.mark.parametrize("callback", ASYNC_CALLBACKS)
async def test_an_async_on_event_is_refused_before_anything_starts(
    dag_core: Any, autojump_clock: MockClock, callback: Any
) -> None:
    probe = Probe()
    dag = DAG()
    add_nap(dag, probe, "a", 1)
    with trio.fail_after(100):
        with pytest.raises(TypeError, match=r"on_event .* is async, but it is called, not awaited"):
            await trio_dag.run(dag, on_event=callback)
        with pytest.raises(TypeError, match="on_event"):
            async with trio_dag.open_run(dag, on_event=callback):
                raise AssertionError("the block must not run")  # pragma: no cover
    assert probe.started == [] and dag._runs == 0


@pytest.mark.parametrize("key", ASYNC_CALLBACKS)
async def test_an_async_policy_key_function_is_refused(
    dag_core: Any, autojump_clock: MockClock, key: Any
) -> None:
    dag = DAG()
    dag.add(value, 1)
    with trio.fail_after(100), pytest.raises(TypeError, match=r"policy key function .* is async"):
        await trio_dag.run(dag, policy=key)


@pytest.mark.parametrize("strategy", ["immediate", "waves"])
async def test_keys_that_cannot_be_compared_are_a_callback_error(
    dag_core: Any, autojump_clock: MockClock, strategy: str
) -> None:
    keys = {"a": 1, "b": "one", "c": 2}

    def by_name(h: Handle[Any]) -> Any:
        return keys[h.name]

    probe = Probe()
    dag = DAG()
    for name in keys:
        add_nap(dag, probe, name, 1)
    with trio.fail_after(100):
        with pytest.raises(trio_dag.CallbackError, match="by_name") as info:
            await trio_dag.run(dag, policy=by_name, strategy=strategy)
        assert isinstance(info.value.__cause__, TypeError)
        with pytest.raises(trio_dag.CallbackError, match="by_name"):
            async with trio_dag.open_run(dag, policy=by_name, strategy=strategy):
                raise AssertionError("the block must not run")  # pragma: no cover
    assert probe.started == []


class Vector:
    """A key whose == answers with something that has no truth value (like numpy)."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __lt__(self, other: Vector) -> bool:
        return self.x < other.x

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of a Vector comparison is ambiguous")

    __hash__ = None  # type: ignore[assignment]


async def test_keys_whose_equality_raises_are_a_callback_error(
    dag_core: Any, autojump_clock: MockClock
) -> None:
    dag = DAG()
    dag.add(value, 1)
    dag.add(value, 2)
    with trio.fail_after(100), pytest.raises(trio_dag.CallbackError) as info:
        await trio_dag.run(dag, policy=lambda h: Vector(h.index))
    assert isinstance(info.value.__cause__, ValueError)


async def agen(n: int) -> AsyncIterator[int]:
    for k in range(n):
        yield k


def gen(n: int) -> Iterator[int]:
    yield from range(n)


class Stream:
    def numbers(self, n: int) -> Iterator[int]:
        yield from range(n)

    async def anumbers(self, n: int) -> AsyncIterator[int]:
        yield n

    def __call__(self, n: int) -> Iterator[int]:
        yield n


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (agen, "agen is an async generator function"),
        (functools.partial(agen, 2), "agen is an async generator function"),
        (Stream().anumbers, "anumbers is an async generator function"),
        (gen, "gen is a generator function"),
        (functools.partial(gen), "gen is a generator function"),
        (Stream().numbers, "numbers is a generator function"),
        (Stream(), "Stream is a generator function"),
    ],
)
def test_generator_functions_are_refused_as_tasks(fn: Any, what: str) -> None:
    dag = DAG()
    dag.add(value, 1)
    before = recorded(dag)
    with pytest.raises(TypeError, match=f"task '.*-1': {what}; calling it only makes"):
        dag.add(fn, 3)
    with pytest.raises(TypeError, match=what):
        dag.map(fn, [1, 2])
    assert recorded(dag) == before


def test_a_function_returning_a_generator_is_a_task(dag_core: Any) -> None:
    def numbers(n: int) -> Iterator[int]:
        return gen(n)

    dag = DAG()
    t = dag.add(numbers, 3, run_in="inline")
    assert list(run_mock(dag)[t]) == [0, 1, 2]


def test_a_function_checked_once_is_still_checked_for_each_task() -> None:
    dag = DAG()
    dag.add(value, 1)
    with pytest.raises(TypeError, match="fn must be callable"):
        dag.add(None, 1)  # type: ignore[call-overload]
    dag.add(embed, "a")
    with pytest.raises(TypeError, match="exactly one positional argument"):
        dag.add(embed, "a", "b")  # the same batched function as before, other arguments
    assert len(dag) == 2


# -- options checked once for a loop of adds alike (_options.options_of) ------


def test_adds_with_the_same_options_share_one_checked_taskoptions(dag_core: Any) -> None:
    dag = trio_dag.DAG()
    hs = [dag.add(_sync, i, run_in="thread", retries=3, tags=("io",)) for i in range(3)]
    assert len({id(dag._opts[h.index]) for h in hs}) == 1
    assert dag._opts[hs[0].index].retries == 3


def test_a_changed_dict_or_list_of_options_is_checked_again(dag_core: Any) -> None:
    dag = trio_dag.DAG()
    uses: dict[str, Any] = {"gpu": 1}
    tags = ["a"]
    first = dag.add(_sync, 0, uses=uses, tags=tags)
    uses["gpu"] = 2
    tags.append("b")
    second = dag.add(_sync, 1, uses=uses, tags=tags)
    # Equal amounts of another type are other options: a Fraction stays one.
    third = dag.add(_sync, 2, uses={"gpu": Fraction(2)}, tags=tags)
    assert dag._opts[first.index].uses == (("gpu", 1.0),)
    assert dag._opts[first.index].tags == ("a",)
    assert dag._opts[second.index].uses == (("gpu", 2.0),)
    assert dag._opts[second.index].tags == ("a", "b")
    assert type(dag._opts[third.index].uses[0][1]) is Fraction


def test_options_equal_to_ones_checked_before_but_refused_are_still_refused(
    dag_core: Any,
) -> None:
    dag = trio_dag.DAG()
    dag.add(_sync, 0, priority=1)
    with pytest.raises(TypeError, match="priority must be an int"):
        dag.add(_sync, 1, priority=True)

    async def body() -> None:
        pass

    dag.add(_sync, 2, run_in="inline")
    with pytest.raises(ValueError, match="calls a sync function"):
        dag.add(body, run_in="inline")
    assert len(dag) == 2


def _sync(x: int) -> int:
    return x

"""Tasks added while a run goes on (``Run.add``), and joins.

Every test runs the engine on both cores (``dag_core``) on a MockClock,
each run bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import outcome
import pytest
import trio
from trio.testing import MockClock

import trio_dag
from trio_dag import TaskState
from trio_dag.events import TaskAdded, TaskFinished

pytestmark = pytest.mark.usefixtures("dag_core")


def _run(dag: trio_dag.DAG, *, real_clock: bool = False, **options: Any) -> trio_dag.RunReport:
    async def main() -> trio_dag.RunReport:
        with trio.fail_after(60):
            return await trio_dag.run(dag, **options)

    # A worker thread needs the real clock: an autojumping one jumps while it runs.
    return trio.run(main, clock=None if real_clock else MockClock(autojump_threshold=0))


async def square(x: int) -> int:
    return x * x


def square_sync(x: int) -> int:
    return x * x


async def total(xs: Any) -> int:
    return sum(xs)


async def boom(x: int = 0) -> int:
    raise KeyError(x)


async def fan(n: int) -> list[trio_dag.Handle[int]]:
    run = trio_dag.current_run()
    return [run.add(square, i) for i in range(n)]


def fan_in_a_thread(n: int) -> list[trio_dag.Handle[int]]:
    run = trio_dag.current_run()
    return [run.add(square, i) for i in range(n)]


@pytest.mark.parametrize("limit", [None, 1, 3])
@pytest.mark.parametrize("splitter", [fan, fan_in_a_thread])
def test_a_task_adds_tasks_and_joins_them(limit: int | None, splitter: Any) -> None:
    dag = trio_dag.DAG()
    split = dag.add(splitter, 5)
    summed = dag.add(total, split)
    threads = splitter is fan_in_a_thread
    report = _run(dag, limit=limit, real_clock=threads)
    assert report[split] == [0, 1, 4, 9, 16]
    assert report[summed] == 30
    assert report.stats.tasks == 7
    assert len(report.succeeded) == 7 and report.ok
    # The DAG is the same: a rerun runs the original graph (and adds again).
    assert len(dag) == 2
    assert _run(dag, real_clock=threads).stats.tasks == 7


def test_added_tasks_are_in_the_report_under_their_handles() -> None:
    dag = trio_dag.DAG()
    made: list[trio_dag.Handle[Any]] = []

    async def adder() -> None:
        run = trio_dag.current_run()
        a = run.add(square, 3, name="nine")
        made.extend([a, run.add(square, a)])

    first = dag.add(adder)
    report = _run(dag)
    a, b = made
    assert (report[a], report[b], report["nine"]) == (9, 81, 9)
    assert a.name == "nine" and a.dag is not dag and first in a.dag
    assert report.state(b) == TaskState.SUCCEEDED
    assert report.timing(b).attempts == 1
    assert report.critical_path()[-1] == b
    assert "nine" in report.summary() or report.stats.tasks == 3


def test_added_after_ended_dependencies() -> None:
    # Done: the value at once; failed: SKIPPED (or, all_done, its Outcome).
    dag = trio_dag.DAG()
    ok = dag.add(square, 4, name="ok")
    bad = dag.add(boom, name="bad")
    seen: dict[str, Any] = {}

    async def late() -> None:
        run = trio_dag.current_run()
        seen["after ok"] = run.add(square, ok)
        seen["after bad"] = run.add(square, bad)
        seen["teardown"] = run.add(
            lambda o: type(o).__name__, bad, trigger="all_done", run_in="inline"
        )

    dag.add(late, after=[ok, bad], trigger="all_done")
    report = _run(dag, check=False)
    assert report[seen["after ok"]] == 256
    assert report.state(seen["after bad"]) == TaskState.SKIPPED
    assert report[seen["teardown"]] == "Error"


def test_run_add_checks_as_dag_add_and_records_nothing_on_error() -> None:
    dag = trio_dag.DAG()
    dag.add(square, 1, name="taken")
    errors: list[BaseException] = []

    async def adder() -> None:
        run = trio_dag.current_run()
        for call in (
            lambda: run.add(square, 1, retries=-1),
            lambda: run.add(square, 1, name="taken"),
            lambda: run.add(42),
            lambda: run.add(square, 1, after="nobody"),
            lambda: run.add(square, 1, uses={"gpu": 1}),
            lambda: run.add(square, trio_dag.DAG().add(square, 1)),
        ):
            try:
                call()
            except Exception as exc:
                errors.append(exc)

    dag.add(adder)
    report = _run(dag)
    assert report.stats.tasks == 2  # nothing was recorded
    kinds = [type(e) for e in errors]
    assert kinds == [
        ValueError,
        trio_dag.DuplicateTaskError,
        TypeError,
        trio_dag.UnknownDependencyError,
        trio_dag.ResourceError,
        trio_dag.ForeignHandleError,
    ]
    # The same message as dag.add's, for the same task index.
    twin = trio_dag.DAG()
    twin.add(square, 1, name="taken")
    twin.add(square, 1)
    with pytest.raises(ValueError) as caught:
        twin.add(square, 1, retries=-1)
    assert str(caught.value).replace("-2", "-N") == str(errors[0]).replace("-2", "-N")


def test_the_common_add_after_a_first_one_checks_and_grows_as_the_general_one() -> None:
    # Once a run has added a task, a body's add with name= and after= only
    # takes the compiled core's shortcut (_core.Grower): the same checks,
    # errors, skips and records as the first (general) add.
    dag = trio_dag.DAG()
    dag.add(square, 1, name="taken")
    bad = dag.add(boom, name="bad")
    errors: list[BaseException] = []
    made: dict[str, Any] = {}

    async def adder() -> None:
        run = trio_dag.current_run()
        made["first"] = run.add(square, 2)
        for call in (
            lambda: run.add(square, 1, name="taken"),
            lambda: run.add(square, 1, after="nobody"),
            lambda: run.add(square, 1, after=["taken", "nobody"]),
            lambda: run.add(square, trio_dag.DAG().add(square, 1)),
        ):
            try:
                call()
            except Exception as exc:
                errors.append(exc)
        made["named"] = run.add(square, 3, name="named")
        made["after"] = run.add(square, made["named"], after=["taken", made["first"]])
        made["twice"] = run.add(total, [made["first"], made["first"]], after=made["first"])
        made["skipped"] = run.add(square, bad)
        made["by name"] = run.add(square, 4, after="named")

    dag.add(adder, after=bad, trigger="all_done")
    report = _run(dag, check=False)
    assert [type(e) for e in errors] == [
        trio_dag.DuplicateTaskError,
        trio_dag.UnknownDependencyError,
        trio_dag.UnknownDependencyError,
        trio_dag.ForeignHandleError,
    ]
    assert report.stats.tasks == 3 + len(made)  # nothing recorded for the errors
    assert report[made["after"]] == 81
    assert report[made["twice"]] == 8
    assert report.state(made["skipped"]) == TaskState.SKIPPED
    assert report[made["by name"]] == 16
    assert made["named"].name == "named"
    assert [h.index for h in made.values()] == list(range(3, 3 + len(made)))


def _outcome_of(call: Any) -> Any:
    """What *call* gives: a handle's index and name, or its error's type and message."""
    try:
        handle = call()
    except Exception as exc:
        return type(exc), str(exc)
    return handle.index, handle.name


def test_every_call_of_the_common_add_is_the_general_one() -> None:
    # Once the run has grown, Run.add (compiled: a vectorcall callable whose
    # common call is the Grower's) takes each call shape to the same task,
    # name and error as dag.add on the same tasks (an after= name no task has
    # is the one difference, tested above). Other keywords, another spelling
    # of name=/after=, an unbound call or bad input go the general way.
    dag = trio_dag.DAG()
    dag.add(square, 1, name="taken")
    mirror = trio_dag.DAG()
    mirror.add(square, 1, name="taken")
    mirror.add(square, 0, name="adder")
    outcomes: list[Any] = []

    def calls(add: Any, first: Any) -> list[Any]:
        name = "".join(["na", "me"])  # a keyword not interned as the call site's
        return [
            lambda: add(square, 2),
            lambda: add(square, first),
            lambda: add(square, 3, name="n1"),
            lambda: add(square, 3, name="n1"),
            lambda: add(square, 4, after=first),
            lambda: add(square, 4, after=(first, "taken")),
            lambda: add(square, 4, after=["n1"], name="n2"),
            lambda: add(square, 5, after=None),
            lambda: add(square, 5, kwargs=None),
            lambda: add(square, 5, **{name: "n3"}),
            lambda: add(total, [first, first]),
            lambda: add(square, 6, retries=1),
            lambda: add(square, 6, name=""),
            lambda: add(square, 6, name="square-99"),
            lambda: add(square, x=6),
            lambda: add(42),
            lambda: add(square, trio_dag.DAG().add(square, 1)),
        ]

    async def adder() -> None:
        run = trio_dag.current_run()
        first = run.add(square, 7)  # the first add: the run grows, the Grower is made
        outcomes.append([_outcome_of(c) for c in calls(run.add, first)])
        unbound = type(run).add
        outcomes.append(_outcome_of(lambda: unbound(run, square, 8)))
        # No fn: Python's own refusal, of Run.add's signature.
        outcomes.append([_outcome_of(lambda: run.add(fn=square)), _outcome_of(run.add)])

    dag.add(adder, name="adder")
    report = _run(dag)
    first = mirror.add(square, 7)
    expected = [_outcome_of(c) for c in calls(mirror.add, first)]
    assert outcomes[0] == expected
    assert outcomes[1] == _outcome_of(lambda: mirror.add(square, 8))
    missing = (TypeError, "Run.add() missing 1 required positional argument: 'fn'")
    assert outcomes[2] == [missing, missing]
    assert report.stats.tasks == len(mirror)
    assert report.ok


def test_the_common_add_while_fail_fast_stops_cancels_the_new_tasks() -> None:
    # The run has grown before the failure: the teardown's adds take the
    # Grower, which leaves them to the general path (the core marks the run
    # stopping), and they end CANCELLED as there.
    dag = trio_dag.DAG()
    made: list[Any] = []

    async def grows() -> None:
        trio_dag.current_run().add(square, 1)

    async def fails_soon() -> None:
        await trio.sleep(1)
        raise ValueError("stop")

    async def teardown(o: Any) -> None:
        run = trio_dag.current_run()
        made.extend(run.add(square, i) for i in range(3))
        made.append(run.add(square, made[0], after=made[1]))

    dag.add(grows)
    bad = dag.add(fails_soon)
    dag.add(teardown, bad, trigger="all_done")
    report = _run(dag, on_failure="fail_fast", check=False)
    assert report.state(bad) == TaskState.FAILED
    assert [report.state(h) for h in made] == [TaskState.CANCELLED] * 4


def test_added_tasks_of_an_unbounded_run_run_at_once() -> None:
    # Each common add raises the engine's worker cap of an unbounded run:
    # the added tasks all sleep together.
    dag = trio_dag.DAG()

    async def nap(i: int) -> int:
        await trio.sleep(1)
        return i

    async def adder() -> list[trio_dag.Handle[int]]:
        run = trio_dag.current_run()
        return [run.add(nap, i) for i in range(20)]

    joiner = dag.add(adder)

    async def main() -> tuple[trio_dag.RunReport, float]:
        with trio.fail_after(60):
            report = await trio_dag.run(dag)
            return report, trio.current_time()

    report, took = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert report[joiner] == list(range(20))
    assert took == 1


def test_adding_after_the_run_ended_and_dag_add_while_running() -> None:
    dag = trio_dag.DAG()
    dag.add(square, 2)

    async def main() -> None:
        with trio.fail_after(60):
            async with trio_dag.open_run(dag) as run:
                with pytest.raises(RuntimeError, match="being run"):
                    dag.add(square, 3)
            with pytest.raises(RuntimeError, match="the run has ended"):
                run.add(square, 3)

    trio.run(main, clock=MockClock(autojump_threshold=0))


def test_add_from_the_open_run_block_and_the_added_event() -> None:
    dag = trio_dag.DAG()

    async def slow() -> int:
        await trio.sleep(10)
        return 1

    first = dag.add(slow)
    events: list[Any] = []

    async def main() -> trio_dag.RunReport:
        with trio.fail_after(60):
            async with trio_dag.open_run(dag, on_event=events.append) as run:
                await trio.sleep(1)
                added = run.add(square, first)
                inner = run.add(fan, 2)
            return run.report, added, inner  # type: ignore[return-value]

    report, added, inner = trio.run(main, clock=MockClock(autojump_threshold=0))  # type: ignore[misc]
    assert report[added] == 1
    assert report[inner] == [0, 1]
    adds = [e for e in events if isinstance(e, TaskAdded)]
    assert adds[0] == TaskAdded(added, None, adds[0].time)
    assert [e.parent for e in adds[2:]] == [inner, inner]
    # Each task's TaskAdded comes before its other events.
    for e in adds:
        first_seen = next(k for k, ev in enumerate(events) if getattr(ev, "task", None) == e.task)
        assert events[first_seen] is e
    assert sum(isinstance(e, TaskFinished) for e in events) == report.stats.tasks == 5


def test_join_failure_is_the_cause() -> None:
    dag = trio_dag.DAG()

    async def fails_later() -> trio_dag.Handle[int]:
        return trio_dag.current_run().add(boom, 7)

    joiner = dag.add(fails_later)
    after = dag.add(square, joiner)
    report = _run(dag, check=False)
    assert report.state(joiner) == TaskState.FAILED
    assert report.state(after) == TaskState.SKIPPED
    error = report.errors[joiner.name]
    assert isinstance(error, trio_dag.TaskFailedError)
    assert isinstance(error.__cause__, KeyError)


def test_a_join_that_would_never_end_fails_at_once() -> None:
    dag = trio_dag.DAG()
    box: dict[str, Any] = {}

    async def joins_itself() -> Any:
        await trio.sleep(0)
        return box["self"]

    async def joins_its_dependent() -> Any:
        return box["dependent"]

    dag.add(fan, 1)  # the run grows first (joins are seen once it has)
    box["self"] = dag.add(joins_itself)
    parent = dag.add(joins_its_dependent)
    box["dependent"] = dag.add(square, parent)
    report = _run(dag, check=False, limit=1)
    assert "cannot join itself" in str(report.errors[box["self"].name])
    assert "would never end" in str(report.errors[parent.name])
    assert report.state(box["dependent"]) == TaskState.SKIPPED


def test_join_values_in_containers_and_already_ended() -> None:
    dag = trio_dag.DAG()
    early = dag.add(square, 5)

    async def mixed() -> Any:
        run = trio_dag.current_run()
        return {"early": early, "pair": (run.add(square, 2), 3), "list": [run.add(square, 1)]}

    joiner = dag.add(mixed, after=early)
    report = _run(dag)
    assert report[joiner] == {"early": 25, "pair": (4, 3), "list": [1]}


def test_limit_one_holds_while_a_parent_joins_its_children() -> None:
    dag = trio_dag.DAG()
    live = [0, 0]

    async def child(i: int) -> int:
        live[0] += 1
        live[1] = max(live)
        await trio.sleep(1)
        live[0] -= 1
        return i

    async def parent(n: int) -> Any:
        live[0] += 1
        run = trio_dag.current_run()
        handles = [run.add(child, i) for i in range(n)]
        await trio.sleep(1)
        live[0] -= 1
        return handles

    p = dag.add(parent, 3)
    report = _run(dag, limit=1)
    assert report[p] == [0, 1, 2]
    assert live[1] == 1


def test_resources_and_priority_for_added_tasks() -> None:
    dag = trio_dag.DAG()
    order: list[int] = []

    async def note(i: int) -> None:
        order.append(i)
        await trio.sleep(1)

    async def adder() -> None:
        run = trio_dag.current_run()
        for i in range(4):
            run.add(note, i, priority=i, uses={"gpu": 0.5})

    dag.add(adder, priority=9)
    # No task of the DAG uses the resource: only those the run adds.
    with pytest.warns(trio_dag.NoEffectWarning, match="no task of the run uses it"):
        report = _run(dag, limit=1, policy="priority", resources={"gpu": 1})
    assert order == [3, 2, 1, 0]
    assert report.ok


def test_fractional_uses_added_later_are_counted_exactly() -> None:
    dag = trio_dag.DAG()
    live = [0, 0]

    async def hold() -> None:
        live[0] += 1
        live[1] = max(live)
        await trio.sleep(1)
        live[0] -= 1

    async def adder() -> None:
        run = trio_dag.current_run()
        for _ in range(7):
            run.add(hold, uses={"r": 0.1})

    dag.add(hold, uses={"r": 0.25})
    dag.add(adder)
    report = _run(dag, resources={"r": 0.5})
    # 0.25 and 0.1 * 2 fit together, then the five others exactly: 0.1 * 5 == 0.5.
    assert report.ok and live[1] == 5


def test_adding_while_fail_fast_stops_cancels_the_new_task() -> None:
    dag = trio_dag.DAG()
    made: list[Any] = []

    async def adds_late() -> None:
        await trio.sleep(5)
        made.append(trio_dag.current_run().add(square, 2))

    async def fails_soon() -> None:
        await trio.sleep(1)
        raise ValueError("stop")

    async def teardown(o: Any) -> None:
        made.append(trio_dag.current_run().add(square, 3))

    slow = dag.add(adds_late, trigger="all_done")
    bad = dag.add(fails_soon)
    dag.add(teardown, bad, trigger="all_done")
    report = _run(dag, on_failure="fail_fast", check=False)
    assert report.state(bad) == TaskState.FAILED
    assert report.state(slow) in (TaskState.CANCELLED, TaskState.SUCCEEDED)
    assert all(report.state(h) == TaskState.CANCELLED for h in made)


def test_retries_timeouts_and_cache_of_added_tasks() -> None:
    dag = trio_dag.DAG()
    tries = [0]

    async def flaky() -> int:
        tries[0] += 1
        if tries[0] < 3:
            raise OSError("again")
        return 1

    async def hangs() -> None:
        await trio.sleep(100)

    made: dict[str, Any] = {}

    async def adder() -> None:
        run = trio_dag.current_run()
        made["flaky"] = run.add(flaky, retries=2, retry_delay=1)
        made["hangs"] = run.add(hangs, timeout=5)
        made["cached"] = run.add(square, 6, cache=True)

    dag.add(adder)
    cache = trio_dag.MemoryCache()
    with pytest.warns(trio_dag.NoEffectWarning, match="no task of the run asks"):
        report = _run(dag, check=False, cache=cache)
    assert report[made["flaky"]] == 1 and report.timing(made["flaky"]).attempts == 3
    assert isinstance(report.errors[made["hangs"].name], trio_dag.TaskTimeoutError)
    assert report[made["cached"]] == 36
    with pytest.warns(trio_dag.NoEffectWarning, match="no task of the run asks"):
        again = _run(dag, check=False, cache=cache)
    assert again.state(made["cached"].name) == TaskState.CACHED


def test_a_rerun_of_the_dag_is_unchanged(dag_core: ModuleType) -> None:
    dag = trio_dag.DAG()
    dag.add(fan, 3)
    before = dag.to_dot()
    _run(dag)
    assert dag.to_dot() == before and len(dag) == 1


def test_outcome_of_added_tasks_in_all_done_dependents() -> None:
    dag = trio_dag.DAG()

    async def adder() -> Any:
        run = trio_dag.current_run()
        bad = run.add(boom, 1)
        return run.add(
            lambda o: isinstance(o, outcome.Error), bad, trigger="all_done", run_in="inline"
        )

    joiner = dag.add(adder)
    report = _run(dag, check=False)
    assert report[joiner] is True


@pytest.mark.parametrize("batched_in_dag", [False, True])
def test_added_tasks_of_a_batched_function_run_in_batches(batched_in_dag: bool) -> None:
    calls: list[list[int]] = []

    @trio_dag.batched(max_size=3)
    async def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [2 * i for i in items]

    async def adder(n: int) -> list[trio_dag.Handle[int]]:
        run = trio_dag.current_run()
        return [run.add(double, i) for i in range(n)]

    dag = trio_dag.DAG()
    if batched_in_dag:
        dag.add(double, 100)
    joiner = dag.add(adder, 5)
    report = _run(dag)
    assert report[joiner] == [0, 2, 4, 6, 8]
    expected = [0, 1, 2, 3, 4, 100] if batched_in_dag else [0, 1, 2, 3, 4]
    assert sorted(i for call in calls for i in call) == expected
    assert max(len(call) for call in calls) <= 3


def test_depth_first_takes_added_tasks_deeper_first() -> None:
    dag = trio_dag.DAG()
    order: list[str] = []

    async def step(name: str, *_: Any) -> str:
        order.append(name)
        await trio.sleep(1)
        return name

    async def pipeline() -> None:
        run = trio_dag.current_run()
        for item in "ab":
            first = run.add(step, f"{item}1")
            run.add(step, f"{item}2", first)

    dag.add(pipeline)
    _run(dag, limit=1, policy="depth_first")
    assert order == ["a1", "a2", "b1", "b2"]


def test_per_task_control_of_added_tasks() -> None:
    # result(), cancel_task(), counts and as_completed() see added tasks too.
    dag = trio_dag.DAG()
    seen: dict[str, Any] = {}

    async def forever() -> None:
        await trio.sleep(1000)

    async def parent() -> int:
        run = trio_dag.current_run()
        quick = run.add(square, 7)
        slow = run.add(forever)
        after_slow = run.add(square, slow)
        seen["counts before"] = run.counts
        seen["result"] = await run.result(quick)
        run.cancel_task(slow)
        seen["handles"] = (slow, after_slow)
        return 1

    dag.add(parent)
    report = _run(dag, check=False)
    slow, after_slow = seen["handles"]
    assert seen["result"] == 49
    assert report.state(slow) == TaskState.CANCELLED
    assert report.state(after_slow) == TaskState.SKIPPED
    assert report.stats.tasks == 4


def test_adding_from_the_block_once_every_task_has_ended() -> None:
    dag = trio_dag.DAG()
    dag.add(square, 2)

    async def main() -> None:
        with trio.fail_after(60):
            async with trio_dag.open_run(dag) as run:
                await trio.sleep(1)  # the run's only task ends meanwhile
                with pytest.raises(RuntimeError, match="the run has ended"):
                    run.add(square, 3)

    trio.run(main, clock=MockClock(autojump_threshold=0))


def test_a_joining_task_ends_cancelled_when_fail_fast_stops_the_run() -> None:
    dag = trio_dag.DAG()

    async def slow() -> int:
        await trio.sleep(10)
        return 1

    async def joiner() -> Any:
        return trio_dag.current_run().add(slow)

    async def fails() -> None:
        await trio.sleep(1)
        raise ValueError("stop")

    j = dag.add(joiner)
    bad = dag.add(fails)
    report = _run(dag, on_failure="fail_fast", check=False)
    assert report.state(bad) == TaskState.FAILED
    assert report.state(j) == TaskState.CANCELLED
    assert list(report.errors) == [bad.name]


def _times_two(x: int) -> int:
    return 2 * x


def test_added_tasks_on_executors_the_run_has() -> None:
    from concurrent.futures import ThreadPoolExecutor

    dag = trio_dag.DAG()
    made: dict[str, Any] = {}

    async def adder() -> Any:
        run = trio_dag.current_run()
        with pytest.raises(trio_dag.ExecutorError, match="does not provide"):
            run.add(_times_two, 1, run_in="elsewhere")
        return run.add(_times_two, 21, run_in="pool")

    with ThreadPoolExecutor(2) as pool:
        made["joiner"] = dag.add(adder)
        report = _run(dag, real_clock=True, executors={"pool": pool})
    assert report[made["joiner"]] == 42


def test_the_report_keeps_the_run_graph_when_the_fork_grows_later() -> None:
    dag = trio_dag.DAG()
    dag.add(fan, 2)
    report = _run(dag)
    added = report.succeeded[-1]
    added.dag.add(square, 5)  # the fork is a DAG of its own once the run has ended
    assert report.stats.tasks == 3
    assert len(report.critical_path()) >= 1
    assert "3 tasks" in report.summary()


def test_added_tasks_may_use_process_workers_no_dag_task_started() -> None:
    import multiprocessing

    dag = trio_dag.DAG()

    async def adder() -> Any:
        run = trio_dag.current_run()
        with pytest.raises(trio_dag.ExecutorError, match="cannot be"):
            run.add(lambda: 1, run_in="process")
        return [run.add(_times_two, k, run_in="process") for k in range(3)]

    joiner = dag.add(adder)
    report = _run(dag, real_clock=True)
    assert report[joiner] == [0, 2, 4]
    # The run's own worker context: none of its workers outlives it.
    assert not [p for p in multiprocessing.active_children() if "Resource" not in p.name]

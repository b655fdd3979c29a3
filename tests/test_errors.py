"""The exception hierarchy of trio_dag: bases, attributes, messages, pickling."""

from __future__ import annotations

import copy
import graphlib
import pickle
from typing import Any

import pytest

import trio_dag
from trio_dag import _errors
from trio_dag._errors import (
    CacheFileError,
    CallbackError,
    CycleError,
    DuplicateTaskError,
    ExecutorError,
    ForeignHandleError,
    GraphError,
    NoEffectWarning,
    ResourceError,
    RunFailedError,
    TaskCancelledError,
    TaskFailedError,
    TaskSkippedError,
    TaskTimeoutError,
    TrioDagError,
    UnknownDependencyError,
    WorkerDiedError,
)

BASES: dict[type[BaseException], tuple[type[BaseException], ...]] = {
    TrioDagError: (Exception,),
    GraphError: (TrioDagError, ValueError),
    CycleError: (GraphError, graphlib.CycleError, ValueError),
    UnknownDependencyError: (GraphError, ValueError),
    DuplicateTaskError: (GraphError, ValueError),
    ResourceError: (GraphError, ValueError),
    ForeignHandleError: (TrioDagError, TypeError),
    TaskFailedError: (TrioDagError,),
    TaskSkippedError: (TrioDagError,),
    TaskCancelledError: (TrioDagError,),
    TaskTimeoutError: (TrioDagError, TimeoutError),
    RunFailedError: (TrioDagError, ExceptionGroup),
    CallbackError: (TrioDagError,),
    CacheFileError: (TrioDagError,),
    ExecutorError: (TrioDagError, ValueError),
    WorkerDiedError: (TrioDagError,),
}


def examples() -> list[BaseException]:
    """One instance of every error class, built the way trio_dag builds them."""
    boom = ValueError("boom")
    failed = TaskFailedError("fetch-1", boom)
    return [
        CycleError(["a", "b", "a"]),
        UnknownDependencyError("store", "open-bd", "open-db"),
        UnknownDependencyError(None, "nope"),
        DuplicateTaskError("load"),
        ResourceError("train", "gpu", 2, 1),
        ResourceError("train", "gpu", 2, None),
        ResourceError("train", "gpus", 2, None, "gpu"),
        ForeignHandleError("task 'x': <Handle 'y' (task 0)> belongs to another DAG"),
        failed,
        TaskSkippedError("store", "fetch-1"),
        TaskSkippedError("store"),
        TaskCancelledError("fetch-2"),
        TaskTimeoutError("fetch-3", 30),
        RunFailedError("1 task failed", [failed], report={"ok": False}),
        CallbackError("on_event callback", RuntimeError("oops")),
        CacheFileError("'results.sqlite3' is not a trio_dag cache; give another path"),
        ExecutorError("cluster", ["embed-0"], "task 'embed-0' runs on executor 'cluster', ..."),
        WorkerDiedError("embed-1", -9),
        WorkerDiedError("embed-2", 3),
        WorkerDiedError("embed-3"),
    ]


def test_every_error_class_is_exported_from_trio_dag() -> None:
    for name in _errors.__all__:
        assert getattr(trio_dag, name) is getattr(_errors, name)


@pytest.mark.parametrize("cls", list(BASES), ids=lambda cls: cls.__name__)
def test_error_bases(cls: type[BaseException]) -> None:
    for base in BASES[cls]:
        assert issubclass(cls, base)
    assert issubclass(cls, TrioDagError)


def test_every_error_class_has_a_test() -> None:
    # NoEffectWarning is a warning category, not an error: see test_warnings.py.
    classes = {getattr(_errors, name) for name in _errors.__all__}
    assert set(BASES) == classes - {NoEffectWarning}


@pytest.mark.parametrize("error", examples(), ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_attributes(error: BaseException) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    public = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    assert {k: repr(v) for k, v in vars(again).items() if k in public} == {
        k: repr(v) for k, v in public.items()
    }
    assert copy.copy(error) is not error


@pytest.mark.parametrize("error", examples(), ids=lambda e: type(e).__name__)
def test_error_messages_are_sentences_about_a_task(error: BaseException) -> None:
    message = str(error)
    assert message
    assert not message.startswith("(")  # not a bare args tuple


def test_cycle_error_carries_the_cycle() -> None:
    err = CycleError(["a", "b", "c", "a"])
    assert err.cycle == ["a", "b", "c", "a"]
    assert err.args[1] == ["a", "b", "c", "a"]  # where graphlib.CycleError keeps it
    assert "'a' -> 'b' -> 'c' -> 'a'" in str(err)
    assert isinstance(err, graphlib.CycleError)
    with pytest.raises(graphlib.CycleError):
        raise err


def test_long_cycle_message_is_abbreviated_but_cycle_is_whole() -> None:
    names = [f"t{k}" for k in range(100_000)]
    err = CycleError([*names, "t0"])
    assert len(err.cycle) == 100_001
    message = str(err)
    assert len(message) < 500
    assert "'t0' -> 't1'" in message
    assert "'t99999' -> 't0'" in message
    assert "99981 more tasks" in message


def test_unknown_dependency_error_names_the_task_and_a_close_match() -> None:
    err = UnknownDependencyError("store", "open-bd", "open-db")
    assert (err.task, err.missing, err.suggestion) == ("store", "open-bd", "open-db")
    assert str(err) == (
        "task 'store' must run after 'open-bd', but no task has that name; did you mean 'open-db'?"
    )
    bare = UnknownDependencyError(None, "nope")
    assert bare.task is None and bare.suggestion is None
    assert "targets= names 'nope'" in str(bare)
    assert "add a task named 'nope'" in str(bare)


def test_duplicate_task_error_has_the_name() -> None:
    err = DuplicateTaskError("load")
    assert err.name == "load"
    assert "'load' already exists" in str(err)
    assert str(DuplicateTaskError("load", "custom message")) == "custom message"


def test_resource_error_says_what_to_change() -> None:
    missing = ResourceError("train", "gpu", 2, None)
    assert (missing.task, missing.resource, missing.amount, missing.capacity) == (
        "train",
        "gpu",
        2,
        None,
    )
    assert "does not provide" in str(missing) and "resources=" in str(missing)
    too_big = ResourceError("train", "gpu", 2, 1)
    assert "more than its whole capacity 1" in str(too_big)


def test_task_failed_error_keeps_the_task_exception_as_cause() -> None:
    boom = ValueError("boom")
    err = TaskFailedError("fetch-1", boom)
    assert err.task == "fetch-1"
    assert err.__cause__ is boom
    assert str(err) == "task 'fetch-1' failed: ValueError: boom"
    assert str(TaskFailedError("x", KeyError())) == "task 'x' failed: KeyError()"
    assert TaskFailedError("x").__cause__ is None


class Unprintable(Exception):
    """An exception whose str() (and, with *repr_too*, repr()) raises."""

    def __init__(self, repr_too: bool = False) -> None:
        super().__init__()
        self.repr_too = repr_too

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        if self.repr_too:
            raise RuntimeError("no repr either")
        return "Unprintable()"


class Silent(Exception):
    """An exception with an empty message whose repr() raises."""

    def __str__(self) -> str:
        return ""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("make", [TaskFailedError, CallbackError], ids=lambda c: c.__name__)
def test_errors_about_an_exception_that_cannot_be_printed_still_print(
    make: type[TaskFailedError] | type[CallbackError],
) -> None:
    # str() or repr() of a user's exception may raise; the error about it
    # says so instead of raising in turn.
    for cause, shown in [
        (Unprintable(), "<Unprintable object (str() raised RuntimeError)>"),
        (Unprintable(repr_too=True), "<Unprintable object (str() raised RuntimeError)>"),
        (Silent(), "<Silent object (repr() raised RuntimeError)>"),
    ]:
        err = make("x", cause)
        assert str(err).endswith(f": {shown}")
        assert err.__cause__ is cause
        assert pickle.loads(pickle.dumps(err, protocol=0)) is not None


def test_run_failed_error_of_an_exception_that_cannot_be_printed() -> None:
    err = RunFailedError("1 task failed", [TaskFailedError("x", Unprintable(repr_too=True))])
    assert str(err) == "1 task failed (1 sub-exception)"
    assert "str() raised RuntimeError" in str(err.exceptions[0])


def test_skipped_cancelled_and_timeout_errors() -> None:
    skipped = TaskSkippedError("store", "fetch-1")
    assert (skipped.task, skipped.dependency) == ("store", "fetch-1")
    assert "'fetch-1' did not succeed" in str(skipped)
    assert TaskCancelledError("x").task == "x"
    timeout = TaskTimeoutError("fetch", 2.5)
    assert (timeout.task, timeout.timeout) == ("fetch", 2.5)
    assert str(timeout) == "task 'fetch' timed out after 2.5 s"
    assert isinstance(timeout, TimeoutError)


def test_callback_error_names_the_callback() -> None:
    cause = RuntimeError("oops")
    err = CallbackError("policy key function by_size", cause)
    assert err.callback == "policy key function by_size"
    assert err.__cause__ is cause
    assert str(err).startswith("policy key function by_size raised, so the run was stopped")


def tasks(group: RunFailedError) -> list[str]:
    return [e.task for e in group.exceptions if isinstance(e, TaskFailedError)]


def group() -> RunFailedError:
    a = TaskFailedError("a", ValueError("x"))
    b = TaskFailedError("b", KeyError("y"))
    return RunFailedError("2 tasks failed", [a, b], report="the report")


def test_run_failed_error_is_an_exception_group_with_the_report() -> None:
    err = group()
    assert isinstance(err, ExceptionGroup)
    assert err.report == "the report"
    assert tasks(err) == ["a", "b"]
    assert err.message == "2 tasks failed"
    assert RunFailedError("m", [TaskFailedError("a")]).report is None


def test_run_failed_error_split_keeps_class_and_report() -> None:
    match, rest = group().split(lambda e: isinstance(e, TaskFailedError) and e.task == "a")
    assert isinstance(match, RunFailedError) and isinstance(rest, RunFailedError)
    assert match.report == rest.report == "the report"
    assert tasks(match) == ["a"]
    assert tasks(rest) == ["b"]


def test_run_failed_error_works_with_except_star() -> None:
    caught: list[Any] = []
    try:
        raise group()
    except* TaskFailedError as eg:
        caught.append(eg)
    assert isinstance(caught[0], RunFailedError)
    assert caught[0].report == "the report"


def test_worker_died_error_says_how_the_worker_ended() -> None:
    assert "killed by SIGKILL" in str(WorkerDiedError("embed-1", -9))
    assert "exit code 3" in str(WorkerDiedError("embed-1", 3))
    assert "'embed-1'" in str(WorkerDiedError("embed-1"))
    assert WorkerDiedError("embed-1", -9).exitcode == -9

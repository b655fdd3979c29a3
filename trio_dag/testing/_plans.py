"""Drawn DAGs before they are built: plans, the bodies they run, and ``build_dag``.

A :class:`DagPlan` prints as the program that builds it
(``dag_plan(t0=task(seconds=1), t1=task(t0, body='nursery'))``), and
:meth:`DagPlan.build` makes a fresh DAG of it each time it is called, with
fresh bodies, so that one plan can be run twice and the runs compared.

The bodies are the ones users write: a coroutine that sleeps, returns or
raises (an exception, or an ExceptionGroup of one); one that opens a
nursery of two children; one that runs a short real process with captured
output; one that catches ``Cancelled``, cleans up and raises it again; one
whose ``finally`` awaits a clean-up behind a shield; one that hands work to
``trio.to_thread.run_sync``; one that times out by its own
``trio.fail_after``; sync functions run inline or in a thread; and
``@batched`` functions, async or sync (inline or in a thread). A body that
sees the engine break a promise it can see (a batch of more than
``max_size`` items, a ``Handle`` passed in place of an output, a
``Cancelled`` whose ``__context__`` is another task's error, a
``current_task()`` that is not its own in a worker thread)
raises ``BrokenPromise``, a BaseException, which therefore propagates from
the run and fails the test that ran it.
"""

from __future__ import annotations

import collections
import functools
import sys
import time
from collections.abc import Mapping
from typing import Any, Final, Literal, final

import attrs
import trio

from .. import DAG, Batched, Handle, batched, current_task

__all__ = ["BrokenPromise", "DagPlan", "Interrupt", "build_dag"]

RunIn = Literal["async", "inline", "thread"]
Trigger = Literal["all_succeeded", "all_done"]
# What an async body does besides sleeping, returning and raising.
Body = Literal["sleep", "nursery", "catch", "process", "finally", "to_thread", "fail_after"]
BODIES: Final = ("sleep", "nursery", "catch", "process", "finally", "to_thread", "fail_after")
# How a drawn failure looks: a ValueError, an exception that cannot be
# printed, or an ExceptionGroup holding a ValueError.
ErrorKind = Literal["value", "unprintable", "group"]
# How a dependency is given to DAG.add: a positional handle, a handle inside a
# list, after= by handle, after= by name, a handle as a dict value, in kwargs=,
# inside a namedtuple. Shrinks towards the first.
HOWS: Final = ("arg", "list", "after", "name", "dict", "kwarg", "namedtuple")
# The ways that pass the dependency's output to the body, as one positional argument.
POSITIONAL: Final = ("arg", "list", "dict", "namedtuple")
_AFTER: Final = ("after", "name")


@final
class Interrupt(BaseException):
    """What a drawn task with ``interrupt=True`` raises: a BaseException that is not an
    Exception, like KeyboardInterrupt.

    A run treats it as it treats KeyboardInterrupt raised by a task: it is
    never retried, every other task is cancelled, and it propagates from the
    run as it is, not inside an exception group. Catch it around the run in
    a test that draws DAGs with ``interrupts=True``.
    """


@final
class BrokenPromise(BaseException):
    """Raised by a drawn body that saw the run break one of trio_dag's promises.

    The bodies of :func:`dags` check what they can see: a batch of more
    than ``max_size`` items, a :class:`~trio_dag.Handle` passed in place of
    an output, a ``Cancelled`` whose ``__context__`` is another task's
    error. A BaseException, so that no retry or ``on_failure`` hides it: it
    propagates from the run and fails the test, with the promise in its
    message.
    """


class Unprintable(Exception):
    """A drawn failure whose ``str()`` and ``repr()`` raise, as some users' errors do."""

    def __str__(self) -> str:
        raise RuntimeError("Unprintable.__str__ raised")

    def __repr__(self) -> str:
        raise RuntimeError("Unprintable.__repr__ raised")


# A handle inside a namedtuple is a dependency like one inside a plain tuple.
Pair = collections.namedtuple("Pair", ["dep", "note"])


def _no_handles(value: object, where: str) -> None:
    """Raise BrokenPromise if a Handle reaches a body, at any depth of a container."""
    if isinstance(value, Handle):
        raise BrokenPromise(f"{where} received the Handle {value!r} in place of its output")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _no_handles(key, where)
            _no_handles(item, where)
    elif isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        for item in value:
            _no_handles(item, where)


def _failure(fails: int, error: ErrorKind) -> Exception | None:
    """The exception this attempt raises: the first *fails* attempts fail."""
    task = current_task()
    if task.attempt > fails:
        return None
    message = f"drawn failure of task {task.name!r}, attempt {task.attempt}"
    if error == "unprintable":
        return Unprintable(message)
    if error == "group":
        return ExceptionGroup(message, [ValueError(message)])
    return ValueError(message)


def _in_thread(name: str) -> str:
    """What a ``to_thread`` body runs: ``current_task()`` holds in the thread too
    (``trio.to_thread.run_sync`` copies the context)."""
    seen = current_task().name
    if seen != name:
        raise BrokenPromise(f"task {name!r} saw current_task() {seen!r} in its worker thread")
    return seen


async def _child(seconds: float, error: BaseException | None) -> None:
    await trio.sleep(seconds)
    if error is not None:
        raise error


@final
@attrs.frozen
class AsyncBody:
    """An async body: waits *seconds* on the Trio clock in the way *body* says, then
    fails its first *fails* attempts, raises Interrupt (*interrupt*) or returns its name.

    A body of 0 seconds that only sleeps returns without suspending at all.
    ``"finally"`` awaits half its time more behind a shield however it ends;
    ``"to_thread"`` first runs a function in a worker thread; ``"fail_after"``
    sleeps inside its own ``trio.fail_after``, which a failing attempt sets to
    half its time, so that it raises ``TooSlowError`` in place of its error.
    """

    body: Body
    seconds: float
    fails: int
    error: ErrorKind
    interrupt: bool

    async def __call__(self, *deps: object, **extra: object) -> str:
        name = current_task().name
        _no_handles((deps, extra), f"task {name!r}")
        error = _failure(self.fails, self.error)
        if self.body == "nursery":
            # A failure comes from a child, so out of the nursery as an ExceptionGroup;
            # not an Unprintable one: Trio itself formats a failed child's repr.
            child_error = None if isinstance(error, Unprintable) else error
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_child, self.seconds / 2, None)
                nursery.start_soon(_child, self.seconds, child_error)
            error = error if child_error is None else None
        elif self.body == "catch":
            await self._catch(name)
        elif self.body == "process":
            return await self._process(name, error)
        elif self.body == "finally":
            try:
                await trio.sleep(self.seconds)
                return _end(name, error, self.interrupt)
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(self.seconds / 2)  # a clean-up that must finish
        elif self.body == "to_thread":
            await trio.to_thread.run_sync(_in_thread, name)
            await trio.sleep(self.seconds)
        elif self.body == "fail_after":
            with trio.fail_after(self.seconds / 2 if error is not None else self.seconds + 1):
                await trio.sleep(self.seconds)
            error = None  # a failing attempt's fail_after raised TooSlowError
        elif self.seconds:
            await trio.sleep(self.seconds)
        return _end(name, error, self.interrupt)

    async def _catch(self, name: str) -> None:
        try:
            await trio.sleep(self.seconds)
        except trio.Cancelled as exc:
            if exc.__context__ is not None:
                raise BrokenPromise(
                    f"task {name!r} was cancelled with another error as __context__: "
                    f"{type(exc.__context__).__name__}; plain Trio gives None"
                ) from None
            with trio.CancelScope(shield=True):
                await trio.lowlevel.checkpoint()  # clean-up that needs a checkpoint
            raise

    async def _process(self, name: str, error: Exception | None) -> str:
        code = (
            f"import time; time.sleep({self.seconds!r}); print({name!r}); "
            f"raise SystemExit({3 if error is not None else 0})"
        )
        # A nonzero exit raises CalledProcessError, as check=True does for users.
        done = await trio.run_process([sys.executable, "-I", "-S", "-c", code], capture_stdout=True)
        return _end(done.stdout.decode().strip(), None, self.interrupt)


def _end(name: str, error: Exception | None, interrupt: bool) -> str:
    if error is not None:
        raise error
    if interrupt:
        raise Interrupt(f"drawn interrupt of task {current_task().name!r}")
    return name


@final
@attrs.frozen
class SyncBody:
    """A sync body ("inline" or "thread"): sleeps *seconds* (wall clock) in its thread,
    then fails its first *fails* attempts, raises Interrupt or returns its name."""

    seconds: float
    fails: int
    error: ErrorKind
    interrupt: bool

    def __call__(self, *deps: object, **extra: object) -> str:
        name = current_task().name
        _no_handles((deps, extra), f"task {name!r}")
        if self.seconds:
            time.sleep(self.seconds)
        return _end(name, _failure(self.fails, self.error), self.interrupt)


@final
@attrs.frozen(repr=False)
class BatchPlan:
    """A ``@batched`` function of a drawn DAG: its options, how long a call takes, and
    which calls go wrong (the first *fails* raise, the next *short* return a list one
    item short). Tasks of it share its *uses* and *run_in*: ``"async"``, or a sync
    function run ``"inline"`` or in a ``"thread"`` (which sleeps its *seconds* of
    wall-clock time)."""

    max_size: int = 64
    max_delay: float = 0.0
    seconds: float = 0.0
    fails: int = 0
    short: int = 0
    uses: tuple[tuple[str, float], ...] = ()
    run_in: RunIn = "async"

    def __repr__(self) -> str:
        return f"batched({', '.join(_changed(self, BatchPlan))})"

    def build(self, name: str) -> Batched[Any, Any]:
        """A fresh batched function (its calls are counted from 1 again)."""
        calls = 0
        plan = self

        def begin(items: list[Any]) -> int:
            nonlocal calls
            calls += 1
            if len(items) > plan.max_size:
                raise BrokenPromise(
                    f"batched {name} (max_size={plan.max_size}) was called with {len(items)} items"
                )
            _no_handles(items, f"batched {name}")
            return calls

        def finish(items: list[Any], number: int) -> list[Any]:
            if number <= plan.fails:
                raise ValueError(f"drawn failure of call {number} of batched {name}")
            results = [(name, item) for item in items]
            return results[:-1] if number <= plan.fails + plan.short else results

        async def call(items: list[Any]) -> list[Any]:
            number = begin(items)
            if plan.seconds:
                await trio.sleep(plan.seconds)
            return finish(items, number)

        def call_sync(items: list[Any]) -> list[Any]:
            number = begin(items)
            if plan.seconds:
                time.sleep(plan.seconds)
            return finish(items, number)

        fn: Any = call if self.run_in == "async" else call_sync
        fn.__name__ = fn.__qualname__ = name
        return batched(max_size=self.max_size, max_delay=self.max_delay)(fn)


def _changed(instance: object, cls: type) -> list[str]:
    """``field=value`` for each field of *instance* that differs from its default."""
    out = []
    for field in attrs.fields(cls):
        value = getattr(instance, field.name)
        if field.name == "deps" or value == field.default:
            continue
        if field.name == "retry_on":
            text = f"({', '.join(c.__name__ for c in value)},)"
        elif field.name == "uses":
            text = repr(dict(value))
        else:
            text = repr(value)
        out.append(f"{field.name}={text}")
    return out


@final
@attrs.frozen(repr=False)
class TaskPlan:
    """One task of a drawn DAG; its repr shows what differs from the defaults.

    *batch* names the ``@batched`` function (``"b0"``) whose task it is; such a
    task has one positional argument, its item (a dependency's output, or its
    own name), and its other dependencies are given with ``after=``.
    """

    deps: tuple[tuple[int, str], ...] = ()
    body: Body = "sleep"
    seconds: float = 0
    fails: int = 0
    error: ErrorKind = "value"
    interrupt: bool = False
    partial: bool = False
    batch: str | None = None
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
        shown = {"arg": "t{}", "list": "[t{}]", "dict": "{{'dep': t{}}}", "namedtuple": "Pair(t{})"}
        args = [shown[how].format(p) for p, how in self.deps if how in shown]
        after = [f"t{p}" if how == "after" else f"'t{p}'" for p, how in self.deps if how in _AFTER]
        kwargs = [f"'d{p}': t{p}" for p, how in self.deps if how == "kwarg"]
        if after:
            args.append(f"after=[{', '.join(after)}]")
        if kwargs:
            args.append(f"kwargs={{{', '.join(kwargs)}}}")
        return f"task({', '.join(args + _changed(self, TaskPlan))})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def fn(self, batched_fns: Mapping[str, Batched[Any, Any]], name: str) -> Any:
        """The callable ``DAG.add`` gets: a fresh body, maybe behind ``functools.partial``."""
        if self.batch is not None:
            return batched_fns[self.batch]
        body: Any
        if self.run_in == "async":
            body = AsyncBody(self.body, self.seconds, self.fails, self.error, self.interrupt)
        else:
            body = SyncBody(self.seconds, self.fails, self.error, self.interrupt)
        return functools.partial(body, note=name) if self.partial else body


@final
@attrs.frozen(repr=False)
class DagPlan:
    """A drawn DAG before it is built: task *i* is named ``t{i}``, batched function *k*
    ``b{k}``. :meth:`build` makes a fresh DAG of it each time::

        @given(plan=trio_dag.testing.dag_plans(max_tasks=10))
        def test_two_runs_agree(plan):
            first = trio_dag.run_sync(plan.build(), check=False)
            second = trio_dag.run_sync(plan.build(), check=False)
            ...
    """

    tasks: tuple[TaskPlan, ...]
    batched: tuple[BatchPlan, ...] = ()

    def __len__(self) -> int:
        """The number of tasks."""
        return len(self.tasks)

    def build(self) -> DAG:
        """The DAG this plan describes, with fresh bodies."""
        return build_dag(self)

    @property
    def interrupts(self) -> bool:
        """Whether a task of the plan may raise :class:`Interrupt`."""
        return any(task.interrupt for task in self.tasks)

    def __repr__(self) -> str:
        return f"dag_plan({', '.join(f'{name}={item!r}' for name, item in self._items())})"

    def _items(self) -> list[tuple[str, object]]:
        return [(f"b{k}", fn) for k, fn in enumerate(self.batched)] + [
            (f"t{i}", task) for i, task in enumerate(self.tasks)
        ]

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Hypothesis's printer: one task per line in a falsifying example.
        if not self.tasks:
            p.text("dag_plan()")
            return
        with p.group(4, "dag_plan("):
            for name, item in self._items():
                p.break_()
                p.text(f"{name}={item!r},")
        p.break_()
        p.text(")")


def _positional(p: int, how: str, handle: Handle[Any]) -> object:
    if how == "arg":
        return handle
    if how == "list":
        return [handle]
    if how == "dict":
        return {"dep": handle}
    return Pair(handle, f"t{p}")


def build_dag(plan: DagPlan) -> DAG:
    """The DAG a plan describes (Hypothesis prints drawn DAGs as this call)."""
    dag = DAG()
    batched_fns = {f"b{k}": fn.build(f"b{k}") for k, fn in enumerate(plan.batched)}
    handles: list[Handle[Any]] = []
    for i, task in enumerate(plan.tasks):
        name = f"t{i}"
        args: list[object] = []
        kwargs: dict[str, object] = {}
        after: list[Handle[Any] | str] = []
        for p, how in task.deps:
            if how in POSITIONAL:
                args.append(_positional(p, how, handles[p]))
            elif how == "kwarg":
                kwargs[f"d{p}"] = handles[p]
            else:
                after.append(handles[p] if how == "after" else f"t{p}")
        uses = task.uses
        run_in = task.run_in
        if task.batch is not None:
            args = args or [name]  # the item: a dependency's output or a value
            uses = plan.batched[int(task.batch[1:])].uses
            run_in = plan.batched[int(task.batch[1:])].run_in
        handles.append(
            dag.add(
                task.fn(batched_fns, name),
                *args,
                name=name,
                kwargs=kwargs or None,
                after=after,
                priority=task.priority,
                cost=task.cost,
                uses=dict(uses) or None,
                retries=task.retries,
                retry_delay=task.retry_delay,
                retry_backoff=task.retry_backoff,
                retry_on=task.retry_on,
                timeout=task.timeout,
                run_in=None if run_in == "async" else run_in,
                trigger=task.trigger,
            )
        )
    return dag

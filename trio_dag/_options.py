"""TaskOptions, the options of one task, and the checking of ``DAG.add``'s options.

``make_options`` turns the option arguments of ``DAG.add`` into a
:class:`TaskOptions`, or raises TypeError/ValueError naming the task; tasks
added with the defaults share ``DEFAULT_OPTIONS`` instead. ``check_fn``
checks the function and its arguments where the kind of function decides
what is allowed (generator functions, ``@batched`` functions).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from itertools import groupby
from operator import is_
from types import BuiltinFunctionType, CodeType, FunctionType, MethodType
from typing import Any, Final, Literal, final

import attrs

from ._batching import Batched
from ._bodies import ASYNC, kind_of
from ._names import fn_name, task_label

__all__ = [
    "BUILT_IN",
    "DEFAULT_OPTIONS",
    "DEFAULT_VALUES",
    "RunIn",
    "TaskOptions",
    "Trigger",
    "check_fn",
    "make_options",
    "option_kinds",
    "options_of",
    "show_number",
]

# A str other than these names an executor (run(..., executors=), "process").
RunIn = Literal["async", "inline", "thread", "process"] | str
Trigger = Literal["all_succeeded", "all_done"]

BUILT_IN: Final = (None, "async", "inline", "thread")
_TRIGGERS: Final = ("all_succeeded", "all_done")


@final
@attrs.frozen
class TaskOptions:
    """The options of one task, as given to :meth:`DAG.add` and checked there.

    A frozen value: :meth:`DAG.add` makes it from its keyword options, and
    what each field means is told there. The fields have the defaults of
    :meth:`DAG.add`; tasks added with every default share one instance.
    ``tags`` is always a tuple, ``uses`` a tuple of ``(resource, amount)``
    pairs in the order given, and ``retry_on`` a tuple of exception classes.

    Attributes:
      priority: See ``priority`` of :meth:`DAG.add`.
      cost: See ``cost`` of :meth:`DAG.add`.
      tags: See ``tags`` of :meth:`DAG.add`.
      uses: See ``uses`` of :meth:`DAG.add`.
      retries: See ``retries`` of :meth:`DAG.add`.
      retry_delay: See ``retry_delay`` of :meth:`DAG.add`.
      retry_backoff: See ``retry_backoff`` of :meth:`DAG.add`.
      retry_on: See ``retry_on`` of :meth:`DAG.add`.
      timeout: See ``timeout`` of :meth:`DAG.add`.
      run_in: See ``run_in`` of :meth:`DAG.add`.
      trigger: See ``trigger`` of :meth:`DAG.add`.
      cache: See ``cache`` of :meth:`DAG.add`: False, True or a function.
      version: See ``version`` of :meth:`DAG.add`.
    """

    priority: int = 0
    cost: float = 1.0
    tags: tuple[str, ...] = ()
    uses: tuple[tuple[str, float], ...] = ()
    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 2.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    timeout: float | None = None
    run_in: RunIn | None = None
    trigger: Trigger = "all_succeeded"
    cache: bool | Callable[..., Any] = False
    version: str | None = None


DEFAULT_OPTIONS: Final = TaskOptions()
# The option arguments of DAG.add, in TaskOptions order, when the caller gives none.
DEFAULT_VALUES: Final = (0, 1.0, (), None, 0, 0.0, 2.0, (Exception,), None, None, "all_succeeded")


def show_number(value: object) -> str:
    """``repr(value)``, but an int too long to print in full is shown by its size."""
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"an int of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return repr(value)


def _real(value: object, what: str, label: str, *, low: float, strict: bool, hint: str) -> float:
    """*value* as a finite float above *low* (or at least *low* unless *strict*).

    bool is refused, although it is an int; a number too large for a float
    (``10**400``) is a ValueError, like infinity.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"task {label}: {what} must be a number, got {show_number(value)}")
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or f < low or (strict and f == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(
            f"task {label}: {what} must be finite and {bound} ({hint}), got {show_number(value)}"
        )
    return f


def _int(value: object, what: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"task {label}: {what} must be an int, got {value!r}")
    return int(value)


def _longest_wait_is_finite(retries: int, retry_delay: float, retry_backoff: float) -> bool:
    """Whether ``retry_delay * retry_backoff ** (retries - 1)``, the wait before the
    last retry (the longest, when the backoff is above 1), is a finite float."""
    if retries < 2 or retry_delay == 0 or retry_backoff <= 1:
        return True
    try:
        return math.isfinite(retry_delay * retry_backoff ** (retries - 1))
    except OverflowError:
        return False


def check_fn(fn: object, args: tuple[Any, ...], kwargs: object, i: int, name: object) -> None:
    """Check the function of task *i* being added, and its arguments where fn's kind
    decides them: a ``@batched`` function takes one positional argument, its item.

    Generator functions are refused, async (an async generator is not a
    coroutine: it would never run) and sync alike: calling one only makes a
    generator, so the task would succeed at once without running its body,
    and the body would run, if ever, inside whichever task iterates it.
    SPEC does not say this; a task that wants to hand on a stream returns
    an iterator from an ordinary function.
    """
    if not callable(fn):
        who = repr(name) if isinstance(name, str) else i
        raise TypeError(
            f"task {who}: fn must be callable, got {fn!r}; pass the function itself, "
            "not the result of calling it"
        )
    if isinstance(fn, Batched):
        if len(args) != 1:
            raise TypeError(
                f"task {task_label(fn, i, name)}: a task of batched {fn_name(fn)} takes "
                f"exactly one positional argument, its item (a value or a handle), got "
                f"{len(args)}; to pass several values, add one tuple of them"
            )
        if kwargs:
            raise TypeError(
                f"task {task_label(fn, i, name)}: a task of batched {fn_name(fn)} takes no "
                "kwargs=: the function is called with the list of items alone"
            )
        return
    flags = _code_flags(fn)
    if flags & inspect.CO_ASYNC_GENERATOR:
        raise TypeError(
            f"task {task_label(fn, i, name)}: {fn_name(fn)} is an async generator function; "
            "calling it only makes a generator, so its body would never run; add an async "
            "function that iterates it, e.g. one returning [x async for x in gen()]"
        )
    if flags & inspect.CO_GENERATOR:
        raise TypeError(
            f"task {task_label(fn, i, name)}: {fn_name(fn)} is a generator function; calling "
            "it only makes a generator, so its body would not run as the task; add a "
            "function that returns list(gen()) (or gen() itself, to hand on the generator)"
        )


def _code_flags(fn: object) -> int:
    """The code flags of what calling *fn* runs: its function, the function behind
    a partial or a bound method, or a callable object's ``__call__``; 0 for a
    class (calling it makes an instance) and for callables without Python code."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, type):
        return 0
    if not isinstance(target, (FunctionType, MethodType)):
        target = getattr(type(target), "__call__", None)  # noqa: B004 - its code, not callability
    while isinstance(target, MethodType):
        target = target.__func__
    code = getattr(target, "__code__", None)
    return code.co_flags if isinstance(code, CodeType) else 0


def make_options(
    fn: Callable[..., Any],
    label: str,
    priority: object,
    cost: object,
    tags: object,
    uses: object,
    retries: object,
    retry_delay: object,
    retry_backoff: object,
    retry_on: object,
    timeout: object,
    run_in: object,
    trigger: object,
    cache: object = False,
    version: object = None,
) -> TaskOptions:
    """Check the options of ``DAG.add`` and return them as a TaskOptions."""
    priority = _int(priority, "priority", label)
    cost = _real(cost, "cost", label, low=0, strict=True, hint="a relative duration")
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(
            f"task {label}: tags must be an iterable of str, like ('io',); got {tags!r}"
        )
    tags = tuple(tags)
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"task {label}: tags must be str, got {tag!r}")
    if uses is None:
        uses = ()
    elif isinstance(uses, Mapping):
        pairs = []
        for resource, amount in uses.items():
            if not isinstance(resource, str):
                raise TypeError(
                    f"task {label}: uses= keys must be resource names (str), got {resource!r}"
                )
            what = f"uses[{resource!r}]"
            checked = _real(amount, what, label, low=0, strict=True, hint="an amount")
            if isinstance(amount, numbers.Rational) and not isinstance(amount, numbers.Integral):
                # A Fraction stays as given: counted exactly and shown as given.
                checked = amount  # type: ignore[assignment]
            pairs.append((resource, checked))
        uses = tuple(pairs)
    else:
        raise TypeError(f"task {label}: uses= must be a mapping {{resource: amount}}, got {uses!r}")
    retries = _int(retries, "retries", label)
    if retries < 0:
        raise ValueError(f"task {label}: retries must be >= 0 (extra attempts), got {retries}")
    retry_delay = _real(retry_delay, "retry_delay", label, low=0, strict=False, hint="seconds")
    retry_backoff = _real(
        retry_backoff, "retry_backoff", label, low=0, strict=True, hint="a factor per retry"
    )
    if retries > 1 and not _longest_wait_is_finite(retries, retry_delay, retry_backoff):
        raise ValueError(
            f"task {label}: the wait before retry {show_number(retries)}, retry_delay * "
            f"retry_backoff ** (retries - 1) = {retry_delay:g} * {retry_backoff:g} ** "
            f"{show_number(retries - 1)}, is too large for a float; use fewer retries or a "
            "smaller retry_backoff"
        )
    retry_on = _exception_classes(retry_on, label)
    if timeout is not None:
        timeout = _real(
            timeout, "timeout", label, low=0, strict=True, hint="seconds; None for no timeout"
        )
    run_in = _check_run_in(fn, run_in, label)
    if trigger not in _TRIGGERS:
        raise ValueError(
            f"task {label}: unknown trigger {trigger!r}; use 'all_succeeded' or 'all_done'"
        )
    if not isinstance(cache, bool) and not callable(cache):
        raise TypeError(
            f"task {label}: cache= must be True, False or a function of the task's arguments "
            f"returning extra key material, got {cache!r}"
        )
    if not isinstance(cache, bool) and kind_of(cache) == ASYNC:
        raise TypeError(
            f"task {label}: cache= is called in the event loop just before the lookup and "
            f"must be a plain function, not async: {cache!r}"
        )
    if version is not None and not isinstance(version, str):
        raise TypeError(f"task {label}: version= must be a str or None, got {version!r}")
    return TaskOptions(
        priority=priority,
        cost=cost,
        tags=tags,
        uses=uses,
        retries=retries,
        retry_delay=retry_delay,
        retry_backoff=retry_backoff,
        retry_on=retry_on,
        timeout=timeout,
        run_in=run_in,
        trigger=trigger,
        cache=cache,
        version=version,
    )


# The options of the last add that had any (see options_of): the function,
# each option as compared (see _frozen), and the TaskOptions made of them.
_last: tuple[object, tuple[object, ...], TaskOptions] | None = None

# Options of these types are compared by identity: nothing can change them.
_ATOMS: Final = frozenset(
    {type(None), bool, int, float, str, Fraction, FunctionType, BuiltinFunctionType, type}
)


def _frozen(value: object) -> object:
    """*value* as options_of compares it, or ``_frozen`` itself when it cannot be.

    Atoms (and tuples of atoms, such as ``tags`` or ``retry_on``) stand for
    themselves and are compared by identity. A dict or list (``uses={...}``,
    ``tags=[...]``), which the caller may change, is copied as a tuple of its
    items and their types, compared by value: ``1`` and ``1.0`` are equal,
    but not the same option.
    """
    t = type(value)
    if t in _ATOMS or isinstance(value, type):
        return value
    if isinstance(value, tuple):
        atoms = all(type(x) in _ATOMS or isinstance(x, type) for x in value)
        return value if t is tuple and atoms else _frozen
    if isinstance(value, dict) and t is dict:
        copied: tuple[Any, ...] = tuple(value.items())
        flat = [x for item in copied for x in item]
    elif isinstance(value, list) and t is list:
        copied = tuple(value)
        flat = list(copied)
    else:
        return _frozen
    if not all(type(x) in _ATOMS for x in flat):
        return _frozen
    return (_Copy, t, copied, tuple(map(type, flat)))


class _Copy:
    """Marks a copied dict or list among _frozen's values."""


def _same(value: object, kept: object) -> bool:
    if value is kept:
        return True
    return type(kept) is tuple and kept[:1] == (_Copy,) and _frozen(value) == kept


def option_kinds(options: Iterable[TaskOptions]) -> list[TaskOptions]:
    """*options* with each run of equal neighbours taken once: what a run's
    start asks of every task (its warnings, its executor tasks) it asks of
    these. Tasks added alike share one TaskOptions (:func:`options_of`) and
    ``groupby`` compares by identity first, so this is one C-level pass over
    a run of many tasks, with no Python code per task."""
    return [o for o, _ in groupby(options)]


def options_of(
    fn: Callable[..., Any], label: Callable[[], str], values: tuple[Any, ...]
) -> TaskOptions:
    """``make_options(fn, label(), *values)``, made once for a run of adds alike.

    A loop that adds many tasks of one function with the same options (say
    ``run_in="thread"``, ``retries=3``) checks them once: the last function
    and options checked are kept, and an add whose function is that one and
    whose options are the same objects (or, for a dict or list, equal
    copies with the same types) shares its TaskOptions. *label* is called
    only when the options are checked.
    """
    global _last
    last = _last
    if (
        last is not None
        and last[0] is fn
        and (all(map(is_, values, last[1])) or all(map(_same, values, last[1])))
    ):
        return last[2]
    opts = make_options(fn, label(), *values)
    kept = tuple(map(_frozen, values))
    if all(k is not _frozen for k in kept):
        _last = (fn, kept, opts)
    return opts


def _check_run_in(fn: Callable[..., Any], run_in: object, label: str) -> str | None:
    """Check that *run_in* is a way to call *fn*: built in, or an executor's name.

    Executor bodies are sync functions: they are sent elsewhere to be called.
    A ``@batched`` function takes its ``run_in`` as any function of its kind
    (sync or async) does; its list-taking function is called once per batch.
    """
    if run_in is not None and not (isinstance(run_in, str) and run_in):
        raise ValueError(
            f"task {label}: unknown run_in {run_in!r}; use None, 'async', 'inline', 'thread', "
            "'process' or the name of an executor the run provides (executors=)"
        )
    target = fn.fn if isinstance(fn, Batched) else fn
    is_async = kind_of(target) == ASYNC
    if isinstance(fn, Batched) and run_in is not None and (is_async or run_in == "async"):
        # The loop's fast path awaits any run_in="async" body: never a batched one.
        raise ValueError(
            f"task {label}: run_in={run_in!r} does not apply to batched {fn_name(fn)}: "
            + (
                "an async batched function runs in the event loop, one call per batch; "
                "leave run_in out"
                if is_async
                else "it is sync; leave run_in=None (a worker thread), or use 'inline' or "
                "an executor's name"
            )
        )
    if run_in in ("inline", "thread") and is_async:
        raise ValueError(
            f"task {label}: run_in={run_in!r} calls a sync function, but {fn_name(fn)} is "
            "async; leave run_in=None or use 'async'"
        )
    if run_in not in BUILT_IN and is_async:
        raise ValueError(
            f"task {label}: run_in={run_in!r} runs the body on an executor, which calls a "
            f"sync function, but {fn_name(fn)} is async; run it in the event loop "
            "(run_in=None), or give the executor a sync function"
        )
    return run_in


def _exception_classes(retry_on: object, label: str) -> tuple[type[BaseException], ...]:
    classes = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(
                f"task {label}: retry_on must be an exception class or a tuple of them, "
                f"got {retry_on!r}"
            )
        if not issubclass(cls, Exception):
            raise ValueError(
                f"task {label}: retry_on holds {cls.__name__}, which is not an Exception; "
                "such exceptions are never retried, so list Exception subclasses only"
            )
    return classes

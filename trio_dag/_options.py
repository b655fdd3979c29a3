"""TaskOptions, the options of one task, and the checking of ``DAG.add``'s options.

``make_options`` turns the option arguments of ``DAG.add`` into a
:class:`TaskOptions`, or raises TypeError/ValueError naming the task; tasks
added with the defaults share ``DEFAULT_OPTIONS`` instead.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, final

import attrs

from ._names import fn_name

__all__ = ["DEFAULT_OPTIONS", "DEFAULT_VALUES", "RunIn", "TaskOptions", "Trigger", "make_options"]

RunIn = Literal["async", "inline", "thread"]
Trigger = Literal["all_succeeded", "all_done"]

_RUN_IN: Final = (None, "async", "inline", "thread")
_TRIGGERS: Final = ("all_succeeded", "all_done")


@final
@attrs.frozen
class TaskOptions:
    """The options of one task, as given to :meth:`DAG.add` and checked there.

    Tasks added with the defaults share one instance. ``uses`` is a tuple of
    ``(resource, amount)`` pairs in the order given; ``retry_on`` always a tuple.
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


DEFAULT_OPTIONS: Final = TaskOptions()
# The option arguments of DAG.add, in TaskOptions order, when the caller gives none.
DEFAULT_VALUES: Final = (0, 1.0, (), None, 0, 0.0, 2.0, (Exception,), None, None, "all_succeeded")


def _real(value: object, what: str, label: str, *, low: float, strict: bool, hint: str) -> float:
    """*value* as a finite float above *low* (or at least *low* unless *strict*)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"task {label}: {what} must be a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or f < low or (strict and f == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(f"task {label}: {what} must be finite and {bound} ({hint}), got {value!r}")
    return f


def _int(value: object, what: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"task {label}: {what} must be an int, got {value!r}")
    return int(value)


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
            pairs.append(
                (resource, _real(amount, what, label, low=0, strict=True, hint="an amount"))
            )
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
    retry_on = _exception_classes(retry_on, label)
    if timeout is not None:
        timeout = _real(
            timeout, "timeout", label, low=0, strict=True, hint="seconds; None for no timeout"
        )
    if run_in not in _RUN_IN:
        raise ValueError(
            f"task {label}: unknown run_in {run_in!r}; use None, 'async', 'inline' or 'thread'"
        )
    if run_in in ("inline", "thread") and inspect.iscoroutinefunction(fn):
        raise ValueError(
            f"task {label}: run_in={run_in!r} calls a sync function, but {fn_name(fn)} is "
            "async; leave run_in=None or use 'async'"
        )
    if trigger not in _TRIGGERS:
        raise ValueError(
            f"task {label}: unknown trigger {trigger!r}; use 'all_succeeded' or 'all_done'"
        )
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
    )


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

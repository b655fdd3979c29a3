"""DAG and Handle: building a graph of tasks, validating it, and exporting it.

Tasks are stored column-wise, one entry per task in parallel lists and
``array('i')`` buffers, so a task costs a few machine words beyond what the
user passed. :meth:`DAG._freeze` turns the DAG into a :class:`Snapshot`, the
form the engine runs; data flows one way: this module builds, the core
freezes, the engine runs.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import inspect
import math
import numbers
import sys
from array import array
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from operator import attrgetter
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Literal,
    NoReturn,
    TypeVar,
    cast,
    final,
    overload,
)

import attrs

from ._errors import CycleError, DuplicateTaskError, ForeignHandleError, UnknownDependencyError
from ._impl import core

if TYPE_CHECKING:
    from ._core import Graph

__all__ = ["DAG", "Handle", "Snapshot", "TaskOptions"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

RunIn = Literal["async", "inline", "thread"]
Trigger = Literal["all_succeeded", "all_done"]

_RUN_IN: Final = (None, "async", "inline", "thread")
_TRIGGERS: Final = ("all_succeeded", "all_done")
_CONTAINERS: Final = frozenset({list, tuple, dict})

# Kinds of edge, in DAG._pos: >= 0 is the position of a top-level positional
# handle; these two mark the others.
_NESTED: Final = -1  # a handle in kwargs or inside a container: see DAG._paths
_AFTER: Final = -2  # an after= edge: order only, no output passed

_NO_KWARGS: Final[Mapping[str, Any]] = MappingProxyType({})
_LEAVE: Final = object()  # marks the end of a container in DAG._find_handles
_PRIORITY: Final = attrgetter("priority")
_COST: Final = attrgetter("cost")
_INT_SIZE: Final = array("i").itemsize
_BYTE_ORDER: Final = sys.byteorder
# array('i') of positions 0..k-1, shared for the usual small k.
_FIRST: Final = tuple(array("i", range(k)) for k in range(64))
# With more tasks than this, an unknown name is compared with the explicit
# names only (and the default names it resembles), to keep the error fast.
_SUGGEST_ALL_BELOW: Final = 20_000


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


_DEFAULT_OPTIONS: Final = TaskOptions()
# The option arguments of DAG.add, in TaskOptions order, when the caller gives none.
_DEFAULT_VALUES: Final = (0, 1.0, (), None, 0, 0.0, 2.0, (Exception,), None, None, "all_succeeded")


@final
class Handle(Generic[T_co]):
    """A task of a :class:`DAG`, as returned by :meth:`DAG.add`.

    Pass it as an argument of another task to feed it this task's output.
    Immutable and hashable: handles are equal when they name the same task
    of the same DAG. ``Handle[bytes]`` is a task whose function returns bytes.
    """

    __slots__ = ("_dag", "_index")
    _dag: DAG
    _index: int

    def __init__(self, dag: DAG, index: int) -> None:
        _set_dag(self, dag)
        _set_index(self, index)

    @property
    def dag(self) -> DAG:
        """The DAG the task belongs to."""
        return self._dag

    @property
    def index(self) -> int:
        """The task's insertion index in its DAG, from 0."""
        return self._index

    @property
    def name(self) -> str:
        """The task's unique name."""
        return self._dag._name(self._index)

    def __setattr__(self, attr: str, value: object) -> NoReturn:
        raise AttributeError(f"Handle is immutable; cannot set {attr!r}")

    def __delattr__(self, attr: str) -> NoReturn:
        raise AttributeError(f"Handle is immutable; cannot delete {attr!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Handle:
            return NotImplemented
        return self._dag is other._dag and self._index == other._index

    def __hash__(self) -> int:
        return hash((id(self._dag), self._index))

    def __repr__(self) -> str:
        return f"<Handle {self.name!r} (task {self._index})>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Handle, (self._dag, self._index))


_set_dag: Final[Callable[[Handle[Any], DAG], None]] = Handle.__dict__["_dag"].__set__
_set_index: Final[Callable[[Handle[Any], int], None]] = Handle.__dict__["_index"].__set__


def _fn_name(fn: Callable[..., Any]) -> str:
    """The name default task names start with: ``fn.__name__`` (of a partial's function)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


@final
class DAG:
    """A directed acyclic graph of tasks, built with :meth:`add`::

        dag = DAG()
        raw = dag.add(load, "a.txt", name="load-a")
        clean = dag.add(normalize, raw)          # normalize(load("a.txt"))
        dag.add(store, [clean], after=["open-db"])
        dag.add(open_db, name="open-db")         # names may be used before they exist

    Task *i* (its insertion index) is stored column-wise. The columns grow
    as tasks are added, and what is written for a task never changes (but
    for the -1 placeholders of ``_src``, filled once their name resolves), so
    a :class:`Snapshot` shares the columns and reads tasks ``0..n-1`` while
    the user keeps adding.

    - ``_fns[i]``: the function.
    - ``_args[i]``: the user's positional arguments, or an int *k*: the task's
      arguments are exactly *k* handles, its first *k* edges, in order.
    - ``_opts[i]``: its :class:`TaskOptions` (one shared default instance).
    - ``_kwargs``: ``{i: kwargs}`` (a private copy) for tasks that have some.
    - Edges of task *i* are ``_off[i]:_off[i + 1]`` of ``_src`` (the dependency,
      -1 for an ``after=`` name not yet resolved), ``_dst`` (*i*) and ``_pos``
      (a position, ``_NESTED`` or ``_AFTER``); data edges come first, in the
      order the handles were found, then ``after=`` edges.
    - ``_paths``: ``{i: paths}`` for tasks with a handle in kwargs or inside a
      container: one path per data edge, ``(0, position, key, ...)`` into the
      arguments or ``(1, name, key, ...)`` into kwargs.
    - ``_names`` ``{i: name}`` and ``_index_of`` ``{name: i}``: names given
      with ``name=``; the others are computed (``f"{fn.__name__}-{i}"``).
    - ``_pending``: ``{edge: (task, name)}`` for ``after=`` names not yet resolved.
    - ``_all_done``: ascending indices of tasks with ``trigger="all_done"``.
    """

    __slots__ = (
        "__weakref__",
        "_all_done",
        "_args",
        "_dst",
        "_fns",
        "_graph_cache",
        "_index_of",
        "_kwargs",
        "_names",
        "_off",
        "_opts",
        "_paths",
        "_pending",
        "_pos",
        "_snapshot",
        "_src",
    )

    def __init__(self) -> None:
        self._fns: list[Callable[..., Any]] = []
        self._args: list[tuple[Any, ...] | int] = []
        self._opts: list[TaskOptions] = []
        self._kwargs: dict[int, dict[str, Any]] = {}
        self._off = array("i", [0])
        self._src = array("i")
        self._dst = array("i")
        self._pos = array("i")
        self._paths: dict[int, tuple[tuple[Any, ...], ...]] = {}
        self._names: dict[int, str] = {}
        self._index_of: dict[str, int] = {}
        self._pending: dict[int, tuple[int, str]] = {}
        self._all_done = array("i")
        self._graph_cache: Graph | None = None
        self._snapshot: Snapshot | None = None

    # --- building ----------------------------------------------------------

    @overload
    def add(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        name: str | None = ...,
        kwargs: Mapping[str, Any] | None = ...,
        after: Handle[Any] | str | Iterable[Handle[Any] | str] = ...,
        priority: int = ...,
        cost: float = ...,
        tags: Iterable[str] = ...,
        uses: Mapping[str, float] | None = ...,
        retries: int = ...,
        retry_delay: float = ...,
        retry_backoff: float = ...,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
        timeout: float | None = ...,
        run_in: RunIn | None = ...,
        trigger: Trigger = ...,
    ) -> Handle[T]: ...
    @overload
    def add(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        name: str | None = ...,
        kwargs: Mapping[str, Any] | None = ...,
        after: Handle[Any] | str | Iterable[Handle[Any] | str] = ...,
        priority: int = ...,
        cost: float = ...,
        tags: Iterable[str] = ...,
        uses: Mapping[str, float] | None = ...,
        retries: int = ...,
        retry_delay: float = ...,
        retry_backoff: float = ...,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
        timeout: float | None = ...,
        run_in: RunIn | None = ...,
        trigger: Trigger = ...,
    ) -> Handle[T]: ...

    def add(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        after: Handle[Any] | str | Iterable[Handle[Any] | str] = (),
        priority: int = 0,
        cost: float = 1.0,
        tags: Iterable[str] = (),
        uses: Mapping[str, float] | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None,
        run_in: RunIn | None = None,
        trigger: Trigger = "all_succeeded",
    ) -> Handle[Any]:
        """Add a task that calls ``fn(*args, **kwargs)``; return its handle.

        Handles in *args*, in *kwargs* values, or nested in lists, tuples and
        dicts make dependencies, replaced by their outputs at run time;
        *after* adds dependencies (handles or names, also of tasks added
        later) that pass no output. *name* defaults to
        ``f"{fn.__name__}-{index}"``; the other options are described in
        the docs of ``trio_dag`` (section "Building a graph").

        Everything is checked before anything is recorded, so a rejected call
        (TypeError, ValueError, ForeignHandleError, DuplicateTaskError) leaves
        the DAG as it was.
        """
        i = len(self._fns)
        if not callable(fn):
            who = repr(name) if isinstance(name, str) else i
            raise TypeError(
                f"task {who}: fn must be callable, got {fn!r}; pass the function itself, "
                "not the result of calling it"
            )
        values = (
            priority,
            cost,
            tags,
            uses,
            retries,
            retry_delay,
            retry_backoff,
            retry_on,
            timeout,
            run_in,
            trigger,
        )
        # Options equal to the defaults (the usual case) share one TaskOptions.
        opts = (
            _DEFAULT_OPTIONS
            if values == _DEFAULT_VALUES
            else _make_options(fn, self._label(fn, i, name), *values)
        )
        if name is not None:
            self._check_name(name, fn, i)
        elif self._index_of:
            self._check_default_name(fn, i)
        kw = None if kwargs is None else self._copy_kwargs(kwargs, fn, i, name)
        after_items = None if after == () else self._after(after, fn, i, name)
        # The common case first: every positional argument is a handle of
        # this DAG (or there are none) and kwargs hold none.
        data = [a._index for a in args if type(a) is Handle and a._dag is self]
        if len(data) == len(args) and not kw:
            self._record(fn, len(data) or args, kw, opts, name, data, None, None, after_items)
        else:
            stored, data, pos, paths = self._scan(args, kw, fn, i, name)
            self._record(fn, stored, kw, opts, name, data, pos, paths, after_items)
        return Handle(self, i)

    @overload
    def map(
        self, fn: Callable[[Any], Awaitable[T]], iterable: Iterable[Any], /, **options: Any
    ) -> list[Handle[T]]: ...
    @overload
    def map(
        self, fn: Callable[[Any], T], iterable: Iterable[Any], /, **options: Any
    ) -> list[Handle[T]]: ...

    def map(
        self, fn: Callable[[Any], Any], iterable: Iterable[Any], /, **options: Any
    ) -> list[Handle[Any]]:
        """Add one task ``fn(item)`` per item, all with the same options; return their handles.

        An item may be a handle (its task's output is then the argument).
        Takes every keyword of :meth:`add` except ``name``: the tasks get
        default names. All or nothing: a rejected item adds no task at all.
        """
        if "name" in options:
            raise TypeError(
                "map() gives its tasks default names; to name them, call add() in a loop"
            )
        start = len(self._fns)
        try:
            return [self.add(fn, item, **options) for item in iterable]
        except BaseException:
            self._truncate(start)
            raise

    # --- helpers of add and map --------------------------------------------

    def _label(self, fn: Callable[..., Any], i: int, name: object) -> str:
        """How an error names the task being added: the name it would have had."""
        return repr(name) if isinstance(name, str) else repr(f"{_fn_name(fn)}-{i}")

    def _check_name(self, name: object, fn: Callable[..., Any], i: int) -> None:
        if not isinstance(name, str):
            raise TypeError(f"task {i}: name must be a str, got {name!r} ({type(name).__name__})")
        if not name:
            raise ValueError(f"task {i}: name must not be empty; leave it out for a default name")
        j = self._lookup(name)
        if j is not None:
            raise DuplicateTaskError(
                name,
                f"task {i} ({_fn_name(fn)}) cannot be named {name!r}: task {j} already has "
                "that name; pass a different name=",
            )

    def _check_default_name(self, fn: Callable[..., Any], i: int) -> None:
        # Only needed once some task was named by hand: it may have taken the
        # default name this task gets now.
        default = f"{_fn_name(fn)}-{i}"
        j = self._index_of.get(default)
        if j is not None:
            raise DuplicateTaskError(
                default,
                f"task {i} gets the default name {default!r}, but task {j} was given that "
                "name with name=; pass a name= to this task or rename that one",
            )

    def _copy_kwargs(
        self, kwargs: object, fn: Callable[..., Any], i: int, name: object
    ) -> dict[str, Any]:
        if not isinstance(kwargs, Mapping):
            raise TypeError(
                f"task {self._label(fn, i, name)}: kwargs= must be a mapping of keyword "
                f"arguments for fn, got {kwargs!r} ({type(kwargs).__name__})"
            )
        kw = dict(kwargs)
        for key in kw:
            if not isinstance(key, str):
                raise TypeError(
                    f"task {self._label(fn, i, name)}: kwargs= keys must be str (keyword "
                    f"argument names), got {key!r}"
                )
        return kw

    def _foreign(
        self, handle: Handle[Any], fn: Callable[..., Any], i: int, name: object
    ) -> ForeignHandleError:
        return ForeignHandleError(
            f"task {self._label(fn, i, name)}: {handle!r} belongs to another DAG; a task can "
            "only depend on tasks of its own DAG, so add both tasks to the same DAG"
        )

    def _scan(
        self,
        args: tuple[Any, ...],
        kw: dict[str, Any] | None,
        fn: Callable[..., Any],
        i: int,
        name: object,
    ) -> tuple[
        tuple[Any, ...] | int, list[int], list[int] | None, tuple[tuple[Any, ...], ...] | None
    ]:
        """Find the handles of a task's arguments: ``(stored args, data, pos, paths)``.

        The common case, handles only among the positional arguments, takes
        one pass and no per-task object; containers and kwargs take the
        general walk.
        """
        data: list[int] = []
        plain = False
        for a in args:
            if type(a) is Handle:
                if a._dag is not self:
                    raise self._foreign(a, fn, i, name)
                data.append(a._index)
            elif type(a) in _CONTAINERS:
                return self._scan_nested(args, kw, fn, i, name)
            else:
                plain = True
        if kw and any(type(v) is Handle or type(v) in _CONTAINERS for v in kw.values()):
            return self._scan_nested(args, kw, fn, i, name)
        if not data:
            return args, data, data, None
        if plain:
            return args, data, [p for p, a in enumerate(args) if type(a) is Handle], None
        return len(data), data, None, None

    def _scan_nested(
        self,
        args: tuple[Any, ...],
        kw: dict[str, Any] | None,
        fn: Callable[..., Any],
        i: int,
        name: object,
    ) -> tuple[tuple[Any, ...], list[int], list[int], tuple[tuple[Any, ...], ...] | None]:
        found = self._find_handles(args, kw, fn, i, name)
        data = [j for _, j in found]
        if all(len(path) == 2 and path[0] == 0 for path, _ in found):
            return args, data, [path[1] for path, _ in found], None
        return args, data, [_NESTED] * len(found), tuple(path for path, _ in found)

    def _find_handles(
        self,
        args: tuple[Any, ...],
        kw: dict[str, Any] | None,
        fn: Callable[..., Any],
        i: int,
        name: object,
    ) -> list[tuple[tuple[Any, ...], int]]:
        """Every handle in the arguments, depth first, as ``(path, task index)``.

        Iterative, so nesting depth is not limited by the recursion limit.
        Paths are built as linked ``(parent, key)`` pairs and spelled out only
        for handles, which keeps deep nesting linear.
        """
        found: list[tuple[tuple[Any, ...], int]] = []
        on_path: set[int] = set()
        stack: list[tuple[Any, Any]] = [(kw, (None, 1))] if kw else []
        stack.append((args, (None, 0)))
        while stack:
            obj, link = stack.pop()
            if obj is _LEAVE:
                on_path.discard(link)
            elif type(obj) is Handle:
                if obj._dag is not self:
                    raise self._foreign(obj, fn, i, name)
                found.append((_spell(link), obj._index))
            elif id(obj) in on_path:
                raise ValueError(
                    f"task {self._label(fn, i, name)}: an argument contains itself (a "
                    f"{type(obj).__name__} at {_spell(link)}); pass data without reference cycles"
                )
            else:
                on_path.add(id(obj))
                stack.append((_LEAVE, id(obj)))
                pairs = obj.items() if type(obj) is dict else enumerate(obj)
                stack.extend(
                    reversed(
                        [
                            (v, (link, k))
                            for k, v in pairs
                            if type(v) is Handle or type(v) in _CONTAINERS
                        ]
                    )
                )
        return found

    def _after(
        self, after: object, fn: Callable[..., Any], i: int, name: object
    ) -> list[int | str]:
        """Check ``after=``: task indices, and names that do not exist yet."""
        items = (after,) if isinstance(after, (str, Handle)) else after
        if not isinstance(items, Iterable):
            raise TypeError(
                f"task {self._label(fn, i, name)}: after= must be a handle, a task name, or "
                f"an iterable of them, got {after!r}"
            )
        out: list[int | str] = []
        for a in items:
            if type(a) is Handle:
                if a._dag is not self:
                    raise self._foreign(a, fn, i, name)
                out.append(a._index)
            elif isinstance(a, str) and a:
                j = self._lookup(a)
                out.append(a if j is None else j)
            else:
                raise TypeError(
                    f"task {self._label(fn, i, name)}: after= holds {a!r}; give handles or "
                    "task names"
                )
        return out

    def _record(
        self,
        fn: Callable[..., Any],
        stored: tuple[Any, ...] | int,
        kw: dict[str, Any] | None,
        opts: TaskOptions,
        name: str | None,
        data: list[int],
        pos: list[int] | None,
        paths: tuple[tuple[Any, ...], ...] | None,
        after_items: list[int | str] | None,
    ) -> None:
        """Append a checked task to every column; nothing here can fail.

        *pos* None means the data edges are positions ``0..len(data)-1``.
        """
        i = len(self._fns)
        self._fns.append(fn)
        self._args.append(stored)
        self._opts.append(opts)
        src = self._src
        if data:
            src.fromlist(data)
            if pos is not None:
                self._pos.fromlist(pos)
            else:
                self._pos.extend(_FIRST[len(data)] if len(data) < 64 else range(len(data)))
        if after_items:
            for a in after_items:
                if isinstance(a, str):
                    self._pending[len(src)] = (i, a)
                    src.append(-1)
                else:
                    src.append(a)
            self._pos.fromlist([_AFTER] * len(after_items))
        end = len(src)
        if data or after_items:
            # k copies of i: bytes repetition is the fastest way to append them.
            self._dst.frombytes(i.to_bytes(_INT_SIZE, _BYTE_ORDER) * (end - self._off[i]))
        self._off.append(end)
        if opts is not _DEFAULT_OPTIONS or kw or paths or name is not None:
            if kw:
                self._kwargs[i] = kw
            if paths is not None:
                self._paths[i] = paths
            if name is not None:
                self._names[i] = name
                self._index_of[name] = i
            if opts.trigger == "all_done":
                self._all_done.append(i)

    def _truncate(self, n: int) -> None:
        """Forget every task from index *n* on (map() undoing a partly done call)."""
        end = self._off[n]
        del self._fns[n:], self._args[n:], self._opts[n:], self._off[n + 1 :]
        del self._src[end:], self._dst[end:], self._pos[end:]
        del self._all_done[bisect.bisect_left(self._all_done, n) :]
        for table in (self._kwargs, self._paths, self._names):
            for k in [k for k in table if k >= n]:
                del table[k]
        for name in [name for name, j in self._index_of.items() if j >= n]:
            del self._index_of[name]
        for e in [e for e in self._pending if e >= end]:
            del self._pending[e]

    # --- names and lookup --------------------------------------------------

    def _name(self, i: int) -> str:
        """The name of task *i*: given with ``name=``, or ``f"{fn.__name__}-{i}"``."""
        name = self._names.get(i)
        return f"{_fn_name(self._fns[i])}-{i}" if name is None else name

    def _lookup(self, name: str) -> int | None:
        """The index of the task called *name*, or None."""
        j = self._index_of.get(name)
        if j is not None:
            return j
        # Default names are not stored: parse "<fn name>-<index>" and check.
        base, dash, digits = name.rpartition("-")
        if not dash or not (digits.isascii() and digits.isdigit()):
            return None
        j = int(digits)
        if (
            str(j) != digits
            or j >= len(self._fns)
            or j in self._names
            or _fn_name(self._fns[j]) != base
        ):
            return None
        return j

    def _close_name(self, missing: str) -> str | None:
        """The existing name closest to *missing*, if one is close (difflib)."""
        n = len(self._fns)
        if n <= _SUGGEST_ALL_BELOW:
            names: Iterable[str] = map(self._name, range(n))
        else:
            # Comparing with a million names would take seconds: compare with
            # the names given by hand, and the default name with the same index.
            names = list(self._index_of)
            digits = missing.rpartition("-")[2]
            if digits.isascii() and digits.isdigit() and int(digits) < n:
                names.append(self._name(int(digits)))
        close = difflib.get_close_matches(missing, names, n=1)
        return close[0] if close else None

    def _task_index(self, task: Handle[Any] | str) -> int:
        """The index of a task given by handle or name (KeyError for an unknown name)."""
        if type(task) is Handle:
            if task._dag is not self:
                raise ForeignHandleError(
                    f"{task!r} belongs to another DAG; look tasks up in their own DAG"
                )
            return task._index
        if isinstance(task, str):
            j = self._lookup(task)
            if j is None:
                close = self._close_name(task)
                hint = f"; did you mean {close!r}?" if close is not None else ""
                raise KeyError(f"no task is named {task!r}{hint}")
            return j
        raise TypeError(f"a task is given by its Handle or its name, not {task!r}")

    def _resolve_edge(self, e: int) -> int:
        """The task an ``after=`` name of edge *e* names, or UnknownDependencyError."""
        task, name = self._pending[e]
        j = self._lookup(name)
        if j is None:
            raise UnknownDependencyError(self._name(task), name, self._close_name(name))
        return j

    def _resolve_pending(self) -> None:
        # In edge order, that is insertion order: the first error is the
        # earliest task's.
        src = self._src
        for e in self._pending:
            src[e] = self._resolve_edge(e)
        self._pending.clear()

    # --- the container protocol --------------------------------------------

    def __len__(self) -> int:
        """The number of tasks."""
        return len(self._fns)

    def __iter__(self) -> Iterator[Handle[Any]]:
        """The handles of every task, in insertion order."""
        for i in range(len(self._fns)):
            yield Handle(self, i)

    def __contains__(self, task: object) -> bool:
        """Whether a task has this name (or whether a handle is of this DAG)."""
        if type(task) is Handle:
            return task._dag is self
        return isinstance(task, str) and self._lookup(task) is not None

    def __getitem__(self, name: str | Handle[Any]) -> Handle[Any]:
        """The handle of the task called *name* (KeyError, with a suggestion, if none)."""
        return Handle(self, self._task_index(name))

    def __repr__(self) -> str:
        return f"<trio_dag.DAG with {len(self._fns)} tasks>"

    def dependencies(self, task: Handle[Any] | str) -> tuple[Handle[Any], ...]:
        """The tasks *task* waits for (data and ``after=``), once each, in insertion order.

        Raises UnknownDependencyError if one of its ``after=`` names matches no task.
        """
        i = self._task_index(task)
        src = self._src
        deps = {src[e] if src[e] >= 0 else self._resolve_edge(e) for e in self._edges(i)}
        return tuple([Handle(self, j) for j in sorted(deps)])

    def dependents(self, task: Handle[Any] | str) -> tuple[Handle[Any], ...]:
        """The tasks that wait for *task* (data and ``after=``), once each, in insertion order.

        Needs every ``after=`` name of the DAG to exist (UnknownDependencyError
        otherwise); builds the whole graph once after each change.
        """
        i = self._task_index(task)
        return tuple([Handle(self, j) for j in self._graph().children(i)])

    def _edges(self, i: int) -> range:
        return range(self._off[i], self._off[i + 1])

    # --- freezing and validation -------------------------------------------

    def _graph(self) -> Graph:
        """The core graph of every task and edge, cached until the next add."""
        n = len(self._fns)
        graph = self._graph_cache
        if graph is None or graph.n != n:
            if self._pending:
                self._resolve_pending()
            graph = core.Graph(n, self._src, self._dst)
            self._graph_cache = graph
        return graph

    def _freeze(self) -> Snapshot:
        """The DAG as the engine runs it, validated; cached until the next add.

        Raises UnknownDependencyError (first, in insertion order), then CycleError.
        """
        snapshot = self._snapshot
        if snapshot is not None and snapshot.n == len(self._fns):
            return snapshot
        graph = self._graph()
        cycle = graph.find_cycle()
        if cycle is not None:
            raise CycleError([self._name(v) for v in cycle])
        snapshot = self._snapshot = Snapshot(self, graph)
        return snapshot

    def validate(self) -> None:
        """Check that the DAG can run: every ``after=`` name exists and there is no cycle.

        Raises UnknownDependencyError (checked first) or CycleError. Linear in
        tasks + edges and iterative; the result is kept until the next add.
        """
        self._freeze()

    def topological_order(self) -> list[Handle[Any]]:
        """Every task, each after all of its dependencies (validates first)."""
        return [Handle(self, i) for i in self._freeze().graph.topological_order()]

    def waves(self) -> list[list[Handle[Any]]]:
        """The tasks by level, each level in insertion order (validates first).

        Wave *k* holds the tasks whose longest chain of dependencies has *k*
        links, so each wave can run once the waves before it have ended.
        """
        waves: list[list[Handle[Any]]] = []
        for i, level in enumerate(self._freeze().graph.levels()):
            while len(waves) <= level:
                waves.append([])
            waves[level].append(Handle(self, i))
        return waves

    # --- exports -------------------------------------------------------------

    def _export(self) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[int, int, bool]]]:
        """``(name, tags)`` per task and ``(src, dst, order_only)`` per distinct edge.

        Edges are sorted by dependent, then dependency; an edge is order-only
        (``after=``) when no handle passes output along it.
        """
        if self._pending:
            self._resolve_pending()
        src = self._src
        pos = self._pos
        tasks = [(self._name(i), self._opts[i].tags) for i in range(len(self._fns))]
        edges: list[tuple[int, int, bool]] = []
        for i in range(len(self._fns)):
            data = {src[e] for e in self._edges(i) if pos[e] != _AFTER}
            every = data.union([src[e] for e in self._edges(i)])
            edges.extend((j, i, j not in data) for j in sorted(every))
        return tasks, edges

    def to_dot(self) -> str:
        """The DAG in Graphviz DOT: tasks by name and tags, ``after=`` edges dashed.

        Deterministic: the same DAG always gives the same text.
        """
        tasks, edges = self._export()
        lines = ["digraph trio_dag {", "  node [shape=box];"]
        for i, (name, tags) in enumerate(tasks):
            label = _dot_escape(name)
            if tags:
                label += "\\n" + _dot_escape("[" + ", ".join(tags) + "]")
            lines.append(f'  t{i} [label="{label}"];')
        for j, i, order_only in edges:
            lines.append(f"  t{j} -> t{i}{' [style=dashed]' if order_only else ''};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """The DAG as a Mermaid flowchart: tasks by name and tags, ``after=`` edges dotted.

        Deterministic: the same DAG always gives the same text.
        """
        tasks, edges = self._export()
        lines = ["flowchart TD"]
        for i, (name, tags) in enumerate(tasks):
            label = _mermaid_escape(name)
            if tags:
                label += "<br>" + _mermaid_escape("[" + ", ".join(tags) + "]")
            lines.append(f'    t{i}["{label}"]')
        for j, i, order_only in edges:
            lines.append(f"    t{j} {'-.->' if order_only else '-->'} t{i}")
        return "\n".join(lines) + "\n"


@final
class Snapshot:
    """A validated DAG, frozen for the engine: ``dag._freeze()`` makes it.

    It shares the DAG's append-only columns and reads only tasks ``0..n-1``,
    so it stays valid and unchanged while tasks are added to the DAG, and
    running it never changes the DAG. Indices *i* are task insertion indices,
    which are also the core's node numbers; methods do not range-check *i*.

    Attributes (read them, do not set them):

    - ``dag``: the :class:`DAG`.
    - ``n``: the number of tasks.
    - ``graph``: the ``core.Graph``: node *i* is task *i*, an edge
      ``dependency -> dependent`` for every data and ``after=`` dependency.
    - ``all_done``: ``array('i')``, ascending indices of the tasks with
      ``trigger="all_done"`` (for ``core.RunState(all_done=...)``).
    - ``priorities``: ``list[int]`` and ``costs``: ``array('d')``, one entry
      per task, computed on first use.
    """

    __slots__ = (
        "_args",
        "_costs",
        "_fns",
        "_kwargs",
        "_off",
        "_opts",
        "_paths",
        "_pos",
        "_priorities",
        "_src",
        "all_done",
        "dag",
        "graph",
        "n",
    )

    def __init__(self, dag: DAG, graph: Graph) -> None:
        self.dag = dag
        self.graph = graph
        self.n: int = graph.n
        self.all_done = dag._all_done[: bisect.bisect_left(dag._all_done, self.n)]
        self._fns = dag._fns
        self._args = dag._args
        self._opts = dag._opts
        self._kwargs = dag._kwargs
        self._paths = dag._paths
        self._off = dag._off
        self._src = dag._src
        self._pos = dag._pos
        self._priorities: list[int] | None = None
        self._costs: array[float] | None = None

    def fn(self, i: int) -> Callable[..., Any]:
        """The function of task *i*."""
        return self._fns[i]

    def options(self, i: int) -> TaskOptions:
        """The options of task *i*."""
        return self._opts[i]

    def name(self, i: int) -> str:
        """The name of task *i*."""
        return self.dag._name(i)

    def handle(self, i: int) -> Handle[Any]:
        """A handle of task *i* (a new object; equal to every other handle of it)."""
        return Handle(self.dag, i)

    def index(self, task: Handle[Any] | str) -> int:
        """The index of a task given by handle or name, e.g. for ``targets=``.

        Raises ForeignHandleError for a handle of another DAG and
        UnknownDependencyError (``.task`` None) for a name no task of this
        snapshot has.
        """
        dag = self.dag
        try:
            i = dag._task_index(task)
        except KeyError:
            assert isinstance(task, str)
            raise UnknownDependencyError(None, task, dag._close_name(task)) from None
        if i >= self.n:
            raise UnknownDependencyError(None, dag._name(i))
        return i

    @property
    def priorities(self) -> list[int]:
        """``priority`` of every task, by index."""
        if self._priorities is None:
            self._priorities = list(map(_PRIORITY, islice(self._opts, self.n)))
        return self._priorities

    @property
    def costs(self) -> array[float]:
        """``cost`` of every task, by index (for ``graph.upward_rank``)."""
        if self._costs is None:
            self._costs = array("d", map(_COST, islice(self._opts, self.n)))
        return self._costs

    def bind(self, i: int, outputs: Sequence[Any]) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
        """The arguments to call task *i*'s fn with: ``fn(*args, **kwargs)``.

        Each handle is replaced by ``outputs[its index]``. A task without
        handles gets the stored tuple and mapping themselves: treat both as
        read-only. O(number of handles) unless handles sit in containers or
        kwargs, which are copied along the paths that lead to them.
        """
        args = self._args[i]
        kwargs = self._kwargs.get(i, _NO_KWARGS)
        lo = self._off[i]
        src = self._src
        if type(args) is int:
            return tuple([outputs[j] for j in src[lo : lo + args]]), kwargs
        args = cast(tuple[Any, ...], args)
        hi = self._off[i + 1]
        pos = self._pos
        if lo == hi or pos[lo] == _AFTER:
            return args, kwargs
        paths = self._paths.get(i)
        if paths is None:
            bound = list(args)
            for e in range(lo, hi):
                p = pos[e]
                if p < 0:
                    break
                bound[p] = outputs[src[e]]
            return tuple(bound), kwargs
        values = [outputs[src[e]] for e in range(lo, lo + len(paths))]
        try:
            return _rebuild(args, kwargs, paths, values)
        except (LookupError, TypeError):
            raise RuntimeError(
                f"the arguments of task {self.name(i)!r} were changed after it was added; "
                "the DAG keeps references to them, so pass containers you will not modify"
            ) from None


def _spell(link: Any) -> tuple[Any, ...]:
    """A path from its linked ``(parent, key)`` form: ``(root, key, key, ...)``."""
    keys = []
    while link is not None:
        link, key = link
        keys.append(key)
    keys.reverse()
    return tuple(keys)


def _rebuild(
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    paths: tuple[tuple[Any, ...], ...],
    values: list[Any],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Copies of *args* and *kwargs* with ``values[k]`` at ``paths[k]``.

    Only containers on the paths are copied, each once (tuples as lists,
    turned back into tuples at the end); everything else is shared. Linear in
    the total length of the paths. Raises LookupError or TypeError if the
    arguments no longer fit the paths.
    """
    roots: list[Any] = [list(args), dict(kwargs)]
    copies: dict[tuple[int, Any], Any] = {}  # (id of a copy, key) -> copy of its child
    tuples: list[tuple[Any, Any, list[Any]]] = []  # (parent, key, copy), parents first
    for path, value in zip(paths, values, strict=True):
        node = roots[path[0]]
        for key in path[1:-1]:
            child = copies.get((id(node), key))
            if child is None:
                original = node[key]
                if type(original) is dict:
                    child = dict(original)
                elif type(original) is list or type(original) is tuple:
                    child = list(original)
                    if type(original) is tuple:
                        tuples.append((node, key, child))
                else:
                    raise TypeError(original)
                copies[id(node), key] = node[key] = child
            node = child
        if type(node[path[-1]]) is not Handle:
            raise LookupError(path)
        node[path[-1]] = value
    # A copy is made after its parent's, so in reverse every tuple is rebuilt
    # while its parent is still a list or dict, and after its own children.
    for parent, key, child in reversed(tuples):
        parent[key] = tuple(child)
    return tuple(roots[0]), roots[1]


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


def _make_options(
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
            f"task {label}: run_in={run_in!r} calls a sync function, but {_fn_name(fn)} is "
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


def _dot_escape(text: str) -> str:
    """*text* for a double-quoted DOT string: backslashes, quotes and newlines escaped."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


_MERMAID_ESCAPES: Final = str.maketrans(
    {"#": "#35;", '"': "#quot;", "&": "#amp;", "<": "#lt;", ">": "#gt;", "`": "#96;"}
)


def _mermaid_escape(text: str) -> str:
    """*text* for a quoted Mermaid label: entity codes for the characters that end or
    format it, ``<br>`` for newlines."""
    text = text.translate(_MERMAID_ESCAPES)
    return text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")

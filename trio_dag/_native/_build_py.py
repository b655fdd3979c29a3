"""The fast path of ``DAG.add`` and ``DAG.map`` in pure Python: the twin of ``_build.pyx``.

A :class:`Builder` shares the DAG's columns (lists and ``array('i')``) and
appends one task to them in one call, for the common call only: a function
already checked, no option but ``name=`` and ``after=``, positional
arguments that are handles of the DAG or plain values, ``after=`` a list or
tuple of handles and names. For anything else, and for anything that could be
an error, it returns None having recorded nothing, and ``DAG.add`` takes its
general path, which checks and raises exactly as before.

Also here: :class:`Names`, the DAG's table of given names.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from typing import Any, Final

from ._shared import PLAIN_TYPES

__all__ = ["Builder", "Names"]

_PLAIN: Final = frozenset(PLAIN_TYPES)
_STACK: Final = 64  # edges of one task the compiled twin counts in a C buffer
_DIGITS: Final = frozenset("0123456789")


def _default_like(name: str) -> bool:
    """Whether *name* reads as a default name: ``<anything>-<ASCII digits>``.

    Such a name may be taken by a task with that default name, which only
    the general path's lookup can tell.
    """
    _, dash, digits = name.rpartition("-")
    return bool(dash) and bool(digits) and _DIGITS.issuperset(digits)


class Names(dict[str, int]):
    """The names given with ``name=``: name -> task index, and task index -> name.

    A dict in the order given, which is the tasks' order; the reverse
    ``{task: name}`` is made on demand and mirrors the dict, the names not
    mirrored yet being the newest, at its end. The compiled twin keeps the
    names in a list with a table of C ints instead (no int object a name).
    """

    __slots__ = ("_given",)

    def __init__(self, items: Iterable[tuple[str, int]] = ()) -> None:
        super().__init__()
        self._given: dict[int, str] | None = None
        for name, i in items:
            self.add(name, i)

    def add(self, name: str, i: int) -> None:
        """Name task *i*, the last one named so far, *name* (checked to be free: ValueError)."""
        if self.setdefault(name, i) is not i:
            raise ValueError(f"name {name!r} is taken")

    def name_of(self, i: int) -> str | None:
        """The name task *i* was given, or None."""
        given = self._given
        if given is None:
            given = self._given = {j: name for name, j in self.items()}
        elif len(given) < len(self):
            for name, j in reversed(self.items()):
                if j in given:
                    break
                given[j] = name
        return given.get(i)

    def truncate(self, n: int) -> None:
        """Forget the names of tasks *n* and on."""
        for name in [name for name, j in self.items() if j >= n]:
            del self[name]
        self._given = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self.items()),))


class Builder:
    """Appends tasks to a DAG's columns in one call, for the common call only (see the module)."""

    __slots__ = (
        "args",
        "checked_fn",
        "default_like",
        "default_options",
        "defaults",
        "fns",
        "handle_type",
        "index_of",
        "no_after",
        "off",
        "opts",
        "pending",
        "src",
        "where",
    )

    def __init__(
        self,
        fns: list[Any],
        args: list[Any],
        opts: list[Any],
        off: array[int],
        src: array[int],
        where: dict[int, tuple[int, ...]],
        index_of: Names,
        pending: dict[int, tuple[int, str]],
        default_like: set[int],
        handle_type: type,
        default_options: object,
        defaults: Iterable[object],
        no_after: object,
    ) -> None:
        self.fns = fns
        self.args = args
        self.opts = opts
        self.off = off
        self.src = src
        self.where = where
        self.index_of = index_of
        self.pending = pending
        self.default_like = default_like
        self.handle_type = handle_type
        self.default_options = default_options
        self.defaults = tuple(defaults)
        if len(self.defaults) != 11:
            raise ValueError("defaults holds the 11 option defaults of DAG.add")
        self.no_after = no_after
        self.checked_fn: object = None

    def add(
        self,
        dag: object,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        name: object,
        kwargs: object,
        after: object,
        *options: object,
    ) -> Any:
        """The handle of the task added, or None when the call needs the general path."""
        if fn is not self.checked_fn or kwargs is not None:
            return None
        # What the general path takes for the default options (see DAG.add):
        # equal, and no bool for a number.
        if (
            options != self.defaults
            or options[0] is False
            or options[1] is True
            or options[4] is False
            or options[5] is False
        ):
            return None
        i = len(self.fns)
        if name is not None:
            if type(name) is not str or not name or _default_like(name):
                return None
        elif self.default_like and i in self.default_like:
            return None
        handle = self.handle_type
        k = len(args)
        if k > _STACK:
            return None
        data: list[int] = []
        where: list[int] = []
        plain = False
        for j, a in enumerate(args):
            t = type(a)
            if t is handle:
                if a._dag is not dag:
                    return None
                data.append(a._index)
                where.append(j)
            elif t in _PLAIN:
                plain = True
            else:
                return None
        after_idx: list[int] = []
        items: Any = ()
        if after is not self.no_after:
            t = type(after)
            if t is list or t is tuple:
                items = after
            elif t is handle or t is str:
                items = (after,)
            else:
                return None
            if len(items) > _STACK:
                return None
            for a in items:
                t = type(a)
                if t is handle:
                    if a._dag is not dag:
                        return None
                    after_idx.append(a._index)
                elif t is str and a and not _default_like(a):
                    idx = self.index_of.get(a)
                    after_idx.append(-1 if idx is None else idx)
                else:
                    return None
        # Checked but for the name being taken: the name's last check and its
        # record in one probe of the table; a name taken already is left to
        # the general path (DuplicateTaskError).
        if name is not None and self.index_of.setdefault(name, i) is not i:
            return None
        src = self.src
        lo = len(src)
        self.fns.append(fn)
        self.args.append(args if plain or k == 0 else k)
        self.opts.append(self.default_options)
        if data:
            src.fromlist(data)
            if plain:
                self.where[i] = tuple(where)
        if after_idx:
            for j, idx in enumerate(after_idx):
                if idx < 0:
                    self.pending[lo + len(data) + j] = (i, items[j])
            src.fromlist(after_idx)
        self.off.append(lo + len(data) + len(after_idx))
        return handle(dag, i)

    def map(
        self, dag: object, fn: Callable[..., Any], iterable: Iterable[Any], add: Callable[..., Any]
    ) -> list[Any]:
        """Add ``fn(item)`` for each item; *add* (``dag.add``) takes the items the fast path cannot.

        Returns the handles. On an error the tasks added so far stay: the
        caller removes them.
        """
        out: list[Any] = []
        handle = self.handle_type
        default_options = self.default_options
        fns, args, opts = self.fns, self.args, self.opts
        src, off = self.src, self.off
        for item in iterable:
            i = len(fns)
            t = type(item)
            if fn is not self.checked_fn or (self.default_like and i in self.default_like):
                out.append(add(fn, item))
                continue
            if t is handle and item._dag is dag:
                fns.append(fn)
                args.append(1)
                opts.append(default_options)
                src.append(item._index)
                off.append(len(src))
            elif t in _PLAIN:
                fns.append(fn)
                args.append((item,))
                opts.append(default_options)
                off.append(len(src))
            else:
                out.append(add(fn, item))
                continue
            out.append(handle(dag, i))
        return out

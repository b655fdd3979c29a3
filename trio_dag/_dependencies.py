"""The dependencies given to ``DAG.add``, and how their outputs reach the task.

``scan`` finds the handles among a task's positional arguments, its kwargs
and the lists, tuples and dicts inside them, and says where each one sits: a
position among the positional arguments (or ``NESTED``; ``DAG._where`` keeps
the positions when handles and values mix), plus, for nested ones, a path in
``DAG._paths``. A path is ``(0, position, key, ...)`` into the positional
arguments or ``(1, name, key, ...)`` into the kwargs. ``scan_after`` checks
``after=``, whose edges pass no output (``AFTER``). At run time ``rebuild``
puts the outputs of the dependencies at the paths, for ``Snapshot.bind``.

Subclasses of list, tuple and dict are searched too, and rebuilt as their
own type (see ``rebuild``): namedtuples, ``OrderedDict``, ``defaultdict``.
A handle in a set, frozenset or deque, or in a dict key, has no place an
output could be put: ``add`` refuses it with TypeError. Handles inside other
objects (a dataclass, a custom container) are not looked for.
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ._errors import ForeignHandleError
from ._handle import Handle
from ._names import task_label
from ._native._shared import AFTER as AFTER
from ._native._shared import NESTED as NESTED

if TYPE_CHECKING:
    from ._dag import DAG

__all__ = ["AFTER", "NESTED", "copy_kwargs", "rebuild", "scan", "scan_after"]

_CONTAINERS: Final = frozenset({list, tuple, dict})
# Searched for handles, with their subclasses; the first three are rebuilt
# with outputs in place of handles, the others refuse handles.
_SEARCHED: Final = (list, tuple, dict, set, frozenset, deque)
_UNORDERED: Final = (set, frozenset, deque)
# Common types of plain values: no need to ask isinstance(_SEARCHED).
_PLAIN: Final = frozenset({str, int, float, bool, bytes, type(None), complex})

# Kinds of edge, as scan reports them: >= 0 is the position of a top-level
# positional handle; NESTED (-1: a handle in kwargs or inside a container, see
# DAG._paths) and AFTER (-2: an after= edge, order only) mark the others. The
# DAG stores none of them per edge (see the columns in DAG). Defined in
# _native._shared.

_LEAVE: Final = object()  # marks the end of a container in _scan_nested


def copy_kwargs(kwargs: object, fn: Callable[..., Any], i: int, name: object) -> dict[str, Any]:
    """Check ``kwargs=`` of the task being added; return a private copy."""
    if not isinstance(kwargs, Mapping):
        raise TypeError(
            f"task {task_label(fn, i, name)}: kwargs= must be a mapping of keyword "
            f"arguments for fn, got {kwargs!r} ({type(kwargs).__name__})"
        )
    kw = dict(kwargs)
    for key in kw:
        if not isinstance(key, str):
            raise TypeError(
                f"task {task_label(fn, i, name)}: kwargs= keys must be str (keyword "
                f"argument names), got {key!r}"
            )
    return kw


def _foreign(
    handle: Handle[Any], fn: Callable[..., Any], i: int, name: object
) -> ForeignHandleError:
    """The error for *handle*, of another DAG, given to the task being added."""
    return ForeignHandleError(
        f"task {task_label(fn, i, name)}: {handle!r} belongs to another DAG; a task can "
        "only depend on tasks of its own DAG, so add both tasks to the same DAG"
    )


def scan(
    dag: DAG,
    args: tuple[Any, ...],
    kw: dict[str, Any] | None,
    fn: Callable[..., Any],
    i: int,
    name: object,
) -> tuple[tuple[Any, ...] | int, list[int], list[int] | None, tuple[tuple[Any, ...], ...] | None]:
    """Find the handles of a task's arguments: ``(stored args, data, pos, paths)``.

    The common case, handles only among the positional arguments, takes
    one pass and no per-task object; containers and kwargs take the
    general walk.
    """
    data: list[int] = []
    plain = False
    for a in args:
        t = type(a)
        if t is Handle:
            if a._dag is not dag and a not in dag:
                raise _foreign(a, fn, i, name)
            data.append(a._index)
        elif t not in _PLAIN and (t in _CONTAINERS or isinstance(a, _SEARCHED)):
            return _scan_nested(dag, args, kw, (fn, i, name))
        else:
            plain = True
    if kw and any(
        type(v) is Handle
        or (type(v) not in _PLAIN and (type(v) in _CONTAINERS or isinstance(v, _SEARCHED)))
        for v in kw.values()
    ):
        return _scan_nested(dag, args, kw, (fn, i, name))
    if not data:
        return args, data, data, None
    if plain:
        return args, data, [p for p, a in enumerate(args) if type(a) is Handle], None
    return len(data), data, None, None


def _scan_nested(
    dag: DAG,
    args: tuple[Any, ...],
    kw: dict[str, Any] | None,
    task: tuple[Callable[..., Any], int, object],
) -> tuple[tuple[Any, ...], list[int], list[int], tuple[tuple[Any, ...], ...] | None]:
    """``scan`` for arguments with containers or kwargs; *task* is ``(fn, i, name)``.

    Finds every handle in the arguments, depth first, as ``(path, task index)``.

    Iterative, so nesting depth is not limited by the recursion limit.
    Paths are built as linked ``(parent, key)`` pairs and spelled out only
    for handles, which keeps deep nesting linear. A handle where no output
    can be put (in a set, frozenset, deque or dict key) is a TypeError.
    """
    fn, i, name = task
    found: list[tuple[tuple[Any, ...], int]] = []
    on_path: set[int] = set()
    stack: list[tuple[Any, Any]] = [(kw, (None, 1))] if kw else []
    stack.append((args, (None, 0)))
    while stack:
        obj, link = stack.pop()
        t = type(obj)
        if obj is _LEAVE:
            on_path.discard(link)
        elif t is Handle:
            if obj._dag is not dag and obj not in dag:
                raise _foreign(obj, fn, i, name)
            found.append((_spell(link), obj._index))
        elif id(obj) in on_path:
            raise ValueError(
                f"task {task_label(fn, i, name)}: an argument contains itself (a "
                f"{t.__name__} at {_where(_spell(link))}); pass data without reference cycles"
            )
        elif t in _CONTAINERS or not isinstance(obj, _UNORDERED):
            on_path.add(id(obj))
            stack.append((_LEAVE, id(obj)))
            if t is dict or (t is not list and t is not tuple and isinstance(obj, dict)):
                for k in obj:
                    if type(k) not in _PLAIN and _holds_handle(k):
                        raise TypeError(
                            f"task {task_label(fn, i, name)}: the {t.__name__} at "
                            f"{_where(_spell(link))} has a Handle in the key {k!r}; a handle "
                            "is replaced by its output only as a value, so use it as a value "
                            "(or pass a list of (key, value) pairs)"
                        )
                pairs: Iterable[tuple[Any, Any]] = obj.items()
            else:
                pairs = enumerate(obj)
            stack.extend(
                reversed(
                    [
                        (v, (link, k))
                        for k, v in pairs
                        if type(v) is Handle
                        or (
                            type(v) not in _PLAIN
                            and (type(v) in _CONTAINERS or isinstance(v, _SEARCHED))
                        )
                    ]
                )
            )
        elif _holds_handle(obj):
            raise TypeError(
                f"task {task_label(fn, i, name)}: the {t.__name__} at {_where(_spell(link))} "
                "holds a Handle, but handles are looked for only in lists, tuples and dict "
                "values; put the handles in a list or tuple"
            )
    data = [j for _, j in found]
    if all(len(path) == 2 and path[0] == 0 for path, _ in found):
        return args, data, [path[1] for path, _ in found], None
    return args, data, [NESTED] * len(found), tuple(path for path, _ in found)


def _holds_handle(obj: object) -> bool:
    """Whether *obj* is a handle or holds one in a container of ``_SEARCHED``, at any depth."""
    if type(obj) is Handle:
        return True
    seen: set[int] = set()
    stack = [obj] if isinstance(obj, _SEARCHED) else []
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        for v in itertools.chain(x.keys(), x.values()) if isinstance(x, dict) else x:
            t = type(v)
            if t is Handle:
                return True
            if t not in _PLAIN and isinstance(v, _SEARCHED):
                stack.append(v)
    return False


def _where(path: tuple[Any, ...]) -> str:
    """A path as Python would read it: ``args[0]['k'][2]`` or ``kwargs['x'][1]``."""
    root = "args" if path[0] == 0 else "kwargs"
    return root + "".join(f"[{key!r}]" for key in path[1:])


def scan_after(
    dag: DAG,
    lookup: Callable[[str], int | None],
    after: object,
    fn: Callable[..., Any],
    i: int,
    name: object,
) -> list[int | str]:
    """Check ``after=``: task indices, and names that do not exist yet.

    *lookup* gives the index of the task a name is taken by, or None.
    """
    items = (after,) if isinstance(after, (str, Handle)) else after
    if not isinstance(items, Iterable):
        raise TypeError(
            f"task {task_label(fn, i, name)}: after= must be a handle, a task name, or "
            f"an iterable of them, got {after!r}"
        )
    out: list[int | str] = []
    for a in items:
        if type(a) is Handle:
            if a._dag is not dag and a not in dag:
                raise _foreign(a, fn, i, name)
            out.append(a._index)
        elif isinstance(a, str) and a:
            j = lookup(a)
            out.append(a if j is None else j)
        else:
            raise TypeError(
                f"task {task_label(fn, i, name)}: after= holds {a!r}; give handles or task names"
            )
    return out


def _spell(link: Any) -> tuple[Any, ...]:
    """A path from its linked ``(parent, key)`` form: ``(root, key, key, ...)``."""
    keys = []
    while link is not None:
        link, key = link
        keys.append(key)
    keys.reverse()
    return tuple(keys)


def rebuild(
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

    A subclass keeps its type: a namedtuple is rebuilt with ``type(t)._make``,
    another tuple subclass with ``type(t)(items)``, and a list or dict
    subclass (``OrderedDict``, ``defaultdict`` with its ``default_factory``)
    is copied with ``copy.copy``, which keeps its attributes.
    """
    roots: list[Any] = [list(args), dict(kwargs)]
    copies: dict[tuple[int, Any], Any] = {}  # (id of a copy, key) -> copy of its child
    # (parent, key, copy, tuple type), parents first
    tuples: list[tuple[Any, Any, list[Any], type[tuple[Any, ...]]]] = []
    for path, value in zip(paths, values, strict=True):
        node = roots[path[0]]
        for key in path[1:-1]:
            child = copies.get((id(node), key))
            if child is None:
                original = node[key]
                if type(original) is dict:
                    child = dict(original)
                elif type(original) is list:
                    child = list(original)
                elif isinstance(original, tuple):
                    child = list(original)
                    tuples.append((node, key, child, type(original)))
                elif isinstance(original, (list, dict)):
                    child = copy.copy(original)
                else:
                    raise TypeError(original)
                copies[id(node), key] = node[key] = child
            node = child
        if type(node[path[-1]]) is not Handle:
            raise LookupError(path)
        node[path[-1]] = value
    # A copy is made after its parent's, so in reverse every tuple is rebuilt
    # while its parent is still a list or dict, and after its own children.
    for parent, key, child, cls in reversed(tuples):
        if cls is tuple:
            parent[key] = tuple(child)
        elif hasattr(cls, "_make") and hasattr(cls, "_fields"):
            parent[key] = cls._make(child)
        else:
            parent[key] = cls(child)
    return tuple(roots[0]), roots[1]

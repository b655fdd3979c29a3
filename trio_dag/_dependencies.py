"""The dependencies given to ``DAG.add``, and how their outputs reach the task.

``scan`` finds the handles among a task's positional arguments, its kwargs
and the lists, tuples and dicts inside them, and says where each one sits: a
position in ``DAG._pos`` (or ``NESTED``), plus, for nested ones, a path in
``DAG._paths``. A path is ``(0, position, key, ...)`` into the positional
arguments or ``(1, name, key, ...)`` into the kwargs. ``scan_after`` checks
``after=``, whose edges pass no output (``AFTER``). At run time ``rebuild``
puts the outputs of the dependencies at the paths, for ``Snapshot.bind``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ._errors import ForeignHandleError
from ._handle import Handle
from ._names import task_label

if TYPE_CHECKING:
    from ._dag import DAG

__all__ = ["AFTER", "NESTED", "copy_kwargs", "rebuild", "scan", "scan_after"]

_CONTAINERS: Final = frozenset({list, tuple, dict})

# Kinds of edge, in DAG._pos: >= 0 is the position of a top-level positional
# handle; these two mark the others.
NESTED: Final = -1  # a handle in kwargs or inside a container: see DAG._paths
AFTER: Final = -2  # an after= edge: order only, no output passed

_LEAVE: Final = object()  # marks the end of a container in _find_handles


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
        if type(a) is Handle:
            if a._dag is not dag:
                raise _foreign(a, fn, i, name)
            data.append(a._index)
        elif type(a) in _CONTAINERS:
            return _scan_nested(dag, args, kw, fn, i, name)
        else:
            plain = True
    if kw and any(type(v) is Handle or type(v) in _CONTAINERS for v in kw.values()):
        return _scan_nested(dag, args, kw, fn, i, name)
    if not data:
        return args, data, data, None
    if plain:
        return args, data, [p for p, a in enumerate(args) if type(a) is Handle], None
    return len(data), data, None, None


def _scan_nested(
    dag: DAG,
    args: tuple[Any, ...],
    kw: dict[str, Any] | None,
    fn: Callable[..., Any],
    i: int,
    name: object,
) -> tuple[tuple[Any, ...], list[int], list[int], tuple[tuple[Any, ...], ...] | None]:
    found = _find_handles(dag, args, kw, fn, i, name)
    data = [j for _, j in found]
    if all(len(path) == 2 and path[0] == 0 for path, _ in found):
        return args, data, [path[1] for path, _ in found], None
    return args, data, [NESTED] * len(found), tuple(path for path, _ in found)


def _find_handles(
    dag: DAG,
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
            if obj._dag is not dag:
                raise _foreign(obj, fn, i, name)
            found.append((_spell(link), obj._index))
        elif id(obj) in on_path:
            raise ValueError(
                f"task {task_label(fn, i, name)}: an argument contains itself (a "
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


def scan_after(
    dag: DAG, after: object, fn: Callable[..., Any], i: int, name: object
) -> list[int | str]:
    """Check ``after=``: task indices, and names that do not exist yet."""
    items = (after,) if isinstance(after, (str, Handle)) else after
    if not isinstance(items, Iterable):
        raise TypeError(
            f"task {task_label(fn, i, name)}: after= must be a handle, a task name, or "
            f"an iterable of them, got {after!r}"
        )
    out: list[int | str] = []
    for a in items:
        if type(a) is Handle:
            if a._dag is not dag:
                raise _foreign(a, fn, i, name)
            out.append(a._index)
        elif isinstance(a, str) and a:
            j = dag._lookup(a)
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

"""Handle: the reference to one task of a DAG that ``DAG.add`` returns.

Immutable and small; passing one as an argument of another task makes a
dependency. It knows its DAG and index, and asks the DAG for its name.

With the compiled backend, ``Handle`` is its compiled twin
(``_native/_build.pyx``), the type the compiled builder makes without a
call: the same behaviour, with the index a C integer (48 bytes a handle
instead of 80, the int object included). The class below is the one type
checkers see, and the one used with the pure-Python backend. Either way it
is one class for the whole process (chosen at import, as the backend is).

``_dag`` and ``_index`` are this type's declared shape: the building modules
(``_dag``, ``_dependencies``) read them directly, because ``dag.add`` reads
them for every argument and the public properties would cost a call each.
Nothing else does; use ``dag`` and ``index``.

Both types are tracked by the cyclic GC, and must stay so: a handle refers
to its DAG and a DAG may refer to its handles (those in ``kwargs=``, and any
a task's function or argument holds), so an untracked handle would make
every such DAG immortal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, TypeVar, final

from . import _native

if TYPE_CHECKING:
    from ._dag import DAG

__all__ = ["Handle"]

T_co = TypeVar("T_co", covariant=True)


@final
class Handle(Generic[T_co]):
    """A task of a :class:`DAG`, as :meth:`DAG.add` returns it.

    Pass it as an argument of another task (also inside a list, tuple or
    dict, or in ``kwargs=``) to make that task depend on this one and
    receive its output; give it to ``after=`` to depend on it without the
    output; ask a :class:`RunReport` about it (``report[handle]``) for its
    output after a run. ``dag[name]`` gives the handle of a task by name.

    Immutable and hashable: handles are equal when they name the same task
    of the same DAG. For type checkers, ``Handle[bytes]`` is a task whose
    function returns bytes. See the user guide, *Graphs and handles*.
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
        """The task's name, unique in its DAG (given with ``name=``, or the default)."""
        return self._dag._name(self._index)

    def __setattr__(self, attr: str, value: object) -> NoReturn:
        raise AttributeError(f"Handle is immutable; cannot set {attr!r}")

    def __delattr__(self, attr: str) -> NoReturn:
        raise AttributeError(f"Handle is immutable; cannot delete {attr!r}")

    # type(self), not Handle: with the compiled backend the name Handle is the
    # compiled twin, and this class is only the pure-Python one.
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._dag is other._dag and self._index == other._index

    def __hash__(self) -> int:
        return hash((id(self._dag), self._index))

    def __repr__(self) -> str:
        return f"<Handle {self.name!r} (task {self._index})>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._dag, self._index))


_set_dag: Final[Callable[[Handle[Any], DAG], None]] = Handle.__dict__["_dag"].__set__
_set_index: Final[Callable[[Handle[Any], int], None]] = Handle.__dict__["_index"].__set__

# The pure-Python Handle, whichever backend is chosen (the tests compare the two).
PyHandle: Final = Handle

if not TYPE_CHECKING and _native.BACKEND.name == "cython":
    Handle = _native.BACKEND.build.Handle

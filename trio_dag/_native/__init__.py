"""The native backend: the compiled modules and their pure-Python twins, chosen once, as a whole.

A backend is a core (``Graph``, ``RunState``), the engine's loop over that
core's ``RunState``, graphlib's interner, the builder of ``DAG.add``'s
fast path, and the cache's per-task hashing. The compiled ones (``_core``,
``_loop``, ``_intern``, ``_build``, ``_keyhash`` in this package) are used
when all five import; if any one does not, or when the environment variable
``TRIO_DAG_NO_EXTENSIONS`` is non-empty, all five twins are (``_core_py``,
``_loop_py``, ``_intern_py``, ``_build_py``, ``_keyhash_py``): a compiled
core never meets a pure-Python loop.
With ``TRIO_DAG_REQUIRE_EXTENSION`` non-empty, a compiled module that does
not import is an ImportError that names it, so a silently failed build
cannot pass CI.

Everything outside this package takes its modules from :data:`BACKEND` (a
snapshot carries the backend it was frozen with, and the engine runs it on
that one), the state codes from :data:`core`, and the loop's codes (why it
handed a task back to the engine) from here; nothing else imports a compiled
module or a twin by name. Both halves take these codes from ``_shared``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from importlib import import_module
from types import ModuleType
from typing import Any, Final, Literal, final

import attrs

from ._shared import CHECKPOINT as CHECKPOINT
from ._shared import FAIRNESS_EVERY as FAIRNESS_EVERY
from ._shared import RAISED as RAISED
from ._shared import SLOW as SLOW
from ._shared import SUSPENDED as SUSPENDED

__all__ = [
    "BACKEND",
    "CHECKPOINT",
    "CORE",
    "FAIRNESS_EVERY",
    "RAISED",
    "SLOW",
    "SQLWRITER",
    "SUSPENDED",
    "Backend",
    "choose",
    "compiled",
    "core",
    "install_compiled_add",
    "python",
    "sqlwriter",
]

# Each part of a backend: its field, the compiled module and its pure-Python
# twin (relative to this package), and what errors call it. In the order the
# compiled modules cimport one another (_keyhash needs _build's Handle, _loop
# needs _core and _keyhash), so a module that does not import is the one named.
_PARTS: Final = (
    ("core", "_core", "_core_py", "core"),
    ("intern", "_intern", "_intern_py", "interner"),
    ("build", "_build", "_build_py", "builder"),
    ("keyhash", "_keyhash", "_keyhash_py", "cache key hasher"),
    ("loop", "_loop", "_loop_py", "loop"),
)


@final
@attrs.frozen
class Backend:
    """The modules one run is built on, chosen together: never a compiled core with a twin loop.

    ``name`` is ``"cython"`` or ``"python"``; ``core``, ``loop``, ``intern``,
    ``build`` and ``keyhash`` are the modules (``core.Graph``, ``loop.Loop``,
    ``intern.Interner``, ``build.Builder``, ``keyhash.task_keys``...).
    """

    name: Literal["cython", "python"]
    core: ModuleType = attrs.field(repr=lambda m: m.__name__)
    loop: ModuleType = attrs.field(repr=lambda m: m.__name__)
    intern: ModuleType = attrs.field(repr=lambda m: m.__name__)
    build: ModuleType = attrs.field(repr=lambda m: m.__name__)
    keyhash: ModuleType = attrs.field(repr=lambda m: m.__name__)


def _load(module: str) -> ModuleType:
    return import_module(f".{module}", __package__)


def python() -> Backend:
    """The pure-Python twins; they always import."""
    return Backend("python", **{field: _load(twin) for field, _, twin, _ in _PARTS})


def compiled() -> Backend:
    """The compiled modules. Raises ImportError naming the first one that does not import."""
    modules: dict[str, ModuleType] = {}
    for field, name, _, what in _PARTS:
        try:
            modules[field] = _load(name)
        except ImportError as exc:
            raise ImportError(
                f"the compiled {what} {__package__}.{name} did not import ({exc}); "
                "build it with `pip install .` and a C compiler",
                name=f"{__package__}.{name}",
            ) from exc
    return Backend("cython", **modules)


def choose(environ: Mapping[str, str] = os.environ) -> Backend:
    """The compiled backend when it imports, else the twins, as *environ* asks (see above)."""
    required = bool(environ.get("TRIO_DAG_REQUIRE_EXTENSION"))
    if environ.get("TRIO_DAG_NO_EXTENSIONS"):
        if required:
            raise ImportError(
                "TRIO_DAG_REQUIRE_EXTENSION and TRIO_DAG_NO_EXTENSIONS are both set; unset one"
            )
        return python()
    try:
        return compiled()
    except ImportError as exc:
        if required:
            raise ImportError(f"TRIO_DAG_REQUIRE_EXTENSION is set but {exc.msg}") from exc
        return python()


def sqlwriter(environ: Mapping[str, str] = os.environ) -> ModuleType | None:
    """The compiled SQLite cache writer (``_sqlwriter``), or None as *environ* asks.

    Not part of a :class:`Backend`: its twin is ``_cache_file``'s Python
    writer, and a ``Cache`` picks one each time it opens (the compiled one
    only when it finds SQLite's C API, see ``_sqlwriter.available``). None
    when ``TRIO_DAG_NO_EXTENSIONS`` is set, or when it does not import
    (then an ImportError if ``TRIO_DAG_REQUIRE_EXTENSION`` is set).
    """
    if environ.get("TRIO_DAG_NO_EXTENSIONS"):
        return None
    try:
        return _load("_sqlwriter")
    except ImportError as exc:
        if environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            raise ImportError(
                f"TRIO_DAG_REQUIRE_EXTENSION is set but the compiled cache writer "
                f"{__package__}._sqlwriter did not import ({exc})",
                name=f"{__package__}._sqlwriter",
            ) from exc
        return None


def install_compiled_add(cls: type, fast: Any, set_general: Callable[[Any], None]) -> None:
    """Make *fast*, a compiled module's ``add`` (a vectorcall callable), ``cls.add``.

    It takes the common call itself and hands every other, as it came, to
    the Python ``add`` it replaces, which *set_general* gives it; it shows
    that ``add``'s name, docstring and signature (``DAG.add``, ``Run.add``).
    """
    general = cls.__dict__["add"]
    set_general(general)
    functools.update_wrapper(fast, general)
    type.__setattr__(cls, "add", fast)


BACKEND: Backend = choose()
"""The backend DAGs are frozen with (tests patch this attribute to pick one)."""

SQLWRITER: Final = sqlwriter()
"""The compiled cache writer module, or None (see :func:`sqlwriter`)."""

CORE: Final = BACKEND.name
"""Which graph core is in use: ``"cython"`` (compiled) or ``"python"`` (its pure-Python twin).

Chosen once, at import: the twin when the compiled modules were not built
or do not import, or when the environment variable
``TRIO_DAG_NO_EXTENSIONS`` is set to a non-empty value. Both behave the
same; the twin schedules tasks more slowly.
"""

core: Final = BACKEND.core
"""The chosen core module, for its state codes (``core.SUCCEEDED``...; the same in both)."""

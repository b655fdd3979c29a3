"""Picks the compiled modules or their twins once, at import; other modules import them from here.

The compiled ``trio_dag._core`` is used when it imports. The pure-Python twin
``trio_dag._core_py`` is used when it does not, or when the environment
variable ``TRIO_DAG_NO_EXTENSIONS`` is non-empty. With
``TRIO_DAG_REQUIRE_EXTENSION`` non-empty, a missing compiled core is an
ImportError that says why, so a silently failed build cannot pass CI.
:func:`pick` makes the same choice for the other compiled modules.
"""

from __future__ import annotations

import os
from importlib import import_module
from types import ModuleType

__all__ = ["CORE", "core", "pick"]


def pick(compiled: str, twin: str, what: str) -> tuple[str, ModuleType]:
    """``("cython", trio_dag.<compiled>)``, or ``("python", trio_dag.<twin>)`` as above.

    *what* names the compiled module in the ImportError, e.g. ``"core"``.
    """
    if os.environ.get("TRIO_DAG_NO_EXTENSIONS"):
        if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            raise ImportError(
                "TRIO_DAG_REQUIRE_EXTENSION and TRIO_DAG_NO_EXTENSIONS are both set; unset one"
            )
        return "python", import_module(f"{__package__}.{twin}")
    try:
        return "cython", import_module(f"{__package__}.{compiled}")
    except ImportError as exc:
        if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            raise ImportError(
                f"TRIO_DAG_REQUIRE_EXTENSION is set but the compiled {what} "
                f"{__package__}.{compiled} did not import ({exc}); "
                "build it with `pip install .` and a C compiler"
            ) from exc
        return "python", import_module(f"{__package__}.{twin}")


CORE, core = pick("_core", "_core_py", "core")

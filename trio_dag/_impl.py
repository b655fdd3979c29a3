"""Picks the graph core once, at import; every other module imports it from here.

The compiled ``trio_dag._core`` is used when it imports. The pure-Python twin
``trio_dag._core_py`` is used when it does not, or when the environment
variable ``TRIO_DAG_NO_EXTENSIONS`` is non-empty. With
``TRIO_DAG_REQUIRE_EXTENSION`` non-empty, a missing compiled core is an
ImportError that says why, so a silently failed build cannot pass CI.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["CORE", "core"]


def _choose() -> tuple[str, ModuleType]:
    if os.environ.get("TRIO_DAG_NO_EXTENSIONS"):
        if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            raise ImportError(
                "TRIO_DAG_REQUIRE_EXTENSION and TRIO_DAG_NO_EXTENSIONS are both set; unset one"
            )
        from . import _core_py

        return "python", _core_py
    try:
        from . import _core  # type: ignore[attr-defined, unused-ignore]
    except ImportError as exc:
        if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            raise ImportError(
                "TRIO_DAG_REQUIRE_EXTENSION is set but the compiled core trio_dag._core "
                f"did not import ({exc}); build it with `pip install .` and a C compiler"
            ) from exc
        from . import _core_py

        return "python", _core_py
    return "cython", _core


CORE, core = _choose()

"""The chooser, ``trio_dag._impl``: which core the package imports, under which environment.

Each case imports trio_dag in a fresh interpreter with a controlled environment.
Putting None in ``sys.modules["trio_dag._core"]`` makes the compiled core fail to
import whether or not it is built; the same goes for trio_dag.graphlib's
interner, which is chosen the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import trio_dag

ROOT = Path(trio_dag.__file__).resolve().parent.parent
NO_COMPILED_CORE = "import sys; sys.modules['trio_dag._core'] = None; "
SHOW_CORE = "import trio_dag, trio_dag._impl as i; print(trio_dag.CORE, i.core.__name__)"
NO_COMPILED_INTERNER = "import sys; sys.modules['trio_dag._intern'] = None; "
SHOW_INTERNER = "import trio_dag, trio_dag.graphlib as g; print(trio_dag.CORE, g._intern.__name__)"


def run_python(code: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_DAG_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )


def core_of(code: str, **env_vars: str) -> str:
    result = run_python(code, **env_vars)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def import_error_of(code: str, **env_vars: str) -> str:
    result = run_python(code, **env_vars)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    return result.stderr


def test_no_extensions_picks_the_twin() -> None:
    assert core_of(SHOW_CORE, TRIO_DAG_NO_EXTENSIONS="1") == "python trio_dag._core_py"


def test_missing_compiled_core_falls_back_to_the_twin() -> None:
    assert core_of(NO_COMPILED_CORE + SHOW_CORE) == "python trio_dag._core_py"


def test_empty_env_vars_count_as_unset() -> None:
    code = NO_COMPILED_CORE + SHOW_CORE
    assert core_of(code, TRIO_DAG_REQUIRE_EXTENSION="") == "python trio_dag._core_py"
    stderr = import_error_of(code, TRIO_DAG_NO_EXTENSIONS="", TRIO_DAG_REQUIRE_EXTENSION="1")
    assert "did not import" in stderr


def test_require_extension_with_no_extensions_fails_to_import() -> None:
    stderr = import_error_of(
        "import trio_dag", TRIO_DAG_NO_EXTENSIONS="1", TRIO_DAG_REQUIRE_EXTENSION="1"
    )
    assert "TRIO_DAG_REQUIRE_EXTENSION and TRIO_DAG_NO_EXTENSIONS are both set" in stderr


def test_require_extension_without_compiled_core_fails_to_import() -> None:
    stderr = import_error_of(NO_COMPILED_CORE + "import trio_dag", TRIO_DAG_REQUIRE_EXTENSION="1")
    assert "TRIO_DAG_REQUIRE_EXTENSION is set but the compiled core trio_dag._core" in stderr


def test_compiled_core_is_picked_when_it_imports(compiled_core: ModuleType) -> None:
    assert core_of(SHOW_CORE) == "cython trio_dag._core"
    assert core_of(SHOW_CORE, TRIO_DAG_REQUIRE_EXTENSION="1") == "cython trio_dag._core"


def test_no_extensions_picks_the_twin_interner() -> None:
    assert core_of(SHOW_INTERNER, TRIO_DAG_NO_EXTENSIONS="1") == "python trio_dag._intern_py"


def test_missing_compiled_interner_falls_back_to_the_twin() -> None:
    assert core_of(NO_COMPILED_INTERNER + SHOW_INTERNER).endswith(" trio_dag._intern_py")


def test_require_extension_without_compiled_interner_fails_to_import(
    compiled_core: ModuleType,
) -> None:
    code = NO_COMPILED_INTERNER + "import trio_dag.graphlib"
    stderr = import_error_of(code, TRIO_DAG_REQUIRE_EXTENSION="1")
    assert "TRIO_DAG_REQUIRE_EXTENSION is set but the compiled interner trio_dag._intern" in stderr


def test_compiled_interner_is_picked_when_it_imports(compiled_core: ModuleType) -> None:
    """The interner is built with the core (setup.py); a build without it is stale."""
    assert core_of(SHOW_INTERNER) == "cython trio_dag._intern"

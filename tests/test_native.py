"""The chooser, ``trio_dag._native``: which backend the package imports, under which environment.

Each case imports trio_dag in a fresh interpreter with a controlled environment.
Putting None in ``sys.modules["trio_dag._native._core"]`` makes the compiled core fail to
import whether or not it is built; :func:`broken` makes any module raise
ImportError as a broken build does. The core, the loop and trio_dag.graphlib's
interner are chosen together, as one backend.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import attrs
import pytest

import trio_dag
from trio_dag import _native

ROOT = Path(trio_dag.__file__).resolve().parent.parent
NO_COMPILED_CORE = "import sys; sys.modules['trio_dag._native._core'] = None; "
SHOW_CORE = "import trio_dag, trio_dag._native as i; print(trio_dag.CORE, i.core.__name__)"
NO_COMPILED_INTERNER = "import sys; sys.modules['trio_dag._native._intern'] = None; "
SHOW_INTERNER = "import trio_dag, trio_dag.graphlib as g; print(trio_dag.CORE, g._intern.__name__)"
SHOW_BACKEND = (
    "import trio_dag._native as i\n"
    "b = i.BACKEND\n"
    "print(b.name, b.core.__name__, b.loop.__name__, b.intern.__name__)\n"
)
PYTHON_BACKEND = (
    "python trio_dag._native._core_py trio_dag._native._loop_py trio_dag._native._intern_py"
)
COMPILED_BACKEND = "cython trio_dag._native._core trio_dag._native._loop trio_dag._native._intern"
# A run through the engine: the fast loop, then a body that suspends.
RUN_A_DAG = (
    "import trio, trio_dag\n"
    "async def double(x):\n"
    "    await trio.sleep(0)\n"
    "    return 2 * x\n"
    "async def add(x, y):\n"
    "    return x + y\n"
    "dag = trio_dag.DAG()\n"
    "one = dag.add(add, 0, 1)\n"
    "h = dag.add(add, dag.add(double, one), one)\n"
    "print(trio.run(trio_dag.run, dag)[h])\n"
)
COMPILED_MODULES = [
    "trio_dag._native._core",
    "trio_dag._native._loop",
    "trio_dag._native._intern",
    "trio_dag._native._build",
    "trio_dag._native._keyhash",
]

# Not part of a backend: its twin is _cache_file's Python writer.
SQLWRITER = "trio_dag._native._sqlwriter"
SHOW_WRITER = (
    "import tempfile, trio_dag, trio_dag._native as i\n"
    "with tempfile.TemporaryDirectory() as d, trio_dag.Cache(d + '/c.db') as c:\n"
    "    print(i.BACKEND.name, i.SQLWRITER is None, type(c._writer).__name__)\n"
)


def broken(module: str) -> str:
    """Code that makes importing *module* raise ImportError, as a broken build would."""
    return (
        "import sys\n"
        "class Broken:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            raise ImportError(name + ': undefined symbol (simulated)')\n"
        "sys.meta_path.insert(0, Broken())\n"
    )


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
    assert core_of(SHOW_CORE, TRIO_DAG_NO_EXTENSIONS="1") == "python trio_dag._native._core_py"


def test_missing_compiled_core_falls_back_to_the_twin() -> None:
    assert core_of(NO_COMPILED_CORE + SHOW_CORE) == "python trio_dag._native._core_py"


def test_empty_env_vars_count_as_unset() -> None:
    code = NO_COMPILED_CORE + SHOW_CORE
    assert core_of(code, TRIO_DAG_REQUIRE_EXTENSION="") == "python trio_dag._native._core_py"
    stderr = import_error_of(code, TRIO_DAG_NO_EXTENSIONS="", TRIO_DAG_REQUIRE_EXTENSION="1")
    assert "did not import" in stderr


def test_require_extension_with_no_extensions_fails_to_import() -> None:
    stderr = import_error_of(
        "import trio_dag", TRIO_DAG_NO_EXTENSIONS="1", TRIO_DAG_REQUIRE_EXTENSION="1"
    )
    assert "TRIO_DAG_REQUIRE_EXTENSION and TRIO_DAG_NO_EXTENSIONS are both set" in stderr


def test_require_extension_without_compiled_core_fails_to_import() -> None:
    stderr = import_error_of(NO_COMPILED_CORE + "import trio_dag", TRIO_DAG_REQUIRE_EXTENSION="1")
    assert (
        "TRIO_DAG_REQUIRE_EXTENSION is set but the compiled core trio_dag._native._core" in stderr
    )


def test_compiled_core_is_picked_when_it_imports(compiled_core: ModuleType) -> None:
    assert core_of(SHOW_CORE) == "cython trio_dag._native._core"
    assert core_of(SHOW_CORE, TRIO_DAG_REQUIRE_EXTENSION="1") == "cython trio_dag._native._core"


def test_no_extensions_picks_the_twin_interner() -> None:
    assert (
        core_of(SHOW_INTERNER, TRIO_DAG_NO_EXTENSIONS="1") == "python trio_dag._native._intern_py"
    )


def test_missing_compiled_interner_falls_back_to_the_twin() -> None:
    assert core_of(NO_COMPILED_INTERNER + SHOW_INTERNER) == "python trio_dag._native._intern_py"


def test_require_extension_without_compiled_interner_fails_to_import(
    compiled_core: ModuleType,
) -> None:
    code = NO_COMPILED_INTERNER + "import trio_dag.graphlib"
    stderr = import_error_of(code, TRIO_DAG_REQUIRE_EXTENSION="1")
    assert (
        "TRIO_DAG_REQUIRE_EXTENSION is set but the compiled interner trio_dag._native._intern"
        in stderr
    )


def test_compiled_interner_is_picked_when_it_imports(compiled_core: ModuleType) -> None:
    """The interner is built with the core (setup.py); a build without it is stale."""
    assert core_of(SHOW_INTERNER) == "cython trio_dag._native._intern"


# -- one backend, chosen whole ---------------------------------------------------------


@pytest.mark.parametrize("module", COMPILED_MODULES)
def test_one_compiled_module_that_does_not_import_gives_the_python_backend_whole(
    compiled_core: ModuleType, module: str
) -> None:
    """A compiled core never meets a pure-Python loop (or interner): runs work.

    Before, a compiled core with a broken ``_loop`` ran on the twin loop,
    which calls methods the compiled RunState lacks: every run crashed.
    """
    assert core_of(broken(module) + SHOW_BACKEND + RUN_A_DAG).splitlines() == [
        PYTHON_BACKEND,
        "3",
    ]


@pytest.mark.parametrize("module", COMPILED_MODULES)
def test_require_extension_names_the_compiled_module_that_does_not_import(
    compiled_core: ModuleType, module: str
) -> None:
    stderr = import_error_of(broken(module) + "import trio_dag", TRIO_DAG_REQUIRE_EXTENSION="1")
    what = {
        "_core": "core",
        "_loop": "loop",
        "_intern": "interner",
        "_build": "builder",
        "_keyhash": "cache key hasher",
    }[module.rsplit(".", 1)[1]]
    assert f"TRIO_DAG_REQUIRE_EXTENSION is set but the compiled {what} {module} did not" in stderr
    assert f"{module}: undefined symbol (simulated)" in stderr


def test_the_compiled_backend_is_whole(compiled_core: ModuleType) -> None:
    assert core_of(SHOW_BACKEND + RUN_A_DAG).splitlines() == [COMPILED_BACKEND, "3"]


def test_no_extensions_gives_the_python_backend_whole() -> None:
    code = SHOW_BACKEND + RUN_A_DAG
    assert core_of(code, TRIO_DAG_NO_EXTENSIONS="1").splitlines() == [PYTHON_BACKEND, "3"]


def test_the_compiled_backend_needs_no_twin(compiled_core: ModuleType) -> None:
    """The compiled modules share their constants with the twins through
    ``_native._shared``, never by importing them, and the engine reads the
    loop's codes from ``_native``: with all five twins gone, the compiled
    backend imports and runs (graphlib and the testing toolkit too)."""
    twins = "".join(
        broken(f"trio_dag._native.{name}_py")
        for name in ("_core", "_loop", "_intern", "_build", "_keyhash")
    )
    code = twins + "import trio_dag.graphlib, trio_dag.testing\n" + SHOW_BACKEND + RUN_A_DAG
    assert core_of(code).splitlines() == [COMPILED_BACKEND, "3"]


def test_the_python_backend_needs_no_compiled_module() -> None:
    """Outside the chooser nothing imports a compiled module: with all three
    unimportable and TRIO_DAG_NO_EXTENSIONS set, the package imports and runs."""
    compiled = "".join(broken(module) for module in [*COMPILED_MODULES, SQLWRITER])
    code = compiled + "import trio_dag.graphlib, trio_dag.testing\n" + SHOW_BACKEND + RUN_A_DAG
    result = core_of(code, TRIO_DAG_NO_EXTENSIONS="1")
    assert result.splitlines() == [PYTHON_BACKEND, "3"]


def test_no_compiled_module_imports_a_twin() -> None:
    twin_import = re.compile(r"^\s*(from|import|cimport)\s+trio_dag\.[\w.]+_py\b", re.MULTILINE)
    sources = sorted((ROOT / "trio_dag" / "_native").glob("*.pyx"))
    assert len(sources) == 6  # the five of a backend, and the cache's writer
    for pyx in sources:
        assert not twin_import.search(pyx.read_text()), pyx.name


def test_the_cache_writer_is_compiled_unless_asked_or_unable(compiled_core: ModuleType) -> None:
    assert core_of(SHOW_WRITER) == "cython False CWriter"
    assert core_of(SHOW_WRITER, TRIO_DAG_PYTHON_WRITER="1") == "cython False Writer"
    assert core_of(SHOW_WRITER, TRIO_DAG_NO_EXTENSIONS="1") == "python True Writer"
    # Unlike a backend's module, a writer that does not import leaves the backend compiled.
    assert core_of(broken(SQLWRITER) + SHOW_WRITER) == "cython True Writer"
    # Or no SQLite C API found in the sqlite3 module's library.
    no_api = f"import {SQLWRITER} as w; w.available = lambda: False\n"
    assert core_of(no_api + SHOW_WRITER) == "cython False Writer"
    stderr = import_error_of(broken(SQLWRITER) + "import trio_dag", TRIO_DAG_REQUIRE_EXTENSION="1")
    assert f"the compiled cache writer {SQLWRITER} did not import" in stderr


def test_sqlwriter_honours_the_environment_it_is_given() -> None:
    assert _native.sqlwriter({"TRIO_DAG_NO_EXTENSIONS": "1"}) is None
    assert _native.sqlwriter({}) is _native.SQLWRITER


def test_choose_honours_the_environment_it_is_given() -> None:
    assert _native.choose({"TRIO_DAG_NO_EXTENSIONS": "1"}) == _native.python()
    with pytest.raises(ImportError, match="both set"):
        _native.choose({"TRIO_DAG_NO_EXTENSIONS": "1", "TRIO_DAG_REQUIRE_EXTENSION": "1"})


def test_choose_picks_the_compiled_backend_when_it_imports(compiled_core: ModuleType) -> None:
    assert _native.choose({}) == _native.compiled()
    assert _native.choose({"TRIO_DAG_REQUIRE_EXTENSION": "1"}).name == "cython"


def test_a_backend_is_a_frozen_value() -> None:
    backend = _native.python()
    assert repr(backend) == (
        "Backend(name='python', core=trio_dag._native._core_py, loop=trio_dag._native._loop_py, "
        "intern=trio_dag._native._intern_py, build=trio_dag._native._build_py, "
        "keyhash=trio_dag._native._keyhash_py)"
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        backend.name = "cython"  # type: ignore[misc]

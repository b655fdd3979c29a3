"""Fixtures shared by the whole suite: the graph core, once per implementation.

Every test that takes ``core`` runs twice, against the pure-Python twin and
against the compiled module; ``dag_core`` does the same for the whole backend
(core, loop and interner). The compiled half is skipped, with the reason,
only when the compiled module does not import; with ``TRIO_DAG_REQUIRE_EXTENSION``
set that is a failure instead, so a silently failed build cannot pass CI.
``--no-c-extensions`` leaves the compiled half out altogether. The
``interner`` fixture does the same for trio_dag.graphlib's interner.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import Any, TypeVar

import pytest
import trio
from hypothesis import settings

from trio_dag import _native

T = TypeVar("T")

# Our own "ci" replaces Hypothesis's built-in one (loaded when $CI is set),
# which derandomizes: we want CI to keep exploring new examples.
settings.register_profile(
    "ci",
    settings.get_profile("default"),
    deadline=None,
    derandomize=False,
    print_blob=True,
)
# Run it with -o faulthandler_timeout=0: its tests take longer than the
# 2-minute hang guard of pyproject.toml.
settings.register_profile(
    "long",
    settings.get_profile("ci"),
    max_examples=100 * settings.get_profile("default").max_examples,
)
# The hypothesis plugin loads --hypothesis-profile after this, when given.
settings.load_profile("ci")

C_EXTENSION = pytest.mark.c_extension


@dataclass(frozen=True)
class CoreImplementation:
    """One implementation of the graph core (or *what*); its module is imported on first use."""

    tag: str
    module_name: str
    compiled: bool
    what: str = "core"

    def __str__(self) -> str:
        return self.tag

    def load(self) -> ModuleType:
        return self._imported(self._import)

    def backend(self) -> _native.Backend:
        """The whole backend this implementation belongs to (core, loop, interner)."""
        return self._imported(_native.compiled if self.compiled else _native.python)

    def _import(self) -> ModuleType:
        try:
            return import_module(self.module_name)
        except ImportError as exc:
            if not self.compiled:
                raise
            raise ImportError(
                f"the compiled {self.what} {self.module_name} did not import ({exc}); "
                "build it with `python setup.py build_ext --inplace` or `pip install .`"
            ) from exc

    def _imported(self, load: Callable[[], T]) -> T:
        # A compiled module that does not import skips the test, or fails it
        # when TRIO_DAG_REQUIRE_EXTENSION is set.
        try:
            return load()
        except ImportError as exc:
            if not self.compiled:
                raise
            if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
                pytest.fail(f"TRIO_DAG_REQUIRE_EXTENSION is set but {exc}", pytrace=False)
            pytest.skip(str(exc))


PYTHON = CoreImplementation("python", "trio_dag._native._core_py", compiled=False)
CYTHON = CoreImplementation("cython", "trio_dag._native._core", compiled=True)
COMPILED = pytest.param(CYTHON, marks=C_EXTENSION, id="cython")
BOTH = [pytest.param(PYTHON, id="python"), COMPILED]


@pytest.fixture(scope="session", params=BOTH)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """The core module: ``trio_dag._native._core_py``, then ``trio_dag._native._core``."""
    implementation: CoreImplementation = request.param
    return implementation.load()


@pytest.fixture(scope="session", params=[COMPILED])
def compiled_core(request: pytest.FixtureRequest) -> ModuleType:
    """The compiled core alone, for tests that need it beside the twin."""
    implementation: CoreImplementation = request.param
    return implementation.load()


INTERNERS = [
    pytest.param(
        CoreImplementation(
            "python", "trio_dag._native._intern_py", compiled=False, what="interner"
        ),
        id="python-interner",
    ),
    pytest.param(
        CoreImplementation("cython", "trio_dag._native._intern", compiled=True, what="interner"),
        marks=C_EXTENSION,
        id="cython-interner",
    ),
]


@pytest.fixture(scope="session", params=INTERNERS)
def interner(request: pytest.FixtureRequest) -> ModuleType:
    """trio_dag.graphlib's interner: ``_native._intern_py``, then ``_native._intern``."""
    implementation: CoreImplementation = request.param
    return implementation.load()


def pytest_configure(config: pytest.Config) -> None:
    # When a Hypothesis test fails, its plugin imports libcst to suggest a patch;
    # old libcst releases warn on import, and filterwarnings=error would turn
    # the report of the failure into an INTERNALERROR that hides it.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )
    # A suite started in the background by a shell without job control
    # (`cmd &`, nohup) inherits SIGINT ignored; Python then never turns it
    # into KeyboardInterrupt, and the Ctrl-C tests would wait forever.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        help="leave out the tests of the compiled core (marked c_extension)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--no-c-extensions"):
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if item.get_closest_marker(C_EXTENSION.name) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=BOTH)
def dag_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Make every DAG frozen during the test use one backend; returns its core module.

    A snapshot carries the backend it was frozen with and its runs take the
    run state and the loop from it, so this runs the whole engine against
    each backend: the twins, then the compiled modules.
    """
    implementation: CoreImplementation = request.param
    backend = implementation.backend()
    monkeypatch.setattr(_native, "BACKEND", backend)
    return backend.core


def _only_cancelled(exc: BaseException) -> bool:
    """Whether *exc* is a ``trio.Cancelled``, or a group holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _failing_on_stray_cancelled(
    test: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    """*test*, failing when a Cancelled leaves it and no scope around it is cancelled.

    pytest-trio runs the test inside a nursery whose scope it cancels as the
    test leaves: that scope catches such a Cancelled, and the test passes.
    A Cancelled that leaves while a scope around the test is cancelled (a
    fixture crashed) is pytest-trio's own, and goes on.
    """

    @functools.wraps(test)
    async def guarded(**kwargs: object) -> None:
        try:
            await test(**kwargs)
        except BaseException as exc:
            if not _only_cancelled(exc) or trio.current_effective_deadline() == -math.inf:
                raise
            raise AssertionError(
                "a trio.Cancelled left the test while no cancel scope around it was "
                "cancelled (pytest-trio would count the test as passed, the rest of it "
                "never run); see its cause for where it came from"
            ) from exc

    guarded._stray_cancelled_guard = True  # type: ignore[attr-defined]
    return guarded


def _guarded(test: Callable[..., Any]) -> Callable[..., Any] | None:
    # None: nothing to guard (not async, or guarded already: the inner test
    # of a Hypothesis test is shared by its parametrized items).
    if not inspect.iscoroutinefunction(test) or getattr(test, "_stray_cancelled_guard", False):
        return None
    return _failing_on_stray_cancelled(test)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    # Before pytest-trio's own wrapper (tryfirst) turns the async test into a
    # sync one, which runs the guarded test inside trio.run.
    if isinstance(item, pytest.Function) and item.get_closest_marker("trio") is not None:
        hypothesis = getattr(item.obj, "hypothesis", None)
        if hypothesis is not None:
            guarded = _guarded(hypothesis.inner_test)
            if guarded is not None:
                hypothesis.inner_test = guarded
        else:
            guarded = _guarded(item.obj)
            if guarded is not None:
                item.obj = guarded
    return (yield)

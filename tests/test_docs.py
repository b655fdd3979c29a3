"""The documentation keeps its promises: every example runs, every public name is in the reference.

Each Markdown page (README.md and every ``docs/**/*.md``, found anew on each
run) is one test: its ```python blocks run in order in one namespace, as a
reader would type them, then every ``test_*`` function the page defined is
called. A block's code is compiled under the page's own path and line
numbers, so a traceback points into the page; it runs in a temporary
directory. Output goes in ```text blocks, shell commands in ```sh: those are
not run.

The reference (``docs/reference/*.rst``) is checked without building it:
every name in the ``__all__`` of a public module, and every public method and
property of the classes users call most, must be named by an autodoc
directive. The Sphinx build itself (``sphinx-build -W``) runs in ``.ci/run``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import signal
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest
import trio

import trio_dag

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"

# A reader runs an example in seconds; a block that takes this long has hung.
BLOCK_SECONDS = 30

FENCE = re.compile(
    r"^(?P<indent> *)(?P<ticks>`{3,})python[ \t]*\n(?P<body>.*?)^(?P=indent)(?P=ticks)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def _pages() -> list[Path]:
    pages = [ROOT / "README.md"]
    pages += sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)
    return pages


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else str(page)


def python_blocks(text: str) -> Iterator[tuple[int, str]]:
    """Each ```python block of *text*: the line its code starts on (from 1), and the code."""
    for match in FENCE.finditer(text):
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["body"].splitlines())
        yield text.count("\n", 0, match.start("body")) + 1, code


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise TimeoutError if the block still runs after *seconds*.

    The alarm acts as a Ctrl-C would (trio_dag lets KeyboardInterrupt out
    unwrapped): Trio delivers it where it is safe, so a hung run unwinds
    cleanly instead of being torn down from inside Trio's loop.
    """
    if not hasattr(signal, "setitimer"):  # Windows: no bound, rather than no test
        yield
        return
    expired = False

    def expire(signum: int, frame: FrameType | None) -> None:
        nonlocal expired
        expired = True
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except KeyboardInterrupt as interrupt:
        if not expired:
            raise
        raise TimeoutError(f"still running after {seconds} s") from interrupt
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_page(page: Path) -> int:
    """Run the examples of *page* (see the module docstring); return how many blocks ran."""
    text = page.read_text(encoding="utf-8")
    where = _name(page)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    blocks = 0
    for line, code in python_blocks(text):
        # Blank lines up to the block keep tracebacks on the page's own line numbers.
        compiled = compile("\n" * (line - 1) + code, str(page), "exec")
        _call(f"the ```python block of {where} starting at line {line}", exec, compiled, namespace)
        blocks += 1
    for key, value in list(namespace.items()):
        if key.startswith("test_") and callable(value):
            call = partial(trio.run, value) if inspect.iscoroutinefunction(value) else value
            _call(f"{key}(), defined by {where}", call)
    return blocks


def _call(what: str, fn: Callable[..., object], *args: object) -> None:
    """``fn(*args)``, bounded in time; what it raises says *what* raised it."""
    try:
        with _deadline(BLOCK_SECONDS, what):
            fn(*args)
    except BaseException as exc:
        exc.add_note(f"in {what}")
        raise


@pytest.mark.parametrize("page", _pages(), ids=_name)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a file an example writes lands here, not in the checkout
    run_page(page)


def test_examples_found() -> None:
    pages = {_name(p) for p in _pages()}
    assert {"README.md", "docs/index.md"} <= pages
    assert run_page(ROOT / "README.md") >= 1  # the Quickstart runs


def test_python_blocks_keep_their_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```python\nx = 1\n```\n\n- item\n\n  ```python\n  assert x == 2\n  ```\n",
        encoding="utf-8",
    )
    assert list(python_blocks(page.read_text(encoding="utf-8"))) == [
        (4, "x = 1"),
        (10, "assert x == 2"),
    ]
    with pytest.raises(AssertionError) as info:
        run_page(page)
    assert any("line 10" in note for note in info.value.__notes__)
    assert info.traceback[-1].lineno + 1 == 10  # pytest counts lines from 0
    assert str(info.traceback[-1].path) == str(page)


@pytest.mark.parametrize("define", ["def", "async def"])
def test_page_functions_are_called(tmp_path: Path, define: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        f"```python\n{define} test_it():\n    raise ValueError('called')\n```\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="called") as info:
        run_page(page)
    assert any("test_it()" in note for note in info.value.__notes__)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timer")
def test_a_hung_example_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "BLOCK_SECONDS", 0.2)
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nimport trio, trio_dag\n\n"
        "dag = trio_dag.DAG()\ndag.add(trio.sleep_forever)\ntrio_dag.run_sync(dag)\n```\n",
        encoding="utf-8",
    )
    with pytest.raises(TimeoutError) as info:
        run_page(page)
    assert any("line 2" in note for note in info.value.__notes__)


# The reference -----------------------------------------------------------------------------

PUBLIC_MODULES = ("trio_dag", "trio_dag.events", "trio_dag.testing", "trio_dag.graphlib")
# Every public method and property of these must have its own entry.
FULL_CLASSES = ("DAG", "Handle", "Run", "RunReport")
# The dunders a user calls through syntax: len(dag), h in report, report[h]...
PROTOCOL = ("__getitem__", "__contains__", "__len__", "__iter__", "__aiter__", "__call__")

DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?:py:)?(?P<kind>[a-z-]+):: *(?P<target>\S+)")
OPTION = re.compile(r"^ *:(?P<option>[a-z-]+):(?P<value>.*)$")
SCOPES = {"module", "currentmodule", "automodule"}
OBJECTS = {
    *(f"{auto}{kind}" for auto in ("", "auto") for kind in ("class", "exception", "function")),
    *(f"{auto}{kind}" for auto in ("", "auto") for kind in ("method", "property", "attribute")),
    "autodata",
    "data",
}
AUTO_MEMBERS = {"autoclass", "autoexception", "automodule"}


def _members(obj: object) -> list[str]:
    """The public members *obj* defines: its public names and the protocol dunders."""
    return [name for name in vars(obj) if not name.startswith("_") or name in PROTOCOL]


def documented(sources: dict[str, str]) -> dict[str, str]:
    """The dotted names the reST *sources* document, each with the file and line that does.

    Reads ``.. module::``/``currentmodule``/``automodule`` for the module,
    nests indented directives under the class before them, and expands
    ``:members:`` (a list, or every member with a docstring, also undocumented
    ones with ``:undoc-members:``) as autodoc would.
    """
    names: dict[str, str] = {}
    for source, text in sources.items():
        module = ""
        enclosing: list[tuple[int, str]] = []  # (indent, dotted name) of the directives around
        lines = text.splitlines()
        for number, line in enumerate(lines):
            directive = DIRECTIVE.match(line)
            if directive is None:
                continue
            where = f"{source}:{number + 1}"
            indent, kind = len(directive["indent"]), directive["kind"]
            target = directive["target"].split("(", 1)[0]
            while enclosing and enclosing[-1][0] >= indent:
                enclosing.pop()
            if kind in SCOPES:
                module = target
            elif kind not in OBJECTS:
                continue
            dotted = target
            if not (kind in SCOPES or target.startswith("trio_dag.")):
                dotted = f"{enclosing[-1][1] if enclosing else module}.{target}"
            names[dotted] = where
            if kind not in SCOPES:
                enclosing.append((indent, dotted))
            options = {}
            for following in lines[number + 1 :]:
                option = OPTION.match(following)
                if option is None:
                    break
                options[option["option"]] = option["value"].strip()
            if kind in AUTO_MEMBERS and "members" in options:
                for member in _listed(dotted, options):
                    names.setdefault(f"{dotted}.{member}", where)
    return names


def _listed(dotted: str, options: dict[str, str]) -> list[str]:
    """The members ``:members:`` documents on *dotted*, as autodoc picks them."""
    if options["members"]:
        return [member.strip() for member in options["members"].split(",")]
    obj = resolve(dotted)
    if isinstance(obj, ModuleType):
        return list(getattr(obj, "__all__", []))
    if not isinstance(obj, type):
        return []
    undoc = "undoc-members" in options
    return [m for m in _members(obj) if undoc or getattr(vars(obj)[m], "__doc__", None)]


def resolve(dotted: str) -> Any:
    """The object a dotted public name stands for (``trio_dag.DAG.add``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = inspect.getattr_static(obj, part) if isinstance(obj, type) else getattr(obj, part)
        return obj
    raise LookupError(dotted)


def required() -> list[str]:
    """Every dotted name the reference must document."""
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [f"{module_name}.{name}" for name in module.__all__]
    for cls in FULL_CLASSES:
        names += [f"trio_dag.{cls}.{member}" for member in _members(getattr(trio_dag, cls))]
    return names


def _reference_sources() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(REFERENCE.rglob("*.rst"))
    }


def missing_from(sources: dict[str, str]) -> list[str]:
    """The required names *sources* do not document, under any public path of theirs."""
    names = documented(sources)
    objects = []
    for name in names:
        with contextlib.suppress(LookupError, AttributeError):
            objects.append(resolve(name))
    missing = []
    for name in required():
        if name in names:
            continue
        obj = resolve(name)
        # trio_dag.events.TaskState is trio_dag.TaskState: one entry serves both.
        if (inspect.isclass(obj) or inspect.ismodule(obj)) and any(obj is o for o in objects):
            continue
        missing.append(name)
    return missing


def test_reference_documents_every_public_name() -> None:
    missing = missing_from(_reference_sources())
    assert not missing, (
        "not in the API reference (docs/reference/*.rst): "
        + ", ".join(missing)
        + "; add an autodoc directive (autoclass, autofunction, automethod...) for each"
    )


def test_reference_check_sees_a_missing_name() -> None:
    sources = _reference_sources()
    without = {
        source: re.sub(r"^ *\.\. automethod:: to_mermaid\n", "", text, flags=re.MULTILINE)
        for source, text in sources.items()
    }
    assert without != sources
    assert missing_from(without) == ["trio_dag.DAG.to_mermaid"]


def test_documented_reads_nesting_and_members() -> None:
    names = documented(
        {
            "x.rst": (
                ".. currentmodule:: trio_dag\n\n"
                ".. autoclass:: Run\n\n"
                "   .. automethod:: events\n"
                "      :async-for: event\n\n"
                ".. autoclass:: TaskTiming\n"
                "   :members:\n\n"
                ".. automodule:: trio_dag.events\n"
                "   :members:\n"
            )
        }
    )
    assert {
        "trio_dag.Run",
        "trio_dag.Run.events",
        "trio_dag.TaskTiming",
        "trio_dag.TaskTiming.duration",
        "trio_dag.events",
        "trio_dag.events.TaskStarted",
    } <= set(names)
    assert "trio_dag.Run.cancel" not in names
    assert "trio_dag.TaskTiming.start" not in names  # no docstring: autodoc leaves it out


def test_docs_extensions_import() -> None:
    """``pip install trio_dag[docs]`` gives every extension docs/conf.py names."""
    pytest.importorskip("sphinx")
    namespace: dict[str, Any] = {"__file__": str(DOCS / "conf.py")}
    saved = list(sys.path)
    try:
        exec(compile((DOCS / "conf.py").read_text(encoding="utf-8"), "conf.py", "exec"), namespace)
    finally:
        sys.path[:] = saved
    for extension in namespace["extensions"]:
        importlib.import_module(extension)
    importlib.import_module(namespace["html_theme"])

"""add and map give the same handles, names, columns and errors on every builder.

``DAG.add`` and ``DAG.map`` hand the common call to the backend's Builder
(``_native._build`` compiled, ``_native._build_py`` its twin) and take their
general path for everything else. A drawn sequence of calls, valid and
invalid, is made on three DAGs: one with the compiled builder, one with the
twin, and one whose builder always declines, so that every call takes the
general path, the behaviour the fast path must not change. After each call
the three must agree on its outcome (the new handle's index and name, or the
error's type and message) and on everything the DAG records; a refused call
records nothing.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_dag
from trio_dag import DAG, Handle, _native
from trio_dag._native import _build_py


class GeneralOnly(_build_py.Builder):
    """A builder that declines every call: add and map take their general path."""

    __slots__ = ()

    def add(self, *args: Any) -> None:
        return None

    def map(
        self, dag: object, fn: Callable[..., Any], iterable: Iterable[Any], add: Callable[..., Any]
    ) -> list[Any]:
        return [add(fn, item) for item in iterable]


def backends() -> dict[str, Any]:
    out: dict[str, Any] = {}
    python = _native.python()
    out["general"] = attrs.evolve(
        python, build=SimpleNamespace(Builder=GeneralOnly, Names=_build_py.Names)
    )
    out["python"] = python
    try:
        out["cython"] = _native.compiled()
    except ImportError as exc:
        if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            raise
        out["cython-missing"] = str(exc)
    return out


BACKENDS = backends()
VARIANTS = [name for name, b in BACKENDS.items() if not isinstance(b, str)]


@contextmanager
def built_with(backend: Any) -> Iterator[None]:
    saved = _native.BACKEND
    _native.BACKEND = backend
    try:
        yield
    finally:
        _native.BACKEND = saved


async def job(*args: object, **kwargs: object) -> None:
    return None


def sync_job(*args: object, **kwargs: object) -> None:
    return None


def gen_job() -> Iterator[int]:
    yield 1


@trio_dag.batched(max_size=4)
async def batch_job(items: list[Any]) -> list[Any]:
    return items


FNS: list[Any] = [job, sync_job, batch_job, gen_job, 42]


# A call is described by data alone; ("h", k) is the k-th handle the DAG
# returned so far (or a handle of another DAG when there is none), ("foreign",)
# a handle of another DAG, and the rest are taken as they are.
def _handle_ref() -> st.SearchStrategy[tuple[Any, ...]]:
    return st.one_of(st.tuples(st.just("h"), st.integers(0, 30)), st.just(("foreign",)))


PLAIN = st.sampled_from([1, "x", None, 2.5, b"b", 300, True])
ARG = st.one_of(
    _handle_ref(),
    PLAIN,
    st.lists(_handle_ref(), max_size=2).map(lambda xs: ("list", xs)),
    st.just(("dict",)),
    st.just(("set",)),
)
NAME = st.one_of(
    st.none(),
    st.sampled_from(["", "a", "b", "load-a", "job-3", "job-03", "sync_job-12", "-4", 5]),
    st.integers(0, 40).map(lambda k: f"t{k}"),
    st.integers(0, 12).map(lambda k: f"job-{k}"),
    st.integers(1, 6).map(lambda k: f"job-{k}"),
)
AFTER_ITEM = st.one_of(
    _handle_ref(),
    st.sampled_from(["a", "b", "load-a", "job-2", "job-9", "later", "", None, 7]),
    st.just("later"),
    st.integers(0, 40).map(lambda k: f"t{k}"),
)
AFTER = st.one_of(
    st.just(("default",)),
    st.lists(AFTER_ITEM, max_size=4).map(lambda xs: ("list", xs)),
    st.lists(AFTER_ITEM, max_size=3).map(lambda xs: ("tuple", xs)),
    st.lists(AFTER_ITEM, max_size=3).map(lambda xs: ("gen", xs)),
    AFTER_ITEM.map(lambda x: ("one", x)),
    st.just(("bad",)),
)
OPTIONS = (
    st.just({})
    | st.just({})
    | st.just({})
    | st.sampled_from(
        [
            {"priority": 0},
            {"priority": False},
            {"cost": 1.0},
            {"cost": True},
            {"retries": 0.0},
            {"retries": 1},
            {"tags": ("io",)},
            {"trigger": "all_done"},
            {"uses": {"db": 1}},
            {"kwargs": {"x": 1}},
            {"kwargs": {"x": ("h", 0)}},
            {"kwargs": None},
            {"timeout": None},
            {"run_in": "bogus"},
        ]
    )
)
ADD = st.fixed_dictionaries(
    {
        "op": st.just("add"),
        "fn": st.just(0) | st.just(0) | st.sampled_from(range(len(FNS))),
        "args": st.lists(ARG, max_size=4),
        "name": NAME,
        "after": AFTER,
        "options": OPTIONS,
    }
)
MAP = st.fixed_dictionaries(
    {
        "op": st.just("map"),
        "fn": st.sampled_from(range(len(FNS))),
        "items": st.lists(ARG, max_size=5),
        "options": st.sampled_from([{}, {}, {"retries": 1}, {"name": "x"}, {"priority": False}]),
    }
)
CALLS = st.lists(st.one_of(ADD, ADD, ADD, MAP), min_size=1, max_size=25)


_KINDS = frozenset({"h", "foreign", "list", "dict", "set"})


class Subject:
    """One DAG under one builder, with the handles it returned and a foreign handle."""

    def __init__(self, backend: Any) -> None:
        with built_with(backend):
            self.dag = DAG()
            other = DAG()
        self.foreign = other.add(job, name="foreign")
        self.handles: list[Handle[Any]] = []

    def value(self, spec: Any) -> Any:
        if not isinstance(spec, tuple) or not spec or spec[0] not in _KINDS:
            return spec
        kind = spec[0]
        if kind == "h":
            return self.handles[spec[1] % len(self.handles)] if self.handles else self.foreign
        if kind == "foreign":
            return self.foreign
        if kind == "list":
            return [self.value(x) for x in spec[1]]
        if kind == "dict":
            return {"k": self.handles[0] if self.handles else 1}
        if kind == "set":
            return {1, 2}
        raise AssertionError(spec)

    def after(self, spec: tuple[Any, ...]) -> dict[str, Any]:
        kind = spec[0]
        if kind == "default":
            return {}
        if kind == "bad":
            return {"after": 3.5}
        if kind == "one":
            return {"after": self.value(spec[1])}
        items = [self.value(x) for x in spec[1]]
        if kind == "tuple":
            return {"after": tuple(items)}
        if kind == "gen":
            return {"after": iter(items)}
        return {"after": items}

    def call(self, call: dict[str, Any]) -> Any:
        fn = FNS[call["fn"]]
        options = {
            k: (self.value(v) if k != "kwargs" or v is None else {"x": self.value(v["x"])})
            for k, v in call["options"].items()
        }
        try:
            if call["op"] == "add":
                args = [self.value(a) for a in call["args"]]
                name = {} if call["name"] is None else {"name": call["name"]}
                h = self.dag.add(fn, *args, **name, **self.after(call["after"]), **options)
                self.handles.append(h)
                return ("ok", h.index, h.name)
            items = [self.value(a) for a in call["items"]]
            hs = self.dag.map(fn, items, **options)
            self.handles.extend(hs)
            return ("ok", [(h.index, h.name) for h in hs])
        except Exception as exc:
            return ("error", type(exc).__name__, str(exc))

    def state(self) -> tuple[Any, ...]:
        dag = self.dag
        return (
            [getattr(fn, "__name__", fn) for fn in dag._fns],
            [self.plain(a) for a in dag._args],
            list(dag._opts),
            {i: self.plain(kw) for i, kw in dag._kwargs.items()},
            dag._off.tolist(),
            dag._src.tolist(),
            dict(dag._where),
            dict(dag._paths),
            dict(dag._index_of.items()),
            [dag._index_of.name_of(i) for i in range(len(dag))],
            dict(dag._pending),
            dag._all_done.tolist(),
            dag._batched.tolist(),
            dag._with_uses.tolist(),
            [dag._name(i) for i in range(len(dag))],
        )

    def plain(self, value: Any) -> Any:
        """*value* with handles as (index, own DAG?), comparable across DAGs."""
        if type(value) is Handle:
            return ("handle", value.index, value.dag is self.dag)
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, [self.plain(v) for v in value])
        if isinstance(value, dict):
            return ("dict", {k: self.plain(v) for k, v in value.items()})
        return value


CALLS_SEEN = [
    # A name given by hand that is the default name of a task added later.
    [
        {"op": "add", "fn": 0, "args": [], "name": "job-2", "after": ("default",), "options": {}},
        {"op": "add", "fn": 0, "args": [], "name": None, "after": ("default",), "options": {}},
        {"op": "add", "fn": 0, "args": [], "name": None, "after": ("default",), "options": {}},
        {"op": "map", "fn": 0, "items": [1, 2, 3], "options": {}},
    ],
    # Data edges, then after= names not yet known.
    [
        {"op": "add", "fn": 0, "args": [], "name": "a", "after": ("default",), "options": {}},
        {
            "op": "add",
            "fn": 0,
            "args": [("h", 0), 1],
            "name": "b",
            "after": ("list", ["later", ("h", 0), "a", "job-9"]),
            "options": {},
        },
        {"op": "add", "fn": 0, "args": [], "name": "later", "after": ("one", "b"), "options": {}},
        {"op": "map", "fn": 0, "items": [("h", 1), ("list", [("h", 0)])], "options": {}},
    ],
]


@pytest.mark.parametrize("calls", CALLS_SEEN)
def test_add_and_map_agree_on_known_sequences(calls: list[dict[str, Any]]) -> None:
    check_agreement(calls)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(CALLS)
def test_add_and_map_agree_on_every_builder(calls: list[dict[str, Any]]) -> None:
    check_agreement(calls)


def check_agreement(calls: list[dict[str, Any]]) -> None:
    subjects = {name: Subject(BACKENDS[name]) for name in VARIANTS}
    for call in calls:
        before = {name: s.state() for name, s in subjects.items()}
        outcomes = {name: s.call(call) for name, s in subjects.items()}
        states = {name: s.state() for name, s in subjects.items()}
        assert len({repr(o) for o in outcomes.values()}) == 1, (call, outcomes)
        assert len({repr(s) for s in states.values()}) == 1, (call, states)
        for name, outcome in outcomes.items():
            if outcome[0] == "error":
                assert states[name] == before[name], (call, name)


def test_the_compiled_builder_is_compared() -> None:
    if "cython" not in VARIANTS:
        if os.environ.get("TRIO_DAG_REQUIRE_EXTENSION"):
            pytest.fail(BACKENDS["cython-missing"])
        pytest.skip(BACKENDS["cython-missing"])
    assert BACKENDS["cython"].build.__name__ == "trio_dag._native._build"


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "general"])
def test_the_fast_path_is_taken(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The common calls are the builder's: they never reach the general path."""
    subject = Subject(BACKENDS[variant])
    dag = subject.dag
    first = dag.add(job)  # checks job: the general path
    builder = dag._b

    def general(*args: object) -> None:
        raise AssertionError("took the general path")

    monkeypatch.setattr(DAG, "_record", general)
    calls = [
        lambda: dag.add(job),
        lambda: dag.add(job, first, first),
        lambda: dag.add(job, after=[first]),
        lambda: dag.add(job, after=(first, "db")),
        lambda: dag.add(job, first, 1, "x", name="named"),
        lambda: dag.add(job, after="named"),
    ]
    for call in calls:
        n = len(dag)
        handle = call()
        assert handle.index == n
    assert builder.add(dag, job, (), None, {"x": 1}, (), *[None] * 11) is None
    assert dag["named"].index == 5 and dag.dependencies(dag["named"]) == (first,)
    assert dag._pending == {4: (4, "db")}
    assert [h.index for h in dag.map(job, [1, first, "y"])] == [7, 8, 9]


def test_add_keeps_its_signature_docstring_and_call_errors() -> None:
    """DAG.add may be the compiled builder's add (with the compiled backend): it shows
    the Python add's signature and docstring, and a malformed call fails as that add's."""
    dag = DAG()  # the first DAG installs the compiled add, when there is one
    add = DAG.__dict__["add"]
    general = getattr(add, "__wrapped__", add)
    if _native.CORE == "cython":
        assert add is _native.BACKEND.build.add and general is not add
    assert inspect.signature(add) == inspect.signature(general)
    assert (add.__doc__, add.__qualname__, add.__module__) == (
        general.__doc__,
        "DAG.add",
        "trio_dag",
    )
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        ((job,), {"bogus": 1}),
        ((), {"fn": job}),
        ((job,), {"kwargs": 3}),
        ((job,), {"name": 3}),
        ((job, 1), {"after": 3.5, "priority": 1}),
    ]
    for args, kwargs in calls:
        with pytest.raises(TypeError) as expected:
            general(dag, *args, **kwargs)
        with pytest.raises(TypeError) as got:
            dag.add(*args, **kwargs)
        assert str(got.value) == str(expected.value)
    assert len(dag) == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_names_given_by_either_path_are_found_by_index_in_any_order(variant: str) -> None:
    subject = Subject(BACKENDS[variant])
    dag = subject.dag
    names = []
    for k in range(30):
        # "job-<k+50>" reads as a default name: the general path records it.
        name = f"job-{k + 50}" if k % 3 == 0 else f"n{k}"
        h = dag.add(job, name=name) if k % 2 == 0 else dag.add(job)
        names.append(name if k % 2 == 0 else f"job-{k}")
        assert repr(h) == f"<Handle {names[-1]!r} (task {k})>"
        assert [dag._name(j) for j in range(k, -1, -1)] == names[::-1]
    dag.map(job, [1, 2])
    dag._truncate(20)
    assert [h.name for h in dag] == names[:20]
    dag.add(job, name="again")
    assert dag._name(20) == "again" and dag["again"].index == 20


@pytest.mark.parametrize("variant", ["python", "cython"])
def test_names_table_maps_both_ways_and_forgets_from_an_index(variant: str) -> None:
    """Names, the one table of given names, on either backend: a mapping
    {name: task} in the order given, the reverse by task, truncation, pickling."""
    import pickle

    backend = BACKENDS.get(variant)
    if backend is None or isinstance(backend, str):
        pytest.skip("the compiled core is not built")
    table = backend.build.Names()
    assert len(table) == 0 and not table and table.get("a") is None and "a" not in table
    given = {f"n{k}": 3 * k + 1 for k in range(5000)}  # grows the table many times
    for name, i in given.items():
        table.add(name, i)
    with pytest.raises(ValueError, match="taken"):
        table.add("n7", 99_999)
    assert len(table) == 5000 and dict(table.items()) == given and list(table) == list(given)
    assert all(table.get(name) == i and table[name] == i for name, i in given.items())
    assert table.get("n5000") is None and "n5000" not in table and "n4999" in table
    with pytest.raises(KeyError):
        table["missing"]
    assert table.get("".join(["n", "12"])) == 37  # equal, not the same object
    assert [table.name_of(i) for i in range(8)] == [None, "n0", None, None, "n1", None, None, "n2"]
    assert table.name_of(-1) is None and table.name_of(10**6) is None
    copy = pickle.loads(pickle.dumps(table))
    assert type(copy) is type(table) and dict(copy.items()) == given
    table.truncate(3 * 2500)  # tasks 7500 and on: names n2500 and on
    assert len(table) == 2500 and "n2500" not in table and table.get("n2499") == 7498
    assert table.name_of(7501) is None and table.name_of(7498) == "n2499"
    table.add("n2500", 7600)
    assert table["n2500"] == 7600 and table.name_of(7600) == "n2500"
    table.truncate(0)
    assert len(table) == 0 and table.get("n0") is None and table.name_of(1) is None


def test_add_takes_every_way_of_calling_it_alike() -> None:
    """DAG.add called unbound, bound, by a keyword built at run time (not the
    interned name: the general path takes it), or with kwargs=None: each
    records the same task as the plain call."""
    dag = DAG()
    first = dag.add(job, name="first")
    calls: list[Callable[[], Any]] = [
        lambda: dag.add(job, first, name="a", after=[first]),
        lambda: DAG.add(dag, job, first, name="b", after=[first]),
        lambda: dag.add(job, first, **{"".join(["na", "me"]): "c", "after": [first]}),
        lambda: dag.add(job, first, name="d", kwargs=None, after=[first]),
    ]
    for k, call in enumerate(calls):
        h = call()
        assert (h.index, h.name) == (k + 1, "abcd"[k])
        assert dag.dependencies(h) == (first,) and len(dag._edges(h.index)) == 2
        assert dag._args[h.index] == 1
    assert dag["c"].index == 3 and dag._index_of.name_of(4) == "d"
    bound = dag.add
    assert bound(job, after="first").index == 5 and len(dag) == 6

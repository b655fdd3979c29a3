"""Content keys (``_keys``): fingerprints, canonical hashing, output digests, task keys."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import uuid
from collections import OrderedDict, namedtuple
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_dag
from trio_dag import _native
from trio_dag._keys import (
    Uncacheable,
    args_digest,
    canonical_digest,
    decode_output,
    encode_output,
    fingerprint,
    output_digest,
    task_key,
)

ROOT = Path(trio_dag.__file__).parent.parent


def compiled(source: str, name: str = "f", filename: str = "<test>") -> Any:
    """The function *name* defined by *source*, in a fresh namespace."""
    namespace: dict[str, Any] = {"__name__": "tests.generated"}
    exec(compile(textwrap.dedent(source), filename, "exec"), namespace)
    return namespace[name]


# --- the same inputs give the same key, in any process ----------------------

KEY_SCRIPT = """
import functools
from trio_dag._keys import args_digest, fingerprint, output_digest, task_key

def body(xs, *, scale=2):
    return [x * scale for x in xs if x]

args = ({"b": {"x", "y", "z"}, "a": frozenset({"p", "q"})}, ["s", 1.5, None])
a = args_digest(args, {"scale": 3, "names": {"k1", "k2", "k3"}})
parts = [
    fingerprint(body).hex(),
    fingerprint(functools.partial(body, scale={"u", "v"})).hex(),
    a.digest.hex(),
    output_digest({"out": [1, 2.5, "x"]}).hex(),
    task_key(fingerprint(body), "v1", a.digest, [b"d" * 32], {"mtime": 3}).hex(),
]
print(" ".join(parts))
"""


def test_same_inputs_same_key_across_processes_and_hash_seeds() -> None:
    outputs = []
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", KEY_SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs.append(done.stdout.strip())
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0].split()) == 5


# --- what changes a key, and what does not ----------------------------------

FP = b"f" * 32
DEP = b"d" * 32


def key(
    fp: bytes = FP,
    version: str | None = None,
    args: tuple[Any, ...] = (1, "a"),
    deps: tuple[bytes, ...] = (DEP,),
    extra: object = None,
) -> bytes:
    return task_key(fp, version, args_digest(args, {}).digest, deps, extra)


def test_task_key_is_32_bytes_and_stable() -> None:
    assert len(key()) == 32
    assert key() == key()


def test_changed_literal_argument_changes_key() -> None:
    assert key(args=(1, "a")) != key(args=(2, "a"))
    assert key(args=(1, "a")) != key(args=(1.0, "a"))


def test_changed_version_changes_key() -> None:
    assert key(version=None) != key(version="1")
    assert key(version="1") != key(version="2")
    assert key(version="") != key(version=None)


def test_changed_function_body_changes_key() -> None:
    before = compiled("def f(x):\n    return x + 1\n")
    after = compiled("def f(x):\n    return x + 2\n")
    assert key(fp=fingerprint(before)) != key(fp=fingerprint(after))


def test_changed_upstream_output_changes_key() -> None:
    assert key(deps=(output_digest([1, 2]),)) != key(deps=(output_digest([1, 3]),))


def test_upstream_rerun_with_identical_output_keeps_key() -> None:
    first = output_digest({"rows": [1, 2, 3], "name": "x"})
    rerun = output_digest({"rows": [1, 2, 3], "name": "x"})
    assert key(deps=(first,)) == key(deps=(rerun,))


def test_extra_key_material_changes_key() -> None:
    assert key(extra=None) != key(extra={"mtime": 1.0})
    assert key(extra={"mtime": 1.0}) != key(extra={"mtime": 2.0})
    assert key(extra={"mtime": 1.0}) == key(extra={"mtime": 1.0})


def test_extra_key_material_must_be_canonical() -> None:
    with pytest.raises(Uncacheable, match="cache= function"):
        key(extra=object())


def test_dependency_order_and_count_count() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert key(deps=(a, b)) != key(deps=(b, a))
    assert key(deps=(a,)) != key(deps=(a, a))


# --- arguments with handles -------------------------------------------------


def test_args_digest_gives_each_dependency_a_slot_in_first_appearance_order() -> None:
    dag = trio_dag.DAG()
    h1 = dag.add(int, name="one")
    h2 = dag.add(int, name="two")
    a = args_digest((h2, [h1, h2]), {"z": h1})
    assert a.handles == (h2, h1)
    # The same shape with other handles hashes alike: the outputs go in by slot.
    assert args_digest((h1, [h2, h1]), {"z": h2}).digest == a.digest
    assert args_digest((h1, [h1, h2]), {"z": h2}).digest != a.digest


def test_kwargs_are_order_insensitive_and_differ_from_positional() -> None:
    assert args_digest((), {"a": 1, "b": 2}) == args_digest((), {"b": 2, "a": 1})
    assert args_digest((1,), {}).digest != args_digest((), {"a": 1}).digest


def test_canonical_digest_refuses_handles() -> None:
    dag = trio_dag.DAG()
    with pytest.raises(Uncacheable, match="task"):
        canonical_digest([dag.add(int)])


# --- canonical hashing of every supported type ------------------------------


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class OtherPoint:
    x: int
    y: int


@attrs.frozen
class Box:
    size: float
    tags: tuple[str, ...]


Pair = namedtuple("Pair", "a b")

# Every value here hashes differently from every other.
DISTINCT: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**100,
    -(2**100),
    1.0,
    0.0,
    -0.0,
    float("nan"),
    float("inf"),
    1 + 0j,
    "1",
    "",
    "é",
    b"1",
    b"",
    ...,
    (),
    [],
    (1,),
    [1],
    (1, 2),
    ((1,), 2),
    {},
    {1: 2},
    {2: 1},
    {"1": 2},
    {1},
    {1, 2},
    Colour.RED,
    Colour.BLUE,
    Level.LOW,
    Point(1, 2),
    Point(2, 1),
    OtherPoint(1, 2),
    Box(1.0, ("a",)),
    Box(1.0, ("b",)),
    Pair(1, 2),
    OrderedDict(a=1),
    pathlib.PurePosixPath("a/b"),
    pathlib.PureWindowsPath("a/b"),
    pathlib.PurePosixPath("a/c"),
    datetime.date(2024, 1, 2),
    datetime.datetime(2024, 1, 2),
    datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
    datetime.time(1, 2),
    datetime.timedelta(seconds=1),
    decimal.Decimal("1.5"),
    fractions.Fraction(3, 2),
    uuid.UUID(int=1),
    int,
    str,
    len,
    np.arange(3),
    np.arange(3, dtype=np.int32),
    np.arange(3).reshape(3, 1),
    np.arange(6).reshape(2, 3).T,
    np.float64(1.5),
    np.array(["a", "b"]),
]


def test_distinct_values_hash_differently() -> None:
    digests = [canonical_digest(v) for v in DISTINCT]
    clashes = {
        (repr(DISTINCT[i]), repr(DISTINCT[j]))
        for i in range(len(digests))
        for j in range(i)
        if digests[i] == digests[j]
    }
    assert clashes == set()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"x", "y", "z"}, {"z", "y", "x"}),
        ({1, 2}, frozenset({2, 1})),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"ab"), b"ab"),
        (float("nan"), float("-nan")),
        (pathlib.PurePosixPath("a//b"), pathlib.PurePosixPath("a/b")),
        (np.arange(6).reshape(2, 3).T, np.ascontiguousarray(np.arange(6).reshape(2, 3).T)),
        ([{"k": (1, 2.5, "s")}, None], [{"k": (1, 2.5, "s")}, None]),
    ],
)
def test_equal_values_hash_alike(a: object, b: object) -> None:
    assert canonical_digest(a) == canonical_digest(b)


class Opaque:
    pass


class TaggedList(list[int]):
    pass


@pytest.mark.parametrize(
    "value",
    [
        object(),
        Opaque(),
        threading.Lock(),
        [1, {"nested": Opaque()}],
        np.array([1, "a"], dtype=object),
        iter([1]),
    ],
)
def test_unsupported_values_are_uncacheable_naming_the_type(value: object) -> None:
    with pytest.raises(Uncacheable) as info:
        canonical_digest(value)
    assert info.value.reason
    assert str(info.value) == info.value.reason


def test_subclass_with_attributes_is_uncacheable() -> None:
    plain = TaggedList([1])
    assert canonical_digest(plain) != canonical_digest([1])
    plain.note = "x"  # type: ignore[attr-defined]
    with pytest.raises(Uncacheable, match="TaggedList"):
        canonical_digest(plain)


def test_cycles_are_uncacheable_not_a_crash() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(Uncacheable, match="cycle"):
        canonical_digest(loop)


# --- fingerprints -----------------------------------------------------------

SOURCE = '''
def f(x, *, scale=2):
    """Scale."""
    ys = [y * scale for y in range(x)]
    return sum(map(lambda y: y + 1, ys))
'''


def test_fingerprint_ignores_line_numbers_comments_and_file() -> None:
    spread = "ys = [\n        y * scale  # why\n        for y in range(x)\n    ]"
    one_line = "ys = [y * scale for y in range(x)]"
    moved = compiled("\n\n\n# a comment\n" + SOURCE.replace(one_line, spread))
    assert fingerprint(compiled(SOURCE)) == fingerprint(compiled(SOURCE, filename="<other>"))
    assert fingerprint(compiled(SOURCE)) == fingerprint(moved)


@pytest.mark.parametrize(
    "edited",
    [
        SOURCE.replace("y + 1", "y + 2"),  # in a lambda
        SOURCE.replace("y * scale", "y * scale * 1"),  # in a comprehension
        SOURCE.replace("scale=2", "scale=3"),  # a default
        SOURCE.replace("sum(", "max("),  # a name referenced
        SOURCE.replace('"""Scale."""', '"""Scale it."""'),  # the docstring: decided to count
        SOURCE.replace("def f", "async def f"),
    ],
)
def test_fingerprint_changes_with_the_code(edited: str) -> None:
    assert fingerprint(compiled(SOURCE)) != fingerprint(compiled(edited))


def test_fingerprint_includes_identity() -> None:
    renamed = compiled(SOURCE.replace("def f", "def g"), name="g")
    assert fingerprint(compiled(SOURCE)) != fingerprint(renamed)


def test_fingerprint_of_inner_functions_includes_captured_values() -> None:
    def make(n: int) -> Any:
        def add(x: int) -> int:
            return x + n

        return add

    assert fingerprint(make(1)) == fingerprint(make(1))
    assert fingerprint(make(1)) != fingerprint(make(2))


def test_fingerprint_of_a_recursive_inner_function_terminates() -> None:
    def make() -> Any:
        def countdown(n: int) -> int:
            return 0 if n == 0 else countdown(n - 1)

        return countdown

    assert fingerprint(make()) == fingerprint(make())


def test_fingerprint_of_partial_includes_its_arguments() -> None:
    def f(a: int, b: int = 0) -> int:
        return a + b

    base = fingerprint(functools.partial(f, 1, b=2))
    assert base == fingerprint(functools.partial(f, 1, b=2))
    assert base != fingerprint(functools.partial(f, 1, b=3))
    assert base != fingerprint(functools.partial(f, 2, b=2))
    assert base != fingerprint(f)


def test_uncanonical_captured_values_count_by_their_class() -> None:
    lock = threading.Lock()

    def f(x: int) -> int:
        with lock:
            return x

    assert len(fingerprint(f)) == 32
    with_opaque = fingerprint(functools.partial(f, Opaque()))
    assert with_opaque == fingerprint(functools.partial(f, Opaque()))


def test_fingerprint_of_batched_is_its_function() -> None:
    async def embed(items: list[int]) -> list[int]:
        return items

    a = trio_dag.batched(max_size=4)(embed)
    b = trio_dag.batched(max_size=8)(embed)
    assert fingerprint(a) == fingerprint(b) != fingerprint(embed)


class Scaler:
    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return x * self.k

    def method(self, x: int) -> int:
        return x


def test_fingerprint_of_callable_object_and_method_is_its_class_code() -> None:
    assert fingerprint(Scaler(1)) == fingerprint(Scaler(2))
    assert fingerprint(Scaler(1).method) == fingerprint(Scaler(2).method)
    assert fingerprint(Scaler(1)) != fingerprint(Scaler(1).method)


def test_fingerprint_of_builtins_and_classes() -> None:
    assert fingerprint(len) != fingerprint(sum)
    assert fingerprint(str.upper) != fingerprint(str.lower)
    assert fingerprint(Point) != fingerprint(OtherPoint)
    assert fingerprint(Scaler) == fingerprint(Scaler)


def test_fingerprint_is_memoized_per_function() -> None:
    f = compiled(SOURCE)
    assert fingerprint(f) is fingerprint(f)


# --- output digests and payloads --------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, 1, "text", [1, {"a": (2.5, b"x")}], Point(1, 2), np.arange(10), np.ones((3, 4))],
)
def test_encode_output_round_trips(value: Any) -> None:
    digest, payload = encode_output(value)
    assert digest == output_digest(value)
    assert isinstance(payload, bytes)
    back = decode_output(payload)
    if isinstance(value, np.ndarray):
        assert np.array_equal(back, value)
        assert back.dtype == value.dtype
        back[...] = 0  # writable, like the task's own output
    else:
        assert back == value


def test_output_digest_differs_by_value_and_type() -> None:
    assert output_digest(1) != output_digest(1.0)
    assert output_digest(np.arange(3)) != output_digest(np.arange(4))
    assert output_digest(np.zeros(3)) != output_digest(np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize("value", [lambda: 1, threading.Lock(), (x for x in [1])])
def test_unpicklable_outputs_are_uncacheable(value: object) -> None:
    with pytest.raises(Uncacheable, match="cannot be pickled"):
        output_digest(value)
    with pytest.raises(Uncacheable):
        encode_output(value)


def test_large_numpy_buffers_are_hashed_without_copies() -> None:
    big = np.ones(4_000_000)  # 32 MB
    tracemalloc.start()
    try:
        output_digest(big)
        canonical_digest(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_the_fast_argument_digests_match_args_digest(dag_core: ModuleType) -> None:
    from trio_dag._keys import ARGS_PERSON, slots_digest

    kh = _native.BACKEND.keyhash
    dag = trio_dag.DAG()
    a, b = dag.add(len, "a"), dag.add(len, "b")
    for args in [
        (),
        (a,),
        (a, b, a),
        (1, "x", None, True, False, -(2**63), 2**63 - 1, a, "é" * 100, b),
        ("\ud800", "", 0, -1),  # a lone surrogate: encoded with surrogatepass
        tuple(dag.add(len, str(i)) for i in range(70)),
        (1,) * 400,  # longer than the compiled module's stack buffer: hashed all the same
        ("é" * 127,) * 40,
    ]:
        expected = args_digest(args, {})
        got = kh.flat_args_digest(args, trio_dag.Handle, ARGS_PERSON)
        if got is None:
            assert len(args) >= 40  # a long tuple may be left to args_digest
            continue
        assert got[0] == expected.digest
        assert got[1] == tuple(h.index for h in expected.handles)
        slots = (
            [expected.handles.index(h) for h in args]
            if all(type(x) is trio_dag.Handle for x in args)
            else None
        )
        if slots is not None:
            assert slots_digest(slots) == expected.digest
    for args in [
        (2**63,),
        (-(2**63) - 1,),
        ("x" * 300,),
        (1.0,),
        ([a],),
        (b"y",),
        (1, decimal.Decimal(1)),
    ]:
        # Left to args_digest.
        assert kh.flat_args_digest(args, trio_dag.Handle, ARGS_PERSON) is None


def test_a_part_holds_its_dependencies_and_head_the_same_on_both_backends(
    dag_core: ModuleType,
) -> None:
    from trio_dag._native import _keyhash_py

    kh = _native.BACKEND.keyhash
    for prefix, deps in [(b"", ()), (b"head" * 20, (3,)), (b"h", (0, 2**40, 7, 7))]:
        part = kh.make_part(prefix, deps)
        assert part == _keyhash_py.make_part(prefix, deps)
        assert len(part) == 8 + 8 * len(deps) + len(prefix)
        assert kh.split_part(part) == (prefix, tuple(deps))
    for broken in [b"", b"\x01" + b"\x00" * 7, b"\x09" + b"\x00" * 15]:
        with pytest.raises(ValueError, match="not a part"):
            kh.split_part(broken)


def test_the_fast_task_keys_match_task_key(dag_core: ModuleType) -> None:
    from trio_dag._keys import KEY_PERSON, framed_digest, key_head

    kh = _native.BACKEND.keyhash
    fp = fingerprint(len)
    outs = [output_digest(i) for i in range(4)]
    digests: list[bytes | None] = [framed_digest(d) for d in outs] + [None]
    parts: list[bytes | None] = [None] * 20
    parts[10] = kh.make_part(key_head(fp, None) + b"A" * 32 + (0).to_bytes(8, "little"), ())
    parts[11] = kh.make_part(key_head(fp, "v2") + b"B" * 32 + (2).to_bytes(8, "little"), (2, 0))
    # no digest, then not plain
    parts[12] = kh.make_part(key_head(fp, None) + b"C" * 32 + (1).to_bytes(8, "little"), (4,))
    parts[13] = kh.make_part(key_head(fp, None) + b"D" * 32 + (1).to_bytes(8, "little"), (1,))
    plain = bytearray(20)
    plain[10] = plain[11] = plain[12] = 1
    asks = bytearray(b"\x01" * 20)
    keys: list[bytes] = []
    asking: list[int] = []
    rest = kh.task_keys([10, 11, 12, 13], parts, digests, plain, KEY_PERSON, keys, asking, asks)
    assert rest == [12, 13]
    assert asking == [10, 11]
    assert keys == [
        task_key(fp, None, b"A" * 32, []),
        task_key(fp, "v2", b"B" * 32, [outs[2], outs[0]]),
    ]
    assert [asks[v] for v in (10, 11, 12, 13, 14)] == [0, 0, 0, 0, 1]


def test_the_fast_hits_and_entries_match_encode_output(dag_core: ModuleType) -> None:
    from trio_dag._keys import OUTPUT_PERSON, framed_digest

    kh = _native.BACKEND.keyhash
    key = bytes(range(32))
    values: list[Any] = [7, "text", {"a": [1, 2.5]}, None, np.arange(5)]
    found = {}
    for i, value in enumerate(values):
        digest, payload = encode_output(value)
        got = kh.encode_entry(value, key, OUTPUT_PERSON)
        if isinstance(value, np.ndarray):
            assert got is None  # out-of-band buffers: left to encode_output
        else:
            assert got == (digest, key[8:] + digest + payload)
        found[bytes([i]) * 32] = (digest, payload)
    found[b"x" * 32] = (b"d" * 32, b"\x80 not a pickle")
    with pytest.raises(Uncacheable):
        encode_output(threading.Lock())
    with pytest.raises(TypeError):
        kh.encode_entry(threading.Lock(), key, OUTPUT_PERSON)
    n = len(values)
    asking = [*range(n), n, n + 1]
    keys = [*(bytes([i]) * 32 for i in range(n)), b"x" * 32, b"missing" + b"." * 25]
    outputs: list[Any] = [None] * (n + 2)
    wants = bytearray(n + 2)
    wants[1] = wants[4] = 1
    digests: list[bytes | None] = [None] * (n + 2)
    hit = bytearray(n + 2)
    missed: list[bytes | None] = [None] * (n + 2)
    hits = kh.take_hits(asking, keys, found, outputs, wants, digests, hit, missed, decode_output)
    assert hits == list(range(n))
    assert outputs[:4] == values[:4]
    assert np.array_equal(outputs[4], values[4])
    assert digests[1] == framed_digest(found[keys[1]][0])
    assert digests[4] == framed_digest(found[keys[4]][0])
    assert digests[0] is None and digests[2] is None
    assert list(hit) == [1] * n + [0, 0]
    assert missed == [None] * n + [b"x" * 32, keys[-1]]  # a payload that does not load is a miss


def test_a_runs_key_parts_are_the_same_on_both_backends_and_match_args_digest(
    dag_core: ModuleType,
) -> None:
    from trio_dag._caching import RunCache

    def step(*args: object, **kwargs: object) -> int:
        return 0

    dag = trio_dag.DAG()
    a = dag.add(step, 1, cache=True)
    b = dag.add(step, a, "x", None, True, cache=True, version="2")
    dag.add(step, a, b, a, cache=True)  # only handles
    dag.add(step, [a], cache=True)  # a nested handle
    dag.add(step, b, kwargs={"k": a}, cache=True)  # kwargs
    dag.add(step, 1.5, a, cache=True)  # a float: not flat
    dag.add(step, a, cache=lambda *args: 1)  # a cache= function
    dag.add(step, a)  # not cached
    dag.add(step, threading.Lock(), cache=True)  # uncacheable
    snap = dag._freeze()
    run = RunCache(snap, trio_dag.MemoryCache(), None)
    assert run.not_cached == [(8, run.not_cached[0][1])]
    assert "cannot be hashed" in run.not_cached[0][1]
    assert [i for i, part in enumerate(run.parts) if part is not None] == [0, 1, 2, 3, 4, 5, 6]
    assert run.count == 7 and run.asked == 8
    assert list(run.plain[:9]) == [1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert list(run.wants_digest[:3]) == [1, 1, 0]
    for i, part in enumerate(run.parts):
        if part is None:
            continue
        head, deps = run.kh.split_part(part)
        args, kwargs = snap.bind(i, [snap.handle(j) for j in range(snap.n)])
        expected = args_digest(args, kwargs)
        assert head[-40:-8] == expected.digest
        assert tuple(deps) == tuple(h.index for h in expected.handles)


def test_the_per_task_blake2b_matches_hashlib(dag_core: ModuleType) -> None:
    import hashlib

    from trio_dag._keys import ARGS_PERSON, KEY_PERSON, OUTPUT_PERSON

    kh = _native.BACKEND.keyhash
    rng = np.random.default_rng(17)
    for size in [0, 1, 63, 64, 127, 128, 129, 255, 256, 257, 1000, 4096, 70_000]:
        data = rng.bytes(size)
        for person in [b"", ARGS_PERSON, KEY_PERSON, OUTPUT_PERSON, b"0123456789abcdef"]:
            expected = hashlib.blake2b(data, digest_size=32, person=person).digest()
            assert kh.blake2b_digest(data, person) == expected
    with pytest.raises(ValueError, match="16 bytes"):
        kh.blake2b_digest(b"", b"seventeen bytes!!")


@pytest.mark.parametrize("whole", [True, False])
def test_the_fast_returned_matches_its_slow_path(dag_core: ModuleType, whole: bool) -> None:
    from trio_dag._keys import OUTPUT_PERSON, framed_digest

    kh = _native.BACKEND.keyhash
    keys: list[bytes | None] = [bytes([v]) * 32 for v in range(6)] + [None, None]
    pending_keys: list[bytes] = []
    pending: list[Any] = []
    pending_tasks: list[int] = []
    wants = bytearray([1, 0, 1, 1, 0, 1, 1, 0])
    digests: list[bytes | None] = [None] * 8
    flushed: list[int] = []
    slow: list[tuple[int, Any, bytes | None]] = []

    def flush() -> None:
        flushed.append(len(pending_keys))

    def slow_path(v: int, result: Any, key: bytes | None) -> str | None:
        slow.append((v, result, key))
        return "slow" if key is not None else None

    returned = kh.Returns(
        keys,
        pending_keys,
        pending,
        pending_tasks,
        wants,
        digests,
        OUTPUT_PERSON,
        whole,
        2,
        flush,
        slow_path,
    )
    lock = threading.Lock()
    array = np.arange(3)
    results = {0: 7, 1: "text", 2: lock, 3: array, 6: {"a": 1}, 7: 3}
    said = {v: returned(v, r) for v, r in results.items()}
    assert keys[:4] == [None] * 4 and keys[4:6] == [bytes([4]) * 32, bytes([5]) * 32]
    if whole:
        # In band: queued here; unpicklable or out of band: the slow path's.
        assert pending_keys == [keys_of(0), keys_of(1)]
        assert pending == [
            keys_of(v)[8:] + encode_output(results[v])[0] + encode_output(results[v])[1]
            for v in (0, 1)
        ]
        assert pending_tasks == [0, 1]
        assert flushed == [2]
        assert [(v, k) for v, _, k in slow] == [(2, keys_of(2)), (3, keys_of(3))]
        assert said == {0: None, 1: None, 2: "slow", 3: "slow", 6: None, 7: None}
        assert digests[0] == framed_digest(encode_output(7)[0])
    else:
        # Every entry is the slow path's (it makes CacheEntry objects).
        assert pending_keys == [] and flushed == []
        assert [(v, k) for v, _, k in slow] == [(v, keys_of(v)) for v in range(4)]
    # A task without a key: its digest when wanted, in either case.
    assert digests[6] == framed_digest(output_digest({"a": 1}))
    assert digests[7] is None  # not wanted
    assert digests[1] is None  # not wanted either
    with pytest.raises(IndexError):
        returned(8, 1)


def keys_of(v: int) -> bytes:
    return bytes([v]) * 32


def test_the_writers_rows_are_in_id_order_and_unpend_keeps_newer_entries(
    dag_core: ModuleType,
) -> None:
    kh = _native.BACKEND.keyhash
    ids = [5, -3, 5, 0, 2**63 - 1, -(2**63), -3]
    keys = [i.to_bytes(8, "little", signed=True) + bytes([n]) * 24 for n, i in enumerate(ids)]
    entries = [b"e%d" % n for n in range(len(ids))]
    values = kh.insert_rows(keys, entries, 1.5)
    # By id; two rows of one id in the order given (the later one replaces the earlier).
    order = sorted(range(len(ids)), key=ids.__getitem__)
    assert values == [x for n in order for x in (ids[n], entries[n], 1.5)]
    assert kh.insert_rows([], [], 0.0) == []
    with pytest.raises(ValueError):
        kh.insert_rows(keys, entries[:-1], 0.0)
    with pytest.raises(TypeError):
        kh.insert_rows([b"short"], [b""], 0.0)
    newer = b"newer"
    pending = dict(zip(keys, entries, strict=True))
    pending[keys[0]] = newer
    kh.unpend(pending, keys, entries)
    assert pending == {keys[0]: newer}


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=300),
        st.binary(max_size=4),
        st.tuples(st.integers()),
    )
)
def test_the_small_pickles_are_pickles_own_bytes(value: object) -> None:
    from trio_dag._native import _keyhash_py

    modules = [_keyhash_py]
    if _native.BACKEND.name == "cython":
        modules.append(_native.BACKEND.keyhash)
    expected = pickle.dumps(value, protocol=5)
    small = type(value) in (type(None), bool, float) or (
        type(value) is int and -(2**31) <= value < 2**31  # type: ignore[operator]
    )
    if type(value) is str:
        small = len(value.encode("utf-8", "surrogatepass")) < 256
    for kh in modules:
        got = kh.small_pickle(value)
        assert got == (expected if small else None)
    assert _native.BACKEND.keyhash.encode_entry(value, bytes(32), b"p")[1][56:] == expected

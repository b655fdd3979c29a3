"""Content keys of cached tasks: fingerprints, canonical hashing, output digests.

Pure functions, no I/O. Every digest is a 32-byte ``hashlib.blake2b``.

A task's **key** is the blake2b (personalised ``trio_dag.key``) of, in order::

    SCHEMA                       one byte: the layout below; bump it to orphan old keys
    fingerprint(fn)              32 bytes: identity and code of the function
    version                      tag + length + UTF-8 of ``version=``, or a None tag
    args_digest                  32 bytes: the literal arguments, each dependency a slot
    len(dep_digests), digests    each dependency's output digest, in slot order
    canonical_digest(extra)      32 bytes: the ``cache=`` function's extra key material

How the engine computes it (the split lets the costly part be done once):

1. when a cached task is frozen: ``fp = fingerprint(fn)`` and
   ``args = args_digest(args, kwargs)``; ``args.handles`` lists the task's
   dependencies in slot order (first appearance in a walk of the positional
   arguments, then the kwargs sorted by name);
2. when it becomes ready: ``task_key(fp, version, args.digest,
   [digest of h's output for h in args.handles], extra)``;
3. when a task finishes whose output a cached dependent needs:
   ``output_digest(output)``, or ``encode_output(output)`` when the task
   itself is cached (the digest and the payload to store); a cache hit gives
   the stored digest, so no output is hashed twice.

Decisions:

- **Fingerprints** hash the code, not the source: bytecode, constants
  (recursively into nested code objects: lambdas, comprehensions, inner
  functions), the names referenced, the variable names, argument counts and
  flags (``async def`` differs from ``def``), defaults and the values captured
  in closures, and the interpreter's ``cache_tag`` (bytecode differs between
  Python versions anyway). Line numbers, positions, the file name and
  comments are not part of it, so moving a function or editing comments keeps
  its key; a docstring is a constant of the code, so editing it changes the
  key (a conservative miss, never a stale hit). Globals are hashed by name,
  not value: a changed module-level constant, or an edit inside a helper the
  function calls, does not change the key; say so with ``version=``. The
  state of a bound method's or callable object's instance is not hashed
  either (its class's code is); a default, a value captured in a closure or
  a partial's argument that cannot be hashed canonically counts by its class
  alone. A builtin or C function is its module and
  qualified name. Fingerprints are memoized per function object, for the
  life of the object.
- **Canonical hashing** is type-tagged (``1``, ``1.0``, ``True`` and ``"1"``
  differ) and independent of ``PYTHONHASHSEED`` and the process: dicts, sets
  and frozensets hash their entries' digests sorted, so equal ones hash
  alike whatever their order; lists and tuples differ; a set and a
  frozenset of the same items hash alike, as they compare equal. Floats hash their
  ``repr`` (``-0.0`` differs from ``0.0``, every NaN is the same). A subclass
  of a supported builtin (a namedtuple, an ``OrderedDict``, an ``IntFlag``)
  hashes its class and its builtin value, provided it holds no other
  attributes. A ``PurePath`` is its flavour and text, not the file's
  contents: add the file's modification time with ``cache=``. Anything else
  raises :class:`Uncacheable` naming the type.
- **Output digests** hash the protocol-5 pickle, its out-of-band buffers
  read in place (a numpy array is not copied to be hashed). A pickle need
  not be the same in two processes (a set of strings pickles in hash order),
  so an equal output may get another digest: that costs an early cutoff,
  never a wrong result.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import pathlib
import pickle
import struct
import sys
import threading
import types
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, final

import attrs

from ._batching import Batched
from ._handle import Handle

__all__ = [
    "SCHEMA",
    "ArgsDigest",
    "Uncacheable",
    "args_digest",
    "canonical_digest",
    "decode_output",
    "encode_output",
    "fingerprint",
    "output_digest",
    "task_key",
]

SCHEMA: Final = 1
_SCHEMA_BYTE: Final = bytes((SCHEMA,))
DIGEST_SIZE: Final = 32
_MAX_DEPTH: Final = 200  # nesting deeper than this is most likely a cycle
_BIG: Final = 1 << 16  # bytes hashed in place rather than joined with the rest

_U64 = struct.Struct("<Q")
_u64 = _U64.pack
_i64 = struct.Struct("<q").pack
_I64_BOUND: Final = 1 << 63


class Uncacheable(Exception):
    """A value cannot be part of a key, or an output cannot be stored.

    ``reason`` says which value and why; the engine runs the task uncached
    and warns with it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# One blake2b per personalisation, copied for each hash: a copy costs less
# than making one (its parameters parsed and its state set up).
_TEMPLATES: dict[bytes, Any] = {}


def _hasher(person: bytes, data: Any = b"") -> Any:
    template = _TEMPLATES.get(person)
    if template is None:
        template = _TEMPLATES[person] = hashlib.blake2b(digest_size=DIGEST_SIZE, person=person)
    h = template.copy()
    if data:
        h.update(data)
    return h


# The personalisations of arguments' digests, keys and output digests; the
# per-task hashing of _native's keyhash takes them (it hashes with blake2b
# of the same parameters).
ARGS_PERSON: Final = b"trio_dag.args"
KEY_PERSON: Final = b"trio_dag.key"
OUTPUT_PERSON: Final = b"trio_dag.output"
_ARGS_HASH: Final = _hasher(ARGS_PERSON)
_KEY_HASH: Final = _hasher(KEY_PERSON)
_OUTPUT_HASH: Final = _hasher(OUTPUT_PERSON)


def _type_id(cls: type) -> bytes:
    """A class as its module and qualified name."""
    return f"{cls.__module__}:{cls.__qualname__}".encode()


# --- canonical hashing ------------------------------------------------------


@final
class _Encoder:
    """Builds a value's canonical encoding, tagging each part, and hashes it.

    Every variable-length part is length-prefixed and every container is
    counted, so two different values never share an encoding. With
    ``handles`` set, a :class:`Handle` is a slot: its index in that list.
    Parts are joined and hashed once, as one call to blake2b is most of the
    cost of a small value; a large buffer is hashed where it lies.
    """

    __slots__ = ("depth", "handles", "hasher", "parts", "person", "update")

    def __init__(self, person: bytes, handles: list[Handle[Any]] | None) -> None:
        self.person = person
        self.handles = handles
        self.depth = 0
        self.parts: list[Any] = []
        self.update = self.parts.append
        self.hasher: Any = None

    def bytes_(self, tag: bytes, data: Any) -> None:
        """A bytes-like part (its len in bytes), length-prefixed."""
        self.update(tag + _u64(len(data)))
        if len(data) < _BIG:
            self.update(data)
            return
        if self.hasher is None:
            self.hasher = _hasher(self.person)
        self.hasher.update(b"".join(self.parts))
        self.parts.clear()
        self.hasher.update(data)

    def digest(self) -> bytes:
        if self.hasher is None:
            return _hasher(self.person, b"".join(self.parts)).digest()  # type: ignore[no-any-return]
        self.hasher.update(b"".join(self.parts))
        return self.hasher.digest()  # type: ignore[no-any-return]

    def value(self, v: object) -> None:
        cls = type(v)
        encode = _EXACT.get(cls)
        if encode is not None:
            encode(self, v)
        else:
            self._other(v, cls)

    def enter(self) -> None:
        """Go one container deeper; a cycle ends here, not in a RecursionError."""
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise Uncacheable(f"a value nested more than {_MAX_DEPTH} levels deep (a cycle?)")

    def _other(self, v: Any, cls: type) -> None:
        if isinstance(v, Handle):
            self._handle(v)
        elif isinstance(v, enum.Enum):
            self.bytes_(b"E", _type_id(cls) + b"." + v.name.encode())
        elif attrs.has(cls):
            self._fields(cls, [(a.name, getattr(v, a.name)) for a in attrs.fields(cls)])
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            self._fields(cls, [(f.name, getattr(v, f.name)) for f in dataclasses.fields(v)])
        elif isinstance(v, pathlib.PurePath):
            flavour = b"w" if isinstance(v, pathlib.PureWindowsPath) else b"p"
            self.bytes_(b"P" + flavour, str(v).encode("utf-8", "surrogateescape"))
        elif isinstance(v, type):
            self.bytes_(b"C", _type_id(v))
        elif isinstance(v, _FUNCTIONS):
            self.update(b"R" + fingerprint(v))
        elif (np := sys.modules.get("numpy")) is not None and isinstance(
            v, np.ndarray | np.generic
        ):
            self._numpy(v, np)
        else:
            self._subclass(v, cls)

    def _subclass(self, v: Any, cls: type) -> None:
        for base in cls.__mro__[1:]:
            encode = _EXACT.get(base)
            if encode is not None:
                if getattr(v, "__dict__", None):
                    raise Uncacheable(
                        f"a {cls.__qualname__} ({base.__name__} with attributes) cannot be "
                        "hashed canonically"
                    )
                self.bytes_(b"S", _type_id(cls))
                encode(self, v)
                return
        raise Uncacheable(
            f"a value of type {cls.__module__}.{cls.__qualname__} cannot be hashed "
            "canonically; pass plain data (str, numbers, bytes, containers, dataclasses, "
            "attrs classes, enums, paths, dates) or give its key material with cache="
        )

    def _handle(self, h: Handle[Any]) -> None:
        if self.handles is None:
            raise Uncacheable(f"{h!r} is a task, not a value; only args_digest takes handles")
        handles = self.handles
        # Tested first: a failed index() formats the handle's repr, a cost per dependency.
        if h in handles:
            slot = handles.index(h)
        else:
            slot = len(handles)
            handles.append(h)
        self.update(b"H" + _u64(slot))

    def _fields(self, cls: type, fields: list[tuple[str, Any]]) -> None:
        self.bytes_(b"O", _type_id(cls))
        self.update(_u64(len(fields)))
        self.enter()
        for name, value in fields:
            self.bytes_(b"n", name.encode())
            self.value(value)
        self.depth -= 1

    def sequence(self, tag: bytes, v: Sequence[Any]) -> None:
        self.update(tag + _u64(len(v)))
        self.enter()
        exact = _EXACT
        for item in v:  # self.value, inlined: most arguments are flat tuples of scalars
            encode = exact.get(type(item))
            if encode is not None:
                encode(self, item)
            else:
                self._other(item, type(item))
        self.depth -= 1

    def unordered(self, tag: bytes, items: Iterable[Any], n: int) -> None:
        """Hash each item apart and feed the digests sorted: order does not count."""
        digests = []
        for item in items:
            sub = _Encoder(b"", self.handles)
            sub.depth = self.depth
            sub.enter()
            if isinstance(item, _Pair):
                sub.value(item.key)
                sub.value(item.value)
            else:
                sub.value(item)
            digests.append(sub.digest())
        digests.sort()
        self.update(tag + _u64(n))
        for d in digests:
            self.update(d)

    def _numpy(self, v: Any, np: Any) -> None:
        if v.dtype.hasobject:
            raise Uncacheable("a numpy array of Python objects cannot be hashed canonically")
        self.bytes_(b"N", repr(v.dtype.descr if v.dtype.fields else v.dtype.str).encode())
        if isinstance(v, np.generic):
            self.bytes_(b"v", v.tobytes())
            return
        self.update(b"s" + _u64(v.ndim) + b"".join(_u64(n) for n in v.shape))
        # A C-contiguous array is hashed in place, as bytes; any other is copied once.
        flat = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
        self.bytes_(b"b", flat)


@final
class _Pair:
    __slots__ = ("key", "value")

    def __init__(self, key: object, value: object) -> None:
        self.key = key
        self.value = value


def _int(e: _Encoder, v: int) -> None:
    if -_I64_BOUND <= v < _I64_BOUND:
        e.update(b"i" + _i64(v))
    else:
        e.bytes_(b"I", v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True))


def _str(e: _Encoder, v: str) -> None:
    data = v.encode("utf-8", "surrogatepass")
    if len(data) < 256:
        e.update(b"u" + _u64(len(data)) + data)
    else:
        e.bytes_(b"u", data)


def _tuple(e: _Encoder, v: tuple[Any, ...]) -> None:
    e.sequence(b"(", v)


def _list(e: _Encoder, v: list[Any]) -> None:
    e.sequence(b"[", v)


def _float(e: _Encoder, v: float) -> None:
    e.bytes_(b"f", repr(v).encode())


def _dict(e: _Encoder, v: Mapping[Any, Any]) -> None:
    e.unordered(b"d", (_Pair(k, x) for k, x in v.items()), len(v))


def _datetime(e: _Encoder, v: datetime.date | datetime.time) -> None:
    text = v.isoformat()
    if isinstance(v, datetime.datetime | datetime.time):
        text += f" fold={v.fold} tz={v.tzinfo!r}"
    e.bytes_(b"t", f"{type(v).__name__} {text}".encode())


_EXACT: Final[dict[type, Callable[[_Encoder, Any], None]]] = {
    type(None): lambda e, v: e.update(b"0"),
    bool: lambda e, v: e.update(b"T" if v else b"F"),
    int: _int,
    float: _float,
    complex: lambda e, v: e.bytes_(b"j", repr(v).encode()),
    str: _str,
    bytes: lambda e, v: e.bytes_(b"y", v),
    bytearray: lambda e, v: e.bytes_(b"y", v),
    memoryview: lambda e, v: e.bytes_(b"y", v.cast("B") if v.c_contiguous else v.tobytes()),
    tuple: _tuple,
    list: _list,
    dict: _dict,
    set: lambda e, v: e.unordered(b"{", v, len(v)),
    frozenset: lambda e, v: e.unordered(b"{", v, len(v)),
    type(...): lambda e, v: e.update(b"."),
    datetime.date: _datetime,
    datetime.datetime: _datetime,
    datetime.time: _datetime,
    datetime.timedelta: lambda e, v: e.bytes_(b"z", repr(v).encode()),
    decimal.Decimal: lambda e, v: e.bytes_(b"D", str(v).encode()),
    fractions.Fraction: lambda e, v: e.bytes_(b"Q", f"{v.numerator}/{v.denominator}".encode()),
    uuid.UUID: lambda e, v: e.bytes_(b"U", v.bytes),
    types.ModuleType: lambda e, v: e.bytes_(b"m", v.__name__.encode()),
}


def canonical_digest(value: object) -> bytes:
    """The digest of *value*'s canonical encoding; raise :class:`Uncacheable`."""
    e = _Encoder(b"trio_dag.value", None)
    e.value(value)
    return e.digest()


@final
@attrs.frozen
class ArgsDigest:
    """A task's literal arguments hashed, with a slot for each dependency.

    ``handles`` are the dependencies in slot order; their output digests go
    to :func:`task_key` in that order.
    """

    digest: bytes
    handles: tuple[Handle[Any], ...]


def args_digest(args: Sequence[Any], kwargs: Mapping[str, Any]) -> ArgsDigest:
    """Hash a task's arguments, each handle (also nested) a dependency slot.

    Raise :class:`Uncacheable` when an argument cannot be hashed canonically.
    """
    handles: list[Handle[Any]] = []
    e = _Encoder(b"trio_dag.args", handles)
    e.sequence(b"(", args)
    e.update(b"k" + _u64(len(kwargs)))
    for name in sorted(kwargs):
        e.bytes_(b"n", name.encode())
        e.value(kwargs[name])
    return ArgsDigest(e.digest(), tuple(handles))


_ARGS_TAIL: Final = b"k" + _u64(0)  # no kwargs
_SLOTS: Final = [b"H" + _u64(k) for k in range(64)]  # the first slots, encoded


def slots_digest(slots: Sequence[int]) -> bytes:
    """``args_digest(args, {}).digest`` of arguments that are all handles:
    *slots* gives each argument's slot (its handle's first appearance).

    The same for every task with the same slots, whatever its handles.
    """
    parts = [b"(" + _u64(len(slots))]
    for k in slots:
        parts.append(_SLOTS[k] if k < 64 else b"H" + _u64(k))
    parts.append(_ARGS_TAIL)
    return bytes(_hasher(b"trio_dag.args", b"".join(parts)).digest())


def key_head(fingerprint: bytes, version: str | None) -> bytes:
    """What every key of *fingerprint* and *version* starts with (see :func:`task_key`)."""
    if version is None:
        return _SCHEMA_BYTE + fingerprint + b"0"
    data = version.encode()
    return _SCHEMA_BYTE + fingerprint + b"u" + _u64(len(data)) + data


def framed_digest(digest: bytes) -> bytes:
    """An output digest as :func:`task_key` lays it out among the dependencies'."""
    return _u64(len(digest)) + digest


def extra_tail(extra: object) -> bytes:
    """How :func:`task_key` ends for the ``cache=`` function's *extra* material."""
    if extra is None:
        return b"0"
    try:
        return b"x" + canonical_digest(extra)
    except Uncacheable as exc:
        raise Uncacheable(f"the cache= function's key material: {exc.reason}") from None


def key_of(body: bytes) -> bytes:
    """The key whose layout (see :func:`task_key`) is *body*."""
    h = _KEY_HASH.copy()
    h.update(body)
    return h.digest()  # type: ignore[no-any-return]


# --- fingerprints -----------------------------------------------------------

_FUNCTIONS: Final = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    functools.partial,
    Batched,
)

_memo: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
# The ids of the functions this thread is fingerprinting: a function whose
# closure holds itself (a recursive inner function) is hashed by name the
# second time.
_local = threading.local()


def fingerprint(fn: Callable[..., Any]) -> bytes:
    """The identity and code of *fn*, as a 32-byte digest, memoized per object.

    See the module docstring for what is hashed. Raise :class:`Uncacheable`
    when a partial's arguments, a default or a captured value cannot be
    hashed canonically.
    """
    try:
        return _memo[fn]
    except (KeyError, TypeError):
        pass
    active: set[int] = _local.__dict__.setdefault("active", set())
    if id(fn) in active:
        return _name_only(fn)
    active.add(id(fn))
    try:
        e = _Encoder(b"trio_dag.fn", None)
        e.bytes_(b"I", sys.implementation.cache_tag.encode())
        _fingerprint_into(e, fn)
        digest = e.digest()
    finally:
        active.discard(id(fn))
    try:
        _memo[fn] = digest
    except TypeError:  # not weak-referenceable or not hashable: computed each time
        pass
    return digest


def _name_only(fn: object) -> bytes:
    return bytes(_hasher(b"trio_dag.self", _callable_name(fn)).digest())


def _callable_name(fn: object) -> bytes:
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{qualname}".encode()


def _fingerprint_into(e: _Encoder, fn: object) -> None:
    if isinstance(fn, types.FunctionType):
        e.bytes_(b"F", _callable_name(fn))
        _code_into(e, fn.__code__)
        _captured_into(e, fn.__defaults__ or ())
        _captured_into(e, sorted((fn.__kwdefaults__ or {}).items()))
        _captured_into(e, [_cell(c) for c in fn.__closure__ or ()])
    elif isinstance(fn, functools.partial):
        e.update(b"p" + fingerprint(fn.func))
        _captured_into(e, fn.args)
        _captured_into(e, sorted(fn.keywords.items()))
    elif isinstance(fn, Batched):
        e.update(b"B" + fingerprint(fn.fn))
    elif isinstance(fn, types.MethodType):
        # The instance's class, not its state: see the module docstring.
        owner = fn.__self__ if isinstance(fn.__self__, type) else type(fn.__self__)
        e.bytes_(b"M", _type_id(owner))
        e.update(fingerprint(fn.__func__))
    elif isinstance(fn, type):
        e.bytes_(b"C", _type_id(fn))
        for name in ("__new__", "__init__"):
            member = fn.__dict__.get(name)
            if isinstance(member, types.FunctionType | staticmethod):
                e.update(fingerprint(getattr(fn, name)))
    elif isinstance(fn, _FUNCTIONS):
        e.bytes_(b"c", _callable_name(fn))
    else:
        if not callable(fn):
            raise Uncacheable(f"{fn!r} is not callable")
        call = type(fn).__call__
        e.bytes_(b"o", _type_id(type(fn)))
        e.update(fingerprint(call))


def _cell(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell: a name bound later in the enclosing function
        return None


def _captured_into(e: _Encoder, values: Sequence[object]) -> None:
    """Hash the values a function carries: defaults, closures, a partial's arguments.

    They are part of the function, like a callable object's state: one that
    cannot be hashed canonically counts by its class alone.
    """
    e.update(b"c" + _u64(len(values)))
    for v in values:
        try:
            e.update(b"v" + canonical_digest(v))
        except Uncacheable:
            e.bytes_(b"t", _type_id(type(v)))


def _code_into(e: _Encoder, code: types.CodeType) -> None:
    e.bytes_(b"x", code.co_code)
    e.update(
        _u64(code.co_argcount)
        + _u64(code.co_posonlyargcount)
        + _u64(code.co_kwonlyargcount)
        + _u64(code.co_flags)
    )
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        e.sequence(b"(", names)
    e.update(b"K" + _u64(len(code.co_consts)))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            e.bytes_(b"q", const.co_qualname.encode())
            _code_into(e, const)
        else:
            e.value(const)


# --- keys -------------------------------------------------------------------


def task_key(
    fingerprint: bytes,
    version: str | None,
    args_digest: bytes,
    dep_digests: Sequence[bytes],
    extra: object = None,
) -> bytes:
    """A task's cache key, laid out as the module docstring says.

    *fingerprint* is :func:`fingerprint` of the function, *args_digest*
    ``args_digest(...).digest``, *dep_digests* the output digests of
    ``args_digest(...).handles``, in order; *extra* is the value the task's
    ``cache=`` function returned (None when it has none). Raise
    :class:`Uncacheable` when *extra* cannot be hashed canonically.
    """
    parts = [key_head(fingerprint, version), args_digest, _u64(len(dep_digests))]
    parts += [framed_digest(d) for d in dep_digests]
    parts.append(extra_tail(extra))
    return key_of(b"".join(parts))


# --- outputs ----------------------------------------------------------------

# A payload is a pickle alone (starts with b"\x80", pickle's PROTO opcode),
# or b"B", the count of out-of-band buffers and their lengths, the pickle's
# length, the pickle, then the buffers.
_FRAMED: Final = b"B"


def _pickled(value: object) -> tuple[bytes, list[pickle.PickleBuffer]]:
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:  # pickle raises many types: TypeError, PicklingError, ...
        raise Uncacheable(
            f"the output ({type(value).__qualname__}) cannot be pickled: {exc}"
        ) from None
    return data, buffers


def _digest(data: bytes, buffers: list[pickle.PickleBuffer]) -> bytes:
    h = _OUTPUT_HASH.copy()
    h.update(data)
    if not buffers:
        return bytes(h.digest())
    for buf in buffers:
        raw = buf.raw()  # a flat view of the buffer's memory: hashed, not copied
        h.update(_u64(raw.nbytes))
        h.update(raw)
    return bytes(h.digest())


def output_digest(value: object) -> bytes:
    """The digest of an output's protocol-5 pickle; raise :class:`Uncacheable`."""
    return _digest(*_pickled(value))


def encode_output(value: object) -> tuple[bytes, bytes]:
    """``(digest, payload)`` of an output: its digest and the bytes to store.

    Raise :class:`Uncacheable` when it cannot be pickled. :func:`decode_output`
    turns the payload back into the value.
    """
    data, buffers = _pickled(value)
    digest = _digest(data, buffers)
    if not buffers:
        return digest, data
    raws = [b.raw() for b in buffers]
    header = _FRAMED + _u64(len(raws)) + b"".join(_u64(r.nbytes) for r in raws)
    return digest, b"".join([header, _u64(len(data)), data, *raws])


def decode_output(payload: bytes) -> object:
    """The value :func:`encode_output` made *payload* of."""
    if payload[:1] != _FRAMED:
        return pickle.loads(payload)
    view = memoryview(payload)
    (n,) = _U64.unpack_from(view, 1)
    lengths = [_U64.unpack_from(view, 9 + 8 * i)[0] for i in range(n)]
    at = 9 + 8 * n
    (size,) = _U64.unpack_from(view, at)
    at += 8
    data = view[at : at + size]
    at += size
    buffers = []
    for length in lengths:
        # Copied, so the value is writable like the one the task returned.
        buffers.append(bytearray(view[at : at + length]))
        at += length
    return pickle.loads(data, buffers=buffers)

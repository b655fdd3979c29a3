"""The cache of one run: the keys of its cached tasks, batched lookups, stores, output digests.

The engine makes a :class:`RunCache` when a run has ``cache=`` and calls it
at four points, so that it holds no cache logic of its own:

1. at the start, :class:`RunCache` fingerprints each task of the run that
   asked for the cache (``cache=`` of ``DAG.add``) and hashes its literal
   arguments, each dependency a slot (``_keys.args_digest``); a task whose
   arguments cannot be hashed runs uncached (``not_cached`` lists it with
   the reason, for a ``TaskNotCached`` event). Every dependency of a cached
   task is marked: its output digest will be needed.
2. when cached tasks are ready, :meth:`RunCache.look_up` takes the whole
   ready set at once: each key from the fingerprint, ``version=``, the
   arguments' digest, the dependencies' output digests and what the task's
   ``cache=`` function returns; one ``store.lookup`` call; a hit's output is
   decoded into the run's outputs. The engine then ends each hit CACHED
   without a Trio checkpoint: the core is told it is done, like a success.
3. when any task returns, :meth:`RunCache.returned`: a cached task that
   missed has its output encoded (digest and payload) and queued for the
   store; a task whose output a cached dependent needs gets its digest.
   Hits reuse the stored digest: no value is hashed twice. So a dependency
   that reruns with the same output keeps its dependents cached (early
   cutoff).
4. :meth:`RunCache.store_pending` hands the queued entries to the store in
   one ``store`` call: when a worker is about to wait, every few hundred
   entries, and at the end of the run, after which ``flush()`` is called
   when the store has one. The run never closes the store.

The work per task is done in bulk where it can be, by the backend's
``keyhash`` (compiled, or its twin): one key head per function and
``version=``, one arguments' digest per slot pattern for tasks whose
arguments are only handles, the tasks whose arguments are a flat tuple of
scalars and handles hashed in one pass (``keyhash.hash_tasks``), the keys of
a ready set each one blake2b of precomputed parts (``keyhash.task_keys``),
the hits taken and the outputs encoded without a Python call per part
(``take_hits``; ``returned`` is ``keyhash.Returns``, which the loop calls
with no Python frame). The compiled module hashes with its own blake2b in
C buffers, not hashlib objects. For the SQLite :class:`Cache`, entries
are queued as the bytes its table keeps (no object per entry, so a cold run
does not wake the cyclic GC again and again).

A run without listeners keeps the fast loop: the loop hands back a cached
task not looked up yet (``asks`` is its ``unlooked``), the engine looks it
up with the other ready ones, and the loop runs the misses and calls
:meth:`RunCache.returned` for each output (its ``on_return``).

An ``Exception`` of the store never leaves the run (see :class:`RunCache`):
its tasks run uncached or their results go unstored, told by ``TaskNotCached``.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._cache import Cache, CacheEntry
from ._cache_file import COMMIT_INTERVAL
from ._handle import Handle
from ._keys import (
    ARGS_PERSON,
    KEY_PERSON,
    OUTPUT_PERSON,
    Uncacheable,
    args_digest,
    decode_output,
    encode_output,
    extra_tail,
    fingerprint,
    framed_digest,
    key_head,
    key_of,
    output_digest,
    slots_digest,
)

if TYPE_CHECKING:
    from ._snapshot import Snapshot

__all__ = ["RunCache", "check_store"]

# Entries queued before they are handed to the store at once.
_STORE_EVERY: Final = 256
_NO_KWARGS: Final[Mapping[str, Any]] = {}
_u64 = struct.Struct("<Q").pack


def check_store(cache: object) -> None:
    """Raise TypeError unless *cache* is None or has the CacheStore methods,
    CacheFileError if it is a closed :class:`Cache`."""
    if cache is None:
        return
    if not (callable(getattr(cache, "lookup", None)) and callable(getattr(cache, "store", None))):
        raise TypeError(
            "cache= must be a trio_dag.Cache, a trio_dag.MemoryCache or another object with "
            f"the CacheStore methods lookup(keys) and store(entries), not {type(cache).__name__}"
        )
    if isinstance(cache, Cache):
        cache._check_closed()


class _Handles:
    """Indexes like the outputs list, giving each task's handle: binding a
    task's arguments with it gives them with the handles in place."""

    __slots__ = ("_snap",)

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def __getitem__(self, j: int) -> Handle[Any]:
        return self._snap.handle(j)


class RunCache:
    """What one run knows of its cache; see the module docstring.

    Attributes the engine reads:

    - ``asks``: ``bytearray``, 1 for a cached task not looked up yet.
    - ``hit``: ``bytearray``, 1 for a task that ended CACHED.
    - ``not_cached``: ``(task, reason)`` of the tasks found uncacheable at
      the start, for their ``TaskNotCached`` events.
    - ``pending``: the entries not yet handed to the store.
    - ``unstored``: ``(task, reason)`` of the tasks whose results the store
      failed to keep, not told yet (the engine tells and clears it).

    An ``Exception`` raised by the store never leaves the run: a failed
    ``lookup`` runs its tasks uncached, a failed ``store`` or ``flush``
    leaves their results unstored; each such task is named, with the
    store's exception, in ``dropped`` or ``unstored``.
    """

    __slots__ = (
        "asks",
        "closed",
        "digests",
        "hit",
        "keys",
        "kh",
        "not_cached",
        "parts",
        "pending",
        "pending_keys",
        "pending_tasks",
        "plain",
        "returned",
        "snap",
        "snapshot",
        "store",
        "store_error",
        "stored",
        "unstored",
        "wants_digest",
        "whole",
    )

    def __init__(self, snap: Snapshot, store: Any, members: Sequence[int] | None) -> None:
        n = snap.n
        self.snap = snap
        self.store = store
        self.asks = bytearray(n)
        self.plain = bytearray(n)  # 1 for a cached task with cache=True (no cache= function)
        self.kh = snap.backend.keyhash  # the per-task hashing, compiled or its twin
        self.hit = bytearray(n)
        self.wants_digest = bytearray(n)
        # Output digests, as keys lay them out (length-prefixed), of the
        # tasks with cached dependents.
        self.digests: list[bytes | None] = [None] * n
        # Per cached task, its part (``keyhash.make_part``, None for the
        # others): its dependencies in slot order and what its key starts
        # with (fingerprint, version=, arguments' digest, dependency count).
        # One bytes object a task: nothing for the cyclic GC to walk.
        self.parts: list[bytes | None] = [None] * n
        # The key of each cached task that missed (None for the others): its
        # entry is stored when it returns (``returned`` clears it).
        self.keys: list[bytes | None] = [None] * n
        # The entries not yet handed to the store: their keys, and each entry
        # as the SQLite cache keeps it (``whole``: see _cache_file._RESULTS) or a CacheEntry.
        self.whole = type(store) is Cache
        # The SQLite cache's table read whole at the first lookup, when the
        # run asks for many of its keys (see Cache._snapshot); False until then.
        self.snapshot: Any = False
        self.pending_keys: list[bytes] = []
        self.pending: list[Any] = []
        self.pending_tasks: list[int] = []  # the task of each pending entry
        self.stored: list[int] = []  # the tasks whose entries the store took (a flush may fail)
        self.unstored: list[tuple[int, str]] = []
        self.closed = False
        # Why the store failed, once it has: what comes next is not handed to it.
        self.store_error: str | None = None
        self.not_cached: list[tuple[int, str]] = []
        # returned(v, output): task v returned; see _returned. Compiled (or
        # its twin), called by the loop for each output with no Python frame.
        self.returned: Callable[[int, Any], str | None] = self.kh.Returns(
            self.keys,
            self.pending_keys,
            self.pending,
            self.pending_tasks,
            self.wants_digest,
            self.digests,
            OUTPUT_PERSON,
            self.whole,
            _STORE_EVERY,
            self.store_pending,
            self._returned,
        )
        # The cyclic GC would walk the whole heap again and again while a
        # tuple is made per task (most of the time here, on a large DAG);
        # what is made here forms no cycle, so it waits until the end.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._hash_tasks(snap, members)
        finally:
            if collecting:
                gc.enable()

    def _hash_tasks(self, snap: Snapshot, members: Sequence[int] | None) -> None:
        """Fill ``parts``, ``asks``, ``wants_digest`` and ``not_cached``: one
        pass over the cached tasks, work shared between tasks of one function
        and between tasks whose arguments are only handles."""
        in_run = None if members is None else set(members)
        cols = snap.columns
        opts, fns, stored_args = cols.opts, cols.fns, cols.args
        kwargs, paths, off, src = cols.kwargs, cols.paths, cols.off, cols.src
        handles = _Handles(snap)
        parts = self.parts
        asks = self.asks
        plain = self.plain
        wants = self.wants_digest
        flat_args_digest = self.kh.flat_args_digest
        heads: dict[tuple[int, str | None], bytes] = {}  # (id(fn), version): key_head
        make_part = self.kh.make_part

        def head_of(fn: Any, o: Any) -> bytes | None:
            """The key head of *fn* and the options' version=; None when
            *fn* cannot be fingerprinted (the loop below says why)."""
            head = heads.get((id(fn), o.version))
            if head is None:
                try:
                    head = heads[id(fn), o.version] = key_head(fingerprint(fn), o.version)
                except Uncacheable:
                    return None
            return head

        # Tasks whose arguments are a flat tuple, hashed in bulk; the others here.
        rest = self.kh.hash_tasks(
            snap.with_notes,
            opts,
            fns,
            stored_args,
            kwargs.keys() | paths.keys(),
            in_run,
            head_of,
            Handle,
            ARGS_PERSON,
            parts,
            asks,
            plain,
            wants,
        )
        by_slots: dict[Any, bytes] = {}  # slots of an all-handle tuple: its digest
        last_opts = last_fn = head = None  # most tasks share both with the task before
        pack = _u64
        for i in rest:
            o = opts[i]
            fn = fns[i]
            try:
                if o is not last_opts or fn is not last_fn or head is None:
                    last_opts, last_fn = o, fn
                    head = heads.get((id(fn), o.version))  # None while fingerprint raises
                    if head is None:
                        head = heads[id(fn), o.version] = key_head(fingerprint(fn), o.version)
                stored = stored_args[i]
                deps: Sequence[int]
                if type(stored) is int and i not in kwargs:
                    # Only handles: the digest depends on the slots alone.
                    lo = off[i]
                    deps = src[lo : lo + stored]
                    if len(set(deps)) == stored:
                        slots: Any = stored
                    else:
                        deps = tuple(dict.fromkeys(deps))
                        slots = tuple(deps.index(j) for j in src[lo : lo + stored])
                    digest = by_slots.get(slots)
                    if digest is None:
                        digest = by_slots[slots] = slots_digest(
                            range(stored) if type(slots) is int else slots
                        )
                else:
                    flat = None
                    if type(stored) is tuple and i not in kwargs and i not in paths:
                        flat = flat_args_digest(stored, Handle, ARGS_PERSON)
                    if flat is not None:
                        digest, deps = flat
                    else:
                        digest, deps = self._args_digest(snap, i, handles)
            except Uncacheable as exc:
                self.not_cached.append((i, exc.reason))
                continue
            except RuntimeError:
                continue  # its arguments changed after add: the task fails as it starts
            parts[i] = make_part(head + digest + pack(len(deps)), deps)
            asks[i] = 1
            if o.cache is True:
                plain[i] = 1
            for j in deps:
                wants[j] = 1

    def grow(self) -> None:
        """One more task: a task was added to the running run (``_growth``);
        every per-task column grows here, in one place."""
        self.parts.append(None)
        self.keys.append(None)
        self.asks.append(0)
        self.plain.append(0)
        self.hit.append(0)
        self.wants_digest.append(0)
        self.digests.append(None)

    @staticmethod
    def _args_digest(snap: Snapshot, i: int, handles: _Handles) -> tuple[bytes, tuple[int, ...]]:
        """Task *i*'s arguments' digest and dependencies, the general way."""
        stored = snap.columns.args[i]
        if type(stored) is tuple and i not in snap.columns.kwargs and i not in snap.columns.paths:
            # The stored arguments hold the handles themselves.
            args, kwargs = stored, _NO_KWARGS
        else:
            args, kwargs = snap.bind(i, handles)  # type: ignore[arg-type]
        digest = args_digest(args, kwargs)
        return digest.digest, tuple(h._index for h in digest.handles)

    @property
    def count(self) -> int:
        """How many tasks of the run are cached (have a key)."""
        return len(self.parts) - self.parts.count(None)

    @property
    def asked(self) -> int:
        """How many tasks of the run asked for the cache."""
        return self.count + len(self.not_cached)

    def look_up(
        self,
        tasks: Sequence[int],
        outputs: list[Any],
        bind: Callable[[int], tuple[tuple[Any, ...], Mapping[str, Any]]],
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """Look up the keys of *tasks* (ready, not looked up yet) in one call.

        Returns the hits, in the order of *tasks*, whose outputs are now in
        *outputs*, and ``(task, reason)`` of those that cannot be cached this
        run (they run uncached, like the misses). *bind* gives a task's
        resolved arguments, for its ``cache=`` function.
        """
        digests = self.digests
        keys: list[bytes] = []
        asking: list[int] = []
        # The keys of the tasks with cache=True whose dependencies all have digests.
        rest = self.kh.task_keys(
            tasks, self.parts, digests, self.plain, KEY_PERSON, keys, asking, self.asks
        )
        dropped: list[tuple[int, str]] = []
        if rest:
            self._other_keys(rest, bind, keys, asking, dropped)
            if len(rest) < len(tasks):  # both kinds: back in the order of tasks
                order = {v: n for n, v in enumerate(tasks)}
                pairs = sorted(zip(asking, keys, strict=True), key=lambda p: order[p[0]])
                asking = [v for v, _ in pairs]
                keys = [k for _, k in pairs]
        if not keys:
            return [], dropped
        store = self.store
        try:
            if self.whole:  # (digest, payload) pairs: no CacheEntry made per hit
                if self.snapshot is False:
                    self.snapshot = None  # if _snapshot raises, as _lookup_pairs would
                    self.snapshot = store._snapshot(self.count, self.kh.snapshot_found)
                found: dict[bytes, tuple[bytes, bytes]] = store._lookup_pairs(
                    keys, self.snapshot, within=COMMIT_INTERVAL
                )
            else:
                found = {k: (e.digest, e.payload) for k, e in store.lookup(keys).items()}
        except Exception as exc:
            why = f"the cache's lookup raised {_named(exc)}"
            dropped += [(v, why) for v in asking]
            return [], dropped
        hits: list[int] = self.kh.take_hits(
            asking,
            keys,
            found,
            outputs,
            self.wants_digest,
            digests,
            self.hit,
            self.keys,
            decode_output,
        )
        return hits, dropped

    def _other_keys(
        self,
        tasks: list[int],
        bind: Callable[[int], tuple[tuple[Any, ...], Mapping[str, Any]]],
        keys: list[bytes],
        asking: list[int],
        dropped: list[tuple[int, str]],
    ) -> None:
        """The keys of *tasks* (a cache= function, or a dependency without a
        digest: dropped, with the reason), appended to *keys* and *asking*."""
        snap = self.snap
        opts = snap.columns.opts
        digests = self.digests
        parts = self.parts
        split_part = self.kh.split_part
        for v in tasks:
            head, deps = split_part(parts[v])
            body = [head]
            for j in deps:
                d = digests[j]
                if d is None:
                    dropped.append(
                        (
                            v,
                            f"the output of its dependency {snap.name(j)!r} has no digest: "
                            "it did not succeed, or cannot be pickled",
                        )
                    )
                    break
                body.append(d)
            else:
                o = opts[v]
                if o.cache is True:
                    body.append(b"0")
                else:
                    try:
                        a, kw = bind(v)
                        body.append(extra_tail(o.cache(*a, **kw)))  # type: ignore[operator]
                    except Uncacheable as exc:
                        dropped.append((v, exc.reason))
                        continue
                    except Exception as exc:
                        dropped.append((v, f"its cache= function raised {_named(exc)}"))
                        continue
                keys.append(key_of(b"".join(body)))
                asking.append(v)

    def _returned(self, v: int, result: Any, key: bytes | None) -> str | None:
        """Task *v* returned *result*, which ``returned`` (``keyhash.Returns``)
        leaves here: a cached task that missed (*key*, its key) has its entry
        queued for the store; a task whose output a cached dependent needs
        gets its digest (*key* None). Return why it cannot be stored, or None."""
        if key is not None:
            try:
                digest, payload = encode_output(result)
            except Uncacheable as exc:
                return exc.reason
            if self.whole:  # as the SQLite cache's table keeps it
                self.pending.append(b"".join((key[8:], digest, payload)))
            else:
                self.pending.append(CacheEntry(digest, payload))
            self.pending_keys.append(key)
            self.pending_tasks.append(v)
            if self.wants_digest[v]:
                self.digests[v] = framed_digest(digest)
            if len(self.pending_keys) >= _STORE_EVERY:
                self.store_pending()
        elif self.wants_digest[v]:
            try:
                self.digests[v] = framed_digest(output_digest(result))
            except Uncacheable:
                pass  # its cached dependents run uncached, and say why
        return None

    def store_pending(self) -> None:
        """Hand the queued entries to the store, in one call.

        When the store raises (now or before), their tasks go to ``unstored``.
        """
        # Emptied in place: returned holds these lists.
        keys, pending, tasks = self.pending_keys[:], self.pending[:], self.pending_tasks[:]
        self.pending_keys.clear()
        self.pending.clear()
        self.pending_tasks.clear()
        if not keys:
            return
        if self.store_error is None:
            try:
                if self.whole:
                    self.store._store_entries(keys, pending)
                else:
                    self.store.store(list(zip(keys, pending, strict=True)))
            except Exception as exc:
                self.store_error = f"the cache's store raised {_named(exc)}"
            else:
                self.stored += tasks
                return
        why = self.store_error
        assert why is not None
        self.unstored += [(v, why) for v in tasks]

    def close(self) -> None:
        """The run has ended: store what is queued, then flush the store if it can.

        A flush that raises leaves unstored every task the store took this run.
        """
        self.closed = True
        if self.snapshot:
            self.store._release(self.snapshot)
            self.snapshot = None
        self.store_pending()
        flush = getattr(self.store, "flush", None)
        if callable(flush):
            try:
                flush()
            except Exception as exc:
                why = f"the cache's flush raised {_named(exc)}"
                self.unstored += [(v, why) for v in self.stored]
        self.stored = []


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"

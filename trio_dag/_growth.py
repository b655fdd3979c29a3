"""Growth: the tasks a run adds while it goes on (``Run.add``), and joins.

A run that adds a task forks its DAG once (``DAG._fork``): the fork holds
copies of the DAG's columns, and ``DAG.add`` on the fork records each new
task with exactly the checks and errors of ``dag.add``, so the user's DAG
never changes. The run's :class:`~trio_dag._snapshot.Snapshot` (a copy per
run) then reads the fork's columns, the loop's per-task records grow in
place, and the core appends the task (``RunState.add``), waiting only for
its dependencies that have not ended.

A task that returns handles of its run *joins* them (``RunState.join``): its
dependents wait until the joined tasks end, and the task, marked in the
loop's ``handback``, comes back from the ready heap to be resolved here: its
output becomes its return value with each handle replaced by that task's
output, or it fails with the first joined task that did not succeed as the
cause. While it waits it holds no ``limit`` slot and none of its ``uses``.

Everything here runs only for a run that adds or joins; a run that never
does pays for none of it.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any, Final

import trio

from ._batching import Batched
from ._dependencies import rebuild, scan
from ._errors import ResourceError, TaskFailedError, UnknownDependencyError
from ._events import TaskAdded
from ._handle import Handle
from ._keys import Uncacheable, framed_digest, output_digest
from ._native import core
from ._native._shared import PLAIN_TYPES
from ._report import task_outcome
from ._snapshot import Columns

if TYPE_CHECKING:
    from ._dag import DAG
    from ._engine import Engine

__all__ = ["Growth"]

_ENDED: Final = frozenset({core.SUCCEEDED, core.FAILED, core.SKIPPED, core.CANCELLED})
_JOINABLE: Final = (list, tuple, dict)


class Growth:
    """One run's added tasks and joins; the engine makes it at the first add."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        snap = engine.snap
        self.base_n = snap.n
        self.fork: DAG = snap.dag._fork()
        fork = self.fork
        self.columns = Columns(
            fork._fns,
            fork._opts,
            fork._args,
            fork._kwargs,
            fork._off,
            fork._src,
            fork._where,
            fork._paths,
        )
        # The graph of the DAG's own tasks, for their children.
        self.graph = snap.graph
        self._grow(snap.n)
        loop = engine.loop
        loop.grow(self.columns, snap.n)
        # Tasks the loop hands back to be resolved here (joining ones).
        self.marks = bytearray(snap.n)
        loop.handback = self.marks
        # The run's cache hears each output through this class, after joins.
        self.cache_hook = loop.on_return
        if engine.caching is not None and self.cache_hook is None:
            self.cache_hook = engine.caching.returned
        loop.on_return = self._loop_returned
        self.levels: array[int] | None = None
        # Children added during the run, and the joiners of each joined task:
        # what may wait for a task (the check of a join that would never end).
        self.kids: dict[int, list[int]] = {}
        self.waiters: dict[int, list[int]] = {}
        # Joining tasks: (their return value, its handles' paths, the joined tasks).
        self.joins: dict[int, tuple[Any, tuple[tuple[Any, ...], ...] | None, list[int]]] = {}
        # Joins that failed at once: the error to fail the task with.
        self.errors: dict[int, Exception] = {}

    # -- adding ----------------------------------------------------------------

    def add(
        self, fn: Any, args: tuple[Any, ...], options: dict[str, Any], parent: int
    ) -> Handle[Any]:
        """Add a task to the running run; *parent* is the adding task's index, or -1."""
        engine = self.engine
        if type(fn) is Batched:
            raise TypeError(
                f"run.add cannot add a task of the batched function {fn!r}: batches are "
                "formed from the tasks of the DAG; add it to the DAG before the run"
            )
        fork = self.fork
        st = engine.st
        i = len(fork._fns)
        fork._runs = 0
        try:
            handle = fork.add(fn, *args, **options)
        finally:
            fork._runs = 1
        try:
            parents, uses = self._check_added(i)
            opts = fork._opts[i]
            all_done = opts.trigger == "all_done"
            key = self._key(i, opts, parents)
            v = st.add(parents, all_done=all_done, key=key)
        except BaseException:
            fork._truncate(i)
            raise
        assert v == i
        n = i + 1
        snap = engine.snap
        self._grow(n)
        engine.loop.grow(self.columns, n)
        self.marks.append(0)
        engine.teardown.append(1 if all_done else 0)
        admission = engine.admission
        if admission.uses is not None:
            admission.uses.append(uses)
        if admission.keys is not None and admission.keys is not engine.keys:
            admission.keys.append(key)
        if engine.keys is not None:
            engine.keys.append(key)
        if engine.unbounded:
            engine.cap += 1
        levels = self.levels
        if levels is not None:
            levels.append(max([levels[p] + 1 for p in parents], default=0))
        kids = self.kids
        for p in parents:
            kids.setdefault(p, []).append(i)
        if engine.caching is not None:
            self._cache_added(i, opts.cache)
        if engine.on_event is not None or engine.stream is not None:
            by = None if parent < 0 else snap.handle(parent)
            engine._emit(TaskAdded(handle, by, engine.loop.now()))
        state = st.state(i)
        if state == core.SKIPPED:
            engine._ended(i, core.SKIPPED)
        elif engine.halted or (engine.failing and not all_done):
            # The run is stopping: the new task never starts.
            engine._ended(i, core.CANCELLED, st.cancel(i))
        return handle

    def _grow(self, n: int) -> None:
        fork = self.fork
        self.engine.snap.grow(
            fork,
            self.columns,
            n,
            name=fork._name,
            task_index=fork._task_index,
            close_name=fork._close_name,
            graph=fork._graph,
        )

    def _check_added(self, i: int) -> tuple[list[int], Any]:
        """What the run needs of task *i*, just added to the fork: its
        dependencies and its uses in quanta; raise for what a run refuses."""
        engine = self.engine
        fork = self.fork
        if fork._pending:
            # A name not taken by any task yet: a running graph cannot wait for it.
            e = next(iter(fork._pending))
            task, name = fork._pending[e]
            if fork._lookup(name) is None:
                raise UnknownDependencyError(fork._name(task), name, fork._close_name(name))
            fork._resolve_pending()
        parents = sorted(set(fork._src[fork._off[i] : fork._off[i + 1]]))
        st = engine.st
        for p in parents:
            if st.state(p) == core.EXCLUDED:
                raise ValueError(
                    f"task {fork._name(i)!r} depends on {fork._name(p)!r}, which targets= "
                    "left out of this run"
                )
        uses: Any = ()
        opts = fork._opts[i]
        admission = engine.admission
        if opts.uses:
            uses = admission.quantize_more(fork._name(i), opts.uses)
        elif admission.uses is None:
            uses = None
        return parents, uses

    def _key(self, i: int, opts: Any, parents: list[int]) -> float:
        """Task *i*'s key in the ready heap, for the run's policy."""
        engine = self.engine
        policy = engine.policy
        if engine.keys is None:
            return 0.0
        if policy == "priority":
            return float(-opts.priority)
        if policy == "critical_path":
            # Its rank: its own cost (it has no dependents as it is added);
            # the ranks of the tasks already in the run stay as they were.
            return -float(opts.cost)
        if policy == "depth_first":
            return -float(self._level(parents))
        raise TypeError(
            "run.add needs a named policy (fifo, lifo, priority, critical_path or "
            "depth_first); a key function ranks the tasks before the run starts"
        )

    def _level(self, parents: list[int]) -> int:
        levels = self.levels
        if levels is None:
            levels = self.levels = array("i", self.graph.levels())
            levels.extend([0] * (self.engine.snap.n - len(levels)))
            for v in range(self.base_n, self.engine.snap.n):
                levels[v] = max([levels[p] + 1 for p in self._parents(v)], default=0)
        return max([levels[p] + 1 for p in parents], default=0)

    def _parents(self, v: int) -> list[int]:
        fork = self.fork
        return sorted(set(fork._src[fork._off[v] : fork._off[v + 1]]))

    def level(self, v: int) -> int:
        """The level of task *v* (its longest chain of dependencies)."""
        self._level([])
        assert self.levels is not None
        return self.levels[v]

    def _cache_added(self, i: int, cached: Any) -> None:
        """The run's cache learns of task *i*; a cached one gets its key's parts."""
        engine = self.engine
        caching = engine.caching
        assert caching is not None
        caching.asks.append(0)
        caching.hit.append(0)
        caching.wants_digest.append(0)
        caching.digests.append(None)
        if not cached:
            return
        caching._hash_tasks(_One(engine.snap, i), None)  # type: ignore[arg-type]
        if caching.asks[i] and engine.loop.unlooked is None and engine.loop.fast:
            engine.loop.unlooked = caching.asks
        part = caching.parts.get(i)
        if part is None:
            return
        outputs = engine.outputs
        for j in part[1]:
            if caching.digests[j] is None and engine.st.state(j) == core.SUCCEEDED:
                try:
                    caching.digests[j] = framed_digest(output_digest(outputs[j]))
                except Uncacheable:
                    pass

    # -- joining ---------------------------------------------------------------

    def _loop_returned(self, v: int, result: Any) -> None:
        # The loop's on_return: joins first, then the run's cache.
        if self.joined(v, result):
            return
        hook = self.cache_hook
        if hook is not None:
            hook(v, self.engine.outputs[v])

    def joined(self, v: int, result: Any) -> bool:
        """Task *v* returned *result*: join the handles of the run in it.

        Returns True when *v* now waits (its dependents with it) or comes
        back to be failed; False when it ends now, with its output (in the
        engine's outputs) resolved if it joined tasks that have all ended.
        """
        t = type(result)
        if t is not Handle and (t in PLAIN_TYPES or not isinstance(result, _JOINABLE)):
            return False
        fork = self.fork
        try:
            _, data, _, paths = scan(fork, (result,), None, fork._fns[v], v, None)
        except Exception:
            return False  # nothing it can join: an ordinary output
        if not data:
            return False
        engine = self.engine
        st = engine.st
        name = engine.snap.name(v)
        error = self._join_error(v, name, data)
        if error is None:
            if st.join(v, data):
                self.joins[v] = (result, paths, data)
                for j in set(data):
                    self.waiters.setdefault(j, []).append(v)
                self.marks[v] = 1
                return True
            error = self._failed_join(v, data)
            if error is None:
                engine.outputs[v] = _resolve(result, paths, data, engine.outputs)
                return False
        self.errors[v] = error
        self.marks[v] = 1
        st.requeue(v)
        return True

    def _join_error(self, v: int, name: str, data: list[int]) -> Exception | None:
        """The error of a join that would never end: of *v* itself, or of a
        task that waits for *v* (one of its dependents, or a task joining one)."""
        if v in data:
            return ValueError(
                f"task {name!r} returned its own handle: a task cannot join itself "
                "(it would wait for its own end)"
            )
        wanted = set(data)
        seen = {v}
        stack = [v]
        graph = self.graph
        base_n = self.base_n
        while stack:
            u = stack.pop()
            nexts = list(graph.children(u)) if u < base_n else []
            nexts += self.kids.get(u, ())
            nexts += self.waiters.get(u, ())
            for c in nexts:
                if c in wanted:
                    snap = self.engine.snap
                    return ValueError(
                        f"task {name!r} joins {snap.name(c)!r}, which waits for "
                        f"{name!r} (a dependent, or a task that joins one): the join "
                        "would never end"
                    )
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return None

    def _failed_join(self, v: int, data: list[int]) -> Exception | None:
        """The error of *v*'s join once its joined tasks have ended: the first
        that did not succeed, as the cause; None when all succeeded."""
        engine = self.engine
        st = engine.st
        snap = engine.snap
        for j in data:
            state = st.state(j)
            if state == core.SUCCEEDED:
                continue
            result = task_outcome(snap, state, j, engine.outputs, engine.errors, st.state)
            cause = result.error  # type: ignore[union-attr]
            if state == core.FAILED:
                return TaskFailedError(snap.name(j), cause)
            error = TaskFailedError(snap.name(j))
            error.__cause__ = cause
            return error
        return None

    def resolve(self, v: int) -> None:
        """Task *v*, joining, came back from the ready heap: end it."""
        engine = self.engine
        self.marks[v] = 0
        error = self.errors.pop(v, None)
        joined = self.joins.pop(v, None)
        loop = engine.loop
        now = loop.now()
        loop.end[v] = now
        loop.ends += 1
        loop.end_order[v] = loop.ends
        if joined is not None:
            result, paths, data = joined
            for j in set(data):
                waiting = self.waiters.get(j)
                if waiting is not None and v in waiting:
                    waiting.remove(v)
            error = self._failed_join(v, data)
            if error is None:
                engine._returned(v, _resolve(result, paths, data, engine.outputs))
                return
        assert error is not None
        engine._gave_up(v, error)


def _resolve(
    result: Any, paths: tuple[tuple[Any, ...], ...] | None, data: list[int], outputs: list[Any]
) -> Any:
    """*result* with each handle replaced by its task's output."""
    values = [outputs[j] for j in data]
    if paths is None:
        # Handles at the top level: the result is one handle.
        return values[0]
    return rebuild((result,), {}, paths, values)[0][0]


class _One:
    """One task of a snapshot, as ``RunCache._hash_tasks`` reads a snapshot."""

    def __init__(self, snap: Any, i: int) -> None:
        self._snap = snap
        self.with_notes = (i,)
        self.columns = snap.columns

    def handle(self, j: int) -> Handle[Any]:
        return self._snap.handle(j)  # type: ignore[no-any-return]

    def bind(self, i: int, outputs: Any) -> Any:
        return self._snap.bind(i, outputs)


def in_trio_thread() -> bool:
    """Whether the caller runs in Trio's thread (not in a worker thread)."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True

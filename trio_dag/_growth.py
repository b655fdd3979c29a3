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

The common add (from a body, with ``name=`` and ``after=`` at most, in a
run whose added tasks need no heap key, cache lookup or event) does not
come here after the first: the compiled core's ``Grower`` (which ``Run.add``,
compiled as ``_core.run_add``, calls) appends it to the fork with the DAG's
builder and to the core, the loop and the engine's per-task records as
``add`` below does, and hands whatever else it meets to ``took``.

Everything here runs only for a run that adds or joins; a run that never
does pays for none of it.
"""

from __future__ import annotations

from array import array
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ._batching import Batched
from ._dependencies import rebuild, scan
from ._errors import ExecutorError, TaskFailedError, UnknownDependencyError
from ._events import _CURRENT, TaskAdded
from ._executors import not_pickled, unpicklable
from ._handle import Handle
from ._keys import Uncacheable, framed_digest, output_digest
from ._native import core
from ._native._shared import PLAIN_TYPES
from ._options import BUILT_IN, DEFAULT_OPTIONS
from ._policies import depth_first_key
from ._report import task_outcome
from ._snapshot import Columns

if TYPE_CHECKING:
    from ._dag import DAG
    from ._engine import Engine

__all__ = ["Growth"]

_ENDED: Final = frozenset({core.SUCCEEDED, core.FAILED, core.SKIPPED, core.CANCELLED})
_JOINABLE: Final = (list, tuple, dict)
_SKIPPED: Final = core.SKIPPED


class Growth:
    """One run's added tasks and joins; the engine makes it at the first add.

    ``add`` runs once per added task: what it reads of the engine and the
    fork that never changes during the run (the objects, appended to in
    place) is kept in slots here.
    """

    __slots__ = (
        "_admission",
        "_fns",
        "_grow_loop",
        "_keys",
        "_off",
        "_opts",
        "_pickles",
        "_src",
        "_st",
        "_teardown",
        "_unbounded",
        "base_n",
        "columns",
        "engine",
        "errors",
        "excluding",
        "fork",
        "graph",
        "grower",
        "joins",
        "levels",
        "marks",
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        snap = engine.snap
        # The run's task count is the snapshot's n (the Grower's too).
        self.base_n = snap.n
        self.grower: Any = None
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
        self._fns = fork._fns
        self._opts = fork._opts
        self._off = fork._off
        self._src = fork._src
        self._st = engine.st
        self._admission = engine.admission
        self._keys = engine.keys
        self._teardown = engine.teardown
        self._unbounded = engine.unbounded
        # The graph of the DAG's own tasks, for their children.
        self.graph = snap.graph
        fork._runs = 0  # add refuses nothing: tasks are added only here (see add)
        self._grow(snap.n)
        loop = engine.loop
        loop.grow(self.columns, snap.n)
        self._grow_loop = partial(loop.grow, self.columns)
        # Tasks the loop hands back to be resolved here (joining ones).
        self.marks = bytearray(snap.n)
        loop.handback = self.marks
        loop.on_join = self.joined
        self.levels: array[int] | None = None
        # Whether targets= left tasks out of the run (an added one may not depend on them).
        self.excluding = engine.st.total < snap.n
        # Joining tasks: (their return value, its handles' paths, the joined tasks).
        self.joins: dict[int, tuple[Any, tuple[tuple[Any, ...], ...] | None, list[int]]] = {}
        # Joins that failed at once: the error to fail the task with.
        self.errors: dict[int, Exception] = {}
        # The functions of added executor tasks known to pickle: checked once
        # each, as the run checks the DAG's (by function, not per task).
        self._pickles: set[int] = set()
        # run.add's common call, compiled (the core's Grower), for a run whose
        # added tasks need no key, cache, event or dependency check.
        if (
            engine.run is not None
            and engine.keys is None
            and engine.caching is None
            and engine.on_event is None
            and engine.stream is None
            and engine.admission.levels is None
            and not self.excluding
        ):
            self.grower = engine.run._grower = snap.backend.core.Grower(
                engine.st,
                self,
                engine,
                fork,
                loop,
                self.columns,
                _CURRENT,
                Batched,
                DEFAULT_OPTIONS,
                self._unbounded,
            )

    # -- adding ----------------------------------------------------------------

    def add(
        self, fn: Any, args: tuple[Any, ...], options: dict[str, Any], parent: int
    ) -> Handle[Any]:
        """Add a task to the running run; *parent* is the adding task's index, or -1."""
        fork = self.fork
        i = self.engine.snap.n
        if len(self._fns) != i:
            self._refuse(i)
        engine = self.engine
        if type(fn) is Batched and engine.batcher is None:
            engine.start_batching()
        handle = fork.add(fn, *args, **options)
        return self.took(i, handle, parent)

    def took(self, i: int, handle: Handle[Any], parent: int) -> Handle[Any]:
        """Task *i*, just added to the fork as *handle*, joins the run (the
        rest of ``add``; the compiled ``Grower`` calls it for an add it does
        not finish itself). A check that fails takes the task off the fork."""
        fork = self.fork
        engine = self.engine
        try:
            off = self._off
            parents = self._src[off[i] : off[i + 1]]
            if fork._pending or self.excluding:
                self._check_dependencies(i, parents)
            opts = self._opts[i]
            admission = self._admission
            keys = self._keys
            uses: Any
            if opts is DEFAULT_OPTIONS:
                # The common task: no trigger, uses or cache of its own.
                all_done = False
                uses = None if admission.uses is None else ()
            else:
                if opts.run_in is not None and opts.run_in not in BUILT_IN:
                    self._check_executor(i, opts.run_in)
                all_done = opts.trigger == "all_done"
                uses = None
                if opts.uses:
                    uses = admission.quantize_more(fork._name(i), opts.uses)
                elif admission.uses is not None:
                    uses = admission.slot_of(opts.run_in, self._fns[i])
            key = 0.0 if keys is None else self._key(opts, parents)
            st = self._st
            # The run is stopping: the new task never starts, and ends
            # CANCELLED (not SKIPPED, whatever its dependencies did).
            stopping = engine.halted or (engine.failing and not all_done)
            st.add(() if stopping else parents, all_done, key)
        except BaseException:
            fork._truncate(i)
            raise
        n = engine.snap.n = i + 1
        self._grow_loop(n)
        self.marks.append(0)
        self._teardown.append(all_done)
        if uses is not None:
            admission.uses.append(uses)  # type: ignore[union-attr]
        if keys is not None:
            keys.append(key)
        if self._unbounded:
            engine.cap = n
        if self.levels is not None:
            self.levels.append(self._level(parents))
        if engine.caching is not None:
            self._cache_added(i, opts.cache)
        if engine.on_event is not None or engine.stream is not None:
            by = None if parent < 0 else engine.snap.handle(parent)
            engine._emit(TaskAdded(handle, by, engine.loop.now()))
        if stopping:
            engine._ended(i, core.CANCELLED, st.cancel(i))
        elif parents and st.state(i) == _SKIPPED:
            engine._ended(i, _SKIPPED)
        return handle

    def finish(self) -> None:
        """The run has ended: its snapshot's graph is built now, over the tasks
        it ran, whatever is added to the fork later (``handle.dag.add``)."""
        if self.grower is not None:
            self.grower.closed = True  # every add after this takes the general path
        snap = self.engine.snap
        graph = snap.graph  # a property: built now, once
        if graph.n != snap.n:
            raise RuntimeError(f"the run's graph has {graph.n} tasks, not {snap.n}")

    def _refuse(self, i: int) -> None:
        # Tasks were added to the fork itself (h.dag.add with a handle of the
        # run): the run knows nothing of them.
        self.fork._truncate(i)
        raise RuntimeError(
            "tasks were added to the run's fork of the DAG directly (handle.dag.add); "
            "add tasks to a running run with run.add only"
        )

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

    def _check_executor(self, i: int, name: str) -> None:
        """Refuse task *i* on executor *name* unless the run has it: ``"process"``
        or a name of its ``executors=``."""
        executors = self.engine.executors
        if executors is None or name not in executors._by_name:
            task = self.fork._name(i)
            raise ExecutorError(
                name,
                [task],
                f"task {task!r} runs on executor {name!r}, which the run does not "
                f"provide; pass executors={{{name!r}: ...}} to the run",
            )
        fn = self._fns[i]
        if id(fn) in self._pickles:
            return
        why = unpicklable(fn)
        if why is None:
            self._pickles.add(id(fn))
        else:
            task = self.fork._name(i)
            raise ExecutorError(name, [task], not_pickled(f"task {task!r} runs", name, fn, why))

    def _check_dependencies(self, i: int, parents: Any) -> None:
        """Refuse task *i*, just added to the fork, if the run cannot wait for
        its dependencies: an ``after=`` name no task has, or a task that
        ``targets=`` left out of the run."""
        fork = self.fork
        if fork._pending:
            # A name not taken by any task yet: a running graph cannot wait for it.
            for task, name in fork._pending.values():
                if fork._lookup(name) is None:
                    raise UnknownDependencyError(fork._name(task), name, fork._close_name(name))
            fork._resolve_pending()
            parents[:] = fork._src[fork._off[i] : fork._off[i + 1]]
        st = self.engine.st
        for p in parents:
            if st.state(p) == core.EXCLUDED:
                raise ValueError(
                    f"task {fork._name(i)!r} depends on {fork._name(p)!r}, which targets= "
                    "left out of this run"
                )

    def _key(self, opts: Any, parents: Any) -> float:
        """The key in the ready heap of the task being added (the next
        index), for the run's policy."""
        policy = self.engine.policy
        if policy == "priority":
            return float(-opts.priority)
        if policy == "critical_path":
            # Its rank: its own cost (it has no dependents as it is added);
            # the ranks of the tasks already in the run stay as they were.
            return -float(opts.cost)
        if policy == "depth_first":
            return depth_first_key(self._level(parents), self.engine.snap.n)
        raise TypeError(
            "run.add needs a named policy (fifo, lifo, priority, critical_path or "
            "depth_first); a key function ranks the tasks before the run starts"
        )

    def _level(self, parents: Any) -> int:
        """The level of a task after *parents*: one more than the deepest of them."""
        levels = self.levels
        if levels is None:
            levels = self.levels = array("i", self.graph.levels())
            if self.grower is not None:
                self.grower.levels = True  # each add appends its level (took)
            for v in range(self.base_n, self.engine.snap.n):
                levels.append(max([levels[p] + 1 for p in self._parents(v)], default=0))
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
        caching.grow()
        if not cached:
            return
        caching._hash_tasks(_One(engine.snap, i), None)  # type: ignore[arg-type]
        loop = engine.loop
        if caching.asks[i] and loop.fast and loop.unlooked is None:
            # As the engine sets up a run with cached tasks (see Engine).
            loop.unlooked = caching.asks
            loop.on_return = caching.returned
        if caching.asks[i] and engine.batcher is not None and engine.batcher.unlooked is None:
            engine.batcher.unlooked = caching.asks
        part = caching.parts[i]
        if part is None:
            return
        outputs = engine.outputs
        for j in caching.kh.split_part(part)[1]:
            if caching.digests[j] is None and engine.st.state(j) == core.SUCCEEDED:
                try:
                    caching.digests[j] = framed_digest(output_digest(outputs[j]))
                except Uncacheable:
                    pass

    # -- joining ---------------------------------------------------------------

    def joined(self, v: int, result: Any) -> bool:
        """Task *v* returned *result*: join the handles of the run in it (the
        loop's ``on_join``, and the engine's for the other tasks).

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
        added_children = self.engine.st.added_children
        while stack:
            u = stack.pop()
            nexts = added_children(u)
            if u < base_n:
                nexts += graph.children(u)
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
            cause = result.error  # type: ignore[attr-defined]
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
        # Its timing stays its body's (it held no slot since): its end is
        # told, with TaskFinished, now.
        if joined is not None:
            result, paths, data = joined
            error = self._failed_join(v, data)
            if error is None:
                engine._returned(v, _resolve(result, paths, data, engine.outputs))
                return
        assert error is not None
        if engine.halted or (engine.failing and not engine.teardown[v]):
            # The run is stopping (its joined tasks were cancelled with the
            # rest): it ends CANCELLED as every other task that had not ended.
            engine._ended(v, core.CANCELLED, engine.st.cancel(v))
            return
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

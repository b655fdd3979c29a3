"""Growth of a running graph in the core: ``RunState.add`` and ``RunState.join``.

Random runs that pop, finish, fail, cancel, add nodes and join, step by step
on both cores: the compiled one must give exactly the twin's results (return
values, errors and their messages, states), and each keeps a run's invariants.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_dag._native import _core_py as twin

FINAL = {twin.SUCCEEDED, twin.FAILED, twin.SKIPPED, twin.CANCELLED}


def test_add_waits_for_unfinished_parents_only(core: ModuleType) -> None:
    g = core.Graph(3, [0], [1])
    st = core.RunState(g)
    assert st.pop() == 0
    st.done(0)
    assert st.pop_all() == [2, 1]  # 2 was ready from the start
    v = st.add([0, 1])  # 0 succeeded: only 1 is waited for
    assert (v, st.n, st.state(v), st.total) == (3, 4, core.PENDING, 4)
    st.done(1)
    assert st.state(v) == core.READY
    assert st.pop() == 3
    st.done(3)
    st.done(2)
    assert st.finished


def test_add_after_a_failed_parent_is_skipped_unless_all_done(core: ModuleType) -> None:
    st = core.RunState(core.Graph(1, [], []))
    assert st.pop() == 0
    st.fail(0)
    a = st.add([0])
    b = st.add([0], all_done=True)
    assert st.state(a) == core.SKIPPED
    assert st.state(b) == core.READY
    assert st.pop() == b
    assert st.fail(b) == []
    assert st.finished


def test_added_nodes_have_children_and_skip_them(core: ModuleType) -> None:
    st = core.RunState(core.Graph(1, [], []))
    a = st.add([])
    b = st.add([a])
    c = st.add([b])
    assert st.pop() == 0
    assert st.pop() == a
    assert st.fail(a) == [b, c]
    st.done(0)
    assert st.finished


def test_add_checks_parents_before_changing_anything(core: ModuleType) -> None:
    st = core.RunState(core.Graph(2, [], []), targets=[0])
    with pytest.raises(ValueError, match="excluded"):
        st.add([0, 1])
    with pytest.raises(IndexError, match="out of range"):
        st.add([5])
    with pytest.raises(ValueError, match="NaN"):
        st.add([], key=float("nan"))
    assert st.n == 2 and st.total == 1


def test_keys_order_added_nodes(core: ModuleType) -> None:
    st = core.RunState(core.Graph(2, [], []), [5.0, 6.0])
    st.add([], key=1.0)
    st.add([], key=5.5)
    assert st.pop_all() == [2, 0, 3, 1]


def test_join_waits_then_comes_back_ready(core: ModuleType) -> None:
    st = core.RunState(core.Graph(2, [0], [1]))
    assert st.pop() == 0
    a = st.add([])
    b = st.add([])
    assert st.join(0, [a, b, 0]) == 2  # itself is never waited for
    assert st.state(0) == core.RUNNING
    assert st.pop() == a
    st.done(a)
    assert st.state(0) == core.RUNNING
    assert st.pop() == b
    st.done(b)
    assert st.state(0) == core.READY
    assert st.pop() == 0
    st.done(0)
    assert st.pop() == 1


def test_join_on_a_failure_comes_back_at_once(core: ModuleType) -> None:
    st = core.RunState(core.Graph(1, [], []))
    assert st.pop() == 0
    a = st.add([])
    b = st.add([])
    assert st.join(0, [a, b]) == 2
    assert st.pop() == a
    st.fail(a)
    assert st.state(0) == core.READY
    assert st.pop_all() == [b, 0]
    st.fail(0)
    st.done(b)  # 0 ended already: nothing comes back
    assert st.finished and st.ready == 0


def test_join_on_ended_nodes(core: ModuleType) -> None:
    st = core.RunState(core.Graph(3, [], []))
    for v in (0, 1, 2):
        assert st.pop() == v
    st.done(1)
    st.fail(2)
    assert st.join(0, [1]) == 0
    assert st.join(0, [1, 2]) == 0
    with pytest.raises(ValueError, match="cannot join node 1"):
        st.join(1, [0])


def _waiting_for(st: Any, v: int) -> set[int]:
    """The nodes that wait for *v*: its children, and theirs, added ones too."""
    seen: set[int] = set()
    stack = [v]
    while stack:
        u = stack.pop()
        nexts = list(st.added_children(u))
        if u < st.graph.n:
            nexts += list(st.graph.children(u))
        for c in nexts:
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def _apply(st: Any, op: tuple[Any, ...]) -> Any:
    kind = op[0]
    try:
        if kind == "pop":
            return st.pop()
        n = st.n
        if kind == "add":
            parents = [p % n for p in op[1]] if n else []
            return st.add(parents, all_done=op[2], key=float(op[3]))
        running = [v for v in range(n) if st.state(v) == twin.RUNNING]
        if not running:
            return None
        v = running[op[1] % len(running)]
        if kind == "done":
            return st.done(v)
        if kind == "fail":
            return st.fail(v)
        if kind == "cancel":
            return st.cancel(op[2] % n)
        if kind == "join":
            on = [j % n for j in op[2]]
            if _waiting_for(st, v) & set(on):
                # The engine refuses such a join (Growth._join_error): it would never end.
                return "refused"
            return st.join(v, on)
        if kind == "cancel_pending":
            return st.cancel_pending(keep_all_done=op[2])
    except (ValueError, IndexError) as exc:
        return type(exc), str(exc)
    raise AssertionError(kind)


ops = st.one_of(
    st.tuples(st.just("pop")),
    st.tuples(st.just("pop")),
    st.tuples(st.just("done"), st.integers(0, 50)),
    st.tuples(st.just("done"), st.integers(0, 50)),
    st.tuples(st.just("fail"), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.integers(0, 200)),
    st.tuples(
        st.just("add"),
        st.lists(st.integers(0, 200), max_size=3),
        st.booleans(),
        st.integers(-3, 3),
    ),
    st.tuples(
        st.just("add"), st.lists(st.integers(0, 200), max_size=2), st.just(False), st.just(0)
    ),
    st.tuples(st.just("join"), st.integers(0, 50), st.lists(st.integers(0, 200), max_size=3)),
    st.tuples(st.just("cancel_pending"), st.integers(0, 50), st.booleans()),
)


@settings(max_examples=150)
@given(
    n=st.integers(0, 6),
    edges=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=8),
    keyed=st.sampled_from(["none", "keys", "lifo"]),
    steps=st.lists(ops, max_size=60),
)
def test_growth_is_the_same_on_both_cores(
    compiled_core: ModuleType,
    n: int,
    edges: list[tuple[int, int]],
    keyed: str,
    steps: list[tuple[Any, ...]],
) -> None:
    pairs = sorted({(min(a, b), max(a, b)) for a, b in edges if a != b and max(a, b) < n})
    cores = [twin, compiled_core]
    states = []
    for core in cores:
        g = core.Graph(n, [a for a, _ in pairs], [b for _, b in pairs])
        keys = [float(i % 3) for i in range(n)] if keyed == "keys" else None
        states.append(core.RunState(g, keys, lifo=keyed == "lifo"))
    for op in steps:
        results = [_apply(s, op) for s in states]
        assert all(r == results[0] for r in results), (op, results)
        snaps = [(s.states(), s.tally(), s.n) for s in states]
        assert all(x == snaps[0] for x in snaps), (op, snaps)
    for s in states:
        # Drain: every node reaches one final state (joins resolved as done).
        for _ in range(10 * (s.n + 1)):
            v = s.pop()
            if v >= 0:
                s.done(v)
                continue
            running = [u for u in range(s.n) if s.state(u) == twin.RUNNING]
            if not running:
                break
            # A joining node ends only once what it joins has: done is a no-op.
            for u in running:
                before = (s.ended, s.ready)
                s.done(u)
                if (s.ended, s.ready) != before:
                    break
        assert s.finished
        assert set(s.states()) <= FINAL
    assert len({s.states() for s in states}) == 1


def test_added_children_are_what_waits_for_a_node(core: ModuleType) -> None:
    st = core.RunState(core.Graph(2, [0], [1]))
    assert st.pop() == 0
    a = st.add([0])
    b = st.add([])
    assert st.join(0, [b]) == 1
    assert st.added_children(0) == [a]
    assert st.added_children(b) == [0]
    assert st.added_children(1) == []

"""The warnings of a run about settings that do nothing: :class:`NoEffectWarning`.

A run calls :func:`warn_no_effect` once, after every check that raises and
before any task starts. It looks only at the tasks that set a priority or
tags or cache= (the snapshot's ``with_notes``) and at the resources given, so a run of
tasks with default options pays nothing per task.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Final

import trio

from ._errors import NoEffectWarning
from ._options import option_kinds

if TYPE_CHECKING:
    from ._policies import Policy
    from ._snapshot import Snapshot

__all__ = ["warn_no_effect"]

# How many tasks a warning names; the others are counted.
_SHOWN: Final = 3
# A warning points at the first frame outside these: the user's call of run,
# run_sync (through trio.run) or open_run (through contextlib).
_PASSED: Final = (
    os.path.dirname(__file__) + os.sep,
    os.path.dirname(trio.__file__) + os.sep,
    contextlib.__file__,
)


def warn_no_effect(
    snap: Snapshot,
    members: Sequence[int] | None,
    policy: Policy,
    resources: Mapping[str, float] | None,
    used: Collection[str],
    cache: object = None,
) -> None:
    """Warn NoEffectWarning, once per kind, for what this run's settings do not do.

    *members* are the ascending indices of the run's tasks (None: all),
    *used* the resources they use, *cache* the run's ``cache=``.
    """
    opts = snap.columns.opts
    noted: Sequence[int] = snap.with_notes
    if members is not None:
        noted = sorted(set(noted).intersection(members))
    # What every task would be asked is asked of its options' kinds. Tasks
    # without notes have options that ask for nothing, so all may be looked at.
    kinds = option_kinds(islice(opts, snap.n) if members is None else map(opts.__getitem__, noted))
    _warn_cache(snap, noted, any(o.cache for o in kinds), cache)
    if policy != "priority" and any(o.priority for o in kinds):
        prioritized = [i for i in noted if opts[i].priority]
        shown = (
            f"the policy key function {_name_of(policy)}"
            if callable(policy)
            else f"policy={policy!r}"
        )
        _warn(
            f"{_tasks(snap, prioritized)} set{'s' if len(prioritized) == 1 else ''} "
            f"priority=, which {shown} ignores: only "
            "policy='priority' starts tasks by priority (higher first); run with "
            "policy='priority', or leave priority= out"
        )
    if not resources:
        return
    # A run with no task to run uses nothing, and is not worth a warning.
    count = snap.n if members is None else len(members)
    unused = [name for name in resources if name not in used] if count else []
    if unused:
        it = "it" if len(unused) == 1 else "them"
        _warn(
            f"resources= gives {', '.join(map(repr, unused))}, but no task of the run uses "
            f"{it} (tasks left out by targets= do not count): a task takes a resource only "
            f"with uses={{{unused[0]!r}: amount}} in dag.add; add uses= to the tasks that "
            f"need {it}, or leave {it} out of resources="
        )
    if any(o.tags for o in kinds):
        _warn_tags(snap, [i for i in noted if opts[i].tags], resources)


def _warn_cache(snap: Snapshot, noted: Sequence[int], asked: bool, cache: object) -> None:
    """Warn when tasks ask for a cache the run lacks, or the run's cache is
    asked for by none (*asked*: whether any task of *noted* asks)."""
    if asked and cache is None:
        opts = snap.columns.opts
        asking = [i for i in noted if opts[i].cache]
        _warn(
            f"{_tasks(snap, asking)} set{'s' if len(asking) == 1 else ''} cache=, but the run "
            "has no cache: every task runs; pass cache=trio_dag.Cache(path) (or another "
            "store) to the run, or leave cache= out of dag.add"
        )
    elif cache is not None and not asked:
        _warn(
            "the run has cache=, but no task of the run asks for it (tasks left out by "
            "targets= do not count): a task is cached only when added with "
            "dag.add(..., cache=True); add cache=True to the tasks to cache, or leave "
            "cache= out of the run"
        )


def _warn_tags(snap: Snapshot, noted: Sequence[int], resources: Mapping[str, float]) -> None:
    opts = snap.columns.opts
    tagged = []
    tag = ""
    for i in noted:
        o = opts[i]
        for t in o.tags:
            if t in resources and all(name != t for name, _ in o.uses):
                tag = tag or t
                tagged.append(i)
                break
    if tagged:
        _warn(
            f"{_tasks(snap, tagged)} {'has' if len(tagged) == 1 else 'have'} a tag named "
            f"like a resource of the run ({tag!r}) but no uses= of it: tags limit "
            f"nothing; to take the resource, pass uses={{{tag!r}: amount}} to dag.add"
        )


def _tasks(snap: Snapshot, tasks: list[int]) -> str:
    """How a warning names *tasks*: the first few, and how many there are."""
    names = ", ".join(repr(snap.name(i)) for i in tasks[:_SHOWN])
    if len(tasks) == 1:
        return f"task {names}"
    if len(tasks) <= _SHOWN:
        return f"tasks {names}"
    return f"{len(tasks)} tasks ({names}, ...)"


def _name_of(fn: Callable[..., object]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _warn(message: str) -> None:
    """Warn *message*, pointing at the user's frame (``stacklevel`` counted here)."""
    level = 1
    frame = sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PASSED):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, NoEffectWarning, stacklevel=level)

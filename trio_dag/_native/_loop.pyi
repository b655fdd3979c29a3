"""Types of the compiled loop ``trio_dag._native._loop``; the twin is ``_loop_py`` beside it."""

import contextvars
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

from trio_dag._snapshot import Snapshot

class Loop:
    """One run's ledger and fast loop (see ``trio_dag._native._loop_py.Loop``)."""

    fast: bool
    stopped: bool
    on_suspend: Callable[[], None]
    before_end: Callable[[], None] | None
    unlooked: bytearray | None
    on_return: Callable[[int, Any], Any] | None
    handback: bytearray | None
    on_join: Callable[[int, Any], bool] | None
    now: Callable[[], float]
    outputs: list[Any]
    start: array[float]
    end: array[float]
    attempts: array[int]
    end_order: array[int]
    extra: list[tuple[int, int, float, float]]
    busy: float
    live: int
    peak: int
    ends: int
    since_checkpoint: int
    kinds: dict[Any, int]
    why: int
    began: float
    coro: Any
    trap: Any
    ctx: contextvars.Context | None
    error: BaseException | None

    def __init__(
        self,
        snap: Snapshot,
        st: Any,
        now: Callable[[], float],
        fast: bool,
        on_suspend: Callable[[], None],
    ) -> None: ...
    def begin(self, v: int) -> float: ...
    def finish(self, v: int, began: float, retries: int) -> int: ...
    def begin_batch(self, v: int, began: float, first: bool) -> int: ...
    def finish_batch(self, v: int, began: float, retries: int) -> int: ...
    def end_batch(self, began: float) -> int: ...
    def kind(self, fn: Callable[..., Any]) -> int: ...
    def grow(self, cols: Any, n: int) -> None: ...
    def run(self, v: int, slot: list[Any]) -> int: ...
    def drive(self, slot: list[Any]) -> Awaitable[int]: ...

# Loop.grow as a C function, for the compiled core's Grower (compiled only).
grow_capsule: object

"""Task bodies for the executor tests, at module level so that worker processes
find them by name (a test module's local functions cannot be pickled)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import trio_dag


def square(x: int, *, plus: int = 0) -> int:
    return x * x + plus


def pid() -> int:
    return os.getpid()


def lock() -> Any:
    """An output pickle cannot copy."""
    return threading.Lock()


def fail(message: str) -> None:
    raise ValueError(message)


def nap_then_mark(seconds: float, marker: str) -> str:
    """Sleep, then write *marker*: a body that was killed never writes it."""
    time.sleep(seconds)
    Path(marker).write_text("ran to its end")
    return marker


def pid_then_wait(pid_file: str, seconds: float) -> int:
    """Write this worker's pid where the test reads it, then wait to be killed.

    A second attempt (after the test killed the first one's worker) finds the
    file written and returns at once.
    """
    path = Path(pid_file)
    if path.exists():
        return os.getpid()
    path.write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@trio_dag.batched(max_size=8)
def lengths(items: list[str]) -> list[tuple[int, int]]:
    """A sync batched function: each item's length, with the pid of the call."""
    me = os.getpid()
    return [(len(item), me) for item in items]


def whoami() -> str:
    """The task's name, or why there is none (in a worker process)."""
    try:
        return trio_dag.current_task().name
    except RuntimeError as exc:
        return f"no task: {exc}"


def started_then_mark(started: str, seconds: float, marker: str) -> str:
    """Say it started (a file), sleep, then write *marker*."""
    Path(started).write_text(str(os.getpid()))
    return nap_then_mark(seconds, marker)

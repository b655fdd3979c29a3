"""Types of ``_sqlwriter``: the SQLite cache's writer as a C thread (its twin: ``_cache_file``)."""

from collections.abc import Callable
from os import PathLike
from typing import Any

def available() -> bool:
    """Whether every SQLite function the writer needs was found in the library
    Python's ``sqlite3`` module uses."""

class Writer:
    """The C writer thread of one ``Cache`` (see the module's docstring)."""

    @property
    def token(self) -> str: ...
    def __init__(
        self,
        path: str | PathLike[str],
        pending: dict[bytes, bytes],
        token: str,
        last: Any,
        unpend: Callable[[dict[bytes, bytes], list[bytes], list[bytes]], None],
        interval: float,
        gap: float,
        busy_timeout: float,
    ) -> None: ...
    def put(self, keys: list[bytes], entries: list[bytes]) -> None:
        """Queue rows: each key's first 8 bytes (its id) and its entry (copied)."""
    def pending(self) -> dict[bytes, bytes]:
        """The entries put and not yet committed: key to entry."""
    def touch(self, now: float, keys: list[bytes]) -> None:
        """Queue lookup hits to mark used at *now*."""
    def flush(self) -> None:
        """Commit everything queued; return when that commit has ended (or failed)."""
    def stop(self) -> None:
        """Commit what is queued, close the connection and end the thread; idempotent."""
    @property
    def alone(self) -> bool:
        """False once another connection was seen to write the file."""
    @alone.setter
    def alone(self, value: bool) -> None: ...
    @property
    def commits(self) -> int:
        """Commits ended."""
    @property
    def error(self) -> BaseException | None:
        """The exception of the commit that failed, as ``sqlite3`` raises it; or None."""
    @property
    def running(self) -> bool:
        """Whether the thread has not ended."""

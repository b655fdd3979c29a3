"""Helpers of the check_run tests: a report with some answers forged, and the check that
check_run rejects a forged run with the right rule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

import trio_dag
from trio_dag.events import Event
from trio_dag.testing import RULES, check_run


class Doctored:
    """A real report with some answers replaced."""

    def __init__(self, report: trio_dag.RunReport, **answers: Any) -> None:
        self._report = report
        self._answers = answers

    def __getattr__(self, name: str) -> Any:
        if name in self._answers:
            return self._answers[name]
        return getattr(self._report, name)

    def __getitem__(self, task: Any) -> Any:
        if "getitem" in self._answers:
            return self._answers["getitem"](task)
        return self._report[task]


def rejects(
    rule: str,
    task: str | tuple[str, ...],
    dag: trio_dag.DAG,
    report: Any,
    events: Iterable[Event] | None,
    **options: Any,
) -> str:
    """check_run raises the AssertionError of *rule*, naming *task* (or one of them)."""
    with pytest.raises(AssertionError) as info:
        check_run(dag, report, events, **options)
    message = str(info.value)
    assert message.startswith(f"rule {rule!r} broken:"), message
    tasks = (task,) if isinstance(task, str) else task
    assert any(repr(t) in message for t in tasks), message
    assert RULES[rule] in message
    return message

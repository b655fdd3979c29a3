"""The suite's own guard (tests/conftest.py): a trio.Cancelled that leaves a test
while no scope around it is cancelled fails that test; pytest-trio alone would
count it as passed, the rest of the test never run."""

from __future__ import annotations

import functools

import pytest
import trio
from conftest import _failing_on_stray_cancelled, _only_cancelled
from trio.testing import MockClock


async def _leaks(how: str) -> None:
    """Let out a Cancelled that the test's own scope raised, alone or in a group."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as exc:
            stray = exc
    if how == "alone":
        raise stray
    if how == "group":
        raise BaseExceptionGroup("from a nursery", [BaseExceptionGroup("inner", [stray])])
    raise BaseExceptionGroup("mixed", [stray, ValueError("its own error")])


@pytest.mark.parametrize("how", ["alone", "group"])
def test_a_stray_cancelled_fails_the_test_it_leaves(how: str) -> None:
    guarded = _failing_on_stray_cancelled(_leaks)
    with pytest.raises(AssertionError, match=r"trio\.Cancelled left the test") as info:
        trio.run(functools.partial(guarded, how=how))
    assert info.value.__cause__ is not None and _only_cancelled(info.value.__cause__)


def test_a_group_with_another_error_leaves_as_it_is() -> None:
    guarded = _failing_on_stray_cancelled(_leaks)
    with pytest.raises(BaseExceptionGroup) as info:
        trio.run(functools.partial(guarded, how="mixed"))
    assert info.group_contains(ValueError)


def test_a_cancellation_from_a_scope_around_the_test_goes_on() -> None:
    # As when a fixture crashes and pytest-trio cancels the test.
    async def sleeps() -> None:
        await trio.sleep(10)

    guarded = _failing_on_stray_cancelled(sleeps)

    async def main() -> bool:
        with trio.move_on_after(1) as scope:
            await guarded()
        return scope.cancelled_caught

    assert trio.run(main, clock=MockClock(autojump_threshold=0))

"""gps_monitor.service.wait_until_set: the one wait-with-timeout of the service loops (NATS pull
loop, web hub and live sessions, command dispatcher, JT/T 808 publisher, demo)."""

from __future__ import annotations

import asyncio

import pytest

from gps_monitor.service import wait_until_set


async def test_it_says_whether_the_event_was_set_within_the_timeout() -> None:
    event = asyncio.Event()
    assert await wait_until_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_until_set(event, 5.0) is True
    assert await wait_until_set(event, 0.0) is True  # already set


async def test_a_cancellation_that_comes_as_the_event_is_set_is_not_dropped() -> None:
    """asyncio.wait_for of Python 3.11 returns normally here (gh-86296): a loop built on it
    went on after its task was cancelled, and shutdown waited for it forever."""
    for _ in range(20):
        event = asyncio.Event()
        waiter = asyncio.create_task(wait_until_set(event, 5.0))
        await asyncio.sleep(0)  # the waiter is waiting
        event.set()
        waiter.cancel()  # in the same loop iteration as the set
        with pytest.raises(asyncio.CancelledError):
            await waiter

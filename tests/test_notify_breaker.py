"""The notify service's per-channel circuit breaker (notify/breaker.py, notify/worker.py): real
Mosquitto, real PostgreSQL, the real HTTP receiver of tests/notify_helpers.py; the attempts are
counted in ``notify_attempts``. The state machine alone is stepped with a hand-driven clock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from notify_helpers import SECRETS, Receiver, running_receiver
from test_notify_worker import (
    LOOPBACK,
    add_channel,
    alarm_message,
    allowing,
    deliveries,
    fast,
    publish,
    running_worker,
    wait_status,
)
from web_helpers import World, make_world

from gps_monitor.config import Settings
from gps_monitor.db import notify as store
from notify.breaker import BreakerState, CircuitBreaker, Transition


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A deployment that allows its own loopback network (the receivers run on 127.0.0.1)."""
    return allowing(settings, LOOPBACK)


@pytest.fixture
async def world(pool: asyncpg.Pool, settings: Settings) -> World:
    return await make_world(pool, settings)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver


async def attempts_of(pool: asyncpg.Pool, channel_id: int) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM notify_attempts a JOIN notify_deliveries d "
            "ON d.id = a.delivery_id WHERE d.channel_id = $1",
            channel_id,
        )
    )


async def wait_attempts(pool: asyncpg.Pool, channel_id: int, count: int) -> int:
    deadline = time.monotonic() + 15
    while (got := await attempts_of(pool, channel_id)) < count:
        assert time.monotonic() < deadline, f"expected {count} attempts, got {got}"
        await asyncio.sleep(0.05)
    return got


async def webhook(pool: asyncpg.Pool, receiver: Receiver, name: str) -> int:
    return await add_channel(
        pool,
        "webhook",
        {"url": receiver.url("webhook", name)},
        secret=SECRETS["webhook"],
        name=name,
    )


async def test_a_dead_channel_opens_its_breaker_and_its_backlog_goes_out_after_a_probe(
    pool: asyncpg.Pool,
    settings: Settings,
    world: World,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="notify.worker")
    settings = fast(
        settings,
        breaker_failures=3,
        # well above what the checks between two probes take on a loaded machine (publishing
        # and delivering 10 alarms to the live channel plus the 0.3 s and 1.0 s waits): with
        # 2 s a probe could come in the middle of them and add an attempt they say is not made
        breaker_probe_interval_s=5.0,
        max_attempts=20,
        retry_initial_delay_s=0.1,
        retry_max_delay_s=0.2,
        channel_concurrency=2,
        rescan_interval_s=0.2,
    )
    receiver.mode["dead"] = "500"
    dead = await webhook(pool, receiver, "dead")
    live = await webhook(pool, receiver, "live")
    first = [alarm_message(world, key=f"a{i}") for i in range(10)]
    async with running_worker(settings):
        await publish(settings, *first)
        await receiver.wait_for("live", 10)
        opened_with = await wait_attempts(pool, dead, 3)
        await asyncio.sleep(1.0)  # less than the probe interval: nothing more goes to it
        # 3 failures open it; at most one more was in flight (2 senders)
        stopped_at = await attempts_of(pool, dead)
        assert opened_with <= stopped_at <= 3 + 1
        # live channels keep delivering while it is open; the dead one is not attempted
        second = [alarm_message(world, key=f"b{i}") for i in range(10)]
        await publish(settings, *second)
        await receiver.wait_for("live", 20)
        await asyncio.sleep(0.3)
        assert await attempts_of(pool, dead) == stopped_at
        rows = await deliveries(pool, dead)
        assert len(rows) == 20 and all(r["status"] == "pending" for r in rows)
        # the rows say why they wait: those marked in bulk and those recorded while open
        waiting = [r for r in rows if r["attempts"] == 0]
        assert len(waiting) >= 20 - stopped_at
        assert all(
            r["last_reply"].startswith("deferred: channel breaker open after 3 consecutive")
            and "unsuccessful answer, code 500" in r["last_reply"]
            for r in waiting
        ), [r["last_reply"] for r in waiting]
        # open: one probe per interval (it fails: 500), not one attempt per delivery
        await wait_attempts(pool, dead, stopped_at + 1)
        await asyncio.sleep(1.0)
        assert await attempts_of(pool, dead) == stopped_at + 1
        # the receiver comes back: the next probe closes the breaker, the backlog goes out
        receiver.mode["dead"] = "ok"
        sent = await wait_status(pool, dead, "sent", 20, timeout_s=30)
        live_sent = await wait_status(pool, live, "sent", 20)
    assert len(sent) == 20
    assert {r.body["alarm"]["dedup_key"] for r in receiver.of("dead")} == {
        m["dedup_key"] for m in first + second
    }
    assert len(receiver.of("live")) == len(live_sent) == 20
    assert all(r["attempts"] == 1 for r in live_sent)
    assert await attempts_of(pool, dead) == stopped_at + 1 + 20  # each delivery once more
    logged = [r.getMessage() for r in caplog.records]
    assert any("'dead'" in m and "breaker open after 3 consecutive" in m for m in logged)
    assert any("'dead'" in m and "breaker closed" in m for m in logged)
    assert not any("'live'" in m and "breaker" in m for m in logged)


async def test_a_hanging_channel_frees_its_queue_and_records_new_deliveries_as_deferred(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    settings = fast(
        settings,
        send_timeout_s=0.5,
        breaker_failures=2,
        breaker_probe_interval_s=60.0,
        max_attempts=5,
        channel_concurrency=2,
    )
    receiver.mode["hang"] = "hang"
    hang = await webhook(pool, receiver, "hang")
    await webhook(pool, receiver, "live")
    async with running_worker(settings) as worker:
        await publish(settings, *[alarm_message(world, key=f"a{i}") for i in range(30)])
        await receiver.wait_for("live", 30)
        await wait_attempts(pool, hang, 2)
        sender = worker.senders[hang]
        deadline = time.monotonic() + 5
        while sender.breaker.state is not BreakerState.OPEN:
            assert time.monotonic() < deadline, "breaker did not open"
            await asyncio.sleep(0.05)
        # 2 timeouts opened it; the other sender may have started one more attempt meanwhile
        await asyncio.sleep(1.0)  # twice the send timeout: that one has ended
        stopped_at = await attempts_of(pool, hang)
        assert 2 <= stopped_at <= 3 and receiver.counts["hang"] == stopped_at
        # nothing held for it in memory: no queued deliveries, no retry timers
        assert sender.queue.qsize() == 0 and not sender.timers and not sender.held
        await publish(settings, *[alarm_message(world, key=f"b{i}") for i in range(5)])
        await receiver.wait_for("live", 35)
        await asyncio.sleep(1.0)  # an attempt would have been recorded by now
        assert await attempts_of(pool, hang) == stopped_at
        assert receiver.counts["hang"] == stopped_at
        rows = await deliveries(pool, hang)
    assert len(rows) == 35 and all(r["status"] == "pending" for r in rows)
    late = [r for r in rows if r["dedup_key"].endswith(tuple(f":b{i}" for i in range(5)))]
    assert len(late) == 5
    assert all(r["last_reply"].startswith("deferred: channel breaker open") for r in late)
    assert all("no answer within 0.5 s" in r["last_reply"] for r in late)


async def test_editing_a_channel_closes_its_breaker_without_waiting_for_the_probe(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    settings = fast(settings, breaker_failures=2, breaker_probe_interval_s=600.0, max_attempts=5)
    # refused: nothing listens on port 9 of localhost
    channel = await add_channel(
        pool, "webhook", {"url": "http://127.0.0.1:9/hook"}, secret=SECRETS["webhook"]
    )
    async with running_worker(settings) as worker:
        await publish(settings, *[alarm_message(world, key=f"a{i}") for i in range(4)])
        await wait_attempts(pool, channel, 2)
        await asyncio.sleep(0.5)
        assert worker.senders[channel].breaker.state is BreakerState.OPEN
        attempted = await attempts_of(pool, channel)
        assert attempted < 4 * 2
        await store.update_channel(
            pool,
            channel,
            name="fixed",
            config={"url": receiver.url("webhook", "fixed")},
            secret=SECRETS["webhook"],
            enabled=True,
        )
        await wait_status(pool, channel, "sent", 4)
    assert len(receiver.of("fixed")) == 4


def test_breaker_state_machine() -> None:
    now = [100.0]
    breaker = CircuitBreaker(failures_to_open=3, probe_interval_s=30.0, clock=lambda: now[0])
    assert breaker.record(False, "unsuccessful answer, code 500") is None
    assert breaker.record(True) is None  # a success resets the count
    assert breaker.record(False, "x") is None and breaker.record(False, "x") is None
    assert breaker.allows()
    assert breaker.record(False, "no answer within 10 s") is Transition.OPENED
    assert not breaker.allows() and not breaker.probe_due()
    assert "after 3 consecutive failed attempts (last: no answer within 10 s)" in breaker.reason()
    assert breaker.record(False, "late") is None  # in flight when it opened: stays open
    now[0] += 30.0
    assert breaker.probe_due()
    breaker.start_probe()
    assert breaker.state is BreakerState.HALF_OPEN and not breaker.probe_due()
    assert breaker.record(False, "refused") is Transition.PROBE_FAILED
    assert not breaker.probe_due()
    now[0] += 29.0
    assert not breaker.probe_due()
    now[0] += 1.0
    breaker.start_probe()
    breaker.cancel_probe()  # nothing was due to probe with: wait another interval
    assert breaker.state is BreakerState.OPEN and not breaker.probe_due()
    now[0] += 30.0
    breaker.start_probe()
    assert breaker.record(True) is Transition.CLOSED
    assert breaker.allows() and breaker.consecutive_failures == 0
    with pytest.raises(RuntimeError, match="expected state open to start a probe, got closed"):
        breaker.start_probe()

"""`gps-monitor notify` with ``bus.transport = nats``: the alarm events come from the JetStream
alarms stream through the durable consumer ``notify`` (a private nats-server, the real
PostgreSQL, a real HTTP receiver). Each alarm becomes its deliveries exactly once: across a
restart, for a message a crashed notify had received and not acknowledged, and for a message
published twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats
import pytest
from nats_helpers import PrivateNats, nats_server  # noqa: F401  (fixture)
from notify_helpers import SECRETS, Receiver, running_receiver
from test_notify_worker import LOOPBACK, add_channel, alarm_message, allowing, fast, wait_status
from web_helpers import World, make_world

from gps_monitor import topics
from gps_monitor.bus.nats_durable import NatsDurableTransport
from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.config import BusSettings, Settings
from gps_monitor.db import notify as store
from notify.worker import NotifyWorker, alarm_transport


@pytest.fixture
def settings(settings: Settings, nats_server: PrivateNats) -> Settings:  # noqa: F811
    bus = BusSettings(transport="nats", nats_url=nats_server.url, client_name="notify-test")
    return fast(allowing(settings.model_copy(update={"bus": bus}), LOOPBACK))


@pytest.fixture
async def world(pool: asyncpg.Pool, settings: Settings) -> World:
    return await make_world(pool, settings)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, ack_wait_s: float = 60.0) -> AsyncIterator[None]:
    transport = alarm_transport(settings)
    assert isinstance(transport, NatsDurableTransport)
    transport.config.ack_wait = ack_wait_s
    worker = NotifyWorker(settings, transport)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 15)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(settings: Settings, *messages: dict[str, Any]) -> None:
    """JetStream-publish each alarm message on its subject (as the rules worker does)."""
    nc = await nats.connect(settings.bus.nats_url)
    try:
        js = nc.jetstream()
        for message in messages:
            topic = topics.alarm_topic(
                message["company_id"],
                message["vehicle_id"],
                message["alarm_type"],
                settings.mqtt.topic_prefix,
            )
            await js.publish(NatsNames.to_subject(topic), json.dumps(message).encode())
    finally:
        await nc.close()


async def consumer_counts(settings: Settings) -> tuple[int, int]:
    """(messages not yet delivered, delivered and not acknowledged) of the consumer."""
    nc = await nats.connect(settings.bus.nats_url)
    try:
        stream = NatsNames(settings.mqtt.topic_prefix).alarms_stream
        info = await nc.jetstream().consumer_info(stream, "notify")
        return info.num_pending or 0, info.num_ack_pending or 0
    finally:
        await nc.close()


async def test_alarms_become_deliveries_exactly_once_across_restarts_and_a_crash(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    hook = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "wh")}, secret=SECRETS["webhook"]
    )
    opened = alarm_message(world, key="k1")
    async with running_worker(settings):
        await publish(settings, opened, opened)  # the second one as a redelivery would be
        await receiver.wait_for("wh", 1)
        await wait_status(pool, hook, "sent")
    assert await consumer_counts(settings) == (0, 0)  # both acknowledged after the commit

    # published while notify is away: the durable consumer keeps them
    closed = alarm_message(world, key="k1", event="closed")
    await publish(settings, closed)
    # a notify that received it and crashed before its commit (never acknowledged)
    nc = await nats.connect(settings.bus.nats_url)
    stream = NatsNames(settings.mqtt.topic_prefix).alarms_stream
    crashed = await nc.jetstream().pull_subscribe_bind("notify", stream=stream)
    taken = await crashed.fetch(1, timeout=5)
    assert [json.loads(m.data)["event"] for m in taken] == ["closed"]
    await nc.close()
    assert await consumer_counts(settings) == (0, 1)

    second = alarm_message(world, vehicle=1, key="k2")
    async with running_worker(settings):
        await publish(settings, second)
        await wait_status(pool, hook, "sent", count=2)
    # the closed event waits for its ack wait (60 s); a notify with a short one gets it
    async with running_worker(settings, ack_wait_s=1.0):
        await wait_status(pool, hook, "sent", count=3, timeout_s=20)
        await asyncio.sleep(0.5)
    rows = await store.list_deliveries(pool, channel_id=hook)
    assert sorted((r["dedup_key"], r["event"]) for r in rows) == sorted(
        [
            (opened["dedup_key"], "opened"),
            (opened["dedup_key"], "closed"),
            (second["dedup_key"], "opened"),
        ]
    )
    assert len(receiver.of("wh")) == 3
    assert await consumer_counts(settings) == (0, 0)


async def test_the_notify_service_runs_on_nats_without_an_mqtt_broker(settings: Settings) -> None:
    from notify.cli import serve

    no_broker = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"host": ""})})
    ready = asyncio.Event()
    task = asyncio.create_task(serve(no_broker, ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

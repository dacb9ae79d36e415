"""The NATS JetStream transport on a private nats-server and the real PostgreSQL: provisioning,
partitions split between processes and moved when one stops, fencing of a taken-over owner,
terminals publishing MQTT to NATS's MQTT listener, JetStream-acknowledged publishing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
import paho.mqtt.client as paho
import pytest
from nats.aio.client import Client as NatsClient
from nats_helpers import PrivateNats, bus_settings, nats_server  # noqa: F401  (fixture)

from gps_monitor.bus.base import Delivery, FencedOut, TransportError
from gps_monitor.bus.consumer import BatchConsumer, Outcome
from gps_monitor.bus.fencing import PartitionFence
from gps_monitor.bus.nats_names import NatsNames, Stage
from gps_monitor.bus.nats_transport import NatsSink, NatsSource, provision
from gps_monitor.bus.partition import partition_of
from gps_monitor.config import Settings

P = 8
TERMINALS = [f"T{i:03d}" for i in range(40)]


@dataclass
class Process:
    """One consuming 'process': its own connection, source and consumer loop."""

    name: str
    nc: NatsClient
    source: NatsSource
    received: list[Delivery] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def consume(self) -> None:
        while True:
            batch = await self.source.next_batch(500, 0.02)
            self.received += batch
            await self.source.ack(batch)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.source.stop()
        await self.source.fencer.close()
        await self.nc.close()


@pytest.fixture
async def start(
    settings: Settings,
    nats_server: PrivateNats,  # noqa: F811
) -> AsyncIterator[Callable[..., object]]:
    started: list[Process] = []

    async def start_process(
        name: str, stage: Stage = "ingest", consume: bool = True, max_buffered: int = 10_000
    ) -> Process:
        s = bus_settings(settings, nats_server, name, partitions=P)
        nc = await nats.connect(nats_server.url)
        fence = PartitionFence(s.database, stage, name)
        source = NatsSource(nc, s, stage, fence, max_buffered=max_buffered)
        await source.start()
        process = Process(name, nc, source)
        if consume:
            process.task = asyncio.create_task(process.consume())
        started.append(process)
        return process

    nc = await nats.connect(nats_server.url)
    provisioner = bus_settings(settings, nats_server, "provisioner", partitions=P)
    await provision(nc, provisioner)
    await provision(nc, provisioner)  # idempotent
    await nc.close()
    yield start_process
    for process in started:
        with contextlib.suppress(Exception):
            await process.stop()


async def _publish_round(nc: NatsClient, prefix: str, n: int) -> None:
    js = nc.jetstream()
    for terminal in TERMINALS:
        await js.publish(NatsNames.to_subject(f"{prefix}gps/v1/{terminal}/position"), b"%d" % n)


async def _eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_provisioned_consumers_are_pinned_per_partition(
    start: Callable[..., object],
    settings: Settings,
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        names = NatsNames(settings.mqtt.topic_prefix)
        for stage in ("ingest", "rules"):
            info = await js.consumer_info(names.stage_stream(stage), names.consumer(stage, 5))
            raw = info.config.as_dict()
            assert info.config.durable_name == f"{stage}-p05"
            assert set(raw["filter_subjects"]) == set(names.partition_filter(stage, 5))
        reply = await nc.request(
            f"$JS.API.CONSUMER.INFO.{names.inbound_stream}.ingest-p05", b"", timeout=5
        )
        assert b'"priority_policy":"pinned_client"' in reply.data
        assert b'"priority_timeout":2000000000' in reply.data
        stream = await js.stream_info(names.inbound_stream)
        assert stream.config.max_msgs in (None, -1) and stream.config.max_bytes in (None, -1)
    finally:
        await nc.close()


async def test_partitions_split_between_two_processes_and_move_when_one_dies(
    start: Callable[..., object],
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    a: Process = await start("proc-a")  # type: ignore[misc]
    publisher = await nats.connect(nats_server.url)
    try:
        await _eventually(lambda: a.source.owned_partitions == frozenset(range(P)))
        await _publish_round(publisher, a.source.names.prefix, 0)
        b: Process = await start("proc-b")  # type: ignore[misc]
        # each partition ends with exactly one owner, both processes own some
        await _eventually(
            lambda: (
                a.source.owned_partitions | b.source.owned_partitions == frozenset(range(P))
                and not a.source.owned_partitions & b.source.owned_partitions
                and bool(a.source.owned_partitions)
                and bool(b.source.owned_partitions)
            )
        )
        for n in range(1, 4):
            await _publish_round(publisher, a.source.names.prefix, n)
        await _eventually(lambda: len(a.received) + len(b.received) >= 4 * len(TERMINALS))
        # a terminal's messages after the split went to the owner of its partition only
        for process in (a, b):
            for d in process.received:
                if int(d.payload) >= 1:
                    p = partition_of(d.topic.split("/")[-2], P)
                    assert p == d.partition and p in process.source.owned_partitions
        # b dies (stops pulling without a word): its partitions move to a, nothing is lost
        b_owned = b.source.owned_partitions
        assert b.task is not None
        b.task.cancel()
        await b.source.stop(leave=False)
        await b.nc.close()
        for n in range(4, 8):
            await _publish_round(publisher, a.source.names.prefix, n)
        await _eventually(lambda: b_owned <= a.source.owned_partitions, timeout_s=30)
        prefix = a.source.names.prefix
        expected = {(f"{prefix}gps/v1/{t}/position", n) for t in TERMINALS for n in range(8)}
        await _eventually(
            lambda: {(d.topic, int(d.payload)) for d in a.received + b.received} >= expected,
            timeout_s=30,
        )
        got = {(d.topic, int(d.payload)) for d in a.received + b.received}
        assert got == expected
    finally:
        await publisher.close()


async def test_a_taken_over_owner_is_fenced_out(
    start: Callable[..., object], pool: asyncpg.Pool
) -> None:
    a: Process = await start("proc-a", consume=False)  # type: ignore[misc]
    await _eventually(lambda: a.source.owned_partitions == frozenset(range(P)))
    async with pool.acquire() as conn, conn.transaction():
        await a.source.fence(conn, frozenset({0, 1}))  # still ours: passes
    # another process takes partition 1 (as after a takeover while a was stalled)
    other = PartitionFence(a.source.settings.database, "ingest", "proc-b")
    await other.take(frozenset({1}))
    await other.close()
    async with pool.acquire() as conn:
        with pytest.raises(FencedOut, match=r"\[1\]"):
            async with conn.transaction():
                await a.source.fence(conn, frozenset({0, 1}))
        with pytest.raises(FencedOut, match="no longer ours"):
            async with conn.transaction():
                await a.source.fence(conn, frozenset({1}))  # forgotten since


async def test_terminals_publish_mqtt_to_the_nats_listener_and_rules_receive_sink_output(
    start: Callable[..., object],
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    ingest: Process = await start("proc-a")  # type: ignore[misc]
    rules: Process = await start("proc-a", stage="rules")  # type: ignore[misc]
    await _eventually(lambda: ingest.source.owned_partitions == frozenset(range(P)))
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="terminal-T007")
    assert nats_server.mqtt_port is not None
    client.connect("127.0.0.1", nats_server.mqtt_port)
    client.loop_start()
    try:
        prefix = ingest.source.names.prefix
        info = client.publish(f"{prefix}gps/v1/T007/position", b'{"n": 1}', qos=1)
        info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    await _eventually(lambda: bool(ingest.received))
    (delivery,) = ingest.received
    assert delivery.topic == f"{prefix}gps/v1/T007/position"
    assert delivery.partition == partition_of("T007", P)
    assert delivery.payload == b'{"n": 1}' and delivery.message_id is not None
    # what ingest publishes (positions/v2/<p>) reaches the rules stage's partition p
    sink = NatsSink(ingest.nc)
    await sink.publish([(f"{prefix}positions/v2/{delivery.partition}", b"[]")])
    await _eventually(lambda: bool(rules.received))
    assert [(d.topic, d.partition) for d in rules.received] == [
        (f"{prefix}positions/v2/{delivery.partition}", delivery.partition)
    ]


async def test_a_process_that_leaves_gives_up_its_partitions_at_once(
    start: Callable[..., object],
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    a: Process = await start("proc-a")  # type: ignore[misc]
    b: Process = await start("proc-b")  # type: ignore[misc]
    await _eventually(
        lambda: (
            a.source.owned_partitions | b.source.owned_partitions == frozenset(range(P))
            and bool(b.source.owned_partitions)
        )
    )
    b_owned = b.source.owned_partitions
    assert b.task is not None
    b.task.cancel()
    await b.source.stop()  # leave: unpinned now, not after the owner timeout
    names = a.source.names
    for p in b_owned:
        reply = await a.nc.request(
            f"$JS.API.CONSUMER.INFO.{names.inbound_stream}.{names.consumer('ingest', p)}",
            b"",
            timeout=5,
        )
        groups = json.loads(reply.data)["priority_groups"]
        pinned = [g.get("pinned_client_id") for g in groups]
        assert pinned in ([None], [""]) or p in a.source.owned_partitions, (p, pinned)
    await _eventually(lambda: b_owned <= a.source.owned_partitions)


async def test_a_process_that_falls_behind_receives_no_more_than_its_buffer(
    start: Callable[..., object],
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    """Flow control: while the worker takes nothing, the source holds at most ``max_buffered``
    deliveries and keeps its partitions (pulls that bring nothing renew the pins); once the
    worker takes again the rest comes, each message once."""
    a: Process = await start("proc-a", consume=False, max_buffered=5 * P)  # type: ignore[misc]
    publisher = await nats.connect(nats_server.url)
    try:
        await _eventually(lambda: a.source.owned_partitions == frozenset(range(P)))
        prefix = a.source.names.prefix
        for n in range(10):
            await _publish_round(publisher, prefix, n)
        gains = [p.gains for p in a.source.partitions.values()]
        await asyncio.sleep(3 * a.source.timeout_s)  # pins last only one timeout unrenewed
        assert a.source.owned_partitions == frozenset(range(P))
        # kept, not lost and gained again (a regain would pass the line above too)
        assert [p.gains for p in a.source.partitions.values()] == gains
        assert 0 < len(a.source._in_flight) <= 5 * P
        assert sum(p.unacked for p in a.source.partitions.values()) == len(a.source._in_flight)
        a.task = asyncio.create_task(a.consume())
        await _eventually(lambda: len(a.received) >= 10 * len(TERMINALS), timeout_s=30)
        await asyncio.sleep(2 * a.source.ack_wait_s)  # a copy handed out again would come now
        got = sorted((d.topic, int(d.payload)) for d in a.received)
        expected = sorted((f"{prefix}gps/v1/{t}/position", n) for t in TERMINALS for n in range(10))
        assert got == expected
    finally:
        await publisher.close()


async def test_shares_add_up_to_the_buffer_while_partitions_move(
    start: Callable[..., object],
) -> None:
    """While another member has joined and the partitions it prefers have not moved yet, the
    process still pulls for all it owns: the buffer is shared over those too, so the shares add
    up to at most ``max_buffered`` (they were split over the preferred ones only: up to twice
    ``max_buffered`` with two members)."""
    a: Process = await start("proc-a", max_buffered=10 * P)  # type: ignore[misc]
    await _eventually(lambda: a.source.owned_partitions == frozenset(range(P)))
    source = a.source
    assert source._share == 10
    source._members["proc-b"] = time.monotonic()  # joined this instant: nothing released yet
    source._rebalance()
    preferred = [p for p in range(P) if source.prefers(p)]
    assert 0 < len(preferred) < P  # proc-b prefers some: a's moves are pending
    pulling = set(preferred) | source.owned_partitions
    assert pulling == set(range(P)) and not any(p.releasing for p in source.partitions.values())
    assert source._share * len(pulling) <= source.max_buffered
    assert source._share == 10


async def test_a_copy_redelivered_as_the_first_is_acknowledged_is_not_handed_out(
    settings: Settings,
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    """A copy the server sent just before our acknowledgement reached it arrives after the
    acknowledgement: it is acknowledged again, not handed out a second time. The copy is
    scheduled by a delayed NAK (as an ack wait running out would schedule it) and made to wait
    in the socket by blocking the event loop (as a busy worker does) until the delivery has been
    acknowledged."""
    s = bus_settings(settings, nats_server, "proc-a", partitions=1)
    # a long owner timeout: the pull request stays open (10 s) across the blocked loop
    s = s.model_copy(update={"bus": s.bus.model_copy(update={"owner_timeout_s": 30.0})})
    nc = await nats.connect(nats_server.url)
    await provision(nc, s)
    source = NatsSource(nc, s, "ingest", PartitionFence(s.database, "ingest", "proc-a"))
    await source.start()
    try:
        await _eventually(lambda: source.owned_partitions == frozenset({0}))
        # settled (a gained partition's deliveries are held for one ack wait): the message is
        # handed out at once, far from its own ack wait, whose copy would race the NAK below
        await _eventually(lambda: source.partitions[0].held is None, timeout_s=20)
        names = source.names
        info_subject = f"$JS.API.CONSUMER.INFO.{names.inbound_stream}.{names.consumer('ingest', 0)}"

        async def consumer_info() -> dict[str, Any]:
            reply = await nc.request(info_subject, b"", timeout=5)
            return json.loads(reply.data)  # type: ignore[no-any-return]

        topic = f"{names.prefix}gps/v1/T001/position"
        await nc.jetstream().publish(NatsNames.to_subject(topic), b"1")
        (delivery,) = await source.next_batch(10, 0.05)
        # (nats-server 2.15 may deliver a new message twice at once: counted from here)
        delivered_before = (await consumer_info())["delivered"]["consumer_seq"]
        await nc.publish(delivery.token[0], b'-NAK {"delay": 300000000}')  # a copy in 0.3 s
        await nc.flush()
        time.sleep(1.3)  # noqa: ASYNC251  (the blocked loop is the point: the copy waits)
        await source.ack([delivery])
        await asyncio.sleep(1.0)  # the copy is read now
        assert not source._queue and not source._in_flight
        info = await consumer_info()
        # the copy did come, and was acknowledged
        assert info["delivered"]["consumer_seq"] - delivered_before == 1, info["delivered"]
        assert info["num_ack_pending"] == 0, info
    finally:
        await source.stop()
        await source.fencer.close()
        await nc.close()


class _PublishesNowhere:
    """A step whose outcome goes to a subject no stream captures: its publish fails."""

    async def __call__(self, deliveries: list[Delivery], fence: object) -> Outcome:
        return Outcome(publish=[("nowhere/at/all", b"x")])

    async def reset(self) -> None:
        pass


async def test_a_failed_publish_ends_the_consumer_when_nothing_more_comes(
    start: Callable[..., object],
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    """A batch whose publish failed stays unacknowledged; once such batches fill the source's
    buffer it pulls nothing more, so the consumer raises the publish's error at once instead of
    waiting for a next batch that never comes (holding its partitions, doing nothing)."""
    a: Process = await start("proc-a", consume=False, max_buffered=P)  # type: ignore[misc]
    publisher = await nats.connect(nats_server.url)
    try:
        await _eventually(lambda: a.source.owned_partitions == frozenset(range(P)))
        await _eventually(lambda: all(p.held is None for p in a.source.partitions.values()))
        await _publish_round(publisher, a.source.names.prefix, 0)
        # one delivery per partition (its share), all in before the consumer starts
        await _eventually(lambda: len(a.source._queue) == P)
        consumer = BatchConsumer("test", _PublishesNowhere(), batch_limit=500, batch_wait_s=0.02)
        with pytest.raises(TransportError, match="JetStream publish failed"):
            await asyncio.wait_for(consumer.run(a.source, NatsSink(a.nc)), 20)
        assert all(p.unacked == 1 for p in a.source.partitions.values())  # none acknowledged
    finally:
        await publisher.close()

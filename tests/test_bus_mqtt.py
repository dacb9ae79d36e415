"""The MQTT transport on a real broker: every message arrives whole and in order however paho's
reads are chunked (bodies far larger than one 256 KiB read, runs of tiny ones), acknowledged
deliveries are gone for good and unacknowledged ones come again on the next session."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence

from ingest_helpers import drop_session, publish_raw

from gps_monitor.bus.base import Delivery, Sink, Source
from gps_monitor.bus.mqtt_transport import MqttTransport
from gps_monitor.config import Settings


class _Done(Exception):
    """Ends a session from inside (not a transport error: serve() lets it out)."""


def _transport(settings: Settings) -> MqttTransport:
    return MqttTransport(
        settings.mqtt,
        client_id=f"{settings.mqtt.client_id}-bus",
        subscriptions=[settings.mqtt.topic_prefix + "bus/+"],
        receive_maximum=1000,
    )


async def _receive(settings: Settings, count: int, *, ack: bool) -> list[Delivery]:
    """One session: receive ``count`` deliveries in batches, acknowledge them or not."""
    got: list[Delivery] = []

    async def session(source: Source, sink: Sink) -> None:
        while len(got) < count:
            batch = await source.next_batch(limit=37, wait_s=0.01)
            got.extend(batch)
            if ack:
                await source.ack(batch)
        # the broker must have read the last PUBACKs before the next session with this client
        # id takes the session over (Mosquitto drops what it has not read from the old
        # socket): a QoS 1 publish behind them on the same connection is acknowledged only
        # once they are read (a fixed 0.3 s pause was a guess a loaded machine can miss)
        await sink.publish([(settings.mqtt.topic_prefix + "barrier", b"")])
        raise _Done

    with contextlib.suppress(_Done):
        await _transport(settings).serve(session)
    return got


def _payloads() -> Sequence[bytes]:
    rng = random.Random(13)
    sizes = [rng.choice([0, 1, 2, 127, 128, 16_383, 16_384, 300_000, 700_000]) for _ in range(60)]
    sizes += [10] * 500  # many packets inside one read
    return [rng.randbytes(size) for size in sizes]


async def test_messages_arrive_whole_in_order_and_acknowledged_ones_never_again(
    settings: Settings,
) -> None:
    payloads = _payloads()
    client_id = f"{settings.mqtt.client_id}-bus"
    try:
        # subscribe once so the persistent session queues what is published meanwhile
        await _receive_nothing(settings)
        await publish_raw(settings, [(f"bus/{i % 3}", p) for i, p in enumerate(payloads)])
        got = await _receive(settings, len(payloads), ack=True)
        assert [d.payload for d in got] == list(payloads)
        assert [d.topic for d in got] == [
            f"{settings.mqtt.topic_prefix}bus/{i % 3}" for i in range(len(payloads))
        ]
        assert {d.partition for d in got} == {0}
        # fewer than the broker's in-flight window (20), so all are sent before any ack
        tail = [f"m{i}".encode() for i in range(12)]
        await publish_raw(settings, [("bus/1", p) for p in tail])
        first = await _receive(settings, len(tail), ack=False)
        assert [d.payload for d in first] == tail
        again = await _receive(settings, len(tail), ack=True)  # not acknowledged: again
        assert [d.payload for d in again] == tail
        await publish_raw(settings, [("bus/0", b"after")])
        last = await _receive(settings, 1, ack=True)  # acknowledged: never again
        assert [d.payload for d in last] == [b"after"]
    finally:
        await drop_session(settings, client_id)


async def _receive_nothing(settings: Settings) -> None:
    async def session(source: Source, sink: Sink) -> None:
        raise _Done

    with contextlib.suppress(_Done):
        await _transport(settings).serve(session)

"""The paho speed-ups and the grouped QoS 1 publish on the real broker: a burst larger than the
socket buffers (joined writes, partial sends) arrives whole and in order, ``publish_all``
returns only once every PUBACK is in (read by the PUBACK fast path, MQTT 5 and 3.1.1) and
fails as a whole when the connection is gone, and every client's socket has Nagle off."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from broker_helpers import PrivateBroker, deploy_settings
from ingest_helpers import wait_for
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gps_monitor import mqtt, paho_speed
from gps_monitor.config import Settings


async def _receive(sub: aiomqtt.Client, got: list[bytes], count: int) -> None:
    """Append the payloads ``sub`` receives to ``got`` until it holds ``count``."""
    async for message in sub.messages:
        assert isinstance(message.payload, bytes)
        got.append(message.payload)
        if len(got) == count:
            return


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_burst_beyond_the_socket_buffers_arrives_whole_in_order_and_all_acknowledged(
    settings: Settings, protocol: str
) -> None:
    settings = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"protocol_version": protocol})}
    )
    topic = f"{settings.mqtt.topic_prefix}burst"
    # 900 x 8 KiB = 7 MiB: far beyond one send, so joined packets are written in parts (fewer
    # than a stock Mosquitto's 1,000 queued messages per subscriber, beyond which it drops)
    payloads = [i.to_bytes(4, "big") + bytes([i % 251]) * 8192 for i in range(900)]
    got: list[bytes] = []
    async with mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-sub") as sub:
        await sub.subscribe(topic, qos=1)

        receiving = asyncio.create_task(_receive(sub, got, len(payloads)))
        async with mqtt.build_client(
            settings.mqtt, client_id=f"{settings.mqtt.client_id}-pub", max_inflight_messages=0
        ) as pub:
            paho_speed.speed_up(pub._client)
            tracker = mqtt.PubackTracker(pub)
            await tracker.publish_all([(topic, p) for p in payloads], timeout_s=60)
            assert tracker.in_flight == 0  # returned only once every PUBACK was in
            await asyncio.wait_for(receiving, 60)
    assert len(got) == len(payloads)
    assert got == payloads


async def test_publish_all_fails_as_a_whole_when_the_connection_is_lost(
    settings: Settings,
) -> None:
    topic = f"{settings.mqtt.topic_prefix}lost"
    async with mqtt.build_client(
        settings.mqtt, client_id=f"{settings.mqtt.client_id}-pub", max_inflight_messages=0
    ) as pub:
        tracker = mqtt.PubackTracker(pub)
        publishing = asyncio.get_running_loop().create_task(
            tracker.publish_all([(topic, b"x" * 1000) for _ in range(2000)], timeout_s=60)
        )
        await asyncio.sleep(0)  # queued, PUBACKs not in yet
        assert tracker.in_flight > 0
        tracker.fail_all("connection to the MQTT broker lost")
        with pytest.raises(mqtt.PublishError, match="connection to the MQTT broker lost"):
            await publishing
        assert tracker.in_flight == 0
    # on a client that is not connected paho refuses at once, and nothing stays waiting
    idle = mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-idle")
    tracker = mqtt.PubackTracker(idle)
    with pytest.raises(mqtt.PublishError, match="refused by paho"):
        await tracker.publish_all([(topic, b"a"), (topic, b"b")], timeout_s=5)
    assert tracker.in_flight == 0


async def test_every_client_built_here_has_nagle_off(settings: Settings) -> None:
    client: aiomqtt.Client = mqtt.build_client(
        settings.mqtt, client_id=f"{settings.mqtt.client_id}-nd"
    )
    async with client:
        sock = client._client.socket()
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_publish_all_without_pubacks_in_time_raises_publish_error_and_forgets_them(
    settings: Settings,
) -> None:
    # a timeout cancels the awaited group future: the call must still raise PublishError (the
    # consumer retries on it), not CancelledError, and leave no message id waiting
    topic = f"{settings.mqtt.topic_prefix}slow"
    async with mqtt.build_client(
        settings.mqtt, client_id=f"{settings.mqtt.client_id}-pub", max_inflight_messages=0
    ) as pub:
        tracker = mqtt.PubackTracker(pub)
        with pytest.raises(mqtt.PublishError, match="without PUBACK after 0 s"):
            await tracker.publish_all([(topic, b"a"), (topic, b"b")], timeout_s=0)
        assert tracker.in_flight == 0
        await tracker.publish_all([(topic, b"c")], timeout_s=10)  # the client still works
        assert tracker.in_flight == 0


async def test_a_puback_with_a_failure_reason_code_fails_publish_all(
    settings: Settings, tmp_path: Path
) -> None:
    # MQTT 5: Mosquitto answers a publish its ACL refuses with PUBACK 0x87 (not authorised);
    # that PUBACK is not a plain one, so it goes through paho's decoder and fails the batch
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\n", encoding="utf-8")
    broker = PrivateBroker(tmp_path, {"acl_file": str(acl)})
    broker.start()
    try:
        private = settings.mqtt.model_copy(
            update={"host": "127.0.0.1", "port": broker.port, "protocol_version": "5"}
        )
        async with mqtt.build_client(private, client_id=f"{private.client_id}-pub") as pub:
            paho_speed.speed_up(pub._client)
            tracker = mqtt.PubackTracker(pub)
            await tracker.publish_all([("ok/a", b"1"), ("ok/b", b"2")], timeout_s=10)
            with pytest.raises(mqtt.PublishError, match="refused the message"):
                await tracker.publish_all(
                    [("ok/c", b"3"), ("denied/d", b"4"), ("ok/e", b"5")], timeout_s=10
                )
            assert tracker.in_flight == 0
            await tracker.publish_all([("ok/f", b"6")], timeout_s=10)
    finally:
        broker.stop()


async def test_joined_writes_keep_qos_0_and_qos_2_publishes_whole_beside_qos_1(
    settings: Settings, tmp_path: Path
) -> None:
    # coalesce_writes joins QoS 1 publishes and PUBACKs, leaves QoS 0 (completed on write) and
    # goes through QoS 2's PUBREC/PUBREL exchange: a mixed burst arrives whole, each message
    # once. A private broker with the deploy limits: a stock Mosquitto (20 in flight) drops
    # QoS 1 messages for a subscriber this far behind, with paho's own writes just the same
    broker = PrivateBroker(tmp_path, deploy_settings())
    broker.start()
    private = settings.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})
    topic = f"{private.topic_prefix}mixed"
    sent = [(i % 3, i.to_bytes(4, "big") + b"m" * 2000) for i in range(300)]
    got: list[bytes] = []
    try:
        async with mqtt.build_client(private, client_id=f"{private.client_id}-sub") as sub:
            await sub.subscribe(topic, qos=2)

            receiving = asyncio.create_task(_receive(sub, got, len(sent)))
            async with mqtt.build_client(
                private, client_id=f"{private.client_id}-pub", max_inflight_messages=0
            ) as pub:
                paho_speed.speed_up(pub._client)
                infos = [pub._client.publish(topic, payload, qos=qos) for qos, payload in sent]
                await asyncio.wait_for(receiving, 30)
                # QoS 1 and 2 complete on the PUBACK / PUBCOMP: all of them come
                await wait_for(lambda: asyncio.sleep(0, all(i.is_published() for i in infos)), bool)
    finally:
        broker.stop()
    assert sorted(got) == sorted(payload for _, payload in sent)


@contextlib.asynccontextmanager
async def _tracker_on_a_private_broker(
    settings: Settings, tmp_path: Path, max_in_flight: int | None = None, protocol: str = "5"
) -> AsyncIterator[tuple[mqtt.PubackTracker, PrivateBroker, str]]:
    """A tracker (with a window of ``max_in_flight``, else the default) on a connected client
    of a private broker with the deploy limits (the test may freeze it with SIGSTOP: no PUBACK
    comes while it is stopped)."""
    broker = PrivateBroker(tmp_path, deploy_settings())
    broker.start()
    try:
        private = settings.mqtt.model_copy(
            update={"host": "127.0.0.1", "port": broker.port, "protocol_version": protocol}
        )
        async with mqtt.build_client(
            private, client_id=f"{private.client_id}-win", max_inflight_messages=0
        ) as pub:
            paho_speed.speed_up(pub._client)
            tracker = mqtt.PubackTracker(pub)
            if max_in_flight is not None:
                tracker.MAX_IN_FLIGHT = max_in_flight  # type: ignore[misc]
            try:
                yield tracker, broker, f"{private.topic_prefix}window"
            finally:
                if broker.proc is not None:
                    broker.proc.send_signal(signal.SIGCONT)
    finally:
        broker.stop()


def _messages(topic: str, n: int) -> list[tuple[str, bytes]]:
    return [(topic, i.to_bytes(4, "big")) for i in range(n)]


async def test_publish_all_beyond_the_65535_packet_identifiers_completes(
    settings: Settings, tmp_path: Path
) -> None:
    # MQTT 3.1.1 sets no limit on publishes in flight, and packet identifiers are 16 bits:
    # before the window, the 65,536th publish at once met an identifier still in flight and
    # paho refused it ("Message queue full"), failing the whole call, again at every retry (the
    # rules worker republishes its whole outbox at start: a crash loop after a long outage)
    async with _tracker_on_a_private_broker(settings, tmp_path, protocol="3.1.1") as (
        tracker, _, topic,
    ):  # fmt: skip
        publishing = asyncio.gather(
            tracker.publish_all(_messages(topic, 70_000), timeout_s=120),
            tracker.publish(topic, b"single", timeout_s=120),
        )
        most = 0
        while not publishing.done():
            most = max(most, tracker.in_flight)
            await asyncio.sleep(0.001)
        await publishing  # raises PublishError on a timeout
        assert tracker.in_flight == 0
        assert mqtt.PubackTracker.MAX_IN_FLIGHT / 2 < most <= mqtt.PubackTracker.MAX_IN_FLIGHT


async def test_the_window_fails_whole_when_the_connection_is_lost_while_calls_wait_for_room(
    settings: Settings, tmp_path: Path
) -> None:
    async with _tracker_on_a_private_broker(settings, tmp_path, 3) as (tracker, broker, topic):
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # no PUBACK comes
        waiting = [
            asyncio.create_task(tracker.publish_all(_messages(topic, 10), timeout_s=30)),
            asyncio.create_task(tracker.publish_all(_messages(topic, 10), timeout_s=30)),
            asyncio.create_task(tracker.publish(topic, b"one", timeout_s=30)),
        ]
        await asyncio.sleep(0.05)
        assert tracker.in_flight == 3  # the first three sent, the rest wait for room
        tracker.fail_all("connection to the MQTT broker lost")
        for task in waiting:
            with pytest.raises(mqtt.PublishError, match="connection to the MQTT broker lost"):
                await asyncio.wait_for(task, 5)
        assert tracker.in_flight == 0


async def test_a_call_waiting_for_room_times_out_and_a_cancelled_one_leaves_nothing_in_flight(
    settings: Settings, tmp_path: Path
) -> None:
    async with _tracker_on_a_private_broker(settings, tmp_path, 3) as (tracker, broker, topic):
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        with pytest.raises(mqtt.PublishError, match=r"without PUBACK after 0\.3 s"):
            await tracker.publish_all(_messages(topic, 10), timeout_s=0.3)
        assert tracker.in_flight == 0
        single = asyncio.create_task(tracker.publish(topic, b"one", timeout_s=30))
        many = asyncio.create_task(tracker.publish_all(_messages(topic, 10), timeout_s=30))
        await asyncio.sleep(0.05)
        assert tracker.in_flight == 3
        with pytest.raises(mqtt.PublishError, match=r"no PUBACK within 0\.2 s"):
            await tracker.publish(topic, b"no room", timeout_s=0.2)
        assert tracker.in_flight == 3
        for task in (single, many):  # the one waiting for its PUBACK, the one for room
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert tracker.in_flight == 0
        with pytest.raises(mqtt.PublishError, match=r"no PUBACK within 0\.2 s"):
            await tracker.publish(topic, b"two", timeout_s=0.2)
        assert tracker.in_flight == 0


async def test_calls_that_exceed_the_window_together_all_complete_within_it(
    settings: Settings, tmp_path: Path
) -> None:
    async with _tracker_on_a_private_broker(settings, tmp_path, 5) as (tracker, _, topic):
        calls = asyncio.gather(
            *(tracker.publish_all(_messages(topic, 40), timeout_s=30) for _ in range(3)),
            *(tracker.publish(topic, b"single", timeout_s=30) for _ in range(4)),
        )
        most = 0
        while not calls.done():
            most = max(most, tracker.in_flight)
            await asyncio.sleep(0)
        await calls
        assert 0 < most <= 5
        assert tracker.in_flight == 0


async def test_a_refused_publish_fails_its_call_while_others_wait_for_room(
    settings: Settings, tmp_path: Path
) -> None:
    async with _tracker_on_a_private_broker(settings, tmp_path, 3) as (tracker, broker, topic):
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        first = asyncio.create_task(tracker.publish_all(_messages(topic, 10), timeout_s=30))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(tracker.publish_all(_messages(topic, 4), timeout_s=30))
        await asyncio.sleep(0.05)
        assert tracker.in_flight == 3
        # an MQTT 5 failure reason code for the first call's first message, as paho reports it
        paho = tracker._paho
        refused = ReasonCode(PacketTypes.PUBACK, "Not authorized")
        paho.on_publish(paho, None, min(tracker._acks), refused, Properties(PacketTypes.PUBACK))
        with pytest.raises(mqtt.PublishError, match="broker refused the message"):
            await asyncio.wait_for(first, 5)
        assert tracker.in_flight <= 3
        broker.proc.send_signal(signal.SIGCONT)  # the rest are acknowledged: the second ends
        await asyncio.wait_for(second, 10)
        for _ in range(100):  # the PUBACKs of the first call's other messages, forgotten
            if tracker.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert tracker.in_flight == 0

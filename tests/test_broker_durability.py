"""What the MQTT path keeps when the broker itself dies (issue 14 item 15): a private Mosquitto
with the persistence and queue settings of deploy/mosquitto/mosquitto.conf is SIGKILLed while a
persistent-session subscriber (the ingest worker's kind of session) lags behind, then started
again on the same persistence folder.

Guaranteed with those settings, and asserted: every QoS 1 message the broker acknowledged more
than ``autosave_interval`` (1 s) plus the snapshot's own time before the crash is delivered after
the restart. Not guaranteed: what it acknowledged in that last second (the README says so)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import aiomqtt
from broker_helpers import PrivateBroker, deploy_settings

from gps_monitor import mqtt
from gps_monitor.config import Settings

SAFE_AFTER_S = 2.5  # autosave_interval (1 s) + a snapshot of a few thousand messages, with margin


async def _publish(client: aiomqtt.Client, topic: str, numbers: range) -> None:
    tracker = mqtt.PubackTracker(client)
    await asyncio.gather(*(tracker.publish(topic, str(n), timeout_s=30) for n in numbers))


async def _drain(client: aiomqtt.Client, quiet_s: float, limit_s: float) -> list[int]:
    """Payloads received until nothing came for ``quiet_s`` (at most ``limit_s``), acknowledged."""
    got: list[int] = []
    deadline = time.monotonic() + limit_s
    messages = aiter(client.messages)
    while time.monotonic() < deadline:
        try:
            message = await asyncio.wait_for(anext(messages), quiet_s)
        except TimeoutError:
            break
        got.append(int(bytes(message.payload)))  # type: ignore[arg-type]
        mqtt.ack(client, message)
    return got


async def test_queued_qos1_messages_survive_a_broker_sigkill_with_the_deploy_settings(
    settings: Settings, tmp_path: Path
) -> None:
    durability = deploy_settings()
    assert durability["persistence"] == "true" and durability["autosave_interval"] == "1"
    broker = PrivateBroker(tmp_path, durability)
    broker.start()
    conf = settings.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})
    topic = "durability/positions"
    sub_id, pub_id = f"{conf.client_id}-lagging", f"{conf.client_id}-pub"
    # the subscriber's persistent session exists; it then lags: connected, acknowledging
    # nothing (the broker holds max_inflight_messages in flight and queues the rest)
    lagging = mqtt.build_client(conf, client_id=sub_id, persistent=True, manual_ack=True)
    publisher = mqtt.build_client(conf, client_id=pub_id)
    with contextlib.suppress(aiomqtt.MqttError):  # the connections die with the broker
        async with lagging:
            await lagging.subscribe(topic, qos=1)
            async with publisher:
                await _publish(publisher, topic, range(0, 3000))  # all acknowledged
                await asyncio.sleep(SAFE_AFTER_S)
                await _publish(publisher, topic, range(3000, 3500))  # the last second
                broker.stop(signal.SIGKILL)
    mqtt.settle_disconnect(publisher)
    mqtt.settle_disconnect(lagging)
    broker.start()
    try:
        catching_up = mqtt.build_client(conf, client_id=sub_id, persistent=True, manual_ack=True)
        async with catching_up:
            received = await _drain(catching_up, quiet_s=2.0, limit_s=60.0)
    finally:
        broker.stop()
    got = set(received)
    assert set(range(0, 3000)) <= got  # acknowledged before the last snapshot: all there
    assert got <= set(range(0, 3500))  # nothing else, only (QoS 1) repeats

"""gps_monitor.mqtt against the real Mosquitto: persistent session + manual ack redelivers what
was not acknowledged; the reconnect loop backs off and gets through."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from gps_monitor import mqtt
from gps_monitor.config import MqttSettings, Settings
from gps_monitor.embedded import free_port


@pytest.mark.parametrize("protocol_version", ["3.1.1", "5"])
async def test_unacknowledged_messages_are_redelivered_to_a_persistent_session(
    settings: Settings, protocol_version: str
) -> None:
    settings = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"protocol_version": protocol_version})}
    )
    topic = settings.mqtt.topic_prefix + "probe"
    sub_id = settings.mqtt.client_id + "-sub"
    async with mqtt.build_client(settings.mqtt, client_id=sub_id, persistent=True,
                                 manual_ack=True) as sub:  # fmt: skip
        await sub.subscribe(topic, qos=1)
        async with mqtt.build_client(settings.mqtt, client_id=sub_id + "-pub") as pub:
            for n in range(5):
                await pub.publish(topic, str(n), qos=1)
        first = [await anext(sub.messages) for _ in range(5)]
        for message in first[:2]:
            mqtt.ack(sub, message)  # 0 and 1 done; 2, 3, 4 "crash" before their commit
    async with mqtt.build_client(settings.mqtt, client_id=sub_id, persistent=True,
                                 manual_ack=True) as sub:  # fmt: skip
        again = [await asyncio.wait_for(anext(sub.messages), 10) for _ in range(3)]
        for message in again:
            mqtt.ack(sub, message)
    async with mqtt.build_client(settings.mqtt, client_id=sub_id, persistent=False):
        pass  # drop the session
    assert [m.payload for m in first] == [b"0", b"1", b"2", b"3", b"4"]
    assert [m.payload for m in again] == [b"2", b"3", b"4"]


async def test_reconnect_loop_backs_off_until_the_broker_answers(settings: Settings) -> None:
    dead = settings.mqtt.model_copy(update={"port": free_port(), "reconnect_delay_s": 0.05})
    attempts: list[int] = []
    errors: list[aiomqtt.MqttError] = []

    def factory() -> aiomqtt.Client:
        attempts.append(1)
        target = dead if len(attempts) < 3 else settings.mqtt
        return mqtt.build_client(target, client_id=settings.mqtt.client_id + "-rc")

    async def session(client: aiomqtt.Client) -> str:
        return client.identifier

    result = await mqtt.run_with_reconnect(
        dead, session, client_factory=factory, on_disconnect=errors.append
    )
    assert result == settings.mqtt.client_id + "-rc"
    assert len(attempts) == 3 and len(errors) == 2


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = mqtt.Backoff(1.0, 5.0)
    assert [backoff.next_delay_s() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay_s() == 1.0


def test_v311_persistent_session_uses_clean_session_false() -> None:
    async def build() -> aiomqtt.Client:
        return mqtt.build_client(
            MqttSettings(host="127.0.0.1", protocol_version="3.1.1"), persistent=True
        )

    client = asyncio.run(build())
    assert client._client._clean_session is False

"""MQTT publishing for the gateway: QoS 1, and a publish returns only once the broker has the
message.

What ``aiomqtt.Client.publish(qos=1)`` awaits (aiomqtt 2.5, paho-mqtt 2.x, read in their
source): aiomqtt calls paho's ``publish`` and then waits for paho's ``on_publish`` callback for
that message id. paho fires ``on_publish`` for QoS 0 when the packet is written to the socket,
but for QoS 1 only when the broker's **PUBACK** arrives (``_handle_pubackcomp`` ->
``_do_on_publish``). So ``await client.publish(topic, payload, qos=1)`` returning means the
broker acknowledged the message: for Mosquitto that is after it has accepted it (and, with
persistence on, queued it for the persistent ingest session). Only then does the gateway send
the terminal its 0x8001 reply; a timeout or a lost connection gives the terminal a failure reply
(result 1) so it sends the data again (at-least-once; ingest stores a fix once per vehicle and
fix time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiomqtt

from gps_monitor.config import Settings
from gps_monitor.mqtt import run_with_reconnect

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The broker did not acknowledge a message (not connected, refused or timed out)."""


class MqttPublisher:
    """One MQTT connection shared by all terminal sessions, reconnected with backoff.

    Use ``async with MqttPublisher(settings) as publisher`` (starts the connection loop and
    waits up to ``connect_timeout_s`` for a first connection), then ``await
    publisher.publish(topic, payload)``.
    """

    def __init__(self, settings: Settings, *, connect_timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.connect_timeout_s = connect_timeout_s
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.failed = 0

    async def __aenter__(self) -> MqttPublisher:
        self._task = asyncio.create_task(self._run(), name="jt808-mqtt")
        try:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout_s)
        except TimeoutError:
            log.warning(
                "MQTT broker %s:%s not reachable yet; positions get failure replies until it is",
                self.settings.mqtt.host,
                self.settings.mqtt.port,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task

    async def _run(self) -> None:
        jt = self.settings.jt808

        async def session(client: aiomqtt.Client) -> None:
            self._client = client
            self._connected.set()
            try:
                # aiomqtt keeps a future that fails when the connection drops; waiting on it
                # hands the MqttError to run_with_reconnect, which reconnects with backoff.
                await asyncio.shield(client._disconnected)
            finally:
                self._connected.clear()
                self._client = None

        while True:  # a clean disconnect returns from run_with_reconnect: connect again
            await run_with_reconnect(
                self.settings.mqtt,
                session,
                client_id=jt.client_id,
                max_inflight_messages=jt.max_inflight_messages,
            )
            await asyncio.sleep(self.settings.mqtt.reconnect_delay_s)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and return once the broker's PUBACK is in.

        Raises:
            PublishError: not connected, refused by paho, or no PUBACK within
                ``jt808.publish_timeout_s``.
        """
        client = self._client
        if client is None:
            self.failed += 1
            raise PublishError("not connected to the MQTT broker")
        try:
            await client.publish(
                topic, payload, qos=1, timeout=self.settings.jt808.publish_timeout_s
            )
        except aiomqtt.MqttError as error:
            self.failed += 1
            raise PublishError(f"publish to {topic} not acknowledged: {error}") from error
        self.published += 1
